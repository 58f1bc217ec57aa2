/* Jobs: the in-memory job table, the job state machine, submission checks, and the messages of
 * job parts running on the nodes' agents that move jobs along. Every change is written to the
 * store in the current group transaction. A job runs as one part per node (one, or a gang).
 *
 *   PENDING --place--> RUNNING --all parts ended--> SUCCEEDED | FAILED | TIMEOUT | CANCELLED
 *   PENDING --cancel--> CANCELLED
 *   RUNNING --preempted, or node lost and preemptible/requeue--> PENDING
 *   RUNNING --node lost--> FAILED
 */
#ifndef JZ_SERVER_JOBS_H
#define JZ_SERVER_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/server.h"

struct jz_user;
struct jz_job;

enum jz_job_state {
    JZ_JOB_PENDING,
    JZ_JOB_RUNNING,
    JZ_JOB_SUCCEEDED,
    JZ_JOB_FAILED,
    JZ_JOB_CANCELLED,
    JZ_JOB_TIMEOUT,
};

const char *jz_job_state_name(enum jz_job_state s);
/* Parses "PENDING" etc. (case-insensitive); -1 when unknown. */
int jz_job_state_parse(const char *s);

/* Loads every job from the store, adopts the ones that were running onto their nodes (their
 * agents' hellos then say whether they still run; see docs/ops-guide.md), and starts serving
 * the nodes (srv->nodes). */
int jz_jobs_open(struct jz_server *srv, struct jz_jobs **out, struct jz_error *err);
/* Frees the job table (running parts are the nodes' business); NULL is accepted. */
void jz_jobs_close(struct jz_jobs *jobs);

/* Validates a submission body and creates a PENDING job. On success *job_out is the new job's
 * record (a new reference). On failure *field names the field at fault (static or owned by
 * jobs; valid until the next call) and err says why; JZ_EAGAIN means the user has too many
 * pending jobs. */
int jz_jobs_submit(struct jz_jobs *jobs, const struct jz_user *user, const json_t *body,
                   json_t **job_out, const char **field, struct jz_error *err);

/* The job with this id, or NULL. */
struct jz_job *jz_jobs_find(struct jz_jobs *jobs, int64_t id);
/* The job as the API shows it (a new reference): the record without internal keys, with the
 * scheduler's current reason, priority and estimated start for a pending job. */
json_t *jz_job_record(const struct jz_job *job);
enum jz_job_state jz_job_state(const struct jz_job *job);
int64_t jz_job_id(const struct jz_job *job);
bool jz_job_visible_to(const struct jz_job *job, const struct jz_user *user);
/* Path of the job's log file (it may not exist yet). */
void jz_job_log_path(const struct jz_jobs *jobs, const struct jz_job *job, char *buf, size_t len);

/* Cancels a pending job at once, or asks a running one to stop (TERM, then KILL after the
 * grace period); `by` (the user's name) is recorded. JZ_EBUSY when it had already ended. */
int jz_jobs_cancel(struct jz_jobs *jobs, struct jz_job *job, const char *by,
                   struct jz_error *err);

/* Which jobs a list shows (GET /v1/jobs). */
struct jz_jobs_filter {
    unsigned state_mask;    /* bit 1<<state; 0 = all */
    const char *user;       /* NULL: any */
    const char *tenant;     /* NULL: any */
    int64_t array;          /* 0: any; else only that array's elements */
    int64_t since_ms;       /* > 0: only jobs that ended at or after */
    int64_t until_ms;       /* > 0: only jobs that ended before */
    bool everyone;          /* also other users' pending and running jobs, reduced
                             * (jz_job_record_reduced) */
};

/* Lists jobs with id > after in ascending order (descending when desc, ids < after, 0 meaning
 * "from the newest"), at most limit, visible to user (or, with f->everyone, pending or running),
 * matching f. Returns {"jobs": [...], "next_after": id|null}. */
json_t *jz_jobs_list(struct jz_jobs *jobs, const struct jz_user *user,
                     const struct jz_jobs_filter *f, int64_t after, bool desc, size_t limit);

/* Another user's pending or running job as everyone's queue shows it: what and where, not its
 * parameters; user, tenant and name hidden when hide is true (hide_other_tenants). */
json_t *jz_job_record_reduced(const struct jz_job *job, bool hide);

/* Holds or releases a pending job for by (an admin: admin true). JZ_EBUSY when it is not
 * pending; JZ_EPERM when a user would release an admin's hold. */
int jz_jobs_set_hold(struct jz_job *job, bool hold, const char *by, bool admin,
                     struct jz_error *err);

/* Changes a pending job: body {"name", "time_limit" | "time_limit_s", "nice", "class"}. Users may
 * lower the time limit only, and set nice >= 0; admins anything in range. On failure *field
 * names the field (static or the job table's) and err says why: JZ_EBUSY when not pending. */
int jz_jobs_modify(struct jz_job *job, const struct jz_user *user, const json_t *body,
                   const char **field, struct jz_error *err);

/* GPU-hours the jobs bound to reservation `name` ran inside [start, end), counted until `until`
 * for a run still going (all its nodes' GPUs). Walks the job table; builds no records. */
double jz_jobs_reservation_gpu_hours(struct jz_jobs *jobs, const char *name, int64_t start,
                                     int64_t end, int64_t until);

/* GET /v1/reports/usage: finished jobs that ended in [since_ms, until_ms), visible to user (of
 * tenant when not NULL), grouped by (tenant, user, plugin, model or site): {"by", "rows": [{"key",
 * "jobs", "gpu_hours", "run_hours", "wait_s": {"mean", "p50", "p95", "max"}}]}. NULL when out
 * of memory. */
bool jz_jobs_report_dimension_ok(const char *by);
json_t *jz_jobs_usage_report(struct jz_jobs *jobs, const struct jz_user *user, const char *by,
                             const char *tenant, int64_t since_ms, int64_t until_ms);

/* Credit came back or a hold was released (ledger.c): jobs waiting for credit are looked at
 * again before the next decision. */
void jz_jobs_credit_changed(struct jz_jobs *jobs);

/* The array whose id (its first element's) this job is, or 0 when it is none. */
int64_t jz_job_array_id(const struct jz_job *job);
/* Number of elements of the array led by job (0 when it leads none). */
unsigned jz_job_array_count(const struct jz_job *job);

/* Places every pending job that fits now and marks it RUNNING. Called by the server before it
 * seals each store batch. The jobs placed since the last call are then taken with
 * jz_jobs_take_placed and, once that batch is durable, their parts are launched on their nodes
 * with jz_jobs_launch (or the jobs failed, when committed is false). */
void jz_jobs_schedule(struct jz_jobs *jobs);
/* Only writes the records part events changed (what jz_jobs_schedule does first). */
void jz_jobs_flush(struct jz_jobs *jobs);
struct jz_job *jz_jobs_take_placed(struct jz_jobs *jobs);
void jz_jobs_launch(struct jz_jobs *jobs, struct jz_job *placed, bool committed);

/* GET /v1/nodes (of site, when not NULL) with the job holding each GPU (new reference). */
json_t *jz_jobs_nodes_json(struct jz_jobs *jobs, const char *site);
/* Jobs in the table now, by state (for /metrics). */
void jz_jobs_counts(const struct jz_jobs *jobs, size_t counts[6]);
/* For /metrics: the job's tenant and user (borrowed from the job). */
const char *jz_job_tenant(const struct jz_job *job);
const char *jz_job_user(const struct jz_job *job);
/* For /metrics: calls fn for every pending job with the scheduler's reason code for it
 * ("resources", "dependency"... static). The job is borrowed for the call. */
typedef void (*jz_jobs_pending_fn)(void *arg, const struct jz_job *job, const char *reason_code);
void jz_jobs_pending_each(struct jz_jobs *jobs, jz_jobs_pending_fn fn, void *arg);

/* Calls fn for every pending or running job, by id (the job is the caller's to cancel). */
void jz_jobs_unfinished_each(struct jz_jobs *jobs, void (*fn)(void *arg, struct jz_job *job),
                             void *arg);
/* The job's submission field (borrowed), e.g. "reservation"; NULL when absent. */
const json_t *jz_job_request_field(const struct jz_job *job, const char *key);

/* Log followers: called with the job when its log may have grown or the job ended. */
typedef void (*jz_job_watch_fn)(void *arg, struct jz_job *job, bool ended);
/* Registers fn to be called on job end; returns a handle for jz_job_unwatch. */
void *jz_job_watch(struct jz_job *job, jz_job_watch_fn fn, void *arg);
void jz_job_unwatch(struct jz_job *job, void *handle);

#endif
