"""PUBLISH in fleet mode as apps see it on one Redis (README, "PUBLISH in fleet mode"): a
SUBSCRIBE sent before a PUBLISH on the same relay is in force when the PUBLISH runs, and the
integer PUBLISH answers counts the fleet's receiving subscriptions, not its relays.

Each byte-level case runs the same bytes against redis-server itself and against a fleet relay
and compares the replies byte for byte."""
from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import relay_info, wait_until
from fleetutil import expect_msgs, msg, pmsg, publish, sub, unix_url
from resputil import Conn, cmd, parse1

RUNS = 20


@pytest.fixture
def targets(redis_at_factory, backplane_relay):
    """[("redis", socket), ("relay", socket)]: a redis-server, and a relay joined to another one."""
    reference = redis_at_factory()
    upstream = redis_at_factory()
    relay = backplane_relay(unix_url(upstream.socket))
    return [("redis", reference.socket), ("relay", relay.socket)]


def resp3(path: str) -> Conn:
    c = Conn(path, timeout=5)
    c.send(cmd("HELLO", "3"))
    c.read_frame(5)   # the servers' HELLO maps differ (name, version): not compared
    return c


def exchange(path: str, setup: list[tuple], pipelined: list[tuple], frames: int) -> bytes:
    """On a RESP3 connection: `setup` commands one by one, then `pipelined` sent in one write;
    returns the bytes of the `frames` frames that follow."""
    with resp3(path) as c:
        for command in setup:
            c.send(cmd(*command))
            c.read_frame(5)
        c.send(b"".join(cmd(*command) for command in pipelined))
        got, status = c.read_frames(frames, 5)
        assert status == "ok", "%s: %d/%d frames (%s): %r" % (path, len(got), frames, status, got)
        assert c.read_quiet(0.05) == b""
        return b"".join(got)


def test_pipelined_subscribe_then_publish_is_delivered_and_counted_as_on_redis(targets):
    """One RESP3 connection pipelines SUBSCRIBE news and PUBLISH news first: Redis delivers the
    message to the connection itself and answers :1."""
    want = b">3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$5\r\nfirst\r\n:1\r\n"
    for i in range(RUNS):
        ch = b"news:%d" % i
        replies = {name: exchange(path, [], [("SUBSCRIBE", ch), ("PUBLISH", ch, "first")], 3) for name, path in targets}
        assert replies["redis"] == want % (len(ch), ch, len(ch), ch), replies["redis"]
        assert replies["relay"] == replies["redis"], "run %d" % i


def test_pipelined_unsubscribe_then_publish_counts_no_one_as_on_redis(targets):
    for i in range(RUNS):
        ch = b"gone:%d" % i
        replies = {name: exchange(path, [("SUBSCRIBE", ch)], [("UNSUBSCRIBE", ch), ("PUBLISH", ch, "x")], 2)
                   for name, path in targets}
        assert replies["redis"].endswith(b":0\r\n:0\r\n"), replies["redis"]
        assert replies["relay"] == replies["redis"], "run %d" % i


def test_pipelined_psubscribe_then_publish_as_on_redis(targets):
    for i in range(RUNS):
        ch = b"n%d.x" % i
        pattern = b"n%d.*" % i
        replies = {name: exchange(path, [], [("PSUBSCRIBE", pattern), ("PUBLISH", ch, "p"), ("PUBLISH", b"other", "q")], 4)
                   for name, path in targets}
        assert replies["relay"] == replies["redis"], "run %d" % i


def test_subscribe_on_one_client_then_publish_on_another_loses_nothing(backplane_relay, redis_at_factory):
    """The app pattern of Django Channels' group_add then group_send, and of redis-py's
    subscribe(), which returns before the confirmation: client A sends SUBSCRIBE, client B
    publishes right after, neither waits. On one Redis the SUBSCRIBE is in force; so on one relay."""
    r = redis_at_factory()
    relay = backplane_relay(unix_url(r.socket))
    lost = []
    with Conn(relay.socket, timeout=5) as a, Conn(relay.socket, timeout=5) as b:
        for i in range(200):
            ch = b"race:%d" % i
            a.send(cmd("SUBSCRIBE", ch))
            b.send(cmd("PUBLISH", ch, "hello"))
            n = parse1(b.read_frame(5))
            frames, status = a.read_frames(2, 2)
            got = [parse1(f) for f in frames]
            if got[1:] != [msg(ch, "hello")] or n != 1:
                lost.append((i, n, got))
            a.send(cmd("UNSUBSCRIBE", ch))
            a.read_frame(5)
    assert lost == [], "%d of 200 lost or miscounted: %r" % (len(lost), lost[:5])
    assert int(relay_info(relay.socket)["redis_held_publishes"]) > 0


def test_publish_counts_the_receivers_of_the_whole_fleet(redis_at_factory, backplane_relay):
    """Channel and pattern subscribers on three relays plus a direct Redis subscriber: every
    relay's PUBLISH answers what one Redis would, the number of receiving subscriptions."""
    r = redis_at_factory()
    a, b, c = (backplane_relay(unix_url(r.socket)) for _ in range(3))
    keep = [sub(a.socket, "SUBSCRIBE", "room") for _ in range(2)]
    keep += [sub(b.socket, "SUBSCRIBE", "room") for _ in range(3)]
    keep += [sub(b.socket, "PSUBSCRIBE", "ro*") for _ in range(2)]
    both = sub(c.socket, "SUBSCRIBE", "room")
    sub(c.socket, "PSUBSCRIBE", "r*", conn=both)
    keep.append(both)
    direct = r.client().pubsub()
    direct.subscribe("room")
    assert wait_until(lambda: direct.get_message(timeout=0.1), 3)["type"] == "subscribe"
    try:
        # a 2 + b 3 + b's pattern 2 + c's channel and pattern 2 + the direct one = 10.
        for relay in (a, b, c):
            assert publish(relay.socket, "room", "x") == 10
        assert publish(a.socket, "rock", "y") == 3      # b's ro* twice, c's r* once
        assert publish(a.socket, "nothing", "z") == 0
        # A subscriber confirmed on one relay is counted by the next PUBLISH on another.
        misses = 0
        extra = []
        for i in range(100):
            extra.append(sub(b.socket, "SUBSCRIBE", "room"))
            if publish(a.socket, "room", "n") != 11 + i:
                misses += 1
        assert misses == 0, "%d of 100 PUBLISHes right after a confirmation on another relay missed it" % misses
        for s in extra:
            s.close()
        assert wait_until(lambda: publish(a.socket, "room", "n") == 10, 5)
    finally:
        direct.close()
        for s in keep:
            s.close()


def test_a_relay_that_leaves_stops_counting(redis_at_factory, backplane_relay):
    """A relay that stops says so (its apps stop counting at once); one that dies is forgotten
    after the fleet TTL (5 s)."""
    r = redis_at_factory()
    a, b, c = (backplane_relay(unix_url(r.socket)) for _ in range(3))
    keep = [sub(rel.socket, "SUBSCRIBE", "room") for rel in (b, b, b, c, c)]
    assert publish(a.socket, "room", "x") == 5
    b.stop()
    assert publish(a.socket, "room", "x") == 2
    os.kill(c.proc.pid, signal.SIGKILL)
    c.proc.wait(5)
    # Redis drops c's connection at once (its 1), the extra one goes with the TTL.
    started = time.monotonic()
    assert wait_until(lambda: publish(a.socket, "room", "x") == 0, 10)
    assert time.monotonic() - started < 8
    for s in keep:
        s.close()


def test_across_relays_a_subscribe_is_in_force_once_it_reached_redis(redis_at_factory, backplane_relay):
    """A SUBSCRIBE on relay B and a PUBLISH on relay A that neither waits for race, as two
    connections of one Redis do; the window is relay B's tick plus its trip to Redis. Prints the
    delivered share for each gap between the two sends (README, "PUBLISH in fleet mode"); a gap of
    5 ms must always deliver."""
    r = redis_at_factory()
    a, b = backplane_relay(unix_url(r.socket)), backplane_relay(unix_url(r.socket))
    n = 200
    shares = {}
    with Conn(b.socket, timeout=5) as s, Conn(a.socket, timeout=5) as p:
        for gap_us in (0, 100, 200, 500, 5000):
            delivered = 0
            for i in range(n):
                ch = b"window:%d:%d" % (gap_us, i)
                s.send(cmd("SUBSCRIBE", ch))
                if gap_us:
                    time.sleep(gap_us / 1e6)
                p.send(cmd("PUBLISH", ch, "x"))
                count = parse1(p.read_frame(5))
                frames, _ = s.read_frames(2 if count == 1 else 1, 2)
                delivered += count == 1 and len(frames) == 2
            shares[gap_us] = delivered
    print("\ndelivered of %d, by gap between SUBSCRIBE on B and PUBLISH on A (sleep, us): %s" % (n, shares))
    assert shares[5000] == n, shares


def test_a_relay_frozen_past_the_ttl_is_counted_again_once_it_resumes(redis_at_factory, backplane_relay):
    """SIGSTOP of relay B for longer than the fleet TTL: relay A forgets B's extra receivers
    (Redis still counts B's connection once); after SIGCONT, B's `alive` makes A ask for the
    states again, and the count is whole again."""
    r = redis_at_factory()
    a, b = backplane_relay(unix_url(r.socket)), backplane_relay(unix_url(r.socket))
    keep = [sub(b.socket, "SUBSCRIBE", "room") for _ in range(3)]
    assert publish(a.socket, "room", "x") == 3
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: publish(a.socket, "room", "x") == 1, 10), "relay A never forgot the frozen relay"
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    assert wait_until(lambda: publish(a.socket, "room", "x") == 3, 5), "relay B's receivers not counted again"
    for s in keep:
        s.close()
