/*
 * spool.c - the per-cluster spool directory.
 */
#include "repo/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

static int mkdir_0700(const char *dir, wv_err *err)
{
    struct stat st;
    if (mkdir(dir, 0700) == 0 || errno == EEXIST) {
        if (stat(dir, &st) != 0)
            return wv_err_errno(err, WV_EIO, errno, "could not stat spool directory \"%s\"", dir);
        if (!S_ISDIR(st.st_mode))
            return wv_err_set(err, WV_EIO, "spool path \"%s\" is not a directory", dir);
        return 0;
    }
    wv_err_errno(err, WV_EIO, errno, "could not create spool directory \"%s\"", dir);
    wv_err_hint(err, "set [global] spool_path to a directory the server's user may write");
    return err->code;
}

int wv_spool_cluster_dir(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                         wv_err *err)
{
    const char *base = cfg->spool_path ? cfg->spool_path : WV_CONFIG_DEFAULT_SPOOL_PATH;
    int n = snprintf(out, outlen, "%s/%016" PRIX64, base, system_id);
    if (n < 0 || (size_t)n >= outlen)
        return wv_err_set(err, WV_EUSAGE, "spool path \"%s\" is too long", base);
    int rc = mkdir_0700(base, err);
    if (rc == 0)
        rc = mkdir_0700(out, err);
    return rc;
}
