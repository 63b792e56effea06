import DequeModule
import NIOCore

/// A place in one client's output stream for a reply that comes later from upstream: PUBLISH's
/// integer, a fleet-wide PUBSUB answer, or — with no bytes — the upstream confirmation a local
/// SUBSCRIBE must wait for. Filled once, by whoever holds it.
public final class ReplySlot {
    public private(set) var isFilled = false
    fileprivate var bytes: ByteBuffer?
    /// A reply already written that the client sees only if upstream agrees: SUBSCRIBE's
    /// confirmations, replaced by Redis's error if Redis refuses the subscription.
    public var heldReply: ByteBuffer?

    public init() {}

    /// The upstream answered; `bytes` is the client's reply (nil: a barrier is lifted, and the
    /// held reply, if any, goes out).
    public func fill(_ bytes: ByteBuffer? = nil) {
        precondition(!isFilled, "reply slot filled twice")
        isFilled = true
        self.bytes = bytes ?? heldReply
        heldReply = nil
    }
}

@available(*, unavailable)
extension ReplySlot: Sendable {}

/// One client's output while some of it waits for upstream: everything queued after a pending
/// slot — later replies, delivered messages — is held behind it, so that the client reads its
/// replies in request order even though upstream answers arrive later and out of order across
/// links. Pipelined PUBLISHes therefore cost one upstream round trip in total, not one each.
public struct DeferredReplies {
    private var slots: Deque<(slot: ReplySlot, after: ByteBuffer?)> = []
    /// Bytes held behind pending slots (counted against the client's output limit).
    public private(set) var heldBytes = 0

    public init() {}

    /// Whether output must go through `append` (a slot is pending).
    public var isActive: Bool { !slots.isEmpty }
    public var pendingSlots: Int { slots.count }

    /// A new slot at the current end of the client's output.
    public mutating func reserve() -> ReplySlot {
        let slot = ReplySlot()
        slots.append((slot, nil))
        return slot
    }

    /// Output that must follow the pending slots.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(!slots.isEmpty, "append without a pending slot")
        let last = slots.count - 1
        if slots[last].after == nil {
            slots[last].after = ByteBufferAllocator().buffer(capacity: max(bytes.count, 256))
        }
        slots[last].after!.writeBytes(bytes)
        heldBytes += bytes.count
    }

    /// Hands over, in order, the output of every leading slot that is filled; stops at the first
    /// that is not. `emit` receives each buffer to write.
    public mutating func drain(_ emit: (ByteBuffer) -> Void) {
        while let first = slots.first, first.slot.isFilled {
            slots.removeFirst()
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
        heldBytes = 0
    }
}
