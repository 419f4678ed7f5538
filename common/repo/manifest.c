/*
 * manifest.c - backup manifest writer (spooled) and push parser. See manifest.h for the format.
 */
#include "repo/manifest.h"
#include "repo/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/bytes.h"
#include "pipeline/filter.h"
#include "pg/walname.h"

/* ---- shared helpers ------------------------------------------------------------------------- */

void wv_manifest_header_free(wv_manifest_header *h)
{
    if (!h)
        return;
    free(h->label);
    free(h->created_by);
    free(h->start_time_text);
    free(h->stop_time_text);
    h->label = h->created_by = h->start_time_text = h->stop_time_text = NULL;
}

int wv_manifest_id_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return 0;
    for (; id[n]; n++) {
        char c = id[n];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '_' || c == '-'))
            return 0;
    }
    return n > 0 && n < WV_MANIFEST_ID_MAX;
}

static int digits_only(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int wv_manifest_path_valid(const char *path)
{
    if (!path || !wv_storage_key_valid(path))
        return 0;
    if (strcmp(path, "pgdata") == 0 || strncmp(path, "pgdata/", 7) == 0)
        return 1;
    if (strncmp(path, "tblspc/", 7) == 0) {
        const char *oid = path + 7;
        const char *slash = strchr(oid, '/');
        size_t n = slash ? (size_t)(slash - oid) : strlen(oid);
        return digits_only(oid, n);
    }
    return 0;
}

void wv_manifest_bundle_key(const char *id, uint32_t n, char *out, size_t outlen)
{
    snprintf(out, outlen, "backup/%s/bundle/%" PRIu32, id, n);
}

void wv_manifest_file_object(const char *id, const wv_manifest_entry *e, char *key, size_t keylen,
                             int64_t *offset, int64_t *length)
{
    const char *owner = e->ref ? e->ref : id;
    if (e->bundle) {
        wv_manifest_bundle_key(owner, e->bundle, key, keylen);
        *offset = (int64_t)e->offset;
        *length = (int64_t)e->stored_size;
    } else {
        snprintf(key, keylen, "backup/%s/%s", owner, e->path);
        *offset = 0;
        *length = -1;
    }
}

void wv_manifest_chunk_key(const char *id, const wv_manifest_entry *e, uint32_t k, char *out,
                           size_t outlen)
{
    snprintf(out, outlen, "backup/%s/chunk/%s/%" PRIu32, e->ref ? e->ref : id, e->path, k);
}

const char *wv_manifest_chunks_check(const wv_manifest_chunk *c, uint32_t n, uint64_t size,
                                     uint64_t stored_size)
{
    uint64_t pos = 0, stored = 0;
    if (n == 0 || n > WV_MANIFEST_CHUNKS_MAX)
        return "a chunk count out of range";
    for (uint32_t k = 0; k < n; k++) {
        if (c[k].length == 0)
            return "an empty chunk";
        if (c[k].offset < pos)
            return "overlapping chunks";
        if (c[k].offset > pos)
            return "a gap between chunks";
        if (c[k].offset > size || c[k].length > size - c[k].offset)
            return "a chunk past the end of the file";
        if (stored + c[k].stored_size < stored)
            return "stored sizes beyond 2^64";
        pos += c[k].length;
        stored += c[k].stored_size;
    }
    if (pos != size)
        return "chunk lengths that do not add up to the file's size";
    if (stored != stored_size)
        return "chunk stored sizes that do not add up to the file's stored-size";
    return NULL;
}

void wv_manifest_key(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "backup/%s/%s", id, WV_MANIFEST_NAME);
}

static void enc(wv_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == '=') {
            char t[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            wv_buf_append(b, t, 3);
        } else {
            wv_buf_append(b, p, 1);
        }
    }
}

static void field_str(wv_buf *b, const char *key, const char *val)
{
    wv_buf_printf(b, " %s=", key);
    enc(b, val);
}

/* ---- writer --------------------------------------------------------------------------------- */

struct wv_manifest_writer {
    FILE *spool;
    wv_manifest_totals totals;
    wv_buf line;
    int chunked; /* a chunked file was added: version 3 */
};

int wv_manifest_writer_new(const char *tmpdir, wv_manifest_writer **out, wv_err *err)
{
    if (!tmpdir)
        tmpdir = getenv("TMPDIR");
    if (!tmpdir || !*tmpdir)
        tmpdir = "/tmp";
    int fd = open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        char *tmpl = wv_xasprintf("%s/walvault-manifest-XXXXXX", tmpdir);
        fd = mkstemp(tmpl);
        if (fd >= 0)
            unlink(tmpl);
        free(tmpl);
    }
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not create a manifest spool file in \"%s\"",
                            tmpdir);
    FILE *f = fdopen(fd, "w+");
    if (!f) {
        int e = errno;
        close(fd);
        return wv_err_errno(err, WV_EIO, e, "could not open the manifest spool file");
    }
    wv_manifest_writer *w = wv_xcalloc(1, sizeof(*w));
    w->spool = f;
    wv_buf_init(&w->line);
    *out = w;
    return 0;
}

void wv_manifest_writer_free(wv_manifest_writer *w)
{
    if (!w)
        return;
    if (w->spool)
        fclose(w->spool);
    wv_buf_free(&w->line);
    free(w);
}

const wv_manifest_totals *wv_manifest_writer_totals(const wv_manifest_writer *w)
{
    return &w->totals;
}

static int format_entry(wv_buf *b, const wv_manifest_entry *e, wv_err *err)
{
    char hex[65];
    if (e->type == WV_MANIFEST_TABLESPACE) {
        if (!e->target || e->target[0] != '/' || e->oid == 0)
            return wv_err_set(err, WV_EUSAGE, "manifest: bad tablespace %u", e->oid);
        wv_buf_printf(b, "tablespace oid=%" PRIu32, e->oid);
        field_str(b, "location", e->target);
        wv_buf_append_str(b, "\n");
        return 0;
    }
    if (!wv_manifest_path_valid(e->path))
        return wv_err_set(err, WV_EUSAGE, "manifest: invalid path \"%s\"", e->path ? e->path : "");
    switch (e->type) {
    case WV_MANIFEST_DIR:
        wv_buf_append_str(b, "dir");
        field_str(b, "path", e->path);
        wv_buf_printf(b, " mode=%04o mtime=%" PRId64 "\n", e->mode & 07777, e->mtime);
        return 0;
    case WV_MANIFEST_SYMLINK:
        if (!e->target || !*e->target)
            return wv_err_set(err, WV_EUSAGE, "manifest: symlink \"%s\" without target", e->path);
        wv_buf_append_str(b, "symlink");
        field_str(b, "path", e->path);
        field_str(b, "target", e->target);
        wv_buf_printf(b, " mode=%04o mtime=%" PRId64 "\n", e->mode & 07777, e->mtime);
        return 0;
    case WV_MANIFEST_FILE:
        if (e->ref && !wv_manifest_id_valid(e->ref))
            return wv_err_set(err, WV_EUSAGE, "manifest: invalid backup reference \"%s\" of \"%s\"",
                              e->ref, e->path);
        wv_hex_encode(e->sha256, 32, hex);
        wv_buf_append_str(b, "file");
        field_str(b, "path", e->path);
        wv_buf_printf(
            b, " size=%" PRIu64 " mode=%04o mtime=%" PRId64 " sha256=%s stored-size=%" PRIu64,
            e->size, e->mode & 07777, e->mtime, hex, e->stored_size);
        if (e->ref)
            wv_buf_printf(b, " ref=%s", e->ref);
        if (e->bundle)
            wv_buf_printf(b, " bundle=%" PRIu32 " offset=%" PRIu64, e->bundle, e->offset);
        if (e->nchunks) {
            const char *why = e->bundle ? "a chunked file in a bundle"
                                        : wv_manifest_chunks_check(e->chunks, e->nchunks, e->size,
                                                                   e->stored_size);
            if (why)
                return wv_err_set(err, WV_EUSAGE, "manifest: file \"%s\" has %s", e->path, why);
            wv_buf_printf(b, " chunks=%" PRIu32, e->nchunks);
        }
        wv_buf_append_str(b, "\n");
        for (uint32_t k = 0; k < e->nchunks; k++) {
            wv_hex_encode(e->chunks[k].sha256, 32, hex);
            wv_buf_printf(b,
                          "chunk offset=%" PRIu64 " length=%" PRIu64
                          " sha256=%s stored-size=%" PRIu64 "\n",
                          e->chunks[k].offset, e->chunks[k].length, hex, e->chunks[k].stored_size);
        }
        return 0;
    default:
        return wv_err_set(err, WV_EUSAGE, "manifest: unknown entry type %d", (int)e->type);
    }
}

int wv_manifest_writer_add(wv_manifest_writer *w, const wv_manifest_entry *e, wv_err *err)
{
    wv_buf_reset(&w->line);
    int rc = format_entry(&w->line, e, err);
    if (rc < 0)
        return rc;
    if (fwrite(w->line.data, 1, w->line.len, w->spool) != w->line.len)
        return wv_err_errno(err, WV_EIO, errno, "could not write the manifest spool file");
    switch (e->type) {
    case WV_MANIFEST_FILE:
        if (e->nchunks)
            w->chunked = 1;
        w->totals.files++;
        w->totals.size += e->size;
        w->totals.stored_size += e->stored_size;
        break;
    case WV_MANIFEST_DIR:
        w->totals.dirs++;
        break;
    case WV_MANIFEST_SYMLINK:
        w->totals.symlinks++;
        break;
    case WV_MANIFEST_TABLESPACE:
        w->totals.tablespaces++;
        break;
    }
    return 0;
}

static void format_header(wv_buf *b, const wv_manifest_header *h, int version)
{
    char a[WV_LSN_LEN], c[WV_LSN_LEN], d[WV_LSN_LEN];
    wv_buf_printf(b, "walvault-manifest version=%d\n", version);
    wv_buf_append_str(b, "backup");
    field_str(b, "id", h->id);
    field_str(b, "label", h->label ? h->label : "");
    wv_buf_printf(b, " keep=%d", h->keep ? 1 : 0);
    field_str(b, "created-by", h->created_by ? h->created_by : "walvault " WALVAULT_VERSION);
    wv_buf_printf(
        b, "\ncluster system-id=%" PRIu64 " pg-version=%" PRIu32 " wal-segsize=%" PRIu64 "\n",
        h->system_id, h->pg_version, h->wal_segsize);
    wv_lsn_format(h->start_lsn, a);
    wv_lsn_format(h->stop_lsn, c);
    wv_lsn_format(h->checkpoint_lsn, d);
    wv_buf_printf(b,
                  "wal timeline=%" PRIu32 " start-lsn=%s stop-lsn=%s checkpoint-lsn=%s "
                  "start-segment=%s stop-segment=%s\n",
                  h->timeline, a, c, d, h->start_segment, h->stop_segment);
    wv_buf_printf(b, "time start=%" PRId64 " stop=%" PRId64, h->start_time, h->stop_time);
    field_str(b, "start-text", h->start_time_text ? h->start_time_text : "");
    field_str(b, "stop-text", h->stop_time_text ? h->stop_time_text : "");
    wv_buf_append_str(b, "\n");
}

int wv_manifest_writer_finish(wv_manifest_writer *w, const wv_manifest_header *h, wv_filter *out,
                              wv_err *err)
{
    int rc = 0;
    if (!wv_manifest_id_valid(h->id))
        return wv_err_set(err, WV_EUSAGE, "manifest: invalid backup id \"%s\"", h->id);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return wv_err_set(err, WV_EINTERNAL, "manifest: could not start SHA-256");
    }
    wv_buf b = WV_BUF_INIT;
    /* Without chunked files the manifest is what version 2 readers understand. */
    format_header(&b, h, w->chunked ? WV_MANIFEST_VERSION : 2);
    EVP_DigestUpdate(md, b.data, b.len);
    if ((rc = wv_filter_write(out, b.data, b.len, err)) < 0)
        goto out;
    if (fflush(w->spool) != 0 || fseek(w->spool, 0, SEEK_SET) != 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not read back the manifest spool file");
        goto out;
    }
    uint8_t tmp[64 * 1024];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), w->spool)) > 0) {
        EVP_DigestUpdate(md, tmp, n);
        if ((rc = wv_filter_write(out, tmp, n, err)) < 0)
            goto out;
    }
    if (ferror(w->spool)) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not read back the manifest spool file");
        goto out;
    }
    wv_buf_reset(&b);
    const wv_manifest_totals *t = &w->totals;
    wv_buf_printf(&b,
                  "totals files=%" PRIu64 " dirs=%" PRIu64 " symlinks=%" PRIu64
                  " tablespaces=%" PRIu64 " size=%" PRIu64 " stored-size=%" PRIu64 "\n",
                  t->files, t->dirs, t->symlinks, t->tablespaces, t->size, t->stored_size);
    EVP_DigestUpdate(md, b.data, b.len);
    uint8_t digest[32];
    unsigned dlen = 0;
    EVP_DigestFinal_ex(md, digest, &dlen);
    char hex[65];
    wv_hex_encode(digest, 32, hex);
    wv_buf_printf(&b, "end sha256=%s\n", hex);
    if ((rc = wv_filter_write(out, b.data, b.len, err)) < 0)
        goto out;
    rc = wv_filter_finish(out, err);
out:
    wv_buf_free(&b);
    EVP_MD_CTX_free(md);
    return rc;
}

/* ---- reader --------------------------------------------------------------------------------- */

enum { R_VERSION, R_BACKUP, R_CLUSTER, R_WAL, R_TIME, R_BODY, R_END, R_DONE };

#define MAX_FIELDS 16

typedef struct {
    char *key;
    char *val;
    int used;
} field;

struct wv_manifest_reader {
    char *name;
    wv_manifest_header *h;
    wv_manifest_entry_cb cb;
    void *arg;
    int state;
    uint64_t lineno;
    wv_buf line;
    EVP_MD_CTX *md;
    wv_manifest_totals counted;
    wv_manifest_totals declared;
    int failed;
    field f[MAX_FIELDS];
    int nf;
    /* a chunked file record waiting for its chunk records */
    int pending;
    wv_manifest_entry pe;
    char *pe_path, *pe_ref;
    wv_manifest_chunk *pc;
    uint32_t npc;
};

static void pending_clear(wv_manifest_reader *r)
{
    free(r->pe_path);
    free(r->pe_ref);
    free(r->pc);
    r->pe_path = r->pe_ref = NULL;
    r->pc = NULL;
    r->npc = 0;
    r->pending = 0;
}

wv_manifest_reader *wv_manifest_reader_new(const char *name, wv_manifest_header *h,
                                           wv_manifest_entry_cb cb, void *arg)
{
    wv_manifest_reader *r = wv_xcalloc(1, sizeof(*r));
    r->name = wv_xstrdup(name ? name : "manifest");
    r->h = h;
    memset(h, 0, sizeof(*h));
    r->cb = cb;
    r->arg = arg;
    wv_buf_init(&r->line);
    r->md = EVP_MD_CTX_new();
    if (!r->md || EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "walvault: could not initialise SHA-256\n");
        abort();
    }
    return r;
}

static void clear_fields(wv_manifest_reader *r)
{
    for (int i = 0; i < r->nf; i++) {
        free(r->f[i].key);
        free(r->f[i].val);
    }
    r->nf = 0;
}

void wv_manifest_reader_free(wv_manifest_reader *r)
{
    if (!r)
        return;
    clear_fields(r);
    pending_clear(r);
    wv_buf_free(&r->line);
    EVP_MD_CTX_free(r->md);
    free(r->name);
    free(r);
}

static int bad(wv_manifest_reader *r, wv_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(wv_manifest_reader *r, wv_err *err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->failed = 1;
    wv_err_set(err, WV_ECORRUPT, "corrupt manifest \"%s\": line %" PRIu64 ": %s", r->name,
               r->lineno, msg);
    wv_err_hint(err, "the backup cannot be trusted; take a new backup");
    wv_err_names(err, NULL, r->name);
    return WV_ECORRUPT;
}

/* Decode percent-encoding; NULL on a bad escape or an encoded NUL. */
static char *dec(const char *s, size_t n)
{
    char *o = wv_xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) {
                free(o);
                return NULL;
            }
            int a = wv_hex_value(s[i + 1]), b = wv_hex_value(s[i + 2]);
            if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                free(o);
                return NULL;
            }
            o[j++] = (char)(a * 16 + b);
            i += 2;
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = '\0';
    return o;
}

/* Split "type k=v k=v" into r->f and *type (a pointer into line). */
static int split(wv_manifest_reader *r, char *line, char **type, wv_err *err)
{
    clear_fields(r);
    char *p = line;
    char *sp = strchr(p, ' ');
    *type = p;
    if (!sp)
        return 0;
    *sp = '\0';
    p = sp + 1;
    while (*p) {
        sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        char *eq = memchr(p, '=', n);
        if (!eq || eq == p)
            return bad(r, err, "field \"%.*s\" is not key=value", (int)(n > 40 ? 40 : n), p);
        if (r->nf == MAX_FIELDS)
            return bad(r, err, "too many fields");
        char *key = wv_xstrndup(p, (size_t)(eq - p));
        for (int i = 0; i < r->nf; i++)
            if (strcmp(r->f[i].key, key) == 0) {
                bad(r, err, "duplicate key \"%s\"", key);
                free(key);
                return WV_ECORRUPT;
            }
        char *val = dec(eq + 1, n - (size_t)(eq - p) - 1);
        if (!val) {
            bad(r, err, "bad percent-encoding in \"%s\"", key);
            free(key);
            return WV_ECORRUPT;
        }
        r->f[r->nf].key = key;
        r->f[r->nf].val = val;
        r->f[r->nf].used = 0;
        r->nf++;
        if (!sp)
            break;
        p = sp + 1;
        if (!*p)
            return bad(r, err, "trailing space");
    }
    return 0;
}

static const char *get(wv_manifest_reader *r, const char *key)
{
    for (int i = 0; i < r->nf; i++)
        if (strcmp(r->f[i].key, key) == 0) {
            r->f[i].used = 1;
            return r->f[i].val;
        }
    return NULL;
}

static int need(wv_manifest_reader *r, const char *type, const char *key, const char **out,
                wv_err *err)
{
    *out = get(r, key);
    if (!*out)
        return bad(r, err, "\"%s\" record lacks \"%s\"", type, key);
    return 0;
}

static int need_u64(wv_manifest_reader *r, const char *type, const char *key, uint64_t max,
                    uint64_t *out, wv_err *err)
{
    const char *v;
    int rc = need(r, type, key, &v, err);
    if (rc < 0)
        return rc;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!digits_only(v, strlen(v)) || *end || errno || x > max)
        return bad(r, err, "bad number \"%s\" for \"%s\"", v, key);
    *out = x;
    return 0;
}

static int need_i64(wv_manifest_reader *r, const char *type, const char *key, int64_t *out,
                    wv_err *err)
{
    const char *v;
    int rc = need(r, type, key, &v, err);
    if (rc < 0)
        return rc;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    const char *d = v[0] == '-' ? v + 1 : v;
    if (!digits_only(d, strlen(d)) || *end || errno)
        return bad(r, err, "bad number \"%s\" for \"%s\"", v, key);
    *out = x;
    return 0;
}

static int need_mode(wv_manifest_reader *r, const char *type, uint32_t *out, wv_err *err)
{
    const char *v;
    int rc = need(r, type, "mode", &v, err);
    if (rc < 0)
        return rc;
    uint32_t m = 0;
    size_t n = strlen(v);
    if (n == 0 || n > 5)
        return bad(r, err, "bad mode \"%s\"", v);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '7')
            return bad(r, err, "bad mode \"%s\"", v);
        m = m * 8 + (uint32_t)(v[i] - '0');
    }
    if (m > 07777)
        return bad(r, err, "bad mode \"%s\"", v);
    *out = m;
    return 0;
}

static int need_lsn(wv_manifest_reader *r, const char *key, uint64_t *out, wv_err *err)
{
    const char *v;
    int rc = need(r, "wal", key, &v, err);
    if (rc < 0)
        return rc;
    if (wv_lsn_parse(v, out) < 0)
        return bad(r, err, "bad LSN \"%s\" for \"%s\"", v, key);
    return 0;
}

static int need_segment(wv_manifest_reader *r, const char *key, char out[25], wv_err *err)
{
    const char *v;
    int rc = need(r, "wal", key, &v, err);
    if (rc < 0)
        return rc;
    if (wv_walname_parse(v, NULL) != WV_WALNAME_SEGMENT)
        return bad(r, err, "bad WAL segment name \"%s\" for \"%s\"", v, key);
    snprintf(out, 25, "%s", v);
    return 0;
}

static int no_extra(wv_manifest_reader *r, const char *type, wv_err *err)
{
    for (int i = 0; i < r->nf; i++)
        if (!r->f[i].used)
            return bad(r, err, "unknown key \"%s\" in \"%s\" record", r->f[i].key, type);
    return 0;
}

static int expect_type(wv_manifest_reader *r, const char *type, const char *want, wv_err *err)
{
    if (strcmp(type, want) != 0)
        return bad(r, err, "expected a \"%s\" record, found \"%.40s\"", want, type);
    return 0;
}

static int parse_entry(wv_manifest_reader *r, const char *type, wv_err *err)
{
    wv_manifest_entry e = {0};
    uint64_t u;
    int rc;
    const char *v;
    if (strcmp(type, "tablespace") == 0) {
        e.type = WV_MANIFEST_TABLESPACE;
        if ((rc = need_u64(r, type, "oid", UINT32_MAX, &u, err)) < 0)
            return rc;
        e.oid = (uint32_t)u;
        if ((rc = need(r, type, "location", &e.target, err)) < 0)
            return rc;
        if (e.oid == 0 || e.target[0] != '/')
            return bad(r, err, "bad tablespace oid or location");
        r->counted.tablespaces++;
    } else if (strcmp(type, "dir") == 0 || strcmp(type, "symlink") == 0 ||
               strcmp(type, "file") == 0) {
        e.type = type[0] == 'd'   ? WV_MANIFEST_DIR
                 : type[0] == 's' ? WV_MANIFEST_SYMLINK
                                  : WV_MANIFEST_FILE;
        if ((rc = need(r, type, "path", &e.path, err)) < 0)
            return rc;
        if (!wv_manifest_path_valid(e.path))
            return bad(r, err, "invalid path \"%s\"", e.path);
        if ((rc = need_mode(r, type, &e.mode, err)) < 0 ||
            (rc = need_i64(r, type, "mtime", &e.mtime, err)) < 0)
            return rc;
        if (e.type == WV_MANIFEST_SYMLINK) {
            if ((rc = need(r, type, "target", &e.target, err)) < 0)
                return rc;
            if (!*e.target)
                return bad(r, err, "empty symlink target");
            r->counted.symlinks++;
        } else if (e.type == WV_MANIFEST_DIR) {
            r->counted.dirs++;
        } else {
            /* Sizes and offsets become byte ranges of storage requests (int64_t): bounded here,
             * before any use. */
            if ((rc = need_u64(r, type, "size", INT64_MAX, &e.size, err)) < 0 ||
                (rc = need_u64(r, type, "stored-size", INT64_MAX, &e.stored_size, err)) < 0 ||
                (rc = need(r, type, "sha256", &v, err)) < 0)
                return rc;
            if (strlen(v) != 64 || wv_hex_decode(v, e.sha256, 32) < 0)
                return bad(r, err, "bad sha256 \"%.70s\"", v);
            e.ref = get(r, "ref");
            if (e.ref && !wv_manifest_id_valid(e.ref))
                return bad(r, err, "bad backup reference \"%.70s\"", e.ref);
            if (r->h->version >= 2 && get(r, "bundle")) {
                if ((rc = need_u64(r, type, "bundle", UINT32_MAX, &u, err)) < 0 ||
                    (rc = need_u64(r, type, "offset", INT64_MAX, &e.offset, err)) < 0)
                    return rc;
                if (u == 0)
                    return bad(r, err, "bad bundle 0");
                if (e.offset > (uint64_t)INT64_MAX - e.stored_size)
                    return bad(r, err,
                               "offset %" PRIu64 " and stored-size %" PRIu64
                               " end beyond any object",
                               e.offset, e.stored_size);
                e.bundle = (uint32_t)u;
            }
            if (r->h->version >= 3 && get(r, "chunks")) {
                if ((rc = need_u64(r, type, "chunks", UINT32_MAX, &u, err)) < 0)
                    return rc;
                if (u == 0 || u > WV_MANIFEST_CHUNKS_MAX)
                    return bad(r, err, "bad chunk count %" PRIu64 " of \"%s\"", u, e.path);
                if (e.bundle)
                    return bad(r, err, "chunked file \"%s\" in a bundle", e.path);
                e.nchunks = (uint32_t)u;
            }
            if (r->counted.size + e.size < r->counted.size ||
                r->counted.stored_size + e.stored_size < r->counted.stored_size)
                return bad(r, err, "the sizes of the files add up to more than 2^64 bytes");
            r->counted.files++;
            r->counted.size += e.size;
            r->counted.stored_size += e.stored_size;
        }
    } else {
        return bad(r, err, "unknown record \"%.40s\"", type);
    }
    if ((rc = no_extra(r, type, err)) < 0)
        return rc;
    if (e.nchunks) { /* delivered once its chunk records are in */
        r->pending = 1;
        r->pe = e;
        r->pe_path = wv_xstrdup(e.path);
        r->pe_ref = e.ref ? wv_xstrdup(e.ref) : NULL;
        r->pe.path = r->pe_path;
        r->pe.ref = r->pe_ref;
        r->pc = wv_xcalloc(e.nchunks, sizeof(*r->pc));
        r->npc = 0;
        return 0;
    }
    if (r->cb && (rc = r->cb(r->arg, &e, err)) < 0) {
        r->failed = 1;
        return rc;
    }
    return 0;
}

/* A "chunk" record of the pending chunked file; the file is delivered after its last one. */
static int parse_chunk(wv_manifest_reader *r, const char *type, wv_err *err)
{
    wv_manifest_chunk *c = &r->pc[r->npc];
    const char *v;
    int rc;
    if ((rc = need_u64(r, type, "offset", INT64_MAX, &c->offset, err)) < 0 ||
        (rc = need_u64(r, type, "length", INT64_MAX, &c->length, err)) < 0 ||
        (rc = need_u64(r, type, "stored-size", INT64_MAX, &c->stored_size, err)) < 0 ||
        (rc = need(r, type, "sha256", &v, err)) < 0)
        return rc;
    if (strlen(v) != 64 || wv_hex_decode(v, c->sha256, 32) < 0)
        return bad(r, err, "bad sha256 \"%.70s\"", v);
    if ((rc = no_extra(r, type, err)) < 0)
        return rc;
    /* checked as they arrive, so the message names the first bad chunk */
    uint64_t expect = r->npc ? r->pc[r->npc - 1].offset + r->pc[r->npc - 1].length : 0;
    const char *why = c->length == 0       ? "an empty chunk"
                      : c->offset < expect ? "overlapping chunks"
                      : c->offset > expect ? "a gap between chunks"
                      : c->offset > r->pe.size || c->length > r->pe.size - c->offset
                          ? "a chunk past the end of the file"
                          : NULL;
    if (why)
        return bad(r, err, "chunk %" PRIu32 " of \"%s\": %s", r->npc, r->pe_path, why);
    if (++r->npc < r->pe.nchunks)
        return 0;
    why = wv_manifest_chunks_check(r->pc, r->npc, r->pe.size, r->pe.stored_size);
    if (why)
        return bad(r, err, "chunks of \"%s\": %s", r->pe_path, why);
    r->pe.chunks = r->pc;
    rc = r->cb ? r->cb(r->arg, &r->pe, err) : 0;
    pending_clear(r);
    if (rc < 0)
        r->failed = 1;
    return rc;
}

static int parse_line(wv_manifest_reader *r, char *line, size_t len, wv_err *err)
{
    char *type;
    int rc;
    if (memchr(line, '\0', len))
        return bad(r, err, "NUL byte");
    if (len == 0)
        return bad(r, err, "empty line");
    if (r->state == R_DONE)
        return bad(r, err, "data after the \"end\" record");
    if ((rc = split(r, line, &type, err)) < 0)
        return rc;
    wv_manifest_header *h = r->h;
    uint64_t u;
    const char *v;
    switch (r->state) {
    case R_VERSION:
        if (strcmp(type, "walvault-manifest") != 0)
            return bad(r, err, "not a walvault backup manifest");
        if ((rc = need_u64(r, type, "version", 1000000, &u, err)) < 0)
            return rc;
        if (u == 0)
            return bad(r, err, "bad version 0");
        if (u > WV_MANIFEST_VERSION) {
            r->failed = 1;
            wv_err_set(err, WV_EFORMAT,
                       "manifest \"%s\" has format version %" PRIu64
                       ", this program understands up to %d",
                       r->name, u, WV_MANIFEST_VERSION);
            wv_err_names(err, NULL, r->name);
            return wv_err_hint(err, "upgrade walvault");
        }
        h->version = (int)u;
        break;
    case R_BACKUP:
        if ((rc = expect_type(r, type, "backup", err)) < 0 ||
            (rc = need(r, type, "id", &v, err)) < 0)
            return rc;
        if (!wv_manifest_id_valid(v))
            return bad(r, err, "bad backup id \"%.70s\"", v);
        snprintf(h->id, sizeof(h->id), "%s", v);
        if ((rc = need(r, type, "label", &v, err)) < 0)
            return rc;
        h->label = wv_xstrdup(v);
        if ((rc = need_u64(r, type, "keep", 1, &u, err)) < 0)
            return rc;
        h->keep = (int)u;
        if ((rc = need(r, type, "created-by", &v, err)) < 0)
            return rc;
        h->created_by = wv_xstrdup(v);
        break;
    case R_CLUSTER:
        if ((rc = expect_type(r, type, "cluster", err)) < 0 ||
            (rc = need_u64(r, type, "system-id", UINT64_MAX, &h->system_id, err)) < 0 ||
            (rc = need_u64(r, type, "pg-version", UINT32_MAX, &u, err)) < 0)
            return rc;
        h->pg_version = (uint32_t)u;
        if (h->system_id == 0)
            return bad(r, err, "system-id 0");
        if ((rc = need_u64(r, type, "wal-segsize", UINT64_MAX, &h->wal_segsize, err)) < 0)
            return rc;
        if (!wv_wal_segsize_valid(h->wal_segsize))
            return bad(r, err, "bad WAL segment size %" PRIu64, h->wal_segsize);
        break;
    case R_WAL:
        if ((rc = expect_type(r, type, "wal", err)) < 0 ||
            (rc = need_u64(r, type, "timeline", UINT32_MAX, &u, err)) < 0)
            return rc;
        if (u == 0)
            return bad(r, err, "bad timeline 0");
        h->timeline = (uint32_t)u;
        if ((rc = need_lsn(r, "start-lsn", &h->start_lsn, err)) < 0 ||
            (rc = need_lsn(r, "stop-lsn", &h->stop_lsn, err)) < 0 ||
            (rc = need_lsn(r, "checkpoint-lsn", &h->checkpoint_lsn, err)) < 0 ||
            (rc = need_segment(r, "start-segment", h->start_segment, err)) < 0 ||
            (rc = need_segment(r, "stop-segment", h->stop_segment, err)) < 0)
            return rc;
        if (h->stop_lsn < h->start_lsn)
            return bad(r, err, "stop-lsn is before start-lsn");
        break;
    case R_TIME:
        if ((rc = expect_type(r, type, "time", err)) < 0 ||
            (rc = need_i64(r, type, "start", &h->start_time, err)) < 0 ||
            (rc = need_i64(r, type, "stop", &h->stop_time, err)) < 0 ||
            (rc = need(r, type, "start-text", &v, err)) < 0)
            return rc;
        h->start_time_text = wv_xstrdup(v);
        if ((rc = need(r, type, "stop-text", &v, err)) < 0)
            return rc;
        h->stop_time_text = wv_xstrdup(v);
        if (h->stop_time < h->start_time)
            return bad(r, err, "stop time is before start time");
        break;
    case R_BODY:
        if (r->pending) {
            if (strcmp(type, "chunk") != 0)
                return bad(r, err, "file \"%s\" announces %" PRIu32 " chunks, %" PRIu32 " follow",
                           r->pe_path, r->pe.nchunks, r->npc);
            return parse_chunk(r, type, err);
        }
        if (strcmp(type, "totals") == 0) {
            wv_manifest_totals *d = &r->declared;
            if ((rc = need_u64(r, type, "files", UINT64_MAX, &d->files, err)) < 0 ||
                (rc = need_u64(r, type, "dirs", UINT64_MAX, &d->dirs, err)) < 0 ||
                (rc = need_u64(r, type, "symlinks", UINT64_MAX, &d->symlinks, err)) < 0 ||
                (rc = need_u64(r, type, "tablespaces", UINT64_MAX, &d->tablespaces, err)) < 0 ||
                (rc = need_u64(r, type, "size", UINT64_MAX, &d->size, err)) < 0 ||
                (rc = need_u64(r, type, "stored-size", UINT64_MAX, &d->stored_size, err)) < 0 ||
                (rc = no_extra(r, type, err)) < 0)
                return rc;
            if (memcmp(d, &r->counted, sizeof(*d)) != 0)
                return bad(r, err,
                           "totals do not match the entries (%" PRIu64 " files listed, %" PRIu64
                           " declared)",
                           r->counted.files, d->files);
            r->state = R_END;
            return 0;
        }
        return parse_entry(r, type, err);
    default:
        return bad(r, err, "internal state");
    }
    if ((rc = no_extra(r, type, err)) < 0)
        return rc;
    r->state++;
    return 0;
}

int wv_manifest_reader_feed(wv_manifest_reader *r, const void *buf, size_t len, wv_err *err)
{
    const char *p = buf;
    if (r->failed)
        return wv_err_set(err, WV_EINTERNAL, "manifest reader for \"%s\" used after an error",
                          r->name);
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t n = nl ? (size_t)(nl - p) : len;
        if (r->line.len + n > WV_MANIFEST_LINE_MAX) {
            r->lineno++;
            return bad(r, err, "line longer than %d bytes", WV_MANIFEST_LINE_MAX);
        }
        wv_buf_append(&r->line, p, n);
        p += n;
        len -= n;
        if (!nl)
            break;
        p++;
        len--;
        r->lineno++;
        int rc;
        char *line = (char *)wv_buf_cstr(&r->line);
        size_t llen = r->line.len;
        if (r->state == R_END) {
            char want[128];
            uint8_t digest[32];
            unsigned dlen = 0;
            char hex[65];
            EVP_DigestFinal_ex(r->md, digest, &dlen);
            wv_hex_encode(digest, 32, hex);
            snprintf(want, sizeof(want), "end sha256=%s", hex);
            if (strncmp(line, "end ", 4) != 0)
                return bad(r, err, "expected the \"end\" record after \"totals\"");
            if (llen != strlen(want) || memcmp(line, want, llen) != 0)
                return bad(r, err, "checksum mismatch: the manifest was altered or damaged");
            r->state = R_DONE;
        } else {
            EVP_DigestUpdate(r->md, line, llen);
            EVP_DigestUpdate(r->md, "\n", 1);
            if ((rc = parse_line(r, line, llen, err)) < 0)
                return rc;
        }
        wv_buf_reset(&r->line);
    }
    return 0;
}

int wv_manifest_reader_finish(wv_manifest_reader *r, wv_manifest_totals *totals, wv_err *err)
{
    if (r->failed)
        return wv_err_set(err, WV_EINTERNAL, "manifest reader for \"%s\" used after an error",
                          r->name);
    if (r->state != R_DONE || r->line.len) {
        r->failed = 1;
        wv_err_set(err, WV_ECORRUPT,
                   "corrupt manifest \"%s\": truncated after line %" PRIu64 " (no \"end\" record)",
                   r->name, r->lineno);
        wv_err_names(err, NULL, r->name);
        return wv_err_hint(err, "the backup cannot be trusted; take a new backup");
    }
    if (totals)
        *totals = r->counted;
    return 0;
}

int wv_manifest_parse(const void *buf, size_t len, const char *name, wv_manifest_header *h,
                      wv_manifest_entry_cb cb, void *arg, wv_manifest_totals *totals, wv_err *err)
{
    wv_manifest_reader *r = wv_manifest_reader_new(name, h, cb, arg);
    int rc = wv_manifest_reader_feed(r, buf, len, err);
    if (rc == 0)
        rc = wv_manifest_reader_finish(r, totals, err);
    wv_manifest_reader_free(r);
    if (rc < 0)
        wv_manifest_header_free(h);
    return rc;
}

/* The manifest reader as the end of a stream (wv_repo_get_stream: raw, or an opened object). */
typedef struct reader_filter {
    wv_filter base;
    wv_manifest_reader *r;
    wv_manifest_totals *totals;
} reader_filter;

static int reader_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    return wv_manifest_reader_feed(((reader_filter *)f)->r, buf, len, err);
}

static int reader_finish(wv_filter *f, wv_err *err)
{
    reader_filter *rf = (reader_filter *)f;
    return wv_manifest_reader_finish(rf->r, rf->totals, err);
}

static void reader_free(wv_filter *f)
{
    (void)f;
}

static const wv_filter_ops reader_ops = {
    .name = "manifest reader",
    .write = reader_write,
    .finish = reader_finish,
    .free = reader_free,
};

int wv_manifest_load(wv_storage *st, const char *id, wv_manifest_header *h, wv_manifest_entry_cb cb,
                     void *arg, wv_manifest_totals *totals, wv_err *err)
{
    char key[256];
    if (!wv_manifest_id_valid(id))
        return wv_err_set(err, WV_EUSAGE, "invalid backup id \"%s\"", id);
    wv_manifest_key(id, key, sizeof(key));
    reader_filter rf = {{&reader_ops, NULL}, wv_manifest_reader_new(key, h, cb, arg), totals};
    int rc = wv_repo_get_stream(st, key, &rf.base, err);
    wv_manifest_reader_free(rf.r);
    if (rc < 0)
        wv_manifest_header_free(h);
    return rc;
}
