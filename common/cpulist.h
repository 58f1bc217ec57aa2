/* OS processor lists in the "0-3,8,10-11" form that taskset and cpusets use. */
#ifndef JZ_COMMON_CPULIST_H
#define JZ_COMMON_CPULIST_H

#include <stddef.h>

#include <jazari/error.h>

#define JZ_CPULIST_MAX_CPU 8192 /* highest OS processor number accepted, exclusive */

/* Parses list into a sorted, de-duplicated array. *cpus is malloc'd and owned by the caller.
 * An empty string gives an empty list. */
int jz_cpulist_parse(const char *list, int **cpus, size_t *n, struct jz_error *err);
/* Formats a sorted array compactly; returns JZ_ERANGE when buf is too small. */
int jz_cpulist_format(const int *cpus, size_t n, char *buf, size_t len);

#endif
