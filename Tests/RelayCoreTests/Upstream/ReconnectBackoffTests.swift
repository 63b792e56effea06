import Testing
@testable import RelayCore

@Suite struct ReconnectBackoffTests {
    @Test func doublesFromTheBaseUpToTheCap() {
        var b = ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 1000)
        // With the top of the jitter range every wait is the full step.
        let full = (0..<7).map { _ in b.nextDelayMilliseconds { 1 } }
        #expect(full == [50, 100, 200, 400, 800, 1000, 1000])
    }

    @Test func jitterStaysBetweenHalfAndFullStep() {
        var low = ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 5000)
        let lows = (0..<10).map { _ in low.nextDelayMilliseconds { 0 } }
        #expect(lows == [25, 50, 100, 200, 400, 800, 1600, 2500, 2500, 2500])
        var any = ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 5000)
        for _ in 0..<50 {
            let step = any.currentStepMilliseconds
            let d = any.nextDelayMilliseconds { Double.random(in: 0..<1) }
            #expect(d >= step / 2 && d <= step)
        }
    }

    @Test func resetStartsOver() {
        var b = ReconnectBackoff(capMilliseconds: 30_000)
        for _ in 0..<20 { _ = b.nextDelayMilliseconds { 1 } }
        #expect(b.currentStepMilliseconds == 30_000)
        b.reset()
        #expect(b.nextDelayMilliseconds { 1 } == 50)
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
}
