/* The cpu backend: one device (the host), GEMM from OpenBLAS, the other kernels in C on the
 * backend's thread pool (pool.c). Work runs before each call returns: there is no queue. */
#include "cpu.h"
#include "../internal.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Below this many elements the fork/join of a parallel region costs more than it saves. */
#define PAR_MIN 32768

static int cpu_count(size_t *out, struct jz_error *err)
{
    *out = 1;
    return 0;
}

static int cpu_open(int ordinal, void **d, char *name, size_t name_len, uint64_t *memory,
                    struct jz_error *err)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    *memory = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
    snprintf(name, name_len, "host CPU (%ld threads)", sysconf(_SC_NPROCESSORS_ONLN));
    *d = NULL;
    return 0;
}

static void cpu_close(void *d) {}
static int cpu_sync(void *d, struct jz_error *err)
{
    return 0;
}

static int cpu_alloc(void *d, size_t bytes, void **h, struct jz_error *err)
{
    /* 64-byte alignment: one cache line, one AVX-512 vector. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        return jzk_err(err, JZ_ENOMEM, "cannot allocate %zu bytes of host memory", bytes);
    *h = p;
    return 0;
}

static void cpu_release(void *d, void *h)
{
    free(h);
}

static int cpu_write(void *d, void *h, size_t off, const void *src, size_t bytes,
                     struct jz_error *err)
{
    memcpy((char *)h + off, src, bytes);
    return 0;
}

static int cpu_read(void *d, void *h, size_t off, void *dst, size_t bytes, struct jz_error *err)
{
    memcpy(dst, (const char *)h + off, bytes);
    return 0;
}

static int cpu_copy(void *d, void *dst, size_t doff, void *src, size_t soff, size_t bytes,
                    struct jz_error *err)
{
    memcpy((char *)dst + doff, (const char *)src + soff, bytes);
    return 0;
}

static int cpu_gemm(void *d, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, void *a,
                    size_t lda, void *b, size_t ldb, float beta, void *c, size_t ldc,
                    struct jz_error *err)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    return 0;
}

static inline float act_df(int act, float z)
{
    switch (act) {
    case JZ_KACT_RELU:
        return z > 0 ? 1.0f : 0.0f;
    case JZ_KACT_GELU: {
        const float k0 = 0.7978845608028654f, k1 = 0.044715f;
        float t = tanhf(k0 * (z + k1 * z * z * z));
        return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * k0 * (1.0f + 3.0f * k1 * z * z);
    }
    default:
        return 1.0f;
    }
}

/* Rows per chunk so that a chunk holds at least PAR_MIN elements. */
static size_t row_grain(size_t cols)
{
    return cols >= PAR_MIN ? 1 : PAR_MIN / cols;
}

struct act_args {
    int act;
    size_t cols;
    const float *x, *bias, *dy;
    float *y, *dx, *dbias;
    size_t rows;
};

/* expf without libm, so that the loops below vectorise: Cephes' range reduction to
 * [-ln2/2, ln2/2] and degree-6 polynomial, 2^n put straight into the exponent bits; within
 * 1e-7 relative of exp on [-87, 88] (inputs are clamped there). */
static inline float exp_vec(float x)
{
    /* two plain selects: gcc if-converts these, but not the nested form */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } s = {.i = ((int32_t)n + 127) * (1 << 23)};
    return p * s.f;
}

/* GELU as z * sigmoid(2u), which equals 0.5 z (1 + tanh u) and keeps full relative accuracy
 * for negative z, where 1 + tanh u cancels. */
static inline float gelu_vec(float z)
{
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    float u = k0 * (z + k1 * z * z * z);
    return z / (1.0f + exp_vec(-2.0f * u));
}

/* The forward pass over rows [r0, r1): one loop per activation and bias case, so each inner loop
 * is a straight vector loop over a contiguous row (the generic act_f switch per element kept
 * gcc from vectorising, and tanhf is a scalar libm call). Compiled for AVX-512, AVX2 + FMA and
 * the baseline, picked at run time as in nbody.c. In place (y == x) is fine: element c is read
 * before it is written and no other element is touched. */
typedef void fwd_rows_fn(int act, size_t r0, size_t r1, size_t cols, const float *x,
                         const float *bias, float *y);

#define BIAS_ACT_ROWS(name, attr)                                                                  \
    attr static void name(int act, size_t r0, size_t r1, size_t cols, const float *x,              \
                          const float *bias, float *y)                                             \
    {                                                                                              \
        for (size_t r = r0; r < r1; r++) {                                                         \
            const float *xr = x + r * cols;                                                        \
            float *yr = y + r * cols;                                                              \
            if (act == JZ_KACT_RELU && bias) {                                                     \
                _Pragma("omp simd") for (size_t c = 0; c < cols; c++)                              \
                {                                                                                  \
                    float z = xr[c] + bias[c];                                                     \
                    yr[c] = z > 0.0f ? z : 0.0f;                                                   \
                }                                                                                  \
            } else if (act == JZ_KACT_RELU) {                                                      \
                _Pragma("omp simd") for (size_t c = 0; c < cols; c++) yr[c] =                      \
                    xr[c] > 0.0f ? xr[c] : 0.0f;                                                   \
            } else if (act == JZ_KACT_GELU && bias) {                                              \
                _Pragma("omp simd") for (size_t c = 0; c < cols; c++) yr[c] =                      \
                    gelu_vec(xr[c] + bias[c]);                                                     \
            } else if (act == JZ_KACT_GELU) {                                                      \
                _Pragma("omp simd") for (size_t c = 0; c < cols; c++) yr[c] = gelu_vec(xr[c]);     \
            } else if (bias) {                                                                     \
                _Pragma("omp simd") for (size_t c = 0; c < cols; c++) yr[c] = xr[c] + bias[c];     \
            } else if (yr != xr) {                                                                 \
                memcpy(yr, xr, cols * sizeof *yr);                                                 \
            }                                                                                      \
        }                                                                                          \
    }

BIAS_ACT_ROWS(fwd_rows_base, )
#if defined(__x86_64__)
BIAS_ACT_ROWS(fwd_rows_avx2, __attribute__((target("avx2,fma"))))
BIAS_ACT_ROWS(fwd_rows_avx512, __attribute__((target("avx512f"))))
#endif

static fwd_rows_fn *pick_fwd_rows(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return fwd_rows_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return fwd_rows_avx2;
#endif
    return fwd_rows_base;
}

struct fwd_args {
    fwd_rows_fn *rows;
    int act;
    size_t cols;
    const float *x, *bias;
    float *y;
};

static void bias_act_fwd_rows(void *p, size_t chunk, size_t r0, size_t r1)
{
    const struct fwd_args *a = p;
    a->rows(a->act, r0, r1, a->cols, a->x, a->bias, a->y);
}

/* GELU costs ~20 flops per element, ReLU one: GELU pays for the pool's fork/join on a quarter of
 * the elements. */
static int cpu_bias_act_fwd(void *d, int act, size_t rows, size_t cols, void *x, void *bias,
                            void *y, struct jz_error *err)
{
    struct fwd_args a = {
        .rows = pick_fwd_rows(), .act = act, .cols = cols, .x = x, .bias = bias, .y = y};
    size_t min = act == JZ_KACT_GELU ? PAR_MIN / 4 : PAR_MIN;
    jzk_parallel_for(rows, cols >= min ? 1 : min / cols, bias_act_fwd_rows, &a);
    return 0;
}

static void bias_act_bwd_rows(void *p, size_t chunk, size_t r0, size_t r1)
{
    const struct act_args *a = p;
    for (size_t r = r0; r < r1; r++) {
        size_t o = r * a->cols;
        for (size_t c = 0; c < a->cols; c++)
            a->dx[o + c] =
                a->dy[o + c] * act_df(a->act, a->x[o + c] + (a->bias ? a->bias[c] : 0.0f));
    }
}

/* Column sums in double over blocks of columns, walking rows contiguously; each column belongs to
 * one chunk, so the result does not depend on the thread count. */
enum { COL_BLOCK = 256 };

static void col_sum_blocks(void *p, size_t chunk, size_t b0, size_t b1)
{
    const struct act_args *a = p;
    for (size_t b = b0; b < b1; b++) {
        size_t c0 = b * COL_BLOCK, c1 = c0 + COL_BLOCK < a->cols ? c0 + COL_BLOCK : a->cols;
        double acc[COL_BLOCK] = {0};
        for (size_t r = 0; r < a->rows; r++) {
            const float *dr = a->dx + r * a->cols;
            for (size_t c = c0; c < c1; c++)
                acc[c - c0] += dr[c];
        }
        for (size_t c = c0; c < c1; c++)
            a->dbias[c] = (float)acc[c - c0];
    }
}

static int cpu_bias_act_bwd(void *d, int act, size_t rows, size_t cols, void *x, void *bias,
                            void *dy, void *dx, void *dbias, struct jz_error *err)
{
    struct act_args a = {.act = act,
                         .cols = cols,
                         .x = x,
                         .bias = bias,
                         .dy = dy,
                         .dx = dx,
                         .dbias = dbias,
                         .rows = rows};
    jzk_parallel_for(rows, row_grain(cols), bias_act_bwd_rows, &a);
    if (dbias) {
        size_t blocks = (cols + COL_BLOCK - 1) / COL_BLOCK;
        jzk_parallel_for(blocks, rows * COL_BLOCK >= PAR_MIN ? 1 : blocks, col_sum_blocks, &a);
    }
    return 0;
}

struct xent_args {
    size_t cols;
    const float *logits, *probs;
    const int32_t *labels;
    float *out, *loss;
    float scale;
};

static void xent_fwd_rows(void *p, size_t chunk, size_t r0, size_t r1)
{
    const struct xent_args *a = p;
    const size_t cols = a->cols;
    for (size_t r = r0; r < r1; r++) {
        const float *lr = a->logits + r * cols;
        float *pr = a->out + r * cols;
        float mx = lr[0];
        for (size_t c = 1; c < cols; c++)
            mx = lr[c] > mx ? lr[c] : mx;
        float s = 0;
        for (size_t c = 0; c < cols; c++) {
            pr[c] = expf(lr[c] - mx);
            s += pr[c];
        }
        float inv = 1.0f / s;
        for (size_t c = 0; c < cols; c++)
            pr[c] *= inv;
        if (a->loss) {
            int32_t y = a->labels[r];
            a->loss[r] = (y >= 0 && (size_t)y < cols) ? logf(s) - (lr[y] - mx) : 0.0f;
        }
    }
}

static int cpu_xent_fwd(void *d, size_t rows, size_t cols, void *logits, void *labels, void *probs,
                        void *loss, struct jz_error *err)
{
    struct xent_args a = {
        .cols = cols, .logits = logits, .labels = labels, .out = probs, .loss = loss};
    jzk_parallel_for(rows, row_grain(cols), xent_fwd_rows, &a);
    return 0;
}

static void xent_bwd_rows(void *p, size_t chunk, size_t r0, size_t r1)
{
    const struct xent_args *a = p;
    const size_t cols = a->cols;
    for (size_t r = r0; r < r1; r++) {
        size_t o = r * cols;
        int32_t y = a->labels[r];
        if (y < 0 || (size_t)y >= cols) {
            for (size_t c = 0; c < cols; c++)
                a->out[o + c] = 0;
            continue;
        }
        for (size_t c = 0; c < cols; c++)
            a->out[o + c] = a->scale * (a->probs[o + c] - ((size_t)y == c ? 1.0f : 0.0f));
    }
}

static int cpu_xent_bwd(void *d, size_t rows, size_t cols, void *probs, void *labels, float scale,
                        void *dlogits, struct jz_error *err)
{
    struct xent_args a = {
        .cols = cols, .probs = probs, .labels = labels, .out = dlogits, .scale = scale};
    jzk_parallel_for(rows, row_grain(cols), xent_bwd_rows, &a);
    return 0;
}

/* Elementwise kernels and reductions share one argument block. */
struct vec_args {
    const float *x, *g;
    float *y, *p, *m, *v;
    float a, b1, b2, eps, wd, bc1, bc2, lr;
    double part[64];
    float fpart[64];
};

static void axpy_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct vec_args *a = p;
    float *restrict y = a->y;
    const float *restrict x = a->x;
    const float alpha = a->a;
#pragma omp simd
    for (size_t i = b; i < e; i++)
        y[i] += alpha * x[i];
}

static int cpu_axpy(void *d, size_t n, float alpha, void *x, void *y, struct jz_error *err)
{
    struct vec_args a = {.x = x, .y = y, .a = alpha};
    jzk_parallel_for(n, PAR_MIN, axpy_range, &a);
    return 0;
}

static void scale_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct vec_args *a = p;
    float *restrict y = a->y;
    const float alpha = a->a;
#pragma omp simd
    for (size_t i = b; i < e; i++)
        y[i] *= alpha;
}

static int cpu_scale(void *d, size_t n, float alpha, void *x, struct jz_error *err)
{
    struct vec_args a = {.y = x, .a = alpha};
    jzk_parallel_for(n, PAR_MIN, scale_range, &a);
    return 0;
}

static void fill_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct vec_args *a = p;
    float *restrict y = a->y;
    const float value = a->a;
#pragma omp simd
    for (size_t i = b; i < e; i++)
        y[i] = value;
}

static int cpu_fill(void *d, size_t n, float value, void *x, struct jz_error *err)
{
    struct vec_args a = {.y = x, .a = value};
    jzk_parallel_for(n, PAR_MIN, fill_range, &a);
    return 0;
}

static void sum_range(void *p, size_t chunk, size_t b, size_t e)
{
    struct vec_args *a = p;
    const float *restrict x = a->x;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t i = b; i < e; i++)
        s += x[i];
    a->part[chunk] = s;
}

static void max_range(void *p, size_t chunk, size_t b, size_t e)
{
    struct vec_args *a = p;
    float m = a->x[b];
    for (size_t i = b + 1; i < e; i++)
        m = fmaxf(m, a->x[i]); /* fmaxf skips NaNs */
    a->fpart[chunk] = m;
}

static int cpu_reduce(void *d, int kind, size_t n, void *x, void *out, struct jz_error *err)
{
    struct vec_args a = {.x = x};
    /* Unused chunks keep the neutral value; chunk order fixes the summation order. */
    if (kind == JZK_REDUCE_SUM) {
        for (size_t c = 0; c < 64; c++)
            a.part[c] = 0;
        jzk_parallel_for(n, PAR_MIN, sum_range, &a);
        double s = 0;
        for (size_t c = 0; c < 64; c++)
            s += a.part[c];
        *(float *)out = (float)s;
    } else {
        for (size_t c = 0; c < 64; c++)
            a.fpart[c] = NAN;
        jzk_parallel_for(n, PAR_MIN, max_range, &a);
        float m = NAN;
        for (size_t c = 0; c < 64; c++)
            m = fmaxf(m, a.fpart[c]);
        *(float *)out = m;
    }
    return 0;
}

static int32_t argmax_row(const float *xr, size_t cols)
{
    size_t best = 0;
    for (size_t c = 1; c < cols; c++)
        if (xr[c] > xr[best])
            best = c;
    return (int32_t)best;
}

struct argmax_args {
    size_t cols;
    const float *x;
    const int32_t *labels;
    int32_t *out;
    size_t hits[64];
};

static void argmax_rows_range(void *p, size_t chunk, size_t r0, size_t r1)
{
    const struct argmax_args *a = p;
    for (size_t r = r0; r < r1; r++)
        a->out[r] = argmax_row(a->x + r * a->cols, a->cols);
}

static int cpu_argmax_rows(void *d, size_t rows, size_t cols, void *x, void *out,
                           struct jz_error *err)
{
    struct argmax_args a = {.cols = cols, .x = x, .out = out};
    jzk_parallel_for(rows, row_grain(cols), argmax_rows_range, &a);
    return 0;
}

static void accuracy_range(void *p, size_t chunk, size_t r0, size_t r1)
{
    struct argmax_args *a = p;
    size_t hits = 0;
    for (size_t r = r0; r < r1; r++)
        hits += argmax_row(a->x + r * a->cols, a->cols) == a->labels[r];
    a->hits[chunk] = hits;
}

static int cpu_accuracy(void *d, size_t rows, size_t cols, void *x, void *labels, void *out,
                        struct jz_error *err)
{
    struct argmax_args a = {.cols = cols, .x = x, .labels = labels};
    jzk_parallel_for(rows, row_grain(cols), accuracy_range, &a);
    size_t hits = 0;
    for (size_t c = 0; c < 64; c++)
        hits += a.hits[c];
    *(float *)out = (float)((double)hits / (double)rows);
    return 0;
}

static void sgd_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct vec_args *a = p;
    float *restrict P = a->p, *restrict V = a->v;
    const float *restrict G = a->g;
    const float lr = a->lr, mom = a->a, wd = a->wd;
#pragma omp simd
    for (size_t i = b; i < e; i++) {
        float gi = G[i] + wd * P[i];
        float vi = mom * V[i] + gi;
        V[i] = vi;
        P[i] -= lr * vi;
    }
}

static int cpu_sgd(void *d, size_t n, void *p, void *g, void *v, float lr, float mom, float wd,
                   struct jz_error *err)
{
    struct vec_args a = {.p = p, .g = g, .v = v, .lr = lr, .a = mom, .wd = wd};
    jzk_parallel_for(n, PAR_MIN, sgd_range, &a);
    return 0;
}

static void adam_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct vec_args *a = p;
    float *restrict P = a->p, *restrict M = a->m, *restrict V = a->v;
    const float *restrict G = a->g;
    const float lr = a->lr, b1 = a->b1, b2 = a->b2, eps = a->eps, wd = a->wd, bc1 = a->bc1,
                bc2 = a->bc2;
#pragma omp simd
    for (size_t i = b; i < e; i++) {
        float gi = G[i];
        float mi = b1 * M[i] + (1.0f - b1) * gi;
        float vi = b2 * V[i] + (1.0f - b2) * gi * gi;
        M[i] = mi;
        V[i] = vi;
        float mh = mi / bc1, vh = vi / bc2;
        P[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * P[i]);
    }
}

static int cpu_adam(void *d, size_t n, void *p, void *g, void *m, void *v, float lr, float b1,
                    float b2, float eps, float wd, float bc1, float bc2, struct jz_error *err)
{
    struct vec_args a = {.p = p,
                         .g = g,
                         .m = m,
                         .v = v,
                         .lr = lr,
                         .b1 = b1,
                         .b2 = b2,
                         .eps = eps,
                         .wd = wd,
                         .bc1 = bc1,
                         .bc2 = bc2};
    jzk_parallel_for(n, PAR_MIN, adam_range, &a);
    return 0;
}

struct body_args {
    float *pos, *vel, *out;
    const float *acc;
    float dt, a, b;
    uint64_t seed, offset, first;
    size_t n;
    int dist;
};

static void leapfrog_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct body_args *a = p;
    for (size_t i = b; i < e; i++) {
        for (int k = 0; k < 3; k++) {
            a->vel[4 * i + k] += a->dt * a->acc[4 * i + k];
            a->pos[4 * i + k] += a->dt * a->vel[4 * i + k];
        }
    }
}

static int cpu_leapfrog(void *d, size_t n, float dt, void *pos, void *vel, void *acc,
                        struct jz_error *err)
{
    struct body_args a = {.pos = pos, .vel = vel, .acc = acc, .dt = dt};
    jzk_parallel_for(n, PAR_MIN / 4, leapfrog_range, &a);
    return 0;
}

static void rand_range(void *p, size_t chunk, size_t b0, size_t b1)
{
    const struct body_args *a = p;
    for (size_t bi = b0; bi < b1; bi++) {
        uint64_t blk = a->first + bi;
        float v[4];
        jzk_philox_block(blk, a->seed, a->dist, a->a, a->b, v);
        for (int lane = 0; lane < 4; lane++) {
            uint64_t e = blk * 4 + (uint64_t)lane;
            if (e >= a->offset && e - a->offset < a->n)
                a->out[e - a->offset] = v[lane];
        }
    }
}

static int cpu_rand(void *d, int dist, size_t n, uint64_t seed, uint64_t offset, float a, float b,
                    void *out, struct jz_error *err)
{
    uint64_t first = offset / 4, last = (offset + n - 1) / 4;
    struct body_args args = {.out = out,
                             .a = a,
                             .b = b,
                             .seed = seed,
                             .offset = offset,
                             .first = first,
                             .n = n,
                             .dist = dist};
    jzk_parallel_for((size_t)(last - first + 1), PAR_MIN / 4, rand_range, &args);
    return 0;
}

static const struct jzk_ops ops = {
    .version = JZK_OPS_VERSION,
    .count = cpu_count,
    .open = cpu_open,
    .close = cpu_close,
    .sync = cpu_sync,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .write = cpu_write,
    .read = cpu_read,
    .copy = cpu_copy,
    .gemm = cpu_gemm,
    .bias_act_fwd = cpu_bias_act_fwd,
    .bias_act_bwd = cpu_bias_act_bwd,
    .xent_fwd = cpu_xent_fwd,
    .xent_bwd = cpu_xent_bwd,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .fill = cpu_fill,
    .reduce = cpu_reduce,
    .argmax_rows = cpu_argmax_rows,
    .accuracy = cpu_accuracy,
    .sgd = cpu_sgd,
    .adam = cpu_adam,
    .heat2d = jzk_cpu_heat2d,
    .heat3d = jzk_cpu_heat3d,
    .nbody_forces = jzk_cpu_nbody_forces,
    .leapfrog = cpu_leapfrog,
    .rand = cpu_rand,
};

const struct jzk_ops *jzk_cpu_ops(void)
{
    return &ops;
}
