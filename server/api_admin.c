/* Handlers for users, tokens and the audit log: /v1/admin/users, /v1/admin/tokens,
 * /v1/admin/audit and a user's own token rotation (/v1/whoami/token). Every change an admin
 * makes is recorded in the audit log in the batch that makes it durable. */
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

#define DEFAULT_AUDIT_LIMIT 100
#define MAX_WHEN_LEN 64 /* bytes of an "expires" or "since" value */

void jz_api_audit(struct jz_req *r, const char *action, const char *target, json_t *detail)
{
    char *host = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *conn = evhttp_request_get_connection(r->req);
    if (conn)
        evhttp_connection_get_peer(conn, &host, &port);
    jz_audit(r->srv, r->user, host, action, target, detail);
}

/* A point in time given as an ISO-8601 UTC time ("2026-12-31T00:00:00Z"), a date (00:00 UTC
 * that day), or a duration from now ("90d", "12h", "30m", "2s", "1h30m") counted forward
 * (sign +1) or back (-1). */
static int parse_when(const char *s, int sign, int64_t *out, struct jz_error *err)
{
    int64_t secs, ms;
    size_t n = strlen(s);
    if (n == 0 || n > MAX_WHEN_LEN)
        return jz_error_set(err, JZ_EINVAL, "expected a duration or an ISO-8601 time");
    if (jz_duration_parse(s, &secs, NULL) == 0) {
        if (secs < 0 || secs > JZ_MAX_TOKEN_TTL_S * 2)
            return jz_error_set(err, JZ_ERANGE, "the duration is out of range");
        *out = jz_time_now_ms() + sign * secs * 1000;
        return 0;
    }
    char iso[MAX_WHEN_LEN + 16];
    if (n == 10 && s[4] == '-' && s[7] == '-')
        snprintf(iso, sizeof iso, "%sT00:00:00Z", s);
    else
        snprintf(iso, sizeof iso, "%s", s);
    if (jz_time_parse_iso(iso, &ms, NULL) != 0)
        return jz_error_set(err, JZ_EINVAL,
                            "expected a duration (90d, 12h, 30m, 2s) or an ISO-8601 time "
                            "(2026-12-31 or 2026-12-31T00:00:00Z)");
    *out = ms;
    return 0;
}

/* The body's optional "expires" (a string as parse_when reads it, or null): 0 for never.
 * Replies 400 and returns false when it is bad. */
static bool body_expires(struct jz_req *r, int64_t *out)
{
    json_t *v = json_object_get(r->body, "expires");
    *out = 0;
    if (!v || json_is_null(v))
        return true;
    struct jz_error err = {0};
    if (!json_is_string(v) || parse_when(json_string_value(v), +1, out, &err)) {
        jz_http_reply_error(r, 400, "invalid", "expires", "expires: %s",
                            json_is_string(v) ? err.msg : "expected a string or null");
        return false;
    }
    /* 0 means "never": a time at or before now (1970-01-01 included) is not a token's end. */
    if (*out <= jz_time_now_ms()) {
        jz_http_reply_error(r, 400, "invalid", "expires", "expires: must be in the future");
        return false;
    }
    return true;
}

/* Maps an error of the auth module to its field (the start of its message, "name: ..."). */
static void reply_auth_error(struct jz_req *r, const struct jz_error *err, const char *dflt)
{
    static const char *const fields[] = {"name", "tenant", "unix_user", "expires",
                                         "user", "id",     "role",      NULL};
    const char *field = dflt;
    for (const char *const *f = fields; *f; f++) {
        size_t n = strlen(*f);
        if (strncmp(err->msg, *f, n) == 0 && err->msg[n] == ':')
            field = *f;
    }
    if (err->code == JZ_ELIMIT) /* a count, not a body size: 409 rather than 413 */
        jz_http_reply_error(r, 409, "limit", field, "%s", err->msg);
    else
        jz_http_reply_jz_error(r, err, field);
}

bool jz_api_body_expires(struct jz_req *r, int64_t *out)
{
    return body_expires(r, out);
}

static json_t *time_or_null(int64_t ms)
{
    if (!ms)
        return json_null();
    char ts[40];
    jz_time_format_iso(ms, ts, sizeof ts);
    return json_string(ts);
}

/* {id, user, token, expires}: a new token, shown only in this answer. */
static json_t *new_token_json(const char *user, const struct jz_new_token *t)
{
    return json_pack("{s:s, s:s, s:s, s:o}", "id", t->id, "user", user, "token", t->token,
                     "expires", time_or_null(t->expires_ms));
}

/* --- users ---------------------------------------------------------------------------------- */

void jz_api_admin_users_add(struct jz_req *r)
{
    static const char *const keys[] = {"name", "tenant", "role", "unix_user", "expires", NULL};
    if (!jz_http_body_only(r, keys))
        return;
    const char *name = jz_json_str(r->body, "name", NULL);
    const char *tenant = jz_json_str(r->body, "tenant", NULL);
    const char *role = jz_json_str(r->body, "role", "user");
    json_t *ju = json_object_get(r->body, "unix_user");
    if (!name) {
        jz_http_reply_error(r, 400, "invalid", "name", "name: required string");
        return;
    }
    if (!tenant) {
        jz_http_reply_error(r, 400, "invalid", "tenant", "tenant: required string");
        return;
    }
    bool admin = false, tenant_admin = false;
    if (!jz_auth_role_parse(role, &admin, &tenant_admin)) {
        jz_http_reply_error(r, 400, "invalid", "role",
                            "role: must be user, tenant-admin or admin");
        return;
    }
    if (ju && !json_is_null(ju) && !json_is_string(ju)) {
        jz_http_reply_error(r, 400, "invalid", "unix_user", "unix_user: expected a string");
        return;
    }
    int64_t expires;
    if (!body_expires(r, &expires))
        return;
    jz_api_user_create(r, "user.add", name, tenant, role, admin, tenant_admin,
                       json_string_value(ju), expires);
}

void jz_api_user_create(struct jz_req *r, const char *action, const char *name,
                        const char *tenant, const char *role, bool admin, bool tenant_admin,
                        const char *unix_user, int64_t expires)
{
    struct jz_new_token tok;
    struct jz_error err = {0};
    if (jz_auth_user_add(r->srv->auth, name, tenant, admin, unix_user, expires, &tok, &err) ||
        (tenant_admin && jz_auth_user_set_role(r->srv->auth, name, role, &err))) {
        reply_auth_error(r, &err, "name");
        return;
    }
    jz_api_audit(r, action, name,
                 json_pack("{s:s, s:s, s:s?, s:s, s:o}", "tenant", tenant, "role", role,
                           "unix_user", unix_user && *unix_user ? unix_user : NULL, "token_id",
                           tok.id, "expires", time_or_null(tok.expires_ms)));
    json_t *reply =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "name", name, "tenant", tenant, "role", role,
                  "token", tok.token, "token_id", tok.id, "expires", time_or_null(tok.expires_ms));
    if (unix_user && *unix_user)
        json_object_set_new(reply, "unix_user", json_string(unix_user));
    jz_http_reply_json(r, 201, reply);
}

void jz_api_admin_users_list(struct jz_req *r)
{
    jz_http_reply_json(r, 200, json_pack("{s:o}", "users", jz_auth_users_json(r->srv->auth)));
}

/* POST /v1/admin/users/{name} {"unix_user": "acct" | null, "role": ROLE}: changes what may
 * change (at least one of the two). */
void jz_api_admin_user_set(struct jz_req *r)
{
    static const char *const keys[] = {"unix_user", "role", NULL};
    if (!jz_http_body_only(r, keys))
        return;
    const char *name = r->seg[3];
    json_t *ju = json_object_get(r->body, "unix_user");
    json_t *jr = json_object_get(r->body, "role");
    if (!ju && !jr) {
        jz_http_reply_error(r, 400, "invalid", "unix_user",
                            "unix_user: required (a POSIX account name, or null to clear it), "
                            "unless role is given");
        return;
    }
    if (ju && !json_is_null(ju) && !json_is_string(ju)) {
        jz_http_reply_error(r, 400, "invalid", "unix_user", "unix_user: expected a string or null");
        return;
    }
    bool ra = false, rt = false;
    if (jr && (!json_is_string(jr) || !jz_auth_role_parse(json_string_value(jr), &ra, &rt))) {
        jz_http_reply_error(r, 400, "invalid", "role",
                            "role: must be user, tenant-admin or admin");
        return;
    }
    if (!jz_auth_user_find(r->srv->auth, name)) {
        jz_http_reply_error(r, 404, "not_found", "name", "name: no user named '%.128s'", name);
        return;
    }
    struct jz_error err = {0};
    /* The role first: it is the change that can be refused (the last admin). */
    if ((jr && jz_auth_user_set_role(r->srv->auth, name, json_string_value(jr), &err)) ||
        (ju && jz_auth_user_set_unix(r->srv->auth, name, json_string_value(ju), &err))) {
        reply_auth_error(r, &err, "name");
        return;
    }
    const struct jz_user *u = jz_auth_user_find(r->srv->auth, name);
    json_t *detail = json_object();
    if (ju)
        json_object_set(detail, "unix_user", ju);
    if (jr)
        json_object_set(detail, "role", jr);
    jz_api_audit(r, "user.set", name, detail);
    jz_http_reply_json(r, 200, jz_auth_user_json(r->srv->auth, u));
}

void jz_api_admin_user_rm(struct jz_req *r)
{
    const char *name = r->seg[3];
    size_t revoked = 0;
    struct jz_error err = {0};
    if (jz_auth_user_remove(r->srv->auth, name, &revoked, &err)) {
        reply_auth_error(r, &err, "name");
        return;
    }
    jz_api_audit(r, "user.rm", name, json_pack("{s:I}", "tokens_revoked", (json_int_t)revoked));
    jz_http_reply_json(
        r, 200, json_pack("{s:s, s:I}", "removed", name, "tokens_revoked", (json_int_t)revoked));
}

/* --- tokens --------------------------------------------------------------------------------- */

void jz_api_admin_tokens_list(struct jz_req *r)
{
    const char *user = jz_req_query(r, "user");
    if (user && !jz_auth_user_find(r->srv->auth, user)) {
        jz_http_reply_error(r, 404, "not_found", "user", "user: no user named '%.128s'", user);
        return;
    }
    jz_http_reply_json(r, 200,
                       json_pack("{s:o}", "tokens", jz_auth_tokens_json(r->srv->auth, user)));
}

/* The body {"user": NAME, "expires": ...} of token add and rotate; false when it replied. */
static bool token_body(struct jz_req *r, const char **user, int64_t *expires)
{
    static const char *const keys[] = {"user", "expires", NULL};
    if (!jz_http_body_only(r, keys))
        return false;
    *user = jz_json_str(r->body, "user", NULL);
    if (!*user) {
        jz_http_reply_error(r, 400, "invalid", "user", "user: required string");
        return false;
    }
    return body_expires(r, expires);
}

void jz_api_admin_tokens_add(struct jz_req *r)
{
    const char *user;
    int64_t expires;
    if (!token_body(r, &user, &expires))
        return;
    struct jz_new_token tok;
    struct jz_error err = {0};
    if (jz_auth_token_add(r->srv->auth, user, expires, &tok, &err)) {
        reply_auth_error(r, &err, "user");
        return;
    }
    jz_api_audit(
        r, "token.add", user,
        json_pack("{s:s, s:o}", "token_id", tok.id, "expires", time_or_null(tok.expires_ms)));
    jz_http_reply_json(r, 201, new_token_json(user, &tok));
}

/* Rotation: the user gets a new token and every other one is revoked. */
static void rotate(struct jz_req *r, const char *user, int64_t expires, bool self)
{
    struct jz_new_token tok;
    size_t revoked = 0;
    struct jz_error err = {0};
    if (jz_auth_token_rotate(r->srv->auth, user, expires, &tok, &revoked, &err)) {
        reply_auth_error(r, &err, "user");
        return;
    }
    jz_api_audit(r, "token.rotate", user,
                 json_pack("{s:s, s:o, s:I, s:b}", "token_id", tok.id, "expires",
                           time_or_null(tok.expires_ms), "revoked", (json_int_t)revoked, "self",
                           self));
    json_t *reply = new_token_json(user, &tok);
    json_object_set_new(reply, "revoked", json_integer((json_int_t)revoked));
    jz_http_reply_json(r, 201, reply);
}

void jz_api_admin_tokens_rotate(struct jz_req *r)
{
    const char *user;
    int64_t expires;
    if (token_body(r, &user, &expires))
        rotate(r, user, expires, false);
}

void jz_api_admin_token_revoke(struct jz_req *r)
{
    const char *id = r->seg[3], *owner = NULL;
    struct jz_error err = {0};
    if (jz_auth_token_revoke(r->srv->auth, id, &owner, &err)) {
        reply_auth_error(r, &err, "id");
        return;
    }
    jz_api_audit(r, "token.revoke", id, json_pack("{s:s}", "user", owner));
    jz_http_reply_json(r, 200, json_pack("{s:s, s:s}", "revoked", id, "user", owner));
}

/* POST /v1/whoami/token: a user rotates their own token. The new token expires no later than
 * the latest of the user's valid tokens (never, when one never expires): rotating cannot
 * outlive a lifetime an admin gave. Without "expires" it gets exactly that. */
void jz_api_whoami_token(struct jz_req *r)
{
    static const char *const keys[] = {"expires", NULL};
    if (!jz_http_body_only(r, keys))
        return;
    int64_t expires;
    if (!body_expires(r, &expires))
        return;
    int64_t cap = jz_auth_token_latest_expiry(r->srv->auth, r->user);
    if (cap && !expires) {
        expires = cap;
    } else if (cap && expires > cap) {
        char ts[40];
        jz_time_format_iso(cap, ts, sizeof ts);
        jz_http_reply_error(r, 400, "invalid", "expires",
                            "expires: at most %s, when your tokens expire (an admin can give a "
                            "later one)",
                            ts);
        return;
    }
    rotate(r, r->user->name, expires, true);
}

/* --- audit ---------------------------------------------------------------------------------- */

struct audit_ctx {
    json_t *entries;
};

static int add_entry(void *arg, const struct jz_audit_entry *e)
{
    struct audit_ctx *c = arg;
    char ts[40];
    jz_time_format_iso(e->time_ms, ts, sizeof ts);
    json_t *detail = NULL;
    if (e->detail)
        detail = json_loads(e->detail, 0, NULL);
    /* The store visits newest first; the answer is oldest first. */
    json_array_insert_new(c->entries, 0,
                          json_pack("{s:I, s:s, s:s, s:s, s:s?, s:s?, s:o?}", "id",
                                    (json_int_t)e->id, "time", ts, "who", e->actor, "action",
                                    e->action, "target", e->target, "address", e->address, "detail",
                                    detail));
    return 0;
}

void jz_api_admin_audit(struct jz_req *r)
{
    int64_t since = 0, limit = DEFAULT_AUDIT_LIMIT;
    const char *v;
    struct jz_error err = {0};
    if ((v = jz_req_query(r, "since")) && parse_when(v, -1, &since, &err)) {
        jz_http_reply_error(r, 400, "invalid", "since", "since: %s", err.msg);
        return;
    }
    if ((v = jz_req_query(r, "limit"))) {
        char *end;
        long long n = strtoll(v, &end, 10);
        if (*end || end == v || n < 1 || n > JZ_AUDIT_MAX_LIMIT) {
            jz_http_reply_error(r, 400, "invalid", "limit", "limit: 1-%d", JZ_AUDIT_MAX_LIMIT);
            return;
        }
        limit = n;
    }
    /* One more than asked, to tell whether older entries were left out. */
    struct audit_ctx c = {.entries = json_array()};
    if (r->srv->store->ops->audit_each(r->srv->store, since, limit + 1, add_entry, &c, &err)) {
        json_decref(c.entries);
        jz_http_reply_jz_error(r, &err, NULL);
        return;
    }
    bool truncated = (int64_t)json_array_size(c.entries) > limit;
    if (truncated)
        json_array_remove(c.entries, 0);
    jz_http_reply_json(r, 200,
                       json_pack("{s:o, s:b}", "entries", c.entries, "truncated", truncated));
}
