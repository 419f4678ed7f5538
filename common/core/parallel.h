/*
 * parallel.h - a job runner on libuv's thread pool: N jobs in flight at most, the submitting thread
 * blocks while the limit is reached, the first failure stops the rest, errors are collected.
 *
 * libuv stays inside this module: callers see plain functions. A job's `run` executes on a pool
 * thread; its `done` executes on the thread that calls wv_parallel_submit / wv_parallel_wait (never
 * concurrently with that thread's own code), exactly once per submitted job, so `done` is the place
 * to free the job's state and to record its result.
 *
 * After the first failure, jobs not yet started are skipped (run is not called; done gets
 * WV_EINTERRUPTED), wv_parallel_stopped() turns true so running jobs may give up early, and
 * wv_parallel_submit refuses new jobs, returning the first error.
 *
 * The pool is libuv's, shared by the process: its size is fixed by UV_THREADPOOL_SIZE at first use;
 * wv_parallel_new sets that variable to `workers` if it is not set yet.
 */
#ifndef WALVAULT_CORE_PARALLEL_H
#define WALVAULT_CORE_PARALLEL_H

#include <stddef.h>

#include "core/error.h"

typedef struct wv_parallel wv_parallel;

/* Runs on a pool thread. Returns 0 or a negative WV_E* code with err filled. */
typedef int (*wv_job_run_fn)(void *arg, wv_err *err);
/* Runs on the submitting thread once the job is over (rc: its result, or WV_EINTERRUPTED if it
 * was skipped). err is the job's error record. */
typedef void (*wv_job_done_fn)(void *arg, int rc, const wv_err *err);

/* workers: pool threads wanted (1..128); max_inflight: jobs submitted and not yet done. */
int wv_parallel_new(int workers, int max_inflight, wv_parallel **out, wv_err *err);

/* Submit a job, first waiting while max_inflight jobs are in flight. If a job has failed, the new
 * job is not submitted (done is not called) and the first error is returned. */
int wv_parallel_submit(wv_parallel *p, wv_job_run_fn run, wv_job_done_fn done, void *arg,
                       wv_err *err);

/* Run the done callbacks of finished jobs without blocking. */
void wv_parallel_poll(wv_parallel *p);

/* Whether a job has failed (safe from any thread). */
int wv_parallel_stopped(const wv_parallel *p);

/* Make running and queued jobs give up (e.g. the producer failed): sets the stopped flag with
 * this error as the first one, unless a job failed first. */
void wv_parallel_cancel(wv_parallel *p, const wv_err *why);

/* Wait until every job is done; returns 0 or the first failure (err filled with it). A runner
 * stopped without a failure (a job gave up as WV_EINTERRUPTED on its own, or a cancel without a
 * reason) returns WV_EINTERRUPTED: some jobs were skipped, so not everything was done. */
int wv_parallel_wait(wv_parallel *p, wv_err *err);

/* Errors collected (the first WV_PARALLEL_MAX_ERRORS are kept; the count is exact). */
#define WV_PARALLEL_MAX_ERRORS 16
size_t wv_parallel_nerrors(const wv_parallel *p);
const wv_err *wv_parallel_error(const wv_parallel *p, size_t i);

/* Waits for every job, then frees. NULL allowed. */
void wv_parallel_free(wv_parallel *p);

#endif
