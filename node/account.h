/* The Unix account a job part runs as: resolved on the node (names, not numbers, travel from
 * jazarid, as accounts may have different ids on different nodes), and the part's folder handed
 * to it. Used by the agent when it confines jobs (it runs as root, like slurmd). */
#ifndef JZ_NODE_ACCOUNT_H
#define JZ_NODE_ACCOUNT_H

#include <stddef.h>
#include <sys/types.h>

#include <jazari/error.h>

#define JZ_ACCOUNT_MAX_GROUPS 64

struct jz_account {
    char name[33];
    uid_t uid;
    gid_t gid;
    gid_t groups[JZ_ACCOUNT_MAX_GROUPS]; /* supplementary groups, the primary one included */
    size_t ngroups;
};

/* Looks name up (getpwnam_r and getgrouplist). Refuses names that are not POSIX account names,
 * unknown accounts, uid 0 (jobs never run as root), deny_uid (the service's own account; -1:
 * none) and uids below min_uid (system accounts). */
int jz_account_resolve(const char *name, uid_t min_uid, uid_t deny_uid, struct jz_account *out,
                       struct jz_error *err);
/* UID_MIN from /etc/login.defs (1000 without it): the first uid of a person's account. */
uid_t jz_account_min_uid(void);

/* Hands the part's folder dir to the account (0700) with what root staged in it (in/,
 * checkpoint/): through descriptors opened without following links, never by path inside it. */
int jz_account_own_folder(const char *dir, const struct jz_account *acct, struct jz_error *err);

/* Removes a part's folder that its job's account owns: a child process with the folder
 * owner's identity empties it (so a planted link leads nowhere the owner could not go anyway,
 * and any depth works), then the caller's root removes the empty folder. */
int jz_account_remove_folder(const char *dir, struct jz_error *err);

#endif
