/* Command-line parsing for the jazari client: a small option walker, and the parsers that turn
 * `submit`, `queue`, `nodes`, `node` and `admin node token` arguments into request bodies and
 * paths (no I/O beyond --params-json @file). */
#include "clients/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"

static const struct jz_cli_optspec common_specs[] = {
    {"json", 0, false, JZ_CLI_OPT_JSON},
    {"url", 0, true, JZ_CLI_OPT_URL},
    {"token", 0, true, JZ_CLI_OPT_TOKEN},
    {"ca", 0, true, JZ_CLI_OPT_CA},
    {"help", 'h', false, JZ_CLI_OPT_HELP},
    {NULL, 0, false, 0},
};

void jz_cli_opt_init(struct jz_cli_optstate *st, int argc, char **argv)
{
    st->argc = argc;
    st->argv = argv;
    st->i = 1;
}

static const struct jz_cli_optspec *find_long(const struct jz_cli_optspec *specs, const char *name,
                                              size_t n)
{
    for (int pass = 0; pass < 2; pass++) {
        const struct jz_cli_optspec *s = pass == 0 ? specs : common_specs;
        for (; s && s->name; s++)
            if (strlen(s->name) == n && strncmp(s->name, name, n) == 0)
                return s;
    }
    return NULL;
}

static const struct jz_cli_optspec *find_short(const struct jz_cli_optspec *specs, char c)
{
    for (int pass = 0; pass < 2; pass++) {
        const struct jz_cli_optspec *s = pass == 0 ? specs : common_specs;
        for (; s && s->name; s++)
            if (s->short_name == c)
                return s;
    }
    return NULL;
}

/* "unknown option '--limt' (did you mean '--limit'?)": the hint only for a near miss. */
static void unknown_long(const struct jz_cli_optspec *specs, const char *name, size_t n,
                         struct jz_error *err)
{
    char given[65];
    snprintf(given, sizeof given, "%.*s", (int)(n > 64 ? 64 : n), name);
    const char *names[64];
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (const struct jz_cli_optspec *s = pass == 0 ? specs : common_specs;
             s && s->name && k < sizeof names / sizeof names[0]; s++)
            names[k++] = s->name;
    const char *best = jz_str_nearest(given, names, k);
    if (best)
        jz_error_set(err, JZ_EINVAL, "unknown option '--%s' (did you mean '--%s'?)", given, best);
    else
        jz_error_set(err, JZ_EINVAL, "unknown option '--%s'", given);
}

int jz_cli_opt_next(struct jz_cli_optstate *st, const struct jz_cli_optspec *specs,
                    const char **val, struct jz_error *err)
{
    *val = NULL;
    if (st->i >= st->argc)
        return JZ_CLI_OPT_END;
    const char *a = st->argv[st->i++];
    if (strcmp(a, "--") == 0)
        return JZ_CLI_OPT_DASHDASH;
    /* "-" alone and negative numbers are values, not options. */
    if (a[0] != '-' || a[1] == '\0' || isdigit((unsigned char)a[1])) {
        *val = a;
        return JZ_CLI_OPT_POSITIONAL;
    }
    const struct jz_cli_optspec *s;
    const char *inline_val = NULL;
    if (a[1] == '-') {
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        s = find_long(specs, name, n);
        if (!s) {
            unknown_long(specs, name, n, err);
            return JZ_CLI_OPT_ERROR;
        }
        if (eq)
            inline_val = eq + 1;
    } else {
        if (a[2] != '\0') {
            jz_error_set(err, JZ_EINVAL, "unknown option '%.64s'", a);
            return JZ_CLI_OPT_ERROR;
        }
        s = find_short(specs, a[1]);
        if (!s) {
            jz_error_set(err, JZ_EINVAL, "unknown option '%.64s'", a);
            return JZ_CLI_OPT_ERROR;
        }
    }
    if (!s->has_arg) {
        if (inline_val) {
            jz_error_set(err, JZ_EINVAL, "option '--%s' takes no value", s->name);
            return JZ_CLI_OPT_ERROR;
        }
        return s->id;
    }
    if (inline_val) {
        *val = inline_val;
        return s->id;
    }
    if (st->i >= st->argc) {
        jz_error_set(err, JZ_EINVAL, "option '--%s' needs a value", s->name);
        return JZ_CLI_OPT_ERROR;
    }
    *val = st->argv[st->i++];
    return s->id;
}

int jz_cli_parse_int(const char *s, int64_t min, int64_t max, const char *what, int64_t *out,
                     struct jz_error *err)
{
    if (!s || !*s ||
        !(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return jz_error_set(err, JZ_EINVAL, "%s: expected an integer, got '%.64s'", what,
                            s ? s : "");
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return jz_error_set(err, JZ_EINVAL, "%s: expected an integer, got '%.64s'", what, s);
    if (errno == ERANGE || v < min || v > max)
        return jz_error_set(err, JZ_ERANGE, "%s: %.64s is out of range [%lld, %lld]", what, s,
                            (long long)min, (long long)max);
    *out = v;
    return 0;
}

void jz_cli_common_option(struct jz_cli *cli, int id, const char *val)
{
    switch (id) {
    case JZ_CLI_OPT_JSON:
        cli->json = true;
        break;
    case JZ_CLI_OPT_URL:
        cli->url_flag = val;
        break;
    case JZ_CLI_OPT_TOKEN:
        cli->token_flag = val;
        break;
    case JZ_CLI_OPT_CA:
        cli->ca_flag = val;
        break;
    case JZ_CLI_OPT_HELP:
        cli->help = true;
        break;
    default:
        break;
    }
}

/* ---- submit ------------------------------------------------------------------------------ */

enum {
    SUB_PLUGIN = 1,
    SUB_GPUS,
    SUB_CPUS,
    SUB_CPUS_PER_GPU,
    SUB_TIME,
    SUB_MEM,
    SUB_NAME,
    SUB_PREEMPTIBLE,
    SUB_PARAM,
    SUB_PARAMS_JSON,
    SUB_RESUME,
    SUB_CLASS,
    SUB_NODES,
    SUB_GPUS_PER_NODE,
    SUB_REQUEUE,
    SUB_ARRAY,
    SUB_AFTER,
    SUB_AFTEROK,
    SUB_AFTERNOTOK,
    SUB_AFTERANY,
    SUB_DEPENDENCY,
    SUB_HOLD,
    SUB_NICE,
    SUB_NOTIFY,
    SUB_RESERVATION,
};

static const struct jz_cli_optspec submit_specs[] = {
    {"plugin", 'p', true, SUB_PLUGIN},  {"gpus", 'g', true, SUB_GPUS},
    {"cpus", 'c', true, SUB_CPUS},      {"cpus-per-gpu", 0, true, SUB_CPUS_PER_GPU},
    {"time", 't', true, SUB_TIME},      {"mem", 0, true, SUB_MEM},
    {"name", 'n', true, SUB_NAME},      {"preemptible", 0, false, SUB_PREEMPTIBLE},
    {"param", 'P', true, SUB_PARAM},    {"params-json", 0, true, SUB_PARAMS_JSON},
    {"resume", 0, true, SUB_RESUME},    {"class", 0, true, SUB_CLASS},
    {"nodes", 0, true, SUB_NODES},      {"gpus-per-node", 0, true, SUB_GPUS_PER_NODE},
    {"requeue", 0, false, SUB_REQUEUE}, {"array", 0, true, SUB_ARRAY},
    {"after", 0, true, SUB_AFTER},      {"afterok", 0, true, SUB_AFTEROK},
    {"afternotok", 0, true, SUB_AFTERNOTOK}, {"afterany", 0, true, SUB_AFTERANY},
    {"dependency", 0, true, SUB_DEPENDENCY}, {"hold", 0, false, SUB_HOLD},
    {"nice", 0, true, SUB_NICE},        {"notify", 0, true, SUB_NOTIFY},
    {"reservation", 0, true, SUB_RESERVATION},
    {NULL, 0, false, 0},
};

#define MAX_DEPS 16 /* the server's bound */

/* Appends {type, job} for each id of list ("12", "12,13" or Slurm's "12:13"). */
static int add_deps(json_t *deps, const char *type, const char *list, struct jz_error *err)
{
    const char *p = list;
    if (!*p)
        return jz_error_set(err, JZ_EINVAL, "--%s: expected job ids (12, 12,13 or 12:13)", type);
    while (*p) {
        char *end;
        errno = 0;
        long long id = strtoll(p, &end, 10);
        if (errno || end == p || id < 1 || (*end && *end != ',' && *end != ':'))
            return jz_error_set(err, JZ_EINVAL,
                                "--%s: '%.64s' is not a list of job ids (12, 12,13 or 12:13)",
                                type, list);
        if (json_array_size(deps) >= MAX_DEPS)
            return jz_error_set(err, JZ_ELIMIT, "at most %d dependencies", MAX_DEPS);
        json_array_append_new(deps, json_pack("{s:s, s:I}", "type", type, "job",
                                              (json_int_t)id));
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* Slurm's --dependency: "afterok:12:13,afterany:14" (also '?' between items, which Slurm reads
 * as "any of": not offered here, so refused). */
static int add_dependency_spec(json_t *deps, const char *spec, struct jz_error *err)
{
    char buf[1024];
    if (strlen(spec) >= sizeof buf || !*spec)
        return jz_error_set(err, JZ_EINVAL, "--dependency: expected TYPE:ID[:ID...][,...]");
    if (strchr(spec, '?'))
        return jz_error_set(err, JZ_EINVAL,
                            "--dependency: '?' (any of) is not supported; every dependency "
                            "must be met");
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(item, ':');
        if (!colon)
            return jz_error_set(err, JZ_EINVAL, "--dependency: '%.64s' has no job id", item);
        *colon = '\0';
        if (strcmp(item, "after") != 0 && strcmp(item, "afterok") != 0 &&
            strcmp(item, "afternotok") != 0 && strcmp(item, "afterany") != 0)
            return jz_error_set(err, JZ_EINVAL,
                                "--dependency: unknown type '%.32s' (after, afterok, afternotok, "
                                "afterany)",
                                item);
        int rc = add_deps(deps, item, colon + 1, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Reads --params-json @FILE, refusing files over the limit. *text is malloc'd. */
static int read_params_file(const char *path, char **text, size_t *len, struct jz_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return jz_error_set(err, JZ_EINVAL, "--params-json: cannot open %.200s: %s", path,
                            strerror(errno));
    char *buf = malloc(JZ_CLI_MAX_PARAMS_JSON + 1);
    if (!buf) {
        fclose(f);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, JZ_CLI_MAX_PARAMS_JSON + 1, f);
    fclose(f);
    if (n > JZ_CLI_MAX_PARAMS_JSON) {
        free(buf);
        return jz_error_set(err, JZ_ELIMIT, "--params-json: %.200s is larger than 1 MiB", path);
    }
    *text = buf;
    *len = n;
    return 0;
}

/* Merges a --params-json value (text or @file) into params; later keys replace earlier ones. */
static int merge_params_json(json_t *params, const char *val, struct jz_error *err)
{
    char *owned = NULL;
    const char *text = val;
    size_t len = strlen(val);
    if (val[0] == '@') {
        int rc = read_params_file(val + 1, &owned, &len, err);
        if (rc)
            return rc;
        text = owned;
    } else if (len > JZ_CLI_MAX_PARAMS_JSON) {
        return jz_error_set(err, JZ_ELIMIT, "--params-json is larger than 1 MiB (%zu bytes)", len);
    }
    struct jz_error perr = {0};
    json_t *obj = jz_json_parse(text, len, 32, &perr);
    free(owned);
    if (!obj)
        return jz_error_set(err, JZ_EINVAL, "--params-json: %s", perr.msg);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return jz_error_set(err, JZ_EINVAL, "--params-json: expected a JSON object");
    }
    json_object_update(params, obj);
    json_decref(obj);
    return 0;
}

static int set_resource(json_t *res, const char *key, const char *val, int64_t min, int64_t max,
                        const char *opt, struct jz_error *err)
{
    int64_t v;
    int rc = jz_cli_parse_int(val, min, max, opt, &v, err);
    if (rc)
        return rc;
    json_object_set_new(res, key, json_integer(v));
    return 0;
}

/* Checks how --gpus, --nodes and --gpus-per-node combine and writes resources.gpus, .nodes and
 * .gpus_per_node (each value is -1 when its option was not given). The request's meaning must
 * never be a guess: with several nodes the GPUs are given per node, or as a total that the
 * server splits; never both. */
static int set_gpus_and_nodes(json_t *res, int64_t gpus, int64_t nodes, int64_t per_node,
                              struct jz_error *err)
{
    if (per_node >= 0 && gpus >= 0)
        return jz_error_set(err, JZ_EINVAL,
                            "give --gpus (the job's total) or --gpus-per-node, not both");
    if (nodes > 1 && per_node < 0 && gpus < 0)
        return jz_error_set(err, JZ_EINVAL,
                            "--nodes %lld: say how many GPUs with --gpus-per-node K (on each "
                            "node) or --gpus G (in all, split by the server)",
                            (long long)nodes);
    if (nodes > 1 && per_node >= 0) {
        json_object_set_new(res, "gpus_per_node", json_integer(per_node));
    } else if (per_node >= 0) {
        /* On one node "K per node" is "K in all": say it the way every server understands. */
        json_object_set_new(res, "gpus", json_integer(per_node));
    } else if (gpus >= 0) {
        json_object_set_new(res, "gpus", json_integer(gpus));
    }
    if (nodes >= 1)
        json_object_set_new(res, "nodes", json_integer(nodes));
    return 0;
}

int jz_cli_submit_build(struct jz_cli *cli, int argc, char **argv, const char *cwd, json_t **body,
                        struct jz_error *err)
{
    if (argc > JZ_CLI_MAX_ARGS)
        return jz_error_set(err, JZ_ELIMIT, "command line has %d arguments, more than %d", argc,
                            JZ_CLI_MAX_ARGS);
    json_t *b = json_object(), *params = json_object(), *res = json_object(), *cmd = NULL;
    json_t *deps = json_array();
    const char *plugin = NULL;
    int64_t gpus = -1, nodes = -1, per_node = -1; /* -1: not given */
    int rc = 0;
    struct jz_cli_optstate st;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, submit_specs, &val, err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR) {
            rc = err ? err->code : JZ_EINVAL;
            goto fail;
        }
        if (id == JZ_CLI_OPT_POSITIONAL) {
            rc = jz_error_set(err, JZ_EINVAL,
                              "unexpected argument '%.64s' (put the command after '--')", val);
            goto fail;
        }
        if (id == JZ_CLI_OPT_DASHDASH) {
            cmd = json_array();
            for (; st.i < argc; st.i++)
                json_array_append_new(cmd, json_string(argv[st.i]));
            break;
        }
        if (id >= JZ_CLI_OPT_COMMON) {
            jz_cli_common_option(cli, id, val);
            continue;
        }
        switch (id) {
        case SUB_PLUGIN:
            if (!*val) {
                rc = jz_error_set(err, JZ_EINVAL, "--plugin: empty name");
                goto fail;
            }
            plugin = val;
            break;
        case SUB_GPUS:
            rc = jz_cli_parse_int(val, 0, JZ_CLI_MAX_GPUS, "--gpus", &gpus, err);
            break;
        case SUB_NODES:
            rc = jz_cli_parse_int(val, 1, JZ_CLI_MAX_NODES, "--nodes", &nodes, err);
            break;
        case SUB_GPUS_PER_NODE:
            rc = jz_cli_parse_int(val, 1, JZ_CLI_MAX_GPUS, "--gpus-per-node", &per_node, err);
            break;
        case SUB_REQUEUE:
            json_object_set_new(b, "requeue", json_true());
            break;
        case SUB_CPUS:
            rc = set_resource(res, "cpus", val, 1, 1 << 20, "--cpus", err);
            break;
        case SUB_CPUS_PER_GPU:
            rc = set_resource(res, "cpus_per_gpu", val, 1, 1 << 20, "--cpus-per-gpu", err);
            break;
        case SUB_MEM:
            rc = set_resource(res, "memory_mb", val, 0, INT64_C(1) << 40, "--mem", err);
            break;
        case SUB_TIME: {
            int64_t secs;
            struct jz_error derr = {0};
            if (jz_duration_parse(val, &secs, &derr) != 0) {
                rc = jz_error_set(err, JZ_EINVAL, "--time: %s", derr.msg);
                goto fail;
            }
            if (secs <= 0) {
                rc = jz_error_set(err, JZ_EINVAL, "--time: must be longer than 0 seconds");
                goto fail;
            }
            json_object_set_new(res, "time_limit_s", json_integer(secs));
            break;
        }
        case SUB_NAME:
            json_object_set_new(b, "name", json_string(val));
            break;
        case SUB_PREEMPTIBLE:
            json_object_set_new(b, "preemptible", json_true());
            break;
        case SUB_RESUME: {
            int64_t from;
            if ((rc = jz_cli_parse_int(val, 1, INT64_MAX, "--resume", &from, err)))
                goto fail;
            json_object_set_new(b, "resume_from", json_integer(from));
            break;
        }
        case SUB_CLASS:
            json_object_set_new(b, "class", json_string(val));
            break;
        case SUB_PARAM: {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val) {
                rc = jz_error_set(err, JZ_EINVAL, "--param: expected KEY=VALUE, got '%.64s'", val);
                goto fail;
            }
            /* Values go as strings: the server converts them to the schema's type. */
            char *key = strndup(val, (size_t)(eq - val));
            if (!key) {
                rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
                goto fail;
            }
            json_object_set_new(params, key, json_string(eq + 1));
            free(key);
            break;
        }
        case SUB_PARAMS_JSON:
            rc = merge_params_json(params, val, err);
            break;
        case SUB_ARRAY: /* checked by the server, which names the field */
            json_object_set_new(b, "array", json_string(val));
            break;
        case SUB_AFTER:
        case SUB_AFTEROK:
        case SUB_AFTERNOTOK:
        case SUB_AFTERANY: {
            static const char *const types[] = {"after", "afterok", "afternotok", "afterany"};
            rc = add_deps(deps, types[id - SUB_AFTER], val, err);
            break;
        }
        case SUB_DEPENDENCY:
            rc = add_dependency_spec(deps, val, err);
            break;
        case SUB_HOLD:
            json_object_set_new(b, "hold", json_true());
            break;
        case SUB_NICE: {
            int64_t nice;
            if (!(rc = jz_cli_parse_int(val, -1000000, 1000000, "--nice", &nice, err)))
                json_object_set_new(b, "nice", json_integer(nice));
            break;
        }
        case SUB_NOTIFY: /* the secret is the caller's to add (jz_cli_notify_secret) */
            if (strncmp(val, "http://", 7) != 0 && strncmp(val, "https://", 8) != 0) {
                rc = jz_error_set(err, JZ_EINVAL, "--notify: expected an http:// or https:// URL");
                break;
            }
            json_object_set_new(b, "notify", json_pack("{s:s}", "url", val));
            break;
        case SUB_RESERVATION: { /* a booking's id (jazari reservations) */
            int64_t v;
            if (!(rc = jz_cli_parse_int(val, 1, INT64_MAX, "--reservation", &v, err)))
                json_object_set_new(b, "reservation", json_integer(v));
            break;
        }
        default:
            break;
        }
        if (rc)
            goto fail;
    }
    if (cli->help) {
        json_decref(b);
        json_decref(params);
        json_decref(res);
        json_decref(cmd);
        json_decref(deps);
        *body = NULL;
        return 0;
    }
    if (json_array_size(deps))
        json_object_set(b, "dependencies", deps);
    json_decref(deps);
    deps = NULL;
    if (cmd) {
        if (json_array_size(cmd) == 0) {
            rc = jz_error_set(err, JZ_EINVAL, "no command after '--'");
            goto fail;
        }
        if (!plugin)
            plugin = "batch";
        json_object_set_new(params, "argv", cmd);
        cmd = NULL;
    }
    if (!plugin) {
        rc = jz_error_set(err, JZ_EINVAL, "give --plugin NAME, or a command after '--'");
        goto fail;
    }
    if ((rc = set_gpus_and_nodes(res, gpus, nodes, per_node, err)))
        goto fail;
    json_object_set_new(b, "plugin", json_string(plugin));
    if (json_object_size(params))
        json_object_set(b, "params", params);
    if (json_object_size(res))
        json_object_set(b, "resources", res);
    if (cwd)
        json_object_set_new(b, "submit_dir", json_string(cwd));
    json_decref(params);
    json_decref(res);
    *body = b;
    return 0;
fail:
    json_decref(b);
    json_decref(params);
    json_decref(res);
    json_decref(cmd);
    json_decref(deps);
    return rc ? rc : JZ_EINVAL;
}

/* ---- queue ------------------------------------------------------------------------------- */

enum {
    Q_ALL = 1,
    Q_STATE,
    Q_USER,
    Q_LIMIT,
    Q_NAME,
    Q_TENANT,
    Q_FORMAT,
    Q_NOHEADER,
    Q_SORT,
    Q_EXPAND,
};

/* Short forms follow squeue where they do not clash with another command's (-n is a job's
 * name everywhere, as in squeue and submit; squeue's -o is fetch's output file here, and its -S
 * (sort) is history's --since, as in sacct). */
static const struct jz_cli_optspec queue_specs[] = {
    {"all", 'a', false, Q_ALL},         {"state", 's', true, Q_STATE},
    {"user", 'u', true, Q_USER},        {"tenant", 0, true, Q_TENANT},
    {"name", 'n', true, Q_NAME},        {"limit", 0, true, Q_LIMIT},
    {"format", 'O', true, Q_FORMAT},    {"noheader", 0, false, Q_NOHEADER},
    {"sort", 0, true, Q_SORT},          {"expand", 'r', false, Q_EXPAND},
    {NULL, 0, false, 0},
};

/* Checks a --format list or a --sort column against jz_cli_queue_columns. */
static int columns_ok(const char *opt, const char *list, bool one, struct jz_error *err)
{
    const char *p = list;
    int n = 0;
    if (one && (*p == '-' || *p == '+'))
        p++;
    if (!*p)
        return jz_error_set(err, JZ_EINVAL, "%s: empty", opt);
    while (*p) {
        size_t k = strcspn(p, ",");
        bool known = false;
        for (size_t c = 0; jz_cli_queue_columns[c]; c++)
            if (strlen(jz_cli_queue_columns[c]) == k &&
                strncasecmp(jz_cli_queue_columns[c], p, k) == 0)
                known = true;
        if (!known || (one && p[k] == ',') || ++n > 32) {
            char cols[256];
            size_t off = 0;
            for (size_t c = 0; jz_cli_queue_columns[c] && off < sizeof cols; c++)
                off += (size_t)snprintf(cols + off, sizeof cols - off, "%s%s", c ? "," : "",
                                        jz_cli_queue_columns[c]);
            return jz_error_set(err, JZ_EINVAL, "%s: unknown column '%.*s' (columns: %s)", opt,
                                (int)(k > 32 ? 32 : k), p, cols);
        }
        p += k;
        if (*p == ',' && !*++p)
            return jz_error_set(err, JZ_EINVAL, "%s: empty column after ','", opt);
    }
    return 0;
}

static bool state_list_ok(const char *s)
{
    static const char *const known[] = {"PENDING", "RUNNING",   "SUCCEEDED",
                                        "FAILED",  "CANCELLED", "TIMEOUT"};
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (strlen(known[k]) == n && strncasecmp(known[k], p, n) == 0)
                ok = true;
        if (!ok)
            return false;
        p += n;
        if (*p == ',')
            p++;
    }
    return *s != '\0';
}

int jz_cli_queue_parse(struct jz_cli *cli, int argc, char **argv, struct jz_cli_queue_args *out,
                       struct jz_error *err)
{
    struct jz_cli_queue_args q = {.limit = 1000};
    struct jz_cli_optstate st;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, queue_specs, &val, err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return err ? err->code : JZ_EINVAL;
        if (id == JZ_CLI_OPT_POSITIONAL || id == JZ_CLI_OPT_DASHDASH)
            return jz_error_set(err, JZ_EINVAL, "unexpected argument '%.64s'", val ? val : "--");
        if (id >= JZ_CLI_OPT_COMMON) {
            jz_cli_common_option(cli, id, val);
            continue;
        }
        int rc = 0;
        switch (id) {
        case Q_ALL:
            q.all = true;
            break;
        case Q_STATE:
            if (strcasecmp(val, "all") == 0) {
                q.states = "";
                break;
            }
            if (!state_list_ok(val))
                return jz_error_set(err, JZ_EINVAL,
                                    "--state: expected 'all' or a list of PENDING, RUNNING, "
                                    "SUCCEEDED, FAILED, CANCELLED, TIMEOUT; got '%.64s'",
                                    val);
            q.states = val;
            break;
        case Q_USER:
        case Q_TENANT:
            if (!*val || strlen(val) > 256)
                return jz_error_set(err, JZ_EINVAL, "--%s: expected a %s name",
                                    id == Q_USER ? "user" : "tenant",
                                    id == Q_USER ? "user" : "tenant");
            *(id == Q_USER ? &q.user : &q.tenant) = val;
            break;
        case Q_NAME:
            if (!*val || strlen(val) > 4096)
                return jz_error_set(err, JZ_EINVAL, "--name: expected job names, comma-separated");
            q.names = val;
            break;
        case Q_LIMIT:
            rc = jz_cli_parse_int(val, 1, JZ_CLI_MAX_QUEUE_LIMIT, "--limit", &q.limit, err);
            break;
        case Q_FORMAT:
            rc = columns_ok("--format", val, false, err);
            q.format = val;
            break;
        case Q_SORT:
            rc = columns_ok("--sort", val, true, err);
            q.sort = val;
            break;
        case Q_NOHEADER:
            q.noheader = true;
            break;
        case Q_EXPAND:
            q.expand = true;
            break;
        default:
            break;
        }
        if (rc)
            return rc;
    }
    *out = q;
    return 0;
}

/* Appends s percent-encoded: RFC 3986 unreserved characters are kept, and ',' when lists is
 * set (a list of states); upper upper-cases ASCII letters. */
static bool append_encoded(char *buf, size_t len, size_t *n, const char *s, bool upper, bool lists)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (upper && c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 'a' + 'A');
        if ((c < 0x80 && isalnum(c)) || c == '-' || c == '_' || c == '.' || c == '~' ||
            (lists && c == ',')) {
            if (*n + 1 >= len)
                return false;
            buf[(*n)++] = (char)c;
        } else {
            if (*n + 3 >= len)
                return false;
            buf[(*n)++] = '%';
            buf[(*n)++] = hex[c >> 4];
            buf[(*n)++] = hex[c & 15];
        }
    }
    buf[*n] = '\0';
    return true;
}

static bool append_raw(char *buf, size_t len, size_t *n, const char *s)
{
    size_t k = strlen(s);
    if (*n + k >= len)
        return false;
    memcpy(buf + *n, s, k + 1);
    *n += k;
    return true;
}

bool jz_cli_query_add(char *buf, size_t len, const char *key, const char *value, bool lists)
{
    size_t was = strlen(buf), n = was;
    if (append_raw(buf, len, &n, strchr(buf, '?') ? "&" : "?") &&
        append_encoded(buf, len, &n, key, false, false) && append_raw(buf, len, &n, "=") &&
        append_encoded(buf, len, &n, value, false, lists))
        return true;
    if (was < len)
        buf[was] = '\0';
    return false;
}

int jz_cli_queue_path(const struct jz_cli_queue_args *q, int64_t after, int64_t page_limit,
                      char *buf, size_t len, struct jz_error *err)
{
    int w = snprintf(buf, len, "/v1/jobs?limit=%lld", (long long)page_limit);
    if (w < 0 || (size_t)w >= len)
        return jz_error_set(err, JZ_ERANGE, "request path too long");
    size_t n = (size_t)w;
    /* scope=all lists only pending and running jobs: asking for them is harmless, and keeps
     * an older server (without scope) from listing every state. */
    const char *states = q->states ? q->states : "PENDING,RUNNING";
    bool ok = true;
    if (*states) {
        ok = ok && append_raw(buf, len, &n, "&state=");
        ok = ok && append_encoded(buf, len, &n, states, true, true);
    }
    if (q->user) {
        ok = ok && append_raw(buf, len, &n, "&user=");
        ok = ok && append_encoded(buf, len, &n, q->user, false, true);
    }
    if (q->tenant) {
        ok = ok && append_raw(buf, len, &n, "&tenant=");
        ok = ok && append_encoded(buf, len, &n, q->tenant, false, true);
    }
    if (q->all)
        ok = ok && append_raw(buf, len, &n, "&scope=all");
    if (ok && after >= 0) {
        w = snprintf(buf + n, len - n, "&after=%lld", (long long)after);
        ok = w > 0 && (size_t)w < len - n;
    }
    if (!ok)
        return jz_error_set(err, JZ_ERANGE, "request path too long");
    return 0;
}

/* ---- nodes, node, admin node token ------------------------------------------------------- */

/* A --site value: what the server would refuse anyway is refused here with the option's name. */
static int check_site(const char *val, struct jz_error *err)
{
    if (!*val)
        return jz_error_set(err, JZ_EINVAL, "--site: empty site name");
    if (strlen(val) > JZ_CLI_MAX_SITE)
        return jz_error_set(err, JZ_ELIMIT, "--site: longer than %d bytes", JZ_CLI_MAX_SITE);
    return 0;
}

enum { N_SITE = 1 };
static const struct jz_cli_optspec nodes_specs[] = {{"site", 0, true, N_SITE}, {NULL, 0, false, 0}};

int jz_cli_nodes_parse(struct jz_cli *cli, int argc, char **argv, const char **site,
                       struct jz_error *err)
{
    const char *s = NULL;
    struct jz_cli_optstate st;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, nodes_specs, &val, err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return err ? err->code : JZ_EINVAL;
        if (id == JZ_CLI_OPT_POSITIONAL || id == JZ_CLI_OPT_DASHDASH)
            return jz_error_set(err, JZ_EINVAL, "unexpected argument '%.64s'", val ? val : "--");
        if (id >= JZ_CLI_OPT_COMMON) {
            jz_cli_common_option(cli, id, val);
            continue;
        }
        int rc = check_site(val, err);
        if (rc)
            return rc;
        s = val;
    }
    *site = s;
    return 0;
}

int jz_cli_nodes_path(const char *site, char *buf, size_t len, struct jz_error *err)
{
    size_t n = 0;
    if (len > 0)
        buf[0] = '\0';
    bool ok = append_raw(buf, len, &n, "/v1/nodes");
    if (site) {
        ok = ok && append_raw(buf, len, &n, "?site=");
        ok = ok && append_encoded(buf, len, &n, site, false, false);
    }
    if (!ok)
        return jz_error_set(err, JZ_ERANGE, "request path too long");
    return 0;
}

enum { N_REASON = 1 };
static const struct jz_cli_optspec node_specs[] = {{"reason", 0, true, N_REASON},
                                                   {NULL, 0, false, 0}};

int jz_cli_node_parse(struct jz_cli *cli, int argc, char **argv, struct jz_cli_node_args *out,
                      struct jz_error *err)
{
    struct jz_cli_node_args a = {0};
    const char *verb = argc > 0 ? argv[0] : "";
    if (strcmp(verb, "drain") == 0)
        a.verb = JZ_CLI_NODE_DRAIN;
    else if (strcmp(verb, "resume") == 0)
        a.verb = JZ_CLI_NODE_RESUME;
    else if (strcmp(verb, "rm") == 0)
        a.verb = JZ_CLI_NODE_RM;
    else if (strcmp(verb, "revoke") == 0)
        a.verb = JZ_CLI_NODE_REVOKE;
    else
        return jz_error_set(err, JZ_EINVAL, "unknown node command '%.64s'", verb);
    struct jz_cli_optstate st;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, node_specs, &val, err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return err ? err->code : JZ_EINVAL;
        if (id == JZ_CLI_OPT_DASHDASH) {
            for (; st.i < argc; st.i++) {
                if (a.name)
                    return jz_error_set(err, JZ_EINVAL, "too many arguments");
                a.name = argv[st.i];
            }
            break;
        }
        if (id == JZ_CLI_OPT_POSITIONAL) {
            if (a.name)
                return jz_error_set(err, JZ_EINVAL, "too many arguments");
            a.name = val;
        } else if (id == N_REASON) {
            a.reason = val;
        } else {
            jz_cli_common_option(cli, id, val);
        }
    }
    if (cli->help)
        return 0;
    if (!a.name || !*a.name)
        return jz_error_set(err, JZ_EINVAL, "missing node name");
    if (strlen(a.name) > JZ_CLI_MAX_NODE_NAME)
        return jz_error_set(err, JZ_ELIMIT, "node name longer than %d bytes", JZ_CLI_MAX_NODE_NAME);
    if (a.verb == JZ_CLI_NODE_DRAIN) {
        if (!a.reason)
            return jz_error_set(err, JZ_EINVAL,
                                "drain needs --reason TEXT (why the node is "
                                "taken out of service)");
        size_t n = strlen(a.reason);
        if (n == 0)
            return jz_error_set(err, JZ_EINVAL, "--reason: empty reason");
        if (n > JZ_CLI_MAX_DRAIN_REASON)
            return jz_error_set(err, JZ_ELIMIT, "--reason: %zu bytes, at most %d", n,
                                JZ_CLI_MAX_DRAIN_REASON);
    } else if (a.reason) {
        return jz_error_set(err, JZ_EINVAL, "--reason is only for drain");
    }
    *out = a;
    return 0;
}

int jz_cli_node_request(const struct jz_cli_node_args *a, const char **method, char *path,
                        size_t len, json_t **body, struct jz_error *err)
{
    static const char *const suffix[] = {
        [JZ_CLI_NODE_DRAIN] = "/drain",
        [JZ_CLI_NODE_RESUME] = "/resume",
        [JZ_CLI_NODE_RM] = "",
        [JZ_CLI_NODE_REVOKE] = "/revoke",
    };
    if (a->verb < JZ_CLI_NODE_DRAIN || a->verb > JZ_CLI_NODE_REVOKE || !a->name)
        return jz_error_set(err, JZ_EINVAL, "no node command");
    size_t n = 0;
    if (len > 0)
        path[0] = '\0';
    bool ok = append_raw(path, len, &n, "/v1/nodes/") &&
              append_encoded(path, len, &n, a->name, false, false) &&
              append_raw(path, len, &n, suffix[a->verb]);
    if (!ok)
        return jz_error_set(err, JZ_ERANGE, "request path too long");
    json_t *b = NULL;
    if (a->verb == JZ_CLI_NODE_DRAIN) {
        json_t *reason = json_string(a->reason ? a->reason : "");
        if (!reason) /* jansson takes only UTF-8 */
            return jz_error_set(err, JZ_EINVAL, "--reason: not valid UTF-8");
        b = json_object();
        if (b)
            json_object_set_new(b, "reason", reason);
        else
            json_decref(reason);
    } else if (a->verb == JZ_CLI_NODE_RESUME) {
        b = json_object();
    }
    if ((a->verb == JZ_CLI_NODE_DRAIN || a->verb == JZ_CLI_NODE_RESUME) && !b)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    *method = a->verb == JZ_CLI_NODE_RM ? "DELETE" : "POST";
    *body = b;
    return 0;
}

enum { T_SITE = 1, T_TTL };
static const struct jz_cli_optspec node_token_specs[] = {
    {"site", 0, true, T_SITE}, {"ttl", 0, true, T_TTL}, {NULL, 0, false, 0}};

int jz_cli_node_token_build(struct jz_cli *cli, int argc, char **argv, json_t **body,
                            struct jz_error *err)
{
    const char *site = NULL;
    int64_t ttl = -1;
    struct jz_cli_optstate st;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int id = jz_cli_opt_next(&st, node_token_specs, &val, err);
        if (id == JZ_CLI_OPT_END)
            break;
        if (id == JZ_CLI_OPT_ERROR)
            return err ? err->code : JZ_EINVAL;
        if (id == JZ_CLI_OPT_POSITIONAL || id == JZ_CLI_OPT_DASHDASH)
            return jz_error_set(err, JZ_EINVAL, "unexpected argument '%.64s'", val ? val : "--");
        if (id >= JZ_CLI_OPT_COMMON) {
            jz_cli_common_option(cli, id, val);
        } else if (id == T_SITE) {
            int rc = check_site(val, err);
            if (rc)
                return rc;
            site = val;
        } else if (id == T_TTL) {
            struct jz_error derr = {0};
            if (jz_duration_parse(val, &ttl, &derr) != 0)
                return jz_error_set(err, JZ_EINVAL, "--ttl: %s", derr.msg);
            if (ttl <= 0)
                return jz_error_set(err, JZ_EINVAL, "--ttl: must be longer than 0 seconds");
        }
    }
    if (cli->help) {
        *body = NULL;
        return 0;
    }
    /* Absent fields take the server's defaults (site "default", one day). */
    json_t *b = json_object();
    if (!b)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    /* A site jansson refuses (not UTF-8) must not silently become the default site. */
    if (site && json_object_set_new(b, "site", json_string(site)) != 0) {
        json_decref(b);
        return jz_error_set(err, JZ_EINVAL, "--site: not valid UTF-8");
    }
    if (ttl > 0)
        json_object_set_new(b, "ttl_s", json_integer(ttl));
    *body = b;
    return 0;
}

const struct jz_cli_option_table jz_cli_args_option_tables[] = {
    {"submit", submit_specs},  {"queue", queue_specs},
    {"nodes", nodes_specs},    {"node", node_specs},
    {"admin node token", node_token_specs}, {"(common)", common_specs},
    {NULL, NULL},
};
