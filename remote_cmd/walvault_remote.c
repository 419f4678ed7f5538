/*
 * walvault_remote.c - walvault-remote, the helper that the ssh storage driver starts on the backup
 * server:  walvault-remote --repo PATH   (speaks the remoteproto frames on stdin/stdout).
 *
 * It is a thin server loop around the posix driver, which applies the file rules (temp file in the
 * final directory, fsync, rename or RENAME_NOREPLACE, fsync directory; abort removes the temp).
 * Before any operation the helper refuses keys that break the key rules (absolute, "..", empty
 * components); the driver resolves every key beneath the repository's directory descriptor with
 * O_NOFOLLOW per component, so a symbolic link on a key's path (other than the top-level wal/ and
 * backup/, see storage/posix.c) is refused without a check-then-open race, and a GET range with a
 * negative length or an offset of INT64_MIN is refused.
 *
 * The helper never writes to stdout except frames; diagnostics go to stderr, which the client
 * keeps in a bounded buffer. End of input ends the session; an open write is aborted.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "storage/remoteproto.h"
#include "storage/driver.h"

/* Set by SIGTERM/SIGHUP: the read loop stops and an open write is aborted. */
static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct server {
    wv_storage *st;
    const char *repo;
    wv_buf rbuf; /* receive scratch */
    wv_buf sbuf; /* send scratch */
    wv_rp_msg in;
    wv_rp_msg out;
    uint8_t *chunk; /* WV_RP_CHUNK bytes for GET */
} server;

/* --- transport on fds 0 and 1 ----------------------------------------------------------------- */

/* Distinguishes a clean end of input (between frames) from a failure. */
#define END_OF_INPUT 1

static int read_full(void *ctx, void *buf, size_t len, wv_err *err)
{
    size_t done = 0;
    (void)ctx;
    while (done < len) {
        if (g_stop)
            return wv_err_set(err, WV_EINTERRUPTED, "walvault-remote: stopped by a signal");
        ssize_t n = read(STDIN_FILENO, (uint8_t *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return wv_err_errno(err, WV_EIO, errno, "walvault-remote: could not read the request");
        if (n == 0) {
            if (done == 0 && len == WV_RP_HEADER_SIZE)
                return END_OF_INPUT;
            return wv_err_set(err, WV_EIO, "walvault-remote: connection closed inside a frame");
        }
        done += (size_t)n;
    }
    return 0;
}

static int write_full(void *ctx, void *buf, size_t len, wv_err *err)
{
    size_t done = 0;
    (void)ctx;
    while (done < len) {
        ssize_t n = write(STDOUT_FILENO, (const uint8_t *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return wv_err_errno(err, WV_EIO, errno, "walvault-remote: could not send the reply");
        done += (size_t)n;
    }
    return 0;
}

static int recv_msg(server *sv, wv_err *err)
{
    return wv_rp_recv(read_full, NULL, &sv->rbuf, &sv->in, err);
}

static int send_msg(server *sv, wv_err *err)
{
    return wv_rp_send(write_full, NULL, &sv->sbuf, &sv->out, err);
}

static int send_simple(server *sv, uint8_t type, wv_err *err)
{
    wv_rp_msg_init(&sv->out, type);
    return send_msg(sv, err);
}

static int send_error(server *sv, const wv_err *e, wv_err *err)
{
    wv_rp_msg_error(&sv->out, e);
    return send_msg(sv, err);
}

/* --- key guard -------------------------------------------------------------------------------- */

/*
 * Refuse a key that breaks the key rules (absolute, "..", empty components) before any operation.
 * Symbolic links are the posix driver's to refuse: it resolves every key beneath the repository's
 * directory descriptor one component at a time with O_NOFOLLOW and then works on names inside the
 * directory it opened, so a link swapped in between a check and the open cannot redirect a write.
 * refused() words its refusal like the guard's.
 */
static int guard_key(const char *key, wv_err *err)
{
    if (!wv_rp_key_valid(key)) {
        wv_err_set(err, WV_EREFUSED, "refusing key \"%s\": not a valid key inside the repository",
                   key);
        return wv_err_hint(err, "keys are relative paths without \".\" or \"..\" components");
    }
    return 0;
}

static int refused(int rc, const char *key, wv_err *e)
{
    if (rc == WV_EREFUSED && strncmp(e->msg, "refusing key", 12) != 0) {
        char prefix[WV_RP_MAX_STR + 32];
        snprintf(prefix, sizeof(prefix), "refusing key \"%s\": ", key);
        wv_err_prefix(e, "%s", prefix);
    }
    return rc;
}

/* --- operations ------------------------------------------------------------------------------- */

/* Each handler returns 0 to go on with the session, or a negative code to end it (the client is
 * gone or broke the protocol). Failures of the operation itself are sent as ERROR frames. */

static int op_put(server *sv, wv_err *err)
{
    wv_err e;
    wv_sink *sink = NULL;
    unsigned flags = sv->in.flags & (WV_PUT_NOREPLACE | WV_PUT_NOSYNC);
    char key[WV_RP_MAX_STR + 1];
    int rc, werr = 0; /* a failed write is reported at COMMIT; DATA frames are then discarded */

    wv_err_clear(&e);
    snprintf(key, sizeof(key), "%s", sv->in.text);
    rc = guard_key(key, &e);
    if (rc == 0)
        rc = refused(sv->st->ops->put_open(sv->st, key, flags, &sink, &e), key, &e);
    if (rc != 0)
        return send_error(sv, &e, err);
    if ((rc = send_simple(sv, WV_RP_OK, err)))
        goto fail;

    for (;;) {
        rc = recv_msg(sv, err);
        if (rc == END_OF_INPUT)
            rc = wv_err_set(err, WV_EIO, "walvault-remote: client went away during a write");
        if (rc)
            goto fail;
        switch (sv->in.type) {
        case WV_RP_DATA:
            if (!werr && sv->in.data_len)
                werr = sink->ops->write(sink, sv->in.data, sv->in.data_len, &e);
            break;
        case WV_RP_COMMIT:
            if (werr) {
                sink->ops->abort(sink);
                return send_error(sv, &e, err);
            }
            rc = sink->ops->commit(sink, &e); /* frees the sink */
            return rc ? send_error(sv, &e, err) : send_simple(sv, WV_RP_OK, err);
        case WV_RP_ABORT:
            sink->ops->abort(sink);
            return send_simple(sv, WV_RP_OK, err);
        default:
            rc = wv_err_set(err, WV_EFORMAT, "protocol error: %s frame during a write",
                            wv_rp_type_name(sv->in.type));
            goto fail;
        }
    }
fail:
    sink->ops->abort(sink);
    return rc;
}

static int op_get(server *sv, wv_err *err)
{
    wv_err e;
    wv_source *src = NULL;
    char key[WV_RP_MAX_STR + 1];
    int rc;

    wv_err_clear(&e);
    snprintf(key, sizeof(key), "%s", sv->in.text);
    rc = guard_key(key, &e);
    if (rc == 0)
        rc = refused(sv->st->ops->get_open(sv->st, key, sv->in.offset, sv->in.length, &src, &e),
                     key, &e);
    if (rc != 0)
        return send_error(sv, &e, err);
    if ((rc = send_simple(sv, WV_RP_OK, err)))
        goto out;
    for (;;) {
        size_t got = 0;
        if ((rc = src->ops->read(src, sv->chunk, WV_RP_CHUNK, &got, &e))) {
            rc = send_error(sv, &e, err);
            break;
        }
        if (got == 0) {
            rc = send_simple(sv, WV_RP_END, err);
            break;
        }
        wv_rp_msg_init(&sv->out, WV_RP_DATA);
        sv->out.data = sv->chunk;
        sv->out.data_len = got;
        if ((rc = send_msg(sv, err)))
            break;
    }
out:
    src->ops->close(src);
    return rc;
}

static int op_stat(server *sv, wv_err *err)
{
    wv_err e;
    wv_stat ws;
    char key[WV_RP_MAX_STR + 1];

    wv_err_clear(&e);
    snprintf(key, sizeof(key), "%s", sv->in.text);
    int rc = guard_key(key, &e);
    if (rc == 0)
        rc = refused(sv->st->ops->stat(sv->st, key, &ws, &e), key, &e);
    if (rc != 0)
        return send_error(sv, &e, err);
    wv_rp_msg_init(&sv->out, WV_RP_STAT_OK);
    sv->out.size = ws.size;
    sv->out.mtime = ws.mtime;
    return send_msg(sv, err);
}

typedef struct list_ctx {
    server *sv;
    wv_err *err;
    int send_rc; /* a failed send ends the session */
} list_ctx;

static int list_cb(void *arg, const char *key, const wv_stat *ws)
{
    list_ctx *lc = arg;
    server *sv = lc->sv;
    if (strlen(key) > WV_RP_MAX_STR)
        return 0; /* cannot be a valid key */
    wv_rp_msg_init(&sv->out, WV_RP_ENTRY);
    sv->out.size = ws->size;
    sv->out.mtime = ws->mtime;
    snprintf(sv->out.text, sizeof(sv->out.text), "%s", key);
    lc->send_rc = send_msg(sv, lc->err);
    return lc->send_rc ? 1 : 0;
}

static int op_list(server *sv, wv_err *err)
{
    wv_err e;
    char prefix[WV_RP_MAX_STR + 1];
    list_ctx lc = {sv, err, 0};

    wv_err_clear(&e);
    snprintf(prefix, sizeof(prefix), "%s", sv->in.text);
    int rc = 0;
    if (!wv_rp_prefix_valid(prefix)) {
        rc = wv_err_set(&e, WV_EREFUSED,
                        "refusing prefix \"%s\": not a valid prefix inside the repository", prefix);
    }
    if (rc == 0)
        rc = refused(sv->st->ops->list(sv->st, prefix, list_cb, &lc, &e), prefix, &e);
    if (lc.send_rc)
        return lc.send_rc;
    if (rc < 0)
        return send_error(sv, &e, err);
    return send_simple(sv, WV_RP_END, err);
}

static int op_remove(server *sv, wv_err *err)
{
    wv_err e;
    char key[WV_RP_MAX_STR + 1];

    wv_err_clear(&e);
    snprintf(key, sizeof(key), "%s", sv->in.text);
    int rc = guard_key(key, &e);
    if (rc == 0)
        rc = refused(sv->st->ops->remove(sv->st, key, &e), key, &e);
    return rc ? send_error(sv, &e, err) : send_simple(sv, WV_RP_OK, err);
}

static int op_flush(server *sv, wv_err *err)
{
    wv_err e;
    wv_err_clear(&e);
    int rc = sv->st->ops->flush(sv->st, &e);
    return rc ? send_error(sv, &e, err) : send_simple(sv, WV_RP_OK, err);
}

/* --- session ---------------------------------------------------------------------------------- */

static int handshake(server *sv, wv_err *err)
{
    wv_err e;
    int rc = recv_msg(sv, err);
    if (rc == END_OF_INPUT)
        return rc;
    if (rc)
        return rc;
    wv_err_clear(&e);
    if (sv->in.type != WV_RP_HELLO) {
        wv_err_set(&e, WV_EFORMAT, "protocol error: expected HELLO, got %s",
                   wv_rp_type_name(sv->in.type));
    } else if (sv->in.proto != WV_RP_PROTO_VERSION) {
        wv_err_set(&e, WV_EFORMAT,
                   "walvault-remote %s on the backup server speaks protocol version %d, the "
                   "client (walvault %s) speaks version %u",
                   WALVAULT_VERSION, WV_RP_PROTO_VERSION, sv->in.text, (unsigned)sv->in.proto);
        wv_err_hint(&e, "install the same walvault version on the database server and the backup "
                        "server");
    } else {
        wv_repo_config rc_ = {0};
        snprintf(rc_.name, sizeof(rc_.name), "remote");
        rc_.type = WV_REPO_POSIX;
        rc_.path = (char *)sv->repo;
        if (wv_storage_posix_new(&rc_, &sv->st, &e) != 0) {
            /* The posix driver's message starts with its name; say where instead. */
            if (strncmp(e.msg, "remote: ", 8) == 0)
                memmove(e.msg, e.msg + 8, strlen(e.msg + 8) + 1);
            wv_err_prefix(&e, "on the backup server: ");
        }
    }
    if (e.code) {
        send_error(sv, &e, err);
        *err = e;
        return e.code;
    }
    wv_rp_msg_init(&sv->out, WV_RP_HELLO_OK);
    sv->out.proto = WV_RP_PROTO_VERSION;
    snprintf(sv->out.text, sizeof(sv->out.text), "%s", WALVAULT_VERSION);
    return send_msg(sv, err);
}

static int serve(server *sv, wv_err *err)
{
    int rc = handshake(sv, err);
    if (rc)
        return rc == END_OF_INPUT ? 0 : rc;
    while (rc == 0) {
        rc = recv_msg(sv, err);
        if (rc)
            break;
        switch (sv->in.type) {
        case WV_RP_PUT:
            rc = op_put(sv, err);
            break;
        case WV_RP_GET:
            rc = op_get(sv, err);
            break;
        case WV_RP_STAT:
            rc = op_stat(sv, err);
            break;
        case WV_RP_LIST:
            rc = op_list(sv, err);
            break;
        case WV_RP_REMOVE:
            rc = op_remove(sv, err);
            break;
        case WV_RP_FLUSH:
            rc = op_flush(sv, err);
            break;
        default:
            rc = wv_err_set(err, WV_EFORMAT, "protocol error: unexpected %s frame",
                            wv_rp_type_name(sv->in.type));
            break;
        }
    }
    if (rc == END_OF_INPUT)
        return 0;
    /* Tell the client why, if it still listens (a write failing here changes nothing). */
    if (rc == WV_EFORMAT) {
        wv_err ignored;
        send_error(sv, err, &ignored);
    }
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: walvault-remote --repo PATH\n"
               "       walvault-remote --version\n"
               "Started over ssh by walvault's ssh repository driver; speaks a binary protocol "
               "on stdin and stdout.\n");
}

int main(int argc, char **argv)
{
    const char *repo = NULL;
    wv_log_init("walvault-remote", WV_LOG_WARN);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("walvault-remote (walvault) %s, protocol %d\n", WALVAULT_VERSION,
                   WV_RP_PROTO_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--repo") == 0 && i + 1 < argc) {
            repo = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return wv_err_exit_code(WV_EUSAGE);
        }
    }
    if (!repo || repo[0] != '/') {
        usage(stderr);
        wv_log_error("--repo needs the absolute path of the repository");
        return wv_err_exit_code(WV_EUSAGE);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_stop; /* no SA_RESTART: a blocked read returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    server sv;
    memset(&sv, 0, sizeof(sv));
    sv.repo = repo;
    wv_buf_init(&sv.rbuf);
    wv_buf_init(&sv.sbuf);
    sv.chunk = wv_xmalloc(WV_RP_CHUNK);

    wv_err err;
    wv_err_clear(&err);
    int rc = serve(&sv, &err);
    if (rc < 0 && rc != WV_EINTERRUPTED)
        wv_log_err(&err);

    if (sv.st)
        wv_storage_free(sv.st);
    free(sv.chunk);
    wv_buf_free(&sv.rbuf);
    wv_buf_free(&sv.sbuf);
    return rc < 0 ? wv_err_exit_code(rc) : 0;
}
