/* Unit tests of the SQLite store: batches applied in order by the writer thread, durability
 * across reopen, job records, events, users. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/store.h"

static char dir[256], path[300];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/jz-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/jazari.db", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static json_t *job(int64_t id, const char *user, const char *state)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:{s:i}}", "id", (json_int_t)id, "user", user,
                     "tenant", "physics", "state", state, "resources", "gpus", 2);
}

struct collect {
    json_t *jobs;
};

static int collect_job(void *arg, json_t *j)
{
    json_array_append(((struct collect *)arg)->jobs, j);
    return 0;
}

static void record_done(void *arg, uint64_t seq, bool ok)
{
    json_array_append_new(arg, json_pack("[I, b]", (json_int_t)seq, ok));
}

static void test_jobs_survive_reopen(void **state)
{
    struct jz_store *s;
    struct jz_error err = {0};
    assert_int_equal(jz_store_sqlite_open(path, &s, &err), 0);
    assert_false(s->ops->busy(s));
    for (int i = 1; i <= 50; i++) {
        json_t *j = job(i, i % 2 ? "alice" : "bob", "PENDING");
        assert_int_equal(s->ops->job_put(s, j, &err), 0);
        json_decref(j);
    }
    assert_true(s->ops->busy(s)); /* queued, not yet durable */
    assert_int_equal(s->ops->seal(s), 1);
    json_t *j = job(7, "alice", "RUNNING");
    assert_int_equal(s->ops->job_put(s, j, &err), 0); /* replace, not duplicate */
    json_decref(j);
    assert_int_equal(s->ops->event_add(s, 7, 1000, "state", "RUNNING", &err), 0);
    assert_int_equal(s->ops->event_add(s, 7, 2000, "state", "SUCCEEDED", &err), 0);
    assert_int_equal(s->ops->seal(s), 2);
    assert_int_equal(s->ops->seal(s), 3); /* an empty batch completes too, in order */
    /* The writer reports completions through the descriptor, in sequence order. */
    json_t *done = json_array();
    while (json_array_size(done) < 3) {
        struct pollfd p = {.fd = s->ops->completion_fd(s), .events = POLLIN};
        assert_true(poll(&p, 1, 10000) == 1);
        s->ops->completions(s, record_done, done);
    }
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(json_integer_value(json_array_get(json_array_get(done, i), 0)), i + 1);
        assert_true(json_is_true(json_array_get(json_array_get(done, i), 1)));
    }
    json_decref(done);
    assert_false(s->ops->busy(s));
    jz_store_close(s);

    assert_int_equal(jz_store_sqlite_open(path, &s, &err), 0);
    struct collect c = {json_array()};
    assert_int_equal(s->ops->jobs_each(s, collect_job, &c, &err), 0);
    assert_int_equal(json_array_size(c.jobs), 50);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c.jobs, 6), "state")),
                        "RUNNING");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(c.jobs, 0), "id")), 1);
    assert_int_equal(s->ops->job_max_id(s), 50);
    json_decref(c.jobs);
    /* Queued writes are made durable by close. */
    j = job(51, "carol", "PENDING");
    assert_int_equal(s->ops->job_put(s, j, &err), 0);
    json_decref(j);
    jz_store_close(s);
    assert_int_equal(jz_store_sqlite_open(path, &s, &err), 0);
    assert_int_equal(s->ops->job_max_id(s), 51);
    jz_store_close(s);
}

static int count_event(void *arg, int64_t t, const char *type, const char *detail)
{
    int *n = arg;
    assert_string_equal(type, "state");
    assert_true(t == 1000 || t == 2000);
    (*n)++;
    return 0;
}

static void test_events_in_order(void **state)
{
    struct jz_store *s;
    struct jz_error err = {0};
    assert_int_equal(jz_store_sqlite_open(path, &s, &err), 0);
    assert_int_equal(s->ops->event_add(s, 3, 1000, "state", "PENDING", &err), 0);
    assert_int_equal(s->ops->event_add(s, 3, 2000, "state", NULL, &err), 0);
    assert_int_equal(s->ops->event_add(s, 4, 1000, "state", "other job", &err), 0);
    assert_int_equal(s->ops->sync(s, &err), 0);
    int n = 0;
    assert_int_equal(s->ops->events_each(s, 3, count_event, &n, &err), 0);
    assert_int_equal(n, 2);
    jz_store_close(s);
}

static int user_seen(void *arg, const struct jz_store_user *u)
{
    int *n = arg;
    assert_string_equal(u->token_hash, strcmp(u->name, "alice") == 0 ? "aa" : "bb");
    (*n)++;
    return 0;
}

static void test_users_unique_token(void **state)
{
    struct jz_store *s;
    struct jz_error err = {0};
    assert_int_equal(jz_store_sqlite_open(path, &s, &err), 0);
    struct jz_store_user a = {"alice", "physics", "user", "aa", 1}, b = {"bob", "x", "admin", "bb", 2},
                         dup = {"mallory", "x", "user", "aa", 3};
    assert_int_equal(s->ops->user_put(s, &a, &err), 0);
    assert_int_equal(s->ops->user_put(s, &b, &err), 0);
    assert_int_equal(s->ops->sync(s, &err), 0);
    /* Two users can never share a token (hash): the batch holding the clash fails whole. */
    assert_int_equal(s->ops->user_put(s, &dup, &err), 0);
    assert_int_not_equal(s->ops->sync(s, &err), 0);
    int n = 0;
    assert_int_equal(s->ops->users_each(s, user_seen, &n, &err), 0);
    assert_int_equal(n, 2);
    jz_store_close(s);
}

/* The loop's side and the writer thread at once, as in jazarid: batches sealed while earlier ones
 * are being written, completions read as they come (run under TSan by scripts/test.sh). */
static void test_batches_while_writing(void **state)
{
    struct jz_store *s;
    struct jz_error err = {0};
    assert_int_equal(jz_store_sqlite_open(path, &s, &err), 0);
    json_t *done = json_array();
    const int batches = 300;
    for (int i = 1; i <= batches; i++) {
        json_t *j = job(i, "alice", "PENDING");
        assert_int_equal(s->ops->job_put(s, j, &err), 0);
        json_decref(j);
        assert_int_equal(s->ops->event_add(s, i, i, "state", "PENDING", &err), 0);
        assert_int_equal(s->ops->seal(s), (uint64_t)i);
        struct pollfd p = {.fd = s->ops->completion_fd(s), .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            s->ops->completions(s, record_done, done);
        (void)s->ops->full(s);
    }
    while (json_array_size(done) < (size_t)batches) {
        struct pollfd p = {.fd = s->ops->completion_fd(s), .events = POLLIN};
        assert_true(poll(&p, 1, 10000) == 1);
        s->ops->completions(s, record_done, done);
    }
    for (size_t i = 0; i < (size_t)batches; i++) {
        assert_int_equal(json_integer_value(json_array_get(json_array_get(done, i), 0)), i + 1);
        assert_true(json_is_true(json_array_get(json_array_get(done, i), 1)));
    }
    assert_false(s->ops->busy(s));
    json_decref(done);
    /* Close with batches still queued: the writer finishes them before it is joined. */
    for (int i = batches + 1; i <= batches + 20; i++) {
        json_t *j = job(i, "bob", "PENDING");
        assert_int_equal(s->ops->job_put(s, j, &err), 0);
        json_decref(j);
        s->ops->seal(s);
    }
    jz_store_close(s);
    assert_int_equal(jz_store_sqlite_open(path, &s, &err), 0);
    assert_int_equal(s->ops->job_max_id(s), batches + 20);
    jz_store_close(s);
}

static void test_open_bad_path(void **state)
{
    struct jz_store *s = NULL;
    struct jz_error err = {0};
    assert_int_not_equal(jz_store_sqlite_open("/nonexistent/dir/x.db", &s, &err), 0);
    assert_null(s);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/x.db"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobs_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_unique_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_while_writing, setup, teardown),
        cmocka_unit_test(test_open_bad_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
