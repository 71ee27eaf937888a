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
 */
#ifndef MSK_HOST_H
#define MSK_HOST_H

#include <lua.h>
#include "msk.h"

typedef struct msk_host msk_host;

enum { MSK_LOG_DEBUG, MSK_LOG_INFO, MSK_LOG_WARN, MSK_LOG_ERROR };
typedef void msk_log_fn(int level, const char *msg, void *udata);

typedef struct msk_host_opts {
    msk_log_fn *log;        /* NULL: stderr, "TIME LEVEL message" */
    void *log_udata;
    int log_level;          /* lines below this level are dropped */
    msk_loop_opts loop;     /* used when the host creates the loop */
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
 * "max-connections", "timeout", "grace", "backlog", "reload". Scripts
 * read them through require "moonsock.host".options. Returns 0 or
 * -EINVAL for an unknown name. */
int  msk_host_set_option(msk_host *h, const char *name, const char *value);

/* Make a C function callable from scripts as require(modname)[name]. */
int  msk_host_register(msk_host *h, const char *modname, const char *name,
                       lua_CFunction fn);
/* Make a whole C module available to require(modname). */
int  msk_host_preload(msk_host *h, const char *modname,
                      lua_CFunction opener);

/* Load script (arguments argv[0..argc-1] become `arg` and `...`) and
 * start its main chunk as a task. A script that cannot be read or
 * compiled fails here with the message in msk_host_error(). */
int  msk_host_load(msk_host *h, const char *script, int argc,
                   char **argv);

/* Run until the program ends: the main chunk has returned and no
 * non-daemon task is left, or msk_host_stop() was called. Returns 0 or a
 * negative loop error. */
int  msk_host_run(msk_host *h);
/* One pass without blocking longer than timeout_ms. Returns 1 while the
 * program runs, 0 once it has ended, or a negative code. */
int  msk_host_step(msk_host *h, int timeout_ms);
void msk_host_stop(msk_host *h);

/* The exit status the program asked for: 0, 1 after an uncaught error
 * in the main chunk, or what the script passed to os.exit's caller. */
int  msk_host_status(const msk_host *h);
/* Text of the last error this API returned. */
const char *msk_host_error(const msk_host *h);

#endif /* MSK_HOST_H */
