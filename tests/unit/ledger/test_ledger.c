/* Random ledger operations with invariants (see CMakeLists.txt). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/strutil.h"
#include "scheduler/sched.h"
#include "server/ledger.h"
#include "server/server.h"
#include "server/store.h"

void jz_server_request_commit(struct jz_server *srv)
{
    (void)srv;
}

/* The ledger calls it when credit comes back; no job table here. */
void jz_jobs_credit_changed(struct jz_jobs *jobs)
{
    (void)jobs;
}

#define TENANTS 3
#define REFS 40

struct model {
    double balance[TENANTS], held[TENANTS];
    bool metered[TENANTS];
    double hold[REFS]; /* < 0: no open hold */
    int hold_tenant[REFS];
    bool settled[REFS]; /* a ref is held once, settled once */
    int charges, releases;
};

static const char *tname(int t)
{
    static const char *const n[TENANTS] = {"inst", "startup", "public"};
    return n[t];
}

static void ref_name(int i, char *buf, size_t len)
{
    snprintf(buf, len, "job:%d:0", i + 1);
}

static bool near(double a, double b)
{
    return fabs(a - b) < 1e-6 * (1 + fabs(a) + fabs(b));
}

static void check(struct jz_ledger *l, const struct model *m)
{
    for (int t = 0; t < TENANTS; t++) {
        if (!near(jz_ledger_balance(l, tname(t)), m->balance[t]))
            fail_msg("%s: balance %f, model %f", tname(t), jz_ledger_balance(l, tname(t)),
                     m->balance[t]);
        assert_int_equal(jz_ledger_metered(l, tname(t)), m->metered[t]);
        double avail = jz_ledger_available(l, tname(t));
        if (m->metered[t])
            assert_true(near(avail, m->balance[t] - m->held[t]));
        else
            assert_true(isinf(avail));
    }
    for (int i = 0; i < REFS; i++) {
        char ref[32];
        double amount;
        ref_name(i, ref, sizeof ref);
        bool held = jz_ledger_held(l, ref, &amount);
        assert_int_equal(held, m->hold[i] >= 0);
        if (held)
            assert_true(near(amount, m->hold[i]));
    }
}

struct fixture {
    char dir[64], path[128];
    struct jz_server srv;
};

static void open_all(struct fixture *f, struct jz_ledger **l)
{
    struct jz_error err = {0};
    assert_int_equal(jz_store_sqlite_open(f->path, &f->srv.store, &err), 0);
    struct jz_sched_config cfg;
    jz_sched_config_defaults(&cfg);
    assert_int_equal(jz_sched_create(&cfg, &f->srv.sched, &err), 0);
    f->srv.config = json_object();
    assert_int_equal(jz_ledger_open(&f->srv, l, &err), 0);
}

static void close_all(struct fixture *f, struct jz_ledger *l)
{
    jz_ledger_close(l);
    struct jz_error err = {0};
    assert_int_equal(f->srv.store->ops->sync(f->srv.store, &err), 0);
    f->srv.store->ops->close(f->srv.store);
    jz_sched_destroy(f->srv.sched);
    json_decref(f->srv.config);
}

static void test_random(void **state)
{
    (void)state;
    struct fixture f = {0};
    snprintf(f.dir, sizeof f.dir, "/tmp/jz-ledger-XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    snprintf(f.path, sizeof f.path, "%s/state.db", f.dir);
    struct jz_ledger *l;
    open_all(&f, &l);
    struct model m = {0};
    for (int i = 0; i < REFS; i++)
        m.hold[i] = -1;
    srand(20261203);
    struct jz_error err;
    for (int step = 0; step < 4000; step++) {
        int t = rand() % TENANTS, op = rand() % 10, i = rand() % REFS;
        char ref[32];
        ref_name(i, ref, sizeof ref);
        double amount = (double)(rand() % 2000) / 100.0;
        memset(&err, 0, sizeof err);
        if (op == 0) { /* a purchase */
            if (amount > 0) {
                assert_int_equal(jz_ledger_add(l, tname(t), "purchase", amount, "admin", "buy",
                                               false, &err),
                                 0);
                m.balance[t] += amount;
                m.metered[t] = true;
            }
        } else if (op == 1) { /* an adjustment, down: refused below zero without override */
            bool override = rand() % 4 == 0;
            int rc = amount > 0 ? jz_ledger_add(l, tname(t), "adjustment", -amount, "admin",
                                                 "fix", override, &err)
                                : JZ_EINVAL;
            bool may = amount > 0 && (m.balance[t] - amount >= 0 || override);
            assert_int_equal(rc == 0, may);
            if (may) {
                m.balance[t] -= amount;
                m.metered[t] = true;
            }
        } else if (op <= 5) { /* a hold: refused beyond what is available */
            if (m.settled[i]) /* references are never reused (a job run, a booking) */
                continue;
            int rc = jz_ledger_hold(l, tname(t), ref, amount, "alice", "run", false, &err);
            if (m.hold[i] >= 0) { /* held already: refused */
                assert_int_equal(rc, JZ_EEXIST);
                continue;
            }
            bool fits = !m.metered[t] || amount <= m.balance[t] - m.held[t] + 1e-9;
            assert_int_equal(rc == 0, fits);
            if (!fits)
                assert_int_equal(rc, JZ_EAGAIN);
            if (rc == 0) {
                m.hold[i] = amount;
                m.hold_tenant[i] = t;
                m.held[t] += amount;
            }
        } else { /* a settlement, twice sometimes: charged once */
            if (m.hold[i] < 0)
                continue;
            int ht = m.hold_tenant[i];
            double charge = m.hold[i] * (double)(rand() % 101) / 100.0;
            struct jz_ledger_use use = {.gpu_seconds = charge * 3600, .plugin = "batch",
                                        .job_id = i + 1};
            for (int again = 0; again < 1 + (rand() % 2); again++)
                assert_int_equal(jz_ledger_settle(l, tname(ht), ref, charge, &use, "jazarid",
                                                  "ended", &err),
                                 0);
            m.balance[ht] -= charge;
            m.held[ht] -= m.hold[i];
            m.hold[i] = -1;
            m.settled[i] = true;
        }
        check(l, &m);
        if (step % 500 == 499) { /* a restart: everything from the store */
            close_all(&f, l);
            open_all(&f, &l);
            check(l, &m);
        }
    }
    /* A statement over everything: opening 0, closing = each balance. */
    for (int t = 0; t < TENANTS; t++) {
        json_t *st = NULL;
        memset(&err, 0, sizeof err);
        /* entries of this run are durable only after a sync */
        assert_int_equal(f.srv.store->ops->sync(f.srv.store, &err), 0);
        assert_int_equal(jz_ledger_statement(l, tname(t), 0, INT64_MAX / 2, &st, &err), 0);
        assert_true(near(json_number_value(json_object_get(st, "closing_balance")), m.balance[t]));
        assert_true(near(json_number_value(json_object_get(st, "opening_balance")), 0));
        assert_true(near(json_number_value(json_object_get(st, "closing_held")), m.held[t]));
        json_decref(st);
    }
    close_all(&f, l);
    jz_remove_tree(f.dir);
}

/* A booking's reference, once settled, is never held again: the store would keep the first
 * hold only, so memory must refuse the second too (before and after a restart). */
static void test_settled_ref(void **state)
{
    (void)state;
    struct fixture f = {0};
    snprintf(f.dir, sizeof f.dir, "/tmp/jz-ledger-XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    snprintf(f.path, sizeof f.path, "%s/state.db", f.dir);
    struct jz_ledger *l;
    open_all(&f, &l);
    struct jz_error err = {0};
    assert_int_equal(jz_ledger_add(l, "t", "purchase", 10, "admin", NULL, false, &err), 0);
    assert_int_equal(jz_ledger_hold(l, "t", "resv:1", 4, "tam", "slot", false, &err), 0);
    assert_int_equal(jz_ledger_settle(l, "t", "resv:1", 0, NULL, "tam", "cancelled", &err), 0);
    assert_int_equal(jz_ledger_hold(l, "t", "resv:1", 4, "tam", "slot", false, &err), JZ_EEXIST);
    close_all(&f, l);
    open_all(&f, &l);
    assert_int_equal(jz_ledger_hold(l, "t", "resv:1", 4, "tam", "slot", false, &err), JZ_EEXIST);
    assert_true(near(jz_ledger_available(l, "t"), 10));
    close_all(&f, l);
    jz_remove_tree(f.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random),
                                       cmocka_unit_test(test_settled_ref)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
