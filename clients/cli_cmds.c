/* The jazari client's commands: one function each, all talking the public REST API
 * (docs/rest-api.md), and the table that names them. */
#include "clients/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"
#include "common/version.h"

void jz_cli_errorf(const struct jz_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "jazari: ");
    if (cli && cli->cmd)
        fprintf(stderr, "%s: ", cli->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Commands linked in by the executable (jz_cli_main's extra), searched after the table. */
static const struct jz_cli_command *extra_commands;

static const struct jz_cli_command *find_command(const char *name)
{
    for (const struct jz_cli_command *c = jz_cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    for (const struct jz_cli_command *c = extra_commands; c && c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static int print_usage(const struct jz_cli *cli)
{
    const struct jz_cli_command *c = find_command(cli->cmd);
    fputs(c ? c->usage : "", stdout);
    return JZ_CLI_EXIT_OK;
}

static int usage_error(const struct jz_cli *cli, const char *msg)
{
    jz_cli_errorf(cli, "%s", msg);
    fprintf(stderr, "Try 'jazari %s --help'.\n", cli->cmd);
    return JZ_CLI_EXIT_USAGE;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

static int resolve(struct jz_cli *cli)
{
    struct jz_error err = {0};
    if (jz_cli_config_resolve(cli, env_get, &err) != 0) {
        jz_cli_errorf(cli, "%s", err.msg);
        return JZ_CLI_EXIT_USAGE;
    }
    return 0;
}

/* The shared helpers of the commands kept in other files (cli.h). */
int jz_cli_usage_error(const struct jz_cli *cli, const char *msg)
{
    return usage_error(cli, msg);
}

int jz_cli_print_usage(const struct jz_cli *cli)
{
    return print_usage(cli);
}

int jz_cli_resolve(struct jz_cli *cli)
{
    return resolve(cli);
}

static int parse_simple(struct jz_cli *cli, int argc, char **argv, const char **pos, int min,
                        int max, int *npos);

int jz_cli_parse_simple(struct jz_cli *cli, int argc, char **argv, const char **pos, int min,
                        int max, int *npos)
{
    return parse_simple(cli, argc, argv, pos, min, max, npos);
}

/* Reports a non-2xx answer in one line; adds a hint when no token was configured. */
static void report_status(const struct jz_cli *cli, const struct jz_cli_response *r,
                          const char *what)
{
    char msg[640];
    jz_cli_server_error(r->status, r->body, r->len, msg, sizeof msg);
    if (r->status == 401 && !cli->token[0])
        jz_cli_errorf(cli, "%s%s (no token: use --token, JAZARI_TOKEN or the config file)",
                      what ? what : "", msg);
    else
        jz_cli_errorf(cli, "%s%s", what ? what : "", msg);
}

/* One request; on anything but a 2xx prints the error line and returns non-zero. */
static int request(const struct jz_cli *cli, const char *method, const char *path,
                   const json_t *body, struct jz_cli_response *r)
{
    struct jz_error err = {0};
    if (jz_cli_http(cli, method, path, body, r, &err) != 0) {
        jz_cli_errorf(cli, "%s", err.msg);
        return JZ_CLI_EXIT_FAIL;
    }
    if (r->status < 200 || r->status >= 300) {
        report_status(cli, r, NULL);
        jz_cli_response_clear(r);
        return JZ_CLI_EXIT_FAIL;
    }
    if (!r->json) {
        jz_cli_errorf(cli, "the server's answer is not JSON (HTTP %ld)", r->status);
        jz_cli_response_clear(r);
        return JZ_CLI_EXIT_FAIL;
    }
    return 0;
}

int jz_cli_request(const struct jz_cli *cli, const char *method, const char *path,
                   const json_t *body, const char *what, struct jz_cli_response *r)
{
    struct jz_error err = {0};
    if (jz_cli_http(cli, method, path, body, r, &err) != 0) {
        jz_cli_errorf(cli, "%s%s", what ? what : "", err.msg);
        return JZ_CLI_EXIT_FAIL;
    }
    if (r->status < 200 || r->status >= 300 || !r->json) {
        if (r->status >= 200 && r->status < 300)
            jz_cli_errorf(cli, "%sthe server's answer is not JSON (HTTP %ld)", what ? what : "",
                          r->status);
        else
            report_status(cli, r, what);
        jz_cli_response_clear(r);
        return JZ_CLI_EXIT_FAIL;
    }
    return 0;
}

static void print_raw(const struct jz_cli_response *r)
{
    fwrite(r->body, 1, r->len, stdout);
    if (r->len == 0 || r->body[r->len - 1] != '\n')
        fputc('\n', stdout);
}

static void print_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_COMPACT);
    fputc('\n', stdout);
}

/* Parses a command that takes only the common options and up to max positionals. */
static int parse_simple(struct jz_cli *cli, int argc, char **argv, const char **pos, int min,
                        int max, int *npos)
{
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    jz_cli_opt_init(&st, argc, argv);
    *npos = 0;
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, NULL, &val, &err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return usage_error(cli, err.msg);
        if (id == JZ_CLI_OPT_DASHDASH) {
            /* Everything after "--" is an argument, even when it looks like an option. */
            for (; st.i < argc; st.i++) {
                if (*npos >= max)
                    return usage_error(cli, "too many arguments");
                pos[(*npos)++] = argv[st.i];
            }
            break;
        }
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (*npos >= max)
                return usage_error(cli, "too many arguments");
            pos[(*npos)++] = val;
            continue;
        }
        jz_cli_common_option(cli, id, val);
    }
    if (cli->help)
        return 0;
    if (*npos < min)
        return usage_error(cli, "missing argument");
    return 0;
}

static int parse_job_id(const struct jz_cli *cli, const char *s, int64_t *id)
{
    struct jz_error err = {0};
    if (jz_cli_parse_int(s, 1, INT64_MAX, "job id", id, &err) != 0)
        return usage_error(cli, err.msg);
    return 0;
}

/* The common start of a command that takes no argument and shows one GET: parses the common
 * options, prints help, resolves the server and GETs path. Returns true with *r to render;
 * false when the command is done (*rc is its exit code: help, an error, or --json printed). */
static bool get_for_command(struct jz_cli *cli, int argc, char **argv, const char *path,
                            struct jz_cli_response *r, int *rc)
{
    const char *pos[1];
    int n;
    if ((*rc = parse_simple(cli, argc, argv, pos, 0, 0, &n)))
        return false;
    if (cli->help) {
        *rc = print_usage(cli);
        return false;
    }
    if ((*rc = resolve(cli)) || (*rc = request(cli, "GET", path, NULL, r)))
        return false;
    if (cli->json) {
        print_raw(r);
        jz_cli_response_clear(r);
        return false;
    }
    return true;
}

/* The common start of a command about one job (`CMD ID`): parses, resolves and GETs the job.
 * Returns true with *r (the job) to render and *id; false when the command is done (*rc). */
static bool get_job_for_command(struct jz_cli *cli, int argc, char **argv, int64_t *id,
                                struct jz_cli_response *r, int *rc)
{
    const char *pos[1];
    int n;
    if ((*rc = parse_simple(cli, argc, argv, pos, 1, 1, &n)))
        return false;
    if (cli->help) {
        *rc = print_usage(cli);
        return false;
    }
    if ((*rc = parse_job_id(cli, pos[0], id)) || (*rc = resolve(cli)))
        return false;
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)*id);
    return (*rc = request(cli, "GET", path, NULL, r)) == 0;
}

/* "1h2m" between two ISO times (end NULL: now); "-" when start is unknown. */
static void elapsed(const char *start, const char *end, char *buf, size_t len)
{
    int64_t s, e;
    if (jz_time_parse_iso(start, &s, NULL) != 0) {
        jz_strlcpy(buf, "-", len);
        return;
    }
    if (!end || jz_time_parse_iso(end, &e, NULL) != 0)
        e = jz_time_now_ms();
    jz_duration_format(e > s ? (e - s) / 1000 : 0, buf, len);
}

/* ---- submit ------------------------------------------------------------------------------ */

static int cmd_submit(struct jz_cli *cli, int argc, char **argv)
{
    char cwd[4096];
    const char *dir = getcwd(cwd, sizeof cwd) ? cwd : NULL;
    json_t *body = NULL;
    struct jz_error err = {0};
    if (jz_cli_submit_build(cli, argc, argv, dir, &body, &err) != 0)
        return usage_error(cli, err.msg);
    if (cli->help)
        return print_usage(cli);
    json_t *notify = json_object_get(body, "notify");
    if (notify) {
        char secret[300], path[3100];
        bool created;
        if (jz_cli_notify_secret(secret, sizeof secret, &created, path, sizeof path, &err)) {
            json_decref(body);
            jz_cli_errorf(cli, "%s", err.msg);
            return JZ_CLI_EXIT_USAGE;
        }
        if (created)
            fprintf(stderr, "jazari: the webhook is signed with the secret in %s "
                            "(X-Jazari-Signature-256: sha256=HMAC of the body)\n", path);
        json_object_set_new(notify, "secret", json_string(secret));
    }
    int rc = resolve(cli);
    if (rc) {
        json_decref(body);
        return rc;
    }
    struct jz_cli_response r;
    rc = request(cli, "POST", "/v1/jobs", body, &r);
    json_decref(body);
    if (rc)
        return rc;
    json_int_t id = json_integer_value(json_object_get(r.json, "id"));
    if (cli->json) {
        print_raw(&r);
    } else if (id > 0) {
        printf("%lld\n", (long long)id);
    } else {
        jz_cli_errorf(cli, "the server's answer has no job id");
        rc = JZ_CLI_EXIT_FAIL;
    }
    jz_cli_response_clear(&r);
    return rc;
}

/* ---- queue ------------------------------------------------------------------------------- */

static int cmd_queue(struct jz_cli *cli, int argc, char **argv)
{
    struct jz_cli_queue_args q;
    struct jz_error err = {0};
    if (jz_cli_queue_parse(cli, argc, argv, &q, &err) != 0)
        return usage_error(cli, err.msg);
    if (cli->help)
        return print_usage(cli);
    int rc = resolve(cli);
    if (rc)
        return rc;
    json_t *all = json_array();
    json_t *next = json_null();
    int64_t after = -1;
    while ((int64_t)json_array_size(all) < q.limit) {
        int64_t want = q.limit - (int64_t)json_array_size(all);
        char path[1024];
        if (jz_cli_queue_path(&q, after, want > 1000 ? 1000 : want, path, sizeof path, &err)) {
            jz_cli_errorf(cli, "%s", err.msg);
            rc = JZ_CLI_EXIT_USAGE;
            goto out;
        }
        struct jz_cli_response r;
        if ((rc = request(cli, "GET", path, NULL, &r)))
            goto out;
        json_t *jobs = json_object_get(r.json, "jobs");
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
        {
            if ((int64_t)json_array_size(all) < q.limit && jz_cli_queue_match(&q, j))
                json_array_append(all, j);
        }
        json_t *na = json_object_get(r.json, "next_after");
        json_decref(next);
        next = json_incref(na ? na : json_null());
        /* Stop on the last page, and on a cursor that does not move (a server bug would
         * otherwise loop forever). */
        bool more = json_is_integer(na) && json_integer_value(na) > after && json_array_size(jobs);
        if (more)
            after = json_integer_value(na);
        jz_cli_response_clear(&r);
        if (!more)
            break;
    }
    if (cli->json) {
        json_t *o = json_pack("{s:O,s:O}", "jobs", all, "next_after", next);
        print_json(o);
        json_decref(o);
        goto out;
    }
    struct jz_table *t = jz_cli_queue_table(all, &q, jz_time_now_ms());
    if (!t) {
        jz_cli_errorf(cli, "out of memory");
        rc = JZ_CLI_EXIT_FAIL;
        goto out;
    }
    if (jz_cli_use_color(STDOUT_FILENO))
        jz_cli_queue_color(t, &q);
    jz_table_print(t, stdout);
    jz_table_free(t);
out:
    json_decref(all);
    json_decref(next);
    return rc;
}

/* ---- show -------------------------------------------------------------------------------- */

static void field(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void field(const char *label, const char *fmt, ...)
{
    char raw[1024], clean[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    jz_cli_sanitize(raw, clean, sizeof clean);
    printf("  %-16s%s\n", label, clean);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "gpu-a1, gpu-a2, ..." from a job's "nodes" array; cut with "..." when it does not fit. */
static void node_names(const json_t *list, char *buf, size_t len)
{
    size_t off = 0, i;
    json_t *n;
    buf[0] = '\0';
    json_array_foreach(list, i, n)
    {
        if (!json_is_string(n))
            continue;
        int w = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", json_string_value(n));
        if (w < 0 || (size_t)w >= len - off) {
            if (len > 4) /* a long list must not end in half a name without saying so */
                memcpy(buf + len - 4, "...", 4);
            break;
        }
        off += (size_t)w;
    }
}

static void show_job(const json_t *j)
{
    char a[64], b[64];
    const char *name = jz_json_str(j, "name", NULL);
    char clean[300];
    jz_cli_sanitize(name ? name : "", clean, sizeof clean);
    printf("Job %lld%s%s%s\n", (long long)jz_json_int(j, "id", 0), name ? " (" : "",
           name ? clean : "", name ? ")" : "");
    const char *state = jz_json_str(j, "state", "?");
    field("State:", "%s", state);
    if (jz_json_str(j, "reason", NULL))
        field("Reason:", "%s", jz_json_str(j, "reason", ""));
    field("User:", "%s (tenant %s)", jz_json_str(j, "user", "?"), jz_json_str(j, "tenant", "?"));
    if (jz_json_str(j, "plugin_sha256", NULL))
        field("Plugin:", "%s %s (sha256 %.12s)", jz_json_str(j, "plugin", "?"),
              jz_json_str(j, "plugin_version", "?"), jz_json_str(j, "plugin_sha256", ""));
    else
        field("Plugin:", "%s", jz_json_str(j, "plugin", "?"));
    jz_cli_time_local(jz_json_str(j, "submit_time", NULL), a, sizeof a);
    field("Submitted:", "%s", a);
    if (jz_json_str(j, "start_time", NULL)) {
        jz_cli_time_local(jz_json_str(j, "start_time", NULL), a, sizeof a);
        field("Started:", "%s", a);
    }
    if (jz_json_str(j, "end_time", NULL)) {
        jz_cli_time_local(jz_json_str(j, "end_time", NULL), a, sizeof a);
        field("Ended:", "%s", a);
    }
    if (jz_json_str(j, "start_time", NULL)) {
        elapsed(jz_json_str(j, "start_time", NULL), jz_json_str(j, "end_time", NULL), a, sizeof a);
        field("Elapsed:", "%s", a);
    }
    if (strcmp(state, "PENDING") == 0) {
        const char *est = jz_json_str(j, "estimated_start", NULL);
        jz_cli_time_local(est, a, sizeof a);
        field("Est. start:", "%s", est ? a : "unknown");
    }
    json_t *res = json_object_get(j, "resources");
    int64_t gpus = jz_json_int(res, "gpus", 0);
    int64_t nodes = jz_json_int(res, "nodes", 1), per_node = jz_json_int(res, "gpus_per_node", 0);
    jz_duration_format(jz_json_int(res, "time_limit_s", 0), b, sizeof b);
    if (nodes > 1 && per_node > 0)
        field("Resources:",
              "%lld nodes x %lld GPU%s, %lld CPU%s per GPU, memory %lld MB, "
              "time limit %s",
              (long long)nodes, (long long)per_node, per_node == 1 ? "" : "s",
              (long long)jz_json_int(res, "cpus_per_gpu", 1),
              jz_json_int(res, "cpus_per_gpu", 1) == 1 ? "" : "s",
              (long long)jz_json_int(res, "memory_mb", 0), b);
    else if (nodes > 1)
        field("Resources:",
              "%lld GPU%s on %lld nodes, %lld CPU%s per GPU, memory %lld MB, "
              "time limit %s",
              (long long)gpus, gpus == 1 ? "" : "s", (long long)nodes,
              (long long)jz_json_int(res, "cpus_per_gpu", 1),
              jz_json_int(res, "cpus_per_gpu", 1) == 1 ? "" : "s",
              (long long)jz_json_int(res, "memory_mb", 0), b);
    else if (gpus > 0)
        field("Resources:", "%lld GPU%s, %lld CPU%s per GPU, memory %lld MB, time limit %s",
              (long long)gpus, gpus == 1 ? "" : "s", (long long)jz_json_int(res, "cpus_per_gpu", 1),
              jz_json_int(res, "cpus_per_gpu", 1) == 1 ? "" : "s",
              (long long)jz_json_int(res, "memory_mb", 0), b);
    else
        field("Resources:", "%lld CPU%s, memory %lld MB, time limit %s",
              (long long)jz_json_int(res, "cpus", 1), jz_json_int(res, "cpus", 1) == 1 ? "" : "s",
              (long long)jz_json_int(res, "memory_mb", 0), b);
    field("Preemptible:", "%s", jz_json_bool(j, "preemptible", false) ? "yes" : "no");
    if (json_is_boolean(json_object_get(j, "requeue")))
        field("Requeue:", "%s",
              jz_json_bool(j, "requeue", false) ? "yes (when its node is lost)" : "no");
    char nodes_text[1024];
    json_t *node_list = json_object_get(j, "nodes");
    if (json_array_size(node_list) > 1) {
        node_names(node_list, nodes_text, sizeof nodes_text);
        field("Nodes:", "%s", nodes_text);
    } else if (jz_json_str(j, "node", NULL)) {
        field("Node:", "%s", jz_json_str(j, "node", ""));
    }
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(j, "gpus"), i, g)
    {
        /* The GPUs of a multi-node job carry their node: the index alone is ambiguous. */
        if (jz_json_str(g, "node", NULL))
            field(i == 0 ? "GPUs:" : "", "%s  %lld  %s  %s", jz_json_str(g, "node", ""),
                  (long long)jz_json_int(g, "index", -1), jz_json_str(g, "pci_bus_id", "-"),
                  jz_json_str(g, "model", ""));
        else
            field(i == 0 ? "GPUs:" : "", "%lld  %s  %s", (long long)jz_json_int(g, "index", -1),
                  jz_json_str(g, "pci_bus_id", "-"), jz_json_str(g, "model", ""));
    }
    if (jz_json_str(j, "cpus", NULL))
        field("CPUs:", "%s", jz_json_str(j, "cpus", ""));
    if (jz_json_str(j, "backend", NULL))
        field("Backend:", "%s", jz_json_str(j, "backend", ""));
    if (json_is_integer(json_object_get(j, "exit_code")))
        field("Exit code:", "%lld", (long long)jz_json_int(j, "exit_code", 0));
    if (json_is_integer(json_object_get(j, "signal")))
        field("Signal:", "%lld", (long long)jz_json_int(j, "signal", 0));
    json_t *p = json_object_get(j, "progress");
    if (json_is_object(p)) {
        if (json_is_number(json_object_get(p, "fraction")))
            field("Progress:", "%.0f%%  %s", jz_json_num(p, "fraction", 0) * 100.0,
                  jz_json_str(p, "message", ""));
        else
            field("Progress:", "%s", jz_json_str(p, "message", ""));
    }
    json_t *m = json_object_get(j, "metrics");
    if (json_is_object(m) && json_object_size(m) > 0) {
        /* Sorted by name so that the output is stable between calls. */
        size_t n = json_object_size(m), k = 0;
        const char **keys = calloc(n, sizeof *keys);
        const char *key;
        json_t *v;
        if (keys) {
            json_object_foreach(m, key, v) keys[k++] = key;
            qsort(keys, k, sizeof *keys, cmp_str);
            for (size_t x = 0; x < k; x++) {
                v = json_object_get(m, keys[x]);
                if (json_is_number(v)) { /* 6 significant digits read better than 17 */
                    field(x == 0 ? "Metrics:" : "", "%s = %.6g", keys[x], json_number_value(v));
                    continue;
                }
                char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                field(x == 0 ? "Metrics:" : "", "%s = %s", keys[x], txt ? txt : "?");
                free(txt);
            }
            free(keys);
        }
    }
    int64_t requeues = jz_json_int(j, "requeues", 0);
    if (requeues > 0)
        field("Requeues:", "%lld", (long long)requeues);
    json_t *params = json_object_get(j, "params");
    if (json_is_object(params) && json_object_size(params) > 0) {
        char *txt = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
        field("Params:", "%s", txt ? txt : "?");
        free(txt);
    }
}

static int cmd_show(struct jz_cli *cli, int argc, char **argv)
{
    int rc;
    int64_t id;
    struct jz_cli_response r;
    if (!get_job_for_command(cli, argc, argv, &id, &r, &rc))
        return rc;
    if (cli->json)
        print_raw(&r);
    else
        show_job(r.json);
    jz_cli_response_clear(&r);
    return 0;
}

/* ---- why --------------------------------------------------------------------------------- */

/* Explains in one or two lines where a job stands and, when it waits, why and until when. */
static int cmd_why(struct jz_cli *cli, int argc, char **argv)
{
    int rc;
    int64_t id;
    struct jz_cli_response r;
    if (!get_job_for_command(cli, argc, argv, &id, &r, &rc))
        return rc;
    if (cli->json) {
        json_t *o = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "id",
                              json_object_get(r.json, "id"), "state",
                              json_object_get(r.json, "state"), "reason",
                              json_object_get(r.json, "reason"), "reason_code",
                              json_object_get(r.json, "reason_code"), "estimated_start",
                              json_object_get(r.json, "estimated_start"), "priority",
                              json_object_get(r.json, "priority"), "attained_gpu_seconds",
                              json_object_get(r.json, "attained_gpu_seconds"), "preemptions",
                              json_object_get(r.json, "preemptions"));
        print_json(o);
        json_decref(o);
        jz_cli_response_clear(&r);
        return 0;
    }
    const char *state = jz_json_str(r.json, "state", "?");
    const char *reason = jz_json_str(r.json, "reason", NULL);
    char line[1024];
    jz_cli_sanitize(reason ? reason : "", line, sizeof line);
    if (strcmp(state, "PENDING") == 0) {
        printf("Job %lld is waiting (%s): %s\n", (long long)id,
               jz_json_str(r.json, "reason_code", "queued"), line);
        const char *est = jz_json_str(r.json, "estimated_start", NULL);
        if (est) {
            char when[64];
            jz_cli_time_local(est, when, sizeof when);
            printf("Estimated start: %s (from the time limits of the jobs ahead of it).\n", when);
        } else {
            printf("No estimated start yet.\n");
        }
        json_int_t preempted = json_integer_value(json_object_get(r.json, "preemptions"));
        if (preempted > 0)
            printf("Preempted %lld time%s; it has received %.1f GPU-hours (jobs that received "
                   "less go first in its class).\n",
                   (long long)preempted, preempted == 1 ? "" : "s",
                   json_number_value(json_object_get(r.json, "attained_gpu_seconds")) / 3600.0);
    } else if (strcmp(state, "RUNNING") == 0) {
        char where[1024], clean[1024], placement[1024];
        json_t *node_list = json_object_get(r.json, "nodes");
        if (json_array_size(node_list) > 1)
            node_names(node_list, where, sizeof where);
        else
            jz_strlcpy(where, jz_json_str(r.json, "node", "?"), sizeof where);
        jz_cli_sanitize(where, clean, sizeof clean);
        jz_cli_sanitize(jz_json_str(r.json, "placement", ""), placement, sizeof placement);
        printf("Job %lld is running on %s: %s\n", (long long)id, clean, placement);
    } else {
        printf("Job %lld ended %s%s%s\n", (long long)id, state, reason ? ": " : ".", line);
    }
    jz_cli_response_clear(&r);
    return 0;
}

/* ---- fetch ------------------------------------------------------------------------------- */

static int write_file(const char *data, size_t len, void *ud)
{
    return fwrite(data, 1, len, ud) == len ? 0 : -1;
}

/* Downloads an artifact into -o FILE (default: its name in the current directory; "-" for
 * standard output). A partial download is removed. */
static int cmd_fetch(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[3];
    const char *out = NULL;
    int n = 0, rc;
    /* -o FILE may stand anywhere; take it out before the common parsing. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return JZ_CLI_EXIT_FAIL;
    int m = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
            out = argv[++i];
        else
            rest[m++] = argv[i];
    }
    rc = parse_simple(cli, m, rest, pos, 2, 2, &n);
    free(rest);
    if (rc)
        return rc;
    if (cli->help)
        return print_usage(cli);
    int64_t id;
    if ((rc = parse_job_id(cli, pos[0], &id)) || (rc = resolve(cli)))
        return rc;
    const char *name = pos[1];
    for (const char *c = name; *c; c++)
        if (*c == '/' || *c == '?' || *c == '#' || *c == '%')
            return usage_error(cli, "artifact names are plain file names");
    if (!out)
        out = name;
    bool to_stdout = strcmp(out, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(out, "wb");
    if (!f) {
        jz_cli_errorf(cli, "cannot write %s: %s", out, strerror(errno));
        return JZ_CLI_EXIT_FAIL;
    }
    char path[512];
    snprintf(path, sizeof path, "/v1/jobs/%lld/artifacts/%s", (long long)id, name);
    struct jz_cli_response r;
    struct jz_error err = {0};
    uint64_t got = 0;
    rc = jz_cli_http_stream(cli, path, write_file, f, &r, &got, &err);
    bool ok = rc == 0 && r.status >= 200 && r.status < 300;
    if (!to_stdout && fclose(f) != 0)
        ok = false;
    if (!ok) {
        if (!to_stdout)
            unlink(out);
        if (rc)
            jz_cli_errorf(cli, "%s", err.msg);
        else
            report_status(cli, &r, NULL);
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_FAIL;
    }
    jz_cli_response_clear(&r);
    if (!to_stdout && !cli->json)
        fprintf(stderr, "%s: %llu bytes\n", out, (unsigned long long)got);
    return 0;
}

/* ---- cancel ------------------------------------------------------------------------------ */

/* What one argument of cancel names: a job ("42"), an array element as queue --expand shows it
 * ("12_5": array 12, index 5), or a whole array ("12_*" or "12_[*]"). */
struct cancel_target {
    int64_t id;    /* the job, or the array */
    int64_t index; /* an element's index; -1: the job itself, -2: the whole array */
};

static int parse_cancel_target(const struct jz_cli *cli, const char *s, struct cancel_target *t)
{
    const char *us = strchr(s, '_');
    if (!us) {
        t->index = -1;
        return parse_job_id(cli, s, &t->id);
    }
    char head[32];
    struct jz_error err = {0};
    snprintf(head, sizeof head, "%.*s", (int)(us - s < 31 ? us - s : 31), s);
    if (jz_cli_parse_int(head, 1, INT64_MAX, "array id", &t->id, &err) != 0)
        return usage_error(cli, err.msg);
    if (strcmp(us + 1, "*") == 0 || strcmp(us + 1, "[*]") == 0) {
        t->index = -2;
        return 0;
    }
    if (jz_cli_parse_int(us + 1, 0, 10000000, "array index", &t->index, &err) != 0)
        return usage_error(cli, "expected ID, ARRAY_INDEX (12_5) or ARRAY_* (12_*)");
    return 0;
}

/* The id of element index of array aid, from the array's list; 0 when there is none. */
static int64_t array_element(struct jz_cli *cli, int64_t aid, int64_t index)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs?array=%lld&limit=1000", (long long)aid);
    for (;;) {
        struct jz_cli_response r;
        if (request(cli, "GET", path, NULL, &r))
            return 0;
        size_t i;
        json_t *j;
        int64_t found = 0;
        json_array_foreach(json_object_get(r.json, "jobs"), i, j)
        {
            if (jz_json_int(json_object_get(j, "array"), "index", -1) == index)
                found = jz_json_int(j, "id", 0);
        }
        json_t *next = json_object_get(r.json, "next_after");
        int64_t after = json_is_integer(next) ? json_integer_value(next) : 0;
        jz_cli_response_clear(&r);
        if (found || after <= 0)
            return found;
        snprintf(path, sizeof path, "/v1/jobs?array=%lld&limit=1000&after=%lld", (long long)aid,
                 (long long)after);
    }
}

static int cmd_cancel(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[JZ_CLI_MAX_ARGS];
    int n, rc;
    if ((rc = parse_simple(cli, argc, argv, pos, 1, JZ_CLI_MAX_ARGS, &n)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    struct cancel_target *ids = calloc((size_t)n, sizeof *ids);
    if (!ids)
        return JZ_CLI_EXIT_FAIL;
    /* Check every id before cancelling any, so a typo does not leave half the work done. */
    for (int i = 0; i < n; i++)
        if ((rc = parse_cancel_target(cli, pos[i], &ids[i]))) {
            free(ids);
            return rc;
        }
    if ((rc = resolve(cli))) {
        free(ids);
        return rc;
    }
    int conflicts = 0, failures = 0;
    for (int i = 0; i < n; i++) {
        char path[96], what[64];
        struct cancel_target *t = &ids[i];
        if (t->index >= 0) {
            int64_t e = array_element(cli, t->id, t->index);
            if (!e) {
                jz_cli_errorf(cli, "array %lld has no element %lld that you may see",
                              (long long)t->id, (long long)t->index);
                failures++;
                continue;
            }
            t->id = e;
        }
        bool array = t->index == -2;
        snprintf(path, sizeof path, array ? "/v1/arrays/%lld/cancel" : "/v1/jobs/%lld/cancel",
                 (long long)t->id);
        snprintf(what, sizeof what, "%s %lld: ", array ? "array" : "job", (long long)t->id);
        struct jz_cli_response r;
        struct jz_error err = {0};
        if (jz_cli_http(cli, "POST", path, NULL, &r, &err) != 0) {
            jz_cli_errorf(cli, "%s%s", what, err.msg);
            /* The server is unreachable: the other jobs would only repeat this line. */
            if (i + 1 < n)
                jz_cli_errorf(cli, "%d more job%s not tried", n - i - 1, n - i - 1 == 1 ? "" : "s");
            failures++;
            break;
        }
        if (r.status >= 200 && r.status < 300) {
            if (cli->json)
                print_raw(&r);
            else if (array)
                printf("cancelled %zu jobs of array %lld (%zu had already ended)\n",
                       json_array_size(json_object_get(r.json, "cancelled")), (long long)t->id,
                       json_array_size(json_object_get(r.json, "already_ended")));
            else
                printf("cancelled job %lld\n", (long long)t->id);
        } else {
            report_status(cli, &r, what);
            if (r.status == 409)
                conflicts++;
            else
                failures++;
        }
        jz_cli_response_clear(&r);
    }
    free(ids);
    return failures > 0 || conflicts == n ? JZ_CLI_EXIT_FAIL : JZ_CLI_EXIT_OK;
}

/* ---- logs -------------------------------------------------------------------------------- */

static int write_stdout(const char *data, size_t len, void *ud)
{
    if (fwrite(data, 1, len, stdout) != len)
        return JZ_EIO;
    /* Followed logs are read as they grow: do not hold lines back in stdio. */
    return fflush(stdout) == 0 ? 0 : JZ_EIO;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static bool transient_status(long status)
{
    return status == 502 || status == 503 || status == 504;
}

/* GET the job; 1: ended, 0: not ended, <0: could not tell (network or 5xx). A 4xx is
 * reported and returned as JZ_EPERM, which ends the caller. */
static int job_ended(const struct jz_cli *cli, int64_t id, json_t **job)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
    struct jz_cli_response r;
    struct jz_error err = {0};
    if (jz_cli_http(cli, "GET", path, NULL, &r, &err) != 0)
        return JZ_EIO;
    int rc;
    if (r.status >= 200 && r.status < 300 && r.json) {
        rc = jz_cli_state_is_final(jz_json_str(r.json, "state", NULL)) ? 1 : 0;
        if (job)
            *job = json_incref(r.json);
    } else if (r.status >= 400 && r.status < 500) {
        report_status(cli, &r, NULL);
        rc = JZ_EPERM;
    } else {
        rc = JZ_EIO;
    }
    jz_cli_response_clear(&r);
    return rc;
}

/* `logs --json`: the log as JSON lines, {"job": ID, "offset": BYTE, "line": TEXT}, offset
 * being where the line starts in the log (to read on from it with the REST API). The log
 * has no times of its own: the server stores the job's bytes as they came. */
#define LOG_JSON_MAX_LINE (1u << 20) /* a longer line is cut into pieces of this size */

struct log_lines {
    int64_t job;
    uint64_t offset; /* of buf[0] in the log */
    char *buf;
    size_t len, cap;
};

/* Appends the UTF-8 sequence at p (n bytes left) to out, or U+FFFD for a byte that does not
 * start one; returns the bytes used. */
static size_t utf8_copy(const unsigned char *p, size_t n, char *out, size_t *o)
{
    size_t k = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
                                 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    bool ok = k > 0 && k <= n && !(k == 2 && p[0] < 0xc2) && !(k == 4 && p[0] > 0xf4);
    for (size_t i = 1; ok && i < k; i++)
        ok = (p[i] & 0xc0) == 0x80;
    if (ok && k == 3)
        ok = !(p[0] == 0xe0 && p[1] < 0xa0) && !(p[0] == 0xed && p[1] >= 0xa0);
    if (ok && k == 4)
        ok = !(p[0] == 0xf0 && p[1] < 0x90) && !(p[0] == 0xf4 && p[1] >= 0x90);
    if (!ok) {
        memcpy(out + *o, "\xef\xbf\xbd", 3);
        *o += 3;
        return 1;
    }
    memcpy(out + *o, p, k);
    *o += k;
    return k;
}

static int log_line_emit(struct log_lines *l, size_t n)
{
    size_t end = n && l->buf[n - 1] == '\n' ? n - 1 : n;
    char *text = malloc(end * 3 + 1);
    if (!text)
        return JZ_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < end;)
        i += utf8_copy((const unsigned char *)l->buf + i, end - i, text, &o);
    json_t *j = json_object();
    json_object_set_new(j, "job", json_integer(l->job));
    json_object_set_new(j, "offset", json_integer((json_int_t)l->offset));
    json_object_set_new(j, "line", json_stringn_nocheck(text, o));
    free(text);
    int rc = json_dumpf(j, stdout, JSON_COMPACT) == 0 && fputc('\n', stdout) != EOF ? 0 : JZ_EIO;
    json_decref(j);
    memmove(l->buf, l->buf + n, l->len - n);
    l->len -= n;
    l->offset += n;
    return rc;
}

static int write_json_lines(const char *data, size_t len, void *ud)
{
    struct log_lines *l = ud;
    for (size_t i = 0; i < len; i++) {
        if (l->len == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 4096;
            char *b = realloc(l->buf, cap);
            if (!b)
                return JZ_ENOMEM;
            l->buf = b;
            l->cap = cap;
        }
        l->buf[l->len++] = data[i];
        if (data[i] == '\n' || l->len >= LOG_JSON_MAX_LINE) {
            int rc = log_line_emit(l, l->len);
            if (rc)
                return rc;
        }
    }
    return fflush(stdout) == 0 ? 0 : JZ_EIO;
}

/* The last line, when the log does not end with a newline. */
static int log_lines_end(struct log_lines *l)
{
    int rc = l->len ? log_line_emit(l, l->len) : 0;
    free(l->buf);
    l->buf = NULL;
    return rc;
}

#define FOLLOW_MAX_FAILS 30 /* consecutive failed reconnects (about 30 s) before giving up */

static const struct jz_cli_optspec logs_opts[] = {
    {"follow", 'f', false, 1},
    {NULL, 0, false, 0},
};
static int cmd_logs(struct jz_cli *cli, int argc, char **argv)
{
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    const char *idarg = NULL;
    bool follow = false;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, logs_opts, &val, &err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return usage_error(cli, err.msg);
        if (id == JZ_CLI_OPT_DASHDASH)
            continue;
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (idarg)
                return usage_error(cli, "too many arguments");
            idarg = val;
        } else if (id == 1) {
            follow = true;
        } else {
            jz_cli_common_option(cli, id, val);
        }
    }
    if (cli->help)
        return print_usage(cli);
    if (!idarg)
        return usage_error(cli, "missing job id");
    int64_t id;
    int rc;
    if ((rc = parse_job_id(cli, idarg, &id)) || (rc = resolve(cli)))
        return rc;
    uint64_t offset = 0;
    int fails = 0;
    struct log_lines lines = {.job = id};
    jz_cli_sink_fn sink = cli->json ? write_json_lines : write_stdout;
    /* Plain reads return at most one server-sized slice each: repeat them until one is empty.
     * With -f, stream; when a stream ends before the job did, reconnect from the offset
     * already printed; once the job has ended, plain reads pick up whatever remained. */
    bool plain = !follow;
    for (;;) {
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%lld/log?offset=%llu%s", (long long)id,
                 (unsigned long long)offset, plain ? "" : "&follow=1");
        struct jz_cli_response r;
        uint64_t got = 0;
        rc = jz_cli_http_stream(cli, path, sink, &lines, &r, &got, &err);
        offset += got;
        long status = r.status;
        if (rc == JZ_ECANCELED) {
            jz_cli_response_clear(&r);
            jz_cli_errorf(cli, "%s", err.msg);
            free(lines.buf);
            return JZ_CLI_EXIT_FAIL;
        }
        if (status >= 300 && !(follow && transient_status(status))) {
            report_status(cli, &r, NULL);
            jz_cli_response_clear(&r);
            free(lines.buf);
            return JZ_CLI_EXIT_FAIL;
        }
        jz_cli_response_clear(&r);
        bool ok = rc == 0 && status < 300;
        if (!follow && !ok) {
            jz_cli_errorf(cli, "%s", err.msg);
            free(lines.buf);
            return JZ_CLI_EXIT_FAIL;
        }
        if (plain && ok) {
            if (got == 0)
                return log_lines_end(&lines) == 0 ? JZ_CLI_EXIT_OK : JZ_CLI_EXIT_FAIL;
            continue;
        }
        fails = got > 0 ? 0 : fails + 1;
        if (fails >= FOLLOW_MAX_FAILS) {
            if (rc)
                jz_cli_errorf(cli, "%s", err.msg);
            else
                jz_cli_errorf(cli, "the log stream keeps ending before the job does (HTTP %ld)",
                              status);
            free(lines.buf);
            return JZ_CLI_EXIT_FAIL;
        }
        if (!plain) {
            int ended = job_ended(cli, id, NULL);
            if (ended == JZ_EPERM) {
                free(lines.buf);
                return JZ_CLI_EXIT_FAIL;
            }
            if (ended == 1) {
                plain = true;
                continue;
            }
        }
        if (got == 0 || !ok)
            sleep_ms(fails <= 1 ? 100 : 1000);
    }
}

/* ---- wait -------------------------------------------------------------------------------- */

#define WAIT_MAX_FAILS 20
#define JZ_CLI_EXIT_WAIT_TIMEOUT 124 /* wait --timeout passed first, as timeout(1) */

struct waiter {
    struct jz_cli *cli;
    int64_t id;
    bool tty;              /* a progress line on stderr */
    bool shown;            /* the line is on screen */
    json_t *job;           /* the last record read */
    int fails;             /* consecutive failed reads */
    bool fatal;            /* a 4xx was reported: give up */
    int64_t last_read_ms;  /* monotonic */
    bool opened;           /* this connection's stream has sent something */
    struct jz_cli_sse sse; /* the events stream's parser */
};

/* Rewrites the progress line: "job 12 RUNNING 5m3s 42% epoch 3/10" (a terminal only). */
static void wait_show(struct waiter *w, const char *state_override)
{
    if (!w->tty || !w->job)
        return;
    const json_t *j = w->job;
    const char *state = state_override ? state_override : jz_json_str(j, "state", "?");
    char line[512], clean[512], tm[32] = "";
    size_t off = (size_t)snprintf(line, sizeof line, "job %lld %s", (long long)w->id, state);
    if (strcmp(state, "PENDING") == 0) {
        const char *reason = jz_json_str(j, "reason", NULL);
        if (reason)
            snprintf(line + off, sizeof line - off, " (%s)", reason);
    } else {
        elapsed(jz_json_str(j, "start_time", NULL), NULL, tm, sizeof tm);
        off += (size_t)snprintf(line + off, sizeof line - off, " %s", tm);
        json_t *p = json_object_get(j, "progress");
        if (off < sizeof line && json_is_number(json_object_get(p, "fraction")))
            off += (size_t)snprintf(line + off, sizeof line - off, " %.0f%%",
                                    jz_json_num(p, "fraction", 0) * 100.0);
        if (off < sizeof line && jz_json_str(p, "message", NULL))
            snprintf(line + off, sizeof line - off, " %s", jz_json_str(p, "message", ""));
    }
    jz_cli_sanitize(line, clean, sizeof clean);
    /* One line, updated in place; cut to 79 columns so that it never wraps. */
    fprintf(stderr, "\r\033[K%.79s", clean);
    fflush(stderr);
    w->shown = true;
}

static void wait_clear(struct waiter *w)
{
    if (w->shown)
        fputs("\r\033[K", stderr);
    w->shown = false;
}

/* Reads the job: 1 ended, 0 not yet, JZ_EIO could not tell (network or 502-504), JZ_EPERM a
 * 4xx that was reported (the wait is over). */
static int wait_read(struct waiter *w)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)w->id);
    struct jz_cli_response r;
    struct jz_error err = {0};
    int rc = jz_cli_http(w->cli, "GET", path, NULL, &r, &err);
    w->last_read_ms = jz_time_mono_ms();
    if (rc == 0 && r.status >= 200 && r.status < 300 && r.json) {
        w->fails = 0;
        json_decref(w->job);
        w->job = json_incref(r.json);
        jz_cli_response_clear(&r);
        return jz_cli_job_exit_code(w->job) >= 0 ? 1 : 0;
    }
    if (rc == 0 && !transient_status(r.status)) {
        wait_clear(w);
        report_status(w->cli, &r, NULL);
        jz_cli_response_clear(&r);
        w->fatal = true;
        return JZ_EPERM;
    }
    if (++w->fails >= WAIT_MAX_FAILS) {
        wait_clear(w);
        if (rc)
            jz_cli_errorf(w->cli, "%s", err.msg);
        else
            report_status(w->cli, &r, NULL);
        w->fatal = true;
    }
    jz_cli_response_clear(&r);
    return JZ_EIO;
}

#define WAIT_STOP 1 /* an event's handler ends the stream: the job ended, or must be re-read */

/* One event of GET /v1/events?job=ID. A state change to an end state stops the stream (the
 * record, with its exit code and signal, is then read); so does a "reset" (events were lost:
 * re-read). The stream's first bytes (jazarid opens it with a comment) re-read the job: it may
 * have ended between the first read and the stream's start, and a stream without a last id
 * replays nothing. Keep-alive comments re-read it now and then to refresh the progress line. */
static int wait_event(const char *event, const char *data, size_t len, void *ud)
{
    struct waiter *w = ud;
    if (strcmp(event, "reset") == 0)
        return WAIT_STOP;
    if (strcmp(event, ":") == 0 || strcmp(event, "job") == 0) {
        json_t *e = strcmp(event, "job") == 0 ? jz_json_parse(data, len, 16, NULL) : NULL;
        const char *state = jz_json_str(e, "state", NULL);
        bool final = jz_cli_state_is_final(state);
        if (!final && e && jz_json_int(e, "job", w->id) == w->id && state)
            wait_show(w, state);
        json_decref(e);
        if (final)
            return WAIT_STOP;
        bool first = !w->opened;
        w->opened = true;
        if (first || jz_time_mono_ms() - w->last_read_ms >= (w->tty ? 1000 : 10000)) {
            int ended = wait_read(w);
            if (ended == 1 || w->fatal)
                return WAIT_STOP;
            wait_show(w, NULL);
        }
    }
    return 0;
}

static int wait_sink(const char *data, size_t len, void *ud)
{
    struct waiter *w = ud;
    int rc = jz_cli_sse_feed(&w->sse, data, len, wait_event, w);
    return rc == WAIT_STOP ? JZ_ECANCELED : rc;
}

static const struct jz_cli_optspec wait_opts[] = {
    {"timeout", 0, true, 1},
    {NULL, 0, false, 0},
};
static int cmd_wait(struct jz_cli *cli, int argc, char **argv)
{
    /* No -t: submit's -t is the time limit, and a short flag means one thing everywhere. */
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    const char *idarg = NULL;
    int64_t timeout_s = 0;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, wait_opts, &val, &err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return usage_error(cli, err.msg);
        if (id == JZ_CLI_OPT_DASHDASH)
            continue;
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (idarg)
                return usage_error(cli, "too many arguments");
            idarg = val;
        } else if (id == 1) {
            struct jz_error derr = {0};
            if (jz_duration_parse(val, &timeout_s, &derr) != 0) {
                char msg[300];
                snprintf(msg, sizeof msg, "--timeout: %s", derr.msg);
                return usage_error(cli, msg);
            }
        } else {
            jz_cli_common_option(cli, id, val);
        }
    }
    if (cli->help)
        return print_usage(cli);
    if (!idarg)
        return usage_error(cli, "missing job id");
    int64_t id;
    int rc;
    if ((rc = parse_job_id(cli, idarg, &id)) || (rc = resolve(cli)))
        return rc;
    struct waiter w = {.cli = cli, .id = id, .tty = !cli->json && jz_cli_is_tty(STDERR_FILENO)};
    int64_t deadline = timeout_s > 0 ? jz_time_mono_ms() + timeout_s * 1000 : INT64_MAX;
    int64_t delay = 50;
    bool polling = false; /* the server has no /v1/events (404): read the job now and then */
    int stream_fails = 0;
    for (;;) {
        int ended = wait_read(&w);
        if (ended == 1)
            break;
        if (w.fatal) {
            rc = JZ_CLI_EXIT_FAIL;
            goto out;
        }
        if (ended == 0)
            wait_show(&w, NULL);
        int64_t now = jz_time_mono_ms();
        if (now >= deadline)
            goto timed_out;
        if (!polling && ended == 0) {
            char path[128];
            int n = snprintf(path, sizeof path, "/v1/events?job=%lld", (long long)id);
            if (w.sse.id[0])
                snprintf(path + n, sizeof path - (size_t)n, "&last_event_id=%s", w.sse.id);
            struct jz_cli_response r;
            uint64_t got = 0;
            w.opened = false;
            rc = jz_cli_http_stream_until(cli, path, deadline == INT64_MAX ? -1 : deadline,
                                          wait_sink, &w, &r, &got, &err);
            long status = r.status;
            jz_cli_response_clear(&r);
            jz_cli_sse_restart(&w.sse); /* a new connection starts a new line and event */
            if (w.fatal) {
                rc = JZ_CLI_EXIT_FAIL;
                goto out;
            }
            if (status == 404) {
                polling = true; /* an older server */
            } else if (status >= 400 && !transient_status(status) && status != 0) {
                wait_clear(&w);
                jz_cli_errorf(cli, "events: HTTP %ld", status);
                rc = JZ_CLI_EXIT_FAIL;
                goto out;
            } else if (rc == JZ_ECANCELED || got > 0) {
                stream_fails = 0;
                continue; /* stopped by an event, or the stream ended: read the job again */
            } else if (++stream_fails >= WAIT_MAX_FAILS) {
                wait_clear(&w);
                jz_cli_errorf(cli, "%s", rc ? err.msg : "the events stream keeps ending");
                rc = JZ_CLI_EXIT_FAIL;
                goto out;
            }
            now = jz_time_mono_ms();
            if (now >= deadline)
                goto timed_out;
            if (!polling) {
                sleep_ms(stream_fails <= 1 ? 100 : 1000);
                continue;
            }
        }
        now = jz_time_mono_ms();
        sleep_ms(delay < deadline - now ? delay : deadline - now);
        delay = delay * 2 > 1000 ? 1000 : delay * 2;
    }
    wait_clear(&w);
    rc = jz_cli_job_exit_code(w.job);
    if (cli->json) {
        print_json(w.job);
    } else {
        const char *reason = jz_json_str(w.job, "reason", NULL);
        char clean[300], state[64];
        jz_cli_sanitize(reason ? reason : "", clean, sizeof clean);
        jz_cli_sanitize(jz_json_str(w.job, "state", "?"), state, sizeof state);
        printf("job %lld %s%s%s%s\n", (long long)id, state, reason ? " (" : "", clean,
               reason ? ")" : "");
    }
    goto out;
timed_out:
    wait_clear(&w);
    /* 124, as timeout(1): a job that hit its own time limit exits 152 instead. */
    jz_cli_errorf(cli, "timed out after %lld s; job %lld is still %s", (long long)timeout_s,
                  (long long)id, w.job ? jz_json_str(w.job, "state", "?") : "unknown");
    rc = JZ_CLI_EXIT_WAIT_TIMEOUT;
out:
    json_decref(w.job);
    jz_cli_sse_clear(&w.sse);
    return rc;
}

/* ---- nodes, plugins, whoami -------------------------------------------------------------- */

static int cmd_nodes(struct jz_cli *cli, int argc, char **argv)
{
    const char *site = NULL;
    struct jz_error err = {0};
    if (jz_cli_nodes_parse(cli, argc, argv, &site, &err) != 0)
        return usage_error(cli, err.msg);
    if (cli->help)
        return print_usage(cli);
    char path[1024];
    if (jz_cli_nodes_path(site, path, sizeof path, &err) != 0)
        return usage_error(cli, err.msg);
    int rc;
    struct jz_cli_response r;
    if ((rc = resolve(cli)) || (rc = request(cli, "GET", path, NULL, &r)))
        return rc;
    if (cli->json) {
        print_raw(&r);
        jz_cli_response_clear(&r);
        return 0;
    }
    struct jz_table *t = jz_cli_nodes_table(json_object_get(r.json, "nodes"), jz_time_now_ms());
    jz_cli_response_clear(&r);
    if (!t) {
        jz_cli_errorf(cli, "out of memory");
        return JZ_CLI_EXIT_FAIL;
    }
    if (jz_cli_use_color(STDOUT_FILENO))
        jz_table_color_states(t, 2);
    jz_table_print(t, stdout);
    jz_table_free(t);
    return 0;
}

/* ---- node (admins) ----------------------------------------------------------------------- */

/* Sends one parsed node command and reports the result: "NAME: STATE (reason)" from the node
 * object the server answers, or "removed NAME". */
static int node_send(struct jz_cli *cli, const struct jz_cli_node_args *a)
{
    const char *method;
    char path[1024];
    json_t *body = NULL;
    struct jz_error err = {0};
    if (jz_cli_node_request(a, &method, path, sizeof path, &body, &err) != 0)
        return usage_error(cli, err.msg);
    int rc = resolve(cli);
    if (rc) {
        json_decref(body);
        return rc;
    }
    struct jz_cli_response r;
    rc = request(cli, method, path, body, &r);
    json_decref(body);
    if (rc)
        return rc;
    char line[1024], clean[1024];
    if (cli->json) {
        print_raw(&r);
    } else if (a->verb == JZ_CLI_NODE_RM) {
        snprintf(line, sizeof line, "removed %s", jz_json_str(r.json, "removed", a->name));
        jz_cli_sanitize(line, clean, sizeof clean);
        puts(clean);
    } else {
        const char *reason = jz_json_str(r.json, "drain_reason", NULL);
        snprintf(line, sizeof line, "%s: %s%s%s%s", jz_json_str(r.json, "name", a->name),
                 jz_json_str(r.json, "state", "?"), reason ? " (" : "", reason ? reason : "",
                 reason ? ")" : "");
        jz_cli_sanitize(line, clean, sizeof clean);
        puts(clean);
    }
    jz_cli_response_clear(&r);
    return 0;
}

/* "node drain NAME --reason TEXT" / "node resume NAME" / "node rm NAME": verb first. */
static int cmd_node(struct jz_cli *cli, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2)
            return usage_error(cli, "expected 'node drain', 'node resume' or 'node rm'");
        return print_usage(cli);
    }
    if (strcmp(argv[1], "drain") != 0 && strcmp(argv[1], "resume") != 0 &&
        strcmp(argv[1], "rm") != 0) {
        char clean[64], msg[160];
        jz_cli_sanitize(argv[1], clean, sizeof clean);
        snprintf(msg, sizeof msg,
                 "unknown node command '%s' (expected drain, resume or rm; revoke is 'jazari "
                 "admin node revoke')",
                 clean);
        return usage_error(cli, msg);
    }
    struct jz_cli_node_args a;
    struct jz_error err = {0};
    if (jz_cli_node_parse(cli, argc - 1, argv + 1, &a, &err) != 0)
        return usage_error(cli, err.msg);
    if (cli->help)
        return print_usage(cli);
    return node_send(cli, &a);
}

static void caps_text(const json_t *caps, char *buf, size_t len)
{
    size_t off = 0, i;
    json_t *c;
    buf[0] = '\0';
    json_array_foreach(caps, i, c)
    {
        if (!json_is_string(c))
            continue;
        int w = snprintf(buf + off, len - off, "%s%s", off ? "," : "", json_string_value(c));
        if (w < 0 || (size_t)w >= len - off)
            break;
        off += (size_t)w;
    }
}

/* A schema value as short text: strings bare, anything else as compact JSON. */
static char *value_text(const json_t *v)
{
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

void jz_cli_plugin_show(const json_t *p)
{
    char caps[256];
    caps_text(json_object_get(p, "caps"), caps, sizeof caps);
    char clean[600], name[400], version[200], status[200];
    jz_cli_sanitize(jz_json_str(p, "description", ""), clean, sizeof clean);
    jz_cli_sanitize(jz_json_str(p, "name", "?"), name, sizeof name);
    jz_cli_sanitize(jz_json_str(p, "version", "?"), version, sizeof version);
    jz_cli_sanitize(jz_json_str(p, "status", "?"), status, sizeof status);
    printf("%s %s (%s%s)\n", name, version, status,
           json_is_true(json_object_get(p, "default")) ? ", default" : "");
    if (clean[0])
        printf("  %s\n", clean);
    if (jz_json_str(p, "sha256", NULL))
        printf("  sha256: %s\n", jz_json_str(p, "sha256", ""));
    if (caps[0])
        printf("  caps: %s\n", caps);
    if (jz_json_str(p, "reason", NULL)) {
        jz_cli_sanitize(jz_json_str(p, "reason", ""), clean, sizeof clean);
        printf("  refused: %s\n", clean);
    }
    json_t *params = json_object_get(p, "params");
    if (json_array_size(params) == 0) {
        printf("\nNo parameters.\n");
        return;
    }
    putchar('\n');
    static const char *const hdr[] = {"PARAM", "TYPE",    "REQUIRED", "DEFAULT",
                                      "RANGE", "CHOICES", "HELP"};
    struct jz_table *t = jz_table_new(7, hdr);
    if (!t)
        return;
    size_t i;
    json_t *s;
    json_array_foreach(params, i, s)
    {
        char *type = value_text(json_object_get(s, "type"));
        json_t *dv = json_object_get(s, "default");
        char *def = dv ? value_text(dv) : NULL;
        if (!dv && jz_json_str(s, "default_json", NULL))
            def = strdup(jz_json_str(s, "default_json", ""));
        char range[96] = "";
        json_t *mn = json_object_get(s, "min"), *mx = json_object_get(s, "max");
        if (json_is_number(mn) && json_is_number(mx) &&
            !(json_number_value(mn) == 0 && json_number_value(mx) == 0)) {
            /* Bounds are values for numbers, a length for strings, a count for lists. */
            const char *tn = jz_json_str(s, "type", "");
            const char *unit = strcmp(tn, "string") == 0     ? "length "
                               : strstr(tn, "_list") != NULL ? "count "
                                                             : "";
            snprintf(range, sizeof range, "%s%g..%g", unit, json_number_value(mn),
                     json_number_value(mx));
        }
        char *choices = NULL;
        json_t *ch = json_object_get(s, "choices");
        if (json_is_array(ch)) {
            char buf[256];
            caps_text(ch, buf, sizeof buf);
            for (char *c = buf; *c; c++)
                if (*c == ',')
                    *c = '|';
            choices = strdup(buf);
        } else {
            choices = value_text(ch);
        }
        const char *cells[] = {jz_json_str(s, "name", NULL),
                               type,
                               jz_json_bool(s, "required", false) ? "yes" : "no",
                               def,
                               range[0] ? range : NULL,
                               choices,
                               jz_json_str(s, "help", NULL)};
        jz_table_add(t, cells);
        free(type);
        free(def);
        free(choices);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
}

static int cmd_plugins(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[1];
    int n, rc;
    if ((rc = parse_simple(cli, argc, argv, pos, 0, 1, &n)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if ((rc = resolve(cli)))
        return rc;
    struct jz_cli_response r;
    if ((rc = request(cli, "GET", "/v1/plugins", NULL, &r)))
        return rc;
    json_t *list = json_object_get(r.json, "plugins");
    if (n == 1) {
        json_t *found = NULL, *p;
        size_t i;
        /* NAME shows the version a submission gets (the default); NAME@VERSION that one. */
        const char *at = strchr(pos[0], '@');
        size_t nlen = at ? (size_t)(at - pos[0]) : strlen(pos[0]);
        json_array_foreach(list, i, p)
        {
            const char *pn = jz_json_str(p, "name", "");
            if (strlen(pn) != nlen || strncmp(pn, pos[0], nlen) != 0)
                continue;
            if (at ? strcmp(jz_json_str(p, "version", ""), at + 1) == 0
                   : !found || json_is_true(json_object_get(p, "default")))
                found = p;
        }
        if (!found) {
            char clean[128];
            jz_cli_sanitize(pos[0], clean, sizeof clean);
            jz_cli_errorf(cli, "no plugin named '%s'", clean);
            rc = JZ_CLI_EXIT_FAIL;
        } else if (cli->json) {
            print_json(found);
        } else {
            jz_cli_plugin_show(found);
        }
        jz_cli_response_clear(&r);
        return rc;
    }
    if (cli->json) {
        print_raw(&r);
        jz_cli_response_clear(&r);
        return 0;
    }
    static const char *const hdr[] = {"NAME", "VERSION", "STATUS", "SHA256", "CAPS",
                                      "DESCRIPTION"};
    struct jz_table *t = jz_table_new(6, hdr);
    if (!t) {
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_FAIL;
    }
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        char caps[256], desc[600];
        caps_text(json_object_get(p, "caps"), caps, sizeof caps);
        const char *reason = jz_json_str(p, "reason", NULL);
        if (reason)
            snprintf(desc, sizeof desc, "%s", reason);
        else
            snprintf(desc, sizeof desc, "%s", jz_json_str(p, "description", ""));
        /* The default version (what NAME alone selects) is starred; 12 hex digits of the
         * file's SHA-256 tell versions and rebuilds apart. */
        char status[32], sha[16];
        snprintf(status, sizeof status, "%s%s", jz_json_str(p, "status", "?"),
                 json_is_true(json_object_get(p, "default")) ? "*" : "");
        snprintf(sha, sizeof sha, "%.12s", jz_json_str(p, "sha256", "-"));
        const char *cells[] = {jz_json_str(p, "name", NULL), jz_json_str(p, "version", NULL),
                               status, sha, caps[0] ? caps : NULL, desc};
        jz_table_add(t, cells);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
    jz_cli_response_clear(&r);
    return 0;
}

/* The UNIX USER cell: the account, marked when it is the tenant's default. */
static void unix_cell(const json_t *u, char *buf, size_t len)
{
    const char *acct = jz_json_str(u, "unix_user", NULL);
    if (!acct)
        jz_strlcpy(buf, "-", len);
    else
        snprintf(buf, len, "%s%s", acct,
                 strcmp(jz_json_str(u, "unix_user_from", ""), "tenant") == 0 ? " (tenant)" : "");
}

static int cmd_whoami(struct jz_cli *cli, int argc, char **argv)
{
    int rc;
    struct jz_cli_response r;
    if (!get_for_command(cli, argc, argv, "/v1/whoami", &r, &rc))
        return rc;
    char line[4096], clean[4096], acct[80] = "";
    if (jz_json_str(r.json, "unix_user", NULL)) {
        char cell[64];
        unix_cell(r.json, cell, sizeof cell);
        snprintf(acct, sizeof acct, ", unix user %s", cell);
    }
    snprintf(line, sizeof line, "%s (tenant %s, role %s%s) at %s",
             jz_json_str(r.json, "name", "?"), jz_json_str(r.json, "tenant", "?"),
             jz_json_str(r.json, "role", "?"), acct, cli->url);
    jz_cli_sanitize(line, clean, sizeof clean);
    puts(clean);
    jz_cli_response_clear(&r);
    return 0;
}

/* ---- admin ------------------------------------------------------------------------------- */

/* Option ids of the admin subcommands and `token` (indexes into parse_opts' vals). */
enum {
    AO_TENANT = 1, AO_ROLE, AO_UNIX, AO_EXPIRES, AO_USER, AO_SINCE, AO_LIMIT, AO_NOTE, AO_KIND,
    AO_OVERRIDE
};

#define MAX_WHEN_ARG 64 /* bytes of --expires and --since (the server's bound) */

/* Parses a subcommand's options (specs; each value lands in vals[id], ids 1..15) and up to
 * maxpos positionals into pos. Returns 0 or the exit code of a usage error. */
static int parse_opts(struct jz_cli *cli, int argc, char **argv,
                      const struct jz_cli_optspec *specs, const char **vals, const char **pos,
                      int maxpos, int *npos)
{
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    jz_cli_opt_init(&st, argc, argv);
    *npos = 0;
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, specs, &val, &err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return usage_error(cli, err.msg);
        if (id == JZ_CLI_OPT_DASHDASH) {
            for (; st.i < argc; st.i++) {
                if (*npos >= maxpos)
                    return usage_error(cli, "too many arguments");
                pos[(*npos)++] = argv[st.i];
            }
            break;
        }
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (*npos >= maxpos)
                return usage_error(cli, "too many arguments");
            pos[(*npos)++] = val;
        } else if (id >= JZ_CLI_OPT_COMMON) {
            jz_cli_common_option(cli, id, val);
        } else if (strlen(val) > 256) {
            return usage_error(cli, "an option's value is longer than 256 bytes");
        } else {
            vals[id] = val;
        }
    }
    return 0;
}

/* A user name or token id to put in a path: the server's own characters, so no encoding. */
static bool segment_ok(const char *s)
{
    return s && jz_name_is_safe(s, 128);
}

static bool when_ok(struct jz_cli *cli, const char *opt, const char *v, int *rc)
{
    if (v && (!*v || strlen(v) > MAX_WHEN_ARG)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: expected a duration (90d, 12h, 30m) or a date (2026-12-31)",
                 opt);
        *rc = usage_error(cli, msg);
        return false;
    }
    return true;
}

/* Prints a new token alone on stdout (for `tok=$(jazari ...)`) and what it is on stderr. */
static int print_new_token(const struct jz_cli *cli, const struct jz_cli_response *r)
{
    const char *token = jz_json_str(r->json, "token", NULL);
    if (cli->json) {
        print_raw(r);
        return 0;
    }
    if (!token) {
        jz_cli_errorf(cli, "the server's answer has no token");
        return JZ_CLI_EXIT_FAIL;
    }
    char clean[JZ_CLI_MAX_TOKEN], line[512], cline[512], when[64];
    jz_cli_sanitize(token, clean, sizeof clean);
    puts(clean);
    const char *id = jz_json_str(r->json, "id", jz_json_str(r->json, "token_id", NULL));
    if (id) {
        const char *expires = jz_json_str(r->json, "expires", NULL);
        jz_cli_time_local(expires, when, sizeof when);
        int64_t revoked = jz_json_int(r->json, "revoked", 0);
        snprintf(line, sizeof line, "Token %s for %s; %s%s.", id,
                 jz_json_str(r->json, "user", jz_json_str(r->json, "name", "?")),
                 expires ? "it expires " : "it does not expire", expires ? when : "");
        jz_cli_sanitize(line, cline, sizeof cline);
        fprintf(stderr, "%s", cline);
        if (revoked)
            fprintf(stderr, " %lld other token%s revoked.", (long long)revoked,
                    revoked == 1 ? "" : "s");
        fputc('\n', stderr);
    }
    return 0;
}

/* "admin user add NAME --tenant T [--role R] [--unix-user ACCOUNT] [--expires WHEN]". */
static const struct jz_cli_optspec admin_user_add_opts[] = {
    {"tenant", 0, true, AO_TENANT},
    {"role", 0, true, AO_ROLE},
    {"unix-user", 0, true, AO_UNIX},
    {"expires", 0, true, AO_EXPIRES},
    {NULL, 0, false, 0},
};
static int admin_user_add(struct jz_cli *cli, int argc, char **argv)
{
    const char *vals[16] = {0}, *pos[1];
    int npos, rc;
    if ((rc = parse_opts(cli, argc, argv, admin_user_add_opts, vals, pos, 1, &npos)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    const char *role = vals[AO_ROLE] ? vals[AO_ROLE] : "user";
    if (strcmp(role, "user") != 0 && strcmp(role, "admin") != 0 &&
        strcmp(role, "tenant-admin") != 0)
        return usage_error(cli, "--role: expected 'user', 'tenant-admin' or 'admin'");
    if (npos < 1 || !*pos[0])
        return usage_error(cli, "missing user name");
    if (!vals[AO_TENANT] || !*vals[AO_TENANT])
        return usage_error(cli, "missing --tenant");
    if (!when_ok(cli, "--expires", vals[AO_EXPIRES], &rc) || (rc = resolve(cli)))
        return rc;
    json_t *body = json_pack("{s:s,s:s,s:s}", "name", pos[0], "tenant", vals[AO_TENANT], "role",
                             role);
    if (vals[AO_UNIX] && *vals[AO_UNIX])
        json_object_set_new(body, "unix_user", json_string(vals[AO_UNIX]));
    if (vals[AO_EXPIRES])
        json_object_set_new(body, "expires", json_string(vals[AO_EXPIRES]));
    struct jz_cli_response r;
    rc = request(cli, "POST", "/v1/admin/users", body, &r);
    json_decref(body);
    if (rc)
        return rc;
    rc = print_new_token(cli, &r); /* shown only now */
    jz_cli_response_clear(&r);
    return rc;
}

static int admin_user_list(struct jz_cli *cli, int argc, char **argv)
{
    int rc;
    struct jz_cli_response r;
    if (!get_for_command(cli, argc, argv, "/v1/admin/users", &r, &rc))
        return rc;
    static const char *const hdr[] = {"NAME", "TENANT", "ROLE", "UNIX USER", "TOKENS", "CREATED"};
    struct jz_table *t = jz_table_new(6, hdr);
    if (!t) {
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_FAIL;
    }
    jz_table_align_right(t, 4);
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(r.json, "users"), i, u)
    {
        char created[32], acct[80], ntok[24];
        jz_cli_time_local(jz_json_str(u, "created", NULL), created, sizeof created);
        unix_cell(u, acct, sizeof acct);
        snprintf(ntok, sizeof ntok, "%lld", (long long)jz_json_int(u, "tokens", 0));
        const char *cells[] = {jz_json_str(u, "name", NULL), jz_json_str(u, "tenant", NULL),
                               jz_json_str(u, "role", NULL), acct, ntok, created};
        jz_table_add(t, cells);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin user set NAME [--unix-user ACCOUNT] [--role ROLE]" ("" clears the account). */
static const struct jz_cli_optspec admin_user_set_opts[] = {
    {"unix-user", 0, true, AO_UNIX},
    {"role", 0, true, AO_ROLE},
    {NULL, 0, false, 0},
};
static int admin_user_set(struct jz_cli *cli, int argc, char **argv)
{
    const char *vals[16] = {0}, *pos[1];
    int npos, rc;
    if ((rc = parse_opts(cli, argc, argv, admin_user_set_opts, vals, pos, 1, &npos)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if (npos < 1 || !segment_ok(pos[0]))
        return usage_error(cli, "expected a user name (A-Z a-z 0-9 . _ -)");
    if (!vals[AO_UNIX] && !vals[AO_ROLE])
        return usage_error(cli, "nothing to set: give --unix-user ACCOUNT ('' clears it) or "
                                "--role user|tenant-admin|admin");
    if ((rc = resolve(cli)))
        return rc;
    json_t *body = json_object();
    if (vals[AO_UNIX])
        json_object_set_new(body, "unix_user",
                            *vals[AO_UNIX] ? json_string(vals[AO_UNIX]) : json_null());
    if (vals[AO_ROLE])
        json_object_set_new(body, "role", json_string(vals[AO_ROLE]));
    char path[256];
    snprintf(path, sizeof path, "/v1/admin/users/%s", pos[0]);
    struct jz_cli_response r;
    rc = request(cli, "POST", path, body, &r);
    json_decref(body);
    if (rc)
        return rc;
    if (cli->json) {
        print_raw(&r);
    } else {
        char acct[80], line[512], clean[512];
        unix_cell(r.json, acct, sizeof acct);
        if (vals[AO_ROLE])
            snprintf(line, sizeof line, "%s: role %s, unix user %s",
                     jz_json_str(r.json, "name", pos[0]), jz_json_str(r.json, "role", "?"), acct);
        else
            snprintf(line, sizeof line, "%s: unix user %s", jz_json_str(r.json, "name", pos[0]),
                     acct);
        jz_cli_sanitize(line, clean, sizeof clean);
        puts(clean);
    }
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin user rm NAME": its tokens are revoked at once; its jobs keep their records. */
static int admin_user_rm(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[1];
    int n, rc;
    if ((rc = parse_simple(cli, argc, argv, pos, 1, 1, &n)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if (!segment_ok(pos[0]))
        return usage_error(cli, "expected a user name (A-Z a-z 0-9 . _ -)");
    if ((rc = resolve(cli)))
        return rc;
    char path[256];
    snprintf(path, sizeof path, "/v1/admin/users/%s", pos[0]);
    struct jz_cli_response r;
    if ((rc = request(cli, "DELETE", path, NULL, &r)))
        return rc;
    if (cli->json)
        print_raw(&r);
    else
        printf("removed %s (%lld token%s revoked)\n", pos[0],
               (long long)jz_json_int(r.json, "tokens_revoked", 0),
               jz_json_int(r.json, "tokens_revoked", 0) == 1 ? "" : "s");
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin token list [--user U]". */
static const struct jz_cli_optspec admin_token_list_opts[] = {
    {"user", 'u', true, AO_USER},
    {NULL, 0, false, 0},
};
static int admin_token_list(struct jz_cli *cli, int argc, char **argv)
{
    const char *vals[16] = {0}, *pos[1];
    int npos, rc;
    if ((rc = parse_opts(cli, argc, argv, admin_token_list_opts, vals, pos, 0, &npos)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if (vals[AO_USER] && !segment_ok(vals[AO_USER]))
        return usage_error(cli, "--user: expected a user name (A-Z a-z 0-9 . _ -)");
    if ((rc = resolve(cli)))
        return rc;
    char path[256] = "/v1/admin/tokens";
    if (vals[AO_USER])
        snprintf(path, sizeof path, "/v1/admin/tokens?user=%s", vals[AO_USER]);
    struct jz_cli_response r;
    if ((rc = request(cli, "GET", path, NULL, &r)))
        return rc;
    if (cli->json) {
        print_raw(&r);
        jz_cli_response_clear(&r);
        return 0;
    }
    static const char *const hdr[] = {"ID", "USER", "CREATED", "EXPIRES", "LAST USED"};
    struct jz_table *t = jz_table_new(5, hdr);
    if (!t) {
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_FAIL;
    }
    size_t i;
    json_t *tk;
    int64_t now = jz_time_now_ms();
    json_array_foreach(json_object_get(r.json, "tokens"), i, tk)
    {
        char created[32], expires[48], used[32];
        jz_cli_time_local(jz_json_str(tk, "created", NULL), created, sizeof created);
        if (jz_json_bool(tk, "expired", false)) {
            char when[32];
            jz_cli_time_local(jz_json_str(tk, "expires", NULL), when, sizeof when);
            snprintf(expires, sizeof expires, "expired %s", when);
        } else if (jz_json_str(tk, "expires", NULL)) {
            jz_cli_time_local(jz_json_str(tk, "expires", NULL), expires, sizeof expires);
        } else {
            jz_strlcpy(expires, "never", sizeof expires);
        }
        jz_cli_age_format(jz_json_str(tk, "last_used", NULL), now, used, sizeof used);
        const char *cells[] = {jz_json_str(tk, "id", NULL), jz_json_str(tk, "user", NULL),
                               created, expires, used};
        jz_table_add(t, cells);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin token add|rotate --user U [--expires WHEN]": the new token alone on stdout. */
static const struct jz_cli_optspec admin_token_new_opts[] = {
    {"user", 'u', true, AO_USER},
    {"expires", 0, true, AO_EXPIRES},
    {NULL, 0, false, 0},
};
static int admin_token_new(struct jz_cli *cli, int argc, char **argv, const char *path)
{
    const char *vals[16] = {0}, *pos[1];
    int npos, rc;
    if ((rc = parse_opts(cli, argc, argv, admin_token_new_opts, vals, pos, 0, &npos)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if (!vals[AO_USER] || !*vals[AO_USER])
        return usage_error(cli, "missing --user");
    if (!when_ok(cli, "--expires", vals[AO_EXPIRES], &rc) || (rc = resolve(cli)))
        return rc;
    json_t *body = json_pack("{s:s, s:s?}", "user", vals[AO_USER], "expires", vals[AO_EXPIRES]);
    struct jz_cli_response r;
    rc = request(cli, "POST", path, body, &r);
    json_decref(body);
    if (rc)
        return rc;
    rc = print_new_token(cli, &r);
    jz_cli_response_clear(&r);
    return rc;
}

/* "admin token revoke ID": refused from the next request on. */
static int admin_token_revoke(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[1];
    int n, rc;
    if ((rc = parse_simple(cli, argc, argv, pos, 1, 1, &n)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    /* A token in a path would end up in logs: the id is what names it. */
    if (!segment_ok(pos[0]) || strncmp(pos[0], "jz_", 3) == 0)
        return usage_error(cli, "expected a token id (tk_..., see 'jazari admin token list'), "
                                "not a token");
    if ((rc = resolve(cli)))
        return rc;
    char path[256];
    snprintf(path, sizeof path, "/v1/admin/tokens/%s", pos[0]);
    struct jz_cli_response r;
    if ((rc = request(cli, "DELETE", path, NULL, &r)))
        return rc;
    if (cli->json) {
        print_raw(&r);
    } else {
        char line[512], clean[512];
        snprintf(line, sizeof line, "revoked %s (of %s)", pos[0],
                 jz_json_str(r.json, "user", "?"));
        jz_cli_sanitize(line, clean, sizeof clean);
        puts(clean);
    }
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin audit [--since WHEN] [--limit N]": TIME WHO ACTION TARGET FROM DETAIL, oldest first. */
static const struct jz_cli_optspec admin_audit_opts[] = {
    {"since", 0, true, AO_SINCE},
    {"limit", 0, true, AO_LIMIT}, /* no -n: that is a job's name */
    {NULL, 0, false, 0},
};
static int admin_audit(struct jz_cli *cli, int argc, char **argv)
{
    const char *vals[16] = {0}, *pos[1];
    int npos, rc;
    if ((rc = parse_opts(cli, argc, argv, admin_audit_opts, vals, pos, 0, &npos)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    int64_t limit = 100;
    struct jz_error err = {0};
    if (vals[AO_LIMIT] && jz_cli_parse_int(vals[AO_LIMIT], 1, 1000, "--limit", &limit, &err))
        return usage_error(cli, err.msg);
    if (!when_ok(cli, "--since", vals[AO_SINCE], &rc) || (rc = resolve(cli)))
        return rc;
    char path[512];
    snprintf(path, sizeof path, "/v1/admin/audit?limit=%lld", (long long)limit);
    if (vals[AO_SINCE] && !jz_cli_query_add(path, sizeof path, "since", vals[AO_SINCE], false))
        return usage_error(cli, "--since: too long");
    struct jz_cli_response r;
    if ((rc = request(cli, "GET", path, NULL, &r)))
        return rc;
    if (cli->json) {
        print_raw(&r);
        jz_cli_response_clear(&r);
        return 0;
    }
    static const char *const hdr[] = {"TIME", "WHO", "ACTION", "TARGET", "FROM", "DETAIL"};
    struct jz_table *t = jz_table_new(6, hdr);
    if (!t) {
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_FAIL;
    }
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r.json, "entries"), i, e)
    {
        char when[32];
        jz_cli_time_local(jz_json_str(e, "time", NULL), when, sizeof when);
        json_t *d = json_object_get(e, "detail");
        char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
        const char *cells[] = {when,
                               jz_json_str(e, "who", NULL),
                               jz_json_str(e, "action", NULL),
                               jz_json_str(e, "target", NULL),
                               jz_json_str(e, "address", NULL),
                               detail};
        jz_table_add(t, cells);
        free(detail);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
    if (jz_json_bool(r.json, "truncated", false))
        fprintf(stderr, "(older entries were left out: use --since or a larger --limit)\n");
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin credit add TENANT CREDITS [--kind purchase|refund|adjustment] [--note TEXT]
 * [--override]": an adjustment may be negative (below a zero balance only with --override). */
static const struct jz_cli_optspec admin_credit_add_opts[] = {
    {"note", 0, true, AO_NOTE},
    {"kind", 0, true, AO_KIND},
    {"override", 0, false, AO_OVERRIDE},
    {NULL, 0, false, 0},
};
static int admin_credit_add(struct jz_cli *cli, int argc, char **argv)
{
    struct jz_cli_optstate st;
    struct jz_error err = {0};
    const char *pos[2] = {NULL, NULL}, *note = NULL, *kind = NULL;
    bool override = false;
    int npos = 0;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, admin_credit_add_opts, &val, &err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return usage_error(cli, err.msg);
        if (id == JZ_CLI_OPT_DASHDASH) {
            for (; st.i < argc; st.i++) { /* "--" lets a negative amount through */
                if (npos == 2)
                    return usage_error(cli, "too many arguments");
                pos[npos++] = argv[st.i];
            }
            break;
        }
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (npos == 2)
                return usage_error(cli, "too many arguments");
            pos[npos++] = val;
        } else if (id == AO_NOTE) {
            note = val;
        } else if (id == AO_KIND) {
            kind = val;
        } else if (id == AO_OVERRIDE) {
            override = true;
        } else {
            jz_cli_common_option(cli, id, val);
        }
    }
    if (cli->help)
        return print_usage(cli);
    if (npos < 2)
        return usage_error(cli, "expected TENANT CREDITS");
    char *end;
    double amount = strtod(pos[1], &end);
    if (*end || end == pos[1])
        return usage_error(cli, "CREDITS: expected a number");
    /* A negative amount is an adjustment (a correction), as the first grants were. */
    if (!kind)
        kind = amount < 0 ? "adjustment" : "purchase";
    int rc = resolve(cli);
    if (rc)
        return rc;
    json_t *body = json_pack("{s:s, s:f, s:s, s:s?, s:b}", "tenant", pos[0], "credits", amount,
                             "kind", kind, "note", note, "override", override);
    struct jz_cli_response r;
    rc = request(cli, "POST", "/v1/admin/credits", body, &r);
    json_decref(body);
    if (rc)
        return rc;
    if (cli->json)
        print_raw(&r);
    else
        printf("%s: balance %.2f credits, %.2f held, %.2f available\n", pos[0],
               jz_json_num(r.json, "balance", 0), jz_json_num(r.json, "held", 0),
               jz_json_num(r.json, "available", 0));
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin node token [--site SITE] [--ttl DURATION]": the token alone on stdout, so that
 * `tok=$(jazari admin node token --site rabat)` works; what it is for goes to stderr. */
static int admin_node_token(struct jz_cli *cli, int argc, char **argv)
{
    json_t *body = NULL;
    struct jz_error err = {0};
    if (jz_cli_node_token_build(cli, argc, argv, &body, &err) != 0)
        return usage_error(cli, err.msg);
    if (cli->help)
        return print_usage(cli);
    int rc = resolve(cli);
    if (rc) {
        json_decref(body);
        return rc;
    }
    struct jz_cli_response r;
    rc = request(cli, "POST", "/v1/admin/node-tokens", body, &r);
    json_decref(body);
    if (rc)
        return rc;
    const char *token = jz_json_str(r.json, "token", NULL);
    if (cli->json) {
        print_raw(&r);
    } else if (token) {
        char clean[JZ_CLI_MAX_TOKEN], site[300], when[64];
        jz_cli_sanitize(token, clean, sizeof clean);
        puts(clean);
        jz_cli_sanitize(jz_json_str(r.json, "site", "?"), site, sizeof site);
        jz_cli_time_local(jz_json_str(r.json, "expires", NULL), when, sizeof when);
        fprintf(stderr, "Node token for site %s; it expires %s.\n", site, when);
    } else {
        jz_cli_errorf(cli, "the server's answer has no token");
        rc = JZ_CLI_EXIT_FAIL;
    }
    jz_cli_response_clear(&r);
    return rc;
}

/* "admin node revoke NAME": the agent is disconnected and its credential refused from now on. */
static int admin_node_revoke(struct jz_cli *cli, int argc, char **argv)
{
    struct jz_cli_node_args a;
    struct jz_error err = {0};
    if (jz_cli_node_parse(cli, argc, argv, &a, &err) != 0)
        return usage_error(cli, err.msg);
    if (cli->help)
        return print_usage(cli);
    return node_send(cli, &a);
}

/* "admin reload": what SIGHUP does, with the outcome printed. */
static int admin_reload(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[1];
    int n, rc;
    if ((rc = parse_simple(cli, argc, argv, pos, 0, 0, &n)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if ((rc = resolve(cli)))
        return rc;
    struct jz_cli_response r;
    if ((rc = request(cli, "POST", "/v1/admin/reload", NULL, &r)))
        return rc;
    if (cli->json) {
        print_raw(&r);
        jz_cli_response_clear(&r);
        return 0;
    }
    const char *heads[] = {"changed", "restart_needed"};
    const char *says[] = {"Changed", "Changed, taking effect at the next start"};
    for (int k = 0; k < 2; k++) {
        json_t *names = json_object_get(r.json, heads[k]);
        if (!json_array_size(names))
            continue;
        printf("%s:", says[k]);
        size_t i;
        json_t *v;
        json_array_foreach(names, i, v) {
            char clean[128];
            jz_cli_sanitize(json_string_value(v) ? json_string_value(v) : "?", clean,
                            sizeof clean);
            printf("%s %s", i ? "," : "", clean);
        }
        putchar('\n');
    }
    if (jz_json_bool(r.json, "scheduler", false))
        printf("Scheduler policy replaced.\n");
    json_t *pl = json_object_get(r.json, "plugins");
    printf("Plugin folders: rescan %s (the service's log says what changed).\n",
           strcmp(jz_json_str(pl, "rescan", ""), "started") == 0 ? "started" : "not started");
    if (jz_json_str(pl, "error", NULL)) {
        char clean[600];
        jz_cli_sanitize(jz_json_str(pl, "error", ""), clean, sizeof clean);
        printf("Plugin folders: %s\n", clean);
    }
    jz_cli_response_clear(&r);
    return 0;
}

/* "admin backup FILE": a consistent copy of the service's database, written to a new file
 * beside FILE and renamed into place once complete, so that FILE is never a partial copy. */
static int admin_backup(struct jz_cli *cli, int argc, char **argv)
{
    /* --force may stand anywhere; take it out before the common parsing. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return JZ_CLI_EXIT_FAIL;
    bool force = false;
    int m = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                rest[m++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--force") == 0)
            force = true;
        else
            rest[m++] = argv[i];
    }
    const char *pos[1];
    int npos, rc = parse_simple(cli, m, rest, pos, 1, 1, &npos);
    free(rest);
    if (rc)
        return rc;
    if (cli->help)
        return print_usage(cli);
    const char *out = pos[0];
    struct stat st;
    if (!force && lstat(out, &st) == 0) {
        jz_cli_errorf(cli, "%s exists (use --force to replace it)", out);
        return JZ_CLI_EXIT_FAIL;
    }
    if ((rc = resolve(cli)))
        return rc;
    /* A new file of our own beside FILE (O_EXCL: never through a link someone left there),
     * readable by us only: it holds token hashes and every tenant's jobs. */
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", out) >= sizeof tmp)
        return usage_error(cli, "FILE: path too long");
    int fd = mkstemp(tmp);
    if (fd >= 0)
        fchmod(fd, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        jz_cli_errorf(cli, "cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return JZ_CLI_EXIT_FAIL;
    }
    struct jz_cli_response r;
    struct jz_error err = {0};
    uint64_t got = 0;
    rc = jz_cli_http_stream(cli, "/v1/admin/backup", write_file, f, &r, &got, &err);
    bool ok = rc == 0 && r.status >= 200 && r.status < 300;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, out) != 0) {
        unlink(tmp);
        if (rc)
            jz_cli_errorf(cli, "%s", err.msg);
        else if (r.status < 200 || r.status >= 300)
            report_status(cli, &r, NULL);
        else
            jz_cli_errorf(cli, "cannot write %s: %s", out, strerror(errno));
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_FAIL;
    }
    jz_cli_response_clear(&r);
    if (!cli->json)
        fprintf(stderr, "%s: %llu bytes, a consistent copy of the service's database\n", out,
                (unsigned long long)got);
    return 0;
}

static int admin_token_add(struct jz_cli *cli, int argc, char **argv)
{
    return admin_token_new(cli, argc, argv, "/v1/admin/tokens");
}

static int admin_token_rotate(struct jz_cli *cli, int argc, char **argv)
{
    return admin_token_new(cli, argc, argv, "/v1/admin/tokens/rotate");
}

static int cmd_admin(struct jz_cli *cli, int argc, char **argv)
{
    /* Object and verb first ("admin user add ..."); "admin audit" has no verb. */
    static const struct {
        const char *object, *verb;
        jz_cli_cmd_fn fn;
    } subs[] = {
        {"user", "add", admin_user_add},       {"user", "list", admin_user_list},
        {"user", "set", admin_user_set},       {"user", "rm", admin_user_rm},
        {"token", "list", admin_token_list},   {"token", "add", admin_token_add},
        {"token", "revoke", admin_token_revoke}, {"token", "rotate", admin_token_rotate},
        {"credit", "add", admin_credit_add},   {"node", "token", admin_node_token},
        {"node", "revoke", admin_node_revoke},
    };
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return print_usage(cli);
    if (argc >= 2 && strcmp(argv[1], "audit") == 0)
        return admin_audit(cli, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "reload") == 0)
        return admin_reload(cli, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "backup") == 0)
        return admin_backup(cli, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "tenant") == 0)
        return jz_cli_admin_tenant(cli, argc - 1, argv + 1);
    for (size_t i = 0; argc >= 3 && i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i].object) == 0 && strcmp(argv[2], subs[i].verb) == 0)
            return subs[i].fn(cli, argc - 2, argv + 2);
    return usage_error(cli, "expected 'admin user add|list|set|rm', 'admin token "
                            "list|add|revoke|rotate', 'admin audit', 'admin credit add', "
                            "'admin node token|revoke', 'admin tenant add|set|show|list|rm', "
                            "'admin reload' or 'admin backup'");
}

/* ---- token (your own) -------------------------------------------------------------------- */

/* "token rotate [--expires WHEN]": a new token for the caller; every other one is revoked. */
static const struct jz_cli_optspec token_opts[] = {
    {"expires", 0, true, AO_EXPIRES},
    {NULL, 0, false, 0},
};
static int cmd_token(struct jz_cli *cli, int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return print_usage(cli);
    if (argc < 2 || strcmp(argv[1], "rotate") != 0)
        return usage_error(cli, "expected 'token rotate'");
    const char *vals[16] = {0}, *pos[1];
    int npos, rc;
    if ((rc = parse_opts(cli, argc - 1, argv + 1, token_opts, vals, pos, 0, &npos)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if (!when_ok(cli, "--expires", vals[AO_EXPIRES], &rc) || (rc = resolve(cli)))
        return rc;
    json_t *body = json_pack("{s:s?}", "expires", vals[AO_EXPIRES]);
    struct jz_cli_response r;
    rc = request(cli, "POST", "/v1/whoami/token", body, &r);
    json_decref(body);
    if (rc)
        return rc;
    rc = print_new_token(cli, &r);
    if (!rc && !cli->json)
        fprintf(stderr, "Your old token no longer works: put the new one where the old one was "
                        "(JAZARI_TOKEN, the token file or the config file).\n");
    jz_cli_response_clear(&r);
    return rc;
}

/* ---- usage ------------------------------------------------------------------------------- */

static int cmd_usage(struct jz_cli *cli, int argc, char **argv)
{
    const char *pos[1];
    int n, rc;
    if ((rc = parse_simple(cli, argc, argv, pos, 0, 1, &n)))
        return rc;
    if (cli->help)
        return print_usage(cli);
    if ((rc = resolve(cli)))
        return rc;
    char path[256] = "/v1/usage";
    if (n == 1) {
        for (const char *c = pos[0]; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-'))
                return usage_error(cli, "tenant names are A-Z a-z 0-9 . _ -");
        snprintf(path, sizeof path, "/v1/usage?tenant=%.200s", pos[0]);
    }
    struct jz_cli_response r;
    if ((rc = request(cli, "GET", path, NULL, &r)))
        return rc;
    if (cli->json) {
        print_raw(&r);
        jz_cli_response_clear(&r);
        return 0;
    }
    static const char *const hdr[] = {"TENANT", "RUNS", "USED GPU-H", "BOUGHT", "CHARGED",
                                      "BALANCE", "HELD", "AVAILABLE"};
    struct jz_table *t = jz_table_new(8, hdr);
    if (!t) {
        jz_cli_response_clear(&r);
        return JZ_CLI_EXIT_FAIL;
    }
    for (size_t c = 1; c < 8; c++)
        jz_table_align_right(t, c);
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(r.json, "tenants"), i, row) {
        char jobs[32], used[32], bought[32], charged[32], bal[32], held[32], avail[32];
        bool metered = jz_json_bool(row, "metered", false);
        snprintf(jobs, sizeof jobs, "%lld", (long long)jz_json_int(row, "jobs", 0));
        snprintf(used, sizeof used, "%.2f", jz_json_num(row, "used_gpu_hours", 0));
        snprintf(bought, sizeof bought, "%.2f", jz_json_num(row, "purchased", 0));
        snprintf(charged, sizeof charged, "%.2f", jz_json_num(row, "charged", 0));
        snprintf(bal, sizeof bal, "%.2f", jz_json_num(row, "balance", 0));
        snprintf(held, sizeof held, "%.2f", jz_json_num(row, "held", 0));
        snprintf(avail, sizeof avail, "%.2f", jz_json_num(row, "available", 0));
        const char *cells[] = {jz_json_str(row, "tenant", "?"), jobs, used,
                               metered ? bought : "-", charged, metered ? bal : "-",
                               held, metered ? avail : "unmetered"};
        jz_table_add(t, cells);
    }
    jz_table_print(t, stdout);
    jz_table_free(t);
    jz_cli_response_clear(&r);
    return 0;
}

/* ---- option tables ----------------------------------------------------------------------- */

/* fetch reads "-o FILE" / "--output FILE" by hand; its entry says so for the checks. */
static const struct jz_cli_optspec fetch_opts[] = {{"output", 'o', true, 1}, {NULL, 0, false, 0}};

const struct jz_cli_option_table jz_cli_option_tables[] = {
    {"logs", logs_opts},
    {"wait", wait_opts},
    {"fetch", fetch_opts},
    {"token", token_opts},
    {"admin user add", admin_user_add_opts},
    {"admin user set", admin_user_set_opts},
    {"admin token list", admin_token_list_opts},
    {"admin token add", admin_token_new_opts},
    {"admin audit", admin_audit_opts},
    {"admin credit add", admin_credit_add_opts},
    {"admin tenant add", jz_cli_admin_tenant_opts},
    {"tenant add-member", jz_cli_tenant_member_opts},
    {"modify", jz_cli_modify_opts},
    {"history", jz_cli_history_opts},
    {"statement", jz_cli_statement_opts},
    {"report usage", jz_cli_report_opts},
    {"reserve", jz_cli_reserve_opts},
    {"reservations", jz_cli_reservations_opts},
    {NULL, NULL},
};

/* ---- the table --------------------------------------------------------------------------- */

#define COMMON_HELP                                                                                \
    "Common options: --json (print the server's JSON), --url URL, --token TOKEN, --ca FILE,\n"     \
    "--help.\n"

const struct jz_cli_command jz_cli_commands[] = {
    {"submit", cmd_submit, "submit a job",
     "Usage: jazari submit [options] [-- command args...]\n"
     "Submits a job and prints its id (the job JSON with --json).\n"
     "  -p, --plugin NAME[@V]  workload plugin, optionally a version: train@1.2 (the newest\n"
     "                         1.2.x); default with a command: batch\n"
     "  -g, --gpus N           GPUs\n"
     "  -c, --cpus N           CPU cores of a job without GPUs\n"
     "      --cpus-per-gpu N   CPU cores per GPU\n"
     "  -t, --time DURATION    time limit (90s, 30m, 1h30m, 2d, 1:30:00, 2-00:00:00)\n"
     "      --mem MB           memory in MB\n"
     "  -n, --name NAME        job name\n"
     "      --preemptible      the job may be preempted\n"
     "  -P, --param KEY=VALUE  a plugin parameter (repeatable; the last one wins)\n"
     "      --params-json JSON parameters as a JSON object, or @FILE (at most 1 MiB)\n"
     "      --resume ID        start from the checkpoint of job ID\n"
     "      --class NAME       priority class (see docs/scheduler.md)\n"
     "      --nodes N          run on N nodes (1..1024, default 1); with N > 1 give\n"
     "                         --gpus-per-node K, or --gpus G for the server to split\n"
     "      --gpus-per-node K  GPUs on each node (1..4096); not with --gpus\n"
     "      --requeue          requeue the job, instead of failing it, when its node is lost\n"
     "      --reservation ID   run in a booked slot of your tenant (jazari reservations):\n"
     "                         only on its nodes, inside its window, paid by the booking\n"
     "With '-- command args...' the plugin runs that command (params.argv).\n" COMMON_HELP},
    {"queue", cmd_queue, "list jobs",
     "Usage: jazari queue [-a] [-s S,...|all] [-u U] [--tenant T] [-n NAME,...] [-r]\n"
     "                    [-O COL,...] [--sort [-]COL] [--noheader] [--limit N]\n"
     "Lists your PENDING and RUNNING jobs; an array is one line, 12_[0-99%10], with how many\n"
     "of its elements are in each state.\n"
     "  -a, --all              everyone's pending and running jobs (others' in brief)\n"
     "  -s, --state LIST       states, comma-separated (PENDING,RUNNING,SUCCEEDED,...), or\n"
     "                         'all' for every state\n"
     "  -u, --user NAME        another user's jobs (admins)\n"
     "      --tenant NAME      a tenant's jobs\n"
     "  -n, --name LIST        only jobs with one of these names\n"
     "  -r, --expand           one line per array element (12_5)\n"
     "  -O, --format LIST      columns, e.g. id,name,state,user,gpus,reason; of id name user\n"
     "                         tenant plugin state gpus time reason submit start end nodes\n"
     "                         array priority nice class (default: id,name,user,tenant,\n"
     "                         plugin,state,gpus,time,reason)\n"
     "      --sort COL         sort by a column; -COL for descending\n"
     "      --noheader         no header line\n"
     "      --limit N          at most N jobs (default 1000)\n" COMMON_HELP},
    {"show", cmd_show, "show one job in detail", "Usage: jazari show ID\n" COMMON_HELP},
    {"why", cmd_why, "explain why a job waits, and when it should start",
     "Usage: jazari why ID\n" COMMON_HELP},
    {"fetch", cmd_fetch, "download an artifact of a job",
     "Usage: jazari fetch ID NAME [-o FILE]\n"
     "Writes the artifact to FILE (default: NAME in the current directory; - for stdout).\n"
     COMMON_HELP},
    {"hold", jz_cli_cmd_hold, "keep pending jobs from starting",
     "Usage: jazari hold ID...\n"
     "Holds each pending job: it keeps its place but does not start until released.\n"
     "Submit with --hold to start held.\n" COMMON_HELP},
    {"release", jz_cli_cmd_release, "let held jobs start",
     "Usage: jazari release ID...\n" COMMON_HELP},
    {"modify", jz_cli_cmd_modify, "change a pending job",
     "Usage: jazari modify ID [--name NAME] [--time-limit T] [--nice N] [--class CLASS]\n"
     "Changes a pending job; it keeps its place in the queue. Users may lower the time limit\n"
     "and set nice >= 0 (a lower priority); admins may change either way.\n"
     "  -n, --name NAME        its name\n"
     "  -t, --time T           a shorter time limit: 90, 1h30m, 90:00, 1-00:00:00\n"
     "                         (--time-limit too)\n"
     "      --nice N           order it as if submitted N seconds later\n"
     "      --class CLASS      its priority class\n" COMMON_HELP},
    {"reserve", jz_cli_cmd_reserve, "book GPUs for a time window",
     "Usage: jazari reserve --gpus N [--model M] [--site S] --start T (--end T | --duration D)\n"
     "                      [--tenant T]\n"
     "Books N GPUs for [start, end), priced and held from the tenant's credit now, charged at\n"
     "the end whether used or not; jobs submitted with --reservation ID run in it at no extra\n"
     "charge. Tenant-admins book for their tenant, admins for any.\n"
     "  -g, --gpus N           GPUs in all (packed on the fewest nodes)\n"
     "      --model M          GPU model (a substring: A100)\n"
     "      --site S           only nodes of this site\n"
     "      --start T          now, +DURATION (+1h), or ISO 8601 with its zone\n"
     "      --end T            the same forms\n"
     "      --duration D       instead of --end: 2h, 90m, 1d\n"
     "      --tenant T         book for another tenant (admins)\n" COMMON_HELP},
    {"reservations", jz_cli_cmd_reservations, "list booked GPU slots",
     "Usage: jazari reservations [--tenant T] [--all]\n"
     "Lists your tenant's bookings not yet over (admins: everyone's).\n"
     "      --tenant T         one tenant's bookings\n"
     "  -a, --all              ended and cancelled ones too\n" COMMON_HELP},
    {"unreserve", jz_cli_cmd_unreserve, "cancel a booking",
     "Usage: jazari unreserve ID\n"
     "Cancels a booking: before its start nothing is charged; after it, the part elapsed.\n"
     "Prints the GPU-hours booked, paid, used by jobs and unused, and the credits charged.\n"
     COMMON_HELP},
    {"history", jz_cli_cmd_history, "finished jobs: wait, run time, GPU-hours, exit code",
     "Usage: jazari history [--since T] [--until T] [--user U] [--tenant T] [--state S]\n"
     "                      [--format table|csv|json] [--limit N]\n"
     "Lists finished jobs, newest first, that ended within [--since, --until).\n"
     "  -S, --since T          2026-11-01, 2026-11-01T10:00:00+01:00, or a time ago: 7d, 12h\n"
     "  -E, --until T          the same forms, or now\n"
     "  -u, --user U           one user's jobs (admins)\n"
     "      --tenant T         one tenant's jobs\n"
     "  -s, --state S          SUCCEEDED, FAILED, CANCELLED, TIMEOUT (comma list)\n"
     "      --format F         table (default), csv or json (--json too)\n"
     "      --limit N          at most N jobs (default 1000)\n" COMMON_HELP},
    {"cancel", cmd_cancel, "cancel jobs",
     "Usage: jazari cancel ID...\n"
     "Cancels each job: ID, an array's element as queue --expand shows it (12_5: array 12,\n"
     "index 5), or a whole array (12_*). A job that had already ended is reported but only\n"
     "fails the command when every job had.\n" COMMON_HELP},
    {"logs", cmd_logs, "print a job's log",
     "Usage: jazari logs [-f] [--json] ID\n"
     "  -f, --follow           keep printing as the log grows, until the job ends\n"
     "      --json             JSON lines: {\"job\": ID, \"offset\": BYTE, \"line\": TEXT} each\n"
     COMMON_HELP},
    {"wait", cmd_wait, "wait for a job to end",
     "Usage: jazari wait [--timeout DURATION] ID\n"
     "Waits until the job ends, following its events (polling an older server), and prints\n"
     "'job ID STATE (reason)'. On a terminal, a line on stderr shows its state and progress.\n"
     "      --timeout DURATION give up after DURATION (90, 10m, 1h30m, 1:30:00, 1-00:00:00)\n"
     "Exit status:\n"
     "  0        the job SUCCEEDED\n"
     "  N        it FAILED with exit code N (1 when it had none)\n"
     "  128+S    it FAILED, killed by signal S\n"
     "  130      it was CANCELLED\n"
     "  152      it hit its time limit (TIMEOUT)\n"
     "  124      --timeout passed first; the job goes on ('timed out' on stderr)\n"
     "  1        server or network error;  2  usage error\n" COMMON_HELP},
    {"nodes", cmd_nodes, "list nodes",
     "Usage: jazari nodes [--site SITE]\n"
     "Lists the nodes: NAME SITE STATE GPUS (free/total) MODEL JOBS (running) HEARTBEAT (age of\n"
     "the agent's last heartbeat, '-' for none), and REASON when a node is draining or drained.\n"
     "      --site SITE        only the nodes of SITE\n" COMMON_HELP},
    {"node", cmd_node, "drain, resume or remove a node (admins)",
     "Usage: jazari node drain NAME --reason TEXT\n"
     "       jazari node resume NAME\n"
     "       jazari node rm NAME\n"
     "'drain' starts no new job on the node and lets running ones finish (--reason, 1-256\n"
     "bytes, is required and shown by 'jazari nodes'); 'resume' puts it back in service; both\n"
     "print the node's new state. 'rm' forgets the node (refused while jobs still run there).\n"
     "To cut a node's agent off, see 'jazari admin node revoke'.\n" COMMON_HELP},
    {"plugins", cmd_plugins, "list plugins, or show one plugin's parameters",
     "Usage: jazari plugins [NAME[@VERSION]]\n"
     "Lists every installed version; STATUS 'ok*' marks the default (newest) version of a\n"
     "name, the one 'submit --plugin NAME' gets. NAME shows its default version's parameters,\n"
     "NAME@VERSION that version's.\n" COMMON_HELP},
    {"plugin", jz_cli_plugin, "check a plugin file without installing it",
     "Usage: jazari plugin check FILE.so [--worker PATH]\n"
     "Describes FILE.so with the local jazari-worker (next to jazari, or $JAZARI_WORKER, or\n"
     "--worker), as the service would: ABI version, name, version, caps, hooks, parameters\n"
     "and the file's SHA-256. Needs no server. Exits 1 with the reason when the service would\n"
     "refuse the file (not a plugin, another ABI major, a bad schema).\n" COMMON_HELP},
    {"usage", cmd_usage, "credit and GPU-hours: bought, charged, held and available, per tenant",
     "Usage: jazari usage [TENANT]\n"
     "Your tenant's usage (every tenant's for admins), in credits (docs/billing.md). Tenants\n"
     "that bought credit are metered: a run holds its time limit's price when it starts, and\n"
     "a job whose hold does not fit waits with the reason 'credits'.\n" COMMON_HELP},
    {"statement", jz_cli_cmd_statement, "a tenant's statement of account",
     "Usage: jazari statement [--tenant T] [--month YYYY-MM | -S T -E T]\n"
     "                        [--format table|json|csv|html] [-o FILE]\n"
     "Every entry of the credit ledger in the period (default: this month), with the opening\n"
     "and closing balance and totals by kind. For tenant-admins and admins; the tenant\n"
     "defaults to yours. --format html is a page to print or save as PDF.\n"
     "  -S, --since T, -E, --until T  2026-11-01, 2026-11-01T10:00:00+01:00, now, or 7d ago\n"
     "  -o, --output FILE      write there instead of standard output\n" COMMON_HELP},
    {"report", jz_cli_cmd_report, "usage reports: GPU-hours, jobs and waits by tenant, user...",
     "Usage: jazari report usage [--by tenant|user|plugin|model|site] [--tenant T]\n"
     "                           [--month YYYY-MM | -S T -E T] [--format table|json|csv]\n"
     "Finished jobs of the period (default: the last 30 days) grouped: jobs, GPU-hours, run\n"
     "hours and wait times (mean, p50, p95, max). Users see their own jobs, tenant-admins\n"
     "their tenant's, admins everything.\n" COMMON_HELP},
    {"whoami", cmd_whoami, "show who the token belongs to", "Usage: jazari whoami\n" COMMON_HELP},
    {"token", cmd_token, "replace your own token",
     "Usage: jazari token rotate [--expires WHEN]\n"
     "Prints a new token for you (alone on stdout) and revokes all your others, the one in use\n"
     "included. The new token expires no later than your current ones do (an admin can give a\n"
     "later expiry); WHEN is a duration from now (90d, 12h, 30m) or a date (2026-12-31).\n"
     COMMON_HELP},
    {"admin", cmd_admin, "manage users, tokens, credits and node credentials (admins)",
     "Usage: jazari admin user add NAME --tenant T [--role user|tenant-admin|admin]\n"
     "                             [--unix-user ACCOUNT] [--expires WHEN]\n"
     "       jazari admin user list\n"
     "       jazari admin user set NAME [--unix-user ACCOUNT] [--role ROLE]\n"
     "       jazari admin user rm NAME\n"
     "       jazari admin token list [--user U]\n"
     "       jazari admin token add --user U [--expires WHEN]\n"
     "       jazari admin token revoke TOKEN_ID\n"
     "       jazari admin token rotate --user U [--expires WHEN]\n"
     "       jazari admin audit [--since WHEN] [--limit N]\n"
     "       jazari admin credit add TENANT CREDITS [--kind purchase|refund|adjustment]\n"
     "                                 [--note TEXT] [--override]\n"
     "       jazari admin node token [--site SITE] [--ttl DURATION]\n"
     "       jazari admin node revoke NAME\n"
     "       jazari admin reload\n"
     "       jazari admin backup FILE [--force]\n"
     "       jazari admin tenant add|set NAME [--class C] [--site S] [--weight W]\n"
     "                       [--max-gpus N] [--site-quota SITE=N]... [--model-quota MODEL=N]...\n"
     "                       [--priority-class C]\n"
     "       jazari admin tenant show|rm NAME\n"
     "       jazari admin tenant list\n"
     "'user add', 'token add' and 'token rotate' print the new token alone on stdout (it is\n"
     "shown only this once) and its id and expiry on stderr. WHEN is a duration from now (90d,\n"
     "12h, 30m, 2s) or an ISO-8601 date or time (2026-12-31, 2026-12-31T12:00:00Z); for\n"
     "--since, a duration counts back from now. Without --expires a token does not expire.\n"
     "--unix-user is the POSIX account the user's jobs run as ([a-z_][a-z0-9_-]{0,31});\n"
     "'user set' with an empty --unix-user clears it (the tenant's default applies again).\n"
     "'user rm' revokes the user's tokens at once; its jobs keep their records. The last\n"
     "admin cannot be removed. 'token rotate' revokes every other token of the user; for the\n"
     "user 'admin' it also rewrites STATE/admin.token. 'audit' lists admin actions, oldest\n"
     "first: TIME WHO ACTION TARGET FROM DETAIL (default: the last 100; --limit at most 1000).\n"
     "'node token' prints a token with which a node agent joins SITE (default: default); it is\n"
     "valid for --ttl (default 1d; 90, 30m, 12h, 7d). The token alone goes to stdout, its site\n"
     "and expiry to stderr.\n"
     "'node revoke' disconnects the node's agent; its credential is refused from then on.\n"
     "'reload' re-reads the service's configuration file and plugin folders, as SIGHUP does,\n"
     "and prints what changed (a file with an error changes nothing and is reported).\n"
     "'backup' writes a consistent copy of the service's database to FILE (SQLite's online\n"
     "backup; FILE appears only once complete); restoring is in docs/ops-guide.md.\n"
     "'tenant add' makes a tenant object (--class is required: institute, university, startup,\n"
     "public or a class of the prices); its fields override the configuration file's\n"
     "scheduler.tenants entry: --weight (fair share, (0, 1e6]), --max-gpus (0: no limit),\n"
     "--site-quota and --model-quota (GPUs in use at once per site, per GPU model; repeat\n"
     "them), --priority-class (the scheduler class of its jobs). 'tenant set' changes the\n"
     "fields given. 'tenant rm' needs a tenant without members and jobs (docs/tenants.md).\n"
     COMMON_HELP},
    {"tenant", jz_cli_cmd_tenant, "your tenant and its members (tenant-admins)",
     "Usage: jazari tenant show [NAME]\n"
     "       jazari tenant members [NAME]\n"
     "       jazari tenant add-member USER [--role user|tenant-admin] [--unix-user U]\n"
     "                                [--expires WHEN] [--tenant T]\n"
     "       jazari tenant rm-member USER [--tenant T]\n"
     "       jazari tenant new-token USER [--expires WHEN] [--tenant T]\n"
     "For a tenant-admin (role tenant-admin) of the tenant, or an admin; the tenant is your own\n"
     "unless NAME or --tenant says otherwise. 'add-member' and 'new-token' print the member's\n"
     "new token alone on stdout (shown only this once); 'new-token' revokes the member's other\n"
     "tokens. Admins are made only by admins ('jazari admin user add').\n"
     COMMON_HELP},
    {NULL, NULL, NULL, NULL},
};

static void print_main_usage(FILE *out)
{
    fprintf(out, "Usage: jazari [--url URL] [--token TOKEN] [--ca FILE] [--json] COMMAND "
                 "[args...]\n\n"
                 "Commands:\n");
    for (const struct jz_cli_command *c = jz_cli_commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    for (const struct jz_cli_command *c = extra_commands; c && c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out,
            "\nServer: --url, else JAZARI_URL, else the config file, else %s.\n"
            "Token: --token, else JAZARI_TOKEN, else the file named by JAZARI_TOKEN_FILE,\n"
            "else the config file ($JAZARI_CONFIG or ~/.config/jazari/config: lines\n"
            "'url = ...' and 'token = ...').\n"
            "CA (https:// only): --ca FILE, else JAZARI_CA, else the config file's 'ca = FILE';\n"
            "without one the system's CA store checks the server's certificate.\n"
            "'jazari COMMAND --help' describes a command.\n",
            JZ_CLI_DEFAULT_URL);
}

int jz_cli_main(int argc, char **argv, const struct jz_cli_command *extra)
{
    struct jz_cli cli = {.cmd = NULL};
    extra_commands = extra;
    if (argc > JZ_CLI_MAX_ARGS) {
        jz_cli_errorf(&cli, "command line has %d arguments, more than %d", argc, JZ_CLI_MAX_ARGS);
        return JZ_CLI_EXIT_USAGE;
    }
    /* Common options may also come before the command. */
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            cli.json = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_main_usage(stdout);
            return JZ_CLI_EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            jz_version_print(stdout, "jazari");
            return JZ_CLI_EXIT_OK;
        } else if (strcmp(a, "--url") == 0 || strcmp(a, "--token") == 0 ||
                   strcmp(a, "--ca") == 0) {
            if (i + 1 >= argc) {
                jz_cli_errorf(&cli, "option '%s' needs a value", a);
                return JZ_CLI_EXIT_USAGE;
            }
            if (a[2] == 'u')
                cli.url_flag = argv[++i];
            else if (a[2] == 't')
                cli.token_flag = argv[++i];
            else
                cli.ca_flag = argv[++i];
        } else if (strncmp(a, "--ca=", 5) == 0) {
            cli.ca_flag = a + 5;
        } else if (strncmp(a, "--url=", 6) == 0) {
            cli.url_flag = a + 6;
        } else if (strncmp(a, "--token=", 8) == 0) {
            cli.token_flag = a + 8;
        } else if (a[0] == '-') {
            jz_cli_errorf(&cli, "unknown option '%.64s'", a);
            fprintf(stderr, "Try 'jazari --help'.\n");
            return JZ_CLI_EXIT_USAGE;
        } else {
            break;
        }
    }
    if (i >= argc) {
        print_main_usage(stderr);
        return JZ_CLI_EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        const struct jz_cli_command *c = i + 1 < argc ? find_command(argv[i + 1]) : NULL;
        if (c)
            fputs(c->usage, stdout);
        else
            print_main_usage(stdout);
        return JZ_CLI_EXIT_OK;
    }
    const struct jz_cli_command *c = find_command(argv[i]);
    if (!c) {
        char clean[64];
        jz_cli_sanitize(argv[i], clean, sizeof clean);
        const char *names[64];
        size_t n = 0;
        for (int pass = 0; pass < 2; pass++)
            for (const struct jz_cli_command *k = pass == 0 ? jz_cli_commands : extra_commands;
                 k && k->name && n < sizeof names / sizeof names[0]; k++)
                names[n++] = k->name;
        const char *near = jz_str_nearest(argv[i], names, n);
        if (near)
            jz_cli_errorf(&cli, "unknown command '%s'; did you mean '%s'?", clean, near);
        else
            jz_cli_errorf(&cli, "unknown command '%s'", clean);
        fprintf(stderr, "Try 'jazari --help'.\n");
        return JZ_CLI_EXIT_USAGE;
    }
    cli.cmd = c->name;
    int rc = c->fn(&cli, argc - i, argv + i);
    if (fflush(stdout) != 0 && rc == 0) {
        jz_cli_errorf(&cli, "cannot write to standard output: %s", strerror(errno));
        rc = JZ_CLI_EXIT_FAIL;
    }
    return rc;
}
