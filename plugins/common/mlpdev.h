/* An MLP resident on one compute device: weights, activations and (for training) gradients and
 * optimizer state as device buffers, with forward and backward passes on the kernels API.
 * Shared by the train and infer plugins. */
#ifndef JZ_PLUGIN_MLPDEV_H
#define JZ_PLUGIN_MLPDEV_H

#include <stdbool.h>
#include <stddef.h>

#include <jazari/kernels.h>

#include "model.h"

enum jz_mlpdev_opt { JZ_MLPDEV_INFER = 0, JZ_MLPDEV_SGD = 1, JZ_MLPDEV_ADAM = 2 };

struct jz_mlpdev {
    jz_kdev_t *dev; /* borrowed */
    uint32_t L;
    uint32_t sizes[JZ_MLP_MAX_LAYERS + 1];
    enum jz_kact act;
    enum jz_mlpdev_opt opt;
    size_t rows_cap; /* most rows one forward pass takes */
    /* all owned */
    jz_kbuf_t *w[JZ_MLP_MAX_LAYERS], *b[JZ_MLP_MAX_LAYERS];
    jz_kbuf_t *z[JZ_MLP_MAX_LAYERS]; /* pre-activation; z[L-1] holds the logits */
    jz_kbuf_t *a[JZ_MLP_MAX_LAYERS]; /* activation of hidden layer l (l < L-1); NULL for an
                                      * inference-only model, whose activations replace z[l]
                                      * (backward needs z, inference does not) */
    jz_kbuf_t *x;                    /* rows_cap x sizes[0] input; NULL for an inference-only
                                      * model on the cpu backend (forward_from its own rows) */
    jz_kbuf_t *y;                    /* rows_cap int32 labels */
    jz_kbuf_t *tmp;                  /* 1 float scratch */
    jz_kbuf_t *acc_loss, *acc_correct; /* 1 float accumulators (sum of losses, of correct rows) */
    jz_kbuf_t *loss;                 /* rows_cap per-row losses */
    jz_kbuf_t *probs;                /* rows_cap x classes; turned into dlogits by backward */
    /* training only */
    jz_kbuf_t *g[JZ_MLP_MAX_LAYERS]; /* gradient w.r.t. the output of hidden layer l */
    jz_kbuf_t *gw[JZ_MLP_MAX_LAYERS], *gb[JZ_MLP_MAX_LAYERS];
    jz_kbuf_t *s1w[JZ_MLP_MAX_LAYERS], *s1b[JZ_MLP_MAX_LAYERS]; /* SGD velocity / Adam m */
    jz_kbuf_t *s2w[JZ_MLP_MAX_LAYERS], *s2b[JZ_MLP_MAX_LAYERS]; /* Adam v */
};

/* Allocates the buffers for a model of m's shape on dev (weights not uploaded). On failure
 * nothing stays allocated. Release with jz_mlpdev_destroy. */
int jz_mlpdev_create(struct jz_mlpdev *d, jz_kdev_t *dev, const struct jz_mlp *m, size_t rows_cap,
                     enum jz_mlpdev_opt opt, struct jz_error *err);
void jz_mlpdev_destroy(struct jz_mlpdev *d); /* accepts a zeroed struct */

/* Copies weights and biases host -> device and device -> host (normalisation stays on host). */
int jz_mlpdev_upload(struct jz_mlpdev *d, const struct jz_mlp *m, struct jz_error *err);
int jz_mlpdev_download(struct jz_mlpdev *d, struct jz_mlp *m, struct jz_error *err);
/* Optimizer state (s1 then s2, per layer w then b) host <-> device; `state` holds
 * jz_mlpdev_state_count floats. */
size_t jz_mlpdev_state_count(const struct jz_mlpdev *d);
int jz_mlpdev_state_upload(struct jz_mlpdev *d, const float *state, struct jz_error *err);
int jz_mlpdev_state_download(struct jz_mlpdev *d, float *state, struct jz_error *err);
/* Zeroes the optimizer state and both accumulators. */
int jz_mlpdev_reset_state(struct jz_mlpdev *d, struct jz_error *err);
int jz_mlpdev_reset_acc(struct jz_mlpdev *d, struct jz_error *err);

/* Forward pass over `rows` (1..rows_cap) rows already written to d->x; logits end in z[L-1].
 * JZ_EINVAL where the model has no input buffer (use jz_mlpdev_forward_from). */
int jz_mlpdev_forward(struct jz_mlpdev *d, size_t rows, struct jz_error *err);
/* The same over the rows in x instead (a buffer of d's device of at least rows x sizes[0]
 * floats), such as one jz_kbuf_wrap_host made over rows already in host memory. For inference:
 * jz_mlpdev_backward takes the input from d->x. */
int jz_mlpdev_forward_from(struct jz_mlpdev *d, const jz_kbuf_t *x, size_t rows,
                           struct jz_error *err);
/* After forward with labels in d->y: adds the rows' summed loss to acc_loss and their correct
 * count to acc_correct (on the device, no wait). Leaves softmax probabilities in d->probs. */
int jz_mlpdev_score(struct jz_mlpdev *d, size_t rows, struct jz_error *err);
/* After score: gradients of (sum of the rows' losses) * scale into gw/gb. rows may be 0 (the
 * gradients are then zero), so every rank of a data-parallel step contributes. */
int jz_mlpdev_backward(struct jz_mlpdev *d, size_t rows, float scale, struct jz_error *err);
/* One optimizer step from gw/gb; weight decay applies to weights, not biases. */
int jz_mlpdev_update_sgd(struct jz_mlpdev *d, float lr, float momentum, float weight_decay,
                         struct jz_error *err);
int jz_mlpdev_update_adam(struct jz_mlpdev *d, float lr, float weight_decay, int64_t step,
                          struct jz_error *err);

#endif
