/* The event-driven scheduler: per-(tenant, size) priority queues, multifactor priority with
 * decayed fair share, quotas (overall and per site), credits, reservations, EASY backfill and
 * preemption, for jobs on one node or gangs over several. Pure: state and time come in as
 * arguments; decisions go out as values. Node sets for gangs are in gang.c, could-ever-fit in
 * fit.c, preemption in preempt.c. */
#include "scheduler/sched_impl.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_SCAN_LIMIT 64    /* nodes examined per placement attempt */
#define NODE_FITS_WANTED 4    /* fitting nodes compared (by GPU distance) before choosing */
#define PREEMPT_SEARCHES 4    /* preemption searches per decide call */
#define STARVE_CHECK_S 300    /* starvation is slow (starve_after: a day): look every 5 min */
#define SET_CACHE_MAX_GPUS 10 /* topologies this small cache every (free set, size) choice */
#define SET_KNOWN (1ull << 63)

/* ---------- small helpers ---------- */

int jz_sched__grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return JZ_ENOMEM;
    *p = np;
    *cap = nc;
    return 0;
}
#define grow jz_sched__grow

static uint64_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

bool jz_sched__name_ok(const char *s)
{
    return s && *s && strlen(s) < JZ_SCHED_NAME_LEN;
}
#define name_ok jz_sched__name_ok

void jz_sched__say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap); /* a sentence cut short still explains */
    va_end(ap);
}
#define say jz_sched__say

/* ---------- interned names (sites, switches) ---------- */

static uint32_t names_find(const struct names *nm, const char *name)
{
    if (!nm->hash_cap)
        return UINT32_MAX;
    size_t m = nm->hash_cap - 1;
    for (size_t i = hash_str(name) & m; nm->hash[i]; i = (i + 1) & m)
        if (strcmp(nm->v[nm->hash[i] - 1], name) == 0)
            return nm->hash[i] - 1;
    return UINT32_MAX;
}

/* Makes room for `more` new names, so that as many names_insert calls cannot fail. The hash is
 * rebuilt over the names there are: nothing visible changes. */
static int names_reserve(struct names *nm, size_t more)
{
    size_t need = nm->n + more;
    if (grow((void **)&nm->v, &nm->cap, need, sizeof(*nm->v)))
        return JZ_ENOMEM;
    if (need * 2 <= nm->hash_cap)
        return 0;
    size_t cap = nm->hash_cap ? nm->hash_cap * 2 : 16;
    while (need * 2 > cap)
        cap *= 2;
    uint32_t *h = calloc(cap, sizeof(*h));
    if (!h)
        return JZ_ENOMEM;
    for (size_t k = 0; k < nm->n; k++) {
        size_t p = hash_str(nm->v[k]) & (cap - 1);
        while (h[p])
            p = (p + 1) & (cap - 1);
        h[p] = (uint32_t)k + 1;
    }
    free(nm->hash);
    nm->hash = h;
    nm->hash_cap = cap;
    return 0;
}

/* Adds name (malloc'd, not yet there; nm takes it) in room names_reserve made; returns its
 * index. */
static uint32_t names_insert(struct names *nm, char *name)
{
    size_t p = hash_str(name) & (nm->hash_cap - 1);
    while (nm->hash[p])
        p = (p + 1) & (nm->hash_cap - 1);
    nm->hash[p] = (uint32_t)nm->n + 1;
    nm->v[nm->n] = name;
    return (uint32_t)nm->n++;
}

/* The index of name, added when new; UINT32_MAX when out of memory. */
static uint32_t names_intern(struct names *nm, const char *name)
{
    uint32_t i = names_find(nm, name);
    if (i != UINT32_MAX)
        return i;
    size_t len = strlen(name) + 1;
    char *copy = malloc(len);
    if (!copy || names_reserve(nm, 1)) {
        free(copy);
        return UINT32_MAX;
    }
    memcpy(copy, name, len);
    return names_insert(nm, copy);
}

static void names_free(struct names *nm)
{
    for (size_t i = 0; i < nm->n; i++)
        free(nm->v[i]);
    free(nm->v);
    free(nm->hash);
}

/* ---------- job table ---------- */

static struct job *job_find(const struct jz_sched *s, uint64_t id)
{
    if (!s->table_cap || id == 0)
        return NULL;
    size_t m = s->table_cap - 1;
    for (size_t i = hash64(id) & m;; i = (i + 1) & m) {
        struct job *j = s->table[i];
        if (!j)
            return NULL;
        if (j->id == id)
            return j;
    }
}

const struct job *jz_sched__job_find(const struct jz_sched *s, uint64_t id)
{
    return job_find(s, id);
}

static int table_insert(struct jz_sched *s, struct job *j)
{
    if ((s->njobs + 1) * 2 > s->table_cap) {
        size_t nc = s->table_cap ? s->table_cap * 2 : 1024;
        struct job **nt = calloc(nc, sizeof(*nt));
        if (!nt)
            return JZ_ENOMEM;
        for (size_t i = 0; i < s->table_cap; i++) {
            struct job *x = s->table[i];
            if (!x)
                continue;
            size_t k = hash64(x->id) & (nc - 1);
            while (nt[k])
                k = (k + 1) & (nc - 1);
            nt[k] = x;
        }
        free(s->table);
        s->table = nt;
        s->table_cap = nc;
    }
    size_t m = s->table_cap - 1, i = hash64(j->id) & m;
    while (s->table[i])
        i = (i + 1) & m;
    s->table[i] = j;
    s->njobs++;
    return 0;
}

static void table_remove(struct jz_sched *s, uint64_t id)
{
    size_t m = s->table_cap - 1, i = hash64(id) & m;
    while (s->table[i] && s->table[i]->id != id)
        i = (i + 1) & m;
    if (!s->table[i])
        return;
    s->table[i] = NULL;
    s->njobs--;
    /* Backward-shift deletion keeps linear probing free of tombstones. */
    for (size_t j = (i + 1) & m; s->table[j]; j = (j + 1) & m) {
        size_t home = hash64(s->table[j]->id) & m;
        bool move = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (move) {
            s->table[i] = s->table[j];
            s->table[j] = NULL;
            i = j;
        }
    }
}

static void job_free(struct jz_sched *s, struct job *j)
{
    if (!j)
        return;
    if (j->model)
        s->job_extra_bytes -= strlen(j->model) + 1;
    s->job_extra_bytes -= j->dependents_cap * sizeof(uint64_t);
    free(j->model);
    free(j->resv_name);
    free(j->parts);
    free(j->claims);
    free(j->dependents);
    free(j);
}

/* ---------- tenants and classes ---------- */

int jz_sched__class_find(const struct jz_sched *s, const char *name)
{
    for (size_t i = 0; i < s->nclasses; i++)
        if (strcmp(s->classes[i].name, name) == 0)
            return (int)i;
    return -1;
}
#define class_find jz_sched__class_find

bool jz_sched_class_known(const struct jz_sched *s, const char *name)
{
    return name && class_find(s, name) >= 0;
}

int jz_sched__tenant_find(const struct jz_sched *s, const char *name)
{
    if (!s->tenant_hash_cap)
        return -1;
    size_t m = s->tenant_hash_cap - 1;
    for (size_t i = hash_str(name) & m; s->tenant_hash[i]; i = (i + 1) & m)
        if (strcmp(s->tenants[s->tenant_hash[i] - 1]->name, name) == 0)
            return (int)(s->tenant_hash[i] - 1);
    return -1;
}
#define tenant_find jz_sched__tenant_find

static int tenant_hash_rebuild(struct jz_sched *s, size_t cap)
{
    uint32_t *h = calloc(cap, sizeof(*h));
    if (!h)
        return JZ_ENOMEM;
    for (size_t t = 0; t < s->ntenants; t++) {
        size_t i = hash_str(s->tenants[t]->name) & (cap - 1);
        while (h[i])
            i = (i + 1) & (cap - 1);
        h[i] = (uint32_t)t + 1;
    }
    free(s->tenant_hash);
    s->tenant_hash = h;
    s->tenant_hash_cap = cap;
    return 0;
}

struct tenant *jz_sched__tenant_new(const struct jz_sched *s, const char *name)
{
    struct tenant *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->weight = s->cfg.default_weight;
    t->cls = s->default_class;
    t->has_credit = true;
    t->fs = 1.0;
    return t;
}

int jz_sched__tenants_reserve(struct jz_sched *s, size_t more)
{
    if (grow((void **)&s->tenants, &s->tenants_cap, s->ntenants + more, sizeof(*s->tenants)))
        return JZ_ENOMEM;
    size_t cap = s->tenant_hash_cap ? s->tenant_hash_cap : 64;
    while ((s->ntenants + more) * 2 > cap)
        cap *= 2;
    /* The rebuild only re-indexes the tenants there are: nothing visible changes. */
    if (cap != s->tenant_hash_cap && tenant_hash_rebuild(s, cap))
        return JZ_ENOMEM;
    return 0;
}

void jz_sched__tenant_insert(struct jz_sched *s, struct tenant *t)
{
    s->tenants[s->ntenants++] = t;
    size_t m = s->tenant_hash_cap - 1, k = hash_str(t->name) & m;
    while (s->tenant_hash[k])
        k = (k + 1) & m;
    s->tenant_hash[k] = (uint32_t)s->ntenants;
}

/* Returns the tenant index, creating it with defaults when unknown. */
static int tenant_get(struct jz_sched *s, const char *name, struct jz_error *err)
{
    int i = tenant_find(s, name);
    if (i >= 0)
        return i;
    if (!name_ok(name))
        return jz_error_set(err, JZ_EINVAL, "tenant name must be 1 to %d characters",
                            JZ_SCHED_NAME_LEN - 1);
    if (s->ntenants >= JZ_SCHED_MAX_TENANTS)
        return jz_error_set(err, JZ_ELIMIT, "more than %d tenants", JZ_SCHED_MAX_TENANTS);
    struct tenant *t = jz_sched__tenant_new(s, name);
    if (!t || jz_sched__tenants_reserve(s, 1)) {
        free(t);
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a tenant");
    }
    jz_sched__tenant_insert(s, t);
    return (int)s->ntenants - 1;
}

unsigned jz_sched__site_room(const struct tenant *t, uint32_t site)
{
    for (size_t i = 0; i < t->nquotas; i++)
        if (t->quotas[i].site == site) {
            unsigned use = site < t->site_use_cap ? t->site_use[site] : 0;
            return use >= t->quotas[i].max ? 0 : t->quotas[i].max - use;
        }
    return UINT_MAX;
}

/* Brings a tenant's decayed usage up to now, charging its running GPUs for the interval. */
static void tenant_advance(const struct jz_sched *s, struct tenant *t, int64_t now)
{
    if (!t->usage_started) {
        t->usage_started = true;
        t->usage_time = now;
        return;
    }
    if (now <= t->usage_time)
        return;
    double dt = (double)(now - t->usage_time);
    t->usage = t->usage * exp2(-dt / s->cfg.half_life_s) + (double)t->in_use * dt;
    t->usage_time = now;
}

void jz_sched__fair_share_compute(struct jz_sched *s)
{
    double utot = 0, wtot = 0;
    for (size_t i = 0; i < s->ntenants; i++) {
        utot += s->tenants[i]->usage;
        wtot += s->tenants[i]->weight;
    }
    for (size_t i = 0; i < s->ntenants; i++) {
        struct tenant *t = s->tenants[i];
        if (utot <= 0 || wtot <= 0 || t->weight <= 0)
            t->fs = utot <= 0 ? 1.0 : 0.0;
        else
            t->fs = exp2(-(t->usage / utot) / (t->weight / wtot));
    }
}

static void fair_share_update(struct jz_sched *s, int64_t now)
{
    for (size_t i = 0; i < s->ntenants; i++)
        tenant_advance(s, s->tenants[i], now);
    jz_sched__fair_share_compute(s);
}

/* ---------- priority ---------- */

static double size_factor(const struct jz_sched *s, unsigned k)
{
    unsigned m = s->max_gpus ? s->max_gpus : 1;
    return k >= m ? 1.0 : (double)k / m;
}

/* The part of the priority that orders jobs inside one (tenant, size) queue; waiting time adds
 * the same amount to all of them, so this order never changes while they wait. A gang's size is
 * all its GPUs. */
static double job_key(const struct jz_sched *s, const struct job *j)
{
    return jz_sched__job_key_at(s, j, 0);
}

double jz_sched__attained(const struct job *j, int64_t now)
{
    int64_t ran = j->ran;
    if (j->parts && now > j->start)
        ran += now - j->start;
    return (double)ran * (j->gpus ? j->gpus : 1) * jz_sched__parts_of(j); /* a CPU job: 1 */
}

unsigned jz_sched__las_band(const struct jz_sched *s, double attained)
{
    unsigned b = 0;
    while (b < s->cfg.las_band_count && attained >= s->cfg.las_thresholds[b])
        b++;
    return b;
}

/* Least attained service: Tiresias' discretised queues, as a step down per band (jobs of one
 * band keep their first-come order). Shortest first: what is left of the time limit, in
 * GPU-hours, on a log scale, so that each doubling costs the same and age can make up for it
 * (a job is never starved by a stream of shorter ones). A CPU-only job counts as one GPU. */
double jz_sched__job_key_at(const struct jz_sched *s, const struct job *j, int64_t now)
{
    const struct jz_sched_class *c = &s->classes[j->cls];
    double key = s->cfg.weight_class * c->rank / 100.0 +
                 s->cfg.weight_size * size_factor(s, j->gpus * jz_sched__parts_of(j)) -
                 s->cfg.weight_age * (double)j->submit / s->cfg.age_scale_s;
    if (j->starved)
        return key;
    if (c->order & JZ_SCHED_ORDER_LAS)
        key -= s->cfg.weight_las * jz_sched__las_band(s, jz_sched__attained(j, now));
    if (c->order & JZ_SCHED_ORDER_SHORTEST) {
        int64_t ran = j->ran + (j->parts && now > j->start ? now - j->start : 0);
        int64_t left = j->limit > ran ? j->limit - ran : 0;
        unsigned g = j->gpus ? j->gpus : 1;
        key -= s->cfg.weight_shortest *
               log2(1.0 + (double)left * g * jz_sched__parts_of(j) / 3600.0);
    }
    return key;
}

static double job_prio(const struct jz_sched *s, const struct job *j, int64_t now)
{
    return s->cfg.weight_fairshare * s->tenants[j->tenant]->fs + j->key +
           s->cfg.weight_age * (double)now / s->cfg.age_scale_s;
}

/* ---------- per-queue heaps ---------- */

static bool before(const struct job *a, const struct job *b)
{
    return a->key > b->key || (a->key == b->key && a->id < b->id);
}

static void heap_set(struct queue *q, size_t i, struct job *j)
{
    q->h[i] = j;
    j->heap_pos = (uint32_t)i;
}

static void sift_up(struct queue *q, size_t i)
{
    struct job *j = q->h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(j, q->h[p]))
            break;
        heap_set(q, i, q->h[p]);
        i = p;
    }
    heap_set(q, i, j);
}

static void sift_down(struct queue *q, size_t i)
{
    struct job *j = q->h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && before(q->h[c + 1], q->h[c]))
            c++;
        if (!before(q->h[c], j))
            break;
        heap_set(q, i, q->h[c]);
        i = c;
    }
    heap_set(q, i, j);
}

void jz_sched__queue_heapify(struct queue *q)
{
    for (size_t i = q->n / 2; i-- > 0;)
        sift_down(q, i);
}

static void active_add(struct jz_sched *s, struct queue *q)
{
    q->active_pos = s->nactive;
    s->active[s->nactive++] = q;
}

static void active_remove(struct jz_sched *s, struct queue *q)
{
    struct queue *last = s->active[--s->nactive];
    s->active[q->active_pos] = last;
    last->active_pos = q->active_pos;
}

static int queue_push(struct jz_sched *s, struct job *j)
{
    struct tenant *t = s->tenants[j->tenant];
    struct queue *q = t->queues[j->nodes > 1][j->gpus];
    if (!q) {
        if (grow((void **)&s->active, &s->active_cap, s->nactive + 1, sizeof(*s->active)))
            return JZ_ENOMEM;
        q = calloc(1, sizeof(*q));
        if (!q)
            return JZ_ENOMEM;
        q->tenant = j->tenant;
        q->k = j->gpus;
        q->active_pos = SIZE_MAX;
        t->queues[j->nodes > 1][j->gpus] = q;
    }
    if (grow((void **)&q->h, &q->cap, q->n + 1, sizeof(*q->h)))
        return JZ_ENOMEM;
    if (q->n == 0) {
        if (grow((void **)&s->active, &s->active_cap, s->nactive + 1, sizeof(*s->active)))
            return JZ_ENOMEM;
        active_add(s, q);
    }
    q->h[q->n++] = j;
    sift_up(q, q->n - 1);
    /* Joining after the last full pass: jz_sched_job_info keeps its own reason (NEW), not the
     * queue's reason of a pass that never saw it. */
    j->pass = s->pass;
    return 0;
}

static void queue_remove(struct jz_sched *s, struct job *j)
{
    struct queue *q = s->tenants[j->tenant]->queues[j->nodes > 1][j->gpus];
    size_t i = j->heap_pos;
    q->n--;
    if (i != q->n) {
        heap_set(q, i, q->h[q->n]);
        sift_down(q, i);
        sift_up(q, q->h[i]->heap_pos);
    }
    if (q->n == 0)
        active_remove(s, q);
}

/* Jobs that could never run wait outside the queues, so they neither block the jobs behind them
 * nor cost anything per decision; adding or removing nodes looks at them again. */
static int never_add(struct jz_sched *s, struct job *j)
{
    if (grow((void **)&s->never, &s->never_cap, s->nnever + 1, sizeof(*s->never)))
        return JZ_ENOMEM;
    j->heap_pos = (uint32_t)s->nnever;
    s->never[s->nnever++] = j;
    j->parked = true;
    return 0;
}

static void never_remove(struct jz_sched *s, struct job *j)
{
    struct job *last = s->never[--s->nnever];
    s->never[j->heap_pos] = last;
    last->heap_pos = j->heap_pos;
    j->parked = false;
}

/* Takes a waiting job out of wherever it waits. */
static void pending_unlink(struct jz_sched *s, struct job *j)
{
    if (j->parked)
        never_remove(s, j);
    else
        queue_remove(s, j);
}

/* ---------- nodes: buckets by free GPUs, and the earliest-free trees ---------- */

static int bucket_add(struct jz_sched *s, size_t n)
{
    unsigned f = s->nodes[n].free_gpus;
    if (grow((void **)&s->bucket[f], &s->bucket_cap[f], s->bucket_n[f] + 1, sizeof(size_t)))
        return JZ_ENOMEM;
    s->nodes[n].bucket_pos = s->bucket_n[f];
    s->bucket[f][s->bucket_n[f]++] = n;
    return 0;
}

static void bucket_del(struct jz_sched *s, size_t n)
{
    unsigned f = s->nodes[n].free_gpus;
    size_t pos = s->nodes[n].bucket_pos;
    size_t last = s->bucket[f][--s->bucket_n[f]];
    s->bucket[f][pos] = last;
    s->nodes[last].bucket_pos = pos;
}

/* Sets a leaf and mends the minima above it. A start or an end changes one node's time for a
 * few k only, and a changed leaf rarely moves the minimum far up: the walk stops at the first
 * node whose minimum stays as it was, since nothing above it can change then (this was 10% of
 * a full pass when every set walked all 14 levels of all 8 trees). */
static void tree_set(struct tree *tr, size_t leaf, int64_t v)
{
    size_t i = tr->p + leaf;
    if (tr->t[i] == v && tr->who[i] == (uint32_t)leaf)
        return;
    tr->t[i] = v;
    tr->who[i] = (uint32_t)leaf;
    for (i /= 2; i >= 1; i /= 2) {
        size_t a = 2 * i, b = 2 * i + 1;
        size_t w = tr->t[b] < tr->t[a] ? b : a;
        if (tr->t[i] == tr->t[w] && tr->who[i] == tr->who[w])
            break;
        tr->t[i] = tr->t[w];
        tr->who[i] = tr->who[w];
    }
}

/* Recomputes, for every k, when node n will have k free GPUs if its jobs end at their limits. */
static void node_times(struct jz_sched *s, size_t n)
{
    if (s->trees_dirty || s->ntrees == 0)
        return;
    struct node *nd = &s->nodes[n];
    unsigned have = nd->free_gpus;
    size_t r = 0;
    for (unsigned k = 1; k < s->ntrees; k++) {
        int64_t v;
        if (!nd->up || k > nd->gpus)
            v = NEVER;
        else if (k <= nd->free_gpus)
            v = 0;
        else {
            while (r < nd->nrun && have < k)
                have += nd->run[r++]->job->gpus;
            v = have >= k ? nd->run[r - 1]->job->end_expected : NEVER;
        }
        tree_set(&s->trees[k], n, v);
    }
}

static int trees_build(struct jz_sched *s)
{
    for (unsigned k = 0; k < s->ntrees; k++) {
        free(s->trees[k].t);
        free(s->trees[k].who);
    }
    free(s->trees);
    s->trees = NULL;
    s->ntrees = 0;
    unsigned nt = s->max_gpus + 1;
    size_t p = 1;
    while (p < s->nnodes)
        p *= 2;
    s->trees = calloc(nt, sizeof(*s->trees));
    if (!s->trees)
        return JZ_ENOMEM;
    s->ntrees = nt;
    for (unsigned k = 1; k < nt; k++) {
        struct tree *tr = &s->trees[k];
        tr->p = p;
        tr->t = malloc(2 * p * sizeof(int64_t));
        tr->who = malloc(2 * p * sizeof(uint32_t));
        if (!tr->t || !tr->who)
            return JZ_ENOMEM;
        for (size_t i = 0; i < 2 * p; i++) {
            tr->t[i] = NEVER;
            tr->who[i] = UINT32_MAX;
        }
    }
    s->trees_dirty = false;
    for (size_t n = 0; n < s->nnodes; n++)
        node_times(s, n);
    return 0;
}

/* Inserts p in its node's end order; the caller made room (runcap > nrun). */
static void run_add(struct node *nd, struct part *p)
{
    size_t i = nd->nrun++;
    while (i > 0 && nd->run[i - 1]->job->end_expected > p->job->end_expected) {
        nd->run[i] = nd->run[i - 1];
        nd->run[i]->node_pos = (uint32_t)i;
        i--;
    }
    nd->run[i] = p;
    p->node_pos = (uint32_t)i;
}

static void run_del(struct node *nd, struct part *p)
{
    for (size_t i = p->node_pos; i + 1 < nd->nrun; i++) {
        nd->run[i] = nd->run[i + 1];
        nd->run[i]->node_pos = (uint32_t)i;
    }
    nd->nrun--;
}

void jz_sched__job_reorder(struct jz_sched *s, struct job *j, int64_t end_expected)
{
    for (unsigned i = 0; i < jz_sched__nparts(j); i++)
        run_del(&s->nodes[j->parts[i].node], &j->parts[i]);
    j->end_expected = end_expected;
    for (unsigned i = 0; i < jz_sched__nparts(j); i++) {
        run_add(&s->nodes[j->parts[i].node], &j->parts[i]); /* the list just shrank by one */
        node_times(s, j->parts[i].node);
    }
}

static void set_bit(uint64_t *bm, size_t i, bool v)
{
    if (v)
        bm[i / 64] |= 1ull << (i % 64);
    else
        bm[i / 64] &= ~(1ull << (i % 64));
}

/* Marks part p's GPUs and cores used (on) or free (off) on its node, keeping buckets and trees.
 * Turning on needs room in the node's run list (the caller grew it). */
static int node_apply(struct jz_sched *s, struct part *p, bool on)
{
    struct node *nd = &s->nodes[p->node];
    if (nd->up)
        bucket_del(s, p->node);
    unsigned k = (unsigned)__builtin_popcountll(p->gpu_mask);
    if (on) {
        nd->gpu_busy |= p->gpu_mask;
        nd->free_gpus -= k;
        nd->free_cores -= p->ncores;
        run_add(nd, p);
    } else {
        nd->gpu_busy &= ~p->gpu_mask;
        nd->free_gpus += k;
        nd->free_cores += p->ncores;
        run_del(nd, p);
    }
    for (size_t c = 0; c < p->ncores; c++)
        set_bit(nd->core_busy, p->cores[c], on);
    int rc = 0;
    if (nd->up && bucket_add(s, p->node))
        rc = JZ_ENOMEM;
    node_times(s, p->node);
    return rc;
}

/* Whether reservation r is (one node's share of) the booking named name: "name" or
 * "name/...". */
static bool resv_is(const struct resv *r, const char *name)
{
    size_t l = strlen(name);
    return strncmp(r->name, name, l) == 0 && (r->name[l] == '\0' || r->name[l] == '/');
}

/* A job bound to a reservation may start on nd now only inside the window of its tenant's
 * reservation there, ending by its end, within its GPUs less those of the other jobs bound to
 * it on nd. Other reservations on nd still hold their GPUs against it. */
static bool bound_allow(const struct jz_sched *s, const struct node *nd, const struct job *j,
                        int64_t now)
{
    const struct resv *own = NULL;
    unsigned held = 0;
    for (size_t i = 0; i < nd->nresv; i++) {
        const struct resv *r = &s->resv[nd->resv[i]];
        if (!own && r->tenant == j->tenant && resv_is(r, j->resv_name)) {
            own = r;
            continue;
        }
        if (r->end > now && now + j->limit > r->start)
            held += r->gpus;
    }
    if (!own || now < own->start || now + j->limit > own->end)
        return false;
    unsigned used = 0;
    for (size_t r = 0; r < nd->nrun; r++) {
        const struct job *o = nd->run[r]->job;
        if (o->resv_name && strcmp(o->resv_name, j->resv_name) == 0)
            used += o->gpus;
    }
    /* Jobs of others running on the node were let in only because they end before every
     * reservation opens, or fit beside them: free_gpus is what this node has now. */
    return used + j->gpus <= own->gpus && (held == 0 || j->gpus + held <= nd->free_gpus);
}

/* May job j start now on node nd without eating into other tenants' reservations? GPUs whose
 * current jobs end before the reservation opens count as free by then. */
static bool reservations_allow(const struct jz_sched *s, const struct node *nd, const struct job *j,
                               int64_t now)
{
    if (j->resv_name)
        return bound_allow(s, nd, j, now);
    unsigned held = 0;
    int64_t first = NEVER;
    for (size_t i = 0; i < nd->nresv; i++) {
        const struct resv *r = &s->resv[nd->resv[i]];
        if (r->end <= now || now + j->limit <= r->start)
            continue; /* no overlap with the job's run */
        if (r->tenant == j->tenant && now >= r->start)
            continue; /* its own reservation, already open */
        held += r->gpus;
        int64_t from = r->start > now ? r->start : now;
        if (from < first)
            first = from;
    }
    if (held == 0)
        return true;
    unsigned busy_then = 0;
    for (size_t r = 0; r < nd->nrun; r++)
        if (nd->run[r]->job->end_expected > first)
            busy_then += nd->run[r]->job->gpus;
    return busy_then + held + j->gpus <= nd->gpus;
}

/* ---------- decisions ---------- */

void jz_sched_decisions_init(struct jz_sched_decisions *d)
{
    memset(d, 0, sizeof(*d));
}

void jz_sched__plan_free(struct plan *p)
{
    for (size_t i = 0; p->parts && i < p->n; i++)
        jz_place_result_free(&p->parts[i].place);
    free(p->parts);
    p->parts = NULL;
    p->n = 0;
}

void jz_sched_decisions_clear(struct jz_sched_decisions *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->count; i++) {
        struct plan p = {.parts = d->items[i].parts, .n = d->items[i].part_count};
        jz_sched__plan_free(&p);
    }
    d->count = 0;
}

void jz_sched_decisions_free(struct jz_sched_decisions *d)
{
    if (!d)
        return;
    jz_sched_decisions_clear(d);
    free(d->items);
    memset(d, 0, sizeof(*d));
}

struct jz_sched_decision *jz_sched__decision_new(struct jz_sched_decisions *d)
{
    if (grow((void **)&d->items, &d->cap, d->count + 1, sizeof(*d->items)))
        return NULL;
    struct jz_sched_decision *x = &d->items[d->count++];
    memset(x, 0, sizeof(*x));
    return x;
}

/* ---------- creation ---------- */

void jz_sched_config_defaults(struct jz_sched_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->half_life_s = 7 * 86400.0;
    cfg->weight_fairshare = 10000;
    cfg->weight_age = 1000;
    cfg->age_scale_s = 86400;
    cfg->weight_class = 100000;
    cfg->weight_size = 500;
    cfg->default_weight = 1;
    cfg->preempt_grace_s = 120;
    cfg->weight_las = 4000;
    cfg->las_thresholds[0] = 3600;
    cfg->las_thresholds[1] = 16 * 3600;
    cfg->las_band_count = 2;
    cfg->weight_shortest = 7000;
    cfg->preempt_margin = 8000;
    cfg->preempt_min_run_s = 1800;
    cfg->max_preemptions = 3;
    cfg->starve_after_s = 86400;
    cfg->starve_drain_factor = 2;
    cfg->default_order = JZ_SCHED_ORDER_LAS | JZ_SCHED_ORDER_SHORTEST;
    cfg->backfill_depth = 16;
    cfg->backfill_max_tests = 500;
    snprintf(cfg->default_class, sizeof(cfg->default_class), "normal");
}

/* Interns a site name, refusing more than JZ_SCHED_MAX_SITES distinct sites. */
int jz_sched__site_intern(struct jz_sched *s, const char *name, uint32_t *out,
                          struct jz_error *err)
{
    uint32_t i = names_find(&s->sites, name);
    if (i == UINT32_MAX) {
        if (s->sites.n >= JZ_SCHED_MAX_SITES)
            return jz_error_set(err, JZ_ELIMIT, "more than %d sites", JZ_SCHED_MAX_SITES);
        if ((i = names_intern(&s->sites, name)) == UINT32_MAX)
            return jz_error_set(err, JZ_ENOMEM, "out of memory adding site %s", name);
    }
    *out = i;
    return 0;
}
#define site_intern jz_sched__site_intern

uint32_t jz_sched__site_find(const struct jz_sched *s, const char *name)
{
    return names_find(&s->sites, name);
}

int jz_sched__sites_reserve(struct jz_sched *s, size_t more)
{
    return names_reserve(&s->sites, more);
}

uint32_t jz_sched__site_adopt(struct jz_sched *s, char *name)
{
    return names_insert(&s->sites, name);
}

int jz_sched__config_check(const struct jz_sched_config *v, struct jz_error *err)
{
    const char *bad = !(v->half_life_s > 0)               ? "half_life_s must be positive"
                      : !(v->age_scale_s > 0)             ? "age_scale_s must be positive"
                      : !(v->default_weight > 0)          ? "default_weight must be positive"
                      : !(v->weight_fairshare >= 0)       ? "weight_fairshare must be >= 0"
                      : !(v->weight_age >= 0)             ? "weight_age must be >= 0"
                      : !(v->weight_class >= 0)           ? "weight_class must be >= 0"
                      : !(v->weight_size >= 0)            ? "weight_size must be >= 0"
                      : !(v->weight_las >= 0)             ? "weight_las must be >= 0"
                      : !(v->weight_shortest >= 0)        ? "weight_shortest must be >= 0"
                      : !(v->preempt_margin >= 0)         ? "preempt_margin must be >= 0"
                      : !(v->starve_drain_factor >= 0)    ? "starve_drain_factor must be >= 0"
                      : v->las_band_count > JZ_SCHED_MAX_LAS_BANDS ? "too many las_thresholds"
                      : v->max_preemptions > UINT8_MAX    ? "max_preemptions must be at most 255"
                      : v->preempt_min_run_s < 0 || v->preempt_min_run_s > JZ_SCHED_MAX_TIME_LIMIT
                          ? "preempt_min_run_s must be 0 to 366 days"
                      : v->starve_after_s < 0 || v->starve_after_s > JZ_SCHED_MAX_TIME_LIMIT
                          ? "starve_after_s must be 0 to 366 days"
                      : v->default_order & ~(JZ_SCHED_ORDER_LAS | JZ_SCHED_ORDER_SHORTEST)
                          ? "default_order has unknown bits"
                      : v->preempt_grace_s < 0           ? "preempt_grace_s must be >= 0"
                      : v->backfill_depth == 0           ? "backfill_depth must be positive"
                      : v->backfill_max_tests == 0       ? "backfill_max_tests must be positive"
                      : !memchr(v->default_class, '\0', JZ_SCHED_NAME_LEN) || !v->default_class[0]
                          ? "default_class needs a name of 1 to 63 characters"
                          : NULL;
    if (bad)
        return jz_error_set(err, JZ_ERANGE,
                            "scheduler configuration: %s (start from jz_sched_config_defaults)",
                            bad);
    for (size_t b = 0; b < v->las_band_count; b++)
        if (!(v->las_thresholds[b] > (b ? v->las_thresholds[b - 1] : 0)))
            return jz_error_set(err, JZ_ERANGE,
                                "LAS thresholds must be positive and increasing (threshold %zu)",
                                b + 1);
    return 0;
}

int jz_sched__classes_build(const struct jz_sched_config *cfg, struct jz_sched_class *out,
                            size_t *count, int *default_class, struct jz_error *err)
{
    size_t nc = cfg->class_count, n = 0;
    if (nc > JZ_SCHED_MAX_CLASSES)
        return jz_error_set(err, JZ_ELIMIT, "more than %d classes", JZ_SCHED_MAX_CLASSES);
    if (nc && !cfg->classes)
        return jz_error_set(err, JZ_EINVAL, "class_count without classes");
    int def = -1;
    for (size_t i = 0; i < nc; i++) {
        const struct jz_sched_class *c = &cfg->classes[i];
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(out[k].name, c->name) == 0;
        if (!memchr(c->name, '\0', JZ_SCHED_NAME_LEN) || !name_ok(c->name) || c->rank > 100 ||
            dup || (c->order & ~(JZ_SCHED_ORDER_LAS | JZ_SCHED_ORDER_SHORTEST)))
            return jz_error_set(err, JZ_EINVAL,
                                "class %zu: needs a unique name, a rank 0..100 and an order of "
                                "JZ_SCHED_ORDER_* bits",
                                i);
        if (strcmp(c->name, cfg->default_class) == 0)
            def = (int)n;
        out[n++] = *c;
    }
    if (def < 0) {
        if (n == JZ_SCHED_MAX_CLASSES)
            return jz_error_set(err, JZ_ELIMIT, "no room for the default class");
        struct jz_sched_class c = {.rank = 50, .order = cfg->default_order};
        memcpy(c.name, cfg->default_class, sizeof(c.name));
        out[n] = c;
        def = (int)n++;
    }
    *count = n;
    *default_class = def;
    return 0;
}

int jz_sched__tenant_check(const struct jz_sched_tenant *t, struct jz_error *err)
{
    if (!memchr(t->name, '\0', JZ_SCHED_NAME_LEN) || !name_ok(t->name))
        return jz_error_set(err, JZ_EINVAL, "a tenant needs a name of 1 to %d characters",
                            JZ_SCHED_NAME_LEN - 1);
    if (!(t->weight > 0) || t->weight > 1e9)
        return jz_error_set(err, JZ_ERANGE, "tenant %s: weight must be in (0, 1e9]", t->name);
    if (!memchr(t->class_name, '\0', JZ_SCHED_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "tenant %s: class name too long", t->name);
    size_t nq = t->site_quota_count;
    if (nq > JZ_SCHED_MAX_SITES || (nq && !t->site_quotas))
        return jz_error_set(err, JZ_ELIMIT, "tenant %s: at most %d site quotas", t->name,
                            JZ_SCHED_MAX_SITES);
    for (size_t i = 0; i < nq; i++) {
        const char *site = t->site_quotas[i].site;
        if (!memchr(site, '\0', JZ_SCHED_NAME_LEN) || !name_ok(site))
            return jz_error_set(err, JZ_EINVAL, "tenant %s: site quota %zu needs a site name",
                                t->name, i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(t->site_quotas[k].site, site) == 0)
                return jz_error_set(err, JZ_EEXIST, "tenant %s: two quotas for site %s", t->name,
                                    site);
    }
    return jz_sched__model_quotas_check(t, err);
}

int jz_sched_tenant_set(struct jz_sched *s, const struct jz_sched_tenant *t, struct jz_error *err)
{
    if (!s || !t)
        return jz_error_set(err, JZ_EINVAL, "no scheduler or tenant");
    int rc = jz_sched__tenant_check(t, err);
    if (rc)
        return rc;
    int cls = s->default_class;
    if (t->class_name[0] && (cls = class_find(s, t->class_name)) < 0)
        return jz_error_set(err, JZ_ENOENT, "tenant %s: unknown class %s", t->name, t->class_name);
    size_t nq = t->site_quota_count;
    /* The limit first: a refused call must not keep some of the sites it named. */
    size_t fresh = 0;
    for (size_t i = 0; i < nq; i++)
        fresh += names_find(&s->sites, t->site_quotas[i].site) == UINT32_MAX;
    if (s->sites.n + fresh > JZ_SCHED_MAX_SITES)
        return jz_error_set(err, JZ_ELIMIT, "tenant %s: its sites would make more than %d sites",
                            t->name, JZ_SCHED_MAX_SITES);
    struct site_quota *q = NULL;
    if (nq && !(q = calloc(nq, sizeof(*q))))
        return jz_error_set(err, JZ_ENOMEM, "out of memory setting tenant %s", t->name);
    for (size_t i = 0; i < nq && rc == 0; i++) {
        rc = site_intern(s, t->site_quotas[i].site, &q[i].site, err);
        q[i].max = t->site_quotas[i].max_gpus;
    }
    struct model_quota *mq = NULL;
    if (rc == 0)
        rc = jz_sched__model_quotas_copy(t, &mq, err);
    int ti = rc ? rc : tenant_get(s, t->name, err);
    if (ti < 0) {
        free(q);
        free(mq);
        return ti;
    }
    struct tenant *x = s->tenants[ti];
    jz_sched__model_quotas_adopt(s, (uint32_t)ti, mq, t->model_quota_count);
    x->weight = t->weight;
    x->max_gpus = t->max_gpus;
    x->cls = cls;
    free(x->quotas);
    x->quotas = q;
    x->nquotas = nq;
    s->never_recheck = true; /* a job larger than the old quota may fit the new one */
    return 0;
}

int jz_sched_tenant_set_credit(struct jz_sched *s, const char *tenant, bool has_credit,
                               struct jz_error *err)
{
    int i = tenant_get(s, tenant, err);
    if (i < 0)
        return i;
    s->tenants[i]->has_credit = has_credit;
    return 0;
}

int jz_sched_tenant_usage(struct jz_sched *s, const char *tenant, int64_t now, double *gpu_seconds,
                          double *fair_share, struct jz_error *err)
{
    int i = tenant_find(s, tenant);
    if (i < 0)
        return jz_error_set(err, JZ_ENOENT, "unknown tenant %s", tenant ? tenant : "(null)");
    tenant_advance(s, s->tenants[i], now);
    if (gpu_seconds)
        *gpu_seconds = s->tenants[i]->usage;
    if (fair_share)
        *fair_share = s->tenants[i]->fs;
    return 0;
}

int jz_sched_create(const struct jz_sched_config *cfg, struct jz_sched **out, struct jz_error *err)
{
    if (!out)
        return jz_error_set(err, JZ_EINVAL, "no output");
    struct jz_sched_config d;
    jz_sched_config_defaults(&d);
    struct jz_sched *s = calloc(1, sizeof(*s));
    if (!s)
        return jz_error_set(err, JZ_ENOMEM, "out of memory creating the scheduler");
    s->cfg = cfg ? *cfg : d;
    s->cfg.default_class[JZ_SCHED_NAME_LEN - 1] = '\0';
    int rc = jz_sched__config_check(&s->cfg, err);
    if (rc)
        goto fail;
    s->fit_epoch = 1;
    if (names_intern(&s->sites, "default") != 0) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory creating the scheduler");
        goto fail;
    }
    if ((rc = jz_sched__classes_build(&s->cfg, s->classes, &s->nclasses, &s->default_class,
                                      err)) != 0)
        goto fail;
    s->cfg.classes = NULL; /* borrowed for the call only */
    s->cfg.tenants = NULL;
    s->nbuckets = 0;
    s->trees_dirty = true;
    for (size_t i = 0; cfg && i < cfg->tenant_count; i++)
        if ((rc = jz_sched_tenant_set(s, &cfg->tenants[i], err)) != 0)
            goto fail;
    *out = s;
    return 0;
fail:
    jz_sched_destroy(s);
    return rc;
}

void jz_sched_destroy(struct jz_sched *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->table_cap; i++)
        job_free(s, s->table[i]);
    free(s->table);
    for (size_t t = 0; t < s->ntenants; t++) {
        for (unsigned g = 0; g < 2; g++)
            for (unsigned k = 0; k <= JZ_TOPO_MAX_GPUS; k++)
                if (s->tenants[t]->queues[g][k]) {
                    free(s->tenants[t]->queues[g][k]->h);
                    free(s->tenants[t]->queues[g][k]);
                }
        free(s->tenants[t]->quotas);
        free(s->tenants[t]->mquotas);
        free(s->tenants[t]->site_use);
        free(s->tenants[t]);
    }
    free(s->tenants);
    free(s->tenant_hash);
    for (size_t n = 0; n < s->nnodes; n++) {
        free(s->nodes[n].name);
        free(s->nodes[n].core_busy);
        free(s->nodes[n].run);
        free(s->nodes[n].resv);
    }
    free(s->nodes);
    free(s->topos);
    for (size_t i = 0; i < s->nshapes; i++)
        free(s->shapes[i].set_cache);
    free(s->shapes);
    free(s->node_hash);
    names_free(&s->sites);
    names_free(&s->switches);
    for (unsigned f = 0; f < s->nbuckets; f++)
        free(s->bucket[f]);
    free(s->bucket);
    free(s->bucket_n);
    free(s->bucket_cap);
    for (unsigned k = 0; k < s->ntrees; k++) {
        free(s->trees[k].t);
        free(s->trees[k].who);
    }
    free(s->trees);
    free(s->never);
    free(s->resv);
    free(s->active);
    free(s->tmp);
    free(s->cand);
    free(s->gc);
    free(s->scratch);
    free(s->victims);
    free(s);
}

/* ---------- nodes ---------- */

static int buckets_grow(struct jz_sched *s, unsigned need)
{
    if (need <= s->nbuckets)
        return 0;
    size_t **b = realloc(s->bucket, need * sizeof(*b));
    if (!b)
        return JZ_ENOMEM;
    s->bucket = b;
    size_t *bn = realloc(s->bucket_n, need * sizeof(*bn));
    if (!bn)
        return JZ_ENOMEM;
    s->bucket_n = bn;
    size_t *bc = realloc(s->bucket_cap, need * sizeof(*bc));
    if (!bc)
        return JZ_ENOMEM;
    s->bucket_cap = bc;
    for (unsigned f = s->nbuckets; f < need; f++) {
        s->bucket[f] = NULL;
        s->bucket_n[f] = s->bucket_cap[f] = 0;
    }
    s->nbuckets = need;
    return 0;
}

size_t jz_sched__node_find(const struct jz_sched *s, const char *name)
{
    if (!s->node_hash_cap)
        return SIZE_MAX;
    size_t m = s->node_hash_cap - 1;
    for (size_t i = hash_str(name) & m; s->node_hash[i]; i = (i + 1) & m)
        if (strcmp(s->nodes[s->node_hash[i] - 1].name, name) == 0)
            return s->node_hash[i] - 1;
    return SIZE_MAX;
}
#define node_find jz_sched__node_find

static void node_hash_insert(uint32_t *h, size_t cap, const char *name, size_t n)
{
    size_t m = cap - 1, i = hash_str(name) & m;
    while (h[i])
        i = (i + 1) & m;
    h[i] = (uint32_t)n + 1;
}

/* Rebuilds the name index over the nodes not removed, leaving out `skip` too. */
static int node_hash_rebuild(struct jz_sched *s, size_t cap, size_t skip)
{
    uint32_t *h = calloc(cap, sizeof(*h));
    if (!h)
        return JZ_ENOMEM;
    for (size_t n = 0; n < s->nnodes; n++)
        if (!s->nodes[n].removed && n != skip)
            node_hash_insert(h, cap, s->nodes[n].name, n);
    free(s->node_hash);
    s->node_hash = h;
    s->node_hash_cap = cap;
    return 0;
}

/* The shape (distance matrix) of topo, added when new; SIZE_MAX when out of memory. */
static size_t shape_of(struct jz_sched *s, const struct jz_topo *topo)
{
    size_t g = jz_topo_gpu_count(topo);
    const unsigned char *d = jz_topo_distance_matrix(topo);
    for (size_t i = 0; i < s->nshapes; i++) {
        const struct jz_topo *o = s->shapes[i].t;
        if (o == topo || (jz_topo_gpu_count(o) == g &&
                          (g == 0 || memcmp(jz_topo_distance_matrix(o), d, g * g) == 0)))
            return i;
    }
    if (grow((void **)&s->shapes, &s->shapes_cap, s->nshapes + 1, sizeof(*s->shapes)))
        return SIZE_MAX;
    struct shape *sh = &s->shapes[s->nshapes];
    memset(sh, 0, sizeof(*sh));
    memset(sh->best, 0xff, sizeof(sh->best));
    sh->t = topo;
    if (g <= SET_CACHE_MAX_GPUS) {
        sh->set_cache = calloc(((size_t)1 << g) * (g + 1), sizeof(uint64_t));
        if (!sh->set_cache)
            return SIZE_MAX;
    }
    return s->nshapes++;
}

/* Node sets changed: cached could-ever-fit answers are stale, and parked jobs get another look
 * at the next decision. */
static void nodes_changed(struct jz_sched *s)
{
    s->fit_epoch++;
    s->never_recheck = true;
}

int jz_sched_node_add(struct jz_sched *s, const struct jz_sched_node_spec *spec, size_t *index,
                      struct jz_error *err)
{
    if (!s || !spec || !name_ok(spec->name) || !spec->topo || !jz_topo_is_finished(spec->topo))
        return jz_error_set(err, JZ_EINVAL, "a node needs a name and a finished topology");
    const char *name = spec->name, *site = spec->site && spec->site[0] ? spec->site : "default";
    const struct jz_topo *topo = spec->topo;
    if (!name_ok(site) || (spec->switch_name && strlen(spec->switch_name) >= JZ_SCHED_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "node %s: site and switch names are 1 to %d characters",
                            name, JZ_SCHED_NAME_LEN - 1);
    if (s->nnodes >= JZ_SCHED_MAX_NODES)
        return jz_error_set(err, JZ_ELIMIT, "more than %d nodes (removed ones included)",
                            JZ_SCHED_MAX_NODES);
    unsigned g = (unsigned)jz_topo_gpu_count(topo), c = (unsigned)jz_topo_core_count(topo);
    if (node_find(s, name) != SIZE_MAX)
        return jz_error_set(err, JZ_EEXIST, "node %s already exists", name);
    uint32_t site_i, sw = NO_SWITCH;
    int rc = site_intern(s, site, &site_i, err);
    if (rc)
        return rc;
    if (spec->switch_name && spec->switch_name[0] &&
        (sw = names_intern(&s->switches, spec->switch_name)) == UINT32_MAX)
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a node");
    if ((s->nnodes + 1) * 2 > s->node_hash_cap &&
        node_hash_rebuild(s, s->node_hash_cap ? s->node_hash_cap * 2 : 64, SIZE_MAX))
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a node");
    size_t ti = 0;
    while (ti < s->ntopos && s->topos[ti].t != topo)
        ti++;
    if (ti == s->ntopos &&
        grow((void **)&s->topos, &s->topos_cap, s->ntopos + 1, sizeof(*s->topos)))
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a node");
    size_t si = shape_of(s, topo);
    if (si == SIZE_MAX)
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a node");
    if (grow((void **)&s->nodes, &s->nodes_cap, s->nnodes + 1, sizeof(*s->nodes)) ||
        buckets_grow(s, (g > s->max_gpus ? g : s->max_gpus) + 1))
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a node");
    struct node *nd = &s->nodes[s->nnodes];
    memset(nd, 0, sizeof(*nd));
    nd->core_busy = calloc(JZ_BITMAP_WORDS(c) + 1, sizeof(uint64_t));
    nd->name = malloc(strlen(name) + 1);
    if (!nd->core_busy || !nd->name) {
        free(nd->core_busy);
        free(nd->name);
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a node");
    }
    memcpy(nd->name, name, strlen(name) + 1);
    if (ti == s->ntopos) {
        struct topo_info *x = &s->topos[s->ntopos++];
        memset(x, 0, sizeof(*x));
        x->t = topo;
        for (size_t k = 0; k <= JZ_TOPO_MAX_GPUS; k++) {
            x->ok_cpg[k] = 0; /* no cores per GPU: any k GPUs of an empty node */
            x->bad_cpg[k] = INT32_MAX;
        }
    }
    nd->topo = topo;
    nd->shape = (uint32_t)si;
    nd->up = true;
    nd->gpus = nd->free_gpus = g;
    nd->cores = nd->free_cores = c;
    nd->site = site_i;
    nd->sw = sw;
    size_t n = s->nnodes++;
    nd->topo_i = (uint32_t)ti;
    if (bucket_add(s, n)) {
        s->nnodes--;
        free(nd->core_busy);
        free(nd->name);
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a node");
    }
    node_hash_insert(s->node_hash, s->node_hash_cap, nd->name, n);
    s->topos[ti].alive++;
    s->nalive++;
    if (g > s->max_gpus)
        s->max_gpus = g;
    if (c > s->max_cores)
        s->max_cores = c;
    s->trees_dirty = true; /* rebuilt at the next decision: adding 10,000 nodes stays linear */
    nodes_changed(s);
    if (index)
        *index = n;
    return 0;
}

int jz_sched_node_remove(struct jz_sched *s, size_t node, struct jz_error *err)
{
    if (!s || node >= s->nnodes || s->nodes[node].removed)
        return jz_error_set(err, JZ_ENOENT, "no node %zu", node);
    struct node *nd = &s->nodes[node];
    if (nd->nrun)
        return jz_error_set(err, JZ_EBUSY, "node %s still runs %zu job%s: stop them first",
                            nd->name, nd->nrun, nd->nrun == 1 ? "" : "s");
    if (node_hash_rebuild(s, s->node_hash_cap, node))
        return jz_error_set(err, JZ_ENOMEM, "out of memory removing node %s", nd->name);
    if (nd->up)
        bucket_del(s, node);
    else
        s->nout--;
    nd->up = false;
    nd->removed = true;
    /* A preemptor that counted on this node finds it gone when it is next looked at. */
    nd->claim_job = 0;
    nd->claim_gpus = nd->claim_pending = 0;
    node_times(s, node);
    s->topos[nd->topo_i].alive--;
    s->nalive--;
    nodes_changed(s);
    return 0;
}

int jz_sched_node_set_up(struct jz_sched *s, size_t node, bool up, struct jz_error *err)
{
    if (!s || node >= s->nnodes || s->nodes[node].removed)
        return jz_error_set(err, JZ_ENOENT, "no node %zu", node);
    struct node *nd = &s->nodes[node];
    if (nd->up == up)
        return 0;
    if (up) {
        nd->up = true;
        if (bucket_add(s, node)) {
            nd->up = false;
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
        s->nout--;
    } else {
        bucket_del(s, node);
        nd->up = false;
        s->nout++;
    }
    node_times(s, node);
    return 0;
}

int jz_sched_node_info(const struct jz_sched *s, size_t node, struct jz_sched_node_info *info,
                       struct jz_error *err)
{
    if (!s || !info || node >= s->nnodes)
        return jz_error_set(err, JZ_ENOENT, "no node %zu", node);
    const struct node *nd = &s->nodes[node];
    memset(info, 0, sizeof(*info));
    info->name = nd->name;
    info->site = s->sites.v[nd->site];
    info->removed = nd->removed;
    if (nd->removed)
        return 0;
    info->up = nd->up;
    info->gpus = nd->gpus;
    info->free_gpus = nd->free_gpus;
    info->cores = nd->cores;
    info->free_cores = nd->free_cores;
    info->gpu_busy = nd->gpu_busy;
    info->running = nd->nrun;
    return 0;
}

const char *jz_sched_node_name(const struct jz_sched *s, size_t node)
{
    return s && node < s->nnodes ? s->nodes[node].name : NULL;
}

size_t jz_sched_node_count(const struct jz_sched *s)
{
    return s ? s->nnodes : 0;
}

/* ---------- reservations ---------- */

int jz_sched_reservation_add(struct jz_sched *s, const struct jz_sched_reservation *r,
                             struct jz_error *err)
{
    if (!s || !r || !name_ok(r->name) || r->end <= r->start || r->gpus_per_node == 0 ||
        r->node_count == 0 || !r->nodes)
        return jz_error_set(err, JZ_EINVAL,
                            "a reservation needs a name, nodes, GPUs and "
                            "start < end");
    if (s->nresv >= JZ_SCHED_MAX_RESERVATIONS)
        return jz_error_set(err, JZ_ELIMIT, "more than %d reservations", JZ_SCHED_MAX_RESERVATIONS);
    for (size_t i = 0; i < s->nresv; i++)
        if (strcmp(s->resv[i].name, r->name) == 0)
            return jz_error_set(err, JZ_EEXIST, "reservation %s already exists", r->name);
    size_t *idx = malloc(r->node_count * sizeof(size_t));
    if (!idx)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    for (size_t k = 0; k < r->node_count; k++) {
        size_t n = r->nodes[k] ? node_find(s, r->nodes[k]) : SIZE_MAX;
        if (n == SIZE_MAX || r->gpus_per_node > s->nodes[n].gpus) {
            free(idx);
            return jz_error_set(err, n == SIZE_MAX ? JZ_ENOENT : JZ_ERANGE,
                                "reservation %s: node %s %s", r->name,
                                r->nodes[k] ? r->nodes[k] : "(null)",
                                n == SIZE_MAX ? "is unknown" : "has fewer GPUs");
        }
        idx[k] = n;
    }
    int t = tenant_get(s, r->tenant, err);
    if (t < 0) {
        free(idx);
        return t;
    }
    struct resv *nr = realloc(s->resv, (s->nresv + 1) * sizeof(*nr));
    if (!nr) {
        free(idx);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    s->resv = nr;
    for (size_t k = 0; k < r->node_count; k++) {
        struct node *nd = &s->nodes[idx[k]];
        uint32_t *v = realloc(nd->resv, (nd->nresv + 1) * sizeof(*v));
        if (!v) {
            free(idx);
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
        nd->resv = v;
        nd->resv[nd->nresv++] = (uint32_t)s->nresv;
    }
    struct resv *x = &s->resv[s->nresv++];
    snprintf(x->name, sizeof(x->name), "%s", r->name);
    x->tenant = (uint32_t)t;
    x->start = r->start;
    x->end = r->end;
    x->gpus = r->gpus_per_node;
    free(idx);
    return 0;
}

int jz_sched_reservation_remove(struct jz_sched *s, const char *name, struct jz_error *err)
{
    size_t i = 0;
    while (s && name && i < s->nresv && strcmp(s->resv[i].name, name) != 0)
        i++;
    if (!s || !name || i == s->nresv)
        return jz_error_set(err, JZ_ENOENT, "no reservation %s", name ? name : "(null)");
    size_t last = s->nresv - 1;
    for (size_t n = 0; n < s->nnodes; n++) {
        struct node *nd = &s->nodes[n];
        for (size_t k = 0; k < nd->nresv;) {
            if (nd->resv[k] == i) {
                nd->resv[k] = nd->resv[--nd->nresv];
                continue;
            }
            if (nd->resv[k] == last)
                nd->resv[k] = (uint32_t)i;
            k++;
        }
    }
    s->resv[i] = s->resv[last];
    s->nresv--;
    return 0;
}

/* ---------- jobs ---------- */

static int job_validate(const struct jz_sched *s, const struct jz_sched_job *job,
                        struct jz_error *err)
{
    if (!job || job->id == 0)
        return jz_error_set(err, JZ_EINVAL, "a job needs a non-zero id");
    if (!name_ok(job->tenant))
        return jz_error_set(err, JZ_EINVAL, "job %llu: tenant name must be 1 to %d characters",
                            (unsigned long long)job->id, JZ_SCHED_NAME_LEN - 1);
    if (job->gpus > JZ_TOPO_MAX_GPUS || job->cpus_per_gpu > JZ_TOPO_MAX_CORES ||
        job->cpus > JZ_TOPO_MAX_CORES)
        return jz_error_set(err, JZ_ELIMIT, "job %llu: at most %d GPUs and %d cores on a node",
                            (unsigned long long)job->id, JZ_TOPO_MAX_GPUS, JZ_TOPO_MAX_CORES);
    if (job->nodes > JZ_SCHED_MAX_JOB_NODES)
        return jz_error_set(err, JZ_ELIMIT, "job %llu: at most %d nodes",
                            (unsigned long long)job->id, JZ_SCHED_MAX_JOB_NODES);
    if (job->gpus == 0 && job->cpus == 0)
        return jz_error_set(err, JZ_EINVAL, "job %llu asks for neither GPUs nor cores",
                            (unsigned long long)job->id);
    if (job->time_limit_s <= 0 || job->time_limit_s > JZ_SCHED_MAX_TIME_LIMIT)
        return jz_error_set(err, JZ_ERANGE, "job %llu: time limit must be 1 s to %lld s",
                            (unsigned long long)job->id, (long long)JZ_SCHED_MAX_TIME_LIMIT);
    if (job->nice < -JZ_SCHED_MAX_NICE || job->nice > JZ_SCHED_MAX_NICE)
        return jz_error_set(err, JZ_ERANGE, "job %llu: nice must be within +-%d s",
                            (unsigned long long)job->id, JZ_SCHED_MAX_NICE);
    if (job->depends_count > JZ_SCHED_MAX_DEPS || (job->depends_count && !job->depends_on))
        return jz_error_set(err, JZ_ELIMIT, "job %llu: at most %d dependencies",
                            (unsigned long long)job->id, JZ_SCHED_MAX_DEPS);
    if (job->model && strlen(job->model) >= JZ_TOPO_MODEL_LEN)
        return jz_error_set(err, JZ_ELIMIT, "job %llu: model constraint too long",
                            (unsigned long long)job->id);
    if (job->reservation && strlen(job->reservation) >= JZ_SCHED_NAME_LEN)
        return jz_error_set(err, JZ_ELIMIT, "job %llu: reservation name too long",
                            (unsigned long long)job->id);
    if (job_find(s, job->id))
        return jz_error_set(err, JZ_EEXIST, "job %llu already exists", (unsigned long long)job->id);
    if (s->njobs >= JZ_SCHED_MAX_JOBS)
        return jz_error_set(err, JZ_ELIMIT, "more than %d jobs", JZ_SCHED_MAX_JOBS);
    return 0;
}

static int job_make(struct jz_sched *s, const struct jz_sched_job *job, struct job **out,
                    struct jz_error *err)
{
    int rc = job_validate(s, job, err);
    if (rc)
        return rc;
    int cls = -1;
    if (job->class_name && job->class_name[0] && (cls = class_find(s, job->class_name)) < 0)
        return jz_error_set(err, JZ_ENOENT, "job %llu: unknown class %s",
                            (unsigned long long)job->id, job->class_name);
    int t = tenant_get(s, job->tenant, err);
    if (t < 0)
        return t;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return jz_error_set(err, JZ_ENOMEM, "out of memory queueing a job");
    j->id = job->id;
    j->tenant = (uint32_t)t;
    j->cls = (uint8_t)(cls >= 0 ? cls : s->tenants[t]->cls);
    j->gpus = (uint16_t)job->gpus;
    j->cpus_per_gpu = (uint16_t)job->cpus_per_gpu;
    j->cpus = (uint16_t)job->cpus;
    j->nodes = (uint16_t)(job->nodes > 1 ? job->nodes : 1);
    j->limit = job->time_limit_s;
    j->preemptible = job->preemptible;
    j->submit = job->submit_time + job->nice;
    j->queued = job->submit_time;
    j->est_start = -1;
    j->min_mem = job->min_memory_bytes;
    if (job->model && job->model[0]) {
        size_t l = strlen(job->model) + 1;
        j->model = malloc(l);
        if (!j->model) {
            free(j);
            return jz_error_set(err, JZ_ENOMEM, "out of memory queueing a job");
        }
        memcpy(j->model, job->model, l);
        s->job_extra_bytes += l;
    }
    if (job->reservation && job->reservation[0]) {
        size_t l = strlen(job->reservation) + 1;
        j->resv_name = malloc(l);
        if (j->resv_name)
            memcpy(j->resv_name, job->reservation, l);
        else {
            free(j->model);
            free(j);
            return jz_error_set(err, JZ_ENOMEM, "out of memory queueing a job");
        }
    }
    j->key = job_key(s, j);
    j->reason = JZ_SCHED_REASON_NEW;
    *out = j;
    return 0;
}

static int add_dependent(struct jz_sched *s, struct job *dep, uint64_t id)
{
    size_t cap = dep->dependents_cap;
    if (grow((void **)&dep->dependents, &cap, dep->ndependents + 1, sizeof(uint64_t)))
        return JZ_ENOMEM;
    s->job_extra_bytes += (cap - dep->dependents_cap) * sizeof(uint64_t);
    dep->dependents_cap = (uint32_t)cap;
    dep->dependents[dep->ndependents++] = id;
    return 0;
}

int jz_sched_submit(struct jz_sched *s, const struct jz_sched_job *job, int64_t now,
                    struct jz_error *err)
{
    if (!s)
        return jz_error_set(err, JZ_EINVAL, "no scheduler");
    struct job *j = NULL; /* set by job_make on success; -O3 cannot see that */
    int rc = job_make(s, job, &j, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < job->depends_count; i++) {
        struct job *d = job_find(s, job->depends_on[i]);
        if (d && d->id != j->id) { /* unknown ids have ended well (the service drops failures) */
            if (add_dependent(s, d, j->id))
                goto nomem;
            j->deps_left++;
        }
    }
    if (table_insert(s, j))
        goto nomem;
    if (j->deps_left) {
        j->state = JZ_SCHED_JOB_HELD;
        j->reason = JZ_SCHED_REASON_DEPENDENCY;
        s->held++;
        return 0;
    }
    j->state = JZ_SCHED_JOB_PENDING;
    if (queue_push(s, j)) {
        table_remove(s, j->id);
        goto nomem;
    }
    s->pending++;
    (void)now;
    return 0;
nomem:
    /* Dependants already recorded point at an id that will never exist: harmless, since
     * releasing an unknown id is a no-op. */
    job_free(s, j);
    return jz_error_set(err, JZ_ENOMEM, "out of memory queueing a job");
}

/* Releases or fails the jobs that wait for j. */
static void release_dependents(struct jz_sched *s, struct job *j, bool ok, int64_t now)
{
    for (uint32_t i = 0; i < j->ndependents; i++) {
        struct job *d = job_find(s, j->dependents[i]);
        if (!d || d->state != JZ_SCHED_JOB_HELD)
            continue;
        if (!ok) {
            d->dep_failed = true;
            d->reason_arg = j->id;
            continue;
        }
        if (d->deps_left)
            d->deps_left--;
        if (d->deps_left == 0 && !d->dep_failed && queue_push(s, d) == 0) {
            d->state = JZ_SCHED_JOB_PENDING;
            d->reason = JZ_SCHED_REASON_NEW;
            d->queued = now; /* time held does not count towards starve_after */
            s->held--;
            s->pending++;
        }
    }
}

/* Charges or releases the tenant's GPUs, overall and per site, for j's parts. */
static void tenant_charge(struct jz_sched *s, struct job *j, int64_t now, bool on)
{
    struct tenant *t = s->tenants[j->tenant];
    tenant_advance(s, t, now);
    unsigned total = j->gpus * jz_sched__nparts(j);
    t->in_use = on ? t->in_use + total : t->in_use - total;
    for (unsigned i = 0; i < jz_sched__nparts(j) && j->gpus; i++) {
        uint32_t site = s->nodes[j->parts[i].node].site;
        if (site < t->site_use_cap)
            t->site_use[site] = on ? t->site_use[site] + j->gpus : t->site_use[site] - j->gpus;
        jz_sched__model_charge(s, t, &j->parts[i], on);
    }
}

/* A victim of a preemption stops: its preemptor has one fewer to wait for, and the nodes held
 * for the preemptor no longer count this victim's GPUs as still in use. */
static void victim_gone(struct jz_sched *s, struct job *j)
{
    struct job *w = job_find(s, j->for_job);
    if (w && w->victims_left)
        w->victims_left--;
    for (unsigned i = 0; i < jz_sched__nparts(j); i++) {
        struct node *nd = &s->nodes[j->parts[i].node];
        if (nd->claim_job == j->for_job)
            nd->claim_pending = nd->claim_pending > j->gpus ? nd->claim_pending - j->gpus : 0;
    }
}

static void stop_running(struct jz_sched *s, struct job *j, int64_t now)
{
    if (j->state == JZ_SCHED_JOB_PREEMPTING)
        victim_gone(s, j);
    tenant_charge(s, j, now, false);
    if (now > j->start)
        j->ran += now - j->start;
    for (unsigned i = 0; i < jz_sched__nparts(j); i++)
        node_apply(s, &j->parts[i], false);
    free(j->parts);
    j->parts = NULL;
    s->running--;
}

int jz_sched_job_ended(struct jz_sched *s, uint64_t id, int64_t now, bool ok, struct jz_error *err)
{
    struct job *j = s ? job_find(s, id) : NULL;
    if (!j)
        return jz_error_set(err, JZ_ENOENT, "no job %llu", (unsigned long long)id);
    if (j->state == JZ_SCHED_JOB_RUNNING || j->state == JZ_SCHED_JOB_PREEMPTING) {
        stop_running(s, j, now);
    } else if (j->state == JZ_SCHED_JOB_PENDING) {
        jz_sched__claims_release(s, j);
        pending_unlink(s, j);
        s->pending--;
    } else {
        s->held--;
    }
    release_dependents(s, j, ok, now);
    table_remove(s, id);
    job_free(s, j);
    return 0;
}

int jz_sched_preempt_abandon(struct jz_sched *s, uint64_t id, struct jz_error *err)
{
    struct job *j = s ? job_find(s, id) : NULL;
    if (!j)
        return jz_error_set(err, JZ_ENOENT, "no job %llu", (unsigned long long)id);
    if (j->state != JZ_SCHED_JOB_PREEMPTING)
        return jz_error_set(err, JZ_EINVAL, "job %llu is not being preempted",
                            (unsigned long long)id);
    victim_gone(s, j);
    j->for_job = 0;
    j->state = JZ_SCHED_JOB_RUNNING;
    jz_sched__job_reorder(s, j, j->start + j->limit);
    return 0;
}

int jz_sched_job_requeue(struct jz_sched *s, uint64_t id, int64_t now, struct jz_error *err)
{
    struct job *j = s ? job_find(s, id) : NULL;
    if (!j)
        return jz_error_set(err, JZ_ENOENT, "no job %llu", (unsigned long long)id);
    if (j->state != JZ_SCHED_JOB_RUNNING && j->state != JZ_SCHED_JOB_PREEMPTING)
        return jz_error_set(err, JZ_EINVAL, "job %llu is not running", (unsigned long long)id);
    if (j->state == JZ_SCHED_JOB_PREEMPTING && j->preemptions < UINT8_MAX)
        j->preemptions++;
    stop_running(s, j, now);
    j->state = JZ_SCHED_JOB_PENDING;
    j->reason = JZ_SCHED_REASON_NEW;
    j->est_start = -1;
    j->queued = now;
    j->starved = false;
    j->key = job_key(s, j); /* it received service: its band and what is left changed */
    if (queue_push(s, j)) {
        /* Cannot requeue without memory: drop it rather than keep a half-state job. */
        table_remove(s, j->id);
        job_free(s, j);
        return jz_error_set(err, JZ_ENOMEM, "out of memory requeueing job %llu",
                            (unsigned long long)id);
    }
    s->pending++;
    return 0;
}

int jz_sched_cancel(struct jz_sched *s, uint64_t id, int64_t now, struct jz_error *err)
{
    struct job *j = s ? job_find(s, id) : NULL;
    if (!j)
        return jz_error_set(err, JZ_ENOENT, "no job %llu", (unsigned long long)id);
    if (j->state == JZ_SCHED_JOB_RUNNING || j->state == JZ_SCHED_JOB_PREEMPTING)
        return jz_error_set(err, JZ_EBUSY, "job %llu is running: stop it, then report its end",
                            (unsigned long long)id);
    return jz_sched_job_ended(s, id, now, false, err);
}

/* Makes j run with the given parts (GPUs and cores from each node's topology). Everything that
 * can fail is allocated before anything changes, so a failure leaves the scheduler as it was. */
static int start_job(struct jz_sched *s, struct job *j, const struct jz_sched_part_spec *sp,
                     size_t n, int64_t now)
{
    size_t ncores = 0;
    uint32_t top_site = 0;
    for (size_t i = 0; i < n; i++) {
        struct node *nd = &s->nodes[sp[i].node];
        ncores += sp[i].core_count;
        if (nd->site > top_site)
            top_site = nd->site;
        if (grow((void **)&nd->run, &nd->runcap, nd->nrun + 1, sizeof(*nd->run)))
            return JZ_ENOMEM;
    }
    struct tenant *t = s->tenants[j->tenant];
    size_t cap = t->site_use_cap;
    if (top_site >= cap) {
        if (grow((void **)&t->site_use, &cap, (size_t)top_site + 1, sizeof(unsigned)))
            return JZ_ENOMEM;
        memset(t->site_use + t->site_use_cap, 0, (cap - t->site_use_cap) * sizeof(unsigned));
        t->site_use_cap = cap;
    }
    struct part *parts = malloc(n * sizeof(*parts) + (ncores ? ncores : 1) * sizeof(size_t));
    if (!parts)
        return JZ_ENOMEM;
    size_t *c = (size_t *)(parts + n);
    for (size_t i = 0; i < n; i++) {
        struct part *p = &parts[i];
        p->job = j;
        p->node = (uint32_t)sp[i].node;
        p->gpu_mask = 0;
        for (size_t g = 0; g < sp[i].gpu_count; g++)
            p->gpu_mask |= 1ull << sp[i].gpus[g];
        p->cores = c;
        p->ncores = (uint32_t)sp[i].core_count;
        memcpy(c, sp[i].cores, sp[i].core_count * sizeof(size_t));
        c += sp[i].core_count;
    }
    j->parts = parts;
    j->start = now;
    j->end_expected = now + j->limit;
    j->state = JZ_SCHED_JOB_RUNNING;
    j->reason = JZ_SCHED_REASON_NONE;
    j->victims_left = 0;
    j->for_job = 0;
    tenant_charge(s, j, now, true);
    s->running++;
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (node_apply(s, &parts[i], true))
            rc = JZ_ENOMEM;
    return rc;
}

int jz_sched_adopt_running(struct jz_sched *s, const struct jz_sched_job *job,
                           const struct jz_sched_part_spec *parts, size_t part_count,
                           int64_t start_time, struct jz_error *err)
{
    if (!s || !job || !parts)
        return jz_error_set(err, JZ_EINVAL, "adopt: needs a job and its parts");
    size_t want = job->nodes > 1 ? job->nodes : 1;
    if (part_count != want || part_count > JZ_SCHED_MAX_JOB_NODES)
        return jz_error_set(err, JZ_EINVAL, "adopt: job %llu has %zu part%s, expected %zu",
                            (unsigned long long)job->id, part_count, part_count == 1 ? "" : "s",
                            want);
    for (size_t p = 0; p < part_count; p++) {
        const struct jz_sched_part_spec *sp = &parts[p];
        if (sp->node >= s->nnodes || s->nodes[sp->node].removed || sp->gpu_count != job->gpus ||
            (sp->core_count && !sp->cores) || (sp->gpu_count && !sp->gpus))
            return jz_error_set(err, JZ_EINVAL, "adopt: part %zu has a bad node or placement", p);
        for (size_t q = 0; q < p; q++)
            if (parts[q].node == sp->node)
                return jz_error_set(err, JZ_EINVAL, "adopt: two parts on node %s",
                                    s->nodes[sp->node].name);
        const struct node *nd = &s->nodes[sp->node];
        uint64_t seen = 0;
        for (size_t i = 0; i < sp->gpu_count; i++) {
            if (sp->gpus[i] >= nd->gpus || (nd->gpu_busy >> sp->gpus[i] & 1) ||
                (seen >> sp->gpus[i] & 1))
                return jz_error_set(err, JZ_EBUSY, "adopt: GPU %zu of %s is unknown or in use",
                                    sp->gpus[i], nd->name);
            seen |= 1ull << sp->gpus[i];
        }
        for (size_t i = 0; i < sp->core_count; i++) {
            bool dup = false;
            for (size_t k = 0; k < i && !dup; k++)
                dup = sp->cores[k] == sp->cores[i];
            if (dup || sp->cores[i] >= nd->cores ||
                (nd->core_busy[sp->cores[i] / 64] >> (sp->cores[i] % 64) & 1))
                return jz_error_set(err, JZ_EBUSY, "adopt: core %zu of %s is unknown or in use",
                                    sp->cores[i], nd->name);
        }
    }
    struct job *j = NULL; /* set by job_make on success; -O3 cannot see that */
    int rc = job_make(s, job, &j, err);
    if (rc)
        return rc;
    if (table_insert(s, j)) {
        job_free(s, j);
        return jz_error_set(err, JZ_ENOMEM, "out of memory adopting a job");
    }
    if (start_job(s, j, parts, part_count, start_time)) {
        if (!j->parts) { /* nothing changed: forget it */
            table_remove(s, j->id);
            job_free(s, j);
        }
        return jz_error_set(err, JZ_ENOMEM, "out of memory adopting a job");
    }
    return 0;
}

/* ---------- placement across nodes ---------- */

/* The best worst link a k-GPU set can have on an empty node of shape si (cached). */
static unsigned best_link(struct jz_sched *s, uint32_t si, unsigned k)
{
    uint8_t *b = &s->shapes[si].best[k];
    if (*b == 0xff) {
        const struct jz_topo *t = s->shapes[si].t;
        size_t n = jz_topo_gpu_count(t);
        uint64_t all = n >= 64 ? ~0ull : (1ull << n) - 1, set = 0;
        unsigned worst = 0;
        if (k > 1 && jz_place_gpu_set(t, all, k, &set) == 0)
            for (uint64_t a = set; a; a &= a - 1)
                for (uint64_t c = a & (a - 1); c; c &= c - 1) {
                    unsigned l = (unsigned)jz_topo_gpu_link(t, (size_t)__builtin_ctzll(a),
                                                            (size_t)__builtin_ctzll(c));
                    if (l > worst)
                        worst = l;
                }
        *b = (uint8_t)worst;
    }
    return *b;
}

uint32_t jz_sched__new_mark(struct jz_sched *s)
{
    if (++s->head_mark == 0) { /* wrapped: forget every old mark */
        for (size_t n = 0; n < s->nnodes; n++)
            s->nodes[n].head_mark = 0;
        s->head_mark = 1;
    }
    return s->head_mark;
}

enum fail jz_sched__node_usable(const struct jz_sched *s, const struct job *j, size_t n,
                                int64_t now, const struct head *hd)
{
    const struct node *nd = &s->nodes[n];
    unsigned k = j->gpus;
    unsigned need_cores = k ? k * j->cpus_per_gpu : j->cpus;
    if (!nd->up || nd->free_cores < need_cores || nd->free_gpus < k)
        return FAIL_RESOURCES;
    if (k == 0)
        return FIT; /* CPU-only parts need cores only: GPU holds do not concern them */
    unsigned held = jz_sched__claim_held(nd, j, now);
    if (nd->free_gpus < k + held)
        return FAIL_SHADOW;
    if (jz_sched__site_room(s->tenants[j->tenant], nd->site) < k ||
        !jz_sched__model_room(s, j, nd, k, NULL))
        return FAIL_QUOTA;
    if ((nd->nresv || j->resv_name) && !reservations_allow(s, nd, j, now))
        return FAIL_RESERVATION;
    /* The head's hold does not apply where the node is held for j itself: its victims left
     * it for j. */
    if (hd->set && hd->job != j && nd->head_mark == hd->mark && nd->claim_job != j->id &&
        now + j->limit > hd->t && nd->free_gpus - held - k < hd->k)
        return FAIL_SHADOW;
    return FIT;
}

bool jz_sched__place_on_node(struct jz_sched *s, const struct job *j, size_t n,
                             struct jz_place_result *r)
{
    struct node *nd = &s->nodes[n];
    unsigned k = j->gpus;
    struct jz_place_request req = {.gpus = k,
                                   .cpus_per_gpu = j->cpus_per_gpu,
                                   .cpus = j->cpus,
                                   .model = j->model,
                                   .min_memory_bytes = j->min_mem,
                                   .quiet = true};
    struct jz_place_usage u = {.gpu_busy = &nd->gpu_busy, .core_busy = nd->core_busy};
    uint64_t *cache = s->shapes[nd->shape].set_cache;
    if (k && cache && !j->model && !j->min_mem) {
        /* Identical nodes with the same free GPUs choose the same set: remember it. */
        uint64_t freem = ~nd->gpu_busy & (((uint64_t)1 << nd->gpus) - 1);
        uint64_t *slot = &cache[freem * (nd->gpus + 1) + k];
        if (!*slot) {
            uint64_t set;
            *slot = jz_place_gpu_set(nd->topo, freem, k, &set) == 0 ? set | SET_KNOWN : SET_KNOWN;
        }
        uint64_t set = *slot & ~SET_KNOWN;
        if (set && jz_place_gpus(nd->topo, &u, &req, set, r, NULL) == 0) {
            if (r->fits)
                return true;
            jz_place_result_free(r);
        }
    }
    if (jz_place(nd->topo, &u, &req, r, NULL) != 0)
        return false; /* *r untouched */
    if (r->fits)
        return true;
    jz_place_result_free(r);
    return false;
}

/* A plan of one part on node n with placement r (taken over). */
static enum fail plan_one(struct jz_sched *s, size_t n, struct jz_place_result *r, struct plan *out)
{
    out->parts = malloc(sizeof(*out->parts));
    if (!out->parts) {
        jz_place_result_free(r);
        return FAIL_RESOURCES; /* out of memory: it waits, and the next decision tries again */
    }
    out->n = 1;
    out->nsites = out->nswitches = 1;
    out->parts[0].node = n;
    out->parts[0].node_name = s->nodes[n].name;
    out->parts[0].place = *r;
    return FIT;
}

/* CPU-only jobs look at every node (they are rare next to GPU jobs). */
static enum fail place_cpu_job(struct jz_sched *s, struct job *j, struct plan *out)
{
    for (size_t n = 0; n < s->nnodes; n++) {
        struct node *nd = &s->nodes[n];
        if (!nd->up || nd->free_cores < j->cpus)
            continue;
        struct jz_place_result r;
        if (jz_sched__place_on_node(s, j, n, &r))
            return plan_one(s, n, &r, out);
    }
    return FAIL_RESOURCES;
}

/* Best fit: the fewest free GPUs that hold the job, the tightest GPU set among a few such
 * nodes; site quotas, reservations, the head job's hold and preemptors' claims are honoured. */
static enum fail place_single(struct jz_sched *s, struct job *j, int64_t now, const struct head *hd,
                              struct plan *out)
{
    if (j->gpus == 0)
        return place_cpu_job(s, j, out);
    unsigned k = j->gpus;
    /* A preemptor tries the node its victims left for it first: the scan below is bounded and
     * might not reach it. */
    if (j->claims && s->nodes[j->claims[0]].claim_job == j->id &&
        jz_sched__node_usable(s, j, j->claims[0], now, hd) == FIT) {
        struct jz_place_result r;
        if (jz_sched__place_on_node(s, j, j->claims[0], &r))
            return plan_one(s, j->claims[0], &r, out);
    }
    bool resv_blocked = false, shadow_blocked = false, quota_blocked = false, any = false;
    size_t scanned = 0, fits = 0, best = SIZE_MAX;
    struct jz_place_result br;
    int top = (int)s->nbuckets - 1;
    while (top >= 0 && s->bucket_n[top] == 0)
        top--;
    if (top < (int)k)
        return FAIL_NONE_FREE;
    for (unsigned f = k; f <= (unsigned)top && fits < NODE_FITS_WANTED && scanned < NODE_SCAN_LIMIT;
         f++) {
        for (size_t b = 0; b < s->bucket_n[f] && scanned < NODE_SCAN_LIMIT; b++) {
            size_t n = s->bucket[f][b];
            struct node *nd = &s->nodes[n];
            scanned++;
            switch (jz_sched__node_usable(s, j, n, now, hd)) {
            case FIT:
                break;
            case FAIL_RESERVATION:
                resv_blocked = true;
                continue;
            case FAIL_SHADOW:
                shadow_blocked = true;
                continue;
            case FAIL_QUOTA:
                quota_blocked = true;
                out->quota_site = nd->site;
                continue;
            default:
                continue;
            }
            any = true;
            struct jz_place_result r;
            if (!jz_sched__place_on_node(s, j, n, &r))
                continue;
            fits++;
            /* As close as this hardware allows: no other node can do better. */
            if ((unsigned)r.worst_link <= best_link(s, nd->shape, k))
                fits = NODE_FITS_WANTED;
            if (best == SIZE_MAX || r.worst_link < br.worst_link) {
                if (best != SIZE_MAX)
                    jz_place_result_free(&br);
                best = n;
                br = r;
            } else {
                jz_place_result_free(&r);
            }
        }
        if (best != SIZE_MAX)
            break; /* the smallest free count that fits wins: best fit */
    }
    if (best != SIZE_MAX)
        return plan_one(s, best, &br, out);
    if (quota_blocked && !any)
        return FAIL_QUOTA;
    if (resv_blocked && !any)
        return FAIL_RESERVATION;
    if (shadow_blocked && !any)
        return FAIL_SHADOW;
    return FAIL_RESOURCES;
}

void jz_sched_decision_explain(struct jz_sched_decision *d)
{
    if (!d || d->action != JZ_SCHED_START || d->part_count == 0)
        return;
    for (size_t i = 0; i < d->part_count; i++)
        jz_place_describe(&d->parts[i].place);
    if (d->why[0])
        return;
    const char *first = d->parts[0].node_name;
    size_t n = d->part_count;
    if (n > 1) {
        char tail[64] = "";
        if (d->backfilled_for)
            say(tail, sizeof(tail), "; backfilled without delaying job %llu",
                (unsigned long long)d->backfilled_for);
        say(d->why, sizeof(d->why),
            "All %zu parts start together: %s and %zu other node%s, in %u site%s and %u switch "
            "group%s%s.",
            n, first, n - 1, n == 2 ? "" : "s", d->nsites, d->nsites == 1 ? "" : "s",
            d->nswitches, d->nswitches == 1 ? "" : "s", tail);
    } else if (d->backfilled_for) {
        say(d->why, sizeof(d->why),
            "Backfilled on %s: it cannot delay job %llu, which has the resources reserved from "
            "%lld.",
            first, (unsigned long long)d->backfilled_for, (long long)d->head_start);
    } else {
        say(d->why, sizeof(d->why), "Highest priority that fits; best fit on %s.", first);
    }
}

/* ---------- the decision loop ---------- */

static void cand_push(struct jz_sched *s, double p, struct queue *q)
{
    size_t i = s->ncand++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (s->cand[up].p >= p)
            break;
        s->cand[i] = s->cand[up];
        i = up;
    }
    s->cand[i] = (struct cand){p, q};
}

static struct cand cand_pop(struct jz_sched *s)
{
    struct cand top = s->cand[0], last = s->cand[--s->ncand];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->ncand)
            break;
        if (c + 1 < s->ncand && s->cand[c + 1].p > s->cand[c].p)
            c++;
        if (s->cand[c].p <= last.p)
            break;
        s->cand[i] = s->cand[c];
        i = c;
    }
    if (s->ncand)
        s->cand[i] = last;
    return top;
}

static int emit_start(struct jz_sched *s, struct job *j, struct plan *p, int64_t now,
                      const struct head *hd, struct jz_sched_decisions *out)
{
    struct jz_sched_decision *d = jz_sched__decision_new(out);
    struct jz_sched_part_spec one, *sp = p->n == 1 ? &one : malloc(p->n * sizeof(*sp));
    if (!d || !sp) {
        if (d)
            out->count--;
        if (sp != &one)
            free(sp);
        jz_sched__plan_free(p);
        return JZ_ENOMEM;
    }
    for (size_t i = 0; i < p->n; i++) {
        const struct jz_place_result *r = &p->parts[i].place;
        sp[i] = (struct jz_sched_part_spec){.node = p->parts[i].node,
                                            .gpus = r->gpus,
                                            .gpu_count = r->gpu_count,
                                            .cores = r->cores,
                                            .core_count = r->core_count};
    }
    int rc = start_job(s, j, sp, p->n, now);
    if (sp != &one)
        free(sp);
    if (rc) {
        out->count--;
        jz_sched__plan_free(p);
        return rc;
    }
    d->action = JZ_SCHED_START;
    d->job_id = j->id;
    d->parts = p->parts;
    d->part_count = p->n;
    if (hd->set && hd->job != j) {
        d->backfilled_for = hd->job->id;
        d->head_start = hd->t;
    }
    d->nsites = p->nsites;
    d->nswitches = p->nswitches;
    p->parts = NULL;
    p->n = 0;
    s->decisions++;
    return 0;
}

/* Makes j the head of the queue: the nodes it will run on are held for it until its start. */
static void head_take(struct jz_sched *s, struct head *hd, struct job *j, int64_t now)
{
    hd->set = true;
    hd->job = j;
    hd->k = j->gpus;
    if (jz_sched__nclaims(j)) {
        /* Its victims are leaving: the nodes already held for it. */
        hd->mark = jz_sched__new_mark(s);
        hd->t = j->est_start;
        for (unsigned i = 0; i < jz_sched__nclaims(j); i++)
            s->nodes[j->claims[i]].head_mark = hd->mark;
        return;
    }
    jz_sched__head_shadow(s, j, now, hd);
    j->est_start = hd->t == NEVER ? -1 : hd->t;
}

/* Sets a waiting job aside (reason "never" or "quota"), out of its queue; without memory to
 * do so it stays in its queue. */
static void park(struct jz_sched *s, struct job *j)
{
    queue_remove(s, j);
    if (never_add(s, j) != 0)
        queue_push(s, j); /* cannot fail: the queue just shrank */
}

/* Whether j needs more GPUs than its tenant may ever use at once. */
static bool over_quota(const struct jz_sched *s, const struct job *j)
{
    const struct tenant *t = s->tenants[j->tenant];
    return t->max_gpus && j->gpus * jz_sched__parts_of(j) > t->max_gpus;
}

/* Time-limit seconds a waiting job may still use, times its GPUs (a CPU job counts one). */
static double work_left(const struct job *j)
{
    double left = (double)(j->limit > j->ran ? j->limit - j->ran : 0);
    return left * (j->gpus ? j->gpus : 1) * jz_sched__parts_of(j);
}

/* Full passes: starvation protection for classes with an order. A job that has waited
 * starve_after and whose time limit left is at least starve_drain_factor times the time the
 * waiting work needs to drain on the cluster's GPUs loses its handicaps and moves up its queue:
 * left behind every shorter job, it would start last and run alone on an otherwise idle cluster
 * (the makespan and the utilisation pay for it). Every other job is protected by age, which
 * outgrows any handicap in a bounded time (docs/scheduler.md). Candidates are found in one walk,
 * then moved, so the walk never sees a heap change under it. */
static int starvation_check(struct jz_sched *s, int64_t now)
{
    if (s->cfg.starve_after_s <= 0)
        return 0;
    double backlog = 0, gpus = 0;
    for (size_t n = 0; n < s->nnodes; n++)
        if (!s->nodes[n].removed)
            gpus += s->nodes[n].gpus;
    s->ntmp = 0;
    for (size_t i = 0; i < s->nactive; i++) {
        struct queue *q = s->active[i];
        for (size_t k = 0; k < q->n; k++) {
            struct job *j = q->h[k];
            backlog += work_left(j);
            if (j->starved || !s->classes[j->cls].order || now - j->queued < s->cfg.starve_after_s)
                continue;
            if (grow((void **)&s->tmp, &s->tmp_cap, s->ntmp + 1, sizeof(*s->tmp)))
                return JZ_ENOMEM;
            s->tmp[s->ntmp++] = j;
        }
    }
    double drain_s = gpus > 0 ? backlog / gpus : 0;
    for (size_t i = 0; i < s->ntmp; i++) {
        struct job *j = s->tmp[i];
        double left = (double)(j->limit > j->ran ? j->limit - j->ran : 0);
        if (left < s->cfg.starve_drain_factor * drain_s)
            continue;
        j->starved = true;
        j->key = job_key(s, j);
        /* Higher as a rule, but the size factor follows the largest node, which may have grown
         * since its key was last made: it may move either way. */
        struct queue *q = s->tenants[j->tenant]->queues[j->nodes > 1][j->gpus];
        sift_up(q, j->heap_pos);
        sift_down(q, j->heap_pos);
    }
    s->ntmp = 0;
    return 0;
}

/* Parked jobs that could now run somewhere, within their tenant's quota, go back to their
 * queues. */
static void never_recheck(struct jz_sched *s)
{
    s->never_recheck = false;
    for (size_t i = 0; i < s->nnever;) {
        struct job *j = s->never[i];
        if (over_quota(s, j) || !jz_sched__ever_fits(s, j)) {
            i++;
            continue;
        }
        never_remove(s, j); /* the last one moves to i */
        if (queue_push(s, j) != 0) {
            never_add(s, j); /* cannot fail: the list just shrank */
            s->never_recheck = true;
            i++;
            continue;
        }
        j->reason = JZ_SCHED_REASON_NEW;
        j->est_start = -1;
    }
}

int jz_sched_decide(struct jz_sched *s, int64_t now, unsigned flags, struct jz_sched_decisions *out,
                    struct jz_error *err)
{
    if (!s || !out)
        return jz_error_set(err, JZ_EINVAL, "decide needs a scheduler and an output");
    if (s->trees_dirty && trees_build(s))
        return jz_error_set(err, JZ_ENOMEM, "out of memory building the backfill index");
    if (s->never_recheck)
        never_recheck(s);
    bool full = flags & JZ_SCHED_FULL;
    if (full) {
        fair_share_update(s, now);
        if (now >= s->next_starve_check) {
            if (starvation_check(s, now))
                return jz_error_set(err, JZ_ENOMEM, "out of memory deciding");
            s->next_starve_check = now + STARVE_CHECK_S;
        }
    }
    s->pass++;
    if (grow((void **)&s->cand, &s->cand_cap, s->nactive + 1, sizeof(*s->cand)))
        return jz_error_set(err, JZ_ENOMEM, "out of memory deciding");
    s->ncand = 0;
    s->ntmp = 0;
    for (size_t i = 0; i < s->nactive; i++) {
        struct queue *q = s->active[i];
        q->pass = s->pass;
        q->examined = 0;
        q->block = JZ_SCHED_REASON_PRIORITY;
        q->block_arg = 0;
        cand_push(s, job_prio(s, q->h[0], now), q);
    }
    /* With few queues (one tenant, a few sizes) each may be looked at deeper: the depth adapts
     * so that backfill_max_tests is shared among the queues there are. */
    unsigned depth = s->cfg.backfill_depth;
    if (s->nactive > 0 && s->cfg.backfill_max_tests / s->nactive > depth)
        depth = (unsigned)(s->cfg.backfill_max_tests / s->nactive);
    struct head hd = {.set = false};
    int preempt_budget = PREEMPT_SEARCHES;
    unsigned tests = 0;
    int rc = 0;
    while (s->ncand > 0 && rc == 0) {
        struct cand c = cand_pop(s);
        struct queue *q = c.q;
        /* The job stays at the top of its queue while it is looked at: it leaves the queue only
         * when it starts, is set aside, or the next job of its queue is to be looked at too
         * (then it waits in tmp and is put back at the end). Most looks end with the queue
         * blocked, and then cost no heap operation at all. */
        struct job *j = q->h[0];
        j->prio = c.p;
        j->pass = s->pass;
        struct tenant *t = s->tenants[j->tenant];
        /* A gang's failure says nothing about the single-node jobs of its size queued behind
         * it, so it never blocks its queue. */
        bool gang = j->nodes > 1;
        bool next = false;
        if (!t->has_credit) {
            q->block = j->reason = JZ_SCHED_REASON_CREDITS;
        } else if (over_quota(s, j)) {
            /* It will not start unless the quota grows: set aside like a job that could never
             * fit, so that it neither blocks nor costs a look at every decision. */
            jz_sched__claims_release(s, j);
            j->reason = JZ_SCHED_REASON_QUOTA;
            j->reason_arg = 0;
            j->est_start = -1;
            park(s, j);
            next = true;
        } else if (t->max_gpus && t->in_use + j->gpus * jz_sched__parts_of(j) > t->max_gpus) {
            q->block = j->reason = JZ_SCHED_REASON_QUOTA;
            q->block_arg = j->reason_arg = 0;
            next = gang;
        } else if (!jz_sched__ever_fits(s, j)) {
            j->reason = JZ_SCHED_REASON_NEVER;
            j->est_start = -1;
            park(s, j);
            next = true;
        } else {
            struct plan p = {0};
            enum fail why =
                gang ? jz_sched__gang_place(s, j, now, &hd, &p) : place_single(s, j, now, &hd, &p);
            if (why == FIT) {
                rc = emit_start(s, j, &p, now, &hd, out);
                if (rc == 0) {
                    queue_remove(s, j); /* started: not put back */
                    s->pending--;
                    j->est_start = now;
                    jz_sched__claims_release(s, j);
                } else {
                    rc = jz_error_set(err, rc, "out of memory starting job %llu",
                                      (unsigned long long)j->id);
                }
                next = true;
            } else if (why == FAIL_QUOTA) {
                /* Only sites where the tenant is at its quota would do: not the head, since
                 * holding nodes for it would not bring its start closer. */
                if (!j->victims_left)
                    jz_sched__claims_release(s, j);
                j->reason = JZ_SCHED_REASON_QUOTA;
                j->reason_arg = jz_sched__site_room(t, p.quota_site) < j->gpus
                                    ? (uint64_t)p.quota_site + 1
                                    : JZ_SCHED__MODEL_QUOTA_ARG;
                j->est_start = -1;
                q->block = JZ_SCHED_REASON_QUOTA;
                q->block_arg = j->reason_arg;
                next = gang;
            } else {
                if (jz_sched__nclaims(j) && !j->victims_left)
                    jz_sched__claims_release(s, j); /* its victims left, yet it does not fit */
                bool is_head = !hd.set;
                if (is_head)
                    head_take(s, &hd, j, now);
                else
                    j->est_start = -1;
                j->reason = why == FAIL_RESERVATION ? JZ_SCHED_REASON_RESERVATION
                            : why == FAIL_SHADOW || (!is_head && why != FAIL_NONE_FREE)
                                ? JZ_SCHED_REASON_PRIORITY
                                : JZ_SCHED_REASON_RESOURCES;
                j->reason_arg = is_head ? 0 : hd.job->id;
                /* A class that may preempt lower ranks looks on every decision. Preemption
                 * within a rank (service order) is slower business, a job ran at least
                 * preempt_min_run_s first: only the head looks, on full passes, so the
                 * incremental decision stays cheap. */
                const struct jz_sched_class *jc = &s->classes[j->cls];
                bool may = jc->can_preempt || (jc->order && full && is_head);
                if (!j->victims_left && may && preempt_budget > 0 &&
                    why != FAIL_RESERVATION) {
                    preempt_budget--;
                    jz_sched__try_preempt(s, j, now, jc->order && full && is_head, out, &hd);
                }
                if (j->victims_left) {
                    j->reason = JZ_SCHED_REASON_RESOURCES;
                    j->reason_arg = j->victims_left;
                }
                if (why == FAIL_NONE_FREE && !gang) {
                    q->block = JZ_SCHED_REASON_RESOURCES; /* same size: none of them fits */
                    q->block_arg = hd.job->id;
                } else {
                    next = true;
                    q->block_arg = hd.job->id;
                }
            }
        }
        /* Only jobs that stayed behind count against the depth: a queue whose jobs keep
         * starting is served until they stop fitting. */
        if (j->state != JZ_SCHED_JOB_RUNNING) {
            q->examined++;
            if (++tests >= s->cfg.backfill_max_tests)
                break; /* bounded work per call; the rest keep their last reason */
        }
        if (!next || q->examined >= depth)
            continue;
        if (j->state == JZ_SCHED_JOB_PENDING && !j->parked) {
            /* It waits in tmp, so that the job behind it comes to the top. */
            if (grow((void **)&s->tmp, &s->tmp_cap, s->ntmp + 1, sizeof(*s->tmp))) {
                rc = jz_error_set(err, JZ_ENOMEM, "out of memory deciding");
                break;
            }
            queue_remove(s, j);
            s->tmp[s->ntmp++] = j;
        }
        if (q->n > 0)
            cand_push(s, job_prio(s, q->h[0], now), q);
    }
    /* Put back what was looked at and did not start. */
    for (size_t i = 0; i < s->ntmp; i++)
        if (queue_push(s, s->tmp[i]) != 0 && rc == 0)
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory requeueing");
    s->ntmp = 0;
    if (full) {
        /* Every waiting job's reason is now its queue's (or its own, if this pass looked at
         * it): kept per queue, derived by jz_sched_job_info, so that a full pass does not touch
         * each of 100,000 waiting jobs. */
        for (size_t i = 0; i < s->nactive; i++) {
            struct queue *q = s->active[i];
            q->full_pass = s->pass;
            q->full_block = q->pass == s->pass ? q->block : JZ_SCHED_REASON_PRIORITY;
            q->full_block_arg = q->block_arg;
        }
        s->full_pass = s->pass;
        s->full_now = now;
    }
    return rc;
}

/* ---------- queries ---------- */

const char *jz_sched_reason_name(enum jz_sched_reason r)
{
    switch (r) {
    case JZ_SCHED_REASON_NONE:
        return "none";
    case JZ_SCHED_REASON_RESOURCES:
        return "resources";
    case JZ_SCHED_REASON_PRIORITY:
        return "priority";
    case JZ_SCHED_REASON_QUOTA:
        return "quota";
    case JZ_SCHED_REASON_RESERVATION:
        return "reservation";
    case JZ_SCHED_REASON_DEPENDENCY:
        return "dependency";
    case JZ_SCHED_REASON_CREDITS:
        return "credits";
    case JZ_SCHED_REASON_NEVER:
        return "never";
    case JZ_SCHED_REASON_NEW:
        return "new";
    }
    return "unknown";
}

/* Appends how many nodes out of service (down or drained) are large enough for a part of the
 * job: a job waits differently for a node that is busy and for one that is gone. */
static void out_of_service_text(const struct jz_sched *s, const struct job *j, char *b, size_t n)
{
    if (s->nout == 0)
        return;
    unsigned cores = j->gpus ? (unsigned)j->gpus * j->cpus_per_gpu : j->cpus;
    size_t big = 0;
    for (size_t i = 0; i < s->nnodes; i++) {
        const struct node *nd = &s->nodes[i];
        big += !nd->up && !nd->removed && nd->gpus >= j->gpus && nd->cores >= cores;
    }
    size_t used = strlen(b);
    if (big && used + 1 < n)
        say(b + used, n - used, " %zu node%s large enough %s down or drained.", big,
            big == 1 ? "" : "s", big == 1 ? "is" : "are");
}

static void quota_text(const struct jz_sched *s, const struct job *j, uint64_t arg, char *b,
                       size_t n)
{
    const struct tenant *t = s->tenants[j->tenant];
    if (arg == JZ_SCHED__MODEL_QUOTA_ARG) {
        jz_sched__model_quota_text(s, j, b, n);
        return;
    }
    uint32_t site = (uint32_t)(arg - 1);
    unsigned total = j->gpus * jz_sched__parts_of(j);
    if ((arg == 0 || site >= s->sites.n) && t->max_gpus && total > t->max_gpus) {
        say(b, n,
            "Needs %u GPUs, more than tenant %s's quota of %u: it starts only if the quota "
            "grows.",
            total, t->name, t->max_gpus);
        return;
    }
    if (arg == 0 || site >= s->sites.n) {
        say(b, n, "Tenant %s is at its quota of %u GPUs (%u in use).", t->name, t->max_gpus,
            t->in_use);
        return;
    }
    unsigned max = 0, use = site < t->site_use_cap ? t->site_use[site] : 0;
    for (size_t i = 0; i < t->nquotas; i++)
        if (t->quotas[i].site == site)
            max = t->quotas[i].max;
    say(b, n,
        "Tenant %s is at its quota of %u GPUs in site %s (%u in use there), and no node "
        "elsewhere would do now.",
        t->name, max, s->sites.v[site], use);
}

int jz_sched_job_info(const struct jz_sched *s, uint64_t id, struct jz_sched_job_info *info,
                      struct jz_error *err)
{
    const struct job *j = s ? job_find(s, id) : NULL;
    if (!j || !info)
        return jz_error_set(err, JZ_ENOENT, "no job %llu", (unsigned long long)id);
    memset(info, 0, sizeof(*info));
    info->state = (enum jz_sched_state)j->state;
    info->reason = (enum jz_sched_reason)j->reason;
    info->est_start = j->est_start;
    info->priority = j->prio;
    uint64_t arg_now = j->reason_arg;
    const struct queue *q = s->tenants[j->tenant]->queues[j->nodes > 1][j->gpus];
    if (j->state == JZ_SCHED_JOB_PENDING && !j->parked && s->full_pass && q &&
        q->full_pass == s->full_pass && j->pass < s->full_pass) {
        /* Waiting in its queue at the last full pass, which did not look at it: its queue's
         * reason then, and its priority then. */
        info->reason = (enum jz_sched_reason)q->full_block;
        arg_now = q->full_block_arg;
        info->est_start = -1;
        info->priority = job_prio(s, j, s->full_now);
    }
    info->node = jz_sched__nparts(j) ? j->parts[0].node : jz_sched__nclaims(j) ? j->claims[0] : 0;
    info->part_count = jz_sched__nparts(j);
    info->start_time = j->start;
    info->attained_gpu_s = jz_sched__attained(j, j->start); /* runs that ended */
    info->las_band = s->classes[j->cls].order & JZ_SCHED_ORDER_LAS
                         ? jz_sched__las_band(s, info->attained_gpu_s)
                         : 0;
    info->preemptions = j->preemptions;
    char *b = info->reason_text;
    size_t n = sizeof(info->reason_text);
    unsigned long long arg = (unsigned long long)arg_now;
    const char *where = jz_sched__nparts(j) ? s->nodes[j->parts[0].node].name : "";
    char others[48] = "";
    if (jz_sched__nparts(j) > 1)
        say(others, sizeof(others), " and %u other node%s", jz_sched__nparts(j) - 1,
            jz_sched__nparts(j) == 2 ? "" : "s");
    switch (j->state) {
    case JZ_SCHED_JOB_RUNNING:
        say(b, n, "Running on %s%s since %lld.", where, others, (long long)j->start);
        return 0;
    case JZ_SCHED_JOB_PREEMPTING:
        say(b, n, "Stopping on %s%s to make room for job %llu.", where, others,
            (unsigned long long)j->for_job);
        return 0;
    case JZ_SCHED_JOB_HELD:
        if (j->dep_failed)
            say(b, n,
                "Job %llu, which it depends on, did not end successfully; it will never "
                "start.",
                arg);
        else
            say(b, n, "Waiting for %u job%s it depends on to end.", j->deps_left,
                j->deps_left == 1 ? "" : "s");
        return 0;
    default:
        break;
    }
    switch (info->reason) {
    case JZ_SCHED_REASON_RESOURCES:
        if (j->victims_left)
            say(b, n, "Waiting for %u preempted job%s to stop.", j->victims_left,
                j->victims_left == 1 ? "" : "s");
        else if (j->nodes > 1 && j->gpus)
            say(b, n, "Needs %u nodes with %u free GPU%s each; too few have them free now.",
                j->nodes, j->gpus, j->gpus == 1 ? "" : "s");
        else if (j->nodes > 1)
            say(b, n, "Needs %u nodes with %u free cores each; too few have them free now.",
                j->nodes, j->cpus);
        else if (j->gpus)
            say(b, n, "Needs %u GPU%s on one node; no node has them free now.", j->gpus,
                j->gpus == 1 ? "" : "s");
        else
            say(b, n, "Needs %u cores on one node; no node has them free now.", j->cpus);
        out_of_service_text(s, j, b, n);
        break;
    case JZ_SCHED_REASON_PRIORITY:
        if (arg)
            say(b, n, "Waiting behind higher-priority job %llu (resources are held for it).", arg);
        else
            say(b, n, "Waiting behind higher-priority jobs.");
        break;
    case JZ_SCHED_REASON_QUOTA:
        quota_text(s, j, arg, b, n);
        break;
    case JZ_SCHED_REASON_RESERVATION:
        say(b, n, "The free GPUs that would fit are reserved for another tenant.");
        break;
    case JZ_SCHED_REASON_CREDITS:
        say(b, n, "Tenant %s has no compute credit left.", s->tenants[j->tenant]->name);
        break;
    case JZ_SCHED_REASON_NEVER: {
        char why[JZ_SCHED_REASON_LEN];
        jz_sched__never_why(s, j, why, sizeof(why));
        if (why[0] >= 'a' && why[0] <= 'z')
            why[0] = (char)(why[0] - 'a' + 'A');
        say(b, n, "%s.", why);
        break;
    }
    case JZ_SCHED_REASON_NEW:
        say(b, n, "Not yet considered.");
        break;
    default:
        say(b, n, "Waiting.");
    }
    return 0;
}

void jz_sched_stats_get(const struct jz_sched *s, struct jz_sched_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!s)
        return;
    st->pending = s->pending;
    st->held = s->held;
    st->running = s->running;
    st->nodes = s->nalive;
    for (size_t n = 0; n < s->nnodes; n++) {
        if (s->nodes[n].removed)
            continue;
        st->gpus_total += s->nodes[n].gpus;
        st->gpus_busy += s->nodes[n].gpus - s->nodes[n].free_gpus;
    }
    st->decisions = s->decisions;
    size_t b = sizeof(*s) + s->table_cap * sizeof(*s->table) + s->njobs * sizeof(struct job) +
               s->job_extra_bytes + s->tenants_cap * sizeof(*s->tenants) +
               s->ntenants * sizeof(struct tenant) + s->tenant_hash_cap * sizeof(uint32_t) +
               s->nodes_cap * sizeof(struct node) + s->active_cap * sizeof(*s->active) +
               s->cand_cap * sizeof(*s->cand) + s->tmp_cap * sizeof(*s->tmp) +
               s->never_cap * sizeof(*s->never);
    for (size_t i = 0; i < s->nactive; i++)
        b += sizeof(struct queue) + s->active[i]->cap * sizeof(struct job *);
    for (size_t n = 0; n < s->nnodes; n++)
        b += s->nodes[n].runcap * sizeof(struct part *) +
             (JZ_BITMAP_WORDS(s->nodes[n].cores) + 1) * sizeof(uint64_t);
    st->bytes = b;
}
