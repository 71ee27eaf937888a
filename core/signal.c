/*
 * signal.c -- signals delivered as loop events, never from signal context.
 *
 * With the epoll backend a watched signal is blocked for the calling
 * thread and read from a signalfd that the loop watches. With the poll
 * backend (or where signalfd fails) a handler sets a flag and writes a
 * byte to a self-pipe the loop watches. Either way arrivals coalesce: the
 * callback runs once per pass in which the signal arrived. Unwatching
 * restores the signal's previous disposition and blocked state.
 *
 * Process-wide state, by necessity: a signal handler cannot find a loop
 * by itself, so two tables indexed by signal number record which loop owns
 * each signal (one loop per signal in a process; a second gets MSK_EBUSY)
 * and, for the self-pipe, the write fd and an arrival flag. Nothing else
 * is global. The core installs handlers only when asked to watch.
 * Real-time signal queuing, siginfo and SIGCHLD reaping are left out.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "loop_internal.h"

#ifndef NSIG
#define NSIG 65
#endif

/* The process-wide tables described above. sig_wfd holds fd + 1, so the
 * zero it starts with means "no pipe". */
static msk_loop *sig_owner[NSIG];
static volatile sig_atomic_t sig_wfd[NSIG];
static volatile sig_atomic_t sig_hit[NSIG];

typedef struct sig_watch {
    msk_signal_fn   *fn;
    void            *udata;
    int              watched;
    int              pending;
    int              was_blocked;
    struct sigaction old;
} sig_watch;

struct msk__signals {
    int       use_sfd;      /* 1: signalfd, 0: self-pipe */
    int       rfd;          /* the signalfd, or the pipe's read end */
    int       wfd;          /* the pipe's write end, or -1 */
    int       nwatched;
    sigset_t  set;          /* what the signalfd reads */
    sig_watch w[NSIG];
};

static void on_signal(int signo)
{
    int saved = errno, fd = (int)sig_wfd[signo] - 1;
    unsigned char b = (unsigned char)signo;

    sig_hit[signo] = 1;
    if (fd >= 0) {
        ssize_t r = write(fd, &b, 1);   /* full pipe: already awake */
        (void)r;
    }
    errno = saved;
}

/* The watch fd is readable: gather what arrived, then run each callback
 * once. Callbacks may unwatch any signal; the table stays allocated until
 * the loop is freed, so iterating it remains safe. */
static void on_fd(msk_loop *loop, int fd, unsigned events, void *udata)
{
    msk__signals *s = udata;
    int i;

    (void)events;
    if (s->use_sfd) {
        struct signalfd_siginfo si[16];
        ssize_t n;
        while ((n = read(fd, si, sizeof si)) > 0) {
            for (i = 0; i < (int)(n / (ssize_t)sizeof si[0]); i++) {
                int signo = (int)si[i].ssi_signo;
                if (signo > 0 && signo < NSIG)
                    s->w[signo].pending = 1;
            }
        }
    } else {
        /* Drain first, then read the flags: a signal landing in between
         * leaves a byte behind and wakes the next pass. */
        char buf[64];
        while (read(fd, buf, sizeof buf) > 0)
            ;
        for (i = 1; i < NSIG; i++) {
            if (s->w[i].watched && sig_hit[i]) {
                sig_hit[i] = 0;
                s->w[i].pending = 1;
            }
        }
    }
    for (i = 1; i < NSIG; i++) {
        sig_watch *w = &s->w[i];
        if (w->pending && w->watched) {
            w->pending = 0;
            w->fn(loop, i, w->udata);
        }
    }
}

static int sig_setup(msk_loop *loop)
{
    msk__signals *s = loop->sig;
    int p[2];

    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return -ENOMEM;
        s->rfd = s->wfd = -1;
        sigemptyset(&s->set);
        if (loop->backend == &msk__backend_epoll) {
            s->rfd = signalfd(-1, &s->set, SFD_NONBLOCK | SFD_CLOEXEC);
            s->use_sfd = s->rfd >= 0;
        }
        if (s->rfd < 0) {
            if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
                int err = -errno;
                free(s);
                return err;
            }
            s->rfd = p[0];
            s->wfd = p[1];
        }
        loop->sig = s;
    }
    if (msk_io_mask(loop, s->rfd) == 0)
        return msk_io_watch(loop, s->rfd, MSK_READ, on_fd, s);
    return 0;
}

int msk_signal_watch(msk_loop *loop, int signo, msk_signal_fn *fn,
                     void *udata)
{
    msk__signals *s;
    sig_watch *w;
    sigset_t one, cur;
    msk_loop *expect = NULL;
    int rc;

    if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP
        || fn == NULL)
        return -EINVAL;
    if (loop->sig != NULL && loop->sig->w[signo].watched) {
        loop->sig->w[signo].fn = fn;
        loop->sig->w[signo].udata = udata;
        return 0;
    }
    if (!__atomic_compare_exchange_n(&sig_owner[signo], &expect, loop, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return MSK_EBUSY;
    if ((rc = sig_setup(loop)) < 0) {
        __atomic_store_n(&sig_owner[signo], NULL, __ATOMIC_RELEASE);
        return rc;
    }
    s = loop->sig;
    w = &s->w[signo];
    sigemptyset(&one);
    sigaddset(&one, signo);
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    w->was_blocked = sigismember(&cur, signo);
    sigaction(signo, NULL, &w->old);

    if (s->use_sfd) {
        sigaddset(&s->set, signo);
        if (signalfd(s->rfd, &s->set, SFD_NONBLOCK | SFD_CLOEXEC) < 0) {
            rc = -errno;
            sigdelset(&s->set, signo);
            goto fail;
        }
        pthread_sigmask(SIG_BLOCK, &one, NULL);
        /* An ignored signal is discarded even while blocked. */
        if (w->old.sa_handler == SIG_IGN
            && !(w->old.sa_flags & SA_SIGINFO)) {
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            sigemptyset(&dfl.sa_mask);
            sigaction(signo, &dfl, NULL);
        }
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigfillset(&sa.sa_mask);
        sig_hit[signo] = 0;
        sig_wfd[signo] = s->wfd + 1;
        if (sigaction(signo, &sa, NULL) < 0) {
            rc = -errno;
            sig_wfd[signo] = 0;
            goto fail;
        }
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
    w->fn = fn;
    w->udata = udata;
    w->pending = 0;
    w->watched = 1;
    s->nwatched++;
    return 0;

fail:
    if (s->nwatched == 0)
        msk_io_unwatch(loop, s->rfd);
    __atomic_store_n(&sig_owner[signo], NULL, __ATOMIC_RELEASE);
    return rc;
}

int msk_signal_unwatch(msk_loop *loop, int signo)
{
    msk__signals *s = loop->sig;
    sig_watch *w;
    sigset_t one;

    if (signo <= 0 || signo >= NSIG)
        return -EINVAL;
    if (s == NULL || !s->w[signo].watched)
        return -ENOENT;
    w = &s->w[signo];
    sigemptyset(&one);
    sigaddset(&one, signo);
    if (s->use_sfd) {
        sigdelset(&s->set, signo);
        signalfd(s->rfd, &s->set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (!w->was_blocked) {
            /* Swallow arrivals we never read, or unblocking would deliver
             * them to the old disposition (perhaps: terminate). */
            struct timespec zero = { 0, 0 };
            while (sigtimedwait(&one, NULL, &zero) == signo)
                ;
        }
        sigaction(signo, &w->old, NULL);
        if (!w->was_blocked)
            pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    } else {
        sigaction(signo, &w->old, NULL);
        sig_wfd[signo] = 0;
        sig_hit[signo] = 0;
        if (w->was_blocked)
            pthread_sigmask(SIG_BLOCK, &one, NULL);
    }
    w->watched = 0;
    w->pending = 0;
    w->fn = NULL;
    w->udata = NULL;
    __atomic_store_n(&sig_owner[signo], NULL, __ATOMIC_RELEASE);
    /* With nothing watched the fd must not keep msk_loop_run() going.
     * The fds stay open for the next watch and close with the loop. */
    if (--s->nwatched == 0)
        msk_io_unwatch(loop, s->rfd);
    return 0;
}

void msk_signal_ignore_sigpipe(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

void msk__signal_fini(msk_loop *loop)
{
    msk__signals *s = loop->sig;
    int i;

    if (s == NULL)
        return;
    for (i = 1; i < NSIG; i++)
        if (s->w[i].watched)
            msk_signal_unwatch(loop, i);
    msk_io_unwatch(loop, s->rfd);
    close(s->rfd);
    if (s->wfd >= 0)
        close(s->wfd);
    free(s);
    loop->sig = NULL;
}
