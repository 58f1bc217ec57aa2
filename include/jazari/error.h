/* Jazari error codes and the caller-owned error buffer used at API and ABI boundaries.
 * Codes are never renumbered or reused; new ones are appended. */
#ifndef JAZARI_ERROR_H
#define JAZARI_ERROR_H

#include <stdarg.h>

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

/* Writes code and a formatted message into err (which may be NULL) and returns code,
 * so that callers can write `return jz_error_set(err, JZ_EINVAL, "...")`. */
int jz_error_set(struct jz_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int jz_error_setv(struct jz_error *err, int code, const char *fmt, va_list ap);

/* A static, human-readable name for a code ("invalid argument"). */
const char *jz_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
