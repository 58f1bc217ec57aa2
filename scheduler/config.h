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

/* What changed from a to b, for an operator's log line: "weight_fairshare 10000 -> 20000,
 * class gpu-short added, tenant acme weight 1 -> 2" (settings by their jz_sched_config field
 * names; classes, tenants and reservations by name). Writes "" when nothing changed and cuts
 * the text with "..." when buf is too small. Returns the number of changes. Pure; O(n * m) in
 * the tenants, which are bounded (JZ_SCHED_MAX_TENANTS). */
size_t jz_sched_config_diff(const struct jz_sched_config *a, const struct jz_sched_config *b,
                            char *buf, size_t len);
/* The same for two parsed configurations, their reservations included. */
size_t jz_sched_parsed_diff(const struct jz_sched_parsed *a, const struct jz_sched_parsed *b,
                            char *buf, size_t len);

/* Parses "2026-11-25T19:00:00Z" (UTC, optional fraction ignored) or a decimal number of seconds
 * into seconds since the epoch. */
int jz_sched_time_parse(const char *s, int64_t *out, struct jz_error *err);

#endif
