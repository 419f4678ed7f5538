/* promfile.c - a node_exporter textfile: see core/promfile.h. */
#include "core/promfile.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"

typedef struct family {
    char *name, *type, *help;
    wv_buf samples;
} family;

struct wv_prom {
    family *f;
    size_t n;
};

static int name_ok(const char *s, int colon)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                    (colon && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return 0;
    }
    return 1;
}

wv_prom *wv_prom_new(void)
{
    return wv_xcalloc(1, sizeof(wv_prom));
}

void wv_prom_free(wv_prom *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->f[i].name);
        free(p->f[i].type);
        free(p->f[i].help);
        wv_buf_free(&p->f[i].samples);
    }
    free(p->f);
    free(p);
}

static family *find(const wv_prom *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->f[i].name, name) == 0)
            return &p->f[i];
    return NULL;
}

int wv_prom_family(wv_prom *p, const char *name, const char *type, const char *help, wv_err *err)
{
    if (!name_ok(name, 1))
        return wv_err_set(err, WV_EUSAGE, "invalid metric name \"%s\"", name ? name : "");
    if (strcmp(type, "gauge") != 0 && strcmp(type, "counter") != 0)
        return wv_err_set(err, WV_EUSAGE, "metric %s: invalid type \"%s\"", name, type);
    if (find(p, name))
        return wv_err_set(err, WV_EUSAGE, "metric %s declared twice", name);
    p->f = wv_xrealloc(p->f, (p->n + 1) * sizeof(*p->f));
    family *f = &p->f[p->n++];
    f->name = wv_xstrdup(name);
    f->type = wv_xstrdup(type);
    f->help = wv_xstrdup(help ? help : "");
    wv_buf_init(&f->samples);
    return 0;
}

static void escape(wv_buf *b, const char *s, int quotes)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            wv_buf_append_str(b, "\\\\");
        else if (*p == '\n')
            wv_buf_append_str(b, "\\n");
        else if (quotes && *p == '"')
            wv_buf_append_str(b, "\\\"");
        else
            wv_buf_append(b, p, 1);
    }
}

int wv_prom_sample(wv_prom *p, const char *name, const char *label, const char *value_of_label,
                   double value, wv_err *err)
{
    family *f = find(p, name);
    if (!f)
        return wv_err_set(err, WV_EUSAGE, "metric %s was not declared", name);
    if (label && (!name_ok(label, 0) || strncmp(label, "__", 2) == 0))
        return wv_err_set(err, WV_EUSAGE, "metric %s: invalid label name \"%s\"", name, label);
    wv_buf_append_str(&f->samples, name);
    if (label) {
        wv_buf_printf(&f->samples, "{%s=\"", label);
        escape(&f->samples, value_of_label ? value_of_label : "", 1);
        wv_buf_append_str(&f->samples, "\"}");
    }
    if (isnan(value))
        wv_buf_append_str(&f->samples, " NaN\n");
    else if (isinf(value))
        wv_buf_append_str(&f->samples, value > 0 ? " +Inf\n" : " -Inf\n");
    else if (value == floor(value) && fabs(value) < 9e15)
        wv_buf_printf(&f->samples, " %.0f\n", value);
    else
        wv_buf_printf(&f->samples, " %.15g\n", value);
    return 0;
}

void wv_prom_render(const wv_prom *p, wv_buf *out)
{
    for (size_t i = 0; i < p->n; i++) {
        const family *f = &p->f[i];
        wv_buf_printf(out, "# HELP %s ", f->name);
        escape(out, f->help, 0);
        wv_buf_printf(out, "\n# TYPE %s %s\n", f->name, f->type);
        wv_buf_append(out, f->samples.data, f->samples.len);
    }
}

int wv_prom_write(const wv_prom *p, const char *path, wv_err *err)
{
    wv_buf text;
    wv_buf_init(&text);
    wv_prom_render(p, &text);
    char *tmp = wv_temp_path_for(path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not create %s", tmp);
        goto out;
    }
    fchmod(fd, 0644); /* whatever the umask: the collector runs as another user */
    if ((rc = wv_write_all(fd, text.data, text.len, tmp, err)) == 0)
        rc = wv_fsync_fd(fd, tmp, err);
    if (close(fd) != 0 && rc == 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not close %s", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not rename %s to %s", tmp, path);
    if (rc == 0)
        rc = wv_fsync_parent(path, err);
    if (rc < 0)
        unlink(tmp);
out:
    free(tmp);
    wv_buf_free(&text);
    return rc;
}
