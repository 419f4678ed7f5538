/* remoteproto.c - frame encoding and decoding for the ssh driver and walvault-remote. */
#include "storage/remoteproto.h"

#include "core/bytes.h"

#include <stdio.h>
#include <string.h>

const char *wv_rp_type_name(uint8_t type)
{
    switch (type) {
    case WV_RP_HELLO:
        return "HELLO";
    case WV_RP_PUT:
        return "PUT";
    case WV_RP_DATA:
        return "DATA";
    case WV_RP_COMMIT:
        return "COMMIT";
    case WV_RP_ABORT:
        return "ABORT";
    case WV_RP_GET:
        return "GET";
    case WV_RP_STAT:
        return "STAT";
    case WV_RP_LIST:
        return "LIST";
    case WV_RP_REMOVE:
        return "REMOVE";
    case WV_RP_FLUSH:
        return "FLUSH";
    case WV_RP_HELLO_OK:
        return "HELLO_OK";
    case WV_RP_OK:
        return "OK";
    case WV_RP_ERROR:
        return "ERROR";
    case WV_RP_STAT_OK:
        return "STAT_OK";
    case WV_RP_ENTRY:
        return "ENTRY";
    case WV_RP_END:
        return "END";
    default:
        return NULL;
    }
}

void wv_rp_header_encode(uint8_t *out, uint8_t type, uint32_t len)
{
    wv_put_be32(out, len);
    out[4] = type;
}

int wv_rp_header_decode(const uint8_t *in, uint8_t *type, uint32_t *len, wv_err *err)
{
    uint32_t l = wv_get_be32(in);
    if (!wv_rp_type_name(in[4]))
        return wv_err_set(err, WV_EFORMAT, "protocol error: unknown frame type 0x%02x", in[4]);
    if (l > WV_RP_MAX_PAYLOAD)
        return wv_err_set(err, WV_EFORMAT,
                          "protocol error: %s frame of %u bytes exceeds the limit of %u bytes",
                          wv_rp_type_name(in[4]), (unsigned)l, (unsigned)WV_RP_MAX_PAYLOAD);
    *type = in[4];
    *len = l;
    return 0;
}

/* --- encoding --------------------------------------------------------------------------------- */

static void enc_u32(wv_buf *b, uint32_t v)
{
    wv_put_be32(wv_buf_reserve(b, 4), v);
    b->len += 4;
}

static void enc_u64(wv_buf *b, uint64_t v)
{
    enc_u32(b, (uint32_t)(v >> 32));
    enc_u32(b, (uint32_t)v);
}

static void enc_str(wv_buf *b, const char *s)
{
    size_t n = strnlen(s, WV_RP_MAX_STR);
    enc_u32(b, (uint32_t)n);
    wv_buf_append(b, s, n);
}

void wv_rp_encode(const wv_rp_msg *m, wv_buf *out)
{
    size_t start = out->len;
    wv_buf_reserve(out, WV_RP_HEADER_SIZE);
    out->len += WV_RP_HEADER_SIZE;
    switch (m->type) {
    case WV_RP_HELLO:
    case WV_RP_HELLO_OK:
        enc_u32(out, m->proto);
        enc_str(out, m->text);
        break;
    case WV_RP_PUT:
        enc_u32(out, m->flags);
        enc_str(out, m->text);
        break;
    case WV_RP_DATA:
        if (m->data_len)
            wv_buf_append(out, m->data, m->data_len);
        break;
    case WV_RP_GET:
        enc_u64(out, (uint64_t)m->offset);
        enc_u64(out, (uint64_t)m->length);
        enc_str(out, m->text);
        break;
    case WV_RP_STAT:
    case WV_RP_LIST:
    case WV_RP_REMOVE:
        enc_str(out, m->text);
        break;
    case WV_RP_ERROR:
        enc_u32(out, (uint32_t)m->code);
        enc_str(out, m->text);
        enc_str(out, m->hint);
        break;
    case WV_RP_STAT_OK:
        enc_u64(out, m->size);
        enc_u64(out, (uint64_t)m->mtime);
        break;
    case WV_RP_ENTRY:
        enc_u64(out, m->size);
        enc_u64(out, (uint64_t)m->mtime);
        enc_str(out, m->text);
        break;
    default: /* COMMIT, ABORT, FLUSH, OK, END: empty */
        break;
    }
    wv_rp_header_encode(out->data + start, m->type,
                        (uint32_t)(out->len - start - WV_RP_HEADER_SIZE));
}

/* --- decoding --------------------------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    const char *what; /* frame type name, for messages */
    wv_err *err;
    int rc;
} reader;

static int short_payload(reader *r)
{
    if (!r->rc)
        r->rc = wv_err_set(r->err, WV_EFORMAT, "protocol error: truncated %s frame", r->what);
    return r->rc;
}

static uint32_t dec_u32(reader *r)
{
    if (r->rc || r->len - r->pos < 4) {
        short_payload(r);
        return 0;
    }
    uint32_t v = wv_get_be32(r->p + r->pos);
    r->pos += 4;
    return v;
}

static uint64_t dec_u64(reader *r)
{
    uint64_t hi = dec_u32(r);
    uint64_t lo = dec_u32(r);
    return (hi << 32) | lo;
}

static void dec_str(reader *r, char *out)
{
    uint32_t n = dec_u32(r);
    out[0] = '\0';
    if (r->rc)
        return;
    if (n > WV_RP_MAX_STR) {
        r->rc = wv_err_set(r->err, WV_EFORMAT,
                           "protocol error: string of %u bytes in %s frame exceeds %d bytes",
                           (unsigned)n, r->what, WV_RP_MAX_STR);
        return;
    }
    if (r->len - r->pos < n) {
        short_payload(r);
        return;
    }
    if (memchr(r->p + r->pos, '\0', n)) {
        r->rc = wv_err_set(r->err, WV_EFORMAT, "protocol error: NUL byte in a string of a %s frame",
                           r->what);
        return;
    }
    memcpy(out, r->p + r->pos, n);
    out[n] = '\0';
    r->pos += n;
}

void wv_rp_msg_init(wv_rp_msg *m, uint8_t type)
{
    m->type = type;
    m->proto = 0;
    m->flags = 0;
    m->code = 0;
    m->offset = 0;
    m->length = 0;
    m->size = 0;
    m->mtime = 0;
    m->text[0] = '\0';
    m->hint[0] = '\0';
    m->data = NULL;
    m->data_len = 0;
}

void wv_rp_msg_error(wv_rp_msg *m, const wv_err *e)
{
    wv_rp_msg_init(m, WV_RP_ERROR);
    m->code = e->code ? e->code : WV_EINTERNAL;
    snprintf(m->text, sizeof(m->text), "%s", e->msg);
    snprintf(m->hint, sizeof(m->hint), "%s", e->hint);
}

int wv_rp_decode(uint8_t type, const uint8_t *payload, size_t len, wv_rp_msg *m, wv_err *err)
{
    const char *name = wv_rp_type_name(type);
    if (!name)
        return wv_err_set(err, WV_EFORMAT, "protocol error: unknown frame type 0x%02x", type);
    if (len > WV_RP_MAX_PAYLOAD)
        return wv_err_set(err, WV_EFORMAT, "protocol error: %s frame of %zu bytes is too long",
                          name, len);
    reader r = {payload, len, 0, name, err, 0};
    wv_rp_msg_init(m, type);
    switch (type) {
    case WV_RP_HELLO:
    case WV_RP_HELLO_OK:
        m->proto = dec_u32(&r);
        dec_str(&r, m->text);
        break;
    case WV_RP_PUT:
        m->flags = dec_u32(&r);
        dec_str(&r, m->text);
        break;
    case WV_RP_DATA:
        if (len > WV_RP_CHUNK)
            return wv_err_set(err, WV_EFORMAT,
                              "protocol error: DATA frame of %zu bytes exceeds %d bytes", len,
                              WV_RP_CHUNK);
        m->data = payload;
        m->data_len = len;
        r.pos = len;
        break;
    case WV_RP_GET:
        m->offset = (int64_t)dec_u64(&r);
        m->length = (int64_t)dec_u64(&r);
        dec_str(&r, m->text);
        break;
    case WV_RP_STAT:
    case WV_RP_LIST:
    case WV_RP_REMOVE:
        dec_str(&r, m->text);
        break;
    case WV_RP_ERROR:
        m->code = (int32_t)dec_u32(&r);
        dec_str(&r, m->text);
        dec_str(&r, m->hint);
        if (!r.rc && (m->code >= 0 || strcmp(wv_err_name(m->code), "UNKNOWN") == 0))
            r.rc = wv_err_set(err, WV_EFORMAT, "protocol error: ERROR frame with unknown code %d",
                              (int)m->code);
        break;
    case WV_RP_STAT_OK:
        m->size = dec_u64(&r);
        m->mtime = (int64_t)dec_u64(&r);
        break;
    case WV_RP_ENTRY:
        m->size = dec_u64(&r);
        m->mtime = (int64_t)dec_u64(&r);
        dec_str(&r, m->text);
        break;
    default:
        break;
    }
    if (r.rc)
        return r.rc;
    if (r.pos != len)
        return wv_err_set(err, WV_EFORMAT, "protocol error: %zu trailing bytes in a %s frame",
                          len - r.pos, name);
    return 0;
}

int wv_rp_recv(wv_rp_io_fn readfull, void *ctx, wv_buf *scratch, wv_rp_msg *m, wv_err *err)
{
    uint8_t hdr[WV_RP_HEADER_SIZE];
    uint8_t type = 0;
    uint32_t len = 0;
    int rc = readfull(ctx, hdr, sizeof(hdr), err);
    if (rc)
        return rc;
    if ((rc = wv_rp_header_decode(hdr, &type, &len, err)))
        return rc;
    wv_buf_reset(scratch);
    uint8_t *p = wv_buf_reserve(scratch, len ? len : 1);
    if (len && (rc = readfull(ctx, p, len, err)))
        return rc;
    scratch->len = len;
    return wv_rp_decode(type, p, len, m, err);
}

int wv_rp_send(wv_rp_io_fn writefull, void *ctx, wv_buf *scratch, const wv_rp_msg *m, wv_err *err)
{
    wv_buf_reset(scratch);
    wv_rp_encode(m, scratch);
    return writefull(ctx, scratch->data, scratch->len, err);
}

/* --- keys ------------------------------------------------------------------------------------- */

int wv_rp_key_valid(const char *key)
{
    if (!key || !*key || key[0] == '/' || strlen(key) > WV_RP_MAX_STR)
        return 0;
    const char *comp = key;
    for (const char *p = key;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - comp);
            if (n == 0 || (n == 1 && comp[0] == '.') ||
                (n == 2 && comp[0] == '.' && comp[1] == '.'))
                return 0;
            if (*p == '\0')
                return 1;
            comp = p + 1;
        } else if (*p < 0x21 || *p > 0x7e || *p == '\\') {
            return 0;
        }
    }
}

int wv_rp_prefix_valid(const char *prefix)
{
    if (!prefix)
        return 0;
    size_t n = strlen(prefix);
    if (n == 0)
        return 1;
    if (n > WV_RP_MAX_STR)
        return 0;
    if (prefix[n - 1] != '/')
        return wv_rp_key_valid(prefix);
    char tmp[WV_RP_MAX_STR + 1];
    memcpy(tmp, prefix, n - 1);
    tmp[n - 1] = '\0';
    return wv_rp_key_valid(tmp);
}
