/* Tests of the jazari client's argument parsing: submit bodies, queue paths, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clients/cli.h"

/* Runs submit parsing on a NULL-terminated list of arguments (after "submit"). */
static int submit(struct jz_cli *cli, json_t **body, struct jz_error *err, ...)
{
    char *argv[64] = {"submit"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    memset(cli, 0, sizeof *cli);
    memset(err, 0, sizeof *err);
    *body = NULL;
    return jz_cli_submit_build(cli, argc, argv, "/home/a/proj", body, err);
}

static void test_submit_command_is_batch(void **state)
{
    struct jz_cli cli;
    json_t *b;
    struct jz_error err;
    assert_int_equal(submit(&cli, &b, &err, "--gpus", "2", "--time", "1h30m", "--name", "x", "--",
                            "python", "train.py", "--lr", "0.1", NULL),
                     0);
    assert_string_equal(json_string_value(json_object_get(b, "plugin")), "batch");
    assert_string_equal(json_string_value(json_object_get(b, "name")), "x");
    assert_string_equal(json_string_value(json_object_get(b, "submit_dir")), "/home/a/proj");
    json_t *res = json_object_get(b, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "gpus")), 2);
    assert_int_equal(json_integer_value(json_object_get(res, "time_limit_s")), 5400);
    json_t *params = json_object_get(b, "params");
    json_t *argv = json_object_get(params, "argv");
    assert_int_equal(json_array_size(argv), 4);
    /* Options after "--" belong to the command, not to jazari. */
    assert_string_equal(json_string_value(json_array_get(argv, 2)), "--lr");
    assert_null(json_object_get(params, "cwd"));
    assert_null(json_object_get(b, "preemptible"));
    json_decref(b);
}

static void test_submit_params(void **state)
{
    struct jz_cli cli;
    json_t *b;
    struct jz_error err;
    assert_int_equal(submit(&cli, &b, &err, "--plugin", "train", "--param", "lr=0.01",
                            "--params-json", "{\"lr\": 0.5, \"epochs\": 3, \"layers\": [1,2]}",
                            "--param", "layers=256,128", "-P", "act=a=b", "--preemptible",
                            "--cpus-per-gpu=4", "--mem", "2048", "--json", NULL),
                     0);
    assert_true(cli.json);
    assert_string_equal(json_string_value(json_object_get(b, "plugin")), "train");
    json_t *p = json_object_get(b, "params");
    /* --params-json came after --param lr: its number wins; a later --param wins over it. */
    assert_true(json_is_real(json_object_get(p, "lr")));
    assert_int_equal(json_integer_value(json_object_get(p, "epochs")), 3);
    assert_string_equal(json_string_value(json_object_get(p, "layers")), "256,128");
    assert_string_equal(json_string_value(json_object_get(p, "act")), "a=b");
    assert_true(json_is_true(json_object_get(b, "preemptible")));
    json_t *res = json_object_get(b, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "cpus_per_gpu")), 4);
    assert_int_equal(json_integer_value(json_object_get(res, "memory_mb")), 2048);
    json_decref(b);

    assert_int_equal(
        submit(&cli, &b, &err, "--plugin", "train", "--param", "lr=1", "--param", "lr=2", NULL), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(b, "params"), "lr")),
                        "2");
    assert_null(json_object_get(b, "resources"));
    json_decref(b);
}

static void test_submit_errors(void **state)
{
    struct jz_cli cli;
    json_t *b;
    struct jz_error err;
    assert_int_equal(submit(&cli, &b, &err, NULL), JZ_EINVAL);
    assert_non_null(strstr(err.msg, "--plugin"));
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--gpus", "two", NULL), 0);
    assert_non_null(strstr(err.msg, "--gpus"));
    assert_null(b);
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--gpus", "-1", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--time", "1x", NULL), 0);
    assert_non_null(strstr(err.msg, "--time"));
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--time", "0", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--param", "novalue", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--param", "=v", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--params-json", "[1]", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--params-json", "{", NULL), 0);
    assert_non_null(strstr(err.msg, "--params-json"));
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", "x", "--bogus", NULL), 0);
    assert_non_null(strstr(err.msg, "--bogus"));
    assert_int_not_equal(submit(&cli, &b, &err, "--plugin", NULL), 0);
    assert_non_null(strstr(err.msg, "needs a value"));
    assert_int_not_equal(submit(&cli, &b, &err, "stray", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--preemptible=yes", "--plugin", "x", NULL), 0);
    assert_int_equal(submit(&cli, &b, &err, "--help", NULL), 0);
    assert_true(cli.help);
    assert_null(b);
}

static void test_submit_limits(void **state)
{
    struct jz_cli cli = {0};
    struct jz_error err = {0};
    json_t *b = NULL;
    /* A --params-json just over 1 MiB is refused before parsing. */
    size_t n = JZ_CLI_MAX_PARAMS_JSON + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    char *argv1[] = {"submit", "--plugin", "x", "--params-json", big};
    assert_int_equal(jz_cli_submit_build(&cli, 5, argv1, NULL, &b, &err), JZ_ELIMIT);
    assert_non_null(strstr(err.msg, "1 MiB"));
    /* Exactly 1 MiB is accepted. */
    big[n - 2] = '}';
    big[n - 1] = '\0';
    assert_int_equal(jz_cli_submit_build(&cli, 5, argv1, NULL, &b, &err), 0);
    assert_null(json_object_get(b, "submit_dir"));
    json_decref(b);
    free(big);

    /* The same limit holds for @FILE. */
    char path[] = "/tmp/jz-cli-params-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *blob = calloc(1, JZ_CLI_MAX_PARAMS_JSON + 10);
    memset(blob, ' ', JZ_CLI_MAX_PARAMS_JSON + 10);
    assert_int_equal(write(fd, blob, JZ_CLI_MAX_PARAMS_JSON + 10), JZ_CLI_MAX_PARAMS_JSON + 10);
    close(fd);
    free(blob);
    char at[64];
    snprintf(at, sizeof at, "@%s", path);
    char *argv2[] = {"submit", "--plugin", "x", "--params-json", at};
    assert_int_equal(jz_cli_submit_build(&cli, 5, argv2, NULL, &b, &err), JZ_ELIMIT);
    FILE *f = fopen(path, "w");
    fputs("{\"k\": \"v\"}", f);
    fclose(f);
    assert_int_equal(jz_cli_submit_build(&cli, 5, argv2, NULL, &b, &err), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(b, "params"), "k")), "v");
    json_decref(b);
    unlink(path);

    /* More than 4096 argv elements are refused. */
    int argc = JZ_CLI_MAX_ARGS + 1;
    char **argv = calloc((size_t)argc, sizeof *argv);
    argv[0] = "submit";
    argv[1] = "--";
    for (int i = 2; i < argc; i++)
        argv[i] = "x";
    assert_int_equal(jz_cli_submit_build(&cli, argc, argv, NULL, &b, &err), JZ_ELIMIT);
    assert_int_equal(jz_cli_submit_build(&cli, argc - 1, argv, NULL, &b, &err), 0);
    assert_int_equal(json_array_size(json_object_get(json_object_get(b, "params"), "argv")),
                     JZ_CLI_MAX_ARGS - 2);
    json_decref(b);
    free(argv);
}

static void test_queue(void **state)
{
    struct jz_cli cli = {0};
    struct jz_error err = {0};
    struct jz_cli_queue_args q;
    char path[512];
    char *a1[] = {"queue"};
    assert_int_equal(jz_cli_queue_parse(&cli, 1, a1, &q, &err), 0);
    assert_int_equal(q.limit, 1000);
    assert_int_equal(jz_cli_queue_path(&q, -1, 1000, path, sizeof path, &err), 0);
    assert_string_equal(path, "/v1/jobs?limit=1000&state=PENDING,RUNNING");

    char *a2[] = {"queue", "--all", "--user", "al ice&x", "--limit=5", "--json"};
    assert_int_equal(jz_cli_queue_parse(&cli, 6, a2, &q, &err), 0);
    assert_true(cli.json);
    assert_int_equal(jz_cli_queue_path(&q, 57, 5, path, sizeof path, &err), 0);
    assert_string_equal(path, "/v1/jobs?limit=5&user=al%20ice%26x&after=57");

    char *a3[] = {"queue", "--state", "failed,timeout"};
    assert_int_equal(jz_cli_queue_parse(&cli, 3, a3, &q, &err), 0);
    assert_int_equal(jz_cli_queue_path(&q, -1, 10, path, sizeof path, &err), 0);
    assert_string_equal(path, "/v1/jobs?limit=10&state=FAILED,TIMEOUT");

    char *bad1[] = {"queue", "--state", "DONE"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 3, bad1, &q, &err), 0);
    char *bad2[] = {"queue", "--limit", "0"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 3, bad2, &q, &err), 0);
    char *bad3[] = {"queue", "extra"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 2, bad3, &q, &err), 0);

    /* A path that does not fit is an error, not a truncated request. */
    assert_int_not_equal(jz_cli_queue_path(&q, 123456, 10, path, 20, &err), 0);
}

static void test_parse_int(void **state)
{
    struct jz_error err = {0};
    int64_t v = 7;
    assert_int_equal(jz_cli_parse_int("42", 0, 100, "x", &v, &err), 0);
    assert_int_equal(v, 42);
    assert_int_not_equal(jz_cli_parse_int("101", 0, 100, "x", &v, &err), 0);
    assert_int_not_equal(jz_cli_parse_int("4x", 0, 100, "x", &v, &err), 0);
    assert_int_not_equal(jz_cli_parse_int("", 0, 100, "x", &v, &err), 0);
    assert_int_not_equal(jz_cli_parse_int(" 4", 0, 100, "x", &v, &err), 0);
    assert_int_not_equal(jz_cli_parse_int("99999999999999999999999", 0, INT64_MAX, "x", &v, &err),
                         0);
    assert_int_equal(v, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_command_is_batch),
        cmocka_unit_test(test_submit_params),
        cmocka_unit_test(test_submit_errors),
        cmocka_unit_test(test_submit_limits),
        cmocka_unit_test(test_queue),
        cmocka_unit_test(test_parse_int),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
