"""Real clients against the relay: redis-cli -s, and redis-py over unix_socket_path in
RESP2 and RESP3. Every test also runs against redis-server itself (`[redis]` ids) as the
reference, so a failure only on `[relay]` is a relay bug, not a test bug."""
from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import time

import pytest

import resputil
from resputil import Conn

redis = pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")


def wait_numsub(sock: str, channel: str, n: int, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    with Conn(sock) as conn:
        while time.monotonic() < deadline:
            got = conn.call("PUBSUB", "NUMSUB", channel)
            if got[1] == n:
                return
            time.sleep(0.02)
    raise AssertionError("PUBSUB NUMSUB %s never reached %d" % (channel, n))


def wait_numpat(sock: str, n: int, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    with Conn(sock) as conn:
        while time.monotonic() < deadline:
            if conn.call("PUBSUB", "NUMPAT") == n:
                return
            time.sleep(0.02)
    raise AssertionError("PUBSUB NUMPAT never reached %d" % n)


def cli(redis_cli, sock, *args, proto3=False):
    argv = [redis_cli] + (["-3"] if proto3 else []) + ["-s", sock] + list(args)
    res = subprocess.run(argv, capture_output=True, timeout=10)
    return res.returncode, res.stdout, res.stderr


# ---- redis-cli ------------------------------------------------------------------------------

def test_redis_cli_commands(any_server, redis_cli):
    sock = any_server.socket
    assert cli(redis_cli, sock, "PING") == (0, b"PONG\n", b"")
    assert cli(redis_cli, sock, "PING", "hi") == (0, b"hi\n", b"")
    assert cli(redis_cli, sock, "ECHO", "a b") == (0, b"a b\n", b"")
    assert cli(redis_cli, sock, "PUBLISH", "cli-nobody", "x") == (0, b"0\n", b"")
    assert cli(redis_cli, sock, "PUBSUB", "NUMSUB", "cli-nobody") == (0, b"cli-nobody\n0\n", b"")
    rc, out, _ = cli(redis_cli, sock, "NOSUCHCMD", "x")
    assert out.strip() == b"ERR unknown command 'NOSUCHCMD', with args beginning with: 'x'", out
    # RESP3 through redis-cli -3
    assert cli(redis_cli, sock, "PING", proto3=True) == (0, b"PONG\n", b"")
    rc, out, _ = cli(redis_cli, sock, "HELLO", "3", proto3=True)
    assert rc == 0 and b"proto\n3\n" in out.replace(b" ", b"\n"), out


def _read_lines(proc, n: int, timeout: float) -> list[bytes]:
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while buf.count(b"\n") < n and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n")[:n]


def _stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_redis_cli_subscribe_receives(any_server, redis_cli):
    sock = any_server.socket
    proc = subprocess.Popen([redis_cli, "-s", sock, "subscribe", "cli-ch"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert _read_lines(proc, 3, 5) == [b"subscribe", b"cli-ch", b"1"]
        wait_numsub(sock, "cli-ch", 1)
        assert cli(redis_cli, sock, "PUBLISH", "cli-ch", "hello world") == (0, b"1\n", b"")
        assert _read_lines(proc, 3, 5) == [b"message", b"cli-ch", b"hello world"]
    finally:
        _stop(proc)


def test_redis_cli_psubscribe_receives(any_server, redis_cli):
    sock = any_server.socket
    proc = subprocess.Popen([redis_cli, "-3", "-s", sock, "psubscribe", "cli-p*"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert _read_lines(proc, 3, 5) == [b"psubscribe", b"cli-p*", b"1"]
        wait_numpat(sock, 1)
        assert cli(redis_cli, sock, "PUBLISH", "cli-pat", "payload") == (0, b"1\n", b"")
        assert _read_lines(proc, 4, 5) == [b"pmessage", b"cli-p*", b"cli-pat", b"payload"]
    finally:
        _stop(proc)


# ---- redis-py -------------------------------------------------------------------------------

def _get(p, timeout=3.0):
    """Next non-None message, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = p.get_message(timeout=max(0.01, deadline - time.monotonic()))
        if m is not None:
            return m
    raise AssertionError("no pub/sub message within %.1fs" % timeout)


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_basic(any_server, protocol):
    r = redis.Redis(unix_socket_path=any_server.socket, protocol=protocol, socket_timeout=5)
    try:
        assert r.ping() is True
        assert r.echo(b"\x00bin\r\n") == b"\x00bin\r\n"
        cid = r.client_id()
        assert isinstance(cid, int) and cid > 0
        assert r.client_setname("py-client") is True
        assert r.client_getname() in ("py-client", b"py-client")
        assert r.publish("py-nobody", "x") == 0
        assert r.pubsub_numpat() == 0
        with pytest.raises(redis.ResponseError, match="unknown command 'NOSUCH'"):
            r.execute_command("NOSUCH", "a")
    finally:
        r.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub(any_server, protocol):
    sock = any_server.socket
    r = redis.Redis(unix_socket_path=sock, protocol=protocol, socket_timeout=5)
    p = r.pubsub()
    try:
        p.subscribe("py-news")
        assert _get(p) == {"type": "subscribe", "pattern": None, "channel": b"py-news", "data": 1}
        p.psubscribe("py-n*")
        assert _get(p) == {"type": "psubscribe", "pattern": None, "channel": b"py-n*", "data": 2}

        assert r.pubsub_numsub("py-news", "py-other") == [(b"py-news", 1), (b"py-other", 0)]
        assert r.pubsub_numpat() == 1
        assert r.pubsub_channels("py-*") == [b"py-news"]

        payload = bytes(range(256)) * 4
        assert r.publish("py-news", payload) == 2
        assert _get(p) == {"type": "message", "pattern": None, "channel": b"py-news", "data": payload}
        assert _get(p) == {"type": "pmessage", "pattern": b"py-n*", "channel": b"py-news", "data": payload}
        assert r.publish("py-zz", "x") == 0
        assert r.publish("py-nx", "only-pattern") == 1
        assert _get(p) == {"type": "pmessage", "pattern": b"py-n*", "channel": b"py-nx", "data": b"only-pattern"}

        p.unsubscribe("py-news")
        assert _get(p) == {"type": "unsubscribe", "pattern": None, "channel": b"py-news", "data": 1}
        p.punsubscribe()
        assert _get(p) == {"type": "punsubscribe", "pattern": None, "channel": b"py-n*", "data": 0}
        assert r.publish("py-news", "after") == 0
        assert p.get_message(timeout=0.2) is None
    finally:
        p.close()
        r.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub_health_check(any_server, protocol):
    """redis-py's health check PINGs on a subscribed connection (RESP2: the `*2 pong <arg>` form)."""
    r = redis.Redis(unix_socket_path=any_server.socket, protocol=protocol, socket_timeout=5,
                    health_check_interval=1)
    p = r.pubsub(ignore_subscribe_messages=True)
    try:
        p.subscribe("py-hc")
        assert p.get_message(timeout=1) is None  # swallows the confirmation
        time.sleep(1.2)
        assert r.publish("py-hc", "after-health-check") == 1
        m = _get(p)
        assert m["data"] == b"after-health-check", m
    finally:
        p.close()
        r.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub_thread_handlers(any_server, protocol):
    """Callbacks via run_in_thread, 200 messages in order."""
    r = redis.Redis(unix_socket_path=any_server.socket, protocol=protocol, socket_timeout=5)
    got = []
    p = r.pubsub()
    p.subscribe(**{"py-th": lambda m: got.append(m["data"])})
    thread = p.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        wait_numsub(any_server.socket, "py-th", 1)
        pipe = r.pipeline(transaction=False)
        for i in range(200):
            pipe.publish("py-th", b"m%d" % i)
        assert pipe.execute() == [1] * 200
        deadline = time.monotonic() + 5
        while len(got) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [b"m%d" % i for i in range(200)]
    finally:
        thread.stop()
        thread.join(5)
        p.close()
        r.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_asyncio_pubsub(any_server, protocol):
    import redis.asyncio as aredis

    async def main():
        r = aredis.Redis(unix_socket_path=any_server.socket, protocol=protocol, socket_timeout=5)
        p = r.pubsub()
        try:
            await p.subscribe("py-async")
            m = await p.get_message(timeout=2)
            assert m["type"] == "subscribe" and m["data"] == 1, m
            assert await r.publish("py-async", "hi") == 1
            m = None
            for _ in range(50):
                m = await p.get_message(timeout=0.1)
                if m is not None:
                    break
            assert m == {"type": "message", "pattern": None, "channel": b"py-async", "data": b"hi"}, m
        finally:
            await p.aclose()
            await r.aclose()

    asyncio.run(asyncio.wait_for(main(), 15))


def test_raw_fanout_200_subscribers(any_server):
    """200 subscribers (100 on the channel, 100 on a pattern) each get 100 messages, in order."""
    sock = any_server.socket
    subs = []
    try:
        for i in range(200):
            conn = Conn(sock)
            if i % 2:
                conn.send(resputil.cmd("PSUBSCRIBE", "fan*"))
            else:
                conn.send(resputil.cmd("SUBSCRIBE", "fanout"))
            subs.append(conn)
        for conn in subs:
            conn.read_frame()
        with Conn(sock) as pub:
            pub.send(b"".join(resputil.cmd("PUBLISH", "fanout", b"msg-%03d" % i) for i in range(100)))
            frames, status = pub.read_frames(100, 10)
            assert status == "ok" and set(frames) == {b":200\r\n"}, (status, set(frames))
        for i, conn in enumerate(subs):
            frames, status = conn.read_frames(100, 10)
            assert status == "ok", "subscriber %d: %s after %d" % (i, status, len(frames))
            got = [resputil.parse1(f)[-1] for f in frames]
            assert got == [b"msg-%03d" % k for k in range(100)], i
    finally:
        for conn in subs:
            conn.close()
