/* The job table and state machine: applying the scheduler's decisions on the nodes, launching
 * each part through its node's agent, what the parts report, cancellation and preemption.
 * Submission parsing is in jobs_submit.c, loading and node reconciliation in jobs_recover.c. */
#include "server/jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cpulist.h"
#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "scheduler/config.h"
#include "server/auth.h"
#include "server/events.h"
#include "server/jobs_internal.h"
#include "server/ledger.h"
#include "server/nodes.h"
#include "server/plugins.h"
#include "server/service_metrics.h"

#define PERSIST_INTERVAL_MS 1000 /* progress/metric updates are written at most this often */
#define MAX_ARTIFACTS 1000
#define FULL_PASS_S 10 /* fair share and every pending job's reason are refreshed */
#define MASTER_PORT_BASE 20000 /* MASTER_PORT of a job is BASE + id % SPAN */
#define MASTER_PORT_SPAN 20000

struct watch {
    struct watch *next;
    jz_job_watch_fn fn;
    void *arg;
};

static const char *state_names[] = {"PENDING",   "RUNNING",   "SUCCEEDED",
                                    "FAILED",    "CANCELLED", "TIMEOUT"};

const char *jz_job_state_name(enum jz_job_state s)
{
    return state_names[s];
}

int jz_job_state_parse(const char *s)
{
    for (int i = 0; i < 6; i++)
        if (strcasecmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

static bool state_is_final(enum jz_job_state s)
{
    return s >= JZ_JOB_SUCCEEDED;
}

/* The scheduler's clock: epoch seconds that a wall-clock jump does not move (fair-share decay,
 * backfill and ages measure time; records keep wall-clock timestamps). */
static int64_t now_s(void)
{
    return jz_time_steady_epoch_s();
}

/* --- bookkeeping ------------------------------------------------------------------------ */

void jz_jobs_pending_add(struct jz_jobs *jobs, const char *user, int delta)
{
    json_t *v = json_object_get(jobs->pending_by_user, user);
    json_int_t n = (v ? json_integer_value(v) : 0) + delta;
    json_object_set_new(jobs->pending_by_user, user, json_integer(n < 0 ? 0 : n));
}

static void running_link(struct jz_job *job, bool in)
{
    struct jz_jobs *jobs = job->jobs;
    if (in) {
        job->run_prev = NULL;
        job->run_next = jobs->running;
        if (jobs->running)
            jobs->running->run_prev = job;
        jobs->running = job;
    } else {
        if (job->run_prev)
            job->run_prev->run_next = job->run_next;
        else
            jobs->running = job->run_next;
        if (job->run_next)
            job->run_next->run_prev = job->run_prev;
        job->run_prev = job->run_next = NULL;
    }
}

void jz_jobs_set_state(struct jz_job *job, enum jz_job_state s)
{
    if ((job->state == JZ_JOB_RUNNING) != (s == JZ_JOB_RUNNING))
        running_link(job, s == JZ_JOB_RUNNING);
    job->jobs->counts[job->state]--;
    job->state = s;
    job->jobs->counts[s]++;
}

/* What an event says of the job (events.c reads these fields): made from the typed job, since
 * a whole record per state change would cost a submission a second record's JSON. */
static json_t *event_record(const struct jz_job *job)
{
    json_t *rec = json_pack("{s:I, s:s, s:s, s:s, s:O?, s:s?, s:o, s:O?}", "id",
                            (json_int_t)job->id, "state", jz_job_state_name(job->state), "user",
                            job->user, "tenant", job->tenant, "name",
                            json_object_get(job->request, "name"), "reason", job->reason,
                            "exit_code",
                            job->has_exit_code ? json_integer(job->exit_code) : json_null(),
                            "array", json_object_get(job->request, "array"));
    if (rec && job->state == JZ_JOB_PENDING && job->gated) {
        char why[400];
        const char *code = jz_jobs_gate_reason(job, why, sizeof why);
        json_object_set_new(rec, "reason", json_string(why));
        json_object_set_new(rec, "reason_code", json_string(code));
    }
    return rec;
}

void jz_jobs_announce(struct jz_job *job, int previous)
{
    struct jz_events *ev = job->jobs->srv->events;
    if (!ev)
        return;
    /* A webhook's body is the whole public record; a stream's event needs only a few fields. */
    bool hook = job->notify_url && state_is_final(job->state);
    json_t *rec = hook ? jz_job_record(job) : event_record(job);
    if (!rec)
        return;
    jz_events_job_changed(ev, rec,
                          previous >= 0 ? jz_job_state_name((enum jz_job_state)previous) : NULL,
                          state_is_final(job->state) ? job->notify_url : NULL,
                          job->notify_secret);
    json_decref(rec);
}

void jz_jobs_set_reason(struct jz_job *job, const char *reason)
{
    jz_job_set_str(&job->reason, reason);
}

/* Writes the record and an event row into the current group transaction. */
void jz_jobs_persist(struct jz_job *job, const char *event_type, const char *detail)
{
    struct jz_server *srv = job->jobs->srv;
    struct jz_error err = {0};
    json_t *rec = jz_job_record_json(job, true);
    if (!rec)
        jz_error_set(&err, JZ_ENOMEM, "out of memory");
    if (!rec || srv->store->ops->job_put(srv->store, rec, &err) ||
        (event_type && srv->store->ops->event_add(srv->store, job->id, jz_time_now_ms(),
                                                  event_type, detail, &err)))
        jz_log_error("jobs", "job %lld: %s", (long long)job->id, err.msg);
    json_decref(rec);
    job->dirty = false;
    job->last_persist_ms = jz_time_mono_ms();
    jz_server_request_commit(srv);
}

int jz_jobs_table_put(struct jz_jobs *jobs, struct jz_job *job)
{
    if (job->id <= 0 || job->id > JZ_JOB_ID_MAX)
        return JZ_ERANGE;
    if ((size_t)job->id >= jobs->cap) {
        size_t cap = jobs->cap ? jobs->cap : 1024;
        while (cap <= (size_t)job->id)
            cap *= 2;
        struct jz_job **grown = realloc(jobs->by_id, cap * sizeof *grown);
        if (!grown)
            return JZ_ENOMEM;
        memset(grown + jobs->cap, 0, (cap - jobs->cap) * sizeof *grown);
        jobs->by_id = grown;
        jobs->cap = cap;
    }
    jobs->by_id[job->id] = job;
    if (job->id > jobs->max_id)
        jobs->max_id = job->id;
    jobs->counts[job->state]++;
    if (job->state == JZ_JOB_RUNNING)
        running_link(job, true);
    return 0;
}

/* Fills the job's typed fields from its record (used at submit and at load). */
static void job_from_record(struct jz_job *job, const json_t *rec)
{
    job->id = jz_json_int(rec, "id", 0);
    jz_strlcpy(job->user, jz_json_str(rec, "user", ""), sizeof job->user);
    jz_strlcpy(job->tenant, jz_json_str(rec, "tenant", ""), sizeof job->tenant);
    int st = jz_job_state_parse(jz_json_str(rec, "state", "FAILED"));
    job->state = st < 0 ? JZ_JOB_FAILED : (enum jz_job_state)st;
    json_t *res = json_object_get(rec, "resources");
    job->nodes = (unsigned)jz_json_int(res, "nodes", 1);
    if (job->nodes < 1 || job->nodes > JZ_MAX_NODES_PER_JOB)
        job->nodes = 1;
    job->req.gpus = (unsigned)jz_json_int(res, "gpus_per_node", jz_json_int(res, "gpus", 0));
    job->req.cpus_per_gpu = (unsigned)jz_json_int(res, "cpus_per_gpu", 1);
    job->req.cpus = (unsigned)jz_json_int(res, "cpus", 1);
    jz_strlcpy(job->model, jz_json_str(res, "gpu_model", ""), sizeof job->model);
    job->req.model = job->model;
    job->req.min_memory_bytes = (uint64_t)jz_json_int(res, "gpu_memory_min_mb", 0) << 20;
    job->time_limit_s = jz_json_int(res, "time_limit_s", JZ_DEFAULT_TIME_LIMIT_S);
    job->preemptible = jz_json_bool(rec, "preemptible", false);
    job->requeue = jz_json_bool(rec, "requeue", false);
    job->run = jz_json_int(rec, "requeues", 0);
}

struct jz_job *jz_jobs_job_new(struct jz_jobs *jobs, const json_t *rec)
{
    struct jz_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->jobs = jobs;
    job_from_record(job, rec);
    if (jz_job_record_load(job, rec)) {
        jz_jobs_job_free(job);
        return NULL;
    }
    return job;
}

void jz_jobs_parts_free(struct jz_job *job)
{
    for (unsigned i = 0; i < job->nparts; i++) {
        free(job->parts[i].gpus);
        free(job->parts[i].cores);
    }
    free(job->parts);
    job->parts = NULL;
    job->nparts = 0;
}

void jz_jobs_job_free(struct jz_job *job)
{
    if (!job)
        return;
    jz_job_record_free(job);
    json_decref(job->outcome);
    jz_jobs_parts_free(job);
    if (job->preempt_timer)
        event_free(job->preempt_timer);
    for (struct watch *w = job->watches, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    free(job);
}

void jz_jobs_checkpoint_file(const struct jz_jobs *jobs, int64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/jobs/%lld/checkpoint/checkpoint.bin", jobs->srv->cfg.state_dir,
             (long long)id);
}

void jz_job_log_path(const struct jz_jobs *jobs, const struct jz_job *job, char *buf, size_t len)
{
    snprintf(buf, len, "%s/jobs/%lld/log", jobs->srv->cfg.state_dir, (long long)job->id);
}

static void notify_watchers(struct jz_job *job, bool ended)
{
    struct watch *w = job->watches;
    if (ended)
        job->watches = NULL;
    while (w) {
        struct watch *next = w->next;
        w->fn(w->arg, job, ended);
        if (ended)
            free(w);
        w = next;
    }
}

void *jz_job_watch(struct jz_job *job, jz_job_watch_fn fn, void *arg)
{
    struct watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->fn = fn;
    w->arg = arg;
    w->next = job->watches;
    job->watches = w;
    return w;
}

void jz_job_unwatch(struct jz_job *job, void *handle)
{
    for (struct watch **pp = &job->watches; *pp; pp = &(*pp)->next)
        if (*pp == handle) {
            struct watch *w = *pp;
            *pp = w->next;
            free(w);
            return;
        }
}

/* --- talking to the parts --------------------------------------------------------------- */

void jz_jobs_part_send(struct jz_job *job, unsigned part, const char *t, json_t *extra)
{
    json_t *h = json_pack("{s:s, s:I, s:i, s:I}", "t", t, "job", (json_int_t)job->id, "part",
                          (int)part, "run", (json_int_t)job->run);
    if (extra)
        json_object_update(h, extra);
    json_decref(extra);
    jz_nodes_send(job->jobs->srv->nodes, job->parts[part].node, h, NULL, 0);
    json_decref(h);
}

void jz_jobs_stale_part(struct jz_jobs *jobs, size_t node, int64_t job, int part, int64_t run,
                        bool running)
{
    json_t *h = json_pack("{s:s, s:I, s:i, s:I, s:s, s:s}", "t", running ? "stop" : "forget",
                          "job", (json_int_t)job, "part", part, "run", (json_int_t)run, "how",
                          "kill", "why", "kill");
    jz_nodes_send(jobs->srv->nodes, node, h, NULL, 0);
    json_decref(h);
}

/* Stops every part that still runs: how is "term", "checkpoint" or "kill". */
static void stop_parts(struct jz_job *job, const char *how, const char *why)
{
    for (unsigned i = 0; i < job->nparts; i++)
        if (job->parts[i].launched && !job->parts[i].ended)
            jz_jobs_part_send(job, i, "stop", json_pack("{s:s, s:s}", "how", how, "why", why));
}

/* --- ending jobs ------------------------------------------------------------------------- */

static unsigned gpus_in_use(const struct jz_job *job)
{
    unsigned n = 0;
    for (unsigned i = 0; i < job->nparts; i++)
        n += (unsigned)job->parts[i].ngpus;
    return n;
}

/* Charges the GPU time of a run that ends now to the job's tenant (and releases its hold). */
static void charge(struct jz_job *job)
{
    unsigned gpus = gpus_in_use(job);
    int64_t ran_ms = jz_time_mono_ms() - job->start_mono_ms; /* never the wall clock */
    double gpu_s = job->start_ms > 0 && gpus > 0 && ran_ms >= 0
                       ? (double)gpus * (double)ran_ms / 1000.0
                       : 0;
    job->gpu_seconds += gpu_s;
    jz_jobs_credit_settle(job, gpu_s, "the run ended");
    job->start_ms = 0;
    job->start_mono_ms = 0;
}

/* Tells the scheduler that a job it knows about has left the queue or its resources. */
static void sched_forget(struct jz_job *job, bool ok)
{
    struct jz_error err = {0};
    bool started = job->sched_started;
    job->sched_started = false;
    struct jz_sched *s = job->jobs->srv->sched;
    int rc = started ? jz_sched_job_ended(s, (uint64_t)job->id, now_s(), ok, &err)
                     : jz_sched_cancel(s, (uint64_t)job->id, now_s(), &err);
    if (rc && rc != JZ_ENOENT)
        jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)job->id, err.msg);
}

static void release_run(struct jz_job *job)
{
    jz_jobs_parts_free(job);
    if (job->preempt_timer) {
        event_free(job->preempt_timer);
        job->preempt_timer = NULL;
    }
    json_decref(job->outcome);
    job->outcome = NULL;
    job->lost = false;
}

void jz_jobs_finish(struct jz_job *job, enum jz_job_state s, const char *reason)
{
    /* Before charge(), which forgets when the run started. */
    enum jz_job_state previous = job->state;
    jz_observe_job_finished(job->jobs->srv->metrics, jz_json_str(job->request, "plugin", "?"),
                            state_names[s],
                            job->start_mono_ms > 0
                                ? (double)(jz_time_mono_ms() - job->start_mono_ms) / 1000.0
                                : -1);
    charge(job);
    sched_forget(job, s == JZ_JOB_SUCCEEDED);
    jz_jobs_gate_leave(job, s);
    release_run(job);
    jz_job_clear_placement(job); /* the record keeps where it ran, not what to adopt */
    jz_jobs_set_state(job, s);
    jz_jobs_set_reason(job, reason);
    job->end_ms = jz_time_now_ms();
    char detail[1400];
    snprintf(detail, sizeof detail, "%s%s%s", state_names[s], reason ? ": " : "",
             reason ? reason : "");
    jz_jobs_persist(job, "state", detail);
    jz_log_info("jobs", "job %lld %s", (long long)job->id, detail);
    jz_jobs_announce(job, (int)previous);
    notify_watchers(job, true);
}

/* The run is over without a result of its own (preempted, lost with a node, not started): the
 * job waits again, keeping its place by submit time, and resumes from its checkpoint when the
 * plugin wrote one. */
void jz_jobs_requeue(struct jz_job *job, const char *reason)
{
    struct jz_jobs *jobs = job->jobs;
    struct jz_error err = {0};
    charge(job);
    if (job->sched_started &&
        jz_sched_job_requeue(jobs->srv->sched, (uint64_t)job->id, now_s(), &err))
        jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)job->id, err.msg);
    job->sched_started = false;
    release_run(job);
    jz_jobs_set_state(job, JZ_JOB_PENDING);
    jz_jobs_set_reason(job, reason);
    job->run++;
    job->start_wall_ms = 0;
    jz_job_clear_placement(job);
    job->preempting = false;
    job->cancel_requested = false;
    jz_jobs_pending_add(jobs, job->user, +1);
    jz_jobs_persist(job, "state", reason);
    jz_log_info("jobs", "job %lld %s", (long long)job->id, reason);
    jz_jobs_announce(job, JZ_JOB_RUNNING);
    jz_server_request_commit(jobs->srv);
}

/* Every part has ended: the job's outcome. */
static void conclude(struct jz_job *job)
{
    const json_t *o = job->outcome;
    /* Copies: finishing or requeueing the job frees its outcome. */
    char st[16], whybuf[1400];
    jz_strlcpy(st, jz_json_str(o, "state", "FAILED"), sizeof st);
    jz_strlcpy(whybuf, jz_json_str(o, "reason", ""), sizeof whybuf);
    const char *why = whybuf[0] ? whybuf : NULL;
    char reason[1400];
    if (job->lost && !job->cancel_requested) {
        if (job->preemptible || job->requeue) {
            snprintf(reason, sizeof reason, "requeued: %s", why ? why : "node lost");
            jz_jobs_requeue(job, reason);
        } else {
            jz_jobs_finish(job, JZ_JOB_FAILED, why ? why : "node lost");
        }
        return;
    }
    if (strcmp(st, "PREEMPTED") == 0 && job->preempting && !job->cancel_requested) {
        snprintf(reason, sizeof reason, "requeued: preempted for job %lld",
                 (long long)job->preempted_by);
        jz_jobs_requeue(job, reason);
        return;
    }
    json_t *code = json_object_get(o, "exit_code"), *sig = json_object_get(o, "signal");
    job->has_exit_code = json_is_integer(code);
    job->exit_code = (int)json_integer_value(code);
    job->has_signal = json_is_integer(sig);
    job->exit_signal = (int)json_integer_value(sig);
    enum jz_job_state s = JZ_JOB_FAILED;
    if (strcmp(st, "SUCCEEDED") == 0 && !job->cancel_requested)
        s = JZ_JOB_SUCCEEDED;
    else if (job->cancel_requested || strcmp(st, "CANCELLED") == 0 ||
             strcmp(st, "PREEMPTED") == 0)
        s = JZ_JOB_CANCELLED;
    else if (strcmp(st, "TIMEOUT") == 0)
        s = JZ_JOB_TIMEOUT;
    if (s == JZ_JOB_CANCELLED)
        snprintf(reason, sizeof reason, "cancelled by %s",
                 job->cancelled_by[0] ? job->cancelled_by : "a user");
    else
        snprintf(reason, sizeof reason, "%s", why ? why : "");
    jz_jobs_finish(job, s, reason[0] ? reason : NULL);
    jz_server_request_commit(job->jobs->srv); /* freed resources: schedule again */
}

void jz_jobs_part_ended(struct jz_job *job, unsigned part, const json_t *outcome)
{
    struct jz_job_part *p = &job->parts[part];
    if (p->ended)
        return;
    p->ended = true;
    const char *st = jz_json_str(outcome, "state", "FAILED");
    bool ok = strcmp(st, "SUCCEEDED") == 0;
    if (strcmp(st, "LOST") == 0)
        job->lost = true;
    /* The first part that did not succeed decides the job's outcome; the others are stopped,
     * since a gang is of no use with a part missing. */
    if (!job->outcome || (!ok && strcmp(jz_json_str(job->outcome, "state", ""), "SUCCEEDED") == 0)) {
        json_decref(job->outcome);
        job->outcome = json_deep_copy(outcome);
    }
    /* A preemption stops every part itself (checkpoint, then the grace timer): the others must
     * not be cut short while they write their checkpoints. */
    bool preempted = job->preempting && strcmp(st, "PREEMPTED") == 0;
    if (!ok && !preempted && job->nparts > 1) {
        char why[300];
        snprintf(why, sizeof why, "part %u on %s ended: %s", part,
                 jz_nodes_name(job->jobs->srv->nodes, p->node), st);
        stop_parts(job, "term", "gang");
        jz_jobs_persist(job, "part", why);
    }
    for (unsigned i = 0; i < job->nparts; i++)
        if (!job->parts[i].ended)
            return;
    conclude(job);
}

/* --- what the parts report ----------------------------------------------------------------- */

/* Has the job's record written with the loop iteration's batch (flush_dirty). */
static void queue_flush(struct jz_job *job)
{
    if (job->flush_queued)
        return;
    job->flush_queued = true;
    job->flush_next = job->jobs->flush_head;
    job->jobs->flush_head = job;
    jz_server_request_commit(job->jobs->srv);
}

/* A progress, metric, artifact, checkpoint or error event of the job's own. */
static void on_job_event(struct jz_job *job, const json_t *ev)
{
    const char *type = jz_json_str(ev, "type", "");
    bool important = false;
    if (strcmp(type, "progress") == 0) {
        double f = jz_json_num(ev, "fraction", 0);
        job->has_progress = true;
        job->progress = f < 0 ? 0 : f > 1 ? 1 : f;
        jz_job_set_str(&job->progress_msg, jz_json_str(ev, "message", NULL));
    } else if (strcmp(type, "metric") == 0) {
        const char *name = jz_json_str(ev, "name", NULL);
        json_t *metrics = job->metrics;
        json_t *value = json_object_get(ev, "value");
        if (name && json_is_number(value) && jz_name_is_safe(name, 64) &&
            (json_object_get(metrics, name) || json_object_size(metrics) < JZ_MAX_METRICS_PER_JOB))
            json_object_set_new(metrics, name, json_real(json_number_value(value)));
        int64_t step = jz_json_int(ev, "step", -1);
        if (step >= 0)
            job->metrics_step = step;
        /* A value with a step (an epoch's loss) is also kept as an event, so that its history
         * can be drawn (GET /v1/jobs/{id}/events, the dashboard's charts); bounded per job. */
        if (step >= 0 && name && json_is_number(value) && isfinite(json_number_value(value)) &&
            jz_name_is_safe(name, 64) && job->metric_points < JZ_MAX_METRIC_POINTS_PER_JOB) {
            struct jz_server *srv = job->jobs->srv;
            struct jz_error err = {0};
            char *detail = NULL;
            json_t *d = json_pack("{s:s, s:f, s:I}", "name", name, "value",
                                  json_number_value(value), "step", (json_int_t)step);
            if (d)
                detail = json_dumps(d, JSON_COMPACT);
            json_decref(d);
            if (!detail || srv->store->ops->event_add(srv->store, job->id, jz_time_now_ms(),
                                                      "metric", detail, &err))
                jz_log_error("jobs", "job %lld: metric not kept: %s", (long long)job->id,
                             detail ? err.msg : "out of memory");
            else
                job->metric_points++;
            free(detail);
            jz_server_request_commit(srv);
        }
    } else if (strcmp(type, "artifact") == 0) {
        const char *name = jz_json_str(ev, "name", NULL);
        json_t *arts = job->artifacts;
        bool known = false;
        size_t i;
        json_t *a;
        json_array_foreach(arts, i, a) known |= name && strcmp(json_string_value(a), name) == 0;
        if (name && !known && json_array_size(arts) < MAX_ARTIFACTS &&
            jz_name_is_safe(name, 64)) {
            json_array_append_new(arts, json_string(name));
            important = true;
        }
    } else if (strcmp(type, "checkpoint") == 0) {
        job->checkpoint_ms = jz_time_now_ms();
        important = true;
    } else {
        return;
    }
    job->dirty = true;
    /* Written once per loop iteration however many events came (see flush_dirty); metrics and
     * progress alone at most once a second, the final record carries the last values. */
    if (important || jz_time_mono_ms() - job->last_persist_ms >= PERSIST_INTERVAL_MS)
        queue_flush(job);
}

/* jazarid's disk is full: the job whose log or outputs could not be stored is stopped (it
 * fails "disk full"), so that it does not go on producing what nobody can keep. */
static void stop_for_disk(struct jz_job *job, unsigned part)
{
    if (job->disk_stopped || job->state != JZ_JOB_RUNNING)
        return;
    job->disk_stopped = true;
    jz_log_error("jobs", "job %lld: jazarid's disk is full; stopping the job", (long long)job->id);
    jz_jobs_part_send(job, part, "stop", json_pack("{s:s, s:s}", "how", "kill", "why", "disk_full"));
}

/* Appends shipped log lines to the job's log (a remote part: the local one writes it). */
static void append_log(struct jz_job *job, unsigned part, const unsigned char *data, size_t len)
{
    char path[4200];
    jz_job_log_path(job->jobs, job, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 && errno == ENOENT) { /* the job's folder, made at its first log line */
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/jobs/%lld", job->jobs->srv->cfg.state_dir,
                 (long long)job->id);
        jz_mkdir_p(dir, 0750);
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    }
    if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
        if (errno == ENOSPC || errno == EDQUOT)
            stop_for_disk(job, part);
        else
            jz_log_error("jobs", "job %lld: cannot append to its log: %s", (long long)job->id,
                         strerror(errno));
    }
    if (fd >= 0)
        close(fd);
}

/* A file a remote part sent back: an output ("out/NAME") or its checkpoint. */
static void receive_file(struct jz_job *job, const struct jz_msg *m)
{
    const char *name = jz_json_str(m->hdr, "name", "");
    int64_t off = jz_json_int(m->hdr, "off", -1);
    bool ok = strcmp(name, "checkpoint/checkpoint.bin") == 0 ||
              (strncmp(name, "out/", 4) == 0 && jz_name_is_safe(name + 4, 255));
    if (!ok || off < 0 || off > (int64_t)1 << 40) {
        jz_log_warn("jobs", "job %lld: ignoring a file named '%.80s'", (long long)job->id, name);
        return;
    }
    char dir[4200], path[4500], tmp[4600];
    snprintf(dir, sizeof dir, "%s/jobs/%lld/%s", job->jobs->srv->cfg.state_dir,
             (long long)job->id, name[0] == 'o' ? "out" : "checkpoint");
    jz_mkdir_p(dir, 0750);
    snprintf(path, sizeof path, "%s/jobs/%lld/%s", job->jobs->srv->cfg.state_dir,
             (long long)job->id, name);
    snprintf(tmp, sizeof tmp, "%s.part", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (off == 0 ? O_TRUNC : 0),
                  0640);
    if (fd < 0 || (m->len && pwrite(fd, m->data, m->len, off) != (ssize_t)m->len)) {
        if (errno == ENOSPC || errno == EDQUOT)
            stop_for_disk(job, 0);
        jz_log_error("jobs", "job %lld: cannot write %s: %s", (long long)job->id, tmp,
                     strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    if (jz_json_bool(m->hdr, "last", false) && rename(tmp, path) != 0)
        jz_log_error("jobs", "job %lld: cannot rename %s: %s", (long long)job->id, tmp,
                     strerror(errno));
}

/* Every message about a job part, from the node it came from. */
static void on_part_msg(void *arg, size_t node, int64_t id, int part, const struct jz_msg *m)
{
    struct jz_jobs *jobs = arg;
    struct jz_job *job = jz_jobs_find(jobs, id);
    const char *t = jz_msg_type(m);
    int64_t run = jz_json_int(m->hdr, "run", 0);
    bool mine = job && job->state == JZ_JOB_RUNNING && run == job->run &&
                (unsigned)part < job->nparts && job->parts[part].node == node &&
                !job->parts[part].ended;
    if (!mine) {
        /* A part jazarid gave up on (its node was down, the job moved): stop it there. */
        if (strcmp(t, "exit") == 0 || strcmp(t, "started") == 0 || strcmp(t, "ev") == 0)
            jz_jobs_stale_part(jobs, node, id, part, run, strcmp(t, "exit") != 0);
        return;
    }
    if (strcmp(t, "started") == 0) {
        if (part == 0 && jz_json_str(m->hdr, "backend", NULL))
            jz_strlcpy(job->backend, jz_json_str(m->hdr, "backend", "cpu"),
                       sizeof job->backend);
        if (!job->start_ms) {
            job->start_ms = jz_time_now_ms();
            job->start_mono_ms = jz_time_mono_ms();
            job->start_wall_ms = job->start_ms; /* when its process started */
            /* Stored with this iteration's batch: what a run lost with jazarid is charged
             * is measured from it. */
            job->dirty = true;
            queue_flush(job);
        }
    } else if (strcmp(t, "ev") == 0) {
        on_job_event(job, json_object_get(m->hdr, "ev"));
    } else if (strcmp(t, "log") == 0) {
        if (!jz_nodes_is_local(jobs->srv->nodes, node) && m->len)
            append_log(job, (unsigned)part, m->data, m->len);
        notify_watchers(job, false);
    } else if (strcmp(t, "file") == 0) {
        /* Rank 0 speaks for a gang's outputs and checkpoint: the parts would overwrite each
         * other's files of the same name. */
        if (!jz_nodes_is_local(jobs->srv->nodes, node) && part == 0)
            receive_file(job, m);
    } else if (strcmp(t, "exit") == 0) {
        json_t *outcome = json_object_get(m->hdr, "outcome"), *fallback = NULL;
        if (!json_is_object(outcome))
            outcome = fallback = json_pack("{s:s, s:s}", "state", "FAILED", "reason",
                                           "the node reported no outcome");
        /* Before the part ends: the job's parts are freed when the last one does. */
        jz_jobs_part_send(job, (unsigned)part, "forget", NULL);
        jz_jobs_part_ended(job, (unsigned)part, outcome);
        json_decref(fallback);
    }
}

/* Writes the records that part events changed in this loop iteration. */
static void flush_dirty(struct jz_jobs *jobs)
{
    struct jz_job *job = jobs->flush_head;
    jobs->flush_head = NULL;
    for (struct jz_job *next; job; job = next) {
        next = job->flush_next;
        job->flush_queued = false;
        if (job->dirty)
            jz_jobs_persist(job, NULL, NULL);
    }
}

/* --- starting jobs ---------------------------------------------------------------------- */

/* Takes over a START decision's parts and records where the job runs. */
static void start_job(struct jz_jobs *jobs, struct jz_job *job, struct jz_sched_decision *d)
{
    /* Its sentences, before the GPU and core arrays are taken over below. */
    jz_sched_decision_explain(d);
    struct jz_nodes *nodes = jobs->srv->nodes;
    jz_jobs_pending_add(jobs, job->user, -1);
    job->sched_started = true;
    size_t ngpus = 0;
    for (size_t k = 0; k < d->part_count; k++)
        ngpus += d->parts[k].place.gpu_count;
    jz_job_clear_placement(job);
    job->parts = calloc(d->part_count, sizeof *job->parts);
    job->placed = calloc(d->part_count, sizeof *job->placed);
    struct jz_job_gpu *view_gpus = calloc(ngpus + 1, sizeof *view_gpus);
    char(*view_nodes)[64] = calloc(d->part_count, sizeof *view_nodes);
    if (!job->parts || !job->placed || !view_gpus || !view_nodes) {
        free(view_gpus);
        free(view_nodes);
        jz_jobs_finish(job, JZ_JOB_FAILED, "could not start: out of memory");
        return;
    }
    job->nparts = (unsigned)d->part_count;
    job->nplaced = d->part_count;
    size_t g_at = 0;
    for (size_t k = 0; k < d->part_count; k++) {
        struct jz_sched_part *sp = &d->parts[k];
        struct jz_job_part *p = &job->parts[k];
        struct jz_job_placed *pl = &job->placed[k];
        p->node = sp->node;
        p->gpus = sp->place.gpus;
        p->ngpus = sp->place.gpu_count;
        p->cores = sp->place.cores;
        p->ncores = sp->place.core_count;
        sp->place.gpus = sp->place.cores = NULL;
        const struct jz_topo *topo = jz_nodes_topo(nodes, p->node);
        const char *nname = jz_nodes_name(nodes, p->node);
        jz_strlcpy(view_nodes[k], nname, sizeof view_nodes[k]);
        jz_strlcpy(pl->node, nname, sizeof pl->node);
        for (size_t i = 0; i < p->ngpus; i++) {
            const struct jz_topo_gpu *g = jz_topo_gpu_at(topo, p->gpus[i]);
            struct jz_job_gpu *vg = &view_gpus[g_at++];
            vg->index = (int)g->index;
            jz_strlcpy(vg->pci_bus_id, g->pci_bus_id, sizeof vg->pci_bus_id);
            jz_strlcpy(vg->model, g->model, sizeof vg->model);
            jz_strlcpy(vg->node, nname, sizeof vg->node);
        }
        /* The stored placement: what a restart adopts. */
        pl->gpus = malloc((p->ngpus + 1) * sizeof *pl->gpus);
        pl->cores = malloc((p->ncores + 1) * sizeof *pl->cores);
        if (pl->gpus)
            memcpy(pl->gpus, p->gpus, p->ngpus * sizeof *pl->gpus);
        if (pl->cores)
            memcpy(pl->cores, p->cores, p->ncores * sizeof *pl->cores);
        pl->ngpus = pl->gpus ? p->ngpus : 0;
        pl->ncores = pl->cores ? p->ncores : 0;
        char pcpus[8192] = "", pnuma[1024] = "";
        jz_cpulist_format(sp->place.cpus, sp->place.cpu_count, pcpus, sizeof pcpus);
        jz_cpulist_format(sp->place.numa, sp->place.numa_count, pnuma, sizeof pnuma);
        pl->cpus = strdup(pcpus);
        pl->numa_nodes = strdup(pnuma);
    }
    free(job->view_gpus);
    free(job->view_nodes);
    job->view_gpus = view_gpus;
    job->view_ngpus = ngpus;
    job->view_nodes = view_nodes;
    job->view_nnodes = d->part_count;
    jz_job_set_str(&job->view_cpus, job->placed[0].cpus);
    jz_job_set_str(&job->view_numa, job->placed[0].numa_nodes);
    jz_job_set_str(&job->view_placement, d->parts[0].place.reason);
    /* The parts are launched only after the group commit has made RUNNING durable (see
     * jz_jobs_launch): a crash in between then reads as "node lost", never as a pending job
     * that would run a second time. */
    jz_jobs_set_state(job, JZ_JOB_RUNNING);
    jz_jobs_set_reason(job, NULL);
    jz_jobs_gate_started(job);
    job->start_wall_ms = jz_time_now_ms();
    if (job->run == 0) /* a later run waited since its requeue, not since the submission */
        jz_observe_job_started(jobs->srv->metrics, job->tenant,
                               jz_json_str(job->request, "class", NULL),
                               (double)(job->start_wall_ms - job->submit_ms) / 1000.0);
    /* Earlier runs' lines stay in the log: this run's begin here (see log_from). */
    char log[4200];
    struct stat lst;
    jz_job_log_path(jobs, job, log, sizeof log);
    job->log_base = stat(log, &lst) == 0 ? (int64_t)lst.st_size : 0;
    job->backend[0] = '\0'; /* the node says, when it starts */
    job->start_ms = 0;
    jz_jobs_persist(job, "state", "RUNNING");
    jz_jobs_announce(job, JZ_JOB_PENDING);
    job->launch_next = NULL;
    *jobs->launch_tail = job;
    jobs->launch_tail = &job->launch_next;
    jz_log_debug("jobs", "job %lld placed: %s", (long long)job->id, d->parts[0].place.reason);
}

struct jz_job *jz_jobs_take_placed(struct jz_jobs *jobs)
{
    struct jz_job *list = jobs->launch_head;
    jobs->launch_head = NULL;
    jobs->launch_tail = &jobs->launch_head;
    return list;
}

/* The environment every part gets: where it is in the gang, and PyTorch's conventions. */
static json_t *part_env(struct jz_job *job, unsigned part)
{
    struct jz_nodes *nodes = job->jobs->srv->nodes;
    char list[8192] = "", num[16], rank[16], port[16];
    size_t off = 0;
    for (unsigned i = 0; i < job->nparts && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? "," : "",
                                jz_nodes_name(nodes, job->parts[i].node));
    snprintf(num, sizeof num, "%u", job->nparts);
    snprintf(rank, sizeof rank, "%u", part);
    /* One port per job id: two gangs whose ids differ by the span and share a rank-0 node at
     * the same time would collide (documented in docs/ops-guide.md). */
    snprintf(port, sizeof port, "%lld",
             (long long)(MASTER_PORT_BASE + job->id % MASTER_PORT_SPAN));
    /* One node: its processes meet on loopback, whatever the node's address. */
    const char *master =
        job->nparts == 1 ? "127.0.0.1" : jz_nodes_address(nodes, job->parts[0].node);
    json_t *env = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "JAZARI_NODE_RANK",
                            rank, "JAZARI_NUM_NODES", num, "JAZARI_NODES", list, "MASTER_ADDR",
                            master, "MASTER_PORT", port, "WORLD_SIZE", num, "NODE_RANK", rank,
                            "RANK", rank, "GROUP_RANK", rank);
    if (env && job->array_id) {
        /* Slurm's names too, so that scripts ported from sbatch --array run as they are. */
        char aid[24], idx[24], cnt[24];
        snprintf(aid, sizeof aid, "%lld", (long long)job->array_id);
        snprintf(idx, sizeof idx, "%lld", (long long)job->array_index);
        snprintf(cnt, sizeof cnt, "%u", job->array_count);
        json_object_set_new(env, "JAZARI_ARRAY_ID", json_string(aid));
        json_object_set_new(env, "JAZARI_ARRAY_INDEX", json_string(idx));
        json_object_set_new(env, "JAZARI_ARRAY_COUNT", json_string(cnt));
        json_object_set_new(env, "SLURM_ARRAY_JOB_ID", json_string(aid));
        json_object_set_new(env, "SLURM_ARRAY_TASK_ID", json_string(idx));
        json_object_set_new(env, "SLURM_ARRAY_TASK_COUNT", json_string(cnt));
    }
    return env;
}

/* Stages what a remote part needs from jazarid (a checkpoint to resume from, other jobs'
 * artifacts) and sends its launch. */
static int launch_part(struct jz_jobs *jobs, struct jz_job *job, unsigned k, struct jz_error *err)
{
    struct jz_server *srv = jobs->srv;
    struct jz_job_part *p = &job->parts[k];
    /* The job runs the version it was submitted with (docs/plugin-guide.md, "Versions"): the
     * registry's private copy of those bytes here, a file of that name and SHA-256 on a
     * remote node (the worker checks). A job recorded before versions were kept runs the
     * newest version of its plugin. */
    const char *pname = jz_json_str(job->request, "plugin", "");
    const char *psha = jz_json_str(job->request, "plugin_sha256", NULL);
    const struct jz_plugin_entry *pe = psha ? jz_plugins_find_sha256(srv->plugins, psha)
                                            : jz_plugins_find(srv->plugins, pname);
    char pcopy[4200] = "";
    if (psha && jz_plugins_copy_path(srv->plugins, psha, pcopy, sizeof pcopy) == 0 &&
        access(pcopy, R_OK) != 0)
        pcopy[0] = '\0';
    if (!pe && !pcopy[0])
        return jz_error_set(err, JZ_ENOENT, "plugin '%s' %s is no longer available", pname,
                            jz_json_str(job->request, "plugin_version", ""));
    char pfile[80];
    snprintf(pfile, sizeof pfile, "%.64s.so", pname); /* a version no longer installed */
    bool local = jz_nodes_is_local(srv->nodes, p->node);
    json_t *params = json_deep_copy(json_object_get(job->request, "params"));
    json_t *inputs = json_object();
    char ckpt[4300];
    jz_jobs_checkpoint_file(jobs, job->id, ckpt, sizeof ckpt);
    int rc = 0;
    if (!local) {
        struct stat st;
        if (stat(ckpt, &st) == 0)
            rc = jz_nodes_send_file(srv->nodes, p->node, job->id, (int)k,
                                    "checkpoint/checkpoint.bin", ckpt, err);
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(job->request, "inputs"), key, v) {
            char name[300];
            snprintf(name, sizeof name, "in/%.200s", key);
            if (!rc && json_is_string(v))
                rc = jz_nodes_send_file(srv->nodes, p->node, job->id, (int)k, name,
                                        json_string_value(v), err);
            json_object_set_new(inputs, key, json_string(name));
            json_object_del(params, key);
        }
    }
    const struct jz_job_placed *stored = k < job->nplaced ? &job->placed[k] : NULL;
    json_t *gpus = json_array();
    for (size_t i = 0; i < p->ngpus; i++)
        json_array_append_new(gpus, json_integer((json_int_t)p->gpus[i]));
    const char *file = pe ? strrchr(pe->path, '/') : NULL;
    json_t *extra = json_pack(
        "{s:s, s:o, s:o, s:o, s:s, s:s, s:I, s:I, s:s, s:o}", "plugin_file",
        file ? file + 1 : pfile, "params", params, "inputs", inputs, "gpus", gpus, "cpus",
        stored && stored->cpus ? stored->cpus : "", "numa_nodes",
        stored && stored->numa_nodes ? stored->numa_nodes : "",
        "time_limit_s", (json_int_t)job->time_limit_s, "kill_grace_s",
        (json_int_t)srv->cfg.kill_grace_s, "submit_dir",
        jz_json_str(job->request, "submit_dir", ""),
        "env", part_env(job, k));
    /* Who the part runs as, and the limits its node holds it to (the node confines when it
     * runs as root; docs/security.md). */
    const struct jz_user *owner = jz_auth_user_find(srv->auth, job->user);
    /* A user removed since the submission has no account: the node refuses the part rather
     * than run it as whoever the default now is. */
    const char *account = owner ? jz_auth_unix_account(srv->auth, owner) : NULL;
    if (!account && owner)
        account = srv->cfg.default_unix_user[0] ? srv->cfg.default_unix_user : NULL;
    if (account)
        json_object_set_new(extra, "unix_user", json_string(account));
    json_object_set_new(extra, "plugin", json_string(pname));
    if (psha) {
        json_object_set_new(extra, "plugin_sha256", json_string(psha));
        json_object_set_new(extra, "plugin_version",
                            json_string(jz_json_str(job->request, "plugin_version", "")));
    }
    const json_t *site = jz_plugins_site_config(srv->plugins, pname);
    if (site)
        json_object_set_new(extra, "plugin_config", json_deep_copy(site));
    json_object_set_new(extra, "memory_mb",
                        json_integer(jz_json_int(json_object_get(job->request, "resources"),
                                                 "memory_mb", 0)));
    json_object_set_new(extra, "limits",
                        json_pack("{s:I, s:I, s:I}", "log_bytes",
                                  (json_int_t)srv->cfg.log_max_bytes, "output_bytes",
                                  (json_int_t)srv->cfg.output_max_bytes, "pids",
                                  (json_int_t)srv->cfg.pids_max));
    if (rc) {
        json_decref(extra);
        return rc;
    }
    json_t *h = json_pack("{s:s, s:I, s:i, s:I}", "t", "launch", "job", (json_int_t)job->id,
                          "part", (int)k, "run", (json_int_t)job->run);
    json_object_update(h, extra);
    json_decref(extra);
    rc = jz_nodes_send(srv->nodes, p->node, h, NULL, 0);
    json_decref(h);
    if (rc)
        return jz_error_set(err, rc, "node %s is not connected", jz_nodes_name(srv->nodes, p->node));
    p->launched = true;
    return 0;
}

/* Makes the job's folder on jazarid (logs, artifacts, checkpoints gather there) and, for a job
 * resumed from another's checkpoint, links that checkpoint in. */
static int prepare_job_dir(struct jz_jobs *jobs, struct jz_job *job, struct jz_error *err)
{
    /* Folders appear when something is written there (a part's log or outputs, a shipped
     * file): a directory per job and start costs ext4 more than anything else at high rates. */
    int64_t resume_from = jz_json_int(job->request, "resume_from", 0);
    if (resume_from && !job->checkpoint_ms) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/jobs/%lld/checkpoint", jobs->srv->cfg.state_dir,
                 (long long)job->id);
        if (jz_mkdir_p(dir, 0750) != 0)
            return jz_error_set(err, JZ_EIO, "cannot create %s: %s", dir, strerror(errno));
        /* A hard link costs nothing, and the worker's next checkpoint replaces the link rather
         * than writing through it. */
        char src[4300], dst[4300];
        jz_jobs_checkpoint_file(jobs, resume_from, src, sizeof src);
        jz_jobs_checkpoint_file(jobs, job->id, dst, sizeof dst);
        if (link(src, dst) != 0 && errno != EEXIST)
            return jz_error_set(err, JZ_EIO, "cannot resume from job %lld's checkpoint: %s",
                                (long long)resume_from, strerror(errno));
    }
    return 0;
}

void jz_jobs_launch(struct jz_jobs *jobs, struct jz_job *job, bool committed)
{
    struct jz_server *srv = jobs->srv;
    for (struct jz_job *next; job; job = next) {
        next = job->launch_next;
        struct jz_error err = {0};
        if (job->state != JZ_JOB_RUNNING || job->nparts == 0)
            continue; /* it ended while its start was being made durable (node down) */
        if (!committed) {
            jz_jobs_finish(job, JZ_JOB_FAILED, "could not start: the store could not record the start");
            continue;
        }
        if (job->cancel_requested) { /* cancelled while its start was being made durable */
            jz_jobs_finish(job, JZ_JOB_CANCELLED, "cancelled before its worker started");
            continue;
        }
        if (job->preempting || srv->stopping) {
            /* Nothing runs yet, so the job simply waits again. */
            char reason[200];
            if (job->preempting)
                snprintf(reason, sizeof reason, "requeued: preempted for job %lld",
                         (long long)job->preempted_by);
            else
                snprintf(reason, sizeof reason, "requeued: the service stopped before it started");
            jz_jobs_requeue(job, reason);
            continue;
        }
        if (prepare_job_dir(jobs, job, &err)) {
            char reason[400];
            snprintf(reason, sizeof reason, "could not start: %s", err.msg);
            jz_jobs_finish(job, JZ_JOB_FAILED, reason);
            continue;
        }
        for (unsigned k = 0; k < job->nparts && job->state == JZ_JOB_RUNNING; k++) {
            if (launch_part(jobs, job, k, &err) == 0)
                continue;
            /* This part never started: the others are stopped, and the job waits again (a
             * start that did not happen is always safe to repeat), unless its plugin is gone. */
            char reason[400];
            snprintf(reason, sizeof reason, "could not start: %s", err.msg);
            jz_log_warn("jobs", "job %lld part %u: %s", (long long)job->id, k, err.msg);
            if (err.code != JZ_EAGAIN) { /* its plugin or an input is gone: retrying won't help */
                stop_parts(job, "kill", "kill");
                jz_jobs_finish(job, JZ_JOB_FAILED, reason);
            } else {
                stop_parts(job, "kill", "kill");
                char rq[500];
                snprintf(rq, sizeof rq, "requeued: %s", reason);
                jz_jobs_requeue(job, rq);
            }
        }
    }
}

static void on_preempt_grace(evutil_socket_t fd, short what, void *arg)
{
    struct jz_job *job = arg;
    /* The checkpoint grace is over: stop it like a cancel (TERM, then KILL after the grace). */
    stop_parts(job, "term", "preempt");
}

static void preempt_job(struct jz_jobs *jobs, struct jz_job *job, const struct jz_sched_decision *d)
{
    if (job->state != JZ_JOB_RUNNING || job->preempting)
        return;
    job->preempting = true;
    job->preempted_by = (int64_t)d->for_job;
    jz_observe_preemption(jobs->srv->metrics);
    bool launched = false;
    for (unsigned i = 0; i < job->nparts; i++)
        launched |= job->parts[i].launched;
    if (!launched)
        return; /* placed, not started yet: jz_jobs_launch requeues it instead */
    stop_parts(job, "checkpoint", "preempt");
    job->preempt_timer = evtimer_new(jobs->srv->base, on_preempt_grace, job);
    struct timeval tv = {.tv_sec = d->grace_s};
    evtimer_add(job->preempt_timer, &tv);
    char detail[300];
    snprintf(detail, sizeof detail, "preempted for job %llu: %s", (unsigned long long)d->for_job,
             d->why);
    jz_jobs_persist(job, "preempt", detail);
    jz_log_info("jobs", "job %lld %s", (long long)job->id, detail);
}

/* Whether the job a PREEMPT decision stops victims for may still start: its tenant's credit
 * covered it when it left the gate, but another run may have taken that credit since. When it
 * no longer does, the scheduler forgets the preemptor and the gate keeps it until credit comes
 * back, and its victims run on (the caller abandons their preemption). */
static bool preemptor_may_start(struct jz_jobs *jobs, struct jz_job *w)
{
    if (!w || w->state != JZ_JOB_PENDING)
        return true; /* the scheduler's own business (a preemptor that ended meanwhile) */
    if (w->gated)
        return false; /* given back to the gate by an earlier victim of this pass */
    char why[400];
    if (!jz_jobs_credit_gate(w, why, sizeof why))
        return true;
    jz_log_info("jobs", "job %lld: no preemption for it: %s", (long long)w->id, why);
    struct jz_error err = {0};
    if (jz_sched_job_ended(jobs->srv->sched, (uint64_t)w->id, now_s(), true, &err))
        jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)w->id, err.msg);
    jz_jobs_gate_return(w);
    return false;
}

static void decide(struct jz_jobs *jobs, unsigned flags)
{
    struct jz_error err = {0};
    jz_sched_decisions_clear(&jobs->decisions);
    int64_t t0 = jz_time_mono_us();
    int rc = jz_sched_decide(jobs->srv->sched, now_s(), flags, &jobs->decisions, &err);
    jz_observe_sched_pass(jobs->srv->metrics, flags & JZ_SCHED_FULL, t0);
    if (rc) {
        jz_log_error("jobs", "scheduler: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < jobs->decisions.count; i++) {
        struct jz_sched_decision *d = &jobs->decisions.items[i];
        struct jz_job *job = jz_jobs_find(jobs, (int64_t)d->job_id);
        if (!job) {
            jz_log_error("jobs", "scheduler decided about unknown job %llu",
                         (unsigned long long)d->job_id);
            continue;
        }
        if (d->action == JZ_SCHED_START && job->state == JZ_JOB_PENDING && d->part_count > 0) {
            if (jz_jobs_credit_hold(job, d) == JZ_EAGAIN) {
                /* Its tenant cannot cover the run (another run took the credit since the job
                 * left the gate): the scheduler forgets the start, the gate keeps the job
                 * until credit comes back. */
                struct jz_error uerr = {0};
                if (jz_sched_job_ended(jobs->srv->sched, d->job_id, now_s(), true, &uerr))
                    jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)job->id,
                                uerr.msg);
                jz_jobs_gate_return(job);
                continue;
            }
            start_job(jobs, job, d);
        }
        else if (d->action == JZ_SCHED_PREEMPT) {
            if (preemptor_may_start(jobs, jz_jobs_find(jobs, (int64_t)d->for_job))) {
                preempt_job(jobs, job, d);
                continue;
            }
            struct jz_error aerr = {0};
            if (jz_sched_preempt_abandon(jobs->srv->sched, d->job_id, &aerr))
                jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)job->id, aerr.msg);
        }
    }
    jz_sched_decisions_clear(&jobs->decisions);
}

void jz_jobs_flush(struct jz_jobs *jobs)
{
    flush_dirty(jobs);
}

void jz_jobs_schedule(struct jz_jobs *jobs)
{
    if (jobs->running)
        jz_jobs_alive_touch(jobs); /* what a run lost with jazarid is charged until */
    jz_jobs_gate_run(jobs);
    flush_dirty(jobs);
    decide(jobs, 0);
}

static void on_full_pass(evutil_socket_t fd, short what, void *arg)
{
    struct jz_jobs *jobs = arg;
    jz_jobs_alive_touch(jobs);
    jz_jobs_gate_run(jobs);
    decide(jobs, JZ_SCHED_FULL);
    jz_server_request_commit(jobs->srv);
    struct timeval tv = {.tv_sec = FULL_PASS_S};
    evtimer_add(jobs->full_timer, &tv);
}

void jz_jobs_sched_job(const struct jz_job *job, struct jz_sched_job *sj)
{
    *sj = (struct jz_sched_job){
        .id = (uint64_t)job->id,
        .tenant = job->tenant,
        .user = job->user,
        .class_name = jz_json_str(job->request, "class", NULL),
        .gpus = job->req.gpus,
        .cpus_per_gpu = job->req.cpus_per_gpu,
        .cpus = job->req.cpus,
        .time_limit_s = job->time_limit_s,
        .preemptible = job->preemptible,
        .submit_time = jz_json_int(job->request, "submit_epoch", now_s()),
        .nice = job->nice,
        .model = job->model[0] ? job->model : NULL,
        .min_memory_bytes = job->req.min_memory_bytes,
        .nodes = job->nodes,
        .reservation = jz_json_str(job->request, "reservation", NULL),
    };
}

/* Hands a pending job to the scheduler. */
int jz_jobs_sched_submit(struct jz_jobs *jobs, struct jz_job *job, struct jz_error *err)
{
    struct jz_sched_job sj;
    jz_jobs_sched_job(job, &sj);
    return jz_sched_submit(jobs->srv->sched, &sj, now_s(), err);
}

/* --- queries and cancel ----------------------------------------------------------------- */

struct jz_job *jz_jobs_find(struct jz_jobs *jobs, int64_t id)
{
    if (id <= 0 || (size_t)id >= jobs->cap)
        return NULL;
    return jobs->by_id[id];
}

json_t *jz_job_record(const struct jz_job *job)
{
    /* A copy: what the scheduler knows now is shown, never written into the record. */
    json_t *out = jz_job_record_json(job, false);
    struct jz_sched_job_info info;
    json_object_set_new(out, "reason_code", json_null());
    json_object_set_new(out, "priority", json_null());
    json_object_set_new(out, "estimated_start", json_null());
    if (job->state == JZ_JOB_PENDING && job->gated) {
        char why[400];
        const char *code = jz_jobs_gate_reason(job, why, sizeof why);
        json_object_set_new(out, "reason", json_string(why));
        json_object_set_new(out, "reason_code", json_string(code));
    } else if (job->state == JZ_JOB_PENDING &&
               jz_sched_job_info(job->jobs->srv->sched, (uint64_t)job->id, &info, NULL) == 0) {
        const char *why = info.reason_text[0] ? info.reason_text
                          : info.reason == JZ_SCHED_REASON_NEW ? "queued; not yet considered"
                                                               : jz_sched_reason_name(info.reason);
        /* A requeued job says so until the scheduler has a reason of its own. */
        const char *stored = job->reason ? job->reason : "";
        if (!(info.reason == JZ_SCHED_REASON_NEW && strncmp(stored, "requeued", 8) == 0))
            json_object_set_new(out, "reason", json_string(why));
        json_object_set_new(out, "reason_code", json_string(jz_sched_reason_name(info.reason)));
        json_object_set_new(out, "priority", json_real(info.priority));
        json_object_set_new(out, "attained_gpu_seconds", json_real(info.attained_gpu_s));
        json_object_set_new(out, "preemptions", json_integer(info.preemptions));
        if (info.est_start >= 0) {
            char ts[40];
            jz_time_format_iso(info.est_start * 1000, ts, sizeof ts);
            json_object_set_new(out, "estimated_start", json_string(ts));
        }
    }
    return out;
}

enum jz_job_state jz_job_state(const struct jz_job *job)
{
    return job->state;
}

int64_t jz_job_id(const struct jz_job *job)
{
    return job->id;
}

bool jz_job_visible_to(const struct jz_job *job, const struct jz_user *user)
{
    /* A tenant-admin sees, and acts on, every job of its own tenant (docs/tenants.md). */
    return user->admin || strcmp(job->user, user->name) == 0 ||
           (user->tenant_admin && strcmp(job->tenant, user->tenant) == 0);
}

int jz_jobs_cancel(struct jz_jobs *jobs, struct jz_job *job, const char *by,
                   struct jz_error *err)
{
    if (state_is_final(job->state))
        return jz_error_set(err, JZ_EBUSY, "job %lld already ended (%s)", (long long)job->id,
                            state_names[job->state]);
    jz_strlcpy(job->cancelled_by, by, sizeof job->cancelled_by);
    if (job->state == JZ_JOB_PENDING) {
        jz_jobs_pending_add(jobs, job->user, -1);
        jz_jobs_finish(job, JZ_JOB_CANCELLED, "cancelled before it started");
        return 0;
    }
    if (!job->cancel_requested) {
        job->cancel_requested = true;
        stop_parts(job, "term", "cancel");
        jz_jobs_persist(job, "cancel", "cancel requested; its workers were sent SIGTERM");
    }
    return 0;
}

/* A pending job's reason as a word ("held", "resources"...); NULL when it has none. */
static const char *pending_reason_code(const struct jz_job *job)
{
    struct jz_sched_job_info info;
    char why[400];
    if (job->state != JZ_JOB_PENDING)
        return NULL;
    if (job->gated)
        return jz_jobs_gate_reason(job, why, sizeof why);
    if (jz_sched_job_info(job->jobs->srv->sched, (uint64_t)job->id, &info, NULL) == 0)
        return jz_sched_reason_name(info.reason);
    return NULL;
}

static json_t *iso_or_null(int64_t ms)
{
    char ts[40];
    if (ms <= 0)
        return json_null();
    jz_time_format_iso(ms, ts, sizeof ts);
    return json_string(ts);
}

json_t *jz_job_record_reduced(const struct jz_job *job, bool hide)
{
    /* Made from the typed job: everyone's queue lists thousands of these. */
    json_t *nodes = json_array();
    for (size_t i = 0; i < job->view_nnodes && job->state == JZ_JOB_RUNNING; i++)
        json_array_append_new(nodes, json_string(job->view_nodes[i]));
    const json_t *req = job->request;
    const char *code = pending_reason_code(job);
    /* O? is null when NULL (a hidden name), O* leaves the key out (no class) */
    return json_pack("{s:I, s:O?, s:O?, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:O?, s:O?, s:O*, s:b}",
                     "id", (json_int_t)job->id, "resources", json_object_get(req, "resources"),
                     "array", json_object_get(req, "array"), "state",
                     jz_job_state_name(job->state), "submit_time", iso_or_null(job->submit_ms),
                     "start_time", iso_or_null(job->start_wall_ms), "reason_code",
                     code ? json_string(code) : json_null(), "nodes", nodes, "user",
                     hide ? json_null() : json_string(job->user), "tenant",
                     hide ? json_null() : json_string(job->tenant), "name",
                     hide ? NULL : json_object_get(req, "name"), "plugin",
                     hide ? NULL : json_object_get(req, "plugin"), "class",
                     json_object_get(req, "class"), "reduced", true);
}

static bool list_match(const struct jz_job *job, const struct jz_jobs_filter *f)
{
    if (f->state_mask && !(f->state_mask & (1u << job->state)))
        return false;
    if (f->user && strcmp(job->user, f->user) != 0)
        return false;
    if (f->tenant && strcmp(job->tenant, f->tenant) != 0)
        return false;
    if (f->array && job->array_id != f->array)
        return false;
    if ((f->since_ms > 0 || f->until_ms > 0) && !job->end_ms)
        return false;
    if (f->since_ms > 0 && job->end_ms < f->since_ms)
        return false;
    if (f->until_ms > 0 && job->end_ms >= f->until_ms)
        return false;
    return true;
}

json_t *jz_jobs_list(struct jz_jobs *jobs, const struct jz_user *user,
                     const struct jz_jobs_filter *f, int64_t after, bool desc, size_t limit)
{
    json_t *arr = json_array();
    int64_t last = 0;
    bool more = false;
    int64_t id = desc ? (after > 0 ? after - 1 : jobs->max_id) : after + 1;
    for (; id >= 1 && id <= jobs->max_id && (size_t)id < jobs->cap; id += desc ? -1 : 1) {
        struct jz_job *job = jobs->by_id[id];
        if (!job)
            continue;
        bool own = jz_job_visible_to(job, user);
        /* Everyone's queue: what waits and runs, never others' finished jobs. */
        if (!own && !(f->everyone && (job->state == JZ_JOB_PENDING ||
                                      job->state == JZ_JOB_RUNNING)))
            continue;
        bool hide = jobs->srv->cfg.hide_other_tenants && strcmp(job->tenant, user->tenant) != 0;
        if (!list_match(job, f) || (!own && hide && (f->user || f->tenant)))
            continue; /* a filter must not tell whose the hidden jobs are */
        if (json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_array_append_new(arr, own ? jz_job_record(job) : jz_job_record_reduced(job, hide));
        last = id;
    }
    return json_pack("{s:o, s:o}", "jobs", arr, "next_after",
                     more ? json_integer(last) : json_null());
}

int64_t jz_job_array_id(const struct jz_job *job)
{
    return job->array_id;
}

unsigned jz_job_array_count(const struct jz_job *job)
{
    return job->array_id == job->id ? job->array_count : 0;
}

json_t *jz_jobs_nodes_json(struct jz_jobs *jobs, const char *site)
{
    json_t *all = jz_nodes_json(jobs->srv->nodes, site);
    /* Which job holds each GPU: from the running jobs' own placements, through a name index so
     * that the cost grows with nodes plus running parts, not their product. */
    json_t *by_name = json_object();
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(all, "nodes"), i, node)
        json_object_set(by_name, jz_json_str(node, "name", ""), json_object_get(node, "gpus"));
    for (struct jz_job *job = jobs->running; job; job = job->run_next)
        for (unsigned k = 0; k < job->nparts; k++) {
            json_t *gpus = json_object_get(
                by_name, jz_nodes_name(jobs->srv->nodes, job->parts[k].node));
            for (size_t g = 0; gpus && g < job->parts[k].ngpus; g++)
                json_object_set_new(json_array_get(gpus, job->parts[k].gpus[g]), "job",
                                    json_integer(job->id));
        }
    json_decref(by_name);
    return all;
}

void jz_jobs_counts(const struct jz_jobs *jobs, size_t counts[6])
{
    memcpy(counts, jobs->counts, sizeof jobs->counts);
}

const json_t *jz_job_request_field(const struct jz_job *job, const char *key)
{
    return json_object_get(job->request, key);
}

const char *jz_job_tenant(const struct jz_job *job)
{
    return job->tenant;
}

const char *jz_job_user(const struct jz_job *job)
{
    return job->user;
}

void jz_jobs_unfinished_each(struct jz_jobs *jobs, void (*fn)(void *arg, struct jz_job *job),
                             void *arg)
{
    for (int64_t id = 1; id <= jobs->max_id && (size_t)id < jobs->cap; id++) {
        struct jz_job *job = jobs->by_id[id];
        if (job && (job->state == JZ_JOB_PENDING || job->state == JZ_JOB_RUNNING))
            fn(arg, job);
    }
}

void jz_jobs_pending_each(struct jz_jobs *jobs, jz_jobs_pending_fn fn, void *arg)
{
    /* The table is indexed by id: one look per id, about a millisecond per million ids. */
    for (int64_t id = 1; id <= jobs->max_id && (size_t)id < jobs->cap; id++) {
        const struct jz_job *job = jobs->by_id[id];
        struct jz_sched_job_info info;
        char why[400];
        if (job && job->state == JZ_JOB_PENDING && job->gated)
            fn(arg, job, jz_jobs_gate_reason(job, why, sizeof why));
        else if (job && job->state == JZ_JOB_PENDING &&
                 jz_sched_job_info(jobs->srv->sched, (uint64_t)id, &info, NULL) == 0)
            fn(arg, job, jz_sched_reason_name(info.reason));
    }
}

/* --- start-up and shut-down -------------------------------------------------------------- */

int jz_jobs_open(struct jz_server *srv, struct jz_jobs **out, struct jz_error *err)
{
    struct jz_jobs *jobs = calloc(1, sizeof *jobs);
    if (!jobs)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    jobs->srv = srv;
    jobs->launch_tail = &jobs->launch_head;
    jobs->pending_by_user = json_object();
    jz_sched_decisions_init(&jobs->decisions);
    jobs->full_timer = evtimer_new(srv->base, on_full_pass, jobs);
    struct timeval tv = {.tv_sec = FULL_PASS_S};
    evtimer_add(jobs->full_timer, &tv);
    int rc = jz_jobs_load(jobs, err);
    if (rc) {
        jz_jobs_close(jobs);
        return rc;
    }
    /* Ids of purged jobs are never given again: the store remembers the highest. One above
     * the table's range comes from a corrupt row (skipped at load) and is not followed. */
    int64_t max_store = srv->store->ops->job_max_id(srv->store);
    if (max_store > JZ_JOB_ID_MAX)
        jz_log_error("jobs", "the store's highest job id %lld is out of range (a corrupt row); "
                             "new ids follow the highest loaded one, %lld",
                     (long long)max_store, (long long)jobs->max_id);
    else if (max_store > jobs->max_id)
        jobs->max_id = max_store;
    jz_jobs_alive_touch(jobs);
    if ((rc = jz_jobs_retention_start(jobs))) {
        jz_jobs_close(jobs);
        return jz_error_set(err, rc, "cannot start the retention timer");
    }
    static const struct jz_nodes_handler handler = {.part_msg = on_part_msg,
                                                    .node_hello = jz_jobs_node_hello,
                                                    .node_down = jz_jobs_node_down};
    jz_nodes_start(srv->nodes, &handler, jobs);
    *out = jobs;
    return 0;
}

void jz_jobs_close(struct jz_jobs *jobs)
{
    if (!jobs)
        return;
    for (size_t i = 0; i < jobs->cap; i++)
        jz_jobs_job_free(jobs->by_id[i]);
    free(jobs->by_id);
    if (jobs->full_timer)
        event_free(jobs->full_timer);
    if (jobs->purge_timer)
        event_free(jobs->purge_timer);
    jz_sched_decisions_free(&jobs->decisions);
    json_decref(jobs->pending_by_user);
    free(jobs);
}
