/* Prices of compute (prices.h): checked when the configuration is read, looked up from it. */
#include "server/prices.h"

#include <math.h>
#include <string.h>

#include "common/strutil.h"
#include "scheduler/place.h"

static const char *const builtin_classes[] = {"institute", "university", "startup", "public",
                                              NULL};

static bool price_ok(const json_t *v, double lo)
{
    return json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) >= lo &&
           json_number_value(v) <= JZ_PRICES_MAX_PER_GPU_HOUR;
}

static int check_map(const json_t *map, const char *name, struct jz_error *err)
{
    if (!map)
        return 0;
    if (!json_is_object(map))
        return jz_error_set(err, JZ_EINVAL, "prices.%s: expected an object", name);
    if (json_object_size(map) > JZ_PRICES_MAX_ENTRIES)
        return jz_error_set(err, JZ_ELIMIT, "prices.%s: at most %d entries", name,
                            JZ_PRICES_MAX_ENTRIES);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)map, k, v) {
        if (!jz_name_is_safe(k, 64) && !(strcmp(name, "models") == 0 && *k && strlen(k) <= 64))
            return jz_error_set(err, JZ_EINVAL, "prices.%s: '%.64s' is not a name", name, k);
        if (!price_ok(v, 0))
            return jz_error_set(err, JZ_EINVAL, "prices.%s.%.64s: expected a number from 0 to %g",
                                name, k, JZ_PRICES_MAX_PER_GPU_HOUR);
    }
    return 0;
}

int jz_prices_check(const json_t *file, struct jz_error *err)
{
    const json_t *p = json_object_get(file, "prices");
    if (!p || json_is_null(p))
        return 0;
    if (!json_is_object(p))
        return jz_error_set(err, JZ_EINVAL, "prices: expected an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)p, k, v) {
        if (strcmp(k, "default") != 0 && strcmp(k, "models") != 0 && strcmp(k, "classes") != 0)
            return jz_error_set(err, JZ_EINVAL,
                                "prices.%.64s: unknown key (default, models, classes)", k);
    }
    const json_t *d = json_object_get(p, "default");
    if (d && !price_ok(d, 0))
        return jz_error_set(err, JZ_EINVAL, "prices.default: expected a number from 0 to %g",
                            JZ_PRICES_MAX_PER_GPU_HOUR);
    int rc = check_map(json_object_get(p, "models"), "models", err);
    return rc ? rc : check_map(json_object_get(p, "classes"), "classes", err);
}

static const json_t *prices(const struct jz_server *srv)
{
    return srv ? json_object_get(srv->config, "prices") : NULL;
}

bool jz_prices_class_known(const struct jz_server *srv, const char *cls)
{
    if (!cls)
        return false;
    for (size_t i = 0; builtin_classes[i]; i++)
        if (strcmp(cls, builtin_classes[i]) == 0)
            return true;
    return json_object_get(json_object_get(prices(srv), "classes"), cls) != NULL;
}

double jz_prices_per_gpu_hour(const struct jz_server *srv, const char *model,
                              const char *tenant_class)
{
    const json_t *p = prices(srv);
    double price = json_is_number(json_object_get(p, "default"))
                       ? json_number_value(json_object_get(p, "default"))
                       : 1.0;
    if (model && *model) {
        size_t best = 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)json_object_get(p, "models"), k, v) {
            if (strlen(k) > best && jz_place_model_matches(model, k)) {
                best = strlen(k);
                price = json_number_value(v);
            }
        }
    }
    const json_t *mult = tenant_class ? json_object_get(json_object_get(p, "classes"),
                                                        tenant_class)
                                      : NULL;
    if (json_is_number(mult))
        price *= json_number_value(mult);
    return price;
}

json_t *jz_prices_json(const struct jz_server *srv)
{
    const json_t *p = prices(srv);
    json_t *classes = json_array();
    for (size_t i = 0; builtin_classes[i]; i++)
        json_array_append_new(classes, json_string(builtin_classes[i]));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(p, "classes"), k, v) {
        bool builtin = false;
        for (size_t i = 0; builtin_classes[i]; i++)
            builtin |= strcmp(k, builtin_classes[i]) == 0;
        if (!builtin)
            json_array_append_new(classes, json_string(k));
    }
    json_t *models = json_object_get(p, "models"), *mult = json_object_get(p, "classes");
    return json_pack("{s:f, s:o, s:o, s:o, s:s}", "default_per_gpu_hour",
                     json_is_number(json_object_get(p, "default"))
                         ? json_number_value(json_object_get(p, "default"))
                         : 1.0,
                     "models", models ? json_deep_copy(models) : json_object(),
                     "class_multipliers", mult ? json_deep_copy(mult) : json_object(),
                     "tenant_classes", classes, "unit",
                     "credits per GPU-hour");
}
