/* Privilege separation (see privsep.h). */
#include "server/privsep.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/strutil.h"
#include "server/nodes.h"

/* nftw has no argument for its callback. */
static uid_t state_uid;
static gid_t state_gid;

/* Everything in the state folder is the account's and no one else's: directories 0700, files
 * 0600 (a folder made by an earlier run as root, or by an older version with 0644 files). */
static int secure_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_SL)
        return lchown(path, state_uid, state_gid) == 0 || errno == ENOENT ? 0 : -1;
    if ((st->st_uid != state_uid || st->st_gid != state_gid) &&
        lchown(path, state_uid, state_gid) != 0 && errno != ENOENT)
        return -1;
    mode_t want = S_ISDIR(st->st_mode) ? 0700 : 0600;
    if ((st->st_mode & 07777) != want && chmod(path, want) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

/* Makes the state folder the account's and private. A folder already 0700 and the account's was
 * secured by an earlier start and is not walked again (a start is not O(files)). One the
 * account owns but that is not private is walked only when walk_owned: root must not walk what
 * the account controls (it could plant links for root to follow); it then fixes the top only.
 * A folder of someone else (made by root, or by an older version) is walked and handed over. */
static int secure_state(const char *dir, uid_t uid, gid_t gid, bool walk_owned,
                        struct jz_error *err)
{
    struct stat top;
    if (lstat(dir, &top) != 0 || !S_ISDIR(top.st_mode))
        return jz_error_set(err, JZ_EIO, "%s is not a folder", dir);
    if (top.st_uid == uid && (top.st_mode & 07777) == 0700)
        return 0;
    if (top.st_uid == uid && !walk_owned) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int rc = dfd >= 0 && fchmod(dfd, 0700) == 0 ? 0 : -1;
        int saved = errno;
        if (dfd >= 0)
            close(dfd);
        return rc ? jz_error_set(err, JZ_EIO, "%s: %s", dir, strerror(saved)) : 0;
    }
    state_uid = uid;
    state_gid = gid;
    if (nftw(dir, secure_entry, 16, FTW_PHYS) != 0)
        return jz_error_set(err, JZ_EIO, "cannot make %s private to uid %d: %s", dir, (int)uid,
                            strerror(errno));
    return 0;
}

static int start_agent(const struct jz_server_config *cfg, const char *log_level,
                       const char *user, int *fd_out, pid_t *pid_out, struct jz_error *err)
{
    char exe_dir[4096], node_exe[4200];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        return jz_error_set(err, JZ_EIO, "cannot find the folder of jazarid");
    snprintf(node_exe, sizeof node_exe, "%.4000s/jazari-node", exe_dir);
    if (access(node_exe, X_OK) != 0)
        return jz_error_set(err, JZ_ENOENT, "the local node agent %s: %s", node_exe,
                            strerror(errno));
    if (jz_mkdir_p(cfg->node_dir, 0711) != 0)
        return jz_error_set(err, JZ_EIO, "cannot create the local node's folder %s: %s",
                            cfg->node_dir, strerror(errno));
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        snprintf(host, sizeof host, "127.0.0.1");
    char min_free[32];
    snprintf(min_free, sizeof min_free, "%lld", (long long)(cfg->min_free_bytes >> 20));
    const char *argv[32];
    size_t n = 0;
    argv[n++] = node_exe;
    argv[n++] = "--attach-fd";
    argv[n++] = "3";
    argv[n++] = "--name";
    argv[n++] = JZ_NODE_LOCAL_NAME;
    argv[n++] = "--state-dir";
    argv[n++] = cfg->node_dir;
    argv[n++] = "--worker";
    argv[n++] = cfg->worker_path;
    argv[n++] = "--plugin-dir";
    argv[n++] = cfg->plugin_dir;
    /* The agent builds a job's plugin path from this folder itself (the launch only names the
     * SHA-256): jazarid's STATE/plugins, as server/main.c gives the registry. */
    char copies[4200];
    snprintf(copies, sizeof copies, "%.4000s/plugins", cfg->state_dir);
    argv[n++] = "--server-copies";
    argv[n++] = copies;
    argv[n++] = "--fallback-backend";
    argv[n++] = cfg->fallback_backend;
    argv[n++] = "--address";
    argv[n++] = host;
    argv[n++] = "--min-free-mb";
    argv[n++] = min_free;
    argv[n++] = "--log-level";
    argv[n++] = log_level;
    argv[n++] = "--deny-user"; /* jobs never run as jazarid's own account */
    argv[n++] = user;
    if (cfg->topology_path[0]) {
        argv[n++] = "--topology";
        argv[n++] = cfg->topology_path;
    }
    if (cfg->local_site[0]) {
        argv[n++] = "--site";
        argv[n++] = cfg->local_site;
    }
    if (cfg->log_file[0]) { /* the same destination; logrotate signals both (ops guide) */
        argv[n++] = "--log-file";
        argv[n++] = cfg->log_file;
    }
    argv[n] = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return jz_error_set(err, JZ_EIO, "socketpair: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* The agent ends when jazarid does (it also sees its socket close). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        /* Its end becomes fd 3, without close-on-exec (dup2 onto itself would keep it). */
        int fd = sv[1] == 3 ? 3 : dup2(sv[1], 3);
        if (fd != 3 || fcntl(3, F_SETFD, 0) != 0)
            _exit(127);
        execv(node_exe, (char *const *)argv);
        _exit(127);
    }
    int saved = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return jz_error_set(err, JZ_EIO, "fork: %s", strerror(saved));
    }
    *fd_out = sv[0];
    *pid_out = pid;
    return 0;
}

int jz_privsep_start(struct jz_server_config *cfg, const char *log_level, int *agent_fd,
                     pid_t *agent_pid, struct jz_error *err)
{
    *agent_fd = -1;
    *agent_pid = 0;
    if (geteuid() != 0) {
        /* Its own files only: 0700 and 0600, as an older version may have left 0644. */
        if (secure_state(cfg->state_dir, geteuid(), getegid(), true, err))
            jz_log_warn("jazarid", "%s", err->msg);
        return 0;
    }
    const char *user = cfg->run_as[0] ? cfg->run_as : JZ_PRIVSEP_DEFAULT_USER;
    if (strcmp(user, "root") == 0) {
        if (secure_state(cfg->state_dir, 0, 0, true, err))
            jz_log_warn("jazarid", "%s", err->msg);
        jz_log_warn("jazarid", "running as root (--user root): jobs on the local node run as "
                               "root, unconfined, and can read every tenant's files and the "
                               "admin token; do not share this service");
        return 0;
    }
    struct passwd *pw = getpwnam(user);
    if (!pw)
        return jz_error_set(err, JZ_ENOENT,
                            "started as root, jazarid runs as the account '%s', which does not "
                            "exist: create it (useradd --system --no-create-home --shell "
                            "/usr/sbin/nologin %s), name another with --user, or run as root "
                            "with --user root (jobs unconfined)", user, user);
    if (pw->pw_uid == 0)
        return jz_error_set(err, JZ_EINVAL, "--user %s: the account is root", user);
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    int rc = secure_state(cfg->state_dir, uid, gid, false, err);
    if (rc)
        return rc;
    if (!cfg->no_local_node) {
        if ((rc = start_agent(cfg, log_level, user, agent_fd, agent_pid, err)))
            return rc;
    }
    if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0)
        return jz_error_set(err, JZ_EPERM, "cannot switch to account %s: %s", user,
                            strerror(errno));
    if (setuid(0) == 0) /* must not be able to come back */
        return jz_error_set(err, JZ_EPERM, "still root after switching to account %s", user);
    prctl(PR_SET_DUMPABLE, 0); /* the admin token is in memory: no ptrace by the account */
    if (*agent_pid)
        jz_log_info("jazarid", "running as account %s (uid %d); the local node agent (pid %d) "
                               "confines jobs as their users", user, (int)uid, (int)*agent_pid);
    else
        jz_log_info("jazarid", "running as account %s (uid %d), no local node", user, (int)uid);
    return 0;
}
