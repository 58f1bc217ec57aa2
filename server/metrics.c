/* The metrics registry and its text exposition (see metrics.h). Series of a family are kept in
 * first-seen order and found through an open-addressing table of their indexes, so that an
 * observation costs one hash of its label values whatever the number of series. */
#include "server/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
    uint64_t hash;
    char *values;      /* the label values, each NUL-terminated, one after the other */
    double value;      /* counter or gauge; a histogram's sum */
    uint64_t count;    /* histogram observations */
    uint64_t bucket[]; /* histogram: observations <= buckets[i] and > buckets[i-1] */
};

struct jz_metric {
    struct jz_metric_spec spec;
    size_t nlabels;
    struct series **items; /* first-seen order */
    size_t n, cap;
    uint32_t *index;      /* 1 + the item's position, 0 for an empty slot */
    size_t index_cap;     /* a power of two, at least twice the most items the family can hold */
    struct series *other; /* the folded series, also in items */
    uint64_t folded;
};

struct jz_metrics {
    struct jz_metric **fam;
    size_t n, cap;
};

/* Label values as they are kept: cut to JZ_METRICS_VALUE_MAX - 1 bytes, invalid UTF-8 bytes
 * replaced by '?' (the format wants UTF-8; user text may be anything). */
struct labelset {
    char v[JZ_METRICS_MAX_LABELS][JZ_METRICS_VALUE_MAX];
    size_t len[JZ_METRICS_MAX_LABELS];
};

static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
    size_t n = *p < 0x80             ? 1
               : (*p & 0xe0) == 0xc0 ? 2
               : (*p & 0xf0) == 0xe0 ? 3
               : (*p & 0xf8) == 0xf0 ? 4
                                     : 0;
    if (n == 0 || n > left)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

static void normalize(const char *in, char *out, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)(in ? in : "");
    size_t len = strlen((const char *)p), o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        size_t take = n ? n : 1;
        if (o + take > JZ_METRICS_VALUE_MAX - 1)
            break; /* never half a character */
        if (n)
            memcpy(out + o, p + i, n);
        else
            out[o] = '?';
        o += take;
        i += take;
    }
    out[o] = '\0';
    *out_len = o;
}

static uint64_t hash_set(const struct labelset *ls, size_t nlabels)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t l = 0; l < nlabels; l++) {
        for (size_t i = 0; i < ls->len[l]; i++) {
            h ^= (unsigned char)ls->v[l][i];
            h *= 1099511628211ULL;
        }
        h ^= 0xff; /* a separator no UTF-8 text holds: ("ab","c") differs from ("a","bc") */
        h *= 1099511628211ULL;
    }
    return h;
}

static bool same_set(const struct series *s, const struct labelset *ls, size_t nlabels)
{
    const char *p = s->values;
    for (size_t l = 0; l < nlabels; l++) {
        size_t n = strlen(p);
        if (n != ls->len[l] || memcmp(p, ls->v[l], n) != 0)
            return false;
        p += n + 1;
    }
    return true;
}

/* --- names ------------------------------------------------------------------------------ */

static bool name_ok(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
        if (!alpha && !(p > s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* --- the registry ------------------------------------------------------------------------ */

struct jz_metrics *jz_metrics_create(void)
{
    return calloc(1, sizeof(struct jz_metrics));
}

static void family_free_series(struct jz_metric *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->items[i]->values);
        free(f->items[i]);
    }
    f->n = 0;
    f->other = NULL;
    if (f->index)
        memset(f->index, 0, f->index_cap * sizeof *f->index);
}

void jz_metrics_destroy(struct jz_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        family_free_series(m->fam[i]);
        free(m->fam[i]->items);
        free(m->fam[i]->index);
        free(m->fam[i]);
    }
    free(m->fam);
    free(m);
}

static int spec_check(const struct jz_metrics *m, const struct jz_metric_spec *sp, size_t *nlabels,
                      struct jz_error *err)
{
    if (!name_ok(sp->name, true))
        return jz_error_set(err, JZ_EINVAL, "metric name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]*",
                            sp->name ? sp->name : "");
    if (!sp->help || strchr(sp->help, '\n'))
        return jz_error_set(err, JZ_EINVAL, "%s: help must be one line", sp->name);
    if (sp->type == JZ_METRIC_COUNTER && !ends_with(sp->name, "_total"))
        return jz_error_set(err, JZ_EINVAL, "%s: a counter's name ends with _total", sp->name);
    if (sp->type != JZ_METRIC_COUNTER && ends_with(sp->name, "_total"))
        return jz_error_set(err, JZ_EINVAL, "%s: only counters end with _total", sp->name);
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->fam[i]->spec.name, sp->name) == 0)
            return jz_error_set(err, JZ_EINVAL, "%s: registered twice", sp->name);
    size_t n = 0;
    while (n < JZ_METRICS_MAX_LABELS && sp->labels[n])
        n++;
    for (size_t i = 0; i < n; i++) {
        const char *l = sp->labels[i];
        if (!name_ok(l, false) || strncmp(l, "__", 2) == 0)
            return jz_error_set(err, JZ_EINVAL, "%s: label name '%s' is not valid", sp->name, l);
        if (sp->type == JZ_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
            return jz_error_set(err, JZ_EINVAL, "%s: 'le' is the histogram's own label", sp->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(sp->labels[j], l) == 0)
                return jz_error_set(err, JZ_EINVAL, "%s: label '%s' twice", sp->name, l);
    }
    if (sp->type == JZ_METRIC_HISTOGRAM) {
        if (!sp->buckets || sp->nbuckets == 0 || sp->nbuckets > JZ_METRICS_MAX_BUCKETS)
            return jz_error_set(err, JZ_EINVAL, "%s: 1 to %d buckets", sp->name,
                                JZ_METRICS_MAX_BUCKETS);
        for (size_t i = 0; i < sp->nbuckets; i++)
            if (!isfinite(sp->buckets[i]) || (i > 0 && sp->buckets[i] <= sp->buckets[i - 1]))
                return jz_error_set(err, JZ_EINVAL,
                                    "%s: buckets must be finite and strictly ascending", sp->name);
    } else if (sp->buckets || sp->nbuckets) {
        return jz_error_set(err, JZ_EINVAL, "%s: only histograms have buckets", sp->name);
    }
    *nlabels = n;
    return 0;
}

int jz_metrics_add(struct jz_metrics *m, const struct jz_metric_spec *spec, struct jz_metric **out,
                   struct jz_error *err)
{
    size_t nlabels = 0;
    int rc = spec_check(m, spec, &nlabels, err);
    if (rc)
        return rc;
    struct jz_metric *f = calloc(1, sizeof *f);
    if (!f)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    f->spec = *spec;
    if (!f->spec.max_series)
        f->spec.max_series = JZ_METRICS_DEFAULT_MAX_SERIES;
    /* The cap, plus the folded series, at most half full. */
    f->index_cap = 16;
    while (f->index_cap < 2 * (f->spec.max_series + 1))
        f->index_cap *= 2;
    f->nlabels = nlabels;
    f->index = calloc(f->index_cap, sizeof *f->index);
    if (!f->index || f->spec.max_series > UINT32_MAX / 4) {
        free(f->index);
        free(f);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct jz_metric **grown = realloc(m->fam, cap * sizeof *grown);
        if (!grown) {
            free(f->index);
            free(f);
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
        m->fam = grown;
        m->cap = cap;
    }
    m->fam[m->n++] = f;
    *out = f;
    return 0;
}

/* --- series ------------------------------------------------------------------------------ */

static struct series *series_new(struct jz_metric *f, const struct labelset *ls, uint64_t hash)
{
    size_t nb = f->spec.type == JZ_METRIC_HISTOGRAM ? f->spec.nbuckets : 0;
    size_t vlen = 0;
    for (size_t l = 0; l < f->nlabels; l++)
        vlen += ls->len[l] + 1;
    struct series *s = calloc(1, sizeof *s + nb * sizeof s->bucket[0]);
    char *values = malloc(vlen + 1);
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        struct series **grown = s && values ? realloc(f->items, cap * sizeof *grown) : NULL;
        if (grown) {
            f->items = grown;
            f->cap = cap;
        }
    }
    if (!s || !values || f->n == f->cap) {
        free(s);
        free(values);
        return NULL;
    }
    char *p = values;
    for (size_t l = 0; l < f->nlabels; l++) {
        memcpy(p, ls->v[l], ls->len[l] + 1);
        p += ls->len[l] + 1;
    }
    *p = '\0';
    s->values = values;
    s->hash = hash;
    size_t slot = (size_t)hash & (f->index_cap - 1);
    while (f->index[slot])
        slot = (slot + 1) & (f->index_cap - 1);
    f->items[f->n++] = s;
    f->index[slot] = (uint32_t)f->n;
    return s;
}

static struct series *series_find(const struct jz_metric *f, const struct labelset *ls,
                                  uint64_t hash)
{
    for (size_t slot = (size_t)hash & (f->index_cap - 1); f->index[slot];
         slot = (slot + 1) & (f->index_cap - 1)) {
        struct series *s = f->items[f->index[slot] - 1];
        if (s->hash == hash && same_set(s, ls, f->nlabels))
            return s;
    }
    return NULL;
}

static void labelset_fill(const struct jz_metric *f, const char *const *values, struct labelset *ls)
{
    for (size_t l = 0; l < f->nlabels; l++)
        normalize(values ? values[l] : NULL, ls->v[l], &ls->len[l]);
}

/* The series of values, created when new; the folded one past the cap; NULL out of memory.
 * *folded says which. */
static struct series *series_get(struct jz_metric *f, const char *const *values, bool *folded)
{
    struct labelset ls;
    labelset_fill(f, values, &ls);
    uint64_t h = hash_set(&ls, f->nlabels);
    struct series *s = series_find(f, &ls, h);
    *folded = false;
    if (s)
        return s;
    if (f->n < f->spec.max_series && (s = series_new(f, &ls, h)))
        return s;
    f->folded++;
    *folded = true;
    if (!f->other) {
        for (size_t l = 0; l < f->nlabels; l++) {
            memcpy(ls.v[l], JZ_METRICS_OTHER, sizeof JZ_METRICS_OTHER);
            ls.len[l] = sizeof JZ_METRICS_OTHER - 1;
        }
        h = hash_set(&ls, f->nlabels);
        /* A real label set may already be all "_other" (a tenant of that name): share it. */
        f->other = series_find(f, &ls, h);
        if (!f->other)
            f->other = series_new(f, &ls, h);
    }
    return f->other;
}

void jz_metric_inc(struct jz_metric *f, const char *const *values, double by)
{
    if (!f || f->spec.type != JZ_METRIC_COUNTER || !(by >= 0)) /* counters never go down */
        return;
    bool folded;
    struct series *s = series_get(f, values, &folded);
    if (s)
        s->value += by;
}

void jz_metric_add(struct jz_metric *f, const char *const *values, double by)
{
    if (!f || f->spec.type != JZ_METRIC_GAUGE)
        return;
    bool folded;
    struct series *s = series_get(f, values, &folded);
    if (s)
        s->value += by;
}

void jz_metric_set(struct jz_metric *f, const char *const *values, double v)
{
    if (!f || f->spec.type != JZ_METRIC_GAUGE)
        return;
    bool folded;
    struct series *s = series_get(f, values, &folded);
    /* The folded series stands for many sets: it holds their sum (jobs of the other tenants). */
    if (s)
        s->value = folded ? s->value + v : v;
}

void jz_metric_observe(struct jz_metric *f, const char *const *values, double v)
{
    if (!f || f->spec.type != JZ_METRIC_HISTOGRAM || isnan(v))
        return;
    bool folded;
    struct series *s = series_get(f, values, &folded);
    if (!s)
        return;
    /* Each observation lands in the first bucket whose bound holds it (le: less or equal);
     * rendering makes the counts cumulative. Above the last bound it is only in +Inf. */
    size_t i = 0;
    while (i < f->spec.nbuckets && v > f->spec.buckets[i])
        i++;
    if (i < f->spec.nbuckets)
        s->bucket[i]++;
    s->count++;
    s->value += v;
}

void jz_metric_clear(struct jz_metric *f)
{
    if (f)
        family_free_series(f);
}

bool jz_metric_get(const struct jz_metric *f, const char *const *values, double *out)
{
    if (!f)
        return false;
    struct labelset ls;
    labelset_fill(f, values, &ls);
    const struct series *s = series_find(f, &ls, hash_set(&ls, f->nlabels));
    if (!s)
        return false;
    *out = f->spec.type == JZ_METRIC_HISTOGRAM ? (double)s->count : s->value;
    return true;
}

uint64_t jz_metric_folded(const struct jz_metric *f)
{
    return f ? f->folded : 0;
}

size_t jz_metric_series(const struct jz_metric *f)
{
    return f ? f->n : 0;
}

/* --- the text format ----------------------------------------------------------------------- */

size_t jz_metrics_escape(const char *value, char *buf, size_t len)
{
    size_t o = 0;
    if (len == 0)
        return 0;
    for (const char *p = value; *p; p++) {
        const char *rep = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        size_t n = rep ? 2 : 1;
        if (o + n >= len)
            break;
        if (rep)
            memcpy(buf + o, rep, 2);
        else
            buf[o] = *p;
        o += n;
    }
    buf[o] = '\0';
    return o;
}

/* Shortest text that reads back as v (Go's ParseFloat reads it), and the format's spellings of
 * the infinities and NaN. */
static void format_num(double v, char *buf, size_t len)
{
    if (isnan(v))
        snprintf(buf, len, "NaN");
    else if (isinf(v))
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v);
    else {
        snprintf(buf, len, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, len, "%.17g", v);
    }
}

struct out {
    jz_metrics_write_fn fn;
    void *arg;
};

static void put(const struct out *o, const char *s)
{
    o->fn(o->arg, s, strlen(s));
}

/* {a="x",b="y"[,le="B"]}: nothing at all when there are no labels and no le. */
static void put_labels(const struct out *o, const struct jz_metric *f, const struct series *s,
                       const char *le)
{
    if (f->nlabels == 0 && !le)
        return;
    char esc[2 * JZ_METRICS_VALUE_MAX + 1];
    put(o, "{");
    const char *v = s->values;
    for (size_t l = 0; l < f->nlabels; l++) {
        if (l)
            put(o, ",");
        put(o, f->spec.labels[l]);
        put(o, "=\"");
        o->fn(o->arg, esc, jz_metrics_escape(v, esc, sizeof esc));
        put(o, "\"");
        v += strlen(v) + 1;
    }
    if (le) {
        put(o, f->nlabels ? ",le=\"" : "le=\"");
        put(o, le);
        put(o, "\"");
    }
    put(o, "}");
}

static void put_sample(const struct out *o, const struct jz_metric *f, const struct series *s,
                       const char *suffix, const char *le, double v)
{
    char num[40];
    format_num(v, num, sizeof num);
    put(o, f->spec.name);
    put(o, suffix);
    put_labels(o, f, s, le);
    put(o, " ");
    put(o, num);
    put(o, "\n");
}

static void put_head(const struct out *o, const char *name, const char *help, const char *type)
{
    char esc[1024];
    /* HELP text escapes backslash and newline only; help is one line, so only backslashes. */
    size_t n = 0;
    for (const char *p = help; *p && n + 2 < sizeof esc; p++) {
        if (*p == '\\')
            esc[n++] = '\\';
        esc[n++] = *p;
    }
    esc[n] = '\0';
    put(o, "# HELP ");
    put(o, name);
    put(o, " ");
    put(o, esc);
    put(o, "\n# TYPE ");
    put(o, name);
    put(o, " ");
    put(o, type);
    put(o, "\n");
}

void jz_metrics_render(const struct jz_metrics *m, jz_metrics_write_fn fn, void *arg)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    const struct out o = {fn, arg};
    for (size_t i = 0; i < m->n; i++) {
        const struct jz_metric *f = m->fam[i];
        put_head(&o, f->spec.name, f->spec.help, types[f->spec.type]);
        for (size_t k = 0; k < f->n; k++) {
            const struct series *s = f->items[k];
            if (f->spec.type != JZ_METRIC_HISTOGRAM) {
                put_sample(&o, f, s, "", NULL, s->value);
                continue;
            }
            uint64_t cum = 0;
            char le[40];
            for (size_t b = 0; b < f->spec.nbuckets; b++) {
                cum += s->bucket[b];
                format_num(f->spec.buckets[b], le, sizeof le);
                put_sample(&o, f, s, "_bucket", le, (double)cum);
            }
            put_sample(&o, f, s, "_bucket", "+Inf", (double)s->count);
            put_sample(&o, f, s, "_sum", NULL, s->value);
            put_sample(&o, f, s, "_count", NULL, (double)s->count);
        }
    }
    put_head(&o, "jazari_metrics_series_folded_total",
             "Observations of a family at its series cap that went to its _other series.",
             "counter");
    for (size_t i = 0; i < m->n; i++) {
        if (!m->fam[i]->folded)
            continue;
        char esc[256], num[40];
        jz_metrics_escape(m->fam[i]->spec.name, esc, sizeof esc);
        format_num((double)m->fam[i]->folded, num, sizeof num);
        put(&o, "jazari_metrics_series_folded_total{family=\"");
        put(&o, esc);
        put(&o, "\"} ");
        put(&o, num);
        put(&o, "\n");
    }
}
