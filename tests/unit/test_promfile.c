/*
 * test_promfile.c - the node_exporter textfile: a strict check of the format rules on what the
 * writer renders (names, one HELP and one TYPE per family before its samples, every sample of a
 * family together, label escaping, values), refusals of bad names, and the atomic write (mode
 * 0644, no temp file left, an existing file replaced whole).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/promfile.h"

/* A strict reader of the text format: returns the number of samples, or fails the test. */
static int parse_strict(const char *text)
{
    char seen_type[32][64];
    int ntypes = 0, samples = 0;
    char current[64] = "";
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line ends with \n */
        char line[512];
        size_t len = (size_t)(nl - p);
        assert_true(len < sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[64];
            assert_int_equal(sscanf(line + 7, "%63s", name), 1);
            snprintf(current, sizeof(current), "%s", name);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[64], type[16];
            assert_int_equal(sscanf(line + 7, "%63s %15s", name, type), 2);
            assert_string_equal(name, current); /* HELP then TYPE of the same family */
            assert_true(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0);
            for (int i = 0; i < ntypes; i++)
                assert_string_not_equal(seen_type[i], name); /* one TYPE per metric */
            snprintf(seen_type[ntypes++], 64, "%s", name);
            continue;
        }
        assert_true(line[0] != '#');
        /* name{label="value"} number */
        const char *q = line;
        assert_true((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '_' || *q == ':');
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
               *q == '_' || *q == ':')
            q++;
        assert_int_equal((int)(q - line), (int)strlen(current));
        assert_int_equal(strncmp(line, current, strlen(current)), 0); /* grouped under its TYPE */
        if (*q == '{') {
            q++;
            while (*q != '}') {
                while ((*q >= 'a' && *q <= 'z') || *q == '_')
                    q++;
                assert_int_equal(*q++, '=');
                assert_int_equal(*q++, '"');
                while (*q != '"') {
                    assert_true(*q != '\0' && *q != '\n');
                    if (*q == '\\') {
                        q++;
                        assert_true(*q == '\\' || *q == '"' || *q == 'n');
                    }
                    q++;
                }
                q++;
                if (*q == ',')
                    q++;
            }
            q++;
        }
        assert_int_equal(*q++, ' ');
        if (strcmp(q, "NaN") != 0 && strcmp(q, "+Inf") != 0 && strcmp(q, "-Inf") != 0) {
            char *end;
            strtod(q, &end);
            assert_true(end != q && *end == '\0');
        }
        samples++;
    }
    return samples;
}

static void test_render(void **state)
{
    (void)state;
    wv_prom *p = wv_prom_new();
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_prom_family(p, "walvault_repo_up", "gauge", "1 when reachable", &err), 0);
    assert_int_equal(
        wv_prom_family(p, "walvault_last_backup_age_seconds", "gauge", "a\\b\nc", &err), 0);
    assert_int_equal(wv_prom_family(p, "walvault_status", "gauge", "0..3", &err), 0);
    /* interleaved: the output still groups them */
    assert_int_equal(wv_prom_sample(p, "walvault_repo_up", "repo", "repo1", 1, &err), 0);
    assert_int_equal(
        wv_prom_sample(p, "walvault_last_backup_age_seconds", "repo", "repo1", 12.5, &err), 0);
    assert_int_equal(wv_prom_sample(p, "walvault_repo_up", "repo", "we\"ird\\na\nme", 0, &err), 0);
    assert_int_equal(wv_prom_sample(p, "walvault_status", NULL, NULL, 2, &err), 0);
    assert_int_equal(
        wv_prom_sample(p, "walvault_last_backup_age_seconds", "repo", "repo2", NAN, &err), 0);
    wv_buf b;
    wv_buf_init(&b);
    wv_prom_render(p, &b);
    const char *s = wv_buf_cstr(&b);
    assert_string_equal(s, "# HELP walvault_repo_up 1 when reachable\n"
                           "# TYPE walvault_repo_up gauge\n"
                           "walvault_repo_up{repo=\"repo1\"} 1\n"
                           "walvault_repo_up{repo=\"we\\\"ird\\\\na\\nme\"} 0\n"
                           "# HELP walvault_last_backup_age_seconds a\\\\b\\nc\n"
                           "# TYPE walvault_last_backup_age_seconds gauge\n"
                           "walvault_last_backup_age_seconds{repo=\"repo1\"} 12.5\n"
                           "walvault_last_backup_age_seconds{repo=\"repo2\"} NaN\n"
                           "# HELP walvault_status 0..3\n"
                           "# TYPE walvault_status gauge\n"
                           "walvault_status 2\n");
    assert_int_equal(parse_strict(s), 5);
    wv_buf_free(&b);
    wv_prom_free(p);
}

static void test_refusals(void **state)
{
    (void)state;
    wv_prom *p = wv_prom_new();
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_prom_family(p, "1abc", "gauge", "", &err), WV_EUSAGE);
    assert_int_equal(wv_prom_family(p, "a-b", "gauge", "", &err), WV_EUSAGE);
    assert_int_equal(wv_prom_family(p, "", "gauge", "", &err), WV_EUSAGE);
    assert_int_equal(wv_prom_family(p, "ok_name", "histogram", "", &err), WV_EUSAGE);
    assert_int_equal(wv_prom_family(p, "ok_name", "gauge", "", &err), 0);
    assert_int_equal(wv_prom_family(p, "ok_name", "gauge", "", &err), WV_EUSAGE);
    assert_string_equal(err.msg, "metric ok_name declared twice");
    assert_int_equal(wv_prom_sample(p, "other", NULL, NULL, 1, &err), WV_EUSAGE);
    assert_int_equal(wv_prom_sample(p, "ok_name", "re:po", "x", 1, &err), WV_EUSAGE);
    assert_int_equal(wv_prom_sample(p, "ok_name", "__name", "x", 1, &err), WV_EUSAGE);
    wv_prom_free(p);
}

static void test_write_atomic(void **state)
{
    (void)state;
    char dir[] = "/tmp/wv-test-prom-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/walvault.prom", dir);
    FILE *f = fopen(path, "w");
    fputs("old content that is much longer than the new one, which must replace it whole\n", f);
    fclose(f);
    wv_prom *p = wv_prom_new();
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_prom_family(p, "walvault_status", "gauge", "s", &err), 0);
    assert_int_equal(wv_prom_sample(p, "walvault_status", NULL, NULL, 0, &err), 0);
    mode_t old = umask(077);
    assert_int_equal(wv_prom_write(p, path, &err), 0);
    umask(old);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    f = fopen(path, "r");
    char buf[256] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_string_equal(buf, "# HELP walvault_status s\n# TYPE walvault_status gauge\n"
                             "walvault_status 0\n");
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")))
            entries++;
    closedir(d);
    assert_int_equal(entries, 1); /* no temp file left */
    /* a directory that does not exist: an error naming the file, nothing written */
    char bad[300];
    snprintf(bad, sizeof(bad), "%s/missing/walvault.prom", dir);
    assert_int_equal(wv_prom_write(p, bad, &err), WV_EIO);
    assert_non_null(strstr(err.msg, "missing/"));
    wv_prom_free(p);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_write_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
