#ifndef MODEL_AGENT_CZLIB_SHIM_H
#define MODEL_AGENT_CZLIB_SHIM_H
#include <zlib.h>

/* inflateInit2 is a macro (it passes the library version and struct size); Swift
   imports functions, not function-like macros. */
static inline int czlib_inflate_init(z_streamp stream, int windowBits) {
    return inflateInit2(stream, windowBits);
}
#endif
