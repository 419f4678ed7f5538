/*
 * test_parallel.c - the job runner on libuv's pool: argument checks, the pool size it sets, zero
 * jobs, many jobs (every done exactly once, on the submitting thread), at most max_inflight jobs in
 * flight, the first failure stopping the rest (queued jobs skipped without running, submit
 * refused with the first error, the errors collected and counted), a job that gives up as
 * interrupted, cancel by the producer, poll, and free waiting for running jobs.
 *
 * The pool is the process's: main() fixes its size (POOL) before the first runner exists.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/parallel.h"

#define POOL 20

static pthread_t main_thread;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A gate jobs wait at until the test opens it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
}

static void gate_wait(gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

/* Shared by the jobs of one test. */
typedef struct {
    atomic_int running, max_running, started, runs;
    atomic_long sum;
    int done_calls, done_ok, done_interrupted, done_failed, done_off_thread;
    int submitted;
    int max_outstanding; /* submitted and not done, seen from the submitting thread */
    gate g, g2;
    wv_parallel *p;
} world;

typedef enum {
    J_ADD,           /* add value to sum after sleep_ms */
    J_FAIL,          /* sleep, then fail with WV_EIO "job N failed" */
    J_FAIL_SILENT,   /* fail without filling err */
    J_BLOCK,         /* wait at the gate, then succeed */
    J_BLOCK_FAIL,    /* wait at the gate, then fail */
    J_GATE2_FAIL,    /* wait at the second gate, then fail with WV_EIO */
    J_UNTIL_STOPPED, /* run until the runner is stopped, then give up */
    J_INTERRUPTED,   /* give up on its own as interrupted */
} job_kind;

typedef struct {
    world *w;
    job_kind kind;
    int id;
    int sleep;
    long value;
    int rc;      /* what done got */
    wv_err err;  /* what done got */
    int dones;   /* how often done was called */
    int did_run; /* run was called */
} job;

static void world_init(world *w)
{
    memset(w, 0, sizeof(*w));
    gate_init(&w->g);
    gate_init(&w->g2);
}

static int job_run(void *arg, wv_err *err)
{
    job *j = arg;
    world *w = j->w;
    j->did_run = 1;
    atomic_fetch_add(&w->runs, 1);
    atomic_fetch_add(&w->started, 1);
    int now = atomic_fetch_add(&w->running, 1) + 1;
    int m = atomic_load(&w->max_running);
    while (now > m && !atomic_compare_exchange_weak(&w->max_running, &m, now))
        ;
    int rc = 0;
    switch (j->kind) {
    case J_ADD:
        if (j->sleep)
            sleep_ms(j->sleep);
        atomic_fetch_add(&w->sum, j->value);
        break;
    case J_FAIL:
        if (j->sleep)
            sleep_ms(j->sleep);
        rc = wv_err_set(err, WV_EIO, "job %d failed", j->id);
        wv_err_hint(err, "hint of job %d", j->id);
        break;
    case J_FAIL_SILENT:
        rc = WV_ECORRUPT;
        break;
    case J_BLOCK:
        gate_wait(&w->g);
        break;
    case J_BLOCK_FAIL:
        gate_wait(&w->g);
        rc = wv_err_set(err, WV_EUNREACHABLE, "job %d failed", j->id);
        break;
    case J_GATE2_FAIL:
        gate_wait(&w->g2);
        rc = wv_err_set(err, WV_EIO, "job %d failed", j->id);
        break;
    case J_UNTIL_STOPPED:
        while (!wv_parallel_stopped(w->p))
            sleep_ms(1);
        rc = wv_err_set(err, WV_EINTERRUPTED, "job %d gave up", j->id);
        break;
    case J_INTERRUPTED:
        rc = wv_err_set(err, WV_EINTERRUPTED, "job %d was interrupted", j->id);
        break;
    }
    atomic_fetch_sub(&w->running, 1);
    return rc;
}

static void job_done(void *arg, int rc, const wv_err *err)
{
    job *j = arg;
    world *w = j->w;
    j->dones++;
    j->rc = rc;
    j->err = *err;
    w->done_calls++;
    if (!pthread_equal(pthread_self(), main_thread))
        w->done_off_thread++;
    if (rc == 0)
        w->done_ok++;
    else if (rc == WV_EINTERRUPTED)
        w->done_interrupted++;
    else
        w->done_failed++;
}

static int submit(world *w, job *j, wv_err *err)
{
    int rc = wv_parallel_submit(w->p, job_run, job_done, j, err);
    if (rc == 0) {
        w->submitted++;
        int out = w->submitted - w->done_calls;
        if (out > w->max_outstanding)
            w->max_outstanding = out;
    }
    return rc;
}

static void wait_until_started(world *w, int n)
{
    for (int i = 0; i < 10000 && atomic_load(&w->started) < n; i++)
        sleep_ms(1);
    assert_int_equal(atomic_load(&w->started), n);
}

/* First of all tests: the runner sets the pool size when nobody did. */
static void test_new_sets_pool_size(void **state)
{
    (void)state;
    unsetenv("UV_THREADPOOL_SIZE");
    wv_parallel *p = NULL;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_new(POOL, 4, &p, &err), 0);
    assert_non_null(p);
    assert_string_equal(getenv("UV_THREADPOOL_SIZE"), "20");
    wv_parallel_free(p);
    /* set already: left alone */
    assert_int_equal(wv_parallel_new(3, 4, &p, &err), 0);
    assert_string_equal(getenv("UV_THREADPOOL_SIZE"), "20");
    wv_parallel_free(p);
}

static void test_new_invalid(void **state)
{
    (void)state;
    static const struct {
        int workers, inflight;
        const char *msg;
    } bad[] = {
        {0, 1, "invalid parallelism: 0 workers, 1 jobs in flight"},
        {129, 1, "invalid parallelism: 129 workers, 1 jobs in flight"},
        {-1, 4, "invalid parallelism: -1 workers, 4 jobs in flight"},
        {4, 0, "invalid parallelism: 4 workers, 0 jobs in flight"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wv_parallel *p = (wv_parallel *)(uintptr_t)0x1;
        wv_err err;
        wv_err_clear(&err);
        assert_int_equal(wv_parallel_new(bad[i].workers, bad[i].inflight, &p, &err), WV_EUSAGE);
        assert_string_equal(err.msg, bad[i].msg);
        assert_ptr_equal(p, (wv_parallel *)(uintptr_t)0x1);
    }
    wv_parallel *p = NULL;
    wv_err err;
    assert_int_equal(wv_parallel_new(128, 1, &p, &err), 0);
    wv_parallel_free(p);
    assert_int_equal(wv_parallel_new(1, 1000, &p, &err), 0);
    wv_parallel_free(p);
    wv_parallel_free(NULL);
}

static void test_zero_jobs(void **state)
{
    (void)state;
    wv_parallel *p;
    wv_err err;
    assert_int_equal(wv_parallel_new(4, 4, &p, &err), 0);
    wv_parallel_poll(p);
    assert_false(wv_parallel_stopped(p));
    wv_err_set(&err, WV_EIO, "stale");
    assert_int_equal(wv_parallel_wait(p, &err), 0);
    assert_int_equal(wv_parallel_nerrors(p), 0);
    assert_null(wv_parallel_error(p, 0));
    assert_int_equal(wv_parallel_wait(p, NULL), 0); /* again, and without a record */
    wv_parallel_free(p);
}

static void test_many_jobs(void **state)
{
    (void)state;
    enum { N = 5000 };
    world w;
    world_init(&w);
    job *jobs = calloc(N, sizeof(*jobs));
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_new(POOL, 16, &w.p, &err), 0);
    long want = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){.w = &w, .kind = J_ADD, .id = i, .value = i + 1};
        want += i + 1;
        assert_int_equal(submit(&w, &jobs[i], &err), 0);
    }
    assert_int_equal(wv_parallel_wait(w.p, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(atomic_load(&w.sum), want);
    assert_int_equal(w.done_calls, N);
    assert_int_equal(w.done_ok, N);
    assert_int_equal(w.done_off_thread, 0);
    assert_true(w.max_outstanding <= 16);
    for (int i = 0; i < N; i++) {
        if (jobs[i].dones != 1 || !jobs[i].did_run || jobs[i].rc != 0)
            fail_msg("job %d: done %d times, ran %d, rc %d", i, jobs[i].dones, jobs[i].did_run,
                     jobs[i].rc);
    }
    assert_int_equal(wv_parallel_nerrors(w.p), 0);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
    free(jobs);
}

/* N in flight at most: never more jobs running (nor submitted and not done) than max_inflight,
 * although the pool has more threads; and the limit is actually used. */
static void test_max_inflight(void **state)
{
    (void)state;
    static const int limits[] = {1, 3, 7};
    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        int limit = limits[l];
        enum { N = 40 };
        world w;
        world_init(&w);
        job jobs[N];
        wv_err err;
        assert_int_equal(wv_parallel_new(POOL, limit, &w.p, &err), 0);
        for (int i = 0; i < N; i++) {
            jobs[i] = (job){.w = &w, .kind = J_ADD, .id = i, .sleep = 10, .value = 1};
            assert_int_equal(submit(&w, &jobs[i], &err), 0);
            /* the submitting thread blocks while the limit is reached */
            assert_true(w.submitted - w.done_calls <= limit);
        }
        assert_int_equal(wv_parallel_wait(w.p, &err), 0);
        assert_int_equal(atomic_load(&w.sum), N);
        if (atomic_load(&w.max_running) > limit)
            fail_msg("limit %d: %d jobs ran at once", limit, atomic_load(&w.max_running));
        assert_true(w.max_outstanding <= limit);
        /* 10 ms jobs and a pool of 20: the runner does fill its slots */
        if (limit > 1 && atomic_load(&w.max_running) < 2)
            fail_msg("limit %d: jobs never overlapped", limit);
        wv_parallel_free(w.p);
        gate_destroy(&w.g);
        gate_destroy(&w.g2);
    }
}

/* Serial jobs: the one after a failure is refused at submit with the first error; done is not
 * called for it, and it never runs. */
static void test_submit_after_failure(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    job ok = {.w = &w, .kind = J_ADD, .value = 5};
    job bad = {.w = &w, .kind = J_FAIL, .id = 2};
    job later = {.w = &w, .kind = J_ADD, .value = 100};
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_new(4, 1, &w.p, &err), 0);
    assert_int_equal(submit(&w, &ok, &err), 0);
    assert_int_equal(submit(&w, &bad, &err), 0);
    /* the slot frees when bad is done: by then the runner knows it failed */
    int rc = submit(&w, &later, &err);
    assert_int_equal(rc, WV_EIO);
    assert_int_equal(err.code, WV_EIO);
    assert_string_equal(err.msg, "job 2 failed");
    assert_string_equal(err.hint, "hint of job 2");
    assert_true(wv_parallel_stopped(w.p));
    assert_int_equal(later.dones, 0);
    assert_false(later.did_run);
    /* and again */
    wv_err_clear(&err);
    assert_int_equal(submit(&w, &later, &err), WV_EIO);
    assert_string_equal(err.msg, "job 2 failed");

    wv_err_clear(&err);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_EIO);
    assert_string_equal(err.msg, "job 2 failed");
    assert_int_equal(ok.dones, 1);
    assert_int_equal(ok.rc, 0);
    assert_int_equal(bad.dones, 1);
    assert_int_equal(bad.rc, WV_EIO);
    assert_string_equal(bad.err.msg, "job 2 failed");
    assert_int_equal(atomic_load(&w.sum), 5);
    assert_int_equal(wv_parallel_nerrors(w.p), 1);
    assert_string_equal(wv_parallel_error(w.p, 0)->msg, "job 2 failed");
    assert_int_equal(wv_parallel_error(w.p, 0)->code, WV_EIO);
    assert_null(wv_parallel_error(w.p, 1));
    assert_int_equal(w.done_off_thread, 0);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* The first failure stops the rest: jobs queued behind it are skipped (run is not called, done
 * gets WV_EINTERRUPTED), jobs already running finish, wait returns the failure. */
static void test_first_failure_skips_queued(void **state)
{
    (void)state;
    enum { NBLOCK = POOL - 1, NQUEUED = 12 };
    world w;
    world_init(&w);
    job block[NBLOCK], queued[NQUEUED];
    job bad = {.w = &w, .kind = J_GATE2_FAIL, .id = 99};
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_new(POOL, 64, &w.p, &err), 0);
    for (int i = 0; i < NBLOCK; i++) {
        block[i] = (job){.w = &w, .kind = J_BLOCK, .id = i};
        assert_int_equal(submit(&w, &block[i], &err), 0);
    }
    wait_until_started(&w, NBLOCK);
    /* the last pool thread takes bad (first in the queue); the others queue behind it */
    assert_int_equal(submit(&w, &bad, &err), 0);
    wait_until_started(&w, NBLOCK + 1);
    for (int i = 0; i < NQUEUED; i++) {
        queued[i] = (job){.w = &w, .kind = J_ADD, .id = 100 + i, .value = 1000};
        assert_int_equal(submit(&w, &queued[i], &err), 0);
    }
    gate_open(&w.g2); /* now bad fails */
    for (int i = 0; i < 10000 && !wv_parallel_stopped(w.p); i++)
        sleep_ms(1);
    assert_true(wv_parallel_stopped(w.p));
    gate_open(&w.g);
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_EIO);
    assert_string_equal(err.msg, "job 99 failed");
    for (int i = 0; i < NQUEUED; i++) {
        assert_false(queued[i].did_run);
        assert_int_equal(queued[i].dones, 1);
        assert_int_equal(queued[i].rc, WV_EINTERRUPTED);
        assert_int_equal(queued[i].err.code, WV_EINTERRUPTED);
        assert_true(strlen(queued[i].err.msg) > 0);
    }
    for (int i = 0; i < NBLOCK; i++) {
        assert_true(block[i].did_run);
        assert_int_equal(block[i].dones, 1);
        assert_int_equal(block[i].rc, 0);
    }
    assert_int_equal(atomic_load(&w.sum), 0);
    assert_int_equal(w.done_calls, NBLOCK + 1 + NQUEUED);
    assert_int_equal(w.done_interrupted, NQUEUED);
    assert_int_equal(w.done_failed, 1);
    /* only the real failure counts as an error */
    assert_int_equal(wv_parallel_nerrors(w.p), 1);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* Several jobs failing at once: every error is collected (the first 16 kept, the count exact),
 * the first one collected is the one wait returns. */
static void test_errors_collected(void **state)
{
    (void)state;
    enum { N = POOL };
    world w;
    world_init(&w);
    job jobs[N];
    wv_err err;
    assert_int_equal(wv_parallel_new(POOL, N, &w.p, &err), 0);
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){.w = &w, .kind = J_BLOCK_FAIL, .id = i};
        assert_int_equal(submit(&w, &jobs[i], &err), 0);
    }
    wait_until_started(&w, N);
    gate_open(&w.g);
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_EUNREACHABLE);
    assert_int_equal(wv_parallel_nerrors(w.p), N);
    assert_true(N > WV_PARALLEL_MAX_ERRORS);
    int seen[N] = {0};
    for (size_t i = 0; i < WV_PARALLEL_MAX_ERRORS; i++) {
        const wv_err *e = wv_parallel_error(w.p, i);
        assert_non_null(e);
        assert_int_equal(e->code, WV_EUNREACHABLE);
        int id = -1;
        assert_int_equal(sscanf(e->msg, "job %d failed", &id), 1);
        assert_true(id >= 0 && id < N);
        assert_int_equal(seen[id]++, 0); /* each job's error once */
    }
    assert_string_equal(err.msg, wv_parallel_error(w.p, 0)->msg);
    assert_null(wv_parallel_error(w.p, WV_PARALLEL_MAX_ERRORS));
    assert_null(wv_parallel_error(w.p, N));
    assert_int_equal(w.done_failed, N);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* A job that fails without a message still gets one, with its code. */
static void test_failure_without_message(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    job j = {.w = &w, .kind = J_FAIL_SILENT};
    wv_err err;
    assert_int_equal(wv_parallel_new(2, 2, &w.p, &err), 0);
    assert_int_equal(submit(&w, &j, &err), 0);
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_ECORRUPT);
    assert_int_equal(err.code, WV_ECORRUPT);
    assert_string_equal(err.msg, "job failed without a message");
    assert_int_equal(j.rc, WV_ECORRUPT);
    assert_int_equal(j.err.code, WV_ECORRUPT);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* Running jobs see wv_parallel_stopped() turn true when another fails, and may give up: their
 * WV_EINTERRUPTED is not another error. */
static void test_running_jobs_see_stop(void **state)
{
    (void)state;
    enum { N = 5 };
    world w;
    world_init(&w);
    job spin[N];
    job bad = {.w = &w, .kind = J_FAIL, .id = 7};
    wv_err err;
    assert_int_equal(wv_parallel_new(POOL, N + 1, &w.p, &err), 0);
    for (int i = 0; i < N; i++) {
        spin[i] = (job){.w = &w, .kind = J_UNTIL_STOPPED, .id = i};
        assert_int_equal(submit(&w, &spin[i], &err), 0);
    }
    wait_until_started(&w, N);
    assert_int_equal(submit(&w, &bad, &err), 0);
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_EIO);
    assert_string_equal(err.msg, "job 7 failed");
    assert_int_equal(wv_parallel_nerrors(w.p), 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(spin[i].rc, WV_EINTERRUPTED);
        assert_true(spin[i].did_run);
    }
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* A job that gives up as interrupted on its own (no other failure): the rest is stopped, and
 * neither submit nor wait may then report success or an empty error. */
static void test_job_interrupted_alone(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    job intr = {.w = &w, .kind = J_INTERRUPTED, .id = 3};
    job later = {.w = &w, .kind = J_ADD, .value = 1};
    wv_err err;
    assert_int_equal(wv_parallel_new(2, 1, &w.p, &err), 0);
    assert_int_equal(submit(&w, &intr, &err), 0);
    wv_err_clear(&err);
    assert_int_equal(submit(&w, &later, &err), WV_EINTERRUPTED);
    assert_int_equal(err.code, WV_EINTERRUPTED);
    assert_string_equal(err.msg, "job 3 was interrupted");
    assert_false(later.did_run);
    assert_true(wv_parallel_stopped(w.p));
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_EINTERRUPTED);
    assert_int_equal(err.code, WV_EINTERRUPTED);
    assert_string_equal(err.msg, "job 3 was interrupted");
    assert_int_equal(intr.rc, WV_EINTERRUPTED);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* The producer cancels: its error is the first one; queued jobs are skipped; submit refuses. */
static void test_cancel(void **state)
{
    (void)state;
    enum { NBLOCK = POOL, NQUEUED = 5 };
    world w;
    world_init(&w);
    job block[NBLOCK], queued[NQUEUED];
    wv_err err;
    assert_int_equal(wv_parallel_new(POOL, NBLOCK + NQUEUED + 1, &w.p, &err), 0);
    for (int i = 0; i < NBLOCK; i++) {
        block[i] = (job){.w = &w, .kind = J_BLOCK, .id = i};
        assert_int_equal(submit(&w, &block[i], &err), 0);
    }
    wait_until_started(&w, NBLOCK);
    for (int i = 0; i < NQUEUED; i++) {
        queued[i] = (job){.w = &w, .kind = J_ADD, .id = 50 + i, .value = 1};
        assert_int_equal(submit(&w, &queued[i], &err), 0);
    }
    wv_err why;
    wv_err_set(&why, WV_EUNREACHABLE, "repo2: connection lost");
    wv_parallel_cancel(w.p, &why);
    assert_true(wv_parallel_stopped(w.p));
    job late = {.w = &w, .kind = J_ADD, .value = 1};
    wv_err_clear(&err);
    assert_int_equal(submit(&w, &late, &err), WV_EUNREACHABLE);
    assert_string_equal(err.msg, "repo2: connection lost");
    gate_open(&w.g);
    wv_err_clear(&err);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_EUNREACHABLE);
    assert_string_equal(err.msg, "repo2: connection lost");
    for (int i = 0; i < NQUEUED; i++) {
        assert_false(queued[i].did_run);
        assert_int_equal(queued[i].rc, WV_EINTERRUPTED);
    }
    for (int i = 0; i < NBLOCK; i++)
        assert_int_equal(block[i].rc, 0);
    assert_int_equal(late.dones, 0);
    assert_int_equal(wv_parallel_nerrors(w.p), 0); /* the producer's error is not a job's */
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);

    /* a cancel after a job failed keeps the job's error first */
    world_init(&w);
    job bad = {.w = &w, .kind = J_FAIL, .id = 1};
    assert_int_equal(wv_parallel_new(2, 2, &w.p, &err), 0);
    assert_int_equal(submit(&w, &bad, &err), 0);
    while (bad.dones == 0) {
        wv_parallel_poll(w.p);
        sleep_ms(1);
    }
    wv_parallel_cancel(w.p, &why);
    assert_int_equal(wv_parallel_wait(w.p, &err), WV_EIO);
    assert_string_equal(err.msg, "job 1 failed");
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);

    /* a cancel without a reason still stops, and wait does not report success */
    world_init(&w);
    assert_int_equal(wv_parallel_new(2, 2, &w.p, &err), 0);
    wv_parallel_cancel(w.p, NULL);
    assert_true(wv_parallel_stopped(w.p));
    wv_err_clear(&err);
    assert_int_equal(submit(&w, &late, &err), WV_EINTERRUPTED);
    assert_int_equal(err.code, WV_EINTERRUPTED);
    assert_true(strlen(err.msg) > 0);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* done runs only on the submitting thread, from poll (without blocking), submit or wait. */
static void test_poll(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    job j = {.w = &w, .kind = J_ADD, .value = 3};
    wv_err err;
    assert_int_equal(wv_parallel_new(2, 4, &w.p, &err), 0);
    wv_parallel_poll(w.p); /* nothing to do: returns at once */
    assert_int_equal(submit(&w, &j, &err), 0);
    for (int i = 0; i < 10000 && atomic_load(&w.sum) != 3; i++)
        sleep_ms(1);
    assert_int_equal(atomic_load(&w.sum), 3);
    sleep_ms(20);
    assert_int_equal(j.dones, 0); /* finished, but nobody turned the loop yet */
    for (int i = 0; i < 10000 && j.dones == 0; i++) {
        wv_parallel_poll(w.p);
        if (!j.dones)
            sleep_ms(1);
    }
    assert_int_equal(j.dones, 1);
    assert_int_equal(w.done_off_thread, 0);
    assert_int_equal(wv_parallel_wait(w.p, &err), 0);
    assert_int_equal(j.dones, 1);
    wv_parallel_free(w.p);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

/* free waits for every job (done included) before it returns. */
static void test_free_waits(void **state)
{
    (void)state;
    enum { N = 8 };
    world w;
    world_init(&w);
    job jobs[N];
    wv_err err;
    assert_int_equal(wv_parallel_new(POOL, N, &w.p, &err), 0);
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){.w = &w, .kind = J_ADD, .sleep = 30, .value = 1};
        assert_int_equal(submit(&w, &jobs[i], &err), 0);
    }
    wv_parallel_free(w.p);
    assert_int_equal(atomic_load(&w.sum), N);
    assert_int_equal(w.done_calls, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(jobs[i].dones, 1);
    gate_destroy(&w.g);
    gate_destroy(&w.g2);
}

int main(void)
{
    main_thread = pthread_self();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_sets_pool_size), /* first: before the pool exists */
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_zero_jobs),
        cmocka_unit_test(test_many_jobs),
        cmocka_unit_test(test_max_inflight),
        cmocka_unit_test(test_submit_after_failure),
        cmocka_unit_test(test_first_failure_skips_queued),
        cmocka_unit_test(test_errors_collected),
        cmocka_unit_test(test_failure_without_message),
        cmocka_unit_test(test_running_jobs_see_stop),
        cmocka_unit_test(test_job_interrupted_alone),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_poll),
        cmocka_unit_test(test_free_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
