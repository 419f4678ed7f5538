/*
 * test_log.c - stderr logging: the program name prefix (basename of argv[0]), the tag of each level,
 * the level filter, level names, one complete line per event (also when a message is longer than
 * the line buffer) and the error + hint pair of wv_log_err. stderr is captured through a temporary
 * file put in place of file descriptor 2. Then timestamps, wv_log_note (silent off a terminal) and
 * the log file: stamped lines, mode 0640, appended, one write per line under concurrent writers,
 * and a file that cannot be opened being a warning only.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/log.h"

static int saved_fd = -1;
static FILE *capture_file;

static void capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_fd = dup(2);
    assert_true(saved_fd >= 0);
    assert_int_equal(dup2(fileno(capture_file), 2), 2);
}

/* Restores stderr and returns everything written to it since capture_begin (caller frees). */
static char *capture_end(void)
{
    fflush(stderr);
    assert_int_equal(dup2(saved_fd, 2), 2);
    close(saved_fd);
    saved_fd = -1;
    off_t n = lseek(fileno(capture_file), 0, SEEK_END);
    assert_true(n >= 0);
    char *out = malloc((size_t)n + 1);
    assert_int_equal(pread(fileno(capture_file), out, (size_t)n, 0), n);
    out[n] = '\0';
    fclose(capture_file);
    capture_file = NULL;
    return out;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int setup(void **state)
{
    (void)state;
    wv_log_init("/usr/local/bin/wal-push", WV_LOG_INFO);
    return 0;
}

static void test_progname(void **state)
{
    (void)state;
    assert_string_equal(wv_log_progname(), "wal-push");
    wv_log_init("basebackup", WV_LOG_DEBUG);
    assert_string_equal(wv_log_progname(), "basebackup");
    assert_int_equal(wv_log_get_level(), WV_LOG_DEBUG);
    /* NULL keeps the name, sets the level */
    wv_log_init(NULL, WV_LOG_WARN);
    assert_string_equal(wv_log_progname(), "basebackup");
    assert_int_equal(wv_log_get_level(), WV_LOG_WARN);
    wv_log_set_level(WV_LOG_ERROR);
    assert_int_equal(wv_log_get_level(), WV_LOG_ERROR);
    wv_log_init("/usr/local/bin/wal-push", WV_LOG_INFO);
}

static void test_level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        wv_log_level want;
    } good[] = {{"error", WV_LOG_ERROR},
                {"warn", WV_LOG_WARN},
                {"warning", WV_LOG_WARN},
                {"info", WV_LOG_INFO},
                {"debug", WV_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        wv_log_level l = (wv_log_level)99;
        assert_int_equal(wv_log_level_parse(good[i].s, &l), 0);
        assert_int_equal(l, good[i].want);
    }
    static const char *const bad[] = {"", "ERROR", "Info", "debug ", "verbose", "3", "warnings"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wv_log_level l = (wv_log_level)99;
        if (wv_log_level_parse(bad[i], &l) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(l, 99); /* untouched */
    }
}

static void test_tags_and_filter(void **state)
{
    (void)state;
    static const struct {
        wv_log_level level;
        const char *want;
    } cases[] = {
        {WV_LOG_ERROR, "wal-push: error: e 1\n"},
        {WV_LOG_WARN, "wal-push: error: e 1\nwal-push: warning: w 2\n"},
        {WV_LOG_INFO, "wal-push: error: e 1\nwal-push: warning: w 2\nwal-push: i 3\n"},
        {WV_LOG_DEBUG,
         "wal-push: error: e 1\nwal-push: warning: w 2\nwal-push: i 3\nwal-push: debug: d 4\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_log_set_level(cases[i].level);
        capture_begin();
        wv_log_error("e %d", 1);
        wv_log_warn("w %d", 2);
        wv_log_info("i %d", 3);
        wv_log_debug("d %d", 4);
        char *out = capture_end();
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("level %d:\n got:  %s\n want: %s", cases[i].level, out, cases[i].want);
        free(out);
    }
    wv_log_set_level(WV_LOG_INFO);
}

static void test_log_err(void **state)
{
    (void)state;
    wv_err err;
    wv_err_set(&err, WV_ECONFLICT, "\"%s\" is archived with different content", "0001");
    capture_begin();
    wv_log_err(&err);
    char *out = capture_end();
    assert_string_equal(out, "wal-push: error: \"0001\" is archived with different content\n");
    free(out);

    wv_err_hint(&err, "check %s", "archive_command");
    capture_begin();
    wv_log_err(&err);
    out = capture_end();
    assert_string_equal(out, "wal-push: error: \"0001\" is archived with different content\n"
                             "wal-push: error: hint: check archive_command\n");
    free(out);

    /* a record without a message prints the description of its code */
    wv_err_clear(&err);
    err.code = WV_ETIMEOUT;
    capture_begin();
    wv_log_err(&err);
    out = capture_end();
    assert_string_equal(out, "wal-push: error: timed out\n");
    free(out);

    /* errors are printed whatever the level */
    wv_log_set_level(WV_LOG_ERROR);
    wv_err_set(&err, WV_EIO, "x");
    capture_begin();
    wv_log_err(&err);
    wv_log_info("hidden");
    out = capture_end();
    assert_string_equal(out, "wal-push: error: x\n");
    free(out);
    wv_log_set_level(WV_LOG_INFO);
}

/* A message longer than the line buffer is cut, but it is still one line ending in a newline:
 * the next event starts a line of its own. */
static void test_long_message_one_line(void **state)
{
    (void)state;
    size_t big = 10000;
    char *msg = malloc(big + 1);
    memset(msg, 'z', big);
    msg[big] = '\0';
    capture_begin();
    wv_log_info("%s", msg);
    wv_log_info("next");
    wv_log_warn("%s", msg);
    char *out = capture_end();
    assert_int_equal(count_lines(out), 3);
    char *second = strchr(out, '\n') + 1;
    assert_memory_equal(second, "wal-push: next\n", 15);
    assert_memory_equal(out, "wal-push: zzz", 13);
    assert_true(strlen(out) < 3 * 4096);
    assert_int_equal(out[strlen(out) - 1], '\n');
    assert_memory_equal(second + 15, "wal-push: warning: zz", 21);
    free(out);
    free(msg);
}

static void test_exact_fit(void **state)
{
    (void)state;
    /* messages just around the buffer size, each one full line */
    const size_t prefix = strlen("wal-push: ");
    for (size_t len = 4096 - prefix - 3; len <= 4096 - prefix + 1; len++) {
        char *msg = malloc(len + 1);
        memset(msg, 'y', len);
        msg[len] = '\0';
        capture_begin();
        wv_log_info("%s", msg);
        wv_log_info("after");
        char *out = capture_end();
        if (count_lines(out) != 2)
            fail_msg("message of %zu bytes: %d lines", len, count_lines(out));
        size_t n = strlen(out);
        assert_string_equal(out + n - strlen("wal-push: after\n"), "wal-push: after\n");
        free(out);
        free(msg);
    }
}

/* "2026-12-02T12:00:00Z " */
static int is_stamp(const char *p)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:ddZ ";
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == 'd' ? !(p[i] >= '0' && p[i] <= '9') : p[i] != pat[i])
            return 0;
    }
    return 1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *out = malloc((size_t)n + 1);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    out[n] = '\0';
    fclose(f);
    return out;
}

static void test_stderr_timestamps(void **state)
{
    (void)state;
    wv_log_set_stderr_timestamps(1);
    capture_begin();
    wv_log_error("e");
    wv_log_info("i");
    char *out = capture_end();
    wv_log_set_stderr_timestamps(0);
    assert_int_equal(count_lines(out), 2);
    assert_true(is_stamp(out));
    assert_memory_equal(out + 21, "wal-push: error: e\n", 19);
    char *second = strchr(out, '\n') + 1;
    assert_true(is_stamp(second));
    assert_string_equal(second + 21, "wal-push: i\n");
    free(out);
    /* off again: no stamp */
    capture_begin();
    wv_log_info("i");
    out = capture_end();
    assert_string_equal(out, "wal-push: i\n");
    free(out);
}

static void test_note_terminal_only(void **state)
{
    (void)state;
    wv_log_set_terminal(0);
    capture_begin();
    wv_log_note("waiting");
    char *out = capture_end();
    assert_string_equal(out, ""); /* cron: silent */
    free(out);
    /* at level debug it is shown anyway */
    wv_log_set_level(WV_LOG_DEBUG);
    capture_begin();
    wv_log_note("waiting");
    out = capture_end();
    assert_string_equal(out, "wal-push: waiting\n");
    free(out);
    wv_log_set_level(WV_LOG_INFO);
    wv_log_set_terminal(1);
    capture_begin();
    wv_log_note("waiting");
    out = capture_end();
    assert_string_equal(out, "wal-push: waiting\n");
    free(out);
    /* below info it is filtered like info */
    wv_log_set_level(WV_LOG_WARN);
    capture_begin();
    wv_log_note("waiting");
    out = capture_end();
    assert_string_equal(out, "");
    free(out);
    wv_log_set_level(WV_LOG_INFO);
    wv_log_set_terminal(0);
}

static void test_log_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_log.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/wv.log", dir);
    mode_t old = umask(077); /* PostgreSQL's */
    wv_log_open_file(path);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    wv_log_set_terminal(0);
    capture_begin();
    wv_log_info("archived %d", 1);
    wv_log_note("noted");
    wv_log_debug("hidden");
    wv_log_warn("careful");
    char *err = capture_end();
    /* stderr: no stamp (off), no note (not a terminal), no debug */
    assert_string_equal(err, "wal-push: archived 1\nwal-push: warning: careful\n");
    free(err);
    char *text = slurp(path);
    assert_int_equal(count_lines(text), 3);
    const char *want[] = {"wal-push: archived 1\n", "wal-push: noted\n",
                          "wal-push: warning: careful\n"};
    const char *p = text;
    for (int i = 0; i < 3; i++) {
        assert_true(is_stamp(p));
        assert_memory_equal(p + 21, want[i], strlen(want[i]));
        p = strchr(p, '\n') + 1;
    }
    free(text);

    /* reopened: appended, never truncated */
    wv_log_open_file(path);
    capture_begin();
    wv_log_info("again");
    free(capture_end());
    text = slurp(path);
    assert_int_equal(count_lines(text), 4);
    free(text);

    /* concurrent writers: every line whole */
    enum { PROCS = 4, LINES = 300 };
    for (int c = 0; c < PROCS; c++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 2);
            char big[1500];
            memset(big, 'a' + c, sizeof(big) - 1);
            big[sizeof(big) - 1] = '\0';
            for (int i = 0; i < LINES; i++)
                wv_log_info("%s", big);
            _exit(0);
        }
    }
    for (int c = 0; c < PROCS; c++) {
        int status = 0;
        wait(&status);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    wv_log_open_file(NULL);
    text = slurp(path);
    assert_int_equal(count_lines(text), 4 + PROCS * LINES);
    p = strchr(strchr(strchr(strchr(text, '\n') + 1, '\n') + 1, '\n') + 1, '\n') + 1;
    for (int i = 0; i < PROCS * LINES; i++) {
        assert_true(is_stamp(p));
        assert_memory_equal(p + 21, "wal-push: ", 10);
        char ch = p[31];
        for (int k = 0; k < 1499; k++)
            if (p[31 + k] != ch)
                fail_msg("line %d mixed at %d", i, k);
        assert_int_equal(p[31 + 1499], '\n');
        p += 31 + 1500;
    }
    free(text);
    unlink(path);

    /* a file that cannot be opened: one warning, logging goes on */
    snprintf(path, sizeof(path), "%s/no/such/dir/wv.log", dir);
    capture_begin();
    wv_log_open_file(path);
    wv_log_info("still here");
    err = capture_end();
    assert_int_equal(count_lines(err), 2);
    assert_memory_equal(err, "wal-push: warning: cannot open log file \"", 40);
    assert_non_null(strstr(err, "no/such/dir/wv.log"));
    assert_non_null(strstr(err, "wal-push: still here\n"));
    free(err);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_progname, setup),
        cmocka_unit_test_setup(test_level_parse, setup),
        cmocka_unit_test_setup(test_tags_and_filter, setup),
        cmocka_unit_test_setup(test_log_err, setup),
        cmocka_unit_test_setup(test_long_message_one_line, setup),
        cmocka_unit_test_setup(test_exact_fit, setup),
        cmocka_unit_test_setup(test_stderr_timestamps, setup),
        cmocka_unit_test_setup(test_note_terminal_only, setup),
        cmocka_unit_test_setup(test_log_file, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
