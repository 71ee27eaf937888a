/*
 * msk_bind.h -- what the C halves of the bindings share. Never installed.
 *
 * The socket box (socket.c), the task runtime's entry points that other
 * bindings call (task.c), and the table of embedded Lua halves. Nothing in
 * core/ includes this file.
 */
#ifndef MSK_BIND_H
#define MSK_BIND_H

#include <lua.h>
#include "msk.h"
#include "msk_host.h"

#define MSK_SOCKET_MT "moonsock.socket"

/* A socket as Lua sees it. The box is Lua's; the msk_sock is the core's
 * and the fd is the msk_sock's. s == NULL: closed. */
typedef struct sock_box {
    msk_sock *s;
    double timeout;      /* seconds; < 0: None (wait forever) */
    int family, type, proto;
    unsigned char drained;   /* last recv was short: the stream was empty */
    unsigned char peerlen;   /* bytes of the peer kept after the box */
} sock_box;
/* A box made by accept(sock, true) is followed by the peer's sockaddr
 * (peerlen bytes, 0 if none was kept): the script server builds
 * client_address from it only when a handler asks, so an idle
 * connection holds no address table. */

/* A bytearray or a memoryview (bytearray.c) as C sees it: len bytes at
 * data. A bytearray's bytes follow this header in its own userdata (its
 * size is fixed); a view points into the bytearray or string it keeps
 * alive as its user value. readonly: a view of a string. */
#define MSK_BYTEARRAY_MT "moonsock.bytearray"
#define MSK_MEMORYVIEW_MT "moonsock.memoryview"
typedef struct msk_bytes {
    char *data;
    size_t len;
    int readonly;
} msk_bytes;
/* Create both metatables if they do not exist yet and give their
 * addresses, for checks on a hot path that compare pointers. */
void msk__bytes_metatables(lua_State *L, const void **ba, const void **mv);
/* The bytes of the string, bytearray or memoryview at idx, or NULL for
 * anything else (and, if writable, for a string or a read-only view). */
const char *msk__bytes_get(lua_State *L, int idx, size_t *len,
                           int writable);

sock_box *msk__sock_newbox(lua_State *L, int family, int type, int proto);
sock_box *msk__sock_check(lua_State *L, int idx);
void      msk__sock_pushaddr(lua_State *L, const msk_addr *a);

/* The task runtime of the Lua state L (NULL outside moonsock). */
typedef struct msk_rt msk_rt;
msk_rt *msk__rt_get(lua_State *L);

/* fd is about to be closed: wake the tasks waiting on it (their wait
 * returns nil, EBADF) and drop the loop's watch. No-op without a runtime. */
void msk__task_forget_fd(lua_State *L, int fd);

/* A job of core/offload.c as a Lua value (job.c): push an empty box,
 * whose __gc releases the job stored in the slot it returns (allocate the
 * box first, so that a memory error cannot leak a running job); check
 * gives the job back (NULL once dropped); drop releases it now, its fd
 * first taken out of the runtime's tables. */
msk_offload **msk__job_push(lua_State *L);
msk_offload *msk__job_check(lua_State *L, int idx);
void         msk__job_drop(lua_State *L, int idx);


/* Create the runtime for L over loop and register it; the runtime is a
 * userdata anchored in L's registry, freed when L closes. */
msk_rt *msk__rt_new(lua_State *L, msk_loop *loop);
void    msk__rt_set_log(msk_rt *rt, msk_log_fn *fn, void *udata,
                        int level);
void    msk__rt_log(msk_rt *rt, int level, const char *fmt, ...);
/* Spawn a task running a function with nargs arguments: L's stack holds
 * the function, then the arguments (last on top). Pops them all and
 * pushes the task's coroutine.              [-(nargs+1), +1, m] */
int     msk__rt_spawn(msk_rt *rt, lua_State *L, int nargs, int daemon);
/* The loop the runtime runs on (for bindings that add their own loop
 * events, as reload.c's file watches do). */
msk_loop *msk__rt_loop(const msk_rt *rt);
/* Tasks alive, and how many of them keep the program running. */
int     msk__rt_count(const msk_rt *rt, int *nlive);

/* The Lua memory cap (memcap.c): a counting allocator with a limit. */
typedef struct msk_memcap {
    size_t used, limit, peak;   /* bytes; limit 0: no cap */
    size_t refused;             /* allocations refused so far */
    int relaxed;                /* > 0: the cap is not enforced */
} msk_memcap;
void *msk__memcap_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* Make L (from luaL_newstate) count its memory in m, capped at limit
 * bytes (0: no cap). */
void  msk__memcap_install(lua_State *L, msk_memcap *m, size_t limit);
/* Suspend (on = 1) or restore (on = 0) the cap around runtime code that
 * runs unprotected; calls nest. No-op if L has no cap. */
void  msk__memcap_relax(lua_State *L, int on);
void  msk__memcap_setlimit(lua_State *L, size_t limit);
/* Default cap: room for 50,000 idle connections (a few KiB of Lua heap
 * each, about 200 MiB in all) several times over, and still well below
 * a server's RAM. docs/hardening.md has the figures. */
#define MSK_DEFAULT_MAX_MEMORY_MB 1024

/* The CPU budget of a task (task.c): how long it may run without
 * waiting before it is stopped with an error. 0 turns it off. Uses a
 * timer on the loop thread's CPU clock and SIGVTALRM; if the host has a
 * SIGVTALRM handler of its own, the budget is off (and logged). */
#define MSK_DEFAULT_CPU_BUDGET_MS 1000
void    msk__rt_set_budget(msk_rt *rt, int64_t ms);
/* The task runtime counts its resumes; socket.c reads the counter to
 * cap the bytes one resume may move (fairness). NULL without a runtime. */
const volatile uint64_t *msk__rt_resumes(const msk_rt *rt);

/* The address a task yields first to ask the runtime for a wait:
 * yield(sentinel, sock_or_fd, events [, deadline_ms]) resumes with true,
 * false (deadline passed) or nil, errno. */
const void *msk__task_sentinel(void);
/* Exempt the task whose coroutine is co from the CPU budget (the main
 * chunk of a script: a program may compute as long as it likes). */
void    msk__rt_exempt(lua_State *co);

/* The embedded Lua halves of the bindings (generated luasrc.c). */
typedef struct msk_luasrc {
    const char *name;
    const char *src;
    size_t len;
} msk_luasrc;
extern const msk_luasrc msk_luasrc_table[];

/* The C modules: every bindings/<m>.c but host.c and main.c. */
typedef struct msk_cmodule {
    const char *name;             /* "_moonsock.<m>" */
    lua_CFunction open;
} msk_cmodule;
extern const msk_cmodule msk_cmodule_table[];

int luaopen__moonsock_socket(lua_State *L);
int luaopen__moonsock_task(lua_State *L);
int luaopen__moonsock_bytearray(lua_State *L);
/* The status the program will exit with (set by boot.lua). */
int msk__rt_status(const msk_rt *rt);

#endif /* MSK_BIND_H */
