"""Fixtures for the pubsub-relay integration tests.

* `relay_binary`: $RELAY_BINARY, else `swift build --product pubsub-relay` in the package root
  and `$(swift build --show-bin-path)/pubsub-relay`. A missing toolchain or a failing build is
  reported as a skip with the reason.
* `redis_server` (session): a real redis-server on a temporary Unix socket, stopped by PID.
* `relay` (session): a relay in local mode on a temporary socket, stopped by PID.
* `relay_factory` / `redis_factory` (per test): start more of them with custom settings.

Every process is started by us and stopped by its PID (SIGTERM, then SIGKILL after 5 s).
Sockets live in short /tmp directories (sun_path is 108 bytes).

DIFF_SELFTEST=1 makes the "relay" side of the differential and client tests a second
redis-server: a way to check the harness itself (every case must then pass).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# The PostgreSQL server fixtures (postgres_server, pg_db) and the Redis Cluster ones (redis_cluster, cluster_factory).
pytest_plugins = ["pg_fixtures", "cluster_fixtures"]

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 1800


_tmpdirs: list[str] = []


def short_tmpdir(prefix: str) -> str:
    """A short directory under /tmp (socket paths must fit in 108 bytes); removed at session end."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    _tmpdirs.append(d)
    return d


@pytest.fixture(scope="session", autouse=True)
def _remove_tmpdirs():
    yield
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


def wait_accepting(path: str, proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Waits until `path` accepts a connection and answers PING."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before accepting on %s" % (proc.returncode, path))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(path)
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError("%s not accepting after %.0fs (%s)" % (path, timeout, last))


def stop_pid(proc: subprocess.Popen, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
    """`sig` (SIGTERM) by PID, wait, then SIGKILL by PID. Returns the exit code."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    return proc.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- redis-server ---------------------------------------------------------------------------

class RedisServer:
    kind = "redis"

    def __init__(self, binary: str, extra: list[str] | None = None):
        self.dir = short_tmpdir("rit-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.log = open(os.path.join(self.dir, "redis.log"), "w+b")
        args = [binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        self.proc = subprocess.Popen(args + (extra or []), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        try:
            wait_accepting(self.socket, self.proc)
        except Exception:
            self.stop()
            raise

    def stop(self):
        stop_pid(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def require_tool(name: str, install_hint: str) -> str:
    """The path of `name` on PATH, or a skip saying how to install it."""
    path = shutil.which(name)
    if not path:
        pytest.skip("%s not installed (%s)" % (name, install_hint))
    return path


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    return require_tool("redis-server", "apt-get install redis-server")


@pytest.fixture(scope="session")
def redis_cli() -> str:
    return require_tool("redis-cli", "apt-get install redis-tools")


@pytest.fixture(scope="session")
def redis_server(redis_server_binary):
    server = RedisServer(redis_server_binary)
    yield server
    server.stop()


@pytest.fixture
def redis_factory(redis_server_binary):
    started: list[RedisServer] = []

    def start(extra: list[str] | None = None) -> RedisServer:
        s = RedisServer(redis_server_binary, extra)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


# ---- the relay ------------------------------------------------------------------------------

_build_result: dict = {}


@pytest.fixture(scope="session")
def relay_binary() -> str:
    override = os.environ.get("RELAY_BINARY")
    if override:
        if not os.access(override, os.X_OK):
            pytest.skip("RELAY_BINARY=%s is not an executable file" % override)
        return override
    if "path" in _build_result:
        return _build_result["path"]
    if "skip" in _build_result:
        pytest.skip(_build_result["skip"])
    swift = shutil.which("swift")
    if not swift:
        _build_result["skip"] = "swift toolchain not found and RELAY_BINARY not set"
        pytest.skip(_build_result["skip"])
    try:
        build = subprocess.run([swift, "build", "--product", "pubsub-relay"], cwd=PACKAGE_ROOT,
                               capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        _build_result["skip"] = "swift build timed out after %ds" % BUILD_TIMEOUT
        pytest.skip(_build_result["skip"])
    if build.returncode != 0:
        tail = "\n".join((build.stdout + build.stderr).strip().splitlines()[-15:])
        _build_result["skip"] = "swift build failed (exit %d):\n%s" % (build.returncode, tail)
        pytest.skip(_build_result["skip"])
    bin_path = subprocess.run([swift, "build", "--show-bin-path"], cwd=PACKAGE_ROOT,
                              capture_output=True, text=True, timeout=120).stdout.strip()
    path = os.path.join(bin_path, "pubsub-relay")
    if not os.access(path, os.X_OK):
        _build_result["skip"] = "swift build succeeded but %s is missing" % path
        pytest.skip(_build_result["skip"])
    _build_result["path"] = path
    return path


def relay_env(socket_path: str | None, extra: dict | None = None) -> dict:
    """A clean environment: no RELAY_* / REDIS_URL / DATABASE_URL inherited from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELAY_") and k not in ("REDIS_URL", "DATABASE_URL", "LISTEN_FDS", "LISTEN_PID",
                                                        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    if socket_path is not None:
        env["RELAY_SOCKET"] = socket_path
    env["RELAY_METRICS_ADDR"] = ""
    env["RELAY_LOG_LEVEL"] = "info"
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class Relay:
    kind = "relay"

    def __init__(self, binary: str, env: dict | None = None, socket_path: str | None = None,
                 wait: bool = True, args: list[str] | None = None, nofile: int | None = None):
        """`nofile`: RLIMIT_NOFILE soft = hard for the relay (it raises its soft limit to the hard
        one at start-up, so both are set)."""
        self.dir = short_tmpdir("rit-relay-")
        self.socket = socket_path or os.path.join(self.dir, "relay.sock")
        self.stderr_path = os.path.join(self.dir, "relay.stderr")
        self.stderr_file = open(self.stderr_path, "w+b")

        def limit():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen([binary] + (args or []), env=relay_env(self.socket, env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_file, cwd=self.dir, preexec_fn=limit)
        self.pid = self.proc.pid
        if wait:
            try:
                wait_accepting(self.socket, self.proc)
            except Exception as e:
                self.stop()
                raise RuntimeError("%s\nrelay stderr:\n%s" % (e, self.stderr()))

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> int | None:
        rc = stop_pid(self.proc)
        self.stderr_file.close()
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def relay(relay_binary):
    r = Relay(relay_binary)
    yield r
    r.cleanup()


@pytest.fixture
def relay_factory(relay_binary):
    started: list[Relay] = []

    def start(env: dict | None = None, socket_path: str | None = None, wait: bool = True,
              args: list[str] | None = None, nofile: int | None = None) -> Relay:
        r = Relay(relay_binary, env, socket_path, wait, args, nofile)
        started.append(r)
        return r

    yield start
    for r in started:
        r.cleanup()


@pytest.fixture(scope="session")
def relay_or_selftest(request, redis_server_binary):
    """The server under test for differential/client tests: the relay, or (DIFF_SELFTEST=1) a
    second redis-server to validate the harness."""
    if os.environ.get("DIFF_SELFTEST") == "1":
        s = RedisServer(redis_server_binary)
        s.kind = "redis-selftest"
        yield s
        s.stop()
    else:
        yield request.getfixturevalue("relay")


@pytest.fixture(params=["redis", "relay"])
def any_server(request):
    """Runs a client test against redis-server (reference) and against the relay."""
    if request.param == "redis":
        return request.getfixturevalue("redis_server")
    return request.getfixturevalue("relay_or_selftest")


# ---- Redis backplane helpers ----------------------------------------------------------------------
#
# `RedisAt`: a redis-server on a chosen Unix socket path that can be SIGKILLed / SIGSTOPped and
# started again on the same path (fault tests). `relay_info` / `wait_redis_state`: bounded polls of
# `INFO upstreams` on a relay. `backplane_relay`: a relay joined to a Redis through REDIS_URL,
# returned once INFO says `redis_state:up`.

def relay_info(path: str, section: str = "upstreams", timeout: float = 3.0) -> dict:
    """`INFO <section>` asked on a relay (or Redis) socket, as a dict of its `key:value` lines."""
    from resputil import Conn, parse1  # local import: resputil is a sibling module
    with Conn(path, timeout=timeout) as c:
        c.send(b"*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n" % (len(section), section.encode()))
        body = parse1(c.read_frame(timeout))
    if isinstance(body, tuple):
        raise AssertionError("INFO %s answered %r" % (section, body))
    out = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def wait_until(pred, timeout: float, interval: float = 0.02):
    """Calls pred() until it returns a truthy value or `timeout` seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def wait_redis_state(relay, state: str = "up", timeout: float = 10.0, key: str = "redis_state") -> dict:
    """Polls `INFO upstreams` on `relay` (a Relay or a socket path) until `<key>:<state>`; returns
    the INFO dict, or fails with the last INFO seen and the relay's stderr tail."""
    path = relay if isinstance(relay, str) else relay.socket
    deadline = time.monotonic() + timeout
    info: dict = {}
    err = None
    while True:
        try:
            info = relay_info(path)
            err = None
            if info.get(key) == state:
                return info
        except (OSError, AssertionError) as e:
            err = e
        if time.monotonic() >= deadline:
            tail = "" if isinstance(relay, str) else "\n".join(relay.stderr().splitlines()[-15:])
            raise AssertionError("%s:%s not reached within %.1fs (last INFO upstreams %r, error %r)\nrelay stderr tail:\n%s"
                                 % (key, state, timeout, info, err, tail))
        time.sleep(0.02)


class RedisAt:
    """A redis-server on a chosen Unix socket path (default: a fresh one), restartable on that path."""

    kind = "redis"

    def __init__(self, binary: str, socket_path: str | None = None, extra: list[str] | None = None,
                 start: bool = True):
        self.binary = binary
        self.dir = short_tmpdir("rit-redisat-")
        self.socket = socket_path or os.path.join(self.dir, "redis.sock")
        self.extra = list(extra or [])
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self._logs: list = []
        if start:
            self.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> float:
        """Starts redis-server on self.socket; returns time.monotonic() when it first accepted."""
        assert not self.running(), "redis-server pid %d still running" % self.proc.pid
        self.generation += 1
        log = open(os.path.join(self.dir, "redis-%d.log" % self.generation), "w+b")
        self._logs.append(log)
        args = [self.binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"] + self.extra
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s; log:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1.0)
                    s.connect(self.socket)
                    s.sendall(b"*1\r\n$4\r\nPING\r\n")
                    reply = s.recv(64)
                    if reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH"):
                        return time.monotonic()
            except OSError as e:
                last = e
            time.sleep(0.005)
        raise RuntimeError("redis-server not accepting on %s after %.0fs (%s)" % (self.socket, timeout, last))

    def log_text(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis-%d.log" % self.generation), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill9(self):
        """SIGKILL by PID and reap (the socket file stays behind, as after a crash)."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def sigstop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def sigcont(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGCONT)

    def client(self, **kw):
        import redis  # redis-py
        kw.setdefault("socket_timeout", 5)
        return redis.Redis(unix_socket_path=self.socket, **kw)

    def stop(self):
        if self.proc is not None:
            self.sigcont()
            stop_pid(self.proc)
        for log in self._logs:
            log.close()
        self._logs = []


@pytest.fixture
def redis_at_factory(redis_server_binary):
    started: list[RedisAt] = []

    def start(socket_path: str | None = None, extra: list[str] | None = None, start: bool = True) -> RedisAt:
        s = RedisAt(redis_server_binary, socket_path, extra, start)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)


@pytest.fixture
def backplane_relay(relay_factory):
    """start(redis_url, env=None, wait_up=True): a relay with REDIS_URL set; with wait_up, returned
    only once `INFO upstreams` shows `redis_state:up` (bounded)."""

    def start(redis_url: str, env: dict | None = None, wait_up: bool = True, timeout: float = 10.0) -> Relay:
        e = {"REDIS_URL": redis_url}
        e.update(env or {})
        r = relay_factory(e)
        if wait_up:
            wait_redis_state(r, "up", timeout)
        return r

    return start
