/*
 * fs.c -- _moonsock.fs, the raw C half of `moonsock.fs` (fs.lua), over the
 * core's files (core/file.c).
 *
 * One userdata type, "moonsock.file": a box holding an fd for a regular
 * file or a directory handle, closed by close(), __gc and __close alike.
 * Names are single components relative to a directory box, opened without
 * following symlinks. Every function makes one blocking disk call and
 * never yields; OS failures come back as `nil, errno` and fs.lua raises
 * Python's exceptions. Argument mistakes raise here (luaL_check*).
 * Nothing here buffers: a pread returns a fresh string, a pwrite writes
 * the caller's string in place.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "msk.h"
#include "msk_bind.h"

#define FILE_MT "moonsock.file"

/* One read never allocates more than this; pread may return less than
 * asked, as pread(2) does. */
#define MAX_READ (16 * 1024 * 1024)

typedef struct file_box { int fd; } file_box;      /* fd < 0: closed */

static int pushfail(lua_State *L, int code)     /* nil, errno   [-0, +2] */
{
    luaL_pushfail(L);
    lua_pushinteger(L, -code);
    return 2;
}

static int pushok(lua_State *L, int rc)         /* true | nil, errno */
{
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static file_box *newbox(lua_State *L)                   /* [-0, +1, m] */
{
    file_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->fd = -1;                   /* closed until the fd exists */
    luaL_setmetatable(L, FILE_MT);
    return box;
}

static file_box *checkbox(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, FILE_MT);
}

/* The fd of an open box, or -EBADF through *fd < 0. */
#define OPENFD(L, box) do {                                                \
        if ((box)->fd < 0)                                                 \
            return pushfail(L, -EBADF);                                    \
    } while (0)

/* opendir(path, create_mode) -> file | nil, errno           [-2, +1|2] */
static int fs_opendir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer mode = luaL_optinteger(L, 2, 0);
    file_box *box = newbox(L);
    int fd = msk_file_opendir(path, (unsigned)mode);
    if (fd < 0)
        return pushfail(L, fd);
    box->fd = fd;
    return 1;
}

/* open(dir, name, flags, mode) -> file | nil, errno         [-4, +1|2] */
static int fs_open(lua_State *L)
{
    file_box *dir = checkbox(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int flags = (int)luaL_checkinteger(L, 3);
    lua_Integer mode = luaL_optinteger(L, 4, 0666);
    OPENFD(L, dir);
    file_box *box = newbox(L);
    int fd = msk_file_open(dir->fd, name, flags, (unsigned)mode);
    if (fd < 0)
        return pushfail(L, fd);
    box->fd = fd;
    return 1;
}

/* close(file): idempotent; also __gc and __close.            [-1, +0] */
static int fs_close(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    if (box->fd >= 0) {
        int fd = box->fd;
        box->fd = -1;
        msk_file_close(fd);
    }
    return 0;
}

/* fileno(file) -> fd (-1 when closed)                        [-1, +1] */
static int fs_fileno(lua_State *L)
{
    lua_pushinteger(L, checkbox(L, 1)->fd);
    return 1;
}

/* pread(file, n, offset) -> data ("" at end) | nil, errno   [-3, +1|2] */
static int fs_pread(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    lua_Integer off = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0, 2, "negative size");
    luaL_argcheck(L, off >= 0, 3, "negative offset");
    OPENFD(L, box);
    if (n > MAX_READ)
        n = MAX_READ;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)n);
    ssize_t got = msk_file_pread(box->fd, p, (size_t)n, off);
    if (got < 0) {
        luaL_pushresultsize(&b, 0);
        lua_pop(L, 1);
        return pushfail(L, (int)got);
    }
    luaL_pushresultsize(&b, (size_t)got);
    return 1;
}

/* pwrite(file, data, offset) -> n | nil, errno: all or an error. */
static int fs_pwrite(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer off = luaL_checkinteger(L, 3);
    luaL_argcheck(L, off >= 0, 3, "negative offset");
    OPENFD(L, box);
    ssize_t n = msk_file_pwrite(box->fd, data, len, off);
    if (n < 0)
        return pushfail(L, (int)n);
    lua_pushinteger(L, n);
    return 1;
}

/* fsync(file[, data_only]) -> true | nil, errno */
static int fs_fsync(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    int data_only = lua_toboolean(L, 2);
    OPENFD(L, box);
    return pushok(L, msk_file_sync(box->fd, data_only));
}

/* fsync_start(file[, data_only]) -> job, fd | nil, errno: the fsync on a
 * worker thread (core/offload.c), of a dup of the descriptor, so that
 * closing the file meanwhile cannot make the worker sync another one.
 * fs.lua waits for fd and collects with fsync_result(job). */
typedef struct sync_job { int fd, data_only, rc; } sync_job;

static void sync_work(void *data)
{
    sync_job *j = data;
    j->rc = msk_file_sync(j->fd, j->data_only);
}

static void sync_cleanup(void *data)
{
    sync_job *j = data;
    if (j->fd >= 0)
        close(j->fd);
}

static int fs_fsync_start(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    int data_only = lua_toboolean(L, 2);
    OPENFD(L, box);
    msk_offload **slot = msk__job_push(L);
    msk_offload *job = msk_offload_new(sync_work, sync_cleanup,
                                       sizeof(sync_job));
    if (job == NULL)
        return pushfail(L, -ENOMEM);
    sync_job *j = msk_offload_data(job);
    j->data_only = data_only;
    j->fd = fcntl(box->fd, F_DUPFD_CLOEXEC, 0);
    int rc = j->fd < 0 ? -errno : msk_offload_submit(job);
    if (rc < 0) {
        msk_offload_release(job);
        return pushfail(L, rc);
    }
    *slot = job;
    lua_pushinteger(L, msk_offload_fd(job));
    return 2;
}

/* fsync_result(job) -> true | nil, errno (EAGAIN: not done yet) */
static int fs_fsync_result(lua_State *L)
{
    msk_offload *job = msk__job_check(L, 1);
    if (job == NULL)
        return pushfail(L, -EBADF);
    if (!msk_offload_finished(job))
        return pushfail(L, -EAGAIN);
    int rc = ((sync_job *)msk_offload_data(job))->rc;
    msk__job_drop(L, 1);
    return pushok(L, rc);
}

/* writeback(file, offset, len) -> true | nil, errno */
static int fs_writeback(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    lua_Integer off = luaL_checkinteger(L, 2);
    lua_Integer len = luaL_checkinteger(L, 3);
    OPENFD(L, box);
    return pushok(L, msk_file_writeback(box->fd, off, len));
}

/* truncate(file, len) -> true | nil, errno */
static int fs_truncate(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    lua_Integer len = luaL_checkinteger(L, 2);
    luaL_argcheck(L, len >= 0, 2, "negative length");
    OPENFD(L, box);
    return pushok(L, msk_file_truncate(box->fd, len));
}

static void setint(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* stat(dir_or_file[, name]) -> table | nil, errno: Python's stat_result
 * fields (st_size, st_mtime, st_mtime_ns, st_mode, st_ino, st_dev); name
 * nil: the file itself (fstat). Symlinks are not followed. */
static int fs_stat(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    const char *name = luaL_optstring(L, 2, NULL);
    msk_file_info st;
    OPENFD(L, box);
    int rc = msk_file_stat(box->fd, name, &st);
    if (rc < 0)
        return pushfail(L, rc);
    lua_createtable(L, 0, 8);
    setint(L, "st_size", st.size);
    setint(L, "st_mtime_ns", st.mtime_ns);
    lua_pushnumber(L, (lua_Number)st.mtime_ns / 1e9);
    lua_setfield(L, -2, "st_mtime");
    setint(L, "st_mode", st.mode);
    setint(L, "st_ino", (lua_Integer)st.ino);
    setint(L, "st_dev", (lua_Integer)st.dev);
    lua_pushboolean(L, S_ISREG(st.mode));
    lua_setfield(L, -2, "is_file");
    lua_pushboolean(L, S_ISDIR(st.mode));
    lua_setfield(L, -2, "is_dir");
    lua_pushboolean(L, S_ISLNK(st.mode));
    lua_setfield(L, -2, "is_symlink");
    return 1;
}

/* rename(dir, from, to[, noreplace]) -> true | nil, errno */
static int fs_rename(lua_State *L)
{
    file_box *dir = checkbox(L, 1);
    const char *from = luaL_checkstring(L, 2);
    const char *to = luaL_checkstring(L, 3);
    int noreplace = lua_toboolean(L, 4);
    OPENFD(L, dir);
    return pushok(L, msk_file_rename(dir->fd, from, to, noreplace));
}

/* unlink(dir, name) -> true | nil, errno */
static int fs_unlink(lua_State *L)
{
    file_box *dir = checkbox(L, 1);
    const char *name = luaL_checkstring(L, 2);
    OPENFD(L, dir);
    return pushok(L, msk_file_unlink(dir->fd, name));
}

/* space(file) -> free, total (bytes) | nil, errno */
static int fs_space(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    uint64_t avail, total;
    OPENFD(L, box);
    int rc = msk_file_space(box->fd, &avail, &total);
    if (rc < 0)
        return pushfail(L, rc);
    lua_pushinteger(L, (lua_Integer)avail);
    lua_pushinteger(L, (lua_Integer)total);
    return 2;
}

static int add_name(const char *name, void *udata)
{
    lua_State *L = udata;
    /* A memory error here unwinds past closedir and leaks one DIR; only
     * when Lua is out of memory, which ends the program anyway. */
    lua_pushstring(L, name);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* listdir(dir) -> {names...} | nil, errno (unsorted)          [-1, +1|2] */
static int fs_listdir(lua_State *L)
{
    file_box *dir = checkbox(L, 1);
    OPENFD(L, dir);
    lua_newtable(L);
    int rc = msk_file_listdir(dir->fd, add_name, L);
    if (rc < 0)
        return pushfail(L, rc);
    return 1;
}

/* setxattr(file, key, value) -> true | nil, errno */
static int fs_setxattr(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    const char *key = luaL_checkstring(L, 2);
    size_t len;
    const char *val = luaL_checklstring(L, 3, &len);
    OPENFD(L, box);
    return pushok(L, msk_file_setxattr(box->fd, key, val, len));
}

/* getxattr(file, key) -> value | nil, errno (ENODATA: none) */
static int fs_getxattr(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    const char *key = luaL_checkstring(L, 2);
    char buf[256];
    OPENFD(L, box);
    ssize_t n = msk_file_getxattr(box->fd, key, buf, sizeof buf);
    if (n < 0)
        return pushfail(L, (int)n);
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* checkname(name) -> true | nil, errno (EINVAL, ENAMETOOLONG) */
static int fs_checkname(lua_State *L)
{
    return pushok(L, msk_file_checkname(luaL_checkstring(L, 1)));
}

/* isatty(fd) -> bool */
static int fs_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* setmethods(t): t becomes the __index of every file (fs.lua's methods,
 * so Python's names and exceptions live there).               [-1, +0] */
static int fs_setmethods(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_getmetatable(L, FILE_MT);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    return 0;
}

static int file__tostring(lua_State *L)
{
    file_box *box = checkbox(L, 1);
    if (box->fd < 0)
        lua_pushliteral(L, "<file [closed]>");
    else
        lua_pushfstring(L, "<file fd=%d>", box->fd);
    return 1;
}

int luaopen__moonsock_fs(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", fs_close},
        {"__close", fs_close},
        {"__tostring", file__tostring},
        {NULL, NULL}
    };
    static const luaL_Reg fns[] = {
        {"opendir", fs_opendir},
        {"open", fs_open},
        {"close", fs_close},
        {"fileno", fs_fileno},
        {"pread", fs_pread},
        {"pwrite", fs_pwrite},
        {"fsync", fs_fsync},
        {"fsync_start", fs_fsync_start},
        {"fsync_result", fs_fsync_result},
        {"writeback", fs_writeback},
        {"truncate", fs_truncate},
        {"stat", fs_stat},
        {"rename", fs_rename},
        {"unlink", fs_unlink},
        {"space", fs_space},
        {"listdir", fs_listdir},
        {"setxattr", fs_setxattr},
        {"getxattr", fs_getxattr},
        {"checkname", fs_checkname},
        {"isatty", fs_isatty},
        {"setmethods", fs_setmethods},
        {NULL, NULL}
    };
    static const struct { const char *name; int value; } consts[] = {
        {"O_RDONLY", O_RDONLY}, {"O_WRONLY", O_WRONLY}, {"O_RDWR", O_RDWR},
        {"O_CREAT", O_CREAT}, {"O_EXCL", O_EXCL}, {"O_TRUNC", O_TRUNC},
        {"O_APPEND", O_APPEND}, {"ENODATA", ENODATA},
        {"ENOTSUP", ENOTSUP}, {"ELOOP", ELOOP}, {NULL, 0}
    };

    luaL_newmetatable(L, FILE_MT);
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    for (int i = 0; consts[i].name != NULL; i++) {
        lua_pushinteger(L, consts[i].value);
        lua_setfield(L, -2, consts[i].name);
    }
    return 1;
}
