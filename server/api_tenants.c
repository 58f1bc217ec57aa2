/* Handlers for tenants: the admin's /v1/admin/tenants (tenant objects, tenants.h) and a
 * tenant-admin's /v1/tenants/{name}/... (its tenant and its members). A tenant-admin never
 * learns of another tenant: every answer about one is the 404 of a tenant that does not exist.
 * Every change is in the audit log, in the batch that makes it durable. */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/tenants.h"

/* The field an error message names first ("weight: ..."), or dflt. */
static const char *error_field(const struct jz_error *err, const char *dflt, char *buf,
                               size_t len)
{
    size_t n = strcspn(err->msg, ":");
    if (err->msg[n] != ':' || n == 0 || n >= len)
        return dflt;
    memcpy(buf, err->msg, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!(buf[i] == '_' || buf[i] == '-' || (buf[i] >= 'a' && buf[i] <= 'z') ||
              (buf[i] >= 'A' && buf[i] <= 'Z') || (buf[i] >= '0' && buf[i] <= '9')))
            return dflt;
    return buf;
}

static void reply_error(struct jz_req *r, const struct jz_error *err, const char *dflt)
{
    char buf[72];
    const char *field = error_field(err, dflt, buf, sizeof buf);
    if (err->code == JZ_ELIMIT) /* a count, not a body size: 409 rather than 413 */
        jz_http_reply_error(r, 409, "limit", field, "%s", err->msg);
    else
        jz_http_reply_jz_error(r, err, field);
}

static json_t *time_or_null(int64_t ms)
{
    if (!ms)
        return json_null();
    char ts[40];
    jz_time_format_iso(ms, ts, sizeof ts);
    return json_string(ts);
}

/* A tenant "exists" when it has an object or a user. */
static bool tenant_exists(struct jz_server *srv, const char *name)
{
    return jz_tenants_exists(srv->tenants, name) || jz_auth_tenant_user_count(srv->auth, name);
}

/* The tenant object (or just the name) with its members (new reference). */
static json_t *tenant_with_members(struct jz_server *srv, const char *name)
{
    json_t *o = jz_tenants_json(srv->tenants, name);
    if (!o)
        o = json_pack("{s:s}", "name", name);
    if (o)
        json_object_set_new(o, "members", jz_auth_tenant_users_json(srv->auth, name));
    return o;
}

/* Whether the tenant has jobs waiting or running. */
static bool tenant_has_jobs(struct jz_req *r, const char *name)
{
    struct jz_jobs_filter f = {.state_mask = (1u << JZ_JOB_PENDING) | (1u << JZ_JOB_RUNNING),
                               .tenant = name};
    json_t *page = jz_jobs_list(r->srv->jobs, r->user, &f, 0, false, 1);
    bool any = json_array_size(json_object_get(page, "jobs")) > 0;
    json_decref(page);
    return any;
}

/* --- admin: /v1/admin/tenants --------------------------------------------------------------- */

void jz_api_admin_tenants_list(struct jz_req *r)
{
    jz_http_reply_json(r, 200,
                       json_pack("{s:o}", "tenants", jz_tenants_list_json(r->srv->tenants)));
}

void jz_api_admin_tenants_add(struct jz_req *r)
{
    const char *name = jz_json_str(r->body, "name", NULL);
    if (!name) {
        jz_http_reply_error(r, 400, "invalid", "name", "name: required string");
        return;
    }
    json_t *fields = json_deep_copy(r->body);
    json_object_del(fields, "name");
    struct jz_error err = {0};
    int rc = jz_tenants_put(r->srv->tenants, name, fields, true, r->user->name, &err);
    if (rc) {
        json_decref(fields);
        reply_error(r, &err, "name");
        return;
    }
    jz_api_audit(r, "tenant.add", name, fields);
    jz_http_reply_json(r, 201, jz_tenants_json(r->srv->tenants, name));
}

void jz_api_admin_tenant_get(struct jz_req *r)
{
    const char *name = r->seg[3];
    if (!tenant_exists(r->srv, name)) {
        jz_http_reply_error(r, 404, "not_found", "name", "no tenant named '%.128s'", name);
        return;
    }
    jz_http_reply_json(r, 200, tenant_with_members(r->srv, name));
}

void jz_api_admin_tenant_set(struct jz_req *r)
{
    const char *name = r->seg[3];
    struct jz_error err = {0};
    if (jz_tenants_put(r->srv->tenants, name, r->body, false, r->user->name, &err)) {
        reply_error(r, &err, "name");
        return;
    }
    jz_api_audit(r, "tenant.set", name, json_deep_copy(r->body));
    jz_http_reply_json(r, 200, jz_tenants_json(r->srv->tenants, name));
}

void jz_api_admin_tenant_rm(struct jz_req *r)
{
    const char *name = r->seg[3];
    if (!jz_tenants_exists(r->srv->tenants, name)) {
        jz_http_reply_error(r, 404, "not_found", "name", "no tenant named '%.128s'", name);
        return;
    }
    size_t members = jz_auth_tenant_user_count(r->srv->auth, name);
    if (members) {
        jz_http_reply_error(r, 409, "conflict", "name",
                            "tenant %s still has %zu member%s: remove them first", name, members,
                            members == 1 ? "" : "s");
        return;
    }
    if (tenant_has_jobs(r, name)) {
        jz_http_reply_error(r, 409, "conflict", "name",
                            "tenant %s has jobs waiting or running: cancel them or let them end "
                            "first",
                            name);
        return;
    }
    struct jz_error err = {0};
    if (jz_tenants_remove(r->srv->tenants, name, &err)) {
        reply_error(r, &err, "name");
        return;
    }
    jz_api_audit(r, "tenant.rm", name, NULL);
    jz_http_reply_json(r, 200, json_pack("{s:s}", "removed", name));
}

/* --- a tenant's own: /v1/tenants/{name}/... ------------------------------------------------- */

/* The tenant of the path when the caller may manage it. Otherwise replies and returns NULL: 404
 * "no tenant named" for a tenant that does not exist and, byte for byte the same, for another
 * tenant's; 403 for the caller's own tenant without the tenant-admin role. */
static const char *managed_tenant(struct jz_req *r)
{
    const char *name = r->seg[2];
    bool own = strcmp(name, r->user->tenant) == 0;
    if ((!r->user->admin && !own) || !tenant_exists(r->srv, name)) {
        jz_http_reply_error(r, 404, "not_found", "name", "no tenant named '%.128s'", name);
        return NULL;
    }
    if (!jz_auth_may_manage_tenant(r->user, name)) {
        jz_http_reply_error(r, 403, "forbidden", NULL,
                            "this needs the tenant-admin role of tenant %s", name);
        return NULL;
    }
    return name;
}

/* The member of the path (segment 4) in tenant; replies 404 (the same for a user of another
 * tenant as for none) or 403 (an admin: only admins manage admins) and returns NULL. */
static const struct jz_user *managed_member(struct jz_req *r, const char *tenant)
{
    const char *name = r->seg[4];
    const struct jz_user *u = jz_auth_user_find(r->srv->auth, name);
    if (!u || strcmp(u->tenant, tenant) != 0) {
        jz_http_reply_error(r, 404, "not_found", "user", "no member named '%.128s' in tenant %s",
                            name, tenant);
        return NULL;
    }
    if (u->admin && !r->user->admin) {
        jz_http_reply_error(r, 403, "forbidden", "user",
                            "%s is an admin: only an admin may change it", name);
        return NULL;
    }
    return u;
}

void jz_api_tenant_get(struct jz_req *r)
{
    const char *tenant = managed_tenant(r);
    if (tenant)
        jz_http_reply_json(r, 200, tenant_with_members(r->srv, tenant));
}

void jz_api_tenant_members(struct jz_req *r)
{
    const char *tenant = managed_tenant(r);
    if (tenant)
        jz_http_reply_json(r, 200, json_pack("{s:o}", "members",
                                             jz_auth_tenant_users_json(r->srv->auth, tenant)));
}

/* POST /v1/tenants/{name}/members {"name", "role"?, "unix_user"?, "expires"?}: a new user of the
 * tenant, with role user or tenant-admin, and its first token (shown once). */
void jz_api_tenant_member_add(struct jz_req *r)
{
    const char *tenant = managed_tenant(r);
    if (!tenant)
        return;
    static const char *const keys[] = {"name", "role", "unix_user", "expires", NULL};
    if (!jz_http_body_only(r, keys))
        return;
    const char *name = jz_json_str(r->body, "name", NULL);
    json_t *jr = json_object_get(r->body, "role");
    json_t *ju = json_object_get(r->body, "unix_user");
    if (!name) {
        jz_http_reply_error(r, 400, "invalid", "name", "name: required string");
        return;
    }
    const char *role = jr ? json_string_value(jr) : "user";
    bool admin = false, tenant_admin = false;
    if (!role || !jz_auth_role_parse(role, &admin, &tenant_admin)) {
        jz_http_reply_error(r, 400, "invalid", "role", "role: must be user or tenant-admin");
        return;
    }
    if (admin) {
        jz_http_reply_error(r, 403, "forbidden", "role",
                            "role: a tenant's members are users or tenant-admins; only an admin "
                            "makes admins (POST /v1/admin/users)");
        return;
    }
    if (ju && !json_is_null(ju) && !json_is_string(ju)) {
        jz_http_reply_error(r, 400, "invalid", "unix_user", "unix_user: expected a string");
        return;
    }
    /* Jobs run as that account (docs/security.md): mapping users to accounts is an admin's.
     * A tenant-admin's members run as the tenant's account from the configuration. */
    if (ju && !json_is_null(ju) && !r->user->admin) {
        jz_http_reply_error(r, 403, "forbidden", "unix_user",
                            "unix_user: only an admin maps a user to a Unix account; members "
                            "run as their tenant's account");
        return;
    }
    int64_t expires;
    if (!jz_api_body_expires(r, &expires))
        return;
    jz_api_user_create(r, "member.add", name, tenant, role, false, tenant_admin,
                       json_string_value(ju), expires);
}

void jz_api_tenant_member_rm(struct jz_req *r)
{
    const char *tenant = managed_tenant(r);
    const struct jz_user *u = tenant ? managed_member(r, tenant) : NULL;
    if (!u)
        return;
    char name[JZ_MAX_NAME_LEN + 1];
    jz_strlcpy(name, u->name, sizeof name);
    size_t revoked = 0;
    struct jz_error err = {0};
    if (jz_auth_user_remove(r->srv->auth, name, &revoked, &err)) {
        reply_error(r, &err, "user");
        return;
    }
    jz_api_audit(r, "member.rm", name,
                 json_pack("{s:s, s:I}", "tenant", tenant, "tokens_revoked", (json_int_t)revoked));
    jz_http_reply_json(
        r, 200, json_pack("{s:s, s:I}", "removed", name, "tokens_revoked", (json_int_t)revoked));
}

/* POST /v1/tenants/{name}/members/{user}/token {"expires"?}: a new token for a member, whose
 * other tokens are revoked (a lost or leaked token is replaced, not added to). */
void jz_api_tenant_member_token(struct jz_req *r)
{
    const char *tenant = managed_tenant(r);
    const struct jz_user *u = tenant ? managed_member(r, tenant) : NULL;
    if (!u)
        return;
    static const char *const keys[] = {"expires", NULL};
    if (!jz_http_body_only(r, keys))
        return;
    int64_t expires;
    if (!jz_api_body_expires(r, &expires))
        return;
    struct jz_new_token tok;
    size_t revoked = 0;
    struct jz_error err = {0};
    if (jz_auth_token_rotate(r->srv->auth, u->name, expires, &tok, &revoked, &err)) {
        reply_error(r, &err, "user");
        return;
    }
    jz_api_audit(r, "member.token", u->name,
                 json_pack("{s:s, s:s, s:I}", "tenant", tenant, "token_id", tok.id,
                           "tokens_revoked", (json_int_t)revoked));
    jz_http_reply_json(r, 200,
                       json_pack("{s:s, s:s, s:s, s:o, s:I}", "id", tok.id, "user", u->name,
                                 "token", tok.token, "expires", time_or_null(tok.expires_ms),
                                 "revoked", (json_int_t)revoked));
}
