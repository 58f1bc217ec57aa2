/* Randomized check of jz_sched_reconfigure against the strongest reference there is: a scheduler
 * created with the new configuration and driven through the same events. Each round draws two
 * policies A and B (weights, orders, classes, tenants, quotas, backfill settings), builds
 * "live" with A and "fresh" with B, fills a cluster with running jobs, queues waiting and held
 * ones, lets both decide under their own policy, ends some jobs, reconfigures live to B, and
 * requires identical decisions (jobs, nodes, GPUs, cores) then and after more jobs end. Every
 * other round has preemptible jobs, and then PREEMPT decisions are compared too (those rounds
 * skip the first decisions, which could preempt different jobs under A and B).
 *
 * The scenario keeps out what legitimately differs with history: the waiting jobs have not run
 * (no attained service), the cluster is full until the policies meet (the first decisions start
 * nothing), usage starts when the policies' half-lives cannot tell apart, every tenant has jobs
 * (fair share counts every known tenant's weight), and no job is larger than a quota (live
 * would set such a job aside one decision later than fresh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

#define ROUNDS 300
#define NODES 6
#define TENANTS 5
#define MAXJOBS 96
#define T0 100000      /* running jobs start; both decide under their own policy */
#define T1 (T0 + 400)  /* some end */
#define T2 (T0 + 900)  /* live takes B; both decide */
#define T3 (T0 + 1300) /* more end; both decide again */

static struct jz_topo *topo[2]; /* 8x T4, 4x H100 */
static uint64_t seed = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return (unsigned)(seed % n);
}

static int setup(void **state)
{
    struct jz_error err = {0};
    if (jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES "/topologies/aws-g4dn-metal-8xT4.xml", &topo[0],
                               &err) ||
        jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES "/topologies/dell-xe8640-4xH100-snc4.xml", &topo[1],
                               &err))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    jz_topo_destroy(topo[0]);
    jz_topo_destroy(topo[1]);
    return 0;
}

static const char *tenant_names[TENANTS] = {"t0", "t1", "t2", "t3", "t4"};
static const char *job_classes[] = {"c0", "c1", "c2", "normal"};

/* One random policy, with its arrays. only: a class that exists in this policy alone. */
struct policy {
    struct jz_sched_config cfg;
    struct jz_sched_class classes[5];
    struct jz_sched_tenant tenants[TENANTS];
    struct jz_sched_site_quota quotas[TENANTS];
};

static double pick(double lo, double hi)
{
    return lo + (hi - lo) * rnd(1001) / 1000.0;
}

static void policy_draw(struct policy *p, const char *only)
{
    memset(p, 0, sizeof(*p));
    struct jz_sched_config *c = &p->cfg;
    jz_sched_config_defaults(c);
    c->weight_fairshare = rnd(4) == 0 ? 0 : pick(1000, 50000);
    c->weight_age = pick(100, 20000); /* > 0: distinct submit times never tie */
    c->age_scale_s = pick(600, 86400);
    c->weight_class = pick(0, 200000);
    c->weight_size = pick(0, 5000);
    c->weight_las = pick(0, 8000);
    c->weight_shortest = pick(0, 10000);
    c->default_weight = pick(0.2, 4);
    c->half_life_s = pick(600, 14 * 86400);
    c->backfill_depth = 1 + rnd(16);
    c->backfill_max_tests = 8 + rnd(400);
    c->default_order = rnd(4);
    c->starve_after_s = rnd(2) ? 0 : 86400;
    c->las_band_count = 1 + rnd(2);
    c->las_thresholds[0] = pick(600, 7200);
    c->las_thresholds[1] = c->las_thresholds[0] + pick(600, 36000);
    size_t n = 0;
    for (int k = 0; k < 3; k++) {
        struct jz_sched_class *x = &p->classes[n++];
        snprintf(x->name, sizeof(x->name), "c%d", k);
        x->rank = rnd(101);
        x->order = rnd(4);
        x->can_preempt = rnd(2);
    }
    if (rnd(2)) { /* the default class listed, or made by the scheduler (rank 50) */
        struct jz_sched_class *x = &p->classes[n++];
        snprintf(x->name, sizeof(x->name), "normal");
        x->rank = rnd(101);
        x->order = rnd(4);
    }
    struct jz_sched_class *x = &p->classes[n++];
    snprintf(x->name, sizeof(x->name), "%s", only);
    x->rank = rnd(101);
    c->classes = p->classes;
    c->class_count = n;
    size_t nt = 0;
    for (int t = 0; t < TENANTS; t++) {
        if (rnd(3) == 0)
            continue; /* not configured: the default weight */
        struct jz_sched_tenant *y = &p->tenants[nt];
        snprintf(y->name, sizeof(y->name), "%s", tenant_names[t]);
        y->weight = pick(0.2, 5);
        y->max_gpus = rnd(2) ? 0 : 16 + rnd(24); /* never below a job's size */
        snprintf(y->class_name, sizeof(y->class_name), "c%u", rnd(3));
        if (rnd(3) == 0) {
            snprintf(p->quotas[nt].site, sizeof(p->quotas[nt].site), "east");
            p->quotas[nt].max_gpus = rnd(17);
            y->site_quotas = &p->quotas[nt];
            y->site_quota_count = 1;
        }
        nt++;
    }
    c->tenants = p->tenants;
    c->tenant_count = nt;
}

/* The events both schedulers see. */
struct running {
    struct jz_sched_job job;
    size_t node, gpus[8], cores[16];
};

struct scenario {
    struct running run[64];
    size_t nrun;
    struct jz_sched_job wait[MAXJOBS];
    uint64_t deps[MAXJOBS];
    size_t nwait;
};

/* preemptible: running and waiting jobs may be preempted (then the first decisions, under
 * different policies, could preempt different jobs: those rounds skip them). */
static void scenario_draw(struct scenario *sc, bool preemptible)
{
    memset(sc, 0, sizeof(*sc));
    uint64_t id = 1;
    /* Every GPU busy: chunks of each node's GPUs, one running job each. */
    for (size_t n = 0; n < NODES; n++) {
        unsigned gpus = n % 2 ? 4 : 8, used = 0, core = 0;
        while (used < gpus) {
            struct running *r = &sc->run[sc->nrun++];
            unsigned k = 1 + rnd(gpus - used);
            unsigned cpg = rnd(3);
            r->job = (struct jz_sched_job){.id = id++,
                                           .tenant = tenant_names[rnd(TENANTS)],
                                           .class_name = job_classes[rnd(4)],
                                           .gpus = k,
                                           .cpus_per_gpu = cpg,
                                           .time_limit_s = 600 + rnd(7200),
                                           .preemptible = preemptible && rnd(2),
                                           .submit_time = T0 - 5000 + (int64_t)id};
            r->node = n;
            for (unsigned g = 0; g < k; g++)
                r->gpus[g] = used + g;
            for (unsigned c = 0; c < k * cpg; c++)
                r->cores[c] = core++;
            used += k;
        }
    }
    /* Waiting jobs, every tenant among them; some held by a running job. */
    sc->nwait = 20 + rnd(MAXJOBS - 20);
    for (size_t i = 0; i < sc->nwait; i++) {
        struct jz_sched_job *j = &sc->wait[i];
        bool gang = rnd(8) == 0;
        *j = (struct jz_sched_job){.id = id++,
                                   .tenant = tenant_names[i < TENANTS ? i : rnd(TENANTS)],
                                   .class_name = job_classes[rnd(4)],
                                   .gpus = gang ? 1 + rnd(4) : 1 + rnd(rnd(3) ? 4 : 8),
                                   .cpus_per_gpu = rnd(3),
                                   .time_limit_s = 60 + rnd(86400),
                                   .submit_time = T0 - 1000 + (int64_t)i * 10 + rnd(10),
                                   .preemptible = preemptible && rnd(2),
                                   .nodes = gang ? 2 : 0};
        if (rnd(6) == 0) {
            sc->deps[i] = sc->run[rnd((unsigned)sc->nrun)].job.id;
            j->depends_on = &sc->deps[i];
            j->depends_count = 1;
        }
    }
}

static void add_nodes(struct jz_sched *s)
{
    struct jz_error err = {0};
    for (size_t n = 0; n < NODES; n++) {
        char name[16];
        snprintf(name, sizeof(name), "n%zu", n);
        struct jz_sched_node_spec ns = {
            .name = name, .topo = topo[n % 2], .site = n < NODES / 2 ? "east" : "west"};
        assert_int_equal(jz_sched_node_add(s, &ns, NULL, &err), 0);
    }
}

static void load(struct jz_sched *s, const struct scenario *sc)
{
    struct jz_error err = {0};
    add_nodes(s);
    for (size_t i = 0; i < sc->nrun; i++) {
        const struct running *r = &sc->run[i];
        struct jz_sched_part_spec part = {.node = r->node,
                                          .gpus = r->gpus,
                                          .gpu_count = r->job.gpus,
                                          .cores = r->cores,
                                          .core_count = r->job.gpus * r->job.cpus_per_gpu};
        assert_int_equal(jz_sched_adopt_running(s, &r->job, &part, 1, T0, &err), 0);
    }
    for (size_t i = 0; i < sc->nwait; i++)
        assert_int_equal(jz_sched_submit(s, &sc->wait[i], sc->wait[i].submit_time, &err), 0);
}

static void decide(struct jz_sched *s, int64_t now, unsigned flags, struct jz_sched_decisions *d)
{
    struct jz_error err = {0};
    jz_sched_decisions_clear(d);
    assert_int_equal(jz_sched_decide(s, now, flags, d, &err), 0);
}

static void assert_same(const struct jz_sched_decisions *x, const struct jz_sched_decisions *y,
                        int round, const char *when)
{
    if (x->count != y->count)
        fail_msg("round %d, %s: %zu decisions live, %zu fresh", round, when, x->count, y->count);
    for (size_t i = 0; i < x->count; i++) {
        const struct jz_sched_decision *a = &x->items[i], *b = &y->items[i];
        if (a->action != b->action || a->job_id != b->job_id || a->part_count != b->part_count)
            fail_msg("round %d, %s: decision %zu: job %llu live, %llu fresh", round, when, i,
                     (unsigned long long)a->job_id, (unsigned long long)b->job_id);
        for (size_t p = 0; p < a->part_count; p++) {
            const struct jz_place_result *u = &a->parts[p].place, *v = &b->parts[p].place;
            assert_int_equal(a->parts[p].node, b->parts[p].node);
            assert_int_equal(u->gpu_count, v->gpu_count);
            assert_int_equal(u->core_count, v->core_count);
            assert_memory_equal(u->gpus, v->gpus, u->gpu_count * sizeof(*u->gpus));
            assert_memory_equal(u->cores, v->cores, u->core_count * sizeof(*u->cores));
        }
    }
}

/* Ends the same running jobs in both: each with probability 1/den. */
static void end_some(struct jz_sched *live, struct jz_sched *fresh, uint64_t max_id, int64_t now,
                     unsigned den)
{
    struct jz_error err = {0};
    for (uint64_t id = 1; id < max_id; id++) {
        struct jz_sched_job_info a, b;
        if (jz_sched_job_info(live, id, &a, &err) != 0) {
            assert_int_not_equal(jz_sched_job_info(fresh, id, &b, &err), 0);
            continue;
        }
        assert_int_equal(jz_sched_job_info(fresh, id, &b, &err), 0);
        assert_int_equal(a.state, b.state);
        if (a.state != JZ_SCHED_JOB_RUNNING || rnd(den) != 0)
            continue;
        bool ok = rnd(5) != 0;
        assert_int_equal(jz_sched_job_ended(live, id, now, ok, &err), 0);
        assert_int_equal(jz_sched_job_ended(fresh, id, now, ok, &err), 0);
    }
}

static void test_reconfigured_decides_like_fresh(void **state)
{
    struct policy a, b;
    struct scenario sc;
    struct jz_sched_decisions dl, df;
    jz_sched_decisions_init(&dl);
    jz_sched_decisions_init(&df);
    struct jz_error err = {0};
    size_t started = 0, preempts = 0;
    for (int round = 0; round < ROUNDS; round++) {
        policy_draw(&a, "only-a");
        policy_draw(&b, "only-b");
        bool preempt = round % 2;
        scenario_draw(&sc, preempt);
        struct jz_sched *live, *fresh;
        assert_int_equal(jz_sched_create(&a.cfg, &live, &err), 0);
        assert_int_equal(jz_sched_create(&b.cfg, &fresh, &err), 0);
        load(live, &sc);
        load(fresh, &sc);
        uint64_t max_id = sc.wait[sc.nwait - 1].id + 1;
        /* Each under its own policy, on a full cluster: nothing starts, but live's queues,
         * heads and fair share are worked by policy A. */
        if (!preempt) {
            decide(live, T0, JZ_SCHED_FULL, &dl);
            decide(fresh, T0, JZ_SCHED_FULL, &df);
            assert_int_equal(dl.count, 0);
            assert_int_equal(df.count, 0);
        }
        end_some(live, fresh, max_id, T1, 3);
        assert_int_equal(jz_sched_reconfigure(live, &b.cfg, &err), 0);
        decide(live, T2, JZ_SCHED_FULL, &dl);
        decide(fresh, T2, JZ_SCHED_FULL, &df);
        assert_same(&dl, &df, round, "after reconfigure");
        started += dl.count;
        for (size_t i = 0; i < dl.count; i++)
            preempts += dl.items[i].action == JZ_SCHED_PREEMPT;
        end_some(live, fresh, max_id, T3, 2);
        decide(live, T3, 0, &dl);
        decide(fresh, T3, 0, &df);
        assert_same(&dl, &df, round, "one decision later");
        started += dl.count;
        jz_sched_destroy(live);
        jz_sched_destroy(fresh);
    }
    /* The comparison compared something. */
    print_message("%zu decisions (%zu preemptions) compared over %d rounds\n", started, preempts,
                  ROUNDS);
    assert_true(started > ROUNDS);
    assert_true(preempts > 0);
    jz_sched_decisions_free(&dl);
    jz_sched_decisions_free(&df);
}

/* Reconfiguring back and forth never loses a job or a GPU: counts and node use stay whole. */
static void test_round_trips_keep_state(void **state)
{
    struct policy a, b;
    struct scenario sc;
    struct jz_error err = {0};
    for (int round = 0; round < 50; round++) {
        policy_draw(&a, "only-a");
        policy_draw(&b, "only-b");
        scenario_draw(&sc, round % 2);
        struct jz_sched *s;
        assert_int_equal(jz_sched_create(&a.cfg, &s, &err), 0);
        load(s, &sc);
        struct jz_sched_stats before, after;
        jz_sched_stats_get(s, &before);
        for (int k = 0; k < 4; k++)
            assert_int_equal(jz_sched_reconfigure(s, k % 2 ? &a.cfg : &b.cfg, &err), 0);
        jz_sched_stats_get(s, &after);
        assert_int_equal(after.pending, before.pending);
        assert_int_equal(after.held, before.held);
        assert_int_equal(after.running, before.running);
        assert_int_equal(after.gpus_busy, before.gpus_busy);
        jz_sched_destroy(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconfigured_decides_like_fresh),
        cmocka_unit_test(test_round_trips_keep_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
