/* The MLP model file written by the train plugin and read by infer: a versioned little-endian
 * binary format with a CRC-32 trailer (documented in docs/workloads.md), plus the byte-buffer
 * helpers the train checkpoint reuses. */
#ifndef JZ_PLUGIN_MODEL_H
#define JZ_PLUGIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

#define JZ_MLP_MAGIC "JZMLP\0\r\n" /* 8 bytes; \r\n catches text-mode transfers */
#define JZ_MLP_VERSION 1u
#define JZ_MLP_MAX_LAYERS 16       /* weight layers (hidden layers + 1) */
#define JZ_MLP_MAX_WIDTH 65536u    /* largest layer width, input included */
#define JZ_MLP_MAX_PARAMS ((size_t)1 << 28)
#define JZ_MLP_MAX_FILE ((size_t)1 << 31)

enum jz_mlp_act { JZ_MLP_RELU = 1, JZ_MLP_GELU = 2 };

/* sizes[0] inputs, sizes[1..L-1] hidden, sizes[L] classes. w[l] is sizes[l] x sizes[l+1]
 * (row-major, input-major: z = x W + b), b[l] has sizes[l+1] entries. mean/std normalise the
 * raw input features: x' = (x - mean) / std. */
struct jz_mlp {
    uint32_t n_layers;
    uint32_t sizes[JZ_MLP_MAX_LAYERS + 1];
    uint32_t activation; /* enum jz_mlp_act */
    float *mean, *std;
    float *w[JZ_MLP_MAX_LAYERS], *b[JZ_MLP_MAX_LAYERS];
};

/* Checks the shape and allocates all arrays (zeroed) of a model with n_layers + 1 sizes.
 * On failure nothing is allocated. Free with jz_mlp_free. */
int jz_mlp_alloc(struct jz_mlp *m, uint32_t n_layers, const uint32_t *sizes, uint32_t activation,
                 struct jz_error *err);
void jz_mlp_free(struct jz_mlp *m); /* accepts NULL and a zeroed model */
size_t jz_mlp_param_count(const struct jz_mlp *m);

/* Serialises into a malloc'd buffer the caller owns (*buf, *len). */
int jz_mlp_encode(const struct jz_mlp *m, uint8_t **buf, size_t *len, struct jz_error *err);
/* Parses a whole model image; refuses a wrong magic, an unknown version, bad sizes, a length that
 * differs from what the header implies (truncated or trailing bytes), a CRC mismatch and
 * non-finite numbers, each with its own message (JZ_ECORRUPT). On success *m is owned by the
 * caller. */
int jz_mlp_decode(const uint8_t *buf, size_t len, struct jz_mlp *m, struct jz_error *err);

/* File forms: save writes path.tmp then renames it over path. */
int jz_mlp_save(const struct jz_mlp *m, const char *path, struct jz_error *err);
int jz_mlp_load(const char *path, struct jz_mlp *m, struct jz_error *err);

/* Reads a whole file (at most max bytes) into a malloc'd buffer the caller owns. */
int jz_file_read_all(const char *path, size_t max, uint8_t **buf, size_t *len,
                     struct jz_error *err);
/* Writes len bytes to path.tmp, fsyncs and renames it to path. */
int jz_file_write_atomic(const char *path, const void *buf, size_t len, struct jz_error *err);

/* A growable little-endian byte writer and a bounds-checked reader. */
struct jz_bytes {
    uint8_t *data;
    size_t len, cap;
    int failed; /* set when an allocation failed; later puts are ignored */
};
void jz_bytes_put(struct jz_bytes *b, const void *p, size_t n);
void jz_bytes_u32(struct jz_bytes *b, uint32_t v);
void jz_bytes_u64(struct jz_bytes *b, uint64_t v);
void jz_bytes_f64(struct jz_bytes *b, double v);

struct jz_reader {
    const uint8_t *p;
    size_t left;
};
int jz_reader_take(struct jz_reader *r, void *dst, size_t n); /* 0 or -1 when short */
int jz_reader_u32(struct jz_reader *r, uint32_t *v);
int jz_reader_u64(struct jz_reader *r, uint64_t *v);
int jz_reader_f64(struct jz_reader *r, double *v);

/* CRC-32 (zlib's, IEEE polynomial) of a byte range. */
uint32_t jz_crc32(const void *p, size_t n);

#endif
