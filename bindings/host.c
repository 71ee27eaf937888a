/*
 * host.c -- the embedding API (msk_host.h): a Lua state with moonsock's
 * modules and a task runtime over a loop.
 *
 * The Lua halves of the bindings are compiled in (luasrc.c, generated
 * from the bindings/ Lua files) and registered in package.preload, so `require
 * "socket"` finds ours even where Debian's LuaSocket is installed. The
 * script's main chunk runs as a task through boot.lua, which also decides
 * whether the script was a program or a handler to serve.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "msk.h"
#include "msk_bind.h"
#include "msk_host.h"

struct msk_host {
    msk_loop *loop;
    lua_State *L;
    msk_rt *rt;
    int own_loop, own_lua;
    int loaded;
    int options_ref;      /* the options table, shared with Lua */
    msk_memcap mem;       /* the memory cap of a state we created */
    void *udata;          /* opts->udata, for msk_host_udata() */
    char err[8192];      /* last error: load failure or the main chunk's */
};

/* Registry key of the light userdata pointing at L's host. */
static const char HOSTKEY = 'h';

/* Modules whose names are Python's; the other halves are moonsock.* */
static const char *python_names[] = {
    "socket", "socketserver", "time", "threading", "subprocess", "hashlib",
    "hmac", NULL
};

static int seterr(msk_host *h, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof h->err, fmt, ap);
    va_end(ap);
    return code;
}

/* package.preload loader for an embedded module; upvalue: its index. */
static int load_embedded(lua_State *L)
{
    const msk_luasrc *m =
        &msk_luasrc_table[lua_tointeger(L, lua_upvalueindex(1))];
    char chunkname[128];
    snprintf(chunkname, sizeof chunkname, "@bindings/%s.lua", m->name);
    if (luaL_loadbufferx(L, m->src, m->len, chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, lua_tostring(L, 1));
    lua_call(L, 1, 1);
    return 1;
}

static int is_python_name(const char *name)
{
    for (int i = 0; python_names[i] != NULL; i++)
        if (strcmp(python_names[i], name) == 0)
            return 1;
    return 0;
}

/* _moonsock.host: options and the program's status, for boot.lua. */
static int host_options(lua_State *L)
{
    msk_host *h = lua_touserdata(L, lua_upvalueindex(1));
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->options_ref);
    return 1;
}

/* seterror(msg): the main chunk failed; the host reads the message with
 * msk_host_error() and decides where it goes (the library never prints). */
static int host_seterror(lua_State *L)
{
    msk_host *h = lua_touserdata(L, lua_upvalueindex(1));
    const char *msg = luaL_checkstring(L, 1);
    seterr(h, 0, "%s", msg);
    return 0;
}

static int open_host(lua_State *L)
{
    static const luaL_Reg fns[] = {{"options", host_options},
                                   {"seterror", host_seterror},
                                   {NULL, NULL}};
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    lua_pushliteral(L, MSK_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}

/* Runs inside a protected call: registers the modules. */
static int setup(lua_State *L)
{
    msk_host *h = lua_touserdata(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (int i = 0; msk_cmodule_table[i].name != NULL; i++) {
        lua_pushcfunction(L, msk_cmodule_table[i].open);
        lua_setfield(L, -2, msk_cmodule_table[i].name);
    }
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, open_host, 1);
    lua_setfield(L, -2, "_moonsock.host");
    for (int i = 0; msk_luasrc_table[i].name != NULL; i++) {
        const char *name = msk_luasrc_table[i].name;
        lua_pushinteger(L, i);
        lua_pushcclosure(L, load_embedded, 1);
        if (is_python_name(name)) {
            lua_setfield(L, -2, name);
        } else {
            lua_pushfstring(L, "moonsock.%s", name);
            lua_insert(L, -2);
            lua_settable(L, -3);
        }
    }
    lua_pop(L, 1);
    lua_newtable(L);
    h->options_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* Replace coroutine.resume/wrap and define input(). */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "moonsock.task");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "install");
    lua_call(L, 0, 0);
    lua_pop(L, 1);
    /* Python's builtin buffer types: bytearray(), memoryview(), bytes(). */
    luaL_requiref(L, "_moonsock.bytearray", luaopen__moonsock_bytearray, 0);
    static const char *const builtins[] = {
        "bytearray", "memoryview", "bytes", NULL
    };
    for (int i = 0; builtins[i] != NULL; i++) {
        lua_getfield(L, -1, builtins[i]);
        lua_setglobal(L, builtins[i]);
    }
    lua_pop(L, 1);
    return 0;
}

int msk_host_new(msk_host **hp, msk_loop *loop, lua_State *L,
                 const msk_host_opts *opts)
{
    msk_host *h = calloc(1, sizeof *h);
    int rc;
    *hp = NULL;
    if (h == NULL)
        return -ENOMEM;
    h->options_ref = LUA_NOREF;
    if (loop == NULL) {
        rc = msk_loop_new(&loop, opts ? &opts->loop : NULL);
        if (rc < 0) {
            free(h);
            return rc;
        }
        h->own_loop = 1;
    }
    h->loop = loop;
    if (L == NULL) {
        L = luaL_newstate();
        if (L == NULL) {
            msk_host_free(h);
            return -ENOMEM;
        }
        msk__memcap_install(L, &h->mem,
                            (size_t)MSK_DEFAULT_MAX_MEMORY_MB << 20);
        luaL_openlibs(L);
        /* Generational collection: a server makes mostly short-lived
         * strings (every recv), which a minor collection frees without
         * re-marking the long-lived state. 64 KiB echo spends 20 % fewer
         * user-space instructions per message (docs/performance.md). A
         * script may still ask for collectgarbage("incremental"). */
        lua_gc(L, LUA_GCGEN, 0, 0);
        h->own_lua = 1;
    }
    h->L = L;
    h->rt = msk__rt_new(L, loop);
    msk__rt_set_log(h->rt, opts ? opts->log : NULL,
                    opts ? opts->log_udata : NULL,
                    opts ? opts->log_level : MSK_LOG_INFO);
    h->udata = opts ? opts->udata : NULL;
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOSTKEY);
    lua_pushcfunction(L, setup);
    lua_pushlightuserdata(L, h);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        /* No host is left to hold the text: the log callback gets it. */
        msk__rt_log(h->rt, MSK_LOG_ERROR, "cannot set up the modules: %s",
                    lua_tostring(L, -1));
        lua_pop(L, 1);
        msk_host_free(h);
        return -EINVAL;
    }
    *hp = h;
    return 0;
}

void msk_host_free(msk_host *h)
{
    if (h == NULL)
        return;
    if (!h->own_lua && h->L) {
        lua_pushnil(h->L);              /* the caller's L outlives us */
        lua_rawsetp(h->L, LUA_REGISTRYINDEX, &HOSTKEY);
    }
    if (h->own_lua && h->L)
        lua_close(h->L);
    if (h->own_loop && h->loop)
        msk_loop_free(h->loop);
    free(h);
}

lua_State *msk_host_lua(msk_host *h) { return h->L; }

void *msk_host_udata(lua_State *L)
{
    msk_host *h;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &HOSTKEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h != NULL ? h->udata : NULL;
}
msk_loop *msk_host_loop(msk_host *h) { return h->loop; }

int msk_host_set_option(msk_host *h, const char *name, const char *value)
{
    static const char *known[] = {"listen", "max-connections", "timeout",
                                  "grace", "backlog", "reload",
                                  "reload-poll", "max-memory",
                                  "cpu-budget", "reuse-port", NULL};
    int ok = 0;
    for (int i = 0; known[i] != NULL; i++)
        if (strcmp(known[i], name) == 0)
            ok = 1;
    if (!ok)
        return seterr(h, -EINVAL, "unknown option '%s'", name);
    lua_State *L = h->L;
    /* The two limits the C runtime enforces itself (docs/hardening.md). */
    if (strcmp(name, "max-memory") == 0 || strcmp(name, "cpu-budget") == 0) {
        char *end;
        double v = strtod(value, &end);
        if (end == value || *end != '\0' || !(v >= 0) || v > 1e9)
            return seterr(h, -EINVAL, "--%s: bad value '%s'", name, value);
        if (name[0] == 'm')
            msk__memcap_setlimit(L, (size_t)(v * 1048576.0));
        else
            msk__rt_set_budget(h->rt, (int64_t)(v * 1000.0 + 0.5));
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->options_ref);
    if (strcmp(name, "listen") == 0) {
        /* Repeatable: a list. */
        if (lua_getfield(L, -1, name) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, name);
        }
        lua_pushstring(L, value);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        lua_pop(L, 1);
    } else {
        lua_pushstring(L, value);
        lua_setfield(L, -2, name);
    }
    lua_pop(L, 1);
    return 0;
}

static int do_register(lua_State *L)
{
    const char *modname = lua_touserdata(L, 1);
    const char *name = lua_touserdata(L, 2);
    lua_CFunction fn = (lua_CFunction)lua_touserdata(L, 3);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    luaL_getsubtable(L, -1, modname);
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
    return 0;
}

int msk_host_register(msk_host *h, const char *modname, const char *name,
                      lua_CFunction fn)
{
    lua_State *L = h->L;
    lua_pushcfunction(L, do_register);
    lua_pushlightuserdata(L, (void *)modname);
    lua_pushlightuserdata(L, (void *)name);
    lua_pushlightuserdata(L, (void *)fn);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        seterr(h, -ENOMEM, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -ENOMEM;
    }
    return 0;
}

int msk_host_preload(msk_host *h, const char *modname, lua_CFunction opener)
{
    lua_State *L = h->L;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, opener);
    lua_setfield(L, -2, modname);
    lua_pop(L, 1);
    return 0;
}

/* Protected part of msk_host_load: builds `arg`, spawns boot's main. */
static int do_load(lua_State *L)
{
    msk_host *h = lua_touserdata(L, 1);
    const char *script = lua_tostring(L, 2);
    int argc = (int)lua_tointeger(L, 3);
    char **argv = lua_touserdata(L, 4);
    lua_createtable(L, argc, 1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    lua_getglobal(L, "require");
    lua_pushliteral(L, "moonsock.boot");
    lua_call(L, 1, 1);                 /* the boot function */
    /* Compile now, so a bad script fails msk_host_load with file:line. */
    if (luaL_loadfilex(L, script, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, script);
    luaL_checkstack(L, argc, "too many arguments");
    for (int i = 0; i < argc; i++)
        lua_pushstring(L, argv[i]);
    int rc = msk__rt_spawn(h->rt, L, argc + 2, 0);
    if (rc < 0)
        return luaL_error(L, "cannot start the main task: %s",
                          msk_strerror(rc));
    msk__rt_exempt(lua_tothread(L, -1));   /* a program may compute */
    lua_pop(L, 1);
    return 0;
}

int msk_host_load(msk_host *h, const char *script, int argc, char **argv)
{
    lua_State *L = h->L;
    lua_pushcfunction(L, do_load);
    lua_pushlightuserdata(L, h);
    lua_pushstring(L, script);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        seterr(h, -EINVAL, "%s", msg ? msg : "cannot load script");
        lua_pop(L, 1);
        return -EINVAL;
    }
    h->loaded = 1;
    return 0;
}

int msk_host_run(msk_host *h)
{
    return msk_loop_run(h->loop);
}

int msk_host_step(msk_host *h, int timeout_ms)
{
    int live;
    int rc = msk_loop_step(h->loop, timeout_ms);
    if (rc < 0)
        return rc;
    /* The runtime stops the loop when the last live task ends, and
     * task.stop() and msk_host_stop() stop it too: the program is over
     * even if daemon tasks or idle connections remain. */
    if (msk_loop_stopped(h->loop))
        return 0;
    msk__rt_count(h->rt, &live);
    return live > 0 ? 1 : 0;
}

void msk_host_stop(msk_host *h)
{
    msk_loop_stop(h->loop);
}

int msk_host_status(const msk_host *h)
{
    return msk__rt_status(h->rt);
}

const char *msk_host_error(const msk_host *h)
{
    return h->err;
}
