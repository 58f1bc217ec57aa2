/* What a job's runs cost (docs/billing.md): a hold of its time limit x GPUs x price when a run
 * starts, the measured use charged and the rest released when it ends; a job that a metered
 * tenant cannot cover waits in the gate with reason "credits", saying how much is missing. A
 * job running in a booked slot ("reservation") is paid by the booking: its runs hold and
 * charge nothing, and record their GPU time all the same. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/time.h"
#include "server/jobs_internal.h"
#include "server/ledger.h"
#include "server/nodes.h"
#include "server/prices.h"
#include "server/tenants.h"

#define ALIVE_FILE "alive"

static const char *tenant_class(const struct jz_job *job)
{
    struct jz_server *srv = job->jobs->srv;
    return srv->tenants ? jz_tenants_class(srv->tenants, job->tenant) : NULL;
}

static bool paid_by_booking(const struct jz_job *job)
{
    json_t *r = json_object_get(job->request, "reservation");
    return r && !json_is_null(r);
}

static unsigned job_gpus(const struct jz_job *job)
{
    return job->req.gpus * (job->nodes ? job->nodes : 1);
}

void jz_jobs_run_ref(const struct jz_job *job, char *buf, size_t len)
{
    snprintf(buf, len, "job:%lld:%lld", (long long)job->id, (long long)job->run);
}

double jz_jobs_credit_estimate(const struct jz_job *job, double *price)
{
    double p = jz_prices_per_gpu_hour(job->jobs->srv, job->model, tenant_class(job));
    if (price)
        *price = p;
    if (paid_by_booking(job))
        return 0;
    return p * job_gpus(job) * (double)job->time_limit_s / 3600.0;
}

const char *jz_jobs_credit_gate(const struct jz_job *job, char *why, size_t len)
{
    struct jz_ledger *l = job->jobs->srv->ledger;
    if (!l || !jz_ledger_metered(l, job->tenant))
        return NULL;
    double price;
    double estimate = jz_jobs_credit_estimate(job, &price);
    double need = job->credit_needed > estimate ? job->credit_needed : estimate;
    double avail = jz_ledger_available(l, job->tenant);
    if (need <= 0 || need <= avail)
        return NULL;
    double have = avail > 0 ? avail : 0;
    if (need > estimate) /* placed on dearer GPUs than estimated */
        snprintf(why, len,
                 "tenant %s needs %.4f credits to start it (%u GPUs x %.4g h at the price of "
                 "the GPUs it was placed on) and has %.4f available: %.4f missing",
                 job->tenant, need, job_gpus(job), (double)job->time_limit_s / 3600.0, have,
                 need - have);
    else
        snprintf(why, len,
                 "tenant %s needs %.4f credits to start it (%u GPUs x %.4g h at %.4g a "
                 "GPU-hour) and has %.4f available: %.4f missing",
                 job->tenant, need, job_gpus(job), (double)job->time_limit_s / 3600.0, price,
                 have, need - have);
    return "credits";
}

/* The GPU model a START placed the job on (its first GPU's), "" for a CPU-only job. */
static const char *placed_model(struct jz_jobs *jobs, const struct jz_sched_decision *d,
                                unsigned *gpus)
{
    const char *model = "";
    *gpus = 0;
    for (size_t k = 0; k < d->part_count; k++) {
        const struct jz_sched_part *p = &d->parts[k];
        *gpus += (unsigned)p->place.gpu_count;
        if (!*model && p->place.gpu_count) {
            const struct jz_topo_gpu *g =
                jz_topo_gpu_at(jz_nodes_topo(jobs->srv->nodes, p->node), p->place.gpus[0]);
            model = g ? g->model : "";
        }
    }
    return model;
}

int jz_jobs_credit_hold(struct jz_job *job, const struct jz_sched_decision *d)
{
    struct jz_jobs *jobs = job->jobs;
    struct jz_ledger *l = jobs->srv->ledger;
    job->run_price = 0;
    if (!l)
        return 0;
    unsigned gpus;
    const char *model = placed_model(jobs, d, &gpus);
    if (!gpus) { /* a CPU-only run costs nothing and uses no GPU-hours: no entries */
        job->credit_needed = 0;
        return 0;
    }
    double price = paid_by_booking(job)
                       ? 0
                       : jz_prices_per_gpu_hour(jobs->srv, model, tenant_class(job));
    double amount = price * gpus * (double)job->time_limit_s / 3600.0;
    char ref[64], why[200];
    jz_jobs_run_ref(job, ref, sizeof ref);
    snprintf(why, sizeof why, "%u GPUs%s%s for %lld s at %.4f a GPU-hour", gpus,
             *model ? " of " : "", model, (long long)job->time_limit_s, price);
    struct jz_error err = {0};
    int rc = jz_ledger_hold(l, job->tenant, ref, amount, job->user, why, false, &err);
    if (rc == JZ_EAGAIN) {
        job->credit_needed = amount;
        jz_log_info("jobs", "job %lld waits for credit: %s", (long long)job->id, err.msg);
        return rc;
    }
    if (rc && rc != JZ_EEXIST)
        jz_log_error("jobs", "job %lld: ledger: %s", (long long)job->id, err.msg);
    job->credit_needed = 0;
    job->run_price = price;
    return 0;
}

void jz_jobs_credit_settle(struct jz_job *job, double gpu_seconds, const char *why)
{
    struct jz_ledger *l = job->jobs->srv->ledger;
    if (!l)
        return;
    char ref[64];
    jz_jobs_run_ref(job, ref, sizeof ref);
    struct jz_ledger_use use = {.gpu_seconds = gpu_seconds,
                                .plugin = jz_json_str(job->request, "plugin", "?"),
                                .job_id = job->id};
    struct jz_error err = {0};
    double charge = job->run_price * gpu_seconds / 3600.0;
    if (jz_ledger_settle(l, job->tenant, ref, charge > 0 ? charge : 0, &use, "jazarid", why,
                         &err))
        jz_log_error("jobs", "job %lld: ledger: %s", (long long)job->id, err.msg);
}

void jz_jobs_credit_adopt(struct jz_job *job)
{
    struct jz_ledger *l = job->jobs->srv->ledger;
    char ref[64];
    jz_jobs_run_ref(job, ref, sizeof ref);
    if (!l || !job_gpus(job) || jz_ledger_held(l, ref, NULL))
        return;
    /* A run started before holds were kept: held now, so that its end is charged. */
    double price;
    double amount = jz_jobs_credit_estimate(job, &price);
    job->run_price = paid_by_booking(job) ? 0 : price;
    struct jz_error err = {0};
    if (jz_ledger_hold(l, job->tenant, ref, amount, job->user, "a run adopted at start-up",
                       true, &err) &&
        err.code != JZ_EEXIST)
        jz_log_error("jobs", "job %lld: ledger: %s", (long long)job->id, err.msg);
}

void jz_jobs_credit_changed(struct jz_jobs *jobs)
{
    jobs->gate_dirty = true;
    jz_server_request_commit(jobs->srv);
}

/* --- how long the service was up: lost runs are charged until then ------------------------- */

void jz_jobs_alive_touch(struct jz_jobs *jobs)
{
    /* At most once a second, from the batches' path: a lost run is charged to within that. */
    int64_t now = jz_time_mono_ms();
    if (jobs->alive_touched_ms && now - jobs->alive_touched_ms < 1000)
        return;
    jobs->alive_touched_ms = now;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", jobs->srv->cfg.state_dir, ALIVE_FILE);
    int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || futimens(fd, NULL) != 0)
        jz_log_warn("jobs", "cannot touch %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

int64_t jz_jobs_alive_last_ms(const struct jz_jobs *jobs)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", jobs->srv->cfg.state_dir, ALIVE_FILE);
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}
