/* Error buffer helpers and the names of error codes. */
#include <jazari/error.h>

#include <stdio.h>

int jz_error_setv(struct jz_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int jz_error_set(struct jz_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jz_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

const char *jz_strerror(int code)
{
    switch (code) {
    case JZ_OK: return "success";
    case JZ_EINVAL: return "invalid argument";
    case JZ_ENOMEM: return "out of memory";
    case JZ_ENOENT: return "not found";
    case JZ_EIO: return "input/output error";
    case JZ_EBUSY: return "busy";
    case JZ_ERANGE: return "out of range";
    case JZ_EPERM: return "not permitted";
    case JZ_EEXIST: return "already exists";
    case JZ_ENOTSUP: return "not supported";
    case JZ_EABI: return "ABI mismatch";
    case JZ_EDEVICE: return "device error";
    case JZ_ECANCELED: return "cancelled";
    case JZ_ETIMEDOUT: return "timed out";
    case JZ_EAGAIN: return "try again";
    case JZ_ELIMIT: return "limit exceeded";
    case JZ_ECORRUPT: return "corrupt data";
    case JZ_EINTERNAL: return "internal error";
    default: return "unknown error";
    }
}
