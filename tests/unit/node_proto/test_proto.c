/* The agent protocol's frames: written and read back whole, in pieces of one byte, with data,
 * from files; malformed and oversized frames refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/json.h"
#include "node/proto.h"

/* Feeds src into a reader one byte at a time; returns the frames read. */
static size_t read_bytewise(struct evbuffer *src, struct jz_msg *out, size_t max)
{
    struct evbuffer *in = evbuffer_new();
    struct jz_proto_reader r = {0};
    size_t n = 0;
    unsigned char byte;
    while (evbuffer_remove(src, &byte, 1) == 1) {
        evbuffer_add(in, &byte, 1);
        struct jz_error err = {0};
        int rc;
        while (n < max && (rc = jz_proto_read(&r, in, 4096, &out[n], &err)) == 1)
            n++;
        assert_true(rc >= 0);
    }
    assert_int_equal(evbuffer_get_length(in), 0);
    jz_proto_reader_clear(&r);
    evbuffer_free(in);
    return n;
}

static void test_roundtrip_in_pieces(void **state)
{
    (void)state;
    struct evbuffer *buf = evbuffer_new();
    json_t *a = json_pack("{s:s, s:i}", "t", "hb", "running", 3);
    json_t *b = json_pack("{s:s, s:I}", "t", "log", "job", (json_int_t)7);
    const char data[] = "line one\nline two\n\0binary\xff";
    assert_int_equal(jz_proto_write(buf, a, NULL, 0, NULL), 0);
    assert_int_equal(jz_proto_write(buf, b, data, sizeof data, NULL), 0);
    assert_int_equal(jz_proto_write(buf, a, NULL, 0, NULL), 0);
    struct jz_msg m[4] = {{0}};
    assert_int_equal(read_bytewise(buf, m, 4), 3);
    assert_string_equal(jz_msg_type(&m[0]), "hb");
    assert_int_equal(jz_json_int(m[0].hdr, "running", 0), 3);
    assert_null(m[0].data);
    assert_string_equal(jz_msg_type(&m[1]), "log");
    assert_int_equal(m[1].len, sizeof data);
    assert_memory_equal(m[1].data, data, sizeof data);
    assert_string_equal(jz_msg_type(&m[2]), "hb");
    for (int i = 0; i < 3; i++)
        jz_msg_clear(&m[i]);
    json_decref(a);
    json_decref(b);
    evbuffer_free(buf);
}

static void test_file_frames(void **state)
{
    (void)state;
    /* A file of 2.5 chunks, and an empty one: offsets, lengths and "last" as announced. */
    size_t size = JZ_PROTO_CHUNK * 2 + JZ_PROTO_CHUNK / 2;
    unsigned char *content = malloc(size);
    for (size_t i = 0; i < size; i++)
        content[i] = (unsigned char)(i * 7 + 3);
    int fd = memfd_create("t", 0), empty = memfd_create("e", 0);
    assert_true(fd >= 0 && empty >= 0);
    assert_int_equal(write(fd, content, size), (ssize_t)size);
    struct evbuffer *buf = evbuffer_new();
    json_t *h = json_pack("{s:s, s:s}", "t", "file", "name", "out/x");
    assert_int_equal(jz_proto_write_file(buf, h, fd, NULL), 0);
    assert_int_equal(jz_proto_write_file(buf, h, empty, NULL), 0);
    close(fd);
    close(empty); /* the queued chunks keep their own descriptor */
    struct evbuffer *in = evbuffer_new();
    evbuffer_add_buffer(in, buf);
    struct jz_proto_reader r = {0};
    unsigned char *back = calloc(1, size);
    size_t frames = 0;
    struct jz_msg m = {0};
    while (jz_proto_read(&r, in, 4096, &m, NULL) == 1) {
        int64_t off = jz_json_int(m.hdr, "off", -1);
        if (frames < 3) {
            assert_true(off >= 0 && (size_t)off + m.len <= size);
            memcpy(back + off, m.data, m.len);
            assert_int_equal(jz_json_bool(m.hdr, "last", false), frames == 2);
        } else {
            assert_int_equal(m.len, 0);
            assert_int_equal(off, 0);
            assert_true(jz_json_bool(m.hdr, "last", false));
        }
        frames++;
        jz_msg_clear(&m);
    }
    assert_int_equal(frames, 4);
    assert_memory_equal(back, content, size);
    jz_proto_reader_clear(&r);
    json_decref(h);
    evbuffer_free(buf);
    evbuffer_free(in);
    free(back);
    free(content);
}

static int read_one(const char *text, size_t max_header)
{
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, text, strlen(text));
    struct jz_proto_reader r = {0};
    struct jz_msg m = {0};
    struct jz_error err = {0};
    int rc = jz_proto_read(&r, in, max_header, &m, &err);
    jz_msg_clear(&m);
    jz_proto_reader_clear(&r);
    evbuffer_free(in);
    return rc;
}

static void test_malformed(void **state)
{
    (void)state;
    assert_true(read_one("not json\n", 4096) < 0);
    assert_true(read_one("[1,2]\n", 4096) < 0);
    assert_true(read_one("{\"t\":\"x\",\"len\":-1}\n", 4096) < 0);
    assert_true(read_one("{\"t\":\"x\",\"len\":\"9\"}\n", 4096) < 0);
    assert_true(read_one("{\"t\":\"x\",\"len\":99999999999}\n", 4096) < 0);
    /* Too deep, and too long before any newline. */
    char deep[200] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    strcat(deep, "\n");
    assert_true(read_one(deep, 4096) < 0);
    char *long_line = malloc(10000);
    memset(long_line, 'a', 9999);
    long_line[9999] = '\0';
    assert_int_equal(read_one(long_line, 4096), JZ_ELIMIT);
    free(long_line);
    /* Incomplete is not an error. */
    assert_int_equal(read_one("{\"t\":\"x\"", 4096), 0);
    assert_int_equal(read_one("{\"t\":\"x\",\"len\":5}\nabc", 4096), 0);
    assert_int_equal(read_one("{\"t\":\"x\",\"len\":3}\nabc", 4096), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_in_pieces),
        cmocka_unit_test(test_file_frames),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
