/* The network front of jazarid (see front.h): TLS, the connection cap, the request-head gate, and
 * rate and stream limits. */
#include "server/front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "common/log.h"
#include "common/time.h"
#include "common/tls.h"
#include "server/auth.h"

#define FD_PAUSE_MS 250        /* accepting waits this long after running out of descriptors */
#define FD_LOG_EVERY_MS 10000  /* at most one log line per this while it keeps happening */
#define REFUSED_LINGER_MS 1000 /* a refused connection is read (and dropped) this long */
#define RATE_HASH 4096         /* hash chains of the bucket table (a power of two) */
#define GATE_LINE_MAX 1100     /* bytes of a header line looked at (Authorization fits) */

/* A token bucket: tokens refill at the rate up to the burst; each request takes one. */
struct bucket {
    struct bucket *hnext;       /* hash chain */
    struct bucket *prev, *next; /* least recently used last */
    double tokens;
    int64_t last_ms;
    char key[JZ_MAX_NAME_LEN + 8];
};

struct jz_front {
    struct jz_front *next_front; /* the registry below */
    struct jz_server *srv;
    SSL_CTX *tls;
    struct evconnlistener *listener; /* the API's, owned by evhttp */
    size_t conns, max_conns;
    bool paused_cap, paused_fd;
    bool closed; /* jz_front_close ran while connections were still being freed */
    struct event *resume_ev;
    int64_t fd_log_ms;  /* when the last "out of descriptors" line was written */
    uint64_t fd_pauses; /* pauses since that line */
    /* rate limiting */
    double rate, burst;
    struct bucket *hash[RATE_HASH];
    struct bucket *lru_head, *lru_tail;
    size_t nbuckets;
    /* log streams: user name -> count */
    json_t *streams;
    int64_t max_streams;
};

/* evconnlistener calls an error callback with the argument of its accept callback, which
 * evhttp_bind_listener sets to the evhttp: the front owning a listener is found here. One per
 * jazarid in practice; a list so that nothing assumes it. */
static struct jz_front *fronts;

static void on_resume(evutil_socket_t fd, short what, void *arg);
static bool is_loopback(const struct sockaddr *sa);

static void listen_where(const struct jz_server_config *cfg, char *buf, size_t len)
{
    snprintf(buf, len, strchr(cfg->listen_host, ':') ? "[%s]:%d" : "%s:%d", cfg->listen_host,
             cfg->listen_port);
}

/* The API's address as evhttp_bind_socket would take it: the first of getaddrinfo's answers. */
static int resolve_listen(const struct jz_server *srv, struct evutil_addrinfo **ai,
                          struct jz_error *err)
{
    const struct jz_server_config *cfg = &srv->cfg;
    char port[16], where[300];
    snprintf(port, sizeof port, "%d", cfg->listen_port);
    listen_where(cfg, where, sizeof where);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
                                    .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP,
                                    .ai_flags = EVUTIL_AI_PASSIVE};
    *ai = NULL;
    int gai = evutil_getaddrinfo(cfg->listen_host, port, &hints, ai);
    if (gai != 0 || !*ai) {
        if (*ai)
            evutil_freeaddrinfo(*ai);
        return jz_error_set(err, JZ_EINVAL, "--listen %s: %s", where,
                            gai ? evutil_gai_strerror(gai) : "no address");
    }
    return 0;
}

/* --- start-up ------------------------------------------------------------------------------ */

/* Descriptors are what connections, workers' pipes and job files are made of: as many as the
 * hard limit allows, and the connection cap below them with room for the rest. */
static size_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20) ? (size_t)1 << 20
                                                                    : (size_t)rl.rlim_cur;
}

static size_t derive_cap(size_t nofile)
{
    size_t reserve = 64 + nofile / 8;
    size_t cap = nofile > reserve ? nofile - reserve : nofile / 4;
    if (cap > JZ_DEFAULT_MAX_CONNECTIONS)
        cap = JZ_DEFAULT_MAX_CONNECTIONS;
    return cap < 8 ? 8 : cap;
}

/* What jz_front_open made, less the front itself (connections may still point at it). */
static void front_release(struct jz_front *f)
{
    for (struct bucket *b = f->lru_head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    f->lru_head = f->lru_tail = NULL;
    if (f->resume_ev)
        event_free(f->resume_ev);
    f->resume_ev = NULL;
    json_decref(f->streams);
    f->streams = NULL;
    SSL_CTX_free(f->tls);
    f->tls = NULL;
    f->listener = NULL;
}

int jz_front_open(struct jz_server *srv, struct jz_error *err)
{
    if (srv->front)
        return 0;
    const struct jz_server_config *cfg = &srv->cfg;
    if (!cfg->tls_cert[0] != !cfg->tls_key[0])
        return jz_error_set(err, JZ_EINVAL, "--tls-cert and --tls-key go together: give both");
    struct jz_front *f = calloc(1, sizeof *f);
    if (!f)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    f->srv = srv;
    f->streams = json_object();
    f->resume_ev = evtimer_new(srv->base, on_resume, f);
    int rc = 0;
    if (!f->streams || !f->resume_ev) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto fail;
    }
    if (cfg->tls_cert[0] && (rc = jz_tls_server_ctx(cfg->tls_cert, cfg->tls_key, &f->tls, err)))
        goto fail;
    /* The API's address is checked now, before anything listens: the agents' listener, opened
     * first, is on the same host by default and would otherwise be the one named. */
    struct evutil_addrinfo *ai = NULL;
    if ((rc = resolve_listen(srv, &ai, err)))
        goto fail;
    char where[300];
    listen_where(cfg, where, sizeof where);
    if (!f->tls && !cfg->allow_plain_http && !is_loopback(ai->ai_addr))
        rc = jz_front_check_plain(srv, ai->ai_addr, where, "the REST API", err);
    evutil_freeaddrinfo(ai);
    if (rc)
        goto fail;
    size_t nofile = raise_nofile();
    f->max_conns = cfg->max_connections > 0 ? (size_t)cfg->max_connections : derive_cap(nofile);
    if (cfg->max_connections > 0 && (size_t)cfg->max_connections + 64 > nofile)
        jz_log_warn("front",
                    "--max-connections %lld is close to or above the descriptor limit "
                    "(%zu): accepting will pause when descriptors run out",
                    (long long)cfg->max_connections, nofile);
    f->next_front = fronts;
    fronts = f;
    srv->front = f;
    jz_front_apply_limits(srv);
    return 0;
fail:
    front_release(f);
    free(f);
    return rc;
}

void jz_front_close(struct jz_server *srv)
{
    struct jz_front *f = srv->front;
    if (!f)
        return;
    for (struct jz_front **p = &fronts; *p; p = &(*p)->next_front)
        if (*p == f) {
            *p = f->next_front;
            break;
        }
    front_release(f);
    srv->front = NULL;
    /* evhttp_free lets its connections go, but libevent frees bufferevents later (as the base
     * is freed): the last gate to go frees what is left. */
    if (f->conns)
        f->closed = true;
    else
        free(f);
}

SSL_CTX *jz_front_tls(const struct jz_server *srv)
{
    return srv->front ? srv->front->tls : NULL;
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return sa->sa_family == AF_UNIX;
}

int jz_front_check_plain(const struct jz_server *srv, const struct sockaddr *sa, const char *where,
                         const char *what, struct jz_error *err)
{
    if (jz_front_tls(srv) || srv->cfg.allow_plain_http || is_loopback(sa))
        return 0;
    return jz_error_set(err, JZ_EINVAL,
                        "refusing to serve %s over plain HTTP on %s, which is not a loopback "
                        "address: give --tls-cert FILE and --tls-key FILE, or --allow-plain-http "
                        "to serve without TLS anyway",
                        what, where);
}

/* --- accepting ----------------------------------------------------------------------------- */

static void listener_update(struct jz_front *f)
{
    if (!f->listener)
        return;
    if (f->paused_cap || f->paused_fd)
        evconnlistener_disable(f->listener);
    else
        evconnlistener_enable(f->listener);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct jz_front *f = arg;
    f->paused_fd = false;
    listener_update(f);
}

/* accept() failed for want of descriptors or memory (anything retriable is handled by libevent
 * itself). The pending connection stays in the backlog, so an enabled listener would be woken
 * again at once: pause instead, and try again shortly (or as soon as a connection closes). */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    struct jz_front *f = fronts;
    while (f && f->listener != lev)
        f = f->next_front;
    if (!f) {
        evconnlistener_disable(lev);
        return;
    }
    f->paused_fd = true;
    listener_update(f);
    struct timeval tv = {.tv_sec = 0, .tv_usec = FD_PAUSE_MS * 1000};
    evtimer_add(f->resume_ev, &tv);
    f->fd_pauses++;
    int64_t now = jz_time_mono_ms();
    if (!f->fd_log_ms || now - f->fd_log_ms >= FD_LOG_EVERY_MS) {
        jz_log_warn("front",
                    "cannot accept API connections: %s (%zu open); pausing accepts "
                    "(%llu pauses since the last such line)",
                    evutil_socket_error_to_string(e), f->conns, (unsigned long long)f->fd_pauses);
        f->fd_log_ms = now;
        f->fd_pauses = 0;
    }
}

/* --- the gate -------------------------------------------------------------------------------- */

enum gate_state {
    GATE_HEAD,    /* reading a request's line and headers (held back from evhttp) */
    GATE_BODY,    /* passing body_left bytes of an accepted request */
    GATE_CHUNKED, /* passing a chunked body (with a valid token), checking its framing */
    GATE_REFUSED, /* answered and closing: what comes is dropped */
};

struct gate {
    struct jz_front *front;
    struct bufferevent *bev;   /* the filter evhttp reads (it owns it) */
    struct bufferevent *under; /* the socket or TLS bufferevent below */
    struct evbuffer_cb_entry *drained_cb, *out_cb;
    struct event *close_ev;
    struct event *written_ev; /* tells evhttp its output is written (on_gate_written) */
    enum gate_state state;
    uint64_t body_left;
    /* a chunked body: where in it, and its size so far */
    enum { CHUNK_SIZE, CHUNK_DATA, CHUNK_DATA_END, CHUNK_TRAILER } chunk;
    uint64_t chunk_total;
    /* Refused in the middle of a body evhttp was reading: what evhttp writes from now on (its
     * own error page, as the connection goes) is dropped, the JSON refusal being the answer. */
    bool mute;
    /* A request went to evhttp and nothing was written since: its answer is still to come. It
     * is cleared when the lower output empties, so with two or more unanswered pipelined
     * requests the refusal of a third may come before the second's answer; such a client
     * misbehaves twice over and gets its connection closed. */
    bool inflight;
    struct evbuffer *held_reply; /* a refusal waiting for the answer to an earlier request */
    /* the head being read */
    size_t scanned;  /* bytes of complete lines looked at */
    bool first_done; /* the request line was seen */
    bool may_have_body;
    bool has_length, bad_length, has_te, chunked, has_authz, folded;
    int64_t length;
    char length_text[32];
    char authz[GATE_LINE_MAX];
    /* The first fault found in the head, answered once the head is complete (so that the
     * answer is about the request, not about a partial read). 0 when none. */
    int fault_status;
    const char *fault_code, *fault_field;
    char fault_msg[200];
};

static void gate_reset(struct gate *g)
{
    g->state = GATE_HEAD;
    g->scanned = 0;
    g->first_done = g->may_have_body = false;
    g->has_length = g->bad_length = g->has_te = g->chunked = g->has_authz = g->folded = false;
    g->length = 0;
    g->length_text[0] = g->authz[0] = '\0';
    g->fault_status = 0;
    g->fault_code = g->fault_field = NULL;
    g->fault_msg[0] = '\0';
}

/* Notes what is wrong with the head being read; the first fault is the one answered. */
static void gate_fault(struct gate *g, int status, const char *code, const char *field,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void gate_fault(struct gate *g, int status, const char *code, const char *field,
                       const char *fmt, ...)
{
    if (g->fault_status)
        return;
    g->fault_status = status;
    g->fault_code = code;
    g->fault_field = field;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->fault_msg, sizeof g->fault_msg, fmt, ap);
    va_end(ap);
}

/* RFC 9110's tchar: what a method and a header name are made of. */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Puts a byte string into a message: what is not printable ASCII shows as '?' (messages are
 * JSON strings, and a refused request's bytes are anything). */
static void printable(const char *s, size_t n, char *buf, size_t len)
{
    size_t i = 0;
    for (; i < n && i + 1 < len; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    buf[i] = '\0';
}

/* The methods evhttp parses. Any other token would make evhttp answer 501 itself (in HTML): it
 * is refused here instead. TRACE and CONNECT are parsed but never served (no tracing, no
 * proxying): refused here too. The rest reach the router, which answers 405 with Allow where a
 * path has no route for them. */
static const char *const known_methods[] = {"GET",    "HEAD",    "POST", "PUT",
                                            "DELETE", "OPTIONS", "PATCH"};

/* The request line: METHOD SP request-target SP HTTP-version (RFC 9112 section 3), each part
 * checked so that evhttp never answers a malformed one itself. */
static void gate_request_line(struct gate *g, const char *line, bool truncated)
{
    char shown[40];
    if (truncated) {
        gate_fault(g, 414, "uri_too_long", NULL, "the request line is over %d bytes",
                   GATE_LINE_MAX - 1);
        return;
    }
    size_t mlen = 0;
    while (is_tchar((unsigned char)line[mlen]))
        mlen++;
    if (mlen == 0 || line[mlen] != ' ') {
        gate_fault(g, 400, "bad_request", NULL, "malformed request line");
        return;
    }
    const char *target = line + mlen + 1;
    size_t tlen = 0;
    while ((unsigned char)target[tlen] > 0x20 && target[tlen] != 0x7f)
        tlen++;
    const char *version = target + tlen + 1;
    if (tlen == 0 || target[tlen] != ' ' ||
        (target[0] != '/' && strncasecmp(target, "http://", 7) != 0 &&
         strncasecmp(target, "https://", 8) != 0)) {
        gate_fault(g, 400, "bad_request", NULL, "malformed request line");
        return;
    }
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0) {
        bool looks = strncmp(version, "HTTP/", 5) == 0 && version[5] >= '0' && version[5] <= '9' &&
                     version[6] == '.' && version[7] >= '0' && version[7] <= '9' && !version[8];
        printable(version, strlen(version), shown, sizeof shown);
        if (looks)
            gate_fault(g, 505, "version_not_supported", NULL,
                       "%s is not supported: HTTP/1.1 and HTTP/1.0 are", shown);
        else
            gate_fault(g, 400, "bad_request", NULL, "malformed request line");
        return;
    }
    bool known = false;
    for (size_t i = 0; i < sizeof known_methods / sizeof known_methods[0]; i++)
        if (strlen(known_methods[i]) == mlen && strncmp(line, known_methods[i], mlen) == 0)
            known = true;
    if (!known) {
        printable(line, mlen, shown, sizeof shown);
        gate_fault(g, 501, "not_implemented", NULL, "method %s is not implemented", shown);
    }
}

/* evhttp reads a body only for these methods (evhttp_method_may_have_body in libevent 2.1):
 * for any other the bytes after the head are the next request, and the gate must agree. */
static bool method_may_have_body(const char *line)
{
    static const char *const with_body[] = {"POST ",   "PUT ",     "PATCH ",  "GET ",
                                            "DELETE ", "OPTIONS ", "CONNECT "};
    for (size_t i = 0; i < sizeof with_body / sizeof with_body[0]; i++)
        if (strncmp(line, with_body[i], strlen(with_body[i])) == 0)
            return true;
    return false;
}

/* False once evhttp has let the connection go (bufferevent_free clears the callbacks; libevent
 * frees it, and the gate, a little later): then nothing may be triggered on it. */
static bool gate_owned(struct gate *g)
{
    bufferevent_event_cb cb = NULL;
    bufferevent_getcb(g->bev, NULL, NULL, &cb, NULL);
    return cb != NULL;
}

static void on_gate_close(evutil_socket_t fd, short what, void *arg)
{
    struct gate *g = arg;
    if (gate_owned(g))
        bufferevent_trigger_event(g->bev, BEV_EVENT_ERROR, 0);
}

/* Sends the refusal and closes the connection after a short linger (so that the answer is not
 * lost to a reset while the client still sends); what arrives meanwhile is dropped. */
static void gate_send_refusal(struct gate *g)
{
    evbuffer_add_buffer(bufferevent_get_output(g->under), g->held_reply);
    evbuffer_free(g->held_reply);
    g->held_reply = NULL;
    bufferevent_enable(g->under, EV_READ);
    struct timeval tv = {.tv_sec = REFUSED_LINGER_MS / 1000,
                         .tv_usec = (REFUSED_LINGER_MS % 1000) * 1000};
    evtimer_add(g->close_ev, &tv);
}

/* Answers the request with a JSON error and closes the connection. */
static void gate_refuse(struct gate *g, struct evbuffer *src, int status, const char *code,
                        const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void gate_refuse(struct gate *g, struct evbuffer *src, int status, const char *code,
                        const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message", msg, "field",
                             field ? json_string(field) : json_null());
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    const char *reason = status == 400   ? "Bad Request"
                         : status == 401 ? "Unauthorized"
                         : status == 413 ? "Payload Too Large"
                         : status == 414 ? "URI Too Long"
                         : status == 417 ? "Expectation Failed"
                         : status == 431 ? "Request Header Fields Too Large"
                         : status == 501 ? "Not Implemented"
                         : status == 505 ? "HTTP Version Not Supported"
                                         : "Error";
    struct evbuffer *reply = evbuffer_new();
    if (!reply) { /* out of memory: just close */
        g->state = GATE_REFUSED;
        evbuffer_drain(src, evbuffer_get_length(src));
        event_active(g->close_ev, EV_TIMEOUT, 0);
        free(text);
        return;
    }
    evbuffer_add_printf(reply,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Cache-Control: no-store\r\nConnection: close\r\n%sContent-Length: %zu"
                        "\r\n\r\n%s\n",
                        status, reason,
                        status == 401 ? "WWW-Authenticate: Bearer realm=\"jazari\"\r\n" : "",
                        text ? strlen(text) + 1 : 1, text ? text : "");
    free(text);
    evbuffer_drain(src, evbuffer_get_length(src));
    g->state = GATE_REFUSED;
    g->held_reply = reply;
    if (g->inflight) {
        /* A request before this one (pipelined) has not been answered: this answer waits
         * for it (on_under_drained), and nothing more is read meanwhile. */
        bufferevent_disable(g->under, EV_READ);
        return;
    }
    gate_send_refusal(g);
    jz_log_debug("front", "request refused before its body (%d %s): %s", status, code, msg);
}

static bool authorized(struct gate *g)
{
    return g->has_authz && jz_auth_check(g->front->srv->auth, g->authz) != NULL;
}

/* The head is complete (g->scanned bytes): decides what follows it. False when refused. */
static bool gate_decide(struct gate *g, struct evbuffer *src)
{
    if (g->folded)
        gate_fault(g, 400, "bad_request", NULL, "folded header lines are not accepted");
    /* RFC 9112 section 6.1: both framings in one request is how requests are smuggled past a
     * proxy that reads the other one. */
    if (g->has_te && g->has_length)
        gate_fault(g, 400, "bad_request", "Transfer-Encoding",
                   "Transfer-Encoding and Content-Length together are not accepted");
    /* evhttp reads no body for these methods: a body would be read as the next request. */
    if (!g->may_have_body && (g->has_te || (g->has_length && (g->bad_length || g->length > 0))))
        gate_fault(g, 400, "bad_request", "body", "this method takes no request body");
    if (g->fault_status) {
        gate_refuse(g, src, g->fault_status, g->fault_code, g->fault_field, "%s", g->fault_msg);
        return false;
    }
    uint64_t body = 0;
    if (g->may_have_body) {
        if (g->chunked) {
            /* A chunked body's size is not known in advance: only with a valid token, and the
             * rest of the connection is then passed as it comes (evhttp bounds the body). */
            if (!authorized(g)) {
                gate_refuse(g, src, 401, "unauthorized", "Authorization",
                            "a chunked request body needs a valid bearer token");
                return false;
            }
            g->state = GATE_CHUNKED;
            return true;
        }
        if (g->bad_length) {
            gate_refuse(g, src, 400, "bad_request", "Content-Length",
                        "Content-Length '%.24s' is not a byte count", g->length_text);
            return false;
        }
        body = g->has_length ? (uint64_t)g->length : 0;
    }
    if (body > JZ_MAX_TRANSPORT_BODY) {
        gate_refuse(g, src, 413, "too_large", "body", "request body is %llu bytes; the limit is %d",
                    (unsigned long long)body, JZ_MAX_BODY_BYTES);
        return false;
    }
    if (body > JZ_MAX_PREAUTH_BODY && !authorized(g)) {
        gate_refuse(g, src, 401, "unauthorized", "Authorization",
                    "a request body over %d bytes needs a valid bearer token (%s)",
                    JZ_MAX_PREAUTH_BODY, g->has_authz ? "invalid token" : "missing bearer token");
        return false;
    }
    g->body_left = body;
    return true;
}

/* A Transfer-Encoding header's value. evhttp reads a chunked body only when the first such
 * header is exactly "chunked", and otherwise frames the body by Content-Length: anything else
 * is refused, so that the gate, evhttp and any proxy in front agree on where a request ends.
 * RFC 9112 section 6.3: chunked not final is 400; a coding not understood is 501. */
static void gate_transfer_encoding(struct gate *g, const char *v, bool truncated)
{
    bool first = !g->has_te;
    g->has_te = true;
    if (first && !truncated && strcasecmp(v, "chunked") == 0) {
        g->chunked = true;
        return;
    }
    g->chunked = false;
    if (truncated || !first) {
        gate_fault(g, 400, "bad_request", "Transfer-Encoding",
                   "one Transfer-Encoding header, \"chunked\", is accepted");
        return;
    }
    /* Which answer: a list whose last coding is chunked names codings not implemented here. */
    char list[GATE_LINE_MAX];
    snprintf(list, sizeof list, "%s", v);
    const char *last = NULL, *other = NULL;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t += strspn(t, " \t");
        size_t n = strcspn(t, " \t;");
        t[n] = '\0';
        if (!*t)
            continue;
        if (last && !other && strcasecmp(last, "chunked") != 0)
            other = last;
        last = t;
    }
    char shown[40];
    if (last && strcasecmp(last, "chunked") == 0 && other) {
        printable(other, strlen(other), shown, sizeof shown);
        gate_fault(g, 501, "not_implemented", "Transfer-Encoding",
                   "transfer coding '%s' is not implemented: only chunked is", shown);
    } else {
        gate_fault(g, 400, "bad_request", "Transfer-Encoding",
                   "the only transfer coding accepted is a single, final chunked");
    }
}

/* One header line (NUL-terminated, at most GATE_LINE_MAX - 1 bytes of it; truncated when the
 * line is longer). Mirrors evhttp: the name is what precedes the first ':' (compared without
 * case), the value skips leading spaces and loses trailing spaces and tabs, and the first of
 * several headers of one name is the one used. */
static void gate_header(struct gate *g, char *line, bool truncated)
{
    if (line[0] == ' ' || line[0] == '\t') {
        g->folded = true;
        return;
    }
    size_t name_len = 0;
    while (is_tchar((unsigned char)line[name_len]))
        name_len++;
    if (name_len == 0 || line[name_len] != ':') {
        /* No colon, or space before it (RFC 9112 section 5.1: a request must be refused). */
        gate_fault(g, 400, "bad_request", NULL, "malformed header line");
        return;
    }
    char *colon = line + name_len;
    *colon = '\0';
    char *v = colon + 1;
    for (const char *c = v; *c; c++)
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
            gate_fault(g, 400, "bad_request", NULL, "control character in header %.64s", line);
            return;
        }
    v += strspn(v, " ");
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    if (strcasecmp(line, "Content-Length") == 0) {
        if (g->has_length) {
            /* evhttp takes the first; a second that disagrees is a smuggling attempt. */
            if (strcmp(g->length_text, v) != 0 || truncated)
                g->bad_length = true;
            return;
        }
        g->has_length = true;
        snprintf(g->length_text, sizeof g->length_text, "%s", v);
        char *end;
        errno = 0;
        long long len = strtoll(v, &end, 10);
        /* 1*DIGIT (RFC 9110 section 8.6): strtoll would also take a sign. */
        g->bad_length =
            truncated || !*v || *end || errno || len < 0 || strspn(v, "0123456789") != strlen(v);
        g->length = len;
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        gate_transfer_encoding(g, v, truncated);
    } else if (strcasecmp(line, "Expect") == 0) {
        /* evhttp answers any other expectation with its own 417. */
        if (truncated || strcasecmp(v, "100-continue") != 0)
            gate_fault(g, 417, "expectation_failed", "Expect",
                       "the only expectation understood is 100-continue");
    } else if (strcasecmp(line, "Authorization") == 0) {
        if (!g->has_authz && !truncated) {
            snprintf(g->authz, sizeof g->authz, "%s", v);
            g->has_authz = true;
        }
    }
}

/* Looks at the complete lines of the head in src not looked at yet. Returns 1 when the head is
 * complete (g->scanned bytes) and accepted, 0 when more is needed, -1 when refused. */
static int gate_scan(struct gate *g, struct evbuffer *src)
{
    size_t len = evbuffer_get_length(src);
    while (g->scanned < len) {
        struct evbuffer_ptr start;
        if (evbuffer_ptr_set(src, &start, g->scanned, EVBUFFER_PTR_SET) != 0)
            break;
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(src, &start, &eol_len, EVBUFFER_EOL_CRLF);
        if (eol.pos < 0)
            break;
        size_t line_len = (size_t)eol.pos - g->scanned;
        g->scanned = (size_t)eol.pos + eol_len;
        if (g->scanned > JZ_MAX_HEAD_BYTES) {
            gate_refuse(g, src, 431, "too_large", NULL,
                        "request line and headers are over %d bytes", JZ_MAX_HEAD_BYTES);
            return -1;
        }
        char line[GATE_LINE_MAX];
        size_t n = line_len < sizeof line - 1 ? line_len : sizeof line - 1;
        if (evbuffer_copyout_from(src, &start, line, n) != (ev_ssize_t)n)
            n = 0;
        line[n] = '\0';
        if (memchr(line, '\0', n))
            gate_fault(g, 400, "bad_request", NULL, "NUL byte in the request head");
        if (!g->first_done) {
            g->first_done = true;
            g->may_have_body = method_may_have_body(line);
            gate_request_line(g, line, line_len > n);
        } else if (line_len == 0) {
            return gate_decide(g, src) ? 1 : -1;
        } else {
            gate_header(g, line, line_len > n);
        }
    }
    /* Everything in src is this head so far (what preceded it went to evhttp). */
    if (len > JZ_MAX_HEAD_BYTES) {
        gate_refuse(g, src, 431, "too_large", NULL, "request line and headers are over %d bytes",
                    JZ_MAX_HEAD_BYTES);
        return -1;
    }
    return 0;
}

/* Refuses a chunked body evhttp has begun to read (its head went to evhttp). */
static void gate_refuse_chunked(struct gate *g, struct evbuffer *src, int status, const char *msg)
{
    /* No earlier answer can be outstanding but what is still queued below: evhttp reads a
     * request only once it has answered the one before. */
    g->inflight = evbuffer_get_length(bufferevent_get_output(g->under)) > 0;
    g->mute = true;
    gate_refuse(g, src, status, status == 413 ? "too_large" : "bad_request", "body", "%s", msg);
}

/* The framing of a chunked body (RFC 9112 section 7.1), checked before evhttp reads it, for the
 * same reason as the head: evhttp would answer a malformed one, or one over its body limit, with
 * an HTML page of its own. Stricter than evhttp (no chunk extensions, no trailer fields, exactly
 * CRLF after each chunk), so that what passes means the same to both. Handles one line: the
 * size line, the CRLF after a chunk's data, or a trailer line. Returns 1 when the line passed
 * to dst, 0 when more is needed, -1 when refused. */
static int gate_chunk_line(struct gate *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(src, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
    if (eol.pos < 0) {
        if (evbuffer_get_length(src) > 64) {
            gate_refuse_chunked(g, src, 400, "malformed chunked body: a line is too long");
            return -1;
        }
        return 0;
    }
    size_t len = (size_t)eol.pos;
    char line[72];
    if (len >= sizeof line) {
        gate_refuse_chunked(g, src, 400, "malformed chunked body: a line is too long");
        return -1;
    }
    evbuffer_copyout(src, line, len);
    line[len] = '\0';
    if (g->chunk == CHUNK_DATA_END) {
        if (len != 0) {
            gate_refuse_chunked(g, src, 400, "malformed chunked body: no CRLF after a chunk");
            return -1;
        }
        g->chunk = CHUNK_SIZE;
    } else if (g->chunk == CHUNK_TRAILER) {
        if (len != 0) {
            gate_refuse_chunked(g, src, 400, "trailer fields are not accepted");
            return -1;
        }
        evbuffer_remove_buffer(src, dst, len + eol_len);
        gate_reset(g); /* the body is whole: the next request's head follows */
        return 1;
    } else {
        size_t digits = strspn(line, "0123456789abcdefABCDEF");
        if (digits == 0 || digits != len || digits > 8) {
            gate_refuse_chunked(g, src, 400, "malformed chunked body: bad chunk size line");
            return -1;
        }
        uint64_t size = strtoull(line, NULL, 16);
        g->chunk_total += size;
        if (g->chunk_total > JZ_MAX_TRANSPORT_BODY) {
            char msg[120];
            snprintf(msg, sizeof msg, "request body is over %d bytes, the limit",
                     JZ_MAX_BODY_BYTES);
            gate_refuse_chunked(g, src, 413, msg);
            return -1;
        }
        g->chunk = size ? CHUNK_DATA : CHUNK_TRAILER;
        g->body_left = size;
    }
    evbuffer_remove_buffer(src, dst, len + eol_len);
    return 1;
}

/* The filter between the connection and evhttp: what evhttp may read of what arrived. */
static enum bufferevent_filter_result gate_in(struct evbuffer *src, struct evbuffer *dst,
                                              ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                              void *ctx)
{
    struct gate *g = ctx;
    bool moved = false;
    while (evbuffer_get_length(src) > 0) {
        if (g->state == GATE_REFUSED) {
            evbuffer_drain(src, evbuffer_get_length(src));
            break;
        }
        if (g->state == GATE_HEAD) {
            int r = gate_scan(g, src);
            if (r <= 0)
                break;
            /* The head goes to evhttp whole; evhttp sets no read watermark on its
             * connections, so limit is not in the way. */
            evbuffer_remove_buffer(src, dst, g->scanned);
            moved = true;
            g->inflight = true;
            uint64_t body = g->body_left;
            enum gate_state next = g->state;
            gate_reset(g);
            if (next == GATE_CHUNKED) {
                g->state = GATE_CHUNKED;
                g->chunk = CHUNK_SIZE;
                g->chunk_total = 0;
            } else if (body) {
                g->state = GATE_BODY;
                g->body_left = body;
            }
            continue;
        }
        if (g->state == GATE_CHUNKED && g->chunk != CHUNK_DATA) {
            if (gate_chunk_line(g, src, dst) <= 0)
                break;
            moved = true;
            continue;
        }
        size_t n = evbuffer_get_length(src);
        if (n > g->body_left) /* GATE_BODY, or CHUNK_DATA */
            n = (size_t)g->body_left;
        if (limit >= 0 && n > (size_t)limit)
            n = (size_t)limit;
        if (n == 0)
            break;
        evbuffer_remove_buffer(src, dst, n);
        moved = true;
        if (limit >= 0)
            limit -= (ev_ssize_t)n;
        if ((g->body_left -= n) == 0) {
            if (g->state == GATE_BODY)
                gate_reset(g);
            else
                g->chunk = CHUNK_DATA_END;
        }
    }
    (void)mode;
    return moved ? BEV_OK : BEV_NEED_MORE;
}

/* What evhttp writes goes down to the socket (or TLS) bufferevent at once, but evhttp must not
 * hear that its reply is written until that one has handed it to the kernel: evhttp closes a
 * connection (Connection: close, errors) right after, and what would still be queued below
 * would be lost. So the filter never reports progress itself (gate_out), and the gate tells
 * evhttp when the lower buffer empties (on_under_drained). evhttp writes a reply before it
 * enables writing, and a filter only moves output while writing is enabled: on_gate_output
 * moves it as it comes. */
static void on_gate_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct gate *g = arg;
    if (g->mute && evbuffer_get_length(buf)) {
        /* Dropped, and evhttp told it is written: it then lets the connection go. */
        evbuffer_drain(buf, evbuffer_get_length(buf));
        bufferevent_trigger(g->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
    } else if (info->n_added && evbuffer_get_length(buf))
        evbuffer_add_buffer(bufferevent_get_output(g->under), buf);
}

static enum bufferevent_filter_result gate_out(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                               void *ctx)
{
    struct gate *g = ctx;
    size_t n = evbuffer_get_length(src);
    if (g->mute) {
        evbuffer_drain(src, n);
        return BEV_NEED_MORE;
    }
    if (limit >= 0 && n > (size_t)limit)
        n = (size_t)limit;
    evbuffer_remove_buffer(src, dst, n);
    (void)mode;
    return BEV_NEED_MORE;
}

/* The lower output emptied a moment ago: evhttp hears that what it wrote is written, but only if
 * that is still so. Between the drain and now, a handler may have queued more (a timer that ends
 * a chunked reply, with its last chunk, right after the head went out): evhttp would take the old
 * drain for the new data's, finish the request, and close a Connection: close connection with the
 * end of the reply still queued. That is why this is not a deferred bufferevent_trigger, which
 * runs evhttp's write callback later whatever was queued meanwhile: data queued since is written
 * later, and its own drain tells evhttp then. */
static void on_gate_written(evutil_socket_t fd, short what, void *arg)
{
    struct gate *g = arg;
    if (!gate_owned(g) || !(bufferevent_get_enabled(g->bev) & EV_WRITE))
        return; /* gone, or reading: evhttp's done-writing callback would be a stale one */
    if (evbuffer_get_length(bufferevent_get_output(g->under)) ||
        evbuffer_get_length(bufferevent_get_output(g->bev)))
        return;
    /* From the event loop, not from inside the lower bufferevent's write: evhttp may free the
     * connection in this callback (bufferevent_trigger holds a reference meanwhile). */
    bufferevent_trigger(g->bev, EV_WRITE, 0);
}

static void on_under_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct gate *g = arg;
    if (!info->n_deleted || !gate_owned(g))
        return;
    /* Progress: the filter's write timeout (evhttp's idle timeout) starts again, so that a
     * long download is not cut while it moves. */
    if (bufferevent_get_enabled(g->bev) & EV_WRITE)
        bufferevent_enable(g->bev, EV_WRITE);
    if (evbuffer_get_length(buf) == 0) {
        g->inflight = false;
        if (g->held_reply)
            gate_send_refusal(g);
        else
            event_active(g->written_ev, EV_TIMEOUT, 0);
    }
}

static void gate_free(void *ctx)
{
    struct gate *g = ctx;
    struct jz_front *f = g->front;
    /* The filter holds its reference to the lower bufferevent until after this. */
    evbuffer_remove_cb_entry(bufferevent_get_output(g->under), g->drained_cb);
    if (g->out_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(g->bev), g->out_cb);
    if (g->held_reply)
        evbuffer_free(g->held_reply);
    event_free(g->close_ev);
    event_free(g->written_ev);
    free(g);
    f->conns--;
    if (f->closed) {
        if (!f->conns)
            free(f);
        return;
    }
    if (f->paused_cap && f->conns < f->max_conns) {
        f->paused_cap = false;
        listener_update(f);
    }
    if (f->paused_fd) { /* a descriptor was just given back */
        evtimer_del(f->resume_ev);
        f->paused_fd = false;
        listener_update(f);
    }
}

/* evhttp's bevcb: the bufferevent of each new API connection. NULL makes evhttp use a plain one
 * of its own, so every failure here is counted as nothing. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    struct jz_front *f = arg;
    struct gate *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->front = f;
    gate_reset(g);
    g->close_ev = evtimer_new(base, on_gate_close, g);
    g->written_ev = event_new(base, -1, 0, on_gate_written, g);
    if (f->tls) {
        SSL *ssl = SSL_new(f->tls);
        g->under = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                        BEV_OPT_CLOSE_ON_FREE)
                       : NULL;
        if (!g->under && ssl)
            SSL_free(ssl);
    } else {
        g->under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (g->under && g->close_ev && g->written_ev)
        g->drained_cb = evbuffer_add_cb(bufferevent_get_output(g->under), on_under_drained, g);
    if (g->drained_cb)
        g->bev = bufferevent_filter_new(g->under, gate_in, gate_out, BEV_OPT_CLOSE_ON_FREE,
                                        gate_free, g);
    if (!g->bev) {
        if (g->under)
            bufferevent_free(g->under);
        if (g->close_ev)
            event_free(g->close_ev);
        if (g->written_ev)
            event_free(g->written_ev);
        free(g);
        return NULL;
    }
    /* Counted from here: gate_free gives the place back. At the cap, new clients wait in the
     * kernel's backlog until a connection closes. */
    if (++f->conns >= f->max_conns) {
        f->paused_cap = true;
        listener_update(f);
    }
    g->out_cb = evbuffer_add_cb(bufferevent_get_output(g->bev), on_gate_output, g);
    if (!g->out_cb) {
        bufferevent_free(g->bev); /* the rest goes in gate_free */
        return NULL;
    }
    return g->bev;
}

int jz_front_listen(struct jz_server *srv, struct jz_error *err)
{
    int rc = jz_front_open(srv, err);
    if (rc)
        return rc;
    struct jz_front *f = srv->front;
    char where[300];
    listen_where(&srv->cfg, where, sizeof where);
    struct evutil_addrinfo *ai = NULL;
    if ((rc = resolve_listen(srv, &ai, err)))
        return rc;
    if ((rc = jz_front_check_plain(srv, ai->ai_addr, where, "the REST API", err))) {
        evutil_freeaddrinfo(ai);
        return rc;
    }
    /* No callback yet: evhttp_bind_listener sets its own (and enables accepting). */
    struct evconnlistener *lev = evconnlistener_new_bind(
        srv->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    if (!lev)
        return jz_error_set(err, JZ_EIO, "cannot listen on %s: %s", where, strerror(errno));
    evhttp_set_bevcb(srv->http, make_bev, f);
    struct evhttp_bound_socket *sock = evhttp_bind_listener(srv->http, lev);
    if (!sock) {
        evconnlistener_free(lev);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    evconnlistener_set_error_cb(lev, on_accept_error);
    f->listener = lev;
    srv->listener = sock;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss, &sl) == 0)
        srv->bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
    listener_update(f);
    return 0;
}

void jz_front_listener_gone(struct jz_server *srv)
{
    if (!srv->front)
        return;
    srv->front->listener = NULL;
    evtimer_del(srv->front->resume_ev);
}

size_t jz_front_connections(const struct jz_server *srv, size_t *max)
{
    if (max)
        *max = srv->front ? srv->front->max_conns : 0;
    return srv->front ? srv->front->conns : 0;
}

size_t jz_front_conn_queued(struct evhttp_connection *conn)
{
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    if (!bev)
        return 0;
    size_t n = evbuffer_get_length(bufferevent_get_output(bev));
    struct bufferevent *under = bufferevent_get_underlying(bev);
    if (under)
        n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

/* --- request rates ------------------------------------------------------------------------- */

static size_t key_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h & (RATE_HASH - 1);
}

static void lru_unlink(struct jz_front *f, struct bucket *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        f->lru_head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        f->lru_tail = b->prev;
    b->prev = b->next = NULL;
}

static void lru_push(struct jz_front *f, struct bucket *b)
{
    b->next = f->lru_head;
    if (f->lru_head)
        f->lru_head->prev = b;
    f->lru_head = b;
    if (!f->lru_tail)
        f->lru_tail = b;
}

/* The bucket of key, made full when new. At JZ_RATE_MAX_KEYS the least recently used one is
 * reused: a bucket idle for burst/rate seconds is full anyway, so only a table crowded with
 * active keys loses anything, and then the oldest client gets a fresh bucket. */
static struct bucket *bucket_get(struct jz_front *f, const char *key, int64_t now)
{
    size_t h = key_hash(key);
    for (struct bucket *b = f->hash[h]; b; b = b->hnext)
        if (strcmp(b->key, key) == 0) {
            lru_unlink(f, b);
            lru_push(f, b);
            return b;
        }
    struct bucket *b;
    if (f->nbuckets >= JZ_RATE_MAX_KEYS && f->lru_tail) {
        b = f->lru_tail;
        lru_unlink(f, b);
        for (struct bucket **p = &f->hash[key_hash(b->key)]; *p; p = &(*p)->hnext)
            if (*p == b) {
                *p = b->hnext;
                break;
            }
    } else {
        b = malloc(sizeof *b);
        if (!b)
            return NULL;
        f->nbuckets++;
    }
    memset(b, 0, sizeof *b);
    snprintf(b->key, sizeof b->key, "%s", key);
    b->tokens = f->burst;
    b->last_ms = now;
    b->hnext = f->hash[h];
    f->hash[h] = b;
    lru_push(f, b);
    return b;
}

bool jz_front_rate_take(struct jz_server *srv, const char *key, int64_t *retry_after_s)
{
    struct jz_front *f = srv->front;
    if (!f || f->rate <= 0)
        return true;
    int64_t now = jz_time_mono_ms();
    struct bucket *b = bucket_get(f, key, now);
    if (!b)
        return true; /* out of memory: serve rather than refuse everyone */
    b->tokens += (double)(now - b->last_ms) * f->rate / 1000.0;
    if (b->tokens > f->burst)
        b->tokens = f->burst;
    b->last_ms = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    double wait_s = ceil((1.0 - b->tokens) / f->rate);
    *retry_after_s = wait_s < 1 ? 1 : (int64_t)wait_s;
    return false;
}

void jz_front_apply_limits(struct jz_server *srv)
{
    struct jz_front *f = srv->front;
    const struct jz_server_config *cfg = &srv->cfg;
    if (!f)
        return;
    f->rate = cfg->rate_per_s;
    f->burst = cfg->rate_burst >= 1 ? cfg->rate_burst : (f->rate > 1 ? f->rate : 1);
    f->max_streams = cfg->max_log_streams > 0 ? cfg->max_log_streams : JZ_DEFAULT_LOG_STREAMS;
    /* Buckets keep their tokens, capped at the new burst on their next refill. */
}

void jz_front_rate_limits(const struct jz_server *srv, double *per_s, double *burst)
{
    *per_s = srv->front ? srv->front->rate : 0;
    *burst = srv->front ? srv->front->burst : 0;
}

/* --- log streams --------------------------------------------------------------------------- */

bool jz_front_stream_acquire(struct jz_server *srv, const char *user, int64_t *limit)
{
    struct jz_front *f = srv->front;
    if (!f)
        return true;
    json_int_t n = json_integer_value(json_object_get(f->streams, user));
    if (n >= f->max_streams) {
        *limit = f->max_streams;
        return false;
    }
    json_object_set_new(f->streams, user, json_integer(n + 1));
    return true;
}

void jz_front_stream_release(struct jz_server *srv, const char *user)
{
    struct jz_front *f = srv->front;
    if (!f)
        return;
    json_int_t n = json_integer_value(json_object_get(f->streams, user));
    if (n > 1)
        json_object_set_new(f->streams, user, json_integer(n - 1));
    else
        json_object_del(f->streams, user);
}
