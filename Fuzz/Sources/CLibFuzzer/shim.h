// libFuzzer's driver, in the toolchain's clang runtime (linked by -sanitize=fuzzer). The fuzz
// targets call it from their own `@main`: SwiftPM renames an executable's entry point, which
// hides libFuzzer's `main`.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
