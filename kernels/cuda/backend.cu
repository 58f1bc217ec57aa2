// The CUDA backend, built as its own module (libjz_kernels_cuda.so) that jz_kernels loads at run
// time: GEMM from cuBLAS, collectives from NCCL when built with it, the other kernels below. The
// CUDA runtime is linked statically and finds the driver at run time, so without a GPU or driver
// the module still loads and reports no device.
#include "../internal.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef JZ_HAVE_NCCL
#include <nccl.h>
#endif

#include <stdlib.h>
#include <string.h>

namespace {

constexpr int kThreads = 256;
constexpr int kRedGroups = 256; // partial results of a reduction's first pass

struct cudev {
    int ordinal;
    cudaStream_t stream;
    cublasHandle_t blas;
    float *scratch; // kRedGroups floats
};

int cu_fail(struct jz_error *err, cudaError_t rc, const char *what)
{
    return jzk_err(err, rc == cudaErrorMemoryAllocation ? JZ_ENOMEM : JZ_EDEVICE,
                   "CUDA %s failed: %s", what, cudaGetErrorString(rc));
}

// Blocks for a grid-stride loop over n items (capped: the loop covers the rest).
unsigned blocks_for(size_t n)
{
    size_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b < 65535 ? (b ? b : 1) : 65535);
}

int set_device(cudev *dv, struct jz_error *err)
{
    cudaError_t rc = cudaSetDevice(dv->ordinal);
    return rc == cudaSuccess ? 0 : cu_fail(err, rc, "cudaSetDevice");
}

int launched(struct jz_error *err, const char *what)
{
    cudaError_t rc = cudaGetLastError();
    return rc == cudaSuccess ? 0 : cu_fail(err, rc, what);
}

#define GRID_STRIDE(i, n)                                                                      \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
         i += (size_t)blockDim.x * gridDim.x)

// ---- kernels ----

__device__ __forceinline__ float act_f(int act, float z)
{
    if (act == JZ_KACT_RELU)
        return z > 0.0f ? z : 0.0f;
    if (act == JZ_KACT_GELU)
        return 0.5f * z * (1.0f + tanhf(0.7978845608028654f * (z + 0.044715f * z * z * z)));
    return z;
}

__device__ __forceinline__ float act_df(int act, float z)
{
    if (act == JZ_KACT_RELU)
        return z > 0.0f ? 1.0f : 0.0f;
    if (act == JZ_KACT_GELU) {
        const float k0 = 0.7978845608028654f, k1 = 0.044715f;
        float t = tanhf(k0 * (z + k1 * z * z * z));
        return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * k0 * (1.0f + 3.0f * k1 * z * z);
    }
    return 1.0f;
}

__global__ void k_bias_act_fwd(size_t rows, size_t cols, int act, const float *x,
                               const float *bias, float *y)
{
    GRID_STRIDE(i, rows * cols) y[i] = act_f(act, x[i] + (bias ? bias[i % cols] : 0.0f));
}

__global__ void k_bias_act_bwd(size_t rows, size_t cols, int act, const float *x,
                               const float *bias, const float *dy, float *dx)
{
    GRID_STRIDE(i, rows * cols) dx[i] = dy[i] * act_df(act, x[i] + (bias ? bias[i % cols] : 0.0f));
}

__global__ void k_col_sum(size_t rows, size_t cols, const float *d, float *out)
{
    GRID_STRIDE(c, cols)
    {
        float s = 0.0f;
        for (size_t r = 0; r < rows; r++)
            s += d[r * cols + c];
        out[c] = s;
    }
}

// One warp per row: the row's max and sum are warp reductions.
__global__ void k_xent_fwd(size_t rows, size_t cols, const float *logits, const int32_t *labels,
                           float *probs, float *loss)
{
    size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    unsigned lane = threadIdx.x % 32;
    size_t nwarps = (size_t)gridDim.x * blockDim.x / 32;
    for (size_t r = warp; r < rows; r += nwarps) {
        const float *l = logits + r * cols;
        float *p = probs + r * cols;
        float mx = -INFINITY;
        for (size_t c = lane; c < cols; c += 32)
            mx = fmaxf(mx, l[c]);
        for (int o = 16; o > 0; o >>= 1)
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float s = 0.0f;
        for (size_t c = lane; c < cols; c += 32) {
            float e = expf(l[c] - mx);
            p[c] = e;
            s += e;
        }
        for (int o = 16; o > 0; o >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, o);
        float inv = 1.0f / s;
        for (size_t c = lane; c < cols; c += 32)
            p[c] *= inv;
        if (loss && lane == 0) {
            int32_t y = labels[r];
            loss[r] = (y >= 0 && (size_t)y < cols) ? logf(s) - (l[y] - mx) : 0.0f;
        }
    }
}

__global__ void k_xent_bwd(size_t rows, size_t cols, float scale, const float *probs,
                           const int32_t *labels, float *d)
{
    GRID_STRIDE(i, rows * cols)
    {
        int32_t y = labels[i / cols];
        size_t c = i % cols;
        bool valid = y >= 0 && (size_t)y < cols;
        d[i] = valid ? scale * (probs[i] - ((size_t)y == c ? 1.0f : 0.0f)) : 0.0f;
    }
}

__global__ void k_axpy(size_t n, float alpha, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

__global__ void k_scale(size_t n, float alpha, float *x)
{
    GRID_STRIDE(i, n) x[i] *= alpha;
}

__global__ void k_fill(size_t n, float v, float *x)
{
    GRID_STRIDE(i, n) x[i] = v;
}

// kind 0: sum, 1: max (fmaxf skips NaNs). One partial per block.
__global__ void k_reduce(size_t n, int kind, const float *x, float *out)
{
    __shared__ float sh[kThreads];
    float acc = kind == 0 ? 0.0f : NAN;
    GRID_STRIDE(i, n) acc = kind == 0 ? acc + x[i] : fmaxf(acc, x[i]);
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s)
            sh[threadIdx.x] = kind == 0 ? sh[threadIdx.x] + sh[threadIdx.x + s]
                                        : fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0)
        out[blockIdx.x] = sh[0];
}

__device__ int32_t argmax_row(const float *x, size_t cols)
{
    size_t best = 0;
    for (size_t c = 1; c < cols; c++)
        if (x[c] > x[best])
            best = c;
    return (int32_t)best;
}

__global__ void k_argmax(size_t rows, size_t cols, const float *x, int32_t *out)
{
    GRID_STRIDE(r, rows) out[r] = argmax_row(x + r * cols, cols);
}

__global__ void k_accuracy(size_t rows, size_t cols, const float *x, const int32_t *labels,
                           float *out)
{
    __shared__ unsigned sh[kThreads];
    unsigned hits = 0;
    for (size_t r = threadIdx.x; r < rows; r += kThreads)
        hits += argmax_row(x + r * cols, cols) == labels[r];
    sh[threadIdx.x] = hits;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s)
            sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        out[0] = (float)sh[0] / (float)rows;
}

__global__ void k_sgd(size_t n, float lr, float mom, float wd, float *p, const float *g, float *v)
{
    GRID_STRIDE(i, n)
    {
        float gi = g[i] + wd * p[i];
        float vi = mom * v[i] + gi;
        v[i] = vi;
        p[i] -= lr * vi;
    }
}

__global__ void k_adam(size_t n, float lr, float b1, float b2, float eps, float wd, float bc1,
                       float bc2, float *p, const float *g, float *m, float *v)
{
    GRID_STRIDE(i, n)
    {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mh = mi / bc1, vh = vi / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}

// The cell whose value index i stands for along an axis of n cells (jzk_bc_src in internal.h).
__device__ __forceinline__ unsigned bc_src(unsigned i, unsigned n, int bc, bool lo, bool hi)
{
    if (bc == JZ_KBC_DIRICHLET)
        return i;
    if (i == 0 && lo)
        return bc == JZ_KBC_PERIODIC ? n - 2 : 1;
    if (i == n - 1 && hi)
        return bc == JZ_KBC_PERIODIC ? 1 : n - 2;
    return i;
}

// Whether cell i of an axis is copied: on a halo face, or on a Dirichlet boundary.
__device__ __forceinline__ bool bc_copy(unsigned i, unsigned n, int bc, bool lo, bool hi)
{
    bool at_lo = i == 0, at_hi = i == n - 1;
    return (at_lo && !lo) || (at_hi && !hi) || (bc == JZ_KBC_DIRICHLET && (at_lo || at_hi));
}

__global__ void k_heat2d(unsigned nx, unsigned ny, float alpha, int bc, unsigned halo,
                         const float *__restrict__ in, float *__restrict__ out)
{
    unsigned x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= nx || y >= ny)
        return;
    size_t i = (size_t)y * nx + x;
    bool xl = !(halo & JZ_KFACE_XLO), xh = !(halo & JZ_KFACE_XHI);
    bool yl = !(halo & JZ_KFACE_YLO), yh = !(halo & JZ_KFACE_YHI);
    if (bc_copy(x, nx, bc, xl, xh) || bc_copy(y, ny, bc, yl, yh)) {
        out[i] = in[i];
        return;
    }
    unsigned mx = bc_src(x, nx, bc, xl, xh), my = bc_src(y, ny, bc, yl, yh);
    size_t row = (size_t)my * nx;
    float l = in[row + bc_src(mx - 1, nx, bc, xl, xh)];
    float r = in[row + bc_src(mx + 1, nx, bc, xl, xh)];
    float d = in[(size_t)bc_src(my - 1, ny, bc, yl, yh) * nx + mx];
    float u = in[(size_t)bc_src(my + 1, ny, bc, yl, yh) * nx + mx];
    out[i] = (1.0f - 4.0f * alpha) * in[row + mx] + alpha * ((l + r) + (d + u));
}

__global__ void k_heat3d(unsigned nx, unsigned ny, unsigned nz, float alpha, int bc,
                         unsigned halo, const float *__restrict__ in, float *__restrict__ out)
{
    unsigned x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    unsigned z = blockIdx.z;
    if (x >= nx || y >= ny || z >= nz)
        return;
    size_t pl = (size_t)nx * ny, i = z * pl + (size_t)y * nx + x;
    bool xl = !(halo & JZ_KFACE_XLO), xh = !(halo & JZ_KFACE_XHI);
    bool yl = !(halo & JZ_KFACE_YLO), yh = !(halo & JZ_KFACE_YHI);
    bool zl = !(halo & JZ_KFACE_ZLO), zh = !(halo & JZ_KFACE_ZHI);
    if (bc_copy(x, nx, bc, xl, xh) || bc_copy(y, ny, bc, yl, yh) || bc_copy(z, nz, bc, zl, zh)) {
        out[i] = in[i];
        return;
    }
    unsigned mx = bc_src(x, nx, bc, xl, xh), my = bc_src(y, ny, bc, yl, yh);
    unsigned mz = bc_src(z, nz, bc, zl, zh);
    size_t c = mz * pl + (size_t)my * nx;
    float l = in[c + bc_src(mx - 1, nx, bc, xl, xh)], r = in[c + bc_src(mx + 1, nx, bc, xl, xh)];
    float d = in[mz * pl + (size_t)bc_src(my - 1, ny, bc, yl, yh) * nx + mx];
    float u = in[mz * pl + (size_t)bc_src(my + 1, ny, bc, yl, yh) * nx + mx];
    float b = in[bc_src(mz - 1, nz, bc, zl, zh) * pl + (size_t)my * nx + mx];
    float f = in[bc_src(mz + 1, nz, bc, zl, zh) * pl + (size_t)my * nx + mx];
    out[i] = (1.0f - 6.0f * alpha) * in[c + mx] + alpha * (((l + r) + (d + u)) + (b + f));
}

// Tiles of kThreads bodies staged in shared memory, as in the GPU Gems 3 N-body chapter. Thread
// g computes body first + g; every body runs the same tiles in the same order, so a range gives
// the same bits as the whole.
__global__ void k_nbody(unsigned n, unsigned first, unsigned count, float soft2,
                        const float4 *__restrict__ pos, float4 *__restrict__ acc)
{
    __shared__ float4 tile[kThreads];
    unsigned g = blockIdx.x * blockDim.x + threadIdx.x, i = first + g;
    float4 pi = g < count ? pos[i] : make_float4(0, 0, 0, 0);
    float ax = 0, ay = 0, az = 0;
    for (unsigned base = 0; base < n; base += kThreads) {
        unsigned j = base + threadIdx.x;
        tile[threadIdx.x] = j < n ? pos[j] : make_float4(0, 0, 0, 0); // mass 0: no force
        __syncthreads();
#pragma unroll 8
        for (int t = 0; t < kThreads; t++) {
            float4 pj = tile[t];
            float dx = pj.x - pi.x, dy = pj.y - pi.y, dz = pj.z - pi.z;
            float inv = rsqrtf(dx * dx + dy * dy + dz * dz + soft2);
            float s = pj.w * inv * inv * inv;
            ax += s * dx;
            ay += s * dy;
            az += s * dz;
        }
        __syncthreads();
    }
    if (g < count)
        acc[i] = make_float4(ax, ay, az, 0.0f);
}

__global__ void k_leapfrog(size_t n, float dt, float4 *pos, float4 *vel, const float4 *acc)
{
    GRID_STRIDE(i, n)
    {
        float4 v = vel[i], p = pos[i], a = acc[i];
        v.x += dt * a.x;
        v.y += dt * a.y;
        v.z += dt * a.z;
        p.x += dt * v.x;
        p.y += dt * v.y;
        p.z += dt * v.z;
        vel[i] = v;
        pos[i] = p;
    }
}

__device__ void philox(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

__global__ void k_rand(uint64_t first, uint64_t nblocks, uint64_t seed, uint64_t offset, size_t n,
                       int dist, float a, float b, float *out)
{
    GRID_STRIDE(bi, nblocks)
    {
        uint64_t blk = first + bi;
        uint32_t c[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), 0u, 0u};
        philox(c, (uint32_t)seed, (uint32_t)(seed >> 32));
        float v[4];
        const float two_m24 = 5.9604644775390625e-8f;
        if (dist == JZK_DIST_UNIFORM) {
            for (int l = 0; l < 4; l++)
                v[l] = __fmaf_rn(b - a, __fmul_rn((float)(c[l] >> 8), two_m24), a);
        } else {
            for (int l = 0; l < 4; l += 2) {
                float u1 = (float)((c[l] >> 8) + 1u) * two_m24;
                float u2 = (float)(c[l + 1] >> 8) * two_m24;
                float r = sqrtf(-2.0f * logf(u1)), t = 6.2831853071795865f * u2;
                v[l] = __fmaf_rn(b, r * cosf(t), a);
                v[l + 1] = __fmaf_rn(b, r * sinf(t), a);
            }
        }
        for (int l = 0; l < 4; l++) {
            uint64_t e = blk * 4 + (uint64_t)l;
            if (e >= offset && e - offset < n)
                out[e - offset] = v[l];
        }
    }
}

// ---- backend entry points ----

int cu_count(size_t *out, struct jz_error *err)
{
    int n = 0;
    // No driver, no device, or a driver too old: all mean "no CUDA device here".
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        n = 0;
    cudaGetLastError(); // clear the sticky error a failed probe leaves
    *out = n > 0 ? (size_t)n : 0;
    return 0;
}

int cu_open(int ordinal, void **d, char *name, size_t name_len, uint64_t *memory,
            struct jz_error *err)
{
    cudev *dv = (cudev *)calloc(1, sizeof *dv);
    if (!dv)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    dv->ordinal = ordinal;
    cudaDeviceProp prop;
    cudaError_t rc = cudaSetDevice(ordinal);
    if (rc == cudaSuccess)
        rc = cudaGetDeviceProperties(&prop, ordinal);
    if (rc == cudaSuccess)
        rc = cudaStreamCreateWithFlags(&dv->stream, cudaStreamNonBlocking);
    if (rc == cudaSuccess)
        rc = cudaMalloc(&dv->scratch, kRedGroups * sizeof(float));
    if (rc != cudaSuccess) {
        if (dv->stream)
            cudaStreamDestroy(dv->stream);
        free(dv);
        return cu_fail(err, rc, "device open");
    }
    if (cublasCreate(&dv->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(dv->blas, dv->stream) != CUBLAS_STATUS_SUCCESS) {
        cudaFree(dv->scratch);
        cudaStreamDestroy(dv->stream);
        free(dv);
        return jzk_err(err, JZ_EDEVICE, "cublasCreate failed");
    }
    snprintf(name, name_len, "%s", prop.name);
    *memory = prop.totalGlobalMem;
    *d = dv;
    return 0;
}

void cu_close(void *d)
{
    cudev *dv = (cudev *)d;
    cudaSetDevice(dv->ordinal);
    cudaStreamSynchronize(dv->stream);
    cublasDestroy(dv->blas);
    cudaFree(dv->scratch);
    cudaStreamDestroy(dv->stream);
    free(dv);
}

int cu_sync(void *d, struct jz_error *err)
{
    cudev *dv = (cudev *)d;
    int r = set_device(dv, err);
    if (r)
        return r;
    cudaError_t rc = cudaStreamSynchronize(dv->stream);
    return rc == cudaSuccess ? 0 : cu_fail(err, rc, "cudaStreamSynchronize");
}

int cu_alloc(void *d, size_t bytes, void **h, struct jz_error *err)
{
    cudev *dv = (cudev *)d;
    int r = set_device(dv, err);
    if (r)
        return r;
    void *p = nullptr;
    cudaError_t rc = cudaMalloc(&p, bytes);
    if (rc != cudaSuccess)
        return cu_fail(err, rc, "cudaMalloc");
    *h = p;
    return 0;
}

void cu_release(void *d, void *h)
{
    cudev *dv = (cudev *)d;
    cudaSetDevice(dv->ordinal);
    cudaStreamSynchronize(dv->stream);
    cudaFree(h);
}

int copy_sync(cudev *dv, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
              struct jz_error *err)
{
    int r = set_device(dv, err);
    if (r)
        return r;
    cudaError_t rc = cudaMemcpyAsync(dst, src, bytes, kind, dv->stream);
    if (rc == cudaSuccess)
        rc = cudaStreamSynchronize(dv->stream);
    return rc == cudaSuccess ? 0 : cu_fail(err, rc, "cudaMemcpy");
}

int cu_write(void *d, void *h, size_t off, const void *src, size_t bytes, struct jz_error *err)
{
    return copy_sync((cudev *)d, (char *)h + off, src, bytes, cudaMemcpyHostToDevice, err);
}

int cu_read(void *d, void *h, size_t off, void *dst, size_t bytes, struct jz_error *err)
{
    return copy_sync((cudev *)d, dst, (const char *)h + off, bytes, cudaMemcpyDeviceToHost, err);
}

int cu_copy(void *d, void *dst, size_t doff, void *src, size_t soff, size_t bytes,
            struct jz_error *err)
{
    cudev *dv = (cudev *)d;
    int r = set_device(dv, err);
    if (r)
        return r;
    cudaError_t rc = cudaMemcpyAsync((char *)dst + doff, (const char *)src + soff, bytes,
                                     cudaMemcpyDeviceToDevice, dv->stream);
    return rc == cudaSuccess ? 0 : cu_fail(err, rc, "cudaMemcpyAsync");
}

int cu_gemm(void *d, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, void *a,
            size_t lda, void *b, size_t ldb, float beta, void *c, size_t ldc,
            struct jz_error *err)
{
    cudev *dv = (cudev *)d;
    int r = set_device(dv, err);
    if (r)
        return r;
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    cublasStatus_t s =
        cublasSgemm(dv->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                    (int)n, (int)m, (int)k, &alpha, (const float *)b, (int)ldb, (const float *)a,
                    (int)lda, &beta, (float *)c, (int)ldc);
    return s == CUBLAS_STATUS_SUCCESS ? 0
                                      : jzk_err(err, JZ_EDEVICE, "cublasSgemm failed (%d)", (int)s);
}

#define PREP(dv)                                                                               \
    cudev *dv = (cudev *)d;                                                                    \
    do {                                                                                       \
        int r_ = set_device(dv, err);                                                          \
        if (r_)                                                                                \
            return r_;                                                                         \
    } while (0)

int cu_bias_act_fwd(void *d, int act, size_t rows, size_t cols, void *x, void *bias, void *y,
                    struct jz_error *err)
{
    PREP(dv);
    k_bias_act_fwd<<<blocks_for(rows * cols), kThreads, 0, dv->stream>>>(
        rows, cols, act, (const float *)x, (const float *)bias, (float *)y);
    return launched(err, "bias_act_forward");
}

int cu_bias_act_bwd(void *d, int act, size_t rows, size_t cols, void *x, void *bias, void *dy,
                    void *dx, void *dbias, struct jz_error *err)
{
    PREP(dv);
    k_bias_act_bwd<<<blocks_for(rows * cols), kThreads, 0, dv->stream>>>(
        rows, cols, act, (const float *)x, (const float *)bias, (const float *)dy, (float *)dx);
    if (dbias)
        k_col_sum<<<blocks_for(cols), kThreads, 0, dv->stream>>>(rows, cols, (const float *)dx,
                                                                 (float *)dbias);
    return launched(err, "bias_act_backward");
}

int cu_xent_fwd(void *d, size_t rows, size_t cols, void *logits, void *labels, void *probs,
                void *loss, struct jz_error *err)
{
    PREP(dv);
    k_xent_fwd<<<blocks_for(rows * 32), kThreads, 0, dv->stream>>>(
        rows, cols, (const float *)logits, (const int32_t *)labels, (float *)probs,
        (float *)loss);
    return launched(err, "softmax_xent_forward");
}

int cu_xent_bwd(void *d, size_t rows, size_t cols, void *probs, void *labels, float scale,
                void *dlogits, struct jz_error *err)
{
    PREP(dv);
    k_xent_bwd<<<blocks_for(rows * cols), kThreads, 0, dv->stream>>>(
        rows, cols, scale, (const float *)probs, (const int32_t *)labels, (float *)dlogits);
    return launched(err, "softmax_xent_backward");
}

int cu_axpy(void *d, size_t n, float alpha, void *x, void *y, struct jz_error *err)
{
    PREP(dv);
    k_axpy<<<blocks_for(n), kThreads, 0, dv->stream>>>(n, alpha, (const float *)x, (float *)y);
    return launched(err, "axpy");
}

int cu_scale(void *d, size_t n, float alpha, void *x, struct jz_error *err)
{
    PREP(dv);
    k_scale<<<blocks_for(n), kThreads, 0, dv->stream>>>(n, alpha, (float *)x);
    return launched(err, "scale");
}

int cu_fill(void *d, size_t n, float v, void *x, struct jz_error *err)
{
    PREP(dv);
    k_fill<<<blocks_for(n), kThreads, 0, dv->stream>>>(n, v, (float *)x);
    return launched(err, "fill");
}

int cu_reduce(void *d, int kind, size_t n, void *x, void *out, struct jz_error *err)
{
    PREP(dv);
    unsigned groups = blocks_for(n);
    if (groups > kRedGroups)
        groups = kRedGroups;
    if (groups == 1) {
        k_reduce<<<1, kThreads, 0, dv->stream>>>(n, kind, (const float *)x, (float *)out);
    } else {
        k_reduce<<<groups, kThreads, 0, dv->stream>>>(n, kind, (const float *)x, dv->scratch);
        k_reduce<<<1, kThreads, 0, dv->stream>>>(groups, kind, dv->scratch, (float *)out);
    }
    return launched(err, "reduce");
}

int cu_argmax_rows(void *d, size_t rows, size_t cols, void *x, void *out, struct jz_error *err)
{
    PREP(dv);
    k_argmax<<<blocks_for(rows), kThreads, 0, dv->stream>>>(rows, cols, (const float *)x,
                                                             (int32_t *)out);
    return launched(err, "argmax_rows");
}

int cu_accuracy(void *d, size_t rows, size_t cols, void *x, void *labels, void *out,
                struct jz_error *err)
{
    PREP(dv);
    k_accuracy<<<1, kThreads, 0, dv->stream>>>(rows, cols, (const float *)x,
                                               (const int32_t *)labels, (float *)out);
    return launched(err, "accuracy");
}

int cu_sgd(void *d, size_t n, void *p, void *g, void *v, float lr, float mom, float wd,
           struct jz_error *err)
{
    PREP(dv);
    k_sgd<<<blocks_for(n), kThreads, 0, dv->stream>>>(n, lr, mom, wd, (float *)p,
                                                       (const float *)g, (float *)v);
    return launched(err, "sgd_update");
}

int cu_adam(void *d, size_t n, void *p, void *g, void *m, void *v, float lr, float b1, float b2,
            float eps, float wd, float bc1, float bc2, struct jz_error *err)
{
    PREP(dv);
    k_adam<<<blocks_for(n), kThreads, 0, dv->stream>>>(n, lr, b1, b2, eps, wd, bc1, bc2,
                                                        (float *)p, (const float *)g, (float *)m,
                                                        (float *)v);
    return launched(err, "adam_update");
}

int cu_heat2d(void *d, size_t nx, size_t ny, float alpha, int bc, unsigned halo, void *in,
              void *out, struct jz_error *err)
{
    PREP(dv);
    dim3 block(32, 8), grid((unsigned)((nx + 31) / 32), (unsigned)((ny + 7) / 8));
    if (grid.y > 65535)
        return jzk_err(err, JZ_ELIMIT, "heat2d: ny %zu too large for the CUDA grid", ny);
    k_heat2d<<<grid, block, 0, dv->stream>>>((unsigned)nx, (unsigned)ny, alpha, bc, halo,
                                             (const float *)in, (float *)out);
    return launched(err, "heat2d_step");
}

int cu_heat3d(void *d, size_t nx, size_t ny, size_t nz, float alpha, int bc, unsigned halo,
              void *in, void *out, struct jz_error *err)
{
    PREP(dv);
    dim3 block(32, 8), grid((unsigned)((nx + 31) / 32), (unsigned)((ny + 7) / 8), (unsigned)nz);
    if (grid.y > 65535 || nz > 65535)
        return jzk_err(err, JZ_ELIMIT, "heat3d: grid %zu x %zu too large for CUDA", ny, nz);
    k_heat3d<<<grid, block, 0, dv->stream>>>((unsigned)nx, (unsigned)ny, (unsigned)nz, alpha, bc,
                                             halo, (const float *)in, (float *)out);
    return launched(err, "heat3d_step");
}

int cu_nbody(void *d, size_t n, size_t first, size_t count, float soft2, void *pos, void *acc,
             struct jz_error *err)
{
    PREP(dv);
    k_nbody<<<(unsigned)((count + kThreads - 1) / kThreads), kThreads, 0, dv->stream>>>(
        (unsigned)n, (unsigned)first, (unsigned)count, soft2, (const float4 *)pos, (float4 *)acc);
    return launched(err, "nbody_forces");
}

int cu_leapfrog(void *d, size_t n, float dt, void *pos, void *vel, void *acc,
                struct jz_error *err)
{
    PREP(dv);
    k_leapfrog<<<blocks_for(n), kThreads, 0, dv->stream>>>(n, dt, (float4 *)pos, (float4 *)vel,
                                                            (const float4 *)acc);
    return launched(err, "nbody_leapfrog");
}

int cu_rand(void *d, int dist, size_t n, uint64_t seed, uint64_t offset, float a, float b,
            void *out, struct jz_error *err)
{
    PREP(dv);
    uint64_t first = offset / 4, nblocks = (offset + n - 1) / 4 - first + 1;
    k_rand<<<blocks_for(nblocks), kThreads, 0, dv->stream>>>(first, nblocks, seed, offset, n,
                                                              dist, a, b, (float *)out);
    return launched(err, "rand");
}

#ifdef JZ_HAVE_NCCL
// ---- NCCL ----

struct ncomm {
    size_t n;
    ncclComm_t comms[JZ_KCOMM_MAX_DEVICES];
};

int nccl_fail(struct jz_error *err, ncclResult_t rc, const char *what)
{
    return jzk_err(err, JZ_EDEVICE, "NCCL %s failed: %s", what, ncclGetErrorString(rc));
}

int cu_nccl_create(void **ds, size_t ndev, void **comm, struct jz_error *err)
{
    ncomm *c = (ncomm *)calloc(1, sizeof *c);
    if (!c)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    int ords[JZ_KCOMM_MAX_DEVICES];
    for (size_t i = 0; i < ndev; i++)
        ords[i] = ((cudev *)ds[i])->ordinal;
    ncclResult_t rc = ncclCommInitAll(c->comms, (int)ndev, ords);
    if (rc != ncclSuccess) {
        free(c);
        return nccl_fail(err, rc, "ncclCommInitAll");
    }
    c->n = ndev;
    *comm = c;
    return 0;
}

void cu_nccl_destroy(void *comm)
{
    ncomm *c = (ncomm *)comm;
    for (size_t i = 0; i < c->n; i++)
        ncclCommDestroy(c->comms[i]);
    free(c);
}

int cu_nccl_run(void *comm, void **ds, void **hs, size_t count, int root, struct jz_error *err)
{
    ncomm *c = (ncomm *)comm;
    ncclResult_t rc = ncclGroupStart();
    for (size_t i = 0; i < c->n && rc == ncclSuccess; i++) {
        cudev *dv = (cudev *)ds[i];
        cudaSetDevice(dv->ordinal);
        rc = root < 0 ? ncclAllReduce(hs[i], hs[i], count, ncclFloat, ncclSum, c->comms[i],
                                      dv->stream)
                      : ncclBroadcast(hs[i], hs[i], count, ncclFloat, root, c->comms[i],
                                      dv->stream);
    }
    ncclResult_t end = ncclGroupEnd();
    if (rc == ncclSuccess)
        rc = end;
    return rc == ncclSuccess ? 0 : nccl_fail(err, rc, root < 0 ? "all-reduce" : "broadcast");
}

int cu_nccl_allreduce(void *comm, void **ds, void **hs, size_t count, struct jz_error *err)
{
    return cu_nccl_run(comm, ds, hs, count, -1, err);
}

int cu_nccl_broadcast(void *comm, void **ds, void **hs, size_t count, size_t root,
                      struct jz_error *err)
{
    return cu_nccl_run(comm, ds, hs, count, (int)root, err);
}

#endif

struct jzk_ops make_ops()
{
    struct jzk_ops o;
    memset(&o, 0, sizeof o);
    o.version = JZK_OPS_VERSION;
    o.count = cu_count;
    o.open = cu_open;
    o.close = cu_close;
    o.sync = cu_sync;
    o.alloc = cu_alloc;
    o.release = cu_release;
    o.write = cu_write;
    o.read = cu_read;
    o.copy = cu_copy;
    o.gemm = cu_gemm;
    o.bias_act_fwd = cu_bias_act_fwd;
    o.bias_act_bwd = cu_bias_act_bwd;
    o.xent_fwd = cu_xent_fwd;
    o.xent_bwd = cu_xent_bwd;
    o.axpy = cu_axpy;
    o.scale = cu_scale;
    o.fill = cu_fill;
    o.reduce = cu_reduce;
    o.argmax_rows = cu_argmax_rows;
    o.accuracy = cu_accuracy;
    o.sgd = cu_sgd;
    o.adam = cu_adam;
    o.heat2d = cu_heat2d;
    o.heat3d = cu_heat3d;
    o.nbody_forces = cu_nbody;
    o.leapfrog = cu_leapfrog;
    o.rand = cu_rand;
#ifdef JZ_HAVE_NCCL
    o.nccl_create = cu_nccl_create;
    o.nccl_destroy = cu_nccl_destroy;
    o.nccl_allreduce = cu_nccl_allreduce;
    o.nccl_broadcast = cu_nccl_broadcast;
#endif
    return o;
}

const struct jzk_ops ops = make_ops();

} // namespace

extern "C" __attribute__((visibility("default"))) const struct jzk_ops *jzk_cuda_ops(void)
{
    return &ops;
}
