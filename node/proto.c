/* Frame encoding and decoding of the agent protocol (see proto.h). */
#include "node/proto.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"

int jz_proto_write(struct evbuffer *out, json_t *hdr, const void *data, size_t len,
                   struct jz_error *err)
{
    if (len > JZ_PROTO_MAX_DATA)
        return jz_error_set(err, JZ_ELIMIT, "frame data of %zu bytes is over the limit", len);
    if (len)
        json_object_set_new(hdr, "len", json_integer((json_int_t)len));
    else
        json_object_del(hdr, "len");
    char *text = json_dumps(hdr, JSON_COMPACT);
    if (!text)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    size_t tlen = strlen(text);
    int rc = evbuffer_add(out, text, tlen) || evbuffer_add(out, "\n", 1) ||
             (len && evbuffer_add(out, data, len));
    free(text);
    return rc ? jz_error_set(err, JZ_ENOMEM, "out of memory") : 0;
}

static int write_header(struct evbuffer *out, json_t *hdr, struct jz_error *err)
{
    char *text = json_dumps(hdr, JSON_COMPACT);
    if (!text)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int rc = evbuffer_add(out, text, strlen(text)) || evbuffer_add(out, "\n", 1);
    free(text);
    return rc ? jz_error_set(err, JZ_ENOMEM, "out of memory") : 0;
}

int jz_proto_write_file(struct evbuffer *out, json_t *hdr, int fd, struct jz_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return jz_error_set(err, JZ_EIO, "not a regular file");
    off_t size = st.st_size;
    struct evbuffer_file_segment *seg = NULL;
    if (size > 0) {
        int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
            return jz_error_set(err, JZ_EIO, "cannot duplicate a descriptor");
        /* sendfile, not mmap: a file cut short while queued must not fault the sender. */
        seg = evbuffer_file_segment_new(dup_fd, 0, size,
                                        EVBUF_FS_CLOSE_ON_FREE | EVBUF_FS_DISABLE_MMAP);
        if (!seg) {
            close(dup_fd);
            return jz_error_set(err, JZ_ENOMEM, "cannot map a file for sending");
        }
    }
    int rc = 0;
    off_t off = 0;
    /* Each frame is built aside and moved in whole: a failure never leaves a header without
     * its data in the stream. */
    struct evbuffer *frame = evbuffer_new();
    if (!frame)
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
    while (!rc) {
        size_t len = (size_t)(size - off) < JZ_PROTO_CHUNK ? (size_t)(size - off) : JZ_PROTO_CHUNK;
        json_object_set_new(hdr, "off", json_integer((json_int_t)off));
        json_object_set_new(hdr, "last", json_boolean(off + (off_t)len >= size));
        if (len)
            json_object_set_new(hdr, "len", json_integer((json_int_t)len));
        else
            json_object_del(hdr, "len");
        if ((rc = write_header(frame, hdr, err)))
            break;
        if (len && evbuffer_add_file_segment(frame, seg, off, (ev_off_t)len) != 0) {
            rc = jz_error_set(err, JZ_ENOMEM, "cannot queue a file chunk");
            break;
        }
        if (evbuffer_add_buffer(out, frame) != 0) {
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
            break;
        }
        off += (off_t)len;
        if (off >= size)
            break;
    }
    if (frame)
        evbuffer_free(frame);
    if (seg)
        evbuffer_file_segment_free(seg); /* the queued chunks hold their own references */
    return rc;
}

void jz_proto_reader_clear(struct jz_proto_reader *r)
{
    json_decref(r->hdr);
    memset(r, 0, sizeof *r);
}

int jz_proto_read(struct jz_proto_reader *r, struct evbuffer *in, size_t max_header,
                  struct jz_msg *m, struct jz_error *err)
{
    if (!r->hdr) {
        /* Search only what arrived since the last call for the end of the line. */
        struct evbuffer_ptr from;
        evbuffer_ptr_set(in, &from, r->scanned, EVBUFFER_PTR_SET);
        struct evbuffer_ptr eol = evbuffer_search_eol(in, &from, NULL, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            r->scanned = evbuffer_get_length(in);
            if (r->scanned > max_header)
                return jz_error_set(err, JZ_ELIMIT, "a header line is longer than %zu bytes",
                                    max_header);
            return 0;
        }
        size_t hlen = (size_t)eol.pos;
        r->scanned = 0;
        if (hlen > max_header)
            return jz_error_set(err, JZ_ELIMIT, "a header line is longer than %zu bytes",
                                max_header);
        const char *line = (const char *)evbuffer_pullup(in, (ssize_t)hlen + 1);
        if (!line)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        json_t *hdr = jz_json_parse(line, hlen, JZ_PROTO_MAX_DEPTH, err);
        if (!hdr)
            return JZ_EINVAL;
        if (!json_is_object(hdr)) {
            json_decref(hdr);
            return jz_error_set(err, JZ_EINVAL, "a header is not a JSON object");
        }
        json_t *jlen = json_object_get(hdr, "len");
        json_int_t len = jlen ? (json_is_integer(jlen) ? json_integer_value(jlen) : -1) : 0;
        if (len < 0 || len > (json_int_t)JZ_PROTO_MAX_DATA) {
            json_decref(hdr);
            return jz_error_set(err, JZ_EINVAL, "bad frame length");
        }
        evbuffer_drain(in, hlen + 1);
        r->hdr = hdr;
        r->hdr_len = hlen + 1;
        r->data_len = (size_t)len;
    }
    if (evbuffer_get_length(in) < r->data_len)
        return 0; /* the data has not all arrived */
    unsigned char *data = NULL;
    if (r->data_len) {
        data = malloc(r->data_len);
        if (!data)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        evbuffer_remove(in, data, r->data_len);
    }
    m->hdr = r->hdr;
    m->data = data;
    m->len = r->data_len;
    r->hdr = NULL;
    r->data_len = 0;
    return 1;
}

void jz_msg_clear(struct jz_msg *m)
{
    if (!m)
        return;
    json_decref(m->hdr);
    free(m->data);
    m->hdr = NULL;
    m->data = NULL;
    m->len = 0;
}

const char *jz_msg_type(const struct jz_msg *m)
{
    return jz_json_str(m->hdr, "t", "");
}
