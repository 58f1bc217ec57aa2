/* The cpu backend: one device (the host), GEMM from OpenBLAS or, with AVX-512, our own
 * (gemm_avx512.c), the other kernels in C on the backend's thread pool (pool.c). Work runs
 * before each call returns: there is no queue. */
#include "cpu.h"
#include "../internal.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
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

/* OpenBLAS's own threads are not used (the pool threads GEMM, see cpu_gemm), so they are stopped
 * when the device is first opened. Started with the library, they poll (sched_yield) for about
 * 2^28 cycles before they first sleep: a job that opened its device soon after start-up (the
 * infer plugin on 10k rows) shared its two cores with them for its whole run, at half speed.
 * blas_thread_shutdown_ is OpenBLAS's own (exported, not in cblas.h; it is what OpenBLAS runs
 * around fork) and its pthreads build starts the threads again on its next threaded call, so code
 * that sets OpenBLAS's thread count back up still works. Weak: a BLAS without it skips this. */
extern int blas_thread_shutdown_(void) __attribute__((weak));
static pthread_once_t openblas_once = PTHREAD_ONCE_INIT;

static void openblas_single(void)
{
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_)
        blas_thread_shutdown_();
}

static int cpu_open(int ordinal, void **d, char *name, size_t name_len, uint64_t *memory,
                    struct jz_error *err)
{
    pthread_once(&openblas_once, openblas_single);
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    *memory = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
    snprintf(name, name_len, "host CPU (%ld threads)", sysconf(_SC_NPROCESSORS_ONLN));
    *d = NULL;
    /* Start the pool's threads now rather than inside the first kernel, where their creation
     * was counted as the kernel's time (the infer plugin's first batch). */
    jzk_pool_threads();
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

/* Transfers are copies; a large one is split over the pool, since one core does not reach the
 * memory bandwidth two do (the infer plugin's 3 MiB batch copy was 7% of its main thread, with
 * the other core idle). */
#define COPY_PAR_MIN (1u << 20)

struct copy_args {
    char *dst;
    const char *src;
};

static void copy_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct copy_args *a = p;
    memcpy(a->dst + b * 64, a->src + b * 64, (e - b) * 64);
}

static void copy_bytes(void *dst, const void *src, size_t bytes)
{
    if (bytes < COPY_PAR_MIN) {
        memcpy(dst, src, bytes);
        return;
    }
    struct copy_args a = {.dst = dst, .src = src};
    size_t lines = bytes / 64;
    jzk_parallel_for(lines, COPY_PAR_MIN / 128, copy_range, &a);
    memcpy((char *)dst + lines * 64, (const char *)src + lines * 64, bytes - lines * 64);
}

static int cpu_write(void *d, void *h, size_t off, const void *src, size_t bytes,
                     struct jz_error *err)
{
    copy_bytes((char *)h + off, src, bytes);
    return 0;
}

static int cpu_read(void *d, void *h, size_t off, void *dst, size_t bytes, struct jz_error *err)
{
    copy_bytes(dst, (const char *)h + off, bytes);
    return 0;
}

static int cpu_copy(void *d, void *dst, size_t doff, void *src, size_t soff, size_t bytes,
                    struct jz_error *err)
{
    /* The front end refuses overlapping ranges, so a split copy is safe. */
    copy_bytes((char *)dst + doff, (const char *)src + soff, bytes);
    return 0;
}

/* Row gathers (a shuffled mini-batch out of a data set in host memory). Each row starts a
 * fresh stream of cache misses, often on a fresh page: the next row's first lines are
 * prefetched while this one is copied, and from GATHER_PAR_MIN bytes the rows are split over
 * the pool, whose threads keep more misses in flight (and each thread's share of the batch then
 * sits in its own cache for the GEMM panels that follow). A batch of 128 Fashion-MNIST rows
 * (401 KB) took 100 us on one thread, all of it waiting on memory. */
#define GATHER_PAR_MIN (64u << 10)
#define GATHER_PREFETCH_LINES 8

struct gather_args {
    char *dst;
    const char *src;
    size_t row_bytes;
    const uint32_t *rows;
    size_t n;
};

static void gather_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct gather_args *a = p;
    for (size_t i = b; i < e; i++) {
        if (i + 1 < e) {
            const char *next = a->src + (size_t)a->rows[i + 1] * a->row_bytes;
            size_t lines = (a->row_bytes + 63) / 64;
            if (lines > GATHER_PREFETCH_LINES)
                lines = GATHER_PREFETCH_LINES;
            for (size_t l = 0; l < lines; l++)
                __builtin_prefetch(next + l * 64);
        }
        memcpy(a->dst + i * a->row_bytes, a->src + (size_t)a->rows[i] * a->row_bytes, a->row_bytes);
    }
}

static int cpu_write_rows(void *d, void *h, size_t off, const void *src, size_t row_bytes,
                          const uint32_t *rows, size_t n, struct jz_error *err)
{
    struct gather_args a = {
        .dst = (char *)h + off, .src = src, .row_bytes = row_bytes, .rows = rows, .n = n};
    size_t grain = GATHER_PAR_MIN / 2 / row_bytes;
    jzk_parallel_for(n, grain ? grain : 1, gather_range, &a);
    return 0;
}

/* GEMM threading. OpenBLAS's own threads did poorly on the shapes training and inference use
 * (784-256-128-10 MLP, batch 128): 2 threads ran a step's eight GEMMs in 1.42 ms against 1.45 ms
 * on one, and their idle spinning (sched_yield) took 31% of the cycles of a training run from the
 * kernels around them. So the cpu backend threads GEMM itself: C is cut into panels along its
 * longer side in multiples of 16 (the micro-kernel's tile), and each panel is one
 * single-threaded cblas_sgemm on a pool thread (0.86 ms for the same step with a panel per
 * thread), or our own single-threaded SGEMM (gemm_avx512.c, see gemm_pick). OpenBLAS is set to one
 * thread for the process (checked before every GEMM, since code beside us may set it back); a GEMM
 * below GEMM_PAR_MIN multiply-adds runs on the calling thread. That was 2^18, as in OpenBLAS,
 * which left a step's three products with the 10-wide last layer (128 x 128 x 10 each, 164 K
 * multiply-adds) on one thread: 9 us each there, 5.5-6 us on two, and the step's forward and
 * backward phases together 30-59 us shorter (3 alternated pairs, a step of about 1.05 ms). */
#define GEMM_PAR_MIN (1u << 16)
#define GEMM_UNIT 16
/* Panels of 256 rows or columns or more: two per thread where the GEMM is that large, claimed in
 * turn, so that a thread the scheduler slows down (another process on its core) holds the GEMM up
 * less; smaller panels cost more packing than they saved (8% of an inference run at 128). */
#define GEMM_PANEL_UNITS 16

/* Which SGEMM runs the panels. JZ_CPU_GEMM selects one for every GEMM: our own (gemm_avx512.c)
 * "avx512", "avx2" or "generic" (portable C, for tests), or "openblas"; a kind the CPU lacks
 * gets the default. The default is OpenBLAS, except on an AVX2 CPU without AVX-512 (where
 * OpenBLAS's kernels are AVX2 as well) for two kinds of product in a training step, where our
 * AVX2 kernel measured faster on the 784-256-128-10 MLP at batch 128:
 * - C = A B^T (backward, dx = dy W^T): 1.6-1.8x (128x256x128: 76-110 us against 123-187;
 *   128x128x10: 7-8 against 12-14), 2 threads, best of 7 interleaved;
 * - C = A^T B with a C of GEMM_OWN_TN_MIN elements or more (dW = x^T dy of the first layer,
 *   784 x 256): 332-374 us against 380-405 inside training steps, where OpenBLAS's beta = 0
 *   pass first zeroes the 800 KB C, gone from the cache since the last step's Adam read it.
 *   With small C the two are even (dW2, 256 x 128) or OpenBLAS is ahead (dW3, n = 10: 9 us
 *   against 17).
 * The AVX-512 kernel is opt-in until it has been measured on an AVX-512 host (the development
 * machines expose AVX2 only). Read at every GEMM (one getenv, well under a microsecond against
 * tens of microseconds for the smallest parallel GEMM) so that a test can run every path in one
 * process. */
#define GEMM_OWN_TN_MIN (1u << 17)
#define GEMM_OPENBLAS (-1)

static int gemm_pick(bool ta, bool tb, size_t m, size_t n)
{
    static const struct {
        const char *name;
        int kind;
    } names[] = {{"openblas", GEMM_OPENBLAS},
                 {"avx512", JZK_GEMM_AVX512},
                 {"avx2", JZK_GEMM_AVX2},
                 {"generic", JZK_GEMM_GENERIC}};
    const char *v = getenv("JZ_CPU_GEMM");
    if (v)
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(v, names[i].name) == 0 &&
                (names[i].kind == GEMM_OPENBLAS || jzk_gemm_own_supported(names[i].kind)))
                return names[i].kind;
    bool own = (tb && !ta) || (ta && !tb && (double)m * (double)n >= GEMM_OWN_TN_MIN);
    if (own && jzk_gemm_own_supported(JZK_GEMM_AVX2) && !jzk_gemm_own_supported(JZK_GEMM_AVX512))
        return JZK_GEMM_AVX2;
    return GEMM_OPENBLAS;
}

struct gemm_args {
    int impl; /* GEMM_OPENBLAS or an enum jzk_gemm_kind */
    bool ta, tb, split_n;
    size_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
};

static void gemm_call(const struct gemm_args *g, size_t m, size_t n, const float *a, const float *b,
                      float *c)
{
    /* our own GEMM fails only when its packing buffer cannot be allocated: OpenBLAS then */
    if (g->impl != GEMM_OPENBLAS && jzk_gemm_own(g->impl, g->ta, g->tb, m, n, g->k, g->alpha, a,
                                                 g->lda, b, g->ldb, g->beta, c, g->ldc) == 0)
        return;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)g->k, g->alpha, a, (int)g->lda, b, (int)g->ldb, g->beta, c,
                (int)g->ldc);
}

/* Panels [u0, u1) of GEMM_UNIT rows or columns of C. */
static void gemm_panel(void *p, size_t chunk, size_t u0, size_t u1)
{
    const struct gemm_args *g = p;
    size_t dim = g->split_n ? g->n : g->m;
    size_t lo = u0 * GEMM_UNIT, hi = u1 * GEMM_UNIT < dim ? u1 * GEMM_UNIT : dim;
    if (lo >= hi)
        return;
    if (g->split_n)
        gemm_call(g, g->m, hi - lo, g->a, g->tb ? g->b + lo * g->ldb : g->b + lo, g->c + lo);
    else
        gemm_call(g, hi - lo, g->n, g->ta ? g->a + lo : g->a + lo * g->lda, g->b,
                  g->c + lo * g->ldc);
}

/* Units of GEMM_UNIT rows or columns along the split side, and how many panels to cut them in. */
static void gemm_plan(const struct gemm_args *g, size_t *units, size_t *chunks)
{
    size_t u = ((g->split_n ? g->n : g->m) + GEMM_UNIT - 1) / GEMM_UNIT;
    /* a multiple of the thread count, so that on an idle machine every thread gets as many */
    size_t threads = jzk_pool_threads(), c = u / GEMM_PANEL_UNITS / threads * threads;
    if (c > 2 * threads)
        c = 2 * threads;
    if (c < threads)
        c = threads;
    if ((double)g->m * (double)g->n * (double)g->k < (double)GEMM_PAR_MIN)
        c = 1;
    *units = u;
    *chunks = c;
}

static int cpu_gemm(void *d, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, void *a,
                    size_t lda, void *b, size_t ldb, float beta, void *c, size_t ldc,
                    struct jz_error *err)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
    struct gemm_args g = {.impl = gemm_pick(ta, tb, m, n),
                          .ta = ta,
                          .tb = tb,
                          .split_n = n > m,
                          .m = m,
                          .n = n,
                          .k = k,
                          .lda = lda,
                          .ldb = ldb,
                          .ldc = ldc,
                          .alpha = alpha,
                          .beta = beta,
                          .a = a,
                          .b = b,
                          .c = c};
    size_t units, chunks;
    gemm_plan(&g, &units, &chunks);
    jzk_parallel_chunks(units, chunks, gemm_panel, &g);
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
typedef void fwd_rows_fn(int act, size_t r0, size_t r1, size_t cols, size_t ld, const float *x,
                         const float *bias, float *y);

/* Rows are `ld` floats apart, so that a panel of columns can be done on its own (dense_panel). */
#define BIAS_ACT_ROWS(name, attr)                                                                  \
    attr static void name(int act, size_t r0, size_t r1, size_t cols, size_t ld, const float *x,   \
                          const float *bias, float *y)                                             \
    {                                                                                              \
        for (size_t r = r0; r < r1; r++) {                                                         \
            const float *xr = x + r * ld;                                                          \
            float *yr = y + r * ld;                                                                \
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
    a->rows(a->act, r0, r1, a->cols, a->cols, a->x, a->bias, a->y);
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

struct dense_args {
    struct gemm_args g;
    fwd_rows_fn *rows;
    int act;
    const float *bias;
    float *y;
};

/* A panel of z = x W, then y = act(z + bias) on the same panel while it is in this thread's
 * cache (the separate pass was 4% of an inference run, on data gone from the cache). */
static void dense_panel(void *p, size_t chunk, size_t u0, size_t u1)
{
    const struct dense_args *a = p;
    const struct gemm_args *g = &a->g;
    gemm_panel((void *)g, chunk, u0, u1);
    size_t dim = g->split_n ? g->n : g->m;
    size_t lo = u0 * GEMM_UNIT, hi = u1 * GEMM_UNIT < dim ? u1 * GEMM_UNIT : dim;
    if (lo >= hi)
        return;
    if (g->split_n)
        a->rows(a->act, 0, g->m, hi - lo, g->ldc, g->c + lo, a->bias ? a->bias + lo : NULL,
                a->y + lo);
    else
        a->rows(a->act, lo, hi, g->n, g->ldc, g->c, a->bias, a->y);
}

static int cpu_dense_fwd(void *d, int act, size_t rows, size_t in, size_t out, void *x, void *w,
                         void *bias, void *z, void *y, struct jz_error *err)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
    struct dense_args a = {.g = {.impl = gemm_pick(false, false, rows, out),
                                 .split_n = out > rows,
                                 .m = rows,
                                 .n = out,
                                 .k = in,
                                 .lda = in,
                                 .ldb = out,
                                 .ldc = out,
                                 .alpha = 1.0f,
                                 .beta = 0.0f,
                                 .a = x,
                                 .b = w,
                                 .c = z},
                           .rows = pick_fwd_rows(),
                           .act = act,
                           .bias = bias,
                           .y = y};
    size_t units, chunks;
    gemm_plan(&a.g, &units, &chunks);
    jzk_parallel_chunks(units, chunks, dense_panel, &a);
    return 0;
}

/* The backward pass over rows [r0, r1) and columns [c0, c1): dx = dy * act'(x + bias), and, when
 * acc is given, acc[c - c0] += dx (in double, row by row: the order col_sum_blocks used, so the
 * bias gradient does not change with the thread count or with fusing). ReLU and the identity
 * are straight vector loops, multiversioned like the forward pass (the act_df switch per element
 * kept this loop scalar; it was 9% of a training run). GELU keeps act_df and its tanhf. */
typedef void bwd_rows_fn(int act, size_t r0, size_t r1, size_t c0, size_t c1, size_t cols,
                         const float *x, const float *bias, const float *dy, float *dx,
                         double *acc);

#define BIAS_ACT_BWD_ROWS(name, attr)                                                              \
    attr static void name(int act, size_t r0, size_t r1, size_t c0, size_t c1, size_t cols,        \
                          const float *x, const float *bias, const float *dy, float *dx,           \
                          double *acc)                                                             \
    {                                                                                              \
        size_t w = c1 - c0;                                                                        \
        for (size_t r = r0; r < r1; r++) {                                                         \
            const float *xr = x + r * cols + c0, *dyr = dy + r * cols + c0;                        \
            const float *br = bias ? bias + c0 : NULL;                                             \
            float *dxr = dx + r * cols + c0;                                                       \
            if (act == JZ_KACT_RELU && br) {                                                       \
                _Pragma("omp simd") for (size_t c = 0; c < w; c++) dxr[c] =                        \
                    xr[c] + br[c] > 0.0f ? dyr[c] : 0.0f;                                          \
            } else if (act == JZ_KACT_RELU) {                                                      \
                _Pragma("omp simd") for (size_t c = 0; c < w; c++) dxr[c] =                        \
                    xr[c] > 0.0f ? dyr[c] : 0.0f;                                                  \
            } else if (act == JZ_KACT_GELU) {                                                      \
                for (size_t c = 0; c < w; c++)                                                     \
                    dxr[c] = dyr[c] * act_df(act, xr[c] + (br ? br[c] : 0.0f));                    \
            } else if (dxr != dyr) {                                                               \
                memmove(dxr, dyr, w * sizeof *dxr);                                                \
            }                                                                                      \
            if (acc) {                                                                             \
                _Pragma("omp simd") for (size_t c = 0; c < w; c++) acc[c] += dxr[c];               \
            }                                                                                      \
        }                                                                                          \
    }

BIAS_ACT_BWD_ROWS(bwd_rows_base, )
#if defined(__x86_64__)
BIAS_ACT_BWD_ROWS(bwd_rows_avx2, __attribute__((target("avx2,fma"))))
BIAS_ACT_BWD_ROWS(bwd_rows_avx512, __attribute__((target("avx512f"))))
#endif

static bwd_rows_fn *pick_bwd_rows(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return bwd_rows_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return bwd_rows_avx2;
#endif
    return bwd_rows_base;
}

struct bwd_args {
    bwd_rows_fn *rows_fn;
    int act;
    size_t rows, cols;
    const float *x, *bias, *dy;
    float *dx, *dbias;
};

static void bias_act_bwd_rows(void *p, size_t chunk, size_t r0, size_t r1)
{
    const struct bwd_args *a = p;
    a->rows_fn(a->act, r0, r1, 0, a->cols, a->cols, a->x, a->bias, a->dy, a->dx, NULL);
}

/* Column sums in double over blocks of columns, walking rows contiguously; each column belongs to
 * one chunk, so the result does not depend on the thread count. With `fused`, the block's dx is
 * computed in the same walk (one pass over dy instead of two). Blocks of 128 columns let a
 * 128 x 256 gradient (a training step's widest) take the fused pass on two threads: 6.7 us,
 * against 12.4 on the two-pass path it took on one thread with blocks of 256 (blocks of 64 made
 * the single-block 128 x 128 case slower, 4.5 us against 3.8). */
enum { COL_BLOCK = 128 };

static void col_blocks(const struct bwd_args *a, size_t b0, size_t b1, bool fused)
{
    for (size_t b = b0; b < b1; b++) {
        size_t c0 = b * COL_BLOCK, c1 = c0 + COL_BLOCK < a->cols ? c0 + COL_BLOCK : a->cols;
        double acc[COL_BLOCK] = {0};
        if (fused) {
            a->rows_fn(a->act, 0, a->rows, c0, c1, a->cols, a->x, a->bias, a->dy, a->dx, acc);
        } else {
            for (size_t r = 0; r < a->rows; r++) {
                const float *dr = a->dx + r * a->cols;
                for (size_t c = c0; c < c1; c++)
                    acc[c - c0] += dr[c];
            }
        }
        for (size_t c = c0; c < c1; c++)
            a->dbias[c] = (float)acc[c - c0];
    }
}

static void col_sum_blocks(void *p, size_t chunk, size_t b0, size_t b1)
{
    col_blocks(p, b0, b1, false);
}

static void bwd_fused_blocks(void *p, size_t chunk, size_t b0, size_t b1)
{
    col_blocks(p, b0, b1, true);
}

static int cpu_bias_act_bwd(void *d, int act, size_t rows, size_t cols, void *x, void *bias,
                            void *dy, void *dx, void *dbias, struct jz_error *err)
{
    struct bwd_args a = {.rows_fn = pick_bwd_rows(),
                         .act = act,
                         .rows = rows,
                         .cols = cols,
                         .x = x,
                         .bias = bias,
                         .dy = dy,
                         .dx = dx,
                         .dbias = dbias};
    size_t blocks = (cols + COL_BLOCK - 1) / COL_BLOCK;
    /* blocks per chunk: a chunk of at least PAR_MIN / 2 elements (two passes' worth of work) */
    size_t grain = (PAR_MIN / 2 + rows * COL_BLOCK - 1) / (rows * COL_BLOCK);
    /* One fused pass when the column blocks give every thread work (or the whole is small);
     * otherwise (few wide-enough blocks, many rows) rows in parallel, then the sums. */
    if (dbias && (rows * cols < PAR_MIN || blocks / grain >= jzk_pool_threads())) {
        jzk_parallel_for(blocks, grain, bwd_fused_blocks, &a);
        return 0;
    }
    jzk_parallel_for(rows, row_grain(cols), bias_act_bwd_rows, &a);
    if (dbias)
        jzk_parallel_for(blocks, grain, col_sum_blocks, &a);
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

/* Adam's per-element divide and square root bound this loop: built for AVX-512 and AVX2 too
 * (the baseline is SSE2, 4 lanes), picked at run time, and the two bias corrections are
 * multiplications by their reciprocals (one divide per element left instead of three). */
#define ADAM_ELEMS(name, attr)                                                                     \
    attr static void name(const struct vec_args *a, size_t b, size_t e)                            \
    {                                                                                              \
        float *restrict P = a->p, *restrict M = a->m, *restrict V = a->v;                          \
        const float *restrict G = a->g;                                                            \
        const float lr = a->lr, b1 = a->b1, b2 = a->b2, eps = a->eps, wd = a->wd,                  \
                    rbc1 = 1.0f / a->bc1, rbc2 = 1.0f / a->bc2;                                    \
        _Pragma("omp simd") for (size_t i = b; i < e; i++)                                         \
        {                                                                                          \
            float gi = G[i];                                                                       \
            float mi = b1 * M[i] + (1.0f - b1) * gi;                                               \
            float vi = b2 * V[i] + (1.0f - b2) * gi * gi;                                          \
            M[i] = mi;                                                                             \
            V[i] = vi;                                                                             \
            float mh = mi * rbc1, vh = vi * rbc2;                                                  \
            P[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * P[i]);                                     \
        }                                                                                          \
    }

ADAM_ELEMS(adam_base, )
#if defined(__x86_64__)
ADAM_ELEMS(adam_avx2, __attribute__((target("avx2,fma"))))
ADAM_ELEMS(adam_avx512, __attribute__((target("avx512f"))))
#endif

static void adam_range(void *p, size_t chunk, size_t b, size_t e)
{
    const struct vec_args *a = p;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        adam_avx512(a, b, e);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        adam_avx2(a, b, e);
    else
#endif
        adam_base(a, b, e);
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
    /* ~20 flops and a divide per element: worth the (spinning) pool's fork/join at 8 Ki. */
    jzk_parallel_for(n, PAR_MIN / 4, adam_range, &a);
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
    .dense_fwd = cpu_dense_fwd,
    .write_rows = cpu_write_rows,
};

const struct jzk_ops *jzk_cpu_ops(void)
{
    return &ops;
}
