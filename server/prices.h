/* Prices of compute, from the configuration file's "prices" object (docs/billing.md):
 *
 *   {"prices": {"default": 1.0,                        credits per GPU-hour of any model
 *               "models": {"A100": 3.0, "T4": 0.5},    by GPU model (a case-insensitive
 *                                                      substring of the model's name; the
 *                                                      longest match wins)
 *               "classes": {"startup": 1.0, "institute": 0.6}}}   a multiplier per tenant class
 *
 * Without the object every GPU-hour costs 1 credit, so credit reads as GPU-hours. A CPU-only
 * job is priced as one GPU of no model. Tenant classes are the four built-ins (institute,
 * university, startup, public) and every key of "classes". Read from srv->config at each call,
 * so a reload applies to what is priced from then on (holds already placed keep their
 * amount). */
#ifndef JZ_PRICES_H
#define JZ_PRICES_H

#include <jansson.h>
#include <stdbool.h>

#include <jazari/error.h>

#include "server/server.h"

#define JZ_PRICES_MAX_ENTRIES 256     /* models, and classes */
#define JZ_PRICES_MAX_PER_GPU_HOUR 1e6

/* Checks the "prices" object of a configuration file (file: the whole file, borrowed). */
int jz_prices_check(const json_t *file, struct jz_error *err);
bool jz_prices_class_known(const struct jz_server *srv, const char *tenant_class);
/* Credits per GPU-hour for a GPU model (NULL or "": any) and a tenant class (NULL: none). */
double jz_prices_per_gpu_hour(const struct jz_server *srv, const char *model,
                              const char *tenant_class);
/* The price list as GET /v1/prices shows it (new reference). */
json_t *jz_prices_json(const struct jz_server *srv);

#endif
