/* Booked compute slots: where jz_booking_place puts N GPUs (tight packing, conflicts named), and
 * how the scheduler treats jobs bound to a booking (only its nodes, only inside its window,
 * within its GPUs) and other tenants' jobs (kept out of the window). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/booking.h"
#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"

/* ---------- placement ---------- */

static void test_one_node_best_fit(void **state)
{
    (void)state;
    struct jz_booking_node n[] = {{"a", 8, 8}, {"b", 4, 4}, {"c", 8, 8}};
    struct jz_booking_hold h[] = {{"resv:1", 2, 5, 0, 100}}; /* c has 3 free in the window */
    unsigned take[3];
    char why[256];
    assert_int_equal(jz_booking_place(n, 3, h, 1, 3, 10, 50, take, why, sizeof why), 0);
    assert_int_equal(take[0], 0);
    assert_int_equal(take[1], 0);
    assert_int_equal(take[2], 3); /* the tightest node that holds them all */
    assert_int_equal(jz_booking_place(n, 3, h, 1, 4, 10, 50, take, why, sizeof why), 0);
    assert_int_equal(take[1], 4);
    /* Outside the hold's window c is empty again: 8 fit on a (the first of two equal). */
    assert_int_equal(jz_booking_place(n, 3, h, 1, 8, 100, 200, take, why, sizeof why), 0);
    assert_int_equal(take[0], 8);
    assert_int_equal(take[2], 0);
}

static void test_fewest_nodes(void **state)
{
    (void)state;
    struct jz_booking_node n[] = {{"a", 4, 4}, {"b", 8, 8}, {"c", 2, 2}, {"d", 8, 8}};
    unsigned take[4];
    char why[256];
    /* 10: one 8 and the tightest node that holds the 2 left (c), not a second 8. */
    assert_int_equal(jz_booking_place(n, 4, NULL, 0, 10, 0, 10, take, why, sizeof why), 0);
    assert_int_equal(take[1] + take[3], 8);
    assert_int_equal(take[2], 2);
    assert_int_equal(take[0], 0);
    /* 20: every GPU but two. */
    assert_int_equal(jz_booking_place(n, 4, NULL, 0, 20, 0, 10, take, why, sizeof why), 0);
    assert_int_equal(take[0] + take[1] + take[2] + take[3], 20);
    assert_int_equal(take[1], 8);
    assert_int_equal(take[3], 8);
    assert_int_equal(take[0], 4);
}

static void test_model_and_conflict(void **state)
{
    (void)state;
    /* a: 4 of the model among 8; b: 2 of 2. */
    struct jz_booking_node n[] = {{"a", 4, 8}, {"b", 2, 2}};
    struct jz_booking_hold h[] = {
        {"resv:7", 0, 6, 0, 100}, {"resv:7", 1, 1, 0, 100}, {"resv:9", 1, 1, 50, 150}};
    unsigned take[2] = {99, 99};
    char why[256];
    assert_int_equal(jz_booking_place(n, 2, h, 3, 3, 0, 100, take, why, sizeof why), JZ_EBUSY);
    assert_int_equal(take[0], 99); /* nothing written on failure */
    assert_non_null(strstr(why, "resv:7"));
    assert_non_null(strstr(why, "resv:9"));
    assert_non_null(strstr(why, "6 such GPUs, 2 of them free"));
    /* resv:7 is named once. */
    assert_null(strstr(strstr(why, "resv:7") + 1, "resv:7"));
    /* After resv:7 ends only resv:9 holds b's GPU: 4 of the model on a, 1 on b. */
    assert_int_equal(jz_booking_place(n, 2, h, 3, 5, 100, 120, take, why, sizeof why), 0);
    assert_int_equal(take[0], 4);
    assert_int_equal(take[1], 1);
    assert_int_equal(jz_booking_place(n, 2, h, 3, 0, 0, 10, take, why, sizeof why), JZ_EINVAL);
    assert_int_equal(jz_booking_place(n, 2, h, 3, 1, 10, 10, take, why, sizeof why), JZ_EINVAL);
}

/* ---------- jobs bound to a booking ---------- */

static struct jz_topo *g4dn; /* 8x T4 */

static int setup(void **state)
{
    (void)state;
    struct jz_error err = {0};
    return jz_topo_hwloc_load_xml(JZ_TEST_FIXTURES "/topologies/aws-g4dn-metal-8xT4.xml", &g4dn,
                                  &err);
}

static int teardown(void **state)
{
    (void)state;
    jz_topo_destroy(g4dn);
    return 0;
}

static struct jz_sched *make(size_t nodes)
{
    struct jz_sched *s;
    struct jz_error err = {0};
    struct jz_sched_config d;
    jz_sched_config_defaults(&d);
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
                   int64_t limit, const char *resv, int64_t now)
{
    struct jz_sched_job j = {.id = id,
                             .tenant = tenant,
                             .gpus = gpus,
                             .cpus_per_gpu = 1,
                             .time_limit_s = limit,
                             .submit_time = now,
                             .reservation = resv};
    struct jz_error err = {0};
    assert_int_equal(jz_sched_submit(s, &j, now, &err), 0);
}

static const struct jz_sched_decision *started(struct jz_sched *s, int64_t now, uint64_t id,
                                               struct jz_sched_decisions *d)
{
    struct jz_error err = {0};
    jz_sched_decisions_clear(d);
    assert_int_equal(jz_sched_decide(s, now, 0, d, &err), 0);
    for (size_t i = 0; i < d->count; i++)
        if (d->items[i].job_id == id && d->items[i].action == JZ_SCHED_START)
            return &d->items[i];
    return NULL;
}

static void book(struct jz_sched *s, const char *name, const char *tenant, const char *node,
                 unsigned gpus, int64_t start, int64_t end)
{
    const char *nodes[] = {node};
    struct jz_sched_reservation r = {
        .nodes = nodes, .node_count = 1, .gpus_per_node = gpus, .start = start, .end = end};
    snprintf(r.name, sizeof r.name, "%s", name);
    snprintf(r.tenant, sizeof r.tenant, "%s", tenant);
    struct jz_error err = {0};
    assert_int_equal(jz_sched_reservation_add(s, &r, &err), 0);
}

static void test_bound_job_only_on_its_nodes_in_window(void **state)
{
    (void)state;
    struct jz_sched *s = make(3);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    struct jz_error err = {0};
    /* resv:1 holds 4 GPUs on n1 and 2 on n2 during [100, 1000). */
    book(s, "resv:1/0", "lab", "n1", 4, 100, 1000);
    book(s, "resv:1/1", "lab", "n2", 2, 100, 1000);
    submit(s, 1, "lab", 4, 300, "resv:1", 0);
    assert_null(started(s, 0, 1, &d)); /* before the window: waits */
    const struct jz_sched_decision *x = started(s, 100, 1, &d);
    assert_non_null(x);
    assert_string_equal(x->parts[0].node_name, "n1"); /* never n0, which is empty */
    /* The booking's GPUs on n1 are used up: a second 4-GPU job waits (n2 holds only 2). */
    submit(s, 2, "lab", 4, 300, "resv:1", 100);
    assert_null(started(s, 100, 2, &d));
    submit(s, 3, "lab", 2, 300, "resv:1", 100);
    x = started(s, 100, 3, &d);
    assert_non_null(x);
    assert_string_equal(x->parts[0].node_name, "n2");
    /* A job that would run past the window's end never starts in it. */
    submit(s, 4, "lab", 1, 5000, "resv:1", 100);
    assert_null(started(s, 100, 4, &d));
    /* Another tenant cannot use the booking's name. */
    submit(s, 5, "other", 1, 60, "resv:1", 100);
    assert_null(started(s, 100, 5, &d));
    /* An unknown booking: waits. */
    submit(s, 6, "lab", 1, 60, "resv:404", 100);
    assert_null(started(s, 100, 6, &d));
    assert_int_equal(jz_sched_job_ended(s, 1, 200, true, &err), 0);
    assert_non_null(started(s, 200, 2, &d)); /* n1's share is free again */
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

static void test_others_kept_out_of_window(void **state)
{
    (void)state;
    struct jz_sched *s = make(1);
    struct jz_sched_decisions d;
    jz_sched_decisions_init(&d);
    book(s, "resv:2/0", "lab", "n0", 8, 1000, 2000);
    submit(s, 1, "other", 4, 5000, NULL, 0); /* would run into the window */
    assert_null(started(s, 0, 1, &d));
    submit(s, 2, "other", 4, 500, NULL, 0); /* ends before it opens */
    assert_non_null(started(s, 0, 2, &d));
    submit(s, 3, "lab", 4, 500, "resv:2", 1000);
    struct jz_error err = {0};
    assert_int_equal(jz_sched_job_ended(s, 2, 900, true, &err), 0);
    assert_non_null(started(s, 1000, 3, &d));
    /* After the booking is removed (cancelled), the other tenant's job may start. */
    assert_int_equal(jz_sched_reservation_remove(s, "resv:2/0", &err), 0);
    assert_non_null(started(s, 1001, 1, &d));
    jz_sched_decisions_free(&d);
    jz_sched_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_node_best_fit),
        cmocka_unit_test(test_fewest_nodes),
        cmocka_unit_test(test_model_and_conflict),
        cmocka_unit_test(test_bound_job_only_on_its_nodes_in_window),
        cmocka_unit_test(test_others_kept_out_of_window),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
