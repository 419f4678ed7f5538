/*
 * fuzz_objfmt.c - object headers and trailers (common/pipeline/objfmt.c).
 *
 * The input is decoded as a header (its first bytes: 64 for format 1, 64 + the bound name + 4 for
 * format 2, 64 + the bound name + 52 for format 3, encrypted) and as a trailer (its last 128
 * bytes).
 * Invariants: a failure is WV_ECORRUPT or WV_EFORMAT with a one-line message; a header or trailer
 * that decodes encodes back to exactly the same bytes (nothing is accepted that the writer would
 * not write, so no two spellings of one header exist); and fields taken from the input that encode
 * decode back to the same fields.
 */
#include "pipeline/objfmt.h"
#include "fuzz.h"

static void check_decode_error(const wv_err *e, int rc)
{
    fz_check_err(e, rc);
    FZ_CHECK(rc == WV_ECORRUPT || rc == WV_EFORMAT, "code %d: %s", rc, e->msg);
}

static void header_round_trip(const uint8_t *data, size_t size)
{
    wv_obj_header h;
    wv_err err;
    uint8_t out[WV_OBJ_HEADER_MAX];
    int rc = wv_obj_header_decode(data, size, &h, &err);
    if (rc < 0) {
        check_decode_error(&err, rc);
        return;
    }
    size_t hl = wv_obj_header_length(&h);
    FZ_CHECK(hl >= WV_OBJ_HEADER_SIZE && hl <= WV_OBJ_HEADER_MAX && size >= hl,
             "a %zu-byte header decoded from %zu bytes", hl, size);
    FZ_CHECK(h.name_len == strlen(h.name), "bound name of %u bytes holds %zu", h.name_len,
             strlen(h.name));
    rc = wv_obj_header_encode(&h, out, &err);
    FZ_CHECK(rc == 0, "a decoded header does not encode: %s", err.msg);
    FZ_CHECK(memcmp(out, data, hl) == 0, "%s", "a decoded header encodes to other bytes");
}

static void trailer_round_trip(const uint8_t *data, size_t size)
{
    wv_obj_info info;
    wv_err err;
    uint8_t out[WV_OBJ_TRAILER_SIZE];
    int rc = wv_obj_trailer_decode(data, size, &info, &err);
    if (rc < 0) {
        check_decode_error(&err, rc);
        return;
    }
    FZ_CHECK(size >= WV_OBJ_TRAILER_SIZE, "a %zu-byte trailer decoded", size);
    rc = wv_obj_trailer_encode(&info, out, &err);
    FZ_CHECK(rc == 0, "a decoded trailer does not encode: %s", err.msg);
    FZ_CHECK(memcmp(out, data + size - WV_OBJ_TRAILER_SIZE, WV_OBJ_TRAILER_SIZE) == 0, "%s",
             "a decoded trailer encodes to other bytes");
    FZ_CHECK(strlen(wv_obj_kind_name(info.kind)) > 0, "%s", "kind without a name");
}

/* Fields from the input: what encodes must decode to the same fields. */
static void fields_round_trip(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    wv_err err;
    wv_obj_header h, h2;
    uint8_t hb[WV_OBJ_HEADER_MAX];
    memset(&h, 0, sizeof(h));
    h.version = fz_u8(&in) & 3;
    h.compression = fz_u8(&in) & 3;
    h.cipher = fz_u8(&in) & 3;
    h.digest = fz_u8(&in) & 3;
    h.kind = fz_u8(&in) & 15;
    h.key_id = fz_u64(&in);
    for (int i = 0; i < 12; i++)
        h.nonce[i] = fz_u8(&in);
    /* format 3: key mode, salt and ephemeral key (ignored by the others, which must be zero) */
    uint8_t key_mode = fz_u8(&in) & 3;
    if (h.version == 3) {
        h.key_mode = key_mode;
        for (int i = 0; i < 16; i++)
            h.salt[i] = fz_u8(&in);
        for (int i = 0; i < 32; i++)
            h.eph_pub[i] = fz_u8(&in);
    }
    /* a bound name of up to 40 printable bytes (formats 2 and 3) */
    char name[41];
    size_t nl = fz_u8(&in) % sizeof(name);
    for (size_t i = 0; i < nl; i++)
        name[i] = (char)(0x21 + fz_u8(&in) % 94);
    name[nl] = '\0';
    if (h.version >= 2)
        FZ_CHECK(wv_obj_header_bind(&h, name, &err) == 0, "bind: %s", err.msg);
    if (wv_obj_header_encode(&h, hb, &err) == 0) {
        size_t hl = wv_obj_header_length(&h);
        FZ_CHECK(wv_obj_header_decode(hb, hl, &h2, &err) == 0, "%s", err.msg);
        FZ_CHECK(h2.version == h.version && h2.compression == h.compression &&
                     h2.cipher == h.cipher && h2.digest == h.digest && h2.kind == h.kind &&
                     h2.key_id == h.key_id && memcmp(h2.nonce, h.nonce, 12) == 0 &&
                     h2.name_len == h.name_len && strcmp(h2.name, h.name) == 0 &&
                     h2.key_mode == h.key_mode && memcmp(h2.salt, h.salt, 16) == 0 &&
                     memcmp(h2.eph_pub, h.eph_pub, 32) == 0,
                 "%s", "header fields change in a round trip");
    } else {
        FZ_CHECK(err.code == WV_EINTERNAL, "encode failed with %d", err.code);
    }

    wv_obj_info t, t2;
    memset(&t2, 0, sizeof(t2));
    uint8_t tb[WV_OBJ_TRAILER_SIZE];
    wv_obj_info_init(&t);
    t.plain_size = fz_u64(&in);
    t.payload_size = fz_u64(&in);
    for (int i = 0; i < 32; i++)
        t.sha256[i] = fz_u8(&in);
    t.first_commit_us = (int64_t)fz_u64(&in);
    t.last_commit_us = (int64_t)fz_u64(&in);
    t.commit_count = fz_u32(&in);
    t.restore_point_count = fz_u32(&in);
    t.version = h.version;
    t.compression = h.compression;
    t.cipher = h.cipher;
    t.digest = h.digest;
    t.kind = h.kind;
    if (t.version == 3) {
        memcpy(t.keyed_digest, t.sha256, 32);
        /* at least a metadata block and one tag */
        t.payload_size |= WV_OBJ_META_SIZE + 16;
    }
    if (wv_obj_trailer_encode(&t, tb, &err) == 0) {
        FZ_CHECK(wv_obj_trailer_decode(tb, sizeof(tb), &t2, &err) == 0, "%s", err.msg);
        if (t.version == 3) {
            /* only the public fields round-trip: the rest is in the sealed metadata block */
            FZ_CHECK(t2.sealed && t2.plain_size == 0 && t2.commit_count == 0 &&
                         t2.payload_size == t.payload_size &&
                         memcmp(t2.keyed_digest, t.keyed_digest, 32) == 0 &&
                         t2.compression == t.compression && t2.kind == t.kind,
                     "%s", "encrypted trailer fields change in a round trip");
        } else {
            FZ_CHECK(memcmp(&t, &t2, sizeof(t)) == 0, "%s",
                     "trailer fields change in a round trip");
        }
    } else {
        FZ_CHECK(err.code == WV_EINTERNAL, "encode failed with %d", err.code);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    header_round_trip(data, size);
    trailer_round_trip(data, size);
    fields_round_trip(data, size);
    return 0;
}
