/* MLP forward/backward on one device with the kernels API (see mlpdev.h). Weights are stored
 * input-major (in x out), so a layer is one GEMM z = x W with no transposes. */
#include "mlpdev.h"

#include <stdlib.h>
#include <string.h>

#define CK(expr)                                                                               \
    do {                                                                                       \
        int rc_ = (expr);                                                                      \
        if (rc_)                                                                               \
            return rc_;                                                                        \
    } while (0)

static int alloc_f(jz_kdev_t *dev, size_t n, jz_kbuf_t **out, struct jz_error *err)
{
    return jz_kbuf_alloc(dev, (n ? n : 1) * sizeof(float), out, err);
}

void jz_mlpdev_destroy(struct jz_mlpdev *d)
{
    jz_kbuf_t **groups[] = {d->w, d->b, d->z, d->a, d->g, d->gw, d->gb, d->s1w, d->s1b, d->s2w, d->s2b};
    for (size_t k = 0; k < sizeof groups / sizeof groups[0]; k++)
        for (int l = 0; l < JZ_MLP_MAX_LAYERS; l++)
            jz_kbuf_free(groups[k][l]);
    jz_kbuf_free(d->x);
    jz_kbuf_free(d->y);
    jz_kbuf_free(d->tmp);
    jz_kbuf_free(d->acc_loss);
    jz_kbuf_free(d->acc_correct);
    jz_kbuf_free(d->loss);
    jz_kbuf_free(d->probs);
    memset(d, 0, sizeof *d);
}

int jz_mlpdev_create(struct jz_mlpdev *d, jz_kdev_t *dev, const struct jz_mlp *m, size_t rows_cap,
                     enum jz_mlpdev_opt opt, struct jz_error *err)
{
    memset(d, 0, sizeof *d);
    d->dev = dev;
    d->L = m->n_layers;
    memcpy(d->sizes, m->sizes, sizeof d->sizes);
    d->act = m->activation == JZ_MLP_GELU ? JZ_KACT_GELU : JZ_KACT_RELU;
    d->opt = opt;
    d->rows_cap = rows_cap ? rows_cap : 1;
    size_t R = d->rows_cap, C = m->sizes[m->n_layers];
    int rc = 0;
#define A(n, p)                                                                                \
    if ((rc = alloc_f(dev, (n), (p), err)))                                                    \
        goto fail;
    /* An inference-only model on the cpu backend reads its rows where they are (a buffer
     * over them, jz_kbuf_wrap_host): an input buffer would be batch x features unused
     * (3 MiB at the infer plugin's batch of 1024 Fashion-MNIST rows). */
    if (!(opt == JZ_MLPDEV_INFER && jz_kdev_backend(dev) == JZ_KBACKEND_CPU))
        A(R * m->sizes[0], &d->x);
    A(R, &d->y);
    A(1, &d->tmp);
    A(1, &d->acc_loss);
    A(1, &d->acc_correct);
    A(R, &d->loss);
    A(R * C, &d->probs);
    for (uint32_t l = 0; l < d->L; l++) {
        size_t in = m->sizes[l], out = m->sizes[l + 1];
        A(in * out, &d->w[l]);
        A(out, &d->b[l]);
        A(R * out, &d->z[l]);
        if (opt == JZ_MLPDEV_INFER)
            continue;
        if (l + 1 < d->L)
            A(R * out, &d->a[l]);
        if (l + 1 < d->L)
            A(R * out, &d->g[l]);
        A(in * out, &d->gw[l]);
        A(out, &d->gb[l]);
        A(in * out, &d->s1w[l]);
        A(out, &d->s1b[l]);
        if (opt == JZ_MLPDEV_ADAM) {
            A(in * out, &d->s2w[l]);
            A(out, &d->s2b[l]);
        }
    }
#undef A
    return 0;
fail:
    jz_mlpdev_destroy(d);
    return rc;
}

int jz_mlpdev_upload(struct jz_mlpdev *d, const struct jz_mlp *m, struct jz_error *err)
{
    for (uint32_t l = 0; l < d->L; l++) {
        size_t in = d->sizes[l], out = d->sizes[l + 1];
        CK(jz_kbuf_write(d->w[l], 0, m->w[l], in * out * sizeof(float), err));
        CK(jz_kbuf_write(d->b[l], 0, m->b[l], out * sizeof(float), err));
    }
    return 0;
}

int jz_mlpdev_download(struct jz_mlpdev *d, struct jz_mlp *m, struct jz_error *err)
{
    for (uint32_t l = 0; l < d->L; l++) {
        size_t in = d->sizes[l], out = d->sizes[l + 1];
        CK(jz_kbuf_read(d->w[l], 0, m->w[l], in * out * sizeof(float), err));
        CK(jz_kbuf_read(d->b[l], 0, m->b[l], out * sizeof(float), err));
    }
    return 0;
}

size_t jz_mlpdev_state_count(const struct jz_mlpdev *d)
{
    size_t n = 0;
    for (uint32_t l = 0; l < d->L; l++)
        n += (size_t)d->sizes[l] * d->sizes[l + 1] + d->sizes[l + 1];
    return d->opt == JZ_MLPDEV_ADAM ? 2 * n : d->opt == JZ_MLPDEV_SGD ? n : 0;
}

/* Calls fn on every state buffer in the documented order with its element count. */
static int each_state(struct jz_mlpdev *d, float *host, bool up, struct jz_error *err)
{
    jz_kbuf_t **sets[2][2] = {{d->s1w, d->s1b}, {d->s2w, d->s2b}};
    int nsets = d->opt == JZ_MLPDEV_ADAM ? 2 : d->opt == JZ_MLPDEV_SGD ? 1 : 0;
    size_t off = 0;
    for (int s = 0; s < nsets; s++)
        for (uint32_t l = 0; l < d->L; l++)
            for (int wb = 0; wb < 2; wb++) {
                size_t n = wb ? d->sizes[l + 1] : (size_t)d->sizes[l] * d->sizes[l + 1];
                jz_kbuf_t *buf = sets[s][wb][l];
                if (up)
                    CK(jz_kbuf_write(buf, 0, host + off, n * sizeof(float), err));
                else
                    CK(jz_kbuf_read(buf, 0, host + off, n * sizeof(float), err));
                off += n;
            }
    return 0;
}

int jz_mlpdev_state_upload(struct jz_mlpdev *d, const float *state, struct jz_error *err)
{
    return each_state(d, (float *)state, true, err);
}

int jz_mlpdev_state_download(struct jz_mlpdev *d, float *state, struct jz_error *err)
{
    return each_state(d, state, false, err);
}

int jz_mlpdev_reset_state(struct jz_mlpdev *d, struct jz_error *err)
{
    for (uint32_t l = 0; l < d->L && d->opt != JZ_MLPDEV_INFER; l++) {
        size_t in = d->sizes[l], out = d->sizes[l + 1];
        CK(jz_k_fill(d->dev, in * out, 0, d->s1w[l], err));
        CK(jz_k_fill(d->dev, out, 0, d->s1b[l], err));
        if (d->opt == JZ_MLPDEV_ADAM) {
            CK(jz_k_fill(d->dev, in * out, 0, d->s2w[l], err));
            CK(jz_k_fill(d->dev, out, 0, d->s2b[l], err));
        }
    }
    return jz_mlpdev_reset_acc(d, err);
}

int jz_mlpdev_reset_acc(struct jz_mlpdev *d, struct jz_error *err)
{
    CK(jz_k_fill(d->dev, 1, 0, d->acc_loss, err));
    return jz_k_fill(d->dev, 1, 0, d->acc_correct, err);
}

int jz_mlpdev_forward(struct jz_mlpdev *d, size_t rows, struct jz_error *err)
{
    if (!d->x)
        return jz_error_set(err, JZ_EINVAL,
                            "this model has no input buffer: run the forward pass from a buffer "
                            "over the rows");
    return jz_mlpdev_forward_from(d, d->x, rows, err);
}

/* Where hidden layer l's activation is: a[l], or z[l] itself for an inference-only model. */
static jz_kbuf_t *activation(struct jz_mlpdev *d, uint32_t l)
{
    return d->a[l] ? d->a[l] : d->z[l];
}

int jz_mlpdev_forward_from(struct jz_mlpdev *d, const jz_kbuf_t *x, size_t rows,
                           struct jz_error *err)
{
    if (rows < 1 || rows > d->rows_cap)
        return jz_error_set(err, JZ_EINVAL, "forward over %zu rows (1..%zu)", rows, d->rows_cap);
    for (uint32_t l = 0; l < d->L; l++) {
        size_t in = d->sizes[l], out = d->sizes[l + 1];
        const jz_kbuf_t *src = l == 0 ? x : activation(d, l - 1);
        /* One fused call per layer: z = x W, then the bias and activation (the last layer's
         * logits in place in z). */
        if (l + 1 < d->L)
            CK(jz_k_dense_forward(d->dev, d->act, rows, in, out, src, d->w[l], d->b[l], d->z[l],
                                  activation(d, l), err));
        else
            CK(jz_k_dense_forward(d->dev, JZ_KACT_NONE, rows, in, out, src, d->w[l], d->b[l],
                                  d->z[l], d->z[l], err));
    }
    return 0;
}

int jz_mlpdev_score(struct jz_mlpdev *d, size_t rows, struct jz_error *err)
{
    size_t C = d->sizes[d->L];
    jz_kbuf_t *logits = d->z[d->L - 1];
    CK(jz_k_softmax_xent_forward(d->dev, rows, C, logits, d->y, d->probs, d->loss, err));
    CK(jz_k_sum(d->dev, rows, d->loss, d->tmp, err));
    CK(jz_k_axpy(d->dev, 1, 1.0f, d->tmp, d->acc_loss, err));
    CK(jz_k_accuracy(d->dev, rows, C, logits, d->y, d->tmp, err));
    return jz_k_axpy(d->dev, 1, (float)rows, d->tmp, d->acc_correct, err);
}

int jz_mlpdev_backward(struct jz_mlpdev *d, size_t rows, float scale, struct jz_error *err)
{
    if (d->opt == JZ_MLPDEV_INFER)
        return jz_error_set(err, JZ_EINVAL, "backward on an inference-only model");
    if (rows == 0) {
        for (uint32_t l = 0; l < d->L; l++) {
            CK(jz_k_fill(d->dev, (size_t)d->sizes[l] * d->sizes[l + 1], 0, d->gw[l], err));
            CK(jz_k_fill(d->dev, d->sizes[l + 1], 0, d->gb[l], err));
        }
        return 0;
    }
    size_t C = d->sizes[d->L];
    CK(jz_k_softmax_xent_backward(d->dev, rows, C, d->probs, d->y, scale, d->probs, err));
    for (uint32_t l = d->L; l-- > 0;) {
        size_t in = d->sizes[l], out = d->sizes[l + 1];
        bool last = l + 1 == d->L;
        jz_kbuf_t *dy = last ? d->probs : d->g[l];
        CK(jz_k_bias_act_backward(d->dev, last ? JZ_KACT_NONE : d->act, rows, out, d->z[l],
                                  d->b[l], dy, dy, d->gb[l], err));
        const jz_kbuf_t *src = l == 0 ? d->x : d->a[l - 1];
        CK(jz_k_gemm(d->dev, true, false, in, out, rows, 1.0f, src, in, dy, out, 0.0f, d->gw[l],
                     out, err));
        if (l > 0)
            CK(jz_k_gemm(d->dev, false, true, rows, in, out, 1.0f, dy, out, d->w[l], out, 0.0f,
                         d->g[l - 1], in, err));
    }
    return 0;
}

int jz_mlpdev_update_sgd(struct jz_mlpdev *d, float lr, float momentum, float weight_decay,
                         struct jz_error *err)
{
    for (uint32_t l = 0; l < d->L; l++) {
        size_t in = d->sizes[l], out = d->sizes[l + 1];
        CK(jz_k_sgd_update(d->dev, in * out, d->w[l], d->gw[l], d->s1w[l], lr, momentum,
                           weight_decay, err));
        CK(jz_k_sgd_update(d->dev, out, d->b[l], d->gb[l], d->s1b[l], lr, momentum, 0, err));
    }
    return 0;
}

int jz_mlpdev_update_adam(struct jz_mlpdev *d, float lr, float weight_decay, int64_t step,
                          struct jz_error *err)
{
    struct jz_adam_params pw = {.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                                .weight_decay = weight_decay, .step = step};
    struct jz_adam_params pb = pw;
    pb.weight_decay = 0;
    for (uint32_t l = 0; l < d->L; l++) {
        size_t in = d->sizes[l], out = d->sizes[l + 1];
        CK(jz_k_adam_update(d->dev, in * out, d->w[l], d->gw[l], d->s1w[l], d->s2w[l], &pw, err));
        CK(jz_k_adam_update(d->dev, out, d->b[l], d->gb[l], d->s1b[l], d->s2b[l], &pb, err));
    }
    return 0;
}
