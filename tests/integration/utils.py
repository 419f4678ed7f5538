"""Helpers for the integration suite: real PostgreSQL servers (15, and 16-18 where installed) and the
walvault binaries.

Everything PostgreSQL touches runs as the ``postgres`` user (the tests run as root), in directories
owned by it, on free loopback ports. Helpers poll (``wait_until``) instead of sleeping.
"""

import contextlib
import glob
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import time

PG_USER = "postgres"
PG_BINDIR = os.environ.get("PG_BINDIR") or (
    sorted(glob.glob("/usr/lib/postgresql/15/bin"))[-1:] or ["/usr/lib/postgresql/15/bin"])[0]

# Servers of other major versions: WALVAULT_PG<N>_BINDIR (contrib/pgversions.sh installs them and
# run.sh exports these), else a complete entry of its cache (/var/cache/walvault/pg/<N>.<minor>/,
# WALVAULT_PG_CACHE). 15 is PG_BINDIR (Debian's). The 16 and 17 builds hold only the server
# (postgres, initdb, pg_ctl); a Postgres of theirs runs Debian 15's client tools (psql, pgbench,
# pg_isready), which PostgreSQL keeps compatible with newer servers.
PG_VERSIONS = (15, 16, 17, 18)
PG_CACHE = os.environ.get("WALVAULT_PG_CACHE") or "/var/cache/walvault/pg"


def pg_version_bindir(major):
    """The bin directory of a PostgreSQL server of this major version, or None."""
    if major == 15:
        return PG_BINDIR if os.path.exists(os.path.join(PG_BINDIR, "initdb")) else None
    env = os.environ.get("WALVAULT_PG%d_BINDIR" % major)
    if env:
        return env if os.path.exists(os.path.join(env, "postgres")) else None
    done = [d for d in glob.glob(os.path.join(PG_CACHE, "%d.*" % major))
            if os.path.exists(os.path.join(d, ".walvault-complete"))]
    done.sort(key=lambda d: [int(x) for x in re.findall(r"\d+", os.path.basename(d))])
    return os.path.join(done[-1], "bin") if done else None


def pg_versions():
    """{major: bindir or None} for every version the suite knows."""
    return {v: pg_version_bindir(v) for v in PG_VERSIONS}


def need_pg_version(major):
    """The bindir of PostgreSQL `major`; a test without it fails under CI=true (the test command
    installs every version) and is skipped elsewhere, saying how to install it."""
    import pytest
    d = pg_version_bindir(major)
    if d:
        return d
    msg = ("PostgreSQL %d is not installed: run contrib/pgversions.sh as root, or set "
           "WALVAULT_PG%d_BINDIR to its bin directory" % (major, major))
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


def pg_version_tool(name, major):
    """A client tool that must match the server version it reads (pg_waldump, pg_controldata):
    that version's own, or None when its installation has none."""
    d = pg_version_bindir(major)
    p = os.path.join(d, name) if d else None
    return p if p and os.path.exists(p) else None

# The on-repository object format: a header, the payload, a 128-byte trailer. The header's fixed
# part is 64 bytes (all of a format-1 header); a format-2 header adds the name it is bound to and
# a check, and says its length at bytes 10..11 (obj_header_len).
OBJ_HEADER = 64
OBJ_TRAILER = 128


def obj_header_len(raw_or_path):
    """The header length of a stored object (its bytes, or a path to it)."""
    if isinstance(raw_or_path, (bytes, bytearray)):
        head = bytes(raw_or_path[:12])
    else:
        with open(raw_or_path, "rb") as f:
            head = f.read(12)
    return head[10] | head[11] << 8

_pw = pwd.getpwnam(PG_USER)
PG_UID, PG_GID = _pw.pw_uid, _pw.pw_gid

WAL_SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")


LOG_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def log_lines(text):
    """The non-empty lines of a program's stderr without their timestamp prefix (basebackup stamps
    its lines when stderr is not a terminal: "2026-12-02T12:00:00Z basebackup: error: ...")."""
    return [LOG_STAMP.sub("", ln) for ln in text.splitlines() if ln.strip()]


def pg_bin(name):
    return os.path.join(PG_BINDIR, name)


def chown_pg(path):
    os.chown(path, PG_UID, PG_GID)


def make_pg_dir(path, mode=0o700):
    """Create (or reuse) a directory owned by postgres."""
    os.makedirs(path, exist_ok=True)
    chown_pg(path)
    os.chmod(path, mode)
    return path


def _as_pg_kwargs():
    if os.geteuid() != 0:
        return {}
    return {"user": PG_UID, "group": PG_GID, "extra_groups": []}


def _env(extra=None):
    env = dict(os.environ)
    env.setdefault("LC_ALL", "C.UTF-8")
    env["HOME"] = _pw.pw_dir
    env["USER"] = PG_USER
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    return env


def run(cmd, *, as_postgres=True, check=True, env=None, cwd=None, timeout=300, input=None):
    """Run a command (as postgres by default) and return the CompletedProcess (text output)."""
    kwargs = _as_pg_kwargs() if as_postgres else {}
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(env),
                         cwd=cwd or "/", timeout=timeout, input=input,
                         stdin=None if input is not None else subprocess.DEVNULL, **kwargs)
    if check and res.returncode != 0:
        raise AssertionError("command failed (exit %d): %s\nstdout:\n%s\nstderr:\n%s" % (
            res.returncode, " ".join(map(str, cmd)), res.stdout, res.stderr))
    return res


def popen(cmd, *, as_postgres=True, env=None, cwd=None):
    """Start a command as postgres; the Popen's pid is the program itself (no runuser in between)."""
    kwargs = _as_pg_kwargs() if as_postgres else {}
    return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=_env(env), cwd=cwd or "/",
                            **kwargs)


def runuser(cmd, **kwargs):
    """The shell equivalent, for documentation and for commands that want a login-like user."""
    return run(["runuser", "-u", PG_USER, "--"] + list(cmd), as_postgres=False, **kwargs)


def wait_until(predicate, timeout=60, interval=0.05, what="condition"):
    """Poll predicate() until it returns a true value; return that value, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polling: remember and retry
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s%s" % (
                timeout, what, (": last error: %r" % last_exc) if last_exc else ""))
        time.sleep(interval)


_used_ports = set()


def free_port():
    """A free loopback TCP port in 10200..32767 not handed out before in this process."""
    for _ in range(1000):
        port = random.randint(10200, 32767)
        if port in _used_ports:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def tree_files(root):
    """Every regular file below root, as paths relative to it."""
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


class Walvault:
    """Runs the walvault binaries (as postgres) from one installation directory."""

    def __init__(self, bindir):
        self.bindir = bindir

    def exe(self, name):
        return os.path.join(self.bindir, name)

    def cmd(self, name, *args, config=None):
        c = [self.exe(name)]
        if config is not None:
            c += ["-c", str(config)]
        return c + [str(a) for a in args]

    def push(self, wal_path, *, config=None, env=None, cwd=None, args=None):
        argv = self.cmd("wal-push", *(args if args is not None else [wal_path]), config=config)
        return run(argv, check=False, env=env, cwd=cwd)

    def fetch(self, name, dest, *, config=None, env=None, cwd=None, args=None):
        argv = self.cmd("wal-fetch", *(args if args is not None else [name, dest]), config=config)
        return run(argv, check=False, env=env, cwd=cwd)

    def archive_command(self, config):
        return "%s -c %s %%p" % (self.exe("wal-push"), config)

    def restore_command(self, config):
        return "%s -c %s %%f %%p" % (self.exe("wal-fetch"), config)


class Repo:
    """A posix repository in a directory owned by postgres, with its configuration file."""

    def __init__(self, path, config_path, extra_config=""):
        self.path = path
        self.config = config_path
        make_pg_dir(path)
        self.write_config(extra_config)

    def write_config(self, extra=""):
        text = "[repo1]\ntype = posix\npath = %s\n" % self.path
        if extra:
            text = extra.rstrip("\n") + "\n\n" + text
        with open(self.config, "w") as f:
            f.write(text)
        chown_pg(self.config)

    def object_path(self, name):
        if name.endswith(".history"):
            return os.path.join(self.path, "wal", "history", name)
        return os.path.join(self.path, "wal", name[:16], name)

    def has(self, name):
        return os.path.isfile(self.object_path(name))

    def wal_names(self):
        """Names of every object stored under wal/ (final names only, not temporary files)."""
        names = set()
        base = os.path.join(self.path, "wal")
        for d, _, files in os.walk(base):
            for f in files:
                if re.match(r"^[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?$|^[0-9A-F]{8}\.history$",
                            f):
                    names.add(f)
        return names

    def segments(self):
        return sorted(n for n in self.wal_names() if WAL_SEGMENT_RE.match(n))

    def files(self):
        return tree_files(self.path)

    def copy_to(self, path, config_path):
        """A copy of this repository (objects and info) with its own configuration file."""
        shutil.copytree(self.path, path, symlinks=True)
        for d, dirs, files in os.walk(path):
            for x in dirs + files:
                os.lchown(os.path.join(d, x), PG_UID, PG_GID)
        chown_pg(path)
        r = Repo.__new__(Repo)
        r.path, r.config = path, config_path
        r.write_config()
        return r


class Postgres:
    """A PostgreSQL server run as postgres in its own directory, on a free loopback port: Debian's
    15 (PG_BINDIR), or with bindir that of another version (pg_version_bindir), whose missing
    client tools are taken from PG_BINDIR."""

    def __init__(self, basedir, name="pg", bindir=None):
        self.basedir = basedir
        self.bindir = bindir
        self.name = name
        self.datadir = os.path.join(basedir, name)
        self.logfile = os.path.join(basedir, name + ".log")
        self.port = free_port()
        self.log_mark = 0

    def bin(self, name):
        """A program of this server's installation, else Debian 15's (a client tool)."""
        if self.bindir and os.path.exists(os.path.join(self.bindir, name)):
            return os.path.join(self.bindir, name)
        return pg_bin(name)

    # --- setup -------------------------------------------------------------------------------
    def initdb(self, wal_segsize=16, extra=()):
        make_pg_dir(self.basedir, 0o755)
        run([self.bin("initdb"), "-D", self.datadir, "-U", PG_USER, "--auth=trust", "--no-sync",
             "-E", "UTF8", "--locale=C", "--wal-segsize=%d" % wal_segsize, *extra])
        self._base_conf()
        return self

    def from_basebackup_dir(self, backup_dir):
        """Take a copy of a pg_basebackup directory as this server's data directory."""
        make_pg_dir(self.basedir, 0o755)
        run(["cp", "-a", backup_dir, self.datadir])
        os.chmod(self.datadir, 0o700)
        self._base_conf()
        return self

    def _base_conf(self):
        self.conf(port=self.port, listen_addresses="127.0.0.1", unix_socket_directories="",
                  fsync="off", logging_collector="off", log_line_prefix="%m [%p] ",
                  max_wal_senders=4, wal_level="replica", log_min_messages="info",
                  archive_mode="off")

    def conf(self, **settings):
        """Append settings to postgresql.conf (later lines win)."""
        path = os.path.join(self.datadir, "postgresql.conf")
        with open(path, "a") as f:
            for k, v in settings.items():
                if isinstance(v, str):
                    v = "'%s'" % v.replace("'", "''")
                f.write("%s = %s\n" % (k, v))

    def touch(self, name):
        p = os.path.join(self.datadir, name)
        open(p, "a").close()
        chown_pg(p)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, wait=True):
        if not os.path.exists(self.logfile):
            open(self.logfile, "a").close()
            chown_pg(self.logfile)
        self.log_mark = os.path.getsize(self.logfile)
        argv = [self.bin("pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-o", "-c port=%d" % self.port]
        if wait:
            argv += ["-w", "-t", "120", "start"]
        else:
            argv += ["-W", "start"]
        run(argv, timeout=180)
        return self

    def stop(self, mode="fast", check=True):
        return run([self.bin("pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "-t", "120", "stop"],
                   check=check, timeout=180)

    def pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def running(self):
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie postmaster is not running; it is reaped by its parent (pg_ctl exited already).
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().split(") ", 1)[1][0] != "Z"
        except OSError:
            return False

    def kill9(self):
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not self.running(), timeout=30, what="postmaster to die")

    def cleanup(self):
        if self.running():
            self.stop(mode="immediate", check=False)
        if self.running():
            self.kill9()

    def promote(self):
        run([self.bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "120", "promote"], timeout=180)

    def wait_ready(self, timeout=120):
        wait_until(lambda: run([self.bin("pg_isready"), "-h", "127.0.0.1", "-p", self.port],
                               check=False).returncode == 0, timeout=timeout, what="server to accept")

    # --- queries -----------------------------------------------------------------------------
    def conn(self, dbname="postgres"):
        import psycopg2  # imported here so that collection works even without it
        c = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname=dbname,
                             connect_timeout=10)
        c.autocommit = True
        return c

    def sql(self, query, params=None, dbname="postgres"):
        with contextlib.closing(self.conn(dbname)) as c, c.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    def sql_value(self, query, params=None, dbname="postgres"):
        rows = self.sql(query, params, dbname)
        return rows[0][0] if rows else None

    def psql(self, query, dbname="postgres"):
        return run([self.bin("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                    "-p", self.port, "-U", PG_USER, "-d", dbname, "-c", query]).stdout.strip()

    def pgbench(self, *args):
        return run([self.bin("pgbench"), "-h", "127.0.0.1", "-p", self.port, "-U", PG_USER, *args,
                    "postgres"], timeout=600)

    def basebackup(self, dest, *args):
        run([self.bin("pg_basebackup"), "-h", "127.0.0.1", "-p", self.port, "-U", PG_USER, "-D", dest,
             "-c", "fast", "--no-sync", *args], timeout=600)

    def system_identifier(self):
        out = run([self.bin("pg_controldata"), "-D", self.datadir]).stdout
        return int(re.search(r"Database system identifier:\s+(\d+)", out).group(1))

    def switch_wal_and_wait_archived(self, timeout=120):
        """Close the current segment and wait until the archiver has archived it; return its name."""
        self.sql("create table if not exists wv_switch_marker (t timestamptz)")
        self.sql("insert into wv_switch_marker values (now())")
        name = self.sql_value("select pg_walfile_name(pg_switch_wal())")
        self.wait_archived(name, timeout)
        return name

    def wait_archived(self, name, timeout=120):
        def done():
            last, failed = self.sql("select coalesce(last_archived_wal, ''), failed_count "
                                    "from pg_stat_archiver")[0]
            return last >= name
        wait_until(done, timeout=timeout, what="%s archived (see server log)" % name)

    def archiver_stats(self):
        row = self.sql("select archived_count, failed_count, coalesce(last_archived_wal, ''), "
                       "coalesce(last_failed_wal, '') from pg_stat_archiver")[0]
        return dict(zip(("archived_count", "failed_count", "last_archived_wal", "last_failed_wal"),
                        row))

    # --- log -------------------------------------------------------------------------------
    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_since_start(self):
        return self.log()[self.log_mark:]


def table_checksum(pg):
    return (pg.sql_value("select md5(string_agg(aid::text || ':' || abalance::text, ',' order by aid))"
                         " from pgbench_accounts"),
            pg.sql_value("select sum(abalance) from pgbench_accounts"),
            pg.sql_value("select count(*) from pgbench_history"))


def restore_from(archived, pg_factory, wv, repo_config, name="restored"):
    """A new server from the base backup, with restore_command = wal-fetch; not started."""
    pg = pg_factory.new(name)
    pg.from_basebackup_dir(archived.backup_dir)
    pg.conf(restore_command=wv.restore_command(repo_config), archive_mode="off")
    pg.touch("recovery.signal")
    return pg

