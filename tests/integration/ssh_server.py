"""A loopback OpenSSH server for the ssh repository tests (Debian's openssh-server).

``SshServer`` runs /usr/sbin/sshd on a free 127.0.0.1 port with its own ed25519 host key and
sshd_config in a temporary directory (UsePAM yes so that the locked postgres account can log in
with a key, StrictModes no for keys under /tmp, AuthorizedKeysFile in the temporary directory).
It makes a client key pair for postgres, a known_hosts file naming the server's key, and an empty
repository directory owned by postgres: the "backup server" side.

Fixtures (import them into a test module): ``ssh_server`` (session) and ``remote_helper`` (session,
the absolute path of walvault-remote, which the server runs as remote_command).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from utils import chown_pg, free_port, make_pg_dir, wait_until

SSHD = "/usr/sbin/sshd"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _keygen(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                   check=True, stdin=subprocess.DEVNULL)


class SshServer:
    def __init__(self, basedir):
        self.dir = tempfile.mkdtemp(prefix="sshd-", dir=basedir)
        os.chmod(self.dir, 0o755)
        self.port = None
        self.proc = None
        self.log = os.path.join(self.dir, "sshd.log")
        self.host_key = os.path.join(self.dir, "host_ed25519")
        _keygen(self.host_key, "walvault-test-host")
        # The client side, owned by postgres (ssh refuses a private key others can read).
        self.client_key = os.path.join(self.dir, "id_ed25519")
        _keygen(self.client_key, "postgres@walvault-test")
        chown_pg(self.client_key)
        chown_pg(self.client_key + ".pub")
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        shutil.copy(self.client_key + ".pub", self.authorized_keys)
        os.chmod(self.authorized_keys, 0o644)
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.wrong_known_hosts = os.path.join(self.dir, "wrong_known_hosts")
        self.config = os.path.join(self.dir, "sshd_config")

    def _write_known_hosts(self):
        with open(self.host_key + ".pub") as f:
            key = " ".join(f.read().split()[:2])
        with open(self.known_hosts, "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (self.port, key))
        other = os.path.join(self.dir, "other_host_key")
        if not os.path.exists(other):
            _keygen(other, "not-the-server")
        with open(other + ".pub") as f:
            wrong = " ".join(f.read().split()[:2])
        with open(self.wrong_known_hosts, "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (self.port, wrong))
        for p in (self.known_hosts, self.wrong_known_hosts):
            os.chmod(p, 0o644)

    def start(self, port=None):
        self.port = port or self.port or free_port()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        with open(self.config, "w") as f:
            f.write("\n".join([
                "Port %d" % self.port,
                "ListenAddress 127.0.0.1",
                "HostKey %s" % self.host_key,
                "PidFile %s" % os.path.join(self.dir, "sshd.pid"),
                "UsePAM yes",
                "StrictModes no",
                "AuthorizedKeysFile %s" % self.authorized_keys,
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin no",
                "AllowUsers postgres",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PrintMotd no",
                "LogLevel VERBOSE",
                "",
            ]))
        self._write_known_hosts()
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf)
        logf.close()

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited with %s:\n%s" % (self.proc.returncode,
                                                                 self.log_text()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, timeout=30, what="sshd listening on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def ssh_argv(self, remote_cmd, known_hosts=None):
        """An ssh command line as the driver builds it (for tests that speak frames themselves)."""
        return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=%s" % (known_hosts or self.known_hosts),
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-T",
                "-p", str(self.port), "-i", self.client_key, "-o", "IdentitiesOnly=yes",
                "-l", "postgres", "--", "127.0.0.1", remote_cmd]

    def repo_section(self, repo_path, helper, index=1, **over):
        keys = {
            "type": "ssh",
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": "postgres",
            "path": repo_path,
            "identity_file": self.client_key,
            "known_hosts": self.known_hosts,
            "remote_command": helper,
        }
        keys.update({k: str(v) for k, v in over.items() if v is not None})
        return "[repo%d]\n%s\n" % (index, "".join("%s = %s\n" % kv for kv in keys.items()))

    def cleanup(self):
        self.stop()
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def _find_helper(bindir):
    """walvault-remote beside the binaries under test, else in a build directory of the tree."""
    cands = [os.path.join(bindir, "walvault-remote")]
    env = os.environ.get("WALVAULT_BIN")
    if env:
        cands.append(os.path.join(env, "walvault-remote"))
    builds = [os.path.join(ROOT, d, "walvault-remote") for d in sorted(os.listdir(ROOT))
              if d.startswith("build")]
    cands += sorted((b for b in builds if os.path.exists(b)), key=os.path.getmtime, reverse=True)
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    return None


@pytest.fixture(scope="session")
def remote_helper(bindir, basetemp):
    """Absolute path of walvault-remote, in a directory the postgres account can reach."""
    src = _find_helper(bindir)
    if not src:
        pytest.fail("walvault-remote not found beside %s nor in a build directory" % bindir)
    d = make_pg_dir(os.path.join(basetemp, "remote-bin"), 0o755)
    dst = os.path.join(d, "walvault-remote")
    shutil.copy2(src, dst)
    os.chmod(dst, 0o755)
    return dst


@pytest.fixture(scope="session")
def ssh_server(basetemp):
    if not os.access(SSHD, os.X_OK):
        pytest.fail("%s not found: install Debian's openssh-server" % SSHD)
    srv = SshServer(basetemp)
    srv.start()
    yield srv
    srv.cleanup()
