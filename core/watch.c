/*
 * watch.c -- file-change events for a set of paths, delivered by the loop.
 *
 * Built on inotify watching each file's parent directory, filtered by the
 * file's name: that sees writes in place (IN_MODIFY, IN_CLOSE_WRITE), an
 * editor's temp file renamed over the original (IN_MOVED_TO), creation,
 * removal and attribute changes, and keeps working after the file's inode
 * is replaced. Without inotify (or with force_poll) a repeating loop timer
 * stats every path and compares inode, size, mtime and ctime. Both paths
 * mark entries pending, then call fn once per pending path, so fn runs at
 * most once per pass per path. fn may add paths or free the watch.
 * Left out: recursive directory watches, and telling what kind of change
 * it was.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "msk.h"

#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE \
                    | IN_DELETE | IN_ATTRIB | IN_MODIFY)
#define DEFAULT_POLL_MS 1000

typedef struct entry {
    char       *path;       /* as given; passed to fn */
    const char *base;       /* file name inside path */
    int         wd;         /* inotify watch on the parent, or -1 */
    int         pending;
    int         exists;     /* polling: last stat's result */
    struct stat st;
} entry;

struct msk_watch {
    msk_loop     *loop;
    msk_watch_fn *fn;
    void         *udata;
    int           ifd;      /* inotify fd, or -1 when polling */
    int64_t       timer;    /* polling timer id, or 0 */
    int           poll_ms;
    entry        *e;
    size_t        n, cap;
    int           busy;     /* inside fire(): defer a free */
    int           dead;
};

static void destroy(msk_watch *w)
{
    size_t i;

    if (w->ifd >= 0) {
        msk_io_unwatch(w->loop, w->ifd);
        close(w->ifd);
    }
    if (w->timer > 0)
        msk_timer_cancel(w->loop, w->timer);
    for (i = 0; i < w->n; i++)
        free(w->e[i].path);
    free(w->e);
    free(w);
}

/* Call fn for each pending path. fn may add paths (e may move, so index
 * it afresh each time) or free the watch (finish after it returns). */
static void fire(msk_watch *w)
{
    size_t i;

    w->busy++;
    for (i = 0; i < w->n && !w->dead; i++) {
        if (w->e[i].pending) {
            w->e[i].pending = 0;
            w->fn(w, w->e[i].path, w->udata);
        }
    }
    if (--w->busy == 0 && w->dead)
        destroy(w);
}

static void on_inotify(msk_loop *loop, int fd, unsigned events, void *udata)
{
    msk_watch *w = udata;
    union {
        struct inotify_event ev;
        char buf[4096];
    } u;
    ssize_t n;
    size_t i;

    (void)loop;
    (void)events;
    while ((n = read(fd, u.buf, sizeof u.buf)) > 0) {
        char *p = u.buf;
        while (p < u.buf + n) {
            struct inotify_event *ev = (struct inotify_event *)(void *)p;
            for (i = 0; i < w->n; i++) {
                entry *e = &w->e[i];
                if ((ev->mask & IN_Q_OVERFLOW)
                    || (e->wd == ev->wd && ev->len > 0
                        && strcmp(e->base, ev->name) == 0))
                    e->pending = 1;
            }
            p += sizeof *ev + ev->len;
        }
    }
    fire(w);
}

/* The parts of a stat that change when a file is written or replaced. */
static int same(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev
        && a->st_size == b->st_size
        && a->st_mtim.tv_sec == b->st_mtim.tv_sec
        && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
        && a->st_ctim.tv_sec == b->st_ctim.tv_sec
        && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void on_tick(msk_loop *loop, int64_t id, void *udata)
{
    msk_watch *w = udata;
    struct stat st;
    size_t i;

    (void)loop;
    (void)id;
    for (i = 0; i < w->n; i++) {
        entry *e = &w->e[i];
        int exists = stat(e->path, &st) == 0;
        if (exists != e->exists || (exists && !same(&st, &e->st)))
            e->pending = 1;
        e->exists = exists;
        if (exists)
            e->st = st;
    }
    fire(w);
}

int msk_watch_new(msk_watch **wp, msk_loop *loop, int force_poll,
                  int poll_ms, msk_watch_fn *fn, void *udata)
{
    msk_watch *w;
    int rc;

    *wp = NULL;
    if (fn == NULL)
        return -EINVAL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    w->loop = loop;
    w->fn = fn;
    w->udata = udata;
    w->poll_ms = poll_ms > 0 ? poll_ms : DEFAULT_POLL_MS;
    w->ifd = force_poll ? -1 : inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ifd >= 0) {
        rc = msk_io_watch(loop, w->ifd, MSK_READ, on_inotify, w);
        if (rc < 0) {
            close(w->ifd);
            free(w);
            return rc;
        }
    } else {
        int64_t id = msk_timer_add(loop, w->poll_ms, w->poll_ms, on_tick, w);
        if (id < 0) {
            free(w);
            return (int)id;
        }
        w->timer = id;
    }
    *wp = w;
    return 0;
}

int msk_watch_add(msk_watch *w, const char *path)
{
    entry *e;
    const char *slash;
    char *dir;
    size_t i;

    if (path == NULL || path[0] == '\0')
        return -EINVAL;
    for (i = 0; i < w->n; i++)
        if (strcmp(w->e[i].path, path) == 0)
            return 0;
    if (w->n == w->cap) {
        size_t cap = w->cap > 0 ? w->cap * 2 : 8;
        e = realloc(w->e, cap * sizeof *e);
        if (e == NULL)
            return -ENOMEM;
        w->e = e;
        w->cap = cap;
    }
    e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->wd = -1;
    e->path = strdup(path);
    if (e->path == NULL)
        return -ENOMEM;
    slash = strrchr(e->path, '/');
    e->base = slash != NULL ? slash + 1 : e->path;
    if (e->base[0] == '\0') {
        free(e->path);
        return -EINVAL;          /* a directory, not a file */
    }
    if (w->ifd >= 0) {
        if (slash == NULL)
            dir = strdup(".");
        else if (slash == e->path)
            dir = strdup("/");
        else
            dir = strndup(e->path, (size_t)(slash - e->path));
        if (dir == NULL) {
            free(e->path);
            return -ENOMEM;
        }
        /* The kernel gives the same wd for a directory added twice. */
        e->wd = inotify_add_watch(w->ifd, dir, WATCH_MASK);
        free(dir);
        if (e->wd < 0) {
            int err = -errno;
            free(e->path);
            return err;
        }
    } else {
        e->exists = stat(e->path, &e->st) == 0;
    }
    w->n++;
    return 0;
}

void msk_watch_free(msk_watch *w)
{
    if (w == NULL)
        return;
    if (w->busy > 0) {
        w->dead = 1;            /* fire() frees it when fn returns */
        return;
    }
    destroy(w);
}
