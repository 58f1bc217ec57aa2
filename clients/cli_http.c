/* HTTP for the jazari client (libcurl): buffered JSON requests and streamed GETs for logs, over
 * TLS (TLS 1.2 or later, the server's certificate checked against cli->ca or the system's CAs)
 * for https:// URLs. The token goes only into the Authorization header, never into messages. */
#include "clients/cli.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"

#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 120L
/* A 429 with Retry-After (the server's rate limit) is retried after that many seconds, this many
 * times at most, when the wait is short. */
#define RATE_RETRIES 3
#define RATE_MAX_WAIT_S 10

void jz_cli_response_clear(struct jz_cli_response *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

struct buf {
    char *data;
    size_t len, cap;
    bool overflow;
};

static bool buf_append(struct buf *b, const char *p, size_t n)
{
    if (b->len + n > JZ_CLI_MAX_RESPONSE) {
        b->overflow = true;
        return false;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return false;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) ? size * n : 0;
}

static CURL *easy_new(const struct jz_cli *cli, const char *path, struct curl_slist **headers,
                      char *errbuf, struct jz_error *err)
{
    size_t need = strlen(cli->url) + strlen(path) + 1;
    char *url = malloc(need);
    CURL *c = curl_easy_init();
    if (!url || !c) {
        free(url);
        if (c)
            curl_easy_cleanup(c);
        jz_error_set(err, JZ_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(url, need, "%s%s", cli->url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    free(url); /* libcurl copies option strings */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_USERAGENT,
                     "jazari-cli/"
                     "0.1");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    /* Only http(s): a config file must not turn the client into a file:// reader. */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (cli->ca[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, cli->ca);
    errbuf[0] = '\0';
    struct curl_slist *h = NULL;
    if (cli->token[0]) {
        char auth[JZ_CLI_MAX_TOKEN + 32];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", cli->token);
        h = curl_slist_append(h, auth);
        memset(auth, 0, sizeof auth);
    }
    h = curl_slist_append(h, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    *headers = h;
    return c;
}

static int net_error(const struct jz_cli *cli, CURLcode rc, const char *errbuf,
                     struct jz_error *err)
{
    /* A certificate the client cannot check is most often a CA it was not given. */
    bool tls = rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
               rc == CURLE_SSL_CONNECT_ERROR;
    /* A TLS server answers a plain request with nothing at all. */
    bool plain_to_tls = rc == CURLE_GOT_NOTHING && strncmp(cli->url, "http://", 7) == 0;
    return jz_error_set(err, JZ_EIO, "cannot reach %.200s: %s%s", cli->url,
                        errbuf[0] ? errbuf : curl_easy_strerror(rc),
                        plain_to_tls ? " (if the server uses TLS, give an https:// URL)"
                        : !tls       ? ""
                        : cli->ca[0] ? " (is --ca the CA that signed the server's certificate?)"
                                     : " (give the CA that signed the server's certificate with "
                                       "--ca FILE or JAZARI_CA)");
}

/* Seconds to wait before retrying a 429 that says when (Retry-After), or -1. */
static long retry_after(CURL *c, long status)
{
    struct curl_header *h = NULL;
    if (status != 429 || curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
        return -1;
    char *end;
    long s = strtol(h->value, &end, 10);
    return *end || s < 0 || s > RATE_MAX_WAIT_S ? -1 : s;
}

int jz_cli_http(const struct jz_cli *cli, const char *method, const char *path, const json_t *body,
                struct jz_cli_response *r, struct jz_error *err)
{
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers = NULL;
    CURL *c = easy_new(cli, path, &headers, errbuf, err);
    if (!c)
        return JZ_ENOMEM;
    char *text = NULL;
    struct buf b = {0};
    int rc = 0;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text) {
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
            goto out;
        }
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(c);
    /* Over the rate limit: nothing was done, so any request may be sent again. */
    for (int tries = 0; cc == CURLE_OK && !b.overflow && tries < RATE_RETRIES; tries++) {
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        long wait_s = retry_after(c, status);
        if (wait_s < 0)
            break;
        struct timespec ts = {.tv_sec = wait_s ? wait_s : 1};
        nanosleep(&ts, NULL);
        b.len = 0;
        if (b.data)
            b.data[0] = '\0';
        cc = curl_easy_perform(c);
    }
    if (b.overflow) {
        rc = jz_error_set(err, JZ_ELIMIT, "response larger than %u MiB", JZ_CLI_MAX_RESPONSE >> 20);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = net_error(cli, cc, errbuf, err);
        goto out;
    }
    memset(r, 0, sizeof *r);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = b.data ? b.data : calloc(1, 1);
    r->len = b.len;
    b.data = NULL;
    if (r->len)
        r->json = jz_json_parse(r->body, r->len, 64, NULL);
out:
    free(b.data);
    free(text);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc;
}

struct stream {
    CURL *c;
    jz_cli_sink_fn sink;
    void *ud;
    struct buf err_body;
    uint64_t received;
    long status;
    bool sink_failed;
};

static size_t on_stream(char *p, size_t size, size_t n, void *ud)
{
    struct stream *s = ud;
    size_t len = size * n;
    if (s->status == 0)
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status < 200 || s->status >= 300) {
        /* Error bodies are small JSON; keep at most 64 KiB of one. */
        if (s->err_body.len + len <= 65536)
            buf_append(&s->err_body, p, len);
        return len;
    }
    if (s->sink(p, len, s->ud) != 0) {
        s->sink_failed = true;
        return 0;
    }
    s->received += len;
    return len;
}

int jz_cli_http_stream(const struct jz_cli *cli, const char *path, jz_cli_sink_fn sink, void *ud,
                       struct jz_cli_response *r, uint64_t *received, struct jz_error *err)
{
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers = NULL;
    CURL *c = easy_new(cli, path, &headers, errbuf, err);
    if (!c)
        return JZ_ENOMEM;
    struct stream s = {.c = c, .sink = sink, .ud = ud};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    /* A followed log may stay quiet for hours: no overall timeout, but notice a dead peer. */
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    CURLcode cc = curl_easy_perform(c);
    int rc = 0;
    memset(r, 0, sizeof *r);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (s.sink_failed)
        rc = jz_error_set(err, JZ_ECANCELED, "cannot write to standard output");
    else if (cc != CURLE_OK)
        rc = net_error(cli, cc, errbuf, err);
    if (r->status < 200 || r->status >= 300) {
        r->body = s.err_body.data ? s.err_body.data : calloc(1, 1);
        r->len = s.err_body.len;
        s.err_body.data = NULL;
        if (r->len)
            r->json = jz_json_parse(r->body, r->len, 64, NULL);
    }
    free(s.err_body.data);
    *received = s.received;
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc;
}
