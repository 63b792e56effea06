#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// sd_notify(3) without libsystemd: datagrams to `NOTIFY_SOCKET` (a path or an `@abstract`
/// name). Absent `NOTIFY_SOCKET`, there is no notifier and nothing is sent.
///
/// Immutable after init, and `sendto` on a datagram socket is thread-safe: shared freely.
public final class SystemdNotifier: @unchecked Sendable {
    private let fd: Int32
    private var address = sockaddr_un()
    private let addressLength: socklen_t
    /// Half of `WATCHDOG_USEC`, when the watchdog is on for this process.
    public let watchdogInterval: TimeAmount?

    public static func fromEnvironment(_ env: [String: String]) -> SystemdNotifier? {
        guard let path = env["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        var interval: TimeAmount?
        if let usec = env["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0 {
            let pidMatches = env["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
            if pidMatches { interval = .microseconds(usec / 2) }
        }
        return SystemdNotifier(path: path, watchdogInterval: interval)
    }

    private init?(path: String, watchdogInterval: TimeAmount?) {
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        self.fd = fd
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            if !abstract { raw[bytes.count] = 0 }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        self.addressLength = socklen_t(pathOffset + bytes.count + (abstract ? 0 : 1))
        self.watchdogInterval = watchdogInterval
    }

    deinit {
        close(fd)
    }

    /// Sends `KEY=value` lines as one datagram.
    public func send(_ fields: String...) {
        let message = Array(fields.joined(separator: "\n").utf8)
        var addr = address
        _ = message.withUnsafeBytes { buf in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), $0, addressLength)
                }
            }
        }
    }

    /// `MONOTONIC_USEC=` for `RELOADING=1`, as systemd's notify-reload protocol wants it.
    public static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
