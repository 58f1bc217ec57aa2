/* GET / and GET /ui/{asset}: the web dashboard, static files built into jazarid (see
 * server/dashboard/ and docs/dashboard.md). The page is public; everything it shows comes from
 * the /v1 API with the token the user pastes, so serving it gives nothing away. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <string.h>

#include "server/api.h"
#include "server/dashboard/assets.h"
#include "server/http.h"

/* Scripts and styles only from jazarid itself and never inline (the page builds its DOM with
 * textContent, and an injected <script> would not run); API calls only to the same origin; no
 * framing (clickjacking of the cancel button). */
#define DASHBOARD_CSP                                                                              \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

static const struct jz_dashboard_asset *asset_named(const char *name)
{
    for (size_t i = 0; i < jz_dashboard_asset_count; i++)
        if (strcmp(jz_dashboard_assets[i].name, name) == 0)
            return &jz_dashboard_assets[i];
    return NULL;
}

/* Whether an If-None-Match header (a list of entity tags, or "*") names etag. Weak tags match
 * too: If-None-Match uses the weak comparison (RFC 9110 section 13.1.2). */
static bool etag_listed(const char *header, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        size_t n = (size_t)(end - p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = end;
    }
    return false;
}

static void send_asset(struct jz_req *r, const struct jz_dashboard_asset *a)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    /* Every answer revalidates (the URLs carry no version, and an upgraded jazarid must not
     * be shown with last release's script); the ETag makes that a 304 with no body. */
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "ETag", a->etag);
    evhttp_add_header(h, "Content-Security-Policy", DASHBOARD_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Cross-Origin-Opener-Policy", "same-origin");
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(r->req), "If-None-Match");
    if (inm && etag_listed(inm, a->etag)) {
        jz_http_count(r, 304);
        jz_http_send(r->req, 304, NULL);
        return;
    }
    evhttp_add_header(h, "Content-Type", a->type);
    struct evbuffer *body = evbuffer_new();
    if (!body || evbuffer_add_reference(body, a->data, a->len, NULL, NULL) != 0) {
        if (body)
            evbuffer_free(body);
        jz_http_reply_error(r, 500, "internal", NULL, "out of memory");
        return;
    }
    jz_http_send(r->req, 200, body);
    evbuffer_free(body);
}

void jz_api_dashboard_index(struct jz_req *r)
{
    const struct jz_dashboard_asset *a = asset_named("index.html");
    if (!a) {
        jz_http_reply_error(r, 404, "not_found", NULL,
                            "this jazarid was built without a dashboard");
        return;
    }
    send_asset(r, a);
}

void jz_api_dashboard_asset(struct jz_req *r)
{
    const char *name = r->seg[1];
    const struct jz_dashboard_asset *a = asset_named(name);
    if (!a) {
        jz_http_reply_error(r, 404, "not_found", "asset", "no dashboard file %.64s", name);
        return;
    }
    send_asset(r, a);
}
