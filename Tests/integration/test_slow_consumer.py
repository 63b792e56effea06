"""Slow consumer (README, "Bad input and slow consumers"): a subscriber that never reads is cut off at the output
buffer limit while another subscriber of the same channel keeps receiving everything in order,
and the relay's memory stays bounded.

Relay: RELAY_CLIENT_BUFFER_LIMIT='4mb 1mb 2'. Reference: redis-server with
`client-output-buffer-limit pubsub 4mb 1mb 2`, same load, same assertions.

Load: 20 000 PUBLISHes of 1 KiB (~21 MB of frames per subscriber), pipelined 250 at a time.
RSS bound: 80 MB (VmRSS peak sampled every 20 ms). A relay that buffered the whole stream for
the slow subscriber would need > 21 MB of payload on top of its base, and without any limit
would grow with the load; the measured peak is printed.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from conftest import rss_kib
from resputil import Conn, cmd, frame_end, Incomplete

N_MESSAGES = 20_000
PAYLOAD_SIZE = 1024
BATCH = 250
MAX_LAG = 500
RSS_BOUND_KIB = 80 * 1024
CHANNEL = b"slow-ch"


@pytest.fixture(params=["redis", "relay"])
def limited_server(request, redis_factory):
    if request.param == "redis":
        return redis_factory(["--client-output-buffer-limit", "pubsub 4mb 1mb 2"])
    relay_factory = request.getfixturevalue("relay_factory")
    return relay_factory({"RELAY_CLIENT_BUFFER_LIMIT": "4mb 1mb 2"})


def payload(i: int) -> bytes:
    head = b"m%06d:" % i
    return head + b"." * (PAYLOAD_SIZE - len(head))


class FastReader(threading.Thread):
    """Reads and checks every message frame as it arrives."""

    def __init__(self, conn: Conn, deadline: float):
        super().__init__(daemon=True)
        self.conn, self.deadline = conn, deadline
        self.count = 0
        self.out_of_order = None
        self.error = None

    def run(self):
        buf = b""
        sock = self.conn.sock
        sock.settimeout(0.5)
        try:
            while self.count < N_MESSAGES and time.monotonic() < self.deadline:
                try:
                    data = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not data:
                    self.error = "fast subscriber got EOF after %d messages" % self.count
                    return
                buf += data
                pos = 0
                while True:
                    try:
                        end = frame_end(buf, pos)
                    except Incomplete:
                        break
                    frame = buf[pos:end]
                    pos = end
                    expected = b"*3\r\n$7\r\nmessage\r\n$7\r\nslow-ch\r\n$%d\r\n%s\r\n" % (PAYLOAD_SIZE, payload(self.count))
                    if frame != expected and self.out_of_order is None:
                        self.out_of_order = (self.count, frame[:80])
                    self.count += 1
                buf = buf[pos:]
        except Exception as e:  # surfaced by the test
            self.error = repr(e)


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            time.sleep(0.02)


def info_stats(sock: str) -> str:
    with Conn(sock) as conn:
        v = conn.call("INFO", "stats")
        return v.decode() if isinstance(v, bytes) else repr(v)


def test_slow_consumer_cut_off_fast_one_unaffected(limited_server):
    sock = limited_server.socket
    pid = limited_server.pid
    start = time.monotonic()
    deadline = start + 60

    slow = Conn(sock, timeout=5, rcvbuf=4096)
    fast = Conn(sock, timeout=5)
    pub = Conn(sock, timeout=10)
    sampler = RssSampler(pid)
    try:
        for conn in (slow, fast):
            assert conn.call("SUBSCRIBE", CHANNEL) == [b"subscribe", CHANNEL, 1]
        base_rss = rss_kib(pid)
        sampler.start()
        reader = FastReader(fast, deadline)
        reader.start()

        counts = []
        for first in range(0, N_MESSAGES, BATCH):
            assert time.monotonic() < deadline, "publishing did not finish in time"
            pub.send(b"".join(cmd("PUBLISH", CHANNEL, payload(i)) for i in range(first, first + BATCH)))
            frames, status = pub.read_frames(BATCH, 20)
            assert status == "ok", "publisher: %s after %d replies" % (status, len(counts) + len(frames))
            counts += [int(f[1:-2]) for f in frames]
            # A normal subscriber keeps up: do not let the fast reader (Python) lag more than
            # MAX_LAG messages (~0.5 MiB, under the 1 MiB soft limit), or it would be cut too.
            while reader.count < first + BATCH - MAX_LAG and reader.is_alive() and time.monotonic() < deadline:
                time.sleep(0.001)
        publish_secs = time.monotonic() - start

        # The slow client must be gone: PUBLISH reports one receiver from some point on.
        assert counts[0] == 2, counts[:5]
        assert counts[-1] == 1, "slow subscriber still counted as a receiver after %d messages" % N_MESSAGES
        cut = counts.index(1)
        assert all(c == 1 for c in counts[cut:]), "receiver count went back up after the cut"

        # Draining the slow socket ends in EOF, well before the whole stream.
        slow.sock.settimeout(1.0)
        received = 0
        eof = False
        drain_deadline = time.monotonic() + 15
        while time.monotonic() < drain_deadline:
            try:
                data = slow.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                eof = True
                break
            if not data:
                eof = True
                break
            received += len(data)
        assert eof, "slow subscriber was never disconnected (read %d bytes)" % received
        frame_size = len(b"*3\r\n$7\r\nmessage\r\n$7\r\nslow-ch\r\n$1024\r\n") + PAYLOAD_SIZE + 2
        assert received < N_MESSAGES * frame_size / 2, received

        reader.join(max(1.0, deadline - time.monotonic()))
        assert reader.error is None, reader.error
        assert reader.out_of_order is None, "fast subscriber: message %d was %r" % reader.out_of_order
        assert reader.count == N_MESSAGES, "fast subscriber got %d of %d" % (reader.count, N_MESSAGES)

        sampler.stop_flag.set()
        sampler.join(2)
        peak = sampler.peak
        print("\n[%s] publish %d x %d B took %.2fs; slow cut after %d messages; slow read %d bytes before EOF; "
              "RSS base %.1f MB, peak %.1f MB, after %.1f MB (bound %.0f MB)"
              % (limited_server.kind, N_MESSAGES, PAYLOAD_SIZE, publish_secs, cut, received, base_rss / 1024,
                 peak / 1024, rss_kib(pid) / 1024, RSS_BOUND_KIB / 1024))
        assert peak < RSS_BOUND_KIB, "RSS peak %.1f MB >= %.0f MB" % (peak / 1024, RSS_BOUND_KIB / 1024)

        if limited_server.kind == "relay":
            stats = info_stats(sock)
            print(stats)
            m = re.search(r"slow_consumer_disconnects:(\d+)", stats)
            assert m and int(m.group(1)) >= 1, "INFO stats does not count the disconnect:\n" + stats
    finally:
        sampler.stop_flag.set()
        for conn in (slow, fast, pub):
            conn.close()


def test_slow_consumer_soft_limit(limited_server):
    """Above the soft limit (1 MiB) for longer than 2 s, below the hard limit: cut off too."""
    sock = limited_server.socket
    slow = Conn(sock, timeout=5, rcvbuf=4096)
    pub = Conn(sock, timeout=10)
    try:
        assert slow.call("SUBSCRIBE", CHANNEL) == [b"subscribe", CHANNEL, 1]
        # ~2 MiB queued: over soft (1mb), under hard (4mb), even counting kernel buffers.
        n = 2300
        pub.send(b"".join(cmd("PUBLISH", CHANNEL, payload(i)) for i in range(n)))
        frames, status = pub.read_frames(n, 20)
        assert status == "ok", status
        # Redis checks the soft limit when more output is queued: keep a trickle going.
        deadline = time.monotonic() + 8
        count = 1
        while time.monotonic() < deadline and count == 1:
            count = pub.call("PUBLISH", CHANNEL, b"tick")
            time.sleep(0.1)
        assert count == 0, "slow subscriber over the soft limit was not cut within 8 s"
    finally:
        slow.close()
        pub.close()
