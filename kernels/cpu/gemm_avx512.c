/* The cpu backend's own single-threaded SGEMM, C = alpha op(A) op(B) + beta C (row-major), for
 * the panels cpu_gemm cuts: packed panels, a register-blocked micro-kernel, K blocking.
 *
 * Layout (the classic Goto/BLIS one). For each block of KC of k: op(B)'s KC x n block is packed
 * into micro-panels of NR columns ([p][NR], zero-padded past n); then, for each block of MC
 * rows, op(A)'s MC x KC block into micro-panels of MR rows ([p][MR], zero-padded past m); the
 * micro-kernel multiplies one A micro-panel by one B micro-panel into an MR x NR tile held in
 * registers and writes alpha * tile + beta * C (beta applied on the first K block only, and C not
 * read when beta == 0, so NaN garbage there is harmless). Tiles that stick out of C (m or n not a
 * multiple of the tile) are computed whole into a local tile (the padding is zeros) and only
 * their inside is written: no masked loads, and every m, n, k works with one micro-kernel.
 *
 * Micro-kernels, chosen by the caller (cpu.c, at run time):
 * - AVX-512F, 8 x 32: 16 zmm accumulators, two B vectors and a broadcast A operand per k.
 * - AVX2 + FMA, 6 x 16: 12 ymm accumulators (the same driver on a machine without AVX-512).
 * - portable C at the AVX-512 tile, 8 x 32: for tests on machines without AVX-512, so that the
 *   driver's blocking and edges at the AVX-512 tile are checked everywhere.
 * The ISA-specific functions carry target attributes, so the rest of the library (and this file's
 * driver) stays baseline x86-64; cpu.c calls the AVX ones only when the CPU has them. */
#include "cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GEMM_X86 1
#endif

/* K block: a B micro-panel (KC x 32 floats, 32 KiB at 256) stays in L1 while the A micro-panels
 * go past it; k is cut into equal blocks (784 -> 4 x 196, not 3 x 256 + 16). */
#define KC 256
/* Rows of A packed at a time (a multiple of every MR; 96 x 256 x 4 = 96 KiB, in L2). */
#define MC 96
/* Columns of B packed at a time (256 x 512 x 4 = 512 KiB). */
#define NC 512
#define MR_MAX 8
#define NR_MAX 32

typedef void ukernel_fn(size_t k, const float *pa, const float *pb, float alpha, float beta,
                        float *c, size_t ldc);

struct ukernel {
    size_t mr, nr;
    ukernel_fn *fn;
};

/* ---- micro-kernels: C[0..mr)[0..nr) = alpha * pa^T pb + beta * C (C unread when beta == 0) ----
 */

static void uk_generic(size_t k, const float *pa, const float *pb, float alpha, float beta,
                       float *c, size_t ldc)
{
    float t[8][32] = {{0}};
    for (size_t p = 0; p < k; p++)
        for (size_t i = 0; i < 8; i++)
            for (size_t j = 0; j < 32; j++)
                t[i][j] += pa[p * 8 + i] * pb[p * 32 + j];
    for (size_t i = 0; i < 8; i++)
        for (size_t j = 0; j < 32; j++)
            c[i * ldc + j] =
                beta == 0 ? alpha * t[i][j] : fmaf(alpha, t[i][j], beta * c[i * ldc + j]);
}

#ifdef GEMM_X86
__attribute__((target("avx512f,fma"))) static void
uk_avx512(size_t k, const float *pa, const float *pb, float alpha, float beta, float *c, size_t ldc)
{
    __m512 c0[8], c1[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        c0[i] = c1[i] = _mm512_setzero_ps();
    for (size_t p = 0; p < k; p++) {
        __m512 b0 = _mm512_load_ps(pb), b1 = _mm512_load_ps(pb + 16);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m512 a = _mm512_set1_ps(pa[i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
        pa += 8;
        pb += 32;
    }
    __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, c0[i]));
            _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, c1[i]));
        }
    } else {
        __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            float *r = c + i * ldc;
            _mm512_storeu_ps(r, _mm512_fmadd_ps(va, c0[i], _mm512_mul_ps(vb, _mm512_loadu_ps(r))));
            _mm512_storeu_ps(
                r + 16, _mm512_fmadd_ps(va, c1[i], _mm512_mul_ps(vb, _mm512_loadu_ps(r + 16))));
        }
    }
}

__attribute__((target("avx2,fma"))) static void
uk_avx2(size_t k, const float *pa, const float *pb, float alpha, float beta, float *c, size_t ldc)
{
    __m256 c0[6], c1[6];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++)
        c0[i] = c1[i] = _mm256_setzero_ps();
    for (size_t p = 0; p < k; p++) {
        __m256 b0 = _mm256_load_ps(pb), b1 = _mm256_load_ps(pb + 8);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 a = _mm256_broadcast_ss(pa + i);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
        pa += 6;
        pb += 16;
    }
    __m256 va = _mm256_set1_ps(alpha);
    if (beta == 0) {
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, c0[i]));
            _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, c1[i]));
        }
    } else {
        __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            float *r = c + i * ldc;
            _mm256_storeu_ps(r, _mm256_fmadd_ps(va, c0[i], _mm256_mul_ps(vb, _mm256_loadu_ps(r))));
            _mm256_storeu_ps(r + 8,
                             _mm256_fmadd_ps(va, c1[i], _mm256_mul_ps(vb, _mm256_loadu_ps(r + 8))));
        }
    }
}
#endif

/* ---- packing ---- */

/* mr whole rows of a row-major A, p along the rows: the rows are read side by side, p by p, so
 * that the writes are sequential (row by row they went mr floats apart). */
static inline __attribute__((always_inline)) void pack_a_rows(const float *s, size_t lda, size_t kc,
                                                              float *d, size_t mr)
{
    for (size_t p = 0; p < kc; p++)
        for (size_t r = 0; r < mr; r++)
            d[p * mr + r] = s[r * lda + p];
}

/* op(A)[i0 .. i0+mc)[p0 .. p0+kc) into micro-panels of mr rows, [p][mr], zeros past mc. */
static void pack_a(const struct ukernel *u, bool ta, const float *a, size_t lda, size_t i0,
                   size_t mc, size_t p0, size_t kc, float *dst)
{
    size_t mr = u->mr;
    for (size_t ir = 0; ir < mc; ir += mr, dst += mr * kc) {
        size_t rows = mc - ir < mr ? mc - ir : mr;
        if (ta) {
            /* op(A)(i, p) = a[p * lda + i]: each p has the mr rows side by side */
            for (size_t p = 0; p < kc; p++) {
                const float *s = a + (p0 + p) * lda + i0 + ir;
                float *d = dst + p * mr;
                size_t r = 0;
                for (; r < rows; r++)
                    d[r] = s[r];
                for (; r < mr; r++)
                    d[r] = 0;
            }
        } else if (rows == mr && mr == 8) {
            pack_a_rows(a + (i0 + ir) * lda + p0, lda, kc, dst, 8);
        } else if (rows == mr && mr == 6) {
            pack_a_rows(a + (i0 + ir) * lda + p0, lda, kc, dst, 6);
        } else {
            for (size_t r = 0; r < rows; r++) {
                const float *s = a + (i0 + ir + r) * lda + p0;
                for (size_t p = 0; p < kc; p++)
                    dst[p * mr + r] = s[p];
            }
            for (size_t r = rows; r < mr; r++)
                for (size_t p = 0; p < kc; p++)
                    dst[p * mr + r] = 0;
        }
    }
}

/* op(B)[p0 .. p0+kc)[j0 .. j0+nc) into micro-panels of nr columns, [p][nr], zeros past nc. */
static void pack_b(const struct ukernel *u, bool tb, const float *b, size_t ldb, size_t p0,
                   size_t kc, size_t j0, size_t nc, float *dst)
{
    size_t nr = u->nr;
    for (size_t jr = 0; jr < nc; jr += nr, dst += nr * kc) {
        size_t cols = nc - jr < nr ? nc - jr : nr;
        if (!tb) {
            for (size_t p = 0; p < kc; p++) {
                const float *s = b + (p0 + p) * ldb + j0 + jr;
                float *d = dst + p * nr;
                memcpy(d, s, cols * sizeof *d);
                if (cols < nr)
                    memset(d + cols, 0, (nr - cols) * sizeof *d);
            }
        } else {
            /* op(B)(p, j) = b[j * ldb + p] */
            for (size_t j = 0; j < cols; j++) {
                const float *s = b + (j0 + jr + j) * ldb + p0;
                for (size_t p = 0; p < kc; p++)
                    dst[p * nr + j] = s[p];
            }
            for (size_t j = cols; j < nr; j++)
                for (size_t p = 0; p < kc; p++)
                    dst[p * nr + j] = 0;
        }
    }
}

/* ---- per-thread packing buffers (the pool's threads live as long as the process) ---- */

#define BUF_A (MC * KC)
#define BUF_B (KC * ((NC + NR_MAX - 1) / NR_MAX * NR_MAX))
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static bool buf_key_ok;

static void buf_key_make(void)
{
    buf_key_ok = pthread_key_create(&buf_key, free) == 0;
}

/* Room for BUF_A + BUF_B floats, 64-byte aligned, this thread's; NULL when out of memory. */
static float *thread_buf(void)
{
    pthread_once(&buf_once, buf_key_make);
    if (!buf_key_ok)
        return NULL;
    float *p = pthread_getspecific(buf_key);
    if (!p) {
        p = aligned_alloc(64, (BUF_A + BUF_B) * sizeof *p);
        if (p && pthread_setspecific(buf_key, p) != 0) {
            free(p);
            p = NULL;
        }
    }
    return p;
}

/* ---- the driver ---- */

static int gemm_run(const struct ukernel *u, bool ta, bool tb, size_t m, size_t n, size_t k,
                    float alpha, const float *a, size_t lda, const float *b, size_t ldb, float beta,
                    float *c, size_t ldc)
{
    if (m == 0 || n == 0)
        return 0;
    if (k == 0 || alpha == 0) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0 ? 0.0f : beta * c[i * ldc + j];
        return 0;
    }
    float *pa = thread_buf();
    if (!pa)
        return -1;
    float *pb = pa + BUF_A;
    size_t mr = u->mr, nr = u->nr;
    size_t kblocks = (k + KC - 1) / KC, kstep = (k + kblocks - 1) / kblocks;
    float tile[MR_MAX * NR_MAX] __attribute__((aligned(64)));
    for (size_t j0 = 0; j0 < n; j0 += NC) {
        size_t nc = n - j0 < NC ? n - j0 : NC;
        for (size_t p0 = 0; p0 < k; p0 += kstep) {
            size_t kc = k - p0 < kstep ? k - p0 : kstep;
            float bk = p0 == 0 ? beta : 1.0f;
            pack_b(u, tb, b, ldb, p0, kc, j0, nc, pb);
            for (size_t i0 = 0; i0 < m; i0 += MC) {
                size_t mc = m - i0 < MC ? m - i0 : MC;
                pack_a(u, ta, a, lda, i0, mc, p0, kc, pa);
                for (size_t jr = 0; jr < nc; jr += nr) {
                    size_t cols = nc - jr < nr ? nc - jr : nr;
                    const float *bp = pb + jr * kc;
                    for (size_t ir = 0; ir < mc; ir += mr) {
                        size_t rows = mc - ir < mr ? mc - ir : mr;
                        const float *ap = pa + ir * kc;
                        float *cp = c + (i0 + ir) * ldc + j0 + jr;
                        if (rows == mr && cols == nr) {
                            u->fn(kc, ap, bp, alpha, bk, cp, ldc);
                            continue;
                        }
                        /* Rounded as the micro-kernels' full tiles are (alpha * acc, or
                         * fma(alpha, acc, beta * C)): which tiles are partial depends on the
                         * panels, and so on the thread count, and the result must not. */
                        u->fn(kc, ap, bp, 1.0f, 0.0f, tile, nr);
                        for (size_t i = 0; i < rows; i++)
                            for (size_t j = 0; j < cols; j++) {
                                float t = tile[i * nr + j];
                                cp[i * ldc + j] = bk == 0 ? alpha * t
                                                          : fmaf(alpha, t, bk * cp[i * ldc + j]);
                            }
                    }
                }
            }
        }
    }
    return 0;
}

static const struct ukernel uk_table[] = {
    [JZK_GEMM_GENERIC] = {8, 32, uk_generic},
#ifdef GEMM_X86
    [JZK_GEMM_AVX512] = {8, 32, uk_avx512},
    [JZK_GEMM_AVX2] = {6, 16, uk_avx2},
#endif
};

bool jzk_gemm_own_supported(enum jzk_gemm_kind kind)
{
    switch (kind) {
    case JZK_GEMM_GENERIC:
        return true;
#ifdef GEMM_X86
    case JZK_GEMM_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f");
    case JZK_GEMM_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default:
        return false;
    }
}

int jzk_gemm_own(enum jzk_gemm_kind kind, bool ta, bool tb, size_t m, size_t n, size_t k,
                 float alpha, const float *a, size_t lda, const float *b, size_t ldb, float beta,
                 float *c, size_t ldc)
{
    return gemm_run(&uk_table[kind], ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
