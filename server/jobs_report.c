/* Usage reports (GET /v1/reports/usage, `jazari report usage`): the finished jobs of a period
 * grouped by tenant, user, plugin, GPU model or site, with jobs, GPU-hours, run time and wait
 * times, from the job table (purged jobs are gone from it; the credit ledger keeps what they
 * were charged). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "server/auth.h"
#include "server/jobs_internal.h"

struct group {
    size_t jobs;
    double gpu_seconds, run_s;
    double *waits; /* seconds */
    size_t nwaits, cap;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The value of the dimension for a job; sites from the scheduler's nodes (site_of). */
static const char *key_of(const struct jz_job *job, const char *by, const json_t *site_of)
{
    if (strcmp(by, "tenant") == 0)
        return job->tenant;
    if (strcmp(by, "user") == 0)
        return job->user;
    if (strcmp(by, "plugin") == 0)
        return jz_json_str(job->request, "plugin", "?");
    if (strcmp(by, "model") == 0)
        return job->view_ngpus ? job->view_gpus[0].model : "(no GPU)";
    const char *node = job->view_nnodes ? job->view_nodes[0] : NULL;
    return node ? jz_json_str(site_of, node, "?") : "(not run)";
}

static json_t *sites_of_nodes(struct jz_sched *s)
{
    json_t *m = json_object();
    for (size_t i = 0; i < jz_sched_node_count(s); i++) {
        struct jz_sched_node_info info;
        if (jz_sched_node_info(s, i, &info, NULL) == 0 && info.name)
            json_object_set_new(m, info.name, json_string(info.site ? info.site : "default"));
    }
    return m;
}

static double percentile(const double *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)ceil(p * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

bool jz_jobs_report_dimension_ok(const char *by)
{
    static const char *const dims[] = {"tenant", "user", "plugin", "model", "site", NULL};
    for (size_t i = 0; by && dims[i]; i++)
        if (strcmp(by, dims[i]) == 0)
            return true;
    return false;
}

double jz_jobs_reservation_gpu_hours(struct jz_jobs *jobs, const char *name, int64_t start,
                                     int64_t end, int64_t until)
{
    double used = 0;
    for (int64_t id = 1; id <= jobs->max_id && (size_t)id < jobs->cap; id++) {
        const struct jz_job *job = jobs->by_id[id];
        if (!job || !job->start_wall_ms)
            continue;
        const char *resv = jz_json_str(job->request, "reservation", NULL);
        if (!resv || strcmp(resv, name) != 0)
            continue;
        int64_t from = job->start_wall_ms / 1000, to = job->end_ms ? job->end_ms / 1000 : until;
        if (from < start)
            from = start;
        if (to > until)
            to = until;
        if (to > end)
            to = end;
        if (to > from)
            used += (double)job->req.gpus * (job->nodes ? job->nodes : 1) * (double)(to - from) /
                    3600.0;
    }
    return used;
}

json_t *jz_jobs_usage_report(struct jz_jobs *jobs, const struct jz_user *user, const char *by,
                             const char *tenant, int64_t since_ms, int64_t until_ms)
{
    json_t *site_of = sites_of_nodes(jobs->srv->sched);
    json_t *index = json_object(); /* key -> position in groups */
    struct group *groups = NULL;
    size_t ngroups = 0, cap = 0;
    bool oom = false;
    for (int64_t id = 1; id <= jobs->max_id && (size_t)id < jobs->cap && !oom; id++) {
        const struct jz_job *job = jobs->by_id[id];
        if (!job || job->state == JZ_JOB_PENDING || job->state == JZ_JOB_RUNNING)
            continue;
        if (!job->end_ms || job->end_ms < since_ms || job->end_ms >= until_ms)
            continue;
        if (!jz_job_visible_to(job, user) || (tenant && strcmp(job->tenant, tenant) != 0))
            continue;
        const char *key = key_of(job, by, site_of);
        json_t *at = json_object_get(index, key);
        size_t g;
        if (at) {
            g = (size_t)json_integer_value(at);
        } else {
            if (ngroups == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                struct group *grown = realloc(groups, ncap * sizeof *grown);
                if (!grown) {
                    oom = true;
                    break;
                }
                groups = grown;
                cap = ncap;
            }
            g = ngroups++;
            memset(&groups[g], 0, sizeof groups[g]);
            json_object_set_new(index, key, json_integer((json_int_t)g));
        }
        struct group *gr = &groups[g];
        gr->jobs++;
        gr->gpu_seconds += job->gpu_seconds;
        if (job->start_wall_ms && job->end_ms >= job->start_wall_ms)
            gr->run_s += (double)(job->end_ms - job->start_wall_ms) / 1000.0;
        if (job->start_wall_ms && job->submit_ms && job->start_wall_ms >= job->submit_ms) {
            if (gr->nwaits == gr->cap) {
                size_t ncap = gr->cap ? gr->cap * 2 : 16;
                double *grown = realloc(gr->waits, ncap * sizeof *grown);
                if (!grown) {
                    oom = true;
                    break;
                }
                gr->waits = grown;
                gr->cap = ncap;
            }
            gr->waits[gr->nwaits++] = (double)(job->start_wall_ms - job->submit_ms) / 1000.0;
        }
    }
    json_t *rows = json_array();
    const char *key;
    json_t *at;
    json_object_foreach(index, key, at) {
        struct group *gr = &groups[json_integer_value(at)];
        qsort(gr->waits, gr->nwaits, sizeof *gr->waits, cmp_double);
        double sum = 0;
        for (size_t i = 0; i < gr->nwaits; i++)
            sum += gr->waits[i];
        json_array_append_new(
            rows, json_pack("{s:s, s:I, s:f, s:f, s:{s:f, s:f, s:f, s:f}}", "key", key, "jobs",
                            (json_int_t)gr->jobs, "gpu_hours", gr->gpu_seconds / 3600.0,
                            "run_hours", gr->run_s / 3600.0, "wait_s", "mean",
                            gr->nwaits ? sum / (double)gr->nwaits : 0.0, "p50",
                            percentile(gr->waits, gr->nwaits, 0.5), "p95",
                            percentile(gr->waits, gr->nwaits, 0.95), "max",
                            gr->nwaits ? gr->waits[gr->nwaits - 1] : 0.0));
    }
    for (size_t i = 0; i < ngroups; i++)
        free(groups[i].waits);
    free(groups);
    json_decref(index);
    json_decref(site_of);
    if (oom) {
        json_decref(rows);
        return NULL;
    }
    return json_pack("{s:s, s:o}", "by", by, "rows", rows);
}
