/*
 * bytearray.c -- _moonsock.bytearray: Python's bytearray and memoryview,
 * the buffers that recv_into fills and send/sendall take without a copy.
 *
 * Lua strings are immutable, so a recv that returns one must copy what it
 * read into a new string, an allocation and a memcpy per chunk. A handler
 * that wants neither reads into a bytearray it made once and sends a
 * memoryview of the part that was filled:
 *
 *     local buf = bytearray(65536)
 *     local view = memoryview(buf)
 *     local n = conn:recv_into(buf)
 *     conn:sendall(view:sub(1, n))        -- Python: view[:n]
 *
 * A bytearray here has a fixed size (Python's can grow): its bytes follow
 * the msk_bytes header inside its own userdata, which Lua never moves, so
 * a view's pointer into it stays valid for as long as the view keeps the
 * bytearray alive (its user value). A view of a string is read-only and
 * keeps the string alive the same way. Slices are string.sub's: 1-based,
 * inclusive, negative from the end, because Lua has no [a:b]; Python's
 * view[a:b] is view:sub(a + 1, b). Argument mistakes raise, with luaL
 * messages that name the function, as in socket.c.
 *
 * The builtins bytearray(), memoryview() and bytes() are this module's
 * functions, installed as globals by host.c.
 */
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk_bind.h"

/* The bytearray or memoryview at idx, or NULL. */
static msk_bytes *testbytes(lua_State *L, int idx)
{
    msk_bytes *b = luaL_testudata(L, idx, MSK_BYTEARRAY_MT);
    return b != NULL ? b : luaL_testudata(L, idx, MSK_MEMORYVIEW_MT);
}

static msk_bytes *checkbytes(lua_State *L, int idx)
{
    msk_bytes *b = testbytes(L, idx);
    if (b == NULL)
        luaL_typeerror(L, idx, "bytearray or memoryview");
    return b;
}

const char *msk__bytes_get(lua_State *L, int idx, size_t *len,
                           int writable)
{
    if (!writable && lua_type(L, idx) == LUA_TSTRING)
        return lua_tolstring(L, idx, len);
    msk_bytes *b = testbytes(L, idx);
    if (b == NULL || (writable && b->readonly))
        return NULL;
    *len = b->len;
    return b->data;
}

/* A new bytearray of n bytes, uninitialised.              [-0, +1, m] */
static msk_bytes *newarray(lua_State *L, size_t n)
{
    msk_bytes *b = lua_newuserdatauv(L, sizeof *b + n, 0);
    b->data = (char *)(b + 1);
    b->len = n;
    b->readonly = 0;
    luaL_setmetatable(L, MSK_BYTEARRAY_MT);
    return b;
}

/* What bytearray() and bytes() take besides a count: the bytes of a
 * string, bytearray or memoryview at index 1, or an argument error. */
static const char *checksource(lua_State *L, size_t *len)
{
    const char *src = msk__bytes_get(L, 1, len, 0);
    if (src == NULL)
        luaL_typeerror(L, 1, "integer, string, bytearray or memoryview");
    return src;
}

/* bytearray([n | data]): n zero bytes, or a copy of a string, bytearray
 * or memoryview; empty without an argument. */
static int ba_new(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        newarray(L, 0);
        return 1;
    }
    if (lua_type(L, 1) == LUA_TNUMBER) {
        lua_Integer n = luaL_checkinteger(L, 1);
        luaL_argcheck(L, n >= 0, 1, "negative count");
        luaL_argcheck(L, (lua_Unsigned)n <= (size_t)-1 / 2, 1,
                      "count too large");
        memset(newarray(L, (size_t)n)->data, 0, (size_t)n);
        return 1;
    }
    size_t len;
    const char *src = checksource(L, &len);
    /* src stays valid: Lua moves neither strings nor userdata. */
    memcpy(newarray(L, len)->data, src, len);
    return 1;
}

/* A view of len bytes at data, keeping the value at owner alive. The
 * methods have the metatable as upvalue 1 and pass it as mt, which saves
 * luaL_setmetatable's lookup by name; 0 looks it up. */
static void pushview(lua_State *L, int mt, int owner, char *data,
                     size_t len, int readonly)
{                                                        /* [-0, +1, m] */
    msk_bytes *v = lua_newuserdatauv(L, sizeof *v, 1);
    v->data = data;
    v->len = len;
    v->readonly = readonly;
    if (mt != 0) {
        lua_pushvalue(L, mt);
        lua_setmetatable(L, -2);
    } else {
        luaL_setmetatable(L, MSK_MEMORYVIEW_MT);
    }
    lua_pushvalue(L, owner);
    lua_setiuservalue(L, -2, 1);
}

/* The memoryview at idx, in a method: its metatable is upvalue 1. */
static msk_bytes *toview(lua_State *L, int idx)
{
    msk_bytes *v = lua_touserdata(L, idx);
    if (v != NULL && lua_getmetatable(L, idx)) {
        int ours = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (ours)
            return v;
    }
    return luaL_checkudata(L, idx, MSK_MEMORYVIEW_MT);
}

/* memoryview(obj): a view of all of a bytearray, a string (read-only) or
 * another view's bytes. */
static int mv_new(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, 1, &len);
        pushview(L, 0, 1, (char *)s, len, 1);  /* readonly: never written */
        return 1;
    }
    msk_bytes *b = luaL_testudata(L, 1, MSK_MEMORYVIEW_MT);
    if (b != NULL) {
        lua_getiuservalue(L, 1, 1);            /* view the same owner */
        pushview(L, 0, lua_gettop(L), b->data, b->len, b->readonly);
        return 1;
    }
    b = luaL_testudata(L, 1, MSK_BYTEARRAY_MT);
    if (b == NULL)
        return luaL_typeerror(L, 1, "string, bytearray or memoryview");
    pushview(L, 0, 1, b->data, b->len, 0);
    return 1;
}

/* bytes([n | obj]): Python's bytes, which here is a Lua string: n zero
 * bytes, or a copy of a bytearray's or memoryview's bytes; a string is
 * returned as it is. */
static int bytes_new(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_pushliteral(L, "");
        return 1;
    }
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_settop(L, 1);
        return 1;
    }
    if (lua_type(L, 1) == LUA_TNUMBER) {
        lua_Integer n = luaL_checkinteger(L, 1);
        luaL_argcheck(L, n >= 0, 1, "negative count");
        luaL_Buffer buf;
        memset(luaL_buffinitsize(L, &buf, (size_t)n), 0, (size_t)n);
        luaL_pushresultsize(&buf, (size_t)n);
        return 1;
    }
    size_t len;
    const char *src = checksource(L, &len);
    lua_pushlstring(L, src, len);
    return 1;
}

/* string.sub's rules: a start below 1 is 1, an end past the length is
 * the length, and a negative position counts from the end. */
static size_t startpos(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static size_t endpos(lua_Integer pos, size_t len)
{
    if (pos > (lua_Integer)len)
        return len;
    if (pos >= 0)
        return (size_t)pos;
    if (pos < -(lua_Integer)len)
        return 0;
    return len + (size_t)pos + 1;
}

/* view:sub(i [, j]) -> a view of bytes i..j (no copy). */
static int mv_sub(lua_State *L)
{
    msk_bytes *v = toview(L, 1);
    size_t start = startpos(luaL_checkinteger(L, 2), v->len);
    size_t end = endpos(luaL_optinteger(L, 3, -1), v->len);
    size_t n = start > end ? 0 : end - start + 1;
    lua_getiuservalue(L, 1, 1);
    pushview(L, lua_upvalueindex(1), lua_gettop(L),
             n ? v->data + start - 1 : v->data, n, v->readonly);
    return 1;
}

/* view:tobytes() -> the viewed bytes as a string. */
static int mv_tobytes(lua_State *L)
{
    msk_bytes *v = toview(L, 1);
    lua_pushlstring(L, v->data, v->len);
    return 1;
}

/* view:release(): nothing to release here (a view keeps its object alive
 * until it is collected); kept so ported code runs. */
static int mv_release(lua_State *L)
{
    toview(L, 1);
    return 0;
}

static int bytes__len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)checkbytes(L, 1)->len);
    return 1;
}

static int ba__tostring(lua_State *L)
{
    msk_bytes *b = luaL_checkudata(L, 1, MSK_BYTEARRAY_MT);
    lua_pushfstring(L, "<bytearray of %I bytes>", (lua_Integer)b->len);
    return 1;
}

static int mv__tostring(lua_State *L)
{
    msk_bytes *v = luaL_checkudata(L, 1, MSK_MEMORYVIEW_MT);
    lua_pushfstring(L, "<memory of %I bytes%s>", (lua_Integer)v->len,
                    v->readonly ? ", read-only" : "");
    return 1;
}

/* The methods (upvalue 1), then the attributes Python's memoryview has;
 * methods first, as view:sub is on a handler's hot path. */
static int mv__index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    msk_bytes *v = luaL_checkudata(L, 1, MSK_MEMORYVIEW_MT);
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2)
                                                   : NULL;
    if (k != NULL) {
        if (strcmp(k, "nbytes") == 0) {
            lua_pushinteger(L, (lua_Integer)v->len);
            return 1;
        }
        if (strcmp(k, "readonly") == 0) {
            lua_pushboolean(L, v->readonly);
            return 1;
        }
        if (strcmp(k, "obj") == 0) {
            lua_getiuservalue(L, 1, 1);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int isbytes(lua_State *L)
{
    size_t len;
    lua_pushboolean(L, msk__bytes_get(L, 1, &len, 0) != NULL);
    return 1;
}

static int iswritable(lua_State *L)
{
    size_t len;
    lua_pushboolean(L, msk__bytes_get(L, 1, &len, 1) != NULL);
    return 1;
}

void msk__bytes_metatables(lua_State *L, const void **ba, const void **mv)
{
    if (luaL_newmetatable(L, MSK_BYTEARRAY_MT)) {
        lua_pushcfunction(L, bytes__len);
        lua_setfield(L, -2, "__len");
        lua_pushcfunction(L, ba__tostring);
        lua_setfield(L, -2, "__tostring");
    }
    *ba = lua_topointer(L, -1);         /* kept alive by the registry */
    lua_pop(L, 1);
    if (luaL_newmetatable(L, MSK_MEMORYVIEW_MT)) {
        static const luaL_Reg methods[] = {
            {"sub", mv_sub}, {"tobytes", mv_tobytes},
            {"release", mv_release}, {NULL, NULL}
        };
        lua_pushcfunction(L, bytes__len);
        lua_setfield(L, -2, "__len");
        lua_pushcfunction(L, mv__tostring);
        lua_setfield(L, -2, "__tostring");
        luaL_newlibtable(L, methods);
        lua_pushvalue(L, -2);
        luaL_setfuncs(L, methods, 1);
        lua_pushcclosure(L, mv__index, 1);
        lua_setfield(L, -2, "__index");
    }
    *mv = lua_topointer(L, -1);
    lua_pop(L, 1);
}

int luaopen__moonsock_bytearray(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"bytearray", ba_new}, {"memoryview", mv_new}, {"bytes", bytes_new},
        {"isbytes", isbytes}, {"iswritable", iswritable}, {NULL, NULL}
    };
    const void *ba, *mv;
    msk__bytes_metatables(L, &ba, &mv);
    luaL_newlib(L, funcs);
    return 1;
}
