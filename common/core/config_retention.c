/*
 * config_retention.c - the keys of [retention] and the retention.* overrides of [repoN], and
 * durations. See core/retention_config.h for the rules; config.c only routes keys here.
 */
#include "core/retention_config.h"

#include "core/config.h"

#include <stdio.h>
#include <string.h>

_Static_assert(WV_RETENTION_MAX_REPOS == WV_MAX_REPOS, "one override slot per [repoN]");

static const char *const key_names[WV_RETENTION_KEY_COUNT] = {
    [WV_RETENTION_KEY_DAILY] = "daily",
    [WV_RETENTION_KEY_WEEKLY] = "weekly",
    [WV_RETENTION_KEY_MONTHLY] = "monthly",
    [WV_RETENTION_KEY_WINDOW] = "window",
    [WV_RETENTION_KEY_AFTER_BACKUP] = "after_backup",
};

#define DURATION_EXPECTED                                                                          \
    "a duration: a positive integer and h, d, w or y (y = 365 days), at most 100y, e.g. 30d"

void wv_retention_policy_init(wv_retention_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->daily = p->weekly = p->monthly = p->window = WV_RETENTION_UNSET;
}

int wv_retention_policy_has_rules(const wv_retention_policy *p)
{
    return p->daily != WV_RETENTION_UNSET || p->weekly != WV_RETENTION_UNSET ||
           p->monthly != WV_RETENTION_UNSET || p->window != WV_RETENTION_UNSET || p->nlabels > 0;
}

int wv_retention_duration_parse(const char *s, int64_t *out)
{
    int64_t n = 0, unit;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return WV_ECONFIG;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > WV_RETENTION_AGE_MAX / 3600)
            return WV_ECONFIG;
    }
    switch (*p) {
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = 7 * 86400;
        break;
    case 'y':
        unit = 365 * 86400;
        break;
    default:
        return WV_ECONFIG;
    }
    if (p[1] != '\0' || n == 0 || n > WV_RETENTION_AGE_MAX / unit)
        return WV_ECONFIG;
    *out = n * unit;
    return 0;
}

void wv_retention_duration_format(int64_t seconds, char *out, size_t outlen)
{
    static const struct {
        int64_t unit;
        char c;
    } units[] = {{365 * 86400, 'y'}, {7 * 86400, 'w'}, {86400, 'd'}, {3600, 'h'}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (seconds > 0 && seconds % units[i].unit == 0) {
            snprintf(out, outlen, "%lld%c", (long long)(seconds / units[i].unit), units[i].c);
            return;
        }
    }
    snprintf(out, outlen, "%llds", (long long)seconds);
}

static int label_prefix_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= WV_RETENTION_PREFIX_MAX)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

static int bad_value(wv_err *err, const char *pfx, const char *key, const char *value,
                     const char *section, const char *expected)
{
    return wv_err_set(err, WV_ECONFIG, "bad value \"%s\" for key \"%s%s\" in [%s]: expected %s",
                      value, pfx, key, section, expected);
}

int wv_retention_config_key(wv_retention_keys *k, const char *section, int prefixed,
                            const char *key, const char *value, int line, wv_err *err)
{
    const char *pfx = prefixed ? "retention." : "";
    int64_t age;

    if (strncmp(key, "label.", 6) == 0) {
        const char *prefix = key + 6;
        int i;
        if (!label_prefix_valid(prefix)) {
            wv_err_set(err, WV_ECONFIG,
                       "bad key \"%s%s\" in [%s]: a label prefix must be 1 to %d "
                       "characters without blanks",
                       pfx, key, section, WV_RETENTION_PREFIX_MAX - 1);
            return wv_err_hint(err,
                               "e.g. %slabel.pre-migration = 90d keeps backups whose label "
                               "starts with \"pre-migration\" for 90 days",
                               pfx);
        }
        for (i = 0; i < k->p.nlabels; i++)
            if (strcmp(k->p.labels[i].prefix, prefix) == 0)
                return wv_err_set(err, WV_ECONFIG,
                                  "duplicate key \"%s%s\" in [%s] (first set on line %d)", pfx, key,
                                  section, k->label_line[i]);
        if (wv_retention_duration_parse(value, &age) != 0)
            return bad_value(err, pfx, key, value, section, DURATION_EXPECTED);
        if (k->p.nlabels == WV_RETENTION_LABELS_MAX)
            return wv_err_set(err, WV_ECONFIG, "too many label rules in [%s]: at most %d", section,
                              WV_RETENTION_LABELS_MAX);
        snprintf(k->p.labels[i].prefix, sizeof(k->p.labels[i].prefix), "%s", prefix);
        k->p.labels[i].age = age;
        k->label_line[i] = line;
        k->p.nlabels++;
        if (!k->line)
            k->line = line;
        return 0;
    }

    int idx;
    for (idx = 0; idx < WV_RETENTION_KEY_COUNT; idx++)
        if (strcmp(key, key_names[idx]) == 0)
            break;
    if (idx == WV_RETENTION_KEY_COUNT) {
        wv_err_set(err, WV_ECONFIG, "unknown key \"%s%s\" in [%s]", pfx, key, section);
        return wv_err_hint(err,
                           "%s accepts %sdaily, %sweekly, %smonthly, %swindow, "
                           "%slabel.PREFIX and %safter_backup",
                           prefixed ? "a repository" : "[retention]", pfx, pfx, pfx, pfx, pfx, pfx);
    }
    if (k->key_line[idx])
        return wv_err_set(err, WV_ECONFIG, "duplicate key \"%s%s\" in [%s] (first set on line %d)",
                          pfx, key, section, k->key_line[idx]);
    if (idx == WV_RETENTION_KEY_AFTER_BACKUP) {
        if (strcmp(value, "yes") == 0 || strcmp(value, "on") == 0)
            k->p.after_backup = 1;
        else if (strcmp(value, "no") == 0 || strcmp(value, "off") == 0)
            k->p.after_backup = 0;
        else
            return bad_value(err, pfx, key, value, section, "yes or no");
    } else {
        if (wv_retention_duration_parse(value, &age) != 0)
            return bad_value(err, pfx, key, value, section, DURATION_EXPECTED);
        int64_t *field = idx == WV_RETENTION_KEY_DAILY     ? &k->p.daily
                         : idx == WV_RETENTION_KEY_WEEKLY  ? &k->p.weekly
                         : idx == WV_RETENTION_KEY_MONTHLY ? &k->p.monthly
                                                           : &k->p.window;
        *field = age;
    }
    k->key_line[idx] = line;
    if (!k->line)
        k->line = line;
    return 0;
}

/* Apply the keys `k` sets onto out. Returns the number of labels out would need. */
static int apply(wv_retention_policy *out, const wv_retention_keys *k, int want)
{
    if (!k || !k->line)
        return want;
    if (k->key_line[WV_RETENTION_KEY_DAILY])
        out->daily = k->p.daily;
    if (k->key_line[WV_RETENTION_KEY_WEEKLY])
        out->weekly = k->p.weekly;
    if (k->key_line[WV_RETENTION_KEY_MONTHLY])
        out->monthly = k->p.monthly;
    if (k->key_line[WV_RETENTION_KEY_WINDOW])
        out->window = k->p.window;
    if (k->key_line[WV_RETENTION_KEY_AFTER_BACKUP])
        out->after_backup = k->p.after_backup;
    for (int i = 0; i < k->p.nlabels; i++) {
        int j;
        for (j = 0; j < out->nlabels; j++)
            if (strcmp(out->labels[j].prefix, k->p.labels[i].prefix) == 0)
                break;
        if (j < out->nlabels) {
            out->labels[j].age = k->p.labels[i].age;
            continue;
        }
        if (out->nlabels < WV_RETENTION_LABELS_MAX)
            out->labels[out->nlabels++] = k->p.labels[i];
        want++;
    }
    return want;
}

/* [retention], then a repository's overrides. Returns the number of labels the result needs. */
static int merge(const wv_retention_keys *base, const wv_retention_keys *over,
                 wv_retention_policy *out)
{
    wv_retention_policy_init(out);
    return apply(out, over, apply(out, base, 0));
}

int wv_retention_config_check(const wv_retention_config *rc, int *line, wv_err *err)
{
    wv_retention_policy p;
    merge(&rc->global, NULL, &p);
    if (rc->global.line && !wv_retention_policy_has_rules(&p)) {
        *line = rc->global.line;
        wv_err_set(err, WV_ECONFIG,
                   "[retention] has no rule: it would expire every backup but "
                   "the newest");
        return wv_err_hint(err, "set at least one of daily, weekly, monthly, window or "
                                "label.PREFIX, or remove the section to expire nothing");
    }
    for (int i = 0; i < WV_RETENTION_MAX_REPOS; i++) {
        const wv_retention_keys *o = &rc->repo[i];
        if (!o->line)
            continue;
        if (merge(&rc->global, o, &p) > WV_RETENTION_LABELS_MAX) {
            *line = o->line;
            return wv_err_set(err, WV_ECONFIG,
                              "too many label rules for [repo%d] with [retention]: at most %d",
                              i + 1, WV_RETENTION_LABELS_MAX);
        }
        if (!wv_retention_policy_has_rules(&p)) {
            *line = o->line;
            wv_err_set(err, WV_ECONFIG,
                       "[repo%d] has retention settings but no retention rule: it would expire "
                       "every backup but the newest",
                       i + 1);
            return wv_err_hint(err, "set retention.daily, retention.weekly, retention.monthly, "
                                    "retention.window or retention.label.PREFIX there or in "
                                    "[retention]");
        }
    }
    wv_err_clear(err);
    return 0;
}

int wv_retention_config_for_repo(const wv_retention_config *rc, int index, wv_retention_policy *out)
{
    const wv_retention_keys *o = NULL;
    if (index >= 1 && index <= WV_RETENTION_MAX_REPOS)
        o = &rc->repo[index - 1];
    merge(&rc->global, o, out);
    return wv_retention_policy_has_rules(out);
}
