import Testing
@testable import RelayCore

@Suite struct ReconnectBackoffTests {
    @Test func doublesFromTheBaseUpToTheCap() {
        var b = ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 1000)
        // With the top of the jitter range every wait is the full step.
        let full = (0..<7).map { _ in b.nextDelayMilliseconds(now: 0) { 1 } }
        #expect(full == [50, 100, 200, 400, 800, 1000, 1000])
    }

    @Test func jitterStaysBetweenHalfAndFullStep() {
        var low = ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 5000)
        let lows = (0..<10).map { _ in low.nextDelayMilliseconds(now: 0) { 0 } }
        #expect(lows == [25, 50, 100, 200, 400, 800, 1600, 2500, 2500, 2500])
        var any = ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 5000)
        for _ in 0..<50 {
            let step = any.currentStepMilliseconds
            let d = any.nextDelayMilliseconds(now: 0) { Double.random(in: 0..<1) }
            #expect(d >= step / 2 && d <= step)
        }
    }

    @Test func aConnectionThatLastsStartsOver() {
        let second: UInt64 = 1_000_000_000
        var b = ReconnectBackoff(capMilliseconds: 30_000, healthyNanoseconds: 10 * second)
        for _ in 0..<20 { _ = b.nextDelayMilliseconds(now: 0) { 1 } }
        #expect(b.currentStepMilliseconds == 30_000)
        b.connected(at: 100 * second)
        #expect(b.nextDelayMilliseconds(now: 110 * second) { 1 } == 50)
    }

    @Test func aConnectionDroppedAtOnceKeepsBackingOff() {
        // A server that completes the handshake and then fails the link: each loss is a failure.
        let ms: UInt64 = 1_000_000
        var b = ReconnectBackoff(capMilliseconds: 5000)
        var now: UInt64 = 0
        var delays: [Int] = []
        for _ in 0..<8 {
            b.connected(at: now)
            now += 30 * ms
            let d = b.nextDelayMilliseconds(now: now) { 1 }
            delays.append(d)
            now += UInt64(d) * ms
        }
        #expect(delays == [50, 100, 200, 400, 800, 1600, 3200, 5000])
    }
}

@Suite struct ReplyDeadlineTests {
    @Test func overdueOnlyWhileTheOldestIsUnanswered() {
        var d = ReplyDeadline()
        #expect(!d.isOverdue(now: 10_000_000_000, timeoutNanoseconds: 1))
        d.sent(at: 1_000)
        d.sent(at: 2_000)
        #expect(!d.isOverdue(now: 1_500, timeoutNanoseconds: 1_000))
        #expect(d.isOverdue(now: 2_001, timeoutNanoseconds: 1_000))
        d.answered()
        // The second request is now the oldest.
        #expect(!d.isOverdue(now: 2_900, timeoutNanoseconds: 1_000))
        #expect(d.isOverdue(now: 3_001, timeoutNanoseconds: 1_000))
        d.answered()
        #expect(d.outstanding == 0)
        #expect(!d.isOverdue(now: 100_000, timeoutNanoseconds: 1_000))
    }

    @Test func aStallOfTheRelayRestartsTheClock() {
        var d = ReplyDeadline()
        d.sent(at: 1_000)
        #expect(d.isOverdue(now: 5_000, timeoutNanoseconds: 1_000))
        d.resume(at: 5_000)
        #expect(!d.isOverdue(now: 5_900, timeoutNanoseconds: 1_000))
        #expect(d.isOverdue(now: 6_001, timeoutNanoseconds: 1_000))
    }
}
