/*
 * socket.c -- _moonsock.socket, the raw C half of Lua's `socket` module.
 *
 * One userdata type, "moonsock.socket", a small box around a core msk_sock.
 * Every function of the module makes exactly one non-blocking attempt and
 * never yields: OS failures come back as `nil, errno` (EAGAIN included,
 * EBADF for a closed socket; resolver failures as `nil, eai` with eai < 0,
 * as Python's gaierror numbers them). Waiting, timeouts and Python's
 * exceptions live in socket.lua (the cqueues rule), with one exception
 * for speed: the recv, recv_into and sendall methods, which wait in the
 * common case (see below) and hand every other case to socket.lua.
 * Argument mistakes raise, with luaL_check* messages that name the
 * function.
 *
 * Addresses cross the boundary as Python tuples made Lua arrays:
 * {host, port} for AF_INET, {host, port, flowinfo, scope_id} for
 * AF_INET6, a path string for AF_UNIX.
 *
 * Fairness: one run of a task (one resume) may move at most RUN_QUOTA
 * bytes through recv, recvfrom and send. Past it they answer EAGAIN
 * without a syscall, so socket.lua waits for readiness like any other
 * EAGAIN: the task yields, the loop serves everyone else, and level-
 * triggered readiness brings the task straight back on the next pass. A
 * client pushing data as fast as it can thus costs the others at most
 * RUN_QUOTA bytes of work per pass. Only where waiting is possible: not
 * for a non-blocking socket (its caller asked for EAGAIN to mean "no
 * data"), not where the task cannot yield, not without a runtime.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk.h"
#include "msk_bind.h"

/* One scratch buffer per Lua state for recv: the string pushed from it is
 * the only allocation per read. recv(n) returns at most n bytes, as in
 * Python, so reading no more than the scratch holds keeps the semantics. */
#define SCRATCH_SIZE (256 * 1024)
#define RUN_QUOTA (256 * 1024)

/* The upvalue every function here shares: recv's scratch buffer and the
 * per-run byte count, kept here so the common path reads one pointer. */
typedef struct scratch {
    const void *mt;           /* the socket metatable, for fastbox() */
    const void *bamt, *mvmt;  /* bytearray's and memoryview's, fastbytes() */
    const volatile uint64_t *resumes;  /* the runtime's runs, or NULL */
    const void *sentinel;     /* what a task yields to wait (task.c) */
    uint64_t run;             /* *resumes when moved was last reset */
    size_t moved;             /* bytes moved in that run */
    char data[SCRATCH_SIZE];
} scratch;

/* True when this run has moved its quota and may wait instead. */
static int overquota(lua_State *L, scratch *sc, const sock_box *box)
{
    if (sc->resumes == NULL)
        return 0;
    if (sc->run != *sc->resumes) {
        sc->run = *sc->resumes;     /* a new run: a fresh quota */
        sc->moved = 0;
        return 0;
    }
    return sc->moved >= RUN_QUOTA && box->timeout != 0.0 &&
           lua_isyieldable(L);
}

static int pushfail(lua_State *L, int code)     /* nil, errno   [-0, +2] */
{
    luaL_pushfail(L);
    if (MSK_IS_EAI(code))
        lua_pushinteger(L, MSK_EAI(code));      /* negative, as Python */
    else
        lua_pushinteger(L, -code);
    return 2;
}

/* A box with room for a peer address of extra bytes after it. */
static sock_box *newbox(lua_State *L, int family, int type, int proto,
                        size_t extra)
{                                                        /* [-0, +1, m] */
    sock_box *box = lua_newuserdatauv(L, sizeof *box + extra, 0);
    box->peerlen = 0;
    box->s = NULL;                    /* closed until the fd exists */
    box->timeout = -1.0;
    box->family = family;
    box->type = type;
    box->proto = proto;
    box->drained = 0;
    luaL_setmetatable(L, MSK_SOCKET_MT);
    return box;
}

sock_box *msk__sock_newbox(lua_State *L, int family, int type, int proto)
{                                                        /* [-0, +1, m] */
    return newbox(L, family, type, proto, 0);
}

sock_box *msk__sock_check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, MSK_SOCKET_MT);
}

/* The socket at index 1, for the functions on the hot path: comparing
 * the metatable's address with the one kept in the scratch upvalue costs
 * far less than luaL_checkudata's registry lookup by name, and anything
 * else still gets luaL_checkudata's argument error. */
static sock_box *fastbox(lua_State *L, const scratch *sc)
{
    sock_box *box = lua_touserdata(L, 1);
    if (box != NULL && lua_getmetatable(L, 1)) {
        int ours = lua_topointer(L, -1) == sc->mt;
        lua_pop(L, 1);
        if (ours)
            return box;
    }
    return msk__sock_check(L, 1);
}

/* The bytearray or memoryview at idx, by the same pointer comparison as
 * fastbox(); NULL for anything else. */
static msk_bytes *fastbytes(lua_State *L, const scratch *sc, int idx)
{
    msk_bytes *b = lua_touserdata(L, idx);
    if (b == NULL || !lua_getmetatable(L, idx))
        return NULL;
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    return mt == sc->bamt || mt == sc->mvmt ? b : NULL;
}

/* What send and sendall take: a string, a bytearray or a memoryview. */
static const char *sendable(lua_State *L, const scratch *sc, int idx,
                            size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return lua_tolstring(L, idx, len);
    msk_bytes *b = fastbytes(L, sc, idx);
    if (b == NULL)
        return NULL;
    *len = b->len;
    return b->data;
}

/* One read of at most want bytes into dst, or -EAGAIN without a syscall
 * when the last read was short (the stream was empty then, so the read
 * would only say EAGAIN: wait for readiness instead; a non-blocking
 * socket always tries, as its caller expects) or this run has moved its
 * quota. */
static ssize_t readsome(lua_State *L, scratch *sc, sock_box *box,
                        char *dst, size_t want)
{
    if (box->drained && box->timeout != 0.0) {
        box->drained = 0;
        return -EAGAIN;
    }
    if (overquota(L, sc, box))
        return -EAGAIN;
    ssize_t got = msk_sock_recv(box->s, dst, want);
    if (got >= 0) {
        sc->moved += (size_t)got;
        box->drained = (size_t)got < want && box->type == SOCK_STREAM;
    }
    return got;
}

/* nil, EAGAIN, timeout: would block; the timeout (< 0: None) lets
 * socket.lua decide how to wait without another call.        [-0, +3] */
static int pushagain(lua_State *L, const sock_box *box)
{
    luaL_pushfail(L);
    lua_pushinteger(L, EAGAIN);
    lua_pushnumber(L, box->timeout);
    return 3;
}

/* Read a Lua address for family into a. Raises for a value of the wrong
 * shape (as Python raises TypeError); returns 0 or a resolver code. */
static int toaddr(lua_State *L, int idx, int family, msk_addr *a)
{
    if (family == AF_UNIX) {
        size_t len;
        const char *path = luaL_checklstring(L, idx, &len);
        int rc = msk_addr_unix(a, path, len);
        if (rc < 0)
            luaL_argerror(L, idx, "AF_UNIX path too long");
        return 0;
    }
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    luaL_argexpected(L, lua_type(L, idx) == LUA_TTABLE, idx,
                     family == AF_INET ? "{host, port} table"
                                       : "{host, port[, flow, scope]} "
                                         "table");
    lua_geti(L, idx, 1);
    lua_geti(L, idx, 2);
    lua_geti(L, idx, 3);
    lua_geti(L, idx, 4);
    const char *host = lua_tostring(L, -4);
    int isnum;
    lua_Integer port = lua_tointegerx(L, -3, &isnum);
    if (host == NULL || lua_type(L, -4) != LUA_TSTRING)
        luaL_argerror(L, idx, "address host must be a string");
    if (!isnum)
        luaL_argerror(L, idx, "address port must be an integer");
    if (port < 0 || port > 65535)
        luaL_argerror(L, idx, "port must be 0-65535");
    uint32_t flow = (uint32_t)luaL_optinteger(L, -2, 0);
    uint32_t scope = (uint32_t)luaL_optinteger(L, -1, 0);
    int rc = msk_addr_inet(a, family, host, (int)port, flow, scope);
    if (rc == MSK_EAI_BASE + EAI_NONAME) {
        /* Not numeric: resolve it, as Python does inside bind/connect. */
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", (int)port);
        rc = msk_addr_resolve(a, 1, host, portstr, family, 0, 0,
                              NULL, NULL);
        rc = rc > 0 ? 0 : rc;
    }
    lua_pop(L, 4);
    return rc;
}

/* Push an address the way Python returns it.                  [-0, +1] */
void msk__sock_pushaddr(lua_State *L, const msk_addr *a)
{
    char host[MSK_ADDRSTRLEN];
    size_t hostlen = 0;
    int port = 0;
    uint32_t flow = 0, scope = 0;
    int family = msk_addr_family(a);
    if (msk_addr_format(a, host, &hostlen, &port, &flow, &scope) < 0) {
        lua_pushnil(L);
        return;
    }
    if (family == AF_UNIX) {
        lua_pushlstring(L, host, hostlen);
        return;
    }
    lua_createtable(L, family == AF_INET6 ? 4 : 2, 0);
    lua_pushlstring(L, host, hostlen);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, port);
    lua_rawseti(L, -2, 2);
    if (family == AF_INET6) {
        lua_pushinteger(L, flow);
        lua_rawseti(L, -2, 3);
        lua_pushinteger(L, scope);
        lua_rawseti(L, -2, 4);
    }
}

/* socket(family, type, proto) -> sock | nil, errno        [-0, +1|2] */
static int sock_socket(lua_State *L)
{
    int family = (int)luaL_optinteger(L, 1, AF_INET);
    int type = (int)luaL_optinteger(L, 2, SOCK_STREAM);
    int proto = (int)luaL_optinteger(L, 3, 0);
    sock_box *box = msk__sock_newbox(L, family, type, proto);
    int rc = msk_sock_open(&box->s, family, type, proto);
    if (rc < 0)
        return pushfail(L, rc);
    return 1;
}

/* fromfd(fd, family, type, proto) -> sock | nil, errno: adopts fd. */
static int sock_fromfd(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    int family = (int)luaL_optinteger(L, 2, -1);
    int type = (int)luaL_optinteger(L, 3, -1);
    int proto = (int)luaL_optinteger(L, 4, 0);
    sock_box *box = msk__sock_newbox(L, family, type, proto);
    int rc = msk_sock_adopt(&box->s, fd, family, type);
    if (rc < 0)
        return pushfail(L, rc);
    box->family = msk_sock_family(box->s);
    box->type = msk_sock_type(box->s);
    return 1;
}

/* socketpair(family, type, proto) -> a, b | nil, errno */
static int sock_socketpair(lua_State *L)
{
    int family = (int)luaL_optinteger(L, 1, AF_UNIX);
    int type = (int)luaL_optinteger(L, 2, SOCK_STREAM);
    int proto = (int)luaL_optinteger(L, 3, 0);
    sock_box *a = msk__sock_newbox(L, family, type, proto);
    sock_box *b = msk__sock_newbox(L, family, type, proto);
    int rc = msk_sock_pair(&a->s, &b->s, family, type, proto);
    if (rc < 0)
        return pushfail(L, rc);
    return 2;
}

/* close(sock): idempotent; also __gc and __close.              [-0, +0] */
static int sock_close(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    if (box->s != NULL) {
        /* Wake any task waiting on the fd and drop the loop's watch
         * before the number can be reused. */
        msk__task_forget_fd(L, msk_sock_fd(box->s));
        msk_sock_close(box->s);
        box->s = NULL;
    }
    return 0;
}

/* detach(sock) -> fd: the socket object is closed, the fd is not. */
static int sock_detach(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    if (box->s == NULL) {
        lua_pushinteger(L, -1);
        return 1;
    }
    msk__task_forget_fd(L, msk_sock_fd(box->s));
    lua_pushinteger(L, msk_sock_detach(box->s));
    box->s = NULL;
    return 1;
}

static int sock_fileno(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    lua_pushinteger(L, box->s ? msk_sock_fd(box->s) : -1);
    return 1;
}

#define CHECKOPEN(L, box) \
    do { if ((box)->s == NULL) return pushfail((L), -EBADF); } while (0)

static int sock_bind(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    msk_addr a;
    CHECKOPEN(L, box);
    int rc = toaddr(L, 2, box->family, &a);
    if (rc == 0)
        rc = msk_sock_bind(box->s, &a);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int sock_listen(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    lua_Integer backlog = luaL_optinteger(L, 2, 128);
    CHECKOPEN(L, box);
    if (backlog < 0)
        backlog = 0;
    int rc = msk_sock_listen(box->s, backlog > 65535 ? 65535 : (int)backlog);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* accept(sock) -> conn, addr | nil, errno                  [-0, +2] */
/* The bytes a peer address of family takes in a lazy box: the sockaddr
 * of that family, so an IPv4 connection pays 16 bytes. */
static size_t peerroom(int family)
{
    switch (family) {
    /* sockaddr_in without sin_zero, which is zeros: the box stays within
     * a 80-byte malloc block. */
    case AF_INET:  return offsetof(struct sockaddr_in, sin_zero);
    case AF_INET6: return sizeof(struct sockaddr_in6);
    case AF_UNIX:  return sizeof(struct sockaddr_un);
    default:       return 0;
    }
}

/* accept(sock [, lazy]) -> conn, addr | nil, errno. With lazy, the
 * address is kept in conn's box for peeraddr() and only conn returns. */
static int sock_accept(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    int lazy = lua_toboolean(L, 2);
    CHECKOPEN(L, box);
    msk_addr peer;
    size_t room = lazy ? peerroom(box->family) : 0;
    /* The box exists before the fd does, so a memory error between accept
     * and push cannot leak the descriptor. */
    sock_box *nb = newbox(L, box->family, box->type, box->proto, room);
    int rc = msk_sock_accept(box->s, &nb->s, &peer);
    if (rc < 0)
        return pushfail(L, rc);
    nb->timeout = -1.0;
    if (!lazy) {
        msk__sock_pushaddr(L, &peer);
        return 2;
    }
    size_t keep = peer.len < room ? peer.len : room;
    if (peer.len <= UCHAR_MAX && (keep == peer.len ||
                                  msk_addr_family(&peer) == AF_INET)) {
        memcpy(nb + 1, &peer.ss, keep);
        nb->peerlen = (unsigned char)peer.len;
    }
    return 1;
}

/* peeraddr(conn) -> the address accept(sock, true) kept, as accept
 * returns it; nil if none was kept. */
static int sock_peeraddr(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    if (box->peerlen == 0) {
        lua_pushnil(L);
        return 1;
    }
    msk_addr a;
    memset(&a, 0, sizeof a);
    size_t room = peerroom(box->family);
    memcpy(&a.ss, box + 1, box->peerlen < room ? box->peerlen : room);
    a.len = box->peerlen;
    msk__sock_pushaddr(L, &a);
    return 1;
}

/* connect(sock, addr) -> true | nil, errno (EINPROGRESS: wait for write,
 * then connect_result). */
static int sock_connect(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    msk_addr a;
    CHECKOPEN(L, box);
    int rc = toaddr(L, 2, box->family, &a);
    if (rc == 0)
        rc = msk_sock_connect(box->s, &a);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* connect_result(sock) -> errno (0: connected) */
static int sock_connect_result(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    lua_pushinteger(L, box->s ? -msk_sock_connect_result(box->s) : EBADF);
    return 1;
}

/* recv(sock, n) -> data | nil, errno [, timeout]          [-0, +1|2|3] */
static int sock_recv(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(1));
    sock_box *box = fastbox(L, sc);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative buffersize in recv");
    CHECKOPEN(L, box);
    size_t want = (size_t)n < SCRATCH_SIZE ? (size_t)n : SCRATCH_SIZE;
    if (want == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    ssize_t got = readsome(L, sc, box, sc->data, want);
    if (got == -EAGAIN)
        return pushagain(L, box);
    if (got < 0)
        return pushfail(L, (int)got);
    lua_pushlstring(L, sc->data, (size_t)got);
    return 1;
}

/* recv_into(sock, buffer, n) -> count | nil, errno [, timeout]: reads
 * at most n bytes into the start of a bytearray or writable memoryview,
 * with no string made and nothing copied.               [-0, +1|2|3] */
static int sock_recv_into(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(1));
    sock_box *box = fastbox(L, sc);
    size_t len;
    char *dst = (char *)msk__bytes_get(L, 2, &len, 1);
    luaL_argexpected(L, dst != NULL, 2, "bytearray or writable memoryview");
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0 && (size_t)n <= len, 3,
                  "out of the buffer's range");
    CHECKOPEN(L, box);
    if (n == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    ssize_t got = readsome(L, sc, box, dst, (size_t)n);
    if (got == -EAGAIN)
        return pushagain(L, box);
    if (got < 0)
        return pushfail(L, (int)got);
    lua_pushinteger(L, got);
    return 1;
}

/* recvfrom(sock, n) -> data, addr | nil, errno */
static int sock_recvfrom(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative buffersize in recvfrom");
    CHECKOPEN(L, box);
    scratch *sc = lua_touserdata(L, lua_upvalueindex(1));
    size_t want = (size_t)n < SCRATCH_SIZE ? (size_t)n : SCRATCH_SIZE;
    msk_addr from;
    memset(&from, 0, sizeof from);
    if (overquota(L, sc, box))
        return pushfail(L, -EAGAIN);
    ssize_t got = msk_sock_recvfrom(box->s, sc->data, want, &from);
    if (got < 0)
        return pushfail(L, (int)got);
    sc->moved += (size_t)got;
    lua_pushlstring(L, sc->data, (size_t)got);
    if (from.len == 0)
        lua_pushnil(L);          /* connected stream: no address */
    else
        msk__sock_pushaddr(L, &from);
    return 2;
}

/* send(sock, data [, i]) -> n | nil, errno [, timeout]: sends data (a
 * string, bytearray or memoryview) from byte i (1-based, default 1), so
 * sendall never builds substrings. */
static int sock_send(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(1));
    sock_box *box = fastbox(L, sc);
    size_t len;
    const char *data = sendable(L, sc, 2, &len);
    luaL_argexpected(L, data != NULL, 2, "string, bytearray or memoryview");
    lua_Integer i = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "out of range");
    CHECKOPEN(L, box);
    if (overquota(L, sc, box))
        return pushagain(L, box);
    ssize_t n = msk_sock_send(box->s, data + i - 1, len - (size_t)(i - 1));
    if (n == -EAGAIN)
        return pushagain(L, box);
    if (n < 0)
        return pushfail(L, (int)n);
    sc->moved += (size_t)n;
    lua_pushinteger(L, n);
    return 1;
}

/* ---- recv, recv_into and sendall, the methods -------------------------
 * A handler's conn:recv(n), conn:recv_into(buffer) and conn:sendall(data)
 * are the C functions below, not Lua ones: one call per operation
 * instead of three, and while a connection is idle its coroutine holds
 * no frame between the handler and the wait, which keeps the coroutine
 * within Lua's initial stack (docs/performance.md). When the socket has
 * no timeout and the caller is a task, they wait by yielding the
 * runtime's sentinel themselves (lua_yieldk) and carry on in a
 * continuation. Everything else -- a
 * timeout, no runtime, a coroutine that cannot yield, flags, a bad
 * argument -- goes to socket.lua's general version (upvalue 2), so those
 * semantics live in one place. Upvalue 3 raises Python's exception for a
 * failed operation or wait. */
enum { UV_SCRATCH = 1, UV_SLOW, UV_FAIL };

static int passthrough(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L);
}

/* Finish the call in socket.lua with the nargs values on the stack. */
static int slowpath(lua_State *L, int nargs)
{
    lua_pushvalue(L, lua_upvalueindex(UV_SLOW));
    lua_insert(L, 1);
    lua_callk(L, nargs, LUA_MULTRET, 0, passthrough);
    return lua_gettop(L);
}

/* Raise what Python raises for err (a value as the runtime gave it). */
static int fail(lua_State *L, int err_idx, unsigned ev)
{
    lua_pushvalue(L, lua_upvalueindex(UV_FAIL));
    lua_pushvalue(L, err_idx);
    lua_pushinteger(L, ev);
    lua_call(L, 2, 0);
    return luaL_error(L, "socket operation failed");     /* not reached */
}

static int failerrno(lua_State *L, int err, unsigned ev)
{
    lua_pushinteger(L, err);
    return fail(L, lua_gettop(L), ev);
}

static int canyield(lua_State *L, const scratch *sc, const sock_box *box)
{
    return box->timeout < 0 && sc->resumes != NULL && lua_isyieldable(L);
}

/* Suspend until the socket at index 1 is ready for ev; k goes on. */
static int waitready(lua_State *L, const scratch *sc, unsigned ev,
                     lua_KContext ctx, lua_KFunction k)
{
    lua_pushlightuserdata(L, (void *)sc->sentinel);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, ev);
    return lua_yieldk(L, 3, ctx, k);
}

/* In a continuation: the runtime resumed with true, or nil, errno (the
 * socket was closed, or another task waits on it). */
static void resumed(lua_State *L, int nargs, unsigned ev)
{
    if (!lua_toboolean(L, nargs + 1))
        fail(L, nargs + 2, ev);
    lua_settop(L, nargs);
}

static int m_recv_k(lua_State *L, int status, lua_KContext ctx);

static int m_recv_go(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(UV_SCRATCH));
    sock_box *box = lua_touserdata(L, 1);
    size_t n = (size_t)lua_tointeger(L, 2);
    size_t want = n < SCRATCH_SIZE ? n : SCRATCH_SIZE;
    if (box->s == NULL)
        return failerrno(L, EBADF, MSK_READ);
    ssize_t got = readsome(L, sc, box, sc->data, want);
    if (got >= 0) {
        lua_pushlstring(L, sc->data, (size_t)got);
        return 1;
    }
    if (got != -EAGAIN)
        return failerrno(L, (int)-got, MSK_READ);
    if (canyield(L, sc, box))
        return waitready(L, sc, MSK_READ, 0, m_recv_k);
    return slowpath(L, 2);
}

static int m_recv_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    resumed(L, 2, MSK_READ);
    return m_recv_go(L);
}

/* sock:recv(bufsize [, flags]) -> data ("" at end of stream) */
static int m_recv(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(UV_SCRATCH));
    fastbox(L, sc);
    int isint;
    lua_Integer n = lua_tointegerx(L, 2, &isint);
    int flags = !lua_isnoneornil(L, 3) &&
                !(lua_isinteger(L, 3) && lua_tointeger(L, 3) == 0);
    if (!isint || n < 0 || flags)   /* socket.lua raises Python's error */
        return slowpath(L, lua_gettop(L));
    lua_settop(L, 2);
    if (n == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    return m_recv_go(L);
}

static int m_recv_into_k(lua_State *L, int status, lua_KContext ctx);

/* Read into the buffer (index 2, checked) at most n (index 3) bytes. */
static int m_recv_into_go(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(UV_SCRATCH));
    sock_box *box = lua_touserdata(L, 1);
    msk_bytes *b = lua_touserdata(L, 2);
    size_t want = (size_t)lua_tointeger(L, 3);
    if (box->s == NULL)
        return failerrno(L, EBADF, MSK_READ);
    ssize_t got = want == 0 ? 0 : readsome(L, sc, box, b->data, want);
    if (got >= 0) {
        lua_pushinteger(L, got);
        return 1;
    }
    if (got != -EAGAIN)
        return failerrno(L, (int)-got, MSK_READ);
    if (canyield(L, sc, box))
        return waitready(L, sc, MSK_READ, 0, m_recv_into_k);
    return slowpath(L, 3);
}

static int m_recv_into_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    resumed(L, 3, MSK_READ);
    return m_recv_into_go(L);
}

/* sock:recv_into(buffer [, nbytes [, flags]]) -> count (0 at end of
 * stream). nbytes absent or 0 means the whole buffer, as in Python. */
static int m_recv_into(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(UV_SCRATCH));
    fastbox(L, sc);
    msk_bytes *b = fastbytes(L, sc, 2);
    int isint = 1;
    lua_Integer n = 0;
    if (!lua_isnoneornil(L, 3))
        n = lua_tointegerx(L, 3, &isint);
    int flags = !lua_isnoneornil(L, 4) &&
                !(lua_isinteger(L, 4) && lua_tointeger(L, 4) == 0);
    if (b == NULL || b->readonly || !isint || n < 0 ||
        (size_t)n > b->len || flags)    /* socket.lua raises Python's error */
        return slowpath(L, lua_gettop(L));
    lua_settop(L, 2);
    lua_pushinteger(L, n == 0 ? (lua_Integer)b->len : n);
    return m_recv_into_go(L);
}

static int m_sendall_k(lua_State *L, int status, lua_KContext ctx);

/* Send data (index 2) from byte i on. */
static int m_sendall_go(lua_State *L, size_t i)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(UV_SCRATCH));
    sock_box *box = lua_touserdata(L, 1);
    size_t len;
    const char *data = sendable(L, sc, 2, &len);
    for (;;) {
        if (box->s == NULL)
            return failerrno(L, EBADF, MSK_WRITE);
        if (i >= len)
            return 0;
        ssize_t n = -EAGAIN;
        if (!overquota(L, sc, box))
            n = msk_sock_send(box->s, data + i, len - i);
        if (n >= 0) {
            sc->moved += (size_t)n;
            i += (size_t)n;
            continue;
        }
        if (n != -EAGAIN)
            return failerrno(L, (int)-n, MSK_WRITE);
        if (canyield(L, sc, box))
            return waitready(L, sc, MSK_WRITE, (lua_KContext)i, m_sendall_k);
        lua_pushinteger(L, (lua_Integer)i + 1);
        return slowpath(L, 3);
    }
}

static int m_sendall_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    resumed(L, 2, MSK_WRITE);
    return m_sendall_go(L, (size_t)ctx);
}

/* sock:sendall(data): all of it (a string, bytearray or memoryview), or
 * an exception. */
static int m_sendall(lua_State *L)
{
    scratch *sc = lua_touserdata(L, lua_upvalueindex(UV_SCRATCH));
    fastbox(L, sc);
    lua_settop(L, 2);
    size_t len;
    if (sendable(L, sc, 2, &len) == NULL) {
        lua_pushinteger(L, 1);
        return slowpath(L, 3);       /* socket.lua raises TypeError */
    }
    return m_sendall_go(L, 0);
}

/* sendto(sock, data, addr) -> n | nil, errno */
static int sock_sendto(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    msk_addr a;
    CHECKOPEN(L, box);
    int rc = toaddr(L, 3, box->family, &a);
    if (rc < 0)
        return pushfail(L, rc);
    ssize_t n = msk_sock_sendto(box->s, data, len, &a);
    if (n < 0)
        return pushfail(L, (int)n);
    lua_pushinteger(L, n);
    return 1;
}

/* sendfile(sock, fd, offset, count) -> n, newoffset | nil, errno */
static int sock_sendfile(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    int fd = (int)luaL_checkinteger(L, 2);
    off_t off = (off_t)luaL_checkinteger(L, 3);
    lua_Integer count = luaL_checkinteger(L, 4);
    luaL_argcheck(L, count >= 0, 4, "negative count");
    CHECKOPEN(L, box);
    ssize_t n = msk_sock_sendfile(box->s, fd, &off, (size_t)count);
    if (n < 0)
        return pushfail(L, (int)n);
    lua_pushinteger(L, n);
    lua_pushinteger(L, (lua_Integer)off);
    return 2;
}

static int sock_shutdown(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    int how = (int)luaL_checkinteger(L, 2);
    luaL_argcheck(L, how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR,
                  2, "must be SHUT_RD, SHUT_WR or SHUT_RDWR");
    CHECKOPEN(L, box);
    int rc = msk_sock_shutdown(box->s, how);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int getname(lua_State *L, int peer)
{
    sock_box *box = msk__sock_check(L, 1);
    msk_addr a;
    CHECKOPEN(L, box);
    memset(&a, 0, sizeof a);
    int rc = peer ? msk_sock_peer(box->s, &a) : msk_sock_name(box->s, &a);
    if (rc < 0)
        return pushfail(L, rc);
    msk__sock_pushaddr(L, &a);
    return 1;
}

static int sock_getsockname(lua_State *L) { return getname(L, 0); }
static int sock_getpeername(lua_State *L) { return getname(L, 1); }

/* setsockopt(sock, level, opt, value): value is an integer, a boolean or
 * a byte string, as in Python. */
static int sock_setsockopt(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    int level = (int)luaL_checkinteger(L, 2);
    int opt = (int)luaL_checkinteger(L, 3);
    int rc, ival;
    CHECKOPEN(L, box);
    if (lua_type(L, 4) == LUA_TSTRING) {
        size_t len;
        const char *v = lua_tolstring(L, 4, &len);
        rc = msk_sock_setopt(box->s, level, opt, v, (socklen_t)len);
    } else {
        if (lua_isboolean(L, 4))
            ival = lua_toboolean(L, 4);
        else
            ival = (int)luaL_checkinteger(L, 4);
        rc = msk_sock_setopt(box->s, level, opt, &ival, sizeof ival);
    }
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* getsockopt(sock, level, opt [, buflen]) -> int | bytes | nil, errno */
static int sock_getsockopt(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    int level = (int)luaL_checkinteger(L, 2);
    int opt = (int)luaL_checkinteger(L, 3);
    lua_Integer buflen = luaL_optinteger(L, 4, 0);
    luaL_argcheck(L, buflen >= 0 && buflen <= 1024, 4,
                  "buflen must be 0-1024");
    CHECKOPEN(L, box);
    if (buflen == 0) {
        int v = 0;
        socklen_t len = sizeof v;
        int rc = msk_sock_getopt(box->s, level, opt, &v, &len);
        if (rc < 0)
            return pushfail(L, rc);
        lua_pushinteger(L, v);
        return 1;
    }
    char buf[1024];
    socklen_t len = (socklen_t)buflen;
    int rc = msk_sock_getopt(box->s, level, opt, buf, &len);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushlstring(L, buf, len);
    return 1;
}

/* settimeout(sock, t): t < 0 means None (validated in socket.lua). */
static int sock_settimeout(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    box->timeout = luaL_checknumber(L, 2);
    return 0;
}

/* gettimeout(sock) -> t (< 0: None) */
static int sock_gettimeout(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    lua_pushnumber(L, box->timeout);
    return 1;
}

static int sock_isclosed(lua_State *L)
{
    sock_box *box = msk__sock_check(L, 1);
    lua_pushboolean(L, box->s == NULL);
    return 1;
}

/* getaddrinfo(host, port, family, type, proto, flags) -> list | nil, eai.
 * host may be nil; port a number, a string or nil. */
/* ---- getaddrinfo on a worker thread (core/offload.c) ------------------
 * resolve_start(...) -> job, fd: the job runs msk_addr_resolve on a
 * worker; socket.lua waits for fd to be readable, as for any socket, and
 * then collects with resolve_result(job) (job.c owns the job's life). */
#define RESOLVE_MAXRES 32

typedef struct resolve_job {
    char host[1026], port[32];
    int has_host, has_port, family, type, flags, n;
    msk_addr out[RESOLVE_MAXRES];
    int types[RESOLVE_MAXRES], protos[RESOLVE_MAXRES];
} resolve_job;

static void resolve_work(void *data)
{
    resolve_job *r = data;
    r->n = msk_addr_resolve(r->out, RESOLVE_MAXRES,
                            r->has_host ? r->host : NULL,
                            r->has_port ? r->port : NULL, r->family,
                            r->type, r->flags, r->types, r->protos);
}

/* The arguments of getaddrinfo, checked as sock_getaddrinfo does. */
static const char *gai_port(lua_State *L, char *buf, size_t len)
{
    if (lua_type(L, 2) == LUA_TNUMBER) {
        snprintf(buf, len, "%lld", (long long)luaL_checkinteger(L, 2));
        return buf;
    }
    return luaL_optstring(L, 2, NULL);
}

/* resolve_start(host, port, family, type, proto, flags) -> job, fd |
 * nil, errno (no job could be started: resolve in place instead) */
static int sock_resolve_start(lua_State *L)
{
    size_t hlen = 0;
    const char *host = luaL_optlstring(L, 1, NULL, &hlen);
    char portbuf[32];
    const char *port = gai_port(L, portbuf, sizeof portbuf);
    if ((host && hlen >= sizeof ((resolve_job *)0)->host) ||
        (port && strlen(port) >= sizeof ((resolve_job *)0)->port))
        return pushfail(L, MSK_EAI_BASE + EAI_NONAME);
    int family = (int)luaL_optinteger(L, 3, AF_UNSPEC);
    int type = (int)luaL_optinteger(L, 4, 0);
    int flags = (int)luaL_optinteger(L, 6, 0);
    msk_offload **slot = msk__job_push(L);
    msk_offload *job = msk_offload_new(resolve_work, NULL,
                                       sizeof(resolve_job));
    if (job == NULL)
        return pushfail(L, -ENOMEM);
    resolve_job *r = msk_offload_data(job);
    if (host) {
        memcpy(r->host, host, hlen + 1);
        r->has_host = 1;
    }
    if (port) {
        strcpy(r->port, port);
        r->has_port = 1;
    }
    r->family = family;
    r->type = type;
    r->flags = flags;
    int rc = msk_offload_submit(job);
    if (rc < 0) {
        msk_offload_release(job);
        return pushfail(L, rc);
    }
    *slot = job;
    lua_pushinteger(L, msk_offload_fd(job));
    return 2;
}

/* Push getaddrinfo's list for n results of out/types/protos. */
static int push_gai(lua_State *L, int n, const msk_addr *out,
                    const int *types, const int *protos)
{
    if (n < 0)
        return pushfail(L, n);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 5, 0);
        lua_pushinteger(L, msk_addr_family(&out[i]));
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, types[i]);
        lua_rawseti(L, -2, 2);
        lua_pushinteger(L, protos[i]);
        lua_rawseti(L, -2, 3);
        lua_pushliteral(L, "");
        lua_rawseti(L, -2, 4);
        msk__sock_pushaddr(L, &out[i]);
        lua_rawseti(L, -2, 5);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* resolve_result(job) -> list | nil, code; nil, EAGAIN if not done yet.
 * Releases the job once it has answered. */
static int sock_resolve_result(lua_State *L)
{
    msk_offload *job = msk__job_check(L, 1);
    if (job == NULL)
        return pushfail(L, -EBADF);
    if (!msk_offload_finished(job))
        return pushfail(L, -EAGAIN);
    resolve_job *r = msk_offload_data(job);
    int nret = push_gai(L, r->n, r->out, r->types, r->protos);
    msk__job_drop(L, 1);
    return nret;
}

static int sock_getaddrinfo(lua_State *L)
{
    const char *host = luaL_optstring(L, 1, NULL);
    char portbuf[32];
    const char *port = gai_port(L, portbuf, sizeof portbuf);
    int family = (int)luaL_optinteger(L, 3, AF_UNSPEC);
    int type = (int)luaL_optinteger(L, 4, 0);
    int flags = (int)luaL_optinteger(L, 6, 0);
    msk_addr out[RESOLVE_MAXRES];
    int types[RESOLVE_MAXRES], protos[RESOLVE_MAXRES];
    int n = msk_addr_resolve(out, RESOLVE_MAXRES, host, port, family, type,
                             flags, types, protos);
    return push_gai(L, n, out, types, protos);
}

static int sock_gethostname(lua_State *L)
{
    char buf[256];
    if (gethostname(buf, sizeof buf) < 0)
        return pushfail(L, -errno);
    buf[sizeof buf - 1] = '\0';
    lua_pushstring(L, buf);
    return 1;
}

/* strerror(errno) -> text; errno < 0 is a resolver (EAI) code. */
static int sock_strerror(lua_State *L)
{
    lua_Integer e = luaL_checkinteger(L, 1);
    lua_pushstring(L, msk_strerror(e < 0 ? MSK_EAI_BASE + (int)e
                                         : -(int)e));
    return 1;
}

/* parse_listen(spec) -> family, address | nil, errno: a command-line
 * listen spec ("HOST:PORT", "[V6]:PORT", "PORT", "unix:PATH"). */
static int sock_parse_listen(lua_State *L)
{
    const char *spec = luaL_checkstring(L, 1);
    msk_addr a;
    memset(&a, 0, sizeof a);
    int rc = msk_addr_parse_spec(&a, spec);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushinteger(L, msk_addr_family(&a));
    msk__sock_pushaddr(L, &a);
    return 2;
}

/* __index(sock, key): the method table first, then Python's attributes.
 * Upvalue 1 is the method table that socket.lua installs. */
static int sock__index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    sock_box *box = lua_touserdata(L, 1);
    const char *k = lua_tostring(L, 2);
    if (k == NULL)
        return 1;
    if (strcmp(k, "family") == 0)
        lua_pushinteger(L, box->family);
    else if (strcmp(k, "type") == 0)
        lua_pushinteger(L, box->type);
    else if (strcmp(k, "proto") == 0)
        lua_pushinteger(L, box->proto);
    else
        lua_pushnil(L);
    return 1;
}

/* setmethods(tbl, tostring, recv, sendall, recv_into, fail): installs
 * socket.lua's method table and its __tostring, with the C recv, sendall
 * and recv_into above in it; recv, sendall and recv_into are the general
 * versions they fall back to and fail(err, events) raises a failed
 * operation's exception. */
static int sock_setmethods(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    luaL_checktype(L, 5, LUA_TFUNCTION);
    luaL_checktype(L, 6, LUA_TFUNCTION);
    static const struct { const char *name; lua_CFunction fn; int slow; }
    fast[] = { {"recv", m_recv, 3}, {"sendall", m_sendall, 4},
               {"recv_into", m_recv_into, 5} };
    for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++) {
        lua_pushvalue(L, lua_upvalueindex(1));       /* the scratch */
        lua_pushvalue(L, fast[i].slow);
        lua_pushvalue(L, 6);
        lua_pushcclosure(L, fast[i].fn, 3);
        lua_setfield(L, 1, fast[i].name);
    }
    luaL_getmetatable(L, MSK_SOCKET_MT);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, sock__index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    return 0;
}

static const luaL_Reg funcs[] = {
    {"socket", sock_socket},
    {"fromfd", sock_fromfd},
    {"socketpair", sock_socketpair},
    {"close", sock_close},
    {"detach", sock_detach},
    {"fileno", sock_fileno},
    {"bind", sock_bind},
    {"listen", sock_listen},
    {"accept", sock_accept},
    {"connect", sock_connect},
    {"connect_result", sock_connect_result},
    {"recv", sock_recv},
    {"recv_into", sock_recv_into},
    {"recvfrom", sock_recvfrom},
    {"send", sock_send},
    {"sendto", sock_sendto},
    {"sendfile", sock_sendfile},
    {"shutdown", sock_shutdown},
    {"getsockname", sock_getsockname},
    {"getpeername", sock_getpeername},
    {"peeraddr", sock_peeraddr},
    {"setsockopt", sock_setsockopt},
    {"getsockopt", sock_getsockopt},
    {"settimeout", sock_settimeout},
    {"gettimeout", sock_gettimeout},
    {"isclosed", sock_isclosed},
    {"getaddrinfo", sock_getaddrinfo},
    {"resolve_start", sock_resolve_start},
    {"resolve_result", sock_resolve_result},
    {"gethostname", sock_gethostname},
    {"strerror", sock_strerror},
    {"setmethods", sock_setmethods},
    {"parse_listen", sock_parse_listen},
    {NULL, NULL}
};

static const struct { const char *name; int value; } consts[] = {
    {"AF_INET", AF_INET}, {"AF_INET6", AF_INET6}, {"AF_UNIX", AF_UNIX},
    {"AF_UNSPEC", AF_UNSPEC},
    {"SOCK_STREAM", SOCK_STREAM}, {"SOCK_DGRAM", SOCK_DGRAM},
    {"SOCK_RAW", SOCK_RAW}, {"SOCK_SEQPACKET", SOCK_SEQPACKET},
    {"SOL_SOCKET", SOL_SOCKET}, {"SO_REUSEADDR", SO_REUSEADDR},
    {"SO_REUSEPORT", SO_REUSEPORT}, {"SO_KEEPALIVE", SO_KEEPALIVE},
    {"SO_RCVBUF", SO_RCVBUF}, {"SO_SNDBUF", SO_SNDBUF},
    {"SO_ERROR", SO_ERROR}, {"SO_TYPE", SO_TYPE},
    {"SO_BROADCAST", SO_BROADCAST}, {"SO_LINGER", SO_LINGER},
    {"SO_RCVLOWAT", SO_RCVLOWAT}, {"SO_SNDLOWAT", SO_SNDLOWAT},
    {"IPPROTO_TCP", IPPROTO_TCP}, {"IPPROTO_UDP", IPPROTO_UDP},
    {"IPPROTO_IP", IPPROTO_IP}, {"IPPROTO_IPV6", IPPROTO_IPV6},
    {"IPV6_V6ONLY", IPV6_V6ONLY},
    {"TCP_NODELAY", TCP_NODELAY}, {"TCP_KEEPIDLE", TCP_KEEPIDLE},
    {"TCP_KEEPINTVL", TCP_KEEPINTVL}, {"TCP_KEEPCNT", TCP_KEEPCNT},
    {"SHUT_RD", SHUT_RD}, {"SHUT_WR", SHUT_WR}, {"SHUT_RDWR", SHUT_RDWR},
    {"AI_PASSIVE", AI_PASSIVE}, {"AI_CANONNAME", AI_CANONNAME},
    {"AI_NUMERICHOST", AI_NUMERICHOST}, {"AI_NUMERICSERV", AI_NUMERICSERV},
    {"SOMAXCONN", SOMAXCONN},
    {NULL, 0}
};

int luaopen__moonsock_socket(lua_State *L)
{
    if (luaL_newmetatable(L, MSK_SOCKET_MT)) {
        lua_pushcfunction(L, sock_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, sock_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    luaL_newlibtable(L, funcs);
    scratch *sc = lua_newuserdatauv(L, sizeof *sc, 0);
    luaL_getmetatable(L, MSK_SOCKET_MT);
    sc->mt = lua_topointer(L, -1);      /* kept alive by the registry */
    lua_pop(L, 1);
    msk__bytes_metatables(L, &sc->bamt, &sc->mvmt);
    sc->resumes = msk__rt_resumes(msk__rt_get(L));
    sc->sentinel = msk__task_sentinel();
    sc->run = 0;
    sc->moved = 0;
    luaL_setfuncs(L, funcs, 1);
    for (int i = 0; consts[i].name != NULL; i++) {
        lua_pushinteger(L, consts[i].value);
        lua_setfield(L, -2, consts[i].name);
    }
    return 1;
}
