/*
 * tar.c - streaming tar reader. A small state machine over 512-byte blocks:
 *   HEADER  collect one header block, then dispatch on its type flag
 *   DATA    pass a member's content to the data callback as it arrives
 *   META    collect a GNU long name / long link or a pax header into a bounded buffer
 *   PAD     skip the padding up to the next block boundary
 */
#include "pipeline/tar.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

typedef enum { ST_HEADER, ST_DATA, ST_META, ST_PAD, ST_FAILED } tar_state;

struct wv_tar_reader {
    char *name;
    const wv_tar_callbacks *cb;
    void *arg;
    tar_state state;
    uint8_t hdr[WV_TAR_BLOCK];
    size_t hdr_len;
    uint64_t remaining; /* content bytes left (DATA, META) */
    uint64_t pad;       /* padding bytes left (PAD) */
    int in_member;      /* DATA/PAD of a real member: end() is due */
    char meta_type;     /* 'L', 'K', 'x' while in META */
    wv_buf meta;
    /* Overrides for the next member, from 'L', 'K' and 'x' headers. */
    char *next_path;
    char *next_link;
    int have_next_size;
    uint64_t next_size;
    int have_next_mtime;
    int64_t next_mtime;
    /* The current member's strings. */
    char *path;
    char *link;
    uint64_t offset;
    uint64_t members;
};

wv_tar_reader *wv_tar_reader_new(const char *name, const wv_tar_callbacks *cb, void *arg)
{
    wv_tar_reader *t = wv_xcalloc(1, sizeof(*t));
    t->name = wv_xstrdup(name ? name : "tar archive");
    t->cb = cb;
    t->arg = arg;
    t->state = ST_HEADER;
    wv_buf_init(&t->meta);
    return t;
}

static void clear_next(wv_tar_reader *t)
{
    free(t->next_path);
    free(t->next_link);
    t->next_path = t->next_link = NULL;
    t->have_next_size = t->have_next_mtime = 0;
}

void wv_tar_reader_free(wv_tar_reader *t)
{
    if (!t)
        return;
    clear_next(t);
    free(t->path);
    free(t->link);
    wv_buf_free(&t->meta);
    free(t->name);
    free(t);
}

uint64_t wv_tar_reader_offset(const wv_tar_reader *t)
{
    return t->offset;
}

uint64_t wv_tar_reader_members(const wv_tar_reader *t)
{
    return t->members;
}

static int fail(wv_tar_reader *t, wv_err *err, int code)
{
    t->state = ST_FAILED;
    return code;
}

/* Octal (NUL/space terminated, leading spaces allowed) or GNU base-256 (high bit of first byte). */
static int parse_number(const uint8_t *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (p[0] & 0x80) {
        if (p[0] & 0x40)
            return -1; /* negative */
        v = p[0] & 0x3f;
        for (size_t i = 1; i < n; i++) {
            if (v >> 56)
                return -1;
            v = (v << 8) | p[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    size_t digits = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
        if (v >> 61)
            return -1;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    for (; i < n; i++)
        if (p[i] != ' ' && p[i] != '\0')
            return -1;
    *out = v;
    return 0;
}

static int block_is_zero(const uint8_t *b)
{
    for (size_t i = 0; i < WV_TAR_BLOCK; i++)
        if (b[i])
            return 0;
    return 1;
}

static int checksum_ok(const uint8_t *h)
{
    uint64_t want;
    if (parse_number(h + 148, 8, &want) < 0)
        return 0;
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (size_t i = 0; i < WV_TAR_BLOCK; i++) {
        uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];
        usum += c;
        ssum += (int8_t)c;
    }
    return usum == want || (uint64_t)ssum == want;
}

static char *field_str(const uint8_t *p, size_t n)
{
    size_t len = 0;
    while (len < n && p[len])
        len++;
    return wv_xstrndup(len ? (const char *)p : "", len); /* p is NULL for an empty GNU long name */
}

/* Normalise a member path: drop leading "./" and "/" and a trailing '/'. */
static int normalise_path(char *p)
{
    char *s = p;
    for (;;) {
        if (s[0] == '.' && s[1] == '/')
            s += 2;
        else if (s[0] == '/')
            s++;
        else
            break;
    }
    memmove(p, s, strlen(s) + 1);
    size_t len = strlen(p);
    while (len > 0 && p[len - 1] == '/')
        p[--len] = '\0';
    return len > 0 ? 0 : -1;
}

/* Pax records: "LEN key=value\n" ... */
static int parse_pax(wv_tar_reader *t, wv_err *err)
{
    const char *p = (const char *)t->meta.data;
    size_t left = t->meta.len;
    while (left > 0) {
        size_t i = 0, len = 0;
        while (i < left && p[i] >= '0' && p[i] <= '9') {
            len = len * 10 + (size_t)(p[i] - '0');
            if (len > left)
                break;
            i++;
        }
        if (i == 0 || i >= left || p[i] != ' ' || len > left || len <= i + 1 || p[len - 1] != '\n')
            return wv_err_set(err, WV_ECORRUPT, "malformed pax header in \"%s\" at offset %llu",
                              t->name, (unsigned long long)t->offset);
        const char *kv = p + i + 1;
        size_t kvlen = len - i - 2; /* without the newline */
        const char *eq = memchr(kv, '=', kvlen);
        if (!eq)
            return wv_err_set(err, WV_ECORRUPT, "malformed pax record in \"%s\" at offset %llu",
                              t->name, (unsigned long long)t->offset);
        size_t klen = (size_t)(eq - kv);
        const char *val = eq + 1;
        size_t vlen = kvlen - klen - 1;
        if (klen == 4 && memcmp(kv, "path", 4) == 0) {
            free(t->next_path);
            t->next_path = wv_xstrndup(val, vlen);
        } else if (klen == 8 && memcmp(kv, "linkpath", 8) == 0) {
            free(t->next_link);
            t->next_link = wv_xstrndup(val, vlen);
        } else if ((klen == 4 && memcmp(kv, "size", 4) == 0) ||
                   (klen == 5 && memcmp(kv, "mtime", 5) == 0)) {
            char tmp[32];
            size_t n = vlen < sizeof(tmp) - 1 ? vlen : sizeof(tmp) - 1;
            memcpy(tmp, val, n);
            tmp[n] = '\0';
            char *end;
            if (klen == 4) {
                unsigned long long v = strtoull(tmp, &end, 10);
                if (end == tmp || *end)
                    return wv_err_set(err, WV_ECORRUPT, "bad pax size in \"%s\" at offset %llu",
                                      t->name, (unsigned long long)t->offset);
                t->have_next_size = 1;
                t->next_size = v;
            } else {
                long long v = strtoll(tmp, &end, 10); /* fractional part ignored */
                if (end == tmp || (*end && *end != '.'))
                    return wv_err_set(err, WV_ECORRUPT, "bad pax mtime in \"%s\" at offset %llu",
                                      t->name, (unsigned long long)t->offset);
                t->have_next_mtime = 1;
                t->next_mtime = v;
            }
        }
        p += len;
        left -= len;
    }
    return 0;
}

static int end_meta(wv_tar_reader *t, wv_err *err)
{
    int rc = 0;
    if (t->meta_type == 'L' || t->meta_type == 'K') {
        char *s = field_str(t->meta.data, t->meta.len);
        char **slot = t->meta_type == 'L' ? &t->next_path : &t->next_link;
        free(*slot);
        *slot = s;
    } else if (t->meta_type == 'x') {
        rc = parse_pax(t, err);
    }
    wv_buf_reset(&t->meta);
    return rc;
}

static int handle_header(wv_tar_reader *t, wv_err *err)
{
    const uint8_t *h = t->hdr;
    uint64_t hdr_off = t->offset - WV_TAR_BLOCK;
    if (block_is_zero(h))
        return 0; /* trailer block */
    if (!checksum_ok(h))
        return wv_err_set(err, WV_ECORRUPT,
                          "bad tar header checksum in \"%s\" at offset %llu: not a tar archive or "
                          "corrupt stream",
                          t->name, (unsigned long long)hdr_off);
    uint64_t size, mode, mtime;
    if (parse_number(h + 124, 12, &size) < 0 || parse_number(h + 100, 8, &mode) < 0 ||
        parse_number(h + 136, 12, &mtime) < 0)
        return wv_err_set(err, WV_ECORRUPT, "bad number in tar header in \"%s\" at offset %llu",
                          t->name, (unsigned long long)hdr_off);
    char flag = (char)h[156];

    if (flag == 'L' || flag == 'K' || flag == 'x' || flag == 'g') {
        if (size > WV_TAR_META_MAX)
            return wv_err_set(err, WV_ECORRUPT,
                              "tar metadata header of %llu bytes in \"%s\" at offset %llu is too "
                              "large",
                              (unsigned long long)size, t->name, (unsigned long long)hdr_off);
        t->meta_type = flag;
        t->remaining = size;
        wv_buf_reset(&t->meta);
        t->pad = (WV_TAR_BLOCK - size % WV_TAR_BLOCK) % WV_TAR_BLOCK;
        t->in_member = 0;
        t->state = size ? ST_META : ST_PAD;
        if (!size)
            return end_meta(t, err);
        return 0;
    }

    int ustar = memcmp(h + 257, "ustar", 5) == 0;
    free(t->path);
    free(t->link);
    if (t->next_path) {
        t->path = t->next_path;
        t->next_path = NULL;
    } else {
        char *name = field_str(h, 100);
        if (ustar && h[345] && memcmp(h + 257, "ustar\0", 6) == 0) {
            char *prefix = field_str(h + 345, 155);
            t->path = wv_xasprintf("%s/%s", prefix, name);
            free(prefix);
            free(name);
        } else {
            t->path = name;
        }
    }
    if (t->next_link) {
        t->link = t->next_link;
        t->next_link = NULL;
    } else {
        t->link = field_str(h + 157, 100);
    }
    if (t->have_next_size)
        size = t->next_size;
    if (t->have_next_mtime)
        mtime = (uint64_t)t->next_mtime;
    clear_next(t);

    int was_dir_name = strlen(t->path) > 0 && t->path[strlen(t->path) - 1] == '/';
    if (normalise_path(t->path) < 0) {
        if (flag == '5' || was_dir_name) {
            /* "./" itself: the archive root; skip it */
            t->remaining = 0;
            t->pad = 0;
            t->in_member = 0;
            t->state = ST_HEADER;
            return 0;
        }
        return wv_err_set(err, WV_ECORRUPT,
                          "tar member with an empty name in \"%s\" at offset %llu", t->name,
                          (unsigned long long)hdr_off);
    }

    wv_tar_entry e = {0};
    e.typeflag = flag;
    switch (flag) {
    case '0':
    case '\0':
    case '7':
        e.type = was_dir_name && flag == '\0' ? WV_TAR_DIR : WV_TAR_FILE;
        break;
    case '5':
        e.type = WV_TAR_DIR;
        break;
    case '2':
        e.type = WV_TAR_SYMLINK;
        break;
    case '1':
        e.type = WV_TAR_HARDLINK;
        break;
    default:
        e.type = WV_TAR_OTHER;
        break;
    }
    /* Links and directories carry no content even if the size field says otherwise (old tars). */
    if (e.type == WV_TAR_DIR || e.type == WV_TAR_SYMLINK || e.type == WV_TAR_HARDLINK)
        size = 0;
    e.path = t->path;
    e.linkname = t->link;
    e.size = size;
    e.mode = (uint32_t)(mode & 07777);
    e.mtime = (int64_t)mtime;
    t->members++;
    int rc = t->cb->begin ? t->cb->begin(t->arg, &e, err) : 0;
    if (rc < 0)
        return rc;
    t->remaining = size;
    t->pad = (WV_TAR_BLOCK - size % WV_TAR_BLOCK) % WV_TAR_BLOCK;
    t->in_member = 1;
    if (size) {
        t->state = ST_DATA;
        return 0;
    }
    t->in_member = 0;
    t->state = ST_HEADER;
    return t->cb->end ? t->cb->end(t->arg, err) : 0;
}

int wv_tar_reader_feed(wv_tar_reader *t, const void *buf, size_t len, wv_err *err)
{
    const uint8_t *p = buf;
    int rc;
    if (t->state == ST_FAILED)
        return wv_err_set(err, WV_EINTERNAL, "tar reader for \"%s\" used after an error", t->name);
    while (len > 0) {
        switch (t->state) {
        case ST_HEADER: {
            size_t n = WV_TAR_BLOCK - t->hdr_len;
            if (n > len)
                n = len;
            memcpy(t->hdr + t->hdr_len, p, n);
            t->hdr_len += n;
            p += n;
            len -= n;
            t->offset += n;
            if (t->hdr_len == WV_TAR_BLOCK) {
                t->hdr_len = 0;
                if ((rc = handle_header(t, err)) < 0)
                    return fail(t, err, rc);
            }
            break;
        }
        case ST_DATA: {
            size_t n = t->remaining < len ? (size_t)t->remaining : len;
            if (t->cb->data && (rc = t->cb->data(t->arg, p, n, err)) < 0)
                return fail(t, err, rc);
            p += n;
            len -= n;
            t->offset += n;
            t->remaining -= n;
            if (t->remaining == 0) {
                if (t->pad) {
                    t->state = ST_PAD;
                } else {
                    t->in_member = 0;
                    t->state = ST_HEADER;
                    if (t->cb->end && (rc = t->cb->end(t->arg, err)) < 0)
                        return fail(t, err, rc);
                }
            }
            break;
        }
        case ST_META: {
            size_t n = t->remaining < len ? (size_t)t->remaining : len;
            wv_buf_append(&t->meta, p, n);
            p += n;
            len -= n;
            t->offset += n;
            t->remaining -= n;
            if (t->remaining == 0) {
                if ((rc = end_meta(t, err)) < 0)
                    return fail(t, err, rc);
                t->state = t->pad ? ST_PAD : ST_HEADER;
            }
            break;
        }
        case ST_PAD: {
            size_t n = t->pad < len ? (size_t)t->pad : len;
            p += n;
            len -= n;
            t->offset += n;
            t->pad -= n;
            if (t->pad == 0) {
                t->state = ST_HEADER;
                if (t->in_member) {
                    t->in_member = 0;
                    if (t->cb->end && (rc = t->cb->end(t->arg, err)) < 0)
                        return fail(t, err, rc);
                }
            }
            break;
        }
        case ST_FAILED:
            return wv_err_set(err, WV_EINTERNAL, "tar reader for \"%s\" used after an error",
                              t->name);
        }
    }
    return 0;
}

int wv_tar_reader_finish(wv_tar_reader *t, wv_err *err)
{
    if (t->state == ST_FAILED)
        return wv_err_set(err, WV_EINTERNAL, "tar reader for \"%s\" used after an error", t->name);
    if (t->state != ST_HEADER || t->hdr_len != 0) {
        const char *where = t->state == ST_HEADER ? "a header"
                            : t->state == ST_META ? "a metadata header"
                            : t->state == ST_DATA ? "the content of"
                                                  : "the padding of";
        int member = t->state == ST_DATA || t->state == ST_PAD;
        wv_err_set(err, WV_ECORRUPT,
                   "tar archive \"%s\" is truncated: it ends inside %s%s%s%s at "
                   "offset %llu",
                   t->name, where, member ? " \"" : "", member ? t->path : "", member ? "\"" : "",
                   (unsigned long long)t->offset);
        wv_err_hint(err, "the connection was probably lost; run the backup again");
        return fail(t, err, WV_ECORRUPT);
    }
    if (t->next_path || t->next_link || t->have_next_size || t->have_next_mtime) {
        wv_err_set(err, WV_ECORRUPT,
                   "tar archive \"%s\" is truncated: it ends after a long-name or pax header",
                   t->name);
        return fail(t, err, WV_ECORRUPT);
    }
    return 0;
}
