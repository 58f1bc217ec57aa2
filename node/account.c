/* Job accounts on a node (see account.h). The agent runs as root here, and a part's folder
 * belongs to the job: nothing below is done by path inside it. Descriptors opened with
 * O_NOFOLLOW and *at() calls on them, or a child process with the job's own identity. */
#include "node/account.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/strutil.h"

static bool name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 32 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return false;
    return true;
}

int jz_account_resolve(const char *name, uid_t min_uid, uid_t deny_uid, struct jz_account *out,
                       struct jz_error *err)
{
    if (!name_ok(name))
        return jz_error_set(err, JZ_EINVAL, "'%.40s' is not a Unix account name", name);
    struct passwd pw, *found = NULL;
    char buf[4096];
    int rc = getpwnam_r(name, &pw, buf, sizeof buf, &found);
    if (!found)
        return jz_error_set(err, JZ_ENOENT, "no Unix account '%s' on this node%s%s", name,
                            rc ? ": " : "", rc ? strerror(rc) : "");
    if (pw.pw_uid == 0)
        return jz_error_set(err, JZ_EPERM, "account '%s' is root: jobs never run as root", name);
    if (pw.pw_uid == deny_uid)
        return jz_error_set(err, JZ_EPERM, "account '%s' is the service's own: jobs never run "
                                           "as it", name);
    if (pw.pw_uid < min_uid)
        return jz_error_set(err, JZ_EPERM, "account '%s' (uid %u) is a system account: jobs "
                                           "run as accounts with uid %u or more",
                            name, (unsigned)pw.pw_uid, (unsigned)min_uid);
    jz_strlcpy(out->name, name, sizeof out->name);
    out->uid = pw.pw_uid;
    out->gid = pw.pw_gid;
    int n = JZ_ACCOUNT_MAX_GROUPS;
    if (getgrouplist(name, pw.pw_gid, out->groups, &n) < 0)
        return jz_error_set(err, JZ_ELIMIT, "account '%s' is in more than %d groups", name,
                            JZ_ACCOUNT_MAX_GROUPS);
    out->ngroups = (size_t)n;
    return 0;
}

uid_t jz_account_min_uid(void)
{
    FILE *f = fopen("/etc/login.defs", "r");
    unsigned long min = 1000;
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long v;
        if (sscanf(line, " UID_MIN %lu", &v) == 1)
            min = v;
    }
    if (f)
        fclose(f);
    return (uid_t)min;
}

/* Hands what root made in the folder open as dfd (staged inputs, a checkpoint) to the account:
 * regular files of root with one link, opened without following links, are fchown()ed through
 * their own descriptor; anything else is left as it is. */
static void own_staged(int dfd, const char *sub, const struct jz_account *acct)
{
    int sfd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        return;
    struct stat st;
    if (fstat(sfd, &st) == 0 && st.st_uid == 0)
        fchown(sfd, acct->uid, acct->gid);
    int lfd = dup(sfd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d && lfd >= 0)
        close(lfd);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int fd = openat(sfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 && st.st_nlink == 1)
            fchown(fd, acct->uid, acct->gid);
        close(fd);
    }
    if (d)
        closedir(d);
    close(sfd);
}

int jz_account_own_folder(const char *dir, const struct jz_account *acct, struct jz_error *err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || fchown(dfd, acct->uid, acct->gid) != 0 || fchmod(dfd, 0700) != 0) {
        int saved = errno;
        if (dfd >= 0)
            close(dfd);
        return jz_error_set(err, JZ_EIO, "cannot hand %s to account %s: %s", dir, acct->name,
                            strerror(saved));
    }
    own_staged(dfd, "in", acct);
    own_staged(dfd, "checkpoint", acct);
    close(dfd);
    return 0;
}

/* In the child, as the folder's owner: entries by name relative to the current folder
 * (FTW_CHDIR), so that depth does not matter; folders made writable first. */
static int open_up(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag == FTW_D && (st->st_mode & 0700) != 0700)
        chmod(path + ftw->base, (st->st_mode & 07777) | 0700);
    return 0;
}

static int remove_rel(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    if (ftw->level == 0)
        return 0; /* the folder itself is in root's jobs/: the parent removes it */
    const char *name = path + ftw->base;
    if (flag == FTW_DP)
        rmdir(name);
    else
        unlink(name);
    return 0; /* go on: remove what can be removed */
}

int jz_account_remove_folder(const char *dir, struct jz_error *err)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return errno == ENOENT ? 0 : jz_error_set(err, JZ_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return unlink(dir) == 0 ? 0 : jz_error_set(err, JZ_EIO, "%s: %s", dir, strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        return jz_error_set(err, JZ_EIO, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The folder's owner empties it: a link planted in it can only lead the removal to
         * what its owner could remove anyway. */
        gid_t g = st.st_gid;
        if (st.st_uid != getuid() &&
            (setgroups(1, &g) != 0 || setresgid(g, g, g) != 0 ||
             setresuid(st.st_uid, st.st_uid, st.st_uid) != 0))
            _exit(1);
        nftw(dir, open_up, 64, FTW_PHYS | FTW_CHDIR);
        _exit(nftw(dir, remove_rel, 64, FTW_DEPTH | FTW_PHYS | FTW_CHDIR) == 0 ? 0 : 1);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rmdir(dir) != 0 && errno != ENOENT)
        return jz_error_set(err, JZ_EIO, "cannot remove %s: %s", dir, strerror(errno));
    return 0;
}
