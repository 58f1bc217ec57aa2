/* The "scheduler" JSON configuration: a full example, defaults, and refusals of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/config.h"

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    return j;
}

static void test_full_example(void **state)
{
    json_t *j = parse(
        "{\"half_life\": \"3d\", \"age_scale\": 3600, \"preempt_grace\": \"90s\","
        " \"weights\": {\"fairshare\": 5000, \"age\": 0, \"class\": 100, \"size\": 1},"
        " \"default_weight\": 2, \"backfill_depth\": 4, \"default_class\": \"normal\","
        " \"classes\": [{\"name\": \"guaranteed\", \"rank\": 90, \"can_preempt\": true},"
        "               {\"name\": \"normal\", \"rank\": 50}],"
        " \"tenants\": [{\"name\": \"uni\", \"weight\": 3, \"max_gpus\": 16,"
        "                \"class\": \"guaranteed\","
        "                \"site_quotas\": {\"rabat\": 16, \"casa\": 0},"
        "                \"model_quotas\": {\"A100\": 8}}],"
        " \"reservations\": [{\"name\": \"demo\", \"tenant\": \"acme\", \"nodes\": [\"a\", \"b\"],"
        "   \"gpus_per_node\": 4, \"start\": \"2026-12-01T09:00:00Z\","
        "   \"end\": \"2026-12-01T17:00:00Z\"}]}");
    struct jz_sched_parsed *p;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_config_parse(j, &p, &err), 0);
    assert_true(p->cfg.half_life_s == 3 * 86400.0);
    assert_true(p->cfg.age_scale_s == 3600.0);
    assert_int_equal(p->cfg.preempt_grace_s, 90);
    assert_true(p->cfg.weight_age == 0);
    assert_int_equal(p->cfg.backfill_depth, 4);
    assert_int_equal(p->cfg.class_count, 2);
    assert_true(p->cfg.classes[0].can_preempt);
    assert_int_equal(p->cfg.tenants[0].max_gpus, 16);
    assert_string_equal(p->cfg.tenants[0].class_name, "guaranteed");
    assert_int_equal(p->cfg.tenants[0].site_quota_count, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct jz_sched_site_quota *q = &p->cfg.tenants[0].site_quotas[i];
        assert_true((!strcmp(q->site, "rabat") && q->max_gpus == 16) ||
                    (!strcmp(q->site, "casa") && q->max_gpus == 0));
    }
    assert_int_equal(p->cfg.tenants[0].model_quota_count, 1);
    assert_string_equal(p->cfg.tenants[0].model_quotas[0].model, "A100");
    assert_int_equal(p->cfg.tenants[0].model_quotas[0].max_gpus, 8);
    assert_int_equal(p->reservation_count, 1);
    assert_int_equal(p->reservations[0].node_count, 2);
    assert_string_equal(p->reservations[0].nodes[1], "b");
    assert_int_equal(p->reservations[0].start, 1796115600); /* date -d 2026-12-01T09:00Z +%s */
    assert_int_equal(p->reservations[0].end - p->reservations[0].start, 8 * 3600);
    /* It makes a scheduler. */
    struct jz_sched *s;
    assert_int_equal(jz_sched_create(&p->cfg, &s, &err), 0);
    jz_sched_destroy(s);
    jz_sched_parsed_free(p);
    json_decref(j);
}

static void test_defaults_and_errors(void **state)
{
    struct jz_sched_parsed *p;
    struct jz_error err = {0};
    assert_int_equal(jz_sched_config_parse(NULL, &p, &err), 0);
    assert_true(p->cfg.half_life_s == 7 * 86400.0);
    jz_sched_parsed_free(p);
    static const char *bad[] = {
        "{\"half_lfe\": 3}",
        "{\"weights\": {\"fair\": 1}}",
        "{\"classes\": [{\"name\": \"x\", \"rank\": 101}]}",
        "{\"tenants\": [{\"weight\": 1}]}",
        "{\"tenants\": [{\"name\": \"a\", \"weight\": -1}]}",
        "{\"tenants\": [{\"name\": \"a\", \"site_quotas\": [16]}]}",
        "{\"tenants\": [{\"name\": \"a\", \"site_quotas\": {\"rabat\": -1}}]}",
        "{\"tenants\": [{\"name\": \"a\", \"site_quotas\": {\"rabat\": \"16\"}}]}",
        "{\"tenants\": [{\"name\": \"a\", \"site_quotas\": {\"\": 1}}]}",
        "{\"tenants\": [{\"name\": \"a\", \"site_quota\": {\"rabat\": 1}}]}",
        "{\"tenants\": [{\"name\": \"a\", \"model_quotas\": [8]}]}",
        "{\"tenants\": [{\"name\": \"a\", \"model_quotas\": {\"A100\": -1}}]}",
        "{\"tenants\": [{\"name\": \"a\", \"model_quotas\": {\"\": 1}}]}",
        "{\"reservations\": [{\"name\": \"r\", \"tenant\": \"t\", \"nodes\": [\"n\"],"
        " \"gpus_per_node\": 1, \"start\": \"2026-13-01T00:00:00Z\", \"end\": 5}]}",
        "{\"reservations\": [{\"name\": \"r\", \"tenant\": \"t\", \"nodes\": [\"n\"],"
        " \"gpus_per_node\": 1, \"start\": 10, \"end\": 5}]}",
        "{\"half_life\": \"soon\"}",
        "[]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = parse(bad[i]);
        p = NULL;
        assert_int_not_equal(jz_sched_config_parse(j, &p, &err), 0);
        assert_null(p);
        json_decref(j);
    }
    int64_t t;
    assert_int_equal(jz_sched_time_parse("2024-02-29T00:00:00Z", &t, &err), 0);
    assert_int_equal(t, 1709164800);
    assert_int_not_equal(jz_sched_time_parse("2023-02-29T00:00:00Z", &t, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_example),
        cmocka_unit_test(test_defaults_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
