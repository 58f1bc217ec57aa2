/* Pieces of the cpu backend kept in their own files for their compile flags. */
#ifndef JZ_KERNELS_CPU_H
#define JZ_KERNELS_CPU_H

#include "../internal.h"

/* All-pairs softened forces (nbody.c, built with fast math for the reciprocal square root). */
int jzk_cpu_nbody_forces(void *d, size_t n, size_t first, size_t count, float soft2, void *pos,
                         void *acc, struct jz_error *err);

/* Heat steps with boundary mode and halo faces (stencil.c, built without FP contraction). */
int jzk_cpu_heat2d(void *d, size_t nx, size_t ny, float alpha, int bc, unsigned halo, void *in,
                   void *out, struct jz_error *err);
int jzk_cpu_heat3d(void *d, size_t nx, size_t ny, size_t nz, float alpha, int bc, unsigned halo,
                   void *in, void *out, struct jz_error *err);

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
