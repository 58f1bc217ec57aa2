/* Tenants in `jazari`: an admin's `admin tenant add|set|show|list|rm` (tenant objects: class,
 * home site, fair-share weight, GPU quotas, priority class) and a tenant-admin's `tenant show|
 * members|add-member|rm-member|new-token` (its own tenant's members). docs/tenants.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli.h"
#include "common/json.h"
#include "common/strutil.h"

#define TN_MAX_QUOTAS 256

static int tn_usage_error(const struct jz_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int tn_usage_error(const struct jz_cli *cli, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jz_cli_usage_error(cli, msg);
}

static void tn_print_line(const char *key, const char *value)
{
    char clean[1024];
    jz_cli_sanitize(value, clean, sizeof clean);
    printf("%-16s %s\n", key, clean);
}

static void tn_quotas_text(const json_t *q, char *buf, size_t len)
{
    const char *k;
    json_t *v;
    size_t used = 0;
    buf[0] = '\0';
    json_object_foreach((json_t *)q, k, v)
    {
        int n = snprintf(buf + used, len - used, "%s%s=%lld", used ? " " : "", k,
                         (long long)json_integer_value(v));
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    if (!json_object_size(q))
        snprintf(buf, len, "(none)");
}

/* The tenant of GET /v1/tenants/NAME or /v1/admin/tenants/NAME, with its members. */
static void tn_print_tenant(const json_t *t)
{
    char buf[4096];
    tn_print_line("name:", jz_json_str(t, "name", "?"));
    if (json_object_get(t, "class")) {
        tn_print_line("class:", jz_json_str(t, "class", ""));
        if (json_object_get(t, "home_site"))
            tn_print_line("home site:", jz_json_str(t, "home_site", ""));
        if (json_object_get(t, "weight")) {
            snprintf(buf, sizeof buf, "%g", jz_json_num(t, "weight", 0));
            tn_print_line("weight:", buf);
        }
        if (json_object_get(t, "max_gpus")) {
            long long m = (long long)jz_json_int(t, "max_gpus", 0);
            snprintf(buf, sizeof buf, m ? "%lld" : "no limit", m);
            tn_print_line("max gpus:", buf);
        }
        if (json_object_get(t, "site_quotas")) {
            tn_quotas_text(json_object_get(t, "site_quotas"), buf, sizeof buf);
            tn_print_line("site quotas:", buf);
        }
        if (json_object_get(t, "model_quotas")) {
            tn_quotas_text(json_object_get(t, "model_quotas"), buf, sizeof buf);
            tn_print_line("model quotas:", buf);
        }
        if (json_object_get(t, "priority_class"))
            tn_print_line("priority class:", jz_json_str(t, "priority_class", ""));
        snprintf(buf, sizeof buf, "%s by %s", jz_json_str(t, "updated", "?"),
                 jz_json_str(t, "updated_by", "?"));
        tn_print_line("updated:", buf);
    } else {
        tn_print_line("object:", "none (the configuration file's values apply)");
    }
    const json_t *members = json_object_get(t, "members");
    if (!members)
        return;
    size_t i;
    json_t *u;
    printf("members:\n");
    json_array_foreach((json_t *)members, i, u)
    {
        char line[512], clean[512];
        snprintf(line, sizeof line, "  %s (%s)", jz_json_str(u, "name", "?"),
                 jz_json_str(u, "role", "?"));
        jz_cli_sanitize(line, clean, sizeof clean);
        puts(clean);
    }
}

static void tn_print_members(const json_t *members)
{
    static const char *const hdr[] = {"NAME", "ROLE", "UNIX USER", "TOKENS", "CREATED"};
    struct jz_table *t = jz_table_new(5, hdr);
    if (!t)
        return;
    jz_table_align_right(t, 3);
    size_t i;
    json_t *u;
    json_array_foreach((json_t *)members, i, u)
    {
        char ntok[24], created[48];
        snprintf(ntok, sizeof ntok, "%lld", (long long)jz_json_int(u, "tokens", 0));
        jz_cli_time_local(jz_json_str(u, "created", NULL), created, sizeof created);
        const char *cells[] = {jz_json_str(u, "name", "?"), jz_json_str(u, "role", "?"),
                               jz_json_str(u, "unix_user", "-"), ntok, created};
        jz_table_add(t, cells);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
}

/* ---- admin tenant ------------------------------------------------------------------------ */

enum {
    TO_CLASS = 1,
    TO_SITE,
    TO_WEIGHT,
    TO_MAX_GPUS,
    TO_SITE_QUOTA,
    TO_MODEL_QUOTA,
    TO_PRIORITY_CLASS,
    TO_ROLE,
    TO_UNIX,
    TO_EXPIRES,
    TO_TENANT,
};

/* "admin tenant add|set NAME [--class C] [--site S] [--weight W] [--max-gpus N]
 * [--site-quota SITE=N]... [--model-quota MODEL=N]... [--priority-class C]". */
const struct jz_cli_optspec jz_cli_admin_tenant_opts[] = {
    {"class", 0, true, TO_CLASS},
    {"site", 0, true, TO_SITE},
    {"weight", 0, true, TO_WEIGHT},
    {"max-gpus", 0, true, TO_MAX_GPUS},
    {"site-quota", 0, true, TO_SITE_QUOTA},
    {"model-quota", 0, true, TO_MODEL_QUOTA},
    {"priority-class", 0, true, TO_PRIORITY_CLASS},
    {NULL, 0, false, 0},
};

/* "KEY=N" into obj[KEY] = N. */
static int tn_quota(json_t *obj, const char *val, const char *flag, struct jz_error *err)
{
    const char *eq = strrchr(val, '=');
    if (!eq || eq == val)
        return jz_error_set(err, JZ_EINVAL, "%s: expected NAME=GPUS", flag);
    if (json_object_size(obj) >= TN_MAX_QUOTAS)
        return jz_error_set(err, JZ_EINVAL, "%s: at most %d", flag, TN_MAX_QUOTAS);
    int64_t n;
    int rc = jz_cli_parse_int(eq + 1, 0, 10000000, flag, &n, err);
    if (rc)
        return rc;
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - val), val);
    json_object_set_new(obj, key, json_integer(n));
    return 0;
}

/* Builds the body of admin tenant add/set; *name the positional. */
int jz_cli_admin_tenant_build(struct jz_cli *cli, int argc, char **argv, const char **name,
                              json_t **body, struct jz_error *err)
{
    struct jz_cli_optstate st;
    json_t *b = json_object(), *sq = NULL, *mq = NULL;
    *name = NULL;
    jz_cli_opt_init(&st, argc, argv);
    int rc = 0;
    for (;;) {
        const char *val;
        int opt = jz_cli_opt_next(&st, jz_cli_admin_tenant_opts, &val, err);
        if (opt == JZ_CLI_OPT_END || opt == JZ_CLI_OPT_DASHDASH)
            break;
        int64_t n;
        switch (opt) {
        case JZ_CLI_OPT_ERROR:
            rc = err->code ? err->code : JZ_EINVAL;
            break;
        case JZ_CLI_OPT_POSITIONAL:
            if (*name)
                rc = jz_error_set(err, JZ_EINVAL, "one tenant at a time");
            else if (!jz_name_is_safe(val, 128))
                rc = jz_error_set(err, JZ_EINVAL, "tenant names are 1-128 of A-Z a-z 0-9 . _ -");
            else
                *name = val;
            break;
        case TO_CLASS:
            json_object_set_new(b, "class", json_string(val));
            break;
        case TO_SITE:
            json_object_set_new(b, "home_site", *val ? json_string(val) : json_null());
            break;
        case TO_WEIGHT: {
            char *end;
            double w = strtod(val, &end);
            if (!*val || *end || !(w > 0) || w > 1e6)
                rc = jz_error_set(err, JZ_EINVAL, "--weight: a number in (0, 1000000]");
            else
                json_object_set_new(b, "weight", json_real(w));
            break;
        }
        case TO_MAX_GPUS:
            if (!(rc = jz_cli_parse_int(val, 0, 10000000, "--max-gpus", &n, err)))
                json_object_set_new(b, "max_gpus", json_integer(n));
            break;
        case TO_SITE_QUOTA:
            if (!sq)
                sq = json_object();
            rc = tn_quota(sq, val, "--site-quota", err);
            break;
        case TO_MODEL_QUOTA:
            if (!mq)
                mq = json_object();
            rc = tn_quota(mq, val, "--model-quota", err);
            break;
        case TO_PRIORITY_CLASS:
            json_object_set_new(b, "priority_class", *val ? json_string(val) : json_null());
            break;
        default:
            jz_cli_common_option(cli, opt, val);
            break;
        }
        if (rc)
            break;
    }
    if (sq)
        json_object_set_new(b, "site_quotas", sq);
    if (mq)
        json_object_set_new(b, "model_quotas", mq);
    if (!rc && !cli->help && !*name)
        rc = jz_error_set(err, JZ_EINVAL, "missing tenant name");
    if (rc) {
        json_decref(b);
        return rc;
    }
    *body = b;
    return 0;
}

/* Positionals only (show, rm, list): at most max of them into pos. */
static int tn_positionals(struct jz_cli *cli, int argc, char **argv, const char **pos, int max,
                          int *n)
{
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    *n = 0;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, NULL, &val, &err);
        if (id == JZ_CLI_OPT_END || id == JZ_CLI_OPT_DASHDASH)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return tn_usage_error(cli, "%s", err.msg);
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (*n == max)
                return tn_usage_error(cli, "unexpected argument '%.64s'", val);
            if (!jz_name_is_safe(val, 128))
                return tn_usage_error(cli, "'%.64s': names are A-Z a-z 0-9 . _ -", val);
            pos[(*n)++] = val;
            continue;
        }
        jz_cli_common_option(cli, id, val);
    }
    return 0;
}

static int tn_print_answer(struct jz_cli *cli, struct jz_cli_response *r, bool tenant)
{
    if (cli->json)
        printf("%.*s\n", (int)r->len, r->body);
    else if (tenant)
        tn_print_tenant(r->json);
    jz_cli_response_clear(r);
    return 0;
}

static int admin_tenant_put(struct jz_cli *cli, int argc, char **argv, bool create)
{
    const char *name;
    json_t *body = NULL;
    struct jz_error err = {0};
    if (jz_cli_admin_tenant_build(cli, argc, argv, &name, &body, &err))
        return tn_usage_error(cli, "%s", err.msg);
    if (cli->help) {
        json_decref(body);
        return jz_cli_print_usage(cli);
    }
    if (create && !json_object_get(body, "class")) {
        json_decref(body);
        return tn_usage_error(cli, "missing --class (institute, university, startup, public or "
                                   "a class of the prices)");
    }
    if (!create && json_object_size(body) == 0) {
        json_decref(body);
        return tn_usage_error(cli, "nothing to change: give --class, --site, --weight, "
                                   "--max-gpus, --site-quota, --model-quota or --priority-class");
    }
    int rc = jz_cli_resolve(cli);
    if (rc) {
        json_decref(body);
        return rc;
    }
    char path[256] = "/v1/admin/tenants";
    if (create)
        json_object_set_new(body, "name", json_string(name));
    else
        snprintf(path, sizeof path, "/v1/admin/tenants/%s", name);
    struct jz_cli_response r;
    rc = jz_cli_request(cli, "POST", path, body, NULL, &r);
    json_decref(body);
    return rc ? rc : tn_print_answer(cli, &r, true);
}

static int admin_tenant_get(struct jz_cli *cli, int argc, char **argv, const char *verb)
{
    const char *pos[1];
    int n, rc;
    bool list = strcmp(verb, "list") == 0;
    if ((rc = tn_positionals(cli, argc, argv, pos, list ? 0 : 1, &n)))
        return rc;
    if (cli->help)
        return jz_cli_print_usage(cli);
    if (!list && n < 1)
        return tn_usage_error(cli, "missing tenant name");
    if ((rc = jz_cli_resolve(cli)))
        return rc;
    char path[256] = "/v1/admin/tenants";
    if (!list)
        snprintf(path, sizeof path, "/v1/admin/tenants/%s", pos[0]);
    struct jz_cli_response r;
    if ((rc = jz_cli_request(cli, strcmp(verb, "rm") == 0 ? "DELETE" : "GET", path, NULL, NULL,
                              &r)))
        return rc;
    if (cli->json || strcmp(verb, "show") == 0)
        return tn_print_answer(cli, &r, true);
    if (strcmp(verb, "rm") == 0) {
        fprintf(stderr, "Tenant %s removed.\n", pos[0]);
        jz_cli_response_clear(&r);
        return 0;
    }
    static const char *const hdr[] = {"NAME",  "CLASS", "SITE", "WEIGHT", "MAX GPUS",
                                      "PRIORITY CLASS"};
    struct jz_table *t = jz_table_new(6, hdr);
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r.json, "tenants"), i, x)
    {
        char w[32] = "-", m[32] = "-";
        if (json_object_get(x, "weight"))
            snprintf(w, sizeof w, "%g", jz_json_num(x, "weight", 0));
        if (json_object_get(x, "max_gpus"))
            snprintf(m, sizeof m, "%lld", (long long)jz_json_int(x, "max_gpus", 0));
        const char *cells[] = {jz_json_str(x, "name", "?"), jz_json_str(x, "class", "?"),
                               jz_json_str(x, "home_site", "-"), w, m,
                               jz_json_str(x, "priority_class", "-")};
        if (t)
            jz_table_add(t, cells);
    }
    if (t) {
        jz_table_print(t, stdout);
        jz_table_free(t);
    }
    jz_cli_response_clear(&r);
    return 0;
}

int jz_cli_admin_tenant(struct jz_cli *cli, int argc, char **argv)
{
    if (argc < 2)
        return tn_usage_error(cli, "expected 'admin tenant add|set|show|list|rm'");
    const char *verb = argv[1];
    if (strcmp(verb, "add") == 0 || strcmp(verb, "set") == 0)
        return admin_tenant_put(cli, argc - 1, argv + 1, strcmp(verb, "add") == 0);
    if (strcmp(verb, "show") == 0 || strcmp(verb, "list") == 0 || strcmp(verb, "rm") == 0)
        return admin_tenant_get(cli, argc - 1, argv + 1, verb);
    return tn_usage_error(cli, "expected 'admin tenant add|set|show|list|rm', not '%.64s'", verb);
}

/* ---- tenant (a tenant-admin's own) -------------------------------------------------------- */

const struct jz_cli_optspec jz_cli_tenant_member_opts[] = {
    {"role", 0, true, TO_ROLE},       {"unix-user", 0, true, TO_UNIX},
    {"expires", 0, true, TO_EXPIRES}, {"tenant", 0, true, TO_TENANT},
    {NULL, 0, false, 0},
};

/* The caller's own tenant (GET /v1/whoami) into buf. */
static int tn_own_tenant(struct jz_cli *cli, char *buf, size_t len)
{
    struct jz_cli_response r;
    int rc = jz_cli_request(cli, "GET", "/v1/whoami", NULL, NULL, &r);
    if (rc)
        return rc;
    snprintf(buf, len, "%s", jz_json_str(r.json, "tenant", ""));
    jz_cli_response_clear(&r);
    if (!jz_name_is_safe(buf, 128)) {
        jz_cli_errorf(cli, "the server's answer names no tenant");
        return JZ_CLI_EXIT_FAIL;
    }
    return 0;
}

int jz_cli_cmd_tenant(struct jz_cli *cli, int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return jz_cli_print_usage(cli);
    if (argc < 2)
        return tn_usage_error(cli, "expected 'tenant show|members|add-member|rm-member|"
                                   "new-token'");
    const char *verb = argv[1];
    bool show = strcmp(verb, "show") == 0, members = strcmp(verb, "members") == 0;
    bool add = strcmp(verb, "add-member") == 0, rm = strcmp(verb, "rm-member") == 0;
    bool tok = strcmp(verb, "new-token") == 0;
    if (!show && !members && !add && !rm && !tok)
        return tn_usage_error(cli, "unknown sub-command '%.64s'", verb);
    /* Parse: show/members take [NAME]; the member commands USER and --tenant. */
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    const char *pos = NULL, *vals[16] = {0};
    jz_cli_opt_init(&st, argc - 1, argv + 1);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, show || members ? NULL : jz_cli_tenant_member_opts, &val,
                                 &err);
        if (id == JZ_CLI_OPT_END || id == JZ_CLI_OPT_DASHDASH)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return tn_usage_error(cli, "%s", err.msg);
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (pos)
                return tn_usage_error(cli, "unexpected argument '%.64s'", val);
            if (!jz_name_is_safe(val, 128))
                return tn_usage_error(cli, "'%.64s': names are A-Z a-z 0-9 . _ -", val);
            pos = val;
        } else if (id > 0 && id < 16) {
            vals[id] = val;
        } else {
            jz_cli_common_option(cli, id, val);
        }
    }
    if (cli->help)
        return jz_cli_print_usage(cli);
    if ((add || rm || tok) && !pos)
        return tn_usage_error(cli, "missing user name");
    const char *role = vals[TO_ROLE] ? vals[TO_ROLE] : "user";
    if (add && strcmp(role, "user") != 0 && strcmp(role, "tenant-admin") != 0)
        return tn_usage_error(cli, "--role: expected 'user' or 'tenant-admin'");
    if (vals[TO_TENANT] && !jz_name_is_safe(vals[TO_TENANT], 128))
        return tn_usage_error(cli, "--tenant: names are A-Z a-z 0-9 . _ -");
    int rc = jz_cli_resolve(cli);
    if (rc)
        return rc;
    char tenant[160];
    const char *given = show || members ? pos : vals[TO_TENANT];
    if (given)
        snprintf(tenant, sizeof tenant, "%s", given);
    else if ((rc = tn_own_tenant(cli, tenant, sizeof tenant)))
        return rc;
    char path[512];
    struct jz_cli_response r;
    if (show || members) {
        snprintf(path, sizeof path, "/v1/tenants/%s%s", tenant, members ? "/members" : "");
        if ((rc = jz_cli_request(cli, "GET", path, NULL, NULL, &r)))
            return rc;
        if (show || cli->json)
            return tn_print_answer(cli, &r, true);
        tn_print_members(json_object_get(r.json, "members"));
        jz_cli_response_clear(&r);
        return 0;
    }
    json_t *body = NULL;
    const char *method = "POST";
    if (add) {
        snprintf(path, sizeof path, "/v1/tenants/%s/members", tenant);
        body = json_pack("{s:s, s:s}", "name", pos, "role", role);
        if (vals[TO_UNIX] && *vals[TO_UNIX])
            json_object_set_new(body, "unix_user", json_string(vals[TO_UNIX]));
    } else if (rm) {
        snprintf(path, sizeof path, "/v1/tenants/%s/members/%s", tenant, pos);
        method = "DELETE";
    } else {
        snprintf(path, sizeof path, "/v1/tenants/%s/members/%s/token", tenant, pos);
        body = json_object();
    }
    if (body && vals[TO_EXPIRES])
        json_object_set_new(body, "expires", json_string(vals[TO_EXPIRES]));
    rc = jz_cli_request(cli, method, path, body, NULL, &r);
    json_decref(body);
    if (rc)
        return rc;
    if (cli->json) {
        printf("%.*s\n", (int)r.len, r.body);
    } else if (rm) {
        fprintf(stderr, "%s removed from tenant %s (%lld token(s) revoked).\n", pos, tenant,
                (long long)jz_json_int(r.json, "tokens_revoked", 0));
    } else {
        /* The token alone on stdout: it is shown only this once. */
        char clean[256];
        jz_cli_sanitize(jz_json_str(r.json, "token", ""), clean, sizeof clean);
        puts(clean);
        fprintf(stderr, "Token %s for %s%s.\n",
                jz_json_str(r.json, "token_id", jz_json_str(r.json, "id", "?")), pos,
                add ? "" : "; its other tokens are revoked");
    }
    jz_cli_response_clear(&r);
    return 0;
}
