/*
 * c_echo.c -- the practical limit: an echo server in plain C, one thread,
 * level-triggered epoll, one static buffer, no allocation per message.
 *
 *   c_echo PORT [chat]
 *
 * Every other server in bench/ is measured as a ratio to this one. It is
 * what a hand-written server would do and no more: read what is there,
 * write it back, and keep the rest in a per-connection buffer only when
 * the peer is slow. With "chat" it is instead the limit for fan-out:
 * every line from any client goes to every client (the sender too),
 * prefixed with "userFD: ", as scripts/chat.lua does. Chat output is
 * appended to per-client buffers and flushed once per epoll pass, one
 * send() per client however many lines it got: writing each line to
 * each client as it comes would cost a syscall per delivery, and no
 * careful C server does that.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)
#define BACKLOG 1024
#define LINE 4096

typedef struct client {
    int open;
    char *out;                  /* bytes the peer was not ready for */
    size_t outlen, outcap;
    char *line;                 /* chat: partial line, LINE bytes */
    size_t linelen;
    int dirty;                  /* chat: on the flush list */
} client;

static int epfd, chat;
static client *cl;
static int maxfd;
static char buf[BUFSZ];
static int *dirty;              /* chat: clients to flush after this pass */
static int ndirty;

static void watch(int fd, uint32_t ev, int op)
{
    struct epoll_event e = { .events = ev, .data.fd = fd };
    epoll_ctl(epfd, op, fd, &e);
}

static void drop(int fd)
{
    close(fd);
    free(cl[fd].out);
    free(cl[fd].line);
    memset(&cl[fd], 0, sizeof cl[fd]);
}

static void append(client *c, const char *p, size_t n)
{
    if (c->outlen + n > c->outcap) {
        c->outcap = (c->outlen + n) * 2;
        c->out = realloc(c->out, c->outcap);
        if (c->out == NULL)
            abort();
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

/* Send now if nothing is queued; queue what the socket does not take. */
static void put(int fd, const char *p, size_t n)
{
    client *c = &cl[fd];
    if (c->outlen == 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) {
            drop(fd);
            return;
        }
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
        if (n == 0)
            return;
        /* Echo stops reading until the peer catches up; chat keeps
         * reading, since other clients' lines must not wait. */
        watch(fd, chat ? EPOLLIN | EPOLLOUT : EPOLLOUT, EPOLL_CTL_MOD);
    }
    append(c, p, n);
}

static void flush(int fd)
{
    client *c = &cl[fd];
    ssize_t w = send(fd, c->out, c->outlen, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN)
            drop(fd);
        return;
    }
    memmove(c->out, c->out + w, c->outlen - (size_t)w);
    c->outlen -= (size_t)w;
    if (c->outlen == 0)
        watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    else if (chat)
        watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

static void broadcast_line(int from, const char *p, size_t n)
{
    char msg[4200];
    int k = snprintf(msg, sizeof msg, "user%d: ", from);
    memcpy(msg + k, p, n);
    msg[k + (int)n] = '\n';
    for (int fd = 0; fd <= maxfd; fd++) {
        client *c = &cl[fd];
        if (!c->open)
            continue;
        append(c, msg, (size_t)k + n + 1);
        if (!c->dirty) {
            c->dirty = 1;
            dirty[ndirty++] = fd;
        }
    }
}

static void on_chat(int fd, const char *p, size_t n)
{
    client *c = &cl[fd];
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            broadcast_line(fd, c->line, c->linelen);
            c->linelen = 0;
        } else if (c->linelen < LINE) {
            c->line[c->linelen++] = p[i];
        }
    }
}

static void on_read(int fd)
{
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        drop(fd);
        return;
    }
    if (r < 0)
        return;
    if (chat)
        on_chat(fd, buf, (size_t)r);
    else
        put(fd, buf, (size_t)r);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: c_echo PORT [chat]\n");
        return 2;
    }
    chat = argc > 2 && strcmp(argv[2], "chat") == 0;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    cl = calloc(rl.rlim_cur, sizeof *cl);
    dirty = calloc(2 * rl.rlim_cur, sizeof *dirty);  /* drops re-add */
    if (cl == NULL || dirty == NULL)
        return 1;

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(ls, BACKLOG) < 0) {
        perror("c_echo: bind/listen");
        return 1;
    }
    epfd = epoll_create1(0);
    watch(ls, EPOLLIN, EPOLL_CTL_ADD);
    fprintf(stderr, "listening on 127.0.0.1:%s\n", argv[1]);

    struct epoll_event ev[256];
    for (;;) {
        int n = epoll_wait(epfd, ev, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one,
                               sizeof one);
                    memset(&cl[c], 0, sizeof cl[c]);
                    cl[c].open = 1;
                    if (chat && (cl[c].line = malloc(LINE)) == NULL)
                        abort();
                    if (c > maxfd)
                        maxfd = c;
                    watch(c, EPOLLIN, EPOLL_CTL_ADD);
                }
                continue;
            }
            if (!cl[fd].open)
                continue;
            if (ev[i].events & EPOLLOUT)
                flush(fd);
            if (cl[fd].open &&
                (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_read(fd);
        }
        /* Chat: one send per client that got lines in this pass. */
        for (int i = 0; i < ndirty; i++) {
            int fd = dirty[i];
            cl[fd].dirty = 0;
            if (cl[fd].open && cl[fd].outlen > 0)
                flush(fd);
        }
        ndirty = 0;
    }
}
