/* Job-end webhooks: a signed POST of a job's record to the URL its owner gave at submission,
 * retried with exponential back-off until the receiver answers 2xx, refuses for good (a 4xx
 * other than 408 and 429), or the attempts run out. Deliveries live in memory only: a restart
 * forgets the ones still pending (docs/events.md).
 *
 * Conventions: everything runs on jazarid's event-loop thread; strings passed in are copied;
 * nothing here keeps a pointer the caller gave it. */
#ifndef JZ_SERVER_WEBHOOKS_H
#define JZ_SERVER_WEBHOOKS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

#define JZ_WEBHOOK_MAX_URL 2048  /* bytes of a notify URL */
#define JZ_WEBHOOK_SECRET_MIN 16 /* bytes of a notify secret */
#define JZ_WEBHOOK_SECRET_MAX 256
#define JZ_WEBHOOK_SIGNATURE_LEN 71  /* "sha256=" and 64 hex digits */
#define JZ_WEBHOOK_ATTEMPTS 8        /* the first try and 7 retries */
#define JZ_WEBHOOK_BACKOFF_MAX_S 300 /* retries wait 1, 2, 4 ... s, never more than this */
#define JZ_WEBHOOK_TIMEOUT_S 10      /* one attempt: connect, send, read the answer's head */
#define JZ_WEBHOOK_MAX_PENDING 1024  /* deliveries waiting or in flight; more are dropped */
#define JZ_WEBHOOK_MAX_PENDING_PER_USER 128 /* the same for one user's jobs */
#define JZ_WEBHOOK_MAX_INFLIGHT 64   /* connections open at once; the others wait their turn */
#define JZ_WEBHOOK_MAX_BODY (1024 * 1024)

struct jz_webhooks;

/* Counts since open, for /metrics and tests. */
struct jz_webhook_stats {
    uint64_t delivered; /* a 2xx answer */
    uint64_t failed;    /* given up: refused, or out of attempts */
    uint64_t blocked;   /* given up: the destination's address is outside the policy */
    uint64_t dropped;   /* never tried: over JZ_WEBHOOK_MAX_PENDING or the user's share of
                           it (JZ_WEBHOOK_MAX_PENDING_PER_USER), or unusable */
    uint64_t attempts;  /* every try, the first included */
    size_t pending;     /* waiting or in flight now */
};

/* Deliveries on base (borrowed; it must outlive the module). allow_list: the ranges allowed
 * beside the default policy (jz_webhook_address_check), borrowed and read again at each attempt
 * so that a reload's new list applies (jazarid passes its config's webhook_allow); NULL: none.
 * *out is the caller's (jz_webhooks_close), written only on success. */
int jz_webhooks_open(struct event_base *base, const char *allow_list, struct jz_webhooks **out,
                     struct jz_error *err);
/* Abandons what is still pending (logged) and frees everything. NULL accepted. */
void jz_webhooks_close(struct jz_webhooks *wh);

/* Queues one delivery: body (len bytes, JSON) POSTed to url, signed with secret. delivery is
 * its X-Jazari-Delivery header (the same on every retry, so that a receiver can drop repeats);
 * job is for the log; user (the job's owner) is whose share of the queue it takes. Each attempt
 * resolves the host and connects only to an address the policy allows; a destination outside
 * it fails for good (counted as blocked). Returns false (logged, counted as dropped) when the
 * URL does not parse, or the queue or the user's share of it is full. */
bool jz_webhooks_send(struct jz_webhooks *wh, const char *url, const char *secret, const char *body,
                      size_t len, const char *delivery, int64_t job, const char *user);

void jz_webhooks_stats(const struct jz_webhooks *wh, struct jz_webhook_stats *out);

/* True when url is one jazarid can deliver to: http:// or https://, a host, an optional port
 * (1-65535), an optional path and query, no user name or password, at most JZ_WEBHOOK_MAX_URL
 * bytes. Otherwise false with why (a sentence, may be NULL) saying what is wrong. For the
 * submission check too. */
bool jz_webhook_url_ok(const char *url, char *why, size_t len);

/* The destination policy (docs/events.md, "Webhooks"): by default a webhook may not reach
 * loopback, unspecified, link-local, private (RFC 1918), carrier-grade NAT, unique local,
 * site-local, multicast or broadcast addresses, nor the IPv4-mapped, IPv4-compatible and NAT64
 * forms of those; allow_list ("CIDR[,CIDR...]", an address alone meaning just it; NULL or ""
 * for none) names ranges allowed even so. jz_webhook_address_check says why not in why (may be
 * NULL); a list that does not parse allows nothing more. */
struct sockaddr;
bool jz_webhook_address_check(const struct sockaddr *sa, const char *allow_list, char *why,
                              size_t len);
bool jz_webhook_address_allowed(const struct sockaddr *sa, const char *allow_list);
/* True when list is a usable allow list (NULL and "" are: nothing allowed); otherwise false with
 * why (may be NULL). For --webhook-allow. */
bool jz_webhook_allow_list_ok(const char *list, char *why, size_t len);
/* jz_webhook_url_ok, and when the host is an IP literal, the policy on it too (a name is checked
 * once resolved, at each delivery). For the submission check. */
bool jz_webhook_url_allowed(const char *url, const char *allow_list, char *why, size_t len);

/* The same check, splitting the URL for a delivery (out may be NULL: checking only). On
 * success out->target (path and query, "/" at least) is malloc'd, the caller's to free. */
struct jz_webhook_url {
    bool https;
    int port;                /* the scheme's default when the URL has none */
    char host[256];          /* for connecting: an IPv6 literal without its brackets */
    char host_header[272];   /* as the Host header says it */
    char *target;
};
bool jz_webhook_url_parse(const char *url, struct jz_webhook_url *out, char *why, size_t len);

/* "sha256=" and the lowercase hex HMAC-SHA256 of body under secret, into out (NUL-terminated):
 * the X-Jazari-Signature-256 header. */
void jz_webhook_sign(const char *secret, const void *body, size_t len,
                     char out[JZ_WEBHOOK_SIGNATURE_LEN + 1]);

/* How long retry n (1 for the first retry) waits, in seconds: 2^(n-1), at most
 * JZ_WEBHOOK_BACKOFF_MAX_S. */
int jz_webhook_backoff_s(int retry);

#endif
