/*
 * main.c -- the moonsock program: run a Lua script, serve what it returns.
 *
 * Modelled on lua.c: options are checked before any Lua runs, errors are
 * printed as "moonsock: message" and end the program with EXIT_FAILURE.
 * Uses only the host API (msk_host.h), so every run of moonsock is also a
 * run of the embedding API. Process-wide choices that a library must not
 * make are made here: SIGPIPE is ignored and the descriptor limit raised.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "msk.h"
#include "msk_host.h"
#include "workers.h"
#include <lua.h>

static const char usage[] =
"Usage: moonsock [OPTIONS] SCRIPT [ARGS...]\n"
"\n"
"Run the Lua SCRIPT with ARGS as `arg` and `...`. If SCRIPT returns a\n"
"handler table (a `handle` function, like Python's BaseRequestHandler),\n"
"serve it: one task per connection. Otherwise SCRIPT is a program and\n"
"moonsock exits when it (and its non-daemon threads) finish.\n"
"\n"
"Options (they override the handler table's own settings):\n"
"  --listen ADDR          listen on ADDR; repeatable. ADDR is HOST:PORT,\n"
"                         [IPV6]:PORT, PORT or unix:PATH\n"
"                         (default: the script's `listen`, else\n"
"                         0.0.0.0:8000)\n"
"  --max-connections N    serve at most N clients at once; over it a\n"
"                         client gets one error line and is closed\n"
"                         (default 10000)\n"
"  --timeout SECONDS      close a served connection idle this long\n"
"                         (default: no idle timeout)\n"
"  --grace SECONDS        on SIGTERM/SIGINT, stop accepting and wait this\n"
"                         long for handlers to finish (default 10)\n"
"  --backlog N            listen backlog (default 1024)\n"
"  --workers N            run N worker processes, each with its own\n"
"                         SO_REUSEPORT listeners, under a supervisor that\n"
"                         restarts a crashed worker and passes SIGHUP on\n"
"                         (default 1: no supervisor). State is per worker\n"
"  --max-memory MIB       cap the Lua heap at MIB mebibytes; an allocation\n"
"                         past it is a memory error in the task that made\n"
"                         it (default 1024; 0: no cap)\n"
"  --cpu-budget SECONDS   stop a task (not the main chunk) that runs this\n"
"                         long without waiting, with an error (default 1;\n"
"                         0: no budget)\n"
"  --no-reload            do not watch the script and its modules for\n"
"                         changes (SIGHUP and server:reload() still\n"
"                         reload it)\n"
"  --reload-poll MS       watch files by polling their mtime every MS\n"
"                         milliseconds instead of with inotify\n"
"  --log-level LEVEL      debug, info, warn or error (default info)\n"
"  --backend NAME         event loop backend: epoll or poll\n"
"                         (default: $MSK_BACKEND, else epoll)\n"
"  --version              print the version and exit\n"
"  --help                 print this help and exit\n"
"\n"
"Logs go to stderr, one line per event: time, level, message.\n"
"\n"
"A served script is reloaded in place when it or a Lua module it loaded\n"
"from the project changes, and on SIGHUP; a broken version is refused\n"
"and the running one keeps serving. SIGTERM/SIGINT stop the server.\n";

/* With --workers, each log line says which worker wrote it. */
static void worker_log(int level, const char *msg, void *udata)
{
    char line[4200];
    snprintf(line, sizeof line, "worker %d: %s", *(const int *)udata, msg);
    msk_log_stderr(level, line, NULL);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moonsock: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(EXIT_FAILURE);
}

static void check_number(const char *opt, const char *v, int integer,
                         double min)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(d >= min) ||
        (integer && d != (double)(long long)d) || d > 1e9)
        die("--%s: expected %s >= %g, got '%s'", opt,
            integer ? "an integer" : "a number", min, v);
}

/* Descriptors 0, 1 and 2 closed at start-up would be handed to the first
 * sockets moonsock opens: input() would then read a listener and print()
 * would write to a client. Point them at /dev/null instead. */
static void guard_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (nfd >= 0 && nfd != fd) {
                dup2(nfd, fd);
                close(nfd);
            }
        }
    }
}

/* A raised soft limit lets one process hold thousands of clients; the
 * hard limit is the administrator's word and stays. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"max-connections", required_argument, NULL, 'm'},
        {"timeout", required_argument, NULL, 't'},
        {"grace", required_argument, NULL, 'g'},
        {"backlog", required_argument, NULL, 'b'},
        {"workers", required_argument, NULL, 'W'},
        {"max-memory", required_argument, NULL, 'M'},
        {"cpu-budget", required_argument, NULL, 'C'},
        {"no-reload", no_argument, NULL, 'R'},
        {"reload-poll", required_argument, NULL, 'P'},
        {"log-level", required_argument, NULL, 'L'},
        {"backend", required_argument, NULL, 'B'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}
    };
    /* Options are kept until the host exists, in command-line order. */
    const char *names[64], *values[64];
    int nopts = 0;
    msk_host_opts hopts;
    memset(&hopts, 0, sizeof hopts);
    hopts.log_level = MSK_LOG_INFO;

    int workers = 1;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        const char *name = NULL, *value = optarg;
        switch (c) {
        case 'l':
            name = "listen";
            break;
        case 'm':
            name = "max-connections";
            check_number(name, optarg, 1, 1);
            break;
        case 't':
            name = "timeout";
            check_number(name, optarg, 0, 0);
            break;
        case 'g':
            name = "grace";
            check_number(name, optarg, 0, 0);
            break;
        case 'b':
            name = "backlog";
            check_number(name, optarg, 1, 1);
            break;
        case 'W':
            check_number("workers", optarg, 1, 1);
            workers = atoi(optarg);
            if (workers > 1024)
                die("--workers: at most 1024, got '%s'", optarg);
            break;
        case 'M':
            name = "max-memory";
            check_number(name, optarg, 0, 0);
            break;
        case 'C':
            name = "cpu-budget";
            check_number(name, optarg, 0, 0);
            break;
        case 'R':
            name = "reload";
            value = "no";
            break;
        case 'P':
            name = "reload-poll";
            check_number(name, optarg, 1, 1);
            break;
        case 'L':
            if (strcmp(optarg, "debug") == 0)
                hopts.log_level = MSK_LOG_DEBUG;
            else if (strcmp(optarg, "info") == 0)
                hopts.log_level = MSK_LOG_INFO;
            else if (strcmp(optarg, "warn") == 0)
                hopts.log_level = MSK_LOG_WARN;
            else if (strcmp(optarg, "error") == 0)
                hopts.log_level = MSK_LOG_ERROR;
            else
                die("--log-level: expected debug, info, warn or error, "
                    "got '%s'", optarg);
            break;
        case 'B':
            if (strcmp(optarg, "epoll") == 0)
                hopts.loop.backend = MSK_BACKEND_EPOLL;
            else if (strcmp(optarg, "poll") == 0)
                hopts.loop.backend = MSK_BACKEND_POLL;
            else
                die("--backend: expected epoll or poll, got '%s'", optarg);
            break;
        case 'V':
            printf("moonsock %s (%s)\n", MSK_VERSION, LUA_RELEASE);
            return EXIT_SUCCESS;
        case 'h':
            fputs(usage, stdout);
            return EXIT_SUCCESS;
        default:
            die("unknown option or missing value: '%s' (see --help)",
                argv[optind - 1]);
        }
        if (name != NULL) {
            if (nopts == 64)
                die("too many options");
            names[nopts] = name;
            values[nopts++] = value;
        }
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return EXIT_FAILURE;
    }

    guard_std_fds();
    static int worker_no;
    if (workers > 1) {
        int status = msk_workers_run(workers, &worker_no);
        if (status >= 0)
            return status;                  /* the supervisor is done */
        if (nopts == 64)
            die("too many options");
        names[nopts] = "reuse-port";        /* listeners shared by all */
        values[nopts++] = "yes";
        hopts.log = worker_log;
        hopts.log_udata = &worker_no;
    }
    msk_signal_ignore_sigpipe();
    raise_nofile();

    msk_host *h;
    int rc = msk_host_new(&h, NULL, NULL, &hopts);
    if (rc < 0) {
        fprintf(stderr, "moonsock: cannot start: %s\n", msk_strerror(rc));
        return EXIT_FAILURE;
    }
    for (int i = 0; i < nopts; i++)
        msk_host_set_option(h, names[i], values[i]);
    rc = msk_host_load(h, argv[optind], argc - optind - 1,
                       argv + optind + 1);
    if (rc < 0) {
        fprintf(stderr, "moonsock: %s\n", msk_host_error(h));
        msk_host_free(h);
        return EXIT_FAILURE;
    }
    rc = msk_host_run(h);
    int status = msk_host_status(h);
    if (status != 0 && msk_host_error(h)[0] != '\0')
        fprintf(stderr, "moonsock: %s\n", msk_host_error(h));
    if (rc < 0) {
        fprintf(stderr, "moonsock: event loop failed: %s\n",
                msk_strerror(rc));
        status = EXIT_FAILURE;
    }
    msk_host_free(h);
    return status;
}
