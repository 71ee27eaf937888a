/*
 * embed_chat.c -- a C program that embeds moonsock: it serves a handler
 * script (a chat room), gives the script C functions of its own, and runs
 * moonsock inside its own poll(2) loop -- or lets moonsock own the loop.
 *
 *   embed_chat [--mode poll|run] [--listen ADDR] [--name NAME]
 *              SCRIPT [ARGS...]
 *
 * What it shows, in the order an embedder needs it:
 *   - msk_host_new with a log callback and the program's own data
 *     (udata), which C functions find again through msk_host_udata(L);
 *   - msk_host_register: require("host").stamp() returns "[NAME #N]",
 *     numbering every message the script stamps;
 *   - msk_host_preload: a whole module, require "host.stats";
 *   - --mode poll (default): the program's poll(2) loop waits on its own
 *     descriptor (stdin: "stats" prints the count, "quit" stops) and on
 *     msk_loop_fd(), for at most msk_loop_timeout() ms, then calls
 *     msk_host_step(h, 0). The poll backend has no loop fd; then the
 *     program checks its own fds without waiting and lets msk_host_step
 *     wait up to SLICE_MS, which bounds how late it sees its own input;
 *   - --mode run: msk_host_run owns the loop until the program ends;
 *   - errors as return codes with msk_host_error() and msk_strerror().
 *
 * The script ends the program the usual ways (SIGTERM or SIGINT to a
 * serving script, a client program returning); the exit status is the
 * script's. On exit the program prints "embed_chat: stamped N messages".
 * Build: cc embed_chat.c $(pkg-config --cflags --libs moonsock)
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include "msk_host.h"

#define SLICE_MS 50

/* The program's own state; scripts reach it through msk_host_udata(). */
struct app {
    const char *name;
    const char *mode;
    long stamped;       /* messages stamped so far */
    msk_host *host;
};

static const char *level_name[] = {"debug", "info", "warn", "error"};

/* Logs of the library and of scripts: one line each, our format. */
static void log_line(int level, const char *msg, void *udata)
{
    struct app *app = udata;
    if (level < MSK_LOG_DEBUG || level > MSK_LOG_ERROR)
        level = MSK_LOG_ERROR;
    fprintf(stderr, "%s [%s] %s\n", app->name, level_name[level], msg);
}

/* host.stamp() -> "[NAME #N]": the C function the handler calls. */
static int host_stamp(lua_State *L)
{
    struct app *app = msk_host_udata(L);
    if (app == NULL)
        return luaL_error(L, "host.stamp: not inside embed_chat");
    app->stamped++;
    lua_pushfstring(L, "[%s #%d]", app->name, (int)app->stamped);
    return 1;
}

/* host.stats: count() -> messages stamped; mode: "poll" or "run". */
static int stats_count(lua_State *L)
{
    struct app *app = msk_host_udata(L);
    lua_pushinteger(L, app ? app->stamped : 0);
    return 1;
}

static int open_stats(lua_State *L)
{
    struct app *app = msk_host_udata(L);
    static const luaL_Reg fns[] = {{"count", stats_count}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushstring(L, app ? app->mode : "?");
    lua_setfield(L, -2, "mode");
    return 1;
}

/* The program's own input: "stats" and "quit" lines on stdin. Returns 0
 * at end of input (stop watching it), 1 otherwise. */
static int read_stdin(struct app *app)
{
    char buf[256];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf - 1);
    if (n <= 0)
        return n < 0 && errno == EINTR;
    buf[n] = '\0';
    if (strstr(buf, "stats") != NULL) {
        printf("embed_chat: stamped %ld messages so far\n", app->stamped);
        fflush(stdout);
    }
    if (strstr(buf, "quit") != NULL)
        msk_host_stop(app->host);
    return 1;
}

/* Drive moonsock from our own poll(2) loop. Returns 0 or a negative code
 * of the loop. */
static int own_loop(struct app *app)
{
    msk_loop *loop = msk_host_loop(app->host);
    int watch_stdin = 1;

    for (;;) {
        struct pollfd pfd[2];
        nfds_t n = 0;
        int stdin_at = -1;
        int loop_fd = msk_loop_fd(loop);
        int timeout = loop_fd >= 0 ? msk_loop_timeout(loop) : 0;

        if (loop_fd >= 0) {
            pfd[n].fd = loop_fd;
            pfd[n++].events = POLLIN;
        }
        if (watch_stdin) {
            stdin_at = (int)n;
            pfd[n].fd = STDIN_FILENO;
            pfd[n++].events = POLLIN;
        }
        if (poll(pfd, n, timeout) < 0 && errno != EINTR)
            return -errno;
        if (stdin_at >= 0 && pfd[stdin_at].revents != 0)
            watch_stdin = read_stdin(app);
        /* With a loop fd, moonsock's readiness was part of our wait and
         * the step must not block; without one, it does the waiting. */
        int rc = msk_host_step(app->host, loop_fd >= 0 ? 0 : SLICE_MS);
        if (rc <= 0)
            return rc;
    }
}

static void usage(void)
{
    fputs("usage: embed_chat [--mode poll|run] [--listen ADDR] "
          "[--name NAME] SCRIPT [ARGS...]\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    struct app app = {"embed_chat", "poll", 0, NULL};
    const char *listen = NULL;
    int i = 1, rc;

    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--mode") == 0)
            app.mode = argv[i + 1];
        else if (strcmp(argv[i], "--listen") == 0)
            listen = argv[i + 1];
        else if (strcmp(argv[i], "--name") == 0)
            app.name = argv[i + 1];
        else
            usage();
    }
    if (i >= argc ||
        (strcmp(app.mode, "poll") != 0 && strcmp(app.mode, "run") != 0))
        usage();

    /* A library never decides this for the process; the host does. */
    msk_signal_ignore_sigpipe();
    if (strcmp(msk_version(), MSK_VERSION) != 0)
        fprintf(stderr, "embed_chat: built with moonsock %s, running "
                "with %s\n", MSK_VERSION, msk_version());

    msk_host_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.log = log_line;
    opts.log_udata = &app;
    opts.log_level = MSK_LOG_INFO;
    opts.udata = &app;
    rc = msk_host_new(&app.host, NULL, NULL, &opts);
    if (rc < 0) {
        fprintf(stderr, "embed_chat: cannot start moonsock: %s\n",
                msk_strerror(rc));
        return EXIT_FAILURE;
    }
    if (msk_host_register(app.host, "host", "stamp", host_stamp) < 0 ||
        msk_host_preload(app.host, "host.stats", open_stats) < 0 ||
        (listen != NULL &&
         msk_host_set_option(app.host, "listen", listen) < 0)) {
        fprintf(stderr, "embed_chat: %s\n", msk_host_error(app.host));
        msk_host_free(app.host);
        return EXIT_FAILURE;
    }
    rc = msk_host_load(app.host, argv[i], argc - i - 1, argv + i + 1);
    if (rc < 0) {
        fprintf(stderr, "embed_chat: %s\n", msk_host_error(app.host));
        msk_host_free(app.host);
        return EXIT_FAILURE;
    }
    if (strcmp(app.mode, "run") == 0)
        rc = msk_host_run(app.host);
    else
        rc = own_loop(&app);

    int status = msk_host_status(app.host);
    /* The library prints nothing: an uncaught error of the script's main
     * chunk comes back here, and this host chooses stderr for it. */
    if (status != 0 && msk_host_error(app.host)[0] != '\0')
        fprintf(stderr, "embed_chat: %s\n", msk_host_error(app.host));
    if (rc < 0) {
        fprintf(stderr, "embed_chat: event loop failed: %s\n",
                msk_strerror(rc));
        status = EXIT_FAILURE;
    }
    printf("embed_chat: stamped %ld messages\n", app.stamped);
    msk_host_free(app.host);
    return status;
}
