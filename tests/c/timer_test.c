/*
 * timer_test.c -- timers: firing time, order, repetition without drift,
 * cancellation (of self and others, from callbacks), ids that never name a
 * reused slot, 10,000 timers, huge values, and ms <= 0 re-arming without
 * spinning a pass. Timing checks use bounds. Runs on both backends.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "msk.h"
#include "test.h"

static int fired;
static int64_t fired_at;

static void on_fire(msk_loop *loop, int64_t id, void *udata)
{
    (void)loop;
    (void)id;
    (void)udata;
    fired++;
    fired_at = msk_clock_ms();
}

static int test_fires_once_after_delay(void)
{
    msk_loop *loop;
    int64_t t0, id;

    fired = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(-1, msk_loop_timeout(loop));
    t0 = msk_clock_ms();
    id = msk_timer_add(loop, 30, 0, on_fire, NULL);
    CHECK(id > 0);
    CHECK_EQ(1, msk_timer_count(loop));
    /* At most 30 ms; less if this process was descheduled meanwhile. */
    CHECK(msk_loop_timeout(loop) >= 0 && msk_loop_timeout(loop) <= 30);
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(1, fired);
    CHECK(fired_at - t0 >= 30);
    CHECK(fired_at - t0 < 1000);
    CHECK_EQ(0, msk_timer_count(loop));
    CHECK_EQ(-ENOENT, msk_timer_cancel(loop, id));
    msk_loop_free(loop);
    return 0;
}

/* A pass never wakes before the timer is due: every step(-1) runs it. */
static int test_never_wakes_early(void)
{
    msk_loop *loop;
    int i;

    fired = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    for (i = 0; i < 20; i++) {
        CHECK(msk_timer_add(loop, 1 + i % 3, 0, on_fire, NULL) > 0);
        CHECK_EQ(1, msk_loop_step(loop, -1));
    }
    CHECK_EQ(20, fired);
    msk_loop_free(loop);
    return 0;
}

static int order[16], norder;
static void on_order(msk_loop *loop, int64_t id, void *udata)
{
    (void)loop;
    (void)id;
    order[norder++] = (int)(intptr_t)udata;
}

static int test_equal_deadlines_fire_in_add_order(void)
{
    msk_loop *loop;
    int i;

    norder = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    /* Same delay, and a second batch with zero delay added later: the
     * zero batch is due first, each batch in the order it was added. */
    for (i = 0; i < 5; i++)
        CHECK(msk_timer_add(loop, 20, 0, on_order, (void *)(intptr_t)i) > 0);
    for (i = 5; i < 10; i++)
        CHECK(msk_timer_add(loop, 0, 0, on_order, (void *)(intptr_t)i) > 0);
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(10, norder);
    for (i = 0; i < 5; i++) {
        CHECK_EQ(5 + i, order[i]);
        CHECK_EQ(i, order[5 + i]);
    }
    msk_loop_free(loop);
    return 0;
}

static int ticks, tick_bad_id;
static int64_t tick_id;
static void on_tick(msk_loop *loop, int64_t id, void *udata)
{
    (void)loop;
    (void)udata;
    ticks++;
    if (id != tick_id)
        tick_bad_id++;
}

static void on_stop_timer(msk_loop *loop, int64_t id, void *udata)
{
    (void)id;
    (void)udata;
    msk_loop_stop(loop);
}

static int test_repeating_count_within_bounds(void)
{
    msk_loop *loop;

    ticks = tick_bad_id = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    tick_id = msk_timer_add(loop, 20, 20, on_tick, NULL);
    CHECK(tick_id > 0);
    CHECK(msk_timer_add(loop, 210, 0, on_stop_timer, NULL) > 0);
    CHECK_EQ(0, msk_loop_run(loop));
    /* 20, 40, ..., 200 ms: 10 ticks; a loaded machine (the suite runs
     * tests in parallel, under ASan) may deschedule us for a while. */
    CHECK(ticks >= 3);
    CHECK(ticks <= 10);
    CHECK_EQ(0, tick_bad_id);
    CHECK_EQ(1, msk_timer_count(loop));
    CHECK_EQ(0, msk_timer_cancel(loop, tick_id));
    CHECK_EQ(0, msk_timer_count(loop));
    msk_loop_free(loop);
    return 0;
}

/* Re-armed from the scheduled deadline: a callback that takes 15 ms of
 * a 10 ms period makes the timer skip, not drift or burst. */
static int slow_ticks;
static void on_slow_tick(msk_loop *loop, int64_t id, void *udata)
{
    (void)loop;
    (void)id;
    (void)udata;
    if (slow_ticks++ == 0)
        usleep(35000);
}

static int test_repeating_no_burst_after_stall(void)
{
    msk_loop *loop;
    int64_t id;

    slow_ticks = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    id = msk_timer_add(loop, 10, 10, on_slow_tick, NULL);
    CHECK(id > 0);
    CHECK(msk_timer_add(loop, 105, 0, on_stop_timer, NULL) > 0);
    CHECK_EQ(0, msk_loop_run(loop));
    /* Ticks at 10, then (after the stall) 50, 60, ..., 100: about 7;
     * a burst catching up would give 10, drift would give fewer. */
    CHECK(slow_ticks >= 2);
    CHECK(slow_ticks <= 8);
    CHECK_EQ(0, msk_timer_cancel(loop, id));
    msk_loop_free(loop);
    return 0;
}

static int self_cancel_calls, self_cancel_rc, self_cancel_rc2;
static void on_cancel_self(msk_loop *loop, int64_t id, void *udata)
{
    (void)udata;
    self_cancel_calls++;
    self_cancel_rc = msk_timer_cancel(loop, id);
    self_cancel_rc2 = msk_timer_cancel(loop, id);
}

static int test_cancel_self_in_callback(void)
{
    msk_loop *loop;
    int64_t id;

    self_cancel_calls = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    id = msk_timer_add(loop, 5, 5, on_cancel_self, NULL);
    CHECK(id > 0);
    CHECK_EQ(0, msk_loop_run(loop));     /* ends: nothing left */
    CHECK_EQ(1, self_cancel_calls);
    CHECK_EQ(0, self_cancel_rc);
    CHECK_EQ(-ENOENT, self_cancel_rc2);
    CHECK_EQ(0, msk_timer_count(loop));
    CHECK_EQ(-ENOENT, msk_timer_cancel(loop, id));
    /* A one-shot cancelling itself is just as safe. */
    self_cancel_calls = 0;
    CHECK(msk_timer_add(loop, 0, 0, on_cancel_self, NULL) > 0);
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(1, self_cancel_calls);
    CHECK_EQ(0, msk_timer_count(loop));
    msk_loop_free(loop);
    return 0;
}

static int64_t victim_id;
static int victim_calls, killer_rc;
static void on_victim(msk_loop *loop, int64_t id, void *udata)
{
    (void)loop;
    (void)id;
    (void)udata;
    victim_calls++;
}

static void on_killer(msk_loop *loop, int64_t id, void *udata)
{
    (void)id;
    (void)udata;
    killer_rc = msk_timer_cancel(loop, victim_id);
}

static int test_cancel_other_due_same_pass(void)
{
    msk_loop *loop;

    victim_calls = 0;
    killer_rc = 1;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK(msk_timer_add(loop, 10, 0, on_killer, NULL) > 0);
    victim_id = msk_timer_add(loop, 10, 0, on_victim, NULL);
    CHECK(victim_id > 0);
    usleep(20000);                       /* both due in one pass */
    CHECK_EQ(1, msk_loop_step(loop, 0));
    CHECK_EQ(0, killer_rc);
    CHECK_EQ(0, victim_calls);
    CHECK_EQ(0, msk_timer_count(loop));
    msk_loop_free(loop);
    return 0;
}

static int test_stale_ids(void)
{
    msk_loop *loop;
    int64_t a, b;

    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(-ENOENT, msk_timer_cancel(loop, 0));
    CHECK_EQ(-ENOENT, msk_timer_cancel(loop, -5));
    CHECK_EQ(-ENOENT, msk_timer_cancel(loop, 12345));
    CHECK_EQ(-EINVAL, msk_timer_add(loop, 1, 0, NULL, NULL));
    a = msk_timer_add(loop, 100, 0, on_fire, NULL);
    CHECK(a > 0);
    CHECK_EQ(0, msk_timer_cancel(loop, a));
    b = msk_timer_add(loop, 100, 0, on_fire, NULL);   /* reuses the slot */
    CHECK(b > 0);
    CHECK(b != a);
    CHECK_EQ(-ENOENT, msk_timer_cancel(loop, a));
    CHECK_EQ(1, msk_timer_count(loop));
    CHECK_EQ(0, msk_timer_cancel(loop, b));
    msk_loop_free(loop);
    return 0;
}

#define NT 10000
static int64_t due_ns[NT];
static int many_fired, many_early;
static void on_many(msk_loop *loop, int64_t id, void *udata)
{
    int i = (int)(intptr_t)udata;

    (void)loop;
    (void)id;
    if (msk_clock_ns() < due_ns[i])
        many_early++;
    many_fired++;
}

static int test_ten_thousand_timers(void)
{
    msk_loop *loop;
    static int64_t ids[NT];
    static int ms[NT];
    int i, live = NT;

    many_fired = many_early = 0;
    srand(42);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    for (i = 0; i < NT; i++) {
        ms[i] = rand() % 60;
        due_ns[i] = msk_clock_ns() + (int64_t)ms[i] * 1000000;
        ids[i] = msk_timer_add(loop, ms[i], 0, on_many, (void *)(intptr_t)i);
        CHECK(ids[i] > 0);
    }
    CHECK_EQ(NT, msk_timer_count(loop));
    /* Cancel every other one, in a scattered order. */
    for (i = 0; i < NT; i += 2) {
        int j = (i * 7919) % NT;
        j -= j % 2;
        if (ids[j] != 0) {
            CHECK_EQ(0, msk_timer_cancel(loop, ids[j]));
            ids[j] = 0;
            live--;
        }
    }
    CHECK_EQ(live, msk_timer_count(loop));
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(live, many_fired);
    CHECK_EQ(0, many_early);
    CHECK_EQ(0, msk_timer_count(loop));
    /* And add/cancel churn with nothing firing. */
    for (i = 0; i < NT; i++) {
        int64_t id = msk_timer_add(loop, 1000 + i, 0, on_many,
                                   (void *)(intptr_t)i);
        CHECK(id > 0);
        CHECK_EQ(0, msk_timer_cancel(loop, id));
    }
    CHECK_EQ(0, msk_timer_count(loop));
    msk_loop_free(loop);
    return 0;
}

static int test_huge_timeout_no_overflow(void)
{
    msk_loop *loop;
    int64_t a, b, t0;
    int to;

    fired = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    a = msk_timer_add(loop, INT64_MAX / 2, 0, on_fire, NULL);
    b = msk_timer_add(loop, INT64_MAX, INT64_MAX, on_fire, NULL);
    CHECK(a > 0);
    CHECK(b > 0);
    to = msk_loop_timeout(loop);
    CHECK(to > 1000000);
    CHECK(to <= INT_MAX);
    t0 = msk_clock_ms();
    CHECK_EQ(0, msk_loop_step(loop, 0));
    CHECK_EQ(0, msk_loop_step(loop, 10));
    CHECK(msk_clock_ms() - t0 < 1000);
    CHECK_EQ(0, fired);
    /* A hugely negative delay is "now". */
    CHECK(msk_timer_add(loop, INT64_MIN, -1, on_fire, NULL) > 0);
    CHECK_EQ(0, msk_loop_timeout(loop));
    CHECK_EQ(1, msk_loop_step(loop, -1));
    CHECK_EQ(1, fired);
    CHECK_EQ(0, msk_timer_cancel(loop, a));
    CHECK_EQ(0, msk_timer_cancel(loop, b));
    msk_loop_free(loop);
    return 0;
}

/* A timer that re-adds itself with ms 0 runs once per pass, not forever
 * within one pass. */
static int readd_calls;
static void on_readd(msk_loop *loop, int64_t id, void *udata)
{
    (void)id;
    (void)udata;
    if (++readd_calls < 5)
        msk_timer_add(loop, 0, 0, on_readd, NULL);
}

static int test_zero_ms_readd_runs_next_pass(void)
{
    msk_loop *loop;
    int i;

    readd_calls = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK(msk_timer_add(loop, 0, 0, on_readd, NULL) > 0);
    for (i = 1; i <= 5; i++) {
        CHECK_EQ(1, msk_loop_step(loop, 0));
        CHECK_EQ(i, readd_calls);
    }
    CHECK_EQ(0, msk_loop_step(loop, 0));
    CHECK_EQ(0, msk_timer_count(loop));
    msk_loop_free(loop);
    return 0;
}

/* A 0 ms repeat is one-shot; a repeat is only as often as its period,
 * even a tiny one: at most one run per pass. */
static int test_tiny_repeat_one_per_pass(void)
{
    msk_loop *loop;
    int64_t id;
    int i;

    fired = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    id = msk_timer_add(loop, 0, 1, on_fire, NULL);
    CHECK(id > 0);
    for (i = 0; i < 5; i++)
        CHECK_EQ(1, msk_loop_step(loop, -1));
    CHECK_EQ(5, fired);
    CHECK_EQ(0, msk_timer_cancel(loop, id));
    msk_loop_free(loop);
    return 0;
}

TEST_MAIN(TEST(test_fires_once_after_delay),
          TEST(test_never_wakes_early),
          TEST(test_equal_deadlines_fire_in_add_order),
          TEST(test_repeating_count_within_bounds),
          TEST(test_repeating_no_burst_after_stall),
          TEST(test_cancel_self_in_callback),
          TEST(test_cancel_other_due_same_pass),
          TEST(test_stale_ids),
          TEST(test_ten_thousand_timers),
          TEST(test_huge_timeout_no_overflow),
          TEST(test_zero_ms_readd_runs_next_pass),
          TEST(test_tiny_repeat_one_per_pass))
