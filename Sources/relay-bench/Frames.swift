// The bench's wire formats and its fast push-frame scanner.
//
// Every message of a scenario has the same channel, pattern and payload length, so every
// `message`/`pmessage` push frame a subscriber receives has the same length and the same
// header bytes; only the payload differs. The scanner therefore counts frames by length,
// assembles frames split across reads in a small per-connection stash, and validates every
// frame (header bytes, trailing CRLF, payload sequence number) so that a garbled or lost
// frame is detected rather than miscounted.
//
// Payload layout (little-endian): bytes 0..<8 sequence number, 8..<16 CLOCK_MONOTONIC send
// time in ns (latency scenario), the rest filler.

#if canImport(Glibc)
import Glibc
#endif

enum Wire {
    static func bulk(_ b: [UInt8]) -> [UInt8] { Array("$\(b.count)\r\n".utf8) + b + [13, 10] }

    /// Push frame header (everything before the payload bytes) for a channel subscription.
    /// `kind` is "smessage" for a shard-channel subscription (SSUBSCRIBE) on Redis itself.
    static func messageHeader(channel: String, payloadLength: Int, kind: String = "message") -> [UInt8] {
        Array("*3\r\n".utf8) + bulk(Array(kind.utf8)) + bulk(Array(channel.utf8))
            + Array("$\(payloadLength)\r\n".utf8)
    }

    /// Push frame header for a pattern subscription.
    static func pmessageHeader(pattern: String, channel: String, payloadLength: Int) -> [UInt8] {
        Array("*4\r\n".utf8) + bulk(Array("pmessage".utf8)) + bulk(Array(pattern.utf8))
            + bulk(Array(channel.utf8)) + Array("$\(payloadLength)\r\n".utf8)
    }

    /// The reply to `SUBSCRIBE ch` / `PSUBSCRIBE pat` as the first subscription (RESP2).
    static func subscribeConfirmation(kind: String, name: String) -> [UInt8] {
        Array("*3\r\n".utf8) + bulk(Array(kind.utf8)) + bulk(Array(name.utf8)) + Array(":1\r\n".utf8)
    }

    /// `PUBLISH channel <payload>` command bytes (or `SPUBLISH`, as `command`); returns the
    /// bytes and the payload offset.
    static func publishCommand(channel: String, payloadLength: Int, command: String = "PUBLISH")
        -> (bytes: [UInt8], payloadOffset: Int) {
        let head = Array("*3\r\n".utf8) + bulk(Array(command.utf8)) + bulk(Array(channel.utf8))
            + Array("$\(payloadLength)\r\n".utf8)
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: payloadLength)
        return (head + payload + [13, 10], head.count)
    }
}

/// Per-subscriber receive state for a set of subscriber connections sharing one frame layout.
/// Each index is only touched by the one thread that reads that connection; the main thread
/// reads the counters after joining the readers.
final class SubscriberSet: @unchecked Sendable {
    let count: Int
    let fds: [Int32]
    let frameLength: Int
    let headerLength: Int
    private let header: UnsafeMutableRawPointer
    private let stash: UnsafeMutableRawPointer
    let position: UnsafeMutablePointer<Int>
    let nextSeq: UnsafeMutablePointer<UInt64>
    let received: UnsafeMutablePointer<Int>
    let seqErrors: UnsafeMutablePointer<Int>
    let frameErrors: UnsafeMutablePointer<Int>
    let closed: UnsafeMutablePointer<Bool>

    /// Latency recording (latency scenario only): samples[seq - sampleFirstSeq] = now - sendTime.
    var samples: UnsafeMutablePointer<UInt64>? = nil
    var sampleFirstSeq: UInt64 = 0
    var sampleCount: Int = 0

    init(fds: [Int32], header: [UInt8], payloadLength: Int) {
        precondition(payloadLength >= 16)
        count = fds.count
        self.fds = fds
        headerLength = header.count
        frameLength = header.count + payloadLength + 2
        self.header = UnsafeMutableRawPointer.allocate(byteCount: header.count, alignment: 16)
        self.header.copyMemory(from: header, byteCount: header.count)
        stash = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * frameLength, alignment: 16)
        position = .allocate(capacity: count); position.initialize(repeating: 0, count: count)
        nextSeq = .allocate(capacity: count); nextSeq.initialize(repeating: 0, count: count)
        received = .allocate(capacity: count); received.initialize(repeating: 0, count: count)
        seqErrors = .allocate(capacity: count); seqErrors.initialize(repeating: 0, count: count)
        frameErrors = .allocate(capacity: count); frameErrors.initialize(repeating: 0, count: count)
        closed = .allocate(capacity: count); closed.initialize(repeating: false, count: count)
    }

    deinit {
        header.deallocate(); stash.deallocate()
        position.deallocate(); nextSeq.deallocate(); received.deallocate()
        seqErrors.deallocate(); frameErrors.deallocate(); closed.deallocate()
    }

    @inline(__always)
    private func validate(_ i: Int, _ frame: UnsafeRawPointer, now: UInt64) {
        if memcmp(frame, header, headerLength) != 0
            || frame.load(fromByteOffset: frameLength - 2, as: UInt8.self) != 13
            || frame.load(fromByteOffset: frameLength - 1, as: UInt8.self) != 10 {
            frameErrors[i] &+= 1
        }
        let seq = UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: headerLength, as: UInt64.self))
        if seq != nextSeq[i] { seqErrors[i] &+= 1 }
        nextSeq[i] = seq &+ 1
        received[i] &+= 1
        if let samples {
            let k = seq &- sampleFirstSeq
            if k < UInt64(sampleCount) {
                let sent = UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: headerLength + 8, as: UInt64.self))
                samples[Int(k)] = now &- sent
            }
        }
    }

    /// Consumes `n` bytes read from subscriber `i`; returns the number of complete frames.
    @inline(__always)
    func consume(_ i: Int, _ p: UnsafeRawPointer, _ n: Int, now: UInt64 = 0) -> Int {
        let fl = frameLength
        var off = 0
        var frames = 0
        var pos = position[i]
        if pos > 0 {
            let slot = stash + i * fl
            let take = min(fl - pos, n)
            (slot + pos).copyMemory(from: p, byteCount: take)
            pos += take
            off = take
            if pos == fl {
                validate(i, slot, now: now)
                frames += 1
                pos = 0
            }
        }
        while n - off >= fl {
            validate(i, p + off, now: now)
            off += fl
            frames += 1
        }
        if off < n {
            (stash + i * fl).copyMemory(from: p + off, byteCount: n - off)
            pos = n - off
        }
        position[i] = pos
        return frames
    }
}

/// Counts the integer replies to pipelined PUBLISH commands; a reply that is not the expected
/// receiver count (or is an error) is counted as a reply error.
struct ReplyCounter {
    let expected: Int
    var replies = 0
    var errors = 0
    private var value = 0
    private var isInteger = false
    private var lineStart = true

    init(expected: Int) { self.expected = expected }

    @inline(__always)
    mutating func consume(_ p: UnsafeRawPointer, _ n: Int) {
        let b = p.assumingMemoryBound(to: UInt8.self)
        for k in 0..<n {
            let c = b[k]
            if lineStart {
                isInteger = c == UInt8(ascii: ":")
                value = 0
                lineStart = false
            } else if c &- 48 < 10 {
                value = value &* 10 &+ Int(c &- 48)
            } else if c == 10 {
                replies += 1
                if !isInteger || value != expected { errors += 1 }
                lineStart = true
            }
        }
    }
}
