/* The infer plugin: batched inference with a train-plugin model over IDX or CSV input, on the
 * job's devices; writes predictions.csv and, when the input has labels, the accuracy metric and
 * confusion.csv. A corrupt, truncated or mismatched model is refused before any work. */
#define _GNU_SOURCE
#include <errno.h>
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

static const struct jz_param_spec infer_params[] = {
    {.name = "model", .type = JZ_PARAM_STRING, .required = true, .min = 1, .max = 4096,
     .help = "model file: a path, or job:ID/model for another job's artifact"},
    {.name = "input", .type = JZ_PARAM_STRING, .required = true, .min = 1, .max = 4096,
     .help = "IDX images file, .csv file, or a dataset folder (its test set)"},
    {.name = "labels", .type = JZ_PARAM_STRING, .default_json = "\"\"", .min = 0, .max = 4096,
     .help = "IDX labels file for an IDX input (optional)"},
    {.name = "batch_size", .type = JZ_PARAM_INT, .default_json = "1024", .min = 1, .max = 65536,
     .help = "rows per forward pass"},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct inferer {
    struct jz_error err;
    struct jz_mlp model;
    struct jz_dataset in;
    struct jz_pdevs devs;
    struct jz_mlpdev md[JZ_KCOMM_MAX_DEVICES];
    int32_t *pred;
    float *conf;
    float *probs;
    int32_t *neg; /* "no label" rows for the softmax kernel */
};

/* The forward pass over `rows` rows of the (normalised) input at x. A device that is the host's
 * memory (cpu) reads them where they are; others get them copied into the model's input buffer
 * (the copy was 5-9% of an inference pass on the cpu backend, for rows already in its memory). */
static int forward_rows(struct inferer *s, struct jz_mlpdev *m, float *x, size_t rows)
{
    size_t bytes = rows * s->in.features * sizeof(float);
    if (m->x) { /* not the host's memory: the model has an input buffer to copy into */
        int rc = jz_kbuf_write(m->x, 0, x, bytes, &s->err);
        return rc ? rc : jz_mlpdev_forward(m, rows, &s->err);
    }
    jz_kbuf_t *in;
    int rc = jz_kbuf_wrap_host(m->dev, x, bytes, &in, &s->err);
    if (rc)
        return rc;
    rc = jz_mlpdev_forward_from(m, in, rows, &s->err);
    jz_kbuf_free(in);
    return rc;
}

/* Forward passes over all rows, batches dealt to the devices in turn; predictions to host. */
static int predict(struct inferer *s, size_t batch)
{
    size_t F = s->in.features, C = s->model.sizes[s->model.n_layers], k = s->devs.n;
    int rc;
    for (size_t r0 = 0, chunk = 0; r0 < s->in.rows; r0 += batch * k, chunk++) {
        /* enqueue one batch per device, then collect, so devices overlap where they can */
        for (size_t d = 0; d < k; d++) {
            size_t first = r0 + d * batch;
            if (first >= s->in.rows)
                break;
            size_t rows = s->in.rows - first < batch ? s->in.rows - first : batch;
            struct jz_mlpdev *m = &s->md[d];
            if ((rc = forward_rows(s, m, s->in.x + first * F, rows)) ||
                (rc = jz_kbuf_write(m->y, 0, s->neg, rows * sizeof(int32_t), &s->err)) ||
                (rc = jz_k_softmax_xent_forward(m->dev, rows, C, m->z[m->L - 1], m->y, m->probs,
                                                NULL, &s->err)))
                return rc;
        }
        for (size_t d = 0; d < k; d++) {
            size_t first = r0 + d * batch;
            if (first >= s->in.rows)
                break;
            size_t rows = s->in.rows - first < batch ? s->in.rows - first : batch;
            if ((rc = jz_kbuf_read(s->md[d].probs, 0, s->probs, rows * C * sizeof(float), &s->err)))
                return rc;
            for (size_t r = 0; r < rows; r++) {
                const float *p = s->probs + r * C;
                size_t best = 0;
                for (size_t c = 1; c < C; c++)
                    if (p[c] > p[best])
                        best = c;
                s->pred[first + r] = (int32_t)best;
                s->conf[first + r] = p[best];
            }
        }
    }
    return 0;
}

static int write_outputs(jz_ctx_t *ctx, const struct jz_host *host, struct inferer *s,
                         double *accuracy)
{
    char path[4096];
    size_t C = s->model.sizes[s->model.n_layers];
    int rc = host->artifact_path(ctx, "predictions.csv", path, sizeof path);
    if (rc)
        return jz_error_set(&s->err, rc, "cannot name predictions.csv");
    FILE *f = fopen(path, "w");
    if (!f)
        return jz_error_set(&s->err, JZ_EIO, "cannot create %s: %s", path, strerror(errno));
    fprintf(f, s->in.y ? "index,prediction,confidence,label\n" : "index,prediction,confidence\n");
    size_t correct = 0;
    for (size_t i = 0; i < s->in.rows; i++) {
        if (s->in.y) {
            fprintf(f, "%zu,%d,%.6f,%d\n", i, s->pred[i], (double)s->conf[i], s->in.y[i]);
            correct += s->pred[i] == s->in.y[i];
        } else {
            fprintf(f, "%zu,%d,%.6f\n", i, s->pred[i], (double)s->conf[i]);
        }
    }
    if (fclose(f) != 0)
        return jz_error_set(&s->err, JZ_EIO, "cannot write %s", path);
    if (!s->in.y)
        return 0;
    *accuracy = (double)correct / (double)s->in.rows;
    uint64_t *cm = calloc(C * C, sizeof *cm);
    if (!cm)
        return jz_error_set(&s->err, JZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->in.rows; i++)
        cm[(size_t)s->in.y[i] * C + (size_t)s->pred[i]]++;
    if ((rc = host->artifact_path(ctx, "confusion.csv", path, sizeof path)) == 0) {
        f = fopen(path, "w");
        if (f) {
            /* rows: true label; columns: prediction */
            fprintf(f, "label");
            for (size_t c = 0; c < C; c++)
                fprintf(f, ",pred_%zu", c);
            fputc('\n', f);
            for (size_t r = 0; r < C; r++) {
                fprintf(f, "%zu", r);
                for (size_t c = 0; c < C; c++)
                    fprintf(f, ",%llu", (unsigned long long)cm[r * C + c]);
                fputc('\n', f);
            }
            if (fclose(f) != 0)
                rc = jz_error_set(&s->err, JZ_EIO, "cannot write %s", path);
        } else {
            rc = jz_error_set(&s->err, JZ_EIO, "cannot create %s: %s", path, strerror(errno));
        }
    } else {
        jz_error_set(&s->err, rc, "cannot name confusion.csv");
    }
    free(cm);
    return rc;
}

static int infer_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    struct inferer *s = calloc(1, sizeof *s);
    if (!s) {
        host->set_error(ctx, "infer: out of memory");
        return 1;
    }
    int rc = 0;
    const char *model_path = host->param_string(ctx, "model");
    const char *input = host->param_string(ctx, "input");
    const char *labels = host->param_string(ctx, "labels");
    size_t batch = (size_t)host->param_int(ctx, "batch_size");
    if (!model_path || !input) {
        rc = jz_error_set(&s->err, JZ_EINVAL, "model and input are required");
        goto fail;
    }
    if (strncmp(model_path, "job:", 4) == 0) {
        rc = jz_error_set(&s->err, JZ_EINVAL,
                     "model %s was not resolved to a file by the service (use job:ID/NAME)", model_path);
        goto fail;
    }
    if ((rc = jz_mlp_load(model_path, &s->model, &s->err)))
        goto fail;
    size_t F = s->model.sizes[0], C = s->model.sizes[s->model.n_layers];
    if ((rc = jz_dataset_load_input(input, labels, F, &s->in, &s->err)))
        goto fail;
    if (s->in.features != F) {
        rc = jz_error_set(&s->err, JZ_EINVAL,
                     "the model does not match the input: it takes %zu features, %s has %zu", F,
                     input, s->in.features);
        goto fail;
    }
    if (s->in.y && (size_t)s->in.classes > C) {
        rc = jz_error_set(&s->err, JZ_EINVAL,
                     "the model does not match the input: it has %zu classes, %s has label %d", C,
                     input, s->in.classes - 1);
        goto fail;
    }
    host->log(ctx, JZ_LOG_INFO, "infer: %zu rows of %zu features%s, model %u layers, %zu classes",
              s->in.rows, F, s->in.y ? " with labels" : "", s->model.n_layers, C);
    if ((rc = jz_pdevs_open(ctx, host, JZ_KCOMM_MAX_DEVICES, &s->devs, &s->err)))
        goto fail;
    host->log(ctx, JZ_LOG_INFO, "infer: devices %s", s->devs.summary);
    if (batch > s->in.rows)
        batch = s->in.rows;
    if ((double)batch * (double)F > (double)JZ_DATASET_MAX_ELEMS / 4) {
        rc = jz_error_set(&s->err, JZ_ELIMIT, "batch_size %zu x %zu features exceeds %zu values", batch,
                     F, JZ_DATASET_MAX_ELEMS / 4);
        goto fail;
    }
    for (size_t d = 0; d < s->devs.n; d++)
        if ((rc = jz_mlpdev_create(&s->md[d], s->devs.dev[d], &s->model, batch, JZ_MLPDEV_INFER,
                                   &s->err)) ||
            (rc = jz_mlpdev_upload(&s->md[d], &s->model, &s->err)))
            goto fail;
    s->pred = malloc(s->in.rows * sizeof *s->pred);
    s->conf = malloc(s->in.rows * sizeof *s->conf);
    s->probs = malloc(batch * C * sizeof *s->probs);
    s->neg = malloc(batch * sizeof *s->neg);
    if (!s->pred || !s->conf || !s->probs || !s->neg) {
        rc = jz_error_set(&s->err, JZ_ENOMEM, "out of memory for %zu predictions", s->in.rows);
        goto fail;
    }
    for (size_t i = 0; i < batch; i++)
        s->neg[i] = -1;
    jz_dataset_normalise(&s->in, s->model.mean, s->model.std);
    double t0 = now_s(); /* the rate is of the device work: transfers, forward, softmax */
    if ((rc = predict(s, batch)))
        goto fail;
    double secs = now_s() - t0;
    if (host->cancelled(ctx)) {
        host->set_error(ctx, "infer: cancelled");
        rc = JZ_ECANCELED;
        goto out;
    }
    double accuracy = NAN;
    if ((rc = write_outputs(ctx, host, s, &accuracy)))
        goto fail;
    host->metric(ctx, "samples", (double)s->in.rows, -1);
    host->metric(ctx, "infer_s", secs, -1);
    host->metric(ctx, "samples_per_s", secs > 0 ? (double)s->in.rows / secs : 0, -1);
    if (s->in.y)
        host->metric(ctx, "accuracy", accuracy, -1);
    host->progress(ctx, 1.0, NULL);
    host->log(ctx, JZ_LOG_INFO, "infer: %zu rows in %.3f s%s%.4f", s->in.rows, secs,
              s->in.y ? ", accuracy " : "", s->in.y ? accuracy : 0.0);
    rc = 0;
    goto out;
fail:
    host->set_error(ctx, "infer: %s", s->err.msg[0] ? s->err.msg : "failed");
out:
    for (size_t d = 0; d < JZ_KCOMM_MAX_DEVICES; d++)
        if (s->md[d].dev)
            jz_mlpdev_destroy(&s->md[d]);
    jz_pdevs_close(&s->devs);
    jz_mlp_free(&s->model);
    jz_dataset_free(&s->in);
    free(s->pred);
    free(s->conf);
    free(s->probs);
    free(s->neg);
    free(s);
    return rc ? 1 : 0;
}

static const struct jz_plugin_ops infer_ops = {
    .struct_size = sizeof(struct jz_plugin_ops),
    .run = infer_run,
};

JZ_PLUGIN_DEFINE(.name = "infer", .version = "1.0.0",
                 .description = "Batched inference with a train model; predictions, accuracy, confusion matrix",
                 .caps = JZ_CAP_USES_GPU, .params = infer_params,
                 .n_params = JZ_ARRAY_LEN(infer_params), .ops = &infer_ops);
