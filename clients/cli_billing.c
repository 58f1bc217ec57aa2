/* Statements and usage reports (docs/billing.md): `jazari statement` and `jazari report
 * usage`, each a GET with its period, shown as a table or passed through as JSON, CSV or HTML. */
#define _GNU_SOURCE /* strptime, timegm (through cli_workflow's jz_cli_when_parse) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli.h"
#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"

/* GET path; anything but a 2xx is reported in one line. raw: the body is CSV or HTML. */
static int bill_get(struct jz_cli *cli, const char *path, bool raw, struct jz_cli_response *r)
{
    struct jz_error err = {0};
    int rc = jz_cli_resolve(cli);
    if (rc || !raw)
        return rc ? rc : jz_cli_request(cli, "GET", path, NULL, NULL, r);
    if (jz_cli_http(cli, "GET", path, NULL, r, &err) != 0) {
        jz_cli_errorf(cli, "%s", err.msg);
        return JZ_CLI_EXIT_FAIL;
    }
    if (r->status < 200 || r->status >= 300) {
        char msg[640];
        jz_cli_server_error(r->status, r->body, r->len, msg, sizeof msg);
        jz_cli_errorf(cli, "%s", msg);
        jz_cli_response_clear(r);
        return JZ_CLI_EXIT_FAIL;
    }
    return 0;
}

/* Options both commands take. */
enum { B_TENANT = 1, B_MONTH, B_SINCE, B_UNTIL, B_FORMAT, B_OUTPUT, B_BY };
const struct jz_cli_optspec jz_cli_statement_opts[] = {
    {"tenant", 0, true, B_TENANT}, {"month", 0, true, B_MONTH},   {"since", 'S', true, B_SINCE},
    {"until", 'E', true, B_UNTIL}, {"format", 0, true, B_FORMAT}, {"output", 'o', true, B_OUTPUT},
    {NULL, 0, false, 0},
};
const struct jz_cli_optspec jz_cli_report_opts[] = {
    {"by", 0, true, B_BY},         {"tenant", 0, true, B_TENANT}, {"month", 0, true, B_MONTH},
    {"since", 'S', true, B_SINCE}, {"until", 'E', true, B_UNTIL}, {"format", 0, true, B_FORMAT},
    {NULL, 0, false, 0},
};

struct bill_args {
    const char *tenant, *month, *format, *output, *by;
    int64_t since, until; /* epoch seconds, 0: not given */
};

static int bill_parse(struct jz_cli *cli, int argc, char **argv,
                      const struct jz_cli_optspec *specs, struct bill_args *a,
                      struct jz_error *err)
{
    struct jz_cli_optstate st;
    memset(a, 0, sizeof *a);
    int64_t now = jz_time_now_ms();
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, specs, &val, err);
        int rc = 0;
        if (id == JZ_CLI_OPT_END)
            break;
        switch (id) {
        case JZ_CLI_OPT_ERROR:
            return err->code ? err->code : JZ_EINVAL;
        case JZ_CLI_OPT_POSITIONAL:
        case JZ_CLI_OPT_DASHDASH:
            return jz_error_set(err, JZ_EINVAL, "unexpected argument");
        case B_TENANT:
            if (!jz_name_is_safe(val, 128))
                return jz_error_set(err, JZ_EINVAL, "--tenant: 1-128 of A-Z a-z 0-9 . _ -");
            a->tenant = val;
            break;
        case B_MONTH:
            if (strlen(val) != 7 || val[4] != '-')
                return jz_error_set(err, JZ_EINVAL, "--month: YYYY-MM");
            a->month = val;
            break;
        case B_SINCE:
            rc = jz_cli_when_parse(val, now, &a->since, err);
            break;
        case B_UNTIL:
            rc = jz_cli_when_parse(val, now, &a->until, err);
            break;
        case B_FORMAT:
            a->format = val;
            break;
        case B_OUTPUT:
            a->output = val;
            break;
        case B_BY:
            a->by = val;
            break;
        default:
            jz_cli_common_option(cli, id, val);
            break;
        }
        if (rc)
            return rc;
    }
    if (a->month && (a->since || a->until))
        return jz_error_set(err, JZ_EINVAL, "give --month, or --since and --until");
    return 0;
}

/* Adds the period to a request path; false when the path would be too long. */
static bool add_period(char *path, size_t len, const struct bill_args *a)
{
    char since[32], until[32];
    snprintf(since, sizeof since, "%lld", (long long)a->since);
    snprintf(until, sizeof until, "%lld", (long long)a->until);
    return (!a->month || jz_cli_query_add(path, len, "month", a->month, false)) &&
           (!a->since || jz_cli_query_add(path, len, "since", since, false)) &&
           (!a->until || jz_cli_query_add(path, len, "until", until, false));
}

/* Writes data to path (through a temporary file beside it) or standard output ("-" or NULL). */
static int write_out(const struct jz_cli *cli, const char *path, const char *data, size_t len)
{
    if (!path || strcmp(path, "-") == 0) {
        fwrite(data, 1, len, stdout);
        return 0;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.jazari-tmp", path);
    FILE *f = fopen(tmp, "wx");
    if (!f) {
        jz_cli_errorf(cli, "cannot write %s: %s", tmp, strerror(errno));
        return JZ_CLI_EXIT_FAIL;
    }
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        jz_cli_errorf(cli, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        return JZ_CLI_EXIT_FAIL;
    }
    return 0;
}

/* The user's own tenant, for a statement without --tenant. */
static int own_tenant(struct jz_cli *cli, char *buf, size_t len)
{
    struct jz_cli_response r;
    int rc = bill_get(cli, "/v1/whoami", false, &r);
    if (rc)
        return rc;
    snprintf(buf, len, "%s", jz_json_str(r.json, "tenant", ""));
    jz_cli_response_clear(&r);
    return 0;
}

static void statement_table(const json_t *st)
{
    printf("Statement of %s, %s to %s (credits)\n", jz_json_str(st, "tenant", "?"),
           jz_json_str(st, "from", "?"), jz_json_str(st, "to", "?"));
    printf("Opening balance %.2f\n", jz_json_num(st, "opening_balance", 0));
    static const char *const hdr[] = {"TIME", "KIND", "AMOUNT", "REF", "BY", "NOTE"};
    struct jz_table *t = jz_table_new(6, hdr);
    if (!t)
        return;
    jz_table_align_right(t, 2);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(st, "entries"), i, e) {
        char when[64], amount[32];
        jz_cli_time_local(jz_json_str(e, "time", NULL), when, sizeof when);
        snprintf(amount, sizeof amount, "%.4f", jz_json_num(e, "amount", 0));
        const char *cells[] = {when, jz_json_str(e, "kind", "?"), amount,
                               jz_json_str(e, "ref", "-"), jz_json_str(e, "who", "-"),
                               jz_json_str(e, "note", "-")};
        jz_table_add(t, cells);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(st, "totals"), k, v)
        printf("Total %s: %.4f\n", k, json_number_value(v));
    printf("Closing balance %.2f, held %.2f\n", jz_json_num(st, "closing_balance", 0),
           jz_json_num(st, "closing_held", 0));
}

int jz_cli_cmd_statement(struct jz_cli *cli, int argc, char **argv)
{
    struct bill_args a;
    struct jz_error err = {0};
    if (bill_parse(cli, argc, argv, jz_cli_statement_opts, &a, &err))
        return jz_cli_usage_error(cli, err.msg);
    if (cli->help)
        return jz_cli_print_usage(cli);
    const char *fmt = a.format ? a.format : cli->json ? "json" : "table";
    if (strcmp(fmt, "table") != 0 && strcmp(fmt, "json") != 0 && strcmp(fmt, "csv") != 0 &&
        strcmp(fmt, "html") != 0)
        return jz_cli_usage_error(cli, "--format: table, json, csv or html");
    char tenant[160];
    int rc = a.tenant ? (snprintf(tenant, sizeof tenant, "%s", a.tenant), 0)
                      : own_tenant(cli, tenant, sizeof tenant);
    if (rc)
        return rc;
    if (!jz_name_is_safe(tenant, 128))
        return jz_cli_usage_error(cli, "--tenant: give the tenant");
    char path[1024];
    snprintf(path, sizeof path, "/v1/tenants/%s/statement", tenant);
    bool raw = strcmp(fmt, "csv") == 0 || strcmp(fmt, "html") == 0;
    if (!add_period(path, sizeof path, &a) ||
        (raw && !jz_cli_query_add(path, sizeof path, "format", fmt, false)))
        return jz_cli_usage_error(cli, "the request is too long");
    struct jz_cli_response r;
    if ((rc = bill_get(cli, path, raw, &r)))
        return rc;
    if (raw || strcmp(fmt, "json") == 0) {
        rc = write_out(cli, a.output, r.body, r.len);
    } else if (a.output) {
        rc = jz_cli_usage_error(cli, "-o: give --format json, csv or html");
    } else {
        statement_table(r.json);
    }
    jz_cli_response_clear(&r);
    return rc;
}

int jz_cli_cmd_report(struct jz_cli *cli, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "usage") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
            return jz_cli_print_usage(cli);
        return jz_cli_usage_error(cli, "expected 'report usage'");
    }
    struct bill_args a;
    struct jz_error err = {0};
    if (bill_parse(cli, argc - 1, argv + 1, jz_cli_report_opts, &a, &err))
        return jz_cli_usage_error(cli, err.msg);
    if (cli->help)
        return jz_cli_print_usage(cli);
    static const char *const dims[] = {"tenant", "user", "plugin", "model", "site", NULL};
    const char *by = a.by ? a.by : "tenant";
    bool dim_ok = false;
    for (size_t i = 0; dims[i]; i++)
        dim_ok |= strcmp(by, dims[i]) == 0;
    if (!dim_ok)
        return jz_cli_usage_error(cli, "--by: tenant, user, plugin, model or site");
    const char *fmt = a.format ? a.format : cli->json ? "json" : "table";
    if (strcmp(fmt, "table") != 0 && strcmp(fmt, "json") != 0 && strcmp(fmt, "csv") != 0)
        return jz_cli_usage_error(cli, "--format: table, json or csv");
    char path[1024] = "/v1/reports/usage";
    if (!jz_cli_query_add(path, sizeof path, "by", by, false) ||
        (a.tenant && !jz_cli_query_add(path, sizeof path, "tenant", a.tenant, false)) ||
        !add_period(path, sizeof path, &a))
        return jz_cli_usage_error(cli, "--tenant: too long");
    struct jz_cli_response r;
    int rc = bill_get(cli, path, false, &r);
    if (rc)
        return rc;
    if (strcmp(fmt, "json") == 0) {
        fwrite(r.body, 1, r.len, stdout);
        fputc('\n', stdout);
        jz_cli_response_clear(&r);
        return 0;
    }
    bool csv = strcmp(fmt, "csv") == 0;
    static const char *const hdr[] = {"KEY", "JOBS", "GPU-H", "RUN-H", "WAIT-MEAN", "WAIT-P50",
                                      "WAIT-P95", "WAIT-MAX"};
    struct jz_table *t = csv ? NULL : jz_table_new(8, hdr);
    if (csv)
        printf("%s,jobs,gpu_hours,run_hours,wait_mean_s,wait_p50_s,wait_p95_s,wait_max_s\n", by);
    for (size_t c = 1; t && c < 8; c++)
        jz_table_align_right(t, c);
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(r.json, "rows"), i, row) {
        json_t *w = json_object_get(row, "wait_s");
        char cells[8][96];
        snprintf(cells[0], sizeof cells[0], "%s", jz_json_str(row, "key", "?"));
        snprintf(cells[1], sizeof cells[1], "%lld", (long long)jz_json_int(row, "jobs", 0));
        snprintf(cells[2], sizeof cells[2], "%.3f", jz_json_num(row, "gpu_hours", 0));
        snprintf(cells[3], sizeof cells[3], "%.3f", jz_json_num(row, "run_hours", 0));
        static const char *const wk[] = {"mean", "p50", "p95", "max"};
        for (int k = 0; k < 4; k++) {
            if (csv)
                snprintf(cells[4 + k], sizeof cells[4 + k], "%.1f", jz_json_num(w, wk[k], 0));
            else
                jz_duration_format((int64_t)(jz_json_num(w, wk[k], 0) + 0.5), cells[4 + k],
                                   sizeof cells[4 + k]);
        }
        if (csv) {
            for (int c = 0; c < 8; c++)
                jz_cli_csv_cell(stdout, cells[c], c == 7);
        } else if (t) {
            const char *cc[8];
            for (int c = 0; c < 8; c++)
                cc[c] = cells[c];
            jz_table_add(t, cc);
        }
    }
    if (t) {
        jz_table_print(t, stdout);
        jz_table_free(t);
    }
    jz_cli_response_clear(&r);
    return 0;
}
