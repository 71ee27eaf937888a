/*
 * signal_test.c -- signals as loop events: delivery through raise() and
 * kill() to self, coalescing, restoring mask and disposition on unwatch
 * and on loop free, one loop per signal, and msk_signal_ignore_sigpipe.
 * With MSK_BACKEND=epoll this covers the signalfd path, with poll the
 * self-pipe handler.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "msk.h"
#include "test.h"

static int got, got_signo;
static void *got_udata;

static void on_sig(msk_loop *loop, int signo, void *udata)
{
    (void)loop;
    got++;
    got_signo = signo;
    got_udata = udata;
}

/* Step until a callback ran or about a second passed. */
static int step_until(msk_loop *loop, int *counter)
{
    int i;

    for (i = 0; i < 100 && *counter == 0; i++)
        if (msk_loop_step(loop, 10) < 0)
            return -1;
    return *counter;
}

static int blocked(int signo)
{
    sigset_t cur;

    sigprocmask(SIG_SETMASK, NULL, &cur);
    return sigismember(&cur, signo);
}

static void (*handler_of(int signo))(int)
{
    struct sigaction sa;

    sigaction(signo, NULL, &sa);
    return sa.sa_handler;
}

static int test_raise_delivered(void)
{
    msk_loop *loop;
    int x;

    got = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig, &x));
    CHECK_EQ(0, msk_loop_step(loop, 0));
    CHECK_EQ(0, raise(SIGUSR1));
    CHECK_EQ(1, step_until(loop, &got));
    CHECK_EQ(SIGUSR1, got_signo);
    CHECK(got_udata == &x);
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR1));
    CHECK_EQ(-ENOENT, msk_signal_unwatch(loop, SIGUSR1));
    msk_loop_free(loop);
    return 0;
}

static int test_kill_self_delivered(void)
{
    msk_loop *loop;

    got = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR2, on_sig, NULL));
    CHECK_EQ(0, kill(getpid(), SIGUSR2));
    CHECK_EQ(1, step_until(loop, &got));
    CHECK_EQ(SIGUSR2, got_signo);
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR2));
    msk_loop_free(loop);
    return 0;
}

static int test_arrivals_coalesce(void)
{
    msk_loop *loop;

    got = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig, NULL));
    CHECK_EQ(0, raise(SIGUSR1));
    CHECK_EQ(0, raise(SIGUSR1));
    CHECK_EQ(0, raise(SIGUSR1));
    CHECK_EQ(1, step_until(loop, &got));
    CHECK_EQ(0, msk_loop_step(loop, 20));
    CHECK_EQ(1, got);
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR1));
    msk_loop_free(loop);
    return 0;
}

static int test_two_signals_one_pass(void)
{
    msk_loop *loop;
    int i;

    got = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR2, on_sig, NULL));
    CHECK_EQ(0, raise(SIGUSR1));
    CHECK_EQ(0, raise(SIGUSR2));
    for (i = 0; i < 100 && got < 2; i++)
        CHECK(msk_loop_step(loop, 10) >= 0);
    CHECK_EQ(2, got);
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR1));
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR2));
    msk_loop_free(loop);
    return 0;
}

static int test_unwatch_restores_mask_and_disposition(void)
{
    msk_loop *loop;
    struct sigaction ign, saved;
    int was_blocked = blocked(SIGUSR1);
    void (*was_handler)(int) = handler_of(SIGUSR1);

    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig, NULL));
    if (msk_loop_fd(loop) >= 0)
        CHECK(blocked(SIGUSR1));         /* signalfd: blocked */
    else
        CHECK(handler_of(SIGUSR1) != was_handler);   /* self-pipe */
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR1));
    CHECK_EQ(was_blocked, blocked(SIGUSR1));
    CHECK(handler_of(SIGUSR1) == was_handler);

    /* An ignored signal is still delivered while watched, and is
     * ignored again afterwards. */
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    CHECK_EQ(0, sigaction(SIGUSR2, &ign, &saved));
    got = 0;
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR2, on_sig, NULL));
    CHECK_EQ(0, raise(SIGUSR2));
    CHECK_EQ(1, step_until(loop, &got));
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR2));
    CHECK(handler_of(SIGUSR2) == SIG_IGN);
    CHECK_EQ(0, blocked(SIGUSR2));
    CHECK_EQ(0, sigaction(SIGUSR2, &saved, NULL));

    /* A signal already blocked by the host stays blocked. */
    {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, SIGUSR1);
        sigprocmask(SIG_BLOCK, &one, NULL);
        CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig, NULL));
        got = 0;
        CHECK_EQ(0, raise(SIGUSR1));
        CHECK_EQ(1, step_until(loop, &got));
        CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR1));
        CHECK(blocked(SIGUSR1));
        sigprocmask(SIG_UNBLOCK, &one, NULL);
    }
    msk_loop_free(loop);
    return 0;
}

/* A signal that arrives after the last pass is swallowed by unwatch
 * instead of reaching the default action (which would end the test). */
static int test_unread_signal_does_not_leak_out(void)
{
    msk_loop *loop;

    got = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig, NULL));
    CHECK_EQ(0, raise(SIGUSR1));
    CHECK_EQ(0, msk_signal_unwatch(loop, SIGUSR1));
    CHECK_EQ(0, msk_loop_step(loop, 0));
    CHECK_EQ(0, got);
    msk_loop_free(loop);
    return 0;
}

static int test_loop_free_restores(void)
{
    msk_loop *loop;
    int was_blocked = blocked(SIGUSR2);
    void (*was_handler)(int) = handler_of(SIGUSR2);

    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR2, on_sig, NULL));
    msk_loop_free(loop);
    CHECK_EQ(was_blocked, blocked(SIGUSR2));
    CHECK(handler_of(SIGUSR2) == was_handler);
    /* The slot is free for another loop now. */
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR2, on_sig, NULL));
    msk_loop_free(loop);
    return 0;
}

static int test_one_loop_per_signal(void)
{
    msk_loop *a, *b;

    CHECK_EQ(0, msk_loop_new(&a, NULL));
    CHECK_EQ(0, msk_loop_new(&b, NULL));
    CHECK_EQ(0, msk_signal_watch(a, SIGUSR1, on_sig, NULL));
    CHECK_EQ(0, msk_signal_watch(a, SIGUSR1, on_sig, NULL)); /* replace */
    CHECK_EQ(MSK_EBUSY, msk_signal_watch(b, SIGUSR1, on_sig, NULL));
    CHECK_EQ(-ENOENT, msk_signal_unwatch(b, SIGUSR1));
    CHECK_EQ(-EINVAL, msk_signal_watch(b, SIGKILL, on_sig, NULL));
    CHECK_EQ(-EINVAL, msk_signal_watch(b, 0, on_sig, NULL));
    CHECK_EQ(-EINVAL, msk_signal_watch(b, 1000, on_sig, NULL));
    CHECK_EQ(-EINVAL, msk_signal_unwatch(b, -1));
    CHECK_EQ(0, msk_signal_unwatch(a, SIGUSR1));
    CHECK_EQ(0, msk_signal_watch(b, SIGUSR1, on_sig, NULL));
    msk_loop_free(a);
    msk_loop_free(b);
    return 0;
}

/* The watch keeps msk_loop_run() going; unwatching in the callback ends
 * it. */
static void on_sig_unwatch(msk_loop *loop, int signo, void *udata)
{
    (void)udata;
    got++;
    msk_signal_unwatch(loop, signo);
}

static void on_raise_timer(msk_loop *loop, int64_t id, void *udata)
{
    (void)loop;
    (void)id;
    (void)udata;
    raise(SIGUSR1);
}

static int test_run_ends_after_unwatch(void)
{
    msk_loop *loop;

    got = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig_unwatch, NULL));
    CHECK(msk_timer_add(loop, 20, 0, on_raise_timer, NULL) > 0);
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(1, got);
    /* And the watch can be taken again. */
    CHECK_EQ(0, msk_signal_watch(loop, SIGUSR1, on_sig_unwatch, NULL));
    CHECK_EQ(0, raise(SIGUSR1));
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(2, got);
    msk_loop_free(loop);
    return 0;
}

static int test_ignore_sigpipe(void)
{
    struct sigaction saved;

    CHECK_EQ(0, sigaction(SIGPIPE, NULL, &saved));
    msk_signal_ignore_sigpipe();
    CHECK(handler_of(SIGPIPE) == SIG_IGN);
    CHECK_EQ(0, sigaction(SIGPIPE, &saved, NULL));
    return 0;
}

TEST_MAIN(TEST(test_raise_delivered),
          TEST(test_kill_self_delivered),
          TEST(test_arrivals_coalesce),
          TEST(test_two_signals_one_pass),
          TEST(test_unwatch_restores_mask_and_disposition),
          TEST(test_unread_signal_does_not_leak_out),
          TEST(test_loop_free_restores),
          TEST(test_one_loop_per_signal),
          TEST(test_run_ends_after_unwatch),
          TEST(test_ignore_sigpipe))
