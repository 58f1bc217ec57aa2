/* Users, tenants, bearer tokens and the audit log of administrative actions. Tokens are shown
 * once and stored as SHA-256 hashes; each request's token is checked against an in-memory map
 * loaded from the store.
 *
 * Conventions for the whole module: it runs on jazarid's event-loop thread only. Changes are
 * made in memory at once and queued into the store's current batch (replies that depend on them
 * wait for the group commit, see http.h). Users and strings returned are owned by the module:
 * a user stays valid until jz_auth_close, even after it was removed. */
#ifndef JZ_SERVER_AUTH_H
#define JZ_SERVER_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/server.h"

#define JZ_TOKEN_LEN 51     /* "jz_" + 48 hex digits */
#define JZ_TOKEN_ID_LEN 11  /* "tk_" + 8 hex digits: public, names a token in lists */
#define JZ_UNIX_USER_MAX 32 /* POSIX account names: [a-z_][a-z0-9_-]{0,31} */
#define JZ_MAX_TOKENS_PER_USER 32
#define JZ_MAX_TOKEN_TTL_S (10LL * 365 * 86400)
#define JZ_AUDIT_MAX_LIMIT 1000  /* entries in one GET /v1/admin/audit */
#define JZ_AUDIT_MAX_DETAIL 4096 /* bytes of one entry's detail (JSON text) */

struct jz_user {
    char name[JZ_MAX_NAME_LEN + 1];
    char tenant[JZ_MAX_NAME_LEN + 1];
    bool admin;
    bool tenant_admin; /* role "tenant-admin": manages its own tenant (docs/tenants.md) */
    int64_t created_ms;
    char unix_user[JZ_UNIX_USER_MAX + 1]; /* the user's own account; "" when none */
};

/* Whether u may manage tenant's members, reservations and statements: an admin, or a
 * tenant-admin of that tenant. */
bool jz_auth_may_manage_tenant(const struct jz_user *u, const char *tenant);
/* The user's role: "admin", "tenant-admin" or "user" (a static string). */
const char *jz_auth_role(const struct jz_user *u);
/* Reads a role name into the two flags; false (flags untouched) when it is none of the three. */
bool jz_auth_role_parse(const char *role, bool *admin, bool *tenant_admin);
/* Sets a user's role ("user", "tenant-admin" or "admin"). JZ_ENOENT, JZ_EINVAL ("role: ..."),
 * or JZ_EBUSY when it would leave no admin. */
int jz_auth_user_set_role(struct jz_auth *a, const char *name, const char *role,
                          struct jz_error *err);
/* Users of a tenant: how many, and as in jz_auth_users_json (new reference). */
size_t jz_auth_tenant_user_count(struct jz_auth *a, const char *tenant);
json_t *jz_auth_tenant_users_json(struct jz_auth *a, const char *tenant);

/* A token just made: the secret is shown to its holder once and never stored. */
struct jz_new_token {
    char token[JZ_TOKEN_LEN + 1];
    char id[JZ_TOKEN_ID_LEN + 1];
    int64_t expires_ms; /* 0: never */
};

/* Loads users and tokens from the store (moving users of the first schema, one token hash each,
 * to the current records), and the tenants' default Unix accounts from the configuration file's
 * "tenants" object, which is checked here: an unknown key or a wrong type is an error naming it.
 * On the first start (no admin yet) creates the user "admin" and writes its token to
 * STATE_DIR/admin.token (mode 0600). */
int jz_auth_open(struct jz_server *srv, struct jz_auth **out, struct jz_error *err);
/* Whether authorization ("Bearer TOKEN") carries the monitoring token (STATE/monitor.token),
 * which reads /metrics and nothing else. */
bool jz_auth_monitor_ok(struct jz_auth *a, const char *authorization);
/* Reads STATE/monitor.token again (made anew when missing): a reload rotates it. */
int jz_auth_reload_monitor_token(struct jz_auth *a, struct jz_error *err);
/* Replaces the tenants' defaults with the configuration's "tenants" (a reload); all or
 * nothing. With check_only it only validates. */
int jz_auth_set_tenants(struct jz_auth *a, const json_t *config, bool check_only,
                        struct jz_error *err);
/* Queues the last-used times not yet stored (the store, closed after, makes them durable). */
void jz_auth_close(struct jz_auth *a);

/* The user holding the token in an "Authorization: Bearer TOKEN" header value, or NULL. When
 * NULL and why is not NULL, writes why into why (len bytes): "missing bearer token", "invalid
 * token" (unknown, revoked or malformed) or "token tk_... expired at TIME". A successful check
 * records the token's last use in memory (stored lazily, see jz_auth_open). */
const struct jz_user *jz_auth_check_why(struct jz_auth *a, const char *authorization, char *why,
                                        size_t len);
/* jz_auth_check_why without the reason. */
const struct jz_user *jz_auth_check(struct jz_auth *a, const char *authorization);

/* The user named name, or NULL (removed users are not found). */
const struct jz_user *jz_auth_user_find(struct jz_auth *a, const char *name);

/* True when s is a POSIX account name: [a-z_][a-z0-9_-]{0,31}. */
bool jz_auth_unix_user_valid(const char *s);

/* The Unix account a user's jobs run as: its own, else its tenant's default from the
 * configuration file, else NULL. The string is owned by the auth module. */
const char *jz_auth_unix_account(struct jz_auth *a, const struct jz_user *u);

/* Creates a user with one token (expires_ms 0: never) and writes it into *tok. Names are
 * [A-Za-z0-9._-]{1,128}; unix_user (NULL or "" for none) as jz_auth_unix_user_valid. Errors
 * name their field at the start of err->msg ("name: ...", "tenant: ...", "unix_user: ...",
 * "expires: ..."); JZ_EEXIST when the name is taken. */
int jz_auth_user_add(struct jz_auth *a, const char *name, const char *tenant, bool admin,
                     const char *unix_user, int64_t expires_ms, struct jz_new_token *tok,
                     struct jz_error *err);
/* Sets (or with NULL or "" clears) a user's own Unix account. JZ_ENOENT, JZ_EINVAL. */
int jz_auth_user_set_unix(struct jz_auth *a, const char *name, const char *unix_user,
                          struct jz_error *err);
/* Removes a user and revokes its tokens at once; its jobs keep their records. JZ_ENOENT, or
 * JZ_EBUSY for the last admin. *revoked (may be NULL) gets the number of tokens revoked. */
int jz_auth_user_remove(struct jz_auth *a, const char *name, size_t *revoked, struct jz_error *err);

/* Adds a token to a user (at most JZ_MAX_TOKENS_PER_USER; expired ones are dropped first to make
 * room). JZ_ENOENT, JZ_ELIMIT, JZ_EINVAL (expires_ms in the past). */
int jz_auth_token_add(struct jz_auth *a, const char *user, int64_t expires_ms,
                      struct jz_new_token *tok, struct jz_error *err);
/* Revokes one token by id: refused from now on. JZ_ENOENT, or JZ_EBUSY when it is the last
 * valid token of the last admin (nobody could administer the service any more). *owner (may be
 * NULL) gets the name of the user who held it. */
int jz_auth_token_revoke(struct jz_auth *a, const char *id, const char **owner,
                         struct jz_error *err);
/* Gives a user a new token and revokes all its others. When the user is the bootstrap "admin",
 * STATE_DIR/admin.token is rewritten (mode 0600) before anything changes. *revoked (may be NULL)
 * gets the number of tokens revoked. JZ_ENOENT, JZ_EINVAL, JZ_EIO. */
int jz_auth_token_rotate(struct jz_auth *a, const char *user, int64_t expires_ms,
                         struct jz_new_token *tok, size_t *revoked, struct jz_error *err);
/* The latest expiry among a user's tokens that are still valid: 0 when one of them never
 * expires (or none is valid). A user rotating their own token gets no later expiry than this. */
int64_t jz_auth_token_latest_expiry(struct jz_auth *a, const struct jz_user *u);

/* Hex SHA-256 of a token or secret (what is stored instead of it). */
void jz_auth_hash(const char *text, char out[65]);
/* A new random secret: prefix followed by 48 hex digits (len >= strlen(prefix) + 49). */
int jz_auth_new_secret(const char *prefix, char *out, size_t len, struct jz_error *err);

/* All users as a JSON array of {name, tenant, role, created, tokens, unix_user?,
 * unix_user_from?} (new reference; see docs/rest-api.md). */
json_t *jz_auth_users_json(struct jz_auth *a);
/* Adds "unix_user" (jz_auth_unix_account) and "unix_user_from" ("user" or "tenant") to obj
 * when the user has an account; adds nothing otherwise. */
void jz_auth_unix_json(struct jz_auth *a, const struct jz_user *u, json_t *obj);
/* One user as in jz_auth_users_json (new reference). */
json_t *jz_auth_user_json(struct jz_auth *a, const struct jz_user *u);
/* Tokens (of user, or of everyone when user is NULL) as a JSON array of {id, user, created,
 * expires, last_used, expired} (new reference). */
json_t *jz_auth_tokens_json(struct jz_auth *a, const char *user);

/* Appends an entry to the audit log: who did action ("user.add", "node.drain", ...) to target
 * (may be NULL), from address (the client's, may be NULL), with detail (a JSON object, stolen,
 * may be NULL; replaced by {"truncated": true} when its text is over JZ_AUDIT_MAX_DETAIL bytes).
 * Queued into the current store batch, so that it is durable with the change it describes.
 * Handlers call jz_api_audit (api.h), which fills in the address. */
void jz_audit(struct jz_server *srv, const struct jz_user *who, const char *address,
              const char *action, const char *target, json_t *detail);

#endif
