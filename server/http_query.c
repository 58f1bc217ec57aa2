/* The query parameters each route accepts, as data: the router refuses any other (400), as the
 * JSON bodies refuse unknown fields, so that a misspelt filter (?stat=RUNNING) is an error and
 * not a silently unfiltered answer. tests/unit/openapi/check_openapi.py reads this table and
 * holds it equal to docs/openapi.json's query parameters, route by route. */
#include <string.h>
#include <sys/queue.h>

#include "server/http.h"

/* One route's accepted parameters: method and pattern exactly as in http.c's routes[] (HEAD is
 * served by the GET route, so it is looked up as GET). The list ends with NULL; a route that
 * takes none has an empty list. A route with no entry here accepts anything: the unit check
 * fails for it instead, so that a new route is never broken at run time by a missing line. */
struct query_entry {
    enum evhttp_cmd_type method;
    const char *pattern;
    const char *const params[JZ_HTTP_MAX_QUERY_PARAMS + 1];
};

static const struct query_entry query_table[] = {
    {EVHTTP_REQ_GET, "healthz", {NULL}},
    {EVHTTP_REQ_GET, "metrics", {NULL}},
    {EVHTTP_REQ_POST, "v1/jobs", {NULL}},
    {EVHTTP_REQ_GET,
     "v1/jobs",
     {"state", "user", "tenant", "array", "scope", "since", "until", "limit", "after", "order",
      NULL}},
    {EVHTTP_REQ_GET, "v1/jobs/*", {NULL}},
    {EVHTTP_REQ_PATCH, "v1/jobs/*", {NULL}},
    {EVHTTP_REQ_POST, "v1/jobs/*/cancel", {NULL}},
    {EVHTTP_REQ_POST, "v1/jobs/*/hold", {NULL}},
    {EVHTTP_REQ_POST, "v1/jobs/*/release", {NULL}},
    {EVHTTP_REQ_GET, "v1/jobs/*/log", {"offset", "follow", NULL}},
    {EVHTTP_REQ_GET, "v1/jobs/*/events", {NULL}},
    {EVHTTP_REQ_GET, "v1/jobs/*/artifacts", {NULL}},
    {EVHTTP_REQ_GET, "v1/jobs/*/artifacts/*", {NULL}},
    {EVHTTP_REQ_POST, "v1/arrays/*/cancel", {NULL}},
    {EVHTTP_REQ_GET, "v1/events", {"job", "user", "tenant", "last_event_id", NULL}},
    {EVHTTP_REQ_GET, "v1/nodes", {"site", NULL}},
    {EVHTTP_REQ_POST, "v1/nodes/*/drain", {NULL}},
    {EVHTTP_REQ_POST, "v1/nodes/*/resume", {NULL}},
    {EVHTTP_REQ_POST, "v1/nodes/*/revoke", {NULL}},
    {EVHTTP_REQ_DELETE, "v1/nodes/*", {NULL}},
    {EVHTTP_REQ_POST, "v1/admin/node-tokens", {NULL}},
    {EVHTTP_REQ_GET, "v1/agent", {NULL}},
    {EVHTTP_REQ_GET, "v1/plugins", {NULL}},
    {EVHTTP_REQ_GET, "v1/whoami", {NULL}},
    {EVHTTP_REQ_POST, "v1/whoami/token", {NULL}},
    {EVHTTP_REQ_POST, "v1/admin/users", {NULL}},
    {EVHTTP_REQ_GET, "v1/admin/users", {NULL}},
    {EVHTTP_REQ_POST, "v1/admin/users/*", {NULL}},
    {EVHTTP_REQ_DELETE, "v1/admin/users/*", {NULL}},
    {EVHTTP_REQ_GET, "v1/usage", {"tenant", NULL}},
    {EVHTTP_REQ_POST, "v1/admin/credits", {NULL}},
    {EVHTTP_REQ_GET, "v1/prices", {NULL}},
    {EVHTTP_REQ_GET, "v1/tenants/*/statement", {"month", "since", "until", "format", NULL}},
    {EVHTTP_REQ_GET, "v1/reports/usage", {"by", "tenant", "month", "since", "until", NULL}},
    {EVHTTP_REQ_GET, "v1/admin/tokens", {"user", NULL}},
    {EVHTTP_REQ_POST, "v1/admin/tokens", {NULL}},
    {EVHTTP_REQ_POST, "v1/admin/tokens/rotate", {NULL}},
    {EVHTTP_REQ_DELETE, "v1/admin/tokens/*", {NULL}},
    {EVHTTP_REQ_GET, "v1/admin/audit", {"since", "limit", NULL}},
    {EVHTTP_REQ_GET, "v1/admin/tenants", {NULL}},
    {EVHTTP_REQ_POST, "v1/admin/tenants", {NULL}},
    {EVHTTP_REQ_GET, "v1/admin/tenants/*", {NULL}},
    {EVHTTP_REQ_POST, "v1/admin/tenants/*", {NULL}},
    {EVHTTP_REQ_DELETE, "v1/admin/tenants/*", {NULL}},
    {EVHTTP_REQ_GET, "v1/tenants/*", {NULL}},
    {EVHTTP_REQ_GET, "v1/tenants/*/members", {NULL}},
    {EVHTTP_REQ_POST, "v1/tenants/*/members", {NULL}},
    {EVHTTP_REQ_DELETE, "v1/tenants/*/members/*", {NULL}},
    {EVHTTP_REQ_POST, "v1/tenants/*/members/*/token", {NULL}},
    {EVHTTP_REQ_POST, "v1/reservations", {NULL}},
    {EVHTTP_REQ_GET, "v1/reservations", {"tenant", NULL}},
    {EVHTTP_REQ_GET, "v1/reservations/*", {NULL}},
    {EVHTTP_REQ_DELETE, "v1/reservations/*", {NULL}},
    {EVHTTP_REQ_GET, "v1/version", {NULL}},
    {EVHTTP_REQ_POST, "v1/admin/reload", {NULL}},
    {EVHTTP_REQ_GET, "v1/admin/backup", {NULL}},
    {EVHTTP_REQ_GET, "", {NULL}},
    {EVHTTP_REQ_GET, "ui/*", {NULL}},
};

static const struct query_entry *find_entry(enum evhttp_cmd_type method, const char *pattern)
{
    if (method == EVHTTP_REQ_HEAD)
        method = EVHTTP_REQ_GET;
    for (size_t i = 0; i < sizeof query_table / sizeof query_table[0]; i++)
        if (query_table[i].method == method && strcmp(query_table[i].pattern, pattern) == 0)
            return &query_table[i];
    return NULL;
}

static bool accepts(const struct query_entry *e, const char *key)
{
    for (size_t i = 0; e->params[i]; i++)
        if (strcmp(e->params[i], key) == 0)
            return true;
    return false;
}

int jz_http_query_check(enum evhttp_cmd_type method, const char *pattern,
                        const struct evkeyvalq *query, const char **bad, bool *repeated)
{
    const struct query_entry *e = find_entry(method, pattern);
    if (!e)
        return 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, query, next)
    {
        if (!accepts(e, kv->key)) {
            *bad = kv->key;
            *repeated = false;
            return JZ_EINVAL;
        }
        /* A second value would be ignored (handlers read the first): refuse it rather than
         * answer for half of what was asked. */
        for (const struct evkeyval *o = TAILQ_FIRST(query); o != kv; o = TAILQ_NEXT(o, next))
            if (strcmp(o->key, kv->key) == 0) {
                *bad = kv->key;
                *repeated = true;
                return JZ_EINVAL;
            }
    }
    return 0;
}

size_t jz_http_query_params(enum evhttp_cmd_type method, const char *pattern, char *buf, size_t len)
{
    const struct query_entry *e = find_entry(method, pattern);
    size_t n = 0;
    if (len)
        buf[0] = '\0';
    for (size_t i = 0; e && e->params[i]; i++) {
        size_t k = strlen(e->params[i]) + (i ? 2 : 0);
        if (n + k + 1 > len)
            break;
        memcpy(buf + n, i ? ", " : "", i ? 2 : 0);
        memcpy(buf + n + (i ? 2 : 0), e->params[i], strlen(e->params[i]) + 1);
        n += k;
    }
    return n;
}
