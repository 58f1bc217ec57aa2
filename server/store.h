/* The durable store behind jazarid: users, tenants, jobs, job events and the audit log.
 *
 * jazarid's event loop never waits for the disk. Writes are queued into the current *batch*;
 * jz_store_seal() hands the batch to a writer thread, which applies it in one transaction and
 * makes it durable (group commit), in order, while the loop goes on with the next batch. When a
 * batch is durable the loop learns it through completion_fd()/completions(), and only then are
 * the replies that depended on it sent (and the workers of jobs it started launched).
 *
 * The interface is a table of operations so that another backend (PostgreSQL) can serve larger
 * installations; SQLite in WAL mode is the embedded default. Reads (users_each, jobs_each,
 * job_max_id) are for start-up; events_each reads what is already durable. */
#ifndef JZ_SERVER_STORE_H
#define JZ_SERVER_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <jazari/error.h>

struct jz_store;

/* A user as stored in the first schema (one token each). auth.c reads these rows only to move
 * them to "user" and "token" objects, then deletes them (user_del). */
struct jz_store_user {
    char *name;
    char *tenant;
    char *role;       /* "user" or "admin" */
    char *token_hash; /* hex SHA-256 of the token */
    int64_t created_ms;
};

/* One movement of compute credit, in GPU-seconds: a grant (positive, or negative to correct
 * one) or a job's charge. Strings are borrowed. */
struct jz_ledger_entry {
    int64_t time_ms;
    const char *tenant;
    const char *kind;   /* "grant" or "charge" */
    double gpu_seconds; /* grants add, charges subtract (stored positive) */
    int64_t job_id;     /* 0 for grants */
    const char *plugin; /* the job's plugin, or NULL */
    const char *note;   /* who/why, or NULL */
};
typedef int (*jz_store_ledger_fn)(void *arg, const struct jz_ledger_entry *e);

/* One entry of the credit ledger (server/ledger.c), in credits. kind: "purchase", "hold",
 * "release", "charge", "refund" or "adjustment"; ref names what a hold, release or charge is
 * about ("job:12:0", "resv:7"), and the store keeps one entry per (kind, ref). Strings are
 * borrowed; seq is assigned by the store (ignored by credit_add). */
struct jz_credit_entry {
    int64_t seq;
    int64_t time_ms;
    const char *tenant;
    const char *kind;
    const char *ref;    /* NULL or "": none */
    const char *who;    /* the user it was done by or for */
    const char *note;   /* why */
    const char *plugin; /* a job's charge: its plugin */
    double amount;      /* credits, >= 0 (an adjustment may be negative) */
    double gpu_seconds; /* a job's charge: its GPU time */
    int64_t job_id;     /* 0: none */
};
typedef int (*jz_store_credit_fn)(void *arg, const struct jz_credit_entry *e);

/* One entry of the audit log (an administrative action). Strings are borrowed; target, address
 * and detail (JSON text) may be NULL. id is assigned by the store (ignored by audit_add). */
struct jz_audit_entry {
    int64_t id;
    int64_t time_ms;
    const char *actor;   /* the user who acted */
    const char *action;  /* "user.add", "token.revoke", ... */
    const char *target;  /* what it acted on */
    const char *address; /* the client's address */
    const char *detail;  /* JSON text */
};
typedef int (*jz_store_audit_fn)(void *arg, const struct jz_audit_entry *e);

/* Visits one row; return non-zero to stop. `row` is borrowed for the call only. */
typedef int (*jz_store_user_fn)(void *arg, const struct jz_store_user *row);
/* Visits one job, as its JSON record (borrowed for the call only). */
typedef int (*jz_store_job_fn)(void *arg, json_t *job);
/* Reports that batch `seq` (and every earlier one) was applied: ok false when it failed. */
typedef void (*jz_store_done_fn)(void *arg, uint64_t seq, bool ok);

struct jz_store_ops {
    const char *name;
    void (*close)(struct jz_store *s); /* makes queued writes durable first */

    /* --- writes: queued into the current batch, never blocking; arguments are copied --- */
    /* Adds a user; a name or token hash already present fails the batch (never replaces). */
    int (*user_put)(struct jz_store *s, const struct jz_store_user *u, struct jz_error *err);
    /* Inserts or replaces a job from its record (the record's "id" is the key). */
    int (*job_put)(struct jz_store *s, const json_t *job, struct jz_error *err);
    int (*event_add)(struct jz_store *s, int64_t job_id, int64_t time_ms, const char *type,
                     const char *detail, struct jz_error *err);
    /* Appends a ledger entry: entries are never edited (corrections are entries too). */
    int (*ledger_add)(struct jz_store *s, const struct jz_ledger_entry *e, struct jz_error *err);
    /* Appends a credit entry; one whose (kind, ref) is already there is ignored. */
    int (*credit_add)(struct jz_store *s, const struct jz_credit_entry *e, struct jz_error *err);
    /* Inserts or replaces the object (kind, key) with value, or deletes it when value is NULL:
     * small typed records with no table of their own (nodes, join tokens). */
    int (*object_put)(struct jz_store *s, const char *kind, const char *key, const json_t *value,
                      struct jz_error *err);
    /* Deletes a finished job's record and events (retention); its id is never given again. */
    int (*job_del)(struct jz_store *s, int64_t id, struct jz_error *err);
    /* Deletes a user row of the first schema (no error when there is none). */
    int (*user_del)(struct jz_store *s, const char *name, struct jz_error *err);
    /* Appends an audit entry: entries are never edited or deleted. */
    int (*audit_add)(struct jz_store *s, const struct jz_audit_entry *e, struct jz_error *err);

    /* --- batches --- */
    /* Seals the current batch (possibly empty) and hands it to the writer; returns its
     * sequence number, which grows by one per call, starting at 1. */
    uint64_t (*seal)(struct jz_store *s);
    /* True while the disk is full: sealed batches wait for space (they are not lost), and
     * jazarid refuses new writes with 507 meanwhile. Any thread. */
    bool (*full)(struct jz_store *s);
    /* True while writes are queued or sealed batches are not yet durable. */
    bool (*busy)(struct jz_store *s);
    /* A descriptor that becomes readable when batches complete (level-triggered). */
    int (*completion_fd)(struct jz_store *s);
    /* Calls fn for every batch completed since the last call, in order. */
    void (*completions)(struct jz_store *s, jz_store_done_fn fn, void *arg);
    /* Seals and waits until everything is durable: for start-up and shut-down only. */
    int (*sync)(struct jz_store *s, struct jz_error *err);

    /* --- reads --- */
    int (*users_each)(struct jz_store *s, jz_store_user_fn fn, void *arg, struct jz_error *err);
    int (*jobs_each)(struct jz_store *s, jz_store_job_fn fn, void *arg, struct jz_error *err);
    int64_t (*job_max_id)(struct jz_store *s);
    /* Visits every object of a kind (value borrowed for the call), in key order. */
    int (*objects_each)(struct jz_store *s, const char *kind,
                        int (*fn)(void *arg, const char *key, json_t *value), void *arg,
                        struct jz_error *err);
    /* Visits the credit entries of tenant (NULL: all) with from_ms <= time < to_ms, oldest
     * first (entry borrowed for the call). */
    int (*credit_each)(struct jz_store *s, const char *tenant, int64_t from_ms, int64_t to_ms,
                       jz_store_credit_fn fn, void *arg, struct jz_error *err);
    /* Visits every ledger entry of the first schema (GPU-seconds), oldest first. */
    int (*ledger_each)(struct jz_store *s, jz_store_ledger_fn fn, void *arg, struct jz_error *err);
    /* Calls fn(arg, time_ms, type, detail) for each durable event of the job, oldest first. */
    int (*events_each)(struct jz_store *s, int64_t job_id,
                       int (*fn)(void *arg, int64_t time_ms, const char *type, const char *detail),
                       void *arg, struct jz_error *err);
    /* Visits the newest `limit` durable audit entries whose time is >= since_ms, newest
     * first (entry borrowed for the call). */
    int (*audit_each)(struct jz_store *s, int64_t since_ms, int64_t limit, jz_store_audit_fn fn,
                      void *arg, struct jz_error *err);
    /* Writes a consistent copy of everything durable to dest (a new file), checked. */
    int (*backup)(struct jz_store *s, const char *dest, struct jz_error *err);
};

struct jz_store {
    const struct jz_store_ops *ops;
};

/* Opens (creating when missing) the SQLite store at path and starts its writer thread. *out is
 * owned by the caller, who closes it with jz_store_close(). */
int jz_store_sqlite_open(const char *path, struct jz_store **out, struct jz_error *err);

static inline void jz_store_close(struct jz_store *s)
{
    if (s)
        s->ops->close(s);
}

#endif
