/*
 * workers.c -- `moonsock --workers N`: a supervisor and N worker processes.
 *
 * One process is one loop on one core (DESIGN.md). To use more cores the
 * program forks N workers before anything else exists -- no loop, no Lua
 * state, no socket -- so each worker starts exactly as a lone moonsock
 * would, binds its own SO_REUSEPORT listeners and lets the kernel spread
 * connections over them. The parent stays a small supervisor with no
 * event loop: it waits for signals with sigwaitinfo and
 *   - passes SIGHUP (reload) to every worker,
 *   - on SIGTERM or SIGINT passes SIGTERM on, waits for the workers' own
 *     graceful stop, and exits 0,
 *   - restarts a worker that dies: crashed, killed, or exited non-zero.
 * A worker that exits non-zero within RESTART_FAST_MS of its first start
 * has met a start-up error (a bad script, a port in use) that every worker
 * would meet, so the supervisor stops them all and exits with its status
 * instead of retrying; MAX_FAST_FAILS failures in a row, each within
 * RESTART_FAST_MS of its start, mean a crash loop and end the program the
 * same way. A worker that exits 0 by
 * itself (a script that is a program, not a server) is done and not
 * restarted; when all are done the supervisor exits 0.
 *
 * Workers die with the supervisor (PR_SET_PDEATHSIG), so a killed
 * supervisor never leaves orphans serving on its port. With N workers
 * stdin is /dev/null in each: N readers of one terminal would split its
 * lines at random.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workers.h"

#define RESTART_FAST_MS 1000
#define MAX_FAST_FAILS 5

typedef struct worker {
    pid_t pid;           /* 0: not running */
    long long started;   /* monotonic ms of its last start */
    int starts;          /* how many times it was started */
    int done;            /* exited 0 by itself: not restarted */
} worker;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moonsock: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    va_end(ap);
}

static void describe(int st, char *buf, size_t len)
{
    if (WIFEXITED(st))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    else
        snprintf(buf, len, "stopped (status %#x)", st);
}

static void signal_all(const worker *w, int n, int signo)
{
    for (int i = 0; i < n; i++)
        if (w[i].pid > 0)
            kill(w[i].pid, signo);
}

/* Fork worker i. Returns 0 in the supervisor, 1 in the new worker, -1 if
 * fork failed. */
static int start(worker *w, int i, pid_t supervisor, const sigset_t *old)
{
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != supervisor)       /* it died before the prctl */
            _exit(EXIT_FAILURE);
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 0);
            if (fd != 0)
                close(fd);
        }
        sigprocmask(SIG_SETMASK, old, NULL);
        return 1;
    }
    w[i].pid = pid;
    w[i].started = now_ms();
    w[i].starts++;
    return 0;
}

int msk_workers_run(int n, int *worker_no)
{
    worker *w = calloc((size_t)n, sizeof *w);
    if (w == NULL) {
        say("--workers: out of memory");
        return EXIT_FAILURE;
    }
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t self = getpid();

    int stopping = 0, status = EXIT_SUCCESS, fast_fails = 0;
    for (int i = 0; i < n; i++) {
        int rc = start(w, i, self, &old);
        if (rc == 1) {
            *worker_no = i + 1;
            free(w);
            return -1;
        }
        if (rc < 0) {
            say("--workers: cannot start worker %d: %s", i + 1,
                strerror(errno));
            stopping = 1;
            status = EXIT_FAILURE;
            signal_all(w, n, SIGTERM);
            break;
        }
    }
    for (;;) {
        int live = 0;
        for (int i = 0; i < n; i++)
            live += w[i].pid > 0;
        if (live == 0)
            break;
        siginfo_t si;
        int signo = sigwaitinfo(&set, &si);
        if (signo < 0)
            continue;                       /* EINTR */
        if (signo == SIGHUP) {
            signal_all(w, n, SIGHUP);
            continue;
        }
        if (signo == SIGTERM || signo == SIGINT) {
            stopping = 1;
            signal_all(w, n, SIGTERM);
            continue;
        }
        /* SIGCHLD: reap every worker that has ended. */
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            int i = 0;
            while (i < n && w[i].pid != pid)
                i++;
            if (i == n)
                continue;
            w[i].pid = 0;
            if (stopping)
                continue;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                w[i].done = 1;
                continue;
            }
            char what[96];
            describe(st, what, sizeof what);
            int fast = now_ms() - w[i].started < RESTART_FAST_MS;
            fast_fails = fast ? fast_fails + 1 : 0;
            int startup = fast && w[i].starts == 1 && WIFEXITED(st);
            if (startup || fast_fails >= MAX_FAST_FAILS) {
                say("worker %d (pid %d) %s %s; stopping", i + 1, (int)pid,
                    what, startup ? "at start-up"
                                  : "again right after a restart");
                stopping = 1;
                status = WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_FAILURE;
                signal_all(w, n, SIGTERM);
                continue;
            }
            say("worker %d (pid %d) %s; restarting it", i + 1, (int)pid,
                what);
            int rc = start(w, i, self, &old);
            if (rc == 1) {
                *worker_no = i + 1;
                free(w);
                return -1;
            }
            if (rc < 0) {
                say("--workers: cannot restart worker %d: %s", i + 1,
                    strerror(errno));
                stopping = 1;
                status = EXIT_FAILURE;
                signal_all(w, n, SIGTERM);
            }
        }
    }
    free(w);
    return status;
}
