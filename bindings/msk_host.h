/*
 * msk_host.h -- the embedding API: run moonsock Lua scripts in a C program.
 *
 * A host owns one Lua state with moonsock's modules (socket, socketserver,
 * threading, time, ...) and one task runtime over an msk_loop. Give it a
 * script; it runs the script's main chunk as a task and, if the chunk
 * returns a handler table, serves it. The host either lets moonsock own
 * the loop (msk_host_run) or drives it from its own poller (msk_loop_fd,
 * msk_loop_timeout and msk_host_step). The library never prints and never
 * exits: errors come back as codes with msk_host_error() text, and log
 * lines go to the log callback (stderr with a timestamp by default).
 *
 * The moonsock program (bindings/main.c) uses only this header.
 *
 *     msk_host *h;
 *     if (msk_host_new(&h, NULL, NULL, NULL) < 0) ...
 *     msk_host_register(h, "host", "now", my_now);    -- before load
 *     if (msk_host_load(h, "handler.lua", 0, NULL) < 0)
 *         ... msk_host_error(h) ...
 *     msk_host_run(h);               -- or: loop on msk_host_step(h, 0)
 *     status = msk_host_status(h);
 *     msk_host_free(h);
 *
 * A host, its loop and its Lua state belong to one thread. Link with
 * `pkg-config --cflags --libs moonsock` or CMake's moonsock::moonsock;
 * docs/embedding.md is the guide.
 */
#ifndef MSK_HOST_H
#define MSK_HOST_H

#include "msk.h"

#ifdef __cplusplus
extern "C" {
#endif
/* Inside the extern "C" block: Lua's own lua.h has none (lua.hpp adds it),
 * and this header must compile the same from C and C++ hosts. */
#include <lua.h>

typedef struct msk_host msk_host;

enum { MSK_LOG_DEBUG, MSK_LOG_INFO, MSK_LOG_WARN, MSK_LOG_ERROR };
typedef void msk_log_fn(int level, const char *msg, void *udata);
/* The default log callback: "TIME LEVEL message" on stderr (UTC, ms).
 * A host's own callback may add to msg and pass it on. */
void msk_log_stderr(int level, const char *msg, void *udata);

typedef struct msk_host_opts {
    msk_log_fn *log;        /* NULL: stderr, "TIME LEVEL message" */
    void *log_udata;
    int log_level;          /* lines below this level are dropped */
    msk_loop_opts loop;     /* used when the host creates the loop */
    void *udata;            /* the host's own data: msk_host_udata() */
} msk_host_opts;

/* Create a host. loop and L may be NULL: the host then creates (and later
 * frees) its own. A caller's L must have the standard libraries open.
 * opts may be NULL. Returns 0 or a negative code. */
int  msk_host_new(msk_host **hp, msk_loop *loop, lua_State *L,
                  const msk_host_opts *opts);
/* Free the host, its Lua state and loop if it created them. */
void msk_host_free(msk_host *h);

lua_State *msk_host_lua(msk_host *h);
msk_loop  *msk_host_loop(msk_host *h);

/* Set a server option, as the command line does: "listen" (repeatable),
 * "max-connections", "timeout", "grace", "backlog", "reload" ("no":
 * do not watch files), "reload-poll" (ms: watch by polling mtimes),
 * "max-memory" (MiB of Lua heap, 0: no cap; default 1024, only for a
 * state the host created), "cpu-budget" (seconds a task may run without
 * waiting before it is stopped with an error; 0: off; default 1),
 * "reuse-port" ("yes": listeners set SO_REUSEPORT so that several
 * processes may serve one port; an ephemeral port or a unix: path is then
 * refused). Scripts read them through require("_moonsock.host").options().
 * Returns 0 or -EINVAL for an unknown name or a bad value. */
int  msk_host_set_option(msk_host *h, const char *name, const char *value);

/* Make a C function callable from scripts as require(modname)[name]
 * (modname's table is created if no module of that name is loaded yet).
 * Errors fn raises with luaL_error reach the script as Lua errors. */
int  msk_host_register(msk_host *h, const char *modname, const char *name,
                       lua_CFunction fn);
/* Make a whole C module available to require(modname): opener runs on
 * the first require, as a luaopen_* function does, and returns its table. */
int  msk_host_preload(msk_host *h, const char *modname,
                      lua_CFunction opener);
/* For C functions called from a host's scripts: opts->udata of the host
 * that owns L (any coroutine of it), or NULL when L has no host. */
void *msk_host_udata(lua_State *L);

/* Load script (arguments argv[0..argc-1] become `arg` and `...`) and
 * start its main chunk as a task. A script that cannot be read or
 * compiled fails here with the message in msk_host_error(). */
int  msk_host_load(msk_host *h, const char *script, int argc,
                   char **argv);

/* Run until the program ends: the main chunk has returned and no
 * non-daemon task is left, or msk_host_stop() was called. Returns 0 or a
 * negative loop error. */
int  msk_host_run(msk_host *h);
/* One pass without blocking longer than timeout_ms (0: never block).
 * Returns 1 while the program runs, 0 once it has ended (its last task
 * finished, or msk_host_stop() or a script asked to stop), or a negative
 * loop error. A host with its own poller waits on msk_loop_fd() (epoll
 * backend; -1 with poll, then pass a timeout here instead) for at most
 * msk_loop_timeout() ms, then calls msk_host_step(h, 0). */
int  msk_host_step(msk_host *h, int timeout_ms);
/* End the program: msk_host_run() returns, msk_host_step() returns 0. */
void msk_host_stop(msk_host *h);

/* The exit status the program asked for: 0, 1 after an uncaught error
 * in the main chunk, or what the script passed to os.exit's caller. */
int  msk_host_status(const msk_host *h);
/* Text of the last error: what msk_host_new/load returned, or, once the
 * program has ended with a non-zero status, the uncaught error of the
 * main chunk with its traceback (the library prints neither). "" if
 * none. */
const char *msk_host_error(const msk_host *h);

#ifdef __cplusplus
}
#endif

#endif /* MSK_HOST_H */
