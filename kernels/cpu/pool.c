/* The cpu backend's thread pool. Between jobs a worker spins for a short while (SPIN_NS) and then
 * sleeps on a condition variable. The spin is what makes a training step's dozen parallel
 * regions cheap: a sleeping worker took 10-30 us to wake, longer than many of the GEMMs it was
 * woken for (784-256-128-10 MLP, batch 128). The spin is bounded, unlike OpenMP's, whose workers
 * spun after each parallel region and took the cores from OpenBLAS's own threads; OpenBLAS now
 * runs single-threaded inside our chunks (cpu.c), so there is nothing left for a spinning worker
 * to take a core from but the job's own code.
 *
 * Chunks are claimed, not assigned: every thread, the caller included, takes the next unclaimed
 * chunk until none is left. A chunk's range and index do not depend on who runs it (so the
 * reductions' per-chunk partials stay deterministic), but a worker that is late -- descheduled
 * on a machine shared with other processes, or still waking up -- no longer holds the job up:
 * the caller runs its chunk instead. With chunks assigned, one preempted worker made every
 * parallel region wait a scheduler time slice, and a training epoch ran 4x slower under load. */
#define _GNU_SOURCE
#include "cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define MAX_THREADS 64
/* How long an idle worker polls for the next job before it sleeps. A training step issues its
 * parallel regions a few to a few tens of microseconds apart; 100 us covers that with room, and
 * a job that has gone quiet costs at most this much of one core per worker. */
#define SPIN_NS 100000L

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;     /* guards sleepers and the wake-up */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static size_t nthreads = 1; /* including the calling thread */
static size_t sleepers;
static uint32_t last_gen; /* under run_lock */

/* The current job's claim word: generation (bits 63-32), chunk count (31-16) and next unclaimed
 * chunk (15-0). A claim is a compare-and-swap of the whole word, so it succeeds only while the
 * job it read is still the current one: a worker that wakes up late sees another generation, or
 * no chunk left, and claims nothing. */
static _Atomic uint64_t state;
static atomic_size_t chunks_done; /* of the current job */

static struct {
    jzk_range_fn *fn;
    void *ctx;
    size_t n, chunks;
} job; /* written before the job's claim word is published; read only under a claim */

static inline uint32_t state_gen(uint64_t s)
{
    return (uint32_t)(s >> 32);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long elapsed_ns(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* Runs unclaimed chunks of job `gen` until there are none (or another job is current). */
static void claim_chunks(uint32_t gen)
{
    for (;;) {
        uint64_t s = atomic_load_explicit(&state, memory_order_acquire);
        size_t chunks = (size_t)(s >> 16 & 0xffff), c = (size_t)(s & 0xffff);
        if (state_gen(s) != gen || c >= chunks)
            return;
        if (!atomic_compare_exchange_weak_explicit(&state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        size_t b = job.n * c / job.chunks, e = job.n * (c + 1) / job.chunks;
        if (b < e)
            job.fn(job.ctx, c, b, e);
        atomic_fetch_add_explicit(&chunks_done, 1, memory_order_release);
    }
}

/* Returns the generation of the next job after `seen`: polled for SPIN_NS, then waited for. */
static uint32_t next_job(uint32_t seen)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned spins = 1;; spins++) {
        uint32_t g = state_gen(atomic_load_explicit(&state, memory_order_acquire));
        if (g != seen)
            return g;
        cpu_relax();
        if (spins % 64 == 0 && elapsed_ns(&t0) > SPIN_NS)
            break;
    }
    pthread_mutex_lock(&lock);
    sleepers++;
    uint32_t g;
    while ((g = state_gen(atomic_load_explicit(&state, memory_order_acquire))) == seen)
        pthread_cond_wait(&wake, &lock);
    sleepers--;
    pthread_mutex_unlock(&lock);
    return g;
}

static void *worker(void *arg)
{
    (void)arg;
    uint32_t seen = 0;
    for (;;) {
        seen = next_job(seen);
        claim_chunks(seen);
    }
    return NULL;
}

/* Threads: OMP_NUM_THREADS when set (the usual knob), else the CPUs this process may run on
 * (the worker binds jobs to their cores). */
static void pool_start(void)
{
    size_t want = 0;
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env)
        want = (size_t)strtoul(env, NULL, 10);
    if (!want) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0)
            want = (size_t)CPU_COUNT(&set);
    }
    if (want < 1)
        want = 1;
    if (want > MAX_THREADS)
        want = MAX_THREADS;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    size_t started = 1;
    for (size_t i = 1; i < want; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker, (void *)(uintptr_t)i) != 0)
            break; /* fewer threads is slower, not wrong */
        started++;
    }
    pthread_attr_destroy(&attr);
    nthreads = started;
}

size_t jzk_pool_threads(void)
{
    pthread_once(&once, pool_start);
    return nthreads;
}

void jzk_parallel_for(size_t n, size_t grain, jzk_range_fn *fn, void *ctx)
{
    size_t threads = jzk_pool_threads();
    size_t chunks = grain ? n / grain : n;
    jzk_parallel_chunks(n, chunks < threads ? chunks : threads, fn, ctx);
}

void jzk_parallel_chunks(size_t n, size_t chunks, jzk_range_fn *fn, void *ctx)
{
    if (chunks > n)
        chunks = n;
    if (chunks > JZK_MAX_CHUNKS)
        chunks = JZK_MAX_CHUNKS;
    if (chunks <= 1 || jzk_pool_threads() <= 1) {
        if (n)
            fn(ctx, 0, 0, n);
        return;
    }
    pthread_mutex_lock(&run_lock);
    /* No worker can be inside the previous job: it ended when all its chunks were done, and a
     * late worker only ever reads the claim word until it holds a claim. */
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.chunks = chunks;
    uint32_t gen = ++last_gen;
    if (gen == 0) /* 0 is every worker's "seen nothing yet" */
        gen = ++last_gen;
    atomic_store_explicit(&chunks_done, 0, memory_order_relaxed);
    atomic_store_explicit(&state, (uint64_t)gen << 32 | (uint64_t)chunks << 16,
                          memory_order_release);
    /* Sleepers are counted under `lock` and check the claim word under it, so a worker between
     * its last poll and its wait cannot miss this job. */
    pthread_mutex_lock(&lock);
    if (sleepers)
        pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    claim_chunks(gen);
    /* Every chunk is claimed; wait for those still running on workers (poll: they are about as
     * long as ours), giving the core away if one takes long (its thread descheduled). */
    for (unsigned spins = 1; atomic_load_explicit(&chunks_done, memory_order_acquire) < chunks;
         spins++) {
        if (spins < 4096)
            cpu_relax();
        else
            sched_yield();
    }
    pthread_mutex_unlock(&run_lock);
}
