#ifndef MODEL_AGENT_CISAL_SHIM_H
#define MODEL_AGENT_CISAL_SHIM_H
/* Intel ISA-L's CRC routines pick the fastest code for the CPU at run time (carry-less
   multiply folding, SSE4.2 crc32, or the aarch64 CRC instructions). */
#include <isa-l/crc.h>
#endif
