"""The Redis backplane (README, "The Redis backplane"), while Redis is up: fleet-wide delivery and order, subscribe-then-
publish safety, one pair of upstream connections per relay, upstream reference counting, PUBLISH
replies, fleet-wide PUBSUB, real client frameworks across relays, and REDIS_URL configuration errors.

Everything runs real processes: one redis-server (`RedisAt`, conftest) and several relays
($RELAY_BINARY), each started by a fixture, waited on through `INFO upstreams` (`redis_state:up`)
and stopped by its PID. Subscribers are raw sockets (resputil.Conn) where byte-exact frames and
order matter, redis-py where a real client is the point. Every loop and every wait is bounded.

Faults (Redis killed, stopped, connections killed, bad passwords, Redis absent at start) are in
test_backplane_faults.py.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import relay_env, relay_info, wait_until
from fleetutil import expect_msgs, expect_quiet, msg, parse_arrays, pmsg, publish, read_msgs, sub, unix_url
from resputil import Conn, cmd

redis = pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")

EX_CONFIG = 78


# ---- helpers ------------------------------------------------------------------------------------

def numsub(path: str, *channels) -> list[int]:
    with Conn(path) as c:
        v = c.call("PUBSUB", "NUMSUB", *channels)
    assert isinstance(v, list), v
    return [v[i + 1] for i in range(0, len(v), 2)]


@pytest.fixture
def fleet(redis_at_factory, backplane_relay):
    """start(n, env=None) -> (redis, [relays]): one redis-server and n relays joined to it, all up."""

    def start(n: int, env: dict | None = None):
        r = redis_at_factory()
        relays = [backplane_relay(unix_url(r.socket), env) for _ in range(n)]
        return r, relays

    return start


# ---- 1. fan-out across 3 relays, then 100 000 sequenced messages ----------------------------------

def test_three_relays_every_subscriber_gets_each_message_once(fleet):
    r, relays = fleet(3)
    direct = r.client()
    subs = []   # (relay index, role, conn)
    for i, rel in enumerate(relays):
        subs.append((i, "chan", sub(rel.socket, "SUBSCRIBE", "news", "sport")))
        subs.append((i, "pat", sub(rel.socket, "PSUBSCRIBE", "n*")))
        both = sub(rel.socket, "SUBSCRIBE", "news")
        sub(rel.socket, "PSUBSCRIBE", "n*", conn=both)
        subs.append((i, "both", both))
    # Redis counts one receiver per upstream subscription: each relay holds `news` once and `n*` once.
    assert direct.execute_command("PUBSUB", "NUMSUB", "news", "sport") == [b"news", 3, b"sport", 3]
    assert direct.execute_command("PUBSUB", "NUMPAT") == 1      # Redis 7 counts unique patterns
    assert sorted((c["name"][-4:], c["sub"], c["psub"]) for c in direct.client_list() if c["name"]) == \
        [(":pub", "0", "0")] * 3 + [(":sub", "2", "1")] * 3

    published = []   # (channel, payload), in Redis order (each PUBLISH waits for its reply)
    replies = []
    for i, rel in enumerate(relays):
        for ch in ("news", "sport", "other"):
            payload = "%s from relay %d" % (ch, i)
            replies.append((i, ch, publish(rel.socket, ch, payload)))
            published.append((ch, payload))
    payload = "news from redis itself"
    replies.append(("redis", "news", direct.publish("news", payload)))
    published.append(("news", payload))
    # Through a relay, PUBLISH counts the fleet's receiving subscriptions, as one Redis would:
    # per relay news has 2 channel + 2 pattern receivers, sport 1. Redis itself, asked directly,
    # counts each relay's one subscription per name.
    want = {"news": 12, "sport": 3, "other": 0}
    assert [(who, ch, n) for who, ch, n in replies if n != (6 if who == "redis" else want[ch])] == [], \
        "PUBLISH replies differ from the fleet's receivers (news 12, sport 3, other 0; Redis direct: news 6): %r" % replies

    for i, role, c in subs:
        expected = []
        for ch, payload in published:
            if role == "chan" and ch in ("news", "sport"):
                expected.append(msg(ch, payload))
            if role == "pat" and ch.startswith("n"):
                expected.append(pmsg("n*", ch, payload))
            if role == "both" and ch == "news":
                expected += [msg(ch, payload), pmsg("n*", ch, payload)]
        expect_msgs(c, expected, 5, "relay %d %s subscriber" % (i, role))
    for i, role, c in subs:
        expect_quiet(c, 0.2, "relay %d %s subscriber" % (i, role))
        c.close()


SEQ_CHANNEL = b"seq"
SEQ_PATTERN = b"se?"
SEQ_PER_PUBLISHER = 34_000      # x 3 publishers = 102 000 messages
SEQ_BATCH = 500
SEQ_DEADLINE = 50.0


def _seq_reader(path: str, kind: bytes, name: bytes, total: int, ready, result):
    """Child process: subscribes, reports ready, then reads `total` messages (bounded in time)."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.settimeout(5)
        s.sendall(cmd(kind, name))
        buf = b""
        conf = []
        while not conf:
            data = s.recv(65536)
            if not data:
                raise RuntimeError("EOF before confirmation")
            buf += data
            conf, pos = parse_arrays(buf, 0)
        buf = buf[pos:]
        extra_frames = conf[1:]
        ready.send(conf[0])
        payloads = []
        other = []
        for f in extra_frames:
            (payloads if f[0] in (b"message", b"pmessage") else other).append(f[-1] if f[0] in (b"message", b"pmessage") else f)
        deadline = time.monotonic() + SEQ_DEADLINE
        status = "ok"
        s.settimeout(1.0)
        quiet_until = None
        while True:
            now = time.monotonic()
            if len(payloads) >= total and quiet_until is None:
                quiet_until = now + 0.5          # keep reading a little: anything more is a duplicate
            if quiet_until is not None and now >= quiet_until:
                break
            if now >= deadline:
                status = "timeout"
                break
            try:
                data = s.recv(1 << 20)
            except (TimeoutError, socket.timeout):
                continue
            if not data:
                status = "eof"
                break
            buf += data
            frames, pos = parse_arrays(buf, 0)
            buf = buf[pos:]
            for f in frames:
                if f[0] == b"message" and len(f) == 3:
                    payloads.append(f[2])
                elif f[0] == b"pmessage" and len(f) == 4:
                    payloads.append(f[3])
                else:
                    other.append(f)
        s.close()
        result.send({"status": status, "payloads": b"\n".join(payloads), "count": len(payloads),
                     "other": other[:5], "rest": buf[:200]})
    except Exception as e:  # reported to the parent, never swallowed
        try:
            ready.send(("error", repr(e)))
        except Exception:
            pass
        result.send({"status": "error: %r" % e, "payloads": b"", "count": 0, "other": [], "rest": b""})


def _seq_publisher(path: str, pub_id: int, n: int, go, result):
    """Child process: waits for `go`, then publishes `<pub_id>:<seq>` for seq in 0..n-1, pipelined."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.settimeout(10)
        go.recv()
        replies = {}
        t0 = time.monotonic()
        for start in range(0, n, SEQ_BATCH):
            batch = range(start, min(n, start + SEQ_BATCH))
            s.sendall(b"".join(cmd(b"PUBLISH", SEQ_CHANNEL, b"%d:%d" % (pub_id, q)) for q in batch))
            want = len(batch)
            buf = b""
            while buf.count(b"\r\n") < want:
                data = s.recv(1 << 16)
                if not data:
                    raise RuntimeError("EOF after %d replies" % buf.count(b"\r\n"))
                buf += data
            for line in buf.split(b"\r\n")[:want]:
                replies[line] = replies.get(line, 0) + 1
        s.close()
        result.send({"replies": replies, "seconds": time.monotonic() - t0})
    except Exception as e:
        result.send({"error": repr(e)})


def test_100k_sequenced_messages_same_order_everywhere(fleet):
    """Three publishers (one per relay, pipelined) x 34 000 sequenced messages on one channel; one
    SUBSCRIBE and one PSUBSCRIBE reader per relay. Every reader must see the identical sequence,
    each publisher's messages in order, no duplicate, no loss."""
    _, relays = fleet(3)
    ctx = multiprocessing.get_context("fork")
    total = 3 * SEQ_PER_PUBLISHER
    readers = []
    procs = []
    try:
        for i, rel in enumerate(relays):
            for kind, name in ((b"SUBSCRIBE", SEQ_CHANNEL), (b"PSUBSCRIBE", SEQ_PATTERN)):
                ready_r, ready_w = ctx.Pipe(False)
                res_r, res_w = ctx.Pipe(False)
                p = ctx.Process(target=_seq_reader, args=(rel.socket, kind, name, total, ready_w, res_w), daemon=True)
                p.start()
                procs.append(p)
                readers.append(("relay %d %s" % (i, kind.decode()), p, ready_r, res_r))
        for label, p, ready_r, _ in readers:
            assert ready_r.poll(10), "%s: no subscription confirmation within 10 s" % label
            conf = ready_r.recv()
            assert isinstance(conf, list) and conf[0] in (b"subscribe", b"psubscribe"), (label, conf)
        pubs = []
        for i, rel in enumerate(relays):
            go_r, go_w = ctx.Pipe(False)
            res_r, res_w = ctx.Pipe(False)
            p = ctx.Process(target=_seq_publisher, args=(rel.socket, i, SEQ_PER_PUBLISHER, go_r, res_w), daemon=True)
            p.start()
            procs.append(p)
            pubs.append((i, go_w, res_r))
        t0 = time.monotonic()
        for _, go_w, _ in pubs:
            go_w.send(b"go")
        pub_results = {}
        for i, _, res_r in pubs:
            assert res_r.poll(SEQ_DEADLINE), "publisher %d did not finish within %.0fs" % (i, SEQ_DEADLINE)
            pub_results[i] = res_r.recv()
        results = {}
        for label, p, _, res_r in readers:
            left = max(1.0, SEQ_DEADLINE + 5 - (time.monotonic() - t0))
            assert res_r.poll(left), "%s: no result" % label
            results[label] = res_r.recv()
        elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join(5)

    print("\n%d messages in %.1fs; publishers: %r" % (total, elapsed, pub_results))
    for i, pr in pub_results.items():
        assert "error" not in pr, "publisher %d: %s" % (i, pr["error"])
        # each relay holds `seq` once and `se?` once upstream: Redis answers 6 to every PUBLISH
        assert pr["replies"] == {b":6": SEQ_PER_PUBLISHER}, "publisher %d replies %r" % (i, pr["replies"])
    problems = []
    sequences = {}
    for label, res in results.items():
        payloads = res["payloads"].split(b"\n") if res["payloads"] else []
        sequences[label] = payloads
        last = {}
        seen = set()
        reorders = dups = 0
        for pl in payloads:
            if pl in seen:
                dups += 1
                continue
            seen.add(pl)
            pid, seq = pl.split(b":")
            if seq_int(seq) < last.get(pid, -1):
                reorders += 1
            last[pid] = max(last.get(pid, -1), seq_int(seq))
        losses = total - len(seen)
        line = "%s: status %s, %d received, %d lost, %d duplicates, %d reorders, other frames %r" % (
            label, res["status"], len(payloads), losses, dups, reorders, res["other"])
        print(line)
        if res["status"] != "ok" or losses or dups or reorders or res["other"]:
            problems.append(line)
    ref_label, ref = next(iter(sequences.items()))
    for label, seq in sequences.items():
        if seq != ref:
            first = next((k for k in range(min(len(seq), len(ref))) if seq[k] != ref[k]), min(len(seq), len(ref)))
            problems.append("%s differs from %s at index %d: %r vs %r" % (
                label, ref_label, first, seq[first:first + 3], ref[first:first + 3]))
    assert problems == [], "\n".join(problems)


def seq_int(b: bytes) -> int:
    return int(b)


# ---- 2. subscribe-then-publish ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["SUBSCRIBE", "PSUBSCRIBE"])
def test_subscribe_then_publish_on_another_relay(fleet, kind):
    """Once a client has read its (P)SUBSCRIBE confirmation on relay A, a PUBLISH made right away on
    relay B reaches it: 1 000 fresh channels (300 fresh patterns)."""
    _, (a, b) = fleet(2)
    iterations = 1000 if kind == "SUBSCRIBE" else 300
    failures = []
    t0 = time.monotonic()
    with Conn(a.socket, timeout=5) as s, Conn(b.socket, timeout=5) as p:
        for i in range(iterations):
            ch = "race:%d:%d" % (os.getpid(), i)
            name = ch if kind == "SUBSCRIBE" else ch + "*"
            s.send(cmd(kind, name))
            conf, status = read_msgs(s, 1, 5)
            if status != "ok" or conf[0][:2] != [kind.lower().encode(), name.encode()]:
                failures.append((i, "confirmation", conf, status))
                break
            n = p.call("PUBLISH", ch + ("" if kind == "SUBSCRIBE" else "x"), "m%d" % i)
            if n != 1:
                failures.append((i, "PUBLISH reply", n))
            got, status = read_msgs(s, 1, 2)
            want = msg(ch, "m%d" % i) if kind == "SUBSCRIBE" else pmsg(name, ch + "x", "m%d" % i)
            if got != [want]:
                failures.append((i, "message", got, status))
                if len(failures) > 20:
                    break
            s.send(cmd("UNSUBSCRIBE" if kind == "SUBSCRIBE" else "PUNSUBSCRIBE", name))
            _, status = read_msgs(s, 1, 5)
            if status != "ok":
                failures.append((i, "unsubscribe confirmation", status))
                break
            if time.monotonic() - t0 > 120:
                failures.append((i, "out of time"))
                break
    print("\n%d iterations in %.1fs" % (iterations, time.monotonic() - t0))
    assert failures == [], "%d failures, first: %r" % (len(failures), failures[:10])


def test_subscribe_then_fleet_numsub_includes_it(fleet):
    """The confirmation waits until the relay's count is written: NUMSUB asked on another relay right
    after it includes the new subscriber (100 fresh channels)."""
    _, (a, b) = fleet(2)
    bad = []
    with Conn(a.socket) as s, Conn(b.socket) as q:
        for i in range(100):
            ch = "fresh-numsub:%d" % i
            sub(a.socket, "SUBSCRIBE", ch, conn=s)
            v = q.call("PUBSUB", "NUMSUB", ch)
            if v != [ch.encode(), 1]:
                bad.append((i, v))
    assert bad == [], "NUMSUB on relay B right after the confirmation on relay A: %r" % bad[:10]


# ---- 3. two upstream connections per relay ------------------------------------------------------

def test_200_local_clients_two_upstream_connections(fleet):
    r, (rel,) = fleet(1)
    rid = relay_info(rel.socket)["redis_relay_id"]
    assert rid, "INFO upstreams has no redis_relay_id"
    conns = []
    try:
        for i in range(200):
            c = sub(rel.socket, "SUBSCRIBE", "c%d" % (i % 50), "all")
            if i % 4 == 0:
                sub(rel.socket, "PSUBSCRIBE", "p%d*" % ((i // 4) % 10), conn=c)
            conns.append(c)
        direct = r.client()
        clients = [c for c in direct.client_list() if c["id"] != str(direct.client_id())]
        names = sorted(c["name"] for c in clients)
        assert names == sorted(["pubsub-relay:%s:sub" % rid, "pubsub-relay:%s:pub" % rid]), \
            "Redis CLIENT LIST: %r" % [(c["name"], c["cmd"], c["sub"], c["psub"]) for c in clients]
        subc = next(c for c in clients if c["name"].endswith(":sub"))
        assert (subc["sub"], subc["psub"]) == ("51", "10"), \
            "the subscriber link should hold 51 channels and 10 patterns once each: %r" % subc
        info = relay_info(rel.socket)
        assert (info["redis_upstream_channels"], info["redis_upstream_patterns"]) == ("51", "10"), info
        assert numsub(rel.socket, "all", "c0") == [200, 4]
    finally:
        for c in conns:
            c.close()


# ---- 4. reference counting ------------------------------------------------------------------------

LEAVE_WAYS = ["unsubscribe", "unsubscribe-all", "reset", "quit", "disconnect"]


def _leave(c: Conn, how: str, kind: str, name: str):
    un = "UNSUBSCRIBE" if kind == "SUBSCRIBE" else "PUNSUBSCRIBE"
    if how == "unsubscribe":
        c.send(cmd(un, name))
        expect_msgs(c, [[un.lower().encode(), name.encode(), 0]], 5, how)
    elif how == "unsubscribe-all":
        c.send(cmd(un))
        expect_msgs(c, [[un.lower().encode(), name.encode(), 0]], 5, how)
    elif how == "reset":
        assert c.call("RESET") == "RESET"
    elif how == "quit":
        assert c.call("QUIT") == "OK"
        c.close()
    else:
        c.close()


def _redis_count(direct, kind: str, name: str) -> int:
    if kind == "SUBSCRIBE":
        return direct.execute_command("PUBSUB", "NUMSUB", name)[1]
    return direct.execute_command("PUBSUB", "NUMPAT")


@pytest.mark.parametrize("kind", ["SUBSCRIBE", "PSUBSCRIBE"])
@pytest.mark.parametrize("how", LEAVE_WAYS)
def test_upstream_refcount(fleet, kind, how):
    """Two local clients (one subscribing twice) -> Redis sees one upstream subscription; it stays
    while one client remains and is gone within 1 s after the last one leaves."""
    r, (rel,) = fleet(1)
    direct = r.client()
    name = "x" if kind == "SUBSCRIBE" else "x*"
    c1 = Conn(rel.socket)
    c1.send(cmd(kind, name, name))       # twice on one client: still one subscription (Redis rule)
    expect_msgs(c1, [[kind.lower().encode(), name.encode(), 1]] * 2, 5, "double subscribe")
    c2 = sub(rel.socket, kind, name)
    try:
        assert _redis_count(direct, kind, name) == 1
        _leave(c1, "unsubscribe", kind, name)
        time.sleep(0.2)
        assert _redis_count(direct, kind, name) == 1, "upstream dropped while a local subscriber remains"
        # the remaining subscriber still gets messages, once
        assert direct.publish("x" if kind == "SUBSCRIBE" else "xy", "still") == 1
        expect_msgs(c2, [msg("x", "still") if kind == "SUBSCRIBE" else pmsg("x*", "xy", "still")], 5)
        expect_quiet(c1, 0.1, "unsubscribed client")
        _leave(c2, how, kind, name)
        t0 = time.monotonic()
        left = wait_until(lambda: _redis_count(direct, kind, name) == 0, 1.0)
        assert left, "Redis still counts %d upstream subscription(s) 1 s after the last local subscriber left (%s)" % (
            _redis_count(direct, kind, name), how)
        print("\nupstream gone %.3fs after %s" % (time.monotonic() - t0, how))
        info = relay_info(rel.socket)
        assert info["redis_upstream_channels"] == "0" and info["redis_upstream_patterns"] == "0", info
        # and a new subscriber re-subscribes upstream
        c3 = sub(rel.socket, kind, name)
        assert _redis_count(direct, kind, name) == 1
        c3.close()
    finally:
        c1.close()
        c2.close()


# ---- 5. PUBLISH answers Redis's integer ---------------------------------------------------------

def test_publish_reply_counts_the_fleets_receivers(fleet):
    r, (a, b, c) = fleet(3)
    sa1 = sub(a.socket, "SUBSCRIBE", "five")
    sa2 = sub(a.socket, "SUBSCRIBE", "five")        # a second local subscriber adds nothing upstream
    sb = sub(b.socket, "SUBSCRIBE", "five")
    direct_sub = r.client().pubsub()
    direct_sub.subscribe("five")
    assert wait_until(lambda: direct_sub.get_message(timeout=0.1), 3)["type"] == "subscribe"
    try:
        for who, rel in (("C (no local subscriber)", c), ("A (two local subscribers)", a)):
            n = publish(rel.socket, "five", "from " + who)
            assert n == 4, "PUBLISH on relay %s answered %r; the fleet has 4 receivers (A 2, B 1, 1 direct)" % (who, n)
        # Redis itself, asked directly, counts its connections: 2 relays + 1 direct.
        assert r.client().publish("five", "direct") == 3
        for label, s in (("A1", sa1), ("A2", sa2), ("B", sb)):
            expect_msgs(s, [msg("five", "from C (no local subscriber)"), msg("five", "from A (two local subscribers)"),
                            msg("five", "direct")], 5, label)
            expect_quiet(s, 0.2, label)
        got = [wait_until(lambda: direct_sub.get_message(timeout=0.1), 3) for _ in range(3)]
        assert [m["data"] for m in got] == [b"from C (no local subscriber)", b"from A (two local subscribers)", b"direct"]
        assert publish(a.socket, "nobody-listens", "x") == 0
    finally:
        direct_sub.close()
        for s in (sa1, sa2, sb):
            s.close()


def test_binary_channel_and_payload_byte_exact(fleet):
    _, (a, b) = fleet(2)
    ch = b"bin\x00\r\n\xff ch"
    payload = bytes(range(256)) * 8 + b"\r\n$3\r\n"
    s = sub(b.socket, "SUBSCRIBE", ch)
    p = sub(b.socket, "PSUBSCRIBE", b"bin\x00*")
    try:
        assert publish(a.socket, ch, payload) == 2
        expect_msgs(s, [msg(ch, payload)], 5, "channel")
        expect_msgs(p, [pmsg(b"bin\x00*", ch, payload)], 5, "pattern")
    finally:
        s.close()
        p.close()


def test_large_payload_across_relays(fleet):
    _, (a, b) = fleet(2)
    payload = os.urandom(1_000_000)
    s = sub(b.socket, "SUBSCRIBE", "big")
    try:
        with Conn(a.socket, timeout=10) as p:
            assert p.call("PUBLISH", "big", payload) == 1
        expect_msgs(s, [msg("big", payload)], 10, "1 MB payload")
    finally:
        s.close()


# ---- subscription churn: pipelined and concurrent ------------------------------------------------

@pytest.mark.parametrize("kind", ["SUBSCRIBE", "PSUBSCRIBE"])
def test_pipelined_subscribe_unsubscribe_churn(fleet, kind):
    """SUBSCRIBE/UNSUBSCRIBE of one name pipelined in one write: replies in order, and the upstream
    state ends as the last command left it (subscribed: messages arrive once; unsubscribed: gone)."""
    r, (a, b) = fleet(2)
    direct = r.client()
    un = "UNSUBSCRIBE" if kind == "SUBSCRIBE" else "PUNSUBSCRIBE"
    name = "churn" if kind == "SUBSCRIBE" else "churn*"
    target = "churn" if kind == "SUBSCRIBE" else "churnX"
    k, u = kind.lower().encode(), un.lower().encode()
    with Conn(a.socket) as c:
        c.send(b"".join(cmd(*x) for x in [(kind, name), (un, name)] * 5 + [(kind, name)]))
        expect_msgs(c, [[k, name.encode(), 1], [u, name.encode(), 0]] * 5 + [[k, name.encode(), 1]], 5, "replies")
        assert _redis_count(direct, kind, name) == 1, "upstream not subscribed after the churn ended subscribed"
        assert publish(b.socket, target, "once") == 1
        expect_msgs(c, [msg(target, "once") if kind == "SUBSCRIBE" else pmsg(name, target, "once")], 5)
        expect_quiet(c, 0.2)
        c.send(b"".join(cmd(*x) for x in [(un, name), (kind, name)] * 5 + [(un, name)]))
        expect_msgs(c, [[u, name.encode(), 0], [k, name.encode(), 1]] * 5 + [[u, name.encode(), 0]], 5, "replies")
        assert wait_until(lambda: _redis_count(direct, kind, name) == 0, 1.0), \
            "upstream still subscribed 1 s after the churn ended unsubscribed"
        assert publish(b.socket, target, "nobody") == 0


def test_concurrent_churn_on_one_channel(fleet):
    """20 clients x 50 pipelined SUBSCRIBE/UNSUBSCRIBE rounds of the same channel, concurrently: the
    upstream subscription exists exactly while someone holds it."""
    r, (a, b) = fleet(2)
    direct = r.client()
    errors = []

    def churn(i):
        try:
            with Conn(a.socket, timeout=20) as c:
                c.send(b"".join(cmd("SUBSCRIBE", "hot") + cmd("UNSUBSCRIBE", "hot") for _ in range(50)))
                got, status = read_msgs(c, 100, 20)
                want = [[b"subscribe", b"hot", 1], [b"unsubscribe", b"hot", 0]] * 50
                if got != want:
                    errors.append((i, status, [g for g, w in zip(got, want) if g != w][:3], len(got)))
        except Exception as e:
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "churn threads still running after 30 s"
    assert errors == [], errors[:5]
    assert wait_until(lambda: direct.execute_command("PUBSUB", "NUMSUB", "hot")[1] == 0, 1.0), \
        "Redis still has the upstream subscription after every client unsubscribed"
    info = relay_info(a.socket)
    assert info["redis_upstream_channels"] == "0" and info["redis_pending_confirmations"] == "0", info
    s = sub(a.socket, "SUBSCRIBE", "hot")
    try:
        assert direct.execute_command("PUBSUB", "NUMSUB", "hot")[1] == 1
        assert publish(b.socket, "hot", "after churn") == 1
        expect_msgs(s, [msg("hot", "after churn")], 5)
    finally:
        s.close()


# ---- a stuck subscriber does not stall the relay's upstream link ----------------------------------

def _bulk_publisher(path: str, channel: bytes, n: int, size: int, go, result):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.settimeout(20)
        go.recv()
        body = b"x" * size
        replies = b""
        for start in range(0, n, 100):
            cnt = min(100, n - start)
            s.sendall(b"".join(cmd(b"PUBLISH", channel, b"%08d" % (start + q) + body) for q in range(cnt)))
            buf = b""
            while buf.count(b"\r\n") < cnt:
                d = s.recv(65536)
                if not d:
                    raise RuntimeError("EOF")
                buf += d
            replies += buf
        result.send({"replies": sorted(set(replies.split(b"\r\n")) - {b""})})
    except Exception as e:
        result.send({"error": repr(e)})


def test_stuck_subscriber_does_not_stall_backplane(fleet):
    """A subscriber that never reads, on relay A, next to one that reads: 24 MB published on relay B.
    The reader gets every message, the stuck one is disconnected (its buffer limit), and relay A's
    upstream link is never dropped by Redis (it keeps reading)."""
    r, (a, b) = fleet(2, {"RELAY_CLIENT_BUFFER_LIMIT": "4mb 1mb 2"})
    n, size = 3000, 8000
    stuck = Conn(a.socket, rcvbuf=4096)
    sub(a.socket, "SUBSCRIBE", "flood", conn=stuck)
    reader = sub(a.socket, "SUBSCRIBE", "flood")
    before = relay_info(a.socket)
    ctx = multiprocessing.get_context("fork")
    go_r, go_w = ctx.Pipe(False)
    res_r, res_w = ctx.Pipe(False)
    p = ctx.Process(target=_bulk_publisher, args=(b.socket, b"flood", n, size, go_r, res_w), daemon=True)
    p.start()
    try:
        go_w.send(b"go")
        sock = reader.sock
        sock.settimeout(1)
        buf, pos, seqs = reader.buf, 0, []
        deadline = time.monotonic() + 60
        while len(seqs) < n and time.monotonic() < deadline:
            try:
                d = sock.recv(1 << 20)
            except (TimeoutError, socket.timeout):
                continue
            if not d:
                break
            buf = buf[pos:] + d
            frames, pos = parse_arrays(buf, 0)
            seqs += [int(f[2][:8]) for f in frames]
        assert res_r.poll(30), "publisher did not finish"
        pr = res_r.recv()
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
        p.join(5)
    assert "error" not in pr, pr
    # Relay A's two clients receive (PUBLISH counts the fleet's receivers) until the stuck one is cut.
    assert set(pr["replies"]) <= {b":1", b":2"} and b":2" in pr["replies"], pr
    assert seqs == list(range(n)), "reader got %d/%d messages, first gap at %r" % (
        len(seqs), n, next((i for i, q in enumerate(seqs) if q != i), None))
    data, closed = stuck.read_until_close(10)
    assert closed, "the stuck subscriber was not disconnected"
    info = relay_info(a.socket)
    assert info["redis_gaps"] == before["redis_gaps"] and info["redis_reconnects"] == before["redis_reconnects"], \
        "relay A's upstream link dropped while a local subscriber was stuck: %r" % info
    stuck.close()
    reader.close()


# ---- 10. real clients across two relays ------------------------------------------------------------

def _next(p, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = p.get_message(timeout=max(0.01, deadline - time.monotonic()))
        if m is not None:
            return m
    raise AssertionError("no pub/sub message within %.1fs" % timeout)


def test_redis_py_apps_on_two_relays_exchange_broadcasts(fleet):
    """App 1 (redis-py, RESP2) on relay A and app 2 (redis-py, RESP3) on relay B each subscribe to
    `broadcast` (app 2 also to `broad*`) and publish; each sees both apps' broadcasts."""
    _, (a, b) = fleet(2)
    app1 = redis.Redis(unix_socket_path=a.socket, protocol=2, socket_timeout=5)
    app2 = redis.Redis(unix_socket_path=b.socket, protocol=3, socket_timeout=5)
    p1 = app1.pubsub()
    p2 = app2.pubsub()
    try:
        p1.subscribe("broadcast")
        p2.subscribe("broadcast")
        p2.psubscribe("broad*")
        assert _next(p1)["type"] == "subscribe"
        assert [_next(p2)["type"] for _ in range(2)] == ["subscribe", "psubscribe"]
        assert app1.pubsub_numsub("broadcast") == [(b"broadcast", 2)]
        assert app2.pubsub_numsub("broadcast") == [(b"broadcast", 2)]
        assert app1.publish("broadcast", "hello from app1") == 3   # relay A (channel) + relay B (channel, pattern)
        assert app2.publish("broadcast", b"hello from app2 \xff") == 3
        got1 = [(m["type"], m["data"]) for m in (_next(p1), _next(p1))]
        assert got1 == [("message", b"hello from app1"), ("message", b"hello from app2 \xff")]
        got2 = [(m["type"], m["channel"], m["pattern"], m["data"]) for m in (_next(p2) for _ in range(4))]
        assert got2 == [("message", b"broadcast", None, b"hello from app1"),
                        ("pmessage", b"broadcast", b"broad*", b"hello from app1"),
                        ("message", b"broadcast", None, b"hello from app2 \xff"),
                        ("pmessage", b"broadcast", b"broad*", b"hello from app2 \xff")]
        assert p1.get_message(timeout=0.2) is None and p2.get_message(timeout=0.2) is None
    finally:
        p1.close()
        p2.close()
        app1.close()
        app2.close()


def test_redis_py_asyncio_apps_on_two_relays(fleet):
    import asyncio
    import redis.asyncio as aredis
    _, (a, b) = fleet(2)

    async def main():
        apps = [aredis.Redis(unix_socket_path=a.socket, protocol=3, socket_timeout=5),
                aredis.Redis(unix_socket_path=b.socket, protocol=2, socket_timeout=5)]
        pss = [x.pubsub() for x in apps]
        try:
            for ps in pss:
                await ps.subscribe("async-room")
                m = await ps.get_message(timeout=5)
                assert m["type"] == "subscribe", m
            for i, app in enumerate(apps):
                assert await app.publish("async-room", "from %d" % i) == 2
            for ps in pss:
                got = []
                deadline = time.monotonic() + 5
                while len(got) < 2 and time.monotonic() < deadline:
                    m = await ps.get_message(ignore_subscribe_messages=True, timeout=1)
                    if m:
                        got.append(m["data"])
                assert got == [b"from 0", b"from 1"]
        finally:
            for ps in pss:
                await ps.aclose()
            for x in apps:
                await x.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))


def _socketio():
    try:
        import socketio  # noqa: F401
        import requests  # noqa: F401
    except ImportError:
        res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "python-socketio", "requests"],
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--break-system-packages",
                                  "python-socketio", "requests"], capture_output=True, text=True, timeout=300)
        try:
            import importlib
            importlib.invalidate_caches()
            import socketio  # noqa: F401
            import requests  # noqa: F401
        except ImportError:
            pytest.skip("python-socketio not installable (pip install python-socketio requests): %s" % res.stderr[-300:])
    import socketio
    return socketio


def test_socketio_redis_manager_across_two_relays(fleet):
    """python-socketio servers, each with socketio.RedisManager('unix://<its relay>'), served over
    HTTP long-polling on loopback; a Socket.IO client on each server receives the other server's
    broadcast and a room emit through the backplane."""
    import wsgiref.simple_server as ws
    from socketserver import ThreadingMixIn
    socketio = _socketio()
    _, (a, b) = fleet(2)
    quiet = logging.getLogger("rit-socketio-quiet")
    quiet.setLevel(logging.CRITICAL + 1)
    quiet.propagate = False

    class Server(ThreadingMixIn, ws.WSGIServer):
        daemon_threads = True

    class Quiet(ws.WSGIRequestHandler):
        def log_message(self, *args):
            pass

    servers, threads, clients = [], [], []
    sios = []
    try:
        for rel in (a, b):
            # the managers' listener threads outlive the test (they retry forever): keep them quiet
            mgr = socketio.RedisManager(unix_url(rel.socket), channel="sio-test", logger=quiet)
            sio = socketio.Server(client_manager=mgr, async_mode="threading", logger=quiet, engineio_logger=quiet)

            @sio.event
            def connect(sid, environ, auth, _sio=sio):
                _sio.enter_room(sid, "lobby")

            httpd = ws.make_server("127.0.0.1", 0, socketio.WSGIApp(sio), server_class=Server, handler_class=Quiet)
            t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            t.start()
            servers.append(httpd)
            threads.append(t)
            sios.append(sio)
        for httpd in servers:
            c = socketio.SimpleClient()
            c.connect("http://127.0.0.1:%d" % httpd.server_address[1], transports=["polling"], wait_timeout=10)
            clients.append(c)
        # each manager subscribes `sio-test` from its listener thread once its first client connected
        ok = wait_until(lambda: numsub(a.socket, "sio-test") == [2], 10)
        assert ok, "the two RedisManagers never both subscribed (fleet NUMSUB %r)" % numsub(a.socket, "sio-test")
        sios[0].emit("news", {"text": "from server A"})
        sios[1].emit("news", {"text": "from server B"}, room="lobby")
        for i, c in enumerate(clients):
            got = []
            for _ in range(2):
                ev = c.receive(timeout=10)
                got.append((ev[0], ev[1]["text"]))
            assert sorted(got) == [("news", "from server A"), ("news", "from server B")], "client %d: %r" % (i, got)
    finally:
        for c in clients:
            try:
                c.disconnect()
            except Exception:
                pass
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


# ---- 11. fleet-wide PUBSUB ----------------------------------------------------------------------

def test_fleet_wide_numsub_follows_relays_dying(fleet):
    r, (a, b, c) = fleet(3)
    subs = [sub(a.socket, "SUBSCRIBE", "room") for _ in range(3)] + [sub(b.socket, "SUBSCRIBE", "room") for _ in range(2)]
    direct_sub = r.client().pubsub()
    direct_sub.subscribe("room")
    assert wait_until(lambda: direct_sub.get_message(timeout=0.1), 3)["type"] == "subscribe"
    try:
        for label, rel in (("A", a), ("B", b), ("C", c)):
            assert numsub(rel.socket, "room", "nobody") == [6, 0], "NUMSUB on relay %s" % label
        # kill -9 relay B: its count expires (5 s after its last refresh, refreshed every second)
        os.kill(b.pid, signal.SIGKILL)
        b.proc.wait(5)
        t0 = time.monotonic()
        ok = wait_until(lambda: numsub(a.socket, "room") == [4] and numsub(c.socket, "room") == [4], 7.0, 0.1)
        assert ok, "7 s after kill -9 of relay B: NUMSUB room on A %r, on C %r (want 4)" % (
            numsub(a.socket, "room"), numsub(c.socket, "room"))
        print("\nrelay B's subscribers gone from NUMSUB %.2fs after kill -9" % (time.monotonic() - t0))
        # SIGTERM relay A: its count is deleted at once
        assert a.stop() == 0, "relay A exit code"
        t0 = time.monotonic()
        ok = wait_until(lambda: numsub(c.socket, "room") == [1], 1.0)
        assert ok, "1 s after SIGTERM of relay A: NUMSUB room on C %r (want 1)" % numsub(c.socket, "room")
    finally:
        direct_sub.close()
        for s in subs:
            s.close()


def test_fleet_wide_numpat_and_channels(fleet):
    r, (a, b, c) = fleet(3)
    conns = [sub(a.socket, "SUBSCRIBE", "fa1", "shared"), sub(b.socket, "SUBSCRIBE", "fb1", "shared"),
             sub(a.socket, "PSUBSCRIBE", "pa*", "shared*"), sub(b.socket, "PSUBSCRIBE", "pb*", "shared*")]
    direct_sub = r.client().pubsub()
    direct_sub.subscribe("fdirect")
    direct_sub.psubscribe("pd*")
    for _ in range(2):
        assert wait_until(lambda: direct_sub.get_message(timeout=0.1), 3)["type"] in ("subscribe", "psubscribe")
    try:
        for label, rel in (("A", a), ("B", b), ("C", c)):
            with Conn(rel.socket) as q:
                chans = sorted(q.call("PUBSUB", "CHANNELS"))
                assert chans == [b"fa1", b"fb1", b"fdirect", b"shared"], "PUBSUB CHANNELS on %s: %r" % (label, chans)
                assert sorted(q.call("PUBSUB", "CHANNELS", "f*")) == [b"fa1", b"fb1", b"fdirect"]
                # Redis 7 counts unique patterns: pa* pb* shared* pd*
                assert q.call("PUBSUB", "NUMPAT") == 4, "PUBSUB NUMPAT on %s" % label
                assert q.call("PUBSUB", "NUMSUB", "shared", "fdirect", "fa1") == [b"shared", 2, b"fdirect", 1, b"fa1", 1]
    finally:
        direct_sub.close()
        for s in conns:
            s.close()


def test_namespace_keys_and_clean_shutdown(fleet, redis_at_factory, backplane_relay):
    """RELAY_NAMESPACE prefixes the relay's keys; a SIGTERM removes its count hash at once."""
    r = redis_at_factory()
    rel = backplane_relay(unix_url(r.socket), {"RELAY_NAMESPACE": "nsx"})
    rid = relay_info(rel.socket)["redis_relay_id"]
    s = sub(rel.socket, "SUBSCRIBE", "ns-room")
    direct = r.client()
    key = "nsx:numsub:%s" % rid
    try:
        assert wait_until(lambda: direct.exists(key), 2), "no %s hash; keys %r" % (key, direct.keys("*"))
        assert all(k.startswith(b"nsx:") for k in direct.keys("*")), direct.keys("*")
        ttl = direct.pttl(key)
        assert 0 < ttl <= 5000, "count hash TTL %r ms (expected to expire within 5 s)" % ttl
    finally:
        s.close()
    assert rel.stop() == 0
    assert not direct.exists(key), "count hash still there after SIGTERM"


# ---- 12. configuration errors ---------------------------------------------------------------------

def _expect_78(relay_factory, env: dict) -> str:
    rel = relay_factory(env, wait=False)
    try:
        rc = rel.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError("relay with %r still running after 5 s; stderr:\n%s" % (env, rel.stderr()))
    err = rel.stderr()
    lines = [l for l in err.splitlines() if l.strip()]
    print("\n%r -> exit %s, stderr %r" % (env, rc, lines))
    assert rc == EX_CONFIG, "exit %s for %r, stderr %r" % (rc, env, lines)
    assert len(lines) == 1, "expected one stderr line, got %r" % lines
    assert not os.path.exists(rel.socket), "socket created despite invalid config"
    return lines[0]


@pytest.mark.parametrize("url", ["http://x", "redis-sentinel://h:1", "unix://", "unix://relative/path.sock",
                                 "redis://host:0", "redis://host:65536", "redis://host:abc", "redis://host/notadb",
                                 "unix:///tmp/r.sock?db=x", "unix:///tmp/r.sock?nosuchoption=1"])
def test_bad_redis_url_exit_78(relay_factory, url):
    line = _expect_78(relay_factory, {"REDIS_URL": url})
    assert "REDIS_URL" in line, line


def test_tls_setting_with_a_plaintext_url_exit_78(relay_factory):
    # rediss:// is accepted (test_tls.py); a TLS variable with redis:// is a typo'd scheme.
    line = _expect_78(relay_factory, {"REDIS_URL": "redis://user:pw@example.invalid:6380/0",
                                      "RELAY_REDIS_TLS_SERVER_NAME": "redis.test"})
    assert "RELAY_REDIS_TLS_SERVER_NAME" in line and "rediss://" in line and ":pw@" not in line, line


@pytest.mark.parametrize("var,value", [("RELAY_REDIS_TIMEOUT", "abc"), ("RELAY_REDIS_TIMEOUT", "-1s"),
                                       ("RELAY_REDIS_TIMEOUT", "0"), ("RELAY_REDIS_BACKOFF_MAX", "abc"),
                                       ("RELAY_REDIS_BACKOFF_MAX", "1h")])
def test_bad_redis_settings_exit_78(relay_factory, var, value):
    line = _expect_78(relay_factory, {"REDIS_URL": "unix:///tmp/nonexistent-rit.sock", var: value})
    assert var in line, line


@pytest.mark.parametrize("url", ["redis://user:secret@host:99999/0", "redis://user:secret@host:abc",
                                 "redis://:secret@host:1/xyz", "redis://user:secret@[::1/0",
                                 "unix:///tmp/r.sock?password=secret&db=abc"])
def test_bad_redis_url_never_prints_password(relay_factory, url):
    line = _expect_78(relay_factory, {"REDIS_URL": url})
    assert "REDIS_URL" in line, line
    assert "secret" not in line, "the password is printed: %r" % line


def test_check_config_rejects_bad_redis_url(relay_binary):
    from conftest import short_tmpdir
    path = os.path.join(short_tmpdir("rit-bpcfg-"), "relay.env")
    with open(path, "w") as f:
        f.write("REDIS_URL=redis://user:secret@host:99999\n")
    res = subprocess.run([relay_binary, "check-config", "--env-file", path], capture_output=True, text=True,
                         timeout=10, env=relay_env(None))
    out = res.stdout + res.stderr
    assert res.returncode == EX_CONFIG, (res.returncode, out)
    assert "REDIS_URL" in out and "secret" not in out, out
