/* Recovery: the job table loaded from the store at start-up, running jobs adopted onto their
 * nodes, and what happens when a node comes back (reconcile) or is lost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/json.h"
#include "common/log.h"
#include "common/time.h"
#include "server/jobs_internal.h"
#include "server/nodes.h"

/* A running job's parts from its stored placement (after a restart), adopted by the
 * scheduler; JZ_ENOENT when a node is unknown. */
static int adopt(struct jz_jobs *jobs, struct jz_job *job, struct jz_error *err)
{
    size_t n = job->nplaced;
    if (n == 0)
        return jz_error_set(err, JZ_ENOENT, "no placement recorded");
    job->parts = calloc(n, sizeof *job->parts);
    struct jz_sched_part_spec *specs = calloc(n, sizeof *specs);
    int rc = 0;
    if (!job->parts || !specs) {
        free(specs);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    job->nparts = (unsigned)n;
    for (size_t k = 0; k < n && !rc; k++) {
        const struct jz_job_placed *sp = &job->placed[k];
        struct jz_job_part *p = &job->parts[k];
        if (jz_nodes_find(jobs->srv->nodes, sp->node, &p->node)) {
            rc = jz_error_set(err, JZ_ENOENT, "node %s is not known any more", sp->node);
            break;
        }
        p->ngpus = sp->ngpus;
        p->ncores = sp->ncores;
        p->gpus = calloc(p->ngpus + 1, sizeof *p->gpus);
        p->cores = calloc(p->ncores + 1, sizeof *p->cores);
        if (!p->gpus || !p->cores) {
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
            break;
        }
        memcpy(p->gpus, sp->gpus, p->ngpus * sizeof *p->gpus);
        memcpy(p->cores, sp->cores, p->ncores * sizeof *p->cores);
        p->launched = true; /* it may be running there: the node's hello will say */
        specs[k] = (struct jz_sched_part_spec){.node = p->node, .gpus = p->gpus,
                                               .gpu_count = p->ngpus, .cores = p->cores,
                                               .core_count = p->ncores};
    }
    if (!rc) {
        struct jz_sched_job sj;
        jz_jobs_sched_job(job, &sj);
        int64_t start = job->start_ms > 0 ? job->start_ms : jz_time_now_ms();
        rc = jz_sched_adopt_running(jobs->srv->sched, &sj, specs, n, start / 1000, err);
    }
    free(specs);
    if (!rc) {
        job->sched_started = true;
        int64_t wall = jz_time_now_ms();
        if (!job->start_ms)
            job->start_ms = wall;
        /* How long it has run is known from the wall clock only, across a restart; from now
         * on the monotonic clock measures it (never negative). */
        job->start_mono_ms = jz_time_mono_ms() - (wall > job->start_ms ? wall - job->start_ms : 0);
    }
    return rc;
}

/* Hands a waiting job to the scheduler; one it refuses (an unknown class, say) fails. */
static void queue_or_fail(struct jz_jobs *jobs, struct jz_job *job)
{
    struct jz_error err = {0};
    if (jz_jobs_sched_submit(jobs, job, &err)) {
        jz_jobs_pending_add(jobs, job->user, -1);
        jz_jobs_finish(job, JZ_JOB_FAILED, err.msg);
    }
}

/* A job that was running and whose run cannot go on: it waits again when it may be restarted,
 * else it failed. Its run is charged until the service was last known alive (STATE/alive,
 * touched every full pass), not for the time it was down. */
static void lost_at_load(struct jz_jobs *jobs, struct jz_job *job, const char *why)
{
    int64_t alive = jz_jobs_alive_last_ms(jobs);
    size_t gpus = 0;
    for (size_t i = 0; i < job->nplaced; i++)
        gpus += job->placed[i].ngpus;
    double gpu_s = job->start_ms > 0 && alive > job->start_ms
                       ? (double)gpus * (double)(alive - job->start_ms) / 1000.0
                       : 0;
    job->gpu_seconds += gpu_s;
    jz_jobs_credit_adopt(job); /* a run from before holds were kept has one now */
    jz_jobs_credit_settle(job, gpu_s, "lost with jazarid: charged until it was last alive");
    job->start_ms = 0;
    if (job->preemptible || job->requeue) {
        char reason[400];
        snprintf(reason, sizeof reason, "requeued: %s", why);
        jz_jobs_requeue(job, reason);
        queue_or_fail(jobs, job);
    } else {
        jz_jobs_finish(job, JZ_JOB_FAILED, why);
    }
}

/* What makes a stored record unusable, or NULL: the fields the job table and the scheduler
 * are built from must be there with their types. Other fields fall back to defaults. */
static const char *record_problem(const json_t *rec)
{
    json_t *id = json_object_get(rec, "id"), *user = json_object_get(rec, "user"),
           *tenant = json_object_get(rec, "tenant"), *state = json_object_get(rec, "state"),
           *res = json_object_get(rec, "resources"), *runs = json_object_get(rec, "requeues");
    if (!json_is_object(rec))
        return "not a JSON object";
    if (!json_is_integer(id) || json_integer_value(id) <= 0 ||
        json_integer_value(id) > JZ_JOB_ID_MAX)
        return "its id is out of range";
    if (!json_is_string(user) || !json_string_length(user) ||
        json_string_length(user) > JZ_MAX_NAME_LEN)
        return "\"user\" is not a user name";
    if (!json_is_string(tenant) || !json_string_length(tenant) ||
        json_string_length(tenant) > JZ_MAX_NAME_LEN)
        return "\"tenant\" is not a tenant name";
    if (!json_is_string(state) || jz_job_state_parse(json_string_value(state)) < 0)
        return "\"state\" is not a job state";
    if (res && !json_is_object(res))
        return "\"resources\" is not an object";
    if (runs && (!json_is_integer(runs) || json_integer_value(runs) < 0))
        return "\"requeues\" is not a count";
    return NULL;
}

struct load_state {
    struct jz_jobs *jobs;
    size_t loaded, skipped;
    bool failed; /* out of memory: the load stopped (and the service will not start) */
};

static int load_job(void *arg, json_t *rec)
{
    struct load_state *ls = arg;
    struct jz_jobs *jobs = ls->jobs;
    long long rec_id = (long long)jz_json_int(rec, "id", 0);
    const char *problem = record_problem(rec);
    if (problem) {
        /* Reported by id and skipped: the job is not served, the others are (ops-guide.md). An
         * id in range stays taken so that no new job is given it. */
        jz_log_error("jobs", "job %lld: corrupt stored record (%s): skipped, not served", rec_id,
                     problem);
        if (rec_id > jobs->max_id && rec_id <= JZ_JOB_ID_MAX)
            jobs->max_id = rec_id;
        ls->skipped++;
        return 0;
    }
    struct jz_job *job = jz_jobs_job_new(jobs, rec);
    int rc = job ? jz_jobs_table_put(jobs, job) : JZ_ENOMEM;
    if (rc) { /* out of memory: record_problem() checked the range */
        jz_jobs_job_free(job);
        ls->failed = true;
        return 1;
    }
    ls->loaded++;
    struct jz_error err = {0};
    jz_jobs_gate_loaded(job);
    if (job->state == JZ_JOB_PENDING) {
        /* Gated once every job is loaded (jz_jobs_load): an array's running elements with
         * higher ids count in its throttle first. */
        jz_jobs_pending_add(jobs, job->user, +1);
    } else if (job->state == JZ_JOB_RUNNING) {
        /* Its parts may still run on their nodes' agents: adopt them, and let the nodes' hellos
         * (or their silence) say. A node not known now (the embedded local node, whose workers
         * died with the old jazarid) means the run is over. */
        if (!adopt(jobs, job, &err)) {
            jz_jobs_credit_adopt(job);
        } else {
            jz_jobs_parts_free(job);
            char why[400];
            snprintf(why, sizeof why, "node lost: jazarid restarted while the job was running "
                                      "(%s)", err.msg);
            lost_at_load(jobs, job, why);
        }
    }
    return 0;
}

int jz_jobs_load(struct jz_jobs *jobs, struct jz_error *err)
{
    struct jz_server *srv = jobs->srv;
    struct load_state ls = {.jobs = jobs};
    int rc = srv->store->ops->jobs_each(srv->store, load_job, &ls, err);
    if (rc)
        return rc;
    if (ls.failed) /* never a partial load that looks whole */
        return jz_error_set(err, JZ_ENOMEM, "out of memory while loading jobs (%zu loaded)",
                            ls.loaded);
    /* Pending jobs through the gate, in id order: what they depend on is loaded, and their
     * arrays' running elements are counted. */
    for (int64_t id = 1; id <= jobs->max_id && (size_t)id < jobs->cap; id++) {
        struct jz_job *job = jobs->by_id[id];
        struct jz_sched_job_info info;
        /* A run lost at load was requeued straight into the scheduler (queue_or_fail): it
         * counts in its array already, and is not looked at again here. */
        if (job && job->state == JZ_JOB_PENDING && !job->gated &&
            jz_sched_job_info(srv->sched, (uint64_t)id, &info, NULL) != 0)
            jz_jobs_gate_enter(job);
    }
    if (ls.loaded || ls.skipped)
        jz_log_info("jobs", "loaded %zu jobs from the store%s", ls.loaded,
                    ls.skipped ? " (corrupt records skipped: see the lines above)" : "");
    return 0;
}

static bool listed(const json_t *list, int64_t job, unsigned part, int64_t run)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        if (jz_json_int(e, "job", 0) == job && jz_json_int(e, "part", -1) == (int64_t)part &&
            jz_json_int(e, "run", 0) == run)
            return true;
    }
    return false;
}

/* Log lines queued on a lost connection: the node sends again from what jazarid has of this
 * run. The log is the part's alone for a one-node job (a gang's parts share it: not there). */
static void send_log_from(struct jz_jobs *jobs, struct jz_job *job, size_t node)
{
    if (job->nparts != 1 || jz_nodes_is_local(jobs->srv->nodes, node))
        return;
    char path[4200];
    struct stat st;
    jz_job_log_path(jobs, job, path, sizeof path);
    int64_t have = stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
    int64_t off = have >= job->log_base ? have - job->log_base : 0;
    jz_jobs_part_send(job, 0, "log_from", json_pack("{s:I}", "off", (json_int_t)off));
}

/* A node said hello: its running parts that are no longer the job's are stopped there; parts
 * the job thinks run there but the node does not know were lost with its old agent; parts that
 * ended while it was away report their outcome next. */
void jz_jobs_node_hello(void *arg, size_t node, const json_t *running, const json_t *ended)
{
    struct jz_jobs *jobs = arg;
    size_t i;
    json_t *e;
    json_array_foreach(running, i, e) {
        int64_t id = jz_json_int(e, "job", 0), run = jz_json_int(e, "run", 0);
        int part = (int)jz_json_int(e, "part", 0);
        struct jz_job *job = jz_jobs_find(jobs, id);
        bool mine = job && job->state == JZ_JOB_RUNNING && run == job->run &&
                    (unsigned)part < job->nparts && job->parts[part].node == node &&
                    !job->parts[part].ended;
        if (!mine) {
            jz_log_info("jobs", "node %s runs job %lld part %d (run %lld) that is not its any "
                                "more: stopping it there",
                        jz_nodes_name(jobs->srv->nodes, node), (long long)id, part,
                        (long long)run);
            jz_jobs_stale_part(jobs, node, id, part, run, true);
            continue;
        }
        send_log_from(jobs, job, node);
        /* A stop sent while the node was away was lost with its connection: say it again. */
        const char *st = jz_json_str(job->outcome, "state", "SUCCEEDED");
        if (job->cancel_requested)
            jz_jobs_part_send(job, (unsigned)part, "stop",
                              json_pack("{s:s, s:s}", "how", "term", "why", "cancel"));
        else if (job->preempting)
            jz_jobs_part_send(job, (unsigned)part, "stop",
                              json_pack("{s:s, s:s}", "how", "checkpoint", "why", "preempt"));
        else if (job->outcome && strcmp(st, "SUCCEEDED") != 0)
            jz_jobs_part_send(job, (unsigned)part, "stop",
                              json_pack("{s:s, s:s}", "how", "term", "why", "gang"));
    }
    json_array_foreach(ended, i, e) {
        struct jz_job *job = jz_jobs_find(jobs, jz_json_int(e, "job", 0));
        int part = (int)jz_json_int(e, "part", 0);
        if (job && job->state == JZ_JOB_RUNNING && jz_json_int(e, "run", 0) == job->run &&
            (unsigned)part < job->nparts && job->parts[part].node == node &&
            !job->parts[part].ended)
            send_log_from(jobs, job, node); /* before its last lines and outcome come */
    }
    for (struct jz_job *job = jobs->running, *next; job; job = next) {
        next = job->run_next; /* the job may leave the list */
        int64_t id = job->id;
        for (unsigned k = 0; k < job->nparts && job->state == JZ_JOB_RUNNING; k++) {
            struct jz_job_part *p = &job->parts[k];
            if (p->node != node || !p->launched || p->ended ||
                listed(running, id, k, job->run) || listed(ended, id, k, job->run))
                continue;
            char why[300];
            snprintf(why, sizeof why, "node lost: %s does not know the job any more (its agent "
                                      "restarted)", jz_nodes_name(jobs->srv->nodes, node));
            json_t *o = json_pack("{s:s, s:s}", "state", "LOST", "reason", why);
            jz_jobs_part_ended(job, k, o);
            json_decref(o);
        }
    }
}

/* A node is down: the parts there are lost, and their jobs' other parts are stopped. */
void jz_jobs_node_down(void *arg, size_t node, const char *why)
{
    struct jz_jobs *jobs = arg;
    for (struct jz_job *job = jobs->running, *next; job; job = next) {
        next = job->run_next; /* the job may leave the list */
        for (unsigned k = 0; k < job->nparts && job->state == JZ_JOB_RUNNING; k++) {
            /* A part not launched yet waits for its start to be durable: its launch finds the
             * node gone and requeues the job (it never ran), which is safe at any time. */
            if (job->parts[k].node != node || job->parts[k].ended || !job->parts[k].launched)
                continue;
            json_t *o = json_pack("{s:s, s:s}", "state", "LOST", "reason", why);
            jz_jobs_part_ended(job, k, o);
            json_decref(o);
        }
    }
}
