/* jazari-bench-kernels: measures the compute layer against references taken in the same run and
 * prints one JSON object per line (op, backend, n, value, unit, reference, reference_value,
 * ratio). SGEMM vs OpenBLAS (and cuBLAS) called directly, heat stencils vs a STREAM triad (or
 * the device's copy bandwidth on CUDA), N-body vs the CPU's measured FMA peak, bias +
 * activation vs the triad.
 * Usage: jazari-bench-kernels [--backends cpu,opencl,cuda] [--ops sgemm,mlp,stencil,nbody,act]
 *                             [--reps N] [--quick]
 * (act: the fused bias + ReLU / GELU forward pass vs the triad; mlp: one training step's eight
 * GEMMs of the issue-15 MLP; neither run by default) */
#define _GNU_SOURCE
#include <jazari/kernels.h>

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef JZ_BENCH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

static int reps = 5;
static bool quick;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void emit(const char *op, const char *backend, size_t n, double value, const char *unit,
                 const char *ref, double ref_value)
{
    printf("{\"op\":\"%s\",\"backend\":\"%s\",\"n\":%zu,\"value\":%.4g,\"unit\":\"%s\","
           "\"reference\":\"%s\",\"reference_value\":%.4g,\"ratio\":%.3f}\n",
           op, backend, n, value, unit, ref, ref_value, ref_value > 0 ? value / ref_value : 0.0);
    fflush(stdout);
}

static void die(int rc, const struct jz_error *e, const char *what)
{
    if (rc) {
        fprintf(stderr, "jazari-bench-kernels: %s: %s\n", what, e->msg);
        exit(1);
    }
}

static struct jz_error err;
#define CK(call, what) die((call), &err, what)

static jz_kbuf_t *random_buf(jz_kdev_t *d, size_t n, float lo, float hi, uint64_t seed)
{
    jz_kbuf_t *b;
    CK(jz_kbuf_alloc(d, n * 4, &b, &err), "alloc");
    CK(jz_k_rand_uniform(d, n, seed, 0, lo, hi, b, &err), "rand");
    return b;
}

/* ---- references measured here ---- */

/* The references run on plain threads, one per CPU the library's pool uses (OMP_NUM_THREADS or
 * the affinity mask), not OpenMP: OpenMP's workers keep spinning after a parallel region and
 * would take cores from the measurement that follows. */
static int nthreads = 1;

static void threads_init(void)
{
    const char *env = getenv("OMP_NUM_THREADS");
    nthreads = env && *env ? atoi(env) : 0;
    if (nthreads < 1) {
        cpu_set_t set;
        nthreads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    if (nthreads > 64)
        nthreads = 64;
}

struct job {
    void (*fn)(int tid, void *arg);
    void *arg;
    int tid;
};

static void *job_main(void *p)
{
    struct job *j = p;
    j->fn(j->tid, j->arg);
    return NULL;
}

/* Runs fn(tid) on nthreads threads (the caller is thread 0) and waits for all. */
static void run_threads(void (*fn)(int tid, void *arg), void *arg)
{
    pthread_t t[64];
    struct job jobs[64];
    for (int i = 1; i < nthreads; i++) {
        jobs[i] = (struct job){fn, arg, i};
        if (pthread_create(&t[i], NULL, job_main, &jobs[i]) != 0) {
            fprintf(stderr, "jazari-bench-kernels: pthread_create failed\n");
            exit(1);
        }
    }
    fn(0, arg);
    for (int i = 1; i < nthreads; i++)
        pthread_join(t[i], NULL);
}

/* STREAM triad a = b + s c over 3 arrays of n floats (12 bytes per element, STREAM's count).
 * Run between the measured steps, so both see the same load on a shared machine. */
static float *tri_a, *tri_b, *tri_c;
static size_t tn;

static void triad_slice(int tid, size_t *b, size_t *e)
{
    *b = tn * (size_t)tid / (size_t)nthreads, *e = tn * (size_t)(tid + 1) / (size_t)nthreads;
}

static void triad_fill(int tid, void *arg)
{
    size_t b, e;
    triad_slice(tid, &b, &e);
    for (size_t i = b; i < e; i++)
        tri_a[i] = 0, tri_b[i] = 1, tri_c[i] = 2;
}

static void triad_run(int tid, void *arg)
{
    size_t b, e;
    triad_slice(tid, &b, &e);
    float *restrict a = tri_a, *restrict bb = tri_b, *restrict c = tri_c;
    for (size_t i = b; i < e; i++)
        a[i] = bb[i] + 3.0f * c[i];
}

static void triad_init(size_t n)
{
    tn = n;
    tri_a = aligned_alloc(64, n * 4), tri_b = aligned_alloc(64, n * 4),
    tri_c = aligned_alloc(64, n * 4);
    if (!tri_a || !tri_b || !tri_c) {
        fprintf(stderr, "jazari-bench-kernels: out of memory\n");
        exit(1);
    }
    run_threads(triad_fill, NULL);
}

/* One triad pass; returns GB/s. */
static double triad_once(void)
{
    double t0 = now();
    run_threads(triad_run, NULL);
    return 12.0 * (double)tn / (now() - t0) * 1e-9;
}

/* FP32 FMA peak: independent accumulators per thread (enough to hide FMA latency, few enough
 * to stay in registers), at the widest vector width the CPU has. Returns flops done. */
#define FMA_LOOP(name, tgt, lanes, nacc)                                                           \
    __attribute__((target(tgt), noinline)) static double name(long iters, float *sink)             \
    {                                                                                              \
        typedef float vec __attribute__((vector_size(lanes * 4)));                                 \
        vec acc[nacc], m, a;                                                                       \
        /* acc -> a / (1 - m) = 1: no overflow, and no denormals to slow the loop down. */         \
        for (int i = 0; i < lanes; i++)                                                            \
            m[i] = 0.999f, a[i] = 0.001f;                                                          \
        for (int j = 0; j < nacc; j++)                                                             \
            for (int i = 0; i < lanes; i++)                                                        \
                acc[j][i] = (float)(j + i);                                                        \
        for (long k = 0; k < iters; k++)                                                           \
            for (int j = 0; j < nacc; j++)                                                         \
                acc[j] = acc[j] * m + a;                                                           \
        float s = 0;                                                                               \
        for (int j = 0; j < nacc; j++)                                                             \
            for (int i = 0; i < lanes; i++)                                                        \
                s += acc[j][i];                                                                    \
        *sink += s;                                                                                \
        return 2.0 * lanes * nacc * (double)iters;                                                 \
    }
FMA_LOOP(fma_avx512, "avx512f", 16, 24)
FMA_LOOP(fma_avx2, "avx2,fma", 8, 12)
FMA_LOOP(fma_sse, "sse2", 4, 12)

static void fma_thread(int tid, void *arg)
{
    const long iters = 10000000;
    double *flops = arg;
    float sink = 0;
    if (__builtin_cpu_supports("avx512f"))
        flops[tid] = fma_avx512(iters, &sink);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        flops[tid] = fma_avx2(iters, &sink);
    else
        flops[tid] = fma_sse(iters, &sink);
    if (sink == 12345.0f) /* keeps the loops from being optimised away */
        fputc(' ', stderr);
}

/* One timed FMA run on every thread (about 0.1 s); returns GFLOP/s. */
static double fma_once(void)
{
    double flops[64] = {0}, total = 0;
    __builtin_cpu_init();
    double t0 = now();
    run_threads(fma_thread, flops);
    double t = now() - t0;
    for (int i = 0; i < nthreads; i++)
        total += flops[i];
    return total / t * 1e-9;
}

/* ---- measurements through the kernels API ---- */

static double time_gemm(jz_kdev_t *d, size_t n, jz_kbuf_t *a, jz_kbuf_t *b, jz_kbuf_t *c)
{
    double t0 = now();
    CK(jz_k_gemm(d, false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, &err), "gemm");
    CK(jz_kdev_sync(d, &err), "sync");
    return now() - t0;
}

/* OpenBLAS on its own threads, as many as the library's pool has. The cpu backend sets OpenBLAS
 * to one thread for the process (it runs one single-threaded GEMM per pool thread) and checks
 * before each of its calls, so setting it back here is what keeps this reference threaded. */
static double openblas_gemm(size_t n, const float *a, const float *b, float *c)
{
    openblas_set_num_threads(nthreads);
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n,
                b, (int)n, 0.0f, c, (int)n);
    return now() - t0;
}

#ifdef JZ_BENCH_CUDA
/* cuBLAS called directly on the same sizes, for the CUDA backend's ratio. */
static double cublas_gemm_gflops(int ordinal, size_t n)
{
    float *a, *b, *c;
    cublasHandle_t h;
    cudaSetDevice(ordinal);
    if (cudaMalloc((void **)&a, n * n * 4) || cudaMalloc((void **)&b, n * n * 4) ||
        cudaMalloc((void **)&c, n * n * 4) || cublasCreate(&h))
        return 0;
    cudaMemset(a, 0, n * n * 4);
    cudaMemset(b, 0, n * n * 4);
    const float one = 1, zero = 0;
    double t[32];
    int r = reps < 32 ? reps : 32;
    for (int k = 0; k < r + 1; k++) {
        double t0 = now();
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)n, (int)n, &one, b, (int)n, a, (int)n,
                    &zero, c, (int)n);
        cudaDeviceSynchronize();
        if (k)
            t[k - 1] = now() - t0;
    }
    cublasDestroy(h);
    cudaFree(a), cudaFree(b), cudaFree(c);
    return 2.0 * (double)n * n * n / median(t, r) * 1e-9;
}
#endif

static void bench_gemm(jz_kdev_t *d, const char *bname)
{
    const size_t sizes[] = {512, 1024, 2048};
    for (size_t si = 0; si < 3; si++) {
        size_t n = sizes[si];
        if (quick && n > 1024)
            break;
        jz_kbuf_t *A = random_buf(d, n * n, -1, 1, 1), *B = random_buf(d, n * n, -1, 1, 2);
        jz_kbuf_t *C;
        CK(jz_kbuf_alloc(d, n * n * 4, &C, &err), "alloc");
        float *ha = malloc(n * n * 4), *hb = malloc(n * n * 4), *hc = malloc(n * n * 4);
        CK(jz_kbuf_read(A, 0, ha, n * n * 4, &err), "read");
        CK(jz_kbuf_read(B, 0, hb, n * n * 4, &err), "read");
        double tb[32], td[32];
        int r = reps < 32 ? reps : 32;
        time_gemm(d, n, A, B, C); /* warm-up: first-use compiles, thread start-up */
        openblas_gemm(n, ha, hb, hc);
        /* Interleaved, so drift on a shared machine hits both sides alike. */
        for (int k = 0; k < r; k++) {
            td[k] = openblas_gemm(n, ha, hb, hc);
            /* OpenBLAS's threads poll (sched_yield) for about 2^28 cycles after a call before
             * they sleep; timed then, the cpu backend shared the cores with them and measured
             * half its speed at n = 1024. Let them fall asleep first. */
            if (jz_kdev_backend(d) == JZ_KBACKEND_CPU)
                nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
            tb[k] = time_gemm(d, n, A, B, C);
        }
        double flops = 2.0 * (double)n * n * n;
        double g = flops / median(tb, r) * 1e-9, gd = flops / median(td, r) * 1e-9;
        emit("sgemm", bname, n, g, "GFLOP/s", "openblas_direct", gd);
#ifdef JZ_BENCH_CUDA
        if (jz_kdev_backend(d) == JZ_KBACKEND_CUDA)
            emit("sgemm", bname, n, g, "GFLOP/s", "cublas_direct",
                 cublas_gemm_gflops(jz_kdev_ordinal(d), n));
#endif
        free(ha), free(hb), free(hc);
        jz_kbuf_free(A), jz_kbuf_free(B), jz_kbuf_free(C);
    }
}

/* The eight GEMMs of one training step of the issue-15 MLP (784-256-128-10, batch 128): x W
 * for each layer, then dW = x^T dz and dx = dz W^T (no dx for the input). Through the backend
 * against OpenBLAS called directly on its own threads; on the cpu backend also against the
 * backend's own panels on OpenBLAS (JZ_CPU_GEMM=openblas, which cpu.c reads at every GEMM), so
 * that its GEMM (the default, or whichever JZ_CPU_GEMM names) and OpenBLAS's are compared in
 * the same threading and the same run. All interleaved, one repetition each, medians. */
static const size_t mlp_gemms[8][5] = {
    /* m, n, k, ta, tb */
    {128, 256, 784, 0, 0}, {128, 128, 256, 0, 0}, {128, 10, 128, 0, 0},  {128, 10, 128, 1, 0},
    {128, 128, 10, 0, 1},  {256, 128, 128, 1, 0}, {128, 256, 128, 0, 1}, {784, 256, 128, 1, 0},
};
#define MLP_STEPS 200

static double mlp_backend(jz_kdev_t *d, jz_kbuf_t *A, jz_kbuf_t *B, jz_kbuf_t *C)
{
    double t0 = now();
    for (int s = 0; s < MLP_STEPS; s++)
        for (int g = 0; g < 8; g++) {
            const size_t *x = mlp_gemms[g];
            CK(jz_k_gemm(d, x[3], x[4], x[0], x[1], x[2], 1.0f, A, x[3] ? x[0] : x[2], B,
                         x[4] ? x[2] : x[1], 0.0f, C, x[1], &err),
               "gemm");
        }
    CK(jz_kdev_sync(d, &err), "sync");
    return (now() - t0) / MLP_STEPS;
}

static double mlp_openblas(const float *a, const float *b, float *c)
{
    openblas_set_num_threads(nthreads);
    double t0 = now();
    for (int s = 0; s < MLP_STEPS; s++)
        for (int g = 0; g < 8; g++) {
            const size_t *x = mlp_gemms[g];
            int m = (int)x[0], n = (int)x[1], k = (int)x[2];
            cblas_sgemm(CblasRowMajor, x[3] ? CblasTrans : CblasNoTrans,
                        x[4] ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, x[3] ? m : k, b,
                        x[4] ? k : n, 0.0f, c, n);
        }
    return (now() - t0) / MLP_STEPS;
}

static void bench_gemm_mlp(jz_kdev_t *d, const char *bname)
{
    const size_t most = 784 * 256;
    bool cpu = jz_kdev_backend(d) == JZ_KBACKEND_CPU;
    jz_kbuf_t *A = random_buf(d, most, -1, 1, 1), *B = random_buf(d, most, -1, 1, 2), *C;
    CK(jz_kbuf_alloc(d, most * 4, &C, &err), "alloc");
    float *ha = malloc(most * 4), *hb = malloc(most * 4), *hc = malloc(most * 4);
    CK(jz_kbuf_read(A, 0, ha, most * 4, &err), "read");
    CK(jz_kbuf_read(B, 0, hb, most * 4, &err), "read");
    const char *sel = getenv("JZ_CPU_GEMM");
    char *saved = sel ? strdup(sel) : NULL;
    double flops = 0, tb[32], td[32], tp[32];
    for (int g = 0; g < 8; g++)
        flops += 2.0 * (double)mlp_gemms[g][0] * (double)mlp_gemms[g][1] * (double)mlp_gemms[g][2];
    int r = reps < 32 ? reps : 32;
    for (int k = -1; k < r; k++) { /* k = -1: warm-up */
        double direct = mlp_openblas(ha, hb, hc);
        if (cpu) /* let OpenBLAS's threads fall asleep (see bench_gemm) */
            nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
        /* the two backend runs take turns going first */
        double panels = 0, own = k & 1 ? mlp_backend(d, A, B, C) : 0;
        if (cpu) {
            setenv("JZ_CPU_GEMM", "openblas", 1);
            panels = mlp_backend(d, A, B, C);
            if (saved)
                setenv("JZ_CPU_GEMM", saved, 1);
            else
                unsetenv("JZ_CPU_GEMM");
        }
        if (!(k & 1))
            own = mlp_backend(d, A, B, C);
        if (k >= 0)
            td[k] = direct, tp[k] = panels, tb[k] = own;
    }
    /* n = the batch; GFLOP/s over the step's eight GEMMs */
    emit("sgemm_mlp_step", bname, 128, flops / median(tb, r) * 1e-9, "GFLOP/s", "openblas_direct",
         flops / median(td, r) * 1e-9);
    if (cpu)
        emit("sgemm_mlp_step", bname, 128, flops / median(tb, r) * 1e-9, "GFLOP/s",
             "cpu_openblas_panels", flops / median(tp, r) * 1e-9);
    free(saved);
    free(ha), free(hb), free(hc);
    jz_kbuf_free(A), jz_kbuf_free(B), jz_kbuf_free(C);
}

/* The reference bandwidth for a stencil step on this device, measured right before it: the
 * triad on host-memory backends, a device-to-device copy (read + write) on CUDA. */
static double ref_bandwidth(jz_kdev_t *d, jz_kbuf_t *src, jz_kbuf_t *dst, size_t bytes)
{
    if (jz_kdev_backend(d) != JZ_KBACKEND_CUDA)
        return triad_once();
    double t0 = now();
    CK(jz_kbuf_copy(dst, 0, src, 0, bytes, &err), "copy");
    CK(jz_kdev_sync(d, &err), "sync");
    return 2.0 * (double)bytes / (now() - t0) * 1e-9;
}

static void bench_heat(jz_kdev_t *d, const char *bname, int dims, size_t edge)
{
    const size_t n = dims == 2 ? edge * edge : edge * edge * edge;
    const int steps = 10;
    jz_kbuf_t *U = random_buf(d, n, 0, 1, 3), *W, *S;
    CK(jz_kbuf_alloc(d, n * 4, &W, &err), "alloc");
    CK(jz_kbuf_alloc(d, n * 4, &S, &err), "alloc");
    double t[32], ref[32];
    int r = reps < 32 ? reps : 32;
    for (int k = 0; k < r + 1; k++) {
        double rb = ref_bandwidth(d, U, S, n * 4);
        double t0 = now();
        for (int s = 0; s < steps; s++) {
            if (dims == 2)
                CK(jz_k_heat2d_step(d, edge, edge, 0.2f, U, W, &err), "heat2d");
            else
                CK(jz_k_heat3d_step(d, edge, edge, edge, 0.1f, U, W, &err), "heat3d");
            jz_kbuf_t *tmp = U;
            U = W, W = tmp;
        }
        CK(jz_kdev_sync(d, &err), "sync");
        if (k) /* the first round warms up (first-use compiles, page faults) */
            t[k - 1] = (now() - t0) / steps, ref[k - 1] = rb;
    }
    /* Each cell is read once and written once from memory (neighbours come from cache). */
    emit(dims == 2 ? "heat2d" : "heat3d", bname, n, 8.0 * (double)n / median(t, r) * 1e-9, "GB/s",
         jz_kdev_backend(d) == JZ_KBACKEND_CUDA ? "device_copy" : "stream_triad", median(ref, r));
    jz_kbuf_free(U), jz_kbuf_free(W), jz_kbuf_free(S);
}

static void bench_stencil(jz_kdev_t *d, const char *bname)
{
    bench_heat(d, bname, 2, quick ? 2048 : 4096);
    bench_heat(d, bname, 3, quick ? 128 : 256);
}

static void bench_nbody(jz_kdev_t *d, const char *bname)
{
    size_t n = quick ? 4096 : 16384;
    if (jz_kdev_backend(d) == JZ_KBACKEND_CUDA)
        n = 65536;
    jz_kbuf_t *P = random_buf(d, 4 * n, 0.5f, 1.5f, 5), *A;
    CK(jz_kbuf_alloc(d, 4 * n * 4, &A, &err), "alloc");
    double t[32], peak[32];
    int r = reps < 32 ? reps : 32;
    for (int k = 0; k < r + 1; k++) {
        double p = fma_once();
        double t0 = now();
        CK(jz_k_nbody_forces(d, n, 0.01f, P, A, &err), "nbody");
        CK(jz_kdev_sync(d, &err), "sync");
        if (k)
            t[k - 1] = now() - t0, peak[k - 1] = p;
    }
    double ips = (double)n * (double)n / median(t, r);
    emit("nbody_interactions", bname, n, ips * 1e-9, "Ginteractions/s", "none", 0);
    /* Half the bodies with jz_k_nbody_forces_range, as one of two devices computes them in the
     * simulate plugin: the time should halve (ratio: against the full call's time). */
    double th[32];
    for (int k = 0; k < r + 1; k++) {
        double t0 = now();
        CK(jz_k_nbody_forces_range(d, n, n / 2, n - n / 2, 0.01f, P, A, &err), "nbody_range");
        CK(jz_kdev_sync(d, &err), "sync");
        if (k)
            th[k - 1] = now() - t0;
    }
    emit("nbody_range_half_s", bname, n, median(th, r), "s", "nbody_full_s", median(t, r));
    /* 20 flops per interaction, the usual count (GPU Gems 3, ch. 31). */
    emit("nbody", bname, n, ips * 20 * 1e-9, "GFLOP/s", "cpu_fma_peak", median(peak, r));
    jz_kbuf_free(P), jz_kbuf_free(A);
}

/* The fused bias + activation forward pass on an inference-sized activation (1024 x 1024): each
 * element is read once and written once, so it is compared with the triad. */
static void bench_act(jz_kdev_t *d, const char *bname)
{
    const size_t rows = 1024, cols = 1024, n = rows * cols;
    static const char *const names[3] = {"bias_act_none", "bias_act_relu", "bias_act_gelu"};
    jz_kbuf_t *X = random_buf(d, n, -3, 3, 7), *B = random_buf(d, cols, -1, 1, 8), *Y;
    CK(jz_kbuf_alloc(d, n * 4, &Y, &err), "alloc");
    for (int act = JZ_KACT_RELU; act <= JZ_KACT_GELU; act++) {
        double t[32], ref[32];
        int r = reps < 32 ? reps : 32;
        const int calls = 20;
        for (int k = 0; k < r + 1; k++) {
            double rb = ref_bandwidth(d, X, Y, n * 4);
            double t0 = now();
            for (int c = 0; c < calls; c++)
                CK(jz_k_bias_act_forward(d, (enum jz_kact)act, rows, cols, X, B, Y, &err),
                   "bias_act_forward");
            CK(jz_kdev_sync(d, &err), "sync");
            if (k)
                t[k - 1] = (now() - t0) / calls, ref[k - 1] = rb;
        }
        emit(names[act], bname, n, 8.0 * (double)n / median(t, r) * 1e-9, "GB/s",
             jz_kdev_backend(d) == JZ_KBACKEND_CUDA ? "device_copy" : "stream_triad",
             median(ref, r));
    }
    jz_kbuf_free(X), jz_kbuf_free(B), jz_kbuf_free(Y);
}

int main(int argc, char **argv)
{
    const char *backends = "cpu,opencl,cuda", *ops = "sgemm,stencil,nbody";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backends") && i + 1 < argc)
            backends = argv[++i];
        else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
            ops = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else {
            fprintf(stderr,
                    "usage: %s [--backends cpu,opencl,cuda] [--ops sgemm,mlp,stencil,nbody,act] "
                    "[--reps N] [--quick]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 31)
        reps = 5;
    threads_init();
    triad_init(quick ? (size_t)1 << 23 : (size_t)1 << 25);
    double tr[32], pk[32];
    for (int k = 0; k < reps; k++)
        tr[k] = triad_once(), pk[k] = fma_once();
    emit("stream_triad", "host", tn, median(tr, reps), "GB/s", "none", 0);
    emit("fma_peak", "host", (size_t)nthreads, median(pk, reps), "GFLOP/s", "none", 0);

    char list[128];
    snprintf(list, sizeof list, "%s", backends);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        enum jz_kbackend b;
        size_t count = 0;
        if (jz_kbackend_parse(tok, &b, &err) || jz_kdev_count(b, &count, &err) || count == 0) {
            fprintf(stderr, "jazari-bench-kernels: no %s device, skipped\n", tok);
            continue;
        }
        jz_kdev_t *d;
        CK(jz_kdev_open(b, 0, &d, &err), "open");
        fprintf(stderr, "jazari-bench-kernels: %s: %s\n", tok, jz_kdev_name(d));
        if (strstr(ops, "sgemm"))
            bench_gemm(d, tok);
        if (strstr(ops, "mlp"))
            bench_gemm_mlp(d, tok);
        if (strstr(ops, "stencil"))
            bench_stencil(d, tok);
        if (strstr(ops, "nbody"))
            bench_nbody(d, tok);
        if (strstr(ops, "act"))
            bench_act(d, tok);
        jz_kdev_close(d);
    }
    free(tri_a), free(tri_b), free(tri_c);
    return 0;
}
