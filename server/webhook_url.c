/* A webhook's address, checked and split (jz_webhook_url_parse in webhooks.h): what the
 * submission check and the delivery share. Pure: no I/O, so the job-request fuzzer links it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <event2/http.h>
#include <netinet/in.h>

#include "server/webhooks.h"

static bool fail_why(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_why(char *why, size_t len, const char *fmt, ...)
{
    if (why && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* A DNS name or an IPv4 literal, or an IPv6 literal in brackets: nothing that could break the
 * Host header or the request line. */
static bool host_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return false;
    if (h[0] == '[')
        return n > 2 && h[n - 1] == ']' && strspn(h + 1, "0123456789abcdefABCDEF:.") == n - 2;
    return strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n;
}

bool jz_webhook_url_parse(const char *url, struct jz_webhook_url *d, char *why, size_t len)
{
    if (!url || !*url)
        return fail_why(why, len, "the URL is empty");
    size_t n = strlen(url);
    if (n > JZ_WEBHOOK_MAX_URL)
        return fail_why(why, len, "the URL is %zu bytes; the limit is %d", n, JZ_WEBHOOK_MAX_URL);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= ' ' || (unsigned char)url[i] >= 0x7f)
            return fail_why(why, len,
                            "the URL has a space, a control or a non-ASCII character "
                            "(percent-encode it)");
    struct evhttp_uri *u = evhttp_uri_parse(url);
    if (!u)
        return fail_why(why, len, "the URL does not parse");
    bool ok = false;
    const char *scheme = evhttp_uri_get_scheme(u);
    const char *host = evhttp_uri_get_host(u);
    const char *path = evhttp_uri_get_path(u);
    const char *query = evhttp_uri_get_query(u);
    int port = evhttp_uri_get_port(u);
    bool https = scheme && strcasecmp(scheme, "https") == 0;
    if (!scheme || (!https && strcasecmp(scheme, "http") != 0))
        fail_why(why, len, "the URL must start with http:// or https://");
    else if (!host || !host_ok(host))
        fail_why(why, len, "the URL must name a host (a DNS name or an IP address)");
    else if (evhttp_uri_get_userinfo(u))
        fail_why(why, len, "the URL must not hold a user name or password");
    else if (evhttp_uri_get_fragment(u))
        fail_why(why, len, "the URL must not have a fragment (#...)");
    else if (port == 0 || port > 65535)
        fail_why(why, len, "the URL's port must be 1-65535");
    else
        ok = true;
    if (ok && d) {
        d->https = https;
        d->port = port > 0 ? port : https ? 443 : 80;
        size_t hl = strlen(host);
        if (host[0] == '[')
            snprintf(d->host, sizeof d->host, "%.*s", (int)(hl - 2), host + 1);
        else
            snprintf(d->host, sizeof d->host, "%s", host);
        if (port > 0)
            snprintf(d->host_header, sizeof d->host_header, "%s:%d", host, port);
        else
            snprintf(d->host_header, sizeof d->host_header, "%s", host);
        const char *p = path && *path ? path : "/";
        size_t tl = strlen(p) + (query ? strlen(query) + 1 : 0) + 1;
        d->target = malloc(tl);
        if (!d->target)
            ok = fail_why(why, len, "out of memory");
        else
            snprintf(d->target, tl, "%s%s%s", p, query ? "?" : "", query ? query : "");
    }
    evhttp_uri_free(u);
    return ok;
}

bool jz_webhook_url_ok(const char *url, char *why, size_t len)
{
    return jz_webhook_url_parse(url, NULL, why, len);
}

/* --- the destination policy ---------------------------------------------------------------- */

/* An address as 16 bytes: IPv6 as is, IPv4 as its IPv4-mapped form (::ffff:a.b.c.d), so that
 * one comparison serves both and an IPv4 range covers the mapped addresses too. */
struct addr16 {
    unsigned char b[16];
};

static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void from_v4(const unsigned char v4[4], struct addr16 *a)
{
    memcpy(a->b, mapped_prefix, 12);
    memcpy(a->b + 12, v4, 4);
}

static bool is_mapped(const struct addr16 *a)
{
    return memcmp(a->b, mapped_prefix, 12) == 0;
}

/* Whether the first bits of a and net agree. */
static bool in_prefix(const struct addr16 *a, const unsigned char *net, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a->b, net, (size_t)whole) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a->b[whole] & mask) == (net[whole] & mask);
}

/* The IPv4 ranges refused by default; why names each for the log and the submitter. */
static const struct {
    unsigned char net[4];
    int bits;
    const char *what;
} denied_v4[] = {
    {{0, 0, 0, 0}, 8, "an unspecified (\"this network\") address"},
    {{10, 0, 0, 0}, 8, "a private address"},
    {{100, 64, 0, 0}, 10, "a carrier-grade NAT address"},
    {{127, 0, 0, 0}, 8, "a loopback address"},
    {{169, 254, 0, 0}, 16, "a link-local address"},
    {{172, 16, 0, 0}, 12, "a private address"},
    {{192, 168, 0, 0}, 16, "a private address"},
    {{224, 0, 0, 0}, 4, "a multicast address"},
    {{255, 255, 255, 255}, 32, "the broadcast address"},
};

static const char *v4_denied(const unsigned char v4[4])
{
    struct addr16 a, net;
    from_v4(v4, &a);
    for (size_t i = 0; i < sizeof denied_v4 / sizeof denied_v4[0]; i++) {
        from_v4(denied_v4[i].net, &net);
        if (in_prefix(&a, net.b, 96 + denied_v4[i].bits))
            return denied_v4[i].what;
    }
    return NULL;
}

/* Why the default policy refuses a, or NULL. IPv6 forms that carry an IPv4 address (mapped
 * ::ffff:0:0/96, the old compatible ::/96, NAT64's 64:ff9b::/96) are judged by that address. */
static const char *default_denied(const struct addr16 *a)
{
    static const unsigned char zero[12] = {0};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const unsigned char ll[2] = {0xfe, 0x80}, sl[2] = {0xfe, 0xc0}, ula[1] = {0xfc},
                               mc[1] = {0xff};
    static const unsigned char loop6[16] = {[15] = 1};
    if (memcmp(a->b, loop6, 16) == 0)
        return "a loopback address";
    if (memcmp(a->b, loop6, 15) == 0 && a->b[15] == 0)
        return "the unspecified address";
    if (is_mapped(a) || memcmp(a->b, zero, 12) == 0 || memcmp(a->b, nat64, 12) == 0)
        return v4_denied(a->b + 12);
    if (in_prefix(a, ll, 10))
        return "a link-local address";
    if (in_prefix(a, sl, 10))
        return "a site-local address";
    if (in_prefix(a, ula, 7))
        return "a unique local (private) address";
    if (in_prefix(a, mc, 8))
        return "a multicast address";
    return NULL;
}

/* Reads one range ("ADDR" or "ADDR/BITS", IPv4 or IPv6) of n bytes at s into net and bits
 * (counted on the 16-byte form). False when it is not one, or has bits set past its prefix. */
static bool parse_range(const char *s, size_t n, struct addr16 *net, int *bits)
{
    char text[64];
    if (n == 0 || n >= sizeof text)
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    unsigned char raw[16];
    int max;
    if (inet_pton(AF_INET, text, raw) == 1) {
        from_v4(raw, net);
        max = 32;
    } else if (inet_pton(AF_INET6, text, raw) == 1) {
        memcpy(net->b, raw, 16);
        max = 128;
    } else {
        return false;
    }
    int b = max;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p))
            return false;
        b = atoi(p);
        if (b > max)
            return false;
    }
    *bits = b + (128 - max);
    /* 10.1.2.5/24 is more likely a mistake than a way to say 10.1.2.0/24. */
    for (int i = *bits; i < 128; i++)
        if (net->b[i / 8] & (0x80 >> (i % 8)))
            return false;
    return true;
}

/* Calls fn on each range of list, which may be NULL or empty: 1 when fn said yes to one, 0 when
 * none did, -1 at the first range that does not parse (its text in bad). */
static int each_range(const char *list, bool (*fn)(const struct addr16 *, int, void *), void *arg,
                      char *bad, size_t bad_len)
{
    const char *p = list ? list : "";
    p += strspn(p, " ");
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t && p[t - 1] == ' ')
            t--;
        struct addr16 net;
        int bits;
        if (!parse_range(p, t, &net, &bits)) {
            if (bad && bad_len)
                snprintf(bad, bad_len, "%.*s", (int)(t < 60 ? t : 60), p);
            return -1;
        }
        if (fn && fn(&net, bits, arg))
            return 1;
        p += n;
        if (*p == ',') {
            p++;
            p += strspn(p, " ");
            if (!*p) { /* a trailing comma: an empty range */
                if (bad && bad_len)
                    bad[0] = '\0';
                return -1;
            }
        }
    }
    return 0;
}

bool jz_webhook_allow_list_ok(const char *list, char *why, size_t len)
{
    char bad[64] = "";
    if (each_range(list, NULL, NULL, bad, sizeof bad) >= 0)
        return true;
    return fail_why(why, len,
                    "'%s' is not an address range (CIDR[,CIDR...], like 10.1.2.0/24 or "
                    "fd00::/8, with no bits set past the prefix)",
                    bad);
}

static bool range_has(const struct addr16 *net, int bits, void *arg)
{
    return in_prefix(arg, net->b, bits);
}

/* sa's 16-byte form; false for a family other than IPv4 and IPv6. */
static bool addr_of(const struct sockaddr *sa, struct addr16 *a)
{
    if (sa->sa_family == AF_INET) {
        from_v4((const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                a);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(a->b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

bool jz_webhook_address_check(const struct sockaddr *sa, const char *allow_list, char *why,
                              size_t len)
{
    struct addr16 a;
    if (!sa || !addr_of(sa, &a))
        return fail_why(why, len, "not an IPv4 or IPv6 address");
    const char *what = default_denied(&a);
    if (!what || each_range(allow_list, range_has, &a, NULL, 0) == 1)
        return true;
    return fail_why(why, len,
                    "%s, which webhooks may not reach unless --webhook-allow lists it", what);
}

bool jz_webhook_address_allowed(const struct sockaddr *sa, const char *allow_list)
{
    return jz_webhook_address_check(sa, allow_list, NULL, 0);
}

bool jz_webhook_url_allowed(const char *url, const char *allow_list, char *why, size_t len)
{
    struct jz_webhook_url u;
    if (!jz_webhook_url_parse(url, &u, why, len))
        return false;
    free(u.target);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    const struct sockaddr *sa = NULL;
    if (inet_pton(AF_INET, u.host, &sin.sin_addr) == 1)
        sa = (const struct sockaddr *)&sin;
    else if (inet_pton(AF_INET6, u.host, &sin6.sin6_addr) == 1)
        sa = (const struct sockaddr *)&sin6;
    if (!sa) /* a name: checked once resolved, at each delivery */
        return true;
    char what[200];
    if (jz_webhook_address_check(sa, allow_list, what, sizeof what))
        return true;
    return fail_why(why, len, "%s is %s", u.host, what);
}
