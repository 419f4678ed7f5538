/* log.c - stderr logging, one line per event. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *log_progname = "walvault";
static wv_log_level log_level = WV_LOG_INFO;

void wv_log_init(const char *progname, wv_log_level level)
{
    if (progname) {
        const char *slash = strrchr(progname, '/');
        log_progname = slash ? slash + 1 : progname;
    }
    log_level = level;
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

static void log_line(wv_log_level level, const char *tag, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void log_line(wv_log_level level, const char *tag, const char *fmt, va_list ap)
{
    char line[4096];
    int n;
    if (level > log_level)
        return;
    n = snprintf(line, sizeof(line), "%s: %s", log_progname, tag);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    /* One write per line so that concurrent processes do not interleave within a line. A message
     * too long for the buffer is cut so that the line still ends in its newline. */
    size_t len = strlen(line);
    if (len + 1 >= sizeof(line))
        len = sizeof(line) - 2;
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, stderr);
    fflush(stderr);
}

#define WV__LOG_FN(fn, level, tag)                                                                 \
    void fn(const char *fmt, ...)                                                                  \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_line(level, tag, fmt, ap);                                                             \
        va_end(ap);                                                                                \
    }
WV__LOG_FN(wv_log_error, WV_LOG_ERROR, "error: ")
WV__LOG_FN(wv_log_warn, WV_LOG_WARN, "warning: ")
WV__LOG_FN(wv_log_info, WV_LOG_INFO, "")
WV__LOG_FN(wv_log_debug, WV_LOG_DEBUG, "debug: ")

void wv_log_err(const wv_err *err)
{
    wv_log_error("%s", err->msg[0] ? err->msg : wv_err_desc(err->code));
    if (err->hint[0])
        wv_log_error("hint: %s", err->hint);
}
