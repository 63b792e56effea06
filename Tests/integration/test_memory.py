"""Memory the relay holds per connection: closed connections leave nothing behind, idle ones
cost a few KiB. Measured on the relay process's VmRSS."""
import socket
import time


def _churn(path: str, n: int) -> None:
    for _ in range(n):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"SUBSCRIBE a b\r\nPSUBSCRIBE c*\r\nPING\r\n")
            got = b""
            while got.count(b"\r\n") < 11:
                got += s.recv(4096)


def test_closed_connections_are_freed(relay_factory):
    relay = relay_factory()
    _churn(relay.socket, 2000)  # warm up allocator pools
    time.sleep(0.3)
    before = relay.rss_kib()
    _churn(relay.socket, 10000)
    time.sleep(0.3)
    after = relay.rss_kib()
    growth = after - before
    print(f"relay RSS {before} KiB -> {after} KiB after 10000 subscribe/close cycles ({growth * 1024 / 10000:.0f} bytes each)")
    # A leaked connection (handler <-> context cycle) cost ~650 bytes: 10 000 of them ~6 MB.
    assert growth < 2048, f"RSS grew by {growth} KiB over 10000 closed connections"
    info = _info(relay.socket)
    assert "connected_clients:1\r\n" in info
    assert "pubsub_channels:0\r\n" in info and "pubsub_patterns:0\r\n" in info


def _info(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"INFO\r\n")
        data = b""
        while not data.endswith(b"\r\n\r\n") or data.count(b"\r\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            header, _, rest = data.partition(b"\r\n")
            if header.startswith(b"$") and len(rest) >= int(header[1:]) + 2:
                break
        return data.decode()
