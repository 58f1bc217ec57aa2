/* `jazari reserve`'s body and times, and submit --reservation: no server involved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "clients/cli.h"

#define NOW_MS 1796115600000LL /* 2026-12-01T09:00:00Z */

static int build(json_t **b, struct jz_error *err, char **argv)
{
    struct jz_cli cli;
    memset(&cli, 0, sizeof cli);
    int argc = 0;
    while (argv[argc])
        argc++;
    return jz_cli_reserve_build(&cli, argc, argv, NOW_MS, b, err);
}

static void test_times(void **state)
{
    (void)state;
    int64_t t;
    struct jz_error err = {0};
    assert_int_equal(jz_cli_reserve_time("now", NOW_MS, &t, &err), 0);
    assert_int_equal(t, NOW_MS / 1000);
    assert_int_equal(jz_cli_reserve_time("+1h30m", NOW_MS, &t, &err), 0);
    assert_int_equal(t, NOW_MS / 1000 + 5400);
    assert_int_equal(jz_cli_reserve_time("2026-12-01T10:00:00+01:00", NOW_MS, &t, &err), 0);
    assert_int_equal(t, NOW_MS / 1000);
    assert_int_not_equal(jz_cli_reserve_time("1h", NOW_MS, &t, &err), 0); /* not "ago" */
    assert_non_null(strstr(err.msg, "+DURATION"));
    assert_int_not_equal(jz_cli_reserve_time("+soon", NOW_MS, &t, &err), 0);
}

static void test_body(void **state)
{
    (void)state;
    json_t *b = NULL;
    struct jz_error err = {0};
    char *ok[] = {"reserve", "-g",  "8",          "--model", "A100",     "--site", "rabat",
                  "--start", "+1h", "--duration", "2h",      "--tenant", "lab",    NULL};
    assert_int_equal(build(&b, &err, ok), 0);
    assert_int_equal(json_integer_value(json_object_get(b, "gpus")), 8);
    assert_string_equal(json_string_value(json_object_get(b, "model")), "A100");
    assert_string_equal(json_string_value(json_object_get(b, "site")), "rabat");
    assert_string_equal(json_string_value(json_object_get(b, "tenant")), "lab");
    assert_string_equal(json_string_value(json_object_get(b, "start")), "2026-12-01T10:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(b, "end")), "2026-12-01T12:00:00.000Z");
    json_decref(b);
    char *no_gpus[] = {"reserve", "--start", "now", "--end", "+1h", NULL};
    assert_int_not_equal(build(&b, &err, no_gpus), 0);
    char *both[] = {"reserve", "-g",  "1",          "--start", "now",
                    "--end",   "+1h", "--duration", "1h",      NULL};
    assert_int_not_equal(build(&b, &err, both), 0);
    char *no_start[] = {"reserve", "-g", "1", "--end", "+1h", NULL};
    assert_int_not_equal(build(&b, &err, no_start), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
