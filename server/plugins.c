/* Plugin registry: describe each shared object in a short-lived jazari-worker process. */
#include "server/plugins.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jazari/plugin.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"

#define DESCRIBE_TIMEOUT_MS 10000
#define DESCRIBE_MAX_OUTPUT (1024 * 1024)
#define MAX_PLUGINS 1024

extern char **environ;

struct jz_plugins {
    struct jz_plugin_entry *v;
    size_t n;
};

/* Runs `worker --describe path` and returns its stdout (malloc'd) and exit status. */
static char *run_describe(const char *worker, const char *path, int *status, char *why,
                          size_t whylen)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(why, whylen, "pipe: %s", strerror(errno));
        return NULL;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    char *argv[] = {(char *)worker, "--describe", (char *)path, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, worker, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        snprintf(why, whylen, "cannot run %s: %s", worker, strerror(rc));
        return NULL;
    }
    char *out = malloc(DESCRIBE_MAX_OUTPUT + 1);
    size_t len = 0;
    int64_t deadline = jz_time_mono_ms() + DESCRIBE_TIMEOUT_MS;
    bool timed_out = false;
    while (out) {
        int64_t left = deadline - jz_time_mono_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t n = read(fds[0], out + len, DESCRIBE_MAX_OUTPUT - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == DESCRIBE_MAX_OUTPUT)
            break;
    }
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    if (!out) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    if (timed_out) {
        free(out);
        snprintf(why, whylen, "describing the plugin took longer than %d ms",
                 DESCRIBE_TIMEOUT_MS);
        return NULL;
    }
    out[len] = '\0';
    return out;
}

static unsigned caps_from_json(const json_t *caps)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"needs_gpu", JZ_CAP_NEEDS_GPU},     {"uses_gpu", JZ_CAP_USES_GPU},
                 {"checkpoint", JZ_CAP_CHECKPOINT},   {"multi_node", JZ_CAP_MULTI_NODE},
                 {"runs_command", JZ_CAP_RUNS_COMMAND}};
    unsigned bits = 0;
    size_t i;
    json_t *c;
    json_array_foreach(caps, i, c) {
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (json_is_string(c) && strcmp(json_string_value(c), names[k].name) == 0)
                bits |= names[k].bit;
    }
    return bits;
}

static void describe_one(struct jz_plugin_entry *e, const char *worker)
{
    int status = 0;
    char *out = run_describe(worker, e->path, &status, e->reason, sizeof e->reason);
    if (!out)
        return;
    json_t *j = jz_json_parse(out, strlen(out), 16, NULL);
    free(out);
    if (!j || !json_is_object(j)) {
        snprintf(e->reason, sizeof e->reason, "the worker could not describe it (exit status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        json_decref(j);
        return;
    }
    const char *error = jz_json_str(j, "error", NULL);
    if (error || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(e->reason, sizeof e->reason, "%s", error ? error : "describe failed");
        json_decref(j);
        return;
    }
    const char *name = jz_json_str(j, "name", NULL);
    if (!name || !json_is_array(json_object_get(j, "params"))) {
        snprintf(e->reason, sizeof e->reason, "the description has no name or params");
        json_decref(j);
        return;
    }
    jz_strlcpy(e->name, name, sizeof e->name);
    e->caps = caps_from_json(json_object_get(j, "caps"));
    e->desc = j;
    e->ok = true;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct jz_plugin_entry *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int scan_dir(struct jz_plugins *p, const char *given, const char *worker)
{
    /* Workers run with other working directories: keep absolute paths only. */
    char dir[PATH_MAX];
    if (!realpath(given, dir)) {
        jz_log_warn("plugins", "cannot read plugin directory %s: %s", given, strerror(errno));
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d) {
        jz_log_warn("plugins", "cannot read plugin directory %s: %s", dir, strerror(errno));
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
            continue;
        if (p->n == MAX_PLUGINS) {
            jz_log_warn("plugins", "more than %d plugins; ignoring the rest", MAX_PLUGINS);
            break;
        }
        struct jz_plugin_entry *grown = realloc(p->v, (p->n + 1) * sizeof *grown);
        if (!grown) {
            closedir(d);
            return JZ_ENOMEM;
        }
        p->v = grown;
        struct jz_plugin_entry *e = &p->v[p->n++];
        memset(e, 0, sizeof *e);
        snprintf(e->path, sizeof e->path, "%s/%s", dir, de->d_name);
        snprintf(e->name, sizeof e->name, "%.*s", (int)(len - 3), de->d_name);
        describe_one(e, worker);
        if (e->ok)
            jz_log_info("plugins", "loaded %s %s from %s", e->name,
                        jz_json_str(e->desc, "version", "?"), e->path);
        else
            jz_log_warn("plugins", "refused %s: %s", e->path, e->reason);
    }
    closedir(d);
    return 0;
}

int jz_plugins_load(const char *dirs, const char *worker_path, struct jz_plugins **out,
                    struct jz_error *err)
{
    struct jz_plugins *p = calloc(1, sizeof *p);
    if (!p)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    char *copy = strdup(dirs);
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        if (scan_dir(p, dir, worker_path)) {
            free(copy);
            jz_plugins_free(p);
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
    }
    free(copy);
    qsort(p->v, p->n, sizeof *p->v, cmp_entry);
    /* Two usable plugins with one name: the first directory's wins; refuse the other. */
    for (size_t i = 0; i + 1 < p->n; i++)
        for (size_t j = i + 1; j < p->n && strcmp(p->v[i].name, p->v[j].name) == 0; j++)
            if (p->v[i].ok && p->v[j].ok) {
                p->v[j].ok = false;
                snprintf(p->v[j].reason, sizeof p->v[j].reason,
                         "another plugin named '%s' was loaded from %s", p->v[i].name,
                         p->v[i].path);
            }
    *out = p;
    return 0;
}

void jz_plugins_free(struct jz_plugins *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        json_decref(p->v[i].desc);
    free(p->v);
    free(p);
}

const struct jz_plugin_entry *jz_plugins_find(const struct jz_plugins *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].ok && strcmp(p->v[i].name, name) == 0)
            return &p->v[i];
    return NULL;
}

const struct jz_plugin_entry *jz_plugins_find_refused(const struct jz_plugins *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (!p->v[i].ok && strcmp(p->v[i].name, name) == 0)
            return &p->v[i];
    return NULL;
}

size_t jz_plugins_count(const struct jz_plugins *p)
{
    return p->n;
}

json_t *jz_plugins_json(const struct jz_plugins *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < p->n; i++) {
        const struct jz_plugin_entry *e = &p->v[i];
        json_t *o;
        if (e->ok) {
            o = json_deep_copy(e->desc);
            json_object_set_new(o, "status", json_string("ok"));
            json_object_set_new(o, "reason", json_null());
        } else {
            o = json_pack("{s:s, s:s, s:s}", "name", e->name, "status", "refused", "reason",
                          e->reason);
        }
        json_object_set_new(o, "path", json_string(e->path));
        json_array_append_new(arr, o);
    }
    return arr;
}
