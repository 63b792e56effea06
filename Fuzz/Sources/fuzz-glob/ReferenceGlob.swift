/// A glob matcher written from Redis's documented behaviour rather than ported from
/// `stringmatchlen`, so that the fuzzer can compare the two: the pattern is first read into
/// one-byte tokens and stars (where Redis's quirks live: `\` at the end, an unclosed `[`, `]`
/// right after `[`, `a-]`, signed ranges), then matched by the textbook greedy algorithm.
struct ReferenceGlob {
    enum Token {
        case star
        case any
        case byte(UInt8)
        /// Member bytes, and whether the class was negated with `^`.
        case set([Bool], negated: Bool)

        func accepts(_ c: UInt8) -> Bool {
            switch self {
            case .star: return false
            case .any: return true
            case .byte(let b): return b == c
            case .set(let members, let negated): return members[Int(c)] != negated
            }
        }

        var isStar: Bool {
            if case .star = self { return true }
            return false
        }
    }

    /// `stringmatchlen` gives up past 1000 nested `*` (against abusive patterns): a pattern
    /// whose 1001st run of stars is not its tail matches nothing.
    static let maxStarRuns = 1000

    let tokens: [Token]

    static func isSpecial(_ b: UInt8) -> Bool {
        b == UInt8(ascii: "*") || b == UInt8(ascii: "?") || b == UInt8(ascii: "[") || b == UInt8(ascii: "\\")
    }

    init(pattern p: [UInt8]) {
        var tokens: [Token] = []
        var i = 0
        while i < p.count {
            switch p[i] {
            case UInt8(ascii: "*"):
                tokens.append(.star)
                i += 1
            case UInt8(ascii: "?"):
                tokens.append(.any)
                i += 1
            case UInt8(ascii: "\\"):
                // A trailing `\` is itself.
                if i + 1 < p.count {
                    tokens.append(.byte(p[i + 1]))
                    i += 2
                } else {
                    tokens.append(.byte(p[i]))
                    i += 1
                }
            case UInt8(ascii: "["):
                i += 1
                let negated = i < p.count && p[i] == UInt8(ascii: "^")
                if negated { i += 1 }
                var members = [Bool](repeating: false, count: 256)
                // An unclosed class ends with the pattern.
                while i < p.count {
                    if p[i] == UInt8(ascii: "\\") && i + 1 < p.count {
                        members[Int(p[i + 1])] = true
                        i += 2
                    } else if p[i] == UInt8(ascii: "]") {
                        i += 1
                        break
                    } else if i + 2 < p.count && p[i + 1] == UInt8(ascii: "-") {
                        // C's `char` is signed on the platforms Redis runs on: 0x80–0xFF sort below 0.
                        var low = Int(Int8(bitPattern: p[i]))
                        var high = Int(Int8(bitPattern: p[i + 2]))
                        if low > high { swap(&low, &high) }
                        for c in 0..<256 where (low...high).contains(Int(Int8(bitPattern: UInt8(c)))) {
                            members[c] = true
                        }
                        i += 3
                    } else {
                        members[Int(p[i])] = true
                        i += 1
                    }
                }
                tokens.append(.set(members, negated: negated))
            default:
                tokens.append(.byte(p[i]))
                i += 1
            }
        }
        self.tokens = tokens
    }

    func matches(_ s: [UInt8]) -> Bool {
        // Redis never enters its loop for an empty string: only the empty pattern matches it.
        if s.isEmpty { return tokens.isEmpty }
        if !withinStarRunLimit { return false }
        var t = 0
        var i = 0
        var lastStar: Int?
        var resumeAt = 0
        while i < s.count {
            if t < tokens.count && tokens[t].isStar {
                lastStar = t
                resumeAt = i
                t += 1
            } else if t < tokens.count && tokens[t].accepts(s[i]) {
                t += 1
                i += 1
            } else if let star = lastStar {
                t = star + 1
                resumeAt += 1
                i = resumeAt
            } else {
                return false
            }
        }
        while t < tokens.count && tokens[t].isStar { t += 1 }
        return t == tokens.count
    }

    private var withinStarRunLimit: Bool {
        var runs = 0
        for (k, token) in tokens.enumerated() where token.isStar && (k == 0 || !tokens[k - 1].isStar) {
            runs += 1
            if runs > Self.maxStarRuns {
                return tokens[k...].allSatisfy(\.isStar)
            }
        }
        return true
    }
}
