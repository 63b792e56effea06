"""Runs a program under a seccomp filter equivalent to what systemd installs for these unit
settings (x86_64), so a test can check that the relay works inside its unit's sandbox without
systemd as PID 1:

  SystemCallFilter=<allow list> + SystemCallErrorNumber=EPERM   other calls fail with EPERM
  SystemCallArchitectures=native                                 other ABIs fail with EPERM
  RestrictAddressFamilies=<families>                             socket() of another family
                                                                 fails with EAFNOSUPPORT
  MemoryDenyWriteExecute=yes                                     mmap(W|X), mprotect(X),
                                                                 pkey_mprotect(X), shmat(SHM_EXEC)
                                                                 fail with EPERM
  RestrictNamespaces=yes                                         clone3 -> ENOSYS (so glibc falls
                                                                 back to clone), clone/unshare/setns
                                                                 with namespace flags -> EPERM
  NoNewPrivileges=yes

usage: seccomp_exec.py SYSCALLS_FILE FAMILIES -- PROGRAM [ARG...]
  SYSCALLS_FILE  allowed system call names, one a line (names unknown on x86_64 are ignored,
                 as systemd does)
  FAMILIES       comma-separated, e.g. AF_UNIX,AF_INET,AF_INET6

Exit 97 if the filter cannot be installed (not x86_64, no syscall table, prctl refused).
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import socket
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
# BPF opcodes
LD_W_ABS = 0x00 | 0x00 | 0x20
JEQ_K = 0x05 | 0x10 | 0x00
JSET_K = 0x05 | 0x40 | 0x00
AND_K = 0x04 | 0x50 | 0x00
RET_K = 0x06 | 0x00
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

OFF_NR, OFF_ARCH = 0, 4


def off_arg(i: int) -> int:     # low 32 bits of args[i] (little endian)
    return 16 + 8 * i


PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000
CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000


def syscall_numbers() -> dict[str, int]:
    for header in ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"):
        try:
            text = open(header).read()
        except OSError:
            continue
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", text)}
    return {}


def ins(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def ret_errno(e: int):
    return ins(RET_K, RET_ERRNO | e)


def build(allowed: set[str], families: list[int], numbers: dict[str, int]) -> list[tuple]:
    special: dict[str, list[tuple]] = {
        # RestrictAddressFamilies=
        "socket": [ins(LD_W_ABS, off_arg(0))]
                  + [ins(JEQ_K, fam, jt=len(families) - i, jf=0) for i, fam in enumerate(families)]
                  + [ret_errno(errno.EAFNOSUPPORT), ins(RET_K, RET_ALLOW)],
        # MemoryDenyWriteExecute=
        "mmap": [ins(LD_W_ABS, off_arg(2)), ins(AND_K, PROT_WRITE | PROT_EXEC),
                 ins(JEQ_K, PROT_WRITE | PROT_EXEC, jt=0, jf=1), ret_errno(errno.EPERM), ins(RET_K, RET_ALLOW)],
        "mprotect": [ins(LD_W_ABS, off_arg(2)), ins(JSET_K, PROT_EXEC, jt=0, jf=1),
                     ret_errno(errno.EPERM), ins(RET_K, RET_ALLOW)],
        "pkey_mprotect": [ins(LD_W_ABS, off_arg(2)), ins(JSET_K, PROT_EXEC, jt=0, jf=1),
                          ret_errno(errno.EPERM), ins(RET_K, RET_ALLOW)],
        "shmat": [ins(LD_W_ABS, off_arg(2)), ins(JSET_K, SHM_EXEC, jt=0, jf=1),
                  ret_errno(errno.EPERM), ins(RET_K, RET_ALLOW)],
        # RestrictNamespaces=yes
        "clone3": [ret_errno(errno.ENOSYS)],
        "clone": [ins(LD_W_ABS, off_arg(0)), ins(JSET_K, CLONE_NEW_FLAGS, jt=0, jf=1),
                  ret_errno(errno.EPERM), ins(RET_K, RET_ALLOW)],
        "unshare": [ins(LD_W_ABS, off_arg(0)), ins(JSET_K, CLONE_NEW_FLAGS, jt=0, jf=1),
                    ret_errno(errno.EPERM), ins(RET_K, RET_ALLOW)],
        "setns": [ret_errno(errno.EPERM)],
    }
    prog = [ins(LD_W_ABS, OFF_ARCH), ins(JEQ_K, AUDIT_ARCH_X86_64, jt=1, jf=0), ret_errno(errno.EPERM),
            ins(LD_W_ABS, OFF_NR)]
    for name, block in special.items():
        if name in allowed and name in numbers:
            prog.append(ins(JEQ_K, numbers[name], jt=0, jf=len(block)))
            prog.extend(block)
    for name in sorted(allowed):
        if name in special or name not in numbers:
            continue
        prog.append(ins(JEQ_K, numbers[name], jt=0, jf=1))
        prog.append(ins(RET_K, RET_ALLOW))
    prog.append(ret_errno(errno.EPERM))      # SystemCallErrorNumber=EPERM
    return prog


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


def main() -> None:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    if platform.machine() != "x86_64":
        print("seccomp_exec: only x86_64 is supported", file=sys.stderr)
        sys.exit(97)
    numbers = syscall_numbers()
    if not numbers:
        print("seccomp_exec: no <asm/unistd_64.h> (apt-get install linux-libc-dev)", file=sys.stderr)
        sys.exit(97)
    allowed = {line.strip() for line in open(sys.argv[1]) if line.strip()}
    families = [int(getattr(socket, name)) for name in sys.argv[2].split(",") if name]
    program = build(allowed, families, numbers)
    if len(program) > 4096:
        print("seccomp_exec: filter too long (%d)" % len(program), file=sys.stderr)
        sys.exit(97)
    arr = (SockFilter * len(program))(*[SockFilter(c, jt, jf, k) for c, jt, jf, k in program])
    fprog = SockFprog(len(program), arr)
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        print("seccomp_exec: prctl: %s" % os.strerror(ctypes.get_errno()), file=sys.stderr)
        sys.exit(97)
    os.execv(sys.argv[4], sys.argv[4:])


if __name__ == "__main__":
    main()
