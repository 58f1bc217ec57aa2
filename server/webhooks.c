/* Job-end webhooks (webhooks.h): one timer per delivery drives it through its attempts; each
 * attempt resolves the host (evdns, asynchronously), checks every address it got against the
 * destination policy, and opens one evhttp client connection (through OpenSSL for https) to the
 * numeric address that passed, so that a name cannot lead the request somewhere the policy
 * forbids; the Host header and TLS (SNI, certificate check) stay on the name. The connection is
 * freed on the timer after its answer, never inside evhttp's own callback (which still uses it
 * when the callback returns). */
#include <arpa/inet.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/tls.h"
#include "common/version.h"
#include "server/webhooks.h"

#define MAX_ANSWER_BYTES (64 * 1024) /* what a receiver may say back; its body is not read */
#define INFLIGHT_WAIT_S 1            /* a delivery over JZ_WEBHOOK_MAX_INFLIGHT looks again */

enum delivery_state { WAITING, IN_FLIGHT, ANSWERED };

struct delivery {
    struct jz_webhooks *wh;
    struct delivery *prev, *next;
    enum delivery_state state;
    struct event *timer; /* next attempt, or the end of the one just answered */
    struct evhttp_connection *conn;
    struct evdns_getaddrinfo_request *lookup; /* resolving the host now */
    bool https;
    bool blocked;   /* the last attempt found no address the policy allows */
    char host[256]; /* the URL's: an IPv6 literal without its brackets */
    char addr[INET6_ADDRSTRLEN]; /* what the attempt connects to */
    char user[128];              /* whose share of the queue it takes */
    char host_header[272];
    int port;
    char *target; /* path and query */
    char *body;
    size_t len;
    char signature[JZ_WEBHOOK_SIGNATURE_LEN + 1];
    char id[64];
    int64_t job;
    int tries;
    int status;        /* the last answer's status; 0 when there was none */
    char failure[200]; /* why there was none */
};

struct jz_webhooks {
    struct event_base *base;
    const char *allow; /* the ranges allowed beside the default policy (borrowed) */
    struct evdns_base *dns; /* made on the first host name (numeric hosts need none) */
    SSL_CTX *tls;           /* made on the first https URL */
    struct delivery *head;
    size_t inflight;
    struct jz_webhook_stats stats;
};

/* --- URLs ---------------------------------------------------------------------------------- */

/* Parses url into d's host, port, scheme and target (webhook_url.c checks it). */
static bool parse_url(const char *url, struct delivery *d, char *why, size_t len)
{
    struct jz_webhook_url u;
    if (!jz_webhook_url_parse(url, &u, why, len))
        return false;
    d->https = u.https;
    d->port = u.port;
    snprintf(d->host, sizeof d->host, "%s", u.host);
    snprintf(d->host_header, sizeof d->host_header, "%s", u.host_header);
    d->target = u.target;
    return true;
}

void jz_webhook_sign(const char *secret, const void *body, size_t len,
                     char out[JZ_WEBHOOK_SIGNATURE_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac, &maclen);
    int n = snprintf(out, JZ_WEBHOOK_SIGNATURE_LEN + 1, "sha256=");
    for (unsigned int i = 0; i < maclen && n + 2 <= JZ_WEBHOOK_SIGNATURE_LEN; i++)
        n += snprintf(out + n, (size_t)(JZ_WEBHOOK_SIGNATURE_LEN + 1 - n), "%02x", mac[i]);
}

int jz_webhook_backoff_s(int retry)
{
    int s = 1;
    for (int i = 1; i < retry && s < JZ_WEBHOOK_BACKOFF_MAX_S; i++)
        s *= 2;
    return s < JZ_WEBHOOK_BACKOFF_MAX_S ? s : JZ_WEBHOOK_BACKOFF_MAX_S;
}

/* --- deliveries ---------------------------------------------------------------------------- */

static void delivery_free(struct delivery *d)
{
    struct jz_webhooks *wh = d->wh;
    if (d->lookup) /* its callback comes later with EVUTIL_EAI_CANCEL, and ignores d */
        evdns_getaddrinfo_cancel(d->lookup);
    if (d->conn)
        evhttp_connection_free(d->conn);
    if (d->state != WAITING)
        wh->inflight--;
    if (d->timer)
        event_free(d->timer);
    *(d->prev ? &d->prev->next : &wh->head) = d->next;
    if (d->next)
        d->next->prev = d->prev;
    wh->stats.pending--;
    free(d->target);
    free(d->body);
    free(d);
}

static void arm(struct delivery *d, int seconds)
{
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    evtimer_add(d->timer, &tv);
}

static void on_answer(struct evhttp_request *req, void *arg)
{
    struct delivery *d = arg;
    d->status = req ? evhttp_request_get_response_code(req) : 0;
    if (d->status == 0 && !d->failure[0])
        snprintf(d->failure, sizeof d->failure, "no answer");
    d->state = ANSWERED;
    event_active(d->timer, EV_TIMEOUT, 0);
}

/* Why an attempt got no answer (called before on_answer). */
static void on_request_error(enum evhttp_request_error e, void *arg)
{
    struct delivery *d = arg;
    const char *what = e == EVREQ_HTTP_TIMEOUT         ? "timed out"
                       : e == EVREQ_HTTP_EOF           ? "the connection closed without an answer"
                       : e == EVREQ_HTTP_DATA_TOO_LONG ? "the answer was too long"
                                                       : "connection failed";
    char tls[160] = "";
    struct bufferevent *bev = d->conn ? evhttp_connection_get_bufferevent(d->conn) : NULL;
    if (d->https && bev) {
        unsigned long code = bufferevent_get_openssl_error(bev);
        if (code)
            jz_tls_error_text(bufferevent_openssl_get_ssl(bev), code, tls, sizeof tls);
    }
    snprintf(d->failure, sizeof d->failure, "%s%s%s", what, tls[0] ? ": TLS: " : "", tls);
}

static struct bufferevent *connect_bev(struct delivery *d)
{
    struct jz_webhooks *wh = d->wh;
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (!d->https)
        return bufferevent_socket_new(wh->base, -1, opts);
    struct jz_error err = {0};
    if (!wh->tls && jz_tls_client_ctx(NULL, &wh->tls, &err)) {
        snprintf(d->failure, sizeof d->failure, "TLS: %s", err.msg);
        return NULL;
    }
    SSL *ssl = jz_tls_client_ssl(wh->tls, d->host, &err);
    if (!ssl) {
        snprintf(d->failure, sizeof d->failure, "TLS: %s", err.msg);
        return NULL;
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(wh->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
    if (!bev)
        SSL_free(ssl);
    else /* a receiver that closes without close_notify still gave its answer */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* The attempt ends without an answer: on the timer, as after one (d->failure says why). */
static void attempt_failed(struct delivery *d)
{
    if (!d->failure[0])
        snprintf(d->failure, sizeof d->failure, "out of memory");
    d->state = ANSWERED;
    d->status = 0;
    event_active(d->timer, EV_TIMEOUT, 0);
}

/* Sends the POST to d->addr, which the policy allows. False (d->failure set) when it cannot. */
static bool send_request(struct delivery *d)
{
    struct jz_webhooks *wh = d->wh;
    struct bufferevent *bev = connect_bev(d);
    if (!bev)
        return false;
    /* A numeric address: evhttp resolves nothing, so it connects where the policy said. */
    d->conn =
        evhttp_connection_base_bufferevent_new(wh->base, NULL, bev, d->addr, (ev_uint16_t)d->port);
    if (!d->conn) {
        bufferevent_free(bev);
        return false;
    }
    evhttp_connection_set_timeout(d->conn, JZ_WEBHOOK_TIMEOUT_S);
    evhttp_connection_set_max_headers_size(d->conn, MAX_ANSWER_BYTES);
    evhttp_connection_set_max_body_size(d->conn, MAX_ANSWER_BYTES);
    struct evhttp_request *req = evhttp_request_new(on_answer, d);
    if (!req)
        return false;
    evhttp_request_set_error_cb(req, on_request_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char agent[64];
    snprintf(agent, sizeof agent, "jazarid/%s", jz_version());
    evhttp_add_header(h, "Host", d->host_header);
    evhttp_add_header(h, "User-Agent", agent);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "X-Jazari-Event", "job.ended");
    evhttp_add_header(h, "X-Jazari-Delivery", d->id);
    evhttp_add_header(h, "X-Jazari-Signature-256", d->signature);
    evhttp_add_header(h, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(req), d->body, d->len);
    wh->stats.attempts++;
    /* On failure evhttp_make_request frees req. */
    if (evhttp_make_request(d->conn, req, EVHTTP_REQ_POST, d->target) != 0) {
        snprintf(d->failure, sizeof d->failure, "the request could not be sent");
        return false;
    }
    return true;
}

/* Picks the first of the host's addresses that the policy allows into d->addr; false (blocked,
 * d->failure saying why) when none is. */
static bool pick_address(struct delivery *d, const struct evutil_addrinfo *ai)
{
    char first[INET6_ADDRSTRLEN + 8] = "", why[160] = "";
    for (; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        const void *raw =
            ai->ai_family == AF_INET
                ? (const void *)&((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr
                : (const void *)&((const struct sockaddr_in6 *)(const void *)ai->ai_addr)
                      ->sin6_addr;
        char text[INET6_ADDRSTRLEN];
        if (!evutil_inet_ntop(ai->ai_family, raw, text, sizeof text))
            continue;
        if (jz_webhook_address_check(ai->ai_addr, d->wh->allow, first[0] ? NULL : why,
                                     sizeof why)) {
            snprintf(d->addr, sizeof d->addr, "%s", text);
            return true;
        }
        if (!first[0])
            snprintf(first, sizeof first, "%s", text);
    }
    d->blocked = true;
    if (!first[0])
        snprintf(d->failure, sizeof d->failure, "%s has no IPv4 or IPv6 address", d->host);
    else if (strcmp(first, d->host) == 0)
        snprintf(d->failure, sizeof d->failure, "blocked: %s is %s", d->host, why);
    else
        snprintf(d->failure, sizeof d->failure, "blocked: %s resolves to %s, %s", d->host, first,
                 why);
    return false;
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL) /* the delivery is gone */
        return;
    struct delivery *d = arg;
    d->lookup = NULL;
    bool ok = false;
    if (result != 0)
        snprintf(d->failure, sizeof d->failure, "cannot resolve %s: %s", d->host,
                 evutil_gai_strerror(result));
    else
        ok = pick_address(d, res) && send_request(d);
    if (res)
        evutil_freeaddrinfo(res);
    if (!ok)
        attempt_failed(d);
}

/* Starts an attempt: resolves the host (at once for an IP literal), then on_resolved. */
static void start_attempt(struct delivery *d)
{
    struct jz_webhooks *wh = d->wh;
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP};
    if (jz_tls_host_is_ip(d->host)) {
        struct evutil_addrinfo *res = NULL;
        hints.ai_flags = EVUTIL_AI_NUMERICHOST;
        int rc = evutil_getaddrinfo(d->host, NULL, &hints, &res);
        on_resolved(rc, res, d);
        return;
    }
    if (!wh->dns)
        wh->dns = evdns_base_new(wh->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                               EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!wh->dns) {
        snprintf(d->failure, sizeof d->failure, "no DNS resolver (/etc/resolv.conf?)");
        attempt_failed(d);
        return;
    }
    /* The callback may come at once (the hosts file, an error): it clears d->lookup itself, and
     * evdns_getaddrinfo then returns NULL. */
    struct evdns_getaddrinfo_request *q =
        evdns_getaddrinfo(wh->dns, d->host, NULL, &hints, on_resolved, d);
    if (q)
        d->lookup = q;
}

/* After an attempt: done, given up, or the next try scheduled. */
static void attempt_over(struct delivery *d)
{
    struct jz_webhooks *wh = d->wh;
    int st = d->status;
    if (st >= 200 && st < 300) {
        wh->stats.delivered++;
        jz_log_info("webhooks", "job %lld: delivery %s to %s%s answered %d (try %d)",
                    (long long)d->job, d->id, d->host_header, d->target, st, d->tries);
        delivery_free(d);
        return;
    }
    /* A redirect is not followed (the signature is for this URL); a 4xx says the receiver will
     * not take it, except for 408 (timeout) and 429 (rate limit), which ask for a retry. */
    bool final = st >= 300 && st < 500 && st != 408 && st != 429;
    char what[240];
    if (st)
        snprintf(what, sizeof what, "answered %d", st);
    else
        snprintf(what, sizeof what, "%s", d->failure);
    if (d->blocked) { /* the same address would be refused again: no retry */
        wh->stats.blocked++;
        jz_log_warn("webhooks", "job %lld: delivery %s to %s%s %s; not retried",
                    (long long)d->job, d->id, d->host_header, d->target, what);
        delivery_free(d);
        return;
    }
    if (final || d->tries >= JZ_WEBHOOK_ATTEMPTS) {
        wh->stats.failed++;
        jz_log_warn("webhooks", "job %lld: delivery %s to %s%s %s; giving up after %d %s",
                    (long long)d->job, d->id, d->host_header, d->target, what, d->tries,
                    d->tries == 1 ? "try" : "tries");
        delivery_free(d);
        return;
    }
    int wait = jz_webhook_backoff_s(d->tries);
    jz_log_info("webhooks", "job %lld: delivery %s to %s%s %s (try %d of %d); retrying in %d s",
                (long long)d->job, d->id, d->host_header, d->target, what, d->tries,
                JZ_WEBHOOK_ATTEMPTS, wait);
    d->state = WAITING;
    d->status = 0;
    d->failure[0] = '\0';
    wh->inflight--;
    arm(d, wait);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct delivery *d = arg;
    struct jz_webhooks *wh = d->wh;
    if (d->state == ANSWERED) {
        if (d->conn)
            evhttp_connection_free(d->conn);
        d->conn = NULL;
        attempt_over(d);
        return;
    }
    if (wh->inflight >= JZ_WEBHOOK_MAX_INFLIGHT) {
        arm(d, INFLIGHT_WAIT_S);
        return;
    }
    d->state = IN_FLIGHT;
    wh->inflight++;
    d->tries++; /* a try even when no POST goes out (no address, say): it is retried */
    d->failure[0] = '\0';
    start_attempt(d);
}

static bool drop(struct jz_webhooks *wh, struct delivery *d, int64_t job, const char *delivery,
                 const char *why)
{
    wh->stats.dropped++;
    jz_log_warn("webhooks", "job %lld: delivery %s dropped: %s", (long long)job, delivery, why);
    if (d) {
        free(d->target);
        free(d->body);
        free(d);
    }
    return false;
}

/* How many deliveries user has pending (at most JZ_WEBHOOK_MAX_PENDING to look at). */
static size_t pending_of(const struct jz_webhooks *wh, const char *user)
{
    size_t n = 0;
    for (const struct delivery *d = wh->head; d; d = d->next)
        n += strcmp(d->user, user) == 0;
    return n;
}

bool jz_webhooks_send(struct jz_webhooks *wh, const char *url, const char *secret, const char *body,
                      size_t len, const char *delivery, int64_t job, const char *user)
{
    if (!user)
        user = "";
    if (wh->stats.pending >= JZ_WEBHOOK_MAX_PENDING)
        return drop(wh, NULL, job, delivery, "too many deliveries are pending already");
    /* One user's jobs (a large array pointing at a dead receiver, say) may not take the whole
     * queue from everyone else's. */
    if (pending_of(wh, user) >= JZ_WEBHOOK_MAX_PENDING_PER_USER) {
        char why[200];
        snprintf(why, sizeof why, "user %.64s has %d deliveries pending already (the most one "
                 "user may have)", user, JZ_WEBHOOK_MAX_PENDING_PER_USER);
        return drop(wh, NULL, job, delivery, why);
    }
    char why[160];
    struct delivery *d = calloc(1, sizeof *d);
    if (!d)
        return drop(wh, NULL, job, delivery, "out of memory");
    if (!parse_url(url, d, why, sizeof why))
        return drop(wh, d, job, delivery, why);
    if (!secret)
        return drop(wh, d, job, delivery, "the job has no notify secret");
    if (len > JZ_WEBHOOK_MAX_BODY)
        return drop(wh, d, job, delivery, "the record is over the body limit");
    d->body = malloc(len ? len : 1);
    d->timer = d->body ? evtimer_new(wh->base, on_timer, d) : NULL;
    if (!d->timer)
        return drop(wh, d, job, delivery, "out of memory");
    d->wh = wh;
    memcpy(d->body, body, len);
    d->len = len;
    jz_webhook_sign(secret, body, len, d->signature);
    snprintf(d->id, sizeof d->id, "%s", delivery);
    d->job = job;
    snprintf(d->user, sizeof d->user, "%s", user);
    d->next = wh->head;
    if (wh->head)
        wh->head->prev = d;
    wh->head = d;
    wh->stats.pending++;
    event_active(d->timer, EV_TIMEOUT, 0);
    return true;
}

void jz_webhooks_stats(const struct jz_webhooks *wh, struct jz_webhook_stats *out)
{
    *out = wh->stats;
}

int jz_webhooks_open(struct event_base *base, const char *allow_list, struct jz_webhooks **out,
                     struct jz_error *err)
{
    struct jz_webhooks *wh = calloc(1, sizeof *wh);
    if (!wh)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    wh->base = base;
    wh->allow = allow_list;
    *out = wh;
    return 0;
}

void jz_webhooks_close(struct jz_webhooks *wh)
{
    if (!wh)
        return;
    if (wh->head)
        jz_log_warn("webhooks", "stopping with %zu deliveries pending: they are not sent",
                    wh->stats.pending);
    while (wh->head)
        delivery_free(wh->head);
    if (wh->dns)
        evdns_base_free(wh->dns, 1);
    SSL_CTX_free(wh->tls);
    free(wh);
}
