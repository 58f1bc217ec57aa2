/* The train plugin, loaded from its .so and run by the in-process host on a small Fashion-MNIST
 * subset (written as plain IDX files into a temporary folder). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jazari/kernels.h>

#include "dataset.h"
#include "model.h"
#include "runhost.h"

#define N_TRAIN 3000
#define N_TEST 1000

static char tmpdir[256], datadir[300];
static int run_no;

static void write_idx(const char *path, const float *v, size_t rows, size_t feats, int dims)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char h[4] = {0, 0, 8, (unsigned char)dims};
    fwrite(h, 1, 4, f);
    uint32_t d[3] = {(uint32_t)rows, 28, 28};
    for (int i = 0; i < dims; i++) {
        unsigned char b[4] = {(unsigned char)(d[i] >> 24), (unsigned char)(d[i] >> 16),
                              (unsigned char)(d[i] >> 8), (unsigned char)d[i]};
        fwrite(b, 1, 4, f);
    }
    for (size_t i = 0; i < rows * feats; i++)
        fputc((int)v[i], f);
    fclose(f);
}

static int copy_subset(const char *img, const char *lab, size_t n)
{
    struct jz_dataset ds;
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/%s-idx3-ubyte.gz", JZ_FASHION_MNIST, img);
    snprintf(b, sizeof b, "%s/%s-idx1-ubyte.gz", JZ_FASHION_MNIST, lab);
    if (jz_dataset_load_idx(a, b, &ds, NULL) != 0)
        return -1;
    float *labels = malloc(n * sizeof *labels);
    for (size_t i = 0; i < n; i++)
        labels[i] = (float)ds.y[i];
    snprintf(a, sizeof a, "%s/%s-idx3-ubyte", datadir, img);
    snprintf(b, sizeof b, "%s/%s-idx1-ubyte", datadir, lab);
    write_idx(a, ds.x, n, 784, 3);
    write_idx(b, labels, n, 1, 1);
    free(labels);
    jz_dataset_free(&ds);
    return 0;
}

/* A fresh host in its own folder with the subset and small defaults. */
static void host_new(struct jz_runhost *h)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/run%d", tmpdir, run_no++);
    assert_int_equal(jz_runhost_init(h, JZ_TRAIN_PLUGIN, dir), 0);
    h->quiet = true;
    jz_runhost_set(h, "dataset", datadir);
    jz_runhost_set(h, "layers", "64,32");
    jz_runhost_set(h, "epochs", "3");
    jz_runhost_set(h, "batch_size", "64");
    jz_runhost_set(h, "seed", "7");
}

static void load_model(struct jz_runhost *h, struct jz_mlp *m)
{
    char p[4300];
    jz_runhost_artifact_path(h, "model", p, sizeof p);
    struct jz_error err = {0};
    if (jz_mlp_load(p, m, &err) != 0)
        fail_msg("model: %s", err.msg);
}

static double max_weight_diff(const struct jz_mlp *a, const struct jz_mlp *b)
{
    double d = 0;
    for (uint32_t l = 0; l < a->n_layers; l++)
        for (size_t i = 0; i < (size_t)a->sizes[l] * a->sizes[l + 1]; i++)
            d = fmax(d, fabs((double)a->w[l][i] - b->w[l][i]));
    return d;
}

static void test_learns(void **state)
{
    static struct jz_runhost h;
    host_new(&h);
    int rc = jz_runhost_run(&h);
    if (rc != 0)
        fail_msg("train failed: %s", h.error);
    double l1 = jz_runhost_metric_at(&h, "train_loss", 1), l3 = jz_runhost_metric_at(&h, "train_loss", 3);
    double a1 = jz_runhost_metric_at(&h, "test_accuracy", 1), a3 = jz_runhost_metric_at(&h, "test_accuracy", 3);
    assert_true(l3 < l1 * 0.8);
    assert_true(a3 >= a1 - 0.01);
    assert_true(a3 > 0.7); /* chance is 0.1 */
    assert_true(jz_runhost_metric(&h, "train_accuracy") > 0.7);
    assert_true(jz_runhost_metric(&h, "samples_per_s") > 0);
    assert_true(jz_runhost_metric(&h, "epoch") == 3);
    struct jz_mlp m;
    load_model(&h, &m);
    assert_int_equal(m.n_layers, 3);
    assert_int_equal(m.sizes[0], 784);
    assert_int_equal(m.sizes[1], 64);
    assert_int_equal(m.sizes[3], 10);
    assert_int_equal(m.activation, JZ_MLP_RELU);
    jz_mlp_free(&m);
    jz_runhost_destroy(&h);
}

static void test_gelu_sgd_step(void **state)
{
    static struct jz_runhost h;
    host_new(&h);
    jz_runhost_set(&h, "activation", "gelu");
    jz_runhost_set(&h, "optimizer", "sgd");
    jz_runhost_set(&h, "lr", "0.05");
    jz_runhost_set(&h, "lr_schedule", "step");
    jz_runhost_set(&h, "weight_decay", "0.0001");
    jz_runhost_set(&h, "layers", "32");
    if (jz_runhost_run(&h) != 0)
        fail_msg("train failed: %s", h.error);
    assert_true(jz_runhost_metric_at(&h, "train_loss", 3) < jz_runhost_metric_at(&h, "train_loss", 1));
    assert_true(jz_runhost_metric(&h, "test_accuracy") > 0.7);
    /* step schedule: x0.1 from half-way */
    assert_true(fabs(jz_runhost_metric_at(&h, "lr", 3) - 0.005) < 1e-6);
    struct jz_mlp m;
    load_model(&h, &m);
    assert_int_equal(m.activation, JZ_MLP_GELU);
    assert_int_equal(m.n_layers, 2);
    jz_mlp_free(&m);
    jz_runhost_destroy(&h);
}

/* Same seed, same device: bit-identical models. Another seed: a different one. */
static void test_deterministic(void **state)
{
    static struct jz_runhost h1, h2, h3;
    host_new(&h1);
    host_new(&h2);
    host_new(&h3);
    jz_runhost_set(&h3, "seed", "8");
    jz_runhost_set(&h1, "epochs", "1");
    jz_runhost_set(&h2, "epochs", "1");
    jz_runhost_set(&h3, "epochs", "1");
    assert_int_equal(jz_runhost_run(&h1), 0);
    assert_int_equal(jz_runhost_run(&h2), 0);
    assert_int_equal(jz_runhost_run(&h3), 0);
    struct jz_mlp a, b, c;
    load_model(&h1, &a);
    load_model(&h2, &b);
    load_model(&h3, &c);
    assert_true(max_weight_diff(&a, &b) == 0.0);
    assert_true(max_weight_diff(&a, &c) > 1e-3);
    jz_mlp_free(&a);
    jz_mlp_free(&b);
    jz_mlp_free(&c);
    jz_runhost_destroy(&h1);
    jz_runhost_destroy(&h2);
    jz_runhost_destroy(&h3);
}

/* Data-parallel over 2 (and 3) cpu devices gives the 1-device result up to float rounding. */
static void test_data_parallel(void **state)
{
    static struct jz_runhost h1, h2, h3;
    host_new(&h1);
    host_new(&h2);
    host_new(&h3);
    h2.n_devices = 2;
    h3.n_devices = 3;
    for (struct jz_runhost *h = &h1; h; h = h == &h1 ? &h2 : h == &h2 ? &h3 : NULL) {
        jz_runhost_set(h, "epochs", "1");
        jz_runhost_set(h, "optimizer", "sgd");
        jz_runhost_set(h, "lr", "0.02");
        if (jz_runhost_run(h) != 0)
            fail_msg("train failed: %s", h->error);
    }
    struct jz_mlp a, b, c;
    load_model(&h1, &a);
    load_model(&h2, &b);
    load_model(&h3, &c);
    double d2 = max_weight_diff(&a, &b), d3 = max_weight_diff(&a, &c);
    if (d2 > 1e-3 || d3 > 1e-3)
        fail_msg("weights differ by %g (2 devices) and %g (3 devices)", d2, d3);
    double l1 = jz_runhost_metric(&h1, "train_loss"), l2 = jz_runhost_metric(&h2, "train_loss");
    assert_true(fabs(l1 - l2) < 1e-3 * l1);
    jz_mlp_free(&a);
    jz_mlp_free(&b);
    jz_mlp_free(&c);
    jz_runhost_destroy(&h1);
    jz_runhost_destroy(&h2);
    jz_runhost_destroy(&h3);
}

/* On OpenCL (PoCL in CI, where built), where the batches and test rows are copied into the
 * device instead of read in place (jz_kbuf_write_rows' gather into host memory, evaluate's
 * copy), the model trained is the cpu backend's up to float rounding. */
static void test_opencl_matches_cpu(void **state)
{
    size_t n = 0;
    struct jz_error e = {0};
    if (jz_kdev_count(JZ_KBACKEND_OPENCL, &n, &e) != 0 || n == 0) {
        skip();
        return;
    }
    static struct jz_runhost hc, ho;
    host_new(&hc);
    host_new(&ho);
    snprintf(ho.backend, sizeof ho.backend, "opencl");
    ho.n_devices = 1;
    for (struct jz_runhost *h = &hc; h; h = h == &hc ? &ho : NULL) {
        jz_runhost_set(h, "epochs", "1");
        jz_runhost_set(h, "optimizer", "sgd");
        jz_runhost_set(h, "lr", "0.02");
        if (jz_runhost_run(h) != 0)
            fail_msg("train on %s failed: %s", h == &hc ? "cpu" : "opencl", h->error);
    }
    struct jz_mlp a, b;
    load_model(&hc, &a);
    load_model(&ho, &b);
    double d = max_weight_diff(&a, &b);
    if (d > 1e-3)
        fail_msg("weights differ by %g between cpu and opencl", d);
    double ac = jz_runhost_metric(&hc, "test_accuracy"), ao = jz_runhost_metric(&ho, "test_accuracy");
    assert_true(fabs(ac - ao) <= 0.002);
    jz_mlp_free(&a);
    jz_mlp_free(&b);
    jz_runhost_destroy(&hc);
    jz_runhost_destroy(&ho);
}

/* Cancelled during epoch 2, resumed from the checkpoint: the same model as an uninterrupted run,
 * bit for bit (the shuffle depends only on seed and epoch). */
static void test_cancel_resume(void **state)
{
    static struct jz_runhost full, part;
    host_new(&full);
    host_new(&part);
    assert_int_equal(jz_runhost_run(&full), 0);
    part.cancel_metric = "epoch";
    part.cancel_step = 1;
    assert_int_not_equal(jz_runhost_run(&part), 0);
    assert_non_null(strstr(part.error, "cancelled"));
    assert_true(part.checkpoint_written);
    assert_true(isnan(jz_runhost_metric_at(&part, "epoch", 2)));
    char ck[4300];
    jz_runhost_checkpoint_path(&part, ck, sizeof ck);
    part.cancel_metric = NULL;
    part.restore = ck;
    if (jz_runhost_run(&part) != 0)
        fail_msg("resume failed: %s", part.error);
    assert_true(isnan(jz_runhost_metric_at(&part, "epoch", 1))); /* epoch 1 was not redone */
    assert_true(jz_runhost_metric_at(&part, "epoch", 3) == 3);
    struct jz_mlp a, b;
    load_model(&full, &a);
    load_model(&part, &b);
    assert_true(max_weight_diff(&a, &b) == 0.0);
    assert_true(jz_runhost_metric(&full, "test_accuracy") == jz_runhost_metric(&part, "test_accuracy"));
    jz_mlp_free(&a);
    jz_mlp_free(&b);

    /* A checkpoint of another network is refused, not half-loaded. */
    static struct jz_runhost other;
    host_new(&other);
    jz_runhost_set(&other, "layers", "16");
    other.restore = ck;
    assert_int_not_equal(jz_runhost_run(&other), 0);
    assert_non_null(strstr(other.error, "another network"));
    /* A corrupt checkpoint is refused. */
    FILE *f = fopen(ck, "r+b");
    assert_non_null(f);
    fseek(f, 100, SEEK_SET);
    fputc(0x5A, f);
    fclose(f);
    assert_int_not_equal(jz_runhost_run(&part), 0);
    assert_non_null(strstr(part.error, "checksum"));
    jz_runhost_destroy(&other);
    jz_runhost_destroy(&full);
    jz_runhost_destroy(&part);
}

static void test_bad_inputs(void **state)
{
    static struct jz_runhost h;
    host_new(&h);
    jz_runhost_set(&h, "dataset", "/nonexistent/data");
    assert_int_not_equal(jz_runhost_run(&h), 0);
    assert_non_null(strstr(h.error, "/nonexistent/data"));
    jz_runhost_set(&h, "dataset", datadir);
    jz_runhost_set(&h, "layers", "64,0");
    assert_int_not_equal(jz_runhost_run(&h), 0);
    assert_non_null(strstr(h.error, "layers[1]"));
    jz_runhost_destroy(&h);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jz-train-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(datadir, sizeof datadir, "%s/data", tmpdir);
    mkdir(datadir, 0755);
    if (copy_subset("train-images", "train-labels", N_TRAIN) != 0 ||
        copy_subset("t10k-images", "t10k-labels", N_TEST) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    if (access(JZ_FASHION_MNIST "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "skipped: no Fashion-MNIST at %s\n", JZ_FASHION_MNIST);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns),       cmocka_unit_test(test_gelu_sgd_step),
        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_data_parallel),
        cmocka_unit_test(test_opencl_matches_cpu),
        cmocka_unit_test(test_cancel_resume), cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
