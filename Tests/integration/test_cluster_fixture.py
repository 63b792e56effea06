"""Self-tests of the Redis Cluster harness (cluster_fixtures.py), without the relay: the cluster
forms and every node agrees on the slots; channels can be spread over the masters; a reshard
moves exactly the slots asked for and says when each left its source; a manual failover and a
kill -9 of a master promote the replica; a killed node restarts as a replica; every PID is gone
after stop()."""
from __future__ import annotations

import os
import statistics
import time

from cluster_fixtures import SLOTS, RedisCluster, node_call, slot_owners


def test_cluster_forms_with_three_masters_and_a_replica_each(redis_cluster):
    c = redis_cluster
    print("\ncluster created in %.2f s (cluster-node-timeout %d ms)" % (c.creation_seconds, c.node_timeout_ms))
    masters, replicas = c.masters(), c.replicas()
    assert len(masters) == 3 and len(replicas) == 3, (masters, replicas)
    assert {m for _, _, m in replicas} == {i for i, _ in masters}, "each master has one replica"
    maps = [slot_owners(p) for p in c.nodes]
    assert all(m == maps[0] for m in maps) and len(maps[0]) == SLOTS
    assert set(maps[0].values()) == {p for _, p in masters}
    for port in c.nodes:
        assert node_call(port, "CONFIG", "GET", "cluster-node-timeout") == [b"cluster-node-timeout", str(c.node_timeout_ms).encode()]
        assert node_call(port, "CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
    assert c.creation_seconds < 10, "creation took %.1f s" % c.creation_seconds
    assert c.url() == "redis-cluster://" + c.seeds and c.seeds.count(",") == 1


def test_slot_helpers_agree_with_the_nodes(redis_cluster):
    c = redis_cluster
    # CLUSTER KEYSLOT's known values (CRC16 mod 16384; a hash tag hashes only what is in braces).
    assert c.slot_of("foo") == 12182 and c.slot_of("{foo}bar") == 12182
    spread = c.channels_on_each_master(5, prefix="spread")
    assert set(spread) == {p for _, p in c.masters()} and all(len(v) == 5 for v in spread.values())
    for port, names in spread.items():
        for name in names:
            assert c.master_for_slot(c.slot_of(name)) == port
            # The owner accepts SPUBLISH for it; another master redirects.
            assert isinstance(node_call(port, "SPUBLISH", name, "x"), int)
            other = next(p for _, p in c.masters() if p != port)
            reply = node_call(other, "SPUBLISH", name, "x")
            assert isinstance(reply, tuple) and reply[1].startswith("MOVED %d 127.0.0.1:%d" % (c.slot_of(name), port)), reply
    assert c.cpu_seconds_total() > 0


def test_reshard_moves_the_slots_asked_for(cluster_factory):
    c = cluster_factory()
    (src_id, src), (dst_id, dst) = c.masters()[0], c.masters()[1]
    before = c.slot_map()
    r = c.reshard(src_id, dst_id, 300)
    after = c.slot_map()
    moved = {s for s in before if before[s] != after[s]}
    assert len(moved) == 300 and all(before[s] == src and after[s] == dst for s in moved)
    assert sum(m.last - m.first + 1 for m in r.moves) == 300
    assert all(r.started <= t <= r.ended + 5 for t in r.slot_finished.values())
    # Slots leave the source one after another: the poller sees them spread over the run.
    assert max(r.slot_finished.values()) > min(r.slot_finished.values())
    print("\nreshard of 300 slots: %.2f s; slot-departure resolution median %.1f ms, max %.1f ms; moves %r"
          % (r.ended - r.started, 1000 * statistics.median(r.poll_gaps), 1000 * max(r.poll_gaps), r.moves))


def test_failover_then_kill_promotes_and_restart_rejoins(cluster_factory):
    c = cluster_factory(node_timeout_ms=1000)
    master = c.masters()[0][1]
    replica = c.replica_of(master)
    asked = time.monotonic()
    took_over = c.failover(replica)
    assert c.nodes[replica].role() == "master" and c.nodes[master].role() == "slave"
    assert replica in {p for _, p in c.masters()} and master not in {p for _, p in c.masters()}
    # Now kill -9 the new master: its replica (the old master) is promoted back.
    promoted, killed, at = c.kill_master(replica)
    assert promoted == master and c.nodes[master].role() == "master"
    assert not c.nodes[replica].running()
    print("\nCLUSTER FAILOVER: master after %.3f s; kill -9 -> promotion %.3f s (cluster-node-timeout %d ms)"
          % (took_over - asked, at - killed, c.node_timeout_ms))
    assert at - killed < 10 * c.node_timeout_ms / 1000 + 5
    c.restart(replica)
    assert c.nodes[replica].role() == "slave"
    assert len(c.masters()) == 3 and len(c.replicas()) == 3


def test_stop_kills_every_pid(redis_cluster_tools):
    c = RedisCluster(*redis_cluster_tools)
    pids = [n.pid for n in c.nodes.values()]
    c.stop()
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z", pid


def test_traffic_engine_on_one_redis_counts_every_loss_repeat_and_reorder(redis_factory):
    """test_cluster.py's Traffic, pointed three times at one redis-server (the reference): every
    message of every subscription arrives once, in order, and PUBLISH counts match; then a
    removed, a repeated and a swapped receipt are each found by check(), and a loss inside a
    window is counted apart."""
    from test_cluster import Traffic
    r = redis_factory()
    channels = [b"eng:%d" % i for i in range(200)] + [b"pt.%d.x" % k for k in range(20)]
    patterns = [b"pt.%d.*" % k for k in range(19)] + [b"pt.1?.*"]
    t = Traffic()
    try:
        for k in range(3):
            t.add_subscriber(r, "s%d" % k, channels=channels)
        t.add_subscriber(r, "pa", patterns=patterns)
        for k in range(3):
            t.add_publisher(r, "p%d" % k, channels)
        t.run(until=lambda: t.rounds >= 20, max_seconds=30)
        result = t.check()
        print("\nengine on one redis-server: %d published, %d received in %.2f s; %r" % (
            t.total_sent(), t.total_received(), t.elapsed, result))
        assert t.total_sent() == 20 * 3 * len(channels) and t.errors == [] and t.count_mismatches == 0
        assert result == {"lost_in_windows": 0, "lost": 0, "duplicated": 0, "reordered": 0, "unexpected": 0, "examples": []}
        # pt.10-pt.18 match two patterns, pt.0-pt.9 and pt.19 one.
        assert t.counts == {3: 3 * 20 * 200, 4: 3 * 20 * 11, 5: 3 * 20 * 9}, t.counts
        key = ("s1", b"", b"eng:7", "p2")
        got = t.received[key]
        t.received[key] = got[:5] + got[6:]                      # one lost
        assert t.check()["lost"] == 1
        t.received[key] = got[:5] + got[6:] + [got[5]]           # late: reordered
        assert t.check()["reordered"] == 1 and t.check()["lost"] == 0
        t.received[key] = got + [got[3]]                         # repeated
        assert t.check()["duplicated"] == 1
        t.received[key] = got[:5] + got[6:]
        sent_at = dict((s, ts) for ts, s in t.sent[("p2", b"eng:7")])[got[5][1]]
        windowed = t.check({b"eng:7": [(sent_at - 0.001, sent_at + 0.001)]})
        assert windowed["lost"] == 0 and windowed["lost_in_windows"] == 1
        assert t.recovery(b"eng:7", sent_at - 1, sent_at - 2)   # measured for every subscription
    finally:
        t.close()
