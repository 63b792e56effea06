/// Capped exponential backoff with "equal jitter": the n-th wait after a failure is between half
/// and all of `min(cap, base · 2ⁿ)`. Half a step keeps a fleet from reconnecting in lockstep after
/// a Redis restart; the other half keeps the wait from collapsing to zero.
///
/// A connection that comes up counts as a success only once it has stayed up for
/// `healthyNanoseconds`: a server that accepts the handshake and then fails the link at once
/// (an ACL refusing every subscription, a proxy cutting new connections) gets the growing waits,
/// not a new connection every few milliseconds.
public struct ReconnectBackoff: Sendable, Equatable {
    public let baseMilliseconds: Int
    public let capMilliseconds: Int
    /// How long a connection must last before the next failure starts from the base again.
    public let healthyNanoseconds: UInt64
    /// Failed attempts since the last healthy connection.
    public private(set) var failures = 0
    /// When the current connection came up (uptime nanoseconds); nil while down.
    private var connectedAt: UInt64?

    public init(baseMilliseconds: Int = 50, capMilliseconds: Int, healthyNanoseconds: UInt64 = 10_000_000_000) {
        precondition(baseMilliseconds > 0 && capMilliseconds >= baseMilliseconds,
                     "backoff base \(baseMilliseconds) ms, cap \(capMilliseconds) ms")
        self.baseMilliseconds = baseMilliseconds
        self.capMilliseconds = capMilliseconds
        self.healthyNanoseconds = healthyNanoseconds
    }

    /// The step before jitter for the current failure count.
    public var currentStepMilliseconds: Int {
        var step = baseMilliseconds
        var n = failures
        while n > 0 && step < capMilliseconds {
            step *= 2
            n -= 1
        }
        return min(step, capMilliseconds)
    }

    /// Records a failed attempt, or the loss of a connection, at `now`, and returns how long to
    /// wait before the next attempt. `unit` yields a random number in 0..<1 (injected for tests).
    public mutating func nextDelayMilliseconds(now: UInt64, unit: () -> Double) -> Int {
        if let since = connectedAt, now >= since, now - since >= healthyNanoseconds { failures = 0 }
        connectedAt = nil
        let step = currentStepMilliseconds
        failures += 1
        let half = step / 2
        return half + Int(Double(step - half) * min(max(unit(), 0), 1))
    }

    /// A connection came up at `now` (handshake done); it resets the backoff if it lasts.
    public mutating func connected(at now: UInt64) {
        connectedAt = now
    }
}
