"""Tests of the test harness itself: the Ceph RGW fixture with its SigV4 client, and the
fault-injecting proxy (against a local echo server and against the gateway)."""

import glob
import http.client
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from faultproxy import FaultProxy
from s3_server import (CEPH_DIR, EMPTY_SHA256, UNSIGNED_PAYLOAD, S3Client, S3Error, _alive,
                       sigv4_sign, start_server, stop_server)
from s3_server import s3_server  # noqa: F401  (registers the fixture)


def _name(tag):
    return "fx-%s-%s" % (tag, uuid.uuid4().hex[:10])


@pytest.fixture
def bucket(s3_server):
    name = _name("b")
    s3_server.make_bucket(name)
    yield name
    s3_server.remove_bucket(name)


# ---------------------------------------------------------------------------------------------
# SigV4 signer: a published test vector
# ---------------------------------------------------------------------------------------------

def test_sigv4_matches_the_aws_example():
    # "GET Object" example of the AWS S3 SigV4 documentation (examplebucket, test.txt, Range).
    import datetime
    now = datetime.datetime(2013, 5, 24, 0, 0, 0, tzinfo=datetime.timezone.utc)
    h = sigv4_sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", [],
                   {"Range": "bytes=0-9"}, EMPTY_SHA256, "AKIAIOSFODNN7EXAMPLE",
                   "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", now=now)
    assert h["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


# ---------------------------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------------------------

def test_fixture_attributes(s3_server):
    assert s3_server.endpoint_http == "http://127.0.0.1:%d" % s3_server.http_port
    assert s3_server.endpoint_https == "https://127.0.0.1:%d" % s3_server.https_port
    assert s3_server.http_port != s3_server.https_port
    assert os.path.isfile(s3_server.ca_file)
    assert s3_server.access_key and s3_server.secret_key
    assert s3_server.region == "default"


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_bucket_put_get_list(s3_server, https):
    c = s3_server.client(https=https)
    name = _name("https" if https else "http")
    c.create_bucket(name)
    try:
        assert c.list_keys(name) == []
        keys = {"wal/000000010000000000000001": os.urandom(1000),
                "wal/000000010000000000000002": b"",
                "backup/20261125T000000F/label": b"x" * 70000,
                "odd key/with spaces+plus%percent~tilde=eq&amp": b"odd"}
        for k, v in keys.items():
            c.put_object(name, k, v)
        for k, v in keys.items():
            assert c.get_object(name, k) == v
        assert c.list_keys(name) == sorted(keys)
        assert c.list_keys(name, prefix="wal/") == sorted(k for k in keys if k.startswith("wal/"))
        # The fixture's helper reads the same store.
        assert s3_server.list_keys(name, "backup/") == ["backup/20261125T000000F/label"]
        objs = {o["key"]: o for o in c.list_objects(name)}
        assert objs["backup/20261125T000000F/label"]["size"] == 70000
        with pytest.raises(S3Error) as e:
            c.get_object(name, "wal/absent")
        assert (e.value.status, e.value.code) == (404, "NoSuchKey")
        assert c.head_object(name, "wal/absent") is None
        assert c.head_object(name, "odd key/with spaces+plus%percent~tilde=eq&amp")[
            "content-length"] == "3"
    finally:
        c.empty_bucket(name)
        c.delete_bucket(name)
    resp = c.request("GET", name, query=[("list-type", "2")])
    assert (resp.status, resp.error_code) == (404, "NoSuchBucket")


def test_make_bucket_twice_is_fine(s3_server):
    name = _name("twice")
    s3_server.make_bucket(name)
    s3_server.make_bucket(name)
    assert s3_server.list_keys(name) == []
    s3_server.remove_bucket(name)


def test_listing_follows_continuation(s3_server, bucket):
    c = s3_server.client()
    keys = ["p/%03d" % i for i in range(7)] + ["q/0"]
    for k in keys:
        c.put_object(bucket, k, k.encode())
    assert c.list_keys(bucket, prefix="p/", page_size=3) == keys[:7]
    assert c.list_keys(bucket, page_size=2) == keys


def test_https_needs_the_ca(s3_server, bucket):
    no_ca = S3Client(s3_server.endpoint_https, s3_server.access_key, s3_server.secret_key,
                     s3_server.region, ca_file=None)
    with pytest.raises(ssl.SSLCertVerificationError):
        no_ca.request("GET", bucket, query=[("list-type", "2")])
    # The same request verifies with the CA, also by the name "localhost".
    by_name = S3Client("https://localhost:%d" % s3_server.https_port, s3_server.access_key,
                       s3_server.secret_key, s3_server.region, ca_file=s3_server.ca_file)
    assert by_name.request("GET", bucket, query=[("list-type", "2")]).status == 200


@pytest.mark.parametrize("region", ["default", "us-east-1"])
def test_signing_region(s3_server, bucket, region):
    # RGW checks the signature with the region the client names; the zonegroup is "default".
    assert s3_server.client(region=region).request(
        "GET", bucket, query=[("list-type", "2")]).status == 200
    loc = s3_server.client().request("GET", bucket, query=[("location", "")])
    assert loc.status == 200 and b">default</LocationConstraint>" in loc.body


REFUSALS = [
    # name, request kwargs, client kwargs, expected status, expected code
    ("wrong secret", {}, {"secret_key": "x" * 40}, 403, "SignatureDoesNotMatch"),
    ("unknown access key", {}, {"access_key": "NOSUCHKEY0000000000X"}, 403, "InvalidAccessKeyId"),
    ("wrong payload hash", {"payload_hash": "0" * 64}, {}, 400, "XAmzContentSHA256Mismatch"),
    ("hash of other bytes", {"payload_hash": EMPTY_SHA256}, {}, 400,
     "XAmzContentSHA256Mismatch"),
    ("wrong Content-MD5", {"headers": {"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="}}, {}, 400,
     "BadDigest"),
    ("unsigned", {"sign": False}, {}, 403, "AccessDenied"),
]


@pytest.mark.parametrize("name,req,cli,status,code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_requests_are_refused(s3_server, bucket, name, req, cli, status, code):
    c = s3_server.client(**cli)
    resp = c.request("PUT", bucket, "obj", body=b"payload bytes", **req)
    assert (resp.status, resp.error_code) == (status, code), resp
    assert s3_server.list_keys(bucket) == []


def test_unsigned_payload_is_accepted(s3_server, bucket):
    c = s3_server.client()
    assert c.request("PUT", bucket, "u", body=b"abc", payload_hash=UNSIGNED_PAYLOAD).status == 200
    assert c.get_object(bucket, "u") == b"abc"


def test_gateway_stop_and_start(s3_server, bucket):
    c = s3_server.client(timeout=5)
    c.put_object(bucket, "survives", b"restart")
    s3_server.stop_gateway()
    try:
        with pytest.raises(ConnectionRefusedError):
            c.request("GET", bucket, "survives")
    finally:
        s3_server.start_gateway()
    assert c.get_object(bucket, "survives") == b"restart"


def test_second_cluster_starts_and_stops_completely(s3_server):
    # Independent of the session's gateway: its own directory, ports and daemons.
    other = start_server(timeout=120)
    try:
        assert other.dir != s3_server.dir
        assert {other.http_port, other.https_port}.isdisjoint(
            {s3_server.http_port, s3_server.https_port})
        pids = []
        for f in glob.glob(os.path.join(other.dir, "run", "*.pid")):
            with open(f) as fh:
                pids.append(int(fh.read()))
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        assert other.client().request("PUT", "other-bucket").status == 200
        assert s3_server.client().request("GET", "other-bucket",
                                          query=[("list-type", "2")]).status == 404
    finally:
        stop_server(other.dir)
    assert not any(_alive(p) for p in pids)
    assert not os.path.exists(other.dir)
    # Stopping again is fine.
    p = subprocess.run([os.path.join(CEPH_DIR, "stop_rgw.sh"), other.dir])
    assert p.returncode == 0
    # The session's gateway is untouched.
    assert s3_server.client().request("GET").status == 200      # ListBuckets


def test_stop_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "ceph.conf").write_text("[global]\nfsid = something else\n")
    p = subprocess.run([os.path.join(CEPH_DIR, "stop_rgw.sh"), str(tmp_path)],
                       stderr=subprocess.PIPE, text=True)
    assert p.returncode == 1 and "not made by start_rgw.sh" in p.stderr
    assert (tmp_path / "ceph.conf").exists()


# ---------------------------------------------------------------------------------------------
# The proxy against a local echo server
# ---------------------------------------------------------------------------------------------

class EchoServer:
    """Echoes every byte back (or, with echo=False, only reads); records for each connection
    how many bytes it received and how its read side ended ("eof" or "reset")."""

    def __init__(self, echo=True):
        self.echo = echo
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.conns = []          # [received, end] lists, one per connection
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = [0, None]
            with self.lock:
                self.conns.append(rec)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c, rec):
        c.settimeout(10)
        echo = self.echo
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    rec[1] = "eof"
                    break
                rec[0] += len(data)
                if echo:
                    try:
                        c.sendall(data)
                    except OSError:
                        # The peer is gone; keep reading to learn how the stream ended (a
                        # reset reported here is not reported again by recv: tests that look
                        # at how a stream ended use a reader that does not write).
                        echo = False
        except ConnectionResetError:
            rec[1] = "reset"
        except OSError as e:
            rec[1] = "error: %s" % e
        finally:
            c.close()

    def wait_ended(self, n=1, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.conns) >= n and all(r[1] for r in self.conns[:n]):
                    return [list(r) for r in self.conns]
            time.sleep(0.01)
        raise AssertionError("echo connections did not end: %r" % self.conns)

    def close(self):
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture
def echo():
    e = EchoServer()
    yield e
    e.close()


@pytest.fixture
def sink():
    e = EchoServer(echo=False)
    yield e
    e.close()


def _connect(proxy, timeout=10):
    return socket.create_connection(proxy.address, timeout=timeout)


def _recv_all(s, n):
    """Read until n bytes or EOF; returns (bytes, "eof" | "reset" | "full")."""
    out = bytearray()
    while len(out) < n:
        try:
            d = s.recv(n - len(out))
        except ConnectionResetError:
            return bytes(out), "reset"
        if not d:
            return bytes(out), "eof"
        out += d
    return bytes(out), "full"


def _send_in_background(s, data):
    def run():
        try:
            s.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_proxy_pass(echo):
    data = os.urandom(300000)
    with FaultProxy("127.0.0.1", echo.port) as p:
        s = _connect(p)
        t = _send_in_background(s, data)
        got, how = _recv_all(s, len(data))
        t.join()
        assert (got == data, how) == (True, "full")
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
        s.close()
        assert echo.wait_ended() == [[len(data), "eof"]]
        st = p.stats()
        assert (st["accepted"], st["up"], st["down"]) == (1, len(data), len(data))


def test_proxy_delay_holds_each_chunk(echo):
    with FaultProxy("127.0.0.1", echo.port, "delay", ms=800) as p:
        s = _connect(p)
        s.sendall(b"ping")
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(4)
        s.settimeout(10)
        assert _recv_all(s, 4) == (b"ping", "full")
        s.close()


def test_proxy_throttle_limits_the_rate(echo):
    data = os.urandom(6000)
    with FaultProxy("127.0.0.1", echo.port, "throttle", rate=3000) as p:
        s = _connect(p)
        t = _send_in_background(s, data)
        start = time.monotonic()
        got = b""
        s.settimeout(0.2)
        while time.monotonic() - start < 0.5:
            try:
                got += s.recv(65536)
            except socket.timeout:
                pass
        # 6000 bytes at 3000 bytes/s need about 2 s in each direction.
        assert len(got) < len(data)
        s.settimeout(30)
        rest, how = _recv_all(s, len(data) - len(got))
        assert (got + rest == data, how) == (True, "full")
        t.join()
        s.close()


@pytest.mark.parametrize("mode", ["cut", "reset"])
def test_proxy_cut_and_reset_downstream(echo, mode):
    data = os.urandom(20000)
    with FaultProxy("127.0.0.1", echo.port, mode, after=5000, direction="down") as p:
        s = _connect(p)
        s.sendall(data)         # fits in the socket buffers; nothing else writes to s after
        got, how = _recv_all(s, len(data))
        assert data.startswith(got)
        if mode == "cut":
            # Exactly N bytes, then a clean end of stream.
            assert (len(got), how) == (5000, "eof")
        else:
            # RST may discard what was still in flight, but never more than N bytes arrive.
            assert len(got) <= 5000 and how == "reset"
        s.close()
        assert p.stats()[mode] == 1


@pytest.mark.parametrize("mode", ["cut", "reset"])
def test_proxy_cut_and_reset_upstream(sink, mode):
    data = os.urandom(20000)
    with FaultProxy("127.0.0.1", sink.port, mode, after=7000, direction="up") as p:
        s = _connect(p)
        _send_in_background(s, data)
        # What the client sees depends on its writer thread (which may collect the RST);
        # the target, which only reads, tells what happened on the wire.
        got, how = _recv_all(s, len(data))
        assert got == b"" and how in ("eof", "reset")
        s.close()
        # The target got exactly N bytes before the end.
        assert sink.wait_ended() == [[7000, "eof" if mode == "cut" else "reset"]]


def test_proxy_cut_counts_both_directions(echo):
    with FaultProxy("127.0.0.1", echo.port, "cut", after=10) as p:
        s = _connect(p)
        s.sendall(b"abcd")                       # 4 up + 4 down = 8
        assert _recv_all(s, 4) == (b"abcd", "full")
        s.sendall(b"efgh")                       # 2 more up reach 10: cut
        got, how = _recv_all(s, 4)
        assert (got, how) == (b"", "eof")
        assert echo.wait_ended() == [[6, "eof"]]


def test_proxy_blackhole(echo):
    with FaultProxy("127.0.0.1", echo.port, "blackhole") as p:
        s = _connect(p)
        s.sendall(b"anyone there?")
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(1)
        s.close()
        assert echo.conns == []
        assert p.stats()["accepted"] == 1


def test_proxy_switches_at_run_time(echo):
    with FaultProxy("127.0.0.1", echo.port) as p:
        s = _connect(p)
        s.sendall(b"one")
        assert _recv_all(s, 3) == (b"one", "full")
        p.set_mode("blackhole")
        assert p.mode == "blackhole"
        s.sendall(b"lost")
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(1)
        p.set_mode("pass")
        s.settimeout(10)
        s.sendall(b"two")
        assert _recv_all(s, 3) == (b"two", "full")   # "lost" was dropped, not delayed
        p.set_mode("reset", after=0)
        s.sendall(b"x")
        assert _recv_all(s, 1) == (b"", "reset")
        assert echo.wait_ended() == [[6, "reset"]]


def test_proxy_target_down(echo):
    port = echo.port
    echo.close()
    with FaultProxy("127.0.0.1", port) as p:
        # The proxy resets the client's connection, possibly before connect() returns.
        try:
            s = _connect(p)
            assert _recv_all(s, 1)[0] == b""
        except ConnectionResetError:
            pass
        deadline = time.monotonic() + 10
        while p.stats()["refused"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.stats()["refused"] == 1


def test_proxy_is_bounded(echo):
    p = FaultProxy("127.0.0.1", echo.port, max_seconds=0.5, max_connections=1).start()
    try:
        first = _connect(p)
        first.sendall(b"a")
        assert _recv_all(first, 1) == (b"a", "full")
        second = _connect(p)                # over max_connections: closed at once
        assert _recv_all(second, 1)[0] == b""
        assert p.stats()["refused"] == 1
        # It stops by itself: the held connection ends and new ones are refused.
        first.settimeout(10)
        assert _recv_all(first, 1)[0] == b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _connect(p, timeout=1).close()
            except ConnectionRefusedError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("proxy still accepting after max_seconds")
    finally:
        p.stop()


@pytest.mark.parametrize("mode,params", [
    ("nonsense", {}), ("delay", {"ms": -1}), ("throttle", {"rate": 0}),
    ("cut", {"after": -1}), ("reset", {"direction": "sideways"}), ("pass", {"ms": 1}),
])
def test_proxy_rejects_bad_modes(echo, mode, params):
    with FaultProxy("127.0.0.1", echo.port) as p:
        with pytest.raises(ValueError):
            p.set_mode(mode, **params)
        assert p.mode == "pass"


# ---------------------------------------------------------------------------------------------
# The proxy in front of the gateway
# ---------------------------------------------------------------------------------------------

def test_proxy_in_front_of_the_gateway(s3_server, bucket):
    payload = os.urandom(1 << 20)
    s3_server.put_object(bucket, "big", payload)
    with FaultProxy("127.0.0.1", s3_server.https_port) as p:
        c = S3Client(p.url("https"), s3_server.access_key, s3_server.secret_key,
                     s3_server.region, s3_server.ca_file, timeout=10)
        assert c.get_object(bucket, "big") == payload          # TLS passes through
        p.set_mode("cut", after=300000, direction="down")
        with pytest.raises((http.client.IncompleteRead, ssl.SSLError, ConnectionError)):
            c.get_object(bucket, "big")
        p.set_mode("blackhole")
        c.timeout = 0.5
        with pytest.raises(socket.timeout):
            c.get_object(bucket, "big")
