"""The backplane on Redis Cluster: three relays joined with REDIS_URL=redis-cluster://<two seed
nodes> to a real cluster of 3 masters and 3 replicas (cluster_fixtures.py), apps on each relay
speaking plain SUBSCRIBE/PSUBSCRIBE/PUBLISH (and SSUBSCRIBE/SPUBLISH) as to one Redis.

In `sharded` mode (RELAY_REDIS_CLUSTER_PUBSUB, the default) an app channel travels as
SSUBSCRIBE/SPUBLISH on the master that owns its slot, patterns as classic PSUBSCRIBE on one node,
and a channel matching a pattern held in the fleet is also sent as a classic PUBLISH; in
`classic` mode everything is classic. What the relays send is checked on the nodes themselves
(MONITOR, PUBSUB SHARDCHANNELS, CLIENT LIST), what the apps get on raw sockets.

Traffic is driven by one select loop (`Traffic`): sequenced, pipelined publishers on every relay
and subscribers on every relay, so every lost, repeated or reordered message of every
subscription is counted. Reshards (`redis-cli --cluster reshard`), `CLUSTER FAILOVER`s and a
kill -9 of a master run in a thread meanwhile; each moved or failed-over channel must flow again
within FLOW_BOUND of its slot's move (or its master's takeover), and no message may be lost
outside those windows. The measured numbers are printed (`pytest -s`).

Every process is started and stopped by PID; every loop is bounded in count and time.
"""
from __future__ import annotations

import fnmatch
import os
import re
import select
import socket
import statistics
import threading
import time

import pytest

from cluster_fixtures import NodeConn, RedisCluster, node_call
from conftest import cpu_seconds, relay_info
from fleetutil import sub
from resputil import Conn, Incomplete, cmd, frame_end, parse1
from sentinel_fixtures import Monitor

# ---- the relay's cluster interface, in one place (names may still change slightly) ------------

PUBSUB_MODE_ENV = "RELAY_REDIS_CLUSTER_PUBSUB"
INFO_TOPOLOGY = "redis_topology"            # "cluster"
INFO_STATE = "redis_state"                  # "up" when ready
INFO_NODES = "redis_cluster_nodes"          # nodes known from the slot map
INFO_MASTERS_CONNECTED = "redis_cluster_masters_connected"
INFO_SLOT_MAP_VERSION = "redis_cluster_slot_map_version"
INFO_REFRESHES = "redis_cluster_refreshes"
INFO_REDIRECTS = "redis_cluster_redirects"
INFO_RESUBSCRIPTIONS = "redis_cluster_resubscriptions"
INFO_GAPS = "redis_gaps"
INFO_RELAY_ID = "redis_relay_id"
CLUSTER_FIELDS = (INFO_NODES, INFO_MASTERS_CONNECTED, INFO_SLOT_MAP_VERSION, INFO_REFRESHES, INFO_REDIRECTS,
                  INFO_RESUBSCRIPTIONS, INFO_GAPS)
# The relay names its upstream connections `pubsub-relay:<relay id>:<role>` (CLIENT SETNAME in
# its handshake): the subscriber and the publisher are the data connections (at most one each
# per master); any other role is a control connection.
CLIENT_NAME = "pubsub-relay:%s:"
DATA_ROLES = ("sub", "pub")


def connection_role(name_after_prefix: str) -> str:
    """`sub` of `sub` or of `sub:<anything>` (a per-node suffix the relay might add)."""
    return name_after_prefix.split(":", 1)[0]

FLOW_BOUND = 1.0            # s: a moved or failed-over channel flows again within this
WINDOW_BEFORE = 0.25        # s: a loss this long before a move (a message in flight) counts in its window
STEADY_MESSAGES = int(os.environ.get("CLUSTER_STEADY_MESSAGES", "100000"))
RACE_ITERATIONS = int(os.environ.get("CLUSTER_RACE_ITERATIONS", "1000"))
RESHARD_SLOTS = 2000


# ---- relays on the cluster ------------------------------------------------------------------

@pytest.fixture
def cluster_relays(relay_factory):
    """start(cluster, n=3, mode=None, env=None): `n` relays on `cluster` (REDIS_URL with two seed
    nodes; `mode` sets RELAY_REDIS_CLUSTER_PUBSUB), returned once each says it is up on the
    cluster with every master connected. A relay that cannot start with the cluster URL fails
    the test with its stderr."""

    def start(cluster: RedisCluster, n: int = 3, mode: str | None = None, env: dict | None = None, timeout: float = 15.0):
        e = {"REDIS_URL": cluster.url(), "RELAY_REDIS_BACKOFF_MAX": "500ms"}
        if mode:
            e[PUBSUB_MODE_ENV] = mode
        e.update(env or {})
        relays = []
        for _ in range(n):
            try:
                relays.append(relay_factory(e))
            except RuntimeError as err:
                pytest.fail("relay with REDIS_URL=%s %s did not start:\n%s" % (cluster.url(), mode or "", err))
        for r in relays:
            wait_cluster_up(r, len(cluster.masters()), timeout)
        # A relay that has just subscribed the fleet channel sends every PUBLISH a classic copy
        # for a moment, until the other relays' patterns are in (README, "Redis Cluster"): the
        # tests that check what travels classic start after that.
        time.sleep(0.4)
        return relays

    return start


def wait_cluster_up(relay, masters: int, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    info: dict = {}
    while True:
        try:
            info = relay_info(relay.socket)
        except (OSError, AssertionError):
            info = {}
        if (info.get(INFO_TOPOLOGY) == "cluster" and info.get(INFO_STATE) == "up"
                and info.get(INFO_MASTERS_CONNECTED) == str(masters)):
            return info
        if time.monotonic() >= deadline:
            pytest.fail("relay not up on the cluster within %.0f s (want %s:cluster, %s:up, %s:%d); INFO upstreams %r\n"
                        "relay stderr tail:\n%s" % (timeout, INFO_TOPOLOGY, INFO_STATE, INFO_MASTERS_CONNECTED, masters,
                                                    info, "\n".join(relay.stderr().splitlines()[-20:])))
        time.sleep(0.05)


def cluster_info(relay) -> dict:
    info = relay_info(relay.socket)
    return {k: info.get(k) for k in (INFO_TOPOLOGY, INFO_STATE) + CLUSTER_FIELDS}


def tcp_connections(pid: int) -> dict[int, int]:
    """local port -> remote port of the established TCP connections `pid` holds (its socket
    inodes in /proc/<pid>/fd matched to /proc/<pid>/net/tcp)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = {}
    with open("/proc/%d/net/tcp" % pid) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:   # 01: ESTABLISHED
                out[int(fields[1].rsplit(":", 1)[1], 16)] = int(fields[2].rsplit(":", 1)[1], 16)
    return out


def client_list(port: int) -> list[dict]:
    reply = node_call(port, "CLIENT", "LIST")
    out = []
    for line in (reply or b"").decode("utf-8", "replace").splitlines():
        out.append(dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv))
    return out


def upstream_connections(relay, cluster: RedisCluster) -> dict[int, list[str]]:
    """node port -> the client names (role suffixes; '' when unnamed) of this relay's
    connections to that node, as the node's CLIENT LIST shows them. A connection is the relay's
    when its name carries the relay's id, or when its address is one of the relay's own sockets
    (/proc), so unnamed connections are counted too."""
    rid = relay_info(relay.socket)[INFO_RELAY_ID]
    prefix = CLIENT_NAME % rid
    mine = tcp_connections(relay.pid)
    out: dict[int, list[str]] = {}
    for port in cluster.nodes:
        if not cluster.nodes[port].running():
            continue
        roles = []
        for c in client_list(port):
            lport = int(c.get("addr", ":0").rsplit(":", 1)[1])
            name = c.get("name", "")
            if name.startswith(prefix):
                roles.append(connection_role(name[len(prefix):]))
            elif mine.get(lport) == port:
                roles.append(name or "")
        out[port] = roles
    return out


# ---- the traffic engine ---------------------------------------------------------------------

class AppConn:
    """A raw app connection to a relay, non-blocking inside Traffic."""

    def __init__(self, relay, label: str):
        self.label = label
        self.relay = relay
        self.conn = Conn(relay.socket, timeout=10)
        self.sock = self.conn.sock
        self.out = b""
        self.inbuf = b""
        self.eof = False


class Traffic:
    """Sequenced publishers and checking subscribers on the relays, driven by one select loop.

    Each publisher sends, per round, one PUBLISH (or SPUBLISH) of `<publisher>:<seq>` to every
    channel of its list, pipelined, and reads every reply; `seq` counts rounds, so per publisher
    and channel the payloads are consecutive. Each subscriber records, per subscription
    (connection, pattern or None, channel) and publisher, what arrived and when."""

    def __init__(self, publish_command: bytes = b"PUBLISH", expect_kind: bytes = b"message"):
        self.publishers: list[tuple[AppConn, list[bytes]]] = []
        self.subscribers: list[AppConn] = []
        self.exact: dict[AppConn, set[bytes]] = {}
        self.patterns: dict[AppConn, list[bytes]] = {}
        self.publish_command = publish_command
        self.expect_kind = expect_kind
        # (publisher label, channel) -> list of (send time, seq) with a non-error reply
        self.sent: dict[tuple[str, bytes], list[tuple[float, int]]] = {}
        self.errors: list[str] = []
        self.counts: dict[int, int] = {}       # PUBLISH reply -> how many times
        self.count_mismatches = 0
        # (subscriber label, pattern or b"", channel, publisher) -> list of (receive time, seq)
        self.received: dict[tuple[str, bytes, bytes, str], list[tuple[float, int]]] = {}
        self.bad_frames: list = []
        self.rounds = 0
        self.round_times: list[float] = []
        self._pending: dict[AppConn, list[tuple[bytes, int, float]]] = {}
        self._round_open = False
        kind = re.escape(expect_kind)
        # Message frames as the tests publish them (names and payloads without CR or LF).
        self._frame = re.compile(
            rb"\*3\r\n\$%d\r\n%s\r\n\$\d+\r\n([^\r]*)\r\n\$\d+\r\n([^:\r]*):(\d+)\r\n"
            rb"|\*4\r\n\$8\r\npmessage\r\n\$\d+\r\n([^\r]*)\r\n\$\d+\r\n([^\r]*)\r\n\$\d+\r\n([^:\r]*):(\d+)\r\n"
            % (len(expect_kind), kind))
        self._prefix: dict[bytes, bytes] = {}

    # setup
    def add_subscriber(self, relay, label: str, channels: list[bytes] = (), patterns: list[bytes] = ()) -> AppConn:
        c = AppConn(relay, label)
        for i in range(0, len(channels), 250):
            sub(relay.socket, "SSUBSCRIBE" if self.expect_kind == b"smessage" else "SUBSCRIBE", *channels[i:i + 250], conn=c.conn)
        for i in range(0, len(patterns), 250):
            sub(relay.socket, "PSUBSCRIBE", *patterns[i:i + 250], conn=c.conn)
        c.inbuf = c.conn.buf
        c.sock.setblocking(False)
        self.subscribers.append(c)
        self.exact[c] = set(channels)
        self.patterns[c] = list(patterns)
        return c

    def add_publisher(self, relay, label: str, channels: list[bytes]) -> AppConn:
        c = AppConn(relay, label)
        c.sock.setblocking(False)
        self.publishers.append((c, list(channels)))
        for ch in channels:
            self.sent[(label, ch)] = []
        return c

    def receivers(self, channel: bytes) -> list[tuple[str, bytes]]:
        """(subscriber label, pattern or b"") of every subscription that must get `channel`."""
        out = []
        for c in self.subscribers:
            if channel in self.exact[c]:
                out.append((c.label, b""))
            for p in self.patterns[c]:
                if fnmatch.fnmatchcase(channel.decode("latin-1"), p.decode("latin-1")):
                    out.append((c.label, p))
        return out

    def prepare_counts(self):
        self._expected_count = {ch: len(self.receivers(ch)) for _, chans in self.publishers for ch in chans}

    # the loop
    def _drain_subscriber(self, c: AppConn, now: float):
        try:
            data = c.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            c.eof = True
            return
        buf = c.inbuf + data
        rec = self.received
        label = c.label
        pos = 0
        for m in self._frame.finditer(buf):
            if m.start() != pos:
                break
            pos = m.end()
            if m.group(1) is not None:
                pattern, channel, pub, seq = b"", m.group(1), m.group(2), m.group(3)
            else:
                pattern, channel, pub, seq = m.group(4), m.group(5), m.group(6), m.group(7)
            key = (label, pattern, channel, pub.decode())
            lst = rec.get(key)
            if lst is None:
                lst = rec[key] = []
            lst.append((now, int(seq)))
        rest = buf[pos:]
        # What is left must be the start of a frame of ours; anything else is recorded as bad.
        while rest:
            try:
                end = frame_end(rest, 0)
            except Incomplete:
                break
            except Exception as e:
                self.bad_frames.append((label, "unparsable %r (%s)" % (rest[:100], e)))
                rest = b""
                break
            if self._frame.match(rest[:end]):
                break          # ours, complete: parsed on the next read
            self.bad_frames.append((label, parse1(rest[:end])))
            rest = rest[end:]
        c.inbuf = rest

    def _publisher_lost(self, c: AppConn, why: str):
        c.eof = True
        c.out = b""
        self._pending[c] = []
        self.errors.append("%s: %s" % (c.label, why))

    def _drain_publisher(self, c: AppConn, now: float):
        try:
            data = c.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._publisher_lost(c, "connection closed by the relay")
            return
        c.inbuf += data
        pending = self._pending[c]
        pos = 0
        buf = c.inbuf
        done = 0
        while done < len(pending):
            try:
                end = frame_end(buf, pos)
            except Incomplete:
                break
            frame = buf[pos:end]
            pos = end
            channel, seq, t = pending[done]
            done += 1
            if frame[:1] == b":":
                n = int(frame[1:-2])
                self.counts[n] = self.counts.get(n, 0) + 1
                if n != self._expected_count.get(channel, n):
                    self.count_mismatches += 1
                self.sent[(c.label, channel)].append((t, seq))
            else:
                self.errors.append("%s: %s %r answered %r" % (c.label, self.publish_command.decode(), channel, frame[:200]))
        del pending[:done]
        c.inbuf = buf[pos:]

    def _command_prefix(self, channel: bytes) -> bytes:
        p = self._prefix.get(channel)
        if p is None:
            p = self._prefix[channel] = cmd(self.publish_command, channel, b"")[:-6]   # without the empty payload
        return p

    def run(self, until, period: float = 0.0, max_seconds: float = 120.0, tail: float = 0.5):
        """Rounds until `until()` is true (checked between rounds), at most one round per
        `period` seconds; then `tail` seconds more of reading. Fails past `max_seconds`."""
        if not hasattr(self, "_expected_count"):
            self.prepare_counts()
        started = time.monotonic()
        hard_deadline = started + max_seconds
        subs = {c.sock: c for c in self.subscribers}
        pubs = {c.sock: c for c, _ in self.publishers}
        for c, _ in self.publishers:
            self._pending.setdefault(c, [])
        stop_at = None
        next_round = started
        while True:
            now = time.monotonic()
            assert now < hard_deadline, "traffic still running after %.0f s (%d rounds)" % (max_seconds, self.rounds)
            idle = all(not p for p in self._pending.values()) and all(not c.out for c, _ in self.publishers)
            if idle and self._round_open:
                self._round_open = False
                self.round_times.append(now - self._round_started)
            if idle and stop_at is None:
                if until():
                    stop_at = now + tail
                elif now >= next_round:
                    self.rounds += 1
                    self._round_open = True
                    self._round_started = now
                    next_round = now + period
                    for c, chans in self.publishers:
                        if c.eof:
                            continue
                        payload = c.label.encode() + b":%d" % self.rounds
                        bulk = b"$%d\r\n%s\r\n" % (len(payload), payload)
                        c.out = b"".join(self._command_prefix(ch) + bulk for ch in chans)
                        self._pending[c] = [(ch, self.rounds, now) for ch in chans]
            if stop_at is not None and now >= stop_at:
                break
            wlist = [c.sock for c, _ in self.publishers if c.out and not c.eof]
            rlist = [s for s, c in subs.items() if not c.eof] + [s for s, c in pubs.items() if not c.eof and self._pending[c]]
            wait = 0.05
            if idle and stop_at is None:
                wait = max(0.0, min(wait, next_round - now))
            r, w, _ = select.select(rlist, wlist, [], wait)
            now = time.monotonic()
            for s in w:
                c = pubs[s]
                try:
                    n = s.send(c.out[:1 << 18])
                    c.out = c.out[n:]
                except BlockingIOError:
                    pass
                except OSError as e:
                    self._publisher_lost(c, "send failed: %s" % e)
            for s in r:
                if s in subs:
                    self._drain_subscriber(subs[s], now)
                else:
                    self._drain_publisher(pubs[s], now)
        self.elapsed = time.monotonic() - started

    # results
    def total_sent(self) -> int:
        return sum(len(v) for v in self.sent.values())

    def total_received(self) -> int:
        return sum(len(v) for v in self.received.values())

    def check(self, windows=None):
        """Per subscription and publisher: lost, duplicated and reordered messages. `windows`:
        channel -> list of (start, end) send-time windows in which losses are allowed (counted
        apart). Returns a dict of the counts and examples."""
        lost_in, lost_out, dups, reordered = 0, 0, 0, 0
        examples = []
        for (pub, channel), sent in self.sent.items():
            win = (windows or {}).get(channel, [])
            for label, pattern in self.receivers(channel):
                got = self.received.get((label, pattern, channel, pub), [])
                seqs = [s for _, s in got]
                seen = set()
                last = 0
                for s in seqs:
                    if s in seen:
                        dups += 1
                    elif s < last:
                        reordered += 1
                    seen.add(s)
                    last = max(last, s)
                for t, s in sent:
                    if s not in seen:
                        if any(a <= t <= b for a, b in win):
                            lost_in += 1
                        else:
                            lost_out += 1
                            if len(examples) < 5:
                                examples.append((label, pattern, channel, pub, s))
        extra = 0
        for (label, pattern, channel, pub), got in self.received.items():
            if (label, pattern) not in self.receivers(channel) or (pub, channel) not in self.sent:
                extra += len(got)
        return {"lost_in_windows": lost_in, "lost": lost_out, "duplicated": dups, "reordered": reordered,
                "unexpected": extra, "examples": examples}

    def recovery(self, channel: bytes, at: float, window_start: float) -> list[float]:
        """For each subscription of `channel`: seconds from `at` until it receives again, for good,
        messages sent after `at` (after the last one it lost from `window_start` on, if later)."""
        out = []
        for label, pattern in self.receivers(channel):
            for (pub, ch), sent in self.sent.items():
                if ch != channel:
                    continue
                got = {s: t for t, s in self.received.get((label, pattern, channel, pub), [])}
                lost = [t for t, s in sent if t >= window_start and s not in got]
                start = max([at] + lost)
                after = [got[s] for t, s in sent if t > start and s in got]
                out.append((min(after) - at) if after else float("inf"))
        return out

    def close(self):
        for c in self.subscribers + [c for c, _ in self.publishers]:
            c.conn.close()


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


# ---- discovery and connections --------------------------------------------------------------

def test_discovery_and_at_most_two_connections_per_master(redis_cluster, cluster_relays):
    """Three relays on two seed nodes: INFO shows the whole cluster; once apps use channels on
    every master, each relay holds at most one subscriber and one publisher connection per
    master (counted on the nodes, CLIENT LIST), control connections reported apart."""
    cluster = redis_cluster
    relays = cluster_relays(cluster)
    for r in relays:
        info = cluster_info(r)
        print("\n%r" % info)
        assert info[INFO_TOPOLOGY] == "cluster" and info[INFO_STATE] == "up", info
        assert info[INFO_NODES] == str(len(cluster.nodes)), info
        assert info[INFO_MASTERS_CONNECTED] == "3", info
        assert int(info[INFO_SLOT_MAP_VERSION]) >= 1, info
    spread = cluster.channels_on_each_master(3, prefix="disc")
    channels = [ch for names in spread.values() for ch in names]
    keep = [sub(r.socket, "SUBSCRIBE", *channels) for r in relays]
    keep.append(sub(relays[0].socket, "PSUBSCRIBE", "disc.*"))
    try:
        for r in relays:
            with Conn(r.socket, timeout=5) as c:
                for ch in channels:
                    assert c.call("PUBLISH", ch, "x") == 3
        masters = {p for _, p in cluster.masters()}
        for k, r in enumerate(relays):
            conns = upstream_connections(r, cluster)
            data = {p: [x for x in roles if x in DATA_ROLES] for p, roles in conns.items()}
            control = {p: [x for x in roles if x not in DATA_ROLES] for p, roles in conns.items() if any(x not in DATA_ROLES for x in roles)}
            print("relay %d: data connections per master %r; to replicas %r; control connections %r"
                  % (k, {p: data[p] for p in sorted(masters)}, {p: data[p] for p in conns if p not in masters}, control))
            for p in masters:
                assert len(data[p]) <= 2 and data[p].count("sub") <= 1 and data[p].count("pub") <= 1, (
                    "relay %d holds %r to master %d (at most one subscriber and one publisher)" % (k, conns[p], p))
                # Sharded: every master carries some of the subscribed channels.
                assert "sub" in data[p], "relay %d has no subscriber connection to master %d: %r" % (k, p, conns)
    finally:
        for c in keep:
            c.close()


# ---- delivery across relays -----------------------------------------------------------------

def node_pubsub(cluster: RedisCluster, port: int, what: str) -> set[bytes]:
    reply = node_call(port, "PUBSUB", what)
    return set(reply or [])


@pytest.mark.parametrize("mode", ["sharded", "classic"])
def test_channels_on_every_master_cross_relays_and_count_as_on_one_redis(redis_cluster, cluster_relays, mode):
    """SUBSCRIBE on relays A (two clients) and C, PUBLISH on relay B, for channels owned by every
    master: each client gets one `message` frame, PUBLISH answers 3 (the subscribing clients of
    the fleet). The nodes show the relay's subscriptions: in sharded mode as shard channels on
    the owning master and nowhere as classic channels; in classic mode the reverse."""
    cluster = redis_cluster
    a, b, c = cluster_relays(cluster, mode=mode)
    spread = cluster.channels_on_each_master(4, prefix="x%s" % mode)
    channels = [ch for names in spread.values() for ch in names]
    subs = [sub(a.socket, "SUBSCRIBE", *channels), sub(a.socket, "SUBSCRIBE", *channels), sub(c.socket, "SUBSCRIBE", *channels)]
    try:
        with Conn(b.socket, timeout=5) as p:
            for ch in channels:
                assert p.call("PUBLISH", ch, b"to:" + ch) == 3, ch
        for s in subs:
            frames, status = s.read_frames(len(channels), 5)
            got = [parse1(f) for f in frames]
            assert got == [[b"message", ch, b"to:" + ch] for ch in channels], (status, got[:5])
            assert s.read_quiet(0.1) == b""
        shard = {p: node_pubsub(cluster, p, "SHARDCHANNELS") for p in cluster.nodes}
        classic = {p: node_pubsub(cluster, p, "CHANNELS") for p in cluster.nodes}
        for owner, names in spread.items():
            for ch in names:
                if mode == "sharded":
                    assert ch in shard[owner], "%r not a shard channel on its master %d" % (ch, owner)
                    assert all(ch not in v for v in classic.values()), "%r subscribed classic in sharded mode" % ch
                else:
                    assert any(ch in v for v in classic.values()), "%r not subscribed classic on any node" % ch
                    assert all(ch not in v for v in shard.values()), "%r a shard channel in classic mode" % ch
    finally:
        for s in subs:
            s.close()


@pytest.mark.parametrize("mode", ["sharded", "classic"])
def test_fleet_wide_pubsub_questions_on_a_cluster(redis_cluster, cluster_relays, mode):
    """PUBSUB CHANNELS, NUMSUB, NUMPAT and SHARDNUMSUB asked on relay B answer for the whole fleet
    (README, "Redis Cluster"): the channels and patterns held on relays A and C, over every
    master, counted per app subscriber."""
    cluster = redis_cluster
    a, b, c = cluster_relays(cluster, mode=mode)
    spread = cluster.channels_on_each_master(2, prefix="q%s" % mode)
    channels = sorted(ch for names in spread.values() for ch in names)
    subs = [sub(a.socket, "SUBSCRIBE", *channels), sub(a.socket, "SUBSCRIBE", channels[0]),
            sub(c.socket, "SUBSCRIBE", *channels), sub(c.socket, "PSUBSCRIBE", b"q%s:*" % mode.encode(), b"other.*"),
            sub(c.socket, "SSUBSCRIBE", channels[1])]
    try:
        with Conn(b.socket, timeout=5) as q:
            listed = q.call("PUBSUB", "CHANNELS", b"q%s:*" % mode.encode())
            assert sorted(listed) == channels, listed
            numsub = q.call("PUBSUB", "NUMSUB", *channels)
            assert numsub == [x for ch in channels for x in (ch, 3 if ch == channels[0] else 2)], numsub
            assert q.call("PUBSUB", "NUMPAT") == 2
            assert q.call("PUBSUB", "SHARDNUMSUB", channels[1], channels[2]) == [channels[1], 1, channels[2], 0]
    finally:
        for s_ in subs:
            s_.close()


def test_patterns_get_one_pmessage_per_matching_pattern_and_plain_channels_stay_sharded(redis_cluster, cluster_relays):
    """PSUBSCRIBE news.* and n?ws.x on one client of relay C, SUBSCRIBE news.x on relay B;
    PUBLISH news.x on relay A: two pmessages (one per pattern) and one message, PUBLISH answers 3.
    MONITOR on every node: news.x went out as a classic PUBLISH (a pattern in the fleet matches
    it); the channels no pattern matches went out as SPUBLISH on their masters only, never as
    PUBLISH."""
    cluster = redis_cluster
    a, b, c = cluster_relays(cluster)
    monitors = {p: Monitor(p) for p in cluster.nodes}
    plain = [ch for names in cluster.channels_on_each_master(3, prefix="plain").values() for ch in names]
    try:
        pats = sub(c.socket, "PSUBSCRIBE", "news.*", "n?ws.x")
        exact = sub(b.socket, "SUBSCRIBE", "news.x")
        plain_sub = sub(b.socket, "SUBSCRIBE", *plain)
        started = time.time()
        with Conn(a.socket, timeout=5) as p:
            assert p.call("PUBLISH", "news.x", "hello") == 3
            assert p.call("PUBLISH", "news.y", "only-one") == 1
            for ch in plain:
                assert p.call("PUBLISH", ch, "plain") == 1
        frames, status = pats.read_frames(3, 5)
        got = sorted(parse1(f) for f in frames)
        assert got == sorted([[b"pmessage", b"news.*", b"news.x", b"hello"], [b"pmessage", b"n?ws.x", b"news.x", b"hello"],
                              [b"pmessage", b"news.*", b"news.y", b"only-one"]]), (status, got)
        assert pats.read_quiet(0.2) == b"", "a pattern got a message twice"
        assert [parse1(f) for f in exact.read_frames(1, 5)[0]] == [[b"message", b"news.x", b"hello"]]
        assert exact.read_quiet(0.1) == b""
        frames, status = plain_sub.read_frames(len(plain), 5)
        assert [parse1(f) for f in frames] == [[b"message", ch, b"plain"] for ch in plain], status
        time.sleep(0.3)   # MONITOR lines of the last commands
        masters = {p for _, p in cluster.masters()}
        seen = {p: [l for l in m.lines if l[0] >= started - 1] for p, m in monitors.items()}
        classic_news = [p for p in masters if any(l[2] == "PUBLISH" and l[3] == "news.x" for l in seen[p])]
        assert classic_news, "news.x (matched by a pattern) was never sent as a classic PUBLISH"
        owners = cluster.slot_map()
        for ch in plain:
            name = ch.decode()
            owner = owners[cluster.slot_of(ch)]
            assert any(l[2] == "SPUBLISH" and l[3] == name for l in seen[owner]), "%s: no SPUBLISH on its master %d" % (name, owner)
            for p in masters:
                assert not any(l[2] == "PUBLISH" and l[3] == name for l in seen[p]), "%s sent as classic PUBLISH to %d" % (name, p)
                if p != owner:
                    assert not any(l[2] == "SPUBLISH" and l[3] == name for l in seen[p]), "%s: SPUBLISH to %d, not its master" % (name, p)
        for s in (pats, exact, plain_sub):
            s.close()
    finally:
        for m in monitors.values():
            m.close()


@pytest.mark.parametrize("mode", ["sharded", "classic"])
def test_app_ssubscribe_and_spublish_cross_relays(redis_cluster, cluster_relays, mode):
    """SSUBSCRIBE on relay A, SPUBLISH on relay B, for channels on every master: `smessage`
    frames, SPUBLISH answers 1. Then a plain SUBSCRIBE of the same names on relay C:
    * classic mode keeps the namespaces apart, as one Redis does: C gets nothing from the
      SPUBLISH, and a PUBLISH reaches C's subscriber only;
    * sharded mode carries an app channel and a shard channel of the same name on one upstream
      SSUBSCRIBE (README, "Redis Cluster"): both get both, each in its own frame, and the counts
      say so."""
    cluster = redis_cluster
    a, b, c = cluster_relays(cluster, mode=mode)
    channels = [ch for names in cluster.channels_on_each_master(3, prefix="shard-" + mode).values() for ch in names]
    s = sub(a.socket, "SSUBSCRIBE", *channels)
    classic = None
    try:
        with Conn(b.socket, timeout=5) as p:
            for ch in channels:
                assert p.call("SPUBLISH", ch, b"s:" + ch) == 1, ch
            frames, status = s.read_frames(len(channels), 5)
            assert [parse1(f) for f in frames] == [[b"smessage", ch, b"s:" + ch] for ch in channels], status
            classic = sub(c.socket, "SUBSCRIBE", *channels)
            if mode == "classic":
                for ch in channels:
                    assert p.call("SPUBLISH", ch, b"s2:" + ch) == 1, ch
                assert classic.read_quiet(0.3) == b"", "an SPUBLISH reached a plain SUBSCRIBE"
                for ch in channels:
                    assert p.call("PUBLISH", ch, b"c:" + ch) == 1, ch
                frames, status = classic.read_frames(len(channels), 5)
                assert [parse1(f) for f in frames] == [[b"message", ch, b"c:" + ch] for ch in channels], status
                frames, status = s.read_frames(len(channels), 5)
                assert [parse1(f) for f in frames] == [[b"smessage", ch, b"s2:" + ch] for ch in channels], status
                assert s.read_quiet(0.3) == b"", "a PUBLISH reached an SSUBSCRIBE"
            else:
                for ch in channels:
                    assert p.call("SPUBLISH", ch, b"s2:" + ch) == 2, ch
                    assert p.call("PUBLISH", ch, b"c:" + ch) == 2, ch
                frames, status = classic.read_frames(2 * len(channels), 5)
                assert [parse1(f) for f in frames] == [[b"message", ch, x + ch] for ch in channels for x in (b"s2:", b"c:")], status
                frames, status = s.read_frames(2 * len(channels), 5)
                assert [parse1(f) for f in frames] == [[b"smessage", ch, x + ch] for ch in channels for x in (b"s2:", b"c:")], status
    finally:
        s.close()
        if classic:
            classic.close()


# ---- steady state ---------------------------------------------------------------------------

def steady_channels(cluster: RedisCluster) -> tuple[list[bytes], list[bytes]]:
    """800 plain channels and 200 matched by the 20 patterns (`pt.<k>.*` for k < 19, and
    `pt.1?.*`, so pt.10-pt.18 match two patterns), with every master owning some of both."""
    plain = [b"st:%d" % i for i in range(800)]
    matched = [b"pt.%d.%d" % (k, j) for k in range(20) for j in range(10)]
    patterns = [b"pt.%d.*" % k for k in range(19)] + [b"pt.1?.*"]
    owners = cluster.slot_map()
    for group in (plain, matched):
        assert len({owners[s] for s in cluster.slots_of(group)}) == 3
    return plain + matched, patterns


def test_steady_state_loses_repeats_and_reorders_nothing(redis_cluster, cluster_relays):
    """~1000 channels over all masters and 20 patterns; a subscriber of every channel on each
    relay, pattern subscribers on relays A and C, a sequenced pipelined publisher of every
    channel on each relay, STEADY_MESSAGES (default 100 000) messages in total: nothing lost,
    repeated or reordered in any subscription."""
    cluster = redis_cluster
    relays = cluster_relays(cluster)
    channels, patterns = steady_channels(cluster)
    t = Traffic()
    try:
        for k, r in enumerate(relays):
            t.add_subscriber(r, "s%d" % k, channels=channels)
        t.add_subscriber(relays[0], "pa", patterns=patterns)
        t.add_subscriber(relays[2], "pc", patterns=patterns)
        for k, r in enumerate(relays):
            t.add_publisher(r, "p%d" % k, channels)
        cpu0 = (cluster.cpu_seconds_total(), sum(cpu_seconds(r.pid) for r in relays))
        t.run(until=lambda: t.rounds * len(relays) * len(channels) >= STEADY_MESSAGES, max_seconds=110, tail=1.0)
        cpu1 = (cluster.cpu_seconds_total(), sum(cpu_seconds(r.pid) for r in relays))
        result = t.check()
        sent, got = t.total_sent(), t.total_received()
        print("\nsteady state: %d published (%d channels, %d patterns, 3 relays) in %.2f s = %.0f msg/s published, "
              "%d deliveries (%.0f/s); round median %.3f s; cluster CPU %.2f s, relays CPU %.2f s; PUBLISH counts %r "
              "(%d differ from the fleet's subscriptions)"
              % (sent, len(channels), len(patterns), t.elapsed, sent / t.elapsed, got, got / t.elapsed,
                 statistics.median(t.round_times), cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], t.counts, t.count_mismatches))
        print(result)
        assert t.errors == [] and t.bad_frames == [], (t.errors[:5], t.bad_frames[:5])
        assert sent >= STEADY_MESSAGES
        assert all(not c.eof for c in t.subscribers), "a subscriber's connection closed"
        assert result["lost"] == 0 and result["duplicated"] == 0 and result["reordered"] == 0 and result["unexpected"] == 0, result
    finally:
        t.close()


# ---- topology changes under traffic ---------------------------------------------------------

def run_with(traffic: Traffic, action, period: float = 0.05, warmup: float = 0.5, tail: float = 2.0, max_seconds: float = 90):
    """Runs traffic for `warmup`, then `action()` in a thread while traffic goes on, then `tail`
    seconds more. Returns action's result (re-raising its error)."""
    box: dict = {}
    begin = time.monotonic()

    def target():
        try:
            box["result"] = action()
        except BaseException as e:   # re-raised in the test's thread
            box["error"] = e

    worker = threading.Thread(target=target, daemon=True)

    def until():
        now = time.monotonic()
        if not worker.is_alive() and "started" not in box and now - begin >= warmup:
            box["started"] = now
            worker.start()
        if "started" in box and not worker.is_alive():
            box.setdefault("done", now)
            return now - box["done"] >= tail
        return False

    traffic.run(until, period=period, max_seconds=max_seconds, tail=0.3)
    worker.join(5)
    if "error" in box:
        raise box["error"]
    return box["result"]


def topology_traffic(cluster: RedisCluster, relays, per_master: int = 40, extra: list[bytes] = ()) -> tuple[Traffic, list[bytes]]:
    channels = [ch for names in cluster.channels_on_each_master(per_master, prefix="tt").values() for ch in names] + list(extra)
    t = Traffic()
    for k, r in enumerate(relays):
        t.add_subscriber(r, "s%d" % k, channels=channels)
        t.add_publisher(r, "p%d" % k, channels)
    return t, channels


def report_windows(what: str, t: Traffic, recoveries: list[float], result: dict, relays):
    finite = [x for x in recoveries if x != float("inf")]
    print("\n%s: %d channel-subscriptions measured; flowing again after median %.3f s, p95 %.3f s, max %.3f s (bound %.1f s); "
          "%d lost inside windows, %d outside; %d duplicated, %d reordered; %d published in %.1f s (%.0f msg/s), round median %.3f s"
          % (what, len(recoveries), statistics.median(finite) if finite else float("nan"), pct(finite, 0.95),
             max(recoveries) if recoveries else float("nan"), FLOW_BOUND, result["lost_in_windows"], result["lost"],
             result["duplicated"], result["reordered"], t.total_sent(), t.elapsed, t.total_sent() / t.elapsed,
             statistics.median(t.round_times)))
    for k, r in enumerate(relays):
        print("relay %d: %r" % (k, cluster_info(r)))
        if os.environ.get("CLUSTER_RELAY_LOGS"):
            print(r.stderr()[-6000:])


def assert_traffic_ok(t: Traffic, result: dict, recoveries: list[float], what: str):
    assert t.errors == [] and t.bad_frames == [], "%s: app errors %r %r" % (what, t.errors[:5], t.bad_frames[:5])
    assert all(not c.eof for c in t.subscribers), "%s: an app's subscriber connection was closed" % what
    assert result["lost"] == 0, "%s: %d messages lost outside the windows, e.g. %r" % (what, result["lost"], result["examples"])
    assert result["duplicated"] == 0 and result["reordered"] == 0 and result["unexpected"] == 0, result
    assert recoveries, "%s: nothing measured" % what
    slow = [x for x in recoveries if x > FLOW_BOUND]
    assert not slow, "%s: %d of %d channel-subscriptions flowing again only after %r s (bound %.1f s)" % (
        what, len(slow), len(recoveries), sorted(slow)[-5:], FLOW_BOUND)


@pytest.mark.parametrize("source", ["home", "other"])
def test_reshard_during_traffic(cluster_factory, cluster_relays, source):
    """2 000 slots moved from one master to another (`redis-cli --cluster reshard`) while every
    relay publishes every 50 ms to 120 channels spread over the masters plus 60 in the moving
    slots: no app error or disconnect; each moved channel, in every subscription, flows again
    within FLOW_BOUND of its slot leaving the source; losses only in those windows (counted).
    `home`: the moved slots include the one of the fleet's keys ({pubsub-relay}, slot 12307), so
    the fleet channel, the patterns and the books move too — and the channels of both masters
    keep flowing meanwhile."""
    cluster = cluster_factory()
    relays = cluster_relays(cluster)
    owners = cluster.slot_map()
    home_port = owners[cluster.slots_of([b"{pubsub-relay}"])[0]]
    masters = cluster.masters()
    if source == "home":
        (src_id, src) = next(m for m in masters if m[1] == home_port)
        assert cluster.slots_of([b"{pubsub-relay}"])[0] in sorted(s for s, p in owners.items() if p == src)[:RESHARD_SLOTS]
    else:
        (src_id, src) = next(m for m in masters if m[1] != home_port)
    (dst_id, dst) = next(m for m in masters if m[1] != src)
    first = sorted(s for s, p in owners.items() if p == src)[:RESHARD_SLOTS]
    moving = set(first)
    candidates = [b"mv:%d" % i for i in range(4000)]
    extra = [ch for ch, s in zip(candidates, cluster.slots_of(candidates)) if s in moving][:60]
    t, channels = topology_traffic(cluster, relays, per_master=40, extra=extra)
    before = {r.socket: cluster_info(r) for r in relays}
    try:
        r = run_with(t, lambda: cluster.reshard(src_id, dst_id, RESHARD_SLOTS))
        slot = dict(zip(channels, cluster.slots_of(channels)))
        windows, recoveries = {}, []
        moved = [ch for ch in channels if slot[ch] in r.slot_finished]
        for ch in moved:
            at = r.slot_finished[slot[ch]]
            windows[ch] = [(at - WINDOW_BEFORE, at + FLOW_BOUND)]
            recoveries += t.recovery(ch, at, at - WINDOW_BEFORE)
        result = t.check(windows)
        print("\nreshard: %d slots %d -> %d in %.2f s (slot departure seen within median %.1f ms, max %.1f ms); %d of %d channels moved"
              % (RESHARD_SLOTS, src, dst, r.ended - r.started, 1000 * statistics.median(r.poll_gaps), 1000 * max(r.poll_gaps),
                 len(moved), len(channels)))
        report_windows("reshard", t, recoveries, result, relays)
        assert len(moved) >= 60, "only %d test channels in the moved slots" % len(moved)
        assert_traffic_ok(t, result, recoveries, "reshard")
        for rel in relays:
            info = cluster_info(rel)
            assert info[INFO_STATE] == "up", info
            assert int(info[INFO_SLOT_MAP_VERSION]) > int(before[rel.socket][INFO_SLOT_MAP_VERSION]), info
    finally:
        t.close()


def test_failovers_and_a_killed_master_during_traffic(cluster_factory, cluster_relays):
    """`CLUSTER FAILOVER` on two replicas, then kill -9 of a third master, while every relay
    publishes every 50 ms to 120 channels over the masters: no app error or disconnect; the
    failed-over master's channels flow again within FLOW_BOUND of the replica taking over (for
    the kill, every channel: the cluster is down until the promotion); losses only inside those
    windows."""
    cluster = cluster_factory(node_timeout_ms=1000)
    relays = cluster_relays(cluster)
    masters = [p for _, p in cluster.masters()]
    t, channels = topology_traffic(cluster, relays, per_master=40)
    owner_before = dict(zip(channels, (cluster.slot_map()[s] for s in cluster.slots_of(channels))))
    events = []   # (kind, old master, new master, window start, takeover)

    def action():
        for m in masters[:2]:
            replica = cluster.replica_of(m)
            asked = time.monotonic()
            took = cluster.failover(replica)
            events.append(("CLUSTER FAILOVER", m, replica, asked, took))
            time.sleep(1.5)
        promoted, killed, at = cluster.kill_master(masters[2])
        events.append(("kill -9", masters[2], promoted, killed, at))

    try:
        run_with(t, action, tail=2.5)
        windows: dict[bytes, list] = {ch: [] for ch in channels}
        recoveries = []
        for kind, old, new, start, took in events:
            for ch in channels:
                affected = owner_before[ch] == old
                if kind == "kill -9" or affected:
                    windows[ch].append((start - WINDOW_BEFORE, took + FLOW_BOUND))
                if affected:
                    recoveries += t.recovery(ch, took, start - WINDOW_BEFORE)
        result = t.check(windows)
        print("\ncluster-node-timeout %d ms; %s" % (cluster.node_timeout_ms, "; ".join(
            "%s %d -> %d: master after %.3f s" % (k, o, n, took - s) for k, o, n, s, took in events)))
        report_windows("failovers", t, recoveries, result, relays)
        assert_traffic_ok(t, result, recoveries, "failovers")
        for rel in relays:
            assert cluster_info(rel)[INFO_STATE] == "up"
    finally:
        t.close()


# ---- subscribe-then-publish races -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["SUBSCRIBE", "PSUBSCRIBE"])
def test_subscribe_confirmed_on_one_relay_then_publish_on_another_is_received(redis_cluster, cluster_relays, kind):
    """RACE_ITERATIONS times: a client SUBSCRIBEs (PSUBSCRIBEs) a new channel (pattern) on relay
    A; as soon as the confirmation arrives a client on relay B PUBLISHes to it (a matching
    channel): the message arrives every time and PUBLISH counts it."""
    cluster = redis_cluster
    a, b = cluster_relays(cluster, n=2)
    misses = []
    started = time.monotonic()
    with Conn(a.socket, timeout=5) as s, Conn(b.socket, timeout=5) as p:
        for i in range(RACE_ITERATIONS):
            assert time.monotonic() - started < 60, "race loop past 60 s at iteration %d" % i
            name = b"race:%d:%d" % (os.getpid(), i) if kind == "SUBSCRIBE" else b"rp.%d.%d.*" % (os.getpid(), i)
            channel = name if kind == "SUBSCRIBE" else name[:-1] + b"x"
            s.send(cmd(kind, name))
            conf = parse1(s.read_frame(5))
            assert conf[:2] == [kind.lower().encode(), name], conf
            n = p.call("PUBLISH", channel, b"%d" % i)
            frames, status = s.read_frames(1, 2)
            got = parse1(frames[0]) if frames else None
            want = [b"message", channel, b"%d" % i] if kind == "SUBSCRIBE" else [b"pmessage", name, channel, b"%d" % i]
            if n != 1 or got != want:
                misses.append((i, n, got, status))
    took = time.monotonic() - started
    print("\n%s on A, confirmed, then PUBLISH on B: %d of %d missed or miscounted, %.2f s (%.2f ms per iteration)"
          % (kind, len(misses), RACE_ITERATIONS, took, 1000 * took / RACE_ITERATIONS))
    assert misses == [], misses[:5]
