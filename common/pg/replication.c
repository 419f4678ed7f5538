/*
 * replication.c - libpq replication client. BASE_BACKUP uses the protocol of PostgreSQL 15 to 18
 * (the same in all four; 17 added options, INCREMENTAL among them, that are not used): two result sets
 * (start position; tablespaces), one COPY OUT whose CopyData messages start with a type byte
 * ('n' new archive: name, location; 'd' data; 'p' progress: int64; 'm' manifest follows), and a
 * final result set with the end position.
 */
#include "pg/replication.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/buf.h"
#include "pg/walname.h"

struct wv_pgconn {
    PGconn *conn;
    int version;
    uint64_t system_id; /* from IDENTIFY_SYSTEM; 0 until asked */
};

/* libpq's message as one line: newlines folded, trailing blanks dropped. */
/* libpq's multi-line messages as one line (see replication.h). */
void wv_pg_one_line(const char *in, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; in && in[i] && j + 1 < outlen; i++) {
        char ch = in[i];
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            if (j > 0 && out[j - 1] != ' ' && in[i + 1])
                out[j++] = ' ';
            continue;
        }
        out[j++] = ch;
    }
    while (j > 0 && out[j - 1] == ' ')
        j--;
    out[j] = '\0';
}

static int pg_fail(wv_pgconn *c, wv_err *err, const char *what)
{
    char msg[768];
    wv_pg_one_line(PQerrorMessage(c->conn), msg, sizeof(msg));
    return wv_err_set(err, WV_EPG, "%s: %s", what, msg[0] ? msg : "no message from the server");
}

static int res_fail(wv_pgconn *c, PGresult *res, wv_err *err, const char *what)
{
    char msg[768];
    wv_pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c->conn), msg, sizeof(msg));
    if (!msg[0])
        wv_pg_one_line(PQerrorMessage(c->conn), msg, sizeof(msg));
    return wv_err_set(err, WV_EPG, "%s: %s", what, msg[0] ? msg : "unexpected server response");
}

int wv_pg_connstr_check(const char *connstr, int *has_replication, wv_err *err)
{
    if (has_replication)
        *has_replication = 0;
    if (!connstr || !*connstr)
        return 0;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(connstr, &perr);
    if (!opts) {
        char msg[512];
        wv_pg_one_line(perr, msg, sizeof(msg));
        PQfreemem(perr);
        return wv_err_set(err, WV_EUSAGE, "invalid connection string: %s", msg);
    }
    int has_password = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
            has_password = 1;
        if (has_replication && strcmp(o->keyword, "replication") == 0 && o->val && *o->val)
            *has_replication = 1;
    }
    PQconninfoFree(opts);
    if (!has_password)
        return 0;
    wv_err_set(err, WV_EUSAGE, "the connection string contains a password");
    return wv_err_hint(err, "secrets are never accepted on the command line: use ~/.pgpass, "
                            "PGPASSFILE or a service file");
}

int wv_pgrepl_connect(const char *connstr, wv_pgconn **out, wv_err *err)
{
    int have_replication = 0;
    int rc = wv_pg_connstr_check(connstr, &have_replication, err);
    if (rc < 0)
        return rc;
    const char *keys[4], *vals[4];
    int n = 0;
    if (connstr && *connstr) {
        keys[n] = "dbname";
        vals[n++] = connstr;
    }
    if (!have_replication) {
        keys[n] = "replication";
        vals[n++] = "true";
    }
    keys[n] = "fallback_application_name";
    vals[n++] = "walvault";
    keys[n] = NULL;
    vals[n] = NULL;
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn)
        return wv_err_set(err, WV_EPG, "could not connect to the server: out of memory");
    wv_pgconn *c = wv_xcalloc(1, sizeof(*c));
    c->conn = conn;
    if (PQstatus(conn) != CONNECTION_OK) {
        rc = pg_fail(c, err, "could not connect to the server");
        wv_err_hint(err, "check -d, the PG* environment variables and pg_hba.conf (a "
                         "\"replication\" entry is needed)");
        wv_pgrepl_close(c);
        return rc;
    }
    c->version = PQserverVersion(conn);
    if (c->version / 10000 > WV_PGREPL_MAX_MAJOR) {
        wv_err_set(err, WV_EPG,
                   "PostgreSQL server version %d.%d is not supported: basebackup knows PostgreSQL "
                   "15 to %d",
                   c->version / 10000, c->version % 10000, WV_PGREPL_MAX_MAJOR);
        wv_err_hint(err,
                    "its WAL and backup formats are not known to this walvault: use a "
                    "release that supports PostgreSQL %d",
                    c->version / 10000);
        wv_pgrepl_close(c);
        return WV_EPG;
    }
    if (c->version < WV_PGREPL_MIN_VERSION) {
        wv_err_set(err, WV_EPG,
                   "PostgreSQL server version %d.%d is not supported: basebackup "
                   "needs PostgreSQL 15 or newer",
                   c->version / 10000,
                   c->version >= 100000 ? c->version % 10000 : (c->version / 100) % 100);
        wv_pgrepl_close(c);
        return WV_EPG;
    }
    *out = c;
    return 0;
}

void wv_pgrepl_close(wv_pgconn *c)
{
    if (!c)
        return;
    PQfinish(c->conn);
    free(c);
}

int wv_pgrepl_server_version(const wv_pgconn *c)
{
    return c->version;
}

int wv_pgrepl_identify_system(wv_pgconn *c, wv_pg_system *out, wv_err *err)
{
    PGresult *res = PQexec(c->conn, "IDENTIFY_SYSTEM");
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = res_fail(c, res, err, "IDENTIFY_SYSTEM failed");
        goto out;
    }
    if (PQntuples(res) != 1 || PQnfields(res) < 3) {
        rc = wv_err_set(err, WV_EPG,
                        "IDENTIFY_SYSTEM returned %d rows and %d fields, expected 1 "
                        "row with at least 3 fields",
                        PQntuples(res), PQnfields(res));
        goto out;
    }
    char *end;
    const char *sid = PQgetvalue(res, 0, 0);
    out->system_id = strtoull(sid, &end, 10);
    if (!*sid || *end)
        rc = wv_err_set(err, WV_EPG, "IDENTIFY_SYSTEM: bad system identifier \"%s\"", sid);
    const char *tli = PQgetvalue(res, 0, 1);
    out->timeline = (uint32_t)strtoul(tli, &end, 10);
    if (rc == 0 && (!*tli || *end || out->timeline == 0))
        rc = wv_err_set(err, WV_EPG, "IDENTIFY_SYSTEM: bad timeline \"%s\"", tli);
    if (rc == 0 && wv_lsn_parse(PQgetvalue(res, 0, 2), &out->xlogpos) < 0)
        rc = wv_err_set(err, WV_EPG, "IDENTIFY_SYSTEM: bad position \"%s\"", PQgetvalue(res, 0, 2));
    if (rc == 0)
        c->system_id = out->system_id;
out:
    PQclear(res);
    return rc;
}

int wv_pgrepl_show(wv_pgconn *c, const char *name, char *out, size_t outlen, wv_err *err)
{
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9')))
            return wv_err_set(err, WV_EUSAGE, "invalid setting name \"%s\"", name);
    char *q = wv_xasprintf("SHOW %s", name);
    PGresult *res = PQexec(c->conn, q);
    free(q);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 1) {
        char what[128];
        snprintf(what, sizeof(what), "SHOW %s failed", name);
        rc = res_fail(c, res, err, what);
    } else {
        snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return rc;
}

int wv_pgrepl_wal_segsize(wv_pgconn *c, uint64_t *out, wv_err *err)
{
    char v[64];
    int rc = wv_pgrepl_show(c, "wal_segment_size", v, sizeof(v), err);
    if (rc < 0)
        return rc;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    uint64_t mult = 1;
    if (strcmp(end, "kB") == 0)
        mult = 1024;
    else if (strcmp(end, "MB") == 0)
        mult = 1024 * 1024;
    else if (strcmp(end, "GB") == 0)
        mult = 1024 * 1024 * 1024;
    else if (*end)
        mult = 0;
    uint64_t size = (uint64_t)n * mult;
    if (end == v || !wv_wal_segsize_valid(size))
        return wv_err_set(err, WV_EPG, "unexpected wal_segment_size \"%s\"", v);
    *out = size;
    return 0;
}

/* --- PostgreSQL's backup_manifest head ------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

int wv_pg_manifest_head_parse(const char *buf, size_t len, wv_pg_manifest_head *out, wv_err *err)
{
    const char *p = buf, *end = buf + len;
    memset(out, 0, sizeof(*out));
    int have_sysid = 0;
    p = skip_ws(p, end);
    if (p == end || *p++ != '{')
        return wv_err_set(err, WV_EPG, "the server's backup manifest does not start with '{'");
    /* Members "key": integer, up to "Files" (whose array is not read here). */
    for (int member = 0;; member++) {
        p = skip_ws(p, end);
        if (p == end || *p != '"')
            return wv_err_set(err, WV_EPG,
                              "the server's backup manifest has no \"Files\" in its first %zu "
                              "bytes",
                              len);
        const char *key = ++p;
        while (p < end && *p != '"')
            p++;
        if (p == end)
            return wv_err_set(err, WV_EPG, "the server's backup manifest ends inside a key");
        size_t klen = (size_t)(p - key);
        p = skip_ws(p + 1, end);
        if (p == end || *p++ != ':')
            return wv_err_set(err, WV_EPG,
                              "the server's backup manifest lacks a ':' after \"%.*s\"",
                              (int)(klen > 64 ? 64 : klen), key);
        p = skip_ws(p, end);
        if (klen == 5 && memcmp(key, "Files", 5) == 0)
            break;
        uint64_t v = 0;
        const char *digits = p;
        int overflow = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            uint64_t d = (uint64_t)(*p++ - '0');
            overflow |= v > (UINT64_MAX - d) / 10;
            v = v * 10 + d;
        }
        if (p == digits || p == end || overflow)
            return wv_err_set(err, WV_EPG,
                              "the server's backup manifest has no integer for \"%.*s\"",
                              (int)(klen > 64 ? 64 : klen), key);
        if (member == 0) {
            if (klen != 34 || memcmp(key, "PostgreSQL-Backup-Manifest-Version", 34) != 0)
                return wv_err_set(err, WV_EPG,
                                  "the server's backup manifest does not start with "
                                  "\"PostgreSQL-Backup-Manifest-Version\"");
            if (v != 1 && v != 2)
                return wv_err_set(err, WV_EPG,
                                  "the server's backup manifest has version %" PRIu64
                                  ", not 1 or 2 (the versions PostgreSQL 15 to 18 write)",
                                  v);
            out->version = (int)v;
        } else if (klen == 17 && memcmp(key, "System-Identifier", 17) == 0) {
            out->system_id = v;
            have_sysid = 1;
        }
        p = skip_ws(p, end);
        if (p == end || *p++ != ',')
            return wv_err_set(err, WV_EPG,
                              "the server's backup manifest lacks a ',' after \"%.*s\"",
                              (int)(klen > 64 ? 64 : klen), key);
    }
    if (out->version == 0)
        return wv_err_set(err, WV_EPG,
                          "the server's backup manifest does not start with "
                          "\"PostgreSQL-Backup-Manifest-Version\"");
    if (out->version == 2 && !have_sysid)
        return wv_err_set(err, WV_EPG,
                          "the server's version 2 backup manifest has no \"System-Identifier\"");
    if (out->version == 1 && have_sysid)
        return wv_err_set(err, WV_EPG,
                          "the server's version 1 backup manifest has a \"System-Identifier\"");
    return 0;
}

int wv_pg_manifest_head_check(const wv_pg_manifest_head *h, int server_version, uint64_t system_id,
                              wv_err *err)
{
    int want = server_version >= 170000 ? 2 : 1;
    if (h->version != want)
        return wv_err_set(err, WV_EPG,
                          "PostgreSQL %d sent a version %d backup manifest, expected version %d",
                          server_version / 10000, h->version, want);
    if (h->version == 2 && system_id && h->system_id != system_id)
        return wv_err_set(err, WV_EPG,
                          "the server's backup manifest belongs to database system %" PRIu64
                          ", but the server is database system %" PRIu64,
                          h->system_id, system_id);
    return 0;
}

static void free_start(wv_pgrepl_backup_start *s)
{
    for (size_t i = 0; i < s->ntablespaces; i++)
        free(s->tablespaces[i].location);
    free(s->tablespaces);
    s->tablespaces = NULL;
    s->ntablespaces = 0;
}

static int parse_position(wv_pgconn *c, PGresult *res, const char *what, uint64_t *lsn,
                          uint32_t *tli, wv_err *err)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return res_fail(c, res, err, what);
    if (PQntuples(res) != 1 || PQnfields(res) < 2)
        return wv_err_set(err, WV_EPG, "%s: unexpected result (%d rows, %d fields)", what,
                          PQntuples(res), PQnfields(res));
    char *end;
    const char *t = PQgetvalue(res, 0, 1);
    unsigned long v = strtoul(t, &end, 10);
    if (wv_lsn_parse(PQgetvalue(res, 0, 0), lsn) < 0 || !*t || *end || v == 0)
        return wv_err_set(err, WV_EPG, "%s: bad position \"%s\" timeline \"%s\"", what,
                          PQgetvalue(res, 0, 0), t);
    *tli = (uint32_t)v;
    return 0;
}

static void append_quoted(wv_buf *b, const char *s)
{
    wv_buf_append_str(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            wv_buf_append_str(b, "'");
        wv_buf_append(b, s, 1);
    }
    wv_buf_append_str(b, "'");
}

/* Drain results after an abort so the connection can be closed cleanly. */
static void drain(wv_pgconn *c)
{
    PGresult *res;
    while ((res = PQgetResult(c->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
            break; /* mid-copy: closing the connection is the only way out */
    }
}

static void build_base_backup_query(const wv_pgrepl_backup_opts *opts, wv_buf *q)
{
    wv_buf_append_str(q, "BASE_BACKUP ( LABEL ");
    append_quoted(q, opts->label ? opts->label : "walvault");
    if (opts->progress)
        wv_buf_append_str(q, ", PROGRESS");
    wv_buf_printf(q, ", CHECKPOINT '%s'", opts->fast_checkpoint ? "fast" : "spread");
    wv_buf_printf(q, ", WAIT %s", opts->wait ? "true" : "false");
    if (opts->manifest)
        /* CRC32C, PostgreSQL's default: SHA-256 there doubles the server's CPU per byte, and
         * walvault computes the SHA-256 of every file itself; pg_verifybackup checks either. */
        wv_buf_append_str(q, ", MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C'");
    if (opts->max_rate_kb > 0)
        wv_buf_printf(q, ", MAX_RATE %d", opts->max_rate_kb);
    wv_buf_append_str(q, " )");
}

/* The two result sets before the COPY: the start position, then the tablespaces. */
static int read_backup_start(wv_pgconn *c, wv_pgrepl_backup_start *s, wv_err *err)
{
    PGresult *res = PQgetResult(c->conn);
    int rc = parse_position(c, res, "could not start the base backup", &s->start_lsn, &s->start_tli,
                            err);
    PQclear(res);
    if (rc < 0)
        return rc;
    res = PQgetResult(c->conn);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) < 3) {
        rc = res_fail(c, res, err, "could not get the tablespace list of the base backup");
        PQclear(res);
        return rc;
    }
    s->ntablespaces = (size_t)PQntuples(res);
    s->tablespaces = wv_xcalloc(s->ntablespaces ? s->ntablespaces : 1, sizeof(*s->tablespaces));
    for (size_t i = 0; i < s->ntablespaces; i++) {
        wv_pgrepl_tablespace *t = &s->tablespaces[i];
        int row = (int)i;
        t->oid =
            PQgetisnull(res, row, 0) ? 0 : (uint32_t)strtoul(PQgetvalue(res, row, 0), NULL, 10);
        t->location = PQgetisnull(res, row, 1) ? NULL : wv_xstrdup(PQgetvalue(res, row, 1));
        t->size_kb = PQgetisnull(res, row, 2) ? -1 : strtoll(PQgetvalue(res, row, 2), NULL, 10);
    }
    PQclear(res);
    return 0;
}

/* What the COPY stream has shown so far of the server's backup_manifest. */
typedef struct manifest_seen {
    int started;
    char head[WV_PG_MANIFEST_HEAD_MAX];
    size_t head_len;
} manifest_seen;

/* One CopyData message of the base backup stream (its type byte first). */
static int copy_message(const uint8_t *p, size_t len, const wv_pgrepl_backup_cb *cb, void *arg,
                        manifest_seen *m, wv_err *err)
{
    switch (p[0]) {
    case 'n': {
        const char *name = (const char *)p + 1;
        size_t rest = len - 1;
        size_t nl = strnlen(name, rest);
        const char *loc = name + nl + 1;
        if (nl == rest || strnlen(loc, rest - nl - 1) == rest - nl - 1)
            return wv_err_set(err, WV_EPG, "malformed new-archive message from the server");
        return cb->archive ? cb->archive(arg, name, *loc ? loc : NULL, err) : 0;
    }
    case 'd':
        if (m->started && m->head_len < sizeof(m->head)) {
            size_t room = sizeof(m->head) - m->head_len;
            size_t k = len - 1 < room ? len - 1 : room;
            memcpy(m->head + m->head_len, p + 1, k);
            m->head_len += k;
        }
        return cb->data ? cb->data(arg, p + 1, len - 1, err) : 0;
    case 'm':
        m->started = 1;
        return cb->manifest ? cb->manifest(arg, err) : 0;
    case 'p': {
        if (len < 9)
            return wv_err_set(err, WV_EPG, "malformed progress message from the server");
        uint64_t v = 0;
        for (int i = 1; i <= 8; i++)
            v = (v << 8) | p[i];
        return cb->progress ? cb->progress(arg, v, err) : 0;
    }
    default:
        return wv_err_set(err, WV_EPG, "unexpected message type 0x%02x in the base backup stream",
                          p[0]);
    }
}

/* The COPY OUT stream, message by message, until its end. */
static int receive_copy(wv_pgconn *c, const wv_pgrepl_backup_cb *cb, void *arg, manifest_seen *m,
                        wv_err *err)
{
    PGresult *res = PQgetResult(c->conn);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        int rc = res_fail(c, res, err, "could not receive the base backup");
        PQclear(res);
        return rc;
    }
    PQclear(res);
    for (;;) {
        char *buf = NULL;
        int len = PQgetCopyData(c->conn, &buf, 0);
        if (len == -1)
            return 0;
        if (len == -2)
            return pg_fail(c, err, "the base backup stream failed");
        int rc = len < 1 ? 0 : copy_message((const uint8_t *)buf, (size_t)len, cb, arg, m, err);
        PQfreemem(buf);
        if (rc < 0)
            return rc;
    }
}

/* The server's backup_manifest must be there and belong to this server (version 2 from 17 on). */
static int check_manifest(wv_pgconn *c, const manifest_seen *m, wv_pgrepl_backup_end *end,
                          wv_err *err)
{
    if (!m->started)
        return wv_err_set(err, WV_EPG, "the server sent no backup manifest");
    int rc = wv_pg_manifest_head_parse(m->head, m->head_len, &end->manifest, err);
    return rc < 0 ? rc : wv_pg_manifest_head_check(&end->manifest, c->version, c->system_id, err);
}

/* After the COPY: the end position, then whatever results remain. */
static int read_backup_end(wv_pgconn *c, wv_pgrepl_backup_end *end, wv_err *err)
{
    PGresult *res = PQgetResult(c->conn);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) { /* end of COPY */
        PQclear(res);
        res = PQgetResult(c->conn);
    }
    int rc =
        parse_position(c, res, "the base backup did not finish", &end->end_lsn, &end->end_tli, err);
    PQclear(res);
    if (rc < 0)
        return rc;
    while ((res = PQgetResult(c->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            rc = res_fail(c, res, err, "the base backup failed at its end");
            PQclear(res);
            return rc;
        }
        PQclear(res);
    }
    return 0;
}

int wv_pgrepl_base_backup(wv_pgconn *c, const wv_pgrepl_backup_opts *opts,
                          const wv_pgrepl_backup_cb *cb, void *arg, wv_pgrepl_backup_end *end,
                          wv_err *err)
{
    wv_pgrepl_backup_start s = {0};
    manifest_seen m = {0};
    wv_buf q = WV_BUF_INIT;
    int rc = 0, in_copy = 0;

    build_base_backup_query(opts, &q);
    if (!PQsendQuery(c->conn, wv_buf_cstr(&q)))
        rc = pg_fail(c, err, "could not send BASE_BACKUP");
    if (rc == 0)
        rc = read_backup_start(c, &s, err);
    if (rc == 0 && cb->begin && (rc = cb->begin(arg, &s, err)) > 0)
        rc = 0; /* the callbacks' contract: negative stops, anything else goes on */
    if (rc == 0) {
        in_copy = 1;
        rc = receive_copy(c, cb, arg, &m, err);
    }
    if (rc == 0) {
        in_copy = 0;
        if (opts->manifest)
            rc = check_manifest(c, &m, end, err);
    }
    if (rc == 0)
        rc = read_backup_end(c, end, err);
    if (rc < 0 && !in_copy)
        drain(c);
    free_start(&s);
    wv_buf_free(&q);
    return rc;
}
