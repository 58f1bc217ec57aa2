/* Tests of where the jazari client takes its URL and token from, and of the config file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "clients/cli.h"

/* A fake environment: NAME=VALUE pairs set per test. */
static const char *fake_env[16][2];

static const char *env_lookup(const char *name)
{
    for (int i = 0; i < 16 && fake_env[i][0]; i++)
        if (strcmp(fake_env[i][0], name) == 0)
            return fake_env[i][1];
    return NULL;
}

static void env_set(const char *name, const char *value)
{
    int i = 0;
    while (i < 15 && fake_env[i][0] && strcmp(fake_env[i][0], name) != 0)
        i++;
    fake_env[i][0] = name;
    fake_env[i][1] = value;
}

static char dir[64];
static char cfg_path[128], tok_path[128];

static int setup(void **state)
{
    memset(fake_env, 0, sizeof fake_env);
    strcpy(dir, "/tmp/jz-cli-cfg-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(cfg_path, sizeof cfg_path, "%s/config", dir);
    snprintf(tok_path, sizeof tok_path, "%s/token", dir);
    /* HOME points into the temporary folder so the real ~/.config is never read. */
    env_set("HOME", dir);
    return 0;
}

static int teardown(void **state)
{
    unlink(cfg_path);
    unlink(tok_path);
    rmdir(dir);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_parse(void **state)
{
    char url[JZ_CLI_MAX_URL] = "", tok[JZ_CLI_MAX_TOKEN] = "";
    bool hu = false, ht = false;
    struct jz_error err = {0};
    const char *text = "# comment\n\n  url = http://h:1/  \ntoken=\"jz_abc\"\nfuture = 1\n";
    assert_int_equal(jz_cli_config_parse(text, strlen(text), "cfg", url, &hu, tok, &ht, &err), 0);
    assert_true(hu && ht);
    assert_string_equal(url, "http://h:1/");
    assert_string_equal(tok, "jz_abc");

    hu = ht = false;
    const char *only = "token = t1"; /* no final newline */
    assert_int_equal(jz_cli_config_parse(only, strlen(only), "cfg", url, &hu, tok, &ht, &err), 0);
    assert_false(hu);
    assert_true(ht);
    assert_string_equal(tok, "t1");

    const char *bad = "url http://x\n";
    assert_int_not_equal(jz_cli_config_parse(bad, strlen(bad), "cfg", url, &hu, tok, &ht, &err), 0);
    assert_non_null(strstr(err.msg, "cfg:1"));
    const char *badurl = "\nurl = ftp://x\n";
    assert_int_not_equal(
        jz_cli_config_parse(badurl, strlen(badurl), "cfg", url, &hu, tok, &ht, &err), 0);
    assert_non_null(strstr(err.msg, "cfg:2"));
    /* A malformed token is refused without echoing it. */
    const char *badtok = "token = sec ret\n";
    assert_int_not_equal(
        jz_cli_config_parse(badtok, strlen(badtok), "cfg", url, &hu, tok, &ht, &err), 0);
    assert_null(strstr(err.msg, "sec"));
}

static void test_defaults(void **state)
{
    struct jz_cli cli = {0};
    struct jz_error err = {0};
    assert_int_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_string_equal(cli.url, JZ_CLI_DEFAULT_URL);
    assert_string_equal(cli.token, "");
}

static void test_precedence(void **state)
{
    struct jz_cli cli = {0};
    struct jz_error err = {0};
    /* Default config path under HOME. */
    char home_cfg[160];
    snprintf(home_cfg, sizeof home_cfg, "%s/.config", dir);
    mkdir(home_cfg, 0700);
    snprintf(home_cfg, sizeof home_cfg, "%s/.config/jazari", dir);
    mkdir(home_cfg, 0700);
    snprintf(home_cfg, sizeof home_cfg, "%s/.config/jazari/config", dir);
    write_file(home_cfg, "url = http://home:1//\ntoken = home_tok\n");
    assert_int_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_string_equal(cli.url, "http://home:1"); /* trailing slashes dropped */
    assert_string_equal(cli.token, "home_tok");

    /* JAZARI_CONFIG replaces the default path. */
    write_file(cfg_path, "url = http://cfg:2\ntoken = cfg_tok\n");
    env_set("JAZARI_CONFIG", cfg_path);
    assert_int_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_string_equal(cli.url, "http://cfg:2");
    assert_string_equal(cli.token, "cfg_tok");

    /* The token file beats the config file; its first line is the token. */
    write_file(tok_path, "  file_tok  \nsecond line\n");
    env_set("JAZARI_TOKEN_FILE", tok_path);
    assert_int_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_string_equal(cli.token, "file_tok");
    assert_string_equal(cli.url, "http://cfg:2");

    /* Environment beats files. */
    env_set("JAZARI_TOKEN", "env_tok");
    env_set("JAZARI_URL", "https://env:3");
    assert_int_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_string_equal(cli.token, "env_tok");
    assert_string_equal(cli.url, "https://env:3");

    /* Flags beat everything; with both given, a broken config file is not even read. */
    write_file(cfg_path, "this is not a config\n");
    cli.url_flag = "http://flag:4";
    cli.token_flag = "flag_tok";
    assert_int_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_string_equal(cli.token, "flag_tok");
    assert_string_equal(cli.url, "http://flag:4");

    /* ...but it is reported when it is needed. */
    cli.url_flag = NULL;
    env_set("JAZARI_URL", "");
    assert_int_not_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_non_null(strstr(err.msg, cfg_path));

    unlink(home_cfg);
    snprintf(home_cfg, sizeof home_cfg, "%s/.config/jazari", dir);
    rmdir(home_cfg);
    snprintf(home_cfg, sizeof home_cfg, "%s/.config", dir);
    rmdir(home_cfg);
}

static void test_errors(void **state)
{
    struct jz_cli cli = {0};
    struct jz_error err = {0};
    /* An explicitly named config file must exist; the default one may be absent. */
    env_set("JAZARI_CONFIG", "/nonexistent/jazari.conf");
    assert_int_not_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    env_set("JAZARI_CONFIG", "");
    env_set("JAZARI_TOKEN_FILE", "/nonexistent/token");
    assert_int_not_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    env_set("JAZARI_TOKEN_FILE", "");
    cli.url_flag = "127.0.0.1:8600";
    assert_int_not_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_non_null(strstr(err.msg, "--url"));
    cli.url_flag = NULL;
    cli.token_flag = "bad\r\nX-Injected: 1";
    assert_int_not_equal(jz_cli_config_resolve(&cli, env_lookup, &err), 0);
    assert_null(strstr(err.msg, "Injected"));
    /* A config file over the size limit is refused. */
    cli.token_flag = NULL;
    FILE *f = fopen(cfg_path, "w");
    for (unsigned i = 0; i <= JZ_CLI_MAX_CONFIG / 8; i++)
        fputs("# ......\n", f);
    fclose(f);
    env_set("JAZARI_CONFIG", cfg_path);
    assert_int_equal(jz_cli_config_resolve(&cli, env_lookup, &err), JZ_ELIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
