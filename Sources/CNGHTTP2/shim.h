#ifndef FLORIDAY_PROXY_CNGHTTP2_SHIM_H
#define FLORIDAY_PROXY_CNGHTTP2_SHIM_H

// nghttp2's public header, plus static inline wrappers for the macros Swift's Clang importer
// cannot see (casts and expressions). Each one expands the macro exactly as the header does.

#include <nghttp2/nghttp2.h>

static inline int32_t cnghttp2_max_window_size(void) { return NGHTTP2_MAX_WINDOW_SIZE; }
static inline int32_t cnghttp2_initial_window_size(void) { return NGHTTP2_INITIAL_WINDOW_SIZE; }
static inline size_t cnghttp2_client_magic_len(void) { return NGHTTP2_CLIENT_MAGIC_LEN; }

// MARK: A recycling allocator for a session

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/// nghttp2 allocates and frees about a dozen small blocks per stream (the stream, its outbound
/// items, a buffer per received header field). Under load those frees come in bursts (many
/// streams end in one read) and outnumber what glibc's per-thread cache keeps per size (7),
/// so the next burst of allocations takes malloc's slow paths. A pool keeps freed blocks of up
/// to `cnghttp2_pool_classes` * 16 bytes on a list per size class (up to
/// `cnghttp2_pool_kept_per_class` each) and hands them out again. One pool per session, used
/// on the session's thread only (nghttp2 calls it from inside the session's functions).
enum { cnghttp2_pool_granule = 16, cnghttp2_pool_classes = 32, cnghttp2_pool_kept_per_class = 128 };

typedef struct cnghttp2_pool_block { struct cnghttp2_pool_block *next; } cnghttp2_pool_block;

typedef struct {
    cnghttp2_pool_block *free[cnghttp2_pool_classes];
    unsigned int kept[cnghttp2_pool_classes];
} cnghttp2_pool;

// Every block starts with a 16-byte header (so the caller's pointer keeps malloc's alignment)
// holding its size class; `cnghttp2_pool_classes` marks a block too large to be kept.
static inline size_t cnghttp2_pool_class(size_t size) {
    return size == 0 ? 0 : (size - 1) / cnghttp2_pool_granule;
}

static inline void *cnghttp2_pool_malloc(size_t size, void *user) {
    cnghttp2_pool *pool = (cnghttp2_pool *)user;
    size_t class = cnghttp2_pool_class(size);
    unsigned char *raw;
    if (class < cnghttp2_pool_classes) {
        cnghttp2_pool_block *block = pool->free[class];
        if (block != NULL) {
            pool->free[class] = block->next;
            pool->kept[class] -= 1;
            return block;
        }
        raw = (unsigned char *)malloc(cnghttp2_pool_granule + (class + 1) * cnghttp2_pool_granule);
    } else {
        class = cnghttp2_pool_classes;
        raw = (unsigned char *)malloc(cnghttp2_pool_granule + size);
    }
    if (raw == NULL) return NULL;
    *(size_t *)raw = class;
    return raw + cnghttp2_pool_granule;
}

static inline void cnghttp2_pool_free(void *pointer, void *user) {
    if (pointer == NULL) return;
    cnghttp2_pool *pool = (cnghttp2_pool *)user;
    unsigned char *raw = (unsigned char *)pointer - cnghttp2_pool_granule;
    size_t class = *(size_t *)raw;
    if (class < cnghttp2_pool_classes && pool->kept[class] < cnghttp2_pool_kept_per_class) {
        cnghttp2_pool_block *block = (cnghttp2_pool_block *)pointer;
        block->next = pool->free[class];
        pool->free[class] = block;
        pool->kept[class] += 1;
        return;
    }
    free(raw);
}

static inline void *cnghttp2_pool_calloc(size_t count, size_t size, void *user) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void *pointer = cnghttp2_pool_malloc(count * size, user);
    if (pointer != NULL) memset(pointer, 0, count * size);
    return pointer;
}

static inline void *cnghttp2_pool_realloc(void *pointer, size_t size, void *user) {
    if (pointer == NULL) return cnghttp2_pool_malloc(size, user);
    unsigned char *raw = (unsigned char *)pointer - cnghttp2_pool_granule;
    size_t class = *(size_t *)raw;
    if (class == cnghttp2_pool_classes) {
        // Large blocks stay large (their header says so): plain realloc keeps the header.
        unsigned char *grown = (unsigned char *)realloc(raw, cnghttp2_pool_granule + size);
        return grown == NULL ? NULL : grown + cnghttp2_pool_granule;
    }
    size_t capacity = (class + 1) * cnghttp2_pool_granule;
    if (size <= capacity) return pointer;
    void *moved = cnghttp2_pool_malloc(size, user);
    if (moved == NULL) return NULL;
    memcpy(moved, pointer, capacity);
    cnghttp2_pool_free(pointer, user);
    return moved;
}

static inline cnghttp2_pool *cnghttp2_pool_new(void) {
    return (cnghttp2_pool *)calloc(1, sizeof(cnghttp2_pool));
}

/// Frees the pool and the blocks it keeps; only after the session that used it is deleted.
static inline void cnghttp2_pool_delete(cnghttp2_pool *pool) {
    if (pool == NULL) return;
    for (int class = 0; class < cnghttp2_pool_classes; class++) {
        cnghttp2_pool_block *block = pool->free[class];
        while (block != NULL) {
            cnghttp2_pool_block *next = block->next;
            free((unsigned char *)block - cnghttp2_pool_granule);
            block = next;
        }
    }
    free(pool);
}

/// The nghttp2_mem for `pool` (nghttp2 copies it; the pool must outlive the session).
static inline nghttp2_mem cnghttp2_pool_mem(cnghttp2_pool *pool) {
    nghttp2_mem mem = {pool, cnghttp2_pool_malloc, cnghttp2_pool_free, cnghttp2_pool_calloc, cnghttp2_pool_realloc};
    return mem;
}

#endif
