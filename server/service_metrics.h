/* jazarid's Prometheus metrics and health: its families in a registry (metrics.h), the hooks
 * that the HTTP router and the job table call when something happens, the gauges computed from
 * the job table, the scheduler and the nodes at each scrape, and what GET /healthz reports.
 * docs/metrics.md describes every family.
 *
 * Every hook accepts a NULL `sm` and then does nothing: the registry lives from jz_http_start to
 * jz_http_stop (http.c), and jobs that end while the service shuts down are not exported. */
#ifndef JZ_SERVER_SERVICE_METRICS_H
#define JZ_SERVER_SERVICE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

struct jz_server;
struct jz_service_metrics;

/* A reply waiting this long for its store batch, while the disk is not full, means the store's
 * writer is stuck (a batch is durable in milliseconds; the writer retries a locked database for
 * about a minute before jazarid gives up): /healthz says "failing". */
#define JZ_HEALTH_STORE_STUCK_S 10

/* Registers the families; *out is owned by the caller (jz_service_metrics_close). */
int jz_service_metrics_open(struct jz_service_metrics **out, struct jz_error *err);
void jz_service_metrics_close(struct jz_service_metrics *sm); /* NULL accepted */

/* --- hooks (loop thread) ------------------------------------------------------------------- */
/* A reply was sent: route is the route table's pattern ("v1/jobs/" then a star), NULL when no route
 * matched; method an evhttp_cmd_type; start_us when the request arrived (jz_time_mono_us). */
void jz_observe_http(struct jz_service_metrics *sm, const char *route, int method, int status,
                     int64_t start_us);
/* A reply now waits for the store batch holding its change (group commit) ... */
void jz_observe_reply_deferred(struct jz_service_metrics *sm);
/* ... and that batch is durable (or failed): it waited since deferred_us. */
void jz_observe_reply_committed(struct jz_service_metrics *sm, int64_t deferred_us);
/* ... or it will never be sent (jazarid stops). */
void jz_observe_reply_dropped(struct jz_service_metrics *sm);
/* A scheduler pass (full: fair share and every reason refreshed) that began at start_us. */
void jz_observe_sched_pass(struct jz_service_metrics *sm, bool full, int64_t start_us);
void jz_observe_job_submitted(struct jz_service_metrics *sm, const char *tenant);
/* A job's first run was placed wait_s after its submission; class NULL: the default. */
void jz_observe_job_started(struct jz_service_metrics *sm, const char *tenant, const char *cls,
                            double wait_s);
/* A job ended in state (jz_job_state_name); ran_s < 0 when its last run never started. */
void jz_observe_job_finished(struct jz_service_metrics *sm, const char *plugin, const char *state,
                             double ran_s);
void jz_observe_preemption(struct jz_service_metrics *sm);

/* --- health -------------------------------------------------------------------------------- */
struct jz_health {
    const char *status;          /* "ok", "degraded" or "failing" (static) */
    const char *store;           /* "ok", "full", "stuck" or "failed" (static) */
    size_t nodes_up, nodes_down; /* down: silent or revoked (drained nodes are up) */
    int http_status;             /* 200, or 503 when failing */
};
/* What GET /healthz says: failing when the store lost a batch or its writer is stuck; degraded
 * when its disk is full (reads only), a node is down, or no node is up. */
void jz_service_health(struct jz_server *srv, struct jz_health *h);

#endif
