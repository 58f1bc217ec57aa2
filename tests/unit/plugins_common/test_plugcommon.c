/* Tests of plugins/common: dataset readers, the model file format and its refusals, PNG output. */
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
#include <zlib.h>

#include "dataset.h"
#include "image.h"
#include "model.h"

static char tmpdir[256];

static void path_in(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* An IDX ubyte file of n rows of w values: value = (row * 7 + col) % 256. */
static size_t make_idx(uint8_t *buf, size_t n, size_t w, int dims)
{
    size_t p = 0;
    buf[p++] = 0, buf[p++] = 0, buf[p++] = 0x08, buf[p++] = (uint8_t)dims;
    size_t d[3] = {n, w, 1};
    if (dims == 3)
        d[1] = 2, d[2] = w / 2;
    for (int i = 0; i < dims; i++) {
        buf[p++] = (uint8_t)(d[i] >> 24), buf[p++] = (uint8_t)(d[i] >> 16);
        buf[p++] = (uint8_t)(d[i] >> 8), buf[p++] = (uint8_t)d[i];
    }
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < (dims == 1 ? 1 : w); c++)
            buf[p++] = (uint8_t)((r * 7 + c) % (dims == 1 ? 3 : 256));
    return p;
}

static void test_idx_plain_and_gzip(void **state)
{
    uint8_t buf[4096];
    size_t len = make_idx(buf, 5, 6, 3);
    char p1[512], p2[512];
    path_in(p1, sizeof p1, "img.idx");
    path_in(p2, sizeof p2, "img.idx.gz");
    write_file(p1, buf, len);
    gzFile g = gzopen(p2, "wb");
    assert_int_equal(gzwrite(g, buf, (unsigned)len), (int)len);
    gzclose(g);
    for (int k = 0; k < 2; k++) {
        float *v = NULL;
        size_t rows = 0, feats = 0;
        struct jz_error err = {0};
        assert_int_equal(jz_idx_read(k ? p2 : p1, &v, &rows, &feats, &err), 0);
        assert_int_equal(rows, 5);
        assert_int_equal(feats, 6);
        assert_true(v[2 * 6 + 3] == (float)((2 * 7 + 3) % 256));
        free(v);
    }
}

static void test_idx_truncated_and_bad(void **state)
{
    uint8_t buf[4096];
    size_t len = make_idx(buf, 5, 6, 2);
    char p[512];
    path_in(p, sizeof p, "trunc.idx");
    write_file(p, buf, len - 3);
    float *v = NULL;
    size_t rows, feats;
    struct jz_error err = {0};
    assert_int_equal(jz_idx_read(p, &v, &rows, &feats, &err), JZ_ECORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
    buf[2] = 0x0B; /* int16: unsupported */
    write_file(p, buf, len);
    assert_int_equal(jz_idx_read(p, &v, &rows, &feats, &err), JZ_ECORRUPT);
    buf[2] = 0x08;
    buf[4] = 0xFF; /* 4 billion rows */
    write_file(p, buf, len);
    assert_int_equal(jz_idx_read(p, &v, &rows, &feats, &err), JZ_ELIMIT);
    path_in(p, sizeof p, "missing.idx");
    assert_int_equal(jz_idx_read(p, &v, &rows, &feats, &err), JZ_EIO);
}

static void test_dataset_dir_idx(void **state)
{
    char d[512], p[600];
    path_in(d, sizeof d, "mnistlike");
    mkdir(d, 0755);
    uint8_t buf[4096];
    const char *names[][2] = {{"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
                              {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}};
    for (int s = 0; s < 2; s++) {
        size_t n = s ? 4 : 9;
        snprintf(p, sizeof p, "%s/%s", d, names[s][0]);
        write_file(p, buf, make_idx(buf, n, 8, 3));
        snprintf(p, sizeof p, "%s/%s", d, names[s][1]);
        write_file(p, buf, make_idx(buf, n, 1, 1));
    }
    struct jz_dataset tr = {0}, te = {0};
    struct jz_error err = {0};
    assert_int_equal(jz_dataset_load_dir(d, &tr, &te, &err), 0);
    assert_int_equal(tr.rows, 9);
    assert_int_equal(te.rows, 4);
    assert_int_equal(tr.features, 8);
    assert_int_equal(tr.classes, 3);
    assert_int_equal(tr.y[4], (4 * 7) % 3);
    jz_dataset_free(&tr);
    jz_dataset_free(&te);
    /* labels that do not match the images are refused */
    snprintf(p, sizeof p, "%s/%s", d, names[1][1]);
    write_file(p, buf, make_idx(buf, 3, 1, 1));
    assert_int_equal(jz_dataset_load_dir(d, &tr, &te, &err), JZ_ECORRUPT);
}

static void test_csv(void **state)
{
    char p[512];
    path_in(p, sizeof p, "data.csv");
    const char *text = "label,a,b,c\n1, 0.5, 2, 3\n0,1,1,1\n\n2,-1,0,4e-1\n";
    write_file(p, text, strlen(text));
    struct jz_dataset ds = {0};
    struct jz_error err = {0};
    assert_int_equal(jz_dataset_load_csv(p, 0, &ds, &err), 0);
    assert_int_equal(ds.rows, 3);
    assert_int_equal(ds.features, 3);
    assert_int_equal(ds.classes, 3);
    assert_true(fabsf(ds.x[2 * 3 + 2] - 0.4f) < 1e-6f);
    jz_dataset_free(&ds);
    /* the same file without labels when 4 features are expected */
    assert_int_equal(jz_dataset_load_csv(p, 4, &ds, &err), 0);
    assert_null(ds.y);
    assert_int_equal(ds.features, 4);
    jz_dataset_free(&ds);
    const char *bad = "1,2,3\n1,2\n";
    write_file(p, bad, strlen(bad));
    assert_int_equal(jz_dataset_load_csv(p, 0, &ds, &err), JZ_ECORRUPT);
    const char *badlabel = "1.5,2,3\n";
    write_file(p, badlabel, strlen(badlabel));
    assert_int_equal(jz_dataset_load_csv(p, 0, &ds, &err), JZ_ECORRUPT);
    const char *nan = "1,2,x\n1,2,3\n";
    write_file(p, nan, strlen(nan));
    assert_int_equal(jz_dataset_load_csv(p, 0, &ds, &err), 0); /* first line: a header */
    jz_dataset_free(&ds);
    const char *nan2 = "1,2,3\n1,2,x\n";
    write_file(p, nan2, strlen(nan2));
    assert_int_equal(jz_dataset_load_csv(p, 0, &ds, &err), JZ_ECORRUPT);
}

static void make_model(struct jz_mlp *m)
{
    uint32_t sizes[] = {4, 3, 2};
    assert_int_equal(jz_mlp_alloc(m, 2, sizes, JZ_MLP_GELU, NULL), 0);
    for (int j = 0; j < 4; j++)
        m->mean[j] = (float)j, m->std[j] = 1.0f + (float)j;
    for (uint32_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < (size_t)sizes[l] * sizes[l + 1]; i++)
            m->w[l][i] = (float)i * 0.25f - 1.0f;
        for (size_t i = 0; i < sizes[l + 1]; i++)
            m->b[l][i] = (float)i;
    }
}

static void test_model_round_trip(void **state)
{
    struct jz_mlp m, r;
    make_model(&m);
    char p[512];
    path_in(p, sizeof p, "model");
    struct jz_error err = {0};
    assert_int_equal(jz_mlp_save(&m, p, &err), 0);
    assert_int_equal(jz_mlp_load(p, &r, &err), 0);
    assert_int_equal(r.n_layers, 2);
    assert_int_equal(r.activation, JZ_MLP_GELU);
    assert_int_equal(r.sizes[1], 3);
    assert_memory_equal(r.w[0], m.w[0], 12 * sizeof(float));
    assert_memory_equal(r.b[1], m.b[1], 2 * sizeof(float));
    assert_memory_equal(r.std, m.std, 4 * sizeof(float));
    jz_mlp_free(&r);
    jz_mlp_free(&m);
}

/* Every damaged form is refused with JZ_ECORRUPT and a message naming the problem. */
static void test_model_refusals(void **state)
{
    struct jz_mlp m, r;
    make_model(&m);
    uint8_t *buf;
    size_t len;
    assert_int_equal(jz_mlp_encode(&m, &buf, &len, NULL), 0);
    uint8_t *copy = malloc(len + 8);
    struct jz_error err;
    struct {
        const char *what;
        size_t cut;     /* bytes removed from the end */
        size_t flip;    /* byte to flip (or SIZE_MAX) */
        const char *expect;
    } cases[] = {
        {"truncated", 10, SIZE_MAX, "truncated"},
        {"header only", len - 20, SIZE_MAX, "truncated"},
        {"bit flip in weights", 0, len - 12, "checksum"},
        {"bad magic", 0, 1, "magic"},
        {"future version", 0, 8, "version"},
        {"sizes changed", 0, 32, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(copy, buf, len);
        if (cases[i].flip != SIZE_MAX)
            copy[cases[i].flip] ^= 0x40;
        memset(&err, 0, sizeof err);
        int rc = jz_mlp_decode(copy, len - cases[i].cut, &r, &err);
        if (rc != JZ_ECORRUPT || !strstr(err.msg, cases[i].expect))
            fail_msg("%s: rc %d, message '%s'", cases[i].what, rc, err.msg);
    }
    /* trailing bytes */
    memcpy(copy, buf, len);
    assert_int_equal(jz_mlp_decode(copy, len + 4, &r, &err), JZ_ECORRUPT);
    assert_int_equal(jz_mlp_decode(copy, 0, &r, &err), JZ_ECORRUPT);
    /* a file that is not a model at all */
    char p[512];
    path_in(p, sizeof p, "notamodel");
    write_file(p, "hello world, this is text and not a model file\n", 48);
    assert_int_equal(jz_mlp_load(p, &r, &err), JZ_ECORRUPT);
    assert_non_null(strstr(err.msg, "notamodel"));
    free(copy);
    free(buf);
    jz_mlp_free(&m);
}

static void test_model_shape_limits(void **state)
{
    struct jz_mlp m;
    uint32_t sizes[] = {4, 0, 2};
    struct jz_error err;
    assert_int_equal(jz_mlp_alloc(&m, 2, sizes, JZ_MLP_RELU, &err), JZ_ECORRUPT);
    uint32_t one_class[] = {4, 1};
    assert_int_equal(jz_mlp_alloc(&m, 1, one_class, JZ_MLP_RELU, &err), JZ_ECORRUPT);
    uint32_t huge[] = {65536, 65536, 2};
    assert_int_equal(jz_mlp_alloc(&m, 2, huge, JZ_MLP_RELU, &err), JZ_ELIMIT);
    assert_int_equal(jz_mlp_alloc(&m, 1, sizes, 7, &err), JZ_ECORRUPT);
}

static void test_png(void **state)
{
    float field[6 * 4];
    for (int i = 0; i < 24; i++)
        field[i] = (float)i / 23.0f;
    char p[512];
    path_in(p, sizeof p, "f.png");
    struct jz_error err;
    assert_int_equal(jz_png_write_field(p, field, 6, 4, 0, 1, &err), 0);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    unsigned char sig[8];
    assert_int_equal(fread(sig, 1, 8, f), 8);
    fclose(f);
    assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(jz_png_write_field(p, field, 0, 4, 0, 1, &err), JZ_ELIMIT);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jz-plugcommon-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
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
        cmocka_unit_test(test_idx_plain_and_gzip), cmocka_unit_test(test_idx_truncated_and_bad),
        cmocka_unit_test(test_dataset_dir_idx),    cmocka_unit_test(test_csv),
        cmocka_unit_test(test_model_round_trip),   cmocka_unit_test(test_model_refusals),
        cmocka_unit_test(test_model_shape_limits), cmocka_unit_test(test_png),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
