/* Job events without the job table: the replay ring, webhook URLs, the destination policy and
 * its allow list, HMAC signatures, back-off, deliveries to a scripted HTTP server on 127.0.0.1
 * (port 0), and the per-user share of the queue. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/events_ring.h"
#include "server/webhooks.h"

static struct jz_event ev_of(int64_t id, const char *user)
{
    struct jz_event e = {.id = id, .job = id / 10};
    snprintf(e.user, sizeof e.user, "%s", user);
    e.frame = malloc(32);
    e.len = (size_t)snprintf(e.frame, 32, "id: %lld\n\n", (long long)id);
    return e;
}

static void test_ring(void **state)
{
    (void)state;
    struct jz_event_ring *r = jz_event_ring_new(3, 100);
    size_t pos = 99;
    /* Empty: only the floor itself resumes (a clean stop's last id). */
    assert_true(jz_event_ring_resume(r, 100, &pos));
    assert_int_equal(pos, 0);
    assert_false(jz_event_ring_resume(r, 99, &pos));
    assert_false(jz_event_ring_resume(r, 101, &pos)); /* never given out */
    for (int64_t id = 110; id <= 140; id += 10) {
        struct jz_event e = ev_of(id, "alice");
        jz_event_ring_push(r, &e);
    }
    /* 110 was evicted: a reader that saw 100 missed it; one that saw 110 did not. */
    assert_int_equal(jz_event_ring_count(r), 3);
    assert_int_equal(jz_event_ring_floor(r), 110);
    assert_int_equal(jz_event_ring_last(r), 140);
    assert_false(jz_event_ring_resume(r, 100, &pos));
    assert_true(jz_event_ring_resume(r, 110, &pos));
    assert_int_equal(pos, 0);
    assert_int_equal(jz_event_ring_at(r, pos)->id, 120);
    assert_true(jz_event_ring_resume(r, 125, &pos)); /* between ids: the next one */
    assert_int_equal(jz_event_ring_at(r, pos)->id, 130);
    assert_true(jz_event_ring_resume(r, 140, &pos));
    assert_int_equal(pos, 3);
    assert_null(jz_event_ring_at(r, 3));
    assert_false(jz_event_ring_resume(r, 141, &pos));
    assert_string_equal(jz_event_ring_at(r, 2)->frame, "id: 140\n\n");
    jz_event_ring_free(r);
    jz_event_ring_free(NULL);
    assert_null(jz_event_ring_new(0, 0));
}

static void test_sign(void **state)
{
    (void)state;
    /* RFC 4231, test case 2. */
    char sig[JZ_WEBHOOK_SIGNATURE_LEN + 1];
    const char *data = "what do ya want for nothing?";
    jz_webhook_sign("Jefe", data, strlen(data), sig);
    assert_string_equal(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b9"
                             "64ec3843");
}

static void test_urls(void **state)
{
    (void)state;
    const char *good[] = {"http://127.0.0.1:8080/hook", "https://hooks.example.org/a/b?x=1",
                          "http://example.org", "HTTPS://[::1]:9/", "http://a-b.c:65535/x"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(jz_webhook_url_ok(good[i], NULL, 0));
    const char *bad[] = {"",
                         "ftp://example.org/",
                         "example.org/hook",
                         "http:///path",
                         "http://user:pw@example.org/",
                         "http://example.org:0/",
                         "http://example.org:70000/",
                         "http://example.org/a b",
                         "http://example.org/\r\nX: y",
                         "http://exa_mple.org/",
                         "http://example.org/#frag"};
    char why[160];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_false(jz_webhook_url_ok(bad[i], why, sizeof why));
        assert_true(why[0] != '\0');
    }
    char *huge = malloc(JZ_WEBHOOK_MAX_URL + 16);
    memset(huge, 'a', JZ_WEBHOOK_MAX_URL + 15);
    memcpy(huge, "http://x.org/", 13);
    huge[JZ_WEBHOOK_MAX_URL + 15] = '\0';
    assert_false(jz_webhook_url_ok(huge, why, sizeof why));
    assert_non_null(strstr(why, "limit"));
    free(huge);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(jz_webhook_backoff_s(1), 1);
    assert_int_equal(jz_webhook_backoff_s(2), 2);
    assert_int_equal(jz_webhook_backoff_s(3), 4);
    assert_int_equal(jz_webhook_backoff_s(7), 64);
    assert_int_equal(jz_webhook_backoff_s(9), 256);
    assert_int_equal(jz_webhook_backoff_s(10), JZ_WEBHOOK_BACKOFF_MAX_S);
    assert_int_equal(jz_webhook_backoff_s(60), JZ_WEBHOOK_BACKOFF_MAX_S);
}

/* A receiver that answers the statuses in script, one per request, and records what it got. */
struct receiver {
    const int *script;
    size_t n, got;
    char signature[128], delivery[64], event[64], agent[64], type[64];
    char body[256];
};

static void copy_header(struct evhttp_request *req, const char *name, char *out, size_t len)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    snprintf(out, len, "%s", v ? v : "");
}

static void on_hook(struct evhttp_request *req, void *arg)
{
    struct receiver *rc = arg;
    copy_header(req, "X-Jazari-Signature-256", rc->signature, sizeof rc->signature);
    copy_header(req, "X-Jazari-Delivery", rc->delivery, sizeof rc->delivery);
    copy_header(req, "X-Jazari-Event", rc->event, sizeof rc->event);
    copy_header(req, "User-Agent", rc->agent, sizeof rc->agent);
    copy_header(req, "Content-Type", rc->type, sizeof rc->type);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n >= sizeof rc->body)
        n = sizeof rc->body - 1;
    evbuffer_remove(in, rc->body, n);
    rc->body[n] = '\0';
    int status = rc->got < rc->n ? rc->script[rc->got] : 200;
    rc->got++;
    evhttp_send_reply(req, status, "X", NULL);
}

/* Runs the loop until the delivery is over (nothing pending) or limit_s passed. */
static void run_until_done(struct event_base *base, struct jz_webhooks *wh, int limit_s)
{
    for (int i = 0; i < limit_s * 20; i++) {
        struct jz_webhook_stats st;
        jz_webhooks_stats(wh, &st);
        if (st.pending == 0)
            return;
        struct timeval tick = {.tv_sec = 0, .tv_usec = 50 * 1000};
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
    fail_msg("the delivery did not end within %d s", limit_s);
}

static void deliver(const int *script, size_t n, struct receiver *rc, struct jz_webhook_stats *st)
{
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    assert_non_null(sock);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sa, &sl);
    *rc = (struct receiver){.script = script, .n = n};
    evhttp_set_gencb(http, on_hook, rc);
    struct jz_webhooks *wh = NULL;
    struct jz_error err = {0};
    assert_int_equal(jz_webhooks_open(base, "::1, 127.0.0.1/32", &wh, &err), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook?x=1", ntohs(sa.sin_port));
    const char *body = "{\"id\":7,\"state\":\"SUCCEEDED\"}";
    assert_true(
        jz_webhooks_send(wh, url, "0123456789abcdef", body, strlen(body), "42", 7, "alice"));
    run_until_done(base, wh, 20);
    jz_webhooks_stats(wh, st);
    jz_webhooks_close(wh);
    evhttp_free(http);
    event_base_free(base);
}

static void test_deliver_retries(void **state)
{
    (void)state;
    static const int script[] = {500, 503, 200};
    struct receiver rc;
    struct jz_webhook_stats st;
    deliver(script, 3, &rc, &st);
    assert_int_equal(rc.got, 3);
    assert_int_equal(st.attempts, 3);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.failed, 0);
    const char *body = "{\"id\":7,\"state\":\"SUCCEEDED\"}";
    assert_string_equal(rc.body, body);
    char want[JZ_WEBHOOK_SIGNATURE_LEN + 1];
    jz_webhook_sign("0123456789abcdef", body, strlen(body), want);
    assert_string_equal(rc.signature, want);
    assert_string_equal(rc.delivery, "42");
    assert_string_equal(rc.event, "job.ended");
    assert_string_equal(rc.type, "application/json");
    assert_non_null(strstr(rc.agent, "jazarid/"));
}

static void test_deliver_refused(void **state)
{
    (void)state;
    static const int script[] = {404, 200};
    struct receiver rc;
    struct jz_webhook_stats st;
    deliver(script, 2, &rc, &st);
    assert_int_equal(rc.got, 1); /* a 404 is final */
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.delivered, 0);
    static const int limited[] = {429, 200};
    deliver(limited, 2, &rc, &st);
    assert_int_equal(rc.got, 2); /* a 429 asks for a retry */
    assert_int_equal(st.delivered, 1);
}

static void test_drop(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct jz_webhooks *wh = NULL;
    struct jz_error err = {0};
    assert_int_equal(jz_webhooks_open(base, "127.0.0.0/8", &wh, &err), 0);
    assert_false(jz_webhooks_send(wh, "gopher://x/", "0123456789abcdef", "{}", 2, "1", 1, "a"));
    assert_false(jz_webhooks_send(wh, "http://x.org/", NULL, "{}", 2, "2", 1, "a"));
    struct jz_webhook_stats st;
    jz_webhooks_stats(wh, &st);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.pending, 0);
    /* Closing with a delivery pending frees it (LSan checks under the asan preset). */
    assert_true(
        jz_webhooks_send(wh, "http://127.0.0.1:9/", "0123456789abcdef", "{}", 2, "3", 1, "a"));
    jz_webhooks_close(wh);
    jz_webhooks_close(NULL);
    event_base_free(base);
}


static bool allowed(const char *text, const char *allow)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, text, &sin.sin_addr) == 1)
        return jz_webhook_address_allowed((struct sockaddr *)&sin, allow);
    if (inet_pton(AF_INET6, text, &sin6.sin6_addr) == 1)
        return jz_webhook_address_allowed((struct sockaddr *)&sin6, allow);
    fail_msg("%s is not an address", text);
    return false;
}

static void test_policy(void **state)
{
    (void)state;
    /* Refused by default: every range, at its edges, and in its IPv6 forms. */
    const char *refused[] = {
        "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255",
        "172.16.0.1", "172.31.255.255", "192.168.0.1", "192.168.255.255", "169.254.169.254",
        "169.254.0.1", "100.64.0.1", "100.127.255.255", "224.0.0.1", "239.255.255.250",
        "255.255.255.255", "::1", "::", "fe80::1", "febf::1", "fc00::1", "fd12:3456::1",
        "ff02::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3",
        "::ffff:192.168.1.1", "::ffff:0.0.0.0", "::127.0.0.1", "64:ff9b::a9fe:a9fe",
        "64:ff9b::10.0.0.1"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (allowed(refused[i], NULL))
            fail_msg("%s was allowed", refused[i]);
    /* The rest of the world, next to those ranges too. */
    const char *fine[] = {"8.8.8.8", "1.1.1.1", "9.255.255.255", "11.0.0.0", "172.15.255.255",
                          "172.32.0.0", "192.167.255.255", "192.169.0.0", "169.253.255.255",
                          "169.255.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255",
                          "128.0.0.0", "223.255.255.255", "2001:db8::1", "2606:4700::1111",
                          "fe7f::1", "fbff::1", "::ffff:8.8.8.8", "64:ff9b::808:808"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
        if (!allowed(fine[i], NULL) || !allowed(fine[i], ""))
            fail_msg("%s was refused", fine[i]);
    char why[200];
    struct sockaddr_in meta = {.sin_family = AF_INET};
    inet_pton(AF_INET, "169.254.169.254", &meta.sin_addr);
    assert_false(jz_webhook_address_check((struct sockaddr *)&meta, NULL, why, sizeof why));
    assert_non_null(strstr(why, "link-local"));
    assert_non_null(strstr(why, "--webhook-allow"));
    struct sockaddr unix_like = {.sa_family = AF_UNIX};
    assert_false(jz_webhook_address_allowed(&unix_like, "0.0.0.0/0,::/0"));

    /* The allow list opens exactly its ranges, mapped forms of IPv4 ranges included. */
    assert_true(allowed("127.0.0.1", "127.0.0.1/32"));
    assert_true(allowed("::ffff:127.0.0.1", "127.0.0.1/32"));
    assert_false(allowed("127.0.0.2", "127.0.0.1/32"));
    assert_false(allowed("::1", "127.0.0.1/32"));
    assert_true(allowed("::1", "127.0.0.1/32, ::1"));
    assert_true(allowed("10.1.2.200", "192.168.0.0/16,10.1.2.0/24"));
    assert_false(allowed("10.1.3.1", "192.168.0.0/16,10.1.2.0/24"));
    assert_true(allowed("fd00:1::5", "fd00::/8"));
    assert_false(allowed("fc00::5", "fd00::/8"));
    assert_true(allowed("172.20.1.1", "172.16.0.0/12"));
    assert_true(allowed("10.9.9.9", "0.0.0.0/0"));
    assert_false(allowed("fd00::1", "0.0.0.0/0")); /* IPv4 ranges are IPv4 only */
    assert_true(allowed("fe80::1", "::/0"));
    assert_false(allowed("10.0.0.1", "10.0.0.0/33")); /* a list that does not parse */

    /* Parsing: good lists, and bad ones refused with a reason. */
    const char *good_lists[] = {"",
                                "127.0.0.1/32",
                                "127.0.0.1",
                                "10.1.2.0/24,fd00::/8",
                                " 10.0.0.0/8 , 192.168.0.0/16 ",
                                "::1/128",
                                "0.0.0.0/0",
                                "::/0",
                                "::ffff:10.0.0.0/104"};
    for (size_t i = 0; i < sizeof good_lists / sizeof good_lists[0]; i++)
        if (!jz_webhook_allow_list_ok(good_lists[i], NULL, 0))
            fail_msg("'%s' was refused", good_lists[i]);
    assert_true(jz_webhook_allow_list_ok(NULL, NULL, 0));
    const char *bad_lists[] = {"10.0.0.0/33", "::/129",        "10.1.2.5/24", "10.0.0",
                               "10.0.0.0/",   "10.0.0.0/x",    "10.0.0.0/-1", "fd00::/8,",
                               ",10.0.0.0/8", "10.0.0.0/8,,::1", "localhost", "10.0.0.0/8;::1",
                               "10.0.0.0/0008", "1.2.3.4 5.6.7.8", "fd00::1/8"};
    for (size_t i = 0; i < sizeof bad_lists / sizeof bad_lists[0]; i++) {
        why[0] = '\0';
        if (jz_webhook_allow_list_ok(bad_lists[i], why, sizeof why))
            fail_msg("'%s' was accepted", bad_lists[i]);
        assert_non_null(strstr(why, "CIDR"));
    }

    /* At submission: literals outside the policy are refused, names wait for delivery. */
    assert_false(jz_webhook_url_allowed("http://127.0.0.1:8080/h", NULL, why, sizeof why));
    assert_non_null(strstr(why, "127.0.0.1 is a loopback address"));
    assert_false(jz_webhook_url_allowed("http://[::1]/h", "", why, sizeof why));
    assert_false(jz_webhook_url_allowed("http://[::ffff:169.254.169.254]/", NULL, why,
                                        sizeof why));
    assert_false(jz_webhook_url_allowed("https://10.0.0.1/", "10.1.0.0/16", why, sizeof why));
    assert_true(jz_webhook_url_allowed("http://127.0.0.1:8080/h", "127.0.0.1/32", NULL, 0));
    assert_true(jz_webhook_url_allowed("http://[::1]:9/", "::1/128", NULL, 0));
    assert_true(jz_webhook_url_allowed("https://8.8.8.8/", NULL, NULL, 0));
    assert_true(jz_webhook_url_allowed("http://localhost/", NULL, NULL, 0));
    assert_false(jz_webhook_url_allowed("ftp://8.8.8.8/", NULL, why, sizeof why));
}

/* A name or literal that leads inside is refused at delivery: nothing reaches the receiver, no
 * retry, counted as blocked. */
static void test_deliver_blocked(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    assert_non_null(sock);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sa, &sl);
    struct receiver rc = {0};
    evhttp_set_gencb(http, on_hook, &rc);
    struct jz_webhooks *wh = NULL;
    struct jz_error err = {0};
    assert_int_equal(jz_webhooks_open(base, "10.0.0.0/8", &wh, &err), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", ntohs(sa.sin_port));
    assert_true(jz_webhooks_send(wh, url, "0123456789abcdef", "{}", 2, "1", 1, "alice"));
    /* localhost comes from the hosts file, at once, but goes through the same check. */
    snprintf(url, sizeof url, "http://localhost:%d/hook", ntohs(sa.sin_port));
    assert_true(jz_webhooks_send(wh, url, "0123456789abcdef", "{}", 2, "2", 1, "alice"));
    run_until_done(base, wh, 20);
    struct jz_webhook_stats st;
    jz_webhooks_stats(wh, &st);
    assert_int_equal(rc.got, 0);
    assert_int_equal(st.blocked, 2);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.attempts, 0);
    jz_webhooks_close(wh);
    evhttp_free(http);
    event_base_free(base);
}

/* One user's deliveries take at most JZ_WEBHOOK_MAX_PENDING_PER_USER places. */
static void test_per_user_cap(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct jz_webhooks *wh = NULL;
    struct jz_error err = {0};
    assert_int_equal(jz_webhooks_open(base, NULL, &wh, &err), 0);
    char id[16];
    for (int i = 0; i < JZ_WEBHOOK_MAX_PENDING_PER_USER; i++) {
        snprintf(id, sizeof id, "%d", i);
        assert_true(jz_webhooks_send(wh, "http://192.0.2.1/", "0123456789abcdef", "{}", 2, id, i,
                                     "mallory"));
    }
    assert_false(jz_webhooks_send(wh, "http://192.0.2.1/", "0123456789abcdef", "{}", 2, "x", 1,
                                  "mallory"));
    assert_true(jz_webhooks_send(wh, "http://192.0.2.1/", "0123456789abcdef", "{}", 2, "y", 2,
                                 "alice"));
    struct jz_webhook_stats st;
    jz_webhooks_stats(wh, &st);
    assert_int_equal(st.pending, JZ_WEBHOOK_MAX_PENDING_PER_USER + 1);
    assert_int_equal(st.dropped, 1);
    jz_webhooks_close(wh); /* nothing ran: the pending ones are abandoned */
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_deliver_retries),
        cmocka_unit_test(test_deliver_refused),
        cmocka_unit_test(test_drop),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_deliver_blocked),
        cmocka_unit_test(test_per_user_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
