/* Handlers for health, metrics, plugins, identity, usage and credits. Users, tokens and the
 * audit log are in api_admin.c. */
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/ledger.h"
#include "server/nodes.h"
#include "server/plugins.h"

void jz_api_healthz(struct jz_req *r)
{
    jz_http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* Label values escaped as the exposition format asks (backslash, quote, newline). */
static void label(struct evbuffer *buf, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(buf, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(buf, "\\n", 2);
        else
            evbuffer_add(buf, v, 1);
    }
}

/* Prometheus text exposition. */
void jz_api_metrics(struct jz_req *r)
{
    size_t counts[6];
    jz_jobs_counts(r->srv->jobs, counts);
    json_t *nodes = jz_nodes_json(r->srv->nodes, NULL); /* no GPU owners needed */
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add_printf(buf, "# HELP jazari_jobs Jobs known to the service, by state.\n"
                             "# TYPE jazari_jobs gauge\n");
    for (int s = 0; s < 6; s++)
        evbuffer_add_printf(buf, "jazari_jobs{state=\"%s\"} %zu\n", jz_job_state_name(s),
                            counts[s]);
    static const char *const families[][3] = {
        {"jazari_node_gpus", "gpus_total", "GPUs of the node."},
        {"jazari_node_gpus_free", "gpus_free", "GPUs of the node not held by a job."},
        {"jazari_node_cores_free", "cores_free", "Cores of the node not held by a job."},
        {"jazari_node_running_jobs", "running_jobs", "Job parts running on the node."},
    };
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        evbuffer_add_printf(buf, "# HELP %s %s\n# TYPE %s gauge\n", families[f][0],
                            families[f][2], families[f][0]);
        size_t i;
        json_t *node;
        json_array_foreach(json_object_get(nodes, "nodes"), i, node) {
            evbuffer_add_printf(buf, "%s{node=\"", families[f][0]);
            label(buf, jz_json_str(node, "name", "?"));
            evbuffer_add_printf(buf, "\",site=\"");
            label(buf, jz_json_str(node, "site", "?"));
            evbuffer_add_printf(buf, "\"} %lld\n", (long long)jz_json_int(node, families[f][1], 0));
        }
    }
    evbuffer_add_printf(buf, "# HELP jazari_node_up Whether the node is up (1) or not (0).\n"
                             "# TYPE jazari_node_up gauge\n");
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(nodes, "nodes"), i, node) {
        evbuffer_add_printf(buf, "jazari_node_up{node=\"");
        label(buf, jz_json_str(node, "name", "?"));
        evbuffer_add_printf(buf, "\",site=\"");
        label(buf, jz_json_str(node, "site", "?"));
        const char *st = jz_json_str(node, "state", "");
        evbuffer_add_printf(buf, "\"} %d\n", strcmp(st, "down") != 0 && strcmp(st, "revoked") != 0);
    }
    json_decref(nodes);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type",
                      "text/plain; version=0.0.4");
    jz_http_send(r->req, 200, buf);
    evbuffer_free(buf);
}

void jz_api_plugins(struct jz_req *r)
{
    jz_http_reply_json(r, 200, json_pack("{s:o}", "plugins", jz_plugins_json(r->srv->plugins)));
}

void jz_api_whoami(struct jz_req *r)
{
    json_t *me = json_pack("{s:s, s:s, s:s}", "name", r->user->name, "tenant", r->user->tenant,
                           "role", r->user->admin ? "admin" : "user");
    jz_auth_unix_json(r->srv->auth, r->user, me); /* absent when the user has no account */
    jz_http_reply_json(r, 200, me);
}

void jz_api_usage(struct jz_req *r)
{
    const char *tenant = jz_req_query(r, "tenant");
    if (tenant && !r->user->admin && strcmp(tenant, r->user->tenant) != 0) {
        jz_http_reply_error(r, 403, "forbidden", "tenant",
                            "only admins may see other tenants' usage");
        return;
    }
    if (!r->user->admin && !tenant)
        tenant = r->user->tenant;
    jz_http_reply_json(r, 200, jz_ledger_usage_json(r->srv->ledger, tenant));
}

void jz_api_admin_credits_add(struct jz_req *r)
{
    const char *tenant = jz_json_str(r->body, "tenant", NULL);
    json_t *hours = json_object_get(r->body, "gpu_hours");
    json_t *note = json_object_get(r->body, "note");
    if (!tenant) {
        jz_http_reply_error(r, 400, "invalid", "tenant", "tenant: required string");
        return;
    }
    if (!json_is_number(hours)) {
        jz_http_reply_error(r, 400, "invalid", "gpu_hours", "gpu_hours: required number");
        return;
    }
    if (note && !json_is_null(note) &&
        (!json_is_string(note) || strlen(json_string_value(note)) > 1024)) {
        jz_http_reply_error(r, 400, "invalid", "note", "note: a string of at most 1024 bytes");
        return;
    }
    char who[512];
    snprintf(who, sizeof who, "%s%s%s", r->user->name, json_is_string(note) ? ": " : "",
             json_is_string(note) ? json_string_value(note) : "");
    struct jz_error err = {0};
    if (jz_ledger_grant(r->srv->ledger, tenant, json_number_value(hours), who, &err)) {
        jz_http_reply_jz_error(r, &err, strncmp(err.msg, "tenant", 6) == 0 ? "tenant" : "gpu_hours");
        return;
    }
    jz_api_audit(r, "credits.add", tenant,
                 json_pack("{s:f, s:O?}", "gpu_hours", json_number_value(hours), "note", note));
    json_t *usage = jz_ledger_usage_json(r->srv->ledger, tenant);
    json_t *row = json_incref(json_array_get(json_object_get(usage, "tenants"), 0));
    json_decref(usage);
    jz_http_reply_json(r, 201, row);
}
