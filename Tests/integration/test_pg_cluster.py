"""The Postgres bridge on a Redis Cluster (README, "The Postgres bridge" and "Redis Cluster"):
three relays with REDIS_URL=redis-cluster://… on a real cluster of 3 masters and 3 replicas
(`redis_cluster`, cluster_fixtures.py) sharing one PostgreSQL (`pg_db`, pg_fixtures.py).

One relay leads: it holds the lease `{pubsub-relay}:pg-leader` — the namespace as a hash tag, so
the key lives on one master, the "home" one — LISTENs, and publishes each notification as an app's
PUBLISH travels on the cluster: in `sharded` mode an SPUBLISH on the master owning the relay
channel's slot (plus a classic PUBLISH when a pattern held in the fleet matches it), in `classic`
mode a PUBLISH on the home master. The relay channels here are chosen to land on three different
masters; what the leader sends is read off MONITOR on each master, what the apps get on raw
sockets (`Collector`, test_pg_bridge.py), and compared with the order a direct psycopg LISTEN saw
(PostgreSQL's commit order), per channel: across masters no order is promised.

Every process is a real one, started and stopped by its PID; every wait is bounded.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

pytest.importorskip("psycopg", reason="psycopg not installed (python3 -m pip install 'psycopg[binary]')")

from conftest import wait_until  # noqa: E402
from sentinel_fixtures import Monitor  # noqa: E402
from test_cluster import cluster_relays  # noqa: E402,F401  (fixture)
from test_operations import http_get  # noqa: E402
from test_pg_bridge import (PREFIX, QUIET, WAIT, RefListener, collectors, info, is_leader, is_standby,  # noqa: E402,F401
                            metrics_addr, notify, notify_many, pg_env, pg_part, wait_one_leader)

NAMESPACE = "pubsub-relay"                    # RELAY_NAMESPACE's default
LEASE_KEY = "{%s}:pg-leader" % NAMESPACE      # on a cluster: the namespace as a hash tag
LEADER_TTL = 2.0                              # RELAY_LEADER_TTL in the takeover test
DEFAULT_TTL_MS = 5000                         # RELAY_LEADER_TTL's default
MODES = ["sharded", "classic"]


# ---- helpers ------------------------------------------------------------------------------------

def channels_on_three_masters(cluster) -> list[tuple[str, int]]:
    """Postgres channels `a<k>`, `b<k>`, `c<k>` whose relay channels `pg:…` are served by the
    first, second and third master (by port): [(postgres channel, master port)]. The first
    letters differ so that a pattern can match exactly one of them."""
    masters = [p for _, p in cluster.masters()]
    assert len(masters) == 3, cluster.masters()
    owners = cluster.slot_map()
    out = []
    for letter, port in zip("abc", masters):
        names = ["%s%d" % (letter, k) for k in range(400)]
        slots = cluster.slots_of([(PREFIX + n).encode() for n in names])
        pick = next((n for n, s in zip(names, slots) if owners[s] == port), None)
        assert pick is not None, "no channel %s0..399 on master %d" % (letter, port)
        out.append((pick, port))
    return out


def lease_master(cluster) -> int:
    """The port of the master serving the lease key's slot (CLUSTER KEYSLOT, CLUSTER SLOTS)."""
    slot = cluster.slot_of(LEASE_KEY)
    assert slot == cluster.slot_of("{%s}" % NAMESPACE) == cluster.slot_of(NAMESPACE), "the hash tag is not the slot's key"
    return cluster.master_for_slot(slot)


def health(addr: str) -> dict:
    status, _, body = http_get(addr, "/health")
    assert status == 200, (status, body[:300])
    return json.loads(body)


def check_one_leader_everywhere(cluster, relays, maddrs, leader, ttl_ms: int):
    """INFO, /health and the lease key on the cluster all say: `leader` leads, the rest stand by."""
    for r, addr in zip(relays, maddrs):
        i = info(r)
        h = health(addr)
        pg, rd = h["upstreams"]["postgres"], h["upstreams"]["redis"]
        assert rd["topology"] == "cluster" and rd["state"] == "up", rd
        if r is leader:
            assert is_leader(i), pg_part(i)
            assert (pg["mode"], pg["listening"], pg["leader"]) == ("leader", True, True), pg
        else:
            assert is_standby(i), pg_part(i)
            assert (pg["mode"], pg["listening"], pg["leader"]) == ("standby", False, False), pg
    home = lease_master(cluster)
    holder = cluster.nodes[home].call("GET", LEASE_KEY)
    leader_id = info(leader)["redis_relay_id"]
    assert holder == leader_id.encode(), "GET %s on master %d: %r, leader's id %r" % (LEASE_KEY, home, holder, leader_id)
    pttl = cluster.nodes[home].call("PTTL", LEASE_KEY)
    assert isinstance(pttl, int) and 0 < pttl <= ttl_ms, "PTTL %s: %r (ttl %d ms)" % (LEASE_KEY, pttl, ttl_ms)
    # Every relay routes the fleet's keys to that master.
    for r in relays:
        assert info(r)["redis_cluster_home"] == "127.0.0.1:%d" % home, info(r)["redis_cluster_home"]


def per_channel(msgs) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for ch, p in msgs:
        out.setdefault(ch, []).append(p)
    return out


def pg_commands(monitors: dict, started_wall: float) -> dict[int, list[tuple[str, str]]]:
    """master port -> (command, channel) of the PUBLISH/SPUBLISHes of relay channels it ran."""
    return {p: [(l[2], l[3]) for l in m.lines
                if l[0] >= started_wall and l[2] in ("PUBLISH", "SPUBLISH") and l[3].startswith(PREFIX)]
            for p, m in monitors.items()}


# ---- 1. one leader, the lease on the home master, delivery over three masters ------------------

@pytest.mark.parametrize("mode", MODES)
def test_one_leader_lease_on_cluster_and_delivery_over_three_masters(mode, redis_cluster, cluster_relays, pg_db, collectors):
    """Three relays on the cluster: exactly one leads (INFO, /health), the lease key lives on its
    slot's master and holds the leader's id. Notifications on three channels (on three masters)
    from interleaved transactions and batches reach a SUBSCRIBE of all three on every relay, and
    a PSUBSCRIBE matching one of them on every relay, once each, in PostgreSQL's order per
    channel. MONITOR: sharded — each notification an SPUBLISH on its channel's master only, and a
    classic PUBLISH only for the channel a pattern matches; classic — a PUBLISH on the home master
    only."""
    cluster = redis_cluster
    chans = channels_on_three_masters(cluster)
    names = [n for n, _ in chans]
    maddrs = [metrics_addr() for _ in range(3)]
    relays = []
    for addr in maddrs:
        relays += cluster_relays(cluster, n=1, mode=mode, env=pg_env(pg_db.conninfo, names, RELAY_METRICS_ADDR=addr))
    leader = wait_one_leader(relays)
    check_one_leader_everywhere(cluster, relays, maddrs, leader, DEFAULT_TTL_MS)
    home = lease_master(cluster)

    relay_chans = [PREFIX + n for n in names]
    pattern = PREFIX + names[0][0] + "*"          # matches the first channel only
    subs = [collectors(r.socket, "SUBSCRIBE", *relay_chans, label="relay %d SUBSCRIBE" % i) for i, r in enumerate(relays)]
    psubs = [collectors(r.socket, "PSUBSCRIBE", pattern, label="relay %d PSUBSCRIBE %s" % (i, pattern))
             for i, r in enumerate(relays)]
    monitors = {p: Monitor(p) for _, p in cluster.masters()}
    ref = RefListener(pg_db.conninfo, *names)
    started_wall = time.time()
    sent = 0
    try:
        # Interleaved transactions, committed c, a, b; each touches every channel.
        a, b, c = pg_db.connect(), pg_db.connect(), pg_db.connect()
        try:
            for x in (a, b, c):
                x.execute("BEGIN")
            for tag, x in (("a", a), ("b", b), ("c", c), ("a", a), ("b", b)):
                for n in names:
                    notify(x, n, "%s:%s:%d" % (n, tag, sent))
                    sent += 1
            for x in (c, a, b):
                x.execute("COMMIT")
        finally:
            for x in (a, b, c):
                x.close()
        # Batches: one wake-up of the listener holds many notifications for all three masters.
        with pg_db.connect() as w:
            notify(w, names[1], "ünï 漢 😀 \r\n*1\r\n$4\r\nPING\r\n")
            sent += 1
            for k in range(10):
                w.execute("BEGIN")
                for n in names:
                    notify_many(w, n, ["%s:batch:%d:%d" % (n, k, j) for j in range(20)])
                    sent += 20
                w.execute("COMMIT")
        reference = ref.collect(sent, 10)
        assert len(reference) == sent, "the direct LISTEN got %d of %d" % (len(reference), sent)
        want = {PREFIX.encode() + ch.encode(): [p.encode() for c2, p in reference if c2 == ch] for ch in names}

        for s in subs:
            s.wait_count(sent, WAIT)
        for s in psubs:
            s.wait_count(len(want[relay_chans[0].encode()]), WAIT)
        time.sleep(QUIET)                          # anything more would be a duplicate
        for s in subs:
            assert s.error is None and not s.eof and s.other == [], (s.label, s.error, s.eof, s.other[:3])
            got = per_channel(s.msgs)
            for ch, payloads in want.items():
                assert got.get(ch, []) == payloads, "%s, %s: %d received, %d sent; first differences %r" % (
                    s.label, ch, len(got.get(ch, [])), len(payloads),
                    [(x, y) for x, y in zip(got.get(ch, []), payloads) if x != y][:3])
            assert set(got) == set(want), (s.label, set(got))
        for s in psubs:
            assert s.error is None and not s.eof and s.other == [], (s.label, s.error, s.eof, s.other[:3])
            assert per_channel(s.msgs) == {relay_chans[0].encode(): want[relay_chans[0].encode()]}, (
                s.label, {k: len(v) for k, v in per_channel(s.msgs).items()})

        li = info(leader)
        assert (li["postgres_notifications_received"], li["postgres_notifications_published"],
                li["postgres_notifications_lost_upstream"]) == (str(sent), str(sent), "0"), pg_part(li)
        for r in relays:
            if r is not leader:
                i = info(r)
                assert (i["postgres_notifications_received"], i["postgres_listening"]) == ("0", "0"), pg_part(i)
        check_one_leader_everywhere(cluster, relays, maddrs, leader, DEFAULT_TTL_MS)

        # What the leader sent, master by master.
        per_chan = {PREFIX + n: len(want[(PREFIX + n).encode()]) for n in names}
        expected: dict[int, dict[tuple[str, str], int]] = {p: {} for p in monitors}
        for (n, port), rc in zip(chans, relay_chans):
            if mode == "sharded":
                expected[port][("SPUBLISH", rc)] = per_chan[rc]
                if rc == relay_chans[0]:                       # the one a pattern matches
                    expected[port][("PUBLISH", rc)] = per_chan[rc]
            else:
                expected[home][("PUBLISH", rc)] = per_chan[rc]

        def counted():
            cmds = pg_commands(monitors, started_wall)
            return {p: {k: v.count(k) for k in set(v)} for p, v in cmds.items()}
        wait_until(lambda: counted() == expected, 3)
        assert counted() == expected, "MONITOR on the masters: %r, expected %r" % (counted(), expected)
    finally:
        ref.close()
        for m in monitors.values():
            m.close()


# ---- 2. the leader killed: another takes the lease, notifications flow again --------------------

@pytest.mark.parametrize("mode", MODES)
def test_leader_kill9_on_cluster_another_takes_the_lease(mode, redis_cluster, cluster_relays, pg_db, collectors):
    """RELAY_LEADER_TTL=2s. A writer NOTIFYs the three channels in turn every 10 ms; the leader is
    SIGKILLed: a survivor leads within TTL + 1 s (README), the lease key on the cluster then holds
    its id and the other survivor stands by. On each survivor, a SUBSCRIBE of the three channels
    and a PSUBSCRIBE of one get every channel's notifications in order, none twice; only those
    sent from just before the kill to the takeover may be missing, as one run per channel; and
    everything sent after the takeover arrives."""
    cluster = redis_cluster
    names = [n for n, _ in channels_on_three_masters(cluster)]
    relays = cluster_relays(cluster, n=3, mode=mode, env=pg_env(pg_db.conninfo, names, RELAY_LEADER_TTL="2s"))
    leader = wait_one_leader(relays)
    survivors = [r for r in relays if r is not leader]
    relay_chans = [PREFIX + n for n in names]
    pattern = PREFIX + names[0][0] + "*"
    subs = {id(r): collectors(r.socket, "SUBSCRIBE", *relay_chans, label="relay pid %d SUBSCRIBE" % r.pid) for r in survivors}
    psubs = {id(r): collectors(r.socket, "PSUBSCRIBE", pattern, label="relay pid %d PSUBSCRIBE" % r.pid) for r in survivors}

    sent: list[tuple[str, int, float, float]] = []     # (channel, index, before, after the commit)
    stop = threading.Event()
    errors: list = []

    def write():
        try:
            with pg_db.connect() as w:
                i = 0
                end = time.monotonic() + 10
                while not stop.is_set() and time.monotonic() < end:
                    n = names[i % 3]
                    tb = time.monotonic()
                    notify(w, n, "%s:%d" % (n, i))
                    sent.append((n, i, tb, time.monotonic()))
                    i += 1
                    time.sleep(0.01)
        except Exception as e:   # reported below
            errors.append(repr(e))

    t = threading.Thread(target=write, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        t_kill = time.monotonic()
        os.kill(leader.pid, signal.SIGKILL)
        leader.proc.wait(5)
        new = None
        while new is None and time.monotonic() < t_kill + LEADER_TTL + 3:
            for r in survivors:
                try:
                    if is_leader(info(r)):
                        new = r
                        break
                except (OSError, AssertionError):
                    pass
            if new is None:
                time.sleep(0.02)
        t_lead = time.monotonic()
        assert new is not None, "no survivor leads %.1f s after the kill: %r" % (
            t_lead - t_kill, [pg_part(info(r)) for r in survivors])
        time.sleep(1.0)                                  # keep writing after the takeover
    finally:
        stop.set()
        t.join(5)
    assert errors == [], errors
    took = t_lead - t_kill
    print("\n%s: leader pid %d killed; pid %d leads after %.2f s (bound %.1f s)" % (mode, leader.pid, new.pid, took, LEADER_TTL + 1))
    assert took <= LEADER_TTL + 1, "takeover took %.2f s, more than TTL + 1 s" % took
    other = next(r for r in survivors if r is not new)
    assert is_standby(info(other)), pg_part(info(other))
    home = lease_master(cluster)
    assert cluster.nodes[home].call("GET", LEASE_KEY) == info(new)["redis_relay_id"].encode()

    window = (t_kill - 0.1, t_lead)
    last = sent[-1]
    for r in survivors:
        for s, only in ((subs[id(r)], None), (psubs[id(r)], names[0])):
            last_mine = next(x for x in reversed(sent) if only is None or x[0] == only)
            want_last = ("%s:%d" % (last_mine[0], last_mine[1])).encode()
            wait_until(lambda: want_last in s.payloads()[-5:], WAIT, 0.02)
            time.sleep(QUIET)
            assert s.error is None and not s.eof and s.other == [], (s.label, s.error, s.eof, s.other[:3])
            got = per_channel(s.msgs)
            lost_total = 0
            for n in names if only is None else [only]:
                idx = [int(p.split(b":")[1]) for p in got.get((PREFIX + n).encode(), [])]
                assert all(p.startswith(n.encode() + b":") for p in got.get((PREFIX + n).encode(), [])), (s.label, n)
                assert idx == sorted(set(idx)), "%s, %s: duplicates or reordering: %r" % (s.label, n, idx)
                mine = [(i, tb, ta) for ch, i, tb, ta in sent if ch == n]
                missing = sorted({i for i, _, _ in mine} - set(idx))
                in_window = {i for i, tb, ta in mine if ta >= window[0] and tb <= window[1]}
                outside = [i for i in missing if i not in in_window]
                assert outside == [], "%s, %s: lost notifications sent outside the takeover window: %r" % (s.label, n, outside)
                run = [i for i, _, _ in mine if missing and missing[0] <= i <= missing[-1]]
                assert missing == run, "%s, %s: the lost ones are not one run: %r" % (s.label, n, missing)
                lost_total += len(missing)
            assert set(got) <= {(PREFIX + n).encode() for n in names}, (s.label, set(got))
            print("%s: %d received, %d lost (sent in the %.2f s window)" % (s.label, s.count(), lost_total, window[1] - window[0]))
    assert last[3] > t_lead + 0.5, "the writer stopped before the takeover was over"
