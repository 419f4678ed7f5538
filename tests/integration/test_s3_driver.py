"""The S3 storage driver against a real Ceph RADOS Gateway, through wv-storage-check (the driver
conformance program in tests/tools/) and an independent S3 client (s3_server.S3Client).

Covers: the storage contract over http and https (verified TLS with the fixture's CA), objects
larger than one part (multipart upload), range and suffix reads, listings that take several pages,
a wrong secret (authentication error, secret never printed), a missing bucket (a configuration
error, not "not found"), a stopped gateway (unreachable after retries, nothing left behind),
an abort that leaves neither an object nor an open multipart upload, and remove_many: more than
one DeleteObjects batch in the conformance run, and keys the store refuses to delete (a bucket
policy) named in the error while the others are removed.
"""

import json
import os
import re
import socket
import struct
import subprocess
import threading
import uuid

import pytest

from s3_server import s3_server  # noqa: F401  (registers the fixture)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _find_tool():
    env = os.environ.get("WALVAULT_STORAGE_CHECK")
    if env:
        return env
    bindir = os.environ.get("WALVAULT_BIN")
    candidates = []
    if bindir:
        candidates.append(os.path.join(bindir, "wv-storage-check"))
    for d in sorted(os.listdir(ROOT)):
        if d.startswith("build"):
            candidates.append(os.path.join(ROOT, d, "wv-storage-check"))
    found = [c for c in candidates if os.access(c, os.X_OK)]
    if not found:
        pytest.fail("wv-storage-check not built (looked in %s); set WALVAULT_STORAGE_CHECK"
                    % ", ".join(candidates))
    return max(found, key=os.path.getmtime)


@pytest.fixture(scope="module")
def tool():
    return _find_tool()


@pytest.fixture
def bucket(s3_server):
    name = "drv-" + uuid.uuid4().hex[:12]
    s3_server.make_bucket(name)
    yield name
    s3_server.remove_bucket(name)


def write_config(tmp_path, s3, bucket, *, https=False, secret=None, prefix="walvault",
                 bucket_override=None):
    secret_file = tmp_path / "s3.secret"
    secret_file.write_text((secret or s3.secret_key) + "\n")
    os.chmod(secret_file, 0o600)
    lines = [
        "[repo1]",
        "type = s3",
        "endpoint = %s" % (s3.endpoint_https if https else s3.endpoint_http),
        "region = %s" % s3.region,
        "bucket = %s" % (bucket_override or bucket),
        "prefix = %s" % prefix,
        "uri_style = path",
        "access_key_id = %s" % s3.access_key,
        "secret_access_key_file = %s" % secret_file,
    ]
    if https:
        lines.append("ca_file = %s" % s3.ca_file)
    conf = tmp_path / "walvault.conf"
    conf.write_text("\n".join(lines) + "\n")
    return str(conf)


def run_check(tool, conf, *args, env_extra=None, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(env_extra or {})
    p = subprocess.run([tool, "-c", conf, "--repo", "1"] + list(args), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p


def assert_all_ok(p):
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "not ok" not in p.stdout, out
    assert " 0 failed" in p.stdout, out


class CuttingProxy:
    """A TCP relay to the gateway that resets connections: the first `cut_first` connections (or
    every one with cut_all) are reset once `cut_after` bytes went from client to server."""

    def __init__(self, target_port, cut_first=0, cut_after=1 << 20, cut_all=False):
        self.target_port = target_port
        self.cut_first = cut_first
        self.cut_after = cut_after
        self.cut_all = cut_all
        self.cuts = 0
        self.count = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                index = self.count
                self.count += 1
            cut = self.cut_all or index < self.cut_first
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pipe, args=(c, u, cut), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    @staticmethod
    def _reset(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        s.close()

    def _pipe(self, src, dst, cut):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if cut and sent + len(data) > self.cut_after:
                    with self.lock:
                        self.cuts += 1
                    self._reset(src)
                    self._reset(dst)
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.sock.close()


def proxied_config(tmp_path, s3, bucket, proxy):
    conf = write_config(tmp_path, s3, bucket)
    text = open(conf).read().replace(s3.endpoint_http, "http://127.0.0.1:%d" % proxy.port)
    open(conf, "w").write(text)
    return conf


def no_uploads_left(s3, bucket):
    """No multipart upload is left open in the bucket."""
    r = s3.client().request("GET", bucket, query=[("uploads", "")])
    assert r.status == 200, r
    assert b"<Upload>" not in r.body, r.body[:2000]


def test_conformance_http_with_multipart(s3_server, bucket, tool, tmp_path):
    # 20 MiB + 12345 bytes: three parts of 8 MiB, 8 MiB and the rest
    conf = write_config(tmp_path, s3_server, bucket)
    p = run_check(tool, conf, "--large-mb", "20", "--many", "30")
    assert_all_ok(p)
    # 1100 objects and 110 absent keys: two DeleteObjects batches (1000 keys at most each)
    assert "ok - remove_many of 1210 keys (110 absent) under three prefixes" in \
        p.stdout.splitlines(), p.stdout
    assert s3_server.list_keys(bucket) == []
    no_uploads_left(s3_server, bucket)


def test_conformance_https(s3_server, bucket, tool, tmp_path):
    conf = write_config(tmp_path, s3_server, bucket, https=True, prefix="")
    p = run_check(tool, conf, "--large-mb", "9", "--many", "10")
    assert_all_ok(p)
    no_uploads_left(s3_server, bucket)


def test_https_without_ca_is_refused(s3_server, bucket, tool, tmp_path):
    conf = write_config(tmp_path, s3_server, bucket, https=True)
    # drop ca_file: the fixture's self-made CA is not trusted by the system store
    text = "".join(l for l in open(conf) if not l.startswith("ca_file"))
    open(conf, "w").write(text)
    p = run_check(tool, conf, "--large-mb", "0", "--many", "1", "--remove-many", "3",
                  timeout=120)
    assert p.returncode != 0
    assert "ca_file" in p.stdout + p.stderr or "certificate" in p.stdout + p.stderr, p.stdout


def test_listing_across_pages(s3_server, bucket, tool, tmp_path):
    # pages of 7 keys: 40 objects take 6 ListObjectsV2 requests with continuation tokens
    conf = write_config(tmp_path, s3_server, bucket)
    p = run_check(tool, conf, "--large-mb", "0", "--many", "40",
                  env_extra={"WALVAULT_S3_LIST_MAX_KEYS": "7"})
    assert_all_ok(p)


def test_wrong_secret_is_an_auth_error(s3_server, bucket, tool, tmp_path):
    wrong = "not-the-secret-" + uuid.uuid4().hex
    conf = write_config(tmp_path, s3_server, bucket, secret=wrong)
    p = run_check(tool, conf, "--large-mb", "0", "--many", "1", "--remove-many", "3",
                  timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "not ok - put small object" in p.stdout, out
    assert "refused the credentials" in out, out
    assert "SignatureDoesNotMatch" in out, out
    # absent keys must not look "not found" when the store refuses us
    assert "not ok - stat of absent key: not found" in p.stdout, out
    assert re.search(r"^not ok - remove_many of 3 keys .*refused the credentials", p.stdout,
                     re.M), out
    assert wrong not in out
    assert s3_server.secret_key not in out
    assert s3_server.list_keys(bucket) == []


def test_missing_bucket_is_a_config_error(s3_server, bucket, tool, tmp_path):
    missing = "no-such-" + uuid.uuid4().hex[:12]
    conf = write_config(tmp_path, s3_server, bucket, bucket_override=missing)
    p = run_check(tool, conf, "--large-mb", "0", "--many", "1", "--remove-many", "3",
                  timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert 'bucket "%s" does not exist' % missing in out, out
    assert "not ok - stat of absent key: not found" in p.stdout, out
    assert "not ok - read of absent key: not found" in p.stdout, out


def test_env_credentials_take_precedence(s3_server, bucket, tool, tmp_path):
    # the file holds a wrong secret; the environment's pair is used
    conf = write_config(tmp_path, s3_server, bucket, secret="wrong")
    p = run_check(tool, conf, "--large-mb", "0", "--many", "3",
                  env_extra={"AWS_ACCESS_KEY_ID": s3_server.access_key,
                             "AWS_SECRET_ACCESS_KEY": s3_server.secret_key})
    assert_all_ok(p)


def test_secret_file_readable_by_others_is_refused(s3_server, bucket, tool, tmp_path):
    conf = write_config(tmp_path, s3_server, bucket)
    os.chmod(tmp_path / "s3.secret", 0o644)
    p = run_check(tool, conf, "--large-mb", "0", "--many", "1", "--remove-many", "3",
                  timeout=60)
    assert p.returncode != 0
    assert "s3.secret" in p.stdout + p.stderr
    assert s3_server.secret_key not in p.stdout + p.stderr


def test_gateway_down_is_unreachable_not_missing(s3_server, bucket, tool, tmp_path):
    conf = write_config(tmp_path, s3_server, bucket)
    s3_server.stop_gateway()
    try:
        p = run_check(tool, conf, "--large-mb", "0", "--many", "1", "--remove-many", "3",
                      env_extra={"WALVAULT_S3_TIMEOUT": "2"}, timeout=300)
    finally:
        s3_server.start_gateway()
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "could not reach" in out, out
    assert "not ok - stat of absent key: not found" in p.stdout, out
    assert "not ok - read of absent key: not found" in p.stdout, out
    assert re.search(r"^not ok - remove_many of 3 keys .*could not reach", p.stdout, re.M), out
    # nothing half-written once the gateway is back
    assert s3_server.list_keys(bucket) == []
    no_uploads_left(s3_server, bucket)


def test_cut_connections_are_retried(s3_server, bucket, tool, tmp_path):
    # the first two connections die after 1 MiB of request data: the part uploads on them are
    # retried on new connections and every check passes
    proxy = CuttingProxy(s3_server.http_port, cut_first=2, cut_after=1 << 20)
    try:
        conf = proxied_config(tmp_path, s3_server, bucket, proxy)
        p = run_check(tool, conf, "--large-mb", "20", "--many", "5")
    finally:
        proxy.close()
    assert_all_ok(p)
    assert proxy.cuts >= 1
    assert "retrying" in p.stderr, p.stderr
    no_uploads_left(s3_server, bucket)


def test_connections_always_cut_fail_cleanly(s3_server, bucket, tool, tmp_path):
    # every connection dies after 4 KiB: small requests get through on retries, a part of 8 MiB
    # never does; the large put fails, and neither the object nor its upload remains
    proxy = CuttingProxy(s3_server.http_port, cut_all=True, cut_after=4096)
    try:
        conf = proxied_config(tmp_path, s3_server, bucket, proxy)
        p = run_check(tool, conf, "--large-mb", "20", "--many", "1", "--remove-many", "3",
                      env_extra={"WALVAULT_S3_TIMEOUT": "3"}, timeout=300)
    finally:
        proxy.close()
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "ok - put small object" in p.stdout.splitlines(), out
    assert "not ok - put large object" in p.stdout, out
    assert "could not reach" in p.stdout, out
    assert [k for k in s3_server.list_keys(bucket) if "large/" in k] == []
    no_uploads_left(s3_server, bucket)


def test_remove_many_names_the_keys_the_store_refuses(s3_server, bucket, tool, tmp_path):
    # a bucket policy denies deleting under walvault/protected/: one DeleteObjects answers with
    # an <Error> per protected key; those are named, the others are gone, absent keys are fine
    c = s3_server.client()
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteObject",
            "Resource": "arn:aws:s3:::%s/walvault/protected/*" % bucket,
        }],
    }
    r = c.request("PUT", bucket, query=[("policy", "")], body=json.dumps(policy).encode())
    assert r.status in (200, 204), r
    try:
        for k in ("protected/p1", "protected/p2", "free/f1", "free/f2"):
            s3_server.put_object(bucket, "walvault/" + k, b"x")
        conf = write_config(tmp_path, s3_server, bucket)
        keys = ["protected/p1", "free/f1", "absent/a1", "protected/p2", "free/f2"]
        p = run_check(tool, conf, *[a for k in keys for a in ("--remove", k)], timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 1, out
        assert 'could not delete 2 of 5 objects in bucket "%s"' % bucket in out, out
        assert '"protected/p1" (AccessDenied)' in out, out
        assert '"protected/p2" (AccessDenied)' in out, out
        assert "free/" not in out, out
        assert "hint: check that the access key may delete in the bucket" in p.stderr, out
        assert s3_server.list_keys(bucket) == ["walvault/protected/p1", "walvault/protected/p2"]
    finally:
        r = c.request("DELETE", bucket, query=[("policy", "")])
        assert r.status in (200, 204), r
    # without the policy the same call removes them (and the already absent ones are fine)
    p = run_check(tool, conf, *[a for k in keys for a in ("--remove", k)], timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok - remove_many of 5 keys" in p.stdout, p.stdout
    assert s3_server.list_keys(bucket) == []


def test_remove_many_of_one_protected_key(s3_server, bucket, tool, tmp_path):
    c = s3_server.client()
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteObject",
            "Resource": "arn:aws:s3:::%s/walvault/protected/*" % bucket,
        }],
    }
    r = c.request("PUT", bucket, query=[("policy", "")], body=json.dumps(policy).encode())
    assert r.status in (200, 204), r
    try:
        s3_server.put_object(bucket, "walvault/protected/only", b"x")
        conf = write_config(tmp_path, s3_server, bucket)
        p = run_check(tool, conf, "--remove", "protected/only", "--remove", "absent/x",
                      timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 1, out
        assert 'repo1: could not delete "protected/only" in bucket "%s": AccessDenied' % bucket \
            in out, out
        assert s3_server.list_keys(bucket) == ["walvault/protected/only"]
    finally:
        r = c.request("DELETE", bucket, query=[("policy", "")])
        assert r.status in (200, 204), r
