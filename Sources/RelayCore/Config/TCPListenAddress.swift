#if canImport(Glibc)
import Glibc
#endif

/// `RELAY_TCP_ADDR`: the address of the optional TCP listener, an IP literal and a port.
/// Only IP literals are taken (no host names): whether the listener is reachable from other
/// hosts must be decided from the text itself, before anything is resolved or bound.
public struct TCPListenAddress: Sendable, Equatable, CustomStringConvertible {
    public enum Family: Sendable, Equatable { case ipv4, ipv6 }

    /// The address without brackets, as `inet_pton` reads it (`127.0.0.1`, `::1`).
    public let host: String
    public let port: Int
    public let family: Family
    /// 127.0.0.0/8, `::1`, or an IPv4-mapped loopback (`::ffff:127.0.0.1`): reachable from
    /// this host only.
    public let isLoopback: Bool

    public init(host: String, port: Int, family: Family, isLoopback: Bool) {
        self.host = host
        self.port = port
        self.family = family
        self.isLoopback = isLoopback
    }

    /// `127.0.0.1:6380`, `[::1]:6380`: the form `parse` reads.
    public var description: String {
        family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    static let accepted = "expected an IP address and a port, 127.0.0.1:6380 or [::1]:6380, or empty to disable"

    /// Reads `host:port` (IPv4) or `[v6]:port`; `variable` is named in the error.
    public static func parse(_ text: String, variable: String = "RELAY_TCP_ADDR") throws(ConfigError) -> TCPListenAddress {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ConfigError(variable, "'\(text)' is not [IPv6 address]:port; \(accepted)")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ConfigError(variable, "'\(text)' has no port; \(accepted)")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                throw ConfigError(variable, "'\(text)': an IPv6 address must be in brackets, e.g. [::1]:6380; \(accepted)")
            }
        }
        guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portText), port >= 1, port <= 65535 else {
            throw ConfigError(variable, "'\(portText)' is not a port from 1 to 65535; \(accepted)")
        }
        if text.hasPrefix("[") {
            guard let bytes = ipv6Bytes(String(host)) else {
                throw ConfigError(variable, "'\(host)' is not an IPv6 address; \(accepted)")
            }
            let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
            let loopback = bytes == [UInt8](repeating: 0, count: 15) + [1] || (mapped && bytes[12] == 127)
            return TCPListenAddress(host: String(host), port: port, family: .ipv6, isLoopback: loopback)
        }
        guard let bytes = ipv4Bytes(String(host)) else {
            throw ConfigError(variable, "'\(host)' is not an IPv4 address (host names are not taken: loopback must be decided without resolving); \(accepted)")
        }
        return TCPListenAddress(host: String(host), port: port, family: .ipv4, isLoopback: bytes[0] == 127)
    }

    static func ipv4Bytes(_ text: String) -> [UInt8]? {
        var addr = in_addr()
        guard inet_pton(AF_INET, text, &addr) == 1 else { return nil }
        return withUnsafeBytes(of: addr) { Array($0) }
    }

    static func ipv6Bytes(_ text: String) -> [UInt8]? {
        var addr = in6_addr()
        guard inet_pton(AF_INET6, text, &addr) == 1 else { return nil }
        return withUnsafeBytes(of: addr) { Array($0) }
    }
}

extension TCPListenAddress {
    /// The address of a socket the relay was given (socket activation), from the raw address
    /// bytes `getsockname` returned: 4 for IPv4, 16 for IPv6. Nil for any other length.
    public static func fromSocketAddress(bytes: [UInt8], port: Int) -> TCPListenAddress? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch bytes.count {
        case 4:
            var addr = in_addr()
            withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: bytes) }
            guard inet_ntop(AF_INET, &addr, &text, socklen_t(text.count)) != nil else { return nil }
            return TCPListenAddress(host: String(cString: text), port: port, family: .ipv4, isLoopback: bytes[0] == 127)
        case 16:
            var addr = in6_addr()
            withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: bytes) }
            guard inet_ntop(AF_INET6, &addr, &text, socklen_t(text.count)) != nil else { return nil }
            let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
            let loopback = bytes == [UInt8](repeating: 0, count: 15) + [1] || (mapped && bytes[12] == 127)
            return TCPListenAddress(host: String(cString: text), port: port, family: .ipv6, isLoopback: loopback)
        default:
            return nil
        }
    }
}
