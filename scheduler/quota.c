/* Tenants' quotas on GPU models: GPUs in use at once on GPUs whose model contains a substring
 * ("A100": at most 8 at once). Kept apart from sched.c: they are counted per running part and
 * checked per node where the overall and site quotas are. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "scheduler/place.h"
#include "scheduler/sched_impl.h"

int jz_sched__model_quotas_check(const struct jz_sched_tenant *t, struct jz_error *err)
{
    size_t nq = t->model_quota_count;
    if (nq > JZ_SCHED_MAX_MODEL_QUOTAS || (nq && !t->model_quotas))
        return jz_error_set(err, JZ_ELIMIT, "tenant %s: at most %d model quotas", t->name,
                            JZ_SCHED_MAX_MODEL_QUOTAS);
    for (size_t i = 0; i < nq; i++) {
        const char *m = t->model_quotas[i].model;
        if (!memchr(m, '\0', JZ_SCHED_NAME_LEN) || !m[0])
            return jz_error_set(err, JZ_EINVAL,
                                "tenant %s: model quota %zu needs a model of 1 to %d characters",
                                t->name, i, JZ_SCHED_NAME_LEN - 1);
        for (size_t k = 0; k < i; k++)
            if (strcmp(t->model_quotas[k].model, m) == 0)
                return jz_error_set(err, JZ_EEXIST, "tenant %s: two quotas for model %s",
                                    t->name, m);
    }
    return 0;
}

int jz_sched__model_quotas_copy(const struct jz_sched_tenant *t, struct model_quota **out,
                                struct jz_error *err)
{
    *out = NULL;
    size_t nq = t->model_quota_count;
    if (!nq)
        return 0;
    struct model_quota *q = calloc(nq, sizeof(*q));
    if (!q)
        return jz_error_set(err, JZ_ENOMEM, "out of memory setting tenant %s", t->name);
    for (size_t i = 0; i < nq; i++) {
        memcpy(q[i].model, t->model_quotas[i].model, sizeof q[i].model);
        q[i].max = t->model_quotas[i].max_gpus;
    }
    *out = q;
    return 0;
}

void jz_sched__model_charge(const struct jz_sched *s, struct tenant *t, const struct part *p,
                            bool on)
{
    if (!t->nmquotas || !p->gpu_mask)
        return;
    const struct jz_topo *topo = s->nodes[p->node].topo;
    for (size_t g = 0; g < 64; g++) {
        if (!(p->gpu_mask & ((uint64_t)1 << g)))
            continue;
        const struct jz_topo_gpu *gpu = jz_topo_gpu_at(topo, g);
        if (!gpu)
            continue;
        for (size_t i = 0; i < t->nmquotas; i++) {
            struct model_quota *q = &t->mquotas[i];
            if (jz_place_model_matches(gpu->model, q->model))
                q->use = on ? q->use + 1 : (q->use ? q->use - 1 : 0);
        }
    }
}

void jz_sched__model_quotas_adopt(struct jz_sched *s, uint32_t ti, struct model_quota *q,
                                  size_t n)
{
    struct tenant *t = s->tenants[ti];
    free(t->mquotas);
    t->mquotas = q;
    t->nmquotas = n;
    if (!n)
        return;
    /* Running jobs keep their GPUs: the new quotas count them from now on. */
    for (size_t i = 0; i < s->nnodes; i++) {
        const struct node *nd = &s->nodes[i];
        for (size_t r = 0; r < nd->nrun; r++)
            if (nd->run[r]->job->tenant == ti)
                jz_sched__model_charge(s, t, nd->run[r], true);
    }
}

bool jz_sched__model_room(const struct jz_sched *s, const struct job *j, const struct node *nd,
                          unsigned k, size_t *which)
{
    const struct tenant *t = s->tenants[j->tenant];
    /* A gang's parts are placed node by node: each asks for room for all of them, so that
     * parts on nodes of one model never go over its quota together. */
    unsigned need = k * jz_sched__parts_of(j);
    for (size_t i = 0; i < t->nmquotas; i++) {
        const struct model_quota *q = &t->mquotas[i];
        if (q->use + need <= q->max)
            continue;
        /* The node counts when a GPU the job could use is of the quota's model. */
        for (size_t g = 0; g < nd->gpus; g++) {
            const struct jz_topo_gpu *gpu = jz_topo_gpu_at(nd->topo, g);
            if (gpu && jz_place_model_matches(gpu->model, j->model) && jz_place_model_matches(gpu->model, q->model)) {
                if (which)
                    *which = i;
                return false;
            }
        }
    }
    return true;
}

void jz_sched__model_quota_text(const struct jz_sched *s, const struct job *j, char *b, size_t n)
{
    const struct tenant *t = s->tenants[j->tenant];
    for (size_t i = 0; i < t->nmquotas; i++) {
        const struct model_quota *q = &t->mquotas[i];
        if (q->use + j->gpus * jz_sched__parts_of(j) > q->max) {
            snprintf(b, n,
                     "Tenant %s is at its quota of %u GPUs of model %s (%u in use), and no node "
                     "of another model would do now.",
                     t->name, q->max, q->model, q->use);
            return;
        }
    }
    snprintf(b, n, "Tenant %s is at one of its GPU-model quotas.", t->name);
}
