/* Handlers for /v1/jobs: submit, list, show, cancel, events. The log is in api_log.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/time.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/jobs.h"

/* Parses the {id} path segment; replies 404 and returns NULL when there is no such job, or 403
 * when it is not the caller's. */
static struct jz_job *job_from_path(struct jz_req *r)
{
    const char *s = r->seg[2];
    char *end;
    errno = 0;
    long long id = strtoll(s, &end, 10);
    struct jz_job *job = NULL;
    if (!errno && *end == '\0' && id > 0)
        job = jz_jobs_find(r->srv->jobs, id);
    if (!job) {
        jz_http_reply_error(r, 404, "not_found", "id", "no job %.32s", s);
        return NULL;
    }
    if (!jz_job_visible_to(job, r->user)) {
        jz_http_reply_error(r, 403, "forbidden", "id", "job %lld belongs to another user", id);
        return NULL;
    }
    return job;
}

static json_t *public_record(const struct jz_job *job)
{
    return jz_job_record(job);
}

void jz_api_jobs_submit(struct jz_req *r)
{
    json_t *rec = NULL;
    const char *field = NULL;
    struct jz_error err = {0};
    if (jz_jobs_submit(r->srv->jobs, r->user, r->body, &rec, &field, &err)) {
        if (err.code == JZ_EAGAIN)
            jz_http_reply_error(r, 429, "too_many_pending", NULL, "%s", err.msg);
        else
            jz_http_reply_error(r, err.code == JZ_ENOMEM ? 500 : 400,
                                err.code == JZ_ENOMEM                       ? "internal"
                                : field && strncmp(field, "params", 6) == 0 ? "invalid_param"
                                                                            : "invalid",
                                field, "%s", err.msg);
        return;
    }
    jz_http_reply_json(r, 201, rec);
}

void jz_api_jobs_list(struct jz_req *r)
{
    unsigned mask = 0;
    const char *states = jz_req_query(r, "state");
    if (states && *states) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", states);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int s = jz_job_state_parse(t);
            if (s < 0) {
                jz_http_reply_error(r, 400, "invalid", "state",
                                    "unknown state '%.32s' (PENDING, RUNNING, SUCCEEDED, FAILED, "
                                    "CANCELLED, TIMEOUT)", t);
                return;
            }
            mask |= 1u << s;
        }
    }
    long long limit = 100, after = 0;
    const char *v;
    char *end;
    if ((v = jz_req_query(r, "limit"))) {
        limit = strtoll(v, &end, 10);
        if (*end || limit < 1 || limit > JZ_MAX_LIST_LIMIT) {
            jz_http_reply_error(r, 400, "invalid", "limit", "limit must be 1-%d",
                                JZ_MAX_LIST_LIMIT);
            return;
        }
    }
    if ((v = jz_req_query(r, "after"))) {
        after = strtoll(v, &end, 10);
        if (*end || after < 0) {
            jz_http_reply_error(r, 400, "invalid", "after", "after must be a job id");
            return;
        }
    }
    const char *order = jz_req_query(r, "order");
    bool desc = order && strcmp(order, "desc") == 0;
    if (order && !desc && strcmp(order, "asc") != 0) {
        jz_http_reply_error(r, 400, "invalid", "order", "order must be asc or desc");
        return;
    }
    const char *user = jz_req_query(r, "user");
    if (user && !r->user->admin && strcmp(user, r->user->name) != 0) {
        jz_http_reply_error(r, 403, "forbidden", "user", "only admins may list other users' jobs");
        return;
    }
    jz_http_reply_json(r, 200, jz_jobs_list(r->srv->jobs, r->user, mask, user, after, desc,
                                            (size_t)limit));
}

void jz_api_jobs_get(struct jz_req *r)
{
    struct jz_job *job = job_from_path(r);
    if (job)
        jz_http_reply_json(r, 200, public_record(job));
}

void jz_api_jobs_cancel(struct jz_req *r)
{
    struct jz_job *job = job_from_path(r);
    if (!job)
        return;
    struct jz_error err = {0};
    if (jz_jobs_cancel(r->srv->jobs, job, r->user->name, &err)) {
        jz_http_reply_error(r, 409, "already_ended", "id", "%s", err.msg);
        return;
    }
    jz_http_reply_json(r, 200, public_record(job));
}

struct events_ctx {
    json_t *arr;
};

static int add_event(void *arg, int64_t time_ms, const char *type, const char *detail)
{
    struct events_ctx *c = arg;
    char ts[40];
    jz_time_format_iso(time_ms, ts, sizeof ts);
    json_array_append_new(c->arr, json_pack("{s:s, s:s, s:s?}", "time", ts, "type", type,
                                            "detail", detail));
    return json_array_size(c->arr) >= 10000;
}

void jz_api_jobs_events(struct jz_req *r)
{
    struct jz_job *job = job_from_path(r);
    if (!job)
        return;
    struct events_ctx c = {.arr = json_array()};
    struct jz_error err = {0};
    int64_t id = jz_job_id(job);
    if (r->srv->store->ops->events_each(r->srv->store, id, add_event, &c, &err)) {
        json_decref(c.arr);
        jz_http_reply_jz_error(r, &err, NULL);
        return;
    }
    jz_http_reply_json(r, 200, json_pack("{s:o}", "events", c.arr));
}
