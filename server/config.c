/* jazarid's options and configuration file: one table describes every option, its type, its
 * help text and whether a reload can change it, so that --help, the file's keys and the reload
 * rules cannot drift apart. */
#include "server/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/strutil.h"
#include "common/version.h"
#include "scheduler/config.h"
#include "server/auth.h"
#include "server/front.h"
#include "server/nodes.h"
#include "server/prices.h"
#include "server/webhooks.h"

enum opt_id {
    O_LISTEN, O_STATE, O_TOPO, O_NO_LOCAL, O_SITE, O_AGENT_LISTEN, O_NODE_TIMEOUT, O_PLUGINS,
    O_WORKER, O_FALLBACK, O_GRACE, O_MAXPEND, O_USER, O_NODE_DIR, O_DEFAULT_ACCOUNT, O_TLS_CERT,
    O_TLS_KEY, O_PLAIN, O_MAXCONN, O_IDLE, O_RATE, O_BURST, O_STREAMS, O_CONFIG, O_PORTFILE,
    O_LOGLEVEL, O_LOGFILE, O_HIDE_TENANTS, O_WEBHOOK_ALLOW, O_COUNT
};

enum opt_type { T_STR, T_INT, T_NUM, T_BOOL };

struct opt {
    const char *name;  /* long option; the file's key is it with '-' turned into '_' */
    const char *arg;   /* its value in --help (NULL: a flag) */
    enum opt_type type; /* what the file may give */
    bool restart;      /* a change takes effect at the next start, not on reload */
    const char *help;  /* one or more lines */
};

static const struct opt opts[O_COUNT] = {
    [O_LISTEN] = {"listen", "HOST:PORT", T_STR, true,
                  "address to serve the REST API on (default 127.0.0.1:8600;\n"
                  "port 0 picks a free port, printed at start-up)"},
    [O_STATE] = {"state-dir", "DIR", T_STR, true,
                 "database, job files and admin.token (default ./jazari-state)"},
    [O_TOPO] = {"topology", "FILE.xml", T_STR, true,
                "declare the local node's GPUs from an hwloc XML file\n"
                "(default: discover this machine)"},
    [O_NO_LOCAL] = {"no-local-node", NULL, T_BOOL, true, "run jobs on jazari-node agents only"},
    [O_SITE] = {"site", "SITE", T_STR, true, "the local node's site (default: default)"},
    [O_AGENT_LISTEN] = {"agent-listen", "H:P", T_STR, true,
                        "where node agents connect (default: the API's host, a\n"
                        "free port, published at GET /v1/agent)"},
    [O_NODE_TIMEOUT] = {"node-timeout", "SECONDS", T_INT, false,
                        "a node silent this long is down (default 10)"},
    [O_PLUGINS] = {"plugin-dir", "DIRS", T_STR, true,
                   "':'-separated plugin folders searched besides the built-in\n"
                   "one"},
    [O_WORKER] = {"worker", "PATH", T_STR, true,
                  "the jazari-worker executable (default: next to jazarid)"},
    [O_FALLBACK] = {"fallback-backend", "B", T_STR, true,
                    "backend for declared GPUs: cpu or opencl (default cpu)"},
    [O_GRACE] = {"kill-grace", "SECONDS", T_INT, false,
                 "TERM-to-KILL grace for cancel and time limits (default 10)"},
    [O_MAXPEND] = {"max-pending", "N", T_INT, false,
                   "pending jobs allowed per user (default 100000)"},
    [O_USER] = {"user", "ACCOUNT", T_STR, true,
                "started as root: run as ACCOUNT (default jazari); the\n"
                "local node agent stays root to confine jobs; 'root'\n"
                "keeps everything as root, jobs unconfined"},
    [O_NODE_DIR] = {"node-dir", "DIR", T_STR, true,
                    "the confined local node's folder (default STATE-DIR-node)"},
    [O_DEFAULT_ACCOUNT] = {"default-unix-user", "A", T_STR, false,
                           "the Unix account jobs of users without one run as on\n"
                           "confining nodes (default: none; such jobs fail)"},
    [O_TLS_CERT] = {"tls-cert", "FILE", T_STR, true,
                    "serve the API and node agents over TLS with this PEM\n"
                    "certificate chain (with --tls-key FILE, its key)"},
    [O_TLS_KEY] = {"tls-key", "FILE", T_STR, true,
                   "the certificate's private key (PEM, unencrypted)"},
    [O_PLAIN] = {"allow-plain-http", NULL, T_BOOL, true,
                 "serve without TLS on an address other than loopback"},
    [O_MAXCONN] = {"max-connections", "N", T_INT, true,
                   "API connections at once; accepting pauses at the cap\n"
                   "(default: from the descriptor limit, at most 4096)"},
    [O_IDLE] = {"idle-timeout", "SECONDS", T_INT, false,
                "close an API connection silent this long (default 60)"},
    [O_RATE] = {"rate-limit", "N[/s]", T_NUM, false,
                "requests per second per token, or per client address\n"
                "without one (default 50; 0: no limit; admins exempt)"},
    [O_BURST] = {"rate-burst", "N", T_INT, false,
                 "requests allowed at once above the rate (default 200)"},
    [O_STREAMS] = {"max-log-streams", "N", T_INT, false,
                   "'logs -f' streams open at once per user (default 16)"},
    [O_CONFIG] = {"config", "FILE.json", T_STR, true,
                  "configuration file: every option above as a key (in\n"
                  "snake_case), and the scheduler, limits, tenants and\n"
                  "plugins sections; the command line wins; SIGHUP re-reads it"},
    [O_PORTFILE] = {"port-file", "FILE", T_STR, true,
                    "write the bound port here once listening (written as\n"
                    "the --user account)"},
    [O_LOGLEVEL] = {"log-level", "LEVEL", T_STR, false,
                    "error, warn, info (default) or debug"},
    [O_LOGFILE] = {"log-file", "DEST", T_STR, false,
                   "log to this file (SIGUSR1 reopens it, for logrotate), or\n"
                   "to 'journal' (systemd's native protocol; 'journal:SOCKET'\n"
                   "names another socket); default: standard error"},
    [O_HIDE_TENANTS] = {"hide-other-tenants", NULL, T_BOOL, false,
                        "in everyone's queue, show other tenants' jobs without their user,\n"
                        "tenant and name"},
    [O_WEBHOOK_ALLOW] = {"webhook-allow", "CIDRS", T_STR, false,
                         "','-separated address ranges job webhooks may reach\n"
                         "although the default policy refuses them (loopback,\n"
                         "private, link-local, CGNAT, ULA, multicast, broadcast),\n"
                         "e.g. 127.0.0.1/32,10.1.2.0/24 (default: none)"},
};

struct jz_config_args {
    size_t n;
    struct {
        enum opt_id id;
        char *value; /* NULL for flags */
    } set[];
};

static void usage(FILE *out)
{
    fputs("usage: jazarid [options]\n", out);
    for (int i = 0; i < O_COUNT; i++) {
        char head[64];
        snprintf(head, sizeof head, "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        const char *h = opts[i].help;
        bool first = true;
        while (*h) {
            size_t len = strcspn(h, "\n");
            fprintf(out, "  %-22s %.*s\n", first ? head : "", (int)len, h);
            first = false;
            h += len + (h[len] == '\n');
        }
    }
    fputs("  --version              print the version\n"
          "  --help                 print this help\n"
          "Signals: SIGHUP re-reads the configuration file and the plugin folders; SIGUSR1\n"
          "reopens the log file; SIGTERM and SIGINT stop once pending changes are durable.\n",
          out);
}

/* A whole decimal number in [min, max]. */
static bool parse_count(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "N" or "N/s" requests per second (N may have a fraction; 0 turns rate limiting off). */
static bool parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0 && v <= 1e6) || (*end && strcmp(end, "/s") != 0))
        return false;
    *out = v;
    return true;
}

static bool parse_listen(const char *s, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= host_len)
        return false;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || p < 0 || p > 65535)
        return false;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return true;
}

static bool valid_log_file(const char *s)
{
    return *s && (strcmp(s, "journal") == 0 || strncmp(s, "journal:", 8) != 0 || s[8]);
}

/* Applies one option to cfg; false when the value is refused. */
static bool set_option(struct jz_server_config *cfg, enum opt_id id, const char *v, bool flag)
{
    switch (id) {
    case O_LISTEN:
        return parse_listen(v, cfg->listen_host, sizeof cfg->listen_host, &cfg->listen_port);
    case O_STATE: return *v && jz_strlcpy(cfg->state_dir, v, sizeof cfg->state_dir);
    case O_TOPO: return jz_strlcpy(cfg->topology_path, v, sizeof cfg->topology_path);
    case O_NO_LOCAL: cfg->no_local_node = flag; return true;
    case O_SITE:
        return jz_name_is_safe(v, 63) && jz_strlcpy(cfg->local_site, v, sizeof cfg->local_site);
    case O_AGENT_LISTEN: {
        char host[256];
        int port;
        return parse_listen(v, host, sizeof host, &port) &&
               jz_strlcpy(cfg->agent_listen, v, sizeof cfg->agent_listen);
    }
    case O_NODE_TIMEOUT: return parse_count(v, 1, 86400, &cfg->node_timeout_s);
    case O_PLUGINS: return jz_strlcpy(cfg->plugin_dir, v, sizeof cfg->plugin_dir);
    case O_WORKER: return *v && jz_strlcpy(cfg->worker_path, v, sizeof cfg->worker_path);
    case O_FALLBACK:
        return (strcmp(v, "cpu") == 0 || strcmp(v, "opencl") == 0) &&
               jz_strlcpy(cfg->fallback_backend, v, sizeof cfg->fallback_backend);
    case O_GRACE: return parse_count(v, 0, 3600, &cfg->kill_grace_s);
    case O_MAXPEND: return parse_count(v, 1, 100000000, &cfg->max_pending_per_user);
    case O_USER: return jz_strlcpy(cfg->run_as, v, sizeof cfg->run_as);
    case O_NODE_DIR: return jz_strlcpy(cfg->node_dir, v, sizeof cfg->node_dir);
    case O_DEFAULT_ACCOUNT:
        return (!*v || jz_auth_unix_user_valid(v)) &&
               jz_strlcpy(cfg->default_unix_user, v, sizeof cfg->default_unix_user);
    case O_TLS_CERT: return *v && jz_strlcpy(cfg->tls_cert, v, sizeof cfg->tls_cert);
    case O_TLS_KEY: return *v && jz_strlcpy(cfg->tls_key, v, sizeof cfg->tls_key);
    case O_PLAIN: cfg->allow_plain_http = flag; return true;
    case O_HIDE_TENANTS: cfg->hide_other_tenants = flag; return true;
    case O_WEBHOOK_ALLOW:
        return jz_webhook_allow_list_ok(v, NULL, 0) &&
               jz_strlcpy(cfg->webhook_allow, v, sizeof cfg->webhook_allow);
    case O_MAXCONN: return parse_count(v, 1, 1000000, &cfg->max_connections);
    case O_IDLE: return parse_count(v, 1, 86400, &cfg->idle_timeout_s);
    case O_RATE: return parse_rate(v, &cfg->rate_per_s);
    case O_BURST: {
        int64_t burst = 0;
        if (!parse_count(v, 1, 1000000, &burst))
            return false;
        cfg->rate_burst = (double)burst;
        return true;
    }
    case O_STREAMS: return parse_count(v, 1, 1024, &cfg->max_log_streams);
    case O_CONFIG: return *v && jz_strlcpy(cfg->config_path, v, sizeof cfg->config_path);
    case O_PORTFILE: return *v && jz_strlcpy(cfg->port_file, v, sizeof cfg->port_file);
    case O_LOGLEVEL: {
        int level = jz_log_level_parse(v);
        if (level < 0)
            return false;
        cfg->log_level = level;
        return true;
    }
    case O_LOGFILE:
        return valid_log_file(v) && jz_strlcpy(cfg->log_file, v, sizeof cfg->log_file);
    case O_COUNT: break;
    }
    return false;
}

enum jz_config_parse jz_config_parse_args(int argc, char **argv, struct jz_config_args **out)
{
    struct option long_opts[O_COUNT + 3];
    for (int i = 0; i < O_COUNT; i++)
        long_opts[i] = (struct option){opts[i].name,
                                       opts[i].arg ? required_argument : no_argument, NULL,
                                       256 + i};
    long_opts[O_COUNT] = (struct option){"help", no_argument, NULL, 'h'};
    long_opts[O_COUNT + 1] = (struct option){"version", no_argument, NULL, 'V'};
    long_opts[O_COUNT + 2] = (struct option){NULL, 0, NULL, 0};

    struct jz_config_args *a = calloc(1, sizeof *a + (size_t)argc * sizeof a->set[0]);
    if (!a) {
        fprintf(stderr, "jazarid: out of memory\n");
        return JZ_CONFIG_USAGE;
    }
    struct jz_server_config probe = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c == 'h' || c == 'V') {
            if (c == 'h')
                usage(stdout);
            else
                jz_version_print(stdout, "jazarid");
            jz_config_args_free(a);
            return JZ_CONFIG_DONE;
        }
        if (c < 256 || c >= 256 + O_COUNT) {
            usage(stderr);
            jz_config_args_free(a);
            return JZ_CONFIG_USAGE;
        }
        enum opt_id id = (enum opt_id)(c - 256);
        /* Checked now so that a bad value is a usage error before anything starts. */
        if (!set_option(&probe, id, optarg ? optarg : "", true)) {
            fprintf(stderr, "jazarid: bad value for --%s: '%s'\n", opts[id].name,
                    optarg ? optarg : "");
            jz_config_args_free(a);
            return JZ_CONFIG_USAGE;
        }
        a->set[a->n].id = id;
        a->set[a->n].value = optarg ? strdup(optarg) : NULL;
        if (optarg && !a->set[a->n].value) {
            jz_config_args_free(a);
            return JZ_CONFIG_USAGE;
        }
        a->n++;
    }
    if (optind < argc) {
        fprintf(stderr, "jazarid: unexpected argument '%s'\n", argv[optind]);
        jz_config_args_free(a);
        return JZ_CONFIG_USAGE;
    }
    *out = a;
    return JZ_CONFIG_RUN;
}

void jz_config_args_free(struct jz_config_args *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->set[i].value);
    free(a);
}

const char *jz_config_args_file(const struct jz_config_args *a)
{
    const char *path = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (a->set[i].id == O_CONFIG)
            path = a->set[i].value;
    return path;
}

static void defaults(struct jz_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8600;
    snprintf(cfg->state_dir, sizeof cfg->state_dir, "jazari-state");
    snprintf(cfg->fallback_backend, sizeof cfg->fallback_backend, "cpu");
    cfg->kill_grace_s = 10;
    cfg->max_pending_per_user = 100000;
    cfg->node_timeout_s = JZ_NODE_DEFAULT_TIMEOUT_S;
    cfg->idle_timeout_s = JZ_DEFAULT_IDLE_TIMEOUT_S;
    cfg->rate_per_s = JZ_DEFAULT_RATE_PER_S;
    cfg->rate_burst = JZ_DEFAULT_RATE_BURST;
    cfg->max_log_streams = JZ_DEFAULT_LOG_STREAMS;
    cfg->log_level = JZ_SEV_INFO;
    /* The limits on what a job writes and runs (docs/security.md). */
    cfg->log_max_bytes = 1LL << 30;
    cfg->output_max_bytes = 64LL << 30;
    cfg->pids_max = 4096;
    cfg->params_max_bytes = 64 * 1024;
    cfg->retention_s = 90LL * 86400;
    cfg->min_free_bytes = 256LL << 20;
}

/* The file's "limits" object: what one job may write and run, and the free disk every node
 * keeps (docs/security.md). */
static int parse_limits(const json_t *lim, struct jz_server_config *cfg, struct jz_error *err)
{
    struct {
        const char *key;
        int64_t *dst;
        int64_t scale, max;
    } keys[] = {
        {"log_bytes", &cfg->log_max_bytes, 1, 1LL << 50},
        {"output_bytes", &cfg->output_max_bytes, 1, 1LL << 50},
        {"pids", &cfg->pids_max, 1, 1 << 22},
        {"params_bytes", &cfg->params_max_bytes, 1, JZ_MAX_BODY_BYTES},
        {"min_free_mb", &cfg->min_free_bytes, 1 << 20, 1 << 30},
    };
    if (!lim)
        return 0;
    if (!json_is_object(lim))
        return jz_error_set(err, JZ_EINVAL, "config: \"limits\" must be an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)lim, k, v) {
        if (strcmp(k, "retention_days") == 0) { /* days, fractions allowed */
            double days = json_number_value(v);
            if (!json_is_number(v) || days < 0 || days > 36500)
                return jz_error_set(err, JZ_EINVAL, "config: limits.retention_days must be a "
                                                    "number of days from 0 to 36500 (0: keep)");
            cfg->retention_s = (int64_t)(days * 86400.0 + 0.5);
            if (days > 0 && cfg->retention_s == 0)
                cfg->retention_s = 1;
            continue;
        }
        size_t i = 0;
        while (i < sizeof keys / sizeof keys[0] && strcmp(keys[i].key, k) != 0)
            i++;
        if (i == sizeof keys / sizeof keys[0])
            return jz_error_set(err, JZ_EINVAL, "config: unknown key limits.%.60s", k);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > keys[i].max)
            return jz_error_set(err, JZ_EINVAL,
                                "config: limits.%s must be an integer from 0 to %lld (0: none)",
                                k, (long long)keys[i].max);
        *keys[i].dst = (int64_t)json_integer_value(v) * keys[i].scale;
    }
    return 0;
}

/* The sections read by other modules (they check their own contents). */
static const char *const sections[] = {"scheduler", "limits", "tenants", "plugins", "prices",
                                       "booking", NULL};

/* "booking": limits on booked compute slots (server/reservations.c), each a count or seconds. */
static int check_booking(const json_t *b, struct jz_error *err)
{
    static const char *const keys[] = {"min_window_s", "max_window_s", "max_ahead_s",
                                       "max_per_tenant", NULL};
    if (!b || json_is_null(b))
        return 0;
    if (!json_is_object(b))
        return jz_error_set(err, JZ_EINVAL, "booking: expected an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)b, k, v) {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            known |= strcmp(k, keys[i]) == 0;
        if (!known)
            return jz_error_set(err, JZ_EINVAL,
                                "booking.%.64s: unknown key (min_window_s, max_window_s, "
                                "max_ahead_s, max_per_tenant)",
                                k);
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 10LL * 365 * 86400)
            return jz_error_set(err, JZ_EINVAL, "booking.%s: expected a positive integer", k);
    }
    const json_t *lo = json_object_get(b, "min_window_s"), *hi = json_object_get(b, "max_window_s");
    if (lo && hi && json_integer_value(lo) > json_integer_value(hi))
        return jz_error_set(err, JZ_EINVAL, "booking.min_window_s: above max_window_s");
    return 0;
}

static void key_of(enum opt_id id, char *key, size_t len)
{
    snprintf(key, len, "%s", opts[id].name);
    for (char *p = key; *p; p++)
        if (*p == '-')
            *p = '_';
}

static int unknown_key(const char *k, struct jz_error *err)
{
    const char *best = NULL;
    size_t best_d = 3; /* suggest only close ones */
    char key[64];
    for (int i = 0; i < O_COUNT; i++) {
        key_of((enum opt_id)i, key, sizeof key);
        size_t d = jz_str_distance(k, key);
        if (d < best_d) {
            best_d = d;
            best = opts[i].name;
        }
    }
    for (const char *const *s = sections; *s; s++) {
        size_t d = jz_str_distance(k, *s);
        if (d < best_d) {
            best_d = d;
            best = *s;
        }
    }
    if (!best)
        return jz_error_set(err, JZ_EINVAL, "config: unknown key \"%.60s\"", k);
    char sugg[64];
    snprintf(sugg, sizeof sugg, "%s", best);
    for (char *p = sugg; *p; p++)
        if (*p == '-')
            *p = '_';
    return jz_error_set(err, JZ_EINVAL, "config: unknown key \"%.60s\" (did you mean \"%s\"?)", k,
                        sugg);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static void copy_setting(struct jz_server_config *dst, const struct jz_server_config *src,
                         enum opt_id id);

/* One top-level key of the file that is an option; null means the option's default (so that a
 * file can list every option, packaging/jazarid.json does). */
static int apply_file_option(struct jz_server_config *cfg, enum opt_id id, const char *key,
                             const json_t *v, struct jz_error *err)
{
    if (json_is_null(v)) {
        struct jz_server_config dflt;
        defaults(&dflt);
        copy_setting(cfg, &dflt, id);
        return 0;
    }
    static const char *const wants[] = {"a string", "an integer", "a number or \"N/s\"",
                                        "true or false"};
    char text[64];
    const char *value = NULL;
    bool flag = false;
    switch (opts[id].type) {
    case T_STR: value = json_is_string(v) ? json_string_value(v) : NULL; break;
    case T_INT:
        if (json_is_integer(v)) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
            value = text;
        }
        break;
    case T_NUM:
        if (json_is_number(v)) {
            snprintf(text, sizeof text, "%.17g", json_number_value(v));
            value = text;
        } else if (json_is_string(v)) {
            value = json_string_value(v);
        }
        break;
    case T_BOOL:
        if (json_is_boolean(v)) {
            flag = json_is_true(v);
            value = "";
        }
        break;
    }
    if (!value)
        return jz_error_set(err, JZ_EINVAL, "config: \"%s\" must be %s (or null), not %s", key,
                            wants[opts[id].type], type_name(v));
    if (!set_option(cfg, id, value, flag)) {
        if (json_is_string(v))
            return jz_error_set(err, JZ_EINVAL, "config: bad value for \"%s\": \"%.200s\" (see "
                                                "jazarid --help, --%s)", key, value, opts[id].name);
        return jz_error_set(err, JZ_EINVAL, "config: bad value for \"%s\": %s (see jazarid "
                                            "--help, --%s)", key, value, opts[id].name);
    }
    return 0;
}

int jz_config_build(const struct jz_config_args *args, struct jz_server_config *cfg,
                    json_t **file, struct jz_error *err)
{
    defaults(cfg);
    const char *path = jz_config_args_file(args);
    json_t *root = path ? jz_json_load_file(path, 1024 * 1024, err) : json_object();
    if (!root)
        return jz_error_set(err, err->code ? err->code : JZ_EINVAL, "config %.200s: %.300s",
                            path, err->msg);
    if (!json_is_object(root)) {
        json_decref(root);
        return jz_error_set(err, JZ_EINVAL, "config %.200s: must be a JSON object", path);
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        bool section = false;
        for (const char *const *s = sections; *s; s++)
            section |= strcmp(k, *s) == 0;
        if (section) {
            if (!json_is_object(v)) {
                int rc = jz_error_set(err, JZ_EINVAL,
                                      "config: \"%s\" must be an object, not %s", k,
                                      type_name(v));
                json_decref(root);
                return rc;
            }
            continue;
        }
        int id = 0;
        char key[64];
        for (; id < O_COUNT; id++) {
            key_of((enum opt_id)id, key, sizeof key);
            if (strcmp(key, k) == 0)
                break;
        }
        if (id == O_COUNT || id == O_CONFIG) {
            int rc = id == O_CONFIG
                         ? jz_error_set(err, JZ_EINVAL, "config: \"config\" is a command-line "
                                                        "option only")
                         : unknown_key(k, err);
            json_decref(root);
            return rc;
        }
        if (apply_file_option(cfg, (enum opt_id)id, k, v, err)) {
            json_decref(root);
            return err->code;
        }
    }
    if (parse_limits(json_object_get(root, "limits"), cfg, err)) {
        json_decref(root);
        return err->code;
    }
    /* The sections other modules read are checked now too, so that a mistake is a usage error
     * before anything starts (and a reload is refused before anything changes). */
    struct jz_sched_parsed *pc = NULL;
    if (jz_sched_config_parse(json_object_get(root, "scheduler"), &pc, err) ||
        jz_auth_set_tenants(NULL, root, true, err) || jz_prices_check(root, err) ||
        check_booking(json_object_get(root, "booking"), err)) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        jz_error_set(err, JZ_EINVAL, "config: %s",
                     strncmp(msg, "config: ", 8) == 0 ? msg + 8 : msg);
        jz_sched_parsed_free(pc);
        json_decref(root);
        return JZ_EINVAL;
    }
    jz_sched_parsed_free(pc);
    for (size_t i = 0; i < args->n; i++) /* the command line wins */
        set_option(cfg, args->set[i].id, args->set[i].value ? args->set[i].value : "", true);
    *file = root;
    return 0;
}

static void add_name(char *buf, size_t len, const char *name)
{
    size_t used = strlen(buf);
    if (used + strlen(name) + 3 < len)
        snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
}

/* Whether option id's setting differs between a and b. */
static bool differs(const struct jz_server_config *a, const struct jz_server_config *b,
                    enum opt_id id)
{
    switch (id) {
    case O_LISTEN:
        return strcmp(a->listen_host, b->listen_host) != 0 || a->listen_port != b->listen_port;
    case O_STATE: return strcmp(a->state_dir, b->state_dir) != 0;
    case O_TOPO: return strcmp(a->topology_path, b->topology_path) != 0;
    case O_NO_LOCAL: return a->no_local_node != b->no_local_node;
    case O_SITE: return strcmp(a->local_site, b->local_site) != 0;
    case O_AGENT_LISTEN: return strcmp(a->agent_listen, b->agent_listen) != 0;
    case O_NODE_TIMEOUT: return a->node_timeout_s != b->node_timeout_s;
    case O_PLUGINS: return strcmp(a->plugin_dir, b->plugin_dir) != 0;
    case O_WORKER: return strcmp(a->worker_path, b->worker_path) != 0;
    case O_FALLBACK: return strcmp(a->fallback_backend, b->fallback_backend) != 0;
    case O_GRACE: return a->kill_grace_s != b->kill_grace_s;
    case O_MAXPEND: return a->max_pending_per_user != b->max_pending_per_user;
    case O_USER: return strcmp(a->run_as, b->run_as) != 0;
    case O_NODE_DIR: return strcmp(a->node_dir, b->node_dir) != 0;
    case O_DEFAULT_ACCOUNT: return strcmp(a->default_unix_user, b->default_unix_user) != 0;
    case O_TLS_CERT: return strcmp(a->tls_cert, b->tls_cert) != 0;
    case O_TLS_KEY: return strcmp(a->tls_key, b->tls_key) != 0;
    case O_PLAIN: return a->allow_plain_http != b->allow_plain_http;
    case O_HIDE_TENANTS: return a->hide_other_tenants != b->hide_other_tenants;
    case O_WEBHOOK_ALLOW: return strcmp(a->webhook_allow, b->webhook_allow) != 0;
    case O_MAXCONN: return a->max_connections != b->max_connections;
    case O_IDLE: return a->idle_timeout_s != b->idle_timeout_s;
    case O_RATE: return a->rate_per_s != b->rate_per_s;
    case O_BURST: return a->rate_burst != b->rate_burst;
    case O_STREAMS: return a->max_log_streams != b->max_log_streams;
    case O_CONFIG: return strcmp(a->config_path, b->config_path) != 0;
    case O_PORTFILE: return strcmp(a->port_file, b->port_file) != 0;
    case O_LOGLEVEL: return a->log_level != b->log_level;
    case O_LOGFILE: return strcmp(a->log_file, b->log_file) != 0;
    case O_COUNT: break;
    }
    return false;
}

void jz_config_diff(const struct jz_server_config *old_cfg, const struct jz_server_config *new_cfg,
                    char *live, size_t live_len, char *restart, size_t restart_len)
{
    live[0] = restart[0] = '\0';
    char key[64];
    for (int i = 0; i < O_COUNT; i++) {
        if (!differs(old_cfg, new_cfg, (enum opt_id)i))
            continue;
        key_of((enum opt_id)i, key, sizeof key);
        if (opts[i].restart)
            add_name(restart, restart_len, key);
        else
            add_name(live, live_len, key);
    }
    if (old_cfg->log_max_bytes != new_cfg->log_max_bytes ||
        old_cfg->output_max_bytes != new_cfg->output_max_bytes ||
        old_cfg->pids_max != new_cfg->pids_max ||
        old_cfg->params_max_bytes != new_cfg->params_max_bytes ||
        old_cfg->retention_s != new_cfg->retention_s)
        add_name(live, live_len, "limits");
    /* Each node agent applies its free-disk floor from its own start. */
    if (old_cfg->min_free_bytes != new_cfg->min_free_bytes)
        add_name(restart, restart_len, "limits.min_free_mb");
}

/* What the settings leave to jazarid: the worker next to it, the built-in plugin folder, an
 * absolute state folder (job paths go to workers) and the local node's folder beside it. The
 * same on start-up and on reloads, so that a reload compares like with like. */
int jz_config_resolve_paths(struct jz_server_config *cfg, struct jz_error *err)
{
    char exe_dir[4096];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        snprintf(exe_dir, sizeof exe_dir, ".");
    if (!cfg->worker_path[0])
        snprintf(cfg->worker_path, sizeof cfg->worker_path, "%.4000s/jazari-worker", exe_dir);
    /* Folders given add to the built-in one, which comes first (docs/plugin-guide.md). */
    if (jz_plugin_dirs_compose(cfg->plugin_dir, cfg->plugin_dir, sizeof cfg->plugin_dir) != 0)
        return jz_error_set(err, JZ_EINVAL, "--plugin-dir: too many plugin folders");
    if (!cfg->plugin_dir[0])
        return jz_error_set(err, JZ_EINVAL,
                            "cannot find the built-in plugin folder; give --plugin-dir");
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/jobs", cfg->state_dir);
    if (jz_mkdir_p(sub, 0750) != 0)
        return jz_error_set(err, JZ_EIO, "cannot create state directory %s: %s",
                            cfg->state_dir, strerror(errno));
    char abs_state[PATH_MAX];
    if (!realpath(cfg->state_dir, abs_state))
        return jz_error_set(err, JZ_EIO, "%s: %s", cfg->state_dir, strerror(errno));
    jz_strlcpy(cfg->state_dir, abs_state, sizeof cfg->state_dir);
    /* Job paths below it go to the worker, which takes paths of JZ_MAX_PATH_LEN bytes. */
    if (strlen(cfg->state_dir) > JZ_MAX_PATH_LEN - 100)
        return jz_error_set(err, JZ_EINVAL, "--state-dir %s is too long (at most %d bytes)",
                            cfg->state_dir, JZ_MAX_PATH_LEN - 100);
    if (!cfg->node_dir[0])
        snprintf(cfg->node_dir, sizeof cfg->node_dir, "%.4000s-node", cfg->state_dir);
    return 0;
}

/* Copies option id's setting from src to dst. */
static void copy_setting(struct jz_server_config *dst, const struct jz_server_config *src,
                         enum opt_id id)
{
#define COPY(field) memcpy(&dst->field, &src->field, sizeof dst->field)
    switch (id) {
    case O_LISTEN: COPY(listen_host); COPY(listen_port); break;
    case O_STATE: COPY(state_dir); break;
    case O_TOPO: COPY(topology_path); break;
    case O_NO_LOCAL: COPY(no_local_node); break;
    case O_SITE: COPY(local_site); break;
    case O_AGENT_LISTEN: COPY(agent_listen); break;
    case O_NODE_TIMEOUT: COPY(node_timeout_s); break;
    case O_PLUGINS: COPY(plugin_dir); break;
    case O_WORKER: COPY(worker_path); break;
    case O_FALLBACK: COPY(fallback_backend); break;
    case O_GRACE: COPY(kill_grace_s); break;
    case O_MAXPEND: COPY(max_pending_per_user); break;
    case O_USER: COPY(run_as); break;
    case O_NODE_DIR: COPY(node_dir); break;
    case O_DEFAULT_ACCOUNT: COPY(default_unix_user); break;
    case O_TLS_CERT: COPY(tls_cert); break;
    case O_TLS_KEY: COPY(tls_key); break;
    case O_PLAIN: COPY(allow_plain_http); break;
    case O_HIDE_TENANTS: COPY(hide_other_tenants); break;
    case O_WEBHOOK_ALLOW: COPY(webhook_allow); break;
    case O_MAXCONN: COPY(max_connections); break;
    case O_IDLE: COPY(idle_timeout_s); break;
    case O_RATE: COPY(rate_per_s); break;
    case O_BURST: COPY(rate_burst); break;
    case O_STREAMS: COPY(max_log_streams); break;
    case O_CONFIG: COPY(config_path); break;
    case O_PORTFILE: COPY(port_file); break;
    case O_LOGLEVEL: COPY(log_level); break;
    case O_LOGFILE: COPY(log_file); break;
    case O_COUNT: break;
    }
#undef COPY
}

void jz_config_keep_restart(const struct jz_server_config *old_cfg,
                            struct jz_server_config *new_cfg)
{
    for (int i = 0; i < O_COUNT; i++)
        if (opts[i].restart)
            copy_setting(new_cfg, old_cfg, (enum opt_id)i);
    new_cfg->min_free_bytes = old_cfg->min_free_bytes;
}
