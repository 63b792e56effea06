"""The Redis backplane over TLS (`rediss://`, README "Redis over TLS") against a real
`redis-server --tls-port`, with a CA and certificates made by `openssl` in a temporary directory.

* a fleet of two relays over TLS delivers each message exactly once;
* `--tls-auth-clients yes`: degraded with a clear warning without a client certificate, up with one;
* wrong CA, wrong name, expired certificate, `redis://` to the TLS port, `rediss://` to a plaintext
  port: one clear warning per attempt, a degraded relay that serves its apps, and recovery once the
  files (or the server's certificate) are fixed;
* SIGHUP: new upstream connections use the re-read files, established ones are untouched, invalid
  files change nothing;
* `check-config`: exit 78 and one line naming the variable (and the file);
* the handshake's cost: time from start to `redis_state:up`, plaintext vs TLS.

Every process is started here and stopped by its PID; every wait is bounded.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import time

import pytest

from conftest import relay_info, short_tmpdir, stop_pid, wait_redis_state, wait_until

EX_CONFIG = 78


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class PKI:
    """A test CA, a second unrelated CA, and certificates signed by the first:
    server.pem (SAN IP:127.0.0.1 + DNS:redis.test), dns-only.pem (DNS:redis.test only),
    expired.pem (valid 2020-01-01 to 2020-01-02), client.pem (for tls-auth-clients)."""

    def __init__(self):
        if not shutil.which("openssl"):
            pytest.skip("openssl not installed (apt-get install openssl)")
        self.dir = short_tmpdir("rit-pki-")
        d = self.dir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        for ca in ("ca", "other-ca"):
            _openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "30",
                     "-subj", "/CN=pubsub-relay test %s" % ca, cwd=d)
        with open(os.path.join(d, "san-ip-dns.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:redis.test\n")
        with open(os.path.join(d, "san-dns.cnf"), "w") as f:
            f.write("subjectAltName=DNS:redis.test\n")
        with open(os.path.join(d, "client.cnf"), "w") as f:
            f.write("extendedKeyUsage=clientAuth\n")
        # `openssl ca` takes explicit start and end dates: the way to make a certificate that has
        # already expired with Debian 12's openssl 3.0 (x509 -req cannot set a past start).
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca=test\n[test]\ndir=%s\ndatabase=%s/index.txt\nnew_certs_dir=%s\n"
                    "serial=%s/serial\ndefault_md=sha256\npolicy=any\nunique_subject=no\n"
                    "[any]\ncommonName=supplied\n" % (d, d, d, d))
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        for name, ext in (("server", "san-ip-dns.cnf"), ("dns-only", "san-dns.cnf"), ("client", "client.cnf")):
            _openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
            _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", name + ".pem", "-days", "30", "-extfile", ext, cwd=d)
        _openssl("ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
                 "-in", "server.csr", "-out", "expired.pem", "-startdate", "20200101000000Z",
                 "-enddate", "20200102000000Z", "-extfile", "san-ip-dns.cnf", cwd=d)
        shutil.copy(os.path.join(d, "server.key"), os.path.join(d, "expired.key"))

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)


@pytest.fixture(scope="module")
def pki():
    p = PKI()
    yield p
    shutil.rmtree(p.dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TLSRedis:
    """redis-server on 127.0.0.1: a TLS port (or, with tls=False, a plaintext TCP port) plus a
    plaintext Unix socket for the test's own commands."""

    def __init__(self, binary: str, pki: PKI, cert: str = "server", auth_clients: str = "no", tls: bool = True):
        self.dir = short_tmpdir("rit-tlsredis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = free_port()
        args = [binary, "--bind", "127.0.0.1", "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        if tls:
            args += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", pki.path(cert + ".pem"), "--tls-key-file", pki.path(cert + ".key"),
                     "--tls-ca-cert-file", pki.path("ca.pem"), "--tls-auth-clients", auth_clients]
        else:
            args += ["--port", str(self.port)]
        self.log = open(os.path.join(self.dir, "redis.log"), "w+b")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not wait_until(self._answers, 10):
            self.stop()
            raise RuntimeError("redis-server with TLS not answering on %s" % self.socket)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("redis-server exited %s: %s" % (self.proc.returncode, open(self.log.name).read()))
        try:
            return self.client().ping()
        except Exception:
            return False

    def client(self):
        import redis
        return redis.Redis(unix_socket_path=self.socket, socket_timeout=5)

    def stop(self):
        stop_pid(self.proc)
        self.log.close()


@pytest.fixture
def tls_redis_factory(redis_server_binary):
    started: list[TLSRedis] = []

    def start(pki: PKI, **kw) -> TLSRedis:
        s = TLSRedis(redis_server_binary, pki, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def app(relay):
    import redis
    return redis.Redis(unix_socket_path=relay.socket, socket_timeout=5)


def write_env(path: str, values: dict):
    with open(path, "w") as f:
        for k, v in values.items():
            f.write("%s=%s\n" % (k, v))


def wait_for_log(relay, words: str, timeout: float = 10.0, count: int = 1) -> list[str]:
    """The relay's stderr lines holding `words`, once there are at least `count` of them."""
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= count else None)(
        [l for l in relay.stderr().splitlines() if words in l]), timeout, 0.05)
    assert lines, "no %d log line(s) with %r within %.0fs; stderr:\n%s" % (count, words, timeout, relay.stderr())
    return lines


def assert_serves_locally(relay):
    """A degraded relay still answers PING and delivers a local PUBLISH to a local subscriber."""
    r = app(relay)
    assert r.ping()
    sub = app(relay).pubsub()
    sub.subscribe("tls:local")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert r.publish("tls:local", "hello") == 1
    msg = sub.get_message(timeout=5)
    assert msg and msg["data"] == b"hello", msg
    sub.close()


# ---- a fleet over TLS ---------------------------------------------------------------------------

def test_fleet_of_two_relays_over_tls_delivers_each_message_once(pki, tls_redis_factory, backplane_relay):
    server = tls_redis_factory(pki)
    url = "rediss://127.0.0.1:%d" % server.port
    env = {"RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem")}
    a = backplane_relay(url, env)
    b = backplane_relay(url, env)
    assert "redis backplane over TLS: trusting 1 CA certificate" in a.stderr()
    # Both relays' connections are Redis's TLS clients: the plaintext port is closed (--port 0).
    names = [c["name"] for c in server.client().client_list()]
    assert sum(n.startswith("pubsub-relay:") for n in names) == 4, names

    sub = app(b).pubsub()
    sub.subscribe("tls:fleet")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    pub = app(a)
    n = 300
    for i in range(n):
        assert pub.publish("tls:fleet", "m%d" % i) == 1  # one subscribing relay, counted once
    got = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        m = sub.get_message(timeout=1)
        if m and m["type"] == "message":
            got.append(m["data"])
    # Nothing more may arrive: exactly once, in order.
    extra = sub.get_message(timeout=0.5)
    assert got == [b"m%d" % i for i in range(n)], "got %d of %d" % (len(got), n)
    assert extra is None, extra
    sub.close()


# ---- client certificates -----------------------------------------------------------------------

def test_client_certificate_required(pki, tls_redis_factory, backplane_relay):
    server = tls_redis_factory(pki, auth_clients="yes")
    url = "rediss://127.0.0.1:%d" % server.port
    without = backplane_relay(url, {"RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem")}, wait_up=False)
    line = wait_for_log(without, "requires a client certificate")[0]
    assert "warning" in line and "TLS handshake with 127.0.0.1:%d failed" % server.port in line, line
    assert "RELAY_REDIS_TLS_CERT_FILE" in line, line
    assert relay_info(without.socket)["redis_state"] == "degraded"
    assert_serves_locally(without)

    with_cert = backplane_relay(url, {"RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem"),
                                      "RELAY_REDIS_TLS_CERT_FILE": pki.path("client.pem"),
                                      "RELAY_REDIS_TLS_KEY_FILE": pki.path("client.key")})
    assert "client certificate" in with_cert.stderr()
    # Redis does not accept a client certificate from another CA either.
    stranger_dir = short_tmpdir("rit-stranger-")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "k.pem", "-out", "c.pem", "-days", "2", "-subj", "/CN=stranger", cwd=stranger_dir)
    stranger = backplane_relay(url, {"RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem"),
                                     "RELAY_REDIS_TLS_CERT_FILE": os.path.join(stranger_dir, "c.pem"),
                                     "RELAY_REDIS_TLS_KEY_FILE": os.path.join(stranger_dir, "k.pem")}, wait_up=False)
    line = wait_for_log(stranger, "client certificate")[-1]
    assert "Redis refused the relay's client certificate" in line, stranger.stderr()
    assert relay_info(stranger.socket)["redis_state"] == "degraded"


# ---- handshake failures -------------------------------------------------------------------------

def _degraded_with(relay, words: str, port: int):
    """At least two attempts (the reconnect backoff goes on), each one warning with `words`."""
    lines = wait_for_log(relay, words, timeout=15, count=2)
    for line in lines:
        assert " warning " in line or '"warning"' in line, line
    info = relay_info(relay.socket)
    assert info["redis_state"] == "degraded", info
    assert words in info["redis_last_error"], info
    assert_serves_locally(relay)
    return lines


def test_wrong_ca_then_fixed_file_and_sighup(pki, tls_redis_factory, relay_factory):
    server = tls_redis_factory(pki)
    ca = os.path.join(short_tmpdir("rit-ca-"), "redis-ca.pem")
    shutil.copy(pki.path("other-ca.pem"), ca)
    relay = relay_factory({"REDIS_URL": "rediss://127.0.0.1:%d" % server.port, "RELAY_REDIS_TLS_CA_FILE": ca})
    lines = _degraded_with(relay, "TLS handshake with 127.0.0.1:%d failed: certificate is not signed by a trusted CA" % server.port,
                           server.port)
    print("\n" + lines[0])
    shutil.copy(pki.path("ca.pem"), ca)  # the same path, now the right CA
    os.kill(relay.pid, signal.SIGHUP)
    wait_redis_state(relay, "up", 15)
    assert "reload: Redis TLS files read again" in relay.stderr()


def test_wrong_name_then_server_name_fixed_by_reload(pki, tls_redis_factory, relay_factory):
    # The certificate lists DNS:redis.test only (no IP address), so the name decides.
    server = tls_redis_factory(pki, cert="dns-only")
    env_file = os.path.join(short_tmpdir("rit-env-"), "relay.env")
    base = {"REDIS_URL": "rediss://127.0.0.1:%d" % server.port, "RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem")}
    write_env(env_file, dict(base, RELAY_REDIS_TLS_SERVER_NAME="wrong.test"))
    relay = relay_factory(args=["--env-file", env_file])
    _degraded_with(relay, "failed: certificate is not valid for the name wrong.test", server.port)
    # Without a server name, the URL's IP address is checked, and the certificate lists none.
    write_env(env_file, base)
    os.kill(relay.pid, signal.SIGHUP)
    wait_for_log(relay, "failed: certificate is not valid for the IP address 127.0.0.1", timeout=15)
    write_env(env_file, dict(base, RELAY_REDIS_TLS_SERVER_NAME="redis.test"))
    os.kill(relay.pid, signal.SIGHUP)
    wait_redis_state(relay, "up", 15)
    assert "reload: applied RELAY_REDIS_TLS_SERVER_NAME: (unset) -> redis.test" in relay.stderr()


def test_expired_certificate_then_renewed_on_the_server(pki, tls_redis_factory, backplane_relay):
    server = tls_redis_factory(pki, cert="expired")
    relay = backplane_relay("rediss://127.0.0.1:%d" % server.port, {"RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem")},
                            wait_up=False)
    lines = _degraded_with(relay, "failed: certificate has expired (valid until 2020-01-02 00:00 UTC)", server.port)
    print("\n" + lines[0])
    # Renewing the server's certificate (Redis reloads TLS on CONFIG SET) is the fix; the relay's
    # reconnect backoff picks it up, no reload needed.
    server.client().config_set("tls-cert-file", pki.path("server.pem"))
    wait_redis_state(relay, "up", 15)


def test_plaintext_url_to_the_tls_port(pki, tls_redis_factory, backplane_relay):
    server = tls_redis_factory(pki)
    relay = backplane_relay("redis://127.0.0.1:%d" % server.port, wait_up=False)
    lines = _degraded_with(relay, "before it answered; if that port is Redis's tls-port, use a rediss:// URL", server.port)
    print("\n" + lines[0])
    # REDIS_URL is not reloadable (README, "Signals"): a reload says so and changes nothing.
    os.kill(relay.pid, signal.SIGHUP)
    wait_for_log(relay, "reload: no reloadable setting changed", timeout=5)


def test_tls_url_to_a_plaintext_port(pki, tls_redis_factory, backplane_relay):
    server = tls_redis_factory(pki, tls=False)
    relay = backplane_relay("rediss://127.0.0.1:%d" % server.port,
                            {"RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem"), "RELAY_REDIS_TIMEOUT": "1s"}, wait_up=False)
    lines = _degraded_with(relay, "failed: no TLS answer within 0.750 s (is that a plaintext port?", server.port)
    print("\n" + lines[0])


# ---- SIGHUP ------------------------------------------------------------------------------------

def test_reload_new_files_apply_to_new_connections_only_and_invalid_files_change_nothing(
        pki, tls_redis_factory, relay_factory):
    server = tls_redis_factory(pki)
    ca = os.path.join(short_tmpdir("rit-ca-"), "redis-ca.pem")
    shutil.copy(pki.path("ca.pem"), ca)
    relay = relay_factory({"REDIS_URL": "rediss://127.0.0.1:%d" % server.port, "RELAY_REDIS_TLS_CA_FILE": ca})
    wait_redis_state(relay, "up")
    r = server.client()

    def kill_relay_connections():
        return r.execute_command("CLIENT", "KILL", "TYPE", "pubsub") + r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    # 1. An invalid file: the reload fails, nothing changes, and a reconnect still uses the old files.
    with open(ca, "w") as f:
        f.write("not a certificate\n")
    os.kill(relay.pid, signal.SIGHUP)
    line = wait_for_log(relay, "reload failed, configuration unchanged")[0]
    assert "RELAY_REDIS_TLS_CA_FILE" in line and ca in line, line
    assert relay_info(relay.socket)["redis_state"] == "up"
    assert kill_relay_connections() >= 2
    wait_for_log(relay, "connection down", timeout=5)
    wait_redis_state(relay, "up", 15)

    # 2. A valid file with the wrong CA: established connections are untouched...
    shutil.copy(pki.path("other-ca.pem"), ca)
    os.kill(relay.pid, signal.SIGHUP)
    wait_for_log(relay, "reload: Redis TLS files read again")
    time.sleep(0.5)
    assert relay_info(relay.socket)["redis_state"] == "up"
    sub = app(relay).pubsub()
    sub.subscribe("tls:reload")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert r.publish("tls:reload", "still up") == 1
    assert sub.get_message(timeout=5)["data"] == b"still up"
    # ...and new ones use it.
    kill_relay_connections()
    wait_for_log(relay, "certificate is not signed by a trusted CA", timeout=15)
    assert relay_info(relay.socket)["redis_state"] == "degraded"
    sub.close()


# ---- check-config ------------------------------------------------------------------------------

def _check_config(relay_binary, env: dict) -> tuple[int, list[str]]:
    from conftest import relay_env
    p = subprocess.run([relay_binary, "check-config"], env=relay_env(None, env), capture_output=True,
                       text=True, timeout=30)
    return p.returncode, [l for l in p.stderr.splitlines() if l.strip()]


@pytest.mark.parametrize("case", ["missing_ca", "non_pem_ca", "non_pem_key", "cert_without_key", "key_without_cert",
                                  "tls_vars_with_redis_url", "tls_vars_without_url", "ip_server_name",
                                  "key_of_another_cert"])
def test_check_config_refuses_bad_tls_settings(relay_binary, pki, case):
    url = "rediss://127.0.0.1:6390"
    junk = os.path.join(short_tmpdir("rit-junk-"), "junk.pem")
    with open(junk, "w") as f:
        f.write("hello\n")
    missing = "/nonexistent/redis-ca.pem"
    env, variable, words = {
        "missing_ca": ({"REDIS_URL": url, "RELAY_REDIS_TLS_CA_FILE": missing},
                       "RELAY_REDIS_TLS_CA_FILE", [missing, "No such file or directory"]),
        "non_pem_ca": ({"REDIS_URL": url, "RELAY_REDIS_TLS_CA_FILE": junk}, "RELAY_REDIS_TLS_CA_FILE", [junk, "not PEM"]),
        "non_pem_key": ({"REDIS_URL": url, "RELAY_REDIS_TLS_CERT_FILE": pki.path("client.pem"),
                         "RELAY_REDIS_TLS_KEY_FILE": pki.path("client.pem")},
                        "RELAY_REDIS_TLS_KEY_FILE", [pki.path("client.pem"), "not a PEM private key"]),
        "cert_without_key": ({"REDIS_URL": url, "RELAY_REDIS_TLS_CERT_FILE": pki.path("client.pem")},
                             "RELAY_REDIS_TLS_KEY_FILE", ["needs its private key"]),
        "key_without_cert": ({"REDIS_URL": url, "RELAY_REDIS_TLS_KEY_FILE": pki.path("client.key")},
                             "RELAY_REDIS_TLS_CERT_FILE", ["needs its client certificate"]),
        "tls_vars_with_redis_url": ({"REDIS_URL": "redis://:secret@127.0.0.1:6390",
                                     "RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem")},
                                    "RELAY_REDIS_TLS_CA_FILE", ["without TLS", "rediss://"]),
        "tls_vars_without_url": ({"RELAY_REDIS_TLS_SERVER_NAME": "redis.test"},
                                 "RELAY_REDIS_TLS_SERVER_NAME", ["REDIS_URL is not set"]),
        "ip_server_name": ({"REDIS_URL": url, "RELAY_REDIS_TLS_SERVER_NAME": "127.0.0.1"},
                           "RELAY_REDIS_TLS_SERVER_NAME", ["is an IP address"]),
        "key_of_another_cert": ({"REDIS_URL": url, "RELAY_REDIS_TLS_CERT_FILE": pki.path("client.pem"),
                                 "RELAY_REDIS_TLS_KEY_FILE": pki.path("server.key")},
                                "RELAY_REDIS_TLS_KEY_FILE", ["does not belong to the certificate"]),
    }[case]
    rc, lines = _check_config(relay_binary, env)
    print("\n%s -> %d %r" % (case, rc, lines))
    assert rc == EX_CONFIG, (rc, lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith("pubsub-relay: invalid configuration: %s: " % variable), lines
    for w in words:
        assert w in lines[0], (w, lines)
    assert "secret" not in lines[0]


def test_check_config_accepts_good_tls_settings(relay_binary, pki):
    rc, _ = _check_config(relay_binary, {"REDIS_URL": "rediss://127.0.0.1:6390",
                                         "RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem"),
                                         "RELAY_REDIS_TLS_CERT_FILE": pki.path("client.pem"),
                                         "RELAY_REDIS_TLS_KEY_FILE": pki.path("client.key"),
                                         "RELAY_REDIS_TLS_SERVER_NAME": "redis.test"})
    assert rc == 0


def test_bad_tls_file_stops_start_up_with_78(relay_factory, pki):
    relay = relay_factory({"REDIS_URL": "rediss://127.0.0.1:6390", "RELAY_REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"},
                          wait=False)
    assert relay.proc.wait(10) == EX_CONFIG
    lines = [l for l in relay.stderr().splitlines() if l.strip()]
    assert len(lines) == 1 and "RELAY_REDIS_TLS_CA_FILE" in lines[0] and "/nonexistent/ca.pem" in lines[0], lines


# ---- cost ----------------------------------------------------------------------------------------

def test_handshake_cost_plaintext_vs_tls(pki, tls_redis_factory, redis_server_binary, backplane_relay):
    """Time from starting a relay to `redis_state:up` (process start, two connections, the login
    pipeline, and for TLS two handshakes), median of 5 runs each. Printed for the README; the
    assertion only bounds TLS to something a fleet can live with."""
    tls_server = tls_redis_factory(pki)
    plain_server = tls_redis_factory(pki, tls=False)

    def measure(url, env):
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            r = backplane_relay(url, env, wait_up=False)
            wait_redis_state(r, "up", 10)
            times.append(time.monotonic() - t0)
            r.stop()
        return statistics.median(times)

    plain = measure("redis://127.0.0.1:%d" % plain_server.port, {})
    tls = measure("rediss://127.0.0.1:%d" % tls_server.port, {"RELAY_REDIS_TLS_CA_FILE": pki.path("ca.pem")})
    print("\nstart to redis_state:up, median of 5: plaintext %.1f ms, TLS %.1f ms (+%.1f ms)"
          % (plain * 1e3, tls * 1e3, (tls - plain) * 1e3))
    assert tls < 2.0
