/* The durable store behind jazarid: users, tenants, jobs and job events.
 *
 * Writes are grouped: the first write after a commit opens a transaction and jz_store_commit()
 * closes it, so everything one loop iteration changed becomes durable together (group commit).
 * The service acknowledges a request only after the commit that holds its change.
 * The interface is a table of operations so that another backend (PostgreSQL) can serve larger
 * installations; SQLite in WAL mode is the embedded default. */
#ifndef JZ_SERVER_STORE_H
#define JZ_SERVER_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <jazari/error.h>

struct jz_store;

/* A user as stored. Strings are owned by the struct (see jz_store_user_free). */
struct jz_store_user {
    char *name;
    char *tenant;
    char *role;       /* "user" or "admin" */
    char *token_hash; /* hex SHA-256 of the token */
    int64_t created_ms;
};

/* Visits one row; return non-zero to stop. `row` is borrowed for the call only. */
typedef int (*jz_store_user_fn)(void *arg, const struct jz_store_user *row);
/* Visits one job, as its JSON record (borrowed for the call only). */
typedef int (*jz_store_job_fn)(void *arg, json_t *job);

struct jz_store_ops {
    const char *name;
    void (*close)(struct jz_store *s);
    int (*commit)(struct jz_store *s, struct jz_error *err);
    bool (*in_transaction)(struct jz_store *s);
    /* Adds a user; a name or token hash already present is an error, never a replacement. */
    int (*user_put)(struct jz_store *s, const struct jz_store_user *u, struct jz_error *err);
    int (*users_each)(struct jz_store *s, jz_store_user_fn fn, void *arg, struct jz_error *err);
    /* Inserts or replaces a job from its record (the record's "id" is the key). */
    int (*job_put)(struct jz_store *s, const json_t *job, struct jz_error *err);
    int (*jobs_each)(struct jz_store *s, jz_store_job_fn fn, void *arg, struct jz_error *err);
    int64_t (*job_max_id)(struct jz_store *s);
    int (*event_add)(struct jz_store *s, int64_t job_id, int64_t time_ms, const char *type,
                     const char *detail, struct jz_error *err);
    /* Calls fn(arg, time_ms, type, detail) for each event of the job, oldest first. */
    int (*events_each)(struct jz_store *s, int64_t job_id,
                       int (*fn)(void *arg, int64_t time_ms, const char *type, const char *detail),
                       void *arg, struct jz_error *err);
};

struct jz_store {
    const struct jz_store_ops *ops;
};

/* Opens (creating when missing) the SQLite store at path. *out is owned by the caller, who
 * closes it with jz_store_close(). */
int jz_store_sqlite_open(const char *path, struct jz_store **out, struct jz_error *err);

static inline void jz_store_close(struct jz_store *s)
{
    if (s)
        s->ops->close(s);
}

void jz_store_user_free(struct jz_store_user *u);

#endif
