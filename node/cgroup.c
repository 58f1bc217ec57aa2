/* Control groups for job parts on cgroup v1 and v2: the agent's folder in each hierarchy, one
 * cgroup per part under it, limits, joining, killing, OOM reporting and removal. */
#include "node/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cpulist.h"
#include "common/strutil.h"
#include "common/time.h"

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CG_PATH_MAX 512
#define CG_ROOT_MAX 256
#define CG_LIST_MAX 8192     /* a cpuset list read from the kernel */
#define CG_TREE_DEPTH 8      /* sub-cgroups a job may have made, walked to kill and remove */
#define CG_ROUND_MS 10       /* between kill rounds */
#define CG_FREEZE_WAIT_MS 50 /* a freeze that has not settled by then is killed through */
#define CG_DESTROY_WAIT_MS 500
#define CG_REAP_WAIT_MS 1000
#define CG_REAP_MAX 4096 /* leftover cgroups one reap handles */
#define NVIDIA_MAJOR 195

enum ctrl { C_MEMORY, C_PIDS, C_CPUSET, C_FREEZER, C_DEVICES, C_N };
static const char *const ctrl_name[C_N] = {"memory", "pids", "cpuset", "freezer", "devices"};
_Static_assert(JZ_CGROUP_MAX_FDS >= C_N, "a join fd per v1 hierarchy");
static const unsigned ctrl_feature[C_N] = {JZ_CGROUP_MEMORY, JZ_CGROUP_PIDS, JZ_CGROUP_CPUSET,
                                           JZ_CGROUP_FREEZE, JZ_CGROUP_DEVICES};

/* One hierarchy: on v2 the only one; on v1 one per mount (controllers co-mounted share it). */
struct hier {
    char top[CG_PATH_MAX];  /* the hierarchy's root: ROOT/<controller> (v1) or ROOT (v2) */
    char base[CG_PATH_MAX]; /* the agent's folder in it */
    unsigned ctrls;         /* 1 << enum ctrl served here (v1) */
    dev_t dev;              /* tells co-mounted controllers apart from separate ones */
    size_t made;            /* trailing components of the name that open created */
};

struct jz_cgroup_system {
    int version;
    struct hier h[C_N];
    size_t nh;
    int hier_of[C_N]; /* v1: the hierarchy serving each controller, -1 when none */
    unsigned features;
    bool v2_kill, v2_freeze; /* cgroup.kill (5.14), cgroup.freeze (5.2) */
    char desc[CG_PATH_MAX];
};

struct jz_cgroup {
    struct jz_cgroup_system *s;
    char dir[C_N][CG_PATH_MAX]; /* parallel to s->h */
    bool made[C_N];
    int fd[C_N];
};

/* ---- small file helpers (cgroup files are short and written in one call) ---- */

static bool path_fmt(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool path_fmt(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, CG_PATH_MAX, fmt, ap);
    va_end(ap);
    return n >= 0 && n < CG_PATH_MAX;
}

/* Writes s into dir/file: 0 or -errno. */
static int write_at(const char *dir, const char *file, const char *s)
{
    char path[CG_PATH_MAX];
    if (!path_fmt(path, "%s/%s", dir, file))
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(s);
    ssize_t n = write(fd, s, len);
    int e = n < 0 ? errno : (size_t)n != len ? EIO : 0;
    close(fd);
    return -e;
}

/* Reads dir/file into buf (NUL-terminated, trailing newline dropped): its length or -errno;
 * -EFBIG when it does not fit. */
static ssize_t read_at(const char *dir, const char *file, char *buf, size_t size)
{
    char path[CG_PATH_MAX];
    if (!path_fmt(path, "%s/%s", dir, file))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buf + used, size - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used == size - 1) {
            close(fd);
            return -EFBIG;
        }
    }
    close(fd);
    while (used > 0 && buf[used - 1] == '\n')
        used--;
    buf[used] = '\0';
    return (ssize_t)used;
}

/* The value of "key N" in a flat keyed file (memory.events, memory.oom_control), -1 if absent. */
static int64_t keyed_at(const char *dir, const char *file, const char *key)
{
    char buf[4096];
    if (read_at(dir, file, buf, sizeof buf) < 0)
        return -1;
    size_t klen = strlen(key);
    for (char *line = buf; line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return strtoll(line + klen + 1, NULL, 10);
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

static int64_t int_at(const char *dir, const char *file)
{
    char buf[64];
    if (read_at(dir, file, buf, sizeof buf) <= 0)
        return -1;
    char *end;
    long long v = strtoll(buf, &end, 10);
    return *end == '\0' ? (int64_t)v : -1;
}

static bool exists_at(const char *dir, const char *file)
{
    char path[CG_PATH_MAX];
    return path_fmt(path, "%s/%s", dir, file) && access(path, F_OK) == 0;
}

/* True when the space-separated list has word. */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
            return true;
    return false;
}

static bool is_subdir(const char *dir, const struct dirent *e)
{
    if (e->d_name[0] == '.')
        return false;
    if (e->d_type == DT_DIR)
        return true;
    if (e->d_type != DT_UNKNOWN)
        return false;
    char path[CG_PATH_MAX];
    struct stat st;
    return path_fmt(path, "%s/%s", dir, e->d_name) && lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Calls fn for every pid in dir's cgroup.procs and in its sub-cgroups (a job running as root
 * can make some), depth levels down. Stops when fn returns false, and returns false then. */
static bool walk_pids(const char *dir, int depth, bool (*fn)(pid_t, void *), void *arg)
{
    char path[CG_PATH_MAX];
    if (!path_fmt(path, "%s/cgroup.procs", dir))
        return true;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; /* gone: nothing in it */
    char buf[4096];
    long cur = -1;
    bool go = true;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n && go; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                if (cur < 0)
                    cur = 0;
                if (cur < 100000000) /* pids are below 2^22 */
                    cur = cur * 10 + (buf[i] - '0');
            } else if (cur >= 0) {
                go = fn((pid_t)cur, arg);
                cur = -1;
            }
        }
        if (!go)
            break;
    }
    close(fd);
    if (go && cur >= 0)
        go = fn((pid_t)cur, arg);
    if (!go)
        return false;
    if (depth <= 0)
        return true;
    DIR *d = opendir(dir);
    if (!d)
        return true;
    struct dirent *e;
    while (go && (e = readdir(d)))
        if (is_subdir(dir, e) && path_fmt(path, "%s/%s", dir, e->d_name))
            go = walk_pids(path, depth - 1, fn, arg);
    closedir(d);
    return go;
}

/* Removes dir and its sub-cgroups: 0 (also when it was not there) or -errno. */
static int rmdir_tree(const char *dir, int depth)
{
    if (depth > 0) {
        DIR *d = opendir(dir);
        if (d) {
            struct dirent *e;
            char sub[CG_PATH_MAX];
            while ((e = readdir(d)))
                if (is_subdir(dir, e) && path_fmt(sub, "%s/%s", dir, e->d_name))
                    rmdir_tree(sub, depth - 1);
            closedir(d);
        }
    }
    return rmdir(dir) == 0 || errno == ENOENT ? 0 : -errno;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int errno_code(int neg)
{
    return neg == -EINVAL || neg == -ERANGE                   ? JZ_EINVAL
           : neg == -EACCES || neg == -EPERM || neg == -EROFS ? JZ_EPERM
           : neg == -ENOENT                                   ? JZ_ENOENT
                                                              : JZ_EIO;
}

/* ---- names ---- */

/* "a/b/c": components that are safe names, no empty ones. */
static bool agent_name_ok(const char *name)
{
    if (!name || !*name || strlen(name) > JZ_CGROUP_NAME_MAX)
        return false;
    char buf[JZ_CGROUP_NAME_MAX + 1];
    jz_strlcpy(buf, name, sizeof buf);
    char *save = NULL;
    size_t parts = 0;
    for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save), parts++)
        if (!jz_name_is_safe(c, JZ_CGROUP_NAME_MAX))
            return false;
    /* strtok_r skips empty components: count the slashes to refuse "a//b", "/a" and "a/". */
    size_t slashes = 0;
    for (const char *p = name; *p; p++)
        slashes += *p == '/';
    return parts == slashes + 1;
}

/* ---- the system ---- */

/* Copies file (cpuset.cpus, cpuset.mems) from parent when dir's is empty: a v1 cpuset takes
 * no task until both are set, and nothing fills them in for a new cgroup. */
static int cpuset_inherit(const char *dir, const char *parent, const char *file)
{
    char cur[CG_LIST_MAX];
    ssize_t n = read_at(dir, file, cur, sizeof cur);
    if (n != 0)
        return n < 0 ? (int)n : 0;
    n = read_at(parent, file, cur, sizeof cur);
    if (n < 0)
        return (int)n;
    return write_at(dir, file, cur);
}

/* v2: enables what it can of memory, pids and cpuset for dir's children. Failures are left
 * to show in the features (a cgroup with processes of its own cannot enable any). */
static void v2_enable(const char *dir)
{
    char avail[512], on[512];
    if (read_at(dir, "cgroup.controllers", avail, sizeof avail) < 0 ||
        read_at(dir, "cgroup.subtree_control", on, sizeof on) < 0)
        return;
    static const char *const want[] = {"+memory", "+pids", "+cpuset"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (has_word(avail, want[i] + 1) && !has_word(on, want[i] + 1))
            write_at(dir, "cgroup.subtree_control", want[i]); /* one each: one bad fails all */
}

/* Makes the agent's folder (and missing parents) in h, preparing each level for children. */
static int make_base(struct jz_cgroup_system *s, struct hier *h, const char *name,
                     struct jz_error *err)
{
    char parent[CG_PATH_MAX], cur[CG_PATH_MAX];
    jz_strlcpy(cur, h->top, sizeof cur);
    const char *p = name;
    size_t parts = 1;
    for (const char *q = name; *q; q++)
        parts += *q == '/';
    if (s->version == 2)
        v2_enable(h->top);
    int retries = 0;
    for (size_t i = 0; i < parts; i++) {
        const char *slash = strchr(p, '/');
        int len = slash ? (int)(slash - p) : (int)strlen(p);
        jz_strlcpy(parent, cur, sizeof parent);
        if (!path_fmt(cur, "%s/%.*s", parent, len, p))
            return jz_error_set(err, JZ_ELIMIT, "cgroup path too long under %s", h->top);
        p += len + 1;
        bool fresh = false;
        if (mkdir(cur, 0755) == 0) {
            fresh = true;
            h->made++; /* new levels are the trailing ones: close removes them */
        } else if (errno == ENOENT && retries++ < 3) {
            /* Another agent removed an empty parent just now: start again from the top. */
            jz_strlcpy(cur, h->top, sizeof cur);
            p = name;
            i = (size_t)-1;
            continue;
        } else if (errno != EEXIST) {
            int e = errno;
            return jz_error_set(err, errno_code(-e), "cannot make %s: %s", cur, strerror(e));
        }
        jz_strlcpy(h->base, cur, sizeof h->base);
        int rc = 0;
        if (s->version == 2) {
            v2_enable(cur);
        } else {
            if (h->ctrls & (1u << C_CPUSET)) {
                if ((rc = cpuset_inherit(cur, parent, "cpuset.cpus")) == 0)
                    rc = cpuset_inherit(cur, parent, "cpuset.mems");
            }
            /* Before 5.11 a memory cgroup could be non-hierarchical (use_hierarchy 0, the
             * kernel's default at the root): its usage would not include its children's, nor
             * its limit bind them. Since 5.11 it is always 1 and writing 0 fails with EINVAL
             * (as here on 6.18); writing 1 is accepted. Limits are set on the job's own
             * cgroup, so this only matters to whoever reads the agent's totals. */
            char uh[8];
            if (fresh && (h->ctrls & (1u << C_MEMORY)) &&
                read_at(cur, "memory.use_hierarchy", uh, sizeof uh) > 0 && uh[0] == '0')
                write_at(cur, "memory.use_hierarchy", "1");
        }
        if (rc < 0)
            return jz_error_set(err, errno_code(rc), "cannot prepare %s: %s", cur, strerror(-rc));
    }
    return 0;
}

/* v1: the controllers mounted under root. JZ_ENOENT when none is. */
static int find_v1(struct jz_cgroup_system *s, const char *root, struct jz_error *err)
{
    size_t readonly = 0;
    for (int c = 0; c < C_N; c++) {
        char top[CG_PATH_MAX];
        struct statfs sf;
        struct stat st;
        if (!path_fmt(top, "%s/%s", root, ctrl_name[c]) || statfs(top, &sf) != 0 ||
            sf.f_type != CGROUP_SUPER_MAGIC || stat(top, &st) != 0)
            continue;
        if (access(top, W_OK) != 0) {
            readonly++;
            continue;
        }
        size_t i = 0;
        while (i < s->nh && s->h[i].dev != st.st_dev)
            i++;
        if (i == s->nh) {
            s->nh++;
            jz_strlcpy(s->h[i].top, top, sizeof s->h[i].top);
            s->h[i].dev = st.st_dev;
        }
        s->h[i].ctrls |= 1u << c;
        s->hier_of[c] = (int)i;
        s->features |= ctrl_feature[c];
    }
    if (s->nh == 0 && readonly)
        return jz_error_set(err, JZ_EPERM, "the cgroup v1 controllers under %s are read-only",
                            root);
    return s->nh ? 0 : JZ_ENOENT;
}

static void describe(struct jz_cgroup_system *s, const char *root)
{
    static const char *const fname[] = {"memory", "pids", "cpuset", "devices", "freeze"};
    char list[96] = "";
    for (size_t i = 0; i < sizeof fname / sizeof *fname; i++)
        if (s->features & (1u << i)) {
            strcat(list, *list ? " " : "");
            strcat(list, fname[i]);
        }
    snprintf(s->desc, sizeof s->desc, "v%d at %s: %s", s->version, root, *list ? list : "none");
}

int jz_cgroup_system_open(const char *root, const char *name, struct jz_cgroup_system **out,
                          struct jz_error *err)
{
    if (!root || !*root)
        root = JZ_CGROUP_ROOT_DEFAULT;
    if (root[0] != '/' || strlen(root) >= CG_ROOT_MAX)
        return jz_error_set(err, JZ_EINVAL, "bad cgroup root \"%s\"", root);
    if (!agent_name_ok(name))
        return jz_error_set(err, JZ_EINVAL, "bad cgroup folder name \"%s\"", name ? name : "");
    struct jz_cgroup_system *s = calloc(1, sizeof *s);
    if (!s)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    for (int c = 0; c < C_N; c++)
        s->hier_of[c] = -1;
    char v2root[CG_PATH_MAX];
    struct statfs sf;
    int rc;
    if (statfs(root, &sf) != 0) {
        rc =
            jz_error_set(err, JZ_ENOTSUP, "no cgroup file system at %s: %s", root, strerror(errno));
        goto fail;
    }
    if (sf.f_type == CGROUP2_SUPER_MAGIC) {
        s->version = 2;
        jz_strlcpy(v2root, root, sizeof v2root);
    } else {
        s->version = 1;
        rc = find_v1(s, root, err);
        if (rc == JZ_ENOENT) {
            /* Hybrid machines keep a controller-less cgroup2 at root/unified; with no v1
             * controller it still gives a kill that reaches every descendant. */
            if (!path_fmt(v2root, "%s/unified", root) || statfs(v2root, &sf) != 0 ||
                sf.f_type != CGROUP2_SUPER_MAGIC) {
                rc = jz_error_set(err, JZ_ENOTSUP, "no cgroup controller mounted under %s", root);
                goto fail;
            }
            s->version = 2;
        } else if (rc) {
            goto fail;
        }
    }
    if (s->version == 2) {
        if (access(v2root, W_OK) != 0) {
            rc = jz_error_set(err, JZ_EPERM, "cgroup2 at %s is not writable: %s", v2root,
                              strerror(errno));
            goto fail;
        }
        s->nh = 1;
        jz_strlcpy(s->h[0].top, v2root, sizeof s->h[0].top);
    }
    for (size_t i = 0; i < s->nh; i++)
        if ((rc = make_base(s, &s->h[i], name, err)))
            goto fail;
    if (s->version == 2) {
        char on[512] = "";
        read_at(s->h[0].base, "cgroup.subtree_control", on, sizeof on);
        for (int c = 0; c < C_N; c++)
            if (c != C_FREEZER && c != C_DEVICES && has_word(on, ctrl_name[c]))
                s->features |= ctrl_feature[c];
        /* The agent's folder is not the root, so it has the core files its children will. */
        s->v2_kill = exists_at(s->h[0].base, "cgroup.kill");
        s->v2_freeze = exists_at(s->h[0].base, "cgroup.freeze");
        if (s->v2_kill || s->v2_freeze)
            s->features |= JZ_CGROUP_FREEZE;
    }
    describe(s, s->version == 2 ? v2root : root);
    *out = s;
    return 0;
fail:
    jz_cgroup_system_close(s);
    return rc;
}

void jz_cgroup_system_close(struct jz_cgroup_system *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nh; i++) {
        struct hier *h = &s->h[i];
        if (!*h->base)
            continue;
        /* Our own folder, then its parents up to the hierarchy's root while they are empty:
         * whoever made them (agents come and go in any order; one still in use stays). */
        char path[CG_PATH_MAX];
        jz_strlcpy(path, h->base, sizeof path);
        size_t top_len = strlen(h->top);
        while (strlen(path) > top_len) {
            if (rmdir(path) != 0 && errno != ENOENT)
                break;
            char *slash = strrchr(path, '/');
            if (!slash)
                break;
            *slash = '\0';
        }
    }
    free(s);
}

const char *jz_cgroup_system_version(const struct jz_cgroup_system *s)
{
    return s->version == 2 ? "v2" : "v1";
}

unsigned jz_cgroup_system_features(const struct jz_cgroup_system *s)
{
    return s->features;
}

const char *jz_cgroup_system_describe(const struct jz_cgroup_system *s)
{
    return s->desc;
}

/* ---- killing ---- */

static bool count_pid(pid_t pid, void *arg)
{
    (*(size_t *)arg)++;
    return true;
}

static bool kill_pid(pid_t pid, void *arg)
{
    /* Never the agent itself (attached by mistake) nor init. */
    if (pid > 1 && pid != getpid() && kill(pid, SIGKILL) == 0)
        (*(size_t *)arg)++;
    return true;
}

static bool stop_at_pid(pid_t pid, void *arg)
{
    return false;
}

/* Waits for a freeze to settle, bounded: a task in uninterruptible sleep can hold it up, and
 * killing through an unfinished freeze is still better than not killing. */
static void freeze_wait(const char *dir, bool v2)
{
    char buf[64];
    for (int ms = 0; ms < CG_FREEZE_WAIT_MS; ms++) {
        if (v2 ? keyed_at(dir, "cgroup.events", "frozen") == 1
               : read_at(dir, "freezer.state", buf, sizeof buf) > 0 && !strcmp(buf, "FROZEN"))
            return;
        sleep_ms(1);
    }
}

/* One round: SIGKILL to everything in the cgroup; returns how many processes were found (on
 * v1, in the hierarchy that listed most: each lists the same processes). */
static size_t kill_pass(const struct jz_cgroup *cg)
{
    const struct jz_cgroup_system *s = cg->s;
    size_t n = 0;
    if (s->version == 2 && s->v2_kill) {
        walk_pids(cg->dir[0], CG_TREE_DEPTH, count_pid, &n);
        write_at(cg->dir[0], "cgroup.kill", "1"); /* the kernel's own loop, fork-proof */
        return n;
    }
    /* Frozen, nothing forks while its listing is read: every process is seen, and no pid
     * listed can exit and be reused before its SIGKILL. Frozen v1 tasks die when thawed. */
    const char *freezer = NULL;
    if (s->version == 2 && s->v2_freeze)
        freezer = cg->dir[0];
    else if (s->version == 1 && s->hier_of[C_FREEZER] >= 0 && cg->made[s->hier_of[C_FREEZER]])
        freezer = cg->dir[s->hier_of[C_FREEZER]];
    if (freezer) {
        bool v2 = s->version == 2;
        if (write_at(freezer, v2 ? "cgroup.freeze" : "freezer.state", v2 ? "1" : "FROZEN") == 0)
            freeze_wait(freezer, v2);
    }
    for (size_t i = 0; i < s->nh; i++) {
        size_t k = 0;
        if (cg->made[i])
            walk_pids(cg->dir[i], CG_TREE_DEPTH, kill_pid, &k);
        n = k > n ? k : n;
    }
    if (freezer)
        write_at(freezer, s->version == 2 ? "cgroup.freeze" : "freezer.state",
                 s->version == 2 ? "0" : "THAWED");
    return n;
}

bool jz_cgroup_empty(const struct jz_cgroup *cg)
{
    const struct jz_cgroup_system *s = cg->s;
    if (s->version == 2) {
        int64_t populated = keyed_at(cg->dir[0], "cgroup.events", "populated");
        if (populated >= 0 || !cg->made[0])
            return populated <= 0; /* gone counts as empty */
    }
    for (size_t i = 0; i < s->nh; i++)
        if (cg->made[i] && !walk_pids(cg->dir[i], CG_TREE_DEPTH, stop_at_pid, NULL))
            return false;
    return true;
}

/* Kills in rounds (CG_ROUND_MS apart, to catch what forked past a round without a freezer)
 * until empty or wait_ms has passed, looking every millisecond: the dead leave within one.
 * *found gets the first round's count. */
static int kill_wait(const struct jz_cgroup *cg, int wait_ms, size_t *found)
{
    int64_t start = jz_time_mono_ms(), last = 0;
    for (bool first = true;; first = false) {
        if (jz_cgroup_empty(cg))
            return 0;
        int64_t now = jz_time_mono_ms();
        if (first || now - last >= CG_ROUND_MS) {
            size_t n = kill_pass(cg);
            if (first && found)
                *found = n;
            last = now;
        }
        if (jz_time_mono_ms() - start >= wait_ms)
            return jz_cgroup_empty(cg) ? 0 : JZ_EBUSY;
        sleep_ms(1);
    }
}

int jz_cgroup_kill(struct jz_cgroup *cg, int wait_ms)
{
    return kill_wait(cg, wait_ms, NULL);
}

/* ---- one job part's cgroup ---- */

static void cgroup_free(struct jz_cgroup *cg)
{
    for (size_t i = 0; i < C_N; i++) {
        if (cg->fd[i] >= 0)
            close(cg->fd[i]);
        if (cg->made[i])
            rmdir_tree(cg->dir[i], CG_TREE_DEPTH);
    }
    free(cg);
}

static struct jz_cgroup *cgroup_new(struct jz_cgroup_system *s)
{
    struct jz_cgroup *cg = calloc(1, sizeof *cg);
    if (!cg)
        return NULL;
    cg->s = s;
    for (size_t i = 0; i < C_N; i++)
        cg->fd[i] = -1;
    return cg;
}

/* Refuses lim when it is malformed (JZ_EINVAL) or asks what s cannot do (JZ_ENOTSUP). */
static int check_limits(const struct jz_cgroup_system *s, const struct jz_cgroup_limits *lim,
                        struct jz_error *err)
{
    for (int m = 0; m < 2; m++) {
        const char *list = m ? lim->mems : lim->cpus;
        int *v = NULL;
        size_t n;
        struct jz_error e;
        if (list && *list && jz_cpulist_parse(list, &v, &n, &e) != 0)
            return jz_error_set(err, JZ_EINVAL, "bad cpuset %s \"%s\": %s", m ? "mems" : "cpus",
                                list, e.msg);
        free(v);
    }
    if (lim->limit_devices) {
        if (lim->n_gpu_minors && !lim->gpu_minors)
            return jz_error_set(err, JZ_EINVAL, "GPU minors missing");
        for (size_t i = 0; i < lim->n_gpu_minors; i++)
            if (lim->gpu_minors[i] < 0 || lim->gpu_minors[i] > JZ_CGROUP_GPU_MINOR_MAX)
                return jz_error_set(err, JZ_EINVAL, "bad GPU minor %d", lim->gpu_minors[i]);
    }
    const char *missing = NULL;
    if (lim->memory_bytes > 0 && !(s->features & JZ_CGROUP_MEMORY))
        missing = "memory";
    else if (lim->pids_max > 0 && !(s->features & JZ_CGROUP_PIDS))
        missing = "pids";
    else if (((lim->cpus && *lim->cpus) || (lim->mems && *lim->mems)) &&
             !(s->features & JZ_CGROUP_CPUSET))
        missing = "cpuset";
    else if (lim->limit_devices && !(s->features & JZ_CGROUP_DEVICES))
        missing = s->version == 2 ? "devices (v2 needs an eBPF device program, not loaded here)"
                                  : "devices";
    if (missing)
        return jz_error_set(err, JZ_ENOTSUP, "cgroup %s here cannot limit %s",
                            jz_cgroup_system_version(s), missing);
    return 0;
}

static int set_int(const char *dir, const char *file, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return write_at(dir, file, buf);
}

/* v1 devices: the parent allows everything, and an allow entry only removes an equal deny
 * entry, so "deny 195:*, allow 195:N" cannot be said: each GPU minor not given is denied. */
static int deny_gpus(const char *dir, const struct jz_cgroup_limits *lim)
{
    char path[CG_PATH_MAX];
    if (!path_fmt(path, "%s/devices.deny", dir))
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    for (int minor = 0; minor <= JZ_CGROUP_GPU_MINOR_MAX && rc == 0; minor++) {
        bool allowed = false;
        for (size_t i = 0; i < lim->n_gpu_minors && !allowed; i++)
            allowed = lim->gpu_minors[i] == minor;
        if (allowed)
            continue;
        char rule[32];
        int len = snprintf(rule, sizeof rule, "c %d:%d rwm", NVIDIA_MAJOR, minor);
        if (write(fd, rule, (size_t)len) != len)
            rc = -errno;
    }
    close(fd);
    return rc;
}

/* Applies lim in hierarchy i; the failing file in *what. */
static int apply_limits(struct jz_cgroup *cg, size_t i, const struct jz_cgroup_limits *lim,
                        const char **what)
{
    const struct jz_cgroup_system *s = cg->s;
    const char *dir = cg->dir[i];
    unsigned ctrls = s->version == 2 ? ~0u : s->h[i].ctrls;
    bool v2 = s->version == 2;
    int rc;
    if ((ctrls & (1u << C_MEMORY)) && lim->memory_bytes > 0) {
        *what = v2 ? "memory.max" : "memory.limit_in_bytes";
        if ((rc = set_int(dir, *what, lim->memory_bytes)))
            return rc;
        /* Swap must not be a way around the limit. v1: memory+swap gets the same limit
         * (absent without swap accounting); v2: no swap at all. */
        *what = v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes";
        rc = v2 ? write_at(dir, *what, "0") : set_int(dir, *what, lim->memory_bytes);
        if (rc && rc != -ENOENT)
            return rc;
        /* A v1 cgroup inherits oom_kill_disable: with it set, tasks would hang at the limit
         * instead of being killed. */
        *what = "memory.oom_control";
        if (!v2 && keyed_at(dir, *what, "oom_kill_disable") == 1 &&
            (rc = write_at(dir, *what, "0")))
            return rc;
    }
    if ((ctrls & (1u << C_PIDS)) && lim->pids_max > 0) {
        *what = "pids.max";
        if ((rc = set_int(dir, *what, lim->pids_max)))
            return rc;
    }
    if (ctrls & (1u << C_CPUSET)) {
        for (int m = 0; m < 2; m++) {
            const char *list = m ? lim->mems : lim->cpus;
            *what = m ? "cpuset.mems" : "cpuset.cpus";
            if (list && *list)
                rc = write_at(dir, *what, list);
            else if (!v2) /* v1 takes no task with these empty */
                rc = cpuset_inherit(dir, s->h[i].base, *what);
            else
                rc = 0;
            if (rc)
                return rc;
        }
    }
    if (!v2 && (ctrls & (1u << C_DEVICES)) && lim->limit_devices) {
        *what = "devices.deny";
        if ((rc = deny_gpus(dir, lim)))
            return rc;
    }
    return 0;
}

int jz_cgroup_create(struct jz_cgroup_system *s, const char *job_name,
                     const struct jz_cgroup_limits *lim, struct jz_cgroup **out,
                     struct jz_error *err)
{
    static const struct jz_cgroup_limits none = {0};
    if (!lim)
        lim = &none;
    if (!job_name || !jz_name_is_safe(job_name, JZ_CGROUP_JOB_NAME_MAX))
        return jz_error_set(err, JZ_EINVAL, "bad cgroup name \"%s\"", job_name ? job_name : "");
    int rc = check_limits(s, lim, err);
    if (rc)
        return rc;
    struct jz_cgroup *cg = cgroup_new(s);
    if (!cg)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->nh; i++) {
        if (!path_fmt(cg->dir[i], "%s/%s", s->h[i].base, job_name)) {
            rc = jz_error_set(err, JZ_ELIMIT, "cgroup path too long under %s", s->h[i].base);
            goto fail;
        }
        if (mkdir(cg->dir[i], 0755) != 0) {
            int e = errno;
            rc = jz_error_set(err, e == EEXIST ? JZ_EEXIST : errno_code(-e), "cannot make %s: %s",
                              cg->dir[i], strerror(e));
            goto fail;
        }
        cg->made[i] = true;
        const char *what = "";
        int neg = apply_limits(cg, i, lim, &what);
        if (neg) {
            rc = jz_error_set(err, errno_code(neg), "cannot set %s/%s: %s", cg->dir[i], what,
                              strerror(-neg));
            goto fail;
        }
        char path[CG_PATH_MAX];
        if (!path_fmt(path, "%s/cgroup.procs", cg->dir[i]) ||
            (cg->fd[i] = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
            rc = jz_error_set(err, JZ_EIO, "cannot open %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    *out = cg;
    return 0;
fail:
    cgroup_free(cg);
    return rc;
}

size_t jz_cgroup_join_fds(const struct jz_cgroup *cg, int *fds, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cg->s->nh && n < max; i++)
        if (cg->fd[i] >= 0)
            fds[n++] = cg->fd[i];
    return n;
}

int jz_cgroup_join_self(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (write(fds[i], "0", 1) != 1)
            return -1;
    return 0;
}

int jz_cgroup_attach(struct jz_cgroup *cg, pid_t pid, struct jz_error *err)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%d", (int)pid);
    for (size_t i = 0; i < cg->s->nh; i++)
        if (cg->fd[i] >= 0 && write(cg->fd[i], buf, (size_t)len) != len) {
            int e = errno;
            return jz_error_set(err, e == ESRCH ? JZ_ENOENT : JZ_EIO, "cannot move %d into %s: %s",
                                (int)pid, cg->dir[i], strerror(e));
        }
    return 0;
}

/* The directory holding the memory controller's files, or NULL. */
static const char *memory_dir(const struct jz_cgroup *cg)
{
    const struct jz_cgroup_system *s = cg->s;
    if (!(s->features & JZ_CGROUP_MEMORY))
        return NULL;
    int i = s->version == 2 ? 0 : s->hier_of[C_MEMORY];
    return i >= 0 && cg->made[i] ? cg->dir[i] : NULL;
}

bool jz_cgroup_oom_killed(const struct jz_cgroup *cg)
{
    const char *dir = memory_dir(cg);
    if (!dir)
        return false;
    if (cg->s->version == 2)
        return keyed_at(dir, "memory.events", "oom_kill") > 0;
    int64_t kills = keyed_at(dir, "memory.oom_control", "oom_kill"); /* 4.13 and later */
    if (kills >= 0)
        return kills > 0;
    /* Older kernels count no kills: the limit was hit and usage peaked at it. */
    int64_t limit = int_at(dir, "memory.limit_in_bytes");
    int64_t peak = int_at(dir, "memory.max_usage_in_bytes");
    return int_at(dir, "memory.failcnt") > 0 && limit > 0 && peak >= 0 &&
           peak + 2 * sysconf(_SC_PAGESIZE) >= limit;
}

int64_t jz_cgroup_memory_peak(const struct jz_cgroup *cg)
{
    const char *dir = memory_dir(cg);
    if (!dir)
        return -1;
    return int_at(dir, cg->s->version == 2 ? "memory.peak" : "memory.max_usage_in_bytes");
}

void jz_cgroup_destroy(struct jz_cgroup *cg)
{
    if (!cg)
        return;
    kill_wait(cg, CG_DESTROY_WAIT_MS, NULL);
    cgroup_free(cg);
}

/* ---- leftovers of an earlier run ---- */

struct names {
    char (*v)[256];
    size_t n, cap;
};

static int names_add(struct names *ns, const char *name)
{
    for (size_t i = 0; i < ns->n; i++)
        if (!strcmp(ns->v[i], name))
            return 0;
    if (ns->n == CG_REAP_MAX)
        return JZ_ELIMIT;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 16;
        void *grown = realloc(ns->v, cap * sizeof *ns->v);
        if (!grown)
            return JZ_ENOMEM;
        ns->v = grown;
        ns->cap = cap;
    }
    jz_strlcpy(ns->v[ns->n++], name, sizeof *ns->v);
    return 0;
}

int jz_cgroup_system_reap(struct jz_cgroup_system *s, size_t *cgroups, size_t *procs,
                          struct jz_error *err)
{
    struct names ns = {0};
    int rc = 0;
    for (size_t i = 0; i < s->nh && !rc; i++) {
        DIR *d = opendir(s->h[i].base);
        if (!d)
            continue;
        struct dirent *e;
        while (!rc && (e = readdir(d)))
            if (is_subdir(s->h[i].base, e))
                rc = names_add(&ns, e->d_name);
        closedir(d);
    }
    if (rc) {
        free(ns.v);
        return jz_error_set(err, rc, "cannot list the cgroups under %s: %s", s->h[0].base,
                            jz_strerror(rc));
    }
    /* Everything is sent SIGKILL first, then waited for together: a stuck one costs the
     * wait once, not once per cgroup. */
    struct jz_cgroup **cgs = calloc(ns.n ? ns.n : 1, sizeof *cgs);
    if (!cgs) {
        free(ns.v);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    size_t found = 0, removed = 0;
    for (size_t k = 0; k < ns.n; k++) {
        struct jz_cgroup *cg = cgs[k] = cgroup_new(s);
        if (!cg) {
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
            goto done;
        }
        struct stat st;
        for (size_t i = 0; i < s->nh; i++)
            cg->made[i] =
                path_fmt(cg->dir[i], "%s/%s", s->h[i].base, ns.v[k]) && stat(cg->dir[i], &st) == 0;
        found += kill_pass(cg);
    }
    int64_t start = jz_time_mono_ms();
    for (size_t k = 0; k < ns.n; k++)
        while (kill_wait(cgs[k], 0, NULL) != 0 && jz_time_mono_ms() - start < CG_REAP_WAIT_MS)
            sleep_ms(CG_ROUND_MS);
    for (size_t k = 0; k < ns.n; k++) {
        bool gone = true;
        for (size_t i = 0; i < s->nh; i++) {
            int neg = cgs[k]->made[i] ? rmdir_tree(cgs[k]->dir[i], CG_TREE_DEPTH) : 0;
            if (neg && !rc)
                rc = jz_error_set(err, JZ_EBUSY, "cannot remove %s: %s", cgs[k]->dir[i],
                                  strerror(-neg));
            gone = gone && !neg;
        }
        removed += gone;
    }
done:
    for (size_t k = 0; k < ns.n; k++)
        if (cgs[k]) {
            memset(cgs[k]->made, 0, sizeof cgs[k]->made); /* removed above, or left */
            cgroup_free(cgs[k]);
        }
    free(cgs);
    free(ns.v);
    if (rc)
        return rc;
    if (cgroups)
        *cgroups = removed;
    if (procs)
        *procs = found;
    return 0;
}
