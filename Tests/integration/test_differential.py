"""Differential tests: the same raw bytes to redis-server 7 and to the relay, replies compared
byte for byte (README, "Commands": replies are byte-for-byte those of Redis 7.0).

Each case is a script of steps over one or more fresh connections ("a", "b", "c"): send bytes,
read N complete RESP frames, read until the server closes, or check that nothing arrives.
The script runs against redis-server, then against the relay; the two transcripts must be equal.
On a mismatch both are printed (repr).

Normalizations, only where Redis itself is not deterministic or the value is per-server:
* client ids (HELLO's `id`, CLIENT ID) are replaced by <ID>;
* PUBSUB CHANNELS replies are sorted (Redis returns dict order, which is random);
* several pmessage frames for one PUBLISH are sorted (Redis walks its pattern dict);
* argument-less UNSUBSCRIBE/PUNSUBSCRIBE with several names: names sorted, counts kept in order.

Commands where Redis 7.0 and the relay legitimately differ (CLIENT SETINFO is a 7.2 command,
INFO contents, COMMAND with no args / COMMAND COUNT / CLIENT HELP, bulk sizes above
RELAY_MAX_MESSAGE_BYTES) are tested against the relay alone in test_relay_only_*.
"""
from __future__ import annotations

import random
import re
import time

import pytest

from resputil import Conn, cmd as c, frame_end, parse1

# ---- the script language -------------------------------------------------------------------


class Send:
    def __init__(self, data: bytes, conn: str = "a", chunk: int | None = None, delay: float = 0.0005):
        self.data, self.conn, self.chunk, self.delay = data, conn, chunk, delay


class Read:
    def __init__(self, n: int = 1, conn: str = "a", norm=None, timeout: float = 3.0):
        self.n, self.conn, self.norm, self.timeout = n, conn, norm, timeout


class ReadClose:
    """Reads until the server closes the connection (protocol errors, QUIT, POST)."""

    def __init__(self, conn: str = "a", timeout: float = 3.0):
        self.conn, self.timeout = conn, timeout


class Quiet:
    """Nothing may arrive within `wait` seconds (recorded, so a stray frame shows as a mismatch)."""

    def __init__(self, conn: str = "a", wait: float = 0.15):
        self.conn, self.wait = conn, wait


class Shut:
    """Half-closes the connection (shutdown(SHUT_WR)): the server reads EOF after the requests."""

    def __init__(self, conn: str = "a"):
        self.conn = conn


class Case:
    def __init__(self, name: str, *steps):
        self.name, self.steps = name, steps


def run_script(path: str, case: Case) -> list:
    conns: dict[str, Conn] = {}
    out = []
    try:
        for step in case.steps:
            conn = conns.get(step.conn)
            if conn is None:
                conn = conns[step.conn] = Conn(path)
            if isinstance(step, Send):
                try:
                    if step.chunk:
                        conn.send_split(step.data, step.chunk, step.delay)
                    else:
                        conn.send(step.data)
                except (BrokenPipeError, ConnectionResetError) as e:
                    out.append((step.conn, "send-failed", type(e).__name__))
            elif isinstance(step, Read):
                frames, status = conn.read_frames(step.n, step.timeout)
                if step.norm and status == "ok":
                    frames = step.norm(frames)
                out.append((step.conn, "read", b"".join(frames), status))
                if status != "ok":
                    out.append((step.conn, "unparsed", conn.buf[:300]))
            elif isinstance(step, ReadClose):
                data, closed = conn.read_until_close(step.timeout)
                out.append((step.conn, "until-close", data, "closed" if closed else "still-open"))
            elif isinstance(step, Shut):
                import socket as _socket
                conn.sock.shutdown(_socket.SHUT_WR)
            elif isinstance(step, Quiet):
                out.append((step.conn, "quiet", conn.read_quiet(step.wait)))
    finally:
        for conn in conns.values():
            conn.close()
    return out


# ---- normalizers ---------------------------------------------------------------------------

ID_IN_HELLO = re.compile(rb"(\$2\r\nid\r\n):\d+\r\n")


def norm_id(frames):
    res = []
    for f in frames:
        f = ID_IN_HELLO.sub(rb"\1:<ID>\r\n", f)
        f = re.sub(rb"^:\d+\r\n$", b":<ID>\r\n", f)
        res.append(f)
    return res


def _elements(frame: bytes) -> tuple[bytes, list[bytes]]:
    head_end = frame.index(b"\r\n") + 2
    items = []
    p = head_end
    while p < len(frame):
        e = frame_end(frame, p)
        items.append(frame[p:e])
        p = e
    return frame[:head_end], items


def norm_sorted_array(frames):
    """Sorts the elements of each aggregate frame (PUBSUB CHANNELS is in dict order)."""
    res = []
    for f in frames:
        if f[:1] in (b"*", b"~") and not f.startswith(b"*-1"):
            head, items = _elements(f)
            f = head + b"".join(sorted(items))
        res.append(f)
    return res


def norm_sort_frames(frames):
    return sorted(frames)


def norm_unsub_all(frames):
    """Argument-less (P)UNSUBSCRIBE answers in dict order: keep kinds and counts in order,
    replace names by <name>, and append the sorted names."""
    names = []
    res = []
    for f in frames:
        head, items = _elements(f)
        if len(items) == 3:
            names.append(items[1])
            items[1] = b"<name>"
        res.append(head + b"".join(items))
    res.append(b"names:" + b"|".join(sorted(names)))
    return res


# ---- the cases ------------------------------------------------------------------------------

MIB = 1 << 20
BIG = bytes((i * 7 + 3) % 256 for i in range(MIB))  # exactly 1 MiB, every byte value, NUL, CR, LF
BINCH = b"bin\x00ch\r\n\xff\xfe"
BINPAYLOAD = b"\x00\r\n\x80\xff{\"json\":1}\r\n$3\r\n*1\r\n"
LONGARG = b"x" * 100

CASES = [
    # PING / ECHO
    Case("ping", Send(c("PING")), Read()),
    Case("ping_lowercase", Send(c("ping")), Read()),
    Case("ping_mixedcase_arg", Send(c("PiNg", "hello")), Read()),
    Case("ping_empty_arg", Send(c("PING", "")), Read()),
    Case("ping_too_many_args", Send(c("PING", "a", "b")), Read()),
    Case("echo", Send(c("ECHO", "hi there")), Read()),
    Case("echo_empty", Send(c("ECHO", "")), Read()),
    Case("echo_binary", Send(c("ECHO", BINPAYLOAD)), Read()),
    Case("echo_no_args", Send(c("ECHO")), Read()),
    Case("echo_two_args", Send(c("ECHO", "a", "b")), Read()),
    Case("echo_1mib", Send(c("ECHO", BIG)), Read(timeout=10)),
    # QUIT
    Case("quit", Send(c("QUIT")), ReadClose()),
    Case("quit_then_more_pipelined", Send(c("QUIT") + c("PING") + c("ECHO", "x")), ReadClose()),
    Case("quit_with_arg", Send(c("QUIT", "now")), ReadClose()),
    # SELECT / AUTH
    Case("select_0", Send(c("SELECT", "0")), Read()),
    Case("select_15", Send(c("SELECT", "15")), Read()),
    Case("select_16", Send(c("SELECT", "16")), Read()),
    Case("select_negative", Send(c("SELECT", "-1")), Read()),
    Case("select_abc", Send(c("SELECT", "abc")), Read()),
    Case("select_float", Send(c("SELECT", "1.5")), Read()),
    Case("select_no_arg", Send(c("SELECT")), Read()),
    Case("auth_password", Send(c("AUTH", "pw")), Read()),
    Case("auth_default_user", Send(c("AUTH", "default", "pw")), Read()),
    Case("auth_other_user", Send(c("AUTH", "other", "pw")), Read()),
    Case("auth_three_args", Send(c("AUTH", "a", "b", "c")), Read()),
    Case("auth_no_args", Send(c("AUTH")), Read()),
    # HELLO
    Case("hello_no_args", Send(c("HELLO")), Read(norm=norm_id)),
    Case("hello_2", Send(c("HELLO", "2")), Read(norm=norm_id)),
    Case("hello_3_then_ping", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("PING")), Read(),
         Send(c("CLIENT", "GETNAME")), Read(), Send(c("HELLO")), Read(norm=norm_id)),
    Case("hello_3_then_2", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("HELLO", "2")), Read(norm=norm_id),
         Send(c("CLIENT", "GETNAME")), Read()),
    Case("hello_4_noproto", Send(c("HELLO", "4")), Read(), Send(c("PING")), Read()),
    Case("hello_1_noproto", Send(c("HELLO", "1")), Read()),
    Case("hello_0_and_negative", Send(c("HELLO", "0") + c("HELLO", "-3")), Read(2)),
    Case("hello_abc", Send(c("HELLO", "abc")), Read()),
    Case("hello_huge_version", Send(c("HELLO", "99999999999999999999")), Read()),
    Case("hello_3_setname", Send(c("HELLO", "3", "SETNAME", "relay-x")), Read(norm=norm_id),
         Send(c("CLIENT", "GETNAME")), Read()),
    Case("hello_lowercase_options", Send(c("hello", "3", "setname", "n1", "auth", "default", "pw")), Read(norm=norm_id),
         Send(c("CLIENT", "GETNAME")), Read()),
    Case("hello_3_auth_default", Send(c("HELLO", "3", "AUTH", "default", "pw")), Read(norm=norm_id)),
    Case("hello_3_auth_other_wrongpass", Send(c("HELLO", "3", "AUTH", "other", "pw", "SETNAME", "zz")), Read(),
         Send(c("PING")), Read(), Send(c("CLIENT", "GETNAME")), Read()),
    Case("hello_2_auth_setname", Send(c("HELLO", "2", "AUTH", "default", "pw", "SETNAME", "nm")), Read(norm=norm_id)),
    Case("hello_bad_option", Send(c("HELLO", "3", "FOO")), Read(), Send(c("PING")), Read()),
    Case("hello_auth_missing_password", Send(c("HELLO", "3", "AUTH", "default")), Read()),
    Case("hello_setname_missing_value", Send(c("HELLO", "3", "SETNAME")), Read()),
    Case("hello_setname_invalid", Send(c("HELLO", "3", "SETNAME", "a b")), Read(), Send(c("PING")), Read()),
    # CLIENT
    Case("client_setname_getname", Send(c("CLIENT", "SETNAME", "worker-1")), Read(), Send(c("CLIENT", "GETNAME")), Read()),
    Case("client_getname_unset", Send(c("CLIENT", "GETNAME")), Read()),
    Case("client_getname_unset_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("CLIENT", "GETNAME")), Read()),
    Case("client_setname_space", Send(c("CLIENT", "SETNAME", "a b")), Read()),
    Case("client_setname_newline", Send(c("CLIENT", "SETNAME", "a\nb")), Read()),
    Case("client_setname_nonascii", Send(c("CLIENT", "SETNAME", b"caf\xc3\xa9")), Read()),
    Case("client_setname_empty_clears", Send(c("CLIENT", "SETNAME", "x") + c("CLIENT", "SETNAME", "") + c("CLIENT", "GETNAME")),
         Read(3)),
    Case("client_id", Send(c("CLIENT", "ID")), Read(norm=norm_id)),
    Case("client_id_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("client", "id")), Read(norm=norm_id)),
    Case("client_unknown_subcommand", Send(c("CLIENT", "FOO")), Read()),
    Case("client_unknown_subcommand_args", Send(c("client", "foo", "bar")), Read()),
    Case("client_no_subcommand", Send(c("CLIENT")), Read()),
    Case("client_setname_arity", Send(c("CLIENT", "SETNAME")), Read()),
    Case("client_getname_arity", Send(c("CLIENT", "GETNAME", "x")), Read()),
    Case("client_id_arity", Send(c("CLIENT", "ID", "x")), Read()),
    # unknown commands
    Case("unknown_command", Send(c("NOSUCHCMD")), Read()),
    Case("unknown_command_args", Send(c("nosuchcmd", "a", "b c")), Read()),
    Case("unknown_command_long_args", Send(c("NOSUCH", *([LONGARG] * 5))), Read()),
    Case("unknown_command_many_short_args", Send(c("NOSUCH", *[b"arg%d" % i for i in range(60)])), Read()),
    Case("unknown_command_long_name", Send(c(b"Z" * 300, "a")), Read()),
    Case("unknown_command_crlf_in_args", Send(c("NOSUCH", "a\r\nb", "c\nd")), Read()),
    Case("unknown_command_nul_in_args", Send(c("NOSUCH", b"a\x00b", "c")), Read()),
    Case("unknown_command_empty_name", Send(c("")), Read()),
    Case("unknown_command_then_ping", Send(c("NOSUCH") + c("PING")), Read(2)),
    # PUBSUB introspection and errors
    Case("pubsub_help", Send(c("PUBSUB", "HELP")), Read()),
    Case("pubsub_unknown_subcommand", Send(c("PUBSUB", "FOO")), Read()),
    Case("pubsub_unknown_subcommand_lower", Send(c("pubsub", "foo", "x")), Read()),
    Case("pubsub_no_subcommand", Send(c("PUBSUB")), Read()),
    Case("pubsub_numpat_arity", Send(c("PUBSUB", "NUMPAT", "x")), Read()),
    Case("pubsub_channels_two_patterns", Send(c("PUBSUB", "CHANNELS", "a", "b")), Read()),
    Case("pubsub_numsub_no_channels", Send(c("PUBSUB", "NUMSUB")), Read()),
    Case("pubsub_numsub_unknown", Send(c("PUBSUB", "NUMSUB", "nobody", "nobody2")), Read()),
    Case("pubsub_numpat_zero", Send(c("PUBSUB", "NUMPAT")), Read()),
    Case("pubsub_channels_empty", Send(c("PUBSUB", "CHANNELS")), Read()),
    Case("pubsub_channels", Send(c("SUBSCRIBE", "ch1", "ch2", "other", BINCH)), Read(4),
         Send(c("PUBSUB", "CHANNELS"), "b"), Read(conn="b", norm=norm_sorted_array),
         Send(c("PUBSUB", "CHANNELS", "ch*"), "b"), Read(conn="b", norm=norm_sorted_array),
         Send(c("PUBSUB", "CHANNELS", "nomatch*"), "b"), Read(conn="b"),
         Send(c("PUBSUB", "CHANNELS", b"bin\x00*"), "b"), Read(conn="b")),
    Case("pubsub_channels_resp3", Send(c("SUBSCRIBE", "r3a", "r3b")), Read(2),
         Send(c("HELLO", "3"), "b"), Read(conn="b", norm=norm_id),
         Send(c("PUBSUB", "CHANNELS", "r3*"), "b"), Read(conn="b", norm=norm_sorted_array),
         Send(c("PUBSUB", "NUMSUB", "r3a", "zz"), "b"), Read(conn="b"),
         Send(c("PUBSUB", "NUMPAT"), "b"), Read(conn="b")),
    Case("pubsub_numsub_counts", Send(c("SUBSCRIBE", "c1", "c2")), Read(2), Send(c("SUBSCRIBE", "c1"), "b"), Read(conn="b"),
         Send(c("PUBSUB", "NUMSUB", "c1", "c2", "c3", "c1"), "c"), Read(conn="c")),
    Case("pubsub_numpat_unique_patterns", Send(c("PSUBSCRIBE", "x*", "y*")), Read(2), Send(c("PSUBSCRIBE", "x*"), "b"),
         Read(conn="b"), Send(c("PUBSUB", "NUMPAT"), "c"), Read(conn="c"),
         Send(c("PUBSUB", "CHANNELS"), "c"), Read(conn="c")),
    # SUBSCRIBE family
    Case("subscribe_one", Send(c("SUBSCRIBE", "a")), Read()),
    Case("subscribe_multi", Send(c("SUBSCRIBE", "a", "b", "c")), Read(3)),
    Case("subscribe_duplicate", Send(c("SUBSCRIBE", "a", "a", "b", "a")), Read(4)),
    Case("subscribe_arity", Send(c("SUBSCRIBE")), Read()),
    Case("psubscribe_arity", Send(c("PSUBSCRIBE")), Read()),
    Case("unsubscribe_nothing", Send(c("UNSUBSCRIBE")), Read(), Send(c("PING")), Read()),
    Case("punsubscribe_nothing", Send(c("PUNSUBSCRIBE")), Read()),
    Case("unsubscribe_nothing_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("UNSUBSCRIBE") + c("PUNSUBSCRIBE")), Read(2)),
    Case("unsubscribe_named_not_subscribed", Send(c("UNSUBSCRIBE", "x", "y")), Read(2), Send(c("PING")), Read()),
    Case("unsubscribe_named", Send(c("SUBSCRIBE", "a", "b", "c")), Read(3), Send(c("UNSUBSCRIBE", "b")), Read(),
         Send(c("UNSUBSCRIBE", "a", "zz", "c")), Read(3), Send(c("PING")), Read()),
    Case("unsubscribe_all_single", Send(c("SUBSCRIBE", "solo")), Read(), Send(c("UNSUBSCRIBE")), Read(),
         Send(c("PING")), Read()),
    Case("unsubscribe_all_several", Send(c("SUBSCRIBE", "u1", "u2", "u3")), Read(3), Send(c("UNSUBSCRIBE")),
         Read(3, norm=norm_unsub_all), Send(c("PING")), Read()),
    Case("psubscribe_multi", Send(c("PSUBSCRIBE", "a*", "b?", "[c]", "a*")), Read(4)),
    Case("punsubscribe_named", Send(c("PSUBSCRIBE", "p*", "q*")), Read(2), Send(c("PUNSUBSCRIBE", "q*", "nope*")), Read(2),
         Send(c("PUNSUBSCRIBE", "p*")), Read(), Send(c("PING")), Read()),
    Case("punsubscribe_all_several", Send(c("PSUBSCRIBE", "p1*", "p2*", "p3?")), Read(3), Send(c("PUNSUBSCRIBE")),
         Read(3, norm=norm_unsub_all)),
    Case("mixed_counts", Send(c("SUBSCRIBE", "m1")), Read(), Send(c("PSUBSCRIBE", "m*", "n*")), Read(2),
         Send(c("UNSUBSCRIBE")), Read(), Send(c("PING")), Read(), Send(c("PUNSUBSCRIBE", "n*")), Read(),
         Send(c("PUNSUBSCRIBE")), Read(), Send(c("PING")), Read()),
    # PUBLISH and delivery
    Case("publish_no_subscribers", Send(c("PUBLISH", "nobody", "x")), Read()),
    Case("publish_arity_1", Send(c("PUBLISH", "a")), Read()),
    Case("publish_arity_3", Send(c("PUBLISH", "a", "b", "c")), Read()),
    Case("publish_message", Send(c("SUBSCRIBE", "news")), Read(), Send(c("PUBLISH", "news", "hello"), "b"), Read(conn="b"),
         Read(), Quiet()),
    Case("publish_pmessage", Send(c("PSUBSCRIBE", "n*")), Read(), Send(c("PUBLISH", "news", "hello"), "b"), Read(conn="b"),
         Read(), Quiet()),
    Case("publish_exact_and_pattern", Send(c("SUBSCRIBE", "news")), Read(), Send(c("PSUBSCRIBE", "n*")), Read(),
         Send(c("PUBLISH", "news", "both"), "b"), Read(conn="b"), Read(2), Quiet()),
    Case("publish_pattern_subscribed_first", Send(c("PSUBSCRIBE", "n*") + c("SUBSCRIBE", "news")), Read(2),
         Send(c("PUBLISH", "news", "order"), "b"), Read(conn="b"), Read(2)),
    Case("publish_several_patterns", Send(c("PSUBSCRIBE", "n*", "*s", "ne?s", "news", "x*")), Read(5),
         Send(c("PUBLISH", "news", "multi"), "b"), Read(conn="b"), Read(4, norm=norm_sort_frames), Quiet()),
    Case("publish_two_subscribers", Send(c("SUBSCRIBE", "fan")), Read(), Send(c("SUBSCRIBE", "fan"), "b"), Read(conn="b"),
         Send(c("PUBLISH", "fan", "one") + c("PUBLISH", "fan", "two"), "c"), Read(2, conn="c"), Read(2), Read(2, conn="b")),
    Case("publish_order_pipelined", Send(c("SUBSCRIBE", "ord")), Read(),
         Send(b"".join(c("PUBLISH", "ord", "m%d" % i) for i in range(50)), "b"), Read(50, conn="b"), Read(50)),
    Case("publish_to_self_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SUBSCRIBE", "self")), Read(),
         Send(c("PUBLISH", "self", "me")), Read(2)),
    Case("publish_resp3_message", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SUBSCRIBE", "r3")), Read(),
         Send(c("PUBLISH", "r3", "push"), "b"), Read(conn="b"), Read()),
    Case("publish_resp3_pmessage", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("PSUBSCRIBE", "r*", "r3")), Read(2),
         Send(c("HELLO", "3"), "b"), Read(conn="b", norm=norm_id),
         Send(c("PUBLISH", "r3", "push"), "b"), Read(conn="b"), Read(2, norm=norm_sort_frames)),
    Case("publish_pattern_classes", Send(c("PSUBSCRIBE", "h[ae]llo")), Read(),
         Send(c("PUBLISH", "hillo", "no") + c("PUBLISH", "hallo", "yes") + c("PUBLISH", "h[ae]llo", "no"), "b"),
         Read(3, conn="b"), Read(), Quiet()),
    Case("publish_pattern_escape", Send(c("PSUBSCRIBE", "a\\*b", "q[^x]")), Read(2),
         Send(c("PUBLISH", "a*b", "1") + c("PUBLISH", "axb", "2") + c("PUBLISH", "qx", "3") + c("PUBLISH", "qy", "4"), "b"),
         Read(4, conn="b"), Read(2), Quiet()),
    Case("publish_after_unsubscribe", Send(c("SUBSCRIBE", "gone")), Read(), Send(c("UNSUBSCRIBE", "gone")), Read(),
         Send(c("PUBLISH", "gone", "x"), "b"), Read(conn="b"), Quiet()),
    Case("publish_after_punsubscribe", Send(c("PSUBSCRIBE", "go*")), Read(), Send(c("PUNSUBSCRIBE", "go*")), Read(),
         Send(c("PUBLISH", "gone", "x"), "b"), Read(conn="b"), Quiet()),
    Case("publish_after_disconnect", Send(c("SUBSCRIBE", "dc")), Read(), Send(c("QUIT")), ReadClose(),
         Send(c("PING"), "b"), Read(conn="b"), Send(c("PUBSUB", "NUMSUB", "dc"), "b"), Read(conn="b")),
    Case("publish_binary", Send(c("SUBSCRIBE", BINCH)), Read(), Send(c("PUBLISH", BINCH, BINPAYLOAD), "b"), Read(conn="b"),
         Read()),
    Case("publish_binary_pattern", Send(c("PSUBSCRIBE", b"bin\x00*")), Read(),
         Send(c("PUBLISH", BINCH, b"\xc3\x28 invalid utf8 \xed\xa0\x80"), "b"), Read(conn="b"), Read()),
    Case("publish_empty_channel_and_payload", Send(c("SUBSCRIBE", "")), Read(), Send(c("PUBLISH", "", ""), "b"),
         Read(conn="b"), Read()),
    Case("publish_1mib", Send(c("SUBSCRIBE", "big")), Read(), Send(c("PUBLISH", "big", BIG), "b"), Read(conn="b", timeout=10),
         Read(timeout=10)),
    Case("publish_1mib_resp3_pattern", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("PSUBSCRIBE", "bi?")), Read(),
         Send(c("PUBLISH", "big", BIG), "b"), Read(conn="b", timeout=10), Read(timeout=10)),
    # subscribed context
    Case("resp2_subscribed_ping", Send(c("SUBSCRIBE", "s")), Read(), Send(c("PING") + c("PING", "arg") + c("ping", "")), Read(3)),
    Case("resp2_subscribed_psubscribe_ping", Send(c("PSUBSCRIBE", "s*")), Read(), Send(c("PING")), Read()),
    Case("resp2_subscribed_errors", Send(c("SUBSCRIBE", "s")), Read(),
         Send(c("ECHO", "hi") + c("PUBLISH", "s", "m") + c("SELECT", "0") + c("CLIENT", "ID") + c("client", "getname")
              + c("PUBSUB", "NUMPAT") + c("HELLO", "3") + c("AUTH", "pw") + c("COMMAND", "INFO", "ping")), Read(9)),
    Case("resp2_subscribed_unknown_and_arity", Send(c("SUBSCRIBE", "s")), Read(),
         Send(c("NOSUCH", "x") + c("ECHO") + c("PUBLISH", "x") + c("CLIENT", "NOPE")), Read(4)),
    Case("resp2_subscribed_quit", Send(c("SUBSCRIBE", "s")), Read(), Send(c("QUIT")), ReadClose()),
    Case("resp2_subscribed_reset", Send(c("SUBSCRIBE", "s") + c("PSUBSCRIBE", "t*")), Read(2), Send(c("RESET")), Read(),
         Send(c("PING") + c("ECHO", "back")), Read(2),
         Send(c("PUBSUB", "NUMSUB", "s") + c("PUBSUB", "NUMPAT"), "b"), Read(2, conn="b")),
    Case("resp3_subscribed_no_restriction", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SUBSCRIBE", "s")), Read(),
         Send(c("PING") + c("PING", "a") + c("ECHO", "e") + c("CLIENT", "GETNAME") + c("PUBSUB", "NUMSUB", "s")
              + c("SELECT", "1")), Read(6)),
    Case("resp3_reset", Send(c("HELLO", "3", "SETNAME", "nm")), Read(norm=norm_id), Send(c("SUBSCRIBE", "s")), Read(),
         Send(c("RESET")), Read(), Send(c("PING") + c("CLIENT", "GETNAME") + c("HELLO")), Read(3, norm=norm_id),
         Send(c("PUBLISH", "s", "x"), "b"), Read(conn="b")),
    Case("reset_plain", Send(c("CLIENT", "SETNAME", "x") + c("SELECT", "3") + c("RESET") + c("CLIENT", "GETNAME")), Read(4)),
    Case("reset_arity", Send(c("RESET", "x")), Read()),
    # COMMAND INFO / DOCS (the relay's tables are generated from Redis 7.0)
    Case("command_info_pubsub", Send(c("COMMAND", "INFO", "subscribe", "publish", "ping")), Read()),
    Case("command_info_more", Send(c("COMMAND", "INFO", "psubscribe", "unsubscribe", "punsubscribe", "echo", "quit",
                                     "reset", "hello", "select", "auth")), Read()),
    Case("command_info_unknown", Send(c("COMMAND", "INFO", "nosuchcmd")), Read()),
    Case("command_info_mixed_resp3", Send(c("HELLO", "3")), Read(norm=norm_id),
         Send(c("COMMAND", "INFO", "PUBLISH", "nosuchcmd")), Read()),
    Case("command_docs_publish", Send(c("COMMAND", "DOCS", "publish", "subscribe")), Read()),
    Case("command_docs_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("COMMAND", "DOCS", "psubscribe", "ping")),
         Read()),
    Case("command_docs_unknown", Send(c("COMMAND", "DOCS", "nosuchcmd")), Read()),
    # pipelining and fragmentation
    Case("pipeline_13", Send(c("PING") + c("ECHO", "x") + c("SELECT", "0") + c("CLIENT", "GETNAME") + c("PUBLISH", "pl", "m")
                             + c("NOSUCH", "a") + c("PING", "y") + c("CLIENT", "SETNAME", "n1") + c("CLIENT", "GETNAME")
                             + c("PUBSUB", "NUMSUB", "pl") + c("ECHO", "") + c("HELLO", "4") + b"PING\r\n"), Read(13)),
    Case("pipeline_subscribe_mix", Send(c("SUBSCRIBE", "a", "b") + c("PING") + c("PSUBSCRIBE", "b*") + c("UNSUBSCRIBE")
                                        + c("PUNSUBSCRIBE") + c("PING")), Read(2), Read(), Read(), Read(2, norm=norm_unsub_all),
         Read(), Read()),
    Case("split_byte_by_byte", Send(c("ECHO", "hello world") + c("PING") + c("SUBSCRIBE", "sp"), chunk=1), Read(3)),
    Case("split_inline_byte_by_byte", Send(b"ECHO \"a b\"\r\nPING\r\n", chunk=1), Read(2)),
    Case("split_big_in_chunks", Send(c("ECHO", BIG[:200000]), chunk=7001, delay=0), Read(timeout=10)),
    # inline commands
    Case("inline_ping", Send(b"PING\r\n"), Read()),
    Case("inline_ping_lf_only", Send(b"PING\n"), Read()),
    Case("inline_ping_arg", Send(b"ping hello\r\n"), Read()),
    Case("inline_whitespace", Send(b"   PING   \r\n\r\n\r\n  ECHO\tx  \r\n"), Read(2)),
    Case("inline_quoted", Send(b"ECHO \"a b\"\r\n"), Read()),
    Case("inline_hex_escapes", Send(b"ECHO \"\\x41\\x42\\n\\t\\\\ \\\"q\\\"\"\r\n"), Read()),
    Case("inline_single_quotes", Send(b"ECHO 'a\\'b \\x41'\r\n"), Read()),
    Case("inline_subscribe", Send(b"SUBSCRIBE a b\r\n"), Read(2), Send(b"PING\r\n"), Read()),
    Case("inline_pipelined", Send(b"PING\r\nECHO x\r\n" + c("PING", "mixed") + b"ECHO y\r\n"), Read(4)),
    Case("inline_unknown", Send(b"FOO bar \"baz qux\"\r\n"), Read()),
    Case("inline_dollar_line", Send(b"$5\r\nabcde\r\n"), Read(2)),
    Case("inline_unbalanced", Send(b"ECHO \"unbalanced\r\n"), ReadClose()),
    Case("inline_quote_not_followed_by_space", Send(b"ECHO \"a\"b\r\n"), ReadClose()),
    Case("inline_too_big", Send(b"a" * 70000), ReadClose()),
    Case("http_post", Send(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"), ReadClose()),
    Case("http_host", Send(b"Host: x\r\n"), ReadClose()),
    Case("http_post_multibulk", Send(c("ECHO", "first") + c("post", "x")), ReadClose()),
    # protocol errors (reply, then disconnect)
    Case("proto_invalid_multibulk_length", Send(b"*abc\r\n"), ReadClose()),
    Case("proto_invalid_bulk_length", Send(b"*1\r\n$x\r\n"), ReadClose()),
    Case("proto_expected_dollar", Send(b"*1\r\nfoo\r\n"), ReadClose()),
    Case("proto_expected_dollar_binary", Send(b"*2\r\n$4\r\nECHO\r\n\x01\r\n"), ReadClose()),
    Case("proto_huge_bulk_length", Send(b"*1\r\n$1000000000000\r\n"), ReadClose()),
    Case("proto_negative_bulk_length", Send(b"*2\r\n$4\r\nECHO\r\n$-1\r\n"), ReadClose()),
    Case("proto_huge_multibulk_length", Send(b"*3000000000\r\n"), ReadClose()),
    Case("proto_after_valid_command", Send(c("PING") + b"*1\r\n$x\r\n" + c("PING")), ReadClose()),
    Case("proto_too_big_mbulk_count", Send(b"*" + b"1" * 70000), ReadClose()),
    Case("proto_too_big_bulk_count", Send(b"*1\r\n$" + b"1" * 70000), ReadClose()),
    Case("multibulk_zero_and_negative", Send(b"*0\r\n*-1\r\n" + c("PING")), Read(), Quiet()),
    Case("multibulk_empty_name", Send(b"*1\r\n$0\r\n\r\n"), Read()),
    # more edges: integer parsing, stray bytes, case, many names
    Case("select_integer_forms", Send(c("SELECT", "00") + c("SELECT", "+1") + c("SELECT", " 1") + c("SELECT", "1 ")
                                      + c("SELECT", "-0") + c("SELECT", "9223372036854775808")), Read(6)),
    Case("hello_version_forms", Send(c("HELLO", "03") + c("HELLO", "+3") + c("HELLO", "3 ") + c("HELLO", "")), Read(4)),
    Case("proto_plus_multibulk_length", Send(b"*+1\r\n$4\r\nPING\r\n"), ReadClose()),
    Case("proto_leading_zero_multibulk_length", Send(b"*01\r\n$4\r\nPING\r\n"), ReadClose()),
    Case("proto_plus_bulk_length", Send(b"*1\r\n$+4\r\nPING\r\n"), ReadClose()),
    Case("proto_lf_only_multibulk_waits", Send(b"*1\n$4\nPING\n"), ReadClose(timeout=0.5)),
    Case("multibulk_negative_count_ignored", Send(b"*-5\r\n" + c("ECHO", "after")), Read(), Quiet()),
    Case("stray_crlf_between_commands", Send(c("PING") + b"\r\n" + c("PING", "x") + b"\n\r\n" + c("PING")), Read(3), Quiet()),
    Case("inline_blank_and_spaces_only", Send(b"   \r\n\t\r\n" + b"PING\r\n"), Read(), Quiet()),
    Case("inline_bad_hex_escape", Send(b'ECHO "\\xZZ\\u\\0"\r\n'), Read()),
    Case("inline_long_line_under_limit", Send(b"ECHO " + b"y" * 60000 + b"\r\n"), Read(timeout=5)),
    # Redis reads inline requests 16 KiB at a time and refuses once 64 KiB have no newline:
    # a 100 000-byte inline line is refused even though its newline follows.
    Case("inline_line_over_64k_with_newline", Send(b"ECHO " + b"y" * 100000 + b"\r\n"), ReadClose()),
    Case("inline_in_subscribed_context", Send(b"SUBSCRIBE ic\r\n"), Read(), Send(b"PING\r\nECHO no\r\nUNSUBSCRIBE\r\n"),
         Read(3)),
    Case("unknown_command_name_with_crlf", Send(c("A\r\nB", "x")), Read()),
    Case("unknown_command_quote_in_args", Send(c("NOSUCH", "it's", "%s%n")), Read()),
    Case("pipeline_1000_pings", Send(b"".join(c("PING", b"p%d" % i) for i in range(1000))), Read(1000, timeout=10)),
    Case("subscribe_1000_channels", Send(c("SUBSCRIBE", *[b"many%d" % i for i in range(1000)])), Read(1000, timeout=10),
         Send(c("PUBSUB", "NUMSUB", "many0", "many999"), "b"), Read(conn="b")),
    Case("channel_names_case_sensitive", Send(c("SUBSCRIBE", "News") + c("PSUBSCRIBE", "N*")), Read(2),
         Send(c("PUBLISH", "news", "x") + c("PUBLISH", "News", "y"), "b"), Read(2, conn="b"), Read(2)),
    Case("unsubscribe_nil_with_patterns", Send(c("PSUBSCRIBE", "np*")), Read(), Send(c("UNSUBSCRIBE")), Read(),
         Send(c("PING")), Read()),
    Case("punsubscribe_nil_with_channels", Send(c("SUBSCRIBE", "nc1", "nc2")), Read(2), Send(c("PUNSUBSCRIBE")), Read()),
    Case("unsubscribe_all_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SUBSCRIBE", "r1", "r2")), Read(2),
         Send(c("UNSUBSCRIBE")), Read(2, norm=norm_unsub_all), Send(c("PING")), Read()),
    Case("hello_2_while_subscribed_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SUBSCRIBE", "h2")), Read(),
         Send(c("HELLO", "2")), Read(norm=norm_id), Send(c("ECHO", "x") + c("PING")), Read(2),
         Send(c("PUBLISH", "h2", "m"), "b"), Read(conn="b"), Read()),
    Case("hello_setname_empty", Send(c("CLIENT", "SETNAME", "before")), Read(), Send(c("HELLO", "2", "SETNAME", "")),
         Read(norm=norm_id), Send(c("CLIENT", "GETNAME")), Read()),
    Case("client_setname_punctuation", Send(c("CLIENT", "SETNAME", "~!@#$%^&*()_+{}|:<>?`-=[];,./")), Read(),
         Send(c("CLIENT", "GETNAME")), Read()),
    Case("quit_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("QUIT")), ReadClose()),
    Case("auth_resp3_subscribed", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SUBSCRIBE", "a3")), Read(),
         Send(c("AUTH", "pw") + c("AUTH", "default", "x") + c("SELECT", "16")), Read(3)),
    Case("pubsub_shard_introspection", Send(c("PUBSUB", "SHARDCHANNELS") + c("PUBSUB", "SHARDCHANNELS", "x*")
                                            + c("PUBSUB", "SHARDNUMSUB", "a", "b") + c("PUBSUB", "SHARDNUMSUB")), Read(4)),
    # sharded pub/sub: a namespace apart from channels and patterns
    Case("ssubscribe_counts_mixed", Send(c("SUBSCRIBE", "a") + c("SSUBSCRIBE", "a", "b", "a") + c("PSUBSCRIBE", "p*")
                                         + c("SSUBSCRIBE", "c") + c("SUBSCRIBE", "d")), Read(7),
         Send(c("SUNSUBSCRIBE", "b", "zz") + c("UNSUBSCRIBE", "a") + c("PUNSUBSCRIBE")), Read(4),
         Send(c("SUNSUBSCRIBE")), Read(2, norm=norm_unsub_all), Send(c("PING")), Read(),
         Send(c("UNSUBSCRIBE")), Read(), Send(c("PING")), Read()),
    Case("ssubscribe_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SSUBSCRIBE", "r3s") + c("SUBSCRIBE", "r3s")), Read(2),
         Send(c("SUNSUBSCRIBE", "r3s") + c("SUNSUBSCRIBE") + c("UNSUBSCRIBE")), Read(3)),
    Case("sunsubscribe_nothing", Send(c("SUNSUBSCRIBE")), Read(), Send(c("PING")), Read()),
    Case("sunsubscribe_nothing_resp3", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SUNSUBSCRIBE")), Read()),
    Case("sunsubscribe_nil_with_channels", Send(c("SUBSCRIBE", "x") + c("PSUBSCRIBE", "y*")), Read(2), Send(c("SUNSUBSCRIBE")), Read(),
         Send(c("PING")), Read()),
    Case("sunsubscribe_named_not_subscribed", Send(c("SUNSUBSCRIBE", "x", "y")), Read(2), Send(c("PING")), Read()),
    Case("ssubscribe_arity", Send(c("SSUBSCRIBE") + c("SPUBLISH", "a") + c("SPUBLISH", "a", "b", "c")), Read(3)),
    Case("ssubscribe_context_rule", Send(c("SSUBSCRIBE", "ctx")), Read(),
         Send(c("ECHO", "k") + c("PUBLISH", "ctx", "x") + c("SPUBLISH", "ctx", "x") + c("PUBSUB", "NUMSUB") + c("PING", "p")), Read(5),
         Send(c("SUBSCRIBE", "c2") + c("UNSUBSCRIBE")), Read(2), Send(c("SPUBLISH", "ctx", "still")), Read(),
         Send(c("SUNSUBSCRIBE", "ctx")), Read(), Send(c("SPUBLISH", "ctx", "free") + c("PING")), Read(2)),
    Case("spublish_smessage", Send(c("SSUBSCRIBE", "news")), Read(), Send(c("SSUBSCRIBE", "news"), "b"), Read(conn="b"),
         Send(c("SPUBLISH", "news", "hello") + c("SPUBLISH", "nobody", "x") + c("SPUBLISH", "news", BINPAYLOAD), "c"), Read(3, conn="c"),
         Read(2), Read(2, conn="b"), Quiet()),
    Case("spublish_resp3_to_self", Send(c("HELLO", "3")), Read(norm=norm_id), Send(c("SSUBSCRIBE", "self")), Read(),
         Send(c("SPUBLISH", "self", "me")), Read(2)),
    Case("spublish_namespace_apart", Send(c("SSUBSCRIBE", "ns1")), Read(), Send(c("SUBSCRIBE", "ns1") + c("PSUBSCRIBE", "*"), "b"),
         Read(2, conn="b"), Send(c("PUBLISH", "ns1", "classic") + c("SPUBLISH", "ns1", "shard"), "c"), Read(2, conn="c"),
         Read(), Read(2, conn="b"), Quiet(), Quiet(conn="b")),
    Case("spublish_after_sunsubscribe", Send(c("SSUBSCRIBE", "gone")), Read(), Send(c("SUNSUBSCRIBE", "gone")), Read(),
         Send(c("SPUBLISH", "gone", "x"), "b"), Read(conn="b"), Quiet()),
    Case("spublish_after_disconnect", Send(c("SSUBSCRIBE", "sdc")), Read(), Send(c("QUIT")), ReadClose(),
         Send(c("PING"), "b"), Read(conn="b"), Send(c("PUBSUB", "SHARDNUMSUB", "sdc") + c("SPUBLISH", "sdc", "x"), "b"), Read(2, conn="b")),
    Case("pubsub_shardchannels", Send(c("SSUBSCRIBE", "sh1", "sh2", "other", BINCH) + c("SUBSCRIBE", "classic")), Read(5),
         Send(c("PUBSUB", "SHARDCHANNELS"), "b"), Read(conn="b", norm=norm_sorted_array),
         Send(c("PUBSUB", "SHARDCHANNELS", "sh*"), "b"), Read(conn="b", norm=norm_sorted_array),
         Send(c("PUBSUB", "SHARDCHANNELS", "class*") + c("PUBSUB", "CHANNELS"), "b"), Read(2, conn="b"),
         Send(c("PUBSUB", "SHARDCHANNELS", "a", "b"), "b"), Read(conn="b")),
    Case("pubsub_shardnumsub", Send(c("SSUBSCRIBE", "n1", "n2")), Read(2), Send(c("SSUBSCRIBE", "n1") + c("SUBSCRIBE", "n2"), "b"),
         Read(2, conn="b"), Send(c("PUBSUB", "SHARDNUMSUB", "n1", "n2", "n3", "n1") + c("PUBSUB", "NUMSUB", "n1", "n2"), "c"),
         Read(2, conn="c"), Send(c("HELLO", "3"), "c"), Read(conn="c", norm=norm_id),
         Send(c("PUBSUB", "SHARDNUMSUB", "n1"), "c"), Read(conn="c")),
    Case("ssubscribe_reset", Send(c("SSUBSCRIBE", "rs") + c("PSUBSCRIBE", "r*")), Read(2), Send(c("RESET")), Read(),
         Send(c("PING") + c("PUBSUB", "SHARDNUMSUB", "rs") + c("SPUBLISH", "rs", "x")), Read(3)),
    Case("ssubscribe_empty_and_binary", Send(c("SSUBSCRIBE", "", BINCH)), Read(2),
         Send(c("SPUBLISH", "", "") + c("SPUBLISH", BINCH, BINPAYLOAD), "b"), Read(2, conn="b"), Read(2)),
    Case("command_info_shard", Send(c("COMMAND", "INFO", "ssubscribe", "sunsubscribe", "spublish")), Read(),
         Send(c("COMMAND", "DOCS", "ssubscribe", "sunsubscribe", "spublish")), Read()),
    Case("pubsub_channels_escaped_pattern", Send(c("SUBSCRIBE", "a*b", "axb", "a?b")), Read(3),
         Send(c("PUBSUB", "CHANNELS", "a\\*b") + c("PUBSUB", "CHANNELS", "a[*?]b"), "b"),
         Read(2, conn="b", norm=norm_sorted_array)),
    Case("command_info_subcommands", Send(c("COMMAND", "INFO", "client|id", "pubsub|numsub", "CLIENT|GETNAME")), Read()),
    Case("command_docs_subcommand", Send(c("COMMAND", "DOCS", "pubsub|channels")), Read()),
    Case("command_info_mixed_case", Send(c("COMMAND", "INFO", "PuBlIsH", "Ping")), Read()),
    Case("mixed_case_container_and_subcommand", Send(c("Client", "SetName", "mc") + c("cLiEnT", "gEtNaMe")
                                                     + c("PubSub", "NumSub", "x") + c("pUbSuB", "nUmPaT")), Read(4)),
    Case("auth_username_case_sensitive", Send(c("AUTH", "DEFAULT", "pw") + c("HELLO", "3", "AUTH", "DEFAULT", "pw")), Read(2)),
    # half-close: requests sent, then FIN; every reply must still arrive
    Case("half_close_after_ping", Send(c("PING")), Shut(), ReadClose()),
    Case("half_close_after_pipeline", Send(b"".join(c("ECHO", b"e%d" % i) for i in range(100))), Shut(), ReadClose()),
    Case("half_close_after_subscribe", Send(c("SUBSCRIBE", "hc1", "hc2")), Shut(), ReadClose()),
    # Redis does not check the two bytes after a bulk: it skips them
    Case("bulk_terminator_not_checked", Send(b"*1\r\n$4\r\nPINGxx" + c("PING", "after")), Read(2), Quiet()),
    Case("bulk_shorter_than_data", Send(b"*1\r\n$3\r\nfoobar\r\n"), Read(), Quiet()),
    Case("proto_space_in_multibulk_length", Send(b"* 1\r\n$4\r\nPING\r\n"), ReadClose()),
    Case("inline_nul_truncates_line", Send(b"ECHO a\x00b c\r\n"), Read()),
    Case("inline_cr_inside_line", Send(b"ECHO a\rb\r\n"), Read()),
]


# ---- running --------------------------------------------------------------------------------

def quiesce(path: str, timeout: float = 2.0) -> bool:
    """Waits until the server has no subscriptions left over from the previous case."""
    deadline = time.monotonic() + timeout
    with Conn(path) as conn:
        while time.monotonic() < deadline:
            conn.send(c("PUBSUB", "NUMPAT") + c("PUBSUB", "CHANNELS"))
            frames, status = conn.read_frames(2, 1.0)
            if status == "ok" and frames == [b":0\r\n", b"*0\r\n"]:
                return True
            time.sleep(0.02)
    return False


def fmt(transcript) -> str:
    lines = []
    for entry in transcript:
        conn, kind = entry[0], entry[1]
        rest = entry[2:]
        shown = []
        for r in rest:
            if isinstance(r, bytes) and len(r) > 600:
                r = r[:300] + b"...<%d bytes>..." % len(r) + r[-100:]
            shown.append(repr(r))
        lines.append("  [%s] %s %s" % (conn, kind, " ".join(shown)))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def servers(redis_server, relay_or_selftest):
    return redis_server, relay_or_selftest


@pytest.mark.parametrize("case", CASES, ids=[k.name for k in CASES])
def test_differential(servers, case):
    redis, relay = servers
    quiesce(redis.socket)
    quiesce(relay.socket)
    expected = run_script(redis.socket, case)
    actual = run_script(relay.socket, case)
    if expected != actual:
        pytest.fail("reply mismatch for %s\n--- redis-server:\n%s\n--- %s:\n%s"
                    % (case.name, fmt(expected), relay.kind, fmt(actual)), pytrace=False)
    # Every connection of the case is closed now: no subscription may outlive it.
    if quiesce(redis.socket) and not quiesce(relay.socket):
        with Conn(relay.socket) as probe:
            left = (probe.call("PUBSUB", "CHANNELS"), probe.call("PUBSUB", "NUMPAT"))
        pytest.fail("%s keeps channels/patterns after the case's connections closed: %r" % (relay.kind, left),
                    pytrace=False)


def test_case_count():
    assert len(CASES) >= 60


def test_subscriptions_cleaned_after_disconnect(servers):
    """Closing subscribed connections (no UNSUBSCRIBE) leaves no channel or pattern behind."""
    for server in servers:
        conns = [Conn(server.socket) for _ in range(5)]
        for i, conn in enumerate(conns):
            conn.send(c("SUBSCRIBE", "gc%d" % i, "gc-shared") + c("PSUBSCRIBE", "gc*", "p%d*" % i))
            frames, status = conn.read_frames(4)
            assert status == "ok", (server.kind, frames)
        with Conn(server.socket) as probe:
            assert probe.call("PUBSUB", "NUMSUB", "gc-shared") == [b"gc-shared", 5]
            assert probe.call("PUBSUB", "NUMPAT") == 6
        for conn in conns:
            conn.close()
        assert quiesce(server.socket, 3.0), "%s still reports channels/patterns after all subscribers closed" % server.kind


# ---- glob differential ----------------------------------------------------------------------

PATTERN_ALPHABET = [b"a", b"b", b"c", b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"\x00", b"\xff", b"!", b"z"]
CHANNEL_ALPHABET = [b"a", b"b", b"c", b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"\x00", b"\xff", b"z"]

FIXED_PATTERNS = [
    b"*", b"?", b"a*", b"*a", b"a?c", b"[abc]", b"[^abc]", b"[a-c]", b"[c-a]", b"[^a-b]*", b"\\*", b"\\?", b"\\[",
    b"[\\]]", b"[]]", b"[]", b"[", b"[a", b"a[", b"\\", b"a\\", b"[\\", b"[a-", b"[-a]", b"[a-]", b"[!a]", b"**a**",
    b"*?*", b"??", b"[[]", b"[\\-]", b"[a\\-c]", b"a*b*c", b"*\x00*", b"[\x00-\xff]", b"[\xff]*", b"[^\x00]",
    b"a*" * 1200 + b"z",         # past the nesting cap of Redis's stringmatchlen
    b"*a" * 600,
    b"?" * 5, b"[a-z][a-z]", b"z*z", b"\\a\\b",
]


def _random_bytes(rng, alphabet, lo, hi):
    return b"".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _glob_inputs():
    rng = random.Random(20240611)
    channels = sorted({_random_bytes(rng, CHANNEL_ALPHABET, 0, 6) for _ in range(300)})
    channels += [b"a" * 1300, b"a" * 1199 + b"z", (b"a" * 600)]
    patterns = list(FIXED_PATTERNS)
    seen = set(patterns)
    while len(patterns) < 330:
        p = _random_bytes(rng, PATTERN_ALPHABET, 1, 7)
        if p not in seen:
            seen.add(p)
            patterns.append(p)
    return channels, patterns


def _pubsub_channels_per_pattern(path, channels, patterns):
    with Conn(path, timeout=10) as sub, Conn(path, timeout=10) as q:
        sub.send(c("SUBSCRIBE", *channels))
        frames, status = sub.read_frames(len(channels), 10)
        assert status == "ok", status
        q.send(b"".join(c("PUBSUB", "CHANNELS", p) for p in patterns))
        frames, status = q.read_frames(len(patterns), 10)
        assert status == "ok", status
        return [sorted(parse1(f)) if f[:1] == b"*" else parse1(f) for f in frames]


def test_glob_pubsub_channels_differential(servers):
    """~330 patterns x ~300 channels (random over * ? [ ] ^ - \\ NUL 0xff, plus edge cases):
    PUBSUB CHANNELS <pattern> must list exactly the same channels as Redis."""
    redis, relay = servers
    channels, patterns = _glob_inputs()
    quiesce(redis.socket)
    quiesce(relay.socket)
    expected = _pubsub_channels_per_pattern(redis.socket, channels, patterns)
    actual = _pubsub_channels_per_pattern(relay.socket, channels, patterns)
    diffs = []
    for p, e, a in zip(patterns, expected, actual):
        if e != a:
            diffs.append("pattern %r:\n    redis: %r\n    %s: %r" % (p[:80], e[:20], relay.kind, a[:20]))
    assert not diffs, "%d of %d patterns differ:\n%s" % (len(diffs), len(patterns), "\n".join(diffs[:25]))


def _publish_counts(path, channels, patterns):
    with Conn(path, timeout=10) as sub, Conn(path, timeout=10) as pub:
        sub.send(c("PSUBSCRIBE", *patterns))
        frames, status = sub.read_frames(len(patterns), 10)
        assert status == "ok", status
        pub.send(b"".join(c("PUBLISH", ch, b"m") for ch in channels))
        frames, status = pub.read_frames(len(channels), 10)
        assert status == "ok", status
        counts = [parse1(f) for f in frames]
        delivered, status = sub.read_frames(sum(x for x in counts if isinstance(x, int)), 10)
        assert status == "ok", status
        got = sorted((parse1(f)[1], parse1(f)[2]) for f in delivered)
        return counts, got


def test_glob_psubscribe_delivery_differential(servers):
    """The delivery path (not only PUBSUB CHANNELS): one client PSUBSCRIBEs all patterns, every
    channel is PUBLISHed; receiver counts and the (pattern, channel) pairs delivered must match."""
    redis, relay = servers
    channels, patterns = _glob_inputs()
    patterns = patterns[:200]
    quiesce(redis.socket)
    quiesce(relay.socket)
    e_counts, e_got = _publish_counts(redis.socket, channels, patterns)
    a_counts, a_got = _publish_counts(relay.socket, channels, patterns)
    diffs = ["channel %r: redis %r, %s %r" % (ch[:60], e, relay.kind, a)
             for ch, e, a in zip(channels, e_counts, a_counts) if e != a]
    assert not diffs, "%d channels differ in PUBLISH counts:\n%s" % (len(diffs), "\n".join(diffs[:25]))
    assert e_got == a_got


# ---- relay only: where Redis 7.0 legitimately differs ---------------------------------------

@pytest.fixture(scope="module")
def relay_sock(relay_or_selftest):
    if relay_or_selftest.kind != "relay":
        pytest.skip("relay-only test (DIFF_SELFTEST runs redis-server 7.0 instead)")
    return relay_or_selftest.socket


def test_relay_only_client_setinfo(relay_sock):
    """CLIENT SETINFO is Redis 7.2; expected texts are 7.2's (networking.c clientSetinfoCommand)."""
    with Conn(relay_sock) as conn:
        conn.send(c("CLIENT", "SETINFO", "LIB-NAME", "redis-py") + c("CLIENT", "SETINFO", "lib-ver", "5.0.1")
                  + c("CLIENT", "SETINFO", "foo", "bar") + c("CLIENT", "SETINFO", "lib-name", "a b")
                  + c("CLIENT", "SETINFO", "lib-name"))
        frames, status = conn.read_frames(5)
        assert status == "ok", (frames, conn.buf)
        assert frames == [
            b"+OK\r\n",
            b"+OK\r\n",
            b"-ERR Unrecognized option 'foo'\r\n",
            b"-ERR lib-name cannot contain spaces, newlines or special characters.\r\n",
            b"-ERR wrong number of arguments for 'client|setinfo' command\r\n",
        ], frames


def test_relay_only_client_info(relay_sock):
    with Conn(relay_sock) as conn:
        cid = conn.call("CLIENT", "ID")
        conn.call("CLIENT", "SETNAME", "infotest")
        info = conn.call("CLIENT", "INFO")
        assert isinstance(info, bytes), info
        text = info.decode()
        assert text.endswith("\n"), text
        fields = dict(kv.split("=", 1) for kv in text.strip().split(" ") if "=" in kv)
        assert fields.get("id") == str(cid), text
        assert fields.get("name") == "infotest", text


def test_relay_only_info_sections(relay_sock):
    """INFO has the relay's own sections (README, "Commands"): server, clients, upstreams, stats."""
    with Conn(relay_sock) as conn:
        info = conn.call("INFO")
        assert isinstance(info, bytes), info
        text = info.decode()
        print(text)
        for section in ("# Server", "# Clients", "# Upstreams", "# Stats"):
            assert section.lower() in text.lower(), "INFO lacks %r:\n%s" % (section, text)
        assert "\r\n" in text, "INFO lines are CRLF-separated as in Redis"
        stats = conn.call("INFO", "stats").decode()
        assert "# stats" in stats.lower() and "# server" not in stats.lower(), stats
        # RESP3: verbatim string
        conn.call("HELLO", "3")
        conn.send(c("INFO", "server"))
        frame = conn.read_frame()
        assert frame[:1] in (b"=", b"$"), frame[:50]


def test_relay_only_command_probe(relay_sock):
    """COMMAND / COMMAND COUNT / COMMAND LIST: the relay answers with its own command set
    (valid 7.0-shaped entries), not Redis's 240 commands."""
    with Conn(relay_sock) as conn:
        everything = conn.call("COMMAND")
        assert isinstance(everything, list) and everything, everything
        names = set()
        for entry in everything:
            assert isinstance(entry, list) and len(entry) == 10, entry
            assert isinstance(entry[0], bytes) and isinstance(entry[1], int), entry
            names.add(entry[0])
        for required in (b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"publish", b"ssubscribe",
                         b"sunsubscribe", b"spublish", b"ping", b"hello",
                         b"client", b"pubsub"):
            assert required in names, names
        assert conn.call("COMMAND", "COUNT") == len(everything)
        # COMMAND LIST names subcommands too (`client|id`), as Redis 7.0 does.
        listed = set(conn.call("COMMAND", "LIST"))
        assert names <= listed, names - listed
        for name in listed - names:
            assert b"|" in name and name.split(b"|")[0] in names, name
        docs = conn.call("COMMAND", "DOCS")
        assert isinstance(docs, list) and len(docs) == 2 * len(names), len(docs)


def test_relay_only_oversized_bulk(relay_sock):
    """A bulk above RELAY_MAX_MESSAGE_BYTES (1 MiB default) gets a Redis-style -ERR; other clients
    are unaffected."""
    with Conn(relay_sock) as bystander:
        bystander.call("SUBSCRIBE", "ov")
        with Conn(relay_sock, timeout=10) as conn:
            try:
                conn.send(c("PUBLISH", "ov", BIG + b"x"))
            except (BrokenPipeError, ConnectionResetError):
                pass
            data, _closed = conn.read_until_close(3)
            assert data.startswith(b"-ERR "), data[:200]
        with Conn(relay_sock) as pub:
            assert pub.call("PUBLISH", "ov", "ok") == 1
        msg = parse1(bystander.read_frame())
        assert msg == [b"message", b"ov", b"ok"], msg


def _stats(sock):
    with Conn(sock) as conn:
        text = conn.call("INFO", "stats").decode()
    return {k: v for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def test_relay_only_bad_input_counted_and_logged(relay_or_selftest):
    """README, "Bad input and slow consumers": each bad input gets a log line and a counter; other
    clients unaffected."""
    relay = relay_or_selftest
    if relay.kind != "relay":
        pytest.skip("relay-only test")
    before = _stats(relay.socket)
    log_before = relay.stderr()
    with Conn(relay.socket) as bystander:
        assert bystander.call("SUBSCRIBE", "bystander") == [b"subscribe", b"bystander", 1]
        with Conn(relay.socket) as conn:
            assert conn.call("NOSUCHCMD", "x")[0] == "ERR"
        for bad in (b"*abc\r\n", b"POST / HTTP/1.1\r\n"):
            with Conn(relay.socket) as conn:
                conn.send(bad)
                assert conn.read_until_close(3)[1]
        with Conn(relay.socket) as pub:
            assert pub.call("PUBLISH", "bystander", "still here") == 1
        assert parse1(bystander.read_frame()) == [b"message", b"bystander", b"still here"]
    after = _stats(relay.socket)
    for key in ("unknown_commands", "protocol_errors", "security_disconnects"):
        assert int(after[key]) == int(before[key]) + 1, (key, before.get(key), after.get(key))
    time.sleep(0.2)
    new_log = relay.stderr()[len(log_before):].lower()
    print(new_log)
    assert "protocol" in new_log, new_log
    assert "post" in new_log or "security" in new_log or "http" in new_log, new_log
