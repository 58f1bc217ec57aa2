/* The infer plugin, loaded from its .so by the in-process host, on hand-made models whose
 * predictions are known exactly. */
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

#include "mlpdev.h"
#include "model.h"
#include "runhost.h"

static char tmpdir[256], model_path[300], csv_path[300];
static int run_no;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* 3 features -> 3 classes, W = 2 I, b = 0, mean 1, std 2: logits = x - 1, prediction = argmax x. */
static void make_model(const char *path)
{
    struct jz_mlp m;
    uint32_t sizes[] = {3, 3};
    assert_int_equal(jz_mlp_alloc(&m, 1, sizes, JZ_MLP_RELU, NULL), 0);
    for (int i = 0; i < 3; i++) {
        m.mean[i] = 1;
        m.std[i] = 2;
        m.w[0][i * 3 + i] = 2;
    }
    assert_int_equal(jz_mlp_save(&m, path, NULL), 0);
    jz_mlp_free(&m);
}

static void host_new(struct jz_runhost *h, const char *model, const char *input)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/run%d", tmpdir, run_no++);
    assert_int_equal(jz_runhost_init(h, JZ_INFER_PLUGIN, dir), 0);
    h->quiet = true;
    jz_runhost_set(h, "model", model);
    jz_runhost_set(h, "input", input);
    jz_runhost_set(h, "batch_size", "2");
}

static void test_predictions_csv(void **state)
{
    static struct jz_runhost h;
    host_new(&h, model_path, csv_path);
    if (jz_runhost_run(&h) != 0)
        fail_msg("infer failed: %s", h.error);
    assert_true(jz_runhost_metric(&h, "accuracy") == 0.8); /* 4 of 5 */
    assert_true(jz_runhost_metric(&h, "samples") == 5);
    char p[4300];
    jz_runhost_artifact_path(&h, "predictions.csv", p, sizeof p);
    char *pred = read_text(p);
    assert_non_null(pred);
    assert_non_null(strstr(pred, "index,prediction,confidence,label\n0,0,"));
    assert_non_null(strstr(pred, "\n4,0,")); /* the wrong one: label 2, features favour 0 */
    jz_runhost_artifact_path(&h, "confusion.csv", p, sizeof p);
    char *cm = read_text(p);
    assert_non_null(cm);
    assert_string_equal(cm, "label,pred_0,pred_1,pred_2\n0,1,0,0\n1,0,2,0\n2,1,0,1\n");
    jz_runhost_destroy(&h);
}

/* Without a label column: predictions only, no accuracy, no confusion matrix; on 2 devices. */
static void test_unlabelled_two_devices(void **state)
{
    char p[400];
    snprintf(p, sizeof p, "%s/nolabels.csv", tmpdir);
    write_text(p, "0,0,9\n5,1,1\n1,7,1\n");
    static struct jz_runhost h;
    host_new(&h, model_path, p);
    h.n_devices = 2;
    jz_runhost_set(&h, "batch_size", "1");
    if (jz_runhost_run(&h) != 0)
        fail_msg("infer failed: %s", h.error);
    assert_true(isnan(jz_runhost_metric(&h, "accuracy")));
    char a[4300];
    jz_runhost_artifact_path(&h, "predictions.csv", a, sizeof a);
    char *pred = read_text(a);
    assert_non_null(strstr(pred, "index,prediction,confidence\n0,2,"));
    assert_non_null(strstr(pred, "\n1,0,"));
    assert_non_null(strstr(pred, "\n2,1,"));
    jz_runhost_artifact_path(&h, "confusion.csv", a, sizeof a);
    assert_int_not_equal(access(a, F_OK), 0);
    jz_runhost_destroy(&h);
}

static void test_idx_input(void **state)
{
    char img[400], lab[400];
    snprintf(img, sizeof img, "%s/img.idx", tmpdir);
    snprintf(lab, sizeof lab, "%s/lab.idx", tmpdir);
    FILE *f = fopen(img, "wb");
    const unsigned char ih[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 9, 0, 0, 0, 0, 9};
    fwrite(ih, 1, sizeof ih, f);
    fclose(f);
    f = fopen(lab, "wb");
    const unsigned char lh[] = {0, 0, 8, 1, 0, 0, 0, 2, 0, 1};
    fwrite(lh, 1, sizeof lh, f);
    fclose(f);
    static struct jz_runhost h;
    host_new(&h, model_path, img);
    jz_runhost_set(&h, "labels", lab);
    if (jz_runhost_run(&h) != 0)
        fail_msg("infer failed: %s", h.error);
    assert_true(jz_runhost_metric(&h, "accuracy") == 0.5); /* predicts 0 and 2 */
    jz_runhost_destroy(&h);
}

/* Damaged models: each refused with a clear message, never a crash. */
static void test_refusals(void **state)
{
    uint8_t *buf;
    size_t len;
    struct jz_mlp m;
    assert_int_equal(jz_mlp_load(model_path, &m, NULL), 0);
    assert_int_equal(jz_mlp_encode(&m, &buf, &len, NULL), 0);
    jz_mlp_free(&m);
    char p[400];
    struct {
        const char *name, *expect;
        size_t len;
        long flip;
    } cases[] = {
        {"truncated", "truncated", len / 2, -1},
        {"empty", "truncated", 0, -1},
        {"flipped", "checksum", len, (long)len - 9},
        {"magic", "bad magic", len, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(p, sizeof p, "%s/%s.model", tmpdir, cases[i].name);
        if (cases[i].flip >= 0)
            buf[cases[i].flip] ^= 1;
        FILE *f = fopen(p, "wb");
        fwrite(buf, 1, cases[i].len, f);
        fclose(f);
        if (cases[i].flip >= 0)
            buf[cases[i].flip] ^= 1;
        static struct jz_runhost h;
        host_new(&h, p, csv_path);
        int rc = jz_runhost_run(&h);
        if (rc == 0 || !strstr(h.error, cases[i].expect))
            fail_msg("%s: rc %d, error '%s'", cases[i].name, rc, h.error);
        jz_runhost_destroy(&h);
    }
    free(buf);
    /* a model for 4 features on 3-feature data: mismatched */
    struct jz_mlp m4;
    uint32_t sizes[] = {4, 3};
    assert_int_equal(jz_mlp_alloc(&m4, 1, sizes, JZ_MLP_RELU, NULL), 0);
    for (int i = 0; i < 4; i++)
        m4.std[i] = 1;
    snprintf(p, sizeof p, "%s/four.model", tmpdir);
    assert_int_equal(jz_mlp_save(&m4, p, NULL), 0);
    jz_mlp_free(&m4);
    char data[400];
    snprintf(data, sizeof data, "%s/two.csv", tmpdir);
    write_text(data, "1,2\n");
    static struct jz_runhost h;
    host_new(&h, p, data);
    assert_int_not_equal(jz_runhost_run(&h), 0);
    assert_non_null(strstr(h.error, "columns"));
    jz_runhost_destroy(&h);
    /* labels beyond the model's classes */
    snprintf(data, sizeof data, "%s/label7.csv", tmpdir);
    write_text(data, "7,1,2,3\n");
    host_new(&h, model_path, data);
    assert_int_not_equal(jz_runhost_run(&h), 0);
    assert_non_null(strstr(h.error, "does not match"));
    jz_runhost_destroy(&h);
    /* an unresolved job reference and a missing file */
    host_new(&h, "job:12/model", csv_path);
    assert_int_not_equal(jz_runhost_run(&h), 0);
    assert_non_null(strstr(h.error, "not resolved"));
    jz_runhost_destroy(&h);
    host_new(&h, "/nonexistent/model", csv_path);
    assert_int_not_equal(jz_runhost_run(&h), 0);
    assert_non_null(strstr(h.error, "/nonexistent/model"));
    jz_runhost_destroy(&h);
}

/* A model with a hidden ReLU layer, batches of 3 over 7 rows (the last one short), on the cpu
 * backend (which reads each batch where the plugin loaded it, jz_kbuf_wrap_host, and keeps an
 * inference-only model's activations in place), without a device, and on OpenCL where there is
 * one (batches copied into the device): every prediction as the float64 forward pass gives it. */
static void test_hidden_layer_backends(void **state)
{
    static const double w0[3][4] = {{1, -1, 0, 0.5}, {0, 1, -1, 0.5}, {-1, 0, 1, 0.5}};
    static const double b0[4] = {0, 0, 0, -2};
    static const double w1[4][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {-1, -1, 2}};
    static const double b1[3] = {0.1, 0, -0.1};
    static const double x[7][3] = {{3.5, 0.25, 1},  {0.5, 2.75, 0.1}, {1.2, 1.1, 4.3}, {-2, 3, -1.5},
                                   {2.2, 2.1, 2.05}, {0.3, -1.7, 2.6}, {5, 4.5, -3}};
    struct jz_mlp m;
    uint32_t sizes[] = {3, 4, 3};
    assert_int_equal(jz_mlp_alloc(&m, 2, sizes, JZ_MLP_RELU, NULL), 0);
    for (int k = 0; k < 3; k++) {
        m.mean[k] = 0;
        m.std[k] = 1;
        for (int j = 0; j < 4; j++)
            m.w[0][k * 4 + j] = (float)w0[k][j];
    }
    for (int j = 0; j < 4; j++) {
        m.b[0][j] = (float)b0[j];
        for (int c = 0; c < 3; c++)
            m.w[1][j * 3 + c] = (float)w1[j][c];
    }
    for (int c = 0; c < 3; c++)
        m.b[1][c] = (float)b1[c];
    char path[400], data[400], text[512] = "", expect[512] = "index,prediction,confidence\n";
    snprintf(path, sizeof path, "%s/hidden.model", tmpdir);
    assert_int_equal(jz_mlp_save(&m, path, NULL), 0);
    jz_mlp_free(&m);
    for (int r = 0; r < 7; r++) {
        double h[4], best = -INFINITY;
        int arg = 0;
        for (int j = 0; j < 4; j++) {
            h[j] = b0[j];
            for (int k = 0; k < 3; k++)
                h[j] += x[r][k] * w0[k][j];
            h[j] = h[j] > 0 ? h[j] : 0;
        }
        for (int c = 0; c < 3; c++) {
            double z = b1[c];
            for (int j = 0; j < 4; j++)
                z += h[j] * w1[j][c];
            if (z > best)
                best = z, arg = c;
        }
        snprintf(text + strlen(text), sizeof text - strlen(text), "%g,%g,%g\n", x[r][0], x[r][1],
                 x[r][2]);
        snprintf(expect + strlen(expect), sizeof expect - strlen(expect), "%d,%d,\n", r, arg);
    }
    snprintf(data, sizeof data, "%s/hidden.csv", tmpdir);
    write_text(data, text);

    size_t ocl = 0;
    struct jz_error e = {0};
    if (jz_kdev_count(JZ_KBACKEND_OPENCL, &ocl, &e) != 0)
        ocl = 0;
    const char *backends[] = {"cpu", "none", "opencl"};
    for (int b = 0; b < (ocl ? 3 : 2); b++) {
        static struct jz_runhost h;
        host_new(&h, path, data);
        jz_runhost_set(&h, "batch_size", "3");
        if (strcmp(backends[b], "none") != 0) {
            snprintf(h.backend, sizeof h.backend, "%s", backends[b]);
            h.n_devices = 1;
        }
        if (jz_runhost_run(&h) != 0)
            fail_msg("infer on %s failed: %s", backends[b], h.error);
        char a[4300];
        jz_runhost_artifact_path(&h, "predictions.csv", a, sizeof a);
        char *pred = read_text(a);
        assert_non_null(pred);
        /* each line: the expected "index,prediction," then the confidence */
        const char *want = expect, *got = pred;
        for (int line = 0; line < 8; line++) {
            const char *wend = strchr(want, '\n'), *gend = strchr(got, '\n');
            assert_non_null(gend);
            size_t wl = (size_t)((wend ? wend : want + strlen(want)) - want);
            if (strncmp(want, got, wl) != 0)
                fail_msg("%s: line %d is %.*s, want it to start %.*s", backends[b], line,
                         (int)(gend - got), got, (int)wl, want);
            want = wend ? wend + 1 : want + wl;
            got = gend + 1;
        }
        jz_runhost_destroy(&h);
    }
}

/* An inference-only model on the cpu backend has no input buffer: it runs from a buffer over
 * the caller's rows, and a forward pass that would read the missing buffer is refused. A
 * training model keeps one. */
static void test_mlpdev_input_buffer(void **state)
{
    struct jz_error e = {0};
    struct jz_mlp m;
    uint32_t sizes[] = {4, 2};
    assert_int_equal(jz_mlp_alloc(&m, 1, sizes, JZ_MLP_RELU, NULL), 0);
    for (int i = 0; i < 8; i++)
        m.w[0][i] = (float)(i % 3);
    jz_kdev_t *dev;
    assert_int_equal(jz_kdev_open(JZ_KBACKEND_CPU, 0, &dev, &e), 0);
    struct jz_mlpdev infer, train;
    assert_int_equal(jz_mlpdev_create(&infer, dev, &m, 16, JZ_MLPDEV_INFER, &e), 0);
    assert_null(infer.x);
    assert_int_equal(jz_mlpdev_upload(&infer, &m, &e), 0);
    assert_int_equal(jz_mlpdev_forward(&infer, 2, &e), JZ_EINVAL);
    assert_non_null(strstr(e.msg, "no input buffer"));
    float rows[8] = {1, 0, 0, 0, 0, 1, 1, 0};
    jz_kbuf_t *in;
    assert_int_equal(jz_kbuf_wrap_host(dev, rows, sizeof rows, &in, &e), 0);
    assert_int_equal(jz_mlpdev_forward_from(&infer, in, 2, &e), 0);
    float z[4];
    assert_int_equal(jz_kbuf_read(infer.z[0], 0, z, sizeof z, &e), 0);
    /* W row-major 4 x 2 = {0,1},{2,0},{1,2},{0,1}: row 0 picks W's row 0, row 1 rows 1 + 2 */
    assert_true(z[0] == 0 && z[1] == 1 && z[2] == 3 && z[3] == 2);
    jz_kbuf_free(in);
    assert_int_equal(jz_mlpdev_create(&train, dev, &m, 16, JZ_MLPDEV_ADAM, &e), 0);
    assert_non_null(train.x);
    jz_mlpdev_destroy(&train);
    jz_mlpdev_destroy(&infer);
    jz_kdev_close(dev);
    jz_mlp_free(&m);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jz-infer-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(model_path, sizeof model_path, "%s/model", tmpdir);
    snprintf(csv_path, sizeof csv_path, "%s/data.csv", tmpdir);
    make_model(model_path);
    /* label, features: predictions are the argmax of the features */
    write_text(csv_path, "label,a,b,c\n0,5,1,1\n1,0,3,1\n1,2,4,0\n2,0,1,8\n2,9,1,2\n");
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predictions_csv),
        cmocka_unit_test(test_unlabelled_two_devices),
        cmocka_unit_test(test_idx_input),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_hidden_layer_backends),
        cmocka_unit_test(test_mlpdev_input_buffer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
