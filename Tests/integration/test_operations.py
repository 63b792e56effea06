"""Operations features of the relay: sd_notify (READY/STATUS/WATCHDOG/STOPPING/RELOADING),
the DEBUG SLEEP test hook, socket activation, Prometheus metrics and /health, SIGTERM with many
clients and pending output, SIGHUP reload of an env file, bad configuration, journald and JSON logs.

Everything here runs the real binary ($RELAY_BINARY) with real peers: a datagram socket standing in
for systemd's notify socket, systemd-socket-activate, redis-cli, curl, and prometheus_client's text
parser. Every process is started by a fixture and stopped by its PID; every wait is bounded.
The systemd units and the install script are tested in test_systemd.py.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from conftest import Relay, relay_env, relay_info, require_tool, short_tmpdir, wait_redis_state, wait_until
from fleetutil import unix_url
from resputil import Conn, cmd, parse1, split_frames

EX_CONFIG = 78
NOT_CONFIGURED_STATUS = re.compile(r"^serving (\d+) clients; redis: not configured; postgres: not configured$")
SHUTDOWN_FLUSH_BOUND = 5.0     # the spec's bound on flushing pending output at SIGTERM
EXIT_MARGIN = 2.0


# ---- helpers ------------------------------------------------------------------------------------

def wait_exit(proc: subprocess.Popen, timeout: float, stderr: str | None = None) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("pid %d did not exit within %.1fs; stderr:\n%s" % (proc.pid, timeout, stderr or ""))


def lines_of(text: str) -> list[str]:
    return [l for l in text.splitlines() if l.strip()]


def wait_stderr(relay: Relay, since: int, pred, timeout: float = 5.0) -> str:
    """Polls the relay's stderr (from byte offset `since`) until pred(new_text) holds."""
    deadline = time.monotonic() + timeout
    new = ""
    while time.monotonic() < deadline:
        new = relay.stderr()[since:]
        if pred(new):
            return new
        time.sleep(0.05)
    return new


@pytest.fixture
def own_relays():
    """Relays started through a wrapper (sh, systemd-socket-activate) that exec's the relay, so the
    Popen PID is the relay's PID. Stopped by that PID at teardown."""
    started: list[Relay] = []

    def start(binary: str, args: list[str], env: dict | None = None, socket_path: str | None = None,
              wait: bool = True) -> Relay:
        r = Relay(binary, env, socket_path, wait, args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.cleanup()


def exe_of(pid: int) -> str:
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return ""


# ---- sd_notify ----------------------------------------------------------------------------------

def notify_fields(text: str) -> dict:
    out = {}
    for line in text.split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


class NotifyListener:
    """A SOCK_DGRAM Unix socket standing in for systemd's NOTIFY_SOCKET; a thread records every
    datagram with its arrival time (time.monotonic())."""

    MAX_LIFETIME = 120.0

    def __init__(self, abstract: bool = False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "rit-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            d = short_tmpdir("rit-notify-")
            self.path = os.path.join(d, "notify.sock")
            self.sock.bind(self.path)
            self.env_value = self.path
        self.sock.settimeout(0.02)
        self.messages: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + self.MAX_LIFETIME
        while not self.stopped and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def snapshot(self) -> list[tuple[float, str]]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, pred, timeout: float, start: int = 0):
        """First message at index >= start with pred(fields); returns (index, time, fields) or None."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.snapshot()
            for i in range(start, len(msgs)):
                f = notify_fields(msgs[i][1])
                if pred(f):
                    return i, msgs[i][0], f
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    def pings(self, after: float = 0.0, before: float = float("inf")) -> list[float]:
        return [t for t, text in self.snapshot() if after <= t <= before and notify_fields(text).get("WATCHDOG") == "1"]

    def close(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_factory():
    made: list[NotifyListener] = []

    def make(abstract: bool = False) -> NotifyListener:
        n = NotifyListener(abstract)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def dump(listener: NotifyListener) -> str:
    t0 = listener.snapshot()[0][0] if listener.snapshot() else 0
    return "\n".join("+%.3fs %r" % (t - t0, text) for t, text in listener.snapshot()[:60])


def is_ready(f: dict) -> bool:
    return f.get("READY") == "1"


def test_ready_only_once_the_socket_accepts(relay_factory):
    """READY=1 (with MAINPID and STATUS) arrives in one datagram, and a connect made right after it
    succeeds: the socket was accepting before READY was sent."""
    d = short_tmpdir("rit-ready-")
    notify_path = os.path.join(d, "notify.sock")
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    nsock.bind(notify_path)
    nsock.settimeout(0.1)
    try:
        relay = relay_factory({"NOTIFY_SOCKET": notify_path}, wait=False)
        deadline = time.monotonic() + 15
        got = []
        ready = None
        while time.monotonic() < deadline and relay.proc.poll() is None:
            try:
                data = nsock.recv(65536).decode()
            except (TimeoutError, socket.timeout):
                continue
            got.append(data)
            if "READY=1" in data.split("\n"):
                ready = data
                break
        assert ready is not None, "no READY=1 within 15 s (exit %s); datagrams %r; stderr:\n%s" % (
            relay.proc.poll(), got, relay.stderr())
        # Right after READY: the socket must accept and answer.
        with Conn(relay.socket, timeout=2) as conn:
            assert conn.call("PING") == "PONG"
        f = notify_fields(ready)
        print("\nREADY datagram: %r (earlier datagrams: %r)" % (ready, got[:-1]))
        assert f.get("MAINPID") == str(relay.pid), f
        assert "STATUS" in f, "READY datagram without STATUS=: %r" % ready
        m = NOT_CONFIGURED_STATUS.match(f["STATUS"])
        assert m, "STATUS=%r does not match 'serving <n> clients; redis: not configured; postgres: not configured'" % f["STATUS"]
        assert m.group(1) == "0", f["STATUS"]
        # Exactly one READY=1 at start-up.
        nsock.settimeout(0.5)
        later = []
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            try:
                later.append(nsock.recv(65536).decode())
            except (TimeoutError, socket.timeout):
                pass
        assert not any("READY=1" in x.split("\n") for x in later), "a second READY=1 without a reload: %r" % later
    finally:
        nsock.close()


def test_ready_on_abstract_notify_socket(relay_factory, notify_factory):
    listener = notify_factory(abstract=True)
    relay = relay_factory({"NOTIFY_SOCKET": listener.env_value})
    hit = listener.wait_for(is_ready, 10)
    assert hit, "no READY=1 on abstract NOTIFY_SOCKET %s; got:\n%s\nstderr:\n%s" % (
        listener.env_value, dump(listener), relay.stderr())
    assert hit[2].get("MAINPID") == str(relay.pid)


def test_status_follows_client_count(relay_factory, notify_factory):
    """STATUS= is sent again when the text changes (checked every second)."""
    listener = notify_factory()
    relay = relay_factory({"NOTIFY_SOCKET": listener.env_value})
    hit = listener.wait_for(is_ready, 10)
    assert hit, dump(listener)
    conns = [Conn(relay.socket) for _ in range(3)]
    try:
        for c in conns:
            assert c.call("PING") == "PONG"
        want = lambda f: NOT_CONFIGURED_STATUS.match(f.get("STATUS", "")) and \
            NOT_CONFIGURED_STATUS.match(f["STATUS"]).group(1) == "3"
        got = listener.wait_for(want, 4, start=hit[0] + 1)
        assert got, "no STATUS=serving 3 clients... within 4 s; datagrams:\n%s" % dump(listener)
    finally:
        for c in conns:
            c.close()
    back = listener.wait_for(lambda f: f.get("STATUS", "").startswith("serving 0 clients"), 4, start=got[0] + 1)
    assert back, "STATUS did not go back to 0 clients; datagrams:\n%s" % dump(listener)


def _start_with_watchdog(relay_factory, own_relays, relay_binary, listener, watchdog_pid: str, extra=None):
    env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "200000"}
    env.update(extra or {})
    if watchdog_pid == "unset":
        env["WATCHDOG_PID"] = None
        return relay_factory(env)
    if watchdog_pid == "self":
        # The shell exports its own PID and exec's the relay, which keeps that PID.
        env["WATCHDOG_PID"] = None
        relay = own_relays("/bin/sh", ["-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0"', relay_binary], env)
        assert os.path.realpath(exe_of(relay.pid)) == os.path.realpath(relay_binary), exe_of(relay.pid)
        return relay
    env["WATCHDOG_PID"] = watchdog_pid
    return relay_factory(env)


@pytest.mark.parametrize("watchdog_pid", ["unset", "self"], ids=["WATCHDOG_PID-unset", "WATCHDOG_PID-relay"])
def test_watchdog_pings_every_half_period(relay_factory, own_relays, relay_binary, notify_factory, watchdog_pid):
    listener = notify_factory()
    relay = _start_with_watchdog(relay_factory, own_relays, relay_binary, listener, watchdog_pid)
    hit = listener.wait_for(is_ready, 10)
    assert hit, "no READY=1; datagrams:\n%s\nstderr:\n%s" % (dump(listener), relay.stderr())
    t0 = hit[1] + 0.2
    time.sleep(max(0.0, t0 + 1.0 - time.monotonic()) + 0.05)
    pings = listener.pings(after=t0, before=t0 + 1.0)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    period = sum(gaps) / len(gaps) if gaps else float("nan")
    print("\nWATCHDOG_USEC=200000, WATCHDOG_PID %s: %d pings in 1.0 s, mean period %.1f ms, max gap %.1f ms"
          % (watchdog_pid, len(pings), period * 1000, max(gaps or [0]) * 1000))
    assert 6 <= len(pings) <= 14, "expected ~10 WATCHDOG=1 in 1 s (every 100 ms), got %d; datagrams:\n%s" % (
        len(pings), dump(listener))
    assert 0.07 <= period <= 0.15, "mean ping period %.3fs, expected ~0.100s" % period
    assert max(gaps) < 0.35, "a gap of %.3fs between pings with an idle relay" % max(gaps)


def test_watchdog_off_when_pid_is_another_process(relay_factory, own_relays, relay_binary, notify_factory):
    listener = notify_factory()
    relay = _start_with_watchdog(relay_factory, own_relays, relay_binary, listener, str(os.getpid()))
    hit = listener.wait_for(is_ready, 10)
    assert hit, "READY=1 must still be sent when WATCHDOG_PID names another process; got:\n%s\nstderr:\n%s" % (
        dump(listener), relay.stderr())
    time.sleep(1.2)
    pings = listener.pings()
    assert pings == [], "%d WATCHDOG=1 pings although WATCHDOG_PID=%d is not the relay (%d)" % (
        len(pings), os.getpid(), relay.pid)


def test_debug_sleep_stops_watchdog_pings(relay_factory, notify_factory):
    """A wedged client event loop (DEBUG SLEEP 1) stops the pings for ~1 s; they resume after."""
    listener = notify_factory()
    relay = relay_factory({"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "200000",
                           "WATCHDOG_PID": None, "RELAY_ENABLE_DEBUG_COMMAND": "yes"})
    hit = listener.wait_for(is_ready, 10)
    assert hit, dump(listener)
    time.sleep(0.5)
    with Conn(relay.socket, timeout=10) as conn:
        t_send = time.monotonic()
        reply = conn.call("DEBUG", "SLEEP", "1")
        t_reply = time.monotonic()
        assert not (isinstance(reply, tuple) and reply[0] == "ERR"), reply
        time.sleep(0.6)
        assert conn.call("PING") == "PONG"
    pings = listener.pings(after=hit[1])
    gaps = [(b - a, a) for a, b in zip(pings, pings[1:])]
    biggest, at = max(gaps) if gaps else (0.0, 0.0)
    after = [t for t in pings if t > t_reply]
    print("\nDEBUG SLEEP 1 replied %r after %.3fs; largest ping gap %.3fs starting %.3fs after the command; "
          "%d pings in the 0.6 s after the reply" % (reply, t_reply - t_send, biggest, at - t_send, len(after)))
    assert t_reply - t_send >= 0.9, "DEBUG SLEEP 1 returned after %.3fs" % (t_reply - t_send)
    assert biggest >= 0.9, "largest gap between WATCHDOG=1 pings %.3fs: the pings did not stop while the loop slept" % biggest
    assert biggest < 1.6, "pings stopped for %.3fs for a 1 s sleep" % biggest
    assert len(after) >= 3, "pings did not resume after DEBUG SLEEP (%d in 0.6 s)" % len(after)


def test_sigterm_sends_stopping_first(relay_factory, notify_factory):
    """STOPPING=1 (with STATUS=stopping) is sent when SIGTERM arrives, while the shutdown is still
    flushing a stuck subscriber's output; then the process exits 0."""
    listener = notify_factory()
    relay = relay_factory({"NOTIFY_SOCKET": listener.env_value})
    hit = listener.wait_for(is_ready, 10)
    assert hit, dump(listener)
    stuck = Conn(relay.socket, rcvbuf=4096)
    pub = Conn(relay.socket, timeout=20)
    try:
        assert stuck.call("SUBSCRIBE", "stuck") == [b"subscribe", b"stuck", 1]
        n = 2000
        pub.send(b"".join(cmd("PUBLISH", "stuck", b"s" * 1000) for _ in range(n)))
        frames, status = pub.read_frames(n, 20)
        assert status == "ok", status
        t_sig = time.monotonic()
        os.kill(relay.pid, signal.SIGTERM)
        got = listener.wait_for(lambda f: f.get("STOPPING") == "1", 2, start=hit[0] + 1)
        still_running = relay.proc.poll() is None
        rc = wait_exit(relay.proc, SHUTDOWN_FLUSH_BOUND + EXIT_MARGIN, relay.stderr())
        t_exit = time.monotonic()
        socket_removed = not os.path.exists(relay.socket)
    finally:
        stuck.close()
        pub.close()
    assert got, "no STOPPING=1 after SIGTERM; datagrams:\n%s" % dump(listener)
    print("\nSTOPPING=1 %.3fs after SIGTERM (%r); exit %d %.3fs after SIGTERM" % (got[1] - t_sig, got[2], rc, t_exit - t_sig))
    assert still_running, "the relay had already exited when STOPPING=1 was seen"
    assert got[1] - t_sig < 1.0
    assert rc == 0
    assert socket_removed, "the relay left its socket file behind"
    statuses = [notify_fields(t).get("STATUS", "") for _, t in listener.snapshot()[hit[0] + 1:]]
    assert any(s.startswith("stopping") for s in statuses), "no STATUS=stopping; datagrams:\n%s" % dump(listener)


def test_sigint_sends_stopping(relay_factory, notify_factory):
    listener = notify_factory()
    relay = relay_factory({"NOTIFY_SOCKET": listener.env_value})
    hit = listener.wait_for(is_ready, 10)
    assert hit, dump(listener)
    os.kill(relay.pid, signal.SIGINT)
    rc = wait_exit(relay.proc, SHUTDOWN_FLUSH_BOUND + EXIT_MARGIN, relay.stderr())
    got = listener.wait_for(lambda f: f.get("STOPPING") == "1", 1, start=hit[0] + 1)
    assert got, "no STOPPING=1 after SIGINT; datagrams:\n%s" % dump(listener)
    assert rc == 0


def test_sighup_sends_reloading_then_ready(relay_factory, notify_factory):
    listener = notify_factory()
    relay = relay_factory({"NOTIFY_SOCKET": listener.env_value})
    hit = listener.wait_for(is_ready, 10)
    assert hit, dump(listener)
    os.kill(relay.pid, signal.SIGHUP)
    reloading = listener.wait_for(lambda f: f.get("RELOADING") == "1", 5, start=hit[0] + 1)
    assert reloading, "no RELOADING=1 after SIGHUP; datagrams:\n%s\nstderr:\n%s" % (dump(listener), relay.stderr())
    mono = reloading[2].get("MONOTONIC_USEC")
    assert mono is not None and mono.isdigit(), "RELOADING=1 without MONOTONIC_USEC=<n>: %r" % reloading[2]
    # CLOCK_MONOTONIC is what Python's time.monotonic() reads on Linux.
    skew = abs(int(mono) / 1e6 - reloading[1])
    assert skew < 2.0, "MONOTONIC_USEC=%s is %.3fs away from CLOCK_MONOTONIC" % (mono, skew)
    ready = listener.wait_for(is_ready, 5, start=reloading[0] + 1)
    assert ready, "no READY=1 after RELOADING=1; datagrams:\n%s" % dump(listener)
    assert NOT_CONFIGURED_STATUS.match(ready[2].get("STATUS", "")), "READY after reload without STATUS: %r" % ready[2]
    print("\nSIGHUP: %r then %r (%.3fs later)" % (reloading[2], ready[2], ready[1] - reloading[1]))
    with Conn(relay.socket) as conn:
        assert conn.call("PING") == "PONG"


def test_no_notify_socket_is_silent(relay_factory):
    relay = relay_factory({"NOTIFY_SOCKET": None, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": None})
    with Conn(relay.socket) as conn:
        assert conn.call("PING") == "PONG"
    time.sleep(0.3)
    assert relay.proc.poll() is None
    noisy = [l for l in lines_of(relay.stderr()) if "notify" in l.lower() or "watchdog" in l.lower()]
    assert noisy == [], "sd_notify is not silently off without NOTIFY_SOCKET: %r" % noisy


# ---- DEBUG ------------------------------------------------------------------------------------

def test_debug_disabled_by_default(relay_factory):
    relay = relay_factory()
    with Conn(relay.socket) as conn:
        t0 = time.monotonic()
        reply = conn.call("DEBUG", "SLEEP", "0")
        assert reply == ("ERR", "ERR DEBUG is disabled; set RELAY_ENABLE_DEBUG_COMMAND=yes to allow it (test setups only)"), reply
        reply = conn.call("DEBUG", "SLEEP", "2")
        assert isinstance(reply, tuple) and reply[0] == "ERR", reply
        assert time.monotonic() - t0 < 1.0, "disabled DEBUG SLEEP still slept"
        assert conn.call("PING") == "PONG"
        assert conn.call("SUBSCRIBE", "dbg") == [b"subscribe", b"dbg", 1]


def test_debug_bad_value_rejected(relay_factory):
    relay = relay_factory({"RELAY_ENABLE_DEBUG_COMMAND": "maybe"}, wait=False)
    rc = wait_exit(relay.proc, 5, relay.stderr())
    lines = lines_of(relay.stderr())
    assert rc == EX_CONFIG, (rc, lines)
    assert len(lines) == 1 and "RELAY_ENABLE_DEBUG_COMMAND" in lines[0], lines


# ---- socket activation --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def socket_activate():
    return require_tool("systemd-socket-activate", "it ships with systemd")


def test_socket_activation(own_relays, relay_binary, socket_activate, redis_cli):
    d = short_tmpdir("rit-act-")
    act = os.path.join(d, "act.sock")
    ignored = os.path.join(d, "ignored.sock")
    # systemd-socket-activate passes only -E variables (and PATH/HOME/TERM) to the relay; it waits
    # for the first connection, then exec's the relay in its own process (same PID).
    args = ["-l", act, "-E", "RELAY_SOCKET=%s" % ignored, "-E", "RELAY_METRICS_ADDR=",
            "-E", "RELAY_LOG_LEVEL=info", relay_binary]
    relay = own_relays(socket_activate, args, socket_path=act, wait=False)
    deadline = time.monotonic() + 5
    while not os.path.exists(act) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(act), "systemd-socket-activate did not create %s: %s" % (act, relay.stderr())
    res = subprocess.run([redis_cli, "-s", act, "PING"], capture_output=True, timeout=15)
    assert res.stdout.strip() == b"PONG", (res.returncode, res.stdout, res.stderr, relay.stderr())
    assert os.path.realpath(exe_of(relay.pid)) == os.path.realpath(relay_binary), \
        "pid %d is %r, not the relay" % (relay.pid, exe_of(relay.pid))

    with Conn(act) as sub:
        assert sub.call("SUBSCRIBE", "act-ch") == [b"subscribe", b"act-ch", 1]
        res = subprocess.run([redis_cli, "-s", act, "PUBLISH", "act-ch", "hello activated"], capture_output=True, timeout=10)
        assert res.stdout.strip() == b"1", (res.stdout, res.stderr)
        assert parse1(sub.read_frame()) == [b"message", b"act-ch", b"hello activated"]

    err = relay.stderr()
    print("\nsocket-activated relay stderr:\n%s" % err)
    assert any("RELAY_SOCKET" in l and "ignor" in l.lower() for l in err.splitlines()), \
        "no log line saying RELAY_SOCKET is ignored under socket activation:\n%s" % err
    assert not os.path.exists(ignored), "the relay bound RELAY_SOCKET=%s although a socket was passed" % ignored

    inode = os.stat(act).st_ino
    os.kill(relay.pid, signal.SIGTERM)
    rc = wait_exit(relay.proc, SHUTDOWN_FLUSH_BOUND + EXIT_MARGIN, relay.stderr())
    assert rc == 0, "exit %d; stderr:\n%s" % (rc, relay.stderr())
    assert os.path.exists(act), "the relay unlinked the socket-activated socket %s on exit" % act
    assert stat.S_ISSOCK(os.stat(act).st_mode) and os.stat(act).st_ino == inode


def test_listen_fds_for_another_pid_is_ignored(relay_factory):
    """LISTEN_FDS/LISTEN_PID meant for another process (sd_listen_fds semantics): the relay binds its
    own RELAY_SOCKET and does not touch fd 3."""
    relay = relay_factory({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())})
    with Conn(relay.socket) as conn:
        assert conn.call("PING") == "PONG"
    assert not any("ignored" in l and "RELAY_SOCKET" in l for l in relay.stderr().splitlines()), relay.stderr()


# ---- metrics and health -------------------------------------------------------------------------

def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dechunk(body: bytes) -> bytes:
    out = b""
    pos = 0
    while True:
        nl = body.index(b"\r\n", pos)
        size = int(body[pos:nl].split(b";")[0], 16)
        if size == 0:
            return out
        out += body[nl + 2:nl + 2 + size]
        pos = nl + 2 + size + 2


def http_get(addr: str, path: str, timeout: float = 3.0, method: str = "GET") -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request to `host:port` or a Unix socket path; returns (status, headers, body)."""
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = addr
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    deadline = time.monotonic() + timeout
    try:
        s.settimeout(timeout)
        s.connect(target)
        s.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                   % (method, path)).encode())
        buf = b""
        head = None
        while time.monotonic() < deadline:
            if head is None and b"\r\n\r\n" in buf:
                raw, buf = buf.split(b"\r\n\r\n", 1)
                head = raw.decode("latin-1").split("\r\n")
                headers = {}
                for h in head[1:]:
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
            if head is not None and "content-length" in headers and len(buf) >= int(headers["content-length"]):
                buf = buf[:int(headers["content-length"])]
                break
            if head is not None and headers.get("transfer-encoding", "").lower() == "chunked" and buf.endswith(b"0\r\n\r\n"):
                buf = _dechunk(buf)
                break
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = s.recv(1 << 20)
            except (TimeoutError, socket.timeout):
                break
            if not data:
                if head is not None and headers.get("transfer-encoding", "").lower() == "chunked":
                    buf = _dechunk(buf)
                break
            buf += data
        if head is None:
            raise AssertionError("no complete HTTP response from %s%s: %r" % (addr, path, buf[:200]))
        status = int(head[0].split()[1])
        return status, headers, buf
    finally:
        s.close()


@pytest.fixture(scope="module")
def prom_parser():
    try:
        from prometheus_client import parser
    except ImportError:
        res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "prometheus-client"],
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--break-system-packages",
                                  "prometheus-client"], capture_output=True, text=True, timeout=300)
        try:
            import importlib
            importlib.invalidate_caches()
            from prometheus_client import parser
        except ImportError:
            pytest.skip("prometheus_client not installable (pip install prometheus-client): %s" % res.stderr[-300:])
    return parser


# (name as exposed, type, label values the spec names that must always be present)
SPEC_METRICS = [
    ("pubsub_relay_clients", "gauge", None),
    ("pubsub_relay_connections_total", "counter", None),
    ("pubsub_relay_commands_total", "counter", None),
    ("pubsub_relay_subscriptions", "gauge", ("kind", ["channel", "pattern"])),
    ("pubsub_relay_messages_in_total", "counter", None),
    ("pubsub_relay_deliveries_total", "counter", None),
    ("pubsub_relay_dropped_total", "counter", None),
    ("pubsub_relay_disconnects_total", "counter", None),
    ("pubsub_relay_protocol_errors_total", "counter", None),
    ("pubsub_relay_commands_rejected_total", "counter", None),
    ("pubsub_relay_accept_errors_total", "counter", ("reason", ["fd_limit", "no_memory"])),
    ("pubsub_relay_auth_failures_total", "counter", None),
    ("pubsub_relay_listening", "gauge", ("listener", ["unix", "tcp"])),
    ("pubsub_relay_upstream_up", "gauge", ("upstream", ["redis", "postgres"])),
    ("pubsub_relay_upstream_reconnects_total", "counter", ("upstream", ["redis", "postgres"])),
    ("pubsub_relay_upstream_gaps_total", "counter", ("upstream", ["redis", "postgres"])),
    ("pubsub_relay_upstream_gap_seconds_total", "counter", ("upstream", ["redis", "postgres"])),
    ("pubsub_relay_redis_unconfirmed_publishes_total", "counter", None),
    ("pubsub_relay_redis_refused_subscriptions_total", "counter", None),
    ("pubsub_relay_redis_reply_limit_disconnects_total", "counter", None),
    ("pubsub_relay_redis_master_switches_total", "counter", None),
    ("pubsub_relay_redis_cluster_masters", "gauge", None),
    ("pubsub_relay_redis_cluster_masters_connected", "gauge", None),
    ("pubsub_relay_redis_cluster_slot_map_version", "gauge", None),
    ("pubsub_relay_redis_cluster_refreshes_total", "counter", None),
    ("pubsub_relay_redis_cluster_redirects_total", "counter", None),
    ("pubsub_relay_redis_cluster_slot_moves_pushed_total", "counter", None),
    ("pubsub_relay_redis_cluster_resubscriptions_total", "counter", None),
    ("pubsub_relay_leader_changes_total", "counter", None),
    ("pubsub_relay_postgres_notifications_received_total", "counter", None),
    ("pubsub_relay_postgres_notifications_published_total", "counter", None),
    ("pubsub_relay_postgres_notifications_delivered_locally_total", "counter", None),
    ("pubsub_relay_postgres_notifications_lost_upstream_total", "counter", None),
    ("pubsub_relay_postgres_notifications_dropped_as_standby_total", "counter", None),
    ("pubsub_relay_leader", "gauge", None),
    ("pubsub_relay_delivery_latency_seconds", "histogram", None),
]


def family_name(name: str, typ: str) -> str:
    return name[:-len("_total")] if typ == "counter" and name.endswith("_total") else name


class Scrape:
    def __init__(self, parser, addr: str):
        status, headers, body = http_get(addr, "/metrics")
        assert status == 200, (status, body[:300])
        self.content_type = headers.get("content-type", "")
        self.text = body.decode()
        self.families = {f.name: f for f in parser.text_string_to_metric_families(self.text)}

    def value(self, sample_name: str, **labels) -> float:
        """Sum of the samples named `sample_name` whose labels include `labels` (0 if none)."""
        total = 0.0
        for fam in self.families.values():
            for s in fam.samples:
                if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def has_sample(self, sample_name: str, **labels) -> bool:
        return any(s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
                   for fam in self.families.values() for s in fam.samples)


def wait_value(parser, addr, sample_name, expected, timeout=3.0, **labels) -> float:
    deadline = time.monotonic() + timeout
    while True:
        v = Scrape(parser, addr).value(sample_name, **labels)
        if v == expected or time.monotonic() >= deadline:
            return v
        time.sleep(0.05)


@pytest.fixture
def metrics_relay(relay_factory):
    def start(kind: str = "tcp", extra: dict | None = None) -> tuple[Relay, str]:
        if kind == "tcp":
            addr = "127.0.0.1:%d" % free_tcp_port()
        else:
            addr = os.path.join(short_tmpdir("rit-metrics-"), "metrics.sock")
        env = {"RELAY_METRICS_ADDR": addr}
        env.update(extra or {})
        relay = relay_factory(env)
        deadline = time.monotonic() + 5
        last = None
        while time.monotonic() < deadline:
            try:
                http_get(addr, "/health", timeout=1)
                return relay, addr
            except (OSError, AssertionError) as e:
                last = e
                time.sleep(0.05)
        raise AssertionError("metrics endpoint %s not answering (%s); stderr:\n%s" % (addr, last, relay.stderr()))
    return start


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_metrics_families_and_types(metrics_relay, prom_parser, kind):
    relay, addr = metrics_relay(kind)
    scrape = Scrape(prom_parser, addr)
    print("\n/metrics on %s (Content-Type %r):\n%s" % (addr, scrape.content_type, scrape.text[:3000]))
    assert scrape.content_type.startswith("text/plain"), scrape.content_type
    problems = []
    for name, typ, labels in SPEC_METRICS:
        fam = scrape.families.get(family_name(name, typ))
        if fam is None:
            problems.append("%s (%s) missing" % (name, typ))
            continue
        if fam.type != typ:
            problems.append("%s is a %s, expected %s" % (name, fam.type, typ))
        if labels:
            key, values = labels
            for v in values:
                if not scrape.has_sample(name, **{key: v}):
                    problems.append("%s{%s=%r} missing" % (name, key, v))
    for name in scrape.families:
        if not name.startswith("pubsub_relay_"):
            continue
        fam = scrape.families[name]
        if fam.type == "counter":
            assert all(s.name.endswith("_total") or s.name.endswith("_created") for s in fam.samples), fam.samples
    assert problems == [], "metrics not as the spec names them:\n  " + "\n  ".join(problems)
    assert scrape.value("pubsub_relay_upstream_up", upstream="redis") == 0
    assert scrape.value("pubsub_relay_upstream_up", upstream="postgres") == 0
    assert scrape.value("pubsub_relay_leader") == 0


def test_metrics_unix_socket_with_curl(metrics_relay):
    curl = require_tool("curl", "apt-get install curl")
    relay, addr = metrics_relay("unix")
    res = subprocess.run([curl, "-sS", "--max-time", "5", "--unix-socket", addr, "-w", "\n%{http_code}",
                          "http://localhost/metrics"], capture_output=True, text=True, timeout=10)
    body, _, code = res.stdout.rpartition("\n")
    assert res.returncode == 0 and code == "200", (res.returncode, code, res.stderr)
    assert "pubsub_relay_clients" in body
    res = subprocess.run([curl, "-sS", "--max-time", "5", "--unix-socket", addr, "-w", "\n%{http_code}",
                          "http://localhost/health"], capture_output=True, text=True, timeout=10)
    body, _, code = res.stdout.rpartition("\n")
    assert code == "200", (code, body)
    assert json.loads(body)["status"] == "serving"


def test_metrics_counters_move(metrics_relay, prom_parser):
    relay, addr = metrics_relay("tcp")
    P = "pubsub_relay_"
    before = Scrape(prom_parser, addr)
    base_clients = before.value(P + "clients")
    base = {k: before.value(P + k) for k in ("connections_total", "commands_total", "deliveries_total",
                                             "delivery_latency_seconds_count", "dropped_total")}
    base_local = before.value(P + "messages_in_total", source="local")
    base_proto = before.value(P + "protocol_errors_total")
    base_disc = before.value(P + "disconnects_total", reason="protocol_error")
    base_unknown = before.value(P + "commands_rejected_total", reason="unknown_command")
    base_chan = before.value(P + "subscriptions", kind="channel")
    base_pat = before.value(P + "subscriptions", kind="pattern")
    base_shard = before.value(P + "subscriptions", kind="shard")
    assert base_clients == 0, "clients gauge %s with no client connected" % base_clients

    M, N = 4, 50
    subs = [Conn(relay.socket, timeout=10) for _ in range(M)]
    pat = Conn(relay.socket)
    pub = Conn(relay.socket, timeout=10)
    try:
        for s in subs:
            assert s.call("SUBSCRIBE", "mch") == [b"subscribe", b"mch", 1]
        pat.send(cmd("PSUBSCRIBE", "other.*", "zz*"))
        assert pat.read_frames(2)[1] == "ok"
        assert pat.call("SUBSCRIBE", "side") == [b"subscribe", b"side", 3]
        assert pat.call("SSUBSCRIBE", "side") == [b"ssubscribe", b"side", 1]

        got = wait_value(prom_parser, addr, P + "clients", base_clients + M + 2)
        assert got == base_clients + M + 2, "clients gauge %s with %d clients connected" % (got, M + 2)
        assert wait_value(prom_parser, addr, P + "subscriptions", base_chan + M + 1, kind="channel") == base_chan + M + 1
        assert wait_value(prom_parser, addr, P + "subscriptions", base_pat + 2, kind="pattern") == base_pat + 2
        assert wait_value(prom_parser, addr, P + "subscriptions", base_shard + 1, kind="shard") == base_shard + 1

        pub.send(b"".join(cmd("PUBLISH", "mch", b"m%03d" % i) for i in range(N)))
        frames, status = pub.read_frames(N, 10)
        assert status == "ok" and set(frames) == {b":%d\r\n" % M}, (status, set(frames))
        for s in subs:
            frames, status = s.read_frames(N, 10)
            assert status == "ok", status
        assert pat.read_quiet(0.1) == b""

        after = Scrape(prom_parser, addr)
        local = wait_value(prom_parser, addr, P + "messages_in_total", base_local + N, source="local")
        deliveries = wait_value(prom_parser, addr, P + "deliveries_total", base["deliveries_total"] + N * M)
        after = Scrape(prom_parser, addr)
        lat = after.value(P + "delivery_latency_seconds_count") - base["delivery_latency_seconds_count"]
        print("\nafter %d publishes to %d subscribers: messages_in{local} +%d, deliveries +%d, latency count +%d, "
              "commands +%d, connections +%d, latency sum %.6fs"
              % (N, M, local - base_local, deliveries - base["deliveries_total"], lat,
                 after.value(P + "commands_total") - base["commands_total"],
                 after.value(P + "connections_total") - base["connections_total"],
                 after.value(P + "delivery_latency_seconds_sum")))
        assert local - base_local == N, "messages_in_total{source=local} rose by %d, expected %d" % (local - base_local, N)
        assert deliveries - base["deliveries_total"] == N * M, \
            "deliveries_total rose by %d, expected %d" % (deliveries - base["deliveries_total"], N * M)
        assert after.value(P + "messages_in_total", source="redis") == 0
        assert after.value(P + "messages_in_total", source="postgres") == 0
        assert 1 <= lat <= N * M, "delivery_latency_seconds_count rose by %d" % lat
        inf = after.value(P + "delivery_latency_seconds_bucket", le="+Inf")
        assert inf == after.value(P + "delivery_latency_seconds_count"), "+Inf bucket != _count"
        # M SUBSCRIBE + PSUBSCRIBE + SUBSCRIBE side + SSUBSCRIBE side + N PUBLISH
        assert after.value(P + "commands_total") - base["commands_total"] == N + M + 3
        assert after.value(P + "connections_total") - base["connections_total"] == M + 2
        assert after.value(P + "dropped_total") == base["dropped_total"]

        # An unknown command is rejected and counted; the connection stays.
        reply = pub.call("NOSUCHCOMMAND", "x")
        assert isinstance(reply, tuple) and reply[0] == "ERR", reply
        assert wait_value(prom_parser, addr, P + "commands_rejected_total", base_unknown + 1,
                          reason="unknown_command") == base_unknown + 1

        # A command not allowed in RESP2 subscribed context is rejected (reason="rejected").
        base_rejected = Scrape(prom_parser, addr).value(P + "commands_rejected_total", reason="rejected")
        reply = pat.call("PUBLISH", "mch", "nope")
        assert isinstance(reply, tuple) and reply[0] == "ERR", reply
        assert wait_value(prom_parser, addr, P + "commands_rejected_total", base_rejected + 1,
                          reason="rejected") == base_rejected + 1

        # A protocol error: -ERR, disconnect, both counters.
        with Conn(relay.socket) as bad:
            bad.send(b"*1\r\n$abc\r\n")
            data, closed = bad.read_until_close(3)
            assert data.startswith(b"-ERR Protocol error"), data
            assert closed
        proto = wait_value(prom_parser, addr, P + "protocol_errors_total", base_proto + 1)
        disc = wait_value(prom_parser, addr, P + "disconnects_total", base_disc + 1, reason="protocol_error")
        assert proto == base_proto + 1, "protocol_errors_total %s -> %s" % (base_proto, proto)
        assert disc == base_disc + 1, "disconnects_total{reason=protocol_error} %s -> %s" % (base_disc, disc)
    finally:
        for c in subs + [pat, pub]:
            c.close()
    assert wait_value(prom_parser, addr, P + "clients", base_clients) == base_clients, "clients gauge after all closed"
    assert wait_value(prom_parser, addr, P + "subscriptions", base_chan, kind="channel") == base_chan
    assert wait_value(prom_parser, addr, P + "subscriptions", base_pat, kind="pattern") == base_pat
    assert wait_value(prom_parser, addr, P + "subscriptions", base_shard, kind="shard") == base_shard


def test_metrics_disconnect_reasons(metrics_relay, prom_parser):
    """disconnects_total{reason="slow_consumer"} for a subscriber cut at the output limit and
    {reason="security"} for an HTTP request sent to the relay socket."""
    relay, addr = metrics_relay("tcp", {"RELAY_CLIENT_BUFFER_LIMIT": "256kb 0 0"})
    P = "pubsub_relay_disconnects_total"
    before = Scrape(prom_parser, addr)
    slow0, sec0 = before.value(P, reason="slow_consumer"), before.value(P, reason="security")
    stuck = Conn(relay.socket, rcvbuf=4096)
    pub = Conn(relay.socket, timeout=20)
    try:
        assert stuck.call("SUBSCRIBE", "slow") == [b"subscribe", b"slow", 1]
        n = 2000
        pub.send(b"".join(cmd("PUBLISH", "slow", b"x" * 1000) for _ in range(n)))
        frames, status = pub.read_frames(n, 20)
        assert status == "ok", status
        assert wait_value(prom_parser, addr, P, slow0 + 1, reason="slow_consumer") == slow0 + 1
    finally:
        stuck.close()
        pub.close()
    with Conn(relay.socket) as web:
        try:
            web.send(b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = web.read_until_close(3)
        assert closed, data
    assert wait_value(prom_parser, addr, P, sec0 + 1, reason="security") == sec0 + 1


# Every INFO counter and its /metrics series, as the README's tables name them ("Health and
# metrics"); `protocol_errors_<reason>` maps to `pubsub_relay_protocol_errors_total{reason}`.
INFO_COUNTER_SERIES = {
    "total_connections_received": ("pubsub_relay_connections_total", {}),
    "total_commands_processed": ("pubsub_relay_commands_total", {}),
    "messages_published": ("pubsub_relay_messages_in_total", {"source": "local"}),
    "messages_from_redis": ("pubsub_relay_messages_in_total", {"source": "redis"}),
    "messages_from_postgres": ("pubsub_relay_messages_in_total", {"source": "postgres"}),
    "messages_delivered": ("pubsub_relay_deliveries_total", {}),
    "unknown_commands": ("pubsub_relay_commands_rejected_total", {"reason": "unknown_command"}),
    "rejected_commands": ("pubsub_relay_commands_rejected_total", {"reason": "rejected"}),
    "protocol_errors": ("pubsub_relay_disconnects_total", {"reason": "protocol_error"}),
    "dropped_frames": ("pubsub_relay_dropped_total", {"reason": "client_closing"}),
    "slow_consumer_disconnects": ("pubsub_relay_disconnects_total", {"reason": "slow_consumer"}),
    "query_buffer_disconnects": ("pubsub_relay_disconnects_total", {"reason": "query_buffer"}),
    "security_disconnects": ("pubsub_relay_disconnects_total", {"reason": "security"}),
    "accept_errors_fd_limit": ("pubsub_relay_accept_errors_total", {"reason": "fd_limit"}),
    "accept_errors_no_memory": ("pubsub_relay_accept_errors_total", {"reason": "no_memory"}),
    "auth_failures": ("pubsub_relay_auth_failures_total", {}),
    "redis_reconnects": ("pubsub_relay_upstream_reconnects_total", {"upstream": "redis"}),
    "redis_gaps": ("pubsub_relay_upstream_gaps_total", {"upstream": "redis"}),
    "redis_gap_seconds_total": ("pubsub_relay_upstream_gap_seconds_total", {"upstream": "redis"}),
    "redis_unconfirmed_publishes": ("pubsub_relay_redis_unconfirmed_publishes_total", {}),
    "redis_refused_subscriptions": ("pubsub_relay_redis_refused_subscriptions_total", {}),
    "redis_held_publishes": ("pubsub_relay_redis_held_publishes_total", {}),
    "redis_malformed_fleet_messages": ("pubsub_relay_redis_malformed_fleet_messages_total", {}),
    "redis_cluster_refreshes": ("pubsub_relay_redis_cluster_refreshes_total", {}),
    "redis_cluster_redirects": ("pubsub_relay_redis_cluster_redirects_total", {}),
    "redis_cluster_slot_moves_pushed": ("pubsub_relay_redis_cluster_slot_moves_pushed_total", {}),
    "redis_cluster_resubscriptions": ("pubsub_relay_redis_cluster_resubscriptions_total", {}),
    "redis_reply_limit_disconnects": ("pubsub_relay_redis_reply_limit_disconnects_total", {}),
    "redis_master_switches": ("pubsub_relay_redis_master_switches_total", {}),
    "postgres_lease_changes": ("pubsub_relay_leader_changes_total", {}),
    "postgres_notifications_received": ("pubsub_relay_postgres_notifications_received_total", {}),
    "postgres_notifications_published": ("pubsub_relay_postgres_notifications_published_total", {}),
    "postgres_notifications_delivered_locally": ("pubsub_relay_postgres_notifications_delivered_locally_total", {}),
    "postgres_notifications_lost_upstream": ("pubsub_relay_postgres_notifications_lost_upstream_total", {}),
    "postgres_notifications_dropped_as_standby": ("pubsub_relay_postgres_notifications_dropped_as_standby_total", {}),
    "postgres_reconnects": ("pubsub_relay_upstream_reconnects_total", {"upstream": "postgres"}),
    "postgres_gaps": ("pubsub_relay_upstream_gaps_total", {"upstream": "postgres"}),
    "postgres_gap_seconds_total": ("pubsub_relay_upstream_gap_seconds_total", {"upstream": "postgres"}),
}

# INFO fields that are not counters (settings, state, gauges): /metrics need not mirror them. Any
# other INFO field is taken for a counter and must be in INFO_COUNTER_SERIES.
INFO_NOT_COUNTERS = {
    "redis_version", "relay_version", "redis_mode", "relay_mode", "os", "arch_bits", "process_id",
    "uptime_in_seconds", "uptime_in_days", "unix_socket", "tcp_port", "tcp_address", "tcp_activated",
    "password_required",
    "connected_clients", "pubsub_clients", "client_output_buffer_limit_pubsub", "max_message_bytes",
    "redis_backplane", "redis_url", "redis_relay_id", "redis_state", "redis_subscriber_link",
    "redis_publisher_link", "redis_degraded", "redis_degraded_since", "redis_degraded_seconds",
    "redis_last_error", "redis_upstream_channels", "redis_upstream_patterns", "redis_upstream_shard_channels",
    "redis_pending_confirmations",
    "redis_topology", "redis_master", "redis_sentinel", "redis_fleet_receivers", "redis_fleet_relays_known",
    "redis_cluster_pubsub", "redis_cluster_nodes", "redis_cluster_masters", "redis_cluster_masters_connected",
    "redis_cluster_slots_complete", "redis_cluster_slot_map_version", "redis_cluster_home", "redis_cluster_control_node",
    "redis_cluster_master0", "redis_cluster_master1", "redis_cluster_master2",
    "postgres_bridge", "postgres_mode", "postgres_listening", "postgres_leader", "postgres_channels",
    "postgres_last_error",
    "pubsub_channels", "pubsub_patterns", "pubsubshard_channels",
}


def info_counters_vs_metrics(parser, relay: Relay, addr: str) -> dict:
    """INFO all, read between two scrapes: each counter INFO shows must be a /metrics series whose
    value is the same (counters only grow, so INFO's lies between the two scrapes; the INFO
    connection itself moves `total_connections_received`/`total_commands_processed` in between).
    Returns the INFO counters."""
    before = Scrape(parser, addr)
    info = relay_info(relay.socket, "all")
    after = Scrape(parser, addr)
    problems, counters = [], {}
    for key, raw in sorted(info.items()):
        if key in INFO_NOT_COUNTERS:
            continue
        if key.startswith("protocol_errors_"):
            series = ("pubsub_relay_protocol_errors_total", {"reason": key[len("protocol_errors_"):]})
        elif key in INFO_COUNTER_SERIES:
            series = INFO_COUNTER_SERIES[key]
        else:
            problems.append("INFO %s:%s is neither a known counter nor a known state field" % (key, raw))
            continue
        metric, labels = series
        counters[key] = float(raw)
        if not after.has_sample(metric, **labels):
            problems.append("INFO %s:%s has no /metrics series %s%r" % (key, raw, metric, labels))
            continue
        lo, hi = before.value(metric, **labels), after.value(metric, **labels)
        slack = 0.0006 if "seconds" in key else 0   # INFO shows seconds to the millisecond
        if not lo - slack <= counters[key] <= hi + slack:
            problems.append("INFO %s:%s but %s%r is %s..%s" % (key, raw, metric, labels, lo, hi))
    assert problems == [], "INFO counters vs /metrics:\n  " + "\n  ".join(problems)
    return counters


@pytest.mark.parametrize("mode", ["local", "backplane", "postgres", "postgres_backplane"])
def test_info_counters_match_metrics(mode, metrics_relay, prom_parser, redis_at_factory, request):
    """After some traffic (publishes, an unknown command, a protocol error, Postgres notifications),
    every counter in INFO is on /metrics with the same value: both are rendered from one table
    (Sources/RelayCore/Metrics/CounterDefinition.swift)."""
    env = {}
    if mode.endswith("backplane"):
        env["REDIS_URL"] = unix_url(redis_at_factory().socket)
    if mode.startswith("postgres"):
        pg_db = request.getfixturevalue("pg_db")
        env.update({"DATABASE_URL": pg_db.conninfo, "RELAY_PG_CHANNELS": "ch", "RELAY_PG_PREFIX": "pg:"})
    relay, addr = metrics_relay("unix", env)
    if mode.endswith("backplane"):
        wait_redis_state(relay, "up")
    if mode.startswith("postgres"):
        want = ("postgres_leader", "1") if mode.endswith("backplane") else ("postgres_listening", "1")
        assert wait_until(lambda: relay_info(relay.socket).get(want[0]) == want[1], 10), \
            "%s:%s not reached: %r" % (want[0], want[1], relay_info(relay.socket))

    N = 5
    with Conn(relay.socket, timeout=10) as sub, Conn(relay.socket, timeout=10) as pub:
        assert sub.call("SUBSCRIBE", "c") == [b"subscribe", b"c", 1]
        for i in range(N):
            assert isinstance(pub.call("PUBLISH", "c", "m%d" % i), int)
        frames, status = sub.read_frames(N, 10)
        assert status == "ok", status
        assert isinstance(pub.call("NOSUCHCOMMAND"), tuple)
        if mode.startswith("postgres"):
            assert sub.call("SUBSCRIBE", "pg:ch") == [b"subscribe", b"pg:ch", 2]
            for i in range(N):
                pg_db.execute("SELECT pg_notify('ch', %s)", ("n%d" % i,))
            frames, status = sub.read_frames(N, 10)
            assert status == "ok", status
    with Conn(relay.socket) as bad:
        bad.send(b"*1\r\n$abc\r\n")
        data, closed = bad.read_until_close(3)
        assert data.startswith(b"-ERR Protocol error") and closed, data

    counters = info_counters_vs_metrics(prom_parser, relay, addr)
    print("\nINFO counters (%s): %r" % (mode, counters))
    # The check above ran over the counters this mode has, and they moved.
    assert counters["messages_delivered"] >= N and counters["unknown_commands"] == 1
    assert counters["protocol_errors"] == 1
    assert sum(v for k, v in counters.items() if k.startswith("protocol_errors_")) == 1, counters
    assert ("redis_reconnects" in counters) == mode.endswith("backplane")
    if mode.endswith("backplane"):
        assert counters["messages_from_redis"] >= N
    if mode == "postgres":
        assert counters["postgres_notifications_delivered_locally"] == N
    if mode == "postgres_backplane":
        assert counters["postgres_notifications_published"] == N and counters["postgres_lease_changes"] >= 1
    if mode.startswith("postgres"):
        assert counters["postgres_notifications_received"] == N
        assert "postgres_notifications_dropped_as_standby" in counters
        assert "postgres_notifications_lost_upstream" in counters
    else:
        assert "postgres_reconnects" not in counters


def test_health_serving_and_404(metrics_relay):
    relay, addr = metrics_relay("tcp")
    with Conn(relay.socket) as c1, Conn(relay.socket) as c2:
        assert c1.call("PING") == "PONG" and c2.call("PING") == "PONG"
        status, headers, body = http_get(addr, "/health")
        print("\n/health: %d %r %r" % (status, headers, body))
        assert status == 200, (status, body)
        assert "json" in headers.get("content-type", ""), headers
        doc = json.loads(body)
        assert doc["status"] == "serving", doc
        assert doc["clients"] == 2, doc
        assert doc["socket"] == relay.socket, doc
        assert doc["upstreams"] == {"redis": "not configured", "postgres": "not configured"}, doc
    for path in ("/", "/nope", "/metrics/x", "/healthz"):
        status, _, body = http_get(addr, path)
        assert status == 404, (path, status, body)


def test_health_flips_to_503_during_shutdown(metrics_relay):
    relay, addr = metrics_relay("tcp")
    stuck = Conn(relay.socket, rcvbuf=4096)
    pub = Conn(relay.socket, timeout=20)
    seen: list[tuple[float, object]] = []
    try:
        assert stuck.call("SUBSCRIBE", "stuck") == [b"subscribe", b"stuck", 1]
        n = 3000
        pub.send(b"".join(cmd("PUBLISH", "stuck", b"h" * 1000) for _ in range(n)))
        frames, status = pub.read_frames(n, 20)
        assert status == "ok", status
        assert http_get(addr, "/health")[0] == 200
        t_sig = time.monotonic()
        os.kill(relay.pid, signal.SIGTERM)
        deadline = t_sig + SHUTDOWN_FLUSH_BOUND + EXIT_MARGIN
        while time.monotonic() < deadline:
            try:
                status, _, body = http_get(addr, "/health", timeout=1)
                seen.append((time.monotonic() - t_sig, (status, body)))
            except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
                seen.append((time.monotonic() - t_sig, type(e).__name__))
                if relay.proc.poll() is not None:
                    break
            except (OSError, AssertionError) as e:
                seen.append((time.monotonic() - t_sig, repr(e)))
            if relay.proc.poll() is not None and seen and not isinstance(seen[-1][1], tuple):
                break
            time.sleep(0.02)
        rc = wait_exit(relay.proc, max(0.1, deadline - time.monotonic()) + 1, relay.stderr())
    finally:
        stuck.close()
        pub.close()
    summary = []
    for t, what in seen:
        label = what[0] if isinstance(what, tuple) else what
        if not summary or summary[-1][1] != label:
            summary.append((t, label))
    print("\n/health after SIGTERM (first time each answer was seen): %s; exit %d"
          % (", ".join("%.3fs %s" % s for s in summary), rc))
    answers = [w for _, w in seen]
    first_503 = next((i for i, w in enumerate(answers) if isinstance(w, tuple) and w[0] == 503), None)
    assert first_503 is not None, "never saw 503 from /health during shutdown: %s" % summary
    before = answers[:first_503]
    assert all(isinstance(w, tuple) and w[0] == 200 for w in before), \
        "before the first 503 /health gave something other than 200: %s" % summary
    after = answers[first_503:]
    assert not any(isinstance(w, tuple) and w[0] == 200 for w in after), "200 again after a 503: %s" % summary
    doc = json.loads(answers[first_503][1])
    assert doc["status"] == "stopping", doc
    assert rc == 0


def test_live_metrics_socket_is_not_stolen(metrics_relay, relay_factory):
    """A second relay given the same RELAY_METRICS_ADDR socket path must not unlink the first one's
    live endpoint (the relay socket itself is never stolen either): monitoring would then scrape the
    wrong process, and the first relay's /health would vanish when the second one exits."""
    first, addr = metrics_relay("unix")
    inode = os.stat(addr).st_ino
    second = relay_factory({"RELAY_METRICS_ADDR": addr}, wait=False)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and second.proc.poll() is None:
        time.sleep(0.05)
    print("\nsecond relay on the same metrics socket: exit %s, stderr %r" % (second.proc.poll(), lines_of(second.stderr())))
    assert os.path.exists(addr) and os.stat(addr).st_ino == inode, \
        "the second relay replaced the first relay's live metrics socket %s" % addr
    status, _, body = http_get(addr, "/health")
    assert status == 200 and json.loads(body)["socket"] == first.socket, body


# ---- SIGTERM with 100 clients and pending output ------------------------------------------------

def _fionread(sock: socket.socket) -> int:
    import array
    import fcntl
    import termios
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return buf[0]


def test_sigterm_100_subscribers_get_everything(relay_factory):
    relay = relay_factory()
    n_subs, k = 100, 500
    body = b"." * 1024
    subs = []
    pub = Conn(relay.socket, timeout=20)
    try:
        for _ in range(n_subs):
            s = Conn(relay.socket, timeout=10)
            s.send(cmd("SUBSCRIBE", "many"))
            subs.append(s)
        for s in subs:
            assert parse1(s.read_frame()) == [b"subscribe", b"many", 1]
        pub.send(b"".join(cmd("PUBLISH", "many", b"%05d:" % i + body) for i in range(k)))
        frames, status = pub.read_frames(k, 20)
        assert status == "ok" and set(frames) == {b":%d\r\n" % n_subs}, (status, set(frames))
        # Nobody has read: part of the output sits in the kernel, the rest must still be in the relay.
        time.sleep(0.2)
        frame_len = len(cmd("message", "many", b"%05d:" % 0 + body))
        in_kernel = sum(_fionread(s.sock) for s in subs)
        pending = n_subs * k * frame_len - in_kernel
        print("\n%d bytes published to each of %d subscribers; %d bytes queued in the kernel, %d still in the relay"
              % (k * frame_len, n_subs, in_kernel, pending))
        assert pending > n_subs * 64 * 1024, "too little output pending in the relay for this test to mean anything"
        t_sig = time.monotonic()
        os.kill(relay.pid, signal.SIGTERM)
        bufs = {s.sock.fileno(): bytearray() for s in subs}
        open_socks = {s.sock.fileno(): s.sock for s in subs}
        deadline = t_sig + SHUTDOWN_FLUSH_BOUND + EXIT_MARGIN + 3
        while open_socks and time.monotonic() < deadline:
            r, _, _ = select.select(list(open_socks.values()), [], [], 0.2)
            for sk in r:
                try:
                    data = sk.recv(1 << 20)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if data:
                    bufs[sk.fileno()] += data
                else:
                    del open_socks[sk.fileno()]
        t_read = time.monotonic()
        rc = wait_exit(relay.proc, max(0.1, t_sig + SHUTDOWN_FLUSH_BOUND + EXIT_MARGIN - time.monotonic()),
                       relay.stderr())
        t_exit = time.monotonic()
    finally:
        pub.close()
        for s in subs:
            s.close()
    print("\nSIGTERM with %d subscribers x %d pending 1 KiB messages: all read after %.3fs, exit %d after %.3fs"
          % (n_subs, k, t_read - t_sig, rc, t_exit - t_sig))
    assert not open_socks, "%d subscribers not closed by the relay" % len(open_socks)
    expected = [[b"message", b"many", b"%05d:" % i + body] for i in range(k)]
    bad = []
    for fd, data in bufs.items():
        frames, rest = split_frames(bytes(data))
        got = [parse1(f) for f in frames]
        if got != expected or rest:
            first_diff = next((i for i, (a, b_) in enumerate(zip(got, expected)) if a != b_), min(len(got), k))
            bad.append("fd %d: %d of %d messages, first difference at %d, %d trailing bytes"
                       % (fd, len(got), k, first_diff, len(rest)))
    assert bad == [], "%d subscribers did not get all %d messages in order:\n%s" % (len(bad), k, "\n".join(bad[:10]))
    assert rc == 0
    assert t_exit - t_sig <= SHUTDOWN_FLUSH_BOUND + EXIT_MARGIN


# ---- SIGHUP reload ------------------------------------------------------------------------------

def _write(path: str, lines: list[str]):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _publish_outcome(sock: str, size: int) -> bytes:
    with Conn(sock, timeout=3) as c:
        try:
            c.send(cmd("PUBLISH", "reload-ch", b"p" * size))
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, status = c.read_frames(1, 3)
        if status != "ok":
            return b"<%s> %r" % (status.encode(), c.buf[:100])
        return frames[0]


def test_sighup_reloads_env_file(relay_factory):
    d = short_tmpdir("rit-hup-")
    sock = os.path.join(d, "relay.sock")
    env_file = os.path.join(d, "relay.env")
    common = ["RELAY_SOCKET=%s" % sock, "RELAY_METRICS_ADDR="]
    _write(env_file, common + ["RELAY_SOCKET_MODE=0660", "RELAY_LOG_LEVEL=info",
                               "RELAY_CLIENT_BUFFER_LIMIT='32mb 8mb 60'"])
    relay = relay_factory({"RELAY_SOCKET": None, "RELAY_LOG_LEVEL": None}, socket_path=sock,
                          args=["--env-file", env_file])
    assert _publish_outcome(sock, 3072) == b":0\r\n"
    keep = Conn(sock)
    assert keep.call("SUBSCRIBE", "reload-ch") == [b"subscribe", b"reload-ch", 1]

    _write(env_file, common + ["RELAY_SOCKET_MODE=0600", "RELAY_LOG_LEVEL=debug", "RELAY_MAX_MESSAGE_BYTES=2kb",
                               "RELAY_CLIENT_BUFFER_LIMIT='32mb 8mb 60'"])
    since = len(relay.stderr())
    os.kill(relay.pid, signal.SIGHUP)

    def complete(text):
        ls = text.splitlines()
        return (any("RELAY_LOG_LEVEL" in l for l in ls) and any("RELAY_MAX_MESSAGE_BYTES" in l for l in ls)
                and any("RELAY_SOCKET_MODE" in l and "restart" in l.lower() for l in ls))
    new = wait_stderr(relay, since, complete, 5)
    print("\nstderr after SIGHUP:\n%s" % new)
    ls = lines_of(new)
    assert any("RELAY_LOG_LEVEL" in l for l in ls), "no line naming the applied RELAY_LOG_LEVEL change: %r" % ls
    assert any("RELAY_MAX_MESSAGE_BYTES" in l for l in ls), "no line naming the applied RELAY_MAX_MESSAGE_BYTES change: %r" % ls
    assert any("RELAY_SOCKET_MODE" in l and "restart" in l.lower() for l in ls), \
        "no line saying RELAY_SOCKET_MODE needs a restart: %r" % ls
    assert not any("RELAY_CLIENT_BUFFER_LIMIT" in l for l in ls), "unchanged RELAY_CLIENT_BUFFER_LIMIT reported: %r" % ls
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660, "socket mode changed without a restart"
    assert relay.proc.poll() is None

    out = _publish_outcome(sock, 3072)
    assert out == b"-ERR Protocol error: invalid bulk length\r\n", "3 KiB PUBLISH after reload to 2kb: %r" % out
    assert _publish_outcome(sock, 2048) == b":1\r\n"
    assert parse1(keep.read_frame()) == [b"message", b"reload-ch", b"p" * 2048]

    # An invalid file: logged, nothing changes (not even the valid lines of that file), still serving.
    _write(env_file, common + ["RELAY_SOCKET_MODE=0600", "RELAY_LOG_LEVEL=debug", "RELAY_MAX_MESSAGE_BYTES=4kb",
                               "RELAY_MAX_ARGUMENTS=lots", "RELAY_CLIENT_BUFFER_LIMIT='32mb 8mb 60'"])
    since = len(relay.stderr())
    os.kill(relay.pid, signal.SIGHUP)
    new = wait_stderr(relay, since, lambda t: "RELAY_MAX_ARGUMENTS" in t, 5)
    print("stderr after SIGHUP with an invalid file:\n%s" % new)
    assert "RELAY_MAX_ARGUMENTS" in new, "invalid env file on reload not logged: %r" % new
    time.sleep(0.2)
    assert relay.proc.poll() is None, "relay exited on an invalid reload: %s" % relay.stderr()
    with Conn(sock) as c:
        assert c.call("PING") == "PONG"
    out = _publish_outcome(sock, 3072)
    assert out == b"-ERR Protocol error: invalid bulk length\r\n", \
        "after a rejected reload the 2kb limit must stay (got %r for 3 KiB)" % out

    # A file that is gone: logged, still serving.
    os.unlink(env_file)
    since = len(relay.stderr())
    os.kill(relay.pid, signal.SIGHUP)
    new = wait_stderr(relay, since, lambda t: env_file in t, 5)
    print("stderr after SIGHUP with the env file removed:\n%s" % new)
    assert env_file in new, "a missing env file on reload not logged: %r" % new
    time.sleep(0.2)
    assert relay.proc.poll() is None
    assert _publish_outcome(sock, 2048) == b":1\r\n"
    keep.close()


def test_sighup_reload_limits_apply_and_deleted_lines_revert(relay_factory):
    """RELAY_CLIENT_BUFFER_LIMIT (for an existing subscriber too), RELAY_MAX_ARGUMENTS and
    RELAY_ENABLE_DEBUG_COMMAND take effect on reload; a changed RELAY_METRICS_ADDR needs a restart;
    a line deleted from the file reverts to its default."""
    d = short_tmpdir("rit-hup2-")
    sock = os.path.join(d, "relay.sock")
    env_file = os.path.join(d, "relay.env")
    common = ["RELAY_SOCKET=%s" % sock, "RELAY_LOG_LEVEL=info"]
    _write(env_file, common + ["RELAY_METRICS_ADDR=", "RELAY_CLIENT_BUFFER_LIMIT='32mb 8mb 60'",
                               "RELAY_MAX_MESSAGE_BYTES=2kb"])
    relay = relay_factory({"RELAY_SOCKET": None, "RELAY_LOG_LEVEL": None, "RELAY_METRICS_ADDR": None},
                          socket_path=sock, args=["--env-file", env_file])
    assert _publish_outcome(sock, 3072) == b"-ERR Protocol error: invalid bulk length\r\n"
    stuck = Conn(sock, rcvbuf=4096)
    pub = Conn(sock, timeout=20)
    try:
        assert stuck.call("SUBSCRIBE", "hup2") == [b"subscribe", b"hup2", 1]
        metrics_sock = os.path.join(d, "m.sock")
        _write(env_file, common + ["RELAY_METRICS_ADDR=%s" % metrics_sock,
                                   "RELAY_CLIENT_BUFFER_LIMIT='256kb 0 0'", "RELAY_MAX_ARGUMENTS=10",
                                   "RELAY_ENABLE_DEBUG_COMMAND=yes"])
        since = len(relay.stderr())
        os.kill(relay.pid, signal.SIGHUP)
        want = ["RELAY_CLIENT_BUFFER_LIMIT", "RELAY_MAX_ARGUMENTS", "RELAY_ENABLE_DEBUG_COMMAND",
                "RELAY_MAX_MESSAGE_BYTES"]
        new = wait_stderr(relay, since, lambda t: all(w in t for w in want) and "RELAY_METRICS_ADDR" in t, 5)
        print("\nstderr after SIGHUP:\n%s" % new)
        ls = lines_of(new)
        for w in want:
            assert any(w in l for l in ls), "no line naming the applied %s change: %r" % (w, ls)
        assert any("RELAY_METRICS_ADDR" in l and "restart" in l.lower() for l in ls), \
            "no line saying RELAY_METRICS_ADDR needs a restart: %r" % ls
        assert not os.path.exists(metrics_sock), "RELAY_METRICS_ADDR applied without a restart"

        # The deleted RELAY_MAX_MESSAGE_BYTES line reverted to the 1mb default (no subscriber on reload-ch).
        assert _publish_outcome(sock, 3072) == b":0\r\n"
        # RELAY_MAX_ARGUMENTS=10: an 11-argument SUBSCRIBE is a protocol error now.
        with Conn(sock) as c:
            try:
                c.send(cmd("SUBSCRIBE", *["c%d" % i for i in range(10)]))
            except (BrokenPipeError, ConnectionResetError):
                pass
            data, closed = c.read_until_close(3)
            assert data.startswith(b"-ERR Protocol error"), data
            assert closed
        # RELAY_ENABLE_DEBUG_COMMAND=yes: DEBUG SLEEP 0 answers without an error.
        with Conn(sock) as c:
            reply = c.call("DEBUG", "SLEEP", "0")
            assert not (isinstance(reply, tuple) and reply[0] == "ERR"), reply
        # The 256kb hard limit cuts off the subscriber that was connected before the reload.
        n = 2000
        pub.send(b"".join(cmd("PUBLISH", "hup2", b"b" * 1000) for _ in range(n)))
        frames, status = pub.read_frames(n, 20)
        assert status == "ok", status
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        data, closed = stuck.read_until_close(5)
        print("existing subscriber after 2 MB with a 256kb limit: %d bytes, closed=%s" % (len(data), closed))
        assert closed, "existing subscriber not cut off by the reloaded RELAY_CLIENT_BUFFER_LIMIT"
        assert len(data) < 1_500_000, "subscriber got %d bytes although the limit is 256kb" % len(data)
        assert relay.proc.poll() is None
    finally:
        stuck.close()
        pub.close()


# ---- bad configuration (what test_lifecycle.py does not cover) ---------------------------------

def _run_expect_78(relay_factory, env=None, args=None) -> str:
    relay = relay_factory(env, wait=False, args=args)
    rc = wait_exit(relay.proc, 5, relay.stderr())
    lines = lines_of(relay.stderr())
    print("\nexit %d, stderr %r" % (rc, lines))
    assert rc == EX_CONFIG, "exit %s, stderr %r" % (rc, lines)
    assert len(lines) == 1, "expected exactly one stderr line, got %r" % lines
    assert not os.path.exists(relay.socket), "socket created despite invalid config"
    return lines[0]


def test_typo_variable_exit_78_suggests(relay_factory):
    line = _run_expect_78(relay_factory, {"RELAY_MAX_MESSAGE_BYTE": "2kb"})
    assert "RELAY_MAX_MESSAGE_BYTE" in line
    assert "RELAY_MAX_MESSAGE_BYTES" in line, "no suggestion of the variable meant: %r" % line


@pytest.mark.parametrize("entry,name", [("RELAY_LOG_LEVLE=debug", "RELAY_LOG_LEVLE"),
                                        ("RELAY_MAX_ARGUMENTS=12x", "RELAY_MAX_ARGUMENTS"),
                                        ("RELAY_QUERY_BUFFER_LIMIT=1.5mb", "RELAY_QUERY_BUFFER_LIMIT")],
                         ids=["typo", "bad-number", "bad-size"])
def test_bad_env_file_entry_exit_78(relay_factory, entry, name):
    d = short_tmpdir("rit-badenv-")
    path = os.path.join(d, "relay.env")
    _write(path, ["RELAY_METRICS_ADDR=", entry])
    line = _run_expect_78(relay_factory, args=["--env-file", path])
    assert name in line, line


@pytest.mark.parametrize("kind", ["directory", "nonexistent"])
def test_unreadable_env_file_exit_78(relay_factory, relay_binary, kind):
    d = short_tmpdir("rit-unread-")
    path = d if kind == "directory" else os.path.join(d, "missing.env")
    line = _run_expect_78(relay_factory, args=["--env-file", path])
    assert path in line, line
    # check-config says the same.
    res = subprocess.run([relay_binary, "check-config", "--env-file", path], env=relay_env(None), capture_output=True,
                         text=True, timeout=10)
    cl = lines_of(res.stderr)
    assert res.returncode == EX_CONFIG, (res.returncode, res.stdout, res.stderr)
    assert len(cl) == 1 and path in cl[0], cl


# ---- logs: journald and JSON --------------------------------------------------------------------

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")


def test_journald_format(relay_factory):
    d = short_tmpdir("rit-journal-")
    env_file = os.path.join(d, "relay.env")
    _write(env_file, ["RELAY_LOG_LEVEL=info", "RELAY_METRICS_ADDR="])
    relay = relay_factory({"JOURNAL_STREAM": "1:1", "RELAY_LOG_LEVEL": None}, args=["--env-file", env_file])
    with Conn(relay.socket) as conn:
        assert conn.call("PING") == "PONG"
    # A protocol error is logged at warning or worse (README: `journalctl -p warning` shows them).
    with Conn(relay.socket) as bad:
        bad.send(b"*1\r\n$abc\r\n")
        data, closed = bad.read_until_close(3)
        assert data.startswith(b"-ERR Protocol error") and closed, data
    # An invalid reload is logged at warning or worse: `journalctl -p warning` must see it.
    _write(env_file, ["RELAY_LOG_LEVEL=info", "RELAY_METRICS_ADDR=", "RELAY_MAX_MESSAGE_BYTES=abc"])
    since = len(relay.stderr())
    os.kill(relay.pid, signal.SIGHUP)
    wait_stderr(relay, since, lambda t: "RELAY_MAX_MESSAGE_BYTES" in t, 5)
    assert relay.stop() == 0
    lines = lines_of(relay.stderr())
    print("\njournald-format stderr:\n%s" % "\n".join(lines))
    assert lines, "no log lines"
    bad = [l for l in lines if not re.match(r"^<[0-7]>", l)]
    assert bad == [], "lines without a <N> priority prefix: %r" % bad
    stamped = [l for l in lines if TIMESTAMP.search(l)]
    assert stamped == [], "timestamps under journald (journald adds its own): %r" % stamped
    assert any(l.startswith("<6>") for l in lines), "no info-level (<6>) line"
    warn = [l for l in lines if "RELAY_MAX_MESSAGE_BYTES" in l]
    assert warn and all(int(l[1]) <= 4 for l in warn), "invalid reload not logged at warning or worse: %r" % warn
    proto = [l for l in lines if "protocol" in l.lower()]
    assert proto and all(int(l[1]) <= 4 for l in proto), "protocol error not logged at warning or worse: %r" % proto


def test_text_format_without_journald(relay_factory):
    relay = relay_factory({"JOURNAL_STREAM": None})
    assert relay.stop() == 0
    lines = lines_of(relay.stderr())
    assert lines
    assert all(TIMESTAMP.match(l) for l in lines), "text lines without a leading timestamp: %r" % lines
    assert not any(re.match(r"^<[0-7]>", l) for l in lines), lines


def test_json_log_format(relay_factory):
    relay = relay_factory({"RELAY_LOG_FORMAT": "json", "JOURNAL_STREAM": None})
    with Conn(relay.socket) as conn:
        assert conn.call("PING") == "PONG"
    assert relay.stop() == 0
    lines = lines_of(relay.stderr())
    print("\njson stderr:\n%s" % "\n".join(lines))
    assert len(lines) >= 2, lines
    for l in lines:
        try:
            doc = json.loads(l)
        except ValueError:
            raise AssertionError("not a JSON line: %r" % l)
        assert isinstance(doc, dict), l
        assert doc.get("level") and (doc.get("msg") or doc.get("message")), doc
