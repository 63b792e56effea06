"""The backplane on Redis Sentinel (README, "Redis Sentinel"): a real master, replica and three
sentinels (sentinel_fixtures.py), two relays joined with REDIS_URL=redis-sentinel://…, apps
subscribed on both and a steady publisher on both.

Failovers (`SENTINEL FAILOVER`, and a `kill -9` of the master) must look to the apps like any
outage: no app connection closes, messages flow across the relays again within 2 s of
`+switch-master`, nothing arrives twice, and nothing is published to the old master once it is
demoted. INFO, /health and /metrics show the master and the number of switches. Every process is
started and stopped by PID; every wait is bounded.

The same deployment over TLS only (rediss-sentinel://, certificates made by openssl as in
test_tls.py): a fleet that follows a failover, and a wrong CA that leaves the relay degraded with
one warning per sentinel attempt.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import relay_env, relay_info, wait_redis_state
from sentinel_fixtures import MASTER_NAME, Monitor, SentinelSet, SwitchListener, TLSFiles, free_port, tcp_call, wait_for
from sentinel_fixtures import redis_sentinel_binary, sentinel_set  # noqa: F401 (fixtures)

FLOW_BOUND = 2.0
CHANNEL = b"flow"
def message_frame(channel: bytes) -> re.Pattern:
    return re.compile(rb"\*3\r\n\$7\r\nmessage\r\n\$%d\r\n%s\r\n\$(\d+)\r\n" % (len(channel), re.escape(channel)))


class Subscriber:
    """An app subscribed to one channel (`flow`) on a relay; records (receive time, payload) in a thread."""

    @classmethod
    def on(cls, path: str, channel: bytes):
        return cls(path, channel)

    def __init__(self, path: str, channel: bytes = CHANNEL):
        self.frame = message_frame(channel)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))
        confirmation = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(channel), channel)
        got = b""
        while len(got) < len(confirmation):
            got += self.sock.recv(len(confirmation) - len(got))
        assert got == confirmation, got
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, bytes]] = []
        self.eof = False
        self._stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        while not self._stop:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                self.eof = True
                return
            if not data:
                self.eof = True
                return
            now = time.monotonic()
            buf += data
            while True:
                m = self.frame.match(buf)
                if not m:
                    break
                n = int(m.group(1))
                if len(buf) < m.end() + n + 2:
                    break
                self.received.append((now, buf[m.end():m.end() + n]))
                buf = buf[m.end() + n + 2:]

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


class Publisher:
    """Publishes `<relay>:<seq>` on each relay in turn every 5 ms and reads each answer."""

    def __init__(self, relays: dict[str, str]):
        self.conns = {}
        for name, path in relays.items():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            self.conns[name] = s
        self.sent: dict[str, list[tuple[float, bytes]]] = {n: [] for n in relays}
        self.errors: list[str] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        seq = 0
        while not self._stop:
            seq += 1
            for name, s in self.conns.items():
                payload = b"%s:%d" % (name.encode(), seq)
                try:
                    t = time.monotonic()
                    s.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nflow\r\n$%d\r\n%s\r\n" % (len(payload), payload))
                    reply = b""
                    while not reply.endswith(b"\r\n"):
                        chunk = s.recv(64)
                        if not chunk:
                            raise OSError("connection closed by the relay")
                        reply += chunk
                    if not reply.startswith(b":"):
                        raise OSError("PUBLISH answered %r" % reply)
                    self.sent[name].append((t, payload))
                except OSError as e:
                    self.errors.append("%s: %s" % (name, e))
                    return
            time.sleep(0.005)

    def stop(self):
        self._stop = True
        self.thread.join(5)
        for s in self.conns.values():
            s.close()


def flowing_after(switch_at: float, window_end: float, sent: list, receiver: Subscriber) -> float | None:
    """Seconds from `switch_at` until messages published on one relay reach the other's app
    again for good: the receipt of the first message sent after the last one lost in the window
    (or after the switch, if none was lost)."""
    got = {p: t for t, p in receiver.received}
    window = [(t, p) for t, p in sent if switch_at <= t < window_end]
    lost = [t for t, p in window if p not in got]
    start = max(lost) if lost else switch_at
    after = [got[p] for t, p in window if t > start and p in got]
    return (min(after) - switch_at) if after else None


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_failovers_keep_apps_connected_and_never_publish_to_the_old_master(sentinel_set, backplane_relay):
    """One kill -9 of the master, then five `SENTINEL FAILOVER`s, under a steady cross-relay flow:
    no app connection closes, each switch is followed (messages flow across the relays again
    within 2 s of the first `+switch-master`), nothing is delivered twice, no relay publishes to
    the old master once it is a replica, and INFO upstreams, /health and /metrics show the master
    and six switches."""
    ss = sentinel_set
    metrics_port = free_port()
    env = {"RELAY_REDIS_BACKOFF_MAX": "500ms"}
    a = backplane_relay(ss.url, dict(env, RELAY_METRICS_ADDR="127.0.0.1:%d" % metrics_port))
    b = backplane_relay(ss.url, env)
    first = ss.master_port()
    for r in (a, b):
        info = relay_info(r.socket)
        assert info["redis_topology"] == "sentinel", info
        assert info["redis_master"] == "127.0.0.1:%d" % first, info
        assert info["redis_master_switches"] == "0", info
        assert re.fullmatch(r"127\.0\.0\.1:\d+", wait_for(lambda: relay_info(r.socket).get("redis_sentinel"), 5,
                                                           "subscribed sentinel in INFO")), info
    listener = SwitchListener(ss.sentinels)
    monitors = {p: Monitor(p) for p in ss.nodes}
    subs = {"a": Subscriber(a.socket), "b": Subscriber(b.socket)}
    publisher = Publisher({"a": a.socket, "b": b.socket})
    wall_offset = time.time() - time.monotonic()
    switches = []  # (switch time, old port, new port, wall time the old node was seen demoted or restarted)
    try:
        time.sleep(0.5)
        assert subs["b"].received and subs["a"].received, "no cross-relay flow before any failover"
        for round_ in range(6):
            old = ss.master_port()
            new = ss.other(old).port
            since = time.monotonic()
            if round_ == 0:
                ss.nodes[old].kill9()
                monitors[old].close()
            else:
                sentinel = ss.sentinels[round_ % 3]

                def failover():
                    # -INPROG: this sentinel still finishes the previous failover; ask again.
                    try:
                        reply = sentinel.call("SENTINEL", "FAILOVER", MASTER_NAME)
                    except Exception as e:   # redis-py's ResponseError, re-raised unless INPROG
                        if str(e).startswith("INPROG"):
                            return False
                        raise
                    return reply in (b"OK", "OK", True)
                wait_for(failover, 10, "SENTINEL FAILOVER accepted (round %d)" % round_, interval=0.2)
            switch_at = wait_for(lambda: listener.first_since(since, new), 20, "+switch-master to %d" % new)
            for r in (a, b):
                wait_for(lambda: relay_info(r.socket).get("redis_master") == "127.0.0.1:%d" % new, 5,
                         "relay follows the switch to %d" % new)
            if round_ == 0:
                ss.nodes[old].start(replicaof=new)
                demoted_wall = time.time()
                monitors[old] = Monitor(old)
            else:
                wait_for(lambda: ss.nodes[old].role() == "slave", 20, "old master %d demoted" % old)
                demoted_wall = time.time()
            ss.wait_healthy(new, 30)
            switches.append((switch_at, old, new, demoted_wall))
        time.sleep(1.0)
    finally:
        publisher.stop()
        time.sleep(0.3)
        for s in subs.values():
            s.close()
        listener.close()
        for m in monitors.values():
            m.close()

    assert publisher.errors == [], "an app's publishing connection failed: %r" % publisher.errors
    for name, s in subs.items():
        assert not s.eof, "app subscribed on relay %s saw its connection closed" % name
        payloads = [p for _, p in s.received]
        assert len(payloads) == len(set(payloads)), "relay %s delivered a message twice" % name

    times = []
    notes = []
    for k, (switch_at, old, new, demoted_wall) in enumerate(switches):
        window_end = switches[k + 1][0] if k + 1 < len(switches) else switch_at + 10
        for src, dst in (("a", "b"), ("b", "a")):
            t = flowing_after(switch_at, window_end, publisher.sent[src], subs[dst])
            assert t is not None and t <= FLOW_BOUND, (
                "switch %d (%d -> %d): messages from relay %s to relay %s flowing again after %r s (bound %.1f s)"
                % (k, old, new, src, dst, t, FLOW_BOUND))
            times.append(t)
            window = [p for t0, p in publisher.sent[src] if switch_at <= t0 < window_end]
            got = {p for _, p in subs[dst].received}
            notes.append("%d:%s->%s lost %d" % (k, src, dst, sum(1 for p in window if p not in got)))
        if k > 0:
            # The check below can fail: the monitor saw the relays' PUBLISHes while the node was master.
            before = monitors[old].publishes(0, excluding_port=new, channel="flow")
            assert any(l[0] < switch_at + wall_offset for l in before), "switch %d: MONITOR on %d saw no PUBLISH before the switch (%d lines, %d reconnects, last %r)" % (
                k, old, len(monitors[old].lines), monitors[old].reconnects, monitors[old].lines[-3:])
            between = [l for l in before if switch_at + wall_offset < l[0] <= demoted_wall]
            notes.append("%d: %d PUBLISHes on the old master between +switch-master and its demotion" % (k, len(between)))
        # Until the node may be master again (the next switch, or the end).
        until_wall = window_end + wall_offset if k + 1 < len(switches) else float("inf")
        late = monitors[old].publishes(demoted_wall, until_wall, excluding_port=new, channel="flow")
        assert late == [], "switch %d: %d PUBLISHes reached the old master %d after it was demoted, e.g. %r" % (
            k, len(late), old, late[:3])
    print("\nswitch-master -> flowing across relays: median %.3f s, max %.3f s over %d switches x 2 directions"
          % (statistics.median(times), max(times), len(switches)))
    print("; ".join(notes))

    final = ss.master_port()
    for r in (a, b):
        info = relay_info(r.socket)
        assert info["redis_master"] == "127.0.0.1:%d" % final, info
        assert info["redis_master_switches"] == "6", info
        assert info["redis_state"] == "up", info
        assert int(info["redis_gaps"]) >= 6, info
        log = r.stderr()
        assert log.count("redis master switched: reconnecting both connections to the new master") == 6, log[-3000:]
        assert "redis backplane restored" in log and "gap_seconds=" in log
    status, body = http_get(metrics_port, "/health")
    health = json.loads(body)["upstreams"]["redis"]
    assert status == 200 and health["master"] == "127.0.0.1:%d" % final and health["master_switches"] == 6, body
    assert health["topology"] == "sentinel"
    status, body = http_get(metrics_port, "/metrics")
    assert re.search(r"^pubsub_relay_redis_master_switches_total 6$", body, re.M), [
        l for l in body.splitlines() if "master_switches" in l]


def test_unknown_master_name_stays_degraded_and_says_why(sentinel_set, backplane_relay):
    """A master name the sentinels do not monitor: the relay serves its apps in degraded mode and
    logs, per sentinel, that it does not know the master; nothing connects to a data node."""
    url = sentinel_set.url.rsplit("/", 1)[0] + "/nosuchmaster"
    r = backplane_relay(url, {"RELAY_REDIS_BACKOFF_MAX": "500ms"}, wait_up=False)
    wait_for(lambda: r.stderr().count("does not know master 'nosuchmaster'") >= 3, 10, "three sentinels asked")
    info = relay_info(r.socket)
    assert info["redis_state"] == "degraded" and info["redis_master"] == "" and info["redis_topology"] == "sentinel", info
    assert "no sentinel gave master 'nosuchmaster' (tried 3)" in r.stderr()
    clients = tcp_call(sentinel_set.master_port(), "CLIENT", "LIST").decode()
    assert "pubsub-relay:" not in clients, clients


def test_a_sentinel_down_at_start_is_skipped(sentinel_set, backplane_relay):
    """The first sentinel of the list is dead: the relay asks the next one and comes up on the
    master; the followed sentinel is a live one."""
    dead = free_port()
    live = ",".join("127.0.0.1:%d" % s.port for s in sentinel_set.sentinels)
    r = backplane_relay("redis-sentinel://127.0.0.1:%d,%s/%s" % (dead, live, MASTER_NAME))
    info = wait_redis_state(r, "up")
    assert info["redis_master"] == "127.0.0.1:%d" % sentinel_set.master_port(), info
    assert wait_for(lambda: relay_info(r.socket).get("redis_sentinel") not in ("", None), 5, "subscribed") != "127.0.0.1:%d" % dead
    assert "redis sentinel 127.0.0.1:%d: cannot connect" % dead in r.stderr()


def test_check_config_prints_the_sentinel_shape(relay_binary):
    """`check-config` names the sentinels, the master and the sentinels' login; never a password."""
    env = relay_env(None, {"REDIS_URL": "redis-sentinel://relay:secret@10.0.0.7:26379,10.0.0.8/mymaster/2",
                           "RELAY_REDIS_SENTINEL_USERNAME": "watcher", "RELAY_REDIS_SENTINEL_PASSWORD": "s3cret"})
    out = subprocess.run([relay_binary, "check-config"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "redis backplane redis-sentinel://relay:***@10.0.0.7:26379,10.0.0.8:26379/mymaster/2" in out.stdout, out.stdout
    assert "master 'mymaster' found through Redis Sentinel: asks 2 sentinel(s) 10.0.0.7:26379, 10.0.0.8:26379 in turn (auth as 'watcher' with a password)" in out.stdout, out.stdout
    assert "secret" not in out.stdout and "s3cret" not in out.stdout
    bad = subprocess.run([relay_binary, "check-config"], env=relay_env(None, {"REDIS_URL": "redis-sentinel://10.0.0.7:26379"}),
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 78 and bad.stderr.strip().count("\n") == 0 and "REDIS_URL" in bad.stderr and "names no master" in bad.stderr, bad.stderr
    tls = subprocess.run([relay_binary, "check-config"], env=relay_env(None, {"REDIS_URL": "rediss-sentinel://10.0.0.7/m"}),
                         capture_output=True, text=True, timeout=30)
    assert tls.returncode == 0, tls.stderr
    assert ("redis backplane rediss-sentinel://10.0.0.7:26379/m/0 over TLS (trusting the system store, checking each "
            "sentinel's and the announced master's host (an IP address against the certificate's IP addresses))") in tls.stdout, tls.stdout
    # A TLS setting with the plain form is still a typo'd scheme: exit 78, one line.
    plain = subprocess.run([relay_binary, "check-config"], capture_output=True, text=True, timeout=30,
                           env=relay_env(None, {"REDIS_URL": "redis-sentinel://10.0.0.7/m", "RELAY_REDIS_TLS_SERVER_NAME": "redis.test"}))
    assert plain.returncode == 78 and plain.stderr.strip().count("\n") == 0, plain.stderr
    assert "RELAY_REDIS_TLS_SERVER_NAME: set, but REDIS_URL is redis-sentinel://10.0.0.7:26379/m/0, without TLS" in plain.stderr, plain.stderr


def test_postgres_lease_follows_the_master(sentinel_set, relay_factory, pg_db):
    """The Postgres leader lease lives on the backplane's master: after a kill -9 of the master and
    then a `SENTINEL FAILOVER`, exactly one relay leads again, the lease key on the new master
    names it, and a NOTIFY reaches an app subscribed on the other relay through the new master."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed")
    from test_pg_bridge import pg_env, wait_one_leader
    ss = sentinel_set
    env = pg_env(pg_db.conninfo, "orders", REDIS_URL=ss.url, RELAY_LEADER_TTL="1s", RELAY_REDIS_BACKOFF_MAX="500ms")
    relays = [relay_factory(env) for _ in range(2)]
    for r in relays:
        wait_redis_state(r, "up")
    wait_one_leader(relays)
    for round_ in range(2):
        old = ss.master_port()
        new = ss.other(old).port
        if round_ == 0:
            ss.nodes[old].kill9()
        else:
            wait_for(lambda: ss.sentinels[1].call("SENTINEL", "FAILOVER", MASTER_NAME) in (b"OK", "OK", True), 10,
                     "SENTINEL FAILOVER accepted")
        for r in relays:
            wait_for(lambda: relay_info(r.socket).get("redis_master") == "127.0.0.1:%d" % new, 20,
                     "relay on the new master %d" % new)
        leader = wait_one_leader(relays, timeout=10)
        holder = tcp_call(new, "GET", "pubsub-relay:pg-leader")
        assert holder == relay_info(leader.socket)["redis_relay_id"].encode(), (holder, round_)
        other = next(r for r in relays if r is not leader)
        sub = Subscriber.on(other.socket, b"pg:orders")
        try:
            with psycopg.connect(pg_db.conninfo, autocommit=True) as c:
                c.execute("SELECT pg_notify('orders', %s)", ("after-switch-%d" % round_,))
            got = wait_for(lambda: sub.received, 5, "NOTIFY through the new master (round %d)" % round_)
            assert [p for _, p in got] == [b"after-switch-%d" % round_], got
        finally:
            sub.close()
        if round_ == 0:
            ss.nodes[old].start(replicaof=new)
        ss.wait_healthy(new, 30)


def test_a_master_demoted_behind_the_sentinels_back_is_left(sentinel_set, backplane_relay, redis_server_binary):
    """`REPLICAOF` sent to the master by hand (no Sentinel failover, so no `+switch-master` and no
    CLIENT KILL): the relay's writes on the publisher connection get `-READONLY` within about a
    second (the fleet-count refresh), it drops that connection, reconnecting is refused by the ROLE
    check, and from then on no app PUBLISH reaches the demoted node. Once it is master again
    (`REPLICAOF NO ONE`) the relay comes back up on it."""
    from sentinel_fixtures import Node
    ss = sentinel_set
    master = ss.master_port()
    r = backplane_relay(ss.url, {"RELAY_REDIS_BACKOFF_MAX": "500ms"})
    other_port = free_port()
    elsewhere = Node(redis_server_binary, ss.root, "elsewhere", other_port)
    monitor = Monitor(master)
    publisher = Publisher({"a": r.socket})
    try:
        time.sleep(0.3)
        assert tcp_call(master, "REPLICAOF", "127.0.0.1", str(other_port)) in (b"OK", "OK", True)
        demoted_wall = time.time()
        info = wait_for(lambda: (lambda i: i if i.get("redis_publisher_link") != "ready" else None)(relay_info(r.socket)),
                        3, "publisher connection dropped after the demotion")
        left_wall = time.time()
        time.sleep(1.5)
        info = relay_info(r.socket)
        assert info["redis_state"] == "degraded", info
        log = r.stderr()
        assert "answered -READONLY: it is a replica now" in log, log[-2000:]
        assert "is not a master: ROLE answered slave" in log, log[-2000:]
        late = monitor.publishes(left_wall, channel="flow")
        between = monitor.publishes(demoted_wall, left_wall, channel="flow")
        assert late == [], "%d app PUBLISHes reached the demoted node after the relay left it: %r" % (len(late), late[:3])
        print("\n-READONLY path: left the demoted master %.3f s after REPLICAOF; %d PUBLISHes reached it meanwhile"
              % (left_wall - demoted_wall, len(between)))
        assert tcp_call(master, "REPLICAOF", "NO", "ONE") in (b"OK", "OK", True)
        wait_redis_state(r, "up", 10)
        assert publisher.errors == [], publisher.errors
    finally:
        publisher.stop()
        monitor.close()
        elsewhere.stop()


# ---- rediss-sentinel:// ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sentinel_pki():
    from test_tls import PKI
    p = PKI()
    yield p
    shutil.rmtree(p.dir, ignore_errors=True)


@pytest.fixture
def sentinel_tls_set(redis_server_binary, redis_sentinel_binary, sentinel_pki):
    """Master, replica and three sentinels on TLS ports only, serving server.pem (SAN IP:127.0.0.1,
    DNS:redis.test) and requiring client certificates."""
    pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")
    p = sentinel_pki
    files = TLSFiles(p.path("ca.pem"), p.path("server.pem"), p.path("server.key"), p.path("client.pem"), p.path("client.key"))
    s = SentinelSet(redis_server_binary, redis_sentinel_binary, tls=files)
    yield s
    s.stop()


@pytest.fixture
def sentinel_tls_set_dns_names(redis_server_binary, redis_sentinel_binary, sentinel_pki):
    """The same with certificates that list DNS names only: the data nodes dns-only.pem
    (DNS:redis.test), the sentinels a certificate for DNS:localhost and DNS:redis.test."""
    pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")
    from test_tls import _openssl
    p = sentinel_pki
    if not os.path.exists(p.path("sentinel-dns.pem")):
        with open(p.path("san-sentinel.cnf"), "w") as f:
            f.write("subjectAltName=DNS:localhost,DNS:redis.test\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "sentinel-dns.key",
                 "-out", "sentinel-dns.csr", "-subj", "/CN=sentinel-dns", cwd=p.dir)
        _openssl("x509", "-req", "-in", "sentinel-dns.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "sentinel-dns.pem", "-days", "30", "-extfile", "san-sentinel.cnf", cwd=p.dir)
    files = TLSFiles(p.path("ca.pem"), p.path("dns-only.pem"), p.path("dns-only.key"), p.path("client.pem"), p.path("client.key"),
                     sentinel_cert=p.path("sentinel-dns.pem"), sentinel_key=p.path("sentinel-dns.key"))
    s = SentinelSet(redis_server_binary, redis_sentinel_binary, tls=files)
    yield s
    s.stop()


def tls_env(pki, ca: str = "ca.pem") -> dict:
    return {"RELAY_REDIS_TLS_CA_FILE": pki.path(ca), "RELAY_REDIS_TLS_CERT_FILE": pki.path("client.pem"),
            "RELAY_REDIS_TLS_KEY_FILE": pki.path("client.key"), "RELAY_REDIS_BACKOFF_MAX": "500ms"}


def test_tls_sentinel_fleet_crosses_relays_and_follows_a_failover(sentinel_tls_set, sentinel_pki, backplane_relay):
    """Two relays on rediss-sentinel:// (every port of the deployment is TLS, so reaching it at
    all is TLS to the sentinels and to the master): messages cross the relays; the master the
    sentinels announce is an IP address, verified against the certificate's IP SAN without
    RELAY_REDIS_TLS_SERVER_NAME; one `SENTINEL FAILOVER` is followed, messages flowing across the
    relays again within 2 s of `+switch-master`, no app connection closing."""
    ss = sentinel_tls_set
    assert ss.url.startswith("rediss-sentinel://")
    a = backplane_relay(ss.url, tls_env(sentinel_pki))
    b = backplane_relay(ss.url, tls_env(sentinel_pki))
    first = ss.master_port()
    for r in (a, b):
        info = relay_info(r.socket)
        assert info["redis_topology"] == "sentinel" and info["redis_master"] == "127.0.0.1:%d" % first, info
        assert "redis backplane over TLS: trusting 1 CA certificate" in r.stderr(), r.stderr()
        wait_for(lambda: relay_info(r.socket).get("redis_sentinel"), 5, "subscribed sentinel in INFO")
    listener = SwitchListener(ss.sentinels, tls=ss.tls)
    subs = {"a": Subscriber(a.socket), "b": Subscriber(b.socket)}
    publisher = Publisher({"a": a.socket, "b": b.socket})
    try:
        time.sleep(0.5)
        assert subs["b"].received and subs["a"].received, "no cross-relay flow over TLS before the failover"
        new = ss.other(first).port
        since = time.monotonic()
        wait_for(lambda: ss.sentinels[1].call("SENTINEL", "FAILOVER", MASTER_NAME) in (b"OK", "OK", True), 10,
                 "SENTINEL FAILOVER accepted")
        switch_at = wait_for(lambda: listener.first_since(since, new), 20, "+switch-master to %d" % new)
        for r in (a, b):
            wait_for(lambda: relay_info(r.socket).get("redis_master") == "127.0.0.1:%d" % new, 5,
                     "relay follows the switch to %d" % new)
        time.sleep(3.0)
    finally:
        publisher.stop()
        time.sleep(0.3)
        for sub in subs.values():
            sub.close()
        listener.close()
    assert publisher.errors == [], publisher.errors
    for src, dst in (("a", "b"), ("b", "a")):
        assert not subs[dst].eof, "app on relay %s saw its connection closed" % dst
        t = flowing_after(switch_at, switch_at + 10, publisher.sent[src], subs[dst])
        assert t is not None and t <= FLOW_BOUND, "relay %s -> %s flowing again after %r s (bound %.1f s)" % (src, dst, t, FLOW_BOUND)
        print("\nrediss-sentinel: +switch-master -> flowing %s->%s after %.3f s" % (src, dst, t))
    for r in (a, b):
        info = relay_info(r.socket)
        assert info["redis_state"] == "up" and info["redis_master_switches"] == "1", info
        assert " TLS " not in r.stderr(), "a TLS error in the log:\n" + r.stderr()[-2000:]


def test_tls_sentinel_wrong_ca_warns_once_per_sentinel_and_stays_degraded(sentinel_tls_set, sentinel_pki, backplane_relay):
    """A CA that did not sign the sentinels' certificate: each attempt is one warning naming the
    sentinel and RedisTLS's reason, then the next sentinel in list order; the relay stays degraded
    (no master known, nothing connected to a data node) and serves its apps locally."""
    from test_tls import assert_serves_locally
    ss = sentinel_tls_set
    r = backplane_relay(ss.url, tls_env(sentinel_pki, ca="other-ca.pem"), wait_up=False)
    round_end = "no sentinel gave master '%s' (tried 3)" % MASTER_NAME
    wait_for(lambda: r.stderr().count(round_end) >= 2, 15, "two rounds of discovery")
    lines = r.stderr().splitlines()
    first_round = lines[:next(i for i, l in enumerate(lines) if round_end in l)]
    # Every line about a sentinel in that round: exactly one per sentinel, each the TLS reason.
    tls_lines = [l for l in first_round if "redis sentinel 127.0.0.1:" in l]
    expected = ["redis sentinel 127.0.0.1:%d: TLS handshake with 127.0.0.1:%d failed: certificate is not signed by a "
                "trusted CA" % (s.port, s.port) for s in ss.sentinels]
    assert len(tls_lines) == 3, "expected one TLS line per sentinel in the first round:\n" + "\n".join(first_round)
    for line, words in zip(tls_lines, expected):
        assert words in line and " warning " in line, (line, words)
    print("\n" + tls_lines[0])
    info = relay_info(r.socket)
    assert info["redis_state"] == "degraded" and info["redis_master"] == "", info
    clients = ss.nodes[ss.master_port()].call("CLIENT", "LIST").decode()
    assert "pubsub-relay:" not in clients, clients
    assert_serves_locally(r)


def test_tls_sentinel_master_announced_by_ip_needs_an_ip_san_or_the_server_name(sentinel_tls_set_dns_names, sentinel_pki,
                                                                                 backplane_relay):
    """The sentinels are listed as localhost and their certificate lists that name, so discovery
    over TLS succeeds; the master they announce is 127.0.0.1, and its certificate lists DNS names
    only: without RELAY_REDIS_TLS_SERVER_NAME the master connections fail on the IP address (README,
    "Redis Sentinel": an IP SAN, or the server name), the relay degraded with the master known;
    with RELAY_REDIS_TLS_SERVER_NAME=redis.test (listed by every certificate) it comes up."""
    ss = sentinel_tls_set_dns_names
    url = "rediss-sentinel://%s/%s" % (",".join("localhost:%d" % s.port for s in ss.sentinels), MASTER_NAME)
    master = ss.master_port()
    by_ip = backplane_relay(url, tls_env(sentinel_pki), wait_up=False)
    reason = ("TLS handshake with 127.0.0.1:%d failed: certificate is not valid for the IP address 127.0.0.1 "
              "(set RELAY_REDIS_TLS_SERVER_NAME to a name it lists)" % master)
    wait_for(lambda: by_ip.stderr().count(reason) >= 2, 15, "master connections failing on the IP address")
    info = relay_info(by_ip.socket)
    assert info["redis_state"] == "degraded" and info["redis_master"] == "127.0.0.1:%d" % master, info
    assert reason in info["redis_last_error"], info
    assert "redis sentinel localhost:" not in by_ip.stderr(), "discovery over TLS by name failed:\n" + by_ip.stderr()[-2000:]
    print("\n" + next(l for l in by_ip.stderr().splitlines() if reason in l))
    by_name = backplane_relay(url, dict(tls_env(sentinel_pki), RELAY_REDIS_TLS_SERVER_NAME="redis.test"))
    info = relay_info(by_name.socket)
    assert info["redis_state"] == "up" and info["redis_master"] == "127.0.0.1:%d" % master, info


def test_plaintext_sentinel_url_to_tls_ports_says_to_use_rediss_sentinel(sentinel_tls_set, backplane_relay):
    """redis-sentinel:// (plain TCP) to sentinels that listen on TLS only: each sentinel's warning
    says the connection ended before it answered and names the TLS form of the URL."""
    ss = sentinel_tls_set
    url = ss.url.replace("rediss-sentinel://", "redis-sentinel://", 1)
    r = backplane_relay(url, {"RELAY_REDIS_BACKOFF_MAX": "500ms"}, wait_up=False)
    hint = "before it answered; if that port is a tls-port, use a rediss-sentinel:// URL"
    wait_for(lambda: all(("redis sentinel 127.0.0.1:%d: " % s.port) in r.stderr() for s in ss.sentinels), 15,
             "a warning for each sentinel")
    lines = [l for l in r.stderr().splitlines() if "redis sentinel 127.0.0.1:" in l]
    for line in lines[:3]:
        assert hint in line and " warning " in line, line
    assert relay_info(r.socket)["redis_state"] == "degraded"
