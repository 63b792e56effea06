"""The optional TCP listener (RELAY_TCP_ADDR) and the password (RELAY_PASSWORD, RELAY_PASSWORD_FILE).

* Differential: the same bytes to `redis-server --requirepass secret` and to the relay with
  RELAY_PASSWORD=secret, over TCP and over the Unix socket, replies compared byte for byte
  (client ids normalized, as in test_differential.py).
* redis-py with redis://:secret@127.0.0.1:PORT and with the Unix socket, across both listeners.
* Start-up refusals (non-loopback address, ALLOW_REMOTE without a password, both password forms,
  an unreadable file), each one line and exit 78, from check-config too.
* INFO / metrics / health show the TCP listener; READY=1 only once both listen; socket activation
  with a Unix and a TCP socket (systemd-socket-activate); auth failures counted and their log
  rate-limited; TCP clients under the same output-buffer limits.

Every server is real and started here, on free ports picked at run time.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import Relay, require_tool, short_tmpdir, stop_pid, wait_until
from resputil import Conn, cmd, parse1

EX_CONFIG = 78
SECRET = "secret"
NOAUTH = ("ERR", "NOAUTH Authentication required.")


# ---- helpers -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_listening(port: int) -> bool:
    """Some socket listens on `port` (/proc/net/tcp{,6}: state 0A), without connecting to it."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


class TcpConn(Conn):
    """resputil.Conn over TCP."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 3.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False
        self.timeout = timeout


def connect(target, timeout: float = 3.0) -> Conn:
    """A connection to a Unix socket path or a TCP port on 127.0.0.1."""
    return TcpConn(target, timeout=timeout) if isinstance(target, int) else Conn(target, timeout=timeout)


def answers(target) -> bool:
    """The server takes a connection and answers PING (+PONG, or -NOAUTH with a password)."""
    try:
        with connect(target, timeout=1.0) as c:
            c.send(cmd("PING"))
            frames, status = c.read_frames(1, 1.0)
            return status == "ok" and (frames[0].startswith(b"+PONG") or frames[0].startswith(b"-NOAUTH"))
    except OSError:
        return False


def wait_answering(targets, proc: subprocess.Popen, stderr=lambda: "", timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    for t in targets:
        while not answers(t):
            if proc.poll() is not None:
                raise AssertionError("exited %s before answering on %s:\n%s" % (proc.returncode, t, stderr()))
            if time.monotonic() > deadline:
                raise AssertionError("%s not answering after %.0fs:\n%s" % (t, timeout, stderr()))
            time.sleep(0.03)


class RedisPass:
    """redis-server with a TCP port and a Unix socket, `--requirepass` when a password is given."""

    def __init__(self, binary: str, password: str | None):
        self.dir = short_tmpdir("rit-rpass-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = free_port()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        if password is not None:
            args += ["--requirepass", password]
        self.log = open(os.path.join(self.dir, "redis.log"), "w+b")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_answering([self.socket, self.port], self.proc)

    def stop(self):
        stop_pid(self.proc)
        self.log.close()


@pytest.fixture
def redis_pass(redis_server_binary):
    started = []

    def start(password: str | None = SECRET) -> RedisPass:
        r = RedisPass(redis_server_binary, password)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


@pytest.fixture
def relays(relay_binary):
    """Relays started with `env`; waits until the Unix socket (and the TCP port, if any) answer."""
    started: list[Relay] = []

    def start(env: dict, wait: bool = True, args: list[str] | None = None, binary: str | None = None) -> Relay:
        r = Relay(binary or relay_binary, env, wait=False, args=args)
        started.append(r)
        if wait:
            port = env.get("RELAY_TCP_ADDR")
            targets = [r.socket] + ([int(port.rsplit(":", 1)[1])] if port else [])
            wait_answering(targets, r.proc, r.stderr)
        return r

    yield start
    for r in started:
        r.cleanup()


def tcp_env(port: int, password: str | None = SECRET, **extra) -> dict:
    env = {"RELAY_TCP_ADDR": "127.0.0.1:%d" % port}
    if password is not None:
        env["RELAY_PASSWORD"] = password
    env.update(extra)
    return env


def run_exit(relay: Relay, timeout: float = 10.0) -> int:
    try:
        return relay.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("still running after %.0fs:\n%s" % (timeout, relay.stderr()))


def check_config(relay_binary: str, env: dict) -> subprocess.CompletedProcess:
    from conftest import relay_env
    return subprocess.run([relay_binary, "check-config"], env=relay_env(None, env), capture_output=True,
                          text=True, timeout=30, cwd=short_tmpdir("rit-cc-"))


def info(target, section: str, password: str | None = SECRET) -> dict:
    with connect(target) as c:
        if password is not None:
            assert c.call("AUTH", password) == "OK"
        body = c.call("INFO", section)
    out = {}
    for line in body.decode().splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---- differential: redis-server --requirepass vs the relay with RELAY_PASSWORD ---------------------

HELLO_ID = re.compile(rb"(\$2\r\nid\r\n):\d+\r\n")


def norm(frame: bytes) -> bytes:
    return HELLO_ID.sub(rb"\1:<ID>\r\n", frame)


# (bytes to send, number of reply frames). Pre-auth commands, wrong and right AUTHs, HELLO AUTH,
# RESET's de-authentication, then pub/sub commands once authenticated.
SCRIPT = [
    (cmd("PUBLISH", "ch", "early"), 1),
    (cmd("PING"), 1),
    (cmd("PING", "hi"), 1),
    (cmd("SUBSCRIBE", "ch"), 1),
    (cmd("PSUBSCRIBE", "c*"), 1),
    (cmd("ECHO", "x"), 1),
    (cmd("SELECT", "1"), 1),
    (cmd("CLIENT", "GETNAME"), 1),
    (cmd("PUBSUB", "NUMSUB", "ch"), 1),
    (cmd("NOSUCHCOMMAND", "a"), 1),
    (cmd("PUBLISH", "ch"), 1),
    (cmd("AUTH"), 1),
    (cmd("AUTH", "a", "b", "c"), 1),
    (cmd("HELLO"), 1),
    (cmd("HELLO", "3"), 1),
    (cmd("HELLO", "4"), 1),
    (cmd("HELLO", "x"), 1),
    (cmd("HELLO", "3", "FOO"), 1),
    (cmd("HELLO", "3", "SETNAME", "a b"), 1),
    (cmd("HELLO", "3", "SETNAME", "early-name"), 1),       # set, although the reply is NOAUTH
    (cmd("HELLO", "3", "SETNAME", "a b", "AUTH", "default", SECRET), 1),
    (cmd("HELLO", "3", "AUTH", "default", "wrong", "SETNAME", "never"), 1),
    (cmd("HELLO", "3", "AUTH", "default", "wrong"), 1),
    (cmd("HELLO", "3", "AUTH", "bob", SECRET), 1),
    (cmd("AUTH", "wrong"), 1),
    (cmd("AUTH", "default", "wrong"), 1),
    (cmd("AUTH", "bob", SECRET), 1),
    (cmd("AUTH", SECRET + " "), 1),
    (cmd("PING"), 1),
    (cmd("AUTH", SECRET), 1),
    (cmd("PING"), 1),
    (cmd("CLIENT", "GETNAME"), 1),
    (cmd("RESET"), 1),
    (cmd("HELLO", "3", "AUTH", "default", SECRET, "FOO"), 1),   # authenticated, then the syntax error
    (cmd("PING"), 1),
    (cmd("AUTH", "wrong"), 1),                       # stays authenticated
    (cmd("PING"), 1),
    (cmd("RESET"), 1),                               # back to unauthenticated
    (cmd("PUBLISH", "ch", "after-reset"), 1),
    (cmd("AUTH", "default", SECRET), 1),
    (cmd("PUBLISH", "ch", "m"), 1),
    (cmd("RESET"), 1),
    (cmd("HELLO", "3", "AUTH", "default", "wrong"), 1),
    (cmd("HELLO", "3", "AUTH", "default", SECRET, "SETNAME", "app"), 1),
    (cmd("CLIENT", "GETNAME"), 1),
    (cmd("HELLO", "2", "AUTH", "default", "wrong"), 1),   # keeps RESP3
    (cmd("PING"), 1),
    (cmd("SUBSCRIBE", "ch", "other"), 2),
    (cmd("PING"), 1),
    (cmd("UNSUBSCRIBE", "ch", "other"), 2),
    (cmd("HELLO", "2"), 1),
    (cmd("SUBSCRIBE", "ch"), 1),
    (cmd("AUTH", SECRET), 1),                        # RESP2 subscribed context
    (cmd("PING"), 1),
    (cmd("RESET"), 1),
    (cmd("SUBSCRIBE", "ch"), 1),
    # Pipelined: an AUTH and what follows it in one write.
    (cmd("AUTH", SECRET) + cmd("PING") + cmd("SUBSCRIBE", "ch") + cmd("PING"), 4),
    (cmd("QUIT"), 1),
]


def transcript(target, script) -> list:
    out = []
    with connect(target) as c:
        for data, n in script:
            c.send(data)
            frames, status = c.read_frames(n, 3.0)
            out.append((data, [norm(f) for f in frames], status))
        rest, closed = c.read_until_close(3.0)
        out.append(("after QUIT", rest, closed))
    return out


def compare(ref, got, what):
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r == g, "%s differs from redis-server --requirepass:\n  redis: %r\n  relay: %r" % (what, r, g)


@pytest.mark.parametrize("listener", ["tcp", "unix"])
def test_requirepass_differential(listener, redis_pass, relays):
    redis = redis_pass(SECRET)
    port = free_port()
    relay = relays(tcp_env(port))
    ref = transcript(redis.port if listener == "tcp" else redis.socket, SCRIPT)
    got = transcript(port if listener == "tcp" else relay.socket, SCRIPT)
    compare(ref, got, listener)
    # The exact texts, as Redis 7.0.15 sends them.
    first = {}
    for data, frames, _ in ref[:-1]:
        first.setdefault(data, frames)
    assert first[cmd("PING")][0] == b"-NOAUTH Authentication required.\r\n"
    assert first[cmd("HELLO", "3")][0] == (
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH "
        b"<user> <pass> option can be used to authenticate the client and select the RESP protocol "
        b"version at the same time\r\n")
    assert first[cmd("AUTH", "wrong")][0] == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


# Requests an unauthenticated client may not send: Redis answers and closes.
@pytest.mark.parametrize("data", [
    b"*11\r\n",                                           # more than 10 arguments
    b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",                    # a bulk over 16384 bytes
    b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$20000\r\n",
    b"AUTH secret\r\n*11\r\n$1\r\na\r\n",                 # allowed once authenticated (inline AUTH)
    b"*2\r\n$4\r\nAUTH\r\n$16384\r\n" + b"x" * 16384 + b"\r\nPING\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["mbulk-11", "bulk-16385", "bulk-20000", "authed-mbulk-11", "bulk-16384", "http"])
def test_unauthenticated_request_limits_differential(data, redis_pass, relays):
    redis = redis_pass(SECRET)
    port = free_port()
    relays(tcp_env(port))

    def run(target):
        with connect(target) as c:
            c.send(data)
            got, closed = c.read_until_close(1.0)
            return got, closed

    ref = run(redis.port)
    assert run(port) == ref, ref


def test_without_password_auth_is_as_redis_without_requirepass(redis_pass, relays):
    """No RELAY_PASSWORD: AUTH answers as a Redis whose default user is nopass; the TCP listener
    works and its start-up warning says any local user can connect."""
    redis = redis_pass(None)
    port = free_port()
    relay = relays(tcp_env(port, password=None))
    script = [(cmd("AUTH", "x"), 1), (cmd("AUTH", "default", "x"), 1), (cmd("AUTH", "bob", "x"), 1),
              (cmd("HELLO", "3", "AUTH", "default", "anything"), 1), (cmd("HELLO", "2", "AUTH", "bob", "x"), 1),
              (cmd("PING"), 1), (cmd("RESET"), 1), (cmd("PING"), 1), (cmd("QUIT"), 1)]
    ref = transcript(redis.port, script)
    compare(ref, transcript(port, script), "tcp")
    compare(ref, transcript(relay.socket, script), "unix")
    assert ref[0][1] == [b"-ERR AUTH <password> called without any password configured for the default user. "
                         b"Are you sure your configuration is correct?\r\n"]
    warnings = [l for l in relay.stderr().splitlines() if "warning" in l and "any local user can connect" in l]
    assert len(warnings) == 1, relay.stderr()
    assert "127.0.0.1:%d" % port in warnings[0]


# ---- real clients --------------------------------------------------------------------------------

def test_redis_py_across_tcp_and_unix(relays):
    redis = pytest.importorskip("redis")
    port = free_port()
    relay = relays(tcp_env(port))
    for protocol in (2, 3):
        tcp = redis.Redis.from_url("redis://:%s@127.0.0.1:%d" % (SECRET, port), protocol=protocol)
        unix = redis.Redis(unix_socket_path=relay.socket, password=SECRET, protocol=protocol)
        assert tcp.ping() and unix.ping()

        p_tcp = tcp.pubsub()
        p_tcp.subscribe("from-unix")
        p_unix = unix.pubsub()
        p_unix.psubscribe("from-t*")
        for p in (p_tcp, p_unix):
            assert wait_until(lambda: p.get_message(timeout=0.2) is not None, 5)
        assert unix.publish("from-unix", b"\x00bin\xff") == 1
        assert tcp.publish("from-tcp", b"hello") == 1
        m = wait_until(lambda: p_tcp.get_message(timeout=0.2), 5)
        assert m["type"] == "message" and m["channel"] == b"from-unix" and m["data"] == b"\x00bin\xff"
        m = wait_until(lambda: p_unix.get_message(timeout=0.2), 5)
        assert m["type"] == "pmessage" and m["channel"] == b"from-tcp" and m["data"] == b"hello"
        for c in (p_tcp, p_unix, tcp, unix):
            c.close()

    bad = redis.Redis.from_url("redis://:nope@127.0.0.1:%d" % port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        bad.ping()
    nopass = redis.Redis.from_url("redis://127.0.0.1:%d" % port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        nopass.publish("x", "y")


def test_redis_cli_over_tcp(relays, redis_cli):
    port = free_port()
    relays(tcp_env(port))
    res = subprocess.run([redis_cli, "-p", str(port), "--no-auth-warning", "-a", SECRET, "PUBLISH", "c", "m"],
                         capture_output=True, text=True, timeout=10)
    assert res.stdout.strip() == "0", (res.stdout, res.stderr)
    res = subprocess.run([redis_cli, "-p", str(port), "PING"], capture_output=True, text=True, timeout=10)
    assert "NOAUTH Authentication required." in res.stdout + res.stderr


# ---- start-up refusals ---------------------------------------------------------------------------

def one_config_error(relay: Relay, variable: str) -> str:
    assert run_exit(relay) == EX_CONFIG, relay.stderr()
    lines = [l for l in relay.stderr().splitlines() if l.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("pubsub-relay: invalid configuration: %s: " % variable), lines
    return lines[0]


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1.2.3", "[::]"])
def test_non_loopback_is_refused(address, relays, relay_binary):
    env = {"RELAY_TCP_ADDR": "%s:%d" % (address, free_port()), "RELAY_PASSWORD": SECRET}
    line = one_config_error(relays(env, wait=False), "RELAY_TCP_ADDR")
    assert "not a loopback address" in line and "127.0.0.1:6380" in line and "RELAY_TCP_ALLOW_REMOTE=yes" in line, line
    cc = check_config(relay_binary, env)
    assert cc.returncode == EX_CONFIG and cc.stderr.strip() == line, (cc.returncode, cc.stdout, cc.stderr)


@pytest.mark.parametrize("env, variable", [
    ({"RELAY_TCP_ADDR": "0.0.0.0:6390", "RELAY_TCP_ALLOW_REMOTE": "yes"}, "RELAY_TCP_ALLOW_REMOTE"),
    ({"RELAY_TCP_ALLOW_REMOTE": "yes"}, "RELAY_TCP_ALLOW_REMOTE"),
    ({"RELAY_TCP_ALLOW_REMOTE": "sure", "RELAY_PASSWORD": SECRET}, "RELAY_TCP_ALLOW_REMOTE"),
    ({"RELAY_TCP_ADDR": "localhost:6390"}, "RELAY_TCP_ADDR"),
    ({"RELAY_TCP_ADDR": "127.0.0.1"}, "RELAY_TCP_ADDR"),
    ({"RELAY_PASSWORD": SECRET, "RELAY_PASSWORD_FILE": "/etc/hostname"}, "RELAY_PASSWORD_FILE"),
    ({"RELAY_PASSWORD_FILE": "/nonexistent/relay-password"}, "RELAY_PASSWORD_FILE"),
], ids=["allow-remote-no-password", "allow-remote-alone", "allow-remote-bad-value", "host-name", "no-port",
        "both-password-forms", "unreadable-file"])
def test_config_refusals(env, variable, relays, relay_binary):
    line = one_config_error(relays(env, wait=False), variable)
    cc = check_config(relay_binary, env)
    assert cc.returncode == EX_CONFIG and cc.stderr.strip() == line, (cc.returncode, cc.stdout, cc.stderr)
    assert SECRET not in line


def test_allow_remote_with_password_listens(relays, relay_binary):
    port = free_port()
    env = {"RELAY_TCP_ADDR": "0.0.0.0:%d" % port, "RELAY_TCP_ALLOW_REMOTE": "yes", "RELAY_PASSWORD": SECRET}
    cc = check_config(relay_binary, env)
    assert cc.returncode == 0, cc.stderr
    assert "tcp 0.0.0.0:%d (reachable from other hosts" % port in cc.stdout and SECRET not in cc.stdout, cc.stdout
    relay = relays(env)
    with TcpConn(port) as c:
        assert c.call("PING") == NOAUTH
        assert c.call("AUTH", SECRET) == "OK"
        assert c.call("PING") == "PONG"
    assert any("reachable from other hosts" in l for l in relay.stderr().splitlines()), relay.stderr()


def test_password_file(relays, relay_binary):
    d = short_tmpdir("rit-pwfile-")
    path = os.path.join(d, "password")
    with open(path, "w") as f:
        f.write("file-secret\nignored second line\n")
    port = free_port()
    env = {"RELAY_TCP_ADDR": "127.0.0.1:%d" % port, "RELAY_PASSWORD_FILE": path}
    cc = check_config(relay_binary, env)
    assert cc.returncode == 0, cc.stderr
    assert "password *** from RELAY_PASSWORD_FILE %s" % path in cc.stdout, cc.stdout
    assert "file-secret" not in cc.stdout
    relay = relays(env)
    for target in (port, relay.socket):
        with connect(target) as c:
            assert c.call("PING") == NOAUTH
            assert c.call("AUTH", "file-secret\n")[0] == "ERR"
            assert c.call("AUTH", "ignored second line")[0] == "ERR"
            assert c.call("AUTH", "file-secret") == "OK"
            assert c.call("PING") == "PONG"
    assert "file-secret" not in relay.stderr()
    # An empty first line is refused.
    with open(path, "w") as f:
        f.write("\nsecret\n")
    line = one_config_error(relays(env, wait=False), "RELAY_PASSWORD_FILE")
    assert "empty" in line, line


# ---- observability -------------------------------------------------------------------------------

def test_info_health_metrics_show_both_listeners(relays):
    port, mport = free_port(), free_port()
    relay = relays(tcp_env(port, RELAY_METRICS_ADDR="127.0.0.1:%d" % mport))
    wait_until(lambda: http_get(mport, "/health")[0] == 200, 5)
    server = info(port, "server")
    assert server["tcp_port"] == str(port) and server["tcp_address"] == "127.0.0.1:%d" % port
    assert server["tcp_activated"] == "0" and server["password_required"] == "yes"
    assert server["unix_socket"] == relay.socket
    status, body = http_get(mport, "/health")
    assert status == 200, body
    health = json.loads(body)
    assert health["listeners"]["unix"] == {"path": relay.socket, "listening": True}
    assert health["listeners"]["tcp"] == {"address": "127.0.0.1:%d" % port, "port": port, "listening": True,
                                          "activated": False, "password": True}
    _, metrics = http_get(mport, "/metrics")
    assert 'pubsub_relay_listening{listener="tcp"} 1' in metrics, metrics
    assert 'pubsub_relay_listening{listener="unix"} 1' in metrics
    # TCP clients count as clients.
    conns = [TcpConn(port) for _ in range(3)]
    try:
        for c in conns:
            assert c.call("AUTH", SECRET) == "OK"
        assert info(relay.socket, "clients")["connected_clients"] == "4"
        with TcpConn(port) as c:
            assert c.call("AUTH", SECRET) == "OK"
            line = c.call("CLIENT", "INFO").decode()
            assert re.search(r"addr=127\.0\.0\.1:\d+ laddr=127\.0\.0\.1:%d " % port, line), line
    finally:
        for c in conns:
            c.close()


def test_without_tcp_info_and_health_say_off(relays):
    mport = free_port()
    relay = relays({"RELAY_METRICS_ADDR": "127.0.0.1:%d" % mport})
    server = info(relay.socket, "server", password=None)
    assert server["tcp_port"] == "0" and server["tcp_address"] == "" and server["password_required"] == "no"
    wait_until(lambda: http_get(mport, "/health")[0] == 200, 5)
    assert json.loads(http_get(mport, "/health")[1])["listeners"]["tcp"] == "not configured"
    assert 'pubsub_relay_listening{listener="tcp"} 0' in http_get(mport, "/metrics")[1]


def test_auth_failures_counted_and_log_rate_limited(relays):
    port, mport = free_port(), free_port()
    relay = relays(tcp_env(port, RELAY_METRICS_ADDR="127.0.0.1:%d" % mport))
    guesses = ["guess-%d" % i for i in range(200)]
    with TcpConn(port) as c:
        c.send(b"".join(cmd("AUTH", g) for g in guesses[:150]))
        frames, status = c.read_frames(150, 5)
        assert status == "ok" and set(frames) == {b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"}
    with Conn(relay.socket) as c:
        for g in guesses[150:]:
            assert c.call("HELLO", "3", "AUTH", "default", g)[0] == "ERR"
    stats = info(relay.socket, "stats")
    assert stats["auth_failures"] == "200", stats
    wait_until(lambda: http_get(mport, "/health")[0] == 200, 5)
    assert "pubsub_relay_auth_failures_total 200" in http_get(mport, "/metrics")[1]
    err = relay.stderr()
    lines = [l for l in err.splitlines() if "AUTH failed" in l]
    assert 1 <= len(lines) <= 3, lines
    assert not any(g in err for g in guesses) and SECRET not in err, err


# ---- lifecycle -----------------------------------------------------------------------------------

def test_ready_only_once_both_listeners_accept(relays):
    d = short_tmpdir("rit-tcpnotify-")
    path = os.path.join(d, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(path)
    notify.settimeout(15)
    try:
        port = free_port()
        relay = relays(tcp_env(port, NOTIFY_SOCKET=path), wait=False)
        while True:
            data = notify.recv(65536).decode()
            if "READY=1" in data.split("\n"):
                break
        # Right after READY=1, both accept at once.
        with TcpConn(port) as c:
            assert c.call("PING") == NOAUTH
        with Conn(relay.socket) as c:
            assert c.call("AUTH", SECRET) == "OK"
    finally:
        notify.close()


def test_tcp_bind_failure_is_one_line(relays):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        relay = relays(tcp_env(port), wait=False)
        assert run_exit(relay) == 1
        lines = [l for l in relay.stderr().splitlines() if "cannot start" in l]
        assert len(lines) == 1 and "RELAY_TCP_ADDR: cannot listen on 127.0.0.1:%d" % port in lines[0], relay.stderr()
        assert not os.path.exists(relay.socket), "the Unix socket was left behind after the TCP bind failed"


def test_sigterm_closes_both_listeners(relays):
    port = free_port()
    relay = relays(tcp_env(port))
    os.kill(relay.pid, signal.SIGTERM)
    assert relay.proc.wait(10) == 0, relay.stderr()
    with pytest.raises(OSError):
        TcpConn(port, timeout=1)


def test_tcp_subscriber_is_cut_at_the_output_limit(relays):
    """The same slow-consumer rule as on the Unix socket: a TCP subscriber that does not read is
    disconnected at the hard limit; the others keep receiving."""
    port = free_port()
    relay = relays(tcp_env(port, RELAY_CLIENT_BUFFER_LIMIT="1mb 0 0"))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(cmd("AUTH", SECRET) + cmd("SUBSCRIBE", "flood"))
    with TcpConn(port) as fast, Conn(relay.socket) as pub:
        assert fast.call("AUTH", SECRET) == "OK"
        assert fast.call("SUBSCRIBE", "flood") == [b"subscribe", b"flood", 1]
        assert pub.call("AUTH", SECRET) == "OK"
        wait_until(lambda: pub.call("PUBSUB", "NUMSUB", "flood") == [b"flood", 2], 5)
        payload = b"x" * 65536
        cut = None
        for i in range(200):
            n = pub.call("PUBLISH", "flood", payload)
            frames, status = fast.read_frames(1, 5)
            assert status == "ok"
            if n == 1:
                cut = i
                break
        assert cut is not None, "the non-reading TCP subscriber was never cut"
    assert int(info(relay.socket, "stats")["slow_consumer_disconnects"]) == 1
    slow.close()


# ---- socket activation ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def socket_activate():
    return require_tool("systemd-socket-activate", "it ships with systemd")


def activated(relays, socket_activate, relay_binary, listen: list[str], env: dict) -> Relay:
    args = []
    for l in listen:
        args += ["-l", l]
    for k, v in {"RELAY_METRICS_ADDR": "", "RELAY_LOG_LEVEL": "info", **env}.items():
        args += ["-E", "%s=%s" % (k, v)]
    return relays({}, wait=False, args=args + [relay_binary], binary=socket_activate)


def test_socket_activation_unix_and_tcp(relays, socket_activate, relay_binary):
    d = short_tmpdir("rit-tcpact-")
    path = os.path.join(d, "act.sock")
    port = free_port()
    ignored_port = free_port()
    relay = activated(relays, socket_activate, relay_binary, [path, "127.0.0.1:%d" % port],
                      {"RELAY_PASSWORD": SECRET, "RELAY_TCP_ADDR": "127.0.0.1:%d" % ignored_port})
    # systemd-socket-activate exec's the relay on the first connection (here: the TCP one).
    assert wait_until(lambda: os.path.exists(path) and tcp_listening(port), 5)
    with TcpConn(port, timeout=10) as c:
        assert c.call("AUTH", SECRET, timeout=10) == "OK"
        assert c.call("SUBSCRIBE", "act") == [b"subscribe", b"act", 1]
        with Conn(path) as u:
            assert u.call("PING") == NOAUTH
            assert u.call("AUTH", SECRET) == "OK"
            assert u.call("PUBLISH", "act", "through both") == 1
        assert parse1(c.read_frame()) == [b"message", b"act", b"through both"]
    server = info(path, "server")
    assert server["tcp_port"] == str(port) and server["tcp_activated"] == "1", server
    assert server["unix_socket"] == path
    err = relay.stderr()
    assert any("RELAY_TCP_ADDR is ignored" in l for l in err.splitlines()), err
    assert not answers(ignored_port), "the relay bound RELAY_TCP_ADDR although systemd passed a TCP socket"
    os.kill(relay.pid, signal.SIGTERM)
    assert relay.proc.wait(10) == 0, relay.stderr()
    assert os.path.exists(path), "the relay unlinked the socket-activated socket"


def test_socket_activation_tcp_only_binds_its_own_unix_socket(relays, socket_activate, relay_binary):
    port = free_port()
    d = short_tmpdir("rit-tcpact-")
    own = os.path.join(d, "own.sock")
    relay = activated(relays, socket_activate, relay_binary, ["127.0.0.1:%d" % port], {"RELAY_SOCKET": own})
    # systemd-socket-activate listens before anything is exec'd; wait for its port.
    assert wait_until(lambda: tcp_listening(port), 5), "systemd-socket-activate is not listening on %d" % port
    with TcpConn(port, timeout=10) as c:
        assert c.call("PING", timeout=10) == "PONG"
    wait_until(lambda: answers(own), 5)
    assert info(own, "server", password=None)["tcp_activated"] == "1"
    assert "any local user can connect" in relay.stderr()


def test_socket_activation_non_loopback_tcp_is_refused(relays, socket_activate, relay_binary):
    port = free_port()
    relay = activated(relays, socket_activate, relay_binary, ["0.0.0.0:%d" % port], {"RELAY_PASSWORD": SECRET})
    assert wait_until(lambda: tcp_listening(port), 5)
    deadline = time.monotonic() + 5
    while relay.proc.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            pass
        time.sleep(0.1)
    assert run_exit(relay) == 1, relay.stderr()
    lines = [l for l in relay.stderr().splitlines() if "cannot start" in l]
    assert len(lines) == 1, relay.stderr()
    assert "LISTEN_FDS" in lines[0] and "0.0.0.0:%d" % port in lines[0] and "not a loopback address" in lines[0], lines


def test_tcp_nodelay_is_set_on_client_connections(relays):
    """TCP_NODELAY on the relay's end of each TCP connection, read from the relay's own socket
    (pidfd_getfd(2): a duplicate of the relay's fd in this process)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_pidfd_open, SYS_pidfd_getfd = 434, 438
    port = free_port()
    relay = relays(tcp_env(port))
    with TcpConn(port) as c:
        assert c.call("AUTH", SECRET) == "OK"
        mine = c.sock.getsockname()
        pidfd = libc.syscall(SYS_pidfd_open, relay.pid, 0)
        if pidfd < 0:
            pytest.skip("pidfd_open: %s" % os.strerror(ctypes.get_errno()))
        try:
            checked = None
            for name in os.listdir("/proc/%d/fd" % relay.pid):
                if not os.readlink("/proc/%d/fd/%s" % (relay.pid, name)).startswith("socket:"):
                    continue
                fd = libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
                if fd < 0:
                    pytest.skip("pidfd_getfd: %s" % os.strerror(ctypes.get_errno()))
                s = socket.socket(fileno=fd)
                try:
                    if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM:
                        try:
                            peer = s.getpeername()
                        except OSError:
                            continue
                        if peer == mine:
                            checked = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                finally:
                    s.close()
        finally:
            os.close(pidfd)
        assert checked is not None, "the relay's end of the connection was not found"
        assert checked != 0, "TCP_NODELAY is off on the relay's end"


def test_ipv6_loopback(relays):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError as e:
        pytest.skip("no IPv6 loopback: %s" % e)
    relay = relays({"RELAY_TCP_ADDR": "[::1]:%d" % port, "RELAY_PASSWORD": SECRET}, wait=False)
    deadline = time.monotonic() + 10
    while True:
        try:
            c = socket.create_connection(("::1", port), timeout=1)
            break
        except OSError:
            assert relay.proc.poll() is None and time.monotonic() < deadline, relay.stderr()
            time.sleep(0.05)
    c.sendall(cmd("AUTH", SECRET) + cmd("PING"))
    time.sleep(0.2)
    assert c.recv(100) == b"+OK\r\n+PONG\r\n"
    c.close()
    assert info(relay.socket, "server")["tcp_address"] == "[::1]:%d" % port
