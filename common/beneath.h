/* Opening files inside a folder that someone else controls (a job's folder): never through a
 * symbolic link, never outside the folder, and never a hard link to a file its owner does not
 * own. jazarid and the node agent serve and ship job logs and outputs with this. */
#ifndef JZ_COMMON_BENEATH_H
#define JZ_COMMON_BENEATH_H

#include <sys/types.h>

/* Opens rel (a relative path; no "..", no leading '/') beneath the folder root with flags
 * (O_RDONLY and friends; O_CLOEXEC and O_NOFOLLOW are added). No component of rel may be a
 * symbolic link (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
 * or O_NOFOLLOW on each component where the kernel lacks openat2). A regular file with more
 * than one link that is not owned by `owner` is refused with EPERM: a job may not hard-link
 * a file it could not write into its folder to have it served. Only regular files and
 * directories are opened (a FIFO or device is refused with EPERM, without blocking). owner (uid_t)-1 means the
 * owner of root itself. A file made with O_CREAT gets mode 0640. Returns the descriptor, or -1
 * with errno set. */
int jz_open_beneath(const char *root, const char *rel, int flags, uid_t owner);

/* The same, with root already open (a directory descriptor, borrowed). */
int jz_openat_beneath(int root_fd, const char *rel, int flags, uid_t owner);

#endif
