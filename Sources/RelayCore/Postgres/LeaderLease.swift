import NIOCore

/// The Postgres bridge's leadership (README, "The Postgres bridge"): exactly one relay of the fleet LISTENs
/// and publishes each NOTIFY to the backplane. The leader holds a lease in Redis
/// (`SET key id NX PX ttl`), renews it every third of the TTL with a compare-and-extend script,
/// and steps down as soon as a renewal fails or is not answered within a third of the TTL — well
/// before the lease can expire and another relay take it. Followers try to take it at the same
/// pace, so a dead leader is replaced within the TTL plus one attempt.
///
/// A pure state machine (time injected as monotonic nanoseconds): the link sends the commands.
public struct LeaderLease: Sendable {
    public enum Action: Equatable, Sendable {
        case none
        /// Send `acquireCommand`.
        case acquire
        /// Send `renewCommand`.
        case renew
        /// Stop LISTENing now: the lease could not be renewed (or Redis is gone).
        case stepDown(reason: String)
    }

    public let key: String
    public let holder: String
    public let ttlMilliseconds: Int
    public private(set) var isLeader = false
    /// Leadership changes (both ways) since start.
    public private(set) var changes = 0
    private var inFlightSince: UInt64?
    private var lastAttempt: UInt64?
    /// When the last acquire or renewal that Redis confirmed was sent: the lease is ours until
    /// this plus the TTL, by Redis's clock at the latest.
    private var confirmedSentAt: UInt64 = 0

    public init(namespace: String, holder: String, ttlMilliseconds: Int) {
        precondition(ttlMilliseconds >= 300, "lease TTL \(ttlMilliseconds) ms")
        self.key = "\(namespace):pg-leader"
        self.holder = holder
        self.ttlMilliseconds = ttlMilliseconds
    }

    /// Renewals (and a follower's attempts) are sent this often.
    public var periodNanoseconds: UInt64 { UInt64(min(1000, ttlMilliseconds / 3)) * 1_000_000 }

    /// Whether this relay may act as the leader at `now`: it is, and its lease has at least one
    /// renewal period left. After a pause (SIGSTOP, a stalled VM) longer than that, it has not,
    /// even before a renewal says so — another relay may already lead.
    public func holds(now: UInt64) -> Bool {
        isLeader && now < confirmedSentAt + UInt64(ttlMilliseconds) * 1_000_000 - periodNanoseconds
    }

    /// A leader that finds its lease too old to trust steps down at once.
    public mutating func checkExpiry(now: UInt64) -> Action {
        isLeader && !holds(now: now) ? stepDown("lease too old to trust (the relay was paused or Redis is slow)") : .none
    }

    /// Called periodically while the backplane is up.
    public mutating func tick(now: UInt64) -> Action {
        if case .stepDown(let reason) = checkExpiry(now: now) { return .stepDown(reason: reason) }
        if let since = inFlightSince {
            // An unanswered request: a leader cannot tell whether it still holds the lease.
            if isLeader && now - since > periodNanoseconds {
                return stepDown("lease renewal not answered within \(periodNanoseconds / 1_000_000) ms")
            }
            return .none
        }
        if let last = lastAttempt, now - last < periodNanoseconds { return .none }
        lastAttempt = now
        inFlightSince = now
        return isLeader ? .renew : .acquire
    }

    /// The answer to `acquireCommand`: true when Redis said OK.
    public mutating func acquired(_ ok: Bool) -> Bool {
        let sentAt = inFlightSince ?? 0
        inFlightSince = nil
        guard ok, !isLeader else { return false }
        isLeader = true
        confirmedSentAt = sentAt
        changes += 1
        return true
    }

    /// The answer to `renewCommand`: true when the lease was still ours and is extended.
    public mutating func renewed(_ ok: Bool) -> Action {
        let sentAt = inFlightSince ?? 0
        inFlightSince = nil
        guard isLeader else { return .none }
        guard ok else { return stepDown("lease taken by another relay or expired") }
        confirmedSentAt = sentAt
        return .none
    }

    /// The backplane went away (or a request failed): a leader steps down at once.
    public mutating func backplaneLost() -> Action {
        inFlightSince = nil
        lastAttempt = nil
        return isLeader ? stepDown("redis backplane lost") : .none
    }

    private mutating func stepDown(_ reason: String) -> Action {
        isLeader = false
        inFlightSince = nil
        lastAttempt = nil
        changes += 1
        return .stepDown(reason: reason)
    }

    // MARK: Commands

    public var acquireCommand: [ByteBuffer] {
        ["SET", key, holder, "NX", "PX", String(ttlMilliseconds)].map { ByteBuffer(string: $0) }
    }

    /// Extends the lease only if this relay still holds it: 1 if extended, 0 if not.
    public var renewCommand: [ByteBuffer] {
        ["EVAL", Self.renewScript, "1", key, holder, String(ttlMilliseconds)].map { ByteBuffer(string: $0) }
    }

    /// A clean stop hands the lease over at once instead of after its TTL.
    public var releaseCommand: [ByteBuffer] {
        ["EVAL", Self.releaseScript, "1", key, holder].map { ByteBuffer(string: $0) }
    }

    static let renewScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end
        """
    static let releaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
        """
}
