/* The recent job events that GET /v1/events replays to a client resuming after a disconnect: a
 * fixed-size ring of ready-to-send frames, oldest evicted first. Pure data: no I/O, no clock.
 *
 * Ids only increase. The ring also knows its floor: the newest id it can no longer replay (one
 * it evicted, or the last one before a restart it cannot vouch for). A reader that has seen up
 * to id L resumes exactly when floor <= L <= the newest id; otherwise it missed something and
 * must start over ("event: reset"). */
#ifndef JZ_SERVER_EVENTS_RING_H
#define JZ_SERVER_EVENTS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/server.h"

struct jz_event {
    int64_t id;
    int64_t job;
    char user[JZ_MAX_NAME_LEN + 1]; /* the job's owner: who may see it */
    char tenant[JZ_MAX_NAME_LEN + 1];
    char *frame; /* the whole SSE frame, "id: ...\n...\n\n" (malloc'd, owned by the event) */
    size_t len;
};

struct jz_event_ring;

/* A ring of cap events (>= 1) whose floor starts at floor. NULL when out of memory. */
struct jz_event_ring *jz_event_ring_new(size_t cap, int64_t floor);
void jz_event_ring_free(struct jz_event_ring *r); /* NULL accepted */

/* Appends e (copied; its frame is taken over) whose id must be above every id pushed before;
 * the oldest event goes when the ring is full, and the floor rises to its id. */
void jz_event_ring_push(struct jz_event_ring *r, const struct jz_event *e);

size_t jz_event_ring_count(const struct jz_event_ring *r);
/* The newest id pushed, or the floor when none was. */
int64_t jz_event_ring_last(const struct jz_event_ring *r);
int64_t jz_event_ring_floor(const struct jz_event_ring *r);
/* The event at pos (0: the oldest held), borrowed until the next push. */
const struct jz_event *jz_event_ring_at(const struct jz_event_ring *r, size_t pos);
/* For a reader that has seen every event up to last_id: true with *pos the first event after it
 * (jz_event_ring_count when there is none yet), or false when events it has not seen are gone
 * or last_id was never given out (above the newest). */
bool jz_event_ring_resume(const struct jz_event_ring *r, int64_t last_id, size_t *pos);

#endif
