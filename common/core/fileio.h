/*
 * fileio.h - the small POSIX file rules every durable write follows: write everything or fail,
 * fsync the file and its directory, create parent directories durably, and never leave a partial
 * file under a final name (temp name in the same directory, then rename).
 * All functions return 0 or a negative WV_E* code and fill err (ENOSPC maps to WV_ENOSPACE).
 */
#ifndef WALVAULT_CORE_FILEIO_H
#define WALVAULT_CORE_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

/* Write all len bytes (retrying short writes and EINTR). */
int wv_write_all(int fd, const void *buf, size_t len, const char *path, wv_err *err);
/* Read up to len bytes, retrying short reads until EOF; *got is what was read. */
int wv_read_full(int fd, void *buf, size_t len, size_t *got, const char *path, wv_err *err);
/* pread variant of wv_read_full. */
int wv_pread_full(int fd, void *buf, size_t len, off_t off, size_t *got, const char *path,
                  wv_err *err);

int wv_fsync_fd(int fd, const char *path, wv_err *err);
/* fsync the directory that contains path (or path itself if dir_itself). */
int wv_fsync_parent(const char *path, wv_err *err);
int wv_fsync_dir(const char *dir, wv_err *err);

/* mkdir -p with mode 0750, fsyncing each parent whose entry was created. */
int wv_mkdir_p(const char *dir, wv_err *err);

/* A unique temp path beside final: "DIR/.NAME.wvtmp-PID-N". The caller frees it. */
char *wv_temp_path_for(const char *final_path);
/* True if a file name (last component) is one of ours in progress. */
int wv_is_temp_name(const char *name);

/* rename(2) that refuses to replace: WV_EEXIST if new_path exists. */
int wv_rename_noreplace(const char *old_path, const char *new_path, wv_err *err);
/* The same for two names inside directory dirfd; messages use the display names. */
int wv_renameat_noreplace(int dirfd, const char *old_name, const char *new_name,
                          const char *old_display, const char *new_display, wv_err *err);

/* Make everything written on the file system holding path durable (syncfs). */
int wv_syncfs(const char *path, wv_err *err);

/* "DIR" of "DIR/NAME" (a new string; "." if there is no slash). */
char *wv_dirname_dup(const char *path);

#endif
