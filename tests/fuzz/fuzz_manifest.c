/*
 * fuzz_manifest.c - the backup manifest reader (common/repo/manifest.c).
 *
 * Input: one byte of options, then the manifest text. With option bit 0 the digest of a final
 * "end sha256=..." line is replaced by the right one, so that whole manifests can be accepted.
 * Invariants: a failure is WV_ECORRUPT or WV_EFORMAT with a one-line message and a hint; fed in
 * pieces of any size, the push parser reports exactly what it reports fed at once (result,
 * message, entries); every entry it hands out is valid as manifest.h says; and an accepted manifest
 * written again with the manifest writer is read back to the same header, entries and totals.
 */
#include <inttypes.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "pipeline/filter.h"
#include "repo/manifest.h"
#include "fuzz.h"

/* Everything the callback saw, as one digest, plus a copy of the entries to write them again. */
typedef struct seen {
    EVP_MD_CTX *md;
    uint64_t n;
    wv_manifest_writer *w; /* NULL: do not copy */
} seen;

static void hash_str(EVP_MD_CTX *md, const char *s)
{
    uint8_t nul = 0;
    if (s)
        EVP_DigestUpdate(md, s, strlen(s) + 1);
    else
        EVP_DigestUpdate(md, &nul, 1);
}

static int entry_cb(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    seen *s = arg;
    s->n++;
    if (e->type == WV_MANIFEST_TABLESPACE) {
        FZ_CHECK(e->oid != 0 && e->target && e->target[0] == '/', "tablespace %u", e->oid);
    } else {
        FZ_CHECK(wv_manifest_path_valid(e->path), "invalid path \"%s\" handed out", e->path);
        FZ_CHECK(e->mode <= 07777, "mode %o", e->mode);
        FZ_CHECK(e->type != WV_MANIFEST_SYMLINK || (e->target && e->target[0]), "%s",
                 "symlink without target");
        FZ_CHECK(!e->ref || wv_manifest_id_valid(e->ref), "ref \"%s\"", e->ref);
        FZ_CHECK(!e->nchunks || (!e->bundle && !wv_manifest_chunks_check(e->chunks, e->nchunks,
                                                                         e->size, e->stored_size)),
                 "a chunk list that does not tile \"%s\" handed out", e->path);
    }
    EVP_DigestUpdate(s->md, &e->type, sizeof(e->type));
    hash_str(s->md, e->path);
    hash_str(s->md, e->target);
    hash_str(s->md, e->ref);
    uint64_t v[] = {e->oid,         e->size,   e->mode,  (uint64_t)e->mtime,
                    e->stored_size, e->bundle, e->offset};
    EVP_DigestUpdate(s->md, v, sizeof(v));
    EVP_DigestUpdate(s->md, e->sha256, 32);
    EVP_DigestUpdate(s->md, &e->nchunks, sizeof(e->nchunks));
    if (e->nchunks)
        EVP_DigestUpdate(s->md, e->chunks, e->nchunks * sizeof(*e->chunks));
    if (s->w) {
        int rc = wv_manifest_writer_add(s->w, e, err);
        FZ_CHECK(rc == 0, "an entry the reader accepts is refused by the writer: %s", err->msg);
    }
    return 0;
}

static void seen_init(seen *s, wv_manifest_writer *w)
{
    s->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
    s->n = 0;
    s->w = w;
}

static void seen_done(seen *s, uint8_t out[32])
{
    unsigned n = 0;
    EVP_DigestFinal_ex(s->md, out, &n);
    EVP_MD_CTX_free(s->md);
}

static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void check_same_header(const wv_manifest_header *a, const wv_manifest_header *b)
{
    /* the writer uses version 3 only for a manifest with chunked files, 2 otherwise */
    FZ_CHECK(a->version <= WV_MANIFEST_VERSION && b->version >= 2 &&
                 b->version <= WV_MANIFEST_VERSION,
             "versions %d, %d", a->version, b->version);
    FZ_CHECK(strcmp(a->id, b->id) == 0 && same_str(a->label, b->label) && a->keep == b->keep &&
                 same_str(a->created_by, b->created_by) && a->system_id == b->system_id &&
                 a->pg_version == b->pg_version && a->wal_segsize == b->wal_segsize &&
                 a->timeline == b->timeline && a->start_lsn == b->start_lsn &&
                 a->stop_lsn == b->stop_lsn && a->checkpoint_lsn == b->checkpoint_lsn &&
                 strcmp(a->start_segment, b->start_segment) == 0 &&
                 strcmp(a->stop_segment, b->stop_segment) == 0 && a->start_time == b->start_time &&
                 a->stop_time == b->stop_time && same_str(a->start_time_text, b->start_time_text) &&
                 same_str(a->stop_time_text, b->stop_time_text),
             "%s", "the header changes when the manifest is written again");
}

/* Option bit 0: put the right digest into a last line "end sha256=<64 characters>". */
static void fix_end(wv_buf *m)
{
    static const char tag[] = "end sha256=";
    size_t tl = sizeof(tag) - 1, want = tl + 64 + 1;
    if (m->len < want || m->data[m->len - 1] != '\n')
        return;
    uint8_t *line = m->data + m->len - want;
    if (memcmp(line, tag, tl) != 0 || (line != m->data && line[-1] != '\n'))
        return;
    uint8_t d[32];
    unsigned dl = 0;
    char hex[65];
    EVP_Digest(m->data, (size_t)(line - m->data), d, &dl, EVP_sha256(), NULL);
    wv_hex_encode(d, 32, hex);
    memcpy(line + tl, hex, 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t opt = fz_u8(&in);
    uint16_t cutseed = fz_u16(&in);
    wv_buf text = WV_BUF_INIT;
    wv_buf_append(&text, in.p, in.n);
    if (opt & 1)
        fix_end(&text);
    const uint8_t *tp = text.len ? text.data : (const uint8_t *)"";

    /* 1: at once, copying the entries into a writer */
    wv_manifest_writer *w = NULL;
    wv_err err;
    FZ_CHECK(wv_manifest_writer_new(NULL, &w, &err) == 0, "%s", err.msg);
    wv_manifest_header h1, h2;
    wv_manifest_totals t1, t2;
    seen s1, s2;
    uint8_t d1[32], d2[32];
    seen_init(&s1, w);
    int r1 = wv_manifest_parse(tp, text.len, "m", &h1, entry_cb, &s1, &t1, &err);
    seen_done(&s1, d1);
    char msg1[WV_ERR_MSG_MAX];
    snprintf(msg1, sizeof(msg1), "%s", r1 ? err.msg : "");
    if (r1 < 0) {
        fz_check_err(&err, r1);
        FZ_CHECK(r1 == WV_ECORRUPT || r1 == WV_EFORMAT, "code %d: %s", r1, err.msg);
        FZ_CHECK(err.hint[0], "no hint: %s", err.msg);
    }

    /* 2: in pieces */
    seen_init(&s2, NULL);
    wv_manifest_reader *r = wv_manifest_reader_new("m", &h2, entry_cb, &s2);
    fz_cut cut = {cutseed, 4096};
    int r2 = 0;
    for (size_t off = 0; off < text.len && r2 == 0;) {
        size_t n = fz_cut_next(&cut);
        if (n > text.len - off)
            n = text.len - off;
        r2 = wv_manifest_reader_feed(r, tp + off, n, &err);
        off += n;
    }
    if (r2 == 0)
        r2 = wv_manifest_reader_finish(r, &t2, &err);
    wv_manifest_reader_free(r);
    seen_done(&s2, d2);
    FZ_CHECK(r1 == r2, "at once %d, in pieces %d (%s)", r1, r2, r2 ? err.msg : msg1);
    FZ_CHECK(r1 == 0 || strcmp(msg1, err.msg) == 0, "at once \"%s\", in pieces \"%s\"", msg1,
             err.msg);
    FZ_CHECK(s1.n == s2.n && memcmp(d1, d2, 32) == 0, "%s",
             "the entries differ when fed in pieces");
    if (r2 == 0)
        FZ_CHECK(memcmp(&t1, &t2, sizeof(t1)) == 0, "%s", "totals differ when fed in pieces");
    wv_manifest_header_free(&h2);

    /* 3: an accepted manifest, written again, reads back the same */
    if (r1 == 0) {
        wv_buf out = WV_BUF_INIT;
        wv_filter *sink = wv_filter_buf_new(&out);
        FZ_CHECK(memcmp(wv_manifest_writer_totals(w), &t1, sizeof(t1)) == 0, "%s",
                 "the writer counts other totals");
        int rc = wv_manifest_writer_finish(w, &h1, sink, &err);
        FZ_CHECK(rc == 0, "an accepted manifest's header cannot be written: %s", err.msg);
        wv_filter_chain_free(sink);
        seen s3;
        uint8_t d3[32];
        wv_manifest_totals t3;
        wv_manifest_header h3;
        seen_init(&s3, NULL);
        rc = wv_manifest_parse(out.data, out.len, "again", &h3, entry_cb, &s3, &t3, &err);
        seen_done(&s3, d3);
        FZ_CHECK(rc == 0, "a manifest written again does not read back: %s", err.msg);
        FZ_CHECK(s3.n == s1.n && memcmp(d3, d1, 32) == 0, "%s",
                 "the entries change when the manifest is written again");
        FZ_CHECK(memcmp(&t3, &t1, sizeof(t1)) == 0, "%s", "the totals change");
        check_same_header(&h1, &h3);
        wv_manifest_header_free(&h3);
        wv_buf_free(&out);
    }
    wv_manifest_header_free(&h1);
    wv_manifest_writer_free(w);
    wv_buf_free(&text);
    return 0;
}
