/* The pure half of a job submission (see job_request.h): every check that needs only the body,
 * the plugin's description and the limits. Each error names its field. */
#include "server/job_request.h"
#include "server/webhooks.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jazari/plugin.h>

#include "common/params.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/jobs_internal.h"
#include "server/server.h"

struct out_field {
    char *buf;
    size_t len;
};

static int field_error(struct out_field *f, const char *name, struct jz_error *err, int code,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int field_error(struct out_field *f, const char *name, struct jz_error *err, int code,
                       const char *fmt, ...)
{
    jz_strlcpy(f->buf, name, f->len);
    char msg[JZ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jz_error_set(err, code, "%s: %s", name, msg);
}

/* Reads an optional integer field within [lo, hi]; strings are not accepted. */
static int get_int(const json_t *obj, const char *key, const char *path, int64_t lo, int64_t hi,
                   int64_t dflt, int64_t *out, struct out_field *f, struct jz_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return field_error(f, path, err, JZ_EINVAL, "expected an integer");
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return field_error(f, path, err, JZ_ERANGE, "must be between %lld and %lld",
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

const char *jz_job_request_plugin(const json_t *body)
{
    return json_string_value(json_object_get(body, "plugin"));
}

/* --- arrays, dependencies, hold, nice, notify ---------------------------------------------- */

#define ARRAY_MAX_ELEMENTS 10000
#define ARRAY_MAX_INDEX 10000000
#define NICE_MAX 1000000
#define NOTIFY_SECRET_MIN 16
#define NOTIFY_SECRET_MAX 256

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A decimal number in [0, max] at *p, advancing *p; false when there is none. */
static bool array_number(const char **p, int64_t max, int64_t *out)
{
    const char *s = *p;
    int64_t v = 0;
    if (*s < '0' || *s > '9')
        return false;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
        if (v > max)
            return false;
    }
    *p = s;
    *out = v;
    return true;
}

int jz_job_array_parse(const char *spec, int64_t **indexes, size_t *count, unsigned *throttle,
                       struct jz_error *err)
{
    *indexes = NULL;
    *count = 0;
    *throttle = 0;
    if (!spec || !*spec || strlen(spec) > 4096)
        return jz_error_set(err, JZ_EINVAL, "expected a range like 0-99, 1,3,5 or 0-99:2%%10");
    int64_t *v = malloc(ARRAY_MAX_ELEMENTS * sizeof *v);
    if (!v)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    size_t n = 0;
    const char *p = spec;
    for (;;) {
        int64_t a, b, step = 1;
        if (!array_number(&p, ARRAY_MAX_INDEX, &a))
            goto bad;
        b = a;
        if (*p == '-') {
            p++;
            if (!array_number(&p, ARRAY_MAX_INDEX, &b) || b < a)
                goto bad;
            if (*p == ':') {
                p++;
                if (!array_number(&p, ARRAY_MAX_INDEX, &step) || step < 1)
                    goto bad;
            }
        }
        if ((b - a) / step + 1 > (int64_t)(ARRAY_MAX_ELEMENTS - n)) {
            free(v);
            return jz_error_set(err, JZ_ELIMIT, "an array has at most %d elements",
                                ARRAY_MAX_ELEMENTS);
        }
        for (int64_t i = a; i <= b; i += step)
            v[n++] = i;
        if (*p != ',')
            break;
        p++;
    }
    if (*p == '%') {
        p++;
        int64_t t;
        if (!array_number(&p, ARRAY_MAX_ELEMENTS, &t) || t < 1)
            goto bad;
        *throttle = (unsigned)t;
    }
    if (*p)
        goto bad;
    qsort(v, n, sizeof *v, cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || v[u - 1] != v[i])
            v[u++] = v[i];
    if (*throttle >= u)
        *throttle = 0; /* no limit in effect */
    *indexes = v;
    *count = u;
    return 0;
bad:
    free(v);
    return jz_error_set(err, JZ_EINVAL,
                        "expected a range like 0-99, 1,3,5 or 0-99:2%%10 (indexes 0-%d, "
                        "throttle at least 1)",
                        ARRAY_MAX_INDEX);
}

static int parse_notify(const json_t *jn, const char *allow, struct jz_job_request *r,
                        struct out_field *field, struct jz_error *err)
{
    if (!jn || json_is_null(jn))
        return 0;
    static const char *const keys[] = {"url", "secret", NULL};
    const char *bad;
    if (!json_is_object(jn))
        return field_error(field, "notify", err, JZ_EINVAL, "expected an object {url, secret}");
    if (!only_keys(jn, keys, &bad)) {
        char f[80];
        snprintf(f, sizeof f, "notify.%.64s", bad);
        return field_error(field, f, err, JZ_EINVAL, "unknown field");
    }
    json_t *url = json_object_get(jn, "url"), *secret = json_object_get(jn, "secret");
    char why[200];
    if (!json_is_string(url))
        return field_error(field, "notify.url", err, JZ_EINVAL,
                           url ? "expected a string" : "required");
    /* An address literal outside the policy is refused now; a name, at each delivery. */
    if (!jz_webhook_url_allowed(json_string_value(url), allow, why, sizeof why))
        return field_error(field, "notify.url", err, JZ_EINVAL, "%s", why);
    if (!json_is_string(secret))
        return field_error(field, "notify.secret", err, JZ_EINVAL,
                           secret ? "expected a string"
                                  : "required: the webhook's body is signed with it");
    size_t sl = json_string_length(secret);
    if (sl < NOTIFY_SECRET_MIN || sl > NOTIFY_SECRET_MAX ||
        strlen(json_string_value(secret)) != sl)
        return field_error(field, "notify.secret", err, JZ_EINVAL,
                           "must be %d-%d bytes (and no NUL)", NOTIFY_SECRET_MIN,
                           NOTIFY_SECRET_MAX);
    r->notify_url = json_string_value(url);
    r->notify_secret = json_string_value(secret);
    return 0;
}

static int parse_deps(const json_t *jd, struct jz_job_request *r, struct out_field *field,
                      struct jz_error *err)
{
    static const char *const types[] = {"after", "afterok", "afternotok", "afterany"};
    static const char *const keys[] = {"type", "job", NULL};
    if (!jd || json_is_null(jd))
        return 0;
    if (!json_is_array(jd))
        return field_error(field, "dependencies", err, JZ_EINVAL,
                           "expected a list of {type, job}");
    if (json_array_size(jd) > sizeof r->deps / sizeof r->deps[0])
        return field_error(field, "dependencies", err, JZ_ELIMIT, "at most %zu dependencies",
                           sizeof r->deps / sizeof r->deps[0]);
    size_t i;
    json_t *d;
    json_array_foreach(jd, i, d) {
        char f[64];
        const char *bad;
        if (!json_is_object(d)) {
            snprintf(f, sizeof f, "dependencies[%zu]", i);
            return field_error(field, f, err, JZ_EINVAL, "expected an object {type, job}");
        }
        if (!only_keys(d, keys, &bad)) {
            snprintf(f, sizeof f, "dependencies[%zu].%.32s", i, bad);
            return field_error(field, f, err, JZ_EINVAL, "unknown field");
        }
        const char *t = json_string_value(json_object_get(d, "type"));
        int type = -1;
        for (int k = 0; t && k < 4; k++)
            if (strcmp(t, types[k]) == 0)
                type = k;
        if (type < 0) {
            snprintf(f, sizeof f, "dependencies[%zu].type", i);
            return field_error(field, f, err, JZ_EINVAL,
                               "expected after, afterok, afternotok or afterany");
        }
        json_t *job = json_object_get(d, "job");
        if (!json_is_integer(job) || json_integer_value(job) < 1) {
            snprintf(f, sizeof f, "dependencies[%zu].job", i);
            return field_error(field, f, err, JZ_EINVAL, "expected a job id");
        }
        r->deps[r->ndeps].type = type;
        r->deps[r->ndeps].job = json_integer_value(job);
        r->ndeps++;
    }
    return 0;
}

/* The fields of a researcher's workflow. On failure nothing stays allocated. */
static int parse_workflow(const json_t *body, const struct jz_job_request_env *env,
                          struct jz_job_request *r, struct out_field *field,
                          struct jz_error *err)
{
    json_t *jhold = json_object_get(body, "hold");
    if (jhold && !json_is_boolean(jhold) && !json_is_null(jhold))
        return field_error(field, "hold", err, JZ_EINVAL, "expected true or false");
    r->hold = json_is_true(jhold);
    json_t *jnice = json_object_get(body, "nice");
    if (jnice && !json_is_null(jnice)) {
        int64_t lo = env->admin ? -NICE_MAX : 0;
        if (!json_is_integer(jnice) || json_integer_value(jnice) < lo ||
            json_integer_value(jnice) > NICE_MAX)
            return field_error(field, "nice", err, JZ_EINVAL,
                               "expected seconds from %lld to %d%s", (long long)lo, NICE_MAX,
                               env->admin ? "" : " (only admins may raise a priority)");
        r->nice = json_integer_value(jnice);
    }
    int rc = parse_deps(json_object_get(body, "dependencies"), r, field, err);
    if (!rc)
        rc = parse_notify(json_object_get(body, "notify"), env->webhook_allow, r, field, err);
    if (rc)
        return rc;
    json_t *jarray = json_object_get(body, "array");
    if (jarray && !json_is_null(jarray)) {
        if (!json_is_string(jarray))
            return field_error(field, "array", err, JZ_EINVAL,
                               "expected a string like \"0-99%%10\"");
        struct jz_error aerr = {0};
        if (jz_job_array_parse(json_string_value(jarray), &r->array_indexes, &r->array_count,
                               &r->array_throttle, &aerr))
            return field_error(field, "array", err, aerr.code, "%s", aerr.msg);
    }
    return 0;
}

/* "reservation": a booking's id (its tenant, window and nodes are checked by the caller, which
 * knows the bookings). Jobs bound to one need GPUs: the booking holds GPUs, not cores. */
static int parse_reservation(const json_t *body, struct jz_job_request *r,
                             struct out_field *field, struct jz_error *err)
{
    json_t *v = json_object_get(body, "reservation");
    if (!v || json_is_null(v))
        return 0;
    if (!(json_is_integer(v) && json_integer_value(v) > 0) &&
        !(json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 32))
        return field_error(field, "reservation", err, JZ_EINVAL, "expected a reservation id");
    if (r->gpus == 0)
        return field_error(field, "reservation", err, JZ_EINVAL,
                           "a job in a reservation needs GPUs (resources.gpus)");
    r->reservation = v;
    return 0;
}

int jz_job_request_parse(const json_t *body, const struct jz_job_request_env *env,
                         struct jz_job_request *out, char *field_buf, size_t field_len,
                         struct jz_error *err)
{
    struct out_field field_s = {field_buf, field_len}, *field = &field_s;
    struct jz_job_request r = {0};
    static const char *const top_keys[] = {"plugin",     "name",        "params", "resources",
                                           "preemptible", "submit_dir", "resume_from", "class",
                                           "requeue",     "array",      "dependencies",
                                           "hold",        "nice",       "notify",
                                           "reservation", NULL};
    static const char *const res_keys[] = {"gpus",      "cpus_per_gpu", "cpus",
                                           "memory_mb", "time_limit_s", "time_limit",
                                           "gpu_model", "gpu_memory_min_mb", "nodes",
                                           "gpus_per_node", NULL};
    const char *bad;
    /* An empty key is named as "" (fuzz_job_request: an empty field name is no answer). */
    if (!only_keys(body, top_keys, &bad))
        return field_error(field, *bad ? bad : "\"\"", err, JZ_EINVAL, "unknown field");

    json_t *jplugin = json_object_get(body, "plugin");
    if (!json_is_string(jplugin))
        return field_error(field, "plugin", err, JZ_EINVAL,
                           jplugin ? "expected a string" : "required");
    const char *plugin = json_string_value(jplugin);
    if (!env->plugin_desc) {
        if (env->plugin_refused)
            return field_error(field, "plugin", err, JZ_EINVAL, "plugin '%s' was refused: %s",
                               plugin, env->plugin_refused);
        return field_error(field, "plugin", err, JZ_EINVAL,
                           "unknown plugin '%.64s' (see GET /v1/plugins)", plugin);
    }
    r.plugin = plugin;

    json_t *jname = json_object_get(body, "name");
    /* The plugin's own name, not "train@1.2": a version belongs in plugin_version. */
    r.name = json_string_value(json_object_get(env->plugin_desc, "name"));
    if (!r.name)
        r.name = plugin;
    if (jname && !json_is_null(jname)) {
        if (!json_is_string(jname))
            return field_error(field, "name", err, JZ_EINVAL, "expected a string");
        r.name = json_string_value(jname);
        size_t len = strlen(r.name);
        if (len == 0 || len > JZ_MAX_NAME_LEN)
            return field_error(field, "name", err, JZ_EINVAL, "must be 1-%d bytes",
                               JZ_MAX_NAME_LEN);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)r.name[i] < 0x20 || r.name[i] == 0x7f)
                return field_error(field, "name", err, JZ_EINVAL,
                                   "control characters are not allowed");
    }

    json_t *jsubmit = json_object_get(body, "submit_dir");
    r.submit_dir = "";
    if (jsubmit && !json_is_null(jsubmit)) {
        if (!json_is_string(jsubmit) || json_string_value(jsubmit)[0] != '/' ||
            strlen(json_string_value(jsubmit)) > JZ_MAX_PATH_LEN)
            return field_error(field, "submit_dir", err, JZ_EINVAL,
                               "expected an absolute path of at most %d bytes", JZ_MAX_PATH_LEN);
        r.submit_dir = json_string_value(jsubmit);
    }

    json_t *jclass = json_object_get(body, "class");
    if (jclass && !json_is_null(jclass) &&
        (!json_is_string(jclass) || !jz_name_is_safe(json_string_value(jclass), 63)))
        return field_error(field, "class", err, JZ_EINVAL, "expected a class name");
    r.class_name = json_string_value(jclass);
    json_t *jpre = json_object_get(body, "preemptible");
    if (jpre && !json_is_boolean(jpre) && !json_is_null(jpre))
        return field_error(field, "preemptible", err, JZ_EINVAL, "expected true or false");
    r.preemptible = json_is_true(jpre);
    json_t *jrequeue = json_object_get(body, "requeue");
    if (jrequeue && !json_is_boolean(jrequeue) && !json_is_null(jrequeue))
        return field_error(field, "requeue", err, JZ_EINVAL, "expected true or false");
    r.requeue = json_is_true(jrequeue);

    json_t *res = json_object_get(body, "resources");
    if (res && !json_is_object(res) && !json_is_null(res))
        return field_error(field, "resources", err, JZ_EINVAL, "expected an object");
    if (res && json_is_object(res) && !only_keys(res, res_keys, &bad)) {
        char path[160];
        snprintf(path, sizeof path, "resources.%.100s", bad);
        return field_error(field, path, err, JZ_EINVAL, "unknown field");
    }
    /* Each is set by get_int on success (-O2 cannot see that). */
    int64_t gpus = 0, cpg = 0, cpus = 0, mem = 0, tl = 0, gmem = 0, nodes = 1, gpn = -1;
    if (get_int(res, "gpus", "resources.gpus", 0, JZ_TOPO_MAX_GPUS * JZ_MAX_NODES_PER_JOB, 0,
                &gpus, field, err) ||
        get_int(res, "nodes", "resources.nodes", 1, JZ_MAX_NODES_PER_JOB, 1, &nodes, field,
                err) ||
        get_int(res, "gpus_per_node", "resources.gpus_per_node", 0, JZ_TOPO_MAX_GPUS, -1, &gpn,
                field, err) ||
        /* At least one: a job with no core would run on all of the node's (unbound). */
        get_int(res, "cpus_per_gpu", "resources.cpus_per_gpu", 1, 1024, 1, &cpg, field, err) ||
        get_int(res, "cpus", "resources.cpus", 1, JZ_MAX_CPUS_PER_JOB, 1, &cpus, field, err) ||
        get_int(res, "memory_mb", "resources.memory_mb", 0, 1LL << 32, 0, &mem, field, err) ||
        get_int(res, "gpu_memory_min_mb", "resources.gpu_memory_min_mb", 0, 1LL << 24, 0, &gmem,
                field, err) ||
        get_int(res, "time_limit_s", "resources.time_limit_s", 1, JZ_MAX_TIME_LIMIT_S,
                JZ_DEFAULT_TIME_LIMIT_S, &tl, field, err))
        return err->code;
    json_t *jtl = json_object_get(res, "time_limit");
    if (jtl && !json_is_null(jtl)) {
        struct jz_error derr = {0};
        if (!json_is_string(jtl) || jz_duration_parse(json_string_value(jtl), &tl, &derr))
            return field_error(field, "resources.time_limit", err, JZ_EINVAL, "%s",
                               json_is_string(jtl) ? derr.msg : "expected a duration string");
        if (tl < 1 || tl > JZ_MAX_TIME_LIMIT_S)
            return field_error(field, "resources.time_limit", err, JZ_ERANGE,
                               "must be between 1s and 30d");
    }
    json_t *jmodel = json_object_get(res, "gpu_model");
    if (jmodel && !json_is_null(jmodel)) {
        if (!json_is_string(jmodel) || strlen(json_string_value(jmodel)) >= 64)
            return field_error(field, "resources.gpu_model", err, JZ_EINVAL,
                               "expected a string under 64 bytes");
        r.gpu_model = json_string_value(jmodel);
    }
    /* GPUs per node: given, or --gpus over --nodes, or --gpus spilling over whole nodes when no
     * node has that many. */
    if (gpn >= 0 && json_object_get(res, "gpus") && !json_is_null(json_object_get(res, "gpus")) &&
        gpus != gpn * nodes)
        return field_error(field, "resources.gpus_per_node", err, JZ_EINVAL,
                           "give resources.gpus or resources.gpus_per_node, not both");
    if (gpn < 0) {
        unsigned largest = env->node_max_gpus;
        if (nodes == 1 && largest > 0 && gpus > largest) {
            if (gpus % largest != 0)
                return field_error(field, "resources.gpus", err, JZ_EINVAL,
                                   "%lld GPUs do not fill whole nodes of %u GPUs; give "
                                   "resources.nodes and resources.gpus_per_node",
                                   (long long)gpus, largest);
            nodes = gpus / largest;
            if (nodes > JZ_MAX_NODES_PER_JOB)
                return field_error(field, "resources.gpus", err, JZ_ERANGE, "more than %d nodes",
                                   JZ_MAX_NODES_PER_JOB);
        }
        if (gpus % nodes != 0)
            return field_error(field, "resources.gpus", err, JZ_EINVAL,
                               "%lld GPUs do not split evenly over %lld nodes", (long long)gpus,
                               (long long)nodes);
        gpn = gpus / nodes;
    }
    if (gpn > JZ_TOPO_MAX_GPUS)
        return field_error(field, "resources.gpus", err, JZ_ERANGE, "at most %d GPUs on one node",
                           JZ_TOPO_MAX_GPUS);
    gpus = gpn * nodes;
    if ((env->plugin_caps & JZ_CAP_NEEDS_GPU) && gpus == 0)
        return field_error(field, "resources.gpus", err, JZ_EINVAL,
                           "plugin '%s' needs at least one GPU", plugin);
    if (nodes > 1 && !(env->plugin_caps & (JZ_CAP_MULTI_NODE | JZ_CAP_RUNS_COMMAND)))
        return field_error(field, "resources.nodes", err, JZ_EINVAL,
                           "plugin '%s' does not run on several nodes", plugin);
    r.gpus = gpus;
    r.nodes = nodes;
    r.gpus_per_node = gpn;
    r.cpus_per_gpu = cpg;
    r.cpus = cpus;
    r.memory_mb = mem;
    r.time_limit_s = tl;
    r.gpu_memory_min_mb = gmem;

    /* A job that could never run on the nodes the hub has is refused now rather than left
     * waiting forever. */
    char why[JZ_SCHED_REASON_LEN];
    if (env->could_fit && !env->could_fit(env->fit_arg, &r, why, sizeof why))
        return field_error(field, gpus ? "resources.gpus" : "resources.cpus", err, JZ_EINVAL,
                           "can never run on this cluster: %s", why);

    int wrc = parse_workflow(body, env, &r, field, err);
    if (!wrc)
        wrc = parse_reservation(body, &r, field, err);
    if (wrc) {
        free(r.array_indexes);
        return wrc;
    }

    json_t *params = json_object_get(body, "params");
    if (params && !json_is_null(params) && !json_is_object(params)) {
        free(r.array_indexes);
        return field_error(field, "params", err, JZ_EINVAL, "expected an object");
    }
    json_t *norm = NULL;
    char *pfield = NULL;
    if (jz_params_validate(json_object_get(env->plugin_desc, "params"),
                           json_is_object(params) ? params : NULL, &norm, &pfield, err)) {
        jz_strlcpy(field_buf, pfield ? pfield : "params", field_len);
        free(pfield);
        free(r.array_indexes);
        return err->code;
    }

    /* Every pending job's parameters stay in memory and in each list reply: bounded. */
    size_t pbytes = json_dumpb(norm, NULL, 0, JSON_COMPACT);
    if (env->params_max_bytes > 0 && (int64_t)pbytes > env->params_max_bytes) {
        json_decref(norm);
        free(r.array_indexes);
        return field_error(field, "params", err, JZ_ELIMIT,
                           "parameters take %zu bytes; at most %lld are accepted "
                           "(limits.params_bytes): pass large data as a file", pbytes,
                           (long long)env->params_max_bytes);
    }
    r.params = norm;
    *out = r;
    return 0;
}

void jz_job_request_clear(struct jz_job_request *req)
{
    if (!req)
        return;
    json_decref(req->params);
    free(req->array_indexes);
    memset(req, 0, sizeof *req);
}
