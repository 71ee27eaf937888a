/*
 * loadgen.c -- moonsock's load generator: one thread, one epoll set,
 * many loopback connections, and the figures that tell servers apart.
 *
 * Modes (see usage below): ping-pong echo, pipelined echo, idle hold,
 * chat fan-out, byte streaming through an echo server, and a reload
 * probe that times "script saved -> new code answering" under echo load.
 * Every echoed byte is checked against the pattern that was sent, so a
 * fast but wrong server shows up as errors, never as throughput.
 *
 * On a 2-core machine the load generator is often the ceiling, so beside
 * throughput and latency it reads the server's own CPU time (utime +
 * stime in /proc/PID/stat, all threads) over the measured window and
 * reports it per message: that figure does not depend on how fast the
 * client is. The last line of output is "RESULT key=value ...", which
 * bench/run.sh parses; everything above it is for people.
 *
 * Bounded by design: every phase has a deadline, and connects are
 * throttled so a backlog never overflows into SYN retransmits (which
 * would turn into one-second latency spikes that belong to the client).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define PATLEN (1u << 20)           /* the byte pattern every stream uses */
#define RXBUF (256u * 1024u)
#define MAX_CONNECTING 256          /* handshakes in flight at once */
#define MAX_EVENTS 512
#define LINE_MAX_CHAT 4096

enum mode { M_ECHO, M_PIPE, M_IDLE, M_CHAT, M_STREAM, M_RELOAD, M_PUT,
            M_GET, M_GENFILE };
enum cstate { C_NEW, C_CONNECTING, C_OPEN, C_DONE, C_FAILED };

typedef struct conn {
    int fd;
    int id;
    enum cstate state;
    uint32_t events;                /* current epoll interest */
    uint64_t shift;                 /* this connection's pattern offset */
    uint64_t tx_off, tx_target;     /* stream bytes sent / to be sent */
    uint64_t rx_off;                /* stream bytes received and checked */
    uint64_t *ring;                 /* queue times of messages in flight */
    unsigned ring_head, inflight;
    uint64_t ndone;                 /* messages echoed in full */
    char *line;                     /* chat: partial line */
    size_t linelen;
    /* chat senders: the message now in flight */
    uint64_t seq, sent_at;
    long got;
} conn;

/* Log-linear histogram of nanoseconds: 64 sub-buckets per power of two
 * (about 1.5 % resolution), fixed size, so recording costs no allocation
 * and percentiles cost one pass. */
#define HSUB 64
#define HBUCKETS (64 * HSUB)
typedef struct hist { uint64_t n[HBUCKETS]; uint64_t count, max; } hist;

static void hist_add(hist *h, uint64_t v)
{
    unsigned idx;
    if (v < HSUB) {
        idx = (unsigned)v;
    } else {
        int msb = 63 - __builtin_clzll(v);
        unsigned sub = (unsigned)(v >> (msb - 6)) & (HSUB - 1);
        idx = (unsigned)(msb - 5) * HSUB + sub;
    }
    if (idx >= HBUCKETS)
        idx = HBUCKETS - 1;
    h->n[idx]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

static uint64_t hist_value(unsigned idx)
{
    if (idx < HSUB)
        return idx;
    unsigned msb = idx / HSUB + 5, sub = idx % HSUB;
    return ((uint64_t)(HSUB + sub) << (msb - 6)) +
           ((uint64_t)1 << (msb - 6)) / 2;
}

static double hist_pct(const hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(p * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        seen += h->n[i];
        if (seen > want)
            return (double)hist_value(i);
    }
    return (double)h->max;
}

/* ---- options and global state ------------------------------------- */

static struct {
    enum mode mode;
    const char *host;
    int port;
    int conns, size, depth, senders, srcaddrs;
    double duration, warmup, hold, timeout;
    long long bytes;
    int pid;
    int tree;            /* server memory: pid and its children */
    int procs;           /* idle: processes sharing the connections */
    int id_base;         /* this process's first connection number */
    int up_fd, down_fd;  /* a child's pipes to and from its parent */
    int self_delivery;
    const char *script, *newscript, *file, *name;
    const char *label;
} opt = {
    .mode = M_ECHO, .host = "127.0.0.1", .port = 8000, .conns = 1,
    .size = 64, .depth = 1, .senders = 10, .srcaddrs = 0,
    .duration = 3, .warmup = 1, .hold = 1, .timeout = 30,
    .bytes = 0, .pid = 0, .tree = 0, .procs = 1, .id_base = 0,
    .up_fd = -1, .down_fd = -1, .self_delivery = 1, .label = "",
    .name = "bench-transfer.bin",
};

static int epfd;
static conn *conns;
static unsigned char *pat;
static unsigned char *rxbuf;
static hist lat;
static int measuring, stopping;
static uint64_t t_measure0, t_measure1;
static uint64_t msgs, bytes_moved, errors, verify_errors, conn_errors;
static uint64_t eof_errors, lost, late;
static int nconnecting, nopen, nnext;
static uint64_t last_rx_ns;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("out of memory");
    return p;
}

/* ---- the server's side: CPU and memory from /proc ----------------- */

/* utime + stime of the whole process (all threads), in seconds. */
static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields are
     * counted from the last ')'. utime and stime are fields 14, 15. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Resident set size in KiB (VmRSS), or -1. */
static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    long kb = -1;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* VmRSS of pid, plus its children's with --tree (moonsock --workers:
 * the supervisor and its workers). */
static long server_rss_kb(int pid)
{
    long kb = proc_rss_kb(pid);
    if (!opt.tree || kb < 0)
        return kb;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return kb;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        int ppid = 0;
        if (p != NULL && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == pid) {
            long c = proc_rss_kb(atoi(e->d_name));
            if (c > 0)
                kb += c;
        }
    }
    closedir(d);
    return kb;
}

/* ---- connections -------------------------------------------------- */

static void set_events(conn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = { .events = ev, .data.u32 = (uint32_t)c->id };
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void conn_close(conn *c, enum cstate st)
{
    if (c->fd >= 0) {
        close(c->fd);               /* also leaves the epoll set */
        c->fd = -1;
    }
    if (c->state == C_CONNECTING)
        nconnecting--;
    if (c->state == C_OPEN)
        nopen--;
    c->state = st;
}

static void conn_fail(conn *c, uint64_t *counter, const char *what, int err)
{
    if (*counter < 5)
        fprintf(stderr, "loadgen: conn %d: %s%s%s\n", c->id, what,
                err ? ": " : "", err ? strerror(err) : "");
    (*counter)++;
    errors++;
    conn_close(c, C_FAILED);
}

/* Start one non-blocking connect. Source addresses rotate over
 * 127.0.0.1..127.0.0.K: one address gives at most ~28k ephemeral ports
 * towards one server port, and 50k connections need more. */
static void conn_start(conn *c, const struct sockaddr_in *dst)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->fd = -1;
        conn_fail(c, &conn_errors, "socket", errno);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.srcaddrs > 1) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u +
            (uint32_t)((c->id + opt.id_base) % opt.srcaddrs));
#ifdef IP_BIND_ADDRESS_NO_PORT
        /* Let connect() pick the port per 4-tuple, not bind() per
         * address: otherwise bind would run out at ~28k again. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                   sizeof one);
#endif
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            c->fd = fd;
            conn_fail(c, &conn_errors, "bind", errno);
            return;
        }
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    nconnecting++;
    struct epoll_event e = { .events = EPOLLOUT, .data.u32 = (uint32_t)c->id };
    c->events = EPOLLOUT;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        die("epoll_ctl add: %s", strerror(errno));
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 &&
        errno != EINPROGRESS)
        conn_fail(c, &conn_errors, "connect", errno);
}

/* Send pattern bytes up to tx_target; ask for EPOLLOUT if the socket is
 * full. Returns -1 after failing the connection. */
static int conn_flush(conn *c)
{
    while (c->tx_off < c->tx_target) {
        uint64_t pos = (c->tx_off + c->shift) % PATLEN;
        uint64_t n = c->tx_target - c->tx_off;
        if (n > PATLEN - pos)
            n = PATLEN - pos;
        ssize_t w = send(c->fd, pat + pos, (size_t)n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            conn_fail(c, &eof_errors, "send", errno);
            return -1;
        }
        c->tx_off += (uint64_t)w;
    }
    set_events(c, c->tx_off < c->tx_target ? EPOLLIN | EPOLLOUT : EPOLLIN);
    return 0;
}

/* Queue one more message of opt.size bytes on a message-mode conn. */
static void queue_msg(conn *c, uint64_t t)
{
    unsigned slot = (c->ring_head + c->inflight) % (unsigned)opt.depth;
    c->ring[slot] = t;
    c->inflight++;
    c->tx_target += (uint64_t)opt.size;
}

/* Compare received bytes with what was sent at the same stream offset. */
static int verify(conn *c, const unsigned char *b, size_t n)
{
    uint64_t off = c->rx_off;
    while (n > 0) {
        uint64_t pos = (off + c->shift) % PATLEN;
        size_t k = n;
        if (k > PATLEN - pos)
            k = (size_t)(PATLEN - pos);
        if (memcmp(b, pat + pos, k) != 0)
            return -1;
        b += k;
        n -= k;
        off += k;
    }
    return 0;
}

/* ---- echo, pipelined echo, stream, idle ---------------------------- */

static int msg_mode(void)
{
    return opt.mode == M_ECHO || opt.mode == M_PIPE ||
           opt.mode == M_RELOAD;
}

static void on_open(conn *c, uint64_t t)
{
    if (msg_mode()) {
        for (int i = 0; i < opt.depth; i++)
            queue_msg(c, t);
    } else if (opt.mode == M_STREAM) {
        c->tx_target = (uint64_t)opt.bytes;
    } else if (opt.mode == M_IDLE) {
        c->tx_target = 1;           /* one byte, so the handler runs */
    }
    if (opt.mode != M_CHAT)
        conn_flush(c);
    else
        set_events(c, EPOLLIN);
}

static void on_bytes(conn *c, size_t n, uint64_t t)
{
    if (verify(c, rxbuf, n) < 0) {
        conn_fail(c, &verify_errors, "echoed bytes differ from those sent",
                  0);
        return;
    }
    c->rx_off += n;
    if (measuring || opt.mode == M_STREAM)
        bytes_moved += n;
    if (c->rx_off > c->tx_off) {
        conn_fail(c, &verify_errors, "more bytes echoed than sent", 0);
        return;
    }
    if (!msg_mode())
        return;
    /* Every whole message echoed: its latency, then the next one. */
    uint64_t done = c->rx_off / (uint64_t)opt.size;
    while (c->ndone < done) {
        uint64_t t0 = c->ring[c->ring_head];
        c->ndone++;
        c->ring_head = (c->ring_head + 1) % (unsigned)opt.depth;
        c->inflight--;
        if (measuring) {
            hist_add(&lat, t - t0);
            msgs++;
        }
        if (!stopping)
            queue_msg(c, t);
    }
    conn_flush(c);
}

/* ---- chat fan-out -------------------------------------------------- */

/* A chat message carries "~B<sender>.<seq>.<ns>~": whatever prefix the
 * server adds, the receiver finds the tag and knows whose message it is
 * and when it left. Lines without a tag (welcome, joins) are ignored. */
static void chat_send(conn *c, uint64_t t)
{
    char msg[LINE_MAX_CHAT];
    c->seq++;
    c->sent_at = t;
    c->got = 0;
    int n = snprintf(msg, sizeof msg, "~B%d.%llu.%llu~ ", c->id,
                     (unsigned long long)c->seq, (unsigned long long)t);
    while (n < opt.size - 1 && n < (int)sizeof msg - 2) {
        msg[n] = (char)('a' + n % 26);
        n++;
    }
    msg[n++] = '\n';
    ssize_t w = send(c->fd, msg, (size_t)n, MSG_NOSIGNAL);
    if (w != n) {
        /* A 64-byte line on an idle socket does not block; if it does
         * the server is not reading and the run is broken anyway. */
        conn_fail(c, &eof_errors, "chat send", w < 0 ? errno : 0);
    }
}

static long chat_expected(void)
{
    return opt.self_delivery ? opt.conns : opt.conns - 1;
}

static void chat_line(const char *s, size_t len, uint64_t t)
{
    const char *tag = memmem(s, len, "~B", 2);
    if (tag == NULL)
        return;
    int sender;
    unsigned long long seq, sent;
    if (sscanf(tag + 2, "%d.%llu.%llu~", &sender, &seq, &sent) != 3 ||
        sender < 0 || sender >= opt.conns) {
        verify_errors++;
        errors++;
        return;
    }
    conn *sc = &conns[sender];
    if (seq != sc->seq) {
        late++;                     /* arrived after its sender gave up */
        return;
    }
    sc->got++;
    if (measuring) {
        hist_add(&lat, t - sent);
        msgs++;
    }
}

static void chat_bytes(conn *c, size_t n, uint64_t t)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (rxbuf[i] != '\n')
            continue;
        if (c->linelen > 0) {
            size_t k = i - start;
            if (c->linelen + k > LINE_MAX_CHAT)
                k = LINE_MAX_CHAT - c->linelen;
            memcpy(c->line + c->linelen, rxbuf + start, k);
            chat_line(c->line, c->linelen + k, t);
            c->linelen = 0;
        } else {
            chat_line((const char *)rxbuf + start, i - start, t);
        }
        start = i + 1;
    }
    if (start < n) {
        size_t k = n - start;
        if (c->linelen + k > LINE_MAX_CHAT)
            k = LINE_MAX_CHAT - c->linelen;
        memcpy(c->line + c->linelen, rxbuf + start, k);
        c->linelen += k;
    }
}

/* Closed loop per sender: the next message leaves when every member has
 * the last one (or after a second, counting the missing as lost). */
static void chat_pump(uint64_t t)
{
    if (stopping)
        return;
    for (int i = 0; i < opt.senders && i < opt.conns; i++) {
        conn *c = &conns[i];
        if (c->state != C_OPEN)
            continue;
        if (c->seq > 0 && c->got < chat_expected()) {
            if (t - c->sent_at < 1000000000u)
                continue;
            if (measuring)
                lost += (uint64_t)(chat_expected() - c->got);
        }
        chat_send(c, t);
    }
}

/* ---- reload probe -------------------------------------------------- */

/* A new connection every few ms sends "probe" and reads the answer: the
 * old script echoes it, the new one (bench/servers/echo_v2.lua) answers
 * in capitals. The latency is from the rename that saved the new script
 * to the first capital answer. Probing on fresh connections matters: a
 * live connection's running handle() finishes as it was written. */
static int probe_once(const struct sockaddr_in *dst, int *is_new)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 1, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char buf[16];
    int rc = -1;
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) == 0 &&
        send(fd, "probe", 5, MSG_NOSIGNAL) == 5) {
        size_t got = 0;
        while (got < 5) {
            ssize_t r = recv(fd, buf + got, 5 - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got == 5) {
            *is_new = memcmp(buf, "PROBE", 5) == 0;
            rc = 0;
        }
    }
    close(fd);
    return rc;
}

/* ---- upload and download (docs/upload.md) ------------------------- */

/* One transfer on one connection is a straight line of blocking calls:
 * no epoll needed, and nothing else competes for this client's core. */

static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* Hand pattern bytes [0, total) to fn in chunks, as a stream of shift 0. */
static void pattern_chunks(uint64_t total,
                           void (*fn)(void *, const unsigned char *, size_t),
                           void *ud)
{
    uint64_t off = 0;
    while (off < total) {
        uint64_t pos = off % PATLEN, n = total - off;
        if (n > PATLEN - pos)
            n = PATLEN - pos;
        fn(ud, pat + pos, (size_t)n);
        off += n;
    }
}

static void sha_chunk(void *ud, const unsigned char *p, size_t n)
{
    EVP_DigestUpdate(ud, p, n);
}

static void fd_chunk(void *ud, const unsigned char *p, size_t n)
{
    write_all(*(int *)ud, p, n);
}

static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = recv(fd, buf + n, 1, 0);
        if (r <= 0)
            return -1;
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 0;
        }
        n++;
    }
    return -1;
}

static int transfer(const struct sockaddr_in *dst)
{
    char line[1200], hex[65];
    uint64_t size = (uint64_t)opt.bytes;

    if (opt.mode == M_GENFILE) {
        int fd = open(opt.file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                      0644);
        if (fd < 0)
            die("%s: %s", opt.file, strerror(errno));
        pattern_chunks(size, fd_chunk, &fd);
        close(fd);
        return 0;
    }
    if (opt.mode == M_PUT) {
        /* The protocol declares the SHA-256 up front: computed before
         * the clock starts, as a client would hash its file first. */
        unsigned char md[32];
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        pattern_chunks(size, sha_chunk, ctx);
        EVP_DigestFinal_ex(ctx, md, NULL);
        EVP_MD_CTX_free(ctx);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)dst, sizeof *dst))
        die("connect: %s", strerror(errno));
    double cpu0 = proc_cpu(opt.pid);
    uint64_t t0 = now_ns(), got = 0;
    int bad = 0;
    if (opt.mode == M_PUT) {
        snprintf(line, sizeof line, "PUT %llu %s overwrite %s\n",
                 (unsigned long long)size, hex, opt.name);
        write_all(fd, (unsigned char *)line, strlen(line));
        if (read_line(fd, line, sizeof line) < 0 ||
            strcmp(line, "OK SEND 0") != 0)
            die("PUT refused: %s", line);
        pattern_chunks(size, fd_chunk, &fd);
        if (read_line(fd, line, sizeof line) < 0 ||
            strncmp(line, "OK STORED", 9) != 0)
            die("upload not stored: %s", line);
        got = size;
    } else {
        snprintf(line, sizeof line, "GET 0 %s\n", opt.name);
        write_all(fd, (unsigned char *)line, strlen(line));
        unsigned long long sz;
        if (read_line(fd, line, sizeof line) < 0 ||
            sscanf(line, "OK %llu", &sz) != 1)
            die("GET refused: %s", line);
        size = sz;
        conn c;
        memset(&c, 0, sizeof c);
        while (got < size) {
            size_t want = RXBUF;
            if (want > size - got)
                want = (size_t)(size - got);
            ssize_t r = recv(fd, rxbuf, want, 0);
            if (r <= 0)
                die("download ended at byte %llu of %llu",
                    (unsigned long long)got, (unsigned long long)size);
            c.rx_off = got;
            if (verify(&c, rxbuf, (size_t)r) < 0)
                bad = 1;
            got += (uint64_t)r;
        }
    }
    uint64_t t1 = now_ns();
    double cpu = proc_cpu(opt.pid) - cpu0;
    close(fd);
    double secs = (double)(t1 - t0) / 1e9;
    printf("%s %s: %llu bytes in %.3f s: %.1f MB/s, server CPU %.3f s%s\n",
           opt.mode == M_PUT ? "put" : "get", opt.label,
           (unsigned long long)got, secs, (double)got / secs / 1e6, cpu,
           bad ? ", BYTES DIFFER" : "");
    printf("RESULT label=%s mode=%s conns=1 size=0 secs=%.3f msgs=0 rate=0 "
           "mbps=%.2f p50_us=0 p99_us=0 p999_us=0 errors=%d conn_errors=0 "
           "verify_errors=%d eof_errors=0 srv_cpu_s=%.3f cpu_per_msg_us=0 "
           "bytes=%llu cpu_per_mb_ms=%.3f\n",
           opt.label[0] ? opt.label : "-",
           opt.mode == M_PUT ? "put" : "get", secs,
           (double)got / secs / 1e6, bad, bad, cpu,
           (unsigned long long)got, got ? cpu / ((double)got / 1e6) * 1e3
                                        : 0);
    return bad;
}

/* ---- the run -------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs(
"Usage: loadgen MODE [OPTIONS]\n"
"Modes:\n"
"  echo      ping-pong: each connection sends SIZE bytes, waits for them\n"
"  pipe      pipelined echo: DEPTH messages in flight per connection\n"
"  idle      open CONNS connections, one echoed byte each, hold them;\n"
"            reports the server's RSS growth per connection\n"
"  chat      CONNS members, SENDERS of them send tagged lines; reports\n"
"            deliveries per second and delivery latency\n"
"  stream    each connection streams BYTES through an echo server\n"
"  reload    echo load on CONNS connections; renames NEWSCRIPT over\n"
"            SCRIPT and times until a fresh connection gets new code\n"
"  put, get  upload / download BYTES with scripts/upload.lua's protocol\n"
"            (docs/upload.md) as file NAME; get checks every byte\n"
"  genfile   write BYTES of the same pattern to FILE (for nc)\n"
"Options:\n"
"  --host H --port P      server (127.0.0.1:8000)\n"
"  --conns N --size S     connections (1), message size (64)\n"
"  --depth D              pipelined messages per connection (pipe: 16)\n"
"  --senders M            chat senders (10)\n"
"  --bytes B              stream: bytes per connection\n"
"  --warmup S --duration S --hold S --timeout S\n"
"  --pid PID              server process, for CPU and RSS from /proc\n"
"  --tree                 RSS of PID and its children (moonsock --workers)\n"
"  --procs K              idle: K processes share the connections, for\n"
"                         more than one process's descriptor limit\n"
"  --src-addrs K          source addresses 127.0.0.1..K (auto)\n"
"  --no-self              chat: the sender does not get its own line\n"
"  --script F --newscript F   reload mode\n"
"  --file F --name N      genfile's output; put/get's remote name\n"
"  --label TEXT           copied into the RESULT line\n", f);
}

static void parse(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"conns", 1, 0, 'c'},
        {"size", 1, 0, 's'}, {"depth", 1, 0, 'd'}, {"senders", 1, 0, 'm'},
        {"bytes", 1, 0, 'b'}, {"warmup", 1, 0, 'w'},
        {"duration", 1, 0, 't'}, {"hold", 1, 0, 'H'},
        {"timeout", 1, 0, 'T'}, {"pid", 1, 0, 'P'},
        {"src-addrs", 1, 0, 'S'}, {"no-self", 0, 0, 'n'},
        {"script", 1, 0, 'f'}, {"newscript", 1, 0, 'F'},
        {"label", 1, 0, 'l'}, {"file", 1, 0, 'o'}, {"name", 1, 0, 'N'},
        {"tree", 0, 0, 'R'}, {"procs", 1, 0, 'K'},
        {"help", 0, 0, '?'}, {0, 0, 0, 0}
    };
    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    const char *m = argv[1];
    if (strcmp(m, "echo") == 0) opt.mode = M_ECHO;
    else if (strcmp(m, "pipe") == 0) { opt.mode = M_PIPE; opt.depth = 16; }
    else if (strcmp(m, "idle") == 0) opt.mode = M_IDLE;
    else if (strcmp(m, "chat") == 0) opt.mode = M_CHAT;
    else if (strcmp(m, "stream") == 0) opt.mode = M_STREAM;
    else if (strcmp(m, "reload") == 0) opt.mode = M_RELOAD;
    else if (strcmp(m, "put") == 0) opt.mode = M_PUT;
    else if (strcmp(m, "get") == 0) opt.mode = M_GET;
    else if (strcmp(m, "genfile") == 0) opt.mode = M_GENFILE;
    else if (strcmp(m, "--help") == 0) { usage(stdout); exit(0); }
    else die("unknown mode '%s' (see --help)", m);
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conns = atoi(optarg); break;
        case 's': opt.size = atoi(optarg); break;
        case 'd': opt.depth = atoi(optarg); break;
        case 'm': opt.senders = atoi(optarg); break;
        case 'b': opt.bytes = atoll(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 't': opt.duration = atof(optarg); break;
        case 'H': opt.hold = atof(optarg); break;
        case 'T': opt.timeout = atof(optarg); break;
        case 'P': opt.pid = atoi(optarg); break;
        case 'S': opt.srcaddrs = atoi(optarg); break;
        case 'R': opt.tree = 1; break;
        case 'K': opt.procs = atoi(optarg); break;
        case 'n': opt.self_delivery = 0; break;
        case 'f': opt.script = optarg; break;
        case 'F': opt.newscript = optarg; break;
        case 'l': opt.label = optarg; break;
        case 'o': opt.file = optarg; break;
        case 'N': opt.name = optarg; break;
        default: usage(stderr); exit(2);
        }
    }
    if (opt.conns < 1 || opt.size < 1 || opt.depth < 1 || opt.port < 1)
        die("--conns, --size, --depth and --port must be positive");
    if (opt.procs < 1 || opt.procs > 64 || opt.procs > opt.conns)
        die("--procs must be 1..64 and at most --conns");
    if (opt.procs > 1 && opt.mode != M_IDLE)
        die("--procs is for idle mode");
    if (opt.mode == M_CHAT && opt.size < 48)
        opt.size = 48;              /* room for the tag */
    if ((opt.mode == M_STREAM || opt.mode == M_PUT ||
         opt.mode == M_GENFILE) && opt.bytes <= 0)
        die("%s needs --bytes", m);
    if (opt.mode == M_GENFILE && opt.file == NULL)
        die("genfile needs --file");
    if (opt.mode == M_RELOAD && (!opt.script || !opt.newscript))
        die("reload needs --script and --newscript");
    if (opt.srcaddrs == 0)
        opt.srcaddrs = opt.conns > 20000 ? (opt.conns + 19999) / 20000 : 1;
}

/* One connection per descriptor plus some: raise our own limit (root
 * may raise the hard limit too). */
static void raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if ((long)rl.rlim_cur >= want)
        return;
    struct rlimit nl = { (rlim_t)want, (rlim_t)want };
    if ((long)rl.rlim_max >= want)
        nl.rlim_max = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nl) != 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        fprintf(stderr, "loadgen: RLIMIT_NOFILE stays at %ld; %d "
                "connections may fail\n", (long)rl.rlim_max, opt.conns);
    }
}

/* Handle one readiness event on connection c. */
static void on_event(conn *c, uint32_t ev, uint64_t t)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            conn_fail(c, &conn_errors, "connect", err);
            return;
        }
        nconnecting--;
        nopen++;
        c->state = C_OPEN;
        on_open(c, t);
        return;
    }
    if (c->state != C_OPEN)
        return;
    if (ev & EPOLLOUT) {
        if (conn_flush(c) < 0)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        /* Drain what is there, within reason, so one busy connection
         * cannot starve the rest of this pass. */
        for (int round = 0; round < 4; round++) {
            ssize_t r = recv(c->fd, rxbuf, RXBUF, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                if (errno == EINTR)
                    continue;
                conn_fail(c, &eof_errors, "recv", errno);
                return;
            }
            if (r == 0) {
                conn_fail(c, &eof_errors, "server closed the connection",
                          0);
                return;
            }
            last_rx_ns = t;
            if (opt.mode == M_CHAT)
                chat_bytes(c, (size_t)r, t);
            else
                on_bytes(c, (size_t)r, t);
            if (c->state != C_OPEN || (size_t)r < RXBUF)
                return;
        }
    }
}

/* Connections whose job is done (stream sent and echoed; idle byte
 * back). Message modes are never "done" before the stop. */
static int conn_done(const conn *c)
{
    if (opt.mode == M_STREAM)
        return c->rx_off >= (uint64_t)opt.bytes;
    if (opt.mode == M_IDLE)
        return c->rx_off >= 1;
    return 0;
}

/* --procs K (idle): fork K children that each open their share of the
 * connections and report "R" once all of theirs are echoed; once every
 * child is ready, hold, measure the server, then tell them to stop
 * (close the pipe) and add up their "held N errors E" lines. Returns -1
 * in a child, which goes on as a plain idle run of its share, and the
 * exit status in the parent. */
static int idle_fork(const char *mode)
{
    int up[2], down[2];
    if (pipe(up) < 0 || pipe(down) < 0)
        die("pipe: %s", strerror(errno));
    long rss0 = server_rss_kb(opt.pid);
    int total = opt.conns, k = opt.procs;
    pid_t kids[64];
    for (int i = 0; i < k; i++) {
        int share = total / k + (i < total % k);
        int base = i * (total / k) + (i < total % k ? i : total % k);
        fflush(stdout);
        pid_t p = fork();
        if (p < 0)
            die("fork: %s", strerror(errno));
        if (p == 0) {
            close(up[0]);
            close(down[1]);
            opt.conns = share;
            opt.id_base = base;
            opt.pid = 0;
            opt.procs = 1;
            opt.up_fd = up[1];
            opt.down_fd = down[0];
            return -1;
        }
        kids[i] = p;
    }
    close(up[1]);
    close(down[0]);
    char buf[8192];
    size_t have = 0;
    int ready = 0, eof = 0, held = 0;
    long rss_hold = -1;
    unsigned long long errs = 0;
    uint64_t deadline = now_ns() + (uint64_t)(opt.timeout * 1e9);
    /* Read lines until every child is ready (phase 0) or has reported
     * (phase 1), or the deadline passes, or every child is gone. */
    for (int phase = 0; phase < 2; phase++) {
        int want = k, got = 0;
        while (!eof && got < want) {
            if (phase == 0 && ready == k)
                break;
            int64_t left = (int64_t)(deadline - now_ns()) / 1000000;
            if (now_ns() >= deadline) {
                fprintf(stderr, "loadgen: %d of %d processes %s after "
                        "%.0f s\n", phase ? got : ready, k,
                        phase ? "reported" : "ready", opt.timeout);
                errs++;
                break;
            }
            struct pollfd pf = { .fd = up[0], .events = POLLIN };
            if (poll(&pf, 1, (int)(left > 1000 ? 1000 : left + 1)) <= 0)
                continue;
            ssize_t r = read(up[0], buf + have, sizeof buf - 1 - have);
            if (r <= 0) {
                eof = 1;
                break;
            }
            have += (size_t)r;
            buf[have] = '\0';
            char *nl;
            while ((nl = strchr(buf, '\n')) != NULL) {
                *nl = '\0';
                int h;
                unsigned long long e;
                if (strcmp(buf, "R") == 0) {
                    ready++;
                } else if (sscanf(buf, "held %d errors %llu", &h, &e) == 2) {
                    held += h;
                    errs += e;
                    got++;
                }
                size_t used = (size_t)(nl + 1 - buf);
                memmove(buf, nl + 1, have - used + 1);
                have -= used;
            }
            if (phase == 0)
                got = ready;
        }
        if (phase == 0) {
            /* Everyone holds (or the deadline passed): hold, measure. */
            uint64_t t0 = now_ns();
            while (now_ns() - t0 < (uint64_t)(opt.hold * 1e9))
                usleep(10000);
            rss_hold = server_rss_kb(opt.pid);
            close(down[1]);                /* children: stop holding */
            deadline = now_ns() + 60000000000u;
        }
    }
    int failed = 0;
    for (int i = 0; i < k; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) == kids[i] &&
            !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            failed++;
    }
    if (held < total)
        errs += (unsigned long long)(total - held);
    double per = held > 0 && rss_hold > 0 && rss0 > 0 ?
        (double)(rss_hold - rss0) * 1024.0 / held : 0;
    printf("%s %s: %d conns held by %d processes of %d opened, errors "
           "%llu, server RSS %ld -> %ld KiB (%.0f B/conn)\n", mode,
           opt.label, held, k, total, errs, rss0, rss_hold, per);
    printf("RESULT label=%s mode=%s conns=%d size=%d secs=0 msgs=0 rate=0 "
           "mbps=0 p50_us=0 p99_us=0 p999_us=0 errors=%llu conn_errors=0 "
           "verify_errors=0 eof_errors=0 srv_cpu_s=0 cpu_per_msg_us=0 "
           "held=%d rss0_kb=%ld rss_kb=%ld bytes_per_conn=%.0f procs=%d\n",
           opt.label[0] ? opt.label : "-", mode, total, opt.size, errs, held,
           rss0, rss_hold, per, k);
    return errs > 0 || failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    if (opt.procs > 1) {
        int rc = idle_fork(argv[1]);
        if (rc >= 0)
            return rc;
    }
    raise_nofile((long)opt.conns + 64);

    struct sockaddr_in dst;
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &dst.sin_addr) != 1)
        die("--host: not an IPv4 address: %s", opt.host);

    pat = malloc(PATLEN);
    rxbuf = malloc(RXBUF);
    if (pat == NULL || rxbuf == NULL)
        die("out of memory");
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (unsigned i = 0; i < PATLEN; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;   /* xorshift64 */
        pat[i] = (unsigned char)x;
    }
    if (opt.mode == M_PUT || opt.mode == M_GET || opt.mode == M_GENFILE)
        return transfer(&dst);
    conns = xcalloc((size_t)opt.conns, sizeof *conns);
    for (int i = 0; i < opt.conns; i++) {
        conn *c = &conns[i];
        c->id = i;
        c->fd = -1;
        c->shift = ((uint64_t)i * 40503u) % PATLEN;
        if (msg_mode())
            c->ring = xcalloc((size_t)opt.depth, sizeof *c->ring);
        if (opt.mode == M_CHAT)
            c->line = xcalloc(1, LINE_MAX_CHAT);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));

    long rss0 = server_rss_kb(opt.pid);
    double cpu_start = proc_cpu(opt.pid);
    uint64_t t_start = now_ns();
    uint64_t deadline = t_start + (uint64_t)(opt.timeout * 1e9);
    uint64_t t_all_open = 0;
    uint64_t t_phase = 0;           /* when the warm-up began */
    uint64_t t_save = 0, t_reload = 0;
    int phase = 0;  /* 0 connecting, 1 warm-up, 2 measuring, 3 draining */
    double cpu0 = 0, cpu1 = 0;
    long rss_hold = -1;
    uint64_t next_probe = 0;
    int probes = 0, timed_out = 0;
    struct epoll_event evs[MAX_EVENTS];

    for (;;) {
        uint64_t t = now_ns();
        if (t > deadline) {
            timed_out = 1;
            fprintf(stderr, "loadgen: timed out after %.1fs (phase %d, "
                    "%d open, %d connecting)\n", opt.timeout, phase, nopen,
                    nconnecting);
            break;
        }
        /* Keep MAX_CONNECTING handshakes in flight until all started. */
        while (nnext < opt.conns && nconnecting < MAX_CONNECTING)
            conn_start(&conns[nnext++], &dst);

        int settled = nnext == opt.conns && nconnecting == 0;
        if (phase == 0 && settled) {
            int ready = 1;
            if (opt.mode == M_IDLE) {
                for (int i = 0; i < opt.conns && ready; i++)
                    ready = conns[i].state != C_OPEN || conn_done(&conns[i]);
                /* A server out of descriptors leaves connections in its
                 * backlog, unanswered: after 15 s of that, hold what
                 * answered and count the rest as errors. */
                if (t_all_open == 0)
                    t_all_open = t;
                if (!ready && t - t_all_open > 15000000000u) {
                    for (int i = 0; i < opt.conns; i++)
                        if (conns[i].state == C_OPEN &&
                            !conn_done(&conns[i]))
                            conn_fail(&conns[i], &eof_errors,
                                      "no echo within 15 s", 0);
                    ready = 1;
                }
            }
            if (opt.mode == M_CHAT) {
                /* Joins and welcomes fan out too: wait for quiet. Every
                 * member says one untagged line first: scripts/chat.lua
                 * (as of this writing) loses the first line broadcast to
                 * a member that has not spoken yet, and the measurement
                 * is of the steady state (docs/performance.md). */
                if (t_all_open == 0) {
                    t_all_open = t;
                    for (int i = 0; i < opt.conns; i++)
                        if (conns[i].state == C_OPEN &&
                            send(conns[i].fd, "hello\n", 6,
                                 MSG_NOSIGNAL) != 6)
                            conn_fail(&conns[i], &eof_errors, "hello",
                                      errno);
                    last_rx_ns = t;
                }
                ready = t - last_rx_ns > 300000000u ||
                        t - t_all_open > 10000000000u;
            }
            if (ready) {
                phase = 1;
                t_phase = t;
                if (opt.mode == M_IDLE || opt.mode == M_STREAM) {
                    /* No warm-up: the measured window is the whole run
                     * (stream) or the hold (idle). */
                    if (opt.up_fd >= 0 &&
                        write(opt.up_fd, "R\n", 2) != 2)
                        die("write to parent: %s", strerror(errno));
                    phase = 2;
                    measuring = 1;
                    t_measure0 = t;
                    cpu0 = proc_cpu(opt.pid);
                    if (opt.mode == M_STREAM) {
                        t_measure0 = t_start;
                        cpu0 = cpu_start;
                    }
                }
            }
        }
        if (phase == 1 && t - t_phase >= (uint64_t)(opt.warmup * 1e9)) {
            phase = 2;
            measuring = 1;
            t_measure0 = t;
            cpu0 = proc_cpu(opt.pid);
            if (opt.mode == M_RELOAD) {
                t_save = now_ns();
                if (rename(opt.newscript, opt.script) != 0)
                    die("rename %s -> %s: %s", opt.newscript, opt.script,
                        strerror(errno));
                next_probe = t_save;
            }
        }
        if (phase == 2) {
            int end = 0;
            if (opt.mode == M_IDLE && opt.down_fd >= 0) {
                /* --procs child: hold until the parent has measured. */
                struct pollfd pf = { .fd = opt.down_fd, .events = POLLIN };
                end = poll(&pf, 1, 0) > 0;
            } else if (opt.mode == M_IDLE)
                end = t - t_measure0 >= (uint64_t)(opt.hold * 1e9);
            else if (opt.mode == M_STREAM) {
                end = 1;
                for (int i = 0; i < opt.conns && end; i++)
                    end = conns[i].state != C_OPEN || conn_done(&conns[i]);
            } else if (opt.mode == M_RELOAD)
                end = t_reload != 0 ||
                      t - t_measure0 >= (uint64_t)(opt.duration * 1e9);
            else
                end = t - t_measure0 >= (uint64_t)(opt.duration * 1e9);
            if (end) {
                t_measure1 = t;
                cpu1 = proc_cpu(opt.pid);
                rss_hold = server_rss_kb(opt.pid);
                measuring = 0;
                stopping = 1;
                phase = 3;
                break;
            }
        }
        if (opt.mode == M_CHAT && phase >= 1)
            chat_pump(t);
        if (opt.mode == M_RELOAD && phase == 2 && t >= next_probe) {
            /* A blocking probe stalls the load for one round trip; at
             * one per 2 ms that is noise, and it keeps the code short. */
            int is_new = 0;
            probes++;
            if (probe_once(&dst, &is_new) == 0 && is_new) {
                t_reload = now_ns();
                continue;
            }
            next_probe = now_ns() + 2000000u;
        }

        int n = epoll_wait(epfd, evs, MAX_EVENTS, phase == 0 ? 10 : 1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        t = now_ns();
        for (int i = 0; i < n; i++)
            on_event(&conns[evs[i].data.u32], evs[i].events, t);
    }

    /* ---- report ---- */
    double secs = (double)(t_measure1 - t_measure0) / 1e9;
    if (t_measure1 == 0)
        secs = 0;
    double cpu = cpu1 - cpu0;
    int open_at_end = nopen;
    for (int i = 0; i < opt.conns; i++)
        conn_close(&conns[i], C_DONE);

    if (opt.up_fd >= 0) {
        /* --procs child: the parent reports for all. */
        char line[96];
        int len = snprintf(line, sizeof line, "held %d errors %llu\n",
                           open_at_end,
                           (unsigned long long)errors + (timed_out != 0));
        if (write(opt.up_fd, line, (size_t)len) != len)
            return 1;
        return errors > 0 || timed_out ? 1 : 0;
    }
    char extra[512] = "";
    double rate = secs > 0 ? (double)msgs / secs : 0;
    double mbps = secs > 0 ? (double)bytes_moved / secs / 1e6 : 0;
    double cpu_per_msg_us = msgs > 0 ? cpu / (double)msgs * 1e6 : 0;
    if (opt.mode == M_IDLE) {
        double per = open_at_end > 0 && rss_hold > 0 && rss0 > 0 ?
            (double)(rss_hold - rss0) * 1024.0 / open_at_end : 0;
        snprintf(extra, sizeof extra, " held=%d rss0_kb=%ld rss_kb=%ld "
                 "bytes_per_conn=%.0f", open_at_end, rss0, rss_hold, per);
    } else if (opt.mode == M_STREAM) {
        /* Bytes one way: what an upload or download moves. */
        snprintf(extra, sizeof extra, " bytes=%llu cpu_per_mb_ms=%.3f",
                 (unsigned long long)bytes_moved,
                 bytes_moved ? cpu / ((double)bytes_moved / 1e6) * 1e3 : 0);
    } else if (opt.mode == M_CHAT) {
        snprintf(extra, sizeof extra, " senders=%d lost=%llu late=%llu",
                 opt.senders, (unsigned long long)lost,
                 (unsigned long long)late);
    } else if (opt.mode == M_RELOAD) {
        snprintf(extra, sizeof extra, " reload_ms=%.2f probes=%d",
                 t_reload ? (double)(t_reload - t_save) / 1e6 : -1.0,
                 probes);
    }
    if (opt.mode == M_CHAT)
        errors += lost;
    if (timed_out)
        errors++;
    printf("%s %s: %d conns x %d B: %.0f msg/s, %.1f MB/s, "
           "p50 %.1f us, p99 %.1f us, p99.9 %.1f us, errors %llu, "
           "server CPU %.3f s (%.2f us/msg)\n",
           argv[1], opt.label, opt.conns, opt.size, rate, mbps,
           hist_pct(&lat, .5) / 1e3, hist_pct(&lat, .99) / 1e3,
           hist_pct(&lat, .999) / 1e3, (unsigned long long)errors, cpu,
           cpu_per_msg_us);
    printf("RESULT label=%s mode=%s conns=%d size=%d secs=%.3f "
           "msgs=%llu rate=%.0f mbps=%.2f p50_us=%.1f p99_us=%.1f "
           "p999_us=%.1f errors=%llu conn_errors=%llu verify_errors=%llu "
           "eof_errors=%llu srv_cpu_s=%.3f cpu_per_msg_us=%.3f%s\n",
           opt.label[0] ? opt.label : "-", argv[1], opt.conns, opt.size,
           secs, (unsigned long long)msgs, rate, mbps,
           hist_pct(&lat, .5) / 1e3, hist_pct(&lat, .99) / 1e3,
           hist_pct(&lat, .999) / 1e3, (unsigned long long)errors,
           (unsigned long long)conn_errors,
           (unsigned long long)verify_errors,
           (unsigned long long)eof_errors, cpu, cpu_per_msg_us, extra);
    return errors > 0 ? 1 : 0;
}
