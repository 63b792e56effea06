import NIOCore

/// Flushes every client that has output, once per event-loop tick, after the loop has processed
/// all the reads of that tick (Redis does the same in `beforeSleep`): a publish burst read in one
/// tick reaches each subscriber as one write.
final class OutputFlusher {
    private let eventLoop: EventLoop
    private var queued: [ClientConnection] = []
    private var spare: [ClientConnection] = []
    private var isScheduled = false

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    func schedule(_ client: ClientConnection) {
        if !client.isQueuedForFlush {
            client.isQueuedForFlush = true
            queued.append(client)
        }
        if !isScheduled {
            isScheduled = true
            eventLoop.assumeIsolatedUnsafeUnchecked().execute { self.flushAll() }
        }
    }

    private func flushAll() {
        isScheduled = false
        swap(&queued, &spare)
        for client in spare {
            client.isQueuedForFlush = false
            client.flush()
        }
        spare.removeAll(keepingCapacity: true)
    }
}
