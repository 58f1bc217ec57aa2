/* SQLite store: WAL mode, synchronous=FULL, one transaction per loop iteration (group commit).
 * Jobs are kept as JSON documents beside the columns that queries filter on. */
#include "server/store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct sqlite_store {
    struct jz_store base;
    sqlite3 *db;
    bool in_txn;
    sqlite3_stmt *begin, *commit, *user_put, *users_all, *job_put, *jobs_all, *job_max,
        *event_add, *events_of;
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
    "CREATE INDEX IF NOT EXISTS job_events_job ON job_events(job_id, seq);";

static int db_fail(struct sqlite_store *s, struct jz_error *err, const char *what)
{
    return jz_error_set(err, JZ_EIO, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

/* Opens the group transaction on the first write after a commit. */
static int ensure_txn(struct sqlite_store *s, struct jz_error *err)
{
    if (s->in_txn)
        return 0;
    int rc = sqlite3_step(s->begin);
    sqlite3_reset(s->begin);
    if (rc != SQLITE_DONE)
        return db_fail(s, err, "begin");
    s->in_txn = true;
    return 0;
}

static void sq_close(struct jz_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (s->in_txn)
        sqlite3_step(s->commit);
    sqlite3_stmt *all[] = {s->begin,   s->commit,  s->user_put,  s->users_all, s->job_put,
                           s->jobs_all, s->job_max, s->event_add, s->events_of};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(s->db);
    free(s);
}

static int sq_commit(struct jz_store *base, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (!s->in_txn)
        return 0;
    int rc = sqlite3_step(s->commit);
    sqlite3_reset(s->commit);
    if (rc != SQLITE_DONE)
        return db_fail(s, err, "commit");
    s->in_txn = false;
    return 0;
}

static bool sq_in_transaction(struct jz_store *base)
{
    return ((struct sqlite_store *)base)->in_txn;
}

static int step_done(struct sqlite_store *s, sqlite3_stmt *st, struct jz_error *err,
                     const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, what);
}

static int sq_user_put(struct jz_store *base, const struct jz_store_user *u, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (ensure_txn(s, err))
        return err ? err->code : JZ_EIO;
    sqlite3_bind_text(s->user_put, 1, u->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->user_put, 2, u->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->user_put, 3, u->role, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->user_put, 4, u->token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->user_put, 5, u->created_ms);
    return step_done(s, s->user_put, err, "user_put");
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
        return db_fail(s, err, "users");
    return 0;
}

static int sq_job_put(struct jz_store *base, const json_t *job, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (ensure_txn(s, err))
        return err ? err->code : JZ_EIO;
    char *doc = json_dumps(job, JSON_COMPACT);
    if (!doc)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    sqlite3_bind_int64(s->job_put, 1, json_integer_value(json_object_get(job, "id")));
    sqlite3_bind_text(s->job_put, 2, json_string_value(json_object_get(job, "user")), -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(s->job_put, 3, json_string_value(json_object_get(job, "tenant")), -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(s->job_put, 4, json_string_value(json_object_get(job, "state")), -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(s->job_put, 5, doc, -1, free);
    return step_done(s, s->job_put, err, "job_put");
}

static int sq_jobs_each(struct jz_store *base, jz_store_job_fn fn, void *arg, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(s->jobs_all)) == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(s->jobs_all, 0);
        json_error_t jerr;
        json_t *job = json_loads(doc, 0, &jerr);
        if (!job) {
            sqlite3_reset(s->jobs_all);
            return jz_error_set(err, JZ_ECORRUPT, "store: job %lld has a corrupt record: %s",
                                (long long)sqlite3_column_int64(s->jobs_all, 1), jerr.text);
        }
        stop = fn(arg, job);
        json_decref(job);
    }
    sqlite3_reset(s->jobs_all);
    if (!stop && rc != SQLITE_DONE)
        return db_fail(s, err, "jobs");
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

static int sq_event_add(struct jz_store *base, int64_t job_id, int64_t time_ms, const char *type,
                        const char *detail, struct jz_error *err)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (ensure_txn(s, err))
        return err ? err->code : JZ_EIO;
    sqlite3_bind_int64(s->event_add, 1, job_id);
    sqlite3_bind_int64(s->event_add, 2, time_ms);
    sqlite3_bind_text(s->event_add, 3, type, -1, SQLITE_STATIC);
    if (detail)
        sqlite3_bind_text(s->event_add, 4, detail, -1, SQLITE_STATIC);
    return step_done(s, s->event_add, err, "event_add");
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
        return db_fail(s, err, "events");
    return 0;
}

static const struct jz_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .commit = sq_commit,
    .in_transaction = sq_in_transaction,
    .user_put = sq_user_put,
    .users_each = sq_users_each,
    .job_put = sq_job_put,
    .jobs_each = sq_jobs_each,
    .job_max_id = sq_job_max_id,
    .event_add = sq_event_add,
    .events_each = sq_events_each,
};

int jz_store_sqlite_open(const char *path, struct jz_store **out, struct jz_error *err)
{
    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    s->base.ops = &sqlite_ops;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        jz_error_set(err, JZ_EIO, "store: cannot open %s: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(s->db, schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
        jz_error_set(err, JZ_EIO, "store: cannot set up %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } prep[] = {
        {&s->begin, "BEGIN IMMEDIATE"},
        {&s->commit, "COMMIT"},
        {&s->user_put, "INSERT INTO users(name, tenant, role, token_hash, created_ms) "
                       "VALUES(?,?,?,?,?)"},
        {&s->users_all, "SELECT name, tenant, role, token_hash, created_ms FROM users ORDER BY name"},
        {&s->job_put, "INSERT OR REPLACE INTO jobs(id, user, tenant, state, doc) VALUES(?,?,?,?,?)"},
        {&s->jobs_all, "SELECT doc, id FROM jobs ORDER BY id"},
        {&s->job_max, "SELECT COALESCE(MAX(id), 0) FROM jobs"},
        {&s->event_add, "INSERT INTO job_events(job_id, time_ms, type, detail) VALUES(?,?,?,?)"},
        {&s->events_of,
         "SELECT time_ms, type, detail FROM job_events WHERE job_id = ? ORDER BY seq"},
    };
    for (size_t i = 0; i < sizeof prep / sizeof prep[0]; i++) {
        if (sqlite3_prepare_v3(s->db, prep[i].sql, -1, SQLITE_PREPARE_PERSISTENT, prep[i].st,
                               NULL) != SQLITE_OK) {
            db_fail(s, err, prep[i].sql);
            goto fail;
        }
    }
    *out = &s->base;
    return 0;
fail:
    sq_close(&s->base);
    return err ? err->code : JZ_EIO;
}

void jz_store_user_free(struct jz_store_user *u)
{
    if (!u)
        return;
    free(u->name);
    free(u->tenant);
    free(u->role);
    free(u->token_hash);
    u->name = u->tenant = u->role = u->token_hash = NULL;
}
