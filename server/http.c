/* evhttp glue: one generic callback routes every request through a table, after checking the
 * token and the request rate and reading a bounded JSON body. Connections come through the
 * network front (front.h). */
#include "server/http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/time.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/front.h"
#include "server/jobs.h"
#include "server/service_metrics.h"

struct jz_deferred_reply {
    struct jz_deferred_reply *next;
    struct evhttp_request *req;
    int status;
    char *body;
    /* what the metrics count when it is sent (service_metrics.h) */
    struct jz_server *srv;
    const char *route;
    int method;
    int64_t start_us, deferred_us;
};

/* ROUTE_MONITOR: an admin's token, or the monitoring token (auth.h), which reads nothing else. */
enum route_access { ROUTE_PUBLIC, ROUTE_USER, ROUTE_ADMIN, ROUTE_MONITOR };

struct route {
    enum evhttp_cmd_type method;
    const char *pattern; /* segments separated by '/', '*' matches one segment */
    enum route_access access;
    bool takes_body;
    void (*handler)(struct jz_req *r);
};

static const struct route routes[] = {
    {EVHTTP_REQ_GET, "healthz", ROUTE_PUBLIC, false, jz_api_healthz},
    {EVHTTP_REQ_GET, "metrics", ROUTE_MONITOR, false, jz_api_metrics},
    {EVHTTP_REQ_POST, "v1/jobs", ROUTE_USER, true, jz_api_jobs_submit},
    {EVHTTP_REQ_GET, "v1/jobs", ROUTE_USER, false, jz_api_jobs_list},
    {EVHTTP_REQ_GET, "v1/jobs/*", ROUTE_USER, false, jz_api_jobs_get},
    {EVHTTP_REQ_POST, "v1/jobs/*/cancel", ROUTE_USER, false, jz_api_jobs_cancel},
    {EVHTTP_REQ_POST, "v1/jobs/*/hold", ROUTE_USER, false, jz_api_jobs_hold},
    {EVHTTP_REQ_POST, "v1/jobs/*/release", ROUTE_USER, false, jz_api_jobs_release},
    {EVHTTP_REQ_PATCH, "v1/jobs/*", ROUTE_USER, true, jz_api_jobs_modify},
    {EVHTTP_REQ_POST, "v1/arrays/*/cancel", ROUTE_USER, false, jz_api_arrays_cancel},
    {EVHTTP_REQ_GET, "v1/jobs/*/log", ROUTE_USER, false, jz_api_jobs_log},
    {EVHTTP_REQ_GET, "v1/jobs/*/events", ROUTE_USER, false, jz_api_jobs_events},
    {EVHTTP_REQ_GET, "v1/events", ROUTE_USER, false, jz_api_events},
    {EVHTTP_REQ_GET, "v1/jobs/*/artifacts", ROUTE_USER, false, jz_api_jobs_artifacts},
    {EVHTTP_REQ_GET, "v1/jobs/*/artifacts/*", ROUTE_USER, false, jz_api_jobs_artifact_get},
    {EVHTTP_REQ_GET, "v1/nodes", ROUTE_USER, false, jz_api_nodes},
    {EVHTTP_REQ_POST, "v1/nodes/*/drain", ROUTE_ADMIN, true, jz_api_node_drain},
    {EVHTTP_REQ_POST, "v1/nodes/*/resume", ROUTE_ADMIN, true, jz_api_node_resume},
    {EVHTTP_REQ_POST, "v1/nodes/*/revoke", ROUTE_ADMIN, true, jz_api_node_revoke},
    {EVHTTP_REQ_DELETE, "v1/nodes/*", ROUTE_ADMIN, false, jz_api_node_delete},
    {EVHTTP_REQ_POST, "v1/admin/node-tokens", ROUTE_ADMIN, true, jz_api_admin_node_tokens},
    {EVHTTP_REQ_GET, "v1/agent", ROUTE_PUBLIC, false, jz_api_agent},
    {EVHTTP_REQ_GET, "v1/plugins", ROUTE_USER, false, jz_api_plugins},
    {EVHTTP_REQ_GET, "v1/whoami", ROUTE_USER, false, jz_api_whoami},
    {EVHTTP_REQ_POST, "v1/admin/users", ROUTE_ADMIN, true, jz_api_admin_users_add},
    {EVHTTP_REQ_GET, "v1/admin/users", ROUTE_ADMIN, false, jz_api_admin_users_list},
    {EVHTTP_REQ_GET, "v1/usage", ROUTE_USER, false, jz_api_usage},
    {EVHTTP_REQ_POST, "v1/admin/credits", ROUTE_ADMIN, true, jz_api_admin_credits_add},
    {EVHTTP_REQ_GET, "v1/prices", ROUTE_USER, false, jz_api_prices},
    {EVHTTP_REQ_GET, "v1/tenants/*/statement", ROUTE_USER, false, jz_api_tenant_statement},
    {EVHTTP_REQ_GET, "v1/reports/usage", ROUTE_USER, false, jz_api_reports_usage},
    {EVHTTP_REQ_POST, "v1/whoami/token", ROUTE_USER, true, jz_api_whoami_token},
    {EVHTTP_REQ_POST, "v1/admin/users/*", ROUTE_ADMIN, true, jz_api_admin_user_set},
    {EVHTTP_REQ_DELETE, "v1/admin/users/*", ROUTE_ADMIN, false, jz_api_admin_user_rm},
    {EVHTTP_REQ_GET, "v1/admin/tokens", ROUTE_ADMIN, false, jz_api_admin_tokens_list},
    {EVHTTP_REQ_POST, "v1/admin/tokens", ROUTE_ADMIN, true, jz_api_admin_tokens_add},
    {EVHTTP_REQ_POST, "v1/admin/tokens/rotate", ROUTE_ADMIN, true, jz_api_admin_tokens_rotate},
    {EVHTTP_REQ_DELETE, "v1/admin/tokens/*", ROUTE_ADMIN, false, jz_api_admin_token_revoke},
    {EVHTTP_REQ_GET, "v1/admin/audit", ROUTE_ADMIN, false, jz_api_admin_audit},
    {EVHTTP_REQ_GET, "v1/admin/tenants", ROUTE_ADMIN, false, jz_api_admin_tenants_list},
    {EVHTTP_REQ_POST, "v1/admin/tenants", ROUTE_ADMIN, true, jz_api_admin_tenants_add},
    {EVHTTP_REQ_GET, "v1/admin/tenants/*", ROUTE_ADMIN, false, jz_api_admin_tenant_get},
    {EVHTTP_REQ_POST, "v1/admin/tenants/*", ROUTE_ADMIN, true, jz_api_admin_tenant_set},
    {EVHTTP_REQ_DELETE, "v1/admin/tenants/*", ROUTE_ADMIN, false, jz_api_admin_tenant_rm},
    /* A tenant-admin's routes: the handler checks the role and the tenant (api_tenants.c). */
    {EVHTTP_REQ_GET, "v1/tenants/*", ROUTE_USER, false, jz_api_tenant_get},
    {EVHTTP_REQ_GET, "v1/tenants/*/members", ROUTE_USER, false, jz_api_tenant_members},
    {EVHTTP_REQ_POST, "v1/tenants/*/members", ROUTE_USER, true, jz_api_tenant_member_add},
    {EVHTTP_REQ_DELETE, "v1/tenants/*/members/*", ROUTE_USER, false, jz_api_tenant_member_rm},
    {EVHTTP_REQ_POST, "v1/tenants/*/members/*/token", ROUTE_USER, true,
     jz_api_tenant_member_token},
    {EVHTTP_REQ_POST, "v1/reservations", ROUTE_USER, true, jz_api_reservations_book},
    {EVHTTP_REQ_GET, "v1/reservations", ROUTE_USER, false, jz_api_reservations_list},
    {EVHTTP_REQ_GET, "v1/reservations/*", ROUTE_USER, false, jz_api_reservations_get},
    {EVHTTP_REQ_DELETE, "v1/reservations/*", ROUTE_USER, false, jz_api_reservations_cancel},
    {EVHTTP_REQ_GET, "v1/version", ROUTE_PUBLIC, false, jz_api_version},
    {EVHTTP_REQ_POST, "v1/admin/reload", ROUTE_ADMIN, false, jz_api_admin_reload},
    {EVHTTP_REQ_GET, "v1/admin/backup", ROUTE_ADMIN, false, jz_api_admin_backup},
    /* The web dashboard: a public page; its data comes from /v1 with the user's token. */
    {EVHTTP_REQ_GET, "", ROUTE_PUBLIC, false, jz_api_dashboard_index},
    {EVHTTP_REQ_GET, "ui/*", ROUTE_PUBLIC, false, jz_api_dashboard_asset},
};

static const char *status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 501: return "Not Implemented";
    case 429: return "Too Many Requests";
    case 507: return "Insufficient Storage";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

void jz_http_send(struct evhttp_request *req, int status, struct evbuffer *body)
{
    /* HEAD: the headers GET would have, Content-Length included (evhttp leaves it out when
     * there is no body to send), and no body. */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        char len[24];
        snprintf(len, sizeof len, "%zu", body ? evbuffer_get_length(body) : 0);
        if (!evhttp_find_header(h, "Content-Length"))
            evhttp_add_header(h, "Content-Length", len);
        if (body)
            evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, status, status_reason(status), body);
}

static void send_now(struct evhttp_request *req, int status, const char *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (body) {
        evbuffer_add(buf, body, strlen(body));
        evbuffer_add(buf, "\n", 1);
    }
    jz_http_send(req, status, buf);
    evbuffer_free(buf);
}

void jz_http_reply_json(struct jz_req *r, int status, json_t *body)
{
    struct jz_server *srv = r->srv;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    /* A reply waits until the changes made before it are durable. While the disk is full
     * that could be forever: reads and refusals are answered now (writes get 507). */
    if (!srv->store->ops->busy(srv->store) ||
        (srv->store->ops->full(srv->store) &&
         (r->method == EVHTTP_REQ_GET || r->method == EVHTTP_REQ_HEAD || status >= 400))) {
        send_now(r->req, status, text);
        free(text);
        jz_http_count(r, status);
        return;
    }
    struct jz_deferred_reply *d = malloc(sizeof *d);
    if (!d) {
        free(text);
        send_now(r->req, 500, "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\","
                              "\"field\":null}}");
        jz_http_count(r, 500);
        return;
    }
    *d = (struct jz_deferred_reply){.req = r->req, .status = status, .body = text, .srv = srv,
                                    .route = r->route, .method = r->method,
                                    .start_us = r->start_us, .deferred_us = jz_time_mono_us()};
    jz_observe_reply_deferred(srv->metrics);
    r->counted = true; /* when it is sent */
    *srv->deferred_tail = d;
    srv->deferred_tail = &d->next;
    jz_server_request_commit(srv);
}

struct jz_deferred_reply *jz_http_take_deferred(struct jz_server *srv)
{
    struct jz_deferred_reply *list = srv->deferred_head;
    srv->deferred_head = NULL;
    srv->deferred_tail = &srv->deferred_head;
    return list;
}

void jz_http_send_deferred(struct jz_deferred_reply *d, bool committed)
{
    while (d) {
        struct jz_deferred_reply *next = d->next;
        if (committed)
            send_now(d->req, d->status, d->body);
        else
            send_now(d->req, 500,
                     "{\"error\":{\"code\":\"store_failed\",\"message\":\"the change could not be "
                     "made durable; it may not have been applied\",\"field\":null}}");
        jz_observe_reply_committed(d->srv->metrics, d->deferred_us);
        jz_observe_http(d->srv->metrics, d->route, d->method, committed ? d->status : 500,
                        d->start_us);
        free(d->body);
        free(d);
        d = next;
    }
}

void jz_http_drop_deferred(struct jz_deferred_reply *d)
{
    while (d) {
        struct jz_deferred_reply *next = d->next;
        jz_observe_reply_dropped(d->srv->metrics);
        free(d->body);
        free(d);
        d = next;
    }
}

void jz_http_reply_now(struct jz_req *r, int status, const char *content_type,
                       struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", content_type ? content_type : "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    jz_http_send(r->req, status, body);
    jz_http_count(r, status);
}

void jz_http_count(struct jz_req *r, int status)
{
    if (r->counted)
        return;
    jz_observe_http(r->srv->metrics, r->route, r->method, status, r->start_us);
    r->counted = true;
}

/* Replaces what is not valid UTF-8 (user text cut mid-character, raw query bytes) with '?', so
 * that an error message can always be put in JSON. */
static void utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
                : (*p & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = n > 0;
        for (int i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

void jz_http_reply_error(struct jz_req *r, int status, const char *code, const char *field,
                         const char *fmt, ...)
{
    char msg[512], fld[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_clean(msg);
    if (field) {
        snprintf(fld, sizeof fld, "%s", field);
        utf8_clean(fld);
    }
    json_t *body = json_pack("{s:{s:s, s:s, s:s?}}", "error", "code", code, "message", msg,
                             "field", field ? fld : NULL);
    if (!body)
        body = json_pack("{s:{s:s, s:s, s:n}}", "error", "code", code, "message",
                         "the request was refused", "field");
    else if (!field)
        json_object_set_new(json_object_get(body, "error"), "field", json_null());
    jz_http_reply_json(r, status, body);
}

bool jz_http_body_only(struct jz_req *r, const char *const *keys)
{
    const char *key;
    json_t *v;
    json_object_foreach(r->body, key, v)
    {
        bool known = false;
        for (const char *const *k = keys; *k && !known; k++)
            known = strcmp(*k, key) == 0;
        if (!known) {
            jz_http_reply_error(r, 400, "invalid", key, "%.128s: unknown field", key);
            return false;
        }
    }
    return true;
}

void jz_http_reply_jz_error(struct jz_req *r, const struct jz_error *err, const char *field)
{
    int status = 500;
    const char *code = "internal";
    switch (err->code) {
    case JZ_EINVAL: status = 400; code = "invalid"; break;
    case JZ_ERANGE: status = 400; code = "out_of_range"; break;
    case JZ_ENOENT: status = 404; code = "not_found"; break;
    case JZ_EPERM: status = 403; code = "forbidden"; break;
    case JZ_EEXIST: status = 409; code = "exists"; break;
    case JZ_EBUSY: status = 409; code = "conflict"; break;
    case JZ_ELIMIT: status = 413; code = "too_large"; break;
    case JZ_EAGAIN: status = 429; code = "too_many"; break;
    default: break;
    }
    jz_http_reply_error(r, status, code, field, "%s", err->msg);
}

const char *jz_req_query(struct jz_req *r, const char *key)
{
    return evhttp_find_header(&r->query, key);
}

struct jz_job *jz_http_job_from_path(struct jz_req *r)
{
    const char *s = r->seg[2];
    char *end;
    errno = 0;
    long long id = strtoll(s, &end, 10);
    struct jz_job *job = NULL;
    if (!errno && *end == '\0' && id > 0)
        job = jz_jobs_find(r->srv->jobs, id);
    /* Another user's job is answered exactly as a missing one: a different status or message
     * would tell anyone which ids exist (and so how busy the service is, and when others
     * submit). */
    if (!job || !jz_job_visible_to(job, r->user)) {
        jz_http_reply_error(r, 404, "not_found", "id", "no job %.32s", s);
        return NULL;
    }
    return job;
}

/* Splits path (a private copy) into segments; false when there are too many. */
static bool split_path(char *path, struct jz_req *r)
{
    r->nseg = 0;
    for (char *save = NULL, *tok = strtok_r(path, "/", &save); tok;
         tok = strtok_r(NULL, "/", &save)) {
        if (r->nseg == JZ_MAX_PATH_SEGMENTS)
            return false;
        r->seg[r->nseg++] = tok;
    }
    return true;
}

static bool route_matches(const struct route *rt, const struct jz_req *r)
{
    char pat[128];
    snprintf(pat, sizeof pat, "%s", rt->pattern);
    size_t i = 0;
    for (char *save = NULL, *tok = strtok_r(pat, "/", &save); tok;
         tok = strtok_r(NULL, "/", &save), i++) {
        if (i >= r->nseg)
            return false;
        if (strcmp(tok, "*") != 0 && strcmp(tok, r->seg[i]) != 0)
            return false;
    }
    return i == r->nseg;
}

static bool read_body(struct jz_req *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    if (len > JZ_MAX_BODY_BYTES) {
        jz_http_reply_error(r, 413, "too_large", "body", "request body is %zu bytes; the limit is %d",
                            len, JZ_MAX_BODY_BYTES);
        return false;
    }
    if (len == 0) {
        r->body = json_object();
        return true;
    }
    const char *data = (const char *)evbuffer_pullup(in, -1);
    struct jz_error err = {0};
    r->body = jz_json_parse(data, len, JZ_MAX_JSON_DEPTH, &err);
    if (!r->body) {
        jz_http_reply_error(r, err.code == JZ_ELIMIT ? 413 : 400,
                            err.code == JZ_ELIMIT ? "too_deep" : "bad_json", "body", "%s", err.msg);
        return false;
    }
    if (!json_is_object(r->body)) {
        jz_http_reply_error(r, 400, "bad_json", "body", "the body must be a JSON object");
        json_decref(r->body);
        r->body = NULL;
        return false;
    }
    return true;
}

/* Takes one request from the bucket of the user, or of the client's address when there is no
 * user; replies 429 and returns false when it is empty. Admins are not limited (like Slurm's
 * SlurmUser): they run the service, and a stolen admin token has worse uses than flooding. */
static bool rate_ok(struct jz_req *r, const struct jz_user *user)
{
    if (user && user->admin)
        return true;
    char key[JZ_MAX_NAME_LEN + 8];
    if (user) {
        snprintf(key, sizeof key, "u:%s", user->name);
    } else {
        char *addr = NULL;
        ev_uint16_t port = 0;
        struct evhttp_connection *conn = evhttp_request_get_connection(r->req);
        if (conn)
            evhttp_connection_get_peer(conn, &addr, &port);
        snprintf(key, sizeof key, "a:%s", addr ? addr : "?");
    }
    int64_t retry = 1;
    if (jz_front_rate_take(r->srv, key, &retry))
        return true;
    double per_s, burst;
    jz_front_rate_limits(r->srv, &per_s, &burst);
    char after[24];
    snprintf(after, sizeof after, "%lld", (long long)retry);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", after);
    jz_http_reply_error(r, 429, "rate_limited", NULL,
                        "too many requests from this %s: at most %g per second (bursts of %g); "
                        "retry in %lld s",
                        user ? "token" : "address", per_s, burst, (long long)retry);
    return false;
}

/* The Allow header of a 405 (RFC 9110 section 15.5.6): what the path's routes take. */
static void set_allow(struct evhttp_request *req, unsigned methods)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{EVHTTP_REQ_GET, "GET"},
                 {EVHTTP_REQ_GET, "HEAD"},
                 {EVHTTP_REQ_POST, "POST"},
                 {EVHTTP_REQ_PUT, "PUT"},
                 {EVHTTP_REQ_DELETE, "DELETE"},
                 {EVHTTP_REQ_PATCH, "PATCH"}};
    char allow[64] = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (methods & names[i].bit) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", names[i].name);
        }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct jz_server *srv = arg;
    struct jz_req r = {.srv = srv, .req = req, .method = evhttp_request_get_command(req),
                       .start_us = jz_time_mono_us()};
    TAILQ_INIT(&r.query);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    char path[1024];
    if (!raw_path || strlen(raw_path) >= sizeof path) {
        jz_http_reply_error(&r, 400, "bad_path", NULL, "bad or over-long path");
        return;
    }
    snprintf(path, sizeof path, "%s", raw_path);
    const char *q = evhttp_uri_get_query(uri);
    if (q && evhttp_parse_query_str(q, &r.query) != 0) {
        jz_http_reply_error(&r, 400, "bad_query", NULL, "malformed query string");
        return;
    }
    if (!split_path(path, &r)) {
        jz_http_reply_error(&r, 404, "not_found", NULL, "no such route");
        goto done;
    }
    const struct route *rt = NULL;
    unsigned allowed = 0; /* the methods the path has routes for */
    /* HEAD is served wherever GET is, by the GET route (jz_http_send drops the body). */
    enum evhttp_cmd_type want = r.method == EVHTTP_REQ_HEAD ? EVHTTP_REQ_GET : r.method;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!route_matches(&routes[i], &r))
            continue;
        allowed |= (unsigned)routes[i].method;
        if (!r.route) /* a 405 is counted under the path's route */
            r.route = routes[i].pattern;
        if (routes[i].method == want && !rt)
            rt = &routes[i];
    }
    if (rt)
        r.route = rt->pattern;
    if (!rt) {
        if (allowed) {
            set_allow(req, allowed);
            jz_http_reply_error(&r, 405, "method_not_allowed", NULL, "method not allowed here");
        } else {
            jz_http_reply_error(&r, 404, "not_found", NULL, "no such route");
        }
        goto done;
    }
    if (srv->stopping) {
        jz_http_reply_error(&r, 503, "stopping", NULL, "the service is shutting down");
        goto done;
    }
    const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req),
                                           "Authorization");
    if (rt->access == ROUTE_MONITOR && jz_auth_monitor_ok(srv->auth, authz)) {
        if (!rate_ok(&r, NULL))
            goto done;
    } else if (rt->access != ROUTE_PUBLIC) {
        char why[160];
        r.user = jz_auth_check_why(srv->auth, authz, why, sizeof why);
        if (!r.user) {
            /* Failed attempts count against the address: guessing tokens is rate limited. */
            if (!rate_ok(&r, NULL))
                goto done;
            evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                              "Bearer realm=\"jazari\"");
            jz_http_reply_error(&r, 401, "unauthorized", "Authorization", "%s", why);
            goto done;
        }
        if (!rate_ok(&r, r.user))
            goto done;
        if ((rt->access == ROUTE_ADMIN || rt->access == ROUTE_MONITOR) && !r.user->admin) {
            jz_http_reply_error(&r, 403, "forbidden", NULL, "this needs the admin role");
            goto done;
        }
    } else if (!rate_ok(&r, NULL)) {
        goto done;
    }
    /* The disk holding the database is full: what is stored waits for space (nothing is
     * lost), reads go on, and changes are refused until the store can write again. */
    if (r.method != EVHTTP_REQ_GET && r.method != EVHTTP_REQ_HEAD &&
        srv->store->ops->full(srv->store)) {
        jz_http_reply_error(&r, 507, "insufficient_storage", NULL,
                            "the service's disk is full: nothing can be changed until an "
                            "operator frees space (reads still work)");
        goto done;
    }
    /* After auth: an anonymous caller learns nothing of a route's parameters. Before the body,
     * which a refused request need not have read. */
    const char *bad = NULL;
    bool repeated = false;
    if (jz_http_query_check(rt->method, rt->pattern, &r.query, &bad, &repeated)) {
        char takes[256];
        jz_http_query_params(rt->method, rt->pattern, takes, sizeof takes);
        if (repeated)
            jz_http_reply_error(&r, 400, "invalid", bad,
                                "query parameter '%.64s' is given more than once", bad);
        else
            jz_http_reply_error(&r, 400, "invalid", bad,
                                "unknown query parameter '%.64s' (this route takes %s)", bad,
                                *takes ? takes : "none");
        goto done;
    }
    if (rt->takes_body && !read_body(&r))
        goto done;
    rt->handler(&r);
done:
    /* A handler that sends its own body (a file, a log stream) through jz_http_send and does
     * not say its status (jz_http_count) answered 200: its errors go through jz_http_reply_*,
     * which count themselves, and the request may be freed once its reply is sent, so its
     * status cannot be read back here. */
    jz_http_count(&r, 200);
    json_decref(r.body);
    evhttp_clear_headers(&r.query);
}

int jz_http_start(struct jz_server *srv, struct jz_error *err)
{
    /* The metrics live with the server that exports them. */
    int rc;
    if (!srv->metrics && (rc = jz_service_metrics_open(&srv->metrics, err)))
        return rc;
    srv->http = evhttp_new(srv->base);
    if (!srv->http)
        return jz_error_set(err, JZ_ENOMEM, "cannot create the HTTP server");
    evhttp_set_max_body_size(srv->http, JZ_MAX_TRANSPORT_BODY);
    evhttp_set_max_headers_size(srv->http, JZ_MAX_HEAD_BYTES);
    evhttp_set_timeout(srv->http, srv->cfg.idle_timeout_s > 0 ? (int)srv->cfg.idle_timeout_s
                                                               : JZ_DEFAULT_IDLE_TIMEOUT_S);
    /* Every method the front lets through reaches the router, which answers in JSON (405 with
     * Allow); evhttp's own refusal of a method would be an HTML page. */
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(srv->http, on_request, srv);
    return jz_front_listen(srv, err);
}

void jz_http_stop_accepting(struct jz_server *srv)
{
    jz_front_listener_gone(srv);
    if (srv->http && srv->listener)
        evhttp_del_accept_socket(srv->http, srv->listener);
    srv->listener = NULL;
}

void jz_http_stop(struct jz_server *srv)
{
    jz_front_listener_gone(srv);
    if (srv->http)
        evhttp_free(srv->http);
    srv->http = NULL;
    srv->listener = NULL;
    jz_front_close(srv);
    jz_service_metrics_close(srv->metrics);
    srv->metrics = NULL;
}
