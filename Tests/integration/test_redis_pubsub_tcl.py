"""Redis's own pub/sub tests (tests/unit/pubsub.tcl and tests/unit/pubsubshard.tcl of Redis 7.0.15,
Debian's `redis` source package) run by Redis's own `./runtest` as an external server against:

* [redis-server]  a real redis-server: the reference, every test of the file must pass;
* [relay-local]   the relay with no backplane;
* [relay-fleet]   the relay with REDIS_URL set to a redis-server this test starts.

The source tree comes from `scripts/redis-tests-src` (run by `scripts/install-deps --test`); when
it is missing the test is skipped and says how to fetch it. Against the relay the tests that need
commands the relay does not carry (OUT_OF_SCOPE, with the reason for each) are skipped by name with
runtest's `--skiptest`; every other test must pass, and the number that ran is checked, so a test
that silently does not run fails this one. unit/pubsubshard.tcl is tagged `external:skip` as a
whole in 7.0.15: its wrappers disregard that tag (redis_tcl/external_pubsubshard.tcl), and the two
tests that need a second server replicating the first are skipped by name on every target.

runtest speaks TCP: the relay listens on a port of its own (RELAY_TCP_ADDR), the reference
redis-server on its Unix socket behind a TcpBridge (see there for why not socat).
"""
from __future__ import annotations

import os
import re
from collections import Counter
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import PACKAGE_ROOT, Relay, RedisServer, short_tmpdir, stop_pid, wait_redis_state

RUNTEST_TIMEOUT = 240          # seconds for one runtest run (about 2 s on a quiet machine)
PROBE_TIMEOUT = 10.0

# Every test of unit/pubsub.tcl in Redis 7.0.15, in file order.
IN_SCOPE = (
    "Pub/Sub PING",
    "PUBLISH/SUBSCRIBE basics",
    "PUBLISH/SUBSCRIBE with two clients",
    "PUBLISH/SUBSCRIBE after UNSUBSCRIBE without arguments",
    "SUBSCRIBE to one channel more than once",
    "UNSUBSCRIBE from non-subscribed channels",
    "PUBLISH/PSUBSCRIBE basics",
    "PUBLISH/PSUBSCRIBE with two clients",
    "PUBLISH/PSUBSCRIBE after PUNSUBSCRIBE without arguments",
    "PUNSUBSCRIBE from non-subscribed channels",
    "NUMSUB returns numbers, not strings (#1561)",   # Redis's own test name
    "NUMPATs returns the number of unique patterns",
    "Mix SUBSCRIBE and PSUBSCRIBE",
    "PUNSUBSCRIBE and UNSUBSCRIBE should always reply",
)

_KEYSPACE = "CONFIG SET notify-keyspace-events and keyspace commands (%s): the relay has no keyspace, so no keyspace events"
OUT_OF_SCOPE = {
    "PubSub messages with CLIENT REPLY OFF": "CLIENT REPLY OFF (the relay does not carry CLIENT REPLY)",
    "Keyspace notifications: we receive keyspace notifications": _KEYSPACE % "SET; CLIENT REPLY OFF",
    "Keyspace notifications: we receive keyevent notifications": _KEYSPACE % "SET; CLIENT REPLY SKIP",
    "Keyspace notifications: we can receive both kind of events": _KEYSPACE % "SET; CLIENT REPLY ON",
    "Keyspace notifications: we are able to mask events": _KEYSPACE % "DEL, SET, LPUSH",
    "Keyspace notifications: general events test": _KEYSPACE % "SET, EXPIRE, DEL",
    "Keyspace notifications: list events test": _KEYSPACE % "DEL, LPUSH, RPUSH, RPOP",
    "Keyspace notifications: set events test": _KEYSPACE % "DEL, SADD, SREM",
    "Keyspace notifications: zset events test": _KEYSPACE % "DEL, ZADD, ZREM",
    "Keyspace notifications: hash events test": _KEYSPACE % "DEL, HMSET, HINCRBY",
    "Keyspace notifications: stream events test": _KEYSPACE % "DEL, XGROUP, XADD, XREADGROUP, XCLAIM, XAUTOCLAIM",
    "Keyspace notifications: expired events (triggered expire)": _KEYSPACE % "DEL, PSETEX, EXISTS",
    "Keyspace notifications: expired events (background expire)": _KEYSPACE % "DEL, PSETEX",
    "Keyspace notifications: evicted events": _KEYSPACE % "CONFIG SET maxmemory and maxmemory-policy, FLUSHDB, SET",
    "Keyspace notifications: test CONFIG GET/SET of event flags": "CONFIG SET / CONFIG GET only (the relay does not carry CONFIG)",
    "Keyspace notifications: new key test": _KEYSPACE % "SET",
}

# Every test of unit/pubsubshard.tcl in Redis 7.0.15, in file order ("SPUBLISH/SSUBSCRIBE with two
# clients" is there twice, with different bodies: both run).
SHARD_IN_SCOPE = (
    "SPUBLISH/SSUBSCRIBE basics",
    "SPUBLISH/SSUBSCRIBE with two clients",
    "SPUBLISH/SSUBSCRIBE after UNSUBSCRIBE without arguments",
    "SSUBSCRIBE to one channel more than once",
    "SUNSUBSCRIBE from non-subscribed channels",
    "PUBSUB command basics",
    "SPUBLISH/SSUBSCRIBE with two clients",
    "SPUBLISH/SSUBSCRIBE with PUBLISH/SUBSCRIBE",
)
SHARD_OUT_OF_SCOPE = {
    "PubSubShard with CLIENT REPLY OFF": "CLIENT REPLY OFF (the relay does not carry CLIENT REPLY)",
}
# Skipped on every target, the reference included.
_REPLICATION = ("a second server replicating the first (REPLICAOF, wait_for_sync): runtest's external-server "
                "mode has one server, which the file's nested start_server blocks would both name")
SHARD_NEEDS_TWO_SERVERS = {
    "setup replication for following tests": _REPLICATION,
    "publish message to master and receive on replica": _REPLICATION,
}

REDIS_TCL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "redis_tcl")


class Suite:
    """One file of Redis's tests: every test in it (`tests`, in file order, repeats kept), the
    ones skipped on every target and those skipped against the relay (name -> reason), and what
    runtest's `--single` loads for the reference and for the relay (a wrapper in redis_tcl/, or
    Redis's own file)."""

    def __init__(self, name: str, in_scope, relay_only_skips: dict, everywhere_skips: dict,
                 reference_wrapper: str | None, relay_wrapper: str):
        self.name = name
        self.relay_only_skips = relay_only_skips
        self.everywhere_skips = everywhere_skips
        self.tests = Counter(in_scope) + Counter(list(relay_only_skips)) + Counter(list(everywhere_skips))
        self.reference_wrapper = reference_wrapper
        self.relay_wrapper = relay_wrapper

    def single(self, tree: str, target: str) -> str:
        wrapper = self.reference_wrapper if target == "redis-server" else self.relay_wrapper
        if wrapper is None:
            return self.name
        return os.path.relpath(os.path.join(REDIS_TCL, wrapper[:-len(".tcl")]), os.path.join(tree, "tests"))

    def skips(self, target: str) -> dict:
        return dict(self.everywhere_skips, **({} if target == "redis-server" else self.relay_only_skips))


# unit/pubsub: Redis's file as it is for the reference; against the relay runtest's external-server
# set-up minus its FLUSHALL / FUNCTION FLUSH (redis_tcl/relay_external_server.tcl), then the file.
PUBSUB = Suite("unit/pubsub", IN_SCOPE, OUT_OF_SCOPE, {}, None, "relay_pubsub.tcl")
# unit/pubsubshard: the file's external:skip tag disregarded on every target
# (redis_tcl/external_pubsubshard.tcl), and for the relay the same set-up as above.
PUBSUBSHARD = Suite("unit/pubsubshard", SHARD_IN_SCOPE, SHARD_OUT_OF_SCOPE, SHARD_NEEDS_TWO_SERVERS,
                    "pubsubshard.tcl", "relay_pubsubshard.tcl")


# ---- the Redis source tree ------------------------------------------------------------------

def redis_tests_tree() -> str | None:
    """The unpacked Debian `redis` source (holding runtest, tests/unit/pubsub.tcl and
    tests/unit/pubsubshard.tcl), or None."""
    r = subprocess.run([str(PACKAGE_ROOT / "scripts" / "redis-tests-src"), "--path"],
                       capture_output=True, text=True, timeout=30)
    path = r.stdout.strip()
    if r.returncode == 0 and path and all(os.path.isfile(os.path.join(path, "tests", "unit", f))
                                          for f in ("pubsub.tcl", "pubsubshard.tcl")):
        return path
    return None


@pytest.fixture(scope="module")
def redis_tree() -> str:
    if not shutil.which("tclsh8.6") and not shutil.which("tclsh8.5") and not shutil.which("tclsh8.7"):
        pytest.skip("tclsh 8.5+ not installed (apt-get install tcl; scripts/install-deps --test installs it)")
    tree = redis_tests_tree()
    if tree is None:
        pytest.skip("Redis's Tcl test suite not found (fetch it with scripts/redis-tests-src, "
                    "which scripts/install-deps --test runs: apt-get source redis into a cache dir)")
    return tree


# ---- TCP endpoints ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_ping(port: int, timeout: float = PROBE_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    """Waits until 127.0.0.1:port answers PING with +PONG."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process %d exited with %s before 127.0.0.1:%d answered" % (proc.pid, proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
                last = "no +PONG"
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError("127.0.0.1:%d does not answer PING after %.0fs (%s)" % (port, timeout, last))


class TcpBridge:
    """127.0.0.1:<port> forwarded to a Unix socket by one thread of this process, for servers that
    only listen on a Unix socket.

    Why not `socat TCP-LISTEN:…,fork UNIX-CONNECT:…`: socat forwards each connection in its own
    forked process, so bytes sent on two connections one after the other can reach the server in
    the other order. unit/pubsub.tcl relies on that order: `unsubscribe $rd1` and
    `punsubscribe $rd1` without arguments read no confirmation before the next line's
    `r publish` on another connection, which must then count 0. Through socat one of those two
    tests failed in 4 of 86 runs, against redis-server and against the relay alike (and in none
    of 30 over a direct TCP connection to redis-server). One thread waiting on every socket
    forwards bytes in the order they became readable (epoll's ready list is in arrival order), as
    a server reading its clients directly sees them: none failed in 140 runs through it."""

    def __init__(self, unix_path: str):
        self.unix_path = unix_path
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="tcp-bridge-%d" % self.port, daemon=True)
        self.thread.start()
        tcp_ping(self.port)

    def _close_pair(self, a: socket.socket, b: socket.socket):
        for s in (a, b):
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _run(self):
        try:
            while not self.stopping.is_set():
                for key, _ in self.sel.select(0.1):
                    if key.data is None:
                        tcp, _ = self.listener.accept()
                        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        try:
                            unix.connect(self.unix_path)
                        except OSError:
                            tcp.close()
                            unix.close()
                            continue
                        self.sel.register(tcp, selectors.EVENT_READ, unix)
                        self.sel.register(unix, selectors.EVENT_READ, tcp)
                        continue
                    src, dst = key.fileobj, key.data
                    try:
                        data = src.recv(65536)
                        if data:
                            dst.sendall(data)   # blocking: these tests move a few KB at most
                            continue
                    except OSError:
                        pass
                    self._close_pair(src, dst)
        except BaseException as e:  # reported by stop()
            self.error = e

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()
        assert self.error is None, "TCP bridge failed: %r" % self.error


def relay_tcp_endpoint(relay_binary: str, env: dict, stops: list) -> tuple[Relay, int, str]:
    """A relay listening on a TCP port of its own (RELAY_TCP_ADDR): (relay, port, how)."""
    port = free_port()
    relay = Relay(relay_binary, dict(env, RELAY_TCP_ADDR="127.0.0.1:%d" % port))
    stops.append(relay.cleanup)
    tcp_ping(port, proc=relay.proc)
    return relay, port, "RELAY_TCP_ADDR"


# ---- runtest ----------------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"^\[(ok|err|skip|ignore|exception)\]: (.*)$")


def parse_runtest(output: str) -> dict:
    """runtest's per-test lines: {'ok': [names], 'err': [names], 'skip': [...], 'ignore': [...],
    'exception': [first lines]} plus 'passed_all' (the final summary) and 'failed_summary'."""
    res = {"ok": [], "err": [], "skip": [], "ignore": [], "exception": [], "failed_summary": []}
    in_summary = False
    for raw in ANSI.sub("", output).splitlines():
        if "The following tests failed:" in raw:
            in_summary = True
            continue
        if in_summary and raw.startswith("*** [err]: "):
            res["failed_summary"].append(re.sub(r" in \S+\.tcl$", "", raw[len("*** [err]: "):]))
            continue
        m = LINE.match(raw)
        if not m:
            continue
        kind, data = m.groups()
        if kind == "ok":
            data = re.sub(r" \(\d+ ms\)$", "", data)
        elif kind == "err":
            data = re.sub(r" in \S+\.tcl$", "", data)
        elif kind == "ignore":
            data = data.rsplit(": ", 1)[0]
        res[kind].append(data)
    res["passed_all"] = "All tests passed without errors!" in output
    return res


def run_runtest(tree: str, port: int, single: str, skips: list[str], workdir: str) -> tuple[int, str, float]:
    """./runtest against 127.0.0.1:port; returns (exit code, output, seconds). Killed (its process
    group: runtest starts a second tclsh, the test client) after RUNTEST_TIMEOUT."""
    args = ["./runtest", "--host", "127.0.0.1", "--port", str(port), "--single", single,
            "--durable", "--clients", "1", "--timeout", "60"]
    for name in skips:
        args += ["--skiptest", name]
    env = dict(os.environ, TERM="dumb")
    out_path = os.path.join(workdir, "runtest.out")
    t0 = time.monotonic()
    with open(out_path, "w+b") as out:
        proc = subprocess.Popen(args, cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(RUNTEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the test client, if runtest left it behind
            except ProcessLookupError:
                pass
            proc.wait(5)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if rc is None:
        text += "\n[harness] runtest killed after %ds\n" % RUNTEST_TIMEOUT
        rc = -9
    return rc, text, time.monotonic() - t0


def runtest_command(port: int, single: str, skips: list[str]) -> str:
    return "./runtest --host 127.0.0.1 --port %d --single %s --durable --clients 1 --timeout 60%s" % (
        port, single, "".join(" --skiptest '%s'" % s for s in skips))


TARGETS = ["redis-server", "relay-local", "relay-fleet"]


@pytest.mark.parametrize("mode", TARGETS)
def test_redis_pubsub_tcl(mode, redis_tree, redis_server_binary, relay_binary):
    run_suite(PUBSUB, mode, redis_tree, redis_server_binary, relay_binary)


@pytest.mark.parametrize("mode", TARGETS)
def test_redis_pubsubshard_tcl(mode, redis_tree, redis_server_binary, relay_binary):
    run_suite(PUBSUBSHARD, mode, redis_tree, redis_server_binary, relay_binary)


def run_suite(suite: Suite, mode: str, redis_tree: str, redis_server_binary: str, relay_binary: str):
    """runtest of `suite` against `mode`: every test not skipped passes, every skipped one was
    skipped by name, and no other test ran (counted with repeats)."""
    stops: list = []
    workdir = short_tmpdir("rit-tcl-")
    try:
        if mode == "redis-server":
            # The reference, through the same TCP bridge the relay gets today.
            server = RedisServer(redis_server_binary)
            stops.append(server.stop)
            bridge = TcpBridge(server.socket)
            stops.append(bridge.stop)
            port, how = bridge.port, "bridge"
        else:
            env = {}
            if mode == "relay-fleet":
                backplane = RedisServer(redis_server_binary)
                stops.append(backplane.stop)
                env["REDIS_URL"] = "unix://%s" % backplane.socket
            relay, port, how = relay_tcp_endpoint(relay_binary, env, stops)
            if mode == "relay-fleet":
                wait_redis_state(relay, "up", 10.0)
        single = suite.single(redis_tree, mode)
        skips = list(suite.skips(mode))
        expected_skip = Counter({name: n for name, n in suite.tests.items() if name in skips})
        expected_ok = suite.tests - expected_skip

        rc, output, seconds = run_runtest(redis_tree, port, single, skips, workdir)
        res = parse_runtest(output)
        tail = "\n".join(ANSI.sub("", output).splitlines()[-60:])
        where = "%s via %s on 127.0.0.1:%d, %.1fs\ncommand (in %s): %s" % (
            mode, how, port, seconds, redis_tree, runtest_command(port, single, skips))
        failed = sorted(set(res["err"]) | set(res["failed_summary"]))
        print("\n%s on %s: %d passed, %d failed, %d skipped, %d ignored by tag, in %.1f s" % (
            suite.name, mode, len(res["ok"]), len(failed), len(res["skip"]), len(res["ignore"]), seconds))

        assert not res["exception"] and not failed, (
            "%d of %s.tcl's tests failed%s:\n  %s\n%s\n---- runtest output (tail) ----\n%s" % (
                len(failed), suite.name, " (and runtest raised an exception)" if res["exception"] else "",
                "\n  ".join(failed + res["exception"]), where, tail))
        seen = Counter(res["ok"]) + Counter(res["skip"]) + Counter(res["ignore"])
        assert seen == suite.tests, (
            "%s.tcl's tests are not the expected ones: new %r, missing %r\n%s\n%s" % (
                suite.name, sorted((seen - suite.tests).elements()), sorted((suite.tests - seen).elements()), where, tail))
        assert Counter(res["ok"]) == expected_ok, (
            "expected %d tests to pass, %d did; not run: %r; ignored by tag: %r\n%s\n%s" % (
                sum(expected_ok.values()), len(res["ok"]), sorted((expected_ok - Counter(res["ok"])).elements()),
                res["ignore"], where, tail))
        assert Counter(res["skip"]) == expected_skip, (res["skip"], where)
        assert rc == 0 and res["passed_all"], "runtest exited %s without its success summary\n%s\n%s" % (rc, where, tail)
    finally:
        for stop in reversed(stops):
            stop()
