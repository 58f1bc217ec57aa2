/* SHA-256 (FIPS 180-4) in plain C, for the programs that hash a file and need nothing else of
 * a crypto library: jazari-worker checks the plugin it loads against the hash in the job's
 * record, and linking and starting libcrypto for that was a sixth of a short job's worker time
 * (OpenSSL 3 sets up its providers on the first digest); jazarid's plugin copies use it too, so
 * both sides of that check hash the same way. Not for secrets: no constant-time
 * care is needed for hashing public files. Tested against OpenSSL (tests/unit/sha256). */
#ifndef JZ_COMMON_SHA256_H
#define JZ_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define JZ_SHA256_BYTES 32

struct jz_sha256 {
    uint32_t h[8];
    uint64_t bytes;     /* message length so far */
    uint8_t block[64];  /* the partial block */
    size_t fill;        /* bytes in block */
};

void jz_sha256_init(struct jz_sha256 *c);
void jz_sha256_update(struct jz_sha256 *c, const void *data, size_t len);
void jz_sha256_final(struct jz_sha256 *c, uint8_t out[JZ_SHA256_BYTES]);
/* A digest as 64 lowercase hex digits and a NUL. */
void jz_sha256_to_hex(const uint8_t digest[JZ_SHA256_BYTES], char hex[2 * JZ_SHA256_BYTES + 1]);
/* The digest of data, as hex. */
void jz_sha256_hex(const void *data, size_t len, char hex[2 * JZ_SHA256_BYTES + 1]);
/* The digest of everything fd reads from its start (pread: its offset is left alone), as hex.
 * Returns 0, or -1 with errno set when a read failed. */
int jz_sha256_fd(int fd, char hex[2 * JZ_SHA256_BYTES + 1]);

#endif
