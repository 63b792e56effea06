"""systemd units, install and uninstall (README, "Running it as a service").

* The units pass `systemd-analyze verify` with the binary path they name: the real files are
  copied unchanged into a temporary root (`--root=`, supported by systemd 252's verify) that holds
  the relay binary at /usr/local/bin/pubsub-relay, the helpers the units run (/bin/kill,
  /usr/bin/install) and the host's systemd unit directory (for the targets they refer to).
* `systemd-analyze security --offline=yes` rates the service at 1.5 or less.
* The directives the relay relies on are present with the right values.
* The hardening does not break the relay: under a seccomp filter equivalent to the unit's
  (seccomp_exec.py: SystemCallFilter=, RestrictAddressFamilies=, MemoryDenyWriteExecute=,
  RestrictNamespaces=, NoNewPrivileges=) and, as root, also as an unprivileged user with no
  capabilities and a /proc reduced to its own processes (ProcSubset=pid, ProtectProc=invisible),
  it serves clients, chowns its socket, serves /metrics, speaks sd_notify, reloads on SIGHUP and
  exits 0 on SIGTERM. An strace of the same run names any call outside the filter and checks
  that it writes files only in its socket's directory (ProtectSystem=strict).
* scripts/install and scripts/uninstall with DESTDIR (and PREFIX): files, modes, an existing
  env file kept, uninstall keeping it unless --purge.

No test starts systemd or touches the host's /etc, /usr/local or users.
"""
from __future__ import annotations

import filecmp
import grp
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PACKAGE_ROOT, relay_env, require_tool, short_tmpdir, stop_pid, wait_accepting

SYSTEMD_DIR = PACKAGE_ROOT / "systemd"
SERVICE = SYSTEMD_DIR / "pubsub-relay.service"
SOCKET_UNIT = SYSTEMD_DIR / "pubsub-relay.socket"
ENV_FILE = SYSTEMD_DIR / "pubsub-relay.env"
INSTALL = PACKAGE_ROOT / "scripts" / "install"
UNINSTALL = PACKAGE_ROOT / "scripts" / "uninstall"

UNIT_BINARY = "/usr/local/bin/pubsub-relay"    # what the shipped service names
UNIT_DIR = "/etc/systemd/system"
CONF = "/etc/pubsub-relay/relay.env"
MAX_EXPOSURE = 1.5
SHUTDOWN_FLUSH_BOUND_S = 5.0                    # the relay's bound on the SIGTERM flush
EX_CONFIG = 78


# ---- helpers --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "apt-get install systemd")


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]} in file order (repeated keys kept),
    with comments dropped and backslash continuations joined, as systemd reads it."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        assert current is not None, "%s: key outside a section: %r" % (path, line)
        key, sep, value = line.partition("=")
        assert sep, "%s: not a key=value line: %r" % (path, line)
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    """Every value of key, honouring systemd's "empty assignment resets the list"."""
    out: list[str] = []
    for k, v in unit.get(section, []):
        if k == key:
            out = [] if v == "" else out + [v]
    return out


def one(unit: dict, section: str, key: str) -> str | None:
    """The effective value of a single-valued key (the last assignment wins)."""
    found = [v for k, v in unit.get(section, []) if k == key]
    return found[-1] if found else None


def seconds(span: str) -> float:
    """A systemd time span ("15s", "1min 30s", "90", "500ms") in seconds."""
    units = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1, "sec": 1, "second": 1,
             "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600,
             "hour": 3600, "hours": 3600}
    parts = re.findall(r"([0-9.]+)\s*([a-z]*)", span.strip())
    assert parts, "not a time span: %r" % span
    return sum(float(n) * units[u or "s"] for n, u in parts)


def exec_paths(unit_path: Path) -> list[str]:
    """The programs a unit's Exec*= lines run (prefixes such as - @ + ! : stripped)."""
    out = []
    for section in parse_unit(unit_path).values():
        for key, value in section:
            if key.startswith("Exec") and value:
                out.append(shlex.split(value)[0].lstrip("-@:+!"))
    return out


def host_unit_dir() -> Path:
    for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if os.path.isdir(d):
            return Path(d)
    pytest.skip("no systemd unit directory on this machine")


def make_verify_root(root: Path, relay_binary: str | None, relay_path: str = UNIT_BINARY,
                     units: list[Path] | None = None) -> Path:
    """Completes `root` into something `systemd-analyze verify --root=` can check: the units
    (copied unchanged unless already there), the relay binary at `relay_path` (unless
    relay_binary is None), the host's helpers the units run, and the host's unit directory."""
    unit_dir = root / UNIT_DIR.lstrip("/")
    unit_dir.mkdir(parents=True, exist_ok=True)
    for u in units or []:
        shutil.copyfile(u, unit_dir / u.name)
    vendor = root / "usr/lib/systemd/system"
    if not vendor.exists():
        shutil.copytree(host_unit_dir(), vendor, symlinks=True)
    for unit in unit_dir.glob("pubsub-relay.*"):
        for prog in exec_paths(unit):
            dest = root / prog.lstrip("/")
            if prog == relay_path:
                if relay_binary is not None and not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(relay_binary, dest)
                continue
            assert os.access(prog, os.X_OK), "%s runs %s, which this machine lacks" % (unit.name, prog)
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(os.path.realpath(prog), dest)
    return root


def run_verify(systemd_analyze: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([systemd_analyze, "verify", "--root=%s" % root,
                           "%s/pubsub-relay.service" % UNIT_DIR, "%s/pubsub-relay.socket" % UNIT_DIR],
                          capture_output=True, text=True, timeout=120)


def check_config(binary: str, env_file: Path) -> subprocess.CompletedProcess:
    """check-config in a clean environment: only the file counts, as under systemd."""
    return subprocess.run([binary, "check-config", "--env-file", str(env_file)],
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                          capture_output=True, text=True, timeout=30)


# ---- systemd-analyze verify and security ----------------------------------------------------

def test_units_pass_systemd_analyze_verify(systemd_analyze, relay_binary, tmp_path):
    root = make_verify_root(tmp_path / "root", relay_binary, units=[SERVICE, SOCKET_UNIT])
    for name in (SERVICE.name, SOCKET_UNIT.name):   # the real files, byte for byte
        assert filecmp.cmp(SYSTEMD_DIR / name, root / UNIT_DIR.lstrip("/") / name, shallow=False)
    r = run_verify(systemd_analyze, root)
    out = (r.stdout + r.stderr).strip()
    # verify exits 0 on warnings such as an unknown key: any output at all is a failure.
    assert r.returncode == 0 and out == "", "systemd-analyze verify (exit %d):\n%s" % (r.returncode, out)


def test_verify_checks_the_binary_path_the_unit_names(systemd_analyze, tmp_path):
    """Control for the test above: without /usr/local/bin/pubsub-relay in the root, verify fails."""
    root = make_verify_root(tmp_path / "root", None, units=[SERVICE, SOCKET_UNIT])
    r = run_verify(systemd_analyze, root)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and UNIT_BINARY in out and "not executable" in out, out


def test_service_security_exposure(systemd_analyze, tmp_path):
    root = make_verify_root(tmp_path / "root", None, units=[SERVICE])
    r = subprocess.run([systemd_analyze, "security", "--offline=yes", "--no-pager", "--root=%s" % root,
                        "%s/pubsub-relay.service" % UNIT_DIR], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    m = re.search(r"Overall exposure level for pubsub-relay\.service: ([0-9]+(?:\.[0-9]+)?)", out)
    assert m, "no overall exposure line (exit %d):\n%s" % (r.returncode, out)
    exposure = float(m.group(1))
    open_items = [line.strip() for line in out.splitlines() if line.lstrip().startswith("✗")]
    print("\nsystemd-analyze security --offline=yes: overall exposure %.1f (bound %.1f); still open:\n  %s"
          % (exposure, MAX_EXPOSURE, "\n  ".join(open_items)))
    assert exposure <= MAX_EXPOSURE, out


# ---- the directives the relay relies on -----------------------------------------------------

def test_service_directives():
    svc = parse_unit(SERVICE)
    S = "Service"
    assert one(svc, S, "Type") == "notify"
    assert one(svc, S, "NotifyAccess") == "main"
    assert one(svc, S, "Restart") == "on-failure"
    assert str(EX_CONFIG) in one(svc, S, "RestartPreventExitStatus").split()
    watchdog = one(svc, S, "WatchdogSec")
    assert watchdog and seconds(watchdog) > 0
    # TimeoutStopSec covers the relay's shutdown flush bound, with room for closing upstreams.
    assert seconds(one(svc, S, "TimeoutStopSec")) >= 2 * SHUTDOWN_FLUSH_BOUND_S

    exec_start = shlex.split(one(svc, S, "ExecStart"))
    assert exec_start[0] == UNIT_BINARY
    assert exec_start[1:] == ["--env-file", CONF]          # so SIGHUP re-reads the file
    assert values(svc, S, "EnvironmentFile") == ["-" + CONF]
    reload_cmd = shlex.split(one(svc, S, "ExecReload"))
    assert os.path.basename(reload_cmd[0]) == "kill" and reload_cmd[1:] == ["-HUP", "$MAINPID"]

    assert one(svc, S, "RuntimeDirectory") == "pubsub-relay"
    assert one(svc, S, "RuntimeDirectoryMode") == "0750"
    # The .socket unit's file lives in the runtime directory: it must survive service stops.
    assert one(svc, S, "RuntimeDirectoryPreserve") == "yes"
    assert int(one(svc, S, "LimitNOFILE").split(":")[0]) >= 10_240   # 10 000 clients + headroom

    assert one(svc, S, "User") == "pubsub-relay" and one(svc, S, "Group") == "pubsub-relay"
    assert one(svc, S, "DynamicUser") in (None, "no")
    assert one(svc, S, "UMask") == "0077"
    assert one(svc, S, "CapabilityBoundingSet") == ""
    assert one(svc, S, "MemoryDenyWriteExecute") == "yes"
    assert one(svc, S, "ProtectSystem") == "strict"
    assert values(svc, S, "SystemCallFilter") == ["@system-service"]
    assert set(" ".join(values(svc, S, "RestrictAddressFamilies")).split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # Not root, so the relay's built-in default would be ./relay.sock: the unit names the path.
    assert "RELAY_SOCKET=/run/pubsub-relay/relay.sock" in values(svc, S, "Environment")


def test_socket_unit_directives():
    sock = parse_unit(SOCKET_UNIT)
    svc = parse_unit(SERVICE)
    K = "Socket"
    assert values(sock, K, "ListenStream") == ["/run/pubsub-relay/relay.sock"]
    assert one(sock, K, "Service") == SERVICE.name
    assert one(sock, K, "SocketMode") == "0660"                # never systemd's default 0666
    group = one(sock, K, "SocketGroup")
    assert group, "the socket unit sets no group"
    assert group == one(svc, "Service", "Group")
    assert one(sock, K, "SocketUser") == one(svc, "Service", "User")
    assert one(sock, K, "DirectoryMode") == "0750"
    # The socket's directory is the service's RuntimeDirectory, and the relay's own default.
    listen = values(sock, K, "ListenStream")[0]
    assert os.path.dirname(listen) == "/run/" + one(svc, "Service", "RuntimeDirectory")
    assert "RELAY_SOCKET=" + listen in values(svc, "Service", "Environment")
    # systemd would create that directory root:root; ExecStartPre gives it the owner and mode
    # the service's RuntimeDirectory= has, so group members can connect before the first start.
    pre = [shlex.split(v) for v in values(sock, K, "ExecStartPre")]
    assert pre, "no ExecStartPre creating the socket directory"
    argv = pre[0]
    assert os.path.basename(argv[0]) == "install" and argv[-1] == os.path.dirname(listen)
    flags = argv[1:-1]
    assert "-d" in flags, argv
    flags.remove("-d")
    opts = dict(zip(flags[0::2], flags[1::2]))
    assert opts == {"-o": one(svc, "Service", "User"), "-g": group,
                    "-m": one(svc, "Service", "RuntimeDirectoryMode")}, argv
    assert one(sock, "Install", "WantedBy") == "sockets.target"


def test_shipped_env_file_passes_check_config(relay_binary):
    r = check_config(relay_binary, ENV_FILE)
    assert r.returncode == 0, "check-config --env-file %s exit %d:\n%s%s" % (ENV_FILE, r.returncode, r.stdout, r.stderr)


# ---- the hardening does not break the relay -------------------------------------------------

def expand_syscall_group(systemd_analyze: str, group: str) -> set[str]:
    """A SystemCallFilter= item (@group or a name) as system call names, nested groups expanded."""
    if not group.startswith("@"):
        return {group}
    seen: set[str] = set()
    calls: set[str] = set()

    def walk(g: str) -> None:
        if g in seen:
            return
        seen.add(g)
        out = subprocess.run([systemd_analyze, "syscall-filter", g], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        for line in out.splitlines()[1:]:
            item = line.strip()
            if not item or item.startswith("#"):
                continue
            if item.startswith("@"):
                walk(item)
            else:
                calls.add(item)

    walk(group)
    return calls


def unit_syscall_allow_list(systemd_analyze: str) -> set[str]:
    """What the service's SystemCallFilter= allows (it is an allow list: no "~" lines)."""
    items = " ".join(values(parse_unit(SERVICE), "Service", "SystemCallFilter")).split()
    assert items and not any(i.startswith("~") for i in items), items
    allowed: set[str] = set()
    for item in items:
        allowed |= expand_syscall_group(systemd_analyze, item)
    return allowed


def unit_address_families() -> list[str]:
    return " ".join(values(parse_unit(SERVICE), "Service", "RestrictAddressFamilies")).split()


# What the relay does, by name: the unit's system-call filter must allow all of it.
RELAY_SYSCALLS = """
    socket bind listen accept4 connect getsockname getpeername setsockopt getsockopt shutdown
    sendmsg sendto recvmsg recvfrom read write readv writev close
    epoll_create1 epoll_ctl epoll_wait epoll_pwait eventfd2 timerfd_create timerfd_settime
    chmod fchmodat chown fchownat rename renameat renameat2 mkdir mkdirat rmdir unlink unlinkat
    openat newfstatat statx fstat
    getrlimit setrlimit prlimit64 mmap munmap mprotect madvise brk mremap
    clone clone3 futex set_robust_list rseq rt_sigaction rt_sigprocmask signalfd4 tgkill gettid
    sched_getaffinity setpriority getrandom prctl exit_group
""".split()


def test_system_call_filter_covers_what_the_relay_calls(systemd_analyze):
    missing = sorted(set(RELAY_SYSCALLS) - unit_syscall_allow_list(systemd_analyze))
    assert not missing, "the unit's SystemCallFilter= would deny: %s" % missing


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def exercise(sock_path: str, metrics_port: int, pid: int) -> None:
    """Serves a subscriber and a publisher, /metrics and /health, and a SIGHUP reload."""
    from resputil import Conn, parse1

    sub = Conn(sock_path, timeout=5)
    pub = Conn(sock_path, timeout=5)
    try:
        assert sub.call("SUBSCRIBE", "news") == [b"subscribe", b"news", 1]
        assert pub.call("PUBLISH", "news", "hello") == 1
        assert parse1(sub.read_frame()) == [b"message", b"news", b"hello"]
        for path in ("/metrics", "/health"):
            reply = http_get(metrics_port, path)
            assert reply.startswith(b"HTTP/1.1 200"), "%s: %r" % (path, reply[:200])
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        assert pub.call("PING") == "PONG"
    finally:
        sub.close()
        pub.close()


class NotifySocket:
    """A NOTIFY_SOCKET the relay (possibly another user) can send to."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(line in m.splitlines() for m in self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s from the relay within %.0fs; got %r" % (line, timeout, self.messages))
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode("utf-8", "replace"))
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


def can_restrict_proc() -> bool:
    """Root that may mount a /proc with subset=pid in a private mount namespace."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return False
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        "mount -t proc -o subset=pid,hidepid=invisible proc /proc && test ! -e /proc/cpuinfo"],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def seccomp_argv(systemd_analyze: str, d: str, program: list[str]) -> list[str]:
    """`program` under seccomp_exec.py with the unit's system call allow list and address families."""
    allowed_file = os.path.join(d, "syscalls")
    Path(allowed_file).write_text("\n".join(sorted(unit_syscall_allow_list(systemd_analyze))) + "\n")
    return [sys.executable, str(Path(__file__).with_name("seccomp_exec.py")), allowed_file,
            ",".join(unit_address_families()), "--"] + program


def start_sandboxed(argv: list[str], env: dict, d: str, sock_path: str):
    """Starts the sandboxed relay and waits until it serves with its seccomp filter on (skips where
    the filter cannot be installed). Returns the process and a reader of its stderr."""
    stderr_path = os.path.join(d, "stderr")
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=d)

    def stderr() -> str:
        return Path(stderr_path).read_text(errors="replace")

    try:
        wait_accepting(sock_path, proc, timeout=30)
    except RuntimeError as e:
        if proc.poll() == 97:
            pytest.skip("cannot install the seccomp filter here: %s" % stderr().strip())
        stop_pid(proc)
        raise AssertionError("%s\nstderr:\n%s" % (e, stderr()))
    status = Path("/proc/%d/status" % proc.pid).read_text()
    if not re.search(r"^Seccomp:\s+2$", status, re.M):
        stop_pid(proc)
        raise AssertionError("no seccomp filter on the relay:\n" + status)
    return proc, stderr, status


def test_relay_works_inside_the_units_sandbox(systemd_analyze, relay_binary):
    """The relay under a seccomp filter equivalent to the unit's SystemCallFilter=,
    SystemCallErrorNumber=, SystemCallArchitectures=, RestrictAddressFamilies=,
    MemoryDenyWriteExecute=, RestrictNamespaces= and NoNewPrivileges= (seccomp_exec.py), and,
    when this runs as root, also as an unprivileged user with no capabilities (User=,
    CapabilityBoundingSet=) and a /proc reduced to its own processes (ProcSubset=pid,
    ProtectProc=invisible), its socket in a 0750 directory it owns (RuntimeDirectory=):
    it serves clients, chowns its socket, binds /metrics on TCP, talks sd_notify (READY,
    WATCHDOG, RELOADING, STOPPING), reloads on SIGHUP and exits 0 on SIGTERM."""
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp emulation is x86_64 only")
    d = short_tmpdir("rit-sd-")
    os.chmod(d, 0o755)
    run_dir = os.path.join(d, "run")
    os.mkdir(run_dir, 0o750)
    sock_path = os.path.join(run_dir, "relay.sock")
    env_file = os.path.join(d, "relay.env")
    shutil.copyfile(ENV_FILE, env_file)
    os.chmod(env_file, 0o644)
    notify = NotifySocket(os.path.join(d, "notify"))
    port = free_tcp_port()

    argv = seccomp_argv(systemd_analyze, d, [relay_binary, "--env-file", env_file])
    drop = can_restrict_proc()
    if drop:
        import pwd
        user = pwd.getpwnam("nobody")
        uid, gid = user.pw_uid, user.pw_gid
        os.chown(run_dir, uid, gid)
        # unshare execs sh, which execs setpriv, which execs the launcher, which execs the relay:
        # the Popen pid is the relay's.
        script = ("mount -t proc -o subset=pid,hidepid=invisible proc /proc || exit 99; "
                  "exec setpriv --reuid=%d --regid=%d --clear-groups --no-new-privs "
                  "--inh-caps=-all --bounding-set=-all -- \"$0\" \"$@\"" % (uid, gid))
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script] + argv
    else:
        uid, gid = os.getuid(), os.getgid()
        print("\n(not root, or no restricted /proc here: seccomp emulation only, as the current user)")
    group = grp.getgrgid(gid).gr_name
    env = relay_env(sock_path, {
        "RELAY_METRICS_ADDR": "127.0.0.1:%d" % port,
        "RELAY_SOCKET_GROUP": group,                # the chown the unit's filter must allow
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": "1000000",
    })
    try:
        proc, stderr, status = start_sandboxed(argv, env, d, sock_path)
    except BaseException:
        notify.close()
        raise
    try:
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
        if drop:
            assert re.search(r"^Uid:\s+%d\s" % uid, status, re.M)
            assert re.search(r"^CapBnd:\s+0+$", status, re.M) and re.search(r"^CapEff:\s+0+$", status, re.M)
        st = os.stat(sock_path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid and st.st_uid == uid
        notify.wait_for("READY=1", 10)
        notify.wait_for("WATCHDOG=1", 5)
        exercise(sock_path, port, proc.pid)
        notify.wait_for("RELOADING=1", 5)
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(20)
        notify.wait_for("STOPPING=1", 1)
    finally:
        stop_pid(proc)
        notify.close()
    assert rc == 0, "exit %s; stderr:\n%s" % (rc, stderr())
    assert not os.path.exists(sock_path)
    print("\nsandboxed relay (%s): served, sd_notify, /metrics, SIGHUP, SIGTERM -> 0"
          % ("user nobody, no capabilities, /proc subset=pid" if drop else "current user"))


WRITE_CALLS = r"(mkdir|mkdirat|rmdir|unlink|unlinkat|rename|renameat|renameat2|chmod|fchmodat|chown|lchown|fchownat|link|linkat|symlink|symlinkat|truncate|mknod|mknodat)"


def test_relay_system_calls_and_writes_strace(systemd_analyze, relay_binary):
    """Diagnostic companion of the sandbox test, by strace: names every system call outside the
    unit's filter, checks the relay writes files only in its socket's directory (all that
    ProtectSystem=strict leaves it: the RuntimeDirectory) and never asks for W+X memory."""
    strace = require_tool("strace", "apt-get install strace")
    d = short_tmpdir("rit-sd-")
    run_dir = os.path.join(d, "run")
    os.mkdir(run_dir, 0o750)
    sock_path = os.path.join(run_dir, "relay.sock")
    env_file = os.path.join(d, "relay.env")
    shutil.copyfile(ENV_FILE, env_file)
    trace = os.path.join(d, "trace")
    notify = NotifySocket(os.path.join(d, "notify"))
    port = free_tcp_port()
    env = relay_env(sock_path, {
        "RELAY_METRICS_ADDR": "127.0.0.1:%d" % port,
        "RELAY_SOCKET_GROUP": grp.getgrgid(os.getgid()).gr_name,
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": "1000000",
    })
    stderr_path = os.path.join(d, "stderr")
    with open(stderr_path, "wb") as err:
        tracer = subprocess.Popen([strace, "-f", "-qq", "-s", "256", "-o", trace, relay_binary, "--env-file", env_file],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=d)
    try:
        wait_accepting(sock_path, tracer, timeout=30)
        notify.wait_for("READY=1", 10)
        pid = int(re.search(r"^MAINPID=(\d+)$", "\n".join(notify.messages), re.M).group(1))
        exercise(sock_path, port, pid)
        os.kill(pid, signal.SIGTERM)
        rc = tracer.wait(20)
    finally:
        stop_pid(tracer)
        notify.close()
    assert rc == 0, "relay under strace exit %s; stderr:\n%s" % (rc, Path(stderr_path).read_text())

    text = Path(trace).read_text()
    calls = sorted(set(re.findall(r"^\d+\s+([a-z0-9_]+)\(", text, re.M)))
    print("\nthe relay made %d distinct system calls: %s" % (len(calls), " ".join(calls)))
    print("socket families asked for: %s" % " ".join(sorted(set(re.findall(r"\bsocket\((AF_[A-Z0-9]+)", text)))))
    denied = [c for c in calls if c not in unit_syscall_allow_list(systemd_analyze)]
    assert not denied, "system calls outside the unit's SystemCallFilter=: %s" % denied

    written = []
    for line in text.splitlines():
        call = re.match(r"^\d+\s+(\w+)\(", line)
        if not call:
            continue
        name = call.group(1)
        if re.fullmatch(WRITE_CALLS, name) or (name in ("open", "openat", "creat") and
                                               re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", line)):
            written += [p for p in re.findall(r'"(/[^"]*)"', line)]
        elif name == "bind":
            written += re.findall(r'sun_path="(/[^"]*)"', line)
    outside = sorted({p for p in written if not (p + "/").startswith(run_dir + "/") and p != "/dev/null"})
    assert written, "the trace shows no file written at all (strace output format changed?)"
    assert not outside, "files written outside the socket's directory: %s" % outside

    wx = [line for line in text.splitlines()
          if re.search(r"\b(mmap|mprotect|pkey_mprotect)\(", line) and "PROT_WRITE" in line and "PROT_EXEC" in line]
    assert not wx, "writable+executable mappings:\n%s" % "\n".join(wx[:5])


# ---- scripts/install and scripts/uninstall --------------------------------------------------

def run_script(script: Path, destdir: Path, relay_binary: str, *args: str, prefix: str | None = None,
               expect: int = 0) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "PREFIX", "RELAY_BINARY")}
    env["DESTDIR"] = str(destdir)
    env["RELAY_BINARY"] = relay_binary
    if prefix is not None:
        env["PREFIX"] = prefix
    r = subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == expect, "%s %s exit %d:\n%s" % (script.name, " ".join(args), r.returncode, out)
    return out


def user_exists(name: str) -> bool:
    return subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0


def test_install_keep_env_and_uninstall(relay_binary, tmp_path):
    dest = tmp_path / "stage"
    had_user = user_exists("pubsub-relay")
    binary = dest / UNIT_BINARY.lstrip("/")
    units = dest / UNIT_DIR.lstrip("/")
    conf = dest / CONF.lstrip("/")

    out = run_script(INSTALL, dest, relay_binary)
    assert user_exists("pubsub-relay") == had_user, "a DESTDIR install must not create users"
    assert filecmp.cmp(binary, relay_binary, shallow=False)
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    for unit in (SERVICE, SOCKET_UNIT):
        assert filecmp.cmp(units / unit.name, unit, shallow=False), "%s not installed as shipped" % unit.name
        assert stat.S_IMODE((units / unit.name).stat().st_mode) == 0o644
    assert filecmp.cmp(conf, ENV_FILE, shallow=False)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o400, "credentials: readable by the relay user only"
    assert "WARNING" not in out, out
    r = check_config(str(binary), conf)
    assert r.returncode == 0, r.stderr

    # Second run: an operator's edits survive, and it says so; the binary is replaced.
    edited = conf.read_text() + "RELAY_LOG_LEVEL=debug\n"
    conf.write_text(edited)
    binary.write_bytes(b"old")
    out = run_script(INSTALL, dest, relay_binary)
    assert conf.read_text() == edited
    assert "kept the existing" in out and str(conf) in out, out
    assert filecmp.cmp(binary, relay_binary, shallow=False)

    out = run_script(UNINSTALL, dest, relay_binary)
    assert not binary.exists()
    assert not (units / SERVICE.name).exists() and not (units / SOCKET_UNIT.name).exists()
    assert conf.read_text() == edited, "uninstall without --purge must keep the env file"
    assert "kept" in out

    run_script(UNINSTALL, dest, relay_binary, "--purge")
    assert not conf.parent.exists()
    assert user_exists("pubsub-relay") == had_user


def test_install_with_prefix_names_the_binary_in_the_unit(systemd_analyze, relay_binary, tmp_path):
    dest = tmp_path / "stage"
    prefix = "/opt/pubsub-relay"
    run_script(INSTALL, dest, relay_binary, prefix=prefix)
    binary_path = prefix + "/bin/pubsub-relay"
    assert filecmp.cmp(dest / binary_path.lstrip("/"), relay_binary, shallow=False)
    installed = dest / UNIT_DIR.lstrip("/") / SERVICE.name
    shipped_lines = SERVICE.read_text().splitlines()
    installed_lines = installed.read_text().splitlines()
    assert len(installed_lines) == len(shipped_lines)
    changed = [(a, b) for a, b in zip(shipped_lines, installed_lines) if a != b]
    assert changed == [(line, line.replace(UNIT_BINARY, binary_path))
                       for line in shipped_lines if UNIT_BINARY in line], changed
    assert changed and changed[0][1].startswith("ExecStart=" + binary_path)

    # The staged tree itself verifies, with the binary where its unit says.
    r = run_verify(systemd_analyze, make_verify_root(dest, None, relay_path=binary_path))
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and out == "", "verify of the PREFIX install (exit %d):\n%s" % (r.returncode, out)

    run_script(UNINSTALL, dest, relay_binary, prefix=prefix)
    assert not (dest / binary_path.lstrip("/")).exists() and not installed.exists()


def test_backplane_and_bridge_work_inside_the_units_sandbox(systemd_analyze, relay_binary, redis_server, pg_db):
    """The upstream links under the unit's seccomp filter and address families (seccomp_exec.py,
    as the current user): hiredis over a Unix socket, libpq loaded with dlopen, the listener
    thread, the leader lease. A NOTIFY reaches a subscriber through Redis; a publish crosses to
    Redis; SIGTERM still exits 0 (the lease is released)."""
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp emulation is x86_64 only")
    d = short_tmpdir("rit-sdup-")
    sock_path = os.path.join(d, "relay.sock")
    argv = seccomp_argv(systemd_analyze, d, [relay_binary])
    env = relay_env(sock_path, {
        "RELAY_METRICS_ADDR": "",
        "REDIS_URL": "unix://" + redis_server.socket,
        "DATABASE_URL": pg_db.conninfo,
        "RELAY_PG_CHANNELS": "sandboxed",
        "RELAY_PG_PREFIX": "pg:",
        "RELAY_LEADER_TTL": "1s",
    })
    def info() -> dict:
        from conftest import relay_info
        return relay_info(sock_path)

    import redis as redis_py
    proc, stderr, _ = start_sandboxed(argv, env, d, sock_path)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            i = info()
            if i.get("redis_state") == "up" and i.get("postgres_leader") == "1" and i.get("postgres_listening") == "1":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("not up and leading in the sandbox: %r\nstderr:\n%s" % (info(), stderr()))
        r = redis_py.Redis(unix_socket_path=sock_path)
        p = r.pubsub()
        p.subscribe("pg:sandboxed", "fromapp")
        for _ in range(2):
            assert p.get_message(timeout=5)["type"] == "subscribe"
        pg_db.execute("SELECT pg_notify('sandboxed', 'héllo')")
        m = p.get_message(timeout=5)
        assert m and m["channel"] == b"pg:sandboxed" and m["data"] == "héllo".encode(), (m, stderr())
        # PUBLISH goes to Redis and answers Redis's count (this relay holds the channel: 1).
        assert r.publish("fromapp", b"x") == 1
        m = p.get_message(timeout=5)
        assert m and m["data"] == b"x", m
        p.close()
        r.close()
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(20)
    finally:
        stop_pid(proc)
    assert rc == 0, "exit %s; stderr:\n%s" % (rc, stderr())
    # The clean stop released the lease and removed this relay's fleet counts.
    out = subprocess.run(["redis-cli", "-s", redis_server.socket, "EXISTS", "pubsub-relay:pg-leader"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    assert out == "0", out
    assert "Operation not permitted" not in stderr() and "EPERM" not in stderr(), stderr()
