/* Random event sequences against the scheduler: submits (with dependencies, classes, CPU-only
 * jobs and gangs over several nodes), ends, cancels, preemptions and requeues, nodes going down
 * and up, nodes removed and added again, incremental and full decisions. A model of what runs
 * where checks every decision over every part: no GPU or core given twice, cores local to their
 * part's GPUs, a gang's parts on distinct nodes and started all at once, no start on a down or
 * removed node, quotas held (overall and per site), removal refused exactly when something runs
 * there, "never" only for jobs that could never fit, and the scheduler's own counters agree
 * with the model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

#define NODES 6    /* node names n0..n5; a removed one may come back under a new index */
#define MAXIDX 256 /* node indexes over a run */
#define MAXJOBS 4000
#define MAXPARTS 3   /* gangs of 2 or 3 nodes */
#define QUOTA 6      /* tenant t0's GPU quota */
#define SITE_QUOTA 4 /* tenant t1's GPU quota in site "west" (nodes n0..n2) */

struct mpart {
    size_t node;
    uint64_t mask;
    size_t cores[64];
    size_t ncores;
};

struct mjob {
    bool known, running, stopping;
    unsigned gpus, nodes;
    int tenant;
    struct mpart parts[MAXPARTS];
    size_t nparts;
    struct jz_sched_job spec; /* for could_ever_fit at the end */
};

static struct mjob jobs[MAXJOBS + 1];
static uint64_t gpu_busy[MAXIDX];
static uint64_t core_busy[MAXIDX][4];
static bool idx_up[MAXIDX], idx_removed[MAXIDX];
static int idx_name[MAXIDX];   /* which of n0..n5 */
static size_t name_idx[NODES]; /* current index of each name, SIZE_MAX while removed */
static const struct jz_topo *idx_topo[MAXIDX];
static unsigned in_use[4], west_use_t1;
static uint64_t rng = 12345;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static bool west(size_t idx)
{
    return idx_name[idx] < 3;
}

static void release(size_t id)
{
    struct mjob *j = &jobs[id];
    for (size_t p = 0; p < j->nparts; p++) {
        struct mpart *q = &j->parts[p];
        gpu_busy[q->node] &= ~q->mask;
        for (size_t c = 0; c < q->ncores; c++)
            core_busy[q->node][q->cores[c] / 64] &= ~(1ull << (q->cores[c] % 64));
        if (j->tenant == 1 && west(q->node))
            west_use_t1 -= j->gpus;
    }
    in_use[j->tenant] -= j->gpus * (unsigned)j->nparts;
    j->nparts = 0;
    j->running = j->stopping = false;
}

static bool parts_on(size_t idx, size_t next_id)
{
    for (size_t id = 1; id < next_id; id++)
        for (size_t p = 0; jobs[id].known && p < jobs[id].nparts; p++)
            if (jobs[id].parts[p].node == idx)
                return true;
    return false;
}

static void add_node(struct jz_sched *s, int name, const struct jz_topo *topo)
{
    char nm[16];
    snprintf(nm, sizeof(nm), "n%d", name);
    struct jz_sched_node_spec ns = {.name = nm,
                                    .topo = topo,
                                    .site = name < 3 ? "west" : "east",
                                    .switch_name = name % 2 ? "odd" : NULL};
    struct jz_error err = {0};
    size_t idx;
    assert_int_equal(jz_sched_node_add(s, &ns, &idx, &err), 0);
    assert_true(idx < MAXIDX);
    idx_up[idx] = true;
    idx_removed[idx] = false;
    idx_name[idx] = name;
    idx_topo[idx] = topo;
    name_idx[name] = idx;
}

/* Checks one START against the model and records it. */
static void started(const struct jz_sched_decision *x, struct mjob *j)
{
    assert_false(j->running);
    assert_int_equal(x->part_count, j->nodes);
    assert_true(x->part_count <= MAXPARTS);
    for (size_t p = 0; p < x->part_count; p++) {
        const struct jz_sched_part *sp = &x->parts[p];
        const struct jz_place_result *pl = &sp->place;
        assert_true(sp->node < MAXIDX);
        assert_true(idx_up[sp->node] && !idx_removed[sp->node]);
        for (size_t q = 0; q < p; q++)
            assert_true(x->parts[q].node != sp->node);
        assert_int_equal(pl->gpu_count, j->gpus);
        uint64_t mask = 0;
        for (size_t g = 0; g < pl->gpu_count; g++)
            mask |= 1ull << pl->gpus[g];
        assert_int_equal(mask & gpu_busy[sp->node], 0);
        gpu_busy[sp->node] |= mask;
        assert_true(pl->core_count < 64);
        struct mpart *mp = &j->parts[p];
        for (size_t c = 0; c < pl->core_count; c++) {
            size_t core = pl->cores[c];
            assert_int_equal(core_busy[sp->node][core / 64] >> (core % 64) & 1, 0);
            core_busy[sp->node][core / 64] |= 1ull << (core % 64);
            bool local = pl->gpu_count == 0;
            for (size_t g = 0; g < pl->gpu_count && !local; g++) {
                const struct jz_topo_gpu *gpu = jz_topo_gpu_at(idx_topo[sp->node], pl->gpus[g]);
                for (size_t l = 0; l < gpu->local_core_count && !local; l++)
                    local = gpu->local_cores[l] == core;
            }
            assert_true(local);
            mp->cores[c] = core;
        }
        mp->ncores = pl->core_count;
        mp->mask = mask;
        mp->node = sp->node;
        if (j->tenant == 1 && west(sp->node))
            west_use_t1 += j->gpus;
    }
    j->nparts = x->part_count;
    j->running = true;
    in_use[j->tenant] += j->gpus * (unsigned)j->nparts;
    assert_true(in_use[0] <= QUOTA);
    assert_true(west_use_t1 <= SITE_QUOTA);
}

static void run(uint64_t seed, size_t *gang_starts)
{
    memset(jobs, 0, sizeof(jobs));
    memset(gpu_busy, 0, sizeof(gpu_busy));
    memset(core_busy, 0, sizeof(core_busy));
    memset(in_use, 0, sizeof(in_use));
    west_use_t1 = 0;
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
    struct jz_sched_site_quota wq = {.site = "west", .max_gpus = SITE_QUOTA};
    struct jz_sched_tenant ten[] = {
        {.name = "t0", .weight = 1, .max_gpus = QUOTA},
        {.name = "t1", .weight = 1, .site_quotas = &wq, .site_quota_count = 1}};
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    cfg.classes = cls;
    cfg.class_count = 3;
    cfg.tenants = ten;
    cfg.tenant_count = 2;
    cfg.preempt_grace_s = 5;
    struct jz_sched *s;
    assert_int_equal(jz_sched_create(&cfg, &s, &err), 0);
    for (int n = 0; n < NODES; n++)
        add_node(s, n, topo[n % 2]);
    const char *names[] = {"t0", "t1", "t2", "t3"};
    const char *classes[] = {"low", "normal", "high"};
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    size_t next_id = 1, starts = 0, preempts = 0, removals = 0;
    for (int64_t now = 1; now < 6000; now++) {
        unsigned op = rnd(100);
        if (op < 40 && next_id <= MAXJOBS) {
            unsigned g = rnd(6) == 0 ? 0 : 1 + rnd(8);
            unsigned nodes = rnd(8) == 0 ? 2 + rnd(2) : 0;
            if (nodes && g > 4)
                g = 1 + rnd(4); /* mostly gangs that some node set holds */
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
                                     .depends_count = dep ? 1 : 0,
                                     .nodes = nodes};
            assert_int_equal(jz_sched_submit(s, &j, now, &err), 0);
            struct mjob *m = &jobs[next_id];
            m->known = true;
            m->gpus = g;
            m->nodes = nodes > 1 ? nodes : 1;
            m->tenant = j.tenant[1] - '0';
            m->spec = j;
            m->spec.depends_on = NULL;
            m->spec.depends_count = 0;
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
            int name = (int)rnd(NODES);
            size_t n = name_idx[name];
            if (n != SIZE_MAX) {
                idx_up[n] = !idx_up[n];
                assert_int_equal(jz_sched_node_set_up(s, n, idx_up[n], &err), 0);
            }
        } else if (op < 90) {
            /* A node leaves (refused while anything runs there) or comes back. */
            int name = (int)rnd(NODES);
            size_t n = name_idx[name];
            if (n == SIZE_MAX) {
                add_node(s, name, topo[name % 2]);
            } else {
                int rc = jz_sched_node_remove(s, n, &err);
                assert_int_equal(rc, parts_on(n, next_id) ? JZ_EBUSY : 0);
                if (rc == 0) {
                    idx_removed[n] = true;
                    idx_up[n] = false;
                    name_idx[name] = SIZE_MAX;
                    removals++;
                    assert_int_equal(jz_sched_node_set_up(s, n, true, &err), JZ_ENOENT);
                }
            }
        }
        jz_sched_decisions_clear(&d);
        assert_int_equal(jz_sched_decide(s, now, rnd(10) == 0 ? JZ_SCHED_FULL : 0, &d, &err), 0);
        for (size_t i = 0; i < d.count; i++) {
            const struct jz_sched_decision *x = &d.items[i];
            struct mjob *j = &jobs[x->job_id];
            assert_true(j->known);
            if (x->action == JZ_SCHED_PREEMPT) {
                assert_true(j->running && !j->stopping);
                assert_null(x->parts);
                assert_int_equal(x->part_count, 0);
                j->stopping = true;
                preempts++;
                continue;
            }
            started(x, j);
            starts++;
            if (j->nodes > 1)
                (*gang_starts)++;
        }
        struct jz_sched_stats st;
        jz_sched_stats_get(s, &st);
        size_t busy = 0;
        for (size_t n = 0; n < MAXIDX; n++)
            busy += (size_t)__builtin_popcountll(gpu_busy[n]);
        assert_int_equal(st.gpus_busy, busy);
    }
    /* Everything the model believes matches what the scheduler reports; a job waiting with
     * reason "never" could indeed never fit on the nodes there are now. */
    jz_sched_decisions_clear(&d);
    assert_int_equal(jz_sched_decide(s, 6000, JZ_SCHED_FULL, &d, &err), 0);
    for (size_t i = 0; i < d.count; i++)
        if (d.items[i].action == JZ_SCHED_START)
            started(&d.items[i], &jobs[d.items[i].job_id]);
        else
            jobs[d.items[i].job_id].stopping = true;
    for (size_t id = 1; id < next_id; id++) {
        struct jz_sched_job_info in;
        int rc = jz_sched_job_info(s, id, &in, &err);
        if (!jobs[id].known) {
            assert_int_equal(rc, JZ_ENOENT);
            continue;
        }
        assert_int_equal(rc, 0);
        if (jobs[id].running) {
            assert_int_equal(in.state,
                             jobs[id].stopping ? JZ_SCHED_JOB_PREEMPTING : JZ_SCHED_JOB_RUNNING);
            assert_int_equal(in.part_count, jobs[id].nparts);
            assert_int_equal(in.node, jobs[id].parts[0].node);
        } else {
            assert_true(in.state == JZ_SCHED_JOB_PENDING || in.state == JZ_SCHED_JOB_HELD);
            if (in.reason == JZ_SCHED_REASON_NEVER)
                assert_false(jz_sched_could_ever_fit(s, &jobs[id].spec, NULL, 0));
        }
    }
    print_message("%zu starts, %zu preemptions, %zu removals\n", starts, preempts, removals);
    assert_true(starts > 500);
    assert_true(preempts > 0);
    assert_true(removals > 0);
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
    jz_topo_destroy(topo[0]);
    jz_topo_destroy(topo[1]);
}

static void test_random_events(void **state)
{
    size_t gang_starts = 0;
    for (uint64_t seed = 1; seed <= 5; seed++)
        run(seed * 7919, &gang_starts);
    print_message("%zu gang starts\n", gang_starts);
    assert_true(gang_starts > 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random_events)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
