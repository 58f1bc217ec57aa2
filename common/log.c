/* Logging core: timestamped lines to one sink. */
#include "common/log.h"
#include "common/time.h"

#include <stdarg.h>
#include <string.h>

static FILE *log_sink;
static enum jz_log_sev log_max = JZ_SEV_INFO;

void jz_log_init(FILE *sink, enum jz_log_sev max_level)
{
    log_sink = sink;
    log_max = max_level;
}

int jz_log_level_parse(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void jz_log(enum jz_log_sev sev, const char *component, const char *fmt, ...)
{
    static const char *tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (sev > log_max)
        return;
    FILE *out = log_sink ? log_sink : stderr;
    char ts[40];
    jz_time_format_iso(jz_time_now_ms(), ts, sizeof ts);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(out, "%s %-5s %s: %s\n", ts, tags[sev], component, line);
    fflush(out);
}
