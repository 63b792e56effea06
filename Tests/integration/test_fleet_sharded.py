"""Sharded pub/sub in fleet mode (README, "Sharded pub/sub"): relays on one standalone
redis-server carry apps' SSUBSCRIBE/SPUBLISH through Redis, count SPUBLISH's receivers across the
fleet, answer PUBSUB SHARDNUMSUB/SHARDCHANNELS for the fleet, and interoperate with direct Redis
shard subscribers and publishers."""
from __future__ import annotations

import pytest

from conftest import relay_info, wait_redis_state, wait_until
from fleetutil import expect_msgs, expect_quiet, sub, unix_url
from resputil import Conn, cmd

redis = pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")


def smsg(channel, payload) -> list:
    return [b"smessage", channel if isinstance(channel, bytes) else channel.encode(),
            payload if isinstance(payload, bytes) else payload.encode()]


@pytest.fixture
def fleet(redis_at_factory, backplane_relay):
    def start(n: int, env: dict | None = None):
        r = redis_at_factory()
        return r, [backplane_relay(unix_url(r.socket), env) for _ in range(n)]
    return start


def test_spublish_on_one_relay_reaches_and_counts_the_whole_fleet(fleet):
    r, (a, b) = fleet(2)
    a1 = sub(a.socket, "SSUBSCRIBE", "orders")
    a2 = sub(a.socket, "SSUBSCRIBE", "orders")
    b1 = sub(b.socket, "SSUBSCRIBE", "orders")
    classic = sub(a.socket, "SUBSCRIBE", "orders")
    direct = r.client().pubsub()
    direct.ssubscribe("orders")
    assert wait_until(lambda: direct.get_sharded_message(timeout=0.2) is not None, 3)
    # Redis sees each relay once and the direct subscriber: 3; the relays add A's second client.
    with Conn(b.socket) as p:
        assert wait_until(lambda: p.call("PUBSUB", "SHARDNUMSUB", "orders") == [b"orders", 4], 3)
        assert p.call("SPUBLISH", "orders", "o1") == 4
        # The classic namespace is apart: PUBLISH reaches the SUBSCRIBE only.
        assert p.call("PUBLISH", "orders", "c1") == 1
        assert p.call("PUBSUB", "NUMSUB", "orders") == [b"orders", 1]
        # Redis lists the relays' own fleet channel; apps do not see it.
        assert p.call("PUBSUB", "SHARDCHANNELS") == [b"orders"]
        assert p.call("PUBSUB", "SHARDCHANNELS", "ord*") == [b"orders"]
    for c in (a1, a2, b1):
        expect_msgs(c, [smsg("orders", "o1")], what="shard subscriber")
        expect_quiet(c, 0.1)
    expect_msgs(classic, [[b"message", b"orders", b"c1"]], what="classic subscriber")
    expect_quiet(classic, 0.1)
    m = direct.get_sharded_message(timeout=3)
    assert m and m["type"] == "smessage" and m["data"] == b"o1", m
    info = relay_info(a.socket)
    assert info["redis_upstream_shard_channels"] == "1", info
    # The last local holder leaving drops the upstream subscription.
    for c in (a1, a2):
        c.send(cmd("SUNSUBSCRIBE", "orders"))
        expect_msgs(c, [[b"sunsubscribe", b"orders", 0]])
    assert wait_until(lambda: relay_info(a.socket)["redis_upstream_shard_channels"] == "0", 3)
    with Conn(b.socket) as p:
        assert p.call("SPUBLISH", "orders", "o2") == 2
    for c in (a1, a2, b1, classic):
        c.close()
    direct.close()


def test_direct_redis_clients_and_relays_exchange_shard_messages(fleet):
    r, (a,) = fleet(1)
    s = sub(a.socket, "SSUBSCRIBE", "s:1", b"bin\x00\xff")
    direct = r.client()
    assert direct.execute_command("SPUBLISH", "s:1", "from redis") == 1
    assert direct.execute_command("SPUBLISH", b"bin\x00\xff", b"\x00\r\n\xff") == 1
    expect_msgs(s, [smsg("s:1", "from redis"), smsg(b"bin\x00\xff", b"\x00\r\n\xff")])
    ps = direct.pubsub()
    ps.ssubscribe("s:2")
    assert ps.get_sharded_message(timeout=3)["type"] == "ssubscribe"
    with Conn(a.socket) as p:
        assert p.call("SPUBLISH", "s:2", "from relay") == 1
    m = ps.get_sharded_message(timeout=3)
    assert m and m["channel"] == b"s:2" and m["data"] == b"from relay", m
    ps.close()
    s.close()


def _exchange(path: str, setup: list[tuple], pipelined: list[tuple], frames: int) -> bytes:
    with Conn(path, timeout=5) as c:
        c.send(cmd("HELLO", "3"))
        c.read_frame(5)
        for command in setup:
            c.send(cmd(*command))
            c.read_frame(5)
        c.send(b"".join(cmd(*command) for command in pipelined))
        got, status = c.read_frames(frames, 5)
        assert status == "ok", (path, got, status)
        assert c.read_quiet(0.05) == b""
        return b"".join(got)


@pytest.fixture
def targets(redis_at_factory, backplane_relay):
    reference = redis_at_factory()
    upstream = redis_at_factory()
    return reference.socket, backplane_relay(unix_url(upstream.socket)).socket


def test_pipelined_ssubscribe_then_spublish_as_on_redis(targets):
    """SSUBSCRIBE and SPUBLISH pipelined on one RESP3 connection: the subscription is in force when
    the SPUBLISH runs, and the connection gets its own smessage before the :1, as from Redis."""
    reference, relay = targets
    for i in range(20):
        ch = b"sh:%d" % i
        script = [("SSUBSCRIBE", ch), ("SPUBLISH", ch, "first"), ("SPUBLISH", b"other", "x")]
        want = _exchange(reference, [], script, 4)
        assert want.endswith(b"$5\r\nfirst\r\n:1\r\n:0\r\n"), want
        assert _exchange(relay, [], script, 4) == want, "run %d" % i


def test_pipelined_sunsubscribe_then_spublish_counts_no_one_as_on_redis(targets):
    reference, relay = targets
    for i in range(20):
        ch = b"gone:%d" % i
        script = [("SUNSUBSCRIBE", ch), ("SPUBLISH", ch, "x")]
        want = _exchange(reference, [("SSUBSCRIBE", ch)], script, 2)
        assert want.endswith(b":0\r\n:0\r\n"), want
        assert _exchange(relay, [("SSUBSCRIBE", ch)], script, 2) == want, "run %d" % i


def test_redis_restart_resubscribes_shard_channels(fleet):
    r, (a, b) = fleet(2, {"RELAY_REDIS_BACKOFF_MAX": "500ms"})
    s = sub(a.socket, "SSUBSCRIBE", "keep", "keep2")
    r.kill9()
    assert wait_until(lambda: relay_info(a.socket).get("redis_degraded") == "1", 3)
    # Degraded: SPUBLISH is delivered locally.
    with Conn(a.socket) as p:
        assert p.call("SPUBLISH", "keep", "local") == 1
    expect_msgs(s, [smsg("keep", "local")])
    r.start()
    wait_redis_state(a, "up", 5)
    wait_redis_state(b, "up", 5)
    direct = r.client()
    assert sorted(direct.execute_command("PUBSUB", "SHARDCHANNELS")) == [b"keep", b"keep2", b"pubsub-relay:fleet"]
    assert direct.execute_command("SPUBLISH", "keep2", "after") == 1
    with Conn(b.socket) as p:
        assert p.call("SPUBLISH", "keep", "via b") == 1
        assert wait_until(lambda: p.call("PUBSUB", "SHARDNUMSUB", "keep") == [b"keep", 1], 3)
    expect_msgs(s, [smsg("keep2", "after"), smsg("keep", "via b")])
    s.close()
