/*
 * sock.c -- non-blocking sockets: one msk_sock_* function per BSD call.
 *
 * An msk_sock is a malloc'd box around an fd with its family and type. Every
 * socket made here is non-blocking and close-on-exec from birth (the
 * SOCK_NONBLOCK/SOCK_CLOEXEC flags, accept4), every send passes
 * MSG_NOSIGNAL, and EINTR is retried everywhere except close(). Failures
 * come back as -errno; -EAGAIN means "wait for readiness", which is the
 * caller's job: nothing here waits on a loop. msk_fd_wait() is the one
 * blocking helper, a poll(2) on a single fd for use outside any loop.
 * Names and addresses live in addr.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "msk.h"

struct msk_sock {
    int fd;
    int family;
    int type;
};

/* Connection errors accept(2) may pass up from the new socket; Linux
 * documents them as "treat like EAGAIN by retrying". Bounded, so a storm of
 * aborted connections cannot pin the caller inside one accept. */
#define ACCEPT_RETRIES 16

#define SOCK_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)

/* -errno with EWOULDBLOCK folded into EAGAIN, for systems where they
 * differ; callers test only -EAGAIN. */
static int neg_errno(void)
{
    int e = errno;
#if EWOULDBLOCK != EAGAIN
    if (e == EWOULDBLOCK)
        e = EAGAIN;
#endif
    return -e;
}

static msk_sock *sock_new(int fd, int family, int type)
{
    msk_sock *s = malloc(sizeof *s);

    if (s != NULL) {
        s->fd = fd;
        s->family = family;
        s->type = type;
    }
    return s;
}

int msk_sock_open(msk_sock **sp, int family, int type, int protocol)
{
    msk_sock *s;
    int fd;

    *sp = NULL;
    /* Allocate first, so running out of memory cannot cost an fd. */
    s = sock_new(-1, family, type & ~SOCK_FLAGS);
    if (s == NULL)
        return -ENOMEM;
    fd = socket(family, type | SOCK_FLAGS, protocol);
    if (fd < 0) {
        int rc = neg_errno();
        free(s);
        return rc;
    }
    s->fd = fd;
    *sp = s;
    return 0;
}

int msk_sock_adopt(msk_sock **sp, int fd, int family, int type)
{
    msk_sock *s;
    int rc;

    *sp = NULL;
    if (fd < 0)
        return -EBADF;
    if (family == -1) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        ss.ss_family = AF_UNSPEC;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
            return neg_errno();
        family = ss.ss_family;
    }
    if (type == -1) {
        socklen_t len = sizeof type;

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
            return neg_errno();
    }
    s = sock_new(fd, family, type & ~SOCK_FLAGS);
    if (s == NULL)
        return -ENOMEM;
    if ((rc = msk_fd_nonblock(fd, 1)) < 0 ||
        (rc = msk_fd_cloexec(fd, 1)) < 0) {
        free(s);
        return rc;
    }
    *sp = s;
    return 0;
}

int msk_sock_pair(msk_sock **ap, msk_sock **bp, int family, int type,
                  int protocol)
{
    msk_sock *a, *b;
    int sv[2];

    *ap = *bp = NULL;
    a = sock_new(-1, family, type & ~SOCK_FLAGS);
    b = sock_new(-1, family, type & ~SOCK_FLAGS);
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return -ENOMEM;
    }
    if (socketpair(family, type | SOCK_FLAGS, protocol, sv) < 0) {
        int rc = neg_errno();
        free(a);
        free(b);
        return rc;
    }
    a->fd = sv[0];
    b->fd = sv[1];
    *ap = a;
    *bp = b;
    return 0;
}

void msk_sock_close(msk_sock *s)
{
    if (s == NULL)
        return;
    /* Never retried: on Linux the fd is released even when close reports
     * EINTR, and a retry could close an fd another thread just opened. */
    (void)close(s->fd);
    free(s);
}

int msk_sock_detach(msk_sock *s)
{
    int fd;

    if (s == NULL)
        return -EBADF;
    fd = s->fd;
    free(s);
    return fd;
}

int msk_sock_fd(const msk_sock *s)
{
    return s->fd;
}

int msk_sock_family(const msk_sock *s)
{
    return s->family;
}

int msk_sock_type(const msk_sock *s)
{
    return s->type;
}

int msk_sock_bind(msk_sock *s, const msk_addr *a)
{
    while (bind(s->fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        if (errno != EINTR)
            return neg_errno();
    }
    return 0;
}

int msk_sock_listen(msk_sock *s, int backlog)
{
    while (listen(s->fd, backlog) < 0) {
        if (errno != EINTR)
            return neg_errno();
    }
    return 0;
}

/* Errors from the new connection, not from the listening socket. */
static int accept_transient(int e)
{
    switch (e) {
    case ECONNABORTED:
    case ENETDOWN:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
#ifdef ENONET
    case ENONET:
#endif
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return 1;
    default:
        return 0;
    }
}

int msk_sock_accept(msk_sock *s, msk_sock **out, msk_addr *peer)
{
    struct sockaddr_storage ss;
    socklen_t len;
    msk_sock *c;
    int fd, tries = 0;

    *out = NULL;
    /* Box first (as cqueues' lso_accept does): once accepted, a connection
     * must never be dropped for want of memory. */
    c = sock_new(-1, s->family, s->type);
    if (c == NULL)
        return -ENOMEM;
    for (;;) {
        len = sizeof ss;
        fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_FLAGS);
        if (fd >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (accept_transient(errno) && ++tries < ACCEPT_RETRIES)
            continue;
        {
            /* After too many transient failures, report "nothing yet":
             * the caller waits for MSK_READ and tries again. EMFILE and
             * ENFILE pass through; the connection stays queued. */
            int rc = accept_transient(errno) ? -EAGAIN : neg_errno();
            free(c);
            return rc;
        }
    }
    c->fd = fd;
    if (peer != NULL) {
        peer->ss = ss;
        peer->len = len;
    }
    *out = c;
    return 0;
}

int msk_sock_connect(msk_sock *s, const msk_addr *a)
{
    if (connect(s->fd, (const struct sockaddr *)&a->ss, a->len) == 0)
        return 0;
    /* An interrupted connect keeps going in the background, and calling it
     * again gives EALREADY; so EINTR is the same as EINPROGRESS here. */
    if (errno == EINTR)
        return -EINPROGRESS;
    return neg_errno();
}

int msk_sock_connect_result(msk_sock *s)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return neg_errno();
    return -err;
}

ssize_t msk_sock_recv(msk_sock *s, void *buf, size_t len)
{
    ssize_t n;

    if (len == 0)
        return 0;
    while ((n = recv(s->fd, buf, len, 0)) < 0) {
        if (errno != EINTR)
            return neg_errno();
    }
    return n;
}

ssize_t msk_sock_send(msk_sock *s, const void *buf, size_t len)
{
    ssize_t n;

    while ((n = send(s->fd, buf, len, MSG_NOSIGNAL)) < 0) {
        if (errno != EINTR)
            return neg_errno();
    }
    return n;
}

ssize_t msk_sock_recvfrom(msk_sock *s, void *buf, size_t len,
                          msk_addr *from)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    ssize_t n;

    do {
        sl = sizeof ss;
        n = recvfrom(s->fd, buf, len, 0, (struct sockaddr *)&ss, &sl);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return neg_errno();
    if (from != NULL) {
        from->ss = ss;
        from->len = sl;
    }
    return n;
}

ssize_t msk_sock_sendto(msk_sock *s, const void *buf, size_t len,
                        const msk_addr *to)
{
    const struct sockaddr *sa = NULL;
    socklen_t sl = 0;
    ssize_t n;

    if (to != NULL) {
        sa = (const struct sockaddr *)&to->ss;
        sl = to->len;
    }
    while ((n = sendto(s->fd, buf, len, MSG_NOSIGNAL, sa, sl)) < 0) {
        if (errno != EINTR)
            return neg_errno();
    }
    return n;
}

ssize_t msk_sock_sendfile(msk_sock *s, int fd, off_t *offset, size_t count)
{
    ssize_t n;

    while ((n = sendfile(s->fd, fd, offset, count)) < 0) {
        if (errno != EINTR)
            return neg_errno();
    }
    return n;
}

int msk_sock_shutdown(msk_sock *s, int how)
{
    return shutdown(s->fd, how) < 0 ? neg_errno() : 0;
}

int msk_sock_name(const msk_sock *s, msk_addr *a)
{
    a->len = sizeof a->ss;
    if (getsockname(s->fd, (struct sockaddr *)&a->ss, &a->len) < 0)
        return neg_errno();
    return 0;
}

int msk_sock_peer(const msk_sock *s, msk_addr *a)
{
    a->len = sizeof a->ss;
    if (getpeername(s->fd, (struct sockaddr *)&a->ss, &a->len) < 0)
        return neg_errno();
    return 0;
}

int msk_sock_setopt(msk_sock *s, int level, int opt, const void *val,
                    socklen_t len)
{
    if (setsockopt(s->fd, level, opt, val, len) < 0)
        return neg_errno();
    return 0;
}

int msk_sock_getopt(const msk_sock *s, int level, int opt, void *val,
                    socklen_t *len)
{
    if (getsockopt(s->fd, level, opt, val, len) < 0)
        return neg_errno();
    return 0;
}

/* CLOCK_MONOTONIC in ms, local so sock.c needs nothing from clock.c. */
static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int msk_fd_wait(int fd, unsigned events, int64_t timeout_ms)
{
    struct pollfd pfd;
    int64_t deadline = 0, left = -1;
    unsigned got;
    int n;

    pfd.fd = fd;
    pfd.events = 0;
    if (events & MSK_READ)
        pfd.events |= POLLIN;
    if (events & MSK_WRITE)
        pfd.events |= POLLOUT;
    if (timeout_ms >= 0) {
        /* Measure from a deadline so that EINTR, or a timeout too large
         * for one poll, never stretches the total wait. */
        deadline = timeout_ms > INT64_MAX / 2 ? INT64_MAX / 2
                                              : now_ms() + timeout_ms;
        left = timeout_ms;
    }
    for (;;) {
        int t = left < 0 ? -1 : left > INT_MAX ? INT_MAX : (int)left;

        pfd.revents = 0;
        n = poll(&pfd, 1, t);
        if (n > 0)
            break;
        if (n < 0 && errno != EINTR)
            return neg_errno();
        if (left < 0)
            continue;                      /* EINTR with no limit */
        left = deadline - now_ms();
        if (left <= 0)
            return 0;
    }

    if (pfd.revents & POLLNVAL)
        return -EBADF;
    got = 0;
    if (pfd.revents & POLLIN)
        got |= MSK_READ;
    if (pfd.revents & POLLOUT)
        got |= MSK_WRITE;
    /* On error or hang-up, report the watched events too, so the caller
     * makes its call and learns the actual error from it. */
    if (pfd.revents & (POLLERR | POLLHUP))
        got |= MSK_ERROR | (events & (MSK_READ | MSK_WRITE));
    return (int)got;
}

int msk_fd_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    int want;

    if (fl < 0)
        return neg_errno();
    want = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    if (want != fl && fcntl(fd, F_SETFL, want) < 0)
        return neg_errno();
    return 0;
}

int msk_fd_cloexec(int fd, int on)
{
    int fl = fcntl(fd, F_GETFD);
    int want;

    if (fl < 0)
        return neg_errno();
    want = on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC;
    if (want != fl && fcntl(fd, F_SETFD, want) < 0)
        return neg_errno();
    return 0;
}
