/* GET /v1/jobs/{id}/log: the job's log from a byte offset, or (follow=1) a chunked stream that
 * grows with the log until the job ends. Followers poll the file on a short timer: the worker
 * writes the log directly, so there is no event to wait for. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/beneath.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/front.h"
#include "server/http.h"
#include "server/jobs.h"

#define LOG_MAX_REPLY (1024 * 1024) /* bytes in one non-follow reply; page with offset */
#define LOG_CHUNK (256 * 1024)      /* bytes queued per follow tick */
#define LOG_MAX_QUEUED (512 * 1024) /* a stream whose client lags more than this waits for it */
#define LOG_POLL_MS 200
#define LOG_MAX_FOLLOWERS 1024

static size_t followers_now;

struct follower {
    struct jz_server *srv;
    char user[JZ_MAX_NAME_LEN + 1]; /* whose stream it is (jz_front_stream_acquire) */
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    struct jz_job *job;
    void *watch;
    struct event *timer;
    char path[4200];
    off_t offset;
    bool ended;
};

/* Appends up to max bytes of path from *offset to buf; returns bytes read (0 at EOF or when
 * the file does not exist yet). */
static size_t read_from(const char *path, off_t *offset, size_t max, struct evbuffer *buf)
{
    /* Beneath the job's folder, through no link: the job may have replaced its log. */
    char dir[4200];
    const char *slash = strrchr(path, '/');
    if (!slash || (size_t)(slash - path) >= sizeof dir)
        return 0;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    int fd = jz_open_beneath(dir, slash + 1, O_RDONLY, (uid_t)-1);
    if (fd < 0)
        return 0;
    size_t total = 0;
    char tmp[65536];
    while (total < max) {
        size_t want = max - total < sizeof tmp ? max - total : sizeof tmp;
        ssize_t n = pread(fd, tmp, want, *offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        evbuffer_add(buf, tmp, (size_t)n);
        *offset += n;
        total += (size_t)n;
    }
    close(fd);
    return total;
}

static void follower_free(struct follower *f)
{
    if (f->watch)
        jz_job_unwatch(f->job, f->watch);
    if (f->timer)
        event_free(f->timer);
    followers_now--;
    jz_front_stream_release(f->srv, f->user);
    free(f);
}

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
    struct follower *f = arg;
    /* libevent detaches an unfinished request from a closing connection; ending the reply
     * frees it. */
    if (!evhttp_request_get_connection(f->req))
        evhttp_send_reply_end(f->req);
    follower_free(f);
}

/* One chunk per tick, and only while the client keeps up: what a slow reader has not taken
 * stays in the file, not in jazarid's memory. */
static void follower_tick(evutil_socket_t fd, short what, void *arg)
{
    struct follower *f = arg;
    size_t queued = jz_front_conn_queued(f->conn);
    size_t n = 0;
    if (queued < LOG_MAX_QUEUED) {
        struct evbuffer *buf = evbuffer_new();
        n = read_from(f->path, &f->offset, LOG_CHUNK, buf);
        if (n)
            evhttp_send_reply_chunk(f->req, buf);
        evbuffer_free(buf);
    }
    if (f->ended && queued < LOG_MAX_QUEUED && n < LOG_CHUNK) { /* caught up with a final log */
        evhttp_connection_set_closecb(f->conn, NULL, NULL);
        evhttp_send_reply_end(f->req);
        follower_free(f);
        return;
    }
    /* More to send right away when the last read was full and the client is keeping up. */
    struct timeval tv = {.tv_sec = 0,
                         .tv_usec = (n == LOG_CHUNK && queued < LOG_MAX_QUEUED) ? 0
                                                                                : LOG_POLL_MS * 1000};
    evtimer_add(f->timer, &tv);
}

/* The job's log grew (lines from a remote node) or the job ended. */
static void on_job_end(void *arg, struct jz_job *job, bool ended)
{
    struct follower *f = arg;
    if (ended) {
        f->watch = NULL; /* the job drops its watch list when it ends */
        f->ended = true;
    }
    event_active(f->timer, EV_TIMEOUT, 0);
}

void jz_api_jobs_log(struct jz_req *r)
{
    struct jz_job *job = jz_http_job_from_path(r);
    if (!job)
        return;
    char *end;
    off_t offset = 0;
    const char *v = jz_req_query(r, "offset");
    if (v) {
        long long o = strtoll(v, &end, 10);
        if (*end || o < 0) {
            jz_http_reply_error(r, 400, "invalid", "offset", "offset must be a byte count >= 0");
            return;
        }
        offset = (off_t)o;
    }
    const char *follow = jz_req_query(r, "follow");
    /* HEAD of a stream would have nothing to send for as long as the job runs: it is answered
     * as the plain read it would start with. */
    bool following = follow && (strcmp(follow, "1") == 0 || strcmp(follow, "true") == 0) &&
                     r->method != EVHTTP_REQ_HEAD;
    char path[4200];
    jz_job_log_path(r->srv->jobs, job, path, sizeof path);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");

    enum jz_job_state st = jz_job_state(job);
    bool final = st != JZ_JOB_PENDING && st != JZ_JOB_RUNNING;
    if (!following) {
        struct evbuffer *buf = evbuffer_new();
        read_from(path, &offset, LOG_MAX_REPLY, buf);
        char next[32];
        snprintf(next, sizeof next, "%lld", (long long)offset);
        evhttp_add_header(h, "X-Jazari-Next-Offset", next);
        jz_http_send(r->req, 200, buf);
        evbuffer_free(buf);
        return;
    }
    /* Following an ended job streams what there is, like a follow that has caught up. */
    if (followers_now >= LOG_MAX_FOLLOWERS) {
        jz_http_reply_error(r, 429, "too_many_followers", NULL,
                            "too many log streams open (limit %d)", LOG_MAX_FOLLOWERS);
        return;
    }
    int64_t per_user = 0;
    if (!jz_front_stream_acquire(r->srv, r->user->name, &per_user)) {
        jz_http_reply_error(r, 429, "too_many_streams", NULL,
                            "you have %lld log streams open, the most one user may have; end "
                            "one (or read the log without following it)",
                            (long long)per_user);
        return;
    }
    struct follower *f = calloc(1, sizeof *f);
    if (!f) {
        jz_front_stream_release(r->srv, r->user->name);
        jz_http_reply_error(r, 500, "internal", NULL, "out of memory");
        return;
    }
    followers_now++;
    f->srv = r->srv;
    snprintf(f->user, sizeof f->user, "%s", r->user->name);
    f->req = r->req;
    f->conn = evhttp_request_get_connection(r->req);
    f->job = job;
    f->offset = offset;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->timer = evtimer_new(r->srv->base, follower_tick, f);
    f->ended = final;
    f->watch = final ? NULL : jz_job_watch(job, on_job_end, f);
    evhttp_send_reply_start(r->req, 200, "OK");
    evhttp_connection_set_closecb(f->conn, on_conn_close, f);
    /* A quiet log is normal: no idle timeout for a stream (a day bounds a dead peer). */
    evhttp_connection_set_timeout(f->conn, 24 * 3600);
    event_active(f->timer, EV_TIMEOUT, 0);
}
