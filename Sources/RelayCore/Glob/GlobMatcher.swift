/// Redis's glob matching (`stringmatchlen` in `src/util.c`, case-sensitive), ported byte for byte:
/// `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` (reversed ranges swapped), `\` escapes, an unclosed `[`,
/// and the recursion cap of 1000 nested `*` that newer Redis adds against abusive patterns.
///
/// Quirks are kept on purpose: bytes compare as C's signed `char` inside ranges, and a read one
/// past the pattern's end sees the NUL that terminates Redis's strings.
public enum GlobMatcher {
    public static func matches(pattern: UnsafeRawBufferPointer, string: UnsafeRawBufferPointer) -> Bool {
        var skipLongerMatches = false
        return match(pattern, 0, string, 0, &skipLongerMatches, 0)
    }

    public static func matches<P: Collection, S: Collection>(pattern: P, string: S) -> Bool
    where P.Element == UInt8, S.Element == UInt8 {
        let p = Array(pattern)
        let s = Array(string)
        return p.withUnsafeBytes { pp in s.withUnsafeBytes { sp in matches(pattern: pp, string: sp) } }
    }

    /// Byte of the pattern at `i`, or NUL at and past its end (C's terminator).
    @inline(__always)
    private static func at(_ buffer: UnsafeRawBufferPointer, _ i: Int) -> UInt8 {
        i < buffer.count ? buffer[i] : 0
    }

    @inline(__always)
    private static func signed(_ b: UInt8) -> Int { Int(Int8(bitPattern: b)) }

    private static func match(
        _ pattern: UnsafeRawBufferPointer, _ pStart: Int,
        _ string: UnsafeRawBufferPointer, _ sStart: Int,
        _ skipLongerMatches: inout Bool, _ nesting: Int
    ) -> Bool {
        if nesting > 1000 { return false }
        var p = pStart
        var s = sStart
        var patternLen = pattern.count - p
        var stringLen = string.count - s

        while patternLen > 0 && stringLen > 0 {
            switch pattern[p] {
            case UInt8(ascii: "*"):
                while patternLen > 0 && at(pattern, p + 1) == UInt8(ascii: "*") {
                    p += 1
                    patternLen -= 1
                }
                if patternLen == 1 { return true }
                while stringLen > 0 {
                    if match(pattern, p + 1, string, s, &skipLongerMatches, nesting + 1) { return true }
                    if skipLongerMatches { return false }
                    s += 1
                    stringLen -= 1
                }
                skipLongerMatches = true
                return false
            case UInt8(ascii: "?"):
                s += 1
                stringLen -= 1
            case UInt8(ascii: "["):
                p += 1
                patternLen -= 1
                let negate = at(pattern, p) == UInt8(ascii: "^")
                if negate {
                    p += 1
                    patternLen -= 1
                }
                var matched = false
                let c = string[s]
                while true {
                    let pc = at(pattern, p)
                    if pc == UInt8(ascii: "\\") && patternLen >= 2 {
                        p += 1
                        patternLen -= 1
                        if at(pattern, p) == c { matched = true }
                    } else if pc == UInt8(ascii: "]") {
                        break
                    } else if patternLen == 0 {
                        p -= 1
                        patternLen += 1
                        break
                    } else if patternLen >= 3 && at(pattern, p + 1) == UInt8(ascii: "-") {
                        var start = signed(pc)
                        var end = signed(at(pattern, p + 2))
                        let sc = signed(c)
                        if start > end { swap(&start, &end) }
                        p += 2
                        patternLen -= 2
                        if sc >= start && sc <= end { matched = true }
                    } else if pc == c {
                        matched = true
                    }
                    p += 1
                    patternLen -= 1
                }
                if negate { matched.toggle() }
                if !matched { return false }
                s += 1
                stringLen -= 1
            case UInt8(ascii: "\\"):
                if patternLen >= 2 {
                    p += 1
                    patternLen -= 1
                }
                if at(pattern, p) != string[s] { return false }
                s += 1
                stringLen -= 1
            default:
                if pattern[p] != string[s] { return false }
                s += 1
                stringLen -= 1
            }
            p += 1
            patternLen -= 1
            if stringLen == 0 {
                while at(pattern, p) == UInt8(ascii: "*") {
                    p += 1
                    patternLen -= 1
                }
                break
            }
        }
        return patternLen == 0 && stringLen == 0
    }
}
