/*
 * timeparse.c - recovery target times.
 *
 * Times with a zone are computed directly (days from the civil date); local times go through
 * mktime() twice, once as standard time and once as daylight-saving time, and a candidate counts
 * only if localtime() gives back the very fields that were typed. That refuses the hour a
 * daylight-saving change skips (which mktime would silently move) and picks the earlier instant
 * of the hour that occurs twice.
 */
#include "core/timeparse.h"

#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define US_PER_SEC INT64_C(1000000)
#define INPUT_MAX  128

#define ACCEPTED                                                                                   \
    "expected \"now\", \"N seconds|minutes|hours|days|weeks ago\", \"YYYY-MM-DD HH:MM:SS\" "       \
    "(local time), \"YYYY-MM-DD\" (its midnight, local time), \"YYYY-MM-DD HH:MM:SS+HH[:MM]\" or " \
    "ISO 8601 \"YYYY-MM-DDTHH:MM:SSZ\""

static const char *const month_names[] = {"January",   "February", "March",    "April",
                                          "May",       "June",     "July",     "August",
                                          "September", "October",  "November", "December"};

/* The input as shown in messages: at most 64 characters, control characters as '?'. */
static void shown(const char *s, char out[72])
{
    size_t i, k = 0;
    for (i = 0; s[i] && k < 64; i++)
        out[k++] = (unsigned char)s[i] < ' ' || s[i] == 0x7f ? '?' : s[i];
    if (s[i]) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

static int bad(wv_err *err, const char *input, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(wv_err *err, const char *input, const char *fmt, ...)
{
    char what[512], in[72];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    shown(input, in);
    wv_err_set(err, WV_EUSAGE, "invalid time \"%s\": %s", in, what);
    wv_err_hint(err, "quote the time, e.g. --to \"30 minutes ago\" or --to \"2026-11-25 "
                     "10:00:00+01\"");
    return WV_EUSAGE;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Exactly n decimal digits at s. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool word_eq(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* "N unit ago" (already trimmed). Returns 1 parsed, 0 not this form, <0 error. */
static int parse_ago(const char *s, const char *input, int64_t now, int64_t *out, wv_err *err)
{
    static const struct {
        const char *name;
        int64_t secs;
    } units[] = {
        {"second", 1},   {"seconds", 1},  {"sec", 1},       {"secs", 1},       {"minute", 60},
        {"minutes", 60}, {"min", 60},     {"mins", 60},     {"hour", 3600},    {"hours", 3600},
        {"day", 86400},  {"days", 86400}, {"week", 604800}, {"weeks", 604800},
    };
    const char *p = s;
    uint64_t n = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        if (++nd > 12)
            return bad(err, input, "the number is too large");
        n = n * 10 + (uint64_t)(*p++ - '0');
    }
    if (nd == 0)
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *u = p;
    while (isalpha((unsigned char)*p))
        p++;
    size_t ulen = (size_t)(p - u);
    while (*p == ' ' || *p == '\t')
        p++;
    const char *a = p;
    while (isalpha((unsigned char)*p))
        p++;
    if (*p || !word_eq(a, (size_t)(p - a), "ago") || ulen == 0)
        return 0;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (!word_eq(u, ulen, units[i].name))
            continue;
        /* n < 10^12 and secs <= 604800: the product fits in 64 bits */
        int64_t back = (int64_t)n * units[i].secs;
        if (back > now)
            return bad(err, input, "that is before 1970");
        *out = (now - back) * US_PER_SEC;
        return 1;
    }
    return bad(err, input, "unknown unit \"%.*s\": expected seconds, minutes, hours, days or weeks",
               (int)(ulen > 20 ? 20 : ulen), u);
}

/* Local civil time -> seconds since the epoch; see the file comment. */
static int local_to_unix(const struct tm *in, int64_t *out)
{
    bool found = false;
    int64_t best = 0;
    for (int isdst = 0; isdst <= 1; isdst++) {
        struct tm t = *in, back;
        t.tm_isdst = isdst;
        time_t r = mktime(&t);
        if (!localtime_r(&r, &back))
            continue;
        if (back.tm_year != in->tm_year || back.tm_mon != in->tm_mon ||
            back.tm_mday != in->tm_mday || back.tm_hour != in->tm_hour ||
            back.tm_min != in->tm_min || back.tm_sec != in->tm_sec)
            continue;
        if (!found || (int64_t)r < best)
            best = (int64_t)r;
        found = true;
    }
    if (!found)
        return -1;
    *out = best;
    return 0;
}

static int parse_absolute(const char *s, const char *input, int64_t *out, wv_err *err)
{
    int y, mo, d, h, mi, sec, frac_us = 0;
    const char *p = s;

    if (!digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) || p[7] != '-' ||
        !digits(p + 8, 2, &d) || !(p[10] == ' ' || p[10] == 'T' || p[10] == 't') ||
        !digits(p + 11, 2, &h) || p[13] != ':' || !digits(p + 14, 2, &mi) || p[16] != ':' ||
        !digits(p + 17, 2, &sec))
        return bad(err, input, ACCEPTED);
    p += 19;
    if (*p == '.') {
        int nd = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (++nd > 6)
                return bad(err, input, "at most 6 fractional digits (microseconds) are allowed");
            frac_us = frac_us * 10 + (*p++ - '0');
        }
        if (nd == 0)
            return bad(err, input, ACCEPTED);
        for (; nd < 6; nd++)
            frac_us *= 10;
    }

    bool has_zone = false;
    int offset = 0; /* seconds east of UTC */
    const char *z = *p == ' ' ? p + 1 : p;
    if (*z == '+' || *z == '-') {
        int oh, om = 0;
        const char *q = z + 1;
        if (!digits(q, 2, &oh))
            return bad(err, input, ACCEPTED);
        q += 2;
        if (*q == ':') {
            if (!digits(q + 1, 2, &om))
                return bad(err, input, ACCEPTED);
            q += 3;
        } else if (*q >= '0' && *q <= '9') {
            if (!digits(q, 2, &om))
                return bad(err, input, ACCEPTED);
            q += 2;
        }
        if (*q)
            return bad(err, input, ACCEPTED);
        if (oh > 15 || om > 59)
            return bad(err, input, "UTC offset %c%02d:%02d is out of range (at most 15:59)", *z, oh,
                       om);
        offset = (oh * 3600 + om * 60) * (*z == '-' ? -1 : 1);
        has_zone = true;
    } else if (word_eq(z, strlen(z), "utc") || word_eq(z, strlen(z), "z")) {
        has_zone = true;
    } else if (*p) {
        return bad(err, input, ACCEPTED);
    }

    /* 1969 may still be 1970 in UTC: the instant is checked at the end */
    if (y < 1969)
        return bad(err, input, "year %d is before 1970", y);
    if (mo < 1 || mo > 12)
        return bad(err, input, "month %d is out of range (1-12)", mo);
    if (d < 1 || d > days_in_month(y, mo))
        return bad(err, input, "day %d is out of range for %s %d (1-%d)", d, month_names[mo - 1], y,
                   days_in_month(y, mo));
    if (h > 23)
        return bad(err, input, "hour %d is out of range (0-23)", h);
    if (mi > 59)
        return bad(err, input, "minute %d is out of range (0-59)", mi);
    if (sec > 59)
        return bad(err, input, "second %d is out of range (0-59)", sec);

    int64_t t;
    if (has_zone) {
        t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    } else {
        struct tm tm = {.tm_year = y - 1900,
                        .tm_mon = mo - 1,
                        .tm_mday = d,
                        .tm_hour = h,
                        .tm_min = mi,
                        .tm_sec = sec};
        if (local_to_unix(&tm, &t) != 0)
            return bad(err, input,
                       "this local time does not exist in time zone %s (a daylight-saving "
                       "change skips it)",
                       getenv("TZ") && *getenv("TZ") ? getenv("TZ") : "of this system");
    }
    if (t < 0)
        return bad(err, input, "that is before 1970");
    *out = t * US_PER_SEC + frac_us;
    return 0;
}

int wv_time_parse(const char *s, int64_t now_unix, int64_t *out_unix_us, wv_err *err)
{
    char buf[INPUT_MAX + 1];
    int64_t v = 0;
    if (!s)
        s = "";
    const char *b = s;
    while (*b == ' ' || *b == '\t')
        b++;
    size_t n = strlen(b);
    while (n > 0 && (b[n - 1] == ' ' || b[n - 1] == '\t'))
        n--;
    if (n == 0)
        return bad(err, s, ACCEPTED);
    if (n > INPUT_MAX)
        return bad(err, s, "too long; " ACCEPTED);
    memcpy(buf, b, n);
    buf[n] = '\0';

    if (word_eq(buf, n, "now")) {
        if (now_unix < 0)
            return bad(err, s, "the clock is before 1970");
        *out_unix_us = now_unix * US_PER_SEC;
        return 0;
    }
    /* A date alone ("2026-11-25") means its midnight, local time. */
    if (n == 10 && buf[4] == '-' && buf[7] == '-') {
        memcpy(buf + 10, " 00:00:00", 10);
        n += 9;
    }
    int rc = parse_ago(buf, s, now_unix, &v, err);
    if (rc < 0)
        return rc;
    if (rc == 0 && (rc = parse_absolute(buf, s, &v, err)) < 0)
        return rc;
    *out_unix_us = v;
    return 0;
}

static void format_tm(const struct tm *tm, long off, int frac_us, char *out, size_t len)
{
    char frac[8] = "", zone[32];
    if (frac_us) {
        snprintf(frac, sizeof(frac), ".%06d", frac_us);
        /* Drop trailing zeros; frac_us != 0 keeps at least one digit after the point. */
        for (size_t k = strlen(frac); k > 2 && frac[k - 1] == '0'; k--)
            frac[k - 1] = '\0';
    }
    char sign = off < 0 ? '-' : '+';
    long a = off < 0 ? -off : off;
    if (a % 60)
        snprintf(zone, sizeof(zone), "%c%02ld:%02ld:%02ld", sign, a / 3600, a % 3600 / 60, a % 60);
    else if (a % 3600)
        snprintf(zone, sizeof(zone), "%c%02ld:%02ld", sign, a / 3600, a % 3600 / 60);
    else
        snprintf(zone, sizeof(zone), "%c%02ld", sign, a / 3600);
    snprintf(out, len, "%04d-%02d-%02d %02d:%02d:%02d%s%s", tm->tm_year + 1900, tm->tm_mon + 1,
             tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec, frac, zone);
}

static void split_us(int64_t us, time_t *sec, int *frac)
{
    int64_t s = us / US_PER_SEC, f = us % US_PER_SEC;
    if (f < 0) {
        f += US_PER_SEC;
        s--;
    }
    *sec = (time_t)s;
    *frac = (int)f;
}

void wv_time_format(int64_t unix_us, char *out, size_t len)
{
    time_t t;
    int frac;
    struct tm tm;
    split_us(unix_us, &t, &frac);
    tzset();
    if (!localtime_r(&t, &tm)) {
        snprintf(out, len, "(invalid time)");
        return;
    }
    format_tm(&tm, tm.tm_gmtoff, frac, out, len);
}

void wv_time_format_utc(int64_t unix_us, char *out, size_t len)
{
    time_t t;
    int frac;
    struct tm tm;
    split_us(unix_us, &t, &frac);
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, len, "(invalid time)");
        return;
    }
    format_tm(&tm, 0, frac, out, len);
}
