/* Submission: a job request checked field by field (each error names its field), turned into
 * a PENDING job and handed to the scheduler. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jazari/plugin.h>

#include "common/json.h"
#include "common/params.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/auth.h"
#include "server/jobs_internal.h"
#include "server/nodes.h"
#include "server/plugins.h"

static int64_t now_s(void)
{
    return jz_time_now_ms() / 1000;
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

int jz_jobs_submit(struct jz_jobs *jobs, const struct jz_user *user, const json_t *body,
                   json_t **job_out, const char **field, struct jz_error *err)
{
    struct jz_server *srv = jobs->srv;
    *field = NULL;
    static const char *const top_keys[] = {"plugin",     "name",        "params", "resources",
                                           "preemptible", "submit_dir", "resume_from", "class",
                                           "requeue",     NULL};
    static const char *const res_keys[] = {"gpus",      "cpus_per_gpu", "cpus",
                                           "memory_mb", "time_limit_s", "time_limit",
                                           "gpu_model", "gpu_memory_min_mb", "nodes",
                                           "gpus_per_node", NULL};
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
    json_t *jrequeue = json_object_get(body, "requeue");
    if (jrequeue && !json_is_boolean(jrequeue) && !json_is_null(jrequeue))
        return field_error(jobs, field, "requeue", err, JZ_EINVAL, "expected true or false");

    json_t *res = json_object_get(body, "resources");
    if (res && !json_is_object(res) && !json_is_null(res))
        return field_error(jobs, field, "resources", err, JZ_EINVAL, "expected an object");
    if (res && json_is_object(res) && !only_keys(res, res_keys, &bad)) {
        char path[160];
        snprintf(path, sizeof path, "resources.%.100s", bad);
        return field_error(jobs, field, path, err, JZ_EINVAL, "unknown field");
    }
    /* Each is set by get_int on success (-O2 cannot see that). */
    int64_t gpus = 0, cpg = 0, cpus = 0, mem = 0, tl = 0, gmem = 0, nodes = 1, gpn = -1;
    if (get_int(jobs, res, "gpus", "resources.gpus", 0, JZ_TOPO_MAX_GPUS * JZ_MAX_NODES_PER_JOB,
                0, &gpus, field, err) ||
        get_int(jobs, res, "nodes", "resources.nodes", 1, JZ_MAX_NODES_PER_JOB, 1, &nodes, field,
                err) ||
        get_int(jobs, res, "gpus_per_node", "resources.gpus_per_node", 0, JZ_TOPO_MAX_GPUS, -1,
                &gpn, field, err) ||
        /* At least one: a job with no core would run on all of the node's (unbound). */
        get_int(jobs, res, "cpus_per_gpu", "resources.cpus_per_gpu", 1, 1024, 1, &cpg, field,
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
    /* GPUs per node: given, or --gpus over --nodes, or --gpus spilling over whole nodes when no
     * node has that many. */
    if (gpn >= 0 && json_object_get(res, "gpus") && !json_is_null(json_object_get(res, "gpus")) &&
        gpus != gpn * nodes)
        return field_error(jobs, field, "resources.gpus_per_node", err, JZ_EINVAL,
                           "give resources.gpus or resources.gpus_per_node, not both");
    if (gpn < 0) {
        unsigned largest = jz_nodes_max_gpus(srv->nodes);
        if (nodes == 1 && largest > 0 && gpus > largest) {
            if (gpus % largest != 0)
                return field_error(jobs, field, "resources.gpus", err, JZ_EINVAL,
                                   "%lld GPUs do not fill whole nodes of %u GPUs; give "
                                   "resources.nodes and resources.gpus_per_node",
                                   (long long)gpus, largest);
            nodes = gpus / largest;
            if (nodes > JZ_MAX_NODES_PER_JOB)
                return field_error(jobs, field, "resources.gpus", err, JZ_ERANGE,
                                   "more than %d nodes", JZ_MAX_NODES_PER_JOB);
        }
        if (gpus % nodes != 0)
            return field_error(jobs, field, "resources.gpus", err, JZ_EINVAL,
                               "%lld GPUs do not split evenly over %lld nodes", (long long)gpus,
                               (long long)nodes);
        gpn = gpus / nodes;
    }
    if (gpn > JZ_TOPO_MAX_GPUS)
        return field_error(jobs, field, "resources.gpus", err, JZ_ERANGE,
                           "at most %d GPUs on one node", JZ_TOPO_MAX_GPUS);
    gpus = gpn * nodes;
    if ((pe->caps & JZ_CAP_NEEDS_GPU) && gpus == 0)
        return field_error(jobs, field, "resources.gpus", err, JZ_EINVAL,
                           "plugin '%s' needs at least one GPU", plugin);
    if (nodes > 1 && !(pe->caps & (JZ_CAP_MULTI_NODE | JZ_CAP_RUNS_COMMAND)))
        return field_error(jobs, field, "resources.nodes", err, JZ_EINVAL,
                           "plugin '%s' does not run on several nodes", plugin);

    /* A job that could never run on the nodes the hub has is refused now rather than left
     * waiting forever; the scheduler, which knows every node, says so. */
    struct jz_sched_job probe = {.id = 1, .tenant = user->tenant, .user = user->name,
                                 .gpus = (unsigned)gpn, .cpus_per_gpu = (unsigned)cpg,
                                 .cpus = (unsigned)cpus, .time_limit_s = tl, .model = model,
                                 .min_memory_bytes = (uint64_t)gmem << 20,
                                 .nodes = (unsigned)nodes};
    char why[JZ_SCHED_REASON_LEN];
    if (jz_nodes_listed(srv->nodes) > 0 &&
        !jz_sched_could_ever_fit(srv->sched, &probe, why, sizeof why))
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

    /* Every pending job's parameters stay in memory and in each list reply: bounded. */
    size_t pbytes = json_dumpb(norm, NULL, 0, JSON_COMPACT);
    if (srv->cfg.params_max_bytes > 0 && (int64_t)pbytes > srv->cfg.params_max_bytes) {
        json_decref(norm);
        return field_error(jobs, field, "params", err, JZ_ELIMIT,
                           "parameters take %zu bytes; at most %lld are accepted "
                           "(limits.params_bytes): pass large data as a file", pbytes,
                           (long long)srv->cfg.params_max_bytes);
    }
    json_t *inputs = json_object();
    if (resolve_artifact_refs(jobs, user, norm, inputs, field, err)) {
        json_decref(norm);
        json_decref(inputs);
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
            return rc;
        }
        resume_from = src->id;
    }

    json_t *pending = json_object_get(jobs->pending_by_user, user->name);
    if (pending && json_integer_value(pending) >= srv->cfg.max_pending_per_user) {
        json_decref(norm);
        json_decref(inputs);
        return jz_error_set(err, JZ_EAGAIN, "user '%s' already has %lld pending jobs (the limit)",
                            user->name, (long long)json_integer_value(pending));
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
        json_is_true(jpre), "requeue", json_is_true(jrequeue), "submit_dir", submit_dir, "state",
        "PENDING", "reason", "queued", "submit_time", ts, "start_time", "end_time", "exit_code",
        "signal", "node", "nodes", "gpus", "cpus", "backend", "progress", "metrics", "artifacts",
        "estimated_start", "requeues", 0);
    if (!rec) {
        json_decref(inputs);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    if (json_object_size(inputs))
        json_object_set(rec, "inputs", inputs);
    json_decref(inputs);
    if (resume_from)
        json_object_set_new(rec, "resume_from", json_integer(resume_from));
    if (json_is_string(jclass))
        json_object_set(rec, "class", jclass);
    json_object_set_new(rec, "submit_epoch", json_integer(now_s()));
    struct jz_job *job = jz_jobs_job_new(jobs, rec);
    json_decref(rec); /* the job keeps what it needs, typed */
    if (!job || jz_jobs_table_put(jobs, job)) {
        jz_jobs_job_free(job);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    struct jz_error serr = {0};
    if (jz_jobs_sched_submit(jobs, job, &serr)) {
        /* Refused by the policy (an unknown class): the job never existed. */
        jobs->by_id[id] = NULL;
        jobs->counts[job->state]--;
        jobs->max_id = id - 1;
        jz_jobs_job_free(job);
        return field_error(jobs, field, jclass ? "class" : "resources", err, JZ_EINVAL, "%s",
                           serr.msg);
    }
    jz_jobs_pending_add(jobs, job->user, +1);
    jz_jobs_persist(job, "state", "PENDING");
    *job_out = jz_job_record(job);
    return 0;
}

