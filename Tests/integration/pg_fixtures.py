"""A real PostgreSQL for the integration tests (loaded from conftest.py as a pytest plugin).

* `postgres_server` (session): PostgreSQL 15 ($PG_BIN, default /usr/lib/postgresql/15/bin) on a
  private Unix socket directory (`listen_addresses=''`, no TCP), data in a short /tmp directory,
  trust authentication for the `postgres` superuser. initdb and postgres refuse to run as root,
  so as root both run as the `postgres` system user (its PID is still ours: Popen's `user=`
  switches user before exec, no wrapper process in between).
* `pg_db` (per test): a fresh database on that server, dropped afterwards.

Missing binaries, a missing `postgres` user or a missing psycopg are reported as skips.
The server is stopped by its PID: SIGINT (PostgreSQL's "fast" shutdown: it ends open sessions;
SIGTERM is its "smart" shutdown, which waits for every client to leave), then SIGKILL.
"""
from __future__ import annotations

import itertools
import os
import pwd
import signal
import subprocess
import time

import pytest

from conftest import short_tmpdir, stop_pid

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
PG_PORT = 5432          # only names the socket file; the directory is private
START_TIMEOUT = 30.0


def _psycopg():
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg not installed (python3 -m pip install 'psycopg[binary]', or scripts/install-deps --test)")
    return psycopg


class PostgresServer:
    def __init__(self):
        for tool in ("initdb", "postgres", "psql"):
            if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
                pytest.skip("%s/%s not found (apt-get install postgresql-15, or set PG_BIN)" % (PG_BIN, tool))
        self.psycopg = _psycopg()
        run_as: dict = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
            run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.dir = short_tmpdir("rit-pg-")
        if run_as:
            os.chown(self.dir, run_as["user"], run_as["group"])
        self.socket_dir = self.dir
        self.port = PG_PORT
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        init = subprocess.run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
                               "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                              cwd=self.dir, capture_output=True, text=True, timeout=120, **run_as)
        if init.returncode != 0:
            raise RuntimeError("initdb failed (exit %d):\n%s%s" % (init.returncode, init.stdout, init.stderr))
        self.log = open(self.log_path, "w+b")
        if run_as:
            os.chown(self.log_path, run_as["user"], run_as["group"])
        self.proc = subprocess.Popen(
            [os.path.join(PG_BIN, "postgres"), "-D", self.data, "-k", self.socket_dir, "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off",
             "-c", "synchronous_commit=off"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, **run_as)
        self.pid = self.proc.pid
        try:
            self._wait_ready()
        except Exception:
            self.stop()
            raise

    def conninfo(self, dbname: str = "postgres") -> str:
        return "host=%s port=%d user=postgres dbname=%s" % (self.socket_dir, self.port, dbname)

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited with %s before accepting connections:\n%s"
                                   % (self.proc.returncode, self.log_text()))
            try:
                with self.psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except self.psycopg.OperationalError as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError("postgres not accepting after %.0fs (%s):\n%s" % (START_TIMEOUT, last, self.log_text()))

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def connect(self, dbname: str = "postgres"):
        """An autocommit psycopg connection."""
        return self.psycopg.connect(self.conninfo(dbname), autocommit=True)

    def stop(self):
        stop_pid(self.proc, timeout=10, sig=signal.SIGINT)
        self.log.close()


class PostgresDatabase:
    """One database of `server`: its conninfo, connections, and psql."""

    def __init__(self, server: PostgresServer, name: str):
        self.server = server
        self.name = name
        self.conninfo = server.conninfo(name)

    def connect(self):
        return self.server.connect(self.name)

    def execute(self, query, params=None) -> list[tuple]:
        """Runs one statement in its own connection (autocommit); returns its rows, if any."""
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def psql(self, script: str) -> subprocess.CompletedProcess:
        """Feeds `script` to psql as an operator would (`… | psql`), stopping at the first error."""
        return subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", self.conninfo],
                              input=script.encode("utf-8"), capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    yield server
    server.stop()


_db_numbers = itertools.count(1)


@pytest.fixture
def pg_db(postgres_server):
    name = "test_%d" % next(_db_numbers)
    with postgres_server.connect() as conn:
        conn.execute("CREATE DATABASE %s" % name)
    yield PostgresDatabase(postgres_server, name)
    with postgres_server.connect() as conn:
        conn.execute("DROP DATABASE %s WITH (FORCE)" % name)


# ---- a PostgreSQL that can be stopped and started again (bridge fault tests) ---------------------

class RestartablePostgres(PostgresServer):
    """A PostgreSQL of its own (initdb once) on a private socket directory, which can be stopped
    (fast shutdown, or SIGKILL) and started again on the same socket directory and port, or
    created without being started (`start=False`: "Postgres not there yet"). Same conninfo and
    connect() as PostgresServer; the data directory survives restarts."""

    def __init__(self, start: bool = True):
        for tool in ("initdb", "postgres", "psql"):
            if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
                pytest.skip("%s/%s not found (apt-get install postgresql-15, or set PG_BIN)" % (PG_BIN, tool))
        self.psycopg = _psycopg()
        self.run_as: dict = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
            self.run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.dir = short_tmpdir("rit-pgr-")
        if self.run_as:
            os.chown(self.dir, self.run_as["user"], self.run_as["group"])
        self.socket_dir = self.dir
        self.port = PG_PORT
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.proc = None
        self.pid = None
        self.log = None
        self.generation = 0
        init = subprocess.run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
                               "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                              cwd=self.dir, capture_output=True, text=True, timeout=120, **self.run_as)
        if init.returncode != 0:
            raise RuntimeError("initdb failed (exit %d):\n%s%s" % (init.returncode, init.stdout, init.stderr))
        if start:
            self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, extra: list[str] | None = None) -> float:
        """Starts postgres; returns time.monotonic() when it first answered a query."""
        assert not self.running(), "postgres pid %d still running" % self.pid
        self.generation += 1
        if self.log is not None:
            self.log.close()
        self.log = open(self.log_path, "ab")
        if self.run_as:
            os.chown(self.log_path, self.run_as["user"], self.run_as["group"])
        self.proc = subprocess.Popen(
            [os.path.join(PG_BIN, "postgres"), "-D", self.data, "-k", self.socket_dir, "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off",
             "-c", "synchronous_commit=off"] + list(extra or []),
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, **self.run_as)
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited with %s before accepting connections:\n%s"
                                   % (self.proc.returncode, self.log_text()))
            try:
                with self.psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return time.monotonic()
            except self.psycopg.OperationalError as e:
                last = e
            time.sleep(0.005)
        self.stop()
        raise RuntimeError("postgres not accepting after %.0fs (%s):\n%s" % (START_TIMEOUT, last, self.log_text()))

    def stop(self, sig: int = signal.SIGINT):
        """Stops the server by its PID (SIGINT: fast shutdown; SIGQUIT: immediate shutdown, a crash as far as clients can tell), keeps the data."""
        if self.proc is not None:
            stop_pid(self.proc, timeout=10, sig=sig)
        if self.log is not None:
            self.log.close()
            self.log = None


@pytest.fixture
def pg_restartable():
    """start(start=True) -> RestartablePostgres; every one is stopped by its PID at the end."""
    made: list[RestartablePostgres] = []

    def make(start: bool = True) -> RestartablePostgres:
        s = RestartablePostgres(start)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
