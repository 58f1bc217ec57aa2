/* Could-ever-fit: whether some set of the nodes known now (up or drained, not removed) could hold
 * all of a job's parts if nothing else ran, and why not. It works on the distinct topologies,
 * which are few even when nodes are many, and asks the placement code itself, so that "fits"
 * means what placement means (cores local to each GPU included). */
#include "scheduler/sched_impl.h"

#include <string.h>

#define say jz_sched__say

/* What one part needs, and how many parts. */
struct need {
    unsigned gpus, cpus_per_gpu, cpus, nodes;
    const char *model;
    uint64_t min_mem;
};

/* How far an empty node gets toward one part, from farthest to closest. */
enum stage { NO_GPUS = 1, NO_MATCH = 2, NO_CORES = 3, HOLDS = 4 };

static bool place_empty(const struct jz_topo *t, const struct jz_place_request *req)
{
    struct jz_place_result r;
    if (jz_place(t, NULL, req, &r, NULL) != 0)
        return false;
    bool fits = r.fits;
    jz_place_result_free(&r);
    return fits;
}

static enum stage topo_stage(const struct jz_topo *t, const struct need *nd)
{
    size_t cores = jz_topo_core_count(t);
    if (nd->gpus == 0)
        return cores >= nd->cpus ? HOLDS : NO_CORES;
    if (jz_topo_gpu_count(t) < nd->gpus)
        return NO_GPUS;
    struct jz_place_request req = {
        .gpus = nd->gpus, .model = nd->model, .min_memory_bytes = nd->min_mem};
    if ((nd->model || nd->min_mem) && !place_empty(t, &req))
        return NO_MATCH;
    if (nd->cpus_per_gpu == 0)
        return HOLDS;
    if ((size_t)nd->gpus * nd->cpus_per_gpu > cores)
        return NO_CORES;
    req.cpus_per_gpu = nd->cpus_per_gpu;
    return place_empty(t, &req) ? HOLDS : NO_CORES;
}

/* Whether k GPUs with cpg local cores each fit an empty node of this topology, remembered as the
 * most cores per GPU known to fit and the fewest known not to: more never fit where fewer do
 * not, so one placement per distinct ask answers it for good. */
static bool topo_holds_cpg(struct topo_info *ti, unsigned k, unsigned cpg)
{
    if (jz_topo_gpu_count(ti->t) < k)
        return false;
    if ((int32_t)cpg <= ti->ok_cpg[k])
        return true;
    if ((int32_t)cpg >= ti->bad_cpg[k])
        return false;
    struct jz_place_request req = {.gpus = k, .cpus_per_gpu = cpg};
    bool fits = (size_t)k * cpg <= jz_topo_core_count(ti->t) && place_empty(ti->t, &req);
    if (fits)
        ti->ok_cpg[k] = (int32_t)cpg;
    else
        ti->bad_cpg[k] = (int32_t)cpg;
    return fits;
}

static struct need need_of_job(const struct job *j)
{
    return (struct need){.gpus = j->gpus,
                         .cpus_per_gpu = j->cpus_per_gpu,
                         .cpus = j->cpus,
                         .nodes = jz_sched__parts_of(j),
                         .model = j->model,
                         .min_mem = j->min_mem};
}

bool jz_sched__topo_holds(struct jz_sched *s, size_t ti, const struct job *j)
{
    if (j->model || j->min_mem) {
        struct need nd = need_of_job(j);
        return topo_stage(s->topos[ti].t, &nd) == HOLDS;
    }
    if (j->gpus == 0)
        return jz_topo_core_count(s->topos[ti].t) >= j->cpus;
    return topo_holds_cpg(&s->topos[ti], j->gpus, j->cpus_per_gpu);
}

bool jz_sched__ever_fits(struct jz_sched *s, struct job *j)
{
    if (j->fit_epoch == s->fit_epoch)
        return j->fits_ever;
    size_t count = 0, want = jz_sched__parts_of(j);
    for (size_t i = 0; i < s->ntopos && count < want; i++)
        if (s->topos[i].alive && jz_sched__topo_holds(s, i, j))
            count += s->topos[i].alive;
    j->fits_ever = count >= want;
    j->fit_epoch = s->fit_epoch;
    return j->fits_ever;
}

/* The answer over all nodes not removed, and why not. Pure. */
static bool fits_over_nodes(const struct jz_sched *s, const struct need *nd, char *why, size_t len)
{
    size_t count = 0;
    unsigned largest_gpus = 0, largest_cores = 0;
    int best = 0; /* the closest stage any topology reached */
    for (size_t i = 0; i < s->ntopos; i++) {
        const struct topo_info *ti = &s->topos[i];
        if (!ti->alive)
            continue;
        if (jz_topo_gpu_count(ti->t) > largest_gpus)
            largest_gpus = (unsigned)jz_topo_gpu_count(ti->t);
        if (jz_topo_core_count(ti->t) > largest_cores)
            largest_cores = (unsigned)jz_topo_core_count(ti->t);
        int st = (int)topo_stage(ti->t, nd);
        if (st == HOLDS)
            count += ti->alive;
        if (st > best)
            best = st;
    }
    if (count >= nd->nodes)
        return true;
    if (!why || !len)
        return false;
    char model[JZ_TOPO_MODEL_LEN + 16] = "", mem[48] = "";
    if (nd->model)
        say(model, sizeof(model), " of model %s", nd->model);
    if (nd->min_mem)
        say(mem, sizeof(mem), " with at least %llu MiB of memory",
            (unsigned long long)(nd->min_mem >> 20));
    if (s->nalive == 0)
        say(why, len, "there are no nodes");
    else if (count > 0)
        say(why, len, "only %zu node%s could hold a part, the job needs %u", count,
            count == 1 ? "" : "s", nd->nodes);
    else if (nd->gpus == 0)
        say(why, len, "no node has %u cores (the largest has %u)", nd->cpus, largest_cores);
    else if (best == NO_GPUS)
        say(why, len, "no node has %u GPUs (the largest has %u)", nd->gpus, largest_gpus);
    else if (best == NO_MATCH)
        say(why, len, "no node has %u GPU%s%s%s", nd->gpus, nd->gpus == 1 ? "" : "s", model, mem);
    else
        say(why, len, "no node has %u GPU%s%s%s with %u local core%s each", nd->gpus,
            nd->gpus == 1 ? "" : "s", model, mem, nd->cpus_per_gpu,
            nd->cpus_per_gpu == 1 ? "" : "s");
    return false;
}

void jz_sched__never_why(const struct jz_sched *s, const struct job *j, char *buf, size_t len)
{
    struct need nd = need_of_job(j);
    if (fits_over_nodes(s, &nd, buf, len))
        say(buf, len, "no node set could hold it when it was last looked at");
}

bool jz_sched_could_ever_fit(const struct jz_sched *s, const struct jz_sched_job *job, char *why,
                             size_t why_len)
{
    const char *bad = NULL;
    if (!s || !job)
        bad = "there is no scheduler or no job";
    else if (job->gpus > JZ_TOPO_MAX_GPUS)
        bad = "a part has more GPUs than any node can have";
    else if (job->cpus_per_gpu > JZ_TOPO_MAX_CORES || job->cpus > JZ_TOPO_MAX_CORES)
        bad = "a part has more cores than any node can have";
    else if (job->gpus == 0 && job->cpus == 0)
        bad = "it asks for neither GPUs nor cores";
    else if (job->nodes > JZ_SCHED_MAX_JOB_NODES)
        bad = "it spans more nodes than a job may";
    else if (job->model && strlen(job->model) >= JZ_TOPO_MODEL_LEN)
        bad = "its model constraint is too long";
    if (bad) {
        if (why && why_len)
            say(why, why_len, "%s", bad);
        return false;
    }
    struct need nd = {.gpus = job->gpus,
                      .cpus_per_gpu = job->cpus_per_gpu,
                      .cpus = job->cpus,
                      .nodes = job->nodes > 1 ? job->nodes : 1,
                      .model = job->model && job->model[0] ? job->model : NULL,
                      .min_mem = job->min_memory_bytes};
    return fits_over_nodes(s, &nd, why, why_len);
}
