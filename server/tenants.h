/* Tenants as objects (docs/tenants.md): who they are (class, home site) and the scheduler's
 * policy for them (fair-share weight, GPU quotas overall, per site and per GPU model, priority
 * class), created and changed over the API and stored as store objects "tenant" NAME.
 *
 * The configuration file's "scheduler"."tenants" still applies; an object overrides the file's
 * value of each field it sets, at start, at every change, and after every reload (which replaces
 * the scheduler's tenants from the file: jz_tenants_apply_all). Runs on jazarid's event-loop
 * thread only; changes are queued into the store's current batch. */
#ifndef JZ_SERVER_TENANTS_H
#define JZ_SERVER_TENANTS_H

#include <jansson.h>
#include <stdbool.h>

#include "scheduler/sched.h"
#include "server/server.h"

#define JZ_TENANT_NAME_MAX (JZ_SCHED_NAME_LEN - 1) /* the scheduler's limit on tenant names */
#define JZ_TENANT_MAX_QUOTAS 256                    /* site quotas; model quotas */
#define JZ_TENANT_MAX_WEIGHT 1e6
#define JZ_TENANT_MAX_GPUS 10000000 /* a quota's largest value */
#define JZ_TENANT_MAX_COUNT JZ_SCHED_MAX_TENANTS

struct jz_tenants;

/* Loads the tenant objects and applies them to srv->sched (which must be open). A record that
 * no longer validates is logged and left out of the scheduler (it stays stored). */
int jz_tenants_open(struct jz_server *srv, struct jz_tenants **out, struct jz_error *err);
void jz_tenants_close(struct jz_tenants *t);

/* Applies every object to the scheduler again, over the file's values (srv->config): after a
 * reload. Failures (a priority class the new file removed) are logged; that tenant keeps the
 * file's values for the fields that failed to apply. */
void jz_tenants_apply_all(struct jz_tenants *t);

/* Whether a tenant object named name exists. */
bool jz_tenants_exists(const struct jz_tenants *t, const char *name);
/* A tenant's class ("startup", ...), or NULL when it has no object. Owned by the module, valid
 * until the next change of that tenant. */
const char *jz_tenants_class(const struct jz_tenants *t, const char *name);

/* One tenant as the API shows it (new reference), or NULL when there is none: {name, class,
 * home_site?, weight?, max_gpus?, site_quotas?, model_quotas?, priority_class?, created,
 * created_by, updated, updated_by}. */
json_t *jz_tenants_json(const struct jz_tenants *t, const char *name);
/* Every tenant, by name (new reference). */
json_t *jz_tenants_list_json(const struct jz_tenants *t);

/* Creates a tenant (create: JZ_EEXIST when it exists) or changes one (JZ_ENOENT when it does
 * not) from body (borrowed): the fields above but the times; on a change, a field given null
 * is cleared (the file's value applies again) and fields not given keep their value. by is who
 * does it. Validated whole and applied to the scheduler before it is stored: a refused call
 * changes nothing. Errors start with the field ("weight: ..."). */
int jz_tenants_put(struct jz_tenants *t, const char *name, const json_t *body, bool create,
                   const char *by, struct jz_error *err);
/* Deletes a tenant object (the file's values apply again). JZ_ENOENT. The caller checks that it
 * has no members and no jobs. */
int jz_tenants_remove(struct jz_tenants *t, const char *name, struct jz_error *err);

#endif
