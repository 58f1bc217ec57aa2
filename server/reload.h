/* Reloading jazarid's configuration file and plugin folders in place (SIGHUP and
 * POST /v1/admin/reload; docs/ops-guide.md, "Reloading"). */
#ifndef JZ_SERVER_RELOAD_H
#define JZ_SERVER_RELOAD_H

#include <jansson.h>

#include <jazari/error.h>

#include "server/server.h"

/* Re-reads the configuration file (with the command line still winning) and scans the plugin
 * folders again. All or nothing for the file: any error (an unknown key, a wrong type, a
 * scheduler policy the scheduler refuses) leaves every setting as it was and returns it in err.
 * Settings that only a restart changes are kept and listed. Running jobs are not touched.
 * The plugin folders are rescanned on a thread of their own, the registry swapped in on the
 * loop's thread when that ends (logged). *report (may be NULL) gets {"changed": [...],
 * "restart_needed": [...], "scheduler": bool, "plugins": {"versions", "rescan":
 * "started"|"not started"[, "error"]}}. Runs on the loop's thread. */
int jz_server_reload(struct jz_server *srv, json_t **report, struct jz_error *err);

#endif
