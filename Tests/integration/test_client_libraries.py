"""The README's "Connect your client" snippets, run with the real libraries.

Every snippet lives in examples/clients/ and the README shows that file verbatim. A test copies the
file into a temporary directory with one change: the documented address
(`/run/pubsub-relay/relay.sock`, or `redis://:password@127.0.0.1:6380` for the TCP form) replaced
by the address of the server under test (the test first checks the address is in the file, so the
replacement cannot silently do nothing), then runs it and checks what it printed or did. Another test checks that README.md shows every
file of examples/clients verbatim, so the documentation and what is tested cannot drift apart.

Each library runs against redis-server itself (`[redis]`) as the reference and against the relay
(`[relay]`: local mode; `[fleet]`: relays joined through a redis-server by REDIS_URL), so a failure
only on the relay is a relay bug. A library that is not installed is a skip naming the package.
"""
from __future__ import annotations

import asyncio
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import PACKAGE_ROOT, wait_until
from fleetutil import unix_url

EXAMPLES = PACKAGE_ROOT / "examples" / "clients"
DOC_SOCKET = "/run/pubsub-relay/relay.sock"
DOC_TCP_URL = "redis://:password@127.0.0.1:6380"
RUN_TIMEOUT = 60


def materialize(tmp_path: Path, name: str, replacements: dict[str, str]) -> Path:
    """examples/clients/<name> copied to tmp_path with each documented address replaced."""
    text = (EXAMPLES / name).read_text()
    for old, new in replacements.items():
        assert old in text, "%s does not contain %r: the test would not point it at the server" % (name, old)
        text = text.replace(old, new)
    out = tmp_path / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def run(argv: list[str], cwd: Path, env: dict | None = None) -> str:
    try:
        res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                             env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s did not finish within %ds; output so far: %r %r"
                             % (argv, RUN_TIMEOUT, e.stdout, e.stderr))
    assert res.returncode == 0, "%s exited %d\nstdout: %s\nstderr: %s" % (argv, res.returncode, res.stdout, res.stderr)
    return res.stdout


def numsub(path: str, channel: str) -> int:
    import redis
    r = redis.Redis(unix_socket_path=path, socket_timeout=5)
    try:
        return r.pubsub_numsub(channel)[0][1]
    finally:
        r.close()


def need_module(name: str, hint: str):
    return pytest.importorskip(name, reason="%s not installed (%s)" % (name, hint))


@pytest.fixture(params=["redis", "relay", "fleet"])
def target3(request, redis_at_factory, relay_factory, backplane_relay):
    """[redis]: a redis-server; [relay]: a local-mode relay; [fleet]: a relay with REDIS_URL set to
    a redis-server started here. Returns (kind, socket paths of two servers an app could use).
    Each is started for the test: some libraries leave connections open after their shutdown
    (python-socketio's AsyncRedisManager keeps its subscriber), which must not outlive the test."""
    if request.param == "redis":
        s = redis_at_factory().socket
        return "redis", [s, s]
    if request.param == "relay":
        s = relay_factory().socket
        return "relay", [s, s]
    r = redis_at_factory()
    return "fleet", [backplane_relay(unix_url(r.socket)).socket, backplane_relay(unix_url(r.socket)).socket]


# ---- the README shows the files the tests run ----------------------------------------------------

def test_readme_shows_every_example_verbatim():
    """Every file of examples/clients is one fenced block of README.md, byte for byte."""
    readme = (PACKAGE_ROOT / "README.md").read_text()
    blocks = set(re.findall(r"^```[a-z]*\n(.*?)^```$", readme, flags=re.M | re.S))
    files = sorted(p for p in EXAMPLES.rglob("*") if p.is_file())
    assert len(files) >= 9, files
    missing = [str(p.relative_to(EXAMPLES)) for p in files if p.read_text() not in blocks]
    assert not missing, "README.md does not show these examples/clients files verbatim: %s" % missing


# ---- redis-py --------------------------------------------------------------------------------

@pytest.mark.parametrize("snippet", ["redis_py.py", "redis_py_resp3.py", "redis_py_asyncio.py"])
def test_redis_py_snippet(any_server, snippet, tmp_path):
    redis = need_module("redis", "pip install redis")
    if snippet == "redis_py_resp3.py" and int(redis.__version__.split(".")[0]) < 5:
        pytest.skip("redis-py %s has no protocol=3 (RESP3 came in 5.0)" % redis.__version__)
    f = materialize(tmp_path, snippet, {DOC_SOCKET: any_server.socket})
    out = run([sys.executable, str(f)], tmp_path).splitlines()
    assert out == ["{'type': 'subscribe', 'pattern': None, 'channel': b'news', 'data': 1}",
                   "{'type': 'message', 'pattern': None, 'channel': b'news', 'data': b'hello'}"], out


# ---- node-redis 4 ----------------------------------------------------------------------------

NODE_ENV = {"NODE_PATH": "/usr/share/nodejs"}   # Debian's node-redis; Debian's own nodejs looks there anyway


def node_redis() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.skip("node not installed (apt-get install nodejs node-redis)")
    probe = subprocess.run([node, "-e", "require('redis')"], capture_output=True, timeout=30,
                           env=dict(os.environ, **NODE_ENV))
    if probe.returncode != 0:
        pytest.skip("node-redis not installed (apt-get install node-redis)")
    return node


def test_node_redis_snippet(any_server, tmp_path):
    node = node_redis()
    f = materialize(tmp_path, "node_redis.js", {DOC_SOCKET: any_server.socket})
    assert run([node, str(f)], tmp_path, NODE_ENV).splitlines() == ["news hello"]


def test_node_redis_rejects_unix_urls(tmp_path):
    """What the README says: node-redis 4 wants socket.path, a unix:// URL is refused."""
    node = node_redis()
    script = ("const { createClient } = require('redis');"
              "try { createClient({ url: 'unix:///run/pubsub-relay/relay.sock' }); console.log('accepted'); }"
              "catch (e) { console.log(e.name + ': ' + e.message); }")
    assert run([node, "-e", script], tmp_path, NODE_ENV).strip() == "TypeError: Invalid protocol"


# ---- Django Channels ---------------------------------------------------------------------------

def channel_layer_config(tmp_path: Path, sock: str) -> dict:
    need_module("channels", "pip install channels channels_redis")
    need_module("channels_redis", "pip install channels_redis")
    f = materialize(tmp_path, "channels_settings.py", {DOC_SOCKET: sock})
    return runpy.run_path(str(f))["CHANNEL_LAYERS"]["default"]


def make_layer(cfg: dict):
    """What channels.layers.ChannelLayerManager does with a CHANNEL_LAYERS entry."""
    from django.utils.module_loading import import_string
    return import_string(cfg["BACKEND"])(**cfg.get("CONFIG", {}))


RUNS, PER_RUN = 40, 40


def test_channels_pubsub_layer_group_add_then_send(target3, tmp_path):
    """The consumer pattern: a new channel, group_add, then at once group_send. 40 runs of 40
    messages, each run on a new group (so a new subscription): every message must arrive, in order."""
    kind, (sock, _) = target3
    cfg = channel_layer_config(tmp_path, sock)
    assert cfg["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"

    async def main():
        layer = make_layer(cfg)
        results = []
        try:
            for run_no in range(RUNS):
                group = "room-%d-%s" % (run_no, uuid.uuid4().hex[:8])
                channel = await layer.new_channel()
                await layer.group_add(group, channel)
                for i in range(PER_RUN):
                    await layer.group_send(group, {"type": "chat.message", "i": i})
                got = []
                deadline = time.monotonic() + 3.0
                while len(got) < PER_RUN:
                    try:
                        m = await asyncio.wait_for(layer.receive(channel), max(0.01, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                    got.append(m["i"])
                results.append(got)
                if len(got) == PER_RUN:
                    await layer.group_discard(group, channel)
        finally:
            await layer.flush()
        return results

    results = asyncio.run(asyncio.wait_for(main(), 300))
    lost = [PER_RUN - len(got) for got in results]
    summary = "[%s] %d of %d runs lost messages, %d of %d messages lost in all; per run: %s" % (
        kind, sum(1 for n in lost if n), RUNS, sum(lost), RUNS * PER_RUN, lost)
    print("\n" + summary)
    for got in results:
        assert got == sorted(got) and len(set(got)) == len(got), "[%s] out of order or repeated: %r" % (kind, got)
    assert sum(lost) == 0, summary


def test_channels_classic_layer_needs_sorted_sets(any_server, tmp_path):
    """RedisChannelLayer keeps groups in sorted sets (ZADD) and sends with Lua: on redis-server a
    group round trip works, on the relay group_add fails with the relay's unknown-command error."""
    need_module("channels_redis", "pip install channels_redis")
    import redis
    from channels_redis.core import RedisChannelLayer

    async def main():
        layer = RedisChannelLayer(hosts=[unix_url(any_server.socket)])
        try:
            channel = await layer.new_channel()
            group = "classic-%s" % uuid.uuid4().hex[:8]
            if any_server.kind.startswith("redis"):   # redis-server (also DIFF_SELFTEST's second one)
                await layer.group_add(group, channel)
                await layer.group_send(group, {"type": "chat.message", "text": "hi"})
                m = await asyncio.wait_for(layer.receive(channel), 5)
                assert m == {"type": "chat.message", "text": "hi"}
                await layer.flush()
                return
            with pytest.raises(redis.ResponseError) as err:
                await layer.group_add(group, channel)
            assert re.fullmatch(r"unknown command 'ZADD', with args beginning with: 'asgi:group:%s' .*" % group,
                                str(err.value).strip()), str(err.value)
        finally:
            await layer.close_pools()   # flush() would need EVAL, which the relay does not carry either

    asyncio.run(asyncio.wait_for(main(), 30))


# ---- python-socketio ---------------------------------------------------------------------------

def test_socketio_async_redis_manager(target3, tmp_path):
    """Two python-socketio servers (the snippet, run twice), each with AsyncRedisManager on a unix://
    URL, served by aiohttp on loopback; a Socket.IO client on each receives both servers' emits."""
    socketio = need_module("socketio", "pip install python-socketio")
    need_module("aiohttp", "pip install aiohttp")
    from aiohttp import web
    kind, socks = target3
    sios = []
    for n, sock in enumerate(socks):
        f = materialize(tmp_path / ("server%d" % n), "socketio_server.py", {DOC_SOCKET: sock})
        sios.append(runpy.run_path(str(f))["sio"])
    numsub_at = socks[0]

    async def main():
        runners, clients = [], []
        try:
            for sio in sios:
                app = web.Application()
                sio.attach(app)
                runner = web.AppRunner(app)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                runners.append(runner)
                port = runner.addresses[0][1]
                c = socketio.AsyncSimpleClient()
                await c.connect("http://127.0.0.1:%d" % port, wait_timeout=10)
                clients.append(c)
            # each manager subscribes its channel from a background task once its first client connected
            deadline = time.monotonic() + 10
            while numsub(numsub_at, "socketio") != 2:
                assert time.monotonic() < deadline, "[%s] the two managers never both subscribed" % kind
                await asyncio.sleep(0.05)
            await sios[0].emit("news", {"text": "from server 0"})
            await sios[1].emit("news", {"text": "from server 1"})
            for i, c in enumerate(clients):
                got = sorted([tuple((await c.receive(timeout=10))[:2]) for _ in range(2)], key=str)
                assert got == [("news", {"text": "from server 0"}), ("news", {"text": "from server 1"})], (i, got)
        finally:
            for c in clients:
                await c.disconnect()
            for sio in sios:
                await sio.shutdown()
            for runner in runners:
                await runner.cleanup()

    asyncio.run(asyncio.wait_for(main(), 60))


# ---- Rails ActionCable ---------------------------------------------------------------------------

def test_actioncable_redis_adapter(any_server, tmp_path):
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby not installed (apt-get install ruby-actioncable ruby-redis)")
    probe = subprocess.run([ruby, "-e", 'require "action_cable"; require "redis"'], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("ActionCable or the redis gem not installed (apt-get install ruby-actioncable ruby-redis)")
    materialize(tmp_path, "actioncable/cable.yml", {DOC_SOCKET: any_server.socket})
    f = materialize(tmp_path, "actioncable/broadcast.rb", {})
    assert run([ruby, str(f)], tmp_path).splitlines() == ['{"text":"hello"}']


# ---- TCP with a password (RELAY_TCP_ADDR / RELAY_PASSWORD) ------------------------------------------

PASSWORD = "s3cret-%s" % uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "relay"])
def tcp_target(request, redis_at_factory, relay_factory):
    """(kind, port): a redis-server with --requirepass, or a relay with RELAY_TCP_ADDR and
    RELAY_PASSWORD, listening on 127.0.0.1:<port>. A relay that refuses the variables or does not
    listen on the port is a skip (a binary without the TCP listener)."""
    port = free_port()
    if request.param == "redis":
        redis_at_factory(extra=["--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD])
        assert wait_until(lambda: tcp_accepts(port), 10), "redis-server not listening on %d" % port
        return "redis", port
    rel = relay_factory({"RELAY_TCP_ADDR": "127.0.0.1:%d" % port, "RELAY_PASSWORD": PASSWORD}, wait=False)
    deadline = time.monotonic() + 10
    while not tcp_accepts(port):
        if rel.proc.poll() is not None:
            last = (rel.stderr().strip().splitlines() or ["(no output)"])[-1]
            pytest.skip("this relay binary has no TCP listener: with RELAY_TCP_ADDR and RELAY_PASSWORD set it "
                        "exited %d: %s" % (rel.proc.returncode, last[:300]))
        if time.monotonic() > deadline:
            pytest.skip("this relay binary has no TCP listener: nothing listens on 127.0.0.1:%d 10 s after "
                        "start with RELAY_TCP_ADDR set" % port)
        time.sleep(0.05)
    return "relay", port


def test_tcp_password_redis_py(tcp_target):
    redis = need_module("redis", "pip install redis")
    kind, port = tcp_target
    url = "redis://:%s@127.0.0.1:%d" % (PASSWORD, port)
    r = redis.Redis.from_url(url, socket_timeout=5)
    p = r.pubsub()
    try:
        p.subscribe("tcp-news")
        assert p.get_message(timeout=5)["type"] == "subscribe"
        assert r.publish("tcp-news", "hello") == 1
        m = p.get_message(timeout=5)
        assert (m["channel"], m["data"]) == (b"tcp-news", b"hello"), m
    finally:
        p.close()
        r.close()
    for bad in ("redis://:wrong@127.0.0.1:%d" % port, "redis://127.0.0.1:%d" % port):
        r = redis.Redis.from_url(bad, socket_timeout=5)
        try:
            with pytest.raises(redis.AuthenticationError):
                r.publish("tcp-news", "must not be delivered")
        finally:
            r.close()


def test_tcp_password_broadcaster_snippet(tcp_target, tmp_path):
    need_module("broadcaster", "pip install broadcaster")
    kind, port = tcp_target
    f = materialize(tmp_path, "broadcaster_tcp.py", {DOC_TCP_URL: "redis://:%s@127.0.0.1:%d" % (PASSWORD, port)})
    assert run([sys.executable, str(f)], tmp_path).splitlines() == ["news hello"]
