/*
 * fuzz_timeparse.c - recovery target times (common/core/timeparse.c).
 *
 * Input: u8 time zone choice, u32 "now" (seconds since 1970), then the text of --to.
 * Invariants: a failure is WV_EUSAGE with a one-line message that quotes the input without
 * control characters and leaves the result untouched; a success is an instant at or after 1970;
 * and the instant, written by wv_time_format (local time,
 * with its offset) and by wv_time_format_utc, parses back to itself. Parsing is deterministic.
 */
#include <time.h>

#include "core/timeparse.h"
#include "fuzz.h"

static const char *const zones[] = {"UTC",          "Europe/Berlin",       "America/New_York",
                                    "Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int zone = -1;
    fz_in in = {data, size};
    int z = fz_u8(&in) % (int)(sizeof(zones) / sizeof(zones[0]));
    int64_t now = fz_u32(&in);
    if (z != zone) {
        setenv("TZ", zones[z], 1);
        tzset();
        zone = z;
    }
    char *s = fz_strndup(in.p, in.n);
    const int64_t untouched = INT64_C(-123456789);
    int64_t us = untouched, us2 = untouched;
    wv_err err;
    int rc = wv_time_parse(s, now, &us, &err);
    if (rc < 0) {
        fz_check_err(&err, rc);
        FZ_CHECK(rc == WV_EUSAGE, "code %d: %s", rc, err.msg);
        FZ_CHECK(us == untouched, "%s", "a failed parse wrote its result");
        for (const char *p = err.msg; *p; p++)
            FZ_CHECK((unsigned char)*p >= ' ' && *p != 0x7f, "control character in \"%s\"",
                     err.msg);
        FZ_CHECK(err.hint[0], "no hint: %s", err.msg);
        free(s);
        return 0;
    }
    FZ_CHECK(us >= 0, "instant %lld before 1970 from \"%s\"", (long long)us, s);
    FZ_CHECK(wv_time_parse(s, now, &us2, &err) == 0 && us2 == us, "%s", "not deterministic");

    char out[WV_TIME_FORMAT_LEN];
    wv_time_format_utc(us, out, sizeof(out));
    rc = wv_time_parse(out, now, &us2, &err);
    FZ_CHECK(rc == 0 && us2 == us, "\"%s\" -> %lld -> \"%s\" -> %lld (%s)", s, (long long)us, out,
             (long long)us2, rc ? err.msg : "");
    wv_time_format(us, out, sizeof(out));
    rc = wv_time_parse(out, now, &us2, &err);
    FZ_CHECK(rc == 0 && us2 == us, "\"%s\" -> %lld -> \"%s\" -> %lld in %s (%s)", s, (long long)us,
             out, (long long)us2, zones[z], rc ? err.msg : "");
    free(s);
    return 0;
}
