/* The plugin registry: every *.so in the plugin directories, described by a jazari-worker
 * process (jazarid never loads plugin code itself) and cached. */
#ifndef JZ_SERVER_PLUGINS_H
#define JZ_SERVER_PLUGINS_H

#include <jansson.h>
#include <stdbool.h>

#include "server/server.h"

struct jz_plugin_entry {
    char name[64];     /* the plugin's own name, or the file name when refused */
    char path[4096];
    bool ok;
    char reason[512];  /* why it was refused */
    json_t *desc;      /* the description JSON (ok only) */
    unsigned caps;     /* JZ_CAP_* parsed from desc */
};

/* Scans dirs (a ':'-separated list) and describes each plugin with worker_path. Problems with
 * single plugins are recorded as refusals, never fatal. */
int jz_plugins_load(const char *dirs, const char *worker_path, struct jz_plugins **out,
                    struct jz_error *err);
void jz_plugins_free(struct jz_plugins *p);

/* The usable plugin called name, or NULL (borrowed). */
const struct jz_plugin_entry *jz_plugins_find(const struct jz_plugins *p, const char *name);
/* A refused plugin called name (by file stem), or NULL: lets submit explain why. */
const struct jz_plugin_entry *jz_plugins_find_refused(const struct jz_plugins *p, const char *name);
/* The registry as the API shows it (new reference). */
json_t *jz_plugins_json(const struct jz_plugins *p);
size_t jz_plugins_count(const struct jz_plugins *p);

#endif
