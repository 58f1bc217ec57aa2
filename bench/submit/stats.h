/* Latency statistics for the benchmarks: a bounded log-linear histogram, exact nearest-rank
 * percentiles of small sample sets; and their option values. */
#ifndef JZ_BENCH_SUBMIT_STATS_H
#define JZ_BENCH_SUBMIT_STATS_H

#include <stdbool.h>

#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

/* Values below 128 µs are exact; above, each power of two is split into 64 buckets (relative
 * error under 1.6%). Values are clamped to 2^41 µs (about 25 days). Fixed size, so a long run
 * costs no more memory than a short one. */
#define JZ_LATHIST_EXACT 128
#define JZ_LATHIST_SUB 64
#define JZ_LATHIST_BUCKETS (JZ_LATHIST_EXACT + 34 * JZ_LATHIST_SUB)

struct jz_lathist {
    uint64_t count;
    uint64_t max_us;
    uint64_t buckets[JZ_LATHIST_BUCKETS];
};

/* Records one latency in microseconds. h is caller-owned and zero-initialised. */
void jz_lathist_add(struct jz_lathist *h, uint64_t us);
/* Adds src's samples into dst (both caller-owned). */
void jz_lathist_merge(struct jz_lathist *dst, const struct jz_lathist *src);
/* The nearest-rank quantile q (0 < q <= 1) in microseconds: the midpoint of the bucket holding
 * that rank, never above the largest recorded value. 0 when h is empty. */
double jz_lathist_quantile_us(const struct jz_lathist *h, double q);

/* Nearest-rank quantile of n values; sorts v in place (caller-owned). 0 when n is 0. */
double jz_quantile_sorted(double *v, size_t n, double q);

/* Parses a whole decimal integer within [lo, hi] into *out; false otherwise (out untouched). */
bool jz_bench_parse_long(const char *s, long lo, long hi, long *out);

#endif
