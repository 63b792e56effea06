"""Process lifecycle, socket handling and configuration of the relay."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import relay_env, short_tmpdir
from resputil import Conn, cmd

EX_CONFIG = 78


def wait_exit(relay, timeout: float = 5.0) -> int:
    try:
        return relay.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("relay (pid %d) did not exit within %.0fs; stderr:\n%s"
                             % (relay.pid, timeout, relay.stderr()))


def stderr_lines(relay) -> list[str]:
    return [line for line in relay.stderr().splitlines() if line.strip()]


# ---- signals --------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_and_removes_socket(relay_factory, sig):
    relay = relay_factory()
    idle = Conn(relay.socket)
    try:
        assert idle.call("PING") == "PONG"
        t0 = time.monotonic()
        os.kill(relay.pid, sig)
        rc = wait_exit(relay, 5)
        took = time.monotonic() - t0
        assert rc == 0, "exit code %s; stderr:\n%s" % (rc, relay.stderr())
        assert not os.path.exists(relay.socket), "socket file left behind after %s" % sig.name
        data, closed = idle.read_until_close(2)
        assert closed, "idle client not closed at shutdown (got %r)" % data
        print("\n%s -> exit %d in %.3fs" % (sig.name, rc, took))
    finally:
        idle.close()


def test_sigterm_flushes_pending_messages(relay_factory):
    """A subscriber connected at SIGTERM gets every message published before the signal."""
    relay = relay_factory()
    sub = Conn(relay.socket, timeout=10)
    pub = Conn(relay.socket, timeout=10)
    n = 3000
    body = b"." * 1000
    try:
        assert sub.call("SUBSCRIBE", "bye") == [b"subscribe", b"bye", 1]
        pub.send(b"".join(cmd("PUBLISH", "bye", b"%d:" % i + body) for i in range(n)))
        frames, status = pub.read_frames(n, 20)
        assert status == "ok" and set(frames) == {b":1\r\n"}, (status, set(frames))
        # ~3 MB is now queued for the subscriber, which has not read anything yet.
        os.kill(relay.pid, signal.SIGTERM)
        data, closed = sub.read_until_close(10)
        assert closed, "subscriber not closed after SIGTERM"
        from resputil import split_frames, parse1
        frames, rest = split_frames(data)
        got = [parse1(f) for f in frames]
        assert rest == b"", "trailing partial frame: %r" % rest[:80]
        assert len(got) == n, "subscriber got %d of %d messages published before SIGTERM" % (len(got), n)
        for i, m in enumerate(got):
            assert m == [b"message", b"bye", b"%d:" % i + body], "message %d: %r" % (i, m[:2])
        assert wait_exit(relay, 5) == 0
    finally:
        sub.close()
        pub.close()


def test_no_new_connections_after_sigterm(relay_factory):
    relay = relay_factory()
    os.kill(relay.pid, signal.SIGTERM)
    assert wait_exit(relay, 5) == 0
    with pytest.raises(OSError):
        Conn(relay.socket, timeout=1)


# ---- the socket file --------------------------------------------------------------------------

def test_socket_mode_default_0660(relay_factory):
    relay = relay_factory()
    mode = stat.S_IMODE(os.stat(relay.socket).st_mode)
    assert stat.S_ISSOCK(os.stat(relay.socket).st_mode)
    assert mode == 0o660, oct(mode)


@pytest.mark.parametrize("mode", ["0600", "0666", "600"])
def test_socket_mode_honoured(relay_factory, mode):
    relay = relay_factory({"RELAY_SOCKET_MODE": mode})
    got = stat.S_IMODE(os.stat(relay.socket).st_mode)
    assert got == int(mode, 8), oct(got)


def test_stale_socket_file_is_replaced(relay_factory):
    d = short_tmpdir("rit-stale-")
    path = os.path.join(d, "relay.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # file stays, nobody listens
    assert os.path.exists(path)
    relay = relay_factory(socket_path=path)
    with Conn(path) as conn:
        assert conn.call("PING") == "PONG"
    assert relay.proc.poll() is None


def test_live_socket_is_not_stolen(relay_factory):
    first = relay_factory()
    inode = os.stat(first.socket).st_ino
    second = relay_factory(socket_path=first.socket, wait=False)
    rc = wait_exit(second, 5)
    lines = stderr_lines(second)
    print("\nsecond relay exit %d, stderr: %r" % (rc, lines))
    assert rc != 0
    assert lines, "second relay exited without saying why"
    text = "\n".join(lines).lower()
    assert first.socket.lower() in text or "in use" in text or "already" in text or "another" in text, lines
    assert os.path.exists(first.socket) and os.stat(first.socket).st_ino == inode, "socket file was replaced"
    with Conn(first.socket) as conn:
        assert conn.call("PING") == "PONG"
    assert first.proc.poll() is None


def test_socket_path_107_bytes_works(relay_factory):
    d = short_tmpdir("rit-long-")
    path = os.path.join(d, "s" * (107 - len(d) - 1))
    assert len(path.encode()) == 107
    relay = relay_factory(socket_path=path)
    with Conn(path) as conn:
        assert conn.call("PING") == "PONG"
    assert relay.proc.poll() is None


@pytest.mark.parametrize("kind", ["108_bytes", "200_bytes", "abstract"])
def test_bad_socket_path_exit_78(relay_factory, kind):
    d = short_tmpdir("rit-bad-")
    if kind == "abstract":
        path = "@pubsub-relay-abstract"
    else:
        n = int(kind.split("_")[0])
        path = os.path.join(d, "s" * (n - len(d) - 1))
        assert len(path) == n
    relay = relay_factory(socket_path=path, wait=False)
    rc = wait_exit(relay, 5)
    lines = stderr_lines(relay)
    assert rc == EX_CONFIG, "exit %s, stderr %r" % (rc, lines)
    assert len(lines) == 1 and "RELAY_SOCKET" in lines[0], lines


# ---- configuration ---------------------------------------------------------------------------

BAD_VALUES = [
    ("RELAY_SOCKET_MODE", "999"),
    ("RELAY_SOCKET_MODE", "rw-rw----"),
    ("RELAY_MAX_MESSAGE_BYTES", "abc"),
    ("RELAY_MAX_MESSAGE_BYTES", "-5"),
    ("RELAY_MAX_ARGUMENTS", "many"),
    ("RELAY_QUERY_BUFFER_LIMIT", "64zb"),
    ("RELAY_CLIENT_BUFFER_LIMIT", "32mb"),
    ("RELAY_CLIENT_BUFFER_LIMIT", "32mb 8mb sixty"),
    ("RELAY_LOG_LEVEL", "loud"),
    ("RELAY_LOG_FORMAT", "xml"),
    ("RELAY_METRICS_ADDR", "not an address"),
    ("RELAY_FOO", "1"),
]


@pytest.mark.parametrize("var,value", BAD_VALUES, ids=["%s=%s" % v for v in BAD_VALUES])
def test_invalid_config_exit_78(relay_factory, var, value):
    relay = relay_factory({var: value}, wait=False)
    rc = wait_exit(relay, 5)
    lines = stderr_lines(relay)
    assert rc == EX_CONFIG, "exit %s, stderr %r" % (rc, lines)
    assert len(lines) == 1, "expected one stderr line, got %r" % lines
    assert var in lines[0], lines
    assert not os.path.exists(relay.socket), "socket created despite invalid config"


def _write_env(lines: list[str]) -> str:
    d = short_tmpdir("rit-env-")
    path = os.path.join(d, "relay.env")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _check_config(relay_binary, path):
    env = relay_env(None, {"RELAY_METRICS_ADDR": None, "RELAY_LOG_LEVEL": None})
    return subprocess.run([relay_binary, "check-config", "--env-file", path], env=env, capture_output=True,
                          text=True, timeout=10)


def test_check_config_good_file(relay_binary):
    path = _write_env([
        "# pubsub-relay test configuration",
        "RELAY_SOCKET=/tmp/rit-check/relay.sock",
        "RELAY_SOCKET_MODE=0600",
        "",
        'RELAY_CLIENT_BUFFER_LIMIT="32mb 8mb 60"',
        "RELAY_MAX_MESSAGE_BYTES=2mb",
        "RELAY_METRICS_ADDR=",
        "RELAY_LOG_LEVEL=debug",
        "RELAY_LOG_FORMAT=json",
    ])
    res = _check_config(relay_binary, path)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)


@pytest.mark.parametrize("var,value", [("RELAY_SOCKET_MODE", "999"), ("RELAY_MAX_MESSAGE_BYTES", "abc"),
                                       ("RELAY_FOO", "1"), ("RELAY_SOCKET", "@abstract"),
                                       ("RELAY_CLIENT_BUFFER_LIMIT", "1 2"),
                                       # a group that does not exist fails start-up: check-config must say so
                                       ("RELAY_SOCKET_GROUP", "no-such-group-rit")])
def test_check_config_bad_file(relay_binary, var, value):
    path = _write_env(["RELAY_SOCKET=/tmp/rit-check/relay.sock", "%s=%s" % (var, value), "RELAY_LOG_LEVEL=info"])
    res = _check_config(relay_binary, path)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == EX_CONFIG, (res.returncode, res.stdout, res.stderr)
    assert len(lines) == 1 and var in lines[0], lines


def test_check_config_missing_file(relay_binary):
    res = _check_config(relay_binary, "/tmp/rit-no-such-dir/relay.env")
    assert res.returncode != 0, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.strip(), "no message for a missing env file"


def test_run_with_env_file(relay_factory):
    d = short_tmpdir("rit-envrun-")
    sock = os.path.join(d, "from-file.sock")
    path = _write_env(["RELAY_SOCKET=%s" % sock, "RELAY_SOCKET_MODE=0640", "RELAY_METRICS_ADDR="])
    relay = relay_factory({"RELAY_SOCKET": None}, socket_path=sock, wait=False, args=["--env-file", path])
    # RELAY_SOCKET is not in the environment: the path comes from the file.
    from conftest import wait_accepting
    wait_accepting(sock, relay.proc)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o640


def _some_group():
    import grp
    mine = set(os.getgroups()) | {os.getgid()}
    for g in grp.getgrall():
        if g.gr_gid != os.getgid() and (os.geteuid() == 0 or g.gr_gid in mine):
            return g
    return None


def test_socket_group_honoured(relay_factory):
    g = _some_group()
    if g is None:
        pytest.skip("no second group this user may chown a socket to")
    relay = relay_factory({"RELAY_SOCKET_GROUP": g.gr_name})
    st = os.stat(relay.socket)
    assert st.st_gid == g.gr_gid, (st.st_gid, g)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_socket_group_unknown_exit_78(relay_factory):
    relay = relay_factory({"RELAY_SOCKET_GROUP": "no-such-group-rit"}, wait=False)
    rc = wait_exit(relay, 5)
    lines = stderr_lines(relay)
    assert rc == EX_CONFIG, "exit %s, stderr %r" % (rc, lines)
    assert len(lines) == 1 and "RELAY_SOCKET_GROUP" in lines[0], lines


# ---- input caps (README, "Bad input and slow consumers"): a -ERR, a disconnect, others unaffected

def test_max_arguments_and_message_bytes(relay_factory):
    relay = relay_factory({"RELAY_MAX_ARGUMENTS": "10", "RELAY_MAX_MESSAGE_BYTES": "1kb"})
    with Conn(relay.socket) as bystander:
        assert bystander.call("SUBSCRIBE", "caps") == [b"subscribe", b"caps", 1]
        with Conn(relay.socket) as conn:  # at the cap: fine
            conn.send(cmd("SUBSCRIBE", *["c%d" % i for i in range(9)]))
            frames, status = conn.read_frames(9)
            assert status == "ok", status
        with Conn(relay.socket) as conn:
            assert conn.call("PUBLISH", "caps", b"x" * 1024) == 1
        for request in (cmd("SUBSCRIBE", *["c%d" % i for i in range(10)]), cmd("PUBLISH", "caps", b"x" * 1025)):
            with Conn(relay.socket) as conn:
                try:
                    conn.send(request)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                data, closed = conn.read_until_close(3)
                print("\n%r -> %r closed=%s" % (request[:30], data, closed))
                assert data.startswith(b"-ERR "), data
                assert closed
        assert bystander.read_frame() == b"*3\r\n$7\r\nmessage\r\n$4\r\ncaps\r\n$1024\r\n" + b"x" * 1024 + b"\r\n"
        assert bystander.read_quiet(0.2) == b""
        with Conn(relay.socket) as conn:
            stats = conn.call("INFO", "stats").decode()
        assert "protocol_errors:2" in stats, stats
