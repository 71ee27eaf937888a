/*
 * reload.c -- the C half of hot reload (_moonsock.reload): file watches
 * delivered as tasks, and compiling a script into an environment of its
 * own.
 *
 * A watcher wraps the core's msk_watch (inotify on the files' parent
 * directories, mtime polling as the fallback). When a watched file
 * changes, the loop calls on_change, which spawns a daemon task running
 * the watcher's Lua function with the path: C never runs Lua code that
 * might wait, so the decision (debounce, reload, log) is all in
 * reload.lua, as the cqueues rule asks. compile() is luaL_loadfilex in
 * text mode with the chunk's _ENV replaced, so a new version of a script
 * defines its globals in its own table and never in the old version's.
 */
#include <errno.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk.h"
#include "msk_bind.h"

#define WATCHER_MT "moonsock.watcher"

/* w == NULL: closed. The Lua function lives in the registry (fnref), so
 * the loop callback can reach it without a stack. */
typedef struct watch_box {
    msk_watch *w;
    msk_rt *rt;
    lua_State *L;        /* the main thread: loop callbacks run there */
    int fnref;
} watch_box;

static int pushfail(lua_State *L, int err)   /* nil, errno      [-0, +2] */
{
    luaL_pushfail(L);
    lua_pushinteger(L, -err);
    return 2;
}

/* Loop callback: run fn(path) as a daemon task, so a file change never
 * keeps the program alive and never runs Lua inside the loop's pass. */
static void on_change(msk_watch *w, const char *path, void *udata)
{
    watch_box *box = udata;
    lua_State *L = box->L;
    (void)w;
    if (box->fnref == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->fnref);
    lua_pushstring(L, path);
    if (msk__rt_spawn(box->rt, L, 1, 1) == 0)
        lua_pop(L, 1);               /* the task's coroutine */
    else
        lua_pop(L, 2);               /* spawn failed: fn and path remain */
}

static void close_box(lua_State *L, watch_box *box)
{
    if (box->w != NULL) {
        msk_watch_free(box->w);      /* unwatches before freeing */
        box->w = NULL;
    }
    if (box->fnref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, box->fnref);
        box->fnref = LUA_NOREF;
    }
}

/* watcher(fn [, poll_ms [, force_poll]]) -> watcher | nil, errno
 *                                                        [-0, +1|2, m] */
static int reload_watcher(lua_State *L)
{
    msk_rt *rt = msk__rt_get(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_Integer poll_ms = luaL_optinteger(L, 2, 0);
    int force_poll = lua_toboolean(L, 3);
    luaL_argcheck(L, poll_ms >= 0 && poll_ms <= 3600000, 2,
                  "poll interval out of range");
    if (rt == NULL)
        return luaL_error(L, "file watches need the moonsock runtime");

    /* The box exists, closed, before the watch does: a memory error in
     * between cannot leak it (liolib's newprefile). */
    watch_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->w = NULL;
    box->rt = rt;
    box->fnref = LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    box->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    luaL_setmetatable(L, WATCHER_MT);

    int rc = msk_watch_new(&box->w, msk__rt_loop(rt), force_poll,
                           (int)poll_ms, on_change, box);
    if (rc < 0) {
        box->w = NULL;
        return pushfail(L, rc);
    }
    lua_pushvalue(L, 1);
    box->fnref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

/* w:add(path) -> true | nil, errno                          [-0, +1|2] */
static int watcher_add(lua_State *L)
{
    watch_box *box = luaL_checkudata(L, 1, WATCHER_MT);
    const char *path = luaL_checkstring(L, 2);
    if (box->w == NULL)
        return pushfail(L, -EBADF);
    int rc = msk_watch_add(box->w, path);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* w:close(), __gc and __close: stop watching; idempotent.     [-0, +0] */
static int watcher_close(lua_State *L)
{
    close_box(L, luaL_checkudata(L, 1, WATCHER_MT));
    return 0;
}

/* compile(path, env) -> chunk | nil, message: the file as a text chunk
 * ("@path", so errors read path:line) whose _ENV is env.  [-0, +1|2, m] */
static int reload_compile(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    /* A main chunk has exactly one upvalue, _ENV. */
    lua_pushvalue(L, 2);
    if (lua_setupvalue(L, -2, 1) == NULL)
        lua_pop(L, 1);
    return 1;
}

int luaopen__moonsock_reload(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", watcher_close},
        {"__close", watcher_close},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"add", watcher_add},
        {"close", watcher_close},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"watcher", reload_watcher},
        {"compile", reload_compile},
        {NULL, NULL}
    };
    if (luaL_newmetatable(L, WATCHER_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
