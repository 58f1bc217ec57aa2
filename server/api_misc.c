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
                           "role", jz_auth_role(r->user));
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

/* POST /v1/admin/credits {"tenant", "credits" (or "gpu_hours", its older name: a credit is a
 * GPU-hour without a price list), "kind": purchase (default) | refund | adjustment, "note",
 * "override"}. */
void jz_api_admin_credits_add(struct jz_req *r)
{
    static const char *const keys[] = {"tenant", "credits", "gpu_hours", "kind", "note",
                                       "override", NULL};
    if (!jz_http_body_only(r, keys))
        return;
    const char *tenant = jz_json_str(r->body, "tenant", NULL);
    json_t *amount = json_object_get(r->body, "credits");
    const char *amount_key = "credits";
    if (!amount) {
        amount = json_object_get(r->body, "gpu_hours");
        amount_key = "gpu_hours";
    }
    json_t *note = json_object_get(r->body, "note"), *over = json_object_get(r->body, "override");
    const char *kind = jz_json_str(r->body, "kind", "purchase");
    if (!tenant) {
        jz_http_reply_error(r, 400, "invalid", "tenant", "tenant: required string");
        return;
    }
    if (!json_is_number(amount)) {
        jz_http_reply_error(r, 400, "invalid", "credits", "credits: required number");
        return;
    }
    if (json_object_get(r->body, "kind") && !json_is_string(json_object_get(r->body, "kind"))) {
        jz_http_reply_error(r, 400, "invalid", "kind", "kind: purchase, refund or adjustment");
        return;
    }
    if (over && !json_is_boolean(over)) {
        jz_http_reply_error(r, 400, "invalid", "override", "override: true or false");
        return;
    }
    if (note && !json_is_null(note) &&
        (!json_is_string(note) || strlen(json_string_value(note)) > 1024)) {
        jz_http_reply_error(r, 400, "invalid", "note", "note: a string of at most 1024 bytes");
        return;
    }
    struct jz_error err = {0};
    if (jz_ledger_add(r->srv->ledger, tenant, kind, json_number_value(amount), r->user->name,
                      json_is_string(note) ? json_string_value(note) : NULL, json_is_true(over),
                      &err)) {
        const char *field = strncmp(err.msg, "tenant", 6) == 0 ? "tenant"
                            : strncmp(err.msg, "kind", 4) == 0 ? "kind"
                                                                : amount_key;
        jz_http_reply_jz_error(r, &err, field);
        return;
    }
    jz_api_audit(r, "credits.add", tenant,
                 json_pack("{s:s, s:f, s:O?}", "kind", kind, "credits",
                           json_number_value(amount), "note", note));
    json_t *usage = jz_ledger_usage_json(r->srv->ledger, tenant);
    json_t *row = json_incref(json_array_get(json_object_get(usage, "tenants"), 0));
    json_decref(usage);
    jz_http_reply_json(r, 201, row);
}
