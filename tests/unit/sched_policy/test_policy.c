/* Golden decisions of the scheduler on small clusters: each test drives events with explicit
 * times and checks exactly which jobs start, wait (and why) or are preempted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

static struct jz_topo *g4dn; /* 8x T4, 2 sockets */

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

static struct jz_sched *make(size_t nodes, const struct jz_sched_config *cfg)
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
    for (size_t i = 0; i < nodes; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%zu", i);
        struct jz_sched_node_spec ns = {.name = name, .topo = g4dn};
        assert_int_equal(jz_sched_node_add(s, &ns, NULL, &err), 0);
    }
    return s;
}

static void submit(struct jz_sched *s, uint64_t id, const char *tenant, unsigned gpus,
                   int64_t limit, int64_t now)
{
    struct jz_sched_job j = {.id = id,
                             .tenant = tenant,
                             .gpus = gpus,
                             .cpus_per_gpu = 1,
                             .time_limit_s = limit,
                             .submit_time = now};
    struct jz_error err = {0};
    assert_int_equal(jz_sched_submit(s, &j, now, &err), 0);
}

/* Runs one decision and returns the started job ids in order (0-terminated). */
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

static struct jz_sched_job_info info(struct jz_sched *s, uint64_t id)
{
    struct jz_sched_job_info in;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_info(s, id, &in, &err), 0);
    return in;
}

static void test_start_and_locality(void **state)
{
    struct jz_sched *s = make(2, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, "uni", 4, 3600, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    const struct jz_sched_decision *x = find(&d, 1);
    assert_non_null(x);
    assert_int_equal(x->action, JZ_SCHED_START);
    assert_int_equal(x->parts[0].place.gpu_count, 4);
    assert_int_equal(x->parts[0].place.numa_count, 1); /* one socket's four T4s */
    assert_int_equal(x->parts[0].place.core_count, 4);
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_RUNNING);
    /* Best fit: a 2-GPU job goes next to the 4-GPU one, not onto the empty node. */
    size_t first = x->parts[0].node;
    assert_string_equal(x->why, "Highest priority that fits; best fit on n0.");
    submit(s, 2, "uni", 2, 3600, 1);
    /* Sentences are made only on request: a full pass may start thousands of jobs. */
    struct jz_error err = {0};
    jz_sched_decisions_clear(&d);
    assert_int_equal(jz_sched_decide(s, 1, 0, &d, &err), 0);
    assert_int_equal(d.count, 1);
    x = find(&d, 2);
    assert_int_equal(x->parts[0].node, first);
    assert_string_equal(x->why, "");
    assert_string_equal(x->parts[0].place.reason, "");
    jz_sched_decision_explain(&d.items[0]);
    assert_string_equal(x->why, "Highest priority that fits; best fit on n0.");
    assert_non_null(strstr(x->parts[0].place.reason, "are the closest free set (worst link:"));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_fair_share(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.half_life_s = 3600;
    struct jz_sched *s = make(1, &cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    /* Tenant "heavy" uses the whole node for an hour. */
    submit(s, 1, "heavy", 8, 3600, 0);
    submit(s, 2, "light", 1, 60, 0); /* registers the tenant; waits */
    assert_int_equal(decide(s, 0, JZ_SCHED_FULL, &d), 1);
    assert_int_equal(info(s, 2).reason, JZ_SCHED_REASON_RESOURCES);
    assert_int_equal(jz_sched_job_ended(s, 2, 10, true, &err), 0); /* cancelled, say */
    assert_int_equal(jz_sched_job_ended(s, 1, 3600, true, &err), 0);
    /* heavy submitted first and is older, but light is under its share: light goes first. */
    submit(s, 10, "heavy", 8, 600, 3000);
    submit(s, 11, "light", 8, 600, 3500);
    assert_int_equal(decide(s, 3600, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 11));
    double u, fs_h, fs_l;
    assert_int_equal(jz_sched_tenant_usage(s, "heavy", 3600, &u, &fs_h, &err), 0);
    assert_true(u > 8 * 3600 * 0.6 && u < 8 * 3600 * 1.01);
    assert_int_equal(jz_sched_tenant_usage(s, "light", 3600, NULL, &fs_l, &err), 0);
    assert_true(fs_l > fs_h);
    assert_int_equal(info(s, 10).reason, JZ_SCHED_REASON_RESOURCES);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_quota(void **state)
{
    struct jz_sched_tenant t = {.name = "startup", .weight = 1, .max_gpus = 4};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.tenants = &t;
    cfg.tenant_count = 1;
    struct jz_sched *s = make(2, &cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, "startup", 4, 100, 0);
    submit(s, 2, "startup", 1, 100, 1);
    submit(s, 3, "uni", 1, 100, 2);
    assert_int_equal(decide(s, 5, JZ_SCHED_FULL, &d), 2);
    assert_non_null(find(&d, 1));
    assert_non_null(find(&d, 3));
    struct jz_sched_job_info in = info(s, 2);
    assert_int_equal(in.reason, JZ_SCHED_REASON_QUOTA);
    assert_non_null(strstr(in.reason_text, "quota of 4 GPUs"));
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_ended(s, 1, 50, true, &err), 0);
    assert_int_equal(decide(s, 50, 0, &d), 1);
    assert_non_null(find(&d, 2));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* GPU-model quotas: a tenant's GPUs of a model (substring, any case) in use at once. */
static void test_model_quota(void **state)
{
    struct jz_sched_model_quota mq[] = {{.model = "t4", .max_gpus = 2}, {.model = "A100"}};
    struct jz_sched_tenant t = {
        .name = "startup", .weight = 1, .model_quotas = mq, .model_quota_count = 2};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.tenants = &t;
    cfg.tenant_count = 1;
    struct jz_sched *s = make(2, &cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, "startup", 2, 100, 0);
    submit(s, 2, "startup", 1, 100, 1);
    submit(s, 3, "uni", 4, 100, 2);
    assert_int_equal(decide(s, 5, JZ_SCHED_FULL, &d), 2);
    assert_non_null(find(&d, 1));
    assert_non_null(find(&d, 3));
    struct jz_sched_job_info in = info(s, 2);
    assert_int_equal(in.reason, JZ_SCHED_REASON_QUOTA);
    assert_non_null(strstr(in.reason_text, "quota of 2 GPUs of model t4 (2 in use)"));
    /* A larger quota at run time counts the running job's GPUs and lets the next one start. */
    mq[0].max_gpus = 3;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), 0);
    assert_int_equal(decide(s, 6, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 2));
    submit(s, 4, "startup", 1, 100, 7);
    assert_int_equal(decide(s, 8, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 4).reason, JZ_SCHED_REASON_QUOTA);
    /* Ended jobs give their GPUs back to the quota. */
    assert_int_equal(jz_sched_job_ended(s, 1, 50, true, &err), 0);
    assert_int_equal(decide(s, 50, 0, &d), 1);
    assert_non_null(find(&d, 4));
    /* Bad quotas are refused whole. */
    struct jz_sched_model_quota twice[] = {{.model = "T4", .max_gpus = 1},
                                           {.model = "T4", .max_gpus = 2}};
    t.model_quotas = twice;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), JZ_EEXIST);
    struct jz_sched_model_quota empty[] = {{.model = "", .max_gpus = 1}};
    t.model_quotas = empty;
    t.model_quota_count = 1;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), JZ_EINVAL);
    t.model_quota_count = JZ_SCHED_MAX_MODEL_QUOTAS + 1;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), JZ_ELIMIT);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* A gang's parts together stay within a model quota: 2 parts of 2 T4s need room for 4. */
static void test_model_quota_gang(void **state)
{
    struct jz_sched_model_quota mq[] = {{.model = "T4", .max_gpus = 3}};
    struct jz_sched_tenant t = {
        .name = "lab", .weight = 1, .model_quotas = mq, .model_quota_count = 1};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.tenants = &t;
    cfg.tenant_count = 1;
    struct jz_sched *s = make(2, &cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    struct jz_sched_job g = {.id = 1, .tenant = "lab", .gpus = 2, .nodes = 2, .cpus_per_gpu = 1,
                             .time_limit_s = 100, .submit_time = 0};
    assert_int_equal(jz_sched_submit(s, &g, 0, &err), 0);
    assert_int_equal(decide(s, 1, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 1).reason, JZ_SCHED_REASON_QUOTA);
    assert_non_null(strstr(info(s, 1).reason_text, "model T4"));
    mq[0].max_gpus = 4;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), 0);
    assert_int_equal(decide(s, 2, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 1));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_easy_backfill(void **state)
{
    struct jz_sched *s = make(1, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, "a", 6, 100, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    /* Head: 8 GPUs, must wait for job 1 (ends by t=100). */
    submit(s, 2, "a", 8, 1000, 1);
    submit(s, 3, "a", 1, 50, 2);  /* ends by 60 < 100: may backfill */
    submit(s, 4, "a", 1, 500, 3); /* would hold a GPU past 100: must not */
    assert_int_equal(decide(s, 10, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 3));
    assert_non_null(strstr(find(&d, 3)->why, "Backfilled"));
    struct jz_sched_job_info h = info(s, 2);
    assert_int_equal(h.reason, JZ_SCHED_REASON_RESOURCES);
    assert_int_equal(h.est_start, 100);
    struct jz_sched_job_info w = info(s, 4);
    assert_int_equal(w.reason, JZ_SCHED_REASON_PRIORITY);
    assert_non_null(strstr(w.reason_text, "job 2"));
    /* Job 1 ends early: the head still cannot start (job 3 runs), nothing overtakes it. */
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_ended(s, 1, 40, true, &err), 0);
    assert_int_equal(decide(s, 40, 0, &d), 0);
    assert_int_equal(info(s, 2).est_start, 60);
    assert_int_equal(jz_sched_job_ended(s, 3, 55, true, &err), 0);
    assert_int_equal(decide(s, 55, 0, &d), 1);
    assert_non_null(find(&d, 2));
    assert_int_equal(find(&d, 2)->parts[0].place.gpu_count, 8);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_preemption(void **state)
{
    struct jz_sched_class cls[] = {{.name = "scavenger", .rank = 10},
                                   {.name = "guaranteed", .rank = 90, .can_preempt = true}};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.classes = cls;
    cfg.class_count = 2;
    cfg.preempt_grace_s = 30;
    struct jz_sched *s = make(1, &cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    struct jz_sched_job low = {.id = 1,
                               .tenant = "lab",
                               .class_name = "scavenger",
                               .gpus = 4,
                               .time_limit_s = 86400,
                               .preemptible = true};
    struct jz_sched_job keep = {.id = 2, .tenant = "lab", .gpus = 4, .time_limit_s = 86400};
    assert_int_equal(jz_sched_submit(s, &low, 0, &err), 0);
    assert_int_equal(jz_sched_submit(s, &keep, 0, &err), 0);
    assert_int_equal(decide(s, 0, 0, &d), 2);
    struct jz_sched_job hi = {.id = 3,
                              .tenant = "hospital",
                              .class_name = "guaranteed",
                              .gpus = 4,
                              .time_limit_s = 3600,
                              .submit_time = 100};
    assert_int_equal(jz_sched_submit(s, &hi, 100, &err), 0);
    assert_int_equal(decide(s, 100, 0, &d), 1);
    assert_int_equal(d.items[0].action, JZ_SCHED_PREEMPT);
    assert_int_equal(d.items[0].job_id, 1); /* the preemptible one, never job 2 */
    assert_int_equal(d.items[0].for_job, 3);
    assert_int_equal(d.items[0].grace_s, 30);
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_PREEMPTING);
    assert_int_equal(info(s, 3).est_start, 130);
    assert_non_null(strstr(info(s, 3).reason_text, "preempted"));
    /* No second preemption while the first is in flight. */
    assert_int_equal(decide(s, 110, 0, &d), 0);
    assert_int_equal(jz_sched_job_requeue(s, 1, 125, &err), 0);
    assert_int_equal(decide(s, 125, 0, &d), 1);
    assert_non_null(find(&d, 3));
    assert_int_equal(info(s, 1).state, JZ_SCHED_JOB_PENDING);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_reservation(void **state)
{
    struct jz_sched *s = make(1, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    const char *nodes[] = {"n0"};
    struct jz_sched_reservation r = {.name = "demo",
                                     .tenant = "startup",
                                     .nodes = nodes,
                                     .node_count = 1,
                                     .gpus_per_node = 6,
                                     .start = 1000,
                                     .end = 2000};
    assert_int_equal(jz_sched_reservation_add(s, &r, &err), 0);
    submit(s, 1, "uni", 2, 5000, 0); /* fits in the 2 unreserved GPUs */
    submit(s, 2, "uni", 4, 500, 0);  /* ends before the window */
    submit(s, 3, "uni", 1, 5000, 0); /* would run into the window */
    assert_int_equal(decide(s, 0, JZ_SCHED_FULL, &d), 2);
    assert_non_null(find(&d, 1));
    assert_non_null(find(&d, 2));
    assert_int_equal(info(s, 3).reason, JZ_SCHED_REASON_RESERVATION);
    assert_int_equal(jz_sched_job_ended(s, 2, 400, true, &err), 0);
    submit(s, 4, "startup", 6, 900, 1000);
    assert_int_equal(decide(s, 1000, JZ_SCHED_FULL, &d), 1);
    assert_non_null(find(&d, 4));
    assert_int_equal(jz_sched_reservation_remove(s, "demo", &err), 0);
    assert_int_equal(jz_sched_reservation_remove(s, "demo", &err), JZ_ENOENT);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_dependencies_credits_never(void **state)
{
    struct jz_sched *s = make(1, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, "a", 8, 100, 0);
    uint64_t dep = 1;
    struct jz_sched_job j2 = {.id = 2,
                              .tenant = "a",
                              .gpus = 1,
                              .time_limit_s = 10,
                              .depends_on = &dep,
                              .depends_count = 1};
    assert_int_equal(jz_sched_submit(s, &j2, 0, &err), 0);
    uint64_t dep3 = 2;
    struct jz_sched_job j3 = j2;
    j3.id = 3;
    j3.depends_on = &dep3;
    assert_int_equal(jz_sched_submit(s, &j3, 0, &err), 0);
    assert_int_equal(decide(s, 0, JZ_SCHED_FULL, &d), 1);
    assert_int_equal(info(s, 2).state, JZ_SCHED_JOB_HELD);
    assert_int_equal(info(s, 2).reason, JZ_SCHED_REASON_DEPENDENCY);
    assert_int_equal(jz_sched_job_ended(s, 1, 50, true, &err), 0);
    assert_int_equal(decide(s, 50, 0, &d), 1);
    assert_non_null(find(&d, 2));
    /* 2 fails: 3 never becomes runnable. */
    assert_int_equal(jz_sched_job_ended(s, 2, 55, false, &err), 0);
    assert_int_equal(decide(s, 55, 0, &d), 0);
    assert_non_null(strstr(info(s, 3).reason_text, "did not end successfully"));
    assert_int_equal(jz_sched_cancel(s, 3, 56, &err), 0);

    assert_int_equal(jz_sched_tenant_set_credit(s, "broke", false, &err), 0);
    submit(s, 4, "broke", 1, 10, 60);
    submit(s, 5, "a", 16, 10, 60);
    struct jz_sched_job m = {
        .id = 6, .tenant = "a", .gpus = 1, .time_limit_s = 10, .model = "H100"};
    assert_int_equal(jz_sched_submit(s, &m, 60, &err), 0);
    assert_int_equal(decide(s, 60, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 4).reason, JZ_SCHED_REASON_CREDITS);
    assert_int_equal(info(s, 5).reason, JZ_SCHED_REASON_NEVER);
    assert_int_equal(info(s, 6).reason, JZ_SCHED_REASON_NEVER);
    assert_int_equal(jz_sched_tenant_set_credit(s, "broke", true, &err), 0);
    assert_int_equal(decide(s, 61, 0, &d), 1);
    assert_non_null(find(&d, 4));
    assert_int_equal(jz_sched_cancel(s, 4, 62, &err), JZ_EBUSY);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_bad_input(void **state)
{
    struct jz_sched *s = make(1, NULL);
    struct jz_error err = {0};
    struct jz_sched_job j = {.id = 1, .tenant = "a", .gpus = 1, .time_limit_s = 10};
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), 0);
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), JZ_EEXIST);
    j.id = 2;
    j.time_limit_s = 0;
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), JZ_ERANGE);
    j.time_limit_s = 10;
    j.gpus = 65;
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), JZ_ELIMIT);
    j.gpus = 1;
    j.class_name = "nope";
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), JZ_ENOENT);
    j.class_name = NULL;
    j.tenant = "";
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), JZ_EINVAL);
    assert_int_equal(jz_sched_job_ended(s, 99, 0, true, &err), JZ_ENOENT);
    struct jz_sched_node_spec dup = {.name = "n0", .topo = g4dn};
    assert_int_equal(jz_sched_node_add(s, &dup, NULL, &err), JZ_EEXIST);
    struct jz_sched_config bad;
    jz_sched_config_defaults(&bad);
    bad.half_life_s = 0;
    struct jz_sched *s2 = NULL;
    assert_int_equal(jz_sched_create(&bad, &s2, &err), JZ_ERANGE);
    jz_sched_destroy(s);
}

static void test_cpu_only_node(void **state)
{
    /* A node without GPUs (like a development machine) still runs CPU-only jobs. */
    struct jz_error err = {0};
    struct jz_topo *t;
    assert_int_equal(jz_topo_create(&t, &err), 0);
    for (int c = 0; c < 4; c++)
        assert_int_equal(jz_topo_add_core(t, 0, 0, &c, 1, &err), 0);
    assert_int_equal(jz_topo_finish(t, &err), 0);
    struct jz_sched *s;
    assert_int_equal(jz_sched_create(NULL, &s, &err), 0);
    struct jz_sched_node_spec ns = {.name = "laptop", .topo = t};
    assert_int_equal(jz_sched_node_add(s, &ns, NULL, &err), 0);
    struct jz_sched_job j = {.id = 1, .tenant = "me", .cpus = 3, .time_limit_s = 60};
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), 0);
    j.id = 2;
    j.cpus = 2;
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), 0);
    j.id = 3;
    j.gpus = 1;
    assert_int_equal(jz_sched_submit(s, &j, 0, &err), 0);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    assert_int_equal(decide(s, 0, JZ_SCHED_FULL, &d), 1);
    assert_int_equal(find(&d, 1)->parts[0].place.cpu_count, 3);
    assert_int_equal(info(s, 2).reason, JZ_SCHED_REASON_RESOURCES);
    assert_int_equal(info(s, 3).reason, JZ_SCHED_REASON_NEVER);
    assert_int_equal(jz_sched_job_ended(s, 1, 5, true, &err), 0);
    assert_int_equal(decide(s, 5, 0, &d), 1);
    assert_non_null(find(&d, 2));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
    jz_topo_destroy(t);
}

static void test_incremental_is_bounded(void **state)
{
    struct jz_sched *s = make(1, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, "a", 8, 1000, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    for (uint64_t id = 100; id < 400; id++)
        submit(s, id, "b", 1, 100, 1);
    /* An arrival looks at the head of each queue, not at the 300 jobs behind it. */
    assert_int_equal(decide(s, 2, 0, &d), 0);
    assert_int_equal(info(s, 100).reason, JZ_SCHED_REASON_RESOURCES);
    assert_int_equal(info(s, 100).est_start, 1000);
    assert_int_equal(info(s, 399).reason, JZ_SCHED_REASON_NEW);
    /* A full pass gives every waiting job its reason. */
    assert_int_equal(decide(s, 3, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 399).reason, JZ_SCHED_REASON_RESOURCES);
    /* The end of job 1 starts eight of them at once. */
    assert_int_equal(jz_sched_job_ended(s, 1, 500, true, &err), 0);
    assert_int_equal(decide(s, 500, 0, &d), 8);
    struct jz_sched_stats st;
    jz_sched_stats_get(s, &st);
    assert_int_equal(st.running, 8);
    assert_int_equal(st.pending, 292);
    assert_int_equal(st.gpus_busy, 8);
    assert_true(st.bytes > 0);
    struct jz_sched_node_info ni;
    assert_int_equal(jz_sched_node_info(s, 0, &ni, &err), 0);
    assert_int_equal(ni.free_gpus, 0);
    assert_int_equal(ni.gpu_busy, 0xff);
    assert_int_equal(ni.running, 8);
    assert_int_equal(ni.cores - ni.free_cores, 8);
    assert_int_equal(jz_sched_node_info(s, 1, &ni, &err), JZ_ENOENT);
    /* A node taken out of service gets nothing new. */
    assert_int_equal(jz_sched_node_set_up(s, 0, false, &err), 0);
    for (uint64_t id = 100; id < 108; id++) /* equal priority: the lowest ids went first */
        assert_int_equal(jz_sched_job_ended(s, id, 510, true, &err), 0);
    assert_int_equal(decide(s, 520, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(jz_sched_node_set_up(s, 0, true, &err), 0);
    assert_true(decide(s, 530, 0, &d) > 0);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_adopt_and_tenants(void **state)
{
    struct jz_sched *s = make(1, NULL);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    /* After a restart: job 5 still runs on GPUs 0-5 and cores 0-5. */
    struct jz_sched_job run = {
        .id = 5, .tenant = "a", .gpus = 6, .cpus_per_gpu = 1, .time_limit_s = 100};
    size_t gpus[] = {0, 1, 2, 3, 4, 5}, cores[] = {0, 1, 2, 3, 4, 5};
    struct jz_sched_part_spec part = {
        .node = 0, .gpus = gpus, .gpu_count = 6, .cores = cores, .core_count = 6};
    assert_int_equal(jz_sched_adopt_running(s, &run, &part, 1, 0, &err), 0);
    run.id = 6;
    run.gpus = 1;
    size_t taken[] = {5};
    struct jz_sched_part_spec busy = {.node = 0, .gpus = taken, .gpu_count = 1};
    assert_int_equal(jz_sched_adopt_running(s, &run, &busy, 1, 0, &err), JZ_EBUSY);
    assert_int_equal(info(s, 5).state, JZ_SCHED_JOB_RUNNING);
    submit(s, 7, "a", 2, 10, 1);
    assert_int_equal(decide(s, 1, 0, &d), 1);
    const struct jz_sched_decision *x = find(&d, 7);
    assert_int_equal(x->parts[0].place.gpus[0], 6);
    assert_int_equal(x->parts[0].place.gpus[1], 7);
    for (size_t i = 0; i < x->parts[0].place.core_count; i++)
        assert_true(x->parts[0].place.cores[i] >= 6);
    /* Weight and quota change at run time; an unknown class is refused. */
    struct jz_sched_tenant t = {.name = "a", .weight = 5, .max_gpus = 8};
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), 0);
    snprintf(t.class_name, sizeof(t.class_name), "vip");
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), JZ_ENOENT);
    t.class_name[0] = '\0';
    t.weight = 0;
    assert_int_equal(jz_sched_tenant_set(s, &t, &err), JZ_ERANGE);
    const char *nodes[] = {"nope"};
    struct jz_sched_reservation r = {.name = "r",
                                     .tenant = "a",
                                     .nodes = nodes,
                                     .node_count = 1,
                                     .gpus_per_node = 1,
                                     .start = 0,
                                     .end = 1};
    assert_int_equal(jz_sched_reservation_add(s, &r, &err), JZ_ENOENT);
    nodes[0] = "n0";
    r.gpus_per_node = 9;
    assert_int_equal(jz_sched_reservation_add(s, &r, &err), JZ_ERANGE);
    assert_int_equal(jz_sched_job_ended(s, 5, 50, true, &err), 0);
    double u;
    assert_int_equal(jz_sched_tenant_usage(s, "a", 50, &u, NULL, &err), 0);
    assert_true(u > 6 * 50 * 0.9); /* charged while it ran, adopted or not */
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_and_locality),
        cmocka_unit_test(test_fair_share),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_model_quota),
        cmocka_unit_test(test_model_quota_gang),
        cmocka_unit_test(test_easy_backfill),
        cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_reservation),
        cmocka_unit_test(test_dependencies_credits_never),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_cpu_only_node),
        cmocka_unit_test(test_incremental_is_bounded),
        cmocka_unit_test(test_adopt_and_tenants),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
