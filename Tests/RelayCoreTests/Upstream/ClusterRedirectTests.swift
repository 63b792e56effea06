import NIOCore
import Testing
@testable import RelayCore

/// Which cluster errors send a command again once the slot map is asked for anew.
@Suite struct ClusterRedirectTests {
    private func error(_ line: String) -> UpstreamReply { .error(ByteBuffer(string: line)) }

    /// The first two as a Redis 7.0.15 cluster sent them (`SET bar 1` to a node that does not
    /// serve slot 5061; an SPUBLISH during a failover).
    @Test func redirectsAndTransientErrorsAskToRetry() {
        for line in ["MOVED 5061 127.0.0.1:30001", "CLUSTERDOWN The cluster is down", "ASK 3999 127.0.0.1:6381",
                     "TRYAGAIN Multiple keys request during rehashing of slot"] {
            #expect(ClusterRedirect.asksToRetry(error(line)), "\(line)")
        }
    }

    @Test func otherRepliesDoNot() {
        for line in ["ERR unknown command", "NOPERM this user has no permissions", "MOVED", "moved 1 h:6381", "READONLY x"] {
            #expect(!ClusterRedirect.asksToRetry(error(line)), "\(line)")
        }
        #expect(!ClusterRedirect.asksToRetry(.status(ByteBuffer(string: "MOVED 1 h:1"))))
        #expect(!ClusterRedirect.asksToRetry(.integer(1)))
    }
}
