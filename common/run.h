/* Running a helper program and reading what it prints, bounded in size and time: how jazarid
 * and `jazari plugin check` have jazari-worker describe a plugin without loading its code. */
#ifndef JZ_COMMON_RUN_H
#define JZ_COMMON_RUN_H

#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

/* Runs argv[0] (a path) with argv and this process's environment, its standard output read
 * into a malloc'd, NUL-terminated string (at most max bytes are kept; the rest is not read).
 * A child still running after timeout_ms is killed. *status gets waitpid's status. Returns the
 * output, or NULL with err: JZ_EIO (it could not be started), JZ_ENOMEM, or JZ_ETIMEDOUT (killed
 * at the deadline). */
char *jz_run_capture(char *const argv[], size_t max, int64_t timeout_ms, int *status,
                     struct jz_error *err);

#endif
