/* Job events (events.h): ids, the held list that waits for the group commit, the replay ring,
 * the SSE streams of GET /v1/events, and the hand-off of ended jobs to the webhooks. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/events.h"
#include "server/events_ring.h"
#include "server/front.h"
#include "server/http.h"
#include "server/webhooks.h"

/* Ids are the wall clock in ms times 1000, or one more than the last when that is not higher:
 * they are ordered by time, leave room for 1000 events a millisecond, and stay below 2^53 (exact
 * in JavaScript) for centuries. A mark on disk reserves ids ahead (ID_RESERVE: a minute's
 * worth), so that even after a crash, or a clock set back, a restarted jazarid starts above
 * every id the last one gave out; the file is written about once a minute of activity. */
#define ID_PER_MS 1000
#define ID_RESERVE (60LL * 1000 * ID_PER_MS)
#define ID_FILE "events.id"
#define RETRY_MS 100 /* a stream waiting for its client looks again */

struct jz_events_held {
    struct jz_events_held *next;
    struct jz_event ev;
    char *hook_url, *hook_secret, *hook_body; /* a final state with a webhook */
    size_t hook_len;
};

struct stream {
    struct jz_events *ev;
    struct stream *prev, *next;
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    char user[JZ_MAX_NAME_LEN + 1]; /* who reads it (jz_front_stream_acquire) */
    bool admin;
    bool tenant_admin;                /* also reads its tenant's jobs (jz_job_visible_to) */
    char tenant[JZ_MAX_NAME_LEN + 1]; /* the reader's tenant */
    int64_t job; /* filters: 0 and "" for none */
    char user_filter[JZ_MAX_NAME_LEN + 1];
    char tenant_filter[JZ_MAX_NAME_LEN + 1];
    int64_t cursor; /* the newest id it has been sent, or passed over */
    struct event *retry, *keepalive;
    struct event *gone; /* the client closed its end (NULL where the backend cannot tell) */
};

struct jz_events {
    struct jz_server *srv;
    struct jz_event_ring *ring;
    struct jz_webhooks *hooks;
    struct jz_events_held *held, **held_tail;
    int64_t last_id;  /* the newest id given out */
    int64_t reserved; /* ids up to this are covered by the mark on disk */
    struct stream *streams;
    size_t nstreams;
    uint64_t published, dropped;
    char id_path[4200];
};

/* --- ids ----------------------------------------------------------------------------------- */

/* Writes the mark: reserved, and the newest id published when this is a clean stop (-1
 * otherwise). Through a new file and a rename, so that a crash leaves the old mark or the new. */
static int write_mark(const struct jz_events *ev, int64_t reserved, int64_t clean_last)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", ev->id_path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%" PRId64 " %" PRId64 "\n", reserved, clean_last);
    int rc = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -errno;
    if (fclose(f) != 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, ev->id_path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

static int64_t next_id(struct jz_events *ev)
{
    int64_t id = jz_time_now_ms() * ID_PER_MS;
    if (id <= ev->last_id)
        id = ev->last_id + 1;
    ev->last_id = id;
    if (id > ev->reserved) {
        int rc = write_mark(ev, id + ID_RESERVE, -1);
        if (rc)
            jz_log_error("events",
                         "cannot write %s: %s (after a crash, event ids could "
                         "repeat)",
                         ev->id_path, strerror(-rc));
        ev->reserved = id + ID_RESERVE; /* retried only a reserve later either way */
    }
    return id;
}

/* Reads the mark a previous run left: *reserved (0 when none) and *clean_last (-1 unless it
 * stopped cleanly). */
static int read_mark(const char *path, int64_t *reserved, int64_t *clean_last, struct jz_error *err)
{
    *reserved = 0;
    *clean_last = -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : jz_error_set(err, JZ_EIO, "%s: %s", path, strerror(errno));
    long long r = 0, c = -1;
    int n = fscanf(f, "%lld %lld", &r, &c);
    fclose(f);
    if (n != 2 || r < 0 || c > r)
        return jz_error_set(err, JZ_EINVAL,
                            "%s: not an event-id mark (remove it only if event "
                            "ids may start over)",
                            path);
    *reserved = r;
    *clean_last = c;
    return 0;
}

/* --- streams ------------------------------------------------------------------------------- */

static void stream_free(struct stream *s)
{
    struct jz_events *ev = s->ev;
    if (s->retry)
        event_free(s->retry);
    if (s->keepalive)
        event_free(s->keepalive);
    if (s->gone)
        event_free(s->gone);
    *(s->prev ? &s->prev->next : &ev->streams) = s->next;
    if (s->next)
        s->next->prev = s->prev;
    ev->nstreams--;
    jz_front_stream_release(ev->srv, s->user);
    free(s);
}

/* Ends the reply (its client sees the stream close, and resumes with its last id). */
static void stream_end(struct stream *s)
{
    evhttp_connection_set_closecb(s->conn, NULL, NULL);
    evhttp_send_reply_end(s->req);
    stream_free(s);
}

/* Closes the connection at once, with what it still had queued (never from inside an evhttp
 * callback of this connection: evhttp uses it after the callback returns). */
static void stream_drop(struct stream *s)
{
    struct evhttp_connection *conn = s->conn;
    evhttp_connection_set_closecb(conn, NULL, NULL);
    stream_free(s);
    evhttp_connection_free(conn); /* frees the request with it */
}

static void on_stream_close(struct evhttp_connection *conn, void *arg)
{
    struct stream *s = arg;
    /* libevent detaches an unfinished request from a closing connection; ending the reply
     * frees it. */
    if (!evhttp_request_get_connection(s->req))
        evhttp_send_reply_end(s->req);
    stream_free(s);
}

/* The client hung up. evhttp itself would only notice at the next write (a keep-alive, up to
 * JZ_EVENTS_KEEPALIVE_S away), and the stream would hold its place under the user's limit
 * until then. */
static void on_peer_gone(evutil_socket_t fd, short what, void *arg)
{
    stream_drop(arg);
}

/* Watches for the client closing, where the event backend can say so (epoll can). */
static void watch_peer(struct stream *s)
{
    struct event_base *base = s->ev->srv->base;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->conn);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0 || !(event_base_get_features(base) & EV_FEATURE_EARLY_CLOSE))
        return;
    s->gone = event_new(base, fd, EV_CLOSED, on_peer_gone, s);
    if (s->gone && event_add(s->gone, NULL) != 0) {
        event_free(s->gone);
        s->gone = NULL;
    }
}

static bool wants(const struct stream *s, const struct jz_event *e)
{
    if (!s->admin && strcmp(e->user, s->user) != 0 &&
        !(s->tenant_admin && strcmp(e->tenant, s->tenant) == 0))
        return false;
    return (!s->job || e->job == s->job) &&
           (!s->user_filter[0] || strcmp(e->user, s->user_filter) == 0) &&
           (!s->tenant_filter[0] || strcmp(e->tenant, s->tenant_filter) == 0);
}

/* Sends what the stream has not had yet, while its client keeps up: what it has not taken
 * stays in the shared ring, not in a buffer of its own. A client a whole ring behind has lost
 * events: its connection is closed (what it has not read is of no use to it any more), and it
 * resumes into a reset. Never called for a stream that cannot resume from inside the request's
 * handler (a new stream starts at an id the ring holds). */
static void stream_pump(struct stream *s)
{
    struct jz_event_ring *ring = s->ev->ring;
    size_t pos;
    if (!jz_event_ring_resume(ring, s->cursor, &pos)) {
        s->ev->dropped++;
        jz_log_info("events", "stream of %s closed: its client fell %d events behind", s->user,
                    JZ_EVENTS_RING);
        stream_drop(s);
        return;
    }
    size_t n = jz_event_ring_count(ring);
    size_t queued = jz_front_conn_queued(s->conn);
    struct evbuffer *buf = evbuffer_new();
    while (buf && pos < n && queued < JZ_EVENTS_MAX_QUEUED) {
        const struct jz_event *e = jz_event_ring_at(ring, pos);
        if (wants(s, e)) {
            if (evbuffer_add(buf, e->frame, e->len) != 0)
                break;
            queued += e->len;
        }
        s->cursor = e->id;
        pos++;
    }
    if (buf && evbuffer_get_length(buf))
        evhttp_send_reply_chunk(s->req, buf);
    if (buf)
        evbuffer_free(buf);
    if (pos < n) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = RETRY_MS * 1000};
        evtimer_add(s->retry, &tv);
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    stream_pump(arg);
}

/* A comment now and then: proxies keep the connection, and a dead client is found out. */
static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct stream *s = arg;
    if (jz_front_conn_queued(s->conn) >= JZ_EVENTS_MAX_QUEUED)
        return;
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        return;
    evbuffer_add_printf(buf, ": keep-alive\n\n");
    evhttp_send_reply_chunk(s->req, buf);
    evbuffer_free(buf);
}

static void send_reset(struct stream *s, const char *reason)
{
    json_t *data = json_pack("{ss}", "reason", reason);
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    struct evbuffer *buf = evbuffer_new();
    if (buf && text) {
        /* With the newest id: a client that reconnects after re-listing resumes from here. */
        evbuffer_add_printf(buf, "id: %" PRId64 "\nevent: reset\ndata: %s\n\n", s->cursor, text);
        evhttp_send_reply_chunk(s->req, buf);
    }
    if (buf)
        evbuffer_free(buf);
    free(text);
}

/* --- the route ----------------------------------------------------------------------------- */

/* What GET /v1/events was asked for: filters and where to resume. */
struct query {
    int64_t job;
    const char *user, *tenant;
    bool resume;
    int64_t last_id;
};

static bool name_ok(struct jz_req *r, const char *field, const char *v)
{
    if (!v)
        return true;
    if (!*v || strlen(v) > JZ_MAX_NAME_LEN) {
        jz_http_reply_error(r, 400, "invalid", field, "%s must be 1-%d bytes", field,
                            JZ_MAX_NAME_LEN);
        return false;
    }
    return true;
}

/* Reads the query and the Last-Event-ID header; replies with the error and returns false on a
 * bad one. */
static bool parse_query(struct jz_req *r, struct query *q)
{
    *q = (struct query){0};
    const char *v = jz_req_query(r, "job");
    if (v && !jz_parse_id(v, 1, &q->job)) {
        jz_http_reply_error(r, 400, "invalid", "job", "job must be a job id (an integer >= 1)");
        return false;
    }
    q->user = jz_req_query(r, "user");
    q->tenant = jz_req_query(r, "tenant");
    if (!name_ok(r, "user", q->user) || !name_ok(r, "tenant", q->tenant))
        return false;
    /* A tenant-admin may name any user: what it reads stays within its tenant (wants). */
    if (q->user && !r->user->admin && !r->user->tenant_admin &&
        strcmp(q->user, r->user->name) != 0) {
        jz_http_reply_error(r, 403, "forbidden", "user",
                            "only an admin may follow another user's jobs");
        return false;
    }
    /* The header wins: a browser's EventSource reconnects to the same URL with it. */
    const char *header =
        evhttp_find_header(evhttp_request_get_input_headers(r->req), "Last-Event-ID");
    const char *field = header ? "Last-Event-ID" : "last_event_id";
    v = header ? header : jz_req_query(r, "last_event_id");
    if (v) {
        if (!jz_parse_id(v, 0, &q->last_id)) {
            jz_http_reply_error(r, 400, "invalid", field,
                                "%s must be an event id (an integer >= 0)", field);
            return false;
        }
        q->resume = true;
    }
    return true;
}

static struct stream *stream_new(struct jz_events *ev, struct jz_req *r, const struct query *q)
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ev = ev;
    s->retry = evtimer_new(ev->srv->base, on_retry, s);
    s->keepalive = event_new(ev->srv->base, -1, EV_PERSIST, on_keepalive, s);
    if (!s->retry || !s->keepalive) {
        if (s->retry)
            event_free(s->retry);
        if (s->keepalive)
            event_free(s->keepalive);
        free(s);
        return NULL;
    }
    s->req = r->req;
    s->conn = evhttp_request_get_connection(r->req);
    snprintf(s->user, sizeof s->user, "%s", r->user->name);
    s->admin = r->user->admin;
    s->tenant_admin = r->user->tenant_admin;
    snprintf(s->tenant, sizeof s->tenant, "%s", r->user->tenant);
    s->job = q->job;
    snprintf(s->user_filter, sizeof s->user_filter, "%s", q->user ? q->user : "");
    snprintf(s->tenant_filter, sizeof s->tenant_filter, "%s", q->tenant ? q->tenant : "");
    s->next = ev->streams;
    if (ev->streams)
        ev->streams->prev = s;
    ev->streams = s;
    ev->nstreams++;
    return s;
}

void jz_api_events(struct jz_req *r)
{
    struct jz_events *ev = r->srv->events;
    struct query q;
    if (!parse_query(r, &q))
        return;
    if (!ev) {
        jz_http_reply_error(r, 503, "unavailable", NULL, "job events are not available");
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Accel-Buffering", "no"); /* nginx in front: do not buffer */
    /* A stream never ends by itself: HEAD gets the headers it would start with. */
    if (r->method == EVHTTP_REQ_HEAD) {
        jz_http_send(r->req, 200, NULL);
        return;
    }
    if (ev->nstreams >= JZ_EVENTS_MAX_STREAMS) {
        jz_http_reply_error(r, 429, "too_many_streams", NULL,
                            "too many event streams open (limit %d)", JZ_EVENTS_MAX_STREAMS);
        return;
    }
    int64_t per_user = 0;
    if (!jz_front_stream_acquire(r->srv, r->user->name, &per_user)) {
        jz_http_reply_error(r, 429, "too_many_streams", NULL,
                            "you have %lld streams open (log follows and event streams), the "
                            "most one user may have; end one",
                            (long long)per_user);
        return;
    }
    struct stream *s = stream_new(ev, r, &q);
    if (!s) {
        jz_front_stream_release(r->srv, r->user->name);
        jz_http_reply_error(r, 500, "internal", NULL, "out of memory");
        return;
    }
    evhttp_send_reply_start(r->req, 200, "OK");
    evhttp_connection_set_closecb(s->conn, on_stream_close, s);
    /* Quiet streams are normal, and keep-alives show a dead peer: a day bounds the rest. */
    evhttp_connection_set_timeout(s->conn, 24 * 3600);
    struct timeval ka = {.tv_sec = JZ_EVENTS_KEEPALIVE_S, .tv_usec = 0};
    event_add(s->keepalive, &ka);
    watch_peer(s);
    /* The first chunk: a client sees the stream open before any event. */
    struct evbuffer *hello = evbuffer_new();
    if (hello) {
        evbuffer_add_printf(hello, ": jazari events\n\n");
        evhttp_send_reply_chunk(r->req, hello);
        evbuffer_free(hello);
    }
    size_t pos;
    s->cursor = jz_event_ring_last(ev->ring);
    if (q.resume && jz_event_ring_resume(ev->ring, q.last_id, &pos))
        s->cursor = q.last_id;
    else if (q.resume)
        send_reset(s, q.last_id > jz_event_ring_last(ev->ring)
                          ? "that event id was never given out here"
                          : "events after that id are no longer kept; list the jobs again");
    stream_pump(s);
}

/* --- events -------------------------------------------------------------------------------- */

static bool state_final(const char *st)
{
    return st && (strcmp(st, "SUCCEEDED") == 0 || strcmp(st, "FAILED") == 0 ||
                  strcmp(st, "CANCELLED") == 0 || strcmp(st, "TIMEOUT") == 0);
}

static json_t *field_or_null(const json_t *rec, const char *key)
{
    json_t *v = json_object_get(rec, key);
    return v ? json_incref(v) : json_null();
}

/* The event's data line and frame. */
static char *make_frame(int64_t id, const json_t *rec, const char *previous, size_t *len)
{
    char now[40];
    jz_time_format_iso(jz_time_now_ms(), now, sizeof now);
    json_t *d = json_object();
    json_object_set_new(d, "id", json_integer(id));
    json_object_set_new(d, "time", json_string(now));
    json_object_set_new(d, "job", field_or_null(rec, "id"));
    json_object_set_new(d, "state", field_or_null(rec, "state"));
    json_object_set_new(d, "previous", previous ? json_string(previous) : json_null());
    static const char *const copied[] = {"user",        "tenant",    "name", "reason",
                                         "reason_code", "exit_code", "array"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++)
        json_object_set_new(d, copied[i], field_or_null(rec, copied[i]));
    /* Compact JSON escapes every newline: the data is one line, as SSE needs. */
    char *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    if (!data)
        return NULL;
    size_t n = strlen(data) + 64;
    char *frame = malloc(n);
    if (frame)
        *len = (size_t)snprintf(frame, n, "id: %" PRId64 "\nevent: job\ndata: %s\n\n", id, data);
    free(data);
    return frame;
}

static void held_free(struct jz_events_held *h)
{
    free(h->ev.frame);
    free(h->hook_url);
    free(h->hook_secret);
    free(h->hook_body);
    free(h);
}

static const char *str_or(const json_t *rec, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(rec, key));
    return s ? s : dflt;
}

void jz_events_job_changed(struct jz_events *ev, const json_t *rec, const char *previous,
                           const char *notify_url, const char *notify_secret)
{
    if (!ev || !rec)
        return;
    struct jz_events_held *h = calloc(1, sizeof *h);
    int64_t job = json_integer_value(json_object_get(rec, "id"));
    const char *state = str_or(rec, "state", "");
    if (!h)
        goto oom;
    h->ev.id = next_id(ev);
    h->ev.job = job;
    snprintf(h->ev.user, sizeof h->ev.user, "%s", str_or(rec, "user", ""));
    snprintf(h->ev.tenant, sizeof h->ev.tenant, "%s", str_or(rec, "tenant", ""));
    h->ev.frame = make_frame(h->ev.id, rec, previous, &h->ev.len);
    if (!h->ev.frame)
        goto oom;
    if (notify_url && state_final(state)) {
        h->hook_body = json_dumps(rec, JSON_COMPACT);
        h->hook_url = strdup(notify_url);
        h->hook_secret = notify_secret ? strdup(notify_secret) : NULL;
        if (!h->hook_body || !h->hook_url || (notify_secret && !h->hook_secret))
            goto oom;
        h->hook_len = strlen(h->hook_body);
    }
    *ev->held_tail = h;
    ev->held_tail = &h->next;
    jz_server_request_commit(ev->srv);
    return;
oom:
    jz_log_error("events", "job %lld: out of memory: its %s event is lost", (long long)job, state);
    if (h)
        held_free(h);
}

struct jz_events_held *jz_events_take_held(struct jz_events *ev)
{
    if (!ev)
        return NULL;
    struct jz_events_held *list = ev->held;
    ev->held = NULL;
    ev->held_tail = &ev->held;
    return list;
}

void jz_events_drop_held(struct jz_events_held *h)
{
    while (h) {
        struct jz_events_held *next = h->next;
        held_free(h);
        h = next;
    }
}

void jz_events_publish(struct jz_events *ev, struct jz_events_held *h, bool committed)
{
    if (!ev || !committed) {
        jz_events_drop_held(h);
        return;
    }
    if (!h)
        return;
    while (h) {
        struct jz_events_held *next = h->next;
        if (h->hook_url) {
            char delivery[32]; /* the event's id: unique, and the same on every retry */
            snprintf(delivery, sizeof delivery, "%" PRId64, h->ev.id);
            jz_webhooks_send(ev->hooks, h->hook_url, h->hook_secret, h->hook_body, h->hook_len,
                             delivery, h->ev.job, h->ev.user);
        }
        jz_event_ring_push(ev->ring, &h->ev); /* takes the frame */
        h->ev.frame = NULL;
        ev->published++;
        held_free(h);
        h = next;
    }
    for (struct stream *s = ev->streams, *next; s; s = next) {
        next = s->next; /* a stream may end */
        stream_pump(s);
    }
}

void jz_events_stats(const struct jz_events *ev, struct jz_events_stats *out)
{
    struct jz_webhook_stats w;
    jz_webhooks_stats(ev->hooks, &w);
    *out = (struct jz_events_stats){.published = ev->published,
                                    .streams_dropped = ev->dropped,
                                    .streams = ev->nstreams,
                                    .last_id = jz_event_ring_last(ev->ring),
                                    .webhooks_delivered = w.delivered,
                                    .webhooks_failed = w.failed,
                                    .webhooks_blocked = w.blocked,
                                    .webhooks_dropped = w.dropped,
                                    .webhook_attempts = w.attempts,
                                    .webhooks_pending = w.pending};
}

/* --- open and close ------------------------------------------------------------------------ */

int jz_events_open(struct jz_server *srv, struct jz_events **out, struct jz_error *err)
{
    struct jz_events *ev = calloc(1, sizeof *ev);
    if (!ev)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    ev->srv = srv;
    ev->held_tail = &ev->held;
    snprintf(ev->id_path, sizeof ev->id_path, "%s/%s", srv->cfg.state_dir, ID_FILE);
    int64_t reserved, clean_last;
    int rc = read_mark(ev->id_path, &reserved, &clean_last, err);
    if (rc)
        goto fail;
    /* After a clean stop, a client that had every event resumes without a reset. Otherwise
     * every earlier id resets: after a crash the events between its id and the crash are gone,
     * and with no mark at all (a first start, or a state folder started over) its id is from
     * somewhere else. */
    int64_t start = jz_time_now_ms() * ID_PER_MS;
    ev->last_id = reserved;
    int64_t floor = clean_last >= 0 ? clean_last : reserved > start - 1 ? reserved : start - 1;
    ev->ring = jz_event_ring_new(JZ_EVENTS_RING, floor);
    if (!ev->ring) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto fail;
    }
    /* The allow list is read where a reload writes it (srv->cfg is replaced in place). */
    if ((rc = jz_webhooks_open(srv->base, srv->cfg.webhook_allow, &ev->hooks, err)))
        goto fail;
    /* Not a clean stop until close says so; and ids from here on are covered. */
    ev->reserved = (start > reserved ? start : reserved) + ID_RESERVE;
    if ((rc = write_mark(ev, ev->reserved, -1))) {
        rc = jz_error_set(err, JZ_EIO, "%s: %s", ev->id_path, strerror(-rc));
        goto fail;
    }
    *out = ev;
    return 0;
fail:
    jz_webhooks_close(ev->hooks);
    jz_event_ring_free(ev->ring);
    free(ev);
    return rc;
}

void jz_events_close(struct jz_events *ev)
{
    if (!ev)
        return;
    while (ev->streams)
        stream_end(ev->streams);
    jz_events_drop_held(jz_events_take_held(ev));
    /* Clients resume without a reset only from the newest id they could have seen. A run that
     * gave no id out has the ring's floor as its newest (from the clock, when the state folder
     * had no mark): the mark covers it, so that the next start reads it back. */
    int64_t newest = jz_event_ring_last(ev->ring);
    int rc = write_mark(ev, ev->last_id > newest ? ev->last_id : newest, newest);
    if (rc)
        jz_log_error("events", "cannot write %s: %s (clients will get a reset)", ev->id_path,
                     strerror(-rc));
    jz_webhooks_close(ev->hooks);
    jz_event_ring_free(ev->ring);
    free(ev);
}
