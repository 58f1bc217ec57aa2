/* Parsing and formatting of OS processor lists. */
#include "common/cpulist.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int jz_cpulist_parse(const char *list, int **cpus, size_t *n, struct jz_error *err)
{
    size_t cap = 16, count = 0;
    int *out = malloc(cap * sizeof *out);
    if (!out)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    const char *p = list;
    while (*p) {
        char *end;
        if (!isdigit((unsigned char)*p))
            goto bad;
        long lo = strtol(p, &end, 10), hi = lo;
        p = end;
        if (*p == '-') {
            p++;
            if (!isdigit((unsigned char)*p))
                goto bad;
            hi = strtol(p, &end, 10);
            p = end;
        }
        if (lo < 0 || hi < lo || hi >= JZ_CPULIST_MAX_CPU)
            goto bad;
        for (long c = lo; c <= hi; c++) {
            if (count == cap) {
                cap *= 2;
                int *grown = realloc(out, cap * sizeof *out);
                if (!grown) {
                    free(out);
                    return jz_error_set(err, JZ_ENOMEM, "out of memory");
                }
                out = grown;
            }
            out[count++] = (int)c;
        }
        if (*p == ',')
            p++;
        else if (*p)
            goto bad;
    }
    qsort(out, count, sizeof *out, cmp_int);
    size_t w = 0;
    for (size_t i = 0; i < count; i++)
        if (w == 0 || out[w - 1] != out[i])
            out[w++] = out[i];
    *cpus = out;
    *n = w;
    return 0;
bad:
    free(out);
    return jz_error_set(err, JZ_EINVAL, "bad CPU list '%s' (expected e.g. 0-3,8)", list);
}

int jz_cpulist_format(const int *cpus, size_t n, char *buf, size_t len)
{
    size_t used = 0;
    if (len == 0)
        return JZ_ERANGE;
    buf[0] = '\0';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && cpus[j + 1] == cpus[j] + 1)
            j++;
        int w = (j > i) ? snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", cpus[i],
                                   cpus[j])
                        : snprintf(buf + used, len - used, "%s%d", used ? "," : "", cpus[i]);
        if (w < 0 || (size_t)w >= len - used)
            return JZ_ERANGE;
        used += (size_t)w;
        i = j + 1;
    }
    return 0;
}
