/*
 * test_config.c - walvault.conf: a table of bad files with the exact one-line message each must
 * give (file:line, key and section), good files with the fields they must produce, loading from
 * real files, the configuration path rules and the secret file check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"

#define POSIX_REPO "[repo1]\ntype = posix\npath = /r\n"

typedef struct bad_case {
    const char *text;
    const char *msg;  /* the exact message */
    const char *hint; /* a substring of the hint, or NULL */
} bad_case;

static const bad_case bad_cases[] = {
    /* required = no, archive_queue_max */
    {"[repo1]\ntype = posix\npath = /r\nrequired = no\n",
     "x.conf: every repository has \"required = no\": at least one repository must be required",
     "remove \"required = no\""},
    {POSIX_REPO "required = maybe\n",
     "x.conf:4: bad value \"maybe\" for key \"required\" in [repo1]: expected yes or no", NULL},
    {"[global]\narchive_queue_max = 8GB\n" POSIX_REPO,
     "x.conf:2: bad value \"8GB\" for key \"archive_queue_max\" in [global]: expected off or a "
     "size such as 8GiB, 512MiB or 64KiB",
     NULL},
    {"[global]\narchive_queue_max = 0\n" POSIX_REPO,
     "x.conf:2: bad value \"0\" for key \"archive_queue_max\" in [global]: expected off or a "
     "size such as 8GiB, 512MiB or 64KiB",
     NULL},
    {"[global]\nspool_path = spool\n" POSIX_REPO,
     "x.conf:2: bad value \"spool\" for key \"spool_path\" in [global]: expected an absolute "
     "path",
     NULL},
    /* [global] */
    {"[global]\ncompres = lz4\n" POSIX_REPO, "x.conf:2: unknown key \"compres\" in [global]",
     "compress, compress_level"},
    {"[global]\ncompress = zstd\n" POSIX_REPO,
     "x.conf:2: bad value \"zstd\" for key \"compress\" in [global]: expected lz4 or none", NULL},
    {"[global]\narchive_async = yes\n" POSIX_REPO,
     "x.conf:2: bad value \"yes\" for key \"archive_async\" in [global]: expected on or off", NULL},
    {"[global]\ncompress = LZ4\n" POSIX_REPO,
     "x.conf:2: bad value \"LZ4\" for key \"compress\" in [global]: expected lz4 or none", NULL},
    {"[global]\ncompress =\n" POSIX_REPO,
     "x.conf:2: bad value \"\" for key \"compress\" in [global]: expected lz4 or none", NULL},
    {"[global]\ncompress = lz4 # fast\n" POSIX_REPO,
     "x.conf:2: bad value \"lz4 # fast\" for key \"compress\" in [global]: expected lz4 or none",
     NULL},
    {"[global]\ncompress_level = 0\n" POSIX_REPO,
     "x.conf:2: bad value \"0\" for key \"compress_level\" in [global]: expected an integer from "
     "1 to 12",
     NULL},
    {"[global]\ncompress_level = 13\n" POSIX_REPO,
     "x.conf:2: bad value \"13\" for key \"compress_level\" in [global]: expected an integer from "
     "1 to 12",
     NULL},
    {"[global]\ncompress_level = -1\n" POSIX_REPO,
     "x.conf:2: bad value \"-1\" for key \"compress_level\" in [global]: expected an integer from "
     "1 to 12",
     NULL},
    {"[global]\ncompress_level = 3x\n" POSIX_REPO,
     "x.conf:2: bad value \"3x\" for key \"compress_level\" in [global]: expected an integer from "
     "1 to 12",
     NULL},
    {"[global]\nprocess_max = 65\n" POSIX_REPO,
     "x.conf:2: bad value \"65\" for key \"process_max\" in [global]: expected an integer from 1 "
     "to 64",
     NULL},
    {"[global]\nprocess_max = 99999999999999999999\n" POSIX_REPO,
     "x.conf:2: bad value \"99999999999999999999\" for key \"process_max\" in [global]: expected "
     "an integer from 1 to 64",
     NULL},
    {"[global]\nlog_level = verbose\n" POSIX_REPO,
     "x.conf:2: bad value \"verbose\" for key \"log_level\" in [global]: expected error, warn, "
     "info or debug",
     NULL},
    {"[global]\nstate_path = var/state\n" POSIX_REPO,
     "x.conf:2: bad value \"var/state\" for key \"state_path\" in [global]: expected an absolute "
     "path",
     NULL},
    {"[global]\nlog_file = wv.log\n" POSIX_REPO,
     "x.conf:2: bad value \"wv.log\" for key \"log_file\" in [global]: expected an absolute "
     "path",
     NULL},
    {"[global]\nencrypt_key_file = repo.key\n" POSIX_REPO,
     "x.conf:2: bad value \"repo.key\" for key \"encrypt_key_file\" in [global]: expected the "
     "absolute path of a key file",
     NULL},
    {"[global]\nencrypt_key_file = /k\nencrypt_public_key_file = /p\n" POSIX_REPO,
     "x.conf:2: encrypt_key_file and encrypt_public_key_file are both set in [global]: a "
     "repository is encrypted with a symmetric key or for a public key, not both",
     "keep encrypt_key_file (symmetric), or the public and private key files"},
    {"[global]\nencrypt_private_key_file = /q\nencrypt_key_file = /k\n" POSIX_REPO,
     "x.conf:3: encrypt_key_file and encrypt_private_key_file are both set in [global]: a "
     "repository is encrypted with a symmetric key or for a public key, not both",
     NULL},
    {"[global]\npg_bindir = bin\n" POSIX_REPO,
     "x.conf:2: bad value \"bin\" for key \"pg_bindir\" in [global]: expected an absolute path",
     NULL},
    {"[global]\narchive_timeout = 0\n" POSIX_REPO,
     "x.conf:2: bad value \"0\" for key \"archive_timeout\" in [global]: expected a number of "
     "seconds from 1 to 86400",
     NULL},
    {"[global]\narchive_timeout = 86401\n" POSIX_REPO,
     "x.conf:2: bad value \"86401\" for key \"archive_timeout\" in [global]: expected a number of "
     "seconds from 1 to 86400",
     NULL},
    {"[global]\narchive_timeout = 60s\n" POSIX_REPO,
     "x.conf:2: bad value \"60s\" for key \"archive_timeout\" in [global]: expected a number of "
     "seconds from 1 to 86400",
     NULL},
    {"[global]\ncompress = lz4\ncompress = none\n" POSIX_REPO,
     "x.conf:3: duplicate key \"compress\" in [global] (first set on line 2)", NULL},
    {"[global]\n[global]\n" POSIX_REPO, "x.conf:2: duplicate section [global] (first on line 1)",
     NULL},
    {"[global]\npath = /r\n" POSIX_REPO, "x.conf:2: unknown key \"path\" in [global]", NULL},

    /* sections */
    {"[foo]\n" POSIX_REPO,
     "x.conf:1: unknown section [foo]: expected [global] or [repo1] .. [repo8]", NULL},
    {"[Global]\n" POSIX_REPO,
     "x.conf:1: unknown section [Global]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[repo0]\n",
     "x.conf:4: unknown section [repo0]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[repo9]\n",
     "x.conf:4: unknown section [repo9]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[repo01]\n",
     "x.conf:4: unknown section [repo01]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[repo10]\n",
     "x.conf:4: unknown section [repo10]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[repo]\n",
     "x.conf:4: unknown section [repo]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[ repo2 ]\n",
     "x.conf:4: unknown section [ repo2 ]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[]\n", "x.conf:4: unknown section []: expected [global] or [repo1] .. [repo8]",
     NULL},
    {"[foo]\n", "x.conf:1: unknown section [foo]: expected [global] or [repo1] .. [repo8]", NULL},
    {POSIX_REPO "[repo1]\n", "x.conf:4: duplicate section [repo1] (first on line 1)", NULL},
    {"[repo1] extra\ntype = posix\npath = /r\n",
     "x.conf:1: unexpected text after section header [repo1]", NULL},
    {"compress = lz4\n" POSIX_REPO,
     "x.conf:1: key \"compress\" is outside any section: put it under [global] or a [repoN] "
     "section",
     NULL},

    /* syntax */
    {"[global]\ncompress\n" POSIX_REPO,
     "x.conf:2: syntax error: expected \"[section]\", \"key = value\" or a comment", NULL},
    {"[repo1\ntype = posix\npath = /r\n",
     "x.conf:1: syntax error: expected \"[section]\", \"key = value\" or a comment", NULL},
    {"[global]\ncompress lz4\n[global2]\n",
     "x.conf:2: syntax error: expected \"[section]\", \"key = value\" or a comment", NULL},
    {"[repo1]\ntype = posix\npath = /r\n  /more\n",
     "x.conf:4: unexpected indented line in [repo1]: a value must fit on one line and a key must "
     "not be indented after another key",
     NULL},
    {"[global]\ncompress = lz4\n\tcompress_level = 2\n" POSIX_REPO,
     "x.conf:3: unexpected indented line in [global]: a value must fit on one line and a key must "
     "not be indented after another key",
     NULL},
    {"[repo1]\ntype = posix\npath = /"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     "x.conf:3: line is too long (at most 198 characters)", NULL},

    /* repositories: type and required keys */
    {"[repo1]\npath = /r\n", "x.conf:1: [repo1] has no \"type\": set type = posix, s3 or ssh",
     "type = posix"},
    {"[repo1]\n", "x.conf:1: [repo1] has no \"type\": set type = posix, s3 or ssh", NULL},
    {"[repo1]\ntype = posix\n",
     "x.conf:1: [repo1] has no \"path\": a posix repository needs an absolute path", NULL},
    {"[global]\n\n[repo1]\ntype = posix\n[repo2]\ntype = posix\npath = /r\n",
     "x.conf:3: [repo1] has no \"path\": a posix repository needs an absolute path", NULL},
    {POSIX_REPO "[repo3]\n\n[repo2]\ntype = posix\npath = /q\n",
     "x.conf:4: [repo3] has no \"type\": set type = posix, s3 or ssh", NULL},
    {POSIX_REPO "\n[repo2]\ntype = ssh\npath = /q\n",
     "x.conf:5: [repo2] has no \"host\": an ssh repository needs the backup server's host name",
     NULL},
    {POSIX_REPO "[repo2]\ntype = ssh\nhost = b\n",
     "x.conf:4: [repo2] has no \"path\": an ssh repository needs an absolute path on the backup "
     "server",
     NULL},
    {"[repo1]\ntype = s3\nregion = r\nbucket = b\n",
     "x.conf:1: [repo1] has no \"endpoint\": an s3 repository needs an http:// or https:// "
     "endpoint URL",
     NULL},
    {"[repo1]\ntype = s3\nendpoint = https://s3\nbucket = b\n",
     "x.conf:1: [repo1] has no \"region\": an s3 repository needs a region (e.g. us-east-1)", NULL},
    {"[repo1]\ntype = s3\nendpoint = https://s3\nregion = r\n",
     "x.conf:1: [repo1] has no \"bucket\": an s3 repository needs a bucket name", NULL},
    {"[repo1]\ntype = nfs\npath = /r\n",
     "x.conf:2: bad value \"nfs\" for key \"type\" in [repo1]: expected posix, s3 or ssh", NULL},
    {"[repo1]\ntype = POSIX\npath = /r\n",
     "x.conf:2: bad value \"POSIX\" for key \"type\" in [repo1]: expected posix, s3 or ssh", NULL},
    {"[repo1]\ntype = posix\npath = /r\ntype = s3\n",
     "x.conf:4: duplicate key \"type\" in [repo1] (first set on line 2)", NULL},
    {"[repo1]\ntype = posix\npath = /r\npath = /q\n",
     "x.conf:4: duplicate key \"path\" in [repo1] (first set on line 3)", NULL},

    /* keys of another repository type */
    {"[repo1]\ntype = posix\npath = /r\nbucket = b\n",
     "x.conf:4: key \"bucket\" is not valid for a repository of type posix in [repo1]", NULL},
    {"[repo1]\npath = /r\nbucket = b\nport = 22\ntype = posix\n",
     "x.conf:3: key \"bucket\" is not valid for a repository of type posix in [repo1]", NULL},
    {"[repo1]\nport = 22\npath = /r\nbucket = b\ntype = posix\n",
     "x.conf:2: key \"port\" is not valid for a repository of type posix in [repo1]", NULL},
    {"[repo1]\ntype = s3\nendpoint = https://s3\nregion = r\nbucket = b\npath = /r\n",
     "x.conf:6: key \"path\" is not valid for a repository of type s3 in [repo1]", NULL},
    {"[repo1]\ntype = ssh\nhost = h\npath = /r\nuri_style = path\n",
     "x.conf:5: key \"uri_style\" is not valid for a repository of type ssh in [repo1]", NULL},
    {"[repo1]\ntype = posix\npath = /r\nfoo = 1\n", "x.conf:4: unknown key \"foo\" in [repo1]",
     "a posix repository accepts type and path"},
    {"[repo1]\nfoo = 1\ntype = posix\n", "x.conf:2: unknown key \"foo\" in [repo1]",
     "repository keys: type;"},
    {"[repo1]\ntype = s3\nsecret_access_key = hunter2\n",
     "x.conf:3: key \"secret_access_key\" is not accepted in [repo1]: secrets are never written in "
     "the configuration file",
     "secret_access_key_file"},

    /* repository values */
    {"[repo1]\ntype = posix\npath = repo\n",
     "x.conf:3: bad value \"repo\" for key \"path\" in [repo1]: expected an absolute path", NULL},
    {"[repo1]\ntype = posix\npath =\n",
     "x.conf:3: bad value \"\" for key \"path\" in [repo1]: expected an absolute path", NULL},
    {"[repo1]\ntype = posix\npath = ~/repo\n",
     "x.conf:3: bad value \"~/repo\" for key \"path\" in [repo1]: expected an absolute path", NULL},
    {"[repo2]\ntype = s3\nendpoint = s3.example.net\n",
     "x.conf:3: bad value \"s3.example.net\" for key \"endpoint\" in [repo2]: expected an http:// "
     "or https:// URL",
     NULL},
    {"[repo2]\ntype = s3\nendpoint = ftp://s3\n",
     "x.conf:3: bad value \"ftp://s3\" for key \"endpoint\" in [repo2]: expected an http:// or "
     "https:// URL",
     NULL},
    {"[repo2]\ntype = s3\nendpoint = https://\n",
     "x.conf:3: bad value \"https://\" for key \"endpoint\" in [repo2]: expected an http:// or "
     "https:// URL",
     NULL},
    {"[repo2]\ntype = s3\nendpoint = https://a b\n",
     "x.conf:3: bad value \"https://a b\" for key \"endpoint\" in [repo2]: expected an http:// or "
     "https:// URL",
     NULL},
    {"[repo2]\ntype = s3\nregion = eu west\n",
     "x.conf:3: bad value \"eu west\" for key \"region\" in [repo2]: expected a region name "
     "without blanks",
     NULL},
    {"[repo2]\ntype = s3\nbucket = a/b\n",
     "x.conf:3: bad value \"a/b\" for key \"bucket\" in [repo2]: expected a bucket name without "
     "blanks or '/'",
     NULL},
    {"[repo2]\ntype = s3\nbucket =\n",
     "x.conf:3: bad value \"\" for key \"bucket\" in [repo2]: expected a bucket name without "
     "blanks or '/'",
     NULL},
    {"[repo2]\ntype = s3\nuri_style = virtual\n",
     "x.conf:3: bad value \"virtual\" for key \"uri_style\" in [repo2]: expected path or host",
     NULL},
    {"[repo2]\ntype = s3\nca_file = ca.pem\n",
     "x.conf:3: bad value \"ca.pem\" for key \"ca_file\" in [repo2]: expected the absolute path of "
     "a file",
     NULL},
    {"[repo2]\ntype = s3\nsecret_access_key_file = /\n",
     "x.conf:3: bad value \"/\" for key \"secret_access_key_file\" in [repo2]: expected the "
     "absolute path of a file",
     NULL},
    {"[repo2]\ntype = s3\naccess_key_id =\n",
     "x.conf:3: bad value \"\" for key \"access_key_id\" in [repo2]: expected a key id without "
     "blanks",
     NULL},
    {"[repo2]\ntype = s3\nprefix = a b\n",
     "x.conf:3: bad value \"a b\" for key \"prefix\" in [repo2]: expected a key prefix without "
     "blanks",
     NULL},
    {"[repo3]\ntype = ssh\nport = 0\n",
     "x.conf:3: bad value \"0\" for key \"port\" in [repo3]: expected a port number from 1 to "
     "65535",
     NULL},
    {"[repo3]\ntype = ssh\nport = 65536\n",
     "x.conf:3: bad value \"65536\" for key \"port\" in [repo3]: expected a port number from 1 to "
     "65535",
     NULL},
    {"[repo3]\ntype = ssh\nport = ssh\n",
     "x.conf:3: bad value \"ssh\" for key \"port\" in [repo3]: expected a port number from 1 to "
     "65535",
     NULL},
    {"[repo3]\ntype = ssh\nhost = -oProxyCommand=sh\n",
     "x.conf:3: bad value \"-oProxyCommand=sh\" for key \"host\" in [repo3]: expected a host name "
     "(put the user name in \"user\")",
     NULL},
    {"[repo3]\ntype = ssh\nhost = me@backup\n",
     "x.conf:3: bad value \"me@backup\" for key \"host\" in [repo3]: expected a host name (put the "
     "user name in \"user\")",
     NULL},
    {"[repo3]\ntype = ssh\nuser = -l\n",
     "x.conf:3: bad value \"-l\" for key \"user\" in [repo3]: expected a user name", NULL},
    {"[repo3]\ntype = ssh\nssh_command =\n",
     "x.conf:3: bad value \"\" for key \"ssh_command\" in [repo3]: expected a command", NULL},
    {"[repo3]\ntype = ssh\nidentity_file = id_rsa\n",
     "x.conf:3: bad value \"id_rsa\" for key \"identity_file\" in [repo3]: expected the absolute "
     "path of a file",
     NULL},

    /* the first error wins */
    {"[global]\ncompress\ncompres = 1\n" POSIX_REPO,
     "x.conf:2: syntax error: expected \"[section]\", \"key = value\" or a comment", NULL},
    {"[global]\ncompres = 1\ncompress\n" POSIX_REPO,
     "x.conf:2: unknown key \"compres\" in [global]", NULL},
    {POSIX_REPO "[repo2]\ntype = posix\npath = rel\n[foo]\n",
     "x.conf:6: bad value \"rel\" for key \"path\" in [repo2]: expected an absolute path", NULL},

    /* no repository */
    {"", "x.conf: no repository configured: add a [repo1] section", "\"type = posix\""},
    {"[global]\ncompress = none\n", "x.conf: no repository configured: add a [repo1] section",
     "\"[repo1]\""},
    {"; only a comment\n", "x.conf: no repository configured: add a [repo1] section", NULL},
};

static void test_bad_configs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *c = &bad_cases[i];
        wv_config *cfg = (wv_config *)(uintptr_t)0x1;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_config_parse_string(c->text, "x.conf", &cfg, &err);
        if (rc != WV_ECONFIG || strcmp(err.msg, c->msg) != 0 ||
            (c->hint && !strstr(err.hint, c->hint)))
            fail_msg("case %zu:\n%s\nrc %d\n got:  %s\n want: %s\n hint: %s", i, c->text, rc,
                     err.msg, c->msg, err.hint);
        assert_int_equal(err.code, WV_ECONFIG);
        assert_ptr_equal(cfg, (wv_config *)(uintptr_t)0x1); /* untouched on failure */
        assert_null(strchr(err.msg, '\n'));
    }
}

static wv_config *parse_ok(const char *text)
{
    wv_config *cfg = NULL;
    wv_err err;
    int rc = wv_config_parse_string(text, "ok.conf", &cfg, &err);
    if (rc != 0)
        fail_msg("unexpected failure: %s (hint: %s)\n%s", err.msg, err.hint, text);
    assert_non_null(cfg);
    return cfg;
}

/* log_file and state_path side by side (each kept, nothing freed twice or leaked, as the
 * sanitizer build checks) */
static void test_log_file(void **state)
{
    (void)state;
    wv_config *cfg = parse_ok("[global]\nlog_file = /var/log/walvault.log\nstate_path = /s2\n"
                              "[repo1]\ntype = posix\npath = /abs/path/to/repo\n");
    assert_string_equal(cfg->log_file, "/var/log/walvault.log");
    assert_string_equal(cfg->state_path, "/s2");
    wv_config_free(cfg);
}

static void test_keeping_up_keys(void **state)
{
    (void)state;
    wv_config *cfg = parse_ok(POSIX_REPO);
    assert_int_equal(cfg->repos[0].optional, 0);
    assert_int_equal(cfg->archive_queue_max, 0);
    assert_string_equal(cfg->spool_path, WV_CONFIG_DEFAULT_SPOOL_PATH);
    wv_config_free(cfg);
    cfg = parse_ok("[global]\narchive_queue_max = 8GiB\nspool_path = /var/tmp/sp/\n" POSIX_REPO
                   "required = yes\n[repo2]\ntype = posix\npath = /s\nrequired = no\n");
    assert_int_equal(cfg->repos[0].optional, 0);
    assert_int_equal(cfg->repos[1].optional, 1);
    assert_true(cfg->archive_queue_max == UINT64_C(8) << 30);
    assert_string_equal(cfg->spool_path, "/var/tmp/sp");
    wv_config_free(cfg);
    cfg = parse_ok("[global]\narchive_queue_max = off\n" POSIX_REPO);
    assert_int_equal(cfg->archive_queue_max, 0);
    wv_config_free(cfg);

    static const struct {
        const char *text;
        uint64_t v;
    } sizes[] = {{"4096", 4096},
                 {"4096B", 4096},
                 {"64KiB", 65536},
                 {"512MiB", 512 << 20},
                 {"1TiB", UINT64_C(1) << 40},
                 {"", 0},
                 {"1.5GiB", 0},
                 {"-1GiB", 0},
                 {"1 GiB", 0},
                 {"0KiB", 0},
                 {"99999999999999999999", 0},
                 {"20000000TiB", 0}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t v = 0;
        int rc = wv_config_size_parse(sizes[i].text, &v);
        if (sizes[i].v) {
            assert_int_equal(rc, 0);
            assert_true(v == sizes[i].v);
        } else
            assert_int_equal(rc, WV_ECONFIG);
    }
}

static void test_encrypt_keys(void **state)
{
    (void)state;
    /* parsed, and handed to every repository (repo/keys.h opens the repository with them) */
    static const char *const texts[] = {
        "[global]\nencrypt_key_file = /etc/walvault/repo.key\n" POSIX_REPO,
        "[global]\nlog_level = info\nencrypt_public_key_file = /etc/walvault/repo.pub\n" POSIX_REPO,
        "[global]\nencrypt_private_key_file = /root/walvault-repo.pem\n" POSIX_REPO,
    };
    static const char *const want[] = {"/etc/walvault/repo.key", "/etc/walvault/repo.pub",
                                       "/root/walvault-repo.pem"};
    for (size_t i = 0; i < 3; i++) {
        wv_config *cfg = parse_ok(texts[i]);
        const wv_repo_config *r = &cfg->repos[0];
        const char *got = i == 0   ? r->encrypt_key_file
                          : i == 1 ? r->encrypt_public_key_file
                                   : r->encrypt_private_key_file;
        assert_non_null(got);
        assert_string_equal(got, want[i]);
        assert_int_equal((r->encrypt_key_file != NULL) + (r->encrypt_public_key_file != NULL) +
                             (r->encrypt_private_key_file != NULL),
                         1);
        wv_config_free(cfg);
    }
}

static void test_minimal_and_defaults(void **state)
{
    (void)state;
    wv_config *cfg = parse_ok("[repo1]\ntype = posix\npath = /abs/path/to/repo\n");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    assert_string_equal(cfg->file, "ok.conf");
    assert_int_equal(cfg->compress, WV_COMPRESS_LZ4);
    assert_int_equal(cfg->compress_level, 1);
    assert_int_equal(cfg->process_max, ncpu < 1 ? 1 : ncpu > 8 ? 8 : ncpu);
    assert_int_equal(cfg->log_level, WV_LOG_INFO);
    assert_int_equal(cfg->archive_timeout, 60);
    assert_null(cfg->state_path);
    assert_null(cfg->log_file);
    assert_null(cfg->drill_path);
    assert_null(cfg->pg_bindir);
    assert_null(cfg->encrypt_key_file);
    assert_null(cfg->encrypt_public_key_file);
    assert_null(cfg->encrypt_private_key_file);
    assert_int_equal(cfg->archive_async, 0);
    assert_int_equal(cfg->nrepos, 1);
    const wv_repo_config *r = &cfg->repos[0];
    assert_int_equal(r->index, 1);
    assert_string_equal(r->name, "repo1");
    assert_int_equal(r->type, WV_REPO_POSIX);
    assert_string_equal(r->path, "/abs/path/to/repo");
    assert_null(r->endpoint);
    assert_null(r->host);
    assert_null(r->ssh_command);
    assert_ptr_equal(wv_config_repo(cfg, 1), r);
    assert_null(wv_config_repo(cfg, 2));
    wv_config_free(cfg);
}

static void test_global_values(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        wv_compress compress;
        int level, process_max, timeout;
        wv_log_level log;
    } cases[] = {
        {"compress = none", WV_COMPRESS_NONE, 1, -1, 60, WV_LOG_INFO},
        {"compress = lz4", WV_COMPRESS_LZ4, 1, -1, 60, WV_LOG_INFO},
        {"compress_level = 12", WV_COMPRESS_LZ4, 12, -1, 60, WV_LOG_INFO},
        {"compress_level=1", WV_COMPRESS_LZ4, 1, -1, 60, WV_LOG_INFO},
        {"process_max = 64", WV_COMPRESS_LZ4, 1, 64, 60, WV_LOG_INFO},
        {"process_max = 1", WV_COMPRESS_LZ4, 1, 1, 60, WV_LOG_INFO},
        {"archive_timeout = 86400", WV_COMPRESS_LZ4, 1, -1, 86400, WV_LOG_INFO},
        {"archive_timeout = 1", WV_COMPRESS_LZ4, 1, -1, 1, WV_LOG_INFO},
        {"log_level = error", WV_COMPRESS_LZ4, 1, -1, 60, WV_LOG_ERROR},
        {"log_level = warn", WV_COMPRESS_LZ4, 1, -1, 60, WV_LOG_WARN},
        {"log_level = debug", WV_COMPRESS_LZ4, 1, -1, 60, WV_LOG_DEBUG},
        {"compress = none ; inline comment", WV_COMPRESS_NONE, 1, -1, 60, WV_LOG_INFO},
        {"compress: none", WV_COMPRESS_NONE, 1, -1, 60, WV_LOG_INFO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "[global]\n%s\n" POSIX_REPO, cases[i].line);
        wv_config *cfg = parse_ok(text);
        assert_int_equal(cfg->compress, cases[i].compress);
        assert_int_equal(cfg->compress_level, cases[i].level);
        if (cases[i].process_max > 0)
            assert_int_equal(cfg->process_max, cases[i].process_max);
        assert_int_equal(cfg->archive_timeout, cases[i].timeout);
        assert_int_equal(cfg->log_level, cases[i].log);
        wv_config_free(cfg);
    }
}

static void test_s3_and_ssh(void **state)
{
    (void)state;
    wv_config *cfg = parse_ok("[repo2]\n"
                              "endpoint = http://127.0.0.1:9000//\n"
                              "region = us-east-1\n"
                              "bucket = walvault\n"
                              "type = s3\n"
                              "[repo1]\n"
                              "type = ssh\n"
                              "host = backup\n"
                              "path = /srv/wal/\n");
    assert_int_equal(cfg->nrepos, 2);
    const wv_repo_config *ssh = &cfg->repos[0], *s3 = &cfg->repos[1];
    assert_int_equal(ssh->index, 1);
    assert_int_equal(ssh->type, WV_REPO_SSH);
    assert_string_equal(ssh->host, "backup");
    assert_string_equal(ssh->path, "/srv/wal");
    assert_null(ssh->user);
    assert_int_equal(ssh->port, 0);
    assert_string_equal(ssh->ssh_command, "ssh");
    assert_string_equal(ssh->remote_command, "walvault-remote");
    assert_null(ssh->identity_file);
    assert_null(ssh->known_hosts);
    assert_int_equal(s3->index, 2);
    assert_string_equal(s3->name, "repo2");
    assert_int_equal(s3->type, WV_REPO_S3);
    assert_string_equal(s3->endpoint, "http://127.0.0.1:9000");
    assert_string_equal(s3->region, "us-east-1");
    assert_string_equal(s3->bucket, "walvault");
    assert_string_equal(s3->prefix, "");
    assert_int_equal(s3->uri_style_host, 0);
    assert_null(s3->ca_file);
    assert_null(s3->access_key_id);
    assert_null(s3->secret_access_key_file);
    assert_null(s3->path);
    wv_config_free(cfg);

    static const struct {
        const char *value, *want;
    } prefixes[] = {
        {"a", "a"}, {"/a/b/", "a/b"}, {"///", ""}, {"", ""}, {"a/b", "a/b"}, {"/x", "x"},
    };
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "[repo1]\ntype = s3\nendpoint = https://s3\nregion = r\nbucket = b\n"
                 "prefix = %s\nuri_style = host\n",
                 prefixes[i].value);
        cfg = parse_ok(text);
        assert_string_equal(cfg->repos[0].prefix, prefixes[i].want);
        assert_int_equal(cfg->repos[0].uri_style_host, 1);
        wv_config_free(cfg);
    }
}

static void test_sorted_gaps_and_syntax(void **state)
{
    (void)state;
    /* BOM, CRLF, comments, blank lines, an indented first key, repositories out of order */
    wv_config *cfg = parse_ok("\xEF\xBB\xBF; comment\r\n"
                              "# another\r\n"
                              "\r\n"
                              "[repo8]\r\n"
                              "  type = posix\r\n"
                              "path = /\r\n"
                              "[repo3]  ; the third\r\n"
                              "type=posix\r\n"
                              "path=/three\r\n"
                              "[repo1]\r\n"
                              "type = posix\r\n"
                              "; a comment between keys\r\n"
                              "\r\n"
                              "path = /one\r\n");
    assert_int_equal(cfg->nrepos, 3);
    assert_int_equal(cfg->repos[0].index, 1);
    assert_int_equal(cfg->repos[1].index, 3);
    assert_int_equal(cfg->repos[2].index, 8);
    assert_string_equal(cfg->repos[0].path, "/one");
    assert_string_equal(cfg->repos[1].path, "/three");
    assert_string_equal(cfg->repos[1].name, "repo3");
    assert_string_equal(cfg->repos[2].path, "/");
    assert_string_equal(wv_config_repo(cfg, 3)->path, "/three");
    assert_string_equal(wv_config_repo(cfg, 8)->name, "repo8");
    assert_null(wv_config_repo(cfg, 2));
    assert_null(wv_config_repo(cfg, 0));
    assert_null(wv_config_repo(cfg, 9));
    for (int i = 3; i < WV_MAX_REPOS; i++) {
        assert_int_equal(cfg->repos[i].index, 0);
        assert_null(cfg->repos[i].path);
    }
    wv_config_free(cfg);
}

static char tmpdir[64];

static int setup_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/wv_test_config.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_load_files(void **state)
{
    (void)state;
    wv_config *cfg = NULL;
    wv_err err;

    /* every key of every section type, from a file */
    assert_int_equal(wv_config_load(WV_TEST_DATA "/config/full.conf", &cfg, &err), 0);
    assert_string_equal(cfg->file, WV_TEST_DATA "/config/full.conf");
    assert_int_equal(cfg->compress, WV_COMPRESS_NONE);
    assert_int_equal(cfg->compress_level, 9);
    assert_int_equal(cfg->process_max, 4);
    assert_int_equal(cfg->log_level, WV_LOG_DEBUG);
    assert_int_equal(cfg->archive_timeout, 300);
    assert_int_equal(cfg->nrepos, 3);
    const wv_repo_config *r1 = wv_config_repo(cfg, 1), *r2 = wv_config_repo(cfg, 2),
                         *r4 = wv_config_repo(cfg, 4);
    assert_non_null(r1);
    assert_non_null(r2);
    assert_non_null(r4);
    assert_ptr_equal(r4, &cfg->repos[2]);
    assert_string_equal(r1->path, "/var/lib/walvault/repo");
    assert_int_equal(r2->type, WV_REPO_S3);
    assert_string_equal(r2->endpoint, "https://s3.example.net:9000");
    assert_string_equal(r2->region, "eu-central-1");
    assert_string_equal(r2->bucket, "pg-archive");
    assert_string_equal(r2->prefix, "cluster-a/main");
    assert_int_equal(r2->uri_style_host, 1);
    assert_string_equal(r2->ca_file, "/etc/ssl/certs/example-ca.pem");
    assert_string_equal(r2->access_key_id, "AKIAEXAMPLE");
    assert_string_equal(r2->secret_access_key_file, "/etc/walvault/s3.secret");
    assert_int_equal(r4->type, WV_REPO_SSH);
    assert_string_equal(r4->host, "backup.example.net");
    assert_string_equal(r4->user, "walvault");
    assert_int_equal(r4->port, 2222);
    assert_string_equal(r4->path, "/srv/walvault");
    assert_string_equal(r4->ssh_command, "/usr/bin/ssh");
    assert_string_equal(r4->identity_file, "/var/lib/postgresql/.ssh/id_ed25519");
    assert_string_equal(r4->known_hosts, "/etc/walvault/known_hosts");
    assert_string_equal(r4->remote_command, "/usr/local/bin/walvault-remote");
    wv_config_free(cfg);

    /* an error names the real path and line */
    char path[128], want[256];
    snprintf(path, sizeof(path), "%s/walvault.conf", tmpdir);
    write_file(path,
               "# walvault\n\n[global]\ncompress = lz4\n\n\n\n\n\n\n\ncompres = none\n" POSIX_REPO,
               0644);
    cfg = NULL;
    assert_int_equal(wv_config_load(path, &cfg, &err), WV_ECONFIG);
    assert_null(cfg);
    snprintf(want, sizeof(want), "%s:12: unknown key \"compres\" in [global]", path);
    assert_string_equal(err.msg, want);

    /* no final newline */
    write_file(path, "[repo1]\ntype = posix\npath = /nonl", 0644);
    assert_int_equal(wv_config_load(path, &cfg, &err), 0);
    assert_string_equal(cfg->repos[0].path, "/nonl");
    wv_config_free(cfg);
    cfg = NULL;

    /* missing file */
    snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
    assert_int_equal(wv_config_load(path, &cfg, &err), WV_ECONFIG);
    snprintf(want, sizeof(want),
             "could not open configuration file \"%s\": No such file or directory", path);
    assert_string_equal(err.msg, want);
    assert_string_equal(err.hint, "pass -c FILE or set WALVAULT_CONFIG");
    assert_null(cfg);

    /* a directory */
    assert_int_equal(wv_config_load(tmpdir, &cfg, &err), WV_ECONFIG);
    snprintf(want, sizeof(want), "configuration file \"%s\" is not a regular file", tmpdir);
    assert_string_equal(err.msg, want);
    assert_null(cfg);
}

static void test_config_path(void **state)
{
    (void)state;
    unsetenv("WALVAULT_CONFIG");
    assert_string_equal(wv_config_path(NULL), "/etc/walvault/walvault.conf");
    assert_string_equal(wv_config_path("/a.conf"), "/a.conf");
    setenv("WALVAULT_CONFIG", "/env.conf", 1);
    assert_string_equal(wv_config_path(NULL), "/env.conf");
    assert_string_equal(wv_config_path("/a.conf"), "/a.conf");
    setenv("WALVAULT_CONFIG", "", 1);
    assert_string_equal(wv_config_path(NULL), "/etc/walvault/walvault.conf");
    unsetenv("WALVAULT_CONFIG");
}

static void test_secret_file(void **state)
{
    (void)state;
    static const struct {
        const char *content;
        mode_t mode;
        const char *want;     /* the secret, or NULL when refused */
        const char *msg_tail; /* the message after "secret file \"PATH\" " */
    } cases[] = {
        {"s3cr3t-value\n", 0600, "s3cr3t-value", NULL},
        {"s3cr3t-value", 0400, "s3cr3t-value", NULL},
        {"s3cr3t-value\r\n", 0600, "s3cr3t-value", NULL},
        {"s3cr3t-value\n\n", 0600, "s3cr3t-value", NULL},
        {" spaced secret ", 0600, " spaced secret ", NULL},
        {"s3cr3t-value\n", 0640, NULL, "is readable by others: chmod 600 it"},
        {"s3cr3t-value\n", 0604, NULL, "is readable by others: chmod 600 it"},
        {"s3cr3t-value\n", 0644, NULL, "is readable by others: chmod 600 it"},
        {"s3cr3t-value\n", 0620, NULL, "is writable by others: chmod 600 it"},
        {"s3cr3t-value\n", 0602, NULL, "is writable by others: chmod 600 it"},
        {"", 0600, NULL, "is empty"},
        {"\n", 0600, NULL, "is empty"},
        {"s3cr3t-value\nsecond\n", 0600, NULL, "holds more than one line"},
    };
    char path[128], want[256];
    snprintf(path, sizeof(path), "%s/secret", tmpdir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = (char *)(uintptr_t)0x1;
        wv_err err;
        wv_err_clear(&err);
        unlink(path);
        write_file(path, cases[i].content, cases[i].mode);
        int rc = wv_config_read_secret_file(path, &out, &err);
        if (cases[i].want) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, err.msg);
            assert_string_equal(out, cases[i].want);
            free(out);
        } else {
            assert_int_equal(rc, WV_ECONFIG);
            assert_ptr_equal(out, (char *)(uintptr_t)0x1);
            snprintf(want, sizeof(want), "secret file \"%s\" %s", path, cases[i].msg_tail);
            assert_string_equal(err.msg, want);
            assert_null(strstr(err.msg, "s3cr3t"));
            assert_null(strstr(err.hint, "s3cr3t"));
        }
    }

    /* too large */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++)
        fputc('x', f);
    fclose(f);
    chmod(path, 0600);
    char *out = NULL;
    wv_err err;
    assert_int_equal(wv_config_read_secret_file(path, &out, &err), WV_ECONFIG);
    snprintf(want, sizeof(want), "secret file \"%s\" is larger than 4096 bytes", path);
    assert_string_equal(err.msg, want);

    /* missing, and not a regular file */
    unlink(path);
    assert_int_equal(wv_config_read_secret_file(path, &out, &err), WV_ECONFIG);
    snprintf(want, sizeof(want), "could not open secret file \"%s\": No such file or directory",
             path);
    assert_string_equal(err.msg, want);
    assert_int_equal(wv_config_read_secret_file(tmpdir, &out, &err), WV_ECONFIG);
    snprintf(want, sizeof(want), "secret file \"%s\" is not a regular file", tmpdir);
    assert_string_equal(err.msg, want);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_minimal_and_defaults),
        cmocka_unit_test(test_global_values),
        cmocka_unit_test(test_s3_and_ssh),
        cmocka_unit_test(test_sorted_gaps_and_syntax),
        cmocka_unit_test(test_load_files),
        cmocka_unit_test(test_config_path),
        cmocka_unit_test(test_keeping_up_keys),
        cmocka_unit_test(test_encrypt_keys),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_log_file),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
