/* The cpu backend's thread pool. Workers sleep on a condition variable between jobs instead of
 * spinning like OpenMP's do: spinning threads took cores from OpenBLAS and made the GEMM that
 * follows one of our kernels 2.5x slower on 2 cores. */
#define _GNU_SOURCE
#include "cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#define MAX_THREADS 64

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static size_t nthreads = 1; /* including the calling thread */
static unsigned long generation;
static size_t pending;

static struct {
    jzk_range_fn *fn;
    void *ctx;
    size_t n, chunks;
} job;

static void run_chunk(size_t c)
{
    size_t b = job.n * c / job.chunks, e = job.n * (c + 1) / job.chunks;
    if (b < e)
        job.fn(job.ctx, c, b, e);
}

static void *worker(void *arg)
{
    size_t id = (size_t)(uintptr_t)arg;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (generation == seen)
            pthread_cond_wait(&wake, &lock);
        seen = generation;
        bool mine = id < job.chunks;
        pthread_mutex_unlock(&lock);
        if (!mine)
            continue;
        run_chunk(id);
        pthread_mutex_lock(&lock);
        if (--pending == 0)
            pthread_cond_signal(&done_cv);
        pthread_mutex_unlock(&lock);
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
    if (chunks > threads)
        chunks = threads;
    if (chunks <= 1) {
        if (n)
            fn(ctx, 0, 0, n);
        return;
    }
    pthread_mutex_lock(&run_lock);
    pthread_mutex_lock(&lock);
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.chunks = chunks;
    pending = chunks - 1;
    generation++;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    run_chunk(0);
    pthread_mutex_lock(&lock);
    while (pending)
        pthread_cond_wait(&done_cv, &lock);
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&run_lock);
}
