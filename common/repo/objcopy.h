/*
 * objcopy.h - copy one stored object from one repository into another, verified on the way.
 *
 * The source is read through a tee that writes every byte into the target's sink while the object
 * layer decodes it (into a discard filter, or whatever check the caller puts there); the sink is
 * committed only if the object verifies against its trailer. The bytes stay as stored (compression
 * untouched). Used by `basebackup sync` and by the catching up of lagging repositories.
 */
#ifndef WALVAULT_REPO_OBJCOPY_H
#define WALVAULT_REPO_OBJCOPY_H

#include <stdint.h>

#include "core/error.h"
#include "repo/repo.h"
#include "storage/driver.h"

/* A wv_source that reads from `in` and writes every byte it returns into `out`. A failure of the
 * sink fails the read with the sink's error (out_failed set, out_err kept). Closing it closes
 * neither. */
typedef struct wv_tee_source {
    wv_source base;
    wv_source *in;
    wv_sink *out;
    int out_failed;
    wv_err out_err;
    uint64_t bytes;
} wv_tee_source;

void wv_tee_source_init(wv_tee_source *t, wv_source *in, wv_sink *out);

/*
 * Copy the framed object `key` (a WAL object: checked against its name and the source's cluster)
 * from `from` into `to`, committed under the repository rules (wv_repo_commit_object, with
 * put_flags | WV_PUT_NOREPLACE). *already is 1 when `to` held an identical object; a different one
 * is WV_ECONFLICT. Errors name the repository and the key. *bytes: the stored size copied.
 */
int wv_repo_copy_object(wv_repo *from, wv_repo *to, const char *key, unsigned put_flags,
                        uint64_t *bytes, int *already, wv_err *err);

#endif
