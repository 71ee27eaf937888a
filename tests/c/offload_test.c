/*
 * offload_test.c -- blocking calls on worker threads: the loop keeps
 * running (timers fire) while a job sleeps, the job's fd turns readable
 * only when it is done, many jobs run at once on a few threads, a job
 * released while it runs or before it starts is freed without a leak and
 * without its fd being written after close, and the last drop joins the
 * threads. Under ASan in the second build, as every C test.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "msk.h"
#include "test.h"

typedef struct sleeper {
    int ms;
    int ran;
    int *cleaned;
} sleeper;

static void sleep_work(void *data)
{
    sleeper *s = data;
    struct timespec ts = { s->ms / 1000, (long)(s->ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    s->ran = 1;
}

/* Workers free released jobs, two at a time maybe: count atomically. */
static void sleep_cleanup(void *data)
{
    sleeper *s = data;
    if (s->cleaned)
        __atomic_add_fetch(s->cleaned, 1, __ATOMIC_SEQ_CST);
}

static msk_offload *start(int ms, int *cleaned)
{
    msk_offload *j = msk_offload_new(sleep_work, sleep_cleanup,
                                     sizeof(sleeper));
    if (j == NULL)
        return NULL;
    sleeper *s = msk_offload_data(j);
    s->ms = ms;
    s->cleaned = cleaned;
    if (msk_offload_submit(j) < 0) {
        msk_offload_release(j);
        return NULL;
    }
    return j;
}

static int ticks;
static void on_tick(msk_loop *loop, int64_t id, void *udata)
{
    (void)loop;
    (void)id;
    (void)udata;
    ticks++;
}

static int done_fd_seen;
static void on_done(msk_loop *loop, int fd, unsigned ev, void *udata)
{
    (void)ev;
    (void)udata;
    done_fd_seen = 1;
    msk_io_unwatch(loop, fd);
}

/* The loop runs its timers while a job sleeps 300 ms on a worker; the
 * job's fd wakes the loop when it is done. */
static int test_loop_runs_while_job_blocks(void)
{
    msk_loop *loop;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    msk_offload_retain();
    int cleaned = 0;
    msk_offload *j = start(300, &cleaned);
    CHECK(j != NULL);
    CHECK(!msk_offload_finished(j));
    ticks = 0;
    done_fd_seen = 0;
    int64_t t = msk_timer_add(loop, 10, 10, on_tick, NULL);
    CHECK(t > 0);
    CHECK_EQ(0, msk_io_watch(loop, msk_offload_fd(j), MSK_READ, on_done,
                             NULL));
    int64_t t0 = msk_clock_ms();
    while (!done_fd_seen && msk_clock_ms() - t0 < 5000)
        CHECK(msk_loop_step(loop, 100) >= 0);
    int64_t took = msk_clock_ms() - t0;
    CHECK(done_fd_seen);
    CHECK(msk_offload_finished(j));
    CHECK(((sleeper *)msk_offload_data(j))->ran);
    CHECK(took >= 290 && took < 2000);
    CHECK(ticks >= 15);              /* ~30 ticks of 10 ms meanwhile */
    msk_timer_cancel(loop, t);
    msk_offload_release(j);
    CHECK_EQ(1, cleaned);
    msk_offload_drop();
    msk_loop_free(loop);
    return 0;
}

/* 40 jobs of 50 ms on at most 4 threads: all finish, in about 0.5 s. */
static int test_many_jobs(void)
{
    msk_offload_retain();
    enum { N = 40 };
    msk_offload *jobs[N];
    int cleaned = 0;
    int64_t t0 = msk_clock_ms();
    for (int i = 0; i < N; i++) {
        jobs[i] = start(50, &cleaned);
        CHECK(jobs[i] != NULL);
    }
    for (int i = 0; i < N; i++) {
        struct pollfd pf = { msk_offload_fd(jobs[i]), POLLIN, 0 };
        CHECK_EQ(1, poll(&pf, 1, 5000));
        CHECK(msk_offload_finished(jobs[i]));
    }
    int64_t took = msk_clock_ms() - t0;
    CHECK(took >= 450 && took < 3000);   /* 40 x 50 ms / 4 threads */
    for (int i = 0; i < N; i++)
        msk_offload_release(jobs[i]);
    CHECK_EQ(N, cleaned);
    msk_offload_drop();
    return 0;
}

/* Released while running: the worker frees it when done. Released while
 * queued: freed at once and never run. Nothing leaks (ASan), and the
 * drop waits for the running one. */
static int test_release_early(void)
{
    msk_offload_retain();
    int cleaned = 0;
    msk_offload *busy[4];
    for (int i = 0; i < 4; i++) {
        busy[i] = start(200, &cleaned);        /* occupy every thread */
        CHECK(busy[i] != NULL);
    }
    msk_offload *queued = start(10, &cleaned);
    CHECK(queued != NULL);
    usleep(50000);
    CHECK(!msk_offload_finished(queued));
    msk_offload_release(queued);               /* never ran */
    CHECK_EQ(1, cleaned);
    for (int i = 0; i < 4; i++)
        msk_offload_release(busy[i]);          /* still running */
    msk_offload_drop();                        /* joins: all done now */
    CHECK_EQ(5, cleaned);
    return 0;
}

/* A job never submitted can be released; the pool restarts after a
 * drop. */
static int test_unsubmitted_and_restart(void)
{
    int cleaned = 0;
    msk_offload *j = msk_offload_new(sleep_work, sleep_cleanup,
                                     sizeof(sleeper));
    CHECK(j != NULL);
    ((sleeper *)msk_offload_data(j))->cleaned = &cleaned;
    msk_offload_release(j);
    CHECK_EQ(1, cleaned);
    msk_offload_retain();
    j = start(1, &cleaned);
    CHECK(j != NULL);
    struct pollfd pf = { msk_offload_fd(j), POLLIN, 0 };
    CHECK_EQ(1, poll(&pf, 1, 5000));
    msk_offload_release(j);
    msk_offload_drop();
    CHECK_EQ(2, cleaned);
    return 0;
}

TEST_MAIN(TEST(test_loop_runs_while_job_blocks), TEST(test_many_jobs),
          TEST(test_release_early), TEST(test_unsubmitted_and_restart))
