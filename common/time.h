/* Wall and monotonic clocks in milliseconds, ISO-8601 times, and durations ("1h30m"). */
#ifndef JZ_COMMON_TIME_H
#define JZ_COMMON_TIME_H

#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

int64_t jz_time_now_ms(void);       /* wall clock, ms since the epoch */
int64_t jz_time_mono_ms(void);      /* monotonic, ms */
int64_t jz_time_mono_us(void);      /* monotonic, µs */
/* Seconds since the epoch on a clock that does not jump: the wall clock at the process' first
 * call, advanced by the monotonic clock. For what measures time (fair-share decay, backfill,
 * ages): a wall clock set forwards or back while the service runs changes none of it. */
int64_t jz_time_steady_epoch_s(void);
/* Formats ms since the epoch as "2026-11-25T19:00:00.123Z". */
void jz_time_format_iso(int64_t ms, char *buf, size_t len);
/* Parses what jz_time_format_iso writes (the fraction is optional, any number of digits; the
 * "Z" is required). *ms is written only on success. */
int jz_time_parse_iso(const char *s, int64_t *ms, struct jz_error *err);

/* Parses a duration: a plain number of seconds ("90"), units s/m/h/d combined ("1h30m"), or
 * Slurm's forms "HH:MM:SS", "MM:SS" ("90:00" is 90 minutes), "D-HH", "D-HH:MM" and
 * "D-HH:MM:SS" ("1-00:00:00" is a day). A bare number stays seconds (Slurm reads minutes):
 * the older meaning wins. Writes seconds into *out on success; JZ_EINVAL with a message naming
 * the accepted forms, JZ_ERANGE beyond a century. */
int jz_duration_parse(const char *s, int64_t *out, struct jz_error *err);
/* Formats seconds compactly ("1h30m", "45s", "2d"). */
void jz_duration_format(int64_t seconds, char *buf, size_t len);

#endif
