/* A small registry of Prometheus metrics: counters, gauges and histograms with fixed buckets,
 * each a family of series told apart by label values, rendered in the text exposition format
 * (version 0.0.4). It knows nothing of jazarid (service_metrics.h registers jazarid's families).
 *
 * Threading: none; every call on one registry comes from one thread (jazarid's loop).
 * Memory: one allocation per new series (its label values and buckets together), none per
 * observation. Cardinality is bounded: a family keeps at most max_series label sets; values of
 * further sets go to one series whose every label is JZ_METRICS_OTHER, and the registry counts
 * the observations so folded in jazari_metrics_series_folded_total{family}.
 * Label values are copied (cut at JZ_METRICS_VALUE_MAX bytes, on a UTF-8 boundary) and escaped
 * when rendered (backslash, double quote, newline), so any text may be a value. */
#ifndef JZ_SERVER_METRICS_H
#define JZ_SERVER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

#define JZ_METRICS_MAX_LABELS 6
#define JZ_METRICS_MAX_BUCKETS 32
#define JZ_METRICS_VALUE_MAX 256          /* bytes of one label value kept */
#define JZ_METRICS_DEFAULT_MAX_SERIES 256 /* a family's label sets when its spec says 0 */
#define JZ_METRICS_OTHER "_other"

enum jz_metric_type { JZ_METRIC_COUNTER, JZ_METRIC_GAUGE, JZ_METRIC_HISTOGRAM };

struct jz_metrics; /* a registry */
struct jz_metric;  /* one family of it */

/* What a family is. Strings and the bucket array are borrowed for the registry's life (give
 * static ones). */
struct jz_metric_spec {
    enum jz_metric_type type;
    const char *name;                          /* [a-zA-Z_:][a-zA-Z0-9_:]*; counters end "_total" */
    const char *help;                          /* one line */
    const char *labels[JZ_METRICS_MAX_LABELS]; /* label names, the first NULL ends them */
    const double *buckets;                     /* histograms: upper bounds, strictly ascending, */
    size_t nbuckets;   /* finite, 1..JZ_METRICS_MAX_BUCKETS (+Inf implied) */
    size_t max_series; /* label sets kept; 0: the default */
};

/* A new, empty registry (caller destroys it); NULL when out of memory. */
struct jz_metrics *jz_metrics_create(void);
/* Frees the registry and its families; NULL is accepted. */
void jz_metrics_destroy(struct jz_metrics *m);

/* Adds a family. JZ_EINVAL (err says why) for a bad name, label name (reserved "le" included,
 * or "__" prefixes), buckets, a counter not ending "_total", or a name already registered;
 * JZ_ENOMEM. On success *out is owned by m. */
int jz_metrics_add(struct jz_metrics *m, const struct jz_metric_spec *spec, struct jz_metric **out,
                   struct jz_error *err);

/* Observations. values: one per label of the family, in the spec's order (borrowed; NULL when
 * the family has no labels; a NULL value reads as ""). A NULL family does nothing, so that code
 * observed in a process without a registry runs unchanged. Out of memory, an observation is
 * folded too (or lost, when not even that series can be made). */
void jz_metric_inc(struct jz_metric *f, const char *const *values,
                   double by);                                                /* counter, by >= 0 */
void jz_metric_set(struct jz_metric *f, const char *const *values, double v); /* gauge */
void jz_metric_add(struct jz_metric *f, const char *const *values, double by);    /* gauge */
void jz_metric_observe(struct jz_metric *f, const char *const *values, double v); /* histogram */
/* Drops every series of the family: gauges computed at each scrape start from nothing, so that
 * a node or tenant gone is gone from the output too. */
void jz_metric_clear(struct jz_metric *f);

/* Reads, for tests and health checks: the value of a counter or gauge series (a histogram's
 * count) and whether it exists. */
bool jz_metric_get(const struct jz_metric *f, const char *const *values, double *out);
/* Observations folded into the JZ_METRICS_OTHER series so far (clearing does not reset it). */
uint64_t jz_metric_folded(const struct jz_metric *f);
/* Series the family holds now. */
size_t jz_metric_series(const struct jz_metric *f);

/* Writes every family (registration order, series in first-seen order) in the text format, then
 * jazari_metrics_series_folded_total. fn receives pieces of text (borrowed for the call). */
typedef void (*jz_metrics_write_fn)(void *arg, const char *data, size_t len);
void jz_metrics_render(const struct jz_metrics *m, jz_metrics_write_fn fn, void *arg);

/* Writes a label value escaped for the text format into buf (NUL-terminated, cut to fit);
 * returns the length written. Exposed for tests. */
size_t jz_metrics_escape(const char *value, char *buf, size_t len);

#endif
