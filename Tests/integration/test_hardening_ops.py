"""Operational hardening of the relay process, against the real binary:

* at the open-file limit (EMFILE) the relay stops accepting for a moment instead of spinning on
  the listening socket, logs the episode once (warning, then notice with its length), counts it in
  `/metrics` and `INFO stats`, and serves new clients once descriptors are free again;
* memory freed after a burst goes back to the kernel once the relay is quiet (README, "How it is
  built": the M_TRIM_THRESHOLD paragraph);
* `pubsub-relay check-config` says what the relay would run (local mode, backplane, Postgres
  bridge), with the passwords masked.

Every process is started here and stopped by its PID; every wait is bounded.
"""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import time

import pytest

from conftest import cpu_seconds, relay_env, relay_info, rss_kib, short_tmpdir
from test_operations import http_get

def open_fds(pid: int) -> int:
    return len(os.listdir("/proc/%d/fd" % pid))


def raise_own_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip("this test needs %d open files; the hard limit is %d" % (wanted, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.fixture
def limited_relay(relay_factory):
    """start(nofile=None, extra=None): the relay with RLIMIT_NOFILE soft = hard = `nofile` and
    /metrics on a Unix socket (`relay.metrics`)."""

    def start(nofile: int | None = None, extra: dict | None = None):
        metrics = os.path.join(short_tmpdir("rit-ops-"), "metrics.sock")
        env = {"RELAY_METRICS_ADDR": metrics}
        env.update(extra or {})
        relay = relay_factory(env, nofile=nofile)
        relay.metrics = metrics
        return relay

    return start


def metric(addr: str, sample: str) -> float | None:
    status, _, body = http_get(addr, "/metrics")
    assert status == 200, status
    for line in body.decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def ping(path: str, timeout: float = 2.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# ---- the open-file limit ------------------------------------------------------------------------

ACCEPT_PAUSED = "cannot accept connections: out of file descriptors"
ACCEPT_RESUMED = "accepting connections again"


def test_fd_limit_pauses_accepting_instead_of_spinning(limited_relay):
    """700 connections held open against a relay limited to 512 descriptors: the relay accepts
    what it can, then backs off (before: 100% of a core, silently); once the connections close
    it serves new clients, and the episode was logged once and counted."""
    held_count = 700
    raise_own_fd_limit(held_count + 256)
    relay = limited_relay(nofile=512)
    held: list[socket.socket] = []
    try:
        for _ in range(held_count):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(relay.socket)  # completes in the listen backlog (1024) even when not accepted
            held.append(s)
        # The relay fills its descriptor table, then hits EMFILE on accept.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ACCEPT_PAUSED not in relay.stderr():
            time.sleep(0.05)
        fds = open_fds(relay.pid)
        time.sleep(0.5)
        t0, c0 = time.monotonic(), cpu_seconds(relay.pid)
        time.sleep(3.0)
        t1, c1 = time.monotonic(), cpu_seconds(relay.pid)
        share = (c1 - c0) / (t1 - t0)
        print("\nrelay at the fd limit: %d fds open, CPU %.1f%% of a core over %.1f s" % (fds, share * 100, t1 - t0))
        assert fds >= 450, "the relay should have accepted up to its limit (%d fds open)" % fds
        assert share < 0.10, "relay used %.0f%% of a core while at the fd limit (busy accept loop)" % (share * 100)
        assert relay.stderr().count(ACCEPT_PAUSED) == 1, relay.stderr()[-3000:]
    finally:
        for s in held:
            s.close()
    # The backlog drains (closed peers), then a new client is served.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ping(relay.socket):
        time.sleep(0.05)
    assert ping(relay.socket), "relay does not serve a new client after the connections closed"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and ACCEPT_RESUMED not in relay.stderr():
        time.sleep(0.05)
    err = relay.stderr()
    warnings = [line for line in err.splitlines() if ACCEPT_PAUSED in line]
    notices = [line for line in err.splitlines() if ACCEPT_RESUMED in line]
    print("log:\n  " + "\n  ".join(warnings + notices))
    assert len(warnings) == 1 and "warning" in warnings[0].lower(), err[-3000:]
    assert len(notices) == 1 and "notice" in notices[0].lower() and "refused_accepts=" in notices[0], err[-3000:]
    stats = relay_info(relay.socket, "stats")
    refused = int(stats["accept_errors_fd_limit"])
    assert refused >= 1, stats
    # Backed off: a handful of attempts per second paused, not thousands.
    assert refused < 200, "the relay retried accept %d times in ~4 s" % refused
    value = metric(relay.metrics, 'pubsub_relay_accept_errors_total{reason="fd_limit"}')
    assert value is not None and value >= 1, value


# ---- memory given back when quiet ---------------------------------------------------------------

def _subscribe_many(path: str, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        deadline = time.monotonic() + 10
        while True:  # a full listen backlog refuses a Unix connect with EAGAIN: retry, bounded
            try:
                s.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        s.sendall(b"SUBSCRIBE burst\r\n")
        socks.append(s)
    for s in socks:
        got = b""
        while got.count(b"\r\n") < 6:
            got += s.recv(4096)
    return socks


BURST_ROUNDS = 10
BURST_PIPELINE = 20


def test_memory_returned_after_burst(limited_relay):
    """A fan-out burst to 2000 subscribers and their disconnect leave freed heap memory mapped
    (M_TRIM_THRESHOLD is 32 MiB; before, RSS stayed at ~5× idle); once quiet the relay returns
    it: RSS ≤ 2× the idle RSS within 12 s of the load stopping."""
    clients = 2000
    raise_own_fd_limit(clients + 256)
    relay = limited_relay()
    time.sleep(1.0)
    idle = rss_kib(relay.pid)
    subs = _subscribe_many(relay.socket, clients)
    payload = b"x" * 3000  # copied into each subscriber's batch buffer (≤ 4 KiB)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as pub:
        pub.settimeout(10)
        pub.connect(relay.socket)
        command = b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nburst\r\n$%d\r\n%s\r\n" % (len(payload), payload)
        for _ in range(BURST_ROUNDS):
            pub.sendall(command * BURST_PIPELINE)  # one read: each subscriber's batch grows
            got = b""
            deadline = time.monotonic() + 10
            while got.count(b"\r\n") < BURST_PIPELINE and time.monotonic() < deadline:
                got += pub.recv(4096)
            assert got == b":%d\r\n" % clients * BURST_PIPELINE, got[:100]
            # Subscribers read, so nobody reaches the output limit.
            for s in subs:
                s.setblocking(False)
                try:
                    while s.recv(1 << 16):
                        pass
                except BlockingIOError:
                    pass
    peak = rss_kib(relay.pid)
    for s in subs:
        s.close()
    stopped = time.monotonic()
    rss = peak
    while time.monotonic() - stopped < 12:
        time.sleep(0.5)
        rss = rss_kib(relay.pid)
        if rss <= 2 * idle:
            break
    waited = time.monotonic() - stopped
    print("\nrelay RSS: idle %.1f MB, after the burst %.1f MB, %.1f s after the load stopped %.1f MB"
          % (idle / 1024, peak / 1024, waited, rss / 1024))
    assert rss <= 2 * idle, "RSS %.1f MB after %.0f s of quiet; idle was %.1f MB" % (rss / 1024, waited, idle / 1024)
    assert ping(relay.socket)


# ---- check-config ------------------------------------------------------------------------------

def _check_config(binary: str, extra: dict) -> subprocess.CompletedProcess:
    d = short_tmpdir("rit-cc-")
    return subprocess.run([binary, "check-config"], env=relay_env(os.path.join(d, "relay.sock"), extra),
                          capture_output=True, text=True, timeout=30, cwd=d)


def test_check_config_local_mode(relay_binary):
    res = _check_config(relay_binary, {})
    assert res.returncode == 0, res.stderr
    assert "local mode" in res.stdout, res.stdout
    assert "backplane" not in res.stdout and "postgres" not in res.stdout.lower(), res.stdout


def test_check_config_backplane_redacted(relay_binary):
    res = _check_config(relay_binary, {"REDIS_URL": "redis://relay:s3cret-pw@10.0.0.5:6380/2"})
    print(res.stdout)
    assert res.returncode == 0, res.stderr
    assert "local mode" not in res.stdout, res.stdout
    assert "redis backplane redis://relay:***@10.0.0.5:6380/2" in res.stdout, res.stdout
    assert "s3cret-pw" not in res.stdout + res.stderr


def test_check_config_postgres_bridge(relay_binary):
    res = _check_config(relay_binary, {
        "DATABASE_URL": "postgresql://app:pg-pass-9@db.internal/app",
        "RELAY_PG_CHANNELS": "orders,users", "RELAY_PG_PREFIX": "db:",
    })
    print(res.stdout)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "postgres bridge postgresql://app:***@db.internal/app" in out, out
    assert "channels orders,users" in out and "prefix 'db:'" in out, out
    assert "without a backplane: every relay LISTENs" in out or "local mode" in out, out
    assert "pg-pass-9" not in out + res.stderr
    both = _check_config(relay_binary, {
        "REDIS_URL": "redis://127.0.0.1:6379", "DATABASE_URL": "host=db.internal password=pg-pass-9 dbname=app",
        "RELAY_PG_CHANNELS": "orders",
    })
    print(both.stdout)
    assert both.returncode == 0, both.stderr
    assert "redis backplane redis://127.0.0.1:6379/0" in both.stdout, both.stdout
    assert "postgres bridge host=db.internal password=*** dbname=app" in both.stdout, both.stdout
    assert "leader" in both.stdout, both.stdout
    assert "pg-pass-9" not in both.stdout + both.stderr
