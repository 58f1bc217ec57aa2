/* Bearer-token authentication: users with several random tokens each (SHA-256 hashes at rest,
 * an in-memory lookup), tenants' default Unix accounts, and the audit log's writer.
 *
 * Stored as objects (store.h): "user" NAME -> {tenant, role, created_ms, unix_user?} and
 * "user_token" ID -> {user, hash, created_ms, expires_ms?, last_used_ms?}. A token's last use is
 * kept in memory and stored every LAST_USED_FLUSH_S at most (and at close), so that a request
 * never costs a write. */
#include "server/auth.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"

#define LAST_USED_FLUSH_S 300
#define BOOTSTRAP_ADMIN "admin"

struct account {
    struct jz_user u; /* first: the users this module hands out are accounts */
    size_t ntokens;
};

struct token {
    char id[JZ_TOKEN_ID_LEN + 1];
    char hash[65];
    struct account *owner;
    int64_t created_ms, expires_ms, last_used_ms;
    int64_t stored_last_used_ms; /* what the store holds */
};

struct tenant_default {
    char tenant[JZ_MAX_NAME_LEN + 1];
    char unix_user[JZ_UNIX_USER_MAX + 1];
};

struct jz_auth {
    struct jz_server *srv;
    struct account **users; /* active users */
    size_t nusers, cap;
    struct account **removed; /* kept until close: requests may still hold them */
    size_t nremoved, rcap;
    struct token **tokens;
    size_t ntokens, tcap;
    json_t *by_hash; /* token hash -> index into tokens (integer) */
    struct tenant_default *tenants;
    size_t ntenants;
    struct event *flush_ev;
    char monitor_hash[65]; /* of STATE/monitor.token: reads /metrics, nothing else */
};

/* The keys a tenant of the configuration file's "tenants" object may have. */
static const char *const tenant_keys[] = {"unix_user", NULL};

static struct account *account_of(const struct jz_user *u)
{
    return (struct account *)u;
}

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

bool jz_auth_unix_user_valid(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    size_t n = 1;
    for (const char *c = s + 1; *c; c++, n++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return false;
    return n <= JZ_UNIX_USER_MAX;
}

static bool grow(void **arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 16;
    void *grown = realloc(*arr, c * elem);
    if (!grown)
        return false;
    *arr = grown;
    *cap = c;
    return true;
}

static struct account *find_account(struct jz_auth *a, const char *name)
{
    for (size_t i = 0; i < a->nusers; i++)
        if (strcmp(a->users[i]->u.name, name) == 0)
            return a->users[i];
    return NULL;
}

const struct jz_user *jz_auth_user_find(struct jz_auth *a, const char *name)
{
    struct account *acc = find_account(a, name);
    return acc ? &acc->u : NULL;
}

static struct token *find_token(struct jz_auth *a, const char *id)
{
    for (size_t i = 0; i < a->ntokens; i++)
        if (strcmp(a->tokens[i]->id, id) == 0)
            return a->tokens[i];
    return NULL;
}

static bool token_valid(const struct token *t, int64_t now)
{
    return t->expires_ms == 0 || now < t->expires_ms;
}

/* --- store records ---------------------------------------------------------------------- */

static int store_user(struct jz_auth *a, const struct account *acc, struct jz_error *err)
{
    json_t *v =
        json_pack("{s:s, s:s, s:I}", "tenant", acc->u.tenant, "role", jz_auth_role(&acc->u),
                  "created_ms", (json_int_t)acc->u.created_ms);
    if (v && acc->u.unix_user[0])
        json_object_set_new(v, "unix_user", json_string(acc->u.unix_user));
    if (!v)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int rc = a->srv->store->ops->object_put(a->srv->store, "user", acc->u.name, v, err);
    json_decref(v);
    return rc;
}

static int store_token(struct jz_auth *a, struct token *t, struct jz_error *err)
{
    json_t *v = json_pack("{s:s, s:s, s:I}", "user", t->owner->u.name, "hash", t->hash,
                          "created_ms", (json_int_t)t->created_ms);
    if (v && t->expires_ms)
        json_object_set_new(v, "expires_ms", json_integer(t->expires_ms));
    if (v && t->last_used_ms)
        json_object_set_new(v, "last_used_ms", json_integer(t->last_used_ms));
    if (!v)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int rc = a->srv->store->ops->object_put(a->srv->store, "user_token", t->id, v, err);
    json_decref(v);
    if (!rc)
        t->stored_last_used_ms = t->last_used_ms;
    return rc;
}

/* --- in memory ---------------------------------------------------------------------------- */

static struct account *remember_user(struct jz_auth *a, const char *name, const char *tenant,
                                     bool admin, int64_t created, const char *unix_user,
                                     struct jz_error *err)
{
    struct account *acc = calloc(1, sizeof *acc);
    if (!acc || !grow((void **)&a->users, a->nusers, &a->cap, sizeof *a->users)) {
        free(acc);
        jz_error_set(err, JZ_ENOMEM, "out of memory");
        return NULL;
    }
    jz_strlcpy(acc->u.name, name, sizeof acc->u.name);
    jz_strlcpy(acc->u.tenant, tenant, sizeof acc->u.tenant);
    jz_strlcpy(acc->u.unix_user, unix_user ? unix_user : "", sizeof acc->u.unix_user);
    acc->u.admin = admin;
    acc->u.created_ms = created;
    a->users[a->nusers++] = acc;
    return acc;
}

static struct token *remember_token(struct jz_auth *a, struct account *owner, const char *id,
                                    const char *hash, int64_t created, int64_t expires,
                                    int64_t last_used, struct jz_error *err)
{
    struct token *t = calloc(1, sizeof *t);
    if (!t || !grow((void **)&a->tokens, a->ntokens, &a->tcap, sizeof *a->tokens)) {
        free(t);
        jz_error_set(err, JZ_ENOMEM, "out of memory");
        return NULL;
    }
    jz_strlcpy(t->id, id, sizeof t->id);
    jz_strlcpy(t->hash, hash, sizeof t->hash);
    t->owner = owner;
    t->created_ms = created;
    t->expires_ms = expires;
    t->last_used_ms = t->stored_last_used_ms = last_used;
    json_object_set_new(a->by_hash, hash, json_integer((json_int_t)a->ntokens));
    a->tokens[a->ntokens++] = t;
    owner->ntokens++;
    return t;
}

/* Forgets a token (it is refused from now on) and queues its deletion. */
static void drop_token(struct jz_auth *a, struct token *t)
{
    size_t i = (size_t)json_integer_value(json_object_get(a->by_hash, t->hash));
    struct token *last = a->tokens[--a->ntokens];
    a->tokens[i] = last;
    json_object_set_new(a->by_hash, last->hash, json_integer((json_int_t)i));
    json_object_del(a->by_hash, t->hash);
    t->owner->ntokens--;
    struct jz_error err = {0};
    if (a->srv->store->ops->object_put(a->srv->store, "user_token", t->id, NULL, &err))
        jz_log_error("auth", "token %s of %s: %s", t->id, t->owner->u.name, err.msg);
    free(t);
}

static int new_token_id(struct jz_auth *a, char id[JZ_TOKEN_ID_LEN + 1], struct jz_error *err)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned char raw[4];
        if (RAND_bytes(raw, sizeof raw) != 1)
            return jz_error_set(err, JZ_EIO, "cannot generate a random token id");
        snprintf(id, JZ_TOKEN_ID_LEN + 1, "tk_%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3]);
        if (!find_token(a, id))
            return 0;
    }
    return jz_error_set(err, JZ_EIO, "cannot find a free token id");
}

/* A new secret and id, changing nothing yet (what can fail for want of randomness fails here,
 * before any change). */
static int prepare_token(struct jz_auth *a, int64_t expires_ms, struct jz_new_token *nt,
                         struct jz_error *err)
{
    memset(nt, 0, sizeof *nt);
    nt->expires_ms = expires_ms;
    int rc = jz_auth_new_secret("jz_", nt->token, sizeof nt->token, err);
    return rc ? rc : new_token_id(a, nt->id, err);
}

/* Gives acc the prepared token: remembered and stored. */
static int install_token(struct jz_auth *a, struct account *acc, const struct jz_new_token *nt,
                         struct jz_error *err)
{
    char hash[65];
    jz_auth_hash(nt->token, hash);
    struct token *t =
        remember_token(a, acc, nt->id, hash, jz_time_now_ms(), nt->expires_ms, 0, err);
    return t ? store_token(a, t, err) : JZ_ENOMEM;
}

static int check_expiry(int64_t expires_ms, struct jz_error *err)
{
    int64_t now = jz_time_now_ms();
    if (expires_ms < 0 || (expires_ms && expires_ms <= now))
        return jz_error_set(err, JZ_EINVAL, "expires: the time is in the past");
    if (expires_ms > now + JZ_MAX_TOKEN_TTL_S * 1000)
        return jz_error_set(err, JZ_EINVAL, "expires: at most %lld days ahead",
                            JZ_MAX_TOKEN_TTL_S / 86400);
    return 0;
}

/* --- loading -------------------------------------------------------------------------------- */

/* What the loading visitors share: they stop with rc set when something fails. */
struct loading {
    struct jz_auth *a;
    size_t moved;
    int rc;
    struct jz_error *err;
};

static int load_user_obj(void *arg, const char *key, json_t *v)
{
    struct loading *l = arg;
    const char *unix_user = jz_json_str(v, "unix_user", "");
    if (!jz_name_is_safe(key, JZ_MAX_NAME_LEN)) {
        jz_log_warn("auth", "user record '%.64s': a bad name; it is ignored", key);
        return 0;
    }
    /* An unknown role (a newer version's) gives no rights rather than refusing to start. */
    bool admin = false, tenant_admin = false;
    (void)jz_auth_role_parse(jz_json_str(v, "role", "user"), &admin, &tenant_admin);
    struct account *acc = remember_user(l->a, key, jz_json_str(v, "tenant", ""), admin,
                                        jz_json_int(v, "created_ms", 0),
                                        jz_auth_unix_user_valid(unix_user) ? unix_user : "", l->err);
    if (!acc)
        l->rc = JZ_ENOMEM;
    else
        acc->u.tenant_admin = tenant_admin;
    return l->rc != 0;
}

static int load_token_obj(void *arg, const char *key, json_t *v)
{
    struct loading *l = arg;
    struct account *owner = find_account(l->a, jz_json_str(v, "user", ""));
    const char *hash = jz_json_str(v, "hash", "");
    if (!owner || strlen(hash) != 64 || strlen(key) > JZ_TOKEN_ID_LEN) {
        jz_log_warn("auth", "token %.32s: no such user or a bad record; it is ignored", key);
        return 0;
    }
    if (!remember_token(l->a, owner, key, hash, jz_json_int(v, "created_ms", 0),
                        jz_json_int(v, "expires_ms", 0), jz_json_int(v, "last_used_ms", 0), l->err))
        l->rc = JZ_ENOMEM;
    return l->rc != 0;
}

/* A user row of the first schema: one token, no expiry. Moved to the current records in the
 * batch that deletes the row, so that a crash leaves one or the other. */
static int migrate_user(void *arg, const struct jz_store_user *row)
{
    struct loading *m = arg;
    struct jz_auth *a = m->a;
    struct account *acc = find_account(a, row->name);
    if (!acc) {
        acc = remember_user(a, row->name, row->tenant, strcmp(row->role, "admin") == 0,
                            row->created_ms, "", m->err);
        char id[JZ_TOKEN_ID_LEN + 1];
        struct token *t = NULL;
        if (acc && !(m->rc = new_token_id(a, id, m->err)))
            t = remember_token(a, acc, id, row->token_hash, row->created_ms, 0, 0, m->err);
        if (!acc || !t) {
            m->rc = m->rc ? m->rc : JZ_ENOMEM;
            return 1;
        }
        if ((m->rc = store_user(a, acc, m->err)) || (m->rc = store_token(a, t, m->err)))
            return 1;
    }
    m->rc = a->srv->store->ops->user_del(a->srv->store, row->name, m->err);
    m->moved++;
    return m->rc != 0;
}

/* The configuration file's "tenants": {"T": {"unix_user": "acct"}}, parsed into a->tenants
 * (which the caller swaps in or frees). */
static int parse_tenants(struct jz_auth *a, const json_t *config, struct jz_error *err)
{
    a->tenants = NULL;
    a->ntenants = 0;
    const json_t *tenants = json_object_get(config, "tenants");
    if (!tenants || json_is_null(tenants))
        return 0;
    if (!json_is_object(tenants))
        return jz_error_set(err, JZ_EINVAL, "config: tenants: expected an object");
    a->tenants = calloc(json_object_size(tenants) + 1, sizeof *a->tenants);
    if (!a->tenants)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    const char *name;
    json_t *t;
    json_object_foreach((json_t *)tenants, name, t)
    {
        if (!jz_name_is_safe(name, JZ_MAX_NAME_LEN))
            return jz_error_set(err, JZ_EINVAL,
                                "config: tenants.%.64s: a tenant name is 1-%d of A-Z a-z 0-9 . _ -",
                                name, JZ_MAX_NAME_LEN);
        if (!json_is_object(t))
            return jz_error_set(err, JZ_EINVAL, "config: tenants.%s: expected an object", name);
        const char *key;
        json_t *v;
        json_object_foreach(t, key, v)
        {
            bool known = false;
            for (const char *const *k = tenant_keys; *k; k++)
                known |= strcmp(*k, key) == 0;
            if (!known)
                return jz_error_set(err, JZ_EINVAL,
                                    "config: tenants.%s.%.64s: unknown key (known: unix_user)",
                                    name, key);
        }
        struct tenant_default *d = &a->tenants[a->ntenants];
        json_t *uu = json_object_get(t, "unix_user");
        if (uu && !json_is_null(uu)) {
            if (!json_is_string(uu) || !jz_auth_unix_user_valid(json_string_value(uu)))
                return jz_error_set(err, JZ_EINVAL,
                                    "config: tenants.%s.unix_user: expected a POSIX account "
                                    "name ([a-z_][a-z0-9_-]{0,31})",
                                    name);
            jz_strlcpy(d->unix_user, json_string_value(uu), sizeof d->unix_user);
        }
        jz_strlcpy(d->tenant, name, sizeof d->tenant);
        a->ntenants++;
    }
    return 0;
}

static int load_tenants(struct jz_auth *a, const json_t *config, struct jz_error *err)
{
    return parse_tenants(a, config, err);
}

int jz_auth_set_tenants(struct jz_auth *a, const json_t *config, bool check_only,
                        struct jz_error *err)
{
    struct jz_auth scratch = {0};
    int rc = parse_tenants(&scratch, config, err);
    if (rc || check_only) {
        free(scratch.tenants);
        return rc;
    }
    free(a->tenants);
    a->tenants = scratch.tenants;
    a->ntenants = scratch.ntenants;
    return 0;
}

static int write_token_file(const char *state_dir, const char *name, const char *token,
                            struct jz_error *err)
{
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/%s", state_dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* A new file renamed over the old one: the file holds the old token or the new one,
     * never half of either, and was never readable by others. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "cannot write %s: %s", tmp, strerror(errno));
    fchmod(fd, 0600);
    char line[JZ_TOKEN_LEN + 16];
    int n = snprintf(line, sizeof line, "%s\n", token);
    bool ok = n > 0 && (size_t)n < sizeof line && write(fd, line, (size_t)n) == n &&
              fsync(fd) == 0;
    ok &= close(fd) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return jz_error_set(err, JZ_EIO, "cannot write %s", path);
    }
    return 0;
}

/* The monitoring token: what Prometheus presents to read /metrics (which names tenants, users
 * and jobs, so it is not public), without an admin's powers. Kept in STATE/monitor.token (0600),
 * made at the first start, and again whenever the file is missing (delete it and restart or
 * reload to rotate it). Only its hash stays in memory. */
static int load_monitor_token(struct jz_auth *a, const char *state_dir, struct jz_error *err)
{
    char path[4200], token[JZ_TOKEN_LEN + 64];
    snprintf(path, sizeof path, "%s/monitor.token", state_dir);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        int rc = jz_auth_new_secret("jzm_", token, sizeof token, err);
        if (!rc)
            rc = write_token_file(state_dir, "monitor.token", token, err);
        if (rc)
            return rc;
        jz_log_info("auth", "the monitoring token (for /metrics) is in %s (mode 0600)", path);
    } else {
        ssize_t n = fd >= 0 ? read(fd, token, sizeof token - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n <= 0)
            return jz_error_set(err, JZ_EIO, "cannot read %s: %s", path,
                                n < 0 ? strerror(errno) : "empty");
        token[n] = '\0';
        token[strcspn(token, "\r\n")] = '\0';
        if (strlen(token) < 16)
            return jz_error_set(err, JZ_EINVAL, "%s: too short to be a token", path);
    }
    jz_auth_hash(token, a->monitor_hash);
    OPENSSL_cleanse(token, sizeof token);
    return 0;
}

bool jz_auth_monitor_ok(struct jz_auth *a, const char *authorization)
{
    if (!a || !a->monitor_hash[0] || !authorization || strncasecmp(authorization, "Bearer ", 7))
        return false;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    if (strlen(token) > 256)
        return false;
    char hash[65];
    jz_auth_hash(token, hash);
    return CRYPTO_memcmp(hash, a->monitor_hash, 64) == 0;
}

int jz_auth_reload_monitor_token(struct jz_auth *a, struct jz_error *err)
{
    return load_monitor_token(a, a->srv->cfg.state_dir, err);
}

/* Stores the last-used times that changed since they were last stored. */
static size_t flush_last_used(struct jz_auth *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->ntokens; i++) {
        struct token *t = a->tokens[i];
        struct jz_error err = {0};
        if (t->last_used_ms == t->stored_last_used_ms)
            continue;
        if (store_token(a, t, &err))
            jz_log_error("auth", "token %s of %s: %s", t->id, t->owner->u.name, err.msg);
        else
            n++;
    }
    return n;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct jz_auth *a = arg;
    if (flush_last_used(a))
        jz_server_request_commit(a->srv);
}

int jz_auth_open(struct jz_server *srv, struct jz_auth **out, struct jz_error *err)
{
    struct jz_auth *a = calloc(1, sizeof *a);
    if (!a)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    a->srv = srv;
    a->by_hash = json_object();
    struct jz_store *st = srv->store;
    int rc = JZ_ENOMEM;
    if (!a->by_hash)
        goto fail;
    if ((rc = load_tenants(a, srv->config, err)))
        goto fail;
    struct loading m = {.a = a, .err = err};
    if ((rc = st->ops->objects_each(st, "user", load_user_obj, &m, err)) || (rc = m.rc) ||
        (rc = st->ops->objects_each(st, "user_token", load_token_obj, &m, err)) || (rc = m.rc) ||
        (rc = st->ops->users_each(st, migrate_user, &m, err)) || (rc = m.rc))
        goto fail;
    if (m.moved) {
        if ((rc = st->ops->sync(st, err)))
            goto fail;
        jz_log_info("auth", "moved %zu users of the first schema to tokens with ids", m.moved);
    }
    bool have_admin = false;
    for (size_t i = 0; i < a->nusers; i++)
        have_admin |= a->users[i]->u.admin;
    if (!have_admin) {
        struct jz_new_token tok;
        /* The user first, then its token file, then both durable: a crash before the sync
         * repeats this at the next start. */
        rc = jz_auth_user_add(a, BOOTSTRAP_ADMIN, BOOTSTRAP_ADMIN, true, NULL, 0, &tok, err);
        if (!rc)
            rc = write_token_file(srv->cfg.state_dir, "admin.token", tok.token, err);
        if (!rc)
            rc = st->ops->sync(st, err);
        if (rc)
            goto fail;
        jz_log_info("auth", "first start: the admin token is in %s/admin.token (mode 0600)",
                    srv->cfg.state_dir);
    }
    if ((rc = load_monitor_token(a, srv->cfg.state_dir, err)))
        goto fail;
    if (srv->base) {
        a->flush_ev = event_new(srv->base, -1, EV_PERSIST, on_flush, a);
        struct timeval every = {.tv_sec = LAST_USED_FLUSH_S};
        if (a->flush_ev)
            event_add(a->flush_ev, &every);
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
    if (a->flush_ev)
        event_free(a->flush_ev);
    flush_last_used(a); /* queued: jazarid closes the store after this, which makes it durable */
    for (size_t i = 0; i < a->ntokens; i++)
        free(a->tokens[i]);
    for (size_t i = 0; i < a->nusers; i++)
        free(a->users[i]);
    for (size_t i = 0; i < a->nremoved; i++)
        free(a->removed[i]);
    free(a->tokens);
    free(a->users);
    free(a->removed);
    free(a->tenants);
    json_decref(a->by_hash);
    free(a);
}

/* --- checking ------------------------------------------------------------------------------- */

static void set_why(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t len, const char *fmt, ...)
{
    if (!why || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

const struct jz_user *jz_auth_check_why(struct jz_auth *a, const char *authorization, char *why,
                                        size_t len)
{
    if (!authorization) {
        set_why(why, len, "missing bearer token");
        return NULL;
    }
    if (strncasecmp(authorization, "Bearer ", 7) != 0) {
        set_why(why, len, "invalid token (expected 'Bearer TOKEN')");
        return NULL;
    }
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    json_t *idx = NULL;
    if (strlen(token) == JZ_TOKEN_LEN) {
        char hash[65];
        jz_auth_hash(token, hash);
        idx = json_object_get(a->by_hash, hash);
    }
    if (!idx) {
        set_why(why, len, "invalid token");
        return NULL;
    }
    struct token *t = a->tokens[json_integer_value(idx)];
    int64_t now = jz_time_now_ms();
    if (!token_valid(t, now)) {
        char ts[40];
        jz_time_format_iso(t->expires_ms, ts, sizeof ts);
        set_why(why, len, "token %s expired at %s", t->id, ts);
        return NULL;
    }
    t->last_used_ms = now;
    return &t->owner->u;
}

const struct jz_user *jz_auth_check(struct jz_auth *a, const char *authorization)
{
    return jz_auth_check_why(a, authorization, NULL, 0);
}

const char *jz_auth_unix_account(struct jz_auth *a, const struct jz_user *u)
{
    if (!u)
        return NULL;
    if (u->unix_user[0])
        return u->unix_user;
    for (size_t i = 0; i < a->ntenants; i++)
        if (a->tenants[i].unix_user[0] && strcmp(a->tenants[i].tenant, u->tenant) == 0)
            return a->tenants[i].unix_user;
    return NULL;
}

/* --- changes -------------------------------------------------------------------------------- */

int jz_auth_user_add(struct jz_auth *a, const char *name, const char *tenant, bool admin,
                     const char *unix_user, int64_t expires_ms, struct jz_new_token *tok,
                     struct jz_error *err)
{
    if (!jz_name_is_safe(name, JZ_MAX_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "name: use 1-%d of A-Z a-z 0-9 . _ -", JZ_MAX_NAME_LEN);
    if (!jz_name_is_safe(tenant, JZ_MAX_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "tenant: use 1-%d of A-Z a-z 0-9 . _ -",
                            JZ_MAX_NAME_LEN);
    if (unix_user && *unix_user && !jz_auth_unix_user_valid(unix_user))
        return jz_error_set(err, JZ_EINVAL,
                            "unix_user: expected a POSIX account name ([a-z_][a-z0-9_-]{0,31})");
    int rc = check_expiry(expires_ms, err);
    if (rc)
        return rc;
    if (find_account(a, name))
        return jz_error_set(err, JZ_EEXIST, "name: user '%s' already exists", name);
    struct jz_new_token nt;
    if ((rc = prepare_token(a, expires_ms, &nt, err)))
        return rc;
    struct account *acc = remember_user(a, name, tenant, admin, jz_time_now_ms(), unix_user, err);
    if (!acc)
        return JZ_ENOMEM;
    if ((rc = store_user(a, acc, err)) || (rc = install_token(a, acc, &nt, err)))
        return rc;
    *tok = nt;
    return 0;
}

int jz_auth_user_set_unix(struct jz_auth *a, const char *name, const char *unix_user,
                          struct jz_error *err)
{
    struct account *acc = find_account(a, name);
    if (!acc)
        return jz_error_set(err, JZ_ENOENT, "name: no user named '%s'", name);
    if (unix_user && *unix_user && !jz_auth_unix_user_valid(unix_user))
        return jz_error_set(err, JZ_EINVAL,
                            "unix_user: expected a POSIX account name ([a-z_][a-z0-9_-]{0,31})");
    jz_strlcpy(acc->u.unix_user, unix_user ? unix_user : "", sizeof acc->u.unix_user);
    return store_user(a, acc, err);
}

static size_t count_admins(struct jz_auth *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nusers; i++)
        n += a->users[i]->u.admin;
    return n;
}

int jz_auth_user_remove(struct jz_auth *a, const char *name, size_t *revoked, struct jz_error *err)
{
    struct account *acc = find_account(a, name);
    if (!acc)
        return jz_error_set(err, JZ_ENOENT, "name: no user named '%s'", name);
    if (acc->u.admin && count_admins(a) == 1)
        return jz_error_set(err, JZ_EBUSY, "name: '%s' is the last admin; add another admin first",
                            name);
    if (!grow((void **)&a->removed, a->nremoved, &a->rcap, sizeof *a->removed))
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int rc = a->srv->store->ops->object_put(a->srv->store, "user", acc->u.name, NULL, err);
    if (rc)
        return rc;
    size_t n = 0;
    for (size_t i = a->ntokens; i-- > 0;)
        if (a->tokens[i]->owner == acc) {
            drop_token(a, a->tokens[i]);
            n++;
        }
    for (size_t i = 0; i < a->nusers; i++)
        if (a->users[i] == acc) {
            a->users[i] = a->users[--a->nusers];
            break;
        }
    a->removed[a->nremoved++] = acc;
    if (revoked)
        *revoked = n;
    return 0;
}

int jz_auth_token_add(struct jz_auth *a, const char *user, int64_t expires_ms,
                      struct jz_new_token *tok, struct jz_error *err)
{
    struct account *acc = find_account(a, user);
    if (!acc)
        return jz_error_set(err, JZ_ENOENT, "user: no user named '%s'", user);
    int rc = check_expiry(expires_ms, err);
    if (rc)
        return rc;
    int64_t now = jz_time_now_ms();
    for (size_t i = a->ntokens; acc->ntokens >= JZ_MAX_TOKENS_PER_USER && i-- > 0;)
        if (a->tokens[i]->owner == acc && !token_valid(a->tokens[i], now))
            drop_token(a, a->tokens[i]);
    if (acc->ntokens >= JZ_MAX_TOKENS_PER_USER)
        return jz_error_set(err, JZ_ELIMIT,
                            "user: '%s' holds %d tokens, the most allowed; revoke one first", user,
                            JZ_MAX_TOKENS_PER_USER);
    struct jz_new_token nt;
    if ((rc = prepare_token(a, expires_ms, &nt, err)) || (rc = install_token(a, acc, &nt, err)))
        return rc;
    *tok = nt;
    return 0;
}

int jz_auth_token_revoke(struct jz_auth *a, const char *id, const char **owner,
                         struct jz_error *err)
{
    struct token *t = find_token(a, id);
    if (!t)
        return jz_error_set(err, JZ_ENOENT, "id: no token %.32s", id);
    int64_t now = jz_time_now_ms();
    if (t->owner->u.admin && count_admins(a) == 1 && token_valid(t, now)) {
        size_t valid = 0;
        for (size_t i = 0; i < a->ntokens; i++)
            valid += a->tokens[i]->owner == t->owner && token_valid(a->tokens[i], now);
        if (valid == 1)
            return jz_error_set(err, JZ_EBUSY,
                                "id: %s is the last valid token of the last admin '%s'; rotate "
                                "it instead",
                                id, t->owner->u.name);
    }
    if (owner)
        *owner = t->owner->u.name; /* accounts outlive their tokens */
    drop_token(a, t);
    return 0;
}

int jz_auth_token_rotate(struct jz_auth *a, const char *user, int64_t expires_ms,
                         struct jz_new_token *tok, size_t *revoked, struct jz_error *err)
{
    struct account *acc = find_account(a, user);
    if (!acc)
        return jz_error_set(err, JZ_ENOENT, "user: no user named '%s'", user);
    int rc = check_expiry(expires_ms, err);
    if (rc)
        return rc;
    struct jz_new_token nt;
    if ((rc = prepare_token(a, expires_ms, &nt, err)))
        return rc;
    /* The admin's token file before any change: when it cannot be written, nothing changed. */
    bool bootstrap = acc->u.admin && strcmp(acc->u.name, BOOTSTRAP_ADMIN) == 0;
    if (bootstrap &&
        (rc = write_token_file(a->srv->cfg.state_dir, "admin.token", nt.token, err)))
        return rc;
    size_t n = 0;
    for (size_t i = a->ntokens; i-- > 0;)
        if (a->tokens[i]->owner == acc) {
            drop_token(a, a->tokens[i]);
            n++;
        }
    if ((rc = install_token(a, acc, &nt, err)))
        return rc;
    if (bootstrap)
        jz_log_info("auth", "the admin token was rotated; %s/admin.token holds the new one",
                    a->srv->cfg.state_dir);
    *tok = nt;
    if (revoked)
        *revoked = n;
    return 0;
}

int64_t jz_auth_token_latest_expiry(struct jz_auth *a, const struct jz_user *u)
{
    int64_t now = jz_time_now_ms(), latest = 0;
    for (size_t i = 0; i < a->ntokens; i++) {
        struct token *t = a->tokens[i];
        if (&t->owner->u != u || !token_valid(t, now))
            continue;
        if (t->expires_ms == 0)
            return 0;
        if (t->expires_ms > latest)
            latest = t->expires_ms;
    }
    return latest;
}

/* --- JSON ----------------------------------------------------------------------------------- */

void jz_auth_unix_json(struct jz_auth *a, const struct jz_user *u, json_t *obj)
{
    const char *acct = jz_auth_unix_account(a, u);
    if (!obj || !acct)
        return;
    json_object_set_new(obj, "unix_user", json_string(acct));
    json_object_set_new(obj, "unix_user_from", json_string(u->unix_user[0] ? "user" : "tenant"));
}

json_t *jz_auth_user_json(struct jz_auth *a, const struct jz_user *u)
{
    char ts[40];
    jz_time_format_iso(u->created_ms, ts, sizeof ts);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", u->name, "tenant", u->tenant, "role",
                          jz_auth_role(u), "created", ts, "tokens",
                          (json_int_t)account_of(u)->ntokens);
    jz_auth_unix_json(a, u, o);
    return o;
}

static int cmp_account(const void *x, const void *y)
{
    return strcmp((*(struct account *const *)x)->u.name, (*(struct account *const *)y)->u.name);
}

json_t *jz_auth_users_json(struct jz_auth *a)
{
    json_t *arr = json_array();
    struct account **sorted = malloc((a->nusers + 1) * sizeof *sorted);
    if (!arr || !sorted) {
        free(sorted);
        return arr;
    }
    memcpy(sorted, a->users, a->nusers * sizeof *sorted);
    qsort(sorted, a->nusers, sizeof *sorted, cmp_account);
    for (size_t i = 0; i < a->nusers; i++)
        json_array_append_new(arr, jz_auth_user_json(a, &sorted[i]->u));
    free(sorted);
    return arr;
}

static json_t *time_or_null(int64_t ms)
{
    if (!ms)
        return json_null();
    char ts[40];
    jz_time_format_iso(ms, ts, sizeof ts);
    return json_string(ts);
}

static int cmp_token(const void *x, const void *y)
{
    const struct token *p = *(struct token *const *)x, *q = *(struct token *const *)y;
    int c = strcmp(p->owner->u.name, q->owner->u.name);
    if (c)
        return c;
    return p->created_ms < q->created_ms ? -1 : p->created_ms > q->created_ms;
}

json_t *jz_auth_tokens_json(struct jz_auth *a, const char *user)
{
    json_t *arr = json_array();
    struct token **sorted = malloc((a->ntokens + 1) * sizeof *sorted);
    if (!arr || !sorted) {
        free(sorted);
        return arr;
    }
    memcpy(sorted, a->tokens, a->ntokens * sizeof *sorted);
    qsort(sorted, a->ntokens, sizeof *sorted, cmp_token);
    int64_t now = jz_time_now_ms();
    char ts[40];
    for (size_t i = 0; i < a->ntokens; i++) {
        struct token *t = sorted[i];
        if (user && strcmp(t->owner->u.name, user) != 0)
            continue;
        jz_time_format_iso(t->created_ms, ts, sizeof ts);
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:s, s:o, s:o, s:b}", "id", t->id, "user", t->owner->u.name,
                           "created", ts, "expires", time_or_null(t->expires_ms), "last_used",
                           time_or_null(t->last_used_ms), "expired", !token_valid(t, now)));
    }
    free(sorted);
    return arr;
}

/* --- audit ---------------------------------------------------------------------------------- */

void jz_audit(struct jz_server *srv, const struct jz_user *who, const char *address,
              const char *action, const char *target, json_t *detail)
{
    char *text = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    if (text && strlen(text) > JZ_AUDIT_MAX_DETAIL) {
        free(text);
        text = strdup("{\"truncated\":true}");
    }
    char tgt[JZ_MAX_NAME_LEN * 2 + 1];
    if (target)
        jz_strlcpy(tgt, target, sizeof tgt);
    struct jz_audit_entry e = {.time_ms = jz_time_now_ms(),
                               .actor = who ? who->name : "-",
                               .action = action,
                               .target = target ? tgt : NULL,
                               .address = address,
                               .detail = text};
    struct jz_error err = {0};
    if (srv->store->ops->audit_add(srv->store, &e, &err))
        jz_log_error("auth", "audit %s %s by %s not recorded: %s", action, target ? tgt : "-",
                     e.actor, err.msg);
    free(text);
}

bool jz_auth_may_manage_tenant(const struct jz_user *u, const char *tenant)
{
    return u && (u->admin || (u->tenant_admin && tenant && strcmp(u->tenant, tenant) == 0));
}

const char *jz_auth_role(const struct jz_user *u)
{
    return u->admin ? "admin" : u->tenant_admin ? "tenant-admin" : "user";
}

bool jz_auth_role_parse(const char *role, bool *admin, bool *tenant_admin)
{
    if (!role || (strcmp(role, "admin") != 0 && strcmp(role, "tenant-admin") != 0 &&
                  strcmp(role, "user") != 0))
        return false;
    *admin = strcmp(role, "admin") == 0;
    *tenant_admin = strcmp(role, "tenant-admin") == 0;
    return true;
}

int jz_auth_user_set_role(struct jz_auth *a, const char *name, const char *role,
                          struct jz_error *err)
{
    struct account *acc = find_account(a, name);
    if (!acc)
        return jz_error_set(err, JZ_ENOENT, "name: no user named '%s'", name);
    bool admin = false, tenant_admin = false;
    if (!jz_auth_role_parse(role, &admin, &tenant_admin))
        return jz_error_set(err, JZ_EINVAL, "role: must be user, tenant-admin or admin");
    if (acc->u.admin && !admin && count_admins(a) == 1)
        return jz_error_set(err, JZ_EBUSY, "role: '%s' is the last admin; add another admin first",
                            name);
    bool was_admin = acc->u.admin, was_tadmin = acc->u.tenant_admin;
    acc->u.admin = admin;
    acc->u.tenant_admin = tenant_admin;
    int rc = store_user(a, acc, err);
    if (rc) {
        acc->u.admin = was_admin;
        acc->u.tenant_admin = was_tadmin;
    }
    return rc;
}

size_t jz_auth_tenant_user_count(struct jz_auth *a, const char *tenant)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nusers; i++)
        n += strcmp(a->users[i]->u.tenant, tenant) == 0;
    return n;
}

json_t *jz_auth_tenant_users_json(struct jz_auth *a, const char *tenant)
{
    json_t *all = jz_auth_users_json(a), *arr = json_array();
    size_t i;
    json_t *u;
    json_array_foreach(all, i, u)
    {
        if (strcmp(jz_json_str(u, "tenant", ""), tenant) == 0)
            json_array_append(arr, u);
    }
    json_decref(all);
    return arr;
}
