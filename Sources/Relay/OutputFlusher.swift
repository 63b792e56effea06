import NIOCore
import RelayCore

/// Flushes every client that has output, once per event-loop tick, after the loop has processed
/// all the reads of that tick (Redis does the same in `beforeSleep`): a publish burst read in one
/// tick reaches each subscriber as one write.
final class OutputFlusher {
    private let eventLoop: EventLoop
    private var queued: [ClientConnection] = []
    private var spare: [ClientConnection] = []
    private var isScheduled = false
    /// When the first output of the current tick was queued.
    private var tickStarted = NIODeadline.now()
    private let stats: RelayStats
    private var publishedAtLastFlush = 0
    /// Observes, once per tick that carried publishes, the time from handling the first of them
    /// to handing the tick's writes to the kernel (the delivery-latency histogram).
    var recordDeliveryLatency: ((TimeAmount) -> Void)?

    init(eventLoop: EventLoop, stats: RelayStats) {
        self.eventLoop = eventLoop
        self.stats = stats
    }

    func schedule(_ client: ClientConnection) {
        if !client.isQueuedForFlush {
            client.isQueuedForFlush = true
            queued.append(client)
        }
        if !isScheduled {
            isScheduled = true
            tickStarted = .now()
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
        let taken = stats.counts.messagesPublished + stats.counts.messagesFromRedis + stats.counts.messagesFromPostgres
        if taken != publishedAtLastFlush {
            publishedAtLastFlush = taken
            recordDeliveryLatency?(.now() - tickStarted)
        }
    }
}
