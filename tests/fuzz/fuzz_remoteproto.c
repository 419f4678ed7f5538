/*
 * fuzz_remoteproto.c - the ssh driver's framed protocol (common/storage/remoteproto.c), as either
 * end receives it from the other: a stream of frames read with wv_rp_recv.
 *
 * Input: u8 options, then the byte stream. Option bit 0 turns the stream into well-framed
 * frames first (each "u8 type, u16 length, payload" of the input becomes a frame with a right
 * header), so that the payload decoders, not the header check, meet the fuzzer's bytes.
 * Invariants: a failure is WV_EFORMAT (or the transport's end of stream) with a one-line message;
 * a decoded frame encodes back to exactly the bytes it came from (one spelling per message); its
 * strings are NUL-free and at most WV_RP_MAX_STR bytes; an ERROR frame's code is in the error
 * table; nothing is read past the stream. Keys and prefixes: wv_rp_key_valid agrees with
 * wv_storage_key_valid, as remoteproto.h promises.
 */
#include "core/buf.h"
#include "storage/remoteproto.h"
#include "storage/storage.h"
#include "fuzz.h"

typedef struct stream {
    const uint8_t *p;
    size_t len, pos;
} stream;

static int readfull(void *ctx, void *buf, size_t len, wv_err *err)
{
    stream *s = ctx;
    if (s->len - s->pos < len)
        return wv_err_set(err, WV_EUNREACHABLE, "connection closed by the peer");
    memcpy(buf, s->p + s->pos, len);
    s->pos += len;
    return 0;
}

static void check_keys(const char *text)
{
    int a = wv_rp_key_valid(text), b = wv_storage_key_valid(text);
    FZ_CHECK(a == b, "key \"%s\": protocol says %d, storage says %d", text, a, b);
    if (wv_rp_prefix_valid(text)) {
        size_t n = strlen(text);
        FZ_CHECK(n == 0 || text[0] != '/', "prefix \"%s\"", text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t opt = fz_u8(&in);
    wv_buf framed = WV_BUF_INIT;
    if (opt & 1) {
        while (in.n) {
            uint8_t type = fz_u8(&in);
            size_t want = fz_u16(&in), got;
            const uint8_t *p = fz_bytes(&in, want, &got);
            uint8_t *h = wv_buf_reserve(&framed, WV_RP_HEADER_SIZE);
            wv_rp_header_encode(h, type, (uint32_t)got);
            framed.len += WV_RP_HEADER_SIZE;
            wv_buf_append(&framed, p, got);
        }
    } else {
        wv_buf_append(&framed, in.p, in.n);
    }

    stream s = {framed.len ? framed.data : (const uint8_t *)"", framed.len, 0};
    wv_buf scratch = WV_BUF_INIT, again = WV_BUF_INIT;
    static wv_rp_msg m;
    wv_err err;
    for (int frames = 0; s.pos < s.len && frames < 64; frames++) {
        size_t start = s.pos;
        int rc = wv_rp_recv(readfull, &s, &scratch, &m, &err);
        if (rc < 0) {
            fz_check_err(&err, rc);
            FZ_CHECK(rc == WV_EFORMAT || rc == WV_EUNREACHABLE, "code %d: %s", rc, err.msg);
            break;
        }
        FZ_CHECK(wv_rp_type_name(m.type) != NULL, "unknown type 0x%02x accepted", m.type);
        FZ_CHECK(strlen(m.text) <= WV_RP_MAX_STR && strlen(m.hint) <= WV_RP_MAX_STR, "%s",
                 "string too long");
        FZ_CHECK(m.data_len <= WV_RP_CHUNK, "DATA of %zu bytes", m.data_len);
        if (m.type == WV_RP_ERROR)
            FZ_CHECK(m.code < 0 && strcmp(wv_err_name(m.code), "UNKNOWN") != 0, "ERROR code %d",
                     (int)m.code);
        wv_buf_reset(&again);
        wv_rp_encode(&m, &again);
        FZ_CHECK(again.len == s.pos - start && memcmp(again.data, s.p + start, again.len) == 0,
                 "a %s frame of %zu bytes encodes back to %zu other bytes", wv_rp_type_name(m.type),
                 s.pos - start, again.len);
        check_keys(m.text);
    }
    wv_buf_free(&scratch);
    wv_buf_free(&again);
    wv_buf_free(&framed);
    return 0;
}
