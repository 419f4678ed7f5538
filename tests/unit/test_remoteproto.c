/*
 * test_remoteproto.c - the frames of the ssh driver's protocol (round trips, every malformed frame)
 * and the driver with the real walvault-remote helper behind a stand-in for ssh (a shell script
 * that runs the remote command locally, or fails as ssh would). The real sshd is in the
 * integration suite.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "storage/remoteproto.h"
#include "storage/storage.h"
#include "storage/driver.h"

/* ---- frames --------------------------------------------------------------------------------- */

static wv_rp_msg *msg_new(uint8_t type)
{
    wv_rp_msg *m = wv_xcalloc(1, sizeof(*m));
    wv_rp_msg_init(m, type);
    return m;
}

/* Encode, check the header, decode, and compare every field that the type carries. */
static void roundtrip(const wv_rp_msg *m)
{
    wv_buf b = WV_BUF_INIT;
    wv_err err;
    uint8_t type;
    uint32_t len;
    wv_rp_encode(m, &b);
    assert_true(b.len >= WV_RP_HEADER_SIZE);
    assert_int_equal(wv_rp_header_decode(b.data, &type, &len, &err), 0);
    assert_int_equal(type, m->type);
    assert_int_equal(len, b.len - WV_RP_HEADER_SIZE);
    wv_rp_msg *d = msg_new(0);
    assert_int_equal(wv_rp_decode(type, b.data + WV_RP_HEADER_SIZE, len, d, &err), 0);
    assert_int_equal(d->type, m->type);
    assert_int_equal(d->proto, m->proto);
    assert_int_equal(d->flags, m->flags);
    assert_int_equal(d->code, m->code);
    assert_true(d->offset == m->offset);
    assert_true(d->length == m->length);
    assert_true(d->size == m->size);
    assert_true(d->mtime == m->mtime);
    assert_string_equal(d->text, m->text);
    assert_string_equal(d->hint, m->hint);
    assert_int_equal(d->data_len, m->data_len);
    if (m->data_len)
        assert_memory_equal(d->data, m->data, m->data_len);
    free(d);
    wv_buf_free(&b);
}

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    static uint8_t data[WV_RP_CHUNK];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    const uint8_t types[] = {WV_RP_HELLO,  WV_RP_PUT,     WV_RP_DATA,     WV_RP_COMMIT,
                             WV_RP_ABORT,  WV_RP_GET,     WV_RP_STAT,     WV_RP_LIST,
                             WV_RP_REMOVE, WV_RP_FLUSH,   WV_RP_HELLO_OK, WV_RP_OK,
                             WV_RP_ERROR,  WV_RP_STAT_OK, WV_RP_ENTRY,    WV_RP_END};
    for (size_t i = 0; i < sizeof(types); i++) {
        wv_rp_msg *m = msg_new(types[i]);
        assert_non_null(wv_rp_type_name(types[i]));
        switch (types[i]) {
        case WV_RP_HELLO:
        case WV_RP_HELLO_OK:
            m->proto = WV_RP_PROTO_VERSION;
            strcpy(m->text, "0.1.0");
            break;
        case WV_RP_PUT:
            m->flags = WV_PUT_NOREPLACE | WV_PUT_NOSYNC;
            strcpy(m->text, "wal/0000000100000000/000000010000000000000001");
            break;
        case WV_RP_DATA:
            m->data = data;
            m->data_len = sizeof(data);
            break;
        case WV_RP_GET:
            m->offset = -4096;
            m->length = -1;
            strcpy(m->text, "a/b");
            break;
        case WV_RP_STAT:
        case WV_RP_REMOVE:
            strcpy(m->text, "backup/x/manifest");
            break;
        case WV_RP_ERROR:
            m->code = WV_ENOSPACE;
            strcpy(m->text, "could not write \"x\": No space left on device");
            strcpy(m->hint, "free space on the backup server");
            break;
        case WV_RP_STAT_OK:
            m->size = UINT64_C(0x123456789abcdef0);
            m->mtime = -5;
            break;
        case WV_RP_ENTRY:
            m->size = 16 << 20;
            m->mtime = 1764072000;
            strcpy(m->text, "wal/history/00000002.history");
            break;
        default: /* empty payloads; LIST with an empty prefix */
            break;
        }
        roundtrip(m);
        free(m);
    }
    /* Edge values: empty DATA, a string of exactly the maximum length, large offsets. */
    wv_rp_msg *m = msg_new(WV_RP_DATA);
    roundtrip(m);
    wv_rp_msg_init(m, WV_RP_LIST);
    memset(m->text, 'k', WV_RP_MAX_STR);
    m->text[WV_RP_MAX_STR] = '\0';
    roundtrip(m);
    wv_rp_msg_init(m, WV_RP_GET);
    m->offset = INT64_MAX;
    m->length = INT64_MAX;
    strcpy(m->text, "k");
    roundtrip(m);
    free(m);
}

/* Build a payload by hand. */
static size_t be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

static void expect_format(uint8_t type, const uint8_t *p, size_t n, const char *needle)
{
    wv_rp_msg *m = msg_new(0);
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_rp_decode(type, p, n, m, &err), WV_EFORMAT);
    assert_int_equal(err.code, WV_EFORMAT);
    if (!strstr(err.msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    free(m);
}

static void test_truncated_payloads(void **state)
{
    (void)state;
    /* Every proper prefix of every non-empty encoding is rejected. */
    const uint8_t types[] = {WV_RP_HELLO,  WV_RP_PUT,   WV_RP_GET,     WV_RP_STAT,  WV_RP_LIST,
                             WV_RP_REMOVE, WV_RP_ERROR, WV_RP_STAT_OK, WV_RP_ENTRY, WV_RP_HELLO_OK};
    for (size_t i = 0; i < sizeof(types); i++) {
        wv_rp_msg *m = msg_new(types[i]);
        strcpy(m->text, "abc");
        strcpy(m->hint, "h");
        m->code = WV_EIO;
        wv_buf b = WV_BUF_INIT;
        wv_rp_encode(m, &b);
        size_t plen = b.len - WV_RP_HEADER_SIZE;
        for (size_t cut = 0; cut < plen; cut++) {
            expect_format(types[i], b.data + WV_RP_HEADER_SIZE, cut, "truncated");
        }
        /* One byte too many. */
        uint8_t *p = wv_xmalloc(plen + 1);
        memcpy(p, b.data + WV_RP_HEADER_SIZE, plen);
        p[plen] = 0;
        expect_format(types[i], p, plen + 1, "trailing");
        free(p);
        wv_buf_free(&b);
        free(m);
    }
    expect_format(WV_RP_LIST, (const uint8_t *)"", 0, "truncated");
    /* Frames that carry nothing must be empty. */
    const uint8_t empty[] = {WV_RP_COMMIT, WV_RP_ABORT, WV_RP_FLUSH, WV_RP_OK, WV_RP_END};
    for (size_t i = 0; i < sizeof(empty); i++)
        expect_format(empty[i], (const uint8_t *)"x", 1, "trailing");
}

static void test_malformed_frames(void **state)
{
    (void)state;
    uint8_t hdr[WV_RP_HEADER_SIZE];
    uint8_t type;
    uint32_t len;
    wv_err err;

    /* Unknown types, in the header and in decode. */
    const uint8_t unknown[] = {0x00, 0x0b, 0x42, 0x80, 0x87, 0xff};
    for (size_t i = 0; i < sizeof(unknown); i++) {
        assert_null(wv_rp_type_name(unknown[i]));
        wv_rp_header_encode(hdr, unknown[i], 0);
        assert_int_equal(wv_rp_header_decode(hdr, &type, &len, &err), WV_EFORMAT);
        assert_non_null(strstr(err.msg, "unknown frame type"));
        expect_format(unknown[i], NULL, 0, "unknown frame type");
    }
    /* Oversized lengths. */
    const uint32_t big[] = {WV_RP_MAX_PAYLOAD + 1, 0x7fffffff, 0xffffffff};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        wv_rp_header_encode(hdr, WV_RP_DATA, big[i]);
        assert_int_equal(wv_rp_header_decode(hdr, &type, &len, &err), WV_EFORMAT);
        assert_non_null(strstr(err.msg, "exceeds the limit"));
    }
    wv_rp_header_encode(hdr, WV_RP_PUT, WV_RP_MAX_PAYLOAD);
    assert_int_equal(wv_rp_header_decode(hdr, &type, &len, &err), 0);
    assert_int_equal(len, WV_RP_MAX_PAYLOAD);

    /* DATA over the chunk size. */
    uint8_t *p = wv_xcalloc(1, WV_RP_CHUNK + 1);
    expect_format(WV_RP_DATA, p, WV_RP_CHUNK + 1, "exceeds");
    free(p);

    /* Strings: too long, longer than the payload, holding a NUL. */
    uint8_t buf[64];
    size_t n = be32(buf, WV_RP_MAX_STR + 1);
    expect_format(WV_RP_STAT, buf, n, "exceeds");
    n = be32(buf, 10);
    memcpy(buf + n, "abc", 3);
    expect_format(WV_RP_STAT, buf, n + 3, "truncated");
    n = be32(buf, 3);
    memcpy(buf + n, "a\0c", 3);
    expect_format(WV_RP_REMOVE, buf, n + 3, "NUL");

    /* ERROR codes outside the table: zero, positive, unknown negative. */
    const int32_t bad_codes[] = {0, 1, -99, INT32_MIN};
    for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
        n = be32(buf, (uint32_t)bad_codes[i]);
        n += be32(buf + n, 0);
        n += be32(buf + n, 0);
        expect_format(WV_RP_ERROR, buf, n, "unknown code");
    }
}

/* A transport over a byte string, to test wv_rp_recv's framing. */
typedef struct mem_io {
    const uint8_t *p;
    size_t len;
    size_t pos;
} mem_io;

static int mem_read(void *ctx, void *buf, size_t len, wv_err *err)
{
    mem_io *io = ctx;
    if (io->len - io->pos < len)
        return wv_err_set(err, WV_EUNREACHABLE, "connection closed");
    memcpy(buf, io->p + io->pos, len);
    io->pos += len;
    return 0;
}

static void test_recv_stream(void **state)
{
    (void)state;
    wv_buf b = WV_BUF_INIT, scratch = WV_BUF_INIT;
    wv_rp_msg *m = msg_new(WV_RP_PUT);
    wv_err err;
    strcpy(m->text, "k1");
    wv_rp_encode(m, &b);
    size_t first = b.len;
    wv_rp_msg_init(m, WV_RP_COMMIT);
    wv_rp_encode(m, &b);

    mem_io io = {b.data, b.len, 0};
    assert_int_equal(wv_rp_recv(mem_read, &io, &scratch, m, &err), 0);
    assert_int_equal(m->type, WV_RP_PUT);
    assert_string_equal(m->text, "k1");
    assert_int_equal(wv_rp_recv(mem_read, &io, &scratch, m, &err), 0);
    assert_int_equal(m->type, WV_RP_COMMIT);
    /* The end of the stream, and a stream cut inside a frame: the transport's error. */
    assert_int_equal(wv_rp_recv(mem_read, &io, &scratch, m, &err), WV_EUNREACHABLE);
    for (size_t cut = 1; cut < first; cut++) {
        mem_io cio = {b.data, cut, 0};
        int rc = wv_rp_recv(mem_read, &cio, &scratch, m, &err);
        assert_int_equal(rc, WV_EUNREACHABLE);
    }
    free(m);
    wv_buf_free(&b);
    wv_buf_free(&scratch);
}

static void test_key_rules(void **state)
{
    (void)state;
    const char *good[] = {
        "a", "wal/0000000100000000/000000010000000000000001", "a.b/c..d", ".hidden", "x/...", NULL};
    const char *bad[] = {"",     "/etc/passwd", "../x",     "a/../../x", "a/..", "..",
                         ".",    "./a",         "a//b",     "a/",        "a\\b", "a b",
                         "a\tb", "a\x7f",       "\xc3\xa9", NULL};
    for (int i = 0; good[i]; i++)
        assert_true(wv_rp_key_valid(good[i]) && wv_storage_key_valid(good[i]));
    for (int i = 0; bad[i]; i++) {
        if (wv_rp_key_valid(bad[i]) || wv_storage_key_valid(bad[i]))
            fail_msg("key \"%s\" accepted", bad[i]);
    }
    assert_true(wv_rp_prefix_valid(""));
    assert_true(wv_rp_prefix_valid("wal/"));
    assert_true(wv_rp_prefix_valid("wal/00000001"));
    assert_false(wv_rp_prefix_valid("../"));
    assert_false(wv_rp_prefix_valid("/"));
    assert_false(wv_rp_prefix_valid("a//"));
}

/* ---- the driver, with walvault-remote behind a stand-in for ssh ------------------------------ */

typedef struct env {
    char dir[64];
    char repo[128];
    char fake_ssh[128];
    char helper[4200];
} env;

static void write_script(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
}

static int env_setup(void **state)
{
    env *e = wv_xcalloc(1, sizeof(*e));
    strcpy(e->dir, "/tmp/wv-rp-test.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->repo, sizeof(e->repo), "%s/repo", e->dir);
    assert_int_equal(mkdir(e->repo, 0750), 0);
    /* The last argument is the remote command line; a real ssh hands it to the remote shell. */
    snprintf(e->fake_ssh, sizeof(e->fake_ssh), "%s/fake-ssh", e->dir);
    write_script(e->fake_ssh, "#!/bin/sh\nfor a; do last=$a; done\nexec /bin/sh -c \"$last\"\n");
    /* walvault-remote is built into the same directory as this test. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    snprintf(e->helper, sizeof(e->helper), "%s/walvault-remote", self);
    if (access(e->helper, X_OK) != 0)
        fail_msg("%s is missing: build the walvault-remote target", e->helper);
    *state = e;
    return 0;
}

static int env_teardown(void **state)
{
    env *e = *state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static wv_storage *open_ssh(env *e, const char *ssh_command, const char *remote, wv_err *err)
{
    wv_repo_config rc;
    memset(&rc, 0, sizeof(rc));
    strcpy(rc.name, "repo2");
    rc.type = WV_REPO_SSH;
    rc.host = "backup.example";
    rc.port = 2222;
    rc.path = e->repo;
    rc.ssh_command = (char *)ssh_command;
    rc.remote_command = (char *)remote;
    wv_storage *st = NULL;
    assert_int_equal(wv_storage_ssh_new(&rc, &st, err), 0);
    strcpy(st->name, rc.name); /* as wv_storage_open does */
    return st;
}

static void put_bytes(wv_storage *st, const char *key, unsigned flags, const uint8_t *p, size_t n,
                      size_t piece, int expect)
{
    wv_sink *s = NULL;
    wv_err err;
    int orc = wv_storage_put_open(st, key, flags, &s, &err);
    if (orc != 0)
        fail_msg("put_open of %s: %s (%s)", key, wv_err_name(orc), err.msg);
    for (size_t off = 0; off < n; off += piece)
        assert_int_equal(wv_sink_write(s, p + off, n - off < piece ? n - off : piece, &err), 0);
    int rc = wv_sink_commit(s, &err);
    if (rc != expect)
        fail_msg("commit of %s: %d (%s), expected %d", key, rc, err.msg, expect);
}

static size_t get_bytes(wv_storage *st, const char *key, int64_t off, int64_t len, uint8_t *out,
                        size_t cap)
{
    wv_source *src = NULL;
    wv_err err;
    size_t total = 0, got;
    assert_int_equal(wv_storage_get_open(st, key, off, len, &src, &err), 0);
    do {
        assert_int_equal(
            wv_source_read(src, out + total, cap - total < 1000 ? cap - total : 1000, &got, &err),
            0);
        total += got;
    } while (got > 0 && total < cap);
    wv_source_close(src);
    return total;
}

typedef struct seen {
    char keys[8][64];
    int n;
} seen;

static int list_cb(void *arg, const char *key, const wv_stat *ws)
{
    seen *s = arg;
    (void)ws;
    if (s->n < 8)
        snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    s->n++;
    return 0;
}

static void test_driver_roundtrip(void **state)
{
    env *e = *state;
    wv_err err;
    wv_storage *st = open_ssh(e, e->fake_ssh, e->helper, &err);
    assert_int_equal(strncmp(wv_storage_location(st), "ssh://backup.example:2222/tmp/", 30), 0);
    size_t n = 3 * WV_RP_CHUNK + 12345;
    uint8_t *data = wv_xmalloc(n), *back = wv_xmalloc(n + 10);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)((i * 2654435761u) >> 13);

    put_bytes(st, "wal/0000000100000000/seg1", WV_PUT_NOREPLACE, data, n, 70000, 0);
    put_bytes(st, "wal/0000000100000000/seg1", WV_PUT_NOREPLACE, data, 10, 10, WV_EEXIST);
    put_bytes(st, "small", 0, data, 1, 1, 0);
    put_bytes(st, "small", 0, data + 1, 5, 5, 0); /* replaces */
    put_bytes(st, "empty", WV_PUT_NOSYNC, data, 0, 1, 0);
    assert_int_equal(wv_storage_flush(st, &err), 0);

    assert_int_equal(get_bytes(st, "wal/0000000100000000/seg1", 0, -1, back, n + 10), n);
    assert_memory_equal(back, data, n);
    assert_int_equal(get_bytes(st, "wal/0000000100000000/seg1", 1000, 5000, back, n), 5000);
    assert_memory_equal(back, data + 1000, 5000);
    assert_int_equal(get_bytes(st, "wal/0000000100000000/seg1", -777, 0, back, n), 777);
    assert_memory_equal(back, data + n - 777, 777);
    assert_int_equal(get_bytes(st, "small", -100, 0, back, n), 5);
    assert_memory_equal(back, data + 1, 5);
    assert_int_equal(get_bytes(st, "small", 99, -1, back, n), 0);
    assert_int_equal(get_bytes(st, "empty", 0, -1, back, n), 0);

    /* A source closed early keeps the session usable (small rest) or drops it (large rest). */
    wv_source *src = NULL;
    size_t got;
    assert_int_equal(wv_storage_get_open(st, "wal/0000000100000000/seg1", 0, -1, &src, &err), 0);
    assert_int_equal(wv_source_read(src, back, 10, &got, &err), 0);
    assert_int_equal(got, 10);
    wv_source_close(src);
    assert_int_equal(get_bytes(st, "small", 0, -1, back, n), 5);

    wv_stat ws;
    assert_int_equal(wv_storage_stat(st, "wal/0000000100000000/seg1", &ws, &err), 0);
    assert_int_equal(ws.size, n);
    assert_true(ws.mtime > 0);
    assert_int_equal(wv_storage_stat(st, "nope", &ws, &err), WV_ENOTFOUND);
    assert_int_equal(wv_storage_get_open(st, "nope/x", 0, -1, &src, &err), WV_ENOTFOUND);
    assert_non_null(strstr(err.msg, "repo2"));

    /* An aborted write leaves nothing, and the session goes on. */
    wv_sink *s = NULL;
    assert_int_equal(wv_storage_put_open(st, "aborted", 0, &s, &err), 0);
    assert_int_equal(wv_sink_write(s, data, WV_RP_CHUNK + 1, &err), 0);
    wv_sink_abort(s);
    assert_int_equal(wv_storage_stat(st, "aborted", &ws, &err), WV_ENOTFOUND);

    /* Two operations at once use two sessions. */
    assert_int_equal(wv_storage_put_open(st, "concurrent", 0, &s, &err), 0);
    assert_int_equal(wv_storage_stat(st, "small", &ws, &err), 0);
    assert_int_equal(wv_sink_write(s, "xy", 2, &err), 0);
    assert_int_equal(wv_sink_commit(s, &err), 0);

    seen sn = {0};
    assert_int_equal(wv_storage_list(st, "wal/", list_cb, &sn, &err), 0);
    assert_int_equal(sn.n, 1);
    assert_string_equal(sn.keys[0], "wal/0000000100000000/seg1");
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(wv_storage_list(st, "", list_cb, &sn, &err), 0);
    assert_int_equal(sn.n, 4); /* seg1, small, empty, concurrent */
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(wv_storage_list(st, "missing/", list_cb, &sn, &err), 0);
    assert_int_equal(sn.n, 0);

    assert_int_equal(wv_storage_remove(st, "small", &err), 0);
    assert_int_equal(wv_storage_remove(st, "small", &err), 0);
    assert_int_equal(wv_storage_stat(st, "small", &ws, &err), WV_ENOTFOUND);

    wv_storage_free(st);
    free(data);
    free(back);
}

static int stop_cb(void *arg, const char *key, const wv_stat *ws)
{
    (void)key;
    (void)ws;
    ++*(int *)arg;
    return 42;
}

static void test_driver_list_stop(void **state)
{
    env *e = *state;
    wv_err err;
    wv_storage *st = open_ssh(e, e->fake_ssh, e->helper, &err);
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof(key), "l/k%d", i);
        put_bytes(st, key, 0, (const uint8_t *)"x", 1, 1, 0);
    }
    int calls = 0;
    assert_int_equal(wv_storage_list(st, "l/", stop_cb, &calls, &err), 42);
    assert_int_equal(calls, 1);
    wv_stat ws;
    assert_int_equal(wv_storage_stat(st, "l/k1", &ws, &err), 0); /* session still in step */
    wv_storage_free(st);
}

/* Each case: a stand-in for ssh that fails as ssh would, the expected code and message parts. */
static void test_driver_connection_errors(void **state)
{
    env *e = *state;
    const struct {
        const char *script;
        const char *remote;
        int code;
        const char *msg1, *msg2;
    } cases[] = {
        {"echo 'ssh: connect to host backup.example port 2222: Connection refused' >&2; exit 255",
         NULL, WV_EUNREACHABLE, "backup.example:2222", "Connection refused"},
        {"echo 'Host key verification failed.' >&2; exit 255", NULL, WV_EAUTH, "host key",
         "backup.example:2222"},
        {"echo 'postgres@backup.example: Permission denied (publickey).' >&2; exit 255", NULL,
         WV_EAUTH, "authentication", "Permission denied"},
        {"exit 0", NULL, WV_EUNREACHABLE, "backup.example:2222", "no message"},
        {"for a; do last=$a; done; exec /bin/sh -c \"$last\"", "/nonexistent/walvault-remote",
         WV_ECONFIG, "could not be run", "not found"},
        {"kill -9 $$", NULL, WV_EUNREACHABLE, "backup.example:2222", "signal"},
        /* Not our protocol at all: a shell that prints a banner. */
        {"echo 'Welcome to the backup server'; cat >/dev/null", NULL, WV_EFORMAT, "protocol", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[256], text[512];
        snprintf(path, sizeof(path), "%s/ssh-case%zu", e->dir, i);
        snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", cases[i].script);
        write_script(path, text);
        wv_err err;
        wv_storage *st = open_ssh(e, path, cases[i].remote ? cases[i].remote : e->helper, &err);
        wv_stat ws;
        int rc = wv_storage_stat(st, "k", &ws, &err);
        if (rc != cases[i].code || !strstr(err.msg, cases[i].msg1) ||
            !strstr(err.msg, cases[i].msg2))
            fail_msg("case %zu: got %s \"%s\", expected %s with \"%s\" and \"%s\"", i,
                     wv_err_name(rc), err.msg, wv_err_name(cases[i].code), cases[i].msg1,
                     cases[i].msg2);
        if (cases[i].code == WV_ECONFIG)
            assert_non_null(strstr(err.hint, "install walvault on the backup server"));
        wv_storage_free(st);
    }
}

static void test_helper_version_mismatch(void **state)
{
    env *e = *state;
    /* Speak to the helper directly with a HELLO of another protocol version. */
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(e->helper, e->helper, "--repo", e->repo, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    wv_rp_msg *m = msg_new(WV_RP_HELLO);
    wv_buf b = WV_BUF_INIT;
    m->proto = WV_RP_PROTO_VERSION + 41;
    strcpy(m->text, "9.9.9");
    wv_rp_encode(m, &b);
    assert_int_equal(write(in[1], b.data, b.len), (ssize_t)b.len);
    uint8_t buf[8192];
    size_t got = 0;
    ssize_t n;
    while ((n = read(out[0], buf + got, sizeof(buf) - got)) > 0)
        got += (size_t)n;
    uint8_t type;
    uint32_t len;
    wv_err err;
    assert_true(got >= WV_RP_HEADER_SIZE);
    assert_int_equal(wv_rp_header_decode(buf, &type, &len, &err), 0);
    assert_int_equal(type, WV_RP_ERROR);
    assert_int_equal(got, WV_RP_HEADER_SIZE + len);
    assert_int_equal(wv_rp_decode(type, buf + WV_RP_HEADER_SIZE, len, m, &err), 0);
    assert_int_equal(m->code, WV_EFORMAT);
    assert_non_null(strstr(m->text, "protocol version"));
    assert_non_null(strstr(m->text, "9.9.9"));
    assert_non_null(strstr(m->hint, "same walvault version"));
    int status;
    close(in[1]);
    close(out[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    wv_buf_free(&b);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_truncated_payloads),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_recv_stream),
        cmocka_unit_test(test_key_rules),
        cmocka_unit_test_setup_teardown(test_driver_roundtrip, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_driver_list_stop, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_driver_connection_errors, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_helper_version_mismatch, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
