"""The Postgres bridge (README, "The Postgres bridge"): PostgreSQL NOTIFY on configured channels
becomes relay channel `${RELAY_PG_PREFIX}<channel>`, delivered to local subscribers (no Redis, or
Redis down) or published to the Redis backplane by exactly one leader relay.

Everything is a real process: PostgreSQL 15 (`postgres_server` / `pg_db`, or a `pg_restartable`
one for the restart and "not there yet" cases, pg_fixtures.py), redis-server (`RedisAt`), relays
($RELAY_BINARY), all stopped by their PID. Subscribers are raw Unix-socket readers on a thread
(`Collector`: byte-exact payloads, fast enough for 150 000 messages) or redis-py where a real
client is the point. Where order matters, a direct psycopg LISTEN connection records the order in
which PostgreSQL itself delivered the notifications, and every relay subscriber must match it.
Every loop and wait is bounded in count and time.

Covered (the README's promises, and two lease-safety cases): the generated trigger end to end; payloads
byte for byte, rolled-back NOTIFYs, commit order; 3 relays + Redis, 10 000 notifications from 2
writers once each in PostgreSQL's order with one leader; leader kill -9 and takeover within TTL +
1 s; a paused leader resumed after the takeover, a stolen lease; pg_terminate_backend and a
Postgres restart (re-LISTEN within 1 s); no Redis: every relay delivers locally; Redis down
(degraded, all LISTEN) and back (one leader, one connection), and no duplicates across it; a
SIGSTOPped subscriber under 5 000 notifications/s for 30 s; configuration errors (exit 78) and
Postgres absent at start; odd channel names; DATABASE_URL overriding the relay's libpq defaults.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import relay_env, relay_info, short_tmpdir, wait_until
from fleetutil import parse_arrays, unix_url
from resputil import cmd

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (python3 -m pip install 'psycopg[binary]')")
from psycopg import sql  # noqa: E402
redis = pytest.importorskip("redis", reason="redis-py not installed (pip install redis)")

EX_CONFIG = 78
PREFIX = "pg:"
WAIT = 5.0                  # bound on a notification that must arrive
QUIET = 0.4                 # how long "nothing more arrives" is watched
RELISTEN_BOUND = 1.0        # re-LISTEN within 1 s of Postgres accepting again
MARKER_INTERVAL = 0.02      # markers are sent this often while measuring it ...
MEASURE_SLACK = 0.1         # ... so the measurement's resolution is ~ one marker plus its round trip


# ---- helpers ------------------------------------------------------------------------------------

def pg_env(conninfo: str, channels, prefix: str = PREFIX, **extra) -> dict:
    env = {"DATABASE_URL": conninfo,
           "RELAY_PG_CHANNELS": channels if isinstance(channels, str) else ",".join(channels),
           "RELAY_PG_PREFIX": prefix}
    env.update(extra)
    return env


class Collector:
    """A RESP2 subscriber on a relay socket; a thread reads every message as (channel, payload)."""

    def __init__(self, path: str, kind: str, *names: str, label: str = ""):
        self.label = label or "%s %s on %s" % (kind, names, path)
        self.msgs: list[tuple[bytes, bytes]] = []
        self.other: list = []
        self.eof = False
        self.error = None
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(path)
        self.sock.sendall(cmd(kind, *[n.encode() if isinstance(n, str) else n for n in names]))
        buf = b""
        confs: list = []
        deadline = time.monotonic() + WAIT
        while len(confs) < len(names):
            assert time.monotonic() < deadline, "%s: %d/%d confirmations, buffered %r" % (
                self.label, len(confs), len(names), buf[:200])
            data = self.sock.recv(65536)
            assert data, "%s: EOF before the confirmation" % self.label
            buf += data
            frames, pos = parse_arrays(buf)
            buf = buf[pos:]
            confs.extend(frames)
        for f in confs[:len(names)]:
            assert f[0] == kind.lower().encode(), (self.label, f)
        self._take(confs[len(names):])
        self._buf = buf
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _take(self, frames):
        for f in frames:
            if f[0] == b"message" and len(f) == 3:
                self.msgs.append((f[1], f[2]))
            elif f[0] == b"pmessage" and len(f) == 4:
                self.msgs.append((f[2], f[3]))
            else:
                self.other.append(f)

    def _run(self):
        buf = self._buf
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self.sock], [], [], 0.1)
                if not r:
                    continue
                data = self.sock.recv(1 << 20)
                if not data:
                    self.eof = True
                    return
                buf += data
                frames, pos = parse_arrays(buf)
                buf = buf[pos:]
                self._take(frames)
        except Exception as e:   # reported by the assertions that read it
            self.error = repr(e)

    def count(self) -> int:
        return len(self.msgs)

    def payloads(self) -> list[bytes]:
        return [p for _, p in list(self.msgs)]

    def wait_count(self, n: int, timeout: float = WAIT) -> bool:
        return bool(wait_until(lambda: len(self.msgs) >= n or self.eof or self.error, timeout, 0.01)) \
            and len(self.msgs) >= n

    def expect(self, expected: list, timeout: float = WAIT, channel: bytes | None = None, quiet: float = QUIET):
        """The next messages are exactly `expected` (payloads), then nothing more for `quiet` s."""
        start = getattr(self, "_seen", 0)
        self.wait_count(start + len(expected), timeout)
        if quiet:
            time.sleep(quiet)
        got = list(self.msgs[start:])
        self._seen = start + len(got)
        assert self.error is None and not self.eof, "%s: reader error %r, eof %r" % (self.label, self.error, self.eof)
        assert [p for _, p in got] == [e.encode() if isinstance(e, str) else e for e in expected], \
            "%s: expected %d messages %r...\n got %d: %r..." % (self.label, len(expected), expected[:5], len(got),
                                                             [p for _, p in got][:10])
        if channel is not None:
            assert {c for c, _ in got} <= {channel}, "%s: channels %r" % (self.label, {c for c, _ in got})
        assert self.other == [], "%s: unexpected frames %r" % (self.label, self.other[:5])

    def mark(self):
        """Forget what arrived so far (the next expect() starts here)."""
        self._seen = len(self.msgs)

    def close(self):
        self._stop.set()
        self.thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def collectors():
    made: list[Collector] = []

    def make(path: str, kind: str, *names: str, label: str = "") -> Collector:
        c = Collector(path, kind, *names, label=label)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


class RefListener:
    """A direct psycopg LISTEN connection: the order PostgreSQL delivered the notifications in."""

    def __init__(self, conninfo: str, *channels: str):
        self.conn = psycopg.connect(conninfo, autocommit=True)
        for ch in channels:
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ch)))
        self.got: list[tuple[str, str]] = []

    def collect(self, n: int, timeout: float = 30.0) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for note in self.conn.notifies(timeout=min(left, 1.0), stop_after=n - len(self.got)):
                self.got.append((note.channel, note.payload))
        return self.got

    def close(self):
        self.conn.close()


def notify(conn, channel: str, payload: str):
    conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def notify_many(conn, channel: str, payloads: list[str]):
    """One statement, one pg_notify per payload in array order (its own transaction in autocommit,
    else part of the caller's)."""
    conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (channel, payloads)).fetchall()


def relay_backends(conn, dbname: str) -> list[tuple]:
    """(pid, state, query) of the relays' LISTEN connections to `dbname`."""
    return conn.execute("SELECT pid, state, query FROM pg_stat_activity "
                        "WHERE application_name = 'pubsub-relay' AND datname = %s ORDER BY pid",
                        (dbname,)).fetchall()


def info(relay, section: str = "upstreams") -> dict:
    return relay_info(relay.socket, section)


def wait_info(relay, pred, timeout: float, what: str) -> dict:
    """Polls INFO upstreams until pred(info); fails with the last INFO and the stderr tail."""
    deadline = time.monotonic() + timeout
    last: dict = {}
    err = None
    while True:
        try:
            last = info(relay)
            err = None
            if pred(last):
                return last
        except (OSError, AssertionError) as e:
            err = e
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not reached within %.1fs (last INFO %r, error %r)\nrelay stderr tail:\n%s"
                                 % (what, timeout, pg_part(last), err, "\n".join(relay.stderr().splitlines()[-15:])))
        time.sleep(0.02)


def pg_part(i: dict) -> dict:
    return {k: v for k, v in i.items() if k.startswith("postgres_") or k.startswith("redis_")}


def is_leader(i: dict) -> bool:
    return i.get("postgres_leader") == "1" and i.get("postgres_listening") == "1" and i.get("postgres_mode") == "leader"


def is_standby(i: dict) -> bool:
    return i.get("postgres_leader") == "0" and i.get("postgres_listening") == "0" and i.get("postgres_mode") == "standby"


def wait_one_leader(relays, timeout: float = 10.0):
    """Until exactly one relay leads (and LISTENs) and every other is a standby holding no
    connection; returns the leader."""
    deadline = time.monotonic() + timeout
    infos: list = []
    while True:
        infos = []
        for r in relays:
            try:
                infos.append(info(r))
            except (OSError, AssertionError) as e:
                infos.append({"error": repr(e)})
        leaders = [r for r, i in zip(relays, infos) if is_leader(i)]
        if len(leaders) == 1 and all(is_leader(i) or is_standby(i) for i in infos):
            return leaders[0]
        if time.monotonic() >= deadline:
            raise AssertionError("no single leader within %.1fs: %r\nstderr tails:\n%s" % (
                timeout, [pg_part(i) for i in infos],
                "\n---\n".join("\n".join(r.stderr().splitlines()[-8:]) for r in relays)))
        time.sleep(0.02)


def wait_local_listening(relay, timeout: float = 10.0) -> dict:
    return wait_info(relay, lambda i: i.get("postgres_mode") == "local" and i.get("postgres_listening") == "1",
                     timeout, "postgres_mode:local, postgres_listening:1")


def metrics_addr() -> str:
    return os.path.join(short_tmpdir("rit-pgm-"), "metrics.sock")


def scrape(addr: str) -> dict[str, float]:
    """GET /metrics on a Unix-socket metrics address; {'name{labels}': value} of the samples."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(addr)
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: relay\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:200]
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def stderr_lines(relay, *needles: str) -> list[str]:
    return [l for l in relay.stderr().splitlines() if all(n in l for n in needles)]


# ---- 1. the generated trigger, end to end --------------------------------------------------------

@pytest.mark.parametrize("mode", ["local", "backplane"])
def test_trigger_documents_reach_relay_subscribers(mode, relay_binary, pg_db, relay_factory, redis_at_factory):
    """`pubsub-relay sql trigger` applied to a real table; INSERT/UPDATE/DELETE and a 20 kB row reach
    redis-py subscribers on `pg:items` (local: one relay without Redis; backplane: two relays and a
    Redis, a subscriber on each), byte for byte what PostgreSQL sent."""
    pg_db.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, body text)")
    gen = subprocess.run([relay_binary, "sql", "trigger", "--table", "public.items", "--channel", "items"],
                         capture_output=True, timeout=30)
    assert gen.returncode == 0, gen.stderr
    applied = pg_db.psql(gen.stdout.decode())
    assert applied.returncode == 0, applied.stderr.decode(errors="replace")

    if mode == "local":
        relays = [relay_factory(pg_env(pg_db.conninfo, "items"))]
        wait_local_listening(relays[0])
    else:
        r = redis_at_factory()
        relays = [relay_factory(pg_env(pg_db.conninfo, "items", REDIS_URL=unix_url(r.socket))) for _ in range(2)]
        wait_one_leader(relays)

    ref = RefListener(pg_db.conninfo, "items")
    clients, subs = [], []
    try:
        for rel in relays:
            c = redis.Redis(unix_socket_path=rel.socket, socket_timeout=WAIT)
            p = c.pubsub()
            p.subscribe(PREFIX + "items")
            conf = p.get_message(timeout=WAIT)
            assert conf and conf["type"] == "subscribe" and conf["channel"] == b"pg:items", conf
            clients.append(c)
            subs.append(p)

        big = "x" * 20000
        with pg_db.connect() as w:
            w.execute("INSERT INTO items VALUES (1, 'ann', 3, 'small')")
            w.execute("UPDATE items SET qty = 4 WHERE id = 1")
            w.execute("DELETE FROM items WHERE id = 1")
            w.execute("INSERT INTO items VALUES (2, 'big', 1, %s)", (big,))
            w.execute("INSERT INTO items VALUES (3, 'ünï 漢 😀', 7, 'after')")
        expected_docs = [
            {"op": "INSERT", "schema": "public", "table": "items", "row": {"id": 1, "name": "ann", "qty": 3, "body": "small"}},
            {"op": "UPDATE", "schema": "public", "table": "items", "row": {"id": 1, "name": "ann", "qty": 4, "body": "small"}},
            {"op": "DELETE", "schema": "public", "table": "items", "row": {"id": 1, "name": "ann", "qty": 4, "body": "small"}},
            {"op": "INSERT", "schema": "public", "table": "items", "key": {"id": 2}, "truncated": True},
            {"op": "INSERT", "schema": "public", "table": "items", "row": {"id": 3, "name": "ünï 漢 😀", "qty": 7, "body": "after"}},
        ]
        direct = [p.encode("utf-8") for _, p in ref.collect(5, WAIT)]
        assert [json.loads(d) for d in direct] == expected_docs

        for i, p in enumerate(subs):
            got = []
            deadline = time.monotonic() + WAIT
            while len(got) < 5 and time.monotonic() < deadline:
                m = p.get_message(timeout=max(0.01, deadline - time.monotonic()))
                if m is not None:
                    got.append(m)
            extra = p.get_message(timeout=QUIET)
            assert len(got) == 5, "relay %d: %d of 5 documents: %r" % (i, len(got), got)
            assert all(m["type"] == "message" and m["channel"] == b"pg:items" for m in got), got
            payloads = [m["data"] for m in got]
            assert payloads == direct, "relay %d: payloads differ from what PostgreSQL sent" % i
            docs = [json.loads(pl.decode("utf-8", "strict")) for pl in payloads]
            assert docs == expected_docs
            assert docs[3]["truncated"] is True
            assert extra is None, "relay %d: unexpected %r" % (i, extra)
    finally:
        for p in subs:
            p.close()
        for c in clients:
            c.close()
        ref.close()


# ---- 2. payloads verbatim, transactions, commit order --------------------------------------------

def _exact_bytes(n: int) -> str:
    """A string of exactly n UTF-8 bytes: 2-, 3- and 4-byte characters, CR/LF, tabs, quotes,
    backslashes and RESP look-alikes."""
    s = ("*3\r\n$7\r\nmessage\r\n\t\"q\" \\ é ☃ 漢字 😀 עברית e\u0301 \u00a0 \U0010fffd "
         + "ü" * 1000 + "漢" * 1000 + "😀" * 400)
    s += "z" * (n - len(s.encode("utf-8")))
    assert len(s.encode("utf-8")) == n
    return s


@pytest.mark.parametrize("mode", ["local", "backplane"])
def test_payloads_verbatim_rollback_and_commit_order(mode, pg_db, relay_factory, redis_at_factory, collectors):
    if mode == "local":
        rel = relay_factory(pg_env(pg_db.conninfo, "verb"))
        wait_local_listening(rel)
    else:
        r = redis_at_factory()
        relays = [relay_factory(pg_env(pg_db.conninfo, "verb", REDIS_URL=unix_url(r.socket))) for _ in range(2)]
        leader = wait_one_leader(relays)
        rel = next(x for x in relays if x is not leader)      # the subscriber sits on a standby
    sub = collectors(rel.socket, "SUBSCRIBE", PREFIX + "verb")

    # Byte for byte: multibyte UTF-8, 7999 bytes (the largest NOTIFY payload), empty, RESP look-alikes.
    multibyte = 'héllo wörld — ☃ 漢字 😀 עברית e\u0301 "q" \\ \u00a0 \U0010fffd\r\n*1\r\n$4\r\nPING\r\n'
    biggest = _exact_bytes(7999)
    with pg_db.connect() as w:
        notify(w, "verb", multibyte)
        notify(w, "verb", biggest)
        w.execute("NOTIFY verb")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            notify(w, "verb", biggest + "z")            # PostgreSQL's own limit: 8000 bytes is refused
        notify(w, "verb", "end")
    sub.expect([multibyte.encode("utf-8"), biggest.encode("utf-8"), b"", b"end"], channel=b"pg:verb")
    assert len(sub.msgs[1][1]) == 7999

    # A rolled-back transaction (and a rolled-back subtransaction) never notifies.
    with pg_db.connect() as w:
        w.execute("BEGIN")
        notify(w, "verb", "rolled back")
        w.execute("ROLLBACK")
        w.execute("BEGIN")
        notify(w, "verb", "kept 1")
        w.execute("SAVEPOINT s")
        notify(w, "verb", "rolled back to savepoint")
        w.execute("ROLLBACK TO SAVEPOINT s")
        notify(w, "verb", "kept 2")
        w.execute("COMMIT")
        notify(w, "verb", "after")
    sub.expect(["kept 1", "kept 2", "after"])

    # Commit order, not statement order: three open transactions committed c, a, b.
    a, b, c = pg_db.connect(), pg_db.connect(), pg_db.connect()
    try:
        for x in (a, b, c):
            x.execute("BEGIN")
        notify(a, "verb", "a1")
        notify(b, "verb", "b1")
        notify(c, "verb", "c1")
        notify(a, "verb", "a2")
        notify(b, "verb", "b2")
        c.execute("COMMIT")
        a.execute("COMMIT")
        b.execute("COMMIT")
    finally:
        for x in (a, b, c):
            x.close()
    sub.expect(["c1", "a1", "a2", "b1", "b2"])

    # Many transactions from one writer, one notification each, in order.
    with pg_db.connect() as w:
        for i in range(300):
            notify(w, "verb", "seq:%d" % i)
    sub.expect(["seq:%d" % i for i in range(300)], timeout=10)


# ---- 3. 3 relays + Redis: 10 000 notifications from 2 writers, once each, in commit order -------

WRITERS = 2
PER_WRITER = 5000
PER_TXN = 20


def _writer(conninfo: str, wid: int, go: threading.Event, errors: list):
    try:
        with psycopg.connect(conninfo) as conn:     # not autocommit: each batch is one transaction
            go.wait(10)
            for start in range(0, PER_WRITER, PER_TXN):
                with conn.transaction():
                    notify_many(conn, "seq", ["w%d:%d" % (wid, i) for i in range(start, start + PER_TXN)])
    except Exception as e:
        errors.append("writer %d: %r" % (wid, e))


def test_three_relays_10k_notifications_once_in_commit_order(pg_db, relay_factory, redis_at_factory, collectors):
    r = redis_at_factory()
    maddrs = [metrics_addr() for _ in range(3)]
    relays = [relay_factory(pg_env(pg_db.conninfo, "seq,other", REDIS_URL=unix_url(r.socket),
                                   RELAY_METRICS_ADDR=maddrs[i])) for i in range(3)]
    leader = wait_one_leader(relays)
    with pg_db.connect() as admin:      # a standby's start-up connection may take a moment to go
        wait_until(lambda: len(relay_backends(admin, pg_db.name)) == 1, 3)
        backends = relay_backends(admin, pg_db.name)
    assert len(backends) == 1, "expected the leader's LISTEN connection only: %r" % backends

    subs = []
    for i, rel in enumerate(relays):
        subs.append(collectors(rel.socket, "SUBSCRIBE", PREFIX + "seq", label="relay %d SUBSCRIBE" % i))
        subs.append(collectors(rel.socket, "PSUBSCRIBE", PREFIX + "*", label="relay %d PSUBSCRIBE pg:*" % i))
    ref = RefListener(pg_db.conninfo, "seq")
    total = WRITERS * PER_WRITER
    go = threading.Event()
    errors: list = []
    threads = [threading.Thread(target=_writer, args=(pg_db.conninfo, w, go, errors), daemon=True) for w in range(WRITERS)]
    try:
        for t in threads:
            t.start()
        t0 = time.monotonic()
        go.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "writers still running after 60 s"
        assert errors == [], errors
        reference = [p.encode() for _, p in ref.collect(total, 30)]
        assert len(reference) == total, "the direct LISTEN got %d of %d" % (len(reference), total)
        for s in subs:
            s.wait_count(total, max(1.0, 40 - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        time.sleep(0.5)                          # anything more would be a duplicate
    finally:
        ref.close()

    expected = {("w%d:%d" % (w, i)).encode() for w in range(WRITERS) for i in range(PER_WRITER)}
    assert set(reference) == expected
    print("\n%d notifications through the leader to 6 subscribers in %.1fs" % (total, elapsed))
    problems = []
    for s in subs:
        got = s.payloads()
        chans = {c for c, _ in s.msgs}
        line = "%s: %d received, %d distinct, channels %r, eof %r, error %r, other %r" % (
            s.label, len(got), len(set(got)), chans, s.eof, s.error, s.other[:3])
        print(line)
        if len(got) != total or set(got) != expected or chans != {b"pg:seq"} or s.other or s.error:
            problems.append(line)
            continue
        last = {}
        for pl in got:
            w, i = pl.split(b":")
            if int(i) <= last.get(w, -1):
                problems.append("%s: writer %s's %s after %d" % (s.label, w, i, last[w]))
                break
            last[w] = int(i)
        if got != reference:
            k = next(k for k in range(total) if got[k] != reference[k])
            problems.append("%s: differs from PostgreSQL's delivery order at %d: %r vs %r"
                            % (s.label, k, got[k:k + 3], reference[k:k + 3]))
    assert problems == [], "\n".join(problems)
    # Each transaction's notifications are contiguous (commit order, whole transactions).
    firsts = [k for k, pl in enumerate(reference) if int(pl.split(b":")[1]) % PER_TXN == 0]
    for k in firsts:
        w = reference[k].split(b":")[0]
        assert all(reference[k + j].split(b":")[0] == w for j in range(PER_TXN)), "transaction split at %d" % k

    infos = [info(x) for x in relays]
    assert [i["postgres_leader"] for i in infos].count("1") == 1, [pg_part(i) for i in infos]
    li = info(leader)
    assert li["postgres_notifications_received"] == str(total), pg_part(li)
    assert li["postgres_notifications_published"] == str(total), pg_part(li)
    assert li["postgres_notifications_lost_upstream"] == "0", pg_part(li)
    for x, i in zip(relays, infos):
        if x is not leader:
            assert i["postgres_notifications_received"] == "0" and i["postgres_listening"] == "0", pg_part(i)
    # The lease: <namespace>:pg-leader holds the leader's relay id.
    assert r.client().get("pubsub-relay:pg-leader") == li["redis_relay_id"].encode()
    # /metrics agrees.
    samples = [scrape(a) for a in maddrs]
    assert sum(m["pubsub_relay_leader"] for m in samples) == 1
    lm = samples[relays.index(leader)]
    assert lm["pubsub_relay_leader"] == 1
    assert lm['pubsub_relay_upstream_up{upstream="postgres"}'] == 1
    assert lm["pubsub_relay_postgres_notifications_received_total"] == total
    assert lm["pubsub_relay_postgres_notifications_published_total"] == total
    assert lm["pubsub_relay_leader_changes_total"] >= 1
    for x, m in zip(relays, samples):
        if x is not leader:
            assert m['pubsub_relay_upstream_up{upstream="postgres"}'] == 0
            assert m["pubsub_relay_postgres_notifications_published_total"] == 0


# ---- 4. the leader is killed: another leads within TTL + 1 s -------------------------------------

LEADER_TTL = 2.0


def test_leader_kill9_another_takes_over(pg_db, relay_factory, redis_at_factory, collectors):
    r = redis_at_factory()
    relays = [relay_factory(pg_env(pg_db.conninfo, "ev", REDIS_URL=unix_url(r.socket), RELAY_LEADER_TTL="2s",
                                   RELAY_NAMESPACE="pgt")) for _ in range(3)]
    leader = wait_one_leader(relays)
    survivors = [x for x in relays if x is not leader]
    subs = {id(x): collectors(x.socket, "SUBSCRIBE", PREFIX + "ev", label="relay pid %d" % x.pid) for x in relays}
    with pg_db.connect() as w:
        notify_many(w, "ev", ["a:%d" % i for i in range(50)])
    for s in subs.values():
        s.expect(["a:%d" % i for i in range(50)])

    sent: list[tuple[int, float, float]] = []     # (index, before, after the commit)
    stop = threading.Event()
    errors: list = []

    def write():
        try:
            with pg_db.connect() as w:
                i = 0
                end = time.monotonic() + 15
                while not stop.is_set() and time.monotonic() < end:
                    tb = time.monotonic()
                    notify(w, "ev", "b:%d" % i)
                    sent.append((i, tb, time.monotonic()))
                    i += 1
                    time.sleep(0.01)
        except Exception as e:
            errors.append(repr(e))

    t = threading.Thread(target=write, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        t_kill = time.monotonic()
        os.kill(leader.pid, signal.SIGKILL)
        leader.proc.wait(5)
        new = None
        deadline = t_kill + LEADER_TTL + 3
        while new is None and time.monotonic() < deadline:
            for x in survivors:
                try:
                    if is_leader(info(x)):
                        new = x
                        break
                except (OSError, AssertionError):
                    pass
            if new is None:
                time.sleep(0.02)
        t_lead = time.monotonic()
        took = t_lead - t_kill
        assert new is not None, "no survivor leads %.1fs after the kill: %r" % (
            took, [pg_part(info(x)) for x in survivors])
        time.sleep(1.0)                     # keep writing after the takeover
    finally:
        stop.set()
        t.join(5)
    assert errors == [], errors
    print("\nleader pid %d killed; pid %d leads after %.2fs (bound %.1fs)" % (leader.pid, new.pid, took, LEADER_TTL + 1))
    assert took <= LEADER_TTL + 1, "takeover took %.2fs, more than TTL + 1 s" % took
    other = next(x for x in survivors if x is not new)
    assert is_standby(info(other)), pg_part(info(other))
    assert r.client().get("pgt:pg-leader") == info(new)["redis_relay_id"].encode()

    # What arrives on the survivors: in order, no duplicate; only what was sent during the
    # window (from just before the kill — in flight in the dead leader — to the takeover) may miss.
    window_start = t_kill - 0.1
    after = [i for i, tb, _ in sent if tb >= t_lead]
    assert len(after) >= 50, "only %d notifications sent after the takeover" % len(after)
    in_window = [i for i, tb, ta in sent if ta >= window_start and tb <= t_lead]
    results = []
    for x in survivors:
        s = subs[id(x)]
        want_last = ("b:%d" % sent[-1][0]).encode()
        wait_until(lambda: want_last in s.payloads()[-5:], WAIT, 0.02)
        time.sleep(QUIET)
        got = [p for p in s.payloads()[50:]]
        idx = [int(p.split(b":")[1]) for p in got]
        assert all(p.startswith(b"b:") for p in got), got[:5]
        assert idx == sorted(set(idx)), "relay pid %d: duplicates or reordering: %r" % (x.pid, idx)
        missing = sorted(set(i for i, _, _ in sent) - set(idx))
        outside = [i for i in missing if i not in in_window]
        print("relay pid %d: %d sent, %d received, %d lost (%d sent during the %.2fs window): %r"
              % (x.pid, len(sent), len(idx), len(missing), len(in_window), t_lead - window_start, missing[:40]))
        assert outside == [], "relay pid %d lost notifications sent outside the takeover window: %r" % (x.pid, outside)
        assert len(missing) <= len(in_window)
        if missing:
            assert missing == list(range(missing[0], missing[-1] + 1)), \
                "relay pid %d: the lost notifications are not one run: %r" % (x.pid, missing)
        results.append(idx)
    assert results[0] == results[1], "the two survivors' subscribers saw different sequences"


# ---- 5. the LISTEN connection terminated, Postgres restarted ------------------------------------

def _first_marker(conninfo: str, sub: Collector, t_ref: float, tag: str, limit: float = 5.0):
    """Sends `<tag>:<i>` every MARKER_INTERVAL until one arrives on `sub`. Returns (seconds from t_ref
    to the commit of the first marker that arrived, its index, markers sent)."""
    sent: list[tuple[float, float]] = []
    prefix = (tag + ":").encode()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        deadline = time.monotonic() + limit
        first = None
        while time.monotonic() < deadline:
            tb = time.monotonic()
            notify(conn, "ev", "%s:%d" % (tag, len(sent)))
            sent.append((tb, time.monotonic()))
            got = [p for p in sub.payloads() if p.startswith(prefix)]
            if got:
                first = int(got[0][len(prefix):])
                break
            time.sleep(MARKER_INTERVAL)
    if first is None:
        return None, None, len(sent)
    return sent[first][1] - t_ref, first, len(sent)


def _check_markers(sub: Collector, tag: str, first: int, n: int):
    """Every marker from the first that arrived on is there, once, in order."""
    prefix = (tag + ":").encode()
    wait_until(lambda: len([p for p in sub.payloads() if p.startswith(prefix)]) >= n - first, WAIT, 0.02)
    got = [int(p[len(prefix):]) for p in sub.payloads() if p.startswith(prefix)]
    assert got == list(range(first, n)), "markers %s: expected %d..%d, got %r" % (tag, first, n - 1, got)


def test_relisten_after_terminate_backend_and_postgres_restart(pg_restartable, relay_factory, collectors):
    pg = pg_restartable()
    conninfo = pg.conninfo()
    maddr = metrics_addr()
    rel = relay_factory(pg_env(conninfo, "ev", RELAY_METRICS_ADDR=maddr))
    wait_local_listening(rel)
    sub = collectors(rel.socket, "SUBSCRIBE", PREFIX + "ev")
    with pg.connect() as w:
        notify(w, "ev", "before")
    sub.expect(["before"])

    # pg_terminate_backend on the listener.
    with pg.connect() as admin:
        backends = relay_backends(admin, "postgres")
        assert len(backends) == 1, backends
        t_term = time.monotonic()
        assert admin.execute("SELECT pg_terminate_backend(%s)", (backends[0][0],)).fetchone() == (True,)
    took, first, n = _first_marker(conninfo, sub, t_term, "t")
    assert took is not None, "nothing arrives 5 s after pg_terminate_backend; INFO %r\n%s" % (
        pg_part(info(rel)), rel.stderr()[-2000:])
    print("\nre-LISTEN after pg_terminate_backend: first marker committed %.3fs after the kill" % took)
    assert took <= RELISTEN_BOUND + MEASURE_SLACK, "re-LISTEN took %.3fs" % took
    _check_markers(sub, "t", first, n)
    sub.mark()
    i = wait_info(rel, lambda i: i["postgres_listening"] == "1" and i["postgres_reconnects"] == "1", 2,
                  "postgres_reconnects:1")
    assert i["postgres_gaps"] == "1" and i["postgres_last_error"] != "", pg_part(i)
    with pg.connect() as admin:
        new_backends = relay_backends(admin, "postgres")
    assert len(new_backends) == 1 and new_backends[0][0] != backends[0][0], (backends, new_backends)
    assert stderr_lines(rel, " error ", "postgres: listening connection lost"), rel.stderr()
    assert stderr_lines(rel, " notice ", "postgres: listening again;", "gap_seconds="), rel.stderr()
    with pg.connect() as w:
        notify_many(w, "ev", ["x:%d" % k for k in range(50)])
    sub.expect(["x:%d" % k for k in range(50)])

    # Postgres stopped (fast shutdown) for 2 s, then started again on the same socket directory.
    pg.stop()
    wait_info(rel, lambda i: i["postgres_listening"] == "0", 3, "postgres_listening:0 while Postgres is down")
    m = scrape(maddr)
    assert m['pubsub_relay_upstream_up{upstream="postgres"}'] == 0
    time.sleep(2.0)
    down = info(rel)
    assert down["postgres_listening"] == "0" and down["postgres_last_error"] != "", pg_part(down)
    # Local subscriptions keep working meanwhile.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(rel.socket)
        s.sendall(cmd("PUBLISH", PREFIX + "ev", "local while down"))
        assert s.recv(64) == b":1\r\n"
    sub.expect(["local while down"])
    t_accept = pg.start()
    took, first, n = _first_marker(conninfo, sub, t_accept, "r")
    assert took is not None, "nothing arrives 5 s after Postgres accepts again; INFO %r\n%s" % (
        pg_part(info(rel)), rel.stderr()[-2000:])
    print("re-LISTEN after a restart: first marker committed %.3fs after Postgres accepted again" % took)
    assert took <= RELISTEN_BOUND + MEASURE_SLACK, "re-LISTEN took %.3fs after Postgres accepted again" % took
    _check_markers(sub, "r", first, n)
    sub.mark()
    i = wait_info(rel, lambda i: i["postgres_listening"] == "1" and i["postgres_reconnects"] == "2", 2,
                  "postgres_reconnects:2")
    assert i["postgres_gaps"] == "2" and float(i["postgres_gap_seconds_total"]) >= 2.0, pg_part(i)
    with pg.connect() as admin:
        assert len(relay_backends(admin, "postgres")) == 1
    with pg.connect() as w:
        notify_many(w, "ev", ["y:%d" % k for k in range(50)])
    sub.expect(["y:%d" % k for k in range(50)])
    assert len(stderr_lines(rel, " notice ", "postgres: listening again;", "gap_seconds=")) == 2, rel.stderr()
    assert len(stderr_lines(rel, " error ", "postgres: listening connection lost")) == 2, rel.stderr()
    m = scrape(maddr)
    assert m['pubsub_relay_upstream_up{upstream="postgres"}'] == 1
    assert m['pubsub_relay_upstream_reconnects_total{upstream="postgres"}'] == 2
    assert m['pubsub_relay_upstream_gaps_total{upstream="postgres"}'] == 2
    assert rel.proc.poll() is None


# ---- 6. no Redis: every relay LISTENs and delivers to its own subscribers -------------------------

def test_no_redis_each_relay_delivers_once(pg_db, postgres_server, relay_factory, collectors):
    maddr = metrics_addr()
    uri = "postgresql://postgres@/%s?host=%s&port=%d" % (pg_db.name, postgres_server.socket_dir, postgres_server.port)
    a = relay_factory(pg_env(pg_db.conninfo, "ev,quiet", RELAY_METRICS_ADDR=maddr))
    b = relay_factory(pg_env(uri, " ev , quiet "))       # URI form; spaces around names are ignored
    for x in (a, b):
        i = wait_local_listening(x)
        assert i["postgres_leader"] == "0" and i["postgres_channels"] == "ev,quiet", pg_part(i)
    with pg_db.connect() as admin:
        backends = relay_backends(admin, pg_db.name)
    assert len(backends) == 2 and all(st == "idle" for _, st, _ in backends), backends
    subs = [collectors(x.socket, kind, name, label="%s %s %s" % (lbl, kind, name))
            for lbl, x in (("A", a), ("B", b))
            for kind, name in (("SUBSCRIBE", PREFIX + "ev"), ("PSUBSCRIBE", "*"))]
    payloads = ["n:%d" % k for k in range(500)]
    with pg_db.connect() as w:
        for k in range(0, 500, 10):
            notify_many(w, "ev", payloads[k:k + 10])
        notify(w, "unlisted", "not configured")
        notify(w, "ev", "last")
    for s in subs:
        s.expect(payloads + ["last"], timeout=10, channel=b"pg:ev")
    for x in (a, b):
        i = info(x)
        assert i["postgres_notifications_received"] == "501", pg_part(i)
        assert i["postgres_notifications_delivered_locally"] == "501", pg_part(i)
        assert i["postgres_notifications_published"] == "0", pg_part(i)
        assert info(x, "stats")["messages_from_postgres"] == "501"
    m = scrape(maddr)
    assert m['pubsub_relay_upstream_up{upstream="postgres"}'] == 1
    assert m["pubsub_relay_leader"] == 0
    assert m["pubsub_relay_postgres_notifications_received_total"] == 501
    assert m['pubsub_relay_messages_in_total{source="postgres"}'] == 501


# ---- 7. Redis down: every relay LISTENs (degraded); Redis back: one leader again ------------------

def test_redis_down_degraded_then_one_leader_again(pg_db, relay_factory, redis_at_factory, collectors):
    r = redis_at_factory()
    env = dict(REDIS_URL=unix_url(r.socket), RELAY_LEADER_TTL="2s", RELAY_REDIS_BACKOFF_MAX="500ms")
    relays = [relay_factory(pg_env(pg_db.conninfo, "ev", **env)) for _ in range(2)]
    wait_one_leader(relays)
    subs = [collectors(x.socket, "SUBSCRIBE", PREFIX + "ev", label="relay %d" % k) for k, x in enumerate(relays)]
    with pg_db.connect() as w:
        notify_many(w, "ev", ["up:%d" % k for k in range(20)])
    for s in subs:
        s.expect(["up:%d" % k for k in range(20)])

    r.kill9()
    for x in relays:
        wait_info(x, lambda i: i.get("postgres_mode") == "degraded" and i.get("postgres_listening") == "1", 5,
                  "postgres_mode:degraded, postgres_listening:1 after Redis was killed")
    with pg_db.connect() as admin:
        assert len(relay_backends(admin, pg_db.name)) == 2
    down = ["down:%d" % k for k in range(200)]
    with pg_db.connect() as w:
        for k in range(0, 200, 20):
            notify_many(w, "ev", down[k:k + 20])
    for s in subs:
        s.expect(down, timeout=10, channel=b"pg:ev")
    for x in relays:
        assert int(info(x)["postgres_notifications_delivered_locally"]) >= 200

    r.start()
    for x in relays:
        wait_info(x, lambda i: i.get("redis_state") == "up", 10, "redis_state:up after Redis restarted")
    leader = wait_one_leader(relays, 10)
    with pg_db.connect() as admin:
        backends = wait_until(lambda: (lambda b: b if len(b) == 1 else None)(relay_backends(admin, pg_db.name)), 5)
        assert backends and len(backends) == 1, "LISTEN connections: %r" % relay_backends(admin, pg_db.name)
        assert backends[0][1] == "idle", backends
    assert r.client().get("pubsub-relay:pg-leader") == info(leader)["redis_relay_id"].encode()
    back = ["back:%d" % k for k in range(200)]
    with pg_db.connect() as w:
        for k in range(0, 200, 20):
            notify_many(w, "ev", back[k:k + 20])
    for s in subs:
        s.expect(back, timeout=10, channel=b"pg:ev")
    li = info(leader)
    assert int(li["postgres_notifications_published"]) >= 200, pg_part(li)


# ---- 8. a stopped subscriber does not hold Postgres's queue ---------------------------------------

LOAD_SECONDS = 30
LOAD_RATE = 5000
LOAD_BATCH = 500            # one transaction every 0.1 s
PAD = "p" * 80

STOPPED_CHILD = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(sys.argv[2]), sys.argv[2].encode()))
buf = b""
while b"subscribe" not in buf:
    buf += s.recv(4096)
sys.stdout.write("ready\n")
sys.stdout.flush()
sys.stdin.read()
"""


def test_stopped_subscriber_does_not_fill_the_notify_queue(pg_db, relay_factory, collectors):
    rel = relay_factory(pg_env(pg_db.conninfo, "load"))
    wait_local_listening(rel)
    child = subprocess.Popen([sys.executable, "-c", STOPPED_CHILD, rel.socket, PREFIX + "load"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stopped = False
    samples: list[tuple[float, float, int]] = []
    try:
        r, _, _ = select.select([child.stdout], [], [], WAIT)
        assert r and child.stdout.readline() == b"ready\n", "the subscriber child did not subscribe"
        os.kill(child.pid, signal.SIGSTOP)
        stopped = True
        healthy = collectors(rel.socket, "SUBSCRIBE", PREFIX + "load", label="healthy subscriber")
        batches = LOAD_SECONDS * LOAD_RATE // LOAD_BATCH
        total = batches * LOAD_BATCH
        with pg_db.connect() as w, pg_db.connect() as sampler:
            t0 = time.monotonic()
            for k in range(batches):
                due = t0 + k * LOAD_BATCH / LOAD_RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                notify_many(w, "load", ["%d:%s" % (k * LOAD_BATCH + j, PAD) for j in range(LOAD_BATCH)])
                if k % (LOAD_RATE // LOAD_BATCH) == 0:
                    usage = sampler.execute("SELECT pg_notification_queue_usage()").fetchone()[0]
                    samples.append((time.monotonic() - t0, usage, (k + 1) * LOAD_BATCH - healthy.count()))
            elapsed = time.monotonic() - t0
            got_all = healthy.wait_count(total, 15)
            samples.append((time.monotonic() - t0, sampler.execute("SELECT pg_notification_queue_usage()").fetchone()[0],
                            total - healthy.count()))
        time.sleep(QUIET)
        stats = info(rel, "stats")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(rel.socket)
            s.sendall(cmd("PUBSUB", "NUMSUB", PREFIX + "load"))
            numsub = s.recv(256)
        rss = rel.rss_kib()
    finally:
        if stopped:
            os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.wait(5)

    print("\n%d notifications in %.1fs (%.0f/s); queue usage max %.6f; healthy-subscriber lag max %d; "
          "slow_consumer_disconnects %s" % (total, elapsed, total / elapsed, max(u for _, u, _ in samples),
                                            max(l for _, _, l in samples), stats.get("slow_consumer_disconnects")))
    print("at the end: PUBSUB NUMSUB %r (the stopped subscriber is still subscribed unless disconnected as a slow "
          "consumer), relay RSS %d KiB" % (numsub, rss))
    print("samples (s, usage, lag): %r" % [(round(t, 1), u, l) for t, u, l in samples])
    assert elapsed < LOAD_SECONDS + 6, "the load generator fell behind: %.1fs for %ds of load" % (elapsed, LOAD_SECONDS)
    assert len(samples) >= LOAD_SECONDS
    assert all(u < 0.01 for _, u, _ in samples), "pg_notification_queue_usage() reached %r" % max(u for _, u, _ in samples)
    # Keeping up: never more than 2 s of traffic behind, and everything arrives, once, in order.
    assert all(l <= 2 * LOAD_RATE for _, _, l in samples[:-1]), "the healthy subscriber fell behind: %r" % samples
    assert got_all, "healthy subscriber got %d of %d" % (healthy.count(), total)
    got = healthy.payloads()
    assert len(got) == total, "healthy subscriber got %d messages for %d sent" % (len(got), total)
    bad = next((k for k, p in enumerate(got) if not p.startswith(b"%d:" % k)), None)
    assert bad is None, "healthy subscriber: message %d is %r" % (bad, got[bad][:20])
    assert healthy.error is None and not healthy.eof


# ---- 9. configuration errors, and Postgres not there at start ------------------------------------

def _expect_78(relay_factory, env: dict) -> str:
    rel = relay_factory(env, wait=False)
    try:
        rc = rel.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError("relay with %r still running after 5 s; stderr:\n%s" % (env, rel.stderr()))
    lines = [l for l in rel.stderr().splitlines() if l.strip()]
    print("\n%r -> exit %s, stderr %r" % (env, rc, lines))
    assert rc == EX_CONFIG, "exit %s for %r, stderr %r" % (rc, env, lines)
    assert len(lines) == 1, "expected one stderr line, got %r" % lines
    assert not os.path.exists(rel.socket), "socket created despite invalid config"
    return lines[0]


@pytest.mark.parametrize("env, names", [
    ({"DATABASE_URL": "host=/tmp/nowhere dbname=x"}, "RELAY_PG_CHANNELS"),
    ({"DATABASE_URL": "host=/tmp/nowhere dbname=x", "RELAY_PG_CHANNELS": " , "}, "RELAY_PG_CHANNELS"),
    ({"DATABASE_URL": "host=/tmp/nowhere dbname=x", "RELAY_PG_CHANNELS": "ok," + "c" * 64}, "RELAY_PG_CHANNELS"),
    ({"DATABASE_URL": "host=/tmp/nowhere dbname=x", "RELAY_PG_CHANNELS": "é" * 32}, "RELAY_PG_CHANNELS"),
    ({"DATABASE_URL": "postgresql://[", "RELAY_PG_CHANNELS": "a"}, "DATABASE_URL"),
    ({"DATABASE_URL": "host=/x =bad", "RELAY_PG_CHANNELS": "a"}, "DATABASE_URL"),
    ({"DATABASE_URL": "host='/x", "RELAY_PG_CHANNELS": "a"}, "DATABASE_URL"),
    ({"DATABASE_URL": "nosuchoption=1", "RELAY_PG_CHANNELS": "a"}, "DATABASE_URL"),
    ({"DATABASE_URL": "host=/x", "RELAY_PG_CHANNELS": "a", "RELAY_LEADER_TTL": "299ms"}, "RELAY_LEADER_TTL"),
    ({"DATABASE_URL": "host=/x", "RELAY_PG_CHANNELS": "a", "RELAY_LEADER_TTL": "soon"}, "RELAY_LEADER_TTL"),
], ids=["no-channels", "only-commas", "64-byte-channel", "64-byte-multibyte-channel", "uri-bracket",
        "conninfo-no-keyword", "conninfo-unterminated-quote", "unknown-option", "ttl-too-short", "ttl-not-duration"])
def test_config_errors_exit_78(relay_factory, relay_binary, env, names):
    line = _expect_78(relay_factory, env)
    assert names in line, line
    check = subprocess.run([relay_binary, "check-config"], env=dict(_clean_env(), **env), capture_output=True,
                           timeout=30)
    assert check.returncode == EX_CONFIG and names.encode() in check.stderr, (check.returncode, check.stderr)


def _clean_env() -> dict:
    return relay_env(None)


@pytest.mark.parametrize("url", ["postgresql://app:s3cretpw@[::1/db", "password=s3cretpw host='/x",
                                 "postgresql://app:s3cretpw@/db?nosuchoption=1"])
def test_bad_database_url_never_prints_the_password(relay_factory, url):
    line = _expect_78(relay_factory, {"DATABASE_URL": url, "RELAY_PG_CHANNELS": "a"})
    assert "DATABASE_URL" in line, line
    assert "s3cretpw" not in line, line


def test_63_byte_channel_is_accepted(pg_db, relay_factory, collectors):
    ch = "é" * 31 + "x"            # 63 bytes
    rel = relay_factory(pg_env(pg_db.conninfo, ch))
    wait_local_listening(rel)
    sub = collectors(rel.socket, "SUBSCRIBE", PREFIX + ch)
    with pg_db.connect() as w:
        notify(w, ch, "fits")
    sub.expect(["fits"], channel=(PREFIX + ch).encode())


def test_postgres_absent_at_start_then_appears(pg_restartable, relay_factory, collectors):
    pg = pg_restartable(start=False)
    rel = relay_factory(pg_env(pg.conninfo(), "ev"))     # returns once the socket answers PING
    i = wait_info(rel, lambda i: i.get("postgres_last_error", "") != "", 3, "postgres_last_error set")
    assert i["postgres_bridge"] == "enabled" and i["postgres_listening"] == "0", pg_part(i)
    assert stderr_lines(rel, "postgres: connect/LISTEN failed"), rel.stderr()
    sub = collectors(rel.socket, "SUBSCRIBE", PREFIX + "ev")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:     # serving meanwhile
        s.settimeout(3)
        s.connect(rel.socket)
        s.sendall(cmd("PUBLISH", PREFIX + "ev", "local"))
        assert s.recv(64) == b":1\r\n"
    sub.expect(["local"])
    time.sleep(1.5)                  # long enough for the retry delay to reach its cap
    assert rel.proc.poll() is None
    t_accept = pg.start()
    took, first, n = _first_marker(pg.conninfo(), sub, t_accept, "m")
    assert took is not None, "nothing arrives 5 s after Postgres appeared; INFO %r\n%s" % (
        pg_part(info(rel)), rel.stderr()[-2000:])
    print("\nfirst LISTEN: first marker committed %.3fs after Postgres accepted" % took)
    assert took <= RELISTEN_BOUND + MEASURE_SLACK, "LISTEN took %.3fs after Postgres appeared" % took
    _check_markers(sub, "m", first, n)
    i = wait_info(rel, lambda i: i["postgres_listening"] == "1", 2, "postgres_listening:1")
    with pg.connect() as admin:
        assert len(relay_backends(admin, "postgres")) == 1


# ---- 10. odd channel names ----------------------------------------------------------------------

def test_odd_channel_names_are_quoted(pg_db, relay_factory, collectors):
    names = ["Mixed Case", 'it"s', "ch😀", 'x"; DROP TABLE keep; --', "plain"]
    pg_db.execute("CREATE TABLE keep (id int)")
    rel = relay_factory(pg_env(pg_db.conninfo, ",".join(names)))
    i = wait_local_listening(rel)
    assert i["postgres_last_error"] == "", pg_part(i)
    assert pg_db.execute("SELECT count(*) FROM keep") == [(0,)]
    subs = {n: collectors(rel.socket, "SUBSCRIBE", PREFIX + n, label=n) for n in names}
    everything = collectors(rel.socket, "PSUBSCRIBE", "*", label="PSUBSCRIBE *")
    with pg_db.connect() as w:
        notify(w, "mixed case", "folded: not configured")
        notify(w, "Mixed", "not configured")
        for n in names:
            notify(w, n, "to " + n)
    for n in names:
        subs[n].expect(["to " + n], channel=(PREFIX + n).encode())
    everything.expect(["to " + n for n in names])
    assert [c for c, _ in everything.msgs] == [(PREFIX + n).encode() for n in names]


# ---- 4b. lease safety: a paused leader, a lost lease --------------------------------------------

def test_paused_leader_resumed_after_takeover_publishes_nothing_twice(pg_db, relay_factory, redis_at_factory,
                                                                       collectors):
    """A leader frozen (SIGSTOP: a VM pause, a long GC) past its lease: another relay takes over;
    when the old one resumes, what its Postgres connection buffered meanwhile must not be published
    a second time — one publisher per notification (README, "Once per fleet")."""
    r = redis_at_factory()
    relays = [relay_factory(pg_env(pg_db.conninfo, "ev", REDIS_URL=unix_url(r.socket), RELAY_LEADER_TTL="2s"))
              for _ in range(3)]
    leader = wait_one_leader(relays)
    others = [x for x in relays if x is not leader]
    subs = [collectors(x.socket, "SUBSCRIBE", PREFIX + "ev", label="relay pid %d" % x.pid) for x in others]
    stopped = False
    try:
        os.kill(leader.pid, signal.SIGSTOP)
        stopped = True
        t_stop = time.monotonic()
        new = None
        while new is None and time.monotonic() < t_stop + LEADER_TTL + 3:
            new = next((x for x in others if is_leader(info(x))), None)
            if new is None:
                time.sleep(0.02)
        assert new is not None, "no relay took over %.1fs after the leader was paused" % (LEADER_TTL + 3)
        print("\nleader pid %d paused; pid %d leads after %.2fs" % (leader.pid, new.pid, time.monotonic() - t_stop))
        with pg_db.connect() as w:
            notify_many(w, "ev", ["p:%d" % k for k in range(100)])   # the paused leader still LISTENs
        for s in subs:
            assert s.wait_count(100), "%s: %d of 100" % (s.label, s.count())
        os.kill(leader.pid, signal.SIGCONT)
        stopped = False
        wait_info(leader, lambda i: i["postgres_leader"] == "0" and i["postgres_listening"] == "0", 5,
                  "the resumed old leader steps down")
        time.sleep(1.0)
        with pg_db.connect() as w:
            notify_many(w, "ev", ["q:%d" % k for k in range(100)])
    finally:
        if stopped:
            os.kill(leader.pid, signal.SIGCONT)
    li = info(leader)
    print("old leader after resuming: %r" % pg_part(li))
    print("its log since:\n%s" % "\n".join(l for l in leader.stderr().splitlines() if "postgres" in l)[-1500:])
    for s in subs:
        s.expect(["p:%d" % k for k in range(100)] + ["q:%d" % k for k in range(100)], timeout=WAIT)
    assert li["postgres_notifications_published"] == "0", \
        "the resumed old leader published %s notifications after losing its lease" % li["postgres_notifications_published"]
    wait_one_leader(relays, 5)


def test_leader_steps_down_when_its_lease_is_taken(pg_db, relay_factory, redis_at_factory, collectors):
    """The lease key overwritten by someone else: the leader's renewal fails, it stops LISTENing
    (within the TTL) and publishes nothing; once the intruder's lease expires a relay leads again."""
    r = redis_at_factory()
    relays = [relay_factory(pg_env(pg_db.conninfo, "ev", REDIS_URL=unix_url(r.socket), RELAY_LEADER_TTL="2s"))
              for _ in range(2)]
    leader = wait_one_leader(relays)
    subs = [collectors(x.socket, "SUBSCRIBE", PREFIX + "ev", label="relay pid %d" % x.pid) for x in relays]
    direct = r.client()
    t_steal = time.monotonic()
    direct.set("pubsub-relay:pg-leader", "intruder", px=3000)
    wait_info(leader, lambda i: i["postgres_leader"] == "0" and i["postgres_listening"] == "0", LEADER_TTL,
              "leader stepped down after its lease was taken")
    took = time.monotonic() - t_steal
    print("\nstepped down %.2fs after the lease was taken" % took)
    for x in relays:
        i = info(x)
        assert i["postgres_leader"] == "0" and i["postgres_listening"] == "0", pg_part(i)
    with pg_db.connect() as admin:
        assert wait_until(lambda: relay_backends(admin, pg_db.name) == [], 2), relay_backends(admin, pg_db.name)
    with pg_db.connect() as w:
        notify(w, "ev", "nobody listens")      # LISTEN/NOTIFY is at-most-once: gone
    assert direct.get("pubsub-relay:pg-leader") == b"intruder"
    wait_one_leader(relays, 3000 / 1000 + 3)
    with pg_db.connect() as w:
        notify_many(w, "ev", ["after:%d" % k for k in range(20)])
    for s in subs:
        s.expect(["after:%d" % k for k in range(20)])


def test_no_duplicates_while_redis_goes_and_comes_back(pg_db, relay_factory, redis_at_factory, collectors):
    """A writer keeps notifying (every ~5 ms) while Redis is killed and, 1.5 s later, restarted:
    every subscriber on both relays gets each notification at most once, in order, except in the
    window the README documents for Redis's return (a notification a relay delivered locally just
    before its resubscription reached Redis, and the new leader published just after); what is
    lost is only from the two transitions (printed), and everything after the fleet settles
    arrives."""
    r = redis_at_factory()
    env = dict(REDIS_URL=unix_url(r.socket), RELAY_LEADER_TTL="2s", RELAY_REDIS_BACKOFF_MAX="500ms")
    relays = [relay_factory(pg_env(pg_db.conninfo, "ev", **env)) for _ in range(2)]
    wait_one_leader(relays)
    subs = [collectors(x.socket, kind, name, label="relay %d %s" % (k, kind))
            for k, x in enumerate(relays) for kind, name in (("SUBSCRIBE", PREFIX + "ev"), ("PSUBSCRIBE", PREFIX + "*"))]
    sent: list[tuple[int, float, float]] = []
    stop = threading.Event()
    errors: list = []

    def write():
        try:
            with pg_db.connect() as w:
                end = time.monotonic() + 20
                while not stop.is_set() and time.monotonic() < end:
                    tb = time.monotonic()
                    notify(w, "ev", "s:%d" % len(sent))
                    sent.append((len(sent), tb, time.monotonic()))
                    time.sleep(0.005)
        except Exception as e:
            errors.append(repr(e))

    t = threading.Thread(target=write, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        t_kill = time.monotonic()
        r.kill9()
        for x in relays:
            wait_info(x, lambda i: i.get("postgres_mode") == "degraded" and i.get("postgres_listening") == "1", 5,
                      "degraded and listening")
        t_degraded = time.monotonic()
        time.sleep(1.5)
        t_restart = time.monotonic()
        r.start()
        for x in relays:
            wait_info(x, lambda i: i.get("redis_state") == "up", 10, "redis_state:up")
        wait_one_leader(relays, 10)
        t_settled = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(5)
    assert errors == [], errors
    last = ("s:%d" % sent[-1][0]).encode()
    for s in subs:
        wait_until(lambda: last in s.payloads()[-3:], WAIT, 0.02)
    time.sleep(QUIET)
    print("\n%d sent; kill at +0, degraded at +%.2fs, restart at +%.2fs, settled at +%.2fs"
          % (len(sent), t_degraded - t_kill, t_restart - t_kill, t_settled - t_kill))
    problems = []
    for s in subs:
        idx = [int(p.split(b":")[1]) for p in s.payloads()]
        seen: set[int] = set()
        dup_ids = [i for i in idx if i in seen or seen.add(i)]
        reordered = [b for a, b in zip(idx, idx[1:]) if b <= a]

        def in_return(i: int) -> bool:
            return sent[i][2] >= t_restart - 0.1 and sent[i][1] <= t_settled

        missing = sorted(set(range(len(sent))) - set(idx))
        outside = [i for i in missing
                   if not (sent[i][2] >= t_kill - 0.1 and sent[i][1] <= t_degraded) and not in_return(i)]
        bad_dups = [i for i in dup_ids + reordered if not in_return(i)]
        line = ("%s: %d received, %d duplicates and %d out of order (outside Redis's return: %r), "
                "%d lost %r, lost outside the transitions %r") % (
            s.label, len(idx), len(dup_ids), len(reordered), bad_dups[:30], len(missing), missing[:30], outside[:30])
        print(line)
        if bad_dups or outside:
            problems.append(line)
    assert problems == [], "\n".join(problems)


def test_database_url_settings_override_the_relay_defaults(pg_db, relay_factory, collectors):
    """The relay's libpq defaults (application_name=pubsub-relay, …) give way to DATABASE_URL's."""
    rel = relay_factory(pg_env(pg_db.conninfo + " application_name=orders-bridge connect_timeout=3", "ev"))
    wait_local_listening(rel)
    with pg_db.connect() as admin:
        rows = admin.execute("SELECT application_name, state FROM pg_stat_activity WHERE datname = %s "
                             "AND backend_type = 'client backend' AND pid <> pg_backend_pid()", (pg_db.name,)).fetchall()
    assert rows == [("orders-bridge", "idle")], rows
    sub = collectors(rel.socket, "SUBSCRIBE", PREFIX + "ev")
    with pg_db.connect() as w:
        notify(w, "ev", "x")
    sub.expect(["x"])
