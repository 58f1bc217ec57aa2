/* Users, tenants and bearer tokens. Tokens are shown once and stored as SHA-256 hashes; each
 * request's token is checked against an in-memory map loaded from the store. */
#ifndef JZ_SERVER_AUTH_H
#define JZ_SERVER_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/server.h"

#define JZ_TOKEN_LEN 51 /* "jz_" + 48 hex digits */

struct jz_user {
    char name[JZ_MAX_NAME_LEN + 1];
    char tenant[JZ_MAX_NAME_LEN + 1];
    bool admin;
    int64_t created_ms;
};

/* Loads users from the store. On the first start (no admin yet) creates the user "admin" and
 * writes its token to STATE_DIR/admin.token (mode 0600). */
int jz_auth_open(struct jz_server *srv, struct jz_auth **out, struct jz_error *err);
void jz_auth_close(struct jz_auth *a);

/* The user holding the token in an "Authorization: Bearer TOKEN" header value, or NULL.
 * The user is owned by the auth module and lives until jz_auth_close. */
const struct jz_user *jz_auth_check(struct jz_auth *a, const char *authorization);

/* Creates a user and writes the new token into token (JZ_TOKEN_LEN + 1 bytes). Names are
 * [A-Za-z0-9._-]{1,128}. JZ_EEXIST when the name is taken. */
int jz_auth_user_add(struct jz_auth *a, const char *name, const char *tenant, bool admin,
                     char *token, struct jz_error *err);
/* Hex SHA-256 of a token or secret (what is stored instead of it). */
void jz_auth_hash(const char *text, char out[65]);
/* A new random secret: prefix followed by 48 hex digits (len >= strlen(prefix) + 49). */
int jz_auth_new_secret(const char *prefix, char *out, size_t len, struct jz_error *err);
/* All users as a JSON array of {name, tenant, role, created} (new reference). */
json_t *jz_auth_users_json(struct jz_auth *a);

#endif
