"""A fault-injecting TCP proxy on loopback, in pure Python (threads).

    from faultproxy import FaultProxy

    with FaultProxy("127.0.0.1", s3_server.http_port) as proxy:
        endpoint = proxy.url("http")                     # point the client here
        proxy.set_mode("cut", after=70000, direction="up")  # close both sides mid-upload
        ...
        proxy.set_mode("pass")

Modes (switchable at any time with set_mode; a switch applies to open connections too, from
their next chunk on):

    pass                       forward both ways
    delay      ms=N            wait N milliseconds before forwarding each chunk
    throttle   rate=N          forward at most N bytes per second per direction per connection
    cut        after=N         forward N bytes, then close both sides (FIN) mid-stream
    reset      after=N         forward N bytes, then abort both sides with RST (SO_LINGER 0)
    blackhole                  accept, never answer: data is read and dropped; connections
                               accepted in this mode never reach the target

For cut and reset, N counts the bytes a connection has forwarded since it was opened, in the
chosen direction: "up" (client to target), "down" (target to client) or "both" (default).

Bounded: at most max_connections at once (others are closed at once), and the proxy stops by
itself after max_seconds (default 300), closing every connection.  Threads are daemons.
"""

import socket
import struct
import threading
import time

MODES = ("pass", "delay", "throttle", "cut", "reset", "blackhole")
DIRECTIONS = ("up", "down", "both")


class _Conn:
    """One proxied connection: the client socket, the target socket (None when blackholed)
    and byte counters."""

    def __init__(self, proxy, client):
        self.proxy = proxy
        self.client = client
        self.target = None
        self.lock = threading.Lock()
        self.counted = {"up": 0, "down": 0}
        self.closed = False
        self.half_closed = 0

    def forwarded(self, direction):
        if direction == "both":
            return self.counted["up"] + self.counted["down"]
        return self.counted[direction]

    def kill(self, how="close"):
        """Close both sides once: how = "close" (FIN) or "reset" (RST)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.target):
            if s is None:
                continue
            try:
                if how == "reset":
                    # SHUT_RD wakes a thread blocked in recv without sending anything; the
                    # close with a zero linger then aborts the connection with RST.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.proxy._forget(self)


class FaultProxy:
    def __init__(self, target_host, target_port, mode="pass", *, listen_host="127.0.0.1",
                 listen_port=0, max_seconds=300.0, max_connections=64, chunk=16384,
                 connect_timeout=5.0, **params):
        self.target = (target_host, int(target_port))
        self.chunk = chunk
        self.max_seconds = max_seconds
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conns = set()
        self._stop = threading.Event()
        self._threads = []
        self._stats = {"accepted": 0, "refused": 0, "up": 0, "down": 0, "cut": 0, "reset": 0}
        self._mode = ("pass", {})
        self.set_mode(mode, **params)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, listen_port))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.host, self.port = self._listener.getsockname()[:2]
        self._started = False

    # -- public API -------------------------------------------------------------------------

    @property
    def address(self):
        return (self.host, self.port)

    def url(self, scheme="http"):
        return "%s://%s:%d" % (scheme, self.host, self.port)

    def set_mode(self, mode, **params):
        """Switch mode (see the module doc); unknown modes or parameters raise ValueError."""
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        allowed = {"pass": set(), "blackhole": set(), "delay": {"ms"}, "throttle": {"rate"},
                   "cut": {"after", "direction"}, "reset": {"after", "direction"}}[mode]
        extra = set(params) - allowed
        if extra:
            raise ValueError("mode %r takes no %s" % (mode, ", ".join(sorted(extra))))
        p = dict(params)
        if mode == "delay":
            p["ms"] = float(p.get("ms", 100))
            if p["ms"] < 0:
                raise ValueError("delay ms must be >= 0")
        if mode == "throttle":
            p["rate"] = int(p.get("rate", 0))
            if p["rate"] <= 0:
                raise ValueError("throttle rate must be > 0 bytes/s")
        if mode in ("cut", "reset"):
            p["after"] = int(p.get("after", 0))
            p.setdefault("direction", "both")
            if p["after"] < 0 or p["direction"] not in DIRECTIONS:
                raise ValueError("bad after/direction for %r" % mode)
        with self._lock:
            self._mode = (mode, p)

    @property
    def mode(self):
        with self._lock:
            return self._mode[0]

    def stats(self):
        """Counters: accepted, refused (over max_connections or target down), up and down
        (bytes forwarded), cut and reset (connections ended by the proxy), open."""
        with self._lock:
            d = dict(self._stats)
            d["open"] = len(self._conns)
            return d

    def drop_connections(self, how="close"):
        """Close every open connection now (how = "close" or "reset")."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.kill(how)

    def start(self):
        if self._started:
            return self
        self._started = True
        self._deadline = time.monotonic() + self.max_seconds
        self._spawn(self._accept_loop)
        return self

    def stop(self):
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self.drop_connections()
        me = threading.current_thread()
        for t in list(self._threads):
            if t is not me:
                t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _forget(self, conn):
        with self._lock:
            self._conns.discard(conn)

    def _count(self, key, n=1):
        with self._lock:
            self._stats[key] += n

    def _accept_loop(self):
        while not self._stop.is_set():
            if time.monotonic() > self._deadline:
                # Bounded lifetime: stop by ourselves.
                self._spawn(self.stop)
                return
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                full = len(self._conns) >= self.max_connections
                mode = self._mode[0]
            if full:
                self._count("refused")
                client.close()
                continue
            conn = _Conn(self, client)
            with self._lock:
                self._conns.add(conn)
                self._stats["accepted"] += 1
            if mode == "blackhole":
                self._spawn(self._hold, conn)
            else:
                self._spawn(self._open, conn)

    def _hold(self, conn):
        """Blackhole: read and drop until the client goes away or we stop."""
        while not self._stop.is_set():
            try:
                if not conn.client.recv(self.chunk):
                    break
            except OSError:
                break
        conn.kill()

    def _open(self, conn):
        try:
            target = socket.create_connection(self.target, timeout=self.connect_timeout)
        except OSError:
            self._count("refused")
            conn.kill("reset")
            return
        target.settimeout(None)
        with conn.lock:
            if conn.closed:
                target.close()
                return
            conn.target = target
        self._spawn(self._pump, conn, conn.client, target, "up")
        self._pump(conn, target, conn.client, "down")

    def _sleep(self, seconds):
        """Sleep, but wake at stop; returns False when stopping."""
        return not self._stop.wait(seconds)

    def _pump(self, conn, src, dst, direction):
        while not self._stop.is_set():
            try:
                data = src.recv(self.chunk)
            except OSError:
                break
            if conn.closed:
                return
            if not data:
                # Half-close: pass the EOF on; the connection ends when both sides are done.
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                with conn.lock:
                    conn.half_closed += 1
                    done = conn.half_closed >= 2
                if done:
                    conn.kill()
                return
            with self._lock:
                mode, p = self._mode
            if mode == "blackhole":
                continue
            if mode == "delay" and p["ms"] > 0:
                if not self._sleep(p["ms"] / 1000.0):
                    break
            end = None
            reserved = False
            if mode in ("cut", "reset") and p["direction"] in (direction, "both"):
                # Reserve the bytes under the lock so two directions never pass N together.
                with conn.lock:
                    take = min(max(p["after"] - conn.forwarded(p["direction"]), 0), len(data))
                    conn.counted[direction] += take
                reserved = True
                if take < len(data):
                    data = data[:take]
                    end = mode
            try:
                if mode == "throttle":
                    self._send_throttled(conn, dst, data, direction, p["rate"])
                else:
                    self._send(conn, dst, data, direction, count_conn=not reserved)
            except OSError:
                break
            if end:
                self._count(end)
                conn.kill("reset" if end == "reset" else "close")
                return
        conn.kill()

    def _send(self, conn, dst, data, direction, count_conn=True):
        if not data:
            return
        dst.sendall(data)
        if count_conn:
            with conn.lock:
                conn.counted[direction] += len(data)
        self._count(direction, len(data))

    def _send_throttled(self, conn, dst, data, direction, rate):
        # Slices of about 1/20 s worth of data, each followed by the time it is worth.
        piece = max(1, min(len(data), rate // 20))
        for i in range(0, len(data), piece):
            part = data[i:i + piece]
            self._send(conn, dst, part, direction)
            if not self._sleep(len(part) / float(rate)):
                raise OSError("proxy stopping")
