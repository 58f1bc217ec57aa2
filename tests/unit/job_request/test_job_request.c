/* The workflow fields of a submission (server/job_request.c): array specifications, dependencies,
 * hold, nice and the webhook, each refused with the field named and accepted as documented. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/job_request.h"

/* jazarid's main.c defines it; nothing here runs a loop. */
struct jz_server;
void jz_server_request_commit(struct jz_server *srv)
{
    (void)srv;
}

static void array_ok(const char *spec, size_t count, unsigned throttle, int64_t first,
                     int64_t last)
{
    int64_t *v = NULL;
    size_t n = 0;
    unsigned t = 99;
    struct jz_error err = {0};
    int rc = jz_job_array_parse(spec, &v, &n, &t, &err);
    if (rc)
        fail_msg("%s: %s", spec, err.msg);
    assert_int_equal(n, count);
    assert_int_equal(t, throttle);
    assert_int_equal(v[0], first);
    assert_int_equal(v[n - 1], last);
    for (size_t i = 1; i < n; i++)
        assert_true(v[i] > v[i - 1]); /* sorted, no repeats */
    free(v);
}

static void array_bad(const char *spec, int code)
{
    int64_t *v = (int64_t *)1;
    size_t n = 7;
    unsigned t = 7;
    struct jz_error err = {0};
    assert_int_equal(jz_job_array_parse(spec, &v, &n, &t, &err), code);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_true(strlen(err.msg) > 0);
}

static void test_array_specs(void **state)
{
    (void)state;
    array_ok("0-99", 100, 0, 0, 99);
    array_ok("0-99%10", 100, 10, 0, 99);
    array_ok("0-9:3", 4, 0, 0, 9);
    array_ok("1,3,7-9", 5, 0, 1, 9);
    array_ok("5,5,1-5", 5, 0, 1, 5);      /* repeats are one element */
    array_ok("0-3%4", 4, 0, 0, 3);        /* a throttle of the whole array is none */
    array_ok("0-3%9", 4, 0, 0, 3);
    array_ok("10000000", 1, 0, 10000000, 10000000);
    array_ok("0-9999", 10000, 0, 0, 9999);
    array_bad("", JZ_EINVAL);
    array_bad("5-1", JZ_EINVAL);
    array_bad("0-10%0", JZ_EINVAL);
    array_bad("1,,2", JZ_EINVAL);
    array_bad("1-", JZ_EINVAL);
    array_bad("-1", JZ_EINVAL);
    array_bad("0-9:0", JZ_EINVAL);
    array_bad("0-9%", JZ_EINVAL);
    array_bad("0-9 ", JZ_EINVAL);
    array_bad("10000001", JZ_EINVAL);
    array_bad("99999999999999999999", JZ_EINVAL);
    array_bad("0-10000", JZ_ELIMIT);      /* 10,001 elements */
    array_bad("0-5000,6000-11000", JZ_ELIMIT);
}

/* A plugin that takes no parameters, and a parse of body against it. The request borrows its
 * strings from the body, kept until the next parse. */
static json_t *body;

static int parse(const char *text, bool admin, struct jz_job_request *out, char *field)
{
    json_t *desc = json_pack("{s:s, s:[]}", "name", "p", "params");
    json_decref(body);
    body = json_loads(text, 0, NULL);
    assert_non_null(body);
    struct jz_job_request_env env = {.plugin_desc = desc, .node_max_gpus = 8, .admin = admin};
    struct jz_error err = {0};
    field[0] = '\0';
    int rc = jz_job_request_parse(body, &env, out, field, 96, &err);
    json_decref(desc);
    return rc;
}

static void refused(const char *text, const char *want_field)
{
    struct jz_job_request r;
    char field[96];
    assert_int_not_equal(parse(text, false, &r, field), 0);
    assert_string_equal(field, want_field);
}

static void test_workflow_fields(void **state)
{
    (void)state;
    struct jz_job_request r;
    char field[96];
    assert_int_equal(parse("{\"plugin\":\"p\",\"array\":\"0-3%2\",\"hold\":true,\"nice\":60,"
                           "\"dependencies\":[{\"type\":\"afterok\",\"job\":4},"
                           "{\"type\":\"after\",\"job\":5}],"
                           "\"notify\":{\"url\":\"http://h:8/x\",\"secret\":\"0123456789abcdef\"}}",
                           false, &r, field),
                     0);
    assert_int_equal(r.array_count, 4);
    assert_int_equal(r.array_throttle, 2);
    assert_true(r.hold);
    assert_int_equal(r.nice, 60);
    assert_int_equal(r.ndeps, 2);
    assert_int_equal(r.deps[0].type, 1); /* afterok */
    assert_int_equal(r.deps[1].job, 5);
    assert_string_equal(r.notify_url, "http://h:8/x");
    jz_job_request_clear(&r);
    /* Only admins may raise a priority. */
    refused("{\"plugin\":\"p\",\"nice\":-1}", "nice");
    assert_int_equal(parse("{\"plugin\":\"p\",\"nice\":-1}", true, &r, field), 0);
    jz_job_request_clear(&r);
    refused("{\"plugin\":\"p\",\"nice\":1000001}", "nice");
    refused("{\"plugin\":\"p\",\"nice\":\"5\"}", "nice");
    refused("{\"plugin\":\"p\",\"hold\":1}", "hold");
    refused("{\"plugin\":\"p\",\"array\":5}", "array");
    refused("{\"plugin\":\"p\",\"array\":\"x\"}", "array");
    refused("{\"plugin\":\"p\",\"dependencies\":{}}", "dependencies");
    refused("{\"plugin\":\"p\",\"dependencies\":[{\"type\":\"afterok\",\"job\":1},7]}",
            "dependencies[1]");
    refused("{\"plugin\":\"p\",\"dependencies\":[{\"type\":\"never\",\"job\":1}]}",
            "dependencies[0].type");
    refused("{\"plugin\":\"p\",\"dependencies\":[{\"type\":\"after\",\"job\":0}]}",
            "dependencies[0].job");
    refused("{\"plugin\":\"p\",\"dependencies\":[{\"type\":\"after\",\"job\":1,\"x\":1}]}",
            "dependencies[0].x");
    char many[2048] = "{\"plugin\":\"p\",\"dependencies\":[";
    for (int i = 0; i < 17; i++)
        strcat(many, i ? ",{\"type\":\"after\",\"job\":1}" : "{\"type\":\"after\",\"job\":1}");
    strcat(many, "]}");
    refused(many, "dependencies");
    refused("{\"plugin\":\"p\",\"notify\":\"http://x\"}", "notify");
    refused("{\"plugin\":\"p\",\"notify\":{\"url\":\"ftp://x\",\"secret\":\"0123456789abcdef\"}}",
            "notify.url");
    refused("{\"plugin\":\"p\",\"notify\":{\"url\":\"http://\",\"secret\":\"0123456789abcdef\"}}",
            "notify.url");
    refused("{\"plugin\":\"p\",\"notify\":{\"url\":\"http://a b\",\"secret\":\"0123456789abcdef\"}}",
            "notify.url");
    refused("{\"plugin\":\"p\",\"notify\":{\"url\":\"http://a\"}}", "notify.secret");
    refused("{\"plugin\":\"p\",\"notify\":{\"url\":\"http://a\",\"secret\":\"short\"}}",
            "notify.secret");
    refused("{\"plugin\":\"p\",\"notify\":{\"url\":\"http://a\",\"secret\":\"0123456789abcdef\","
            "\"to\":1}}",
            "notify.to");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_specs),
        cmocka_unit_test(test_workflow_fields),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(body);
    return failed;
}
