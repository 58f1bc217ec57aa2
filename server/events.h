/* Job events: every change of a job's state, streamed to clients as server-sent events
 * (GET /v1/events, resumable from a bounded replay ring) and, when a job with a "notify" webhook
 * ends, delivered to it (webhooks.h). docs/events.md says what a client sees.
 *
 * An event is published only once the store batch holding its job's change is durable (the
 * group commit in main.c): a client never sees a state that a crash could take back, and a
 * webhook never announces an end that a restart would undo.
 *
 * Conventions: jazarid's event-loop thread only; records and strings passed in are borrowed
 * (what is kept is copied). */
#ifndef JZ_SERVER_EVENTS_H
#define JZ_SERVER_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <jazari/error.h>

#include "server/server.h"

#define JZ_EVENTS_RING 10000              /* events kept for resuming clients */
#define JZ_EVENTS_MAX_STREAMS 1024        /* streams open at once, all users together */
#define JZ_EVENTS_KEEPALIVE_S 15          /* a ": keep-alive" comment this often */
#define JZ_EVENTS_MAX_QUEUED (256 * 1024) /* bytes a stream may have unsent before it waits */

struct jz_events;
struct jz_req;

/* Opens the module for srv (borrowed; srv->base and srv->cfg.state_dir are used): reads the
 * event-id mark in STATE/events.id so that ids keep increasing across restarts. *out is the
 * caller's (jz_events_close), written only on success. */
int jz_events_open(struct jz_server *srv, struct jz_events **out, struct jz_error *err);
/* Ends every stream, abandons pending webhooks (logged), records the last id given out as a
 * clean stop, and frees everything. NULL accepted. */
void jz_events_close(struct jz_events *ev);

/* A job changed state. rec: its public record as the API shows it (borrowed; fields "id",
 * "state", "user", "tenant", "name", "reason", "reason_code", "exit_code", "array", ...).
 * previous: the state before ("PENDING"...), NULL for a new submission. notify_url/secret: the
 * job's webhook, NULL when none; a webhook is delivered when the new state is final
 * (SUCCEEDED, FAILED, CANCELLED, TIMEOUT). The event gets its id now and is published once the
 * next store batch is durable. ev NULL: nothing happens. */
void jz_events_job_changed(struct jz_events *ev, const json_t *rec, const char *previous,
                           const char *notify_url, const char *notify_secret);

/* Group commit (main.c): take_held detaches the events made since the last call, when the
 * batch holding their changes is sealed; publish sends them (and their webhooks) once that batch
 * is durable, or drops them when it failed (committed false). drop_held frees a list that will
 * never be published. The list is the caller's between the calls; ev NULL: NULL list. */
struct jz_events_held;
struct jz_events_held *jz_events_take_held(struct jz_events *ev);
void jz_events_publish(struct jz_events *ev, struct jz_events_held *held, bool committed);
void jz_events_drop_held(struct jz_events_held *held); /* NULL accepted */

/* Counts for /metrics and tests. */
struct jz_events_stats {
    uint64_t published;       /* events into the ring */
    uint64_t streams_dropped; /* streams ended because their client fell a whole ring behind */
    size_t streams;           /* open now */
    int64_t last_id;          /* the newest id published */
    uint64_t webhooks_delivered, webhooks_failed, webhooks_blocked, webhooks_dropped,
        webhook_attempts;
    size_t webhooks_pending;
};
void jz_events_stats(const struct jz_events *ev, struct jz_events_stats *out);

/* GET /v1/events (api.h). */
void jz_api_events(struct jz_req *r);

#endif
