/* Logging core for the daemons (libraries return errors instead of logging).
 * One line per call: "2026-11-25T19:00:00.123Z LEVEL component: message". */
#ifndef JZ_COMMON_LOG_H
#define JZ_COMMON_LOG_H

#include <stdio.h>

#include <jazari/error.h>

enum jz_log_sev { JZ_SEV_ERROR = 0, JZ_SEV_WARN = 1, JZ_SEV_INFO = 2, JZ_SEV_DEBUG = 3 };

/* Sets the sink (default stderr) and the most verbose level written. Not thread-safe: call once
 * at start-up. */
void jz_log_init(FILE *sink, enum jz_log_sev max_level);
/* Where lines go: NULL or "" standard error; "journal" the systemd journal's native socket
 * (ident is its SYSLOG_IDENTIFIER), "journal:SOCKET" another socket of that protocol; anything
 * else a file, appended to (created 0640). Called again, it switches sinks (reloads). */
int jz_log_open(const char *dest, const char *ident, enum jz_log_sev max_level,
                struct jz_error *err);
/* Reopens the log file under its name (after logrotate moved it); nothing for other sinks.
 * Safe while other threads log. */
int jz_log_reopen(struct jz_error *err);
void jz_log_set_level(enum jz_log_sev max_level);
/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int jz_log_level_parse(const char *s);
const char *jz_log_level_name(enum jz_log_sev sev);
void jz_log(enum jz_log_sev sev, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define jz_log_error(comp, ...) jz_log(JZ_SEV_ERROR, comp, __VA_ARGS__)
#define jz_log_warn(comp, ...) jz_log(JZ_SEV_WARN, comp, __VA_ARGS__)
#define jz_log_info(comp, ...) jz_log(JZ_SEV_INFO, comp, __VA_ARGS__)
#define jz_log_debug(comp, ...) jz_log(JZ_SEV_DEBUG, comp, __VA_ARGS__)

#endif
