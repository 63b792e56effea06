/// Capped exponential backoff with "equal jitter": the n-th wait after a failure is between half
/// and all of `min(cap, base · 2ⁿ)`. Half a step keeps a fleet from reconnecting in lockstep after
/// a Redis restart; the other half keeps the wait from collapsing to zero.
public struct ReconnectBackoff: Sendable, Equatable {
    public let baseMilliseconds: Int
    public let capMilliseconds: Int
    /// Failed attempts since the last success.
    public private(set) var failures = 0

    public init(baseMilliseconds: Int = 50, capMilliseconds: Int) {
        precondition(baseMilliseconds > 0 && capMilliseconds >= baseMilliseconds,
                     "backoff base \(baseMilliseconds) ms, cap \(capMilliseconds) ms")
        self.baseMilliseconds = baseMilliseconds
        self.capMilliseconds = capMilliseconds
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

    /// Records a failed attempt and returns how long to wait before the next one.
    /// `unit` yields a random number in 0..<1 (injected for tests).
    public mutating func nextDelayMilliseconds(unit: () -> Double) -> Int {
        let step = currentStepMilliseconds
        failures += 1
        let half = step / 2
        return half + Int(Double(step - half) * min(max(unit(), 0), 1))
    }

    /// A connection succeeded: the next failure starts from the base again.
    public mutating func reset() {
        failures = 0
    }
}
