"""The ssh repository: a real sshd on loopback, walvault-remote on the "backup server" side.

Archive and fetch through ssh, the driver conformance check, and the failures: wrong host key,
sshd down, helper missing, keys that try to leave the repository, ssh killed mid-write.
"""

import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile

import pytest

from ssh_server import ROOT, remote_helper, ssh_server  # noqa: F401 - fixtures
from utils import chown_pg, free_port, make_pg_dir, read_bytes, run, wait_until

# Frames of common/storage/remoteproto.h.
HELLO, PUT, DATA, COMMIT, ABORT, GET, STAT, LIST, REMOVE, FLUSH = range(1, 11)
HELLO_OK, OK, ERROR, STAT_OK, ENTRY, END = range(0x81, 0x87)
PROTO = 1
WV_EREFUSED = -13
WV_ENOTFOUND = -1


def frame(t, payload=b""):
    return struct.pack(">IB", len(payload), t) + payload


def s(text):
    b = text.encode()
    return struct.pack(">I", len(b)) + b


class Helper:
    """Speaks frames to walvault-remote over a pipe pair (directly, or through ssh)."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, **_pg_kwargs())

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def recv(self):
        hdr = self.p.stdout.read(5)
        assert len(hdr) == 5, "helper closed the connection: %r" % self.p.stderr.read()
        n, t = struct.unpack(">IB", hdr)
        return t, self.p.stdout.read(n)

    def hello(self):
        self.send(frame(HELLO, struct.pack(">I", PROTO) + s("test")))
        t, _ = self.recv()
        assert t == HELLO_OK

    def close(self):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        return self.p.wait(timeout=30)


def _pg_kwargs():
    import pwd
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": "/"}


def error_of(payload):
    code, = struct.unpack(">i", payload[:4])
    n, = struct.unpack(">I", payload[4:8])
    return code, payload[8:8 + n].decode()


@pytest.fixture
def ssh_repo(ssh_server, remote_helper, workdir):  # noqa: F811
    """An empty repository on the ssh server and a config naming it (compression off, so that
    the bytes on the wire are as large as the files)."""
    path = make_pg_dir(os.path.join(workdir, "ssh-repo"), 0o750)
    conf = os.path.join(workdir, "walvault.conf")

    def write(**over):
        with open(conf, "w") as f:
            f.write("[global]\ncompress = none\n\n" + ssh_server.repo_section(path, remote_helper,
                                                                              **over))
        chown_pg(conf)
        return conf

    write()

    class R:
        pass
    r = R()
    r.path, r.config, r.write = path, conf, write
    return r


def stored_files(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


def object_names(root):
    """Final object names (temporary files start with '.' and hold '.wvtmp-')."""
    return [f for f in stored_files(root) if ".wvtmp-" not in f]


def _storage_check():
    cands = [os.path.join(os.environ.get("WALVAULT_BIN", ""), "wv-storage-check")]
    cands += [os.path.join(ROOT, d, "wv-storage-check") for d in sorted(os.listdir(ROOT))
              if d.startswith("build")]
    found = [c for c in cands if os.access(c, os.X_OK)]
    return max(found, key=os.path.getmtime) if found else None


def test_conformance(ssh_repo, workdir):
    exe = _storage_check()
    if not exe:
        pytest.skip("wv-storage-check is not built")
    local = os.path.join(workdir, "wv-storage-check")
    shutil.copy2(exe, local)
    os.chmod(local, 0o755)
    r = run([local, "-c", ssh_repo.config, "--repo", "1", "--large-mb", "5"], check=False,
            timeout=600)
    assert r.returncode == 0, "conformance failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert "not ok" not in r.stdout
    assert re.search(r"^\d+ passed, 0 failed", r.stdout, re.M), r.stdout
    assert object_names(ssh_repo.path) == [], "the check left objects behind"


def test_push_and_fetch(ssh_repo, wv, wal_samples, workdir):
    segs = wal_samples.a_segments[:3]
    for seg in segs:
        r = wv.push(seg, config=ssh_repo.config, cwd=workdir)
        assert r.returncode == 0, r.stderr
    names = [os.path.basename(p) for p in object_names(ssh_repo.path)]
    for seg in segs:
        assert os.path.basename(seg) in names, "%s not stored on the server: %s" % (seg, names)
    # Pushing the same file again is fine (identical content).
    r = wv.push(segs[0], config=ssh_repo.config, cwd=workdir)
    assert r.returncode == 0, r.stderr

    dest_dir = make_pg_dir(os.path.join(workdir, "fetched"))
    for seg in segs:
        dest = os.path.join(dest_dir, os.path.basename(seg))
        r = wv.fetch(os.path.basename(seg), dest, config=ssh_repo.config, cwd=workdir)
        assert r.returncode == 0, r.stderr
        assert read_bytes(dest) == read_bytes(seg)
    # Not archived: exit 1, the normal end of the archive, without an error line.
    r = wv.fetch("0000000100000099000000FF", os.path.join(dest_dir, "x"), config=ssh_repo.config,
                 cwd=workdir)
    assert r.returncode == 1, r.stderr
    assert "error" not in r.stderr.lower(), r.stderr


def test_multiplexed_connection(ssh_repo, ssh_server, wv, wal_samples, workdir):  # noqa: F811
    """OpenSSH's connection sharing through ssh_command (the setting docs/repositories.md gives):
    the first push opens a master connection that the next pushes and fetches reuse; nothing
    waits on the master, which is stopped with "ssh -O exit"."""
    # a socket path must fit in 108 bytes (with ssh's 17-byte suffix while it is created)
    cm = make_pg_dir(tempfile.mkdtemp(prefix="wvcm", dir="/tmp"), 0o700)
    path = os.path.join(cm, "%C")
    conf = ssh_repo.write(ssh_command="ssh -o ControlMaster=auto -o ControlPath=%s "
                                      "-o ControlPersist=60" % path)
    try:
        segs = wal_samples.a_segments[:4]
        for seg in segs:
            r = run(wv.cmd("wal-push", seg, config=conf), check=False, timeout=60)
            assert r.returncode == 0, r.stderr
        sockets = os.listdir(cm)
        assert len(sockets) == 1, sockets  # one master, shared
        check = run(["ssh", "-o", "ControlPath=%s" % path, "-O", "check", "-p",
                     str(ssh_server.port), "127.0.0.1"], check=False, timeout=30)
        assert check.returncode == 0, check.stderr
        names = [os.path.basename(p) for p in object_names(ssh_repo.path)]
        for seg in segs:
            assert os.path.basename(seg) in names
            dest = os.path.join(workdir, os.path.basename(seg))
            r = run(wv.cmd("wal-fetch", os.path.basename(seg), dest, config=conf), check=False,
                    timeout=60)
            assert r.returncode == 0, r.stderr
            assert read_bytes(dest) == read_bytes(seg)
    finally:
        run(["ssh", "-o", "ControlPath=%s" % path, "-O", "exit", "-p", str(ssh_server.port),
             "127.0.0.1"], check=False, timeout=30)
        shutil.rmtree(cm, ignore_errors=True)


def test_wrong_host_key_is_auth_error(ssh_repo, ssh_server, wv, wal_samples, workdir):  # noqa: F811
    conf = ssh_repo.write(known_hosts=ssh_server.wrong_known_hosts)
    r = wv.push(wal_samples.a_segments[0], config=conf, cwd=workdir)
    assert r.returncode != 0
    assert re.search(r"host key", r.stderr, re.I), r.stderr
    assert "127.0.0.1:%d" % ssh_server.port in r.stderr, r.stderr
    assert stored_files(ssh_repo.path) == [], "something was stored despite the wrong host key"
    # Fetch in archive recovery: an error, never "not found".
    r = wv.fetch(os.path.basename(wal_samples.a_segments[0]), os.path.join(workdir, "x"),
                 config=conf, cwd=workdir)
    assert r.returncode >= 126, r.stderr
    assert not os.path.exists(os.path.join(workdir, "x"))


def test_unknown_client_key_is_auth_error(ssh_repo, ssh_server, wv, wal_samples, workdir):  # noqa: F811
    other = os.path.join(workdir, "other_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True)
    chown_pg(other)
    conf = ssh_repo.write(identity_file=other)
    r = wv.push(wal_samples.a_segments[0], config=conf, cwd=workdir)
    assert r.returncode != 0
    assert re.search(r"authentication", r.stderr), r.stderr
    assert "Permission denied" in r.stderr, r.stderr
    assert stored_files(ssh_repo.path) == []


def test_sshd_down_is_unreachable(ssh_repo, wv, wal_samples, workdir):
    port = free_port()  # nothing listens there
    conf = ssh_repo.write(port=port)
    r = wv.push(wal_samples.a_segments[0], config=conf, cwd=workdir)
    assert r.returncode != 0
    assert re.search(r"could not reach 127\.0\.0\.1:%d" % port, r.stderr), r.stderr
    assert "Connection refused" in r.stderr, r.stderr
    assert stored_files(ssh_repo.path) == []
    dest = os.path.join(workdir, "fetched")
    r = wv.fetch(os.path.basename(wal_samples.a_segments[0]), dest, config=conf, cwd=workdir)
    assert r.returncode >= 126, "unreachable must not look like not found: %d %s" % (
        r.returncode, r.stderr)
    assert not os.path.exists(dest)


def test_sshd_stopped_then_restarted(ssh_repo, ssh_server, wv, wal_samples, workdir):  # noqa: F811
    ssh_server.stop()
    try:
        r = wv.push(wal_samples.a_segments[0], config=ssh_repo.config, cwd=workdir)
        assert r.returncode != 0
        assert "could not reach 127.0.0.1:%d" % ssh_server.port in r.stderr, r.stderr
        assert stored_files(ssh_repo.path) == []
    finally:
        ssh_server.start()
    r = wv.push(wal_samples.a_segments[0], config=ssh_repo.config, cwd=workdir)
    assert r.returncode == 0, r.stderr


def test_helper_missing(ssh_repo, wv, wal_samples, workdir):
    conf = ssh_repo.write(remote_command="/nonexistent/walvault-remote")
    r = wv.push(wal_samples.a_segments[0], config=conf, cwd=workdir)
    assert r.returncode != 0
    assert "install walvault on the backup server" in r.stderr, r.stderr
    assert stored_files(ssh_repo.path) == []


def test_helper_refuses_keys_outside_repository(remote_helper, workdir):  # noqa: F811
    repo = make_pg_dir(os.path.join(workdir, "r"), 0o750)
    outside = make_pg_dir(os.path.join(workdir, "outside"), 0o750)
    os.symlink(outside, os.path.join(repo, "link"))
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("secret")
    os.symlink(os.path.join(outside, "secret"), os.path.join(repo, "filelink"))
    h = Helper([remote_helper, "--repo", repo])
    h.hello()
    bad = ["../escaped", "/%s/abs" % outside.strip("/"), "a/../../escaped", "a/./b", "a//b",
           "..", "link/x", "link/secret", "filelink"]
    for key in bad:
        # Write attempts are refused before anything is created.
        h.send(frame(PUT, struct.pack(">I", 0) + s(key)))
        t, payload = h.recv()
        assert t == ERROR, "PUT %r accepted" % key
        code, msg = error_of(payload)
        assert code == WV_EREFUSED, (key, code, msg)
        assert "refusing key" in msg, msg
        # And so are reads, stats and removes.
        for req in (frame(GET, struct.pack(">qq", 0, -1) + s(key)), frame(STAT, s(key)),
                    frame(REMOVE, s(key))):
            h.send(req)
            t, payload = h.recv()
            assert t == ERROR and error_of(payload)[0] == WV_EREFUSED, (key, req[4])
    h.send(frame(LIST, s("../")))
    t, payload = h.recv()
    assert t == ERROR and error_of(payload)[0] == WV_EREFUSED
    h.send(frame(LIST, s("link/")))
    t, payload = h.recv()
    assert t == ERROR and error_of(payload)[0] == WV_EREFUSED
    # A valid key still works in the same session.
    h.send(frame(PUT, struct.pack(">I", 1) + s("ok/key")))
    assert h.recv()[0] == OK
    h.send(frame(DATA, b"fine") + frame(COMMIT))
    assert h.recv()[0] == OK
    assert h.close() == 0
    assert sorted(os.listdir(outside)) == ["secret"], "something was written outside"
    assert read_bytes(os.path.join(outside, "secret")) == b"secret"
    assert not os.path.exists(os.path.join(workdir, "escaped"))
    assert read_bytes(os.path.join(repo, "ok", "key")) == b"fine"


def test_helper_rejects_malformed_frames(remote_helper, workdir):  # noqa: F811
    repo = make_pg_dir(os.path.join(workdir, "r"), 0o750)
    cases = [
        frame(0x42),                                     # unknown type
        struct.pack(">IB", 0x7FFFFFFF, STAT),            # oversized length
        frame(STAT, struct.pack(">I", 100) + b"ab"),     # truncated string
        frame(HELLO, struct.pack(">I", 99) + s("9.9")),  # another protocol version
    ]
    for data in cases:
        h = Helper([remote_helper, "--repo", repo])
        if data[4] != HELLO:
            h.hello()
        h.send(data)
        t, payload = h.recv()
        assert t == ERROR, data
        code, msg = error_of(payload)
        assert code == -11, (code, msg)  # WV_EFORMAT
        assert re.search(r"protocol", msg), msg
        assert h.close() != 0
    assert stored_files(repo) == []


def _proxy_script(workdir, limit):
    """An ssh_command that runs ssh, forwards `limit` bytes of our input, then kill -9s ssh."""
    path = os.path.join(workdir, "killing-ssh")
    with open(path, "w") as f:
        f.write("""#!/usr/bin/python3
import os, signal, subprocess, sys
p = subprocess.Popen(["ssh"] + sys.argv[1:], stdin=subprocess.PIPE)
sent = 0
while True:
    b = os.read(0, 65536)
    if not b:
        break
    p.stdin.write(b)
    p.stdin.flush()
    sent += len(b)
    if sent >= %d:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        sys.exit(1)
p.stdin.close()
sys.exit(p.wait())
""" % limit)
    os.chmod(path, 0o755)
    return path


def test_kill9_of_ssh_mid_write_leaves_no_object(ssh_repo, wv, wal_samples, workdir):
    seg = wal_samples.big_segment or wal_samples.a_segments[0]
    size = os.path.getsize(seg)
    assert size >= 1 << 20
    conf = ssh_repo.write(ssh_command=_proxy_script(workdir, size // 2))
    r = wv.push(seg, config=conf, cwd=workdir)
    assert r.returncode != 0, "push succeeded although ssh was killed mid-write"
    assert re.search(r"127\.0\.0\.1:\d+", r.stderr), r.stderr
    # (wal-push may have written the repository's info file before the segment.)
    wal_objects = [f for f in object_names(ssh_repo.path) if f.startswith("wal/")]
    assert wal_objects == [], "an object appeared: %s" % stored_files(ssh_repo.path)
    # The helper sees the end of its input and removes its temporary file.
    wait_until(lambda: not any(".wvtmp-" in f for f in stored_files(ssh_repo.path)), timeout=30,
               what="the helper's temporary file to go")
    # And a normal push afterwards works.
    conf = ssh_repo.write()
    r = wv.push(seg, config=conf, cwd=workdir)
    assert r.returncode == 0, r.stderr


def test_helper_over_ssh_aborts_on_kill9(ssh_repo, ssh_server, remote_helper, workdir):  # noqa: F811
    """Frames through a real ssh: kill -9 ssh after some DATA; no object, no temp file left."""
    h = Helper(ssh_server.ssh_argv("%s --repo '%s'" % (remote_helper, ssh_repo.path)))
    h.hello()
    h.send(frame(PUT, struct.pack(">I", 1) + s("wal/x/partial")))
    assert h.recv()[0] == OK
    for _ in range(8):
        h.send(frame(DATA, b"z" * 65536))
    wait_until(lambda: any(".wvtmp-" in f for f in stored_files(ssh_repo.path)), timeout=30,
               what="the temporary file on the server")
    os.kill(h.p.pid, signal.SIGKILL)
    h.p.wait()
    wait_until(lambda: stored_files(ssh_repo.path) == [], timeout=30,
               what="the helper to remove its temporary file: %s" % stored_files(ssh_repo.path))
    assert object_names(ssh_repo.path) == []
