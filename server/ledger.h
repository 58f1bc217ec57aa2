/* Compute-credit accounting: a ledger of GPU-seconds granted to tenants and charged by their
 * jobs. Entries are only ever appended (a correction is another grant). A tenant that has been
 * granted credit is *metered*: when its balance is used up its waiting jobs wait with the reason
 * "credits" until an admin grants more. Tenants never granted anything are not metered. */
#ifndef JZ_SERVER_LEDGER_H
#define JZ_SERVER_LEDGER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/server.h"

#define JZ_LEDGER_MAX_GRANT_HOURS 1e6 /* one grant, in GPU-hours (either sign) */

/* Reads the ledger from the store and tells the scheduler which tenants are out of credit. */
int jz_ledger_open(struct jz_server *srv, struct jz_ledger **out, struct jz_error *err);
void jz_ledger_close(struct jz_ledger *l);

/* Records a job's use of GPUs (gpu_seconds > 0) against its tenant. */
void jz_ledger_charge(struct jz_ledger *l, const char *tenant, const char *plugin, int64_t job_id,
                      double gpu_seconds);
/* Grants (or, negative, takes back) credit. JZ_EINVAL for a zero or out-of-bounds amount. */
int jz_ledger_grant(struct jz_ledger *l, const char *tenant, double gpu_hours, const char *note,
                    struct jz_error *err);
/* {"tenants": [{"tenant", "metered", "granted_gpu_hours", "used_gpu_hours",
 *  "balance_gpu_hours", "jobs", "used_gpu_hours_by_plugin": {...}}]} for one tenant or all
 * (tenant NULL). New reference. */
json_t *jz_ledger_usage_json(struct jz_ledger *l, const char *tenant);

#endif
