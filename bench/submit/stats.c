/* Latency histogram, nearest-rank percentiles and ISO-8601 parsing for the submit benchmark. */
#include "stats.h"

#include <errno.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_US ((1ull << 41) - 1)

static size_t bucket_of(uint64_t us)
{
    if (us > MAX_US)
        us = MAX_US;
    if (us < JZ_LATHIST_EXACT)
        return (size_t)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned e = msb - 6; /* shift that leaves a mantissa in [64, 127] */
    uint64_t m = us >> e;
    return JZ_LATHIST_EXACT + (size_t)(e - 1) * JZ_LATHIST_SUB + (size_t)(m - JZ_LATHIST_SUB);
}

/* Midpoint of bucket i, in µs. */
static double bucket_mid(size_t i)
{
    if (i < JZ_LATHIST_EXACT)
        return (double)i;
    size_t k = i - JZ_LATHIST_EXACT;
    unsigned e = (unsigned)(k / JZ_LATHIST_SUB) + 1;
    uint64_t m = k % JZ_LATHIST_SUB + JZ_LATHIST_SUB;
    uint64_t lo = m << e, hi = ((m + 1) << e) - 1;
    return ((double)lo + (double)hi) / 2.0;
}

void jz_lathist_add(struct jz_lathist *h, uint64_t us)
{
    h->buckets[bucket_of(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

void jz_lathist_merge(struct jz_lathist *dst, const struct jz_lathist *src)
{
    for (size_t i = 0; i < JZ_LATHIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
}

static uint64_t rank_of(uint64_t n, double q)
{
    if (q <= 0)
        return 1;
    double r = ceil(q * (double)n);
    if (r < 1)
        return 1;
    return r > (double)n ? n : (uint64_t)r;
}

double jz_lathist_quantile_us(const struct jz_lathist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = rank_of(h->count, q), seen = 0;
    for (size_t i = 0; i < JZ_LATHIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            double v = bucket_mid(i);
            return v > (double)h->max_us ? (double)h->max_us : v;
        }
    }
    return (double)h->max_us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double jz_quantile_sorted(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return v[rank_of(n, q) - 1];
}

bool jz_bench_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}
