/*
 * proc_test.c -- child processes: exit codes and signals as Python's
 * returncode, pipes, /dev/null and stderr-to-stdout, cwd and env, a
 * process group per child, only fds 0-2 inherited, killpg reaching a
 * grandchild, reaping of freed (detached) children, spawn errors, and
 * msk_loop_run() ending once no child is left. Runs under both backends
 * (signalfd or self-pipe SIGCHLD) and under ASan.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "msk.h"
#include "test.h"

static int exited, exit_code;

static void on_exit_cb(msk_proc *p, int code, void *udata)
{
    (void)p;
    (void)udata;
    exited++;
    exit_code = code;
}

/* Step until the callback ran or about five seconds passed. */
static int wait_exit(msk_loop *loop)
{
    int i;
    for (i = 0; i < 500 && exited == 0; i++)
        if (msk_loop_step(loop, 10) < 0)
            return -1;
    return exited;
}

static int spawn_sh(msk_loop *loop, msk_proc **pp, const char *script,
                    msk_proc_opts *o, int fds[3])
{
    char *argv[] = { "sh", "-c", (char *)script, NULL };
    o->argv = argv;
    exited = 0;
    exit_code = -1000;
    return msk_proc_spawn(loop, pp, o, fds, on_exit_cb, NULL);
}

/* Read fd (non-blocking) to end of file through the loop's clock. */
static int read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n > 0) {
            got += (size_t)n;
            if (got == cap - 1)
                break;
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN) {
            if (msk_fd_wait(fd, MSK_READ, 5000) <= 0)
                return -1;
        } else {
            return -1;
        }
    }
    buf[got] = '\0';
    return (int)got;
}

static int test_exit_codes(void)
{
    msk_loop *loop;
    msk_proc *p;
    msk_proc_opts o;
    int code;

    memset(&o, 0, sizeof o);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, spawn_sh(loop, &p, "exit 7", &o, NULL));
    CHECK(msk_proc_pid(p) > 0);
    CHECK_EQ(0, msk_proc_done(p, NULL));
    CHECK_EQ(1, wait_exit(loop));
    CHECK_EQ(7, exit_code);
    CHECK_EQ(1, msk_proc_done(p, &code));
    CHECK_EQ(7, code);
    CHECK_EQ(-ESRCH, msk_proc_kill(p, SIGTERM));   /* reaped: no signal */
    CHECK_EQ(0, msk_proc_count(loop));
    msk_proc_free(p);

    /* A signal gives -signo, as Python's returncode. */
    /* exec: so the signal reaches sleep itself, and no grandchild
     * outlives the test holding its stdout. */
    CHECK_EQ(0, spawn_sh(loop, &p, "exec sleep 10", &o, NULL));
    CHECK_EQ(0, msk_proc_kill(p, SIGKILL));
    CHECK_EQ(1, wait_exit(loop));
    CHECK_EQ(-SIGKILL, exit_code);
    msk_proc_free(p);
    msk_loop_free(loop);
    return 0;
}

static int test_pipes_and_merge(void)
{
    msk_loop *loop;
    msk_proc *p;
    msk_proc_opts o;
    int fds[3];
    char buf[256];

    memset(&o, 0, sizeof o);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    o.stdio[0].how = MSK_STDIO_PIPE;
    o.stdio[1].how = MSK_STDIO_PIPE;
    o.stdio[2].how = MSK_STDIO_PIPE;
    CHECK_EQ(0, spawn_sh(loop, &p, "read x; echo out:$x; echo err:$x >&2",
                         &o, fds));
    CHECK(fds[0] >= 3 && fds[1] >= 3 && fds[2] >= 3);
    CHECK(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
    CHECK_EQ(4, write(fds[0], "abc\n", 4));
    close(fds[0]);
    CHECK_EQ(8, read_all(fds[1], buf, sizeof buf));
    CHECK_STR("out:abc\n", buf);
    CHECK_EQ(8, read_all(fds[2], buf, sizeof buf));
    CHECK_STR("err:abc\n", buf);
    close(fds[1]);
    close(fds[2]);
    CHECK_EQ(1, wait_exit(loop));
    CHECK_EQ(0, exit_code);
    msk_proc_free(p);

    /* stderr to stdout; stdin from /dev/null reads end of file. */
    o.stdio[0].how = MSK_STDIO_DEVNULL;
    o.stdio[2].how = MSK_STDIO_STDOUT;
    CHECK_EQ(0, spawn_sh(loop, &p, "cat; echo a; echo b >&2", &o, fds));
    CHECK_EQ(-1, fds[0]);
    CHECK_EQ(-1, fds[2]);
    CHECK_EQ(4, read_all(fds[1], buf, sizeof buf));
    CHECK_STR("a\nb\n", buf);
    close(fds[1]);
    CHECK_EQ(1, wait_exit(loop));
    msk_proc_free(p);
    msk_loop_free(loop);
    return 0;
}

/* Read from fd until n newlines arrived (five seconds at most). */
static int read_lines(int fd, char *buf, size_t cap, int n)
{
    size_t got = 0;
    memset(buf, 0, cap);
    while (got < cap - 1) {
        int lines = 0;
        size_t i;
        ssize_t r;
        for (i = 0; i < got; i++)
            lines += buf[i] == '\n';
        if (lines >= n)
            return 0;
        if (msk_fd_wait(fd, MSK_READ, 5000) <= 0)
            return -1;
        r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0 && !(r < 0 && errno == EAGAIN))
            return -1;
        if (r > 0)
            got += (size_t)r;
    }
    return -1;
}

static int count_fds(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    if ((d = opendir(path)) == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int test_env_cwd_fds_pgroup(void)
{
    msk_loop *loop;
    msk_proc *p;
    msk_proc_opts o;
    int fds[3], leak;
    char buf[512];
    char *envp[] = { "ONLY=this", "PATH=/usr/bin:/bin", NULL };

    memset(&o, 0, sizeof o);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    /* A descriptor without close-on-exec must still not reach the
     * child. */
    leak = open("/dev/null", O_RDONLY);
    CHECK(leak >= 3);
    o.envp = envp;
    o.cwd = "/";
    o.stdio[1].how = MSK_STDIO_PIPE;
    CHECK_EQ(0, spawn_sh(loop, &p,
        "echo \"$ONLY $(pwd) $HOME\"; ps -o pgid= -p $$ | tr -d ' ';"
        " exec sleep 5", &o, fds));
    CHECK(read_lines(fds[1], buf, sizeof buf, 2) == 0);
    {
        char want[128];
        snprintf(want, sizeof want, "this / \n%d\n",
                 (int)msk_proc_pid(p));
        CHECK_STR(want, buf);
    }
    /* Its fd table, seen from outside while it sleeps (sleep may hold a
     * locale file open for a moment as it starts). */
    {
        int i, n = -1;
        for (i = 0; i < 40 && n != 3; i++) {
            usleep(50000);
            n = count_fds(msk_proc_pid(p));
        }
        CHECK_EQ(3, n);
    }
    CHECK_EQ(0, msk_proc_kill(p, SIGKILL));
    close(fds[1]);
    close(leak);
    CHECK_EQ(1, wait_exit(loop));
    msk_proc_free(p);
    msk_loop_free(loop);
    return 0;
}

static int test_killpg_reaches_grandchild(void)
{
    msk_loop *loop;
    msk_proc *p;
    msk_proc_opts o;
    int fds[3];
    char buf[64];
    pid_t gc;

    memset(&o, 0, sizeof o);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    o.stdio[1].how = MSK_STDIO_PIPE;
    CHECK_EQ(0, spawn_sh(loop, &p, "sleep 1000 & echo $!; wait", &o, fds));
    CHECK_EQ(0, msk_fd_wait(fds[1], MSK_READ, 5000) > 0 ? 0 : 1);
    CHECK(read(fds[1], buf, sizeof buf - 1) > 0);
    gc = (pid_t)atoi(buf);
    CHECK(gc > 0);
    CHECK_EQ(msk_proc_pid(p), getpgid(gc));
    CHECK_EQ(0, msk_proc_killpg(p, SIGKILL));
    CHECK_EQ(1, wait_exit(loop));
    CHECK_EQ(-SIGKILL, exit_code);
    /* The grandchild died too (init reaps it): its pipe end closed. */
    CHECK_EQ(0, read_all(fds[1], buf, sizeof buf));
    close(fds[1]);
    msk_proc_free(p);
    msk_loop_free(loop);
    return 0;
}

static int test_detached_is_reaped(void)
{
    msk_loop *loop;
    msk_proc *p;
    msk_proc_opts o;
    pid_t pid;
    char path[64];
    struct stat st;
    int i;

    memset(&o, 0, sizeof o);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(0, spawn_sh(loop, &p, "sleep 0.05", &o, NULL));
    pid = msk_proc_pid(p);
    msk_proc_free(p);                    /* still running: detached */
    CHECK_EQ(1, msk_proc_count(loop));
    /* The loop keeps running while a child is alive, then ends. */
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(0, msk_proc_count(loop));
    CHECK_EQ(0, exited);                 /* fn dropped with the record */
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    for (i = 0; i < 100 && stat(path, &st) == 0; i++)
        usleep(10000);
    CHECK(stat(path, &st) < 0);          /* no zombie left */
    msk_loop_free(loop);
    return 0;
}

static int test_spawn_errors(void)
{
    msk_loop *loop;
    msk_proc *p = (msk_proc *)&p;
    msk_proc_opts o;
    char *argv[] = { "no-such-program-here", NULL };
    char *argv2[] = { "/etc/passwd", NULL };
    int fds[3];

    memset(&o, 0, sizeof o);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    o.argv = argv;
    o.stdio[1].how = MSK_STDIO_PIPE;
    CHECK_EQ(-ENOENT, msk_proc_spawn(loop, &p, &o, fds, NULL, NULL));
    CHECK(p == NULL);
    CHECK_EQ(-1, fds[1]);
    o.argv = argv2;
    CHECK_EQ(-EACCES, msk_proc_spawn(loop, &p, &o, fds, NULL, NULL));
    o.argv = NULL;
    CHECK_EQ(-EINVAL, msk_proc_spawn(loop, &p, &o, fds, NULL, NULL));
    CHECK_EQ(0, msk_proc_count(loop));
    CHECK_EQ(0, msk_loop_run(loop));     /* nothing watched: returns */
    msk_loop_free(loop);
    return 0;
}

/* Many short children at once: every one is reaped exactly once, though
 * their SIGCHLDs coalesce. */
static int test_many_children(void)
{
    msk_loop *loop;
    msk_proc *ps[32];
    msk_proc_opts o;
    int i, code;

    memset(&o, 0, sizeof o);
    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    for (i = 0; i < 32; i++) {
        char script[32];
        char *argv[] = { "sh", "-c", script, NULL };
        snprintf(script, sizeof script, "exit %d", i);
        o.argv = argv;
        CHECK_EQ(0, msk_proc_spawn(loop, &ps[i], &o, NULL, NULL, NULL));
    }
    CHECK_EQ(0, msk_loop_run(loop));
    for (i = 0; i < 32; i++) {
        CHECK_EQ(1, msk_proc_done(ps[i], &code));
        CHECK_EQ(i, code);
        msk_proc_free(ps[i]);
    }
    msk_loop_free(loop);
    return 0;
}

int main(void)
{
    static const test_case tests[] = {
        TEST(test_exit_codes),
        TEST(test_pipes_and_merge),
        TEST(test_env_cwd_fds_pgroup),
        TEST(test_killpg_reaches_grandchild),
        TEST(test_detached_is_reaped),
        TEST(test_spawn_errors),
        TEST(test_many_children),
        { NULL, NULL }
    };
    return test_run(tests);
}
