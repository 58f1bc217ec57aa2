/* Submission: a job request checked field by field (each error names its field; the checks that
 * need no server state are in job_request.c), turned into a PENDING job and handed to the
 * scheduler. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jazari/plugin.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/auth.h"
#include "server/job_request.h"
#include "server/jobs_internal.h"
#include "server/nodes.h"
#include "server/plugins.h"
#include "server/reservations.h"
#include "server/service_metrics.h"

/* The scheduler's clock: epoch seconds that a wall-clock jump does not move (fair-share decay,
 * backfill and ages measure time; records keep wall-clock timestamps). */
static int64_t now_s(void)
{
    return jz_time_steady_epoch_s();
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

/* A string parameter "job:ID" or "job:ID/NAME" names another job's artifact (NAME defaults to
 * "model"). It is replaced by the artifact's absolute path, after checking that the user may
 * see that job and that the artifact exists, so plugins never need to know about the service. */
static int resolve_artifact_refs(struct jz_jobs *jobs, const struct jz_user *user, json_t *params,
                                 json_t *inputs, const char **field, struct jz_error *err)
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
        /* A remote node gets the file staged into the job's folder (see launch_part). */
        json_object_set_new(inputs, key, json_string(file));
    }
    return 0;
}

/* The scheduler, which knows every node, says whether a request could ever run. */
struct fit_ctx {
    struct jz_jobs *jobs;
    const struct jz_user *user;
};

static bool request_could_fit(void *arg, const struct jz_job_request *req, char *why, size_t len)
{
    const struct fit_ctx *c = arg;
    struct jz_server *srv = c->jobs->srv;
    struct jz_sched_job probe = {.id = 1, .tenant = c->user->tenant, .user = c->user->name,
                                 .gpus = (unsigned)req->gpus_per_node,
                                 .cpus_per_gpu = (unsigned)req->cpus_per_gpu,
                                 .cpus = (unsigned)req->cpus, .time_limit_s = req->time_limit_s,
                                 .model = req->gpu_model,
                                 .min_memory_bytes = (uint64_t)req->gpu_memory_min_mb << 20,
                                 .nodes = (unsigned)req->nodes};
    return jz_nodes_listed(srv->nodes) == 0 ||
           jz_sched_could_ever_fit(srv->sched, &probe, why, len);
}

/* --- the researcher's workflow: dependencies, arrays, hold, nice, notify -------------------- */

struct workflow_check {
    struct jz_jobs *jobs;
    const struct jz_user *user;
    const struct jz_job_request *req;
    const char **field;
    struct jz_error *err;
};

/* What the request's workflow fields name must exist: the jobs it depends on (ones the user may
 * see) and its class. */
static int check_workflow(struct workflow_check *c)
{
    struct jz_jobs *jobs = c->jobs;
    for (size_t i = 0; i < c->req->ndeps; i++) {
        const struct jz_job *t = jz_jobs_find(jobs, c->req->deps[i].job);
        if (!t || !jz_job_visible_to(t, c->user)) {
            char f[64];
            snprintf(f, sizeof f, "dependencies[%zu].job", i);
            return field_error(jobs, c->field, f, c->err, JZ_EINVAL,
                               "no job %lld that you may see", (long long)c->req->deps[i].job);
        }
    }
    if (c->req->class_name && !jz_sched_class_known(jobs->srv->sched, c->req->class_name))
        return field_error(jobs, c->field, "class", c->err, JZ_EINVAL,
                           "unknown class '%.64s'", c->req->class_name);
    return 0;
}

/* The workflow fields as the record keeps them (jz_job_record_load reads them back). */
static void workflow_into_record(const struct jz_job_request *req, const struct jz_user *user,
                                 json_t *rec)
{
    if (req->hold) {
        json_object_set_new(rec, "held", json_true());
        json_object_set_new(rec, "held_by", json_string(user->name));
        if (user->admin)
            json_object_set_new(rec, "held_by_admin", json_true());
    }
    if (req->nice)
        json_object_set_new(rec, "nice", json_integer(req->nice));
    json_t *deps = json_array();
    for (size_t i = 0; i < req->ndeps; i++)
        json_array_append_new(deps, json_pack("{s:s, s:I, s:s}", "type",
                                              jz_dep_type_name((unsigned)req->deps[i].type),
                                              "job", (json_int_t)req->deps[i].job, "state",
                                              "waiting"));
    json_object_set_new(rec, "dependencies", deps);
    if (req->notify_url)
        json_object_set_new(rec, "notify", json_pack("{s:s, s:s}", "url", req->notify_url,
                                                     "secret", req->notify_secret));
}

/* Takes back the jobs first .. first+made-1 (a submission that could not be completed). */
static void uncreate(struct jz_jobs *jobs, int64_t first, size_t made)
{
    for (size_t k = made; k-- > 0;) {
        struct jz_job *job = jobs->by_id[first + (int64_t)k];
        jobs->by_id[first + (int64_t)k] = NULL;
        jobs->counts[job->state]--;
        jz_jobs_job_free(job);
    }
    jobs->max_id = first - 1;
}

/* Creates the job (or each element of an array: ids first .. first+count-1) from rec, then
 * records it and hands it to the gate. All or nothing: a submission never leaves part of an
 * array. */
static int create_jobs(struct jz_jobs *jobs, const struct jz_job_request *req, json_t *rec,
                       int64_t first, size_t count, struct jz_error *err)
{
    size_t made = 0;
    for (; made < count; made++) {
        int64_t id = first + (int64_t)made;
        json_object_set_new(rec, "id", json_integer(id));
        if (req->array_indexes)
            json_object_set_new(
                rec, "array",
                json_pack("{s:I, s:I, s:I, s:o}", "id", (json_int_t)first, "index",
                          (json_int_t)req->array_indexes[made], "count", (json_int_t)count,
                          "throttle", req->array_throttle
                                          ? json_integer((json_int_t)req->array_throttle)
                                          : json_null()));
        struct jz_job *job = jz_jobs_job_new(jobs, rec);
        if (!job || jz_jobs_table_put(jobs, job)) {
            jz_jobs_job_free(job);
            uncreate(jobs, first, made);
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
    }
    for (size_t k = 0; k < count; k++) {
        struct jz_job *job = jobs->by_id[first + (int64_t)k];
        jz_jobs_pending_add(jobs, job->user, +1);
        jz_jobs_persist(job, "state", "PENDING");
        jz_observe_job_submitted(jobs->srv->metrics, job->tenant);
        jz_jobs_announce(job, -1);
        jz_jobs_gate_enter(job);
    }
    return 0;
}

int jz_jobs_submit(struct jz_jobs *jobs, const struct jz_user *user, const json_t *body,
                   json_t **job_out, const char **field, struct jz_error *err)
{
    struct jz_server *srv = jobs->srv;
    *field = NULL;
    const char *pname = jz_job_request_plugin(body);
    const struct jz_plugin_entry *pe = pname ? jz_plugins_find(srv->plugins, pname) : NULL;
    const struct jz_plugin_entry *refused =
        pname && !pe ? jz_plugins_find_refused(srv->plugins, pname) : NULL;
    struct fit_ctx fit = {jobs, user};
    struct jz_job_request_env env = {.plugin_desc = pe ? pe->desc : NULL,
                                     .plugin_caps = pe ? pe->caps : 0,
                                     .plugin_refused = refused ? refused->reason : NULL,
                                     .node_max_gpus = jz_nodes_max_gpus(srv->nodes),
                                     .params_max_bytes = srv->cfg.params_max_bytes,
                                     .could_fit = request_could_fit,
                                     .fit_arg = &fit,
                                     .admin = user->admin,
                                     .webhook_allow = srv->cfg.webhook_allow};
    struct jz_job_request req;
    if (jz_job_request_parse(body, &env, &req, jobs->field, sizeof jobs->field, err)) {
        *field = jobs->field;
        return err->code;
    }
    json_t *jclass = json_object_get(body, "class");
    const char *plugin = req.plugin, *name = req.name, *submit_dir = req.submit_dir;
    const char *model = req.gpu_model;
    int64_t gpus = req.gpus, nodes = req.nodes, gpn = req.gpus_per_node, cpg = req.cpus_per_gpu;
    int64_t cpus = req.cpus, mem = req.memory_mb, tl = req.time_limit_s;
    int64_t gmem = req.gpu_memory_min_mb;
    json_t *norm = req.params; /* ours now */
    req.params = NULL;
    json_t *inputs = json_object();
    if (resolve_artifact_refs(jobs, user, norm, inputs, field, err)) {
        json_decref(norm);
        json_decref(inputs);
        jz_job_request_clear(&req);
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
            jz_jobs_checkpoint_file(jobs, src->id, ckpt, sizeof ckpt);
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
            json_decref(inputs);
            jz_job_request_clear(&req);
            return rc;
        }
        resume_from = src->id;
    }

    struct workflow_check wc = {jobs, user, &req, field, err};
    char resv[JZ_SCHED_NAME_LEN] = "";
    struct jz_error rerr = {0};
    if (req.reservation &&
        jz_reservations_check_job(srv->reservations, user->tenant, req.reservation,
                                  req.gpus_per_node, req.time_limit_s, resv, sizeof resv, &rerr))
        field_error(jobs, field, rerr.code == JZ_ERANGE ? "resources.time_limit" : "reservation",
                    err, JZ_EINVAL, "%s", rerr.msg);
    if (rerr.code || check_workflow(&wc)) {
        json_decref(norm);
        json_decref(inputs);
        jz_job_request_clear(&req);
        return err->code;
    }
    size_t count = req.array_indexes ? req.array_count : 1;
    json_t *pending = json_object_get(jobs->pending_by_user, user->name);
    int64_t npending = pending ? json_integer_value(pending) : 0;
    if (npending + (int64_t)count > srv->cfg.max_pending_per_user) {
        json_decref(norm);
        json_decref(inputs);
        jz_job_request_clear(&req);
        if (count > 1)
            return jz_error_set(err, JZ_EAGAIN,
                                "user '%s' has %lld pending jobs; %zu more would pass the limit "
                                "of %lld",
                                user->name, (long long)npending, count,
                                (long long)srv->cfg.max_pending_per_user);
        return jz_error_set(err, JZ_EAGAIN, "user '%s' already has %lld pending jobs (the limit)",
                            user->name, (long long)npending);
    }

    int64_t id = jobs->max_id + 1;
    char ts[40];
    jz_time_format_iso(jz_time_now_ms(), ts, sizeof ts);
    json_t *rec = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?, s:I}, s:b,"
        " s:b, s:s, s:s, s:s, s:s, s:n, s:n, s:n, s:n, s:n, s:[], s:[], s:n, s:n, s:n, s:{},"
        " s:[], s:n, s:i}",
        "id", (json_int_t)id, "name", name, "user", user->name, "tenant", user->tenant, "plugin",
        plugin, "params", norm, "resources", "gpus", (json_int_t)gpus, "nodes",
        (json_int_t)nodes, "gpus_per_node", (json_int_t)gpn, "cpus_per_gpu", (json_int_t)cpg,
        "cpus", (json_int_t)cpus, "memory_mb", (json_int_t)mem, "time_limit_s", (json_int_t)tl,
        "gpu_model", model, "gpu_memory_min_mb", (json_int_t)gmem, "preemptible",
        req.preemptible, "requeue", req.requeue, "submit_dir", submit_dir, "state",
        "PENDING", "reason", "queued", "submit_time", ts, "start_time", "end_time", "exit_code",
        "signal", "node", "nodes", "gpus", "cpus", "backend", "progress", "metrics", "artifacts",
        "estimated_start", "requeues", 0);
    if (!rec) {
        json_decref(inputs);
        jz_job_request_clear(&req);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    /* The version chosen ("train@1.2" or the newest) and its bytes: the job runs exactly
     * these, from the registry's private copy, even after an upgrade or a restart. */
    json_object_set_new(rec, "plugin", json_string(pe->name));
    json_object_set_new(rec, "plugin_version", json_string(pe->version));
    json_object_set_new(rec, "plugin_sha256", json_string(pe->sha256));
    if (json_object_size(inputs))
        json_object_set(rec, "inputs", inputs);
    json_decref(inputs);
    if (resume_from)
        json_object_set_new(rec, "resume_from", json_integer(resume_from));
    if (json_is_string(jclass))
        json_object_set(rec, "class", jclass);
    json_object_set_new(rec, "submit_epoch", json_integer(now_s()));
    workflow_into_record(&req, user, rec);
    /* Paid by the booking: the ledger does not charge jobs with this key. */
    if (resv[0])
        json_object_set_new(rec, "reservation", json_string(resv));
    int rc = create_jobs(jobs, &req, rec, id, count, err);
    json_decref(rec); /* the jobs keep what they need, typed */
    jz_job_request_clear(&req);
    if (rc)
        return rc;
    *job_out = jz_job_record(jz_jobs_find(jobs, id));
    return 0;
}

