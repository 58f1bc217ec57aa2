/* SQLite store: WAL mode, synchronous=FULL. Writes are queued in batches on the event-loop
 * thread and applied by one writer thread, one transaction per batch (group commit), so the loop
 * never waits for fsync. The loop keeps its own connection for reads. */
#include "server/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"

#define WRITE_ATTEMPTS 10
#define WRITE_RETRY_US 500000
#define WRITE_FULL_RETRY_US 1000000 /* a full disk is retried this often, for as long as it is */

enum op_kind {
    OP_USER, OP_JOB, OP_EVENT, OP_LEDGER, OP_OBJECT, OP_USER_DEL, OP_AUDIT, OP_JOB_DEL, OP_CREDIT
};

/* One queued write. Strings are owned by the op. */
struct op {
    enum op_kind kind;
    int64_t id, time_ms;
    double amount, amount2;
    /* USER: name tenant role hash; JOB: user tenant state doc; EVENT: type detail;
     * LEDGER: tenant kind plugin note; OBJECT: kind key value (NULL: delete); USER_DEL: name;
     * AUDIT: actor action target address detail; CREDIT: tenant kind ref who note plugin
     * (amount: credits, amount2: GPU-seconds, id: the job) */
    char *a, *b, *c, *d, *e, *f;
};

struct batch {
    struct batch *next;
    uint64_t seq;
    struct op *ops;
    size_t n, cap;
    bool ok;
};

struct sqlite_store {
    struct jz_store base;
    sqlite3 *rdb; /* the loop's connection: reads only */
    sqlite3 *wdb; /* the writer thread's connection */
    sqlite3_stmt *users_all, *jobs_all, *job_max, *events_of, *ledger_all, *objects_of,
        *audit_since; /* on rdb */
    sqlite3_stmt *begin, *commit, *rollback, *user_put, *job_put, *event_add, *ledger_add,
        *object_put, *object_del, *user_del, *audit_add, *job_del, *job_events_del,
        *job_id_keep, *credit_add; /* on wdb */
    sqlite3_stmt *credit_all, *credit_of; /* on rdb */

    struct batch *open;       /* being filled by the loop (never NULL) */
    uint64_t next_seq;        /* seq the open batch will get */
    uint64_t done_seq;        /* newest batch reported to the loop */

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    struct batch *todo_head, **todo_tail; /* sealed, waiting for the writer */
    struct batch *done_head, **done_tail; /* applied, waiting for the loop */
    uint64_t applied_seq;                 /* newest batch the writer finished */
    bool stopping;
    int efd;                              /* eventfd: the writer signals completions */
    bool full; /* the disk is full: the writer retries until it is not (atomic access) */
    bool closing; /* under mu: a full disk is given up on (the batches left are lost) */
    /* Fault injection for tests (JAZARI_FAULT_STORE_FAIL_BATCH=N): the Nth non-empty batch
     * fails every attempt as an I/O error would. 0 (the variable unset): inert. Writer only. */
    uint64_t fault_fail_batch, fault_seen;
};

static const char *schema_sql =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '1');"
    "CREATE TABLE IF NOT EXISTS users("
    "  name TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL,"
    "  token_hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS jobs("
    "  id INTEGER PRIMARY KEY, user TEXT NOT NULL, tenant TEXT NOT NULL, state TEXT NOT NULL,"
    "  doc TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);"
    "CREATE TABLE IF NOT EXISTS job_events("
    "  seq INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, time_ms INTEGER NOT NULL,"
    "  type TEXT NOT NULL, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS job_events_job ON job_events(job_id, seq);"
    "CREATE TABLE IF NOT EXISTS ledger("
    "  seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, tenant TEXT NOT NULL,"
    "  kind TEXT NOT NULL, gpu_seconds REAL NOT NULL, job_id INTEGER, plugin TEXT, note TEXT);"
    /* The credit ledger (server/ledger.c): append-only; a hold, release or charge is unique per
     * (kind, ref), so that nothing is held or charged twice for one job run or booking. */
    "CREATE TABLE IF NOT EXISTS credit_ledger("
    "  seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, tenant TEXT NOT NULL,"
    "  kind TEXT NOT NULL, ref TEXT, who TEXT, note TEXT, plugin TEXT, amount REAL NOT NULL,"
    "  gpu_seconds REAL NOT NULL DEFAULT 0, job_id INTEGER, UNIQUE(kind, ref));"
    "CREATE INDEX IF NOT EXISTS credit_ledger_tenant ON credit_ledger(tenant, time_ms);"
    "CREATE TABLE IF NOT EXISTS objects("
    "  kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(kind, key));"
    "CREATE TABLE IF NOT EXISTS audit("
    "  seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, actor TEXT NOT NULL,"
    "  action TEXT NOT NULL, target TEXT, address TEXT, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS audit_time ON audit(time_ms);"
    /* the highest job id ever given, once jobs are purged (ids are never reused) */
    "INSERT OR IGNORE INTO meta(key, value) VALUES('max_job_id', '0');";

static struct batch *batch_new(void)
{
    return calloc(1, sizeof(struct batch));
}

static void batch_free(struct batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->ops[i].a);
        free(b->ops[i].b);
        free(b->ops[i].c);
        free(b->ops[i].d);
        free(b->ops[i].e);
        free(b->ops[i].f);
    }
    free(b->ops);
    free(b);
}

static struct op *batch_push(struct batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct op *grown = realloc(b->ops, cap * sizeof *grown);
        if (!grown)
            return NULL;
        b->ops = grown;
        b->cap = cap;
    }
    struct op *o = &b->ops[b->n++];
    memset(o, 0, sizeof *o);
    return o;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* --- the writer thread ------------------------------------------------------------------- */

static bool step_done(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        jz_log_error("store", "%s", sqlite3_errmsg(db));
    return rc == SQLITE_DONE;
}

static bool disk_full(sqlite3 *db);

/* Applies a batch in one transaction; *full says whether a failure was for want of space. */
static bool apply(struct sqlite_store *s, struct batch *b, bool *full)
{
    *full = false;
    if (b->n == 0)
        return true;
    bool ok = step_done(s->wdb, s->begin);
    for (size_t i = 0; ok && i < b->n; i++) {
        struct op *o = &b->ops[i];
        sqlite3_stmt *st = o->kind == OP_USER     ? s->user_put
                           : o->kind == OP_JOB     ? s->job_put
                           : o->kind == OP_EVENT   ? s->event_add
                           : o->kind == OP_LEDGER  ? s->ledger_add
                           : o->kind == OP_USER_DEL ? s->user_del
                           : o->kind == OP_AUDIT   ? s->audit_add
                           : o->kind == OP_JOB_DEL ? s->job_del
                           : o->kind == OP_CREDIT  ? s->credit_add
                           : o->c                  ? s->object_put
                                                   : s->object_del;
        switch (o->kind) {
        case OP_USER:
            sqlite3_bind_text(st, 1, o->a, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, o->b, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, o->c, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, o->d, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, o->time_ms);
            break;
        case OP_JOB:
            sqlite3_bind_int64(st, 1, o->id);
            sqlite3_bind_text(st, 2, o->a, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, o->b, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, o->c, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 5, o->d, -1, SQLITE_STATIC);
            break;
        case OP_EVENT:
            sqlite3_bind_int64(st, 1, o->id);
            sqlite3_bind_int64(st, 2, o->time_ms);
            sqlite3_bind_text(st, 3, o->a, -1, SQLITE_STATIC);
            if (o->b)
                sqlite3_bind_text(st, 4, o->b, -1, SQLITE_STATIC);
            break;
        case OP_LEDGER:
            sqlite3_bind_int64(st, 1, o->time_ms);
            sqlite3_bind_text(st, 2, o->a, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, o->b, -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 4, o->amount);
            if (o->id)
                sqlite3_bind_int64(st, 5, o->id);
            if (o->c)
                sqlite3_bind_text(st, 6, o->c, -1, SQLITE_STATIC);
            if (o->d)
                sqlite3_bind_text(st, 7, o->d, -1, SQLITE_STATIC);
            break;
        case OP_OBJECT:
            sqlite3_bind_text(st, 1, o->a, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, o->b, -1, SQLITE_STATIC);
            if (o->c)
                sqlite3_bind_text(st, 3, o->c, -1, SQLITE_STATIC);
            break;
        case OP_USER_DEL:
            sqlite3_bind_text(st, 1, o->a, -1, SQLITE_STATIC);
            break;
        case OP_JOB_DEL:
            /* The record and its events go; its id stays taken. */
            sqlite3_bind_int64(s->job_events_del, 1, o->id);
            sqlite3_bind_int64(s->job_id_keep, 1, o->id);
            ok = step_done(s->wdb, s->job_events_del) && step_done(s->wdb, s->job_id_keep);
            sqlite3_bind_int64(st, 1, o->id);
            break;
        case OP_CREDIT: {
            char *text[] = {o->a, o->b, o->c, o->d, o->e, o->f};
            sqlite3_bind_int64(st, 1, o->time_ms);
            for (int k = 0; k < 6; k++)
                if (text[k])
                    sqlite3_bind_text(st, k + 2, text[k], -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 8, o->amount);
            sqlite3_bind_double(st, 9, o->amount2);
            if (o->id)
                sqlite3_bind_int64(st, 10, o->id);
            break;
        }
        case OP_AUDIT: {
            char *text[] = {o->a, o->b, o->c, o->d, o->e};
            sqlite3_bind_int64(st, 1, o->time_ms);
            for (int k = 0; k < 5; k++)
                if (text[k])
                    sqlite3_bind_text(st, k + 2, text[k], -1, SQLITE_STATIC);
            break;
        }
        }
        ok = ok && step_done(s->wdb, st);
    }
    if (ok)
        ok = step_done(s->wdb, s->commit);
    if (!ok) {
        *full = disk_full(s->wdb); /* before the rollback resets the error */
        if (!sqlite3_get_autocommit(s->wdb)) /* SQLite may have rolled back already */
            step_done(s->wdb, s->rollback);
    }
    return ok;
}

/* The last failure was for want of space (SQLite says SQLITE_FULL, or an I/O error on ENOSPC). */
static bool disk_full(sqlite3 *db)
{
    return sqlite3_errcode(db) == SQLITE_FULL || sqlite3_system_errno(db) == ENOSPC ||
           sqlite3_system_errno(db) == EDQUOT;
}

static bool stopping_now(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->mu);
    bool closing = s->closing;
    pthread_mutex_unlock(&s->mu);
    return closing;
}

/* The test hook: true when this batch is the one JAZARI_FAULT_STORE_FAIL_BATCH names. Not a
 * full disk (which is waited out) but a refusal, the path where jazarid stops (main.c). */
static bool fault_refuses(struct sqlite_store *s, struct batch *b)
{
    if (!s->fault_fail_batch || b->n == 0 || ++s->fault_seen != s->fault_fail_batch)
        return false;
    jz_log_error("store", "fault injection: batch %llu (non-empty batch #%llu) fails as an I/O "
                          "error would (JAZARI_FAULT_STORE_FAIL_BATCH)",
                 (unsigned long long)b->seq, (unsigned long long)s->fault_seen);
    return true;
}

static void *writer_main(void *arg)
{
    struct sqlite_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->todo_head && !s->stopping)
            pthread_cond_wait(&s->cv_work, &s->mu);
        if (!s->todo_head && s->stopping)
            break;
        /* Take every sealed batch: they are applied in order, one transaction each, so a
         * failure stays confined to the batch that caused it. */
        struct batch *list = s->todo_head;
        s->todo_head = NULL;
        s->todo_tail = &s->todo_head;
        pthread_mutex_unlock(&s->mu);
        /* A busy database (a backup holding the lock) may pass: retry before reporting a
         * batch lost, which makes the service stop (see main.c). A full disk is waited out:
         * the batch stays, the loop answers writes with 507 meanwhile (jz_store_ops.full), and
         * everything goes on once there is space again. */
        for (struct batch *b = list; b; b = b->next) {
            int attempt = 0;
            bool full = false;
            bool refused = fault_refuses(s, b);
            while (!(b->ok = !refused && apply(s, b, &full))) {
                if (full && !__atomic_load_n(&s->full, __ATOMIC_ACQUIRE))
                    jz_log_error("store", "the disk holding the database is full: writes wait "
                                          "(and new ones are refused) until there is space");
                __atomic_store_n(&s->full, full, __ATOMIC_RELEASE);
                if (++attempt >= WRITE_ATTEMPTS && (!full || stopping_now(s)))
                    break;
                usleep(full ? WRITE_FULL_RETRY_US : WRITE_RETRY_US);
            }
            if (b->ok && __atomic_exchange_n(&s->full, false, __ATOMIC_ACQ_REL))
                jz_log_info("store", "the database can be written again");
        }
        pthread_mutex_lock(&s->mu);
        struct batch *last = list;
        while (last->next)
            last = last->next;
        *s->done_tail = list;
        s->done_tail = &last->next;
        s->applied_seq = last->seq;
        pthread_cond_broadcast(&s->cv_done);
        uint64_t one = 1;
        if (write(s->efd, &one, sizeof one) < 0 && errno != EAGAIN)
            jz_log_error("store", "cannot signal completion: %s", strerror(errno));
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* --- the loop's side ----------------------------------------------------------------------- */

static int sq_user_put(struct jz_store *base, const struct jz_store_user *u, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *o = batch_push(s->open);
    if (!o)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->kind = OP_USER;
    o->a = strdup(u->name);
    o->b = strdup(u->tenant);
    o->c = strdup(u->role);
    o->d = strdup(u->token_hash);
    o->time_ms = u->created_ms;
    return 0;
}

static int sq_job_put(struct jz_store *base, const json_t *job, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    char *doc = json_dumps(job, JSON_COMPACT);
    struct op *o = doc ? batch_push(s->open) : NULL;
    if (!o) {
        free(doc);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    o->kind = OP_JOB;
    o->id = json_integer_value(json_object_get(job, "id"));
    o->a = dup_or_null(json_string_value(json_object_get(job, "user")));
    o->b = dup_or_null(json_string_value(json_object_get(job, "tenant")));
    o->c = dup_or_null(json_string_value(json_object_get(job, "state")));
    o->d = doc;
    return 0;
}

static int sq_object_put(struct jz_store *base, const char *kind, const char *key,
                         const json_t *value, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    char *doc = value ? json_dumps(value, JSON_COMPACT) : NULL;
    struct op *o = (doc || !value) ? batch_push(s->open) : NULL;
    if (!o) {
        free(doc);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    o->kind = OP_OBJECT;
    o->a = strdup(kind);
    o->b = strdup(key);
    o->c = doc;
    return 0;
}

static int sq_objects_each(struct jz_store *base, const char *kind,
                           int (*fn)(void *arg, const char *key, json_t *value), void *arg,
                           struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    sqlite3_bind_text(s->objects_of, 1, kind, -1, SQLITE_TRANSIENT);
    while (!stop && (rc = sqlite3_step(s->objects_of)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(s->objects_of, 0);
        const char *doc = (const char *)sqlite3_column_text(s->objects_of, 1);
        json_error_t jerr;
        json_t *v = json_loads(doc, 0, &jerr);
        if (!v) {
            rc = jz_error_set(err, JZ_ECORRUPT, "store: %s '%s' has a corrupt record: %s", kind,
                              key, jerr.text);
            sqlite3_reset(s->objects_of);
            return rc;
        }
        stop = fn(arg, key, v);
        json_decref(v);
    }
    sqlite3_reset(s->objects_of);
    if (!stop && rc != SQLITE_DONE)
        return jz_error_set(err, JZ_EIO, "store: %s: %s", kind, sqlite3_errmsg(s->rdb));
    return 0;
}

static int sq_event_add(struct jz_store *base, int64_t job_id, int64_t time_ms, const char *type,
                        const char *detail, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *o = batch_push(s->open);
    if (!o)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->kind = OP_EVENT;
    o->id = job_id;
    o->time_ms = time_ms;
    o->a = strdup(type);
    o->b = dup_or_null(detail);
    return 0;
}

static int sq_ledger_add(struct jz_store *base, const struct jz_ledger_entry *e,
                         struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *o = batch_push(s->open);
    if (!o)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->kind = OP_LEDGER;
    o->time_ms = e->time_ms;
    o->a = strdup(e->tenant);
    o->b = strdup(e->kind);
    o->amount = e->gpu_seconds;
    o->id = e->job_id;
    o->c = dup_or_null(e->plugin);
    o->d = dup_or_null(e->note);
    return 0;
}

static int sq_user_del(struct jz_store *base, const char *name, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *o = batch_push(s->open);
    if (!o)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->kind = OP_USER_DEL;
    o->a = strdup(name);
    return 0;
}

static int sq_job_del(struct jz_store *base, int64_t id, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *o = batch_push(s->open);
    if (!o)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->kind = OP_JOB_DEL;
    o->id = id;
    return 0;
}

static bool sq_full(struct jz_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    return __atomic_load_n(&s->full, __ATOMIC_ACQUIRE);
}

static int sq_audit_add(struct jz_store *base, const struct jz_audit_entry *e,
                        struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *o = batch_push(s->open);
    if (!o)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->kind = OP_AUDIT;
    o->time_ms = e->time_ms;
    o->a = strdup(e->actor);
    o->b = strdup(e->action);
    o->c = dup_or_null(e->target);
    o->d = dup_or_null(e->address);
    o->e = dup_or_null(e->detail);
    return 0;
}

static int sq_audit_each(struct jz_store *base, int64_t since_ms, int64_t limit,
                         jz_store_audit_fn fn, void *arg, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    sqlite3_stmt *st = s->audit_since;
    sqlite3_bind_int64(st, 1, since_ms);
    sqlite3_bind_int64(st, 2, limit);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct jz_audit_entry e = {
            .id = sqlite3_column_int64(st, 0),
            .time_ms = sqlite3_column_int64(st, 1),
            .actor = (const char *)sqlite3_column_text(st, 2),
            .action = (const char *)sqlite3_column_text(st, 3),
            .target = (const char *)sqlite3_column_text(st, 4),
            .address = (const char *)sqlite3_column_text(st, 5),
            .detail = (const char *)sqlite3_column_text(st, 6),
        };
        stop = fn(arg, &e);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (!stop && rc != SQLITE_DONE)
        return jz_error_set(err, JZ_EIO, "store: audit: %s", sqlite3_errmsg(s->rdb));
    return 0;
}

static int sq_credit_add(struct jz_store *base, const struct jz_credit_entry *e,
                         struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct op *o = batch_push(s->open);
    if (!o)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->kind = OP_CREDIT;
    o->time_ms = e->time_ms;
    o->a = strdup(e->tenant);
    o->b = strdup(e->kind);
    o->c = dup_or_null(e->ref && *e->ref ? e->ref : NULL);
    o->d = dup_or_null(e->who);
    o->e = dup_or_null(e->note);
    o->f = dup_or_null(e->plugin);
    o->amount = e->amount;
    o->amount2 = e->gpu_seconds;
    o->id = e->job_id;
    return 0;
}

static int sq_credit_each(struct jz_store *base, const char *tenant, int64_t from_ms,
                          int64_t to_ms, jz_store_credit_fn fn, void *arg, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    sqlite3_stmt *st = tenant ? s->credit_of : s->credit_all;
    int k = 1;
    if (tenant)
        sqlite3_bind_text(st, k++, tenant, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, k++, from_ms);
    sqlite3_bind_int64(st, k, to_ms);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct jz_credit_entry e = {
            .seq = sqlite3_column_int64(st, 0),
            .time_ms = sqlite3_column_int64(st, 1),
            .tenant = (const char *)sqlite3_column_text(st, 2),
            .kind = (const char *)sqlite3_column_text(st, 3),
            .ref = (const char *)sqlite3_column_text(st, 4),
            .who = (const char *)sqlite3_column_text(st, 5),
            .note = (const char *)sqlite3_column_text(st, 6),
            .plugin = (const char *)sqlite3_column_text(st, 7),
            .amount = sqlite3_column_double(st, 8),
            .gpu_seconds = sqlite3_column_double(st, 9),
            .job_id = sqlite3_column_int64(st, 10),
        };
        stop = fn(arg, &e);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (!stop && rc != SQLITE_DONE)
        return jz_error_set(err, JZ_EIO, "store: credit ledger: %s", sqlite3_errmsg(s->rdb));
    return 0;
}

static int sq_ledger_each(struct jz_store *base, jz_store_ledger_fn fn, void *arg,
                          struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    sqlite3_stmt *st = s->ledger_all;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct jz_ledger_entry e = {
            .time_ms = sqlite3_column_int64(st, 0),
            .tenant = (const char *)sqlite3_column_text(st, 1),
            .kind = (const char *)sqlite3_column_text(st, 2),
            .gpu_seconds = sqlite3_column_double(st, 3),
            .job_id = sqlite3_column_int64(st, 4),
            .plugin = (const char *)sqlite3_column_text(st, 5),
            .note = (const char *)sqlite3_column_text(st, 6),
        };
        stop = fn(arg, &e);
    }
    sqlite3_reset(st);
    if (!stop && rc != SQLITE_DONE)
        return jz_error_set(err, JZ_EIO, "store: ledger: %s", sqlite3_errmsg(s->rdb));
    return 0;
}

static uint64_t sq_seal(struct jz_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct batch *b = s->open, *fresh = batch_new();
    if (!fresh)
        abort(); /* a few bytes; nothing sensible is left to do */
    b->seq = s->next_seq++;
    s->open = fresh;
    pthread_mutex_lock(&s->mu);
    *s->todo_tail = b;
    s->todo_tail = &b->next;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return b->seq;
}

static bool sq_busy(struct jz_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    return s->open->n > 0 || s->done_seq + 1 < s->next_seq;
}

static int sq_completion_fd(struct jz_store *base)
{
    return ((struct sqlite_store *)base)->efd;
}

static void sq_completions(struct jz_store *base, jz_store_done_fn fn, void *arg)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    uint64_t count;
    while (read(s->efd, &count, sizeof count) > 0) {
    }
    pthread_mutex_lock(&s->mu);
    struct batch *list = s->done_head;
    s->done_head = NULL;
    s->done_tail = &s->done_head;
    pthread_mutex_unlock(&s->mu);
    while (list) {
        struct batch *next = list->next;
        s->done_seq = list->seq;
        if (fn)
            fn(arg, list->seq, list->ok);
        batch_free(list);
        list = next;
    }
}

static int sq_sync(struct jz_store *base, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    uint64_t seq = sq_seal(base);
    bool ok = true;
    pthread_mutex_lock(&s->mu);
    while (s->applied_seq < seq)
        pthread_cond_wait(&s->cv_done, &s->mu);
    for (struct batch *b = s->done_head; b; b = b->next)
        ok &= b->ok;
    pthread_mutex_unlock(&s->mu);
    sq_completions(base, NULL, NULL);
    return ok ? 0 : jz_error_set(err, JZ_EIO, "store: a write failed (see the log)");
}

static int sq_users_each(struct jz_store *base, jz_store_user_fn fn, void *arg,
                         struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(s->users_all)) == SQLITE_ROW) {
        struct jz_store_user u = {
            .name = (char *)sqlite3_column_text(s->users_all, 0),
            .tenant = (char *)sqlite3_column_text(s->users_all, 1),
            .role = (char *)sqlite3_column_text(s->users_all, 2),
            .token_hash = (char *)sqlite3_column_text(s->users_all, 3),
            .created_ms = sqlite3_column_int64(s->users_all, 4),
        };
        stop = fn(arg, &u);
    }
    sqlite3_reset(s->users_all);
    if (!stop && rc != SQLITE_DONE)
        return jz_error_set(err, JZ_EIO, "store: users: %s", sqlite3_errmsg(s->rdb));
    return 0;
}

/* A row whose document does not parse, or whose document's id is not the row's key, is
 * reported by id and skipped (docs/ops-guide.md, "Durability and recovery"): one damaged row
 * must neither hide the others nor stop the service. The loader checks the rest
 * (jobs_recover.c). */
static int sq_jobs_each(struct jz_store *base, jz_store_job_fn fn, void *arg, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(s->jobs_all)) == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(s->jobs_all, 0);
        long long id = sqlite3_column_int64(s->jobs_all, 1);
        json_error_t jerr;
        json_t *job = doc ? json_loads(doc, 0, &jerr) : NULL;
        if (!job) {
            jz_log_error("store", "job %lld: corrupt stored record (%s): skipped, not served",
                         id, doc ? jerr.text : "no document");
            continue;
        }
        json_t *jid = json_object_get(job, "id");
        if (!json_is_integer(jid) || json_integer_value(jid) != id) {
            jz_log_error("store", "job %lld: corrupt stored record (its document names job "
                                  "%lld): skipped, not served",
                         id, json_is_integer(jid) ? (long long)json_integer_value(jid) : -1LL);
            json_decref(job);
            continue;
        }
        stop = fn(arg, job);
        json_decref(job);
    }
    sqlite3_reset(s->jobs_all);
    if (!stop && rc != SQLITE_DONE)
        return jz_error_set(err, JZ_EIO, "store: jobs: %s", sqlite3_errmsg(s->rdb));
    return 0;
}

static int64_t sq_job_max_id(struct jz_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int64_t max = 0;
    if (sqlite3_step(s->job_max) == SQLITE_ROW)
        max = sqlite3_column_int64(s->job_max, 0);
    sqlite3_reset(s->job_max);
    return max;
}

static int sq_events_each(struct jz_store *base, int64_t job_id,
                          int (*fn)(void *, int64_t, const char *, const char *), void *arg,
                          struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    sqlite3_bind_int64(s->events_of, 1, job_id);
    while (!stop && (rc = sqlite3_step(s->events_of)) == SQLITE_ROW)
        stop = fn(arg, sqlite3_column_int64(s->events_of, 0),
                  (const char *)sqlite3_column_text(s->events_of, 1),
                  (const char *)sqlite3_column_text(s->events_of, 2));
    sqlite3_reset(s->events_of);
    sqlite3_clear_bindings(s->events_of);
    if (!stop && rc != SQLITE_DONE)
        return jz_error_set(err, JZ_EIO, "store: events: %s", sqlite3_errmsg(s->rdb));
    return 0;
}

static void sq_close(struct jz_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (s->thread_started) {
        struct jz_error err = {0};
        pthread_mutex_lock(&s->mu);
        s->closing = true;
        pthread_mutex_unlock(&s->mu);
        if (sq_sync(base, &err))
            jz_log_error("store", "%s", err.msg);
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv_work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv_work);
        pthread_cond_destroy(&s->cv_done);
    }
    sqlite3_stmt *all[] = {s->users_all, s->jobs_all, s->job_max,  s->events_of,
                           s->ledger_all, s->begin,  s->commit,  s->rollback,
                           s->user_put,  s->job_put, s->event_add, s->ledger_add,
                           s->objects_of, s->object_put, s->object_del, s->user_del,
                           s->audit_add, s->audit_since, s->job_del, s->job_events_del,
                           s->job_id_keep, s->credit_add, s->credit_all, s->credit_of};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(s->rdb);
    sqlite3_close(s->wdb);
    batch_free(s->open);
    if (s->efd >= 0)
        close(s->efd);
    free(s);
}

/* SQLite's online backup from the loop's read connection: one read transaction, so the copy
 * is the durable state at one instant while the writer thread goes on (WAL). The copy is then
 * checked before anyone relies on it. */
static int sq_backup(struct jz_store *base, const char *dest, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3 *out = NULL;
    if (sqlite3_open_v2(dest, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        jz_error_set(err, JZ_EIO, "backup: cannot create %s: %s", dest,
                     out ? sqlite3_errmsg(out) : "out of memory");
        sqlite3_close(out);
        return JZ_EIO;
    }
    int rc = JZ_EIO;
    sqlite3_backup *b = sqlite3_backup_init(out, "main", s->rdb, "main");
    if (!b) {
        jz_error_set(err, JZ_EIO, "backup: %s", sqlite3_errmsg(out));
        goto done;
    }
    int step = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (step != SQLITE_DONE) {
        jz_error_set(err, JZ_EIO, "backup: %s", sqlite3_errstr(step));
        goto done;
    }
    sqlite3_stmt *q = NULL;
    const char *verdict = NULL;
    if (sqlite3_prepare_v2(out, "PRAGMA quick_check", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        verdict = (const char *)sqlite3_column_text(q, 0);
    if (!verdict || strcmp(verdict, "ok") != 0) {
        jz_error_set(err, JZ_EIO, "backup: the copy fails its check: %s",
                     verdict ? verdict : sqlite3_errmsg(out));
        sqlite3_finalize(q);
        goto done;
    }
    sqlite3_finalize(q);
    rc = 0;
done:
    if (sqlite3_close(out) != SQLITE_OK && !rc)
        rc = jz_error_set(err, JZ_EIO, "backup: cannot close %s", dest);
    return rc;
}

static const struct jz_store_ops sqlite_ops = {
    .backup = sq_backup,
    .name = "sqlite",
    .close = sq_close,
    .user_put = sq_user_put,
    .job_put = sq_job_put,
    .event_add = sq_event_add,
    .ledger_add = sq_ledger_add,
    .object_put = sq_object_put,
    .user_del = sq_user_del,
    .job_del = sq_job_del,
    .full = sq_full,
    .audit_add = sq_audit_add,
    .audit_each = sq_audit_each,
    .objects_each = sq_objects_each,
    .seal = sq_seal,
    .busy = sq_busy,
    .completion_fd = sq_completion_fd,
    .completions = sq_completions,
    .sync = sq_sync,
    .users_each = sq_users_each,
    .jobs_each = sq_jobs_each,
    .job_max_id = sq_job_max_id,
    .events_each = sq_events_each,
    .ledger_each = sq_ledger_each,
    .credit_add = sq_credit_add,
    .credit_each = sq_credit_each,
};

static int open_db(const char *path, sqlite3 **db, struct jz_error *err)
{
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        return jz_error_set(err, JZ_EIO, "store: cannot open %s: %s", path,
                            *db ? sqlite3_errmsg(*db) : "out of memory");
    sqlite3_busy_timeout(*db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(*db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
                     &msg) != SQLITE_OK) {
        jz_error_set(err, JZ_EIO, "store: cannot set up %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        return JZ_EIO;
    }
    return 0;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, struct jz_error *err)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return jz_error_set(err, JZ_EIO, "store: %s: %s", sql, sqlite3_errmsg(db));
    return 0;
}

int jz_store_sqlite_open(const char *path, struct jz_store **out, struct jz_error *err)
{
    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    s->base.ops = &sqlite_ops;
    s->efd = -1;
    s->next_seq = 1;
    s->todo_tail = &s->todo_head;
    s->done_tail = &s->done_head;
    s->open = batch_new();
    const char *fault = getenv("JAZARI_FAULT_STORE_FAIL_BATCH");
    if (fault && *fault) {
        s->fault_fail_batch = strtoull(fault, NULL, 10);
        jz_log_warn("store", "fault injection armed: non-empty batch %llu will fail",
                    (unsigned long long)s->fault_fail_batch);
    }
    int rc = JZ_ENOMEM;
    if (!s->open)
        goto fail;
    char *msg = NULL;
    if ((rc = open_db(path, &s->wdb, err)))
        goto fail;
    if (sqlite3_exec(s->wdb, schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
        rc = jz_error_set(err, JZ_EIO, "store: cannot create the schema in %s: %s", path,
                          msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    if ((rc = open_db(path, &s->rdb, err)))
        goto fail;
    struct {
        sqlite3 *db;
        sqlite3_stmt **st;
        const char *sql;
    } prep[] = {
        {s->wdb, &s->begin, "BEGIN IMMEDIATE"},
        {s->wdb, &s->commit, "COMMIT"},
        {s->wdb, &s->rollback, "ROLLBACK"},
        {s->wdb, &s->user_put,
         "INSERT INTO users(name, tenant, role, token_hash, created_ms) VALUES(?,?,?,?,?)"},
        {s->wdb, &s->job_put,
         "INSERT OR REPLACE INTO jobs(id, user, tenant, state, doc) VALUES(?,?,?,?,?)"},
        {s->wdb, &s->event_add,
         "INSERT INTO job_events(job_id, time_ms, type, detail) VALUES(?,?,?,?)"},
        {s->wdb, &s->ledger_add,
         "INSERT INTO ledger(time_ms, tenant, kind, gpu_seconds, job_id, plugin, note) "
         "VALUES(?,?,?,?,?,?,?)"},
        {s->rdb, &s->ledger_all,
         "SELECT time_ms, tenant, kind, gpu_seconds, job_id, plugin, note FROM ledger ORDER BY seq"},
        {s->wdb, &s->object_put,
         "INSERT OR REPLACE INTO objects(kind, key, value) VALUES(?,?,?)"},
        /* OR IGNORE: a hold, release or charge already there for its ref stays the one. */
        {s->wdb, &s->credit_add,
         "INSERT OR IGNORE INTO credit_ledger(time_ms, tenant, kind, ref, who, note, plugin, "
         "amount, gpu_seconds, job_id) VALUES(?,?,?,?,?,?,?,?,?,?)"},
        {s->rdb, &s->credit_all,
         "SELECT seq, time_ms, tenant, kind, ref, who, note, plugin, amount, gpu_seconds, job_id "
         "FROM credit_ledger WHERE time_ms >= ? AND time_ms < ? ORDER BY seq"},
        {s->rdb, &s->credit_of,
         "SELECT seq, time_ms, tenant, kind, ref, who, note, plugin, amount, gpu_seconds, job_id "
         "FROM credit_ledger WHERE tenant = ? AND time_ms >= ? AND time_ms < ? ORDER BY seq"},
        {s->wdb, &s->object_del, "DELETE FROM objects WHERE kind = ? AND key = ?"},
        {s->wdb, &s->user_del, "DELETE FROM users WHERE name = ?"},
        {s->wdb, &s->job_del, "DELETE FROM jobs WHERE id = ?"},
        {s->wdb, &s->job_events_del, "DELETE FROM job_events WHERE job_id = ?"},
        {s->wdb, &s->job_id_keep,
         "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?1) WHERE key = 'max_job_id'"},
        {s->wdb, &s->audit_add,
         "INSERT INTO audit(time_ms, actor, action, target, address, detail) VALUES(?,?,?,?,?,?)"},
        {s->rdb, &s->audit_since,
         "SELECT seq, time_ms, actor, action, target, address, detail FROM audit "
         "WHERE time_ms >= ? ORDER BY seq DESC LIMIT ?"},
        {s->rdb, &s->objects_of, "SELECT key, value FROM objects WHERE kind = ? ORDER BY key"},
        {s->rdb, &s->users_all,
         "SELECT name, tenant, role, token_hash, created_ms FROM users ORDER BY name"},
        {s->rdb, &s->jobs_all, "SELECT doc, id FROM jobs ORDER BY id"},
        {s->rdb, &s->job_max,
         "SELECT MAX(COALESCE((SELECT MAX(id) FROM jobs), 0), "
         "COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'max_job_id'), 0))"},
        {s->rdb, &s->events_of,
         "SELECT time_ms, type, detail FROM job_events WHERE job_id = ? ORDER BY seq"},
    };
    for (size_t i = 0; i < sizeof prep / sizeof prep[0]; i++)
        if ((rc = prepare(prep[i].db, prep[i].sql, prep[i].st, err)))
            goto fail;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        rc = jz_error_set(err, JZ_EIO, "store: eventfd: %s", strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_done, NULL);
    if (pthread_create(&s->thread, NULL, writer_main, s) != 0) {
        rc = jz_error_set(err, JZ_EIO, "store: cannot start the writer thread");
        goto fail;
    }
    s->thread_started = true;
    *out = &s->base;
    return 0;
fail:
    sq_close(&s->base);
    return rc;
}
