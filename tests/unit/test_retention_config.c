/*
 * test_retention_config.c - [retention] and the retention.KEY overrides of [repoN]: a table of bad
 * files with the exact one-line message each must give (file:line, key and section), good files
 * with the policy each repository ends up with, and durations.
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
#include "core/retention_config.h"

#define R1    "[repo1]\ntype = posix\npath = /r\n"
#define R2    "[repo2]\ntype = posix\npath = /s\n"
#define H     INT64_C(3600)
#define D     (24 * H)
#define UNSET WV_RETENTION_UNSET

#define DURATION                                                                                   \
    "a duration: a positive integer and h, d, w or y (y = 365 days), at most 100y, e.g. 30d"

typedef struct bad_case {
    const char *text;
    const char *msg;  /* the exact message */
    const char *hint; /* a substring of the hint, or NULL */
} bad_case;

static const bad_case bad_cases[] = {
    /* durations, each way of getting one wrong */
    {R1 "[retention]\ndaily = 30\n",
     "x.conf:5: bad value \"30\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 30D\n",
     "x.conf:5: bad value \"30D\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 30 d\n",
     "x.conf:5: bad value \"30 d\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 0d\n",
     "x.conf:5: bad value \"0d\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = -1d\n",
     "x.conf:5: bad value \"-1d\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = +1d\n",
     "x.conf:5: bad value \"+1d\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 1.5d\n",
     "x.conf:5: bad value \"1.5d\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 1d12h\n",
     "x.conf:5: bad value \"1d12h\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 30m\n",
     "x.conf:5: bad value \"30m\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 30s\n",
     "x.conf:5: bad value \"30s\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = d\n",
     "x.conf:5: bad value \"d\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily =\n",
     "x.conf:5: bad value \"\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 30days\n",
     "x.conf:5: bad value \"30days\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 101y\n",
     "x.conf:5: bad value \"101y\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 876001h\n",
     "x.conf:5: bad value \"876001h\" for key \"daily\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\ndaily = 99999999999999999999999d\n",
     "x.conf:5: bad value \"99999999999999999999999d\" for key \"daily\" in [retention]: "
     "expected " DURATION,
     NULL},
    {R1 "[retention]\ndaily = 30d # a month\n",
     "x.conf:5: bad value \"30d # a month\" for key \"daily\" in [retention]: expected " DURATION,
     NULL},
    {R1 "[retention]\nweekly = 12 weeks\n",
     "x.conf:5: bad value \"12 weeks\" for key \"weekly\" in [retention]: expected " DURATION,
     NULL},
    {R1 "[retention]\nmonthly = 1Y\n",
     "x.conf:5: bad value \"1Y\" for key \"monthly\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\nwindow = 7\n",
     "x.conf:5: bad value \"7\" for key \"window\" in [retention]: expected " DURATION, NULL},
    {R1 "[retention]\nlabel.pre-migration = forever\n",
     "x.conf:5: bad value \"forever\" for key \"label.pre-migration\" in [retention]: "
     "expected " DURATION,
     NULL},
    /* other values and keys */
    {R1 "[retention]\ndaily = 7d\nafter_backup = maybe\n",
     "x.conf:6: bad value \"maybe\" for key \"after_backup\" in [retention]: expected yes or no",
     NULL},
    {R1 "[retention]\ndaily = 7d\nafter_backup = YES\n",
     "x.conf:6: bad value \"YES\" for key \"after_backup\" in [retention]: expected yes or no",
     NULL},
    {R1 "[retention]\ndayly = 7d\n", "x.conf:5: unknown key \"dayly\" in [retention]",
     "[retention] accepts daily, weekly, monthly, window, label.PREFIX and after_backup"},
    {R1 "[retention]\nlabel = 7d\n", "x.conf:5: unknown key \"label\" in [retention]", NULL},
    {R1 "[retention]\nlabel. = 7d\n",
     "x.conf:5: bad key \"label.\" in [retention]: a label prefix must be 1 to 63 characters "
     "without blanks",
     "label.pre-migration = 90d"},
    {R1 "[retention]\nlabel.pre migration = 7d\n",
     "x.conf:5: bad key \"label.pre migration\" in [retention]: a label prefix must be 1 to 63 "
     "characters without blanks",
     NULL},
    {R1
     "[retention]\nlabel.0123456789012345678901234567890123456789012345678901234567890123 = 7d\n",
     "x.conf:5: bad key \"label.0123456789012345678901234567890123456789012345678901234567890123\" "
     "in [retention]: a label prefix must be 1 to 63 characters without blanks",
     NULL},
    {R1 "[retention]\ndaily = 7d\ndaily = 8d\n",
     "x.conf:6: duplicate key \"daily\" in [retention] (first set on line 5)", NULL},
    {R1 "[retention]\nlabel.a = 7d\nlabel.b = 7d\nlabel.a = 8d\n",
     "x.conf:7: duplicate key \"label.a\" in [retention] (first set on line 5)", NULL},
    {R1 "[retention]\ndaily = 7d\n[retention]\nweekly = 7d\n",
     "x.conf:6: duplicate section [retention] (first on line 4)", NULL},
    {R1 "[retention]\ndaily = 7d\n  weekly = 7d\n",
     "x.conf:6: unexpected indented line in [retention]: a value must fit on one line and a key "
     "must not be indented after another key",
     NULL},
    {R1 "[retention]\n",
     "x.conf:4: [retention] has no rule: it would expire every backup but the newest",
     "or remove the section to expire nothing"},
    {"[retention]\n# nothing yet\n" R1,
     "x.conf:1: [retention] has no rule: it would expire every backup but the newest", NULL},
    {R1 "[retention]\nafter_backup = yes\n",
     "x.conf:4: [retention] has no rule: it would expire every backup but the newest", NULL},
    {R1 "[retention]\nlabel.a = 1d\nlabel.b = 1d\nlabel.c = 1d\nlabel.d = 1d\nlabel.e = 1d\n"
        "label.f = 1d\nlabel.g = 1d\nlabel.h = 1d\nlabel.i = 1d\nlabel.j = 1d\nlabel.k = 1d\n"
        "label.l = 1d\nlabel.m = 1d\nlabel.n = 1d\nlabel.o = 1d\nlabel.p = 1d\nlabel.q = 1d\n",
     "x.conf:21: too many label rules in [retention]: at most 16", NULL},
    /* overrides in [repoN] */
    {R1 "retention.dayly = 7d\n", "x.conf:4: unknown key \"retention.dayly\" in [repo1]",
     "a repository accepts retention.daily, retention.weekly"},
    {R1 "retention.daily = 7\n",
     "x.conf:4: bad value \"7\" for key \"retention.daily\" in [repo1]: expected " DURATION, NULL},
    {"[repo1]\nretention.window = 0h\ntype = posix\npath = /r\n",
     "x.conf:2: bad value \"0h\" for key \"retention.window\" in [repo1]: expected " DURATION,
     NULL},
    {R1 "retention.label.x y = 7d\n",
     "x.conf:4: bad key \"retention.label.x y\" in [repo1]: a label prefix must be 1 to 63 "
     "characters without blanks",
     "retention.label.pre-migration = 90d"},
    {R1 "retention.after_backup = sometimes\n",
     "x.conf:4: bad value \"sometimes\" for key \"retention.after_backup\" in [repo1]: expected "
     "yes or no",
     NULL},
    {R1 R2 "retention.daily = 7d\nretention.daily = 9d\n",
     "x.conf:8: duplicate key \"retention.daily\" in [repo2] (first set on line 7)", NULL},
    {R1 "retention = 7d\n", "x.conf:4: unknown key \"retention\" in [repo1]", NULL},
    {R1 R2 "retention.after_backup = yes\n",
     "x.conf:7: [repo2] has retention settings but no retention rule: it would expire every "
     "backup but the newest",
     "retention.daily"},
    {R1 "[retention]\nlabel.a = 1d\nlabel.b = 1d\nlabel.c = 1d\nlabel.d = 1d\nlabel.e = 1d\n"
        "label.f = 1d\nlabel.g = 1d\nlabel.h = 1d\nlabel.i = 1d\nlabel.j = 1d\nlabel.k = 1d\n"
        "label.l = 1d\nlabel.m = 1d\nlabel.n = 1d\nlabel.o = 1d\nlabel.p = 1d\n" R2
        "retention.label.a = 2d\nretention.label.q = 2d\n",
     "x.conf:24: too many label rules for [repo2] with [retention]: at most 16", NULL},
};

static void test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        wv_config *cfg = NULL;
        wv_err err;
        int rc = wv_config_parse_string(bad_cases[i].text, "x.conf", &cfg, &err);
        if (rc != WV_ECONFIG)
            fail_msg("case %zu: expected an error, got %d", i, rc);
        assert_null(cfg);
        if (strcmp(err.msg, bad_cases[i].msg) != 0)
            fail_msg("case %zu:\n  got      %s\n  expected %s", i, err.msg, bad_cases[i].msg);
        if (bad_cases[i].hint && !strstr(err.hint, bad_cases[i].hint))
            fail_msg("case %zu: hint \"%s\" lacks \"%s\"", i, err.hint, bad_cases[i].hint);
    }
}

static wv_config *parse(const char *text)
{
    wv_config *cfg = NULL;
    wv_err err;
    if (wv_config_parse_string(text, "x.conf", &cfg, &err) != 0)
        fail_msg("%s", err.msg);
    return cfg;
}

static void assert_policy(const wv_config *cfg, int repo, int has, int64_t daily, int64_t weekly,
                          int64_t monthly, int64_t window, int after_backup)
{
    wv_retention_policy p;
    assert_int_equal(wv_retention_config_for_repo(&cfg->retention, repo, &p), has);
    assert_int_equal(p.daily, daily);
    assert_int_equal(p.weekly, weekly);
    assert_int_equal(p.monthly, monthly);
    assert_int_equal(p.window, window);
    assert_int_equal(p.after_backup, after_backup);
}

static void assert_label(const wv_config *cfg, int repo, int i, const char *prefix, int64_t age)
{
    wv_retention_policy p;
    wv_retention_config_for_repo(&cfg->retention, repo, &p);
    assert_true(i < p.nlabels);
    assert_string_equal(p.labels[i].prefix, prefix);
    assert_int_equal(p.labels[i].age, age);
}

static int nlabels(const wv_config *cfg, int repo)
{
    wv_retention_policy p;
    wv_retention_config_for_repo(&cfg->retention, repo, &p);
    return p.nlabels;
}

static void test_none(void **state)
{
    (void)state;
    wv_config *cfg = parse(R1 R2);
    assert_policy(cfg, 1, 0, UNSET, UNSET, UNSET, UNSET, 0);
    assert_policy(cfg, 2, 0, UNSET, UNSET, UNSET, UNSET, 0);
    assert_int_equal(nlabels(cfg, 1), 0);
    wv_config_free(cfg);
}

static void test_full(void **state)
{
    (void)state;
    wv_config *cfg = parse("[retention]\n"
                           "daily = 30d\n"
                           "weekly = 12w\n"
                           "monthly = 1y\n"
                           "label.pre-migration = 90d\n"
                           "label.Pre = 36h\n"
                           "window = 7d\n"
                           "after_backup = yes\n" R1 R2);
    assert_policy(cfg, 1, 1, 30 * D, 84 * D, 365 * D, 7 * D, 1);
    assert_policy(cfg, 2, 1, 30 * D, 84 * D, 365 * D, 7 * D, 1);
    assert_int_equal(nlabels(cfg, 1), 2);
    assert_label(cfg, 1, 0, "pre-migration", 90 * D);
    assert_label(cfg, 1, 1, "Pre", 36 * H);
    wv_config_free(cfg);

    /* one rule is enough; after_backup takes on/off too; the section may come anywhere */
    cfg = parse(R1 "[retention]\nwindow = 100y\nafter_backup = on\n" R2);
    assert_policy(cfg, 1, 1, UNSET, UNSET, UNSET, 100 * 365 * D, 1);
    wv_config_free(cfg);
    cfg = parse(R1 "[retention]\nlabel.keepme = 1h\nafter_backup = off\n");
    assert_policy(cfg, 1, 1, UNSET, UNSET, UNSET, UNSET, 0);
    assert_label(cfg, 1, 0, "keepme", H);
    wv_config_free(cfg);
}

/* An override replaces one key for its repository; the other repositories keep [retention]. */
static void test_overrides(void **state)
{
    (void)state;
    wv_config *cfg = parse("[retention]\n"
                           "daily = 30d\n"
                           "weekly = 90d\n"
                           "label.pre-migration = 90d\n" R1 R2 "retention.daily = 90d\n"
                           "retention.label.pre-migration = 1y\n"
                           "retention.label.audit = 7y\n"
                           "retention.after_backup = yes\n"
                           "[repo3]\ntype = posix\npath = /t\nretention.window = 14d\n");
    assert_policy(cfg, 1, 1, 30 * D, 90 * D, UNSET, UNSET, 0);
    assert_int_equal(nlabels(cfg, 1), 1);
    assert_label(cfg, 1, 0, "pre-migration", 90 * D);

    assert_policy(cfg, 2, 1, 90 * D, 90 * D, UNSET, UNSET, 1);
    assert_int_equal(nlabels(cfg, 2), 2);
    assert_label(cfg, 2, 0, "pre-migration", 365 * D);
    assert_label(cfg, 2, 1, "audit", 7 * 365 * D);

    assert_policy(cfg, 3, 1, 30 * D, 90 * D, UNSET, 14 * D, 0);
    /* a repository that is not configured gets [retention] alone */
    assert_policy(cfg, 8, 1, 30 * D, 90 * D, UNSET, UNSET, 0);
    wv_config_free(cfg);

    /* overrides without [retention]: only that repository has a policy */
    cfg = parse(R1 "[repo4]\ntype = posix\npath = /u\nretention.monthly = 10y\n");
    assert_policy(cfg, 1, 0, UNSET, UNSET, UNSET, UNSET, 0);
    assert_policy(cfg, 4, 1, UNSET, UNSET, 3650 * D, UNSET, 0);
    assert_int_equal(cfg->nrepos, 2);
    assert_int_equal(cfg->repos[1].index, 4);
    wv_config_free(cfg);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t v;
    } good[] = {
        {"1h", H},           {"36h", 36 * H},        {"1d", D},
        {"30d", 30 * D},     {"2w", 14 * D},         {"1y", 365 * D},
        {"100y", 36500 * D}, {"876000h", 36500 * D}, {"036d", 36 * D},
    };
    static const char *const bad[] = {"",    "h",   "0h",  "00d",  "1",     "1H",     " 1d",
                                      "1d ", "1 d", "-1d", "1.0d", "1e3d",  "1dd",    "1d1h",
                                      "1m",  "1s",  "1M",  "101y", "5215w", "36501d", "0x10d"};
    char buf[32];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t v = 0;
        if (wv_retention_duration_parse(good[i].s, &v) != 0)
            fail_msg("\"%s\" refused", good[i].s);
        assert_int_equal(v, good[i].v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 42;
        if (wv_retention_duration_parse(bad[i], &v) != WV_ECONFIG)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(v, 42);
    }
    wv_retention_duration_format(30 * D, buf, sizeof(buf));
    assert_string_equal(buf, "30d");
    wv_retention_duration_format(14 * D, buf, sizeof(buf));
    assert_string_equal(buf, "2w");
    wv_retention_duration_format(730 * D, buf, sizeof(buf));
    assert_string_equal(buf, "2y");
    wv_retention_duration_format(36 * H, buf, sizeof(buf));
    assert_string_equal(buf, "36h");
    wv_retention_duration_format(100, buf, sizeof(buf));
    assert_string_equal(buf, "100s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad),       cmocka_unit_test(test_none),
        cmocka_unit_test(test_full),      cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
