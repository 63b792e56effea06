// A fixed number of messages spread over many channels (the Redis Cluster scenarios): each
// channel is published by one of a few publisher connections and has its own subscriber
// connections, possibly on different servers; the run ends when every subscriber has every
// message of its channel, and the CPU each process group used in between is the result.
//
// One publisher thread drives all publisher connections (pipelined, a reply window per
// connection, a bound on how far the publishing runs ahead of the deliveries); reader threads
// drain the subscribers with epoll and check every frame with one `SubscriberSet` per channel.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Where a bench connection goes: a Unix socket (relays, standalone Redis) or a loopback TCP
/// port (cluster nodes).
enum BenchEndpoint: Equatable {
    case unix(String)
    case tcp(UInt16)

    func connect() throws -> Int32 {
        switch self {
        case .unix(let path): return try connectUnix(path)
        case .tcp(let port): return try connectTCP(port: port)
        }
    }
}

/// One channel of the load: which publisher connection carries it, where its subscribers are.
struct SpreadChannel {
    var name: String
    var publisher: Int
    var subscribers: [BenchEndpoint]
}

struct ChannelSpreadOptions {
    var channels: [SpreadChannel]
    var publishers: [BenchEndpoint]
    var subscribeCommand = "SUBSCRIBE"     // or SSUBSCRIBE, straight on a cluster master
    var publishCommand = "PUBLISH"         // or SPUBLISH
    var messageKind = "message"            // or smessage
    var messagesPerChannel: Int
    /// What every PUBLISH should answer (its receiver count); other counts are tallied.
    var expectedReceivers: Int
    var readers: Int
    var window: Int
    var maxLag: Int
    var payloadLength: Int
    /// Processes whose CPU is measured, by group name ("redis", "relays").
    var cpuGroups: [(name: String, pids: [pid_t])]
    /// Runs after every subscription is confirmed, before the first PUBLISH (e.g. waits until
    /// the relays hold their channels upstream).
    var beforePublishing: () throws -> Void = {}
}

struct ChannelSpreadResult {
    var channels = 0
    var subscribers = 0
    var published = 0
    var expectedDeliveries = 0
    var receivedDeliveries = 0
    var lost = 0
    var subscribersShort = 0
    var sequenceErrors = 0
    var frameErrors = 0
    var replyErrors = 0              // error replies, or replies missing
    var receiverCountMismatches = 0  // integer replies other than `expectedReceivers`
    var firstErrorReply = ""
    var disconnected = 0
    var seconds = 0.0                // first PUBLISH to last delivery
    var deliveriesPerSecond = 0.0
    var cpuSeconds: [String: Double] = [:]
    var benchCPUSeconds = 0.0
    var otherCPUSeconds: Double? = nil
    var notes: [String] = []

    /// Every message reached every subscriber of its channel exactly once, in order.
    var valid: Bool {
        lost == 0 && sequenceErrors == 0 && frameErrors == 0 && replyErrors == 0 && disconnected == 0 && published > 0
    }

    /// CPU seconds of a group per million delivered messages.
    func cpuPerMillion(_ group: String) -> Double? {
        guard let s = cpuSeconds[group], receivedDeliveries > 0 else { return nil }
        return s / (Double(receivedDeliveries) / 1e6)
    }
}

private final class SpreadShared: @unchecked Sendable {
    let stop = Atomic<Bool>(false)
    let publisherDone = Atomic<Bool>(false)
    let delivered = Atomic<Int>(0)
    let sent = Atomic<Int>(0)
    // Written by the publisher thread before `publisherDone`, read after join.
    var replies = 0
    var replyErrors = 0
    var mismatches = 0
    var firstErrorReply = ""
    var publisherError: String? = nil
}

func runChannelSpread(_ o: ChannelSpreadOptions) throws -> ChannelSpreadResult {
    let payloadLength = o.payloadLength
    var fds: [Int32] = []
    var pubFDs: [Int32] = []
    defer { for fd in fds + pubFDs { close(fd) } }

    // --- subscribe: one connection per (channel, subscriber endpoint) -----------------------
    var sets: [SubscriberSet] = []
    var owner: [(set: Int, index: Int)] = []
    for (c, ch) in o.channels.enumerated() {
        var mine: [Int32] = []
        let command = respCommand([o.subscribeCommand, ch.name])
        for endpoint in ch.subscribers {
            let fd = try endpoint.connect()
            fds.append(fd)
            mine.append(fd)
            setReceiveTimeout(fd, seconds: 10)
            try writeAll(fd, command)
            owner.append((c, mine.count - 1))
        }
        sets.append(SubscriberSet(fds: mine, header: Wire.messageHeader(channel: ch.name, payloadLength: payloadLength,
                                                                        kind: o.messageKind),
                                  payloadLength: payloadLength))
    }
    for (c, ch) in o.channels.enumerated() {
        let confirmation = Wire.subscribeConfirmation(kind: o.subscribeCommand.lowercased(), name: ch.name)
        for (k, fd) in sets[c].fds.enumerated() {
            let got = try readExactly(fd, confirmation.count)
            if got != confirmation {
                throw BenchError("subscriber \(k) of \(ch.name) on \(ch.subscribers[k]): unexpected reply "
                    + "\"\(printable(got))\", expected \"\(printable(confirmation))\"")
            }
            setNonBlocking(fd)
        }
    }
    try o.beforePublishing()
    for endpoint in o.publishers {
        let fd = try endpoint.connect()
        pubFDs.append(fd)
        setNonBlocking(fd)
    }

    let totalSubscribers = fds.count
    let shared = SpreadShared()
    let readers = max(1, min(o.readers, 4, totalSubscribers))
    var epfds: [Int32] = []
    defer { for e in epfds { close(e) } }
    for _ in 0..<readers {
        let e = Epoll.create()
        if e < 0 { throw BenchError("epoll_create1: \(errnoString())") }
        epfds.append(e)
    }
    for (g, fd) in fds.enumerated() where Epoll.add(epfds[g % readers], fd, token: UInt64(g)) != 0 {
        throw BenchError("epoll_ctl: \(errnoString())")
    }
    let routing = SpreadRouting(sets: sets, owner: owner)
    var readerThreads: [pthread_t] = []
    var publisherThread: pthread_t? = nil
    defer {
        shared.stop.store(true, ordering: .relaxed)
        if let t = publisherThread { joinThread(t) }
        for t in readerThreads { joinThread(t) }
    }
    for r in 0..<readers {
        let ep = epfds[r]
        readerThreads.append(startThread { spreadReader(epfd: ep, routing: routing, shared: shared) })
    }

    // Per publisher connection: its channels' PUBLISH commands, sent round-robin.
    var plans: [PublisherPlan] = o.publishers.indices.map { _ in PublisherPlan() }
    for ch in o.channels {
        let cmd = Wire.publishCommand(channel: ch.name, payloadLength: payloadLength, command: o.publishCommand)
        plans[ch.publisher].commands.append(cmd.bytes)
        plans[ch.publisher].payloadOffsets.append(cmd.payloadOffset)
    }
    for i in plans.indices { plans[i].fd = pubFDs[i]; plans[i].total = plans[i].commands.count * o.messagesPerChannel }
    let expected = o.messagesPerChannel * totalSubscribers
    let perMessage = Double(totalSubscribers) / Double(max(1, o.channels.count))

    struct Snapshot { var t: UInt64; var groups: [UInt64?]; var bench: UInt64; var machine: UInt64? }
    let snapshot = { () -> Snapshot in
        Snapshot(t: monoNanos(),
                 groups: o.cpuGroups.map { g in
                     g.pids.reduce(UInt64(0) as UInt64?) { acc, pid in
                         guard let acc, let n = processCPUNanos(pid) else { return nil }
                         return acc + n
                     }
                 },
                 bench: selfCPUNanos(), machine: machineBusyNanos())
    }
    let s0 = snapshot()
    let publisherPlans = plans
    let options = (window: max(1, o.window), maxLag: max(1, o.maxLag), perMessage: perMessage,
                   expectedReceivers: o.expectedReceivers)
    publisherThread = startThread {
        spreadPublisher(plans: publisherPlans, shared: shared, window: options.window, maxLag: options.maxLag,
                        perMessage: options.perMessage, expectedReceivers: options.expectedReceivers)
    }

    // --- wait until everything is delivered (or nothing moves for 5 s; at most 300 s) -------
    var last = 0
    var lastProgress = monoNanos()
    let deadline = monoNanos() + 300_000_000_000
    var end: Snapshot? = nil
    while monoNanos() < deadline {
        let d = shared.delivered.load(ordering: .relaxed)
        let done = shared.publisherDone.load(ordering: .acquiring)
        if d >= expected && done { end = snapshot(); break }
        if done && shared.publisherError != nil { break }
        if d != last { last = d; lastProgress = monoNanos() }
        let stalled = monoNanos() - lastProgress
        if done && stalled > 5_000_000_000 { break }   // all sent and answered: the rest is lost
        if stalled > 20_000_000_000 { break }
        usleep(1_000)
    }
    let s1 = end ?? snapshot()
    usleep(50_000)   // let an unexpected extra frame arrive before the readers stop
    shared.stop.store(true, ordering: .relaxed)
    if let t = publisherThread { joinThread(t) }
    publisherThread = nil
    for t in readerThreads { joinThread(t) }
    readerThreads = []
    if let e = shared.publisherError { throw BenchError("publisher: \(e)") }

    var r = ChannelSpreadResult()
    r.channels = o.channels.count
    r.subscribers = totalSubscribers
    r.published = shared.sent.load(ordering: .relaxed)
    r.expectedDeliveries = expected
    r.seconds = Double(s1.t - s0.t) / 1e9
    for (i, g) in o.cpuGroups.enumerated() {
        if let a = s0.groups[i], let b = s1.groups[i] { r.cpuSeconds[g.name] = Double(b - a) / 1e9 }
    }
    r.benchCPUSeconds = Double(s1.bench - s0.bench) / 1e9
    if let a = s0.machine, let b = s1.machine {
        r.otherCPUSeconds = max(0, Double(b &- a) / 1e9 - r.benchCPUSeconds - r.cpuSeconds.values.reduce(0, +))
    }
    r.replyErrors = shared.replyErrors + max(0, r.published - shared.replies)
    r.receiverCountMismatches = shared.mismatches
    r.firstErrorReply = shared.firstErrorReply
    if shared.replies < r.published { r.notes.append("\(r.published - shared.replies) PUBLISH replies missing") }
    if r.published < o.messagesPerChannel * o.channels.count {
        r.notes.append("published \(r.published) of \(o.messagesPerChannel * o.channels.count) messages")
    }
    for set in sets {
        for i in 0..<set.count {
            r.receivedDeliveries += set.received[i]
            if set.received[i] < o.messagesPerChannel {
                r.lost += o.messagesPerChannel - set.received[i]
                r.subscribersShort += 1
            } else if set.received[i] > o.messagesPerChannel {
                r.sequenceErrors += set.received[i] - o.messagesPerChannel
            }
            r.sequenceErrors += set.seqErrors[i]
            r.frameErrors += set.frameErrors[i]
            if set.closed[i] { r.disconnected += 1 }
        }
    }
    r.deliveriesPerSecond = r.seconds > 0 ? Double(r.receivedDeliveries) / r.seconds : 0
    return r
}

/// Which `SubscriberSet` (channel) and index a subscriber connection's epoll token names.
private final class SpreadRouting: @unchecked Sendable {
    let sets: [SubscriberSet]
    let owner: [(set: Int, index: Int)]
    init(sets: [SubscriberSet], owner: [(set: Int, index: Int)]) { self.sets = sets; self.owner = owner }
}

private struct PublisherPlan {
    var fd: Int32 = -1
    var commands: [[UInt8]] = []
    var payloadOffsets: [Int] = []
    var total = 0
}

private func spreadReader(epfd: Int32, routing: SpreadRouting, shared: SpreadShared) {
    let bufferSize = 256 * 1024
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 64)
    defer { buffer.deallocate() }
    let maxEvents: Int32 = 1024
    let events = UnsafeMutableRawPointer.allocate(byteCount: Int(maxEvents) * Epoll.eventSize, alignment: 16)
    defer { events.deallocate() }
    while !shared.stop.load(ordering: .relaxed) {
        let ready = Epoll.wait(epfd, events, max: maxEvents, timeoutMs: 20)
        if ready <= 0 { continue }
        var frames = 0
        for k in 0..<Int(ready) {
            let (s, i) = routing.owner[Int(Epoll.token(events, k))]
            let set = routing.sets[s]
            let fd = set.fds[i]
            while true {
                let r = read(fd, buffer, bufferSize)
                if r > 0 {
                    frames += set.consume(i, buffer, r)
                    if r < bufferSize { break }
                } else if r == 0 || (errno != EAGAIN && errno != EINTR) {
                    set.closed[i] = true
                    Epoll.remove(epfd, fd)
                    break
                } else if errno == EAGAIN {
                    break
                }
            }
        }
        if frames > 0 { shared.delivered.add(frames, ordering: .relaxed) }
    }
}

/// Integer replies to pipelined PUBLISH commands: counted, error replies and unexpected
/// receiver counts told apart.
private struct PublishReplyTally {
    let expected: Int
    var replies = 0
    var errors = 0
    var mismatches = 0
    var firstError: [UInt8] = []
    private var value = 0
    private var kind: UInt8 = 0
    private var lineStart = true
    private var line: [UInt8] = []

    init(expected: Int) { self.expected = expected }

    mutating func consume(_ p: UnsafeRawPointer, _ n: Int) {
        let b = p.assumingMemoryBound(to: UInt8.self)
        for k in 0..<n {
            let c = b[k]
            if lineStart {
                kind = c
                value = 0
                lineStart = false
                if kind != UInt8(ascii: ":") && firstError.isEmpty { line = [c] }
            } else if c == 10 {
                replies += 1
                if kind != UInt8(ascii: ":") {
                    errors += 1
                    if firstError.isEmpty { firstError = line }
                } else if value != expected {
                    mismatches += 1
                }
                lineStart = true
            } else if kind == UInt8(ascii: ":") {
                if c &- 48 < 10 { value = value &* 10 &+ Int(c &- 48) }
            } else if firstError.isEmpty && line.count < 200 && c != 13 {
                line.append(c)
            }
        }
    }
}

private func spreadPublisher(plans: [PublisherPlan], shared: SpreadShared, window: Int, maxLag: Int,
                             perMessage: Double, expectedReceivers: Int) {
    struct Connection {
        var plan: PublisherPlan
        var buffer: UnsafeMutableRawPointer
        var capacity: Int
        var pendingStart = 0
        var pendingEnd = 0
        var sent = 0
        var nextChannel = 0
        var sequence: [UInt64]
        var tally: PublishReplyTally
    }
    let batchMax = max(1, window / 4)
    var conns: [Connection] = plans.map { plan in
        let longest = plan.commands.map(\.count).max() ?? 0
        let cap = max(1, batchMax * longest)
        return Connection(plan: plan, buffer: .allocate(byteCount: cap, alignment: 64), capacity: cap,
                          sequence: [UInt64](repeating: 0, count: plan.commands.count),
                          tally: PublishReplyTally(expected: expectedReceivers))
    }
    let replyBuffer = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 64)
    var totalSent = 0
    var lastProgress = monoNanos()
    defer {
        for c in conns { c.buffer.deallocate() }
        replyBuffer.deallocate()
        shared.replies = conns.map(\.tally.replies).reduce(0, +)
        shared.replyErrors = conns.map(\.tally.errors).reduce(0, +)
        shared.mismatches = conns.map(\.tally.mismatches).reduce(0, +)
        shared.firstErrorReply = String(decoding: conns.first { !$0.tally.firstError.isEmpty }?.tally.firstError ?? [], as: UTF8.self)
        shared.publisherDone.store(true, ordering: .releasing)
    }
    var pfds = conns.map { pollfd(fd: $0.plan.fd, events: 0, revents: 0) }
    while !shared.stop.load(ordering: .relaxed) {
        var progressed = false
        var lagLimited = false
        var finished = true
        for i in conns.indices {
            if conns[i].pendingStart == conns[i].pendingEnd && conns[i].sent < conns[i].plan.total {
                let delivered = shared.delivered.load(ordering: .relaxed)
                let lag = totalSent - Int(Double(delivered) / perMessage)
                let byWindow = window - (conns[i].sent - conns[i].tally.replies)
                let allowed = min(byWindow, maxLag - lag, batchMax, conns[i].plan.total - conns[i].sent)
                if allowed <= 0 && maxLag - lag <= 0 { lagLimited = true }
                if allowed > 0 {
                    var off = 0
                    for _ in 0..<allowed {
                        let ch = conns[i].nextChannel
                        let cmd = conns[i].plan.commands[ch]
                        cmd.withUnsafeBytes { (conns[i].buffer + off).copyMemory(from: $0.baseAddress!, byteCount: cmd.count) }
                        (conns[i].buffer + off + conns[i].plan.payloadOffsets[ch])
                            .storeBytes(of: conns[i].sequence[ch].littleEndian, as: UInt64.self)
                        conns[i].sequence[ch] += 1
                        conns[i].nextChannel = (ch + 1) % conns[i].plan.commands.count
                        off += cmd.count
                    }
                    conns[i].pendingStart = 0
                    conns[i].pendingEnd = off
                    conns[i].sent += allowed
                    totalSent += allowed
                    shared.sent.store(totalSent, ordering: .relaxed)
                }
            }
            if conns[i].pendingStart < conns[i].pendingEnd {
                let w = write(conns[i].plan.fd, conns[i].buffer + conns[i].pendingStart,
                              conns[i].pendingEnd - conns[i].pendingStart)
                if w > 0 {
                    conns[i].pendingStart += w
                    progressed = true
                } else if w < 0 && errno != EAGAIN && errno != EINTR {
                    shared.publisherError = "write: \(errnoString())"
                    return
                }
            }
            let r = read(conns[i].plan.fd, replyBuffer, 64 * 1024)
            if r > 0 {
                conns[i].tally.consume(replyBuffer, r)
                progressed = true
            } else if r == 0 {
                shared.publisherError = "connection closed by server"
                return
            } else if errno != EAGAIN && errno != EINTR {
                shared.publisherError = "read: \(errnoString())"
                return
            }
            if conns[i].sent < conns[i].plan.total || conns[i].pendingStart < conns[i].pendingEnd
                || conns[i].tally.replies < conns[i].sent {
                finished = false
            }
        }
        if finished { return }
        if progressed {
            lastProgress = monoNanos()
        } else if monoNanos() - lastProgress > 15_000_000_000 {
            let missing = conns.map { $0.sent - $0.tally.replies }.reduce(0, +)
            shared.publisherError = "no progress for 15 s (\(missing) PUBLISH replies outstanding, \(totalSent) sent)"
            return
        }
        if !progressed && lagLimited {
            usleep(200)   // waiting for the subscribers: no socket event will wake us
        } else if !progressed {
            for i in conns.indices {
                pfds[i].events = Int16(POLLIN) | (conns[i].pendingStart < conns[i].pendingEnd ? Int16(POLLOUT) : 0)
                pfds[i].revents = 0
            }
            _ = poll(&pfds, nfds_t(pfds.count), 1)
        }
    }
}
