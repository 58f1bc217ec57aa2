/* Durations ("90", "1h30m", "01:30:00") and ISO times: what is formatted parses back. */
#include "fuzz.h"

#include "common/time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    int64_t secs = 0;
    struct jz_error err = {0};
    if (jz_duration_parse(s, &secs, &err) == 0) {
        FUZZ_CHECK(secs >= 0);
        char buf[64];
        jz_duration_format(secs, buf, sizeof buf);
        int64_t again = -1;
        FUZZ_CHECK(jz_duration_parse(buf, &again, &err) == 0);
        FUZZ_CHECK(again == secs);
    }
    int64_t ms = 0;
    if (jz_time_parse_iso(s, &ms, &err) == 0) {
        char buf[64];
        jz_time_format_iso(ms, buf, sizeof buf);
        int64_t again = 0;
        FUZZ_CHECK(jz_time_parse_iso(buf, &again, &err) == 0);
        FUZZ_CHECK(again == ms);
    }
    free(s);
    return 0;
}
