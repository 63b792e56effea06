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

    /// A PUBLISH whose client receives its own message: messages pass in front of its reply until
    /// its echo has come, later ones wait behind it — in front of the next PUBLISH still waiting
    /// for its echo — and the rest behind every reply (upstream sends them in Redis's order).
    @Test func echoesPassInFrontOfTheirPublishReply() {
        var d = DeferredReplies()
        var direct = ""
        func message(_ text: String) {
            text.utf8CString.dropLast().withUnsafeBytes { if !d.appendMessage($0) { direct += text } }
        }
        let first = d.reserve(echoes: [buffer("echo-a")])
        let second = d.reserve(echoes: [buffer("echo-b")])
        message("other-1")          // published by someone else before the first PUBLISH
        message("echo-a")
        message("other-2")          // after the first PUBLISH ran: behind its reply
        message("echo-b")
        message("other-3")          // after the second
        #expect(direct == "other-1echo-a")
        first.fill(buffer(":1\r\n"))
        #expect(drain(&d) == ":1\r\nother-2echo-b")
        second.fill(buffer(":2\r\n"))
        #expect(drain(&d) == ":2\r\nother-3")
        #expect(!d.isActive && d.heldBytes == 0)
    }
}
