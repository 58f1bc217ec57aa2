/* The gate in front of the scheduler: a pending job is handed to the scheduler only when
 * nothing of the service's own holds it back. Three things may:
 *   - a hold (`jazari hold`, or submitted with "hold"), until it is released;
 *   - its dependencies (after, afterok, afternotok, afterany on a job or a whole array), until
 *     each is met; one that can never be met fails the job, naming it;
 *   - its array's throttle ("0-99%10"): at most that many elements in the scheduler or
 *     running at once;
 *   - its tenant's credit: a metered tenant that cannot cover the run's hold (jobs_billing.c).
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

enum gate { GATE_OPEN, GATE_HELD, GATE_DEPENDENCY, GATE_THROTTLE, GATE_CREDITS, GATE_NEVER };

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
 * dependency on an array's id is on all its elements, as in Slurm, read from the counts its
 * first element keeps: one element that can never meet it fails it at once. */
static enum jz_dep_state dep_check(const struct jz_job *job, const struct jz_job_dep *d,
                                   char *why, size_t len)
{
    const struct jz_job *t = jz_jobs_find(job->jobs, d->job);
    const char *type = jz_dep_type_name(d->type);
    static const char *const verbs[] = {"start", "succeed", "fail", "end"};
    const char *verb = d->type < 4 ? verbs[d->type] : "end";
    if (!t) {
        snprintf(why, len, "job %lld no longer exists (%s)", (long long)d->job, type);
        return JZ_DEP_NEVER;
    }
    if (!(t->array_id == t->id && t->array_count > 1)) {
        enum jz_dep_state s = dep_on(t, d->type);
        if (s == JZ_DEP_NEVER)
            snprintf(why, len, "job %lld ended %s (%s)", (long long)t->id,
                     jz_job_state_name(t->state), type);
        else if (s == JZ_DEP_WAITING)
            snprintf(why, len, "waiting for job %lld to %s (%s)", (long long)t->id, verb, type);
        return s;
    }
    unsigned n = t->array_count, bad = t->array_ended - t->array_ok;
    bool never = (d->type == JZ_DEP_OK && bad > 0) || (d->type == JZ_DEP_NOTOK && t->array_ok);
    bool met = d->type == JZ_DEP_AFTER  ? t->array_begun >= n
               : d->type == JZ_DEP_OK    ? t->array_ok >= n
               : d->type == JZ_DEP_NOTOK ? bad >= n
                                         : t->array_ended >= n;
    if (never) {
        snprintf(why, len, "%u element%s of array %lld %s (%s)",
                 d->type == JZ_DEP_OK ? bad : t->array_ok,
                 (d->type == JZ_DEP_OK ? bad : t->array_ok) == 1 ? "" : "s", (long long)t->id,
                 d->type == JZ_DEP_OK ? "ended without success" : "succeeded", type);
        return JZ_DEP_NEVER;
    }
    if (!met) {
        unsigned done = d->type == JZ_DEP_AFTER ? t->array_begun
                        : d->type == JZ_DEP_OK  ? t->array_ok
                        : d->type == JZ_DEP_NOTOK ? bad
                                                  : t->array_ended;
        snprintf(why, len, "waiting for array %lld to %s: %u of %u elements (%s)",
                 (long long)t->id, verb, done, n, type);
        return JZ_DEP_WAITING;
    }
    return JZ_DEP_SATISFIED;
}

/* What holds the job back now, with one sentence why. When met is not NULL, the dependencies
 * found met or never met are written there (met[i] for job->deps[i]), for the caller to
 * record, so that a job purged later does not undo them: a held job's too. A dependency that
 * can never be met fails even a held job (it could never run). */
static enum gate gate_check(const struct jz_job *job, char *why, size_t len, uint8_t *met)
{
    enum gate g = GATE_OPEN;
    char dep_why[256] = "";
    for (unsigned i = 0; i < job->ndeps; i++) {
        const struct jz_job_dep *d = &job->deps[i];
        if (d->state == JZ_DEP_SATISFIED)
            continue;
        char one[256];
        enum jz_dep_state s = dep_check(job, d, one, sizeof one);
        if (met)
            met[i] = (uint8_t)s;
        if (s == JZ_DEP_NEVER) {
            snprintf(why, len, "dependency never satisfied: %s", one);
            return GATE_NEVER;
        }
        if (s == JZ_DEP_WAITING && g == GATE_OPEN) {
            snprintf(dep_why, sizeof dep_why, "%s", one);
            g = GATE_DEPENDENCY;
        }
    }
    if (job->held) {
        snprintf(why, len, "held by %s%s; `jazari release %lld` lets it run",
                 job->held_by[0] ? job->held_by : "a user",
                 job->held_by_admin ? " (an admin)" : "", (long long)job->id);
        return GATE_HELD;
    }
    if (g != GATE_OPEN) {
        snprintf(why, len, "%s", dep_why);
        return g;
    }
    const struct jz_job *leader = array_leader(job);
    if (job->array_throttle && leader && leader->array_active >= job->array_throttle) {
        snprintf(why, len, "%u elements of array %lld are queued or running, its limit",
                 leader->array_active, (long long)job->array_id);
        return GATE_THROTTLE;
    }
    if (jz_jobs_credit_gate(job, why, len))
        return GATE_CREDITS;
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
    case GATE_CREDITS:
        return "credits";
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

/* Counts the element as begun (started once, or ended without starting) in its array. */
static void count_begun(struct jz_job *job, struct jz_job *leader)
{
    if (leader && !job->array_begun_counted) {
        job->array_begun_counted = true;
        leader->array_begun++;
    }
}

void jz_jobs_gate_return(struct jz_job *job)
{
    /* It was counted in its array's throttle when it left the gate: set_gated uncounts it. */
    set_gated(job, true);
    gate_look(job);
}

void jz_jobs_gate_leave(struct jz_job *job, enum jz_job_state s)
{
    struct jz_job *leader = array_leader(job);
    if (job->gated) {
        list_remove(job);
        job->gated = false;
    } else if (leader && leader->array_active) {
        leader->array_active--;
    }
    if (leader) {
        count_begun(job, leader);
        leader->array_ended++;
        if (s == JZ_JOB_SUCCEEDED)
            leader->array_ok++;
    }
    job->jobs->gate_dirty = true;
}

void jz_jobs_gate_started(struct jz_job *job)
{
    count_begun(job, array_leader(job));
    job->jobs->gate_dirty = true;
}

void jz_jobs_gate_loaded(struct jz_job *job)
{
    struct jz_job *leader = array_leader(job);
    if (!leader)
        return;
    bool ended = job->state != JZ_JOB_PENDING && job->state != JZ_JOB_RUNNING;
    if (ended || job->state == JZ_JOB_RUNNING || job->run > 0)
        count_begun(job, leader);
    if (job->state == JZ_JOB_RUNNING)
        leader->array_active++; /* in its array's throttle, whatever its run becomes */
    if (ended) {
        leader->array_ended++;
        if (job->state == JZ_JOB_SUCCEEDED)
            leader->array_ok++;
    }
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

int jz_jobs_set_hold(struct jz_job *job, bool hold, const char *by, bool admin,
                     struct jz_error *err)
{
    if (job->state != JZ_JOB_PENDING)
        return jz_error_set(err, JZ_EBUSY, "job %lld is %s: only a pending job can be %s",
                            (long long)job->id, jz_job_state_name(job->state),
                            hold ? "held" : "released");
    /* As Slurm's admin holds: what an admin held, only an admin releases. */
    if (!hold && job->held && job->held_by_admin && !admin)
        return jz_error_set(err, JZ_EPERM, "job %lld was held by %s, an admin: only an admin "
                                           "may release it",
                            (long long)job->id, job->held_by);
    if (job->held == hold && (!hold || job->held_by_admin || !admin))
        return 0;
    bool was_held = job->held;
    job->held = hold;
    job->held_by_admin = hold && admin;
    jz_strlcpy(job->held_by, hold ? by : "", sizeof job->held_by);
    if (was_held && hold) { /* an admin takes over a user's hold */
        jz_jobs_persist(job, "hold", "held by an admin");
        return 0;
    }
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
