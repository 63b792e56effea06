import NIOCore
import Testing
@testable import RelayCore

/// `-MOVED` and `-ASK` errors read into where to go instead.
@Suite struct ClusterRedirectTests {
    private func parse(_ line: String, replyingHost: String = "10.0.0.5") -> ClusterRedirect? {
        ClusterRedirect.parse(Array(line.utf8), replyingHost: replyingHost)
    }

    /// The first three as a Redis 7.0.15 cluster sent them (`SET bar 1` to a node that does not
    /// serve slot 5061), with `cluster-preferred-endpoint-type` ip, hostname and unknown-endpoint.
    @Test func realRedirects() {
        #expect(parse("-MOVED 5061 127.0.0.1:30001\r\n") == ClusterRedirect(kind: .moved, slot: 5061, host: "127.0.0.1", port: 30001))
        #expect(parse("-MOVED 5061 node1.example:30001\r\n") == ClusterRedirect(kind: .moved, slot: 5061, host: "node1.example", port: 30001))
        #expect(parse("-MOVED 5061 :30001\r\n") == ClusterRedirect(kind: .moved, slot: 5061, host: "10.0.0.5", port: 30001))
        #expect(parse("MOVED 12182 ?:30003") == ClusterRedirect(kind: .moved, slot: 12182, host: "10.0.0.5", port: 30003))
        #expect(parse("ASK 3999 127.0.0.1:6381") == ClusterRedirect(kind: .ask, slot: 3999, host: "127.0.0.1", port: 6381))
    }

    @Test func ipv6WithAndWithoutBrackets() {
        #expect(parse("MOVED 3999 [::1]:6381") == ClusterRedirect(kind: .moved, slot: 3999, host: "::1", port: 6381))
        #expect(parse("-ASK 0 fe80::1:6381\r\n") == ClusterRedirect(kind: .ask, slot: 0, host: "fe80::1", port: 6381))
        #expect(parse("MOVED 16383 [2001:db8::7]:7000") == ClusterRedirect(kind: .moved, slot: 16383, host: "2001:db8::7", port: 7000))
    }

    @Test func anyCollectionOfBytes() {
        let buffer = ByteBuffer(string: "MOVED 1 h:2")
        #expect(ClusterRedirect.parse(buffer.readableBytesView, replyingHost: "x")?.host == "h")
    }

    @Test func otherErrorsAreNotRedirects() {
        for line in ["", "-", "ERR unknown command", "-CLUSTERDOWN Hash slot not served", "MOVED", "MOVED 3999",
                     "MOVED 3999 127.0.0.1", "MOVED x 127.0.0.1:6381", "MOVED 16384 127.0.0.1:6381",
                     "MOVED -1 127.0.0.1:6381", "MOVED 1 127.0.0.1:0", "MOVED 1 127.0.0.1:65536", "MOVED 1 h:p",
                     "MOVED 1 [::1:6381", "moved 1 h:6381", "MOVED 1 h:6381 extra", "MOVED  1 h:6381", "TRYAGAIN x"] {
            #expect(parse(line) == nil, "\(line)")
        }
    }
}
