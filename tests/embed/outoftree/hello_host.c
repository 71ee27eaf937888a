/*
 * hello_host.c -- the smallest host, built out of tree against an
 * installed moonsock (tests/embed/test_install.py builds it with
 * pkg-config and with find_package).
 *
 *   hello_host SCRIPT
 *
 * Registers hello.greet(name) and runs SCRIPT to its end by stepping the
 * loop (msk_host_step), then prints the script's exit status. A version
 * mismatch between header and library is an error.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <msk_host.h>

static int greet(lua_State *L)
{
    const char *who = luaL_checkstring(L, 1);
    lua_pushfstring(L, "hello, %s, from %s", who,
                    (const char *)msk_host_udata(L));
    return 1;
}

int main(int argc, char **argv)
{
    msk_host_opts opts;
    msk_host *h;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: hello_host SCRIPT\n");
        return 2;
    }
    if (strcmp(msk_version(), MSK_VERSION) != 0) {
        fprintf(stderr, "header %s, library %s\n", MSK_VERSION,
                msk_version());
        return 1;
    }
    memset(&opts, 0, sizeof opts);
    opts.udata = "hello_host " MSK_VERSION;
    rc = msk_host_new(&h, NULL, NULL, &opts);
    if (rc < 0) {
        fprintf(stderr, "hello_host: %s\n", msk_strerror(rc));
        return 1;
    }
    rc = msk_host_register(h, "hello", "greet", greet);
    if (rc == 0)
        rc = msk_host_load(h, argv[1], 0, NULL);
    if (rc < 0) {
        fprintf(stderr, "hello_host: %s\n", msk_host_error(h));
        msk_host_free(h);
        return 1;
    }
    while ((rc = msk_host_step(h, 100)) > 0)
        ;
    printf("status %d\n", rc < 0 ? rc : msk_host_status(h));
    msk_host_free(h);
    return 0;
}
