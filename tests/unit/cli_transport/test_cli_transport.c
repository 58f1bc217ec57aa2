/* Tests of the jazari client's URL parsing, proxy choice and no_proxy matching
 * (clients/cli_transport.h). The connections themselves are tested end to end in
 * tests/integration/cli_http/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "clients/cli_transport.h"

static void test_url_parse(void **state)
{
    struct jz_cli_url u;
    struct jz_error err = {0};
    assert_int_equal(jz_cli_url_parse("http://127.0.0.1:8600", false, &u, &err), 0);
    assert_false(u.https);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "8600");
    assert_string_equal(u.authority, "127.0.0.1:8600");
    assert_string_equal(u.base, "");

    assert_int_equal(jz_cli_url_parse("HTTPS://Head.example/jazari/", false, &u, &err), 0);
    assert_true(u.https);
    assert_string_equal(u.host, "Head.example");
    assert_string_equal(u.port, "443");
    assert_string_equal(u.authority, "Head.example"); /* no port given, none in Host */
    assert_string_equal(u.base, "/jazari");

    assert_int_equal(jz_cli_url_parse("http://[::1]:9000/", false, &u, &err), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.authority, "[::1]:9000");
    assert_int_equal(jz_cli_url_parse("http://[fe80::1]", false, &u, &err), 0);
    assert_string_equal(u.port, "80");

    const char *bad[] = {"ftp://x",        "http://",      "http://:80",   "http://h:0",
                         "http://h:65536", "http://h:8x",  "http://[::1",  "http://[zz]:1",
                         "http://[::1]x",  "http://u:p@h", "http://h/a b", "127.0.0.1:8600"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&err, 0, sizeof err);
        assert_int_not_equal(jz_cli_url_parse(bad[i], false, &u, &err), 0);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_proxy_url_parse(void **state)
{
    struct jz_cli_url u;
    struct jz_error err = {0};
    assert_int_equal(jz_cli_url_parse("proxy.example", true, &u, &err), 0);
    assert_string_equal(u.port, "1080"); /* libcurl's default proxy port */
    assert_int_equal(jz_cli_url_parse("http://us%40r:pw@10.0.0.1:3128/", true, &u, &err), 0);
    assert_string_equal(u.userinfo, "us%40r:pw");
    assert_string_equal(u.host, "10.0.0.1");
    assert_string_equal(u.port, "3128");
    assert_int_not_equal(jz_cli_url_parse("socks5://h:1080", true, &u, &err), 0);
    assert_int_not_equal(jz_cli_url_parse("https://h:443", true, &u, &err), 0);

    char hdr[256];
    assert_int_equal(jz_cli_proxy_auth_header(&u, hdr, sizeof hdr), 0);
    assert_string_equal(hdr, "Proxy-Authorization: Basic dXNAcjpwdw==\r\n"); /* "us@r:pw" */
    u.userinfo[0] = '\0';
    assert_int_equal(jz_cli_proxy_auth_header(&u, hdr, sizeof hdr), 0);
    assert_string_equal(hdr, "");
}

static void test_no_proxy(void **state)
{
    assert_false(jz_cli_no_proxy_match("a.example.com", NULL));
    assert_false(jz_cli_no_proxy_match("a.example.com", ""));
    assert_true(jz_cli_no_proxy_match("a.example.com", "*"));
    assert_false(jz_cli_no_proxy_match("a.example.com", "*.example.com")); /* no globs */
    assert_true(jz_cli_no_proxy_match("example.com", "example.com"));
    assert_true(jz_cli_no_proxy_match("a.example.com", "example.com"));
    assert_true(jz_cli_no_proxy_match("a.example.com", ".example.com"));
    assert_true(jz_cli_no_proxy_match("A.Example.COM.", "example.com."));
    assert_false(jz_cli_no_proxy_match("notexample.com", "example.com"));
    assert_false(jz_cli_no_proxy_match("example.com", "a.example.com"));
    assert_true(jz_cli_no_proxy_match("head", "other, ,head"));
    assert_true(jz_cli_no_proxy_match("head", "other head"));
    /* Loopback is not special: only listed hosts go direct. */
    assert_false(jz_cli_no_proxy_match("127.0.0.1", "localhost"));
    assert_false(jz_cli_no_proxy_match("localhost", "127.0.0.1"));
    assert_true(jz_cli_no_proxy_match("127.0.0.1", "127.0.0.1"));
    assert_true(jz_cli_no_proxy_match("127.0.0.1", "127.0.0.0/8"));
    assert_true(jz_cli_no_proxy_match("10.1.2.3", "10.1.0.0/16"));
    assert_false(jz_cli_no_proxy_match("10.2.2.3", "10.1.0.0/16"));
    assert_true(jz_cli_no_proxy_match("10.1.2.3", "10.1.2.0/23"));
    assert_false(jz_cli_no_proxy_match("10.1.2.3", "10.1.2.4"));
    assert_false(jz_cli_no_proxy_match("10.1.2.3", "10.1")); /* addresses are not suffixes */
    assert_false(jz_cli_no_proxy_match("10.1.2.3", "2.3"));
    assert_true(jz_cli_no_proxy_match("::1", "::1"));
    assert_true(jz_cli_no_proxy_match("fd00::5", "fd00::/8"));
    assert_false(jz_cli_no_proxy_match("fe80::5", "fd00::/8"));
    assert_false(jz_cli_no_proxy_match("::1", "127.0.0.1"));
}

/* A fake environment for jz_cli_proxy_for. */
static const char *env_vals[8][2];

static const char *env_lookup(const char *name)
{
    for (int i = 0; i < 8 && env_vals[i][0]; i++)
        if (strcmp(env_vals[i][0], name) == 0)
            return env_vals[i][1];
    return NULL;
}

/* The proxy chosen for url under the NULL-terminated NAME, VALUE list; "" for none. */
static const char *proxy_for(const char *url, ...)
{
    static char out[300];
    memset(env_vals, 0, sizeof env_vals);
    va_list ap;
    va_start(ap, url);
    for (int i = 0; i < 8; i++) {
        const char *name = va_arg(ap, const char *);
        if (!name)
            break;
        env_vals[i][0] = name;
        env_vals[i][1] = va_arg(ap, const char *);
    }
    va_end(ap);
    struct jz_cli_url u, p;
    struct jz_error err = {0};
    bool use = true;
    assert_int_equal(jz_cli_url_parse(url, false, &u, &err), 0);
    assert_int_equal(jz_cli_proxy_for(&u, env_lookup, &p, &use, &err), 0);
    snprintf(out, sizeof out, "%s", use ? p.authority : "");
    return out;
}

static void test_proxy_for(void **state)
{
    assert_string_equal(proxy_for("http://h:1", NULL), "");
    assert_string_equal(proxy_for("http://h:1", "http_proxy", "p:3128", NULL), "p:3128");
    /* The uppercase HTTP_PROXY is ignored (httpoxy); HTTPS_PROXY and ALL_PROXY are not. */
    assert_string_equal(proxy_for("http://h:1", "HTTP_PROXY", "p:3128", NULL), "");
    assert_string_equal(proxy_for("https://h:1", "HTTPS_PROXY", "s:1", NULL), "s:1");
    assert_string_equal(proxy_for("https://h:1", "https_proxy", "a:1", "HTTPS_PROXY", "b:1", NULL),
                        "a:1");
    assert_string_equal(proxy_for("https://h:1", "http_proxy", "p:1", NULL), "");
    assert_string_equal(proxy_for("http://h:1", "ALL_PROXY", "all:1", NULL), "all:1");
    assert_string_equal(proxy_for("http://h:1", "all_proxy", "a:1", "http_proxy", "p:1", NULL),
                        "p:1");
    /* An empty value means none, and is not passed over for the next variable. */
    assert_string_equal(proxy_for("https://h:1", "https_proxy", "", "HTTPS_PROXY", "b:1", NULL),
                        "");
    assert_string_equal(proxy_for("http://h:1", "http_proxy", "p:1", "no_proxy", "h", NULL), "");
    assert_string_equal(proxy_for("http://h:1", "http_proxy", "p:1", "NO_PROXY", "h", NULL), "");
    assert_string_equal(
        proxy_for("http://h:1", "http_proxy", "p:1", "no_proxy", "x", "NO_PROXY", "h", NULL),
        "p:1");
    assert_string_equal(proxy_for("http://[::1]:1", "http_proxy", "p:1", "no_proxy", "::1", NULL),
                        "");

    struct jz_cli_url u, p;
    struct jz_error err = {0};
    bool use;
    memset(env_vals, 0, sizeof env_vals);
    env_vals[0][0] = "http_proxy";
    env_vals[0][1] = "socks5://p:1080";
    assert_int_equal(jz_cli_url_parse("http://h:1", false, &u, &err), 0);
    assert_int_not_equal(jz_cli_proxy_for(&u, env_lookup, &p, &use, &err), 0);
    assert_non_null(strstr(err.msg, "http_proxy"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_proxy_url_parse),
        cmocka_unit_test(test_no_proxy),
        cmocka_unit_test(test_proxy_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
