/* Job parameter schemas (the "params" array of a plugin description) and validation of a
 * user's parameters against them. Shared by jazarid (submit time) and jazari-worker. */
#ifndef JZ_COMMON_PARAMS_H
#define JZ_COMMON_PARAMS_H

#include <jansson.h>
#include <stddef.h>

#include <jazari/error.h>
#include <jazari/plugin.h>

#define JZ_PARAMS_MAX_COUNT 256          /* parameters in one job, and in one schema */
#define JZ_PARAMS_MAX_STRING (64 * 1024) /* bytes in one string value */
#define JZ_PARAMS_MAX_LIST 4096          /* elements in one list value */
#define JZ_PARAMS_MAX_NAME 64            /* bytes in a parameter name */

/* Validates `params` (a JSON object given by the user, or NULL for none; borrowed) against
 * `schema` (the "params" array of a plugin description; borrowed). On success writes a NEW
 * object into *normalized (caller decrefs): defaults applied, strings converted to the schema
 * type ("0.01" -> 0.01, "true"/"false" -> bool, "256,128" -> [256,128] for int_list; a single
 * string given for a string_list becomes a one-element list, never split), bounds, choices and
 * required checked, unknown names refused. On failure err->msg starts with "params.NAME: " and
 * *field (if non-NULL) receives a malloc'd "params.NAME" the caller frees; *normalized is not
 * written. A malformed schema is reported as "params: schema ..." with *field "params". */
int jz_params_validate(const json_t *schema, const json_t *params, json_t **normalized,
                       char **field, struct jz_error *err);

/* Checks a compiled-in descriptor's schema: names [A-Za-z_][A-Za-z0-9_]{0,63} and unique, a
 * known type, min <= max, choices only on string types, a default that itself validates, at most
 * JZ_PARAMS_MAX_COUNT entries. `specs` is borrowed. 0 or JZ_EINVAL with a message. */
int jz_params_specs_check(const struct jz_param_spec *specs, size_t n, struct jz_error *err);

/* Converts a compiled-in descriptor's schema to the JSON array form (new reference), or NULL
 * when the specs do not pass jz_params_specs_check (or on out of memory). `specs` is borrowed. */
json_t *jz_params_schema_to_json(const struct jz_param_spec *specs, size_t n);

/* The schema name of a type ("int_list"), or NULL for an unknown value. Static string. */
const char *jz_param_type_name(enum jz_param_type type);

#endif
