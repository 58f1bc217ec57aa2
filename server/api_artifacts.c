/* GET /v1/jobs/{id}/artifacts and /v1/jobs/{id}/artifacts/{name}: the files a job wrote into its
 * output directory. Names are single safe path components, and files are opened beneath the
 * job's folder through no symbolic link (out/ itself may have been replaced by one) and never as
 * a hard link to another owner's file, so a request can never reach outside the job's folder. */
#include <dirent.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/beneath.h"
#include "common/strutil.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/jobs.h"

#define MAX_LISTED 10000

/* The job's folder: its outputs are opened beneath it, through no link (see beneath.h). */
static void job_dir(struct jz_req *r, struct jz_job *job, char *buf, size_t len)
{
    snprintf(buf, len, "%s/jobs/%lld", r->srv->cfg.state_dir, (long long)jz_job_id(job));
}

void jz_api_jobs_artifacts(struct jz_req *r)
{
    struct jz_job *job = jz_http_job_from_path(r);
    if (!job)
        return;
    char dir[4200];
    job_dir(r, job, dir, sizeof dir);
    json_t *arr = json_array();
    int out_fd = jz_open_beneath(dir, "out", O_RDONLY | O_DIRECTORY, (uid_t)-1);
    DIR *d = out_fd >= 0 ? fdopendir(out_fd) : NULL;
    if (!d && out_fd >= 0)
        close(out_fd);
    if (d) {
        int dfd = dirfd(d);
        struct dirent *de;
        while ((de = readdir(d)) && json_array_size(arr) < MAX_LISTED) {
            struct stat st;
            if (!jz_name_is_safe(de->d_name, 255) ||
                fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
                continue;
            json_array_append_new(arr, json_pack("{s:s, s:I}", "name", de->d_name, "size",
                                                 (json_int_t)st.st_size));
        }
        closedir(d);
    }
    jz_http_reply_json(r, 200, json_pack("{s:o}", "artifacts", arr));
}

void jz_api_jobs_artifact_get(struct jz_req *r)
{
    struct jz_job *job = jz_http_job_from_path(r);
    if (!job)
        return;
    const char *name = r->seg[4];
    if (!jz_name_is_safe(name, 255)) {
        jz_http_reply_error(r, 400, "invalid", "name",
                            "artifact names are [A-Za-z0-9._-], not starting with '.'");
        return;
    }
    char dir[4200], rel[300];
    job_dir(r, job, dir, sizeof dir);
    snprintf(rel, sizeof rel, "out/%s", name);
    int fd = jz_open_beneath(dir, rel, O_RDONLY | O_NONBLOCK, (uid_t)-1);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        jz_http_reply_error(r, 404, "not_found", "name", "job has no artifact '%s'", name);
        return;
    }
    struct evbuffer *buf = evbuffer_new();
    /* evbuffer_add_file takes the descriptor and sends with sendfile where it can. */
    if (evbuffer_add_file(buf, fd, 0, st.st_size) != 0) {
        evbuffer_free(buf);
        jz_http_reply_error(r, 500, "internal", NULL, "cannot read artifact '%s'", name);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", "application/octet-stream");
    char disp[400];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", name);
    evhttp_add_header(h, "Content-Disposition", disp);
    jz_http_send(r->req, 200, buf);
    evbuffer_free(buf);
}
