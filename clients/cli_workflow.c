/* The researcher's workflow commands of `jazari`, as Slurm users know them: hold and release
 * (scontrol hold/release), modify (scontrol update), history (sacct), and the secret that signs
 * --notify webhooks. */
#define _GNU_SOURCE /* strptime, timegm */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clients/cli.h"
#include "common/json.h"
#include "common/time.h"

/* ---- hold and release -------------------------------------------------------------------- */

static int hold_or_release(struct jz_cli *cli, int argc, char **argv, const char *verb)
{
    const char *pos[256];
    int64_t ids[256];
    int n, prc;
    struct jz_error err = {0};
    if ((prc = jz_cli_parse_simple(cli, argc, argv, pos, 1, 256, &n)))
        return prc;
    if (cli->help)
        return jz_cli_print_usage(cli);
    for (int i = 0; i < n; i++) /* every id checked before any job is held */
        if (jz_cli_parse_int(pos[i], 1, INT64_MAX, "job id", &ids[i], &err))
            return jz_cli_usage_error(cli, err.msg);
    int rc = jz_cli_resolve(cli);
    if (rc)
        return rc;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char path[96], what[64];
        snprintf(path, sizeof path, "/v1/jobs/%lld/%s", (long long)ids[i], verb);
        snprintf(what, sizeof what, "job %lld: ", (long long)ids[i]);
        struct jz_cli_response r;
        if (jz_cli_request(cli, "POST", path, NULL, what, &r)) {
            failed++;
            continue;
        }
        if (cli->json)
            printf("%.*s\n", (int)r.len, r.body);
        jz_cli_response_clear(&r);
    }
    return failed ? JZ_CLI_EXIT_FAIL : JZ_CLI_EXIT_OK;
}

int jz_cli_cmd_hold(struct jz_cli *cli, int argc, char **argv)
{
    return hold_or_release(cli, argc, argv, "hold");
}

int jz_cli_cmd_release(struct jz_cli *cli, int argc, char **argv)
{
    return hold_or_release(cli, argc, argv, "release");
}

/* ---- modify ------------------------------------------------------------------------------ */

enum { MOD_NAME = 1, MOD_TIME, MOD_NICE, MOD_CLASS };
/* As submit's: -n is the name, -t the time limit. */
const struct jz_cli_optspec jz_cli_modify_opts[] = {
    {"name", 'n', true, MOD_NAME},      {"time", 't', true, MOD_TIME},
    {"time-limit", 0, true, MOD_TIME},  {"nice", 0, true, MOD_NICE},
    {"class", 0, true, MOD_CLASS},      {NULL, 0, false, 0},
};

int jz_cli_modify_build(struct jz_cli *cli, int argc, char **argv, int64_t *id, json_t **body,
                        struct jz_error *err)
{
    struct jz_cli_optstate st;
    json_t *b = json_object();
    *id = 0;
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int opt = jz_cli_opt_next(&st, jz_cli_modify_opts, &val, err);
        if (opt == JZ_CLI_OPT_END || opt == JZ_CLI_OPT_DASHDASH)
            break;
        int rc = 0;
        int64_t v;
        switch (opt) {
        case JZ_CLI_OPT_ERROR:
            rc = err->code ? err->code : JZ_EINVAL;
            break;
        case JZ_CLI_OPT_POSITIONAL:
            rc = *id ? jz_error_set(err, JZ_EINVAL, "one job at a time")
                     : jz_cli_parse_int(val, 1, INT64_MAX, "job id", id, err);
            break;
        case MOD_NAME:
            json_object_set_new(b, "name", json_string(val));
            break;
        case MOD_TIME: /* checked by the server, with Slurm's forms too ("90:00") */
            json_object_set_new(b, "time_limit", json_string(val));
            break;
        case MOD_NICE:
            if (!(rc = jz_cli_parse_int(val, -1000000, 1000000, "--nice", &v, err)))
                json_object_set_new(b, "nice", json_integer(v));
            break;
        case MOD_CLASS:
            json_object_set_new(b, "class", json_string(val));
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
    if (!cli->help && !*id) {
        json_decref(b);
        return jz_error_set(err, JZ_EINVAL, "missing job id");
    }
    if (!cli->help && json_object_size(b) == 0) {
        json_decref(b);
        return jz_error_set(err, JZ_EINVAL,
                            "nothing to change: give --name, --time-limit, --nice or --class");
    }
    *body = b;
    return 0;
}

int jz_cli_cmd_modify(struct jz_cli *cli, int argc, char **argv)
{
    int64_t id;
    json_t *body = NULL;
    struct jz_error err = {0};
    if (jz_cli_modify_build(cli, argc, argv, &id, &body, &err))
        return jz_cli_usage_error(cli, err.msg);
    if (cli->help) {
        json_decref(body);
        return jz_cli_print_usage(cli);
    }
    int rc = jz_cli_resolve(cli);
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
    struct jz_cli_response r;
    if (!rc)
        rc = jz_cli_request(cli, "PATCH", path, body, NULL, &r);
    json_decref(body);
    if (rc)
        return rc;
    if (cli->json)
        printf("%.*s\n", (int)r.len, r.body);
    jz_cli_response_clear(&r);
    return 0;
}

/* ---- history ----------------------------------------------------------------------------- */

enum { HIST_SINCE = 1, HIST_UNTIL, HIST_USER, HIST_TENANT, HIST_STATE, HIST_FORMAT, HIST_LIMIT };
/* sacct's -S and -E; --format is long only (-o is fetch's --output, -O queue's --format). */
const struct jz_cli_optspec jz_cli_history_opts[] = {
    {"since", 'S', true, HIST_SINCE},   {"until", 'E', true, HIST_UNTIL},
    {"user", 'u', true, HIST_USER},     {"tenant", 0, true, HIST_TENANT},
    {"state", 's', true, HIST_STATE},   {"format", 0, true, HIST_FORMAT},
    {"limit", 0, true, HIST_LIMIT},     {NULL, 0, false, 0},
};

/* A time for --since/--until as the API takes it (epoch seconds): ISO 8601 with a zone, a day
 * (2026-11-01, local midnight), "now", or a duration ago ("7d", "12h", "1-00:00:00"). */
int jz_cli_when_parse(const char *s, int64_t now_ms, int64_t *epoch_s, struct jz_error *err)
{
    int64_t secs, ms;
    struct tm tm;
    if (strcmp(s, "now") == 0) {
        *epoch_s = now_ms / 1000;
        return 0;
    }
    if (jz_duration_parse(s, &secs, NULL) == 0) {
        *epoch_s = now_ms / 1000 - secs;
        return 0;
    }
    if (jz_time_parse_iso(s, &ms, NULL) == 0) {
        *epoch_s = ms / 1000;
        return 0;
    }
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (end && !*end) {
        tm.tm_isdst = -1;
        time_t t = mktime(&tm);
        if (t != (time_t)-1) {
            *epoch_s = (int64_t)t;
            return 0;
        }
    }
    /* ISO 8601 with an offset ("2026-11-01T10:00:00+01:00") or none (local time). */
    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end && (!*end || ((*end == '+' || *end == '-') && strlen(end) == 6 && end[3] == ':'))) {
        time_t t;
        if (!*end) {
            tm.tm_isdst = -1;
            t = mktime(&tm);
        } else {
            int hh = atoi(end + 1), mm = atoi(end + 4);
            t = timegm(&tm) - (*end == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
        }
        if (t != (time_t)-1) {
            *epoch_s = (int64_t)t;
            return 0;
        }
    }
    return jz_error_set(err, JZ_EINVAL,
                        "'%.64s' is not a time: give 2026-11-01, 2026-11-01T10:00:00+01:00, now, "
                        "or a time ago like 7d or 12h",
                        s);
}

struct history_args {
    int64_t since, until; /* epoch seconds, 0: not given */
    const char *user, *tenant, *states;
    enum { FMT_TABLE, FMT_CSV, FMT_JSON } format;
    int64_t limit;
};

static int history_parse(struct jz_cli *cli, int argc, char **argv, struct history_args *h,
                         struct jz_error *err)
{
    struct jz_cli_optstate st;
    memset(h, 0, sizeof *h);
    h->limit = 1000;
    h->format = cli->json ? FMT_JSON : FMT_TABLE;
    int64_t now = jz_time_now_ms();
    jz_cli_opt_init(&st, argc, argv);
    for (;;) {
        const char *val;
        int opt = jz_cli_opt_next(&st, jz_cli_history_opts, &val, err);
        if (opt == JZ_CLI_OPT_END)
            break;
        int rc = 0;
        switch (opt) {
        case JZ_CLI_OPT_ERROR:
            return err->code ? err->code : JZ_EINVAL;
        case JZ_CLI_OPT_POSITIONAL:
        case JZ_CLI_OPT_DASHDASH:
            return jz_error_set(err, JZ_EINVAL, "unexpected argument");
        case HIST_SINCE:
            rc = jz_cli_when_parse(val, now, &h->since, err);
            break;
        case HIST_UNTIL:
            rc = jz_cli_when_parse(val, now, &h->until, err);
            break;
        case HIST_USER:
            h->user = val;
            break;
        case HIST_TENANT:
            h->tenant = val;
            break;
        case HIST_STATE:
            h->states = val;
            break;
        case HIST_FORMAT:
            if (strcmp(val, "table") == 0)
                h->format = FMT_TABLE;
            else if (strcmp(val, "csv") == 0)
                h->format = FMT_CSV;
            else if (strcmp(val, "json") == 0)
                h->format = FMT_JSON;
            else
                rc = jz_error_set(err, JZ_EINVAL, "--format: table, csv or json");
            break;
        case HIST_LIMIT:
            rc = jz_cli_parse_int(val, 1, JZ_CLI_MAX_QUEUE_LIMIT, "--limit", &h->limit, err);
            break;
        default:
            jz_cli_common_option(cli, opt, val);
            if (opt == JZ_CLI_OPT_JSON)
                h->format = FMT_JSON;
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

#define HIST_COLS 11
static const char *const hist_heads[HIST_COLS] = {"id",    "name",    "user",     "state",
                                                  "end",   "wait_s",  "run_s",    "gpu_hours",
                                                  "exit",  "nodes",   "tenant"};

/* One finished job's cells (into cells[], strings in store, each 160 bytes). */
static void history_cells(const json_t *j, char store[HIST_COLS][160], bool table)
{
    snprintf(store[0], 160, "%lld", (long long)jz_json_int(j, "id", 0));
    snprintf(store[1], 160, "%s", jz_json_str(j, "name", "-"));
    snprintf(store[2], 160, "%s", jz_json_str(j, "user", "-"));
    snprintf(store[3], 160, "%s", jz_json_str(j, "state", "-"));
    if (table)
        jz_cli_time_local(jz_json_str(j, "end_time", NULL), store[4], 160);
    else
        snprintf(store[4], 160, "%s", jz_json_str(j, "end_time", ""));
    json_t *w = json_object_get(j, "wait_s"), *rn = json_object_get(j, "run_s");
    if (table) {
        if (json_is_integer(w))
            jz_duration_format(json_integer_value(w), store[5], 160);
        else
            snprintf(store[5], 160, "-");
        if (json_is_integer(rn))
            jz_duration_format(json_integer_value(rn), store[6], 160);
        else
            snprintf(store[6], 160, "-");
    } else {
        store[5][0] = '\0';
        if (json_is_integer(w))
            snprintf(store[5], 160, "%lld", (long long)json_integer_value(w));
        store[6][0] = '\0';
        if (json_is_integer(rn))
            snprintf(store[6], 160, "%lld", (long long)json_integer_value(rn));
    }
    snprintf(store[7], 160, "%.3f", jz_json_num(j, "gpu_hours", 0));
    json_t *code = json_object_get(j, "exit_code"), *sig = json_object_get(j, "signal");
    if (json_is_integer(code))
        snprintf(store[8], 160, "%lld", (long long)json_integer_value(code));
    else if (json_is_integer(sig))
        snprintf(store[8], 160, "sig%lld", (long long)json_integer_value(sig));
    else
        snprintf(store[8], 160, "%s", table ? "-" : "");
    size_t off = 0;
    store[9][0] = '\0';
    size_t i;
    json_t *nd;
    json_array_foreach(json_object_get(j, "nodes"), i, nd)
    {
        if (off < 150)
            off += (size_t)snprintf(store[9] + off, 160 - off, "%s%s", i ? " " : "",
                                    json_string_value(nd) ? json_string_value(nd) : "?");
    }
    if (!store[9][0] && table)
        snprintf(store[9], 160, "-");
    snprintf(store[10], 160, "%s", jz_json_str(j, "tenant", "-"));
}

int jz_cli_cmd_history(struct jz_cli *cli, int argc, char **argv)
{
    struct history_args h;
    struct jz_error err = {0};
    if (history_parse(cli, argc, argv, &h, &err))
        return jz_cli_usage_error(cli, err.msg);
    if (cli->help)
        return jz_cli_print_usage(cli);
    int rc = jz_cli_resolve(cli);
    if (rc)
        return rc;
    json_t *all = json_array();
    struct jz_table *table = NULL;
    if (h.format == FMT_TABLE) {
        static const char *const heads[HIST_COLS] = {"ID",   "NAME",  "USER", "STATE",
                                                     "END",  "WAIT",  "RUN",  "GPU-H",
                                                     "EXIT", "NODES", "TENANT"};
        table = jz_table_new(HIST_COLS, heads);
        jz_table_align_right(table, 0);
        jz_table_align_right(table, 7);
    } else if (h.format == FMT_CSV) {
        for (size_t c = 0; c < HIST_COLS; c++)
            jz_cli_csv_cell(stdout, hist_heads[c], c + 1 == HIST_COLS);
    }
    int64_t after = -1, got = 0;
    while (got < h.limit) {
        char path[2048];
        int64_t page = h.limit - got < 500 ? h.limit - got : 500;
        snprintf(path, sizeof path, "/v1/jobs?order=desc&limit=%lld", (long long)page);
        char na[32], ns[32], nu[32];
        snprintf(na, sizeof na, "%lld", (long long)after);
        snprintf(ns, sizeof ns, "%lld", (long long)h.since);
        snprintf(nu, sizeof nu, "%lld", (long long)h.until);
        if (!jz_cli_query_add(path, sizeof path, "state",
                              h.states ? h.states : "SUCCEEDED,FAILED,CANCELLED,TIMEOUT", true) ||
            (after > 0 && !jz_cli_query_add(path, sizeof path, "after", na, false)) ||
            (h.since && !jz_cli_query_add(path, sizeof path, "since", ns, false)) ||
            (h.until && !jz_cli_query_add(path, sizeof path, "until", nu, false)) ||
            (h.user && !jz_cli_query_add(path, sizeof path, "user", h.user, true)) ||
            (h.tenant && !jz_cli_query_add(path, sizeof path, "tenant", h.tenant, true))) {
            rc = jz_cli_usage_error(cli, "the request is too long (--user, --tenant, --state)");
            break;
        }
        struct jz_cli_response r;
        if ((rc = jz_cli_request(cli, "GET", path, NULL, NULL, &r)))
            break;
        size_t i;
        json_t *j;
        json_array_foreach(json_object_get(r.json, "jobs"), i, j)
        {
            got++;
            if (h.format == FMT_JSON) {
                json_array_append(all, j);
                continue;
            }
            char store[HIST_COLS][160];
            history_cells(j, store, h.format == FMT_TABLE);
            if (table) {
                const char *cells[HIST_COLS];
                for (size_t c = 0; c < HIST_COLS; c++)
                    cells[c] = store[c];
                jz_table_add(table, cells);
            } else {
                for (size_t c = 0; c < HIST_COLS; c++) {
                    char clean[160 * JZ_CLI_SANITIZE_GROWTH + 1];
                    jz_cli_sanitize(store[c], clean, sizeof clean);
                    jz_cli_csv_cell(stdout, clean, c + 1 == HIST_COLS);
                }
            }
        }
        json_t *next = json_object_get(r.json, "next_after");
        after = json_is_integer(next) ? json_integer_value(next) : 0;
        jz_cli_response_clear(&r);
        if (after <= 0)
            break;
    }
    if (!rc && h.format == FMT_JSON) {
        json_dumpf(all, stdout, JSON_COMPACT);
        fputc('\n', stdout);
    }
    if (!rc && table)
        jz_table_print(table, stdout);
    jz_table_free(table);
    json_decref(all);
    return rc;
}

/* ---- the webhook secret ------------------------------------------------------------------ */

/* The secret that signs this user's --notify webhooks: $JAZARI_NOTIFY_SECRET, else the file
 * ~/.config/jazari/notify-secret, made (mode 0600, 32 random bytes as hex) on first use. */
int jz_cli_notify_secret(char *buf, size_t len, bool *created, char *path, size_t path_len,
                         struct jz_error *err)
{
    *created = false;
    path[0] = '\0';
    const char *env = getenv("JAZARI_NOTIFY_SECRET");
    if (env && *env) {
        if (strlen(env) < 16 || strlen(env) >= len || strlen(env) > 256)
            return jz_error_set(err, JZ_EINVAL, "JAZARI_NOTIFY_SECRET must be 16-256 bytes");
        snprintf(buf, len, "%s", env);
        return 0;
    }
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char dir[3000];
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/jazari", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.config/jazari", home);
    else
        return jz_error_set(err, JZ_EINVAL,
                            "--notify needs a secret: set JAZARI_NOTIFY_SECRET (16-256 bytes)");
    snprintf(path, path_len, "%s/notify-secret", dir);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        /* The secret signs what the service says about this user's jobs: a file others may
         * read, or another's file, would let them forge it. */
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            (st.st_mode & 077)) {
            close(fd);
            return jz_error_set(err, JZ_EINVAL,
                                "%s must be a file of yours that only you may read "
                                "(chmod 600 %s)",
                                path, path);
        }
        char raw[260];
        ssize_t n = read(fd, raw, sizeof raw - 1);
        close(fd);
        while (n > 0 && (raw[n - 1] == '\n' || raw[n - 1] == '\r'))
            n--;
        if (n < 16 || n > 256 || (size_t)n >= len)
            return jz_error_set(err, JZ_EINVAL, "%s: a secret of 16-256 bytes was expected",
                                path);
        memcpy(buf, raw, (size_t)n);
        buf[n] = '\0';
        return 0;
    }
    if (errno != ENOENT)
        return jz_error_set(err, JZ_EIO, "%s: %s", path, strerror(errno));
    unsigned char raw[32];
    if (len < 65 || getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return jz_error_set(err, JZ_EIO, "cannot make a random secret");
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(buf + 2 * i, 3, "%02x", raw[i]);
    char parent[3000];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        mkdir(parent, 0700);
    }
    mkdir(dir, 0700);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, 64) != 64 || write(fd, "\n", 1) != 1) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return jz_error_set(err, JZ_EIO, "cannot write %s: %s", path, strerror(e));
    }
    close(fd);
    *created = true;
    return 0;
}
