import CLibFuzzer
import Glibc

/// Hands the process to libFuzzer, which calls `fuzzInlineSplitter` for every input.
@main
enum FuzzInlineSplitter {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzInlineSplitter(data!, size) })
    }
}
