/* The job table and state machine: submission checks, applying the scheduler's decisions on the
 * local node, worker launch, worker events, cancellation, preemption, recovery after a restart. */
#include "server/jobs.h"

#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jazari/plugin.h>

#include "common/cpulist.h"
#include "common/json.h"
#include "common/log.h"
#include "common/params.h"
#include "common/strutil.h"
#include "common/time.h"
#include "node/node.h"
#include "scheduler/config.h"
#include "scheduler/place.h"
#include "scheduler/sched.h"
#include "server/auth.h"
#include "server/ledger.h"
#include "server/plugins.h"

#define PERSIST_INTERVAL_MS 1000 /* progress/metric updates are written at most this often */
#define MAX_ARTIFACTS 1000
#define BACKSTOP_EXTRA_S 30      /* after limit + grace, jazarid kills a worker that hangs */
#define FULL_PASS_S 10 /* fair share and every pending job's reason are refreshed (45 ms at 100k jobs) */

struct watch {
    struct watch *next;
    jz_job_watch_fn fn;
    void *arg;
};

struct jz_job {
    struct jz_jobs *jobs;
    int64_t id;
    json_t *rec;
    enum jz_job_state state;
    char user[JZ_MAX_NAME_LEN + 1];
    char tenant[JZ_MAX_NAME_LEN + 1];
    struct jz_place_request req;
    char model[64];
    int64_t time_limit_s;
    bool preemptible;
    struct jz_job *launch_next; /* placed, waiting for the commit before its worker starts */
    /* while running */
    pid_t pid;
    int64_t start_ms;          /* when its worker started (0 before) */
    size_t *gpus, ngpus, *cores, ncores;
    bool cancel_requested;
    bool sched_started;        /* the scheduler counts its resources as in use */
    bool preempting;           /* told to checkpoint and stop; requeued when it ends */
    int64_t preempted_by;
    struct event *preempt_timer;
    json_t *exit_ev;
    char error_msg[1024];
    struct event *backstop;
    int64_t last_persist_ms;
    bool dirty;
    bool flush_queued;         /* on the jobs' flush list */
    struct jz_job *flush_next;
    struct watch *watches;
};

struct jz_jobs {
    struct jz_server *srv;
    struct jz_job **by_id; /* index = id; ids are dense from 1 */
    size_t cap;
    int64_t max_id;
    struct jz_job *launch_head, **launch_tail;
    struct jz_job *flush_head; /* records to write at the end of this loop iteration */
    size_t counts[6];
    json_t *pending_by_user; /* user -> number of pending jobs */
    struct jz_sched *sched;  /* the policy: every start, preemption and reason comes from it */
    struct jz_sched_decisions decisions;
    struct event *full_timer;
    size_t free_cores;       /* for display; the scheduler keeps the real occupancy */
    int32_t *gpu_job;        /* job id per GPU, 0 when free (for display) */
    char field[160];
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

/* --- bookkeeping ------------------------------------------------------------------------ */

static void pending_count_add(struct jz_jobs *jobs, const char *user, int delta)
{
    json_t *v = json_object_get(jobs->pending_by_user, user);
    json_int_t n = (v ? json_integer_value(v) : 0) + delta;
    json_object_set_new(jobs->pending_by_user, user, json_integer(n < 0 ? 0 : n));
}

/* The scheduler holds the queue itself; jazarid only counts each user's waiting jobs (for the
 * per-user limit). */
static void queue_push(struct jz_jobs *jobs, struct jz_job *job)
{
    pending_count_add(jobs, job->user, +1);
}

static void queue_remove(struct jz_jobs *jobs, struct jz_job *job)
{
    pending_count_add(jobs, job->user, -1);
}

static void set_state(struct jz_job *job, enum jz_job_state s)
{
    job->jobs->counts[job->state]--;
    job->state = s;
    job->jobs->counts[s]++;
    json_object_set_new(job->rec, "state", json_string(state_names[s]));
}

static void set_time(json_t *rec, const char *key, int64_t ms)
{
    char ts[40];
    jz_time_format_iso(ms, ts, sizeof ts);
    json_object_set_new(rec, key, json_string(ts));
}

static void set_reason(struct jz_job *job, const char *reason)
{
    json_object_set_new(job->rec, "reason", reason ? json_string(reason) : json_null());
}

/* Writes the record and an event row into the current group transaction. */
static void persist(struct jz_job *job, const char *event_type, const char *detail)
{
    struct jz_server *srv = job->jobs->srv;
    struct jz_error err = {0};
    if (srv->store->ops->job_put(srv->store, job->rec, &err) ||
        (event_type && srv->store->ops->event_add(srv->store, job->id, jz_time_now_ms(),
                                                  event_type, detail, &err)))
        jz_log_error("jobs", "job %lld: %s", (long long)job->id, err.msg);
    job->dirty = false;
    job->last_persist_ms = jz_time_mono_ms();
    jz_server_request_commit(srv);
}

static int table_put(struct jz_jobs *jobs, struct jz_job *job)
{
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
    return 0;
}

/* Fills the job's fast fields from its record (used at submit and at load). */
static void job_from_record(struct jz_job *job)
{
    json_t *rec = job->rec;
    job->id = jz_json_int(rec, "id", 0);
    jz_strlcpy(job->user, jz_json_str(rec, "user", ""), sizeof job->user);
    jz_strlcpy(job->tenant, jz_json_str(rec, "tenant", ""), sizeof job->tenant);
    int st = jz_job_state_parse(jz_json_str(rec, "state", "FAILED"));
    job->state = st < 0 ? JZ_JOB_FAILED : (enum jz_job_state)st;
    json_t *res = json_object_get(rec, "resources");
    job->req.gpus = (unsigned)jz_json_int(res, "gpus", 0);
    job->req.cpus_per_gpu = (unsigned)jz_json_int(res, "cpus_per_gpu", 1);
    job->req.cpus = (unsigned)jz_json_int(res, "cpus", 1);
    jz_strlcpy(job->model, jz_json_str(res, "gpu_model", ""), sizeof job->model);
    job->req.model = job->model;
    job->req.min_memory_bytes = (uint64_t)jz_json_int(res, "gpu_memory_min_mb", 0) << 20;
    job->time_limit_s = jz_json_int(res, "time_limit_s", JZ_DEFAULT_TIME_LIMIT_S);
    job->preemptible = jz_json_bool(rec, "preemptible", false);
}

static struct jz_job *job_new(struct jz_jobs *jobs, json_t *rec)
{
    struct jz_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->jobs = jobs;
    job->rec = rec;
    job_from_record(job);
    return job;
}

static void job_free(struct jz_job *job)
{
    if (!job)
        return;
    json_decref(job->rec);
    json_decref(job->exit_ev);
    free(job->gpus);
    free(job->cores);
    if (job->backstop)
        event_free(job->backstop);
    for (struct watch *w = job->watches, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    free(job);
}

static void checkpoint_file(const struct jz_jobs *jobs, int64_t id, char *buf, size_t len)
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

/* --- releasing resources and ending jobs ------------------------------------------------ */

static void release_resources(struct jz_job *job)
{
    struct jz_jobs *jobs = job->jobs;
    for (size_t i = 0; i < job->ngpus; i++)
        jobs->gpu_job[job->gpus[i]] = 0;
    jobs->free_cores += job->ncores;
    free(job->gpus);
    free(job->cores);
    job->gpus = job->cores = NULL;
    job->ngpus = job->ncores = 0;
    if (job->backstop) {
        event_free(job->backstop);
        job->backstop = NULL;
    }
    if (job->preempt_timer) {
        event_free(job->preempt_timer);
        job->preempt_timer = NULL;
    }
}

static int64_t now_s(void)
{
    return jz_time_now_ms() / 1000;
}

/* Tells the scheduler that a job it knows about has left the queue or its resources. */
static void sched_forget(struct jz_job *job, bool ok)
{
    struct jz_error err = {0};
    /* A job the scheduler started (even if its start then failed) holds resources there until
     * it is reported ended; a waiting one is cancelled. */
    bool started = job->sched_started;
    job->sched_started = false;
    int rc = started ? jz_sched_job_ended(job->jobs->sched, (uint64_t)job->id, now_s(), ok, &err)
                     : jz_sched_cancel(job->jobs->sched, (uint64_t)job->id, now_s(), &err);
    if (rc && rc != JZ_ENOENT)
        jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)job->id, err.msg);
}

/* Charges the GPU time of a run that ends now to the job's tenant. */
static void charge(struct jz_job *job)
{
    if (job->start_ms > 0 && job->ngpus > 0 && job->jobs->srv->ledger)
        jz_ledger_charge(job->jobs->srv->ledger, job->tenant,
                         jz_json_str(job->rec, "plugin", "?"), job->id,
                         (double)job->ngpus * (double)(jz_time_now_ms() - job->start_ms) / 1000.0);
    job->start_ms = 0;
}

static void finish(struct jz_job *job, enum jz_job_state s, const char *reason)
{
    charge(job);
    sched_forget(job, s == JZ_JOB_SUCCEEDED);
    release_resources(job);
    set_state(job, s);
    set_reason(job, reason);
    set_time(job->rec, "end_time", jz_time_now_ms());
    json_object_del(job->rec, "worker_pid");
    json_object_del(job->rec, "job_pgid");
    job->pid = 0;
    char detail[400];
    snprintf(detail, sizeof detail, "%s%s%s", state_names[s], reason ? ": " : "",
             reason ? reason : "");
    persist(job, "state", detail);
    jz_log_info("jobs", "job %lld %s", (long long)job->id, detail);
    notify_watchers(job, true);
}

/* --- worker events ---------------------------------------------------------------------- */

static void on_worker_event(void *arg, json_t *ev)
{
    struct jz_job *job = arg;
    const char *type = jz_json_str(ev, "type", "");
    bool important = false;
    if (strcmp(type, "progress") == 0) {
        double f = jz_json_num(ev, "fraction", 0);
        const char *msg = jz_json_str(ev, "message", NULL);
        json_object_set_new(job->rec, "progress",
                            json_pack("{s:f, s:s?}", "fraction", f < 0 ? 0 : f > 1 ? 1 : f,
                                      "message", msg));
    } else if (strcmp(type, "metric") == 0) {
        const char *name = jz_json_str(ev, "name", NULL);
        json_t *metrics = json_object_get(job->rec, "metrics");
        json_t *value = json_object_get(ev, "value");
        if (name && json_is_number(value) && jz_name_is_safe(name, 64) &&
            (json_object_get(metrics, name) || json_object_size(metrics) < JZ_MAX_METRICS_PER_JOB))
            json_object_set_new(metrics, name, json_real(json_number_value(value)));
        int64_t step = jz_json_int(ev, "step", -1);
        if (step >= 0)
            json_object_set_new(job->rec, "metrics_step", json_integer(step));
    } else if (strcmp(type, "artifact") == 0) {
        const char *name = jz_json_str(ev, "name", NULL);
        json_t *arts = json_object_get(job->rec, "artifacts");
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
        set_time(job->rec, "checkpoint_time", jz_time_now_ms());
        important = true;
    } else if (strcmp(type, "error") == 0) {
        jz_strlcpy(job->error_msg, jz_json_str(ev, "message", ""), sizeof job->error_msg);
    } else if (strcmp(type, "started") == 0) {
        /* The job's process group, so that a restart can stop what is left of it. */
        json_int_t pgid = jz_json_int(ev, "pid", 0);
        if (pgid > 1) {
            json_object_set_new(job->rec, "job_pgid", json_integer(pgid));
            important = true;
        }
    } else if (strcmp(type, "exit") == 0) {
        json_decref(job->exit_ev);
        job->exit_ev = json_incref(ev);
        return;
    } else {
        return;
    }
    job->dirty = true;
    /* Written once per loop iteration however many events came (see flush_dirty); metrics and
     * progress alone at most once a second, the final record carries the last values. */
    if ((important || jz_time_mono_ms() - job->last_persist_ms >= PERSIST_INTERVAL_MS) &&
        !job->flush_queued) {
        job->flush_queued = true;
        job->flush_next = job->jobs->flush_head;
        job->jobs->flush_head = job;
        jz_server_request_commit(job->jobs->srv);
    }
}

/* Writes the records that worker events changed in this loop iteration. */
static void flush_dirty(struct jz_jobs *jobs)
{
    struct jz_job *job = jobs->flush_head;
    jobs->flush_head = NULL;
    for (struct jz_job *next; job; job = next) {
        next = job->flush_next;
        job->flush_queued = false;
        if (job->dirty)
            persist(job, NULL, NULL);
    }
}

static const char *signal_name(int sig)
{
    const char *abbrev = sigabbrev_np(sig);
    return abbrev ? abbrev : "?";
}

/* A preempted job has stopped: it waits again, keeping its place by submit time, and resumes
 * from its checkpoint when the plugin wrote one. */
static void requeue(struct jz_job *job, const char *why)
{
    struct jz_jobs *jobs = job->jobs;
    struct jz_error err = {0};
    charge(job);
    job->sched_started = false;
    if (jz_sched_job_requeue(jobs->sched, (uint64_t)job->id, now_s(), &err))
        jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)job->id, err.msg);
    release_resources(job);
    set_state(job, JZ_JOB_PENDING);
    char reason[200];
    if (why)
        snprintf(reason, sizeof reason, "requeued: %s", why);
    else
        snprintf(reason, sizeof reason, "requeued: preempted for job %lld",
                 (long long)job->preempted_by);
    set_reason(job, reason);
    json_object_set_new(job->rec, "requeues",
                        json_integer(jz_json_int(job->rec, "requeues", 0) + 1));
    json_object_set_new(job->rec, "start_time", json_null());
    json_object_del(job->rec, "worker_pid");
    json_object_del(job->rec, "job_pgid");
    job->pid = 0;
    job->preempting = false;
    json_decref(job->exit_ev);
    job->exit_ev = NULL;
    job->error_msg[0] = '\0';
    queue_push(jobs, job);
    persist(job, "state", reason);
    jz_log_info("jobs", "job %lld %s", (long long)job->id, reason);
}

static void on_worker_exit(void *arg, int wait_status)
{
    struct jz_job *job = arg;
    char reason[1200];
    enum jz_job_state s;
    json_t *ex = job->exit_ev;
    const char *status = jz_json_str(ex, "status", NULL);
    if (job->preempting && !job->cancel_requested &&
        !(status && strcmp(status, "succeeded") == 0)) {
        requeue(job, NULL);
        jz_server_request_commit(job->jobs->srv);
        return;
    }
    json_t *code = json_object_get(ex, "exit_code");
    json_t *sig = json_object_get(ex, "signal");
    json_object_set_new(job->rec, "exit_code",
                        json_is_integer(code) ? json_integer(json_integer_value(code)) : json_null());
    json_object_set_new(job->rec, "signal",
                        json_is_integer(sig) ? json_integer(json_integer_value(sig)) : json_null());
    const char *msg = job->error_msg[0] ? job->error_msg : jz_json_str(ex, "message", "");
    bool succeeded = status && strcmp(status, "succeeded") == 0;
    if (succeeded) {
        s = JZ_JOB_SUCCEEDED;
        reason[0] = '\0';
    } else if (job->cancel_requested || (status && strcmp(status, "cancelled") == 0)) {
        /* Includes a worker that got the cancel before it could handle signals. */
        s = JZ_JOB_CANCELLED;
        snprintf(reason, sizeof reason, "cancelled by %s",
                 jz_json_str(job->rec, "cancelled_by", "a user"));
    } else if (!status) {
        s = JZ_JOB_FAILED;
        if (WIFSIGNALED(wait_status))
            snprintf(reason, sizeof reason, "the worker was killed by signal %s (%d)",
                     signal_name(WTERMSIG(wait_status)), WTERMSIG(wait_status));
        else
            snprintf(reason, sizeof reason, "the worker exited (status %d) without a result",
                     WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
    } else if (strcmp(status, "timeout") == 0) {
        s = JZ_JOB_TIMEOUT;
        snprintf(reason, sizeof reason, "time limit of %llds reached",
                 (long long)job->time_limit_s);
    } else if (json_is_integer(sig)) {
        s = JZ_JOB_FAILED;
        snprintf(reason, sizeof reason, "killed by signal %s (%d)%s%s",
                 signal_name((int)json_integer_value(sig)), (int)json_integer_value(sig),
                 *msg ? ": " : "", msg);
    } else {
        s = JZ_JOB_FAILED;
        snprintf(reason, sizeof reason, "exit code %lld%s%s",
                 json_is_integer(code) ? (long long)json_integer_value(code) : -1LL,
                 *msg ? ": " : "", msg);
    }
    finish(job, s, reason[0] ? reason : NULL);
    jz_server_request_commit(job->jobs->srv); /* freed resources: schedule again */
}

static void on_backstop(evutil_socket_t fd, short what, void *arg)
{
    struct jz_job *job = arg;
    jz_log_warn("jobs", "job %lld: worker %d did not stop after its time limit; killing it",
                (long long)job->id, (int)job->pid);
    jz_node_kill_group(job->jobs->srv->node, job->pid);
}

/* --- starting jobs ---------------------------------------------------------------------- */

/* The worker's job spec; job->gpus holds the placement's GPUs, pl its CPUs and NUMA nodes. */
static json_t *build_spec(struct jz_jobs *jobs, struct jz_job *job,
                          const struct jz_place_result *pl, const char *job_dir)
{
    struct jz_server *srv = jobs->srv;
    const struct jz_plugin_entry *pe =
        jz_plugins_find(srv->plugins, jz_json_str(job->rec, "plugin", ""));
    if (!pe)
        return NULL;
    const struct jz_topo *topo = jz_node_topo(srv->node);
    json_t *devices = json_array();
    for (size_t i = 0; i < job->ngpus; i++) {
        const struct jz_topo_gpu *g = jz_topo_gpu_at(topo, job->gpus[i]);
        /* The ordinal is the device within its backend: CUDA renumbers the visible GPUs from
         * 0; the cpu and OpenCL fallbacks have one device that every declared GPU maps to. */
        const char *backend =
            jz_node_gpu_backend(srv->node, job->gpus[i], srv->cfg.fallback_backend);
        json_array_append_new(
            devices, json_pack("{s:s, s:i, s:i, s:s, s:s, s:I, s:i}", "backend", backend,
                               "ordinal", strcmp(backend, "cuda") == 0 ? (int)i : 0, "node_index", (int)g->index, "pci_bus_id",
                               g->pci_bus_id, "model", g->model, "memory_bytes",
                               (json_int_t)g->memory_bytes, "numa_node", g->numa_os));
    }
    char cpus[8192] = "", numa[1024] = "";
    jz_cpulist_format(pl->cpus, pl->cpu_count, cpus, sizeof cpus);
    jz_cpulist_format(pl->numa, pl->numa_count, numa, sizeof numa);
    char out_dir[4200], log_path[4200], ckpt[4200];
    snprintf(out_dir, sizeof out_dir, "%s/out", job_dir);
    snprintf(log_path, sizeof log_path, "%s/log", job_dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint", job_dir);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)job->id);
    return json_pack("{s:s, s:s, s:O, s:o, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:I, s:I}",
                     "job_id", id, "plugin_path", pe->path, "params",
                     json_object_get(job->rec, "params"), "devices", devices, "cpus", cpus,
                     "numa_nodes", numa, "bind", !jz_node_declared(srv->node), "output_dir",
                     out_dir, "log_path", log_path, "checkpoint_dir", ckpt, "submit_dir",
                     jz_json_str(job->rec, "submit_dir", ""), "time_limit_s",
                     (json_int_t)job->time_limit_s, "kill_grace_s",
                     (json_int_t)srv->cfg.kill_grace_s);
}

static const struct jz_node_worker_cbs worker_cbs = {.on_event = on_worker_event,
                                                     .on_exit = on_worker_exit};

/* Starts job on the placement pl (whose arrays the job takes over). */
static void start_job(struct jz_jobs *jobs, struct jz_job *job, struct jz_place_result *pl)
{
    struct jz_server *srv = jobs->srv;
    const struct jz_topo *topo = jz_node_topo(srv->node);
    queue_remove(jobs, job);
    job->sched_started = true;
    job->gpus = pl->gpus;
    job->ngpus = pl->gpu_count;
    job->cores = pl->cores;
    job->ncores = pl->core_count;
    pl->gpus = pl->cores = NULL;
    for (size_t i = 0; i < job->ngpus; i++)
        jobs->gpu_job[job->gpus[i]] = (int32_t)job->id;
    jobs->free_cores -= job->ncores;

    char job_dir[4200], spec_path[4300];
    snprintf(job_dir, sizeof job_dir, "%s/jobs/%lld", srv->cfg.state_dir, (long long)job->id);
    snprintf(spec_path, sizeof spec_path, "%s/spec.json", job_dir);
    json_t *spec = NULL;
    struct jz_error err = {0};
    if (mkdir(job_dir, 0750) != 0 && errno != EEXIST) {
        jz_error_set(&err, JZ_EIO, "cannot create %s: %s", job_dir, strerror(errno));
        goto fail;
    }
    int64_t resume_from = jz_json_int(job->rec, "resume_from", 0);
    if (resume_from && !jz_json_str(job->rec, "checkpoint_time", NULL)) {
        /* Start from the other job's checkpoint: a hard link costs nothing, and the worker's
         * next checkpoint replaces the link rather than writing through it. */
        char src[4300], dst[4300];
        checkpoint_file(jobs, resume_from, src, sizeof src);
        snprintf(dst, sizeof dst, "%s/checkpoint", job_dir);
        mkdir(dst, 0750);
        checkpoint_file(jobs, job->id, dst, sizeof dst);
        if (link(src, dst) != 0 && errno != EEXIST) {
            jz_error_set(&err, JZ_EIO, "cannot resume from job %lld's checkpoint: %s",
                         (long long)resume_from, strerror(errno));
            goto fail;
        }
    }
    spec = build_spec(jobs, job, pl, job_dir);
    if (!spec) {
        jz_error_set(&err, JZ_ENOENT, "plugin '%s' is no longer available",
                     jz_json_str(job->rec, "plugin", ""));
        goto fail;
    }
    /* The spec only needs to outlive this process's crash-free run, so no fsync. */
    if (json_dump_file(spec, spec_path, JSON_COMPACT) != 0) {
        jz_error_set(&err, JZ_EIO, "cannot write %s", spec_path);
        goto fail;
    }
    /* The worker is launched only after the group commit has made RUNNING durable (see
     * jz_jobs_launch): a crash in between then reads as "node lost", never as a pending
     * job that would run a second time. */
    set_state(job, JZ_JOB_RUNNING);
    set_reason(job, NULL);
    set_time(job->rec, "start_time", jz_time_now_ms());
    json_object_set_new(job->rec, "node", json_string(jz_node_name(srv->node)));
    json_t *gpus = json_array();
    for (size_t i = 0; i < job->ngpus; i++) {
        const struct jz_topo_gpu *g = jz_topo_gpu_at(topo, job->gpus[i]);
        json_array_append_new(gpus, json_pack("{s:i, s:s, s:s}", "index", (int)g->index,
                                              "pci_bus_id", g->pci_bus_id, "model", g->model));
    }
    json_object_set_new(job->rec, "gpus", gpus);
    json_object_set(job->rec, "cpus", json_object_get(spec, "cpus"));
    json_object_set(job->rec, "numa_nodes", json_object_get(spec, "numa_nodes"));
    json_t *dev0 = json_array_get(json_object_get(spec, "devices"), 0);
    json_object_set_new(job->rec, "backend", json_string(jz_json_str(dev0, "backend", "cpu")));
    json_object_set_new(job->rec, "placement", json_string(pl->reason));
    json_decref(spec);
    persist(job, "state", "RUNNING");
    job->launch_next = NULL;
    *jobs->launch_tail = job;
    jobs->launch_tail = &job->launch_next;
    jz_log_debug("jobs", "job %lld placed: %s", (long long)job->id, pl->reason);
    return;
fail:
    json_decref(spec);
    jz_log_error("jobs", "job %lld: cannot start: %s", (long long)job->id, err.msg);
    char reason[400];
    snprintf(reason, sizeof reason, "could not start: %s", err.msg);
    finish(job, JZ_JOB_FAILED, reason);
}

struct jz_job *jz_jobs_take_placed(struct jz_jobs *jobs)
{
    struct jz_job *list = jobs->launch_head;
    jobs->launch_head = NULL;
    jobs->launch_tail = &jobs->launch_head;
    return list;
}

void jz_jobs_launch(struct jz_jobs *jobs, struct jz_job *job, bool committed)
{
    struct jz_server *srv = jobs->srv;
    for (struct jz_job *next; job; job = next) {
        next = job->launch_next;
        struct jz_error err = {0};
        char spec_path[4300];
        snprintf(spec_path, sizeof spec_path, "%s/jobs/%lld/spec.json", srv->cfg.state_dir,
                 (long long)job->id);
        if (!committed) {
            finish(job, JZ_JOB_FAILED, "could not start: the store could not record the start");
            continue;
        }
        if (job->cancel_requested) { /* cancelled while its start was being made durable */
            finish(job, JZ_JOB_CANCELLED, "cancelled before its worker started");
            continue;
        }
        if (job->preempting || srv->stopping) {
            /* Preempted before its worker started, or the service is stopping: nothing runs
             * yet, so the job simply waits again. */
            requeue(job, job->preempting ? NULL : "the service stopped before it started");
            continue;
        }
        if (jz_node_launch(srv->node, spec_path, &worker_cbs, job, &job->pid, &err)) {
            char reason[400];
            snprintf(reason, sizeof reason, "could not start: %s", err.msg);
            finish(job, JZ_JOB_FAILED, reason);
            continue;
        }
        json_object_set_new(job->rec, "worker_pid", json_integer(job->pid));
        job->start_ms = jz_time_now_ms();
        set_time(job->rec, "start_time", job->start_ms); /* when its process started */
        job->backstop = evtimer_new(srv->base, on_backstop, job);
        struct timeval tv = {.tv_sec = job->time_limit_s + srv->cfg.kill_grace_s +
                                       BACKSTOP_EXTRA_S};
        evtimer_add(job->backstop, &tv);
        persist(job, NULL, NULL); /* the pid, so a restart can make sure the worker is gone */
    }
}

static void on_preempt_grace(evutil_socket_t fd, short what, void *arg)
{
    struct jz_job *job = arg;
    /* The checkpoint grace is over: stop it like a cancel (TERM, then KILL after the grace). */
    jz_node_signal(job->jobs->srv->node, job->pid, SIGTERM);
}

static void preempt_job(struct jz_jobs *jobs, struct jz_job *job, const struct jz_sched_decision *d)
{
    if (job->state != JZ_JOB_RUNNING || job->preempting)
        return;
    job->preempting = true;
    job->preempted_by = (int64_t)d->for_job;
    if (!job->pid)
        return; /* placed, worker not started yet: jz_jobs_launch requeues it instead */
    jz_node_signal(jobs->srv->node, job->pid, SIGUSR1); /* checkpoint now */
    job->preempt_timer = evtimer_new(jobs->srv->base, on_preempt_grace, job);
    struct timeval tv = {.tv_sec = d->grace_s};
    evtimer_add(job->preempt_timer, &tv);
    char detail[300];
    snprintf(detail, sizeof detail, "preempted for job %llu: %s", (unsigned long long)d->for_job,
             d->why);
    persist(job, "preempt", detail);
    jz_log_info("jobs", "job %lld %s", (long long)job->id, detail);
}

static void decide(struct jz_jobs *jobs, unsigned flags)
{
    struct jz_error err = {0};
    jz_sched_decisions_clear(&jobs->decisions);
    if (jz_sched_decide(jobs->sched, now_s(), flags, &jobs->decisions, &err)) {
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
        if (d->action == JZ_SCHED_START && job->state == JZ_JOB_PENDING)
            start_job(jobs, job, &d->place);
        else if (d->action == JZ_SCHED_PREEMPT)
            preempt_job(jobs, job, d);
    }
    jz_sched_decisions_clear(&jobs->decisions);
}

void jz_jobs_flush(struct jz_jobs *jobs)
{
    flush_dirty(jobs);
}

void jz_jobs_schedule(struct jz_jobs *jobs)
{
    flush_dirty(jobs);
    decide(jobs, 0);
}

static void on_full_pass(evutil_socket_t fd, short what, void *arg)
{
    struct jz_jobs *jobs = arg;
    decide(jobs, JZ_SCHED_FULL);
    jz_server_request_commit(jobs->srv);
    struct timeval tv = {.tv_sec = FULL_PASS_S};
    evtimer_add(jobs->full_timer, &tv);
}

/* Hands a pending job to the scheduler. */
static int sched_submit(struct jz_jobs *jobs, struct jz_job *job, struct jz_error *err)
{
    struct jz_sched_job sj = {
        .id = (uint64_t)job->id,
        .tenant = job->tenant,
        .user = job->user,
        .class_name = jz_json_str(job->rec, "class", NULL),
        .gpus = job->req.gpus,
        .cpus_per_gpu = job->req.cpus_per_gpu,
        .cpus = job->req.cpus,
        .time_limit_s = job->time_limit_s,
        .preemptible = job->preemptible,
        .submit_time = jz_json_int(job->rec, "submit_epoch", now_s()),
        .model = job->model[0] ? job->model : NULL,
        .min_memory_bytes = job->req.min_memory_bytes,
    };
    return jz_sched_submit(jobs->sched, &sj, now_s(), err);
}

/* --- submission ------------------------------------------------------------------------- */

static int field_error(struct jz_jobs *jobs, const char **field, const char *name,
                       struct jz_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int field_error(struct jz_jobs *jobs, const char **field, const char *name,
                       struct jz_error *err, int code, const char *fmt, ...)
{
    jz_strlcpy(jobs->field, name, sizeof jobs->field);
    *field = jobs->field;
    char msg[JZ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jz_error_set(err, code, "%s: %s", name, msg);
}

/* Reads an optional integer field within [lo, hi]; strings are not accepted. */
static int get_int(struct jz_jobs *jobs, const json_t *obj, const char *key, const char *path,
                   int64_t lo, int64_t hi, int64_t dflt, int64_t *out, const char **field,
                   struct jz_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return field_error(jobs, field, path, err, JZ_EINVAL, "expected an integer");
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return field_error(jobs, field, path, err, JZ_ERANGE, "must be between %lld and %lld",
                           (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static bool only_keys(const json_t *obj, const char *const *allowed, const char **bad)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok) {
            *bad = k;
            return false;
        }
    }
    return true;
}

/* A string parameter "job:ID" or "job:ID/NAME" names another job's artifact (NAME defaults to
 * "model"). It is replaced by the artifact's absolute path, after checking that the user may
 * see that job and that the artifact exists, so plugins never need to know about the service. */
static int resolve_artifact_refs(struct jz_jobs *jobs, const struct jz_user *user, json_t *params,
                                 const char **field, struct jz_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v) {
        if (!json_is_string(v) || strncmp(json_string_value(v), "job:", 4) != 0)
            continue;
        char path[160];
        snprintf(path, sizeof path, "params.%.64s", key);
        const char *ref = json_string_value(v) + 4;
        char *end;
        long long id = strtoll(ref, &end, 10);
        const char *name = *end == '/' ? end + 1 : *end == '\0' ? "model" : NULL;
        struct jz_job *src = id > 0 && end != ref ? jz_jobs_find(jobs, id) : NULL;
        if (!name || !jz_name_is_safe(name, 255))
            return field_error(jobs, field, path, err, JZ_EINVAL,
                               "a job reference is job:ID or job:ID/ARTIFACT");
        if (!src || !jz_job_visible_to(src, user))
            return field_error(jobs, field, path, err, JZ_EINVAL, "no job %lld that you may see",
                               id);
        char file[4500];
        snprintf(file, sizeof file, "%s/jobs/%lld/out/%s", jobs->srv->cfg.state_dir, id, name);
        struct stat st;
        if (lstat(file, &st) != 0 || !S_ISREG(st.st_mode))
            return field_error(jobs, field, path, err, JZ_EINVAL, "job %lld has no artifact '%s'",
                               id, name);
        json_object_set_new(params, key, json_string(file));
    }
    return 0;
}

int jz_jobs_submit(struct jz_jobs *jobs, const struct jz_user *user, const json_t *body,
                   json_t **job_out, const char **field, struct jz_error *err)
{
    struct jz_server *srv = jobs->srv;
    *field = NULL;
    static const char *const top_keys[] = {"plugin",     "name",        "params", "resources",
                                           "preemptible", "submit_dir", "resume_from", "class",
                                           NULL};
    static const char *const res_keys[] = {"gpus",      "cpus_per_gpu", "cpus",
                                           "memory_mb", "time_limit_s", "time_limit",
                                           "gpu_model", "gpu_memory_min_mb", NULL};
    const char *bad;
    if (!only_keys(body, top_keys, &bad))
        return field_error(jobs, field, bad, err, JZ_EINVAL, "unknown field");

    json_t *jplugin = json_object_get(body, "plugin");
    if (!json_is_string(jplugin))
        return field_error(jobs, field, "plugin", err, JZ_EINVAL,
                           jplugin ? "expected a string" : "required");
    const char *plugin = json_string_value(jplugin);
    const struct jz_plugin_entry *pe = jz_plugins_find(srv->plugins, plugin);
    if (!pe) {
        const struct jz_plugin_entry *refused = jz_plugins_find_refused(srv->plugins, plugin);
        if (refused)
            return field_error(jobs, field, "plugin", err, JZ_EINVAL,
                               "plugin '%s' was refused: %s", plugin, refused->reason);
        return field_error(jobs, field, "plugin", err, JZ_EINVAL,
                           "unknown plugin '%.64s' (see GET /v1/plugins)", plugin);
    }

    json_t *jname = json_object_get(body, "name");
    const char *name = plugin;
    if (jname && !json_is_null(jname)) {
        if (!json_is_string(jname))
            return field_error(jobs, field, "name", err, JZ_EINVAL, "expected a string");
        name = json_string_value(jname);
        size_t len = strlen(name);
        if (len == 0 || len > JZ_MAX_NAME_LEN)
            return field_error(jobs, field, "name", err, JZ_EINVAL, "must be 1-%d bytes",
                               JZ_MAX_NAME_LEN);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
                return field_error(jobs, field, "name", err, JZ_EINVAL,
                                   "control characters are not allowed");
    }

    json_t *jsubmit = json_object_get(body, "submit_dir");
    const char *submit_dir = "";
    if (jsubmit && !json_is_null(jsubmit)) {
        if (!json_is_string(jsubmit) || json_string_value(jsubmit)[0] != '/' ||
            strlen(json_string_value(jsubmit)) > JZ_MAX_PATH_LEN)
            return field_error(jobs, field, "submit_dir", err, JZ_EINVAL,
                               "expected an absolute path of at most %d bytes", JZ_MAX_PATH_LEN);
        submit_dir = json_string_value(jsubmit);
    }

    json_t *jclass = json_object_get(body, "class");
    if (jclass && !json_is_null(jclass) &&
        (!json_is_string(jclass) || !jz_name_is_safe(json_string_value(jclass), 63)))
        return field_error(jobs, field, "class", err, JZ_EINVAL, "expected a class name");
    json_t *jpre = json_object_get(body, "preemptible");
    if (jpre && !json_is_boolean(jpre) && !json_is_null(jpre))
        return field_error(jobs, field, "preemptible", err, JZ_EINVAL, "expected true or false");

    json_t *res = json_object_get(body, "resources");
    if (res && !json_is_object(res) && !json_is_null(res))
        return field_error(jobs, field, "resources", err, JZ_EINVAL, "expected an object");
    if (res && json_is_object(res) && !only_keys(res, res_keys, &bad)) {
        char path[160];
        snprintf(path, sizeof path, "resources.%.100s", bad);
        return field_error(jobs, field, path, err, JZ_EINVAL, "unknown field");
    }
    int64_t gpus, cpg, cpus, mem, tl, gmem;
    if (get_int(jobs, res, "gpus", "resources.gpus", 0, JZ_TOPO_MAX_GPUS, 0, &gpus, field, err) ||
        get_int(jobs, res, "cpus_per_gpu", "resources.cpus_per_gpu", 0, 1024, 1, &cpg, field,
                err) ||
        get_int(jobs, res, "cpus", "resources.cpus", 1, JZ_MAX_CPUS_PER_JOB, 1, &cpus, field,
                err) ||
        get_int(jobs, res, "memory_mb", "resources.memory_mb", 0, 1LL << 32, 0, &mem, field,
                err) ||
        get_int(jobs, res, "gpu_memory_min_mb", "resources.gpu_memory_min_mb", 0, 1LL << 24, 0,
                &gmem, field, err) ||
        get_int(jobs, res, "time_limit_s", "resources.time_limit_s", 1, JZ_MAX_TIME_LIMIT_S,
                JZ_DEFAULT_TIME_LIMIT_S, &tl, field, err))
        return err->code;
    json_t *jtl = json_object_get(res, "time_limit");
    if (jtl && !json_is_null(jtl)) {
        struct jz_error derr = {0};
        if (!json_is_string(jtl) || jz_duration_parse(json_string_value(jtl), &tl, &derr))
            return field_error(jobs, field, "resources.time_limit", err, JZ_EINVAL, "%s",
                               json_is_string(jtl) ? derr.msg : "expected a duration string");
        if (tl < 1 || tl > JZ_MAX_TIME_LIMIT_S)
            return field_error(jobs, field, "resources.time_limit", err, JZ_ERANGE,
                               "must be between 1s and 30d");
    }
    json_t *jmodel = json_object_get(res, "gpu_model");
    const char *model = NULL;
    if (jmodel && !json_is_null(jmodel)) {
        if (!json_is_string(jmodel) || strlen(json_string_value(jmodel)) >= 64)
            return field_error(jobs, field, "resources.gpu_model", err, JZ_EINVAL,
                               "expected a string under 64 bytes");
        model = json_string_value(jmodel);
    }
    if ((pe->caps & JZ_CAP_NEEDS_GPU) && gpus == 0)
        return field_error(jobs, field, "resources.gpus", err, JZ_EINVAL,
                           "plugin '%s' needs at least one GPU", plugin);

    /* A job that could never fit, even on an empty node, is refused now rather than left
     * waiting forever. */
    struct jz_place_request req = {.gpus = (unsigned)gpus, .cpus_per_gpu = (unsigned)cpg,
                                   .cpus = (unsigned)cpus, .model = model,
                                   .min_memory_bytes = (uint64_t)gmem << 20};
    struct jz_place_result pl = {0};
    struct jz_error perr = {0};
    if (jz_place(jz_node_topo(srv->node), NULL, &req, &pl, &perr))
        return field_error(jobs, field, "resources", err, JZ_EINVAL, "%s", perr.msg);
    bool fits = pl.fits;
    char why[JZ_PLACE_REASON_LEN];
    jz_strlcpy(why, pl.reason, sizeof why);
    jz_place_result_free(&pl);
    if (!fits)
        return field_error(jobs, field, gpus ? "resources.gpus" : "resources.cpus", err,
                           JZ_EINVAL, "can never run on this cluster: %s", why);

    json_t *params = json_object_get(body, "params");
    if (params && !json_is_null(params) && !json_is_object(params))
        return field_error(jobs, field, "params", err, JZ_EINVAL, "expected an object");
    json_t *norm = NULL;
    char *pfield = NULL;
    if (jz_params_validate(json_object_get(pe->desc, "params"),
                           json_is_object(params) ? params : NULL, &norm, &pfield, err)) {
        jz_strlcpy(jobs->field, pfield ? pfield : "params", sizeof jobs->field);
        *field = jobs->field;
        free(pfield);
        return err->code;
    }

    if (resolve_artifact_refs(jobs, user, norm, field, err)) {
        json_decref(norm);
        return err->code;
    }
    int64_t resume_from = 0;
    json_t *jresume = json_object_get(body, "resume_from");
    if (jresume && !json_is_null(jresume)) {
        struct jz_job *src = json_is_integer(jresume)
                                 ? jz_jobs_find(jobs, json_integer_value(jresume))
                                 : NULL;
        char ckpt[4300];
        struct stat st;
        if (src && jz_job_visible_to(src, user))
            checkpoint_file(jobs, src->id, ckpt, sizeof ckpt);
        int rc = !json_is_integer(jresume)
                     ? field_error(jobs, field, "resume_from", err, JZ_EINVAL, "expected a job id")
                 : !src || !jz_job_visible_to(src, user)
                     ? field_error(jobs, field, "resume_from", err, JZ_EINVAL,
                                   "no job %lld that you may see",
                                   (long long)json_integer_value(jresume))
                 : stat(ckpt, &st) != 0
                     ? field_error(jobs, field, "resume_from", err, JZ_EINVAL,
                                   "job %lld has no checkpoint", (long long)src->id)
                     : 0;
        if (rc) {
            json_decref(norm);
            return rc;
        }
        resume_from = src->id;
    }

    json_t *pending = json_object_get(jobs->pending_by_user, user->name);
    if (pending && json_integer_value(pending) >= srv->cfg.max_pending_per_user) {
        json_decref(norm);
        return jz_error_set(err, JZ_EAGAIN, "user '%s' already has %lld pending jobs (the limit)",
                            user->name, (long long)json_integer_value(pending));
    }

    int64_t id = jobs->max_id + 1;
    char ts[40];
    jz_time_format_iso(jz_time_now_ms(), ts, sizeof ts);
    json_t *rec = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:s?, s:I}, s:b, s:s,"
        " s:s, s:s, s:s, s:n, s:n, s:n, s:n, s:n, s:[], s:n, s:n, s:n, s:{}, s:[], s:n, s:i}",
        "id", (json_int_t)id, "name", name, "user", user->name, "tenant", user->tenant, "plugin",
        plugin, "params", norm, "resources", "gpus", (json_int_t)gpus, "cpus_per_gpu",
        (json_int_t)cpg, "cpus", (json_int_t)cpus, "memory_mb", (json_int_t)mem, "time_limit_s",
        (json_int_t)tl, "gpu_model", model, "gpu_memory_min_mb", (json_int_t)gmem,
        "preemptible", json_is_true(jpre), "submit_dir", submit_dir, "state", "PENDING",
        "reason", "queued", "submit_time", ts, "start_time", "end_time", "exit_code", "signal", "node",
        "gpus", "cpus", "backend", "progress", "metrics", "artifacts", "estimated_start",
        "requeues", 0);
    if (!rec)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    if (resume_from)
        json_object_set_new(rec, "resume_from", json_integer(resume_from));
    if (json_is_string(jclass))
        json_object_set(rec, "class", jclass);
    json_object_set_new(rec, "submit_epoch", json_integer(now_s()));
    struct jz_job *job = job_new(jobs, rec);
    if (!job || table_put(jobs, job)) {
        if (job)
            job_free(job);
        else
            json_decref(rec);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    struct jz_error serr = {0};
    if (sched_submit(jobs, job, &serr)) {
        /* Refused by the policy (an unknown class): the job never existed. */
        jobs->by_id[id] = NULL;
        jobs->counts[job->state]--;
        jobs->max_id = id - 1;
        job_free(job);
        return field_error(jobs, field, jclass ? "class" : "resources", err, JZ_EINVAL, "%s",
                           serr.msg);
    }
    queue_push(jobs, job);
    persist(job, "state", "PENDING");
    *job_out = json_incref(rec);
    return 0;
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
    struct jz_sched_job_info info;
    if (job->state == JZ_JOB_PENDING &&
        jz_sched_job_info(job->jobs->sched, (uint64_t)job->id, &info, NULL) == 0) {
        const char *why = info.reason_text[0] ? info.reason_text
                          : info.reason == JZ_SCHED_REASON_NEW ? "queued; not yet considered"
                                                               : jz_sched_reason_name(info.reason);
        json_object_set_new(job->rec, "reason", json_string(why));
        json_object_set_new(job->rec, "reason_code",
                            json_string(jz_sched_reason_name(info.reason)));
        json_object_set_new(job->rec, "priority", json_real(info.priority));
        if (info.est_start >= 0) {
            char ts[40];
            jz_time_format_iso(info.est_start * 1000, ts, sizeof ts);
            json_object_set_new(job->rec, "estimated_start", json_string(ts));
        } else {
            json_object_set_new(job->rec, "estimated_start", json_null());
        }
    } else if (job->state != JZ_JOB_PENDING) {
        json_object_del(job->rec, "reason_code");
        json_object_set_new(job->rec, "estimated_start", json_null());
    }
    return job->rec;
}

enum jz_job_state jz_job_state(const struct jz_job *job)
{
    return job->state;
}

bool jz_job_visible_to(const struct jz_job *job, const struct jz_user *user)
{
    return user->admin || strcmp(job->user, user->name) == 0;
}

int jz_jobs_cancel(struct jz_jobs *jobs, struct jz_job *job, const char *by,
                   struct jz_error *err)
{
    if (state_is_final(job->state))
        return jz_error_set(err, JZ_EBUSY, "job %lld already ended (%s)", (long long)job->id,
                            state_names[job->state]);
    json_object_set_new(job->rec, "cancelled_by", json_string(by));
    if (job->state == JZ_JOB_PENDING) {
        queue_remove(jobs, job);
        finish(job, JZ_JOB_CANCELLED, "cancelled before it started");
        return 0;
    }
    if (!job->cancel_requested) {
        job->cancel_requested = true;
        jz_node_signal(jobs->srv->node, job->pid, SIGTERM);
        persist(job, "cancel", "cancel requested; the worker was sent SIGTERM");
    }
    return 0;
}

json_t *jz_jobs_list(struct jz_jobs *jobs, const struct jz_user *user, unsigned state_mask,
                     const char *user_filter, int64_t after, bool desc, size_t limit)
{
    json_t *arr = json_array();
    int64_t last = 0;
    bool more = false;
    int64_t id = desc ? (after > 0 ? after - 1 : jobs->max_id) : after + 1;
    for (; id >= 1 && id <= jobs->max_id; id += desc ? -1 : 1) {
        struct jz_job *job = jobs->by_id[id];
        if (!job || !jz_job_visible_to(job, user))
            continue;
        if (state_mask && !(state_mask & (1u << job->state)))
            continue;
        if (user_filter && strcmp(job->user, user_filter) != 0)
            continue;
        if (json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_t *copy = json_copy(jz_job_record(job));
        json_object_del(copy, "worker_pid");
        json_object_del(copy, "job_pgid");
        json_array_append_new(arr, copy);
        last = id;
    }
    return json_pack("{s:o, s:o}", "jobs", arr, "next_after",
                     more ? json_integer(last) : json_null());
}

void jz_jobs_tenant_credit(struct jz_jobs *jobs, const char *tenant, bool has_credit)
{
    struct jz_error err = {0};
    if (jz_sched_tenant_set_credit(jobs->sched, tenant, has_credit, &err))
        jz_log_warn("jobs", "tenant %s: %s", tenant, err.msg);
    jz_server_request_commit(jobs->srv); /* regained credit: schedule again */
}

json_t *jz_jobs_nodes_json(struct jz_jobs *jobs)
{
    struct jz_node *node = jobs->srv->node;
    const struct jz_topo *topo = jz_node_topo(node);
    size_t n = jz_topo_gpu_count(topo), free_gpus = 0;
    json_t *gpus = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct jz_topo_gpu *g = jz_topo_gpu_at(topo, i);
        int32_t owner = jobs->gpu_job[i];
        free_gpus += owner == 0;
        json_array_append_new(
            gpus, json_pack("{s:i, s:s, s:s, s:I, s:i, s:s, s:o}", "index", (int)i, "pci_bus_id",
                            g->pci_bus_id, "model", g->model, "memory_bytes",
                            (json_int_t)g->memory_bytes, "numa", g->numa_os, "os_names",
                            g->os_names, "job", owner ? json_integer(owner) : json_null()));
    }
    char desc[256];
    jz_topo_describe(topo, desc, sizeof desc);
    json_t *node_j = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "name", jz_node_name(node),
        "state", "up", "source", jz_node_source(node), "description", desc, "cpus",
        (json_int_t)jz_topo_cpu_count(topo), "cores", (json_int_t)jz_topo_core_count(topo),
        "cores_free", (json_int_t)jobs->free_cores, "gpus_total", (json_int_t)n, "gpus_free",
        (json_int_t)free_gpus, "running_jobs", (json_int_t)jobs->counts[JZ_JOB_RUNNING], "gpus",
        gpus);
    return json_pack("{s:[o]}", "nodes", node_j);
}

void jz_jobs_counts(const struct jz_jobs *jobs, size_t counts[6])
{
    memcpy(counts, jobs->counts, sizeof jobs->counts);
}

/* --- start-up and shut-down -------------------------------------------------------------- */

/* True when pid is still a jazari-worker (so that a recycled pid is never killed). */
static bool is_our_worker(pid_t pid)
{
    char path[64], cmd[256] = "";
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    cmd[n] = '\0';
    return strstr(cmd, "jazari-worker") != NULL;
}

static int load_job(void *arg, json_t *rec)
{
    struct jz_jobs *jobs = arg;
    struct jz_job *job = job_new(jobs, json_incref(rec));
    if (!job || table_put(jobs, job)) {
        job_free(job);
        return 1;
    }
    struct jz_error err = {0};
    if (job->state == JZ_JOB_PENDING) {
        queue_push(jobs, job);
        if (sched_submit(jobs, job, &err)) {
            queue_remove(jobs, job);
            finish(job, JZ_JOB_FAILED, err.msg);
        }
    } else if (job->state == JZ_JOB_RUNNING) {
        pid_t pid = (pid_t)jz_json_int(rec, "worker_pid", 0);
        if (pid > 0 && is_our_worker(pid)) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        /* What the job started lives on in its own process group after the worker died with
         * the old jazarid. A process-group id is not reused while any member lives, so this
         * reaches only what is left of this job. */
        pid_t pgid = (pid_t)jz_json_int(rec, "job_pgid", 0);
        if (pgid > 1)
            kill(-pgid, SIGKILL);
        json_object_del(job->rec, "worker_pid");
        json_object_del(job->rec, "job_pgid");
        if (job->preemptible) {
            /* A preemptible job has said it may be restarted: put it back in the queue. */
            set_state(job, JZ_JOB_PENDING);
            set_reason(job, "requeued: node lost (jazarid restarted while it ran)");
            json_object_set_new(job->rec, "requeues",
                                json_integer(jz_json_int(job->rec, "requeues", 0) + 1));
            json_object_set_new(job->rec, "start_time", json_null());
            queue_push(jobs, job);
            persist(job, "state", "PENDING: requeued after node lost");
            if (sched_submit(jobs, job, &err)) {
                queue_remove(jobs, job);
                finish(job, JZ_JOB_FAILED, err.msg);
            }
        } else {
            set_state(job, JZ_JOB_FAILED);
            set_reason(job, "node lost: jazarid stopped while the job was running");
            set_time(job->rec, "end_time", jz_time_now_ms());
            persist(job, "state", "FAILED: node lost");
        }
    }
    return 0;
}

int jz_jobs_open(struct jz_server *srv, struct jz_jobs **out, struct jz_error *err)
{
    struct jz_jobs *jobs = calloc(1, sizeof *jobs);
    if (!jobs)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    jobs->srv = srv;
    jobs->launch_tail = &jobs->launch_head;
    jobs->pending_by_user = json_object();
    jz_sched_decisions_init(&jobs->decisions);
    const struct jz_topo *topo = jz_node_topo(srv->node);
    jobs->gpu_job = calloc(JZ_TOPO_MAX_GPUS, sizeof(int32_t));
    jobs->free_cores = jz_topo_core_count(topo);
    if (!jobs->gpu_job) {
        jz_jobs_close(jobs);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    /* The policy from the configuration file's "scheduler" object (docs/scheduler.md). */
    struct jz_sched_parsed *pc = NULL;
    size_t node_index;
    int rc = jz_sched_config_parse(json_object_get(srv->config, "scheduler"), &pc, err);
    if (!rc)
        rc = jz_sched_create(&pc->cfg, &jobs->sched, err);
    if (!rc)
        rc = jz_sched_node_add(jobs->sched, jz_node_name(srv->node), topo, &node_index, err);
    for (size_t i = 0; !rc && i < pc->reservation_count; i++)
        rc = jz_sched_reservation_add(jobs->sched, &pc->reservations[i], err);
    jz_sched_parsed_free(pc);
    if (rc) {
        jz_jobs_close(jobs);
        return rc;
    }
    jobs->full_timer = evtimer_new(srv->base, on_full_pass, jobs);
    struct timeval tv = {.tv_sec = FULL_PASS_S};
    evtimer_add(jobs->full_timer, &tv);
    rc = srv->store->ops->jobs_each(srv->store, load_job, jobs, err);
    if (rc) {
        jz_jobs_close(jobs);
        return rc;
    }
    int64_t max_store = srv->store->ops->job_max_id(srv->store);
    if (max_store > jobs->max_id)
        jobs->max_id = max_store;
    *out = jobs;
    return 0;
}

void jz_jobs_close(struct jz_jobs *jobs)
{
    if (!jobs)
        return;
    for (size_t i = 0; i < jobs->cap; i++)
        job_free(jobs->by_id[i]);
    free(jobs->by_id);
    free(jobs->gpu_job);
    if (jobs->full_timer)
        event_free(jobs->full_timer);
    jz_sched_decisions_free(&jobs->decisions);
    jz_sched_destroy(jobs->sched);
    json_decref(jobs->pending_by_user);
    free(jobs);
}
