/*
 * proc.c -- child processes: spawn with pipes, reap through the loop.
 *
 * Built on posix_spawn (glibc's runs vfork-style, so spawning from a big
 * server costs no page-table copy) with file actions for the child's fds
 * 0-2, its working directory and closing every other descriptor, and
 * attributes for a process group of its own, an empty signal mask and
 * default dispositions (the parent may block or ignore signals the child
 * must not inherit that way, SIGCHLD and SIGPIPE above all).
 *
 * Reaping: while any child of the loop is running, SIGCHLD is a loop event
 * (msk_signal_watch); each arrival runs waitpid(pid, WNOHANG) over this
 * loop's children only, so children made elsewhere (io.popen, system) are
 * left to their owners. A record whose owner freed it early stays in the
 * list until its child is reaped: no zombie is left behind.
 *
 * Left out: terminal control, user and group changes, rlimits, and
 * passing extra descriptors (pass_fds); nothing here reads or writes the
 * pipes, which belong to the caller.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "loop_internal.h"

extern char **environ;

/* glibc gained posix_spawn_file_actions_addclosefrom_np in 2.34; before
 * that the parent lists its open descriptors instead (see close_rest). */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || \
                           (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_CLOSEFROM_NP 1
#endif

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

struct msk_proc {
    msk_loop    *loop;       /* NULL once the loop is gone */
    pid_t        pid;
    int          done;       /* reaped; code is valid */
    int          code;
    int          detached;   /* owner freed it; free when reaped */
    msk_proc_fn *fn;
    void        *udata;
    msk_proc    *prev, *next;   /* in the loop's list while running */
};

typedef struct msk__procs {
    msk_proc *head;
    int       n;            /* records in the list */
    int       watching;     /* SIGCHLD is watched */
} msk__procs;

static int decode(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return 0;
}

static void unlink_proc(msk__procs *ps, msk_proc *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        ps->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    ps->n--;
}

/* With no child left, SIGCHLD goes back to its old disposition, so the
 * signal watch no longer keeps msk_loop_run() going. */
static void maybe_unwatch(msk_loop *loop, msk__procs *ps)
{
    if (ps->n == 0 && ps->watching) {
        msk_signal_unwatch(loop, SIGCHLD);
        ps->watching = 0;
    }
}

/* SIGCHLD: collect every child of this loop that has exited. fn may free
 * its own record or spawn; both keep `next` valid, because a new record
 * goes to the head and a freed running record is only marked. */
static void on_sigchld(msk_loop *loop, int signo, void *udata)
{
    msk__procs *ps = udata;
    msk_proc *p, *next;

    (void)signo;
    for (p = ps->head; p != NULL; p = next) {
        int status;
        pid_t r;
        next = p->next;
        do {
            r = waitpid(p->pid, &status, WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == 0)
            continue;
        unlink_proc(ps, p);
        p->done = 1;
        /* ECHILD: someone else reaped it (waitpid(-1) elsewhere); report
         * what a lost status looks like to Python: 255. */
        p->code = r == p->pid ? decode(status) : 255;
        if (p->detached)
            free(p);
        else if (p->fn != NULL)
            p->fn(p, p->code, p->udata);
    }
    maybe_unwatch(loop, ps);
}

static int procs_setup(msk_loop *loop)
{
    msk__procs *ps = loop->procs;
    int rc;

    if (ps == NULL) {
        ps = calloc(1, sizeof *ps);
        if (ps == NULL)
            return -ENOMEM;
        loop->procs = ps;
    }
    /* Watch before spawning: a child that exits at once must find
     * SIGCHLD blocked or caught, or its arrival would be discarded. */
    if (!ps->watching) {
        if ((rc = msk_signal_watch(loop, SIGCHLD, on_sigchld, ps)) < 0)
            return rc;
        ps->watching = 1;
    }
    return 0;
}

/* Move fd to 3 or above (close-on-exec), so the child's dup2 onto 0-2
 * can never overwrite a source still needed. Returns the new fd or
 * -errno; the old fd is closed only when owned. */
static int lift(int fd, int owned)
{
    int nfd;
    if (fd >= 3)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -errno;
    if (owned)
        close(fd);
    return nfd;
}

/* Find file in path as execvp would, into buf. A name with a '/' is
 * used as given. Returns 0, or -ENOENT / -EACCES. */
static int search(const char *file, const char *path, char *buf,
                  size_t buflen)
{
    const char *p = path, *end;
    int err = -ENOENT;

    if (strchr(file, '/') != NULL) {
        if (strlen(file) >= buflen)
            return -ENAMETOOLONG;
        strcpy(buf, file);
        return 0;
    }
    if (*file == '\0')
        return -ENOENT;
    for (;;) {
        size_t dlen;
        int n;
        end = strchr(p, ':');
        dlen = end ? (size_t)(end - p) : strlen(p);
        /* An empty entry means the current directory, as in execvp. */
        n = dlen == 0 ? snprintf(buf, buflen, "%s", file)
                      : snprintf(buf, buflen, "%.*s/%s", (int)dlen, p,
                                 file);
        if (n > 0 && (size_t)n < buflen) {
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
                if (access(buf, X_OK) == 0)
                    return 0;
                err = -EACCES;
            }
        }
        if (end == NULL)
            return err;
        p = end + 1;
    }
}

static const char *envp_path(char *const *envp)
{
    for (; envp != NULL && *envp != NULL; envp++)
        if (strncmp(*envp, "PATH=", 5) == 0)
            return *envp + 5;
    return NULL;
}

#ifndef HAVE_CLOSEFROM_NP
/* Without closefrom in the file actions: close in the child every fd
 * above 2 that would survive exec, listed from /proc/self/fd. */
static int close_rest(posix_spawn_file_actions_t *fa)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int dfd, rc = 0;

    if (d == NULL)
        return -errno;
    dfd = dirfd(d);
    while (rc == 0 && (e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        int fl;
        if (fd < 3 || fd == dfd)
            continue;
        fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            rc = -posix_spawn_file_actions_addclose(fa, fd);
    }
    closedir(d);
    return rc;
}
#endif

/* Everything spawn opens and must close on every path. */
typedef struct spawn_fds {
    int parent[3];     /* the parent's pipe ends, returned on success */
    int child[3];      /* what the child's 0-2 get dup'ed from, or -1 */
    int owned[3];      /* child[i] was opened here and is closed after */
} spawn_fds;

static void close_fds(spawn_fds *s, int parent_too)
{
    int i;
    for (i = 0; i < 3; i++) {
        if (s->owned[i] && s->child[i] >= 0)
            close(s->child[i]);
        if (parent_too && s->parent[i] >= 0) {
            close(s->parent[i]);
            s->parent[i] = -1;
        }
        s->child[i] = -1;
        s->owned[i] = 0;
    }
}

/* Set up what the child's fd i comes from. */
static int prepare(spawn_fds *s, int i, const msk_stdio *io)
{
    int p[2], fd, rc;

    switch (io->how) {
    case MSK_STDIO_INHERIT:
        return 0;
    case MSK_STDIO_PIPE:
        if (pipe2(p, O_CLOEXEC) < 0)
            return -errno;
        /* fd 0 is the child's read end; 1 and 2 its write ends. */
        s->child[i] = i == 0 ? p[0] : p[1];
        s->parent[i] = i == 0 ? p[1] : p[0];
        s->owned[i] = 1;
        if ((rc = lift(s->child[i], 1)) < 0)
            return rc;
        s->child[i] = rc;
        if ((rc = lift(s->parent[i], 1)) < 0)
            return rc;
        s->parent[i] = rc;
        return msk_fd_nonblock(s->parent[i], 1);
    case MSK_STDIO_DEVNULL:
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        s->owned[i] = 1;
        s->child[i] = fd;
        if ((rc = lift(fd, 1)) < 0)
            return rc;
        s->child[i] = rc;
        return 0;
    case MSK_STDIO_STDOUT:
        return i == 2 ? 0 : -EINVAL;     /* handled in the file actions */
    case MSK_STDIO_FD:
        if (io->fd < 0)
            return -EBADF;
        if (io->fd == i)
            return 0;                    /* already in place */
        if (io->fd < 3) {
            /* A copy, so that dup2 onto a lower fd cannot clobber it. */
            if ((rc = lift(io->fd, 0)) < 0)
                return rc;
            s->owned[i] = 1;
            s->child[i] = rc;
        } else {
            s->child[i] = io->fd;
        }
        return 0;
    default:
        return -EINVAL;
    }
}

static int file_actions(posix_spawn_file_actions_t *fa, const spawn_fds *s,
                        const msk_proc_opts *o)
{
    int i, rc;

    for (i = 0; i < 3; i++) {
        if (s->child[i] >= 0
            && (rc = posix_spawn_file_actions_adddup2(fa, s->child[i], i)))
            return -rc;
        if (i == 2 && o->stdio[2].how == MSK_STDIO_STDOUT
            && (rc = posix_spawn_file_actions_adddup2(fa, 1, 2)))
            return -rc;
    }
    if (o->cwd != NULL
        && (rc = posix_spawn_file_actions_addchdir_np(fa, o->cwd)))
        return -rc;
#ifdef HAVE_CLOSEFROM_NP
    if ((rc = posix_spawn_file_actions_addclosefrom_np(fa, 3)))
        return -rc;
    return 0;
#else
    return close_rest(fa);
#endif
}

static int attributes(posix_spawnattr_t *at)
{
    sigset_t none, all;
    int rc;

    sigemptyset(&none);
    sigfillset(&all);
    if ((rc = posix_spawnattr_setflags(at, POSIX_SPAWN_SETPGROUP
                                       | POSIX_SPAWN_SETSIGMASK
                                       | POSIX_SPAWN_SETSIGDEF)))
        return -rc;
    if ((rc = posix_spawnattr_setpgroup(at, 0)))   /* pgid = own pid */
        return -rc;
    if ((rc = posix_spawnattr_setsigmask(at, &none)))
        return -rc;
    if ((rc = posix_spawnattr_setsigdefault(at, &all)))
        return -rc;
    return 0;
}

int msk_proc_spawn(msk_loop *loop, msk_proc **pp, const msk_proc_opts *o,
                   int fds[3], msk_proc_fn *fn, void *udata)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    spawn_fds s;
    char prog[PATH_MAX];
    const char *file, *path;
    msk_proc *p;
    pid_t pid;
    int i, rc;

    *pp = NULL;
    if (fds != NULL)
        fds[0] = fds[1] = fds[2] = -1;
    if (o == NULL || o->argv == NULL || o->argv[0] == NULL)
        return -EINVAL;
    file = o->file ? o->file : o->argv[0];
    path = o->path ? o->path : envp_path(o->envp);
    if (path == NULL)
        path = o->envp == NULL && getenv("PATH") ? getenv("PATH")
                                                 : DEFAULT_PATH;
    if ((rc = search(file, path, prog, sizeof prog)) < 0)
        return rc;
    if ((p = calloc(1, sizeof *p)) == NULL)
        return -ENOMEM;
    if ((rc = procs_setup(loop)) < 0) {
        free(p);
        return rc;
    }
    for (i = 0; i < 3; i++) {
        s.parent[i] = s.child[i] = -1;
        s.owned[i] = 0;
    }
    for (i = 0; i < 3; i++)
        if ((rc = prepare(&s, i, &o->stdio[i])) < 0)
            goto fail;
    if ((rc = posix_spawn_file_actions_init(&fa))) {
        rc = -rc;
        goto fail;
    }
    if ((rc = posix_spawnattr_init(&at))) {
        posix_spawn_file_actions_destroy(&fa);
        rc = -rc;
        goto fail;
    }
    rc = file_actions(&fa, &s, o);
    if (rc == 0)
        rc = attributes(&at);
    if (rc == 0)
        rc = -posix_spawn(&pid, prog, &fa, &at, o->argv,
                          o->envp ? o->envp : environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    if (rc < 0)
        goto fail;

    close_fds(&s, 0);          /* the child's ends; keep the parent's */
    p->loop = loop;
    p->pid = pid;
    p->fn = fn;
    p->udata = udata;
    p->next = loop->procs->head;
    if (p->next)
        p->next->prev = p;
    loop->procs->head = p;
    loop->procs->n++;
    if (fds != NULL)
        for (i = 0; i < 3; i++)
            fds[i] = s.parent[i];
    *pp = p;
    return 0;

fail:
    close_fds(&s, 1);
    free(p);
    maybe_unwatch(loop, loop->procs);
    return rc;
}

void msk_proc_free(msk_proc *p)
{
    if (p == NULL)
        return;
    if (p->done || p->loop == NULL) {
        free(p);
        return;
    }
    p->detached = 1;           /* the loop frees it once reaped */
    p->fn = NULL;
    p->udata = NULL;
}

pid_t msk_proc_pid(const msk_proc *p)
{
    return p->pid;
}

int msk_proc_done(const msk_proc *p, int *code)
{
    if (p->done && code != NULL)
        *code = p->code;
    return p->done;
}

int msk_proc_kill(msk_proc *p, int signo)
{
    if (p->done || p->loop == NULL)
        return -ESRCH;
    return kill(p->pid, signo) < 0 ? -errno : 0;
}

int msk_proc_killpg(msk_proc *p, int signo)
{
    return killpg(p->pid, signo) < 0 ? -errno : 0;
}

int msk_proc_count(const msk_loop *loop)
{
    return loop->procs ? loop->procs->n : 0;
}

void msk__proc_fini(msk_loop *loop)
{
    msk__procs *ps = loop->procs;
    msk_proc *p, *next;

    if (ps == NULL)
        return;
    /* Reap what has exited; the rest outlive the loop and are the init
     * process's to reap. Records still owned by a caller stay allocated
     * (msk_proc_free releases them) but forget the loop. */
    for (p = ps->head; p != NULL; p = next) {
        int status;
        next = p->next;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->done = 1;
            p->code = decode(status);
        }
        p->loop = NULL;
        p->prev = p->next = NULL;
        if (p->detached)
            free(p);
    }
    ps->head = NULL;
    ps->n = 0;
    if (ps->watching)
        msk_signal_unwatch(loop, SIGCHLD);
    free(ps);
    loop->procs = NULL;
}
