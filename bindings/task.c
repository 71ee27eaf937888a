/*
 * task.c -- the task runtime: Lua coroutines driven by the core's loop.
 *
 * Every script's main chunk, every connection handler and every green
 * thread is a task. A task that must wait yields a private sentinel
 * followed by what it waits for (fd, events, deadline); this file watches
 * the fd, arms a timer, and resumes the task from the loop callback with
 * true (ready), false (deadline passed) or nil, errno (fd closed, or a
 * second reader/writer on the same fd). The yields happen in task.lua,
 * and in socket.c's recv and sendall, which yield the same sentinel
 * from C (lua_yieldk) so that a handler's wait costs no Lua frame.
 *
 * Per-task state is a small malloc'd struct whose pointer sits in the
 * coroutine's extra space (LUA_EXTRASPACE), so finding it costs nothing.
 * The coroutine is anchored by a registry reference for as long as the
 * task lives. Watches are dropped lazily: a task that reads, answers and
 * reads again re-watches the same mask, which the loop turns into no
 * syscall at all; a mask bit is cleared only when it fires with no one
 * waiting.
 *
 * The CPU budget (issue 8): a POSIX timer on the loop thread's CPU
 * clock sends SIGVTALRM every tenth of the budget while the thread
 * computes (never while it sleeps in the poller). The handler counts the
 * ticks that fall into one run of one task (one resume); when a run has
 * taken the whole budget it marks the task doomed and sets a count hook
 * of 1 on the thread it runs -- the task's coroutine or one it made
 * itself, which task_resume records. From then on every instruction of
 * that thread that is not the runtime's own code (chunks named
 * @bindings/...) raises "CPU budget exceeded", so a handler that catches
 * the error with pcall cannot keep running, while the runtime's cleanup
 * (closing the connection, logging) can. No hook is set before that: a
 * count hook makes Lua 5.4 trace every instruction, which costs about
 * half the speed of plain Lua code.
 *
 * Left out: scheduling policy beyond FIFO, and preemption (a task that
 * runs too long is stopped, never paused).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk.h"
#include "msk_bind.h"

static char SENTINEL;   /* its address is the wait sentinel */
static char RTKEY;      /* registry key of the runtime userdata */

/* Ticks of the CPU timer in one run that stop a task: one tick every
 * budget / (BUDGET_TICKS - 1) of CPU time, so a run is stopped after
 * between 1 and 1.1 budgets, counted from the first tick it sees. */
#define BUDGET_TICKS 11

typedef struct task task;
/* One per connection, so it is kept to 48 bytes, a 64-byte malloc block:
 * the flags share a word with nargs (doomed, which the SIGVTALRM handler
 * writes, is an object of its own), and there is no list of all tasks,
 * since every live task's coroutine is in the registry (rt__gc). */
struct task {
    lua_State *co;
    task *next;         /* ready queue */
    int64_t timer;      /* deadline timer, 0 if none */
    int ref;            /* registry anchor of co */
    int fd;             /* waited-on fd, or -1 */
    volatile sig_atomic_t doomed;   /* over its budget: being stopped */
    int ctxref;         /* spawn_then: registry ref of ctx, else LUA_NOREF */
    unsigned nargs : 21;   /* values to resume with, once queued (a
                              stack holds at most LUAI_MAXSTACK, 1e6) */
    unsigned ev : 2;    /* MSK_READ or MSK_WRITE while waiting on fd */
    unsigned queued : 1;
    unsigned running : 1;
    unsigned daemon : 1;
    unsigned exempt : 1;   /* no CPU budget (the main chunk) */
    unsigned warned : 1;   /* the budget warning is logged */
    unsigned after : 4;    /* spawn_then: its hook in rt's afters, 1-15 */
};

/* Distinct after-hooks a runtime keeps (spawn_then): each kind of task
 * has one, kept for the life of the runtime, so a task names its hook in
 * four bits rather than holding a reference of its own. */
#define MAX_AFTERS 15

typedef struct fdslot { task *reader, *writer; } fdslot;
typedef struct cputick cputick;

struct msk_rt {
    msk_loop *loop;
    lua_State *L;        /* main thread */
    fdslot *slots;
    int nslots;
    task *head, *tail;   /* ready queue */
    int64_t ready_timer;
    int ntasks, nlive;
    int afters;          /* registry ref: the after-hooks, 1..nafters */
    int nafters;
    int dead;            /* torn down: the state is closing */
    int status;          /* exit status the program asked for */
    int log_level;
    msk_log_fn *log;
    void *log_ud;
    int sigref[65];      /* Lua handler per signal, LUA_NOREF if none */
    const void *sock_mt; /* the socket metatable, once getfd has seen it */
    /* Read by the SIGVTALRM handler, hence volatile. */
    volatile uint64_t resumes;   /* runs so far: one resume of a task each */
    task *volatile current;      /* the task running now, or NULL */
    lua_State *volatile inner;   /* the thread it runs: co or a nested one */
    volatile uint64_t tick_run;  /* the run the last tick fell into */
    volatile int ticks;          /* ticks in that run */
    int64_t budget_ms;           /* CPU budget per run; 0: none */
    timer_t timer;               /* on this thread's CPU clock */
    cputick *tick;               /* the timer's signal value; NULL: none */
    int warn_off;        /* Lua's warn("@off") */
    size_t warn_len;     /* a warning being assembled from pieces */
    char warn_buf[512];
};

static task *task_of(lua_State *co)
{
    return *(task **)lua_getextraspace(co);
}

msk_rt *msk__rt_get(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RTKEY);
    msk_rt *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
}

/* ---- logging ------------------------------------------------------- */

void msk_log_stderr(int level, const char *msg, void *udata)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    (void)udata;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, ts.tv_nsec / 1000000L,
            names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
    fflush(stderr);
}

void msk__rt_set_log(msk_rt *rt, msk_log_fn *fn, void *udata, int level)
{
    rt->log = fn ? fn : msk_log_stderr;
    rt->log_ud = udata;
    rt->log_level = level;
}

int msk__rt_status(const msk_rt *rt)
{
    return rt->status;
}

void msk__rt_log(msk_rt *rt, int level, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    if (level < rt->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    rt->log(level, buf, rt->log_ud);
}

/* ---- the ready queue ------------------------------------------------- */

static void on_ready(msk_loop *loop, int64_t id, void *udata);

/* Queue t to be resumed with the nargs values already on its stack. */
static void enqueue(msk_rt *rt, task *t, int nargs)
{
    t->nargs = nargs;
    t->queued = 1;
    t->next = NULL;
    if (rt->tail)
        rt->tail->next = t;
    else
        rt->head = t;
    rt->tail = t;
    if (rt->ready_timer == 0)
        rt->ready_timer = msk_timer_add(rt->loop, 0, 0, on_ready, rt);
}

/* Stop whatever t waits for: its fd slot and its deadline timer. */
static void unwait(msk_rt *rt, task *t)
{
    if (t->fd >= 0 && t->fd < rt->nslots) {
        fdslot *s = &rt->slots[t->fd];
        if (s->reader == t)
            s->reader = NULL;
        if (s->writer == t)
            s->writer = NULL;
    }
    t->fd = -1;
    if (t->timer != 0) {
        msk_timer_cancel(rt->loop, t->timer);
        t->timer = 0;
    }
}

static void finish(msk_rt *rt, task *t)
{
    unwait(rt, t);
    *(task **)lua_getextraspace(t->co) = NULL;
    luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
    luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ctxref);
    rt->ntasks--;
    if (!t->daemon && --rt->nlive == 0)
        msk_loop_stop(rt->loop);     /* the program has ended */
    free(t);
}

/* Text for an error value without running code that could fail again. */
static const char *errtext(lua_State *L, lua_State *co)
{
    if (lua_type(co, -1) == LUA_TSTRING)
        return lua_tostring(co, -1);
    /* An error object: ask tostring() under protection in the main
     * thread, since __tostring is user code. */
    lua_getglobal(L, "tostring");
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isstring(L, -1)) {
        lua_pushvalue(L, -1);
        lua_xmove(L, co, 1);     /* keep it alive on co's stack */
        lua_pop(L, 1);
        return lua_tostring(co, -1);
    }
    lua_pop(L, 1);
    return lua_type(co, -1) == LUA_TNIL ? "nil" : "(error object is not a "
                                                 "string)";
}

static int arm(msk_rt *rt, task *t, int nres);

/* The body of a task spawned with spawn_then has ended: set co up to run
 * after(ctx, ok, ...) in place of the body. On success ok is true,
 * followed by the body's nres results; on error false, the error and its
 * traceback, taken here, where the failed frames still exist (no xpcall
 * stands between the task and its body: that is the point, a frame fewer
 * in every waiting connection). Returns the number of values to resume
 * with (after sits below them), or -1 if co cannot take them. */
static int then_args(msk_rt *rt, task *t, int st, int nres)
{
    lua_State *co = t->co, *L = rt->L;
    if (!lua_checkstack(co, 5) || !lua_checkstack(L, 8))
        return -1;
    msk__memcap_relax(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->afters);
    lua_rawgeti(L, -1, t->after);
    lua_remove(L, -2);                                 /* after */
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ctxref);      /* after ctx */
    luaL_unref(L, LUA_REGISTRYINDEX, t->ctxref);
    t->ctxref = LUA_NOREF;
    int n;
    if (st == LUA_OK) {                   /* co: results... */
        lua_pushboolean(L, 1);
        lua_xmove(L, co, 3);              /* results... after ctx true */
        lua_rotate(co, 1, 3);             /* after ctx true results... */
        n = nres + 2;
    } else {
        rt->inner = L;                    /* where __tostring would run */
        lua_pushboolean(L, 0);
        int errat = lua_gettop(co);
        lua_pushvalue(co, errat);
        lua_xmove(co, L, 1);              /* after ctx false err */
        luaL_traceback(L, co, errtext(L, co), 0);    /* ... err tb */
        lua_settop(co, errat);            /* errtext may have pushed */
        /* Unwinds the failed frames, running their __close handlers, and
         * leaves the error on co: the same one, or the error of a
         * handler that raised, which replaces it (as an __exit__'s does
         * in Python). */
        lua_resetthread(co);
        if (lua_gettop(co) > 0) {
            lua_pushvalue(co, -1);
            lua_xmove(co, L, 1);          /* after ctx false err tb err2 */
            if (lua_rawequal(L, -1, -3)) {
                lua_pop(L, 1);
            } else {                      /* a __close raised err2 */
                lua_replace(L, -3);       /* after ctx false err2 tb */
                lua_pop(L, 1);
                luaL_traceback(L, co, errtext(L, co), 0);
            }
        }
        lua_settop(co, 0);
        lua_xmove(L, co, 5);              /* after ctx false err tb */
        n = 4;
    }
    msk__memcap_relax(L, 0);
    return n;
}

static void resume(msk_rt *rt, task *t)
{
    lua_State *co = t->co;
    int nres = 0;
    task *prev = rt->current;
    lua_State *prev_inner = rt->inner;
    t->queued = 0;
    t->running = 1;
    rt->resumes++;       /* a new run: new budget, new fairness quota */
    rt->current = t;
    rt->inner = co;
    int st = lua_resume(co, rt->L, t->nargs, &nres);
    while (st != LUA_YIELD && t->after != 0) {
        int n = then_args(rt, t, st, nres);
        if (n < 0) {          /* out of memory: an error goes on below */
            if (st == LUA_OK)
                msk__rt_log(rt, MSK_LOG_ERROR, "task ended, but its "
                            "after-hook could not run: out of memory");
            break;
        }
        t->after = 0;
        rt->inner = co;
        st = lua_resume(co, rt->L, n, &nres);
    }
    t->running = 0;
    t->nargs = 0;
    if (st == LUA_YIELD) {
        rt->current = prev;
        rt->inner = prev_inner;
        if (nres >= 1 && lua_touserdata(co, -nres) == &SENTINEL) {
            arm(rt, t, nres);
        } else {
            /* A bare coroutine.yield() in a task: give the others a turn. */
            lua_pop(co, nres);
            enqueue(rt, t, 0);
        }
        return;
    }
    if (st != LUA_OK) {
        /* Outside any protected call: a memory error here would be a
         * panic, so the cap waits. t stays current, so a __tostring that
         * loops is stopped by t's budget. */
        msk__memcap_relax(rt->L, 1);
        rt->inner = rt->L;           /* where __tostring would run */
        const char *msg = errtext(rt->L, co);
        luaL_traceback(rt->L, co, msg, 0);
        msk__rt_log(rt, MSK_LOG_ERROR, "task failed: %s",
                    lua_tostring(rt->L, -1));
        lua_pop(rt->L, 1);
        lua_resetthread(co);         /* runs pending __close handlers */
        msk__memcap_relax(rt->L, 0);
    }
    rt->current = prev;
    rt->inner = prev_inner;
    finish(rt, t);
}

static void on_ready(msk_loop *loop, int64_t id, void *udata)
{
    msk_rt *rt = udata;
    (void)loop;
    (void)id;
    rt->ready_timer = 0;
    /* Only the tasks queued before this pass run now; a task that yields
     * again goes to the back and waits for the next pass, so the loop
     * still polls fds between turns. */
    task *last = rt->tail;
    while (rt->head != NULL) {
        task *t = rt->head;
        rt->head = t->next;
        if (rt->head == NULL)
            rt->tail = NULL;
        resume(rt, t);
        if (t == last)
            break;
    }
}

/* ---- waiting on fds and deadlines ----------------------------------- */

static void on_io(msk_loop *loop, int fd, unsigned events, void *udata)
{
    msk_rt *rt = udata;
    task *t;
    if (fd >= rt->nslots)
        return;
    if ((events & (MSK_READ | MSK_ERROR)) && (t = rt->slots[fd].reader)) {
        unwait(rt, t);
        lua_pushboolean(t->co, 1);
        t->nargs = 1;
        resume(rt, t);
    }
    /* The resume may have closed fd or grown the slot table. */
    if (fd < rt->nslots && (events & (MSK_WRITE | MSK_ERROR)) &&
        (t = rt->slots[fd].writer) != NULL) {
        unwait(rt, t);
        lua_pushboolean(t->co, 1);
        t->nargs = 1;
        resume(rt, t);
    }
    /* Drop the directions that fired with nobody waiting, so a level-
     * triggered fd cannot spin the loop. */
    unsigned mask = msk_io_mask(loop, fd);
    if (mask == 0)
        return;
    unsigned keep = 0;
    if (fd < rt->nslots) {
        if (rt->slots[fd].reader)
            keep |= MSK_READ;
        if (rt->slots[fd].writer)
            keep |= MSK_WRITE;
    }
    unsigned drop = events & ~keep & (MSK_READ | MSK_WRITE);
    if (events & MSK_ERROR)
        drop |= ~keep & (MSK_READ | MSK_WRITE);
    if (mask & drop) {
        unsigned nm = mask & ~drop;
        if (nm == 0)
            msk_io_unwatch(loop, fd);
        else
            msk_io_watch(loop, fd, nm, on_io, rt);
    }
}

static void on_deadline(msk_loop *loop, int64_t id, void *udata)
{
    task *t = udata;
    msk_rt *rt = msk__rt_get(t->co);
    (void)loop;
    (void)id;
    t->timer = 0;
    unwait(rt, t);
    lua_pushboolean(t->co, 0);
    t->nargs = 1;
    resume(rt, t);
}

/* Resume t on the next pass with nil, err. */
static void fail_later(msk_rt *rt, task *t, int err)
{
    unwait(rt, t);
    lua_pushnil(t->co);
    lua_pushinteger(t->co, err);
    enqueue(rt, t, 2);
}

/* Room for fd in the slot table. As the loop's own fd table does
 * (core/loop.c, io_grow): small tables double, and one past SLOTS_WHOLE
 * entries is made as long as the descriptor limit at once, with calloc,
 * whose fresh zero pages cost no memory until a slot on them is used. */
#define SLOTS_WHOLE 4096

static int grow_slots(msk_rt *rt, int fd)
{
    if (fd < rt->nslots)
        return 0;
    size_t n = rt->nslots ? (size_t)rt->nslots : 64;
    while (n <= (size_t)fd)
        n *= 2;
    struct rlimit rl;
    if (n > SLOTS_WHOLE && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > (rlim_t)fd &&
        rl.rlim_cur <= (rlim_t)INT_MAX)
        n = (size_t)rl.rlim_cur;
    fdslot *s = calloc(n, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    if (rt->nslots > 0)
        memcpy(s, rt->slots, (size_t)rt->nslots * sizeof *s);
    free(rt->slots);
    rt->slots = s;
    rt->nslots = (int)n;
    return 0;
}

/* The fd at idx: an integer, or a socket (-2 when it is closed, -3 for
 * anything else). Never raises: arm() runs outside any protected call. */
static int getfd(lua_State *L, int idx, const void **mt)
{
    if (lua_type(L, idx) == LUA_TUSERDATA) {
        /* Every wait on a socket passes here: compare the metatable's
         * address (cached per runtime) before the lookup by name. */
        sock_box *box = NULL;
        if (mt != NULL && *mt != NULL && lua_getmetatable(L, idx)) {
            if (lua_topointer(L, -1) == *mt)
                box = lua_touserdata(L, idx);
            lua_pop(L, 1);
        }
        if (box == NULL) {
            box = luaL_testudata(L, idx, MSK_SOCKET_MT);
            if (box == NULL)
                return -3;
            if (mt != NULL && lua_getmetatable(L, idx)) {
                *mt = lua_topointer(L, -1);
                lua_pop(L, 1);
            }
        }
        return box->s ? msk_sock_fd(box->s) : -2;
    }
    if (lua_type(L, idx) == LUA_TNUMBER)
        return (int)lua_tointeger(L, idx);
    return lua_isnoneornil(L, idx) ? -1 : -3;
}

/* A deadline in monotonic ms: an integer, or any number, clamped so
 * that settimeout(1e12) or sleep(1e300) waits "forever" instead of
 * wrapping around to a deadline in the past. */
static int64_t todeadline(lua_State *L, int idx)
{
    int isint;
    lua_Integer i = lua_tointegerx(L, idx, &isint);
    if (isint)
        return (int64_t)i;
    lua_Number d = lua_tonumber(L, idx);
    if (!(d > -4e18))               /* also NaN: due now */
        return INT64_MIN / 2;
    return d > 4e18 ? INT64_MAX / 2 : (int64_t)d;
}

/* t yielded SENTINEL, fd, events ("r"/"w" as 1/2), deadline_ms|nil. */
static int arm(msk_rt *rt, task *t, int nres)
{
    lua_State *co = t->co;
    int base = lua_gettop(co) - nres + 1;
    int fd = getfd(co, base + 1, &rt->sock_mt);
    unsigned ev = (unsigned)lua_tointeger(co, base + 2);
    int has_deadline = !lua_isnoneornil(co, base + 3);
    int64_t deadline = has_deadline ? todeadline(co, base + 3) : 0;
    lua_settop(co, base - 1);

    if (fd == -2 || fd == -3) {
        /* Closed before the wait, or not something to wait on. */
        fail_later(rt, t, fd == -2 ? EBADF : EINVAL);
        return 0;
    }
    if (fd >= 0) {
        int rc = grow_slots(rt, fd);
        if (rc < 0) {
            fail_later(rt, t, ENOMEM);
            return 0;
        }
        task **slot = ev == MSK_WRITE ? &rt->slots[fd].writer
                                      : &rt->slots[fd].reader;
        if (*slot != NULL && *slot != t) {
            fail_later(rt, t, EBUSY);
            return 0;
        }
        unsigned mask = msk_io_mask(rt->loop, fd);
        if ((mask & ev) == 0) {
            rc = msk_io_watch(rt->loop, fd, mask | ev, on_io, rt);
            if (rc == -EPERM) {
                /* A regular file or /dev/null: always ready. */
                lua_pushboolean(co, 1);
                enqueue(rt, t, 1);
                return 0;
            }
            if (rc < 0) {
                fail_later(rt, t, -rc);
                return 0;
            }
        }
        *slot = t;
        t->fd = fd;
        t->ev = ev;
    }
    if (has_deadline) {
        int64_t ms = deadline - msk_clock_ms();
        t->timer = msk_timer_add(rt->loop, ms, 0, on_deadline, t);
        if (t->timer < 0) {
            int err = (int)-t->timer;
            t->timer = 0;
            fail_later(rt, t, err);
        }
    }
    return 0;
}

void msk__task_forget_fd(lua_State *L, int fd)
{
    msk_rt *rt = msk__rt_get(L);
    if (rt == NULL || rt->dead || fd < 0)
        return;
    if (fd < rt->nslots) {
        task *r = rt->slots[fd].reader, *w = rt->slots[fd].writer;
        if (r)
            fail_later(rt, r, EBADF);
        if (w)
            fail_later(rt, w, EBADF);
    }
    msk_io_unwatch(rt->loop, fd);
}

/* ---- spawning --------------------------------------------------------- */

/* A task running f args... from L's stack. after (spawn_then): the index
 * of its after-hook in rt's afters, whose ctx is below f; 0: none. */
static int spawn(msk_rt *rt, lua_State *L, int nargs, int daemon,
                 unsigned after)
{
    /* From a loop callback (the main thread, unprotected) the memory cap
     * must not raise. A task's own spawn is protected: the new thread may
     * fail there, before anything else exists to leak. */
    int relax = L == rt->L;
    if (relax)
        msk__memcap_relax(L, 1);
    lua_State *co = lua_newthread(L);              /* f args... co */
    task *t = malloc(sizeof *t);
    if (t == NULL) {
        lua_pop(L, 1);                             /* f args... */
        if (relax)
            msk__memcap_relax(L, 0);
        return -ENOMEM;
    }
    lua_insert(L, -(nargs + 2));                   /* [ctx] co f args... */
    lua_xmove(L, co, nargs + 1);                   /* [ctx] co */
    lua_pushvalue(L, -1);
    /* The registry grows now and then; t must not leak if it cannot. */
    msk__memcap_relax(L, 1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);      /* [ctx] co */
    int ctxref = LUA_NOREF;
    if (after) {
        lua_pushvalue(L, -2);
        ctxref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_remove(L, -2);                         /* co */
    }
    msk__memcap_relax(L, 0);
    if (relax)
        msk__memcap_relax(L, 0);
    t->co = co;
    t->ref = ref;
    t->exempt = 0;
    t->doomed = 0;
    t->warned = 0;
    t->fd = -1;
    t->ev = 0;
    t->timer = 0;
    t->running = 0;
    t->daemon = daemon != 0;
    t->ctxref = ctxref;
    t->after = after;
    t->queued = 0;
    t->next = NULL;
    *(task **)lua_getextraspace(co) = t;
    rt->ntasks++;
    if (!daemon)
        rt->nlive++;
    enqueue(rt, t, nargs);
    return 0;
}

int msk__rt_spawn(msk_rt *rt, lua_State *L, int nargs, int daemon)
{
    return spawn(rt, L, nargs, daemon, 0);
}

msk_loop *msk__rt_loop(const msk_rt *rt)
{
    return rt->loop;
}

int msk__rt_count(const msk_rt *rt, int *nlive)
{
    if (nlive)
        *nlive = rt->nlive;
    return rt->ntasks;
}

/* ---- signals ------------------------------------------------------- */

static void on_signal(msk_loop *loop, int signo, void *udata)
{
    msk_rt *rt = udata;
    (void)loop;
    if (signo <= 0 || signo > 64 || rt->sigref[signo] == LUA_NOREF)
        return;
    lua_rawgeti(rt->L, LUA_REGISTRYINDEX, rt->sigref[signo]);
    lua_pushinteger(rt->L, signo);
    if (msk__rt_spawn(rt, rt->L, 1, 1) == 0)
        lua_pop(rt->L, 1);
    else
        lua_pop(rt->L, 2);
}

/* ---- the CPU budget ------------------------------------------------ */

/* The value a timer signal carries: a block that outlives its runtime,
 * so a signal still pending when the runtime is freed finds rt == NULL
 * rather than freed memory. Blocks are reused, never freed (the list is
 * process-wide, like the signal disposition itself). */
struct cputick {
    msk_rt *volatile rt;
    cputick *next;
};

static pthread_mutex_t tick_lock = PTHREAD_MUTEX_INITIALIZER;
static cputick *tick_pool;
static int tick_handler;       /* 1: ours is installed, -1: refused */

static void budget_hook(lua_State *L, lua_Debug *ar);

/* SIGVTALRM from a runtime's CPU timer: only reads and writes the
 * runtime's volatile fields and calls lua_sethook, which Lua allows from
 * a signal handler (lua.c does the same for SIGINT). */
static void on_cpu_tick(int signo, siginfo_t *si, void *uc)
{
    (void)signo;
    (void)uc;
    if (si->si_code != SI_TIMER || si->si_value.sival_ptr == NULL)
        return;
    msk_rt *rt = ((cputick *)si->si_value.sival_ptr)->rt;
    if (rt == NULL)
        return;
    task *t = rt->current;
    if (t == NULL || t->exempt)
        return;
    if (!t->doomed) {
        if (rt->tick_run != rt->resumes) {
            rt->tick_run = rt->resumes;     /* a new run: count afresh */
            rt->ticks = 0;
            return;
        }
        if (++rt->ticks < BUDGET_TICKS)
            return;
        t->doomed = 1;
    }
    /* The innermost thread the task is running: a coroutine of its own
     * if it resumed one (task_resume records it), else the task. */
    lua_State *co = rt->inner;
    lua_sethook(co != NULL ? co : t->co, budget_hook, LUA_MASKCOUNT, 1);
}

/* Runs on every instruction of a hooked thread once its task is doomed:
 * raises at each one that is not the runtime's own code, so no pcall in
 * the handler can keep it running, while the runtime's cleanup can. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RTKEY);
    msk_rt *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    task *t = rt != NULL ? rt->current : NULL;
    if (t == NULL || !t->doomed) {
        lua_sethook(L, NULL, 0, 0);   /* left over from a stopped task */
        return;
    }
    if (!t->warned) {
        t->warned = 1;
        msk__rt_log(rt, MSK_LOG_WARN, "a task ran %.3gs of CPU without "
                    "waiting (--cpu-budget): stopping it",
                    (double)rt->budget_ms / 1000);
    }
    if (lua_getinfo(L, "S", ar) && ar->source != NULL &&
        strncmp(ar->source, "@bindings/", 10) == 0)
        return;
    luaL_where(L, 0);
    lua_pushfstring(L, "%sCPU budget exceeded: the task ran %d ms "
                    "without waiting (a loop that never waits?)",
                    lua_tostring(L, -1), (int)rt->budget_ms);
    lua_error(L);
}

/* Create rt's timer on this thread's CPU clock, signalling this thread.
 * Returns 0 or -errno. */
static int budget_timer(msk_rt *rt)
{
    if (rt->tick != NULL)
        return 0;
    pthread_mutex_lock(&tick_lock);
    if (tick_handler == 0) {
        struct sigaction old, sa;
        sigaction(SIGVTALRM, NULL, &old);
        if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
            tick_handler = -1;      /* the host's own: leave it alone */
        } else {
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_cpu_tick;
            sa.sa_flags = SA_SIGINFO | SA_RESTART;
            sigemptyset(&sa.sa_mask);
            tick_handler = sigaction(SIGVTALRM, &sa, NULL) == 0 ? 1 : -1;
        }
    }
    cputick *k = NULL;
    if (tick_handler == 1) {
        k = tick_pool;
        if (k != NULL)
            tick_pool = k->next;
        else
            k = calloc(1, sizeof *k);
    }
    pthread_mutex_unlock(&tick_lock);
    if (k == NULL)
        return tick_handler == 1 ? -ENOMEM : -EBUSY;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_signo = SIGVTALRM;
    sev.sigev_value.sival_ptr = k;
#ifdef SIGEV_THREAD_ID
#ifndef sigev_notify_thread_id           /* glibc before 2.35 lacks it */
#define sigev_notify_thread_id _sigev_un._tid
#endif
    sev.sigev_notify = SIGEV_THREAD_ID;     /* the loop's thread only */
    sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
#else
    sev.sigev_notify = SIGEV_SIGNAL;
#endif
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &rt->timer) < 0) {
        int err = errno;
        pthread_mutex_lock(&tick_lock);
        k->next = tick_pool;
        tick_pool = k;
        pthread_mutex_unlock(&tick_lock);
        return -err;
    }
    k->rt = rt;
    rt->tick = k;
    return 0;
}

static void budget_free(msk_rt *rt)
{
    if (rt->tick == NULL)
        return;
    timer_delete(rt->timer);
    rt->tick->rt = NULL;
    pthread_mutex_lock(&tick_lock);
    rt->tick->next = tick_pool;
    tick_pool = rt->tick;
    pthread_mutex_unlock(&tick_lock);
    rt->tick = NULL;
}

void msk__rt_set_budget(msk_rt *rt, int64_t ms)
{
    rt->budget_ms = ms > 0 ? ms : 0;
    if (rt->budget_ms > 0 && budget_timer(rt) < 0) {
        msk__rt_log(rt, MSK_LOG_WARN, "no CPU budget: cannot set up a CPU "
                    "timer with SIGVTALRM");
        rt->budget_ms = 0;
    }
    if (rt->tick == NULL)
        return;
    /* A tick every tenth of the budget, counted in CPU time: an idle
     * server gets no signals, a busy one ten per budget-second. */
    int64_t ns = rt->budget_ms * 1000000 / (BUDGET_TICKS - 1);
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (rt->budget_ms > 0) {
        its.it_value.tv_sec = ns / 1000000000;
        its.it_value.tv_nsec = ns % 1000000000;
        its.it_interval = its.it_value;
    }
    timer_settime(rt->timer, 0, &its, NULL);
}

void msk__rt_exempt(lua_State *co)
{
    task *t = co != NULL ? task_of(co) : NULL;
    if (t != NULL)
        t->exempt = 1;
}

const volatile uint64_t *msk__rt_resumes(const msk_rt *rt)
{
    return rt != NULL ? &rt->resumes : NULL;
}

const void *msk__task_sentinel(void)
{
    return &SENTINEL;
}

/* ---- Lua warnings (warn(), errors in __gc) go to the log ------------ */

static void on_warn(void *ud, const char *msg, int tocont)
{
    msk_rt *rt = ud;
    if (rt->warn_len == 0 && !tocont && msg[0] == '@') {
        if (strcmp(msg, "@off") == 0)
            rt->warn_off = 1;
        else if (strcmp(msg, "@on") == 0)
            rt->warn_off = 0;
        return;
    }
    size_t n = strlen(msg), room = sizeof rt->warn_buf - 1 - rt->warn_len;
    memcpy(rt->warn_buf + rt->warn_len, msg, n < room ? n : room);
    rt->warn_len += n < room ? n : room;
    if (tocont)
        return;
    rt->warn_buf[rt->warn_len] = '\0';
    rt->warn_len = 0;
    /* Text, never a format: user bytes go through "%s". */
    if (!rt->warn_off)
        msk__rt_log(rt, MSK_LOG_WARN, "Lua warning: %s", rt->warn_buf);
}

/* ---- the Lua functions ------------------------------------------ */

static msk_rt *uprt(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* spawn(fn, ...) -> co: a task that keeps the program alive. */
static int task_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int rc = msk__rt_spawn(uprt(L), L, lua_gettop(L) - 1, 0);
    if (rc < 0)
        return luaL_error(L, "cannot spawn: %s", msk_strerror(rc));
    return 1;
}

/* spawn_daemon(fn, ...) -> co: a task that does not keep it alive. */
static int task_spawn_daemon(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int rc = msk__rt_spawn(uprt(L), L, lua_gettop(L) - 1, 1);
    if (rc < 0)
        return luaL_error(L, "cannot spawn: %s", msk_strerror(rc));
    return 1;
}

/* spawn_then(after, ctx, fn, ...) -> co: a task that runs fn(...), then,
 * in the same coroutine, after(ctx, true, results...) when fn returns or
 * after(ctx, false, err, traceback) when it raises. A try/finally with no
 * frame of its own: nothing of it sits under fn while fn waits, so a
 * connection task whose body tail-calls its handler holds the handler's
 * frames only. */
static int task_spawn_then(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    msk_rt *rt = uprt(L);
    /* The hook's index in afters, adding it if it is new there. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->afters);
    unsigned after = 0;
    for (int i = 1; i <= rt->nafters && after == 0; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_rawequal(L, -1, 1))
            after = (unsigned)i;
        lua_pop(L, 1);
    }
    if (after == 0) {
        if (rt->nafters == MAX_AFTERS)
            return luaL_error(L, "spawn_then: more than %d distinct "
                              "after-hooks", MAX_AFTERS);
        lua_pushvalue(L, 1);
        lua_rawseti(L, -2, ++rt->nafters);
        after = (unsigned)rt->nafters;
    }
    lua_pop(L, 1);
    lua_remove(L, 1);                              /* ctx f args... */
    int rc = spawn(rt, L, lua_gettop(L) - 2, 0, after);
    if (rc < 0)
        return luaL_error(L, "cannot spawn: %s", msk_strerror(rc));
    return 1;
}

/* current() -> the running coroutine if it is a task, else nil. Cheap:
 * one extra-space read. task.lua maps a coroutine of the script's own to
 * the task that resumed it. */
static int task_current(lua_State *L)
{
    task *t = task_of(L);
    if (t == NULL)
        lua_pushnil(L);
    else
        lua_pushthread(L);
    return 1;
}

/* wakeup(co, ...) -> bool: resume a suspended task with the values on
 * the next pass. False if co is no task, runs, or is already queued. */
static int task_wakeup(lua_State *L)
{
    msk_rt *rt = uprt(L);
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co != NULL, 1, "thread");
    task *t = task_of(co);
    if (t == NULL || t->running || t->queued ||
        lua_status(co) != LUA_YIELD) {
        lua_pushboolean(L, 0);
        return 1;
    }
    unwait(rt, t);
    int n = lua_gettop(L) - 1;
    luaL_checkstack(co, n, "too many values to resume with");
    lua_xmove(L, co, n);
    enqueue(rt, t, n);
    lua_pushboolean(L, 1);
    return 1;
}

/* resume(co, ...) -> true, ... | false, err: coroutine.resume for
 * task.lua, which also records co as the thread its task runs while it
 * runs, so that the CPU budget reaches a loop inside a coroutine that a
 * handler made itself. */
static int task_resume(lua_State *L)
{
    msk_rt *rt = uprt(L);
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co != NULL, 1, "coroutine");
    int narg = lua_gettop(L) - 1, nres;
    if (co == L || !lua_checkstack(co, narg)) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, co == L ? "cannot resume non-suspended coroutine"
                                  : "too many arguments to resume");
        return 2;
    }
    lua_xmove(L, co, narg);
    lua_State *prev = rt->inner;
    rt->inner = co;
    int st = lua_resume(co, L, narg, &nres);
    rt->inner = prev;
    if (st == LUA_OK || st == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushboolean(L, 0);
            lua_pushliteral(L, "too many results to resume");
            return 2;
        }
        lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        return nres + 1;
    }
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);                /* the error */
    return 2;
}

/* now() -> monotonic milliseconds (integer) */
static int task_now(lua_State *L)
{
    lua_pushinteger(L, msk_clock_ms());
    return 1;
}

/* monotonic() -> seconds (float) */
static int task_monotonic(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)msk_clock_ns() / 1e9);
    return 1;
}

/* fdwait(fd, events, deadline_ms|nil) -> true | false | nil, errno: the
 * blocking wait used outside the loop. */
static int task_fdwait(lua_State *L)
{
    int fd = getfd(L, 1, NULL);
    unsigned ev = (unsigned)luaL_checkinteger(L, 2);
    int64_t ms = -1;
    luaL_argcheck(L, fd != -3, 1, "socket or fd expected");
    if (fd == -2) {
        luaL_pushfail(L);
        lua_pushinteger(L, EBADF);
        return 2;
    }
    if (!lua_isnoneornil(L, 3)) {
        luaL_checknumber(L, 3);
        int64_t d = todeadline(L, 3), now = msk_clock_ms();
        ms = d < now ? 0 : d - now;
    }
    int rc = msk_fd_wait(fd, ev, ms);
    if (rc < 0) {
        luaL_pushfail(L);
        lua_pushinteger(L, -rc);
        return 2;
    }
    lua_pushboolean(L, rc > 0);
    return 1;
}

/* read(fd, n) -> data ("" at EOF) | nil, errno: one read(2). */
static int task_read(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n > 0 && n <= 1 << 20, 2, "size must be 1..1MiB");
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)n);
    ssize_t got;
    do {
        got = read(fd, p, (size_t)n);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        luaL_pushfail(L);
        lua_pushinteger(L, errno);
        return 2;
    }
    luaL_pushresultsize(&b, (size_t)got);
    return 1;
}

/* onsignal(signo, fn|nil): run fn(signo) as a daemon task whenever signo
 * arrives; nil stops watching. */
static int task_onsignal(lua_State *L)
{
    msk_rt *rt = uprt(L);
    lua_Integer signo = luaL_checkinteger(L, 1);
    luaL_argcheck(L, signo > 0 && signo <= 64, 1, "bad signal number");
    if (rt->sigref[signo] != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, rt->sigref[signo]);
        rt->sigref[signo] = LUA_NOREF;
        msk_signal_unwatch(rt->loop, (int)signo);
    }
    if (lua_isnoneornil(L, 2))
        return 0;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int rc = msk_signal_watch(rt->loop, (int)signo, on_signal, rt);
    if (rc < 0)
        return luaL_error(L, "cannot watch signal %d: %s", (int)signo,
                          msk_strerror(rc));
    lua_pushvalue(L, 2);
    rt->sigref[signo] = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* stop(): end the loop after this pass (the host then returns). */
static int task_stop(lua_State *L)
{
    msk_loop_stop(uprt(L)->loop);
    return 0;
}

/* count() -> tasks, live tasks */
static int task_count(lua_State *L)
{
    int live;
    lua_pushinteger(L, msk__rt_count(uprt(L), &live));
    lua_pushinteger(L, live);
    return 2;
}

/* log(level, msg): level 0..3 (debug, info, warn, error). */
static int task_log(lua_State *L)
{
    lua_Integer level = luaL_checkinteger(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    msk_rt *rt = uprt(L);
    if (level >= rt->log_level)
        rt->log((int)level, msg, rt->log_ud);
    return 0;
}

/* loglevel() -> the lowest level logged */
static int task_loglevel(lua_State *L)
{
    lua_pushinteger(L, uprt(L)->log_level);
    return 1;
}

/* setstatus(n): the exit status of the program. */
static int task_setstatus(lua_State *L)
{
    uprt(L)->status = (int)luaL_checkinteger(L, 1);
    return 0;
}

/* walltime() -> seconds since the epoch (float) */
static int task_walltime(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

static int rt__gc(lua_State *L)
{
    msk_rt *rt = lua_touserdata(L, 1);
    /* Tasks still alive are anchored in the registry, which is being
     * torn down with the state: cancel what they wait for and free their
     * C records; their coroutines go with the state. A live task is a
     * thread in the registry whose extra space names its record (other
     * threads' is NULL, msk__rt_new), so the registry finds them all. */
    lua_pushnil(L);
    while (lua_next(L, LUA_REGISTRYINDEX) != 0) {
        lua_State *co = lua_tothread(L, -1);
        task *t = co != NULL ? task_of(co) : NULL;
        if (t != NULL) {
            *(task **)lua_getextraspace(co) = NULL;   /* found once */
            if (t->timer != 0)
                msk_timer_cancel(rt->loop, t->timer);
            free(t);
        }
        lua_pop(L, 1);
    }
    rt->head = rt->tail = NULL;
    if (rt->ready_timer != 0)
        msk_timer_cancel(rt->loop, rt->ready_timer);
    rt->ready_timer = 0;
    for (int fd = 0; fd < rt->nslots; fd++) {
        if (rt->slots[fd].reader || rt->slots[fd].writer)
            msk_io_unwatch(rt->loop, fd);
    }
    for (int sig = 1; sig <= 64; sig++) {
        if (rt->sigref[sig] != LUA_NOREF)
            msk_signal_unwatch(rt->loop, sig);
    }
    free(rt->slots);
    rt->slots = NULL;
    rt->nslots = 0;
    budget_free(rt);
    rt->current = NULL;
    rt->dead = 1;
    /* A resolution still running is waited for (at most the resolver's
     * own timeout) so that no worker thread outlives the program. */
    msk_offload_drop();
    return 0;
}

static const luaL_Reg funcs[] = {
    {"spawn", task_spawn},
    {"spawn_daemon", task_spawn_daemon},
    {"spawn_then", task_spawn_then},
    {"current", task_current},
    {"wakeup", task_wakeup},
    {"resume", task_resume},
    {"now", task_now},
    {"monotonic", task_monotonic},
    {"fdwait", task_fdwait},
    {"read", task_read},
    {"onsignal", task_onsignal},
    {"stop", task_stop},
    {"count", task_count},
    {"log", task_log},
    {"loglevel", task_loglevel},
    {"setstatus", task_setstatus},
    {"walltime", task_walltime},
    {NULL, NULL}
};

/* Functions that need no runtime: usable from a plain lua5.4 too. */
static const luaL_Reg plainfuncs[] = {
    {"now", task_now},
    {"monotonic", task_monotonic},
    {"fdwait", task_fdwait},
    {"read", task_read},
    {"walltime", task_walltime},
    {NULL, NULL}
};

msk_rt *msk__rt_new(lua_State *L, msk_loop *loop)
{
    msk_rt *rt = lua_newuserdatauv(L, sizeof *rt, 0);
    memset(rt, 0, sizeof *rt);
    rt->loop = loop;
    lua_State *main;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    main = lua_tothread(L, -1);
    lua_pop(L, 1);
    rt->L = main;
    /* lua_newthread copies the main thread's extra space into every new
     * coroutine, and Lua never initialises it: without this, a coroutine
     * a script creates would carry garbage that task_of() takes for a
     * task. The runtime owns the extra space of the state it runs in. */
    *(task **)lua_getextraspace(main) = NULL;
    rt->log = msk_log_stderr;
    rt->log_level = MSK_LOG_INFO;
    for (int i = 0; i < 65; i++)
        rt->sigref[i] = LUA_NOREF;
    lua_newtable(L);
    rt->afters = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    lua_pushcfunction(L, rt__gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &RTKEY);
    lua_setwarnf(main, on_warn, rt);
    msk__rt_set_budget(rt, MSK_DEFAULT_CPU_BUDGET_MS);
    msk_offload_retain();     /* resolver threads; joined in rt__gc */
    return rt;
}

/* luaopen__moonsock_task: with a runtime, the full table; without one (a
 * plain interpreter), only the functions that block the process. Both
 * carry `sentinel`, and `active` tells which one this is. */
int luaopen__moonsock_task(lua_State *L)
{
    msk_rt *rt = msk__rt_get(L);
    if (rt != NULL) {
        luaL_newlibtable(L, funcs);
        lua_pushlightuserdata(L, rt);
        luaL_setfuncs(L, funcs, 1);
    } else {
        luaL_newlib(L, plainfuncs);
    }
    lua_pushboolean(L, rt != NULL);
    lua_setfield(L, -2, "active");
    lua_pushlightuserdata(L, &SENTINEL);
    lua_setfield(L, -2, "sentinel");
    lua_pushinteger(L, MSK_READ);
    lua_setfield(L, -2, "READ");
    lua_pushinteger(L, MSK_WRITE);
    lua_setfield(L, -2, "WRITE");
    lua_pushinteger(L, SIGHUP);
    lua_setfield(L, -2, "SIGHUP");
    lua_pushinteger(L, SIGINT);
    lua_setfield(L, -2, "SIGINT");
    lua_pushinteger(L, SIGTERM);
    lua_setfield(L, -2, "SIGTERM");
    return 1;
}
