import Testing
@testable import RelayCore

/// A byte string written with one Unicode scalar per byte (`"\u{e9}"` is the single byte 0xE9),
/// so that patterns can hold any byte, as Redis's do.
private func latin1(_ s: String) -> [UInt8] {
    s.unicodeScalars.map { scalar in
        precondition(scalar.value <= 0xFF, "one scalar per byte")
        return UInt8(scalar.value)
    }
}

private func matches(_ pattern: String, _ string: String) -> Bool {
    GlobMatcher.matches(pattern: latin1(pattern), string: latin1(string))
}


@Suite struct GlobMatcherTests {
    /// Redis's own test vectors: `KEYS foo*` in tests/unit/keyspace.tcl, the patterns of
    /// tests/unit/pubsub.tcl, and the "long nested loops" regression test.
    @Test func redisTestSuiteVectors() {
        let keys = ["key_x", "key_y", "key_z", "foo_a", "foo_b", "foo_c"]
        #expect(keys.filter { matches("foo*", $0) } == ["foo_a", "foo_b", "foo_c"])
        #expect(keys.filter { matches("*", $0) } == keys)
        #expect(matches("foo.*", "foo.bar"))
        #expect(matches("bar.*", "bar.baz"))
        #expect(!matches("foo.*", "bar.baz"))
        #expect(matches("chan.*", "chan.1"))
        #expect(matches("ch*", "chan"))
        #expect(!matches(
            "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
            String(repeating: "a", count: 40)))
    }

    /// Hand-picked cases, each checked against Redis 7.0.15's `stringmatchlen` (nocase = 0).
    @Test(arguments: [
        // '*'
        ("*", "key_x", true), ("*", "", false), ("", "", true), ("", "a", false),
        ("a*", "", false), ("a*", "a", true), ("a*", "abc", true), ("*a", "ba", true), ("*a", "ab", false),
        ("**", "x", true), ("a**b", "ab", true), ("a**b", "axxb", true), ("h*llo", "heeeello", true),
        ("user:*:msg", "user:42:msg", true), ("user:*:msg", "user:42:msgs", false), ("foo.*", "foo", false),
        // '?'
        ("?", "", false), ("?", "a", true), ("??", "a", false), ("a?c", "abc", true), ("a?c", "ac", false),
        ("h?llo", "hllo", false),
        // classes, negation, ranges (reversed ranges are swapped)
        ("[abc]", "b", true), ("[abc]", "d", false), ("h[ae]llo", "hello", true), ("h[ae]llo", "hillo", false),
        ("[^a]", "a", false), ("[^a]", "b", true), ("[^abc]", "d", true),
        ("[a-c]", "b", true), ("[a-c]", "d", false), ("[z-a]", "m", true), ("[z-a]", "A", false),
        ("[-a]", "-", true), ("[a-]", "-", false), ("[]", "a", false), ("[]a]", "a", false), ("[]a]", "]", false),
        ("news.[ab]*", "news.a1", true),
        // escapes
        ("[\\]]", "]", true), ("[\\-]", "-", true),
        ("\\*", "*", true), ("\\*", "a", false), ("\\?", "?", true), ("\\?", "x", false),
        ("\\[a]", "[a]", true), ("\\\\", "\\", true), ("a\\", "a\\", true), ("a\\", "a", false),
        // an unclosed '[' ends the class at the end of the pattern
        ("[a", "a", true), ("[a", "b", false), ("[", "[", false), ("[", "a", false), ("[^", "a", true),
        ("[a-", "a", true), ("a[", "a", false),
        // binary: NUL is an ordinary byte
        ("a\u{0}b", "a\u{0}b", true), ("*\u{0}*", "x\u{0}y", true), ("a\u{0}*", "a", false),
    ])
    func handPickedCases(_ c: (String, String, Bool)) {
        #expect(matches(c.0, c.1) == c.2, "pattern '\(c.0)' string '\(c.1)'")
    }

    /// Inside a class, bytes compare as C's signed `char`: 0x80…0xFF sort below 0x00.
    @Test(arguments: [
        ("[\u{1}-\u{ff}]", "\u{80}", false), ("[\u{1}-\u{ff}]", "a", false), ("[\u{1}-\u{ff}]", "\u{0}", true),
        ("[a-\u{e9}]", "b", false), ("[a-\u{e9}]", "a", true), ("[a-\u{e9}]", "\u{f0}", true),
        ("[a-\u{e9}]", "\u{0}", true),
        ("\u{e9}*", "\u{e9}t\u{e9}", true), ("[\u{e9}]", "\u{e9}", true), ("[^\u{e9}]", "\u{e9}", false),
        ("?", "\u{ff}", true), ("*", "\u{80}\u{81}", true),
    ])
    func highBytesCompareAsSignedChar(_ c: (String, String, Bool)) {
        #expect(matches(c.0, c.1) == c.2)
    }

    /// Newer Redis caps the recursion of `*` at 1000 levels (a pattern deeper than that does not
    /// match); without it, a pattern of thousands of `*a` pairs would exhaust the stack.
    @Test func nestingCap() {
        func starA(_ n: Int) -> [UInt8] { Array(String(repeating: "*a", count: n).utf8) }
        let a2000 = [UInt8](repeating: UInt8(ascii: "a"), count: 2000)
        #expect(GlobMatcher.matches(pattern: starA(1000), string: a2000.prefix(1000)))
        #expect(!GlobMatcher.matches(pattern: starA(1001), string: a2000.prefix(1001)))
        #expect(!GlobMatcher.matches(pattern: starA(2000), string: a2000))
        #expect(!GlobMatcher.matches(pattern: starA(2000), string: Array("b".utf8)))
    }

    /// A pathological pattern against a long string finishes (Redis's `skipLongerMatches`).
    @Test(.timeLimit(.minutes(1))) func pathologicalPatternTerminates() {
        let pattern = Array((String(repeating: "a*", count: 30) + "b").utf8)
        let string = [UInt8](repeating: UInt8(ascii: "a"), count: 10_000)
        #expect(!GlobMatcher.matches(pattern: pattern, string: string))
    }

    /// The pattern ends at its length, whatever the memory after it holds: Redis sees the NUL
    /// that terminates its strings there. Here the bytes after the pattern `a*` are more stars;
    /// reading them would walk the trailing-star loop past the end and miss the match.
    @Test func rawBufferPatternEndsAtItsLength() {
        let storage = Array("a***".utf8)
        let result = storage.withUnsafeBytes { all in
            let pattern = UnsafeRawBufferPointer(rebasing: all[0..<2])
            return Array("a".utf8).withUnsafeBytes { GlobMatcher.matches(pattern: pattern, string: $0) }
        }
        #expect(result)
    }

    /// 440 pattern/string pairs drawn at random over a glob-heavy alphabet (with high bytes), each
    /// answered by Redis 7.0.15's `stringmatchlen` compiled from src/util.c:
    /// `pattern-hex string-hex result`, `-` for empty.
    @Test func differentialVectorsFromRedis() {
        var checked = 0
        for entry in Self.redisVectors.split(whereSeparator: { $0 == "|" || $0 == "\n" }) {
            let f = entry.split(separator: " ")
            guard f.count == 3 else { continue }
            let pattern = hex(f[0])
            let string = hex(f[1])
            let expected = f[2] == "1"
            #expect(GlobMatcher.matches(pattern: pattern, string: string) == expected,
                    "pattern \(f[0]) string \(f[1])")
            checked += 1
        }
        #expect(checked == 440)
    }

    static let redisVectors = """
    21 215b5c 0 | 21 2d2d307a21 0 | 21 306262 0 | 21 5c7a7a5ee921 0
    21 6280 0 | 21212a5d3f5c61 2121e97a5d3061 1 | 2121303f 21213062 1 | 2121303fe92a62 - 0
    21213f 21212d 1 | 21215c2a5d2a 21212a5d62 1 | 21215c5b 21215b 1 | 21215d5c5b5c 21215d5b5c 1
    212a 21215d 1 | 212a 215b80 1 | 212a 216130 1 | 212a2a 215d 1
    212a2a5b612a7a 21802a617a 1 | 212a2a5e30 21305e30 1 | 212a2d7a 212d7a 1 | 212a30212d 21e930212d 1
    212a3f 217a5e 1 | 212a3f 2180 1 | 212a3f3f 215c2d21 1 | 212a5d 215d 1
    212a5e62622121 21625e62622121 1 | 212a7a 21302d7a 1 | 212a8080 212a8080 1 | 2130 2130 1
    21302a 213061 1 | 21303f 21302d 1 | 21305c 21305c 1 | 2130618062 2130618062 1
    21306230 21306230 1 | 2130e92a 2130e961 1 | 2130e92a5b5e5e 2130e9617a2ae9 1 | 213f 2180 1
    213f21 215b21 1 | 213f5d5d30 215d5d5d30 1 | 213f5e2d5c 2a61305e80 0 | 213f62 218062 1
    213f62 21e962 1 | 213f7a7a21 215e7a7a21 1 | 213f807a62305c 212a807a62305c 1 | 215c2a5c62 212a62 1
    215c5d3f 215d2a 1 | 215c5d6162 215d6162 1 | 215c5e 215e 1 | 215c5e7a 215e7a 1
    215ce95d 21e95d 1 | 215d3f80 215d8080 1 | 215d80e95c 215d80e95c 1 | 215e 2a7a 0
    2161303f305c5b 2161305e305b 1 | 21613f80 21613080 1 | 21615ce9 2161e9 1 | 21623f 21625d 1
    217a2a2d 217a2d 1 | 217a2d 302d5d 0 | 217a3061 217a3061 1 | 217a30805c2a 217a30802a 1
    21802a 2180 1 | 21802a 21805d5e 1 | 21802a 21808030 1 | 21802a5b80 21805b80 1
    21805e 21805e 1 | 218061 218061 1 | 21e95ce9e9 21e9e9e9 1 | 21e95e 21e95e 1
    21e962 21e962 1 | 21e9625c 21e9625c 1 | 2a 215d5d2a2d 1 | 2a 2a7a 1
    2a 2a805d2d5b 1 | 2a 2d2a2a5e5be9 1 | 2a 2d5ce92a2a 1 | 2a 2d5d5d622d2d 1
    2a 2d7a21 1 | 2a 2d7a5b5d6221 1 | 2a 5b5b5c6280 1 | 2a 5b5e7a 1
    2a 5c5de95b 1 | 2a 5c616161 1 | 2a 5c62305e80 1 | 2a 5c80 1
    2a 5ce9612a2d 1 | 2a 615c5d30 1 | 2a 7a30 1 | 2a 7a3061622d 1
    2a 7a5c3021 1 | 2a 7a80625d 1 | 2a 7ae95ee9e9 1 | 2a 805b21305e 1
    2a 805d7a7a625e 1 | 2a 805e5d2d 1 | 2a 807a 1 | 2a 80802a7a5e21 1
    2a e92a5d 1 | 2a e95c5e 1 | 2a e97a802a 1 | 2a e980306280 1
    2a e980625e 1 | 2a213061 625d213061 1 | 2a213f3f 215e5c 1 | 2a215c 215c 1
    2a215c5e 215e 1 | 2a215e21 62215e21 1 | 2a2161e921 622161e921 1 | 2a216262217ae9 216262217ae9 1
    2a217a e92d217a 1 | 2a2a305e 5e625b305e 1 | 2a2d805e803f 612d805e805b 1 | 2a2de93f 622de95e 1
    2a30 215e30 1 | 2a30 30 1 | 2a302a21805c e961305b5d5b805c 0 | 2a30615d5b21 213061215b2a 0
    2a5b 7a615b 0 | 2a5b2a61215b 62e96161215b 1 | 2a5b2a7a5c5b 5c5de95b 1 | 2a5b5e7a5c623f 615b615b5c 1
    2a5b5ee9 5e5d5b30 1 | 2a5b612d62 2a5c2d5d61 1 | 2a5b615b21212a 5b6180802a 1 | 2a5c2d612a 5d2d61305c 1
    2a5c5b e95b 1 | 2a5e80 5e80 1 | 2a61 2a21612a2d61 1 | 2a7a 2a7a 1
    2a7a3f5d 805d7a7a5d 1 | 2a7a5c 7a5c 1 | 2a7a5c803f 807a8062 1 | 2a7a613f612a61 30 0
    2a7a62 e92d7a62 1 | 2a7ae9 7ae9 1 | 2a80 21e92a80 1 | 2ae92180 5ce92180 1
    2ae92a 61e980 1 | 2ae95e5c3f3080 e95e3f3080 1 | 2ae961306180 2de961306180 1 | 2ae9617a21 e9617a21 1
    2ae962 e962 1 | 2ae9625d e95de9625d 1 | 2ae97a5c5b 30e97a5b 1 | 2d80805de961 2d80805de961 1
    302a 302d21 1 | 302a30 3030 1 | 302a305ce980 3030e980 1 | 302a3f 302a7a62 1
    302a3f 30e9 1 | 302a3f5c 305b5c 1 | 302a6221805c2d 306221802d 1 | 302a7a3f2a 30617a5d2a 1
    305c21305c2d30 3021302d30 1 | 305c5b21 305b21 1 | 305c5b5e30 305b5e30 1 | 305c5d 305d 1
    305c805b2a 30802d6262 0 | 305c80805c 80e95c5d 0 | 305c808061805d 2de921 0 | 305ce92d3fe961 21 0
    305d2d2d2d2a 305b215c2d5d 0 | 305d2d30 625d5d30 0 | 305d2d3062 30302d3062 0 | 305d2d5b2d5d 80305c5c5b61 0
    305d2d5c625d e9615c62 0 | 305d2d5d 5e5c5d5e 0 | 305d2d5d 61 0 | 305d2d61 5d7a215b5c7a 0
    305d2d6180212d 305d7a618021e9 0 | 305d2d626161 2a612d8080 0 | 305e3f7a305c2d 305e807a302d 1 | 305e5e5b 2d305e5b61 0
    305e5e5b215d 302a5e7a2121 0 | 305e5e5c 5e2d5be95d 0 | 305e5e5d3f5d 305e615c617a 0 | 305e6121e9 305e6121e9 1
    305e62 21305e5c 0 | 305e62 305d5e5d2a 0 | 305e62 5d2d7a2d5b62 0 | 305e622a3080 7ae9e95d2a2d 0
    305e7a 305e7a 1 | 305ee93f5c 305ee92a5c 1 | 30612a2d 30612d5b2d 1 | 30613f5d 5b2a2d5b 0
    30616180213061 5b5d5e5c215e 0 | 30622a3080e92d 5e7a5b 0 | 30622a5b 306280 0 | 30622a5b 5c 0
    30622a5ce961 305d5ce961 0 | 30622d21 30622d21 1 | 306262 2d218061615b 0 | 3062622a 5ee9e95c2a61 0
    307a5d5b 307a5d5d 0 | 307a5d5b 5c5c622a 0 | 307a5d5c 302d615c 0 | 307a5d5d 2a 0
    307a5d5d30 - 0 | 307a5d5d5e 307a212d21 0 | 30806261807a30 7a6261e9e9 0 | 3080627a6130 e930627ae930 0
    3f e9217a 0 | 3f e9217a30 0 | 3f e921806261 0 | 3f e92a 0
    3f e92d 0 | 3f e92d2d7a615c 0 | 3f e92d5ce92d 0 | 3f e92d5de962 0
    3f e95d217a5d7a 0 | 3f e95e5be9 0 | 3f21807a30 7a21807a30 1 | 3f21e9 5e21e9 1
    3f2a5b2a30 217a5e5b30 1 | 3f305e5c30 2d305e30 1 | 3f3f2a7a5c3f61 5b30 0 | 3f3f2a7a5e 5e2d5c2a7ae9 0
    3f3f2a80612de9 e97a6280616280 0 | 3f3f2ae92a30 5be961 0 | 3f3f2d2a2d802d 5b 0 | 3f3f2d2d21 5b2a5e5b30 0
    3f3f2d2d2a2130 7a5d2d622130 0 | 3f3f2d2d305d 2d5c8061 0 | 3f3f2d2d3f 2a5c5d2de9 0 | 3f3f2d5d 7a5d 0
    3f3f2d5e2d - 0 | 3f3f2d5e5b2ae9 5d5e61215be9 0 | 3f3f2d5e5c 802a 0 | 3f3f30 30805c2d2a2d 0
    3f5c80615d 5c 0 | 3f5ce9215b7a80 30305e 0 | 3f5e5ce9 - 0 | 3f5e62 5b5e62 1
    3f5e7a21 5d5e7a21 1 | 3f7a e92a5d 0 | 3f7a21303fe980 5e7a21305de980 1 | 3f7a2a 5b7a 1
    3f7a2a 5e7a5e5b 1 | 3f7a2a2d80 2a7a7a302d80 1 | 3f7a2a61 5e7a61 1 | 3f7a2d 307a2d 1
    3f7a2d7a3f 2d7a2d7a7a 1 | 3f7a30 5c7a30 1 | 3f7a3f 7a7a5d 1 | 3fe92a625d2d3f 5e5c5d5b2d2d 0
    3fe95d2161 30e95d2161 1 | 5b2121e9 e9 1 | 5b21305b613f2d 30 1 | 5b2a305b2a627a 802a305c2a5b627a 0
    5b2a305b305c 5e215b 0 | 5b2a305b5d 5e 0 | 5b2a3061803021 622a3061623021 0 | 5b2a30625b 215c5c21625b 0
    5b2a30627a5d3f 5b5b30627a5d21 0 | 5b2a3f2a30e9 e95d305ce921 0 | 5b2a3f2a3f8062 - 0 | 5b2a3f2a5d5e5b - 0
    5b2a3f5b213f 62 0 | 5b2a3f615d 5b2a806180 0 | 5b2a3f61623061 5c62 0 | 5b2a3fe93062 305be93062 0
    5b2a3fe95d e9305de95d 0 | 5b2a5b 2162e95e61 0 | 5b2a5b 8021 0 | 5b2a5b3f5b 615c 0
    5b2a5b3f805d 615c62 0 | 5b2a5b3fe95d 8021305de9 0 | 5b2a5b3fe980 622d 0 | 5b2d5b5d625e 2d2d2161625e 0
    5b2d5b805b5c 5b308080e9e9 0 | 5b2d805d5d 612d21802a 0 | 5b30 5b5d 0 | 5b302ae9 5b305e5be9 0
    5b305e5d5d - 0 | 5b305e80 5b305e80 0 | 5b3f615b61 5b2d613061 0 | 5b5b2a62 305b62 0
    5b5c2a5b 302a5c 0 | 5b5e2d3f3f 7a 1 | 5b5e30 216230 0 | 5b5e5e625b5e5c 30 1
    5b5e7a212a 5b 1 | 5b627a 5b627a 0 | 5b7a212a 217a5de930 0 | 5c21 5e5ee92161 0
    5c2a6221 2a6221 1 | 5c2ae92180215c 2ae92180215c 1 | 5c303f5c625c5b 3080625b 1 | 5c305c 305c 1
    5c305c6280 306280 1 | 5c5d5d5ee92d 5d5c2ae92d 0 | 5c5d5de9 e961e92a7a 0 | 5c622a2a5b 2d62 0
    5c627a7a625c61 627a7a6261 1 | 5ce95c5c3f307a 5ee95c30307a 0 | 5ce962 5de961 0 | 5d 2a802a5c 0
    5d 2ae97a5ee980 0 | 5d 2d2a7a 0 | 5d 2d305d5b 0 | 5d215c5b5e5d 2a5c5b7a5c 0
    5d215c7a215c2a 8021e97a212a 0 | 5d215d 21 0 | 5d215d21 2a5c2a 0 | 5d215d5e5d 615d5e307a 0
    5d215d626261 5de9e97ae95e 0 | 5d215e302d21 5d7a5e307a80 0 | 5d215e80218062 e95c2a80217a62 0 | 5d2d2d 3062615c30 0
    5d302de9 5d5b5ee9 0 | 5d3f2a 7a7a61 0 | 5d805c5e 5d805e 1 | 5d8080 5d8080 1
    5e21215c8061 6262 0 | 5e212161 802a30e92d7a 0 | 5e215c2de9 5e212de9 1 | 5e217a5d7a 5e217a5d7a 1
    5e2a 5e 1 | 5e2a625e2d5d21 2a30 0 | 5e3f302a 625d302a7a 0 | 5ee95de95e 5c5e62622d2d 0
    5ee95e30 807a5e30 0 | 5ee95e3f7a - 0 | 5ee95e5c 7a 0 | 612130e9615ce9 2121306261e9 0
    61217ae9 61217ae9 1 | 612a5d5b61 2d2d7a 0 | 612a5d625b7a2a 61302de98062 0 | 612a5d80 616180 0
    612d5b216180 - 0 | 615de9 615de9 1 | 61803f 2a8021 0 | 61e92a5d 61e92a5d 1
    61e9302a3080 61e93021803080 1 | 61e93f5c 61e92a5c 1 | 61e95c61 61e961 1 | 61e95e5c 61e95e5c 1
    61e961305e 61e961305e 1 | 61e9627a 61e9627a 1 | 61e980 61e980 1 | 61e9e9212a3f61 61e9e9216261 1
    62 e9805e62e9 0 | 62 e9e97a7a 0 | 6221212d 6221212d 1 | 62212a 62213061 1
    62212a80 62212d7a80 1 | 622a615c5e5e 62615e5e 1 | 623f8021 625d8021 1 | 623f8080 622a8080 1
    623fe9 6261e9 1 | 623fe95b21 622ae921 1 | 625b5d5d2a 802d61302d 0 | 625b5d5e3f 625b80615d 0
    625b5d627a 8062802ae9 0 | 625b5e 2a5e2a 0 | 625b5e 7a 0 | 625b5e5c 625e2a5c 0
    625b5e5d30 - 0 | 625b5e5e807a2d 2d5b2a5c807a2d 0 | 625b5e62 625b2161 0 | 625b5e7a62617a 6261807a2a617a 0
    625b5ee92162 62 0 | 625b61 - 0 | 625b612d5c 61615b5d7a5c 0 | 625b613f 625b5d5d 0
    625b615c3f 6230622a5e 0 | 625b615d7a 5d2a30e9 0 | 625b61615c2d2a 2d6161615c615c5b 0 | 625b617a5ee9 627a617a5ee9 0
    625c21 6221 1 | 625e5c6161 625e6161 1 | 625e7a5d2162 625e7a5d2162 1 | 628030802d622d 6280305d2d625b 0
    62803f 2a8062 0 | 62e92a 215b2a5c 0 | 7a2a61 7a6261 1 | 7a2d7a 5c7a305d21 0
    7a30 5e62 0 | 7a30 61802a 0 | 7a30 62e95d62 0 | 7a5d5be95b 5c2d61 0
    7a7a2a30 7a7a30 1 | 7a7a5c6262 7a7a6262 1 | 7a805be9 305d2d305e 0 | 7a80628080 7a80628080 1
    7ae9 5b5c5b2130 0 | 7ae9 5c217a 0 | 7ae9 5c5d5d613080 0 | 7ae9 5d617a 0
    7ae9 615b 0 | 7ae9 622d2d2d2d5d 0 | 7ae9 62e95d 0 | 7ae9 7a5d 0
    7ae9 7ae9e9 0 | 7ae9 80805d215c21 0 | 7ae9 e9e9 0 | 7ae921 7ae92a 0
    7ae9212a303f2d 7a217a2a 0 | 7ae92130627a 7ae921305c7a 0 | 7ae9215c8062 7a6121807a 0 | 7ae9215e216121 7a2a2121216121 0
    7ae92161 e95c215e 0 | 7ae92162213061 5b 0 | 7ae921802d 302162 0 | 7ae921e95e5e - 0
    7ae92a 5d5d2a5be9 0 | 7ae92a2a625e80 7ae95c5e80 0 | 7ae92a30803f30 e9e97a215b30 0 | 7ae92a3f5e217a 7ae92121e95d217a 0
    7ae92a5c6280 80215e627a5d 0 | 7ae92a6130 7a805d2a 0 | 7ae92a80 7ae95c 0 | 80 2a7a2d2d 0
    80 2a8061612d 0 | 80 2d2a61 0 | 80 2d30 0 | 80 2d5b5d 0
    80 2d5e 0 | 80 2d6121 0 | 803f80803f 805c808021 1 | 805c5d618062 805d618062 1
    805c5e62 805e62 1 | 805e3f30 2d7a7a215c5e 0 | 807a8030 807a8030 1 | 8080 8080 1
    80802a 808061e9 1 | 80802a615d 8080615d 1 | e9 3061307a2d30 0 | e92121e9 e92121e9 1
    e9215c e9215c 1 | e92a5c303fe92a e92a30e9e9 1 | e93f305e e92a305d 0 | e93f30617a5e5b e9e930617a615b 0
    e93f307a5c62 e930307a5b62 0 | e95b5d 7a5b5e5d5ee9 0 | e95c2ae97a e92ae97a 1 | e97a3f e97a5e 1
    e97ae92d5e5c5b e961e92d5b5b 0 | e97ae93080 e97a213080 0 | e9802d e9805c 0 | e9e9e9625c5d e9e9e9625d 1
    """
}
