/* Golden decisions for many nodes: gangs (all-or-nothing starts, one site and one switch
 * preferred, EASY backfill around a gang at the head, preemption for a gang without the freed
 * GPUs being refilled), nodes removed and added, per-site quotas, could-ever-fit (cores
 * included) and adopting a running gang after a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

static struct jz_topo *g4dn; /* 8x T4, 2 sockets, 48 cores */
static struct jz_topo *dgx2; /* 16x V100 on NVSwitch planes, 4 cores in the export */

static int setup(void **state)
{
    struct jz_error err = {0};
    if (jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES "/topologies/aws-g4dn-metal-8xT4.xml", &g4dn, &err))
        return -1;
    return jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES "/topologies/nvidia-dgx2-16xV100-nvswitch.xml",
                                  &dgx2, &err);
}

static int teardown(void **state)
{
    jz_topo_destroy(g4dn);
    jz_topo_destroy(dgx2);
    return 0;
}

static struct jz_sched *make(const struct jz_sched_config *cfg)
{
    struct jz_sched *s;
    struct jz_error err = {0};
    struct jz_sched_config d;
    jz_sched_config_defaults(&d);
    if (cfg)
        d = *cfg;
    /* These golden tests check one mechanism each under first-come order: the default class's
     * service order (LAS, shortest first) is tested in test_order.c. */
    d.default_order = 0;
    assert_int_equal(jz_sched_create(&d, &s, &err), 0);
    return s;
}

/* A scheduler with these priority classes and a 30 s preemption grace. */
static struct jz_sched *make_preempting(struct jz_sched_class *cls, size_t n)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.classes = cls;
    cfg.class_count = n;
    cfg.preempt_grace_s = 30;
    return make(&cfg);
}

static size_t node(struct jz_sched *s, const char *name, const struct jz_topo *t, const char *site,
                   const char *sw)
{
    struct jz_sched_node_spec ns = {.name = name, .topo = t, .site = site, .switch_name = sw};
    struct jz_error err = {0};
    size_t idx = SIZE_MAX;
    assert_int_equal(jz_sched_node_add(s, &ns, &idx, &err), 0);
    return idx;
}

static struct jz_sched_job job(uint64_t id, const char *tenant, unsigned gpus, unsigned nodes,
                               int64_t limit, int64_t now)
{
    return (struct jz_sched_job){.id = id,
                                 .tenant = tenant,
                                 .gpus = gpus,
                                 .nodes = nodes,
                                 .cpus_per_gpu = 1,
                                 .time_limit_s = limit,
                                 .submit_time = now};
}

static void submit_job(struct jz_sched *s, const struct jz_sched_job *j, int64_t now)
{
    struct jz_error err = {0};
    assert_int_equal(jz_sched_submit(s, j, now, &err), 0);
}

static void submit(struct jz_sched *s, uint64_t id, const char *tenant, unsigned gpus,
                   unsigned nodes, int64_t limit, int64_t now)
{
    struct jz_sched_job j = job(id, tenant, gpus, nodes, limit, now);
    submit_job(s, &j, now);
}

static size_t decide(struct jz_sched *s, int64_t now, unsigned flags, struct jz_sched_decisions *d)
{
    struct jz_error err = {0};
    jz_sched_decisions_clear(d);
    assert_int_equal(jz_sched_decide(s, now, flags, d, &err), 0);
    for (size_t i = 0; i < d->count; i++)
        jz_sched_decision_explain(&d->items[i]); /* the sentences these tests read */
    return d->count;
}

static const struct jz_sched_decision *find(const struct jz_sched_decisions *d, uint64_t id)
{
    for (size_t i = 0; i < d->count; i++)
        if (d->items[i].job_id == id)
            return &d->items[i];
    return NULL;
}

/* The decision about id, which must be there. */
static const struct jz_sched_decision *get(const struct jz_sched_decisions *d, uint64_t id)
{
    const struct jz_sched_decision *x = find(d, id);
    if (!x) {
        fail_msg("no decision about job %llu", (unsigned long long)id);
        abort(); /* not reached: fail_msg ends the test */
    }
    return x;
}

static struct jz_sched_job_info info(struct jz_sched *s, uint64_t id)
{
    struct jz_sched_job_info in;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_info(s, id, &in, &err), 0);
    return in;
}

static void ended(struct jz_sched *s, uint64_t id, int64_t now)
{
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_ended(s, id, now, true, &err), 0);
}

static unsigned free_gpus(struct jz_sched *s, size_t n)
{
    struct jz_sched_node_info ni;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_node_info(s, n, &ni, &err), 0);
    return ni.free_gpus;
}

/* Every part of a START: its own node, the GPUs asked, one core per GPU local to it. */
static void check_parts(const struct jz_sched_decision *x, size_t parts, unsigned gpus)
{
    assert_non_null(x);
    assert_int_equal(x->action, JZ_SCHED_START);
    assert_int_equal(x->part_count, parts);
    for (size_t p = 0; p < x->part_count; p++) {
        assert_non_null(x->parts[p].node_name);
        for (size_t q = 0; q < p; q++)
            assert_true(x->parts[q].node != x->parts[p].node);
        assert_true(x->parts[p].place.fits);
        assert_int_equal(x->parts[p].place.gpu_count, gpus);
        assert_int_equal(x->parts[p].place.core_count, gpus);
    }
}

static void test_gang_all_or_nothing(void **state)
{
    struct jz_sched *s = make(NULL);
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "n%d", i);
        node(s, name, g4dn, NULL, NULL);
    }
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, "a", 6, 0, 100, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    /* A gang of 3 x 6 GPUs: one node has only 2 free, so no part starts. */
    submit(s, 2, "b", 6, 3, 1000, 1);
    /* A single-node job of the same size and tenant, queued behind the gang, is not blocked
     * (and, ending by 52, does not delay the gang's start at 100). */
    submit(s, 3, "b", 6, 0, 50, 2);
    assert_int_equal(decide(s, 2, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 3));
    assert_null(find(&d, 2));
    struct jz_sched_job_info g = info(s, 2);
    assert_int_equal(g.state, JZ_SCHED_JOB_PENDING);
    assert_int_equal(g.reason, JZ_SCHED_REASON_RESOURCES);
    assert_int_equal(g.part_count, 0);
    assert_non_null(strstr(g.reason_text, "Needs 3 nodes with 6 free GPUs each"));
    assert_int_equal(g.est_start, 100);
    ended(s, 1, 40);
    assert_int_equal(decide(s, 40, 0, &d), 0); /* job 3 still holds 6 GPUs on a node */
    ended(s, 3, 52);
    assert_int_equal(decide(s, 52, 0, &d), 1);
    const struct jz_sched_decision *x = get(&d, 2);
    check_parts(x, 3, 6);
    assert_non_null(strstr(x->why, "All 3 parts start together"));
    g = info(s, 2);
    assert_int_equal(g.state, JZ_SCHED_JOB_RUNNING);
    assert_int_equal(g.part_count, 3);
    assert_int_equal(g.node, x->parts[0].node);
    assert_non_null(strstr(g.reason_text, "and 2 other nodes"));
    for (size_t n = 0; n < 3; n++)
        assert_int_equal(free_gpus(s, n), 2);
    /* Every part counts: 18 GPUs. */
    struct jz_sched_stats st;
    jz_sched_stats_get(s, &st);
    assert_int_equal(st.gpus_busy, 18);
    assert_int_equal(st.running, 1);
    /* Ending it frees every part. */
    ended(s, 2, 60);
    for (size_t n = 0; n < 3; n++)
        assert_int_equal(free_gpus(s, n), 8);
    double u;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_tenant_usage(s, "b", 60, &u, NULL, &err), 0);
    assert_true(u > 440); /* 18 GPUs for 8 s, and 6 for 50 s */
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_gang_site_and_switch(void **state)
{
    struct jz_sched *s = make(NULL);
    size_t r0 = node(s, "r0", g4dn, "rabat", "rs1");
    size_t r1 = node(s, "r1", g4dn, "rabat", "rs1");
    size_t c0 = node(s, "c0", g4dn, "casa", "cs1");
    size_t c1 = node(s, "c1", g4dn, "casa", "cs1");
    size_t c2 = node(s, "c2", g4dn, "casa", "cs2");
    size_t c3 = node(s, "c3", g4dn, "casa", NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_sched_node_info ni;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_node_info(s, c3, &ni, &err), 0);
    assert_string_equal(ni.site, "casa");
    /* Three nodes: only casa has them. Its whole switch group cs1 is used, plus one more. */
    submit(s, 1, "a", 2, 3, 100, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    const struct jz_sched_decision *x = get(&d, 1);
    check_parts(x, 3, 2);
    bool has_c0 = false, has_c1 = false;
    for (size_t p = 0; p < 3; p++) {
        size_t n = x->parts[p].node;
        assert_true(n == c0 || n == c1 || n == c2 || n == c3);
        has_c0 |= n == c0;
        has_c1 |= n == c1;
    }
    assert_true(has_c0 && has_c1);
    assert_non_null(strstr(x->why, "in 1 site and 2 switch groups"));
    ended(s, 1, 10);
    /* Two whole nodes, with one GPU busy in rabat: casa, and the two nodes under one switch
     * rather than c2 and c3 (two groups). */
    submit(s, 2, "b", 1, 0, 1000, 10);
    assert_int_equal(decide(s, 10, 0, &d), 1);
    size_t small = get(&d, 2)->parts[0].node;
    assert_true(small == r0 || small == r1 || small == c0 || small == c1 || small == c2 ||
                small == c3);
    /* Put the small job in rabat whatever best fit chose: end it and adopt it on r0. */
    ended(s, 2, 11);
    struct jz_sched_job one = job(2, "b", 1, 0, 1000, 11);
    size_t g0 = 0, c_0 = 0;
    struct jz_sched_part_spec part = {
        .node = r0, .gpus = &g0, .gpu_count = 1, .cores = &c_0, .core_count = 1};
    assert_int_equal(jz_sched_adopt_running(s, &one, &part, 1, 11, &err), 0);
    submit(s, 3, "a", 8, 2, 100, 12);
    assert_int_equal(decide(s, 12, 0, &d), 1);
    x = get(&d, 3);
    check_parts(x, 2, 8);
    assert_true((x->parts[0].node == c0 && x->parts[1].node == c1) ||
                (x->parts[0].node == c1 && x->parts[1].node == c0));
    assert_non_null(strstr(x->why, "in 1 site and 1 switch group"));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);

    /* Best fit inside one switch group: with 4 GPUs busy on b0, a gang of 2 x 4 takes b0 and
     * one more node, leaving a whole node free. */
    s = make(NULL);
    size_t b0 = node(s, "b0", g4dn, "x", "sw");
    node(s, "b1", g4dn, "x", "sw");
    node(s, "b2", g4dn, "x", "sw");
    size_t gpus[] = {0, 1, 2, 3}, cores[] = {0, 1, 2, 3};
    struct jz_sched_job four = job(1, "b", 4, 0, 1000, 0);
    struct jz_sched_part_spec p4 = {
        .node = b0, .gpus = gpus, .gpu_count = 4, .cores = cores, .core_count = 4};
    assert_int_equal(jz_sched_adopt_running(s, &four, &p4, 1, 0, &err), 0);
    submit(s, 2, "a", 4, 2, 100, 1);
    assert_int_equal(decide(s, 1, 0, &d), 1);
    x = get(&d, 2);
    check_parts(x, 2, 4);
    assert_true(x->parts[0].node == b0 || x->parts[1].node == b0);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_gang_head_and_backfill(void **state)
{
    struct jz_sched *s = make(NULL);
    node(s, "n0", g4dn, NULL, NULL);
    node(s, "n1", g4dn, NULL, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, "x", 8, 0, 100, 0);
    submit(s, 2, "x", 4, 0, 200, 0);
    assert_int_equal(decide(s, 0, 0, &d), 2);
    /* The gang needs both nodes whole: both are free by 200. */
    submit(s, 10, "y", 8, 2, 1000, 1);
    submit(s, 11, "z", 1, 0, 50, 1);  /* ends by 51: may backfill */
    submit(s, 12, "z", 1, 0, 500, 1); /* would hold a GPU past 200: must not */
    assert_int_equal(decide(s, 1, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 11));
    assert_non_null(strstr(get(&d, 11)->why, "Backfilled"));
    struct jz_sched_job_info g = info(s, 10);
    assert_int_equal(g.reason, JZ_SCHED_REASON_RESOURCES);
    assert_int_equal(g.est_start, 200);
    struct jz_sched_job_info w = info(s, 12);
    assert_int_equal(w.reason, JZ_SCHED_REASON_PRIORITY);
    assert_non_null(strstr(w.reason_text, "job 10"));
    /* Job 1 ends early: its node is free, yet the long small jobs keep off it while short
     * ones may use it. Small jobs keep arriving: the gang is not starved by them. */
    ended(s, 11, 51);
    ended(s, 1, 100);
    uint64_t id = 20;
    for (int64_t t = 100; t < 200; t += 10) {
        submit(s, id++, "z", 1, 0, 500, t);
        if (t == 120)
            submit(s, 13, "z", 1, 0, 50, t); /* ends by 170: backfills */
        if (t == 170)
            ended(s, 13, t);
        size_t n = decide(s, t, 0, &d);
        assert_int_equal(n, t == 120 ? 1 : 0);
        if (t == 120)
            assert_non_null(find(&d, 13));
        assert_int_equal(info(s, 10).est_start, 200);
    }
    ended(s, 2, 200);
    assert_int_equal(decide(s, 200, 0, &d), 1);
    check_parts(get(&d, 10), 2, 8);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_gang_preemption(void **state)
{
    struct jz_sched_class cls[] = {{.name = "low", .rank = 10},
                                   {.name = "mid", .rank = 50},
                                   {.name = "high", .rank = 90, .can_preempt = true},
                                   {.name = "top", .rank = 95}};
    struct jz_sched *s = make_preempting(cls, 4);
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "n%d", i);
        node(s, name, g4dn, NULL, NULL);
    }
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    struct jz_sched_job l1 = job(1, "lab", 8, 0, 86400, 0), l2 = job(2, "lab", 8, 0, 86400, 0),
                        m0 = job(3, "lab", 8, 0, 1000, 0);
    l1.class_name = l2.class_name = "low";
    l1.preemptible = l2.preemptible = true;
    m0.class_name = "mid";
    submit_job(s, &l1, 0);
    submit_job(s, &l2, 0);
    submit_job(s, &m0, 0);
    assert_int_equal(decide(s, 0, 0, &d), 3);
    size_t mnode = get(&d, 3)->parts[0].node;
    /* A higher job that cannot preempt waits at the head (for job 3's node), so the gang below
     * it gets no head hold: only its claims protect what its victims free. */
    struct jz_sched_job top = job(9, "boss", 8, 0, 100, 100);
    top.class_name = "top";
    submit_job(s, &top, 100);
    struct jz_sched_job g = job(10, "hospital", 8, 2, 3600, 100);
    g.class_name = "high";
    submit_job(s, &g, 100);
    assert_int_equal(decide(s, 100, 0, &d), 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(d.items[i].action, JZ_SCHED_PREEMPT);
        assert_int_equal(d.items[i].for_job, 10);
        assert_null(d.items[i].parts);
        assert_true(d.items[i].job_id == 1 || d.items[i].job_id == 2);
    }
    assert_int_equal(info(s, 9).reason, JZ_SCHED_REASON_RESOURCES);
    struct jz_sched_job_info gi = info(s, 10);
    assert_int_equal(gi.est_start, 130);
    assert_non_null(strstr(gi.reason_text, "Waiting for 2 preempted jobs to stop"));
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_PREEMPTING);
    assert_int_equal(decide(s, 110, 0, &d), 0); /* no second preemption meanwhile */
    /* Job 1 stops: its node is free, but neither it nor another low job may refill it. */
    assert_int_equal(jz_sched_job_requeue(s, 1, 125, &err), 0);
    struct jz_sched_job l3 = job(4, "lab", 1, 0, 100, 125);
    l3.class_name = "low";
    submit_job(s, &l3, 125);
    assert_int_equal(decide(s, 125, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_PENDING);
    /* One that ends before the gang can start delays nothing: it may. */
    struct jz_sched_job quick = job(5, "lab", 1, 0, 2, 125);
    quick.class_name = "low";
    submit_job(s, &quick, 125);
    assert_int_equal(decide(s, 125, 0, &d), 1);
    assert_non_null(find(&d, 5));
    ended(s, 5, 127);
    assert_int_equal(jz_sched_job_requeue(s, 2, 130, &err), 0);
    assert_int_equal(decide(s, 130, 0, &d), 1);
    const struct jz_sched_decision *x = get(&d, 10);
    check_parts(x, 2, 8);
    for (size_t p = 0; p < 2; p++)
        assert_true(x->parts[p].node != mnode);
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_PENDING);
    assert_int_equal(info(s, 4).state, JZ_SCHED_JOB_PENDING);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_preempt_abandon(void **state)
{
    /* The service decides not to stop a victim after all (its preemptor cannot pay): the victim
     * runs on as before, its preemptor (if still waiting) no longer counts it, its end is
     * expected at its limit again, and it can be chosen again later. */
    struct jz_sched_class cls[] = {{.name = "low", .rank = 10},
                                   {.name = "high", .rank = 90, .can_preempt = true}};
    struct jz_sched *s = make_preempting(cls, 2);
    node(s, "n0", g4dn, NULL, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    struct jz_sched_job l1 = job(1, "lab", 8, 0, 86400, 0);
    l1.class_name = "low";
    l1.preemptible = true;
    submit_job(s, &l1, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    assert_int_equal(jz_sched_preempt_abandon(s, 1, &err), JZ_EINVAL); /* not being preempted */
    struct jz_sched_job h = job(2, "hospital", 8, 0, 100, 100);
    h.class_name = "high";
    submit_job(s, &h, 100);
    assert_int_equal(decide(s, 100, 0, &d), 1);
    assert_int_equal(get(&d, 1)->action, JZ_SCHED_PREEMPT);
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_PREEMPTING);
    assert_non_null(strstr(info(s, 2).reason_text, "Waiting for 1 preempted job to stop"));
    /* Abandoned while its preemptor still waits: the preemptor no longer waits for it. */
    assert_int_equal(jz_sched_preempt_abandon(s, 1, &err), 0);
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_RUNNING);
    assert_null(strstr(info(s, 2).reason_text, "preempted job"));
    /* The service gives the preemptor back (its gate): the victim's end is its limit again. */
    assert_int_equal(jz_sched_job_ended(s, 2, 100, true, &err), 0);
    struct jz_sched_job w = job(3, "lab", 8, 0, 100, 100);
    w.class_name = "low";
    submit_job(s, &w, 100);
    assert_int_equal(decide(s, 100, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 3).est_start, 86400);
    /* A later preemptor may choose it again. */
    struct jz_sched_job h2 = job(4, "hospital", 8, 0, 100, 200);
    h2.class_name = "high";
    submit_job(s, &h2, 200);
    assert_int_equal(decide(s, 200, 0, &d), 1);
    assert_int_equal(get(&d, 1)->for_job, 4);
    assert_int_equal(jz_sched_job_requeue(s, 1, 230, &err), 0);
    assert_int_equal(decide(s, 230, 0, &d), 1);
    assert_non_null(find(&d, 4));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_node_remove(void **state)
{
    struct jz_sched *s = make(NULL);
    size_t n0 = node(s, "n0", g4dn, NULL, NULL);
    size_t n1 = node(s, "n1", g4dn, NULL, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, "a", 8, 0, 100, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    size_t busy = get(&d, 1)->parts[0].node, idle = busy == n0 ? n1 : n0;
    /* A gang of three: two nodes can never hold it. It does not block the tenant's queue. */
    submit(s, 2, "a", 2, 3, 100, 1);
    submit(s, 3, "a", 2, 0, 100, 1);
    assert_int_equal(decide(s, 1, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 3));
    struct jz_sched_job_info g = info(s, 2);
    assert_int_equal(g.reason, JZ_SCHED_REASON_NEVER);
    assert_string_equal(g.reason_text, "Only 2 nodes could hold a part, the job needs 3.");
    /* Removal: refused while something runs there, then done. */
    assert_int_equal(jz_sched_node_remove(s, busy, &err), JZ_EBUSY);
    ended(s, 3, 2);
    assert_int_equal(jz_sched_node_remove(s, idle, &err), 0);
    assert_int_equal(jz_sched_node_remove(s, idle, &err), JZ_ENOENT);
    assert_int_equal(jz_sched_node_set_up(s, idle, true, &err), JZ_ENOENT);
    struct jz_sched_node_info ni;
    assert_int_equal(jz_sched_node_info(s, idle, &ni, &err), 0);
    assert_true(ni.removed);
    assert_false(ni.up);
    assert_int_equal(ni.gpus, 0);
    struct jz_sched_stats st;
    jz_sched_stats_get(s, &st);
    assert_int_equal(st.nodes, 1);
    assert_int_equal(st.gpus_total, 8);
    /* Nothing goes to the removed node; a job needing two nodes' worth of GPUs now waits
     * "never" (one node left). */
    submit(s, 4, "b", 8, 0, 10, 3);
    assert_int_equal(decide(s, 3, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 4).reason, JZ_SCHED_REASON_RESOURCES);
    struct jz_sched_job two = job(5, "b", 1, 2, 10, 3);
    submit_job(s, &two, 3);
    assert_int_equal(decide(s, 3, 0, &d), 0);
    assert_int_equal(info(s, 5).reason, JZ_SCHED_REASON_NEVER);
    char why[JZ_SCHED_REASON_LEN];
    assert_false(jz_sched_could_ever_fit(s, &two, why, sizeof(why)));
    assert_string_equal(why, "only 1 node could hold a part, the job needs 2");
    /* The name comes back as a new node (a new index); both gangs are looked at again. */
    size_t n2 = node(s, jz_sched_node_name(s, idle), g4dn, NULL, NULL);
    assert_int_equal(n2, 2);
    assert_true(jz_sched_could_ever_fit(s, &two, NULL, 0));
    node(s, "n3", g4dn, NULL, NULL);
    ended(s, 1, 4);
    assert_int_equal(decide(s, 4, 0, &d), 2);
    assert_non_null(find(&d, 4));
    check_parts(get(&d, 5), 2, 1);
    assert_true(info(s, 2).reason != JZ_SCHED_REASON_NEVER);
    ended(s, 4, 5);
    ended(s, 5, 5);
    assert_int_equal(decide(s, 5, 0, &d), 1);
    check_parts(get(&d, 2), 3, 2);
    for (size_t p = 0; p < 3; p++)
        assert_true(get(&d, 2)->parts[p].node != idle);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_site_quotas(void **state)
{
    struct jz_sched_site_quota q[] = {{.site = "rabat", .max_gpus = 4}};
    struct jz_sched_tenant t = {
        .name = "acme", .weight = 1, .site_quotas = q, .site_quota_count = 1};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.tenants = &t;
    cfg.tenant_count = 1;
    struct jz_sched *s = make(&cfg);
    size_t r = node(s, "r0", g4dn, "rabat", NULL);
    size_t c = node(s, "c0", g4dn, "casa", NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    unsigned in_rabat = 0;
    for (uint64_t id = 1; id <= 3; id++) {
        submit(s, id, "acme", 4, 0, 100, (int64_t)id);
        assert_int_equal(decide(s, (int64_t)id, 0, &d), 1);
        if (get(&d, id)->parts[0].node == r)
            in_rabat += 4;
        assert_true(in_rabat <= 4);
    }
    assert_int_equal(in_rabat, 4);
    assert_int_equal(free_gpus(s, c), 0);
    assert_int_equal(free_gpus(s, r), 4);
    /* Rabat has room, but not for acme; casa is full. */
    submit(s, 4, "acme", 2, 0, 100, 4);
    assert_int_equal(decide(s, 4, JZ_SCHED_FULL, &d), 0);
    struct jz_sched_job_info in = info(s, 4);
    assert_int_equal(in.reason, JZ_SCHED_REASON_QUOTA);
    assert_non_null(strstr(in.reason_text, "quota of 4 GPUs in site rabat"));
    /* The quota is acme's: another tenant uses rabat. */
    submit(s, 5, "uni", 2, 0, 100, 5);
    assert_int_equal(decide(s, 5, 0, &d), 1);
    assert_int_equal(get(&d, 5)->parts[0].node, r);
    /* Room in casa again: acme's job runs there. */
    for (uint64_t id = 1; id <= 3; id++) {
        struct jz_sched_job_info ji = info(s, id);
        if (ji.node == c) {
            ended(s, id, 6);
            break;
        }
    }
    assert_int_equal(decide(s, 6, 0, &d), 1);
    assert_int_equal(get(&d, 4)->parts[0].node, c);
    /* Quotas are replaced at run time; 0 keeps a tenant out of a site. */
    struct jz_sched_site_quota none[] = {{.site = "casa", .max_gpus = 0}};
    t.site_quotas = none;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), 0);
    struct jz_sched_site_quota dup[] = {{.site = "x", .max_gpus = 1}, {.site = "x", .max_gpus = 2}};
    t.site_quotas = dup;
    t.site_quota_count = 2;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), JZ_EEXIST);
    submit(s, 7, "acme", 1, 0, 100, 7);
    assert_int_equal(decide(s, 7, 0, &d), 1);
    assert_int_equal(get(&d, 7)->parts[0].node, r);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_over_quota(void **state)
{
    /* Gangs larger than the tenant's whole quota wait aside (they start only if the quota
     * grows) and never hold back its other jobs, however many there are. */
    struct jz_sched_tenant t = {.name = "lab", .weight = 1, .max_gpus = 8};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.tenants = &t;
    cfg.tenant_count = 1;
    cfg.backfill_depth = 2;
    struct jz_sched *s = make(&cfg);
    node(s, "n0", g4dn, NULL, NULL);
    node(s, "n1", g4dn, NULL, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    for (uint64_t id = 1; id <= 5; id++)
        submit(s, id, "lab", 8, 2, 100, 0);
    submit(s, 10, "lab", 8, 0, 100, 1);
    assert_int_equal(decide(s, 1, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 10));
    struct jz_sched_job_info in = info(s, 1);
    assert_int_equal(in.reason, JZ_SCHED_REASON_QUOTA);
    assert_string_equal(in.reason_text,
                        "Needs 16 GPUs, more than tenant lab's quota of 8: it starts only if "
                        "the quota grows.");
    ended(s, 10, 2);
    struct jz_error err = {0};
    t.max_gpus = 16;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), 0);
    assert_int_equal(decide(s, 2, 0, &d), 1);
    check_parts(get(&d, 1), 2, 8);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_could_ever_fit(void **state)
{
    struct jz_sched *s = make(NULL);
    char why[JZ_SCHED_REASON_LEN];
    struct jz_sched_job j = job(1, "a", 1, 0, 10, 0);
    assert_false(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    assert_string_equal(why, "there are no nodes");
    size_t n = node(s, "dgx", dgx2, NULL, NULL);
    /* 16 GPUs, but the export has 4 cores: 8 GPUs with a core each can never run. */
    j.gpus = 8;
    assert_false(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    assert_string_equal(why, "no node has 8 GPUs with 1 local core each");
    j.cpus_per_gpu = 0;
    assert_true(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    j.gpus = 2;
    j.cpus_per_gpu = 1;
    assert_true(jz_sched_could_ever_fit(s, &j, NULL, 0));
    j.gpus = 17;
    j.cpus_per_gpu = 0;
    assert_false(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    assert_string_equal(why, "no node has 17 GPUs (the largest has 16)");
    j.gpus = 16;
    j.model = "A100";
    assert_false(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    assert_string_equal(why, "no node has 16 GPUs of model A100");
    j.model = "V100";
    assert_true(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    j.nodes = 2;
    assert_false(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    assert_string_equal(why, "only 1 node could hold a part, the job needs 2");
    j.nodes = 0;
    j.model = NULL;
    j.gpus = 0;
    j.cpus = 5;
    assert_false(jz_sched_could_ever_fit(s, &j, why, sizeof(why)));
    assert_string_equal(why, "no node has 5 cores (the largest has 4)");
    /* A drained node still counts; a g4dn (48 cores) makes the 8-GPU part possible. */
    struct jz_error err = {0};
    assert_int_equal(jz_sched_node_set_up(s, n, false, &err), 0);
    struct jz_sched_job k = job(2, "a", 8, 0, 10, 0);
    assert_false(jz_sched_could_ever_fit(s, &k, NULL, 0));
    submit_job(s, &k, 0);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    assert_int_equal(decide(s, 0, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 2).reason, JZ_SCHED_REASON_NEVER);
    assert_string_equal(info(s, 2).reason_text, "No node has 8 GPUs with 1 local core each.");
    node(s, "g4", g4dn, NULL, NULL);
    assert_true(jz_sched_could_ever_fit(s, &k, NULL, 0));
    assert_int_equal(decide(s, 1, 0, &d), 1);
    assert_non_null(find(&d, 2));
    /* Not a job at all. */
    k.gpus = 0;
    k.cpus = 0;
    assert_false(jz_sched_could_ever_fit(s, &k, why, sizeof(why)));
    assert_string_equal(why, "it asks for neither GPUs nor cores");
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_adopt_gang(void **state)
{
    struct jz_sched *s = make(NULL);
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "n%d", i);
        node(s, name, g4dn, NULL, NULL);
    }
    struct jz_error err = {0};
    size_t g[] = {0, 1, 2, 3}, c[] = {0, 1, 2, 3};
    struct jz_sched_job j = job(7, "a", 4, 2, 100, 0);
    struct jz_sched_part_spec parts[] = {
        {.node = 2, .gpus = g, .gpu_count = 4, .cores = c, .core_count = 4},
        {.node = 0, .gpus = g, .gpu_count = 4, .cores = c, .core_count = 4}};
    /* Refusals change nothing. */
    assert_int_equal(jz_sched_adopt_running(s, &j, parts, 1, 0, &err), JZ_EINVAL);
    struct jz_sched_part_spec same[] = {parts[0], parts[0]};
    assert_int_equal(jz_sched_adopt_running(s, &j, same, 2, 0, &err), JZ_EINVAL);
    assert_int_equal(jz_sched_job_info(s, 7, &(struct jz_sched_job_info){0}, &err), JZ_ENOENT);
    assert_int_equal(jz_sched_adopt_running(s, &j, parts, 2, 0, &err), 0);
    struct jz_sched_job_info in = info(s, 7);
    assert_int_equal(in.state, JZ_SCHED_JOB_RUNNING);
    assert_int_equal(in.part_count, 2);
    assert_int_equal(in.node, 2);
    assert_int_equal(free_gpus(s, 0), 4);
    assert_int_equal(free_gpus(s, 1), 8);
    assert_int_equal(free_gpus(s, 2), 4);
    /* A GPU already taken on one part's node: refused, nothing adopted. */
    struct jz_sched_job k = job(8, "a", 1, 2, 100, 0);
    size_t free1 = 5, taken = 3;
    struct jz_sched_part_spec clash[] = {{.node = 1, .gpus = &free1, .gpu_count = 1},
                                         {.node = 0, .gpus = &taken, .gpu_count = 1}};
    assert_int_equal(jz_sched_adopt_running(s, &k, clash, 2, 0, &err), JZ_EBUSY);
    assert_int_equal(free_gpus(s, 1), 8);
    /* Removing a node one of its parts runs on is refused. */
    assert_int_equal(jz_sched_node_remove(s, 0, &err), JZ_EBUSY);
    /* A preempted-and-requeued or ended gang frees every part. */
    assert_int_equal(jz_sched_job_requeue(s, 7, 50, &err), 0);
    assert_int_equal(free_gpus(s, 0), 8);
    assert_int_equal(free_gpus(s, 2), 8);
    assert_int_equal(info(s, 7).state, JZ_SCHED_JOB_PENDING);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    assert_int_equal(decide(s, 50, 0, &d), 1);
    check_parts(get(&d, 7), 2, 4);
    ended(s, 7, 60);
    for (size_t n = 0; n < 3; n++)
        assert_int_equal(free_gpus(s, n), 8);
    double u;
    assert_int_equal(jz_sched_tenant_usage(s, "a", 60, &u, NULL, &err), 0);
    assert_true(u > 8 * 60 * 0.99); /* 8 GPUs over 50 s adopted and 10 s started */
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gang_all_or_nothing),
        cmocka_unit_test(test_gang_site_and_switch),
        cmocka_unit_test(test_gang_head_and_backfill),
        cmocka_unit_test(test_gang_preemption),
        cmocka_unit_test(test_preempt_abandon),
        cmocka_unit_test(test_node_remove),
        cmocka_unit_test(test_site_quotas),
        cmocka_unit_test(test_over_quota),
        cmocka_unit_test(test_could_ever_fit),
        cmocka_unit_test(test_adopt_gang),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
