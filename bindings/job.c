/*
 * job.c -- a blocking call's job (core/offload.c) as a Lua value.
 *
 * socket.c (getaddrinfo) and fs.c (fsync) start jobs and hand them to Lua
 * in a box whose __gc releases the job, so a task stopped while it waits
 * leaks nothing. The job's fd leaves the runtime's tables before it is
 * closed: the runtime drops watches lazily, and an fd number reused by a
 * later socket must be watched afresh. The module _moonsock.job itself
 * has nothing to call; it exists so that this file follows the rule of
 * its directory (one C module per file).
 */
#include <lua.h>
#include <lauxlib.h>

#include "msk.h"
#include "msk_bind.h"

#define JOB_MT "moonsock.job"

typedef struct job_box { msk_offload *job; } job_box;

static int job__gc(lua_State *L)
{
    msk__job_drop(L, 1);
    return 0;
}

msk_offload **msk__job_push(lua_State *L)
{
    job_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->job = NULL;
    if (luaL_newmetatable(L, JOB_MT)) {
        lua_pushcfunction(L, job__gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return &b->job;
}

msk_offload *msk__job_check(lua_State *L, int idx)
{
    return ((job_box *)luaL_checkudata(L, idx, JOB_MT))->job;
}

void msk__job_drop(lua_State *L, int idx)
{
    job_box *b = luaL_checkudata(L, idx, JOB_MT);
    if (b->job == NULL)
        return;
    msk__task_forget_fd(L, msk_offload_fd(b->job));
    msk_offload_release(b->job);
    b->job = NULL;
}

int luaopen__moonsock_job(lua_State *L)
{
    lua_newtable(L);
    return 1;
}
