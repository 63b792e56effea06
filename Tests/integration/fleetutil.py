"""Helpers shared by the fleet tests (Redis backplane, Postgres bridge): raw-socket subscribers
that check every confirmation, message builders, and an incremental parser of RESP2 arrays for
the high-volume readers (faster than resputil frame by frame)."""
from __future__ import annotations

from resputil import Conn, cmd, parse1


def unix_url(path: str, **query) -> str:
    q = "&".join("%s=%s" % kv for kv in query.items())
    return "unix://%s%s" % (path, "?" + q if q else "")


def bb(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def sub(path: str, kind: str, *names, timeout: float = 5.0, conn: Conn | None = None) -> Conn:
    c = conn or Conn(path, timeout=timeout)
    c.send(cmd(kind, *names))
    frames, status = c.read_frames(len(names), timeout)
    assert status == "ok", "%s %r: %d/%d confirmations (%s), buffered %r" % (
        kind, names[:5], len(frames), len(names), status, c.buf[:200])
    for name, f in zip(names, frames):
        v = parse1(f)
        assert isinstance(v, list) and v[0] == kind.lower().encode() and v[1] == bb(name), (kind, name, v)
    return c


def read_msgs(c: Conn, n: int, timeout: float = 5.0):
    frames, status = c.read_frames(n, timeout)
    return [parse1(f) for f in frames], status


def expect_msgs(c: Conn, expected: list, timeout: float = 5.0, what: str = ""):
    got, status = read_msgs(c, len(expected), timeout)
    assert got == expected, "%s: expected %r\n got %r (%s)" % (what, expected, got, status)


def expect_quiet(c: Conn, wait: float = 0.3, what: str = ""):
    extra = c.read_quiet(wait)
    assert extra == b"", "%s: unexpected extra frames %r" % (what, extra[:400])
    assert not c.eof, "%s: connection closed by the relay" % what


def msg(channel, payload) -> list:
    return [b"message", bb(channel), bb(payload)]


def pmsg(pattern, channel, payload) -> list:
    return [b"pmessage", bb(pattern), bb(channel), bb(payload)]


def publish(path: str, channel, payload, timeout: float = 5.0) -> int:
    with Conn(path, timeout=timeout) as c:
        return c.call("PUBLISH", channel, payload, timeout=timeout)


def parse_arrays(buf: bytes, pos: int = 0):
    """Parses complete RESP2 arrays of bulk strings / integers from buf[pos:]; returns (items, pos)."""
    out = []
    n = len(buf)
    find = buf.find
    while pos < n:
        if buf[pos] != 0x2A:   # '*'
            raise ValueError("not an array at %d: %r" % (pos, buf[pos:pos + 60]))
        nl = find(b"\r\n", pos)
        if nl < 0:
            break
        count = int(buf[pos + 1:nl])
        p = nl + 2
        items = []
        complete = True
        for _ in range(count):
            nl2 = find(b"\r\n", p)
            if nl2 < 0:
                complete = False
                break
            t = buf[p]
            if t == 0x3A:      # ':'
                items.append(int(buf[p + 1:nl2]))
                p = nl2 + 2
                continue
            if t != 0x24:      # '$'
                raise ValueError("unexpected element %r" % buf[p:p + 60])
            ln = int(buf[p + 1:nl2])
            s = nl2 + 2
            e = s + ln
            if e + 2 > n:
                complete = False
                break
            items.append(buf[s:e])
            p = e + 2
        if not complete:
            break
        out.append(items)
        pos = p
    return out, pos
