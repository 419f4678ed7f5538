/* log.c - stderr logging, one line per event; optionally also appended to a log file. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *log_progname = "walvault";
static wv_log_level log_level = WV_LOG_INFO;
static int log_stderr_ts;
static int log_tty;
static int log_fd = -1;

void wv_log_init(const char *progname, wv_log_level level)
{
    if (progname) {
        const char *slash = strrchr(progname, '/');
        log_progname = slash ? slash + 1 : progname;
    }
    log_level = level;
    log_tty = isatty(2);
}

void wv_log_set_level(wv_log_level level)
{
    log_level = level;
}

wv_log_level wv_log_get_level(void)
{
    return log_level;
}

const char *wv_log_progname(void)
{
    return log_progname;
}

void wv_log_set_stderr_timestamps(int on)
{
    log_stderr_ts = on;
}

void wv_log_set_terminal(int on)
{
    log_tty = on;
}

int wv_log_terminal(void)
{
    return log_tty;
}

int wv_log_stderr_wants_timestamps(void)
{
    if (isatty(2))
        return 0;
    /* systemd sets JOURNAL_STREAM=DEV:INODE for the stream it connects to stdout/stderr */
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    if (js && fstat(2, &st) == 0) {
        unsigned long long dev = 0, ino = 0;
        if (sscanf(js, "%llu:%llu", &dev, &ino) == 2 && dev == (unsigned long long)st.st_dev &&
            ino == (unsigned long long)st.st_ino)
            return 0;
    }
    return 1;
}

void wv_log_open_file(const char *path)
{
    if (log_fd >= 0) {
        close(log_fd);
        log_fd = -1;
    }
    if (!path)
        return;
    /* created 0640 whatever the umask (PostgreSQL runs archive_command under 0077), so that the
     * group (e.g. adm) can read it; an existing file keeps its mode */
    const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY;
    int fd = open(path, flags | O_CREAT | O_EXCL, 0640);
    if (fd >= 0)
        (void)fchmod(fd, 0640);
    else if (errno == EEXIST)
        fd = open(path, flags);
    if (fd < 0) {
        int e = errno;
        wv_log_warn("cannot open log file \"%s\": %s; logging to stderr only", path, strerror(e));
        return;
    }
    log_fd = fd;
}

int wv_log_level_parse(const char *s, wv_log_level *out)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (wv_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = WV_LOG_WARN;
        return 0;
    }
    return -1;
}

/* "2026-12-02T12:00:00Z " (21 bytes and the NUL). */
static void stamp(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ ", &tm) == 0)
        out[0] = '\0';
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void log_line(wv_log_level level, int to_stderr, const char *tag, const char *fmt,
                     va_list ap) __attribute__((format(printf, 4, 0)));

static void log_line(wv_log_level level, int to_stderr, const char *tag, const char *fmt,
                     va_list ap)
{
    char ts[32];
    char line[4096];
    int n;
    if (level > log_level || (!to_stderr && log_fd < 0))
        return;
    stamp(ts);
    size_t tslen = strlen(ts);
    /* the line is built after room for the timestamp, which is put in front for the log file
     * and, when asked, for stderr */
    n = snprintf(line + tslen, sizeof(line) - tslen, "%s: %s", log_progname, tag);
    if (n < 0 || (size_t)n >= sizeof(line) - tslen)
        n = 0;
    vsnprintf(line + tslen + (size_t)n, sizeof(line) - tslen - (size_t)n, fmt, ap);
    memcpy(line, ts, tslen);
    /* One write per line so that concurrent processes do not interleave within a line. A message
     * too long for the buffer is cut so that the line still ends in its newline. */
    size_t len = strlen(line);
    if (len + 1 >= sizeof(line))
        len = sizeof(line) - 2;
    line[len] = '\n';
    line[len + 1] = '\0';
    if (to_stderr) {
        fputs(log_stderr_ts ? line : line + tslen, stderr);
        fflush(stderr);
    }
    if (log_fd >= 0)
        write_all(log_fd, line, len + 1);
}

#define WV__LOG_FN(fn, level, to_stderr, tag)                                                      \
    void fn(const char *fmt, ...)                                                                  \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_line(level, to_stderr, tag, fmt, ap);                                                  \
        va_end(ap);                                                                                \
    }
WV__LOG_FN(wv_log_error, WV_LOG_ERROR, 1, "error: ")
WV__LOG_FN(wv_log_warn, WV_LOG_WARN, 1, "warning: ")
WV__LOG_FN(wv_log_info, WV_LOG_INFO, 1, "")
WV__LOG_FN(wv_log_debug, WV_LOG_DEBUG, 1, "debug: ")
WV__LOG_FN(wv_log_note, WV_LOG_INFO, log_tty || log_level >= WV_LOG_DEBUG, "")

void wv_log_err(const wv_err *err)
{
    wv_log_error("%s", err->msg[0] ? err->msg : wv_err_desc(err->code));
    if (err->hint[0])
        wv_log_error("hint: %s", err->hint);
}
