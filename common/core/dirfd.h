/*
 * dirfd.h - paths resolved beneath a directory file descriptor, and PostgreSQL's file modes.
 *
 * A relative path ("a/b/c") is walked one component at a time from a root directory descriptor
 * with openat(O_DIRECTORY | O_NOFOLLOW), so no symbolic link, ".." or absolute path inside it can
 * lead outside the root, and no check-then-open race exists: each step opens what it checked.
 * (openat2 with RESOLVE_BENEATH would do the same in one call where the kernel has it; the walk
 * works everywhere and costs one openat per component, so callers open a directory once per
 * operation and then work on names inside it.)
 *
 * Paths are relative, '/'-separated, without empty, "." or ".." components (wv_relpath_valid);
 * "" is the root itself. WV_DIRFD_FOLLOW_FIRST lets the first component be a symbolic link (an
 * administrator's choice, such as a repository's wal/ on another disk); below it a symbolic link
 * is refused (WV_EREFUSED) with a message naming it: "NAME: \"a/b\" is a symbolic link".
 *
 * The mode policy: PostgreSQL creates directories 0700 (0750 with group access) and files 0600
 * (0640); wv_pg_dir_mode and wv_pg_file_mode map any recorded mode to one of those, so a mode
 * such as 6777 becomes 0600 or 0640: never setuid, setgid, sticky, write for group or any bit for
 * others. Group access is granted only when the data directory itself had it.
 */
#ifndef WALVAULT_CORE_DIRFD_H
#define WALVAULT_CORE_DIRFD_H

#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

#define WV_DIRFD_CREATE       1 /* create missing directories (mkdirat, the mode given) */
#define WV_DIRFD_SYNC         2 /* with CREATE: fsync the parent of each directory created */
#define WV_DIRFD_FOLLOW_FIRST 4 /* the first component may be a symbolic link */

/* Whether rel is "" or components separated by single '/', none empty, "." or "..". */
int wv_relpath_valid(const char *rel);

/*
 * Open directory rel beneath rootfd into *out (O_RDONLY | O_DIRECTORY | O_CLOEXEC; rel "" opens rootfd
 * itself again, with a read position of its own). name is what messages call the root ("repository \"/r\"").
 * WV_ENOTFOUND if a component is missing (without CREATE), WV_EREFUSED for a symbolic link or an
 * invalid path, WV_EIO otherwise; the message names the path.
 */
int wv_dirfd_open(int rootfd, const char *name, const char *rel, unsigned flags, mode_t mode,
                  int *out, wv_err *err);

/*
 * Open the directory holding rel's last component (created as above) and point *base at that
 * component inside rel. rel must not be "".
 */
int wv_dirfd_open_parent(int rootfd, const char *name, const char *rel, unsigned flags, mode_t mode,
                         int *out, const char **base, wv_err *err);

/* Remove the directories of rel (a key's directory part) that are empty, deepest first, up to
 * but not including rootfd. Never follows a symbolic link; stops at the first that is not empty. */
void wv_dirfd_prune_empty(int rootfd, const char *rel, unsigned flags);

/* Remove name beneath parent: a file or link with unlinkat, a directory with everything in it
 * (never following a symbolic link). A missing entry is not an error. */
int wv_dirfd_remove_tree(int parent, const char *name, const char *display, wv_err *err);

/* PostgreSQL's modes for a recorded mode: 0700/0750 for a directory, 0600/0640 for a file. */
mode_t wv_pg_dir_mode(uint32_t recorded, int group);
mode_t wv_pg_file_mode(uint32_t recorded, int group);
/* Whether a data directory's own recorded mode grants group access (its group read bit). */
int wv_pg_group_access(uint32_t pgdata_mode);

#endif
