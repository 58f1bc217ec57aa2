/* Front end of the compute layer: backend discovery (the CUDA backend is a module loaded at run
 * time), argument and size checks, and dispatch to the backend of each device. */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct jz_kdev {
    const struct jzk_ops *ops;
    enum jz_kbackend backend;
    int ordinal;
    void *d;
    char name[128];
    uint64_t memory;
    size_t nbufs; /* live buffers, to refuse closing a device still in use */
};

struct jz_kbuf {
    jz_kdev_t *dev;
    size_t bytes;
    void *h;
    bool borrowed; /* jz_kbuf_wrap_host: h is the caller's memory, not released here */
};

static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;
static const struct jzk_ops *cuda_ops;

/* The CUDA backend lives in its own shared object beside this library so that a host without
 * the CUDA libraries (or without a driver) still loads jz_kernels and simply sees no CUDA device.
 */
static void cuda_load(void)
{
    char path[4096];
    const char *env = getenv("JZ_KERNELS_CUDA_MODULE");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        Dl_info info;
        if (!dladdr((void *)cuda_load, &info) || !info.dli_fname)
            return;
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash)
            snprintf(path, sizeof path, "%.*s/libjz_kernels_cuda.so", (int)(slash - info.dli_fname),
                     info.dli_fname);
        else
            snprintf(path, sizeof path, "libjz_kernels_cuda.so");
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    jzk_ops_entry_fn entry;
    *(void **)&entry = dlsym(h, JZK_CUDA_ENTRY);
    const struct jzk_ops *ops = entry ? entry() : NULL;
    if (!ops || ops->version != JZK_OPS_VERSION) {
        dlclose(h);
        return;
    }
    cuda_ops = ops; /* the module stays loaded for the life of the process */
}

static const struct jzk_ops *backend_ops(enum jz_kbackend b)
{
    switch (b) {
    case JZ_KBACKEND_CPU:
        return jzk_cpu_ops();
    case JZ_KBACKEND_OPENCL:
        return jzk_opencl_ops();
    case JZ_KBACKEND_CUDA:
        pthread_once(&cuda_once, cuda_load);
        return cuda_ops;
    }
    return NULL;
}

int jz_kernels_api_version(void)
{
    return JZ_KERNELS_API_VERSION;
}

const char *jz_kbackend_name(enum jz_kbackend backend)
{
    switch (backend) {
    case JZ_KBACKEND_CPU:
        return "cpu";
    case JZ_KBACKEND_OPENCL:
        return "opencl";
    case JZ_KBACKEND_CUDA:
        return "cuda";
    }
    return "unknown";
}

int jz_kbackend_parse(const char *name, enum jz_kbackend *out, struct jz_error *err)
{
    static const enum jz_kbackend all[] = {JZ_KBACKEND_CPU, JZ_KBACKEND_OPENCL, JZ_KBACKEND_CUDA};
    if (!name || !out)
        return jzk_err(err, JZ_EINVAL, "backend name is NULL");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, jz_kbackend_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return jzk_err(err, JZ_EINVAL, "unknown backend '%.32s' (cpu, opencl, cuda)", name);
}

bool jz_kbackend_built(enum jz_kbackend backend)
{
    return backend_ops(backend) != NULL;
}

int jz_kdev_count(enum jz_kbackend backend, size_t *out, struct jz_error *err)
{
    if (!out)
        return jzk_err(err, JZ_EINVAL, "out is NULL");
    if ((unsigned)backend >= JZ_KBACKEND_COUNT)
        return jzk_err(err, JZ_EINVAL, "unknown backend %d", (int)backend);
    const struct jzk_ops *ops = backend_ops(backend);
    if (!ops) {
        *out = 0;
        return 0;
    }
    return ops->count(out, err);
}

int jz_kdev_open(enum jz_kbackend backend, int ordinal, jz_kdev_t **out, struct jz_error *err)
{
    if (!out)
        return jzk_err(err, JZ_EINVAL, "out is NULL");
    if ((unsigned)backend >= JZ_KBACKEND_COUNT)
        return jzk_err(err, JZ_EINVAL, "unknown backend %d", (int)backend);
    const struct jzk_ops *ops = backend_ops(backend);
    if (!ops)
        return jzk_err(err, JZ_ENOTSUP, "backend %s is not available in this build",
                       jz_kbackend_name(backend));
    size_t n = 0;
    int rc = ops->count(&n, err);
    if (rc)
        return rc;
    if (ordinal < 0 || (size_t)ordinal >= n)
        return jzk_err(err, JZ_ENOENT, "no %s device %d (%zu present)", jz_kbackend_name(backend),
                       ordinal, n);
    jz_kdev_t *dev = calloc(1, sizeof *dev);
    if (!dev)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    dev->ops = ops;
    dev->backend = backend;
    dev->ordinal = ordinal;
    rc = ops->open(ordinal, &dev->d, dev->name, sizeof dev->name, &dev->memory, err);
    if (rc) {
        free(dev);
        return rc;
    }
    *out = dev;
    return 0;
}

int jz_kdev_open_name(const char *backend, int ordinal, jz_kdev_t **out, struct jz_error *err)
{
    enum jz_kbackend b;
    int rc = jz_kbackend_parse(backend, &b, err);
    return rc ? rc : jz_kdev_open(b, ordinal, out, err);
}

void jz_kdev_close(jz_kdev_t *dev)
{
    if (!dev)
        return;
    /* Closing with live buffers would leave them dangling: leak the device instead (a bug in the
     * caller, but not a crash). */
    if (dev->nbufs)
        return;
    dev->ops->close(dev->d);
    free(dev);
}

enum jz_kbackend jz_kdev_backend(const jz_kdev_t *dev)
{
    return dev->backend;
}
int jz_kdev_ordinal(const jz_kdev_t *dev)
{
    return dev->ordinal;
}
const char *jz_kdev_name(const jz_kdev_t *dev)
{
    return dev->name;
}
uint64_t jz_kdev_memory(const jz_kdev_t *dev)
{
    return dev->memory;
}

int jz_kdev_sync(jz_kdev_t *dev, struct jz_error *err)
{
    if (!dev)
        return jzk_err(err, JZ_EINVAL, "device is NULL");
    return dev->ops->sync(dev->d, err);
}

/* The size rule of every buffer, allocated or wrapped. */
static int check_size(size_t bytes, struct jz_error *err)
{
    if (bytes == 0)
        return jzk_err(err, JZ_EINVAL, "buffer size 0");
    if (bytes > JZ_KBUF_MAX_BYTES)
        return jzk_err(err, JZ_ELIMIT, "buffer of %zu bytes exceeds the limit of %zu", bytes,
                       JZ_KBUF_MAX_BYTES);
    return 0;
}

int jz_kbuf_alloc(jz_kdev_t *dev, size_t bytes, jz_kbuf_t **out, struct jz_error *err)
{
    if (!dev || !out)
        return jzk_err(err, JZ_EINVAL, "device or out is NULL");
    int rc = check_size(bytes, err);
    if (rc)
        return rc;
    jz_kbuf_t *b = calloc(1, sizeof *b);
    if (!b)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    rc = dev->ops->alloc(dev->d, bytes, &b->h, err);
    if (rc) {
        free(b);
        return rc;
    }
    b->dev = dev;
    b->bytes = bytes;
    dev->nbufs++;
    *out = b;
    return 0;
}

int jz_kbuf_wrap_host(jz_kdev_t *dev, void *host, size_t bytes, jz_kbuf_t **out,
                      struct jz_error *err)
{
    if (!dev || !host || !out)
        return jzk_err(err, JZ_EINVAL, "device, host memory or out is NULL");
    if (dev->backend != JZ_KBACKEND_CPU)
        return jzk_err(err, JZ_ENOTSUP, "%s devices cannot use host memory as a buffer",
                       jz_kbackend_name(dev->backend));
    int rc = check_size(bytes, err);
    if (rc)
        return rc;
    if ((uintptr_t)host % sizeof(float))
        return jzk_err(err, JZ_EINVAL, "host memory at %p is not aligned for float", host);
    jz_kbuf_t *b = calloc(1, sizeof *b);
    if (!b)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    b->dev = dev;
    b->bytes = bytes;
    b->h = host;
    b->borrowed = true;
    dev->nbufs++;
    *out = b;
    return 0;
}

void jz_kbuf_free(jz_kbuf_t *buf)
{
    if (!buf)
        return;
    if (!buf->borrowed)
        buf->dev->ops->release(buf->dev->d, buf->h);
    buf->dev->nbufs--;
    free(buf);
}

size_t jz_kbuf_size(const jz_kbuf_t *buf)
{
    return buf->bytes;
}
jz_kdev_t *jz_kbuf_device(const jz_kbuf_t *buf)
{
    return buf->dev;
}

void *jz_kbuf_host_ptr(jz_kbuf_t *buf)
{
    return buf && buf->dev->backend == JZ_KBACKEND_CPU ? buf->h : NULL;
}

static bool range_ok(size_t size, size_t off, size_t bytes)
{
    return off <= size && bytes <= size - off;
}

int jz_kbuf_write(jz_kbuf_t *buf, size_t offset, const void *src, size_t bytes,
                  struct jz_error *err)
{
    if (!buf || (!src && bytes))
        return jzk_err(err, JZ_EINVAL, "buffer or source is NULL");
    if (!range_ok(buf->bytes, offset, bytes))
        return jzk_err(err, JZ_ERANGE, "write of %zu bytes at %zu exceeds buffer of %zu", bytes,
                       offset, buf->bytes);
    if (!bytes)
        return 0;
    return buf->dev->ops->write(buf->dev->d, buf->h, offset, src, bytes, err);
}

int jz_kbuf_write_rows(jz_kbuf_t *buf, size_t offset, const void *src, size_t src_rows,
                       size_t row_bytes, const uint32_t *rows, size_t n, struct jz_error *err)
{
    if (!buf || (n && (!src || !rows)))
        return jzk_err(err, JZ_EINVAL, "buffer, source or row list is NULL");
    if (row_bytes && n > SIZE_MAX / row_bytes)
        return jzk_err(err, JZ_ERANGE, "%zu rows of %zu bytes overflow", n, row_bytes);
    size_t bytes = n * row_bytes;
    if (!range_ok(buf->bytes, offset, bytes))
        return jzk_err(err, JZ_ERANGE,
                       "write of %zu rows of %zu bytes at %zu exceeds buffer of %zu", n, row_bytes,
                       offset, buf->bytes);
    for (size_t i = 0; i < n; i++)
        if (rows[i] >= src_rows)
            return jzk_err(err, JZ_ERANGE, "row %zu is %u, past the source's %zu rows", i, rows[i],
                           src_rows);
    if (!bytes)
        return 0;
    /* A source inside the buffer's own memory (the cpu backend's) would be copied over as it is
     * read, by several threads: refused, as for jz_kbuf_copy. */
    void *host = jz_kbuf_host_ptr(buf);
    uintptr_t s0 = (uintptr_t)src, h0 = (uintptr_t)host;
    size_t src_bytes = src_rows > SIZE_MAX / row_bytes ? SIZE_MAX : src_rows * row_bytes;
    if (host && s0 < h0 + buf->bytes && (h0 <= s0 || h0 - s0 < src_bytes))
        return jzk_err(err, JZ_EINVAL, "the rows' source overlaps the buffer");
    const struct jzk_ops *ops = buf->dev->ops;
    if (ops->write_rows)
        return ops->write_rows(buf->dev->d, buf->h, offset, src, row_bytes, rows, n, err);
    /* Other devices take one transfer of the gathered rows. */
    char *staged = malloc(bytes);
    if (!staged)
        return jzk_err(err, JZ_ENOMEM, "out of memory for %zu bytes of rows", bytes);
    for (size_t i = 0; i < n; i++)
        memcpy(staged + i * row_bytes, (const char *)src + (size_t)rows[i] * row_bytes, row_bytes);
    int rc = ops->write(buf->dev->d, buf->h, offset, staged, bytes, err);
    free(staged);
    return rc;
}

int jz_kbuf_read(const jz_kbuf_t *buf, size_t offset, void *dst, size_t bytes, struct jz_error *err)
{
    if (!buf || (!dst && bytes))
        return jzk_err(err, JZ_EINVAL, "buffer or destination is NULL");
    if (!range_ok(buf->bytes, offset, bytes))
        return jzk_err(err, JZ_ERANGE, "read of %zu bytes at %zu exceeds buffer of %zu", bytes,
                       offset, buf->bytes);
    if (!bytes)
        return buf->dev->ops->sync(buf->dev->d, err);
    return buf->dev->ops->read(buf->dev->d, buf->h, offset, dst, bytes, err);
}

int jz_kbuf_copy(jz_kbuf_t *dst, size_t dst_offset, const jz_kbuf_t *src, size_t src_offset,
                 size_t bytes, struct jz_error *err)
{
    if (!dst || !src)
        return jzk_err(err, JZ_EINVAL, "buffer is NULL");
    if (dst->dev != src->dev)
        return jzk_err(err, JZ_EINVAL, "copy between buffers of different device handles");
    if (!range_ok(dst->bytes, dst_offset, bytes) || !range_ok(src->bytes, src_offset, bytes))
        return jzk_err(err, JZ_ERANGE, "copy of %zu bytes exceeds a buffer", bytes);
    if (dst == src && dst_offset < src_offset + bytes && src_offset < dst_offset + bytes)
        return jzk_err(err, JZ_EINVAL, "overlapping copy within one buffer");
    if (!bytes)
        return 0;
    return dst->dev->ops->copy(dst->dev->d, dst->h, dst_offset, src->h, src_offset, bytes, err);
}

/* ---- argument checks shared by the operations ---- */

static int check_dev(const jz_kdev_t *dev, struct jz_error *err)
{
    return dev ? 0 : jzk_err(err, JZ_EINVAL, "device is NULL");
}

static int check_dim(const char *what, size_t v, size_t min, struct jz_error *err)
{
    if (v < min)
        return jzk_err(err, JZ_EINVAL, "%s = %zu, must be at least %zu", what, v, min);
    if (v > JZ_K_MAX_ELEMS)
        return jzk_err(err, JZ_ELIMIT, "%s = %zu exceeds the limit %zu", what, v, JZ_K_MAX_ELEMS);
    return 0;
}

/* a * b elements must fit the element limit; the product is written to *out. */
static int check_prod(const char *what, size_t a, size_t b, size_t *out, struct jz_error *err)
{
    if (a && b > JZ_K_MAX_ELEMS / a)
        return jzk_err(err, JZ_ELIMIT, "%s: %zu x %zu elements exceed the limit %zu", what, a, b,
                       JZ_K_MAX_ELEMS);
    *out = a * b;
    return 0;
}

/* The buffer must exist, belong to dev, and hold `elems` elements of `esize` bytes. */
static int check_buf(const jz_kdev_t *dev, const char *what, const jz_kbuf_t *b, size_t elems,
                     size_t esize, struct jz_error *err)
{
    if (!b)
        return jzk_err(err, JZ_EINVAL, "%s is NULL", what);
    if (b->dev != dev)
        return jzk_err(err, JZ_EINVAL, "%s belongs to another device handle", what);
    if (elems > b->bytes / esize)
        return jzk_err(err, JZ_EINVAL, "%s holds %zu bytes, needs %zu", what, b->bytes,
                       elems * esize);
    return 0;
}

static int check_opt(const jz_kdev_t *dev, const char *what, const jz_kbuf_t *b, size_t elems,
                     size_t esize, struct jz_error *err)
{
    return b ? check_buf(dev, what, b, elems, esize, err) : 0;
}

static int check_finite(const char *what, float v, struct jz_error *err)
{
    return isfinite(v) ? 0 : jzk_err(err, JZ_EINVAL, "%s is not finite", what);
}

static void *H(const jz_kbuf_t *b)
{
    return b ? b->h : NULL;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

int jz_k_gemm(jz_kdev_t *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
              const jz_kbuf_t *a, size_t lda, const jz_kbuf_t *b, size_t ldb, float beta,
              jz_kbuf_t *c, size_t ldc, struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("m", m, 1, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_dim("k", k, 1, err));
    size_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    size_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    if (lda < a_cols || ldb < b_cols || ldc < n)
        return jzk_err(err, JZ_EINVAL, "leading dimension too small (lda %zu, ldb %zu, ldc %zu)",
                       lda, ldb, ldc);
    TRY(check_dim("lda", lda, 1, err));
    TRY(check_dim("ldb", ldb, 1, err));
    TRY(check_dim("ldc", ldc, 1, err));
    size_t na = 0, nb = 0, nc = 0;
    TRY(check_prod("A", a_rows - 1, lda, &na, err));
    TRY(check_prod("B", b_rows - 1, ldb, &nb, err));
    TRY(check_prod("C", m - 1, ldc, &nc, err));
    TRY(check_buf(dev, "A", a, na + a_cols, 4, err));
    TRY(check_buf(dev, "B", b, nb + b_cols, 4, err));
    TRY(check_buf(dev, "C", c, nc + n, 4, err));
    if (c == a || c == b)
        return jzk_err(err, JZ_EINVAL, "C must not alias A or B");
    TRY(check_finite("alpha", alpha, err));
    TRY(check_finite("beta", beta, err));
    return dev->ops->gemm(dev->d, trans_a, trans_b, m, n, k, alpha, a->h, lda, b->h, ldb, beta,
                          c->h, ldc, err);
}

static int check_act(enum jz_kact act, struct jz_error *err)
{
    return act == JZ_KACT_NONE || act == JZ_KACT_RELU || act == JZ_KACT_GELU
               ? 0
               : jzk_err(err, JZ_EINVAL, "unknown activation %d", (int)act);
}

int jz_k_bias_act_forward(jz_kdev_t *dev, enum jz_kact act, size_t rows, size_t cols,
                          const jz_kbuf_t *x, const jz_kbuf_t *bias, jz_kbuf_t *y,
                          struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_act(act, err));
    TRY(check_dim("rows", rows, 1, err));
    TRY(check_dim("cols", cols, 1, err));
    TRY(check_prod("x", rows, cols, &n, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    TRY(check_opt(dev, "bias", bias, cols, 4, err));
    TRY(check_buf(dev, "y", y, n, 4, err));
    if (bias && bias == y)
        return jzk_err(err, JZ_EINVAL, "y must not alias bias");
    return dev->ops->bias_act_fwd(dev->d, act, rows, cols, x->h, H(bias), y->h, err);
}

int jz_k_dense_forward(jz_kdev_t *dev, enum jz_kact act, size_t rows, size_t in, size_t out,
                       const jz_kbuf_t *x, const jz_kbuf_t *w, const jz_kbuf_t *bias, jz_kbuf_t *z,
                       jz_kbuf_t *y, struct jz_error *err)
{
    size_t nx = 0, nw = 0, nz = 0;
    TRY(check_dev(dev, err));
    TRY(check_act(act, err));
    TRY(check_dim("rows", rows, 1, err));
    TRY(check_dim("in", in, 1, err));
    TRY(check_dim("out", out, 1, err));
    TRY(check_prod("x", rows, in, &nx, err));
    TRY(check_prod("W", in, out, &nw, err));
    TRY(check_prod("z", rows, out, &nz, err));
    TRY(check_buf(dev, "x", x, nx, 4, err));
    TRY(check_buf(dev, "W", w, nw, 4, err));
    TRY(check_opt(dev, "bias", bias, out, 4, err));
    TRY(check_buf(dev, "z", z, nz, 4, err));
    TRY(check_buf(dev, "y", y, nz, 4, err));
    if (z == x || z == w || y == x || y == w)
        return jzk_err(err, JZ_EINVAL, "z and y must not alias x or W");
    if (bias && (bias == z || bias == y))
        return jzk_err(err, JZ_EINVAL, "z and y must not alias bias");
    if (dev->ops->dense_fwd)
        return dev->ops->dense_fwd(dev->d, act, rows, in, out, x->h, w->h, H(bias), z->h, y->h,
                                   err);
    TRY(dev->ops->gemm(dev->d, false, false, rows, out, in, 1.0f, x->h, in, w->h, out, 0.0f, z->h,
                       out, err));
    return dev->ops->bias_act_fwd(dev->d, act, rows, out, z->h, H(bias), y->h, err);
}

int jz_k_bias_act_backward(jz_kdev_t *dev, enum jz_kact act, size_t rows, size_t cols,
                           const jz_kbuf_t *x, const jz_kbuf_t *bias, const jz_kbuf_t *dy,
                           jz_kbuf_t *dx, jz_kbuf_t *dbias, struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_act(act, err));
    TRY(check_dim("rows", rows, 1, err));
    TRY(check_dim("cols", cols, 1, err));
    TRY(check_prod("x", rows, cols, &n, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    TRY(check_opt(dev, "bias", bias, cols, 4, err));
    TRY(check_buf(dev, "dy", dy, n, 4, err));
    TRY(check_buf(dev, "dx", dx, n, 4, err));
    TRY(check_opt(dev, "dbias", dbias, cols, 4, err));
    if (dx == x || (bias && (dx == bias || dbias == bias)) ||
        (dbias && (dbias == x || dbias == dy || dbias == dx)))
        return jzk_err(err, JZ_EINVAL, "outputs alias inputs (only dx == dy is allowed)");
    return dev->ops->bias_act_bwd(dev->d, act, rows, cols, x->h, H(bias), dy->h, dx->h, H(dbias),
                                  err);
}

int jz_k_softmax_xent_forward(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *logits,
                              const jz_kbuf_t *labels, jz_kbuf_t *probs, jz_kbuf_t *loss,
                              struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("rows", rows, 1, err));
    TRY(check_dim("cols", cols, 1, err));
    TRY(check_prod("logits", rows, cols, &n, err));
    TRY(check_buf(dev, "logits", logits, n, 4, err));
    TRY(check_buf(dev, "labels", labels, rows, 4, err));
    TRY(check_buf(dev, "probs", probs, n, 4, err));
    TRY(check_opt(dev, "loss", loss, rows, 4, err));
    if (probs == logits || probs == labels || loss == logits || loss == labels || loss == probs)
        return jzk_err(err, JZ_EINVAL, "outputs must not alias inputs");
    return dev->ops->xent_fwd(dev->d, rows, cols, logits->h, labels->h, probs->h, H(loss), err);
}

int jz_k_softmax_xent_backward(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *probs,
                               const jz_kbuf_t *labels, float scale, jz_kbuf_t *dlogits,
                               struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("rows", rows, 1, err));
    TRY(check_dim("cols", cols, 1, err));
    TRY(check_prod("probs", rows, cols, &n, err));
    TRY(check_buf(dev, "probs", probs, n, 4, err));
    TRY(check_buf(dev, "labels", labels, rows, 4, err));
    TRY(check_buf(dev, "dlogits", dlogits, n, 4, err));
    TRY(check_finite("scale", scale, err));
    if (dlogits == labels)
        return jzk_err(err, JZ_EINVAL, "dlogits must not alias labels");
    return dev->ops->xent_bwd(dev->d, rows, cols, probs->h, labels->h, scale, dlogits->h, err);
}

int jz_k_axpy(jz_kdev_t *dev, size_t n, float alpha, const jz_kbuf_t *x, jz_kbuf_t *y,
              struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    TRY(check_buf(dev, "y", y, n, 4, err));
    return dev->ops->axpy(dev->d, n, alpha, x->h, y->h, err);
}

int jz_k_scale(jz_kdev_t *dev, size_t n, float alpha, jz_kbuf_t *x, struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    return dev->ops->scale(dev->d, n, alpha, x->h, err);
}

int jz_k_fill(jz_kdev_t *dev, size_t n, float value, jz_kbuf_t *x, struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    return dev->ops->fill(dev->d, n, value, x->h, err);
}

static int reduce(jz_kdev_t *dev, int kind, size_t n, const jz_kbuf_t *x, jz_kbuf_t *out,
                  struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    TRY(check_buf(dev, "out", out, 1, 4, err));
    if (out == x)
        return jzk_err(err, JZ_EINVAL, "out must not alias x");
    return dev->ops->reduce(dev->d, kind, n, x->h, out->h, err);
}

int jz_k_sum(jz_kdev_t *dev, size_t n, const jz_kbuf_t *x, jz_kbuf_t *out, struct jz_error *err)
{
    return reduce(dev, JZK_REDUCE_SUM, n, x, out, err);
}

int jz_k_max(jz_kdev_t *dev, size_t n, const jz_kbuf_t *x, jz_kbuf_t *out, struct jz_error *err)
{
    return reduce(dev, JZK_REDUCE_MAX, n, x, out, err);
}

int jz_k_argmax_rows(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *x, jz_kbuf_t *out,
                     struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("rows", rows, 1, err));
    TRY(check_dim("cols", cols, 1, err));
    TRY(check_prod("x", rows, cols, &n, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    TRY(check_buf(dev, "out", out, rows, 4, err));
    if (out == x)
        return jzk_err(err, JZ_EINVAL, "out must not alias x");
    return dev->ops->argmax_rows(dev->d, rows, cols, x->h, out->h, err);
}

int jz_k_accuracy(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *x,
                  const jz_kbuf_t *labels, jz_kbuf_t *out, struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("rows", rows, 1, err));
    TRY(check_dim("cols", cols, 1, err));
    TRY(check_prod("x", rows, cols, &n, err));
    TRY(check_buf(dev, "x", x, n, 4, err));
    TRY(check_buf(dev, "labels", labels, rows, 4, err));
    TRY(check_buf(dev, "out", out, 1, 4, err));
    if (out == x || out == labels)
        return jzk_err(err, JZ_EINVAL, "out must not alias inputs");
    return dev->ops->accuracy(dev->d, rows, cols, x->h, labels->h, out->h, err);
}

int jz_k_sgd_update(jz_kdev_t *dev, size_t n, jz_kbuf_t *param, const jz_kbuf_t *grad,
                    jz_kbuf_t *vel, float lr, float momentum, float weight_decay,
                    struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "param", param, n, 4, err));
    TRY(check_buf(dev, "grad", grad, n, 4, err));
    TRY(check_buf(dev, "vel", vel, n, 4, err));
    if (param == grad || param == vel || grad == vel)
        return jzk_err(err, JZ_EINVAL, "param, grad and vel must be distinct");
    TRY(check_finite("lr", lr, err));
    TRY(check_finite("momentum", momentum, err));
    TRY(check_finite("weight_decay", weight_decay, err));
    return dev->ops->sgd(dev->d, n, param->h, grad->h, vel->h, lr, momentum, weight_decay, err);
}

int jz_k_adam_update(jz_kdev_t *dev, size_t n, jz_kbuf_t *param, const jz_kbuf_t *grad,
                     jz_kbuf_t *m, jz_kbuf_t *v, const struct jz_adam_params *p,
                     struct jz_error *err)
{
    TRY(check_dev(dev, err));
    if (!p)
        return jzk_err(err, JZ_EINVAL, "Adam parameters are NULL");
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "param", param, n, 4, err));
    TRY(check_buf(dev, "grad", grad, n, 4, err));
    TRY(check_buf(dev, "m", m, n, 4, err));
    TRY(check_buf(dev, "v", v, n, 4, err));
    if (param == grad || param == m || param == v || grad == m || grad == v || m == v)
        return jzk_err(err, JZ_EINVAL, "param, grad, m and v must be distinct");
    TRY(check_finite("lr", p->lr, err));
    TRY(check_finite("weight_decay", p->weight_decay, err));
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1))
        return jzk_err(err, JZ_EINVAL, "beta1 and beta2 must lie in [0, 1)");
    if (!(p->eps > 0) || !isfinite(p->eps))
        return jzk_err(err, JZ_EINVAL, "eps must be positive");
    if (p->step < 1)
        return jzk_err(err, JZ_EINVAL, "step must be at least 1");
    double t = (double)p->step;
    float bc1 = (float)(1.0 - pow(p->beta1, t)), bc2 = (float)(1.0 - pow(p->beta2, t));
    if (!(bc1 > 0) || !(bc2 > 0))
        return jzk_err(err, JZ_EINVAL, "bias correction vanishes (beta = 0 with step 0?)");
    return dev->ops->adam(dev->d, n, param->h, grad->h, m->h, v->h, p->lr, p->beta1, p->beta2,
                          p->eps, p->weight_decay, bc1, bc2, err);
}

int jz_k_heat2d_step(jz_kdev_t *dev, size_t nx, size_t ny, float alpha, const jz_kbuf_t *in,
                     jz_kbuf_t *out, struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("nx", nx, 3, err));
    TRY(check_dim("ny", ny, 3, err));
    TRY(check_prod("grid", nx, ny, &n, err));
    TRY(check_buf(dev, "in", in, n, 4, err));
    TRY(check_buf(dev, "out", out, n, 4, err));
    TRY(check_finite("alpha", alpha, err));
    if (in == out)
        return jzk_err(err, JZ_EINVAL, "in and out must be distinct");
    return dev->ops->heat2d(dev->d, nx, ny, alpha, JZ_KBC_DIRICHLET, 0, in->h, out->h, err);
}

int jz_k_heat3d_step(jz_kdev_t *dev, size_t nx, size_t ny, size_t nz, float alpha,
                     const jz_kbuf_t *in, jz_kbuf_t *out, struct jz_error *err)
{
    size_t n2 = 0, n = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("nx", nx, 3, err));
    TRY(check_dim("ny", ny, 3, err));
    TRY(check_dim("nz", nz, 3, err));
    TRY(check_prod("grid", nx, ny, &n2, err));
    TRY(check_prod("grid", n2, nz, &n, err));
    TRY(check_buf(dev, "in", in, n, 4, err));
    TRY(check_buf(dev, "out", out, n, 4, err));
    TRY(check_finite("alpha", alpha, err));
    if (in == out)
        return jzk_err(err, JZ_EINVAL, "in and out must be distinct");
    return dev->ops->heat3d(dev->d, nx, ny, nz, alpha, JZ_KBC_DIRICHLET, 0, in->h, out->h, err);
}

/* The boundary mode and halo mask of a _bc stencil with `faces` faces (4 or 6). */
static int check_bc(enum jz_kbc bc, unsigned halo, unsigned faces, struct jz_error *err)
{
    if (bc != JZ_KBC_DIRICHLET && bc != JZ_KBC_NEUMANN && bc != JZ_KBC_PERIODIC)
        return jzk_err(err, JZ_EINVAL, "unknown boundary condition %d", (int)bc);
    if (halo & ~((1u << faces) - 1))
        return jzk_err(err, JZ_EINVAL, "halo mask 0x%x names faces a %uD grid lacks", halo,
                       faces / 2);
    if (bc == JZ_KBC_PERIODIC)
        for (unsigned f = 0; f < faces; f += 2)
            if (((halo >> f) & 1u) != ((halo >> (f + 1)) & 1u))
                return jzk_err(err, JZ_EINVAL,
                               "periodic boundary: both faces of an axis must be halos or neither");
    return 0;
}

int jz_k_heat2d_step_bc(jz_kdev_t *dev, size_t nx, size_t ny, float alpha, enum jz_kbc bc,
                        unsigned halo, const jz_kbuf_t *in, jz_kbuf_t *out, struct jz_error *err)
{
    size_t n = 0;
    TRY(check_dev(dev, err));
    TRY(check_bc(bc, halo, 4, err));
    TRY(check_dim("nx", nx, 3, err));
    TRY(check_dim("ny", ny, 3, err));
    TRY(check_prod("grid", nx, ny, &n, err));
    TRY(check_buf(dev, "in", in, n, 4, err));
    TRY(check_buf(dev, "out", out, n, 4, err));
    TRY(check_finite("alpha", alpha, err));
    if (in == out)
        return jzk_err(err, JZ_EINVAL, "in and out must be distinct");
    return dev->ops->heat2d(dev->d, nx, ny, alpha, (int)bc, halo, in->h, out->h, err);
}

int jz_k_heat3d_step_bc(jz_kdev_t *dev, size_t nx, size_t ny, size_t nz, float alpha,
                        enum jz_kbc bc, unsigned halo, const jz_kbuf_t *in, jz_kbuf_t *out,
                        struct jz_error *err)
{
    size_t n2 = 0, n = 0;
    TRY(check_dev(dev, err));
    TRY(check_bc(bc, halo, 6, err));
    TRY(check_dim("nx", nx, 3, err));
    TRY(check_dim("ny", ny, 3, err));
    TRY(check_dim("nz", nz, 3, err));
    TRY(check_prod("grid", nx, ny, &n2, err));
    TRY(check_prod("grid", n2, nz, &n, err));
    TRY(check_buf(dev, "in", in, n, 4, err));
    TRY(check_buf(dev, "out", out, n, 4, err));
    TRY(check_finite("alpha", alpha, err));
    if (in == out)
        return jzk_err(err, JZ_EINVAL, "in and out must be distinct");
    return dev->ops->heat3d(dev->d, nx, ny, nz, alpha, (int)bc, halo, in->h, out->h, err);
}

int jz_k_nbody_forces(jz_kdev_t *dev, size_t n, float softening, const jz_kbuf_t *pos,
                      jz_kbuf_t *acc, struct jz_error *err)
{
    size_t n4 = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_prod("bodies", n, 4, &n4, err));
    TRY(check_buf(dev, "pos", pos, n4, 4, err));
    TRY(check_buf(dev, "acc", acc, n4, 4, err));
    if (!(softening > 0) || !isfinite(softening))
        return jzk_err(err, JZ_EINVAL, "softening must be positive");
    if (pos == acc)
        return jzk_err(err, JZ_EINVAL, "pos and acc must be distinct");
    return dev->ops->nbody_forces(dev->d, n, 0, n, softening * softening, pos->h, acc->h, err);
}

int jz_k_nbody_forces_range(jz_kdev_t *dev, size_t n, size_t first, size_t count, float softening,
                            const jz_kbuf_t *pos, jz_kbuf_t *acc, struct jz_error *err)
{
    size_t n4 = 0, e4 = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_dim("count", count, 1, err));
    if (first > n || count > n - first)
        return jzk_err(err, JZ_ERANGE, "bodies [%zu, %zu + %zu) outside [0, %zu)", first, first,
                       count, n);
    TRY(check_prod("bodies", n, 4, &n4, err));
    TRY(check_prod("bodies", first + count, 4, &e4, err));
    TRY(check_buf(dev, "pos", pos, n4, 4, err));
    TRY(check_buf(dev, "acc", acc, e4, 4, err));
    if (!(softening > 0) || !isfinite(softening))
        return jzk_err(err, JZ_EINVAL, "softening must be positive");
    if (pos == acc)
        return jzk_err(err, JZ_EINVAL, "pos and acc must be distinct");
    return dev->ops->nbody_forces(dev->d, n, first, count, softening * softening, pos->h, acc->h,
                                  err);
}

int jz_k_nbody_leapfrog(jz_kdev_t *dev, size_t n, float dt, jz_kbuf_t *pos, jz_kbuf_t *vel,
                        const jz_kbuf_t *acc, struct jz_error *err)
{
    size_t n4 = 0;
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_prod("bodies", n, 4, &n4, err));
    TRY(check_buf(dev, "pos", pos, n4, 4, err));
    TRY(check_buf(dev, "vel", vel, n4, 4, err));
    TRY(check_buf(dev, "acc", acc, n4, 4, err));
    TRY(check_finite("dt", dt, err));
    if (pos == vel || pos == acc || vel == acc)
        return jzk_err(err, JZ_EINVAL, "pos, vel and acc must be distinct");
    return dev->ops->leapfrog(dev->d, n, dt, pos->h, vel->h, acc->h, err);
}

int jz_k_rand_uniform(jz_kdev_t *dev, size_t n, uint64_t seed, uint64_t offset, float lo, float hi,
                      jz_kbuf_t *out, struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "out", out, n, 4, err));
    if (offset > UINT64_MAX - n)
        return jzk_err(err, JZ_ERANGE, "stream offset %llu + %zu overflows",
                       (unsigned long long)offset, n);
    TRY(check_finite("lo", lo, err));
    TRY(check_finite("hi", hi, err));
    return dev->ops->rand(dev->d, JZK_DIST_UNIFORM, n, seed, offset, lo, hi, out->h, err);
}

int jz_k_rand_normal(jz_kdev_t *dev, size_t n, uint64_t seed, uint64_t offset, float mean,
                     float stddev, jz_kbuf_t *out, struct jz_error *err)
{
    TRY(check_dev(dev, err));
    TRY(check_dim("n", n, 1, err));
    TRY(check_buf(dev, "out", out, n, 4, err));
    if (offset > UINT64_MAX - n)
        return jzk_err(err, JZ_ERANGE, "stream offset %llu + %zu overflows",
                       (unsigned long long)offset, n);
    TRY(check_finite("mean", mean, err));
    TRY(check_finite("stddev", stddev, err));
    return dev->ops->rand(dev->d, JZK_DIST_NORMAL, n, seed, offset, mean, stddev, out->h, err);
}

/* ---- collectives ---- */

struct jz_kcomm {
    size_t n;
    jz_kdev_t *devs[JZ_KCOMM_MAX_DEVICES];
    void *nccl; /* NULL: host implementation */
    const struct jzk_ops *nccl_ops;
};

int jz_kcomm_create(jz_kdev_t *const *devs, size_t ndev, jz_kcomm_t **out, struct jz_error *err)
{
    if (!devs || !out)
        return jzk_err(err, JZ_EINVAL, "devices or out is NULL");
    if (ndev < 1 || ndev > JZ_KCOMM_MAX_DEVICES)
        return jzk_err(err, JZ_ELIMIT, "communicator over %zu devices (1..%d)", ndev,
                       JZ_KCOMM_MAX_DEVICES);
    bool all_cuda = true;
    for (size_t i = 0; i < ndev; i++) {
        if (!devs[i])
            return jzk_err(err, JZ_EINVAL, "device %zu is NULL", i);
        for (size_t j = 0; j < i; j++)
            if (devs[j] == devs[i])
                return jzk_err(err, JZ_EINVAL, "device handle %zu appears twice", i);
        if (devs[i]->backend != JZ_KBACKEND_CUDA)
            all_cuda = false;
        for (size_t j = 0; j < i && all_cuda; j++)
            if (devs[j]->ordinal == devs[i]->ordinal)
                all_cuda = false; /* NCCL needs one rank per GPU */
    }
    jz_kcomm_t *c = calloc(1, sizeof *c);
    if (!c)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    c->n = ndev;
    memcpy(c->devs, devs, ndev * sizeof *devs);
    if (all_cuda && devs[0]->ops->nccl_create) {
        void *ds[JZ_KCOMM_MAX_DEVICES];
        for (size_t i = 0; i < ndev; i++)
            ds[i] = devs[i]->d;
        int rc = devs[0]->ops->nccl_create(ds, ndev, &c->nccl, err);
        if (rc) {
            free(c);
            return rc;
        }
        c->nccl_ops = devs[0]->ops;
    }
    *out = c;
    return 0;
}

void jz_kcomm_destroy(jz_kcomm_t *comm)
{
    if (!comm)
        return;
    if (comm->nccl)
        comm->nccl_ops->nccl_destroy(comm->nccl);
    free(comm);
}

size_t jz_kcomm_size(const jz_kcomm_t *comm)
{
    return comm->n;
}
bool jz_kcomm_is_nccl(const jz_kcomm_t *comm)
{
    return comm->nccl != NULL;
}

static int comm_check(jz_kcomm_t *comm, jz_kbuf_t *const *bufs, size_t count, struct jz_error *err)
{
    if (!comm || !bufs)
        return jzk_err(err, JZ_EINVAL, "communicator or buffers are NULL");
    TRY(check_dim("count", count, 1, err));
    for (size_t i = 0; i < comm->n; i++)
        TRY(check_buf(comm->devs[i], "collective buffer", bufs[i], count, 4, err));
    return 0;
}

/* Host implementation: gather every rank's data, reduce in double in rank order, scatter. The
 * order is fixed so that every rank (and every run) gets bit-identical results. */
static int host_allreduce(jz_kcomm_t *comm, jz_kbuf_t *const *bufs, size_t count,
                          struct jz_error *err)
{
    const size_t chunk = (size_t)1 << 20;
    float *tmp = malloc(chunk * sizeof *tmp);
    double *acc = malloc(chunk * sizeof *acc);
    int rc = 0;
    if (!tmp || !acc) {
        rc = jzk_err(err, JZ_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t base = 0; base < count; base += chunk) {
        size_t len = count - base < chunk ? count - base : chunk;
        for (size_t i = 0; i < len; i++)
            acc[i] = 0;
        for (size_t r = 0; r < comm->n; r++) {
            rc = jz_kbuf_read(bufs[r], base * 4, tmp, len * 4, err);
            if (rc)
                goto out;
            for (size_t i = 0; i < len; i++)
                acc[i] += tmp[i];
        }
        for (size_t i = 0; i < len; i++)
            tmp[i] = (float)acc[i];
        for (size_t r = 0; r < comm->n; r++) {
            rc = jz_kbuf_write(bufs[r], base * 4, tmp, len * 4, err);
            if (rc)
                goto out;
        }
    }
out:
    free(tmp);
    free(acc);
    return rc;
}

int jz_kcomm_allreduce_sum(jz_kcomm_t *comm, jz_kbuf_t *const *bufs, size_t count,
                           struct jz_error *err)
{
    TRY(comm_check(comm, bufs, count, err));
    if (comm->nccl) {
        void *ds[JZ_KCOMM_MAX_DEVICES], *hs[JZ_KCOMM_MAX_DEVICES];
        for (size_t i = 0; i < comm->n; i++) {
            ds[i] = comm->devs[i]->d;
            hs[i] = bufs[i]->h;
        }
        return comm->nccl_ops->nccl_allreduce(comm->nccl, ds, hs, count, err);
    }
    return host_allreduce(comm, bufs, count, err);
}

int jz_kcomm_broadcast(jz_kcomm_t *comm, jz_kbuf_t *const *bufs, size_t count, size_t root,
                       struct jz_error *err)
{
    TRY(comm_check(comm, bufs, count, err));
    if (root >= comm->n)
        return jzk_err(err, JZ_EINVAL, "root %zu outside communicator of %zu", root, comm->n);
    if (comm->nccl) {
        void *ds[JZ_KCOMM_MAX_DEVICES], *hs[JZ_KCOMM_MAX_DEVICES];
        for (size_t i = 0; i < comm->n; i++) {
            ds[i] = comm->devs[i]->d;
            hs[i] = bufs[i]->h;
        }
        return comm->nccl_ops->nccl_broadcast(comm->nccl, ds, hs, count, root, err);
    }
    const size_t chunk = (size_t)1 << 20;
    float *tmp = malloc((count < chunk ? count : chunk) * sizeof *tmp);
    if (!tmp)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t base = 0; base < count && !rc; base += chunk) {
        size_t len = count - base < chunk ? count - base : chunk;
        rc = jz_kbuf_read(bufs[root], base * 4, tmp, len * 4, err);
        for (size_t r = 0; r < comm->n && !rc; r++)
            if (r != root)
                rc = jz_kbuf_write(bufs[r], base * 4, tmp, len * 4, err);
    }
    free(tmp);
    return rc;
}
