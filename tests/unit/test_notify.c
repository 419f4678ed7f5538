/*
 * test_notify.c - notify_command: the event's JSON (escaping of quotes, backslashes, control
 * characters and bytes that are not UTF-8), and the runner against real hooks: one that writes its
 * stdin and environment to files, one that fails, one that hangs past the timeout, one that reads
 * nothing and exits, a relative program, a program that does not exist.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/units.h"

static char dir[256];

static void write_script(const char *name, const char *body, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/wv-test-notify-XXXXXX");
    assert_non_null(mkdtemp(dir));
    wv_log_init("test_notify", WV_LOG_ERROR);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_json(void **state)
{
    (void)state;
    wv_notify_event ev = {.event = "backup",
                          .ok = 0,
                          .message = "a \"quoted\" back\\slash\nnew\tline \x01 \x7f caf\xc3\xa9 "
                                     "bad\xff\xc3 end",
                          .repo = "repo2",
                          .backup = "20261125T021500Z",
                          .time = 1764036000}; /* 2025-11-25T02:00:00Z */
    wv_buf b;
    wv_buf_init(&b);
    wv_notify_json(&ev, &b);
    const char *s = wv_buf_cstr(&b);
    const char *want = "{\"event\":\"backup\",\"status\":\"error\",\"message\":\"a \\\"quoted\\\" "
                       "back\\\\slash\\nnew\\tline \\u0001 \\u007f caf\xc3\xa9 bad\\ufffd\\ufffd "
                       "end\",\"time\":\"2025-11-25T02:00:00Z\",\"repo\":\"repo2\","
                       "\"backup\":\"20261125T021500Z\",\"host\":";
    if (strncmp(s, want, strlen(want)) != 0)
        fail_msg("got %s", s);
    assert_non_null(strstr(s, ",\"program\":\"test_notify\"}"));
    /* Without repo and backup, with a NULL message. */
    wv_buf_reset(&b);
    wv_notify_event ev2 = {.event = "check", .ok = 1, .time = 1764036000};
    wv_notify_json(&ev2, &b);
    s = wv_buf_cstr(&b);
    assert_int_equal(strncmp(s,
                             "{\"event\":\"check\",\"status\":\"ok\",\"message\":\"\","
                             "\"time\":\"2025-11-25T02:00:00Z\",\"host\":",
                             strlen("{\"event\":\"check\",\"status\":\"ok\",\"message\":\"\","
                                    "\"time\":\"2025-11-25T02:00:00Z\",\"host\":")),
                     0);
    assert_null(strstr(s, "\"repo\""));
    /* No raw control character can reach the output. */
    for (const char *p = s; *p; p++)
        assert_true((unsigned char)*p >= 0x20);
    wv_buf_free(&b);
}

static void test_hook_receives_json(void **state)
{
    (void)state;
    char hook[512], cmd[1200];
    char body[1024];
    snprintf(body, sizeof(body), "cat > %s/in.json\nenv > %s/env.txt\necho \"$1 $2\" > %s/args",
             dir, dir, dir);
    write_script("ok.sh", body, hook, sizeof(hook));
    snprintf(cmd, sizeof(cmd), "%s  one\ttwo", hook);
    setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t", 1);
    setenv("PGPASSWORD", "pw", 1);
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_notify_run(cmd, "backup", "{\"event\":\"backup\"}\n", 5, &err), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/in.json", dir);
    char *in = slurp(path);
    assert_non_null(in);
    assert_string_equal(in, "{\"event\":\"backup\"}\n");
    free(in);
    snprintf(path, sizeof(path), "%s/args", dir);
    char *args = slurp(path);
    assert_string_equal(args, "one two\n");
    free(args);
    snprintf(path, sizeof(path), "%s/env.txt", dir);
    char *env = slurp(path);
    assert_non_null(strstr(env, "WALVAULT_EVENT=backup"));
    assert_null(strstr(env, "s3cr3t"));
    assert_null(strstr(env, "PGPASSWORD"));
    free(env);
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("PGPASSWORD");
}

static void test_hook_fails(void **state)
{
    (void)state;
    char hook[512];
    write_script("fail.sh", "cat >/dev/null; exit 3", hook, sizeof(hook));
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_notify_run(hook, "check", "{}\n", 5, &err), WV_EREFUSED);
    assert_string_equal(err.msg, "exit 3");
    write_script("kill.sh", "kill -9 $$", hook, sizeof(hook));
    assert_int_equal(wv_notify_run(hook, "check", "{}\n", 5, &err), WV_EREFUSED);
    assert_string_equal(err.msg, "killed by signal 9");
}

static void test_hook_hangs(void **state)
{
    (void)state;
    char hook[512];
    /* sleep in a child of the hook too: the whole process group goes */
    write_script("hang.sh", "sleep 30 & sleep 30", hook, sizeof(hook));
    wv_err err;
    wv_err_clear(&err);
    double t0 = wv_mono_s();
    assert_int_equal(wv_notify_run(hook, "drill", "{}\n", 1, &err), WV_EREFUSED);
    double took = wv_mono_s() - t0;
    assert_true(took >= 0.9 && took < 5);
    assert_string_equal(err.msg, "timed out after 1 s, killed");
}

static void test_hook_reads_nothing(void **state)
{
    (void)state;
    char hook[512];
    write_script("noread.sh", "exit 0", hook, sizeof(hook));
    /* far more than a pipe holds: the writer must neither block nor die of SIGPIPE */
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_notify_run(hook, "backup", big, 5, &err), 0);
    /* one that reads nothing and never exits: the timeout */
    write_script("noread-hang.sh", "exec sleep 30", hook, sizeof(hook));
    assert_int_equal(wv_notify_run(hook, "backup", big, 1, &err), WV_EREFUSED);
    assert_string_equal(err.msg, "timed out after 1 s, killed");
    free(big);
}

static void test_bad_commands(void **state)
{
    (void)state;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_notify_run("my-hook --x", "backup", "{}", 5, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "notify_command \"my-hook --x\" does not start with an absolute "
                                 "path");
    assert_int_equal(wv_notify_run("   ", "backup", "{}", 5, &err), WV_EUSAGE);
    assert_int_equal(wv_notify_run("/nonexistent/hook", "backup", "{}", 5, &err), WV_EREFUSED);
    assert_string_equal(err.msg, "exit 127");
}

static void test_notify_config(void **state)
{
    (void)state;
    char hook[512];
    char body[600];
    snprintf(body, sizeof(body), "cat > %s/cfg.json", dir);
    write_script("cfg.sh", body, hook, sizeof(hook));
    wv_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    wv_notify_event ev = {.event = "status", .ok = 0, .message = "repo2 unreachable"};
    assert_int_equal(wv_notify(&cfg, &ev), 0); /* no hook: nothing */
    assert_int_equal(wv_notify(NULL, &ev), 0);
    cfg.notify_command = hook;
    assert_int_equal(wv_notify(&cfg, &ev), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/cfg.json", dir);
    char *in = slurp(path);
    assert_non_null(in);
    assert_int_equal(
        strncmp(in,
                "{\"event\":\"status\",\"status\":\"error\",\"message\":\"repo2 "
                "unreachable\",\"time\":\"",
                strlen("{\"event\":\"status\",\"status\":\"error\",\"message\":\"repo2 "
                       "unreachable\",\"time\":\"")),
        0);
    assert_int_equal(in[strlen(in) - 1], '\n');
    free(in);
    write_script("cfg-fail.sh", "exit 4", hook, sizeof(hook));
    assert_int_equal(wv_notify(&cfg, &ev), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_hook_receives_json),
        cmocka_unit_test(test_hook_fails),
        cmocka_unit_test(test_hook_hangs),
        cmocka_unit_test(test_hook_reads_nothing),
        cmocka_unit_test(test_bad_commands),
        cmocka_unit_test(test_notify_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
