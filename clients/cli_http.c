/* HTTP/1.1 for the jazari client: buffered JSON requests and streamed GETs for logs, one
 * request per connection (cli_transport.c makes it: proxies, TLS 1.2 or later with the server's
 * certificate checked against cli->ca or the system's CAs). Answers framed by Content-Length,
 * chunked, or the end of the connection. Our own small client instead of libcurl: loading
 * libcurl and its 36 libraries was most of every command's run time (docs/design-notes.md).
 * The token goes only into the Authorization header, never into messages. */
#include "clients/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clients/cli_transport.h"
#include "common/json.h"
#include "common/time.h"

/* A 429 with Retry-After (the server's rate limit) is retried after that many seconds, this many
 * times at most, when the wait is short. */
#define RATE_RETRIES 3
#define RATE_MAX_WAIT_S 10
#define HEAD_MAX (64u << 10)         /* bytes of one answer's status line and headers */
#define STREAM_ERROR_MAX (64u << 10) /* bytes kept of a streamed GET's error answer */
#define REQUEST_HEAD_MAX (JZ_CLI_MAX_URL * 3 + JZ_CLI_MAX_TOKEN + 4096) /* + the path */

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

/* ---- one answer -------------------------------------------------------------------------- */

/* What was learnt of an answer, and where its body goes: a streamed GET's 2xx body to sink,
 * anything else into body. */
struct reply {
    long status;
    long retry_after_s;     /* -1: none, or not a short number of seconds */
    int64_t content_length; /* -1: none */
    bool chunked;
    bool stream;
    jz_cli_sink_fn sink;
    void *ud;
    bool sink_failed;
    uint64_t received;
    struct buf body;
};

/* Buffered reads from the connection, for lines (the head, chunk sizes) and bodies. */
struct reader {
    struct jz_cli_conn *conn;
    int64_t deadline_ms; /* < 0: none (a followed log) */
    size_t head_bytes;
    size_t pos, end;
    bool any; /* any byte received */
    char buf[16384];
};

/* Reads more into r->buf; 0 when some came, JZ_ECANCELED at the end of the stream. */
static int rd_fill(struct reader *r, struct jz_error *err)
{
    if (r->pos == r->end)
        r->pos = r->end = 0;
    if (r->end == sizeof r->buf) {
        memmove(r->buf, r->buf + r->pos, r->end - r->pos);
        r->end -= r->pos;
        r->pos = 0;
    }
    ssize_t n =
        jz_cli_conn_read(r->conn, r->buf + r->end, sizeof r->buf - r->end, r->deadline_ms, err);
    if (n < 0)
        return (int)n;
    if (n == 0)
        return JZ_ECANCELED;
    r->any = true;
    r->end += (size_t)n;
    return 0;
}

static int cut_short(struct jz_error *err)
{
    return jz_error_set(err, JZ_EIO, "the connection closed before the end of the answer");
}

/* One line of the head or of the chunked framing, without its CRLF, NUL-terminated in place.
 * Lines count against HEAD_MAX (a server cannot make the client read headers forever). */
static int rd_line(struct reader *r, char **line, struct jz_error *err)
{
    for (;;) {
        char *nl = memchr(r->buf + r->pos, '\n', r->end - r->pos);
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->pos)) + 1;
            r->head_bytes += n;
            if (r->head_bytes > HEAD_MAX)
                return jz_error_set(err, JZ_EIO, "the answer's headers exceed %u KiB",
                                    HEAD_MAX >> 10);
            *line = r->buf + r->pos;
            *nl = '\0';
            if (nl > *line && nl[-1] == '\r')
                nl[-1] = '\0';
            r->pos += n;
            return 0;
        }
        if (r->pos == 0 && r->end == sizeof r->buf)
            return jz_error_set(err, JZ_EIO, "a line of the answer exceeds %zu bytes",
                                sizeof r->buf);
        int rc = rd_fill(r, err);
        if (rc == JZ_ECANCELED)
            return r->any ? cut_short(err) : JZ_ECANCELED;
        if (rc)
            return rc;
    }
}

static int too_large(struct jz_error *err)
{
    return jz_error_set(err, JZ_ELIMIT, "response larger than %u MiB", JZ_CLI_MAX_RESPONSE >> 20);
}

static int deliver(struct reply *rp, const char *p, size_t n, struct jz_error *err)
{
    if (rp->stream && rp->status >= 200 && rp->status < 300) {
        if (rp->sink(p, n, rp->ud) != 0) {
            rp->sink_failed = true;
            return jz_error_set(err, JZ_ECANCELED, "cannot write to standard output");
        }
        rp->received += n;
        return 0;
    }
    if (rp->stream) {
        /* Error answers are small JSON; keep the start of a large one. */
        if (rp->body.len + n <= STREAM_ERROR_MAX)
            buf_append(&rp->body, p, n);
        return 0;
    }
    if (buf_append(&rp->body, p, n))
        return 0;
    return rp->body.overflow ? too_large(err) : jz_error_set(err, JZ_ENOMEM, "out of memory");
}

/* Passes the next n body bytes on (n < 0: all until the connection ends). */
static int rd_body(struct reader *r, struct reply *rp, int64_t n, struct jz_error *err)
{
    while (n != 0) {
        if (r->pos == r->end) {
            int rc = rd_fill(r, err);
            if (rc == JZ_ECANCELED && n < 0)
                return 0;
            if (rc == JZ_ECANCELED)
                return cut_short(err);
            if (rc)
                return rc;
        }
        size_t have = r->end - r->pos;
        size_t take = n < 0 || (uint64_t)n > have ? have : (size_t)n;
        int rc = deliver(rp, r->buf + r->pos, take, err);
        if (rc)
            return rc;
        r->pos += take;
        if (n > 0)
            n -= (int64_t)take;
    }
    return 0;
}

/* Transfer-Encoding: chunked. Sizes are hex, extensions after ';' and trailers are skipped. */
static int rd_chunked(struct reader *r, struct reply *rp, struct jz_error *err)
{
    for (;;) {
        char *line;
        r->head_bytes = 0; /* each framing line is bounded on its own */
        int rc = rd_line(r, &line, err);
        if (rc)
            return rc == JZ_ECANCELED ? cut_short(err) : rc;
        char *end;
        errno = 0;
        unsigned long long size = strtoull(line, &end, 16);
        while (*end == ' ' || *end == '\t')
            end++;
        if (end == line || !isxdigit((unsigned char)line[0]) || errno || (*end && *end != ';') ||
            size > INT64_MAX)
            return jz_error_set(err, JZ_EIO, "bad chunk size in the answer");
        if (size == 0)
            break;
        if (!rp->stream && size > JZ_CLI_MAX_RESPONSE)
            return too_large(err);
        if ((rc = rd_body(r, rp, (int64_t)size, err)))
            return rc;
        if ((rc = rd_line(r, &line, err)))
            return rc == JZ_ECANCELED ? cut_short(err) : rc;
        if (line[0])
            return jz_error_set(err, JZ_EIO, "a chunk of the answer is longer than its size");
    }
    for (;;) { /* trailers, up to the empty line */
        char *line;
        int rc = rd_line(r, &line, err);
        if (rc)
            return rc == JZ_ECANCELED ? cut_short(err) : rc;
        if (!line[0])
            return 0;
    }
}

/* The headers this client acts on. */
static int on_header(struct reply *rp, char *line, struct jz_error *err)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return jz_error_set(err, JZ_EIO, "a malformed header in the answer");
    *colon = '\0';
    char *v = colon + 1;
    v += strspn(v, " \t");
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = '\0';
    if (strcasecmp(line, "Content-Length") == 0) {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!isdigit((unsigned char)v[0]) || *end || errno ||
            (rp->content_length >= 0 && rp->content_length != n))
            return jz_error_set(err, JZ_EIO, "a bad Content-Length in the answer");
        rp->content_length = n;
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        /* chunked must be the last coding; anything else is read until the connection ends. */
        size_t n = strlen(v);
        rp->chunked = n >= 7 && strcasecmp(v + n - 7, "chunked") == 0;
    } else if (strcasecmp(line, "Retry-After") == 0) {
        char *end;
        long s = strtol(v, &end, 10);
        rp->retry_after_s = end == v || *end || s < 0 || s > RATE_MAX_WAIT_S ? -1 : s;
    }
    return 0;
}

/* Reads the status line and headers. JZ_ECANCELED: the connection ended before any byte. */
static int rd_head(struct reader *r, struct reply *rp, struct jz_error *err)
{
    for (;;) {
        char *line;
        r->head_bytes = 0;
        int rc = r->pos < r->end ? 0 : rd_fill(r, err);
        if (rc)
            return rc;
        /* Not HTTP at all (a TLS alert to a plain request, say): no need to wait for a line. */
        size_t have = r->end - r->pos, cmp = have < 5 ? have : 5;
        if (memcmp(r->buf + r->pos, "HTTP/", cmp) != 0)
            return jz_error_set(err, JZ_EPERM, "the answer is not HTTP/1.1");
        if ((rc = rd_line(r, &line, err)))
            return rc;
        int status = 0, n = 0;
        if (sscanf(line, "HTTP/1.%*1[01] %3d%n", &status, &n) != 1 || n < 12 || status < 100 ||
            status > 999)
            return jz_error_set(err, JZ_EPERM, "the answer is not HTTP/1.1");
        rp->status = status;
        rp->content_length = -1;
        rp->chunked = false;
        rp->retry_after_s = -1;
        for (;;) {
            if ((rc = rd_line(r, &line, err)))
                return rc == JZ_ECANCELED ? cut_short(err) : rc;
            if (!line[0])
                break;
            if ((rc = on_header(rp, line, err)))
                return rc;
        }
        /* 100 Continue and other interim answers come before the real one. */
        if (status >= 200 || status == 101)
            return 0;
    }
}

static int rd_answer(struct reader *r, struct reply *rp, const char *method, struct jz_error *err)
{
    int rc = rd_head(r, rp, err);
    if (rc)
        return rc;
    if (rp->status == 204 || rp->status == 304 || strcmp(method, "HEAD") == 0)
        return 0;
    if (rp->chunked)
        return rd_chunked(r, rp, err);
    if (rp->content_length >= 0) {
        if (!rp->stream && rp->content_length > (int64_t)JZ_CLI_MAX_RESPONSE)
            return too_large(err);
        return rd_body(r, rp, rp->content_length, err);
    }
    return rd_body(r, rp, -1, err);
}

/* ---- one exchange ------------------------------------------------------------------------ */

/* Where requests go: the server's URL and the proxy the environment names for it. */
struct target {
    struct jz_cli_url url;
    struct jz_cli_url proxy;
    bool use_proxy;
};

static const char *env_get(const char *name)
{
    return getenv(name);
}

static int target_resolve(const struct jz_cli *cli, struct target *t, struct jz_error *err)
{
    struct jz_error why = {0};
    if (jz_cli_url_parse(cli->url, false, &t->url, &why) != 0)
        return jz_error_set(err, JZ_EINVAL, "server URL: %s", why.msg); /* may hold a password */
    return jz_cli_proxy_for(&t->url, env_get, &t->proxy, &t->use_proxy, err);
}

/* The request's head: origin-form, or absolute-form to a proxy for plain http://. */
static int request_head(const struct jz_cli *cli, const struct target *t, const char *method,
                        const char *path, size_t body_len, bool has_body, char *out, size_t cap,
                        struct jz_error *err)
{
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return jz_error_set(err, JZ_EINVAL, "a space or control character in the path");
    bool absolute = t->use_proxy && !t->url.https;
    char auth[JZ_CLI_MAX_TOKEN + 64] = "", proxy_auth[1024] = "", length[128] = "";
    if (cli->token[0])
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", cli->token);
    if (absolute && jz_cli_proxy_auth_header(&t->proxy, proxy_auth, sizeof proxy_auth) != 0)
        return jz_error_set(err, JZ_ELIMIT, "the proxy's user:password is too long");
    /* libevent wants a length on a POST even when it is empty. */
    bool wants_length = has_body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                        strcmp(method, "PATCH") == 0;
    if (wants_length)
        snprintf(length, sizeof length, "%sContent-Length: %zu\r\n",
                 has_body ? "Content-Type: application/json\r\n" : "", body_len);
    int n = snprintf(out, cap,
                     "%s %s%s%s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: " JZ_CLI_USER_AGENT
                     "\r\n%sAccept: application/json\r\n%s%sConnection: close\r\n\r\n",
                     method, absolute ? "http://" : "", absolute ? t->url.authority : "",
                     t->url.base, path[0] ? path : "/", t->url.authority, auth, proxy_auth, length);
    memset(auth, 0, sizeof auth);
    memset(proxy_auth, 0, sizeof proxy_auth);
    if (n < 0 || (size_t)n >= cap) {
        memset(out, 0, cap);
        return jz_error_set(err, JZ_ELIMIT, "the request's URL is too long");
    }
    return n;
}

/* The one-line message for a failure; the hints say what the user most likely got wrong. */
static int net_error(const struct jz_cli *cli, bool connected, bool tls_failed, int code,
                     const char *why, struct jz_error *err)
{
    bool plain = strncasecmp(cli->url, "http://", 7) == 0;
    /* A TLS server answers a plain request with nothing, or with a TLS alert. */
    bool plain_to_tls = plain && (code == JZ_ECANCELED || code == JZ_EPERM);
    if (code == JZ_ECANCELED)
        why = "the server closed the connection without answering";
    if (connected && code == JZ_ETIMEDOUT)
        return jz_error_set(err, JZ_EIO, "no complete answer from %.120s within %d s", cli->url,
                            JZ_CLI_REQUEST_TIMEOUT_S);
    return jz_error_set(err, JZ_EIO, "%s %.120s: %s%s",
                        connected ? "bad answer from" : "cannot reach", cli->url, why,
                        plain_to_tls  ? " (if the server uses TLS, give an https:// URL)"
                        : !tls_failed ? ""
                        : cli->ca[0]  ? " (is --ca the CA that signed the server's certificate?)"
                                      : " (give the CA that signed the server's certificate with "
                                        "--ca FILE or JAZARI_CA)");
}

/* Connects, sends method path (with body when not NULL) and reads the answer into rp.
 * deadline_ms < 0: a followed stream, bounded only in connecting. */
static int exchange(const struct jz_cli *cli, const struct target *t, const char *method,
                    const char *path, const char *body, size_t body_len, int64_t deadline_ms,
                    struct reply *rp, struct jz_error *err)
{
    int64_t now = jz_time_mono_ms();
    int64_t connect_by = now + JZ_CLI_CONNECT_TIMEOUT_S * 1000;
    if (deadline_ms >= 0 && deadline_ms < connect_by)
        connect_by = deadline_ms;
    struct jz_error why = {0};
    struct jz_cli_conn *conn = NULL;
    bool tls_failed;
    int rc = jz_cli_conn_open(&t->url, t->use_proxy ? &t->proxy : NULL, cli->ca, connect_by,
                              rp->stream, &conn, &tls_failed, &why);
    if (rc)
        return rc == JZ_ENOMEM ? jz_error_set(err, rc, "out of memory")
                               : net_error(cli, false, tls_failed, rc, why.msg, err);
    size_t cap = REQUEST_HEAD_MAX + body_len;
    char *req = malloc(cap);
    struct reader *rd = malloc(sizeof *rd);
    if (!req || !rd) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto out;
    }
    int n = request_head(cli, t, method, path, body_len, body != NULL, req, REQUEST_HEAD_MAX, err);
    if (n < 0) {
        rc = n;
        goto out;
    }
    if (body)
        memcpy(req + n, body, body_len);
    /* Sending is bounded even for a stream: a server that takes no request is not followed. */
    int64_t send_by = deadline_ms >= 0 ? deadline_ms : now + JZ_CLI_REQUEST_TIMEOUT_S * 1000;
    int sent = jz_cli_conn_write(conn, req, (size_t)n + body_len, send_by, &why);
    memset(req, 0, (size_t)n); /* the token */
    if (sent == JZ_ETIMEDOUT) {
        rc = net_error(cli, true, false, sent, why.msg, err);
        goto out;
    }
    /* A server may answer and close before it read all of the body (a 401 before a large
     * submission): its answer says more than the broken send. */
    struct jz_error send_why = why;
    *rd = (struct reader){.conn = conn, .deadline_ms = sent ? send_by : deadline_ms};
    rc = rd_answer(rd, rp, method, &why);
    if (sent && rc && !rp->status) {
        rc = net_error(cli, true, false, sent, send_why.msg, err);
        goto out;
    }
    if (rc == JZ_ELIMIT || rc == JZ_ENOMEM || (rc == JZ_ECANCELED && rp->sink_failed))
        *err = why;
    else if (rc)
        rc = net_error(cli, true, false, rc, why.msg, err);
out:
    free(req);
    free(rd);
    jz_cli_conn_close(conn);
    return rc;
}

/* ---- the client's two calls -------------------------------------------------------------- */

int jz_cli_http(const struct jz_cli *cli, const char *method, const char *path, const json_t *body,
                struct jz_cli_response *r, struct jz_error *err)
{
    struct target t;
    int rc = target_resolve(cli, &t, err);
    if (rc)
        return rc;
    char *text = NULL;
    if (body && !(text = json_dumps(body, JSON_COMPACT)))
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    struct reply rp = {0};
    for (int tries = 0;; tries++) {
        rp.status = 0;
        rp.body.len = 0;
        if (rp.body.data)
            rp.body.data[0] = '\0';
        int64_t deadline = jz_time_mono_ms() + JZ_CLI_REQUEST_TIMEOUT_S * 1000;
        rc = exchange(cli, &t, method, path, text, text ? strlen(text) : 0, deadline, &rp, err);
        /* Over the rate limit: nothing was done, so any request may be sent again. */
        if (rc || rp.status != 429 || rp.retry_after_s < 0 || tries >= RATE_RETRIES)
            break;
        struct timespec ts = {.tv_sec = rp.retry_after_s ? rp.retry_after_s : 1};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    free(text);
    if (rc) {
        free(rp.body.data);
        return rc;
    }
    memset(r, 0, sizeof *r);
    r->status = rp.status;
    r->body = rp.body.data ? rp.body.data : calloc(1, 1);
    r->len = rp.body.len;
    if (!r->body)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    if (r->len)
        r->json = jz_json_parse(r->body, r->len, 64, NULL);
    return 0;
}

int jz_cli_http_stream(const struct jz_cli *cli, const char *path, jz_cli_sink_fn sink, void *ud,
                       struct jz_cli_response *r, uint64_t *received, struct jz_error *err)
{
    return jz_cli_http_stream_until(cli, path, -1, sink, ud, r, received, err);
}

int jz_cli_http_stream_until(const struct jz_cli *cli, const char *path, int64_t deadline_ms,
                             jz_cli_sink_fn sink, void *ud, struct jz_cli_response *r,
                             uint64_t *received, struct jz_error *err)
{
    memset(r, 0, sizeof *r);
    *received = 0;
    struct target t;
    int rc = target_resolve(cli, &t, err);
    if (rc)
        return rc;
    struct reply rp = {.stream = true, .sink = sink, .ud = ud};
    /* A followed log may stay quiet for hours: no overall deadline; TCP keep-alive notices a
     * dead peer. */
    rc = exchange(cli, &t, "GET", path, NULL, 0, deadline_ms, &rp, err);
    r->status = rp.status;
    if (rp.status && (rp.status < 200 || rp.status >= 300)) {
        r->body = rp.body.data ? rp.body.data : calloc(1, 1);
        r->len = rp.body.len;
        rp.body.data = NULL;
        if (r->len)
            r->json = jz_json_parse(r->body, r->len, 64, NULL);
    }
    free(rp.body.data);
    *received = rp.received;
    return rc;
}
