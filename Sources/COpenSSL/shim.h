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
