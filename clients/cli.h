/* Internal interface of the `jazari` command-line client: the pieces that need no server
 * (argument parsing into request bodies, configuration, formatting) kept apart from HTTP. */
#ifndef JZ_CLIENTS_CLI_H
#define JZ_CLIENTS_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jazari/error.h>

/* Process exit statuses (wait mirrors the job's own instead). */
#define JZ_CLI_EXIT_OK 0
#define JZ_CLI_EXIT_FAIL 1  /* server or network error */
#define JZ_CLI_EXIT_USAGE 2 /* bad command line or configuration */
#define JZ_CLI_EXIT_JOB_TIMEOUT 152 /* wait: the job hit its time limit (128 + SIGXCPU) */

/* Limits on what the user controls. */
#define JZ_CLI_MAX_ARGS 4096              /* argv elements of one command line */
#define JZ_CLI_MAX_PARAMS_JSON (1u << 20) /* bytes of --params-json */
#define JZ_CLI_MAX_RESPONSE (64u << 20)   /* bytes of one buffered JSON response */
#define JZ_CLI_MAX_URL 2048
#define JZ_CLI_MAX_TOKEN 1024
#define JZ_CLI_MAX_CA_PATH 4096 /* bytes of the CA file's path */
#define JZ_CLI_MAX_CONFIG (64u << 10) /* bytes of the config file or token file */
#define JZ_CLI_MAX_QUEUE_LIMIT 1000000
#define JZ_CLI_MAX_NODES 1024       /* --nodes of one job (the server's bound) */
#define JZ_CLI_MAX_GPUS 4096        /* --gpus and --gpus-per-node */
#define JZ_CLI_MAX_NODE_NAME 256    /* bytes of a node name on the command line */
#define JZ_CLI_MAX_SITE 256         /* bytes of --site */
#define JZ_CLI_MAX_DRAIN_REASON 256 /* bytes of --reason (the server's bound) */
#define JZ_CLI_DEFAULT_URL "http://127.0.0.1:8600"

/* ---- option parsing ---------------------------------------------------------------------- */

/* One option a command accepts. id > 0; ids >= JZ_CLI_OPT_COMMON are the common options. */
struct jz_cli_optspec {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 when none */
    bool has_arg;
    int id;
};

enum {
    JZ_CLI_OPT_COMMON = 1000,
    JZ_CLI_OPT_JSON = 1000,
    JZ_CLI_OPT_URL,
    JZ_CLI_OPT_TOKEN,
    JZ_CLI_OPT_HELP,
    JZ_CLI_OPT_CA,
};

/* Values returned by jz_cli_opt_next besides an option id. */
#define JZ_CLI_OPT_END 0 /* no more arguments */
#define JZ_CLI_OPT_POSITIONAL (-1)
#define JZ_CLI_OPT_DASHDASH (-2) /* "--" seen; the rest starts at st->i */
#define JZ_CLI_OPT_ERROR (-3)    /* message in err */

/* Walks argv[1..argc) of one command. Options and positionals may be interleaved;
 * "--opt value" and "--opt=value" are both accepted. Borrowed argv. */
struct jz_cli_optstate {
    int argc;
    char **argv;
    int i;
};

void jz_cli_opt_init(struct jz_cli_optstate *st, int argc, char **argv);
/* Returns an option id (value in *val when it takes one), a positional (in *val), END,
 * DASHDASH or ERROR. The common options (--json --url --token --help/-h) are always known. */
int jz_cli_opt_next(struct jz_cli_optstate *st, const struct jz_cli_optspec *specs,
                    const char **val, struct jz_error *err);

/* A command's option table, for checks over all of them. */
struct jz_cli_option_table {
    const char *command; /* "queue", "admin audit" */
    const struct jz_cli_optspec *specs;
};
/* The tables the parsers use, each NULL-command terminated: cli_args.c's (submit, queue, nodes,
 * node, admin node token, the common options) and cli_cmds.c's (the rest; `plugin check` has
 * --worker only and `place` its own parser). A test walks them so that a short flag means one
 * thing in every command. */
extern const struct jz_cli_option_table jz_cli_args_option_tables[];
extern const struct jz_cli_option_table jz_cli_option_tables[];

/* Parses a decimal integer in [min, max]; what names the value in messages. */
int jz_cli_parse_int(const char *s, int64_t min, int64_t max, const char *what, int64_t *out,
                     struct jz_error *err);

/* ---- the invocation ---------------------------------------------------------------------- */

/* Options common to every command and the resolved connection settings. */
struct jz_cli {
    const char *cmd; /* command name, for messages ("submit") */
    const char *url_flag;
    const char *token_flag;
    const char *ca_flag;
    bool json;
    bool help;
    char url[JZ_CLI_MAX_URL];
    char token[JZ_CLI_MAX_TOKEN];
    char ca[JZ_CLI_MAX_CA_PATH]; /* CA file for https:// ("": the system's) */
};

/* Stores a common option (id >= JZ_CLI_OPT_COMMON) into cli. */
void jz_cli_common_option(struct jz_cli *cli, int id, const char *val);

/* ---- submit ------------------------------------------------------------------------------ */

/* Builds the POST /v1/jobs body from the arguments after "submit" (argv[0] is "submit").
 * cwd becomes submit_dir (may be NULL to leave it out). *body is a new reference owned by
 * the caller, written only on success. Returns 0, or JZ_EINVAL / JZ_ELIMIT with err set; when
 * --help is seen, returns 0 with cli->help set and *body NULL. */
int jz_cli_submit_build(struct jz_cli *cli, int argc, char **argv, const char *cwd, json_t **body,
                        struct jz_error *err);

/* What `queue` asks for. */
struct jz_cli_queue_args {
    bool all;           /* --all: everyone's pending and running jobs (scope=all) */
    const char *states; /* NULL: PENDING,RUNNING; "" (--state all): every state */
    const char *user;
    const char *tenant;
    const char *names;  /* --name: a comma list of job names, matched by the client */
    const char *format; /* --format: a comma list of columns; NULL: the default ones */
    const char *sort;   /* --sort: a column, '-' first for descending; NULL: the server's order */
    bool expand;        /* --expand: one row per array element */
    bool noheader;
    int64_t limit;
};

/* Parses the arguments after "queue" (argv[0] is "queue"); borrowed strings point into argv. */
int jz_cli_queue_parse(struct jz_cli *cli, int argc, char **argv, struct jz_cli_queue_args *out,
                       struct jz_error *err);
/* Writes the path of one page of GET /v1/jobs into buf ("/v1/jobs?limit=..."). after < 0:
 * first page. Values are URL-encoded. */
/* Appends "?key=value" to a request path (or "&key=value" when it has a query already), value
 * percent-encoded (RFC 3986 unreserved characters kept, and ',' when lists is set: a list of
 * states). False, with buf as it was, when it does not fit in len. */
bool jz_cli_query_add(char *buf, size_t len, const char *key, const char *value, bool lists);
int jz_cli_queue_path(const struct jz_cli_queue_args *q, int64_t after, int64_t page_limit,
                      char *buf, size_t len, struct jz_error *err);

/* True when job passes the client-side filters of q (--name). */
bool jz_cli_queue_match(const struct jz_cli_queue_args *q, const json_t *job);

/* The columns `queue --format` knows, NULL-terminated ("id", "name", "user", ...). */
extern const char *const jz_cli_queue_columns[];
/* The `jazari queue` table of a list of jobs (GET /v1/jobs "jobs"), with q's columns, sort,
 * expansion and header; TIME taken at now_ms. Array elements are one row per array
 * ("12_[0-9,12%4]", STATE "RUNNING:2,PENDING:8") unless q->expand, then "12_5" each.
 * NULL when out of memory. The caller frees the table. */
struct jz_table *jz_cli_queue_table(const json_t *jobs, const struct jz_cli_queue_args *q,
                                    int64_t now_ms);

/* Colours the STATE column of a queue table, wherever q's format put it. */
void jz_cli_queue_color(struct jz_table *t, const struct jz_cli_queue_args *q);

/* ---- nodes ------------------------------------------------------------------------------- */

/* Parses the arguments after "nodes" (argv[0] is "nodes"): --site SITE. *site (borrowed from
 * argv, NULL when not given) is written only on success. */
int jz_cli_nodes_parse(struct jz_cli *cli, int argc, char **argv, const char **site,
                       struct jz_error *err);
/* Writes "/v1/nodes", or "/v1/nodes?site=SITE" with SITE URL-encoded, into buf. */
int jz_cli_nodes_path(const char *site, char *buf, size_t len, struct jz_error *err);

/* What `node` (and `admin node revoke`) was asked to do. */
enum jz_cli_node_verb {
    JZ_CLI_NODE_DRAIN = 1,
    JZ_CLI_NODE_RESUME,
    JZ_CLI_NODE_RM,
    JZ_CLI_NODE_REVOKE,
};
struct jz_cli_node_args {
    enum jz_cli_node_verb verb;
    const char *name;   /* borrowed from argv */
    const char *reason; /* drain only; borrowed from argv */
};

/* Parses "VERB NAME [--reason TEXT]" (argv[0] is the verb: "drain", "resume", "rm" or "revoke").
 * --reason is required for drain (1..JZ_CLI_MAX_DRAIN_REASON bytes) and refused otherwise.
 * *out is written only on success; with --help, returns 0 with cli->help set and *out
 * untouched. */
int jz_cli_node_parse(struct jz_cli *cli, int argc, char **argv, struct jz_cli_node_args *out,
                      struct jz_error *err);
/* The request for a parsed node command: *method ("POST" or "DELETE", static), the path with
 * the name URL-encoded, and *body (a new reference, NULL for rm and revoke). Output parameters
 * are written only on success. */
int jz_cli_node_request(const struct jz_cli_node_args *a, const char **method, char *path,
                        size_t len, json_t **body, struct jz_error *err);

/* Builds the POST /v1/admin/node-tokens body from the arguments after "token" (argv[0] is
 * "token"): [--site SITE] [--ttl DURATION]. *body is a new reference written only on success;
 * with --help, returns 0 with cli->help set and *body NULL. */
int jz_cli_node_token_build(struct jz_cli *cli, int argc, char **argv, json_t **body,
                            struct jz_error *err);

/* ---- configuration ----------------------------------------------------------------------- */

typedef const char *(*jz_cli_getenv_fn)(const char *name);

/* Parses config file text ("url = ...", "token = ...", '#' comments). Unknown keys are
 * ignored so that older clients read newer files. Writes only the keys present (into the
 * caller's buffers, each JZ_CLI_MAX_URL / JZ_CLI_MAX_TOKEN bytes). */
int jz_cli_config_parse(const char *text, size_t len, const char *origin, char *url, bool *has_url,
                        char *token, bool *has_token, struct jz_error *err);

/* Resolves cli->url and cli->token: flag, then environment (JAZARI_URL; JAZARI_TOKEN, then
 * JAZARI_TOKEN_FILE), then the config file ($JAZARI_CONFIG or ~/.config/jazari/config, read
 * only when needed), then the default URL. A missing token is not an error here (token "").
 * For an https:// URL, cli->ca (the CA file that the server's certificate must chain to) comes
 * from --ca, then JAZARI_CA, then the config file's "ca" key (relative to the file's folder);
 * "" leaves the system's CA store. The file must be readable. */
int jz_cli_config_resolve(struct jz_cli *cli, jz_cli_getenv_fn env, struct jz_error *err);

/* ---- formatting -------------------------------------------------------------------------- */
/* Formats an ISO time as local "YYYY-MM-DD HH:MM:SS"; "-" when iso is NULL or unreadable. */
void jz_cli_time_local(const char *iso, char *buf, size_t len);

/* How long ago iso was, seen at now_ms: "4s ago", "2m30s ago", "1h5m ago", "3d ago" (the two
 * largest units); a time in the future (clock skew) is "0s ago"; "-" when iso is NULL or
 * unreadable. */
void jz_cli_age_format(const char *iso, int64_t now_ms, char *buf, size_t len);

/* The GPUS cell of a job: "2x4" for a multi-node job with gpus_per_node, else the number of
 * GPUs it holds, or asked for while it waits. */
void jz_cli_job_gpus(const json_t *job, char *buf, size_t len);

/* The process exit code that mirrors an ended job: SUCCEEDED 0, FAILED exit code N (1 when
 * none or out of range), killed by signal S 128+S, TIMEOUT 152, CANCELLED 130.
 * Returns -1 while the job has not ended. */
int jz_cli_job_exit_code(const json_t *job);
/* True for SUCCEEDED, FAILED, CANCELLED and TIMEOUT. */
bool jz_cli_state_is_final(const char *state);

/* Writes the one-line message for an error response: the server's message (prefixed with its
 * field when the message does not name it) and the status, "params.lr: expected a number (400)".
 * body may be anything; a non-JSON body gives "HTTP 502: first line". */
void jz_cli_server_error(long status, const char *body, size_t body_len, char *buf, size_t len);

/* A table printed with aligned columns. Cells are copied through jz_cli_sanitize, so that a job
 * name cannot drive the terminal or reorder the line. */
struct jz_table;
struct jz_table *jz_table_new(size_t ncols, const char *const *headers);
/* Adds a row of ncols cells (NULL cells print as "-"). Returns 0 or JZ_ENOMEM. */
int jz_table_add(struct jz_table *t, const char *const *cells);
/* Right-aligns column col (numbers). */
void jz_table_align_right(struct jz_table *t, size_t col);
/* Leaves the header out when printing (--noheader). */
void jz_table_hide_header(struct jz_table *t);
/* Prints header and rows; the last column is not padded. */
void jz_table_print(const struct jz_table *t, FILE *out);
void jz_table_free(struct jz_table *t);

/* The `jazari nodes` table of a GET /v1/nodes "nodes" array, heartbeat ages taken at now_ms:
 * NAME SITE STATE GPUS(free/total) MODEL JOBS HEARTBEAT, and REASON when any node is draining
 * or drained. The caller frees the table; NULL when out of memory. */
struct jz_table *jz_cli_nodes_table(const json_t *nodes, int64_t now_ms);

/* Copies s (NULL reads as "") into buf for a terminal: C0 and C1 control characters and the
 * Unicode bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) are
 * written as \uXXXX escapes, bytes that are not UTF-8 as '?'. Every table, detail and message
 * line that shows text from the server goes through it. The output is cut to len - 1 bytes at
 * a character or escape boundary; JZ_CLI_SANITIZE_GROWTH * strlen(s) + 1 bytes always hold all
 * of it. */
#define JZ_CLI_SANITIZE_GROWTH 6
void jz_cli_sanitize(const char *s, char *buf, size_t len);
/* Writes one CSV cell, quoted when it holds a comma, a quote or a line break (RFC 4180), then a
 * comma, or a newline after the last one. */
void jz_cli_csv_cell(FILE *out, const char *s, bool last);

/* ---- HTTP -------------------------------------------------------------------------------- */

/* A buffered response. body is NUL-terminated and owned by the struct. */
struct jz_cli_response {
    long status;
    char *body;
    size_t len;
    json_t *json; /* parsed body when it is JSON, else NULL */
};
void jz_cli_response_clear(struct jz_cli_response *r);

/* Sends one request (body may be NULL) to cli->url + path with the bearer token and buffers
 * the answer. Returns 0 when any HTTP status was received (check r->status), or JZ_EIO with
 * err naming the network failure. */
int jz_cli_http(const struct jz_cli *cli, const char *method, const char *path, const json_t *body,
                struct jz_cli_response *r, struct jz_error *err);

/* Streams a GET: bytes of a 2xx answer go to sink as they arrive; an error answer is buffered
 * into r (r->status is set in both cases). Returns 0 when the transfer completed, JZ_EIO when it
 * broke off or could not start, JZ_ECANCELED when sink failed (*received says how many 2xx bytes
 * reached sink). */
typedef int (*jz_cli_sink_fn)(const char *data, size_t len, void *ud);
int jz_cli_http_stream(const struct jz_cli *cli, const char *path, jz_cli_sink_fn sink, void *ud,
                       struct jz_cli_response *r, uint64_t *received, struct jz_error *err);

/* The same, ended by deadline_ms (monotonic, jz_time_mono_ms; < 0: never) with JZ_EIO. */
int jz_cli_http_stream_until(const struct jz_cli *cli, const char *path, int64_t deadline_ms,
                             jz_cli_sink_fn sink, void *ud, struct jz_cli_response *r,
                             uint64_t *received, struct jz_error *err);

/* Server-sent events (text/event-stream) read from a stream in pieces of any size. */
struct jz_cli_sse {
    char *buf; /* the current line, growing */
    size_t len, cap;
    char event[32]; /* the pending event's type ("" for the default "message") */
    char id[32];    /* the last id seen (for last_event_id= on a reconnection) */
    char *data;     /* the pending event's data lines, joined with '\n' */
    size_t data_len, data_cap;
};
/* Called for each complete event; a non-zero return stops jz_cli_sse_feed with that value. */
typedef int (*jz_cli_sse_fn)(const char *event, const char *data, size_t len, void *ud);
/* Feeds bytes; events are dispatched at their blank line. Comments (": keep-alive") dispatch
 * nothing but call fn with event ":" so that the caller sees the stream is alive. Lines longer
 * than 1 MiB are refused (JZ_ELIMIT). Returns 0, a JZ_E* code or fn's value. */
int jz_cli_sse_feed(struct jz_cli_sse *p, const char *data, size_t len, jz_cli_sse_fn fn, void *ud);
void jz_cli_sse_clear(struct jz_cli_sse *p);
/* For a new connection: drops a half-received line and event, keeps the last id. */
void jz_cli_sse_restart(struct jz_cli_sse *p);

/* Colours and progress lines are for people: fd must be a terminal and TERM not "dumb"; for
 * colours NO_COLOR must also be unset or empty (no-color.org). */
bool jz_cli_is_tty(int fd);
bool jz_cli_use_color(int fd);
/* An SGR colour for a job or node state ("" for none): green running/up, yellow pending, red
 * failed/timeout/down, ... */
const char *jz_cli_state_color(const char *state);
/* Colours column col's cells with jz_cli_state_color when printed. */
void jz_table_color_states(struct jz_table *t, size_t col);

/* ---- commands ---------------------------------------------------------------------------- */

/* Each command gets argv starting with its own name and returns the process exit code. */
typedef int (*jz_cli_cmd_fn)(struct jz_cli *cli, int argc, char **argv);

struct jz_cli_command {
    const char *name;
    jz_cli_cmd_fn fn;
    const char *summary;
    const char *usage; /* full help text */
};

/* The command table (NULL-name terminated). */
extern const struct jz_cli_command jz_cli_commands[];

/* `jazari plugin check FILE.so` (cli_plugin.c), and the plugin view it shares with `plugins`. */
int jz_cli_plugin(struct jz_cli *cli, int argc, char **argv);
void jz_cli_plugin_show(const json_t *plugin);

/* What every command file shares (cli_cmds.c): a usage error ("Try 'jazari CMD --help'", exit 2),
 * the command's help, resolving the URL and token (exit 2 on a bad configuration), and one
 * request whose non-2xx or non-JSON answer is reported in one line (prefixed with what, which
 * may be NULL) and returns exit 1 with r cleared; on 0 the caller clears r. */
int jz_cli_usage_error(const struct jz_cli *cli, const char *msg);
int jz_cli_print_usage(const struct jz_cli *cli);
int jz_cli_resolve(struct jz_cli *cli);
/* Parses a command that takes only the common options and min..max positionals (into pos);
 * non-zero (a usage error, printed) otherwise. With --help, 0 and cli->help set. */
int jz_cli_parse_simple(struct jz_cli *cli, int argc, char **argv, const char **pos, int min,
                        int max, int *npos);
int jz_cli_request(const struct jz_cli *cli, const char *method, const char *path,
                   const json_t *body, const char *what, struct jz_cli_response *r);

/* The workflow commands (cli_workflow.c): hold, release, modify, history. */
extern const struct jz_cli_optspec jz_cli_modify_opts[];
extern const struct jz_cli_optspec jz_cli_history_opts[];
int jz_cli_cmd_hold(struct jz_cli *cli, int argc, char **argv);
int jz_cli_cmd_release(struct jz_cli *cli, int argc, char **argv);
int jz_cli_cmd_modify(struct jz_cli *cli, int argc, char **argv);
int jz_cli_cmd_history(struct jz_cli *cli, int argc, char **argv);
/* Builds the PATCH /v1/jobs/ID body of `modify ID [--name N] [--time-limit T] [--nice N]
 * [--class C]`; *body (new reference) is written on success, also with --help. */
int jz_cli_modify_build(struct jz_cli *cli, int argc, char **argv, int64_t *id, json_t **body,
                        struct jz_error *err);
/* Booked compute slots (cli_reservations.c): reserve, reservations, unreserve. */
extern const struct jz_cli_optspec jz_cli_reserve_opts[];
extern const struct jz_cli_optspec jz_cli_reservations_opts[];
int jz_cli_cmd_reserve(struct jz_cli *cli, int argc, char **argv);
int jz_cli_cmd_reservations(struct jz_cli *cli, int argc, char **argv);
int jz_cli_cmd_unreserve(struct jz_cli *cli, int argc, char **argv);
/* A reserve --start/--end value as epoch seconds: "now", "+DURATION" from now_ms, or ISO 8601
 * with its zone. A bare duration is refused (it would read as a time ago). */
int jz_cli_reserve_time(const char *s, int64_t now_ms, int64_t *epoch_s, struct jz_error *err);
/* Builds the POST /v1/reservations body of `reserve`; *body (new reference) is written on
 * success, NULL with --help. */
int jz_cli_reserve_build(struct jz_cli *cli, int argc, char **argv, int64_t now_ms, json_t **body,
                         struct jz_error *err);

/* A --since/--until value as epoch seconds: ISO 8601 with a zone, a day (local midnight),
 * "now", or a duration ago ("7d", "12h", "1-00:00:00"), seen at now_ms. */
int jz_cli_when_parse(const char *s, int64_t now_ms, int64_t *epoch_s, struct jz_error *err);
/* The secret that signs --notify webhooks (JAZARI_NOTIFY_SECRET, else a file made on first
 * use: *created says so, path names it). */
int jz_cli_notify_secret(char *buf, size_t len, bool *created, char *path, size_t path_len,
                         struct jz_error *err);

/* Tenants (cli_tenants.c): `admin tenant add|set|show|list|rm` (cmd_admin dispatches to
 * jz_cli_admin_tenant with argv[0] "tenant") and `tenant show|members|add-member|rm-member|
 * new-token`. The option tables are registered in jz_cli_option_tables. */
extern const struct jz_cli_optspec jz_cli_admin_tenant_opts[];
extern const struct jz_cli_optspec jz_cli_tenant_member_opts[];
int jz_cli_admin_tenant(struct jz_cli *cli, int argc, char **argv);
int jz_cli_cmd_tenant(struct jz_cli *cli, int argc, char **argv);
/* Builds the body of `admin tenant add|set NAME [options]`; *name (borrowed from argv) and
 * *body (new reference) are written on success, also with --help. */
int jz_cli_admin_tenant_build(struct jz_cli *cli, int argc, char **argv, const char **name,
                              json_t **body, struct jz_error *err);

/* Statements and usage reports (cli_billing.c). */
extern const struct jz_cli_optspec jz_cli_statement_opts[];
extern const struct jz_cli_optspec jz_cli_report_opts[];
int jz_cli_cmd_statement(struct jz_cli *cli, int argc, char **argv);
int jz_cli_cmd_report(struct jz_cli *cli, int argc, char **argv);

/* Prints "jazari: CMD: message" on stderr. */
void jz_cli_errorf(const struct jz_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs the whole command line; returns the exit code. extra (NULL-name terminated, may be NULL)
 * adds commands that only the executable links, such as `place`. Not thread-safe. */
int jz_cli_main(int argc, char **argv, const struct jz_cli_command *extra);

#endif
