/* error.c - the error table and the per-call error record. */
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    int code;
    const char *name;
    const char *desc;
    int exit_code;
} err_row;

static const err_row err_table[] = {
#define WV__ERR_ROW(name, desc, code) {-(code), #name, desc, code},
    WV_ERR_MAP(WV__ERR_ROW)
#undef WV__ERR_ROW
};

static const err_row *find_row(int code)
{
    for (size_t i = 0; i < sizeof(err_table) / sizeof(err_table[0]); i++)
        if (err_table[i].code == code)
            return &err_table[i];
    return NULL;
}

const char *wv_err_name(int code)
{
    const err_row *r = find_row(code);
    return code == 0 ? "OK" : r ? r->name : "UNKNOWN";
}

const char *wv_err_desc(int code)
{
    const err_row *r = find_row(code);
    return code == 0 ? "success" : r ? r->desc : "unknown error";
}

int wv_err_exit_code(int code)
{
    const err_row *r = find_row(code);
    if (code == 0)
        return 0;
    return r ? r->exit_code : 18;
}

void wv_err_clear(wv_err *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
    err->hint[0] = '\0';
}

/* A message is one line whatever it quotes (a member name from a tar stream, a value from a
 * manifest): control characters, newlines included, become '?'. Tabs stay. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < ' ' && *s != '\t') || *s == 0x7f)
            *s = '?';
}

int wv_err_setv(wv_err *err, int code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    one_line(err->msg);
    err->hint[0] = '\0';
    return code;
}

int wv_err_set(wv_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    wv_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int wv_err_errno(wv_err *err, int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    if (errnum == ENOSPC || errnum == EDQUOT)
        code = WV_ENOSPACE;
    if (!err)
        return code;
    va_start(ap, fmt);
    wv_err_setv(err, code, fmt, ap);
    va_end(ap);
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
    if (code == WV_ENOSPACE)
        snprintf(err->hint, sizeof(err->hint), "free space on that file system, then retry");
    return code;
}

int wv_err_hint(wv_err *err, const char *fmt, ...)
{
    va_list ap;
    if (!err)
        return 0;
    va_start(ap, fmt);
    vsnprintf(err->hint, sizeof(err->hint), fmt, ap);
    va_end(ap);
    one_line(err->hint);
    return err->code;
}

int wv_err_prefix(wv_err *err, const char *fmt, ...)
{
    char prefix[256], old[WV_ERR_MSG_MAX];
    va_list ap;
    if (!err)
        return 0;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix), olen = strlen(err->msg);
    memcpy(old, err->msg, olen + 1);
    if (plen >= sizeof(err->msg))
        plen = sizeof(err->msg) - 1;
    if (plen + olen >= sizeof(err->msg))
        olen = sizeof(err->msg) - 1 - plen;
    memcpy(err->msg, prefix, plen);
    memcpy(err->msg + plen, old, olen);
    err->msg[plen + olen] = '\0';
    one_line(err->msg);
    return err->code;
}
