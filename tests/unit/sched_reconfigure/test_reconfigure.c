/* jz_sched_reconfigure and jz_sched_reservations_replace on live schedulers: the next decision
 * follows the new weights and classes, refused changes leave everything as it was, running jobs
 * keep their allocations, reservations are swapped as a whole, and the configuration diff reads
 * as an operator's log line. Each test drives events with explicit times on 8x T4 nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/config.h"
#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

static struct jz_topo *g4dn; /* 8x T4 */

static int setup(void **state)
{
    struct jz_error err = {0};
    return jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES "/topologies/aws-g4dn-metal-8xT4.xml", &g4dn,
                                  &err);
}

static int teardown(void **state)
{
    jz_topo_destroy(g4dn);
    return 0;
}

static struct jz_sched *make(const struct jz_sched_config *cfg, size_t nodes)
{
    struct jz_sched *s;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_create(cfg, &s, &err), 0);
    for (size_t i = 0; i < nodes; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%zu", i);
        struct jz_sched_node_spec ns = {.name = name, .topo = g4dn};
        assert_int_equal(jz_sched_node_add(s, &ns, NULL, &err), 0);
    }
    return s;
}

static int submit_rc(struct jz_sched *s, uint64_t id, const char *tenant, const char *cls,
                     unsigned gpus, int64_t now)
{
    struct jz_sched_job j = {.id = id,
                             .tenant = tenant,
                             .class_name = cls,
                             .gpus = gpus,
                             .cpus_per_gpu = 1,
                             .time_limit_s = 3600,
                             .submit_time = now};
    struct jz_error err = {0};
    return jz_sched_submit(s, &j, now, &err);
}

static void submit(struct jz_sched *s, uint64_t id, const char *tenant, const char *cls,
                   unsigned gpus, int64_t now)
{
    assert_int_equal(submit_rc(s, id, tenant, cls, gpus, now), 0);
}

static size_t decide(struct jz_sched *s, int64_t now, struct jz_sched_decisions *d)
{
    struct jz_error err = {0};
    jz_sched_decisions_clear(d);
    assert_int_equal(jz_sched_decide(s, now, JZ_SCHED_FULL, d, &err), 0);
    return d->count;
}

static struct jz_sched_job_info info(struct jz_sched *s, uint64_t id)
{
    struct jz_sched_job_info in;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_info(s, id, &in, &err), 0);
    return in;
}

/* First-come order within classes, so that only the weights under test decide. */
static struct jz_sched_config base(void)
{
    struct jz_sched_config c;
    jz_sched_config_defaults(&c);
    c.default_order = 0;
    return c;
}

/* Age against fair share: tenant "heavy" used the node for an hour and submitted first; with age
 * dominant its job goes first, with fair share dominant the light tenant's does. */
static void test_weights_flip_order(void **state)
{
    struct jz_sched_config age = base();
    age.weight_fairshare = 0;
    age.weight_age = 100000;
    struct jz_sched_config fair = base();
    fair.weight_fairshare = 100000;
    fair.weight_age = 1;
    struct jz_error err = {0};
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    for (int flip = 0; flip < 2; flip++) {
        struct jz_sched *s = make(&age, 1);
        submit(s, 1, "heavy", NULL, 8, 0);
        assert_int_equal(decide(s, 0, &d), 1);
        submit(s, 2, "heavy", NULL, 8, 100);
        submit(s, 3, "light", NULL, 8, 200);
        assert_int_equal(jz_sched_job_ended(s, 1, 3600, true, &err), 0);
        if (flip)
            assert_int_equal(jz_sched_reconfigure(s, &fair, &err), 0);
        assert_int_equal(decide(s, 3600, &d), 1);
        assert_int_equal(d.items[0].job_id, flip ? 3 : 2);
        /* Usage history was kept: heavy is under its share only without the hour it used. */
        double used = 0, fs = 0;
        assert_int_equal(jz_sched_tenant_usage(s, "heavy", 3600, &used, &fs, &err), 0);
        assert_true(used > 8 * 3500.0);
        assert_true(fs < 0.5);
        jz_sched_destroy(s);
    }
    jz_sched_decisions_free(&d);
}

/* A class added with a higher rank: its jobs go first; and ranks swapped re-sort waiting jobs. */
static void test_new_class_goes_first(void **state)
{
    struct jz_sched_class lohi[] = {{.name = "lo", .rank = 10}, {.name = "hi", .rank = 90}};
    struct jz_sched_config a = base();
    a.classes = lohi;
    a.class_count = 2;
    struct jz_sched *s = make(&a, 1);
    struct jz_error err = {0};
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, "x", NULL, 8, 0); /* holds the node */
    assert_int_equal(decide(s, 0, &d), 1);
    submit(s, 2, "x", "lo", 8, 10);
    submit(s, 3, "x", "hi", 8, 20);
    submit(s, 4, "x", NULL, 8, 30); /* "normal" (rank 50) */
    assert_int_equal(submit_rc(s, 5, "x", "urgent", 8, 40), JZ_ENOENT);

    struct jz_sched_class next[] = {
        {.name = "lo", .rank = 95}, {.name = "hi", .rank = 5}, {.name = "urgent", .rank = 100}};
    struct jz_sched_config b = base();
    b.classes = next;
    b.class_count = 3;
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), 0);
    submit(s, 5, "x", "urgent", 8, 40);
    /* One at a time as the node frees: urgent, then lo (now 95), normal (50), hi (now 5). */
    uint64_t want[] = {5, 2, 4, 3};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(jz_sched_job_ended(s, i ? want[i - 1] : 1, 100 + (int64_t)i, true, &err),
                         0);
        assert_int_equal(decide(s, 100 + (int64_t)i, &d), 1);
        assert_int_equal(d.items[0].job_id, want[i]);
    }
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* The decisions of two schedulers in the same state are the same: a refused reconfigure changed
 * nothing. */
static void assert_same_decisions(struct jz_sched *x, struct jz_sched *y, int64_t now)
{
    struct jz_sched_decisions dx, dy;
    jz_sched_decisions_init(&dx);
    jz_sched_decisions_init(&dy);
    assert_int_equal(decide(x, now, &dx), decide(y, now, &dy));
    assert_true(dx.count > 0);
    for (size_t i = 0; i < dx.count; i++) {
        assert_int_equal(dx.items[i].action, dy.items[i].action);
        assert_int_equal(dx.items[i].job_id, dy.items[i].job_id);
        assert_int_equal(dx.items[i].parts[0].node, dy.items[i].parts[0].node);
        assert_memory_equal(dx.items[i].parts[0].place.gpus, dy.items[i].parts[0].place.gpus,
                            dx.items[i].parts[0].place.gpu_count * sizeof(size_t));
    }
    jz_sched_decisions_free(&dx);
    jz_sched_decisions_free(&dy);
}

static void test_refusals_change_nothing(void **state)
{
    struct jz_sched_class cls[] = {{.name = "batch", .rank = 20}, {.name = "spare", .rank = 70}};
    struct jz_sched_tenant ten[] = {{.name = "uni", .weight = 3, .max_gpus = 4}};
    struct jz_sched_config a = base();
    a.classes = cls;
    a.class_count = 2;
    a.tenants = ten;
    a.tenant_count = 1;
    struct jz_sched *s = make(&a, 1), *twin = make(&a, 1);
    struct jz_sched *both[] = {s, twin};
    for (int k = 0; k < 2; k++) {
        submit(both[k], 1, "uni", "batch", 2, 0);
        submit(both[k], 2, "uni", NULL, 4, 1);
        submit(both[k], 3, "acme", NULL, 4, 2);
        submit(both[k], 4, "acme", "batch", 1, 3);
    }
    struct jz_error err = {0};
    /* Every refusal below also carries changes that would alter the decisions. */
    struct jz_sched_class no_batch[] = {{.name = "spare", .rank = 99}};
    struct jz_sched_tenant ten2[] = {{.name = "uni", .weight = 1, .max_gpus = 8}};
    struct jz_sched_config b = base();
    b.weight_fairshare = 0;
    b.weight_class = 0;
    b.classes = no_batch;
    b.class_count = 1;
    b.tenants = ten2;
    b.tenant_count = 1;
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), JZ_EBUSY);
    assert_non_null(strstr(err.msg, "class batch still has 2 jobs"));
    /* The default class renamed while jobs are in it. */
    b.classes = cls;
    b.class_count = 2;
    snprintf(b.default_class, sizeof(b.default_class), "standard");
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), JZ_EBUSY);
    assert_non_null(strstr(err.msg, "class normal still has 2 jobs"));
    assert_non_null(strstr(err.msg, "default class"));
    snprintf(b.default_class, sizeof(b.default_class), "normal");
    /* A tenant in an unknown class, listed twice, a bad weight, a bad setting. */
    ten2[0].weight = 0;
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), JZ_ERANGE);
    assert_non_null(strstr(err.msg, "tenant uni: weight"));
    ten2[0].weight = 1;
    snprintf(ten2[0].class_name, sizeof(ten2[0].class_name), "gold");
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), JZ_ENOENT);
    assert_non_null(strstr(err.msg, "unknown class gold"));
    ten2[0].class_name[0] = '\0';
    struct jz_sched_tenant twice[] = {ten2[0], ten2[0]};
    b.tenants = twice;
    b.tenant_count = 2;
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), JZ_EEXIST);
    assert_non_null(strstr(err.msg, "tenant uni is configured twice"));
    b.tenants = ten2;
    b.tenant_count = 1;
    b.half_life_s = 0;
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), JZ_ERANGE);
    assert_non_null(strstr(err.msg, "half_life_s"));
    b.half_life_s = 86400;
    b.backfill_depth = 0;
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), JZ_ERANGE);
    assert_non_null(strstr(err.msg, "backfill_depth"));
    assert_int_equal(jz_sched_reconfigure(NULL, &b, &err), JZ_EINVAL);
    assert_int_equal(jz_sched_reconfigure(s, NULL, &err), JZ_EINVAL);
    /* Classes and quotas are as they were: batch takes jobs, uni is still held to 4 GPUs. */
    assert_int_equal(submit_rc(s, 5, "uni", "batch", 4, 4), 0);
    assert_int_equal(submit_rc(twin, 5, "uni", "batch", 4, 4), 0);
    assert_same_decisions(s, twin, 10);
    assert_int_equal(info(s, 5).reason, JZ_SCHED_REASON_QUOTA);
    jz_sched_destroy(s);
    jz_sched_destroy(twin);
}

/* A class with no jobs may go; the default class may be renamed once its jobs have ended. */
static void test_removals_allowed(void **state)
{
    struct jz_sched_class cls[] = {{.name = "batch", .rank = 20}, {.name = "idle", .rank = 70}};
    struct jz_sched_config a = base();
    a.classes = cls;
    a.class_count = 2;
    struct jz_sched *s = make(&a, 1);
    struct jz_error err = {0};
    submit(s, 1, "uni", "batch", 2, 0);
    struct jz_sched_class kept[] = {{.name = "batch", .rank = 20}};
    struct jz_sched_config b = base();
    b.classes = kept;
    b.class_count = 1;
    snprintf(b.default_class, sizeof(b.default_class), "standard");
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), 0); /* normal and idle had no jobs */
    assert_int_equal(submit_rc(s, 2, "uni", "idle", 1, 1), JZ_ENOENT);
    assert_int_equal(submit_rc(s, 3, "uni", "normal", 1, 1), JZ_ENOENT);
    assert_int_equal(submit_rc(s, 4, "uni", "standard", 1, 1), 0);
    assert_int_equal(submit_rc(s, 5, "uni", NULL, 1, 1), 0); /* the new default */
    jz_sched_destroy(s);
}

/* Running jobs keep their nodes, GPUs, cores and times, even when their class changes rank and
 * their tenant's quota drops below what it uses; new jobs see the new quota. */
static void test_running_untouched(void **state)
{
    struct jz_sched_class cls[] = {{.name = "gold", .rank = 80, .can_preempt = true}};
    struct jz_sched_tenant ten[] = {{.name = "uni", .weight = 2, .max_gpus = 16}};
    struct jz_sched_config a = base();
    a.weight_size = 0; /* by class, then age: the jobs pack the three nodes exactly */
    a.classes = cls;
    a.class_count = 1;
    a.tenants = ten;
    a.tenant_count = 1;
    struct jz_sched *s = make(&a, 3);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, "uni", "gold", 6, 0);
    submit(s, 2, "uni", NULL, 3, 1);
    submit(s, 3, "acme", NULL, 5, 2);
    submit(s, 4, "acme", NULL, 8, 3);
    submit(s, 5, "acme", NULL, 8, 4); /* waits */
    assert_int_equal(decide(s, 10, &d), 4);
    struct jz_sched_node_info before[3];
    struct jz_sched_job_info jb[5];
    for (size_t n = 0; n < 3; n++)
        assert_int_equal(jz_sched_node_info(s, n, &before[n], &err), 0);
    for (uint64_t id = 1; id <= 5; id++)
        jb[id - 1] = info(s, id);
    struct jz_sched_class cls2[] = {{.name = "gold", .rank = 10}};
    struct jz_sched_tenant ten2[] = {{.name = "uni", .weight = 1, .max_gpus = 2}};
    struct jz_sched_config b = base();
    b.weight_class = 7;
    b.half_life_s = 3600;
    b.classes = cls2;
    b.class_count = 1;
    b.tenants = ten2;
    b.tenant_count = 1;
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), 0);
    for (size_t n = 0; n < 3; n++) {
        struct jz_sched_node_info x;
        assert_int_equal(jz_sched_node_info(s, n, &x, &err), 0);
        assert_int_equal(x.gpu_busy, before[n].gpu_busy);
        assert_int_equal(x.free_cores, before[n].free_cores);
        assert_int_equal(x.running, before[n].running);
    }
    for (uint64_t id = 1; id <= 4; id++) {
        struct jz_sched_job_info x = info(s, id);
        assert_int_equal(x.state, JZ_SCHED_JOB_RUNNING);
        assert_int_equal(x.node, jb[id - 1].node);
        assert_int_equal(x.start_time, jb[id - 1].start_time);
        assert_int_equal(x.part_count, jb[id - 1].part_count);
    }
    assert_int_equal(info(s, 5).state, JZ_SCHED_JOB_PENDING);
    /* uni uses 9 GPUs, above its new quota of 2: nothing stops, but its next job waits. */
    submit(s, 6, "uni", NULL, 1, 20);
    assert_int_equal(jz_sched_job_ended(s, 3, 30, true, &err), 0);
    assert_int_equal(decide(s, 30, &d), 0);
    assert_int_equal(info(s, 6).reason, JZ_SCHED_REASON_QUOTA);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* Quotas and weights of tenants no longer configured fall back to the defaults. */
static void test_dropped_tenant_defaults(void **state)
{
    struct jz_sched_tenant ten[] = {{.name = "uni", .weight = 5, .max_gpus = 1}};
    struct jz_sched_config a = base();
    a.tenants = ten;
    a.tenant_count = 1;
    struct jz_sched *s = make(&a, 1);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, "uni", NULL, 4, 0);
    assert_int_equal(decide(s, 0, &d), 0);
    assert_int_equal(info(s, 1).reason, JZ_SCHED_REASON_QUOTA); /* set aside: over quota */
    struct jz_sched_config b = base();
    assert_int_equal(jz_sched_reconfigure(s, &b, &err), 0);
    assert_int_equal(decide(s, 1, &d), 1); /* no quota now: it is looked at again */
    assert_int_equal(d.items[0].job_id, 1);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_reservations_replace(void **state)
{
    struct jz_sched_config a = base();
    struct jz_sched *s = make(&a, 2);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    const char *both[] = {"n0", "n1"}, *bad[] = {"n0", "n9"}, *dup[] = {"n1", "n1"};
    struct jz_sched_reservation r[] = {{.name = "demo",
                                        .tenant = "acme",
                                        .nodes = both,
                                        .node_count = 2,
                                        .gpus_per_node = 6,
                                        .start = 0,
                                        .end = 7200},
                                       {.name = "old",
                                        .tenant = "acme",
                                        .nodes = both,
                                        .node_count = 1,
                                        .gpus_per_node = 1,
                                        .start = 0,
                                        .end = 10}};
    assert_int_equal(jz_sched_reservation_add(s, &r[1], &err), 0);
    assert_int_equal(jz_sched_reservations_replace(s, r, 1, &err), 0);
    submit(s, 1, "uni", NULL, 4, 0);
    assert_int_equal(decide(s, 0, &d), 0);
    assert_int_equal(info(s, 1).reason, JZ_SCHED_REASON_RESERVATION);
    /* "old" was replaced: it is gone. */
    assert_int_equal(jz_sched_reservation_remove(s, "old", &err), JZ_ENOENT);
    /* Refused sets change nothing. */
    struct jz_sched_reservation x = r[1];
    x.nodes = bad;
    x.node_count = 2;
    assert_int_equal(jz_sched_reservations_replace(s, &x, 1, &err), JZ_ENOENT);
    assert_non_null(strstr(err.msg, "node n9 is unknown"));
    x.nodes = dup;
    assert_int_equal(jz_sched_reservations_replace(s, &x, 1, &err), JZ_EEXIST);
    assert_non_null(strstr(err.msg, "node n1 is listed twice"));
    x.nodes = both;
    x.gpus_per_node = 9;
    assert_int_equal(jz_sched_reservations_replace(s, &x, 1, &err), JZ_ERANGE);
    struct jz_sched_reservation same[] = {r[0], r[0]};
    assert_int_equal(jz_sched_reservations_replace(s, same, 2, &err), JZ_EEXIST);
    assert_int_equal(decide(s, 1, &d), 0);
    assert_int_equal(info(s, 1).reason, JZ_SCHED_REASON_RESERVATION);
    /* A smaller reservation on n1 only: the job fits on n0. */
    struct jz_sched_reservation small = r[0];
    small.nodes = dup;
    small.node_count = 1;
    snprintf(small.tenant, sizeof(small.tenant), "newcomer");
    assert_int_equal(jz_sched_reservations_replace(s, &small, 1, &err), 0);
    assert_int_equal(decide(s, 2, &d), 1);
    assert_int_equal(d.items[0].parts[0].node, 0);
    double used = -1;
    assert_int_equal(jz_sched_tenant_usage(s, "newcomer", 2, &used, NULL, &err), 0);
    /* None at all. */
    submit(s, 2, "uni", NULL, 8, 3);
    assert_int_equal(decide(s, 3, &d), 0);
    assert_int_equal(jz_sched_reservations_replace(s, NULL, 0, &err), 0);
    assert_int_equal(decide(s, 4, &d), 1);
    assert_int_equal(d.items[0].job_id, 2);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* Policy and reservations as one: a bad reservation refuses the policy too; check_only checks
 * without changing anything. */
static void test_reload_all_or_nothing(void **state)
{
    struct jz_sched_config age = base();
    age.weight_fairshare = 0;
    age.weight_age = 100000;
    struct jz_sched_config fair = base();
    fair.weight_fairshare = 100000;
    fair.weight_age = 1;
    struct jz_error err = {0};
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_sched *s = make(&age, 1);
    submit(s, 1, "heavy", NULL, 8, 0);
    assert_int_equal(decide(s, 0, &d), 1);
    submit(s, 2, "heavy", NULL, 8, 100);
    submit(s, 3, "light", NULL, 8, 200);
    assert_int_equal(jz_sched_job_ended(s, 1, 3600, true, &err), 0);
    const char *n0[] = {"n0"}, *n7[] = {"n7"};
    struct jz_sched_reservation bad = {.name = "r",
                                       .tenant = "light",
                                       .nodes = n7,
                                       .node_count = 1,
                                       .gpus_per_node = 8,
                                       .start = 0,
                                       .end = 100000};
    assert_int_equal(jz_sched_reload(s, &fair, &bad, 1, true, &err), JZ_ENOENT);
    assert_int_equal(jz_sched_reload(s, &fair, &bad, 1, false, &err), JZ_ENOENT);
    assert_non_null(strstr(err.msg, "node n7 is unknown"));
    /* A good reload checked only: nothing changes either. */
    struct jz_sched_reservation good = bad;
    good.nodes = n0;
    snprintf(good.tenant, sizeof(good.tenant), "newcomer");
    assert_int_equal(jz_sched_reload(s, &fair, &good, 1, true, &err), 0);
    assert_int_not_equal(jz_sched_tenant_usage(s, "newcomer", 3600, NULL, NULL, &err), 0);
    /* Still the age policy, no reservation: heavy's older job starts. */
    assert_int_equal(decide(s, 3600, &d), 1);
    assert_int_equal(d.items[0].job_id, 2);
    /* Now for real: fair share, and n0 reserved for the newcomer (created by the reload). */
    submit(s, 4, "heavy", NULL, 8, 300);
    assert_int_equal(jz_sched_job_ended(s, 2, 7200, true, &err), 0);
    assert_int_equal(jz_sched_reload(s, &fair, &good, 1, false, &err), 0);
    assert_int_equal(jz_sched_tenant_usage(s, "newcomer", 7200, NULL, NULL, &err), 0);
    assert_int_equal(decide(s, 7200, &d), 0);
    assert_int_equal(info(s, 3).reason, JZ_SCHED_REASON_RESERVATION);
    assert_int_equal(jz_sched_reload(s, &fair, NULL, 0, false, &err), 0);
    assert_int_equal(decide(s, 7201, &d), 1);
    assert_int_equal(d.items[0].job_id, 3); /* light, under its share */
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* Site quotas on `n` sites named prefix0, prefix1, ...; site i allows i % 8 + 1 GPUs. */
static struct jz_sched_site_quota *quotas(const char *prefix, size_t n)
{
    struct jz_sched_site_quota *q = calloc(n, sizeof(*q));
    assert_non_null(q);
    for (size_t i = 0; i < n; i++) {
        snprintf(q[i].site, sizeof(q[i].site), "%s%zu", prefix, i);
        q[i].max_gpus = (unsigned)(i % 8) + 1;
    }
    return q;
}

/* Sites named only by refused or checked-only reloads are not kept: however many of them name
 * new sites, the room for sites (JZ_SCHED_MAX_SITES, "default" included) is as it was, and the
 * new sites of a committed reload get the quotas it gave them. */
static void test_refusals_keep_sites(void **state)
{
    enum { ROOM = JZ_SCHED_MAX_SITES - 1 }; /* "default" is always there */
    struct jz_sched_config c = base();
    struct jz_sched *s = make(&c, 0);
    struct jz_error err = {0};
    const char *n7[] = {"n7"};
    struct jz_sched_reservation bad = {.name = "r",
                                       .tenant = "uni",
                                       .nodes = n7,
                                       .node_count = 1,
                                       .gpus_per_node = 1,
                                       .start = 0,
                                       .end = 100};
    struct jz_sched_tenant ten[2] = {{.name = "uni", .weight = 1}, {.name = "lab", .weight = 1}};
    c.tenants = ten;
    c.tenant_count = 1;
    for (int round = 0; round < 3; round++) {
        char prefix[16];
        /* Refused by the reservations, after the policy was prepared. */
        snprintf(prefix, sizeof(prefix), "x%d-", round);
        struct jz_sched_site_quota *q = quotas(prefix, ROOM);
        ten[0].site_quotas = q;
        ten[0].site_quota_count = ROOM;
        assert_int_equal(jz_sched_reload(s, &c, &bad, 1, false, &err), JZ_ENOENT);
        assert_non_null(strstr(err.msg, "node n7 is unknown"));
        /* Good, but checked only. */
        snprintf(q[0].site, sizeof(q[0].site), "c%d", round);
        assert_int_equal(jz_sched_reload(s, &c, NULL, 0, true, &err), 0);
        free(q);
        /* One site too many: one tenant's, or two tenants' together. */
        snprintf(prefix, sizeof(prefix), "y%d-", round);
        q = quotas(prefix, ROOM + 1);
        ten[0].site_quotas = q;
        ten[0].site_quota_count = ROOM + 1;
        assert_int_equal(jz_sched_reconfigure(s, &c, &err), JZ_ELIMIT);
        assert_non_null(strstr(err.msg, "would make more than 1024 sites"));
        ten[0].site_quota_count = ROOM;
        ten[1].site_quotas = &q[ROOM];
        ten[1].site_quota_count = 1;
        c.tenant_count = 2;
        assert_int_equal(jz_sched_reconfigure(s, &c, &err), JZ_ELIMIT);
        assert_non_null(strstr(err.msg, "tenant lab: site"));
        c.tenant_count = 1;
        free(q);
    }
    /* The room is whole: a policy naming ROOM new sites (lab's one of them) fits exactly. */
    struct jz_sched_site_quota *q = quotas("s", ROOM);
    ten[0].site_quotas = q;
    ten[0].site_quota_count = ROOM;
    ten[1].site_quotas = &q[5];
    ten[1].site_quota_count = 1;
    c.tenant_count = 2;
    assert_int_equal(jz_sched_reload(s, &c, NULL, 0, false, &err), 0);
    /* ... and now it is full. */
    struct jz_sched_node_spec a0 = {.name = "a0", .topo = g4dn, .site = "s5"},
                              b0 = {.name = "b0", .topo = g4dn, .site = "s1000"},
                              z0 = {.name = "z0", .topo = g4dn, .site = "c0"};
    assert_int_equal(jz_sched_node_add(s, &z0, NULL, &err), JZ_ELIMIT);
    size_t ia, ib;
    assert_int_equal(jz_sched_node_add(s, &a0, &ia, &err), 0);
    assert_int_equal(jz_sched_node_add(s, &b0, &ib, &err), 0);
    struct jz_sched_node_info ni;
    assert_int_equal(jz_sched_node_info(s, ia, &ni, &err), 0);
    assert_string_equal(ni.site, "s5");
    /* uni may use 6 GPUs in s5 and 1 in s1000: the quotas are on the sites they named. */
    struct {
        unsigned gpus;
        size_t node;
    } want[] = {{4, ia}, {2, ia}, {1, ib}};
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    for (size_t i = 0; i < 3; i++) {
        submit(s, i + 1, "uni", NULL, want[i].gpus, (int64_t)i);
        assert_int_equal(decide(s, (int64_t)i, &d), 1);
        assert_int_equal(d.items[0].action, JZ_SCHED_START);
        assert_int_equal(d.items[0].parts[0].node, want[i].node);
    }
    submit(s, 4, "uni", NULL, 1, 3);
    assert_int_equal(decide(s, 3, &d), 0);
    assert_int_equal(info(s, 4).reason, JZ_SCHED_REASON_QUOTA);
    jz_sched_decisions_free(&d);
    free(q);
    jz_sched_destroy(s);
    /* jz_sched_tenant_set too refuses a site too many before keeping any. */
    c = base();
    s = make(&c, 0);
    q = quotas("t", ROOM + 1);
    struct jz_sched_site_quota *q2 = quotas("u", ROOM);
    ten[1].site_quotas = q;
    ten[1].site_quota_count = ROOM + 1;
    assert_int_equal(jz_sched_tenant_set(s, &ten[1], &err), JZ_ELIMIT);
    assert_non_null(strstr(err.msg, "tenant lab: its sites would make more than 1024 sites"));
    ten[0].site_quotas = q2;
    ten[0].site_quota_count = ROOM;
    assert_int_equal(jz_sched_tenant_set(s, &ten[0], &err), 0);
    assert_int_equal(jz_sched_node_add(s, &z0, NULL, &err), JZ_ELIMIT);
    free(q2);
    free(q);
    jz_sched_destroy(s);
}

static struct jz_sched_parsed *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    struct jz_sched_parsed *p = NULL;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_config_parse(j, &p, &err), 0);
    json_decref(j);
    return p;
}

static void test_diff_text(void **state)
{
    struct jz_sched_parsed *a =
        parse("{\"weights\": {\"fairshare\": 10000}, \"classes\": [{\"name\": \"normal\"},"
              " {\"name\": \"gone\"}], \"tenants\": [{\"name\": \"uni\", \"weight\": 1},"
              " {\"name\": \"old\"}], \"reservations\": [{\"name\": \"r\", \"tenant\": \"uni\","
              " \"nodes\": [\"n0\"], \"gpus_per_node\": 2, \"start\": 0, \"end\": 10}]}");
    struct jz_sched_parsed *b = parse(
        "{\"weights\": {\"fairshare\": 20000}, \"order\": \"age\", \"classes\": [{\"name\":"
        " \"normal\", \"rank\": 60}, {\"name\": \"gpu-short\", \"rank\": 90, \"order\":"
        " \"shortest\"}], \"tenants\": [{\"name\": \"uni\", \"weight\": 2, \"max_gpus\": 8,"
        " \"class\": \"gpu-short\"}], \"reservations\": [{\"name\": \"r\", \"tenant\": \"uni\","
        " \"nodes\": [\"n0\"], \"gpus_per_node\": 4, \"start\": 0, \"end\": 10}]}");
    char buf[512];
    assert_int_equal(jz_sched_parsed_diff(a, b, buf, sizeof(buf)), 11);
    assert_string_equal(buf,
                        "weight_fairshare 10000 -> 20000, default_order las+shortest -> age, "
                        "class gone removed, class normal rank 50 -> 60, class normal order "
                        "las+shortest -> age, class gpu-short added, tenant old removed (default "
                        "weight, no quota), tenant uni weight 1 -> 2, tenant uni max_gpus 0 -> 8, "
                        "tenant uni class \"\" -> \"gpu-short\", reservation r changed");
    assert_int_equal(jz_sched_config_diff(&a->cfg, &b->cfg, buf, sizeof(buf)), 10);
    assert_int_equal(jz_sched_config_diff(&a->cfg, &a->cfg, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    /* Cut short, it says so and still counts every change. */
    char small[24];
    assert_int_equal(jz_sched_config_diff(&a->cfg, &b->cfg, small, sizeof(small)), 10);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_string_equal(small + sizeof(small) - 4, "...");
    /* The reload of a parsed configuration: the scheduler takes b. */
    struct jz_sched *s = make(&a->cfg, 1);
    struct jz_error err = {0};
    assert_int_equal(jz_sched_reservations_replace(s, a->reservations, a->reservation_count, &err),
                     0);
    assert_int_equal(jz_sched_reconfigure(s, &b->cfg, &err), 0);
    assert_int_equal(jz_sched_reservations_replace(s, b->reservations, b->reservation_count, &err),
                     0);
    /* uni's new jobs are gpu-short ones (rank 90, shortest first): ahead of an older normal
     * (rank 60) one. */
    submit(s, 1, "acme", NULL, 8, 0);
    submit(s, 2, "uni", NULL, 8, 5);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    assert_int_equal(decide(s, 10, &d), 1);
    assert_int_equal(d.items[0].job_id, 2);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
    jz_sched_parsed_free(a);
    jz_sched_parsed_free(b);
    /* The parser refuses a tenant listed twice, as a reload would. */
    json_error_t je;
    json_t *j = json_loads("{\"tenants\": [{\"name\": \"uni\"}, {\"name\": \"uni\"}]}", 0, &je);
    struct jz_sched_parsed *p = NULL;
    assert_int_equal(jz_sched_config_parse(j, &p, &err), JZ_EEXIST);
    assert_non_null(strstr(err.msg, "uni is listed twice"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_flip_order),
        cmocka_unit_test(test_new_class_goes_first),
        cmocka_unit_test(test_refusals_change_nothing),
        cmocka_unit_test(test_removals_allowed),
        cmocka_unit_test(test_running_untouched),
        cmocka_unit_test(test_dropped_tenant_defaults),
        cmocka_unit_test(test_reservations_replace),
        cmocka_unit_test(test_reload_all_or_nothing),
        cmocka_unit_test(test_refusals_keep_sites),
        cmocka_unit_test(test_diff_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
