/* jazarid's option table (server/config.c): the file and the command line give the same
 * settings, every option is either applied by a reload or listed as waiting for a restart, and
 * keeping the restart-only ones leaves exactly the live changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/config.h"

/* jazarid's main.c defines it; the modules linked here never run a loop. */
void jz_server_request_commit(struct jz_server *srv)
{
    (void)srv;
}

/* Every option but --config, each set to a valid value other than its default. */
static char *all_options[] = {
    "jazarid",
    "--listen", "127.0.0.1:9999",
    "--state-dir", "/tmp/jz-config-test-state",
    "--topology", "/tmp/topo.xml",
    "--no-local-node",
    "--site", "rabat",
    "--agent-listen", "127.0.0.1:9998",
    "--node-timeout", "30",
    "--plugin-dir", "/tmp/plugins",
    "--worker", "/tmp/jazari-worker",
    "--fallback-backend", "opencl",
    "--kill-grace", "3",
    "--max-pending", "50",
    "--user", "nobody",
    "--node-dir", "/tmp/node",
    "--default-unix-user", "nobody",
    "--tls-cert", "/tmp/cert.pem",
    "--tls-key", "/tmp/key.pem",
    "--allow-plain-http",
    "--webhook-allow", "10.1.2.0/24,fd00::/8",
    "--max-connections", "100",
    "--idle-timeout", "5",
    "--rate-limit", "7/s",
    "--rate-burst", "9",
    "--max-log-streams", "4",
    "--port-file", "/tmp/port",
    "--log-level", "debug",
    "--log-file", "/tmp/jazarid.log",
    NULL,
};

static int count_names(const char *list)
{
    if (!*list)
        return 0;
    int n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

static void build(char **argv, struct jz_server_config *cfg)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    struct jz_config_args *args = NULL;
    assert_int_equal(jz_config_parse_args(argc, argv, &args), JZ_CONFIG_RUN);
    json_t *file = NULL;
    struct jz_error err = {0};
    assert_int_equal(jz_config_build(args, cfg, &file, &err), 0);
    assert_true(json_is_object(file));
    json_decref(file);
    jz_config_args_free(args);
}

static void every_option_is_live_or_restart(void **state)
{
    struct jz_server_config a, b;
    char *none[] = {"jazarid", NULL};
    build(none, &a);
    build(all_options, &b);
    char live[2048], restart[2048];
    jz_config_diff(&a, &b, live, sizeof live, restart, sizeof restart);
    /* Every option in all_options (all but --config and --hide-other-tenants) differs, and
     * each is listed once. */
    assert_int_equal(count_names(live) + count_names(restart), 27);
    assert_non_null(strstr(live, "kill_grace"));
    assert_non_null(strstr(live, "webhook_allow")); /* a reload applies it */
    assert_string_equal(b.webhook_allow, "10.1.2.0/24,fd00::/8");
    assert_non_null(strstr(live, "rate_limit"));
    assert_non_null(strstr(restart, "listen"));
    assert_non_null(strstr(restart, "tls_key"));

    /* Keeping the restart-only settings leaves exactly the live changes. */
    struct jz_server_config kept = b;
    jz_config_keep_restart(&a, &kept);
    char live2[2048], restart2[2048];
    jz_config_diff(&a, &kept, live2, sizeof live2, restart2, sizeof restart2);
    assert_string_equal(restart2, "");
    assert_string_equal(live2, live);
    assert_int_equal(kept.kill_grace_s, 3);
    assert_int_equal(kept.listen_port, a.listen_port);
}

/* The same settings from a file as from the command line, and the command line wins. */
static void file_equals_command_line(void **state)
{
    char path[] = "/tmp/jz-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text =
        "{\"listen\": \"127.0.0.1:9999\", \"state_dir\": \"/tmp/jz-config-test-state\","
        " \"topology\": \"/tmp/topo.xml\", \"no_local_node\": true, \"site\": \"rabat\","
        " \"agent_listen\": \"127.0.0.1:9998\", \"node_timeout\": 30,"
        " \"plugin_dir\": \"/tmp/plugins\", \"worker\": \"/tmp/jazari-worker\","
        " \"fallback_backend\": \"opencl\", \"kill_grace\": 3, \"max_pending\": 50,"
        " \"user\": \"nobody\", \"node_dir\": \"/tmp/node\", \"default_unix_user\": \"nobody\","
        " \"tls_cert\": \"/tmp/cert.pem\", \"tls_key\": \"/tmp/key.pem\","
        " \"allow_plain_http\": true, \"max_connections\": 100, \"idle_timeout\": 5,"
        " \"rate_limit\": \"7/s\", \"rate_burst\": 9, \"max_log_streams\": 4,"
        " \"port_file\": \"/tmp/port\", \"log_level\": \"debug\","
        " \"log_file\": \"/tmp/jazarid.log\", \"webhook_allow\": \"10.1.2.0/24,fd00::/8\","
        " \"scheduler\": {}, \"limits\": {\"pids\": 10}}";
    assert_true(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    struct jz_server_config from_file, from_args;
    char *with_file[] = {"jazarid", "--config", path, NULL};
    build(with_file, &from_file);
    build(all_options, &from_args);
    char live[2048], restart[2048];
    jz_config_diff(&from_args, &from_file, live, sizeof live, restart, sizeof restart);
    assert_string_equal(live, "limits");
    assert_string_equal(restart, "config");
    assert_int_equal(from_file.pids_max, 10);

    char *both[] = {"jazarid", "--config", path, "--kill-grace", "8", "--rate-limit", "0", NULL};
    struct jz_server_config mixed;
    build(both, &mixed);
    assert_int_equal(mixed.kill_grace_s, 8);
    assert_true(mixed.rate_per_s == 0);
    assert_int_equal(mixed.max_log_streams, 4);
    unlink(path);
}

static void bad_values_are_usage_errors(void **state)
{
    struct jz_config_args *args = NULL;
    char *bad[][3] = {{"jazarid", "--kill-grace", "3601"}, {"jazarid", "--listen", "nohost"},
                      {"jazarid", "--rate-limit", "5/min"}, {"jazarid", "--log-level", "loud"},
                      {"jazarid", "--log-file", "journal:"}, {"jazarid", "--site", "a/b"},
                      {"jazarid", "--webhook-allow", "10.1.2.5/24"},
                      {"jazarid", "--webhook-allow", "localhost"},
                      {"jazarid", "--webhook-allow", "10.0.0.0/8,"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {bad[i][0], bad[i][1], bad[i][2], NULL};
        assert_int_equal(jz_config_parse_args(3, argv, &args), JZ_CONFIG_USAGE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_option_is_live_or_restart),
        cmocka_unit_test(file_equals_command_line),
        cmocka_unit_test(bad_values_are_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
