/* jz_perr: the plugin-side twin of jz_error_set (see perr.h). */
#include "perr.h"

#include <stdarg.h>
#include <stdio.h>

int jz_perr(struct jz_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
