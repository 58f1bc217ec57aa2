/* Internals of the scheduler object, shared by its source files (sched.c: events, queues and the
 * decision loop; gang.c: node sets for multi-node jobs; fit.c: could-ever-fit; preempt.c:
 * preemption; reconfigure.c: a new policy or set of reservations for a live scheduler). Not
 * installed and not for callers: everything here may change. Functions shared between these
 * files are named jz_sched__* so the purity check's allow-list covers them. */
#ifndef JZ_SCHED_SCHED_IMPL_H
#define JZ_SCHED_SCHED_IMPL_H

#include "scheduler/sched.h"

#define NEVER INT64_MAX
#define NO_SWITCH UINT32_MAX

enum fail {
    FIT = 0,
    FAIL_RESOURCES,
    FAIL_RESERVATION,
    FAIL_SHADOW,    /* held for the head of the queue, or for a preemptor */
    FAIL_NONE_FREE, /* no node (or too few, for a gang) has enough free GPUs at all */
    FAIL_QUOTA,     /* only nodes in sites where the tenant is at its quota would do */
};

struct job;

/* One part of a running job: what it holds on one node. A single-node job has one. */
struct part {
    struct job *job;
    uint64_t gpu_mask;
    size_t *cores;
    uint32_t node, node_pos, ncores;
};

struct job {
    uint64_t id;
    int64_t submit, limit, start, est_start, end_expected;
    int64_t ran;    /* seconds run before the current run (earlier runs, ended by preemption) */
    int64_t queued; /* when it last joined the queue (submitted or requeued) */
    double key, prio;
    uint64_t reason_arg;
    uint64_t for_job; /* PREEMPTING: the job it makes room for */
    /* RUNNING/PREEMPTING: one part per node (jz_sched__nparts), one allocation with their
     * cores; NULL otherwise. */
    struct part *parts;
    /* A waiting preemptor: the nodes held for it (struct node.claim_job), one per part; NULL
     * otherwise. */
    uint32_t *claims;
    char *model;
    char *resv_name; /* bound to this reservation (struct jz_sched_job.reservation); NULL */
    uint64_t min_mem;
    uint64_t *dependents;
    uint32_t ndependents, dependents_cap;
    uint32_t tenant, heap_pos, pass, fit_epoch;
    uint16_t gpus, cpus_per_gpu, cpus, deps_left, nodes, victims_left;
    uint8_t cls, state, reason, preemptions;
    bool preemptible, dep_failed;
    bool parked;    /* waiting outside the queues (s->never): it could never run on the nodes
                     * there are (reason "never") or is larger than its tenant's quota */
    bool fits_ever; /* could_ever_fit as of fit_epoch */
    bool starved;   /* waited starve_after: ordered by class, size and age alone */
};

struct queue {
    uint32_t tenant;
    unsigned k;
    struct job **h; /* max-heap by key, then lower id */
    size_t n, cap;
    size_t active_pos;
    uint32_t pass, examined;
    uint8_t block;
    uint64_t block_arg;
    /* As of the last full pass (full_pass == s->full_pass): the reason of its jobs that pass
     * did not look at, which jz_sched_job_info derives instead of a walk writing it into every
     * waiting job. */
    uint32_t full_pass;
    uint8_t full_block;
    uint64_t full_block_arg;
};

struct site_quota {
    uint32_t site;
    unsigned max;
};

/* A quota on one GPU model and the tenant's GPUs of that model in use (quota.c). */
struct model_quota {
    char model[JZ_SCHED_NAME_LEN];
    unsigned max, use;
};

struct tenant {
    char name[JZ_SCHED_NAME_LEN];
    double weight;
    unsigned max_gpus;
    int cls;
    bool has_credit;
    double usage; /* decayed GPU-seconds as of usage_time */
    int64_t usage_time;
    bool usage_started;
    unsigned in_use;
    double fs;
    struct site_quota *quotas;
    size_t nquotas;
    struct model_quota *mquotas; /* quota.c */
    size_t nmquotas;
    unsigned *site_use; /* GPUs in use per site index (grown on demand) */
    size_t site_use_cap;
    /* Waiting jobs by GPUs per node: [0] single-node jobs, [1] gangs. Gangs wait apart: one
     * that cannot start says nothing about the single-node jobs of its size, and a line of
     * them must not use up the depth a decision gives the queue. */
    struct queue *queues[2][JZ_TOPO_MAX_GPUS + 1];
};

struct resv {
    char name[JZ_SCHED_NAME_LEN];
    uint32_t tenant;
    int64_t start, end;
    unsigned gpus;
};

struct shape {
    const struct jz_topo *t; /* the first topology of this shape */
    uint64_t *set_cache;     /* up to 10 GPUs: chosen set by (free mask, size); 0 unknown */
    uint8_t best[JZ_TOPO_MAX_GPUS + 1]; /* best worst link per size on an empty node; 0xff
                                         * not yet known */
};

/* A distinct topology and how many nodes (not removed) have it: could_ever_fit works on these,
 * which are few even when nodes are many. */
struct topo_info {
    const struct jz_topo *t;
    size_t alive;
    /* For k GPUs with no model or memory constraint, on an empty node: the most cores per GPU
     * known to fit and the fewest known not to (fit.c). */
    int32_t ok_cpg[JZ_TOPO_MAX_GPUS + 1], bad_cpg[JZ_TOPO_MAX_GPUS + 1];
};

struct node {
    char *name;
    const struct jz_topo *topo;
    bool up, removed;
    unsigned gpus, cores;
    unsigned free_gpus, free_cores;
    uint64_t gpu_busy;
    uint64_t *core_busy;
    struct part **run; /* parts of running and preempting jobs, by expected end */
    size_t nrun, runcap;
    size_t bucket_pos;
    uint32_t shape, topo_i, site, sw;
    uint32_t head_mark; /* == the head's mark: held for the head of the queue */
    /* A waiting preemptor this node is held for while its victims stop: it needs claim_gpus
     * here from claim_until (its expected start), and claim_pending of them are still held by
     * its victims. */
    uint64_t claim_job;
    int64_t claim_until;
    unsigned claim_gpus, claim_pending;
    uint32_t *resv; /* reservation indexes */
    size_t nresv;
};

/* Min tournament tree over nodes: the earliest time node n has >= k free GPUs. */
struct tree {
    int64_t *t;
    uint32_t *who;
    size_t p;
};

/* Interned names (sites, switches): index by name and name by index. */
struct names {
    char **v;
    size_t n, cap;
    uint32_t *hash; /* index + 1, 0 empty */
    size_t hash_cap;
};

/* The highest-priority job that cannot start, and the nodes held for it until t. */
struct head {
    bool set;
    struct job *job;
    int64_t t;
    unsigned k;    /* GPUs it needs on each held node */
    uint32_t mark; /* nodes with head_mark == mark are held */
};

/* Where a job would start: its parts (the decision's array, malloc'd). */
struct plan {
    struct jz_sched_part *parts;
    size_t n;
    unsigned nsites, nswitches; /* gangs: how spread the node set is */
    uint32_t quota_site;        /* FAIL_QUOTA: a site where the tenant is at its quota */
    size_t usable;              /* gangs that do not fit: nodes that could take a part now */
};

struct gang_cand {
    uint32_t node, site, sw, waste;
    bool dead;
};

struct jz_sched {
    struct jz_sched_config cfg;
    struct jz_sched_class classes[JZ_SCHED_MAX_CLASSES];
    size_t nclasses;
    int default_class;

    struct tenant **tenants;
    size_t ntenants, tenants_cap;
    uint32_t *tenant_hash; /* index + 1, 0 empty */
    size_t tenant_hash_cap;

    struct node *nodes;
    size_t nnodes, nodes_cap, nalive;
    size_t nout; /* nodes not removed but out of service (down or drained) */
    struct topo_info *topos; /* distinct topologies of the nodes */
    size_t ntopos, topos_cap;
    /* GPU choice depends only on the distance matrix: topologies with equal matrices (nodes of
     * one model, even loaded separately) share one "shape" and its caches. */
    struct shape *shapes;
    size_t nshapes, shapes_cap;
    uint32_t *node_hash; /* node index + 1 by name, 0 empty; removed nodes are not in it */
    size_t node_hash_cap;
    unsigned max_gpus, max_cores; /* over all nodes ever added: job keys depend on max_gpus */
    struct names sites, switches;
    size_t **bucket; /* bucket[f]: up nodes with f free GPUs */
    size_t *bucket_n, *bucket_cap;
    unsigned nbuckets;
    struct tree *trees; /* trees[k], k = 1..max_gpus */
    unsigned ntrees;
    bool trees_dirty;
    uint32_t head_mark;

    /* Bumped when nodes are added or removed: cached could-ever-fit answers are stale. */
    uint32_t fit_epoch;
    bool never_recheck; /* nodes or quotas changed: look at the parked jobs again */
    struct job **never; /* parked jobs, by heap_pos */
    size_t nnever, never_cap;

    struct resv *resv;
    size_t nresv;

    struct job **table; /* open addressing by id */
    size_t table_cap, njobs;
    size_t pending, held, running;
    size_t job_extra_bytes;

    struct queue **active;
    size_t nactive, active_cap;

    uint32_t pass;
    uint32_t full_pass;        /* the last full pass's number, and its time */
    int64_t full_now;
    int64_t next_starve_check; /* starvation is looked for at most every STARVE_CHECK_S */
    uint64_t decisions;
    /* per-decide scratch */
    struct job **tmp;
    size_t ntmp, tmp_cap;
    struct cand {
        double p;
        struct queue *q;
    } * cand;
    size_t ncand, cand_cap;
    /* gang planning and preemption scratch */
    struct gang_cand *gc;
    size_t gc_cap;
    uint32_t *scratch;
    size_t scratch_cap;
    struct job **victims;
    size_t victims_cap;
};

/* ---------- helpers shared by the scheduler's files (sched.c) ---------- */

int jz_sched__grow(void **p, size_t *cap, size_t need, size_t elem);
void jz_sched__say(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct jz_sched_decision *jz_sched__decision_new(struct jz_sched_decisions *d);
const struct job *jz_sched__job_find(const struct jz_sched *s, uint64_t id);
/* Parts a job has when it runs: 1 for a single-node job. */
static inline unsigned jz_sched__parts_of(const struct job *j)
{
    return j->nodes > 1 ? j->nodes : 1;
}
/* Parts it holds now, and nodes held for it now (counts are not stored: every byte of struct job
 * is paid once per waiting job). */
static inline unsigned jz_sched__nparts(const struct job *j)
{
    return j->parts ? jz_sched__parts_of(j) : 0;
}
static inline unsigned jz_sched__nclaims(const struct job *j)
{
    return j->claims ? jz_sched__parts_of(j) : 0;
}
/* The order of a job within its class as if it waited now (LAS band, shortest remaining limit,
 * class, size and age); a running job counts the time it has run so far. Higher goes first. */
double jz_sched__job_key_at(const struct jz_sched *s, const struct job *j, int64_t now);
/* A job's attained service (GPU-seconds) at now, and its LAS band. */
double jz_sched__attained(const struct job *j, int64_t now);
unsigned jz_sched__las_band(const struct jz_sched *s, double attained);

/* Whether node n may take one part of j now, leaving aside which GPUs (jz_place decides):
 * free GPUs and cores, the tenant's site quota, reservations, the head's hold and preemptors'
 * claims. */
enum fail jz_sched__node_usable(const struct jz_sched *s, const struct job *j, size_t n,
                                int64_t now, const struct head *hd);
/* Places one part of j on node n (already found usable); true with *r filled when it fits. */
bool jz_sched__place_on_node(struct jz_sched *s, const struct job *j, size_t n,
                             struct jz_place_result *r);
/* GPUs the tenant may still start in site (UINT_MAX when it has no quota there). */
unsigned jz_sched__site_room(const struct tenant *t, uint32_t site);
/* Moves a job in its nodes' end order after its end_expected changed. */
void jz_sched__job_reorder(struct jz_sched *s, struct job *j, int64_t end_expected);
void jz_sched__plan_free(struct plan *p);
/* A new head mark (never 0, which no head uses). */
uint32_t jz_sched__new_mark(struct jz_sched *s);

/* ---------- GPU-model quotas (quota.c) ---------- */

/* Checks t's model quotas (count, names, no model twice). */
int jz_sched__model_quotas_check(const struct jz_sched_tenant *t, struct jz_error *err);
/* A copy of t's model quotas with no use counted (*out NULL when none). JZ_ENOMEM. */
int jz_sched__model_quotas_copy(const struct jz_sched_tenant *t, struct model_quota **out,
                                struct jz_error *err);
/* Replaces tenant ti's model quotas with q (n of them, taken over) and counts the GPUs of each
 * model its running jobs hold. */
void jz_sched__model_quotas_adopt(struct jz_sched *s, uint32_t ti, struct model_quota *q,
                                  size_t n);
/* Whether j may start k more GPUs on node nd within its tenant's model quotas (a gang: room for
 * all its parts' GPUs in each quota of nd's models, conservatively); when not and which is not
 * NULL, *which is the first quota in the way. */
bool jz_sched__model_room(const struct jz_sched *s, const struct job *j, const struct node *nd,
                          unsigned k, size_t *which);
/* The reason_arg of a job waiting for a model quota (site quotas use site + 1). */
#define JZ_SCHED__MODEL_QUOTA_ARG ((uint64_t)1 << 40)
/* Why j waits for a model quota, into b (n bytes). */
void jz_sched__model_quota_text(const struct jz_sched *s, const struct job *j, char *b, size_t n);
/* Counts (on) or releases the GPUs of one running part in its tenant's model quotas. */
void jz_sched__model_charge(const struct jz_sched *s, struct tenant *t, const struct part *p,
                            bool on);

/* ---------- shared with reconfigure.c (defined in sched.c) ---------- */

bool jz_sched__name_ok(const char *s);
/* A tenant's own fields (name, weight, class name's length, site quotas), before its class is
 * looked up where the caller looks it up: the live scheduler's, or a new configuration's. */
int jz_sched__tenant_check(const struct jz_sched_tenant *t, struct jz_error *err);
int jz_sched__class_find(const struct jz_sched *s, const char *name);
int jz_sched__tenant_find(const struct jz_sched *s, const char *name);
size_t jz_sched__node_find(const struct jz_sched *s, const char *name); /* SIZE_MAX: none */
int jz_sched__site_intern(struct jz_sched *s, const char *name, uint32_t *out,
                          struct jz_error *err);
/* A site's index; UINT32_MAX when unknown. */
uint32_t jz_sched__site_find(const struct jz_sched *s, const char *name);
/* Makes room for `more` new sites, so that as many jz_sched__site_adopt calls cannot fail;
 * nothing visible changes. Does not check JZ_SCHED_MAX_SITES (the caller does). */
int jz_sched__sites_reserve(struct jz_sched *s, size_t more);
/* Adds a site not yet known, in reserved room; s takes name (malloc'd). Returns its index,
 * s->sites.n before the call. */
uint32_t jz_sched__site_adopt(struct jz_sched *s, char *name);
/* The configuration's scalar settings are in range (classes and tenants aside). */
int jz_sched__config_check(const struct jz_sched_config *cfg, struct jz_error *err);
/* The classes a configuration defines, its default class added (rank 50, default_order) when
 * it does not name one of them; out has JZ_SCHED_MAX_CLASSES slots. */
int jz_sched__classes_build(const struct jz_sched_config *cfg, struct jz_sched_class *out,
                            size_t *count, int *default_class, struct jz_error *err);
/* A tenant with the defaults (weight, class, credit) of s, not yet in s; NULL without memory. */
struct tenant *jz_sched__tenant_new(const struct jz_sched *s, const char *name);
/* Makes room for `more` tenants, so that as many jz_sched__tenant_insert calls cannot fail. */
int jz_sched__tenants_reserve(struct jz_sched *s, size_t more);
void jz_sched__tenant_insert(struct jz_sched *s, struct tenant *t);
/* Fair-share factors from the usage as last brought up to date (no time passes). */
void jz_sched__fair_share_compute(struct jz_sched *s);
/* Restores a queue's heap order after its jobs' keys changed (O(n)). */
void jz_sched__queue_heapify(struct queue *q);

/* ---------- fit.c ---------- */

/* Could a node of topology ti ever hold one part of j (cached when j has no model or memory
 * constraint)? */
bool jz_sched__topo_holds(struct jz_sched *s, size_t ti, const struct job *j);
/* jz_sched_could_ever_fit for a queued job, cached per job until nodes are added or removed. */
bool jz_sched__ever_fits(struct jz_sched *s, struct job *j);
/* Why a queued job never fits (for its reason text). */
void jz_sched__never_why(const struct jz_sched *s, const struct job *j, char *buf, size_t len);

/* ---------- gang.c ---------- */

/* All-or-nothing placement of a gang on jz_sched__parts_of(j) distinct nodes: one site if it
 * can, then nodes under one switch, then best fit. FIT fills *out. */
enum fail jz_sched__gang_place(struct jz_sched *s, struct job *j, int64_t now,
                               const struct head *hd, struct plan *out);
/* Makes j the head: the earliest time enough nodes (one, or the gang's count) will have j's GPUs
 * free if running jobs end at their limits, and marks those nodes held until then. hd->t is
 * NEVER when no such time is known. */
void jz_sched__head_shadow(struct jz_sched *s, struct job *j, int64_t now, struct head *hd);

/* ---------- preempt.c ---------- */

/* Finds running preemptible jobs of lower rank (and, with same_rank, of j's rank far behind it:
 * see can_stop) whose GPUs let j start (on one node, or on the gang's count of nodes), asks them
 * to stop and holds those nodes for j until it starts. */
bool jz_sched__try_preempt(struct jz_sched *s, struct job *j, int64_t now, bool same_rank,
                           struct jz_sched_decisions *out, struct head *hd);
/* Drops the nodes held for j (it started, left, or its victims stopped and it still does not
 * fit). */
void jz_sched__claims_release(struct jz_sched *s, struct job *j);
/* GPUs on node nd that j, starting now, may not take because they are held for another job's
 * preemption. */
unsigned jz_sched__claim_held(const struct node *nd, const struct job *j, int64_t now);

#endif
