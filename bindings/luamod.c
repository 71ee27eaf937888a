/*
 * luamod.c -- moonsock's Lua modules for a plain lua5.4: require "moonsock".
 *
 * Built as the C module moonsock.so, which is never linked with Lua: the
 * interpreter that loads it provides Lua, and a second copy would be a
 * second VM. There is no task runtime in such a state, so every call that
 * would wait blocks the process, as Python's blocking calls do (task.lua).
 *
 * Nothing is registered under Python's bare names: `socket` stays
 * LuaSocket's. Every module is moonsock.<m> instead -- require
 * "moonsock.socket", or require("moonsock").socket, which loads it on
 * first use. The Lua halves were written for the server, where `socket`
 * is ours, so each runs with an _ENV whose require maps a bare name that
 * moonsock provides to moonsock.<name>; other globals are the real ones.
 * luamod_entries.c (generated) adds luaopen_moonsock_<m> for each module,
 * so Lua's all-in-one loader finds require "moonsock.socket" in
 * moonsock.so even before require "moonsock".
 */
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk.h"
#include "msk_bind.h"

/* Registry key of the _ENV table the Lua halves run with. */
static const char ENVKEY = 'e';

int msk__luamod_open(lua_State *L, const char *name);
int luaopen_moonsock(lua_State *L);

/* require(name) for the Lua halves: "socket" is moonsock.socket when
 * moonsock has one; anything else goes to the real require. */
static int env_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (strchr(name, '.') == NULL) {
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
        lua_pushfstring(L, "moonsock.%s", name);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) != LUA_TNIL) {
            lua_pop(L, 1);
            lua_replace(L, 1);          /* name := "moonsock.<name>" */
        } else {
            lua_pop(L, 2);
        }
        lua_settop(L, 1);
    }
    lua_getglobal(L, "require");
    lua_insert(L, 1);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* Push the _ENV of the Lua halves: own `require`, reads and writes of any
 * other name go to the globals. */
static void push_env(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ENVKEY) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, env_require);
    lua_setfield(L, -2, "require");
    lua_createtable(L, 0, 2);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ENVKEY);
}

/* package.preload loader of a Lua half; upvalue: its table index. */
static int load_half(lua_State *L)
{
    const msk_luasrc *m =
        &msk_luasrc_table[lua_tointeger(L, lua_upvalueindex(1))];
    char chunkname[128];
    snprintf(chunkname, sizeof chunkname, "@bindings/%s.lua", m->name);
    if (luaL_loadbufferx(L, m->src, m->len, chunkname, "t") != LUA_OK)
        return lua_error(L);
    push_env(L);
    lua_setupvalue(L, -2, 1);           /* a main chunk's one upvalue */
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* Fill package.preload; harmless to repeat. */
static void register_all(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (int i = 0; msk_cmodule_table[i].name != NULL; i++) {
        lua_pushcfunction(L, msk_cmodule_table[i].open);
        lua_setfield(L, -2, msk_cmodule_table[i].name);
    }
    for (int i = 0; msk_luasrc_table[i].name != NULL; i++) {
        lua_pushfstring(L, "moonsock.%s", msk_luasrc_table[i].name);
        lua_pushinteger(L, i);
        lua_pushcclosure(L, load_half, 1);
        lua_settable(L, -3);
    }
    lua_pop(L, 1);
}

/* __index of the moonsock table: moonsock.<k> on first use. */
static int lazy_index(lua_State *L)
{
    const char *key = luaL_checkstring(L, 2);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushfstring(L, "moonsock.%s", key);
    if (lua_rawget(L, -2) == LUA_TNIL)
        return 1;                       /* nil: no such module */
    lua_getglobal(L, "require");
    lua_pushfstring(L, "moonsock.%s", key);
    lua_call(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* modules() -> sorted list of the names moonsock.<name> can load. */
static int list_modules(lua_State *L)
{
    int n = 0;
    lua_newtable(L);
    for (int i = 0; msk_luasrc_table[i].name != NULL; i++) {
        lua_pushstring(L, msk_luasrc_table[i].name);
        lua_rawseti(L, -2, ++n);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

int luaopen_moonsock(lua_State *L)
{
    register_all(L);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, MSK_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushcfunction(L, list_modules);
    lua_setfield(L, -2, "modules");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lazy_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    return 1;
}

/* luaopen_moonsock_<name>: what the all-in-one loader calls for require
 * "moonsock.<name>". Runs the preload loader itself (require would find
 * it there too, but this is that require's own loader). */
int msk__luamod_open(lua_State *L, const char *name)
{
    register_all(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushfstring(L, "moonsock.%s", name);
    lua_rawget(L, -2);
    lua_pushfstring(L, "moonsock.%s", name);
    lua_call(L, 1, 1);
    return 1;
}
