"""Redis Cluster over TLS (`rediss-cluster://`, README "Redis Cluster" and "Redis over TLS"):
relays joined to a real cluster of 3 masters and 3 replicas that has no plaintext port at all
(cluster_fixtures.py with `tls`: `port 0`, a `tls-port` per node, `tls-cluster yes`,
`tls-replication yes`, `tls-auth-clients yes`), with the CA and certificates of test_tls.py's
`PKI` (the nodes' certificate lists IP:127.0.0.1 and DNS:redis.test). Every connection a relay
makes there — the control connection asking `CLUSTER SHARDS` and each master's subscriber and
publisher — is therefore TLS, to the tls-port the cluster announces.

* three relays discover the cluster and carry SUBSCRIBE/PSUBSCRIBE/PUBLISH across each other
  over channels of every master, each message once, PUBLISH counting as one Redis would;
* a wrong CA, no client certificate where the nodes require one, `redis-cluster://` to the
  tls-ports: the relay stays undiscovered and degraded, serves its apps, and warns on each
  attempt naming the node and the TLS problem; once the nodes accept it, it joins by itself.

Every process is started here and stopped by its PID; every wait is bounded.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from cluster_fixtures import RedisCluster
from conftest import relay_info, wait_until
from fleetutil import expect_msgs, expect_quiet, msg, pmsg, read_msgs, sub
from resputil import Conn
from sentinel_fixtures import TLSFiles
from test_cluster import wait_cluster_up


@pytest.fixture(scope="module")
def pki():
    from test_tls import PKI
    p = PKI()
    yield p
    shutil.rmtree(p.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_cluster(redis_cluster_tools, pki):
    """One TLS-only cluster for the module; tests that change its settings put them back."""
    files = TLSFiles(pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key"),
                     pki.path("client.pem"), pki.path("client.key"), auth_clients="yes")
    c = RedisCluster(*redis_cluster_tools, tls=files)
    print("\nTLS cluster created in %.2f s" % c.creation_seconds)
    yield c
    c.stop()


def tls_env(pki, ca: str = "ca.pem", client_cert: bool = True, **extra) -> dict:
    env = {"RELAY_REDIS_TLS_CA_FILE": pki.path(ca), "RELAY_REDIS_BACKOFF_MAX": "500ms"}
    if client_cert:
        env.update(RELAY_REDIS_TLS_CERT_FILE=pki.path("client.pem"), RELAY_REDIS_TLS_KEY_FILE=pki.path("client.key"))
    env.update(extra)
    return env


def seed_ports(cluster: RedisCluster) -> list[int]:
    """The ports of the URL's seed nodes, in its order."""
    return [int(e.rsplit(":", 1)[1]) for e in cluster.seeds.split(",")]


def relay_connections(cluster: RedisCluster, relay) -> dict[int, list[tuple[str, int]]]:
    """node port -> (role, the node's port it reached) of each of `relay`'s connections to that
    node: the role (`sub`, `pub`, `control`) from the name the relay gives it
    (`pubsub-relay:<relay id>:<role>`), the port from `laddr`, in the node's CLIENT LIST (asked
    over TLS)."""
    prefix = "pubsub-relay:%s:" % relay_info(relay.socket)["redis_relay_id"]
    out = {}
    for port, node in cluster.nodes.items():
        listing = node.call("CLIENT", "LIST")
        assert isinstance(listing, bytes), "node %d: CLIENT LIST answered %r" % (port, listing)
        out[port] = []
        for line in listing.decode().splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            if fields.get("name", "").startswith(prefix):
                out[port].append((fields["name"][len(prefix):], int(fields["laddr"].rsplit(":", 1)[1])))
    return out


def relay_roles(cluster: RedisCluster, relay) -> dict[int, list[str]]:
    """node port -> the roles of `relay`'s connections to that node."""
    return {port: [role for role, _ in conns] for port, conns in relay_connections(cluster, relay).items()}


def wait_for_lines(relay, words: str, count: int = 1, timeout: float = 10.0) -> list[str]:
    """The relay's stderr lines holding `words`, once there are at least `count` of them."""
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= count else None)(
        [l for l in relay.stderr().splitlines() if words in l]), timeout, 0.05)
    assert lines, "not %d log line(s) with %r within %.0f s; stderr:\n%s" % (count, words, timeout, relay.stderr())
    return lines


def assert_undiscovered_and_serving(relay):
    """No slot map, no master, degraded — and still the apps' relay: PING, and a local PUBLISH
    reaches a local subscriber."""
    assert relay.proc.poll() is None, "relay exited with %s:\n%s" % (relay.proc.returncode, relay.stderr())
    info = relay_info(relay.socket)
    assert info["redis_topology"] == "cluster" and info["redis_state"] == "degraded", info
    assert info["redis_cluster_slot_map_version"] == "0" and info["redis_cluster_masters_connected"] == "0", info
    assert info["redis_last_error"].startswith("control connection to 127.0.0.1:"), info
    s = sub(relay.socket, "SUBSCRIBE", "tlsc:local")
    try:
        with Conn(relay.socket, timeout=5) as p:
            assert p.call("PING") == "PONG"
            assert p.call("PUBLISH", "tlsc:local", "here") == 1
        expect_msgs(s, [msg("tlsc:local", "here")], what="local delivery while undiscovered")
    finally:
        s.close()


def each_once_in_order_per_master(c: Conn, expected: list, master_of: dict, what: str):
    """Every frame of `expected` arrives once; those of one master's channels in their order.
    (Channels of different masters travel on different connections, so their relative order is
    not kept: README, "Redis Cluster".)"""
    got, status = read_msgs(c, len(expected), 5)
    assert sorted(got) == sorted(expected), "%s: expected %r\n got %r (%s)" % (what, expected, got, status)
    for port in set(master_of.values()):
        mine = lambda frames: [f for f in frames if master_of[f[-2]] == port]
        assert mine(got) == mine(expected), "%s: master %d's channels out of order: %r" % (what, port, mine(got))


def control_failures(relay, seed: int, reason: str, count: int = 1) -> list[str]:
    """The warnings of failed attempts of the control connection to seed node `seed` for `reason`."""
    lines = wait_for_lines(relay, "redis cluster: control connection to 127.0.0.1:%d lost: %s" % (seed, reason), count, 15)
    for line in lines:
        assert " warning " in line, line
    return lines


# ---- a fleet over TLS ---------------------------------------------------------------------------

def test_three_relays_discover_the_tls_cluster_and_cross_messages_on_every_master(tls_cluster, pki, relay_factory):
    """Relays A and B check each node's IP address against the certificate's IP SAN, C the name
    redis.test (RELAY_REDIS_TLS_SERVER_NAME). All three see the whole cluster. SUBSCRIBE on A
    and PSUBSCRIBE tlsp.* on C, PUBLISH on B over channels of every master: A gets every message
    once, C the matching ones (each master's in publishing order), PUBLISH answers 1 or 2. On the nodes: A holds a
    subscriber and B a publisher connection on every master, each relay one control connection,
    and the channels are shard channels of their masters."""
    cluster = tls_cluster
    url = cluster.url()
    assert url.startswith("rediss-cluster://127.0.0.1:"), url
    started = time.monotonic()
    a = relay_factory(dict(tls_env(pki), REDIS_URL=url))
    b = relay_factory(dict(tls_env(pki), REDIS_URL=url))
    c = relay_factory(dict(tls_env(pki, RELAY_REDIS_TLS_SERVER_NAME="redis.test"), REDIS_URL=url))
    for r in (a, b, c):
        info = wait_cluster_up(r, 3, 15)
        assert info["redis_cluster_nodes"] == "6" and info["redis_cluster_slots_complete"] == "1", info
    print("\nthree relays started and up on the TLS cluster (3 masters connected) in %.2f s" % (time.monotonic() - started))
    assert ("redis backplane over TLS: trusting 1 CA certificate from %s, client certificate %s, checking each node's host"
            % (pki.path("ca.pem"), pki.path("client.pem"))) in a.stderr(), a.stderr()
    assert "checking the name redis.test on every node" in c.stderr(), c.stderr()

    masters = [p for _, p in cluster.masters()]
    plain_spread = cluster.channels_on_each_master(3, prefix="tlsc")
    matched_spread = cluster.channels_on_each_master(2, prefix="tlsp.m")
    plain = [ch for p in masters for ch in plain_spread[p]]
    matched = [ch for p in masters for ch in matched_spread[p]]
    channels = plain + matched
    subscriber = sub(a.socket, "SUBSCRIBE", *channels)
    patterns = sub(c.socket, "PSUBSCRIBE", "tlsp.*")
    try:
        with Conn(b.socket, timeout=5) as p:
            counts = {ch: p.call("PUBLISH", ch, b"to:" + ch) for ch in channels}
        # A's subscriber, plus C's pattern for the tlsp.* channels: as one Redis would count.
        assert counts == {ch: (2 if ch in matched else 1) for ch in channels}, counts
        master_of = {ch: p for p in masters for ch in plain_spread[p] + matched_spread[p]}
        each_once_in_order_per_master(subscriber, [msg(ch, b"to:" + ch) for ch in channels], master_of, "SUBSCRIBE on A")
        each_once_in_order_per_master(patterns, [pmsg("tlsp.*", ch, b"to:" + ch) for ch in matched], master_of, "PSUBSCRIBE on C")
        expect_quiet(subscriber, 0.3, "SUBSCRIBE on A, after every message")
        expect_quiet(patterns, 0.1, "PSUBSCRIBE on C, after every matching message")

        roles = {name: relay_roles(cluster, r) for name, r in (("A", a), ("B", b), ("C", c))}
        print("connections per node (port -> roles): %r" % roles)
        for p in masters:
            assert roles["A"][p].count("sub") == 1, ("A's subscriber connections to master %d" % p, roles["A"])
            assert roles["B"][p].count("pub") == 1, ("B's publisher connections to master %d" % p, roles["B"])
            shard = cluster.nodes[p].call("PUBSUB", "SHARDCHANNELS")
            assert set(plain_spread[p] + matched_spread[p]) <= set(shard), (p, shard)
        for name, per_node in roles.items():
            assert sum(r.count("control") for r in per_node.values()) == 1, (name, per_node)
    finally:
        subscriber.close()
        patterns.close()


# ---- what fails, and how it says so ------------------------------------------------------------

def test_wrong_ca_leaves_the_relay_undiscovered_warning_per_node(tls_cluster, pki, relay_factory):
    """RELAY_REDIS_TLS_CA_FILE is another CA: each seed node's certificate is refused, each
    attempt warns naming the node, the rounds go on with the backoff, and the relay serves its
    apps without a map."""
    cluster = tls_cluster
    relay = relay_factory(dict(tls_env(pki, ca="other-ca.pem"), REDIS_URL=cluster.url()))
    first, second = seed_ports(cluster)
    reason = "TLS handshake with 127.0.0.1:%d failed: certificate is not signed by a trusted CA"
    lines = control_failures(relay, first, reason % first, count=2)
    control_failures(relay, second, reason % second)
    wait_for_lines(relay, "redis cluster: no node answered; asking again in")
    print("\n" + lines[0])
    assert_undiscovered_and_serving(relay)


def test_plaintext_cluster_url_to_the_tls_ports_says_use_rediss_cluster(tls_cluster, relay_factory):
    """`redis-cluster://` to nodes that have only tls-ports: Redis drops the plaintext
    connection without a word, and the warning names the node and the right scheme."""
    cluster = tls_cluster
    relay = relay_factory({"REDIS_URL": cluster.url("redis-cluster"), "RELAY_REDIS_BACKOFF_MAX": "500ms"})
    first, second = seed_ports(cluster)
    hint = "before it answered; if that port is a tls-port, use a rediss-cluster:// URL"
    lines = control_failures(relay, first, "", count=2)
    lines += control_failures(relay, second, "")
    for line in lines:
        assert hint in line, line
    print("\n" + lines[0])
    assert_undiscovered_and_serving(relay)


def test_client_certificate_required_then_optional_the_relay_joins_by_itself(tls_cluster, pki, relay_factory):
    """No RELAY_REDIS_TLS_CERT_FILE while the nodes have `tls-auth-clients yes`: refused, with
    the variables to set named. Once every node says `optional` (CONFIG SET), the same relay's
    next attempt discovers the cluster, and its subscriptions on every master carry what is
    SPUBLISHed on the nodes themselves."""
    cluster = tls_cluster
    relay = relay_factory(dict(tls_env(pki, client_cert=False), REDIS_URL=cluster.url()))
    first, _ = seed_ports(cluster)
    line = control_failures(relay, first, "TLS handshake with 127.0.0.1:%d failed: Redis requires a client certificate" % first)[0]
    assert "RELAY_REDIS_TLS_CERT_FILE" in line and "RELAY_REDIS_TLS_KEY_FILE" in line, line
    assert_undiscovered_and_serving(relay)
    try:
        for port, node in cluster.nodes.items():
            assert node.call("CONFIG", "SET", "tls-auth-clients", "optional") == "OK", port
        wait_cluster_up(relay, 3, 10)
        spread = cluster.channels_on_each_master(1, prefix="tlso")
        s = sub(relay.socket, "SUBSCRIBE", *[ch for names in spread.values() for ch in names])
        try:
            for port, names in spread.items():
                assert cluster.nodes[port].call("SPUBLISH", names[0], "from the node") == 1, (port, names)
                expect_msgs(s, [msg(names[0], "from the node")], what="SPUBLISH on master %d" % port)
            expect_quiet(s, 0.2, "after one message per master")
        finally:
            s.close()
    finally:
        for port, node in cluster.nodes.items():
            node.call("CONFIG", "SET", "tls-auth-clients", "yes")


def test_tls_settings_with_a_plaintext_cluster_url_stop_start_up_naming_rediss_cluster(relay_binary, pki):
    """A RELAY_REDIS_TLS_* variable with redis-cluster:// (a typo'd scheme) is refused by
    check-config with exit 78 and one line that points to rediss-cluster://, the password not
    shown; the same settings with rediss-cluster:// are accepted."""
    from conftest import relay_env
    env = tls_env(pki, RELAY_REDIS_TLS_SERVER_NAME="redis.test")

    def check(url: str):
        p = subprocess.run([relay_binary, "check-config"], env=relay_env(None, dict(env, REDIS_URL=url)),
                           capture_output=True, text=True, timeout=30)
        return p.returncode, [l for l in p.stderr.splitlines() if l.strip()]

    rc, lines = check("redis-cluster://:secret@127.0.0.1:7000,127.0.0.1:7001")
    print("\n%d %r" % (rc, lines))
    assert rc == 78 and len(lines) == 1, (rc, lines)
    assert lines[0].startswith("pubsub-relay: invalid configuration: RELAY_REDIS_TLS_"), lines
    assert "without TLS" in lines[0] and "use rediss-cluster://" in lines[0] and "secret" not in lines[0], lines
    assert check("rediss-cluster://:secret@127.0.0.1:7000,127.0.0.1:7001") == (0, []), "rediss-cluster:// refused"


# ---- a cluster that announces both ports ---------------------------------------------------------

def test_with_both_ports_announced_each_relay_connects_to_the_port_of_its_scheme(cluster_factory, pki, relay_factory):
    """Nodes with a plaintext port besides their tls-port, so CLUSTER SHARDS lists `port` and
    `tls-port`: a relay on rediss-cluster:// reaches every node it uses at its tls-port, one on
    redis-cluster:// (seeds at the plaintext ports) at its plaintext port, as `laddr` in the
    nodes' CLIENT LIST shows; and the two relays form one fleet across the two kinds of port."""
    files = TLSFiles(pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key"),
                     pki.path("client.pem"), pki.path("client.key"), auth_clients="yes")
    cluster = cluster_factory(tls=files, plaintext_ports=True)
    plain_of = {port: node.plain_port for port, node in cluster.nodes.items()}
    shard = cluster.nodes[seed_ports(cluster)[0]].call("CLUSTER", "SHARDS")
    node = shard[0][shard[0].index(b"nodes") + 1][0]
    assert b"port" in node and b"tls-port" in node, node
    over_tls = relay_factory(dict(tls_env(pki), REDIS_URL=cluster.url()))
    plain = relay_factory({"REDIS_URL": "redis-cluster://" + ",".join("127.0.0.1:%d" % plain_of[p] for p in seed_ports(cluster)),
                           "RELAY_REDIS_BACKOFF_MAX": "500ms"})
    for r in (over_tls, plain):
        wait_cluster_up(r, 3, 15)
    channels = [ch for names in cluster.channels_on_each_master(2, prefix="tlsmix").values() for ch in names]
    subs = [sub(over_tls.socket, "SUBSCRIBE", *channels), sub(plain.socket, "SUBSCRIBE", *channels)]
    try:
        for publisher in (over_tls, plain):
            with Conn(publisher.socket, timeout=5) as p:
                for ch in channels:
                    assert p.call("PUBLISH", ch, b"via " + publisher.socket.encode()) == 2, ch
        for s in subs:
            got, status = read_msgs(s, 2 * len(channels), 5)
            assert sorted(got) == sorted(msg(ch, b"via " + r.socket.encode()) for r in (over_tls, plain) for ch in channels), (status, got)
            expect_quiet(s, 0.2, "after every message")
        for relay, expected_port in ((over_tls, lambda p: p), (plain, lambda p: plain_of[p])):
            conns = relay_connections(cluster, relay)
            print("\n%s: (role, port reached) per node %r" % (relay_info(relay.socket)["redis_url"], conns))
            for _, master in cluster.masters():
                assert {role for role, _ in conns[master]} >= {"sub", "pub"}, (master, conns[master])
            for port, per_node in conns.items():
                assert all(reached == expected_port(port) for _, reached in per_node), (port, expected_port(port), per_node)
    finally:
        for s in subs:
            s.close()
