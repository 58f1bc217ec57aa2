/* Unit tests of the submit benchmark's own parts: the latency histogram, percentiles, the
 * timestamp parser, and the HTTP client against a scripted server on 127.0.0.1 (port 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpc.h"
#include "stats.h"

static void test_hist_exact_and_quantiles(void **state)
{
    struct jz_lathist *h = calloc(1, sizeof *h);
    assert_non_null(h);
    assert_true(jz_lathist_quantile_us(h, 0.5) == 0);
    for (uint64_t v = 1; v <= 100; v++)
        jz_lathist_add(h, v);
    assert_int_equal(h->count, 100);
    /* Below 128 µs every value has its own bucket: nearest rank is exact. */
    assert_true(jz_lathist_quantile_us(h, 0.50) == 50);
    assert_true(jz_lathist_quantile_us(h, 0.99) == 99);
    assert_true(jz_lathist_quantile_us(h, 1.0) == 100);
    free(h);
}

static void test_hist_relative_error(void **state)
{
    struct jz_lathist *h = calloc(1, sizeof *h), *g = calloc(1, sizeof *g);
    assert_non_null(h);
    assert_non_null(g);
    /* 1..100000 µs split across two histograms, then merged. */
    for (uint64_t v = 1; v <= 100000; v++)
        jz_lathist_add(v % 2 ? h : g, v);
    jz_lathist_merge(h, g);
    assert_int_equal(h->count, 100000);
    assert_int_equal(h->max_us, 100000);
    double p50 = jz_lathist_quantile_us(h, 0.50), p99 = jz_lathist_quantile_us(h, 0.99);
    assert_true(p50 > 50000 * 0.984 && p50 < 50000 * 1.016);
    assert_true(p99 > 99000 * 0.984 && p99 < 99000 * 1.016);
    /* Never above the largest value recorded. */
    assert_true(jz_lathist_quantile_us(h, 1.0) <= 100000);
    /* Huge values are clamped into the last bucket, not out of bounds. */
    jz_lathist_add(g, UINT64_MAX);
    assert_int_equal(g->buckets[JZ_LATHIST_BUCKETS - 1], 1);
    free(h);
    free(g);
}

static void test_quantile_sorted(void **state)
{
    double v[] = {9, 1, 5, 3, 7, 2, 8, 4, 6, 10};
    assert_true(jz_quantile_sorted(v, 10, 0.50) == 5);
    assert_true(jz_quantile_sorted(v, 10, 0.99) == 10);
    assert_true(jz_quantile_sorted(v, 10, 0.10) == 1);
    assert_true(v[0] == 1 && v[9] == 10); /* sorted in place */
    assert_true(jz_quantile_sorted(v, 0, 0.5) == 0);
    double one = 42;
    assert_true(jz_quantile_sorted(&one, 1, 0.99) == 42);
}

static void test_head_parse(void **state)
{
    struct jz_http_head h;
    struct jz_error err = {0};
    const char *ok = "HTTP/1.1 201 Created\r\ncontent-length:  12 \r\nX: y\r\n\r\n{\"id\": 1}";
    assert_int_equal(jz_http_head_parse(ok, strlen(ok), &h, &err), 1);
    assert_int_equal(h.status, 201);
    assert_int_equal(h.content_length, 12);
    assert_int_equal(h.head_len, strstr(ok, "{") - ok);
    assert_false(h.chunked);
    assert_false(h.close);
    /* Incomplete heads ask for more bytes. */
    assert_int_equal(jz_http_head_parse(ok, 30, &h, &err), 0);
    const char *closing =
        "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(jz_http_head_parse(closing, strlen(closing), &h, &err), 1);
    assert_true(h.close);
    assert_true(h.chunked);
    assert_int_equal(h.content_length, -1);
    const char *old = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(jz_http_head_parse(old, strlen(old), &h, &err), 1);
    assert_true(h.close);
    const char *bad = "HTTP/1.1 2x1 Created\r\n\r\n";
    assert_int_equal(jz_http_head_parse(bad, strlen(bad), &h, &err), JZ_ECORRUPT);
    const char *badlen = "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n";
    assert_int_equal(jz_http_head_parse(badlen, strlen(badlen), &h, &err), JZ_ECORRUPT);
    char *huge = malloc(JZ_HTTPC_MAX_HEAD + 10);
    assert_non_null(huge);
    memset(huge, 'a', JZ_HTTPC_MAX_HEAD + 10);
    memcpy(huge, "HTTP/1.1 200 OK\r\n", 17);
    assert_int_equal(jz_http_head_parse(huge, JZ_HTTPC_MAX_HEAD + 10, &h, &err), JZ_ELIMIT);
    free(huge);
}

/* --- the client against a scripted server --------------------------------------------- */

struct script_server {
    int lfd;
    int port;
    int accepted;
    char last_request[2048];
};

/* Reads one request (head and Content-Length body); false when the peer closed. */
static bool read_request(int fd, char *buf, size_t len)
{
    size_t n = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = recv(fd, buf + n, len - 1 - n, 0);
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    const char *cl = strstr(buf, "Content-Length: ");
    size_t want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 16, NULL, 10) : 0);
    while (n < want) {
        ssize_t r = recv(fd, buf + n, len - 1 - n, 0);
        if (r <= 0)
            return false;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return true;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Connection 1: a 201 sent in two pieces, then a 200 with Connection: close. Connection 2 (the
 * client's reconnect): a chunked reply, which the client must refuse. */
static void *script_main(void *arg)
{
    struct script_server *s = arg;
    char req[2048];
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    s->accepted++;
    if (read_request(fd, req, sizeof req)) {
        snprintf(s->last_request, sizeof s->last_request, "%s", req);
        send_str(fd, "HTTP/1.1 201 Created\r\nContent-Le");
        usleep(20000);
        send_str(fd, "ngth: 9\r\n\r\n{\"id\":17}");
    }
    if (read_request(fd, req, sizeof req))
        send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    close(fd);
    fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    s->accepted++;
    if (read_request(fd, req, sizeof req))
        send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    close(fd);
    return NULL;
}

static void test_client_keepalive_and_reconnect(void **state)
{
    struct script_server s = {0};
    s.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s.lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(s.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s.lfd, 4), 0);
    assert_int_equal(getsockname(s.lfd, (struct sockaddr *)&sa, &sl), 0);
    s.port = ntohs(sa.sin_port);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, script_main, &s), 0);

    struct jz_httpc c = {.fd = -1};
    struct jz_error err = {0};
    int status = 0;
    const char *body;
    size_t blen;
    assert_int_equal(jz_httpc_open(&c, s.port, 5000, &err), 0);
    assert_int_equal(jz_httpc_request(&c, "POST", "/v1/jobs", "jz_abc", "{\"plugin\":\"batch\"}",
                                      &status, &body, &blen, &err),
                     0);
    assert_int_equal(status, 201);
    assert_int_equal(blen, 9);
    assert_string_equal(body, "{\"id\":17}");
    assert_non_null(strstr(s.last_request, "POST /v1/jobs HTTP/1.1\r\n"));
    assert_non_null(strstr(s.last_request, "Authorization: Bearer jz_abc\r\n"));
    assert_non_null(strstr(s.last_request, "Content-Length: 18\r\n\r\n{\"plugin\":\"batch\"}"));

    assert_int_equal(
        jz_httpc_request(&c, "GET", "/v1/jobs/17", "jz_abc", NULL, &status, &body, &blen, &err), 0);
    assert_int_equal(status, 200);
    assert_string_equal(body, "ok");
    /* The server closed: the next request reconnects, and a chunked reply is refused. */
    assert_int_equal(
        jz_httpc_request(&c, "GET", "/healthz", NULL, NULL, &status, &body, &blen, &err),
        JZ_ENOTSUP);
    pthread_join(th, NULL);
    assert_int_equal(s.accepted, 2);
    jz_httpc_close(&c);
    jz_httpc_close(&c); /* closing twice is allowed */

    /* Nobody listens any more. */
    close(s.lfd);
    struct jz_httpc d = {.fd = -1};
    assert_int_equal(jz_httpc_open(&d, s.port, 1000, &err), JZ_EIO);
    jz_httpc_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_exact_and_quantiles),
        cmocka_unit_test(test_hist_relative_error),
        cmocka_unit_test(test_quantile_sorted),
        cmocka_unit_test(test_head_parse),
        cmocka_unit_test(test_client_keepalive_and_reconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
