"""RESP2/RESP3 helpers for the integration tests: encoding, a raw frame reader, a small parser.

Frames are kept as raw bytes so the differential tests can compare replies byte for byte.
"""
from __future__ import annotations

import select
import socket
import time

CRLF = b"\r\n"

LINE_TYPES = b"+-:_,#("       # one line
BULK_TYPES = b"$!="           # length line + payload
AGG_TYPES = b"*~>"            # count, then count frames
MAP_TYPES = b"%|"             # count, then 2*count frames ('|' = attribute, precedes a frame)


def b(x) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, int):
        return str(x).encode()
    return str(x).encode()


def cmd(*args) -> bytes:
    """Encodes one request as a RESP multibulk."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = b(a)
        out.append(b"$%d\r\n" % len(a))
        out.append(a)
        out.append(CRLF)
    return b"".join(out)


class Incomplete(Exception):
    pass


class BadFrame(Exception):
    pass


def frame_end(buf: bytes, pos: int = 0) -> int:
    """Returns the index just past the complete frame starting at `pos`.

    Raises Incomplete when more bytes are needed, BadFrame when the bytes are not RESP.
    """
    if pos >= len(buf):
        raise Incomplete
    t = buf[pos:pos + 1]
    nl = buf.find(CRLF, pos)
    if nl < 0:
        raise Incomplete
    head = buf[pos + 1:nl]
    after = nl + 2
    if t in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return after
    try:
        n = int(head)
    except ValueError:
        raise BadFrame("bad length %r in %r" % (head, buf[pos:nl]))
    if t in (b"$", b"!", b"="):
        if n < 0:
            return after
        end = after + n + 2
        if len(buf) < end:
            raise Incomplete
        if buf[end - 2:end] != CRLF:
            raise BadFrame("bulk not followed by CRLF at %d" % (end - 2))
        return end
    if t in (b"*", b"~", b">", b"%", b"|"):
        if n < 0:
            return after
        count = n * 2 if t in (b"%", b"|") else n
        p = after
        for _ in range(count):
            p = frame_end(buf, p)
        if t == b"|":  # an attribute is followed by the frame it annotates
            p = frame_end(buf, p)
        return p
    raise BadFrame("unknown type byte %r at %d" % (t, pos))


def split_frames(buf: bytes) -> tuple[list[bytes], bytes]:
    """Splits `buf` into complete frames and the incomplete rest."""
    frames = []
    pos = 0
    while pos < len(buf):
        try:
            end = frame_end(buf, pos)
        except Incomplete:
            break
        frames.append(buf[pos:end])
        pos = end
    return frames, buf[pos:]


# ---- parsed view (for normalizers and client-level tests) -------------------------------

def parse(buf: bytes, pos: int = 0):
    """Parses one frame into Python values. Returns (value, end).

    Bulk strings -> bytes, simple strings -> str, errors -> ('ERR', str), integers -> int,
    null -> None, arrays/sets/pushes -> list, maps -> list of pairs.
    """
    t = buf[pos:pos + 1]
    nl = buf.index(CRLF, pos)
    head = buf[pos + 1:nl]
    after = nl + 2
    if t == b"+":
        return head.decode("latin-1"), after
    if t == b"-" or t == b"!":
        if t == b"!":
            n = int(head)
            return ("ERR", buf[after:after + n].decode("latin-1")), after + n + 2
        return ("ERR", head.decode("latin-1")), after
    if t == b":":
        return int(head), after
    if t == b"_":
        return None, after
    if t == b",":
        return float(head), after
    if t == b"#":
        return head == b"t", after
    if t == b"(":
        return int(head), after
    n = int(head)
    if t in (b"$", b"="):
        if n < 0:
            return None, after
        return buf[after:after + n], after + n + 2
    if t in (b"*", b"~", b">"):
        if n < 0:
            return None, after
        items = []
        p = after
        for _ in range(n):
            v, p = parse(buf, p)
            items.append(v)
        return items, p
    if t in (b"%", b"|"):
        items = []
        p = after
        for _ in range(n):
            k, p = parse(buf, p)
            v, p = parse(buf, p)
            items.append((k, v))
        if t == b"|":
            return parse(buf, p)
        return items, p
    raise BadFrame(repr(t))


def parse1(frame: bytes):
    return parse(frame, 0)[0]


class Conn:
    """A raw Unix-socket connection with a frame reader."""

    def __init__(self, path: str, timeout: float = 3.0, rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.eof = False
        self.timeout = timeout

    def send(self, data: bytes):
        self.sock.sendall(data)

    def send_split(self, data: bytes, chunk: int = 1, delay: float = 0.0005):
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i:i + chunk])
            if delay:
                time.sleep(delay)

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes; False on EOF or timeout."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_frames(self, n: int, timeout: float | None = None) -> tuple[list[bytes], str]:
        """Reads exactly n complete frames. Status: 'ok', 'timeout', 'eof' or 'bad:<why>'."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        frames: list[bytes] = []
        while len(frames) < n:
            try:
                end = frame_end(self.buf, 0)
                frames.append(self.buf[:end])
                self.buf = self.buf[end:]
                continue
            except Incomplete:
                pass
            except BadFrame as e:
                return frames, "bad:%s rest=%r" % (e, self.buf[:200])
            if not self._fill(deadline):
                return frames, "eof" if self.eof else "timeout"
        return frames, "ok"

    def read_frame(self, timeout: float | None = None):
        frames, status = self.read_frames(1, timeout)
        if status != "ok":
            raise AssertionError("no complete frame (%s); buffered %r" % (status, self.buf[:300]))
        return frames[0]

    def call(self, *args, timeout: float | None = None):
        self.send(cmd(*args))
        return parse1(self.read_frame(timeout))

    def read_until_close(self, timeout: float = 3.0) -> tuple[bytes, bool]:
        """Reads everything until EOF. Returns (bytes, closed)."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        data, self.buf = self.buf, b""
        return data, self.eof

    def read_quiet(self, wait: float = 0.2) -> bytes:
        """Whatever arrives within `wait` seconds (expected: nothing)."""
        deadline = time.monotonic() + wait
        while self._fill(deadline):
            pass
        data, self.buf = self.buf, b""
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
