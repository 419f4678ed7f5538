/*
 * push.h - archive one WAL-directory file (segment, partial, timeline history, backup history)
 * to every configured repository.
 *
 * Success means the file is durable in every repository (or an identical copy already was).
 * A different file already archived under the same name is never overwritten: WV_ECONFLICT.
 */
#ifndef WALVAULT_ARCHIVE_PUSH_H
#define WALVAULT_ARCHIVE_PUSH_H

#include "core/config.h"
#include "core/error.h"

int wv_push_file(const wv_config *cfg, const char *path, wv_err *err);

#endif
