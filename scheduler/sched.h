/* The event-driven scheduler object: a pure policy engine (no I/O, clock, threads or globals)
 * that the service drives on every event (submit, end, cancel, timer) and whose decisions it
 * applies. Time is always an argument: seconds since the epoch (or any fixed origin).
 * Threading: a scheduler is used by one thread at a time (jazarid's event loop); separate
 * schedulers are independent. */
#ifndef JZ_SCHED_SCHED_H
#define JZ_SCHED_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

#include "scheduler/place.h"
#include "scheduler/topo.h"

/* Limits; exceeding one is JZ_ELIMIT. */
#define JZ_SCHED_NAME_LEN 64 /* tenant, class, user, node, reservation names */
#define JZ_SCHED_MAX_TENANTS 4096
#define JZ_SCHED_MAX_CLASSES 16
#define JZ_SCHED_MAX_NODES 100000
#define JZ_SCHED_MAX_JOB_NODES 1024 /* parts of one gang job (nodes it spans) */
#define JZ_SCHED_MAX_SITES 1024     /* distinct sites; also site quotas per tenant */
#define JZ_SCHED_MAX_JOBS 4000000   /* jobs known at once (pending + running) */
#define JZ_SCHED_MAX_RESERVATIONS 1024
#define JZ_SCHED_MAX_DEPS 16                    /* dependencies per job */
#define JZ_SCHED_MAX_NICE 1000000               /* seconds of jz_sched_job.nice either way */
#define JZ_SCHED_MAX_TIME_LIMIT (366LL * 86400) /* seconds */
#define JZ_SCHED_REASON_LEN 192
#define JZ_SCHED_MAX_LAS_BANDS 8 /* attained-service thresholds (bands - 1) */

/* How a class orders its waiting jobs beyond class, fair share and age (bits; 0 = by age alone,
 * first come first served within a tenant and size). */
#define JZ_SCHED_ORDER_LAS 1u      /* least attained service first: Tiresias-style bands over the
                                    * GPU-seconds a job has already received; needs no durations */
#define JZ_SCHED_ORDER_SHORTEST 2u /* shortest remaining time limit x GPUs first */

/* A priority class. Higher rank is more important. */
struct jz_sched_class {
    char name[JZ_SCHED_NAME_LEN];
    unsigned rank;    /* 0..100; also the class factor (rank / 100) in the priority */
    bool can_preempt; /* may stop preemptible jobs of lower rank to start */
    /* JZ_SCHED_ORDER_* bits; 0 is first come, first served (the configuration parser gives
     * classes that do not say the scheduler's "order"; the default class created by
     * jz_sched_create takes default_order). With any, the head of the queue may also stop, on a
     * full pass, a preemptible job of its own rank whose order is far behind its own
     * (config.preempt_margin), that has run at least preempt_min_run_s since it started and
     * was not already preempted max_preemptions times. */
    unsigned order;
};

/* A tenant's quota in one site: GPUs in use at once there. Unlike the tenant's max_gpus, 0 means
 * "none in this site" (a site that is not listed has no limit of its own). */
struct jz_sched_site_quota {
    char site[JZ_SCHED_NAME_LEN];
    unsigned max_gpus;
};

/* A tenant's quota on one GPU model: GPUs in use at once whose model name contains model
 * (case-insensitive, as a job's model constraint matches). 0 means "none of this model". */
#define JZ_SCHED_MAX_MODEL_QUOTAS 256
struct jz_sched_model_quota {
    char model[JZ_SCHED_NAME_LEN];
    unsigned max_gpus;
};

struct jz_sched_tenant {
    char name[JZ_SCHED_NAME_LEN];
    double weight;                      /* fair-share weight (> 0) */
    unsigned max_gpus;                  /* quota: GPUs in use at once; 0 = no limit */
    char class_name[JZ_SCHED_NAME_LEN]; /* default class of its jobs; "" = the config's default */
    /* Per-site quotas, borrowed for the call (copied by jz_sched_create and
     * jz_sched_tenant_set, which replaces the tenant's previous list). Site names need not be
     * known yet: a quota may name a site whose nodes come later. */
    const struct jz_sched_site_quota *site_quotas;
    size_t site_quota_count;
    /* Per-model quotas (at most JZ_SCHED_MAX_MODEL_QUOTAS), borrowed and copied likewise. A
     * node counts for a quota when one of its GPUs that the job could use matches the model. */
    const struct jz_sched_model_quota *model_quotas;
    size_t model_quota_count;
};

/* A reservation: gpus_per_node GPUs on each listed node, usable only by tenant during
 * [start, end). Other tenants' jobs may use them only if they end before start. */
struct jz_sched_reservation {
    char name[JZ_SCHED_NAME_LEN];
    char tenant[JZ_SCHED_NAME_LEN];
    const char *const *nodes; /* node names (borrowed for the call) */
    size_t node_count;
    unsigned gpus_per_node;
    int64_t start, end;
};

/* Configuration: start from jz_sched_config_defaults, then change fields. Arrays are borrowed
 * for jz_sched_create (copied). Weights may be 0 to turn a factor off. */
struct jz_sched_config {
    double half_life_s;          /* fair-share usage half-life; default 7 days */
    double weight_fairshare;     /* default 10000 */
    double weight_age;           /* per age_scale_s of waiting, unbounded; default 1000 */
    double age_scale_s;          /* default 86400 */
    double weight_class;         /* times rank/100; default 100000 (class dominates) */
    double weight_size;          /* times gpus / largest node; default 500 */
    double default_weight;       /* weight of tenants not configured; default 1 */
    int64_t preempt_grace_s;     /* checkpoint signal to kill; default 120 */
    unsigned backfill_depth;     /* jobs left waiting looked at per (tenant, size) queue per
                                  * decide call, at least; default 16. With few queues it grows
                                  * to backfill_max_tests / queues (the depth adapts to the
                                  * queue's shape) */
    unsigned backfill_max_tests; /* jobs left waiting looked at per decide call; default 500 */
    /* Least attained service and shortest-first (classes with JZ_SCHED_ORDER_* bits). */
    double weight_las;      /* subtracted per band above the first; default 4000 */
    double las_thresholds[JZ_SCHED_MAX_LAS_BANDS]; /* GPU-seconds, increasing: band b holds
                                                   * jobs that received at least threshold
                                                   * b-1; default 1 GPU-hour, 16 GPU-hours */
    size_t las_band_count;  /* thresholds used (bands - 1); default 2 */
    double weight_shortest; /* times log2(1 + remaining GPU-hours of time limit); default 7000 */
    double preempt_margin;  /* order gap that lets a job stop one of its own rank; default 8000 */
    int64_t preempt_min_run_s; /* a victim of its own rank ran at least this long; default 1800 */
    unsigned max_preemptions;  /* a job preempted this often is left alone by its own rank (a
                                * higher class with can_preempt still may); default 3 */
    /* Starvation protection (full passes) for classes with an order: a job that has waited
     * starve_after_s in the queue, and whose time limit left is at least starve_drain_factor
     * times the time the waiting work needs to drain on the cluster's GPUs, loses its LAS and
     * shortest-first handicaps (it would otherwise start last and run alone). Age protects
     * the others. starve_after_s 0 turns it off; defaults 1 day and 2. */
    int64_t starve_after_s;
    double starve_drain_factor;
    unsigned default_order;    /* order of the default class and of classes that do not say;
                                * default JZ_SCHED_ORDER_LAS | JZ_SCHED_ORDER_SHORTEST */
    char default_class[JZ_SCHED_NAME_LEN]; /* default "normal" (created with rank 50) */
    const struct jz_sched_class *classes;
    size_t class_count;
    const struct jz_sched_tenant *tenants;
    size_t tenant_count;
};

/* Fills cfg with the defaults above (no classes, tenants). */
void jz_sched_config_defaults(struct jz_sched_config *cfg);

struct jz_sched;

/* Creates a scheduler; destroy with jz_sched_destroy (NULL accepted). */
int jz_sched_create(const struct jz_sched_config *cfg, struct jz_sched **out, struct jz_error *err);
void jz_sched_destroy(struct jz_sched *s);

/* Takes a new policy on a live scheduler (the service's SIGHUP): the scalar settings (weights,
 * half-life, orders, backfill, preemption and starvation settings, default weight and class),
 * the classes and the tenants of cfg (borrowed for the call), checked as jz_sched_create checks
 * them. All-or-nothing: on any error s is unchanged and err names the problem.
 * - Running and preempting jobs are not touched: same nodes, GPUs, cores, start and end.
 * - Every job keeps the class it was submitted with (by name; a tenant's new class applies to its
 *   new jobs). A class may change rank, order and can_preempt; one that is gone from cfg while
 *   jobs of it wait, are held or run is refused (JZ_EBUSY), the default class included: renaming
 *   "default_class" with jobs in the old one is refused unless cfg still lists the old one.
 * - Tenants listed in cfg take its weight, quota, site quotas and class; a tenant listed twice is
 *   refused (JZ_EEXIST). Tenants it does not list fall back to default_weight, no quota and the
 *   default class. Usage history (decayed GPU-seconds, jobs' attained service) and credits are
 *   kept; a new half_life applies from each tenant's last usage update.
 * - Waiting and held jobs get their order recomputed and queues re-sorted, so the next
 *   jz_sched_decide uses the new policy; fair-share factors are recomputed from the usage as of
 *   the last full decision (the next full decision brings them to now).
 * - Reservations are not part of cfg: see jz_sched_reservations_replace, and jz_sched_reload
 *   for both at once.
 * O(jobs + tenants); the decision path pays nothing for it. */
int jz_sched_reconfigure(struct jz_sched *s, const struct jz_sched_config *cfg,
                         struct jz_error *err);

/* Whether a class of this name exists now (jobs naming another are refused). */
bool jz_sched_class_known(const struct jz_sched *s, const char *name);

/* Adds or replaces a tenant (weight, quota, class) at run time. */
int jz_sched_tenant_set(struct jz_sched *s, const struct jz_sched_tenant *t, struct jz_error *err);
/* Startup credits: a tenant without credit keeps its jobs waiting (reason "credits"). */
int jz_sched_tenant_set_credit(struct jz_sched *s, const char *tenant, bool has_credit,
                               struct jz_error *err);
/* Decayed usage in GPU-seconds and the fair-share factor (0..1, 1 = under its share) at now. */
int jz_sched_tenant_usage(struct jz_sched *s, const char *tenant, int64_t now, double *gpu_seconds,
                          double *fair_share, struct jz_error *err);

/* A node as the service registers it. Strings are borrowed for the call (copied). */
struct jz_sched_node_spec {
    const char *name;           /* unique among the nodes not removed */
    const struct jz_topo *topo; /* borrowed, must outlive the scheduler (nodes of identical
                                 * hardware may share one topology, which the scheduler
                                 * exploits) */
    const char *site;           /* NULL or "": "default". Gangs prefer one site; tenants may
                                 * have per-site quotas */
    const char *switch_name;    /* NULL or "": none. Nodes with the same switch are close:
                                 * gangs prefer them */
};

/* Adds a node; *index receives its index (indexes are never reused). */
int jz_sched_node_add(struct jz_sched *s, const struct jz_sched_node_spec *spec, size_t *index,
                      struct jz_error *err);
/* Removes a node with no running or preempting job (JZ_EBUSY otherwise). Its index is never
 * reused; it counts as gone (not up, no capacity, not in could_ever_fit) for everything
 * afterwards, and its name may be added again as a new node. Waiting jobs that no remaining
 * node could hold get reason "never" when next looked at. */
int jz_sched_node_remove(struct jz_sched *s, size_t node, struct jz_error *err);
/* Takes a node out of (false) or back into (true) service; running jobs are not touched. A
 * drained node still counts for jz_sched_could_ever_fit. JZ_ENOENT for a removed node. */
int jz_sched_node_set_up(struct jz_sched *s, size_t node, bool up, struct jz_error *err);
/* What the scheduler holds of a node now (for `jazari nodes` and metrics). */
struct jz_sched_node_info {
    const char *name; /* owned by s, lives as long as s */
    const char *site; /* owned by s, lives as long as s */
    bool up;
    bool removed; /* then up is false and the counts are 0 */
    unsigned gpus, free_gpus, cores, free_cores;
    uint64_t gpu_busy; /* bit i: topology GPU i in use */
    size_t running;    /* running and preempting jobs (parts of gangs included) */
};
int jz_sched_node_info(const struct jz_sched *s, size_t node, struct jz_sched_node_info *info,
                       struct jz_error *err);
/* Name of node i (owned by s, lives as long as s), NULL when out of range. */
const char *jz_sched_node_name(const struct jz_sched *s, size_t node);
/* Node indexes are 0 .. count-1, removed nodes included. */
size_t jz_sched_node_count(const struct jz_sched *s);

int jz_sched_reservation_add(struct jz_sched *s, const struct jz_sched_reservation *r,
                             struct jz_error *err);
int jz_sched_reservation_remove(struct jz_sched *s, const char *name, struct jz_error *err);
/* Replaces every reservation with the n in r (borrowed for the call; n may be 0), as a reload of
 * the configuration needs. All-or-nothing: names unique, nodes known (not removed) and each listed
 * once per reservation, gpus_per_node at most the node's GPUs; on error nothing changes. Unknown
 * tenants are created with the defaults. Running jobs are not touched: a reservation only
 * decides where jobs may start. */
int jz_sched_reservations_replace(struct jz_sched *s, const struct jz_sched_reservation *r,
                                  size_t n, struct jz_error *err);
/* A reload of the configuration: jz_sched_reconfigure(cfg) and jz_sched_reservations_replace(r,
 * n) together, all-or-nothing as one (both are checked and allocated before either applies).
 * check_only: everything is checked, nothing changes (0 means the same call without it would
 * succeed but for running out of memory). cfg and r are borrowed for the call. */
int jz_sched_reload(struct jz_sched *s, const struct jz_sched_config *cfg,
                    const struct jz_sched_reservation *r, size_t n, bool check_only,
                    struct jz_error *err);

/* A job as submitted. Strings are borrowed for the call. */
struct jz_sched_job {
    uint64_t id; /* unique, non-zero */
    const char *tenant;
    const char *user;       /* not used by the policy (fair share is per tenant); not kept */
    const char *class_name; /* NULL or "": the tenant's class */
    unsigned gpus;          /* on one node (per part for a gang); 0 for a CPU-only job */
    unsigned cpus_per_gpu;  /* whole cores per GPU */
    unsigned cpus;          /* whole cores for a CPU-only job (per part) */
    int64_t time_limit_s;   /* > 0, at most JZ_SCHED_MAX_TIME_LIMIT */
    bool preemptible;
    int64_t submit_time;
    /* Seconds (at most JZ_SCHED_MAX_NICE either way): the job is ordered as if submitted this
     * much later (earlier when negative). Its age for starvation still counts from
     * submit_time. */
    int64_t nice;
    const char *model;          /* GPU model constraint (substring), NULL = any */
    uint64_t min_memory_bytes;  /* 0 = any */
    const uint64_t *depends_on; /* jobs that must end successfully first */
    size_t depends_count;
    /* 0 or 1: one node. N > 1 (at most JZ_SCHED_MAX_JOB_NODES): a gang of N parts on N
     * distinct nodes, each with `gpus` GPUs (and gpus * cpus_per_gpu cores, or `cpus` cores
     * when gpus == 0), started all at once or not at all. Quotas, fair-share usage and the
     * size factor count all parts (gpus * nodes). */
    unsigned nodes;
    /* NULL or "": none. A booked reservation's name R: the job runs only on nodes reserved
     * under R (reservations named R or "R/anything", one per node) for its own tenant, only
     * inside their window (it must end by their end), within their GPUs less those of the
     * other jobs bound to them there; the reservation's GPUs are not held against it. */
    const char *reservation;
};

/* Queues a job (the event "arrived"). JZ_EEXIST for a known id, JZ_EINVAL for a bad spec,
 * JZ_ENOENT for an unknown class. A job that no node set could hold is accepted and waits with
 * reason "never" (nodes may be added later; it is looked at again when they are). */
int jz_sched_submit(struct jz_sched *s, const struct jz_sched_job *job, int64_t now,
                    struct jz_error *err);
/* A job is over: it ran and ended (or was killed), the service could not start it after a
 * START decision, or it was dropped while waiting. Its resources are freed on every node it
 * held (its GPU-seconds were charged as it ran). ok == false marks jobs that depend on it as
 * never runnable (reason "dependency"). The job is forgotten. */
int jz_sched_job_ended(struct jz_sched *s, uint64_t id, int64_t now, bool ok, struct jz_error *err);
/* A preempted job has stopped (a gang: all its parts): its resources are freed and it waits
 * again, keeping its original submit time. */
int jz_sched_job_requeue(struct jz_sched *s, uint64_t id, int64_t now, struct jz_error *err);
/* The service did not stop a job a PREEMPT decision named after all (its preemptor could not
 * start: its tenant's credit ran out, say): it runs on as before the decision, with its end
 * expected at its time limit again, and its preemptor no longer waits for it. JZ_EINVAL for a
 * job that is not being preempted. */
int jz_sched_preempt_abandon(struct jz_sched *s, uint64_t id, struct jz_error *err);
/* Removes a waiting (or held) job. A running job returns JZ_EBUSY: stop it, then job_ended. */
int jz_sched_cancel(struct jz_sched *s, uint64_t id, int64_t now, struct jz_error *err);
/* Where one part of a running job is: its node and its GPUs and cores (topology indexes).
 * Arrays are borrowed for the call. */
struct jz_sched_part_spec {
    size_t node;
    const size_t *gpus;
    size_t gpu_count; /* must equal the job's gpus */
    const size_t *cores;
    size_t core_count;
};
/* After a service restart: records a job already running, started at start_time. part_count
 * must be max(1, job->nodes), on distinct nodes not removed; part 0 is the rank-0 node.
 * JZ_EBUSY when a GPU or core is already in use. Nothing changes on failure. */
int jz_sched_adopt_running(struct jz_sched *s, const struct jz_sched_job *job,
                           const struct jz_sched_part_spec *parts, size_t part_count,
                           int64_t start_time, struct jz_error *err);

/* Whether the job could ever run on the nodes known now (up or drained, not removed), ignoring
 * what is in use: some node set holds all its parts, cores included. When it could not and
 * why is not NULL, writes one sentence why (lower case, no final period: "no node has 16 GPUs
 * of model A100", "only 3 nodes could hold a part, the job needs 4"). Pure: no side effects.
 * A job that fails jz_sched_submit's checks returns false with the reason. */
bool jz_sched_could_ever_fit(const struct jz_sched *s, const struct jz_sched_job *job, char *why,
                             size_t why_len);

enum jz_sched_action {
    JZ_SCHED_START = 1,   /* start job_id: one process per part, on its node, with its placement */
    JZ_SCHED_PREEMPT = 2, /* send job_id its checkpoint signal; kill after grace_s; then call
                           * jz_sched_job_requeue */
};

/* One part of a START: a node and the placement on it. */
struct jz_sched_part {
    size_t node;
    const char *node_name;        /* owned by the scheduler, lives as long as it */
    struct jz_place_result place; /* GPUs, cores, OS CPUs, NUMA, reason (owned by the decisions
                                   * object) */
};

struct jz_sched_decision {
    enum jz_sched_action action;
    uint64_t job_id;
    /* START: part_count >= 1 (the job's nodes, or 1), on distinct nodes; part 0 is the rank-0
     * node. PREEMPT: NULL and 0 (every part of the job stops). Owned by the decisions object
     * (freed by jz_sched_decisions_clear and _free). */
    struct jz_sched_part *parts;
    size_t part_count;
    uint64_t for_job;              /* PREEMPT: the job that needs the resources */
    int64_t grace_s;               /* PREEMPT */
    /* START: what the sentences are made of. backfilled_for: 0, or the job at the head of the
     * queue it cannot delay (whose resources are reserved from head_start); nsites, nswitches:
     * how spread a gang's nodes are. */
    uint64_t backfilled_for;
    int64_t head_start;
    unsigned nsites, nswitches;
    /* One sentence. PREEMPT: always written. START: empty, like each part's place.reason, until
     * jz_sched_decision_explain renders them: a full pass may start thousands of jobs, and
     * text is made only for what is shown. */
    char why[JZ_SCHED_REASON_LEN];
};

/* Writes a START decision's why and its parts' place.reason (a no-op for what is written
 * already). Needs no scheduler state: it may be called any time before the decisions are
 * cleared. */
void jz_sched_decision_explain(struct jz_sched_decision *d);

/* Decisions of one call; caller-owned. Init once, pass to jz_sched_decide (which appends), and
 * release with jz_sched_decisions_free (or _clear to reuse). */
struct jz_sched_decisions {
    struct jz_sched_decision *items;
    size_t count, cap;
};
void jz_sched_decisions_init(struct jz_sched_decisions *d);
void jz_sched_decisions_clear(struct jz_sched_decisions *d);
void jz_sched_decisions_free(struct jz_sched_decisions *d);

#define JZ_SCHED_FULL 1u /* recompute fair share and every waiting job's reason */

/* Makes decisions at now; call it after every event (submit, end, requeue, cancel, credit or
 * node change) and on a timer with JZ_SCHED_FULL (e.g. every 30 s). It walks the (tenant, size)
 * queues from their heads in priority order, looking at no more than backfill_depth waiting
 * jobs per queue and backfill_max_tests in all, so its cost grows with the number of queues,
 * not of jobs. JZ_SCHED_FULL also brings usage and fair share up to date and writes every
 * waiting job's reason. Resources of START decisions count as used at once; the service must
 * report a start it could not make with jz_sched_job_ended. Appends to out. */
int jz_sched_decide(struct jz_sched *s, int64_t now, unsigned flags, struct jz_sched_decisions *out,
                    struct jz_error *err);

enum jz_sched_state {
    JZ_SCHED_JOB_PENDING = 1,
    JZ_SCHED_JOB_HELD = 2, /* waiting for dependencies */
    JZ_SCHED_JOB_RUNNING = 3,
    JZ_SCHED_JOB_PREEMPTING = 4, /* told to stop; resources still in use */
};

enum jz_sched_reason {
    JZ_SCHED_REASON_NONE = 0,
    JZ_SCHED_REASON_RESOURCES = 1,   /* not enough free GPUs/cores (or nodes, for a gang) now */
    JZ_SCHED_REASON_PRIORITY = 2,    /* resources are reserved for a higher-priority job */
    JZ_SCHED_REASON_QUOTA = 3,       /* tenant at its GPU quota: overall, or in the site of
                                      * every node that would do (the text names it); or the
                                      * job is larger than the whole quota */
    JZ_SCHED_REASON_RESERVATION = 4, /* the free GPUs are reserved for another tenant */
    JZ_SCHED_REASON_DEPENDENCY = 5,
    JZ_SCHED_REASON_CREDITS = 6,
    JZ_SCHED_REASON_NEVER = 7, /* no node set could ever hold it (jz_sched_could_ever_fit) */
    JZ_SCHED_REASON_NEW = 8,   /* not yet looked at */
};
const char *jz_sched_reason_name(enum jz_sched_reason r); /* "resources", ... (static) */

struct jz_sched_job_info {
    enum jz_sched_state state;
    enum jz_sched_reason reason;
    int64_t est_start;  /* -1 when the backfill plan does not know */
    double priority;    /* at the last decision that looked at it */
    size_t node;        /* RUNNING/PREEMPTING: part 0's node (the rank-0 node) */
    size_t part_count;  /* RUNNING/PREEMPTING: its parts (nodes); 0 while it waits */
    int64_t start_time; /* RUNNING/PREEMPTING */
    double attained_gpu_s;  /* GPU-seconds received in runs that ended (preempted ones) */
    unsigned las_band;      /* 0 = least attained (its class orders by LAS, else 0) */
    unsigned preemptions;   /* times it was preempted and requeued */
    char reason_text[JZ_SCHED_REASON_LEN];
};
/* What is known about a job; JZ_ENOENT when unknown (ended jobs are forgotten). */
int jz_sched_job_info(const struct jz_sched *s, uint64_t id, struct jz_sched_job_info *info,
                      struct jz_error *err);

struct jz_sched_stats {
    size_t pending, held, running, nodes, gpus_total, gpus_busy; /* nodes: not removed */
    size_t bytes;       /* memory held by the scheduler's own structures */
    uint64_t decisions; /* START + PREEMPT decisions so far */
};
void jz_sched_stats_get(const struct jz_sched *s, struct jz_sched_stats *st);

#endif
