/* Scheduler benchmark: 10,000 nodes of 8 GPUs (AWS g4dn.metal topology) almost full of running
 * jobs, 100,000 waiting jobs (optionally a fraction of them gangs over several nodes); times a
 * full pass with backfill and the decision after one job ends, and measures memory per waiting
 * job. Prints one JSON object. */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* CPU time of this thread: unlike wall time it does not count the time the (shared, noisy)
 * machine gave to other processes. */
static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static double rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fail(const char *what, const struct jz_error *err)
{
    fprintf(stderr, "jazari-bench-sched: %s: %s\n", what, err->msg);
    exit(1);
}

static unsigned size_of(void)
{
    static const unsigned sizes[] = {1, 1, 1, 2, 2, 4, 4, 8};
    return sizes[(size_t)(rnd() * 8) % 8];
}

int main(int argc, char **argv)
{
    size_t nodes = 10000, pending = 100000, tenants = 100, reps = 5, incr = 1000;
    double gang_fraction = 0; /* waiting jobs that are gangs of 2 to 8 nodes */
    const char *topo_path = JZ_BENCH_TOPOLOGY;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--nodes"))
            nodes = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--pending"))
            pending = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--topology"))
            topo_path = argv[i + 1];
        else if (!strcmp(argv[i], "--reps"))
            reps = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--gang-fraction"))
            gang_fraction = strtod(argv[i + 1], NULL);
        else {
            fprintf(stderr, "usage: jazari-bench-sched [--nodes N] [--pending N] [--reps N] "
                            "[--gang-fraction F] [--topology FILE.xml]\n");
            return 1;
        }
    }
    if (reps == 0 || reps > 100 || nodes == 0 || nodes > JZ_SCHED_MAX_NODES ||
        !(gang_fraction >= 0 && gang_fraction <= 1))
        return 1;
    struct jz_error err = {0};
    struct jz_topo *topo;
    if (jz_topo_hwloc_load_xml(topo_path, &topo, &err))
        fail("topology", &err);
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    struct jz_sched_tenant *tl = calloc(tenants, sizeof(*tl));
    for (size_t t = 0; t < tenants; t++) {
        snprintf(tl[t].name, sizeof(tl[t].name), "tenant%zu", t);
        tl[t].weight = 1 + (double)(t % 5);
        tl[t].max_gpus = t % 10 == 0 ? 400 : 0; /* a tenth have quotas */
    }
    cfg.tenants = tl;
    cfg.tenant_count = tenants;
    if (getenv("JZ_BENCH_MAX_TESTS"))
        cfg.backfill_max_tests = (unsigned)strtoul(getenv("JZ_BENCH_MAX_TESTS"), NULL, 10);
    struct jz_sched *s;
    if (jz_sched_create(&cfg, &s, &err))
        fail("create", &err);
    for (size_t n = 0; n < nodes; n++) {
        char name[32];
        snprintf(name, sizeof(name), "gpu%05zu", n);
        struct jz_sched_node_spec ns = {.name = name, .topo = topo};
        if (jz_sched_node_add(s, &ns, NULL, &err))
            fail("node", &err);
    }
    int64_t t0 = 1000000;
    uint64_t id = 1;
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    /* Fill the cluster to about 99% with running jobs of mixed sizes and limits. */
    size_t total = nodes * jz_topo_gpu_count(topo), want = total * 99 / 100, queued = 0;
    while (queued < want) {
        unsigned g = size_of();
        struct jz_sched_job j = {.id = id++,
                                 .tenant = tl[(size_t)(rnd() * (double)tenants) % tenants].name,
                                 .gpus = g,
                                 .cpus_per_gpu = 2,
                                 .time_limit_s = 600 + (int64_t)(rnd() * 86400),
                                 .submit_time = t0 - 100};
        if (jz_sched_submit(s, &j, t0 - 100, &err))
            fail("submit", &err);
        queued += g;
    }
    if (jz_sched_decide(s, t0 - 50, JZ_SCHED_FULL, &d, &err))
        fail("fill", &err);
    /* Room for the fill's jobs and whatever the incremental decisions start. */
    size_t running_cap = d.count + incr * 64;
    uint64_t *running = malloc(running_cap * sizeof(uint64_t));
    if (!running)
        return 1;
    size_t nrunning = 0;
    for (size_t i = 0; i < d.count; i++)
        if (d.items[i].action == JZ_SCHED_START)
            running[nrunning++] = d.items[i].job_id;
    jz_sched_decisions_clear(&d);
    /* Anything left of the fill keeps waiting; count it with the waiting jobs. */
    struct jz_sched_stats st0, st1;
    jz_sched_stats_get(s, &st0);
    struct mallinfo2 m0 = mallinfo2();
    size_t first_pending = id;
    for (size_t i = 0; i < pending; i++) {
        struct jz_sched_job j = {.id = id++,
                                 .tenant = tl[(size_t)(rnd() * (double)tenants) % tenants].name,
                                 .gpus = size_of(),
                                 .cpus_per_gpu = 2,
                                 .time_limit_s = 60 + (int64_t)(rnd() * 86400),
                                 .preemptible = rnd() < 0.2,
                                 .submit_time = t0 - (int64_t)(rnd() * 86400)};
        /* Drawn only when asked, so that the default run stays the same workload. */
        if (gang_fraction > 0 && rnd() < gang_fraction)
            j.nodes = 2 + (unsigned)(rnd() * 7) % 7;
        if (jz_sched_submit(s, &j, t0, &err))
            fail("submit", &err);
    }
    struct mallinfo2 m1 = mallinfo2();
    jz_sched_stats_get(s, &st1);
    double bytes_per_job = (double)(st1.bytes - st0.bytes) / (double)pending;
    size_t pending_at_pass = st1.pending, running_at_pass = st1.running,
           busy_at_pass = st1.gpus_busy;
    double heap_per_job = (double)(m1.uordblks - m0.uordblks) / (double)pending;

    /* Full passes: each is repeated after undoing what it started (the started jobs end and
     * identical ones are resubmitted), so every repetition sees the same amount of work. */
    double *full = calloc(reps, sizeof(double)), *full_cpu = calloc(reps, sizeof(double));
    size_t full_starts = 0;
    for (size_t r = 0; r < reps; r++) {
        double a = now_ms(), ac = cpu_ms();
        if (jz_sched_decide(s, t0 + (int64_t)r, JZ_SCHED_FULL, &d, &err))
            fail("full pass", &err);
        full[r] = now_ms() - a;
        full_cpu[r] = cpu_ms() - ac;
        full_starts = d.count;
        for (size_t i = 0; i < d.count; i++) {
            if (d.items[i].action != JZ_SCHED_START)
                continue;
            const struct jz_sched_decision *x = &d.items[i];
            if (jz_sched_job_ended(s, x->job_id, t0 + (int64_t)r, true, &err))
                fail("end", &err);
            struct jz_sched_job j = {.id = id++,
                                     .tenant = "tenant1",
                                     .gpus = (unsigned)x->parts[0].place.gpu_count,
                                     .nodes = (unsigned)x->part_count,
                                     .cpus_per_gpu = 2,
                                     .time_limit_s = 3600,
                                     .submit_time = t0};
            if (jz_sched_submit(s, &j, t0, &err))
                fail("resubmit", &err);
        }
        jz_sched_decisions_clear(&d);
    }
    qsort(full, reps, sizeof(double), cmp_double);
    qsort(full_cpu, reps, sizeof(double), cmp_double);

    /* Incremental: one running job ends, then one decision. */
    double *inc = calloc(incr, sizeof(double)), *inc_cpu = calloc(incr, sizeof(double));
    size_t inc_starts = 0;
    size_t ninc = 0;
    for (size_t i = 0; i < incr && nrunning > 0; i++, ninc++) {
        size_t k = (size_t)(rnd() * (double)nrunning) % nrunning;
        uint64_t victim = running[k];
        running[k] = running[--nrunning];
        int64_t now = t0 + 100 + (int64_t)i;
        double a = now_ms(), ac = cpu_ms();
        if (jz_sched_job_ended(s, victim, now, true, &err))
            fail("end", &err);
        if (jz_sched_decide(s, now, 0, &d, &err))
            fail("decide", &err);
        inc[i] = now_ms() - a;
        inc_cpu[i] = cpu_ms() - ac;
        inc_starts += d.count;
        for (size_t q = 0; q < d.count; q++)
            if (d.items[q].action == JZ_SCHED_START && nrunning < running_cap)
                running[nrunning++] = d.items[q].job_id;
        jz_sched_decisions_clear(&d);
    }
    qsort(inc, ninc, sizeof(double), cmp_double);
    qsort(inc_cpu, ninc, sizeof(double), cmp_double);
    jz_sched_stats_get(s, &st1);
    printf("{\"nodes\": %zu, \"gpus_per_node\": %zu, \"pending_jobs\": %zu, "
           "\"running_jobs\": %zu, \"gpus_busy\": %zu, \"full_pass_ms\": %.3f, "
           "\"full_pass_ms_min\": %.3f, \"full_pass_cpu_ms\": %.3f, \"full_pass_starts\": %zu, "
           "\"incremental_ms\": %.4f, \"incremental_p99_ms\": %.4f, "
           "\"incremental_cpu_ms\": %.4f, \"incremental_cpu_p99_ms\": %.4f, "
           "\"incremental_starts\": %zu, "
           "\"bytes_per_pending_job\": %.0f, \"heap_bytes_per_pending_job\": %.0f, "
           "\"first_pending_id\": %zu, \"gang_fraction\": %.3f}\n",
           nodes, jz_topo_gpu_count(topo), pending_at_pass, running_at_pass, busy_at_pass,
           full[reps / 2], full[0], full_cpu[reps / 2], full_starts, inc[ninc / 2],
           inc[(size_t)(0.99 * (double)(ninc - 1))], inc_cpu[ninc / 2],
           inc_cpu[(size_t)(0.99 * (double)(ninc - 1))], inc_starts, bytes_per_job, heap_per_job,
           first_pending, gang_fraction);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
    jz_topo_destroy(topo);
    free(tl);
    free(running);
    free(full);
    free(full_cpu);
    free(inc);
    free(inc_cpu);
    return 0;
}
