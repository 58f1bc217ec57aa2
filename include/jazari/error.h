/* Jazari error codes and the caller-owned error buffer used at API and ABI boundaries.
 * Codes are never renumbered or reused; new ones are appended. */
#ifndef JAZARI_ERROR_H
#define JAZARI_ERROR_H

#include <stdarg.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum jz_errcode {
    JZ_OK = 0,
    JZ_EINVAL = -1,     /* invalid argument or input */
    JZ_ENOMEM = -2,     /* out of memory */
    JZ_ENOENT = -3,     /* no such object */
    JZ_EIO = -4,        /* I/O or system call failed */
    JZ_EBUSY = -5,      /* resource busy */
    JZ_ERANGE = -6,     /* value out of range */
    JZ_EPERM = -7,      /* not permitted */
    JZ_EEXIST = -8,     /* already exists */
    JZ_ENOTSUP = -9,    /* not supported (backend, operation) */
    JZ_EABI = -10,      /* plugin ABI mismatch */
    JZ_EDEVICE = -11,   /* device or driver error */
    JZ_ECANCELED = -12, /* cancelled */
    JZ_ETIMEDOUT = -13, /* timed out */
    JZ_EAGAIN = -14,    /* try again */
    JZ_ELIMIT = -15,    /* a size limit was exceeded */
    JZ_ECORRUPT = -16,  /* corrupt or mismatched data */
    JZ_EINTERNAL = -17, /* bug: an invariant did not hold */
};

#define JZ_ERROR_MSG_MAX 256

/* Caller-owned error buffer; functions write it only on failure. */
struct jz_error {
    int code;
    char msg[JZ_ERROR_MSG_MAX];
};

/* The helpers are inline so that plugins, which link nothing of the service, have them too. */

/* Writes code and a formatted message into err (which may be NULL) and returns code,
 * so that callers can write `return jz_error_set(err, JZ_EINVAL, "...")`. */
static inline int jz_error_setv(struct jz_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static inline int jz_error_setv(struct jz_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

static inline int jz_error_set(struct jz_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int jz_error_set(struct jz_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jz_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

/* A static, human-readable name for a code ("invalid argument"). */
static inline const char *jz_strerror(int code)
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

#ifdef __cplusplus
}
#endif
#endif
