/* A minimal blocking HTTP/1.1 client for benchmarks: one keep-alive connection to 127.0.0.1,
 * one request at a time, Content-Length bodies only. Not thread-safe per connection; use one
 * connection per thread. */
#ifndef JZ_BENCH_SUBMIT_HTTPC_H
#define JZ_BENCH_SUBMIT_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include <jazari/error.h>

#define JZ_HTTPC_MAX_HEAD (64 * 1024)       /* response header block */
#define JZ_HTTPC_MAX_BODY (4 * 1024 * 1024) /* response body */
#define JZ_HTTPC_MAX_REQUEST (64 * 1024)    /* request line, headers and body together */

struct jz_httpc {
    int fd;
    int port;
    int timeout_ms;
    bool must_reopen; /* the server said Connection: close */
    char *buf;        /* received bytes; owned */
    size_t cap, len;
};

/* The parsed head of a response. */
struct jz_http_head {
    int status;
    size_t head_len;          /* bytes up to and including the blank line */
    long long content_length; /* -1 when absent */
    bool chunked;
    bool close;
};

/* Parses a response head from buf[0..len). Returns 1 and fills *out when complete, 0 when more
 * bytes are needed, or a negative JZ_E* code (with err) when it is malformed or too large. */
int jz_http_head_parse(const char *buf, size_t len, struct jz_http_head *out, struct jz_error *err);

/* Connects to 127.0.0.1:port with TCP_NODELAY; every later send or receive gives up after
 * timeout_ms. c is caller-owned and zeroed (or closed); on success it owns a socket and a
 * buffer until jz_httpc_close. */
int jz_httpc_open(struct jz_httpc *c, int port, int timeout_ms, struct jz_error *err);
/* Closes the socket and frees the buffer; accepts a zeroed or already closed c. */
void jz_httpc_close(struct jz_httpc *c);

/* Sends one request (body may be NULL; token may be NULL for no Authorization header) and
 * reads the whole response. *body_out points into c's buffer and stays valid until the next
 * call on c; it is NUL-terminated. Reconnects first when the previous response closed the
 * connection. */
int jz_httpc_request(struct jz_httpc *c, const char *method, const char *path, const char *token,
                     const char *body, int *status, const char **body_out, size_t *body_len,
                     struct jz_error *err);

#endif
