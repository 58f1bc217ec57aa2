/* How a class orders its waiting jobs: least attained service (bands over GPU-seconds received),
 * shortest time limit left first, preemption among jobs of one rank (margin, minimum run, at
 * most max_preemptions), starvation protection, and the configuration keys that set them. Each
 * test drives events with explicit times on one 8x T4 node. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"
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

static struct jz_sched *make(const struct jz_sched_config *cfg)
{
    struct jz_sched *s;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_create(cfg, &s, &err), 0);
    struct jz_sched_node_spec ns = {.name = "n0", .topo = g4dn};
    assert_int_equal(jz_sched_node_add(s, &ns, NULL, &err), 0);
    return s;
}

static void submit(struct jz_sched *s, uint64_t id, unsigned gpus, int64_t limit, bool preemptible,
                   int64_t now)
{
    struct jz_sched_job j = {.id = id,
                             .tenant = "lab",
                             .gpus = gpus,
                             .cpus_per_gpu = 1,
                             .time_limit_s = limit,
                             .preemptible = preemptible,
                             .submit_time = now};
    struct jz_error err = {0};
    assert_int_equal(jz_sched_submit(s, &j, now, &err), 0);
}

static size_t decide(struct jz_sched *s, int64_t now, unsigned flags, struct jz_sched_decisions *d)
{
    struct jz_error err = {0};
    jz_sched_decisions_clear(d);
    assert_int_equal(jz_sched_decide(s, now, flags, d, &err), 0);
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

static void requeue(struct jz_sched *s, uint64_t id, int64_t now)
{
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_requeue(s, id, now, &err), 0);
}

static void ended(struct jz_sched *s, uint64_t id, int64_t now)
{
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_ended(s, id, now, true, &err), 0);
}

/* Nice orders a job as if submitted that many seconds later: an older job with nice behind a
 * newer one, a negative nice ahead; out of range refused. */
static void test_nice(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.default_order = 0; /* by age alone */
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, 8, 3600, false, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    struct jz_sched_job j = {.id = 2, .tenant = "lab", .gpus = 8, .cpus_per_gpu = 1,
                             .time_limit_s = 3600, .submit_time = 10, .nice = 3600};
    assert_int_equal(jz_sched_submit(s, &j, 10, &err), 0);
    submit(s, 3, 8, 3600, false, 20);
    j.id = 4;
    j.submit_time = 30;
    j.nice = -15; /* as if at 15: ahead of 3, behind nothing else */
    assert_int_equal(jz_sched_submit(s, &j, 30, &err), 0);
    decide(s, 40, JZ_SCHED_FULL, &d);
    assert_true(info(s, 4).priority > info(s, 3).priority);
    assert_true(info(s, 3).priority > info(s, 2).priority);
    ended(s, 1, 100);
    assert_int_equal(decide(s, 100, 0, &d), 1);
    assert_non_null(find(&d, 4));
    j.id = 5;
    j.nice = JZ_SCHED_MAX_NICE + 1;
    assert_int_equal(jz_sched_submit(s, &j, 30, &err), JZ_ERANGE);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* The node is full with job 1 (8 GPUs); jobs wait behind it and start when it ends. */
static void test_shortest_first(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, 8, 3600, false, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    submit(s, 2, 8, 86400, false, 10); /* older, a day long */
    submit(s, 3, 8, 3600, false, 20);  /* newer, an hour */
    decide(s, 30, JZ_SCHED_FULL, &d);
    assert_true(info(s, 3).priority > info(s, 2).priority);
    ended(s, 1, 100);
    assert_int_equal(decide(s, 100, 0, &d), 1);
    assert_non_null(find(&d, 3));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);

    /* First come, first served ("age") keeps submission order. */
    cfg.default_order = 0;
    s = make(&cfg);
    jz_sched_decisions_init(&d);
    submit(s, 1, 8, 3600, false, 0);
    decide(s, 0, 0, &d);
    submit(s, 2, 8, 86400, false, 10);
    submit(s, 3, 8, 3600, false, 20);
    ended(s, 1, 100);
    assert_int_equal(decide(s, 100, 0, &d), 1);
    assert_non_null(find(&d, 2));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* Age outgrows the shortest-first handicap: a long job is passed by shorter ones for a bounded
 * time only. With the default weights a day-long 8-GPU job against 1-hour 1-GPU ones:
 * 7000 * (log2(1 + 192) - log2(2)) / 1000 per day, about 46 days. */
static void test_age_bounds_the_handicap(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.starve_after_s = 0; /* age alone */
    int64_t day = 86400;
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 100, 8, 100 * day, false, 0); /* the node is busy */
    decide(s, 0, 0, &d);
    submit(s, 1, 8, day, false, 0);
    submit(s, 2, 1, 3600, false, 10 * day);
    decide(s, 10 * day, JZ_SCHED_FULL, &d);
    assert_true(info(s, 2).priority > info(s, 1).priority);
    submit(s, 3, 1, 3600, false, 60 * day); /* fifty days on, the old long job is ahead */
    decide(s, 60 * day, JZ_SCHED_FULL, &d);
    assert_true(info(s, 1).priority > info(s, 3).priority);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* Least attained service: a job that already received 2 GPU-hours waits behind a fresh one of
 * the same length, though it is older; info says what it received. */
static void test_las_bands(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    struct jz_sched_class cls[] = {{.name = "normal", .rank = 50, .order = JZ_SCHED_ORDER_LAS}};
    cfg.classes = cls;
    cfg.class_count = 1;
    cfg.max_preemptions = 0; /* no preemption here: only the order */
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, 8, 86400, true, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    submit(s, 2, 8, 86400, true, 100);
    /* Job 1 is stopped after 900 s (as if preempted) and waits again: 8 x 900 = 2 GPU-hours. */
    requeue(s, 1, 900);
    assert_true(info(s, 1).attained_gpu_s == 7200.0);
    assert_int_equal(info(s, 1).las_band, 1);
    assert_int_equal(decide(s, 900, 0, &d), 1);
    assert_non_null(find(&d, 2)); /* fresh first, though job 1 is older */
    assert_int_equal(info(s, 2).las_band, 0);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* A job of the same rank is preempted for a far better-placed one only when it has run
 * preempt_min_run_s, is preemptible, and was not preempted max_preemptions times already. */
static void test_preemption_within_rank(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.preempt_grace_s = 60;
    cfg.max_preemptions = 1;
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, 8, 30 * 86400, true, 0); /* a month-long 8-GPU job: far behind */
    assert_int_equal(decide(s, 0, 0, &d), 1);
    submit(s, 2, 8, 3600, false, 600);
    /* It ran 10 minutes: less than preempt_min_run (30 minutes). Preemption within a rank is
     * looked at on full passes only. */
    assert_int_equal(decide(s, 600, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(decide(s, 1800, 0, &d), 0);
    assert_int_equal(decide(s, 1800, JZ_SCHED_FULL, &d), 1);
    assert_int_equal(d.items[0].action, JZ_SCHED_PREEMPT);
    assert_int_equal(d.items[0].job_id, 1);
    assert_int_equal(d.items[0].for_job, 2);
    requeue(s, 1, 1860);
    assert_int_equal(decide(s, 1860, 0, &d), 1);
    assert_non_null(find(&d, 2));
    assert_int_equal(info(s, 1).preemptions, 1);
    ended(s, 2, 2000);
    assert_int_equal(decide(s, 2000, 0, &d), 1);
    assert_non_null(find(&d, 1));
    /* Preempted once already (max_preemptions 1): left alone now. */
    submit(s, 3, 8, 3600, false, 9000);
    assert_int_equal(decide(s, 9000, JZ_SCHED_FULL, &d), 0);
    assert_int_equal(info(s, 3).state, JZ_SCHED_JOB_PENDING);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);

    /* Not preemptible: never stopped by its own rank. */
    s = make(&cfg);
    jz_sched_decisions_init(&d);
    submit(s, 1, 8, 30 * 86400, false, 0);
    decide(s, 0, 0, &d);
    submit(s, 2, 8, 3600, false, 600);
    assert_int_equal(decide(s, 7200, JZ_SCHED_FULL, &d), 0);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);

    /* Close behind (within preempt_margin): not stopped. */
    s = make(&cfg);
    jz_sched_decisions_init(&d);
    submit(s, 1, 8, 5400, true, 0);
    decide(s, 0, 0, &d);
    submit(s, 2, 8, 3600, false, 600);
    assert_int_equal(decide(s, 1800, JZ_SCHED_FULL, &d), 0);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* Starvation protection: a job whose time limit left is longer than twice the time the waiting
 * work needs to drain loses its handicaps once it has waited starve_after (checked on full passes),
 * and goes ahead of shorter jobs submitted after it. */
static void test_starvation_drain(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    int64_t day = 86400;
    submit(s, 100, 8, 3 * day, false, 0); /* holds the node */
    decide(s, 0, 0, &d);
    submit(s, 1, 1, 10 * day, false, 10); /* long */
    submit(s, 2, 4, 3600, false, 20);
    submit(s, 3, 4, 3600, false, 30);
    decide(s, 3600, JZ_SCHED_FULL, &d);
    assert_true(info(s, 2).priority > info(s, 1).priority);
    /* A day later: the waiting work (10 GPU-days and 8 GPU-hours) drains on 8 GPUs in about
     * 1.3 days; 10 days left is more than twice that. The short jobs are not promoted. */
    decide(s, day + 10, JZ_SCHED_FULL, &d);
    assert_true(info(s, 1).priority > info(s, 2).priority);
    assert_true(info(s, 1).priority > info(s, 3).priority);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);

    /* Off: the long job stays behind. */
    cfg.starve_after_s = 0;
    s = make(&cfg);
    jz_sched_decisions_init(&d);
    submit(s, 100, 8, 3 * day, false, 0);
    decide(s, 0, 0, &d);
    submit(s, 1, 1, 10 * day, false, 10);
    submit(s, 2, 4, 3600, false, 20);
    decide(s, day + 10, JZ_SCHED_FULL, &d);
    assert_true(info(s, 2).priority > info(s, 1).priority);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* A class that may preempt lower ranks and orders by service: it stops lower ranks on every
 * decision, but jobs of its own rank only as the head, on full passes. */
static void test_same_rank_only_on_full_passes(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    struct jz_sched_class cls[] = {{.name = "guaranteed",
                                    .rank = 90,
                                    .can_preempt = true,
                                    .order = JZ_SCHED_ORDER_LAS | JZ_SCHED_ORDER_SHORTEST}};
    cfg.classes = cls;
    cfg.class_count = 1;
    cfg.default_class[0] = '\0';
    memcpy(cfg.default_class, "guaranteed", sizeof("guaranteed"));
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    submit(s, 1, 8, 30 * 86400, true, 0);
    assert_int_equal(decide(s, 0, 0, &d), 1);
    submit(s, 2, 8, 3600, false, 3600);
    assert_int_equal(decide(s, 3600, 0, &d), 0); /* incremental: no same-rank preemption */
    assert_int_equal(decide(s, 3610, JZ_SCHED_FULL, &d), 1);
    assert_int_equal(d.items[0].action, JZ_SCHED_PREEMPT);
    assert_int_equal(d.items[0].job_id, 1);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

/* After a full pass, a job that joins its queue later (released by its dependency, or
 * submitted with an older submit time, as jazarid does for recovered jobs) is "not yet looked
 * at", not given the reason the queue had at that pass. */
static void test_reasons_after_a_full_pass(void **state)
{
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    struct jz_sched *s = make(&cfg);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    submit(s, 1, 8, 86400, false, 0); /* fills the node */
    assert_int_equal(decide(s, 0, 0, &d), 1);
    submit(s, 2, 4, 3600, false, 0); /* waits: resources */
    uint64_t dep = 1;
    struct jz_sched_job held = {.id = 3,
                                .tenant = "lab",
                                .gpus = 4,
                                .cpus_per_gpu = 1,
                                .time_limit_s = 3600,
                                .submit_time = 0,
                                .depends_on = &dep,
                                .depends_count = 1};
    assert_int_equal(jz_sched_submit(s, &held, 0, &err), 0);
    decide(s, 10, JZ_SCHED_FULL, &d);
    assert_int_equal(info(s, 2).reason, JZ_SCHED_REASON_RESOURCES);
    assert_int_equal(info(s, 3).state, JZ_SCHED_JOB_HELD);
    submit(s, 4, 4, 3600, false, 0); /* an old submit time, after the pass */
    assert_int_equal(info(s, 4).reason, JZ_SCHED_REASON_NEW);
    /* Job 1 ends: job 3 is released into the queue of 4-GPU jobs, not yet looked at. */
    assert_int_equal(jz_sched_job_ended(s, 1, 20, true, &err), 0);
    assert_int_equal(info(s, 3).state, JZ_SCHED_JOB_PENDING);
    assert_int_equal(info(s, 3).reason, JZ_SCHED_REASON_NEW);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    assert_non_null(v);
    return v;
}

static void test_config_keys(void **state)
{
    struct jz_error err = {0};
    struct jz_sched_parsed *p = NULL;
    json_t *v = parse("{\"order\": \"las\", \"weights\": {\"las\": 100, \"shortest\": 50},"
                      " \"las_thresholds\": [\"10m\", 3600, \"4h\"], \"preempt_margin\": 5,"
                      " \"preempt_min_run\": \"5m\", \"max_preemptions\": 2,"
                      " \"starve_after\": \"2d\", \"starve_drain_factor\": 3,"
                      " \"classes\": [{\"name\": \"batch\", \"order\": \"shortest\"},"
                      " {\"name\": \"normal\"}]}");
    assert_int_equal(jz_sched_config_parse(v, &p, &err), 0);
    assert_int_equal(p->cfg.default_order, JZ_SCHED_ORDER_LAS);
    assert_true(p->cfg.weight_las == 100.0);
    assert_int_equal(p->cfg.las_band_count, 3);
    assert_true(p->cfg.las_thresholds[0] == 600.0);
    assert_true(p->cfg.las_thresholds[2] == 14400.0);
    assert_int_equal(p->cfg.preempt_min_run_s, 300);
    assert_int_equal(p->cfg.max_preemptions, 2);
    assert_int_equal(p->cfg.starve_after_s, 2 * 86400);
    assert_int_equal(p->cfg.classes[0].order, JZ_SCHED_ORDER_SHORTEST);
    assert_int_equal(p->cfg.classes[1].order, JZ_SCHED_ORDER_LAS); /* the scheduler's order */
    struct jz_sched *s;
    assert_int_equal(jz_sched_create(&p->cfg, &s, &err), 0);
    jz_sched_destroy(s);
    jz_sched_parsed_free(p);
    json_decref(v);

    static const char *const bad[] = {
        "{\"order\": \"fifo\"}",
        "{\"las_thresholds\": [\"4h\", \"1h\"]}",
        "{\"las_thresholds\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}",
        "{\"classes\": [{\"name\": \"x\", \"order\": 3}]}",
        "{\"max_preemptions\": 300}",
        "{\"weights\": {\"shortest\": -1}}",
        "{\"starve_after\": 1e300}",
        "{\"preempt_min_run\": \"400d\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = parse(bad[i]);
        p = NULL;
        assert_int_not_equal(jz_sched_config_parse(v, &p, &err), 0);
        assert_null(p);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shortest_first),
        cmocka_unit_test(test_nice),
        cmocka_unit_test(test_age_bounds_the_handicap),
        cmocka_unit_test(test_las_bands),
        cmocka_unit_test(test_preemption_within_rank),
        cmocka_unit_test(test_starvation_drain),
        cmocka_unit_test(test_same_rank_only_on_full_passes),
        cmocka_unit_test(test_reasons_after_a_full_pass),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
