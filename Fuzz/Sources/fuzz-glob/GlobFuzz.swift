import RelayCore

/// libFuzzer entry point for `GlobMatcher` (README "Fuzzing").
///
/// Input: bytes 0–1 (big-endian, modulo what is left) give the pattern's length; the pattern
/// follows, the string is the rest. `GlobMatcher` must agree with `ReferenceGlob`, an
/// independent matcher of Redis's semantics, and with three facts that need no matcher. Time
/// is bounded by libFuzzer's `-timeout`, which `scripts/fuzz` sets.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGlob(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard input.count >= 2 else { return 0 }
    let body = UnsafeRawBufferPointer(rebasing: input[2...])
    let patternLength = (Int(input[0]) << 8 | Int(input[1])) % (body.count + 1)
    let pattern = UnsafeRawBufferPointer(rebasing: body[..<patternLength])
    let string = UnsafeRawBufferPointer(rebasing: body[patternLength...])

    let matched = GlobMatcher.matches(pattern: pattern, string: string)
    let expected = ReferenceGlob(pattern: Array(pattern)).matches(Array(string))
    check(matched == expected, "GlobMatcher says \(matched), reference \(expected)", pattern, string)

    if !pattern.contains(where: ReferenceGlob.isSpecial) {
        check(matched == pattern.elementsEqual(string), "a pattern without special bytes matched another string", pattern, string)
    }

    // `\` before every byte: a pattern that matches exactly the string it spells.
    let escaped = string.flatMap { [UInt8(ascii: "\\"), $0] }
    escaped.withUnsafeBytes { escapedPattern in
        check(GlobMatcher.matches(pattern: escapedPattern, string: string), "the escaped string did not match itself", escapedPattern, string)
        check(GlobMatcher.matches(pattern: escapedPattern, string: pattern) == string.elementsEqual(pattern),
              "the escaped string matched another string", escapedPattern, pattern)
    }

    // Redis's `*` matches every string but the empty one (`stringmatchlen` never enters its
    // loop for an empty string; README "Fuzzing" has the redis-server check).
    let star: [UInt8] = [UInt8(ascii: "*")]
    star.withUnsafeBytes { starPattern in
        check(GlobMatcher.matches(pattern: starPattern, string: string) == !string.isEmpty, "'*' vs a string of \(string.count) bytes", starPattern, string)
    }
    return 0
}

/// A finding: `fatalError` traps (libFuzzer keeps the input) and prints in release builds too.
func check(_ condition: Bool, _ what: @autoclosure () -> String, _ pattern: UnsafeRawBufferPointer, _ string: UnsafeRawBufferPointer) {
    if !condition { fatalError("\(what()): pattern \(hex(pattern)) string \(hex(string))") }
}

func hex(_ bytes: UnsafeRawBufferPointer) -> String {
    bytes.map { b in
        let s = String(b, radix: 16)
        return b < 16 ? "0" + s : s
    }.joined()
}
