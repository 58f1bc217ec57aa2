/* Prices, statements and usage reports (docs/billing.md): GET /v1/prices,
 * GET /v1/tenants/{name}/statement, GET /v1/reports/usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "common/json.h"
#include "common/time.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/ledger.h"
#include "server/prices.h"
#include "server/tenants.h"

void jz_api_prices(struct jz_req *r)
{
    jz_http_reply_json(r, 200, jz_prices_json(r->srv));
}

/* month=YYYY-MM: [its first day, the next month's) in UTC. */
static bool parse_month(const char *s, int64_t *from, int64_t *to)
{
    int y, m;
    char tail;
    if (!s || strlen(s) != 7 || sscanf(s, "%4d-%2d%c", &y, &m, &tail) != 2 || y < 1970 ||
        y > 9999 || m < 1 || m > 12)
        return false;
    struct tm a = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = 1};
    struct tm b = {.tm_year = (m == 12 ? y + 1 : y) - 1900, .tm_mon = m == 12 ? 0 : m,
                   .tm_mday = 1};
    *from = (int64_t)timegm(&a) * 1000;
    *to = (int64_t)timegm(&b) * 1000;
    return true;
}

/* The period of a statement or report: month=, or since=/until= (default: the month so far, or
 * for a report the last 30 days). */
static bool period(struct jz_req *r, bool report, int64_t *from, int64_t *to)
{
    const char *month = jz_req_query(r, "month"), *since = jz_req_query(r, "since"),
               *until = jz_req_query(r, "until");
    int64_t now = jz_time_now_ms();
    if (month && (since || until)) {
        jz_http_reply_error(r, 400, "invalid", "month", "give month, or since and until");
        return false;
    }
    if (month) {
        if (!parse_month(month, from, to)) {
            jz_http_reply_error(r, 400, "invalid", "month", "month must be YYYY-MM");
            return false;
        }
        return true;
    }
    time_t t = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    struct tm first = {.tm_year = tm.tm_year, .tm_mon = tm.tm_mon, .tm_mday = 1};
    *from = report ? now - 30LL * 86400 * 1000 : (int64_t)timegm(&first) * 1000;
    *to = now + 1;
    if (since && !jz_api_query_time(since, from)) {
        jz_http_reply_error(r, 400, "invalid", "since",
                            "since must be an ISO 8601 time in UTC, a day or epoch seconds");
        return false;
    }
    if (until && !jz_api_query_time(until, to)) {
        jz_http_reply_error(r, 400, "invalid", "until",
                            "until must be an ISO 8601 time in UTC, a day or epoch seconds");
        return false;
    }
    if (*to <= *from) {
        jz_http_reply_error(r, 400, "invalid", "until", "until must be after since");
        return false;
    }
    return true;
}

/* --- statements ------------------------------------------------------------------------- */

static void csv_cell(struct evbuffer *b, const char *s, bool last)
{
    if (strpbrk(s, ",\"\r\n")) {
        evbuffer_add(b, "\"", 1);
        for (; *s; s++)
            evbuffer_add(b, *s == '"' ? "\"\"" : s, *s == '"' ? 2 : 1);
        evbuffer_add(b, "\"", 1);
    } else {
        evbuffer_add(b, s, strlen(s));
    }
    evbuffer_add(b, last ? "\r\n" : ",", last ? 2 : 1);
}

static void entry_cells(const json_t *e, char cells[8][300])
{
    snprintf(cells[0], 300, "%s", jz_json_str(e, "time", ""));
    snprintf(cells[1], 300, "%s", jz_json_str(e, "kind", ""));
    snprintf(cells[2], 300, "%.4f", jz_json_num(e, "amount", 0));
    snprintf(cells[3], 300, "%.4f", jz_json_num(e, "balance_change", 0));
    snprintf(cells[4], 300, "%s", jz_json_str(e, "ref", ""));
    json_t *job = json_object_get(e, "job");
    if (json_is_integer(job))
        snprintf(cells[5], 300, "%lld", (long long)json_integer_value(job));
    else
        cells[5][0] = '\0';
    snprintf(cells[6], 300, "%s", jz_json_str(e, "who", ""));
    snprintf(cells[7], 300, "%s", jz_json_str(e, "note", ""));
}

static struct evbuffer *statement_csv(const json_t *st)
{
    static const char *const heads[8] = {"time", "kind", "amount", "balance_change",
                                         "ref",  "job",  "who",    "note"};
    struct evbuffer *b = evbuffer_new();
    for (int c = 0; c < 8; c++)
        csv_cell(b, heads[c], c == 7);
    char opening[64];
    snprintf(opening, sizeof opening, "%.4f", jz_json_num(st, "opening_balance", 0));
    const char *first[8] = {jz_json_str(st, "from", ""), "opening_balance", "", opening, "", "",
                            "", ""};
    for (int c = 0; c < 8; c++)
        csv_cell(b, first[c], c == 7);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(st, "entries"), i, e) {
        char cells[8][300];
        entry_cells(e, cells);
        for (int c = 0; c < 8; c++)
            csv_cell(b, cells[c], c == 7);
    }
    char closing[64];
    snprintf(closing, sizeof closing, "%.4f", jz_json_num(st, "closing_balance", 0));
    const char *last[8] = {jz_json_str(st, "to", ""), "closing_balance", "", closing, "", "",
                           "", ""};
    for (int c = 0; c < 8; c++)
        csv_cell(b, last[c], c == 7);
    return b;
}

static void html_text(struct evbuffer *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': evbuffer_add(b, "&lt;", 4); break;
        case '>': evbuffer_add(b, "&gt;", 4); break;
        case '&': evbuffer_add(b, "&amp;", 5); break;
        case '"': evbuffer_add(b, "&quot;", 6); break;
        case '\'': evbuffer_add(b, "&#39;", 5); break;
        default: evbuffer_add(b, s, 1);
        }
    }
}

/* A page to print or save as PDF from a browser: self-contained, no script, escaped. */
static struct evbuffer *statement_html(const json_t *st)
{
    struct evbuffer *b = evbuffer_new();
    const char *tenant = jz_json_str(st, "tenant", "");
    evbuffer_add_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                           "<title>Statement: ");
    html_text(b, tenant);
    evbuffer_add_printf(
        b, "</title><style>body{font:11pt sans-serif;margin:2em}table{border-collapse:collapse;"
           "width:100%%}th,td{border-bottom:1px solid #ccc;padding:.25em .5em;text-align:left}"
           "td.n,th.n{text-align:right}@media print{a{color:inherit}}</style></head><body>\n"
           "<h1>Statement of account</h1>\n<p>Tenant <strong>");
    html_text(b, tenant);
    evbuffer_add_printf(b, "</strong>, from ");
    html_text(b, jz_json_str(st, "from", ""));
    evbuffer_add_printf(b, " to ");
    html_text(b, jz_json_str(st, "to", ""));
    evbuffer_add_printf(b, " (UTC). Amounts in credits.</p>\n<table>\n<tr><th>Opening balance"
                           "</th><td class=\"n\">%.2f</td></tr>\n",
                        jz_json_num(st, "opening_balance", 0));
    static const char *const kinds[] = {"purchase", "refund", "adjustment", "charge", "hold",
                                        "release", NULL};
    json_t *totals = json_object_get(st, "totals");
    for (size_t k = 0; kinds[k]; k++)
        if (json_object_get(totals, kinds[k]))
            evbuffer_add_printf(b, "<tr><th>Total %ss</th><td class=\"n\">%.2f</td></tr>\n",
                                kinds[k], jz_json_num(totals, kinds[k], 0));
    evbuffer_add_printf(b, "<tr><th>Closing balance</th><td class=\"n\">%.2f</td></tr>\n"
                           "<tr><th>Held at the end</th><td class=\"n\">%.2f</td></tr>\n"
                           "</table>\n<h2>Entries</h2>\n<table>\n<tr><th>Time</th><th>Kind</th>"
                           "<th class=\"n\">Amount</th><th class=\"n\">Balance change</th>"
                           "<th>Reference</th><th>Job</th><th>By</th><th>Note</th></tr>\n",
                        jz_json_num(st, "closing_balance", 0), jz_json_num(st, "closing_held", 0));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(st, "entries"), i, e) {
        char cells[8][300];
        entry_cells(e, cells);
        evbuffer_add_printf(b, "<tr>");
        for (int c = 0; c < 8; c++) {
            evbuffer_add_printf(b, c == 2 || c == 3 ? "<td class=\"n\">" : "<td>");
            html_text(b, cells[c]);
            evbuffer_add_printf(b, "</td>");
        }
        evbuffer_add_printf(b, "</tr>\n");
    }
    evbuffer_add_printf(b, "</table>\n%s</body></html>\n",
                        jz_json_bool(st, "truncated", false)
                            ? "<p>The list is cut at 100,000 entries; the totals are whole.</p>\n"
                            : "");
    return b;
}

/* A tenant is known by its object, its users, or its credit. */
static bool tenant_known(struct jz_server *srv, const char *tenant)
{
    return (srv->tenants && jz_tenants_exists(srv->tenants, tenant)) ||
           jz_auth_tenant_user_count(srv->auth, tenant) > 0 ||
           jz_ledger_known(srv->ledger, tenant);
}

void jz_api_tenant_statement(struct jz_req *r)
{
    const char *tenant = r->seg[2];
    /* Another tenant's statement is answered as a missing one: its existence is not told. */
    if (!jz_auth_may_manage_tenant(r->user, tenant) || !tenant_known(r->srv, tenant)) {
        if (strcmp(tenant, r->user->tenant) == 0 && !r->user->admin)
            jz_http_reply_error(r, 403, "forbidden", "name",
                                "a tenant's statement is for its tenant-admins and admins");
        else
            jz_http_reply_error(r, 404, "not_found", "name", "no tenant %.64s", tenant);
        return;
    }
    const char *format = jz_req_query(r, "format");
    if (format && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0 &&
        strcmp(format, "html") != 0) {
        jz_http_reply_error(r, 400, "invalid", "format", "format must be json, csv or html");
        return;
    }
    int64_t from, to;
    if (!period(r, false, &from, &to))
        return;
    json_t *st = NULL;
    struct jz_error err = {0};
    if (jz_ledger_statement(r->srv->ledger, tenant, from, to, &st, &err)) {
        jz_http_reply_jz_error(r, &err, NULL);
        return;
    }
    if (!format || strcmp(format, "json") == 0) {
        jz_http_reply_json(r, 200, st);
        return;
    }
    bool csv = strcmp(format, "csv") == 0;
    struct evbuffer *b = csv ? statement_csv(st) : statement_html(st);
    json_decref(st);
    jz_http_reply_now(r, 200, csv ? "text/csv; charset=utf-8" : "text/html; charset=utf-8", b);
    evbuffer_free(b);
}

/* --- usage reports ---------------------------------------------------------------------- */

void jz_api_reports_usage(struct jz_req *r)
{
    const char *by = jz_req_query(r, "by");
    if (!by)
        by = "tenant";
    if (!jz_jobs_report_dimension_ok(by)) {
        jz_http_reply_error(r, 400, "invalid", "by", "by must be tenant, user, plugin, model or "
                                                     "site");
        return;
    }
    const char *tenant = jz_req_query(r, "tenant");
    /* A tenant-admin reports on its own tenant; a user on its own jobs (visibility does it). */
    if (tenant && !r->user->admin && strcmp(tenant, r->user->tenant) != 0) {
        jz_http_reply_error(r, 403, "forbidden", "tenant",
                            "only admins report on other tenants");
        return;
    }
    if (!r->user->admin && r->user->tenant_admin)
        tenant = r->user->tenant;
    int64_t from, to;
    if (!period(r, true, &from, &to))
        return;
    json_t *rep = jz_jobs_usage_report(r->srv->jobs, r->user, by, tenant, from, to);
    if (!rep) {
        jz_http_reply_error(r, 500, "internal", NULL, "out of memory");
        return;
    }
    char a[40], b[40];
    jz_time_format_iso(from, a, sizeof a);
    jz_time_format_iso(to, b, sizeof b);
    json_object_set_new(rep, "since", json_string(a));
    json_object_set_new(rep, "until", json_string(b));
    json_object_set_new(rep, "tenant", tenant ? json_string(tenant) : json_null());
    jz_http_reply_json(r, 200, rep);
}
