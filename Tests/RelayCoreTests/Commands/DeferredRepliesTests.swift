import NIOCore
import Testing
@testable import RelayCore

@Suite struct DeferredRepliesTests {
    private func drain(_ d: inout DeferredReplies) -> String {
        var out = ""
        d.drain { out += String(buffer: $0) }
        return out
    }

    /// Replies filled out of order still reach the client in request order, and what was queued
    /// behind a pending reply waits for it.
    @Test func keepsRequestOrder() {
        var d = DeferredReplies()
        #expect(!d.isActive)
        let first = d.reserve()
        "A".utf8CString.dropLast().withUnsafeBytes { d.append($0) }
        let second = d.reserve()
        "B".utf8CString.dropLast().withUnsafeBytes { d.append($0) }
        #expect(d.heldBytes == 2)
        second.fill(buffer(":2\r\n"))
        #expect(drain(&d) == "")
        first.fill(buffer(":1\r\n"))
        #expect(drain(&d) == ":1\r\nA:2\r\nB")
        #expect(!d.isActive && d.heldBytes == 0)
    }

    @Test func barriersCarryNoBytes() {
        var d = DeferredReplies()
        let barrier = d.reserve()
        "confirmation".utf8CString.dropLast().withUnsafeBytes { d.append($0) }
        #expect(d.pendingSlots == 1)
        barrier.fill()
        #expect(drain(&d) == "confirmation")
        #expect(d.pendingSlots == 0)
    }
}
