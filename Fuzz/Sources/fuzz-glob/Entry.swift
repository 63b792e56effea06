import CLibFuzzer
import Glibc

/// Hands the process to libFuzzer, which calls `fuzzGlob` for every input.
@main
enum FuzzGlob {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzGlob(data!, size) })
    }
}
