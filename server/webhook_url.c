/* A webhook's address, checked and split (jz_webhook_url_parse in webhooks.h): what the
 * submission check and the delivery share. Pure: no I/O, so the job-request fuzzer links it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

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
