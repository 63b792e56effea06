/// Writes arguments as one inline line that Redis's `sdssplitargs` reads back as the same
/// arguments, in the four spellings it accepts, chosen per argument from a seed so that the
/// fuzzer varies them: `"\xHH…"`, `"…"` with C escapes, `'…'` and bare words.
enum Quoting {
    enum Style: CaseIterable {
        case hex, cEscapes, single, bare
    }

    /// What ends a bare word (`sdssplitargs`'s own list: not `\v` or `\f`).
    static let wordEnds: [UInt8] = [0x20, 0x0A, 0x0D, 0x09]
    /// What `isspace` skips between arguments.
    static let spaces: [UInt8] = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]

    static func line(_ args: [[UInt8]], seed: UInt8) -> [UInt8] {
        var state = UInt32(seed) &* 2_654_435_761 | 1
        func next() -> Int {
            // xorshift: cheap, deterministic variety from one byte.
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            return Int(state >> 8)
        }
        func separator() -> [UInt8] {
            var sep = [wordEnds[next() % wordEnds.count]]
            for _ in 0..<(next() % 3) { sep.append(spaces[next() % spaces.count]) }
            return sep
        }

        var line: [UInt8] = next() % 2 == 0 ? separator() : []
        for (k, arg) in args.enumerated() {
            if k > 0 { line += separator() }
            line += quoted(arg, Style.allCases[next() % Style.allCases.count], choice: next())
        }
        if next() % 2 == 0 { line += separator() }
        return line
    }

    static func quoted(_ arg: [UInt8], _ style: Style, choice: Int) -> [UInt8] {
        let q = UInt8(ascii: "\""), sq = UInt8(ascii: "'"), bs = UInt8(ascii: "\\")
        switch style {
        case .hex:
            return [q] + arg.flatMap { [bs, UInt8(ascii: "x")] + hexDigits($0, upper: choice % 2 == 0) } + [q]
        case .cEscapes:
            let named: [UInt8: UInt8] = [0x0A: UInt8(ascii: "n"), 0x0D: UInt8(ascii: "r"), 0x09: UInt8(ascii: "t"),
                                         0x08: UInt8(ascii: "b"), 0x07: UInt8(ascii: "a")]
            var out = [q]
            for (k, b) in arg.enumerated() {
                if b == q || b == bs {
                    out += [bs, b]
                } else if b == 0 {
                    out += [bs, UInt8(ascii: "x"), UInt8(ascii: "0"), UInt8(ascii: "0")]
                } else if let name = named[b], (choice >> (k % 16)) & 1 == 1 {
                    out += [bs, name]
                } else {
                    out.append(b)
                }
            }
            return out + [q]
        case .single:
            // Inside '…' only `\'` is an escape, so a NUL or a final `\` cannot be written.
            guard !arg.contains(0), arg.last != bs else { return quoted(arg, .hex, choice: choice) }
            return [sq] + arg.flatMap { $0 == sq ? [bs, sq] : [$0] } + [sq]
        case .bare:
            let breaks: [UInt8] = wordEnds + [0, q, sq]
            guard let first = arg.first, !spaces.contains(first), !arg.contains(where: breaks.contains) else {
                return quoted(arg, .cEscapes, choice: choice)
            }
            return arg
        }
    }

    static func hexDigits(_ b: UInt8, upper: Bool) -> [UInt8] {
        let digits = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        return [digits[Int(b >> 4)], digits[Int(b & 0x0F)]]
    }
}
