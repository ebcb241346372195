#include "FuzzerEntry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

// On Linux, SwiftPM links an executable target with `main` defined as `<target>_main`, so
// libFuzzer's own `main` is never pulled in. Start libFuzzer's driver from there instead.
int HTTP1Fuzz_main(int argc, char **argv) {
    return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
}
