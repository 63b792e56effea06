"""`pubsub-relay sql trigger` (README, "Postgres triggers"): the printed SQL applied with psql to a real
PostgreSQL 15, row changes received by a real LISTEN client (psycopg 3).

What is checked: the script applies, and applies again without change (one trigger, one
function); INSERT/UPDATE/DELETE documents with the right op/schema/table/row, `--columns`,
`--include-old`, `--events`; documents of 8000 bytes or more replaced by the primary key and
`"truncated": true` (exact boundary, multibyte rows, composite and missing keys, a key too big to
send) while the writer's transaction commits; odd schema, table, column and channel names;
payloads byte for byte; NOTIFY of rolled-back (sub)transactions never arrives; commit order; bad
command lines exit 64 with one clear line.
"""
from __future__ import annotations

import json
import select
import subprocess
import time

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (python3 -m pip install 'psycopg[binary]')")
from psycopg import sql  # noqa: E402

EX_USAGE = 64
PAYLOAD_LIMIT = 8000      # NOTIFY refuses a payload of this many bytes or more
WAIT = 5.0                # bound on waiting for a notification that must arrive
QUIET = 0.3               # how long "nothing more arrives" is watched, after a later one arrived


# ---- helpers ------------------------------------------------------------------------------------

def ident(name: str) -> str:
    """A name double-quoted as SQL and the CLI read it."""
    return '"' + name.replace('"', '""') + '"'


def generate(relay_binary: str, *args: str) -> str:
    r = subprocess.run([relay_binary, "sql", "trigger", *args], capture_output=True, timeout=30)
    assert r.returncode == 0, "exit %d, stderr: %s" % (r.returncode, r.stderr.decode(errors="replace"))
    assert r.stderr == b""
    return r.stdout.decode("utf-8")


def apply(db, script: str) -> None:
    r = db.psql(script)
    assert r.returncode == 0, "psql exit %d:\n%s" % (r.returncode, r.stderr.decode(errors="replace"))


def install(relay_binary, db, *args: str) -> str:
    script = generate(relay_binary, *args)
    apply(db, script)
    return script


def pairs(payload: str) -> list:
    """The document with every object as a list of (key, value) pairs, to check key order."""
    return json.loads(payload, object_pairs_hook=lambda p: p)


class Listener:
    """A LISTEN connection; every payload it gets must be well-formed JSON."""

    def __init__(self, db, *channels: str):
        self.conn = db.connect()
        for ch in channels:
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ch)))
        self.pending: list = []

    def _collect(self, want: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.pending) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.pending.extend(self.conn.notifies(timeout=left, stop_after=want - len(self.pending)))

    def get(self, n: int, timeout: float = WAIT) -> list:
        """The next n notifications (Notify: channel, payload, pid); fails if they do not come."""
        self._collect(n, timeout)
        got, self.pending = self.pending[:n], self.pending[n:]
        assert len(got) == n, "expected %d notifications within %.0fs, got %d: %r" % (n, timeout, len(got), got)
        return got

    def docs(self, n: int, timeout: float = WAIT) -> list[dict]:
        out = []
        for note in self.get(n, timeout):
            out.append(json.loads(note.payload))
        return out

    def expect_nothing_more(self, wait: float = QUIET) -> None:
        self._collect(len(self.pending) + 1, wait)
        assert self.pending == [], "unexpected notifications: %r" % self.pending

    def close(self):
        self.conn.close()


@pytest.fixture
def listen(pg_db):
    opened: list[Listener] = []

    def make(*channels: str) -> Listener:
        listener = Listener(pg_db, *channels)
        opened.append(listener)
        return listener

    yield make
    for listener in opened:
        listener.close()


# ---- the basic document -------------------------------------------------------------------------

def test_insert_update_delete_documents(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric(10,2), paid boolean, "
                  "tags text[], placed date)")
    install(relay_binary, pg_db, "--table", "orders", "--channel", "orders")
    listener = listen("orders")
    w = pg_db.connect()
    w.execute("INSERT INTO orders VALUES (1, 'ann', 12.50, false, ARRAY['a','b'], '2024-02-29')")
    w.execute("UPDATE orders SET paid = true WHERE id = 1")
    w.execute("DELETE FROM orders WHERE id = 1")
    notes = listener.get(3)
    assert [n.channel for n in notes] == ["orders"] * 3
    assert all(n.pid == w.info.backend_pid for n in notes)
    row = {"id": 1, "customer": "ann", "total": 12.50, "paid": False, "tags": ["a", "b"], "placed": "2024-02-29"}
    assert [json.loads(n.payload) for n in notes] == [
        {"op": "INSERT", "schema": "public", "table": "orders", "row": row},
        {"op": "UPDATE", "schema": "public", "table": "orders", "row": dict(row, paid=True)},
        {"op": "DELETE", "schema": "public", "table": "orders", "row": dict(row, paid=True)},
    ]
    # Keys in a fixed order: op, schema, table, row; the row's in column order.
    first = pairs(notes[0].payload)
    assert [k for k, _ in first] == ["op", "schema", "table", "row"]
    assert [k for k, _ in first[3][1]] == ["id", "customer", "total", "paid", "tags", "placed"]
    listener.expect_nothing_more()
    w.close()


def test_applying_twice_changes_nothing(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    script = generate(relay_binary, "--table", "t", "--channel", "c")
    apply(pg_db, script)
    apply(pg_db, script)
    # Also through a client library as one multi-statement string (the simple query protocol).
    with pg_db.connect() as conn:
        conn.execute(script)
    assert pg_db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal") == [(1,)]
    assert pg_db.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pubsub\\_relay\\_%'") == [(1,)]
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 'one')")
    assert listener.docs(1) == [{"op": "INSERT", "schema": "public", "table": "t", "row": {"id": 1, "v": "one"}}]
    listener.expect_nothing_more()     # one trigger, so one notification


def test_reapplying_with_other_options_replaces_the_trigger(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text, w text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c", "--events", "delete", "--columns", "id")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 'v', 'w')")
    pg_db.execute("UPDATE t SET v = 'x'")
    pg_db.execute("DELETE FROM t")
    assert listener.docs(1) == [{"op": "DELETE", "schema": "public", "table": "t", "row": {"id": 1}}]
    listener.expect_nothing_more()


def test_a_second_channel_on_the_same_table_is_a_second_trigger(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "one")
    install(relay_binary, pg_db, "--table", "t", "--channel", "two")
    a, b = listen("one"), listen("two")
    pg_db.execute("INSERT INTO t VALUES (7)")
    assert a.docs(1)[0]["row"] == {"id": 7}
    assert b.docs(1)[0]["row"] == {"id": 7}


def test_events_restrict_what_notifies(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c", "--events", "update")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 'a')")
    pg_db.execute("DELETE FROM t")
    pg_db.execute("INSERT INTO t VALUES (2, 'a')")
    pg_db.execute("UPDATE t SET v = 'b'")
    assert listener.docs(1) == [{"op": "UPDATE", "schema": "public", "table": "t", "row": {"id": 2, "v": "b"}}]
    listener.expect_nothing_more()


def test_columns_restrict_row_and_old(relay_binary, pg_db, listen):
    pg_db.execute('CREATE TABLE t (id int PRIMARY KEY, secret text, "Title" text, body text)')
    install(relay_binary, pg_db, "--table", "t", "--channel", "c", "--columns", '"Title", id', "--include-old")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 's', 'first', 'b')")
    pg_db.execute("UPDATE t SET \"Title\" = 'second', secret = 'z'")
    pg_db.execute("DELETE FROM t")
    notes = listener.get(3)
    docs = [json.loads(n.payload) for n in notes]
    assert docs == [
        {"op": "INSERT", "schema": "public", "table": "t", "row": {"Title": "first", "id": 1}},
        {"op": "UPDATE", "schema": "public", "table": "t", "row": {"Title": "second", "id": 1},
         "old": {"Title": "first", "id": 1}},
        {"op": "DELETE", "schema": "public", "table": "t", "row": {"Title": "second", "id": 1}},
    ]
    # In the order asked for, not the table's.
    assert [k for k, _ in pairs(notes[0].payload)[3][1]] == ["Title", "id"]


def test_include_old_adds_old_to_updates_only(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c", "--include-old")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 'a')")
    pg_db.execute("UPDATE t SET v = 'b', id = 2")
    pg_db.execute("DELETE FROM t")
    ins, upd, dele = listener.docs(3)
    assert "old" not in ins and "old" not in dele
    assert upd["row"] == {"id": 2, "v": "b"}
    assert upd["old"] == {"id": 1, "v": "a"}
    assert dele["row"] == {"id": 2, "v": "b"}


def test_a_misspelt_column_fails_the_script_and_changes_nothing(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    r = pg_db.psql(generate(relay_binary, "--table", "t", "--channel", "c", "--columns", "id,nope,Also"))
    assert r.returncode != 0
    assert 'table "public"."t" has no column nope, also' in r.stderr.decode()
    # The earlier trigger is intact, and writes do not fail.
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 'a')")
    assert listener.docs(1)[0]["row"] == {"id": 1, "v": "a"}


def test_a_missing_table_fails_the_script(relay_binary, pg_db):
    r = pg_db.psql(generate(relay_binary, "--table", "nope", "--channel", "c"))
    assert r.returncode != 0
    assert 'relation "public.nope" does not exist' in r.stderr.decode()
    assert pg_db.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pubsub\\_relay\\_%'") == [(0,)]


# ---- the payload limit ----------------------------------------------------------------------------

def test_a_20kb_row_sends_the_key_and_commits(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text)")
    install(relay_binary, pg_db, "--table", "docs", "--channel", "docs")
    listener = listen("docs")
    big = "x" * 20000
    pg_db.execute("INSERT INTO docs VALUES (42, %s)", (big,))
    pg_db.execute("UPDATE docs SET body = body || 'y'")
    pg_db.execute("UPDATE docs SET body = 'small'")
    pg_db.execute("UPDATE docs SET body = %s", (big,))
    pg_db.execute("DELETE FROM docs")
    notes = listener.get(5)
    truncated = {"schema": "public", "table": "docs", "key": {"id": 42}, "truncated": True}
    assert [json.loads(n.payload) for n in notes] == [
        dict(truncated, op="INSERT"),
        dict(truncated, op="UPDATE"),
        {"op": "UPDATE", "schema": "public", "table": "docs", "row": {"id": 42, "body": "small"}},
        dict(truncated, op="UPDATE"),
        dict(truncated, op="DELETE"),
    ]
    assert [k for k, _ in pairs(notes[0].payload)] == ["op", "schema", "table", "key", "truncated"]
    # The writer's statements all committed.
    pg_db.execute("INSERT INTO docs VALUES (1, %s)", (big,))
    assert pg_db.execute("SELECT id, length(body) FROM docs") == [(1, 20000)]
    listener.get(1)


def test_the_limit_is_exactly_notifys(relay_binary, pg_db, listen):
    """7999 bytes go as they are, 8000 are replaced (NOTIFY refuses >= 8000)."""
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 'x')")
    overhead = len(listener.get(1)[0].payload.encode()) - 1
    fits = PAYLOAD_LIMIT - 1 - overhead
    pg_db.execute("INSERT INTO t VALUES (2, %s)", ("y" * fits,))
    pg_db.execute("INSERT INTO t VALUES (3, %s)", ("z" * (fits + 1),))
    at_limit, over = listener.get(2)
    assert len(at_limit.payload.encode()) == PAYLOAD_LIMIT - 1
    assert json.loads(at_limit.payload)["row"] == {"id": 2, "body": "y" * fits}
    assert json.loads(over.payload) == {"op": "INSERT", "schema": "public", "table": "t", "key": {"id": 3},
                                        "truncated": True}


def test_the_limit_counts_bytes_not_characters(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, %s)", ("漢" * 2600,))    # 7800 bytes: fits
    pg_db.execute("INSERT INTO t VALUES (2, %s)", ("漢" * 3000,))    # 3000 characters, 9000 bytes
    fits, over = listener.get(2)
    assert json.loads(fits.payload)["row"]["body"] == "漢" * 2600
    assert json.loads(over.payload) == {"op": "INSERT", "schema": "public", "table": "t", "key": {"id": 2},
                                        "truncated": True}
    assert pg_db.execute("SELECT count(*) FROM t") == [(2,)]


def test_include_old_counts_in_the_limit(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c", "--include-old")
    listener = listen("c")
    half = "h" * 4500
    pg_db.execute("INSERT INTO t VALUES (1, %s)", (half,))
    pg_db.execute("UPDATE t SET body = body || '!'")     # row and old: 9000+ bytes
    ins, upd = listener.docs(2)
    assert ins["row"]["body"] == half
    assert upd == {"op": "UPDATE", "schema": "public", "table": "t", "key": {"id": 1}, "truncated": True}


def test_composite_key_in_key_order(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (region text, body text, id int, PRIMARY KEY (id, region))")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES ('eu', %s, 5)", ("b" * 9000,))
    note = listener.get(1)[0]
    assert json.loads(note.payload)["key"] == {"id": 5, "region": "eu"}
    assert [k for k, _ in pairs(note.payload)[3][1]] == ["id", "region"]


def test_key_comes_from_the_whole_row_when_columns_leave_it_out(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c", "--columns", "body")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (9, %s)", ("b" * 9000,))
    pg_db.execute("DELETE FROM t")
    assert [d["key"] for d in listener.docs(2)] == [{"id": 9}, {"id": 9}]


def test_no_primary_key_gives_an_empty_key(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int UNIQUE, body text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, %s)", ("b" * 9000,))
    assert listener.docs(1) == [{"op": "INSERT", "schema": "public", "table": "t", "key": {}, "truncated": True}]


def test_a_key_too_big_to_send_is_null_and_the_write_commits(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (k text PRIMARY KEY)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    key = "k" * 9000            # compresses in the index, but not in the document
    pg_db.execute("INSERT INTO t VALUES (%s)", (key,))
    assert listener.docs(1) == [{"op": "INSERT", "schema": "public", "table": "t", "key": None, "truncated": True}]
    assert pg_db.execute("SELECT length(k) FROM t") == [(9000,)]


# ---- names --------------------------------------------------------------------------------------

def test_odd_schema_table_column_and_channel_names(relay_binary, pg_db, listen):
    schema = 'My "Schema".v2'
    table = "odd.table 'T' \"q\""
    column = 'Mixed "Case" col'
    channel = 'Orders "EU" it\'s'
    pg_db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    pg_db.execute(sql.SQL("CREATE TABLE {}.{} (id int PRIMARY KEY, {} text, other text)").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)))
    install(relay_binary, pg_db, "--table", ident(schema) + "." + ident(table), "--channel", channel,
            "--columns", "id," + ident(column), "--include-old")
    # The function lives in the table's schema.
    assert pg_db.execute("SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                         "WHERE p.proname LIKE 'pubsub\\_relay\\_%'") == [(schema,)]
    listener = listen(channel)
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    pg_db.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a', 'b')").format(target))
    pg_db.execute(sql.SQL("UPDATE {} SET {} = 'c'").format(target, sql.Identifier(column)))
    pg_db.execute(sql.SQL("DELETE FROM {}").format(target))
    notes = listener.get(3)
    assert [n.channel for n in notes] == [channel] * 3
    assert [json.loads(n.payload) for n in notes] == [
        {"op": "INSERT", "schema": schema, "table": table, "row": {"id": 1, column: "a"}},
        {"op": "UPDATE", "schema": schema, "table": table, "row": {"id": 1, column: "c"}, "old": {"id": 1, column: "a"}},
        {"op": "DELETE", "schema": schema, "table": table, "row": {"id": 1, column: "c"}},
    ]


def test_plain_names_fold_to_lower_case_as_in_sql(relay_binary, pg_db, listen):
    pg_db.execute("CREATE SCHEMA shop")
    pg_db.execute("CREATE TABLE shop.orders (id int PRIMARY KEY)")
    install(relay_binary, pg_db, "--table", "Shop.Orders", "--channel", "MixedCase")
    listener = listen("MixedCase")
    lower = listen("mixedcase")
    pg_db.execute("INSERT INTO shop.orders VALUES (1)")
    assert listener.docs(1) == [{"op": "INSERT", "schema": "shop", "table": "orders", "row": {"id": 1}}]
    lower.expect_nothing_more()      # the channel keeps its case


def test_long_names_fit_postgres_limits(relay_binary, pg_db, listen):
    table = "t" * 63
    channel = "c" * 63
    pg_db.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(table)))
    install(relay_binary, pg_db, "--table", table, "--channel", channel)
    install(relay_binary, pg_db, "--table", table, "--channel", channel[:-1] + "d")
    names = pg_db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY 1",
                          (ident(table),))
    assert len(names) == 2 and all(len(n.encode()) <= 63 for (n,) in names)
    a, b = listen(channel), listen(channel[:-1] + "d")
    pg_db.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(table)))
    assert a.docs(1)[0]["table"] == table
    assert b.docs(1)[0]["table"] == table


# ---- payloads verbatim, transactions, order ------------------------------------------------------

def test_multibyte_utf8_arrives_byte_for_byte(relay_binary, pg_db):
    """Read off the wire with libpq (psycopg.pq), no decoding in between."""
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "ch😀")
    value = 'héllo wörld — ☃ 漢字 😀 עברית e\u0301 "q" \\ \u00a0 \U0010fffd'
    expected = ('{"op" : "INSERT", "schema" : "public", "table" : "t", "row" : {"id":1,"body":%s}}'
                % json.dumps(value, ensure_ascii=False)).encode("utf-8")
    conn = pg_db.connect()
    try:
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier("ch😀")))
        pg_db.execute("INSERT INTO t VALUES (1, %s)", (value,))
        pgconn = conn.pgconn
        deadline = time.monotonic() + WAIT
        note = None
        while note is None and time.monotonic() < deadline:
            select.select([pgconn.socket], [], [], max(0.0, deadline - time.monotonic()))
            pgconn.consume_input()
            note = pgconn.notifies()
        assert note is not None, "no notification within %.0fs" % WAIT
        assert note.relname == "ch😀".encode("utf-8")
        assert note.extra == expected
        assert json.loads(note.extra.decode("utf-8", "strict"))["row"]["body"] == value
    finally:
        conn.close()


def test_rolled_back_transactions_never_notify(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    with pg_db.connect() as w:
        w.execute("BEGIN")
        w.execute("INSERT INTO t VALUES (1)")
        w.execute("ROLLBACK")
        w.execute("BEGIN")
        w.execute("INSERT INTO t VALUES (2)")
        w.execute("SAVEPOINT s")
        w.execute("INSERT INTO t VALUES (3)")
        w.execute("ROLLBACK TO SAVEPOINT s")
        w.execute("COMMIT")
        w.execute("INSERT INTO t VALUES (4)")
    # Notifications come in commit order: had 1 or 3 been sent, they would come before 4.
    assert [d["row"]["id"] for d in listener.docs(2)] == [2, 4]
    listener.expect_nothing_more()


def test_a_failed_statement_does_not_notify(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg_db.execute("INSERT INTO t VALUES (2), (1)")    # row 2's trigger ran, then the statement failed
    pg_db.execute("INSERT INTO t VALUES (3)")
    assert [d["row"]["id"] for d in listener.docs(2)] == [1, 3]
    listener.expect_nothing_more()


def test_commit_order_is_preserved(relay_binary, pg_db, listen):
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    a, b, c = pg_db.connect(), pg_db.connect(), pg_db.connect()
    try:
        for w in (a, b, c):
            w.execute("BEGIN")
        a.execute("INSERT INTO t VALUES (1)")
        b.execute("INSERT INTO t VALUES (2)")
        c.execute("INSERT INTO t VALUES (3)")
        a.execute("INSERT INTO t VALUES (4)")
        b.execute("INSERT INTO t VALUES (5)")
        c.execute("COMMIT")
        a.execute("COMMIT")
        b.execute("COMMIT")
        notes = listener.get(5)
        assert [json.loads(n.payload)["row"]["id"] for n in notes] == [3, 1, 4, 2, 5]
        assert [n.pid for n in notes] == [c.info.backend_pid] + [a.info.backend_pid] * 2 + [b.info.backend_pid] * 2
    finally:
        for w in (a, b, c):
            w.close()
    # Many small transactions from one writer, in order.
    with pg_db.connect() as w:
        for i in range(100, 150):
            w.execute("INSERT INTO t VALUES (%s)", (i,))
    assert [d["row"]["id"] for d in listener.docs(50)] == list(range(100, 150))
    listener.expect_nothing_more()


def test_identical_documents_in_one_transaction_are_folded_by_postgres(relay_binary, pg_db, listen):
    """PostgreSQL drops a NOTIFY identical to one already queued by the same transaction (the
    README says so): two same-valued UPDATEs of a row in one transaction give one document."""
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    install(relay_binary, pg_db, "--table", "t", "--channel", "c")
    listener = listen("c")
    pg_db.execute("INSERT INTO t VALUES (1, 'a')")
    with pg_db.connect() as w:
        w.execute("BEGIN")
        w.execute("UPDATE t SET v = 'b'")
        w.execute("UPDATE t SET v = 'b'")
        w.execute("COMMIT")
    pg_db.execute("INSERT INTO t VALUES (2, 'z')")
    assert [(d["op"], d["row"]["id"]) for d in listener.docs(3)] == [("INSERT", 1), ("UPDATE", 1), ("INSERT", 2)]
    listener.expect_nothing_more()


# ---- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--table", "a..b", "--channel", "c"], "--table: 'a..b' has an empty name; expected SCHEMA.TABLE or TABLE"),
    (["--table", '"abc', "--channel", "c"], "--table: '\"abc' has an unterminated double quote"),
    (["--table", "db.s.t", "--channel", "c"], "--table: 'db.s.t' has 3 dot-separated names"),
    (["--table", "my-table", "--channel", "c"], "--table: 'my-table' is not a plain name"),
    (["--table", "t", "--channel", "c" * 64], "--channel: '%s' is 64 bytes; PostgreSQL channel names must be under 64 bytes" % ("c" * 64)),
    (["--table", "t", "--channel", ""], "--channel: is empty"),
    (["--table", "t", "--channel", "a,b"], "--channel: 'a,b' contains a comma"),
    (["--table", "t", "--channel", "c", "--events", "insert,truncate"],
     "--events: 'truncate' is not an event; expected a comma-separated list of insert, update, delete"),
    (["--table", "t", "--channel", "c", "--columns", "a,,b"], "--columns: 'a,,b' has an empty name"),
    (["--table", "t", "--channel", "c", "--events", "insert", "--include-old"], "--include-old: adds the old row to UPDATE documents"),
])
def test_bad_input_exits_64_with_one_line(relay_binary, args, message):
    r = subprocess.run([relay_binary, "sql", "trigger", *args], capture_output=True, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == EX_USAGE, "exit %d, stderr: %s" % (r.returncode, err)
    assert r.stdout == b""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("pubsub-relay sql trigger: " + message), err


def test_missing_options_exit_64(relay_binary):
    r = subprocess.run([relay_binary, "sql", "trigger", "--channel", "c"], capture_output=True, timeout=30)
    assert r.returncode == EX_USAGE
    assert r.stdout == b""
    assert "--table" in r.stderr.decode()


def test_help_describes_the_command(relay_binary):
    r = subprocess.run([relay_binary, "sql", "trigger", "--help"], capture_output=True, timeout=30)
    assert r.returncode == 0
    out = r.stdout.decode()
    for option in ("--table", "--channel", "--events", "--columns", "--include-old", "truncated"):
        assert option in out
