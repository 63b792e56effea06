import DequeModule

/// When the oldest unanswered request on an upstream link was sent, to declare a hung peer dead
/// (a SIGSTOPped Redis keeps its sockets open and sends nothing) when it stays silent that long. Requests are answered in
/// order, so a FIFO of send times is enough. Times are monotonic nanoseconds, injected.
public struct ReplyDeadline: Sendable {
    private var sentAt: Deque<UInt64> = []
    /// No request counts as sent before this (see `resume`).
    private var notBefore: UInt64 = 0

    public init() {}

    public mutating func sent(at now: UInt64) {
        sentAt.append(now)
    }

    public mutating func answered() {
        _ = sentAt.popFirst()
    }

    public mutating func reset() {
        sentAt.removeAll()
    }

    public var outstanding: Int { sentAt.count }

    /// No request counts as sent before `now`: the peer was heard from then (any bytes — a peer
    /// busy sending is not hung, even if the relay is slow to read its answers), or the relay
    /// itself was not running (a long burst of work, SIGSTOP) and answers may sit unread.
    public mutating func resume(at now: UInt64) {
        notBefore = max(notBefore, now)
    }

    /// Whether the oldest unanswered request is older than `timeout`.
    public func isOverdue(now: UInt64, timeoutNanoseconds: UInt64) -> Bool {
        guard let first = sentAt.first else { return false }
        let oldest = max(first, notBefore)
        return now >= oldest && now - oldest > timeoutNanoseconds
    }
}
