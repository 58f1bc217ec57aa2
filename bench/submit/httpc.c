/* Blocking keep-alive HTTP/1.1 client used by the submit benchmark's client threads: plain
 * sockets so that what is timed is the server, not a client library. */
#include "httpc.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *vlen)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    const char *v = line + n + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *value = v;
    *vlen = (size_t)(end - v);
    return true;
}

static bool token_in(const char *v, size_t vlen, const char *tok)
{
    size_t n = strlen(tok);
    for (size_t i = 0; i + n <= vlen; i++)
        if (strncasecmp(v + i, tok, n) == 0)
            return true;
    return false;
}

int jz_http_head_parse(const char *buf, size_t len, struct jz_http_head *out, struct jz_error *err)
{
    const char *end = NULL;
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            end = buf + i;
            break;
        }
    if (!end)
        return len >= JZ_HTTPC_MAX_HEAD
                   ? jz_error_set(err, JZ_ELIMIT, "response head over %d bytes", JZ_HTTPC_MAX_HEAD)
                   : 0;
    if ((size_t)(end - buf) + 4 > JZ_HTTPC_MAX_HEAD)
        return jz_error_set(err, JZ_ELIMIT, "response head over %d bytes", JZ_HTTPC_MAX_HEAD);
    struct jz_http_head h = {.content_length = -1, .head_len = (size_t)(end - buf) + 4};
    int minor = 0, status = 0, consumed = 0;
    if (sscanf(buf, "HTTP/1.%1d %3d%n", &minor, &status, &consumed) != 2 || consumed != 12 ||
        status < 100 || status > 599)
        return jz_error_set(err, JZ_ECORRUPT, "bad status line '%.40s'", buf);
    h.status = status;
    h.close = minor == 0; /* HTTP/1.0 closes unless told otherwise; good enough here */
    const char *line = memchr(buf, '\n', (size_t)(end - buf));
    while (line && line < end) {
        line++;
        const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
        if (!eol)
            break;
        size_t llen = (size_t)(eol - line);
        const char *v;
        size_t vlen;
        if (header_is(line, llen, "Content-Length", &v, &vlen)) {
            long long cl = 0;
            if (vlen == 0 || vlen > 12)
                return jz_error_set(err, JZ_ECORRUPT, "bad Content-Length");
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return jz_error_set(err, JZ_ECORRUPT, "bad Content-Length");
                cl = cl * 10 + (v[i] - '0');
            }
            h.content_length = cl;
        } else if (header_is(line, llen, "Transfer-Encoding", &v, &vlen)) {
            h.chunked = token_in(v, vlen, "chunked");
        } else if (header_is(line, llen, "Connection", &v, &vlen)) {
            if (token_in(v, vlen, "close"))
                h.close = true;
            else if (token_in(v, vlen, "keep-alive"))
                h.close = false;
        }
        line = memchr(line, '\n', (size_t)(end + 2 - line));
    }
    *out = h;
    return 1;
}

int jz_httpc_open(struct jz_httpc *c, int port, int timeout_ms, struct jz_error *err)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return jz_error_set(err, JZ_EIO, "connect to 127.0.0.1:%d: %s", port, strerror(e));
    }
    char *buf = c->buf;
    size_t cap = c->cap;
    if (!buf) {
        cap = 16 * 1024;
        buf = malloc(cap);
        if (!buf) {
            close(fd);
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
    }
    *c =
        (struct jz_httpc){.fd = fd, .port = port, .timeout_ms = timeout_ms, .buf = buf, .cap = cap};
    return 0;
}

void jz_httpc_close(struct jz_httpc *c)
{
    if (c->buf && c->fd >= 0)
        close(c->fd);
    free(c->buf);
    *c = (struct jz_httpc){.fd = -1};
}

static int send_all(struct jz_httpc *c, const char *p, size_t n, struct jz_error *err)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return jz_error_set(
                err, JZ_EIO, "send: %s",
                w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? "timed out" : strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more bytes into c->buf, growing it up to limit bytes. */
static int recv_more(struct jz_httpc *c, size_t limit, struct jz_error *err)
{
    if (c->len + 1 >= c->cap) {
        if (c->cap >= limit)
            return jz_error_set(err, JZ_ELIMIT, "response over %zu bytes", limit);
        size_t cap = c->cap * 2 > limit ? limit : c->cap * 2;
        char *grown = realloc(c->buf, cap);
        if (!grown)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        c->buf = grown;
        c->cap = cap;
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - 1 - c->len, 0);
        if (r > 0) {
            c->len += (size_t)r;
            return 0;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return jz_error_set(err, JZ_EIO, "the server closed the connection");
        return jz_error_set(
            err, errno == EAGAIN || errno == EWOULDBLOCK ? JZ_ETIMEDOUT : JZ_EIO, "recv: %s",
            errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
    }
}

int jz_httpc_request(struct jz_httpc *c, const char *method, const char *path, const char *token,
                     const char *body, int *status, const char **body_out, size_t *body_len,
                     struct jz_error *err)
{
    if (c->must_reopen) {
        int port = c->port, timeout = c->timeout_ms;
        close(c->fd);
        c->fd = -1;
        if (jz_httpc_open(c, port, timeout, err))
            return err ? err->code : JZ_EIO;
    }
    char req[JZ_HTTPC_MAX_REQUEST];
    size_t blen = body ? strlen(body) : 0;
    int n =
        snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s%s%s"
                 "Content-Length: %zu\r\n\r\n",
                 method, path, c->port, token ? "Authorization: Bearer " : "", token ? token : "",
                 token ? "\r\n" : "", body ? "Content-Type: application/json\r\n" : "", blen);
    if (n < 0 || (size_t)n + blen > sizeof req)
        return jz_error_set(err, JZ_ELIMIT, "request over %d bytes", JZ_HTTPC_MAX_REQUEST);
    memcpy(req + n, body ? body : "", blen);
    if (send_all(c, req, (size_t)n + blen, err))
        return err ? err->code : JZ_EIO;

    /* Anything left over belongs to no request: this client never pipelines. */
    c->len = 0;
    struct jz_http_head h;
    int rc;
    while ((rc = jz_http_head_parse(c->buf, c->len, &h, err)) == 0)
        if (recv_more(c, JZ_HTTPC_MAX_HEAD + 1, err))
            return err ? err->code : JZ_EIO;
    if (rc < 0)
        return rc;
    if (h.chunked || h.content_length < 0)
        return jz_error_set(err, JZ_ENOTSUP, "response without Content-Length (status %d)",
                            h.status);
    if (h.content_length > JZ_HTTPC_MAX_BODY)
        return jz_error_set(err, JZ_ELIMIT, "response body of %lld bytes is over the limit",
                            h.content_length);
    size_t total = h.head_len + (size_t)h.content_length;
    while (c->len < total)
        if (recv_more(c, total + 1, err))
            return err ? err->code : JZ_EIO;
    c->buf[total] = '\0';
    c->must_reopen = h.close;
    *status = h.status;
    *body_out = c->buf + h.head_len;
    *body_len = (size_t)h.content_length;
    return 0;
}
