/*
 * memcap.c -- a counting lua_Alloc with a limit: the Lua memory cap.
 *
 * The host installs it on a state it creates (msk_host.h, --max-memory).
 * Every block Lua allocates is counted; a request that would take the
 * total past the limit fails, which Lua turns into a memory error in the
 * code that asked (after one emergency collection). So a handler that
 * allocates without bound gets "not enough memory" and ends; its garbage
 * is collected and the server goes on.
 *
 * The runtime's own bookkeeping (spawning a task from a loop callback,
 * logging a failed task's traceback) runs outside any protected call,
 * where a memory error would be a panic. It asks for headroom with
 * msk__memcap_relax(): the cap is then not enforced until the matching
 * call with on == 0. Headroom is for a few small blocks only.
 *
 * _moonsock.memcap reports the figures to Lua (used, limit, peak). Left
 * out: per-task accounting (a block is not owned by a task in Lua's heap).
 */
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk_bind.h"

void *msk__memcap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    msk_memcap *m = ud;
    /* With ptr == NULL, osize names the kind of object, not a size. */
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        m->used -= old;
        return NULL;
    }
    if (nsize > old && m->limit != 0 && m->relaxed == 0 &&
        nsize - old > m->limit - (m->used < m->limit ? m->used
                                                      : m->limit)) {
        m->refused++;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p == NULL)
        return NULL;
    m->used = m->used - old + nsize;
    if (m->used > m->peak)
        m->peak = m->used;
    return p;
}

void msk__memcap_install(lua_State *L, msk_memcap *m, size_t limit)
{
    /* The state was made by luaL_newstate (which also sets the panic and
     * warning functions); its blocks so far came from realloc too, so
     * this allocator can free them. Lua's own count is exact. */
    m->used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 +
              (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    m->peak = m->used;
    m->limit = limit;
    m->relaxed = 0;
    m->refused = 0;
    lua_setallocf(L, msk__memcap_alloc, m);
}

/* The cap of L's allocator, or NULL if L does not use this one. */
static msk_memcap *capof(lua_State *L)
{
    void *ud;
    if (lua_getallocf(L, &ud) != msk__memcap_alloc)
        return NULL;
    return ud;
}

void msk__memcap_relax(lua_State *L, int on)
{
    msk_memcap *m = capof(L);
    if (m != NULL)
        m->relaxed += on ? 1 : -1;
}

void msk__memcap_setlimit(lua_State *L, size_t limit)
{
    msk_memcap *m = capof(L);
    if (m != NULL)
        m->limit = limit;
}

/* stats() -> {used=, limit=, peak=, refused=} | nil (no cap installed:
 * a state the host did not create, or a plain lua5.4). */
static int memcap_stats(lua_State *L)
{
    msk_memcap *m = capof(L);
    if (m == NULL) {
        luaL_pushfail(L);
        return 1;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)m->used);
    lua_setfield(L, -2, "used");
    lua_pushinteger(L, (lua_Integer)m->limit);
    lua_setfield(L, -2, "limit");
    lua_pushinteger(L, (lua_Integer)m->peak);
    lua_setfield(L, -2, "peak");
    lua_pushinteger(L, (lua_Integer)m->refused);
    lua_setfield(L, -2, "refused");
    return 1;
}

int luaopen__moonsock_memcap(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"stats", memcap_stats},
        {NULL, NULL}
    };
    luaL_newlib(L, funcs);
    return 1;
}
