#ifndef FLORIDAY_PROXY_CNGHTTP2_SHIM_H
#define FLORIDAY_PROXY_CNGHTTP2_SHIM_H

// nghttp2's public header, plus static inline wrappers for the macros Swift's Clang importer
// cannot see (casts and expressions). Each one expands the macro exactly as the header does.

#include <nghttp2/nghttp2.h>

static inline int32_t cnghttp2_max_window_size(void) { return NGHTTP2_MAX_WINDOW_SIZE; }
static inline int32_t cnghttp2_initial_window_size(void) { return NGHTTP2_INITIAL_WINDOW_SIZE; }
static inline size_t cnghttp2_client_magic_len(void) { return NGHTTP2_CLIENT_MAGIC_LEN; }

#endif
