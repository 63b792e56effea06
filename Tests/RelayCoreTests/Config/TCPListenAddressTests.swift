import Testing
@testable import RelayCore

@Suite struct TCPListenAddressTests {
    @Test func readsIPv4AndBracketedIPv6() throws {
        let a = try TCPListenAddress.parse("127.0.0.1:6380")
        #expect(a == TCPListenAddress(host: "127.0.0.1", port: 6380, family: .ipv4, isLoopback: true))
        #expect(a.description == "127.0.0.1:6380")
        let b = try TCPListenAddress.parse("[::1]:6380")
        #expect(b == TCPListenAddress(host: "::1", port: 6380, family: .ipv6, isLoopback: true))
        #expect(b.description == "[::1]:6380")
        #expect(try TCPListenAddress.parse("127.1.2.3:1").isLoopback)
        #expect(try TCPListenAddress.parse("[::ffff:127.0.0.1]:65535").isLoopback)
    }

    @Test func tellsLoopbackFromReachableAddresses() throws {
        for text in ["0.0.0.0:6380", "10.0.0.5:6380", "192.168.1.1:6380", "128.0.0.1:6380", "[::]:6380",
                     "[::2]:6380", "[fe80::1]:6380", "[::ffff:10.0.0.1]:6380", "[0:0:0:0:0:1:0:1]:6380"] {
            #expect(try !TCPListenAddress.parse(text).isLoopback, "\(text)")
        }
        #expect(try TCPListenAddress.parse("[0:0:0:0:0:0:0:1]:6380").isLoopback)
    }

    @Test func refusesWhatIsNotAnIPAndAPort() {
        for text in ["127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+80", "127.0.0.1:80x",
                     ":6380", "localhost:6380", "redis.internal:6380", "::1:6380", "[::1]6380", "[::1]", "[::1:6380",
                     "[127.0.0.1]:6380", "256.0.0.1:6380", "127.0.0.1:6380 ", " 127.0.0.1:6380", "unix:///x"] {
            #expect(throws: ConfigError.self, "\(text)") { try TCPListenAddress.parse(text) }
        }
    }

    @Test func errorNamesTheVariableAndWhatIsAccepted() {
        do {
            _ = try TCPListenAddress.parse("localhost:6380")
            Issue.record("accepted")
        } catch {
            #expect(error.variable == "RELAY_TCP_ADDR")
            #expect(error.message.contains("127.0.0.1:6380 or [::1]:6380"))
        }
    }

    @Test func fromSocketAddressBytes() {
        #expect(TCPListenAddress.fromSocketAddress(bytes: [127, 0, 0, 1], port: 6380)
            == TCPListenAddress(host: "127.0.0.1", port: 6380, family: .ipv4, isLoopback: true))
        #expect(TCPListenAddress.fromSocketAddress(bytes: [0, 0, 0, 0], port: 1)?.isLoopback == false)
        #expect(TCPListenAddress.fromSocketAddress(bytes: [UInt8](repeating: 0, count: 15) + [1], port: 7)
            == TCPListenAddress(host: "::1", port: 7, family: .ipv6, isLoopback: true))
        #expect(TCPListenAddress.fromSocketAddress(bytes: [UInt8](repeating: 0, count: 16), port: 7)?.isLoopback == false)
        #expect(TCPListenAddress.fromSocketAddress(bytes: [1, 2], port: 7) == nil)
    }
}
