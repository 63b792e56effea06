import Testing
@testable import RelayCore

@Suite struct RelayPasswordTests {
    @Test func matchesOnlyTheExactBytes() {
        let p = RelayPassword(Array("secret".utf8))
        #expect(p.matches(Array("secret".utf8)))
        for wrong in ["", "s", "secre", "secrets", "Secret", "secreT", "secretsecret", "terces"] {
            #expect(!p.matches(Array(wrong.utf8)), "'\(wrong)'")
        }
        // A guess that repeats the password's bytes at the same positions modulo its length is
        // still refused (the comparison wraps around the password for long guesses).
        #expect(!p.matches(Array("secretsecre".utf8)))
        #expect(!RelayPassword([]).matches([]))
    }

    @Test func binaryPasswordsCompareByteForByte() {
        let p = RelayPassword([0, 0xFF, 0x0D, 0x0A])
        #expect(p.matches([0, 0xFF, 0x0D, 0x0A]))
        #expect(!p.matches([0, 0xFF, 0x0D]))
        #expect(!p.matches([0, 0xFE, 0x0D, 0x0A]))
    }

    @Test func onlyTheDefaultUserAuthenticates() {
        let p = RelayPassword(Array("pw".utf8))
        #expect(p.authenticates(user: "default".utf8, password: "pw".utf8))
        #expect(!p.authenticates(user: "Default".utf8, password: "pw".utf8))
        #expect(!p.authenticates(user: "bob".utf8, password: "pw".utf8))
        #expect(!p.authenticates(user: "default".utf8, password: "pW".utf8))
    }

    @Test func fileTakesTheFirstLineWithoutItsNewline() throws {
        #expect(try RelayPassword.fromFile(contents: Array("s3cret\n".utf8), path: "/p").bytes == Array("s3cret".utf8))
        #expect(try RelayPassword.fromFile(contents: Array("s3cret".utf8), path: "/p").bytes == Array("s3cret".utf8))
        #expect(try RelayPassword.fromFile(contents: Array("s3cret\r\n".utf8), path: "/p").bytes == Array("s3cret".utf8))
        #expect(try RelayPassword.fromFile(contents: Array("a b \nsecond line\n".utf8), path: "/p").bytes == Array("a b ".utf8))
    }

    @Test func emptyFileIsRefused() {
        for contents in ["", "\n", "\r\n", "\nsecond"] {
            #expect(throws: ConfigError.self) { try RelayPassword.fromFile(contents: Array(contents.utf8), path: "/p") }
        }
        do {
            _ = try RelayPassword.fromFile(contents: [], path: "/etc/pw")
        } catch {
            #expect(error.variable == "RELAY_PASSWORD_FILE")
            #expect(error.message.contains("/etc/pw"))
        }
    }

    /// Longer than an unauthenticated client may send (16384 bytes): it could never AUTH.
    @Test func passwordOverTheUnauthenticatedBulkLimitIsRefused() throws {
        #expect(try RelayPassword.fromVariable(String(repeating: "x", count: 16384)).bytes.count == 16384)
        #expect(throws: ConfigError.self) { try RelayPassword.fromVariable(String(repeating: "x", count: 16385)) }
        #expect(throws: ConfigError.self) {
            try RelayPassword.fromFile(contents: [UInt8](repeating: 0x41, count: 16385), path: "/p")
        }
    }
}

@Suite struct AuthFailureLogLimiterTests {
    @Test func firstFailureLogsThenAtMostOncePerInterval() {
        var limiter = AuthFailureLogLimiter(intervalNanoseconds: 1_000)
        #expect(limiter.failure(now: 10_000) == 0)
        #expect(limiter.failure(now: 10_001) == nil)
        #expect(limiter.failure(now: 10_500) == nil)
        #expect(limiter.failure(now: 10_999) == nil)
        // The next line reports the three that were not logged.
        #expect(limiter.failure(now: 11_000) == 3)
        #expect(limiter.failure(now: 11_001) == nil)
        #expect(limiter.failure(now: 50_000) == 1)
        #expect(limiter.failure(now: 90_000) == 0)
    }

    /// A flood of failures yields about one line per interval.
    @Test func floodIsBounded() {
        var limiter = AuthFailureLogLimiter(intervalNanoseconds: 1_000_000_000)
        var lines = 0
        var reported = 0
        for i in 0..<100_000 {
            if let n = limiter.failure(now: UInt64(i) * 100_000) {  // one every 0.1 ms for 10 s
                lines += 1
                reported += n + 1
            }
        }
        #expect(lines == 10)
        #expect(reported <= 100_000)
    }
}
