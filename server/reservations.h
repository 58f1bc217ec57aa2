/* Booked compute slots (`jazari reserve`): a tenant books GPUs of a model on a site for a time
 * window, priced and held from its credit at booking and charged at the window's end (or, when
 * cancelled, for the part elapsed). Bookings are store objects of kind "reservation"; each is
 * in the scheduler as one reservation per node it holds, named "resv:ID/K", which jobs submitted
 * with "reservation": ID are bound to (scheduler/sched.h, struct jz_sched_job.reservation).
 * Everything runs on the event loop's thread. */
#ifndef JZ_SERVER_RESERVATIONS_H
#define JZ_SERVER_RESERVATIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

#include "scheduler/sched.h"
#include "server/server.h"

struct jz_user;
struct jz_reservations;

/* Limits; the configuration file's optional "reservations" object may change the first three
 * ({"min_window_s", "max_window_s", "max_ahead_s"}, and "max_per_tenant"). */
#define JZ_RESV_MIN_WINDOW_S 600
#define JZ_RESV_MAX_WINDOW_S (30LL * 86400)
#define JZ_RESV_MAX_AHEAD_S (90LL * 86400)
#define JZ_RESV_MAX_PER_TENANT 32 /* bookings not yet ended or cancelled */

/* Reads the bookings from the store, puts the live ones back into the scheduler (whose nodes
 * are open) and settles those whose window ended while the service was down. */
int jz_reservations_open(struct jz_server *srv, struct jz_reservations **out, struct jz_error *err);
void jz_reservations_close(struct jz_reservations *rs); /* NULL accepted */

/* POST /v1/reservations: body borrowed; on success *out is the booking (new reference). On
 * failure *field names the field at fault (or NULL), err says why: JZ_EINVAL / JZ_ERANGE (400),
 * JZ_EPERM (403), JZ_EBUSY (409 conflict: no room, naming the bookings in the way), JZ_EAGAIN
 * (409 credits: how much is missing), JZ_ELIMIT (too many bookings). */
int jz_reservations_book(struct jz_reservations *rs, const struct jz_user *u, const json_t *body,
                         json_t **out, const char **field, struct jz_error *err);
/* The bookings u may see ({"reservations": [...]}), of one tenant when tenant is not NULL. */
json_t *jz_reservations_list(struct jz_reservations *rs, const struct jz_user *u,
                             const char *tenant);
/* One booking as u may see it, or NULL (not found or another tenant's). New reference. */
json_t *jz_reservations_get(struct jz_reservations *rs, const struct jz_user *u, int64_t id);
/* Cancels a booking: before its start nothing is charged; after, the elapsed part. *out is the
 * report (booked, used and unused GPU-hours, charged). JZ_ENOENT (not visible), JZ_EPERM (may
 * not manage the tenant), JZ_EBUSY (already ended or cancelled). */
int jz_reservations_cancel(struct jz_reservations *rs, const struct jz_user *u, int64_t id,
                           json_t **out, struct jz_error *err);

/* A job's "reservation" at submission: value is the body's (an id, or "ID" / "resv:ID"). The
 * booking must be the tenant's, live, hold gpus_per_node GPUs on a node, and the job (time limit
 * from now, or from the window's start) must end by the window's end. Writes the scheduler's
 * name ("resv:ID") into name. JZ_EINVAL with err saying why. */
int jz_reservations_check_job(struct jz_reservations *rs, const char *tenant, const json_t *value,
                              int64_t gpus_per_node, int64_t time_limit_s, char *name,
                              size_t name_len, struct jz_error *err);

/* A node joined the scheduler: bookings whose nodes were unknown (at start-up, before the
 * agents joined) go into the scheduler now. rs may be NULL (not open yet). */
void jz_reservations_resync(struct jz_reservations *rs);

/* For a reload: the file's reservations r[0..n) followed by the live bookings' (node names
 * borrowed from rs until its next change). *out is malloc'd (free it); *count its length. */
int jz_reservations_with_booked(struct jz_reservations *rs, const struct jz_sched_reservation *r,
                                size_t n, struct jz_sched_reservation **out, size_t *count,
                                struct jz_error *err);

#endif
