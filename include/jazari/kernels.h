/* Jazari compute layer: devices, device buffers and the numerical kernels that workload plugins
 * use, on three backends (cpu, opencl, cuda), plus collectives across the devices of a job.
 *
 * Conventions for every function in this header
 * - Returns 0 on success or a negative JZ_E* code (include/jazari/error.h); `err` may be NULL and
 *   is written only on failure. Output parameters are written only on success.
 * - All tensors are float32 (labels and argmax indices int32), dense and row-major: element (r, c)
 *   of a rows x cols matrix is at index r * cols + c. Sizes are element counts unless named
 *   `bytes`.
 * - Every buffer passed to an operation must belong to the device handle the operation is called
 *   on and be large enough for the sizes given; otherwise JZ_EINVAL and nothing is enqueued.
 *   Element counts and matrix dimensions are limited to JZ_K_MAX_ELEMS (else JZ_ELIMIT).
 * - Ordering: each device handle owns one in-order queue (a CUDA stream, an OpenCL command queue;
 *   on the cpu backend work runs before the call returns). Operations are enqueued and may still
 *   be running when the call returns; jz_kbuf_read, jz_kbuf_write and jz_kdev_sync wait. Errors
 *   raised while a kernel runs asynchronously surface at the next waiting call.
 * - Threading: a device handle and its buffers may be used by one thread at a time. Different
 *   handles may be used from different threads concurrently.
 * - Unless stated otherwise, input and output buffers of one call must be distinct, except that
 *   elementwise operations accept the same buffer as input and output where marked "in place ok".
 */
#ifndef JAZARI_KERNELS_H
#define JAZARI_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API version: bumped on any change a caller compiled against the old header would get
 * wrong. It is also the shared library's SONAME version (libjz_kernels.so.4), so the dynamic
 * loader already keeps apart builds for different versions; jz_kernels_check_version catches
 * the rest (a library copied or linked under another name). */
#define JZ_KERNELS_API_VERSION 4

/* The JZ_KERNELS_API_VERSION the loaded libjz_kernels was built with. Thread-safe. */
int jz_kernels_api_version(void);

/* 0 when the loaded library implements the API this caller was compiled against; else JZ_EABI
 * with a message naming both versions. Inline, so that "compiled against" is the caller's
 * header, not the library's. Call it once before the first other call (the plugins do, when
 * they open their devices). */
static inline int jz_kernels_check_version(struct jz_error *err)
{
    int have = jz_kernels_api_version();
    if (have == JZ_KERNELS_API_VERSION)
        return 0;
    return jz_error_set(err, JZ_EABI,
                        "compute library libjz_kernels has API version %d, but this code was "
                        "built for version %d (install the matching Jazari packages)",
                        have, JZ_KERNELS_API_VERSION);
}

/* Largest element count / matrix dimension any operation accepts (int32 indexing on devices). */
#define JZ_K_MAX_ELEMS ((size_t)INT32_MAX)
/* Largest single buffer (bytes); backends may refuse smaller ones (device memory, OpenCL's
 * CL_DEVICE_MAX_MEM_ALLOC_SIZE) with JZ_ENOMEM or JZ_ELIMIT. */
#define JZ_KBUF_MAX_BYTES ((size_t)1 << 37)
/* Most devices one communicator may span. */
#define JZ_KCOMM_MAX_DEVICES 64

enum jz_kbackend {
    JZ_KBACKEND_CPU = 0,    /* the host CPU: OpenBLAS + a thread pool; always built, always 1
                             * device; threads: the affinity mask, or OMP_NUM_THREADS when set.
                             * GEMM runs one single-threaded OpenBLAS call per pool thread:
                             * the backend sets OpenBLAS to 1 thread for the whole process
                             * (before each of its GEMMs) and stops OpenBLAS's thread pool when
                             * it is first opened, so code in the same process that calls
                             * OpenBLAS directly must set its own thread count (OpenBLAS then
                             * starts its threads again) */
    JZ_KBACKEND_OPENCL = 1, /* OpenCL devices of all platforms, in platform order (PoCL in CI) */
    JZ_KBACKEND_CUDA = 2,   /* CUDA GPUs (after CUDA_VISIBLE_DEVICES); 0 without GPU or driver */
};
#define JZ_KBACKEND_COUNT 3

typedef struct jz_kdev jz_kdev_t;   /* an open device with its queue */
typedef struct jz_kbuf jz_kbuf_t;   /* a device buffer */
typedef struct jz_kcomm jz_kcomm_t; /* a communicator over several open devices */

/* ------------------------------------------------------------------------------------------ */
/* Backends and devices                                                                        */

/* "cpu", "opencl", "cuda" (static strings). */
const char *jz_kbackend_name(enum jz_kbackend backend);
/* Parses a backend name as in struct jz_device_info.backend. 0 or JZ_EINVAL. */
int jz_kbackend_parse(const char *name, enum jz_kbackend *out, struct jz_error *err);
/* Whether this build of the library contains the backend (cuda: the CUDA module could also be
 * loaded). Cheap after the first call. */
bool jz_kbackend_built(enum jz_kbackend backend);

/* Number of devices of a backend present now (0 when the backend is not built, has no driver or
 * no device; that is not an error). Thread-safe. */
int jz_kdev_count(enum jz_kbackend backend, size_t *out, struct jz_error *err);

/* Opens device `ordinal` of `backend` and creates its queue. The caller owns *out and releases
 * it with jz_kdev_close. JZ_ENOENT when there is no such device, JZ_ENOTSUP when the backend is
 * not built, JZ_EDEVICE on driver errors. */
int jz_kdev_open(enum jz_kbackend backend, int ordinal, jz_kdev_t **out, struct jz_error *err);
/* Same, from a backend name ("cuda", "opencl", "cpu"), as the scheduler's device list gives it
 * (struct jz_device_info in plugin.h: pass info->backend and info->ordinal). */
int jz_kdev_open_name(const char *backend, int ordinal, jz_kdev_t **out, struct jz_error *err);
/* Waits for queued work, then frees the queue. All buffers of the device must be freed before
 * (if some are still allocated the handle is deliberately leaked rather than left dangling).
 * Accepts NULL. */
void jz_kdev_close(jz_kdev_t *dev);

enum jz_kbackend jz_kdev_backend(const jz_kdev_t *dev);
int jz_kdev_ordinal(const jz_kdev_t *dev);
/* A human-readable device name ("NVIDIA H100 80GB HBM3", "pthread-haswell-AMD EPYC ..."),
 * borrowed, valid until jz_kdev_close. */
const char *jz_kdev_name(const jz_kdev_t *dev);
/* Device memory in bytes (host RAM for cpu), 0 when unknown. */
uint64_t jz_kdev_memory(const jz_kdev_t *dev);

/* Blocks until all work queued on the device has finished; reports asynchronous errors. */
int jz_kdev_sync(jz_kdev_t *dev, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Buffers                                                                                     */

/* Allocates `bytes` (1 .. JZ_KBUF_MAX_BYTES) of uninitialised device memory. The caller owns *out
 * and frees it with jz_kbuf_free before closing the device. */
int jz_kbuf_alloc(jz_kdev_t *dev, size_t bytes, jz_kbuf_t **out, struct jz_error *err);
/* Waits for queued work on the buffer's device, then frees. Accepts NULL. */
void jz_kbuf_free(jz_kbuf_t *buf);
size_t jz_kbuf_size(const jz_kbuf_t *buf);
jz_kdev_t *jz_kbuf_device(const jz_kbuf_t *buf);
/* Copies `bytes` from host memory `src` (borrowed for the call only) into the buffer at byte
 * `offset`; returns when `src` may be reused. A range outside the buffer is JZ_ERANGE (also for
 * jz_kbuf_read and jz_kbuf_copy). */
int jz_kbuf_write(jz_kbuf_t *buf, size_t offset, const void *src, size_t bytes,
                  struct jz_error *err);
/* Waits for queued work, then copies `bytes` at byte `offset` of the buffer into host `dst`. */
int jz_kbuf_read(const jz_kbuf_t *buf, size_t offset, void *dst, size_t bytes,
                 struct jz_error *err);
/* Enqueues a device-side copy between two buffers of the same device (regions must not overlap
 * when src == dst). */
int jz_kbuf_copy(jz_kbuf_t *dst, size_t dst_offset, const jz_kbuf_t *src, size_t src_offset,
                 size_t bytes, struct jz_error *err);
/* Gathers rows of host memory into the buffer: `n` rows of `row_bytes` each, row i of the
 * buffer (from byte `offset`) being row rows[i] of `src`, which holds `src_rows` rows. A row
 * number at or past src_rows is JZ_ERANGE, checked before anything is written; the whole range
 * must fit the buffer as for jz_kbuf_write; a source that overlaps the buffer's own memory (a
 * wrapped one on the cpu backend) is JZ_EINVAL. The cpu backend copies the rows on its threads
 * straight into the buffer; the others gather into host memory and make one write. Training
 * gathers each shuffled mini-batch this way. */
int jz_kbuf_write_rows(jz_kbuf_t *buf, size_t offset, const void *src, size_t src_rows,
                       size_t row_bytes, const uint32_t *rows, size_t n, struct jz_error *err);
/* On the cpu backend, the buffer's host memory (borrowed; valid until jz_kbuf_free); NULL on
 * other backends. Lets CPU code avoid copies. */
void *jz_kbuf_host_ptr(jz_kbuf_t *buf);

/* ------------------------------------------------------------------------------------------ */
/* Dense linear algebra (cuBLAS, CLBlast, OpenBLAS)                                             */

/* C[m x n] = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
 * op(A) is m x k, op(B) is k x n. lda/ldb/ldc are row strides in elements of A, B, C as stored
 * (lda >= k when !trans_a, lda >= m when trans_a; likewise ldb, and ldc >= n).
 * When beta == 0, C need not be initialised (NaNs in C are not propagated). */
int jz_k_gemm(jz_kdev_t *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
              const jz_kbuf_t *a, size_t lda, const jz_kbuf_t *b, size_t ldb, float beta,
              jz_kbuf_t *c, size_t ldc, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Elementwise and fused layers                                                                */

enum jz_kact {
    JZ_KACT_NONE = 0, /* identity */
    JZ_KACT_RELU = 1, /* max(z, 0); derivative 0 at z == 0 */
    JZ_KACT_GELU = 2, /* tanh approximation: 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) */
};

/* y[r,c] = act(x[r,c] + bias[c]) for a rows x cols matrix; bias may be NULL (treated as 0).
 * In place ok (y == x). */
int jz_k_bias_act_forward(jz_kdev_t *dev, enum jz_kact act, size_t rows, size_t cols,
                          const jz_kbuf_t *x, const jz_kbuf_t *bias, jz_kbuf_t *y,
                          struct jz_error *err);
/* Backward of jz_k_bias_act_forward, given its input x (and bias) and the gradient dy:
 * dx[r,c] = dy[r,c] * act'(x[r,c] + bias[c]); dbias[c] = sum over r of dx[r,c] (overwritten, not
 * accumulated). bias and dbias may be NULL. In place ok (dx == dy). */
int jz_k_bias_act_backward(jz_kdev_t *dev, enum jz_kact act, size_t rows, size_t cols,
                           const jz_kbuf_t *x, const jz_kbuf_t *bias, const jz_kbuf_t *dy,
                           jz_kbuf_t *dx, jz_kbuf_t *dbias, struct jz_error *err);

/* Row-wise softmax of logits (rows x cols) and cross-entropy against int32 labels[rows]:
 * probs[r,:] = softmax(logits[r,:]); loss[r] = -log(probs[r, labels[r]]) (computed stably from
 * the logits). A row whose label is outside [0, cols) is ignored: loss[r] = 0. loss may be NULL. */
int jz_k_softmax_xent_forward(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *logits,
                              const jz_kbuf_t *labels, jz_kbuf_t *probs, jz_kbuf_t *loss,
                              struct jz_error *err);
/* dlogits[r,c] = scale * (probs[r,c] - (c == labels[r])), or 0 for an ignored row. Use
 * scale = 1/rows for the gradient of the mean loss. In place ok (dlogits == probs). */
int jz_k_softmax_xent_backward(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *probs,
                               const jz_kbuf_t *labels, float scale, jz_kbuf_t *dlogits,
                               struct jz_error *err);

/* y[i] += alpha * x[i] for i < n. */
int jz_k_axpy(jz_kdev_t *dev, size_t n, float alpha, const jz_kbuf_t *x, jz_kbuf_t *y,
              struct jz_error *err);
/* x[i] *= alpha for i < n. */
int jz_k_scale(jz_kdev_t *dev, size_t n, float alpha, jz_kbuf_t *x, struct jz_error *err);
/* x[i] = value for i < n. */
int jz_k_fill(jz_kdev_t *dev, size_t n, float value, jz_kbuf_t *x, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Reductions: results stay on the device (read them with jz_kbuf_read), so no sync is forced.  */

/* out[0] = sum of x[0..n) (n >= 1). */
int jz_k_sum(jz_kdev_t *dev, size_t n, const jz_kbuf_t *x, jz_kbuf_t *out, struct jz_error *err);
/* out[0] = max of x[0..n) (n >= 1); NaNs are ignored unless all are NaN. */
int jz_k_max(jz_kdev_t *dev, size_t n, const jz_kbuf_t *x, jz_kbuf_t *out, struct jz_error *err);
/* int32 out[r] = index of the largest x[r, :] (first one on ties), for a rows x cols matrix. */
int jz_k_argmax_rows(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *x, jz_kbuf_t *out,
                     struct jz_error *err);
/* out[0] = (number of rows r with argmax(x[r,:]) == labels[r]) / rows, as float. */
int jz_k_accuracy(jz_kdev_t *dev, size_t rows, size_t cols, const jz_kbuf_t *x,
                  const jz_kbuf_t *labels, jz_kbuf_t *out, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Optimizer updates over n parameters (all buffers n floats)                                  */

/* SGD with momentum and L2 weight decay:
 *   g' = grad + weight_decay * param;  vel = momentum * vel + g';  param -= lr * vel. */
int jz_k_sgd_update(jz_kdev_t *dev, size_t n, jz_kbuf_t *param, const jz_kbuf_t *grad,
                    jz_kbuf_t *vel, float lr, float momentum, float weight_decay,
                    struct jz_error *err);

/* AdamW (decoupled weight decay), step t >= 1 (the count of updates including this one):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mh = m / (1-b1^t);  vh = v / (1-b2^t);
 *   param -= lr * (mh / (sqrt(vh) + eps) + weight_decay * param).
 * weight_decay = 0 gives plain Adam. */
struct jz_adam_params {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;
};
int jz_k_adam_update(jz_kdev_t *dev, size_t n, jz_kbuf_t *param, const jz_kbuf_t *grad,
                     jz_kbuf_t *m, jz_kbuf_t *v, const struct jz_adam_params *p,
                     struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Simulation                                                                                  */

/* One explicit heat-diffusion step on an nx x ny grid (index y * nx + x), nx, ny >= 3:
 *   out = in + alpha * (sum of the 4 neighbours - 4 in) on interior cells;
 *   boundary cells are copied unchanged (fixed-temperature, Dirichlet). Stable for alpha <= 1/4.
 * in and out must be distinct; swap them between steps. */
int jz_k_heat2d_step(jz_kdev_t *dev, size_t nx, size_t ny, float alpha, const jz_kbuf_t *in,
                     jz_kbuf_t *out, struct jz_error *err);
/* The same on an nx x ny x nz grid (index (z * ny + y) * nx + x) with the 6 neighbours
 * (- 6 in); stable for alpha <= 1/6. */
int jz_k_heat3d_step(jz_kdev_t *dev, size_t nx, size_t ny, size_t nz, float alpha,
                     const jz_kbuf_t *in, jz_kbuf_t *out, struct jz_error *err);

/* All-pairs softened gravity (G = 1) for n bodies. pos holds n float4 (x, y, z, mass);
 * acc receives n float4 (ax, ay, az, 0):
 *   acc_i = sum over j of mass_j (r_j - r_i) / (|r_j - r_i|^2 + softening^2)^(3/2)
 * (the j == i term is zero). softening > 0. */
int jz_k_nbody_forces(jz_kdev_t *dev, size_t n, float softening, const jz_kbuf_t *pos,
                      jz_kbuf_t *acc, struct jz_error *err);
/* Leapfrog (kick-drift with velocities at half steps): for each body,
 *   vel += dt * acc;  pos.xyz += dt * vel   (mass and vel.w untouched).
 * pos, vel and acc hold n float4 each. */
int jz_k_nbody_leapfrog(jz_kdev_t *dev, size_t n, float dt, jz_kbuf_t *pos, jz_kbuf_t *vel,
                        const jz_kbuf_t *acc, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Counter-based random numbers (Philox4x32-10), the same stream on every backend               */

/* Element i of the stream (seed, offset) is derived from Philox4x32-10 with key
 * (seed low 32 bits, seed high 32 bits) and counter ((offset+i)/4 as 64 bits, 0, 0), lane
 * (offset+i) % 4; so out[i] depends only on seed and offset + i, and a stream can be produced
 * in pieces (call again with offset += n). offset + n must not exceed 2^64 - 1 (JZ_ERANGE).
 * Uniform: out[i] = lo + (hi - lo) * u, u = (bits >> 8) * 2^-24 in [0, 1); bit-identical on every
 * backend. */
int jz_k_rand_uniform(jz_kdev_t *dev, size_t n, uint64_t seed, uint64_t offset, float lo, float hi,
                      jz_kbuf_t *out, struct jz_error *err);
/* Normal: out[i] = mean + stddev * z, z from the Box-Muller transform of lanes (0,1) and (2,3) of
 * the same Philox block (even lane: r cos t, odd lane: r sin t). Equal across backends to within
 * float rounding of log/sin/cos. */
int jz_k_rand_normal(jz_kdev_t *dev, size_t n, uint64_t seed, uint64_t offset, float mean,
                     float stddev, jz_kbuf_t *out, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Collectives over the devices of one job in this process                                     */

/* Creates a communicator over ndev (1 .. JZ_KCOMM_MAX_DEVICES) open devices, rank i = devs[i]
 * (borrowed: the devices must outlive the communicator). When every device is a distinct CUDA
 * GPU (and the CUDA backend was built with NCCL), NCCL is used; otherwise (OpenCL, cpu, mixed) a host implementation that stages through
 * host memory. The caller owns *out and frees it with jz_kcomm_destroy. */
int jz_kcomm_create(jz_kdev_t *const *devs, size_t ndev, jz_kcomm_t **out, struct jz_error *err);
void jz_kcomm_destroy(jz_kcomm_t *comm); /* accepts NULL */
size_t jz_kcomm_size(const jz_kcomm_t *comm);
/* True when the communicator uses NCCL. */
bool jz_kcomm_is_nccl(const jz_kcomm_t *comm);

/* In place: afterwards every bufs[i] (on devs[i]) holds the element-wise sum over ranks of the
 * first `count` floats. Waits for work queued before on all devices; returns when the result is
 * in place (or, with NCCL, queued on every device's stream, ordered before later work). */
int jz_kcomm_allreduce_sum(jz_kcomm_t *comm, jz_kbuf_t *const *bufs, size_t count,
                           struct jz_error *err);
/* In place: afterwards every bufs[i] holds the first `count` floats of bufs[root]. */
int jz_kcomm_broadcast(jz_kcomm_t *comm, jz_kbuf_t *const *bufs, size_t count, size_t root,
                       struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Additions of API version 2 (appended: nothing above changed)                                 */

/* Boundary condition of the heat stencils on the faces of the whole domain. The outer layer of
 * cells on every face is a layer of boundary or ghost cells; the interior is updated.
 *  - DIRICHLET: the outer cells hold fixed temperatures: they are copied from in to out and the
 *    interior reads them as they are (what jz_k_heat2d_step and jz_k_heat3d_step do).
 *  - NEUMANN: zero flux. The outer cells are ghosts standing for the first interior cell inward
 *    (index 0 -> 1, n-1 -> n-2 along each axis): the interior reads that cell instead of the
 *    ghost, and out's ghosts receive that cell's new value.
 *  - PERIODIC: the interior cells 1 .. n-2 of each axis repeat with period n-2; the ghosts stand
 *    for the opposite interior cell (0 -> n-2, n-1 -> 1), read and written as for NEUMANN.
 * With NEUMANN and PERIODIC the ghost values of `in` are never read (on boundary faces), so a
 * fresh grid needs no ghost set-up, and `out` is always complete and self-consistent. A ghost
 * cell on an edge or corner stands for the cell mapped along every axis where it is a ghost. */
enum jz_kbc {
    JZ_KBC_DIRICHLET = 0,
    JZ_KBC_NEUMANN = 1,
    JZ_KBC_PERIODIC = 2,
};

/* Faces of a grid, as bits of the `halo` mask of the _bc stencils. */
#define JZ_KFACE_XLO 0x01u /* x == 0 */
#define JZ_KFACE_XHI 0x02u /* x == nx - 1 */
#define JZ_KFACE_YLO 0x04u
#define JZ_KFACE_YHI 0x08u
#define JZ_KFACE_ZLO 0x10u /* 3D only */
#define JZ_KFACE_ZHI 0x20u

/* One explicit heat step with boundary condition `bc` on an nx x ny grid (layout and stencil as
 * jz_k_heat2d_step, nx, ny >= 3, alpha <= 1/4 for stability).
 * `halo` marks faces that are not boundaries of the whole domain but cuts between the slabs of a
 * split grid: their outer layer holds the neighbouring slab's cells (a halo), which the interior
 * reads as they are; out's halo layer is copied from in, for the caller's halo exchange to
 * overwrite. Only unmarked faces take `bc`. A grid split into slabs along y passes YLO for every
 * slab but the first and YHI for every slab but the last; with PERIODIC along the split axis and
 * more than one slab, pass both YLO and YHI on every slab and let the exchange wrap around (the
 * first slab's outer layer takes the last slab's plane n-2, the last slab's outer layer the first
 * slab's plane 1). PERIODIC needs both faces of an axis marked alike (else JZ_EINVAL); bits other
 * than the 4 faces of a 2D grid are JZ_EINVAL. in and out must be distinct. */
int jz_k_heat2d_step_bc(jz_kdev_t *dev, size_t nx, size_t ny, float alpha, enum jz_kbc bc,
                        unsigned halo, const jz_kbuf_t *in, jz_kbuf_t *out, struct jz_error *err);
/* The same on an nx x ny x nz grid (index (z * ny + y) * nx + x), all 6 faces; alpha <= 1/6. */
int jz_k_heat3d_step_bc(jz_kdev_t *dev, size_t nx, size_t ny, size_t nz, float alpha,
                        enum jz_kbc bc, unsigned halo, const jz_kbuf_t *in, jz_kbuf_t *out,
                        struct jz_error *err);

/* Forces of jz_k_nbody_forces for bodies [first, first + count) only, each from all n bodies:
 * acc[i] (float4 index i, as in jz_k_nbody_forces) is written for i in the range, every other
 * element of acc is left untouched. acc must hold at least first + count float4. count >= 1 and
 * first + count <= n. Each body's sum runs the same way as in jz_k_nbody_forces on the same
 * backend, so slices computed on several devices of one backend assemble into bit-identical
 * results (e.g. fill acc with 0, compute the slice, jz_kcomm_allreduce_sum). */
int jz_k_nbody_forces_range(jz_kdev_t *dev, size_t n, size_t first, size_t count, float softening,
                            const jz_kbuf_t *pos, jz_kbuf_t *acc, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Additions of API version 3 (appended: nothing above changed)                                 */

/* One dense layer forward: z = x W (x: rows x in, W: in x out, z: rows x out; row-major,
 * contiguous), then y = act(z + bias) exactly as jz_k_bias_act_forward computes it; z keeps the
 * product without the bias, which is what jz_k_bias_act_backward takes. bias may be NULL; y may
 * be z (then only act(z + bias) remains). x and W must not alias z or y. The same as jz_k_gemm
 * (alpha 1, beta 0) followed by jz_k_bias_act_forward, which is what backends without a fused
 * version run; the cpu backend applies bias and activation to each panel of z on the thread that
 * computed it, while the panel is still in its cache. */
int jz_k_dense_forward(jz_kdev_t *dev, enum jz_kact act, size_t rows, size_t in, size_t out,
                       const jz_kbuf_t *x, const jz_kbuf_t *w, const jz_kbuf_t *bias, jz_kbuf_t *z,
                       jz_kbuf_t *y, struct jz_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Additions of API version 4 (appended: nothing above changed)                                 */

/* A buffer over `bytes` (1 .. JZ_KBUF_MAX_BYTES) of the caller's host memory at `host`, without
 * a copy, on backends whose device is the host's memory (cpu); JZ_ENOTSUP on the others, where
 * the caller allocates and writes instead. `host` must be aligned for float (4 bytes, else
 * JZ_EINVAL). The memory stays the caller's: it must stay valid until jz_kbuf_free, which
 * releases only the handle. Operations may read and write it as any buffer (the caller must not
 * touch it while an operation on the buffer runs; on the cpu backend operations run inside the
 * call). For inputs already in host memory, such as a batch of a dataset the plugin has loaded:
 * the cpu backend then reads them where they are instead of copying them first. */
int jz_kbuf_wrap_host(jz_kdev_t *dev, void *host, size_t bytes, jz_kbuf_t **out,
                      struct jz_error *err);

#ifdef __cplusplus
}
#endif
#endif
