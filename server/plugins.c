/* Plugin registry: copy each shared object by content into the private folder, describe the
 * copy in a short-lived jazari-worker process, keep every version side by side. */
#include "server/plugins.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include <jazari/plugin.h>

#include "common/json.h"
#include "common/log.h"
#include "common/run.h"
#include "common/sha256.h"
#include "common/strutil.h"
#include "common/time.h"

#define DESCRIBE_TIMEOUT_MS 10000
#define DESCRIBE_MAX_OUTPUT (1024 * 1024)
#define MAX_PLUGINS 1024

struct rescan;

struct jz_plugins {
    struct jz_plugin_entry *v; /* by name, then newest version first */
    size_t n;
    char *dirs, *worker, *copies; /* what it was loaded from, for a reload */
    json_t *site;                 /* the "plugins" site configuration (own copy) */
    struct rescan *rescan;        /* the asynchronous reload's state, once one was asked for;
                                     handed on to the registry that replaces this one */
    const bool *stop;             /* while a rescan builds this one: set when jazarid stops, so
                                     that it ends after the file being described (__atomic) */
};

/* Runs `worker --describe path [--sha256 sha]` and returns its stdout (malloc'd) and exit
 * status; NULL with why. */
static char *run_describe(const char *worker, const char *path, const char *sha, int *status,
                          char *why, size_t whylen)
{
    char *argv[] = {(char *)worker, "--describe", (char *)path, sha ? "--sha256" : NULL,
                    (char *)sha, NULL};
    struct jz_error err = {0};
    char *out = jz_run_capture(argv, DESCRIBE_MAX_OUTPUT, DESCRIBE_TIMEOUT_MS, status, &err);
    if (!out)
        snprintf(why, whylen, "%s", err.code == JZ_ETIMEDOUT
                                        ? "describing the plugin took too long (a hanging "
                                          "constructor?)"
                                        : err.msg);
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

#define COPY_BUF_BYTES (1 << 16)

/* Whether the file at path is a regular file (not a link) of size bytes whose SHA-256 is sha:
 * an existing copy is trusted only then, not by its name (a truncated or damaged copy would
 * otherwise refuse that version for good). */
static bool copy_holds(const char *path, const char *sha, off_t size)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    struct stat st;
    char hex[JZ_PLUGIN_SHA256_HEX + 1];
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == size &&
              jz_sha256_fd(fd, hex) == 0 && strcmp(hex, sha) == 0;
    close(fd);
    return ok;
}

/* The rename into the copies folder survives a crash only once the folder is on disk too. */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0)
            jz_log_warn("plugins", "cannot sync %s: %s", dir, strerror(errno));
        close(fd);
    }
}

/* Copies src into the copies folder as SHA256.so, hashing while copying. An existing copy of
 * that name is kept when it holds those very bytes, else replaced (atomically: a job starting
 * meanwhile opens the old file or the new one). The copy is private like everything in the
 * state folder (0600): the node agent opens it and hands the bytes to the job's worker. */
static int make_copy(const char *src, const char *copies, struct jz_plugin_entry *e,
                     bool *made)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        snprintf(e->reason, sizeof e->reason, "cannot read: %s", strerror(errno));
        return -1;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.incoming.XXXXXX", copies);
    int out = mkostemp(tmp, O_CLOEXEC);
    struct jz_sha256 md;
    jz_sha256_init(&md);
    /* Not static: a reload describes on a thread of its own (jz_plugins_reload_start). */
    char *buf = malloc(COPY_BUF_BYTES);
    bool ok = out >= 0 && buf;
    ssize_t n = 0;
    off_t size = 0;
    while (ok && (n = read(in, buf, COPY_BUF_BYTES)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0 && write(out, buf, (size_t)n) == n;
        if (ok)
            jz_sha256_update(&md, buf, (size_t)n);
        size += n > 0 ? n : 0;
    }
    unsigned char digest[JZ_SHA256_BYTES];
    jz_sha256_final(&md, digest);
    ok = ok && fchmod(out, 0600) == 0 && fsync(out) == 0;
    int saved = ok ? 0 : buf ? errno : ENOMEM;
    free(buf);
    close(in);
    if (out >= 0)
        close(out);
    if (!ok) {
        if (out >= 0)
            unlink(tmp);
        snprintf(e->reason, sizeof e->reason, "cannot copy it to %s: %s", copies,
                 strerror(saved));
        return -1;
    }
    jz_sha256_to_hex(digest, e->sha256);
    snprintf(e->copy, sizeof e->copy, "%s/%s.so", copies, e->sha256);
    if (copy_holds(e->copy, e->sha256, size)) {
        unlink(tmp);
        return 0;
    }
    struct stat st;
    if (lstat(e->copy, &st) == 0)
        jz_log_warn("plugins", "the private copy %s does not hold the bytes its name says; "
                               "replacing it", e->copy);
    *made = true;
    if (rename(tmp, e->copy) != 0) {
        saved = errno;
        unlink(tmp);
        snprintf(e->reason, sizeof e->reason, "cannot copy it to %s: %s", e->copy,
                 strerror(saved));
        e->copy[0] = '\0';
        return -1;
    }
    sync_dir(copies);
    return 0;
}

static void describe_copy(struct jz_plugin_entry *e, const char *worker, const char *copies);

/* Names the folder's file instead of the private copy in a refusal: that is the file the
 * admin knows and fixes. */
static void reason_names_source(struct jz_plugin_entry *e)
{
    char *at = e->copy[0] ? strstr(e->reason, e->copy) : NULL;
    if (!at)
        return;
    char fixed[sizeof e->reason];
    snprintf(fixed, sizeof fixed, "%.*s%s%s", (int)(at - e->reason), e->reason, e->path,
             at + strlen(e->copy));
    memcpy(e->reason, fixed, sizeof e->reason);
}

static void describe_one(struct jz_plugin_entry *e, const char *worker, const char *copies)
{
    bool made = false;
    if (copies && make_copy(e->path, copies, e, &made) != 0)
        return;
    describe_copy(e, worker, copies);
    if (!e->ok) {
        reason_names_source(e);
        /* A refused file runs no job: keep no copy of it (one made earlier stays, for the jobs
         * that may hold it). */
        if (made)
            unlink(e->copy);
    }
}

static void describe_copy(struct jz_plugin_entry *e, const char *worker, const char *copies)
{
    int status = 0;
    /* The copy is described, and the worker checks it is the copy made: what validates a job
     * is what runs it. */
    char *out = run_describe(worker, copies ? e->copy : e->path, copies ? e->sha256 : NULL,
                             &status, e->reason, sizeof e->reason);
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
    const char *sha = jz_json_str(j, "sha256", "");
    if (!e->sha256[0] && strlen(sha) == JZ_PLUGIN_SHA256_HEX)
        jz_strlcpy(e->sha256, sha, sizeof e->sha256);
    const char *error = jz_json_str(j, "error", NULL);
    if (error || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (error)
            snprintf(e->reason, sizeof e->reason, "%s", error);
        else /* as `jazari plugin check` says it */
            snprintf(e->reason, sizeof e->reason, "the worker %s %d after describing it",
                     WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        json_decref(j);
        return;
    }
    const char *name = jz_json_str(j, "name", NULL);
    const char *version = jz_json_str(j, "version", NULL);
    if (!name || !version || !json_is_array(json_object_get(j, "params"))) {
        snprintf(e->reason, sizeof e->reason, "the description has no name, version or params");
        json_decref(j);
        return;
    }
    if (strcmp(sha, e->sha256) != 0) {
        snprintf(e->reason, sizeof e->reason, "the worker described other bytes (sha256 %s)",
                 sha);
        json_decref(j);
        return;
    }
    jz_strlcpy(e->name, name, sizeof e->name);
    jz_strlcpy(e->version, version, sizeof e->version);
    json_object_del(j, "sha256"); /* the entry's own field */
    e->caps = caps_from_json(json_object_get(j, "caps"));
    e->desc = j;
    e->ok = true;
}

/* Dotted-number comparison ("1.10.0" > "1.9"), a pre-release ("1.0.0-rc1") before its
 * release; what is not a number compares as text. */
static int version_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            char *ea, *eb;
            unsigned long long x = strtoull(a, &ea, 10), y = strtoull(b, &eb, 10);
            if (x != y)
                return x < y ? -1 : 1;
            a = ea;
            b = eb;
            continue;
        }
        if (*a == *b) {
            a++;
            b++;
            continue;
        }
        /* "1.0" vs "1.0-rc1": the release is newer; "1.0" vs "1.0.1": the longer is. */
        if (!*a)
            return *b == '-' ? 1 : -1;
        if (!*b)
            return *a == '-' ? -1 : 1;
        return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
    }
    return 0;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const struct jz_plugin_entry *x = pa, *y = pb;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    if (x->ok != y->ok)
        return x->ok ? -1 : 1;
    c = version_cmp(y->version, x->version); /* newest first */
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static const struct jz_plugin_entry *find_previous(const struct jz_plugins *prev,
                                                   const char *path, const struct stat *st)
{
    for (size_t i = 0; prev && i < prev->n; i++) {
        const struct jz_plugin_entry *e = &prev->v[i];
        if (e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
            e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec &&
            strcmp(e->path, path) == 0)
            return e;
    }
    return NULL;
}

static int scan_dir(struct jz_plugins *p, const char *given, const struct jz_plugins *prev)
{
    /* Workers run with other working directories: keep absolute paths only. */
    char dir[PATH_MAX];
    if (!realpath(given, dir)) {
        jz_log_warn("plugins", "cannot read plugin folder %s: %s", given, strerror(errno));
        return 0;
    }
    /* By name, so that which of two files of one version wins does not depend on the
     * file system's order. */
    struct dirent **names = NULL;
    int count = scandir(dir, &names, NULL, alphasort);
    if (count < 0) {
        jz_log_warn("plugins", "cannot read plugin folder %s: %s", dir, strerror(errno));
        return 0;
    }
    int rc = 0;
    for (int k = 0; k < count && rc == 0; k++) {
        const struct dirent *de = names[k];
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
            continue;
        if (p->stop && __atomic_load_n(p->stop, __ATOMIC_RELAXED))
            break; /* the result will be dropped */
        if (p->n == MAX_PLUGINS) {
            jz_log_warn("plugins", "more than %d plugins; ignoring the rest", MAX_PLUGINS);
            break;
        }
        struct jz_plugin_entry *grown = realloc(p->v, (p->n + 1) * sizeof *grown);
        if (!grown) {
            rc = JZ_ENOMEM;
            break;
        }
        p->v = grown;
        struct jz_plugin_entry *e = &p->v[p->n];
        memset(e, 0, sizeof *e);
        e->order = p->n++;
        snprintf(e->path, sizeof e->path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(e->path, &st) != 0 || !S_ISREG(st.st_mode)) {
            snprintf(e->name, sizeof e->name, "%.*s", (int)(len - 3), de->d_name);
            snprintf(e->reason, sizeof e->reason, "not a regular file");
            continue;
        }
        /* Only a usable (or shadowed) description is reused: a refusal may have been
         * passing (a timeout, a full disk, a missing worker), so the file is described again. */
        const struct jz_plugin_entry *old = find_previous(prev, e->path, &st);
        if (old && (old->ok || old->shadowed)) {
            size_t order = e->order;
            *e = *old;
            e->order = order;
            e->desc = json_deep_copy(old->desc);
            if (e->shadowed) { /* settle decides again: the other file may be gone */
                e->ok = true;
                e->shadowed = false;
                e->reason[0] = '\0';
            }
            continue;
        }
        e->dev = st.st_dev;
        e->ino = st.st_ino;
        e->size = st.st_size;
        e->mtime = st.st_mtim;
        snprintf(e->name, sizeof e->name, "%.*s", (int)(len - 3), de->d_name);
        describe_one(e, p->worker, p->copies);
        if (e->ok)
            jz_log_info("plugins", "described %s %s (sha256 %.12s) from %s", e->name, e->version,
                        e->sha256, e->path);
        else
            jz_log_warn("plugins", "refused %s: %s", e->path, e->reason);
    }
    for (int k = 0; k < count; k++)
        free(names[k]);
    free(names);
    return rc;
}

/* Two usable files with one name and version: the earlier folder's wins (so a site folder
 * cannot shadow a built-in version by accident); the same bytes twice are one version. Then
 * marks the newest usable version of each name as its default. */
static void settle(struct jz_plugins *p)
{
    if (p->n == 0)
        return; /* qsort must not get a NULL array */
    qsort(p->v, p->n, sizeof *p->v, cmp_entry);
    for (size_t i = 0; i < p->n; i++) {
        struct jz_plugin_entry *e = &p->v[i];
        if (!e->ok)
            continue;
        for (size_t j = 0; j < i; j++) {
            const struct jz_plugin_entry *w = &p->v[j];
            if (w->ok && strcmp(w->name, e->name) == 0 && strcmp(w->version, e->version) == 0) {
                /* Sorted by order within a version: w came first. */
                e->ok = false;
                e->shadowed = true;
                snprintf(e->reason, sizeof e->reason, "%s %s is already provided by %s%s",
                         e->name, e->version, w->path,
                         strcmp(w->sha256, e->sha256) == 0 ? " (the same file)" : "");
                jz_log_warn("plugins", "refused %s: %s", e->path, e->reason);
                break;
            }
        }
    }
    qsort(p->v, p->n, sizeof *p->v, cmp_entry); /* refusals move after the usable versions */
    for (size_t i = 0; i < p->n; i++)
        p->v[i].is_default =
            p->v[i].ok && (i == 0 || strcmp(p->v[i - 1].name, p->v[i].name) != 0);
}

static int build(struct jz_plugins *p, const struct jz_plugins *prev, struct jz_error *err)
{
    jz_log_info("plugins", "scanning plugin folders %s", p->dirs);
    if (p->copies && jz_mkdir_p(p->copies, 0700) != 0)
        return jz_error_set(err, JZ_EIO, "cannot create the plugin copies folder %s: %s",
                            p->copies, strerror(errno));
    char *copy = strdup(p->dirs);
    if (!copy)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        if (scan_dir(p, dir, prev)) {
            free(copy);
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        }
    }
    free(copy);
    settle(p);
    return 0;
}

static int check_site(const json_t *site, struct jz_error *err)
{
    if (!site || json_is_null(site))
        return 0;
    if (!json_is_object(site))
        return jz_error_set(err, JZ_EINVAL,
                            "configuration: 'plugins' must be an object of plugin names");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)site, k, v) {
        if (!json_is_object(v))
            return jz_error_set(err, JZ_EINVAL,
                                "configuration: 'plugins.%.64s' must be an object", k);
        char *text = json_dumps(v, JSON_COMPACT);
        size_t len = text ? strlen(text) : 0;
        free(text);
        if (len > JZ_PLUGIN_SITE_CONFIG_MAX_BYTES)
            return jz_error_set(err, JZ_ELIMIT,
                                "configuration: 'plugins.%.64s' is larger than %d bytes", k,
                                JZ_PLUGIN_SITE_CONFIG_MAX_BYTES);
    }
    return 0;
}

static struct jz_plugins *registry_new(const char *dirs, const char *worker, const char *copies,
                                       const json_t *site)
{
    struct jz_plugins *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->dirs = strdup(dirs ? dirs : "");
    p->worker = strdup(worker ? worker : "");
    p->copies = copies ? strdup(copies) : NULL;
    p->site = site && json_is_object(site) ? json_deep_copy(site) : json_object();
    if (!p->dirs || !p->worker || (copies && !p->copies) || !p->site) {
        jz_plugins_free(p);
        return NULL;
    }
    return p;
}

int jz_plugins_load(const struct jz_plugins_config *cfg, struct jz_plugins **out,
                    struct jz_error *err)
{
    int rc = check_site(cfg->site, err);
    if (rc)
        return rc;
    struct jz_plugins *p = registry_new(cfg->dirs, cfg->worker_path, cfg->copies_dir, cfg->site);
    if (!p)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    if ((rc = build(p, NULL, err))) {
        jz_plugins_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

static bool has_sha(const struct jz_plugins *p, const char *sha)
{
    return jz_plugins_find_sha256(p, sha) != NULL;
}

/* Logs what a reload changes, old to p, and counts versions (by SHA-256) new and gone. */
static void log_changes(const struct jz_plugins *old, const struct jz_plugins *p, size_t *added,
                        size_t *removed)
{
    size_t nadd = 0, nrm = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].ok && !has_sha(old, p->v[i].sha256)) {
            nadd++;
            jz_log_info("plugins", "reload: new %s %s (sha256 %.12s) from %s", p->v[i].name,
                        p->v[i].version, p->v[i].sha256, p->v[i].path);
        }
    for (size_t i = 0; i < old->n; i++)
        if (old->v[i].ok && !has_sha(p, old->v[i].sha256)) {
            nrm++;
            jz_log_info("plugins",
                        "reload: %s %s (sha256 %.12s) is gone for new jobs; jobs already "
                        "submitted with it still run their copy",
                        old->v[i].name, old->v[i].version, old->v[i].sha256);
        }
    jz_log_info("plugins", "reload: %zu files, %zu new versions, %zu gone", p->n, nadd, nrm);
    if (added)
        *added = nadd;
    if (removed)
        *removed = nrm;
}

/* --- the asynchronous reload ----------------------------------------------------------------- */

struct waiter {
    jz_plugins_reloaded_fn fn;
    void *arg;
    struct waiter *next;
};

struct rescan {
    struct event_base *base;
    struct jz_plugins **pp; /* where the registry is kept: replaced on the loop thread */
    int efd;                /* eventfd: the scanning thread says it is done */
    struct event *ev;
    pthread_t thread;
    bool running;
    /* Written by the thread before it signals, read by the loop thread after: */
    struct jz_plugins *fresh; /* the new registry, NULL when the scan failed */
    struct jz_error err;
    bool stop;            /* set by rescan_free (__atomic): the scan ends early */
    struct waiter *now;   /* told when the running scan ends */
    struct waiter *queued; /* asked while it ran: told after the next scan, started then */
};

/* The thread reads the current registry (to reuse unchanged descriptions) while the loop
 * thread keeps reading it too; nobody writes it until the swap, after the join. */
static void *rescan_main(void *arg)
{
    struct rescan *r = arg;
    const struct jz_plugins *old = *r->pp;
    struct jz_plugins *p = registry_new(old->dirs, old->worker, old->copies, old->site);
    memset(&r->err, 0, sizeof r->err);
    if (p)
        p->stop = &r->stop;
    if (!p)
        jz_error_set(&r->err, JZ_ENOMEM, "out of memory");
    else if (build(p, old, &r->err)) {
        jz_plugins_free(p);
        p = NULL;
    }
    if (p)
        p->stop = NULL;
    r->fresh = p;
    uint64_t one = 1;
    while (write(r->efd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    return NULL;
}

static int rescan_launch(struct rescan *r, struct jz_error *err)
{
    r->fresh = NULL;
    int rc = pthread_create(&r->thread, NULL, rescan_main, r);
    if (rc != 0)
        return jz_error_set(err, JZ_EIO, "cannot start the plugin rescan: %s", strerror(rc));
    r->running = true;
    return 0;
}

static void free_waiters(struct waiter *w)
{
    while (w) {
        struct waiter *next = w->next;
        free(w);
        w = next;
    }
}

/* On the loop thread: the scan ended; swap the registries, start the queued scan, then tell
 * whoever waited (last, so that they may ask for another reload). */
static void on_rescan_done(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct rescan *r = arg;
    uint64_t count;
    if (read(fd, &count, sizeof count) != (ssize_t)sizeof count || !r->running)
        return;
    pthread_join(r->thread, NULL);
    r->running = false;
    struct jz_plugins *old = *r->pp, *p = r->fresh;
    r->fresh = NULL;
    size_t added = 0, removed = 0;
    struct jz_error err = r->err;
    int rc = p ? 0 : (err.code ? err.code : JZ_EINTERNAL);
    if (p) {
        log_changes(old, p, &added, &removed);
        p->rescan = r;
        old->rescan = NULL;
        *r->pp = p;
        jz_plugins_free(old);
    } else {
        jz_log_error("plugins", "reload: registry kept as it was: %s", err.msg);
    }
    struct waiter *told = r->now;
    r->now = r->queued;
    r->queued = NULL;
    if (r->now) {
        struct jz_error lerr = {0};
        if (rescan_launch(r, &lerr)) {
            jz_log_error("plugins", "%s", lerr.msg);
            /* Those queued are told now, with the failure. */
            struct waiter **tail = &told;
            while (*tail)
                tail = &(*tail)->next;
            *tail = r->now;
            r->now = NULL;
        }
    }
    for (struct waiter *w = told; w; w = w->next)
        if (w->fn)
            w->fn(w->arg, rc, added, removed, rc ? err.msg : NULL);
    free_waiters(told);
}

int jz_plugins_reload_start(struct jz_plugins **pp, struct event_base *base,
                            jz_plugins_reloaded_fn done, void *arg, struct jz_error *err)
{
    struct jz_plugins *cur = *pp;
    struct rescan *r = cur->rescan;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        r->ev = r->efd >= 0 ? event_new(base, r->efd, EV_READ | EV_PERSIST, on_rescan_done, r)
                            : NULL;
        if (!r->ev || event_add(r->ev, NULL) != 0) {
            int saved = errno;
            if (r->ev)
                event_free(r->ev);
            if (r->efd >= 0)
                close(r->efd);
            free(r);
            return jz_error_set(err, JZ_EIO, "cannot watch the plugin rescan: %s",
                                strerror(saved));
        }
        r->base = base;
        r->pp = pp;
        cur->rescan = r;
    }
    /* (The running thread reads r->pp: it is never written again.) */
    if (r->base != base || r->pp != pp)
        return jz_error_set(err, JZ_EINVAL, "plugin rescans of one registry from two places");
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    w->fn = done;
    w->arg = arg;
    /* One scan at a time: a reload asked meanwhile joins the one after it (several asks
     * meanwhile share it), which sees every change made before it starts. */
    if (r->running) {
        w->next = r->queued;
        r->queued = w;
        return 0;
    }
    w->next = r->now;
    r->now = w;
    int rc = rescan_launch(r, err);
    if (rc) {
        r->now = w->next;
        free(w);
    }
    return rc;
}

bool jz_plugins_reload_running(const struct jz_plugins *p)
{
    return p->rescan && p->rescan->running;
}

/* Stops a running scan after the file it is describing, waits for it and drops what it
 * found; those waiting are not told (jazarid is stopping). */
static void rescan_free(struct rescan *r)
{
    if (r->running) {
        __atomic_store_n(&r->stop, true, __ATOMIC_RELAXED);
        pthread_join(r->thread, NULL);
        jz_plugins_free(r->fresh);
    }
    free_waiters(r->now);
    free_waiters(r->queued);
    event_free(r->ev);
    close(r->efd);
    free(r);
}

int jz_plugins_reload(struct jz_plugins **pp, size_t *added, size_t *removed,
                      struct jz_error *err)
{
    struct jz_plugins *old = *pp;
    if (jz_plugins_reload_running(old))
        return jz_error_set(err, JZ_EBUSY, "a plugin rescan is running");
    struct jz_plugins *p = registry_new(old->dirs, old->worker, old->copies, old->site);
    if (!p)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int rc = build(p, old, err);
    if (rc) {
        jz_plugins_free(p);
        return rc;
    }
    log_changes(old, p, added, removed);
    p->rescan = old->rescan;
    old->rescan = NULL;
    jz_plugins_free(old);
    *pp = p;
    return 0;
}

void jz_plugins_free(struct jz_plugins *p)
{
    if (!p)
        return;
    if (p->rescan)
        rescan_free(p->rescan);
    for (size_t i = 0; i < p->n; i++)
        json_decref(p->v[i].desc);
    free(p->v);
    free(p->dirs);
    free(p->worker);
    free(p->copies);
    json_decref(p->site);
    free(p);
}

bool jz_plugins_split_spec(const char *spec, char *name, size_t len, const char **version)
{
    const char *at = strchr(spec, '@');
    size_t n = at ? (size_t)(at - spec) : strlen(spec);
    if (n >= len)
        return false;
    memcpy(name, spec, n);
    name[n] = '\0';
    *version = at ? at + 1 : NULL;
    return true;
}

static bool version_matches(const char *have, const char *want)
{
    size_t n = strlen(want);
    return strncmp(have, want, n) == 0 &&
           (have[n] == '\0' || have[n] == '.' || have[n] == '-' || have[n] == '+');
}

const struct jz_plugin_entry *jz_plugins_find(const struct jz_plugins *p, const char *spec)
{
    char name[64];
    const char *version;
    if (!spec || !jz_plugins_split_spec(spec, name, sizeof name, &version) ||
        (version && !*version))
        return NULL;
    /* Usable versions of a name are sorted newest first: the first match is the newest. */
    for (size_t i = 0; version && i < p->n; i++)
        if (p->v[i].ok && strcmp(p->v[i].name, name) == 0 &&
            strcmp(p->v[i].version, version) == 0)
            return &p->v[i];
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].ok && strcmp(p->v[i].name, name) == 0 &&
            (!version || version_matches(p->v[i].version, version)))
            return &p->v[i];
    return NULL;
}

const struct jz_plugin_entry *jz_plugins_find_sha256(const struct jz_plugins *p,
                                                     const char *sha256)
{
    for (size_t i = 0; sha256 && i < p->n; i++)
        if (p->v[i].ok && strcmp(p->v[i].sha256, sha256) == 0)
            return &p->v[i];
    return NULL;
}

const struct jz_plugin_entry *jz_plugins_find_refused(const struct jz_plugins *p,
                                                      const char *spec)
{
    char name[64];
    const char *version;
    if (!spec || !jz_plugins_split_spec(spec, name, sizeof name, &version))
        return NULL;
    for (size_t i = 0; i < p->n; i++) {
        const struct jz_plugin_entry *e = &p->v[i];
        /* A shadowed file's version is usable from the other file; a version asked for must
         * be the refused file's, when its version could be read. */
        if (e->ok || e->shadowed ||
            (version && e->version[0] && !version_matches(e->version, version)))
            continue;
        const char *base = strrchr(e->path, '/');
        base = base ? base + 1 : e->path;
        size_t bl = strlen(base) - 3; /* without ".so" */
        if (strcmp(e->name, name) == 0 || (strlen(name) == bl && strncmp(base, name, bl) == 0))
            return e;
    }
    return NULL;
}

int jz_plugins_copy_path(const struct jz_plugins *p, const char *sha256, char *buf, size_t len)
{
    if (!p->copies || !sha256 || strlen(sha256) != JZ_PLUGIN_SHA256_HEX)
        return JZ_ENOENT;
    snprintf(buf, len, "%s/%s.so", p->copies, sha256);
    return 0;
}

const json_t *jz_plugins_site_config(const struct jz_plugins *p, const char *name)
{
    return json_object_get(p->site, name);
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
            o = json_pack("{s:s, s:s, s:s, s:n}", "name", e->name, "status", "refused", "reason",
                          e->reason, "version");
            if (o && e->version[0])
                json_object_set_new(o, "version", json_string(e->version));
        }
        json_object_set_new(o, "path", json_string(e->path));
        json_object_set_new(o, "sha256", e->sha256[0] ? json_string(e->sha256) : json_null());
        json_object_set_new(o, "default", json_boolean(e->is_default));
        json_array_append_new(arr, o);
    }
    return arr;
}
