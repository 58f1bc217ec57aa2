/* Opening beneath a folder without following links (see beneath.h). */
#define _GNU_SOURCE
#include "common/beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#define MAX_REL 1024

static bool rel_ok(const char *rel)
{
    size_t len = strnlen(rel, MAX_REL + 1);
    if (len == 0 || len > MAX_REL || rel[0] == '/')
        return false;
    for (const char *c = rel; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        c += n + (slash ? 1 : 0);
    }
    return true;
}

/* Component by component with O_NOFOLLOW: for kernels older than 5.6. */
static int open_walk(int root_fd, const char *rel, int flags)
{
    char buf[MAX_REL + 1];
    memcpy(buf, rel, strlen(rel) + 1);
    int dir = root_fd;
    char *c = buf;
    for (;;) {
        char *slash = strchr(c, '/');
        if (slash)
            *slash = '\0';
        int fd = openat(dir, c,
                        slash ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
                              : flags | O_NOFOLLOW | O_CLOEXEC, 0640);
        int saved = errno;
        if (dir != root_fd)
            close(dir);
        if (fd < 0) {
            errno = saved;
            return -1;
        }
        if (!slash)
            return fd;
        dir = fd;
        c = slash + 1;
    }
}

int jz_openat_beneath(int root_fd, const char *rel, int flags, uid_t owner)
{
    if (!rel_ok(rel)) {
        errno = EINVAL;
        return -1;
    }
    /* O_NONBLOCK: opening a FIFO the job made must not block the caller (it is refused
     * below); it changes nothing for regular files. */
    flags |= O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
    struct open_how how = {
        .flags = (unsigned long long)flags,
        .mode = (flags & O_CREAT) ? 0640 : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
    if (fd < 0 && (errno == ENOSYS || errno == E2BIG))
        fd = open_walk(root_fd, rel, flags);
    if (fd < 0) {
        if (errno == ELOOP || errno == EXDEV)
            errno = EPERM; /* a link on the way: not served, whatever it points at */
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (owner == (uid_t)-1) {
        struct stat rst;
        if (fstat(root_fd, &rst) != 0) {
            close(fd);
            return -1;
        }
        owner = rst.st_uid;
    }
    if ((!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) ||
        (S_ISREG(st.st_mode) && st.st_nlink > 1 && st.st_uid != owner)) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    return fd;
}

int jz_open_beneath(const char *root, const char *rel, int flags, uid_t owner)
{
    int root_fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_fd < 0)
        return -1;
    int fd = jz_openat_beneath(root_fd, rel, flags, owner);
    int saved = errno;
    close(root_fd);
    errno = saved;
    return fd;
}
