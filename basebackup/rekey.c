/*
 * rekey.c - basebackup rekey --new-key-file FILE | --new-public-key-file FILE [--repo N]: replace
 * the key that opens each encrypted repository of the configuration (or only [repoN]), without
 * rewriting any data object (repo/keys.h, docs/encryption.md "Rotation").
 *
 * Symmetric (--new-key-file): the repository's data key is re-wrapped under the new key; once the
 * rekey ended, only the new key opens the repository. Public key (--new-public-key-file): new
 * objects are written for the new public key; objects written before stay readable with the old
 * private key, which stays in the key ring (encrypt_private_key_file).
 *
 * Two passes. First every repository is opened with the configuration's keys and checked (it is
 * encrypted, in the mode of the option, and this host can rekey it), so that nothing is written
 * when one of them would be refused. Then each is rekeyed (wv_repo_keys_rekey). A repository the
 * new key already opens from its newest key generation (a rekey that ended, or stopped after the
 * new generation was written) is finished instead: its older generations are removed
 * (wv_repo_keys_finish). So after a crash, or a failure of a later repository, the same command
 * run again completes the work, even where the configuration's key no longer opens the repository.
 *
 * Test hook: WALVAULT_TEST_REKEY_PAUSE=N stops the first rekey at point N (1: the new generation
 * is written, 2: it verified, 3: the removal of older generations began), prints "paused at
 * point N" on stderr and sleeps, so that a test can kill the process there for real.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "commands.h"
#include "core/buf.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "repo/keys.h"
#include "repo/repo.h"
#include "storage/storage.h"

static const char usage[] =
    "usage: basebackup [-c FILE] rekey --new-key-file FILE | --new-public-key-file FILE "
    "[--repo N]\n"
    "\n"
    "Replace the key that opens every encrypted repository (or [repoN]); no data is rewritten.\n"
    "\n"
    "  --new-key-file FILE         symmetric: the new key file (0600); afterwards only it opens\n"
    "                              the repository: point encrypt_key_file at it\n"
    "  --new-public-key-file FILE  public key: new objects are written for this public key; keep\n"
    "                              the old private key in encrypt_private_key_file\n"
    "  --repo N                    rekey only [repoN]\n"
    "\n"
    "Run again after a failure or a crash: a repository already rekeyed is finished, not\n"
    "rekeyed twice.\n";

enum { ACT_REKEY = 1, ACT_FINISH = 2 };

/* One repository's rekey, decided in the first pass. */
typedef struct plan {
    const wv_repo_config *rc;
    wv_repo *r;       /* opened with the configuration's keys, or NULL (they no longer open it) */
    wv_storage *st;   /* r's storage, or one of our own when r is NULL */
    wv_storage *own;  /* that storage of our own, freed at the end */
    wv_repo_keys *nk; /* ACT_FINISH: the key record opened with the new key */
    int action;       /* ACT_* */
    uint64_t old_id;  /* the key id before (public-key mode), 0 if unknown */
    int removed;      /* ACT_FINISH: older generations removed */
} plan;

static void plan_free(plan *p)
{
    wv_repo_keys_free(p->nk);
    wv_repo_close(p->r);
    wv_storage_free(p->own);
    memset(p, 0, sizeof(*p));
}

static const char *mode_option(uint8_t mode)
{
    return mode == WV_OBJ_KEYMODE_SYMMETRIC ? "--new-key-file" : "--new-public-key-file";
}

/* The mode the configuration's keys are in, or 0 when it sets none. */
static uint8_t config_mode(const wv_config *cfg)
{
    if (cfg->encrypt_key_file)
        return WV_OBJ_KEYMODE_SYMMETRIC;
    if (cfg->encrypt_public_key_file || cfg->encrypt_private_key_file)
        return WV_OBJ_KEYMODE_X25519;
    return 0;
}

/* Open the key record with the new key. 0 with *out when it opens the newest generation the old
 * one opens or a newer one (the rekey ended or was stopped after writing it); else 0 with *out
 * NULL. `k` is the record opened with the configuration's keys, or NULL when they open nothing. */
static int open_with_new(wv_storage *st, const char *name, const wv_repo_keys *k,
                         const wv_user_keys *next, wv_repo_keys **out, wv_err *err)
{
    wv_err e;
    wv_repo_keys *nk = NULL;
    *out = NULL;
    wv_err_clear(&e);
    if (wv_repo_keys_open(st, name, next, 1, &nk, &e) != 0)
        return 0; /* the new key opens nothing yet: a rekey to do */
    if (k && nk->generation < k->generation) {
        wv_repo_keys_free(nk); /* an older key generation: rekey to it again */
        return 0;
    }
    /* both keys open a generation: they must be of the same repository keys */
    if (k && (CRYPTO_memcmp(nk->crypto->digest_key, k->crypto->digest_key, 32) != 0 ||
              (next->mode == WV_OBJ_KEYMODE_SYMMETRIC &&
               CRYPTO_memcmp(nk->crypto->data_key, k->crypto->data_key, 32) != 0))) {
        wv_repo_keys_free(nk);
        wv_err_set(err, WV_ECORRUPT,
                   "%s: the new key opens a key generation whose keys are not the repository's",
                   name);
        return wv_err_hint(err, "key records are written by walvault and never edited: restore "
                                "keys/ from a copy of this repository");
    }
    *out = nk;
    return 0;
}

/* The first pass for one repository: open it, check it can be rekeyed, decide the action. */
static int prepare(const wv_config *cfg, const wv_repo_config *rc, const wv_user_keys *next,
                   plan *p, wv_err *err)
{
    memset(p, 0, sizeof(*p));
    p->rc = rc;
    int e = wv_repo_open(rc, &p->r, err);
    if (e == WV_EKEY && config_mode(cfg) == next->mode) {
        /* the configuration's key no longer opens it: a rekey to the new key that ended? */
        wv_err saved = *err;
        p->r = NULL;
        if ((e = wv_storage_open(rc, &p->own, err)) != 0)
            return e;
        p->st = p->own;
        if ((e = open_with_new(p->st, rc->name, NULL, next, &p->nk, err)) != 0)
            return e;
        if (!p->nk) {
            *err = saved;
            return saved.code;
        }
        p->action = ACT_FINISH;
        return 0;
    }
    if (e != 0)
        return e;
    p->st = p->r->st;
    const wv_repo_keys *k = p->r->keys;
    if (!k) {
        wv_err_set(err, WV_EREFUSED,
                   "%s: the repository is not encrypted: there is no key to rekey", rc->name);
        return wv_err_hint(err, "to encrypt it, copy it into a new repository with encryption on "
                                "(basebackup sync, docs/encryption.md)");
    }
    if (k->crypto->mode != next->mode) {
        int sym = k->crypto->mode == WV_OBJ_KEYMODE_SYMMETRIC;
        wv_err_set(err, WV_EUSAGE, "%s: the repository is encrypted %s: %s is for %s", rc->name,
                   sym ? "with a symmetric key" : "for a public key", mode_option(next->mode),
                   sym ? "public-key repositories" : "symmetric repositories");
        return wv_err_hint(err, "use %s FILE; rekey does not change a repository's mode",
                           mode_option(k->crypto->mode));
    }
    p->old_id = k->crypto->key_id;
    if ((e = open_with_new(p->st, rc->name, k, next, &p->nk, err)) != 0)
        return e;
    if (p->nk) {
        p->action = ACT_FINISH;
        return 0;
    }
    if (!k->can_write) {
        wv_err_set(err, WV_EKEY,
                   "%s: this host does not hold the repository's current public key (key id "
                   "%016" PRIx64 "), which rekey needs",
                   rc->name, k->crypto->key_id);
        return wv_err_hint(err, "run rekey where encrypt_public_key_file is the current public key "
                                "(or encrypt_private_key_file holds its private key)");
    }
    p->action = ACT_REKEY;
    return 0;
}

/* WALVAULT_TEST_REKEY_PAUSE: 1..3, else 0. */
static int test_pause(void)
{
    const char *v = getenv("WALVAULT_TEST_REKEY_PAUSE");
    if (!v || !*v)
        return 0;
    int n = atoi(v);
    return n >= 1 && n <= 3 ? n : 0;
}

/* The second pass for one repository. */
static int run_plan(plan *p, const wv_user_keys *next, int pause, wv_err *err)
{
    const char *name = p->rc->name;
    if (p->action == ACT_FINISH)
        return wv_repo_keys_finish(p->st, name, p->nk, &p->removed, err);
    int e = wv_repo_keys_rekey(p->st, name, p->r->keys, next, pause, err);
    if (e != 0 || !pause)
        return e;
    wv_log_warn("rekey: %s: paused at point %d (WALVAULT_TEST_REKEY_PAUSE)", name, pause);
    fflush(stderr);
    for (int i = 0; i < 600; i++)
        sleep(1);
    wv_err_set(err, WV_EINTERRUPTED, "%s: rekey stopped at test point %d", name, pause);
    return wv_err_hint(err, "unset WALVAULT_TEST_REKEY_PAUSE, and run basebackup rekey again");
}

static void print_done(const plan *p, const wv_user_keys *next)
{
    const char *name = p->rc->name;
    if (next->mode == WV_OBJ_KEYMODE_SYMMETRIC) {
        if (p->action == ACT_REKEY)
            printf("%s: rekeyed: the new key file opens it, the old key no longer does\n", name);
        else if (p->removed)
            printf("%s: finished an interrupted rekey: the new key file opens it, the old key no "
                   "longer does (%d older key generation%s removed)\n",
                   name, p->removed, p->removed == 1 ? "" : "s");
        else
            printf("%s: already rekeyed: the new key file opens it\n", name);
        return;
    }
    uint64_t id = wv_keys_x25519_id(next->pub);
    if (p->action == ACT_REKEY)
        printf("%s: rekeyed: new objects are written for key id %016" PRIx64
               " (before: key id %016" PRIx64 ")\n",
               name, id, p->old_id);
    else if (p->removed)
        printf("%s: finished an interrupted rekey: new objects are written for key id %016" PRIx64
               " (%d older key generation%s removed)\n",
               name, id, p->removed, p->removed == 1 ? "" : "s");
    else
        printf("%s: already rekeyed: new objects are written for key id %016" PRIx64 "\n", name,
               id);
}

/* What to do next, once every repository is rekeyed. */
static void print_next(const wv_config *cfg, const plan *ps, int n, int only,
                       const wv_user_keys *next)
{
    wv_buf names = WV_BUF_INIT;
    for (int i = 0; i < n; i++)
        wv_buf_printf(&names, "%s%s", i ? ", " : "", ps[i].rc->name);
    if (next->mode == WV_OBJ_KEYMODE_SYMMETRIC)
        printf("point encrypt_key_file at the new file now: the old key no longer opens %s\n",
               wv_buf_cstr(&names));
    else
        printf("new objects are written for key id %016" PRIx64
               "; keep the old private key in encrypt_private_key_file: objects written before "
               "need it\n"
               "point encrypt_public_key_file at the new public key on every host that writes to "
               "%s, and add the new private key to the key ring in encrypt_private_key_file\n",
               wv_keys_x25519_id(next->pub), wv_buf_cstr(&names));
    if (only && cfg->nrepos > 1)
        printf("the configuration's other repositories still open with the old key: rekey them too "
               "before changing [global]\n");
    wv_buf_free(&names);
}

int wv_bbcmd_rekey(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"new-key-file", required_argument, NULL, 'k'},
        {"new-public-key-file", required_argument, NULL, 'p'},
        {"repo", required_argument, NULL, 'r'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *key_file = NULL, *pub_file = NULL;
    int only = 0, c, rc = 0;
    wv_err err;
    wv_config *cfg = NULL;
    wv_user_keys *next = NULL;
    wv_cli cli = {.config_path = config_path};

    wv_err_clear(&err);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            key_file = optarg;
            break;
        case 'p':
            pub_file = optarg;
            break;
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &only, &err) < 0)
                return wv_cli_fail(&err);
            break;
        case 'c':
            cli.config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("rekey", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (wv_cli_no_more_args("rekey", argc, argv, &err) != 0)
        return wv_cli_fail(&err);
    if (!key_file == !pub_file) {
        wv_err_set(&err, WV_EUSAGE,
                   key_file ? "rekey: --new-key-file and --new-public-key-file exclude each other"
                            : "rekey: the new key is missing");
        wv_err_hint(&err, "give --new-key-file FILE (symmetric) or --new-public-key-file FILE "
                          "(public key)");
        return wv_cli_fail(&err);
    }
    if ((rc = wv_cli_load_config(&cli, &cfg, &err)) != 0)
        return wv_cli_fail(&err);
    if (only && wv_cli_repo_exists(cfg, "--repo", only, &err) < 0) {
        wv_config_free(cfg);
        return wv_cli_fail(&err);
    }
    /* the new key first: a bad file is refused before any repository is touched */
    if (key_file)
        rc = wv_user_keys_load(key_file, NULL, NULL, &next, &err);
    else
        rc = wv_user_keys_load(NULL, pub_file, cfg->encrypt_private_key_file, &next, &err);
    if (rc != 0) {
        wv_config_free(cfg);
        return wv_cli_fail(&err);
    }
    plan *ps = wv_xcalloc((size_t)cfg->nrepos, sizeof(*ps));
    int n = 0;
    for (int i = 0; i < cfg->nrepos && rc == 0; i++) {
        if (only && cfg->repos[i].index != only)
            continue;
        rc = prepare(cfg, &cfg->repos[i], next, &ps[n], &err);
        n++;
    }
    int pause = test_pause(), done = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = run_plan(&ps[i], next, ps[i].action == ACT_REKEY ? pause : 0, &err);
        if (rc == 0) {
            print_done(&ps[i], next);
            done++;
        }
    }
    if (rc == 0)
        print_next(cfg, ps, n, only, next);
    else if (done)
        wv_log_warn("rekey: %d repositor%s rekeyed before the failure below: run the same command "
                    "again once it is fixed (a rekeyed repository is finished, not rekeyed twice)",
                    done, done == 1 ? "y was" : "ies were");
    fflush(stdout);
    for (int i = 0; i < n; i++)
        plan_free(&ps[i]);
    free(ps);
    wv_user_keys_free(next);
    wv_config_free(cfg);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}
