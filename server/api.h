/* REST API handlers (one function per route; routing is in http.c). */
#ifndef JZ_SERVER_API_H
#define JZ_SERVER_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct jz_req;

void jz_api_healthz(struct jz_req *r);
void jz_api_metrics(struct jz_req *r);
void jz_api_jobs_submit(struct jz_req *r);
void jz_api_jobs_list(struct jz_req *r);
void jz_api_jobs_get(struct jz_req *r);
void jz_api_jobs_cancel(struct jz_req *r);
void jz_api_jobs_log(struct jz_req *r);
void jz_api_jobs_events(struct jz_req *r);
void jz_api_jobs_hold(struct jz_req *r);
void jz_api_jobs_release(struct jz_req *r);
void jz_api_jobs_modify(struct jz_req *r);
void jz_api_arrays_cancel(struct jz_req *r);
/* Job events of every visible job, as server-sent events (events.c). */
void jz_api_events(struct jz_req *r);
void jz_api_jobs_artifacts(struct jz_req *r);
void jz_api_jobs_artifact_get(struct jz_req *r);
void jz_api_nodes(struct jz_req *r);
void jz_api_node_drain(struct jz_req *r);
void jz_api_node_resume(struct jz_req *r);
void jz_api_node_revoke(struct jz_req *r);
void jz_api_node_delete(struct jz_req *r);
void jz_api_admin_node_tokens(struct jz_req *r);
void jz_api_agent(struct jz_req *r);
void jz_api_plugins(struct jz_req *r);
void jz_api_whoami(struct jz_req *r);
void jz_api_usage(struct jz_req *r);
void jz_api_admin_credits_add(struct jz_req *r);
/* Prices, statements and usage reports (api_billing.c). */
void jz_api_prices(struct jz_req *r);
void jz_api_tenant_statement(struct jz_req *r);
void jz_api_reports_usage(struct jz_req *r);

/* Users, tokens and the audit log (api_admin.c). */
void jz_api_admin_users_add(struct jz_req *r);
void jz_api_admin_users_list(struct jz_req *r);
void jz_api_admin_user_set(struct jz_req *r);
void jz_api_admin_user_rm(struct jz_req *r);
void jz_api_admin_tokens_list(struct jz_req *r);
void jz_api_admin_tokens_add(struct jz_req *r);
void jz_api_admin_tokens_rotate(struct jz_req *r);
void jz_api_admin_token_revoke(struct jz_req *r);
void jz_api_admin_audit(struct jz_req *r);
void jz_api_whoami_token(struct jz_req *r);

/* Tenants and their members (api_tenants.c). */
void jz_api_admin_tenants_add(struct jz_req *r);
void jz_api_admin_tenants_list(struct jz_req *r);
void jz_api_admin_tenant_get(struct jz_req *r);
void jz_api_admin_tenant_set(struct jz_req *r);
void jz_api_admin_tenant_rm(struct jz_req *r);
void jz_api_tenant_get(struct jz_req *r);
void jz_api_tenant_members(struct jz_req *r);
void jz_api_tenant_member_add(struct jz_req *r);
void jz_api_tenant_member_rm(struct jz_req *r);
void jz_api_tenant_member_token(struct jz_req *r);
/* The body's optional "expires" (a duration or an ISO-8601 time, or null: never) as ms since
 * the epoch, 0 for never; replies 400 and returns false when it is bad (api_admin.c). */
bool jz_api_body_expires(struct jz_req *r, int64_t *out);
/* A time in a query (since=, until=): ISO 8601 in UTC, a day (from its midnight UTC), or epoch
 * seconds; as ms. False when it is none of those. */
bool jz_api_query_time(const char *s, int64_t *ms);
/* Creates the user name of tenant with role (admin, tenant_admin as jz_auth_role_parse gives
 * them), an account and an expiry (0: never), audits action, and replies 201 with its token
 * (shown once). POST /v1/admin/users and a tenant-admin's POST /v1/tenants/{name}/members. */
void jz_api_user_create(struct jz_req *r, const char *action, const char *name,
                        const char *tenant, const char *role, bool admin, bool tenant_admin,
                        const char *unix_user, int64_t expires);

/* The web dashboard's page and files, built into the binary (api_dashboard.c). */
void jz_api_dashboard_index(struct jz_req *r);
void jz_api_dashboard_asset(struct jz_req *r);

/* Booked compute slots (api_reservations.c). */
void jz_api_reservations_book(struct jz_req *r);
void jz_api_reservations_list(struct jz_req *r);
void jz_api_reservations_get(struct jz_req *r);
void jz_api_reservations_cancel(struct jz_req *r);

/* The service itself (api_service.c). */
void jz_api_version(struct jz_req *r);
void jz_api_admin_reload(struct jz_req *r);
void jz_api_admin_backup(struct jz_req *r);

/* Records an administrative action of the request's user in the audit log, with the client's
 * address (see jz_audit in auth.h): action names "object.verb" ("node.drain"), target what it
 * acted on (may be NULL), detail a JSON object (stolen, may be NULL). Call it after the change
 * succeeded and before replying, so that the entry is durable with the change. */
void jz_api_audit(struct jz_req *r, const char *action, const char *target, json_t *detail);

#endif
