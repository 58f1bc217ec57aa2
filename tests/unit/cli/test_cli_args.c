/* Tests of the jazari client's argument parsing: submit bodies (multi-node included), queue and
 * node paths, node commands, node-token bodies, limits. */
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

static void test_submit_nodes(void **state)
{
    struct jz_cli cli;
    json_t *b;
    struct jz_error err;
    json_t *res;

    /* GPUs per node: sent as given, no total. */
    assert_int_equal(submit(&cli, &b, &err, "--nodes", "2", "--gpus-per-node", "4", "--requeue",
                            "--", "./train", NULL),
                     0);
    res = json_object_get(b, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "nodes")), 2);
    assert_int_equal(json_integer_value(json_object_get(res, "gpus_per_node")), 4);
    assert_null(json_object_get(res, "gpus"));
    assert_true(json_is_true(json_object_get(b, "requeue")));
    json_decref(b);

    /* A total with several nodes: the server splits it. */
    assert_int_equal(submit(&cli, &b, &err, "--gpus=8", "--nodes=3", "--", "x", NULL), 0);
    res = json_object_get(b, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "gpus")), 8);
    assert_int_equal(json_integer_value(json_object_get(res, "nodes")), 3);
    assert_null(json_object_get(res, "gpus_per_node"));
    assert_null(json_object_get(b, "requeue"));
    json_decref(b);

    /* On one node, K per node is K in all. */
    assert_int_equal(submit(&cli, &b, &err, "--gpus-per-node", "2", "--", "x", NULL), 0);
    res = json_object_get(b, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "gpus")), 2);
    assert_null(json_object_get(res, "gpus_per_node"));
    assert_null(json_object_get(res, "nodes"));
    json_decref(b);
    assert_int_equal(
        submit(&cli, &b, &err, "--nodes", "1", "--gpus-per-node", "3", "--", "x", NULL), 0);
    res = json_object_get(b, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "gpus")), 3);
    assert_int_equal(json_integer_value(json_object_get(res, "nodes")), 1);
    json_decref(b);

    /* --nodes 1 alone says nothing new, and is accepted; the bounds are accepted. */
    assert_int_equal(submit(&cli, &b, &err, "--nodes", "1", "--cpus", "4", "--", "x", NULL), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(b, "resources"), "nodes")),
                     1);
    json_decref(b);
    assert_int_equal(
        submit(&cli, &b, &err, "--nodes", "1024", "--gpus-per-node", "4096", "--", "x", NULL), 0);
    json_decref(b);

    /* --gpus unchanged. */
    assert_int_equal(submit(&cli, &b, &err, "-g", "2", "--", "x", NULL), 0);
    res = json_object_get(b, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "gpus")), 2);
    assert_null(json_object_get(res, "nodes"));
    json_decref(b);
}

static void test_submit_nodes_errors(void **state)
{
    struct jz_cli cli;
    json_t *b;
    struct jz_error err;
    assert_int_equal(submit(&cli, &b, &err, "--nodes", "2", "--", "x", NULL), JZ_EINVAL);
    assert_non_null(strstr(err.msg, "--gpus-per-node"));
    assert_null(b);
    assert_int_not_equal(submit(&cli, &b, &err, "--nodes", "2", "--gpus", "4", "--gpus-per-node",
                                "2", "--", "x", NULL),
                         0);
    assert_non_null(strstr(err.msg, "not both"));
    assert_int_not_equal(submit(&cli, &b, &err, "--gpus-per-node", "1", "-g", "1", "--", "x", NULL),
                         0);
    assert_int_not_equal(submit(&cli, &b, &err, "--nodes", "0", "--gpus", "1", "--", "x", NULL), 0);
    assert_non_null(strstr(err.msg, "--nodes: 0 is out of range [1, 1024]"));
    assert_int_not_equal(submit(&cli, &b, &err, "--nodes", "1025", "--gpus", "1", "--", "x", NULL),
                         0);
    assert_non_null(strstr(err.msg, "--nodes"));
    assert_int_not_equal(submit(&cli, &b, &err, "--nodes", "two", "--", "x", NULL), 0);
    assert_non_null(strstr(err.msg, "--nodes: expected an integer"));
    assert_int_not_equal(
        submit(&cli, &b, &err, "--nodes", "2", "--gpus-per-node", "0", "--", "x", NULL), 0);
    assert_non_null(strstr(err.msg, "--gpus-per-node: 0 is out of range"));
    assert_int_not_equal(
        submit(&cli, &b, &err, "--nodes", "2", "--gpus-per-node", "4097", "--", "x", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--gpus", "4097", "--", "x", NULL), 0);
    assert_int_not_equal(submit(&cli, &b, &err, "--requeue=yes", "--", "x", NULL), 0);
    assert_non_null(strstr(err.msg, "takes no value"));
    assert_int_not_equal(submit(&cli, &b, &err, "--gpus-per-node", NULL), 0);
    assert_non_null(strstr(err.msg, "needs a value"));
    assert_null(b);
}

static void test_nodes_path(void **state)
{
    struct jz_cli cli = {0};
    struct jz_error err = {0};
    const char *site = "unchanged";
    char path[256];
    char *a1[] = {"nodes"};
    assert_int_equal(jz_cli_nodes_parse(&cli, 1, a1, &site, &err), 0);
    assert_null(site);
    assert_int_equal(jz_cli_nodes_path(site, path, sizeof path, &err), 0);
    assert_string_equal(path, "/v1/nodes");

    char *a2[] = {"nodes", "--site", "rabat", "--json"};
    assert_int_equal(jz_cli_nodes_parse(&cli, 4, a2, &site, &err), 0);
    assert_true(cli.json);
    assert_int_equal(jz_cli_nodes_path(site, path, sizeof path, &err), 0);
    assert_string_equal(path, "/v1/nodes?site=rabat");

    /* Everything but unreserved characters is encoded, ',' and non-ASCII bytes included. */
    assert_int_equal(jz_cli_nodes_path("a b/c&d,e=é", path, sizeof path, &err), 0);
    assert_string_equal(path, "/v1/nodes?site=a%20b%2Fc%26d%2Ce%3D%C3%A9");
    assert_int_not_equal(jz_cli_nodes_path("rabat", path, 12, &err), 0);

    site = "unchanged";
    char *b1[] = {"nodes", "--site", ""};
    assert_int_not_equal(jz_cli_nodes_parse(&cli, 3, b1, &site, &err), 0);
    assert_string_equal(site, "unchanged");
    char *b2[] = {"nodes", "extra"};
    assert_int_not_equal(jz_cli_nodes_parse(&cli, 2, b2, &site, &err), 0);
    char *b3[] = {"nodes", "--site"};
    assert_int_not_equal(jz_cli_nodes_parse(&cli, 2, b3, &site, &err), 0);
    char long_site[JZ_CLI_MAX_SITE + 2];
    memset(long_site, 's', sizeof long_site - 1);
    long_site[sizeof long_site - 1] = '\0';
    char *b4[] = {"nodes", "--site", long_site};
    assert_int_equal(jz_cli_nodes_parse(&cli, 3, b4, &site, &err), JZ_ELIMIT);
    long_site[JZ_CLI_MAX_SITE] = '\0';
    assert_int_equal(jz_cli_nodes_parse(&cli, 3, b4, &site, &err), 0);
}

static int node_parse(struct jz_cli *cli, struct jz_cli_node_args *a, struct jz_error *err, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    for (char *x; (x = va_arg(ap, char *));)
        argv[argc++] = x;
    va_end(ap);
    memset(cli, 0, sizeof *cli);
    memset(err, 0, sizeof *err);
    return jz_cli_node_parse(cli, argc, argv, a, err);
}

static void test_node_commands(void **state)
{
    struct jz_cli cli;
    struct jz_error err;
    struct jz_cli_node_args a;
    const char *method;
    char path[1024];
    json_t *body;

    assert_int_equal(node_parse(&cli, &a, &err, "drain", "gpu-a1", "--reason", "bad fan", NULL), 0);
    assert_int_equal(a.verb, JZ_CLI_NODE_DRAIN);
    assert_string_equal(a.name, "gpu-a1");
    assert_int_equal(jz_cli_node_request(&a, &method, path, sizeof path, &body, &err), 0);
    assert_string_equal(method, "POST");
    assert_string_equal(path, "/v1/nodes/gpu-a1/drain");
    assert_string_equal(json_string_value(json_object_get(body, "reason")), "bad fan");
    assert_int_equal(json_object_size(body), 1);
    json_decref(body);

    /* Options may come first; a reason may start with '-'. */
    assert_int_equal(node_parse(&cli, &a, &err, "drain", "--reason=-x", "n.1_a", NULL), 0);
    assert_string_equal(a.reason, "-x");

    assert_int_equal(node_parse(&cli, &a, &err, "resume", "gpu-a1", "--json", NULL), 0);
    assert_true(cli.json);
    assert_int_equal(jz_cli_node_request(&a, &method, path, sizeof path, &body, &err), 0);
    assert_string_equal(method, "POST");
    assert_string_equal(path, "/v1/nodes/gpu-a1/resume");
    assert_true(json_is_object(body));
    assert_int_equal(json_object_size(body), 0);
    json_decref(body);

    assert_int_equal(node_parse(&cli, &a, &err, "rm", "gpu-a1", NULL), 0);
    assert_int_equal(jz_cli_node_request(&a, &method, path, sizeof path, &body, &err), 0);
    assert_string_equal(method, "DELETE");
    assert_string_equal(path, "/v1/nodes/gpu-a1");
    assert_null(body);

    assert_int_equal(node_parse(&cli, &a, &err, "revoke", "gpu-a1", NULL), 0);
    assert_int_equal(jz_cli_node_request(&a, &method, path, sizeof path, &body, &err), 0);
    assert_string_equal(method, "POST");
    assert_string_equal(path, "/v1/nodes/gpu-a1/revoke");
    assert_null(body);

    /* Names are encoded even though the server allows only [A-Za-z0-9._-]. */
    assert_int_equal(node_parse(&cli, &a, &err, "rm", "--", "a b/../c?d", NULL), 0);
    assert_int_equal(jz_cli_node_request(&a, &method, path, sizeof path, &body, &err), 0);
    assert_string_equal(path, "/v1/nodes/a%20b%2F..%2Fc%3Fd");
    assert_int_not_equal(jz_cli_node_request(&a, &method, path, 16, &body, &err), 0);

    /* A reason of 256 bytes is accepted, 257 refused; empty and missing ones too. */
    char reason[JZ_CLI_MAX_DRAIN_REASON + 2];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    assert_int_equal(node_parse(&cli, &a, &err, "drain", "n", "--reason", reason, NULL), JZ_ELIMIT);
    assert_non_null(strstr(err.msg, "at most 256"));
    reason[JZ_CLI_MAX_DRAIN_REASON] = '\0';
    assert_int_equal(node_parse(&cli, &a, &err, "drain", "n", "--reason", reason, NULL), 0);
    assert_int_not_equal(node_parse(&cli, &a, &err, "drain", "n", "--reason", "", NULL), 0);
    assert_non_null(strstr(err.msg, "--reason"));
    assert_int_not_equal(node_parse(&cli, &a, &err, "drain", "n", NULL), 0);
    assert_non_null(strstr(err.msg, "--reason"));
    assert_int_not_equal(node_parse(&cli, &a, &err, "drain", "n", "--reason", NULL), 0);
    assert_non_null(strstr(err.msg, "needs a value"));
    /* ... and the reason is for drain only. */
    assert_int_not_equal(node_parse(&cli, &a, &err, "rm", "n", "--reason", "x", NULL), 0);

    assert_int_not_equal(node_parse(&cli, &a, &err, "rm", NULL), 0);
    assert_non_null(strstr(err.msg, "missing node name"));
    assert_int_not_equal(node_parse(&cli, &a, &err, "rm", "a", "b", NULL), 0);
    assert_int_not_equal(node_parse(&cli, &a, &err, "rm", "a", "--", "b", NULL), 0);
    assert_int_not_equal(node_parse(&cli, &a, &err, "rm", "", NULL), 0);
    assert_int_not_equal(node_parse(&cli, &a, &err, "rm", "a", "--force", NULL), 0);
    assert_non_null(strstr(err.msg, "--force"));
    assert_int_not_equal(node_parse(&cli, &a, &err, "reboot", "a", NULL), 0);
    char long_name[JZ_CLI_MAX_NODE_NAME + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(node_parse(&cli, &a, &err, "rm", long_name, NULL), JZ_ELIMIT);

    /* --help needs nothing else. */
    assert_int_equal(node_parse(&cli, &a, &err, "drain", "--help", NULL), 0);
    assert_true(cli.help);

    /* A reason jansson cannot carry is refused, not sent empty. */
    assert_int_equal(node_parse(&cli, &a, &err, "drain", "n", "--reason", "bad\xff", NULL), 0);
    assert_int_equal(jz_cli_node_request(&a, &method, path, sizeof path, &body, &err), JZ_EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
}

static int token_build(struct jz_cli *cli, json_t **body, struct jz_error *err, ...)
{
    char *argv[16] = {"token"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *x; (x = va_arg(ap, char *));)
        argv[argc++] = x;
    va_end(ap);
    memset(cli, 0, sizeof *cli);
    memset(err, 0, sizeof *err);
    *body = NULL;
    return jz_cli_node_token_build(cli, argc, argv, body, err);
}

static void test_node_token(void **state)
{
    struct jz_cli cli;
    struct jz_error err;
    json_t *b;
    /* Defaults are the server's: nothing is sent. */
    assert_int_equal(token_build(&cli, &b, &err, NULL), 0);
    assert_true(json_is_object(b));
    assert_int_equal(json_object_size(b), 0);
    json_decref(b);

    assert_int_equal(token_build(&cli, &b, &err, "--site", "rabat", "--ttl", "12h", NULL), 0);
    assert_string_equal(json_string_value(json_object_get(b, "site")), "rabat");
    assert_int_equal(json_integer_value(json_object_get(b, "ttl_s")), 43200);
    json_decref(b);
    assert_int_equal(token_build(&cli, &b, &err, "--ttl=90", NULL), 0);
    assert_int_equal(json_integer_value(json_object_get(b, "ttl_s")), 90);
    json_decref(b);

    assert_int_not_equal(token_build(&cli, &b, &err, "--ttl", "soon", NULL), 0);
    assert_non_null(strstr(err.msg, "--ttl"));
    assert_int_not_equal(token_build(&cli, &b, &err, "--ttl", "0", NULL), 0);
    assert_non_null(strstr(err.msg, "--ttl"));
    assert_int_not_equal(token_build(&cli, &b, &err, "--site", "", NULL), 0);
    assert_int_not_equal(token_build(&cli, &b, &err, "--site", "\xff", NULL), 0);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_int_not_equal(token_build(&cli, &b, &err, "rabat", NULL), 0);
    assert_int_not_equal(token_build(&cli, &b, &err, "--tenant", "x", NULL), 0);
    assert_null(b);
    assert_int_equal(token_build(&cli, &b, &err, "--help", NULL), 0);
    assert_true(cli.help);
    assert_null(b);
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
    assert_string_equal(path,
                        "/v1/jobs?limit=5&state=PENDING,RUNNING&user=al%20ice%26x&scope=all&after=57");

    /* Every state of one's own jobs is --state all now that --all means everyone's. */
    char *a4[] = {"queue", "-s", "all", "--tenant", "physics", "-n", "a,b", "-r", "-O",
                  "id,STATE,user", "--sort", "-gpus", "--noheader"};
    assert_int_equal(jz_cli_queue_parse(&cli, 13, a4, &q, &err), 0);
    assert_int_equal(jz_cli_queue_path(&q, -1, 10, path, sizeof path, &err), 0);
    assert_string_equal(path, "/v1/jobs?limit=10&tenant=physics");
    assert_string_equal(q.names, "a,b");
    assert_true(q.expand && q.noheader && !q.all);
    assert_string_equal(q.format, "id,STATE,user");
    assert_string_equal(q.sort, "-gpus");
    json_t *named = json_pack("{s:s}", "name", "b"), *other = json_pack("{s:s}", "name", "ab");
    assert_true(jz_cli_queue_match(&q, named));
    assert_false(jz_cli_queue_match(&q, other));
    json_decref(named);
    json_decref(other);

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
    char *bad4[] = {"queue", "--format", "id,bogus"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 3, bad4, &q, &err), 0);
    assert_non_null(strstr(err.msg, "unknown column 'bogus'"));
    char *bad5[] = {"queue", "--format", "id,"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 3, bad5, &q, &err), 0);
    char *bad6[] = {"queue", "--sort", "id,name"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 3, bad6, &q, &err), 0);
    char *bad7[] = {"queue", "--limt", "5"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 3, bad7, &q, &err), 0);
    assert_string_equal(err.msg, "unknown option '--limt' (did you mean '--limit'?)");
    char *bad8[] = {"queue", "--zzz"};
    assert_int_not_equal(jz_cli_queue_parse(&cli, 2, bad8, &q, &err), 0);
    assert_string_equal(err.msg, "unknown option '--zzz'");

    /* A path that does not fit is an error, not a truncated request. */
    assert_int_not_equal(jz_cli_queue_path(&q, 123456, 10, path, 20, &err), 0);
}

/* A short flag means one thing in every command (-n is a job's name in submit and queue). */
static void test_short_flags_unique(void **state)
{
    const char *meaning[128] = {0}, *where[128] = {0};
    const struct jz_cli_option_table *lists[] = {jz_cli_args_option_tables, jz_cli_option_tables};
    int tables = 0;
    for (size_t l = 0; l < 2; l++)
        for (const struct jz_cli_option_table *t = lists[l]; t->command; t++, tables++)
            for (const struct jz_cli_optspec *o = t->specs; o->name; o++) {
                unsigned char c = (unsigned char)o->short_name;
                if (!c)
                    continue;
                assert_true(c < 128);
                if (meaning[c] && strcmp(meaning[c], o->name) != 0)
                    fail_msg("-%c is --%s in '%s' but --%s in '%s'", c, meaning[c], where[c],
                             o->name, t->command);
                meaning[c] = o->name;
                where[c] = t->command;
            }
    assert_true(tables >= 10);
    assert_string_equal(meaning['n'], "name");
    assert_string_equal(meaning['h'], "help");
}

/* Query parameters: '?' first and '&' after, percent-encoding (',' kept only for lists), and a
 * parameter that does not fit refused with the path left as it was. */
static void test_query_add(void **state)
{
    char path[64] = "/v1/reports/usage";
    assert_true(jz_cli_query_add(path, sizeof path, "by", "tenant", false));
    assert_string_equal(path, "/v1/reports/usage?by=tenant");
    assert_true(jz_cli_query_add(path, sizeof path, "tenant", "a b&c=d,é", false));
    assert_string_equal(path, "/v1/reports/usage?by=tenant&tenant=a%20b%26c%3Dd%2C%C3%A9");
    char list[64] = "/v1/jobs?limit=5";
    assert_true(jz_cli_query_add(list, sizeof list, "state", "FAILED,TIMEOUT", true));
    assert_string_equal(list, "/v1/jobs?limit=5&state=FAILED,TIMEOUT");
    char small[24] = "/v1/x?a=1";
    assert_false(jz_cli_query_add(small, sizeof small, "user", "a-very-long-name", false));
    assert_string_equal(small, "/v1/x?a=1");
    assert_true(jz_cli_query_add(small, sizeof small, "u", "b", false));
    assert_string_equal(small, "/v1/x?a=1&u=b");
    char exact[16] = "/p";             /* "/p?k=123456789" is 14 characters: it fits */
    assert_true(jz_cli_query_add(exact, sizeof exact, "k", "123456789", false));
    assert_false(jz_cli_query_add(exact, sizeof exact, "k", "", false)); /* "&k=" would be 17 */
    assert_string_equal(exact, "/p?k=123456789");
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
        cmocka_unit_test(test_submit_nodes),
        cmocka_unit_test(test_submit_nodes_errors),
        cmocka_unit_test(test_nodes_path),
        cmocka_unit_test(test_node_commands),
        cmocka_unit_test(test_node_token),
        cmocka_unit_test(test_queue),
        cmocka_unit_test(test_short_flags_unique),
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_query_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
