/* The scheduler's configuration as JSON (the "scheduler" object of the service's configuration
 * file; shape in docs/scheduler.md), parsed into struct jz_sched_config and reservations. */
#ifndef JZ_SCHED_CONFIG_H
#define JZ_SCHED_CONFIG_H

#include <jansson.h>

#include <jazari/error.h>

#include "scheduler/sched.h"

/* A parsed configuration; cfg's arrays and every reservation point into memory it owns. */
struct jz_sched_parsed {
    struct jz_sched_config cfg;
    struct jz_sched_reservation *reservations;
    size_t reservation_count;
    void *owned; /* private */
};

/* Parses obj (borrowed; NULL or {} gives the defaults). Unknown keys are errors, so typos do not
 * pass silently. On success *out is the caller's; free it with jz_sched_parsed_free. */
int jz_sched_config_parse(const json_t *obj, struct jz_sched_parsed **out, struct jz_error *err);
void jz_sched_parsed_free(struct jz_sched_parsed *p);

/* Parses "2026-11-25T19:00:00Z" (UTC, optional fraction ignored) or a decimal number of seconds
 * into seconds since the epoch. */
int jz_sched_time_parse(const char *s, int64_t *out, struct jz_error *err);

#endif
