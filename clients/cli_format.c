/* Output helpers of the jazari client: aligned tables (the nodes table among them), times and
 * ages, error lines, and the exit code that mirrors a finished job. */
#include "clients/cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"

void jz_cli_time_local(const char *iso, char *buf, size_t len)
{
    int64_t ms;
    if (!iso || jz_time_parse_iso(iso, &ms, NULL) != 0) {
        jz_strlcpy(buf, "-", len);
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    tzset(); /* localtime_r need not read TZ itself */
    localtime_r(&t, &tm);
    if (strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        jz_strlcpy(buf, "-", len);
}

void jz_cli_age_format(const char *iso, int64_t now_ms, char *buf, size_t len)
{
    int64_t ms;
    if (!iso || jz_time_parse_iso(iso, &ms, NULL) != 0) {
        jz_strlcpy(buf, "-", len);
        return;
    }
    /* The server's clock and ours may disagree by a little: never print a negative age. */
    int64_t s = now_ms > ms ? (now_ms - ms) / 1000 : 0;
    static const struct {
        int64_t secs;
        char name;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    size_t u = 0;
    while (u + 1 < sizeof units / sizeof units[0] && s < units[u].secs)
        u++;
    long long big = (long long)(s / units[u].secs);
    long long rest = u + 1 < sizeof units / sizeof units[0]
                         ? (long long)(s % units[u].secs / units[u + 1].secs)
                         : 0;
    /* Two units say enough: "1h5m ago" is as useful as "1h5m12s ago" and shorter. */
    if (rest > 0)
        snprintf(buf, len, "%lld%c%lld%c ago", big, units[u].name, rest, units[u + 1].name);
    else
        snprintf(buf, len, "%lld%c ago", big, units[u].name);
}

void jz_cli_job_gpus(const json_t *job, char *buf, size_t len)
{
    json_t *res = json_object_get(job, "resources");
    int64_t nodes = jz_json_int(res, "nodes", 1);
    int64_t per_node = jz_json_int(res, "gpus_per_node", 0);
    if (nodes > 1 && per_node > 0) {
        snprintf(buf, len, "%lldx%lld", (long long)nodes, (long long)per_node);
        return;
    }
    json_t *g = json_object_get(job, "gpus");
    if (json_is_array(g) && json_array_size(g) > 0) {
        snprintf(buf, len, "%zu", json_array_size(g));
        return;
    }
    snprintf(buf, len, "%lld", (long long)jz_json_int(res, "gpus", 0));
}

bool jz_cli_state_is_final(const char *state)
{
    return state && (strcmp(state, "SUCCEEDED") == 0 || strcmp(state, "FAILED") == 0 ||
                     strcmp(state, "CANCELLED") == 0 || strcmp(state, "TIMEOUT") == 0);
}

int jz_cli_job_exit_code(const json_t *job)
{
    const char *state = jz_json_str(job, "state", NULL);
    if (!jz_cli_state_is_final(state))
        return -1;
    if (strcmp(state, "SUCCEEDED") == 0)
        return 0;
    if (strcmp(state, "TIMEOUT") == 0)
        return 124;
    if (strcmp(state, "CANCELLED") == 0)
        return 130;
    /* FAILED: a signal explains it better than the exit status the shell would invent. */
    int64_t sig = jz_json_int(job, "signal", 0);
    if (sig >= 1 && sig <= 127)
        return (int)(128 + sig);
    int64_t code = jz_json_int(job, "exit_code", 0);
    if (code >= 1 && code <= 255)
        return (int)code;
    return 1;
}

/* Code points a terminal must not receive from the server as they are: C0 and C1 controls
 * (escape sequences, carriage returns that overwrite a line) and the Unicode bidirectional
 * controls, which reorder what follows them (a job name "abc<U+202E>gpj.exe" displays as
 * "abcexe.jpg"). */
static bool must_escape(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
           cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* The length of the well-formed UTF-8 sequence at p (1-4) with its code point, or 0. */
static size_t utf8_next(const unsigned char *p, uint32_t *cp)
{
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    size_t n = (p[0] & 0xe0) == 0xc0   ? 2
               : (p[0] & 0xf0) == 0xe0 ? 3
               : (p[0] & 0xf8) == 0xf0 ? 4
                                       : 0;
    if (n == 0)
        return 0;
    uint32_t v = p[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0; /* overlong, out of range or a surrogate */
    *cp = v;
    return n;
}

void jz_cli_sanitize(const char *s, char *buf, size_t len)
{
    if (len == 0)
        return;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        uint32_t cp = 0;
        size_t n = utf8_next(p, &cp);
        char esc[8];
        const char *out = (const char *)p;
        size_t out_len = n;
        if (n == 0) { /* not UTF-8: a lone byte could be a C1 control to an 8-bit terminal */
            out = "?";
            out_len = n = 1;
        } else if (must_escape(cp)) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
            out = esc;
            out_len = 6;
        }
        if (o + out_len + 1 > len)
            break; /* whole characters and escapes only */
        memcpy(buf + o, out, out_len);
        o += out_len;
        p += n;
    }
    buf[o] = '\0';
}

void jz_cli_server_error(long status, const char *body, size_t body_len, char *buf, size_t len)
{
    json_t *j = body && body_len ? json_loadb(body, body_len, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    const char *msg = jz_json_str(e, "message", NULL);
    const char *field = jz_json_str(e, "field", NULL);
    char clean[512];
    if (msg) {
        jz_cli_sanitize(msg, clean, sizeof clean);
        if (field && *field && !strstr(msg, field)) {
            char f[128];
            jz_cli_sanitize(field, f, sizeof f);
            snprintf(buf, len, "%s: %s (%ld)", f, clean, status);
        } else {
            snprintf(buf, len, "%s (%ld)", clean, status);
        }
    } else {
        /* Not our server's error shape (a proxy, say): show the start of what came back. */
        char first[200] = "";
        if (body) {
            size_t n = strcspn(body, "\r\n");
            if (n >= sizeof first)
                n = sizeof first - 1;
            memcpy(first, body, n);
            first[n] = '\0';
        }
        jz_cli_sanitize(first, clean, sizeof clean);
        if (clean[0])
            snprintf(buf, len, "HTTP %ld: %s", status, clean);
        else
            snprintf(buf, len, "HTTP %ld", status);
    }
    json_decref(j);
}

/* ---- tables ------------------------------------------------------------------------------ */

struct jz_table {
    size_t ncols;
    size_t nrows, cap;
    char **cells; /* (nrows + 1) * ncols, row 0 is the header */
    bool *right;
};

static char *dup_clean(const char *s)
{
    size_t n = strlen(s) * JZ_CLI_SANITIZE_GROWTH + 1;
    char *d = malloc(n);
    if (d)
        jz_cli_sanitize(s, d, n);
    return d;
}

struct jz_table *jz_table_new(size_t ncols, const char *const *headers)
{
    struct jz_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncols = ncols;
    t->right = calloc(ncols, sizeof *t->right);
    if (!t->right || jz_table_add(t, headers) != 0) {
        jz_table_free(t);
        return NULL;
    }
    return t;
}

int jz_table_add(struct jz_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, cap * t->ncols * sizeof *c);
        if (!c)
            return JZ_ENOMEM;
        t->cells = c;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = dup_clean(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return JZ_ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

void jz_table_align_right(struct jz_table *t, size_t col)
{
    if (col < t->ncols)
        t->right[col] = true;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width_of(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void jz_table_print(const struct jz_table *t, FILE *out)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    if (!w)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t cw = width_of(t->cells[r * t->ncols + c]);
            if (cw > w[c])
                w[c] = cw;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t pad = w[c] - width_of(cell);
            bool last = c + 1 == t->ncols;
            if (t->right[c])
                fprintf(out, "%*s%s", (int)pad, "", cell);
            else if (last)
                fputs(cell, out);
            else
                fprintf(out, "%s%*s", cell, (int)pad, "");
            if (!last)
                fputs("  ", out);
        }
        fputc('\n', out);
    }
    free(w);
}

void jz_table_free(struct jz_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    free(t);
}

/* ---- the nodes table --------------------------------------------------------------------- */

static bool node_is_draining(const json_t *node)
{
    const char *state = jz_json_str(node, "state", "");
    return strcmp(state, "draining") == 0 || strcmp(state, "drained") == 0 ||
           jz_json_str(node, "drain_reason", NULL) != NULL;
}

struct jz_table *jz_cli_nodes_table(const json_t *nodes, int64_t now_ms)
{
    size_t i;
    json_t *node;
    bool reasons = false;
    json_array_foreach(nodes, i, node)
    {
        if (node_is_draining(node))
            reasons = true;
    }
    /* REASON only when it says something: most of the time no node is being drained. */
    static const char *const hdr[] = {"NAME",  "SITE", "STATE",     "GPUS",
                                      "MODEL", "JOBS", "HEARTBEAT", "REASON"};
    size_t ncols = reasons ? 8 : 7;
    struct jz_table *t = jz_table_new(ncols, hdr);
    if (!t)
        return NULL;
    jz_table_align_right(t, 3);
    jz_table_align_right(t, 5);
    json_array_foreach(nodes, i, node)
    {
        char gpus[48], jobs[24], beat[48];
        snprintf(gpus, sizeof gpus, "%lld/%lld", (long long)jz_json_int(node, "gpus_free", 0),
                 (long long)jz_json_int(node, "gpus_total", 0));
        snprintf(jobs, sizeof jobs, "%lld", (long long)jz_json_int(node, "running_jobs", 0));
        jz_cli_age_format(jz_json_str(node, "last_heartbeat", NULL), now_ms, beat, sizeof beat);
        const char *cells[] = {jz_json_str(node, "name", NULL),
                               jz_json_str(node, "site", NULL),
                               jz_json_str(node, "state", NULL),
                               gpus,
                               jz_json_str(node, "gpu_model", NULL),
                               jobs,
                               beat,
                               jz_json_str(node, "drain_reason", NULL)};
        if (jz_table_add(t, cells) != 0) {
            jz_table_free(t);
            return NULL;
        }
    }
    return t;
}
