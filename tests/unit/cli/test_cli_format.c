/* Tests of the jazari client's output helpers: times, durations, exit codes, error lines, tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clients/cli.h"
#include "common/time.h"

static void test_time(void **state)
{
    int64_t ms = 0;
    assert_int_equal(jz_cli_time_parse("2026-11-25T19:00:00.123Z", &ms), 0);
    assert_int_equal(ms, INT64_C(1795633200123));
    assert_int_equal(jz_cli_time_parse("2026-11-25T19:00:00Z", &ms), 0);
    assert_int_equal(ms, INT64_C(1795633200000));
    assert_int_equal(jz_cli_time_parse("2026-11-25T19:00:00.5Z", &ms), 0);
    assert_int_equal(ms, INT64_C(1795633200500));
    assert_int_not_equal(jz_cli_time_parse("2026-11-25 19:00:00", &ms), 0);
    assert_int_not_equal(jz_cli_time_parse("2026-13-25T19:00:00Z", &ms), 0);
    assert_int_not_equal(jz_cli_time_parse("2026-11-25T19:00:00Zjunk", &ms), 0);
    assert_int_not_equal(jz_cli_time_parse(NULL, &ms), 0);

    setenv("TZ", "UTC", 1);
    char buf[32];
    jz_cli_time_local("2026-11-25T19:00:00.123Z", buf, sizeof buf);
    assert_string_equal(buf, "2026-11-25 19:00:00");
    setenv("TZ", "Europe/Paris", 1);
    jz_cli_time_local("2026-11-25T19:00:00.123Z", buf, sizeof buf);
    assert_string_equal(buf, "2026-11-25 20:00:00");
    jz_cli_time_local(NULL, buf, sizeof buf);
    assert_string_equal(buf, "-");
    jz_cli_time_local("garbage", buf, sizeof buf);
    assert_string_equal(buf, "-");
}

/* The durations the client accepts (--time, --timeout) and prints (TIME column). */
static void test_durations(void **state)
{
    int64_t s = 0;
    struct jz_error err = {0};
    assert_int_equal(jz_duration_parse("10m", &s, &err), 0);
    assert_int_equal(s, 600);
    assert_int_equal(jz_duration_parse("1h30m", &s, &err), 0);
    assert_int_equal(s, 5400);
    assert_int_equal(jz_duration_parse("01:00:05", &s, &err), 0);
    assert_int_equal(s, 3605);
    assert_int_not_equal(jz_duration_parse("ten", &s, &err), 0);
    char buf[32];
    jz_duration_format(3725, buf, sizeof buf);
    assert_string_equal(buf, "1h2m5s");
}

static json_t *job(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_exit_codes(void **state)
{
    static const struct {
        const char *json;
        int code;
    } cases[] = {
        {"{\"state\": \"SUCCEEDED\", \"exit_code\": 0}", 0},
        {"{\"state\": \"FAILED\", \"exit_code\": 3, \"signal\": null}", 3},
        {"{\"state\": \"FAILED\", \"exit_code\": null, \"signal\": 9}", 137},
        {"{\"state\": \"FAILED\", \"exit_code\": null, \"signal\": null}", 1},
        {"{\"state\": \"FAILED\"}", 1},
        {"{\"state\": \"FAILED\", \"exit_code\": 0}", 1},
        {"{\"state\": \"FAILED\", \"exit_code\": 300}", 1},
        {"{\"state\": \"TIMEOUT\", \"signal\": 15}", 124},
        {"{\"state\": \"CANCELLED\", \"signal\": 15}", 130},
        {"{\"state\": \"RUNNING\"}", -1},
        {"{\"state\": \"PENDING\"}", -1},
        {"{}", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = job(cases[i].json);
        assert_int_equal(jz_cli_job_exit_code(j), cases[i].code);
        json_decref(j);
    }
    assert_true(jz_cli_state_is_final("TIMEOUT"));
    assert_false(jz_cli_state_is_final("RUNNING"));
    assert_false(jz_cli_state_is_final(NULL));
}

static void test_server_error(void **state)
{
    char buf[512];
    const char *b1 = "{\"error\": {\"code\": \"invalid_param\", \"message\": \"params.lr: expected "
                     "a number\", \"field\": \"params.lr\"}}";
    jz_cli_server_error(400, b1, strlen(b1), buf, sizeof buf);
    assert_string_equal(buf, "params.lr: expected a number (400)");
    const char *b2 =
        "{\"error\": {\"code\": \"invalid_param\", \"message\": \"expected a number\", "
        "\"field\": \"params.lr\"}}";
    jz_cli_server_error(400, b2, strlen(b2), buf, sizeof buf);
    assert_string_equal(buf, "params.lr: expected a number (400)");
    const char *b3 = "{\"error\": {\"code\": \"conflict\", \"message\": \"job already ended\", "
                     "\"field\": null}}";
    jz_cli_server_error(409, b3, strlen(b3), buf, sizeof buf);
    assert_string_equal(buf, "job already ended (409)");
    const char *b4 = "<html>Bad Gateway</html>\nmore";
    jz_cli_server_error(502, b4, strlen(b4), buf, sizeof buf);
    assert_string_equal(buf, "HTTP 502: <html>Bad Gateway</html>");
    jz_cli_server_error(500, "", 0, buf, sizeof buf);
    assert_string_equal(buf, "HTTP 500");
    /* Terminal control characters from the server are neutralised. */
    const char *b5 = "{\"error\": {\"message\": \"bad\\u001b[2Jname\"}}";
    jz_cli_server_error(400, b5, strlen(b5), buf, sizeof buf);
    assert_string_equal(buf, "bad?[2Jname (400)");
}

static char *print_table(struct jz_table *t)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    jz_table_print(t, f);
    fclose(f);
    return text;
}

static void test_table(void **state)
{
    static const char *const hdr[] = {"ID", "NAME", "STATE", "REASON"};
    struct jz_table *t = jz_table_new(4, hdr);
    assert_non_null(t);
    jz_table_align_right(t, 0);
    const char *r1[] = {"7", "train-résumé", "RUNNING", NULL};
    const char *r2[] = {"1234", "a\tb\nc", "PENDING", "waiting for 2 free GPUs"};
    assert_int_equal(jz_table_add(t, r1), 0);
    assert_int_equal(jz_table_add(t, r2), 0);
    char *text = print_table(t);
    assert_string_equal(text, "  ID  NAME          STATE    REASON\n"
                              "   7  train-résumé  RUNNING  -\n"
                              "1234  a?b?c         PENDING  waiting for 2 free GPUs\n");
    free(text);
    jz_table_free(t);
    jz_table_free(NULL);

    /* A header-only table prints just the header. */
    static const char *const h2[] = {"A", "B"};
    t = jz_table_new(2, h2);
    text = print_table(t);
    assert_string_equal(text, "A  B\n");
    free(text);
    jz_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time),       cmocka_unit_test(test_durations),
        cmocka_unit_test(test_exit_codes), cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
