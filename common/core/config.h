/*
 * config.h - walvault.conf: an INI file (inih) with [global] and [repo1]..[repoN].
 *
 * Which file: -c/--config FILE, else $WALVAULT_CONFIG, else /etc/walvault/walvault.conf
 * (wv_config_path). Loading is all-or-nothing: a syntax error, an unknown section or key, a missing
 * required key or a bad value fails with one line that names file, line and key, e.g.
 *     /etc/walvault/walvault.conf:12: unknown key "compres" in [global]
 * [retention] and the retention.KEY overrides of [repoN]: see core/retention_config.h; [monitor]:
 * see core/monitor_config.h.
 * Secrets are never read from the command line: only from the environment or from files named here.
 */
#ifndef WALVAULT_CORE_CONFIG_H
#define WALVAULT_CORE_CONFIG_H

#include <stdint.h>

#include "core/error.h"
#include "core/log.h"
#include "core/monitor_config.h"
#include "core/retention_config.h"

#define WV_CONFIG_DEFAULT_PATH       "/etc/walvault/walvault.conf"
#define WV_MAX_REPOS                 8
#define WV_CONFIG_DEFAULT_STATE_PATH "/var/lib/walvault/state"
#define WV_CONFIG_DEFAULT_SPOOL_PATH "/var/spool/walvault"
/* 64 MiB: four 16 MiB segments ahead of the one PostgreSQL replays */
#define WV_CONFIG_DEFAULT_FETCH_AHEAD (UINT64_C(64) << 20)

typedef enum wv_repo_type { WV_REPO_POSIX = 1, WV_REPO_S3, WV_REPO_SSH } wv_repo_type;
typedef enum wv_compress { WV_COMPRESS_NONE = 0, WV_COMPRESS_LZ4 = 1 } wv_compress;

typedef struct wv_repo_config {
    int index;     /* N of [repoN] */
    char name[16]; /* "repo1" */
    wv_repo_type type;
    char *path; /* posix, ssh: absolute path of the repository */

    /* s3 */
    char *endpoint; /* https://host[:port] or http://... */
    char *region;
    char *bucket;
    char *prefix;       /* key prefix inside the bucket, no leading or trailing slash; may be "" */
    int uri_style_host; /* 1 = host style (bucket.endpoint), 0 = path style */
    char *ca_file;
    char *access_key_id;
    char *secret_access_key_file; /* file readable by its owner only */

    /* ssh */
    char *host;
    char *user;
    int port;          /* 0 = ssh's default */
    char *ssh_command; /* default "ssh" */
    char *identity_file;
    char *known_hosts;
    char *remote_command; /* the helper on the backup server; default "walvault-remote" */

    /* required = yes | no (default yes): 1 for "no": a failure there does not fail wal-push or
     * backup; what it lacks is recorded in the spool and caught up later (see repo/lag.h) */
    int optional;

    /* [global]'s encrypt_* key files (borrowed from the wv_config; NULL when not set): a
     * repository is opened with the configuration's keys (repo/keys.h) */
    const char *encrypt_key_file;
    const char *encrypt_public_key_file;
    const char *encrypt_private_key_file;
} wv_repo_config;

typedef struct wv_config {
    char *file;             /* the path it was loaded from */
    wv_compress compress;   /* [global] compress = lz4 | none (default lz4) */
    int compress_level;     /* [global] compress_level = 1..12 (default 1) */
    int process_max;        /* [global] process_max = 1..64 (default: online CPUs, at most 8) */
    wv_log_level log_level; /* [global] log_level = error | warn | info | debug (default info) */
    int archive_timeout;    /* [global] archive_timeout = seconds basebackup waits for WAL (60) */
    char *drill_path;       /* [global] drill_path: where drill makes its temporary directory (NULL:
                       * $TMPDIR, else /tmp) */
    char *pg_bindir; /* [global] pg_bindir: PostgreSQL's programs (NULL: /usr/lib/postgresql/N/bin
                       * for the backup's major version N) */
    wv_repo_config repos[WV_MAX_REPOS];
    int nrepos; /* repos[] sorted by index; at least one */
    /* [retention] and the retention.* keys of each [repoN]: wv_retention_config_for_repo gives a
     * repository's policy (see core/retention_config.h) */
    wv_retention_config retention;
    wv_monitor_config monitor; /* [monitor] (defaults when absent) */
    /* [global] notify_command = /abs/program ARGS: run after jobs with the event as JSON on
     * stdin (see core/notify.h); NULL when not set */
    char *notify_command;
    /* [global] state_path = local directory of state files (drill results for status); NULL:
     * WV_CONFIG_DEFAULT_STATE_PATH */
    char *state_path;
    /* [global] log_file = absolute path: every log line, with a timestamp, is also appended to it
     * (see core/log.h); NULL when not set */
    char *log_file;
    /* [global] spool_path = local directory of per-cluster spool files (lag records, gaps);
     * default WV_CONFIG_DEFAULT_SPOOL_PATH */
    char *spool_path;
    /* [global] archive_queue_max = a size ("8GiB"): past it wal-push drops the oldest waiting WAL
     * segment, loudly, and records the gap; 0: off (the default) */
    uint64_t archive_queue_max;
    /* [global] encryption (docs/encryption.md, core/keyfile.h): absolute paths of key files, NULL
     * when not set. encrypt_key_file (symmetric) excludes the other two; a host that only writes
     * needs only encrypt_public_key_file; readers need encrypt_private_key_file (which may hold
     * several keys, the ring kept across rekeys). */
    char *encrypt_key_file;
    char *encrypt_public_key_file;
    char *encrypt_private_key_file;
    /* [global] archive_async = on | off (default off): wal-push pushes ahead from
     * the .ready files of archive_status with a background pusher (archive_cmd/pusher.c) */
    int archive_async;
    /* [global] fetch_ahead = bytes of WAL wal-fetch prefetches past the segment asked for (0:
     * off); default WV_CONFIG_DEFAULT_FETCH_AHEAD */
    uint64_t fetch_ahead;
} wv_config;

/* The file to load: explicit (may be NULL), else $WALVAULT_CONFIG, else the default path. */
const char *wv_config_path(const char *explicit_path);

/* Load and validate. On failure *out is untouched and err names file:line and key. */
int wv_config_load(const char *path, wv_config **out, wv_err *err);

/* Parse from a string (tests); `name` stands for the file name in messages. */
int wv_config_parse_string(const char *text, const char *name, wv_config **out, wv_err *err);

void wv_config_free(wv_config *cfg);

/* The repository [repoN], or NULL. */
const wv_repo_config *wv_config_repo(const wv_config *cfg, int index);

/* "8GiB", "512MiB", "64KiB", "1TiB", "4096B" or "4096" -> bytes (at least 1). 0 or WV_ECONFIG. */
int wv_config_size_parse(const char *s, uint64_t *out);

/*
 * Read a secret from a file named in the configuration (e.g. secret_access_key_file): a regular
 * file, not readable or writable by group or others, at most 4096 bytes, one line (a trailing
 * newline is stripped), not empty. On success *out is a new string the caller frees (after
 * clearing it). Messages name the file, never its contents.
 */
int wv_config_read_secret_file(const char *path, char **out, wv_err *err);

#endif
