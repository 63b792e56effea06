// Fan-out throughput: 1 publisher -> 1 channel -> N subscribers (or N pattern subscribers).
//
// The publisher pipelines PUBLISH commands, keeping at most `window` replies outstanding and
// at most `maxLag` messages ahead of what the subscribers have received (so server-side
// output buffers stay small and no subscriber is ever cut off for being slow). One or two
// reader threads drain all subscriber sockets with epoll and count/validate push frames.
// Deliveries/s is measured over a fixed interval after a warm-up; afterwards the publisher
// stops, everything is drained, and every subscriber must have received every message in order.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

struct FanoutOptions {
    var subscribers: Int
    var pattern: Bool
    var seconds: Double
    var warmup: Double
    var readers: Int
    var window: Int
    var maxLag: Int?          // messages; nil = automatic
    var payloadLength: Int
}

struct FanoutResult {
    var deliveriesPerSecond: Double = 0
    var publishesPerSecond: Double = 0
    var measuredSeconds: Double = 0
    var published = 0
    var expectedDeliveries = 0
    var receivedDeliveries = 0
    var lost = 0                    // expected - received, summed over subscribers
    var subscribersShort = 0        // subscribers that missed at least one message
    var sequenceErrors = 0
    var frameErrors = 0
    var replyErrors = 0
    var disconnected = 0
    var benchCPU: Double = 0        // bench process CPU / wall (1.0 = one core)
    var readerCPU: [Double] = []    // per reader thread
    var publisherCPU: Double = 0
    var serverCPU: Double? = nil
    var otherCPU: Double? = nil     // rest of the machine (other processes) during the measurement
    var serverRSSAfterKiB: Int? = nil
    var notes: [String] = []

    var valid: Bool {
        lost == 0 && sequenceErrors == 0 && frameErrors == 0 && replyErrors == 0
            && disconnected == 0 && published > 0
    }
}

private final class FanoutShared: @unchecked Sendable {
    let stopPublishing = Atomic<Bool>(false)
    let stopReaders = Atomic<Bool>(false)
    let delivered = Atomic<Int>(0)
    let sent = Atomic<Int>(0)
    // Written by the publisher thread, read after join.
    var publisherReplies = 0
    var publisherReplyErrors = 0
    var publisherError: String? = nil
}

nonisolated(unsafe) private var fanoutRuns = 0

func runFanout(server: Server, options o: FanoutOptions) throws -> FanoutResult {
    let n = o.subscribers
    // A channel per run: a relay of the backplane fleet may still hold the previous run's
    // channel upstream for a moment after its subscribers left, and Redis would count it.
    fanoutRuns += 1
    let channel = "bench:fanout:\(n):\(fanoutRuns)"
    let pattern = "bench:fanout:*"
    let payloadLength = o.payloadLength
    let header = o.pattern
        ? Wire.pmessageHeader(pattern: pattern, channel: channel, payloadLength: payloadLength)
        : Wire.messageHeader(channel: channel, payloadLength: payloadLength)

    // --- connect and subscribe -------------------------------------------------------------
    var fds: [Int32] = []
    var pubFD: Int32 = -1
    defer {
        for fd in fds { close(fd) }
        if pubFD >= 0 { close(pubFD) }
    }
    fds.reserveCapacity(n)
    let subscribe = respCommand([o.pattern ? "PSUBSCRIBE" : "SUBSCRIBE", o.pattern ? pattern : channel])
    for _ in 0..<n {
        let fd = try connectUnix(server.socketPath)
        fds.append(fd)
        setReceiveTimeout(fd, seconds: 10)
        try writeAll(fd, subscribe)
    }
    let confirmation = Wire.subscribeConfirmation(kind: o.pattern ? "psubscribe" : "subscribe",
                                                  name: o.pattern ? pattern : channel)
    for fd in fds {
        let got = try readExactly(fd, confirmation.count)
        if got != confirmation {
            throw BenchError("\(server.name): unexpected subscribe reply \"\(printable(got))\", "
                + "expected \"\(printable(confirmation))\"")
        }
        setNonBlocking(fd)
    }
    pubFD = try connectUnix(server.publishSocketPath)
    setNonBlocking(pubFD)

    let set = SubscriberSet(fds: fds, header: header, payloadLength: payloadLength)
    let shared = FanoutShared()
    let readers = max(1, min(o.readers, 4, n))
    let maxLag = o.maxLag ?? max(64, 131_072 / max(1, n))
    let window = max(1, o.window)

    // --- reader threads ----------------------------------------------------------------------
    var epfds: [Int32] = []
    defer { for e in epfds { close(e) } }
    for _ in 0..<readers {
        let e = Epoll.create()
        if e < 0 { throw BenchError("epoll_create1: \(errnoString())") }
        epfds.append(e)
    }
    for (i, fd) in fds.enumerated() {
        if Epoll.add(epfds[i % readers], fd, token: UInt64(i)) != 0 {
            throw BenchError("epoll_ctl: \(errnoString())")
        }
    }
    var readerThreads: [pthread_t] = []
    for r in 0..<readers {
        let ep = epfds[r]
        readerThreads.append(startThread { fanoutReader(epfd: ep, set: set, shared: shared) })
    }
    var publisherThread: pthread_t? = nil
    // Make sure threads are stopped even if something below throws.
    defer {
        shared.stopPublishing.store(true, ordering: .relaxed)
        if let t = publisherThread { joinThread(t) }
        shared.stopReaders.store(true, ordering: .relaxed)
        for t in readerThreads { joinThread(t) }
    }

    let command = Wire.publishCommand(channel: channel, payloadLength: payloadLength)
    let pfd = pubFD
    publisherThread = startThread {
        fanoutPublisher(fd: pfd, shared: shared, command: command.bytes, payloadOffset: command.payloadOffset,
                        subscribers: n, expectedReply: n, window: window, maxLag: maxLag)
    }

    // --- measure -----------------------------------------------------------------------------
    struct Snapshot {
        var t: UInt64, delivered: Int, sent: Int, cpu: UInt64, server: UInt64?, machine: UInt64?, readers: [UInt64], publisher: UInt64
    }
    let takeSnapshot = { () -> Snapshot in
        Snapshot(t: monoNanos(), delivered: shared.delivered.load(ordering: .relaxed),
                 sent: shared.sent.load(ordering: .relaxed), cpu: selfCPUNanos(), server: server.cpuNanos,
                 machine: machineBusyNanos(),
                 readers: readerThreads.map(threadCPUNanos), publisher: threadCPUNanos(publisherThread!))
    }
    let start = monoNanos()
    sleepUntil(start + UInt64(o.warmup * 1e9))
    let s0 = takeSnapshot()
    sleepUntil(s0.t + UInt64(o.seconds * 1e9))
    let s1 = takeSnapshot()

    var result = FanoutResult()
    let wall = Double(s1.t - s0.t)
    result.measuredSeconds = wall / 1e9
    result.deliveriesPerSecond = Double(s1.delivered - s0.delivered) / (wall / 1e9)
    result.publishesPerSecond = Double(s1.sent - s0.sent) / (wall / 1e9)
    result.benchCPU = Double(s1.cpu - s0.cpu) / wall
    result.readerCPU = zip(s0.readers, s1.readers).map { Double($1 &- $0) / wall }
    result.publisherCPU = Double(s1.publisher &- s0.publisher) / wall
    if let a = s0.server, let b = s1.server { result.serverCPU = Double(b - a) / wall }
    if let a = s0.machine, let b = s1.machine {
        result.otherCPU = max(0, Double(b &- a) / wall - result.benchCPU - (result.serverCPU ?? 0))
    }

    // --- stop, drain, verify -----------------------------------------------------------------
    shared.stopPublishing.store(true, ordering: .relaxed)
    joinThread(publisherThread!)
    publisherThread = nil
    if let e = shared.publisherError { throw BenchError("\(server.name): publisher: \(e)") }
    let published = shared.sent.load(ordering: .relaxed)
    let expected = published * n
    var last = shared.delivered.load(ordering: .relaxed)
    var lastProgress = monoNanos()
    let drainDeadline = monoNanos() + 30_000_000_000
    while monoNanos() < drainDeadline {
        let d = shared.delivered.load(ordering: .relaxed)
        if d >= expected { break }
        if d != last { last = d; lastProgress = monoNanos() }
        if monoNanos() - lastProgress > 3_000_000_000 { break }
        usleep(5_000)
    }
    usleep(50_000)   // let any unexpected extra frame arrive before the readers stop
    shared.stopReaders.store(true, ordering: .relaxed)
    for t in readerThreads { joinThread(t) }
    readerThreads = []

    result.published = published
    result.expectedDeliveries = expected
    result.replyErrors = shared.publisherReplyErrors + max(0, published - shared.publisherReplies)
    for i in 0..<n {
        result.receivedDeliveries += set.received[i]
        if set.received[i] < published {
            result.lost += published - set.received[i]
            result.subscribersShort += 1
        } else if set.received[i] > published {
            result.sequenceErrors += set.received[i] - published   // duplicates / extra frames
        }
        result.sequenceErrors += set.seqErrors[i]
        result.frameErrors += set.frameErrors[i]
        if set.closed[i] { result.disconnected += 1 }
    }
    if shared.publisherReplies < published {
        result.notes.append("\(published - shared.publisherReplies) PUBLISH replies missing")
    }
    result.serverRSSAfterKiB = server.rssKiB
    return result
}

private func fanoutReader(epfd: Int32, set: SubscriberSet, shared: FanoutShared) {
    let bufferSize = 256 * 1024
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 64)
    defer { buffer.deallocate() }
    let maxEvents: Int32 = 1024
    let events = UnsafeMutableRawPointer.allocate(byteCount: Int(maxEvents) * Epoll.eventSize, alignment: 16)
    defer { events.deallocate() }
    while !shared.stopReaders.load(ordering: .relaxed) {
        let ready = Epoll.wait(epfd, events, max: maxEvents, timeoutMs: 20)
        if ready <= 0 { continue }
        var frames = 0
        for k in 0..<Int(ready) {
            let i = Int(Epoll.token(events, k))
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

private func fanoutPublisher(fd: Int32, shared: FanoutShared, command: [UInt8], payloadOffset: Int,
                             subscribers: Int, expectedReply: Int, window: Int, maxLag: Int) {
    let cmdLength = command.count
    let batchMax = max(1, window / 4)
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: batchMax * cmdLength, alignment: 64)
    defer { buffer.deallocate() }
    for k in 0..<batchMax {
        (buffer + k * cmdLength).copyMemory(from: command, byteCount: cmdLength)
    }
    let replyBufferSize = 64 * 1024
    let replyBuffer = UnsafeMutableRawPointer.allocate(byteCount: replyBufferSize, alignment: 64)
    defer { replyBuffer.deallocate() }

    var replies = ReplyCounter(expected: expectedReply)
    var sent = 0
    var pendingStart = 0
    var pendingEnd = 0
    var stopping = false
    var stopDeadline: UInt64 = 0
    defer {
        shared.publisherReplies = replies.replies
        shared.publisherReplyErrors = replies.errors
    }

    while true {
        var progressed = false
        var lagLimited = false
        if !stopping && shared.stopPublishing.load(ordering: .relaxed) {
            stopping = true
            stopDeadline = monoNanos() + 15_000_000_000
        }
        if pendingStart == pendingEnd && !stopping {
            let delivered = shared.delivered.load(ordering: .relaxed)
            let lagging = sent - delivered / subscribers
            let byWindow = window - (sent - replies.replies)
            let byLag = maxLag - lagging
            let allowed = min(byWindow, byLag, batchMax)
            if allowed <= 0 && byLag <= 0 && byWindow > 0 { lagLimited = true }
            if allowed > 0 {
                for k in 0..<allowed {
                    let seq = UInt64(sent + k).littleEndian
                    (buffer + k * cmdLength + payloadOffset).storeBytes(of: seq, as: UInt64.self)
                }
                pendingStart = 0
                pendingEnd = allowed * cmdLength
                sent += allowed
                shared.sent.store(sent, ordering: .relaxed)
            }
        }
        if pendingStart < pendingEnd {
            let w = write(fd, buffer + pendingStart, pendingEnd - pendingStart)
            if w > 0 {
                pendingStart += w
                progressed = true
            } else if w < 0 && errno != EAGAIN && errno != EINTR {
                shared.publisherError = "write: \(errnoString())"
                return
            }
        }
        let r = read(fd, replyBuffer, replyBufferSize)
        if r > 0 {
            replies.consume(replyBuffer, r)
            progressed = true
        } else if r == 0 {
            shared.publisherError = "connection closed by server"
            return
        } else if errno != EAGAIN && errno != EINTR {
            shared.publisherError = "read: \(errnoString())"
            return
        }
        if stopping {
            if pendingStart == pendingEnd && replies.replies >= sent { return }
            if monoNanos() > stopDeadline {
                shared.publisherError = "timed out waiting for \(sent - replies.replies) PUBLISH replies"
                return
            }
        }
        if !progressed && lagLimited {
            // Waiting for the subscribers (no socket event will wake us): short sleep.
            usleep(200)
        } else if !progressed {
            var p = pollfd(fd: fd, events: Int16(POLLIN) | (pendingStart < pendingEnd ? Int16(POLLOUT) : 0), revents: 0)
            _ = poll(&p, 1, 1)
        }
    }
}
