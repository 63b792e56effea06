"""A real Redis Sentinel deployment for the tests (README, "Redis Sentinel"): one master, one
replica (`--replicaof`) and three sentinels (`redis-sentinel`, quorum 2, down-after 1 s,
failover-timeout 5 s), all on 127.0.0.1 with free TCP ports (sentinels speak TCP only). Each
process is started and stopped by its PID; config files live in a temporary directory (a
sentinel rewrites its own). `Monitor` records what a node runs (MONITOR), to prove what was
or was not sent to it.

With `TLSFiles`, the same deployment over TLS only (README, "Redis Sentinel", rediss-sentinel://):
every node and sentinel has `port 0` and a `tls-port`, requires client certificates
(`tls-auth-clients yes`) and replicates and monitors over TLS (`tls-replication yes`); the
tests' own commands go over TLS too.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import require_tool, short_tmpdir, stop_pid

MASTER_NAME = "m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TLSFiles:
    """The PEM files of a TLS deployment: the CA, the certificate every node serves (and presents
    as a client to the others), the sentinels' (the nodes' unless given), and the client
    certificate of the tests. `auth_clients`: the servers' `tls-auth-clients` (`yes`: a client
    without a certificate is refused; `optional`: one is checked if given)."""

    def __init__(self, ca: str, cert: str, key: str, client_cert: str, client_key: str,
                 sentinel_cert: str | None = None, sentinel_key: str | None = None, auth_clients: str = "yes"):
        self.ca, self.cert, self.key, self.client_cert, self.client_key = ca, cert, key, client_cert, client_key
        self.sentinel_cert, self.sentinel_key = sentinel_cert or cert, sentinel_key or key
        self.auth_clients = auth_clients
        self._context: ssl.SSLContext | None = None

    def server_settings(self, port: int, sentinel: bool = False) -> list[tuple[str, str]]:
        cert, key = (self.sentinel_cert, self.sentinel_key) if sentinel else (self.cert, self.key)
        return [("port", "0"), ("tls-port", str(port)), ("tls-cert-file", cert), ("tls-key-file", key),
                ("tls-ca-cert-file", self.ca), ("tls-auth-clients", self.auth_clients), ("tls-replication", "yes")]

    def redis_py(self) -> dict:
        return {"ssl": True, "ssl_ca_certs": self.ca, "ssl_certfile": self.client_cert, "ssl_keyfile": self.client_key,
                "ssl_check_hostname": False}

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        # One context for every connection: the cluster's health polls open dozens a second.
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.ca)
            self._context.check_hostname = False
            self._context.load_cert_chain(self.client_cert, self.client_key)
        return self._context.wrap_socket(sock)


def tcp_call(port: int, *args, timeout: float = 2.0, tls: TLSFiles | None = None):
    """One command over a fresh TCP (or, with `tls`, TLS) connection, parsed with redis-py (None
    if unreachable)."""
    import redis
    try:
        c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                        **(tls.redis_py() if tls else {}))
        try:
            return c.execute_command(*args)
        finally:
            c.close()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None


def wait_for(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("%s: not within %.1f s (last %r)" % (what, timeout, last))


class Node:
    """A redis-server on 127.0.0.1:<port>, restartable on that port."""

    def __init__(self, binary: str, root: str, name: str, port: int, replicaof: int | None = None,
                 tls: TLSFiles | None = None):
        self.binary, self.name, self.port, self.tls = binary, name, port, tls
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.start(replicaof)

    def start(self, replicaof: int | None = None):
        assert self.proc is None or self.proc.poll() is not None, "%s still running" % self.name
        self.generation += 1
        log = open(os.path.join(self.dir, "redis-%d.log" % self.generation), "wb")
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no", "--repl-diskless-sync", "no"]
        for k, v in (self.tls.server_settings(self.port) if self.tls else [("port", str(self.port))]):
            args += ["--" + k, v]
        if replicaof is not None:
            args += ["--replicaof", "127.0.0.1", str(replicaof)]
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(lambda: self.call("PING") is not None, 10, "%s accepting on %d" % (self.name, self.port))

    def call(self, *args):
        return tcp_call(self.port, *args, tls=self.tls)

    def role(self) -> str | None:
        r = self.call("ROLE")
        return r[0].decode() if r else None

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, 9)
            self.proc.wait(5)

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc)


class Sentinel:
    def __init__(self, binary: str, root: str, index: int, master_port: int, tls: TLSFiles | None = None):
        self.port = free_port()
        self.tls = tls
        self.dir = os.path.join(root, "sentinel-%d" % index)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write("bind 127.0.0.1\ndaemonize no\ndir %s\n" % self.dir)
            for k, v in (tls.server_settings(self.port, sentinel=True) if tls else [("port", str(self.port))]):
                f.write("%s %s\n" % (k, v))
            f.write("sentinel monitor %s 127.0.0.1 %d 2\n" % (MASTER_NAME, master_port))
            f.write("sentinel down-after-milliseconds %s 1000\n" % MASTER_NAME)
            f.write("sentinel failover-timeout %s 5000\n" % MASTER_NAME)
            f.write("sentinel parallel-syncs %s 1\n" % MASTER_NAME)
        log = open(os.path.join(self.dir, "sentinel.log"), "wb")
        self.proc = subprocess.Popen([binary, self.conf], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(lambda: self.call("PING") is not None, 10, "sentinel accepting on %d" % self.port)

    def call(self, *args):
        return tcp_call(self.port, *args, tls=self.tls)

    def master_port(self) -> int | None:
        r = self.call("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return int(r[1]) if r else None

    def stop(self):
        stop_pid(self.proc)


class SentinelSet:
    """Master + replica + 3 sentinels; `nodes` keyed by port. With `tls`, TLS only."""

    def __init__(self, server: str, sentinel: str, tls: TLSFiles | None = None):
        self.root = short_tmpdir("rit-sentinel-")
        self.tls = tls
        a, b = free_port(), free_port()
        self.nodes = {a: Node(server, self.root, "node-a", a, tls=tls)}
        self.sentinels: list[Sentinel] = []
        try:
            self.nodes[b] = Node(server, self.root, "node-b", b, replicaof=a, tls=tls)
            self.sentinels = [Sentinel(sentinel, self.root, i, a, tls=tls) for i in range(3)]
            self.wait_healthy(a, 30)
        except Exception:
            self.stop()
            raise

    @property
    def url(self) -> str:
        scheme = "rediss-sentinel" if self.tls else "redis-sentinel"
        return "%s://%s/%s" % (scheme, ",".join("127.0.0.1:%d" % s.port for s in self.sentinels), MASTER_NAME)

    def master_port(self) -> int:
        return next(p for p, n in self.nodes.items() if n.role() == "master")

    def other(self, port: int) -> Node:
        return next(n for p, n in self.nodes.items() if p != port)

    def wait_healthy(self, master: int, timeout: float):
        """Every sentinel names `master`, knows the other two sentinels and a replica in sync, and
        both nodes say so (ROLE): a failover can start."""
        replica = self.other(master).port

        def ok():
            if self.nodes[master].role() != "master":
                return False
            info = self.nodes[replica].call("INFO", "replication")
            if not info or info.get("master_link_status") != "up" or int(info.get("master_port", 0)) != master:
                return False
            for s in self.sentinels:
                if s.master_port() != master:
                    return False
                others = s.call("SENTINEL", "sentinels", MASTER_NAME) or []
                replicas = s.call("SENTINEL", "replicas", MASTER_NAME) or []
                good = [r for r in replicas if _field(r, "flags") == "slave" and _field(r, "master-link-status") == "ok"
                        and int(_field(r, "port") or 0) == replica]
                if len(others) != 2 or not good:
                    return False
            return True

        wait_for(ok, timeout, "sentinel deployment healthy with master %d" % master, interval=0.1)

    def stop(self):
        for s in self.sentinels:
            s.stop()
        for n in self.nodes.values():
            n.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _field(entry, name: str):
    """A field of a SENTINEL replicas/sentinels entry (redis-py gives a dict of bytes)."""
    if isinstance(entry, dict):
        v = entry.get(name.encode(), entry.get(name))
    else:
        items = list(entry)
        v = dict(zip(items[::2], items[1::2])).get(name.encode())
    return v.decode() if isinstance(v, bytes) else v


SWITCH_FRAME = re.compile(rb"\*3\r\n\$7\r\nmessage\r\n\$14\r\n\+switch-master\r\n\$(\d+)\r\n")


class SwitchListener:
    """Subscribed to `+switch-master` on every sentinel; records (monotonic time, payload). The
    earliest of the three for one switch is when the failover became known."""

    def __init__(self, sentinels: list[Sentinel], tls: TLSFiles | None = None):
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = False
        self._socks = []
        self._threads = []
        for s in sentinels:
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=2)
            if tls:
                sock = tls.wrap(sock)
            sock.settimeout(0.2)
            sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n")
            self._socks.append(sock)
            t = threading.Thread(target=self._read, args=(sock,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, sock):
        buf = b""
        while not self._stop:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            buf += data
            while True:
                m = SWITCH_FRAME.search(buf)
                if not m or len(buf) < m.end() + int(m.group(1)) + 2:
                    break
                payload = buf[m.end():m.end() + int(m.group(1))].decode()
                buf = buf[m.end() + int(m.group(1)) + 2:]
                with self._lock:
                    self.events.append((now, payload))

    def first_since(self, since: float, new_port: int) -> float | None:
        with self._lock:
            times = [t for t, p in self.events if t >= since and p.split()[-1] == str(new_port)]
        return min(times) if times else None

    def close(self):
        self._stop = True
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


class Monitor:
    """MONITOR on one node: (wall time, client address, command name) of what it runs. Sentinel's
    reconfiguration of a node ends with `CLIENT KILL TYPE normal`, which cuts MONITOR clients
    too: the monitor reconnects (within 50 ms; a node being reconfigured by Sentinel kills the
    relays' connections in the same command, and they come back only through a ROLE check)."""

    def __init__(self, port: int):
        self.port = port
        self.lines: list[tuple[float, str, str, str]] = []
        self.reconnects = 0
        self._lock = threading.Lock()
        self._stop = False
        self.sock = self._connect(deadline=time.monotonic() + 20)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _connect(self, deadline: float):
        # A replica loading its first sync answers -LOADING: MONITOR is retried until +OK (nothing
        # can run on the node meanwhile, so nothing is missed).
        while True:
            first = b""
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
                while not first.endswith(b"\r\n"):
                    chunk = sock.recv(1)
                    if not chunk:
                        break
                    first += chunk
                if first == b"+OK\r\n":
                    sock.settimeout(0.2)
                    return sock
                sock.close()
            except OSError:
                pass
            if self._stop or time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _read(self):
        buf = b""
        while not self._stop:
            data = b""
            try:
                data = self.sock.recv(1 << 20) if self.sock else b""
            except socket.timeout:
                continue
            except OSError:
                pass
            if not data:
                if self.sock:
                    self.sock.close()
                self.sock = self._connect(deadline=time.monotonic() + 10)
                if self.sock is None:
                    return
                self.reconnects += 1
                buf = b""
                continue
            buf += data
            *lines, buf = buf.split(b"\r\n")
            for line in lines:
                # +1700000000.123456 [0 127.0.0.1:53422] "PUBLISH" "flow" "…"
                if not line.startswith(b"+") or b" [" not in line:
                    continue
                try:
                    ts, rest = line[1:].split(b" [", 1)
                    addr = rest.split(b"]", 1)[0].split(b" ", 1)[1].decode()
                    args = rest.split(b"] \"", 1)[1].split(b"\" \"")
                    command = args[0].split(b"\"", 1)[0].decode().upper()
                    first = args[1].split(b"\"", 1)[0].decode("utf-8", "replace") if len(args) > 1 else ""
                except (IndexError, ValueError):
                    continue
                with self._lock:
                    self.lines.append((float(ts), addr, command, first))

    def publishes(self, after_wall: float, before_wall: float = float("inf"), excluding_port: int | None = None,
                  channel: str | None = None) -> list[tuple[float, str, str, str]]:
        """PUBLISHes (to `channel`, if given) run between the two wall times (time.time()), not
        counting those replicated from the node's master (whose connection comes from the master's
        own port)."""
        with self._lock:
            return [l for l in self.lines if l[2] == "PUBLISH" and after_wall < l[0] < before_wall
                    and (channel is None or l[3] == channel)
                    and (excluding_port is None or not l[1].endswith(":%d" % excluding_port))]

    def close(self):
        self._stop = True
        self.thread.join(3)
        try:
            if self.sock:
                self.sock.close()
        except OSError:
            pass


@pytest.fixture(scope="session")
def redis_sentinel_binary() -> str:
    return require_tool("redis-sentinel", "apt-get install redis-sentinel")


@pytest.fixture
def sentinel_set(redis_server_binary, redis_sentinel_binary):
    pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")
    s = SentinelSet(redis_server_binary, redis_sentinel_binary)
    yield s
    s.stop()
