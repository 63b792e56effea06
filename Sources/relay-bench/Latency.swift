// Fixed-rate latency: 1 publisher -> 1 channel -> 1 subscriber at `rate` msg/s.
//
// The publisher paces with absolute CLOCK_MONOTONIC deadlines (clock_nanosleep TIMER_ABSTIME,
// so lateness never accumulates into drift), writes the CLOCK_MONOTONIC send time into the
// payload just before write(), and the subscriber thread (blocking read) computes
// receive time - send time for every message after the warm-up.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

struct LatencyOptions {
    var rate: Double
    var seconds: Double
    var warmup: Double
    var payloadLength: Int
}

struct LatencyResult {
    var samples = 0
    var p50: Double = 0      // microseconds
    var p99: Double = 0
    var p999: Double = 0
    var max: Double = 0
    var mean: Double = 0
    var achievedRate: Double = 0
    var lateSends = 0        // sends more than 1 ms behind schedule
    var published = 0
    var lost = 0
    var sequenceErrors = 0
    var frameErrors = 0
    var replyErrors = 0
    var benchCPU: Double = 0
    var serverCPU: Double? = nil
    var otherCPU: Double? = nil
    var serverRSSAfterKiB: Int? = nil
    var notes: [String] = []

    var valid: Bool { lost == 0 && sequenceErrors == 0 && frameErrors == 0 && replyErrors == 0 && samples > 0 }
}

private final class LatencyShared: @unchecked Sendable {
    let stop = Atomic<Bool>(false)
    let failed = Atomic<Bool>(false)
    var readerError: String? = nil   // written before `failed` is set; read after join
}

func runLatency(server: Server, options o: LatencyOptions) throws -> LatencyResult {
    let channel = "bench:latency"
    let warmCount = Int(o.rate * o.warmup)
    let measureCount = max(1, Int(o.rate * o.seconds))
    let total = warmCount + measureCount
    let interval = 1e9 / o.rate

    var subFD: Int32 = -1
    var pubFD: Int32 = -1
    defer {
        if subFD >= 0 { close(subFD) }
        if pubFD >= 0 { close(pubFD) }
    }
    subFD = try connectUnix(server.socketPath)
    setReceiveTimeout(subFD, seconds: 10)
    try writeAll(subFD, respCommand(["SUBSCRIBE", channel]))
    let confirmation = Wire.subscribeConfirmation(kind: "subscribe", name: channel)
    let got = try readExactly(subFD, confirmation.count)
    if got != confirmation {
        throw BenchError("\(server.name): unexpected subscribe reply \"\(printable(got))\"")
    }
    setReceiveTimeout(subFD, seconds: 0.1)   // lets the reader notice `stop`
    pubFD = try connectUnix(server.publishSocketPath)

    let set = SubscriberSet(fds: [subFD], header: Wire.messageHeader(channel: channel, payloadLength: o.payloadLength),
                            payloadLength: o.payloadLength)
    let samples = UnsafeMutablePointer<UInt64>.allocate(capacity: measureCount)
    defer { samples.deallocate() }
    samples.initialize(repeating: UInt64.max, count: measureCount)
    set.samples = samples
    set.sampleFirstSeq = UInt64(warmCount)
    set.sampleCount = measureCount

    let shared = LatencyShared()
    let sfd = subFD
    let reader = startThread {
        let size = 64 * 1024
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buf.deallocate() }
        while set.received[0] < total && !shared.stop.load(ordering: .relaxed) {
            let r = read(sfd, buf, size)
            let now = monoNanos()
            if r > 0 {
                _ = set.consume(0, buf, r, now: now)
            } else if r == 0 {
                shared.readerError = "subscriber connection closed by server"
                shared.failed.store(true, ordering: .releasing)
                return
            } else if errno != EAGAIN && errno != EINTR {
                shared.readerError = "subscriber read: \(errnoString())"
                shared.failed.store(true, ordering: .releasing)
                return
            }
        }
    }
    var readerJoined = false
    defer {
        if !readerJoined { shared.stop.store(true, ordering: .relaxed); joinThread(reader) }
    }

    // --- paced publisher on this thread ------------------------------------------------------
    reduceMainThreadTimerSlack()
    let command = Wire.publishCommand(channel: channel, payloadLength: o.payloadLength)
    var cmd = command.bytes
    let replyBuf = UnsafeMutableRawPointer.allocate(byteCount: 16 * 1024, alignment: 64)
    defer { replyBuf.deallocate() }
    var replies = ReplyCounter(expected: 1)
    var result = LatencyResult()

    let start = monoNanos() + 2_000_000
    var cpu0: UInt64 = 0, server0: UInt64? = nil, machine0: UInt64? = nil, t0: UInt64 = 0
    var lastSend: UInt64 = 0
    for i in 0..<total {
        let deadline = start + UInt64(Double(i) * interval)
        if i == warmCount {
            cpu0 = selfCPUNanos(); server0 = server.cpuNanos; machine0 = machineBusyNanos(); t0 = deadline
        }
        let now = monoNanos()
        if now < deadline {
            sleepUntil(deadline)
        } else if now - deadline > 1_000_000 {
            result.lateSends += 1
        }
        let ts = monoNanos()
        cmd.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt64(i).littleEndian, toByteOffset: command.payloadOffset, as: UInt64.self)
            raw.storeBytes(of: ts.littleEndian, toByteOffset: command.payloadOffset + 8, as: UInt64.self)
        }
        try writeAll(pubFD, cmd)
        lastSend = ts
        let r = recv(pubFD, replyBuf, 16 * 1024, Int32(MSG_DONTWAIT))
        if r > 0 { replies.consume(replyBuf, r) }
        if shared.failed.load(ordering: .acquiring) { break }
    }
    let t1 = lastSend
    let cpu1 = selfCPUNanos()
    let server1 = server.cpuNanos
    let machine1 = machineBusyNanos()
    result.published = total

    // Wait (bounded) for the subscriber to get everything, and for the remaining replies.
    let waitDeadline = monoNanos() + 5_000_000_000
    setReceiveTimeout(pubFD, seconds: 0.1)
    while monoNanos() < waitDeadline && (replies.replies < total || set.received[0] < total) {
        if replies.replies < total {
            let r = read(pubFD, replyBuf, 16 * 1024)
            if r > 0 { replies.consume(replyBuf, r) } else if r == 0 { break }
        } else {
            usleep(1_000)
        }
        if shared.failed.load(ordering: .acquiring) { break }
    }
    shared.stop.store(true, ordering: .relaxed)
    joinThread(reader)
    readerJoined = true
    if let e = shared.readerError { throw BenchError("\(server.name): \(e)") }

    let wall = Double(max(1, t1 - t0))
    result.benchCPU = Double(cpu1 - cpu0) / wall
    if let a = server0, let b = server1 { result.serverCPU = Double(b - a) / wall }
    if let a = machine0, let b = machine1 {
        result.otherCPU = max(0, Double(b &- a) / wall - result.benchCPU - (result.serverCPU ?? 0))
    }
    result.achievedRate = Double(measureCount - 1) / (wall / 1e9)
    result.lost = max(0, total - set.received[0])
    result.sequenceErrors = set.seqErrors[0] + max(0, set.received[0] - total)
    result.frameErrors = set.frameErrors[0]
    result.replyErrors = replies.errors + max(0, total - replies.replies)

    var values: [UInt64] = []
    values.reserveCapacity(measureCount)
    for k in 0..<measureCount where samples[k] != UInt64.max { values.append(samples[k]) }
    values.sort()
    result.samples = values.count
    if !values.isEmpty {
        func pct(_ q: Double) -> Double {
            let idx = min(values.count - 1, max(0, Int((Double(values.count) * q).rounded(.up)) - 1))
            return Double(values[idx]) / 1000
        }
        result.p50 = pct(0.50)
        result.p99 = pct(0.99)
        result.p999 = pct(0.999)
        result.max = Double(values.last!) / 1000
        result.mean = Double(values.reduce(0, &+)) / Double(values.count) / 1000
    }
    result.serverRSSAfterKiB = server.rssKiB
    return result
}
