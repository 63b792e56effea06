/// Redis's `sdssplitargs`: splits an inline request line into arguments, with `"…"` (C escapes,
/// `\xHH`) and `'…'` quoting. Returns nil for unbalanced quotes, as Redis does.
///
/// Like the C original it reads the line as a C string: a NUL byte ends it.
public enum InlineSplitter {
    public static func split<C: Collection>(_ line: C) -> [[UInt8]]? where C.Element == UInt8 {
        // Copy up to the first NUL, then append a NUL so that look-ahead mirrors C's `*(p+1)`.
        var s: [UInt8] = []
        s.reserveCapacity(line.count + 4)
        for b in line {
            if b == 0 { break }
            s.append(b)
        }
        s.append(0)
        s.append(0)
        s.append(0)
        s.append(0)

        func isSpace(_ c: UInt8) -> Bool {
            c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0B || c == 0x0C || c == 0x0D
        }
        func isHex(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)
        }
        func hexValue(_ c: UInt8) -> UInt8 {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return c - 0x41 + 10
            }
        }

        var result: [[UInt8]] = []
        var p = 0
        while true {
            while s[p] != 0 && isSpace(s[p]) { p += 1 }
            if s[p] == 0 { return result }
            var inDouble = false
            var inSingle = false
            var done = false
            var current: [UInt8] = []
            while !done {
                let c = s[p]
                if inDouble {
                    if c == UInt8(ascii: "\\") && s[p + 1] == UInt8(ascii: "x") && isHex(s[p + 2]) && isHex(s[p + 3]) {
                        current.append(hexValue(s[p + 2]) * 16 + hexValue(s[p + 3]))
                        p += 3
                    } else if c == UInt8(ascii: "\\") && s[p + 1] != 0 {
                        p += 1
                        switch s[p] {
                        case UInt8(ascii: "n"): current.append(0x0A)
                        case UInt8(ascii: "r"): current.append(0x0D)
                        case UInt8(ascii: "t"): current.append(0x09)
                        case UInt8(ascii: "b"): current.append(0x08)
                        case UInt8(ascii: "a"): current.append(0x07)
                        default: current.append(s[p])
                        }
                    } else if c == UInt8(ascii: "\"") {
                        if s[p + 1] != 0 && !isSpace(s[p + 1]) { return nil }
                        done = true
                    } else if c == 0 {
                        return nil
                    } else {
                        current.append(c)
                    }
                } else if inSingle {
                    if c == UInt8(ascii: "\\") && s[p + 1] == UInt8(ascii: "'") {
                        p += 1
                        current.append(UInt8(ascii: "'"))
                    } else if c == UInt8(ascii: "'") {
                        if s[p + 1] != 0 && !isSpace(s[p + 1]) { return nil }
                        done = true
                    } else if c == 0 {
                        return nil
                    } else {
                        current.append(c)
                    }
                } else {
                    switch c {
                    case 0x20, 0x0A, 0x0D, 0x09, 0x00: done = true
                    case UInt8(ascii: "\""): inDouble = true
                    case UInt8(ascii: "'"): inSingle = true
                    default: current.append(c)
                    }
                }
                if s[p] != 0 { p += 1 }
            }
            result.append(current)
        }
    }
}
