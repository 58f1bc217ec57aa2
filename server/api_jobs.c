/* Handlers for /v1/jobs: submit, list, show, cancel, events. The log is in api_log.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/jobs.h"

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

/* A job as lists show it: the values of its environment (params.env, "NAME=VALUE" strings) are
 * left out, as they may hold secrets; the names stay. GET /v1/jobs/ID has the whole record. */
static void redact_env(json_t *rec)
{
    json_t *params = json_object_get(rec, "params");
    json_t *env = json_object_get(params, "env");
    if (!json_is_array(env))
        return;
    /* The record shares params with the job itself: replace, never edit in place. */
    json_t *names = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(env, i, v)
    {
        const char *s = json_string_value(v);
        const char *eq = s ? strchr(s, '=') : NULL;
        json_array_append_new(names, eq ? json_stringn(s, (size_t)(eq - s)) : json_incref(v));
    }
    json_t *copy = json_copy(params);
    json_object_set_new(copy, "env", names);
    json_object_set_new(rec, "params", copy);
}

/* Up to limit jobs (as jz_jobs_list picks them), stopping before the reply would pass
 * JZ_MAX_LIST_REPLY_BYTES: {"jobs", "next_after", "truncated"}. Records are made one at a time,
 * so that a list of large jobs never holds more than the bound; "truncated" says the byte bound,
 * not limit, ended the page (next_after then continues it). */
static json_t *list_bounded(struct jz_req *r, const struct jz_jobs_filter *f, int64_t after,
                            bool desc, size_t limit)
{
    json_t *jobs = json_array();
    size_t bytes = 64; /* the reply's own keys */
    bool more = false, truncated = false;
    int64_t cursor = after;
    while (json_array_size(jobs) < limit) {
        json_t *page = jz_jobs_list(r->srv->jobs, r->user, f, cursor, desc, 1);
        json_t *rec = json_array_get(json_object_get(page, "jobs"), 0);
        if (!rec) {
            json_decref(page);
            more = false;
            break;
        }
        redact_env(rec);
        size_t size = json_dumpb(rec, NULL, 0, JSON_COMPACT) + 1;
        if (json_array_size(jobs) > 0 && bytes + size > JZ_MAX_LIST_REPLY_BYTES) {
            json_decref(page);
            more = truncated = true;
            break;
        }
        bytes += size;
        json_array_append(jobs, rec);
        cursor = jz_json_int(rec, "id", cursor);
        more = json_is_integer(json_object_get(page, "next_after"));
        json_decref(page);
        if (!more)
            break;
    }
    return json_pack("{s:o, s:o, s:b}", "jobs", jobs, "next_after",
                     more ? json_integer(cursor) : json_null(), "truncated", truncated);
}

/* ISO 8601 in UTC ("2026-11-01T00:00:00Z"), a day ("2026-11-01", from its midnight UTC), or
 * seconds since the epoch. */
bool jz_api_query_time(const char *s, int64_t *ms)
{
    char buf[40];
    char *end;
    if (!s || !*s || strlen(s) > 32)
        return false;
    if (strspn(s, "0123456789") == strlen(s)) {
        long long v = strtoll(s, &end, 10);
        *ms = (int64_t)v * 1000;
        return v > 0 && v < 32503680000LL;
    }
    if (strlen(s) == 10 && s[4] == '-' && s[7] == '-') {
        snprintf(buf, sizeof buf, "%sT00:00:00Z", s);
        s = buf;
    }
    return jz_time_parse_iso(s, ms, NULL) == 0;
}

void jz_api_jobs_list(struct jz_req *r)
{
    struct jz_jobs_filter f = {0};
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
            f.state_mask |= 1u << s;
        }
    }
    long long limit = 100;
    int64_t after = 0;
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
    if ((v = jz_req_query(r, "after")) && !jz_parse_id(v, 0, &after)) {
        jz_http_reply_error(r, 400, "invalid", "after", "after must be a job id");
        return;
    }
    if ((v = jz_req_query(r, "array")) && !jz_parse_id(v, 1, &f.array)) {
        jz_http_reply_error(r, 400, "invalid", "array", "array must be an array's id");
        return;
    }
    static const char *const when[] = {"since", "until"};
    for (int i = 0; i < 2; i++)
        if ((v = jz_req_query(r, when[i])) &&
            !jz_api_query_time(v, i ? &f.until_ms : &f.since_ms)) {
            jz_http_reply_error(r, 400, "invalid", when[i],
                                "%s must be an ISO 8601 time in UTC (2026-11-01T00:00:00Z), a "
                                "day (2026-11-01) or epoch seconds", when[i]);
            return;
        }
    const char *order = jz_req_query(r, "order");
    bool desc = order && strcmp(order, "desc") == 0;
    if (order && !desc && strcmp(order, "asc") != 0) {
        jz_http_reply_error(r, 400, "invalid", "order", "order must be asc or desc");
        return;
    }
    const char *scope = jz_req_query(r, "scope");
    if (scope && strcmp(scope, "all") != 0 && strcmp(scope, "mine") != 0) {
        jz_http_reply_error(r, 400, "invalid", "scope", "scope must be mine or all");
        return;
    }
    f.everyone = scope && strcmp(scope, "all") == 0;
    f.user = jz_req_query(r, "user");
    f.tenant = jz_req_query(r, "tenant");
    /* Others' jobs are listed in everyone's queue (reduced), never in full to a user. */
    /* A tenant-admin's list holds its tenant's jobs only (jz_job_visible_to), filter or not. */
    if (f.user && !r->user->admin && !r->user->tenant_admin && !f.everyone &&
        strcmp(f.user, r->user->name) != 0) {
        jz_http_reply_error(r, 403, "forbidden", "user",
                            "only admins may list other users' jobs (scope=all shows "
                            "everyone's queue)");
        return;
    }
    jz_http_reply_json(r, 200, list_bounded(r, &f, after, desc, (size_t)limit));
}

void jz_api_jobs_get(struct jz_req *r)
{
    struct jz_job *job = jz_http_job_from_path(r);
    if (job)
        jz_http_reply_json(r, 200, public_record(job));
}

void jz_api_jobs_cancel(struct jz_req *r)
{
    struct jz_job *job = jz_http_job_from_path(r);
    if (!job)
        return;
    struct jz_error err = {0};
    if (jz_jobs_cancel(r->srv->jobs, job, r->user->name, &err)) {
        jz_http_reply_error(r, 409, "already_ended", "id", "%s", err.msg);
        return;
    }
    jz_http_reply_json(r, 200, public_record(job));
}

static void hold_or_release(struct jz_req *r, bool hold)
{
    struct jz_job *job = jz_http_job_from_path(r);
    if (!job)
        return;
    struct jz_error err = {0};
    if (jz_jobs_set_hold(job, hold, r->user->name, r->user->admin, &err)) {
        if (err.code == JZ_EPERM)
            jz_http_reply_error(r, 403, "forbidden", "id", "%s", err.msg);
        else
            jz_http_reply_error(r, 409, "not_pending", "id", "%s", err.msg);
        return;
    }
    jz_http_reply_json(r, 200, public_record(job));
}

void jz_api_jobs_hold(struct jz_req *r)
{
    hold_or_release(r, true);
}

void jz_api_jobs_release(struct jz_req *r)
{
    hold_or_release(r, false);
}

void jz_api_jobs_modify(struct jz_req *r)
{
    struct jz_job *job = jz_http_job_from_path(r);
    if (!job)
        return;
    const char *field = NULL;
    struct jz_error err = {0};
    if (jz_jobs_modify(job, r->user, r->body, &field, &err)) {
        if (err.code == JZ_EBUSY)
            jz_http_reply_error(r, 409, "not_pending", "id", "%s", err.msg);
        else
            jz_http_reply_jz_error(r, &err, field);
        return;
    }
    jz_http_reply_json(r, 200, public_record(job));
}

/* POST /v1/arrays/ID/cancel: every element the user may see; ID is the array's (its first
 * element's) id. */
void jz_api_arrays_cancel(struct jz_req *r)
{
    struct jz_job *first = jz_http_job_from_path(r);
    if (!first)
        return;
    int64_t id = jz_job_id(first);
    unsigned count = jz_job_array_count(first);
    if (!count) {
        jz_http_reply_error(r, 404, "not_found", "id", "job %lld is not an array's id (its "
                            "first element)", (long long)id);
        return;
    }
    json_t *cancelled = json_array(), *ended = json_array();
    for (int64_t e = id; e < id + count; e++) {
        struct jz_job *job = jz_jobs_find(r->srv->jobs, e);
        if (!job || jz_job_array_id(job) != id || !jz_job_visible_to(job, r->user))
            continue;
        struct jz_error err = {0};
        json_array_append_new(jz_jobs_cancel(r->srv->jobs, job, r->user->name, &err) ? ended
                                                                                     : cancelled,
                              json_integer(e));
    }
    jz_http_reply_json(r, 200, json_pack("{s:I, s:o, s:o}", "array_id", (json_int_t)id,
                                         "cancelled", cancelled, "already_ended", ended));
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
    struct jz_job *job = jz_http_job_from_path(r);
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
