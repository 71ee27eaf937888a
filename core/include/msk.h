/*
 * msk.h -- the moonsock core: event loop, timers, signals, file watches,
 * child processes, sockets, addresses and byte buffers.
 *
 * Plain C with no Lua in it, usable by itself from any C program. Every
 * type is opaque; everything hangs off an msk_loop, so two loops in one
 * process (or one per thread) work. The core never prints, never exits and
 * never installs a signal handler unless the host asks for it.
 *
 * Errors: a function that can fail returns 0 (or a size, as ssize_t) on
 * success and a negative code on failure: -errno, or one of the MSK_E*
 * codes below for conditions that have no errno (resolver failures).
 * msk_strerror() turns any code into text. EINTR is always retried inside
 * the core and never returned.
 */
#ifndef MSK_H
#define MSK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version: these three lines are its one source of truth. CMake reads
 * them for project(VERSION), the library's SONAME, moonsock.pc and the
 * package config; MSK_VERSION and `moonsock --version` derive from them.
 * While MAJOR is 0, a MINOR bump may break the ABI (SONAME .so.0.MINOR). */
#define MSK_VERSION_MAJOR 0
#define MSK_VERSION_MINOR 1
#define MSK_VERSION_PATCH 0

#define MSK_VERSION_STR_(a, b, c)  #a "." #b "." #c
#define MSK_VERSION_XSTR_(a, b, c) MSK_VERSION_STR_(a, b, c)
/* "MAJOR.MINOR.PATCH" */
#define MSK_VERSION MSK_VERSION_XSTR_(MSK_VERSION_MAJOR, MSK_VERSION_MINOR, \
                                      MSK_VERSION_PATCH)
/* One comparable number, e.g. #if MSK_VERSION_NUM >= 10200 for 1.2.0. */
#define MSK_VERSION_NUM (MSK_VERSION_MAJOR * 10000 + \
                         MSK_VERSION_MINOR * 100 + MSK_VERSION_PATCH)

/* The version of the library linked at run time (version.c), which may
 * differ from the header a host was compiled with: compare the two. */
const char *msk_version(void);
int msk_version_num(void);

/* ---- errors (error.c) ------------------------------------------------ */

/* Private codes, far below any errno. Resolver failures keep getaddrinfo's
 * EAI_* value: code = MSK_EAI_BASE + EAI_x (EAI_x is negative in glibc). */
#define MSK_EBASE     (-30000)
#define MSK_EAI_BASE  (MSK_EBASE - 1000)
#define MSK_EOF       (MSK_EBASE - 1)      /* end of stream */
#define MSK_EBUSY     (MSK_EBASE - 2)      /* slot already taken */

/* True when code came from the resolver; msk_eai() gives the EAI_* value. */
#define MSK_IS_EAI(code)  ((code) <= MSK_EAI_BASE + 100 && \
                           (code) >= MSK_EAI_BASE - 100)
#define MSK_EAI(code)     ((code) - MSK_EAI_BASE)

/* Text for any code this library returns (negative errno, MSK_E*, EAI).
 * The string is static or thread-local; never free it. */
const char *msk_strerror(int code);

/* ---- monotonic clock (clock.c) --------------------------------------- */

/* Milliseconds on CLOCK_MONOTONIC. Never goes backwards. */
int64_t msk_clock_ms(void);
/* Nanoseconds on CLOCK_MONOTONIC, for latency measurement. */
int64_t msk_clock_ns(void);

/* ---- the loop (loop.c, poll_epoll.c, poll_poll.c) -------------------- */

typedef struct msk_loop msk_loop;

enum {
    MSK_READ  = 1u << 0,
    MSK_WRITE = 1u << 1,
    /* Reported only, never watched for: error or hang-up on the fd.
     * Delivered together with MSK_READ and/or MSK_WRITE where watched. */
    MSK_ERROR = 1u << 2
};

enum msk_backend {
    MSK_BACKEND_AUTO = 0,   /* $MSK_BACKEND ("epoll" or "poll"), else epoll */
    MSK_BACKEND_EPOLL,
    MSK_BACKEND_POLL
};

typedef struct msk_loop_opts {
    int backend;            /* enum msk_backend; 0 = auto */
    int max_fds;            /* 0 = the process's RLIMIT_NOFILE */
} msk_loop_opts;

typedef void msk_io_fn(msk_loop *loop, int fd, unsigned events, void *udata);
typedef void msk_timer_fn(msk_loop *loop, int64_t id, void *udata);
typedef void msk_signal_fn(msk_loop *loop, int signo, void *udata);

/* Create a loop. opts may be NULL (all defaults). Returns 0 or -errno;
 * an unknown $MSK_BACKEND value gives -EINVAL. */
int  msk_loop_new(msk_loop **loopp, const msk_loop_opts *opts);
/* Free the loop. Watches, timers and signal watches still registered are
 * dropped without calling anything; their udata is the caller's. */
void msk_loop_free(msk_loop *loop);
/* "epoll" or "poll". */
const char *msk_loop_backend(const msk_loop *loop);

/* Run passes until msk_loop_stop() is called or nothing is left to wait
 * for (no fd watched, no timer pending, no signal watched). Returns 0, or
 * the negative code of a backend failure the loop cannot recover from. */
int  msk_loop_run(msk_loop *loop);
/* Make msk_loop_run() return after the current pass. Safe in callbacks. */
void msk_loop_stop(msk_loop *loop);
/* True once msk_loop_stop() was called and no msk_loop_run() has begun
 * since: how a host that calls msk_loop_step() itself learns that someone
 * (a callback, a script) asked the loop to end. */
int  msk_loop_stopped(const msk_loop *loop);
/* One pass: wait at most timeout_ms (0: do not block, -1: no limit, but
 * never beyond the next timer), dispatch ready fds, then due timers.
 * Returns the number of callbacks run (>= 0) or a negative code. */
int  msk_loop_step(msk_loop *loop, int timeout_ms);
/* For hosts that drive the loop from their own poller: an fd that becomes
 * readable when msk_loop_step(loop, 0) has work (epoll only; -1 with the
 * poll backend), and the ms until the next timer (-1: none, 0: now). */
int  msk_loop_fd(const msk_loop *loop);
int  msk_loop_timeout(const msk_loop *loop);

/* Watch fd for the events in mask (MSK_READ, MSK_WRITE), replacing the
 * previous mask; mask 0 is the same as msk_io_unwatch(). One callback per
 * fd: a second call for the same fd replaces fn and udata too. fn runs on
 * the loop's thread with the events that fired (a subset of the mask,
 * maybe with MSK_ERROR). Level-triggered: an fd stays ready until drained.
 * Safe inside any callback; the loop never frees udata.
 * Returns 0 or -errno (-EBADF for a bad fd, -ERANGE beyond max_fds). */
int  msk_io_watch(msk_loop *loop, int fd, unsigned mask,
                  msk_io_fn *fn, void *udata);
/* Stop watching fd. Events already collected in this pass for fd are not
 * delivered, even if the fd number is watched again in the same pass
 * (a reused fd never sees its previous owner's events). Call it before
 * close(fd). Safe inside any callback, including fd's own. */
void msk_io_unwatch(msk_loop *loop, int fd);
/* The mask now watched for fd (0 if none). */
unsigned msk_io_mask(const msk_loop *loop, int fd);

/* Timers on a min-heap ordered by (deadline, sequence): timers due in the
 * same millisecond fire in the order they were added. The first firing is
 * ms from now (ms <= 0: on the next pass); repeat_ms > 0 re-arms it that
 * long after each scheduled deadline (no drift), 0 makes it one-shot.
 * Huge values are clamped, never overflowed. Returns an id > 0, or a
 * negative code. A one-shot timer is gone once its callback returns. */
int64_t msk_timer_add(msk_loop *loop, int64_t ms, int64_t repeat_ms,
                      msk_timer_fn *fn, void *udata);
/* Cancel a timer. Safe inside any callback, including its own. Returns 0,
 * or -ENOENT when id is not pending (fired one-shot or already gone). */
int  msk_timer_cancel(msk_loop *loop, int64_t id);
/* Number of pending timers, for tests and leak checks. */
size_t msk_timer_count(const msk_loop *loop);

/* Deliver signo as a loop event: fn runs from the loop, never from signal
 * context, once per pass in which the signal arrived (arrivals coalesce).
 * The signal is blocked for the thread and read through a signalfd (or a
 * self-pipe with the poll backend). One loop per signal in a process.
 * Returns 0 or a negative code. */
int  msk_signal_watch(msk_loop *loop, int signo, msk_signal_fn *fn,
                      void *udata);
/* Stop delivering signo and restore its previous disposition and mask. */
int  msk_signal_unwatch(msk_loop *loop, int signo);
/* Process-wide, only when the host asks: ignore SIGPIPE. (The core sends
 * with MSG_NOSIGNAL anyway; this covers writes to pipes.) */
void msk_signal_ignore_sigpipe(void);

/* ---- child processes (proc.c) --------------------------------------- */

/* A child process the loop reaps. Every child runs in a process group of
 * its own (pgid == pid), starts with the default signal dispositions and
 * an empty signal mask, and inherits no descriptor but 0, 1 and 2. Exits
 * are noticed through SIGCHLD, watched with msk_signal_watch() while any
 * child is running (so that loop owns SIGCHLD meanwhile, and a running
 * child keeps msk_loop_run() going), then collected with waitpid(pid,
 * WNOHANG) for each known child: children spawned some other way are
 * never reaped here, so io.popen and system() keep working. */
typedef struct msk_proc msk_proc;

/* The child has exited and been reaped. code is Python's returncode: the
 * exit status (0..255), or -N when signal N ended it. Runs from the loop;
 * it may call msk_proc_free(p). */
typedef void msk_proc_fn(msk_proc *p, int code, void *udata);

/* What a child's fd 0, 1 or 2 becomes. */
enum msk_stdio_how {
    MSK_STDIO_INHERIT = 0,   /* the parent's same fd */
    MSK_STDIO_PIPE,          /* a new pipe; the parent's end is returned */
    MSK_STDIO_DEVNULL,       /* /dev/null */
    MSK_STDIO_STDOUT,        /* fd 2 only: wherever fd 1 goes */
    MSK_STDIO_FD             /* dup of the parent's fd (msk_stdio.fd) */
};

typedef struct msk_stdio {
    int how;                 /* enum msk_stdio_how */
    int fd;                  /* for MSK_STDIO_FD */
} msk_stdio;

/* All zeros is a valid default apart from argv: inherit fds, env, cwd. */
typedef struct msk_proc_opts {
    const char  *file;       /* program; NULL: argv[0]. Without a '/' it
                              * is searched in path. */
    char *const *argv;       /* NULL-terminated; argv[0] required */
    char *const *envp;       /* NULL-terminated; NULL: the parent's */
    const char  *cwd;        /* NULL: the parent's */
    const char  *path;       /* search path; NULL: PATH of envp, else the
                              * parent's PATH, else /usr/bin:/bin */
    msk_stdio    stdio[3];
} msk_proc_opts;

/* Start a child. fds (may be NULL) receives, for each of 0, 1, 2, the
 * parent's end of a pipe (non-blocking, close-on-exec, owned by the
 * caller) or -1. fn (may be NULL) runs once when the child is reaped.
 * Returns 0, or -errno from the pipes or posix_spawn (-ENOENT: no such
 * program, -EACCES: not executable); nothing is left open on failure. */
int   msk_proc_spawn(msk_loop *loop, msk_proc **pp,
                     const msk_proc_opts *opts, int fds[3],
                     msk_proc_fn *fn, void *udata);
/* Forget p. If the child still runs, the loop reaps it later and then
 * frees the record; fn is not called any more. NULL is allowed. */
void  msk_proc_free(msk_proc *p);
pid_t msk_proc_pid(const msk_proc *p);
/* 1 and *code set once the child has been reaped, else 0. */
int   msk_proc_done(const msk_proc *p, int *code);
/* Send signo to the child, if it has not been reaped (a reaped pid may
 * belong to someone else by now). Returns 0, -ESRCH once reaped, or
 * -errno. */
int   msk_proc_kill(msk_proc *p, int signo);
/* Send signo to the child's whole process group, grandchildren included.
 * Allowed after the child was reaped, while others of its group live:
 * the pgid cannot be reused until the group is empty. -ESRCH: no one is
 * left in the group. */
int   msk_proc_killpg(msk_proc *p, int signo);
/* Children of this loop not yet reaped, detached ones included. */
int   msk_proc_count(const msk_loop *loop);

/* ---- file watches (watch.c) ------------------------------------------ */

typedef struct msk_watch msk_watch;
/* path changed: written, replaced by rename, created or removed. Called
 * from the loop at most once per pass per path. */
typedef void msk_watch_fn(msk_watch *w, const char *path, void *udata);

/* Watch a set of files for changes. Uses inotify on the files' parent
 * directories (so editors that write a temp file and rename it over the
 * original are seen), or polls mtime/size/inode every poll_ms when
 * inotify is unavailable or force_poll is set. */
int  msk_watch_new(msk_watch **wp, msk_loop *loop, int force_poll,
                   int poll_ms, msk_watch_fn *fn, void *udata);
/* Add a file; adding the same path twice is a no-op. Returns 0 or -errno. */
int  msk_watch_add(msk_watch *w, const char *path);
void msk_watch_free(msk_watch *w);

/* ---- addresses (addr.c) ---------------------------------------------- */

typedef struct msk_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} msk_addr;

#define MSK_ADDRSTRLEN 128   /* enough for any formatted host */

/* Build an address from a numeric host ("127.0.0.1", "::1", "", which is
 * the any-address) and a port, for family AF_INET or AF_INET6. For AF_INET6
 * a "%scope" suffix and scope_id/flowinfo are honoured. "<broadcast>" gives
 * INADDR_BROADCAST. Returns 0, -EINVAL for a port outside 0..65535, or
 * MSK_EAI_BASE + EAI_NONAME when host is not numeric (resolve instead). */
int  msk_addr_inet(msk_addr *a, int family, const char *host, int port,
                   uint32_t flowinfo, uint32_t scope_id);
/* AF_UNIX address for path (a leading NUL byte: Linux abstract name).
 * Returns 0 or -ENAMETOOLONG. */
int  msk_addr_unix(msk_addr *a, const char *path, size_t pathlen);
/* Resolve host/port with getaddrinfo (family AF_UNSPEC allowed; type and
 * flags as for getaddrinfo). Blocks the calling thread. Fills up to max
 * results into out and returns how many (> 0) or a negative code
 * (MSK_EAI_BASE + EAI_*, or -errno for EAI_SYSTEM). */
int  msk_addr_resolve(msk_addr *out, int max, const char *host,
                      const char *port, int family, int type, int flags,
                      int *types_out, int *protos_out);
/* Format the host part numerically into buf (MSK_ADDRSTRLEN bytes). For
 * AF_UNIX: the path (may be empty; abstract names keep the leading NUL,
 * so the length is returned through *hostlen). Also returns the port (0
 * for AF_UNIX), and for AF_INET6 flowinfo and scope_id. Any out pointer
 * may be NULL. Returns 0 or -EAFNOSUPPORT. */
int  msk_addr_format(const msk_addr *a, char *buf, size_t *hostlen,
                     int *port, uint32_t *flowinfo, uint32_t *scope_id);
int  msk_addr_family(const msk_addr *a);
/* Parse a command-line listen spec: "HOST:PORT", "[V6]:PORT", ":PORT" or
 * "PORT" (any address, IPv4), "unix:PATH". Hosts must be numeric or
 * "localhost" (resolved). Returns 0 or -EINVAL / a resolver code. */
int  msk_addr_parse_spec(msk_addr *a, const char *spec);

/* ---- blocking calls on worker threads (offload.c) ---------------------- */

/* A job: work(data) runs on a worker thread, and the job's fd (an
 * eventfd) becomes readable when it has returned, so the loop thread can
 * wait for it like for a socket. data is size bytes, zeroed, owned by the
 * job: fill it before submitting, read it once finished. cleanup(data),
 * if given, runs when the job is freed (to free what a result holds).
 * Process-wide: at most 4 worker threads, started on demand with every
 * signal blocked. */
typedef struct msk_offload msk_offload;
typedef void msk_offload_fn(void *data);

/* NULL when out of memory or descriptors. */
msk_offload *msk_offload_new(msk_offload_fn *work, msk_offload_fn *cleanup,
                             size_t size);
void *msk_offload_data(msk_offload *job);
int   msk_offload_fd(const msk_offload *job);
/* Queue the job. 0, or -errno when no worker thread can be started. */
int   msk_offload_submit(msk_offload *job);
/* 1 once work has returned (its results may then be read). */
int   msk_offload_finished(const msk_offload *job);
/* Done with the job, finished or not: freed now, or by its worker once
 * work returns. Never touch it afterwards. */
void  msk_offload_release(msk_offload *job);
/* Users of the pool: the last msk_offload_drop waits for the jobs still
 * queued or running, then joins the worker threads. */
void  msk_offload_retain(void);
void  msk_offload_drop(void);

/* ---- sockets (sock.c) ------------------------------------------------- */

typedef struct msk_sock msk_sock;

/* Every socket the core makes is non-blocking and close-on-exec. */

/* A new socket(family, type, protocol). Returns 0 or -errno. */
int  msk_sock_open(msk_sock **sp, int family, int type, int protocol);
/* Adopt an fd (made non-blocking and close-on-exec). The family and type
 * are read from the fd with getsockname/getsockopt when passed as -1.
 * On failure the fd is left open and the caller still owns it. */
int  msk_sock_adopt(msk_sock **sp, int fd, int family, int type);
/* A connected pair, like socketpair(2). */
int  msk_sock_pair(msk_sock **ap, msk_sock **bp, int family, int type,
                   int protocol);
/* Close the fd (retrying nothing: close is never retried on EINTR) and
 * free s. NULL is allowed. The caller unwatches the fd first. */
void msk_sock_close(msk_sock *s);
/* Give up the fd without closing it and free s; returns the fd. */
int  msk_sock_detach(msk_sock *s);

int  msk_sock_fd(const msk_sock *s);
int  msk_sock_family(const msk_sock *s);
int  msk_sock_type(const msk_sock *s);

int  msk_sock_bind(msk_sock *s, const msk_addr *a);
int  msk_sock_listen(msk_sock *s, int backlog);
/* Accept one connection as a new msk_sock (non-blocking, close-on-exec)
 * and fill *peer if not NULL. -EAGAIN: none pending. -EMFILE/-ENFILE:
 * out of descriptors; the pending connection stays queued, so the caller
 * must back off rather than retry at once. ECONNABORTED and the network
 * errors Linux passes up from accept are retried internally. */
int  msk_sock_accept(msk_sock *s, msk_sock **out, msk_addr *peer);
/* Start connecting. 0: connected; -EINPROGRESS: wait for MSK_WRITE then
 * call msk_sock_connect_result(); any other negative: failed. */
int  msk_sock_connect(msk_sock *s, const msk_addr *a);
/* The outcome of a pending connect (SO_ERROR): 0 or -errno. */
int  msk_sock_connect_result(msk_sock *s);

/* > 0: bytes read; 0: end of stream (or len == 0); -EAGAIN: nothing yet,
 * wait for MSK_READ; other negative: the connection failed. */
ssize_t msk_sock_recv(msk_sock *s, void *buf, size_t len);
/* Bytes written (may be fewer than len), -EAGAIN, or -errno. Never raises
 * SIGPIPE (MSG_NOSIGNAL). */
ssize_t msk_sock_send(msk_sock *s, const void *buf, size_t len);
ssize_t msk_sock_recvfrom(msk_sock *s, void *buf, size_t len,
                          msk_addr *from);
ssize_t msk_sock_sendto(msk_sock *s, const void *buf, size_t len,
                        const msk_addr *to);
/* Send count bytes of file fd from *offset (advanced), with sendfile(2).
 * Returns bytes sent, 0 at end of file, -EAGAIN, or -errno. */
ssize_t msk_sock_sendfile(msk_sock *s, int fd, off_t *offset, size_t count);

int  msk_sock_shutdown(msk_sock *s, int how);
int  msk_sock_name(const msk_sock *s, msk_addr *a);
int  msk_sock_peer(const msk_sock *s, msk_addr *a);
/* Integer options; *len in/out lets callers pass other sizes. */
int  msk_sock_setopt(msk_sock *s, int level, int opt, const void *val,
                     socklen_t len);
int  msk_sock_getopt(const msk_sock *s, int level, int opt, void *val,
                     socklen_t *len);

/* Wait on one fd without a loop, for blocking use outside any loop:
 * events as MSK_READ/MSK_WRITE, timeout_ms -1 for no limit. Returns the
 * events that fired (> 0), 0 on timeout, or -errno. EINTR restarts with
 * the remaining time. */
int  msk_fd_wait(int fd, unsigned events, int64_t timeout_ms);
/* Make fd non-blocking (on != 0) or blocking; close-on-exec helper. */
int  msk_fd_nonblock(int fd, int on);
int  msk_fd_cloexec(int fd, int on);

/* ---- byte buffers (buf.c) -------------------------------------------- */

/* A growable buffer with a read offset: append at the end, consume from
 * the front. Memory is compacted lazily, so consuming is O(1). */
typedef struct msk_buf {
    char  *data;
    size_t start;   /* first unread byte */
    size_t end;     /* one past the last byte */
    size_t cap;
} msk_buf;

#define MSK_BUF_INIT { NULL, 0, 0, 0 }

void   msk_buf_init(msk_buf *b);
void   msk_buf_free(msk_buf *b);             /* releases memory, resets */
size_t msk_buf_len(const msk_buf *b);
const char *msk_buf_peek(const msk_buf *b);  /* the unread bytes */
/* Make room for n more bytes at the end; returns a pointer to write them
 * (then msk_buf_commit(b, written)) or NULL when out of memory. */
char  *msk_buf_reserve(msk_buf *b, size_t n);
void   msk_buf_commit(msk_buf *b, size_t n);
int    msk_buf_append(msk_buf *b, const void *p, size_t n);  /* 0/-ENOMEM */
void   msk_buf_consume(msk_buf *b, size_t n);
/* Offset of the first '\n' in the unread bytes at or after from, or -1. */
ssize_t msk_buf_find_eol(const msk_buf *b, size_t from);

/* ---- files (file.c) -------------------------------------------------- */

/* Regular files and directories by descriptor (plain ints; the caller
 * closes them). Every name is one component relative to a directory fd:
 * empty, ".", "..", or any '/' gives -EINVAL, over 255 bytes
 * -ENAMETOOLONG, and symlinks are never followed (-ELOOP on open).
 * Regular files are not pollable: each call blocks for one disk
 * operation, so callers keep them small and interleave other work. */

typedef struct msk_file_info {
    int64_t  size;
    int64_t  mtime_ns;      /* since the epoch */
    uint64_t dev, ino;
    unsigned mode;          /* st_mode: S_ISREG(mode) etc. */
} msk_file_info;

/* Called once per entry but "." and ".."; a nonzero return stops the
 * listing and becomes msk_file_listdir's result. */
typedef int msk_file_dir_fn(const char *name, void *udata);

/* 0 if name is one plain component, else -EINVAL / -ENAMETOOLONG. */
int     msk_file_checkname(const char *name);
/* Open the directory path (following symlinks: the host's choice), first
 * creating it with create_mode when that is nonzero. Returns fd / -errno. */
int     msk_file_opendir(const char *path, unsigned create_mode);
/* openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode): fd / -errno. */
int     msk_file_open(int dirfd, const char *name, int flags, unsigned mode);
int     msk_file_close(int fd);
/* One pread at off: bytes read (0: end of file) or -errno. */
ssize_t msk_file_pread(int fd, void *buf, size_t len, int64_t off);
/* Write all len bytes at off: len, or -errno (-ENOSPC: disk full; some
 * bytes may have been written, the caller truncates or removes). */
ssize_t msk_file_pwrite(int fd, const void *buf, size_t len, int64_t off);
/* fsync (data_only: fdatasync). Also for a directory fd, after a rename. */
int     msk_file_sync(int fd, int data_only);
/* Start writeback of [off, off+len) without waiting (sync_file_range),
 * so a later fsync is short. A hint: 0 where unsupported. */
int     msk_file_writeback(int fd, int64_t off, int64_t len);
int     msk_file_truncate(int fd, int64_t len);
/* fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW); name NULL: fstat(dirfd). */
int     msk_file_stat(int dirfd, const char *name, msk_file_info *st);
/* Rename within dirfd. noreplace: -EEXIST if to exists, atomically
 * (renameat2 RENAME_NOREPLACE, else link + unlink). */
int     msk_file_rename(int dirfd, const char *from, const char *to,
                        int noreplace);
int     msk_file_unlink(int dirfd, const char *name);
/* Bytes free for unprivileged users and in total on fd's file system. */
int     msk_file_space(int fd, uint64_t *avail, uint64_t *total);
/* List dirfd's entries (unsorted) through fn. Returns 0, fn's nonzero
 * result, or -errno. dirfd's own offset is untouched. */
int     msk_file_listdir(int dirfd, msk_file_dir_fn *fn, void *udata);
/* Extended attributes on an open fd ("user.*" keys). get returns the
 * value's length or -errno (-ENODATA: none, -ENOTSUP: not supported). */
int     msk_file_setxattr(int fd, const char *key, const void *val,
                          size_t len);
ssize_t msk_file_getxattr(int fd, const char *key, void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MSK_H */
