/* The OpenCL backend: devices of every platform, GEMM from CLBlast, the other kernels from
 * kernels/opencl/ (*.cl, embedded at build time). The program is compiled once per device and
 * process, on first use, in a context shared by every handle of that device; each handle has its
 * own in-order queue and kernel objects. */
#include "../internal.h"

#include <CL/cl.h>
#include <clblast_c.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

extern const char jzk_cl_source[];
extern const size_t jzk_cl_source_len;

#define MAX_CL_DEVICES 64
#define RED_WG 64     /* must match JZK_RED_WG in reduce.cl */
#define RED_GROUPS 64 /* partial sums per reduction */
#define STENCIL_WG 64 /* work-group width of the stencils */

enum kid {
    K_BIAS_ACT_FWD,
    K_BIAS_ACT_BWD,
    K_COL_SUM,
    K_XENT_FWD,
    K_XENT_BWD,
    K_AXPY,
    K_SCALE,
    K_FILL,
    K_FILL2D,
    K_SGD,
    K_ADAM,
    K_REDUCE,
    K_ARGMAX,
    K_ACCURACY,
    K_HEAT2D,
    K_HEAT3D,
    K_NBODY,
    K_LEAPFROG,
    K_RAND,
    K_COUNT
};
static const char *const kernel_names[K_COUNT] = {
    "jzk_bias_act_fwd", "jzk_bias_act_bwd", "jzk_col_sum",     "jzk_xent_fwd", "jzk_xent_bwd",
    "jzk_axpy",         "jzk_scale",        "jzk_fill",        "jzk_fill2d",   "jzk_sgd",
    "jzk_adam",         "jzk_reduce",       "jzk_argmax_rows", "jzk_accuracy", "jzk_heat2d",
    "jzk_heat3d",       "jzk_nbody",        "jzk_leapfrog",    "jzk_rand",
};

/* Process-wide state of one OpenCL device: shared by all handles opened on it. */
struct shared {
    cl_device_id id;
    cl_context ctx;     /* NULL until first opened */
    cl_program program; /* NULL until first kernel launch */
    int refs;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t enum_once = PTHREAD_ONCE_INIT;
static struct shared devices[MAX_CL_DEVICES];
static size_t ndevices;

struct cldev {
    struct shared *sh;
    cl_command_queue q;
    cl_kernel k[K_COUNT];
    cl_mem scratch; /* RED_GROUPS partial results */
};

static void enumerate(void)
{
    cl_platform_id plats[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, plats, &np) != CL_SUCCESS)
        return;
    for (cl_uint p = 0; p < np && p < 16; p++) {
        cl_device_id ids[MAX_CL_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_CL_DEVICES, ids, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint i = 0; i < nd && ndevices < MAX_CL_DEVICES; i++)
            devices[ndevices++].id = ids[i];
    }
}

static int cl_fail(struct jz_error *err, cl_int rc, const char *what)
{
    return jzk_err(err,
                   rc == CL_MEM_OBJECT_ALLOCATION_FAILURE || rc == CL_OUT_OF_HOST_MEMORY
                       ? JZ_ENOMEM
                       : JZ_EDEVICE,
                   "OpenCL %s failed (error %d)", what, (int)rc);
}

static int ocl_count(size_t *out, struct jz_error *err)
{
    pthread_once(&enum_once, enumerate);
    *out = ndevices;
    return 0;
}

static int ocl_open(int ordinal, void **d, char *name, size_t name_len, uint64_t *memory,
                    struct jz_error *err)
{
    pthread_once(&enum_once, enumerate);
    struct shared *sh = &devices[ordinal];
    struct cldev *dv = calloc(1, sizeof *dv);
    if (!dv)
        return jzk_err(err, JZ_ENOMEM, "out of memory");
    cl_int rc = CL_SUCCESS;
    pthread_mutex_lock(&lock);
    if (!sh->ctx)
        sh->ctx = clCreateContext(NULL, 1, &sh->id, NULL, NULL, &rc);
    if (rc == CL_SUCCESS)
        sh->refs++;
    pthread_mutex_unlock(&lock);
    if (rc != CL_SUCCESS) {
        free(dv);
        return cl_fail(err, rc, "clCreateContext");
    }
    dv->sh = sh;
    dv->q = clCreateCommandQueue(sh->ctx, sh->id, 0, &rc);
    if (rc == CL_SUCCESS)
        dv->scratch =
            clCreateBuffer(sh->ctx, CL_MEM_READ_WRITE, RED_GROUPS * sizeof(float), NULL, &rc);
    if (rc != CL_SUCCESS) {
        if (dv->q)
            clReleaseCommandQueue(dv->q);
        pthread_mutex_lock(&lock);
        sh->refs--;
        pthread_mutex_unlock(&lock);
        free(dv);
        return cl_fail(err, rc, "clCreateCommandQueue");
    }
    char dn[96] = "", pn[64] = "";
    cl_platform_id plat;
    clGetDeviceInfo(sh->id, CL_DEVICE_NAME, sizeof dn - 1, dn, NULL);
    if (clGetDeviceInfo(sh->id, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL) == CL_SUCCESS)
        clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof pn - 1, pn, NULL);
    snprintf(name, name_len, "%s (%s)", dn, pn);
    cl_ulong mem = 0;
    clGetDeviceInfo(sh->id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    *memory = mem;
    *d = dv;
    return 0;
}

/* The context (and its compiled program) stays alive for the rest of the process once created:
 * a job that closes and reopens a device must not pay the compile again. */
static void ocl_close(void *d)
{
    struct cldev *dv = d;
    clFinish(dv->q);
    for (int i = 0; i < K_COUNT; i++)
        if (dv->k[i])
            clReleaseKernel(dv->k[i]);
    clReleaseMemObject(dv->scratch);
    clReleaseCommandQueue(dv->q);
    pthread_mutex_lock(&lock);
    dv->sh->refs--;
    pthread_mutex_unlock(&lock);
    free(dv);
}

static int ocl_sync(void *d, struct jz_error *err)
{
    struct cldev *dv = d;
    cl_int rc = clFinish(dv->q);
    return rc == CL_SUCCESS ? 0 : cl_fail(err, rc, "clFinish");
}

static int ocl_alloc(void *d, size_t bytes, void **h, struct jz_error *err)
{
    struct cldev *dv = d;
    cl_ulong max_alloc = 0;
    clGetDeviceInfo(dv->sh->id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    if (max_alloc && bytes > max_alloc)
        return jzk_err(err, JZ_ELIMIT, "OpenCL device allows buffers up to %llu bytes",
                       (unsigned long long)max_alloc);
    cl_int rc;
    cl_mem m = clCreateBuffer(dv->sh->ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, "clCreateBuffer");
    *h = m;
    return 0;
}

static void ocl_release(void *d, void *h)
{
    struct cldev *dv = d;
    clFinish(dv->q); /* queued kernels may still use it */
    clReleaseMemObject((cl_mem)h);
}

static int ocl_write(void *d, void *h, size_t off, const void *src, size_t bytes,
                     struct jz_error *err)
{
    struct cldev *dv = d;
    cl_int rc = clEnqueueWriteBuffer(dv->q, (cl_mem)h, CL_TRUE, off, bytes, src, 0, NULL, NULL);
    return rc == CL_SUCCESS ? 0 : cl_fail(err, rc, "clEnqueueWriteBuffer");
}

static int ocl_read(void *d, void *h, size_t off, void *dst, size_t bytes, struct jz_error *err)
{
    struct cldev *dv = d;
    cl_int rc = clEnqueueReadBuffer(dv->q, (cl_mem)h, CL_TRUE, off, bytes, dst, 0, NULL, NULL);
    return rc == CL_SUCCESS ? 0 : cl_fail(err, rc, "clEnqueueReadBuffer");
}

static int ocl_copy(void *d, void *dst, size_t doff, void *src, size_t soff, size_t bytes,
                    struct jz_error *err)
{
    struct cldev *dv = d;
    cl_int rc =
        clEnqueueCopyBuffer(dv->q, (cl_mem)src, (cl_mem)dst, soff, doff, bytes, 0, NULL, NULL);
    return rc == CL_SUCCESS ? 0 : cl_fail(err, rc, "clEnqueueCopyBuffer");
}

/* Builds the program for the device once per process (under the lock, so two handles do not
 * compile it twice), then creates this handle's kernel object. */
static int kernel(struct cldev *dv, enum kid id, cl_kernel *out, struct jz_error *err)
{
    if (dv->k[id]) {
        *out = dv->k[id];
        return 0;
    }
    struct shared *sh = dv->sh;
    cl_int rc = CL_SUCCESS;
    pthread_mutex_lock(&lock);
    if (!sh->program) {
        const char *src = jzk_cl_source;
        size_t len = jzk_cl_source_len;
        cl_program p = clCreateProgramWithSource(sh->ctx, 1, &src, &len, &rc);
        if (rc == CL_SUCCESS) {
            rc = clBuildProgram(p, 1, &sh->id, "-cl-std=CL1.2", NULL, NULL);
            if (rc != CL_SUCCESS) {
                char log[160] = "";
                clGetProgramBuildInfo(p, sh->id, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
                clReleaseProgram(p);
                pthread_mutex_unlock(&lock);
                return jzk_err(err, JZ_EDEVICE, "OpenCL kernels failed to build (%d): %s", (int)rc,
                               log);
            }
            sh->program = p;
        }
    }
    pthread_mutex_unlock(&lock);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, "clCreateProgramWithSource");
    cl_kernel k = clCreateKernel(sh->program, kernel_names[id], &rc);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, "clCreateKernel");
    dv->k[id] = k;
    *out = k;
    return 0;
}

struct arg {
    size_t size;
    const void *ptr;
};
#define A(x) ((struct arg){sizeof(x), &(x)})

static int launch(struct cldev *dv, enum kid id, cl_uint dims, const size_t *gws, const size_t *lws,
                  size_t nargs, const struct arg *args, struct jz_error *err)
{
    cl_kernel k;
    int r = kernel(dv, id, &k, err);
    if (r)
        return r;
    for (size_t i = 0; i < nargs; i++) {
        cl_int rc = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].ptr);
        if (rc != CL_SUCCESS)
            return cl_fail(err, rc, "clSetKernelArg");
    }
    cl_int rc = clEnqueueNDRangeKernel(dv->q, k, dims, NULL, gws, lws, 0, NULL, NULL);
    return rc == CL_SUCCESS ? 0 : cl_fail(err, rc, kernel_names[id]);
}

#define LAUNCH(dv, id, dims, gws, lws, ...)                                                        \
    launch(dv, id, dims, gws, lws, sizeof((struct arg[]){__VA_ARGS__}) / sizeof(struct arg),       \
           (struct arg[]){__VA_ARGS__}, err)

static int ocl_gemm(void *d, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, void *a,
                    size_t lda, void *b, size_t ldb, float beta, void *c, size_t ldc,
                    struct jz_error *err)
{
    struct cldev *dv = d;
    cl_mem A = a, B = b, C = c;
    if (beta == 0.0f) {
        /* CLBlast computes beta * C even for beta == 0, so NaNs in an uninitialised C would
         * survive; the API promises they do not. */
        cl_uint rows = (cl_uint)m, cols = (cl_uint)n, ld = (cl_uint)ldc;
        float zero = 0;
        size_t gws[2] = {n, m};
        int r = LAUNCH(dv, K_FILL2D, 2, gws, NULL, A(rows), A(cols), A(ld), A(zero), A(C));
        if (r)
            return r;
    }
    cl_command_queue q = dv->q;
    CLBlastStatusCode s =
        CLBlastSgemm(CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                     tb ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, A, 0, lda, B, 0,
                     ldb, beta, C, 0, ldc, &q, NULL);
    if (s != CLBlastSuccess)
        return jzk_err(err, s == CLBlastOpenCLOutOfHostMemory ? JZ_ENOMEM : JZ_EDEVICE,
                       "CLBlastSgemm failed (status %d)", (int)s);
    return 0;
}

static size_t round_up(size_t v, size_t m)
{
    return (v + m - 1) / m * m;
}

static int ocl_bias_act_fwd(void *d, int act, size_t rows, size_t cols, void *x, void *bias,
                            void *y, struct jz_error *err)
{
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_int hb = bias != NULL;
    cl_mem X = x, B = bias ? bias : x, Y = y;
    size_t gws = rows * cols;
    return LAUNCH(d, K_BIAS_ACT_FWD, 1, &gws, NULL, A(r), A(c), A(act), A(hb), A(X), A(B), A(Y));
}

static int ocl_bias_act_bwd(void *d, int act, size_t rows, size_t cols, void *x, void *bias,
                            void *dy, void *dx, void *dbias, struct jz_error *err)
{
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_int hb = bias != NULL;
    cl_mem X = x, B = bias ? bias : x, DY = dy, DX = dx;
    size_t gws = rows * cols;
    int rc = LAUNCH(d, K_BIAS_ACT_BWD, 1, &gws, NULL, A(r), A(c), A(act), A(hb), A(X), A(B), A(DY),
                    A(DX));
    if (rc || !dbias)
        return rc;
    cl_mem DB = dbias;
    gws = cols;
    return LAUNCH(d, K_COL_SUM, 1, &gws, NULL, A(r), A(c), A(DX), A(DB));
}

static int ocl_xent_fwd(void *d, size_t rows, size_t cols, void *logits, void *labels, void *probs,
                        void *loss, struct jz_error *err)
{
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_int hl = loss != NULL;
    cl_mem L = logits, Y = labels, P = probs, LS = loss ? loss : probs;
    size_t gws = rows;
    return LAUNCH(d, K_XENT_FWD, 1, &gws, NULL, A(r), A(c), A(hl), A(L), A(Y), A(P), A(LS));
}

static int ocl_xent_bwd(void *d, size_t rows, size_t cols, void *probs, void *labels, float scale,
                        void *dlogits, struct jz_error *err)
{
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_mem P = probs, Y = labels, D = dlogits;
    size_t gws = rows * cols;
    return LAUNCH(d, K_XENT_BWD, 1, &gws, NULL, A(r), A(c), A(scale), A(P), A(Y), A(D));
}

static int ocl_axpy(void *d, size_t n, float alpha, void *x, void *y, struct jz_error *err)
{
    cl_uint nn = (cl_uint)n;
    cl_mem X = x, Y = y;
    return LAUNCH(d, K_AXPY, 1, &n, NULL, A(nn), A(alpha), A(X), A(Y));
}

static int ocl_scale(void *d, size_t n, float alpha, void *x, struct jz_error *err)
{
    cl_uint nn = (cl_uint)n;
    cl_mem X = x;
    return LAUNCH(d, K_SCALE, 1, &n, NULL, A(nn), A(alpha), A(X));
}

static int ocl_fill(void *d, size_t n, float value, void *x, struct jz_error *err)
{
    cl_uint nn = (cl_uint)n;
    cl_mem X = x;
    return LAUNCH(d, K_FILL, 1, &n, NULL, A(nn), A(value), A(X));
}

static int ocl_reduce(void *d, int kind, size_t n, void *x, void *out, struct jz_error *err)
{
    struct cldev *dv = d;
    cl_uint nn = (cl_uint)n, np = RED_GROUPS;
    cl_mem X = x, O = out, S = dv->scratch;
    size_t groups = round_up(n, RED_WG) / RED_WG;
    if (groups > RED_GROUPS)
        groups = RED_GROUPS;
    size_t gws = groups * RED_WG, lws = RED_WG;
    if (groups == 1)
        return LAUNCH(d, K_REDUCE, 1, &gws, &lws, A(nn), A(kind), A(X), A(O));
    int rc = LAUNCH(d, K_REDUCE, 1, &gws, &lws, A(nn), A(kind), A(X), A(S));
    if (rc)
        return rc;
    np = (cl_uint)groups;
    gws = RED_WG;
    return LAUNCH(d, K_REDUCE, 1, &gws, &lws, A(np), A(kind), A(S), A(O));
}

static int ocl_argmax_rows(void *d, size_t rows, size_t cols, void *x, void *out,
                           struct jz_error *err)
{
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_mem X = x, O = out;
    return LAUNCH(d, K_ARGMAX, 1, &rows, NULL, A(r), A(c), A(X), A(O));
}

static int ocl_accuracy(void *d, size_t rows, size_t cols, void *x, void *labels, void *out,
                        struct jz_error *err)
{
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_mem X = x, Y = labels, O = out;
    size_t gws = RED_WG, lws = RED_WG;
    return LAUNCH(d, K_ACCURACY, 1, &gws, &lws, A(r), A(c), A(X), A(Y), A(O));
}

static int ocl_sgd(void *d, size_t n, void *p, void *g, void *v, float lr, float mom, float wd,
                   struct jz_error *err)
{
    cl_uint nn = (cl_uint)n;
    cl_mem P = p, G = g, V = v;
    return LAUNCH(d, K_SGD, 1, &n, NULL, A(nn), A(lr), A(mom), A(wd), A(P), A(G), A(V));
}

static int ocl_adam(void *d, size_t n, void *p, void *g, void *m, void *v, float lr, float b1,
                    float b2, float eps, float wd, float bc1, float bc2, struct jz_error *err)
{
    cl_uint nn = (cl_uint)n;
    cl_mem P = p, G = g, M = m, V = v;
    return LAUNCH(d, K_ADAM, 1, &n, NULL, A(nn), A(lr), A(b1), A(b2), A(eps), A(wd), A(bc1), A(bc2),
                  A(P), A(G), A(M), A(V));
}

static int ocl_heat2d(void *d, size_t nx, size_t ny, float alpha, int bc, unsigned halo, void *in,
                      void *out, struct jz_error *err)
{
    cl_uint x = (cl_uint)nx, y = (cl_uint)ny, hm = halo;
    cl_int b = bc;
    cl_mem I = in, O = out;
    /* Rows of STENCIL_WG cells per work-group: PoCL vectorises a work-group along x, and its own
     * choice of local size for a 2D range was 4x slower. */
    size_t gws[2] = {round_up(nx, STENCIL_WG), ny}, lws[2] = {STENCIL_WG, 1};
    return LAUNCH(d, K_HEAT2D, 2, gws, lws, A(x), A(y), A(alpha), A(b), A(hm), A(I), A(O));
}

static int ocl_heat3d(void *d, size_t nx, size_t ny, size_t nz, float alpha, int bc,
                      unsigned halo, void *in, void *out, struct jz_error *err)
{
    cl_uint x = (cl_uint)nx, y = (cl_uint)ny, z = (cl_uint)nz, hm = halo;
    cl_int b = bc;
    cl_mem I = in, O = out;
    size_t gws[3] = {round_up(nx, STENCIL_WG), ny, nz}, lws[3] = {STENCIL_WG, 1, 1};
    return LAUNCH(d, K_HEAT3D, 3, gws, lws, A(x), A(y), A(z), A(alpha), A(b), A(hm), A(I), A(O));
}

static int ocl_nbody(void *d, size_t n, size_t first, size_t count, float soft2, void *pos,
                     void *acc, struct jz_error *err)
{
    cl_uint nn = (cl_uint)n, f = (cl_uint)first, c = (cl_uint)count;
    cl_mem P = pos, AC = acc;
    return LAUNCH(d, K_NBODY, 1, &count, NULL, A(nn), A(f), A(c), A(soft2), A(P), A(AC));
}

static int ocl_leapfrog(void *d, size_t n, float dt, void *pos, void *vel, void *acc,
                        struct jz_error *err)
{
    cl_uint nn = (cl_uint)n;
    cl_mem P = pos, V = vel, AC = acc;
    return LAUNCH(d, K_LEAPFROG, 1, &n, NULL, A(nn), A(dt), A(P), A(V), A(AC));
}

static int ocl_rand(void *d, int dist, size_t n, uint64_t seed, uint64_t offset, float a, float b,
                    void *out, struct jz_error *err)
{
    cl_ulong first = offset / 4, nblocks = (offset + n - 1) / 4 - first + 1, s = seed, o = offset;
    cl_uint nn = (cl_uint)n;
    cl_mem O = out;
    size_t gws = (size_t)nblocks;
    return LAUNCH(d, K_RAND, 1, &gws, NULL, A(first), A(nblocks), A(s), A(o), A(nn), A(dist), A(a),
                  A(b), A(O));
}

static const struct jzk_ops ops = {
    .version = JZK_OPS_VERSION,
    .count = ocl_count,
    .open = ocl_open,
    .close = ocl_close,
    .sync = ocl_sync,
    .alloc = ocl_alloc,
    .release = ocl_release,
    .write = ocl_write,
    .read = ocl_read,
    .copy = ocl_copy,
    .gemm = ocl_gemm,
    .bias_act_fwd = ocl_bias_act_fwd,
    .bias_act_bwd = ocl_bias_act_bwd,
    .xent_fwd = ocl_xent_fwd,
    .xent_bwd = ocl_xent_bwd,
    .axpy = ocl_axpy,
    .scale = ocl_scale,
    .fill = ocl_fill,
    .reduce = ocl_reduce,
    .argmax_rows = ocl_argmax_rows,
    .accuracy = ocl_accuracy,
    .sgd = ocl_sgd,
    .adam = ocl_adam,
    .heat2d = ocl_heat2d,
    .heat3d = ocl_heat3d,
    .nbody_forces = ocl_nbody,
    .leapfrog = ocl_leapfrog,
    .rand = ocl_rand,
};

const struct jzk_ops *jzk_opencl_ops(void)
{
    return &ops;
}
