/* A job's record: the typed job turned into the JSON the store keeps and the API shows, and a
 * stored record read back. The only place where a job's state is JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/jobs_internal.h"

/* Keys of a record that are the submission's (kept as submitted). */
static const char *const request_keys[] = {
    "id", "name", "user", "tenant", "plugin", "plugin_version", "plugin_sha256", "params",
    "resources", "preemptible", "requeue", "submit_dir", "class", "resume_from", "inputs",
    "submit_epoch", "array", "reservation", NULL};

void jz_job_set_str(char **field, const char *value)
{
    free(*field);
    *field = value ? strdup(value) : NULL;
}

static json_t *time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char ts[40];
    jz_time_format_iso(ms, ts, sizeof ts);
    return json_string(ts);
}

/* A stored time, 0 when absent or unreadable. */
static int64_t parse_time(const json_t *rec, const char *key)
{
    int64_t ms = 0;
    return jz_time_parse_iso(jz_json_str(rec, key, NULL), &ms, NULL) == 0 ? ms : 0;
}

void jz_job_clear_placement(struct jz_job *job)
{
    for (size_t i = 0; i < job->nplaced; i++) {
        free(job->placed[i].gpus);
        free(job->placed[i].cores);
        free(job->placed[i].cpus);
        free(job->placed[i].numa_nodes);
    }
    free(job->placed);
    job->placed = NULL;
    job->nplaced = 0;
}

void jz_job_record_free(struct jz_job *job)
{
    json_decref(job->request);
    free(job->reason);
    free(job->progress_msg);
    json_decref(job->metrics);
    json_decref(job->artifacts);
    free(job->deps);
    free(job->notify_url);
    free(job->notify_secret);
    free(job->view_gpus);
    free(job->view_nodes);
    free(job->view_cpus);
    free(job->view_numa);
    free(job->view_placement);
    jz_job_clear_placement(job);
}

static json_t *index_array(const size_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)v[i]));
    return a;
}

static size_t *index_list(const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    size_t *v = calloc(*n + 1, sizeof *v);
    for (size_t i = 0; v && i < *n; i++)
        v[i] = (size_t)json_integer_value(json_array_get(a, i));
    if (!v)
        *n = 0;
    return v;
}

json_t *jz_job_record_json(const struct jz_job *job, bool internal)
{
    json_t *rec = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(job->request, k, v) {
        if (internal || (strcmp(k, "inputs") != 0 && strcmp(k, "submit_epoch") != 0))
            json_object_set(rec, k, v);
    }
    json_t *gpus = json_array(), *nodes = json_array();
    for (size_t i = 0; i < job->view_ngpus; i++) {
        const struct jz_job_gpu *g = &job->view_gpus[i];
        json_array_append_new(gpus, json_pack("{s:i, s:s, s:s, s:s}", "index", g->index,
                                              "pci_bus_id", g->pci_bus_id, "model", g->model,
                                              "node", g->node));
    }
    for (size_t i = 0; i < job->view_nnodes; i++)
        json_array_append_new(nodes, json_string(job->view_nodes[i]));
    json_object_set_new(rec, "state", json_string(jz_job_state_name(job->state)));
    json_object_set_new(rec, "reason", job->reason ? json_string(job->reason) : json_null());
    json_object_set_new(rec, "submit_time", time_or_null(job->submit_ms));
    json_object_set_new(rec, "start_time", time_or_null(job->start_wall_ms));
    json_object_set_new(rec, "end_time", time_or_null(job->end_ms));
    json_object_set_new(rec, "exit_code",
                        job->has_exit_code ? json_integer(job->exit_code) : json_null());
    json_object_set_new(rec, "signal",
                        job->has_signal ? json_integer(job->exit_signal) : json_null());
    json_object_set_new(rec, "node",
                        job->view_nnodes ? json_string(job->view_nodes[0]) : json_null());
    json_object_set_new(rec, "nodes", nodes);
    json_object_set_new(rec, "gpus", gpus);
    json_object_set_new(rec, "cpus", job->view_cpus ? json_string(job->view_cpus) : json_null());
    if (job->view_numa)
        json_object_set_new(rec, "numa_nodes", json_string(job->view_numa));
    if (job->view_placement)
        json_object_set_new(rec, "placement", json_string(job->view_placement));
    json_object_set_new(rec, "backend",
                        job->backend[0] ? json_string(job->backend) : json_null());
    json_object_set_new(rec, "progress",
                        job->has_progress
                            ? json_pack("{s:f, s:s?}", "fraction", job->progress, "message",
                                        job->progress_msg)
                            : json_null());
    json_object_set_new(rec, "metrics", job->metrics ? json_deep_copy(job->metrics)
                                                     : json_object());
    if (job->metrics_step >= 0)
        json_object_set_new(rec, "metrics_step", json_integer(job->metrics_step));
    json_object_set_new(rec, "artifacts", job->artifacts ? json_deep_copy(job->artifacts)
                                                         : json_array());
    json_object_set_new(rec, "checkpoint_time", time_or_null(job->checkpoint_ms));
    json_object_set_new(rec, "cancelled_by",
                        job->cancelled_by[0] ? json_string(job->cancelled_by) : json_null());
    json_object_set_new(rec, "estimated_start", json_null());
    json_object_set_new(rec, "requeues", json_integer(job->run));
    json_object_set_new(rec, "held", json_boolean(job->held));
    json_object_set_new(rec, "held_by", job->held ? json_string(job->held_by) : json_null());
    if (internal && job->held && job->held_by_admin)
        json_object_set_new(rec, "held_by_admin", json_true());
    json_object_set_new(rec, "nice", json_integer(job->nice));
    json_t *deps = json_array();
    for (unsigned i = 0; i < job->ndeps; i++)
        json_array_append_new(deps, json_pack("{s:s, s:I, s:s}", "type",
                                              jz_dep_type_name(job->deps[i].type), "job",
                                              (json_int_t)job->deps[i].job, "state",
                                              jz_dep_state_name(job->deps[i].state)));
    json_object_set_new(rec, "dependencies", deps);
    if (!json_object_get(rec, "array"))
        json_object_set_new(rec, "array", json_null());
    if (internal) {
        if (job->notify_url)
            json_object_set_new(rec, "notify", json_pack("{s:s, s:s}", "url", job->notify_url,
                                                         "secret", job->notify_secret ?: ""));
        if (job->gpu_seconds > 0)
            json_object_set_new(rec, "gpu_seconds", json_real(job->gpu_seconds));
    } else {
        json_object_set_new(rec, "notify_url",
                            job->notify_url ? json_string(job->notify_url) : json_null());
        /* What sacct shows: the wait, the run, and GPU-hours of every run so far. */
        int64_t now = jz_time_now_ms();
        int64_t waited_until = job->start_wall_ms ? job->start_wall_ms
                               : job->end_ms      ? job->end_ms
                                                  : now;
        json_object_set_new(rec, "wait_s", job->submit_ms && waited_until >= job->submit_ms
                                               ? json_integer((waited_until - job->submit_ms) /
                                                              1000)
                                               : json_null());
        int64_t ran_until = job->end_ms ? job->end_ms : now;
        json_object_set_new(rec, "run_s", job->start_wall_ms && ran_until >= job->start_wall_ms
                                              ? json_integer((ran_until - job->start_wall_ms) /
                                                             1000)
                                              : json_null());
        double gpu_s = job->gpu_seconds;
        if (job->start_mono_ms > 0 && job->state == JZ_JOB_RUNNING) {
            unsigned g = 0;
            for (unsigned i = 0; i < job->nparts; i++)
                g += (unsigned)job->parts[i].ngpus;
            int64_t ran = jz_time_mono_ms() - job->start_mono_ms;
            gpu_s += ran > 0 ? (double)g * (double)ran / 1000.0 : 0;
        }
        json_object_set_new(rec, "gpu_hours", json_real(gpu_s / 3600.0));
    }
    if (internal && job->metric_points) /* the bound on its metric events, across restarts */
        json_object_set_new(rec, "metric_points", json_integer(job->metric_points));
    if (internal && job->nplaced) {
        json_t *stored = json_array();
        for (size_t i = 0; i < job->nplaced; i++) {
            const struct jz_job_placed *p = &job->placed[i];
            json_array_append_new(
                stored, json_pack("{s:s, s:o, s:o, s:s, s:s}", "node", p->node, "gpus",
                                  index_array(p->gpus, p->ngpus), "cores",
                                  index_array(p->cores, p->ncores), "cpus",
                                  p->cpus ? p->cpus : "", "numa_nodes",
                                  p->numa_nodes ? p->numa_nodes : ""));
        }
        json_object_set_new(rec, "placement_parts", stored);
        if (job->start_ms)
            json_object_set_new(rec, "run_start_ms", json_integer(job->start_ms));
        json_object_set_new(rec, "run_price", json_real(job->run_price));
        json_object_set_new(rec, "run_log_base", json_integer(job->log_base));
    }
    return rec;
}

/* The researcher's workflow fields: hold, nice, dependencies, array, webhook, GPU time. Values
 * out of range (a hand-edited store) fall back to none. */
static int load_workflow(struct jz_job *job, const json_t *rec)
{
    job->held = jz_json_bool(rec, "held", false);
    jz_strlcpy(job->held_by, jz_json_str(rec, "held_by", ""), sizeof job->held_by);
    job->held_by_admin = job->held && jz_json_bool(rec, "held_by_admin", false);
    job->nice = jz_json_int(rec, "nice", 0);
    if (job->nice < -JZ_MAX_NICE || job->nice > JZ_MAX_NICE)
        job->nice = 0;
    json_t *deps = json_object_get(rec, "dependencies");
    size_t n = json_array_size(deps);
    if (n > JZ_MAX_DEPS)
        n = JZ_MAX_DEPS;
    job->deps = n ? calloc(n, sizeof *job->deps) : NULL;
    if (n && !job->deps)
        return JZ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(deps, i);
        int t = jz_dep_type_parse(jz_json_str(d, "type", ""));
        const char *st = jz_json_str(d, "state", "waiting");
        if (t < 0)
            continue;
        struct jz_job_dep *jd = &job->deps[job->ndeps++];
        jd->job = jz_json_int(d, "job", 0);
        jd->type = (uint8_t)t;
        jd->state = strcmp(st, "satisfied") == 0 ? JZ_DEP_SATISFIED
                    : strcmp(st, "never") == 0   ? JZ_DEP_NEVER
                                                 : JZ_DEP_WAITING;
    }
    json_t *arr = json_object_get(rec, "array");
    int64_t aid = jz_json_int(arr, "id", 0), count = jz_json_int(arr, "count", 0);
    int64_t throttle = jz_json_int(arr, "throttle", 0);
    if (json_is_object(arr) && aid > 0 && aid <= job->id && count >= 1 &&
        count <= JZ_MAX_ARRAY_ELEMENTS && job->id - aid < count) {
        job->array_id = aid;
        job->array_index = jz_json_int(arr, "index", 0);
        job->array_count = (unsigned)count;
        job->array_throttle = throttle > 0 && throttle <= count ? (unsigned)throttle : 0;
    }
    json_t *notify = json_object_get(rec, "notify");
    if (json_is_object(notify) && jz_json_str(notify, "url", NULL)) {
        jz_job_set_str(&job->notify_url, jz_json_str(notify, "url", NULL));
        jz_job_set_str(&job->notify_secret, jz_json_str(notify, "secret", ""));
    }
    double gs = jz_json_num(rec, "gpu_seconds", 0);
    job->gpu_seconds = gs > 0 ? gs : 0;
    return 0;
}

int jz_job_record_load(struct jz_job *job, const json_t *rec)
{
    job->request = json_object();
    if (!job->request)
        return JZ_ENOMEM;
    for (size_t i = 0; request_keys[i]; i++) {
        json_t *v = json_object_get(rec, request_keys[i]);
        if (v)
            json_object_set(job->request, request_keys[i], v);
    }
    job->reason = NULL;
    jz_job_set_str(&job->reason, jz_json_str(rec, "reason", NULL));
    job->submit_ms = parse_time(rec, "submit_time");
    job->start_wall_ms = parse_time(rec, "start_time");
    job->end_ms = parse_time(rec, "end_time");
    job->checkpoint_ms = parse_time(rec, "checkpoint_time");
    json_t *code = json_object_get(rec, "exit_code"), *sig = json_object_get(rec, "signal");
    job->has_exit_code = json_is_integer(code);
    job->exit_code = (int)json_integer_value(code);
    job->has_signal = json_is_integer(sig);
    job->exit_signal = (int)json_integer_value(sig);
    jz_strlcpy(job->backend, jz_json_str(rec, "backend", ""), sizeof job->backend);
    json_t *prog = json_object_get(rec, "progress");
    job->has_progress = json_is_object(prog);
    job->progress = jz_json_num(prog, "fraction", 0);
    jz_job_set_str(&job->progress_msg, jz_json_str(prog, "message", NULL));
    json_t *m = json_object_get(rec, "metrics");
    job->metrics = json_is_object(m) ? json_deep_copy(m) : json_object();
    job->metrics_step = jz_json_int(rec, "metrics_step", -1);
    int64_t points = jz_json_int(rec, "metric_points", 0);
    job->metric_points = points < 0 ? 0
                         : points > JZ_MAX_METRIC_POINTS_PER_JOB ? JZ_MAX_METRIC_POINTS_PER_JOB
                                                                : (unsigned)points;
    json_t *arts = json_object_get(rec, "artifacts");
    job->artifacts = json_is_array(arts) ? json_deep_copy(arts) : json_array();
    jz_strlcpy(job->cancelled_by, jz_json_str(rec, "cancelled_by", ""), sizeof job->cancelled_by);
    json_t *gpus = json_object_get(rec, "gpus"), *nodes = json_object_get(rec, "nodes");
    job->view_ngpus = json_array_size(gpus);
    job->view_gpus = calloc(job->view_ngpus + 1, sizeof *job->view_gpus);
    for (size_t i = 0; job->view_gpus && i < job->view_ngpus; i++) {
        json_t *g = json_array_get(gpus, i);
        struct jz_job_gpu *jg = &job->view_gpus[i];
        jg->index = (int)jz_json_int(g, "index", 0);
        jz_strlcpy(jg->pci_bus_id, jz_json_str(g, "pci_bus_id", ""), sizeof jg->pci_bus_id);
        jz_strlcpy(jg->model, jz_json_str(g, "model", ""), sizeof jg->model);
        jz_strlcpy(jg->node, jz_json_str(g, "node", jz_json_str(rec, "node", "")),
                   sizeof jg->node);
    }
    /* Records from before multi-node jobs name one node. */
    if (!json_array_size(nodes) && jz_json_str(rec, "node", NULL)) {
        job->view_nnodes = 1;
        job->view_nodes = calloc(1, sizeof *job->view_nodes);
        if (job->view_nodes)
            jz_strlcpy(job->view_nodes[0], jz_json_str(rec, "node", ""), 64);
    } else {
        job->view_nnodes = json_array_size(nodes);
        job->view_nodes = calloc(job->view_nnodes + 1, sizeof *job->view_nodes);
        for (size_t i = 0; job->view_nodes && i < job->view_nnodes; i++)
            jz_strlcpy(job->view_nodes[i], json_string_value(json_array_get(nodes, i)) ?: "",
                       64);
    }
    if (!job->view_gpus || !job->view_nodes)
        return JZ_ENOMEM;
    jz_job_set_str(&job->view_cpus, jz_json_str(rec, "cpus", NULL));
    jz_job_set_str(&job->view_numa, jz_json_str(rec, "numa_nodes", NULL));
    jz_job_set_str(&job->view_placement, jz_json_str(rec, "placement", NULL));
    json_t *stored = json_object_get(rec, "placement_parts");
    size_t nplaced = json_array_size(stored);
    if (nplaced > JZ_MAX_NODES_PER_JOB)
        nplaced = 0;
    job->placed = nplaced ? calloc(nplaced, sizeof *job->placed) : NULL;
    if (nplaced && !job->placed)
        return JZ_ENOMEM;
    job->nplaced = nplaced;
    for (size_t i = 0; i < job->nplaced; i++) {
        json_t *sp = json_array_get(stored, i);
        struct jz_job_placed *p = &job->placed[i];
        jz_strlcpy(p->node, jz_json_str(sp, "node", ""), sizeof p->node);
        p->gpus = index_list(json_object_get(sp, "gpus"), &p->ngpus);
        p->cores = index_list(json_object_get(sp, "cores"), &p->ncores);
        p->cpus = strdup(jz_json_str(sp, "cpus", ""));
        p->numa_nodes = strdup(jz_json_str(sp, "numa_nodes", ""));
        if (!p->gpus || !p->cores || !p->cpus || !p->numa_nodes)
            return JZ_ENOMEM;
    }
    if (load_workflow(job, rec))
        return JZ_ENOMEM;
    job->start_ms = job->nplaced ? jz_json_int(rec, "run_start_ms", 0) : 0;
    double price = job->nplaced ? jz_json_num(rec, "run_price", 0) : 0;
    job->run_price = isfinite(price) && price > 0 ? price : 0;
    job->log_base = job->nplaced ? jz_json_int(rec, "run_log_base", 0) : 0;
    return 0;
}
