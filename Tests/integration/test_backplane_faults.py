"""The Redis backplane under faults (README, "Outages"): redis-server killed and restarted on the same socket,
stopped (SIGSTOP), its pub/sub connections killed, refusing our credentials, absent at start-up;
a PUBLISH in flight when Redis hangs; PUBSUB answered locally while degraded; what INFO, /health,
/metrics and the log say through an outage.

Apps must never notice more than Redis's own at-most-once gap: their connections stay open, local
publishes keep reaching local subscribers (once), and everything is resubscribed on reconnect.
Real processes only (redis-server, relays), each stopped by PID; SIGSTOPped servers are always
SIGCONTed in a `finally`; every wait is bounded.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from conftest import relay_info, short_tmpdir, wait_redis_state, wait_until
from fleetutil import expect_msgs, expect_quiet, msg, pmsg, publish, read_msgs, sub, unix_url
from resputil import Conn, cmd

redis = pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")

RESUBSCRIBE_BOUND = 1.0


# ---- helpers (same shapes as in test_backplane.py) -------------------------------------------------

def call(path: str, *args):
    with Conn(path) as c:
        return c.call(*args)


def ping_subscribed(c: Conn, what: str):
    """PING on a subscribed RESP2 connection answers ["pong", ""] (Redis's rule)."""
    c.send(cmd("PING"))
    got, status = read_msgs(c, 1, 5)
    assert got == [[b"pong", b""]], "%s: PING in subscribed mode -> %r (%s)" % (what, got, status)


def degraded(relay) -> bool:
    return relay_info(relay.socket).get("redis_degraded") == "1"


def new_log(relay, since: int) -> str:
    return relay.stderr()[since:]


def log_lines(text: str, *needles) -> list[str]:
    return [l for l in text.splitlines() if all(n in l for n in needles)]


@pytest.fixture
def fleet(redis_at_factory, backplane_relay):
    def start(n: int, env: dict | None = None, redis_extra: list[str] | None = None):
        r = redis_at_factory(extra=redis_extra)
        relays = [backplane_relay(unix_url(r.socket), env) for _ in range(n)]
        return r, relays

    return start


# ---- 6. kill -9 redis-server twice, 1 000 channels + 100 patterns --------------------------------

N_CONNS = 10
CH_PER_CONN = 100
PAT_PER_CONN = 10


def _channels(i):
    return ["k6:%d:%d" % (i, j) for j in range(CH_PER_CONN)]


def _patterns(i):
    return ["k6p:%d:%d:*" % (i, k) for k in range(PAT_PER_CONN)]


ALL_CHANNELS = [c for i in range(N_CONNS) for c in _channels(i)]
ALL_PATTERNS = [p for i in range(N_CONNS) for p in _patterns(i)]


def _all_resubscribed(direct) -> tuple[bool, str]:
    try:
        counts = direct.execute_command("PUBSUB", "NUMSUB", *ALL_CHANNELS)[1::2]
        numpat = direct.execute_command("PUBSUB", "NUMPAT")
    except redis.RedisError as e:
        return False, repr(e)
    missing = sum(1 for n in counts if n != 1)
    return missing == 0 and numpat == len(ALL_PATTERNS), "%d/%d channels not at 1, NUMPAT %d/%d" % (
        missing, len(ALL_CHANNELS), numpat, len(ALL_PATTERNS))


def test_redis_kill9_twice_everything_resubscribed(fleet):
    """kill -9 of redis-server and a restart on the same socket, twice (0.5 s apart), while one relay
    holds 1 000 channels and 100 patterns for 11 app connections: no app connection closes, local
    publishes made while degraded reach local subscribers once, everything is resubscribed within
    1 s of Redis accepting again, messages flow again across relays and nothing is replayed."""
    r, (a, b) = fleet(2, {"RELAY_REDIS_BACKOFF_MAX": "500ms"})
    conns = []
    for i in range(N_CONNS):
        c = sub(a.socket, "SUBSCRIBE", *_channels(i), timeout=10)
        sub(a.socket, "PSUBSCRIBE", *_patterns(i), conn=c, timeout=10)
        conns.append(c)
    extra = sub(a.socket, "SUBSCRIBE", "k6:0:0")
    sub(a.socket, "PSUBSCRIBE", "k6p:0:0:*", conn=extra)
    direct = r.client()
    ok, why = _all_resubscribed(direct)
    assert ok, "before any fault: " + why
    log_start = len(a.stderr())
    expected = {i: [] for i in range(N_CONNS)}
    expected_extra = []
    try:
        for rnd in (1, 2):
            # -- Redis dies: relay A goes degraded; local publishes are delivered locally, once
            r.kill9()
            assert wait_until(lambda: degraded(a), 3), "round %d: relay A not degraded 3 s after kill -9: %r" % (
                rnd, relay_info(a.socket))
            pubs = [("k6:0:0", 2), ("k6p:0:0:x", 2), ("k6:5:7", 1), ("k6p:9:3:y", 1), ("k6:nobody", 0)]
            with Conn(a.socket) as p:
                for ch, want in pubs:
                    payload = "degraded round %d %s" % (rnd, ch)
                    n = p.call("PUBLISH", ch, payload)
                    assert n == want, "round %d: degraded PUBLISH %s answered %r, local receivers %d" % (rnd, ch, n, want)
            assert degraded(a), "relay A left degraded mode while redis-server is dead"
            d = "degraded round %d " % rnd
            expected[0] += [msg("k6:0:0", d + "k6:0:0"), pmsg("k6p:0:0:*", "k6p:0:0:x", d + "k6p:0:0:x")]
            expected_extra += [msg("k6:0:0", d + "k6:0:0"), pmsg("k6p:0:0:*", "k6p:0:0:x", d + "k6p:0:0:x")]
            expected[5] += [msg("k6:5:7", d + "k6:5:7")]
            expected[9] += [pmsg("k6p:9:3:*", "k6p:9:3:y", d + "k6p:9:3:y")]
            for i, c in enumerate(conns):
                expect_msgs(c, expected[i], 3, "round %d conn %d (degraded local delivery)" % (rnd, i))
                expected[i] = []
            expect_msgs(extra, expected_extra, 3, "round %d extra conn" % rnd)
            expected_extra = []
            # -- Redis is back on the same socket: everything resubscribed within 1 s
            t_accept = r.start()
            ok = wait_until(lambda: _all_resubscribed(direct)[0], RESUBSCRIBE_BOUND, 0.01)
            took = time.monotonic() - t_accept
            assert ok, "round %d: %.2fs after redis-server accepted again: %s; relay A INFO %r" % (
                rnd, took, _all_resubscribed(direct)[1], relay_info(a.socket))
            assert wait_until(lambda: not degraded(a), max(0.05, t_accept + RESUBSCRIBE_BOUND - time.monotonic())), \
                "round %d: relay A still degraded 1 s after Redis accepted: %r" % (rnd, relay_info(a.socket))
            print("\nround %d: resubscribed %.3fs after Redis accepted" % (rnd, took))
            if rnd == 1:
                time.sleep(0.5)
        # -- messages flow end to end again: published on relay B, received on relay A
        wait_redis_state(b, "up", 10)
        # B counts A's second client of k6:0:0 once A's state has answered B's hello (both
        # subscribers reconnected and asked for the fleet's states again).
        assert wait_until(lambda: relay_info(b.socket)["redis_fleet_relays_known"] == "1", 5), relay_info(b.socket)
        with Conn(b.socket) as p:
            for i in range(N_CONNS):
                ch = "k6:%d:%d" % (i, (i * 7 + 1) % CH_PER_CONN)     # never k6:0:0 (the extra conn's)
                assert p.call("PUBLISH", ch, "after " + ch) == 1, ch
                expected[i].append(msg(ch, "after " + ch))
                k = (i + 1) % PAT_PER_CONN
                pch = "k6p:%d:%d:zz" % (i, k)
                assert p.call("PUBLISH", pch, "after " + pch) == 1, pch
                expected[i].append(pmsg("k6p:%d:%d:*" % (i, k), pch, "after " + pch))
            # conn 0 and the extra conn, both on relay A: PUBLISH counts the fleet's receivers
            assert p.call("PUBLISH", "k6:0:0", "after both") == 2
            expected[0].append(msg("k6:0:0", "after both"))
        for i, c in enumerate(conns):
            expect_msgs(c, expected[i], 5, "conn %d after recovery" % i)
        expect_msgs(extra, [msg("k6:0:0", "after both")], 5, "extra conn after recovery")
        # -- nothing replayed, nothing closed, the connections still answer
        for i, c in enumerate(conns + [extra]):
            expect_quiet(c, 0.3 if i == 0 else 0.02, "conn %d" % i)
            ping_subscribed(c, "conn %d" % i)
        info = relay_info(a.socket)
        assert int(info["redis_gaps"]) >= 2 and int(info["redis_reconnects"]) >= 2, info
        log = new_log(a, log_start)
        assert len(log_lines(log, "error", "redis backplane lost: degraded mode")) >= 2, log
        restored = log_lines(log, "notice", "redis backplane restored")
        assert len(restored) >= 2 and all(re.search(r"gap_seconds=[0-9.]+", l) for l in restored), log
    finally:
        for c in conns + [extra]:
            c.close()


def test_subscription_changes_while_degraded_applied_on_reconnect(fleet):
    """While Redis is dead: a new client subscribes (confirmed locally) and the last holder of `gone`
    unsubscribes. On reconnect the relay subscribes exactly what is held now: `keep` and `new`, not
    `gone`."""
    r, (a, b) = fleet(2, {"RELAY_REDIS_BACKOFF_MAX": "500ms"})
    keep = sub(a.socket, "SUBSCRIBE", "keep")
    sub(a.socket, "PSUBSCRIBE", "keep*", conn=keep)
    gone = sub(a.socket, "SUBSCRIBE", "gone")
    sub(a.socket, "PSUBSCRIBE", "gone*", conn=gone)
    new = None
    try:
        r.kill9()
        assert wait_until(lambda: degraded(a), 3), relay_info(a.socket)
        new = sub(a.socket, "SUBSCRIBE", "new", timeout=2)
        sub(a.socket, "PSUBSCRIBE", "new*", conn=new, timeout=2)
        gone.send(cmd("UNSUBSCRIBE", "gone") + cmd("PUNSUBSCRIBE", "gone*"))
        expect_msgs(gone, [[b"unsubscribe", b"gone", 1], [b"punsubscribe", b"gone*", 0]], 2, "unsubscribe while degraded")
        info = relay_info(a.socket)
        assert (info["redis_upstream_channels"], info["redis_upstream_patterns"]) == ("2", "2"), info
        r.start()
        wait_redis_state(a, "up", 3)
        direct = r.client()
        assert direct.execute_command("PUBSUB", "NUMSUB", "keep", "new", "gone") == [b"keep", 1, b"new", 1, b"gone", 0]
        assert direct.execute_command("PUBSUB", "NUMPAT") == 2
        subc = [c for c in direct.client_list() if c["name"].endswith(":sub") and c["name"].startswith(
            "pubsub-relay:%s:" % info["redis_relay_id"])]
        assert [(c["sub"], c["psub"]) for c in subc] == [("2", "2")], subc
        wait_redis_state(b, "up", 5)
        assert publish(b.socket, "new", "n") == 2
        assert publish(b.socket, "gone", "g") == 0
        expect_msgs(new, [msg("new", "n"), pmsg("new*", "new", "n")], 5, "new subscriber after reconnect")
        expect_quiet(gone, 0.2, "unsubscribed client")
    finally:
        for c in (keep, gone, new):
            if c is not None:
                c.close()


def test_subscribe_pending_when_redis_hangs_is_confirmed_on_degrade(fleet):
    """A SUBSCRIBE waiting for Redis's confirmation when Redis hangs is confirmed (locally) once the
    relay declares the link dead; a client that left while its SUBSCRIBE was pending leaves nothing
    subscribed upstream after recovery."""
    r, (a,) = fleet(1, {"RELAY_REDIS_TIMEOUT": "1s", "RELAY_REDIS_BACKOFF_MAX": "500ms"})
    c1 = c2 = None
    r.sigstop()
    try:
        t0 = time.monotonic()
        c1 = Conn(a.socket, timeout=8)
        c1.send(cmd("SUBSCRIBE", "hang1"))
        c2 = Conn(a.socket, timeout=8)
        c2.send(cmd("SUBSCRIBE", "hang2"))
        time.sleep(0.1)
        print("\npending confirmations while Redis hangs: %s" % relay_info(a.socket)["redis_pending_confirmations"])
        c2.close()
        got, status = read_msgs(c1, 1, 5)
        assert got == [[b"subscribe", b"hang1", 1]], "pending SUBSCRIBE while Redis hangs: %r (%s) after %.1fs" % (
            got, status, time.monotonic() - t0)
        print("confirmed %.2fs after Redis hung" % (time.monotonic() - t0))
        info = relay_info(a.socket)
        assert info["redis_degraded"] == "1" and info["redis_pending_confirmations"] == "0", info
        assert publish(a.socket, "hang1", "local") == 1
        expect_msgs(c1, [msg("hang1", "local")], 2)
    finally:
        r.sigcont()
    try:
        wait_redis_state(a, "up", 5)
        direct = r.client()
        assert wait_until(lambda: direct.execute_command("PUBSUB", "NUMSUB", "hang1", "hang2") == [b"hang1", 1, b"hang2", 0], 1), \
            direct.execute_command("PUBSUB", "NUMSUB", "hang1", "hang2")
        info = relay_info(a.socket)
        assert info["redis_upstream_channels"] == "1", info
        assert direct.publish("hang1", "via redis") == 1
        expect_msgs(c1, [msg("hang1", "via redis")], 5)
        expect_quiet(c1, 0.3)
    finally:
        c1.close()


# ---- 7. SIGSTOP redis-server ---------------------------------------------------------------------

def test_redis_sigstop_degraded_within_5s_then_recovers(fleet):
    """A hung Redis (SIGSTOP) is detected by PING deadlines (default RELAY_REDIS_TIMEOUT=3s): the relay
    reports redis_degraded:1 within 5 s and keeps delivering locally; after SIGCONT it recovers and
    messages cross relays again."""
    r, (a, b) = fleet(2)
    sa = sub(a.socket, "SUBSCRIBE", "st")
    sb = sub(b.socket, "SUBSCRIBE", "st")
    try:
        assert publish(a.socket, "st", "before") == 2
        expect_msgs(sa, [msg("st", "before")], 5, "A before")
        expect_msgs(sb, [msg("st", "before")], 5, "B before")
        r.sigstop()
        try:
            t0 = time.monotonic()
            ok = wait_until(lambda: degraded(a), 5.0, 0.05)
            took = time.monotonic() - t0
            assert ok, "relay A not degraded 5 s after SIGSTOP of redis-server: %r" % relay_info(a.socket)
            print("\ndegraded %.2fs after SIGSTOP" % took)
            info = relay_info(a.socket)
            assert info["redis_state"] == "degraded" and info["redis_degraded_since"] != "", info
            assert info["redis_last_error"] != "", info
            n = publish(a.socket, "st", "during stop")
            assert n == 1, "degraded PUBLISH answered %r; the local receiver count is 1" % n
            expect_msgs(sa, [msg("st", "during stop")], 2, "A local delivery while Redis is stopped")
            expect_quiet(sb, 0.2, "B while Redis is stopped")
        finally:
            r.sigcont()
        t0 = time.monotonic()
        for label, rel in (("A", a), ("B", b)):
            wait_redis_state(rel, "0", 10, key="redis_degraded")
        print("recovered %.2fs after SIGCONT" % (time.monotonic() - t0))
        assert publish(b.socket, "st", "after") == 2
        expect_msgs(sa, [msg("st", "after")], 5, "A after SIGCONT")
        expect_msgs(sb, [msg("st", "after")], 5, "B after SIGCONT")
        expect_quiet(sa, 0.3, "A: the degraded publish must not arrive again")
        expect_quiet(sb, 0.1, "B")
    finally:
        sa.close()
        sb.close()


def test_publish_in_flight_when_redis_hangs_answers_0(fleet):
    """A PUBLISH sent upstream just as Redis hangs is answered 0 (not delivered) once the link is
    declared dead, and counted in redis_unconfirmed_publishes."""
    r, (a,) = fleet(1, {"RELAY_REDIS_TIMEOUT": "1s"})
    s = sub(a.socket, "SUBSCRIBE", "inflight")
    try:
        before = int(relay_info(a.socket)["redis_unconfirmed_publishes"])
        r.sigstop()
        try:
            t0 = time.monotonic()
            n = publish(a.socket, "inflight", "lost", timeout=8)
            took = time.monotonic() - t0
            assert n == 0, "in-flight PUBLISH answered %r (expected 0)" % n
            assert took < 4, "in-flight PUBLISH answered after %.1fs with RELAY_REDIS_TIMEOUT=1s" % took
            info = relay_info(a.socket)
            assert int(info["redis_unconfirmed_publishes"]) == before + 1, info
            assert info["redis_degraded"] == "1", info
            expect_quiet(s, 0.2, "the unconfirmed message must not be delivered locally")
        finally:
            r.sigcont()
        wait_redis_state(a, "up", 10)
        expect_quiet(s, 0.5, "the unconfirmed message must not be delivered after recovery either")
        assert publish(a.socket, "inflight", "after") == 1
        expect_msgs(s, [msg("inflight", "after")], 5)
    finally:
        s.close()


# ---- 8. CLIENT KILL TYPE pubsub ---------------------------------------------------------------------

def test_client_kill_pubsub_recovers_within_1s(fleet):
    r, (a, b) = fleet(2)
    s = sub(a.socket, "SUBSCRIBE", "ck")
    sub(a.socket, "PSUBSCRIBE", "ck*", conn=s)
    direct = r.client()
    try:
        before = relay_info(a.socket)
        t0 = time.monotonic()
        killed = direct.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1, killed

        def recovered():
            # Both relays' subscriber connections are pub/sub clients (relay B's holds the fleet
            # channel), so both were cut: B publishes upstream again only once it is back too.
            info = relay_info(a.socket)
            return (int(info["redis_reconnects"]) > int(before["redis_reconnects"]) and info["redis_degraded"] == "0"
                    and relay_info(b.socket)["redis_degraded"] == "0"
                    and direct.execute_command("PUBSUB", "NUMSUB", "ck")[1] == 1
                    and direct.execute_command("PUBSUB", "NUMPAT") == 1)

        ok = wait_until(recovered, RESUBSCRIBE_BOUND, 0.01)
        assert ok, "1 s after CLIENT KILL TYPE pubsub: INFO %r, Redis NUMSUB ck %r, NUMPAT %r" % (
            relay_info(a.socket), direct.execute_command("PUBSUB", "NUMSUB", "ck"),
            direct.execute_command("PUBSUB", "NUMPAT"))
        assert publish(b.socket, "ck", "after kill", timeout=max(0.1, t0 + 1 - time.monotonic())) == 2
        got, status = read_msgs(s, 2, max(0.05, t0 + RESUBSCRIBE_BOUND - time.monotonic()))
        assert got == [msg("ck", "after kill"), pmsg("ck*", "ck", "after kill")], \
            "cross-relay message within 1 s of the kill: %r (%s)" % (got, status)
        print("\nrecovered and delivered %.3fs after CLIENT KILL" % (time.monotonic() - t0))
        expect_quiet(s, 0.2, "subscriber")
        info = relay_info(a.socket)
        assert int(info["redis_gaps"]) == int(before["redis_gaps"]) + 1, info
        assert "redis backplane lost: degraded mode" in a.stderr() and "redis backplane restored" in a.stderr()
    finally:
        s.close()


# ---- 9. authentication ------------------------------------------------------------------------------

def _acl_user(r, user="relay", pw="pw-acl-9x"):
    assert r.client().execute_command("ACL", "SETUSER", user, "on", ">" + pw, "~*", "&*", "+@all") == b"OK"


def _relay_users(r, rid, **kw) -> dict:
    return {c["name"]: c["user"] for c in r.client(**kw).client_list() if c["name"].startswith("pubsub-relay:%s:" % rid)}


def _local_service_works(rel, ch):
    s = sub(rel.socket, "SUBSCRIBE", ch)
    try:
        assert publish(rel.socket, ch, "local") == 1
        expect_msgs(s, [msg(ch, "local")], 3, "local delivery")
    finally:
        s.close()


def _refused(relay_factory, redis_url: str, needle: str, secret: str | None):
    rel = relay_factory({"REDIS_URL": redis_url})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(log_lines(rel.stderr(), needle)) >= 2:
            break
        time.sleep(0.05)
    err = rel.stderr()
    lines = log_lines(err, needle)
    assert len(lines) >= 2, "expected >= 2 log lines with %r (one per attempt), got:\n%s" % (needle, err)
    assert all("warning" in l and "connection down" in l and "reason=" in l for l in lines), lines
    info = wait_redis_state(rel, "1", 3, key="redis_degraded")
    assert needle in info["redis_last_error"], info
    assert info["redis_state"] == "degraded", info
    _local_service_works(rel, "auth-local")
    time.sleep(0.5)
    assert len(log_lines(rel.stderr(), needle)) > len(lines), "the relay stopped retrying"
    if secret:
        assert secret not in rel.stderr(), "the password appears in the log"
        assert secret not in json.dumps(relay_info(rel.socket)), "the password appears in INFO"
        assert "***" in info["redis_url"], info["redis_url"]
    return rel


def test_wrong_password_refused_keeps_retrying_serves_locally(redis_at_factory, relay_factory):
    r = redis_at_factory(extra=["--requirepass", "s3cret-pw-q7"])
    _refused(relay_factory, unix_url(r.socket, password="wr0ng-pw-xyzzy"), "WRONGPASS", "wr0ng-pw-xyzzy")


def test_no_password_when_required_noauth(redis_at_factory, relay_factory):
    r = redis_at_factory(extra=["--requirepass", "s3cret-pw-q7"])
    _refused(relay_factory, unix_url(r.socket), "NOAUTH", None)


def test_right_password_unix_url(redis_at_factory, backplane_relay):
    pw = "s3cret-pw-q7"
    r = redis_at_factory(extra=["--requirepass", pw])
    rel = backplane_relay(unix_url(r.socket, password=pw))
    direct = r.client(password=pw)
    ps = direct.pubsub()
    ps.subscribe("authed")
    assert wait_until(lambda: ps.get_message(timeout=0.1), 3)["type"] == "subscribe"
    try:
        assert publish(rel.socket, "authed", "hello") == 1
        m = wait_until(lambda: ps.get_message(timeout=0.1), 3)
        assert m and m["data"] == b"hello", m
        info = relay_info(rel.socket)
        assert pw not in rel.stderr() and pw not in json.dumps(info), "the password is shown"
        assert "***" in info["redis_url"], info
    finally:
        ps.close()


def test_acl_user_unix_url(redis_at_factory, backplane_relay, relay_factory):
    r = redis_at_factory()
    _acl_user(r)
    rel = backplane_relay(unix_url(r.socket, user="relay", password="pw-acl-9x"))
    rid = relay_info(rel.socket)["redis_relay_id"]
    assert set(_relay_users(r, rid).values()) == {"relay"}, _relay_users(r, rid)
    _refused(relay_factory, unix_url(r.socket, user="relay", password="not-it-4k"), "WRONGPASS", "not-it-4k")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_tcp_url_acl_user_and_db(redis_at_factory, backplane_relay):
    """redis://user:password@127.0.0.1:port/db over TCP: the ACL user is used, the relay's keys live
    in that db, pub/sub crosses to a relay on the Unix socket of the same server."""
    port = _free_port()
    r = redis_at_factory(extra=["--port", str(port), "--bind", "127.0.0.1"])
    _acl_user(r)
    tcp = backplane_relay("redis://relay:pw-acl-9x@127.0.0.1:%d/3" % port)
    plain = backplane_relay("redis://127.0.0.1:%d" % port)
    info = relay_info(tcp.socket)
    assert "pw-acl-9x" not in json.dumps(info) and "pw-acl-9x" not in tcp.stderr()
    rid = info["redis_relay_id"]
    assert set(_relay_users(r, rid).values()) == {"relay"}, _relay_users(r, rid)
    s = sub(tcp.socket, "SUBSCRIBE", "tcp-ch")
    try:
        assert wait_until(lambda: r.client(db=3).keys("pubsub-relay:*"), 2), \
            "no relay keys in db 3: db0 %r" % r.client().keys("*")
        assert publish(plain.socket, "tcp-ch", "over tcp") == 1
        expect_msgs(s, [msg("tcp-ch", "over tcp")], 5)
    finally:
        s.close()


# ---- 11b. PUBSUB answered locally while degraded --------------------------------------------------

def test_pubsub_introspection_local_while_degraded(fleet):
    r, (a, b) = fleet(2, {"RELAY_REDIS_BACKOFF_MAX": "500ms"})
    conns = [sub(a.socket, "SUBSCRIBE", "room"), sub(a.socket, "SUBSCRIBE", "room", "aonly"),
             sub(a.socket, "PSUBSCRIBE", "r*"), sub(b.socket, "SUBSCRIBE", "room", "bonly"),
             sub(b.socket, "PSUBSCRIBE", "b*")]
    ps = r.client().pubsub()
    ps.subscribe("room")
    assert wait_until(lambda: ps.get_message(timeout=0.1), 3)["type"] == "subscribe"
    try:
        assert call(a.socket, "PUBSUB", "NUMSUB", "room", "bonly") == [b"room", 4, b"bonly", 1]
        assert sorted(call(a.socket, "PUBSUB", "CHANNELS")) == [b"aonly", b"bonly", b"room"]
        assert call(a.socket, "PUBSUB", "NUMPAT") == 2
        r.kill9()
        ps.close()
        for rel in (a, b):
            assert wait_until(lambda: degraded(rel), 3), relay_info(rel.socket)
        assert call(a.socket, "PUBSUB", "NUMSUB", "room", "bonly") == [b"room", 2, b"bonly", 0]
        assert sorted(call(a.socket, "PUBSUB", "CHANNELS")) == [b"aonly", b"room"]
        assert sorted(call(a.socket, "PUBSUB", "CHANNELS", "a*")) == [b"aonly"]
        assert call(a.socket, "PUBSUB", "NUMPAT") == 1
        assert call(b.socket, "PUBSUB", "NUMSUB", "room", "aonly") == [b"room", 1, b"aonly", 0]
        assert sorted(call(b.socket, "PUBSUB", "CHANNELS")) == [b"bonly", b"room"]
        assert call(b.socket, "PUBSUB", "NUMPAT") == 1
        r.start()
        for rel in (a, b):
            wait_redis_state(rel, "up", 5)
        # fleet-wide again (the restarted Redis lost the counts: the relays write them anew)
        ok = wait_until(lambda: call(b.socket, "PUBSUB", "NUMSUB", "room") == [b"room", 3], 3)
        assert ok, "NUMSUB room on B after recovery: %r (want 3)" % call(b.socket, "PUBSUB", "NUMSUB", "room")
        assert sorted(call(b.socket, "PUBSUB", "CHANNELS")) == [b"aonly", b"bonly", b"room"]
        assert call(b.socket, "PUBSUB", "NUMPAT") == 2
    finally:
        for c in conns:
            c.close()


# ---- 13. Redis absent at start-up, hung at start-up --------------------------------------------

def test_redis_absent_at_start_then_appears(redis_at_factory, relay_factory):
    sock = os.path.join(short_tmpdir("rit-late-"), "redis.sock")
    rel = relay_factory({"REDIS_URL": unix_url(sock), "RELAY_REDIS_BACKOFF_MAX": "1s"})
    info = wait_redis_state(rel, "1", 3, key="redis_degraded")
    assert info["redis_state"] == "degraded" and "redis.sock" in info["redis_last_error"] + info["redis_url"], info
    s = sub(rel.socket, "SUBSCRIBE", "late")
    sub(rel.socket, "PSUBSCRIBE", "lat*", conn=s)
    try:
        assert publish(rel.socket, "late", "local only") == 2
        expect_msgs(s, [msg("late", "local only"), pmsg("lat*", "late", "local only")], 3, "degraded local delivery")
        time.sleep(1.5)             # let the backoff reach its cap
        assert len(log_lines(rel.stderr(), "redis subscriber connection down")) >= 2, rel.stderr()
        r = redis_at_factory(socket_path=sock, start=False)
        t_accept = r.start()
        ok = wait_until(lambda: relay_info(rel.socket)["redis_state"] == "up", 2.0 - (time.monotonic() - t_accept))
        assert ok, "not up %.1fs after Redis appeared (backoff cap 1 s): %r" % (
            time.monotonic() - t_accept, relay_info(rel.socket))
        print("\nup %.3fs after redis-server accepted" % (time.monotonic() - t_accept))
        direct = r.client()
        assert direct.execute_command("PUBSUB", "NUMSUB", "late") == [b"late", 1]
        assert direct.execute_command("PUBSUB", "NUMPAT") == 1
        assert direct.publish("late", "via redis") == 2
        expect_msgs(s, [msg("late", "via redis"), pmsg("lat*", "late", "via redis")], 3, "after Redis appeared")
        expect_quiet(s, 0.3, "nothing replayed")
    finally:
        s.close()


def test_redis_hung_at_start_relay_still_serves(redis_at_factory, relay_factory):
    r = redis_at_factory()
    r.sigstop()
    try:
        rel = relay_factory({"REDIS_URL": unix_url(r.socket), "RELAY_REDIS_TIMEOUT": "1s",
                             "RELAY_REDIS_BACKOFF_MAX": "1s"})
        _local_service_works(rel, "hung-local")
        wait_redis_state(rel, "1", 3, key="redis_degraded")
        ok = wait_until(lambda: relay_info(rel.socket)["redis_last_error"] != "", 3)
        assert ok, relay_info(rel.socket)
    finally:
        r.sigcont()
    wait_redis_state(rel, "up", 5)
    _local_service_works(rel, "hung-after")


def _log_times(text: str, needle: str) -> list[float]:
    """Timestamps (seconds) of the log lines containing `needle` (text format: ISO-8601 first)."""
    from datetime import datetime
    out = []
    for l in log_lines(text, needle):
        stamp = l.split()[0]
        out.append(datetime.strptime(stamp.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").timestamp())
    return out


def test_reconnect_backoff_doubles_with_jitter_and_cap(relay_factory):
    """Failed attempts (nothing listening) are spaced by a backoff starting at 50 ms and doubling,
    each delay between half and all of its step, capped at RELAY_REDIS_BACKOFF_MAX (here 400ms)."""
    sock = os.path.join(short_tmpdir("rit-backoff-"), "redis.sock")
    rel = relay_factory({"REDIS_URL": unix_url(sock), "RELAY_REDIS_BACKOFF_MAX": "400ms"})
    time.sleep(3.0)
    for link in ("subscriber", "publisher"):
        times = _log_times(rel.stderr(), "redis %s connection down" % link)
        gaps = [round((b - a) * 1000) for a, b in zip(times, times[1:])]
        steps = [min(50 * 2 ** k, 400) for k in range(len(gaps))]
        bad = [(k, g, st) for k, (g, st) in enumerate(zip(gaps, steps)) if not (st / 2 - 5 <= g <= st + 100)]
        print("\n%s link: delays %r ms" % (link, gaps))
        assert len(gaps) >= 6, "only %d retries in 3 s: %r" % (len(gaps), gaps)
        assert bad == [], "%s link delays outside [step/2, step] (index, delay ms, step ms): %r; all %r" % (link, bad, gaps)
        assert len(set(gaps[4:])) > 1, "no jitter at the cap: %r" % gaps


# ---- health, metrics, logs through an outage --------------------------------------------------------

def _http(addr: str, path: str) -> tuple[int, bytes]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(addr)
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
        buf = b""
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            buf += d
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out, pos = b"", 0
        while True:
            nl = body.index(b"\r\n", pos)
            size = int(body[pos:nl], 16)
            if size == 0:
                break
            out += body[nl + 2:nl + 2 + size]
            pos = nl + 2 + size + 2
        body = out
    return int(head.split()[1]), body


def _metric(text: str, name: str, **labels) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == name and all(smp.labels.get(k) == v for k, v in labels.items()):
                return smp.value
    return None


def test_health_metrics_logs_through_an_outage(redis_at_factory, backplane_relay):
    pytest.importorskip("prometheus_client", reason="pip install prometheus-client")
    r = redis_at_factory()
    maddr = os.path.join(short_tmpdir("rit-bpm-"), "metrics.sock")
    rel = backplane_relay(unix_url(r.socket), {"RELAY_METRICS_ADDR": maddr, "RELAY_REDIS_BACKOFF_MAX": "500ms"})
    assert relay_info(rel.socket, "server")["relay_mode"] == "backplane"
    s = sub(rel.socket, "SUBSCRIBE", "hm")
    try:
        assert wait_until(lambda: os.path.exists(maddr), 3), "no metrics socket"
        status, body = _http(maddr, "/health")
        h = json.loads(body)
        assert status == 200 and h["degraded"] is False and h["upstreams"]["redis"]["state"] == "up", (status, h)
        _, m = _http(maddr, "/metrics")
        m = m.decode()
        assert _metric(m, "pubsub_relay_upstream_up", upstream="redis") == 1, m
        in0 = _metric(m, "pubsub_relay_messages_in_total", source="redis") or 0
        rc0 = _metric(m, "pubsub_relay_upstream_reconnects_total", upstream="redis")
        gp0 = _metric(m, "pubsub_relay_upstream_gaps_total", upstream="redis")
        assert rc0 is not None and gp0 is not None, m
        assert publish(rel.socket, "hm", "one") == 1
        expect_msgs(s, [msg("hm", "one")], 3)
        _, m = _http(maddr, "/metrics")
        assert _metric(m.decode(), "pubsub_relay_messages_in_total", source="redis") == in0 + 1
        since = len(rel.stderr())

        r.kill9()
        assert wait_until(lambda: degraded(rel), 3)
        status, body = _http(maddr, "/health")
        h = json.loads(body)
        assert h["degraded"] is True and h["upstreams"]["redis"]["state"] == "degraded", (status, h)
        _, m = _http(maddr, "/metrics")
        assert _metric(m.decode(), "pubsub_relay_upstream_up", upstream="redis") == 0
        info = relay_info(rel.socket)
        assert info["redis_degraded_since"] and float(info["redis_degraded_since"]) > time.time() - 10, info
        assert info["redis_subscriber_link"] in ("down", "connecting", "handshaking"), info
        time.sleep(0.3)
        assert float(relay_info(rel.socket)["redis_degraded_seconds"]) >= 0.2

        r.start()
        wait_redis_state(rel, "up", 3)
        status, body = _http(maddr, "/health")
        h = json.loads(body)
        assert h["degraded"] is False and h["upstreams"]["redis"]["state"] == "up", (status, h)
        _, m = _http(maddr, "/metrics")
        m = m.decode()
        assert _metric(m, "pubsub_relay_upstream_up", upstream="redis") == 1
        assert _metric(m, "pubsub_relay_upstream_reconnects_total", upstream="redis") >= rc0 + 1
        assert _metric(m, "pubsub_relay_upstream_gaps_total", upstream="redis") == gp0 + 1
        info = relay_info(rel.socket)
        assert info["redis_degraded"] == "0" and info["redis_degraded_since"] == "", info
        assert float(info["redis_gap_seconds_total"]) >= 0.3, info
        log = new_log(rel, since)
        assert len(log_lines(log, "error", "redis backplane lost: degraded mode")) == 1, log
        assert log_lines(log, "warning", "redis subscriber connection down", "reason="), log
        restored = log_lines(log, "notice", "redis backplane restored")
        assert len(restored) == 1 and re.search(r"gap_seconds=[0-9.]+", restored[0]), log
    finally:
        s.close()
