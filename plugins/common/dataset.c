/* IDX and CSV readers for the workload plugins (see dataset.h). IDX goes through zlib's gzread,
 * which reads gzipped and plain files alike. */
#define _GNU_SOURCE
#include "dataset.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <zlib.h>

/* Training reads its mini-batches as rows scattered over the whole data set, nearly every one on
 * another page: on 4 KiB pages each row cost a TLB miss, and a batch of 128 Fashion-MNIST rows
 * took 100 us to gather; on 2 MiB pages, 70 us. So a large value array is aligned to 2 MiB and
 * asked for transparent huge pages before it is first written (where the kernel grants them
 * only on request, THP "madvise", the usual setting). Freed with free(). */
#define HUGE_PAGE ((size_t)2 << 20)

static float *values_alloc(size_t n)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    if (bytes < HUGE_PAGE)
        return malloc(bytes);
    void *p = NULL;
    size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (posix_memalign(&p, HUGE_PAGE, rounded) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* advice: refused, the pages are small */
#endif
    return p;
}

void jz_dataset_free(struct jz_dataset *ds)
{
    if (!ds)
        return;
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

/* Where IDX bytes come from: a file through gzread, or memory (plain, or gzip inflated as it
 * is read), so that the parser below is the same for both. */
struct idx_src {
    gzFile f;                /* NULL: memory */
    const unsigned char *in; /* memory, plain */
    size_t left;
    z_stream zs; /* memory, gzipped */
    bool inflating;
};

static int gz_full_read(struct idx_src *src, void *buf, size_t len)
{
    char *p = buf;
    if (!src->f && !src->inflating) {
        if (len > src->left)
            return -1;
        memcpy(p, src->in, len);
        src->in += len;
        src->left -= len;
        return 0;
    }
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int n;
        if (src->f) {
            n = gzread(src->f, p, chunk);
        } else {
            src->zs.next_out = (unsigned char *)p;
            src->zs.avail_out = chunk;
            int zrc = inflate(&src->zs, Z_NO_FLUSH);
            n = (int)(chunk - src->zs.avail_out);
            if (n == 0 && zrc != Z_OK)
                return -1;
        }
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int idx_parse(struct idx_src *f, const char *path, float **values, size_t *rows,
                     size_t *features, struct jz_error *err);

int jz_idx_read(const char *path, float **values, size_t *rows, size_t *features,
                struct jz_error *err)
{
    struct idx_src src = {.f = gzopen(path, "rb")};
    if (!src.f)
        return jz_error_set(err, JZ_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = idx_parse(&src, path, values, rows, features, err);
    gzclose(src.f);
    return rc;
}

int jz_idx_read_buffer(const void *buf, size_t len, const char *name, float **values,
                       size_t *rows, size_t *features, struct jz_error *err)
{
    struct idx_src src = {.in = buf, .left = len};
    const unsigned char *b = buf;
    if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        if (len > UINT_MAX)
            return jz_error_set(err, JZ_ELIMIT, "%s: gzipped IDX larger than 4 GiB", name);
        src.zs.next_in = (unsigned char *)b;
        src.zs.avail_in = (unsigned)len;
        if (inflateInit2(&src.zs, 16 + MAX_WBITS) != Z_OK)
            return jz_error_set(err, JZ_ENOMEM, "%s: out of memory", name);
        src.inflating = true;
    }
    int rc = idx_parse(&src, name, values, rows, features, err);
    if (src.inflating)
        inflateEnd(&src.zs);
    return rc;
}

static int idx_parse(struct idx_src *f, const char *path, float **values, size_t *rows,
                     size_t *features, struct jz_error *err)
{
    int rc = 0;
    float *out = NULL;
    unsigned char *raw = NULL;
    unsigned char hdr[4];
    if (gz_full_read(f, hdr, 4) != 0 || hdr[0] != 0 || hdr[1] != 0) {
        rc = jz_error_set(err, JZ_ECORRUPT, "%s: not an IDX file (bad magic)", path);
        goto done;
    }
    unsigned type = hdr[2], ndims = hdr[3];
    if ((type != 0x08 && type != 0x0D) || ndims < 1 || ndims > 4) {
        rc = jz_error_set(err, JZ_ECORRUPT,
                          "%s: unsupported IDX type 0x%02x with %u dims (want ubyte or float, 1-4 dims)",
                          path, type, ndims);
        goto done;
    }
    size_t dims[4], total = 1;
    for (unsigned i = 0; i < ndims; i++) {
        unsigned char d[4];
        if (gz_full_read(f, d, 4) != 0) {
            rc = jz_error_set(err, JZ_ECORRUPT, "%s: truncated IDX header", path);
            goto done;
        }
        dims[i] = (size_t)d[0] << 24 | (size_t)d[1] << 16 | (size_t)d[2] << 8 | d[3];
        if (dims[i] == 0 || dims[i] > JZ_DATASET_MAX_ELEMS || total > JZ_DATASET_MAX_ELEMS / dims[i]) {
            rc = jz_error_set(err, JZ_ELIMIT, "%s: IDX dimensions too large or zero (limit %zu values)",
                              path, JZ_DATASET_MAX_ELEMS);
            goto done;
        }
        total *= dims[i];
    }
    if (dims[0] > JZ_DATASET_MAX_ROWS || total / dims[0] > JZ_DATASET_MAX_FEATURES) {
        rc = jz_error_set(err, JZ_ELIMIT, "%s: %zu rows of %zu values exceed the limits (%zu, %zu)",
                          path, dims[0], total / dims[0], JZ_DATASET_MAX_ROWS, JZ_DATASET_MAX_FEATURES);
        goto done;
    }
    size_t esize = type == 0x08 ? 1 : 4;
    /* The data is read in growing pieces: a header alone must not make a 20-byte file cost
     * gigabytes before its truncation shows (fuzz_idx found this; tests/fuzz/corpus/idx). */
    size_t want = total * esize, have = 0, cap = 0;
    while (have < want) {
        size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
        if (ncap > want)
            ncap = want;
        unsigned char *nraw = realloc(raw, ncap);
        if (!nraw) {
            rc = jz_error_set(err, JZ_ENOMEM, "%s: out of memory for %zu values", path, total);
            goto done;
        }
        raw = nraw;
        cap = ncap;
        if (gz_full_read(f, raw + have, cap - have) != 0) {
            rc = jz_error_set(err, JZ_ECORRUPT, "%s: truncated IDX data (want %zu values)", path,
                              total);
            goto done;
        }
        have = cap;
    }
    out = values_alloc(total);
    if (!out) {
        rc = jz_error_set(err, JZ_ENOMEM, "%s: out of memory for %zu values", path, total);
        goto done;
    }
    if (esize == 1) {
        for (size_t i = 0; i < total; i++)
            out[i] = raw[i];
    } else {
        for (size_t i = 0; i < total; i++) {
            uint32_t u = (uint32_t)raw[4 * i] << 24 | (uint32_t)raw[4 * i + 1] << 16 |
                         (uint32_t)raw[4 * i + 2] << 8 | raw[4 * i + 3];
            memcpy(&out[i], &u, 4);
            if (!isfinite(out[i])) {
                rc = jz_error_set(err, JZ_ECORRUPT, "%s: non-finite value at %zu", path, i);
                goto done;
            }
        }
    }
    *values = out;
    *rows = dims[0];
    *features = total / dims[0];
    out = NULL;
done:
    free(raw);
    free(out);
    return rc;
}

/* Converts float labels into int32 and checks them; returns the class count through *classes. */
static int labels_from_floats(const char *what, const float *v, size_t n, int32_t **out,
                              int32_t *classes, struct jz_error *err)
{
    int32_t *y = malloc((n ? n : 1) * sizeof *y);
    if (!y)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int32_t maxc = -1;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] >= 0 && v[i] < JZ_DATASET_MAX_CLASSES) || v[i] != floorf(v[i])) {
            free(y);
            return jz_error_set(err, JZ_ECORRUPT, "%s: label %g at row %zu is not an integer in [0, %d)",
                                what, (double)v[i], i, JZ_DATASET_MAX_CLASSES);
        }
        y[i] = (int32_t)v[i];
        if (y[i] > maxc)
            maxc = y[i];
    }
    *out = y;
    *classes = maxc + 1;
    return 0;
}

int jz_dataset_load_idx(const char *images_path, const char *labels_path, struct jz_dataset *out,
                        struct jz_error *err)
{
    struct jz_dataset ds = {0};
    int rc = jz_idx_read(images_path, &ds.x, &ds.rows, &ds.features, err);
    if (rc)
        return rc;
    if (labels_path) {
        float *lv = NULL;
        size_t lr = 0, lf = 0;
        if ((rc = jz_idx_read(labels_path, &lv, &lr, &lf, err)))
            goto fail;
        if (lf != 1 || lr != ds.rows) {
            free(lv);
            rc = jz_error_set(err, JZ_ECORRUPT, "%s: %zu x %zu labels do not match %zu images of %s",
                              labels_path, lr, lf, ds.rows, images_path);
            goto fail;
        }
        rc = labels_from_floats(labels_path, lv, lr, &ds.y, &ds.classes, err);
        free(lv);
        if (rc)
            goto fail;
    }
    *out = ds;
    return 0;
fail:
    jz_dataset_free(&ds);
    return rc;
}

/* Splits a CSV line in place into numbers; returns the count, or -1 on a non-numeric field. */
static long parse_csv_numbers(char *line, float *vals, size_t cap)
{
    long n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *end;
        errno = 0;
        float v = strtof(p, &end);
        if (end == p || errno == ERANGE || !isfinite(v))
            return -1;
        p = end;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if ((size_t)n >= cap)
            return -2;
        vals[n++] = v;
        if (*p == ',')
            p++;
        else if (*p == '\0')
            return n;
        else
            return -1;
    }
}

static int csv_parse(FILE *f, const char *path, size_t expect_features, struct jz_dataset *out,
                     struct jz_error *err);

int jz_dataset_load_csv(const char *path, size_t expect_features, struct jz_dataset *out,
                        struct jz_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return jz_error_set(err, JZ_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = csv_parse(f, path, expect_features, out, err);
    fclose(f);
    return rc;
}

int jz_dataset_load_csv_buffer(const char *buf, size_t len, const char *name,
                               size_t expect_features, struct jz_dataset *out,
                               struct jz_error *err)
{
    /* fmemopen refuses a size of 0 on some C libraries: an empty buffer has no rows. */
    if (len == 0)
        return jz_error_set(err, JZ_ECORRUPT, "%s: no data rows", name);
    FILE *f = fmemopen((void *)buf, len, "r");
    if (!f)
        return jz_error_set(err, JZ_ENOMEM, "%s: cannot open a memory stream: %s", name,
                            strerror(errno));
    int rc = csv_parse(f, name, expect_features, out, err);
    fclose(f);
    return rc;
}

static int csv_parse(FILE *f, const char *path, size_t expect_features, struct jz_dataset *out,
                     struct jz_error *err)
{
    int rc = 0;
    char *line = NULL;
    size_t cap = 0;
    float *vals = malloc((JZ_DATASET_MAX_FEATURES + 1) * sizeof *vals);
    float *xs = NULL, *labels = NULL;
    size_t rows = 0, row_cap = 0, cols = 0, lineno = 0;
    if (!vals) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto done;
    }
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len > JZ_CSV_MAX_LINE) {
            rc = jz_error_set(err, JZ_ELIMIT, "%s:%zu: line longer than %zu bytes", path, lineno,
                              JZ_CSV_MAX_LINE);
            goto done;
        }
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '\0')
            continue;
        long n = parse_csv_numbers(s, vals, JZ_DATASET_MAX_FEATURES + 1);
        if (n == -2) {
            rc = jz_error_set(err, JZ_ELIMIT, "%s:%zu: more than %zu columns", path, lineno,
                              JZ_DATASET_MAX_FEATURES + 1);
            goto done;
        }
        if (n < 0) {
            if (rows == 0 && cols == 0 && lineno == 1)
                continue; /* a header line */
            rc = jz_error_set(err, JZ_ECORRUPT, "%s:%zu: not a line of numbers", path, lineno);
            goto done;
        }
        if (cols == 0) {
            cols = (size_t)n;
            bool ok = expect_features ? (cols == expect_features || cols == expect_features + 1)
                                      : cols >= 2;
            if (!ok) {
                rc = jz_error_set(err, JZ_ECORRUPT,
                                  "%s:%zu: %zu columns, expected %s%zu", path, lineno, cols,
                                  expect_features ? "features (+1 label): " : "a label and features: >= ",
                                  expect_features ? expect_features : 2);
                goto done;
            }
        } else if ((size_t)n != cols) {
            rc = jz_error_set(err, JZ_ECORRUPT, "%s:%zu: %ld columns where earlier lines had %zu",
                              path, lineno, n, cols);
            goto done;
        }
        bool has_label = expect_features ? cols == expect_features + 1 : true;
        size_t nf = has_label ? cols - 1 : cols;
        if (rows == row_cap) {
            /* The first block holds at most 16 MiB of values: one very wide line must not
             * reserve a thousand rows of its width before a second line is read. */
            size_t first = ((size_t)16 << 20) / (nf ? nf * sizeof(float) : 1);
            first = first < 1 ? 1 : first > 1024 ? 1024 : first;
            size_t nc = row_cap ? row_cap * 2 : first;
            if (nc > JZ_DATASET_MAX_ROWS)
                nc = JZ_DATASET_MAX_ROWS;
            if (nf && nc * nf > JZ_DATASET_MAX_ELEMS)
                nc = JZ_DATASET_MAX_ELEMS / nf;
            if (rows >= nc) {
                rc = jz_error_set(err, JZ_ELIMIT, "%s: more than %zu rows or %zu values", path,
                                  JZ_DATASET_MAX_ROWS, JZ_DATASET_MAX_ELEMS);
                goto done;
            }
            float *nx = realloc(xs, nc * nf * sizeof *nx);
            if (!nx) {
                rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
                goto done;
            }
            xs = nx;
            float *nl = realloc(labels, nc * sizeof *nl);
            if (!nl) {
                rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
                goto done;
            }
            labels = nl;
            row_cap = nc;
        }
        labels[rows] = has_label ? vals[0] : 0;
        memcpy(xs + rows * nf, vals + (has_label ? 1 : 0), nf * sizeof *xs);
        rows++;
    }
    if (rows == 0) {
        rc = jz_error_set(err, JZ_ECORRUPT, "%s: no data rows", path);
        goto done;
    }
    struct jz_dataset ds = {.rows = rows};
    bool has_label = expect_features ? cols == expect_features + 1 : true;
    ds.features = has_label ? cols - 1 : cols;
    if (has_label && (rc = labels_from_floats(path, labels, rows, &ds.y, &ds.classes, err)))
        goto done;
    ds.x = xs;
    xs = NULL;
    *out = ds;
done:
    free(line);
    free(vals);
    free(xs);
    free(labels);
    return rc;
}

/* Finds dir/base or dir/base.gz; writes the path into buf. */
static bool find_file(const char *dir, const char *base, char *buf, size_t len)
{
    struct stat st;
    snprintf(buf, len, "%s/%s", dir, base);
    if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
        return true;
    snprintf(buf, len, "%s/%s.gz", dir, base);
    return stat(buf, &st) == 0 && S_ISREG(st.st_mode);
}

static int load_pair(const char *dir, const char *img, const char *lab, const char *csv,
                     size_t expect, struct jz_dataset *out, struct jz_error *err)
{
    char ip[4200], lp[4200];
    if (find_file(dir, img, ip, sizeof ip) && find_file(dir, lab, lp, sizeof lp))
        return jz_dataset_load_idx(ip, lp, out, err);
    snprintf(ip, sizeof ip, "%s/%s", dir, csv);
    struct stat st;
    if (stat(ip, &st) == 0 && S_ISREG(st.st_mode)) {
        int rc = jz_dataset_load_csv(ip, expect, out, err);
        if (rc == 0 && !out->y) {
            jz_dataset_free(out);
            return jz_error_set(err, JZ_ECORRUPT, "%s: no label column", ip);
        }
        return rc;
    }
    return jz_error_set(err, JZ_ENOENT, "%s: neither %s[.gz] + %s[.gz] nor %s found", dir, img,
                        lab, csv);
}

int jz_dataset_load_dir(const char *dir, struct jz_dataset *train, struct jz_dataset *test,
                        struct jz_error *err)
{
    struct jz_dataset tr = {0}, te = {0};
    int rc = load_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "train.csv", 0,
                       &tr, err);
    if (rc)
        return rc;
    rc = load_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "test.csv",
                   tr.features + 0, &te, err);
    if (rc)
        goto fail;
    if (te.features != tr.features || !te.y) {
        rc = jz_error_set(err, JZ_ECORRUPT, "%s: test set has %zu features, training set %zu", dir,
                          te.features, tr.features);
        goto fail;
    }
    if (te.classes > tr.classes)
        tr.classes = te.classes;
    te.classes = tr.classes;
    *train = tr;
    *test = te;
    return 0;
fail:
    jz_dataset_free(&tr);
    jz_dataset_free(&te);
    return rc;
}

int jz_dataset_load_input(const char *path, const char *labels_path, size_t expect_features,
                          struct jz_dataset *out, struct jz_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return jz_error_set(err, JZ_ENOENT, "input %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return load_pair(path, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "test.csv",
                         expect_features, out, err);
    size_t n = strlen(path);
    if (n >= 4 && strcasecmp(path + n - 4, ".csv") == 0)
        return jz_dataset_load_csv(path, expect_features, out, err);
    return jz_dataset_load_idx(path, labels_path && *labels_path ? labels_path : NULL, out, err);
}

void jz_dataset_stats(const struct jz_dataset *ds, float min_std, float *mean, float *std)
{
    size_t F = ds->features;
    double *s = calloc(2 * F, sizeof *s);
    if (!s) { /* a fallback that needs no memory: identity normalisation */
        for (size_t j = 0; j < F; j++)
            mean[j] = 0, std[j] = 1;
        return;
    }
    double *s2 = s + F;
    for (size_t r = 0; r < ds->rows; r++) {
        const float *x = ds->x + r * F;
        for (size_t j = 0; j < F; j++) {
            s[j] += x[j];
            s2[j] += (double)x[j] * x[j];
        }
    }
    double n = ds->rows ? (double)ds->rows : 1;
    for (size_t j = 0; j < F; j++) {
        double m = s[j] / n, var = s2[j] / n - m * m;
        mean[j] = (float)m;
        double sd = var > 0 ? sqrt(var) : 0;
        std[j] = (float)(sd > min_std ? sd : min_std);
    }
    free(s);
}

void jz_dataset_normalise(struct jz_dataset *ds, const float *mean, const float *std)
{
    size_t F = ds->features;
    for (size_t r = 0; r < ds->rows; r++) {
        float *x = ds->x + r * F;
        for (size_t j = 0; j < F; j++)
            x[j] = (x[j] - mean[j]) / std[j];
    }
}
