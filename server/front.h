/* jazarid's network front: what stands between the network and the REST API and agent
 * listeners.
 *  - TLS (OpenSSL through libevent's bufferevent_openssl) when --tls-cert/--tls-key are given;
 *    plain HTTP only on loopback unless --allow-plain-http.
 *  - A cap on API connections: accepting pauses at the cap and resumes as connections close;
 *    when descriptors run out (EMFILE), accepting pauses on a short timer instead of spinning.
 *  - A gate under evhttp that reads each request's head before evhttp sees it: a body over
 *    JZ_MAX_PREAUTH_BODY needs a valid token before any of it is read, one over
 *    JZ_MAX_TRANSPORT_BODY is refused, both with a JSON error and the connection closed.
 *  - Request rates per user token, or per client address for unauthenticated requests (token
 *    buckets in a bounded table), and concurrent log streams per user.
 *
 * Conventions for the whole module: it runs on jazarid's event-loop thread only; srv->front is
 * created by the first of jz_front_open's callers (the agent listener is opened before the API)
 * and freed by jz_front_close. */
#ifndef JZ_SERVER_FRONT_H
#define JZ_SERVER_FRONT_H

#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/server.h"

#define JZ_DEFAULT_MAX_CONNECTIONS 4096
#define JZ_DEFAULT_IDLE_TIMEOUT_S 60
#define JZ_DEFAULT_RATE_PER_S 50.0
#define JZ_DEFAULT_RATE_BURST 200.0
#define JZ_DEFAULT_LOG_STREAMS 16
#define JZ_RATE_MAX_KEYS 16384 /* tokens and addresses tracked at once (least recent evicted) */

/* Creates srv->front from srv->cfg when there is none yet: raises RLIMIT_NOFILE's soft limit to
 * the hard one, works out the connection cap, and loads the TLS certificate and key. Idempotent.
 * Returns 0, or an error naming the option at fault. */
int jz_front_open(struct jz_server *srv, struct jz_error *err);
/* Frees srv->front (NULL accepted); the API listener must be gone (jz_http_stop). */
void jz_front_close(struct jz_server *srv);

/* The server TLS context, or NULL when TLS is off (borrowed; SSL_new takes its own reference). */
SSL_CTX *jz_front_tls(const struct jz_server *srv);

/* Checks that serving on sa (plain when TLS is off) is allowed: loopback, TLS on, or
 * --allow-plain-http. what names the listener in the error ("the REST API", "node agents"). */
int jz_front_check_plain(const struct jz_server *srv, const struct sockaddr *sa, const char *where,
                         const char *what, struct jz_error *err);

/* Binds srv->http to cfg.listen_host:listen_port through the front (TLS, the gate, the
 * connection cap, pausing on EMFILE) and sets srv->listener and srv->bound_port. */
int jz_front_listen(struct jz_server *srv, struct jz_error *err);
/* Forgets the API listener (evhttp_del_accept_socket frees it) and its resume timer. */
void jz_front_listener_gone(struct jz_server *srv);

/* Takes one request from the bucket of key ("u:NAME" for a user, "a:ADDRESS" for a client
 * address). True when allowed; false with *retry_after_s (>= 1) when over the rate. Always true
 * when rate limiting is off. */
bool jz_front_rate_take(struct jz_server *srv, const char *key, int64_t *retry_after_s);
/* The limits in force, for messages. */
/* (Re)applies srv->cfg's rate and stream limits (start-up and reloads). */
void jz_front_apply_limits(struct jz_server *srv);
void jz_front_rate_limits(const struct jz_server *srv, double *per_s, double *burst);

/* Log streams per user: acquire before opening one (false when user is at the limit, whose value
 * goes into *limit), release when it ends. */
bool jz_front_stream_acquire(struct jz_server *srv, const char *user, int64_t *limit);
void jz_front_stream_release(struct jz_server *srv, const char *user);

/* Bytes written to an API connection and not yet handed to the kernel (or to TLS), through the
 * gate: what a streaming handler checks to wait for a slow reader. */
size_t jz_front_conn_queued(struct evhttp_connection *conn);

/* API connections open now, and the cap. */
size_t jz_front_connections(const struct jz_server *srv, size_t *max);

#endif
