/* The cpu backend's heat stencils, in their own file for its compile flags: built with
 * -ffp-contract=off so that the vector, streaming and scalar edge paths all round c0 u + alpha s
 * the same way (no fused multiply-add), and a grid split into slabs (each slab picking its own
 * path by size) gives the same bits as the whole. */
#include "cpu.h"

#include <stdint.h>
#include <string.h>

/* Rows per chunk so that a chunk holds at least this many cells. */
#define STENCIL_PAR_MIN 32768

static size_t row_grain(size_t nx)
{
    return nx >= STENCIL_PAR_MIN ? 1 : STENCIL_PAR_MIN / nx;
}

/* Grids at least this large (bytes per array) do not fit in cache: their output rows are
 * written with non-temporal stores, which skip the read-for-ownership of each output line and cut
 * the memory traffic from 12 to 8 bytes per cell. Smaller grids stay in cache and want normal
 * stores. */
#define STREAM_MIN_BYTES ((size_t)16 << 20)

/* One row of cells: o[x] = c0 r[x] + alpha (r[x-1] + r[x+1] + sum of the other neighbours),
 * for x in [x0, x1) with 1 <= x0 and x1 <= nx - 1; n1..n4 are the other rows' neighbours (n3, n4
 * NULL in 2D). The edge cells are the caller's: they depend on the boundary condition. */
static inline float cell(const float *r, const float *n1, const float *n2, const float *n3,
                         const float *n4, size_t x, float c0, float alpha)
{
    float s = (r[x - 1] + r[x + 1]) + (n1[x] + n2[x]);
    if (n3)
        s += n3[x] + n4[x];
    return c0 * r[x] + alpha * s;
}

static void row_plain(const float *restrict r, const float *restrict n1, const float *restrict n2,
                      const float *restrict n3, const float *restrict n4, float *restrict o,
                      size_t x0, size_t x1, float c0, float alpha)
{
    if (n3) {
#pragma omp simd
        for (size_t x = x0; x < x1; x++)
            o[x] =
                c0 * r[x] + alpha * (((r[x - 1] + r[x + 1]) + (n1[x] + n2[x])) + (n3[x] + n4[x]));
    } else {
#pragma omp simd
        for (size_t x = x0; x < x1; x++)
            o[x] = c0 * r[x] + alpha * ((r[x - 1] + r[x + 1]) + (n1[x] + n2[x]));
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Every cache line of the output is written either entirely by streaming stores or entirely by
 * normal ones: a streaming store to a line that normal stores have just brought into the cache
 * forces that line out, which made short rows (a 256^3 grid) three times slower. Only whole
 * aligned lines inside [x0, x1) are streamed, so the caller's edge cells never share one. */
__attribute__((target("avx2"))) static void
row_stream(const float *restrict r, const float *restrict n1, const float *restrict n2,
           const float *restrict n3, const float *restrict n4, float *restrict o, size_t x0,
           size_t x1, float c0, float alpha)
{
    size_t x = x0, end = x1;
    for (; x < end && ((uintptr_t)(o + x) & 63); x++)
        o[x] = cell(r, n1, n2, n3, n4, x, c0, alpha);
    const __m256 vc0 = _mm256_set1_ps(c0), va = _mm256_set1_ps(alpha);
    for (; x + 16 <= end; x += 16) { /* one whole 64-byte line per iteration */
        for (size_t h = x; h < x + 16; h += 8) {
            __m256 s =
                _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(r + h - 1), _mm256_loadu_ps(r + h + 1)),
                              _mm256_add_ps(_mm256_loadu_ps(n1 + h), _mm256_loadu_ps(n2 + h)));
            if (n3)
                s = _mm256_add_ps(s,
                                  _mm256_add_ps(_mm256_loadu_ps(n3 + h), _mm256_loadu_ps(n4 + h)));
            _mm256_stream_ps(o + h, _mm256_add_ps(_mm256_mul_ps(vc0, _mm256_loadu_ps(r + h)),
                                                  _mm256_mul_ps(va, s)));
        }
    }
    for (; x < end; x++)
        o[x] = cell(r, n1, n2, n3, n4, x, c0, alpha);
}

static bool can_stream(size_t bytes)
{
    return bytes >= STREAM_MIN_BYTES && __builtin_cpu_supports("avx2");
}
#define STREAM_FENCE() _mm_sfence() /* streaming stores are weakly ordered */
#else
static bool can_stream(size_t bytes)
{
    return false;
}
#define row_stream row_plain
#define STREAM_FENCE() ((void)0)
#endif

struct heat_args {
    const float *src;
    float *dst;
    size_t nx, ny, nz;
    bool is3d;
    int bc;
    unsigned halo;
    float c0, alpha;
    bool stream;
};

/* Rows (y, z) of the grid (z = 0 in 2D). A row on a halo face, or on a Dirichlet boundary, is
 * copied; a row of ghosts on a Neumann or periodic boundary is computed as the interior row it
 * stands for, so out needs no second pass. Along x the same, cell by cell at the two ends. */
static void heat_rows(void *p, size_t chunk, size_t r0, size_t r1)
{
    const struct heat_args *a = p;
    const size_t nx = a->nx, ny = a->ny, nz = a->nz, plane = nx * ny;
    const unsigned h = a->halo;
    const int bc = a->bc;
    const bool ylo = !(h & JZ_KFACE_YLO), yhi = !(h & JZ_KFACE_YHI);
    const bool zlo = !(h & JZ_KFACE_ZLO), zhi = !(h & JZ_KFACE_ZHI);
    /* x ends that take the boundary condition by mapping (not copying) */
    const bool xmap_lo = bc != JZ_KBC_DIRICHLET && !(h & JZ_KFACE_XLO);
    const bool xmap_hi = bc != JZ_KBC_DIRICHLET && !(h & JZ_KFACE_XHI);
    const size_t x0 = xmap_lo ? 2 : 1, x1 = xmap_hi ? nx - 2 : nx - 1;
    for (size_t yz = r0; yz < r1; yz++) {
        size_t y = yz % ny, z = yz / ny;
        const float *in_row = a->src + yz * nx;
        float *o = a->dst + yz * nx;
        bool y_edge = y == 0 || y == ny - 1, z_edge = a->is3d && (z == 0 || z == nz - 1);
        bool on_halo = (y == 0 && !ylo) || (y == ny - 1 && !yhi) ||
                       (a->is3d && ((z == 0 && !zlo) || (z == nz - 1 && !zhi)));
        if (on_halo || (bc == JZ_KBC_DIRICHLET && (y_edge || z_edge))) {
            memcpy(o, in_row, nx * sizeof *o);
            continue;
        }
        size_t my = jzk_bc_src(y, ny, bc, ylo, yhi);
        size_t mz = a->is3d ? jzk_bc_src(z, nz, bc, zlo, zhi) : 0;
        const float *r = a->src + mz * plane + my * nx;
        const float *n1 = a->src + mz * plane + jzk_bc_src(my - 1, ny, bc, ylo, yhi) * nx;
        const float *n2 = a->src + mz * plane + jzk_bc_src(my + 1, ny, bc, ylo, yhi) * nx;
        const float *n3 = NULL, *n4 = NULL;
        if (a->is3d) {
            n3 = a->src + jzk_bc_src(mz - 1, nz, bc, zlo, zhi) * plane + my * nx;
            n4 = a->src + jzk_bc_src(mz + 1, nz, bc, zlo, zhi) * plane + my * nx;
        }
        if (x0 < x1) {
            if (a->stream)
                row_stream(r, n1, n2, n3, n4, o, x0, x1, a->c0, a->alpha);
            else
                row_plain(r, n1, n2, n3, n4, o, x0, x1, a->c0, a->alpha);
        }
        /* The cells next to mapped x ends read their ghost neighbour through the mapping. */
        const size_t ends[2] = {1, nx - 2};
        for (int e = 0; e < 2; e++) {
            size_t x = ends[e];
            if (!(e == 0 ? xmap_lo : xmap_hi) || (e == 1 && x == 1 && xmap_lo))
                continue;
            float s = (r[jzk_bc_src(x - 1, nx, bc, xmap_lo, xmap_hi)] +
                       r[jzk_bc_src(x + 1, nx, bc, xmap_lo, xmap_hi)]) +
                      (n1[x] + n2[x]);
            if (n3)
                s += n3[x] + n4[x];
            o[x] = a->c0 * r[x] + a->alpha * s;
        }
        o[0] = xmap_lo ? o[jzk_bc_src(0, nx, bc, true, true)] : r[0];
        o[nx - 1] = xmap_hi ? o[jzk_bc_src(nx - 1, nx, bc, true, true)] : r[nx - 1];
    }
    if (a->stream)
        STREAM_FENCE();
}

int jzk_cpu_heat2d(void *d, size_t nx, size_t ny, float alpha, int bc, unsigned halo, void *in,
                   void *out, struct jz_error *err)
{
    struct heat_args a = {.src = in,
                          .dst = out,
                          .nx = nx,
                          .ny = ny,
                          .nz = 1,
                          .bc = bc,
                          .halo = halo,
                          .c0 = 1.0f - 4.0f * alpha,
                          .alpha = alpha,
                          .stream = can_stream(nx * ny * sizeof(float))};
    jzk_parallel_for(ny, row_grain(nx), heat_rows, &a);
    return 0;
}

int jzk_cpu_heat3d(void *d, size_t nx, size_t ny, size_t nz, float alpha, int bc, unsigned halo,
                   void *in, void *out, struct jz_error *err)
{
    struct heat_args a = {.src = in,
                          .dst = out,
                          .nx = nx,
                          .ny = ny,
                          .nz = nz,
                          .is3d = true,
                          .bc = bc,
                          .halo = halo,
                          .c0 = 1.0f - 6.0f * alpha,
                          .alpha = alpha,
                          .stream = can_stream(nx * ny * nz * sizeof(float))};
    jzk_parallel_for(ny * nz, row_grain(nx), heat_rows, &a);
    return 0;
}
