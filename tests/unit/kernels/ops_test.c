/* Every compute-layer operation on one backend (JZ_TEST_BACKEND) against a float64 CPU reference:
 * fresh random inputs each run (the seed is printed), outputs poisoned before each call, odd sizes.
 * Exits 77 (skip) when the backend has no device. */
#include "../../../kernels/internal.h"

#include <jazari/kernels.h>

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef JZ_TEST_BACKEND
#define JZ_TEST_BACKEND JZ_KBACKEND_CPU
#endif

static jz_kdev_t *dev;
static uint64_t rng_state;

/* splitmix64: the tests' own input generator (independent of the code under test). */
static uint64_t rnd64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rndf(float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rnd64() >> 11) / 9007199254740992.0);
}

static float *rand_vec(size_t n, float lo, float hi)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = rndf(lo, hi);
    return v;
}

static void ok(int rc, const struct jz_error *e)
{
    if (rc)
        fail_msg("call failed: %d %s", rc, e->msg);
}

static jz_kbuf_t *upload(const void *h, size_t bytes)
{
    struct jz_error e = {0};
    jz_kbuf_t *b = NULL;
    ok(jz_kbuf_alloc(dev, bytes, &b, &e), &e);
    ok(jz_kbuf_write(b, 0, h, bytes, &e), &e);
    return b;
}

/* A buffer full of NaNs, so an element the kernel forgets to write fails the comparison. */
static jz_kbuf_t *poisoned(size_t n)
{
    float *nan = malloc(n * sizeof *nan);
    assert_non_null(nan);
    for (size_t i = 0; i < n; i++)
        nan[i] = NAN;
    jz_kbuf_t *b = upload(nan, n * sizeof *nan);
    free(nan);
    return b;
}

static float *download(const jz_kbuf_t *b, size_t n)
{
    struct jz_error e = {0};
    float *h = malloc(n * sizeof *h);
    assert_non_null(h);
    ok(jz_kbuf_read(b, 0, h, n * sizeof *h, &e), &e);
    return h;
}

/* |got - ref| <= atol + rtol * scale[i] (scale = |ref| when NULL). */
static void expect_close(const char *what, const float *got, const double *ref, const double *scale,
                         size_t n, double rtol, double atol)
{
    for (size_t i = 0; i < n; i++) {
        double s = scale ? scale[i] : fabs(ref[i]);
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= atol + rtol * s))
            fail_msg("%s[%zu]: got %.9g, want %.9g (|diff| %.3g > %.3g)", what, i, got[i], ref[i],
                     d, atol + rtol * s);
    }
}

/* ------------------------------------------------------------------------------------------ */

static void gemm_case_full(bool ta, bool tb, float alpha, float beta, size_t m, size_t n, size_t k,
                           size_t pad)
{
    size_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    size_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
    float *a = rand_vec(ar * lda, -1, 1), *b = rand_vec(br * ldb, -1, 1);
    float *c0 = rand_vec(m * ldc, -1, 1);
    for (size_t i = 0; i < m; i++)
        for (size_t j = n; j < ldc; j++)
            c0[i * ldc + j] = 12345.0f; /* padding that must stay untouched */
    if (beta == 0)
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                c0[i * ldc + j] = NAN; /* beta == 0 must not read C */
    double *ref = calloc(m * ldc, sizeof *ref), *scale = calloc(m * ldc, sizeof *scale);
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < ldc; j++) {
            if (j >= n) {
                ref[i * ldc + j] = 12345.0;
                continue;
            }
            double s = 0, sa = 0;
            for (size_t p = 0; p < k; p++) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += av * bv;
                sa += fabs(av * bv);
            }
            double cv = beta == 0 ? 0 : c0[i * ldc + j];
            ref[i * ldc + j] = alpha * s + beta * cv;
            scale[i * ldc + j] = fabs(alpha) * sa + fabs(beta * cv);
        }
    }
    struct jz_error e = {0};
    jz_kbuf_t *A = upload(a, ar * lda * 4), *B = upload(b, br * ldb * 4);
    jz_kbuf_t *C = upload(c0, m * ldc * 4);
    ok(jz_k_gemm(dev, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, &e), &e);
    float *c = download(C, m * ldc);
    expect_close("gemm", c, ref, scale, m * ldc, 1e-5, 1e-6);
    free(a), free(b), free(c0), free(c), free(ref), free(scale);
    jz_kbuf_free(A), jz_kbuf_free(B), jz_kbuf_free(C);
}

static void gemm_case_sized(bool ta, bool tb, float beta, size_t m, size_t n, size_t k)
{
    gemm_case_full(ta, tb, 1.25f, beta, m, n, k, 3);
}

static void gemm_case(bool ta, bool tb, float beta)
{
    gemm_case_sized(ta, tb, beta, 37, 29, 53);
}

static void test_gemm(void **state)
{
    for (int t = 0; t < 4; t++) {
        gemm_case(t & 1, t & 2, 0.0f);
        gemm_case(t & 1, t & 2, 0.75f);
        /* Large enough for the cpu backend to cut C into panels on its threads: along the rows
         * (m > n) and along the columns (n > m), neither a multiple of the panel unit. */
        gemm_case_sized(t & 1, t & 2, 0.0f, 173, 83, 67);
        gemm_case_sized(t & 1, t & 2, 0.75f, 45, 301, 41);
        gemm_case_sized(t & 1, t & 2, 0.0f, 517, 37, 29); /* more panels than threads */
    }
}

/* The cpu backend's GEMM paths (JZ_CPU_GEMM, read by cpu.c at every GEMM; see
 * docs/kernels.md): OpenBLAS, our own with the AVX-512 and AVX2 micro-kernels, and the
 * portable micro-kernel at the AVX-512 tile, which checks that tile's blocking and edges on
 * machines without AVX-512 (a kind the CPU lacks runs the default path instead). Each path gets
 * the training shapes (784-256-128-10 at batch 128: forward, both backward products) and random
 * shapes from sizes that straddle the tiles (8 x 32, 6 x 16), the panel unit (16) and the K
 * block (256), with every transpose, alpha and beta (0 with NaN in C), and padded leading
 * dimensions. Other backends: the random shapes once. */
static void gemm_edge_cases(void)
{
    static const size_t sizes[] = {1, 2, 7, 15, 16, 17, 31, 33, 100, 128, 257, 784};
    static const float alphas[] = {1.25f, -0.5f, 1.0f}, betas[] = {0.0f, 0.75f, 1.0f, -1.5f};
    const size_t ns = sizeof sizes / sizeof sizes[0];
    /* {m, n, k, ta, tb}: x W, dW = x^T dz, dx = dz W^T for each layer */
    static const size_t train[][5] = {
        {128, 256, 784, 0, 0}, {128, 128, 256, 0, 0}, {128, 10, 128, 0, 0},  {784, 256, 128, 1, 0},
        {256, 128, 128, 1, 0}, {128, 10, 128, 1, 0},  {128, 256, 128, 0, 1}, {128, 128, 10, 0, 1},
    };
    for (size_t i = 0; i < sizeof train / sizeof train[0]; i++)
        gemm_case_full(train[i][3], train[i][4], 1.0f, 0.0f, train[i][0], train[i][1], train[i][2],
                       0);
    for (int c = 0; c < 48; c++) {
        size_t m, n, k;
        do { /* the float64 reference is m n k multiply-adds: keep each case short */
            m = sizes[rnd64() % ns], n = sizes[rnd64() % ns], k = sizes[rnd64() % ns];
        } while ((double)m * (double)n * (double)k > 4e6);
        uint64_t r = rnd64();
        gemm_case_full(r & 1, r & 2, alphas[(r >> 2) % 3], betas[(r >> 4) % 4], m, n, k,
                       (r >> 6) % 3 == 0 ? 0 : 1 + (r >> 8) % 17);
    }
}

static void test_gemm_paths(void **state)
{
    if (JZ_TEST_BACKEND != JZ_KBACKEND_CPU) {
        gemm_edge_cases();
        return;
    }
    static const char *paths[] = {"openblas", "avx512", "avx2", "generic"};
    const char *was = getenv("JZ_CPU_GEMM");
    char *saved = was ? strdup(was) : NULL;
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        setenv("JZ_CPU_GEMM", paths[p], 1);
        gemm_edge_cases();
    }
    if (saved)
        setenv("JZ_CPU_GEMM", saved, 1);
    else
        unsetenv("JZ_CPU_GEMM");
    free(saved);
}

static double act_ref(int act, double z)
{
    if (act == JZ_KACT_RELU)
        return z > 0 ? z : 0;
    if (act == JZ_KACT_GELU)
        return 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    return z;
}

static double dact_ref(int act, double z)
{
    if (act == JZ_KACT_RELU)
        return z > 0 ? 1 : 0;
    if (act == JZ_KACT_GELU) {
        double k0 = sqrt(2 / M_PI), u = k0 * (z + 0.044715 * z * z * z), t = tanh(u);
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k0 * (1 + 3 * 0.044715 * z * z);
    }
    return 1;
}

static void test_bias_act(void **state)
{
    /* The second shape spans several column blocks of the cpu backend's bias gradient; the
     * third is large enough for its threads to take a column block each (dx and bias gradient in
     * one pass), the fourth has one block and many rows (rows in parallel, then the sums). */
    const size_t shapes[4][2] = {{33, 67}, {9, 517}, {301, 600}, {2003, 37}};
    struct jz_error e = {0};
    for (int sh = 0; sh < 4; sh++)
        for (int act = 0; act <= 2; act++) {
            const size_t rows = shapes[sh][0], cols = shapes[sh][1], n = rows * cols;
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                float *x = rand_vec(n, -3, 3), *bias = rand_vec(cols, -1, 1),
                      *dy = rand_vec(n, -2, 2);
                double *ry = malloc(n * sizeof *ry), *rdx = malloc(n * sizeof *rdx);
                double *rdb = calloc(cols, sizeof *rdb), *sdb = calloc(cols, sizeof *sdb);
                for (size_t r = 0; r < rows; r++) {
                    for (size_t c = 0; c < cols; c++) {
                        /* Keep clear of the ReLU kink, where float and double may disagree. */
                        if (fabs(x[r * cols + c] + (with_bias ? bias[c] : 0.0f)) < 1e-3f)
                            x[r * cols + c] += 0.01f;
                        double z = (double)x[r * cols + c] + (with_bias ? bias[c] : 0);
                        ry[r * cols + c] = act_ref(act, z);
                        rdx[r * cols + c] = dy[r * cols + c] * dact_ref(act, z);
                        rdb[c] += rdx[r * cols + c];
                        sdb[c] += fabs(rdx[r * cols + c]);
                    }
                }
                jz_kbuf_t *X = upload(x, n * 4), *Bb = with_bias ? upload(bias, cols * 4) : NULL;
                jz_kbuf_t *DY = upload(dy, n * 4), *Y = poisoned(n), *DX = poisoned(n);
                jz_kbuf_t *DB = poisoned(cols);
                ok(jz_k_bias_act_forward(dev, act, rows, cols, X, Bb, Y, &e), &e);
                ok(jz_k_bias_act_backward(dev, act, rows, cols, X, Bb, DY, DX, DB, &e), &e);
                float *y = download(Y, n), *dx = download(DX, n), *db = download(DB, cols);
                expect_close("bias_act y", y, ry, NULL, n, 1e-5, 1e-6);
                expect_close("bias_act dx", dx, rdx, NULL, n, 1e-4, 1e-6);
                expect_close("bias_act dbias", db, rdb, sdb, cols, 1e-5, 1e-6);
                /* In place: dx == dy with the bias gradient (as the train plugin calls it), then
                 * y == x. */
                ok(jz_k_bias_act_backward(dev, act, rows, cols, X, Bb, DY, DY, DB, &e), &e);
                float *dyin = download(DY, n), *dbin = download(DB, cols);
                expect_close("bias_act dx in place", dyin, rdx, NULL, n, 1e-4, 1e-6);
                expect_close("bias_act dbias in place", dbin, rdb, sdb, cols, 1e-5, 1e-6);
                free(dyin), free(dbin);
                ok(jz_k_bias_act_forward(dev, act, rows, cols, X, Bb, X, &e), &e);
                ok(jz_k_bias_act_backward(dev, act, rows, cols, Y, Bb, DY, DY, NULL, &e), &e);
                float *xin = download(X, n);
                expect_close("bias_act in place", xin, ry, NULL, n, 1e-5, 1e-6);
                free(x), free(bias), free(dy), free(y), free(dx), free(db), free(xin);
                free(ry), free(rdx), free(rdb), free(sdb);
                jz_kbuf_free(X), jz_kbuf_free(Bb), jz_kbuf_free(DY), jz_kbuf_free(Y);
                jz_kbuf_free(DX), jz_kbuf_free(DB);
            }
        }
}

/* The fused layer against float64: z = x W unbiased, y = act(z + bias); shapes that split C
 * along rows and along columns into several panels on the cpu backend, a small one that runs on
 * one thread, and y == z in place. */
static void test_dense_forward(void **state)
{
    const size_t shapes[4][3] = {{300, 67, 130}, {37, 90, 333}, {5, 7, 3}, {129, 784, 256}};
    struct jz_error e = {0};
    for (int sh = 0; sh < 4; sh++)
        for (int act = 0; act <= 2; act++)
            for (int variant = 0; variant < 3; variant++) { /* bias, no bias, in place */
                const size_t rows = shapes[sh][0], in = shapes[sh][1], out = shapes[sh][2];
                const bool with_bias = variant != 1, in_place = variant == 2;
                float *x = rand_vec(rows * in, -1, 1), *w = rand_vec(in * out, -1, 1);
                float *bias = rand_vec(out, -1, 1);
                double *rz = malloc(rows * out * sizeof *rz), *sz = malloc(rows * out * sizeof *sz);
                double *ry = malloc(rows * out * sizeof *ry);
                for (size_t r = 0; r < rows; r++)
                    for (size_t c = 0; c < out; c++) {
                        double acc = 0, mag = 0;
                        for (size_t p = 0; p < in; p++) {
                            acc += (double)x[r * in + p] * w[p * out + c];
                            mag += fabs((double)x[r * in + p] * w[p * out + c]);
                        }
                        rz[r * out + c] = acc;
                        sz[r * out + c] = mag;
                        ry[r * out + c] = act_ref(act, acc + (with_bias ? bias[c] : 0.0));
                    }
                jz_kbuf_t *X = upload(x, rows * in * 4), *W = upload(w, in * out * 4);
                jz_kbuf_t *Bb = with_bias ? upload(bias, out * 4) : NULL;
                jz_kbuf_t *Z = poisoned(rows * out), *Y = in_place ? Z : poisoned(rows * out);
                ok(jz_k_dense_forward(dev, act, rows, in, out, X, W, Bb, Z, Y, &e), &e);
                float *y = download(Y, rows * out);
                if (!in_place) {
                    float *z = download(Z, rows * out);
                    expect_close("dense z", z, rz, sz, rows * out, 1e-5, 1e-6);
                    free(z);
                }
                /* y's error is z's carried through the activation (slope at most about 1.13,
                 * GELU's), so it is bounded by the scale of the product, not by |y| (near the
                 * ReLU kink float and double may land on either side) */
                double *sy = malloc(rows * out * sizeof *sy);
                for (size_t i = 0; i < rows * out; i++)
                    sy[i] = 1.2 * sz[i] + 1.0;
                expect_close("dense y", y, ry, sy, rows * out, 1e-5, 1e-6);
                free(x), free(w), free(bias), free(y), free(rz), free(sz), free(ry), free(sy);
                jz_kbuf_free(X), jz_kbuf_free(W), jz_kbuf_free(Bb), jz_kbuf_free(Z);
                if (!in_place)
                    jz_kbuf_free(Y);
            }
    /* aliasing refused */
    jz_kbuf_t *A = poisoned(64), *B = poisoned(64);
    assert_int_equal(jz_k_dense_forward(dev, JZ_KACT_RELU, 8, 8, 8, A, B, NULL, A, B, &e),
                     JZ_EINVAL);
    jz_kbuf_free(A), jz_kbuf_free(B);
}

static void test_softmax_xent(void **state)
{
    const size_t rows = 19, cols = 13, n = rows * cols;
    struct jz_error e = {0};
    float *l = rand_vec(n, -8, 8);
    int32_t labels[19];
    for (size_t r = 0; r < rows; r++)
        labels[r] = (int32_t)(rnd64() % cols);
    labels[5] = -1; /* ignored rows */
    labels[11] = (int32_t)cols;
    l[3] = 80.0f; /* a large logit: the softmax must stay finite */
    double *rp = malloc(n * sizeof *rp), rl[19], *rd = malloc(n * sizeof *rd);
    const float scale = 1.0f / (float)rows;
    for (size_t r = 0; r < rows; r++) {
        double mx = -INFINITY, s = 0;
        for (size_t c = 0; c < cols; c++)
            mx = fmax(mx, l[r * cols + c]);
        for (size_t c = 0; c < cols; c++)
            s += exp(l[r * cols + c] - mx);
        bool valid = labels[r] >= 0 && (size_t)labels[r] < cols;
        for (size_t c = 0; c < cols; c++) {
            rp[r * cols + c] = exp(l[r * cols + c] - mx) / s;
            rd[r * cols + c] = valid ? scale * (rp[r * cols + c] - ((size_t)labels[r] == c)) : 0.0;
        }
        rl[r] = valid ? log(s) - (l[r * cols + labels[r]] - mx) : 0.0;
    }
    jz_kbuf_t *L = upload(l, n * 4), *Y = upload(labels, rows * 4), *P = poisoned(n);
    jz_kbuf_t *LS = poisoned(rows), *D = poisoned(n);
    ok(jz_k_softmax_xent_forward(dev, rows, cols, L, Y, P, LS, &e), &e);
    ok(jz_k_softmax_xent_backward(dev, rows, cols, P, Y, scale, D, &e), &e);
    float *p = download(P, n), *ls = download(LS, rows), *d = download(D, n);
    expect_close("softmax probs", p, rp, NULL, n, 1e-5, 1e-7);
    expect_close("xent loss", ls, rl, NULL, rows, 1e-5, 1e-6);
    expect_close("xent grad", d, rd, NULL, n, 1e-4, 1e-7);
    /* In place backward: dlogits == probs. */
    ok(jz_k_softmax_xent_backward(dev, rows, cols, P, Y, scale, P, &e), &e);
    float *d2 = download(P, n);
    expect_close("xent grad in place", d2, rd, NULL, n, 1e-4, 1e-7);
    free(l), free(rp), free(rd), free(p), free(ls), free(d), free(d2);
    jz_kbuf_free(L), jz_kbuf_free(Y), jz_kbuf_free(P), jz_kbuf_free(LS), jz_kbuf_free(D);
}

static void test_reductions(void **state)
{
    const size_t n = 100003, rows = 41, cols = 23;
    struct jz_error e = {0};
    float *x = rand_vec(n, -1, 1);
    x[n / 3] = 7.5f; /* a known maximum */
    x[n / 2] = NAN;  /* max ignores NaNs */
    double s = 0, sa = 0;
    for (size_t i = 0; i < n; i++)
        if (i != n / 2)
            s += x[i], sa += fabs(x[i]);
    jz_kbuf_t *X = upload(x, n * 4), *O = poisoned(1);
    x[n / 2] = 0;
    jz_kbuf_t *X0 = upload(x, n * 4);
    ok(jz_k_sum(dev, n, X0, O, &e), &e);
    float *got = download(O, 1);
    expect_close("sum", got, &s, &sa, 1, 1e-5, 1e-6);
    free(got);
    jz_kbuf_free(O), O = poisoned(1);
    ok(jz_k_max(dev, n, X, O, &e), &e);
    got = download(O, 1);
    assert_true(got[0] == 7.5f);
    free(got);

    float *m = rand_vec(rows * cols, -1, 1);
    int32_t want[41], labels[41];
    for (size_t r = 0; r < rows; r++) {
        size_t c = (size_t)(rnd64() % cols);
        m[r * cols + c] = 2.0f;
        if (r % 5 == 0) /* ties: the first index wins */
            m[r * cols + cols - 1] = 2.0f, c = c < cols - 1 ? c : cols - 1;
        want[r] = (int32_t)c;
        labels[r] = r % 3 ? want[r] : (want[r] + 1) % (int32_t)cols;
    }
    size_t hits = 0;
    for (size_t r = 0; r < rows; r++)
        hits += labels[r] == want[r];
    jz_kbuf_t *M = upload(m, rows * cols * 4), *A = poisoned(rows), *Y = upload(labels, rows * 4);
    jz_kbuf_t *ACC = poisoned(1);
    ok(jz_k_argmax_rows(dev, rows, cols, M, A, &e), &e);
    ok(jz_k_accuracy(dev, rows, cols, M, Y, ACC, &e), &e);
    int32_t idx[41];
    ok(jz_kbuf_read(A, 0, idx, sizeof idx, &e), &e);
    for (size_t r = 0; r < rows; r++)
        assert_int_equal(idx[r], want[r]);
    float *acc = download(ACC, 1);
    double racc = (double)hits / (double)rows;
    expect_close("accuracy", acc, &racc, NULL, 1, 1e-6, 0);
    free(x), free(m), free(acc);
    jz_kbuf_free(X), jz_kbuf_free(X0), jz_kbuf_free(O), jz_kbuf_free(M), jz_kbuf_free(A);
    jz_kbuf_free(Y), jz_kbuf_free(ACC);
}

static void test_elementwise(void **state)
{
    const size_t n = 4099;
    struct jz_error e = {0};
    float *x = rand_vec(n, -1, 1), *y = rand_vec(n, -1, 1);
    double *r = malloc(n * sizeof *r);
    jz_kbuf_t *X = upload(x, n * 4), *Y = upload(y, n * 4), *F = poisoned(n);
    ok(jz_k_axpy(dev, n, -0.5f, X, Y, &e), &e);
    ok(jz_k_scale(dev, n, 3.0f, X, &e), &e);
    ok(jz_k_fill(dev, n, 2.5f, F, &e), &e);
    float *gy = download(Y, n), *gx = download(X, n), *gf = download(F, n);
    for (size_t i = 0; i < n; i++)
        r[i] = (double)y[i] - 0.5 * x[i];
    expect_close("axpy", gy, r, NULL, n, 1e-6, 1e-7);
    for (size_t i = 0; i < n; i++)
        r[i] = 3.0 * x[i];
    expect_close("scale", gx, r, NULL, n, 1e-6, 0);
    for (size_t i = 0; i < n; i++)
        r[i] = 2.5;
    expect_close("fill", gf, r, NULL, n, 0, 0);
    free(x), free(y), free(r), free(gy), free(gx), free(gf);
    jz_kbuf_free(X), jz_kbuf_free(Y), jz_kbuf_free(F);
}

static void test_optimizers(void **state)
{
    const size_t n = 1031;
    const int steps = 3;
    struct jz_error e = {0};
    float *p = rand_vec(n, -1, 1), *v0 = rand_vec(n, -0.1f, 0.1f);
    float *g[3] = {rand_vec(n, -1, 1), rand_vec(n, -1, 1), rand_vec(n, -1, 1)};
    double *rp = malloc(n * sizeof *rp), *rv = malloc(n * sizeof *rv);
    double *rm = malloc(n * sizeof *rm), *ra = malloc(n * sizeof *ra);

    /* SGD with momentum */
    const float lr = 0.1f, mom = 0.9f, wd = 0.01f;
    for (size_t i = 0; i < n; i++)
        rp[i] = p[i], rv[i] = v0[i];
    jz_kbuf_t *P = upload(p, n * 4), *V = upload(v0, n * 4), *G = poisoned(n);
    for (int s = 0; s < steps; s++) {
        ok(jz_kbuf_write(G, 0, g[s], n * 4, &e), &e);
        ok(jz_k_sgd_update(dev, n, P, G, V, lr, mom, wd, &e), &e);
        for (size_t i = 0; i < n; i++) {
            double gi = g[s][i] + (double)wd * rp[i];
            rv[i] = mom * rv[i] + gi;
            rp[i] -= lr * rv[i];
        }
    }
    float *gp = download(P, n), *gv = download(V, n);
    expect_close("sgd param", gp, rp, NULL, n, 1e-5, 1e-6);
    expect_close("sgd vel", gv, rv, NULL, n, 1e-5, 1e-6);
    free(gp), free(gv);
    jz_kbuf_free(P), jz_kbuf_free(V);

    /* AdamW */
    struct jz_adam_params ap = {
        .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.05f};
    float *zeros = calloc(n, sizeof *zeros);
    P = upload(p, n * 4);
    jz_kbuf_t *M = upload(zeros, n * 4), *VV = upload(zeros, n * 4);
    for (size_t i = 0; i < n; i++)
        rp[i] = p[i], rm[i] = 0, ra[i] = 0;
    for (int s = 0; s < steps; s++) {
        ap.step = s + 1;
        ok(jz_kbuf_write(G, 0, g[s], n * 4, &e), &e);
        ok(jz_k_adam_update(dev, n, P, G, M, VV, &ap, &e), &e);
        double bc1 = 1 - pow(ap.beta1, ap.step), bc2 = 1 - pow(ap.beta2, ap.step);
        for (size_t i = 0; i < n; i++) {
            double gi = g[s][i];
            rm[i] = ap.beta1 * rm[i] + (1 - (double)ap.beta1) * gi;
            ra[i] = ap.beta2 * ra[i] + (1 - (double)ap.beta2) * gi * gi;
            double mh = rm[i] / bc1, vh = ra[i] / bc2;
            rp[i] -= ap.lr * (mh / (sqrt(vh) + ap.eps) + ap.weight_decay * rp[i]);
        }
    }
    gp = download(P, n);
    float *gm = download(M, n), *gvv = download(VV, n);
    /* The update is lr-sized and sensitive to sqrt(vh) near 0; compare absolute to lr. */
    expect_close("adam param", gp, rp, NULL, n, 1e-5, 1e-5 * ap.lr * steps);
    expect_close("adam m", gm, rm, NULL, n, 1e-4, 1e-7);
    expect_close("adam v", gvv, ra, NULL, n, 1e-4, 1e-9);
    free(gp), free(gm), free(gvv), free(zeros);
    jz_kbuf_free(P), jz_kbuf_free(M), jz_kbuf_free(VV), jz_kbuf_free(G);
    free(p), free(v0), free(g[0]), free(g[1]), free(g[2]);
    free(rp), free(rv), free(rm), free(ra);
}

static void test_heat(void **state)
{
    struct jz_error e = {0};
    const float alpha = 0.2f;
    const int steps = 4;
    /* 2D */
    {
        const size_t nx = 37, ny = 29, n = nx * ny;
        float *u = rand_vec(n, 0, 100);
        double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        for (size_t i = 0; i < n; i++)
            a[i] = u[i];
        jz_kbuf_t *U = upload(u, n * 4), *W = poisoned(n);
        for (int s = 0; s < steps; s++) {
            ok(jz_k_heat2d_step(dev, nx, ny, alpha, U, W, &e), &e);
            for (size_t y = 0; y < ny; y++)
                for (size_t x = 0; x < nx; x++) {
                    size_t i = y * nx + x;
                    b[i] = (x == 0 || y == 0 || x == nx - 1 || y == ny - 1)
                               ? a[i]
                               : a[i] + alpha * (a[i - 1] + a[i + 1] + a[i - nx] + a[i + nx] -
                                                 4 * a[i]);
                }
            double *t = a;
            a = b, b = t;
            jz_kbuf_t *tb = U;
            U = W, W = tb;
        }
        float *got = download(U, n);
        expect_close("heat2d", got, a, NULL, n, 1e-5, 1e-4);
        free(u), free(a), free(b), free(got);
        jz_kbuf_free(U), jz_kbuf_free(W);
    }
    /* A grid too large for the cache (16 MiB): the cpu backend switches to streaming stores. */
    {
        const size_t nx = 4099, ny = 1025, n = nx * ny;
        float *u = rand_vec(n, 0, 100);
        double *ref = malloc(n * sizeof *ref);
        for (size_t y = 0; y < ny; y++)
            for (size_t x = 0; x < nx; x++) {
                size_t i = y * nx + x;
                ref[i] = (x == 0 || y == 0 || x == nx - 1 || y == ny - 1)
                             ? u[i]
                             : u[i] + (double)alpha * ((double)u[i - 1] + u[i + 1] + u[i - nx] +
                                                       u[i + nx] - 4.0 * u[i]);
            }
        jz_kbuf_t *U = upload(u, n * 4), *W = poisoned(n);
        ok(jz_k_heat2d_step(dev, nx, ny, alpha, U, W, &e), &e);
        float *got = download(W, n);
        expect_close("heat2d large", got, ref, NULL, n, 1e-5, 1e-4);
        free(u), free(ref), free(got);
        jz_kbuf_free(U), jz_kbuf_free(W);
    }
    /* 3D: a small grid over several steps, and one above the streaming-store threshold. */
    const size_t dims[2][3] = {{13, 11, 9}, {163, 161, 165}};
    for (int g = 0; g < 2; g++) {
        const size_t nx = dims[g][0], ny = dims[g][1], nz = dims[g][2], n = nx * ny * nz,
                     pl = nx * ny;
        const int steps3 = g ? 1 : steps;
        const float a3 = 0.15f;
        float *u = rand_vec(n, 0, 100);
        double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        for (size_t i = 0; i < n; i++)
            a[i] = u[i];
        jz_kbuf_t *U = upload(u, n * 4), *W = poisoned(n);
        for (int s = 0; s < steps3; s++) {
            ok(jz_k_heat3d_step(dev, nx, ny, nz, a3, U, W, &e), &e);
            for (size_t z = 0; z < nz; z++)
                for (size_t y = 0; y < ny; y++)
                    for (size_t x = 0; x < nx; x++) {
                        size_t i = (z * ny + y) * nx + x;
                        bool edge =
                            x == 0 || y == 0 || z == 0 || x == nx - 1 || y == ny - 1 || z == nz - 1;
                        b[i] = edge ? a[i]
                                    : a[i] + a3 * (a[i - 1] + a[i + 1] + a[i - nx] + a[i + nx] +
                                                   a[i - pl] + a[i + pl] - 6 * a[i]);
                    }
            double *t = a;
            a = b, b = t;
            jz_kbuf_t *tb = U;
            U = W, W = tb;
        }
        float *got = download(U, n);
        expect_close("heat3d", got, a, NULL, n, 1e-5, 1e-4);
        free(u), free(a), free(b), free(got);
        jz_kbuf_free(U), jz_kbuf_free(W);
    }
}

static void test_nbody(void **state)
{
    const size_t n = 131;
    const float soft = 0.05f, dt = 0.01f;
    struct jz_error e = {0};
    float *pos = rand_vec(4 * n, -1, 1), *vel = rand_vec(4 * n, -0.1f, 0.1f);
    for (size_t i = 0; i < n; i++)
        pos[4 * i + 3] = rndf(0.5f, 2.0f);
    double *ra = malloc(4 * n * sizeof *ra), *sa = malloc(4 * n * sizeof *sa);
    for (size_t i = 0; i < n; i++) {
        double acc[3] = {0}, sc[3] = {0};
        for (size_t j = 0; j < n; j++) {
            double d[3], r2 = (double)soft * soft;
            for (int k = 0; k < 3; k++)
                d[k] = (double)pos[4 * j + k] - pos[4 * i + k], r2 += d[k] * d[k];
            double s = pos[4 * j + 3] / (r2 * sqrt(r2));
            for (int k = 0; k < 3; k++)
                acc[k] += s * d[k], sc[k] += fabs(s * d[k]);
        }
        for (int k = 0; k < 3; k++)
            ra[4 * i + k] = acc[k], sa[4 * i + k] = sc[k];
        ra[4 * i + 3] = 0, sa[4 * i + 3] = 0;
    }
    jz_kbuf_t *P = upload(pos, 4 * n * 4), *V = upload(vel, 4 * n * 4), *A = poisoned(4 * n);
    ok(jz_k_nbody_forces(dev, n, soft, P, A, &e), &e);
    float *acc = download(A, 4 * n);
    /* rsqrt-based kernels carry ~1e-6 relative error per term. */
    expect_close("nbody acc", acc, ra, sa, 4 * n, 2e-5, 1e-6);
    ok(jz_k_nbody_leapfrog(dev, n, dt, P, V, A, &e), &e);
    float *gp = download(P, 4 * n), *gv = download(V, 4 * n);
    double *rp = malloc(4 * n * sizeof *rp), *rv = malloc(4 * n * sizeof *rv);
    for (size_t i = 0; i < 4 * n; i++) {
        bool w = i % 4 == 3;
        rv[i] = w ? vel[i] : (double)vel[i] + (double)dt * acc[i];
        rp[i] = w ? pos[i] : (double)pos[i] + (double)dt * rv[i];
    }
    expect_close("leapfrog vel", gv, rv, NULL, 4 * n, 1e-6, 1e-7);
    expect_close("leapfrog pos", gp, rp, NULL, 4 * n, 1e-6, 1e-7);
    free(pos), free(vel), free(ra), free(sa), free(acc), free(gp), free(gv), free(rp), free(rv);
    jz_kbuf_free(P), jz_kbuf_free(V), jz_kbuf_free(A);
}

/* The reference's own boundary mapping (jz_k_heat*_step_bc in kernels.h): a ghost on a boundary
 * face stands for the interior cell it mirrors (Neumann) or repeats (periodic). */
static size_t ref_src(size_t i, size_t n, int bc, bool lo_is_halo, bool hi_is_halo)
{
    if (bc == JZ_KBC_NEUMANN)
        return i == 0 && !lo_is_halo ? 1 : i == n - 1 && !hi_is_halo ? n - 2 : i;
    if (bc == JZ_KBC_PERIODIC)
        return i == 0 && !lo_is_halo ? n - 2 : i == n - 1 && !hi_is_halo ? 1 : i;
    return i;
}

/* One float64 step of the _bc stencils on an nx x ny x nz grid (nz == 1: 2D). */
static void ref_heat_bc(size_t nx, size_t ny, size_t nz, double alpha, int bc, unsigned halo,
                        const double *a, double *b)
{
    const size_t n[3] = {nx, ny, nz};
    const int axes = nz > 1 ? 3 : 2;
    for (size_t z = 0; z < nz; z++)
        for (size_t y = 0; y < ny; y++)
            for (size_t x = 0; x < nx; x++) {
                size_t c[3] = {x, y, z}, m[3] = {x, y, z};
                size_t i = (z * ny + y) * nx + x;
                bool copy = false;
                for (int k = 0; k < axes; k++) {
                    bool lh = halo & (1u << (2 * k)), hh = halo & (2u << (2 * k));
                    bool lo = c[k] == 0, hi = c[k] == n[k] - 1;
                    if ((lo && lh) || (hi && hh) || (bc == JZ_KBC_DIRICHLET && (lo || hi)))
                        copy = true;
                    m[k] = ref_src(c[k], n[k], bc, lh, hh);
                }
                if (copy) {
                    b[i] = a[i];
                    continue;
                }
                size_t mi = (m[2] * ny + m[1]) * nx + m[0];
                double s = 0;
                for (int k = 0; k < axes; k++) {
                    bool lh = halo & (1u << (2 * k)), hh = halo & (2u << (2 * k));
                    for (int sgn = -1; sgn <= 1; sgn += 2) {
                        size_t q[3] = {m[0], m[1], m[2]};
                        q[k] = ref_src(m[k] + (size_t)sgn, n[k], bc, lh, hh);
                        s += a[(q[2] * ny + q[1]) * nx + q[0]];
                    }
                }
                b[i] = a[mi] + alpha * (s - 2.0 * axes * a[mi]);
            }
}

/* Every boundary mode in 2D and 3D, with no halo, a halo on one side of the slowest axis and on
 * both, over a few steps from random fields (ghosts of the input are random too: Neumann and
 * periodic must not read them). */
static void test_heat_bc(void **state)
{
    struct jz_error e = {0};
    const size_t sizes[2][3] = {{23, 17, 1}, {11, 9, 7}};
    for (int g = 0; g < 2; g++) {
        const size_t nx = sizes[g][0], ny = sizes[g][1], nz = sizes[g][2], n = nx * ny * nz;
        const bool is3d = nz > 1;
        const unsigned lo = is3d ? JZ_KFACE_ZLO : JZ_KFACE_YLO;
        const unsigned hi = is3d ? JZ_KFACE_ZHI : JZ_KFACE_YHI;
        const unsigned halos[4] = {0, lo, hi, lo | hi};
        const float alpha = is3d ? 0.15f : 0.22f;
        for (int bc = 0; bc <= 2; bc++)
            for (int hm = 0; hm < 4; hm++) {
                unsigned halo = halos[hm];
                if (bc == JZ_KBC_PERIODIC && (hm == 1 || hm == 2)) {
                    jz_kbuf_t *U = poisoned(n), *W = poisoned(n);
                    int rc = is3d ? jz_k_heat3d_step_bc(dev, nx, ny, nz, alpha, bc, halo, U, W, &e)
                                  : jz_k_heat2d_step_bc(dev, nx, ny, alpha, bc, halo, U, W, &e);
                    assert_int_equal(rc, JZ_EINVAL); /* one-sided halo on a periodic axis */
                    jz_kbuf_free(U), jz_kbuf_free(W);
                    continue;
                }
                float *u = rand_vec(n, 0, 100);
                double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
                for (size_t i = 0; i < n; i++)
                    a[i] = u[i];
                jz_kbuf_t *U = upload(u, n * 4), *W = NULL;
                for (int s = 0; s < 3; s++) {
                    W = poisoned(n);
                    ok(is3d ? jz_k_heat3d_step_bc(dev, nx, ny, nz, alpha, bc, halo, U, W, &e)
                            : jz_k_heat2d_step_bc(dev, nx, ny, alpha, bc, halo, U, W, &e),
                       &e);
                    ref_heat_bc(nx, ny, nz, alpha, bc, halo, a, b);
                    double *t = a;
                    a = b, b = t;
                    jz_kbuf_free(U);
                    U = W;
                }
                float *got = download(U, n);
                char what[64];
                snprintf(what, sizeof what, "heat%dd bc %d halo 0x%x", is3d ? 3 : 2, bc, halo);
                expect_close(what, got, a, NULL, n, 1e-5, 1e-4);
                free(u), free(a), free(b), free(got);
                jz_kbuf_free(U);
            }
    }
    /* A grid above the cpu backend's streaming-store threshold (16 MiB), where the row loops
     * use non-temporal stores between the mapped x ends. */
    for (int bc = JZ_KBC_NEUMANN; bc <= JZ_KBC_PERIODIC; bc++) {
        const size_t nx = 4099, ny = 1025, n = nx * ny;
        const unsigned halo = bc == JZ_KBC_NEUMANN ? JZ_KFACE_YHI : 0;
        float *u = rand_vec(n, 0, 100);
        double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        for (size_t i = 0; i < n; i++)
            a[i] = u[i];
        jz_kbuf_t *U = upload(u, n * 4), *W = poisoned(n);
        ok(jz_k_heat2d_step_bc(dev, nx, ny, 0.2f, bc, halo, U, W, &e), &e);
        ref_heat_bc(nx, ny, 1, 0.2f, bc, halo, a, b);
        float *got = download(W, n);
        expect_close("heat2d bc large", got, b, NULL, n, 1e-5, 1e-4);
        free(u), free(a), free(b), free(got);
        jz_kbuf_free(U), jz_kbuf_free(W);
    }
    /* The same grid as two slabs with halo faces gives the whole grid's owned rows bit for bit,
     * although the whole grid takes the cpu backend's streaming path and the slabs do not. */
    for (int bc = 0; bc <= 2; bc++) {
        const size_t nx = 4099, ny = 1025, n = nx * ny, m = ny / 2, rb = nx * 4;
        float *u = rand_vec(n, 0, 100);
        jz_kbuf_t *U = upload(u, n * 4), *W = poisoned(n);
        ok(jz_k_heat2d_step_bc(dev, nx, ny, 0.2f, bc, 0, U, W, &e), &e);
        float *whole = download(W, n);
        bool per = bc == JZ_KBC_PERIODIC;
        /* slab A: rows [0, m] (row m a halo); slab B: rows [m-1, ny) (row m-1 a halo); with a
         * periodic boundary the ends are halos too, filled as the exchange would */
        const size_t na = m + 1, nb = ny - m + 1;
        float *ha = malloc(na * rb), *hb = malloc(nb * rb);
        memcpy(ha, u, na * rb);
        memcpy(hb, u + (m - 1) * nx, nb * rb);
        if (per) {
            memcpy(ha, u + (ny - 2) * nx, rb);
            memcpy(hb + (nb - 1) * nx, u + nx, rb);
        }
        unsigned lo_h = per ? JZ_KFACE_YLO : 0, hi_h = per ? JZ_KFACE_YHI : 0;
        jz_kbuf_t *A = upload(ha, na * rb), *AW = poisoned(na * nx);
        jz_kbuf_t *B = upload(hb, nb * rb), *BW = poisoned(nb * nx);
        ok(jz_k_heat2d_step_bc(dev, nx, na, 0.2f, bc, lo_h | JZ_KFACE_YHI, A, AW, &e), &e);
        ok(jz_k_heat2d_step_bc(dev, nx, nb, 0.2f, bc, JZ_KFACE_YLO | hi_h, B, BW, &e), &e);
        float *ga = download(AW, na * nx), *gb = download(BW, nb * nx);
        size_t a0 = per ? 1 : 0, b1 = per ? ny - 1 : ny;
        for (size_t y = a0; y < m; y++)
            if (memcmp(ga + y * nx, whole + y * nx, rb) != 0)
                fail_msg("bc %d: slab A row %zu differs from the whole grid", bc, y);
        for (size_t y = m; y < b1; y++)
            if (memcmp(gb + (y - m + 1) * nx, whole + y * nx, rb) != 0)
                fail_msg("bc %d: slab B row %zu differs from the whole grid", bc, y);
        /* halo rows come back as they went in */
        assert_memory_equal(ga + m * nx, ha + m * nx, rb);
        assert_memory_equal(gb, hb, rb);
        free(u), free(whole), free(ha), free(hb), free(ga), free(gb);
        jz_kbuf_free(U), jz_kbuf_free(W), jz_kbuf_free(A), jz_kbuf_free(AW);
        jz_kbuf_free(B), jz_kbuf_free(BW);
    }
    /* Dirichlet without halos is the plain step, bit for bit. */
    {
        const size_t nx = 19, ny = 13, n = nx * ny;
        float *u = rand_vec(n, 0, 100);
        jz_kbuf_t *U = upload(u, n * 4), *W1 = poisoned(n), *W2 = poisoned(n);
        ok(jz_k_heat2d_step(dev, nx, ny, 0.2f, U, W1, &e), &e);
        ok(jz_k_heat2d_step_bc(dev, nx, ny, 0.2f, JZ_KBC_DIRICHLET, 0, U, W2, &e), &e);
        float *g1 = download(W1, n), *g2 = download(W2, n);
        assert_memory_equal(g1, g2, n * 4);
        /* argument checks */
        assert_int_equal(jz_k_heat2d_step_bc(dev, nx, ny, 0.2f, (enum jz_kbc)3, 0, U, W1, &e),
                         JZ_EINVAL);
        assert_int_equal(jz_k_heat2d_step_bc(dev, nx, ny, 0.2f, JZ_KBC_NEUMANN, JZ_KFACE_ZLO, U,
                                             W1, &e),
                         JZ_EINVAL);
        assert_int_equal(jz_k_heat2d_step_bc(dev, nx, ny, 0.2f, JZ_KBC_NEUMANN, 0, U, U, &e),
                         JZ_EINVAL);
        assert_int_equal(jz_k_heat3d_step_bc(dev, nx, ny, 1, 0.1f, JZ_KBC_NEUMANN, 0, U, W1, &e),
                         JZ_EINVAL);
        free(u), free(g1), free(g2);
        jz_kbuf_free(U), jz_kbuf_free(W1), jz_kbuf_free(W2);
    }
}

/* Ranges of bodies give the same bits as the whole, leave the rest of acc alone, and are checked
 * against n. */
static void test_nbody_range(void **state)
{
    const size_t n = 131;
    const float soft = 0.05f;
    struct jz_error e = {0};
    float *pos = rand_vec(4 * n, -1, 1);
    for (size_t i = 0; i < n; i++)
        pos[4 * i + 3] = rndf(0.5f, 2.0f);
    jz_kbuf_t *P = upload(pos, 4 * n * 4), *A = poisoned(4 * n);
    ok(jz_k_nbody_forces(dev, n, soft, P, A, &e), &e);
    float *whole = download(A, 4 * n);
    const size_t ranges[][2] = {{0, 1}, {n - 1, 1}, {0, n}, {17, 50}, {64, 67}, {3, 16}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        size_t first = ranges[r][0], count = ranges[r][1];
        jz_kbuf_t *B = poisoned(4 * n);
        ok(jz_k_nbody_forces_range(dev, n, first, count, soft, P, B, &e), &e);
        float *got = download(B, 4 * n);
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < 4; k++) {
                float g = got[4 * i + k];
                if (i >= first && i < first + count) {
                    if (memcmp(&g, &whole[4 * i + k], 4) != 0)
                        fail_msg("range [%zu,+%zu) body %zu[%d]: %.9g vs whole %.9g", first,
                                 count, i, k, g, whole[4 * i + k]);
                } else if (!isnan(g)) {
                    fail_msg("range [%zu,+%zu) wrote body %zu outside it", first, count, i);
                }
            }
        free(got);
        jz_kbuf_free(B);
    }
    /* acc needs only first + count bodies */
    jz_kbuf_t *S = poisoned(4 * 10);
    ok(jz_k_nbody_forces_range(dev, n, 6, 4, soft, P, S, &e), &e);
    float *gs = download(S, 40);
    assert_memory_equal(gs + 24, whole + 24, 16 * 4);
    assert_true(isnan(gs[0]) && isnan(gs[23]));
    assert_int_equal(jz_k_nbody_forces_range(dev, n, 6, 5, soft, P, S, &e), JZ_EINVAL);
    assert_int_equal(jz_k_nbody_forces_range(dev, n, n, 1, soft, P, A, &e), JZ_ERANGE);
    assert_int_equal(jz_k_nbody_forces_range(dev, n, 100, 32, soft, P, A, &e), JZ_ERANGE);
    assert_int_equal(jz_k_nbody_forces_range(dev, n, 0, 0, soft, P, A, &e), JZ_EINVAL);
    free(pos), free(whole), free(gs);
    jz_kbuf_free(P), jz_kbuf_free(A), jz_kbuf_free(S);
}

/* Philox4x32-10 known-answer vectors from the Random123 distribution (kat_vectors). */
static void test_philox_kat(void **state)
{
    uint32_t c[4] = {0, 0, 0, 0};
    jzk_philox(c, 0, 0);
    assert_true(c[0] == 0x6627e8d5u && c[1] == 0xe169c58du && c[2] == 0xbc57ac4cu &&
                c[3] == 0x9b00dbd8u);
    uint32_t d[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    jzk_philox(d, 0xffffffffu, 0xffffffffu);
    assert_true(d[0] == 0x408f276du && d[1] == 0x41c83b0eu && d[2] == 0xa20bc7c6u &&
                d[3] == 0x6d5451fdu);
}

static void test_rand(void **state)
{
    const size_t n = 10007;
    const uint64_t seed = rnd64(), off = rnd64() % 1000;
    struct jz_error e = {0};
    jz_kbuf_t *U = poisoned(n), *N = poisoned(n), *U2 = poisoned(n - 5);
    ok(jz_k_rand_uniform(dev, n, seed, off, -2.0f, 3.0f, U, &e), &e);
    ok(jz_k_rand_normal(dev, n, seed, off, 1.0f, 2.0f, N, &e), &e);
    /* The stream continues where it left off: a piece starting at off + 5. */
    ok(jz_k_rand_uniform(dev, n - 5, seed, off + 5, -2.0f, 3.0f, U2, &e), &e);
    float *u = download(U, n), *nn = download(N, n), *u2 = download(U2, n - 5);
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t el = off + i;
        float v[4];
        jzk_philox_block(el / 4, seed, JZK_DIST_UNIFORM, -2.0f, 3.0f, v);
        if (memcmp(&u[i], &v[el % 4], 4) != 0)
            fail_msg("uniform[%zu] = %.9g, reference %.9g (must be bit-identical)", i, u[i],
                     v[el % 4]);
        if (!(u[i] >= -2.0f && u[i] < 3.0f))
            fail_msg("uniform[%zu] = %g outside [-2, 3)", i, u[i]);
        if (i >= 5 && memcmp(&u2[i - 5], &u[i], 4) != 0)
            fail_msg("uniform stream differs when produced in pieces at %zu", i);
        jzk_philox_block(el / 4, seed, JZK_DIST_NORMAL, 1.0f, 2.0f, v);
        if (!(fabs(nn[i] - v[el % 4]) <= 1e-5 * (1 + fabs(v[el % 4]))))
            fail_msg("normal[%zu] = %.9g, reference %.9g", i, nn[i], v[el % 4]);
        mean += nn[i];
    }
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        var += (nn[i] - mean) * (nn[i] - mean);
    var /= (double)(n - 1);
    /* 10007 samples of N(1, 4): the mean is within 0.1 and the variance within 0.4 at > 6 sigma. */
    assert_true(fabs(mean - 1.0) < 0.12);
    assert_true(fabs(var - 4.0) < 0.5);
    free(u), free(nn), free(u2);
    jz_kbuf_free(U), jz_kbuf_free(N), jz_kbuf_free(U2);
}

static void test_buffers(void **state)
{
    struct jz_error e = {0};
    const size_t n = 1000;
    float *x = rand_vec(n, -1, 1);
    jz_kbuf_t *A = upload(x, n * 4), *B = poisoned(n);
    ok(jz_kbuf_copy(B, 40, A, 0, 400, &e), &e); /* elements 10..109 of B = 0..99 of A */
    ok(jz_kbuf_copy(B, 0, A, 3996, 4, &e), &e); /* B[0] = A[999] */
    float *b = download(B, n);
    assert_memory_equal(&b[10], &x[0], 400);
    assert_memory_equal(&b[0], &x[999], 4);
    assert_true(isnan(b[1]) && isnan(b[110]));
    float part[3];
    ok(jz_kbuf_read(A, 8, part, sizeof part, &e), &e);
    assert_memory_equal(part, &x[2], sizeof part);
    assert_int_equal(jz_kbuf_read(A, n * 4 - 4, part, 8, &e), JZ_ERANGE);
    assert_int_equal(jz_kbuf_write(A, SIZE_MAX, part, 8, &e), JZ_ERANGE);
    assert_int_equal(jz_kbuf_copy(A, 0, A, 4, 8, &e), JZ_EINVAL);
    assert_int_equal(jz_kbuf_size(A), n * 4);
    assert_ptr_equal(jz_kbuf_device(A), dev);
    assert_int_equal(jz_kdev_sync(dev, &e), 0);
    free(x), free(b);
    jz_kbuf_free(A), jz_kbuf_free(B);
}

/* Collectives over the backend's devices (one per ordinal, NCCL on CUDA), then over two handles
 * of device 0 (the host implementation): sums and broadcasts against the float64 reference. */
static void comm_case(jz_kdev_t **devs, size_t nd, bool want_nccl)
{
    const size_t n = 4097;
    struct jz_error e = {0};
    jz_kcomm_t *c;
    jz_kbuf_t *b[8];
    float *h[8];
    ok(jz_kcomm_create(devs, nd, &c, &e), &e);
    assert_int_equal(jz_kcomm_is_nccl(c), want_nccl);
    double *ref = calloc(n, sizeof *ref), *sc = calloc(n, sizeof *sc);
    for (size_t r = 0; r < nd; r++) {
        h[r] = rand_vec(n, -1, 1);
        ok(jz_kbuf_alloc(devs[r], n * 4, &b[r], &e), &e);
        ok(jz_kbuf_write(b[r], 0, h[r], n * 4, &e), &e);
        for (size_t i = 0; i < n; i++)
            ref[i] += h[r][i], sc[i] += fabs(h[r][i]);
    }
    ok(jz_kcomm_allreduce_sum(c, b, n, &e), &e);
    for (size_t r = 0; r < nd; r++) {
        float *got = malloc(n * 4);
        ok(jz_kbuf_read(b[r], 0, got, n * 4, &e), &e);
        expect_close("allreduce", got, ref, sc, n, 1e-6, 1e-7);
        free(got);
    }
    size_t root = nd - 1;
    ok(jz_kbuf_write(b[root], 0, h[0], n * 4, &e), &e);
    ok(jz_kcomm_broadcast(c, b, n, root, &e), &e);
    for (size_t r = 0; r < nd; r++) {
        float *got = malloc(n * 4);
        ok(jz_kbuf_read(b[r], 0, got, n * 4, &e), &e);
        assert_memory_equal(got, h[0], n * 4);
        free(got);
    }
    jz_kcomm_destroy(c);
    for (size_t r = 0; r < nd; r++)
        jz_kbuf_free(b[r]), free(h[r]);
    free(ref), free(sc);
}

static void test_comm(void **state)
{
    struct jz_error e = {0};
    size_t count = 0;
    ok(jz_kdev_count(JZ_TEST_BACKEND, &count, &e), &e);
    jz_kdev_t *devs[8];
    size_t nd = count < 8 ? count : 8;
    for (size_t i = 0; i < nd; i++)
        ok(jz_kdev_open(JZ_TEST_BACKEND, (int)i, &devs[i], &e), &e);
#ifdef JZ_TEST_NO_NCCL
    comm_case(devs, nd, false);
#else
    comm_case(devs, nd, JZ_TEST_BACKEND == JZ_KBACKEND_CUDA);
#endif
    jz_kdev_t *second;
    ok(jz_kdev_open(JZ_TEST_BACKEND, 0, &second, &e), &e);
    jz_kdev_t *pair[2] = {devs[0], second};
    comm_case(pair, 2, false);
    jz_kdev_close(second);
    for (size_t i = 0; i < nd; i++)
        jz_kdev_close(devs[i]);
}

int main(void)
{
    struct jz_error e = {0};
    size_t count = 0;
    if (jz_kdev_count(JZ_TEST_BACKEND, &count, &e) != 0 || count == 0) {
        printf("no %s device: skipping\n", jz_kbackend_name(JZ_TEST_BACKEND));
        return 77;
    }
    if (jz_kdev_open(JZ_TEST_BACKEND, 0, &dev, &e) != 0) {
        printf("cannot open %s device 0: %s\n", jz_kbackend_name(JZ_TEST_BACKEND), e.msg);
        return 1;
    }
    const char *s = getenv("JZ_TEST_SEED");
    rng_state = s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    printf("backend %s, device '%s', JZ_TEST_SEED=%llu\n", jz_kbackend_name(JZ_TEST_BACKEND),
           jz_kdev_name(dev), (unsigned long long)rng_state);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffers),       cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemm_paths),    cmocka_unit_test(test_bias_act),
        cmocka_unit_test(test_dense_forward), cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_reductions),    cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_optimizers),    cmocka_unit_test(test_heat),
        cmocka_unit_test(test_nbody),         cmocka_unit_test(test_philox_kat),
        cmocka_unit_test(test_rand),          cmocka_unit_test(test_comm),
        cmocka_unit_test(test_heat_bc),       cmocka_unit_test(test_nbody_range),
    };
    int rc = cmocka_run_group_tests_name(jz_kbackend_name(JZ_TEST_BACKEND), tests, NULL, NULL);
    jz_kdev_close(dev);
    return rc;
}
