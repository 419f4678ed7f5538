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
    err->repo[0] = '\0';
    err->object[0] = '\0';
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
    err->repo[0] = '\0';
    err->object[0] = '\0';
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

/* Put text in front of the message (cut at the end if the whole does not fit). */
static void put_front(wv_err *err, const char *text)
{
    char old[WV_ERR_MSG_MAX];
    size_t plen = strlen(text), olen = strlen(err->msg);
    memcpy(old, err->msg, olen + 1);
    if (plen >= sizeof(err->msg))
        plen = sizeof(err->msg) - 1;
    if (plen + olen >= sizeof(err->msg))
        olen = sizeof(err->msg) - 1 - plen;
    memcpy(err->msg, text, plen);
    memcpy(err->msg + plen, old, olen);
    err->msg[plen + olen] = '\0';
    one_line(err->msg);
}

int wv_err_prefix(wv_err *err, const char *fmt, ...)
{
    char prefix[WV_ERR_MSG_MAX];
    va_list ap;
    if (!err)
        return 0;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    put_front(err, prefix);
    return err->code;
}

static void record(char *field, size_t cap, const char *value)
{
    if (value && !field[0])
        snprintf(field, cap, "%s", value);
}

int wv_err_names(wv_err *err, const char *repo, const char *object)
{
    if (!err || !err->code)
        return err ? err->code : 0;
    record(err->repo, sizeof(err->repo), repo);
    record(err->object, sizeof(err->object), object);
    return err->code;
}

/*
 * The one place that reads a message's text: a message that begins with "REPO: " names its
 * repository although nobody recorded it. The s3 driver writes its repository's name in front of
 * each of its messages (it has several dozen), as do the repository rules' messages written with
 * the name in their format; that is taken for a recorded repository, so that it is not put in
 * front a second time.
 */
static int names_repo(const wv_err *err, const char *repo)
{
    size_t n = strlen(repo);
    return n && strncmp(err->msg, repo, n) == 0 && err->msg[n] == ':';
}

static int context(wv_err *err, const char *repo, const char *object, const char *detail)
{
    char prefix[WV_ERR_OBJECT_MAX + WV_ERR_REPO_MAX + 512];
    size_t n = 0;
    if (!err || !err->code)
        return err ? err->code : 0;
    if (err->repo[0])
        return err->code;
    if (repo && names_repo(err, repo)) {
        record(err->repo, sizeof(err->repo), repo);
        return err->code;
    }
    prefix[0] = '\0';
    if (repo)
        n += (size_t)snprintf(prefix + n, sizeof(prefix) - n, "%s: ", repo);
    if (object && (detail || !err->object[0]))
        snprintf(prefix + n, sizeof(prefix) - n, "\"%s\"%s: ", object, detail ? detail : "");
    put_front(err, prefix);
    record(err->repo, sizeof(err->repo), repo);
    record(err->object, sizeof(err->object), object);
    return err->code;
}

int wv_err_context(wv_err *err, const char *repo, const char *object)
{
    return context(err, repo, object, NULL);
}

int wv_err_context_at(wv_err *err, const char *repo, const char *object, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return context(err, repo, object, detail);
}
