/* Booked compute slots from `jazari`: reserve (book GPUs for a window), reservations (list
 * them), unreserve (cancel one, with what was used and charged). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli.h"
#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"

/* Resolves the URL and token, then one request (jz_cli_request). */
static int rv_request(struct jz_cli *cli, const char *method, const char *path, const json_t *body,
                      struct jz_cli_response *r)
{
    int rc = jz_cli_resolve(cli);
    return rc ? rc : jz_cli_request(cli, method, path, body, NULL, r);
}

/* ---- reserve ------------------------------------------------------------------------------ */

enum { RV_GPUS = 1, RV_MODEL, RV_SITE, RV_START, RV_END, RV_DURATION, RV_TENANT };
/* -g is the GPU count, as in submit. */
const struct jz_cli_optspec jz_cli_reserve_opts[] = {
    {"gpus", 'g', true, RV_GPUS},   {"model", 0, true, RV_MODEL},
    {"site", 0, true, RV_SITE},     {"start", 0, true, RV_START},
    {"end", 0, true, RV_END},       {"duration", 0, true, RV_DURATION},
    {"tenant", 0, true, RV_TENANT}, {NULL, 0, false, 0},
};

int jz_cli_reserve_time(const char *s, int64_t now_ms, int64_t *epoch_s, struct jz_error *err)
{
    int64_t secs;
    if (s[0] == '+') {
        if (jz_duration_parse(s + 1, &secs, NULL) != 0)
            return jz_error_set(err, JZ_EINVAL, "'%.64s': expected +DURATION (+1h, +30m)", s);
        *epoch_s = now_ms / 1000 + secs;
        return 0;
    }
    /* A bare duration would read as a time ago (history's --since): say so instead. */
    if (jz_duration_parse(s, &secs, NULL) == 0 || jz_cli_when_parse(s, now_ms, epoch_s, NULL) != 0)
        return jz_error_set(err, JZ_EINVAL,
                            "'%.64s': expected now, +DURATION (+1h) or an ISO 8601 time with "
                            "its zone (2026-12-01T09:00:00+01:00)",
                            s);
    return 0;
}

int jz_cli_reserve_build(struct jz_cli *cli, int argc, char **argv, int64_t now_ms, json_t **body,
                         struct jz_error *err)
{
    struct jz_cli_optstate st;
    json_t *b = json_object();
    int64_t start = -1, end = -1, dur = -1, v;
    jz_cli_opt_init(&st, argc, argv);
    int rc = 0;
    for (;;) {
        const char *val;
        int opt = jz_cli_opt_next(&st, jz_cli_reserve_opts, &val, err);
        if (opt == JZ_CLI_OPT_END || opt == JZ_CLI_OPT_DASHDASH)
            break;
        switch (opt) {
        case JZ_CLI_OPT_ERROR:
            rc = err->code ? err->code : JZ_EINVAL;
            break;
        case JZ_CLI_OPT_POSITIONAL:
            rc = jz_error_set(err, JZ_EINVAL, "unexpected argument '%.64s'", val);
            break;
        case RV_GPUS:
            if (!(rc = jz_cli_parse_int(val, 1, 4096, "--gpus", &v, err)))
                json_object_set_new(b, "gpus", json_integer(v));
            break;
        case RV_MODEL:
            json_object_set_new(b, "model", json_string(val));
            break;
        case RV_SITE:
            json_object_set_new(b, "site", json_string(val));
            break;
        case RV_TENANT:
            json_object_set_new(b, "tenant", json_string(val));
            break;
        case RV_START:
            rc = jz_cli_reserve_time(val, now_ms, &start, err);
            break;
        case RV_END:
            rc = jz_cli_reserve_time(val, now_ms, &end, err);
            break;
        case RV_DURATION:
            if (jz_duration_parse(val, &dur, NULL) != 0 || dur <= 0)
                rc = jz_error_set(err, JZ_EINVAL, "--duration: expected 2h, 90m, 1d, ...");
            break;
        default:
            jz_cli_common_option(cli, opt, val);
            break;
        }
        if (rc) {
            json_decref(b);
            return rc;
        }
    }
    if (cli->help) {
        json_decref(b);
        *body = NULL;
        return 0;
    }
    if (!json_object_get(b, "gpus"))
        rc = jz_error_set(err, JZ_EINVAL, "--gpus N is required");
    else if (start < 0)
        rc = jz_error_set(err, JZ_EINVAL, "--start T is required (now, +1h, or an ISO time)");
    else if ((end < 0) == (dur < 0))
        rc = jz_error_set(err, JZ_EINVAL, "give one of --end T and --duration D");
    if (rc) {
        json_decref(b);
        return rc;
    }
    if (end < 0)
        end = start + dur;
    char ts[40];
    jz_time_format_iso(start * 1000, ts, sizeof ts);
    json_object_set_new(b, "start", json_string(ts));
    jz_time_format_iso(end * 1000, ts, sizeof ts);
    json_object_set_new(b, "end", json_string(ts));
    *body = b;
    return 0;
}

/* A server string made safe for the terminal (jz_cli_sanitize), into buf. */
static const char *clean(const json_t *o, const char *key, char *buf, size_t len)
{
    jz_cli_sanitize(jz_json_str(o, key, ""), buf, len);
    return buf;
}

static void print_booking(const json_t *o)
{
    const json_t *nodes = json_object_get(o, "nodes"), *n;
    size_t i;
    char name[160], model[160], site[160], tenant[160], start[64], end[64], state[32], node[300];
    printf("reservation %lld (%s): %lld GPUs%s%s%s%s for %s, %s .. %s, %.2f credits [%s]\n",
           (long long)jz_json_int(o, "id", 0), clean(o, "name", name, sizeof name),
           (long long)jz_json_int(o, "gpus", 0), jz_json_str(o, "model", NULL) ? " of " : "",
           clean(o, "model", model, sizeof model), jz_json_str(o, "site", NULL) ? " at " : "",
           clean(o, "site", site, sizeof site), clean(o, "tenant", tenant, sizeof tenant),
           clean(o, "start", start, sizeof start), clean(o, "end", end, sizeof end),
           json_number_value(json_object_get(o, "price")), clean(o, "state", state, sizeof state));
    json_array_foreach(nodes, i, n) printf("  %s: %lld GPUs\n", clean(n, "node", node, sizeof node),
                                           (long long)jz_json_int(n, "gpus", 0));
}

int jz_cli_cmd_reserve(struct jz_cli *cli, int argc, char **argv)
{
    json_t *body = NULL;
    struct jz_error err = {0};
    if (jz_cli_reserve_build(cli, argc, argv, jz_time_now_ms(), &body, &err))
        return jz_cli_usage_error(cli, err.msg);
    if (cli->help)
        return jz_cli_print_usage(cli);
    struct jz_cli_response r;
    int rc = rv_request(cli, "POST", "/v1/reservations", body, &r);
    json_decref(body);
    if (rc)
        return rc;
    if (cli->json)
        printf("%.*s\n", (int)r.len, r.body);
    else
        print_booking(r.json);
    jz_cli_response_clear(&r);
    return JZ_CLI_EXIT_OK;
}

/* ---- reservations ------------------------------------------------------------------------- */

enum { RL_TENANT = 1, RL_ALL };
const struct jz_cli_optspec jz_cli_reservations_opts[] = {
    {"tenant", 0, true, RL_TENANT}, {"all", 'a', false, RL_ALL}, {NULL, 0, false, 0}};

int jz_cli_cmd_reservations(struct jz_cli *cli, int argc, char **argv)
{
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    const char *tenant = NULL;
    bool all = false;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int opt = jz_cli_opt_next(&st, jz_cli_reservations_opts, &val, &err);
        if (opt == JZ_CLI_OPT_END || opt == JZ_CLI_OPT_DASHDASH)
            break;
        if (opt == JZ_CLI_OPT_ERROR)
            return jz_cli_usage_error(cli, err.msg);
        if (opt == JZ_CLI_OPT_POSITIONAL)
            return jz_cli_usage_error(cli, "unexpected argument");
        if (opt == RL_TENANT)
            tenant = val;
        else if (opt == RL_ALL)
            all = true;
        else
            jz_cli_common_option(cli, opt, val);
    }
    if (cli->help)
        return jz_cli_print_usage(cli);
    char path[300];
    /* Tenant names are [A-Za-z0-9._-]: nothing to escape in a query. */
    if (tenant && !jz_name_is_safe(tenant, 128))
        return jz_cli_usage_error(cli, "--tenant: not a tenant name");
    snprintf(path, sizeof path, "/v1/reservations%s%s", tenant ? "?tenant=" : "",
             tenant ? tenant : "");
    struct jz_cli_response r;
    int rc = rv_request(cli, "GET", path, NULL, &r);
    if (rc)
        return rc;
    if (cli->json) {
        printf("%.*s\n", (int)r.len, r.body);
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_OK;
    }
    /* Through jz_table: names, models and sites come from admins and tenant-admins, and are
     * sanitised there like every other server string. */
    static const char *const headers[] = {"ID", "TENANT", "GPUS", "MODEL", "SITE",
                                          "START", "END", "PRICE", "STATE"};
    struct jz_table *t = jz_table_new(9, headers);
    const json_t *list = json_object_get(r.json, "reservations"), *o;
    size_t i;
    json_array_foreach(list, i, o)
    {
        const char *state = jz_json_str(o, "state", "");
        /* Ended and cancelled bookings only with --all. */
        if (!t || (!all && (strcmp(state, "ended") == 0 || strcmp(state, "cancelled") == 0)))
            continue;
        char id[24], gpus[24], price[32];
        snprintf(id, sizeof id, "%lld", (long long)jz_json_int(o, "id", 0));
        snprintf(gpus, sizeof gpus, "%lld", (long long)jz_json_int(o, "gpus", 0));
        snprintf(price, sizeof price, "%.2f", json_number_value(json_object_get(o, "price")));
        const char *cells[] = {id, jz_json_str(o, "tenant", ""), gpus,
                               jz_json_str(o, "model", NULL), jz_json_str(o, "site", NULL),
                               jz_json_str(o, "start", ""), jz_json_str(o, "end", ""), price,
                               state};
        if (jz_table_add(t, cells) != 0) {
            jz_table_free(t);
            t = NULL;
        }
    }
    jz_cli_response_clear(&r);
    if (!t) {
        jz_cli_errorf(cli, "out of memory");
        return JZ_CLI_EXIT_FAIL;
    }
    jz_table_align_right(t, 2);
    jz_table_align_right(t, 7);
    jz_table_print(t, stdout);
    jz_table_free(t);
    return JZ_CLI_EXIT_OK;
}

/* ---- unreserve ---------------------------------------------------------------------------- */

int jz_cli_cmd_unreserve(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[1];
    int n, prc;
    int64_t id = 0;
    struct jz_error err = {0};
    if ((prc = jz_cli_parse_simple(cli, argc, argv, pos, 1, 1, &n)))
        return prc;
    if (cli->help)
        return jz_cli_print_usage(cli);
    if (jz_cli_parse_int(pos[0], 1, INT64_MAX, "reservation id", &id, &err))
        return jz_cli_usage_error(cli, err.msg);
    char path[64];
    snprintf(path, sizeof path, "/v1/reservations/%lld", (long long)id);
    struct jz_cli_response r;
    int rc = rv_request(cli, "DELETE", path, NULL, &r);
    if (rc)
        return rc;
    if (cli->json) {
        printf("%.*s\n", (int)r.len, r.body);
    } else {
        const json_t *rep = json_object_get(r.json, "report");
        printf("reservation %lld cancelled: booked %.2f GPU-hours, paid %.2f, used %.2f, "
               "unused %.2f; charged %.2f credits, released %.2f\n",
               (long long)id, json_number_value(json_object_get(rep, "booked_gpu_hours")),
               json_number_value(json_object_get(rep, "paid_gpu_hours")),
               json_number_value(json_object_get(rep, "used_gpu_hours")),
               json_number_value(json_object_get(rep, "unused_gpu_hours")),
               json_number_value(json_object_get(rep, "charged")),
               json_number_value(json_object_get(rep, "released")));
    }
    jz_cli_response_clear(&r);
    return JZ_CLI_EXIT_OK;
}
