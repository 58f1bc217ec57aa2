/* jazarid's metric families, their hooks, the gauges computed at each scrape, GET /metrics, and
 * the health summary of GET /healthz (see service_metrics.h, docs/metrics.md). */
#include "server/service_metrics.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jazari/kernels.h>
#include <jazari/plugin.h>

#include "common/json.h"
#include "common/time.h"
#include "common/version.h"
#include "server/api.h"
#include "server/events.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/metrics.h"
#include "server/nodes.h"
#include "server/server.h"

/* Seconds. Requests and scheduler passes are sub-millisecond to seconds; waits and runs are
 * seconds to weeks. */
static const double http_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double pass_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
static const double wait_buckets[] = {0.5,  1,    5,    15,    30,    60,    120,    300,   600,
                                      1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800};
static const double run_buckets[] = {1,    10,    60,    300,   900,    1800,   3600,
                                     7200, 14400, 43200, 86400, 259200, 604800, 2592000};

/* Label sets each family keeps (metrics.h folds the rest into "_other"). The gauges computed at
 * scrape are emptied again once rendered, so their caps cost memory only during a scrape. */
#define MAX_TENANT_SERIES 1024
#define MAX_NODE_SERIES 20000
#define MAX_GPU_SERIES 65536

struct jz_service_metrics {
    struct jz_metrics *reg;
    /* events */
    struct jz_metric *http_requests, *http_duration, *commit_wait, *sched_pass, *submitted,
        *job_wait, *job_run, *finished, *preemptions;
    /* job events and webhooks (events.h): counted there, carried over at each scrape */
    struct jz_metric *job_events, *streams_dropped, *webhook_deliveries, *webhook_attempts,
        *streams, *webhooks_pending;
    struct jz_events_stats events_seen; /* what earlier scrapes carried over */
    /* computed at scrape */
    struct jz_metric *build_info, *jobs, *queue, *node_up, *node_gpus, *node_cores,
        *node_cores_free, *node_running, *gpu_job_info, *agents, *deferred;
    /* group-commit progress, for /healthz */
    size_t outstanding;       /* replies waiting for their batch */
    int64_t last_progress_us; /* the last one sent, or when the first began waiting */
};

/* The families, in the order /metrics lists them. */
static const struct family_def {
    size_t offset; /* of the struct jz_metric * in jz_service_metrics */
    struct jz_metric_spec spec;
} families[] = {
#define F(field) offsetof(struct jz_service_metrics, field)
#define H(b) .buckets = (b), .nbuckets = sizeof(b) / sizeof(b)[0]
    {F(build_info),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_build_info",
      .help = "The running jazarid's version and interfaces (always 1).",
      .labels = {"version", "commit", "plugin_abi", "kernels_api"}}},
    {F(http_requests),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_http_requests_total",
      .help = "API requests answered, by route pattern, method and status code.",
      .labels = {"route", "method", "code"},
      .max_series = 1024}},
    {F(http_duration),
     {.type = JZ_METRIC_HISTOGRAM,
      .name = "jazari_http_request_duration_seconds",
      .help = "From a request's arrival to its reply (after its change is durable).",
      .labels = {"route"},
      H(http_buckets),
      .max_series = 128}},
    {F(commit_wait),
     {.type = JZ_METRIC_HISTOGRAM,
      .name = "jazari_store_commit_wait_seconds",
      .help = "How long a reply waited for the store batch holding its change.",
      .labels = {NULL},
      H(http_buckets)}},
    {F(deferred),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_store_replies_waiting",
      .help = "Replies waiting now for their store batch to be durable.",
      .labels = {NULL}}},
    {F(sched_pass),
     {.type = JZ_METRIC_HISTOGRAM,
      .name = "jazari_scheduler_pass_duration_seconds",
      .help = "Scheduler passes: incremental (after events) and full (timer).",
      .labels = {"kind"},
      H(pass_buckets),
      .max_series = 4}},
    {F(submitted),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_jobs_submitted_total",
      .help = "Jobs accepted, by tenant.",
      .labels = {"tenant"},
      .max_series = MAX_TENANT_SERIES}},
    {F(job_wait),
     {.type = JZ_METRIC_HISTOGRAM,
      .name = "jazari_job_wait_seconds",
      .help = "From a job's submission to its first start, by tenant and class.",
      .labels = {"tenant", "class"},
      H(wait_buckets),
      .max_series = MAX_TENANT_SERIES}},
    {F(job_run),
     {.type = JZ_METRIC_HISTOGRAM,
      .name = "jazari_job_run_seconds",
      .help = "How long a job's last run ran, observed when the job ends.",
      .labels = {"plugin", "outcome"},
      H(run_buckets),
      .max_series = 512}},
    {F(finished),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_jobs_finished_total",
      .help = "Jobs ended, by final state.",
      .labels = {"state"},
      .max_series = 16}},
    {F(preemptions),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_preemptions_total",
      .help = "Running jobs told to checkpoint and stop for another job.",
      .labels = {NULL}}},
    {F(job_events),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_job_events_total",
      .help = "Job state changes published to GET /v1/events.",
      .labels = {NULL}}},
    {F(streams),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_event_streams",
      .help = "GET /v1/events streams open now.",
      .labels = {NULL}}},
    {F(streams_dropped),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_event_streams_dropped_total",
      .help = "Event streams ended because their client fell a whole replay ring behind.",
      .labels = {NULL}}},
    {F(webhook_deliveries),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_webhook_deliveries_total",
      .help = "Job-end webhooks by outcome: delivered (2xx), failed (refused or out of tries), "
              "blocked (an address the destination policy forbids), dropped (never tried).",
      .labels = {"outcome"},
      .max_series = 4}},
    {F(webhook_attempts),
     {.type = JZ_METRIC_COUNTER,
      .name = "jazari_webhook_attempts_total",
      .help = "Job-end webhook POSTs tried, retries included.",
      .labels = {NULL}}},
    {F(webhooks_pending),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_webhook_deliveries_pending",
      .help = "Job-end webhooks waiting for their next try or in flight now.",
      .labels = {NULL}}},
    {F(jobs),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_jobs",
      .help = "Jobs in the job table now, by state (finished ones until retention purges them).",
      .labels = {"state"},
      .max_series = 16}},
    {F(queue),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_queue_jobs",
      .help = "Pending jobs now, by tenant and the scheduler's reason code.",
      .labels = {"tenant", "reason"},
      .max_series = 4 * MAX_TENANT_SERIES}},
    {F(node_up),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_node_up",
      .help = "Whether the node's agent is connected (1) or not (0).",
      .labels = {"node", "site"},
      .max_series = MAX_NODE_SERIES}},
    {F(node_gpus),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_node_gpus",
      .help = "GPUs of a node by model, allocated to jobs or free.",
      .labels = {"node", "site", "model", "state"},
      .max_series = 2 * MAX_NODE_SERIES}},
    {F(node_cores),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_node_cores",
      .help = "Cores of the node.",
      .labels = {"node", "site"},
      .max_series = MAX_NODE_SERIES}},
    {F(node_cores_free),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_node_cores_free",
      .help = "Cores of the node not held by a job.",
      .labels = {"node", "site"},
      .max_series = MAX_NODE_SERIES}},
    {F(node_running),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_node_running_jobs",
      .help = "Job parts running on the node.",
      .labels = {"node", "site"},
      .max_series = MAX_NODE_SERIES}},
    {F(agents),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_agents_connected",
      .help = "Node agents connected now (the local node's included).",
      .labels = {NULL}}},
    {F(gpu_job_info),
     {.type = JZ_METRIC_GAUGE,
      .name = "jazari_gpu_job_info",
      .help = "1 for each GPU held by a running job; pci_bus_id as DCGM writes it.",
      .labels = {"node", "pci_bus_id", "gpu", "job_id", "tenant", "user"},
      .max_series = MAX_GPU_SERIES}},
#undef H
#undef F
};

static struct jz_metric **slot(struct jz_service_metrics *sm, size_t i)
{
    return (struct jz_metric **)((char *)sm + families[i].offset);
}

int jz_service_metrics_open(struct jz_service_metrics **out, struct jz_error *err)
{
    struct jz_service_metrics *sm = calloc(1, sizeof *sm);
    if (!sm || !(sm->reg = jz_metrics_create())) {
        free(sm);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        int rc = jz_metrics_add(sm->reg, &families[i].spec, slot(sm, i), err);
        if (rc) {
            jz_service_metrics_close(sm);
            return rc;
        }
    }
    char abi[24], api[16];
    snprintf(abi, sizeof abi, "%d.%d", JZ_PLUGIN_ABI_MAJOR, JZ_PLUGIN_ABI_MINOR);
    snprintf(api, sizeof api, "%d", JZ_KERNELS_API_VERSION);
    jz_metric_set(sm->build_info,
                  (const char *const[]){jz_version(), jz_version_commit(), abi, api}, 1);
    *out = sm;
    return 0;
}

void jz_service_metrics_close(struct jz_service_metrics *sm)
{
    if (!sm)
        return;
    jz_metrics_destroy(sm->reg);
    free(sm);
}

/* --- hooks ------------------------------------------------------------------------------- */

static const char *method_name(int method)
{
    switch (method) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    default:
        return "other";
    }
}

void jz_observe_http(struct jz_service_metrics *sm, const char *route, int method, int status,
                     int64_t start_us)
{
    if (!sm)
        return;
    char pattern[160], code[16];
    /* The pattern, not the path: one series per route, whatever ids the paths hold. */
    if (route)
        snprintf(pattern, sizeof pattern, "/%s", route);
    else
        snprintf(pattern, sizeof pattern, "unmatched");
    snprintf(code, sizeof code, "%d", status);
    jz_metric_inc(sm->http_requests, (const char *const[]){pattern, method_name(method), code}, 1);
    double s = (double)(jz_time_mono_us() - start_us) / 1e6;
    jz_metric_observe(sm->http_duration, (const char *const[]){pattern}, s < 0 ? 0 : s);
}

void jz_observe_reply_deferred(struct jz_service_metrics *sm)
{
    if (!sm)
        return;
    if (sm->outstanding++ == 0)
        sm->last_progress_us = jz_time_mono_us();
}

void jz_observe_reply_committed(struct jz_service_metrics *sm, int64_t deferred_us)
{
    if (!sm)
        return;
    int64_t now = jz_time_mono_us();
    if (sm->outstanding)
        sm->outstanding--;
    sm->last_progress_us = now;
    jz_metric_observe(sm->commit_wait, NULL, (double)(now - deferred_us) / 1e6);
}

void jz_observe_reply_dropped(struct jz_service_metrics *sm)
{
    if (sm && sm->outstanding)
        sm->outstanding--;
}

void jz_observe_sched_pass(struct jz_service_metrics *sm, bool full, int64_t start_us)
{
    if (sm)
        jz_metric_observe(sm->sched_pass, (const char *const[]){full ? "full" : "incremental"},
                          (double)(jz_time_mono_us() - start_us) / 1e6);
}

void jz_observe_job_submitted(struct jz_service_metrics *sm, const char *tenant)
{
    if (sm)
        jz_metric_inc(sm->submitted, (const char *const[]){tenant}, 1);
}

void jz_observe_job_started(struct jz_service_metrics *sm, const char *tenant, const char *cls,
                            double wait_s)
{
    if (sm)
        jz_metric_observe(sm->job_wait,
                          (const char *const[]){tenant, cls && *cls ? cls : "default"},
                          wait_s < 0 ? 0 : wait_s); /* the wall clock stepped back */
}

void jz_observe_job_finished(struct jz_service_metrics *sm, const char *plugin, const char *state,
                             double ran_s)
{
    if (!sm)
        return;
    jz_metric_inc(sm->finished, (const char *const[]){state}, 1);
    if (ran_s >= 0)
        jz_metric_observe(sm->job_run, (const char *const[]){plugin, state}, ran_s);
}

void jz_observe_preemption(struct jz_service_metrics *sm)
{
    if (sm)
        jz_metric_inc(sm->preemptions, NULL, 1);
}

/* --- computed at scrape ----------------------------------------------------------------------- */

/* DCGM's exporter labels GPUs with the PCI address as NVML writes it: an 8-digit domain and
 * upper-case hex ("00000000:3B:00.0"); hwloc (our topologies) writes "0000:3b:00.0". The
 * label takes DCGM's form so that the two join with no relabelling. */
static void pci_for_dcgm(const char *hw, char *out, size_t len)
{
    unsigned dom, bus, dev, fn;
    if (sscanf(hw, "%x:%x:%x.%x", &dom, &bus, &dev, &fn) == 4)
        snprintf(out, len, "%08X:%02X:%02X.%X", dom, bus, dev, fn);
    else
        snprintf(out, len, "%s", hw);
}

static void queue_visit(void *arg, const struct jz_job *job, const char *reason_code)
{
    struct jz_service_metrics *sm = arg;
    jz_metric_add(sm->queue, (const char *const[]){jz_job_tenant(job), reason_code}, 1);
}

static void collect_nodes(struct jz_server *srv, struct jz_service_metrics *sm)
{
    json_t *all = jz_jobs_nodes_json(srv->jobs, NULL); /* with the job holding each GPU */
    size_t i, g;
    json_t *node, *gpu;
    double agents = 0;
    json_array_foreach(json_object_get(all, "nodes"), i, node)
    {
        const char *name = jz_json_str(node, "name", "?"), *site = jz_json_str(node, "site", "?");
        const char *st = jz_json_str(node, "state", "");
        bool up = strcmp(st, "down") != 0 && strcmp(st, "revoked") != 0;
        const char *const ns[] = {name, site};
        agents += up;
        jz_metric_set(sm->node_up, ns, up);
        jz_metric_set(sm->node_cores, ns, (double)jz_json_int(node, "cores", 0));
        jz_metric_set(sm->node_cores_free, ns, (double)jz_json_int(node, "cores_free", 0));
        jz_metric_set(sm->node_running, ns, (double)jz_json_int(node, "running_jobs", 0));
        json_array_foreach(json_object_get(node, "gpus"), g, gpu)
        {
            const char *model = jz_json_str(gpu, "model", "?");
            json_int_t owner = jz_json_int(gpu, "job", 0);
            /* Both series of the model exist, 0 included: "free" absent would read as unknown. */
            jz_metric_add(sm->node_gpus, (const char *const[]){name, site, model, "allocated"},
                          owner > 0);
            jz_metric_add(sm->node_gpus, (const char *const[]){name, site, model, "free"},
                          owner <= 0);
            const struct jz_job *job = owner > 0 ? jz_jobs_find(srv->jobs, owner) : NULL;
            if (!job)
                continue;
            char pci[32], idx[16], id[24];
            pci_for_dcgm(jz_json_str(gpu, "pci_bus_id", ""), pci, sizeof pci);
            snprintf(idx, sizeof idx, "%lld", (long long)jz_json_int(gpu, "index", 0));
            snprintf(id, sizeof id, "%lld", (long long)owner);
            jz_metric_set(
                sm->gpu_job_info,
                (const char *const[]){name, pci, idx, id, jz_job_tenant(job), jz_job_user(job)}, 1);
        }
    }
    jz_metric_set(sm->agents, NULL, agents);
    json_decref(all);
}

/* The families computed at scrape: emptied after each rendering (see the caps above). */
static void clear_scraped(struct jz_service_metrics *sm)
{
    struct jz_metric *scraped[] = {sm->jobs,         sm->queue,        sm->node_up,
                                   sm->node_gpus,    sm->node_cores,   sm->node_cores_free,
                                   sm->node_running, sm->gpu_job_info, sm->agents,
                                   sm->deferred};
    for (size_t i = 0; i < sizeof scraped / sizeof scraped[0]; i++)
        jz_metric_clear(scraped[i]);
}

/* The events module counts for itself (it has no registry in unit tests); its counters grow
 * here by what they grew since the last scrape. */
static void collect_events(struct jz_server *srv, struct jz_service_metrics *sm)
{
    if (!srv->events)
        return;
    struct jz_events_stats now, *was = &sm->events_seen;
    jz_events_stats(srv->events, &now);
    jz_metric_inc(sm->job_events, NULL, (double)(now.published - was->published));
    jz_metric_inc(sm->streams_dropped, NULL, (double)(now.streams_dropped - was->streams_dropped));
    jz_metric_inc(sm->webhook_attempts, NULL,
                  (double)(now.webhook_attempts - was->webhook_attempts));
    jz_metric_inc(sm->webhook_deliveries, (const char *const[]){"delivered"},
                  (double)(now.webhooks_delivered - was->webhooks_delivered));
    jz_metric_inc(sm->webhook_deliveries, (const char *const[]){"failed"},
                  (double)(now.webhooks_failed - was->webhooks_failed));
    jz_metric_inc(sm->webhook_deliveries, (const char *const[]){"blocked"},
                  (double)(now.webhooks_blocked - was->webhooks_blocked));
    jz_metric_inc(sm->webhook_deliveries, (const char *const[]){"dropped"},
                  (double)(now.webhooks_dropped - was->webhooks_dropped));
    jz_metric_set(sm->streams, NULL, (double)now.streams);
    jz_metric_set(sm->webhooks_pending, NULL, (double)now.webhooks_pending);
    *was = now;
}

static void collect(struct jz_server *srv, struct jz_service_metrics *sm)
{
    clear_scraped(sm);
    size_t counts[6];
    jz_jobs_counts(srv->jobs, counts);
    for (int s = 0; s < 6; s++)
        jz_metric_set(sm->jobs, (const char *const[]){jz_job_state_name(s)}, (double)counts[s]);
    jz_jobs_pending_each(srv->jobs, queue_visit, sm);
    collect_nodes(srv, sm);
    jz_metric_set(sm->deferred, NULL, (double)sm->outstanding);
    collect_events(srv, sm);
}

static void to_evbuffer(void *arg, const char *data, size_t len)
{
    evbuffer_add(arg, data, len);
}

/* GET /metrics: the Prometheus text format. */
void jz_api_metrics(struct jz_req *r)
{
    struct jz_service_metrics *sm = r->srv->metrics;
    if (!sm) {
        jz_http_reply_error(r, 503, "unavailable", NULL, "metrics are not being collected");
        return;
    }
    struct evbuffer *buf = evbuffer_new();
    if (!buf) {
        jz_http_reply_error(r, 500, "internal", NULL, "out of memory");
        return;
    }
    collect(r->srv, sm);
    jz_metrics_render(sm->reg, to_evbuffer, buf);
    clear_scraped(sm);
    jz_http_reply_now(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf);
    evbuffer_free(buf);
}

/* --- health ------------------------------------------------------------------------------- */

void jz_service_health(struct jz_server *srv, struct jz_health *h)
{
    const struct jz_service_metrics *sm = srv->metrics;
    *h = (struct jz_health){.status = "ok", .store = "ok", .http_status = 200};
    bool full = srv->store && srv->store->ops->full(srv->store);
    if (srv->store_failed)
        h->store = "failed";
    else if (full)
        h->store = "full";
    else if (sm && sm->outstanding &&
             jz_time_mono_us() - sm->last_progress_us > JZ_HEALTH_STORE_STUCK_S * 1000000LL)
        h->store = "stuck";
    /* Only what jazarid itself can no longer do makes it failing: a load balancer or a
     * supervisor acts on 503, and restarting jazarid brings no node back. */
    json_t *all = srv->nodes ? jz_nodes_json(srv->nodes, NULL) : NULL;
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(all, "nodes"), i, node)
    {
        const char *st = jz_json_str(node, "state", "");
        if (strcmp(st, "down") == 0 || strcmp(st, "revoked") == 0)
            h->nodes_down++;
        else
            h->nodes_up++;
    }
    json_decref(all);
    if (strcmp(h->store, "failed") == 0 || strcmp(h->store, "stuck") == 0) {
        h->status = "failing";
        h->http_status = 503;
    } else if (full || h->nodes_down > 0 || h->nodes_up == 0) {
        h->status = "degraded";
    }
}
