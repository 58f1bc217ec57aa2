/* Retention: finished jobs older than limits.retention_days are purged (their record, events
 * and files), once an hour. Their accounting stays: the credit ledger records what each job
 * used when it ended, and ids are never given again. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/jobs_internal.h"

#define PURGE_EVERY_S 3600
#define PURGE_MAX_PER_PASS 10000 /* jobs per pass: the loop is not held for long */

static bool finished(enum jz_job_state s)
{
    return s != JZ_JOB_PENDING && s != JZ_JOB_RUNNING;
}

size_t jz_jobs_purge_expired(struct jz_jobs *jobs, int64_t now_ms)
{
    struct jz_server *srv = jobs->srv;
    if (srv->cfg.retention_s <= 0)
        return 0;
    int64_t cutoff = now_ms - srv->cfg.retention_s * 1000;
    size_t purged = 0;
    for (int64_t id = 1; id <= jobs->max_id && (size_t)id < jobs->cap; id++) {
        struct jz_job *job = jobs->by_id[id];
        if (!job || !finished(job->state) || job->end_ms <= 0 || job->end_ms >= cutoff ||
            job->watches)
            continue;
        /* An array's first element keeps its counts (throttle, dependencies on the array):
         * it stays while any element has not ended. */
        if (job->array_id == job->id && job->array_ended < job->array_count)
            continue;
        struct jz_error err = {0};
        if (srv->store->ops->job_del(srv->store, id, &err)) {
            jz_log_error("jobs", "job %lld: cannot purge: %s", (long long)id, err.msg);
            break;
        }
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/jobs/%lld", srv->cfg.state_dir, (long long)id);
        if (jz_remove_tree(dir) != 0)
            jz_log_warn("jobs", "job %lld: cannot remove %s: %s", (long long)id, dir,
                        strerror(errno));
        jobs->counts[job->state]--;
        jobs->by_id[id] = NULL;
        jz_jobs_job_free(job);
        if (++purged >= PURGE_MAX_PER_PASS)
            break;
    }
    if (purged) {
        jz_log_info("jobs", "purged %zu job(s) finished more than %lld days ago (their "
                            "accounting is kept)", purged,
                    (long long)(srv->cfg.retention_s / 86400));
        jz_server_request_commit(srv);
    }
    return purged;
}

static void on_purge(evutil_socket_t fd, short what, void *arg)
{
    struct jz_jobs *jobs = arg;
    size_t n = jz_jobs_purge_expired(jobs, jz_time_now_ms());
    /* A full pass: more may be waiting (soon, to spread the work). */
    struct timeval tv = {.tv_sec = n >= PURGE_MAX_PER_PASS ? 1 : PURGE_EVERY_S};
    evtimer_add(jobs->purge_timer, &tv);
    (void)fd;
    (void)what;
}

int jz_jobs_retention_start(struct jz_jobs *jobs)
{
    jobs->purge_timer = evtimer_new(jobs->srv->base, on_purge, jobs);
    if (!jobs->purge_timer)
        return JZ_ENOMEM;
    struct timeval tv = {.tv_sec = 1}; /* soon after start, then hourly */
    return evtimer_add(jobs->purge_timer, &tv) == 0 ? 0 : JZ_EIO;
}
