/* What the job table's files share (jobs.c: the state machine; jobs_submit.c: request parsing;
 * jobs_recover.c: loading, and reconciling with nodes that come back). Not for other modules. */
#ifndef JZ_SERVER_JOBS_INTERNAL_H
#define JZ_SERVER_JOBS_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "scheduler/place.h"
#include "scheduler/sched.h"
#include "server/jobs.h"

#define JZ_MAX_NODES_PER_JOB 1024
/* The highest job id: the job table is indexed by id, so a stored id above this is a corrupt
 * row (reported and skipped at load), never a reason to grow the table. */
#define JZ_JOB_ID_MAX ((int64_t)JZ_SCHED_MAX_JOBS * 64)

struct watch;

/* A dependency (jobs_gate.c): the job waits until `job` (every element, when it names an
 * array) has started (AFTER) or ended (ANY), ended SUCCEEDED (OK) or ended otherwise (NOTOK). */
enum jz_dep_type { JZ_DEP_AFTER, JZ_DEP_OK, JZ_DEP_NOTOK, JZ_DEP_ANY };
enum jz_dep_state { JZ_DEP_WAITING, JZ_DEP_SATISFIED, JZ_DEP_NEVER };
#define JZ_MAX_DEPS 16
#define JZ_MAX_ARRAY_ELEMENTS 10000
#define JZ_MAX_ARRAY_INDEX 10000000
#define JZ_MAX_NICE 1000000 /* JZ_SCHED_MAX_NICE */
#define JZ_MAX_NOTIFY_URL 2048
struct jz_job_dep {
    int64_t job;
    uint8_t type;  /* enum jz_dep_type */
    uint8_t state; /* enum jz_dep_state, once known */
};

/* A GPU of a job's run, as shown (kept after the run ends). */
struct jz_job_gpu {
    int index;
    char pci_bus_id[JZ_TOPO_PCI_ID_LEN];
    char model[JZ_TOPO_MODEL_LEN];
    char node[64];
};

/* Where a part of the current run was placed, as stored (a restart adopts it from this). */
struct jz_job_placed {
    char node[64];
    size_t *gpus, ngpus, *cores, ncores;
    char *cpus, *numa_nodes;
};

/* One part of a running job: its share of the job on one node. */
struct jz_job_part {
    size_t node;
    size_t *gpus, ngpus, *cores, ncores;
    bool launched; /* the launch was sent (or the part was running before a restart) */
    bool ended;    /* its outcome is in (or it was lost) */
};

struct jz_job {
    struct jz_jobs *jobs;
    int64_t id;
    /* What was submitted, as accepted: name, plugin, params, resources, class, inputs... It
     * does not change; everything that does is typed below, and the record's JSON is made from
     * both at the edges only (job_record.c: the store, the API). */
    json_t *request;
    enum jz_job_state state;
    char user[JZ_MAX_NAME_LEN + 1];
    char tenant[JZ_MAX_NAME_LEN + 1];
    struct jz_place_request req; /* per node */
    unsigned nodes;              /* parts of the job (1 for a one-node job) */
    char model[64];
    int64_t time_limit_s;
    bool preemptible;
    bool requeue; /* requeued, not failed, when its node is lost */
    int64_t run;  /* launches so far (the record's "requeues"): older runs' messages are stale */
    /* the run, typed */
    char *reason;                              /* NULL: none */
    int64_t submit_ms, start_wall_ms, end_ms;  /* 0: not yet */
    int64_t checkpoint_ms;                     /* the last checkpoint, 0: none */
    bool has_exit_code, has_signal;
    int exit_code, exit_signal;
    char backend[16];                          /* "": not started */
    bool has_progress;
    double progress;
    char *progress_msg;
    json_t *metrics;                           /* name -> number */
    int64_t metrics_step;                      /* -1: none */
    unsigned metric_points;                    /* stepped values stored as events */
    json_t *artifacts;                         /* names */
    char cancelled_by[JZ_MAX_NAME_LEN + 1];    /* "": nobody */
    struct jz_job_gpu *view_gpus;              /* the last run's placement, as shown */
    size_t view_ngpus;
    char (*view_nodes)[64];
    size_t view_nnodes;
    char *view_cpus, *view_numa, *view_placement;
    struct jz_job_placed *placed;              /* the current run's placement, stored */
    size_t nplaced;
    struct jz_job *launch_next; /* placed, waiting for the commit before its parts start */
    /* while running */
    struct jz_job_part *parts;
    unsigned nparts;
    int64_t start_ms; /* when its first part started (0 before) */
    /* the same instant on the monotonic clock: what the run is charged for is measured from
     * it, so that the wall clock jumping does not change a duration (docs/testing.md) */
    int64_t start_mono_ms;
    int64_t log_base; /* size of the job's log when this run was placed: where its lines begin */
    bool cancel_requested;
    bool disk_stopped; /* told to stop: its log or outputs could not be stored (disk full) */
    bool sched_started; /* the scheduler counts its resources as in use */
    bool preempting;    /* told to checkpoint and stop; requeued when it ends */
    int64_t preempted_by;
    struct event *preempt_timer;
    json_t *outcome; /* the first part outcome that was not a success (or the last one) */
    bool lost;       /* a part was lost with its node */
    int64_t last_persist_ms;
    bool dirty;
    bool flush_queued;
    struct jz_job *flush_next;
    struct jz_job *run_prev, *run_next; /* the list of RUNNING jobs */
    struct watch *watches;
    /* What the service itself holds a pending job back for (jobs_gate.c): a user's hold, its
     * dependencies, its array's throttle. A gated job is not in the scheduler. */
    bool held;
    bool held_by_admin; /* only an admin releases it */
    char held_by[JZ_MAX_NAME_LEN + 1];
    int64_t nice; /* seconds: ordered as if submitted this much later */
    struct jz_job_dep *deps;
    unsigned ndeps;
    /* An array element: its array's id (its first element's), index, size and throttle (0:
     * none). array_active, on the first element only: elements not gated nor ended. */
    int64_t array_id, array_index;
    unsigned array_count, array_throttle, array_active;
    /* On the first element: elements that have started or ended (begun), ended, and ended
     * SUCCEEDED, so that a dependency on a whole array is one look. array_begun_counted: this
     * element is counted in begun. */
    unsigned array_begun, array_ended, array_ok;
    bool array_begun_counted;
    char *notify_url, *notify_secret; /* the webhook called when it ends; NULL: none */
    double gpu_seconds;               /* of the runs that ended (charge()) */
    double run_price;                 /* credits per GPU-hour of the current run */
    double credit_needed;             /* the hold its last START could not place (0: none) */
    bool gated;
    struct jz_job *gate_prev, *gate_next;
};

struct jz_jobs {
    struct jz_server *srv;
    struct jz_job **by_id; /* index = id; ids are dense from 1 */
    size_t cap;
    int64_t max_id;
    struct jz_job *launch_head, **launch_tail;
    struct jz_job *flush_head;
    struct jz_job *running; /* RUNNING jobs, for what concerns one node (its hello, its loss) */
    size_t counts[6];
    json_t *pending_by_user; /* user -> number of pending jobs (the per-user limit) */
    struct jz_sched_decisions decisions;
    struct event *full_timer;
    struct event *purge_timer; /* retention (jobs_retention.c) */
    struct jz_job *gated_head, *gated_tail; /* gated jobs, by id (jobs_gate.c) */
    bool gate_dirty; /* a job started or ended: gated jobs may move */
    int64_t alive_touched_ms; /* STATE/alive, last touched (monotonic) */
    char field[160];
};

/* jobs_retention.c: purges finished jobs past limits.retention_days; returns how many. */
size_t jz_jobs_purge_expired(struct jz_jobs *jobs, int64_t now_ms);
int jz_jobs_retention_start(struct jz_jobs *jobs);

/* jobs.c */
void jz_jobs_parts_free(struct jz_job *job);
/* The job ends in state s (charged, forgotten by the scheduler, persisted, watchers told). */
void jz_jobs_finish(struct jz_job *job, enum jz_job_state s, const char *reason);
/* The run is over without a result of its own: the job waits again (a new run). */
void jz_jobs_requeue(struct jz_job *job, const char *reason);
void jz_jobs_set_state(struct jz_job *job, enum jz_job_state s);
void jz_jobs_set_reason(struct jz_job *job, const char *reason);
void jz_jobs_persist(struct jz_job *job, const char *event_type, const char *detail);
int jz_jobs_table_put(struct jz_jobs *jobs, struct jz_job *job);
/* A job from a record (borrowed): typed fields and the request. */
struct jz_job *jz_jobs_job_new(struct jz_jobs *jobs, const json_t *rec);
void jz_jobs_job_free(struct jz_job *job);
int jz_jobs_sched_submit(struct jz_jobs *jobs, struct jz_job *job, struct jz_error *err);
void jz_jobs_pending_add(struct jz_jobs *jobs, const char *user, int delta);
void jz_jobs_checkpoint_file(const struct jz_jobs *jobs, int64_t id, char *buf, size_t len);
/* The scheduler's view of the job (strings borrowed from the job). */
void jz_jobs_sched_job(const struct jz_job *job, struct jz_sched_job *sj);
/* A part has ended with outcome {"state", "reason", ...} (borrowed). */
void jz_jobs_part_ended(struct jz_job *job, unsigned part, const json_t *outcome);
/* Sends a part a message of type t with extra fields (stolen). */
void jz_jobs_part_send(struct jz_job *job, unsigned part, const char *t, json_t *extra);
/* Tells a node to stop and forget a part that is not (or no longer) the job's. */
void jz_jobs_stale_part(struct jz_jobs *jobs, size_t node, int64_t job, int part, int64_t run,
                        bool running);

/* job_record.c: the record's JSON, made from the typed job and read back into it */
/* Fills the typed fields from a stored record; takes a reference to rec's request keys. */
int jz_job_record_load(struct jz_job *job, const json_t *rec);
/* The whole record (new reference): with internal keys for the store, without for the API. */
json_t *jz_job_record_json(const struct jz_job *job, bool internal);
void jz_job_record_free(struct jz_job *job);
/* Replaces a string field (NULL clears it). */
void jz_job_set_str(char **field, const char *value);
void jz_job_clear_placement(struct jz_job *job);

/* Tells event streams, and the job's webhook when it ended, that its state changed from
 * previous (-1: it was just submitted) to its state now (events.h). */
void jz_jobs_announce(struct jz_job *job, int previous);

/* jobs_billing.c: holds and charges of runs (docs/billing.md) */
void jz_jobs_run_ref(const struct jz_job *job, char *buf, size_t len); /* "job:ID:RUN" */
/* Credits its time limit would cost at its model constraint's price (*price: per GPU-hour). */
double jz_jobs_credit_estimate(const struct jz_job *job, double *price);
/* For the gate: "credits" and one sentence (how much is missing) when its metered tenant cannot
 * cover it, else NULL. */
const char *jz_jobs_credit_gate(const struct jz_job *job, char *why, size_t len);
/* Holds the run a START decision places; JZ_EAGAIN when the tenant cannot cover it (the job
 * must not start: it waits in the gate). */
int jz_jobs_credit_hold(struct jz_job *job, const struct jz_sched_decision *d);
/* Charges the run's gpu_seconds and releases its hold (nothing when settled already). */
void jz_jobs_credit_settle(struct jz_job *job, double gpu_seconds, const char *why);
/* A run found running at start-up with no hold (started before holds were kept): held now. */
void jz_jobs_credit_adopt(struct jz_job *job);
/* STATE/alive, touched every full pass: a run lost with jazarid is charged until then. */
void jz_jobs_alive_touch(struct jz_jobs *jobs);
int64_t jz_jobs_alive_last_ms(const struct jz_jobs *jobs);

/* jobs_gate.c */
/* A pending job not in the scheduler (new, loaded, released, requeued after a restart): hands
 * it to the scheduler when nothing holds it back, else keeps it gated. A dependency that can
 * never be met fails it. */
void jz_jobs_gate_enter(struct jz_job *job);
/* A job the scheduler had, taken back (a START whose hold did not fit): behind the gate again. */
void jz_jobs_gate_return(struct jz_job *job);
/* A job ends in state s (called by jz_jobs_finish): leaves the gate, or frees its place in its
 * array's throttle, and counts in its array; gated jobs are looked at again before the next
 * decision. */
void jz_jobs_gate_leave(struct jz_job *job, enum jz_job_state s);
/* A job just loaded from the store: counted in its array (load order is by id, so its first
 * element is there). */
void jz_jobs_gate_loaded(struct jz_job *job);
/* A job started: jobs that wait for it to start may go. */
void jz_jobs_gate_started(struct jz_job *job);
/* Looks at every gated job again when something moved (called before each decision). */
void jz_jobs_gate_run(struct jz_jobs *jobs);
/* For a gated job: its reason code ("held", "dependency", "array_throttle") and one sentence. */
const char *jz_jobs_gate_reason(const struct jz_job *job, char *why, size_t len);
/* The dependency type's name ("afterok"...) and back (-1 when unknown). */
const char *jz_dep_type_name(unsigned t);
int jz_dep_type_parse(const char *s);
const char *jz_dep_state_name(unsigned s);

/* jobs_recover.c */
int jz_jobs_load(struct jz_jobs *jobs, struct jz_error *err);
void jz_jobs_node_hello(void *arg, size_t node, const json_t *running, const json_t *ended);
void jz_jobs_node_down(void *arg, size_t node, const char *why);

#endif
