/* spool.c - the per-cluster spool directory (see spool.h). */
#include "repo/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "core/fileio.h"

int wv_spool_cluster_path(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                          wv_err *err)
{
    const char *root = cfg->spool_path ? cfg->spool_path : WV_CONFIG_DEFAULT_SPOOL_PATH;
    int n = snprintf(out, outlen, "%s/%016" PRIX64, root, system_id);
    if (n < 0 || (size_t)n >= outlen)
        return wv_err_set(err, WV_ECONFIG, "spool_path \"%s\" is too long", root);
    return 0;
}

int wv_spool_cluster_dir(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                         wv_err *err)
{
    const char *root = cfg->spool_path ? cfg->spool_path : WV_CONFIG_DEFAULT_SPOOL_PATH;
    int rc = wv_spool_cluster_path(cfg, system_id, out, outlen, err);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    rc = wv_mkdir_p(root, err);
    if (rc != 0) {
        wv_err_hint(err,
                    "create spool_path \"%s\" for the user that runs walvault (mode 0750), "
                    "or point [global] spool_path elsewhere",
                    root);
        return rc;
    }
    if (mkdir(out, 0700) != 0 && errno != EEXIST)
        return wv_err_errno(err, WV_EIO, errno, "could not create spool directory \"%s\"", out);
    return wv_fsync_dir(root, err);
}
