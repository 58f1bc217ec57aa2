/* Handlers about the service itself: its version, a reload, and a backup of its database. */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jazari/kernels.h>
#include <jazari/plugin.h>

#include "common/time.h"
#include "common/version.h"
#include "server/api.h"
#include "server/http.h"
#include "server/reload.h"
#include "server/server.h"

/* GET /v1/version: public, like a Server header, so that clients and monitors can check what
 * they talk to before they have a token. */
void jz_api_version(struct jz_req *r)
{
    char abi[32];
    snprintf(abi, sizeof abi, "%d.%d", JZ_PLUGIN_ABI_MAJOR, JZ_PLUGIN_ABI_MINOR);
    jz_http_reply_json(r, 200, json_pack("{s:s, s:s, s:s, s:i}", "version", jz_version(),
                                         "commit", jz_version_commit(), "plugin_abi", abi,
                                         "kernels_api", JZ_KERNELS_API_VERSION));
}

/* POST /v1/admin/reload: what SIGHUP does, with the outcome in the reply. */
void jz_api_admin_reload(struct jz_req *r)
{
    struct jz_error err = {0};
    json_t *report = NULL;
    if (jz_server_reload(r->srv, &report, &err)) {
        jz_http_reply_error(r, 400, "invalid", "config", "%s", err.msg);
        return;
    }
    jz_server_request_commit(r->srv); /* a new policy may start jobs at once */
    jz_api_audit(r, "service.reload", NULL, json_incref(report));
    jz_http_reply_json(r, 200, report);
}

/* GET /v1/admin/backup: a consistent, checked copy of the database (SQLite's online backup
 * API), streamed to the admin. The copy is made in the state folder, sent from an unlinked
 * file, so nothing is left behind whatever happens to the connection. */
void jz_api_admin_backup(struct jz_req *r)
{
    struct jz_server *srv = r->srv;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/backup-%lld-%d.db.tmp", srv->cfg.state_dir,
             (long long)jz_time_now_ms(), (int)getpid());
    struct jz_error err = {0};
    unlink(tmp);
    int64_t t0 = jz_time_now_ms();
    if (srv->store->ops->backup(srv->store, tmp, &err)) {
        unlink(tmp);
        jz_http_reply_error(r, 500, "internal", NULL, "%s", err.msg);
        return;
    }
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    unlink(tmp);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        jz_http_reply_error(r, 500, "internal", NULL, "backup: cannot read the copy: %s",
                            strerror(errno));
        return;
    }
    struct evbuffer *buf = evbuffer_new();
    if (!buf || evbuffer_add_file(buf, fd, 0, st.st_size) != 0) { /* takes fd */
        if (buf)
            evbuffer_free(buf);
        else
            close(fd);
        jz_http_reply_error(r, 500, "internal", NULL, "backup: out of memory");
        return;
    }
    jz_api_audit(r, "service.backup", NULL,
                 json_pack("{s:I, s:I}", "bytes", (json_int_t)st.st_size, "ms",
                           (json_int_t)(jz_time_now_ms() - t0)));
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", "application/vnd.sqlite3");
    evhttp_add_header(h, "Content-Disposition", "attachment; filename=\"jazari.db\"");
    evhttp_add_header(h, "Cache-Control", "no-store");
    jz_http_send(r->req, 200, buf);
    evbuffer_free(buf);
}
