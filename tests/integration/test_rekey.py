"""basebackup rekey against real PostgreSQL 15 clusters archiving into encrypted posix repositories.

Two clusters per module (1 MiB segments), each archiving with wal-push into its own encrypted
repository and backed up with basebackup, with a batch of rows committed and archived before any
rekey; a copy of each repository is kept in that state ("pristine") for the crash and refusal tests.

- Symmetric: rekey to a new key file; the old key is refused ("wrong encryption key for this
  repository"); wal-push goes on with the new key; restore --to with the new key gives exactly the
  rows committed before the target (batches before and after the rekey), with the old key nothing.
- Public key: rekey to a new public key; the old public key writes nothing more; new WAL objects
  carry the new key id in their header, older ones the old; restore --to with a key ring holding
  both private keys gives the exact rows; with only the new private key (objects written before the
  rekey need the old one) or only the old one (objects written after need the new one) it fails,
  naming the key id that is missing.
- Crash safety: rekey stopped at each test point (WALVAULT_TEST_REKEY_PAUSE: 1 the new generation
  written, 2 verified, 3 removal of the older ones begun) and killed with SIGKILL; the repository
  then opens with the old key and the new one (points 1, 2) or only the new one (3), and the same
  command run again completes the rekey.
- Several repositories: every one is checked before anything is written (a plain one among them:
  nothing rekeyed); --repo N rekeys one; run again without it, the one already rekeyed is only
  finished (its configuration's key no longer opens it) and the others rekeyed; a passphrase as
  the new key.
- Refusals, each in one line with nothing changed: a plain repository, the option of the other
  mode (both ways), a new key file readable by others, a public-key rekey from a host without the
  current public key.
"""

import base64
import hashlib
import os
import re
import select
import signal
import struct
import shutil
import time
import types

import pytest

from test_restore_pitr import (Restorer, assert_nothing_written, batches_in, commit_batch,
                               finish_module, iso, module_dir, primary_conf, take_backup)
from utils import Postgres, Repo, chown_pg, log_lines, popen, run

pytestmark = pytest.mark.xdist_group("rekey")

ROWS = 10


# --- keys and configurations ----------------------------------------------------------------------

def write_secret(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    chown_pg(path)
    os.chmod(path, mode)
    return path


def sym_key(path):
    return write_secret(path, os.urandom(32).hex() + "\n")


def x25519_pair(d, name):
    """NAME.pem and NAME.pub made by openssl as postgres (0600: every key file must be)."""
    pem, pub = os.path.join(d, name + ".pem"), os.path.join(d, name + ".pub")
    run(["sh", "-c", "umask 077 && openssl genpkey -algorithm X25519 -out %s && "
         "openssl pkey -in %s -pubout -out %s" % (pem, pem, pub)])
    return pem, pub


def key_id(pub_path):
    """walvault's key id of an X25519 public key (repo/keys.h): the first 8 bytes, big-endian, of
    SHA-256("walvault x25519 key id v1" || the 32-byte key), as 16 hex digits."""
    with open(pub_path) as f:
        der = base64.b64decode("".join(ln for ln in f.read().splitlines()
                                       if ln and not ln.startswith("-----")))
    assert len(der) == 44, der  # SubjectPublicKeyInfo of X25519: 12 bytes of prefix, the key
    md = hashlib.sha256(b"walvault x25519 key id v1" + der[12:]).digest()
    return "%016x" % int.from_bytes(md[:8], "big")


def ring(d, name, *pems):
    """A key ring file: several PEM private keys in one file."""
    text = "".join(open(p).read() for p in pems)
    return write_secret(os.path.join(d, name), text)


class Conf:
    """A configuration file for a repository with some [global] encryption keys (Restorer and
    the helpers below take anything with .config)."""

    def __init__(self, path, repo_path, **keys):
        self.config = path
        self.path = repo_path
        self.write(**keys)

    def write(self, **keys):
        g = "".join("%s = %s\n" % (k, v) for k, v in keys.items())
        text = ("[global]\n" + g + "\n" if g else "") + "[repo1]\ntype = posix\npath = %s\n" % (
            self.path)
        with open(self.config, "w") as f:
            f.write(text)
        chown_pg(self.config)
        return self


def basebackup(wv, conf, *args, env=None):
    return run(wv.cmd("basebackup", *args, config=conf.config), check=False, env=env, timeout=600)


def ok(res):
    assert res.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (
        res.returncode, res.stdout, res.stderr)
    return res


def error_line(res):
    """The error line of a failed run (without timestamp and program prefix)."""
    lines = [ln for ln in log_lines(res.stderr) if ln.startswith("basebackup: error: ")]
    assert lines, res.stderr
    return lines[0][len("basebackup: error: "):]


def generations(repo_path):
    d = os.path.join(repo_path, "keys")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def copy_repo(src_path, dst_path):
    """A copy of a repository directory (objects, key record and info), owned by postgres."""
    run(["cp", "-a", src_path, dst_path])
    return dst_path


def opens(wv, conf):
    """`basebackup list` through conf: it opens the key record and reads every manifest."""
    return basebackup(wv, conf, "list")


def object_key_id(path):
    """The key id in a stored object's header (objfmt.h: u16 version at 8, u64 key id at 16)."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89WVOBJ\r\n", head
    version, = struct.unpack_from("<H", head, 8)
    assert version == 3, "not an encrypted object: version %d" % version
    return "%016x" % struct.unpack_from("<Q", head, 16)[0]


# --- the module's clusters ------------------------------------------------------------------------

class Site:
    pass


def start_site(wv, basetemp, name, archive_conf_keys, admin_conf_keys, keydir_setup):
    """A cluster archiving into an encrypted repository through `archive` (a Conf), which the
    backup uses too, batch 1 committed and archived, and a pristine copy of the repository;
    `admin` is the configuration of the host that restores."""
    s = Site()
    s.dir = module_dir(basetemp, name)
    s.keys = os.path.join(s.dir, "keys")
    os.makedirs(s.keys)
    chown_pg(s.keys)
    os.chmod(s.keys, 0o700)
    keydir_setup(s)
    s.repo_path = os.path.join(s.dir, "repo")
    os.makedirs(s.repo_path)
    chown_pg(s.repo_path)
    s.archive = Conf(os.path.join(s.dir, "archive.conf"), s.repo_path, **archive_conf_keys(s))
    s.admin = Conf(os.path.join(s.dir, "admin.conf"), s.repo_path, **admin_conf_keys(s))
    s.restorer = Restorer(wv, s.admin, s.dir)
    s.pg = Postgres(s.dir, "primary").initdb(wal_segsize=1)
    primary_conf(s.pg, wv, s.archive)
    s.pg.start()
    s.pg.sql("create table t (batch int, id int)")
    s.backup = take_backup(wv, s.archive, s.pg)  # where WAL is archived (public key only)
    # the recoverable window starts a second after the backup's STOP TIME (whole seconds)
    time.sleep(1.1)
    s.b1 = commit_batch(s.pg, 1, ROWS)
    s.pg.switch_wal_and_wait_archived()
    s.pristine = copy_repo(s.repo_path, os.path.join(s.dir, "pristine"))
    assert generations(s.pristine) == ["00000001"], generations(s.pristine)
    s.n = 0
    return s


def fresh_copy(s, tag):
    """A new copy of the site's pristine repository."""
    s.n += 1
    return copy_repo(s.pristine, os.path.join(s.dir, "copy-%s-%d" % (tag, s.n)))


@pytest.fixture(scope="module")
def sym(wv, basetemp):
    def setup(s):
        s.old = sym_key(os.path.join(s.keys, "old.key"))
        s.new = sym_key(os.path.join(s.keys, "new.key"))

    s = None
    good = False
    try:
        s = start_site(wv, basetemp, "rekey-sym", lambda s: {"encrypt_key_file": s.old},
                       lambda s: {"encrypt_key_file": s.old}, setup)
        good = True
        yield s
    finally:
        if s is not None:
            finish_module(s.restorer, s.pg, s.dir, good)


@pytest.fixture(scope="module")
def pk(wv, basetemp):
    def setup(s):
        s.a_pem, s.a_pub = x25519_pair(s.keys, "a")
        s.b_pem, s.b_pub = x25519_pair(s.keys, "b")
        s.c_pem, s.c_pub = x25519_pair(s.keys, "c")
        s.ring_ab = ring(s.keys, "ring-ab.pem", s.a_pem, s.b_pem)
        s.id_a, s.id_b, s.id_c = key_id(s.a_pub), key_id(s.b_pub), key_id(s.c_pub)

    s = None
    good = False
    try:
        # the database host (archiving, backup) holds only the public key, the restore host the
        # private one
        s = start_site(wv, basetemp, "rekey-pk", lambda s: {"encrypt_public_key_file": s.a_pub},
                       lambda s: {"encrypt_private_key_file": s.a_pem}, setup)
        good = True
        yield s
    finally:
        if s is not None:
            finish_module(s.restorer, s.pg, s.dir, good)


def after_rekey_batches(s):
    """Batches 2 and 3, a second apart, archived; the --to target between them."""
    b2 = commit_batch(s.pg, 2, ROWS)
    time.sleep(1.2)
    b3 = commit_batch(s.pg, 3, ROWS)
    s.pg.switch_wal_and_wait_archived()
    return b2, b3, iso((b2["commit"] + b3["commit"]) / 2)


# --- symmetric ------------------------------------------------------------------------------------

def test_symmetric_rekey_then_restore(sym, wv):
    s = sym
    res = ok(basebackup(wv, s.archive, "rekey", "--new-key-file", s.new))
    assert "repo1: rekeyed: the new key file opens it, the old key no longer does" in res.stdout
    assert ("point encrypt_key_file at the new file now: the old key no longer opens repo1"
            in res.stdout), res.stdout
    assert generations(s.repo_path) == ["00000002"]
    # the old key is refused
    res = opens(wv, s.admin)
    assert res.returncode == 15, res.stderr
    assert error_line(res) == "repo1: wrong encryption key for this repository", res.stderr
    # the new key: archiving goes on, and restore gives exactly the rows before the target
    s.archive.write(encrypt_key_file=s.new)
    s.admin.write(encrypt_key_file=s.new)
    b2, b3, target = after_rekey_batches(s)
    assert b3["commit"] > b2["commit"]
    pg = s.restorer.restore_and_start("sym-new-key", "--to", target)
    assert batches_in(pg) == {1: ROWS, 2: ROWS}
    # with the old key, nothing is restored
    old = Conf(os.path.join(s.dir, "old.conf"), s.repo_path, encrypt_key_file=s.old)
    dest = os.path.join(s.dir, "sym-old-key")
    res = basebackup(wv, old, "restore", "--pgdata", dest, "--to", target)
    assert res.returncode == 15, res.stdout + res.stderr
    assert error_line(res) == "repo1: wrong encryption key for this repository"
    assert_nothing_written(dest)


# --- public key -----------------------------------------------------------------------------------

def test_public_key_rekey_then_restore(pk, wv):
    s = pk
    # run where WAL is archived: only the public key there
    res = ok(basebackup(wv, s.archive, "rekey", "--new-public-key-file", s.b_pub))
    assert ("repo1: rekeyed: new objects are written for key id %s (before: key id %s)"
            % (s.id_b, s.id_a)) in res.stdout, res.stdout
    assert ("new objects are written for key id %s; keep the old private key in "
            "encrypt_private_key_file: objects written before need it" % s.id_b) in res.stdout
    assert generations(s.repo_path) == ["00000002"]
    # the old public key writes nothing more
    res = opens(wv, s.archive)
    assert res.returncode == 15, res.stderr
    assert "an old key of this repository (it was rekeyed since)" in error_line(res), res.stderr
    s.archive.write(encrypt_public_key_file=s.b_pub)
    b2, b3, target = after_rekey_batches(s)
    # WAL archived before the rekey is for key a, after it for key b
    repo = Repo.__new__(Repo)
    repo.path = s.repo_path
    assert object_key_id(repo.object_path(s.b1["segment"])) == s.id_a
    assert object_key_id(repo.object_path(b2["segment"])) == s.id_b
    assert object_key_id(repo.object_path(b3["segment"])) == s.id_b

    # a ring of both private keys restores exactly the rows before the target
    both = Conf(os.path.join(s.dir, "ring-ab.conf"), s.repo_path,
                encrypt_private_key_file=s.ring_ab)
    r = Restorer(wv, both, s.dir)
    try:
        pg = r.restore_and_start("pk-ring", "--to", target)
        assert batches_in(pg) == {1: ROWS, 2: ROWS}
    finally:
        r.cleanup()

    # only the new private key: the backup and the WAL before the rekey need the old one
    only_b = Conf(os.path.join(s.dir, "only-b.conf"), s.repo_path, encrypt_private_key_file=s.b_pem)
    dest = os.path.join(s.dir, "pk-only-b")
    res = basebackup(wv, only_b, "restore", "--pgdata", dest, "--to", target)
    assert res.returncode == 19, res.stdout + res.stderr
    assert ("encrypted for key id %s, which encrypt_private_key_file does not hold" % s.id_a
            in error_line(res)), res.stderr
    assert_nothing_written(dest)
    # only the old private key: the WAL after the rekey needs the new one
    only_a = Conf(os.path.join(s.dir, "only-a.conf"), s.repo_path, encrypt_private_key_file=s.a_pem)
    dest = os.path.join(s.dir, "pk-only-a")
    res = basebackup(wv, only_a, "restore", "--pgdata", dest, "--to", target)
    assert res.returncode == 19, res.stdout + res.stderr
    assert ("encrypted for key id %s, which encrypt_private_key_file does not hold" % s.id_b
            in error_line(res)), res.stderr
    assert_nothing_written(dest)


# --- crash safety ---------------------------------------------------------------------------------

def rekey_killed_at(wv, conf, point, *args):
    """Run rekey with WALVAULT_TEST_REKEY_PAUSE=point, wait until it says it paused there, kill it
    with SIGKILL."""
    p = popen(wv.cmd("basebackup", "rekey", *args, config=conf.config),
              env={"WALVAULT_TEST_REKEY_PAUSE": str(point)})
    want = "paused at point %d" % point
    got = b""
    deadline = time.monotonic() + 120
    try:
        while want.encode() not in got:
            left = deadline - time.monotonic()
            assert left > 0, "rekey did not pause at point %d: %r" % (point, got)
            r, _, _ = select.select([p.stderr], [], [], left)
            if r:
                chunk = os.read(p.stderr.fileno(), 4096)
                if not chunk:
                    p.wait(timeout=30)
                    raise AssertionError(
                        "rekey exited %s before point %d:\nstdout:\n%s\nstderr:\n%s"
                        % (p.returncode, point, p.stdout.read(), got.decode()))
                got += chunk
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL, (p.returncode, got)
    return got.decode()


@pytest.mark.parametrize("point", [1, 2, 3])
def test_symmetric_rekey_killed(sym, wv, point):
    s = sym
    path = fresh_copy(s, "sym-kill")
    old = Conf(path + ".old.conf", path, encrypt_key_file=s.old)
    new = Conf(path + ".new.conf", path, encrypt_key_file=s.new)
    rekey_killed_at(wv, old, point, "--new-key-file", s.new)
    res = opens(wv, new)
    ok(res)
    assert s.backup in res.stdout
    res = opens(wv, old)
    if point < 3:
        # the new generation is written, the old one not removed yet: both keys open
        assert generations(path) == ["00000001", "00000002"]
        ok(res)
        assert s.backup in res.stdout
    else:
        assert generations(path) == ["00000002"]
        assert res.returncode == 15, res.stderr
        assert error_line(res) == "repo1: wrong encryption key for this repository"
    # the same command again completes it, though the old key may no longer open the repository
    res = ok(basebackup(wv, old, "rekey", "--new-key-file", s.new))
    if point < 3:
        assert ("repo1: finished an interrupted rekey: the new key file opens it, the old key no "
                "longer does (1 older key generation removed)") in res.stdout, res.stdout
    else:
        assert "repo1: already rekeyed: the new key file opens it" in res.stdout, res.stdout
    assert "point encrypt_key_file at the new file now" in res.stdout
    assert generations(path) == ["00000002"]
    res = opens(wv, old)
    assert res.returncode == 15 and "wrong encryption key" in error_line(res), res.stderr
    # every object still decodes with the new key
    ok(basebackup(wv, new, "verify"))


@pytest.mark.parametrize("point", [1, 2, 3])
def test_public_key_rekey_killed(pk, wv, point):
    s = pk
    path = fresh_copy(s, "pk-kill")
    # the writer's key and a ring that reads every object, before and after
    old = Conf(path + ".old.conf", path, encrypt_public_key_file=s.a_pub,
               encrypt_private_key_file=s.ring_ab)
    new = Conf(path + ".new.conf", path, encrypt_public_key_file=s.b_pub,
               encrypt_private_key_file=s.ring_ab)
    rekey_killed_at(wv, old, point, "--new-public-key-file", s.b_pub)
    res = ok(opens(wv, new))
    assert s.backup in res.stdout
    res = opens(wv, old)
    if point < 3:
        assert generations(path) == ["00000001", "00000002"]
        ok(res)  # the old public key still opens the old generation
    else:
        assert generations(path) == ["00000002"]
        assert res.returncode == 15, res.stderr
        assert "an old key of this repository" in error_line(res), res.stderr
    res = ok(basebackup(wv, old, "rekey", "--new-public-key-file", s.b_pub))
    if point < 3:
        assert ("repo1: finished an interrupted rekey: new objects are written for key id %s "
                "(1 older key generation removed)" % s.id_b) in res.stdout, res.stdout
    else:
        assert ("repo1: already rekeyed: new objects are written for key id %s" % s.id_b
                in res.stdout), res.stdout
    assert generations(path) == ["00000002"]
    res = opens(wv, old)
    assert res.returncode == 15 and "an old key of this repository" in error_line(res)
    ok(basebackup(wv, new, "verify"))


# --- refusals -------------------------------------------------------------------------------------

def refused(res, code, message):
    assert res.returncode == code, "exit %d\nstdout:\n%s\nstderr:\n%s" % (
        res.returncode, res.stdout, res.stderr)
    assert error_line(res) == message, res.stderr
    assert res.stdout == "", res.stdout


def test_refusals(sym, pk, wv, workdir):
    # a plain repository
    plain = Repo(os.path.join(workdir, "plain"), os.path.join(workdir, "plain.conf"))
    res = run(wv.cmd("basebackup", "rekey", "--new-key-file", sym.new, config=plain.config),
              check=False)
    refused(res, 13, "repo1: the repository is not encrypted: there is no key to rekey")
    assert not os.path.exists(os.path.join(plain.path, "keys"))

    # the option of the other mode, both ways
    path = fresh_copy(sym, "sym-refusals")
    conf = Conf(path + ".conf", path, encrypt_key_file=sym.old)
    res = basebackup(wv, conf, "rekey", "--new-public-key-file", pk.b_pub)
    refused(res, 2, "repo1: the repository is encrypted with a symmetric key: "
                    "--new-public-key-file is for public-key repositories")
    assert generations(path) == ["00000001"]
    pkpath = fresh_copy(pk, "pk-refusals")
    writer = Conf(pkpath + ".conf", pkpath, encrypt_public_key_file=pk.a_pub)
    res = basebackup(wv, writer, "rekey", "--new-key-file", sym.new)
    refused(res, 2, "repo1: the repository is encrypted for a public key: --new-key-file is for "
                    "symmetric repositories")
    assert generations(pkpath) == ["00000001"]

    # a new key file others can read: keyfile's own message, with the chmod to run
    loose = write_secret(os.path.join(workdir, "loose.key"), os.urandom(32).hex() + "\n", 0o644)
    res = basebackup(wv, conf, "rekey", "--new-key-file", loose)
    assert res.returncode == 3, res.stderr
    assert loose in error_line(res), res.stderr
    assert "chmod 600 %s" % loose in res.stderr, res.stderr
    assert generations(path) == ["00000001"]
    ok(opens(wv, conf))

    # public key: a host without the current public key cannot rekey
    ok(basebackup(wv, writer, "rekey", "--new-public-key-file", pk.b_pub))
    only_old_private = Conf(pkpath + ".a.conf", pkpath, encrypt_private_key_file=pk.a_pem)
    res = basebackup(wv, only_old_private, "rekey", "--new-public-key-file", pk.c_pub)
    refused(res, 15, "repo1: this host does not hold the repository's current public key (key id "
                     "%s), which rekey needs" % pk.id_b)
    res = basebackup(wv, writer, "rekey", "--new-public-key-file", pk.c_pub)
    assert res.returncode == 15, res.stderr
    assert "an old key of this repository" in error_line(res), res.stderr
    # a public key used before is no new key
    current = Conf(pkpath + ".b.conf", pkpath, encrypt_public_key_file=pk.b_pub)
    res = basebackup(wv, current, "rekey", "--new-public-key-file", pk.a_pub)
    refused(res, 13, "repo1: the new public key (key id %s) is already one of this repository's"
                     % pk.id_a)
    assert generations(pkpath) == ["00000002"]


# --- several repositories -------------------------------------------------------------------------

def multi_conf(path, key, *repo_paths):
    text = "[global]\nencrypt_key_file = %s\n" % key
    for i, p in enumerate(repo_paths):
        text += "\n[repo%d]\ntype = posix\npath = %s\n" % (i + 1, p)
    with open(path, "w") as f:
        f.write(text)
    chown_pg(path)
    return types.SimpleNamespace(config=path)


def test_several_repositories(sym, wv, workdir):
    s = sym
    r1, r2 = fresh_copy(s, "multi"), fresh_copy(s, "multi")
    # a repository first used without encryption (its walvault.repo, no key record)
    plain = os.path.join(workdir, "plain")
    os.makedirs(plain)
    shutil.copy2(os.path.join(r1, "walvault.repo"), os.path.join(plain, "walvault.repo"))
    run(["chown", "-R", "postgres:", plain], as_postgres=False)
    passphrase = write_secret(os.path.join(workdir, "new.pass"), "correct horse battery staple\n")

    # every repository is checked first: the plain third one refuses, nothing is rekeyed
    three = multi_conf(os.path.join(workdir, "three.conf"), s.old, r1, r2, plain)
    res = basebackup(wv, three, "rekey", "--new-key-file", passphrase)
    assert res.returncode == 15, res.stderr  # a key on a plain repository: a key error
    assert error_line(res).startswith("repo3: the repository is not encrypted"), res.stderr
    assert res.stdout == ""
    assert generations(r1) == generations(r2) == ["00000001"]

    # --repo 1: only repo1
    old = multi_conf(os.path.join(workdir, "old.conf"), s.old, r1, r2)
    res = ok(basebackup(wv, old, "rekey", "--new-key-file", passphrase, "--repo", "1"))
    assert "repo1: rekeyed: the new key file opens it, the old key no longer does" in res.stdout
    assert "repo2" not in res.stdout.split("\n")[0]
    assert "the configuration's other repositories still open with the old key" in res.stdout
    assert generations(r1) == ["00000002"] and generations(r2) == ["00000001"]

    # again without --repo: repo1 (which the old key no longer opens) is finished, repo2 rekeyed
    res = ok(basebackup(wv, old, "rekey", "--new-key-file", passphrase))
    assert "repo1: already rekeyed: the new key file opens it" in res.stdout, res.stdout
    assert "repo2: rekeyed: the new key file opens it, the old key no longer does" in res.stdout
    assert ("point encrypt_key_file at the new file now: the old key no longer opens repo1, repo2"
            in res.stdout), res.stdout
    assert generations(r1) == generations(r2) == ["00000002"]
    new = multi_conf(os.path.join(workdir, "new.conf"), passphrase, r1, r2)
    res = ok(opens(wv, new))
    assert len(re.findall(r"^\s+%s\s" % s.backup, res.stdout, re.M)) == 2, res.stdout
    res = opens(wv, old)
    assert res.returncode == 15 and error_line(res) == (
        "repo1: wrong encryption key for this repository"), res.stderr
