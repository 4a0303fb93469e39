#ifndef MODEL_AGENT_CFUZZSHIM_H
#define MODEL_AGENT_CFUZZSHIM_H
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's driver, for a program that keeps its own main (SwiftPM links an
   executable's top-level code as main). Defined only in -sanitize=fuzzer builds. */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
#endif
