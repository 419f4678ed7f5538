/*
 * test_timeparse.c - "--to" times: relative forms, times with a zone, local times in several
 * time zones (daylight-saving gaps and repeats included), bad inputs with their messages, and
 * format/parse round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/timeparse.h"

#define US  INT64_C(1000000)
#define NOW INT64_C(1795600800) /* 2026-11-25 10:00:00 UTC */

#define ACCEPTED                                                                                   \
    "expected \"now\", \"N seconds|minutes|hours|days|weeks ago\", \"YYYY-MM-DD HH:MM:SS\" "       \
    "(local time), \"YYYY-MM-DD\" (its midnight, local time), \"YYYY-MM-DD HH:MM:SS+HH[:MM]\" or " \
    "ISO 8601 \"YYYY-MM-DDTHH:MM:SSZ\""

static char *saved_tz;

static void set_tz(const char *tz)
{
    if (tz)
        setenv("TZ", tz, 1);
    else
        unsetenv("TZ");
    tzset();
}

static int setup(void **state)
{
    (void)state;
    const char *tz = getenv("TZ");
    saved_tz = tz ? strdup(tz) : NULL;
    /* the zones below come from tzdata; without it they would silently act as UTC */
    static const char *const zones[] = {"Europe/Berlin", "America/New_York", "Asia/Kolkata",
                                        "Australia/Lord_Howe"};
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", zones[i]);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "tzdata is missing (%s): install the tzdata package\n", path);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    set_tz(saved_tz);
    free(saved_tz);
    return 0;
}

static int64_t parse_ok(const char *s)
{
    int64_t v = -42;
    wv_err err;
    wv_err_clear(&err);
    if (wv_time_parse(s, NOW, &v, &err) != 0)
        fail_msg("\"%s\" refused: %s", s, err.msg);
    assert_int_equal(err.code, 0);
    return v;
}

/* Inputs whose meaning does not depend on the local time zone. */
static const struct {
    const char *in;
    int64_t want_us;
} zone_free[] = {
    {"now", NOW *US},
    {"NOW", NOW *US},
    {"  now\t", NOW *US},
    {"30 minutes ago", (NOW - 1800) * US},
    {"2 hours ago", (NOW - 7200) * US},
    {"1 day ago", (NOW - 86400) * US},
    {"90 seconds ago", (NOW - 90) * US},
    {"1 second ago", (NOW - 1) * US},
    {"0 seconds ago", NOW *US},
    {"1 sec ago", (NOW - 1) * US},
    {"15 secs ago", (NOW - 15) * US},
    {"5 min ago", (NOW - 300) * US},
    {"5 mins ago", (NOW - 300) * US},
    {"1 minute ago", (NOW - 60) * US},
    {"1 hour ago", (NOW - 3600) * US},
    {"3 days ago", (NOW - 3 * 86400) * US},
    {"1 week ago", (NOW - 7 * 86400) * US},
    {"2 weeks ago", (NOW - 14 * 86400) * US},
    {"1 weeks ago", (NOW - 7 * 86400) * US},
    {"30 Minutes Ago", (NOW - 1800) * US},
    {"2 HOURS AGO", (NOW - 7200) * US},
    {"10   minutes \t ago", (NOW - 600) * US},
    {"10minutes ago", (NOW - 600) * US},
    {"007 seconds ago", (NOW - 7) * US},
    {"2026-11-25 10:00:00+00", NOW *US},
    {"2026-11-25 10:00:00-00", NOW *US},
    {"2026-11-25 10:00:00+0000", NOW *US},
    {"2026-11-25 10:00:00+00:00", NOW *US},
    {"2026-11-25 10:00:00Z", NOW *US},
    {"2026-11-25 10:00:00z", NOW *US},
    {"2026-11-25 10:00:00UTC", NOW *US},
    {"2026-11-25 10:00:00 UTC", NOW *US},
    {"2026-11-25 10:00:00 utc", NOW *US},
    {"2026-11-25 10:00:00 Z", NOW *US},
    {"2026-11-25 11:00:00+01", NOW *US},
    {"2026-11-25 11:00:00 +01:00", NOW *US},
    {"2026-11-25 11:30:00+0130", NOW *US},
    {"2026-11-25 15:30:00+05:30", NOW *US},
    {"2026-11-25 05:00:00-05", NOW *US},
    {"2026-11-24 22:00:00-12", NOW *US},
    {"2026-11-26 01:59:00+15:59", NOW *US},
    {"2026-11-25T10:00:00Z", NOW *US},
    {"2026-11-25t10:00:00Z", NOW *US},
    {"2026-11-25T12:00:00+02:00", NOW *US},
    {"2026-11-25T10:00:00.5Z", NOW *US + 500000},
    {"2026-11-25T10:00:00.123456+00", NOW *US + 123456},
    {"2026-11-25 10:00:00.000001 UTC", NOW *US + 1},
    {"2026-11-25 10:00:00.999999Z", NOW *US + 999999},
    {"2026-11-25 10:00:00.0Z", NOW *US},
    {"1970-01-01 00:00:00Z", 0},
    {"1970-01-01 01:00:00+01", 0},
    {"1969-12-31 19:00:00-05", 0},
    {"2024-02-29 00:00:00Z", INT64_C(1709164800) * US},
    {"2000-02-29 12:00:00Z", INT64_C(951825600) * US},
    {"2026-12-31 23:59:59Z", INT64_C(1798761599) * US},
    {"2027-01-01 00:00:00Z", INT64_C(1798761600) * US},
    {"9999-12-31 23:59:59Z", INT64_C(253402300799) * US},
};

static void test_zone_free(void **state)
{
    (void)state;
    static const char *const tzs[] = {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"};
    for (size_t z = 0; z < sizeof(tzs) / sizeof(tzs[0]); z++) {
        set_tz(tzs[z]);
        for (size_t i = 0; i < sizeof(zone_free) / sizeof(zone_free[0]); i++) {
            int64_t v = parse_ok(zone_free[i].in);
            if (v != zone_free[i].want_us)
                fail_msg("TZ=%s \"%s\": got %lld, want %lld", tzs[z], zone_free[i].in, (long long)v,
                         (long long)zone_free[i].want_us);
        }
    }
}

/* Local times: the same text means different instants in different zones. */
static const struct {
    const char *tz;
    const char *in;
    int64_t want; /* seconds */
} local_cases[] = {
    {"UTC", "2026-11-25 10:00:00", NOW},
    {"UTC", "2026-11-25T10:00:00", NOW},
    {"UTC", "1970-01-01 00:00:00", 0},
    {"UTC", "2026-11-25", NOW - 10 * 3600}, /* a date alone: its midnight */
    {"Europe/Berlin", "2026-11-25", NOW - 11 * 3600},
    {"America/New_York", "2026-11-25", NOW - 10 * 3600 + 5 * 3600},
    {"Europe/Berlin", "2026-11-25 11:00:00", NOW},                 /* CET, +01 */
    {"Europe/Berlin", "2026-11-25 11:00:00.25", NOW},              /* fraction checked below */
    {"Europe/Berlin", "2026-07-01 12:00:00", INT64_C(1782900000)}, /* CEST, +02 */
    {"Europe/Berlin", "2026-03-29 01:59:59", INT64_C(1774745999)}, /* last second of CET */
    {"Europe/Berlin", "2026-03-29 03:00:00", INT64_C(1774746000)}, /* first second of CEST */
    /* 02:30 happens twice on 2026-10-25: the earlier (CEST, 00:30 UTC) is meant */
    {"Europe/Berlin", "2026-10-25 02:30:00", INT64_C(1792888200)},
    {"Europe/Berlin", "2026-10-25 03:00:00", INT64_C(1792893600)},
    {"America/New_York", "2026-11-25 05:00:00", NOW},                 /* EST, -05 */
    {"America/New_York", "2026-07-01 06:00:00", INT64_C(1782900000)}, /* EDT, -04 */
    {"America/New_York", "2026-11-01 01:30:00", INT64_C(1793511000)}, /* twice: EDT meant */
    {"Asia/Kolkata", "2026-11-25 15:30:00", NOW},
    {"Australia/Lord_Howe", "2026-11-25 21:00:00", NOW}, /* +11 in its summer (30-min DST) */
    {"Australia/Lord_Howe", "2026-07-01 20:30:00", INT64_C(1782900000)}, /* +10:30 */
    {"EST5EDT", "2026-11-25 05:00:00", NOW},
};

static void test_local_times(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(local_cases) / sizeof(local_cases[0]); i++) {
        set_tz(local_cases[i].tz);
        int64_t v = parse_ok(local_cases[i].in);
        if (v / US != local_cases[i].want)
            fail_msg("TZ=%s \"%s\": got %lld, want %lld", local_cases[i].tz, local_cases[i].in,
                     (long long)(v / US), (long long)local_cases[i].want);
    }
    set_tz("Europe/Berlin");
    assert_int_equal(parse_ok("2026-11-25 11:00:00.25"), NOW * US + 250000);
}

typedef struct bad_case {
    const char *tz;
    const char *in;
    const char *msg; /* exact */
} bad_case;

static const bad_case bad_cases[] = {
    /* forms that are not accepted */
    {"UTC", "", "invalid time \"\": " ACCEPTED},
    {"UTC", "   ", "invalid time \"   \": " ACCEPTED},
    {"UTC", "yesterday", "invalid time \"yesterday\": " ACCEPTED},
    {"UTC", "tomorrow", "invalid time \"tomorrow\": " ACCEPTED},
    {"UTC", "now now", "invalid time \"now now\": " ACCEPTED},
    {"UTC", "nowx", "invalid time \"nowx\": " ACCEPTED},
    {"UTC", "30 minutes", "invalid time \"30 minutes\": " ACCEPTED},
    {"UTC", "minutes ago", "invalid time \"minutes ago\": " ACCEPTED},
    {"UTC", "ago", "invalid time \"ago\": " ACCEPTED},
    {"UTC", "30 ago", "invalid time \"30 ago\": " ACCEPTED},
    {"UTC", "-5 minutes ago", "invalid time \"-5 minutes ago\": " ACCEPTED},
    {"UTC", "+5 minutes ago", "invalid time \"+5 minutes ago\": " ACCEPTED},
    {"UTC", "5.5 minutes ago", "invalid time \"5.5 minutes ago\": " ACCEPTED},
    {"UTC", "1e3 seconds ago", "invalid time \"1e3 seconds ago\": " ACCEPTED},
    {"UTC", "5 minutes ago now", "invalid time \"5 minutes ago now\": " ACCEPTED},
    {"UTC", "5 minutes ago.", "invalid time \"5 minutes ago.\": " ACCEPTED},
    {"UTC", "5 minutes from now", "invalid time \"5 minutes from now\": " ACCEPTED},
    {"UTC", "in 5 minutes", "invalid time \"in 5 minutes\": " ACCEPTED},
    {"UTC", "1 hour 30 minutes ago", "invalid time \"1 hour 30 minutes ago\": " ACCEPTED},
    {"UTC", "5 fortnights ago",
     "invalid time \"5 fortnights ago\": unknown unit \"fortnights\": expected seconds, minutes, "
     "hours, days or weeks"},
    {"UTC", "5 m ago",
     "invalid time \"5 m ago\": unknown unit \"m\": expected seconds, minutes, hours, days or "
     "weeks"},
    {"UTC", "2 months ago",
     "invalid time \"2 months ago\": unknown unit \"months\": expected seconds, minutes, hours, "
     "days or weeks"},
    {"UTC", "1000000000000 seconds ago",
     "invalid time \"1000000000000 seconds ago\": the number is too large"},
    {"UTC", "999999999999 weeks ago",
     "invalid time \"999999999999 weeks ago\": that is before 1970"},
    {"UTC", "30000 days ago", "invalid time \"30000 days ago\": that is before 1970"},
    {"UTC", "2026-11-25 10", "invalid time \"2026-11-25 10\": " ACCEPTED},
    {"UTC", "2026-11-25Z", "invalid time \"2026-11-25Z\": " ACCEPTED},
    {"UTC", "2026-11-2", "invalid time \"2026-11-2\": " ACCEPTED},
    {"UTC", "2026-02-30",
     "invalid time \"2026-02-30\": day 30 is out of range for February 2026 (1-28)"},
    {"UTC", "2026-11-25 10:00", "invalid time \"2026-11-25 10:00\": " ACCEPTED},
    {"UTC", "10:00:00", "invalid time \"10:00:00\": " ACCEPTED},
    {"UTC", "26-11-25 10:00:00", "invalid time \"26-11-25 10:00:00\": " ACCEPTED},
    {"UTC", "2026/11/25 10:00:00", "invalid time \"2026/11/25 10:00:00\": " ACCEPTED},
    {"UTC", "2026-1-25 10:00:00", "invalid time \"2026-1-25 10:00:00\": " ACCEPTED},
    {"UTC", "2026-11-25 1:00:00", "invalid time \"2026-11-25 1:00:00\": " ACCEPTED},
    {"UTC", "2026-11-25  10:00:00", "invalid time \"2026-11-25  10:00:00\": " ACCEPTED},
    {"UTC", "2026-11-25_10:00:00", "invalid time \"2026-11-25_10:00:00\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00Zjunk", "invalid time \"2026-11-25 10:00:00Zjunk\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00+01junk", "invalid time \"2026-11-25 10:00:00+01junk\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00 junk", "invalid time \"2026-11-25 10:00:00 junk\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00x", "invalid time \"2026-11-25 10:00:00x\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00  Z", "invalid time \"2026-11-25 10:00:00  Z\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00 EST", "invalid time \"2026-11-25 10:00:00 EST\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00 Europe/Berlin",
     "invalid time \"2026-11-25 10:00:00 Europe/Berlin\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00+1", "invalid time \"2026-11-25 10:00:00+1\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00+013", "invalid time \"2026-11-25 10:00:00+013\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00+01:3", "invalid time \"2026-11-25 10:00:00+01:3\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00+", "invalid time \"2026-11-25 10:00:00+\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00.", "invalid time \"2026-11-25 10:00:00.\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00.Z", "invalid time \"2026-11-25 10:00:00.Z\": " ACCEPTED},
    {"UTC", "2026-11-25 10:00:00,5", "invalid time \"2026-11-25 10:00:00,5\": " ACCEPTED},
    {"UTC", "2026-11-25T10:00:00ZZ", "invalid time \"2026-11-25T10:00:00ZZ\": " ACCEPTED},
    {"UTC", "\x01\x02", "invalid time \"??\": " ACCEPTED},
    /* fields out of range */
    {"UTC", "2026-13-01 00:00:00Z",
     "invalid time \"2026-13-01 00:00:00Z\": month 13 is out of range (1-12)"},
    {"UTC", "2026-00-01 00:00:00",
     "invalid time \"2026-00-01 00:00:00\": month 0 is out of range "
     "(1-12)"},
    {"UTC", "2026-01-00 00:00:00",
     "invalid time \"2026-01-00 00:00:00\": day 0 is out of range for January 2026 (1-31)"},
    {"UTC", "2026-01-32 00:00:00",
     "invalid time \"2026-01-32 00:00:00\": day 32 is out of range for January 2026 (1-31)"},
    {"UTC", "2026-02-29 00:00:00",
     "invalid time \"2026-02-29 00:00:00\": day 29 is out of range for February 2026 (1-28)"},
    {"UTC", "2100-02-29 00:00:00Z",
     "invalid time \"2100-02-29 00:00:00Z\": day 29 is out of range for February 2100 (1-28)"},
    {"UTC", "2024-02-30 00:00:00Z",
     "invalid time \"2024-02-30 00:00:00Z\": day 30 is out of range for February 2024 (1-29)"},
    {"UTC", "2026-04-31 00:00:00",
     "invalid time \"2026-04-31 00:00:00\": day 31 is out of range for April 2026 (1-30)"},
    {"UTC", "2026-11-31 00:00:00",
     "invalid time \"2026-11-31 00:00:00\": day 31 is out of range for November 2026 (1-30)"},
    {"UTC", "2026-11-25 24:00:00Z",
     "invalid time \"2026-11-25 24:00:00Z\": hour 24 is out of range (0-23)"},
    {"UTC", "2026-11-25 10:60:00",
     "invalid time \"2026-11-25 10:60:00\": minute 60 is out of range (0-59)"},
    {"UTC", "2026-11-25 10:00:60",
     "invalid time \"2026-11-25 10:00:60\": second 60 is out of range (0-59)"},
    {"UTC", "2026-11-25 10:00:00+16",
     "invalid time \"2026-11-25 10:00:00+16\": UTC offset +16:00 is out of range (at most "
     "15:59)"},
    {"UTC", "2026-11-25 10:00:00-01:60",
     "invalid time \"2026-11-25 10:00:00-01:60\": UTC offset -01:60 is out of range (at most "
     "15:59)"},
    {"UTC", "2026-11-25 10:00:00.1234567Z",
     "invalid time \"2026-11-25 10:00:00.1234567Z\": at most 6 fractional digits (microseconds) "
     "are allowed"},
    {"UTC", "1969-12-31 23:59:59Z",
     "invalid time \"1969-12-31 23:59:59Z\": that is before "
     "1970"},
    {"UTC", "1968-12-31 23:59:59Z",
     "invalid time \"1968-12-31 23:59:59Z\": year 1968 is before 1970"},
    {"UTC", "0000-01-01 00:00:00", "invalid time \"0000-01-01 00:00:00\": year 0 is before 1970"},
    {"UTC", "1970-01-01 00:59:59+01",
     "invalid time \"1970-01-01 00:59:59+01\": that is before 1970"},
    {"Europe/Berlin", "1970-01-01 00:00:00",
     "invalid time \"1970-01-01 00:00:00\": that is before 1970"},
    /* local times a daylight-saving change skips */
    {"Europe/Berlin", "2026-03-29 02:30:00",
     "invalid time \"2026-03-29 02:30:00\": this local time does not exist in time zone "
     "Europe/Berlin (a daylight-saving change skips it)"},
    {"Europe/Berlin", "2026-03-29 02:00:00",
     "invalid time \"2026-03-29 02:00:00\": this local time does not exist in time zone "
     "Europe/Berlin (a daylight-saving change skips it)"},
    {"America/New_York", "2026-03-08 02:59:59",
     "invalid time \"2026-03-08 02:59:59\": this local time does not exist in time zone "
     "America/New_York (a daylight-saving change skips it)"},
    /* the input is shortened in the message */
    {"UTC", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "invalid time "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": " ACCEPTED},
};

static void test_bad_inputs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        set_tz(bad_cases[i].tz);
        int64_t v = -42;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_time_parse(bad_cases[i].in, NOW, &v, &err);
        if (rc != WV_EUSAGE || strcmp(err.msg, bad_cases[i].msg) != 0)
            fail_msg("case %zu TZ=%s: rc %d\n got:  %s\n want: %s", i, bad_cases[i].tz, rc, err.msg,
                     bad_cases[i].msg);
        assert_int_equal(err.code, WV_EUSAGE);
        assert_int_equal(v, -42);
        assert_null(strchr(err.msg, '\n'));
        assert_non_null(strstr(err.hint, "--to"));
    }
    /* NULL and over-long inputs */
    int64_t v = -42;
    wv_err err;
    assert_int_equal(wv_time_parse(NULL, NOW, &v, &err), WV_EUSAGE);
    char longin[300];
    memset(longin, '1', sizeof(longin) - 1);
    longin[sizeof(longin) - 1] = '\0';
    assert_int_equal(wv_time_parse(longin, NOW, &v, &err), WV_EUSAGE);
    assert_non_null(strstr(err.msg, "too long"));
    assert_int_equal(v, -42);
    /* a clock before 1970 */
    assert_int_equal(wv_time_parse("now", -5, &v, &err), WV_EUSAGE);
    assert_int_equal(wv_time_parse("1 second ago", 0, &v, &err), WV_EUSAGE);
    assert_int_equal(wv_time_parse("0 seconds ago", 0, &v, &err), 0);
    assert_int_equal(v, 0);
}

static void test_format(void **state)
{
    (void)state;
    static const struct {
        const char *tz;
        int64_t us;
        const char *local, *utc;
    } cases[] = {
        {"UTC", NOW * US, "2026-11-25 10:00:00+00", "2026-11-25 10:00:00+00"},
        {"Europe/Berlin", NOW * US, "2026-11-25 11:00:00+01", "2026-11-25 10:00:00+00"},
        {"Europe/Berlin", INT64_C(1782900000) * US, "2026-07-01 12:00:00+02",
         "2026-07-01 10:00:00+00"},
        {"America/New_York", NOW * US, "2026-11-25 05:00:00-05", "2026-11-25 10:00:00+00"},
        {"Asia/Kolkata", NOW * US, "2026-11-25 15:30:00+05:30", "2026-11-25 10:00:00+00"},
        {"Australia/Lord_Howe", INT64_C(1782900000) * US, "2026-07-01 20:30:00+10:30",
         "2026-07-01 10:00:00+00"},
        {"UTC", NOW * US + 500000, "2026-11-25 10:00:00.5+00", "2026-11-25 10:00:00.5+00"},
        {"UTC", NOW * US + 123456, "2026-11-25 10:00:00.123456+00",
         "2026-11-25 10:00:00.123456+00"},
        {"UTC", NOW * US + 1, "2026-11-25 10:00:00.000001+00", "2026-11-25 10:00:00.000001+00"},
        {"UTC", NOW * US + 120000, "2026-11-25 10:00:00.12+00", "2026-11-25 10:00:00.12+00"},
        {"UTC", 0, "1970-01-01 00:00:00+00", "1970-01-01 00:00:00+00"},
        {"UTC", -1, "1969-12-31 23:59:59.999999+00", "1969-12-31 23:59:59.999999+00"},
        {"UTC", INT64_C(951825600) * US, "2000-02-29 12:00:00+00", "2000-02-29 12:00:00+00"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[WV_TIME_FORMAT_LEN];
        set_tz(cases[i].tz);
        wv_time_format(cases[i].us, out, sizeof(out));
        if (strcmp(out, cases[i].local) != 0)
            fail_msg("TZ=%s %lld: got %s, want %s", cases[i].tz, (long long)cases[i].us, out,
                     cases[i].local);
        wv_time_format_utc(cases[i].us, out, sizeof(out));
        assert_string_equal(out, cases[i].utc);
    }
    /* a short buffer is truncated, never overrun */
    char small[8];
    memset(small, 'x', sizeof(small));
    set_tz("UTC");
    wv_time_format(NOW * US, small, sizeof(small));
    assert_string_equal(small, "2026-11");
}

/* Every formatted instant parses back to itself, in every zone, around DST changes too. */
static void test_round_trip(void **state)
{
    (void)state;
    static const char *const tzs[] = {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata",
                                      "Australia/Lord_Howe"};
    static const int64_t instants[] = {
        NOW,
        0,
        INT64_C(1774745999), /* Berlin: before and after the spring change */
        INT64_C(1774746000),
        INT64_C(1792888200), /* Berlin: 02:30 CEST, then 02:30 CET one hour later */
        INT64_C(1792891800),
        INT64_C(1793511000), /* New York: 01:30 EDT and 01:30 EST */
        INT64_C(1793514600),
        INT64_C(1709164800),
        INT64_C(4102444800), /* 2100-01-01 */
    };
    for (size_t z = 0; z < sizeof(tzs) / sizeof(tzs[0]); z++) {
        set_tz(tzs[z]);
        for (size_t i = 0; i < sizeof(instants) / sizeof(instants[0]); i++) {
            for (int64_t frac = 0; frac < US; frac += 333333) {
                char out[WV_TIME_FORMAT_LEN];
                int64_t us = instants[i] * US + frac;
                wv_time_format(us, out, sizeof(out));
                if (parse_ok(out) != us)
                    fail_msg("TZ=%s %s: parsed back as %lld, want %lld", tzs[z], out,
                             (long long)parse_ok(out), (long long)us);
                wv_time_format_utc(us, out, sizeof(out));
                assert_int_equal(parse_ok(out), us);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zone_free),  cmocka_unit_test(test_local_times),
        cmocka_unit_test(test_bad_inputs), cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
