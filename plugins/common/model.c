/* The MLP model format (see model.h and docs/workloads.md): header, sizes, normalisation,
 * weights and biases as float32, then a CRC-32 of everything before it. */
#define _GNU_SOURCE
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model format is little-endian; this host needs byte swapping added"
#endif

uint32_t jz_crc32(const void *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *b = p;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

void jz_bytes_put(struct jz_bytes *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n)
            nc *= 2;
        uint8_t *d = realloc(b->data, nc);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = nc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
void jz_bytes_u32(struct jz_bytes *b, uint32_t v) { jz_bytes_put(b, &v, 4); }
void jz_bytes_u64(struct jz_bytes *b, uint64_t v) { jz_bytes_put(b, &v, 8); }
void jz_bytes_f64(struct jz_bytes *b, double v) { jz_bytes_put(b, &v, 8); }

int jz_reader_take(struct jz_reader *r, void *dst, size_t n)
{
    if (r->left < n)
        return -1;
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return 0;
}
int jz_reader_u32(struct jz_reader *r, uint32_t *v) { return jz_reader_take(r, v, 4); }
int jz_reader_u64(struct jz_reader *r, uint64_t *v) { return jz_reader_take(r, v, 8); }
int jz_reader_f64(struct jz_reader *r, double *v) { return jz_reader_take(r, v, 8); }

static int check_shape(uint32_t n_layers, const uint32_t *sizes, uint32_t activation,
                       size_t *params, struct jz_error *err)
{
    if (n_layers < 1 || n_layers > JZ_MLP_MAX_LAYERS)
        return jz_error_set(err, JZ_ECORRUPT, "model has %u layers (1..%d)", n_layers,
                            JZ_MLP_MAX_LAYERS);
    if (activation != JZ_MLP_RELU && activation != JZ_MLP_GELU)
        return jz_error_set(err, JZ_ECORRUPT, "unknown activation code %u", activation);
    size_t total = 2 * (size_t)sizes[0];
    for (uint32_t l = 0; l <= n_layers; l++)
        if (sizes[l] < 1 || sizes[l] > JZ_MLP_MAX_WIDTH)
            return jz_error_set(err, JZ_ECORRUPT, "layer width %u out of range (1..%u)", sizes[l],
                                JZ_MLP_MAX_WIDTH);
    if (sizes[n_layers] < 2)
        return jz_error_set(err, JZ_ECORRUPT, "a classifier needs at least 2 classes");
    for (uint32_t l = 0; l < n_layers; l++)
        total += (size_t)sizes[l] * sizes[l + 1] + sizes[l + 1];
    if (total > JZ_MLP_MAX_PARAMS)
        return jz_error_set(err, JZ_ELIMIT, "model has %zu numbers (limit %zu)", total,
                            JZ_MLP_MAX_PARAMS);
    *params = total;
    return 0;
}

int jz_mlp_alloc(struct jz_mlp *m, uint32_t n_layers, const uint32_t *sizes, uint32_t activation,
                 struct jz_error *err)
{
    size_t params;
    int rc = check_shape(n_layers, sizes, activation, &params, err);
    if (rc)
        return rc;
    struct jz_mlp t = {.n_layers = n_layers, .activation = activation};
    memcpy(t.sizes, sizes, (n_layers + 1) * sizeof *sizes);
    t.mean = calloc(sizes[0], sizeof(float));
    t.std = calloc(sizes[0], sizeof(float));
    bool ok = t.mean && t.std;
    for (uint32_t l = 0; l < n_layers && ok; l++) {
        t.w[l] = calloc((size_t)sizes[l] * sizes[l + 1], sizeof(float));
        t.b[l] = calloc(sizes[l + 1], sizeof(float));
        ok = t.w[l] && t.b[l];
    }
    if (!ok) {
        jz_mlp_free(&t);
        return jz_error_set(err, JZ_ENOMEM, "out of memory for a model of %zu numbers", params);
    }
    *m = t;
    return 0;
}

void jz_mlp_free(struct jz_mlp *m)
{
    if (!m)
        return;
    free(m->mean);
    free(m->std);
    for (int l = 0; l < JZ_MLP_MAX_LAYERS; l++) {
        free(m->w[l]);
        free(m->b[l]);
    }
    memset(m, 0, sizeof *m);
}

size_t jz_mlp_param_count(const struct jz_mlp *m)
{
    size_t n = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        n += (size_t)m->sizes[l] * m->sizes[l + 1] + m->sizes[l + 1];
    return n;
}

/* Header: magic[8] version activation n_layers flags(0) payload_bytes(u64), then the sizes. */
#define HEADER_BYTES 32

int jz_mlp_encode(const struct jz_mlp *m, uint8_t **buf, size_t *len, struct jz_error *err)
{
    size_t params;
    int rc = check_shape(m->n_layers, m->sizes, m->activation, &params, err);
    if (rc)
        return rc;
    uint64_t payload = 4ull * (m->n_layers + 1) + 4ull * params;
    struct jz_bytes b = {0};
    jz_bytes_put(&b, JZ_MLP_MAGIC, 8);
    jz_bytes_u32(&b, JZ_MLP_VERSION);
    jz_bytes_u32(&b, m->activation);
    jz_bytes_u32(&b, m->n_layers);
    jz_bytes_u32(&b, 0);
    jz_bytes_u64(&b, payload);
    jz_bytes_put(&b, m->sizes, 4ull * (m->n_layers + 1));
    jz_bytes_put(&b, m->mean, 4ull * m->sizes[0]);
    jz_bytes_put(&b, m->std, 4ull * m->sizes[0]);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        jz_bytes_put(&b, m->w[l], 4ull * m->sizes[l] * m->sizes[l + 1]);
        jz_bytes_put(&b, m->b[l], 4ull * m->sizes[l + 1]);
    }
    if (!b.failed)
        jz_bytes_u32(&b, jz_crc32(b.data, b.len));
    if (b.failed) {
        free(b.data);
        return jz_error_set(err, JZ_ENOMEM, "out of memory encoding the model");
    }
    *buf = b.data;
    *len = b.len;
    return 0;
}

static bool all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

int jz_mlp_decode(const uint8_t *buf, size_t len, struct jz_mlp *m, struct jz_error *err)
{
    if (len < HEADER_BYTES + 4)
        return jz_error_set(err, JZ_ECORRUPT, "model file truncated: %zu bytes is shorter than the header",
                            len);
    if (memcmp(buf, JZ_MLP_MAGIC, 8) != 0)
        return jz_error_set(err, JZ_ECORRUPT, "not a Jazari MLP model file (bad magic)");
    struct jz_reader r = {buf + 8, len - 8};
    uint32_t version = 0, act = 0, n_layers = 0, flags = 0;
    uint64_t payload = 0;
    jz_reader_u32(&r, &version);
    jz_reader_u32(&r, &act);
    jz_reader_u32(&r, &n_layers);
    jz_reader_u32(&r, &flags);
    jz_reader_u64(&r, &payload);
    if (version != JZ_MLP_VERSION)
        return jz_error_set(err, JZ_ECORRUPT, "model format version %u is not supported (this build reads %u)",
                            version, JZ_MLP_VERSION);
    if (n_layers < 1 || n_layers > JZ_MLP_MAX_LAYERS)
        return jz_error_set(err, JZ_ECORRUPT, "model has %u layers (1..%d)", n_layers,
                            JZ_MLP_MAX_LAYERS);
    if (flags != 0)
        return jz_error_set(err, JZ_ECORRUPT, "model has unknown flags 0x%x", flags);
    uint32_t sizes[JZ_MLP_MAX_LAYERS + 1];
    if (jz_reader_take(&r, sizes, 4ull * (n_layers + 1)) != 0)
        return jz_error_set(err, JZ_ECORRUPT, "model file truncated inside the layer sizes");
    size_t params;
    int rc = check_shape(n_layers, sizes, act, &params, err);
    if (rc) {
        if (rc == JZ_ELIMIT || !err)
            return rc;
        char why[JZ_ERROR_MSG_MAX]; /* formatting from err->msg into itself is undefined */
        snprintf(why, sizeof why, "%s", err->msg);
        return jz_error_set(err, JZ_ECORRUPT, "bad model shape: %s", why);
    }
    uint64_t want_payload = 4ull * (n_layers + 1) + 4ull * params;
    if (payload != want_payload)
        return jz_error_set(err, JZ_ECORRUPT, "model header says %llu payload bytes, its shape needs %llu",
                            (unsigned long long)payload, (unsigned long long)want_payload);
    size_t want = HEADER_BYTES + want_payload + 4;
    if (len < want)
        return jz_error_set(err, JZ_ECORRUPT, "model file truncated: %zu of %zu bytes", len, want);
    if (len > want)
        return jz_error_set(err, JZ_ECORRUPT, "model file has %zu trailing bytes after %zu", len - want,
                            want);
    uint32_t stored;
    memcpy(&stored, buf + len - 4, 4);
    uint32_t actual = jz_crc32(buf, len - 4);
    if (stored != actual)
        return jz_error_set(err, JZ_ECORRUPT, "model file checksum mismatch (stored %08x, computed %08x): corrupt",
                            stored, actual);
    struct jz_mlp t;
    if ((rc = jz_mlp_alloc(&t, n_layers, sizes, act, err)))
        return rc;
    jz_reader_take(&r, t.mean, 4ull * sizes[0]);
    jz_reader_take(&r, t.std, 4ull * sizes[0]);
    bool ok = all_finite(t.mean, sizes[0]) && all_finite(t.std, sizes[0]);
    for (uint32_t j = 0; j < sizes[0] && ok; j++)
        ok = t.std[j] > 0;
    for (uint32_t l = 0; l < n_layers && ok; l++) {
        size_t nw = (size_t)sizes[l] * sizes[l + 1];
        jz_reader_take(&r, t.w[l], 4 * nw);
        jz_reader_take(&r, t.b[l], 4ull * sizes[l + 1]);
        ok = all_finite(t.w[l], nw) && all_finite(t.b[l], sizes[l + 1]);
    }
    if (!ok) {
        jz_mlp_free(&t);
        return jz_error_set(err, JZ_ECORRUPT, "model holds non-finite numbers or a non-positive std");
    }
    *m = t;
    return 0;
}

int jz_file_read_all(const char *path, size_t max, uint8_t **buf, size_t *len,
                     struct jz_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return jz_error_set(err, JZ_EIO, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return jz_error_set(err, JZ_ELIMIT, "%s is %lld bytes (limit %zu)", path,
                            (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        close(fd);
        return jz_error_set(err, JZ_ENOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, b + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (got != n) {
        free(b);
        return jz_error_set(err, JZ_EIO, "short read on %s", path);
    }
    *buf = b;
    *len = n;
    return 0;
}

int jz_file_write_atomic(const char *path, const void *buf, size_t len, struct jz_error *err)
{
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return jz_error_set(err, JZ_ERANGE, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "cannot create %s: %s", tmp, strerror(errno));
    const uint8_t *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return jz_error_set(err, JZ_EIO, "cannot write %s: %s", tmp, strerror(e));
        }
        p += k;
        left -= (size_t)k;
    }
    int sync_rc = fsync(fd), sync_errno = errno;
    if (close(fd) != 0 && sync_rc == 0) {
        sync_rc = -1;
        sync_errno = errno;
    }
    if (sync_rc != 0) {
        unlink(tmp);
        return jz_error_set(err, JZ_EIO, "cannot flush %s: %s", tmp, strerror(sync_errno));
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return jz_error_set(err, JZ_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    }
    return 0;
}

int jz_mlp_save(const struct jz_mlp *m, const char *path, struct jz_error *err)
{
    uint8_t *buf;
    size_t len;
    int rc = jz_mlp_encode(m, &buf, &len, err);
    if (rc)
        return rc;
    rc = jz_file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int jz_mlp_load(const char *path, struct jz_mlp *m, struct jz_error *err)
{
    uint8_t *buf;
    size_t len;
    int rc = jz_file_read_all(path, JZ_MLP_MAX_FILE, &buf, &len, err);
    if (rc)
        return rc;
    rc = jz_mlp_decode(buf, len, m, err);
    free(buf);
    if (rc && err) {
        char msg[JZ_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s: %s", path, err->msg);
        memcpy(err->msg, msg, sizeof msg);
    }
    return rc;
}
