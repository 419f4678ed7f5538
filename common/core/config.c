/*
 * config.c - walvault.conf loader.
 *
 * inih does the tokenising; this file feeds it through its own line reader so that every message
 * can name the line: the reader counts lines, tracks section headers (which inih does not report
 * for empty sections) and rejects indented continuation lines, and the key handler validates each
 * key as it arrives. A repository's keys depend on its type, which may come after them, so the
 * keys of a section are checked against the type as soon as the type is known, and required keys
 * are checked when the section ends. The first error stops the parse.
 */
#include "core/config.h"

#include "core/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T_POSIX (1u << WV_REPO_POSIX)
#define T_S3    (1u << WV_REPO_S3)
#define T_SSH   (1u << WV_REPO_SSH)

enum global_key {
    GK_COMPRESS,
    GK_COMPRESS_LEVEL,
    GK_PROCESS_MAX,
    GK_LOG_LEVEL,
    GK_ARCHIVE_TIMEOUT,
    GK_NOTIFY_COMMAND,
    GK_STATE_PATH,
    GK_DRILL_PATH,
    GK_PG_BINDIR,
    GK_LOG_FILE,
    GK_SPOOL_PATH,
    GK_ARCHIVE_QUEUE_MAX,
    GK_ENCRYPT_KEY_FILE,
    GK_ENCRYPT_PUBLIC_KEY_FILE,
    GK_ENCRYPT_PRIVATE_KEY_FILE,
    GK_ARCHIVE_ASYNC,
    GK_FETCH_AHEAD,
    GK_COUNT
};

static const char *const global_keys[GK_COUNT] = {
    [GK_COMPRESS] = "compress",
    [GK_COMPRESS_LEVEL] = "compress_level",
    [GK_PROCESS_MAX] = "process_max",
    [GK_LOG_LEVEL] = "log_level",
    [GK_ARCHIVE_TIMEOUT] = "archive_timeout",
    [GK_NOTIFY_COMMAND] = "notify_command",
    [GK_STATE_PATH] = "state_path",
    [GK_DRILL_PATH] = "drill_path",
    [GK_PG_BINDIR] = "pg_bindir",
    [GK_LOG_FILE] = "log_file",
    [GK_SPOOL_PATH] = "spool_path",
    [GK_ARCHIVE_QUEUE_MAX] = "archive_queue_max",
    [GK_ENCRYPT_KEY_FILE] = "encrypt_key_file",
    [GK_ENCRYPT_PUBLIC_KEY_FILE] = "encrypt_public_key_file",
    [GK_ENCRYPT_PRIVATE_KEY_FILE] = "encrypt_private_key_file",
    [GK_ARCHIVE_ASYNC] = "archive_async",
    [GK_FETCH_AHEAD] = "fetch_ahead",
};

static bool parse_int(const char *s, long lo, long hi, int *out)
{
    long v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
        if (v > hi)
            return false;
    }
    if (v < lo)
        return false;
    *out = (int)v;
    return true;
}

static bool has_space_or_ctrl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return true;
    return false;
}

/* An absolute path, trailing slashes removed (except for "/" itself). */
static char *abs_path(const char *v)
{
    if (v[0] != '/')
        return NULL;
    size_t n = strlen(v);
    while (n > 1 && v[n - 1] == '/')
        n--;
    return wv_xstrndup(v, n);
}

static char *url(const char *v)
{
    size_t skip;
    if (strncmp(v, "https://", 8) == 0)
        skip = 8;
    else if (strncmp(v, "http://", 7) == 0)
        skip = 7;
    else
        return NULL;
    if (!v[skip] || v[skip] == '/' || has_space_or_ctrl(v))
        return NULL;
    size_t n = strlen(v);
    while (n > skip && v[n - 1] == '/')
        n--;
    return wv_xstrndup(v, n);
}

/* A word: non-empty, no blanks or control characters, and (for host names and users passed to
 * ssh) not starting with '-', which ssh would read as an option. */
static char *word(const char *v, bool no_dash)
{
    if (!*v || has_space_or_ctrl(v) || (no_dash && v[0] == '-'))
        return NULL;
    return wv_xstrdup(v);
}

/* ---- the value of each repository key ---- */

static char *p_path(const char *v)
{
    return abs_path(v);
}

static char *p_url(const char *v)
{
    return url(v);
}

static char *p_word(const char *v)
{
    return word(v, false);
}

static char *p_bucket(const char *v)
{
    return strchr(v, '/') ? NULL : word(v, false);
}

/* A key prefix: leading and trailing slashes dropped; may be empty. */
static char *p_prefix(const char *v)
{
    size_t b = 0, e = strlen(v);
    if (has_space_or_ctrl(v))
        return NULL;
    while (v[b] == '/')
        b++;
    while (e > b && v[e - 1] == '/')
        e--;
    return wv_xstrndup(v + b, e - b);
}

static char *p_file(const char *v)
{
    char *p = abs_path(v);
    if (p && strcmp(p, "/") == 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* A host or user name passed to ssh: a word not starting with '-', without '@'. */
static char *p_ssh_name(const char *v)
{
    char *p = word(v, true);
    if (p && strchr(p, '@')) {
        free(p);
        return NULL;
    }
    return p;
}

static char *p_command(const char *v)
{
    return *v ? wv_xstrdup(v) : NULL;
}

enum repo_key {
    RK_TYPE,
    RK_PATH,
    RK_ENDPOINT,
    RK_REGION,
    RK_BUCKET,
    RK_PREFIX,
    RK_URI_STYLE,
    RK_CA_FILE,
    RK_ACCESS_KEY_ID,
    RK_SECRET_FILE,
    RK_HOST,
    RK_USER,
    RK_PORT,
    RK_SSH_COMMAND,
    RK_IDENTITY_FILE,
    RK_KNOWN_HOSTS,
    RK_REMOTE_COMMAND,
    RK_REQUIRED,
    RK_COUNT
};

static const char *const type_names[] = {
    [WV_REPO_POSIX] = "posix", [WV_REPO_S3] = "s3", [WV_REPO_SSH] = "ssh"};
static const char *const uri_styles[] = {"path", "host"}; /* uri_style_host 0, 1 */
static const char *const yes_no[] = {"yes", "no"};        /* optional 0, 1 */

/* How a key's value is read: a string (parser, field), one of a list of words (an int field, the
 * word's index plus a base), or a number in a range (an int field). */
typedef enum { V_STR, V_CHOICE, V_INT } value_kind;

#define R_FIELD(f) offsetof(wv_repo_config, f)
_Static_assert(sizeof(wv_repo_type) == sizeof(int), "type is stored as an int");

static const struct repo_key_def {
    const char *name;
    unsigned types; /* the repository types that accept the key */
    value_kind kind;
    size_t offset;                /* the field of wv_repo_config */
    char *(*parse)(const char *); /* V_STR: the stored value, or NULL for a bad one */
    const char *const *choices;   /* V_CHOICE: allowed words, from index base */
    int base, nchoices;
    long lo, hi; /* V_INT */
    const char *expected;
} repo_keys[RK_COUNT] = {
    [RK_TYPE] = {"type", T_POSIX | T_S3 | T_SSH, V_CHOICE, R_FIELD(type), NULL, type_names,
                 WV_REPO_POSIX, WV_REPO_SSH - WV_REPO_POSIX + 1, 0, 0, "posix, s3 or ssh"},
    [RK_PATH] = {"path", T_POSIX | T_SSH, V_STR, R_FIELD(path), p_path,
                 .expected = "an absolute path"},
    [RK_ENDPOINT] = {"endpoint", T_S3, V_STR, R_FIELD(endpoint), p_url,
                     .expected = "an http:// or https:// URL"},
    [RK_REGION] = {"region", T_S3, V_STR, R_FIELD(region), p_word,
                   .expected = "a region name without blanks"},
    [RK_BUCKET] = {"bucket", T_S3, V_STR, R_FIELD(bucket), p_bucket,
                   .expected = "a bucket name without blanks or '/'"},
    [RK_PREFIX] = {"prefix", T_S3, V_STR, R_FIELD(prefix), p_prefix,
                   .expected = "a key prefix without blanks"},
    [RK_URI_STYLE] = {"uri_style", T_S3, V_CHOICE, R_FIELD(uri_style_host), NULL, uri_styles, 0, 2,
                      .expected = "path or host"},
    [RK_CA_FILE] = {"ca_file", T_S3, V_STR, R_FIELD(ca_file), p_file,
                    .expected = "the absolute path of a file"},
    [RK_ACCESS_KEY_ID] = {"access_key_id", T_S3, V_STR, R_FIELD(access_key_id), p_word,
                          .expected = "a key id without blanks"},
    [RK_SECRET_FILE] = {"secret_access_key_file", T_S3, V_STR, R_FIELD(secret_access_key_file),
                        p_file, .expected = "the absolute path of a file"},
    [RK_HOST] = {"host", T_SSH, V_STR, R_FIELD(host), p_ssh_name,
                 .expected = "a host name (put the user name in \"user\")"},
    [RK_USER] = {"user", T_SSH, V_STR, R_FIELD(user), p_ssh_name, .expected = "a user name"},
    [RK_PORT] = {"port", T_SSH, V_INT, R_FIELD(port), .lo = 1, .hi = 65535,
                 .expected = "a port number from 1 to 65535"},
    [RK_SSH_COMMAND] = {"ssh_command", T_SSH, V_STR, R_FIELD(ssh_command), p_command,
                        .expected = "a command"},
    [RK_IDENTITY_FILE] = {"identity_file", T_SSH, V_STR, R_FIELD(identity_file), p_file,
                          .expected = "the absolute path of a file"},
    [RK_KNOWN_HOSTS] = {"known_hosts", T_SSH, V_STR, R_FIELD(known_hosts), p_file,
                        .expected = "the absolute path of a file"},
    [RK_REMOTE_COMMAND] = {"remote_command", T_SSH, V_STR, R_FIELD(remote_command), p_command,
                           .expected = "a command"},
    [RK_REQUIRED] = {"required", T_POSIX | T_S3 | T_SSH, V_CHOICE, R_FIELD(optional), NULL, yes_no,
                     0, 2, 0, 0, "yes or no"},
};

/* What a section of each type must contain, in the order they are reported. */
static const struct {
    wv_repo_type type;
    enum repo_key key;
    const char *why;
} required_keys[] = {
    {WV_REPO_POSIX, RK_PATH, "a posix repository needs an absolute path"},
    {WV_REPO_S3, RK_ENDPOINT, "an s3 repository needs an http:// or https:// endpoint URL"},
    {WV_REPO_S3, RK_REGION, "an s3 repository needs a region (e.g. us-east-1)"},
    {WV_REPO_S3, RK_BUCKET, "an s3 repository needs a bucket name"},
    {WV_REPO_SSH, RK_HOST, "an ssh repository needs the backup server's host name"},
    {WV_REPO_SSH, RK_PATH, "an ssh repository needs an absolute path on the backup server"},
};

enum section_kind { SEC_NONE, SEC_GLOBAL, SEC_REPO, SEC_RETENTION, SEC_MONITOR };

typedef struct parse_state {
    const char *name; /* file name in messages */
    const char *str;  /* source: a string ... */
    FILE *fp;         /* ... or a file */
    int read_errno;

    int lineno;    /* lines read so far: the line inih is working on */
    bool prev_key; /* the last non-comment line of this section was a key */

    enum section_kind sec;
    int repo_idx;    /* 0-based index of the current [repoN] */
    int global_line; /* line of [global], 0 if not seen */
    int global_key_line[GK_COUNT];
    int repo_line[WV_MAX_REPOS];
    int repo_key_line[WV_MAX_REPOS][RK_COUNT];

    wv_config *cfg; /* repos[] indexed by N-1 until the parse ends */
    bool failed;
    int err_line;
    wv_err err;
} parse_state;

static void failv(parse_state *ps, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void failv(parse_state *ps, int line, const char *fmt, va_list ap)
{
    char msg[WV_ERR_MSG_MAX];
    if (ps->failed)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    ps->failed = true;
    ps->err_line = line;
    if (line > 0)
        wv_err_set(&ps->err, WV_ECONFIG, "%s:%d: %s", ps->name, line, msg);
    else
        wv_err_set(&ps->err, WV_ECONFIG, "%s: %s", ps->name, msg);
}

static bool fail(parse_state *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error; later ones are dropped. Always returns false. */
static bool fail(parse_state *ps, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    failv(ps, line, fmt, ap);
    va_end(ap);
    return false;
}

static void hint(parse_state *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hint(parse_state *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err.hint, sizeof(ps->err.hint), fmt, ap);
    va_end(ap);
}

/* ---- values ---- */

/* A decimal integer in [lo, hi], digits only. */
/* ---- sections ---- */

static const char *section_name(parse_state *ps, char *buf, size_t len)
{
    if (ps->sec == SEC_GLOBAL)
        return "global";
    if (ps->sec == SEC_RETENTION)
        return "retention";
    if (ps->sec == SEC_MONITOR)
        return "monitor";
    snprintf(buf, len, "repo%d", ps->repo_idx + 1);
    return buf;
}

static void end_section(parse_state *ps)
{
    if (ps->failed || ps->sec != SEC_REPO)
        return;
    wv_repo_config *r = &ps->cfg->repos[ps->repo_idx];
    const int *lines = ps->repo_key_line[ps->repo_idx];
    int sline = ps->repo_line[ps->repo_idx];
    if (!lines[RK_TYPE]) {
        fail(ps, sline, "[%s] has no \"type\": set type = posix, s3 or ssh", r->name);
        hint(ps, "for a local directory: type = posix and path = /abs/path/to/repo");
        return;
    }
    for (size_t i = 0; i < sizeof(required_keys) / sizeof(required_keys[0]); i++) {
        if (required_keys[i].type == r->type && !lines[required_keys[i].key]) {
            fail(ps, sline, "[%s] has no \"%s\": %s", r->name, repo_keys[required_keys[i].key].name,
                 required_keys[i].why);
            return;
        }
    }
}

static bool is_comment_start(char c)
{
    return c == ';' || c == '#';
}

/* A section header line "[name]": checks the name and starts the section. */
static void begin_section(parse_state *ps, const char *name, size_t len)
{
    int line = ps->lineno;
    end_section(ps);
    if (ps->failed)
        return;
    ps->prev_key = false;
    if (len == 6 && memcmp(name, "global", 6) == 0) {
        if (ps->global_line) {
            fail(ps, line, "duplicate section [global] (first on line %d)", ps->global_line);
            return;
        }
        ps->sec = SEC_GLOBAL;
        ps->global_line = line;
        return;
    }
    if (len == 9 && memcmp(name, "retention", 9) == 0) {
        if (ps->cfg->retention.global.line) {
            fail(ps, line, "duplicate section [retention] (first on line %d)",
                 ps->cfg->retention.global.line);
            return;
        }
        ps->sec = SEC_RETENTION;
        ps->cfg->retention.global.line = line;
        return;
    }
    if (len == 7 && memcmp(name, "monitor", 7) == 0) {
        if (ps->cfg->monitor.line) {
            fail(ps, line, "duplicate section [monitor] (first on line %d)", ps->cfg->monitor.line);
            return;
        }
        ps->sec = SEC_MONITOR;
        ps->cfg->monitor.line = line;
        return;
    }
    if (len == 5 && memcmp(name, "repo", 4) == 0 && name[4] >= '1' &&
        name[4] <= '0' + WV_MAX_REPOS) {
        int idx = name[4] - '1';
        if (ps->repo_line[idx]) {
            fail(ps, line, "duplicate section [%.*s] (first on line %d)", (int)len, name,
                 ps->repo_line[idx]);
            return;
        }
        ps->sec = SEC_REPO;
        ps->repo_idx = idx;
        ps->repo_line[idx] = line;
        wv_repo_config *r = &ps->cfg->repos[idx];
        r->index = idx + 1;
        snprintf(r->name, sizeof(r->name), "repo%d", idx + 1);
        return;
    }
    fail(ps, line, "unknown section [%.*s]: expected [global] or [repo1] .. [repo%d]",
         (int)(len > 64 ? 64 : len), name, WV_MAX_REPOS);
}

/* ---- the line reader inih calls ---- */

static int next_char(parse_state *ps)
{
    if (ps->fp) {
        int c = getc(ps->fp);
        if (c == EOF && ferror(ps->fp))
            ps->read_errno = errno ? errno : EIO;
        return c;
    }
    if (!*ps->str)
        return EOF;
    return (unsigned char)*ps->str++;
}

static char *reader(char *str, int num, void *stream)
{
    parse_state *ps = stream;
    int i = 0, c = EOF;
    bool too_long = false;

    if (ps->failed || num < 3)
        return NULL;
    while ((c = next_char(ps)) != EOF) {
        if (i < num - 1)
            str[i++] = (char)c;
        else
            too_long = true;
        if (c == '\n')
            break;
    }
    if (i == 0 && c == EOF)
        return NULL;
    str[i] = '\0';
    ps->lineno++;
    if (too_long || (i == num - 1 && str[i - 1] != '\n' && c != EOF)) {
        fail(ps, ps->lineno, "line is too long (at most %d characters)", num - 2);
        return NULL;
    }

    const char *p = str;
    if (ps->lineno == 1 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    bool indented = *p == ' ' || *p == '\t';
    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p || *p == '\n' || *p == '\r' || is_comment_start(*p))
        return str;
    if (indented && ps->prev_key) {
        /* inih would append it to the previous key's value */
        char sname[16];
        fail(ps, ps->lineno,
             "unexpected indented line in [%s]: a value must fit on one line and "
             "a key must not be indented after another key",
             section_name(ps, sname, sizeof(sname)));
        return NULL;
    }
    if (*p == '[') {
        const char *end = strchr(p + 1, ']');
        if (!end)
            return str; /* inih reports the syntax error */
        const char *q = end + 1;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q && *q != '\n' && *q != '\r' && !is_comment_start(*q)) {
            fail(ps, ps->lineno, "unexpected text after section header [%.*s]",
                 (int)(end - p - 1 > 64 ? 64 : end - p - 1), p + 1);
            return NULL;
        }
        begin_section(ps, p + 1, (size_t)(end - p - 1));
        if (ps->failed)
            return NULL;
    }
    return str;
}

/* ---- keys ---- */

static void global_key(parse_state *ps, const char *key, const char *value)
{
    wv_config *cfg = ps->cfg;
    int line = ps->lineno;
    int k;
    for (k = 0; k < GK_COUNT; k++)
        if (strcmp(key, global_keys[k]) == 0)
            break;
    if (k == GK_COUNT) {
        fail(ps, line, "unknown key \"%s\" in [global]", key);
        hint(ps, "[global] accepts compress, compress_level, process_max, log_level, "
                 "archive_timeout, notify_command, state_path, drill_path, pg_bindir, "
                 "log_file, spool_path, archive_queue_max, archive_async, fetch_ahead, "
                 "encrypt_key_file, encrypt_public_key_file and encrypt_private_key_file");
        return;
    }
    if (ps->global_key_line[k]) {
        fail(ps, line, "duplicate key \"%s\" in [global] (first set on line %d)", key,
             ps->global_key_line[k]);
        return;
    }
    ps->global_key_line[k] = line;

    const char *expected = NULL;
    switch ((enum global_key)k) {
    case GK_COMPRESS:
        if (strcmp(value, "lz4") == 0)
            cfg->compress = WV_COMPRESS_LZ4;
        else if (strcmp(value, "none") == 0)
            cfg->compress = WV_COMPRESS_NONE;
        else
            expected = "lz4 or none";
        break;
    case GK_COMPRESS_LEVEL:
        if (!parse_int(value, 1, 12, &cfg->compress_level))
            expected = "an integer from 1 to 12";
        break;
    case GK_PROCESS_MAX:
        if (!parse_int(value, 1, 64, &cfg->process_max))
            expected = "an integer from 1 to 64";
        break;
    case GK_LOG_LEVEL:
        if (wv_log_level_parse(value, &cfg->log_level) != 0)
            expected = "error, warn, info or debug";
        break;
    case GK_ARCHIVE_TIMEOUT:
        if (!parse_int(value, 1, 86400, &cfg->archive_timeout))
            expected = "a number of seconds from 1 to 86400";
        break;
    case GK_NOTIFY_COMMAND:
        free(cfg->notify_command);
        if (!(cfg->notify_command = p_command(value)) || value[0] != '/')
            expected = "the absolute path of a program, then its arguments";
        break;
    case GK_STATE_PATH:
        free(cfg->state_path);
        if (!(cfg->state_path = abs_path(value)))
            expected = "an absolute path";
        break;
    case GK_LOG_FILE:
        free(cfg->log_file);
        if (!(cfg->log_file = abs_path(value)))
            expected = "an absolute path";
        break;
    case GK_DRILL_PATH:
        free(cfg->drill_path);
        if (!(cfg->drill_path = abs_path(value)))
            expected = "an absolute path";
        break;
    case GK_PG_BINDIR:
        free(cfg->pg_bindir);
        if (!(cfg->pg_bindir = abs_path(value)))
            expected = "an absolute path";
        break;
    case GK_SPOOL_PATH:
        free(cfg->spool_path);
        if (!(cfg->spool_path = abs_path(value)))
            expected = "an absolute path";
        break;
    case GK_ARCHIVE_QUEUE_MAX:
        if (strcmp(value, "off") == 0)
            cfg->archive_queue_max = 0;
        else if (wv_config_size_parse(value, &cfg->archive_queue_max) != 0)
            expected = "off or a size such as 8GiB, 512MiB or 64KiB";
        break;
    case GK_ENCRYPT_KEY_FILE:
    case GK_ENCRYPT_PUBLIC_KEY_FILE:
    case GK_ENCRYPT_PRIVATE_KEY_FILE: {
        char **f = k == GK_ENCRYPT_KEY_FILE          ? &cfg->encrypt_key_file
                   : k == GK_ENCRYPT_PUBLIC_KEY_FILE ? &cfg->encrypt_public_key_file
                                                     : &cfg->encrypt_private_key_file;
        free(*f);
        if (!(*f = abs_path(value)))
            expected = "the absolute path of a key file";
        break;
    }
    case GK_ARCHIVE_ASYNC: {
        if (strcmp(value, "on") == 0)
            cfg->archive_async = 1;
        else if (strcmp(value, "off") == 0)
            cfg->archive_async = 0;
        else
            expected = "on or off";
        break;
    }
    case GK_FETCH_AHEAD:
        if (strcmp(value, "0") == 0 || strcmp(value, "off") == 0)
            cfg->fetch_ahead = 0;
        else if (wv_config_size_parse(value, &cfg->fetch_ahead) != 0 ||
                 cfg->fetch_ahead > (UINT64_C(64) << 30))
            expected = "a size up to 64GiB, e.g. 64MiB (0 turns prefetch off)";
        break;
    case GK_COUNT:
        break;
    }
    if (expected)
        fail(ps, line, "bad value \"%s\" for key \"%s\" in [global]: expected %s", value, key,
             expected);
}

static void set_str(char **field, char *v)
{
    free(*field);
    *field = v;
}

static void not_for_type(parse_state *ps, int line, const char *key, const wv_repo_config *r)
{
    fail(ps, line, "key \"%s\" is not valid for a repository of type %s in [%s]", key,
         type_names[r->type], r->name);
}

/* Store value into the field of d; false for a value the key does not accept. */
static bool set_repo_value(wv_repo_config *r, const struct repo_key_def *d, const char *value)
{
    char *field = (char *)r + d->offset;
    switch (d->kind) {
    case V_STR: {
        char *v = d->parse(value);
        if (!v)
            return false;
        set_str((char **)(void *)field, v);
        return true;
    }
    case V_CHOICE:
        for (int i = 0; i < d->nchoices; i++)
            if (strcmp(value, d->choices[d->base + i]) == 0) {
                int n = d->base + i;
                memcpy(field, &n, sizeof(n));
                return true;
            }
        return false;
    case V_INT: {
        int n;
        if (!parse_int(value, d->lo, d->hi, &n))
            return false;
        memcpy(field, &n, sizeof(n));
        return true;
    }
    }
    return false;
}

/* A key of [retention] or a retention.* override of [repoN]: parsed in config_retention.c. */
static void retention_key(parse_state *ps, wv_retention_keys *rk, const char *section, int prefixed,
                          const char *key, const char *value)
{
    wv_err e;
    wv_err_clear(&e);
    if (wv_retention_config_key(rk, section, prefixed, key, value, ps->lineno, &e) != 0) {
        fail(ps, ps->lineno, "%s", e.msg);
        if (e.hint[0])
            hint(ps, "%s", e.hint);
    }
}

static void repo_key(parse_state *ps, const char *key, const char *value)
{
    wv_repo_config *r = &ps->cfg->repos[ps->repo_idx];
    int *lines = ps->repo_key_line[ps->repo_idx];
    int line = ps->lineno;
    int k;
    if (strncmp(key, "retention.", 10) == 0) {
        retention_key(ps, &ps->cfg->retention.repo[ps->repo_idx], r->name, 1, key + 10, value);
        return;
    }
    for (k = 0; k < RK_COUNT; k++)
        if (strcmp(key, repo_keys[k].name) == 0)
            break;
    if (k == RK_COUNT) {
        if (strcmp(key, "secret_access_key") == 0 || strcmp(key, "password") == 0) {
            fail(ps, line,
                 "key \"%s\" is not accepted in [%s]: secrets are never written in "
                 "the configuration file",
                 key, r->name);
            hint(ps, "put the secret alone in a file readable only by its owner (chmod 600) and "
                     "name it with secret_access_key_file");
            return;
        }
        fail(ps, line, "unknown key \"%s\" in [%s]", key, r->name);
        if (!lines[RK_TYPE] || r->type == WV_REPO_S3)
            hint(ps, "repository keys: type; posix: path; s3: endpoint, region, bucket, prefix, "
                     "uri_style, ca_file, access_key_id, secret_access_key_file; ssh: host, user, "
                     "port, path, ssh_command, identity_file, known_hosts, remote_command");
        else if (r->type == WV_REPO_POSIX)
            hint(ps, "a posix repository accepts type and path");
        else
            hint(ps, "an ssh repository accepts type, host, user, port, path, ssh_command, "
                     "identity_file, known_hosts and remote_command");
        return;
    }
    if (lines[k]) {
        fail(ps, line, "duplicate key \"%s\" in [%s] (first set on line %d)", key, r->name,
             lines[k]);
        return;
    }
    if (lines[RK_TYPE] && !(repo_keys[k].types & (1u << r->type))) {
        not_for_type(ps, line, key, r);
        return;
    }
    lines[k] = line;

    if (!set_repo_value(r, &repo_keys[k], value)) {
        fail(ps, line, "bad value \"%s\" for key \"%s\" in [%s]: expected %s", value, key, r->name,
             repo_keys[k].expected);
        return;
    }
    if (k == RK_TYPE) {
        /* Keys that came before the type: the first one the type does not accept. */
        int bad = -1;
        for (int j = 0; j < RK_COUNT; j++)
            if (lines[j] && !(repo_keys[j].types & (1u << r->type)) &&
                (bad < 0 || lines[j] < lines[bad]))
                bad = j;
        if (bad >= 0)
            not_for_type(ps, lines[bad], repo_keys[bad].name, r);
    }
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    parse_state *ps = user;
    (void)section; /* the reader tracks sections, with their full names and lines */
    if (ps->failed)
        return 0;
    ps->prev_key = true;
    if (!value)
        value = "";
    switch (ps->sec) {
    case SEC_NONE:
        fail(ps, ps->lineno,
             "key \"%s\" is outside any section: put it under [global] or a "
             "[repoN] section",
             key);
        break;
    case SEC_GLOBAL:
        global_key(ps, key, value);
        break;
    case SEC_REPO:
        repo_key(ps, key, value);
        break;
    case SEC_RETENTION:
        retention_key(ps, &ps->cfg->retention.global, "retention", 0, key, value);
        break;
    case SEC_MONITOR: {
        wv_err e;
        wv_err_clear(&e);
        if (wv_monitor_config_key(&ps->cfg->monitor, key, value, ps->lineno, &e) != 0) {
            fail(ps, ps->lineno, "%s", e.msg);
            if (e.hint[0])
                hint(ps, "%s", e.hint);
        }
        break;
    }
    }
    return !ps->failed;
}

/* ---- public ---- */

static void repo_free_fields(wv_repo_config *r)
{
    free(r->path);
    free(r->endpoint);
    free(r->region);
    free(r->bucket);
    free(r->prefix);
    free(r->ca_file);
    free(r->access_key_id);
    free(r->secret_access_key_file);
    free(r->host);
    free(r->user);
    free(r->ssh_command);
    free(r->identity_file);
    free(r->known_hosts);
    free(r->remote_command);
}

void wv_config_free(wv_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < WV_MAX_REPOS; i++)
        repo_free_fields(&cfg->repos[i]);
    free(cfg->drill_path);
    free(cfg->pg_bindir);
    free(cfg->file);
    free(cfg->notify_command);
    free(cfg->state_path);
    free(cfg->log_file);
    free(cfg->spool_path);
    free(cfg->encrypt_key_file);
    free(cfg->encrypt_public_key_file);
    free(cfg->encrypt_private_key_file);
    free(cfg);
}

static int default_process_max(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > 8 ? 8 : (int)n;
}

static int run_parse(parse_state *ps, wv_config **out, wv_err *err)
{
    wv_config *cfg = wv_xcalloc(1, sizeof(*cfg));
    cfg->file = wv_xstrdup(ps->name);
    cfg->compress = WV_COMPRESS_LZ4;
    cfg->compress_level = 1;
    cfg->process_max = default_process_max();
    cfg->log_level = WV_LOG_INFO;
    cfg->archive_timeout = 60;
    cfg->spool_path = wv_xstrdup(WV_CONFIG_DEFAULT_SPOOL_PATH);
    cfg->fetch_ahead = WV_CONFIG_DEFAULT_FETCH_AHEAD;
    wv_monitor_config_init(&cfg->monitor);
    ps->cfg = cfg;

    int ret = ini_parse_stream(reader, ps, handler, ps);
    if (ps->read_errno) {
        ps->failed = false;
        wv_err_errno(&ps->err, WV_ECONFIG, ps->read_errno,
                     "could not read configuration file \"%s\"", ps->name);
        ps->failed = true;
        ps->err_line = 0;
    } else if (ret == -2) {
        ps->failed = false;
        fail(ps, 0, "out of memory while parsing");
    } else if (ret > 0 && (!ps->failed || ret < ps->err_line)) {
        ps->failed = false;
        fail(ps, ret, "syntax error: expected \"[section]\", \"key = value\" or a comment");
    } else {
        end_section(ps);
    }
    if (!ps->failed) {
        int line = 0;
        wv_err e;
        if (wv_retention_config_check(&cfg->retention, &line, &e) != 0 ||
            wv_monitor_config_check(&cfg->monitor, &line, &e) != 0) {
            fail(ps, line, "%s", e.msg);
            if (e.hint[0])
                hint(ps, "%s", e.hint);
        }
    }

    if (!ps->failed && cfg->encrypt_key_file &&
        (cfg->encrypt_public_key_file || cfg->encrypt_private_key_file)) {
        fail(ps, ps->global_key_line[GK_ENCRYPT_KEY_FILE],
             "encrypt_key_file and encrypt_%s_key_file are both set in [global]: a repository is "
             "encrypted with a symmetric key or for a public key, not both",
             cfg->encrypt_public_key_file ? "public" : "private");
        hint(ps, "keep encrypt_key_file (symmetric), or the public and private key files");
    }
    if (!ps->failed) {
        int n = 0;
        for (int i = 0; i < WV_MAX_REPOS; i++) {
            if (!ps->repo_line[i])
                continue;
            wv_repo_config *r = &cfg->repos[i];
            if (r->type == WV_REPO_SSH) {
                if (!r->ssh_command)
                    r->ssh_command = wv_xstrdup("ssh");
                if (!r->remote_command)
                    r->remote_command = wv_xstrdup("walvault-remote");
            }
            if (r->type == WV_REPO_S3 && !r->prefix)
                r->prefix = wv_xstrdup("");
            if (n != i) {
                cfg->repos[n] = *r;
                memset(r, 0, sizeof(*r));
            }
            n++;
        }
        cfg->nrepos = n;
        for (int i = 0; i < n; i++) {
            cfg->repos[i].encrypt_key_file = cfg->encrypt_key_file;
            cfg->repos[i].encrypt_public_key_file = cfg->encrypt_public_key_file;
            cfg->repos[i].encrypt_private_key_file = cfg->encrypt_private_key_file;
        }
        int required = 0;
        for (int i = 0; i < n; i++)
            required += !cfg->repos[i].optional;
        if (n == 0) {
            fail(ps, 0, "no repository configured: add a [repo1] section");
            hint(ps, "a minimal file has three lines: \"[repo1]\", \"type = posix\" and "
                     "\"path = /abs/path/to/repo\"");
        } else if (required == 0) {
            fail(ps, 0,
                 "every repository has \"required = no\": at least one repository must be "
                 "required");
            hint(ps, "remove \"required = no\" from the repository that must always hold the WAL "
                     "(the local one)");
        }
    }
    if (ps->failed) {
        wv_config_free(cfg);
        if (err)
            *err = ps->err;
        return ps->err.code;
    }
    *out = cfg;
    if (err)
        wv_err_clear(err);
    return 0;
}

int wv_config_size_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {{"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return WV_ECONFIG;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return WV_ECONFIG;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(p, units[i].suffix) == 0) {
            if (v == 0 || v > (UINT64_MAX >> units[i].shift))
                return WV_ECONFIG;
            *out = v << units[i].shift;
            return 0;
        }
    return WV_ECONFIG;
}

const char *wv_config_path(const char *explicit_path)
{
    const char *env;
    if (explicit_path && *explicit_path)
        return explicit_path;
    env = getenv("WALVAULT_CONFIG");
    if (env && *env)
        return env;
    return WV_CONFIG_DEFAULT_PATH;
}

int wv_config_parse_string(const char *text, const char *name, wv_config **out, wv_err *err)
{
    parse_state ps = {.name = name ? name : "(string)", .str = text ? text : ""};
    return run_parse(&ps, out, err);
}

int wv_config_load(const char *path, wv_config **out, wv_err *err)
{
    struct stat st;
    if (!path)
        path = wv_config_path(NULL);
    FILE *fp = fopen(path, "re");
    if (!fp) {
        int e = errno;
        wv_err_errno(err, WV_ECONFIG, e, "could not open configuration file \"%s\"", path);
        wv_err_hint(err, e == ENOENT ? "pass -c FILE or set WALVAULT_CONFIG"
                                     : "check the file's permissions, or pass -c FILE or set "
                                       "WALVAULT_CONFIG");
        return WV_ECONFIG;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        wv_err_set(err, WV_ECONFIG, "configuration file \"%s\" is not a regular file", path);
        wv_err_hint(err, "pass -c FILE or set WALVAULT_CONFIG");
        return WV_ECONFIG;
    }
    parse_state ps = {.name = path, .fp = fp};
    int rc = run_parse(&ps, out, err);
    fclose(fp);
    return rc;
}

const wv_repo_config *wv_config_repo(const wv_config *cfg, int index)
{
    for (int i = 0; cfg && i < cfg->nrepos; i++)
        if (cfg->repos[i].index == index)
            return &cfg->repos[i];
    return NULL;
}

#define SECRET_MAX 4096

int wv_config_read_secret_file(const char *path, char **out, wv_err *err)
{
    struct stat st;
    char buf[SECRET_MAX + 1];
    size_t len = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return wv_err_errno(err, WV_ECONFIG, errno, "could not open secret file \"%s\"", path);
    if (fstat(fd, &st) != 0) {
        rc = wv_err_errno(err, WV_ECONFIG, errno, "could not stat secret file \"%s\"", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = wv_err_set(err, WV_ECONFIG, "secret file \"%s\" is not a regular file", path);
        goto out;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH)) {
        rc = wv_err_set(err, WV_ECONFIG, "secret file \"%s\" is readable by others: chmod 600 it",
                        path);
        goto out;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        rc = wv_err_set(err, WV_ECONFIG, "secret file \"%s\" is writable by others: chmod 600 it",
                        path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = wv_err_errno(err, WV_ECONFIG, errno, "could not read secret file \"%s\"", path);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > SECRET_MAX) {
            rc = wv_err_set(err, WV_ECONFIG, "secret file \"%s\" is larger than %d bytes", path,
                            SECRET_MAX);
            goto out;
        }
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (len == 0) {
        rc = wv_err_set(err, WV_ECONFIG, "secret file \"%s\" is empty", path);
        goto out;
    }
    if (memchr(buf, '\0', len)) {
        rc = wv_err_set(err, WV_ECONFIG, "secret file \"%s\" is not a text file", path);
        goto out;
    }
    if (memchr(buf, '\n', len)) {
        rc = wv_err_set(err, WV_ECONFIG, "secret file \"%s\" holds more than one line", path);
        wv_err_hint(err, "the file must hold the secret alone, on one line");
        goto out;
    }
    *out = wv_xstrndup(buf, len);
out:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return rc;
}
