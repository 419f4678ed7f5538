/* test_tar.c - the streaming tar reader: a table of archives fed at several chunk sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "pipeline/tar.h"

/* ---- archive builder ------------------------------------------------------------------------ */

static void put_octal(uint8_t *p, size_t n, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%0*llo", (int)(n - 1), (unsigned long long)v);
    memcpy(p, tmp, n - 1);
    p[n - 1] = '\0';
}

static void put_base256(uint8_t *p, size_t n, uint64_t v)
{
    memset(p, 0, n);
    for (size_t i = n; i-- > 1;) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
    p[0] = 0x80;
}

static void set_checksum(uint8_t *h)
{
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    char tmp[8];
    snprintf(tmp, sizeof(tmp), "%06o", sum);
    memcpy(h + 148, tmp, 7); /* six digits, NUL, space */
    h[155] = ' ';
}

/* Append a header (name truncated to 100 bytes unless prefix given) and optional content. */
static void add_member(wv_buf *a, char flag, const char *name, const char *prefix, const char *link,
                       const void *data, size_t size, uint32_t mode, uint64_t mtime, int gnu)
{
    uint8_t h[512] = {0};
    strncpy((char *)h, name, 100);
    put_octal(h + 100, 8, mode);
    put_octal(h + 108, 8, 1000);
    put_octal(h + 116, 8, 1000);
    if (size > 077777777777ULL)
        put_base256(h + 124, 12, size);
    else
        put_octal(h + 124, 12, size);
    put_octal(h + 136, 12, mtime);
    h[156] = (uint8_t)flag;
    if (link)
        strncpy((char *)h + 157, link, 100);
    if (gnu)
        memcpy(h + 257, "ustar  ", 8);
    else
        memcpy(h + 257,
               "ustar\0"
               "00",
               8);
    strcpy((char *)h + 265, "postgres");
    strcpy((char *)h + 297, "postgres");
    if (prefix)
        strncpy((char *)h + 345, prefix, 155);
    set_checksum(h);
    wv_buf_append(a, h, 512);
    if (data && size) {
        wv_buf_append(a, data, size);
        size_t pad = (512 - size % 512) % 512;
        uint8_t zero[512] = {0};
        wv_buf_append(a, zero, pad);
    }
}

static void add_trailer(wv_buf *a)
{
    uint8_t zero[1024] = {0};
    wv_buf_append(a, zero, sizeof(zero));
}

static void add_pax(wv_buf *a, const char *key, const char *val)
{
    char rec[8192];
    size_t body = strlen(key) + strlen(val) + 3; /* ' ' '=' '\n' */
    size_t len = body + 1;
    for (;;) {
        int d = snprintf(NULL, 0, "%zu", len);
        if (body + (size_t)d == len)
            break;
        len = body + (size_t)d;
    }
    snprintf(rec, sizeof(rec), "%zu %s=%s\n", len, key, val);
    add_member(a, 'x', "PaxHeaders/x", NULL, NULL, rec, strlen(rec), 0644, 0, 0);
}

/* ---- collector ------------------------------------------------------------------------------ */

typedef struct {
    wv_buf log; /* "T path -> link size mode mtime;" per member, then "=<content>|" */
    int in_member;
    int fail_on_begin;
} collector;

static int c_begin(void *arg, const wv_tar_entry *e, wv_err *err)
{
    collector *c = arg;
    if (c->in_member)
        return wv_err_set(err, WV_EINTERNAL, "begin inside a member");
    if (c->fail_on_begin)
        return wv_err_set(err, WV_EIO, "stop requested at \"%s\"", e->path);
    c->in_member = 1;
    const char *t = e->type == WV_TAR_FILE       ? "F"
                    : e->type == WV_TAR_DIR      ? "D"
                    : e->type == WV_TAR_SYMLINK  ? "S"
                    : e->type == WV_TAR_HARDLINK ? "H"
                                                 : "O";
    wv_buf_printf(&c->log, "%s %s -> %s %llu %o %lld=", t, e->path, e->linkname,
                  (unsigned long long)e->size, e->mode, (long long)e->mtime);
    return 0;
}

static int c_data(void *arg, const uint8_t *buf, size_t len, wv_err *err)
{
    collector *c = arg;
    if (!c->in_member)
        return wv_err_set(err, WV_EINTERNAL, "data outside a member");
    wv_buf_append(&c->log, buf, len);
    return 0;
}

static int c_end(void *arg, wv_err *err)
{
    collector *c = arg;
    if (!c->in_member)
        return wv_err_set(err, WV_EINTERNAL, "end outside a member");
    c->in_member = 0;
    wv_buf_append_str(&c->log, "|");
    return 0;
}

static const wv_tar_callbacks cbs = {c_begin, c_data, c_end};

/* Feed `a` in pieces of `chunk` bytes; returns the first error code and fills the log. */
static int run(const wv_buf *a, size_t chunk, collector *c, wv_err *err)
{
    wv_tar_reader *t = wv_tar_reader_new("test.tar", &cbs, c);
    int rc = 0;
    for (size_t off = 0; off < a->len && rc == 0; off += chunk) {
        size_t n = a->len - off < chunk ? a->len - off : chunk;
        rc = wv_tar_reader_feed(t, a->data + off, n, err);
    }
    if (rc == 0)
        rc = wv_tar_reader_finish(t, err);
    wv_tar_reader_free(t);
    return rc;
}

static const size_t chunks[] = {1, 7, 512, 4096, 1 << 20};

/* ---- cases ---------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*build)(wv_buf *a);
    int want_rc;
    const char *want_log; /* exact log on success */
    const char *want_msg; /* substring of the error message on failure */
} tar_case;

static char long_name[300];
static char long_link[200];
static char big_content[5000];

static void init_data(void)
{
    memset(long_name, 0, sizeof(long_name));
    strcpy(long_name, "base/16384/");
    for (size_t i = strlen(long_name); i < 250; i++)
        long_name[i] = (char)('a' + i % 26);
    memset(long_link, 0, sizeof(long_link));
    strcpy(long_link, "/srv/tablespaces/");
    for (size_t i = strlen(long_link); i < 150; i++)
        long_link[i] = (char)('A' + i % 26);
    for (size_t i = 0; i < sizeof(big_content); i++)
        big_content[i] = (char)('0' + i % 10);
}

static void b_regular(wv_buf *a)
{
    add_member(a, '0', "PG_VERSION", NULL, NULL, "15\n", 3, 0600, 1700000000, 0);
    add_member(a, '0', "empty", NULL, NULL, NULL, 0, 0600, 1, 0);
    add_member(a, '\0', "oldstyle", NULL, NULL, "x", 1, 0644, 2, 0);
    add_trailer(a);
}

static void b_no_trailer(wv_buf *a)
{
    add_member(a, '0', "a", NULL, NULL, "abc", 3, 0600, 5, 0);
}

static void b_dirs_links(wv_buf *a)
{
    add_member(a, '5', "./", NULL, NULL, NULL, 0, 0700, 9, 0);
    add_member(a, '5', "base/", NULL, NULL, NULL, 0, 0700, 10, 0);
    add_member(a, '5', "pg_tblspc", NULL, NULL, NULL, 0, 0700, 11, 0);
    add_member(a, '2', "pg_tblspc/16385", NULL, "/srv/ts1", NULL, 0, 0777, 12, 0);
    add_member(a, '1', "hard", NULL, "base/x", NULL, 0, 0600, 13, 0);
    add_trailer(a);
}

static void b_prefix(wv_buf *a)
{
    add_member(a, '0', "file", "some/long/prefix", NULL, "p", 1, 0640, 3, 0);
    add_trailer(a);
}

static void b_gnu_long(wv_buf *a)
{
    add_member(a, 'L', "././@LongLink", NULL, NULL, long_name, strlen(long_name) + 1, 0, 0, 1);
    add_member(a, '0', long_name, NULL, NULL, big_content, sizeof(big_content), 0600, 77, 1);
    add_member(a, 'K', "././@LongLink", NULL, NULL, long_link, strlen(long_link) + 1, 0, 0, 1);
    add_member(a, '2', "pg_tblspc/1", NULL, long_link, NULL, 0, 0777, 78, 1);
    add_member(a, '0', "after", NULL, NULL, "z", 1, 0600, 79, 1);
    add_trailer(a);
}

static void b_pax(wv_buf *a)
{
    add_pax(a, "path", long_name);
    add_member(a, '0', "truncated-name", NULL, NULL, "pax!", 4, 0600, 1, 0);
    add_pax(a, "mtime", "1234567890.5");
    add_member(a, '0', "m", NULL, NULL, NULL, 0, 0600, 1, 0);
    add_member(a, 'g', "global", NULL, NULL, "10 a=bcde\n", 10, 0, 0, 0);
    add_member(a, '0', "plain", NULL, NULL, "q", 1, 0600, 2, 0);
    add_trailer(a);
}

static void b_base256(wv_buf *a)
{
    /* a base-256 size field (as PostgreSQL writes for files >= 8 GiB), here with a small value */
    uint8_t h[512] = {0};
    strcpy((char *)h, "b256");
    put_octal(h + 100, 8, 0600);
    put_base256(h + 124, 12, 3);
    put_octal(h + 136, 12, 4);
    h[156] = '0';
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
    set_checksum(h);
    wv_buf_append(a, h, 512);
    uint8_t blk[512] = {'x', 'y', 'z'};
    wv_buf_append(a, blk, 512);
}

static void b_truncated_data(wv_buf *a)
{
    add_member(a, '0', "base/1/1259", NULL, NULL, big_content, sizeof(big_content), 0600, 1, 0);
    a->len -= 600; /* cut inside the content */
}

static void b_truncated_pad(wv_buf *a)
{
    add_member(a, '0', "f", NULL, NULL, "abc", 3, 0600, 1, 0);
    a->len -= 100;
}

static void b_truncated_header(wv_buf *a)
{
    add_member(a, '0', "f", NULL, NULL, "abc", 3, 0600, 1, 0);
    add_member(a, '0', "g", NULL, NULL, "abc", 3, 0600, 1, 0);
    a->len = 512 + 512 + 300;
}

static void b_truncated_meta(wv_buf *a)
{
    add_member(a, 'L', "././@LongLink", NULL, NULL, long_name, strlen(long_name) + 1, 0, 0, 1);
}

static void b_garbage(wv_buf *a)
{
    for (int i = 0; i < 1024; i++) {
        uint8_t c = (uint8_t)(i * 31 + 7);
        wv_buf_append(a, &c, 1);
    }
}

static void b_bad_checksum(wv_buf *a)
{
    add_member(a, '0', "ok", NULL, NULL, "1", 1, 0600, 1, 0);
    add_member(a, '0', "bad", NULL, NULL, "2", 1, 0600, 1, 0);
    a->data[1024 + 1] ^= 0x01; /* flip a bit of the second header's name */
}

static void b_bad_pax(wv_buf *a)
{
    add_member(a, 'x', "PaxHeaders/x", NULL, NULL, "99 path=x\n", 10, 0644, 0, 0);
    add_member(a, '0', "f", NULL, NULL, NULL, 0, 0600, 1, 0);
}

static void b_meta_too_big(wv_buf *a)
{
    uint8_t h[512] = {0};
    strcpy((char *)h, "././@LongLink");
    put_octal(h + 100, 8, 0);
    put_octal(h + 124, 12, WV_TAR_META_MAX + 1);
    put_octal(h + 136, 12, 0);
    h[156] = 'L';
    memcpy(h + 257, "ustar  ", 8);
    set_checksum(h);
    wv_buf_append(a, h, 512);
}

/* A GNU long-name header with no content (found by fuzzing: the name was read from a NULL buffer). */
static void b_empty_long_name(wv_buf *a)
{
    add_member(a, 'L', "././@LongLink", NULL, NULL, NULL, 0, 0, 0, 1);
    add_member(a, '0', "f", NULL, NULL, "x", 1, 0600, 1, 0);
}

static const tar_case cases[] = {
    {"regular", b_regular, 0,
     "F PG_VERSION ->  3 600 1700000000=15\n|F empty ->  0 600 1=|F oldstyle ->  1 644 2=x|", NULL},
    {"no trailer", b_no_trailer, 0, "F a ->  3 600 5=abc|", NULL},
    {"directories and links", b_dirs_links, 0,
     "D base ->  0 700 10=|D pg_tblspc ->  0 700 11=|S pg_tblspc/16385 -> /srv/ts1 0 777 12=|"
     "H hard -> base/x 0 600 13=|",
     NULL},
    {"ustar prefix", b_prefix, 0, "F some/long/prefix/file ->  1 640 3=p|", NULL},
    {"gnu long names", b_gnu_long, 0, NULL, NULL}, /* checked in test_long_names */
    {"pax headers", b_pax, 0, NULL, NULL},
    {"base-256 size", b_base256, 0, "F b256 ->  3 600 4=xyz|", NULL},
    {"truncated content", b_truncated_data, WV_ECORRUPT, NULL,
     "ends inside the content of \"base/1/1259\""},
    {"truncated padding", b_truncated_pad, WV_ECORRUPT, NULL, "ends inside the padding of \"f\""},
    {"truncated header", b_truncated_header, WV_ECORRUPT, NULL, "ends inside a header"},
    {"truncated long name", b_truncated_meta, WV_ECORRUPT, NULL, "truncated"},
    {"garbage", b_garbage, WV_ECORRUPT, NULL,
     "bad tar header checksum in \"test.tar\" at offset 0"},
    {"bad checksum", b_bad_checksum, WV_ECORRUPT, NULL,
     "bad tar header checksum in \"test.tar\" at offset 1024"},
    {"bad pax record", b_bad_pax, WV_ECORRUPT, NULL, "malformed pax header"},
    {"metadata too big", b_meta_too_big, WV_ECORRUPT, NULL, "too large"},
    {"empty long name", b_empty_long_name, WV_ECORRUPT, NULL, "tar member with an empty name"},
};

static void test_table(void **state)
{
    (void)state;
    init_data();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const tar_case *tc = &cases[i];
        wv_buf a = WV_BUF_INIT;
        tc->build(&a);
        wv_buf first = WV_BUF_INIT;
        for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
            collector c = {0};
            wv_err err;
            wv_err_clear(&err);
            int rc = run(&a, chunks[k], &c, &err);
            if (rc != tc->want_rc)
                fail_msg("case \"%s\" chunk %zu: rc %d, want %d (%s)", tc->name, chunks[k], rc,
                         tc->want_rc, err.msg);
            if (tc->want_rc == 0 && tc->want_log && strcmp(wv_buf_cstr(&c.log), tc->want_log) != 0)
                fail_msg("case \"%s\" chunk %zu: log\n%s\nwant\n%s", tc->name, chunks[k],
                         wv_buf_cstr(&c.log), tc->want_log);
            if (tc->want_rc != 0 && !strstr(err.msg, tc->want_msg))
                fail_msg("case \"%s\" chunk %zu: message \"%s\" lacks \"%s\"", tc->name, chunks[k],
                         err.msg, tc->want_msg);
            /* the same events whatever the chunk size */
            if (k == 0)
                wv_buf_append(&first, c.log.data, c.log.len);
            else if (first.len != c.log.len ||
                     (c.log.len && memcmp(first.data, c.log.data, c.log.len)))
                fail_msg("case \"%s\": chunk %zu differs from chunk 1", tc->name, chunks[k]);
            wv_buf_free(&c.log);
        }
        wv_buf_free(&first);
        wv_buf_free(&a);
    }
}

static void test_long_names(void **state)
{
    (void)state;
    init_data();
    wv_buf a = WV_BUF_INIT;
    b_gnu_long(&a);
    collector c = {0};
    wv_err err;
    assert_int_equal(run(&a, 7, &c, &err), 0);
    wv_buf want = WV_BUF_INIT;
    wv_buf_printf(&want, "F %s ->  5000 600 77=", long_name);
    wv_buf_append(&want, big_content, sizeof(big_content));
    wv_buf_printf(&want, "|S pg_tblspc/1 -> %s 0 777 78=|F after ->  1 600 79=z|", long_link);
    assert_string_equal(wv_buf_cstr(&c.log), wv_buf_cstr(&want));
    wv_buf_free(&c.log);
    wv_buf_free(&want);
    wv_buf_free(&a);

    b_pax(&a);
    c = (collector){0};
    assert_int_equal(run(&a, 1, &c, &err), 0);
    wv_buf_printf(&want, "F %s ->  4 600 1=pax!|F m ->  0 600 1234567890=|F plain ->  1 600 2=q|",
                  long_name);
    assert_string_equal(wv_buf_cstr(&c.log), wv_buf_cstr(&want));
    wv_buf_free(&c.log);
    wv_buf_free(&want);
    wv_buf_free(&a);
}

static void test_callback_error_stops(void **state)
{
    (void)state;
    wv_buf a = WV_BUF_INIT;
    b_regular(&a);
    collector c = {0};
    c.fail_on_begin = 1;
    wv_err err;
    wv_tar_reader *t = wv_tar_reader_new("x.tar", &cbs, &c);
    assert_int_equal(wv_tar_reader_feed(t, a.data, a.len, &err), WV_EIO);
    assert_non_null(strstr(err.msg, "PG_VERSION"));
    /* a failed reader refuses more input */
    assert_int_equal(wv_tar_reader_feed(t, a.data, 1, &err), WV_EINTERNAL);
    wv_tar_reader_free(t);
    wv_buf_free(&a);
    wv_buf_free(&c.log);
}

/* Interoperability: archives written by GNU tar in its gnu and pax formats. */
static void test_gnu_tar_interop(void **state)
{
    (void)state;
    if (system("tar --version >/dev/null 2>&1") != 0)
        skip();
    init_data();
    char dir[] = "/tmp/wv-tar-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *cmd = wv_xasprintf("cd %s && mkdir -p d/%.90s/%.90s && printf hello > d/%.90s/%.90s/f && "
                             "ln -s target d/link",
                             dir, long_name + 11, long_name + 101, long_name + 11, long_name + 101);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    const char *formats[] = {"gnu", "pax", "ustar"};
    for (size_t i = 0; i < 3; i++) {
        cmd = wv_xasprintf("cd %s && tar --format=%s --sort=name --mtime=@1000 -cf a.tar d", dir,
                           formats[i]);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        char *path = wv_xasprintf("%s/a.tar", dir);
        FILE *f = fopen(path, "rb");
        free(path);
        assert_non_null(f);
        wv_buf a = WV_BUF_INIT;
        uint8_t tmp[4096];
        size_t n;
        while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
            wv_buf_append(&a, tmp, n);
        fclose(f);
        collector c = {0};
        wv_err err;
        assert_int_equal(run(&a, 7, &c, &err), 0);
        char *want = wv_xasprintf("F d/%.90s/%.90s/f ->  5 ", long_name + 11, long_name + 101);
        if (!strstr(wv_buf_cstr(&c.log), want))
            fail_msg("format %s: log %s lacks %s", formats[i], wv_buf_cstr(&c.log), want);
        assert_non_null(strstr(wv_buf_cstr(&c.log), "=hello|"));
        assert_non_null(strstr(wv_buf_cstr(&c.log), "S d/link -> target 0 777 1000=|"));
        free(want);
        wv_buf_free(&c.log);
        wv_buf_free(&a);
    }
    cmd = wv_xasprintf("rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

/* A member name from the stream is quoted in a message on one line (found by fuzzing: a name
 * holding a newline and an escape made the truncation message span lines). */
static void test_message_one_line(void **state)
{
    (void)state;
    wv_buf a = WV_BUF_INIT;
    add_member(&a, '0', "evil\nname\x1b[2J", NULL, NULL, "abc", 3, 0600, 1, 0);
    a.len = 512 + 1; /* cut inside the content */
    collector c = {0};
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(run(&a, 4096, &c, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "\"evil?name?[2J\""));
    for (const char *p = err.msg; *p; p++)
        assert_true((unsigned char)*p >= ' ');
    wv_buf_free(&c.log);
    wv_buf_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_callback_error_stops),
        cmocka_unit_test(test_gnu_tar_interop),
        cmocka_unit_test(test_message_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
