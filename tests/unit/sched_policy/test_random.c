/* Random event sequences against the scheduler: submits (with dependencies, classes, CPU-only
 * jobs), ends, cancels, preemptions and requeues, nodes going down and up, incremental and full
 * decisions. A model of what runs where checks every decision: no GPU or core given twice, no
 * start on a down node, quotas held, and the scheduler's own counters agree with the model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

#define NODES 6
#define MAXJOBS 4000
#define QUOTA 6 /* tenant t0's GPU quota */

struct mjob {
    bool known, running, stopping;
    unsigned gpus;
    int tenant;
    size_t node;
    uint64_t mask;
    size_t cores[64];
    size_t ncores;
};

static struct mjob jobs[MAXJOBS + 1];
static uint64_t gpu_busy[NODES];
static uint64_t core_busy[NODES][4];
static bool node_up[NODES];
static unsigned in_use[4];
static uint64_t rng = 12345;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void release(size_t id)
{
    struct mjob *j = &jobs[id];
    gpu_busy[j->node] &= ~j->mask;
    for (size_t c = 0; c < j->ncores; c++)
        core_busy[j->node][j->cores[c] / 64] &= ~(1ull << (j->cores[c] % 64));
    in_use[j->tenant] -= j->gpus;
    j->running = j->stopping = false;
}

static void run(uint64_t seed)
{
    memset(jobs, 0, sizeof(jobs));
    memset(gpu_busy, 0, sizeof(gpu_busy));
    memset(core_busy, 0, sizeof(core_busy));
    memset(in_use, 0, sizeof(in_use));
    rng = seed;
    struct jz_error err = {0};
    struct jz_topo *topo[2];
    assert_int_equal(jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES "/topologies/aws-g4dn-metal-8xT4.xml",
                                            &topo[0], &err),
                     0);
    assert_int_equal(jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES
                                            "/topologies/dell-xe8640-4xH100-snc4.xml",
                                            &topo[1], &err),
                     0);
    struct jz_sched_class cls[] = {{.name = "low", .rank = 10},
                                   {.name = "normal", .rank = 50},
                                   {.name = "high", .rank = 90, .can_preempt = true}};
    struct jz_sched_tenant ten = {.name = "t0", .weight = 1, .max_gpus = QUOTA};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.classes = cls;
    cfg.class_count = 3;
    cfg.tenants = &ten;
    cfg.tenant_count = 1;
    cfg.preempt_grace_s = 5;
    struct jz_sched *s;
    assert_int_equal(jz_sched_create(&cfg, &s, &err), 0);
    for (size_t n = 0; n < NODES; n++) {
        char name[16];
        snprintf(name, sizeof(name), "n%zu", n);
        assert_int_equal(jz_sched_node_add(s, name, topo[n % 2], NULL, &err), 0);
        node_up[n] = true;
    }
    const char *names[] = {"t0", "t1", "t2", "t3"};
    const char *classes[] = {"low", "normal", "high"};
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    size_t next_id = 1, starts = 0, preempts = 0;
    for (int64_t now = 1; now < 6000; now++) {
        unsigned op = rnd(100);
        if (op < 40 && next_id <= MAXJOBS) {
            unsigned g = rnd(6) == 0 ? 0 : 1 + rnd(8);
            uint64_t dep = next_id > 1 && rnd(10) == 0 ? 1 + rnd((unsigned)next_id - 1) : 0;
            struct jz_sched_job j = {.id = next_id,
                                     .tenant = names[rnd(4)],
                                     .gpus = g,
                                     .cpus_per_gpu = rnd(3),
                                     .cpus = g ? 0 : 1 + rnd(8),
                                     .time_limit_s = 1 + rnd(300),
                                     .preemptible = rnd(3) == 0,
                                     .class_name = classes[rnd(3)],
                                     .submit_time = now,
                                     .depends_on = dep ? &dep : NULL,
                                     .depends_count = dep ? 1 : 0};
            assert_int_equal(jz_sched_submit(s, &j, now, &err), 0);
            jobs[next_id].known = true;
            jobs[next_id].gpus = g;
            jobs[next_id].tenant = j.tenant[1] - '0';
            next_id++;
        } else if (op < 70) {
            /* A running job, searched from a random place. */
            size_t id = 1 + rnd((unsigned)next_id);
            for (size_t k = 0; k < next_id && !(id < next_id && jobs[id].known &&
                                                jobs[id].running && !jobs[id].stopping);
                 k++)
                id = id + 1 < next_id ? id + 1 : 1;
            if (id < next_id && jobs[id].known && jobs[id].running && !jobs[id].stopping) {
                release(id);
                jobs[id].known = false;
                assert_int_equal(jz_sched_job_ended(s, id, now, rnd(4) != 0, &err), 0);
            }
        } else if (op < 78) {
            size_t id = 1 + rnd((unsigned)next_id);
            if (id < next_id && jobs[id].known) {
                int rc = jz_sched_cancel(s, id, now, &err);
                assert_int_equal(rc, jobs[id].running ? JZ_EBUSY : 0);
                if (rc == 0)
                    jobs[id].known = false;
            }
        } else if (op < 85) {
            /* Preempted jobs stop after their grace: requeue every stopping job. */
            for (size_t id = 1; id < next_id; id++)
                if (jobs[id].known && jobs[id].stopping && rnd(2) == 0) {
                    release(id);
                    assert_int_equal(jz_sched_job_requeue(s, id, now, &err), 0);
                }
        } else if (op < 88) {
            size_t n = rnd(NODES);
            node_up[n] = !node_up[n];
            assert_int_equal(jz_sched_node_set_up(s, n, node_up[n], &err), 0);
        }
        jz_sched_decisions_clear(&d);
        assert_int_equal(jz_sched_decide(s, now, rnd(10) == 0 ? JZ_SCHED_FULL : 0, &d, &err), 0);
        for (size_t i = 0; i < d.count; i++) {
            const struct jz_sched_decision *x = &d.items[i];
            struct mjob *j = &jobs[x->job_id];
            assert_true(j->known);
            if (x->action == JZ_SCHED_PREEMPT) {
                assert_true(j->running && !j->stopping);
                j->stopping = true;
                preempts++;
                continue;
            }
            assert_false(j->running);
            assert_true(node_up[x->node]);
            assert_int_equal(x->place.gpu_count, j->gpus);
            uint64_t mask = 0;
            for (size_t g = 0; g < x->place.gpu_count; g++)
                mask |= 1ull << x->place.gpus[g];
            assert_int_equal(mask & gpu_busy[x->node], 0);
            gpu_busy[x->node] |= mask;
            assert_true(x->place.core_count < 64);
            for (size_t c = 0; c < x->place.core_count; c++) {
                size_t core = x->place.cores[c];
                assert_int_equal(core_busy[x->node][core / 64] >> (core % 64) & 1, 0);
                core_busy[x->node][core / 64] |= 1ull << (core % 64);
                j->cores[c] = core;
            }
            j->ncores = x->place.core_count;
            j->mask = mask;
            j->node = x->node;
            j->running = true;
            in_use[j->tenant] += j->gpus;
            assert_true(in_use[0] <= QUOTA);
            starts++;
        }
        struct jz_sched_stats st;
        jz_sched_stats_get(s, &st);
        size_t busy = 0;
        for (size_t n = 0; n < NODES; n++)
            busy += (size_t)__builtin_popcountll(gpu_busy[n]);
        assert_int_equal(st.gpus_busy, busy);
    }
    /* Everything the model believes matches what the scheduler reports. */
    for (size_t id = 1; id < next_id; id++) {
        struct jz_sched_job_info in;
        int rc = jz_sched_job_info(s, id, &in, &err);
        if (!jobs[id].known) {
            assert_int_equal(rc, JZ_ENOENT);
            continue;
        }
        assert_int_equal(rc, 0);
        if (jobs[id].running)
            assert_int_equal(in.state,
                             jobs[id].stopping ? JZ_SCHED_JOB_PREEMPTING : JZ_SCHED_JOB_RUNNING);
        else
            assert_true(in.state == JZ_SCHED_JOB_PENDING || in.state == JZ_SCHED_JOB_HELD);
    }
    print_message("%zu starts, %zu preemptions\n", starts, preempts);
    assert_true(starts > 500);
    assert_true(preempts > 0);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
    jz_topo_destroy(topo[0]);
    jz_topo_destroy(topo[1]);
}

static void test_random_events(void **state)
{
    for (uint64_t seed = 1; seed <= 5; seed++)
        run(seed * 7919);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random_events)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
