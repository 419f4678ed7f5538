/*
 * test_cli.c - the shared command line: -c FILE, -cFILE, --config FILE, --config=FILE, positional
 * arguments around options and after "--", missing values and unknown options (WV_EUSAGE with the
 * usage hint), --help and --version (in a child: they exit 0), which file is loaded
 * (explicit, $WALVAULT_CONFIG, the default) and its log level applied, repository numbers
 * (--repo N: x, 0, 2x, empty and out of range refused), [repoN] existence, the getopt helpers
 * for unknown options and leftover arguments, and wv_cli_fail's message and exit code.
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"

#define MAXARGS 16

/* A writable argv built from a NULL-terminated list, as main() gets it. */
typedef struct {
    int argc;
    char *argv[MAXARGS + 1];
    char store[MAXARGS][256];
} args_t;

static void mkargs(args_t *a, const char *const *list)
{
    memset(a, 0, sizeof(*a));
    for (; list[a->argc]; a->argc++) {
        snprintf(a->store[a->argc], sizeof(a->store[0]), "%s", list[a->argc]);
        a->argv[a->argc] = a->store[a->argc];
    }
    a->argv[a->argc] = NULL;
}

static int setup(void **state)
{
    (void)state;
    wv_log_init("wal-fetch", WV_LOG_INFO);
    unsetenv("WALVAULT_CONFIG");
    return 0;
}

static void test_config_forms(void **state)
{
    (void)state;
    static const struct {
        const char *argv[8];
        const char *config;
        int nargs;
        const char *args[4];
    } cases[] = {
        {{"wal-fetch", "-c", "/x.conf", "A", "B", NULL}, "/x.conf", 2, {"A", "B"}},
        {{"wal-fetch", "--config", "/y.conf", "A", NULL}, "/y.conf", 1, {"A"}},
        {{"wal-fetch", "--config=/z.conf", NULL}, "/z.conf", 0, {NULL}},
        {{"wal-fetch", "-c/w.conf", "A", NULL}, "/w.conf", 1, {"A"}},
        /* options anywhere before "--" */
        {{"wal-fetch", "A", "-c", "/x.conf", "B", NULL}, "/x.conf", 2, {"A", "B"}},
        {{"wal-fetch", "A", "B", "--config", "rel.conf", NULL}, "rel.conf", 2, {"A", "B"}},
        /* the last one wins */
        {{"wal-fetch", "-c", "/1", "--config=/2", NULL}, "/2", 0, {NULL}},
        /* after "--" everything is an argument; "-" alone is one too */
        {{"wal-fetch", "--", "-c", "--bogus", NULL}, NULL, 2, {"-c", "--bogus"}},
        {{"wal-fetch", "-", "A", NULL}, NULL, 2, {"-", "A"}},
        {{"wal-fetch", NULL}, NULL, 0, {NULL}},
        /* a file name that looks like an option is taken as the value */
        {{"wal-fetch", "-c", "--weird", "A", NULL}, "--weird", 1, {"A"}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        args_t a;
        mkargs(&a, cases[i].argv);
        wv_cli cli;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_cli_parse(a.argc, a.argv, "usage\n", &cli, &err);
        if (rc != 0)
            fail_msg("case %zu: rc %d: %s", i, rc, err.msg);
        if (cases[i].config)
            assert_string_equal(cli.config_path, cases[i].config);
        else
            assert_null(cli.config_path);
        assert_int_equal(cli.nargs, cases[i].nargs);
        for (int k = 0; k < cli.nargs; k++)
            assert_string_equal(cli.args[k], cases[i].args[k]);
        assert_null(cli.args[cli.nargs]);
        /* pointers into argv, not copies */
        if (cli.nargs)
            assert_true(cli.args[0] >= a.store[0] && cli.args[0] < a.store[MAXARGS - 1] + 256);
        wv_cli_free(&cli);
        assert_null(cli.args);
        assert_int_equal(cli.nargs, 0);
    }
}

static void test_bad_options(void **state)
{
    (void)state;
    static const struct {
        const char *argv[6];
        const char *msg;
    } cases[] = {
        {{"wal-fetch", "-c", NULL}, "option -c needs a file name"},
        {{"wal-fetch", "A", "--config", NULL}, "option --config needs a file name"},
        {{"wal-fetch", "-x", "A", NULL}, "unknown option \"-x\""},
        {{"wal-fetch", "A", "B", "--bogus", NULL}, "unknown option \"--bogus\""},
        {{"wal-fetch", "--conf=/x", NULL}, "unknown option \"--conf=/x\""},
        {{"wal-fetch", "--configx", NULL}, "unknown option \"--configx\""},
        {{"wal-fetch", "-v", NULL}, "unknown option \"-v\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        args_t a;
        mkargs(&a, cases[i].argv);
        wv_cli cli;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_cli_parse(a.argc, a.argv, "usage\n", &cli, &err);
        if (rc != WV_EUSAGE || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: rc %d\n got:  %s\n want: %s", i, rc, err.msg, cases[i].msg);
        assert_int_equal(err.code, WV_EUSAGE);
        assert_string_equal(err.hint, "run \"wal-fetch --help\" for usage");
        assert_null(cli.args); /* freed on failure */
        assert_int_equal(cli.nargs, 0);
        wv_cli_free(&cli); /* harmless */
    }
}

/* Runs wv_cli_parse in a child; returns its exit status and what it printed on stdout. */
static int parse_in_child(const char *const *list, char *out, size_t outlen)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        args_t a;
        mkargs(&a, list);
        wv_cli cli;
        wv_err err;
        int rc = wv_cli_parse(a.argc, a.argv, "usage: wal-fetch [-c FILE] NAME DEST\n", &cli, &err);
        fflush(stdout);
        _exit(rc == 0 ? 42 : 43); /* returned instead of exiting */
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < outlen && (r = read(fds[0], out + n, outlen - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_help_version(void **state)
{
    (void)state;
    char out[512];
    static const char *const help1[] = {"wal-fetch", "A", "-h", "--bogus", NULL};
    assert_int_equal(parse_in_child(help1, out, sizeof(out)), 0);
    assert_string_equal(out, "usage: wal-fetch [-c FILE] NAME DEST\n");
    static const char *const help2[] = {"wal-fetch", "--help", NULL};
    assert_int_equal(parse_in_child(help2, out, sizeof(out)), 0);
    assert_string_equal(out, "usage: wal-fetch [-c FILE] NAME DEST\n");
    static const char *const ver1[] = {"wal-fetch", "-V", NULL};
    assert_int_equal(parse_in_child(ver1, out, sizeof(out)), 0);
    assert_string_equal(out, "wal-fetch (walvault) " WALVAULT_VERSION "\n");
    static const char *const ver2[] = {"wal-fetch", "-c", "/x", "--version", NULL};
    assert_int_equal(parse_in_child(ver2, out, sizeof(out)), 0);
    assert_string_equal(out, "wal-fetch (walvault) " WALVAULT_VERSION "\n");
    /* after "--" they are arguments */
    static const char *const notopt[] = {"wal-fetch", "--", "--help", NULL};
    assert_int_equal(parse_in_child(notopt, out, sizeof(out)), 42);
    assert_string_equal(out, "");
}

static void test_config_path(void **state)
{
    (void)state;
    unsetenv("WALVAULT_CONFIG");
    assert_string_equal(wv_config_path(NULL), WV_CONFIG_DEFAULT_PATH);
    assert_string_equal(WV_CONFIG_DEFAULT_PATH, "/etc/walvault/walvault.conf");
    assert_string_equal(wv_config_path("/a.conf"), "/a.conf");
    setenv("WALVAULT_CONFIG", "/env.conf", 1);
    assert_string_equal(wv_config_path(NULL), "/env.conf");
    assert_string_equal(wv_config_path(""), "/env.conf");
    assert_string_equal(wv_config_path("/a.conf"), "/a.conf"); /* explicit wins */
    setenv("WALVAULT_CONFIG", "", 1);
    assert_string_equal(wv_config_path(NULL), WV_CONFIG_DEFAULT_PATH);
    unsetenv("WALVAULT_CONFIG");
}

static char tmpdir[256];

static int setup_dir(void **state)
{
    setup(state);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/wv-cli-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    unsetenv("WALVAULT_CONFIG");
    return system(cmd) == 0 ? 0 : -1;
}

static char *write_conf(const char *name, const char *text)
{
    char *p = wv_xasprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_load_config(void **state)
{
    (void)state;
    char *debug = write_conf("debug.conf", "[global]\nlog_level = debug\n[repo1]\ntype = posix\n"
                                           "path = /r1\n[repo3]\ntype = posix\npath = /r3\n");
    char *warn = write_conf("warn.conf", "[global]\nlog_level = warn\n[repo1]\ntype = posix\n"
                                         "path = /w\n");
    wv_cli cli = {0};
    wv_config *cfg = NULL;
    wv_err err;
    wv_err_clear(&err);

    /* -c FILE: loaded, and its log level applied */
    wv_log_set_level(WV_LOG_INFO);
    cli.config_path = debug;
    assert_int_equal(wv_cli_load_config(&cli, &cfg, &err), 0);
    assert_string_equal(cfg->file, debug);
    assert_int_equal(wv_log_get_level(), WV_LOG_DEBUG);
    assert_int_equal(cfg->nrepos, 2);

    /* [repoN] existence */
    assert_int_equal(wv_cli_repo_exists(cfg, "--repo", 1, &err), 0);
    assert_int_equal(wv_cli_repo_exists(cfg, "--repo", 3, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(wv_cli_repo_exists(cfg, "--from", 2, &err), WV_EUSAGE);
    char want[600];
    snprintf(want, sizeof(want), "--from 2: no [repo2] in %s", debug);
    assert_string_equal(err.msg, want);
    wv_config_free(cfg);
    cfg = NULL;

    /* no -c: $WALVAULT_CONFIG */
    setenv("WALVAULT_CONFIG", warn, 1);
    cli.config_path = NULL;
    assert_int_equal(wv_cli_load_config(&cli, &cfg, &err), 0);
    assert_string_equal(cfg->file, warn);
    assert_int_equal(wv_log_get_level(), WV_LOG_WARN);
    wv_config_free(cfg);
    cfg = NULL;
    /* -c wins over the environment */
    cli.config_path = debug;
    assert_int_equal(wv_cli_load_config(&cli, &cfg, &err), 0);
    assert_string_equal(cfg->file, debug);
    wv_config_free(cfg);
    cfg = NULL;

    /* a missing file: WV_ECONFIG naming it, the level left alone, *cfg untouched */
    char *missing = wv_xasprintf("%s/missing.conf", tmpdir);
    setenv("WALVAULT_CONFIG", missing, 1);
    cli.config_path = NULL;
    wv_log_set_level(WV_LOG_INFO);
    cfg = (wv_config *)(uintptr_t)0x1;
    assert_int_equal(wv_cli_load_config(&cli, &cfg, &err), WV_ECONFIG);
    assert_ptr_equal(cfg, (wv_config *)(uintptr_t)0x1);
    snprintf(want, sizeof(want), "could not open configuration file \"%s\"", missing);
    assert_memory_equal(err.msg, want, strlen(want));
    assert_string_equal(err.hint, "pass -c FILE or set WALVAULT_CONFIG");
    assert_int_equal(wv_log_get_level(), WV_LOG_INFO);
    unsetenv("WALVAULT_CONFIG");
    wv_log_set_level(WV_LOG_INFO);
    free(missing);
    free(debug);
    free(warn);
}

static void test_repo_number(void **state)
{
    (void)state;
    static const struct {
        const char *val;
        int want;
    } good[] = {{"1", 1}, {"2", 2}, {"8", 8}, {"1000", 1000}, {"42", 42}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int n = -1;
        wv_err err;
        wv_err_clear(&err);
        assert_int_equal(wv_cli_repo_number("--repo", good[i].val, &n, &err), 0);
        assert_int_equal(n, good[i].want);
        assert_int_equal(err.code, 0);
    }
    static const char *const bad[] = {
        "x", "0", "2x", "", "-1", "1001", "1.5", "repo1", "99999999999999999999", "0x2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int n = -7;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_cli_repo_number("--to", bad[i], &n, &err);
        char want[200];
        snprintf(want, sizeof(want), "--to: \"%s\" is not a repository number (N of [repoN])",
                 bad[i]);
        if (rc != WV_EUSAGE || strcmp(err.msg, want) != 0)
            fail_msg("\"%s\": rc %d, %s", bad[i], rc, err.msg);
        assert_int_equal(n, -7); /* untouched */
    }
}

static void test_getopt_helpers(void **state)
{
    (void)state;
    static const char *const list[] = {"basebackup", "list", "--jsn", "extra", NULL};
    args_t a;
    mkargs(&a, list);
    wv_err err;
    wv_err_clear(&err);
    int saved = optind;

    /* getopt rejected argv[optind - 1] */
    optind = 3;
    assert_int_equal(wv_cli_bad_option("list", a.argv, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "unknown or incomplete option \"--jsn\"");
    assert_string_equal(err.hint, "run \"basebackup list --help\" for usage");

    /* leftover arguments */
    wv_err_clear(&err);
    optind = 2;
    assert_int_equal(wv_cli_no_more_args("verify", a.argc, a.argv, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "unexpected argument \"--jsn\"");
    assert_string_equal(err.hint, "run \"basebackup verify --help\" for usage");
    optind = 3;
    assert_int_equal(wv_cli_no_more_args("verify", a.argc, a.argv, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "unexpected argument \"extra\"");
    wv_err_clear(&err);
    optind = 4;
    assert_int_equal(wv_cli_no_more_args("verify", a.argc, a.argv, &err), 0);
    assert_int_equal(err.code, 0);

    /* with a real getopt_long run */
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    static const char *const l2[] = {"list", "--json", "left", NULL};
    args_t b;
    mkargs(&b, l2);
    optind = 0;
    opterr = 0;
    int c, json = 0;
    while ((c = getopt_long(b.argc, b.argv, "+", opts, NULL)) != -1)
        json += c == 'j';
    assert_int_equal(json, 1);
    assert_int_equal(wv_cli_no_more_args("list", b.argc, b.argv, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "unexpected argument \"left\"");

    static const char *const l3[] = {"list", "--nope", NULL};
    mkargs(&b, l3);
    optind = 0;
    c = getopt_long(b.argc, b.argv, "+", opts, NULL);
    assert_int_equal(c, '?');
    assert_int_equal(wv_cli_bad_option("list", b.argv, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "unknown or incomplete option \"--nope\"");
    optind = saved;
    opterr = 1;
}

static void test_fail(void **state)
{
    (void)state;
    wv_err err;
    wv_err_set(&err, WV_ENOTFOUND, "\"X\" is not in the archive");
    wv_err_hint(&err, "look elsewhere");
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    int code = wv_cli_fail(&err);
    wv_err_set(&err, WV_EMISMATCH, "another cluster");
    int code2 = wv_cli_fail(&err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char out[512];
    ssize_t n = pread(fileno(tmp), out, sizeof(out) - 1, 0);
    fclose(tmp);
    assert_true(n > 0);
    out[n] = '\0';
    assert_int_equal(code, 1);
    assert_int_equal(code2, wv_err_exit_code(WV_EMISMATCH));
    assert_string_equal(out, "wal-fetch: error: \"X\" is not in the archive\n"
                             "wal-fetch: error: hint: look elsewhere\n"
                             "wal-fetch: error: another cluster\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_config_forms, setup),
        cmocka_unit_test_setup(test_bad_options, setup),
        cmocka_unit_test_setup(test_help_version, setup),
        cmocka_unit_test_setup(test_config_path, setup),
        cmocka_unit_test_setup_teardown(test_load_config, setup_dir, teardown_dir),
        cmocka_unit_test_setup(test_repo_number, setup),
        cmocka_unit_test_setup(test_getopt_helpers, setup),
        cmocka_unit_test_setup(test_fail, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
