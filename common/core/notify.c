/* notify.c - notify_command: the event as JSON, the hook run without a shell. See core/notify.h. */
#include "core/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/units.h"

#define MAX_ARGS 64

/* The length of the UTF-8 sequence at s (1..4), or 0 if it is not a valid one. */
void wv_notify_json(const wv_notify_event *ev, wv_buf *out)
{
    time_t t = ev->time ? (time_t)ev->time : time(NULL);
    struct tm tm;
    char when[32], host[256];
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (gethostname(host, sizeof(host)) != 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    wv_buf_append_str(out, "{\"event\":");
    wv_json_string(out, ev->event);
    wv_buf_append_str(out, ",\"status\":");
    wv_json_string(out, ev->ok ? "ok" : "error");
    wv_buf_append_str(out, ",\"message\":");
    wv_json_string(out, ev->message);
    wv_buf_append_str(out, ",\"time\":");
    wv_json_string(out, when);
    if (ev->repo) {
        wv_buf_append_str(out, ",\"repo\":");
        wv_json_string(out, ev->repo);
    }
    if (ev->backup) {
        wv_buf_append_str(out, ",\"backup\":");
        wv_json_string(out, ev->backup);
    }
    wv_buf_append_str(out, ",\"host\":");
    wv_json_string(out, host);
    wv_buf_append_str(out, ",\"program\":");
    wv_json_string(out, wv_log_progname());
    wv_buf_append_str(out, "}");
}

/* Split at blanks, in place. Returns the number of words. */
static int split_words(char *s, char **argv, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(s, " \t", &save); w && n < max; w = strtok_r(NULL, " \t", &save))
        argv[n++] = w;
    argv[n] = NULL;
    return n;
}

/* In the child: never returns. */
static void child(int in_fd, char **argv, const char *event)
{
    static char path_env[] = "PATH=/usr/local/bin:/usr/bin:/bin";
    char *envp[8];
    int n = 0;
    envp[n++] = path_env;
    static const char *const keep[] = {"HOME", "LANG", "LC_ALL", "TZ"};
    static char buf[4][1024];
    for (int i = 0; i < 4; i++) {
        const char *v = getenv(keep[i]);
        if (v && strlen(v) < 900) {
            snprintf(buf[i], sizeof(buf[i]), "%s=%s", keep[i], v);
            envp[n++] = buf[i];
        }
    }
    static char ev_env[160];
    snprintf(ev_env, sizeof(ev_env), "WALVAULT_EVENT=%s", event ? event : "");
    envp[n++] = ev_env;
    envp[n] = NULL;

    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    if (in_fd != 0) {
        dup2(in_fd, 0);
        close(in_fd);
    }
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0 && null != 1) {
        dup2(null, 1);
        close(null);
    }
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    for (int fd = 3; fd < maxfd; fd++)
        close(fd);
    execve(argv[0], argv, envp);
    fprintf(stderr, "%s: notify_command \"%s\" could not be started: %s\n", wv_log_progname(),
            argv[0], strerror(errno));
    _exit(127);
}

static int describe_status(int status, wv_err *err)
{
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 0)
            return 0;
        return wv_err_set(err, WV_EREFUSED, "exit %d", WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status))
        return wv_err_set(err, WV_EREFUSED, "killed by signal %d", WTERMSIG(status));
    return wv_err_set(err, WV_EREFUSED, "ended with status %d", status);
}

int wv_notify_run(const char *command, const char *event, const char *input, int timeout_s,
                  wv_err *err)
{
    char *copy = wv_xstrdup(command ? command : "");
    char *argv[MAX_ARGS + 1];
    int argc = split_words(copy, argv, MAX_ARGS);
    if (argc == 0 || argv[0][0] != '/') {
        wv_err_set(err, WV_EUSAGE, "notify_command \"%s\" does not start with an absolute path",
                   command ? command : "");
        free(copy);
        return wv_err_hint(err, "name the program by its absolute path, e.g. notify_command = "
                                "/usr/local/bin/my-hook");
    }
    int fds[2];
    if (pipe(fds) != 0) {
        free(copy);
        return wv_err_errno(err, WV_EIO, errno, "notify_command: could not create a pipe");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        free(copy);
        return wv_err_errno(err, WV_EIO, e, "notify_command: could not fork");
    }
    if (pid == 0) {
        close(fds[1]);
        child(fds[0], argv, event);
    }
    setpgid(pid, pid); /* also here: no race with the kill below */
    close(fds[0]);
    free(copy);

    double deadline = wv_mono_s() + (timeout_s > 0 ? timeout_s : WV_NOTIFY_TIMEOUT);
    /* Feed stdin without blocking: a hook that never reads must not hang us, nor kill us with
     * SIGPIPE when it exits without reading. */
    struct sigaction ign = {0}, old;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    const char *p = input ? input : "";
    size_t left = strlen(p);
    int timed_out = 0;
    while (left > 0) {
        ssize_t w = write(fds[1], p, left);
        if (w > 0) {
            p += w;
            left -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            break; /* EPIPE: the hook does not read; its exit status decides */
        double now = wv_mono_s();
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = fds[1], .events = POLLOUT};
        poll(&pfd, 1, (int)((deadline - now) * 1000) + 1);
    }
    close(fds[1]);
    sigaction(SIGPIPE, &old, NULL);

    int status = 0;
    for (;;) {
        if (timed_out)
            break;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return describe_status(status, err);
        if (r < 0 && errno != EINTR)
            return wv_err_errno(err, WV_EIO, errno, "notify_command: waitpid failed");
        if (wv_mono_s() >= deadline) {
            timed_out = 1;
            break;
        }
        usleep(20 * 1000);
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return wv_err_set(err, WV_EREFUSED, "timed out after %d s, killed",
                      timeout_s > 0 ? timeout_s : WV_NOTIFY_TIMEOUT);
}

int wv_notify(const wv_config *cfg, const wv_notify_event *ev)
{
    if (!cfg || !cfg->notify_command)
        return 0;
    wv_buf json;
    wv_buf_init(&json);
    wv_notify_json(ev, &json);
    wv_buf_append(&json, "\n", 1);
    wv_err err;
    wv_err_clear(&err);
    int rc =
        wv_notify_run(cfg->notify_command, ev->event, wv_buf_cstr(&json), WV_NOTIFY_TIMEOUT, &err);
    if (rc < 0)
        wv_log_warn("notify_command failed: %s (the event was \"%s\" with status %s)", err.msg,
                    ev->event ? ev->event : "", ev->ok ? "ok" : "error");
    wv_buf_free(&json);
    return rc < 0 ? -1 : 0;
}
