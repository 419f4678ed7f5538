/*
 * fuzz_config.c - walvault.conf (common/core/config.c), from a string and from a file.
 *
 * Invariants: the only failure is WV_ECONFIG with a one-line message that names the file; the
 * string and the file parse agree (when the text holds no NUL byte, which a C string cannot);
 * a loaded configuration is valid as config.h describes it (at least one repository, sorted by
 * index, every required key of its type, absolute paths, values in range); and written back out as
 * a file it loads again to the same configuration.
 */
#include <ctype.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "fuzz.h"

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_valid(const wv_config *c)
{
    FZ_CHECK(c->nrepos >= 1 && c->nrepos <= WV_MAX_REPOS, "%d repositories", c->nrepos);
    FZ_CHECK(c->compress == WV_COMPRESS_LZ4 || c->compress == WV_COMPRESS_NONE, "compress %d",
             (int)c->compress);
    FZ_CHECK(c->compress_level >= 1 && c->compress_level <= 12, "level %d", c->compress_level);
    FZ_CHECK(c->process_max >= 1 && c->process_max <= 64, "process_max %d", c->process_max);
    FZ_CHECK(c->archive_timeout >= 1 && c->archive_timeout <= 86400, "timeout %d",
             c->archive_timeout);
    for (int i = 0; i < c->nrepos; i++) {
        const wv_repo_config *r = &c->repos[i];
        FZ_CHECK(r->index >= 1 && r->index <= WV_MAX_REPOS, "index %d", r->index);
        FZ_CHECK(i == 0 || c->repos[i - 1].index < r->index, "repositories out of order");
        FZ_CHECK(wv_config_repo(c, r->index) == r, "repo%d not found by index", r->index);
        switch (r->type) {
        case WV_REPO_POSIX:
            FZ_CHECK(r->path && r->path[0] == '/', "posix path %s", r->path ? r->path : "(null)");
            break;
        case WV_REPO_S3:
            FZ_CHECK(r->endpoint && (strncmp(r->endpoint, "http://", 7) == 0 ||
                                     strncmp(r->endpoint, "https://", 8) == 0),
                     "endpoint %s", r->endpoint ? r->endpoint : "(null)");
            FZ_CHECK(r->region && r->region[0] && r->bucket && r->bucket[0] &&
                         !strchr(r->bucket, '/'),
                     "s3 repository without region or bucket");
            FZ_CHECK(r->prefix && r->prefix[0] != '/' &&
                         (!r->prefix[0] || r->prefix[strlen(r->prefix) - 1] != '/'),
                     "prefix \"%s\"", r->prefix ? r->prefix : "(null)");
            break;
        case WV_REPO_SSH:
            FZ_CHECK(r->host && r->host[0] != '-' && !strchr(r->host, '@'), "ssh host");
            FZ_CHECK(r->path && r->path[0] == '/', "ssh path");
            FZ_CHECK(r->ssh_command && r->remote_command, "ssh without commands");
            FZ_CHECK(!r->user || (r->user[0] != '-' && !strchr(r->user, '@')), "ssh user");
            FZ_CHECK(r->port >= 0 && r->port <= 65535, "port %d", r->port);
            break;
        default:
            FZ_CHECK(0, "repository type %d", (int)r->type);
        }
    }
}

/* A value a "key = value" line can hold: inih trims blanks around values. */
static int representable(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    return !n || (!isspace((unsigned char)v[0]) && !isspace((unsigned char)v[n - 1]));
}

/* Write c back as a configuration file's text; 0 if a value cannot be written. */
static int write_back(const wv_config *c, wv_buf *b)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    wv_buf_printf(b, "[global]\ncompress = %s\ncompress_level = %d\nprocess_max = %d\n",
                  c->compress == WV_COMPRESS_LZ4 ? "lz4" : "none", c->compress_level,
                  c->process_max);
    if ((int)c->log_level >= 0 && (int)c->log_level < 4)
        wv_buf_printf(b, "log_level = %s\n", levels[c->log_level]);
    wv_buf_printf(b, "archive_timeout = %d\n", c->archive_timeout);
    for (int i = 0; i < c->nrepos; i++) {
        const wv_repo_config *r = &c->repos[i];
        static const char *const types[] = {"", "posix", "s3", "ssh"};
        wv_buf_printf(b, "[repo%d]\ntype = %s\n", r->index, types[r->type]);
        const char *all[] = {
            r->path,        r->endpoint,      r->region,        r->bucket,
            r->prefix,      r->ca_file,       r->access_key_id, r->secret_access_key_file,
            r->host,        r->user,          r->ssh_command,   r->identity_file,
            r->known_hosts, r->remote_command};
        for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
            if (!representable(all[k]))
                return 0;
#define KEY(name, field)                                                                           \
    if (r->field)                                                                                  \
    wv_buf_printf(b, "%s =%s\n", name, r->field) /* "= ;x" would start a comment */
        KEY("path", path);
        KEY("endpoint", endpoint);
        KEY("region", region);
        KEY("bucket", bucket);
        if (r->type == WV_REPO_S3 && r->prefix && r->prefix[0])
            wv_buf_printf(b, "prefix =%s\n", r->prefix);
        if (r->type == WV_REPO_S3)
            wv_buf_printf(b, "uri_style = %s\n", r->uri_style_host ? "host" : "path");
        KEY("ca_file", ca_file);
        KEY("access_key_id", access_key_id);
        KEY("secret_access_key_file", secret_access_key_file);
        KEY("host", host);
        KEY("user", user);
        if (r->port)
            wv_buf_printf(b, "port = %d\n", r->port);
        KEY("ssh_command", ssh_command);
        KEY("identity_file", identity_file);
        KEY("known_hosts", known_hosts);
        KEY("remote_command", remote_command);
#undef KEY
    }
    return 1;
}

static void check_same(const wv_config *a, const wv_config *b)
{
    FZ_CHECK(a->compress == b->compress && a->compress_level == b->compress_level &&
                 a->process_max == b->process_max && a->log_level == b->log_level &&
                 a->archive_timeout == b->archive_timeout && a->nrepos == b->nrepos,
             "global settings differ after a round trip");
    for (int i = 0; i < a->nrepos; i++) {
        const wv_repo_config *x = &a->repos[i], *y = &b->repos[i];
        FZ_CHECK(x->index == y->index && x->type == y->type && same_str(x->path, y->path) &&
                     same_str(x->endpoint, y->endpoint) && same_str(x->region, y->region) &&
                     same_str(x->bucket, y->bucket) && same_str(x->prefix, y->prefix) &&
                     x->uri_style_host == y->uri_style_host && same_str(x->ca_file, y->ca_file) &&
                     same_str(x->access_key_id, y->access_key_id) &&
                     same_str(x->secret_access_key_file, y->secret_access_key_file) &&
                     same_str(x->host, y->host) && same_str(x->user, y->user) &&
                     x->port == y->port && same_str(x->ssh_command, y->ssh_command) &&
                     same_str(x->identity_file, y->identity_file) &&
                     same_str(x->known_hosts, y->known_hosts) &&
                     same_str(x->remote_command, y->remote_command),
                 "repo%d differs after a round trip", x->index);
    }
}

/* Load text from a real file (a memfd, named by /proc/self/fd). */
static int load_file(const void *text, size_t len, char *path, size_t pathlen, wv_config **out,
                     wv_err *err)
{
    int fd = memfd_create("walvault.conf", MFD_CLOEXEC);
    FZ_CHECK(fd >= 0, "%s", "memfd_create failed");
    FZ_CHECK(write(fd, text, len) == (ssize_t)len, "%s", "write to memfd failed");
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    int rc = wv_config_load(path, out, err);
    close(fd);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    wv_err e1, e2;
    wv_config *c1 = NULL, *c2 = NULL;

    int r1 = load_file(data, size, path, sizeof(path), &c1, &e1);
    if (r1 < 0) {
        fz_check_err(&e1, r1);
        FZ_CHECK(r1 == WV_ECONFIG, "code %d: %s", r1, e1.msg);
        FZ_CHECK(strncmp(e1.msg, path, strlen(path)) == 0, "message does not name the file: %s",
                 e1.msg);
    } else {
        check_valid(c1);
    }

    if (!memchr(data, '\0', size)) {
        char *text = fz_strndup(data, size);
        int r2 = wv_config_parse_string(text, path, &c2, &e2);
        free(text);
        FZ_CHECK(r1 == r2, "file gives %d, string gives %d (%s)", r1, r2, r2 ? e2.msg : e1.msg);
        if (r1 < 0)
            FZ_CHECK(strcmp(e1.msg, e2.msg) == 0 && strcmp(e1.hint, e2.hint) == 0,
                     "file and string parse fail differently: \"%s\" / \"%s\"", e1.msg, e2.msg);
        else
            check_same(c1, c2);
        wv_config_free(c2);
        c2 = NULL;
    }

    if (r1 == 0) {
        wv_buf b = WV_BUF_INIT;
        if (!write_back(c1, &b))
            goto out;
        int r3 = wv_config_parse_string(wv_buf_cstr(&b), "written back", &c2, &e2);
        FZ_CHECK(r3 == 0, "the configuration written back does not load: %s\n%s", e2.msg,
                 wv_buf_cstr(&b));
        check_same(c1, c2);
        wv_config_free(c2);
    out:
        wv_buf_free(&b);
    }
    wv_config_free(c1);
    return 0;
}
