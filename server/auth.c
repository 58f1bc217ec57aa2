/* Bearer-token authentication: random tokens, SHA-256 hashes at rest, an in-memory lookup. */
#include "server/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"

struct jz_auth {
    struct jz_server *srv;
    struct jz_user **users;
    size_t nusers, cap;
    json_t *by_hash; /* token hash -> index into users (as integer) */
};

void jz_auth_hash(const char *text, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int jz_auth_new_secret(const char *prefix, char *out, size_t len, struct jz_error *err)
{
    unsigned char raw[24];
    size_t plen = strlen(prefix);
    if (len < plen + 2 * sizeof raw + 1)
        return jz_error_set(err, JZ_ELIMIT, "secret buffer too small");
    if (RAND_bytes(raw, sizeof raw) != 1)
        return jz_error_set(err, JZ_EIO, "cannot generate a random token");
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + plen + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

static int new_token(char *token, struct jz_error *err)
{
    return jz_auth_new_secret("jz_", token, JZ_TOKEN_LEN + 1, err);
}

static int remember(struct jz_auth *a, const char *name, const char *tenant, bool admin,
                    int64_t created, const char *hash, struct jz_error *err)
{
    if (a->nusers == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        struct jz_user **grown = realloc(a->users, cap * sizeof *grown);
        if (!grown)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        a->users = grown;
        a->cap = cap;
    }
    struct jz_user *u = calloc(1, sizeof *u);
    if (!u)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    jz_strlcpy(u->name, name, sizeof u->name);
    jz_strlcpy(u->tenant, tenant, sizeof u->tenant);
    u->admin = admin;
    u->created_ms = created;
    json_object_set_new(a->by_hash, hash, json_integer((json_int_t)a->nusers));
    a->users[a->nusers++] = u;
    return 0;
}

static int load_user(void *arg, const struct jz_store_user *row)
{
    struct jz_auth *a = arg;
    return remember(a, row->name, row->tenant, strcmp(row->role, "admin") == 0, row->created_ms,
                    row->token_hash, NULL);
}

static int write_admin_token(const char *state_dir, const char *token, struct jz_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/admin.token", state_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "cannot write %s: %s", path, strerror(errno));
    fchmod(fd, 0600);
    char line[JZ_TOKEN_LEN + 2];
    int n = snprintf(line, sizeof line, "%s\n", token);
    bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    if (!ok)
        return jz_error_set(err, JZ_EIO, "cannot write %s", path);
    jz_log_info("auth", "first start: the admin token is in %s (mode 0600)", path);
    return 0;
}

int jz_auth_open(struct jz_server *srv, struct jz_auth **out, struct jz_error *err)
{
    struct jz_auth *a = calloc(1, sizeof *a);
    if (!a)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    a->srv = srv;
    a->by_hash = json_object();
    int rc = srv->store->ops->users_each(srv->store, load_user, a, err);
    if (rc)
        goto fail;
    bool have_admin = false;
    for (size_t i = 0; i < a->nusers; i++)
        have_admin |= a->users[i]->admin;
    if (!have_admin) {
        char token[JZ_TOKEN_LEN + 1];
        /* The token file first: a crash before the user is durable then just repeats this
         * at the next start, while the opposite order could leave an admin nobody can use. */
        rc = jz_auth_user_add(a, "admin", "admin", true, token, err);
        if (!rc)
            rc = write_admin_token(srv->cfg.state_dir, token, err);
        if (!rc)
            rc = srv->store->ops->sync(srv->store, err);
        if (rc)
            goto fail;
    }
    *out = a;
    return 0;
fail:
    jz_auth_close(a);
    return rc;
}

void jz_auth_close(struct jz_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nusers; i++)
        free(a->users[i]);
    free(a->users);
    json_decref(a->by_hash);
    free(a);
}

const struct jz_user *jz_auth_check(struct jz_auth *a, const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    if (strlen(token) != JZ_TOKEN_LEN)
        return NULL;
    char hash[65];
    jz_auth_hash(token, hash);
    json_t *idx = json_object_get(a->by_hash, hash);
    return idx ? a->users[json_integer_value(idx)] : NULL;
}

static const struct jz_user *user_find(struct jz_auth *a, const char *name)
{
    for (size_t i = 0; i < a->nusers; i++)
        if (strcmp(a->users[i]->name, name) == 0)
            return a->users[i];
    return NULL;
}

int jz_auth_user_add(struct jz_auth *a, const char *name, const char *tenant, bool admin,
                     char *token, struct jz_error *err)
{
    if (!jz_name_is_safe(name, JZ_MAX_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "name: use 1-%d of A-Z a-z 0-9 . _ -", JZ_MAX_NAME_LEN);
    if (!jz_name_is_safe(tenant, JZ_MAX_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "tenant: use 1-%d of A-Z a-z 0-9 . _ -",
                            JZ_MAX_NAME_LEN);
    if (user_find(a, name))
        return jz_error_set(err, JZ_EEXIST, "name: user '%s' already exists", name);
    char tok[JZ_TOKEN_LEN + 1], hash[65];
    int rc = new_token(tok, err);
    if (rc)
        return rc;
    jz_auth_hash(tok, hash);
    int64_t now = jz_time_now_ms();
    struct jz_store_user row = {.name = (char *)name, .tenant = (char *)tenant,
                                .role = admin ? "admin" : "user", .token_hash = hash,
                                .created_ms = now};
    rc = a->srv->store->ops->user_put(a->srv->store, &row, err);
    if (rc)
        return rc;
    rc = remember(a, name, tenant, admin, now, hash, err);
    if (rc)
        return rc;
    memcpy(token, tok, sizeof tok);
    return 0;
}

json_t *jz_auth_users_json(struct jz_auth *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < a->nusers; i++) {
        char ts[40];
        jz_time_format_iso(a->users[i]->created_ms, ts, sizeof ts);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "name", a->users[i]->name,
                                             "tenant", a->users[i]->tenant, "role",
                                             a->users[i]->admin ? "admin" : "user", "created", ts));
    }
    return arr;
}
