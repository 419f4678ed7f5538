/* config_monitor.c - the [monitor] section: see core/monitor_config.h. */
#include "core/monitor_config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define DURATION "a duration: a positive integer and s, m, h or d, at most 365d, e.g. 26h"

static const char *const key_names[WV_MONITOR_KEY_COUNT] = {
    [WV_MONITOR_KEY_BACKUP_MAX_AGE] = "backup_max_age",
    [WV_MONITOR_KEY_BACKUP_WARN_AGE] = "backup_warn_age",
    [WV_MONITOR_KEY_WAL_MAX_AGE] = "wal_max_age",
    [WV_MONITOR_KEY_WAL_WARN_AGE] = "wal_warn_age",
    [WV_MONITOR_KEY_CHECK_TIMEOUT] = "check_timeout",
};

void wv_monitor_config_init(wv_monitor_config *m)
{
    memset(m, 0, sizeof(*m));
    m->backup_max_age = 26 * 3600;
    m->backup_warn_age = 25 * 3600;
    m->wal_max_age = 3600;
    m->wal_warn_age = 15 * 60;
    m->check_timeout = 0;
}

int wv_monitor_duration_parse(const char *s, int64_t *out)
{
    int64_t n = 0;
    const char *p = s;
    if (*p < '1' || *p > '9')
        return WV_ECONFIG;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > WV_MONITOR_AGE_MAX)
            return WV_ECONFIG;
    }
    int64_t unit;
    switch (*p) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return WV_ECONFIG;
    }
    if (p[1] != '\0' || n * unit > WV_MONITOR_AGE_MAX)
        return WV_ECONFIG;
    *out = n * unit;
    return 0;
}

void wv_monitor_duration_format(int64_t seconds, char *out, size_t outlen)
{
    if (seconds > 0 && seconds % 86400 == 0)
        snprintf(out, outlen, "%" PRId64 "d", seconds / 86400);
    else if (seconds > 0 && seconds % 3600 == 0)
        snprintf(out, outlen, "%" PRId64 "h", seconds / 3600);
    else if (seconds > 0 && seconds % 60 == 0)
        snprintf(out, outlen, "%" PRId64 "m", seconds / 60);
    else
        snprintf(out, outlen, "%" PRId64 "s", seconds);
}

int wv_monitor_config_key(wv_monitor_config *m, const char *key, const char *value, int line,
                          wv_err *err)
{
    int k;
    for (k = 0; k < WV_MONITOR_KEY_COUNT; k++)
        if (strcmp(key, key_names[k]) == 0)
            break;
    if (k == WV_MONITOR_KEY_COUNT) {
        wv_err_set(err, WV_ECONFIG, "unknown key \"%s\" in [monitor]", key);
        return wv_err_hint(err, "[monitor] accepts backup_max_age, backup_warn_age, wal_max_age, "
                                "wal_warn_age and check_timeout");
    }
    if (m->key_line[k])
        return wv_err_set(err, WV_ECONFIG,
                          "duplicate key \"%s\" in [monitor] (first set on line %d)", key,
                          m->key_line[k]);
    int64_t v;
    if (wv_monitor_duration_parse(value, &v) != 0)
        return wv_err_set(err, WV_ECONFIG,
                          "bad value \"%s\" for key \"%s\" in [monitor]: expected %s", value, key,
                          DURATION);
    m->key_line[k] = line;
    switch ((enum wv_monitor_key)k) {
    case WV_MONITOR_KEY_BACKUP_MAX_AGE:
        m->backup_max_age = v;
        break;
    case WV_MONITOR_KEY_BACKUP_WARN_AGE:
        m->backup_warn_age = v;
        break;
    case WV_MONITOR_KEY_WAL_MAX_AGE:
        m->wal_max_age = v;
        break;
    case WV_MONITOR_KEY_WAL_WARN_AGE:
        m->wal_warn_age = v;
        break;
    case WV_MONITOR_KEY_CHECK_TIMEOUT:
        m->check_timeout = v;
        break;
    case WV_MONITOR_KEY_COUNT:
        break;
    }
    return 0;
}

/* A warning age not below its critical age: named on the line of whichever of the two was set
 * last in the file (the one a default did not decide). */
static int pair_check(const wv_monitor_config *m, int warn_key, int max_key, int64_t warn,
                      int64_t max, int *line, wv_err *err)
{
    if (warn < max)
        return 0;
    int wl = m->key_line[warn_key], ml = m->key_line[max_key];
    *line = wl > ml ? wl : ml;
    char a[32], b[32];
    wv_monitor_duration_format(warn, a, sizeof(a));
    wv_monitor_duration_format(max, b, sizeof(b));
    wv_err_set(err, WV_ECONFIG, "%s = %s is not below %s = %s in [monitor]", key_names[warn_key], a,
               key_names[max_key], b);
    return wv_err_hint(err, "a warning age must be shorter than its critical age; set both");
}

int wv_monitor_config_check(const wv_monitor_config *m, int *line, wv_err *err)
{
    int rc = pair_check(m, WV_MONITOR_KEY_BACKUP_WARN_AGE, WV_MONITOR_KEY_BACKUP_MAX_AGE,
                        m->backup_warn_age, m->backup_max_age, line, err);
    if (rc == 0)
        rc = pair_check(m, WV_MONITOR_KEY_WAL_WARN_AGE, WV_MONITOR_KEY_WAL_MAX_AGE, m->wal_warn_age,
                        m->wal_max_age, line, err);
    return rc;
}
