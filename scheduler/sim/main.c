/* jazari-sim: replays a job trace on a cluster of topology files with a virtual clock, driving the
 * real scheduler library, and reports utilisation, waits, fairness and fragmentation. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/version.h"
#include "scheduler/config.h"
#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

#define SIM_MAX_JOBS 2000000
#define SIM_MAX_LINE 1024
#define SIM_MAX_TOPOS 64
#define SIM_MAX_TRACE_GPUS (JZ_TOPO_MAX_GPUS * JZ_SCHED_MAX_JOB_NODES)

/* What one part of a running job holds, as the simulator saw it started. */
struct sim_part {
    size_t node;
    uint64_t gpu_mask;
    size_t *cores;
    size_t ncores;
};

struct sim_job {
    uint64_t id;
    int64_t submit, duration, limit, remaining;
    unsigned gpus;  /* per part */
    unsigned nodes; /* parts: 1, or a gang's node count */
    int tenant;
    bool preemptible;
    char cls[JZ_SCHED_NAME_LEN];
    int64_t first_start, end;
    int64_t run_start, ran, finish; /* this run's start; seconds run in all; when it ended */
    unsigned gen; /* bumps on preemption, so stale completion events are ignored */
    bool done, started, running;
    struct sim_part *parts; /* while running */
    size_t nparts;
    unsigned preemptions;
};

struct sim_tenant {
    char name[JZ_SCHED_NAME_LEN];
    double weight;
    unsigned max_gpus; /* its quota from the configuration; 0 = none */
    double gpu_seconds; /* GPU-seconds its jobs ran (not the time they spent requeued) */
    size_t jobs, done;
    unsigned preemptions;
};

enum ev_kind { EV_SUBMIT = 0, EV_END = 1, EV_STOPPED = 2, EV_TIMER = 3 };

struct event {
    int64_t t;
    int kind;
    size_t job;
    unsigned gen;
};

struct sim {
    struct sim_job *jobs;
    size_t njobs, cap;
    struct sim_tenant tenants[JZ_SCHED_MAX_TENANTS];
    size_t ntenants;
    struct event *heap;
    size_t nheap, heapcap;
    size_t nreal; /* events in the heap other than timers: while there are none, nothing changes */
    struct jz_topo *topos[SIM_MAX_TOPOS];
    size_t ntopos;
    struct jz_sched *s;
    size_t nnodes;
    unsigned total_gpus;
    unsigned largest_gpus; /* GPUs of the largest node: the part size of a too-big trace job */
    int64_t horizon;       /* the last reservation's end: time alone may change things before */
    size_t never;          /* jobs left that could never run on this cluster */
    uint64_t *node_busy;   /* the simulator's own view, to catch double booking */
    uint64_t **core_busy;
    const struct jz_topo **node_topo;
    int64_t full_every, grace;
    unsigned cpus_per_gpu;
    bool check, log;
    size_t violations;
    /* metrics */
    double busy_gpu_seconds, idle_waiting_gpu_seconds, waiting_seconds;
    unsigned busy_gpus;
    int64_t last_t, first_t, end_t;
    size_t waiting;
    uint64_t decide_calls, starts, preempts;
    double decide_seconds;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("jazari-sim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static bool ev_before(const struct event *a, const struct event *b)
{
    if (a->t != b->t)
        return a->t < b->t;
    if (a->kind != b->kind)
        return a->kind > b->kind; /* ends and stops before submits at one instant */
    return a->job < b->job;
}

static void ev_push(struct sim *m, struct event e)
{
    if (m->nheap == m->heapcap) {
        m->heapcap = m->heapcap ? m->heapcap * 2 : 1024;
        m->heap = realloc(m->heap, m->heapcap * sizeof(*m->heap));
        if (!m->heap)
            die("out of memory");
    }
    if (e.kind != EV_TIMER)
        m->nreal++;
    size_t i = m->nheap++;
    while (i > 0 && ev_before(&e, &m->heap[(i - 1) / 2])) {
        m->heap[i] = m->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->heap[i] = e;
}

static struct event ev_pop(struct sim *m)
{
    struct event top = m->heap[0], last = m->heap[--m->nheap];
    if (top.kind != EV_TIMER)
        m->nreal--;
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->nheap)
            break;
        if (c + 1 < m->nheap && ev_before(&m->heap[c + 1], &m->heap[c]))
            c++;
        if (!ev_before(&m->heap[c], &last))
            break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->nheap)
        m->heap[i] = last;
    return top;
}

static int tenant_index(struct sim *m, const char *name)
{
    for (size_t i = 0; i < m->ntenants; i++)
        if (strcmp(m->tenants[i].name, name) == 0)
            return (int)i;
    if (m->ntenants == JZ_SCHED_MAX_TENANTS || strlen(name) >= JZ_SCHED_NAME_LEN || !*name)
        die("bad or too many tenants (%s)", name);
    struct sim_tenant *t = &m->tenants[m->ntenants];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->weight = 1;
    return (int)m->ntenants++;
}

static struct sim_job *job_new(struct sim *m)
{
    if (m->njobs == SIM_MAX_JOBS)
        die("more than %d jobs in the trace", SIM_MAX_JOBS);
    if (m->njobs == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->jobs = realloc(m->jobs, m->cap * sizeof(*m->jobs));
        if (!m->jobs)
            die("out of memory");
    }
    struct sim_job *j = &m->jobs[m->njobs];
    memset(j, 0, sizeof(*j));
    j->id = m->njobs + 1;
    m->njobs++;
    return j;
}

/* Splits line at commas in place, keeping empty fields ("1,,2" is three); returns the count. */
static size_t split_csv(char *line, char **fields, size_t max)
{
    size_t n = 0;
    for (char *p = line; n < max;) {
        fields[n++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    return n;
}

/* Sets the job's shape from a trace line: with a nodes column (> 0), gpus is per node; without,
 * gpus is the total, and a job larger than the largest node becomes a gang of
 * ceil(gpus / K) parts of K GPUs, K being the largest node's GPU count (rounded up to whole
 * nodes, as a user asking for nodes would). */
static bool job_shape(const struct sim *m, struct sim_job *j, long gpus, long nodes)
{
    if (nodes > 0) {
        if (gpus > JZ_TOPO_MAX_GPUS || nodes > JZ_SCHED_MAX_JOB_NODES)
            return false;
        j->gpus = (unsigned)gpus;
        j->nodes = (unsigned)nodes;
        return true;
    }
    unsigned k = m->largest_gpus;
    if (gpus <= (long)k || k == 0 || gpus <= 0) {
        j->gpus = (unsigned)gpus;
        j->nodes = 1;
        return gpus <= JZ_TOPO_MAX_GPUS;
    }
    long parts = (gpus + k - 1) / k;
    if (parts > JZ_SCHED_MAX_JOB_NODES)
        return false;
    j->gpus = k;
    j->nodes = (unsigned)parts;
    return true;
}

/* CSV: submit,duration,time_limit,gpus,tenant,preemptible[,class[,nodes]]; '#' lines and a
 * header line starting with "submit" are skipped. Times in seconds. */
static void read_trace(struct sim *m, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open trace %s: %s", path, strerror(errno));
    char line[SIM_MAX_LINE];
    size_t lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f))
            die("%s:%zu: line longer than %d bytes", path, lineno, SIM_MAX_LINE);
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#' || strncmp(line, "submit", 6) == 0)
            continue;
        char *fields[9] = {0};
        size_t nf = split_csv(line, fields, 9);
        if (nf < 6 || nf > 8)
            die("%s:%zu: want submit,duration,time_limit,gpus,tenant,preemptible[,class[,nodes]]",
                path, lineno);
        struct sim_job *j = job_new(m);
        char *end;
        j->submit = strtoll(fields[0], &end, 10);
        j->duration = strtoll(fields[1], &end, 10);
        j->limit = strtoll(fields[2], &end, 10);
        long g = strtol(fields[3], &end, 10);
        long nodes = nf > 7 && fields[7][0] ? strtol(fields[7], &end, 10) : 0;
        if (j->submit < 0 || j->duration <= 0 || j->limit <= 0 || g < 0 || g > SIM_MAX_TRACE_GPUS ||
            nodes < 0 || !job_shape(m, j, g, nodes))
            die("%s:%zu: bad numbers", path, lineno);
        j->tenant = tenant_index(m, fields[4]);
        j->preemptible = strcmp(fields[5], "1") == 0 || strcmp(fields[5], "true") == 0;
        if (nf > 6)
            snprintf(j->cls, sizeof(j->cls), "%s", fields[6]);
        j->remaining = j->duration;
    }
    fclose(f);
}

static uint64_t rng_state = 88172645463325252ull;
static double rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* A random trace: Poisson arrivals, mostly small jobs, some whole-node ones, limits above the
 * real durations (users overestimate), a fifth preemptible. */
static void generate(struct sim *m, size_t n, unsigned tenants, double load, const char *high_class,
                     double high_fraction, double gang_fraction)
{
    static const unsigned sizes[] = {1, 1, 1, 1, 2, 2, 4, 8};
    double mean_gpus = 2.5, mean_dur = 1800;
    double rate = load * m->total_gpus / (mean_gpus * mean_dur); /* jobs per second */
    double t = 0;
    for (size_t i = 0; i < n; i++) {
        struct sim_job *j = job_new(m);
        t += -log(1 - rnd()) / rate;
        j->submit = (int64_t)t;
        j->duration = 60 + (int64_t)(-log(1 - rnd()) * (mean_dur - 60));
        j->limit = (int64_t)((double)j->duration * (1.0 + 2.0 * rnd())) + 60;
        j->gpus = sizes[(size_t)(rnd() * 8) % 8];
        j->nodes = 1;
        if (gang_fraction > 0 && rnd() < gang_fraction) {
            /* A gang of 2 to 4 nodes with 1 to 8 GPUs each (at most the largest node's). */
            j->nodes = 2 + (unsigned)(rnd() * 3) % 3;
            j->gpus = sizes[4 + (size_t)(rnd() * 4) % 4];
            if (j->gpus > m->largest_gpus)
                j->gpus = m->largest_gpus;
        }
        char name[16];
        /* Tenant t0 submits most: fair share must still serve the others. */
        unsigned tn = rnd() < 0.5 ? 0 : (unsigned)(rnd() * tenants) % tenants;
        snprintf(name, sizeof(name), "t%u", tn);
        j->tenant = tenant_index(m, name);
        j->preemptible = rnd() < 0.2;
        if (high_class && rnd() < high_fraction) {
            snprintf(j->cls, sizeof(j->cls), "%s", high_class);
            j->preemptible = false;
        }
        j->remaining = j->duration;
    }
}

static void write_trace(const struct sim *m, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s", path);
    fprintf(f, "submit,duration,time_limit,gpus,tenant,preemptible,class,nodes\n");
    for (size_t i = 0; i < m->njobs; i++) {
        const struct sim_job *j = &m->jobs[i];
        fprintf(f, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%u,%s,%d", j->submit, j->duration, j->limit,
                j->gpus, m->tenants[j->tenant].name, j->preemptible);
        if (j->nodes > 1)
            fprintf(f, ",%s,%u\n", j->cls, j->nodes);
        else
            fprintf(f, "%s%s\n", j->cls[0] ? "," : "", j->cls);
    }
    fclose(f);
}

/* FILE.xml[:COUNT][@SITE],...: nodes of one topology, in a site ("default" without one). */
static void add_nodes(struct sim *m, char *spec)
{
    for (char *save = NULL, *tok = strtok_r(spec, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *at = strrchr(tok, '@');
        const char *site = NULL;
        if (at) {
            *at = '\0';
            site = at + 1;
        }
        char *colon = strrchr(tok, ':');
        long count = 1;
        if (colon) {
            *colon = '\0';
            count = strtol(colon + 1, NULL, 10);
        }
        if (count < 1 || count > JZ_SCHED_MAX_NODES)
            die("bad node count for %s", tok);
        if (m->ntopos == SIM_MAX_TOPOS)
            die("more than %d topology files", SIM_MAX_TOPOS);
        struct jz_error err = {0};
        struct jz_topo *t;
        if (jz_topo_hwloc_load_xml(tok, &t, &err))
            die("%s", err.msg);
        m->topos[m->ntopos++] = t;
        for (long i = 0; i < count; i++) {
            char name[JZ_SCHED_NAME_LEN];
            const char *base = strrchr(tok, '/');
            snprintf(name, sizeof(name), "n%zu-%.40s", m->nnodes, base ? base + 1 : tok);
            struct jz_sched_node_spec ns = {.name = name, .topo = t, .site = site};
            if (jz_sched_node_add(m->s, &ns, NULL, &err))
                die("%s", err.msg);
            m->nnodes++;
            m->total_gpus += (unsigned)jz_topo_gpu_count(t);
            if (jz_topo_gpu_count(t) > m->largest_gpus)
                m->largest_gpus = (unsigned)jz_topo_gpu_count(t);
            m->node_busy = realloc(m->node_busy, m->nnodes * sizeof(uint64_t));
            m->core_busy = realloc(m->core_busy, m->nnodes * sizeof(uint64_t *));
            m->node_topo = realloc(m->node_topo, m->nnodes * sizeof(*m->node_topo));
            if (!m->node_busy || !m->core_busy || !m->node_topo)
                die("out of memory");
            m->node_busy[m->nnodes - 1] = 0;
            m->core_busy[m->nnodes - 1] =
                calloc(JZ_BITMAP_WORDS(jz_topo_core_count(t)) + 1, sizeof(uint64_t));
            m->node_topo[m->nnodes - 1] = t;
        }
    }
}

static void violation(struct sim *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(struct sim *m, const char *fmt, ...)
{
    m->violations++;
    if (m->violations > 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("jazari-sim: INVARIANT: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Advances the time-weighted counters to t. */
static void account(struct sim *m, int64_t t)
{
    if (t <= m->last_t)
        return;
    double dt = (double)(t - m->last_t);
    m->busy_gpu_seconds += m->busy_gpus * dt;
    if (m->waiting > 0) {
        m->waiting_seconds += dt;
        m->idle_waiting_gpu_seconds += (double)(m->total_gpus - m->busy_gpus) * dt;
    }
    m->last_t = t;
}

static void check_part(struct sim *m, const struct jz_sched_part *p, const struct sim_job *j)
{
    const struct jz_topo *t = m->node_topo[p->node];
    const struct jz_place_result *pl = &p->place;
    uint64_t mask = 0;
    for (size_t i = 0; i < pl->gpu_count; i++)
        mask |= 1ull << pl->gpus[i];
    if (mask & m->node_busy[p->node])
        violation(m, "job %" PRIu64 " got a GPU already in use on node %zu", j->id, p->node);
    if (pl->gpu_count != j->gpus)
        violation(m, "job %" PRIu64 " got %zu GPUs on node %zu, asked %u", j->id, pl->gpu_count,
                  p->node, j->gpus);
    for (size_t c = 0; c < pl->core_count; c++) {
        size_t core = pl->cores[c];
        if (m->core_busy[p->node][core / 64] >> (core % 64) & 1)
            violation(m, "job %" PRIu64 " got core %zu already in use", j->id, core);
        bool local = pl->gpu_count == 0;
        for (size_t g = 0; g < pl->gpu_count && !local; g++) {
            const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, pl->gpus[g]);
            for (size_t l = 0; l < gpu->local_core_count && !local; l++)
                local = gpu->local_cores[l] == core;
        }
        if (!local)
            violation(m, "job %" PRIu64 " got core %zu not local to its GPUs", j->id, core);
    }
    for (size_t g = 0; g < pl->gpu_count; g++) {
        int numa = jz_topo_gpu_at(t, pl->gpus[g])->numa_os;
        bool found = numa < 0;
        for (size_t k = 0; k < pl->numa_count && !found; k++)
            found = pl->numa[k] == numa;
        if (!found)
            violation(m, "job %" PRIu64 ": memory not on its GPUs' NUMA node", j->id);
    }
}

/* Every part of a start: no GPU or core given twice, cores local to the part's GPUs, memory on
 * their NUMA nodes, and a gang's parts on as many distinct nodes as it asked for. */
static void check_start(struct sim *m, const struct jz_sched_decision *d, const struct sim_job *j)
{
    if (d->part_count != j->nodes)
        violation(m, "job %" PRIu64 " started on %zu nodes, asked %u", j->id, d->part_count,
                  j->nodes);
    for (size_t i = 0; i < d->part_count; i++) {
        if (d->parts[i].node >= m->nnodes) {
            violation(m, "job %" PRIu64 " started on unknown node %zu", j->id, d->parts[i].node);
            return;
        }
        for (size_t k = 0; k < i; k++)
            if (d->parts[k].node == d->parts[i].node)
                violation(m, "job %" PRIu64 " has two parts on node %zu", j->id, d->parts[i].node);
        check_part(m, &d->parts[i], j);
    }
}

static void set_busy(struct sim *m, size_t node, uint64_t mask, const size_t *cores, size_t n,
                     bool on)
{
    if (on)
        m->node_busy[node] |= mask;
    else
        m->node_busy[node] &= ~mask;
    for (size_t c = 0; c < n; c++) {
        if (on)
            m->core_busy[node][cores[c] / 64] |= 1ull << (cores[c] % 64);
        else
            m->core_busy[node][cores[c] / 64] &= ~(1ull << (cores[c] % 64));
    }
}

static void run_decide(struct sim *m, int64_t now, unsigned flags)
{
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (jz_sched_decide(m->s, now, flags, &d, &err))
        die("decide: %s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &b);
    m->decide_seconds += (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    m->decide_calls++;
    for (size_t i = 0; i < d.count; i++) {
        const struct jz_sched_decision *x = &d.items[i];
        struct sim_job *j = &m->jobs[x->job_id - 1];
        if (x->action == JZ_SCHED_START) {
            if (m->check)
                check_start(m, x, j);
            m->starts++;
            j->parts = calloc(x->part_count + 1, sizeof(*j->parts));
            if (!j->parts)
                die("out of memory");
            j->nparts = x->part_count;
            for (size_t p = 0; p < x->part_count; p++) {
                const struct jz_place_result *pl = &x->parts[p].place;
                struct sim_part *sp = &j->parts[p];
                for (size_t g = 0; g < pl->gpu_count; g++)
                    sp->gpu_mask |= 1ull << pl->gpus[g];
                sp->node = x->parts[p].node;
                sp->cores = malloc((pl->core_count + 1) * sizeof(size_t));
                if (!sp->cores)
                    die("out of memory");
                memcpy(sp->cores, pl->cores, pl->core_count * sizeof(size_t));
                sp->ncores = pl->core_count;
                set_busy(m, sp->node, sp->gpu_mask, sp->cores, sp->ncores, true);
            }
            j->running = true;
            j->run_start = now;
            if (!j->started) {
                j->first_start = now;
                j->started = true;
            }
            m->busy_gpus += j->gpus * (unsigned)j->nparts;
            m->waiting--;
            int64_t run = j->remaining < j->limit ? j->remaining : j->limit;
            j->end = now + run;
            ev_push(m, (struct event){now + run, EV_END, x->job_id - 1, j->gen});
            if (m->log) {
                const struct jz_place_result *pl = &x->parts[0].place;
                printf("%" PRId64 " start %" PRIu64 " %s gpus=%zu cpus=%zu worst=%s", now,
                       x->job_id, x->parts[0].node_name, pl->gpu_count, pl->cpu_count,
                       pl->gpu_count > 1 ? jz_topo_link_name(pl->worst_link) : "-");
                for (size_t p = 1; p < x->part_count; p++)
                    printf(" +%s", x->parts[p].node_name);
                printf("\n");
            }
        } else {
            m->preempts++;
            /* It stops after the grace period, unless it ends first: whichever comes first
             * wins (the stop bumps gen, so the end is ignored; an end marks it done, so the
             * stop is). */
            ev_push(m, (struct event){now + x->grace_s, EV_STOPPED, x->job_id - 1, j->gen});
            if (m->log)
                printf("%" PRId64 " preempt %" PRIu64 " for %" PRIu64 "\n", now, x->job_id,
                       x->for_job);
        }
    }
    jz_sched_decisions_free(&d);
}

static void release(struct sim *m, struct sim_job *j)
{
    for (size_t p = 0; p < j->nparts; p++) {
        struct sim_part *sp = &j->parts[p];
        set_busy(m, sp->node, sp->gpu_mask, sp->cores, sp->ncores, false);
        free(sp->cores);
    }
    free(j->parts);
    j->parts = NULL;
    m->busy_gpus -= j->gpus * (unsigned)j->nparts;
    j->nparts = 0;
    j->running = false;
}

/* A run ends (the job ended, or stopped for a preemption): its tenant is charged for this run
 * alone, so the time a preempted job spends requeued is never charged. */
static void run_ended(struct sim *m, struct sim_job *j, int64_t now)
{
    m->tenants[j->tenant].gpu_seconds +=
        (double)j->gpus * (double)j->nparts * (double)(now - j->run_start);
    j->ran += now - j->run_start;
    release(m, j);
}

static struct jz_sched_job sched_job(const struct sim *m, const struct sim_job *j)
{
    return (struct jz_sched_job){.id = j->id,
                                 .tenant = m->tenants[j->tenant].name,
                                 .gpus = j->gpus,
                                 .cpus_per_gpu = m->cpus_per_gpu,
                                 .cpus = j->gpus ? 0 : 1,
                                 .time_limit_s = j->limit,
                                 .preemptible = j->preemptible,
                                 .class_name = j->cls[0] ? j->cls : NULL,
                                 .submit_time = j->submit,
                                 .nodes = j->nodes};
}

/* Whether a job could ever run here: some node set holds it (the scheduler's answer) and it
 * fits its tenant's quota. */
static bool can_ever_run(const struct sim *m, const struct sim_job *j, char *why, size_t len)
{
    struct jz_sched_job sj = sched_job(m, j);
    if (!jz_sched_could_ever_fit(m->s, &sj, why, len))
        return false;
    const struct sim_tenant *t = &m->tenants[j->tenant];
    if (t->max_gpus && j->gpus * j->nodes > t->max_gpus) {
        if (why)
            snprintf(why, len, "it needs %u GPUs, over tenant %s's quota of %u", j->gpus * j->nodes,
                     t->name, t->max_gpus);
        return false;
    }
    return true;
}

static void simulate(struct sim *m)
{
    for (size_t i = 0; i < m->njobs; i++) {
        ev_push(m, (struct event){m->jobs[i].submit, EV_SUBMIT, i, 0});
        m->tenants[m->jobs[i].tenant].jobs++;
    }
    m->first_t = m->njobs ? m->heap[0].t : 0;
    m->last_t = m->first_t;
    size_t remaining = m->njobs;
    if (m->full_every > 0)
        ev_push(m, (struct event){m->first_t, EV_TIMER, 0, 0});
    struct jz_error err = {0};
    while (m->nheap > 0) {
        int64_t now = m->heap[0].t;
        account(m, now);
        bool timer = false, any = false;
        while (m->nheap > 0 && m->heap[0].t == now) {
            struct event e = ev_pop(m);
            struct sim_job *j = &m->jobs[e.job];
            switch (e.kind) {
            case EV_SUBMIT: {
                struct jz_sched_job sj = sched_job(m, j);
                if (jz_sched_submit(m->s, &sj, now, &err))
                    die("submit %" PRIu64 ": %s", j->id, err.msg);
                /* A job that can never run does not count as waiting for the cluster. */
                if (can_ever_run(m, j, NULL, 0))
                    m->waiting++;
                any = true;
                break;
            }
            case EV_END:
                if (e.gen != j->gen || j->done)
                    break;
                run_ended(m, j, now);
                j->done = true;
                j->finish = now;
                remaining--;
                m->tenants[j->tenant].done++;
                if (now > m->end_t)
                    m->end_t = now;
                /* A job that hit its limit is killed: it ended, not well. */
                if (jz_sched_job_ended(m->s, j->id, now, j->remaining <= j->limit, &err))
                    die("ended: %s", err.msg);
                if (m->log)
                    printf("%" PRId64 " end %" PRIu64 "\n", now, j->id);
                any = true;
                break;
            case EV_STOPPED:
                if (e.gen != j->gen || j->done)
                    break;
                j->gen++; /* this run's end will not happen */
                run_ended(m, j, now);
                /* The checkpoint kept its progress. */
                j->remaining -=
                    now - (j->end - (j->remaining < j->limit ? j->remaining : j->limit));
                if (j->remaining < 1)
                    j->remaining = 1;
                j->preemptions++;
                m->tenants[j->tenant].preemptions++;
                m->waiting++;
                if (jz_sched_job_requeue(m->s, j->id, now, &err))
                    die("requeue: %s", err.msg);
                if (m->log)
                    printf("%" PRId64 " requeued %" PRIu64 "\n", now, j->id);
                any = true;
                break;
            case EV_TIMER:
                timer = true;
                if (remaining > 0)
                    ev_push(m, (struct event){now + m->full_every, EV_TIMER, 0, 0});
                break;
            }
        }
        if (any || timer)
            run_decide(m, now, timer ? JZ_SCHED_FULL : 0);
        if (remaining == 0)
            break;
        if (m->nheap == 0 && remaining > 0)
            break;
        /* No job will arrive, end or stop: only time passes. After a full pass with nothing to
         * wait for (and past every reservation), nothing can start any more: stop, rather than
         * tick the timer forever for jobs that cannot run. */
        if (m->nreal == 0 && timer && now >= m->horizon)
            break;
    }
    /* What is left either could never run on this cluster or was starved. */
    size_t never = 0;
    for (size_t i = 0; i < m->njobs && remaining > 0; i++) {
        if (m->jobs[i].done)
            continue;
        char why[JZ_SCHED_REASON_LEN];
        if (!can_ever_run(m, &m->jobs[i], why, sizeof(why))) {
            if (never++ < 5 && m->check)
                fprintf(stderr, "jazari-sim: job %" PRIu64 " can never run: %s\n", m->jobs[i].id,
                        why);
        }
    }
    m->never = never;
    if (remaining > never && m->check)
        violation(m, "%zu jobs never ran (starved)", remaining - never);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value that at least fraction q of the sorted values do not exceed. */
static double percentile(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil(q * (double)n);
    return sorted[rank ? rank - 1 : 0];
}

static double mean_of(const double *v, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    return n ? sum / (double)n : 0;
}

/* What the scheduling papers report, over the jobs that finished (all of them, or one tenant's:
 * tenant < 0 for all): job completion time (finish - submit), queueing delay (JCT - time run),
 * wait before the first start, and preemptions. */
struct outcome {
    size_t done, preempted;
    double jct_mean, jct_p50, jct_p99, delay_mean, wait_mean, wait_p95;
    unsigned preempt_max;
};

static struct outcome outcome_of(const struct sim *m, int tenant)
{
    struct outcome o = {0};
    double *jct = calloc(m->njobs + 1, sizeof(double));
    double *wait = calloc(m->njobs + 1, sizeof(double));
    if (!jct || !wait)
        die("out of memory");
    double delay = 0;
    size_t nwait = 0;
    for (size_t i = 0; i < m->njobs; i++) {
        const struct sim_job *j = &m->jobs[i];
        if (tenant >= 0 && j->tenant != tenant)
            continue;
        if (j->started)
            wait[nwait++] = (double)(j->first_start - j->submit);
        if (j->preemptions > o.preempt_max)
            o.preempt_max = j->preemptions;
        o.preempted += j->preemptions > 0;
        if (!j->done)
            continue;
        jct[o.done++] = (double)(j->finish - j->submit);
        delay += (double)(j->finish - j->submit - j->ran);
    }
    qsort(jct, o.done, sizeof(double), cmp_double);
    qsort(wait, nwait, sizeof(double), cmp_double);
    o.jct_mean = mean_of(jct, o.done);
    o.jct_p50 = percentile(jct, o.done, 0.50);
    o.jct_p99 = percentile(jct, o.done, 0.99);
    o.delay_mean = o.done ? delay / (double)o.done : 0;
    o.wait_mean = mean_of(wait, nwait);
    o.wait_p95 = percentile(wait, nwait, 0.95);
    free(jct);
    free(wait);
    return o;
}

static void report(struct sim *m, bool json, double wall)
{
    double span = (double)(m->end_t - m->first_t);
    double util = span > 0 ? m->busy_gpu_seconds / (m->total_gpus * span) : 0;
    double frag = m->waiting_seconds > 0
                      ? m->idle_waiting_gpu_seconds / (m->total_gpus * m->waiting_seconds)
                      : 0;
    double total_gs = 0, wsum = 0;
    for (size_t t = 0; t < m->ntenants; t++) {
        total_gs += m->tenants[t].gpu_seconds;
        wsum += m->tenants[t].weight;
    }
    /* Jain's index over achieved share / weight share (1 = perfectly proportional). */
    double s1 = 0, s2 = 0;
    for (size_t t = 0; t < m->ntenants; t++) {
        double r = total_gs > 0
                       ? (m->tenants[t].gpu_seconds / total_gs) / (m->tenants[t].weight / wsum)
                       : 0;
        s1 += r;
        s2 += r * r;
    }
    double jain = s2 > 0 ? s1 * s1 / ((double)m->ntenants * s2) : 0;
    double dps = m->decide_seconds > 0 ? (double)m->decide_calls / m->decide_seconds : 0;
    struct outcome all = outcome_of(m, -1);
    if (json)
        printf("{\"nodes\": %zu, \"gpus\": %u, \"jobs\": %zu, \"makespan_s\": %.0f, "
               "\"utilisation\": %.4f, \"fragmentation\": %.4f, \"fairness_jain\": %.4f, "
               "\"decide_calls\": %" PRIu64 ", \"starts\": %" PRIu64 ", \"preemptions\": %" PRIu64
               ", \"decisions_per_second\": %.0f, \"violations\": %zu, \"never_fit\": %zu, "
               "\"done\": %zu, \"jct_mean_s\": %.0f, \"jct_p50_s\": %.0f, \"jct_p99_s\": %.0f, "
               "\"queueing_delay_mean_s\": %.0f, \"wait_mean_s\": %.0f, "
               "\"preemptions_max_per_job\": %u, \"jobs_preempted\": %zu, \"tenants\": [",
               m->nnodes, m->total_gpus, m->njobs, span, util, frag, jain, m->decide_calls,
               m->starts, m->preempts, dps, m->violations, m->never, all.done, all.jct_mean,
               all.jct_p50, all.jct_p99, all.delay_mean, all.wait_mean, all.preempt_max,
               all.preempted);
    else {
        printf("cluster      %zu nodes, %u GPUs; %zu jobs over %.0f s (simulated in %.2f s)\n",
               m->nnodes, m->total_gpus, m->njobs, span, wall);
        printf("JCT          mean %.0f s, p50 %.0f s, p99 %.0f s over %zu finished jobs\n",
               all.jct_mean, all.jct_p50, all.jct_p99, all.done);
        printf("queueing     mean delay %.0f s (JCT - time run); mean wait to first start %.0f s\n",
               all.delay_mean, all.wait_mean);
        printf("makespan     %.0f s (first submit to last end)\n", span);
        printf("utilisation  %.1f%% of GPU time\n", 100 * util);
        printf("fragmentation %.1f%% of GPUs idle while jobs waited\n", 100 * frag);
        printf("fairness     Jain index %.3f over share achieved / weight share\n", jain);
        printf("preemptions  %" PRIu64 " in all, %zu jobs preempted, at most %u for one job\n",
               m->preempts, all.preempted, all.preempt_max);
        printf("decisions    %" PRIu64 " decide calls, %" PRIu64 " starts, %.0f decide calls/s\n",
               m->decide_calls, m->starts, dps);
        if (m->never)
            printf("never        %zu job%s could never run (no node set holds %s, or over the "
                   "tenant's quota)\n",
                   m->never, m->never == 1 ? "" : "s", m->never == 1 ? "it" : "them");
        printf("%-12s %6s %6s %10s %10s %10s %10s %7s %7s %7s\n", "tenant", "jobs", "done",
               "mean JCT", "p99 JCT", "mean wait", "p95 wait", "preempt", "share", "weight");
    }
    for (size_t t = 0; t < m->ntenants; t++) {
        struct sim_tenant *x = &m->tenants[t];
        struct outcome o = outcome_of(m, (int)t);
        double share = total_gs > 0 ? x->gpu_seconds / total_gs : 0;
        if (json)
            printf("%s{\"name\": \"%s\", \"jobs\": %zu, \"done\": %zu, \"jct_mean_s\": %.1f, "
                   "\"jct_p50_s\": %.1f, \"jct_p99_s\": %.1f, \"queueing_delay_mean_s\": %.1f, "
                   "\"mean_wait_s\": %.1f, \"p95_wait_s\": %.1f, \"preemptions\": %u, "
                   "\"gpu_seconds\": %.0f, \"share\": %.4f, \"weight_share\": %.4f}",
                   t ? ", " : "", x->name, x->jobs, x->done, o.jct_mean, o.jct_p50, o.jct_p99,
                   o.delay_mean, o.wait_mean, o.wait_p95, x->preemptions, x->gpu_seconds, share,
                   x->weight / wsum);
        else
            printf("%-12s %6zu %6zu %9.0fs %9.0fs %9.0fs %9.0fs %7u %6.1f%% %6.1f%%\n", x->name,
                   x->jobs, x->done, o.jct_mean, o.jct_p99, o.wait_mean, o.wait_p95,
                   x->preemptions, 100 * share, 100 * x->weight / wsum);
    }
    if (json)
        printf("]}\n");
    if (m->violations)
        printf("INVARIANT VIOLATIONS: %zu\n", m->violations);
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: jazari-sim --cluster FILE.xml[:COUNT][@SITE][,...] (--trace FILE.csv |\n"
        "                  --generate N [--seed S] [--tenants T] [--load L]\n"
        "                  [--high-class NAME --high-fraction F] [--gang-fraction F])\n"
        "                  [--config FILE.json] [--full-every SECONDS] [--write-trace FILE]\n"
        "                  [--cpus-per-gpu N] [--preemptible trace|all|none]\n"
        "                  [--check] [--log] [--json]\n"
        "Trace CSV columns: submit,duration,time_limit,gpus,tenant,preemptible[,class[,nodes]]\n"
        "(seconds). With nodes, gpus is per node; without, a job larger than the largest\n"
        "node (K GPUs) runs as ceil(gpus/K) nodes of K GPUs. --config takes the service "
        "configuration file (its \"scheduler\"\n"
        "object) or that object alone. --preemptible all (none) replays every job as\n"
        "preemptible (not). --check verifies invariants and exits 3 on a violation.\n");
    exit(1);
}

int main(int argc, char **argv)
{
    struct sim m;
    memset(&m, 0, sizeof(m));
    m.full_every = 60;
    m.cpus_per_gpu = 1;
    char *cluster = NULL;
    const char *trace = NULL, *config = NULL, *write = NULL;
    size_t gen = 0;
    unsigned tenants = 4;
    double load = 0.9, high_fraction = 0, gang_fraction = 0;
    const char *high_class = NULL;
    bool json = false;
    const char *preemptible = "trace";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--cluster") && v)
            cluster = argv[++i];
        else if (!strcmp(a, "--trace") && v)
            trace = argv[++i], (void)v;
        else if (!strcmp(a, "--config") && v)
            config = argv[++i];
        else if (!strcmp(a, "--generate") && v)
            gen = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--seed") && v)
            rng_state = strtoull(argv[++i], NULL, 10) * 2654435761u + 1;
        else if (!strcmp(a, "--tenants") && v)
            tenants = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--load") && v)
            load = strtod(argv[++i], NULL);
        else if (!strcmp(a, "--high-class") && v)
            high_class = argv[++i];
        else if (!strcmp(a, "--high-fraction") && v)
            high_fraction = strtod(argv[++i], NULL);
        else if (!strcmp(a, "--gang-fraction") && v)
            gang_fraction = strtod(argv[++i], NULL);
        else if (!strcmp(a, "--full-every") && v)
            m.full_every = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(a, "--write-trace") && v)
            write = argv[++i];
        else if (!strcmp(a, "--cpus-per-gpu") && v)
            m.cpus_per_gpu = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--preemptible") && v) {
            preemptible = argv[++i];
            if (strcmp(preemptible, "trace") && strcmp(preemptible, "all") &&
                strcmp(preemptible, "none"))
                usage();
        } else if (!strcmp(a, "--check"))
            m.check = true;
        else if (!strcmp(a, "--log"))
            m.log = true;
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "--version")) {
            jz_version_print(stdout, "jazari-sim");
            return 0;
        } else
            usage();
    }
    if (!cluster || (!trace && !gen) || gen > SIM_MAX_JOBS || tenants == 0 || tenants > 1000 ||
        m.cpus_per_gpu > JZ_TOPO_MAX_CORES || !(load > 0 && load < 100) ||
        !(gang_fraction >= 0 && gang_fraction <= 1))
        usage();
    struct jz_error err = {0};
    struct jz_sched_parsed *p = NULL;
    json_t *root = NULL;
    if (config) {
        root = jz_json_load_file(config, 16u << 20, &err);
        if (!root)
            die("%s", err.msg);
        json_t *obj = json_object_get(root, "scheduler");
        if (jz_sched_config_parse(obj ? obj : root, &p, &err))
            die("%s: %s", config, err.msg);
    } else if (jz_sched_config_parse(NULL, &p, &err)) {
        die("%s", err.msg);
    }
    if (jz_sched_create(&p->cfg, &m.s, &err))
        die("%s", err.msg);
    add_nodes(&m, cluster);
    for (size_t r = 0; r < p->reservation_count; r++) {
        if (jz_sched_reservation_add(m.s, &p->reservations[r], &err))
            die("%s", err.msg);
        if (p->reservations[r].end > m.horizon)
            m.horizon = p->reservations[r].end;
    }
    if (trace)
        read_trace(&m, trace);
    else
        generate(&m, gen, tenants, load, high_class, high_fraction, gang_fraction);
    /* What-if: the same trace with every job, or none, checkpointing (preemptible). */
    for (size_t i = 0; strcmp(preemptible, "trace") && i < m.njobs; i++)
        m.jobs[i].preemptible = strcmp(preemptible, "all") == 0;
    for (size_t t = 0; t < m.ntenants; t++)
        for (size_t c = 0; c < p->cfg.tenant_count; c++)
            if (!strcmp(p->cfg.tenants[c].name, m.tenants[t].name)) {
                m.tenants[t].weight = p->cfg.tenants[c].weight;
                m.tenants[t].max_gpus = p->cfg.tenants[c].max_gpus;
            }
    if (write)
        write_trace(&m, write);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    simulate(&m);
    clock_gettime(CLOCK_MONOTONIC, &b);
    report(&m, json, (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9);
    int status = m.check && m.violations ? 3 : 0;
    jz_sched_destroy(m.s);
    jz_sched_parsed_free(p);
    json_decref(root);
    for (size_t i = 0; i < m.ntopos; i++)
        jz_topo_destroy(m.topos[i]);
    for (size_t n = 0; n < m.nnodes; n++)
        free(m.core_busy[n]);
    for (size_t i = 0; i < m.njobs; i++)
        if (m.jobs[i].parts)
            release(&m, &m.jobs[i]);
    free(m.core_busy);
    free(m.node_busy);
    free(m.node_topo);
    free(m.jobs);
    free(m.heap);
    return status;
}
