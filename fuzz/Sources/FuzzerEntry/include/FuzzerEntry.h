#include <stddef.h>
#include <stdint.h>

/// Entry point SwiftPM's Linux link line names; it runs libFuzzer's driver.
int HTTP1Fuzz_main(int argc, char **argv);
