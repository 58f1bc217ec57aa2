/* Private interface between the kernels front end (argument checks, dispatch) and the backends.
 * Included from C and from CUDA C++ (the CUDA backend is a separately loaded module). */
#ifndef JZ_KERNELS_INTERNAL_H
#define JZ_KERNELS_INTERNAL_H

#include <jazari/kernels.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever struct jzk_ops changes, so a stale CUDA module is refused. */
#define JZK_OPS_VERSION 4

enum jzk_reduce { JZK_REDUCE_SUM = 0, JZK_REDUCE_MAX = 1 };
enum jzk_dist { JZK_DIST_UNIFORM = 0, JZK_DIST_NORMAL = 1 };

/* A backend's entry points. `d` is the backend's device state, buffers are backend handles
 * (host pointer, cl_mem, CUDA device pointer). Arguments are already validated by the front end. */
struct jzk_ops {
    int version;
    int (*count)(size_t *out, struct jz_error *err);
    int (*open)(int ordinal, void **d, char *name, size_t name_len, uint64_t *memory,
                struct jz_error *err);
    void (*close)(void *d);
    int (*sync)(void *d, struct jz_error *err);

    int (*alloc)(void *d, size_t bytes, void **h, struct jz_error *err);
    void (*release)(void *d, void *h);
    int (*write)(void *d, void *h, size_t off, const void *src, size_t bytes, struct jz_error *err);
    int (*read)(void *d, void *h, size_t off, void *dst, size_t bytes, struct jz_error *err);
    int (*copy)(void *d, void *dst, size_t doff, void *src, size_t soff, size_t bytes,
                struct jz_error *err);

    int (*gemm)(void *d, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, void *a,
                size_t lda, void *b, size_t ldb, float beta, void *c, size_t ldc,
                struct jz_error *err);
    int (*bias_act_fwd)(void *d, int act, size_t rows, size_t cols, void *x, void *bias, void *y,
                        struct jz_error *err);
    int (*bias_act_bwd)(void *d, int act, size_t rows, size_t cols, void *x, void *bias, void *dy,
                        void *dx, void *dbias, struct jz_error *err);
    int (*xent_fwd)(void *d, size_t rows, size_t cols, void *logits, void *labels, void *probs,
                    void *loss, struct jz_error *err);
    int (*xent_bwd)(void *d, size_t rows, size_t cols, void *probs, void *labels, float scale,
                    void *dlogits, struct jz_error *err);
    int (*axpy)(void *d, size_t n, float alpha, void *x, void *y, struct jz_error *err);
    int (*scale)(void *d, size_t n, float alpha, void *x, struct jz_error *err);
    int (*fill)(void *d, size_t n, float value, void *x, struct jz_error *err);
    int (*reduce)(void *d, int kind, size_t n, void *x, void *out, struct jz_error *err);
    int (*argmax_rows)(void *d, size_t rows, size_t cols, void *x, void *out, struct jz_error *err);
    int (*accuracy)(void *d, size_t rows, size_t cols, void *x, void *labels, void *out,
                    struct jz_error *err);
    int (*sgd)(void *d, size_t n, void *p, void *g, void *v, float lr, float mom, float wd,
               struct jz_error *err);
    /* bc1 = 1 - b1^t, bc2 = 1 - b2^t, computed by the front end in double. */
    int (*adam)(void *d, size_t n, void *p, void *g, void *m, void *v, float lr, float b1, float b2,
                float eps, float wd, float bc1, float bc2, struct jz_error *err);
    /* bc: enum jz_kbc; halo: JZ_KFACE_* bits (the plain steps are DIRICHLET with no halo). */
    int (*heat2d)(void *d, size_t nx, size_t ny, float alpha, int bc, unsigned halo, void *in,
                  void *out, struct jz_error *err);
    int (*heat3d)(void *d, size_t nx, size_t ny, size_t nz, float alpha, int bc, unsigned halo,
                  void *in, void *out, struct jz_error *err);
    /* Bodies [first, first + count) of n (all of them for jz_k_nbody_forces). */
    int (*nbody_forces)(void *d, size_t n, size_t first, size_t count, float soft2, void *pos,
                        void *acc, struct jz_error *err);
    int (*leapfrog)(void *d, size_t n, float dt, void *pos, void *vel, void *acc,
                    struct jz_error *err);
    int (*rand)(void *d, int dist, size_t n, uint64_t seed, uint64_t offset, float a, float b,
                void *out, struct jz_error *err);

    /* NCCL collectives across distinct CUDA devices; NULL on other backends. ds[i] are the
     * devices' states, hs[i] their buffers. */
    int (*nccl_create)(void **ds, size_t ndev, void **comm, struct jz_error *err);
    void (*nccl_destroy)(void *comm);
    int (*nccl_allreduce)(void *comm, void **ds, void **hs, size_t count, struct jz_error *err);
    int (*nccl_broadcast)(void *comm, void **ds, void **hs, size_t count, size_t root,
                          struct jz_error *err);

    /* Version 3. NULL: the front end runs gemm, then bias_act_fwd. */
    int (*dense_fwd)(void *d, int act, size_t rows, size_t in, size_t out, void *x, void *w,
                     void *bias, void *z, void *y, struct jz_error *err);
    /* Version 4. Rows already checked against src_rows. NULL: the front end gathers into host
     * memory and calls write. */
    int (*write_rows)(void *d, void *h, size_t off, const void *src, size_t row_bytes,
                      const uint32_t *rows, size_t n, struct jz_error *err);
};

/* The symbol the CUDA module exports (a function, so the module's static state is set up
 * lazily). */
#define JZK_CUDA_ENTRY "jzk_cuda_ops"
typedef const struct jzk_ops *(*jzk_ops_entry_fn)(void);

const struct jzk_ops *jzk_cpu_ops(void);
const struct jzk_ops *jzk_opencl_ops(void); /* NULL when not built */

/* Fills a caller-owned error buffer (each backend uses this instead of the common library, so
 * the CUDA module has no undefined symbols). */
static inline int jzk_err(struct jz_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int jzk_err(struct jz_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Along one axis of n cells, the cell whose value index i stands for under boundary condition
 * bc: a ghost on a boundary face (lo / hi: the face is a domain boundary, not a halo) maps to
 * the interior cell it mirrors (NEUMANN) or repeats (PERIODIC); every other index to itself.
 * Shared by the cpu backend and the tests; OpenCL and CUDA carry copies. */
static inline size_t jzk_bc_src(size_t i, size_t n, int bc, bool lo, bool hi)
{
    if (bc == JZ_KBC_DIRICHLET)
        return i;
    if (i == 0 && lo)
        return bc == JZ_KBC_PERIODIC ? n - 2 : 1;
    if (i == n - 1 && hi)
        return bc == JZ_KBC_PERIODIC ? 1 : n - 2;
    return i;
}

/* Philox4x32-10, shared by the cpu backend and the tests; OpenCL and CUDA carry copies. */
static inline void jzk_philox(uint32_t ctr[4], uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ ctr[1] ^ k0, n2 = hi0 ^ ctr[3] ^ k1;
        ctr[0] = n0;
        ctr[1] = lo1;
        ctr[2] = n2;
        ctr[3] = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

/* The 4 outputs of Philox block `blk` for the stream `seed` (see jz_k_rand_uniform/normal).
 * fmaf is explicit so that every backend rounds the same way. */
static inline void jzk_philox_block(uint64_t blk, uint64_t seed, int dist, float a, float b,
                                    float v[4])
{
    uint32_t c[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), 0, 0};
    jzk_philox(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    const float two_m24 = 5.9604644775390625e-8f;
    if (dist == JZK_DIST_UNIFORM) {
        for (int l = 0; l < 4; l++)
            v[l] = fmaf(b - a, (float)(c[l] >> 8) * two_m24, a);
        return;
    }
    for (int l = 0; l < 4; l += 2) {
        float u1 = (float)((c[l] >> 8) + 1) * two_m24; /* (0, 1]: log stays finite */
        float u2 = (float)(c[l + 1] >> 8) * two_m24;
        float r = sqrtf(-2.0f * logf(u1)), t = 6.2831853071795865f * u2;
        v[l] = fmaf(b, r * cosf(t), a);
        v[l + 1] = fmaf(b, r * sinf(t), a);
    }
}

#ifdef __cplusplus
}
#endif
#endif
