/*
 * loop_test.c -- the fd half of the loop: backend selection, watching,
 * level triggering, removal and fd reuse during dispatch, run/stop/step,
 * msk_loop_fd, and msk_strerror / the clock, which have no file of their
 * own. Real pipes and socketpairs only; callbacks count in statics. The
 * suite runs once per backend (MSK_BACKEND=epoll, then poll).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "msk.h"
#include "test.h"

static int calls;
static int last_fd;
static unsigned last_events;
static void *last_udata;

static void reset(void)
{
    calls = 0;
    last_fd = -1;
    last_events = 0;
    last_udata = NULL;
}

static void on_io(msk_loop *loop, int fd, unsigned events, void *udata)
{
    (void)loop;
    calls++;
    last_fd = fd;
    last_events = events;
    last_udata = udata;
}

static int is_epoll(msk_loop *loop)
{
    return strcmp(msk_loop_backend(loop), "epoll") == 0;
}

static int test_backend_selection(void)
{
    msk_loop *loop;
    msk_loop_opts o = { MSK_BACKEND_POLL, 0 };
    const char *env = getenv("MSK_BACKEND");
    char *saved = env != NULL ? strdup(env) : NULL;
    int rc;

    CHECK_EQ(0, msk_loop_new(&loop, &o));
    CHECK_STR("poll", msk_loop_backend(loop));
    CHECK_EQ(-1, msk_loop_fd(loop));
    msk_loop_free(loop);
    o.backend = MSK_BACKEND_EPOLL;
    CHECK_EQ(0, msk_loop_new(&loop, &o));
    CHECK_STR("epoll", msk_loop_backend(loop));
    CHECK(msk_loop_fd(loop) >= 0);
    msk_loop_free(loop);

    setenv("MSK_BACKEND", "kqueue", 1);
    rc = msk_loop_new(&loop, NULL);
    CHECK_EQ(-EINVAL, rc);
    CHECK(loop == NULL);
    setenv("MSK_BACKEND", "poll", 1);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_STR("poll", msk_loop_backend(loop));
    msk_loop_free(loop);
    setenv("MSK_BACKEND", "epoll", 1);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_STR("epoll", msk_loop_backend(loop));
    msk_loop_free(loop);

    if (saved != NULL) {
        setenv("MSK_BACKEND", saved, 1);
        free(saved);
    } else {
        unsetenv("MSK_BACKEND");
    }
    return 0;
}

static int test_pipe_read_level_triggered(void)
{
    msk_loop *loop;
    int p[2], x = 7;
    char buf[8];

    reset();
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(p));
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_io, &x));
    CHECK_EQ(MSK_READ, msk_io_mask(loop, p[0]));
    CHECK_EQ(0, msk_loop_step(loop, 0));
    CHECK_EQ(0, calls);
    CHECK_EQ(1, write(p[1], "a", 1));
    CHECK_EQ(1, msk_loop_step(loop, 1000));
    CHECK_EQ(1, calls);
    CHECK_EQ(p[0], last_fd);
    CHECK_EQ(MSK_READ, last_events);
    CHECK(last_udata == &x);
    /* Not drained: still ready. */
    CHECK_EQ(1, msk_loop_step(loop, 0));
    CHECK_EQ(2, calls);
    CHECK_EQ(1, read(p[0], buf, sizeof buf));
    CHECK_EQ(0, msk_loop_step(loop, 0));
    CHECK_EQ(2, calls);
    msk_io_unwatch(loop, p[0]);
    CHECK_EQ(0, msk_io_mask(loop, p[0]));
    close(p[0]);
    close(p[1]);
    msk_loop_free(loop);
    return 0;
}

static int test_write_and_mask_change(void)
{
    msk_loop *loop;
    int sv[2];

    reset();
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    CHECK_EQ(0, msk_io_watch(loop, sv[0], MSK_READ | MSK_WRITE, on_io,
                             NULL));
    CHECK_EQ(1, msk_loop_step(loop, 0));
    CHECK_EQ(MSK_WRITE, last_events);
    CHECK_EQ(1, write(sv[1], "x", 1));
    CHECK_EQ(1, msk_loop_step(loop, 0));
    CHECK_EQ(MSK_READ | MSK_WRITE, last_events);
    /* Replace the mask: only READ is reported now. */
    CHECK_EQ(0, msk_io_watch(loop, sv[0], MSK_READ, on_io, NULL));
    CHECK_EQ(MSK_READ, msk_io_mask(loop, sv[0]));
    CHECK_EQ(1, msk_loop_step(loop, 0));
    CHECK_EQ(MSK_READ, last_events);
    /* Mask 0 is unwatch. */
    CHECK_EQ(0, msk_io_watch(loop, sv[0], 0, on_io, NULL));
    CHECK_EQ(0, msk_io_mask(loop, sv[0]));
    CHECK_EQ(0, msk_loop_step(loop, 0));
    close(sv[0]);
    close(sv[1]);
    msk_loop_free(loop);
    return 0;
}

static int test_hangup_reported(void)
{
    msk_loop *loop;
    int p[2];

    reset();
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(p));
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_io, NULL));
    close(p[1]);
    CHECK_EQ(1, msk_loop_step(loop, 1000));
    CHECK(last_events & MSK_READ);
    msk_io_unwatch(loop, p[0]);
    close(p[0]);
    msk_loop_free(loop);
    return 0;
}

static int test_bad_fds(void)
{
    msk_loop *loop;
    msk_loop_opts o = { 0, 16 };
    int p[2];

    CHECK_EQ(0, msk_loop_new(&loop, &o));
    CHECK_EQ(-EBADF, msk_io_watch(loop, -1, MSK_READ, on_io, NULL));
    CHECK_EQ(-ERANGE, msk_io_watch(loop, 16, MSK_READ, on_io, NULL));
    CHECK_EQ(0, pipe(p));
    close(p[1]);
    close(p[0]);                 /* p[0] is now a closed fd */
    CHECK_EQ(-EBADF, msk_io_watch(loop, p[0], MSK_READ, on_io, NULL));
    CHECK_EQ(0, msk_io_mask(loop, p[0]));
    msk_io_unwatch(loop, p[0]);  /* not watched: harmless */
    msk_io_unwatch(loop, 1000);
    CHECK_EQ(0, msk_io_mask(loop, 1000));
    msk_loop_free(loop);
    return 0;
}

/* Re-watching with the same mask must not reach the kernel: the fd is
 * closed behind the loop's back (which drops it from the epoll set), so
 * any epoll_ctl or fcntl would fail with EBADF. */
static int test_same_mask_is_noop(void)
{
    msk_loop *loop;
    int p[2], x;

    reset();
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(p));
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_io, NULL));
    close(p[0]);
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_io, &x));
    CHECK_EQ(MSK_READ, msk_io_mask(loop, p[0]));
    msk_io_unwatch(loop, p[0]);  /* DEL on a closed fd: ignored */
    CHECK_EQ(0, msk_io_mask(loop, p[0]));
    close(p[1]);
    msk_loop_free(loop);
    return 0;
}

static int self_calls;
static void on_unwatch_self(msk_loop *loop, int fd, unsigned ev, void *ud)
{
    (void)ev;
    (void)ud;
    self_calls++;
    msk_io_unwatch(loop, fd);
    close(fd);
}

static int test_unwatch_self_in_callback(void)
{
    msk_loop *loop;
    int p[2];

    self_calls = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(p));
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_unwatch_self, NULL));
    CHECK_EQ(1, write(p[1], "a", 1));
    /* run returns once nothing is watched. */
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(1, self_calls);
    CHECK_EQ(0, msk_io_mask(loop, p[0]));
    close(p[1]);
    msk_loop_free(loop);
    return 0;
}

/* Two pipes ready in the same pass; whichever runs first unwatches and
 * closes the other, whose collected event must then be dropped. If
 * reuse is set, it also opens a new pipe on the freed fd number and
 * watches it: the old owner's event must not reach the new owner. */
static int pa[2], pb[2], pc[2];
static int kill_calls, new_calls, reuse_mode, reused_ok, killed;

static void on_new_owner(msk_loop *loop, int fd, unsigned ev, void *ud)
{
    (void)loop;
    (void)fd;
    (void)ev;
    (void)ud;
    new_calls++;
}

static void on_killer(msk_loop *loop, int fd, unsigned ev, void *ud)
{
    int victim = fd == pa[0] ? pb[0] : pa[0];

    (void)ev;
    (void)ud;
    kill_calls++;
    if (kill_calls > 1)
        return;
    killed = victim;
    msk_io_unwatch(loop, victim);
    close(victim);
    if (reuse_mode) {
        if (pipe(pc) == 0) {
            reused_ok = pc[0] == victim;
            msk_io_watch(loop, pc[0], MSK_READ, on_new_owner, NULL);
        }
    }
}

static int run_kill_test(int reuse)
{
    msk_loop *loop;
    int victim, survivor;

    kill_calls = new_calls = reused_ok = 0;
    reuse_mode = reuse;
    pc[0] = pc[1] = -1;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(pa));
    CHECK_EQ(0, pipe(pb));
    CHECK_EQ(0, msk_io_watch(loop, pa[0], MSK_READ, on_killer, NULL));
    CHECK_EQ(0, msk_io_watch(loop, pb[0], MSK_READ, on_killer, NULL));
    CHECK_EQ(1, write(pa[1], "a", 1));
    CHECK_EQ(1, write(pb[1], "b", 1));
    /* Make sure both are ready before the single pass. */
    {
        struct pollfd f[2] = { { pa[0], POLLIN, 0 }, { pb[0], POLLIN, 0 } };
        CHECK_EQ(2, poll(f, 2, 1000));
    }
    CHECK_EQ(1, msk_loop_step(loop, 0));
    CHECK_EQ(1, kill_calls);
    CHECK_EQ(0, new_calls);
    if (reuse)
        CHECK(reused_ok);
    victim = killed;
    survivor = victim == pa[0] ? pb[0] : pa[0];
    msk_io_unwatch(loop, survivor);
    if (reuse) {
        /* The new owner still gets its own events, and only those. */
        CHECK_EQ(0, msk_loop_step(loop, 0));
        CHECK_EQ(0, new_calls);
        CHECK_EQ(1, write(pc[1], "c", 1));
        CHECK_EQ(1, msk_loop_step(loop, 1000));
        CHECK_EQ(1, new_calls);
        msk_io_unwatch(loop, pc[0]);
        close(pc[0]);
        close(pc[1]);
    } else {
        CHECK_EQ(0, msk_io_mask(loop, victim));
    }
    close(survivor);
    close(pa[1]);
    close(pb[1]);
    msk_loop_free(loop);
    return 0;
}

static int test_close_other_pending_in_pass(void)
{
    return run_kill_test(0);
}

static int test_reused_fd_gets_no_stale_event(void)
{
    return run_kill_test(1);
}

static int test_step_zero_never_blocks(void)
{
    msk_loop *loop;
    int p[2], i;
    int64_t t0;

    reset();
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(p));
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_io, NULL));
    t0 = msk_clock_ms();
    for (i = 0; i < 100; i++)
        CHECK_EQ(0, msk_loop_step(loop, 0));
    CHECK(msk_clock_ms() - t0 < 500);
    /* A bounded timeout is honoured: at least its length, not forever. */
    t0 = msk_clock_ms();
    CHECK_EQ(0, msk_loop_step(loop, 30));
    CHECK(msk_clock_ms() - t0 >= 29);
    CHECK(msk_clock_ms() - t0 < 1000);
    msk_io_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    /* With nothing at all, step(-1) returns at once. */
    CHECK_EQ(0, msk_loop_step(loop, -1));
    CHECK_EQ(0, msk_loop_run(loop));
    msk_loop_free(loop);
    return 0;
}

static int test_loop_fd_readable(void)
{
    msk_loop *loop;
    struct pollfd f;
    int p[2];

    reset();
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(p));
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_io, NULL));
    if (!is_epoll(loop)) {
        CHECK_EQ(-1, msk_loop_fd(loop));
    } else {
        f.fd = msk_loop_fd(loop);
        f.events = POLLIN;
        CHECK(f.fd >= 0);
        CHECK_EQ(0, poll(&f, 1, 0));
        CHECK_EQ(1, write(p[1], "a", 1));
        CHECK_EQ(1, poll(&f, 1, 1000));
        CHECK(f.revents & POLLIN);
        CHECK_EQ(1, msk_loop_step(loop, 0));
        CHECK_EQ(1, calls);
    }
    msk_io_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    msk_loop_free(loop);
    return 0;
}

static int stop_calls;
static void on_stop(msk_loop *loop, int fd, unsigned ev, void *ud)
{
    (void)fd;
    (void)ev;
    (void)ud;
    if (++stop_calls == 3)
        msk_loop_stop(loop);
}

static int test_run_until_stop(void)
{
    msk_loop *loop;
    int p[2];

    stop_calls = 0;
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, pipe(p));
    CHECK_EQ(1, write(p[1], "a", 1));   /* never drained: always ready */
    CHECK_EQ(0, msk_io_watch(loop, p[0], MSK_READ, on_stop, NULL));
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(3, stop_calls);
    /* stop does not stick: run again stops at the 3rd call again... */
    msk_loop_stop(loop);
    stop_calls = 0;
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(3, stop_calls);
    msk_io_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    msk_loop_free(loop);
    return 0;
}

/* More ready fds than the first epoll events array holds, and a table
 * that must grow past its first size. */
#define NPIPES 300
static int many_seen[NPIPES];
static void on_many(msk_loop *loop, int fd, unsigned ev, void *ud)
{
    char c;
    int i = (int)(intptr_t)ud;

    (void)ev;
    if (read(fd, &c, 1) == 1)
        many_seen[i]++;
    msk_io_unwatch(loop, fd);
}

static int test_many_fds(void)
{
    msk_loop *loop;
    static int p[NPIPES][2];
    int i, made = 0, total = 0, passes = 0;

    memset(many_seen, 0, sizeof many_seen);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    for (i = 0; i < NPIPES; i++) {
        if (pipe(p[i]) != 0)
            break;               /* a low RLIMIT_NOFILE: test fewer */
        made++;
        CHECK_EQ(0, msk_io_watch(loop, p[i][0], MSK_READ, on_many,
                                 (void *)(intptr_t)i));
        CHECK_EQ(1, write(p[i][1], "m", 1));
    }
    CHECK(made >= 100);
    while (total < made && passes < 10) {
        int rc = msk_loop_step(loop, 1000);
        CHECK(rc >= 0);
        total += rc;
        passes++;
    }
    CHECK_EQ(made, total);
    for (i = 0; i < made; i++) {
        CHECK_EQ(1, many_seen[i]);
        close(p[i][0]);
        close(p[i][1]);
    }
    msk_loop_free(loop);
    return 0;
}

static int test_strerror(void)
{
    CHECK(strstr(msk_strerror(-ENOENT), "No such file") != NULL);
    CHECK(strstr(msk_strerror(-EAGAIN), "unavailable") != NULL);
    CHECK_STR("end of file", msk_strerror(MSK_EOF));
    CHECK(msk_strerror(MSK_EBUSY) != NULL);
    CHECK(MSK_IS_EAI(MSK_EAI_BASE + EAI_NONAME));
    CHECK_STR(gai_strerror(EAI_NONAME),
              msk_strerror(MSK_EAI_BASE + EAI_NONAME));
    CHECK(msk_strerror(0) != NULL);
    CHECK(msk_strerror(MSK_EBASE - 500) != NULL);
    return 0;
}

static int test_clock(void)
{
    int64_t a = msk_clock_ms(), an = msk_clock_ns(), b, bn;

    usleep(20000);
    b = msk_clock_ms();
    bn = msk_clock_ns();
    CHECK(b - a >= 19);
    CHECK(b - a < 2000);
    CHECK(bn - an >= 19000000);
    CHECK(bn / 1000000 - b <= 1);
    return 0;
}

TEST_MAIN(TEST(test_backend_selection),
          TEST(test_pipe_read_level_triggered),
          TEST(test_write_and_mask_change),
          TEST(test_hangup_reported),
          TEST(test_bad_fds),
          TEST(test_same_mask_is_noop),
          TEST(test_unwatch_self_in_callback),
          TEST(test_close_other_pending_in_pass),
          TEST(test_reused_fd_gets_no_stale_event),
          TEST(test_step_zero_never_blocks),
          TEST(test_loop_fd_readable),
          TEST(test_run_until_stop),
          TEST(test_many_fds),
          TEST(test_strerror),
          TEST(test_clock))
