"""A real S3 peer for the integration tests: Ceph's RADOS Gateway on a throwaway cluster.

Use it from a test module with::

    from s3_server import s3_server          # noqa: F401  (registers the fixture)

    def test_something(s3_server):
        s3_server.make_bucket("wal")
        ...  # point walvault at s3_server.endpoint_http / endpoint_https + ca_file
        assert s3_server.list_keys("wal", prefix="wal/") == [...]

The session-scoped fixture ``s3_server`` runs ceph/start_rgw.sh once per test session and
ceph/stop_rgw.sh at the end.  If the gateway cannot start, every test that uses it ERRORS with
the daemons' log tail; nothing is skipped.  Set WV_S3_ENV=/path/to/s3.env to reuse a gateway
that is already running (start_rgw.sh writes that file); it is then neither started nor stopped.

The module also holds a small standard-library S3 client (``S3Client``) that signs requests
with AWS Signature V4, so tests can create buckets and inspect the store independently of the
C driver, and can send deliberately wrong signatures or payload hashes.
"""

import datetime
import hashlib
import hmac
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CEPH_DIR = os.path.join(HERE, "ceph")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


# ---------------------------------------------------------------------------------------------
# Signature V4
# ---------------------------------------------------------------------------------------------

def _uri_encode(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sigv4_sign(method, host, path, query, headers, payload_hash, access_key, secret_key,
               region, service="s3", now=None):
    """Return the headers to add (Authorization, x-amz-date, x-amz-content-sha256).

    path is the raw (unencoded) path, e.g. "/bucket/some key"; query is a list of
    (name, value) pairs; headers is a dict of the other headers that will be sent and signed.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    signed = {k.lower().strip(): " ".join(str(v).strip().split()) for k, v in headers.items()}
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_hash
    names = sorted(signed)
    canonical_headers = "".join("%s:%s\n" % (n, signed[n]) for n in names)
    signed_headers = ";".join(names)
    canonical_query = "&".join(
        "%s=%s" % (_uri_encode(k), _uri_encode(v))
        for k, v in sorted((str(k), str(v)) for k, v in query))
    canonical_request = "\n".join([
        method, _uri_encode(path, safe="/-_.~"), canonical_query, canonical_headers,
        signed_headers, payload_hash])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    key = _hmac(key, "aws4_request")
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
                         % (access_key, scope, signed_headers, signature),
    }


class S3Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers          # dict, lower-case names
        self.body = body

    @property
    def error_code(self):
        """The <Code> of an S3 error body, or None."""
        try:
            root = ET.fromstring(self.body)
        except ET.ParseError:
            return None
        code = root.find("Code")
        return code.text if code is not None else None

    def __repr__(self):
        return "S3Response(%d %s, %r)" % (self.status, self.reason, self.body[:300])


class S3Error(Exception):
    def __init__(self, what, resp):
        super().__init__("%s: HTTP %d %s: %s" % (what, resp.status, resp.error_code,
                                                 resp.body[:500]))
        self.resp = resp
        self.status = resp.status
        self.code = resp.error_code


def _strip_ns(tag):
    return tag.rsplit("}", 1)[-1]


class S3Client:
    """A minimal path-style S3 client over http.client, signed with SigV4.

    request() never raises for an HTTP error status; the helpers raise S3Error unless the
    status is the expected one.
    """

    def __init__(self, endpoint, access_key, secret_key, region="default", ca_file=None,
                 timeout=30.0):
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("bad endpoint %r" % endpoint)
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.ca_file = ca_file
        self.timeout = timeout

    def _connection(self):
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca_file)
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, bucket=None, key=None, query=(), body=b"", headers=None,
                payload_hash=None, secret_key=None, sign=True):
        """Send one request; returns S3Response.

        payload_hash overrides x-amz-content-sha256 (e.g. a wrong one, or UNSIGNED_PAYLOAD);
        secret_key overrides the signing secret (e.g. a wrong one).
        """
        path = "/"
        if bucket:
            path += bucket
            if key is not None:
                path += "/" + key
        query = list(query.items()) if isinstance(query, dict) else list(query)
        headers = dict(headers or {})
        if payload_hash is None:
            payload_hash = hashlib.sha256(body).hexdigest()
        default_port = 443 if self.scheme == "https" else 80
        host = self.host if self.port == default_port else "%s:%d" % (self.host, self.port)
        if sign:
            headers.update(sigv4_sign(method, host, path, query, headers, payload_hash,
                                      self.access_key, secret_key or self.secret_key,
                                      self.region))
        url = _uri_encode(path, safe="/-_.~")
        if query:
            url += "?" + "&".join("%s=%s" % (_uri_encode(str(k)), _uri_encode(str(v)))
                                  for k, v in query)
        conn = self._connection()
        try:
            conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            r = conn.getresponse()
            data = r.read()
            return S3Response(r.status, r.reason, {k.lower(): v for k, v in r.getheaders()},
                              data)
        finally:
            conn.close()

    def _expect(self, what, resp, *ok):
        if resp.status not in ok:
            raise S3Error(what, resp)
        return resp

    def create_bucket(self, bucket):
        return self._expect("create bucket %r" % bucket, self.request("PUT", bucket), 200)

    def delete_bucket(self, bucket):
        return self._expect("delete bucket %r" % bucket, self.request("DELETE", bucket), 204)

    def put_object(self, bucket, key, data, headers=None):
        return self._expect("put %s/%s" % (bucket, key),
                            self.request("PUT", bucket, key, body=data, headers=headers), 200)

    def get_object(self, bucket, key):
        """The object's bytes; S3Error (status 404, code NoSuchKey) if absent."""
        return self._expect("get %s/%s" % (bucket, key),
                            self.request("GET", bucket, key), 200).body

    def head_object(self, bucket, key):
        """The response headers (lower-case names), or None if the object does not exist."""
        resp = self.request("HEAD", bucket, key)
        if resp.status == 404:
            return None
        return self._expect("head %s/%s" % (bucket, key), resp, 200).headers

    def delete_object(self, bucket, key):
        return self._expect("delete %s/%s" % (bucket, key),
                            self.request("DELETE", bucket, key), 204)

    def list_objects(self, bucket, prefix="", page_size=1000):
        """Every object under prefix as dicts {key, size, etag}, following continuation."""
        out = []
        token = None
        while True:
            q = [("list-type", "2"), ("prefix", prefix), ("max-keys", str(page_size))]
            if token:
                q.append(("continuation-token", token))
            resp = self._expect("list %s/%s" % (bucket, prefix),
                                self.request("GET", bucket, query=q), 200)
            root = ET.fromstring(resp.body)
            token = None
            truncated = False
            for el in root:
                tag = _strip_ns(el.tag)
                if tag == "Contents":
                    item = {_strip_ns(c.tag): c.text for c in el}
                    out.append({"key": item["Key"], "size": int(item["Size"]),
                                "etag": (item.get("ETag") or "").strip('"')})
                elif tag == "IsTruncated":
                    truncated = el.text == "true"
                elif tag == "NextContinuationToken":
                    token = el.text
            if not truncated or not token:
                return out

    def list_keys(self, bucket, prefix="", page_size=1000):
        return sorted(o["key"] for o in self.list_objects(bucket, prefix, page_size))

    def empty_bucket(self, bucket):
        for o in self.list_objects(bucket):
            self.delete_object(bucket, o["key"])


# ---------------------------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------------------------

def _read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def _port_open(port, timeout=0.5):
    try:
        socket.create_connection(("127.0.0.1", port), timeout).close()
        return True
    except OSError:
        return False


def _alive(pid):
    """True while pid runs (a zombie that nobody reaped yet counts as gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return True


class S3Server:
    """A running RADOS Gateway: endpoints, credentials and helpers."""

    def __init__(self, env, owned):
        self.endpoint_http = env["S3_ENDPOINT_HTTP"]
        self.endpoint_https = env["S3_ENDPOINT_HTTPS"]
        self.ca_file = env["S3_CA_FILE"]
        self.access_key = env["S3_ACCESS_KEY"]
        self.secret_key = env["S3_SECRET_KEY"]
        self.region = env["S3_REGION"]
        self.dir = env["S3_DIR"]
        self.conf = env["S3_CONF"]
        self.start_seconds = float(env.get("S3_START_SECONDS", "0"))
        self.owned = owned
        self.http_port = urllib.parse.urlsplit(self.endpoint_http).port
        self.https_port = urllib.parse.urlsplit(self.endpoint_https).port

    def client(self, https=False, secret_key=None, access_key=None, region=None, timeout=30.0):
        return S3Client(self.endpoint_https if https else self.endpoint_http,
                        access_key or self.access_key, secret_key or self.secret_key,
                        region or self.region, self.ca_file if https else None, timeout)

    def make_bucket(self, name):
        """Create bucket name (path-style); an existing bucket of ours is fine."""
        resp = self.client().request("PUT", name)
        if resp.status == 409 and resp.error_code == "BucketAlreadyOwnedByYou":
            return
        if resp.status != 200:
            raise S3Error("create bucket %r" % name, resp)

    def list_keys(self, bucket, prefix=""):
        """Sorted keys under prefix, read straight from the gateway."""
        return self.client().list_keys(bucket, prefix)

    def get_object(self, bucket, key):
        return self.client().get_object(bucket, key)

    def put_object(self, bucket, key, data):
        return self.client().put_object(bucket, key, data)

    def delete_object(self, bucket, key):
        return self.client().delete_object(bucket, key)

    def remove_bucket(self, bucket):
        """Delete every object in bucket, then the bucket."""
        c = self.client()
        c.empty_bucket(bucket)
        c.delete_bucket(bucket)

    # -- outages --------------------------------------------------------------------------

    def _rgw_pid(self):
        try:
            with open(os.path.join(self.dir, "run", "client.rgw.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop_gateway(self, timeout=30.0, grace=1.0):
        """Stop radosgw only (the cluster and the data stay): the endpoints refuse
        connections.  SIGTERM, then SIGKILL after grace seconds (a clean exit takes ~6 s)."""
        pid = self._rgw_pid()
        if pid is None:
            return
        os.kill(pid, 15)
        deadline = time.monotonic() + timeout
        kill_at = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            if time.monotonic() > kill_at:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
                kill_at = deadline
            time.sleep(0.05)
        while time.monotonic() < deadline and (_port_open(self.http_port)
                                               or _port_open(self.https_port)):
            time.sleep(0.05)

    def start_gateway(self, timeout=60.0):
        """Start radosgw again on the same ports after stop_gateway()."""
        if self._rgw_pid() is not None:
            return
        subprocess.run(["radosgw", "-c", self.conf, "-n", "client.rgw"], check=True,
                       timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not (_port_open(self.http_port) and _port_open(self.https_port)):
            if time.monotonic() > deadline:
                raise RuntimeError("radosgw did not come back within %.0fs\n%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.1)
        # An open port is not a gateway that serves: after a SIGKILL the new instance may hold
        # requests while it re-registers with the cluster. Ready once a request is answered.
        while True:
            try:
                self.client(timeout=5.0).request("GET")
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError("radosgw answers no request %.0fs after its restart: %s\n%s"
                                       % (timeout, e, self.log_tail()))
                time.sleep(0.2)

    def log_path(self):
        return os.path.join(self.dir, "log", "client.rgw.log")

    def requests(self, bucket):
        """(method, path) of every request on bucket in the gateway's access log, in order. The
        gateway writes its log asynchronously: wait for the requests expected."""
        try:
            with open(self.log_path(), "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        line = r'beast: \S+: \S+ - \S+ \[[^\]]*\] "(GET|PUT|POST|DELETE|HEAD) (/%s[/?]\S*)'
        return re.findall(line % re.escape(bucket), text)

    def log_tail(self, lines=40):
        """The last lines of the gateway's log (for failure messages)."""
        try:
            with open(self.log_path(), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(no gateway log: %s)" % e


def start_server(timeout=150, attempts=2):
    """Start a gateway in a new directory; returns S3Server.  A failed start is tried again
    once (the free ports are picked before the daemons bind them); then RuntimeError with
    the daemons' log tail of every attempt."""
    errors = []
    for _ in range(attempts):
        try:
            return _start_once(timeout)
        except RuntimeError as e:
            errors.append(str(e))
    raise RuntimeError("\n\n".join(errors))


def _start_once(timeout):
    # Under /tmp, not a deep pytest directory: unix socket paths are limited to 107 bytes.
    d = tempfile.mkdtemp(prefix="wv-rgw-", dir="/tmp")
    env = dict(os.environ, RGW_START_TIMEOUT=str(timeout))
    try:
        p = subprocess.run([os.path.join(CEPH_DIR, "start_rgw.sh"), d], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout + 60)
    except subprocess.TimeoutExpired as e:
        stop_server(d)
        raise RuntimeError("start_rgw.sh hung for %ss\n%s" % (e.timeout, e.stderr or ""))
    if p.returncode != 0:
        stop_server(d)
        raise RuntimeError("start_rgw.sh failed (exit %d):\n%s" % (p.returncode, p.stderr))
    return S3Server(_read_env(os.path.join(d, "s3.env")), owned=True)


def stop_server(d):
    subprocess.run([os.path.join(CEPH_DIR, "stop_rgw.sh"), d], timeout=60)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server():
    reuse = os.environ.get("WV_S3_ENV")
    if reuse:
        yield S3Server(_read_env(reuse), owned=False)
        return
    try:
        server = start_server()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.fail("could not start the S3 gateway (Ceph RGW): %s" % e, pytrace=False)
    try:
        yield server
    finally:
        stop_server(server.dir)
