/* The MLP model file decoder. Each input is decoded as given (the CRC trailer rejects nearly
 * all mutations) and again with its trailer recomputed, so that the shape and number checks
 * behind the CRC are reached. A decoded model encodes back to the very same bytes. */
#include "fuzz.h"

#include "model.h"

static void decode_one(const uint8_t *data, size_t size)
{
    struct jz_mlp m;
    struct jz_error err = {0};
    if (jz_mlp_decode(data, size, &m, &err) != 0) {
        FUZZ_CHECK(err.code < 0 && err.msg[0]);
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    FUZZ_CHECK(jz_mlp_encode(&m, &buf, &len, &err) == 0);
    FUZZ_CHECK(len == size && memcmp(buf, data, size) == 0);
    free(buf);
    jz_mlp_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_one(data, size);
    if (size >= 4) {
        uint8_t *fixed = malloc(size);
        if (!fixed)
            abort();
        memcpy(fixed, data, size);
        uint32_t crc = jz_crc32(fixed, size - 4);
        memcpy(fixed + size - 4, &crc, 4); /* the format is little-endian, as is this host */
        decode_one(fixed, size);
        free(fixed);
    }
    return 0;
}
