/* jazarid's settings: every command-line option is also a key of the configuration file (the
 * option's name in snake_case: --kill-grace is "kill_grace"), next to the structured sections
 * ("scheduler", "limits", "tenants", "plugins"). The file is validated strictly: an unknown key
 * or a value of the wrong type is an error naming it. The command line wins over the file, on
 * start-up and on every reload (docs/ops-guide.md, "Configuration"). */
#ifndef JZ_SERVER_CONFIG_H
#define JZ_SERVER_CONFIG_H

#include <jansson.h>
#include <stdio.h>

#include <jazari/error.h>

#include "server/server.h"

/* The command line as given, kept for reloads. */
struct jz_config_args;

enum jz_config_parse {
    JZ_CONFIG_RUN = 0,   /* start the service */
    JZ_CONFIG_DONE = 1,  /* --help or --version was printed: exit 0 */
    JZ_CONFIG_USAGE = 2, /* a usage error was printed: exit 2 */
};

/* Parses argv. On JZ_CONFIG_RUN *out holds the options (free with jz_config_args_free). */
enum jz_config_parse jz_config_parse_args(int argc, char **argv, struct jz_config_args **out);
void jz_config_args_free(struct jz_config_args *a);
/* The --config path, or NULL. */
const char *jz_config_args_file(const struct jz_config_args *a);

/* Builds cfg from the defaults, then the configuration file (when the command line names one),
 * then the command line. *file gets the file's JSON object ({} without a file; the caller owns
 * it), which the structured sections are read from later. Errors name the key or option. */
int jz_config_build(const struct jz_config_args *args, struct jz_server_config *cfg,
                    json_t **file, struct jz_error *err);

/* Completes cfg with what the settings leave to jazarid: the worker next to it, the built-in
 * plugin folder, an absolute state folder (created; job paths go to workers) and the local
 * node's folder beside it. The same on start-up and on reloads, so that they compare alike. */
int jz_config_resolve_paths(struct jz_server_config *cfg, struct jz_error *err);

/* Keeps in new_cfg old_cfg's values of every setting that only a restart changes (the ones
 * jz_config_diff lists as such). */
void jz_config_keep_restart(const struct jz_server_config *old_cfg,
                            struct jz_server_config *new_cfg);

/* What a reload may change in place and what needs a restart: writes the names of the settings
 * that differ between old and new into live and restart ("kill_grace, rate_limit"; "" when
 * none). */
void jz_config_diff(const struct jz_server_config *old_cfg, const struct jz_server_config *new_cfg,
                    char *live, size_t live_len, char *restart, size_t restart_len);

#endif
