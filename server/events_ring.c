/* The replay ring of GET /v1/events (events_ring.h). */
#include <stdlib.h>

#include "server/events_ring.h"

struct jz_event_ring {
    size_t cap, head, count; /* head: where the oldest is */
    int64_t floor, last;
    struct jz_event ev[];
};

struct jz_event_ring *jz_event_ring_new(size_t cap, int64_t floor)
{
    if (cap == 0)
        return NULL;
    struct jz_event_ring *r = calloc(1, sizeof *r + cap * sizeof r->ev[0]);
    if (!r)
        return NULL;
    r->cap = cap;
    r->floor = r->last = floor;
    return r;
}

void jz_event_ring_free(struct jz_event_ring *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        free(r->ev[(r->head + i) % r->cap].frame);
    free(r);
}

void jz_event_ring_push(struct jz_event_ring *r, const struct jz_event *e)
{
    if (r->count == r->cap) {
        struct jz_event *old = &r->ev[r->head];
        r->floor = old->id;
        free(old->frame);
        r->head = (r->head + 1) % r->cap;
        r->count--;
    }
    r->ev[(r->head + r->count) % r->cap] = *e;
    r->count++;
    r->last = e->id;
}

size_t jz_event_ring_count(const struct jz_event_ring *r)
{
    return r->count;
}

int64_t jz_event_ring_last(const struct jz_event_ring *r)
{
    return r->last;
}

int64_t jz_event_ring_floor(const struct jz_event_ring *r)
{
    return r->floor;
}

const struct jz_event *jz_event_ring_at(const struct jz_event_ring *r, size_t pos)
{
    return pos < r->count ? &r->ev[(r->head + pos) % r->cap] : NULL;
}

bool jz_event_ring_resume(const struct jz_event_ring *r, int64_t last_id, size_t *pos)
{
    if (last_id < r->floor || last_id > r->last)
        return false;
    size_t lo = 0, hi = r->count; /* the first event with an id above last_id */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (jz_event_ring_at(r, mid)->id <= last_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return true;
}
