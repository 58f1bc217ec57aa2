/* Connections of the `jazari` client (internal to clients/): URLs, the proxy the environment
 * asks for, TCP with poll()-based deadlines, and TLS from an OpenSSL loaded only when an https://
 * URL is used, so that `jazari --help` and plain-HTTP calls do not pay for loading it.
 * Not thread-safe (the client is one thread). Errors are one line in a caller-owned jz_error. */
#ifndef JZ_CLIENTS_CLI_TRANSPORT_H
#define JZ_CLIENTS_CLI_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "clients/cli.h"

#define JZ_CLI_MAX_HOST 256
#define JZ_CLI_CONNECT_TIMEOUT_S 10  /* to a usable connection: TCP, proxy tunnel, TLS */
#define JZ_CLI_REQUEST_TIMEOUT_S 120 /* a whole buffered request, connection included */
#define JZ_CLI_USER_AGENT "jazari-cli/0.1"

/* A parsed http:// or https:// URL. host has no brackets ("::1"); authority is what the Host
 * header carries ("[::1]:8600", the port only when the URL gave one); base is the path prefix
 * without a trailing '/' ("" for none). userinfo (proxies only) is "user:password", still
 * percent-encoded. */
struct jz_cli_url {
    bool https;
    char host[JZ_CLI_MAX_HOST];
    char port[8];
    char authority[JZ_CLI_MAX_HOST + 16];
    char base[JZ_CLI_MAX_URL];
    char userinfo[512];
};

/* Parses url. A proxy URL (is_proxy) may omit the scheme (http:// is meant) and the port (1080,
 * as libcurl) and may carry user:password; a server URL may not carry user:password. Only
 * http:// proxies are supported. *u is written only on success. */
int jz_cli_url_parse(const char *url, bool is_proxy, struct jz_cli_url *u, struct jz_error *err);

/* True when no_proxy (a NO_PROXY value; NULL or "" bypasses nothing) says host (no brackets)
 * is reached directly, with libcurl's rules: "*" alone matches every host; otherwise a list
 * separated by commas or spaces in which a name matches itself and its subdomains ("example.com"
 * and ".example.com" both match "a.example.com", not "notexample.com"), case-insensitively, and
 * an IP address matches an IP literal host exactly or as a CIDR range ("10.0.0.0/8"). Loopback
 * addresses and "localhost" are not special: they go through the proxy unless listed. */
bool jz_cli_no_proxy_match(const char *host, const char *no_proxy);

/* The proxy for a request to u, from the environment as libcurl reads it: NO_PROXY first
 * (no_proxy, else NO_PROXY), then for http:// only the lowercase http_proxy (the uppercase
 * HTTP_PROXY can be set by a CGI client's "Proxy:" header, so libcurl ignores it), for https://
 * https_proxy, else HTTPS_PROXY; then all_proxy, else ALL_PROXY. An empty value means none.
 * Returns 0 with *use false when the request goes direct; *proxy is written only when *use. */
int jz_cli_proxy_for(const struct jz_cli_url *u, jz_cli_getenv_fn env, struct jz_cli_url *proxy,
                     bool *use, struct jz_error *err);

/* Writes "Proxy-Authorization: Basic ...\r\n" for a proxy URL with user:password (decoded
 * from percent-encoding), or "" for none, into buf. Returns 0, or JZ_ELIMIT when it does not
 * fit (buf is then cleared). */
int jz_cli_proxy_auth_header(const struct jz_cli_url *proxy, char *buf, size_t len);

/* One connection to the server, through a proxy tunnel and TLS when needed. */
struct jz_cli_conn;

/* Connects to u (through proxy when not NULL: a CONNECT tunnel for https://, else a plain TCP
 * connection to the proxy, and the caller writes absolute-form requests) and, for https://,
 * does the TLS handshake checking the certificate against ca_file ("" or NULL: the system's
 * CAs) and u->host. Everything up to a usable connection must end by deadline_ms (monotonic).
 * keepalive turns on TCP keep-alive probes (a stream that may stay quiet for hours).
 * On failure err says why in one line and *tls_failed says whether the TLS handshake was
 * what failed (for hints). *out (closed by the caller) is written only on success. */
int jz_cli_conn_open(const struct jz_cli_url *u, const struct jz_cli_url *proxy,
                     const char *ca_file, int64_t deadline_ms, bool keepalive,
                     struct jz_cli_conn **out, bool *tls_failed, struct jz_error *err);

/* Writes all of data by deadline_ms (< 0: none). Returns 0 or JZ_EIO / JZ_ETIMEDOUT. */
int jz_cli_conn_write(struct jz_cli_conn *c, const void *data, size_t len, int64_t deadline_ms,
                      struct jz_error *err);

/* Reads what is there, at most len bytes, waiting until deadline_ms (< 0: forever).
 * Returns the number of bytes, 0 at the end of the stream, or a negative JZ_E* code. */
ssize_t jz_cli_conn_read(struct jz_cli_conn *c, void *buf, size_t len, int64_t deadline_ms,
                         struct jz_error *err);

/* Closes the connection; accepts NULL. */
void jz_cli_conn_close(struct jz_cli_conn *c);

#endif
