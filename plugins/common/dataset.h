/* Plugin-side data readers: IDX files (MNIST layout, gzipped or not) and CSV files with the
 * label in the first column, loaded into float feature matrices with int32 labels. */
#ifndef JZ_PLUGIN_DATASET_H
#define JZ_PLUGIN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

/* Limits on what a user's file may ask us to allocate. */
#define JZ_DATASET_MAX_ROWS ((size_t)10000000)
#define JZ_DATASET_MAX_FEATURES ((size_t)1 << 20)
#define JZ_DATASET_MAX_ELEMS ((size_t)1 << 30) /* 4 GiB of floats */
#define JZ_DATASET_MAX_CLASSES 1000
#define JZ_CSV_MAX_LINE ((size_t)1 << 24)

/* A feature matrix (rows x features, row-major float32) with optional labels in [0, classes). */
struct jz_dataset {
    size_t rows;
    size_t features;
    float *x;      /* owned */
    int32_t *y;    /* owned; NULL when the data has no labels */
    int32_t classes; /* 1 + largest label, 0 without labels */
};

/* Frees the matrices and zeroes *ds; accepts NULL and an already-freed dataset. */
void jz_dataset_free(struct jz_dataset *ds);

/* Reads an IDX file of unsigned bytes (type 0x08) or big-endian float32 (0x0D) through zlib,
 * which reads plain and gzipped files alike. dims[0] becomes rows and the product of the other
 * dims features (1 for a 1-D file). On success the caller owns *values (rows * features floats).
 * JZ_EIO (open/read), JZ_ECORRUPT (bad header or truncated), JZ_ELIMIT (too large). */
int jz_idx_read(const char *path, float **values, size_t *rows, size_t *features,
                struct jz_error *err);
/* The same from len bytes in memory (borrowed; plain or gzipped); name labels messages. */
int jz_idx_read_buffer(const void *buf, size_t len, const char *name, float **values,
                       size_t *rows, size_t *features, struct jz_error *err);

/* Reads images (and labels, when labels_path is not NULL) from IDX files into *out. Labels must
 * be 1-D with as many entries as images and lie in [0, JZ_DATASET_MAX_CLASSES). */
int jz_dataset_load_idx(const char *images_path, const char *labels_path, struct jz_dataset *out,
                        struct jz_error *err);

/* Reads a CSV file of numbers, one sample per line. An optional first header line (any
 * non-numeric field) is skipped. When `expect_features` is 0 the first column is the label and
 * the rest are features. When it is non-zero, a line with expect_features + 1 columns carries a
 * label first and a line with expect_features columns has none (all lines must agree). */
int jz_dataset_load_csv(const char *path, size_t expect_features, struct jz_dataset *out,
                        struct jz_error *err);
/* The same from len bytes in memory (borrowed); name labels messages. */
int jz_dataset_load_csv_buffer(const char *buf, size_t len, const char *name,
                               size_t expect_features, struct jz_dataset *out,
                               struct jz_error *err);

/* Loads a folder in the MNIST layout (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
 * t10k-images..., t10k-labels...) or with train.csv and test.csv. Both sets must have labels and
 * the same number of features; classes becomes the larger of the two. */
int jz_dataset_load_dir(const char *dir, struct jz_dataset *train, struct jz_dataset *test,
                        struct jz_error *err);

/* Loads an input for inference: a folder (its test set), a .csv file, or an IDX images file,
 * whose labels are taken from `labels_path` when not NULL or "". */
int jz_dataset_load_input(const char *path, const char *labels_path, size_t expect_features,
                          struct jz_dataset *out, struct jz_error *err);

/* Per-feature mean and standard deviation over the rows (std floored at `min_std` so constant
 * features do not blow up). mean and std are caller-provided arrays of ds->features floats. */
void jz_dataset_stats(const struct jz_dataset *ds, float min_std, float *mean, float *std);

/* x = (x - mean) / std in place. */
void jz_dataset_normalise(struct jz_dataset *ds, const float *mean, const float *std);

#endif
