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
#define JZ_SCHED_MAX_JOBS 4000000 /* jobs known at once (pending + running) */
#define JZ_SCHED_MAX_RESERVATIONS 1024
#define JZ_SCHED_MAX_DEPS 16                    /* dependencies per job */
#define JZ_SCHED_MAX_TIME_LIMIT (366LL * 86400) /* seconds */
#define JZ_SCHED_REASON_LEN 192

/* A priority class. Higher rank is more important. */
struct jz_sched_class {
    char name[JZ_SCHED_NAME_LEN];
    unsigned rank;    /* 0..100; also the class factor (rank / 100) in the priority */
    bool can_preempt; /* may stop preemptible jobs of lower rank to start */
};

struct jz_sched_tenant {
    char name[JZ_SCHED_NAME_LEN];
    double weight;                      /* fair-share weight (> 0) */
    unsigned max_gpus;                  /* quota: GPUs in use at once; 0 = no limit */
    char class_name[JZ_SCHED_NAME_LEN]; /* default class of its jobs; "" = the config's default */
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
                                  * decide call; default 16 */
    unsigned backfill_max_tests; /* jobs left waiting looked at per decide call; default 500 */
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

/* Adds or replaces a tenant (weight, quota, class) at run time. */
int jz_sched_tenant_set(struct jz_sched *s, const struct jz_sched_tenant *t, struct jz_error *err);
/* Startup credits: a tenant without credit keeps its jobs waiting (reason "credits"). */
int jz_sched_tenant_set_credit(struct jz_sched *s, const char *tenant, bool has_credit,
                               struct jz_error *err);
/* Decayed usage in GPU-seconds and the fair-share factor (0..1, 1 = under its share) at now. */
int jz_sched_tenant_usage(struct jz_sched *s, const char *tenant, int64_t now, double *gpu_seconds,
                          double *fair_share, struct jz_error *err);

/* Adds a node. topo is borrowed and must outlive the scheduler (nodes of identical hardware may
 * share one topology, which the scheduler exploits). *index receives the node index. */
int jz_sched_node_add(struct jz_sched *s, const char *name, const struct jz_topo *topo,
                      size_t *index, struct jz_error *err);
/* Takes a node out of (false) or back into (true) service; running jobs are not touched. */
int jz_sched_node_set_up(struct jz_sched *s, size_t node, bool up, struct jz_error *err);
/* What the scheduler holds of a node now (for `jazari nodes` and metrics). */
struct jz_sched_node_info {
    const char *name; /* owned by s */
    bool up;
    unsigned gpus, free_gpus, cores, free_cores;
    uint64_t gpu_busy; /* bit i: topology GPU i in use */
    size_t running;    /* running and preempting jobs */
};
int jz_sched_node_info(const struct jz_sched *s, size_t node, struct jz_sched_node_info *info,
                       struct jz_error *err);
/* Name of node i (owned by s), NULL when out of range. */
const char *jz_sched_node_name(const struct jz_sched *s, size_t node);
size_t jz_sched_node_count(const struct jz_sched *s);

int jz_sched_reservation_add(struct jz_sched *s, const struct jz_sched_reservation *r,
                             struct jz_error *err);
int jz_sched_reservation_remove(struct jz_sched *s, const char *name, struct jz_error *err);

/* A job as submitted. Strings are borrowed for the call. */
struct jz_sched_job {
    uint64_t id; /* unique, non-zero */
    const char *tenant;
    const char *user;       /* not used by the policy (fair share is per tenant); not kept */
    const char *class_name; /* NULL or "": the tenant's class */
    unsigned gpus;          /* on one node; 0 for a CPU-only job */
    unsigned cpus_per_gpu;  /* whole cores per GPU */
    unsigned cpus;          /* whole cores for a CPU-only job */
    int64_t time_limit_s;   /* > 0, at most JZ_SCHED_MAX_TIME_LIMIT */
    bool preemptible;
    int64_t submit_time;
    const char *model;          /* GPU model constraint (substring), NULL = any */
    uint64_t min_memory_bytes;  /* 0 = any */
    const uint64_t *depends_on; /* jobs that must end successfully first */
    size_t depends_count;
};

/* Queues a job (the event "arrived"). JZ_EEXIST for a known id, JZ_EINVAL for a bad spec,
 * JZ_ENOENT for an unknown class. A job too big for every node is accepted and waits with
 * reason "never" (nodes may be added later). */
int jz_sched_submit(struct jz_sched *s, const struct jz_sched_job *job, int64_t now,
                    struct jz_error *err);
/* A job is over: it ran and ended (or was killed), the service could not start it after a
 * START decision, or it was dropped while waiting. Its resources are freed (its GPU-seconds were
 * charged as it ran). ok == false marks jobs that depend on it as never runnable (reason
 * "dependency"). The job is forgotten. */
int jz_sched_job_ended(struct jz_sched *s, uint64_t id, int64_t now, bool ok, struct jz_error *err);
/* A preempted job has stopped: its resources are freed and it waits again, keeping its
 * original submit time. */
int jz_sched_job_requeue(struct jz_sched *s, uint64_t id, int64_t now, struct jz_error *err);
/* Removes a waiting (or held) job. A running job returns JZ_EBUSY: stop it, then job_ended. */
int jz_sched_cancel(struct jz_sched *s, uint64_t id, int64_t now, struct jz_error *err);
/* After a service restart: records a job already running on node with these GPUs and cores
 * (topology indexes), started at start_time. */
int jz_sched_adopt_running(struct jz_sched *s, const struct jz_sched_job *job, size_t node,
                           const size_t *gpus, size_t gpu_count, const size_t *cores,
                           size_t core_count, int64_t start_time, struct jz_error *err);

enum jz_sched_action {
    JZ_SCHED_START = 1,   /* start job_id on node with the placement below */
    JZ_SCHED_PREEMPT = 2, /* send job_id its checkpoint signal; kill after grace_s; then call
                           * jz_sched_job_requeue */
};

struct jz_sched_decision {
    enum jz_sched_action action;
    uint64_t job_id;
    size_t node;
    const char *node_name;         /* owned by the scheduler */
    struct jz_place_result place;  /* START: GPUs, cores, OS CPUs, NUMA, reason (owned by out) */
    uint64_t for_job;              /* PREEMPT: the job that needs the resources */
    int64_t grace_s;               /* PREEMPT */
    char why[JZ_SCHED_REASON_LEN]; /* one sentence */
};

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
    JZ_SCHED_REASON_RESOURCES = 1,   /* not enough free GPUs/cores now */
    JZ_SCHED_REASON_PRIORITY = 2,    /* resources are reserved for a higher-priority job */
    JZ_SCHED_REASON_QUOTA = 3,       /* tenant at its GPU quota */
    JZ_SCHED_REASON_RESERVATION = 4, /* the free GPUs are reserved for another tenant */
    JZ_SCHED_REASON_DEPENDENCY = 5,
    JZ_SCHED_REASON_CREDITS = 6,
    JZ_SCHED_REASON_NEVER = 7, /* no node could ever hold it (too big, no such model) */
    JZ_SCHED_REASON_NEW = 8,   /* not yet looked at */
};
const char *jz_sched_reason_name(enum jz_sched_reason r); /* "resources", ... (static) */

struct jz_sched_job_info {
    enum jz_sched_state state;
    enum jz_sched_reason reason;
    int64_t est_start;  /* -1 when the backfill plan does not know */
    double priority;    /* at the last decision that looked at it */
    size_t node;        /* RUNNING/PREEMPTING: its node */
    int64_t start_time; /* RUNNING/PREEMPTING */
    char reason_text[JZ_SCHED_REASON_LEN];
};
/* What is known about a job; JZ_ENOENT when unknown (ended jobs are forgotten). */
int jz_sched_job_info(const struct jz_sched *s, uint64_t id, struct jz_sched_job_info *info,
                      struct jz_error *err);

struct jz_sched_stats {
    size_t pending, held, running, nodes, gpus_total, gpus_busy;
    size_t bytes;       /* memory held by the scheduler's own structures */
    uint64_t decisions; /* START + PREEMPT decisions so far */
};
void jz_sched_stats_get(const struct jz_sched *s, struct jz_sched_stats *st);

#endif
