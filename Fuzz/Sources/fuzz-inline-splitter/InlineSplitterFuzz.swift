import RelayCore

/// libFuzzer entry point for `InlineSplitter` (README "Fuzzing").
///
/// Two round trips through `Quoting`: the arguments that `split` makes of the input itself,
/// and arguments taken directly from the input (byte 0 chooses the quoting, the rest is cut at
/// every 0xFF). Either way, quoting the arguments and splitting the line again must give them
/// back byte for byte.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInlineSplitter(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let seed = input.first else { return 0 }

    if let args = InlineSplitter.split(input) {
        roundTrip(args, seed: seed)
    }
    let direct = input.dropFirst().split(separator: 0xFF, omittingEmptySubsequences: false).map(Array.init)
    roundTrip(direct, seed: seed)
    return 0
}

func roundTrip(_ args: [[UInt8]], seed: UInt8) {
    let line = Quoting.line(args, seed: seed)
    guard let again = InlineSplitter.split(line) else {
        fatalError("quoted line \(hex(line)) of \(args.map(hex)) did not split")
    }
    if again != args {
        fatalError("quoted line \(hex(line)) split into \(again.map(hex)), not \(args.map(hex))")
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { b in
        let s = String(b, radix: 16)
        return b < 16 ? "0" + s : s
    }.joined()
}
