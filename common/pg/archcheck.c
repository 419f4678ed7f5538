/* archcheck.c - archive_mode and archive_command against this wal-push: see pg/archcheck.h. */
#include "pg/archcheck.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"

#define MAX_WORDS 128

typedef struct words {
    char *w[MAX_WORDS];
    int sep[MAX_WORDS]; /* 1: a separator (;, &, |, &&, ||) rather than a word */
    int n;
} words;

static void add_word(words *ws, wv_buf *cur, int *have, int sep)
{
    if (ws->n >= MAX_WORDS)
        return;
    if (sep) {
        ws->w[ws->n] = NULL;
        ws->sep[ws->n++] = 1;
        return;
    }
    if (!*have)
        return;
    ws->w[ws->n] = wv_xstrdup(wv_buf_cstr(cur));
    ws->sep[ws->n++] = 0;
    wv_buf_reset(cur);
    *have = 0;
}

/* Split as sh would (without expansions). Returns 0, or -1 for an unterminated quote. */
static int split(const char *s, words *ws)
{
    wv_buf cur;
    wv_buf_init(&cur);
    int have = 0, rc = 0;
    memset(ws, 0, sizeof(*ws));
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == ' ' || c == '\t' || c == '\n') {
            add_word(ws, &cur, &have, 0);
        } else if (c == ';' || c == '&' || c == '|' || c == '(' || c == ')') {
            add_word(ws, &cur, &have, 0);
            add_word(ws, &cur, &have, 1);
            if ((c == '&' || c == '|') && p[1] == c)
                p++;
        } else if (c == '\\') {
            if (p[1]) {
                wv_buf_append(&cur, p + 1, 1);
                p++;
            }
            have = 1;
        } else if (c == '\'') {
            const char *e = strchr(p + 1, '\'');
            if (!e) {
                rc = -1;
                break;
            }
            wv_buf_append(&cur, p + 1, (size_t)(e - p - 1));
            have = 1;
            p = e;
        } else if (c == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                    p++;
                wv_buf_append(&cur, p, 1);
                p++;
            }
            if (!*p) {
                rc = -1;
                break;
            }
            have = 1;
        } else {
            wv_buf_append(&cur, p, 1);
            have = 1;
        }
    }
    if (rc == 0)
        add_word(ws, &cur, &have, 0);
    wv_buf_free(&cur);
    return rc;
}

static void words_free(words *ws)
{
    for (int i = 0; i < ws->n; i++)
        free(ws->w[i]);
}

static int is_assignment(const char *w)
{
    const char *eq = strchr(w, '=');
    if (!eq || eq == w)
        return 0;
    for (const char *p = w; p < eq; p++)
        if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (p > w && *p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

/* prog resolved to a real path (bare names through $PATH); 0 or -1. */
static int resolve_program(const char *prog, char *out)
{
    if (strchr(prog, '/'))
        return realpath(prog, out) ? 0 : -1;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char *copy = wv_xstrdup(path), *save = NULL;
    int rc = -1;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char cand[PATH_MAX];
        snprintf(cand, sizeof(cand), "%s/%s", d, prog);
        if (access(cand, X_OK) == 0 && realpath(cand, out)) {
            rc = 0;
            break;
        }
    }
    free(copy);
    return rc;
}

int wv_archcheck_wal_push_path(char *out, size_t outlen, wv_err *err)
{
    char self[PATH_MAX];
    if (!realpath("/proc/self/exe", self))
        return wv_err_errno(err, WV_EIO, errno, "could not resolve /proc/self/exe");
    char *slash = strrchr(self, '/');
    size_t dlen = (size_t)(slash - self);
    if (dlen + sizeof("/wal-push") > outlen)
        return wv_err_set(err, WV_EIO, "path of the running program too long: %s", self);
    memcpy(out, self, dlen);
    memcpy(out + dlen, "/wal-push", sizeof("/wal-push"));
    return 0;
}

/* What one simple command (words [b, e)) lacks to be ours: NULL when it is ours. */
static const char *judge(const words *ws, int b, int e, const char *wp_real, const char *cf_real,
                         char *detail, size_t dlen)
{
    const char *env_config = NULL;
    while (b < e && is_assignment(ws->w[b])) {
        if (strncmp(ws->w[b], "WALVAULT_CONFIG=", 16) == 0)
            env_config = ws->w[b] + 16;
        b++;
    }
    while (b < e && (strcmp(ws->w[b], "exec") == 0 || strcmp(ws->w[b], "env") == 0 ||
                     strcmp(ws->w[b], "/usr/bin/env") == 0 || is_assignment(ws->w[b]))) {
        if (strncmp(ws->w[b], "WALVAULT_CONFIG=", 16) == 0)
            env_config = ws->w[b] + 16;
        b++;
    }
    if (b >= e)
        return "program";
    char prog[PATH_MAX];
    if (resolve_program(ws->w[b], prog) != 0 || strcmp(prog, wp_real) != 0) {
        snprintf(detail, dlen, "%s", ws->w[b]);
        return "program";
    }
    const char *config = NULL;
    int have_p = 0;
    for (int i = b + 1; i < e; i++) {
        const char *a = ws->w[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < e)
            config = ws->w[++i];
        else if (strncmp(a, "--config=", 9) == 0)
            config = a + 9;
        else if (strncmp(a, "-c", 2) == 0 && a[2])
            config = a + 2;
        else if (strcmp(a, "%p") == 0)
            have_p = 1;
    }
    if (!config)
        config = env_config ? env_config : WV_CONFIG_DEFAULT_PATH;
    char creal[PATH_MAX];
    if (config[0] != '/' || !realpath(config, creal) || strcmp(creal, cf_real) != 0) {
        snprintf(detail, dlen, "%s", config);
        return "config";
    }
    if (!have_p)
        return "%p";
    return NULL;
}

int wv_archcheck_settings(const char *archive_mode, const char *archive_library,
                          const char *archive_command, const char *wal_push,
                          const char *config_file, unsigned flags, wv_err *err)
{
    char wp_real[PATH_MAX], cf_real[PATH_MAX];
    if (strcmp(archive_mode, "on") != 0 && strcmp(archive_mode, "always") != 0) {
        wv_err_set(err, WV_EREFUSED, "archive_mode is %s on the server: no WAL is archived",
                   archive_mode);
        return wv_err_hint(err, "ALTER SYSTEM SET archive_mode = on; then restart PostgreSQL "
                                "(archive_mode needs a restart)");
    }
    if (archive_library && archive_library[0]) {
        wv_err_set(err, WV_EREFUSED,
                   "archive_library is \"%s\" on the server: archive_command is not used",
                   archive_library);
        return wv_err_hint(err, "ALTER SYSTEM RESET archive_library; then restart PostgreSQL");
    }
    if (!realpath(wal_push, wp_real))
        snprintf(wp_real, sizeof(wp_real), "%s", wal_push);
    if (!realpath(config_file, cf_real))
        snprintf(cf_real, sizeof(cf_real), "%s", config_file);
    char want[PATH_MAX * 2 + 32];
    snprintf(want, sizeof(want), "%s -c %s %%p", wp_real, cf_real);
    if (!archive_command[0] || strcmp(archive_command, "(disabled)") == 0) {
        wv_err_set(err, WV_EREFUSED, "archive_command is empty on the server: no WAL is archived");
        return wv_err_hint(err, "ALTER SYSTEM SET archive_command = '%s'; SELECT pg_reload_conf();",
                           want);
    }
    words ws;
    if (split(archive_command, &ws) != 0) {
        words_free(&ws);
        wv_err_set(err, WV_EREFUSED, "archive_command \"%s\" has an unterminated quote",
                   archive_command);
        return wv_err_hint(err, "ALTER SYSTEM SET archive_command = '%s'; SELECT pg_reload_conf();",
                           want);
    }
    /* The best-matching simple command decides the message: config beats program. */
    const char *why = "program";
    char detail[PATH_MAX] = "", d[PATH_MAX];
    int b = 0;
    for (int i = 0; i <= ws.n; i++) {
        if (i < ws.n && !ws.sep[i])
            continue;
        if (i > b) {
            d[0] = '\0';
            const char *w = judge(&ws, b, i, wp_real, cf_real, d, sizeof(d));
            if (!w) {
                words_free(&ws);
                return 0;
            }
            int rank_new = strcmp(w, "%p") == 0 ? 2 : strcmp(w, "config") == 0 ? 1 : 0;
            int rank_old = strcmp(why, "%p") == 0 ? 2 : strcmp(why, "config") == 0 ? 1 : 0;
            if (rank_new > rank_old || (rank_new == rank_old && !detail[0])) {
                why = w;
                snprintf(detail, sizeof(detail), "%s", d);
            }
        }
        b = i + 1;
    }
    words_free(&ws);
    if (strcmp(why, "%p") == 0)
        wv_err_set(err, WV_EREFUSED, "archive_command \"%s\" does not pass %%p to wal-push",
                   archive_command);
    else if (strcmp(why, "config") == 0 && (flags & WV_ARCHCHECK_WARN_CONFIG)) {
        wv_log_warn("archive_command \"%s\" runs wal-push with another configuration file (%s, "
                    "not %s)",
                    archive_command, detail, cf_real);
        wv_log_warn("hint: unless it names the same repositories, the WAL of this backup will "
                    "not arrive; basebackup check tells; ALTER SYSTEM SET archive_command = "
                    "'%s'; SELECT pg_reload_conf();",
                    want);
        return 0;
    } else if (strcmp(why, "config") == 0)
        wv_err_set(err, WV_EREFUSED,
                   "archive_command \"%s\" runs wal-push with another configuration file (%s, "
                   "not %s)",
                   archive_command, detail, cf_real);
    else
        wv_err_set(err, WV_EREFUSED,
                   "archive_command \"%s\" does not run this installation's wal-push (%s)",
                   archive_command, wp_real);
    return wv_err_hint(err, "ALTER SYSTEM SET archive_command = '%s'; SELECT pg_reload_conf();",
                       want);
}

int wv_archcheck_server(wv_pgconn *c, const char *config_file, unsigned flags, wv_err *err)
{
    char mode[64], lib[1024], cmd[4096], wp[PATH_MAX];
    int rc = wv_pgrepl_show(c, "archive_mode", mode, sizeof(mode), err);
    if (rc == 0)
        rc = wv_pgrepl_show(c, "archive_library", lib, sizeof(lib), err);
    if (rc == 0)
        rc = wv_pgrepl_show(c, "archive_command", cmd, sizeof(cmd), err);
    if (rc == 0)
        rc = wv_archcheck_wal_push_path(wp, sizeof(wp), err);
    if (rc < 0)
        return rc;
    return wv_archcheck_settings(mode, lib, cmd, wp, config_file, flags, err);
}
