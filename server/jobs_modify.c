/* Changing a pending job (PATCH /v1/jobs/ID, `jazari modify`, Slurm's `scontrol update`): its
 * name, a shorter time limit, its nice value, its class. The job keeps its place by submit time;
 * a user may only ask for less (a shorter limit, a lower priority), an admin for anything the
 * submission checks would accept. The submission as recorded is replaced whole (never edited in
 * place: records given out share it), and the change is an event of the job. */
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/auth.h"
#include "server/jobs_internal.h"

struct change {
    const char *name;  /* NULL: unchanged */
    int64_t limit_s;   /* 0: unchanged */
    bool has_nice;
    int64_t nice;
    const char *cls;   /* NULL: unchanged */
};

static int bad(struct jz_job *job, const char **field, const char *name, struct jz_error *err,
               int code, const char *msg)
{
    jz_strlcpy(job->jobs->field, name, sizeof job->jobs->field);
    *field = job->jobs->field;
    return jz_error_set(err, code, "%s: %s", name, msg);
}

/* Reads and checks the body against what the user may do. */
static int parse_change(struct jz_job *job, const struct jz_user *user, const json_t *body,
                        struct change *c, const char **field, struct jz_error *err)
{
    static const char *const keys[] = {"name", "time_limit", "time_limit_s", "nice", "class",
                                       NULL};
    char msg[JZ_ERROR_MSG_MAX];
    if (!json_is_object(body))
        return bad(job, field, "body", err, JZ_EINVAL, "expected a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            known |= strcmp(key, keys[i]) == 0;
        if (!known) {
            snprintf(msg, sizeof msg, "unknown field (a pending job's name, time_limit, nice "
                                      "and class may change)");
            return bad(job, field, *key ? key : "\"\"", err, JZ_EINVAL, msg);
        }
    }
    if (json_object_size(body) == 0)
        return bad(job, field, "body", err, JZ_EINVAL, "nothing to change");
    json_t *jname = json_object_get(body, "name");
    if (jname) {
        const char *n = json_string_value(jname);
        size_t len = n ? strlen(n) : 0;
        if (!n)
            return bad(job, field, "name", err, JZ_EINVAL, "expected a string");
        if (len == 0 || len > JZ_MAX_NAME_LEN)
            return bad(job, field, "name", err, JZ_EINVAL, "must be 1-128 bytes");
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)n[i] < 0x20 || n[i] == 0x7f)
                return bad(job, field, "name", err, JZ_EINVAL,
                           "control characters are not allowed");
        c->name = n;
    }
    json_t *jtl = json_object_get(body, "time_limit"), *jtls = json_object_get(body, "time_limit_s");
    if (jtl && jtls)
        return bad(job, field, "time_limit", err, JZ_EINVAL,
                   "give time_limit or time_limit_s, not both");
    if (jtl) {
        struct jz_error derr = {0};
        if (!json_is_string(jtl) || jz_duration_parse(json_string_value(jtl), &c->limit_s, &derr))
            return bad(job, field, "time_limit", err, JZ_EINVAL,
                       json_is_string(jtl) ? derr.msg : "expected a duration string");
    } else if (jtls) {
        if (!json_is_integer(jtls))
            return bad(job, field, "time_limit_s", err, JZ_EINVAL, "expected seconds");
        c->limit_s = json_integer_value(jtls);
    }
    const char *tl_field = jtl ? "time_limit" : "time_limit_s";
    if ((jtl || jtls) && (c->limit_s < 1 || c->limit_s > JZ_MAX_TIME_LIMIT_S)) {
        snprintf(msg, sizeof msg, "must be 1 s to %lld s", (long long)JZ_MAX_TIME_LIMIT_S);
        return bad(job, field, tl_field, err, JZ_EINVAL, msg);
    }
    if (c->limit_s > job->time_limit_s && !user->admin) {
        snprintf(msg, sizeof msg, "may only be lowered (it is %lld s); ask an admin for more",
                 (long long)job->time_limit_s);
        return bad(job, field, tl_field, err, JZ_EPERM, msg);
    }
    json_t *jnice = json_object_get(body, "nice");
    if (jnice) {
        /* A user may only lower the job's priority further (as Slurm's nice): never undo a
         * penalty an admin gave it. */
        int64_t lo = user->admin ? -JZ_MAX_NICE : job->nice > 0 ? job->nice : 0;
        if (!json_is_integer(jnice) || json_integer_value(jnice) < lo ||
            json_integer_value(jnice) > JZ_MAX_NICE) {
            snprintf(msg, sizeof msg, "expected seconds from %lld to %d%s", (long long)lo,
                     JZ_MAX_NICE,
                     user->admin ? "" : " (a user may only raise it: only admins may raise a "
                                        "priority)");
            bool denied = json_is_integer(jnice) && json_integer_value(jnice) < lo;
            return bad(job, field, "nice", err, denied ? JZ_EPERM : JZ_EINVAL, msg);
        }
        c->has_nice = true;
        c->nice = json_integer_value(jnice);
    }
    json_t *jclass = json_object_get(body, "class");
    if (jclass) {
        if (!json_is_string(jclass))
            return bad(job, field, "class", err, JZ_EINVAL, "expected a class name");
        if (!jz_sched_class_known(job->jobs->srv->sched, json_string_value(jclass))) {
            snprintf(msg, sizeof msg, "unknown class '%.64s'", json_string_value(jclass));
            return bad(job, field, "class", err, JZ_EINVAL, msg);
        }
        c->cls = json_string_value(jclass);
    }
    return 0;
}

/* The submission with the change applied (a new object sharing the unchanged values). */
static json_t *changed_request(const struct jz_job *job, const struct change *c)
{
    json_t *req = json_copy(job->request);
    json_t *res = json_copy(json_object_get(job->request, "resources"));
    if (!req || !res) {
        json_decref(req);
        json_decref(res);
        return NULL;
    }
    if (c->name)
        json_object_set_new(req, "name", json_string(c->name));
    if (c->limit_s)
        json_object_set_new(res, "time_limit_s", json_integer(c->limit_s));
    json_object_set_new(req, "resources", res);
    if (c->cls)
        json_object_set_new(req, "class", json_string(c->cls));
    return req;
}

static bool jtl_given(const json_t *body)
{
    return json_object_get(body, "time_limit") != NULL;
}

/* Hands the job to the scheduler again with its new limit, nice and class; it keeps its submit
 * time, so its place. */
static int resubmit(struct jz_job *job, struct jz_error *err)
{
    struct jz_sched *s = job->jobs->srv->sched;
    int64_t now = jz_time_steady_epoch_s();
    struct jz_error cerr = {0};
    int rc = jz_sched_cancel(s, (uint64_t)job->id, now, &cerr);
    if (rc && rc != JZ_ENOENT)
        return jz_error_set(err, rc, "%s", cerr.msg);
    return jz_jobs_sched_submit(job->jobs, job, err);
}

int jz_jobs_modify(struct jz_job *job, const struct jz_user *user, const json_t *body,
                   const char **field, struct jz_error *err)
{
    *field = NULL;
    struct change c = {0};
    int rc = parse_change(job, user, body, &c, field, err);
    if (rc)
        return rc;
    if (job->state != JZ_JOB_PENDING)
        return jz_error_set(err, JZ_EBUSY, "job %lld is %s: only a pending job can change",
                            (long long)job->id, jz_job_state_name(job->state));
    json_t *req = changed_request(job, &c);
    if (!req)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    json_t *old_req = job->request;
    int64_t old_limit = job->time_limit_s, old_nice = job->nice;
    job->request = req;
    if (c.limit_s)
        job->time_limit_s = c.limit_s;
    if (c.has_nice)
        job->nice = c.nice;
    if (!job->gated && (c.limit_s || c.has_nice || c.cls)) {
        struct jz_error serr = {0};
        if (resubmit(job, &serr)) {
            /* Put back as it was: the scheduler had it, and must have it again. */
            job->request = old_req;
            job->time_limit_s = old_limit;
            job->nice = old_nice;
            json_decref(req);
            struct jz_error rerr = {0};
            if (jz_jobs_sched_submit(job->jobs, job, &rerr))
                jz_log_error("jobs", "job %lld: lost by the scheduler: %s", (long long)job->id,
                             rerr.msg);
            jz_strlcpy(job->jobs->field,
                       c.cls ? "class" : c.limit_s ? (jtl_given(body) ? "time_limit"
                                                                      : "time_limit_s")
                                                   : "nice",
                       sizeof job->jobs->field);
            *field = job->jobs->field;
            return jz_error_set(err, JZ_EINVAL, "%s", serr.msg);
        }
    }
    json_decref(old_req);
    if (c.limit_s)
        job->credit_needed = 0; /* a hold it could not place was for the old limit */
    char detail[600];
    int n = snprintf(detail, sizeof detail, "modified by %s:", user->name);
    if (c.name && n > 0 && (size_t)n < sizeof detail)
        n += snprintf(detail + n, sizeof detail - (size_t)n, " name=%.128s", c.name);
    if (c.limit_s && n > 0 && (size_t)n < sizeof detail)
        n += snprintf(detail + n, sizeof detail - (size_t)n, " time_limit_s %lld->%lld",
                      (long long)old_limit, (long long)c.limit_s);
    if (c.has_nice && n > 0 && (size_t)n < sizeof detail)
        n += snprintf(detail + n, sizeof detail - (size_t)n, " nice %lld->%lld",
                      (long long)old_nice, (long long)c.nice);
    if (c.cls && n > 0 && (size_t)n < sizeof detail)
        snprintf(detail + n, sizeof detail - (size_t)n, " class=%.64s", c.cls);
    jz_jobs_persist(job, "modify", detail);
    jz_log_info("jobs", "job %lld %s", (long long)job->id, detail);
    return 0;
}
