/* jazarid's shared state: the event loop, the store, the scheduler, and the modules that act on
 * them.
 * One instance per process; every module receives it explicitly (no process-wide globals). */
#ifndef JZ_SERVER_SERVER_H
#define JZ_SERVER_SERVER_H

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jazari/error.h>

#include "server/store.h"

/* Limits on what a user controls. Exceeding one is a 4xx naming the field. */
#define JZ_MAX_BODY_BYTES (1024 * 1024)       /* API limit, answered with a JSON 413 */
/* evhttp reads a whole body before any handler runs. The network front (front.h) reads each
 * request's head first: a body over JZ_MAX_PREAUTH_BODY needs a valid token before any of it is
 * read, and one over JZ_MAX_TRANSPORT_BODY is refused outright (both with a JSON error). Bodies
 * between the API limit and the transport limit are read and get read_body's JSON 413. */
#define JZ_MAX_TRANSPORT_BODY (4 * 1024 * 1024)
#define JZ_MAX_PREAUTH_BODY (64 * 1024)
#define JZ_MAX_HEAD_BYTES (64 * 1024)         /* request line and headers */
#define JZ_MAX_LIST_REPLY_BYTES (4 * 1024 * 1024) /* GET /v1/jobs stops adding jobs past this */
#define JZ_MAX_JSON_DEPTH 32
#define JZ_MAX_NAME_LEN 128
#define JZ_MAX_PATH_LEN 1024 /* paths the worker is given (its own limit) */
#define JZ_MAX_LIST_LIMIT 1000
#define JZ_MAX_TIME_LIMIT_S (30LL * 24 * 3600)
#define JZ_DEFAULT_TIME_LIMIT_S 3600
#define JZ_MAX_CPUS_PER_JOB 4096
#define JZ_MAX_METRICS_PER_JOB 256
#define JZ_MAX_METRIC_POINTS_PER_JOB 4096 /* stepped values kept as events (charts) */

struct jz_server_config {
    char listen_host[256];
    int listen_port;
    char state_dir[4096];
    char topology_path[4096]; /* "" means discover this machine */
    char plugin_dir[4096];    /* "" means the built-in plugins next to the binaries */
    char worker_path[4096];   /* jazari-worker */
    char fallback_backend[16]; /* backend for GPUs declared from XML: "cpu" or "opencl" */
    int64_t kill_grace_s;     /* TERM -> KILL grace for cancel and time limits */
    int64_t max_pending_per_user;
    char config_path[4096];   /* optional JSON configuration file */
    char agent_listen[256];   /* HOST:PORT for node agents; "" = the API's host, any port */
    int64_t node_timeout_s;   /* a node silent this long is down */
    bool no_local_node;       /* no embedded local node: jobs run on agents only */
    char local_site[64];      /* the local node's site ("" = "default") */
    /* The network front (front.h): TLS and limits on connections and requests. */
    char tls_cert[4096], tls_key[4096]; /* both set: the API and agents are served over TLS */
    bool allow_plain_http;    /* plain HTTP on an address other than loopback */
    bool hide_other_tenants;  /* everyone's queue shows other tenants' jobs anonymised */
    int64_t max_connections;  /* API connections at once; 0 = from RLIMIT_NOFILE (<= 4096) */
    int64_t idle_timeout_s;   /* an API connection silent this long is closed */
    double rate_per_s;        /* requests per token (or client address); 0 = no limit */
    double rate_burst;        /* requests allowed at once before the rate applies */
    int64_t max_log_streams;  /* log follows open at once per user */
    char run_as[64];          /* started as root: the account jazarid runs as ("" = jazari) */
    char node_dir[4096];      /* the separate local agent's folder ("" = STATE-DIR-node) */
    int64_t min_free_bytes;   /* free disk a node keeps; past it the biggest writer fails */
    /* Limits on what one job writes (0: none), sent to its node with each launch. */
    int64_t log_max_bytes, output_max_bytes, pids_max;
    int64_t params_max_bytes; /* a job's parameters, as JSON (0: only the body limit) */
    int64_t retention_s;      /* finished jobs are purged this long after their end (0: kept) */
    char default_unix_user[64]; /* account of jobs whose user has none ("" = such jobs fail) */
    char webhook_allow[1024]; /* address ranges webhooks may reach beside the default policy
                                 (webhooks.h, jz_webhook_address_check); "" = none */
    char port_file[4096];     /* the bound port is written here once listening ("" = nowhere) */
    int log_level;            /* enum jz_log_sev */
    char log_file[4096];      /* "" = stderr, a path, "journal" or "journal:SOCKET" */
};

struct jz_auth;
struct jz_plugins;
struct jz_jobs;
struct jz_nodes;
struct jz_ledger;
struct jz_sched;
struct jz_events;
struct jz_tenants;
struct jz_reservations;

struct jz_front;
struct jz_service_metrics;
struct jz_config_args;

struct jz_server {
    struct jz_server_config cfg;
    struct jz_front *front; /* the network front (front.h) */
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    struct jz_store *store;
    struct jz_auth *auth;
    struct jz_plugins *plugins;
    struct jz_jobs *jobs;
    struct jz_sched *sched; /* the one source of truth for what runs where and what is free */
    struct jz_nodes *nodes;
    struct jz_ledger *ledger;
    struct jz_events *events; /* job events and webhooks (events.h) */
    struct jz_tenants *tenants; /* tenant objects (tenants.h) */
    struct jz_reservations *reservations; /* booked compute slots (reservations.h) */
    struct jz_service_metrics *metrics; /* /metrics and /healthz (service_metrics.h); NULL
                                           outside jz_http_start .. jz_http_stop */
    json_t *config; /* the parsed configuration file (an object; {} when none) */
    struct jz_config_args *args; /* the command line, which wins over the file on reloads */
    int bound_port;
    struct event *sigint_ev, *sigterm_ev, *sighup_ev, *sigusr1_ev;
    /* The local node agent running as a process of its own (privsep.h), or -1/0. */
    int local_agent_fd;
    pid_t local_agent_pid;
    bool stopping;     /* SIGTERM/SIGINT: draining, then exit */
    bool store_failed; /* a batch was lost: acknowledge nothing more, exit */

    /* Group commit: replies wait here until the store batch holding their change is durable;
     * sealed batches wait in the waiters FIFO (see main.c). */
    struct event *commit_ev;
    struct event *store_done_ev;
    struct jz_deferred_reply *deferred_head, **deferred_tail;
    struct jz_batch_waiter *waiters_head, **waiters_tail;
};

/* Asks for a group commit at the end of this loop iteration (idempotent). */
void jz_server_request_commit(struct jz_server *srv);

#endif
