/* The metrics registry: what it renders, byte for byte, for escaping, histograms, the series cap
 * and folding, and which families it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

struct text {
    char buf[65536];
    size_t len;
};

static void collect(void *arg, const char *data, size_t len)
{
    struct text *t = arg;
    assert_true(t->len + len < sizeof t->buf);
    memcpy(t->buf + t->len, data, len);
    t->len += len;
    t->buf[t->len] = '\0';
}

static const char *render(const struct jz_metrics *m, struct text *t)
{
    t->len = 0;
    t->buf[0] = '\0';
    jz_metrics_render(m, collect, t);
    return t->buf;
}

static struct jz_metric *add(struct jz_metrics *m, const struct jz_metric_spec *spec)
{
    struct jz_metric *f = NULL;
    struct jz_error err = {0};
    assert_int_equal(jz_metrics_add(m, spec, &f, &err), 0);
    assert_non_null(f);
    return f;
}

#define FOLDED_HEAD                                                                                \
    "# HELP jazari_metrics_series_folded_total Observations of a family at its series cap "        \
    "that went to its _other series.\n"                                                            \
    "# TYPE jazari_metrics_series_folded_total counter\n"

static void test_escape(void **state)
{
    char buf[64];
    assert_int_equal(jz_metrics_escape("a\\b\"c\nd", buf, sizeof buf), 10);
    assert_string_equal(buf, "a\\\\b\\\"c\\nd");
    /* Cut to fit, never half an escape. */
    assert_int_equal(jz_metrics_escape("ab\"", buf, 4), 2);
    assert_string_equal(buf, "ab");
}

static void test_counter_hostile_labels(void **state)
{
    struct jz_metrics *m = jz_metrics_create();
    struct jz_metric *c = add(m, &(struct jz_metric_spec){.type = JZ_METRIC_COUNTER,
                                                          .name = "x_requests_total",
                                                          .help = "Requests, a \\ b.",
                                                          .labels = {"tenant", "user"}});
    const char *evil[] = {"te\"n\\ant\nx", "ü"};
    jz_metric_inc(c, evil, 1);
    jz_metric_inc(c, evil, 2.5);
    jz_metric_inc(c, evil, -4); /* counters never go down */
    jz_metric_inc(c, (const char *const[]){"plain", NULL}, 1);
    struct text t;
    assert_string_equal(render(m, &t),
                        "# HELP x_requests_total Requests, a \\\\ b.\n"
                        "# TYPE x_requests_total counter\n"
                        "x_requests_total{tenant=\"te\\\"n\\\\ant\\nx\",user=\"ü\"} 3.5\n"
                        "x_requests_total{tenant=\"plain\",user=\"\"} 1\n" FOLDED_HEAD);
    double v = 0;
    assert_true(jz_metric_get(c, evil, &v));
    assert_true(v == 3.5);
    assert_false(jz_metric_get(c, (const char *const[]){"nobody", ""}, &v));
    jz_metrics_destroy(m);
}

static void test_histogram_buckets(void **state)
{
    static const double b[] = {1, 2, 5};
    struct jz_metrics *m = jz_metrics_create();
    struct jz_metric *h = add(m, &(struct jz_metric_spec){.type = JZ_METRIC_HISTOGRAM,
                                                          .name = "x_seconds",
                                                          .help = "Durations.",
                                                          .labels = {"kind"},
                                                          .buckets = b,
                                                          .nbuckets = 3});
    const char *k[] = {"full"};
    /* le is inclusive: 1 counts in le="1", 5 in le="5"; 7 only in +Inf; NaN nowhere. */
    const double obs[] = {0.5, 1, 1.5, 5, 7, -1};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        jz_metric_observe(h, k, obs[i]);
    jz_metric_observe(h, k, 0.0 / 0.0);
    jz_metric_observe(h, (const char *const[]){"incremental"}, 0.25);
    struct text t;
    assert_string_equal(render(m, &t), "# HELP x_seconds Durations.\n"
                                       "# TYPE x_seconds histogram\n"
                                       "x_seconds_bucket{kind=\"full\",le=\"1\"} 3\n"
                                       "x_seconds_bucket{kind=\"full\",le=\"2\"} 4\n"
                                       "x_seconds_bucket{kind=\"full\",le=\"5\"} 5\n"
                                       "x_seconds_bucket{kind=\"full\",le=\"+Inf\"} 6\n"
                                       "x_seconds_sum{kind=\"full\"} 14\n"
                                       "x_seconds_count{kind=\"full\"} 6\n"
                                       "x_seconds_bucket{kind=\"incremental\",le=\"1\"} 1\n"
                                       "x_seconds_bucket{kind=\"incremental\",le=\"2\"} 1\n"
                                       "x_seconds_bucket{kind=\"incremental\",le=\"5\"} 1\n"
                                       "x_seconds_bucket{kind=\"incremental\",le=\"+Inf\"} 1\n"
                                       "x_seconds_sum{kind=\"incremental\"} 0.25\n"
                                       "x_seconds_count{kind=\"incremental\"} 1\n" FOLDED_HEAD);
    jz_metrics_destroy(m);
}

static void test_histogram_no_labels(void **state)
{
    static const double b[] = {0.001, 0.1};
    struct jz_metrics *m = jz_metrics_create();
    struct jz_metric *h = add(m, &(struct jz_metric_spec){.type = JZ_METRIC_HISTOGRAM,
                                                          .name = "x_wait_seconds",
                                                          .help = "Waits.",
                                                          .buckets = b,
                                                          .nbuckets = 2});
    jz_metric_observe(h, NULL, 0.1);
    jz_metric_observe(h, NULL, 0.0005);
    struct text t;
    assert_string_equal(render(m, &t), "# HELP x_wait_seconds Waits.\n"
                                       "# TYPE x_wait_seconds histogram\n"
                                       "x_wait_seconds_bucket{le=\"0.001\"} 1\n"
                                       "x_wait_seconds_bucket{le=\"0.1\"} 2\n"
                                       "x_wait_seconds_bucket{le=\"+Inf\"} 2\n"
                                       "x_wait_seconds_sum 0.1005\n"
                                       "x_wait_seconds_count 2\n" FOLDED_HEAD);
    jz_metrics_destroy(m);
}

static void test_cardinality_cap(void **state)
{
    struct jz_metrics *m = jz_metrics_create();
    struct jz_metric *c = add(m, &(struct jz_metric_spec){.type = JZ_METRIC_COUNTER,
                                                          .name = "x_jobs_total",
                                                          .help = "Jobs.",
                                                          .labels = {"tenant"},
                                                          .max_series = 3});
    struct jz_metric *g = add(m, &(struct jz_metric_spec){.type = JZ_METRIC_GAUGE,
                                                          .name = "x_queue",
                                                          .help = "Queue.",
                                                          .labels = {"tenant", "reason"},
                                                          .max_series = 2});
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "t%d", i % 10);
        jz_metric_inc(c, (const char *const[]){name}, 1);
    }
    /* Three kept (100 each), the other seven folded into _other (700). */
    assert_int_equal(jz_metric_series(c), 4);
    assert_int_equal(jz_metric_folded(c), 700);
    double v = 0;
    assert_true(jz_metric_get(c, (const char *const[]){"t2"}, &v) && v == 100);
    assert_true(jz_metric_get(c, (const char *const[]){JZ_METRICS_OTHER}, &v) && v == 700);
    assert_false(jz_metric_get(c, (const char *const[]){"t3"}, &v));
    /* A gauge's folded series sums what was set into it. */
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "t%d", i);
        jz_metric_set(g, (const char *const[]){name, "resources"}, i + 1);
    }
    assert_true(jz_metric_get(g, (const char *const[]){"_other", "_other"}, &v) && v == 3 + 4 + 5);
    struct text t;
    const char *out = render(m, &t);
    assert_non_null(strstr(out, "x_queue{tenant=\"_other\",reason=\"_other\"} 12\n"));
    assert_non_null(strstr(out, "jazari_metrics_series_folded_total{family=\"x_jobs_total\"} 700\n"
                                "jazari_metrics_series_folded_total{family=\"x_queue\"} 3\n"));
    /* Clearing empties the family (the folded count stays: it is a counter). */
    jz_metric_clear(g);
    assert_int_equal(jz_metric_series(g), 0);
    jz_metric_set(g, (const char *const[]){"t9", "new"}, 1);
    assert_true(jz_metric_get(g, (const char *const[]){"t9", "new"}, &v) && v == 1);
    assert_int_equal(jz_metric_folded(g), 3);
    jz_metrics_destroy(m);
}

static void test_many_series(void **state)
{
    /* The index stays correct across thousands of series (and collisions). */
    struct jz_metrics *m = jz_metrics_create();
    struct jz_metric *g = add(m, &(struct jz_metric_spec){.type = JZ_METRIC_GAUGE,
                                                          .name = "x_gpus",
                                                          .help = "GPUs.",
                                                          .labels = {"node", "gpu"},
                                                          .max_series = 5000});
    char node[32], gpu[8];
    for (int i = 0; i < 5000; i++) {
        snprintf(node, sizeof node, "n%d", i / 8);
        snprintf(gpu, sizeof gpu, "%d", i % 8);
        jz_metric_set(g, (const char *const[]){node, gpu}, i);
    }
    for (int i = 0; i < 5000; i += 7) {
        double v = -1;
        snprintf(node, sizeof node, "n%d", i / 8);
        snprintf(gpu, sizeof gpu, "%d", i % 8);
        assert_true(jz_metric_get(g, (const char *const[]){node, gpu}, &v));
        assert_true(v == i);
    }
    /* ("n1", "23") and ("n12", "3") are different sets. */
    assert_false(jz_metric_get(g, (const char *const[]){"n12", "3"}, &(double){0}) &&
                 jz_metric_get(g, (const char *const[]){"n1", "23"}, &(double){0}));
    assert_int_equal(jz_metric_folded(g), 0);
    jz_metrics_destroy(m);
}

static void test_values_cut_and_cleaned(void **state)
{
    struct jz_metrics *m = jz_metrics_create();
    struct jz_metric *g =
        add(m, &(struct jz_metric_spec){
                   .type = JZ_METRIC_GAUGE, .name = "x_info", .help = "Info.", .labels = {"v"}});
    /* 300 bytes of two-byte characters: cut at 254 bytes (127 characters), not mid-character. */
    char longv[301];
    for (int i = 0; i < 150; i++)
        memcpy(longv + 2 * i, "é", 2);
    longv[300] = '\0';
    jz_metric_set(g, (const char *const[]){longv}, 1);
    jz_metric_set(g, (const char *const[]){"bad\xff\xc3 utf8"}, 2);
    struct text t;
    const char *out = render(m, &t);
    char want[400] = "x_info{v=\"";
    for (int i = 0; i < 127; i++)
        strcat(want, "é");
    strcat(want, "\"} 1\nx_info{v=\"bad?? utf8\"} 2\n");
    assert_non_null(strstr(out, want));
    jz_metrics_destroy(m);
}

static void test_numbers(void **state)
{
    struct jz_metrics *m = jz_metrics_create();
    struct jz_metric *g =
        add(m, &(struct jz_metric_spec){
                   .type = JZ_METRIC_GAUGE, .name = "x_num", .help = "Numbers.", .labels = {"k"}});
    jz_metric_set(g, (const char *const[]){"a"}, 0.1);
    jz_metric_set(g, (const char *const[]){"b"}, 1e20);
    jz_metric_set(g, (const char *const[]){"c"}, -3);
    jz_metric_set(g, (const char *const[]){"d"}, 1.0 / 0.0);
    jz_metric_set(g, (const char *const[]){"e"}, 1.0 / 3.0);
    jz_metric_add(g, (const char *const[]){"c"}, 1);
    struct text t;
    assert_non_null(strstr(render(m, &t), "x_num{k=\"a\"} 0.1\n"
                                          "x_num{k=\"b\"} 1e+20\n"
                                          "x_num{k=\"c\"} -2\n"
                                          "x_num{k=\"d\"} +Inf\n"
                                          "x_num{k=\"e\"} 0.33333333333333331\n"));
    jz_metrics_destroy(m);
}

static void test_refused_specs(void **state)
{
    static const double up[] = {1, 2}, down[] = {2, 1};
    const struct jz_metric_spec bad[] = {
        {.type = JZ_METRIC_GAUGE, .name = "1x", .help = "h"},
        {.type = JZ_METRIC_GAUGE, .name = "x-y", .help = "h"},
        {.type = JZ_METRIC_GAUGE, .name = "x", .help = "two\nlines"},
        {.type = JZ_METRIC_COUNTER, .name = "x_requests", .help = "h"},
        {.type = JZ_METRIC_GAUGE, .name = "x_total", .help = "h"},
        {.type = JZ_METRIC_GAUGE, .name = "x", .help = "h", .labels = {"__reserved"}},
        {.type = JZ_METRIC_GAUGE, .name = "x", .help = "h", .labels = {"a:b"}},
        {.type = JZ_METRIC_GAUGE, .name = "x", .help = "h", .labels = {"a", "a"}},
        {.type = JZ_METRIC_HISTOGRAM,
         .name = "x",
         .help = "h",
         .labels = {"le"},
         .buckets = up,
         .nbuckets = 2},
        {.type = JZ_METRIC_HISTOGRAM, .name = "x", .help = "h", .buckets = down, .nbuckets = 2},
        {.type = JZ_METRIC_HISTOGRAM, .name = "x", .help = "h"},
        {.type = JZ_METRIC_GAUGE, .name = "x", .help = "h", .buckets = up, .nbuckets = 2},
        {.type = JZ_METRIC_GAUGE, .name = "dup", .help = "h"},
    };
    struct jz_metrics *m = jz_metrics_create();
    add(m, &(struct jz_metric_spec){.type = JZ_METRIC_GAUGE, .name = "dup", .help = "h"});
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct jz_metric *f = NULL;
        struct jz_error err = {0};
        assert_int_equal(jz_metrics_add(m, &bad[i], &f, &err), JZ_EINVAL);
        assert_null(f);
        assert_true(err.msg[0] != '\0');
    }
    /* Wrong-type observations and a NULL family do nothing. */
    struct jz_metric *g =
        add(m, &(struct jz_metric_spec){.type = JZ_METRIC_GAUGE, .name = "ok", .help = "h"});
    jz_metric_inc(g, NULL, 1);
    jz_metric_observe(g, NULL, 1);
    jz_metric_inc(NULL, NULL, 1);
    jz_metric_observe(NULL, NULL, 1);
    assert_int_equal(jz_metric_series(g), 0);
    jz_metrics_destroy(m);
    jz_metrics_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_counter_hostile_labels),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_histogram_no_labels),
        cmocka_unit_test(test_cardinality_cap),
        cmocka_unit_test(test_many_series),
        cmocka_unit_test(test_values_cut_and_cleaned),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_refused_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
