/* All-pairs N-body forces on the cpu backend. Built with -ffast-math so that 1/sqrtf becomes a
 * vector reciprocal square root with one Newton step; built for AVX-512, AVX2 + FMA and the
 * baseline. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>

/* Bodies are transposed to structure-of-arrays once per call so the inner loop over j runs at
 * full vector width without gathers. The loop is compiled three times (AVX-512, AVX2 + FMA,
 * baseline) and picked at run time by CPU features: target_clones cannot ask for AVX2 and FMA
 * together, and its "arch=" clones test the CPU model, which misses AMD parts. */
typedef void rows_fn(size_t i0, size_t i1, size_t n, float soft2, const float *restrict xs,
                     const float *restrict ys, const float *restrict zs, const float *restrict ms,
                     float *restrict acc);

/* Two bodies i per pass over j: twice the independent work per loaded j, which the
 * out-of-order core needs to keep the FMA pipes busy around the reciprocal square root. */
#define FORCES_ROWS(name, attr)                                                                    \
    attr static void name(size_t i0, size_t i1, size_t n, float soft2, const float *restrict xs,   \
                          const float *restrict ys, const float *restrict zs,                      \
                          const float *restrict ms, float *restrict acc)                           \
    {                                                                                              \
        for (size_t i = i0; i < i1; i += 2) {                                                      \
            const size_t k = i + 1 < i1 ? i + 1 : i;                                               \
            const float xa = xs[i], ya = ys[i], za = zs[i];                                        \
            const float xb = xs[k], yb = ys[k], zb = zs[k];                                        \
            float ax = 0, ay = 0, az = 0, bx = 0, by = 0, bz = 0;                                  \
            _Pragma("GCC unroll 2") for (size_t j = 0; j < n; j++)                                 \
            {                                                                                      \
                float dx = xs[j] - xa, dy = ys[j] - ya, dz = zs[j] - za;                           \
                float ex = xs[j] - xb, ey = ys[j] - yb, ez = zs[j] - zb;                           \
                float inv = 1.0f / sqrtf(dx * dx + dy * dy + dz * dz + soft2);                     \
                float inw = 1.0f / sqrtf(ex * ex + ey * ey + ez * ez + soft2);                     \
                float s = ms[j] * inv * inv * inv, t = ms[j] * inw * inw * inw;                    \
                ax += s * dx;                                                                      \
                ay += s * dy;                                                                      \
                az += s * dz;                                                                      \
                bx += t * ex;                                                                      \
                by += t * ey;                                                                      \
                bz += t * ez;                                                                      \
            }                                                                                      \
            acc[4 * i + 0] = ax;                                                                   \
            acc[4 * i + 1] = ay;                                                                   \
            acc[4 * i + 2] = az;                                                                   \
            acc[4 * i + 3] = 0;                                                                    \
            acc[4 * k + 0] = bx;                                                                   \
            acc[4 * k + 1] = by;                                                                   \
            acc[4 * k + 2] = bz;                                                                   \
            acc[4 * k + 3] = 0;                                                                    \
        }                                                                                          \
    }

FORCES_ROWS(rows_base, )
#if defined(__x86_64__)
FORCES_ROWS(rows_avx2, __attribute__((target("avx2,fma"))))
FORCES_ROWS(rows_avx512, __attribute__((target("avx512f"))))
#endif

static rows_fn *pick_rows(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return rows_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return rows_avx2;
#endif
    return rows_base;
}

struct nbody_args {
    rows_fn *rows;
    size_t n, first, end;
    float soft2;
    const float *xs, *ys, *zs, *ms;
    float *acc;
};

static void nbody_blocks(void *p, size_t chunk, size_t b0, size_t b1)
{
    const struct nbody_args *a = p;
    size_t i0 = a->first + b0 * 16, i1 = a->first + b1 * 16 < a->end ? a->first + b1 * 16 : a->end;
    a->rows(i0, i1, a->n, a->soft2, a->xs, a->ys, a->zs, a->ms, a->acc);
}

int jzk_cpu_nbody_forces(void *d, size_t n, size_t first, size_t count, float soft2, void *pos,
                         void *acc, struct jz_error *err)
{
    const float *P = pos;
    size_t padded = (n + 15) & ~(size_t)15;
    float *soa = aligned_alloc(64, 4 * padded * sizeof *soa);
    if (!soa)
        return jzk_err(err, JZ_ENOMEM, "cannot allocate N-body scratch for %zu bodies", n);
    float *xs = soa, *ys = soa + padded, *zs = soa + 2 * padded, *ms = soa + 3 * padded;
    for (size_t i = 0; i < n; i++) {
        xs[i] = P[4 * i];
        ys[i] = P[4 * i + 1];
        zs[i] = P[4 * i + 2];
        ms[i] = P[4 * i + 3];
    }
    struct nbody_args a = {.rows = pick_rows(),
                           .n = n,
                           .first = first,
                           .end = first + count,
                           .soft2 = soft2,
                           .xs = xs,
                           .ys = ys,
                           .zs = zs,
                           .ms = ms,
                           .acc = acc};
    /* Blocks of 16 bodies, a few blocks per chunk: every chunk does the same work. A body's sum
     * over j does not depend on which block or pair it falls in, so a range gives the same bits
     * as the whole. */
    jzk_parallel_for((count + 15) / 16, 4, nbody_blocks, &a);
    free(soa);
    return 0;
}
