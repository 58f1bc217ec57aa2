/* The agent protocol: bytes from a peer arrive in pieces (sizes taken from the input's first
 * byte) and are read with jz_proto_read as jazarid and jazari-node read them. Each frame read is
 * written back with jz_proto_write and must read back identical. */
#include "fuzz.h"

#include <event2/buffer.h>

#include "node/proto.h"

static void round_trip(struct jz_msg *m)
{
    struct evbuffer *b = evbuffer_new();
    FUZZ_CHECK(b != NULL);
    struct jz_error err = {0};
    FUZZ_CHECK(jz_proto_write(b, m->hdr, m->data, m->len, &err) == 0);
    struct jz_proto_reader r = {0};
    struct jz_msg back = {0};
    FUZZ_CHECK(jz_proto_read(&r, b, JZ_PROTO_MAX_HEADER, &back, &err) == 1);
    FUZZ_CHECK(json_equal(back.hdr, m->hdr));
    FUZZ_CHECK(back.len == m->len && (m->len == 0 || memcmp(back.data, m->data, m->len) == 0));
    FUZZ_CHECK(evbuffer_get_length(b) == 0);
    jz_msg_clear(&back);
    jz_proto_reader_clear(&r);
    evbuffer_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t piece = (size_t)(data[0] & 0x7f) + 1;
    size_t max_header = data[0] & 0x80 ? 64 : JZ_PROTO_MAX_HEADER;
    data++;
    size--;
    struct evbuffer *in = evbuffer_new();
    FUZZ_CHECK(in != NULL);
    struct jz_proto_reader r = {0};
    int rc = 0;
    for (size_t off = 0; off < size && rc >= 0;) {
        size_t n = size - off < piece ? size - off : piece;
        evbuffer_add(in, data + off, n);
        off += n;
        for (;;) {
            struct jz_msg m = {0};
            struct jz_error err = {0};
            rc = jz_proto_read(&r, in, max_header, &m, &err);
            if (rc <= 0) {
                FUZZ_CHECK(rc == 0 || (rc == err.code && err.msg[0]) || rc == JZ_EINVAL);
                break;
            }
            FUZZ_CHECK(json_is_object(m.hdr) && (m.len == 0) == (m.data == NULL));
            (void)jz_msg_type(&m);
            round_trip(&m);
            jz_msg_clear(&m);
        }
    }
    jz_proto_reader_clear(&r);
    evbuffer_free(in);
    return 0;
}
