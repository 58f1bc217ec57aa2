/* The plugin registry: every *.so in the plugin folders, described by a jazari-worker process
 * (jazarid never loads plugin code itself) and cached. Several versions of one plugin may be
 * installed side by side; a job names one ("train", "train@1.2", "train@1.2.0") and records the
 * version and the SHA-256 of the file it was accepted with. Each described file is first copied,
 * by content, to a private folder (STATE/plugins/SHA256.so): the copy is what is described and
 * what the job's worker loads, so a file renamed over or removed later changes nothing for jobs
 * already submitted. Reloading builds a new registry and swaps it in. */
#ifndef JZ_SERVER_PLUGINS_H
#define JZ_SERVER_PLUGINS_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "server/server.h"

#define JZ_PLUGIN_SHA256_HEX 64
#define JZ_PLUGIN_SITE_CONFIG_MAX_BYTES (64 * 1024) /* one plugin's site configuration, as JSON */

struct jz_plugin_entry {
    char name[64];     /* the plugin's own name, or the file name's stem when refused */
    char version[72];  /* the plugin's own version; "" when refused before it was read */
    char sha256[JZ_PLUGIN_SHA256_HEX + 1]; /* of the file's bytes; "" when unreadable */
    char path[4096];   /* the file in a plugin folder */
    char copy[4096];   /* the private copy jobs run ("" without a copies folder: path) */
    bool ok;
    bool shadowed;     /* described fine, refused as another file provides its version */
    bool is_default;   /* the newest usable version of its name: what "NAME" selects */
    char reason[512];  /* why it was refused */
    json_t *desc;      /* the description JSON (ok only) */
    unsigned caps;     /* JZ_CAP_* parsed from desc */
    /* The file as it was when described: a reload describes again only what changed. */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    size_t order;      /* the folder's and file's rank in the scan: the earlier wins a tie */
};

/* What a registry is built from. Strings are copied. */
struct jz_plugins_config {
    const char *dirs;        /* ':'-separated folders, scanned in order */
    const char *worker_path; /* jazari-worker, run with --describe */
    const char *copies_dir;  /* private copies (created 0700, files 0600); NULL: none, jobs run
                                the folder's file itself (tests, tools) */
    const json_t *site;      /* the configuration's "plugins" object, {NAME: {...}}, or NULL */
};

/* Scans the folders and describes each plugin. A folder that cannot be read is a warning, and
 * problems with single plugins are recorded as refusals, never fatal. Fails only on out of
 * memory, an unusable copies folder, or a malformed site configuration. */
int jz_plugins_load(const struct jz_plugins_config *cfg, struct jz_plugins **out,
                    struct jz_error *err);
/* Scans again with the configuration *p was loaded with, reusing the descriptions of files that
 * did not change (same inode, size and modification time), and replaces *p on success (the old
 * registry is freed: entries borrowed from it are no longer valid). Logs what appeared and what
 * went. added/removed (may be NULL) count versions (by SHA-256) new and gone. On failure *p is
 * unchanged. */
int jz_plugins_reload(struct jz_plugins **p, size_t *added, size_t *removed,
                      struct jz_error *err);

/* Told on the event loop's thread when an asynchronous reload ended: rc 0 (the registry was
 * replaced; added/removed as for jz_plugins_reload, the changes are logged) or the failure,
 * with why (the registry is kept). */
typedef void (*jz_plugins_reloaded_fn)(void *arg, int rc, size_t added, size_t removed,
                                       const char *why);
/* jz_plugins_reload without blocking the event loop: describing changed plugins runs a worker
 * per file (up to seconds each), so the new registry is built on a thread of its own, which only
 * reads *pp; *pp is replaced (and the old registry freed) on base's thread, then done (may be
 * NULL) is called there with arg. A reload asked while one runs is queued: one more scan runs
 * after it, for every reload asked meanwhile. pp must stay valid, and *pp be changed only by
 * these functions, until the scan ended. Fails only
 * when the thread or its event cannot be made (nothing then changes). */
int jz_plugins_reload_start(struct jz_plugins **pp, struct event_base *base,
                            jz_plugins_reloaded_fn done, void *arg, struct jz_error *err);
/* Whether an asynchronous reload is running (then jz_plugins_reload refuses with JZ_EBUSY). */
bool jz_plugins_reload_running(const struct jz_plugins *p);
/* Frees the registry; a scan still running is stopped after the file it describes, waited
 * for, and its result dropped. */
void jz_plugins_free(struct jz_plugins *p);

/* The usable plugin that `spec` selects, or NULL (borrowed): "NAME" is the newest version;
 * "NAME@V" the version V exactly or else the newest whose version starts with V followed by
 * '.', '-' or '+' ("train@1" selects 1.4.2, not 10.0). Versions compare as dotted numbers. */
const struct jz_plugin_entry *jz_plugins_find(const struct jz_plugins *p, const char *spec);
/* The usable plugin whose file has this SHA-256, or NULL. */
const struct jz_plugin_entry *jz_plugins_find_sha256(const struct jz_plugins *p,
                                                     const char *sha256);
/* A refused plugin called name (the part of spec before '@', matched with the file stem too)
 * whose version, when known, matches spec's version as jz_plugins_find would; not a file
 * refused only because another file provides its version. NULL when none: lets submit explain
 * why. */
const struct jz_plugin_entry *jz_plugins_find_refused(const struct jz_plugins *p,
                                                      const char *spec);
/* The path of the private copy of a version (into buf), whether or not it is still installed:
 * what a job recorded with that SHA-256 runs. 0, or JZ_ENOENT without a copies folder. */
int jz_plugins_copy_path(const struct jz_plugins *p, const char *sha256, char *buf, size_t len);
/* The plugin's site configuration ("plugins": {NAME: {...}}), borrowed, or NULL. */
const json_t *jz_plugins_site_config(const struct jz_plugins *p, const char *name);
/* The registry as the API shows it: every version, usable or refused (new reference). */
json_t *jz_plugins_json(const struct jz_plugins *p);
size_t jz_plugins_count(const struct jz_plugins *p);
/* Splits "NAME@VERSION" into name (into buf) and version (borrowed from spec, NULL when no '@').
 * false when the name does not fit. */
bool jz_plugins_split_spec(const char *spec, char *name, size_t len, const char **version);

#endif
