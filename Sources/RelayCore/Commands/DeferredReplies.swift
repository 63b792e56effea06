import DequeModule
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A place in one client's output stream for a reply that comes later from upstream: PUBLISH's
/// integer, a fleet-wide PUBSUB answer, or — with no bytes — the upstream confirmation a local
/// SUBSCRIBE must wait for. Filled once, by whoever holds it.
public final class ReplySlot {
    public private(set) var isFilled = false
    fileprivate var bytes: ByteBuffer?
    /// A reply already written that the client sees only if upstream agrees: SUBSCRIBE's
    /// confirmations, replaced by Redis's error if Redis refuses the subscription.
    public var heldReply: ByteBuffer?

    /// Fills still to come before the slot is filled (several upstream links answering parts
    /// of one command: a Redis Cluster's masters); the first non-nil one is the reply.
    private var fillsExpected = 1
    private var partReply: ByteBuffer?

    public init() {}

    /// The slot is filled by the `n`-th call of `fill` (each upstream part answers once).
    public func expectFills(_ n: Int) {
        precondition(n >= 1 && !isFilled, "reply slot expecting \(n) fills")
        fillsExpected = n
    }

    /// The upstream answered; `bytes` is the client's reply (nil: a barrier is lifted, and the
    /// held reply, if any, goes out).
    public func fill(_ bytes: ByteBuffer? = nil) {
        precondition(!isFilled, "reply slot filled twice")
        if fillsExpected > 1 {
            fillsExpected -= 1
            if partReply == nil { partReply = bytes }
            return
        }
        isFilled = true
        self.bytes = partReply ?? bytes ?? heldReply
        partReply = nil
        heldReply = nil
    }
}

@available(*, unavailable)
extension ReplySlot: Sendable {}

/// One client's output while some of it waits for upstream: everything queued after a pending
/// slot — later replies, delivered messages — is held behind it, so that the client reads its
/// replies in request order even though upstream answers arrive later and out of order across
/// links. Pipelined PUBLISHes therefore cost one upstream round trip in total, not one each.
///
/// A PUBLISH whose client receives the message itself (RESP3) is the exception: Redis writes the
/// client's copies before the PUBLISH's reply, so its slot lets messages pass in front of it until
/// those copies (its `echoes`) have come back from upstream.
public struct DeferredReplies {
    struct Entry {
        let slot: ReplySlot
        var after: ByteBuffer?
        /// The copies of its own message this PUBLISH's client has yet to receive.
        var echoes: [ByteBuffer] = []
    }

    private var slots: Deque<Entry> = []
    /// Slots still waiting for echoes (a message's fast path skips the search when zero).
    private var echoing = 0
    /// Bytes held behind pending slots (counted against the client's output limit).
    public private(set) var heldBytes = 0

    public init() {}

    /// Whether output must go through `append` (a slot is pending).
    public var isActive: Bool { !slots.isEmpty }
    public var pendingSlots: Int { slots.count }

    /// A new slot at the current end of the client's output.
    /// `echoes`: the frames of a PUBLISH's own message this client receives (see above).
    public mutating func reserve(echoes: [ByteBuffer] = []) -> ReplySlot {
        let slot = ReplySlot()
        slots.append(Entry(slot: slot, echoes: echoes))
        if !echoes.isEmpty { echoing += 1 }
        return slot
    }

    /// Output that must follow the pending slots.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(!slots.isEmpty, "append without a pending slot")
        hold(bytes, after: slots.count - 1)
    }

    /// A delivered message: held in order like any output, except in front of a PUBLISH still
    /// waiting for its echoes. Returns false when it goes before every pending slot: the caller
    /// writes it out directly.
    public mutating func appendMessage(_ bytes: UnsafeRawBufferPointer) -> Bool {
        precondition(!slots.isEmpty, "append without a pending slot")
        guard echoing > 0, let e = slots.firstIndex(where: { !$0.echoes.isEmpty && !$0.slot.isFilled }) else {
            hold(bytes, after: slots.count - 1)
            return true
        }
        if let i = slots[e].echoes.firstIndex(where: { $0.withUnsafeReadableBytes { Self.equal($0, bytes) } }) {
            slots[e].echoes.remove(at: i)
            if slots[e].echoes.isEmpty { echoing -= 1 }
        }
        if e == 0 { return false }
        hold(bytes, after: e - 1)
        return true
    }

    private mutating func hold(_ bytes: UnsafeRawBufferPointer, after index: Int) {
        if slots[index].after == nil {
            slots[index].after = ByteBufferAllocator().buffer(capacity: max(bytes.count, 256))
        }
        slots[index].after!.writeBytes(bytes)
        heldBytes += bytes.count
    }

    private static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    /// Hands over, in order, the output of every leading slot that is filled; stops at the first
    /// that is not. `emit` receives each buffer to write.
    public mutating func drain(_ emit: (ByteBuffer) -> Void) {
        while let first = slots.first, first.slot.isFilled {
            slots.removeFirst()
            if !first.echoes.isEmpty { echoing -= 1 }
            if let reply = first.slot.bytes, reply.readableBytes > 0 { emit(reply) }
            if let after = first.after {
                heldBytes -= after.readableBytes
                emit(after)
            }
        }
    }

    /// The client is gone: drops everything held.
    public mutating func removeAll() {
        slots.removeAll()
        echoing = 0
        heldBytes = 0
    }
}
