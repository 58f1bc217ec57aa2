/* `jazari plugin check FILE.so`: what the service would make of a plugin file, without a server
 * and without installing it. The file is described by the local jazari-worker in a child
 * process, as jazarid does it: the client itself never loads plugin code (a plugin's
 * constructors could crash or hang it) and links nothing new (its start-up stays small). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jazari/plugin.h>

#include "clients/cli.h"
#include "common/json.h"
#include "common/run.h"
#include "common/strutil.h"

#define CHECK_TIMEOUT_MS 10000
#define CHECK_MAX_OUTPUT (1024 * 1024)

enum { OPT_WORKER = 1 };

static const struct jz_cli_optspec check_opts[] = {
    {"worker", 0, true, OPT_WORKER},
    {NULL, 0, false, 0},
};

/* The worker to describe with: --worker, else $JAZARI_WORKER, else jazari-worker next to this
 * executable (both are installed into the same bindir; a build tree has them in bin/). */
static int find_worker(const char *given, char *buf, size_t len, struct jz_error *err)
{
    const char *env = getenv("JAZARI_WORKER");
    if (given || (env && *env)) {
        if (!jz_strlcpy(buf, given ? given : env, len))
            return jz_error_set(err, JZ_ELIMIT, "the worker's path is too long");
    } else {
        char dir[4096];
        if (jz_exe_dir(dir, sizeof dir) != 0)
            return jz_error_set(err, JZ_EIO, "cannot find this program's folder; give --worker");
        if ((size_t)snprintf(buf, len, "%s/jazari-worker", dir) >= len)
            return jz_error_set(err, JZ_ELIMIT, "the worker's path is too long");
    }
    if (access(buf, X_OK) != 0)
        return jz_error_set(err, JZ_ENOENT, "cannot run %s: %s (give --worker PATH)", buf,
                            strerror(errno));
    return 0;
}

/* Runs `worker --describe file` and returns its stdout (malloc'd, NUL-terminated). */
static char *describe(const char *worker, const char *file, int *status, struct jz_error *err)
{
    char *argv[] = {(char *)worker, "--describe", (char *)file, NULL};
    char *out = jz_run_capture(argv, CHECK_MAX_OUTPUT, CHECK_TIMEOUT_MS, status, err);
    if (!out && err->code == JZ_ETIMEDOUT)
        jz_error_set(err, JZ_ETIMEDOUT,
                     "describing the plugin took longer than %d ms (a hanging constructor?)",
                     CHECK_TIMEOUT_MS);
    return out;
}

/* Observations that do not refuse the file but that its author should hear of. */
static void print_notes(const json_t *d)
{
    json_t *abi = json_object_get(d, "abi");
    if (jz_json_int(abi, "minor", 0) < JZ_PLUGIN_ABI_MINOR)
        printf("  note: built against ABI %lld.%lld: it has no init, fini or validate hooks\n",
               (long long)jz_json_int(abi, "major", 0), (long long)jz_json_int(abi, "minor", 0));
    if (!jz_json_str(d, "description", NULL) || !*jz_json_str(d, "description", ""))
        printf("  note: no description (shown by 'jazari plugins')\n");
    json_t *hooks = json_object_get(d, "hooks");
    if (json_is_true(json_object_get(hooks, "fini")) && !json_is_true(json_object_get(hooks, "init")))
        printf("  note: fini without init\n");
}

static int check(struct jz_cli *cli, const char *file, const char *worker_flag)
{
    struct jz_error err = {0};
    char worker[4200];
    struct stat st;
    if (stat(file, &st) != 0) {
        jz_cli_errorf(cli, "%s: %s", file, strerror(errno));
        return JZ_CLI_EXIT_FAIL;
    }
    if (!S_ISREG(st.st_mode)) {
        jz_cli_errorf(cli, "%s: not a regular file", file);
        return JZ_CLI_EXIT_FAIL;
    }
    if (find_worker(worker_flag, worker, sizeof worker, &err)) {
        jz_cli_errorf(cli, "%s", err.msg);
        return JZ_CLI_EXIT_USAGE;
    }
    /* The worker resolves a bare name against the library path; keep it the named file. */
    char path[4200];
    snprintf(path, sizeof path, "%s%s", strchr(file, '/') ? "" : "./", file);
    int status = 0;
    char *out = describe(worker, path, &status, &err);
    if (!out) {
        jz_cli_errorf(cli, "%s: %s", file, err.msg);
        return JZ_CLI_EXIT_FAIL;
    }
    json_t *d = jz_json_parse(out, strlen(out), 16, NULL);
    free(out);
    if (!json_is_object(d)) {
        jz_cli_errorf(cli, "%s: the worker could not describe it (%s %d)", file,
                      WIFSIGNALED(status) ? "killed by signal" : "exit status",
                      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        json_decref(d);
        return JZ_CLI_EXIT_FAIL;
    }
    /* Refused as jazarid refuses it (server/plugins.c): the worker's own refusal, a worker
     * that did not end well after describing (a destructor that exits or crashes), or a
     * description without what a job needs. */
    const char *error = jz_json_str(d, "error", NULL);
    char why[256];
    if (!error && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        snprintf(why, sizeof why, "the worker %s %d after describing it",
                 WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        error = why;
    } else if (!error && (!jz_json_str(d, "name", NULL) || !jz_json_str(d, "version", NULL) ||
                          !json_is_array(json_object_get(d, "params")))) {
        snprintf(why, sizeof why, "the description has no name, version or params");
        error = why;
    }
    if (error == why)
        json_object_set_new(d, "error", json_string(why));
    if (cli->json) {
        json_object_set_new(d, "status", json_string(error ? "refused" : "ok"));
        json_object_set_new(d, "path", json_string(file));
        char *text = json_dumps(d, JSON_COMPACT);
        if (text)
            puts(text);
        free(text);
    }
    if (error) {
        char clean[1100];
        jz_cli_sanitize(error, clean, sizeof clean);
        if (!cli->json)
            jz_cli_errorf(cli, "%s: refused: %s", file, clean);
        json_decref(d);
        return JZ_CLI_EXIT_FAIL;
    }
    if (!cli->json) {
        json_object_set_new(d, "status", json_string("ok"));
        jz_cli_plugin_show(d);
        json_t *abi = json_object_get(d, "abi"), *hooks = json_object_get(d, "hooks");
        printf("\n  file:   %s\n  abi:    %lld.%lld\n  hooks: %s%s%s%s\n", file,
               (long long)jz_json_int(abi, "major", 0),
               (long long)jz_json_int(abi, "minor", 0),
               json_is_true(json_object_get(hooks, "init")) ? " init" : "",
               json_is_true(json_object_get(hooks, "validate")) ? " validate" : "",
               json_is_true(json_object_get(hooks, "fini")) ? " fini" : "",
               json_object_size(hooks) && !json_is_true(json_object_get(hooks, "init")) &&
                       !json_is_true(json_object_get(hooks, "validate")) &&
                       !json_is_true(json_object_get(hooks, "fini"))
                   ? " none"
                   : "");
        print_notes(d);
    }
    json_decref(d);
    return JZ_CLI_EXIT_OK;
}

int jz_cli_plugin(struct jz_cli *cli, int argc, char **argv)
{
    struct jz_cli_optstate st;
    jz_cli_opt_init(&st, argc, argv);
    struct jz_error err = {0};
    const char *pos[2] = {NULL, NULL}, *worker = NULL, *val;
    int npos = 0, id;
    while ((id = jz_cli_opt_next(&st, check_opts, &val, &err)) != JZ_CLI_OPT_END) {
        if (id == JZ_CLI_OPT_ERROR || id == JZ_CLI_OPT_DASHDASH) {
            jz_cli_errorf(cli, "%s", id == JZ_CLI_OPT_ERROR ? err.msg : "unexpected '--'");
            return JZ_CLI_EXIT_USAGE;
        }
        if (id == OPT_WORKER)
            worker = val;
        else if (id == JZ_CLI_OPT_POSITIONAL) {
            if (npos == 2) {
                jz_cli_errorf(cli, "too many arguments");
                return JZ_CLI_EXIT_USAGE;
            }
            pos[npos++] = val;
        } else
            jz_cli_common_option(cli, id, val);
    }
    if (cli->help) {
        for (const struct jz_cli_command *c = jz_cli_commands; c->name; c++)
            if (strcmp(c->name, "plugin") == 0)
                fputs(c->usage, stdout);
        return JZ_CLI_EXIT_OK;
    }
    if (npos != 2 || strcmp(pos[0], "check") != 0) {
        jz_cli_errorf(cli, "expected 'check FILE.so'");
        fprintf(stderr, "Try 'jazari plugin --help'.\n");
        return JZ_CLI_EXIT_USAGE;
    }
    return check(cli, pos[1], worker);
}
