/* Clocks, timestamps and durations. */
#include "common/time.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A test hook (docs/testing.md): with JAZARI_FAKE_WALL_OFFSET_FILE=PATH set, the wall clock
 * is shifted by the number of milliseconds in PATH (re-read at most every 100 ms), so that a
 * test can make it jump while the service runs. Without the variable: inert. Durations must
 * not move with it: they come from the monotonic clock. */
static int64_t fake_wall_offset_ms(void)
{
    static const char *path;
    static int armed = -1; /* -1: not looked at yet */
    static int64_t offset, next_read_ms;
    int a = __atomic_load_n(&armed, __ATOMIC_ACQUIRE);
    if (a < 0) {
        const char *p = getenv("JAZARI_FAKE_WALL_OFFSET_FILE");
        path = p && *p ? p : NULL;
        a = path != NULL;
        __atomic_store_n(&armed, a, __ATOMIC_RELEASE);
    }
    if (!a)
        return 0;
    int64_t now = jz_time_mono_ms();
    if (now >= __atomic_load_n(&next_read_ms, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&next_read_ms, now + 100, __ATOMIC_RELEASE);
        FILE *f = fopen(path, "r");
        long long v;
        if (f) {
            if (fscanf(f, "%lld", &v) == 1)
                __atomic_store_n(&offset, (int64_t)v, __ATOMIC_RELEASE);
            fclose(f);
        }
    }
    return __atomic_load_n(&offset, __ATOMIC_ACQUIRE);
}

int64_t jz_time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + fake_wall_offset_ms();
}

int64_t jz_time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t jz_time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void jz_time_format_iso(int64_t ms, char *buf, size_t len)
{
    /* Floored, and the year in 4 digits: what jz_time_parse_iso accepts (years 0000-9999)
     * formats back to itself. fuzz_duration found ".-877Z" for a time before 1970 and "999-..."
     * for a year before 1000 (tests/fuzz/corpus/duration). */
    int64_t frac = ms % 1000;
    time_t secs = (time_t)(ms / 1000 - (frac < 0));
    frac = (frac + 1000) % 1000;
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

int jz_time_parse_iso(const char *s, int64_t *out, struct jz_error *err)
{
    if (!s)
        return jz_error_set(err, JZ_EINVAL, "missing timestamp");
    struct tm tm = {0};
    int consumed = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
        consumed != 19)
        return jz_error_set(err, JZ_EINVAL, "bad timestamp '%.40s'", s);
    const char *p = s + consumed;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        if (digits == 0)
            return jz_error_set(err, JZ_EINVAL, "bad timestamp '%.40s'", s);
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(p, "Z") != 0 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return jz_error_set(err, JZ_EINVAL, "bad timestamp '%.40s'", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return 0;
}

#define JZ_DURATION_MAX (366LL * 24 * 3600 * 100) /* a century is enough for any limit */

/* Reads 1..maxd digits at *p into *v (advancing *p); false when there are none or too many. */
static bool read_digits(const char **p, int maxd, int64_t *v)
{
    int64_t x = 0;
    int n = 0;
    for (; isdigit((unsigned char)**p); (*p)++, n++) {
        if (n >= maxd)
            return false;
        x = x * 10 + (**p - '0');
    }
    *v = x;
    return n > 0;
}

#define DURATION_FORMS                                                                             \
    "use seconds (90), units (90s, 30m, 1h30m, 2d), HH:MM:SS, MM:SS or D-HH[:MM[:SS]]"

/* Slurm's colon and day forms: MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. Digits only (sscanf
 * would take signs and blanks: "1:2:-0"), the first field at most 7 digits, the others in
 * range (fuzz_duration found both; see tests/fuzz/corpus/duration). Days have at most 3 digits,
 * so that a date ("2026-12", "2026-12-31") is never read as a duration where either is taken
 * (the server's WHEN values); "1000d" says more days. */
static int parse_clock(const char *s, int64_t *out, struct jz_error *err)
{
    const char *p = s;
    int64_t f[4] = {0}; /* days, then up to three clock fields */
    int64_t days = 0;
    bool has_days = strchr(s, '-') != NULL;
    if (has_days && (!read_digits(&p, 3, &days) || *p++ != '-'))
        return jz_error_set(err, JZ_EINVAL, "bad duration '%.64s' (%s)", s, DURATION_FORMS);
    int n = 0;
    for (;;) {
        if (n == 3 || !read_digits(&p, n == 0 && !has_days ? 7 : 2, &f[n]))
            return jz_error_set(err, JZ_EINVAL, "bad duration '%.64s' (%s)", s, DURATION_FORMS);
        n++;
        if (*p == '\0')
            break;
        if (*p++ != ':')
            return jz_error_set(err, JZ_EINVAL, "bad duration '%.64s' (%s)", s, DURATION_FORMS);
    }
    int64_t h = 0, m = 0, sec = 0;
    if (has_days) { /* D-HH, D-HH:MM, D-HH:MM:SS */
        h = f[0];
        m = n > 1 ? f[1] : 0;
        sec = n > 2 ? f[2] : 0;
        if (h > 23)
            return jz_error_set(err, JZ_EINVAL, "bad duration '%.64s' (hours after 'D-' are 0-23)",
                                s);
    } else if (n == 2) { /* MM:SS, as Slurm reads it */
        m = f[0];
        sec = f[1];
    } else if (n == 3) { /* HH:MM:SS */
        h = f[0];
        m = f[1];
        sec = f[2];
    } else {
        return jz_error_set(err, JZ_EINVAL, "bad duration '%.64s' (%s)", s, DURATION_FORMS);
    }
    if (((n == 3 || has_days) && m > 59) || sec > 59)
        return jz_error_set(err, JZ_EINVAL, "bad duration '%.64s' (minutes and seconds are 0-59)",
                            s);
    int64_t total = days * 86400 + h * 3600 + m * 60 + sec;
    if (total > JZ_DURATION_MAX)
        return jz_error_set(err, JZ_ERANGE, "duration '%.64s' is too long", s);
    *out = total;
    return 0;
}

int jz_duration_parse(const char *s, int64_t *out, struct jz_error *err)
{
    if (!s || !*s)
        return jz_error_set(err, JZ_EINVAL, "empty duration");
    if (strchr(s, ':') || strchr(s, '-'))
        return parse_clock(s, out, err);
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return jz_error_set(err, JZ_EINVAL,
                                "bad duration '%.64s' (%s)", s, DURATION_FORMS);
        errno = 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (errno || v > JZ_DURATION_MAX)
            return jz_error_set(err, JZ_ERANGE, "duration '%s' is too long", s);
        int64_t mult = 1;
        switch (*end) {
        case '\0': mult = 1; break;
        case 's': mult = 1; end++; break;
        case 'm': mult = 60; end++; break;
        case 'h': mult = 3600; end++; break;
        case 'd': mult = 86400; end++; break;
        default:
            return jz_error_set(err, JZ_EINVAL,
                                "bad duration '%.64s' (%s)", s, DURATION_FORMS);
        }
        total += v * mult;
        if (total > JZ_DURATION_MAX)
            return jz_error_set(err, JZ_ERANGE, "duration '%s' is too long", s);
        p = end;
    }
    *out = total;
    return 0;
}

void jz_duration_format(int64_t seconds, char *buf, size_t len)
{
    if (seconds < 0)
        seconds = 0;
    int64_t d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60,
            s = seconds % 60;
    size_t n = 0;
    buf[0] = '\0';
    if (d && n < len)
        n += (size_t)snprintf(buf + n, len - n, "%lldd", (long long)d);
    if (h && n < len)
        n += (size_t)snprintf(buf + n, len - n, "%lldh", (long long)h);
    if (m && n < len)
        n += (size_t)snprintf(buf + n, len - n, "%lldm", (long long)m);
    if ((s || seconds == 0) && n < len)
        snprintf(buf + n, len - n, "%llds", (long long)s);
}

int64_t jz_time_steady_epoch_s(void)
{
    static int64_t wall0_ms, mono0_ms; /* the first call's; the event loop's thread only */
    if (!mono0_ms) {
        wall0_ms = jz_time_now_ms();
        mono0_ms = jz_time_mono_ms();
        if (!mono0_ms)
            mono0_ms = 1;
    }
    return (wall0_ms + (jz_time_mono_ms() - mono0_ms)) / 1000;
}
