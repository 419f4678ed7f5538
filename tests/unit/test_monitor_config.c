/*
 * test_monitor_config.c - [monitor] and the [global] keys of the operations commands
 * (notify_command, state_path): defaults, good values, and each bad file with its exact message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"
#include "core/monitor_config.h"

#define R1       "[repo1]\ntype = posix\npath = /r\n"
#define DURATION "a duration: a positive integer and s, m, h or d, at most 365d, e.g. 26h"

static void test_defaults(void **state)
{
    (void)state;
    wv_config *cfg = NULL;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_config_parse_string(R1, "x.conf", &cfg, &err), 0);
    assert_int_equal(cfg->monitor.line, 0);
    assert_int_equal(cfg->monitor.backup_max_age, 26 * 3600);
    assert_int_equal(cfg->monitor.backup_warn_age, 25 * 3600);
    assert_int_equal(cfg->monitor.wal_max_age, 3600);
    assert_int_equal(cfg->monitor.wal_warn_age, 900);
    assert_int_equal(cfg->monitor.check_timeout, 0);
    assert_null(cfg->notify_command);
    assert_null(cfg->state_path);
    wv_config_free(cfg);
}

static void test_values(void **state)
{
    (void)state;
    wv_config *cfg = NULL;
    wv_err err;
    wv_err_clear(&err);
    const char *text = "[global]\nnotify_command = /usr/local/bin/hook --to ops\n"
                       "state_path = /var/lib/wv/state/\n"
                       "[monitor]\nbackup_max_age = 2d\nbackup_warn_age = 36h\nwal_max_age = 30m\n"
                       "wal_warn_age = 90s\ncheck_timeout = 2m\n" R1;
    assert_int_equal(wv_config_parse_string(text, "x.conf", &cfg, &err), 0);
    assert_int_equal(cfg->monitor.line, 4);
    assert_int_equal(cfg->monitor.backup_max_age, 2 * 86400);
    assert_int_equal(cfg->monitor.backup_warn_age, 36 * 3600);
    assert_int_equal(cfg->monitor.wal_max_age, 1800);
    assert_int_equal(cfg->monitor.wal_warn_age, 90);
    assert_int_equal(cfg->monitor.check_timeout, 120);
    assert_string_equal(cfg->notify_command, "/usr/local/bin/hook --to ops");
    assert_non_null(cfg->state_path);
    assert_int_equal(strncmp(cfg->state_path, "/var/lib/wv/state", 17), 0);
    wv_config_free(cfg);
}

typedef struct bad_case {
    const char *text;
    const char *msg;
    const char *hint; /* substring, or NULL */
} bad_case;

static const bad_case bad_cases[] = {
    {"[monitor]\nbackup_max_age = 26\n" R1,
     "x.conf:2: bad value \"26\" for key \"backup_max_age\" in [monitor]: expected " DURATION,
     NULL},
    {"[monitor]\nbackup_max_age = 26H\n" R1,
     "x.conf:2: bad value \"26H\" for key \"backup_max_age\" in [monitor]: expected " DURATION,
     NULL},
    {"[monitor]\nwal_max_age = 0m\n" R1,
     "x.conf:2: bad value \"0m\" for key \"wal_max_age\" in [monitor]: expected " DURATION, NULL},
    {"[monitor]\nwal_max_age = -1h\n" R1,
     "x.conf:2: bad value \"-1h\" for key \"wal_max_age\" in [monitor]: expected " DURATION, NULL},
    {"[monitor]\nwal_max_age = 1h30m\n" R1,
     "x.conf:2: bad value \"1h30m\" for key \"wal_max_age\" in [monitor]: expected " DURATION,
     NULL},
    {"[monitor]\nwal_max_age = 366d\n" R1,
     "x.conf:2: bad value \"366d\" for key \"wal_max_age\" in [monitor]: expected " DURATION, NULL},
    {"[monitor]\nwal_max_age = 99999999999999999999d\n" R1,
     "x.conf:2: bad value \"99999999999999999999d\" for key \"wal_max_age\" in [monitor]: "
     "expected " DURATION,
     NULL},
    {"[monitor]\ncheck_timeout =\n" R1,
     "x.conf:2: bad value \"\" for key \"check_timeout\" in [monitor]: expected " DURATION, NULL},
    {"[monitor]\nbackup_age = 1d\n" R1, "x.conf:2: unknown key \"backup_age\" in [monitor]",
     "backup_max_age, backup_warn_age"},
    {"[monitor]\nwal_max_age = 1h\nwal_max_age = 2h\n" R1,
     "x.conf:3: duplicate key \"wal_max_age\" in [monitor] (first set on line 2)", NULL},
    {"[monitor]\n[monitor]\n" R1, "x.conf:2: duplicate section [monitor] (first on line 1)", NULL},
    {"[monitor]\nbackup_max_age = 12h\n" R1,
     "x.conf:2: backup_warn_age = 25h is not below backup_max_age = 12h in [monitor]",
     "shorter than its critical age"},
    {"[monitor]\nwal_warn_age = 1h\n" R1,
     "x.conf:2: wal_warn_age = 1h is not below wal_max_age = 1h in [monitor]", NULL},
    {"[global]\nnotify_command = my-hook\n" R1,
     "x.conf:2: bad value \"my-hook\" for key \"notify_command\" in [global]: expected the "
     "absolute path of a program, then its arguments",
     NULL},
    {"[global]\nnotify_command =\n" R1,
     "x.conf:2: bad value \"\" for key \"notify_command\" in [global]: expected the absolute "
     "path of a program, then its arguments",
     NULL},
    {"[global]\nstate_path = state\n" R1,
     "x.conf:2: bad value \"state\" for key \"state_path\" in [global]: expected an absolute path",
     NULL},
};

static void test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        wv_config *cfg = NULL;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_config_parse_string(bad_cases[i].text, "x.conf", &cfg, &err);
        if (rc != WV_ECONFIG || strcmp(err.msg, bad_cases[i].msg) != 0)
            fail_msg("case %zu: rc %d, message \"%s\", wanted \"%s\"", i, rc, err.msg,
                     bad_cases[i].msg);
        assert_null(cfg);
        if (bad_cases[i].hint && !strstr(err.hint, bad_cases[i].hint))
            fail_msg("case %zu: hint \"%s\" lacks \"%s\"", i, err.hint, bad_cases[i].hint);
    }
}

static void test_durations(void **state)
{
    (void)state;
    int64_t v = -5;
    assert_int_equal(wv_monitor_duration_parse("1s", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(wv_monitor_duration_parse("365d", &v), 0);
    assert_int_equal(v, 365 * 86400);
    assert_int_equal(wv_monitor_duration_parse("01h", &v), WV_ECONFIG);
    assert_int_equal(wv_monitor_duration_parse("1 h", &v), WV_ECONFIG);
    assert_int_equal(wv_monitor_duration_parse("h", &v), WV_ECONFIG);
    assert_int_equal(wv_monitor_duration_parse("", &v), WV_ECONFIG);
    assert_int_equal(v, 365 * 86400); /* untouched by failures */
    char buf[32];
    wv_monitor_duration_format(26 * 3600, buf, sizeof(buf));
    assert_string_equal(buf, "26h");
    wv_monitor_duration_format(2 * 86400, buf, sizeof(buf));
    assert_string_equal(buf, "2d");
    wv_monitor_duration_format(900, buf, sizeof(buf));
    assert_string_equal(buf, "15m");
    wv_monitor_duration_format(61, buf, sizeof(buf));
    assert_string_equal(buf, "61s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
