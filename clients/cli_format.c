/* Output helpers of the jazari client: aligned tables (the nodes table among them), times and
 * ages, error lines, and the exit code that mirrors a finished job. */
#include "clients/cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

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
    /* ISO 8601 with the zone's offset, "2026-12-03T10:04:05+01:00": unambiguous when pasted
     * into a ticket or read by a program; strftime's %z has no colon. */
    char tmp[64];
    size_t n = strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S%z", &tm);
    if (n < 5 || !(tmp[n - 5] == '+' || tmp[n - 5] == '-')) {
        jz_strlcpy(buf, "-", len);
        return;
    }
    snprintf(buf, len, "%.*s:%s", (int)(n - 2), tmp, tmp + n - 2);
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
    /* Not 124: that is `wait --timeout` passing first (as timeout(1)), which a script must
     * tell apart from a job that has ended. 128 + SIGXCPU, "a time limit was exceeded". */
    if (strcmp(state, "TIMEOUT") == 0)
        return JZ_CLI_EXIT_JOB_TIMEOUT;
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
    bool no_header;
    ssize_t color_col; /* -1: none */
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
    t->color_col = -1;
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

void jz_table_color_states(struct jz_table *t, size_t col)
{
    if (col < t->ncols)
        t->color_col = (ssize_t)col;
}

void jz_table_hide_header(struct jz_table *t)
{
    t->no_header = true;
}

void jz_table_print(const struct jz_table *t, FILE *out)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    if (!w)
        return;
    size_t first = t->no_header ? 1 : 0;
    for (size_t r = first; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t cw = width_of(t->cells[r * t->ncols + c]);
            if (cw > w[c])
                w[c] = cw;
        }
    for (size_t r = first; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t pad = w[c] - width_of(cell);
            bool last = c + 1 == t->ncols;
            /* The colour wraps the cell, not its padding: widths stay those of the text. */
            const char *sgr = r > 0 && (ssize_t)c == t->color_col ? jz_cli_state_color(cell) : "";
            if (t->right[c])
                fprintf(out, "%*s%s%s%s", (int)pad, "", sgr, cell, *sgr ? "\033[0m" : "");
            else if (last)
                fprintf(out, "%s%s%s", sgr, cell, *sgr ? "\033[0m" : "");
            else
                fprintf(out, "%s%s%s%*s", sgr, cell, *sgr ? "\033[0m" : "", (int)pad, "");
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

/* ---- the queue table --------------------------------------------------------------------- */

/* Columns of `queue --format`, their headers, and which are numbers (right-aligned). */
const char *const jz_cli_queue_columns[] = {
    "id",     "name",  "user", "tenant", "plugin", "state",    "gpus", "time",  "reason",
    "submit", "start", "end",  "nodes",  "array",  "priority", "nice", "class", NULL,
};
static const char *const queue_headers[] = {
    "ID",     "NAME",  "USER", "TENANT", "PLUGIN", "STATE",    "GPUS", "TIME",  "REASON",
    "SUBMIT", "START", "END",  "NODES",  "ARRAY",  "PRIORITY", "NICE", "CLASS",
};
enum {
    QC_ID,
    QC_NAME,
    QC_USER,
    QC_TENANT,
    QC_PLUGIN,
    QC_STATE,
    QC_GPUS,
    QC_TIME,
    QC_REASON,
    QC_SUBMIT,
    QC_START,
    QC_END,
    QC_NODES,
    QC_ARRAY,
    QC_PRIORITY,
    QC_NICE,
    QC_CLASS,
    QC_COUNT
};
#define QUEUE_DEFAULT_FORMAT "id,name,user,tenant,plugin,state,gpus,time,reason"
#define QUEUE_MAX_COLS 32

bool jz_cli_queue_match(const struct jz_cli_queue_args *q, const json_t *job)
{
    if (!q->names)
        return true;
    const char *name = jz_json_str(job, "name", NULL);
    if (!name)
        return false;
    size_t n = strlen(name);
    for (const char *p = q->names; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, name, n) == 0)
            return true;
        p += k;
        if (*p == ',')
            p++;
    }
    return false;
}

/* The column named by s[0..n), or -1. */
static int queue_column(const char *s, size_t n)
{
    for (int c = 0; jz_cli_queue_columns[c]; c++)
        if (strlen(jz_cli_queue_columns[c]) == n && strncasecmp(jz_cli_queue_columns[c], s, n) == 0)
            return c;
    return -1;
}

/* One row before it becomes cells: a job, or a group of array elements. */
struct qrow {
    const json_t *job; /* the job, or the group's first element */
    int64_t array_id;  /* 0: not a collapsed group */
    int64_t *idx;      /* the group's indexes, in listing order */
    size_t nidx, capidx;
    int64_t counts[6]; /* PENDING RUNNING SUCCEEDED FAILED CANCELLED TIMEOUT */
    const json_t *pending; /* the group's first pending element (its reason) */
    size_t order;          /* position in the listing, for a stable sort */
    char *cells[QC_COUNT];
    double secs; /* TIME in seconds, for --sort time */
};

static const char *const state_names[] = {"PENDING",   "RUNNING", "SUCCEEDED",
                                          "FAILED",    "CANCELLED", "TIMEOUT"};

static int state_index(const char *state)
{
    for (int i = 0; i < 6; i++)
        if (state && strcmp(state, state_names[i]) == 0)
            return i;
    return -1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* "0-3,5,7-9": sorted indexes as ranges, cut with "..." when they do not fit. */
static void index_ranges(int64_t *idx, size_t n, char *buf, size_t len)
{
    qsort(idx, n, sizeof *idx, cmp_i64);
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && idx[j + 1] == idx[j] + 1)
            j++;
        int w = j > i ? snprintf(buf + off, len - off, "%s%lld-%lld", off ? "," : "",
                                 (long long)idx[i], (long long)idx[j])
                      : snprintf(buf + off, len - off, "%s%lld", off ? "," : "",
                                 (long long)idx[i]);
        if (w < 0 || (size_t)w >= len - off) {
            if (len > 4)
                memcpy(buf + (off + 4 < len ? off : len - 4), "...", 4);
            return;
        }
        off += (size_t)w;
        i = j + 1;
    }
}

static char *str_dup(const char *s)
{
    return strdup(s ? s : "-");
}

/* The cells of one row. */
static int queue_row_cells(struct qrow *r, int64_t now_ms)
{
    const json_t *j = r->job;
    char buf[256];
    json_t *arr = json_object_get(j, "array");
    const char *state = jz_json_str(j, "state", "?");
    r->secs = -1;
    for (int c = 0; c < QC_COUNT; c++) {
        const char *v = NULL;
        buf[0] = '\0';
        switch (c) {
        case QC_ID:
            if (r->array_id) {
                char ranges[160];
                index_ranges(r->idx, r->nidx, ranges, sizeof ranges);
                int64_t thr = jz_json_int(arr, "throttle", 0);
                if (thr > 0)
                    snprintf(buf, sizeof buf, "%lld_[%s%%%lld]", (long long)r->array_id, ranges,
                             (long long)thr);
                else
                    snprintf(buf, sizeof buf, "%lld_[%s]", (long long)r->array_id, ranges);
            } else if (json_is_object(arr)) {
                snprintf(buf, sizeof buf, "%lld_%lld", (long long)jz_json_int(arr, "id", 0),
                         (long long)jz_json_int(arr, "index", 0));
            } else {
                snprintf(buf, sizeof buf, "%lld", (long long)jz_json_int(j, "id", 0));
            }
            v = buf;
            break;
        case QC_NAME:
        case QC_USER:
        case QC_TENANT:
        case QC_PLUGIN:
        case QC_CLASS:
            v = jz_json_str(j, jz_cli_queue_columns[c], NULL);
            break;
        case QC_STATE:
            if (r->array_id) {
                /* Running first: what is going on, then what is still to come. */
                static const int order[] = {1, 0, 2, 3, 4, 5};
                size_t off = 0;
                for (int k = 0; k < 6; k++) {
                    int s = order[k];
                    if (r->counts[s] && off < sizeof buf)
                        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%s:%lld",
                                                off ? "," : "", state_names[s],
                                                (long long)r->counts[s]);
                }
                v = buf;
            } else {
                v = state;
            }
            break;
        case QC_GPUS:
            jz_cli_job_gpus(j, buf, sizeof buf);
            v = buf;
            break;
        case QC_TIME:
            if (r->array_id || strcmp(state, "PENDING") == 0) {
                v = "-";
            } else {
                int64_t s0, e;
                if (jz_time_parse_iso(jz_json_str(j, "start_time", NULL), &s0, NULL) == 0) {
                    const char *end = jz_json_str(j, "end_time", NULL);
                    if (!end || jz_time_parse_iso(end, &e, NULL) != 0)
                        e = now_ms;
                    int64_t secs = e > s0 ? (e - s0) / 1000 : 0;
                    r->secs = (double)secs;
                    jz_duration_format(secs, buf, sizeof buf);
                    v = buf;
                }
            }
            break;
        case QC_REASON:
            v = jz_json_str(r->array_id ? r->pending : j, "reason", NULL);
            break;
        case QC_SUBMIT:
        case QC_START:
        case QC_END: {
            static const char *const keys[] = {"submit_time", "start_time", "end_time"};
            const char *iso = jz_json_str(j, keys[c - QC_SUBMIT], NULL);
            if (iso && !(r->array_id && c != QC_SUBMIT)) {
                jz_cli_time_local(iso, buf, sizeof buf);
                v = buf;
            }
            break;
        }
        case QC_NODES: {
            json_t *nodes = json_object_get(j, "nodes");
            if (!r->array_id && json_is_array(nodes) && json_array_size(nodes)) {
                size_t i, off = 0;
                json_t *n;
                json_array_foreach(nodes, i, n)
                {
                    int w = snprintf(buf + off, sizeof buf - off, "%s%s", off ? "," : "",
                                     json_is_string(n) ? json_string_value(n) : "?");
                    if (w < 0 || (size_t)w >= sizeof buf - off)
                        break;
                    off += (size_t)w;
                }
                v = buf;
            } else if (!r->array_id) {
                v = jz_json_str(j, "node", NULL);
            }
            break;
        }
        case QC_ARRAY:
            if (json_is_object(arr)) {
                snprintf(buf, sizeof buf, "%lld", (long long)jz_json_int(arr, "id", 0));
                v = buf;
            }
            break;
        case QC_PRIORITY: {
            json_t *p = json_object_get(j, "priority");
            if (json_is_number(p)) {
                snprintf(buf, sizeof buf, "%.4g", json_number_value(p));
                v = buf;
            }
            break;
        }
        case QC_NICE:
            if (json_is_integer(json_object_get(j, "nice"))) {
                snprintf(buf, sizeof buf, "%lld", (long long)jz_json_int(j, "nice", 0));
                v = buf;
            }
            break;
        default:
            break;
        }
        if (!(r->cells[c] = str_dup(v)))
            return JZ_ENOMEM;
    }
    return 0;
}

/* --sort: the column and its direction, shared with qsort's comparison (single-threaded). */
static int sort_col = -1, sort_dir = 1;

/* A cell's leading number: true when it starts with one ("12_[0-9]" is 12, "2x4" is 2). */
static bool leading_number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && (*s == '-' || (*s >= '0' && *s <= '9'));
}

static int cmp_rows(const void *a, const void *b)
{
    const struct qrow *x = *(const struct qrow *const *)a, *y = *(const struct qrow *const *)b;
    int c = 0;
    double u, v;
    if (sort_col == QC_TIME) {
        c = (x->secs > y->secs) - (x->secs < y->secs);
    } else if (leading_number(x->cells[sort_col], &u) && leading_number(y->cells[sort_col], &v)) {
        c = (u > v) - (u < v);
    } else {
        /* "-" (no value) sorts after every value in either direction's ascending form. */
        bool xn = strcmp(x->cells[sort_col], "-") == 0, yn = strcmp(y->cells[sort_col], "-") == 0;
        c = xn != yn ? (xn ? 1 : -1) : strcmp(x->cells[sort_col], y->cells[sort_col]);
    }
    if (c == 0)
        c = strcmp(x->cells[sort_col], y->cells[sort_col]);
    if (c != 0)
        return c * sort_dir;
    return (x->order > y->order) - (x->order < y->order);
}

static void rows_free(struct qrow *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].idx);
        for (int c = 0; c < QC_COUNT; c++)
            free(rows[i].cells[c]);
    }
    free(rows);
}

struct jz_table *jz_cli_queue_table(const json_t *jobs, const struct jz_cli_queue_args *q,
                                    int64_t now_ms)
{
    /* The columns; an unknown name (refused by the parser already) is left out. */
    int cols[QUEUE_MAX_COLS];
    size_t ncols = 0;
    const char *f = q->format && *q->format ? q->format : QUEUE_DEFAULT_FORMAT;
    for (const char *p = f; *p && ncols < QUEUE_MAX_COLS;) {
        size_t k = strcspn(p, ",");
        int c = queue_column(p, k);
        if (c >= 0)
            cols[ncols++] = c;
        p += k;
        if (*p == ',')
            p++;
    }
    if (ncols == 0)
        return NULL;
    size_t njobs = json_array_size(jobs);
    struct qrow *rows = calloc(njobs ? njobs : 1, sizeof *rows);
    if (!rows)
        return NULL;
    size_t nrows = 0, i;
    json_t *j;
    struct jz_table *t = NULL;
    json_array_foreach(jobs, i, j)
    {
        json_t *arr = json_object_get(j, "array");
        int64_t aid = json_is_object(arr) ? jz_json_int(arr, "id", 0) : 0;
        struct qrow *r = NULL;
        if (aid > 0 && !q->expand)
            for (size_t k = 0; k < nrows && !r; k++)
                if (rows[k].array_id == aid)
                    r = &rows[k];
        if (!r) {
            r = &rows[nrows];
            r->job = j;
            r->order = nrows++;
            r->array_id = aid > 0 && !q->expand ? aid : 0;
        }
        if (r->array_id) {
            if (r->nidx == r->capidx) {
                size_t cap = r->capidx ? r->capidx * 2 : 8;
                int64_t *n = realloc(r->idx, cap * sizeof *n);
                if (!n)
                    goto fail;
                r->idx = n;
                r->capidx = cap;
            }
            r->idx[r->nidx++] = jz_json_int(arr, "index", 0);
            int s = state_index(jz_json_str(j, "state", NULL));
            if (s >= 0)
                r->counts[s]++;
            if (s == 0 && !r->pending)
                r->pending = j;
        }
    }
    for (size_t k = 0; k < nrows; k++) {
        /* A group of one is shown as that element. */
        if (rows[k].array_id && rows[k].nidx == 1)
            rows[k].array_id = 0;
        if (queue_row_cells(&rows[k], now_ms) != 0)
            goto fail;
    }
    struct qrow **sorted = malloc((nrows ? nrows : 1) * sizeof *sorted);
    if (!sorted)
        goto fail;
    for (size_t k = 0; k < nrows; k++)
        sorted[k] = &rows[k];
    if (q->sort && *q->sort) {
        const char *s = q->sort;
        sort_dir = *s == '-' ? -1 : 1;
        if (*s == '-' || *s == '+')
            s++;
        sort_col = queue_column(s, strlen(s));
        if (sort_col >= 0)
            qsort(sorted, nrows, sizeof *sorted, cmp_rows);
    }
    const char *hdr[QUEUE_MAX_COLS], *cells[QUEUE_MAX_COLS];
    for (size_t c = 0; c < ncols; c++)
        hdr[c] = queue_headers[cols[c]];
    t = jz_table_new(ncols, hdr);
    for (size_t c = 0; t && c < ncols; c++)
        if (cols[c] == QC_ID || cols[c] == QC_GPUS || cols[c] == QC_PRIORITY ||
            cols[c] == QC_NICE)
            jz_table_align_right(t, c);
    if (t && q->noheader)
        jz_table_hide_header(t);
    for (size_t k = 0; t && k < nrows; k++) {
        for (size_t c = 0; c < ncols; c++)
            cells[c] = sorted[k]->cells[cols[c]];
        if (jz_table_add(t, cells) != 0) {
            jz_table_free(t);
            t = NULL;
        }
    }
    free(sorted);
    rows_free(rows, nrows);
    return t;
fail:
    rows_free(rows, nrows);
    return NULL;
}

/* ---- terminals --------------------------------------------------------------------------- */

bool jz_cli_is_tty(int fd)
{
    const char *term = getenv("TERM");
    return isatty(fd) && !(term && strcmp(term, "dumb") == 0);
}

bool jz_cli_use_color(int fd)
{
    const char *no = getenv("NO_COLOR");
    return !(no && *no) && jz_cli_is_tty(fd);
}

const char *jz_cli_state_color(const char *state)
{
    static const struct {
        const char *prefix;
        const char *sgr;
    } map[] = {
        {"RUNNING", "\033[32m"},   {"PENDING", "\033[33m"},   {"SUCCEEDED", "\033[36m"},
        {"FAILED", "\033[31m"},    {"TIMEOUT", "\033[31m"},   {"CANCELLED", "\033[35m"},
        {"up", "\033[32m"},        {"draining", "\033[33m"},  {"drained", "\033[33m"},
        {"down", "\033[31m"},      {"revoked", "\033[31m"},
    };
    /* An array's "RUNNING:2,PENDING:8" takes its first state's colour. */
    for (size_t i = 0; state && i < sizeof map / sizeof map[0]; i++) {
        size_t n = strlen(map[i].prefix);
        if (strncmp(state, map[i].prefix, n) == 0 && (state[n] == '\0' || state[n] == ':'))
            return map[i].sgr;
    }
    return "";
}

/* ---- server-sent events ------------------------------------------------------------------ */

#define SSE_MAX_LINE (1u << 20)

static bool grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return false;
    *buf = b;
    *cap = c;
    return true;
}

/* One complete line (without its end); an empty one dispatches the pending event. */
static int sse_line(struct jz_cli_sse *p, char *line, size_t n, jz_cli_sse_fn fn, void *ud)
{
    if (n == 0) {
        int rc = 0;
        if (p->data) {
            p->data[p->data_len] = '\0';
            rc = fn(p->event[0] ? p->event : "message", p->data, p->data_len, ud);
        }
        p->event[0] = '\0';
        p->data_len = 0;
        if (p->data)
            p->data[0] = '\0';
        free(p->data);
        p->data = NULL;
        p->data_cap = 0;
        return rc;
    }
    if (line[0] == ':')
        return fn(":", line + 1, n - 1, ud);
    line[n] = '\0';
    char *colon = strchr(line, ':');
    char *val = colon ? colon + 1 : line + n;
    if (colon)
        *colon = '\0';
    if (*val == ' ')
        val++;
    size_t vlen = strlen(val);
    if (strcmp(line, "event") == 0) {
        jz_strlcpy(p->event, val, sizeof p->event);
    } else if (strcmp(line, "id") == 0) {
        jz_strlcpy(p->id, val, sizeof p->id);
    } else if (strcmp(line, "data") == 0) {
        size_t need = p->data_len + (p->data ? 1 : 0) + vlen + 1;
        if (need > SSE_MAX_LINE)
            return JZ_ELIMIT;
        bool first = p->data == NULL;
        if (!grow(&p->data, &p->data_cap, need))
            return JZ_ENOMEM;
        if (!first)
            p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, val, vlen);
        p->data_len += vlen;
        p->data[p->data_len] = '\0';
    }
    return 0; /* retry: and unknown fields are ignored, as the specification says */
}

int jz_cli_sse_feed(struct jz_cli_sse *p, const char *data, size_t len, jz_cli_sse_fn fn, void *ud)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n') {
            size_t n = p->len;
            if (n && p->buf[n - 1] == '\r')
                n--;
            p->len = 0;
            int rc = sse_line(p, p->buf, n, fn, ud);
            if (rc)
                return rc;
            continue;
        }
        if (p->len + 2 > SSE_MAX_LINE)
            return JZ_ELIMIT;
        if (!grow(&p->buf, &p->cap, p->len + 2))
            return JZ_ENOMEM;
        p->buf[p->len++] = c;
    }
    return 0;
}

void jz_cli_sse_clear(struct jz_cli_sse *p)
{
    free(p->buf);
    free(p->data);
    memset(p, 0, sizeof *p);
}

void jz_cli_sse_restart(struct jz_cli_sse *p)
{
    char id[sizeof p->id];
    memcpy(id, p->id, sizeof id);
    jz_cli_sse_clear(p);
    memcpy(p->id, id, sizeof id);
}

void jz_cli_queue_color(struct jz_table *t, const struct jz_cli_queue_args *q)
{
    const char *f = q->format && *q->format ? q->format : QUEUE_DEFAULT_FORMAT;
    size_t col = 0;
    for (const char *p = f; *p;) {
        size_t k = strcspn(p, ",");
        int c = queue_column(p, k);
        if (c == QC_STATE)
            jz_table_color_states(t, col);
        if (c >= 0)
            col++;
        p += k;
        if (*p == ',')
            p++;
    }
}

/* A CSV cell: quoted when it holds a comma, a quote or a line break (RFC 4180). */
void jz_cli_csv_cell(FILE *out, const char *s, bool last)
{
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', out);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', out);
            fputc(*s, out);
        }
        fputc('"', out);
    } else {
        fputs(s, out);
    }
    fputc(last ? '\n' : ',', out);
}
