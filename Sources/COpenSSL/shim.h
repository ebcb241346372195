#ifndef FLORIDAY_PROXY_COPENSSL_SHIM_H
#define FLORIDAY_PROXY_COPENSSL_SHIM_H

// OpenSSL's public headers, plus static inline wrappers for the function-like macros and
// non-trivial constants that Swift's Clang importer cannot see. Each wrapper expands the
// macro exactly as the header does, so behaviour is identical to C code using the macro.

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>

// MARK: SSL_CTX configuration

static inline long shim_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline int shim_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

/// Takes ownership of `x509` on success (returns 1).
static inline long shim_SSL_CTX_add_extra_chain_cert(SSL_CTX *ctx, X509 *x509) {
    return SSL_CTX_add_extra_chain_cert(ctx, x509);
}

// SSL_OP_* are built with SSL_OP_BIT(n), a cast-and-shift the importer drops.
static const uint64_t shim_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t shim_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;

static const long shim_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;

// MARK: Per-connection

/// SNI. Returns 1 on success.
static inline int shim_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

// MARK: Memory BIOs

/// Returns the number of bytes held and points `*data` at them (no copy).
static inline long shim_BIO_get_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}

/// What a read from an empty memory BIO returns; -1 makes it "retry later" (WANT_READ),
/// never end-of-file.
static inline long shim_BIO_set_mem_eof_return(BIO *bio, long value) {
    return BIO_set_mem_eof_return(bio, value);
}

// MARK: The record BIO

#include <stdlib.h>
#include <string.h>

/// The buffers of a record BIO: ciphertext from the network not yet read by OpenSSL (`in`),
/// and ciphertext OpenSSL wrote that the owner has not sent yet (`out`). One BIO serves as
/// both the read and the write BIO of an SSL. Compared with a pair of memory BIOs it copies
/// nothing twice, never zero-fills the memory it grows into, and answers OpenSSL's control
/// calls (pending, flush) from two fields.
typedef struct {
    unsigned char *in;
    size_t in_start, in_end, in_capacity;
    unsigned char *out;
    size_t out_length, out_capacity;
    /// Free a buffer once it is empty (sides that hold many idle connections). Otherwise an
    /// empty buffer is kept only up to `shim_record_kept_capacity`, so that one large transfer
    /// does not pin its peak for the life of the connection.
    int release_when_empty;
} shim_record_buffers;

static const size_t shim_record_kept_capacity = 16384;

static inline int shim_record_grow(unsigned char **buffer, size_t *capacity, size_t needed) {
    if (*capacity >= needed) return 1;
    // Sized to what passes (a small request or response is a few hundred bytes to a few KiB),
    // doubling beyond that.
    size_t wanted = *capacity < 1024 ? 1024 : *capacity * 2;
    if (wanted < needed) wanted = needed;
    unsigned char *grown = (unsigned char *)realloc(*buffer, wanted);
    if (grown == NULL) return 0;
    *buffer = grown;
    *capacity = wanted;
    return 1;
}

static inline int shim_record_bio_write(BIO *bio, const char *data, size_t length, size_t *written) {
    shim_record_buffers *b = (shim_record_buffers *)BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (!shim_record_grow(&b->out, &b->out_capacity, b->out_length + length)) return 0;
    memcpy(b->out + b->out_length, data, length);
    b->out_length += length;
    *written = length;
    return 1;
}

static inline int shim_record_bio_read(BIO *bio, char *data, size_t length, size_t *read) {
    shim_record_buffers *b = (shim_record_buffers *)BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    size_t available = b->in_end - b->in_start;
    if (available == 0) {
        // No bytes yet: "retry later" (WANT_READ), never end of stream.
        BIO_set_retry_read(bio);
        return 0;
    }
    size_t count = length < available ? length : available;
    memcpy(data, b->in + b->in_start, count);
    b->in_start += count;
    if (b->in_start == b->in_end) {
        b->in_start = b->in_end = 0;
        if (b->release_when_empty || b->in_capacity > shim_record_kept_capacity) { free(b->in); b->in = NULL; b->in_capacity = 0; }
    }
    *read = count;
    return 1;
}

static inline long shim_record_bio_ctrl(BIO *bio, int command, long number, void *pointer) {
    shim_record_buffers *b = (shim_record_buffers *)BIO_get_data(bio);
    (void)number; (void)pointer;
    switch (command) {
    case BIO_CTRL_PENDING: return (long)(b->in_end - b->in_start);
    case BIO_CTRL_WPENDING: return (long)b->out_length;
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
    }
}

static inline int shim_record_bio_create(BIO *bio) {
    shim_record_buffers *b = (shim_record_buffers *)calloc(1, sizeof(shim_record_buffers));
    if (b == NULL) return 0;
    BIO_set_data(bio, b);
    BIO_set_init(bio, 1);
    return 1;
}

static inline int shim_record_bio_destroy(BIO *bio) {
    shim_record_buffers *b = (shim_record_buffers *)BIO_get_data(bio);
    if (b != NULL) {
        free(b->in);
        free(b->out);
        free(b);
        BIO_set_data(bio, NULL);
    }
    return 1;
}

/// The method, made once by the caller (and kept for the life of the process).
static inline BIO_METHOD *shim_record_bio_method_new(void) {
    BIO_METHOD *method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "floriday-proxy record buffers");
    if (method == NULL) return NULL;
    BIO_meth_set_write_ex(method, shim_record_bio_write);
    BIO_meth_set_read_ex(method, shim_record_bio_read);
    BIO_meth_set_ctrl(method, shim_record_bio_ctrl);
    BIO_meth_set_create(method, shim_record_bio_create);
    BIO_meth_set_destroy(method, shim_record_bio_destroy);
    return method;
}

static inline shim_record_buffers *shim_record_bio_buffers(BIO *bio) {
    return (shim_record_buffers *)BIO_get_data(bio);
}

/// Appends ciphertext from the network; 0 when memory ran out.
static inline int shim_record_bio_feed(BIO *bio, const void *data, size_t length) {
    shim_record_buffers *b = (shim_record_buffers *)BIO_get_data(bio);
    if (b->in_start > 0 && b->in_end + length > b->in_capacity) {
        // Move what is left to the front before growing.
        memmove(b->in, b->in + b->in_start, b->in_end - b->in_start);
        b->in_end -= b->in_start;
        b->in_start = 0;
    }
    if (!shim_record_grow(&b->in, &b->in_capacity, b->in_end + length)) return 0;
    memcpy(b->in + b->in_end, data, length);
    b->in_end += length;
    return 1;
}

/// Makes room for `length` more bytes of output in one step: the ciphertext of a write about
/// to be made. Growing record by record would double the buffer (and copy what it holds)
/// several times during one large write.
static inline int shim_record_bio_reserve_output(BIO *bio, size_t length) {
    shim_record_buffers *b = (shim_record_buffers *)BIO_get_data(bio);
    return shim_record_grow(&b->out, &b->out_capacity, b->out_length + length);
}

/// The first `count` bytes of the pending output have been sent.
static inline void shim_record_bio_consume_output(BIO *bio, size_t count) {
    shim_record_buffers *b = (shim_record_buffers *)BIO_get_data(bio);
    if (count >= b->out_length) {
        b->out_length = 0;
        if (b->release_when_empty || b->out_capacity > shim_record_kept_capacity) { free(b->out); b->out = NULL; b->out_capacity = 0; }
    } else {
        memmove(b->out, b->out + count, b->out_length - count);
        b->out_length -= count;
    }
}

// MARK: Keys and certificates

/// EVP_EC_gen and EVP_PKEY_Q_keygen are a macro and a variadic function respectively.
static inline EVP_PKEY *shim_EVP_EC_gen(const char *curve) {
    return EVP_EC_gen(curve);
}

static inline void shim_X509V3_set_ctx_nodb(X509V3_CTX *ctx) {
    X509V3_set_ctx_nodb(ctx);
}

static const int shim_MBSTRING_ASC = MBSTRING_ASC;

static inline void shim_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}

#endif
