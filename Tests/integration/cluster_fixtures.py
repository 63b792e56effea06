"""A real Redis Cluster for the tests: 3 masters and 3 replicas (`cluster-enabled yes`) on free
127.0.0.1 ports, made by `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, each
node a redis-server started and stopped by its PID in its own temporary directory
(`appendonly no`, `save ""`, diskless replication without delay).

`RedisCluster` is the deployment; its helpers answer what the cluster itself says (CLUSTER SLOTS,
CLUSTER NODES, CLUSTER KEYSLOT, ROLE) and change it the way operators do: `reshard` runs
`redis-cli --cluster reshard`, `failover` sends `CLUSTER FAILOVER` to a replica, `kill_master`
sends SIGKILL to a master. Every wait is bounded; times are `time.monotonic()`, the clock the
tests measure with.

With `tls` (sentinel_fixtures' `TLSFiles`), the same cluster over TLS only (README, "Redis
Cluster", rediss-cluster://): each node has `port 0` and a `tls-port`, talks to the others over
TLS (`tls-cluster yes`, so its cluster bus is the tls-port + 10000, `tls-replication yes`),
asks clients for certificates (`tls-auth-clients`, `yes` or `optional` as the files say), and
the tests' own commands and redis-cli (`--tls --cacert --cert --key`) go over TLS too. With
`plaintext_ports` as well, each node also listens on a plaintext port (`ClusterNode.plain_port`),
so the cluster announces both and a client must pick the one of its kind.

Fixtures: `redis_cluster` (session; for tests that leave the topology alone) and
`cluster_factory` (per test; for tests that reshard or fail over).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import cpu_seconds, require_tool, short_tmpdir, stop_pid
from resputil import Incomplete, cmd, frame_end, parse1
from sentinel_fixtures import TLSFiles

SLOTS = 16384
DEFAULT_NODE_TIMEOUT_MS = 1000


def free_cluster_port(taken: set[int]) -> int:
    """A port P with P and its cluster bus port P+10000 both free. Chosen below the kernel's
    ephemeral range (32768-60999) so neither collides with an outgoing connection's port."""
    for _ in range(200):
        port = random.randint(10000, 22700)
        if port in taken or port + 10000 in taken:
            continue
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        taken.update((port, port + 10000))
        return port
    raise RuntimeError("no free port pair (P, P+10000) found in 200 tries")


class NodeConn:
    """A raw RESP2 connection to one node over TCP, or over TLS with `tls` (the tests' own
    commands; no redis-py)."""

    def __init__(self, port: int, timeout: float = 2.0, tls: TLSFiles | None = None):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            try:
                self.sock = tls.wrap(self.sock)   # the handshake, within `timeout`
            except OSError:
                self.sock.close()
                raise
        self.buf = b""

    def call(self, *args, timeout: float = 2.0):
        self.sock.sendall(cmd(*args))
        return self.read(timeout)

    def read(self, timeout: float = 2.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                end = frame_end(self.buf, 0)
                frame, self.buf = self.buf[:end], self.buf[end:]
                return parse1(frame)
            except Incomplete:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("node %d: no reply within %.1f s" % (self.port, timeout))
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("node %d closed the connection" % self.port)
            self.buf += data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def node_call(port: int, *args, timeout: float = 2.0, tls: TLSFiles | None = None):
    """One command on a fresh connection (TLS with `tls`); None when the node cannot be reached."""
    try:
        c = NodeConn(port, timeout, tls)
    except OSError:
        return None
    try:
        return c.call(*args, timeout=timeout)
    except (OSError, TimeoutError, ConnectionError):
        return None
    finally:
        c.close()


def wait_for(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not within %.1f s (last %r)" % (what, timeout, last))
        time.sleep(interval)


def info_dict(reply) -> dict:
    if not isinstance(reply, bytes):
        return {}
    out = {}
    for line in reply.decode("utf-8", "replace").splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def slot_owners(port: int, tls: TLSFiles | None = None) -> dict[int, int] | None:
    """slot -> master port, as `port` sees it (CLUSTER SLOTS); None if unreachable. (To a TLS
    client a TLS-only cluster answers its tls-ports.)"""
    reply = node_call(port, "CLUSTER", "SLOTS", tls=tls)
    if not isinstance(reply, list):
        return None
    out = {}
    for entry in reply:
        start, end, master = entry[0], entry[1], entry[2]
        for s in range(start, end + 1):
            out[s] = int(master[1])
    return out


def ranges(slots) -> list[tuple[int, int]]:
    """Sorted slots as inclusive (first, last) ranges."""
    out: list[tuple[int, int]] = []
    for s in sorted(slots):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class ClusterNode:
    """One redis-server of the cluster on 127.0.0.1:<port> (its tls-port with `tls`, the plaintext
    port then `plain_port` or none), restartable on that port with its nodes.conf (so it rejoins
    as the node it was)."""

    def __init__(self, binary: str, root: str, port: int, node_timeout_ms: int, extra: list[str],
                 tls: TLSFiles | None = None, plain_port: int | None = None):
        self.binary, self.port, self.tls, self.plain_port = binary, port, tls, plain_port
        self.dir = os.path.join(root, str(port))
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "redis.conf")
        settings = [("port", str(port))]
        if tls:
            settings = [(k, str(plain_port) if k == "port" and plain_port else v) for k, v in tls.server_settings(port)]
            settings.append(("tls-cluster", "yes"))
        with open(self.conf, "w") as f:
            for k, v in settings:
                f.write("%s %s\n" % (k, v))
            f.write("bind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir %s\n" % self.dir)
            f.write("cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout %d\n" % node_timeout_ms)
            # A replica may always take over (no data-age check) and stays with its master, so the
            # topology changes only when a test changes it.
            f.write("cluster-replica-validity-factor 0\ncluster-allow-replica-migration no\n")
            f.write("appendonly no\nsave \"\"\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\n")
            for line in extra:
                f.write(line + "\n")
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.last_cpu = 0.0
        self.id = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        assert not self.running(), "node %d still running (pid %d)" % (self.port, self.proc.pid)
        self.generation += 1
        log = open(os.path.join(self.dir, "redis-%d.log" % self.generation), "wb")
        self.proc = subprocess.Popen([self.binary, self.conf], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()

    def wait_accepting(self, timeout: float = 10.0):
        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server on %d exited with %s:\n%s" % (self.port, self.proc.returncode, self.log_tail()))
            return node_call(self.port, "PING", timeout=0.5, tls=self.tls) == "PONG"
        wait_for(up, timeout, "node %d accepting" % self.port, interval=0.01)

    def call(self, *args, timeout: float = 2.0):
        return node_call(self.port, *args, timeout=timeout, tls=self.tls)

    def role(self) -> str | None:
        r = self.call("ROLE")
        return r[0].decode() if isinstance(r, list) else None

    def cpu(self) -> float:
        if self.running():
            try:
                self.last_cpu = cpu_seconds(self.proc.pid)
            except OSError:
                pass
        return self.last_cpu

    def kill9(self):
        if self.running():
            self.cpu()
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self):
        if self.proc is not None:
            if self.running():
                self.cpu()
            stop_pid(self.proc)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(os.path.join(self.dir, "redis-%d.log" % self.generation), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""


class SlotMove:
    """Slots first..last moved from one master to another; `finished`: the first time (monotonic)
    the source was seen no longer serving the last of them (the moment its shard subscribers of
    those slots are unsubscribed)."""

    def __init__(self, first: int, last: int, finished: float):
        self.first, self.last, self.finished = first, last, finished

    def __repr__(self):
        return "SlotMove(%d-%d, finished=%.3f)" % (self.first, self.last, self.finished)


class Reshard:
    """The result of `RedisCluster.reshard`: the moved ranges, and per slot when it left the source."""

    def __init__(self, source: int, target: int, started: float, ended: float, slot_finished: dict[int, float],
                 poll_gaps: list[float], output: str):
        self.source, self.target, self.started, self.ended = source, target, started, ended
        self.slot_finished = slot_finished
        self.poll_gaps = poll_gaps
        self.output = output
        self.moves = []
        for first, last in ranges(slot_finished):
            self.moves.append(SlotMove(first, last, max(slot_finished[s] for s in range(first, last + 1))))


class RedisCluster:
    """3 masters (by default) with one replica each, all on 127.0.0.1. `nodes`: port -> ClusterNode.
    With `tls`, the ports are the nodes' tls-ports, and the only ones unless `plaintext_ports`."""

    def __init__(self, server: str, cli: str, masters: int = 3, node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
                 extra: list[str] | None = None, tls: TLSFiles | None = None, plaintext_ports: bool = False):
        assert tls or not plaintext_ports, "plaintext_ports: a TLS cluster's nodes also on plaintext ports"
        self.server, self.cli, self.tls = server, cli, tls
        self.node_timeout_ms = node_timeout_ms
        self.root = short_tmpdir("rit-cluster-")
        taken: set[int] = set()
        ports = [free_cluster_port(taken) for _ in range(masters * 2)]
        plain = {p: free_cluster_port(taken) if plaintext_ports else None for p in ports}
        self.nodes = {p: ClusterNode(server, self.root, p, node_timeout_ms, extra or [], tls, plain[p]) for p in ports}
        started = time.monotonic()
        try:
            for n in self.nodes.values():
                n.start()
            for n in self.nodes.values():
                n.wait_accepting()
            out = subprocess.run([cli] + self.cli_tls + ["--cluster", "create"] + ["127.0.0.1:%d" % p for p in ports]
                                 + ["--cluster-replicas", "1", "--cluster-yes"],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode != 0 or "[OK] All 16384 slots covered" not in out.stdout:
                raise RuntimeError("redis-cli --cluster create failed (exit %d):\n%s%s" % (out.returncode, out.stdout, out.stderr))
            self.wait_healthy(30)
        except Exception:
            self.stop()
            raise
        self.creation_seconds = time.monotonic() - started

    @property
    def cli_tls(self) -> list[str]:
        """redis-cli's TLS options for this cluster (none for a plaintext one)."""
        if not self.tls:
            return []
        return ["--tls", "--cacert", self.tls.ca, "--cert", self.tls.client_cert, "--key", self.tls.client_key]

    def conn(self, port: int, timeout: float = 2.0) -> NodeConn:
        """A connection of the tests' own to node `port` (TLS on a TLS cluster)."""
        return NodeConn(port, timeout, self.tls)

    # ---- what the cluster says ----

    def live(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.running()]

    def topology(self, port: int | None = None) -> list[dict]:
        """CLUSTER NODES as seen by `port` (default: any live node): dicts with id, port, flags,
        master (id or '-'), connected, slots."""
        for n in ([self.nodes[port]] if port else self.live()):
            reply = n.call("CLUSTER", "NODES")
            if port and not isinstance(reply, bytes):
                raise AssertionError("node %d does not answer CLUSTER NODES (%r)" % (port, reply))
            if isinstance(reply, bytes):
                out = []
                for line in reply.decode().splitlines():
                    f = line.split()
                    addr = f[1].split("@")[0]
                    out.append({"id": f[0], "port": int(addr.rsplit(":", 1)[1]), "flags": f[2].split(","),
                                "master": f[3], "connected": f[7] == "connected", "slots": f[8:]})
                return out
        raise AssertionError("no live node answers CLUSTER NODES")

    def masters(self) -> list[tuple[str, int]]:
        """(node id, port) of every master that holds slots and is not failed, by port."""
        return sorted(((t["id"], t["port"]) for t in self.topology()
                       if "master" in t["flags"] and "fail" not in t["flags"] and t["slots"]), key=lambda x: x[1])

    def replicas(self) -> list[tuple[str, int, str]]:
        """(node id, port, master id) of every replica that is not failed."""
        return sorted(((t["id"], t["port"], t["master"]) for t in self.topology()
                       if "slave" in t["flags"] and "fail" not in t["flags"]), key=lambda x: x[1])

    def node_id(self, port: int) -> str:
        return next(t["id"] for t in self.topology() if t["port"] == port)

    def port_of(self, node_id: str) -> int:
        return next(t["port"] for t in self.topology() if t["id"] == node_id)

    def replica_of(self, master_port: int) -> int:
        mid = self.node_id(master_port)
        return next(p for _, p, m in self.replicas() if m == mid)

    def slot_map(self) -> dict[int, int]:
        for n in self.live():
            m = slot_owners(n.port, self.tls)
            if m:
                return m
        raise AssertionError("no live node answers CLUSTER SLOTS")

    def master_for_slot(self, slot: int) -> int:
        """The port of the master serving `slot`."""
        return self.slot_map()[slot]

    def slot_of(self, key) -> int:
        for n in self.live():
            r = n.call("CLUSTER", "KEYSLOT", key)
            if isinstance(r, int):
                return r
        raise AssertionError("no live node answers CLUSTER KEYSLOT")

    def slots_of(self, keys: list) -> list[int]:
        """CLUSTER KEYSLOT for many keys, pipelined on one connection."""
        c = self.conn(self.live()[0].port)
        try:
            c.sock.sendall(b"".join(cmd("CLUSTER", "KEYSLOT", k) for k in keys))
            return [c.read(5) for _ in keys]
        finally:
            c.close()

    def channels_on_each_master(self, n: int, prefix: str = "ch") -> dict[int, list[bytes]]:
        """master port -> `n` channel names `<prefix>:<i>` whose slots that master serves."""
        owners = self.slot_map()
        want = {p: [] for _, p in self.masters()}
        i = 0
        while any(len(v) < n for v in want.values()):
            batch = [("%s:%d" % (prefix, j)).encode() for j in range(i, i + 512)]
            for name, slot in zip(batch, self.slots_of(batch)):
                lst = want.get(owners[slot])
                if lst is not None and len(lst) < n:
                    lst.append(name)
            i += 512
            assert i < 1_000_000, "could not spread channels over the masters: %r" % {p: len(v) for p, v in want.items()}
        return want

    @property
    def seeds(self) -> str:
        ports = sorted(self.nodes)[:2]
        return ",".join("127.0.0.1:%d" % p for p in ports)

    def url(self, scheme: str | None = None) -> str:
        """`redis-cluster://<seeds>`, or `rediss-cluster://<seeds>` for a TLS cluster."""
        return "%s://%s" % (scheme or ("rediss-cluster" if self.tls else "redis-cluster"), self.seeds)

    def cpu_seconds_total(self) -> float:
        """User + system CPU of every node process so far (killed ones: up to their kill)."""
        return sum(n.cpu() for n in self.nodes.values())

    def healthy(self, require_replicas: bool = True):
        """Every live node says cluster_state:ok, knows every node, and shows the same slot map
        covering all 16384 slots; with `require_replicas`, every live replica's link to its
        master is up. Returns the slot map, or False."""
        live = self.live()
        maps = []
        for n in live:
            info = info_dict(n.call("CLUSTER", "INFO"))
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                return False
            m = slot_owners(n.port, self.tls)
            if m is None or len(m) != SLOTS:
                return False
            maps.append(m)
        if any(m != maps[0] for m in maps[1:]):
            return False
        # Every node also agrees on who replicates whom (a failover is over for all of them).
        roles = []
        for n in live:
            try:
                roles.append(sorted((t["id"], "master" in t["flags"], t["master"]) for t in self.topology(n.port)))
            except AssertionError:
                return False
        if any(r != roles[0] for r in roles[1:]):
            return False
        if require_replicas:
            for n in live:
                if n.port in set(maps[0].values()):
                    continue
                if info_dict(n.call("INFO", "replication")).get("master_link_status") != "up":
                    return False
        return maps[0]

    def wait_healthy(self, timeout: float = 30.0, require_replicas: bool = True) -> dict[int, int]:
        return wait_for(lambda: self.healthy(require_replicas), timeout, "cluster healthy", interval=0.02)

    # ---- changing it ----

    def reshard(self, from_id: str, to_id: str, nslots: int, timeout: float = 120.0, poll_interval: float = 0.005) -> Reshard:
        """`redis-cli --cluster reshard` of `nslots` slots from `from_id` to `to_id`. A poller
        watches the source's CLUSTER SLOTS meanwhile and records, per slot, the first time it was
        seen gone from the source (resolution: the poll's round trip, `poll_gaps`). Returns when
        redis-cli is done and the cluster is healthy again."""
        source, target = self.port_of(from_id), self.port_of(to_id)
        before = {s for s, p in slot_owners(source, self.tls).items() if p == source}
        slot_finished: dict[int, float] = {}
        poll_gaps: list[float] = []
        stop = threading.Event()
        errors: list[str] = []

        def poll():
            conn = self.conn(source)
            held = set(before)
            last = time.monotonic()
            try:
                while True:
                    done = stop.is_set()
                    reply = conn.call("CLUSTER", "SLOTS")
                    now = time.monotonic()
                    poll_gaps.append(now - last)
                    last = now
                    mine = set()
                    for entry in reply:
                        if int(entry[2][1]) == source:
                            mine.update(range(entry[0], entry[1] + 1))
                    for s in held - mine:
                        slot_finished[s] = now
                    held &= mine
                    if done or not held:
                        return
                    time.sleep(poll_interval)
            except Exception as e:   # reported by reshard(), not lost in the thread
                errors.append(repr(e))
            finally:
                conn.close()

        poller = threading.Thread(target=poll, daemon=True)
        started = time.monotonic()
        poller.start()
        out = subprocess.run([self.cli] + self.cli_tls + ["--cluster", "reshard", "127.0.0.1:%d" % source, "--cluster-from", from_id,
                              "--cluster-to", to_id, "--cluster-slots", str(nslots), "--cluster-yes"],
                             capture_output=True, text=True, timeout=timeout)
        ended = time.monotonic()
        # The last SETSLOT may land just before redis-cli exits: let the poller see it.
        wait_for(lambda: len(slot_finished) >= nslots or not poller.is_alive(), 5, "poller saw every moved slot")
        stop.set()
        poller.join(5)
        assert out.returncode == 0, "redis-cli --cluster reshard failed (exit %d):\n%s%s" % (out.returncode, out.stdout[-3000:], out.stderr)
        assert not errors, "slot poller failed: %r" % errors
        self.wait_healthy(30)
        after = slot_owners(target, self.tls)
        moved = {s for s in before if after.get(s) == target}
        assert len(moved) == nslots and set(slot_finished) == moved, (
            "reshard moved %d slots to %d (asked %d); poller saw %d" % (len(moved), target, nslots, len(slot_finished)))
        return Reshard(source, target, started, ended, slot_finished, poll_gaps, out.stdout)

    def failover(self, replica_port: int, timeout: float = 20.0) -> float:
        """`CLUSTER FAILOVER` on a replica; returns the time (monotonic) it was first seen as
        master (ROLE), once the whole cluster agrees and is healthy. A manual failover that does
        not complete (Redis gives up after 5 s) is asked again."""
        node = self.nodes[replica_port]
        assert node.role() == "slave", "node %d is not a replica" % replica_port
        deadline = time.monotonic() + timeout
        took_over = None
        while took_over is None:
            assert time.monotonic() < deadline, "CLUSTER FAILOVER on %d: not master within %.0f s" % (replica_port, timeout)
            reply = node.call("CLUSTER", "FAILOVER")
            assert reply == "OK", "CLUSTER FAILOVER on %d answered %r" % (replica_port, reply)
            retry_at = time.monotonic() + 6
            c = self.conn(replica_port)
            try:
                while time.monotonic() < min(retry_at, deadline):
                    r = c.call("ROLE")
                    if r[0] == b"master":
                        took_over = time.monotonic()
                        break
                    time.sleep(0.002)
            finally:
                c.close()
        self.wait_healthy(max(5.0, deadline - time.monotonic()))
        return took_over

    def kill_master(self, master_port: int, timeout: float = 30.0) -> tuple[int, float, float]:
        """SIGKILL of a master; waits until its replica is promoted (ROLE polled on it). Returns
        (the promoted port, the kill time, the promotion time); returns once the live nodes agree
        and are healthy (the killed node stays known as failed)."""
        replica = self.replica_of(master_port)
        c = self.conn(replica)
        try:
            killed = time.monotonic()
            self.nodes[master_port].kill9()
            deadline = killed + timeout
            while True:
                r = c.call("ROLE")
                if r[0] == b"master":
                    promoted = time.monotonic()
                    break
                assert time.monotonic() < deadline, "replica %d not promoted within %.0f s of killing %d" % (replica, timeout, master_port)
                time.sleep(0.002)
        finally:
            c.close()
        wait_for(lambda: self.healthy(require_replicas=False), 30, "cluster healthy without %d" % master_port)
        return replica, killed, promoted

    def restart(self, port: int, timeout: float = 30.0):
        """Starts a stopped or killed node again on its port (it rejoins with its nodes.conf, as
        a replica if it was failed over) and waits until the cluster is healthy with it."""
        node = self.nodes[port]
        node.kill9()
        node.start()
        node.wait_accepting()
        self.wait_healthy(timeout)

    def stop(self):
        for n in self.nodes.values():
            n.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster_tools(redis_server_binary):
    cli = require_tool("redis-cli", "apt-get install redis-tools")
    return redis_server_binary, cli


@pytest.fixture(scope="session")
def redis_cluster(redis_cluster_tools):
    """One cluster shared by the tests that do not change its topology."""
    c = RedisCluster(*redis_cluster_tools)
    yield c
    c.stop()


@pytest.fixture
def cluster_factory(redis_cluster_tools):
    """start(node_timeout_ms=1000, masters=3, extra=None, tls=None, plaintext_ports=False): a new
    cluster (over TLS with `tls`), stopped at the end of the test."""
    started: list[RedisCluster] = []

    def start(node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS, masters: int = 3, extra: list[str] | None = None,
              tls: TLSFiles | None = None, plaintext_ports: bool = False) -> RedisCluster:
        c = RedisCluster(*redis_cluster_tools, masters=masters, node_timeout_ms=node_timeout_ms, extra=extra, tls=tls,
                         plaintext_ports=plaintext_ports)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()
