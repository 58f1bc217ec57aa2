/* Connections of the `jazari` client (cli_transport.h): URL parsing, proxies from the
 * environment with libcurl's rules, TCP connects and I/O with poll()-based deadlines, CONNECT
 * tunnels, and TLS through an OpenSSL that is dlopen()ed on the first https:// URL. Linking
 * libssl and libcrypto costs every run of the client about 0.7 ms of relocations (measured,
 * docs/design-notes.md), which is half the start-up budget of `jazari --help`. */
#include "clients/cli_transport.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Only for types and constants: every OpenSSL function is called through struct ossl. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/strutil.h"
#include "common/time.h"

#define PROXY_DEFAULT_PORT "1080" /* libcurl's default for a proxy URL without a port */
#define TUNNEL_REPLY_MAX 16384    /* bytes of a proxy's answer to CONNECT */
#define KEEPALIVE_S 60            /* idle and interval of TCP keep-alive probes, as libcurl */

/* ---- URLs -------------------------------------------------------------------------------- */

static bool parse_port(const char *s, size_t n, char *out, size_t cap)
{
    if (n == 0 || n > 5 || n >= cap)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    snprintf(out, cap, "%ld", v);
    return true;
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port" into u->host and u->port; u->port keeps
 * its default when the authority names none. */
static int parse_hostport(const char *a, size_t n, struct jz_cli_url *u, bool *has_port,
                          struct jz_error *err)
{
    const char *port = NULL;
    size_t hlen;
    const char *host = a;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return jz_error_set(err, JZ_EINVAL, "unterminated '[' in the URL's host");
        host = a + 1;
        hlen = (size_t)(close - host);
        const char *rest = close + 1;
        if (rest < a + n) {
            if (*rest != ':')
                return jz_error_set(err, JZ_EINVAL, "unexpected text after ']' in the URL");
            port = rest + 1;
        }
        char tmp[JZ_CLI_MAX_HOST];
        unsigned char addr[16];
        if (hlen == 0 || hlen >= sizeof tmp)
            return jz_error_set(err, JZ_EINVAL, "bad IPv6 address in the URL");
        memcpy(tmp, host, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, addr) != 1)
            return jz_error_set(err, JZ_EINVAL, "bad IPv6 address '%.64s' in the URL", tmp);
    } else {
        const char *colon = memchr(a, ':', n);
        hlen = colon ? (size_t)(colon - a) : n;
        port = colon ? colon + 1 : NULL;
    }
    if (hlen == 0 || hlen >= sizeof u->host)
        return jz_error_set(err, JZ_EINVAL, "the URL has no host, or one too long");
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)u->host[i] <= ' ' || u->host[i] == '/' || u->host[i] == '%')
            return jz_error_set(err, JZ_EINVAL, "bad character in the URL's host");
    *has_port = port != NULL;
    if (port && !parse_port(port, (size_t)(a + n - port), u->port, sizeof u->port))
        return jz_error_set(err, JZ_EINVAL, "bad port in the URL");
    return 0;
}

int jz_cli_url_parse(const char *url, bool is_proxy, struct jz_cli_url *u, struct jz_error *err)
{
    struct jz_cli_url v = {0};
    const char *p = url;
    if (strncasecmp(p, "https://", 8) == 0) {
        if (is_proxy)
            return jz_error_set(err, JZ_ENOTSUP, "only http:// proxies are supported");
        v.https = true;
        p += 8;
    } else if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strstr(p, "://") || !is_proxy) {
        return jz_error_set(err, JZ_ENOTSUP, "%s URL must start with http://%s",
                            is_proxy ? "a proxy" : "the server", is_proxy ? "" : " or https://");
    }
    size_t alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    if (at) {
        size_t ulen = (size_t)(at - p);
        if (!is_proxy)
            return jz_error_set(err, JZ_EINVAL,
                                "user:password in the server URL is not "
                                "supported (use a token)");
        if (ulen >= sizeof v.userinfo)
            return jz_error_set(err, JZ_EINVAL, "the proxy's user:password is too long");
        memcpy(v.userinfo, p, ulen);
        alen -= ulen + 1;
        p = at + 1;
    }
    snprintf(v.port, sizeof v.port, "%s", is_proxy ? PROXY_DEFAULT_PORT : v.https ? "443" : "80");
    bool has_port;
    int rc = parse_hostport(p, alen, &v, &has_port, err);
    if (rc)
        return rc;
    bool v6 = strchr(v.host, ':') != NULL;
    snprintf(v.authority, sizeof v.authority, "%s%s%s%s%s", v6 ? "[" : "", v.host, v6 ? "]" : "",
             has_port ? ":" : "", has_port ? v.port : "");
    /* The base path: what follows the authority, without a fragment or trailing '/', so that
     * base + "/v1/jobs" is the request target. */
    const char *path = p + alen;
    size_t plen = strcspn(path, "#");
    while (plen && path[plen - 1] == '/')
        plen--;
    if (plen >= sizeof v.base)
        return jz_error_set(err, JZ_ELIMIT, "the URL's path is too long");
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)path[i] <= ' ' || path[i] == 0x7f)
            return jz_error_set(err, JZ_EINVAL, "the URL's path has a space or control character");
    memcpy(v.base, path, plen);
    v.base[plen] = '\0';
    *u = v;
    return 0;
}

/* ---- proxies ----------------------------------------------------------------------------- */

/* Address family of an IP literal, or 0 for a name. */
static int ip_family(const char *s, unsigned char addr[16])
{
    if (inet_pton(AF_INET, s, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, s, addr) == 1)
        return AF_INET6;
    return 0;
}

/* Does the literal host (family af, bytes addr) fall in token "ADDR" or "ADDR/BITS"? A token
 * without bits must be the same address. */
static bool cidr_match(int af, const unsigned char *addr, const char *tok, size_t n)
{
    char buf[128];
    if (n >= sizeof buf)
        return false;
    memcpy(buf, tok, n);
    buf[n] = '\0';
    unsigned max = af == AF_INET ? 32 : 128, bits = max;
    char *slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || b < 0 || b > (long)max)
            return false;
        bits = (unsigned)b;
    }
    unsigned char net[16];
    if (inet_pton(af, buf, net) != 1)
        return false;
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(addr, net, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (addr[whole] & mask) == (net[whole] & mask);
}

static bool name_match(const char *name, size_t namelen, const char *tok, size_t n)
{
    if (n && tok[n - 1] == '.')
        n--;
    if (n && tok[0] == '.') {
        tok++;
        n--;
    }
    if (n == 0 || n > namelen)
        return false;
    if (n == namelen)
        return strncasecmp(tok, name, n) == 0;
    /* A suffix on a label boundary: "example.com" covers "a.example.com". */
    return name[namelen - n - 1] == '.' && strncasecmp(tok, name + namelen - n, n) == 0;
}

bool jz_cli_no_proxy_match(const char *host, const char *no_proxy)
{
    if (!no_proxy || !*no_proxy || !*host)
        return false;
    if (strcmp(no_proxy, "*") == 0)
        return true;
    unsigned char addr[16];
    int af = ip_family(host, addr);
    size_t namelen = strlen(host);
    if (namelen && host[namelen - 1] == '.')
        namelen--;
    for (const char *p = no_proxy; *p;) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        if (n && (af ? cidr_match(af, addr, p, n) : name_match(host, namelen, p, n)))
            return true;
        p += n;
    }
    return false;
}

/* The first of two variables that is set (even to ""), as libcurl reads them; *name says which. */
static const char *env_either(jz_cli_getenv_fn env, const char *a, const char *b, const char **name)
{
    const char *v = env(a);
    *name = a;
    if (!v && b) {
        v = env(b);
        *name = b;
    }
    return v;
}

int jz_cli_proxy_for(const struct jz_cli_url *u, jz_cli_getenv_fn env, struct jz_cli_url *proxy,
                     bool *use, struct jz_error *err)
{
    *use = false;
    const char *name;
    if (jz_cli_no_proxy_match(u->host, env_either(env, "no_proxy", "NO_PROXY", &name)))
        return 0;
    const char *v = u->https ? env_either(env, "https_proxy", "HTTPS_PROXY", &name)
                             : env_either(env, "http_proxy", NULL, &name);
    if (!v)
        v = env_either(env, "all_proxy", "ALL_PROXY", &name);
    if (!v || !*v)
        return 0;
    struct jz_cli_url p;
    struct jz_error why = {0};
    if (jz_cli_url_parse(v, true, &p, &why) != 0)
        return jz_error_set(err, JZ_EINVAL, "%s: %s", name, why.msg);
    *proxy = p;
    *use = true;
    return 0;
}

/* ---- TCP --------------------------------------------------------------------------------- */

/* Milliseconds left until deadline_ms for poll() (-1: no deadline), or 0 when it passed. */
static int ms_left(int64_t deadline_ms)
{
    if (deadline_ms < 0)
        return -1;
    int64_t left = deadline_ms - jz_time_mono_ms();
    return left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

/* Waits for events on fd until deadline_ms. Returns 0 when ready, JZ_ETIMEDOUT or JZ_EIO. */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int t = ms_left(deadline_ms);
        if (t == 0)
            return JZ_ETIMEDOUT;
        int n = poll(&pfd, 1, t);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return JZ_EIO;
    }
}

static int connect_one(const struct addrinfo *ai, int64_t deadline_ms, int *fd_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return errno;
    int e = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        e = errno;
        if (e == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline_ms);
            socklen_t sl = sizeof e;
            if (w == JZ_ETIMEDOUT)
                e = ETIMEDOUT;
            else if (w != 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0)
                e = errno;
        }
    }
    if (e) {
        close(fd);
        return e;
    }
    *fd_out = fd;
    return 0;
}

/* A TCP connection to host:port by deadline_ms, trying each address in turn. */
static int tcp_connect(const char *host, const char *port, int64_t deadline_ms, int *fd_out,
                       struct jz_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return jz_error_set(err, JZ_EIO, "cannot resolve host '%.100s': %s", host,
                            g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    int e = EHOSTUNREACH;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        e = connect_one(ai, deadline_ms, fd_out);
        if (e == 0 || e == ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (e == ETIMEDOUT)
        return jz_error_set(err, JZ_ETIMEDOUT, "no connection to %.100s port %s within %d s", host,
                            port, JZ_CLI_CONNECT_TIMEOUT_S);
    if (e)
        return jz_error_set(err, JZ_EIO, "cannot connect to %.100s port %s: %s", host, port,
                            strerror(e));
    int one = 1;
    /* The request goes out in one write; Nagle would only hold back its last segment. */
    setsockopt(*fd_out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

static void tcp_keepalive(int fd)
{
    int one = 1, secs = KEEPALIVE_S;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof secs);
}

/* ---- OpenSSL, loaded on first use ------------------------------------------------------- */

/* The functions the client calls; typeof keeps each pointer's type the header's. Those of
 * libcrypto are found through libssl's handle (dlsym searches its dependencies). */
/* clang-format off */
#define OSSL_FUNCS(X)                                                                           \
    X(TLS_client_method) X(SSL_CTX_new) X(SSL_CTX_free) X(SSL_CTX_ctrl) X(SSL_CTX_set_options)  \
    X(SSL_CTX_load_verify_locations) X(SSL_CTX_set_default_verify_paths) X(SSL_CTX_set_verify)  \
    X(SSL_new) X(SSL_free) X(SSL_set_fd) X(SSL_ctrl) X(SSL_connect) X(SSL_read) X(SSL_write)    \
    X(SSL_get_error) X(SSL_shutdown) X(SSL_get0_param) X(SSL_get_verify_result)                 \
    X(X509_VERIFY_PARAM_set_hostflags) X(X509_VERIFY_PARAM_set1_host)                           \
    X(X509_VERIFY_PARAM_set1_ip_asc) X(X509_verify_cert_error_string) X(ERR_get_error)          \
    X(ERR_reason_error_string) X(ERR_error_string_n) X(ERR_clear_error)
/* clang-format on */

#define OSSL_FIELD(name) __typeof__(name) *name;
static struct ossl {
    OSSL_FUNCS(OSSL_FIELD)
} ossl;
#undef OSSL_FIELD
static bool ossl_loaded;

static int ossl_load(struct jz_error *err)
{
    if (ossl_loaded)
        return 0;
    void *h = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return jz_error_set(err, JZ_ENOTSUP, "https:// needs OpenSSL 3 (libssl.so.3): %.150s",
                            dlerror());
    struct ossl t;
#define OSSL_SYM(name)                                                                             \
    if (!(*(void **)&t.name = dlsym(h, #name))) {                                                  \
        dlclose(h);                                                                                \
        return jz_error_set(err, JZ_ENOTSUP, "libssl.so.3 lacks %s", #name);                       \
    }
    OSSL_FUNCS(OSSL_SYM)
#undef OSSL_SYM
    ossl = t;
    ossl_loaded = true; /* the handle stays open for the process's life */
    return 0;
}

/* OpenSSL's reason for the last failure, with the certificate check's result when that refused
 * the server; empties the error queue. */
static void tls_why(SSL *ssl, char *buf, size_t len)
{
    unsigned long code = ossl.ERR_get_error();
    buf[0] = '\0';
    if (code) {
        const char *reason = ossl.ERR_reason_error_string(code);
        if (reason)
            snprintf(buf, len, "%s", reason);
        else
            ossl.ERR_error_string_n(code, buf, len);
    }
    ossl.ERR_clear_error();
    long vr = ssl ? ossl.SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, "%s(%s)", n ? " " : "", ossl.X509_verify_cert_error_string(vr));
    }
}

/* Same settings as jazarid's own clients (common/tls.c): TLS 1.2 at least, no compression or
 * renegotiation, the peer's certificate checked. A peer closing without close_notify reads as
 * the end of the stream: every answer is framed by HTTP (Content-Length or chunked) anyway. */
static int tls_ctx(const char *ca_file, SSL_CTX **out, struct jz_error *err)
{
    char why[200];
    ossl.ERR_clear_error();
    SSL_CTX *ctx = ossl.SSL_CTX_new(ossl.TLS_client_method());
    if (!ctx)
        return jz_error_set(err, JZ_ENOMEM, "cannot create a TLS context");
    if (ossl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL) != 1) {
        ossl.SSL_CTX_free(ctx);
        return jz_error_set(err, JZ_EIO, "cannot require TLS 1.2");
    }
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    opts |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
    ossl.SSL_CTX_set_options(ctx, opts);
    bool own_ca = ca_file && *ca_file;
    int ok = own_ca ? ossl.SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                    : ossl.SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        tls_why(NULL, why, sizeof why);
        ossl.SSL_CTX_free(ctx);
        return jz_error_set(err, JZ_EINVAL, "CA file %.150s: %s", own_ca ? ca_file : "(system)",
                            why);
    }
    ossl.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return 0;
}

/* OpenSSL writes to the socket with write(2): a peer that went away would raise SIGPIPE and
 * kill the client without a message. SIGPIPE is blocked around each TLS call and one raised by
 * it is taken back, so the call fails with EPIPE instead; the process's own disposition (a
 * `jazari logs -f | head` should still end on SIGPIPE from stdout) is left alone. */
struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- connections ------------------------------------------------------------------------- */

struct jz_cli_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

void jz_cli_conn_close(struct jz_cli_conn *c)
{
    if (!c)
        return;
    if (c->ssl) {
        struct sigpipe_guard g;
        sigpipe_block(&g);
        ossl.SSL_shutdown(c->ssl); /* one close_notify, no wait for the peer's */
        sigpipe_restore(&g);
        ossl.SSL_free(c->ssl);
    }
    if (c->ctx)
        ossl.SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

/* Runs one TLS call (rc > 0 is success) until it completes, waiting on the socket as OpenSSL
 * asks. Returns rc > 0, 0 at a clean end of the stream, JZ_ETIMEDOUT or JZ_EIO. */
static int tls_wait(struct jz_cli_conn *c, int rc, int64_t deadline_ms)
{
    int e = ossl.SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int w = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ms);
        return w ? w : 1; /* 1: try the call again */
    }
    return JZ_EIO;
}

static int tls_handshake(struct jz_cli_conn *c, const struct jz_cli_url *u, const char *ca_file,
                         int64_t deadline_ms, struct jz_error *err)
{
    int rc = tls_ctx(ca_file, &c->ctx, err);
    if (rc)
        return rc;
    c->ssl = ossl.SSL_new(c->ctx);
    if (!c->ssl || ossl.SSL_set_fd(c->ssl, c->fd) != 1)
        return jz_error_set(err, JZ_ENOMEM, "cannot create a TLS connection");
    X509_VERIFY_PARAM *vp = ossl.SSL_get0_param(c->ssl);
    /* No partial wildcards ("a*.example"), as jazari-node checks (common/tls.c). */
    ossl.X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    unsigned char addr[16];
    bool ok = ip_family(u->host, addr)
                  ? ossl.X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) == 1 /* SNI is for names */
                  : ossl.X509_VERIFY_PARAM_set1_host(vp, u->host, 0) == 1 &&
                        ossl.SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME,
                                      TLSEXT_NAMETYPE_host_name, (void *)u->host) == 1;
    if (!ok)
        return jz_error_set(err, JZ_EINVAL, "cannot check certificates for host '%.100s'", u->host);
    struct sigpipe_guard g;
    sigpipe_block(&g);
    int r;
    do {
        r = ossl.SSL_connect(c->ssl);
        if (r <= 0)
            r = tls_wait(c, r, deadline_ms);
        else
            break;
    } while (r == 1);
    sigpipe_restore(&g);
    if (r > 0)
        return 0;
    if (r == JZ_ETIMEDOUT)
        return jz_error_set(err, JZ_ETIMEDOUT, "no TLS handshake within %d s",
                            JZ_CLI_CONNECT_TIMEOUT_S);
    char why[200];
    tls_why(c->ssl, why, sizeof why);
    return jz_error_set(err, JZ_EIO, "TLS handshake failed: %s",
                        why[0] ? why : "the server closed the connection");
}

/* Writes on the raw socket (before TLS, or plain HTTP). MSG_NOSIGNAL: EPIPE, not SIGPIPE. */
static int raw_write(int fd, const char *p, size_t len, int64_t deadline_ms, struct jz_error *err)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLOUT, deadline_ms);
            if (w == JZ_ETIMEDOUT)
                return jz_error_set(err, JZ_ETIMEDOUT, "timed out sending the request");
            if (w == 0)
                continue;
        }
        return jz_error_set(err, JZ_EIO, "send failed: %s", strerror(errno));
    }
    return 0;
}

static ssize_t raw_read(int fd, void *buf, size_t len, int64_t deadline_ms, struct jz_error *err)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return jz_error_set(err, JZ_EIO, "receive failed: %s", strerror(errno));
        int w = wait_fd(fd, POLLIN, deadline_ms);
        if (w == JZ_ETIMEDOUT)
            return jz_error_set(err, JZ_ETIMEDOUT, "timed out waiting for the server");
        if (w)
            return jz_error_set(err, JZ_EIO, "poll failed: %s", strerror(errno));
    }
}

int jz_cli_conn_write(struct jz_cli_conn *c, const void *data, size_t len, int64_t deadline_ms,
                      struct jz_error *err)
{
    if (!c->ssl)
        return raw_write(c->fd, data, len, deadline_ms, err);
    const char *p = data;
    struct sigpipe_guard g;
    sigpipe_block(&g);
    int r = 1;
    while (len && r > 0) {
        int n = ossl.SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else {
            r = tls_wait(c, n, deadline_ms);
        }
    }
    sigpipe_restore(&g);
    if (r > 0)
        return 0;
    if (r == JZ_ETIMEDOUT)
        return jz_error_set(err, JZ_ETIMEDOUT, "timed out sending the request");
    char why[200];
    tls_why(c->ssl, why, sizeof why);
    return jz_error_set(err, JZ_EIO, "TLS send failed: %s", why[0] ? why : "connection closed");
}

ssize_t jz_cli_conn_read(struct jz_cli_conn *c, void *buf, size_t len, int64_t deadline_ms,
                         struct jz_error *err)
{
    if (!c->ssl)
        return raw_read(c->fd, buf, len, deadline_ms, err);
    struct sigpipe_guard g;
    sigpipe_block(&g);
    int r;
    for (;;) {
        int n = ossl.SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0) {
            r = n;
            break;
        }
        r = tls_wait(c, n, deadline_ms);
        if (r != 1)
            break;
    }
    sigpipe_restore(&g);
    if (r >= 0)
        return r;
    if (r == JZ_ETIMEDOUT)
        return jz_error_set(err, JZ_ETIMEDOUT, "timed out waiting for the server");
    char why[200];
    tls_why(c->ssl, why, sizeof why);
    return jz_error_set(err, JZ_EIO, "TLS receive failed: %s", why[0] ? why : "connection reset");
}

/* ---- proxy tunnels ----------------------------------------------------------------------- */

static int unhex(int ch)
{
    return isdigit(ch) ? ch - '0' : isxdigit(ch) ? (tolower(ch) - 'a' + 10) : -1;
}

int jz_cli_proxy_auth_header(const struct jz_cli_url *proxy, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!proxy || !proxy->userinfo[0])
        return 0;
    /* user:password is percent-encoded in the URL and sent decoded, in Basic's base64. */
    unsigned char plain[sizeof proxy->userinfo];
    size_t n = 0;
    for (const char *s = proxy->userinfo; *s; s++) {
        int hi, lo;
        if (*s == '%' && (hi = unhex((unsigned char)s[1])) >= 0 &&
            (lo = unhex((unsigned char)s[2])) >= 0) {
            plain[n++] = (unsigned char)(hi * 16 + lo);
            s += 2;
        } else {
            plain[n++] = (unsigned char)*s;
        }
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char enc[sizeof plain * 4 / 3 + 8];
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)plain[i] << 16 | (i + 1 < n ? (unsigned)plain[i + 1] << 8 : 0) |
                     (i + 2 < n ? plain[i + 2] : 0);
        enc[o++] = b64[v >> 18 & 63];
        enc[o++] = b64[v >> 12 & 63];
        enc[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        enc[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    enc[o] = '\0';
    int w = snprintf(buf, len, "Proxy-Authorization: Basic %s\r\n", enc);
    memset(plain, 0, sizeof plain);
    memset(enc, 0, sizeof enc);
    if (w < 0 || (size_t)w >= len) {
        memset(buf, 0, len);
        return JZ_ELIMIT;
    }
    return 0;
}

/* Asks the proxy for a tunnel to u and reads its answer byte by byte, so that nothing of the
 * TLS handshake that follows is read here. */
static int proxy_tunnel(struct jz_cli_conn *c, const struct jz_cli_url *u,
                        const struct jz_cli_url *proxy, int64_t deadline_ms, struct jz_error *err)
{
    char auth[1024], req[2048];
    if (jz_cli_proxy_auth_header(proxy, auth, sizeof auth) != 0)
        return jz_error_set(err, JZ_ELIMIT, "the proxy's user:password is too long");
    bool v6 = strchr(u->host, ':') != NULL;
    char target[JZ_CLI_MAX_HOST + 16];
    snprintf(target, sizeof target, "%s%s%s:%s", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
    int n =
        snprintf(req, sizeof req,
                 "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: " JZ_CLI_USER_AGENT "\r\n%s\r\n",
                 target, target, auth);
    memset(auth, 0, sizeof auth);
    int rc = raw_write(c->fd, req, (size_t)n, deadline_ms, err);
    memset(req, 0, sizeof req);
    if (rc)
        return rc;
    char reply[TUNNEL_REPLY_MAX];
    size_t len = 0;
    while (len < 4 || memcmp(reply + len - 4, "\r\n\r\n", 4) != 0) {
        if (len + 1 >= sizeof reply)
            return jz_error_set(err, JZ_EIO, "the proxy's answer to CONNECT is too long");
        ssize_t got = raw_read(c->fd, reply + len, 1, deadline_ms, err);
        if (got < 0)
            return (int)got;
        if (got == 0)
            return jz_error_set(err, JZ_EIO, "the proxy %.100s closed the connection",
                                proxy->authority);
        len++;
    }
    reply[len] = '\0';
    int status = 0;
    if (sscanf(reply, "HTTP/1.%*1d %3d", &status) != 1)
        return jz_error_set(err, JZ_EIO, "the proxy %.100s did not answer in HTTP",
                            proxy->authority);
    if (status < 200 || status >= 300)
        return jz_error_set(err, JZ_EIO, "the proxy %.100s refused the tunnel (HTTP %d)",
                            proxy->authority, status);
    return 0;
}

int jz_cli_conn_open(const struct jz_cli_url *u, const struct jz_cli_url *proxy,
                     const char *ca_file, int64_t deadline_ms, bool keepalive,
                     struct jz_cli_conn **out, bool *tls_failed, struct jz_error *err)
{
    *tls_failed = false;
    /* Load OpenSSL first: a machine without it should not see a connection made for nothing. */
    int rc = u->https ? ossl_load(err) : 0;
    if (rc)
        return rc;
    struct jz_cli_conn *c = calloc(1, sizeof *c);
    if (!c)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    c->fd = -1;
    const struct jz_cli_url *to = proxy ? proxy : u;
    rc = tcp_connect(to->host, to->port, deadline_ms, &c->fd, err);
    if (rc && proxy) {
        char why[JZ_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        jz_error_set(err, rc, "proxy %.100s: %s", proxy->authority, why);
    }
    if (rc == 0 && keepalive)
        tcp_keepalive(c->fd);
    if (rc == 0 && proxy && u->https)
        rc = proxy_tunnel(c, u, proxy, deadline_ms, err);
    if (rc == 0 && u->https) {
        rc = tls_handshake(c, u, ca_file, deadline_ms, err);
        *tls_failed = rc != 0;
    }
    if (rc) {
        jz_cli_conn_close(c);
        return rc;
    }
    *out = c;
    return 0;
}
