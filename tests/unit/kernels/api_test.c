/* The compute layer's API contract on the cpu backend: backend names, device enumeration,
 * argument and size checks (errors leave outputs untouched), and the host collectives. */
#include <jazari/kernels.h>

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_backends(void **state)
{
    struct jz_error e = {0};
    enum jz_kbackend b;
    assert_int_equal(jz_kbackend_parse("cuda", &b, &e), 0);
    assert_int_equal(b, JZ_KBACKEND_CUDA);
    assert_int_equal(jz_kbackend_parse("opencl", &b, &e), 0);
    assert_int_equal(b, JZ_KBACKEND_OPENCL);
    assert_int_equal(jz_kbackend_parse("cpu", &b, &e), 0);
    assert_int_equal(b, JZ_KBACKEND_CPU);
    assert_int_equal(jz_kbackend_parse("tpu", &b, &e), JZ_EINVAL);
    assert_int_equal(e.code, JZ_EINVAL);
    assert_non_null(strstr(e.msg, "tpu"));
    assert_string_equal(jz_kbackend_name(JZ_KBACKEND_OPENCL), "opencl");
    assert_true(jz_kbackend_built(JZ_KBACKEND_CPU));
#ifdef JZ_TEST_HAVE_CUDA
    assert_true(jz_kbackend_built(JZ_KBACKEND_CUDA));
#endif

    size_t n = 99;
    assert_int_equal(jz_kdev_count(JZ_KBACKEND_CPU, &n, &e), 0);
    assert_int_equal(n, 1);
    /* CUDA: whatever this machine has, counting must work (0 without a GPU or driver). */
    assert_int_equal(jz_kdev_count(JZ_KBACKEND_CUDA, &n, &e), 0);
    assert_int_equal(jz_kdev_count((enum jz_kbackend)7, &n, &e), JZ_EINVAL);

    jz_kdev_t *d = (jz_kdev_t *)0x1;
    assert_int_equal(jz_kdev_open(JZ_KBACKEND_CPU, 1, &d, &e), JZ_ENOENT);
    assert_ptr_equal(d, (jz_kdev_t *)0x1); /* not written on failure */
    assert_int_equal(jz_kdev_open_name("nope", 0, &d, &e), JZ_EINVAL);
    assert_int_equal(jz_kdev_open_name("cpu", 0, &d, &e), 0);
    assert_int_equal(jz_kdev_backend(d), JZ_KBACKEND_CPU);
    assert_int_equal(jz_kdev_ordinal(d), 0);
    assert_true(strlen(jz_kdev_name(d)) > 0);
    assert_true(jz_kdev_memory(d) > 0);
    jz_kdev_close(d);
    jz_kdev_close(NULL);
    jz_kbuf_free(NULL);
    jz_kcomm_destroy(NULL);
}

static void test_checks(void **state)
{
    struct jz_error e = {0};
    jz_kdev_t *d, *d2;
    assert_int_equal(jz_kdev_open(JZ_KBACKEND_CPU, 0, &d, &e), 0);
    assert_int_equal(jz_kdev_open(JZ_KBACKEND_CPU, 0, &d2, &e), 0);
    jz_kbuf_t *a, *b, *c, *other, *out = (jz_kbuf_t *)0x1;
    assert_int_equal(jz_kbuf_alloc(d, 0, &out, &e), JZ_EINVAL);
    assert_int_equal(jz_kbuf_alloc(d, JZ_KBUF_MAX_BYTES + 1, &out, &e), JZ_ELIMIT);
    assert_ptr_equal(out, (jz_kbuf_t *)0x1);
    assert_int_equal(jz_kbuf_alloc(d, 64 * 4, &a, &e), 0);
    assert_int_equal(jz_kbuf_alloc(d, 64 * 4, &b, &e), 0);
    assert_int_equal(jz_kbuf_alloc(d, 63 * 4, &c, &e), 0);
    assert_int_equal(jz_kbuf_alloc(d2, 64 * 4, &other, &e), 0);
    assert_non_null(jz_kbuf_host_ptr(a));

    float sentinel[64];
    for (int i = 0; i < 64; i++)
        sentinel[i] = (float)i;
    assert_int_equal(jz_kbuf_write(c, 0, sentinel, 63 * 4, &e), 0);

    /* 8x8 GEMM into a 63-element C: too small, nothing written. */
    memset(&e, 0, sizeof e);
    assert_int_equal(jz_k_gemm(d, false, false, 8, 8, 8, 1, a, 8, b, 8, 0, c, 8, &e), JZ_EINVAL);
    assert_int_equal(e.code, JZ_EINVAL);
    assert_non_null(strstr(e.msg, "C"));
    assert_memory_equal(jz_kbuf_host_ptr(c), sentinel, 63 * 4);
    /* lda smaller than k */
    assert_int_equal(jz_k_gemm(d, false, false, 8, 8, 8, 1, a, 7, b, 8, 0, b, 8, &e), JZ_EINVAL);
    /* buffers of another device handle */
    assert_int_equal(jz_k_gemm(d, false, false, 8, 8, 8, 1, a, 8, other, 8, 0, b, 8, &e),
                     JZ_EINVAL);
    assert_int_equal(jz_kbuf_copy(a, 0, other, 0, 4, &e), JZ_EINVAL);
    /* sizes beyond the limit, and products that overflow */
    assert_int_equal(jz_k_fill(d, JZ_K_MAX_ELEMS + 1, 0, a, &e), JZ_ELIMIT);
    assert_int_equal(
        jz_k_bias_act_forward(d, JZ_KACT_RELU, (size_t)1 << 20, (size_t)1 << 20, a, NULL, b, &e),
        JZ_ELIMIT);
    assert_int_equal(jz_k_fill(d, 0, 0, a, &e), JZ_EINVAL);
    assert_int_equal(jz_k_bias_act_forward(d, (enum jz_kact)9, 2, 2, a, NULL, b, &e), JZ_EINVAL);
    assert_int_equal(jz_k_heat2d_step(d, 2, 8, 0.1f, a, b, &e), JZ_EINVAL);
    assert_int_equal(jz_k_heat2d_step(d, 8, 8, 0.1f, a, a, &e), JZ_EINVAL);
    assert_int_equal(jz_k_heat2d_step(d, 8, 8, NAN, a, b, &e), JZ_EINVAL);
    assert_int_equal(jz_k_nbody_forces(d, 16, 0.0f, a, b, &e), JZ_EINVAL);
    assert_int_equal(jz_k_nbody_forces(d, 17, 0.1f, a, b, &e), JZ_EINVAL);
    assert_int_equal(jz_k_sum(d, 64, a, a, &e), JZ_EINVAL);
    assert_int_equal(jz_k_sgd_update(d, 64, a, a, b, 0.1f, 0.9f, 0, &e), JZ_EINVAL);
    struct jz_adam_params p = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    assert_int_equal(jz_k_adam_update(d, 16, a, b, c, other, &p, &e), JZ_EINVAL);
    jz_kbuf_t *m4;
    assert_int_equal(jz_kbuf_alloc(d, 64 * 4, &m4, &e), 0);
    p.step = 0;
    assert_int_equal(jz_k_adam_update(d, 16, a, b, c, m4, &p, &e), JZ_EINVAL);
    p.step = 1;
    p.beta1 = 1.0f;
    assert_int_equal(jz_k_adam_update(d, 16, a, b, c, m4, &p, &e), JZ_EINVAL);
    assert_int_equal(jz_k_softmax_xent_forward(d, 4, 16, a, b, a, NULL, &e), JZ_EINVAL);
    assert_int_equal(jz_k_rand_uniform(d, 65, 1, 0, 0, 1, a, &e), JZ_EINVAL);
    assert_int_equal(jz_k_rand_normal(d, 64, 1, UINT64_MAX - 10, 0, 1, a, &e), JZ_ERANGE);

    jz_kbuf_free(a), jz_kbuf_free(b), jz_kbuf_free(c), jz_kbuf_free(m4), jz_kbuf_free(other);
    jz_kdev_close(d);
    jz_kdev_close(d2);
}

/* jz_kbuf_wrap_host: the cpu backend computes on the caller's memory in place, frees only the
 * handle, and refuses bad arguments; devices that are not the host's memory refuse it. */
static void test_wrap_host(void **state)
{
    struct jz_error e = {0};
    jz_kdev_t *d;
    assert_int_equal(jz_kdev_open(JZ_KBACKEND_CPU, 0, &d, &e), 0);
    float *mem = malloc(65 * sizeof(float));
    assert_non_null(mem);
    for (int i = 0; i < 65; i++)
        mem[i] = (float)i;
    jz_kbuf_t *w, *out = (jz_kbuf_t *)0x1;
    /* arguments: NULLs, size 0, over the limit, memory not aligned for float */
    assert_int_equal(jz_kbuf_wrap_host(d, NULL, 16, &out, &e), JZ_EINVAL);
    assert_int_equal(jz_kbuf_wrap_host(d, mem, 0, &out, &e), JZ_EINVAL);
    assert_int_equal(jz_kbuf_wrap_host(d, mem, JZ_KBUF_MAX_BYTES + 1, &out, &e), JZ_ELIMIT);
    assert_int_equal(jz_kbuf_wrap_host(d, (char *)mem + 2, 16, &out, &e), JZ_EINVAL);
    assert_non_null(strstr(e.msg, "aligned"));
    assert_ptr_equal(out, (jz_kbuf_t *)0x1); /* not written on failure */

    /* a wrap over floats 1..64 (an offset into the caller's array, as a batch of a dataset) */
    assert_int_equal(jz_kbuf_wrap_host(d, mem + 1, 64 * sizeof(float), &w, &e), 0);
    assert_ptr_equal(jz_kbuf_host_ptr(w), mem + 1);
    assert_int_equal(jz_kbuf_size(w), 64 * sizeof(float));
    /* operations read it where it is and write it in place: 8x8 identity times it */
    jz_kbuf_t *eye, *c;
    assert_int_equal(jz_kbuf_alloc(d, 64 * sizeof(float), &eye, &e), 0);
    assert_int_equal(jz_kbuf_alloc(d, 64 * sizeof(float), &c, &e), 0);
    float id[64] = {0};
    for (int i = 0; i < 8; i++)
        id[i * 8 + i] = 1;
    assert_int_equal(jz_kbuf_write(eye, 0, id, sizeof id, &e), 0);
    assert_int_equal(jz_k_gemm(d, false, false, 8, 8, 8, 1, eye, 8, w, 8, 0, c, 8, &e), 0);
    assert_memory_equal(jz_kbuf_host_ptr(c), mem + 1, 64 * sizeof(float));
    assert_int_equal(jz_k_scale(d, 64, 2.0f, w, &e), 0);
    assert_true(mem[0] == 0.0f && mem[1] == 2.0f && mem[64] == 128.0f); /* mem[0] untouched */
    /* size checks hold for a wrap as for any buffer: 65 floats do not fit in it */
    assert_int_equal(jz_k_fill(d, 65, 0, w, &e), JZ_EINVAL);
    float back[64];
    assert_int_equal(jz_kbuf_read(w, 0, back, sizeof back, &e), 0);
    assert_memory_equal(back, mem + 1, sizeof back);
    jz_kbuf_free(w); /* the handle only: the caller's memory stays valid */
    mem[64] = 7.0f;
    jz_kbuf_free(eye);
    jz_kbuf_free(c);
    jz_kdev_close(d); /* every buffer freed: the device closes (a leaked count would keep it) */

    /* a device that is not the host's memory refuses (PoCL in CI, where built) */
    size_t n = 0;
    if (jz_kdev_count(JZ_KBACKEND_OPENCL, &n, &e) == 0 && n > 0 &&
        jz_kdev_open(JZ_KBACKEND_OPENCL, 0, &d, &e) == 0) {
        assert_int_equal(jz_kbuf_wrap_host(d, mem, 16, &out, &e), JZ_ENOTSUP);
        assert_non_null(strstr(e.msg, "opencl"));
        assert_ptr_equal(out, (jz_kbuf_t *)0x1);
        jz_kdev_close(d);
    }
    free(mem);
}

/* jz_kbuf_write_rows on one device: a gather of `n` rows of `F` floats out of `src_rows`, at a
 * row offset, compared with the rows themselves; the rows around it stay as written before. */
static void check_gather(jz_kdev_t *d, const float *src, size_t src_rows, size_t F, size_t n,
                         uint32_t seed)
{
    struct jz_error e = {0};
    size_t cap = n + 2;
    jz_kbuf_t *buf;
    assert_int_equal(jz_kbuf_alloc(d, cap * F * sizeof(float), &buf, &e), 0);
    float *before = malloc(cap * F * sizeof(float)), *back = malloc(cap * F * sizeof(float));
    uint32_t *rows = malloc((n ? n : 1) * sizeof *rows);
    assert_true(before && back && rows);
    for (size_t i = 0; i < cap * F; i++)
        before[i] = -1.0f - (float)i;
    assert_int_equal(jz_kbuf_write(buf, 0, before, cap * F * sizeof(float), &e), 0);
    for (size_t i = 0; i < n; i++) /* repeats and any order, as a shuffled epoch's slice */
        rows[i] = (uint32_t)((i * 2654435761u + seed) % src_rows);
    assert_int_equal(
        jz_kbuf_write_rows(buf, F * sizeof(float), src, src_rows, F * sizeof(float), rows, n, &e),
        0);
    assert_int_equal(jz_kbuf_read(buf, 0, back, cap * F * sizeof(float), &e), 0);
    assert_memory_equal(back, before, F * sizeof(float));
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(back + (i + 1) * F, src + (size_t)rows[i] * F, F * sizeof(float));
    assert_memory_equal(back + (n + 1) * F, before + (n + 1) * F, F * sizeof(float));
    jz_kbuf_free(buf);
    free(before), free(back), free(rows);
}

/* jz_kbuf_write_rows: batches small enough for one thread and large enough to be split over the
 * pool land row for row; bad rows or ranges are refused before anything is written; other
 * backends (PoCL in CI, where built) get the same rows through their one write. */
static void test_write_rows(void **state)
{
    struct jz_error e = {0};
    const size_t src_rows = 3000, F = 784;
    float *src = malloc(src_rows * F * sizeof(float));
    assert_non_null(src);
    for (size_t i = 0; i < src_rows * F; i++)
        src[i] = (float)i;
    jz_kdev_t *d;
    assert_int_equal(jz_kdev_open(JZ_KBACKEND_CPU, 0, &d, &e), 0);
    check_gather(d, src, src_rows, F, 5, 1);    /* 15 KiB: the calling thread */
    check_gather(d, src, src_rows, F, 128, 7);  /* 392 KiB: split over the pool */
    check_gather(d, src, src_rows, F, 1001, 3); /* chunks that do not divide evenly */
    check_gather(d, src, src_rows, 3, 300, 11); /* rows narrower than a cache line */
    check_gather(d, src, src_rows, F, 0, 1);    /* nothing to write */

    jz_kbuf_t *buf;
    assert_int_equal(jz_kbuf_alloc(d, 4 * F * sizeof(float), &buf, &e), 0);
    float *sentinel = jz_kbuf_host_ptr(buf);
    for (size_t i = 0; i < 4 * F; i++)
        sentinel[i] = 42.0f;
    uint32_t rows[5] = {0, 1, 2, 2999, 3000};
    /* a row past the source, even after good ones: refused, nothing written */
    assert_int_equal(jz_kbuf_write_rows(buf, 0, src, src_rows, F * sizeof(float), rows + 1, 4, &e),
                     JZ_ERANGE);
    assert_int_equal(e.code, JZ_ERANGE);
    assert_non_null(strstr(e.msg, "3000"));
    for (size_t i = 0; i < 4 * F; i++)
        assert_true(sentinel[i] == 42.0f);
    /* five rows into a four-row buffer, four rows at an offset that leaves room for three */
    assert_int_equal(jz_kbuf_write_rows(buf, 0, src, src_rows, F * sizeof(float), rows, 5, &e),
                     JZ_ERANGE);
    assert_int_equal(
        jz_kbuf_write_rows(buf, F * sizeof(float), src, src_rows, F * sizeof(float), rows, 4, &e),
        JZ_ERANGE);
    /* a row count times row size that overflows */
    assert_int_equal(jz_kbuf_write_rows(buf, 0, src, src_rows, SIZE_MAX / 2, rows, 4, &e),
                     JZ_ERANGE);
    /* a source that overlaps the buffer itself: its first row, or rows ending inside it */
    assert_int_equal(jz_kbuf_write_rows(buf, 0, sentinel, 4, F * sizeof(float), rows, 2, &e),
                     JZ_EINVAL);
    jz_kbuf_t *inside; /* a buffer over src's second and third rows */
    assert_int_equal(jz_kbuf_wrap_host(d, src + F, 2 * F * sizeof(float), &inside, &e), 0);
    assert_int_equal(jz_kbuf_write_rows(inside, 0, src, 2, F * sizeof(float), rows, 1, &e),
                     JZ_EINVAL);
    assert_int_equal(jz_kbuf_write_rows(inside, 0, src, 1, F * sizeof(float), rows, 1, &e), 0);
    jz_kbuf_free(inside);
    /* rows of zero bytes: nothing to write */
    assert_int_equal(jz_kbuf_write_rows(buf, 0, src, src_rows, 0, rows, 4, &e), 0);
    /* NULLs */
    assert_int_equal(jz_kbuf_write_rows(NULL, 0, src, src_rows, 4, rows, 1, &e), JZ_EINVAL);
    assert_int_equal(jz_kbuf_write_rows(buf, 0, NULL, src_rows, 4, rows, 1, &e), JZ_EINVAL);
    assert_int_equal(jz_kbuf_write_rows(buf, 0, src, src_rows, 4, NULL, 1, &e), JZ_EINVAL);
    for (size_t i = 0; i < 4 * F; i++)
        assert_true(sentinel[i] == 42.0f);
    jz_kbuf_free(buf);
    jz_kdev_close(d);

    size_t n = 0;
    if (jz_kdev_count(JZ_KBACKEND_OPENCL, &n, &e) == 0 && n > 0 &&
        jz_kdev_open(JZ_KBACKEND_OPENCL, 0, &d, &e) == 0) {
        check_gather(d, src, src_rows, F, 128, 5);
        jz_kdev_close(d);
    }
    free(src);
}

/* Host collectives across three handles: sums and broadcasts match the float64 reference. */
static void test_host_comm(void **state)
{
    struct jz_error e = {0};
    enum { R = 3, N = 1031 };
    jz_kdev_t *d[R];
    jz_kbuf_t *b[R];
    float h[R][N];
    srand(12345);
    for (int r = 0; r < R; r++) {
        assert_int_equal(jz_kdev_open(JZ_KBACKEND_CPU, 0, &d[r], &e), 0);
        assert_int_equal(jz_kbuf_alloc(d[r], N * 4, &b[r], &e), 0);
        for (int i = 0; i < N; i++)
            h[r][i] = (float)rand() / (float)RAND_MAX - 0.5f;
        assert_int_equal(jz_kbuf_write(b[r], 0, h[r], N * 4, &e), 0);
    }
    jz_kcomm_t *c;
    assert_int_equal(jz_kcomm_create(d, 0, &c, &e), JZ_ELIMIT);
    jz_kdev_t *dup[2] = {d[0], d[0]};
    assert_int_equal(jz_kcomm_create(dup, 2, &c, &e), JZ_EINVAL);
    assert_int_equal(jz_kcomm_create(d, R, &c, &e), 0);
    assert_int_equal(jz_kcomm_size(c), R);
    assert_false(jz_kcomm_is_nccl(c));
    assert_int_equal(jz_kcomm_allreduce_sum(c, b, N, &e), 0);
    for (int r = 0; r < R; r++) {
        const float *got = jz_kbuf_host_ptr(b[r]);
        for (int i = 0; i < N; i++) {
            double want = (double)h[0][i] + h[1][i] + h[2][i];
            assert_true(fabs(got[i] - want) <= 1e-6 * (fabs(want) + 1));
        }
        assert_memory_equal(got, jz_kbuf_host_ptr(b[0]), N * 4); /* identical on every rank */
    }
    assert_int_equal(jz_kbuf_write(b[1], 0, h[1], N * 4, &e), 0);
    assert_int_equal(jz_kcomm_broadcast(c, b, N, 1, &e), 0);
    for (int r = 0; r < R; r++)
        assert_memory_equal(jz_kbuf_host_ptr(b[r]), h[1], N * 4);
    assert_int_equal(jz_kcomm_broadcast(c, b, N, 3, &e), JZ_EINVAL);
    assert_int_equal(jz_kcomm_allreduce_sum(c, b, N + 1, &e), JZ_EINVAL);
    jz_kcomm_destroy(c);
    for (int r = 0; r < R; r++) {
        jz_kbuf_free(b[r]);
        jz_kdev_close(d[r]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backends),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_wrap_host),
        cmocka_unit_test(test_write_rows),
        cmocka_unit_test(test_host_comm),
    };
    return cmocka_run_group_tests_name("kernels_api", tests, NULL, NULL);
}
