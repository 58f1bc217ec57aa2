/* The train plugin: an MLP classifier trained data-parallel over the job's devices (gradients
 * summed with the compute layer's all-reduce), with per-epoch metrics and checkpoints and the
 * trained model written as the artifact `model`. Parameters and formats: docs/workloads.md. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jazari/kernels.h>
#include <jazari/plugin.h>

#include "dataset.h"
#include "devices.h"
#include "mlpdev.h"
#include "model.h"

#define MAX_HIDDEN (JZ_MLP_MAX_LAYERS - 1)
#define CKPT_MAGIC "JZTRCKP1"
#define CKPT_VERSION 1u

static const struct jz_param_spec train_params[] = {
    {.name = "dataset", .type = JZ_PARAM_STRING, .required = true, .min = 1, .max = 4096,
     .help = "folder with train/t10k IDX files (gzipped or not) or train.csv + test.csv"},
    {.name = "layers", .type = JZ_PARAM_INT_LIST, .default_json = "[256,128]", .min = 0,
     .max = MAX_HIDDEN, .help = "hidden layer widths, e.g. 256,128 (each 1..65536)"},
    {.name = "activation", .type = JZ_PARAM_STRING, .default_json = "\"relu\"",
     .choices = "relu|gelu", .help = "hidden-layer activation"},
    {.name = "optimizer", .type = JZ_PARAM_STRING, .default_json = "\"adam\"",
     .choices = "sgd|adam", .help = "sgd (with momentum) or adam (AdamW when weight_decay > 0)"},
    {.name = "lr", .type = JZ_PARAM_FLOAT, .default_json = "0.001", .min = 1e-8, .max = 10,
     .help = "base learning rate"},
    {.name = "lr_schedule", .type = JZ_PARAM_STRING, .default_json = "\"cosine\"",
     .choices = "constant|cosine|step",
     .help = "constant; cosine decay to 0 over all steps; step: x0.1 at 50% and 75% of epochs"},
    {.name = "momentum", .type = JZ_PARAM_FLOAT, .default_json = "0.9", .min = 0, .max = 0.999,
     .help = "SGD momentum"},
    {.name = "weight_decay", .type = JZ_PARAM_FLOAT, .default_json = "0", .min = 0, .max = 1,
     .help = "L2 (sgd) or decoupled (adam) weight decay on weights"},
    {.name = "batch_size", .type = JZ_PARAM_INT, .default_json = "128", .min = 1, .max = 65536,
     .help = "global mini-batch size, split across devices"},
    {.name = "epochs", .type = JZ_PARAM_INT, .default_json = "10", .min = 1, .max = 10000,
     .help = "passes over the training set"},
    {.name = "seed", .type = JZ_PARAM_INT, .default_json = "1", .min = 0, .max = 9007199254740991.0,
     .help = "seed for initialisation and shuffling"},
    {.name = "train_limit", .type = JZ_PARAM_INT, .default_json = "0", .min = 0, .max = 10000000,
     .help = "use only the first N training samples (0: all)"},
    {.name = "test_limit", .type = JZ_PARAM_INT, .default_json = "0", .min = 0, .max = 10000000,
     .help = "evaluate on only the first N test samples (0: all)"},
};

/* Everything one run needs, so that helpers take one pointer. */
struct trainer {
    jz_ctx_t *ctx;
    const struct jz_host *host;
    struct jz_error err;
    struct jz_dataset train, test;
    struct jz_mlp model; /* host copy: shape, normalisation, weights at save time */
    struct jz_pdevs devs;
    struct jz_mlpdev md[JZ_KCOMM_MAX_DEVICES];
    enum jz_mlpdev_opt opt;
    float lr, momentum, weight_decay;
    int schedule; /* 0 constant, 1 cosine, 2 step */
    size_t batch, epochs, steps_per_epoch;
    uint64_t seed;
    /* position: resume restores these */
    size_t epoch, next_batch;
    int64_t step;
    double part_loss, part_correct, part_seen, part_seconds;
    int32_t *yb;
    uint32_t *perm; /* this epoch's order of the training rows */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The order of epoch e depends only on (seed, e), so a resumed run sees the same batches. */
static void epoch_order(struct trainer *t, size_t e)
{
    uint64_t s = t->seed * 0x100000001B3ull ^ (0xA0761D6478BD642Full * (e + 1));
    size_t n = t->train.rows;
    for (size_t i = 0; i < n; i++)
        t->perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(splitmix64(&s) % (i + 1));
        uint32_t tmp = t->perm[i];
        t->perm[i] = t->perm[j];
        t->perm[j] = tmp;
    }
}

static float lr_at(const struct trainer *t, int64_t step, size_t epoch)
{
    double total = (double)(t->steps_per_epoch * t->epochs);
    switch (t->schedule) {
    case 1: return (float)(t->lr * 0.5 * (1.0 + cos(M_PI * (double)step / total)));
    case 2: {
        double f = (double)epoch / (double)t->epochs;
        return (float)(t->lr * (f >= 0.75 ? 0.01 : f >= 0.5 ? 0.1 : 1.0));
    }
    default: return t->lr;
    }
}

/* He-normal weights and zero biases on device 0 (Philox, so the same on every backend), then
 * broadcast so every rank starts identical. */
static int init_weights(struct trainer *t)
{
    struct jz_mlpdev *d0 = &t->md[0];
    for (uint32_t l = 0; l < d0->L; l++) {
        size_t in = d0->sizes[l], out = d0->sizes[l + 1];
        float sd = (float)sqrt(2.0 / (double)in);
        int rc = jz_k_rand_normal(d0->dev, in * out, t->seed, (uint64_t)l << 40, 0.0f, sd,
                                  d0->w[l], &t->err);
        if (!rc)
            rc = jz_k_fill(d0->dev, out, 0.0f, d0->b[l], &t->err);
        if (rc)
            return rc;
        jz_kbuf_t *bw[JZ_KCOMM_MAX_DEVICES], *bb[JZ_KCOMM_MAX_DEVICES];
        for (size_t i = 0; i < t->devs.n; i++)
            bw[i] = t->md[i].w[l], bb[i] = t->md[i].b[l];
        if (t->devs.n > 1 && ((rc = jz_kcomm_broadcast(t->devs.comm, bw, in * out, 0, &t->err)) ||
                              (rc = jz_kcomm_broadcast(t->devs.comm, bb, out, 0, &t->err))))
            return rc;
    }
    return 0;
}

/* ---- checkpoints ---------------------------------------------------------------------- */

static int save_checkpoint(struct trainer *t)
{
    char path[4096];
    struct jz_error *err = &t->err;
    int rc = t->host->checkpoint_begin(t->ctx, path, sizeof path);
    if (rc)
        return jz_error_set(err, rc, "no checkpoint path from the host");
    size_t ns = jz_mlpdev_state_count(&t->md[0]);
    float *state = malloc((ns ? ns : 1) * sizeof *state);
    uint8_t *model = NULL;
    size_t model_len = 0;
    float acc[2];
    if (!state) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory for the checkpoint");
        goto done;
    }
    /* Every rank holds the same weights and state; rank 0's copy is the job's. */
    if ((rc = jz_mlpdev_download(&t->md[0], &t->model, err)) ||
        (rc = jz_mlpdev_state_download(&t->md[0], state, err)) ||
        (rc = jz_mlp_encode(&t->model, &model, &model_len, err)))
        goto done;
    double loss = t->part_loss, correct = t->part_correct;
    for (size_t i = 0; i < t->devs.n; i++) {
        if ((rc = jz_kbuf_read(t->md[i].acc_loss, 0, &acc[0], 4, err)) ||
            (rc = jz_kbuf_read(t->md[i].acc_correct, 0, &acc[1], 4, err)))
            goto done;
        loss += acc[0];
        correct += acc[1];
    }
    struct jz_bytes b = {0};
    jz_bytes_put(&b, CKPT_MAGIC, 8);
    jz_bytes_u32(&b, CKPT_VERSION);
    jz_bytes_u32(&b, (uint32_t)t->opt);
    jz_bytes_u64(&b, t->epoch);
    jz_bytes_u64(&b, t->next_batch);
    jz_bytes_u64(&b, (uint64_t)t->step);
    jz_bytes_f64(&b, loss);
    jz_bytes_f64(&b, correct);
    jz_bytes_f64(&b, t->part_seen);
    jz_bytes_f64(&b, t->part_seconds);
    jz_bytes_u64(&b, model_len);
    jz_bytes_put(&b, model, model_len);
    jz_bytes_u64(&b, ns);
    jz_bytes_put(&b, state, ns * sizeof *state);
    if (!b.failed)
        jz_bytes_u32(&b, jz_crc32(b.data, b.len));
    if (b.failed) {
        free(b.data);
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory for the checkpoint");
        goto done;
    }
    rc = jz_file_write_atomic(path, b.data, b.len, err);
    free(b.data);
    if (rc == 0 && (rc = t->host->checkpoint_commit(t->ctx)) != 0)
        jz_error_set(err, rc, "checkpoint commit failed");
done:
    free(state);
    free(model);
    return rc;
}

/* Restores position, weights, normalisation and optimizer state; refuses a checkpoint of another
 * network or optimizer. */
static int load_checkpoint(struct trainer *t, const char *path)
{
    struct jz_error *err = &t->err;
    uint8_t *buf = NULL;
    size_t len = 0;
    float *state = NULL;
    struct jz_mlp m = {0};
    int rc = jz_file_read_all(path, JZ_MLP_MAX_FILE * 4ull, &buf, &len, err);
    if (rc)
        return rc;
    struct jz_reader r = {buf, len};
    char magic[8];
    uint32_t version = 0, opt = 0, crc = 0;
    uint64_t epoch = 0, next_batch = 0, step = 0, model_len = 0, ns = 0;
    double loss = 0, correct = 0, seen = 0, secs = 0;
    if (len < 12 || memcmp(buf, CKPT_MAGIC, 8) != 0) {
        rc = jz_error_set(err, JZ_ECORRUPT, "%s is not a train checkpoint", path);
        goto done;
    }
    memcpy(&crc, buf + len - 4, 4);
    if (crc != jz_crc32(buf, len - 4)) {
        rc = jz_error_set(err, JZ_ECORRUPT, "checkpoint %s: checksum mismatch", path);
        goto done;
    }
    r.left -= 4;
    if (jz_reader_take(&r, magic, 8) || jz_reader_u32(&r, &version) || jz_reader_u32(&r, &opt) ||
        jz_reader_u64(&r, &epoch) || jz_reader_u64(&r, &next_batch) || jz_reader_u64(&r, &step) ||
        jz_reader_f64(&r, &loss) || jz_reader_f64(&r, &correct) || jz_reader_f64(&r, &seen) ||
        jz_reader_f64(&r, &secs) || jz_reader_u64(&r, &model_len) || model_len > r.left) {
        rc = jz_error_set(err, JZ_ECORRUPT, "checkpoint %s: truncated header", path);
        goto done;
    }
    if (version != CKPT_VERSION) {
        rc = jz_error_set(err, JZ_ECORRUPT, "checkpoint version %u not supported", version);
        goto done;
    }
    if ((rc = jz_mlp_decode(r.p, model_len, &m, err)))
        goto done;
    r.p += model_len;
    r.left -= model_len;
    bool same = m.n_layers == t->model.n_layers && m.activation == t->model.activation &&
                memcmp(m.sizes, t->model.sizes, (m.n_layers + 1) * sizeof m.sizes[0]) == 0;
    if (!same || opt != (uint32_t)t->opt) {
        rc = jz_error_set(err, JZ_ECORRUPT,
                     "checkpoint was written for another network or optimizer; resubmit with the same "
                     "layers, activation and optimizer");
        goto done;
    }
    size_t want_ns = jz_mlpdev_state_count(&t->md[0]);
    if (jz_reader_u64(&r, &ns) || ns != want_ns || r.left != ns * sizeof(float)) {
        rc = jz_error_set(err, JZ_ECORRUPT, "checkpoint %s: optimizer state has the wrong size", path);
        goto done;
    }
    state = malloc((ns ? ns : 1) * sizeof *state);
    if (!state) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto done;
    }
    jz_reader_take(&r, state, ns * sizeof *state);
    for (size_t i = 0; i < t->devs.n; i++)
        if ((rc = jz_mlpdev_upload(&t->md[i], &m, err)) ||
            (rc = jz_mlpdev_state_upload(&t->md[i], state, err)))
            goto done;
    /* The normalisation the weights were trained with wins over a recomputed one. */
    memcpy(t->model.mean, m.mean, m.sizes[0] * sizeof(float));
    memcpy(t->model.std, m.std, m.sizes[0] * sizeof(float));
    t->epoch = epoch;
    t->next_batch = next_batch;
    t->step = (int64_t)step;
    t->part_loss = loss;
    t->part_correct = correct;
    t->part_seen = seen;
    t->part_seconds = secs;
done:
    jz_mlp_free(&m);
    free(state);
    free(buf);
    return rc;
}

/* ---- training and evaluation ------------------------------------------------------------ */

/* The forward pass over rows of a data set in host memory: where the device is the host's
 * memory (cpu), from a buffer over the rows where they are; elsewhere copied in first. */
static int forward_host_rows(struct jz_mlpdev *d, float *x, size_t rows, size_t F,
                             struct jz_error *err)
{
    size_t bytes = rows * F * sizeof(float);
    if (jz_kdev_backend(d->dev) != JZ_KBACKEND_CPU) {
        int rc = jz_kbuf_write(d->x, 0, x, bytes, err);
        return rc ? rc : jz_mlpdev_forward(d, rows, err);
    }
    jz_kbuf_t *in;
    int rc = jz_kbuf_wrap_host(d->dev, x, bytes, &in, err);
    if (rc)
        return rc;
    rc = jz_mlpdev_forward_from(d, in, rows, err);
    jz_kbuf_free(in);
    return rc;
}

/* Loss and accuracy over a whole set, its rows dealt to devices in chunks. */
static int evaluate(struct trainer *t, const struct jz_dataset *ds, double *loss, double *accuracy)
{
    struct jz_error *err = &t->err;
    int rc;
    for (size_t i = 0; i < t->devs.n; i++)
        if ((rc = jz_mlpdev_reset_acc(&t->md[i], err)))
            return rc;
    size_t F = ds->features, cap = t->md[0].rows_cap;
    size_t chunk = 0;
    for (size_t r0 = 0; r0 < ds->rows; r0 += cap, chunk++) {
        struct jz_mlpdev *d = &t->md[chunk % t->devs.n];
        size_t rows = ds->rows - r0 < cap ? ds->rows - r0 : cap;
        if ((rc = jz_kbuf_write(d->y, 0, ds->y + r0, rows * sizeof(int32_t), err)) ||
            (rc = forward_host_rows(d, ds->x + r0 * F, rows, F, err)) ||
            (rc = jz_mlpdev_score(d, rows, err)))
            return rc;
    }
    double l = 0, c = 0;
    for (size_t i = 0; i < t->devs.n; i++) {
        float a[2];
        if ((rc = jz_kbuf_read(t->md[i].acc_loss, 0, &a[0], 4, err)) ||
            (rc = jz_kbuf_read(t->md[i].acc_correct, 0, &a[1], 4, err)))
            return rc;
        l += a[0];
        c += a[1];
    }
    *loss = l / (double)ds->rows;
    *accuracy = c / (double)ds->rows;
    return 0;
}

/* One optimizer step on the global batch starting at position `first` of this epoch's order. */
static int train_step(struct trainer *t, size_t first, size_t rows)
{
    struct jz_error *err = &t->err;
    size_t F = t->train.features, k = t->devs.n;
    for (size_t i = 0; i < rows; i++)
        t->yb[i] = t->train.y[t->perm[first + i]];
    /* Rank d takes a contiguous slice; every rank scales by the global batch so the all-reduced
     * sum is the gradient of the global mean loss whatever k is. */
    float scale = 1.0f / (float)rows;
    int rc;
    for (size_t d = 0; d < k; d++) {
        size_t lo = rows * d / k, hi = rows * (d + 1) / k, n = hi - lo;
        struct jz_mlpdev *m = &t->md[d];
        /* The rows go straight from the data set into the device buffer (on the cpu backend on
         * the compute threads; other devices get one transfer of the gathered slice). */
        if (n > 0 && ((rc = jz_kbuf_write_rows(m->x, 0, t->train.x, t->train.rows,
                                               F * sizeof(float), t->perm + first + lo, n, err)) ||
                      (rc = jz_kbuf_write(m->y, 0, t->yb + lo, n * sizeof(int32_t), err)) ||
                      (rc = jz_mlpdev_forward(m, n, err)) || (rc = jz_mlpdev_score(m, n, err))))
            return rc;
        if ((rc = jz_mlpdev_backward(m, n, scale, err)))
            return rc;
    }
    if (k > 1) {
        for (uint32_t l = 0; l < t->model.n_layers; l++) {
            jz_kbuf_t *gw[JZ_KCOMM_MAX_DEVICES], *gb[JZ_KCOMM_MAX_DEVICES];
            for (size_t d = 0; d < k; d++)
                gw[d] = t->md[d].gw[l], gb[d] = t->md[d].gb[l];
            size_t in = t->model.sizes[l], out = t->model.sizes[l + 1];
            if ((rc = jz_kcomm_allreduce_sum(t->devs.comm, gw, in * out, err)) ||
                (rc = jz_kcomm_allreduce_sum(t->devs.comm, gb, out, err)))
                return rc;
        }
    }
    t->step++;
    float lr = lr_at(t, t->step - 1, t->epoch);
    for (size_t d = 0; d < k; d++) {
        rc = t->opt == JZ_MLPDEV_ADAM
                 ? jz_mlpdev_update_adam(&t->md[d], lr, t->weight_decay, t->step, err)
                 : jz_mlpdev_update_sgd(&t->md[d], lr, t->momentum, t->weight_decay, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int read_params(struct trainer *t, uint32_t *sizes, uint32_t *n_layers)
{
    const struct jz_host *h = t->host;
    jz_ctx_t *c = t->ctx;
    size_t nh = h->param_list_len(c, "layers");
    if (nh > MAX_HIDDEN)
        return jz_error_set(&t->err, JZ_ELIMIT, "at most %d hidden layers", MAX_HIDDEN);
    for (size_t i = 0; i < nh; i++) {
        int64_t v = h->param_list_int(c, "layers", i);
        if (v < 1 || v > (int64_t)JZ_MLP_MAX_WIDTH)
            return jz_error_set(&t->err, JZ_EINVAL, "layers[%zu] = %lld is outside 1..%u", i,
                           (long long)v, JZ_MLP_MAX_WIDTH);
        sizes[i + 1] = (uint32_t)v;
    }
    *n_layers = (uint32_t)nh + 1;
    const char *opt = h->param_string(c, "optimizer");
    t->opt = opt && strcmp(opt, "sgd") == 0 ? JZ_MLPDEV_SGD : JZ_MLPDEV_ADAM;
    const char *sch = h->param_string(c, "lr_schedule");
    t->schedule = !sch || strcmp(sch, "cosine") == 0 ? 1 : strcmp(sch, "step") == 0 ? 2 : 0;
    t->lr = (float)h->param_float(c, "lr");
    t->momentum = (float)h->param_float(c, "momentum");
    t->weight_decay = (float)h->param_float(c, "weight_decay");
    t->batch = (size_t)h->param_int(c, "batch_size");
    t->epochs = (size_t)h->param_int(c, "epochs");
    t->seed = (uint64_t)h->param_int(c, "seed");
    if (t->batch < 1 || t->epochs < 1 || !(t->lr > 0))
        return jz_error_set(&t->err, JZ_EINVAL, "batch_size, epochs and lr must be positive");
    return 0;
}

static void limit_rows(struct jz_dataset *ds, int64_t limit)
{
    if (limit > 0 && (size_t)limit < ds->rows)
        ds->rows = (size_t)limit; /* the arrays keep their size; only the count shrinks */
}

static int write_model(struct trainer *t)
{
    char path[4096];
    int rc = t->host->artifact_path(t->ctx, "model", path, sizeof path);
    if (rc)
        return jz_error_set(&t->err, rc, "cannot name the model artifact");
    if ((rc = jz_mlpdev_download(&t->md[0], &t->model, &t->err)))
        return rc;
    return jz_mlp_save(&t->model, path, &t->err);
}

static int train_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    struct trainer *t = calloc(1, sizeof *t);
    if (!t) {
        host->set_error(ctx, "train: out of memory");
        return 1;
    }
    t->ctx = ctx;
    t->host = host;
    int rc = 0;
    uint32_t sizes[JZ_MLP_MAX_LAYERS + 1] = {0}, n_layers = 0;
    if ((rc = read_params(t, sizes, &n_layers)))
        goto fail;
    const char *dir = host->param_string(ctx, "dataset");
    if (!dir || !*dir) {
        rc = jz_error_set(&t->err, JZ_EINVAL, "dataset is required");
        goto fail;
    }
    double t0 = now_s();
    if ((rc = jz_dataset_load_dir(dir, &t->train, &t->test, &t->err)))
        goto fail;
    limit_rows(&t->train, host->param_int(ctx, "train_limit"));
    limit_rows(&t->test, host->param_int(ctx, "test_limit"));
    if (t->train.rows < 1 || t->train.classes < 2) {
        rc = jz_error_set(&t->err, JZ_EINVAL, "the training set needs rows of at least 2 classes");
        goto fail;
    }
    if (t->train.features > JZ_MLP_MAX_WIDTH) {
        rc = jz_error_set(&t->err, JZ_ELIMIT, "%zu input features (limit %u)", t->train.features,
                     JZ_MLP_MAX_WIDTH);
        goto fail;
    }
    /* Each device's batch and activations scale with batch x width. */
    if ((double)t->batch * (double)t->train.features > (double)JZ_DATASET_MAX_ELEMS / 4) {
        rc = jz_error_set(&t->err, JZ_ELIMIT, "batch_size %zu x %zu features exceeds %zu values", t->batch,
                     t->train.features, JZ_DATASET_MAX_ELEMS / 4);
        goto fail;
    }
    sizes[0] = (uint32_t)t->train.features;
    sizes[n_layers] = (uint32_t)t->train.classes;
    const char *act = host->param_string(ctx, "activation");
    if ((rc = jz_mlp_alloc(&t->model, n_layers, sizes,
                           act && strcmp(act, "gelu") == 0 ? JZ_MLP_GELU
                                                                                      : JZ_MLP_RELU,
                           &t->err)))
        goto fail;
    host->log(ctx, JZ_LOG_INFO, "train: %zu training and %zu test samples of %zu features, %d classes (%.1f s to load)",
              t->train.rows, t->test.rows, t->train.features, t->train.classes, now_s() - t0);

    /* Normalisation from the training set: per-feature mean, and std floored at a quarter of
     * the average std so near-constant features (image borders) are not blown up. */
    jz_dataset_stats(&t->train, 0, t->model.mean, t->model.std);
    double avg_std = 0;
    for (size_t j = 0; j < t->train.features; j++)
        avg_std += t->model.std[j];
    avg_std /= (double)t->train.features;
    float floor_std = (float)(avg_std > 0 ? 0.25 * avg_std : 1.0);
    for (size_t j = 0; j < t->train.features; j++)
        if (!(t->model.std[j] >= floor_std))
            t->model.std[j] = floor_std;

    if ((rc = jz_pdevs_open(ctx, host, JZ_KCOMM_MAX_DEVICES, &t->devs, &t->err)))
        goto fail;
    host->log(ctx, JZ_LOG_INFO, "train: devices %s", t->devs.summary);
    size_t k = t->devs.n;
    size_t per_rank = (t->batch + k - 1) / k;
    size_t cap = per_rank > 512 ? per_rank : 512; /* evaluation chunks */
    size_t most_rows = t->train.rows > t->test.rows ? t->train.rows : t->test.rows;
    if (cap > most_rows)
        cap = most_rows > 0 ? most_rows : 1; /* never more rows than the data has */
    /* Each device holds about three activations of cap x width per layer: bound the widest. */
    size_t widest = 0;
    for (size_t l = 1; l <= n_layers; l++)
        if (sizes[l] > widest)
            widest = sizes[l];
    if ((double)cap * (double)widest * 3.0 * (double)n_layers > (double)JZ_DATASET_MAX_ELEMS / 4) {
        rc = jz_error_set(&t->err, JZ_ELIMIT,
                          "batch_size %zu with layers up to %zu wide needs more than %zu values "
                          "of activations per device; use a smaller batch or narrower layers",
                          t->batch, widest, JZ_DATASET_MAX_ELEMS / 4);
        goto fail;
    }
    for (size_t i = 0; i < k; i++)
        if ((rc = jz_mlpdev_create(&t->md[i], t->devs.dev[i], &t->model, cap, t->opt, &t->err)))
            goto fail;
    t->steps_per_epoch = (t->train.rows + t->batch - 1) / t->batch;
    t->yb = malloc(t->batch * sizeof(int32_t));
    t->perm = malloc(t->train.rows * sizeof(uint32_t));
    if (!t->yb || !t->perm) {
        rc = jz_error_set(&t->err, JZ_ENOMEM, "out of memory for batches");
        goto fail;
    }
    for (size_t i = 0; i < k; i++)
        if ((rc = jz_mlpdev_reset_state(&t->md[i], &t->err)))
            goto fail;
    const char *restore = host->checkpoint_restore_path(ctx);
    if (restore) {
        if ((rc = load_checkpoint(t, restore)))
            goto fail;
        host->log(ctx, JZ_LOG_INFO, "train: resuming at epoch %zu, batch %zu (step %lld)",
                  t->epoch + 1, t->next_batch, (long long)t->step);
    } else if ((rc = init_weights(t))) {
        goto fail;
    }
    jz_dataset_normalise(&t->train, t->model.mean, t->model.std);
    jz_dataset_normalise(&t->test, t->model.mean, t->model.std);

    bool cancelled = false;
    double last_progress = now_s();
    for (; t->epoch < t->epochs; t->epoch++) {
        epoch_order(t, t->epoch);
        for (size_t i = 0; i < k; i++)
            if ((rc = jz_mlpdev_reset_acc(&t->md[i], &t->err)))
                goto fail;
        double start = now_s();
        bool ckpt_failed = false;
        for (; t->next_batch < t->steps_per_epoch; t->next_batch++) {
            if (host->cancelled(ctx)) {
                cancelled = true;
                break;
            }
            /* A failed save is not retried on every batch (the request stays set until a
             * commit succeeds): once per epoch is enough, and logs once. */
            if (host->checkpoint_requested(ctx) && !ckpt_failed) {
                t->part_seconds += now_s() - start;
                start = now_s();
                if ((rc = save_checkpoint(t))) {
                    ckpt_failed = true;
                    host->log(ctx, JZ_LOG_WARN, "train: checkpoint failed: %s", t->err.msg);
                }
            }
            size_t first = t->next_batch * t->batch;
            size_t rows = t->train.rows - first < t->batch ? t->train.rows - first : t->batch;
            if ((rc = train_step(t, first, rows)))
                goto fail;
            t->part_seen += (double)rows;
            if (now_s() - last_progress > 1.0) { /* long epochs still show movement */
                last_progress = now_s();
                host->progress(ctx, ((double)t->epoch + (double)(t->next_batch + 1) /
                                                            (double)t->steps_per_epoch) /
                                        (double)t->epochs, NULL);
            }
        }
        t->part_seconds += now_s() - start;
        if (cancelled)
            break;
        double loss = t->part_loss, correct = t->part_correct;
        for (size_t i = 0; i < k; i++) {
            float a[2];
            if ((rc = jz_kbuf_read(t->md[i].acc_loss, 0, &a[0], 4, &t->err)) ||
                (rc = jz_kbuf_read(t->md[i].acc_correct, 0, &a[1], 4, &t->err)))
                goto fail;
            loss += a[0];
            correct += a[1];
        }
        double seen = t->part_seen > 0 ? t->part_seen : 1;
        double train_loss = loss / seen, train_acc = correct / seen;
        double sps = t->part_seconds > 0 ? t->part_seen / t->part_seconds : 0;
        double epoch_s = t->part_seconds;
        if (!isfinite(train_loss)) {
            /* Diverged: a model of NaNs would only be refused later by infer and by resume. */
            rc = jz_error_set(&t->err, JZ_ERANGE,
                              "training diverged in epoch %zu (the loss is not finite); "
                              "lower lr or use another optimizer",
                              t->epoch + 1);
            goto fail;
        }
        double test_loss = NAN, test_acc = NAN;
        if (t->test.rows > 0 && (rc = evaluate(t, &t->test, &test_loss, &test_acc)))
            goto fail;
        int64_t e1 = (int64_t)t->epoch + 1;
        host->metric(ctx, "epoch", (double)e1, e1);
        host->metric(ctx, "train_loss", train_loss, e1);
        host->metric(ctx, "train_accuracy", train_acc, e1);
        if (t->test.rows > 0) {
            host->metric(ctx, "test_loss", test_loss, e1);
            host->metric(ctx, "test_accuracy", test_acc, e1);
        }
        host->metric(ctx, "samples_per_s", sps, e1);
        host->metric(ctx, "epoch_s", epoch_s, e1);
        host->metric(ctx, "lr", lr_at(t, t->step, t->epoch), e1);
        char msg[256];
        snprintf(msg, sizeof msg, "epoch %lld/%zu: train_loss %.4f train_accuracy %.4f test_accuracy %.4f, %.0f samples/s",
                 (long long)e1, t->epochs, train_loss, train_acc, test_acc, sps);
        host->progress(ctx, (double)e1 / (double)t->epochs, msg);
        host->log(ctx, JZ_LOG_INFO, "train: %s", msg);
        /* The next epoch starts clean; the checkpoint records that position. */
        t->next_batch = 0;
        t->part_loss = t->part_correct = t->part_seen = t->part_seconds = 0;
        t->epoch++;
        for (size_t i = 0; i < k; i++)
            if ((rc = jz_mlpdev_reset_acc(&t->md[i], &t->err)))
                goto fail;
        rc = save_checkpoint(t);
        t->epoch--;
        if (rc)
            host->log(ctx, JZ_LOG_WARN, "train: checkpoint failed: %s", t->err.msg);
    }
    if (cancelled) {
        if ((rc = save_checkpoint(t))) {
            host->log(ctx, JZ_LOG_WARN, "train: checkpoint on cancel failed: %s", t->err.msg);
            host->set_error(ctx, "train: cancelled at epoch %zu, batch %zu (no checkpoint)",
                            t->epoch + 1, t->next_batch);
        } else {
            host->set_error(ctx,
                            "train: cancelled at epoch %zu, batch %zu; the checkpoint resumes there",
                            t->epoch + 1, t->next_batch);
        }
        rc = JZ_ECANCELED;
        goto out;
    }
    if ((rc = write_model(t)))
        goto fail;
    host->log(ctx, JZ_LOG_INFO, "train: wrote the model (%zu parameters)",
              jz_mlp_param_count(&t->model));
    rc = 0;
    goto out;
fail:
    host->set_error(ctx, "train: %s", t->err.msg[0] ? t->err.msg : "failed");
out:
    for (size_t i = 0; i < JZ_KCOMM_MAX_DEVICES; i++)
        if (t->md[i].dev)
            jz_mlpdev_destroy(&t->md[i]);
    jz_pdevs_close(&t->devs);
    jz_dataset_free(&t->train);
    jz_dataset_free(&t->test);
    jz_mlp_free(&t->model);
    free(t->yb);
    free(t->perm);
    free(t);
    return rc ? 1 : 0;
}

static const struct jz_plugin_ops train_ops = {
    .struct_size = sizeof(struct jz_plugin_ops),
    .run = train_run,
};

JZ_PLUGIN_DEFINE(.name = "train", .version = "1.0.0",
                 .description = "Trains an MLP classifier on IDX or CSV data, data-parallel over the job's devices",
                 .caps = JZ_CAP_USES_GPU | JZ_CAP_CHECKPOINT, .params = train_params,
                 .n_params = JZ_ARRAY_LEN(train_params), .ops = &train_ops);
