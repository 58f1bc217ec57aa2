/* The thin hwloc adapter: turns an hwloc topology (this machine, or an XML export) into the plain
 * model of scheduler/topo.h. The only scheduler file that sees hwloc. Library: jz_sched_hwloc. */
#ifndef JZ_SCHED_TOPO_HWLOC_H
#define JZ_SCHED_TOPO_HWLOC_H

#include <stddef.h>

#include <jazari/error.h>

#include "scheduler/topo.h"

#define JZ_TOPO_XML_MAX_BYTES (64u << 20) /* an XML file larger than this is refused */

/* Loads an hwloc v2 XML export (as written by `lstopo file.xml` or hwloc_topology_export_xml).
 * On success *out is a finished topology that the caller destroys with jz_topo_destroy. */
int jz_topo_hwloc_load_xml(const char *path, struct jz_topo **out, struct jz_error *err);
/* The same from an XML document in memory (len bytes, need not be NUL-terminated). */
int jz_topo_hwloc_load_xml_buffer(const char *xml, size_t len, struct jz_topo **out,
                                  struct jz_error *err);
/* Discovers this machine (CPUs, NUMA, PCI and the GPU OS devices hwloc's backends see). A
 * machine without GPUs gives a topology with 0 GPUs and all its usable cores. */
int jz_topo_hwloc_load_live(struct jz_topo **out, struct jz_error *err);

#endif
