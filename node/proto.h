/* The agent protocol between jazarid and jazari-node: frames over one TCP connection (or handed
 * over in memory to the local agent). A frame is one JSON object on one line, the header; when
 * the header has "len": N, N raw bytes follow it (log and file contents travel unencoded).
 * docs/agent-protocol.md lists the messages. */
#ifndef JZ_NODE_PROTO_H
#define JZ_NODE_PROTO_H

#include <event2/buffer.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <jazari/error.h>

#define JZ_PROTO_VERSION 1
#define JZ_PROTO_MAX_HEADER (8u * 1024 * 1024) /* the hello carries the topology XML */
#define JZ_PROTO_MAX_DATA (1u * 1024 * 1024)   /* bytes after one header */
#define JZ_PROTO_CHUNK (256u * 1024)           /* files are sent in chunks of this size */
#define JZ_PROTO_MAX_DEPTH 16

/* One message. hdr is owned by whoever holds the message; data (len bytes, NULL when 0) too. */
struct jz_msg {
    json_t *hdr;
    unsigned char *data;
    size_t len;
};

/* Appends a frame to out: hdr (borrowed; "len" is set from len) and len bytes of data. */
int jz_proto_write(struct evbuffer *out, json_t *hdr, const void *data, size_t len,
                   struct jz_error *err);

/* Appends the frames of a file: hdr (borrowed) gets "off", "last" and "len" for each chunk of
 * JZ_PROTO_CHUNK bytes. The data is not copied into memory: libevent sends it from the file
 * (fd is borrowed; a duplicate is kept until the last chunk has left). */
int jz_proto_write_file(struct evbuffer *out, json_t *hdr, int fd, struct jz_error *err);

/* What a reader remembers between calls, so that a frame arriving in many pieces is scanned and
 * parsed once (zero it for a new connection; jz_proto_reader_clear frees it). */
struct jz_proto_reader {
    size_t scanned;  /* bytes of the current header line already searched for its end */
    json_t *hdr;     /* a parsed header whose data has not all arrived */
    size_t hdr_len;  /* its line's length, newline included */
    size_t data_len; /* the data it announced */
};
void jz_proto_reader_clear(struct jz_proto_reader *r);

/* Takes one complete frame from in. Returns 1 and fills *m (the caller frees it with
 * jz_msg_clear), 0 when more bytes are needed, or a negative JZ_E* code when the peer sent
 * something malformed (too long, not JSON, a bad "len"): the connection must then be closed. */
int jz_proto_read(struct jz_proto_reader *r, struct evbuffer *in, size_t max_header,
                  struct jz_msg *m, struct jz_error *err);

void jz_msg_clear(struct jz_msg *m);

/* The message type ("t"), "" when absent. */
const char *jz_msg_type(const struct jz_msg *m);

#endif
