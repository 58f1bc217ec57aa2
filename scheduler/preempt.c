/* Preemption. A job that cannot start stops running preemptible jobs on one node (or on as many
 * nodes as its gang has parts) when its class may preempt lower ranks, or when its class orders by
 * service (least attained service, shortest first) and those jobs, of its own rank, are far
 * behind it (can_stop). The nodes it chose are then held for it (claims) until it starts: without
 * that, the GPUs its first victims free while the others are still checkpointing would be
 * refilled by lower-ranked jobs, it would not fit when the last victim stops, and it would
 * preempt again, forever. */
#include "scheduler/sched_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define grow jz_sched__grow
#define say jz_sched__say

unsigned jz_sched__claim_held(const struct node *nd, const struct job *j, int64_t now)
{
    /* A job that ends before the claimant can start delays nothing (EASY backfill's rule). */
    if (!nd->claim_job || nd->claim_job == j->id || now + j->limit <= nd->claim_until)
        return 0;
    /* The victims' GPUs come back to the claimant as they stop; what it still needs beyond
     * them has to stay free. */
    return nd->claim_gpus > nd->claim_pending ? nd->claim_gpus - nd->claim_pending : 0;
}

void jz_sched__claims_release(struct jz_sched *s, struct job *j)
{
    for (unsigned i = 0; i < jz_sched__nclaims(j); i++) {
        struct node *nd = &s->nodes[j->claims[i]];
        if (nd->claim_job == j->id) {
            nd->claim_job = 0;
            nd->claim_gpus = nd->claim_pending = 0;
        }
    }
    free(j->claims);
    j->claims = NULL;
}

static int cost_cmp(const void *a, const void *b)
{
    const struct gang_cand *x = a, *y = b;
    if (x->waste != y->waste)
        return x->waste < y->waste ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* Whether running job v may stop for j: v is preemptible, and either j's class may preempt and
 * v's rank is lower, or (same_rank: the head, on a full pass) both order by service (LAS,
 * shortest first) at one rank and v is far enough behind j now (preempt_margin), ran long
 * enough to make a checkpoint worth its cost, and was not preempted too often already. */
static bool can_stop(const struct jz_sched *s, const struct job *v, const struct job *j,
                     double j_prio, bool same_rank, int64_t now)
{
    if (v->state != JZ_SCHED_JOB_RUNNING || !v->preemptible)
        return false;
    const struct jz_sched_class *jc = &s->classes[j->cls], *vc = &s->classes[v->cls];
    if (jc->can_preempt && vc->rank < jc->rank)
        return true;
    if (!same_rank || !jc->order || !vc->order || vc->rank != jc->rank ||
        v->preemptions >= s->cfg.max_preemptions || now - v->start < s->cfg.preempt_min_run_s)
        return false;
    double v_prio = s->cfg.weight_fairshare * s->tenants[v->tenant]->fs +
                    jz_sched__job_key_at(s, v, now);
    return j_prio - v_prio >= s->cfg.preempt_margin;
}

static double t_fs(const struct jz_sched *s, const struct job *j)
{
    return s->tenants[j->tenant]->fs;
}

bool jz_sched__try_preempt(struct jz_sched *s, struct job *j, int64_t now, bool same_rank,
                           struct jz_sched_decisions *out, struct head *hd)
{
    unsigned k = j->gpus;
    double j_prio = s->cfg.weight_fairshare * t_fs(s, j) + j->key;
    unsigned need_cores = k ? k * j->cpus_per_gpu : j->cpus;
    size_t need = jz_sched__parts_of(j);
    const struct tenant *t = s->tenants[j->tenant];
    if (grow((void **)&s->gc, &s->gc_cap, s->nnodes + 1, sizeof(*s->gc)))
        return false;
    /* The cost of a node: GPUs of the jobs that would stop there (all of a gang victim's),
     * latest-ending first: the least work lost. */
    size_t nc = 0;
    for (size_t n = 0; n < s->nnodes; n++) {
        const struct node *nd = &s->nodes[n];
        if (!nd->up || nd->gpus < k || nd->cores < need_cores ||
            (nd->claim_job && nd->claim_job != j->id) ||
            (k && jz_sched__site_room(t, nd->site) < k) || !jz_sched__topo_holds(s, nd->topo_i, j))
            continue;
        unsigned avail = nd->free_gpus, cores = nd->free_cores, cost = 0;
        for (size_t r = nd->nrun; r-- > 0 && (avail < k || cores < need_cores);) {
            const struct job *v = nd->run[r]->job;
            if (!can_stop(s, v, j, j_prio, same_rank, now))
                continue;
            avail += v->gpus;
            cores += nd->run[r]->ncores;
            cost += v->gpus * jz_sched__nparts(v);
        }
        if (avail < k || cores < need_cores)
            continue;
        if (need == 1 && cost == 0)
            continue; /* it fits there without preempting: something else keeps it waiting */
        s->gc[nc++] =
            (struct gang_cand){.node = (uint32_t)n, .site = nd->site, .sw = nd->sw, .waste = cost};
    }
    if (nc < need)
        return false;
    qsort(s->gc, nc, sizeof(*s->gc), cost_cmp);
    uint64_t total = 0;
    for (size_t i = 0; i < need; i++)
        total += s->gc[i].waste;
    if (total == 0)
        return false; /* free nodes enough: it waits for something preemption cannot fix */
    /* Choose the victims first, then mark them: marking reorders the nodes' run lists. A
     * victim already chosen on another node (a gang) frees its GPUs here too. */
    size_t nv = 0;
    for (size_t i = 0; i < need; i++) {
        const struct node *nd = &s->nodes[s->gc[i].node];
        unsigned avail = nd->free_gpus, cores = nd->free_cores;
        for (size_t r = 0; r < nd->nrun; r++)
            if (nd->run[r]->job->for_job == j->id &&
                nd->run[r]->job->state == JZ_SCHED_JOB_RUNNING) {
                avail += nd->run[r]->job->gpus;
                cores += nd->run[r]->ncores;
            }
        for (size_t r = nd->nrun; r-- > 0 && (avail < k || cores < need_cores);) {
            struct job *v = nd->run[r]->job;
            if (!can_stop(s, v, j, j_prio, same_rank, now) || v->for_job == j->id)
                continue;
            if (nv >= UINT16_MAX ||
                grow((void **)&s->victims, &s->victims_cap, nv + 1, sizeof(*s->victims)))
                break;
            v->for_job = j->id;
            s->victims[nv++] = v;
            avail += v->gpus;
            cores += nd->run[r]->ncores;
        }
    }
    for (size_t c = 0; c < nv; c++) {
        struct job *v = s->victims[c];
        struct jz_sched_decision *d = jz_sched__decision_new(out);
        if (!d) {
            for (size_t r = c; r < nv; r++)
                s->victims[r]->for_job = 0;
            nv = c;
            break;
        }
        d->action = JZ_SCHED_PREEMPT;
        d->job_id = v->id;
        d->for_job = j->id;
        d->grace_s = s->cfg.preempt_grace_s;
        say(d->why, sizeof(d->why),
            "Preempted (checkpoint, then stop after %llds) so that job %llu of class %s can "
            "start.",
            (long long)s->cfg.preempt_grace_s, (unsigned long long)j->id, s->classes[j->cls].name);
        v->state = JZ_SCHED_JOB_PREEMPTING;
        /* It now ends within the grace period: move it in its nodes' end order. */
        jz_sched__job_reorder(s, v, now + s->cfg.preempt_grace_s);
        s->decisions++;
    }
    if (nv == 0)
        return false;
    /* Hold the chosen nodes for j until it starts. */
    jz_sched__claims_release(s, j);
    j->claims = malloc(need * sizeof(*j->claims));
    if (j->claims) {
        for (size_t i = 0; i < need; i++) {
            struct node *nd = &s->nodes[s->gc[i].node];
            unsigned pending = 0;
            for (size_t r = 0; r < nd->nrun; r++)
                if (nd->run[r]->job->state == JZ_SCHED_JOB_PREEMPTING &&
                    nd->run[r]->job->for_job == j->id)
                    pending += nd->run[r]->job->gpus;
            nd->claim_job = j->id;
            nd->claim_until = now + s->cfg.preempt_grace_s;
            nd->claim_gpus = k;
            nd->claim_pending = pending;
            j->claims[i] = s->gc[i].node;
        }
    }
    j->victims_left = (uint16_t)nv;
    j->est_start = now + s->cfg.preempt_grace_s;
    j->reason = JZ_SCHED_REASON_RESOURCES;
    j->reason_arg = nv;
    if (hd->job == j) {
        hd->mark = jz_sched__new_mark(s);
        hd->t = j->est_start;
        for (unsigned i = 0; i < jz_sched__nclaims(j); i++)
            s->nodes[j->claims[i]].head_mark = hd->mark;
    }
    return true;
}
