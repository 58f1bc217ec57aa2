/* Error-buffer helper for plugin-side code. jz_error_set (error.h) lives in the service's
 * internal common library, which plugins do not link, so plugins carry this small twin. */
#ifndef JZ_PLUGIN_PERR_H
#define JZ_PLUGIN_PERR_H

#include <jazari/error.h>

/* Writes code and the formatted message into err (may be NULL); returns code. */
int jz_perr(struct jz_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
