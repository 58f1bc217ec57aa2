/* Privilege separation, as slurmctld and slurmd split it: jazarid started as root starts its
 * local node agent (jazari-node, which stays root to confine jobs as their users) as a process
 * of its own, then gives up root and runs as an unprivileged account (default "jazari"). The
 * agent talks to jazarid over a socket pair with the agent protocol, like any other node. */
#ifndef JZ_SERVER_PRIVSEP_H
#define JZ_SERVER_PRIVSEP_H

#include <sys/types.h>

#include "server/server.h"

#define JZ_PRIVSEP_DEFAULT_USER "jazari"

/* When this process is root and cfg->run_as is not "root": secures the state folder (owned by
 * the account, 0700, files 0600), starts the local agent (unless cfg->no_local_node) with its
 * folder cfg->node_dir, and switches to the account for good. *agent_fd gets jazarid's end of
 * the agent's socket (-1 when none was started), *agent_pid its process. Not root, or
 * --user root: nothing changes (jobs run as this process' user, unconfined). */
int jz_privsep_start(struct jz_server_config *cfg, const char *log_level, int *agent_fd,
                     pid_t *agent_pid, struct jz_error *err);

#endif
