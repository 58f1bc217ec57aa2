/* Placement of booked compute slots (booking.h): first-fit-decreasing with a best-fit first
 * and last node, which gives the fewest nodes and leaves the larger free blocks whole. */
#include "scheduler/booking.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jazari/error.h>

static unsigned free_on(const struct jz_booking_node *nd, unsigned held)
{
    unsigned left = held >= nd->total ? 0 : nd->total - held;
    return left < nd->gpus ? left : nd->gpus;
}

int jz_booking_place(const struct jz_booking_node *nodes, size_t n,
                     const struct jz_booking_hold *holds, size_t nholds, unsigned gpus,
                     int64_t start, int64_t end, unsigned *take, char *why, size_t why_len)
{
    if (gpus == 0 || start >= end || (n && (!nodes || !take)) || (nholds && !holds))
        return JZ_EINVAL;
    unsigned *fr = calloc(n ? n : 1, sizeof(*fr));
    size_t *order = calloc(n ? n : 1, sizeof(*order));
    if (!fr || !order) {
        free(fr);
        free(order);
        return JZ_ENOMEM;
    }
    unsigned *held = fr; /* first the GPUs held in the window, then what is free */
    for (size_t h = 0; h < nholds; h++)
        if (holds[h].node < n && holds[h].start < end && start < holds[h].end)
            held[holds[h].node] += holds[h].gpus;
    unsigned long all = 0, usable = 0;
    for (size_t i = 0; i < n; i++) {
        fr[i] = free_on(&nodes[i], held[i]);
        all += fr[i];
        usable += nodes[i].gpus;
    }
    int rc = 0;
    if (all < gpus) {
        int w = snprintf(why, why_len,
                         "%u GPUs do not fit: %zu matching nodes have %lu such GPUs, %lu of "
                         "them free in that window",
                         gpus, n, usable, all);
        size_t named = 0;
        for (size_t h = 0; h < nholds && named < 8; h++) {
            if (holds[h].node >= n || holds[h].start >= end || start >= holds[h].end)
                continue;
            bool seen = false;
            for (size_t k = 0; k < h && !seen; k++)
                seen = holds[k].node < n && holds[k].start < end && start < holds[k].end &&
                       strcmp(holds[k].owner, holds[h].owner) == 0;
            if (seen)
                continue;
            if (w >= 0 && (size_t)w < why_len)
                w += snprintf(why + w, why_len - (size_t)w, "%s %s", named ? "," : "; held by",
                              holds[h].owner);
            named++;
        }
        rc = JZ_EBUSY;
        goto out;
    }
    memset(take, 0, n * sizeof(*take));
    /* One node if any can: the fewest free GPUs that hold them all. */
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        if (fr[i] >= gpus && (best == SIZE_MAX || fr[i] < fr[best]))
            best = i;
    if (best != SIZE_MAX) {
        take[best] = gpus;
        goto out;
    }
    /* Otherwise the largest free blocks first (fewest nodes); the last one is the smallest
     * block among the rest that completes the count. */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 1; i < n; i++) { /* insertion sort: stable, by free GPUs descending */
        size_t v = order[i], k = i;
        while (k > 0 && fr[order[k - 1]] < fr[v]) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = v;
    }
    unsigned left = gpus;
    for (size_t p = 0; p < n && left; p++) {
        size_t i = order[p];
        if (fr[i] >= left) {
            size_t last = i;
            for (size_t q = p + 1; q < n; q++)
                if (fr[order[q]] >= left && fr[order[q]] < fr[last])
                    last = order[q];
            take[last] = left;
            left = 0;
        } else {
            take[i] = fr[i];
            left -= fr[i];
        }
    }
out:
    free(fr);
    free(order);
    return rc;
}
