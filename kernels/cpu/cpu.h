/* Pieces of the cpu backend kept in their own files for their compile flags. */
#ifndef JZ_KERNELS_CPU_H
#define JZ_KERNELS_CPU_H

#include "../internal.h"

#include <stdbool.h>

/* All-pairs softened forces (nbody.c, built with fast math for the reciprocal square root). */
int jzk_cpu_nbody_forces(void *d, size_t n, size_t first, size_t count, float soft2, void *pos,
                         void *acc, struct jz_error *err);

/* Heat steps with boundary mode and halo faces (stencil.c, built without FP contraction). */
int jzk_cpu_heat2d(void *d, size_t nx, size_t ny, float alpha, int bc, unsigned halo, void *in,
                   void *out, struct jz_error *err);
int jzk_cpu_heat3d(void *d, size_t nx, size_t ny, size_t nz, float alpha, int bc, unsigned halo,
                   void *in, void *out, struct jz_error *err);

/* The backend's own single-threaded SGEMM (gemm_avx512.c), row-major, C = alpha op(A) op(B) +
 * beta C with BLAS semantics (C is not read when beta == 0). The kind picks the micro-kernel;
 * call only kinds jzk_gemm_own_supported accepts on this CPU. Returns 0, or -1 when its packing
 * buffer (about 0.6 MiB per thread, kept for the thread's life) cannot be allocated; C is then
 * unchanged. */
enum jzk_gemm_kind {
    JZK_GEMM_GENERIC, /* portable C at the AVX-512 tile: tests only (slow) */
    JZK_GEMM_AVX512,
    JZK_GEMM_AVX2,
};
bool jzk_gemm_own_supported(enum jzk_gemm_kind kind);
int jzk_gemm_own(enum jzk_gemm_kind kind, bool ta, bool tb, size_t m, size_t n, size_t k,
                 float alpha, const float *a, size_t lda, const float *b, size_t ldb, float beta,
                 float *c, size_t ldc);

/* Work over [0, n) runs in `chunks` contiguous ranges, one per thread; chunk c gets
 * [n*c/chunks, n*(c+1)/chunks). The chunk index lets reductions keep per-chunk partials. */
typedef void jzk_range_fn(void *ctx, size_t chunk, size_t begin, size_t end);

/* Runs fn over [0, n) on the calling thread and the pool (pool.c), with at least `grain` items
 * per chunk (so small work runs inline), and returns when every chunk is done. Concurrent
 * callers take turns. At most jzk_pool_threads() chunks. */
void jzk_parallel_for(size_t n, size_t grain, jzk_range_fn *fn, void *ctx);
/* The same with `chunks` chunks (at most n and JZK_MAX_CHUNKS), claimed by the pool's threads in
 * turn; more chunks than threads balance the work when a thread is slowed down (a shared
 * machine). With one chunk or one thread, fn runs once over [0, n) on the calling thread. */
#define JZK_MAX_CHUNKS 64
void jzk_parallel_chunks(size_t n, size_t chunks, jzk_range_fn *fn, void *ctx);
size_t jzk_pool_threads(void);

#endif
