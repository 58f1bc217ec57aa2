/* The credit ledger (docs/billing.md): what tenants buy, hold and are charged, in credits (a
 * price list, prices.h, turns GPU-hours into credits; without one a credit is a GPU-hour).
 *
 * Entries are only ever appended: "purchase", "refund" and "adjustment" (an admin's, either
 * sign), and for each job run and each booked slot a "hold" when it starts, then a "charge" of
 * what it used and a "release" of the hold when it ends. Every entry says who and why. The
 * balance is derived: purchases + refunds + adjustments - charges; what is held is the holds not
 * yet released; what is available is the balance less what is held. A tenant with any purchase,
 * refund or adjustment is *metered*: a hold larger than what it has available is refused (its
 * job waits with reason "credits", saying how much is missing), so it never overspends. Other
 * tenants are recorded but never stopped.
 *
 * A hold, charge or release is kept once per reference ("job:12:0" is job 12's first run,
 * "resv:7" booking 7), in memory and by the store: a crash between a hold and its charge loses
 * neither (both are in the batch of the job's own change), and nothing is charged twice. */
#ifndef JZ_SERVER_LEDGER_H
#define JZ_SERVER_LEDGER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/server.h"

#define JZ_LEDGER_MAX_AMOUNT 1e9 /* credits in one purchase, refund or adjustment */
#define JZ_LEDGER_MAX_REF 64     /* bytes of a reference */

/* Reads the ledger from the store (moving the GPU-second entries of the first schema over once)
 * and tells the scheduler which tenants have nothing available. */
int jz_ledger_open(struct jz_server *srv, struct jz_ledger **out, struct jz_error *err);
void jz_ledger_close(struct jz_ledger *l);

bool jz_ledger_metered(struct jz_ledger *l, const char *tenant);
/* Whether the tenant has any entry. */
bool jz_ledger_known(struct jz_ledger *l, const char *tenant);
double jz_ledger_balance(struct jz_ledger *l, const char *tenant);
/* The balance less open holds; INFINITY for a tenant that is not metered. */
double jz_ledger_available(struct jz_ledger *l, const char *tenant);

/* Holds amount (>= 0) for ref. JZ_EAGAIN, and nothing written, when the tenant is metered and
 * has less available, unless force (an admin's override). JZ_EEXIST when ref holds already. */
int jz_ledger_hold(struct jz_ledger *l, const char *tenant, const char *ref, double amount,
                   const char *who, const char *why, bool force, struct jz_error *err);
/* Ends ref: charges charge (>= 0; for a job's run, its GPU-seconds and plugin are recorded
 * too) and releases the whole hold. Nothing happens when ref holds nothing (settled already). */
struct jz_ledger_use {
    double gpu_seconds;
    const char *plugin;
    int64_t job_id;
};
int jz_ledger_settle(struct jz_ledger *l, const char *tenant, const char *ref, double charge,
                     const struct jz_ledger_use *use, const char *who, const char *why,
                     struct jz_error *err);
/* Whether ref holds credit now, and how much. */
bool jz_ledger_held(struct jz_ledger *l, const char *ref, double *amount);

/* An admin's entry: kind "purchase" or "refund" (amount > 0) or "adjustment" (either sign).
 * An adjustment that would leave the balance below zero is refused (JZ_EINVAL) unless
 * override. */
int jz_ledger_add(struct jz_ledger *l, const char *tenant, const char *kind, double amount,
                  const char *who, const char *why, bool override, struct jz_error *err);

/* {"tenants": [{"tenant", "metered", "balance", "held", "available", "purchased",
 *  "charged", "used_gpu_hours", "jobs", "used_gpu_hours_by_plugin": {...}, ...}]} for one
 * tenant or all (NULL). New reference. */
json_t *jz_ledger_usage_json(struct jz_ledger *l, const char *tenant);

/* A statement of tenant for [from_ms, to_ms): the opening balance, every entry, totals by kind,
 * the closing balance and what is held at its end. Reads the store (durable entries). */
int jz_ledger_statement(struct jz_ledger *l, const char *tenant, int64_t from_ms, int64_t to_ms,
                        json_t **out, struct jz_error *err);

#endif
