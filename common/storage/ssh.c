/*
 * storage/ssh.c - the ssh driver: a repository on a backup server, reached through an `ssh` child
 * process that runs walvault-remote there (see remoteproto.h for the frames, remote_cmd/ for the
 * helper, which applies the posix file rules on the server).
 *
 * Sessions. A session is one ssh child and its pipes, started lazily on first use, greeted with
 * HELLO, and kept for the next operation. An open sink or source owns its session until commit,
 * abort or close; an operation that starts while every session is busy (another thread, or a stat
 * during a write) starts another session. Idle sessions are kept in a list under a mutex, and a
 * session whose connection broke is never reused.
 *
 * ssh runs with BatchMode (never a password prompt), StrictHostKeyChecking=yes, the configured
 * port, identity and known_hosts, keepalives, and no forwarding. Its stdin and stdout are socket
 * pairs (send() with MSG_NOSIGNAL: a dead ssh never raises SIGPIPE in the caller); its stderr is
 * read into a bounded tail buffer while we wait for frames, and only one sanitised line of it
 * reaches an error message. When the connection ends, the child is reaped and its exit status and
 * that line decide the error: host key or authentication -> WV_EAUTH, helper missing -> WV_ECONFIG
 * with an install hint, anything else -> WV_EUNREACHABLE naming host:port.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "storage/remoteproto.h"
#include "storage/driver.h"

extern char **environ;

#define ERR_TAIL     4096          /* bytes of ssh's stderr kept */
#define DRAIN_MAX    (1024 * 1024) /* bytes a source closed early reads on to keep its session */
#define REAP_WAIT_MS 5000          /* how long a finished session may take to exit */

typedef struct ssh_storage ssh_storage;

typedef struct ssh_session {
    ssh_storage *st;
    pid_t pid;
    int fd_to;   /* our end of the child's stdin */
    int fd_from; /* our end of the child's stdout */
    int fd_err;  /* read end of the child's stderr */
    char tail[ERR_TAIL];
    size_t tail_len;
    int broken;
    wv_buf scratch;
    wv_rp_msg msg;
    struct ssh_session *next;
} ssh_session;

struct ssh_storage {
    wv_storage base;
    char **argv; /* ssh command words, options, destination, remote command; NULL-terminated */
    char *hostport;
    char *host;
    char *remote_command;
    pthread_mutex_t lock;
    ssh_session *idle;
};

typedef struct ssh_sink {
    wv_sink base;
    ssh_storage *st;
    ssh_session *sess;
    char *key;
    uint8_t *buf;
    size_t len;
} ssh_sink;

typedef struct ssh_source {
    wv_source base;
    ssh_storage *st;
    ssh_session *sess;
    char *key;
    const uint8_t *data; /* unread part of the current DATA frame (in sess->scratch) */
    size_t data_len;
    int done;
} ssh_source;

/* --- child process ---------------------------------------------------------------------------- */

static void tail_add(ssh_session *s, const char *p, size_t n)
{
    if (n >= ERR_TAIL) {
        p += n - ERR_TAIL;
        n = ERR_TAIL;
    }
    if (s->tail_len + n > ERR_TAIL) {
        size_t drop = s->tail_len + n - ERR_TAIL;
        memmove(s->tail, s->tail + drop, s->tail_len - drop);
        s->tail_len -= drop;
    }
    memcpy(s->tail + s->tail_len, p, n);
    s->tail_len += n;
}

/* Read what ssh wrote to stderr, without blocking. Returns 1 at its end. */
static int drain_stderr(ssh_session *s)
{
    char buf[1024];
    if (s->fd_err < 0)
        return 1;
    for (;;) {
        ssize_t n = read(s->fd_err, buf, sizeof(buf));
        if (n > 0) {
            tail_add(s, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        close(s->fd_err); /* end of stderr, or an error we cannot do better with */
        s->fd_err = -1;
        return 1;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Close our ends, collect the rest of stderr and reap the child (killing it if it lingers).
 * Returns the wait status, or -1 if there was no child. */
static int session_reap(ssh_session *s)
{
    int status = -1;
    if (s->fd_to >= 0)
        close(s->fd_to);
    if (s->fd_from >= 0)
        close(s->fd_from);
    s->fd_to = s->fd_from = -1;
    if (s->pid <= 0)
        return -1;
    int64_t deadline = now_ms() + REAP_WAIT_MS;
    while (s->fd_err >= 0 && now_ms() < deadline) {
        struct pollfd pfd = {s->fd_err, POLLIN, 0};
        int left = (int)(deadline - now_ms());
        if (poll(&pfd, 1, left > 0 ? left : 0) < 0 && errno != EINTR)
            break;
        drain_stderr(s);
    }
    for (;;) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid || (r < 0 && errno != EINTR))
            break;
        if (r == 0 && now_ms() >= deadline) {
            kill(s->pid, SIGKILL);
            while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        if (r == 0)
            usleep(10 * 1000);
    }
    s->pid = -1;
    if (s->fd_err >= 0) {
        close(s->fd_err);
        s->fd_err = -1;
    }
    return status;
}

static void session_free(ssh_session *s)
{
    if (!s)
        return;
    session_reap(s);
    wv_buf_free(&s->scratch);
    free(s);
}

/* The last non-empty line of ssh's stderr, printable ASCII only, at most cap - 1 bytes. */
static void tail_line(const ssh_session *s, char *out, size_t cap)
{
    size_t end = s->tail_len;
    while (end > 0 && isspace((unsigned char)s->tail[end - 1]))
        end--;
    size_t start = end;
    while (start > 0 && s->tail[start - 1] != '\n')
        start--;
    size_t o = 0;
    for (size_t i = start; i < end && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s->tail[i];
        if (c == '\r')
            continue;
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
}

static int tail_has(const ssh_session *s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s->tail_len; i++)
        if (strncasecmp(s->tail + i, needle, n) == 0)
            return 1;
    return 0;
}

/* The connection is gone: reap ssh and turn its exit status and stderr into one error. */
static int session_lost(ssh_session *s, const char *when, wv_err *err)
{
    ssh_storage *st = s->st;
    char line[512];
    s->broken = 1;
    int status = session_reap(s);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    tail_line(s, line, sizeof(line));
    if (!line[0])
        snprintf(line, sizeof(line), "%s",
                 code >= 0 ? "no message from ssh" : "ssh was killed by a signal");

    if (tail_has(s, "host key verification failed") || tail_has(s, "host identification has")) {
        wv_err_set(err, WV_EAUTH, "host key of %s not accepted: %s", st->hostport, line);
        return wv_err_hint(err, "add the backup server's host key to the file named by "
                                "known_hosts (ssh-keyscan), after checking it out of band");
    }
    if (tail_has(s, "permission denied") || tail_has(s, "too many authentication failures")) {
        wv_err_set(err, WV_EAUTH, "ssh authentication to %s failed: %s", st->hostport, line);
        return wv_err_hint(err, "install the public key of identity_file in the backup server "
                                "account's authorized_keys");
    }
    if (code == 127 || code == 126 || tail_has(s, "command not found")) {
        wv_err_set(err, WV_ECONFIG, "the walvault helper \"%s\" could not be run on %s: %s",
                   st->remote_command, st->host, line);
        return wv_err_hint(err, "install walvault on the backup server, or set remote_command "
                                "in the repository section to the helper's full path");
    }
    if (code == 255 || code < 0) {
        wv_err_set(err, WV_EUNREACHABLE, "could not reach %s over ssh: %s", st->hostport, line);
        return wv_err_hint(err, "check that the backup server is up and sshd listens there");
    }
    return wv_err_set(err, WV_EUNREACHABLE, "connection to %s lost %s (ssh exit status %d): %s",
                      st->hostport, when, code, line);
}

/* Wait until fd is ready for events, collecting stderr meanwhile. */
static void session_wait(ssh_session *s, int fd, short events)
{
    for (;;) {
        struct pollfd p[2] = {{fd, events, 0}, {s->fd_err, POLLIN, 0}};
        int n = poll(p, s->fd_err >= 0 ? 2 : 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return; /* the read or write that follows reports it */
        if (s->fd_err >= 0 && p[1].revents)
            drain_stderr(s);
        if (p[0].revents)
            return;
    }
}

static int session_readfull(void *ctx, void *buf, size_t len, wv_err *err)
{
    ssh_session *s = ctx;
    size_t done = 0;
    if (s->broken)
        return wv_err_set(err, WV_EUNREACHABLE, "connection to %s is closed", s->st->hostport);
    while (done < len) {
        ssize_t n = recv(s->fd_from, (uint8_t *)buf + done, len - done, MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
        } else if (n == 0) {
            return session_lost(s, "while waiting for a reply", err);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            session_wait(s, s->fd_from, POLLIN);
        } else if (errno != EINTR) {
            return session_lost(s, "while waiting for a reply", err);
        }
    }
    return 0;
}

static int session_writefull(void *ctx, void *buf, size_t len, wv_err *err)
{
    ssh_session *s = ctx;
    size_t done = 0;
    if (s->broken)
        return wv_err_set(err, WV_EUNREACHABLE, "connection to %s is closed", s->st->hostport);
    while (done < len) {
        ssize_t n =
            send(s->fd_to, (const uint8_t *)buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            session_wait(s, s->fd_to, POLLOUT);
        } else if (n < 0 && errno != EINTR) {
            return session_lost(s, "while sending", err);
        }
    }
    return 0;
}

static int session_send(ssh_session *s, wv_err *err)
{
    return wv_rp_send(session_writefull, s, &s->scratch, &s->msg, err);
}

static int session_recv(ssh_session *s, wv_err *err)
{
    int rc = wv_rp_recv(session_readfull, s, &s->scratch, &s->msg, err);
    if (rc == WV_EFORMAT) {
        s->broken = 1;
        wv_err_prefix(err, "reply from %s: ", s->st->hostport);
        wv_err_hint(err, "check that remote_command runs walvault-remote and that nothing on the "
                         "backup server (a login banner, a shell profile) writes to stdout");
    }
    return rc;
}

/* An ERROR frame from the helper becomes our error, with its code (NOTFOUND stays NOTFOUND). */
static int remote_error(ssh_session *s, wv_err *err)
{
    const wv_rp_msg *m = &s->msg;
    if (m->code == WV_ENOTFOUND)
        wv_err_set(err, m->code, "%s", m->text);
    else
        wv_err_set(err, m->code, "%s: %s", s->st->host, m->text);
    if (m->hint[0])
        wv_err_hint(err, "%s", m->hint);
    return m->code;
}

/* Receive the reply to a request: want (usually OK) or ERROR; anything else breaks the session. */
static int session_expect(ssh_session *s, uint8_t want, const char *what, wv_err *err)
{
    int rc = session_recv(s, err);
    if (rc)
        return rc;
    if (s->msg.type == want)
        return 0;
    if (s->msg.type == WV_RP_ERROR)
        return remote_error(s, err);
    s->broken = 1;
    return wv_err_set(err, WV_EFORMAT, "protocol error from %s: %s frame in reply to %s",
                      s->st->hostport, wv_rp_type_name(s->msg.type), what);
}

static int set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int session_start(ssh_storage *st, ssh_session **out, wv_err *err)
{
    int to[2] = {-1, -1}, from[2] = {-1, -1}, errp[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dfl;
    int rc;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, to) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, from) != 0 ||
        pipe2(errp, O_CLOEXEC) != 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not create pipes for ssh to %s", st->hostport);
        goto fail;
    }
    /* Each direction is one-way: half-close the unused halves so that EOF propagates. */
    shutdown(to[0], SHUT_WR);
    shutdown(to[1], SHUT_RD);
    shutdown(from[0], SHUT_WR);
    shutdown(from[1], SHUT_RD);

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, from[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, errp[1], STDERR_FILENO);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int e = posix_spawnp(&pid, st->argv[0], &fa, &attr, st->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e != 0) {
        rc = wv_err_errno(err, WV_ECONFIG, e, "could not run \"%s\" to reach %s", st->argv[0],
                          st->hostport);
        wv_err_hint(err, "install the OpenSSH client or set ssh_command in the repository section");
        goto fail;
    }
    close(to[0]);
    close(from[1]);
    close(errp[1]);

    ssh_session *s = wv_xcalloc(1, sizeof(*s));
    s->st = st;
    s->pid = pid;
    s->fd_to = to[1];
    s->fd_from = from[0];
    s->fd_err = errp[0];
    wv_buf_init(&s->scratch);
    set_nonblock_cloexec(s->fd_err);

    wv_rp_msg_init(&s->msg, WV_RP_HELLO);
    s->msg.proto = WV_RP_PROTO_VERSION;
    snprintf(s->msg.text, sizeof(s->msg.text), "%s", WALVAULT_VERSION);
    rc = session_send(s, err);
    if (rc == 0)
        rc = session_expect(s, WV_RP_HELLO_OK, "HELLO", err);
    if (rc == 0 && s->msg.proto != WV_RP_PROTO_VERSION) {
        rc = wv_err_set(err, WV_EFORMAT,
                        "walvault-remote %s on %s speaks protocol version %u, this walvault (%s) "
                        "speaks version %d",
                        s->msg.text, st->host, (unsigned)s->msg.proto, WALVAULT_VERSION,
                        WV_RP_PROTO_VERSION);
        wv_err_hint(err, "install the same walvault version on the database server and the "
                         "backup server");
    }
    if (rc != 0) {
        session_free(s);
        return rc;
    }
    *out = s;
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (to[i] >= 0)
            close(to[i]);
        if (from[i] >= 0)
            close(from[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    return rc;
}

/* Is an idle session still connected? (ssh exits when the server goes away.) */
static int session_alive(ssh_session *s)
{
    struct pollfd p = {s->fd_from, POLLIN, 0};
    drain_stderr(s);
    return poll(&p, 1, 0) == 0;
}

static int session_get(ssh_storage *st, ssh_session **out, wv_err *err)
{
    for (;;) {
        pthread_mutex_lock(&st->lock);
        ssh_session *s = st->idle;
        if (s)
            st->idle = s->next;
        pthread_mutex_unlock(&st->lock);
        if (!s)
            break;
        s->next = NULL;
        if (session_alive(s)) {
            *out = s;
            return 0;
        }
        session_free(s);
    }
    return session_start(st, out, err);
}

static void session_put(ssh_storage *st, ssh_session *s)
{
    if (!s)
        return;
    if (s->broken) {
        session_free(s);
        return;
    }
    pthread_mutex_lock(&st->lock);
    s->next = st->idle;
    st->idle = s;
    pthread_mutex_unlock(&st->lock);
}

/* One request with a one-frame reply. */
static int simple_request(ssh_storage *st, uint8_t type, const char *key, uint8_t want,
                          ssh_session **keep, wv_err *err)
{
    ssh_session *s;
    int rc = session_get(st, &s, err);
    if (rc)
        return rc;
    wv_rp_msg_init(&s->msg, type);
    if (key)
        snprintf(s->msg.text, sizeof(s->msg.text), "%s", key);
    rc = session_send(s, err);
    if (rc == 0)
        rc = session_expect(s, want, wv_rp_type_name(type), err);
    *keep = s;
    return rc;
}

/* --- sink ------------------------------------------------------------------------------------- */

static int sink_send_data(ssh_sink *k, wv_err *err)
{
    uint8_t hdr[WV_RP_HEADER_SIZE];
    if (k->len == 0)
        return 0;
    wv_rp_header_encode(hdr, WV_RP_DATA, (uint32_t)k->len);
    int rc = session_writefull(k->sess, hdr, sizeof(hdr), err);
    if (rc == 0)
        rc = session_writefull(k->sess, k->buf, k->len, err);
    k->len = 0;
    return rc;
}

static void sink_free(ssh_sink *k)
{
    session_put(k->st, k->sess);
    free(k->buf);
    free(k->key);
    free(k);
}

static int ssh_sink_write(wv_sink *base, const void *buf, size_t len, wv_err *err)
{
    ssh_sink *k = (ssh_sink *)base;
    const uint8_t *p = buf;
    while (len > 0) {
        size_t n = WV_RP_CHUNK - k->len;
        if (n > len)
            n = len;
        memcpy(k->buf + k->len, p, n);
        k->len += n;
        p += n;
        len -= n;
        if (k->len == WV_RP_CHUNK) {
            int rc = sink_send_data(k, err);
            if (rc) {
                wv_err_prefix(err, "could not write \"%s\": ", k->key);
                return wv_err_names(err, NULL, k->key);
            }
        }
    }
    return 0;
}

static int ssh_sink_commit(wv_sink *base, wv_err *err)
{
    ssh_sink *k = (ssh_sink *)base;
    int rc = sink_send_data(k, err);
    if (rc == 0) {
        wv_rp_msg_init(&k->sess->msg, WV_RP_COMMIT);
        rc = session_send(k->sess, err);
    }
    if (rc == 0)
        rc = session_expect(k->sess, WV_RP_OK, "COMMIT", err);
    if (rc != 0 && k->sess->broken)
        wv_err_prefix(err, "could not store \"%s\": ", k->key);
    if (rc != 0 && (k->sess->broken || k->sess->msg.type == WV_RP_ERROR))
        wv_err_names(err, NULL, k->key); /* the helper's messages name the path of the key */
    sink_free(k);
    return rc;
}

static void ssh_sink_abort(wv_sink *base)
{
    ssh_sink *k = (ssh_sink *)base;
    if (!k)
        return;
    if (!k->sess->broken) {
        wv_err ignored;
        wv_rp_msg_init(&k->sess->msg, WV_RP_ABORT);
        if (session_send(k->sess, &ignored) == 0)
            session_expect(k->sess, WV_RP_OK, "ABORT", &ignored);
    }
    sink_free(k);
}

static const wv_sink_ops ssh_sink_ops = {
    .write = ssh_sink_write,
    .commit = ssh_sink_commit,
    .abort = ssh_sink_abort,
};

static int ssh_put_open(wv_storage *base, const char *key, unsigned flags, wv_sink **out,
                        wv_err *err)
{
    ssh_storage *st = (ssh_storage *)base;
    ssh_session *s;
    int rc = session_get(st, &s, err);
    if (rc)
        return rc;
    wv_rp_msg_init(&s->msg, WV_RP_PUT);
    s->msg.flags = flags & (WV_PUT_NOREPLACE | WV_PUT_NOSYNC);
    snprintf(s->msg.text, sizeof(s->msg.text), "%s", key);
    rc = session_send(s, err);
    if (rc == 0)
        rc = session_expect(s, WV_RP_OK, "PUT", err);
    if (rc) {
        session_put(st, s);
        return rc;
    }
    ssh_sink *k = wv_xcalloc(1, sizeof(*k));
    k->base.ops = &ssh_sink_ops;
    k->st = st;
    k->sess = s;
    k->key = wv_xstrdup(key);
    k->buf = wv_xmalloc(WV_RP_CHUNK);
    *out = &k->base;
    return 0;
}

/* --- source ----------------------------------------------------------------------------------- */

/* Next frame of a GET: DATA, END or ERROR. */
static int source_next(ssh_source *r, wv_err *err)
{
    ssh_session *s = r->sess;
    int rc = session_recv(s, err);
    if (rc)
        return rc;
    switch (s->msg.type) {
    case WV_RP_DATA:
        r->data = s->msg.data;
        r->data_len = s->msg.data_len;
        return 0;
    case WV_RP_END:
        r->done = 1;
        return 0;
    case WV_RP_ERROR:
        r->done = 1;
        remote_error(s, err);
        return wv_err_names(err, NULL, r->key); /* the helper's messages name its path */
    default:
        s->broken = 1;
        return wv_err_set(err, WV_EFORMAT, "protocol error from %s: %s frame while reading",
                          s->st->hostport, wv_rp_type_name(s->msg.type));
    }
}

static int ssh_source_read(wv_source *base, void *buf, size_t cap, size_t *got, wv_err *err)
{
    ssh_source *r = (ssh_source *)base;
    *got = 0;
    while (r->data_len == 0 && !r->done) {
        int rc = source_next(r, err);
        if (rc) {
            r->done = 1;
            return rc;
        }
    }
    if (r->data_len == 0)
        return 0;
    size_t n = cap < r->data_len ? cap : r->data_len;
    memcpy(buf, r->data, n);
    r->data += n;
    r->data_len -= n;
    *got = n;
    return 0;
}

static void ssh_source_close(wv_source *base)
{
    ssh_source *r = (ssh_source *)base;
    if (!r)
        return;
    /* The helper streams the whole range: read on to its end to keep the session, unless much is
     * left, in which case a fresh session is cheaper. */
    size_t drained = 0;
    wv_err ignored;
    while (!r->done && !r->sess->broken) {
        if (drained > DRAIN_MAX) {
            r->sess->broken = 1;
            break;
        }
        r->data_len = 0;
        if (source_next(r, &ignored) != 0)
            break;
        drained += r->data_len;
    }
    session_put(r->st, r->sess);
    free(r->key);
    free(r);
}

static const wv_source_ops ssh_source_ops = {
    .read = ssh_source_read,
    .close = ssh_source_close,
};

static int ssh_get_open(wv_storage *base, const char *key, int64_t offset, int64_t length,
                        wv_source **out, wv_err *err)
{
    ssh_storage *st = (ssh_storage *)base;
    ssh_session *s;
    int rc = session_get(st, &s, err);
    if (rc)
        return rc;
    wv_rp_msg_init(&s->msg, WV_RP_GET);
    s->msg.offset = offset;
    s->msg.length = offset < 0 ? -1 : length;
    snprintf(s->msg.text, sizeof(s->msg.text), "%s", key);
    rc = session_send(s, err);
    if (rc == 0)
        rc = session_expect(s, WV_RP_OK, "GET", err);
    if (rc) {
        session_put(st, s);
        return rc;
    }
    ssh_source *r = wv_xcalloc(1, sizeof(*r));
    r->base.ops = &ssh_source_ops;
    r->st = st;
    r->sess = s;
    r->key = wv_xstrdup(key);
    *out = &r->base;
    return 0;
}

/* --- stat, list, remove, flush ---------------------------------------------------------------- */

static int ssh_stat(wv_storage *base, const char *key, wv_stat *out, wv_err *err)
{
    ssh_storage *st = (ssh_storage *)base;
    ssh_session *s = NULL;
    int rc = simple_request(st, WV_RP_STAT, key, WV_RP_STAT_OK, &s, err);
    if (rc == 0) {
        out->size = s->msg.size;
        out->mtime = s->msg.mtime;
    }
    session_put(st, s);
    return rc;
}

static int ssh_list(wv_storage *base, const char *prefix, wv_list_cb cb, void *arg, wv_err *err)
{
    ssh_storage *st = (ssh_storage *)base;
    ssh_session *s;
    int rc = session_get(st, &s, err);
    if (rc)
        return rc;
    wv_rp_msg_init(&s->msg, WV_RP_LIST);
    snprintf(s->msg.text, sizeof(s->msg.text), "%s", prefix);
    rc = session_send(s, err);
    int stopped = 0; /* the callback's value; entries are then read to the end */
    while (rc == 0) {
        rc = session_recv(s, err);
        if (rc)
            break;
        if (s->msg.type == WV_RP_END)
            break;
        if (s->msg.type == WV_RP_ERROR) {
            rc = remote_error(s, err);
            break;
        }
        if (s->msg.type != WV_RP_ENTRY) {
            s->broken = 1;
            rc = wv_err_set(err, WV_EFORMAT, "protocol error from %s: %s frame in a listing",
                            st->hostport, wv_rp_type_name(s->msg.type));
            break;
        }
        if (!stopped) {
            wv_stat ws = {.size = s->msg.size, .mtime = s->msg.mtime};
            stopped = cb(arg, s->msg.text, &ws);
        }
    }
    session_put(st, s);
    return rc ? rc : stopped;
}

static int ssh_remove(wv_storage *base, const char *key, wv_err *err)
{
    ssh_storage *st = (ssh_storage *)base;
    ssh_session *s = NULL;
    int rc = simple_request(st, WV_RP_REMOVE, key, WV_RP_OK, &s, err);
    session_put(st, s);
    return rc;
}

static int ssh_flush(wv_storage *base, wv_err *err)
{
    ssh_storage *st = (ssh_storage *)base;
    ssh_session *s = NULL;
    int rc = simple_request(st, WV_RP_FLUSH, NULL, WV_RP_OK, &s, err);
    session_put(st, s);
    return rc;
}

static void ssh_free(wv_storage *base)
{
    ssh_storage *st = (ssh_storage *)base;
    while (st->idle) {
        ssh_session *s = st->idle;
        st->idle = s->next;
        session_free(s); /* EOF on its stdin ends ssh and the helper */
    }
    pthread_mutex_destroy(&st->lock);
    for (char **a = st->argv; a && *a; a++)
        free(*a);
    free(st->argv);
    free(st->hostport);
    free(st->host);
    free(st->remote_command);
    free(st->base.location);
    free(st);
}

static const wv_storage_ops ssh_ops = {
    .name = "ssh",
    .features = WV_ST_ATOMIC_PUT | WV_ST_DIRS,
    .put_open = ssh_put_open,
    .get_open = ssh_get_open,
    .stat = ssh_stat,
    .list = ssh_list,
    .remove = ssh_remove,
    .flush = ssh_flush,
    .free = ssh_free,
};

/* --- constructor ------------------------------------------------------------------------------ */

/* 'word' for a POSIX shell: single quotes, each ' as '\''. */
static void shell_quote(wv_buf *b, const char *s)
{
    wv_buf_append_str(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            wv_buf_append_str(b, "'\\''");
        else
            wv_buf_append(b, s, 1);
    }
    wv_buf_append_str(b, "'");
}

typedef struct argv_b {
    char **v;
    size_t n;
    size_t cap;
} argv_b;

static void arg_add(argv_b *a, char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->v = wv_xrealloc(a->v, a->cap * sizeof(char *));
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static int has_ctrl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int wv_storage_ssh_new(const wv_repo_config *rc, wv_storage **out, wv_err *err)
{
    const char *ssh_command = rc->ssh_command && *rc->ssh_command ? rc->ssh_command : "ssh";
    const char *remote =
        rc->remote_command && *rc->remote_command ? rc->remote_command : "walvault-remote";
    if (!rc->host || !*rc->host || rc->host[0] == '-' || strpbrk(rc->host, " \t@") ||
        has_ctrl(rc->host))
        return wv_err_set(err, WV_ECONFIG, "%s: host must be a host name or address", rc->name);
    if (rc->user &&
        (!*rc->user || rc->user[0] == '-' || strpbrk(rc->user, " \t@") || has_ctrl(rc->user)))
        return wv_err_set(err, WV_ECONFIG, "%s: user must be an account name", rc->name);
    if (!rc->path || rc->path[0] != '/' || has_ctrl(rc->path))
        return wv_err_set(err, WV_ECONFIG, "%s: path must be an absolute path on the backup server",
                          rc->name);
    if (has_ctrl(remote) || has_ctrl(ssh_command))
        return wv_err_set(err, WV_ECONFIG, "%s: ssh_command and remote_command must be one line",
                          rc->name);

    ssh_storage *st = wv_xcalloc(1, sizeof(*st));
    st->base.ops = &ssh_ops;
    pthread_mutex_init(&st->lock, NULL);
    st->host = wv_xstrdup(rc->host);
    st->remote_command = wv_xstrdup(remote);
    st->hostport =
        rc->port ? wv_xasprintf("%s:%d", rc->host, rc->port) : wv_xasprintf("%s:22", rc->host);
    wv_buf loc = WV_BUF_INIT;
    wv_buf_printf(&loc, "ssh://%s%s%s", rc->user ? rc->user : "", rc->user ? "@" : "", rc->host);
    if (rc->port)
        wv_buf_printf(&loc, ":%d", rc->port);
    wv_buf_append_str(&loc, rc->path);
    st->base.location = wv_xstrdup(wv_buf_cstr(&loc));
    wv_buf_free(&loc);

    /* ssh_command is split on blanks ("ssh -F /etc/walvault/ssh_config" works; no quoting). */
    argv_b a = {0};
    const char *p = ssh_command;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t')
            e++;
        if (e > p)
            arg_add(&a, wv_xstrndup(p, (size_t)(e - p)));
        p = e;
    }
    static const char *const opts[] = {
        "BatchMode=yes",          "StrictHostKeyChecking=yes",
        "ServerAliveInterval=15", "ServerAliveCountMax=3",
        "ConnectTimeout=20",      "ClearAllForwardings=yes",
        "ForwardAgent=no",        "ForwardX11=no",
        "PermitLocalCommand=no",  "LogLevel=ERROR",
    };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        arg_add(&a, wv_xstrdup("-o"));
        arg_add(&a, wv_xstrdup(opts[i]));
    }
    arg_add(&a, wv_xstrdup("-T"));
    if (rc->port) {
        arg_add(&a, wv_xstrdup("-p"));
        arg_add(&a, wv_xasprintf("%d", rc->port));
    }
    if (rc->identity_file && *rc->identity_file) {
        arg_add(&a, wv_xstrdup("-i"));
        arg_add(&a, wv_xstrdup(rc->identity_file));
        arg_add(&a, wv_xstrdup("-o"));
        arg_add(&a, wv_xstrdup("IdentitiesOnly=yes"));
    }
    if (rc->known_hosts && *rc->known_hosts) {
        arg_add(&a, wv_xstrdup("-o"));
        arg_add(&a, wv_xasprintf("UserKnownHostsFile=%s", rc->known_hosts));
        arg_add(&a, wv_xstrdup("-o"));
        arg_add(&a, wv_xstrdup("GlobalKnownHostsFile=/dev/null"));
    }
    if (rc->user) {
        arg_add(&a, wv_xstrdup("-l"));
        arg_add(&a, wv_xstrdup(rc->user));
    }
    arg_add(&a, wv_xstrdup("--"));
    arg_add(&a, wv_xstrdup(rc->host));
    /* The remote shell runs this line: remote_command as written (it may carry its own words),
     * then the repository path quoted. */
    wv_buf cmd = WV_BUF_INIT;
    wv_buf_append_str(&cmd, remote);
    wv_buf_append_str(&cmd, " --repo ");
    shell_quote(&cmd, rc->path);
    arg_add(&a, wv_xstrdup(wv_buf_cstr(&cmd)));
    wv_buf_free(&cmd);
    st->argv = a.v;

    *out = &st->base;
    return 0;
}
