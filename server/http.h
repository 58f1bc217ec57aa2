/* jazarid's HTTP layer: routing, authentication of each request, bounded bodies, JSON replies
 * and errors, and replies deferred until the group commit that makes their change durable. */
#ifndef JZ_SERVER_HTTP_H
#define JZ_SERVER_HTTP_H

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "server/server.h"

struct jz_job;
struct jz_user;

#define JZ_MAX_PATH_SEGMENTS 8

/* One request as the handlers see it. Lives for the handler call only (handlers that keep the
 * request, like log streaming, keep the evhttp_request themselves). */
struct jz_req {
    struct jz_server *srv;
    struct evhttp_request *req;
    enum evhttp_cmd_type method;
    const char *seg[JZ_MAX_PATH_SEGMENTS]; /* path segments ("v1", "jobs", "42") */
    size_t nseg;
    struct evkeyvalq query;
    const struct jz_user *user; /* NULL on unauthenticated routes */
    json_t *body;               /* parsed JSON body for routes that take one, else NULL */
    /* For jazari_http_* (service_metrics.h): the route's pattern (NULL: none matched), when
     * the request arrived (jz_time_mono_us), and whether its reply was counted yet. */
    const char *route;
    int64_t start_us;
    bool counted;
};

/* Serves the API on srv->cfg.listen_host:listen_port through the network front (front.h: TLS,
 * connection and body limits); each request's rate is checked right after its token. */
int jz_http_start(struct jz_server *srv, struct jz_error *err);
void jz_http_stop(struct jz_server *srv);
/* Closes the listening socket (new clients are refused); open connections are still served. */
void jz_http_stop_accepting(struct jz_server *srv);

/* Replies with body (a reference is stolen; NULL sends no body). The reply goes out after the
 * current group commit when a transaction is open, at once otherwise. */
void jz_http_reply_json(struct jz_req *r, int status, json_t *body);
/* Replies at once, whatever the store is doing: for answers that report state and change
 * nothing (/healthz, /metrics), which must not wait for a group commit. body is borrowed and
 * drained; content_type NULL means JSON. */
void jz_http_reply_now(struct jz_req *r, int status, const char *content_type,
                       struct evbuffer *body);
/* Counts the reply a handler sent itself with jz_http_send (a file, a 304) in the request
 * metrics, with its status; one it does not count is counted as 200 when the handler returns.
 * Reads only r, never the request (which may be freed once its reply is sent). */
void jz_http_count(struct jz_req *r, int status);
/* Replies {"error": {"code", "message", "field"}}; field may be NULL. */
void jz_http_reply_error(struct jz_req *r, int status, const char *code, const char *field,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Checks that the request's JSON body has no key outside keys (NULL-terminated): true, or
 * false after a 400 naming the first unknown key (a misspelt field must not be ignored). */
bool jz_http_body_only(struct jz_req *r, const char *const *keys);
/* Maps a JZ_E* code to an HTTP status and error code, for errors from lower layers. */
void jz_http_reply_jz_error(struct jz_req *r, const struct jz_error *err, const char *field);

/* Replies wait while the store is busy: they are sent once the batch holding every change made
 * before them is durable. take_deferred detaches the replies waiting now (for the batch being
 * sealed); send_deferred sends them, or a 500 each when that batch failed. */
struct jz_deferred_reply *jz_http_take_deferred(struct jz_server *srv);
void jz_http_send_deferred(struct jz_deferred_reply *list, bool committed);
/* Frees replies that will never be sent (jazarid stops after a failed batch: nothing more is
 * acknowledged, their connections close unanswered). */
void jz_http_drop_deferred(struct jz_deferred_reply *list);

/* The query parameters a route accepts (http_query.c), route by route: at most this many. */
#define JZ_HTTP_MAX_QUERY_PARAMS 16
/* Checks a request's query (borrowed) against what the route (method and pattern as in
 * http.c's routes[]; HEAD as GET) accepts. 0 when every parameter is accepted and given once, or
 * when the route has no entry in the table (tests/unit/openapi fails for that instead);
 * JZ_EINVAL otherwise, with *bad the first offending key (borrowed from query) and *repeated
 * whether it was given twice rather than not accepted. */
int jz_http_query_check(enum evhttp_cmd_type method, const char *pattern,
                        const struct evkeyvalq *query, const char **bad, bool *repeated);
/* The parameters the route accepts, ", "-separated, into buf (always terminated; cut at a name
 * that does not fit); returns the length written. For error messages. */
size_t jz_http_query_params(enum evhttp_cmd_type method, const char *pattern, char *buf,
                            size_t len);

/* Query helpers: the value of key, or NULL. */
const char *jz_req_query(struct jz_req *r, const char *key);

/* The job of a /v1/jobs/{id}/... path (segment 2) when the caller may see it (borrowed).
 * Otherwise replies 404 "no job {id}", byte for byte the same for another user's job as for one
 * that does not exist, and returns NULL. */
struct jz_job *jz_http_job_from_path(struct jz_req *r);

/* Sends a reply with body (borrowed, drained; NULL for none) through evhttp_send_reply. A HEAD
 * request gets the same status and headers, Content-Length included, and no body. */
void jz_http_send(struct evhttp_request *req, int status, struct evbuffer *body);

#endif
