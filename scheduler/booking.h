/* Where a booked compute slot goes: pure placement of N GPUs for a time window over nodes that
 * already carry reservations (the service's `jazari reserve`). No I/O, no scheduler state. */
#ifndef JZ_SCHED_BOOKING_H
#define JZ_SCHED_BOOKING_H

#include <stddef.h>
#include <stdint.h>

/* A candidate node: usable GPUs (of the wanted model, on the wanted site) and all its GPUs. */
struct jz_booking_node {
    const char *name; /* borrowed */
    unsigned gpus;    /* GPUs a booking may take here (those of the model) */
    unsigned total;   /* every GPU of the node */
};

/* GPUs held on one node by an existing reservation during [start, end). */
struct jz_booking_hold {
    const char *owner; /* the reservation's name (borrowed), named in conflicts */
    size_t node;       /* index into the nodes array */
    unsigned gpus;
    int64_t start, end;
};

/* Places gpus GPUs over the nodes for [start, end): every node keeps the GPUs held by the
 * holds that overlap the window plus the new ones within its total, and the new ones within its
 * usable GPUs. Packs tightly: one node when one can hold them all (the one with the fewest
 * free GPUs that can), else the fewest nodes, the last one the tightest that completes the
 * count. On success writes take[i] (GPUs on node i, 0 for most; the caller's array of n) and
 * returns 0. When they do not fit returns JZ_EBUSY and writes one sentence into why (why_len
 * bytes) naming the capacity and up to 8 conflicting owners. JZ_EINVAL for gpus == 0 or
 * start >= end. */
int jz_booking_place(const struct jz_booking_node *nodes, size_t n,
                     const struct jz_booking_hold *holds, size_t nholds, unsigned gpus,
                     int64_t start, int64_t end, unsigned *take, char *why, size_t why_len);

#endif
