/* Handlers for health, plugins, identity, usage and credits. Users, tokens and the audit log
 * are in api_admin.c; /metrics in service_metrics.c. */
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
#include "server/service_metrics.h"

/* Public and cheap: what a load balancer or a supervisor polls (service_metrics.h says when it
 * is degraded or failing). */
void jz_api_healthz(struct jz_req *r)
{
    struct jz_health h;
    jz_service_health(r->srv, &h);
    /* Sent at once: a reply that waited for the group commit would hang with a stuck store. */
    struct evbuffer *buf = evbuffer_new();
    if (!buf) {
        jz_http_reply_error(r, 500, "internal", NULL, "out of memory");
        return;
    }
    evbuffer_add_printf(buf,
                        "{\"status\":\"%s\",\"store\":\"%s\",\"nodes_up\":%zu,"
                        "\"nodes_down\":%zu}\n",
                        h.status, h.store, h.nodes_up, h.nodes_down);
    jz_http_reply_now(r, h.http_status, NULL, buf);
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
