/* The gate in front of the scheduler: a pending job is handed to the scheduler only when
 * nothing of the service's own holds it back. Three things may:
 *   - a hold (`jazari hold`, or submitted with "hold"), until it is released;
 *   - its dependencies (after, afterok, afternotok, afterany on a job or a whole array), until
 *     each is met; one that can never be met fails the job, naming it;
 *   - its array's throttle ("0-99%10"): at most that many elements in the scheduler or
 *     running at once.
 * Gated jobs are PENDING and count against the user's pending limit, but the scheduler never
 * sees them, so they cost its passes nothing. They are kept in one list by id; the list is
 * walked again (jz_jobs_gate_run) only after a job started or ended, once per decision, so the
 * cost is one look per gated job per batch of events, never per event. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/jobs_internal.h"

static const char *const dep_types[] = {"after", "afterok", "afternotok", "afterany"};
static const char *const dep_states[] = {"waiting", "satisfied", "never"};

const char *jz_dep_type_name(unsigned t)
{
    return t < 4 ? dep_types[t] : "?";
}

int jz_dep_type_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, dep_types[i]) == 0)
            return i;
    return -1;
}

const char *jz_dep_state_name(unsigned s)
{
    return s < 3 ? dep_states[s] : "?";
}

static bool is_final(enum jz_job_state s)
{
    return s != JZ_JOB_PENDING && s != JZ_JOB_RUNNING;
}

/* The array's first element, which counts its active elements; NULL when it is gone. */
static struct jz_job *array_leader(const struct jz_job *job)
{
    if (!job->array_id)
        return NULL;
    struct jz_job *l = jz_jobs_find(job->jobs, job->array_id);
    return l && l->array_id == l->id ? l : NULL;
}

/* --- the list of gated jobs, by id ---------------------------------------------------------- */

static void list_insert(struct jz_job *job)
{
    struct jz_jobs *jobs = job->jobs;
    struct jz_job *after = jobs->gated_tail; /* new jobs have the highest ids: O(1) then */
    while (after && after->id > job->id)
        after = after->gate_prev;
    job->gate_prev = after;
    job->gate_next = after ? after->gate_next : jobs->gated_head;
    if (job->gate_next)
        job->gate_next->gate_prev = job;
    else
        jobs->gated_tail = job;
    if (after)
        after->gate_next = job;
    else
        jobs->gated_head = job;
}

static void list_remove(struct jz_job *job)
{
    struct jz_jobs *jobs = job->jobs;
    if (job->gate_prev)
        job->gate_prev->gate_next = job->gate_next;
    else
        jobs->gated_head = job->gate_next;
    if (job->gate_next)
        job->gate_next->gate_prev = job->gate_prev;
    else
        jobs->gated_tail = job->gate_prev;
    job->gate_prev = job->gate_next = NULL;
}

/* Moves the job behind (gated) or out of the gate, keeping its array's count. */
static void set_gated(struct jz_job *job, bool gated)
{
    if (job->gated == gated)
        return;
    struct jz_job *leader = array_leader(job);
    job->gated = gated;
    if (gated) {
        list_insert(job);
        if (leader && leader->array_active)
            leader->array_active--;
    } else {
        list_remove(job);
        if (leader)
            leader->array_active++;
    }
}

/* --- what holds a job back ---------------------------------------------------------------- */

enum gate { GATE_OPEN, GATE_HELD, GATE_DEPENDENCY, GATE_THROTTLE, GATE_NEVER };

/* Whether one job t meets a dependency of type type now. */
static enum jz_dep_state dep_on(const struct jz_job *t, unsigned type)
{
    bool ended = is_final(t->state), ok = t->state == JZ_JOB_SUCCEEDED;
    switch (type) {
    case JZ_DEP_AFTER: /* started once (a requeued job has), or ended without starting */
        return t->state != JZ_JOB_PENDING || t->run > 0 ? JZ_DEP_SATISFIED : JZ_DEP_WAITING;
    case JZ_DEP_OK:
        return !ended ? JZ_DEP_WAITING : ok ? JZ_DEP_SATISFIED : JZ_DEP_NEVER;
    case JZ_DEP_NOTOK:
        return !ended ? JZ_DEP_WAITING : ok ? JZ_DEP_NEVER : JZ_DEP_SATISFIED;
    default:
        return ended ? JZ_DEP_SATISFIED : JZ_DEP_WAITING;
    }
}

/* Looks at dependency d of job: its state now, and on NEVER or WAITING one sentence why. A
 * dependency on an array's id is on all its elements, as in Slurm: one element that can never
 * meet it fails it at once. quick: stop at the first element that waits. */
static enum jz_dep_state dep_check(const struct jz_job *job, const struct jz_job_dep *d,
                                   char *why, size_t len, bool quick)
{
    struct jz_jobs *jobs = job->jobs;
    const struct jz_job *t = jz_jobs_find(jobs, d->job);
    const char *type = jz_dep_type_name(d->type);
    if (!t) {
        snprintf(why, len, "job %lld no longer exists (%s)", (long long)d->job, type);
        return JZ_DEP_NEVER;
    }
    int64_t first = t->id, n = 1;
    if (t->array_id == t->id && t->array_count > 1)
        n = t->array_count;
    enum jz_dep_state all = JZ_DEP_SATISFIED;
    for (int64_t id = first; id < first + n; id++) {
        const struct jz_job *e = jz_jobs_find(jobs, id);
        if (!e || e->array_id != (n > 1 ? first : e->array_id))
            continue; /* an element purged by retention long after it ended */
        enum jz_dep_state s = dep_on(e, d->type);
        if (s == JZ_DEP_NEVER) {
            snprintf(why, len, "job %lld ended %s (%s)", (long long)e->id,
                     jz_job_state_name(e->state), type);
            return JZ_DEP_NEVER;
        }
        if (s == JZ_DEP_WAITING && all == JZ_DEP_SATISFIED) {
            all = JZ_DEP_WAITING;
            snprintf(why, len, "waiting for job %lld%s to %s (%s)", (long long)e->id,
                     n > 1 ? " of its array" : "",
                     d->type == JZ_DEP_AFTER  ? "start"
                     : d->type == JZ_DEP_OK   ? "succeed"
                     : d->type == JZ_DEP_NOTOK ? "fail"
                                              : "end",
                     type);
            if (quick) /* a look for the reason: the first element that waits says it */
                break;
        }
    }
    return all;
}

/* What holds the job back now, with one sentence why. When met is not NULL, the dependencies
 * found met or never met are written there (met[i] for job->deps[i]), for the caller to
 * record, so that a job purged later does not undo them. */
static enum gate gate_check(const struct jz_job *job, char *why, size_t len, uint8_t *met)
{
    if (job->held) {
        snprintf(why, len, "held by %s; `jazari release %lld` lets it run",
                 job->held_by[0] ? job->held_by : "a user", (long long)job->id);
        return GATE_HELD;
    }
    enum gate g = GATE_OPEN;
    for (unsigned i = 0; i < job->ndeps; i++) {
        const struct jz_job_dep *d = &job->deps[i];
        if (d->state == JZ_DEP_SATISFIED)
            continue;
        char one[256];
        enum jz_dep_state s = dep_check(job, d, one, sizeof one, met == NULL);
        if (met)
            met[i] = (uint8_t)s;
        if (s == JZ_DEP_NEVER) {
            snprintf(why, len, "dependency never satisfied: %s", one);
            return GATE_NEVER;
        }
        if (s == JZ_DEP_WAITING && g == GATE_OPEN) {
            snprintf(why, len, "%s", one);
            g = GATE_DEPENDENCY;
        }
    }
    if (g != GATE_OPEN)
        return g;
    const struct jz_job *leader = array_leader(job);
    if (job->array_throttle && leader && leader->array_active >= job->array_throttle) {
        snprintf(why, len, "%u elements of array %lld are queued or running, its limit",
                 leader->array_active, (long long)job->array_id);
        return GATE_THROTTLE;
    }
    return GATE_OPEN;
}

const char *jz_jobs_gate_reason(const struct jz_job *job, char *why, size_t len)
{
    switch (gate_check(job, why, len, NULL)) {
    case GATE_HELD:
        return "held";
    case GATE_DEPENDENCY:
    case GATE_NEVER:
        return "dependency";
    case GATE_THROTTLE:
        return "array_throttle";
    default:
        snprintf(why, len, "queued; not yet considered");
        return "new";
    }
}

/* --- moving jobs through ------------------------------------------------------------------ */

/* Looks at one gated (or new) pending job: hands it over, keeps it, or fails it. */
static void gate_look(struct jz_job *job)
{
    char why[400];
    uint8_t met[JZ_MAX_DEPS];
    for (unsigned i = 0; i < job->ndeps; i++)
        met[i] = job->deps[i].state;
    enum gate g = gate_check(job, why, sizeof why, met);
    bool changed = false;
    for (unsigned i = 0; i < job->ndeps; i++)
        if (met[i] != JZ_DEP_WAITING && met[i] != job->deps[i].state) {
            job->deps[i].state = met[i];
            changed = true;
        }
    if (g == GATE_NEVER) {
        set_gated(job, false);
        jz_jobs_pending_add(job->jobs, job->user, -1);
        jz_jobs_finish(job, JZ_JOB_FAILED, why);
        return;
    }
    if (g != GATE_OPEN) {
        set_gated(job, true);
        if (changed)
            jz_jobs_persist(job, NULL, NULL);
        return;
    }
    set_gated(job, false);
    struct jz_error err = {0};
    if (jz_jobs_sched_submit(job->jobs, job, &err)) {
        /* Refused by the policy (a class removed by a reload, say). */
        jz_jobs_pending_add(job->jobs, job->user, -1);
        jz_jobs_finish(job, JZ_JOB_FAILED, err.msg);
        return;
    }
    if (changed)
        jz_jobs_persist(job, NULL, NULL);
}

void jz_jobs_gate_enter(struct jz_job *job)
{
    /* It counts in its array's throttle from when it leaves the gate. */
    job->gated = true;
    list_insert(job);
    gate_look(job);
}

void jz_jobs_gate_leave(struct jz_job *job)
{
    if (job->gated) {
        list_remove(job);
        job->gated = false;
    } else {
        struct jz_job *leader = array_leader(job);
        if (leader && leader->array_active)
            leader->array_active--;
    }
    job->jobs->gate_dirty = true;
}

void jz_jobs_gate_started(struct jz_job *job)
{
    job->jobs->gate_dirty = true;
}

void jz_jobs_gate_run(struct jz_jobs *jobs)
{
    /* A job failed here (a dependency never met) may free others: look again until calm. A
     * look moves only the job looked at, so the next pointer taken first stays valid. */
    for (int round = 0; jobs->gate_dirty && round < 64; round++) {
        jobs->gate_dirty = false;
        for (struct jz_job *job = jobs->gated_head, *next; job; job = next) {
            next = job->gate_next;
            gate_look(job);
        }
    }
}

int jz_jobs_set_hold(struct jz_job *job, bool hold, const char *by, struct jz_error *err)
{
    if (job->state != JZ_JOB_PENDING)
        return jz_error_set(err, JZ_EBUSY, "job %lld is %s: only a pending job can be %s",
                            (long long)job->id, jz_job_state_name(job->state),
                            hold ? "held" : "released");
    if (job->held == hold)
        return 0;
    job->held = hold;
    jz_strlcpy(job->held_by, hold ? by : "", sizeof job->held_by);
    if (hold && !job->gated) {
        /* Out of the scheduler: a held job costs its passes nothing. */
        struct jz_error serr = {0};
        int rc = jz_sched_cancel(job->jobs->srv->sched, (uint64_t)job->id,
                                 jz_time_steady_epoch_s(), &serr);
        if (rc && rc != JZ_ENOENT)
            jz_log_warn("jobs", "job %lld: scheduler: %s", (long long)job->id, serr.msg);
        set_gated(job, true);
        job->jobs->gate_dirty = true; /* its array's throttle has room */
    } else if (!hold) {
        gate_look(job);
    }
    char detail[200];
    snprintf(detail, sizeof detail, "%s by %s", hold ? "held" : "released", by);
    jz_jobs_persist(job, hold ? "hold" : "release", detail);
    return 0;
}
