import DequeModule

/// When the oldest unanswered request on an upstream link was sent, to declare a hung peer dead
/// (a SIGSTOPped Redis keeps its sockets open and answers nothing). Requests are answered in
/// order, so a FIFO of send times is enough. Times are monotonic nanoseconds, injected.
public struct ReplyDeadline: Sendable {
    private var sentAt: Deque<UInt64> = []

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

    /// Whether the oldest unanswered request is older than `timeout`.
    public func isOverdue(now: UInt64, timeoutNanoseconds: UInt64) -> Bool {
        guard let oldest = sentAt.first else { return false }
        return now >= oldest && now - oldest > timeoutNanoseconds
    }
}
