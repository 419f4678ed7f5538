/*
 * parallel.c - job runner on libuv's thread pool. A private uv loop per runner; uv_queue_work puts
 * jobs on the pool, and the submitting thread turns the loop (UV_RUN_ONCE) to collect finished
 * jobs and to wait for a free slot.
 */
#include "core/parallel.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/buf.h"

struct wv_parallel {
    uv_loop_t loop;
    int max_inflight;
    int inflight;
    atomic_int stopped;
    int first_rc;
    wv_err first;
    wv_err interrupted; /* the first job that gave up as interrupted on its own, if any */
    size_t nerrors;
    wv_err errors[WV_PARALLEL_MAX_ERRORS];
};

typedef struct job {
    uv_work_t work; /* first: the job is recovered from the uv_work_t */
    wv_parallel *p;
    wv_job_run_fn run;
    wv_job_done_fn done;
    void *arg;
    int rc;
    int ran; /* run was called (the job was not skipped) */
    wv_err err;
} job;

int wv_parallel_new(int workers, int max_inflight, wv_parallel **out, wv_err *err)
{
    if (workers < 1 || workers > 128 || max_inflight < 1)
        return wv_err_set(err, WV_EUSAGE, "invalid parallelism: %d workers, %d jobs in flight",
                          workers, max_inflight);
    if (!getenv("UV_THREADPOOL_SIZE")) {
        char n[16];
        snprintf(n, sizeof(n), "%d", workers);
        setenv("UV_THREADPOOL_SIZE", n, 0);
    }
    wv_parallel *p = wv_xcalloc(1, sizeof(*p));
    int rc = uv_loop_init(&p->loop);
    if (rc < 0) {
        free(p);
        return wv_err_set(err, WV_EINTERNAL, "could not start the job loop: %s", uv_strerror(rc));
    }
    p->max_inflight = max_inflight;
    atomic_init(&p->stopped, 0);
    *out = p;
    return 0;
}

static void record_error(wv_parallel *p, int rc, const wv_err *e)
{
    if (p->nerrors < WV_PARALLEL_MAX_ERRORS)
        p->errors[p->nerrors] = *e;
    p->nerrors++;
    if (!p->first_rc) {
        p->first_rc = rc;
        p->first = *e;
    }
    atomic_store(&p->stopped, 1);
}

static void work_cb(uv_work_t *w)
{
    job *j = (job *)w;
    wv_err_clear(&j->err);
    if (atomic_load(&j->p->stopped)) {
        j->rc = wv_err_set(&j->err, WV_EINTERRUPTED, "skipped after an earlier failure");
        return;
    }
    j->ran = 1;
    j->rc = j->run(j->arg, &j->err);
    if (j->rc < 0 && j->err.code == 0)
        wv_err_set(&j->err, j->rc, "job failed without a message");
    if (j->rc < 0)
        atomic_store(&j->p->stopped, 1); /* stop the others at once, not only when collected */
}

static void after_cb(uv_work_t *w, int status)
{
    job *j = (job *)w;
    wv_parallel *p = j->p;
    if (status == UV_ECANCELED)
        j->rc = wv_err_set(&j->err, WV_EINTERRUPTED, "cancelled after an earlier failure");
    if (j->rc < 0 && j->rc != WV_EINTERRUPTED)
        record_error(p, j->rc, &j->err);
    else if (j->rc == WV_EINTERRUPTED && j->ran && !p->interrupted.code)
        p->interrupted = j->err; /* it stopped the rest: reported if nothing else failed */
    p->inflight--;
    if (j->done)
        j->done(j->arg, j->rc, &j->err);
    free(j);
}

void wv_parallel_poll(wv_parallel *p)
{
    uv_run(&p->loop, UV_RUN_NOWAIT);
}

int wv_parallel_stopped(const wv_parallel *p)
{
    return atomic_load(&((wv_parallel *)p)->stopped);
}

void wv_parallel_cancel(wv_parallel *p, const wv_err *why)
{
    if (!p->first_rc && why && why->code) {
        p->first_rc = why->code;
        p->first = *why;
    }
    atomic_store(&p->stopped, 1);
}

/* The first failure; when the runner stopped without one (a job gave up as interrupted on its
 * own, or a cancel without a reason), WV_EINTERRUPTED with a message all the same. */
static int first_error(wv_parallel *p, wv_err *err)
{
    if (p->first_rc) {
        if (err)
            *err = p->first;
        return p->first_rc;
    }
    if (p->interrupted.code) {
        if (err)
            *err = p->interrupted;
        return WV_EINTERRUPTED;
    }
    return wv_err_set(err, WV_EINTERRUPTED, "jobs stopped before all of them ran");
}

int wv_parallel_submit(wv_parallel *p, wv_job_run_fn run, wv_job_done_fn done, void *arg,
                       wv_err *err)
{
    uv_run(&p->loop, UV_RUN_NOWAIT);
    while (p->inflight >= p->max_inflight && !atomic_load(&p->stopped))
        uv_run(&p->loop, UV_RUN_ONCE);
    if (atomic_load(&p->stopped)) {
        /* collect what finished so the first error is known */
        while (!p->first_rc && p->inflight > 0)
            uv_run(&p->loop, UV_RUN_ONCE);
        return first_error(p, err);
    }
    job *j = wv_xcalloc(1, sizeof(*j));
    j->p = p;
    j->run = run;
    j->done = done;
    j->arg = arg;
    int rc = uv_queue_work(&p->loop, &j->work, work_cb, after_cb);
    if (rc < 0) {
        free(j);
        return wv_err_set(err, WV_EINTERNAL, "could not queue a job: %s", uv_strerror(rc));
    }
    p->inflight++;
    return 0;
}

int wv_parallel_wait(wv_parallel *p, wv_err *err)
{
    while (p->inflight > 0)
        uv_run(&p->loop, UV_RUN_ONCE);
    if (p->first_rc || atomic_load(&p->stopped))
        return first_error(p, err);
    return 0;
}

size_t wv_parallel_nerrors(const wv_parallel *p)
{
    return p->nerrors;
}

const wv_err *wv_parallel_error(const wv_parallel *p, size_t i)
{
    return i < p->nerrors && i < WV_PARALLEL_MAX_ERRORS ? &p->errors[i] : NULL;
}

void wv_parallel_free(wv_parallel *p)
{
    if (!p)
        return;
    while (p->inflight > 0)
        uv_run(&p->loop, UV_RUN_ONCE);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    uv_loop_close(&p->loop);
    free(p);
}
