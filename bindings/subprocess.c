/*
 * subprocess.c -- _moonsock.subprocess: child processes and pipe ends.
 *
 * The raw half under subprocess.lua, over the core's msk_proc (proc.c).
 * spawn() starts a child and returns a process object and its pipe ends;
 * nothing here waits or raises for an OS failure (the cqueues rule): calls
 * return nil, errno, and subprocess.lua turns EAGAIN into waiting and
 * errnos into Python's exceptions.
 *
 * A running child's process object is anchored in the registry, so the
 * collector cannot take it before the loop has reaped the child; at the
 * exit the loop calls the object's onexit function (its user value) with
 * Python's returncode, on the main thread. A pipe end is a small box that
 * owns its fd ("moonsock.pipe"); close, __gc and __close share one path,
 * which first wakes any task waiting on the fd. stat, realpath and getuid
 * are here for the command server's key-file and confinement checks.
 * Left out: anything Python
 * does with terminals, users, groups and extra descriptors.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk.h"
#include "msk_bind.h"

#define PROC_MT "moonsock.proc"
#define PIPE_MT "moonsock.pipe"
#define MAX_ARGS 4096

typedef struct proc_box {
    msk_proc  *p;        /* NULL: not started, or closed */
    lua_State *L;        /* the main thread, for the exit callback */
    int        ref;      /* registry anchor while the child runs */
    int        code;     /* returncode once exited */
    int        exited;
} proc_box;

typedef struct pipe_box {
    int fd;              /* -1: closed */
} pipe_box;

static int pushfail(lua_State *L, int err)     /* nil, errno    [-0, +2] */
{
    luaL_pushfail(L);
    lua_pushinteger(L, err < 0 ? -err : err);
    return 2;
}

/* ---- pipe ends --------------------------------------------------------- */

static pipe_box *newpipe(lua_State *L, int fd)           /* [-0, +1, m] */
{
    pipe_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->fd = -1;                    /* closed until set below */
    luaL_setmetatable(L, PIPE_MT);
    box->fd = fd;
    return box;
}

/* pipe:read(n) -> data ("" at end of stream) | nil, errno     [-0, +1|2] */
static int pipe_read(lua_State *L)
{
    pipe_box *box = luaL_checkudata(L, 1, PIPE_MT);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_Buffer b;
    ssize_t got;
    char *p;

    luaL_argcheck(L, n > 0 && n <= (1 << 20), 2, "size must be 1..1MiB");
    if (box->fd < 0)
        return pushfail(L, EBADF);
    p = luaL_buffinitsize(L, &b, (size_t)n);
    do {
        got = read(box->fd, p, (size_t)n);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return pushfail(L, errno);
    luaL_pushresultsize(&b, (size_t)got);
    return 1;
}

/* pipe:write(data [, i]) -> bytes written from position i (1-based)
 * | nil, errno. One write(2); EPIPE comes back as an errno, because the
 * host ignores SIGPIPE (or the child's exit would kill us).  [-0, +1|2] */
static int pipe_write(lua_State *L)
{
    pipe_box *box = luaL_checkudata(L, 1, PIPE_MT);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    ssize_t put;

    luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "out of range");
    if (box->fd < 0)
        return pushfail(L, EBADF);
    do {
        put = write(box->fd, data + i - 1, len - (size_t)(i - 1));
    } while (put < 0 && errno == EINTR);
    if (put < 0)
        return pushfail(L, errno);
    lua_pushinteger(L, put);
    return 1;
}

/* pipe:fileno() -> fd (-1 once closed)                          [-0, +1] */
static int pipe_fileno(lua_State *L)
{
    pipe_box *box = luaL_checkudata(L, 1, PIPE_MT);
    lua_pushinteger(L, box->fd);
    return 1;
}

/* close, __gc and __close. Tasks waiting on the fd wake with EBADF
 * before the number can be reused.                              [-0, +0] */
static int pipe_close(lua_State *L)
{
    pipe_box *box = luaL_checkudata(L, 1, PIPE_MT);
    if (box->fd >= 0) {
        int fd = box->fd;
        box->fd = -1;
        msk__task_forget_fd(L, fd);
        close(fd);
    }
    return 0;
}

static int pipe__tostring(lua_State *L)
{
    pipe_box *box = luaL_checkudata(L, 1, PIPE_MT);
    lua_pushfstring(L, "pipe (fd %d)", box->fd);
    return 1;
}

/* ---- processes ------------------------------------------------------- */

static proc_box *checkproc(lua_State *L)
{
    return luaL_checkudata(L, 1, PROC_MT);
}

/* From the loop: the child was reaped. Drop the anchor, then run the
 * object's onexit(code) on the main thread; its errors are logged, since
 * no Lua code is there to catch them. */
static void proc_exited(msk_proc *p, int code, void *udata)
{
    proc_box *box = udata;
    lua_State *L = box->L;
    int ref = box->ref;

    (void)p;
    box->exited = 1;
    box->code = code;
    box->ref = LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);      /* keep it alive here */
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (lua_getiuservalue(L, -1, 1) == LUA_TFUNCTION) {
        lua_pushinteger(L, code);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            msk_rt *rt = msk__rt_get(L);
            if (rt != NULL)
                msk__rt_log(rt, MSK_LOG_ERROR, "subprocess: onexit: %s",
                            lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* opts.<name>: nil (inherit), "pipe", "devnull", "stdout" or an fd. */
static void getstdio(lua_State *L, int opts, const char *name, int i,
                     msk_stdio *io)
{
    static const char *const hows[] = {
        "inherit", "pipe", "devnull", "stdout", NULL
    };
    int t = lua_getfield(L, opts, name);
    io->fd = -1;
    if (t == LUA_TNIL) {
        io->how = MSK_STDIO_INHERIT;
    } else if (t == LUA_TNUMBER) {
        io->how = MSK_STDIO_FD;
        io->fd = (int)lua_tointeger(L, -1);
    } else {
        io->how = luaL_checkoption(L, -1, NULL, hows);
        if (io->how == MSK_STDIO_STDOUT && i != 2)
            luaL_error(L, "%s: 'stdout' is only for stderr", name);
    }
    lua_pop(L, 1);
}

/* A NULL-terminated array of the strings in the table at idx, in a
 * userdata left on the stack (the strings are anchored by the table). */
static char **strarray(lua_State *L, int idx, const char *what)
{
    lua_Integer n = luaL_len(L, idx), i;
    char **v;

    if (n < 0 || n > MAX_ARGS)
        luaL_error(L, "%s: too many entries", what);
    v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 0);
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
            luaL_error(L, "%s[%d]: string expected", what, (int)i);
        s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            luaL_error(L, "%s[%d]: embedded null byte", what, (int)i);
        v[i - 1] = (char *)s;
        lua_pop(L, 1);               /* still anchored by the table */
    }
    v[n] = NULL;
    return v;
}

static const char *optstring(lua_State *L, int opts, const char *name)
{
    const char *s = NULL;
    if (lua_getfield(L, opts, name) != LUA_TNIL) {
        size_t len;
        s = luaL_checklstring(L, -1, &len);
        if (strlen(s) != len)
            luaL_error(L, "%s: embedded null byte", name);
    }
    lua_pop(L, 1);                   /* opts keeps the string alive */
    return s;
}

/* spawn(argv, opts) -> proc, stdin, stdout, stderr | nil, errno
 * argv: array of strings. opts: file, cwd, path (strings), env (array of
 * "NAME=value"), stdin, stdout, stderr (see getstdio), onexit (function
 * called with the returncode). The pipe values are pipe objects, or
 * false where the stream was not a pipe.                  [-0, +4|2, m] */
static int subprocess_spawn(lua_State *L)
{
    msk_rt *rt = msk__rt_get(L);
    msk_proc_opts o;
    proc_box *box;
    int fds[3], i, rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (rt == NULL)
        return luaL_error(L, "subprocess needs the moonsock runtime");
    memset(&o, 0, sizeof o);
    o.argv = strarray(L, 1, "args");                       /* +1 */
    if (o.argv[0] == NULL)
        return luaL_error(L, "args: empty");
    if (lua_getfield(L, 2, "env") == LUA_TTABLE)
        o.envp = strarray(L, lua_gettop(L), "env");        /* +2 */
    else
        lua_pushnil(L);                                    /* +2 */
    o.file = optstring(L, 2, "file");
    o.cwd = optstring(L, 2, "cwd");
    o.path = optstring(L, 2, "path");
    getstdio(L, 2, "stdin", 0, &o.stdio[0]);
    getstdio(L, 2, "stdout", 1, &o.stdio[1]);
    getstdio(L, 2, "stderr", 2, &o.stdio[2]);

    /* Everything that can raise happens before the child exists, so a
     * memory error cannot leak it. */
    box = lua_newuserdatauv(L, sizeof *box, 1);
    box->p = NULL;
    box->ref = LUA_NOREF;
    box->exited = 0;
    box->code = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    box->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    luaL_setmetatable(L, PROC_MT);
    lua_getfield(L, 2, "onexit");
    lua_setiuservalue(L, -2, 1);
    luaL_checkstack(L, 8, NULL);
    for (i = 0; i < 3; i++)
        newpipe(L, -1);
    lua_pushvalue(L, -4);
    box->ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* anchor, for the exit */

    rc = msk_proc_spawn(msk__rt_loop(rt), &box->p, &o, fds, proc_exited, box);
    if (rc < 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, box->ref);
        box->ref = LUA_NOREF;
        return pushfail(L, rc);
    }
    for (i = 0; i < 3; i++) {
        pipe_box *pb = lua_touserdata(L, -3 + i);
        pb->fd = fds[i];
        if (fds[i] < 0) {
            lua_pushboolean(L, 0);
            lua_replace(L, -4 + i);
        }
    }
    return 4;
}

/* proc:pid() -> pid                                             [-0, +1] */
static int proc_pid(lua_State *L)
{
    proc_box *box = checkproc(L);
    lua_pushinteger(L, box->p ? (lua_Integer)msk_proc_pid(box->p) : -1);
    return 1;
}

/* proc:returncode() -> code | nil while running                 [-0, +1] */
static int proc_returncode(lua_State *L)
{
    proc_box *box = checkproc(L);
    if (box->exited)
        lua_pushinteger(L, box->code);
    else
        lua_pushnil(L);
    return 1;
}

/* proc:kill(signo) -> true | nil, errno (ESRCH once reaped)  [-0, +1|2] */
static int proc_kill(lua_State *L)
{
    proc_box *box = checkproc(L);
    int signo = (int)luaL_checkinteger(L, 2);
    int rc;
    if (box->p == NULL)
        return pushfail(L, ESRCH);
    if ((rc = msk_proc_kill(box->p, signo)) < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* proc:killpg(signo) -> true | nil, errno: the child's whole process
 * group, grandchildren included.                             [-0, +1|2] */
static int proc_killpg(lua_State *L)
{
    proc_box *box = checkproc(L);
    int signo = (int)luaL_checkinteger(L, 2);
    int rc;
    if (box->p == NULL)
        return pushfail(L, ESRCH);
    if ((rc = msk_proc_killpg(box->p, signo)) < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* __gc: the record goes to the loop, which still reaps the child. */
static int proc__gc(lua_State *L)
{
    proc_box *box = checkproc(L);
    if (box->p != NULL) {
        msk_proc_free(box->p);
        box->p = NULL;
    }
    return 0;
}

static int proc__tostring(lua_State *L)
{
    proc_box *box = checkproc(L);
    lua_pushfstring(L, "process (pid %d)",
                    box->p ? (int)msk_proc_pid(box->p) : -1);
    return 1;
}

/* ---- helpers for confinement checks ----------------------------------- */

/* stat(path) -> mode, uid, kind ("file", "dir", "link", "other")
 * | nil, errno. Does not follow a final symlink (lstat), so a caller can
 * refuse one.                                                [-0, +3|2] */
static int subprocess_stat(lua_State *L)
{
    struct stat st;
    const char *path = luaL_checkstring(L, 1);
    if (lstat(path, &st) < 0)
        return pushfail(L, errno);
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file"
                      : S_ISDIR(st.st_mode) ? "dir"
                      : S_ISLNK(st.st_mode) ? "link" : "other");
    return 3;
}

/* realpath(path) -> the canonical absolute path | nil, errno [-0, +1|2] */
static int subprocess_realpath(lua_State *L)
{
    char *r = realpath(luaL_checkstring(L, 1), NULL);
    if (r == NULL)
        return pushfail(L, errno);
    lua_pushstring(L, r);
    free(r);
    return 1;
}

/* getuid() -> the real user id                                  [-0, +1] */
static int subprocess_getuid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getuid());
    return 1;
}

/* count() -> children of this loop not yet reaped               [-0, +1] */
static int subprocess_count(lua_State *L)
{
    msk_rt *rt = msk__rt_get(L);
    lua_pushinteger(L, rt ? msk_proc_count(msk__rt_loop(rt)) : 0);
    return 1;
}

static void newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                     const luaL_Reg *methods)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

int luaopen__moonsock_subprocess(lua_State *L)
{
    static const luaL_Reg pipe_meta[] = {
        {"__gc", pipe_close}, {"__close", pipe_close},
        {"__tostring", pipe__tostring}, {NULL, NULL}
    };
    static const luaL_Reg pipe_methods[] = {
        {"read", pipe_read}, {"write", pipe_write},
        {"fileno", pipe_fileno}, {"close", pipe_close}, {NULL, NULL}
    };
    static const luaL_Reg proc_meta[] = {
        {"__gc", proc__gc}, {"__tostring", proc__tostring}, {NULL, NULL}
    };
    static const luaL_Reg proc_methods[] = {
        {"pid", proc_pid}, {"returncode", proc_returncode},
        {"kill", proc_kill}, {"killpg", proc_killpg}, {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"spawn", subprocess_spawn}, {"count", subprocess_count},
        {"stat", subprocess_stat}, {"realpath", subprocess_realpath},
        {"getuid", subprocess_getuid}, {NULL, NULL}
    };
    static const struct { const char *name; int signo; } sigs[] = {
        {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGKILL", SIGKILL},
        {"SIGTERM", SIGTERM}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
        {"SIGPIPE", SIGPIPE}, {"SIGSTOP", SIGSTOP}, {"SIGCONT", SIGCONT},
    };
    size_t i;

    newclass(L, PIPE_MT, pipe_meta, pipe_methods);
    newclass(L, PROC_MT, proc_meta, proc_methods);
    luaL_newlib(L, funcs);
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        lua_pushinteger(L, sigs[i].signo);
        lua_setfield(L, -2, sigs[i].name);
    }
    return 1;
}
