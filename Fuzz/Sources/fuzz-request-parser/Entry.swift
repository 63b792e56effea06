import CLibFuzzer
import Glibc

/// Hands the process to libFuzzer, which calls `fuzzRequestParser` for every input.
@main
enum FuzzRequestParser {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzRequestParser(data!, size) })
    }
}
