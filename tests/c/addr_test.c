/*
 * addr_test.c -- tests for msk_addr_* (core/addr.c).
 *
 * Builds IPv4, IPv6 and AF_UNIX addresses from good and bad input, formats
 * them back, resolves numeric names and "localhost" with getaddrinfo, and
 * parses listen specs, including the malformed ones that must be refused.
 * Nothing here opens a socket or leaves the machine: resolution uses only
 * numeric hosts and localhost.
 */
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "msk.h"
#include "test.h"

#define EAI(x) (MSK_EAI_BASE + (x))

/* Format a and check the host text and port. */
static int check_fmt(const msk_addr *a, const char *host, int port)
{
    char buf[MSK_ADDRSTRLEN];
    size_t hl = 999;
    int p = -1;

    CHECK_EQ(0, msk_addr_format(a, buf, &hl, &p, NULL, NULL));
    CHECK_STR(host, buf);
    CHECK_EQ(strlen(host), hl);
    CHECK_EQ(port, p);
    return 0;
}

static int test_inet4(void)
{
    msk_addr a;

    CHECK_EQ(0, msk_addr_inet(&a, AF_INET, "127.0.0.1", 8080, 0, 0));
    CHECK_EQ(AF_INET, msk_addr_family(&a));
    CHECK_EQ(sizeof(struct sockaddr_in), a.len);
    CHECK_EQ(0, check_fmt(&a, "127.0.0.1", 8080));

    CHECK_EQ(0, msk_addr_inet(&a, AF_INET, "", 0, 0, 0));
    CHECK_EQ(0, check_fmt(&a, "0.0.0.0", 0));
    CHECK_EQ(0, msk_addr_inet(&a, AF_INET, NULL, 1, 0, 0));
    CHECK_EQ(0, check_fmt(&a, "0.0.0.0", 1));
    CHECK_EQ(0, msk_addr_inet(&a, AF_INET, "<broadcast>", 9, 0, 0));
    CHECK_EQ(0, check_fmt(&a, "255.255.255.255", 9));
    CHECK_EQ(0, msk_addr_inet(&a, AF_INET, "10.1.2.3", 65535, 0, 0));
    CHECK_EQ(0, check_fmt(&a, "10.1.2.3", 65535));
    return 0;
}

static int test_inet_bad(void)
{
    msk_addr a;

    CHECK_EQ(-EINVAL, msk_addr_inet(&a, AF_INET, "127.0.0.1", -1, 0, 0));
    CHECK_EQ(-EINVAL, msk_addr_inet(&a, AF_INET, "127.0.0.1", 65536, 0, 0));
    CHECK_EQ(-EINVAL, msk_addr_inet(&a, AF_INET6, "::1", 70000, 0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET, "localhost", 1,
                                            0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET, "1.2.3", 1, 0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET, "256.1.1.1", 1,
                                            0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET, "::1", 1, 0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET, " 1.2.3.4", 1,
                                            0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET6, "1.2.3.4", 1,
                                            0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET6, "<broadcast>", 1,
                                            0, 0));
    CHECK_EQ(-EAFNOSUPPORT, msk_addr_inet(&a, AF_UNIX, "", 1, 0, 0));
    CHECK(MSK_IS_EAI(EAI(EAI_NONAME)));
    CHECK_EQ(EAI_NONAME, MSK_EAI(EAI(EAI_NONAME)));
    CHECK(!MSK_IS_EAI(-EINVAL));
    CHECK(msk_strerror(EAI(EAI_NONAME)) != NULL);
    CHECK(msk_strerror(EAI(EAI_NONAME))[0] != '\0');
    return 0;
}

static int test_inet6(void)
{
    msk_addr a;
    char buf[MSK_ADDRSTRLEN];
    uint32_t fi = 0, sc = 0;
    unsigned lo = if_nametoindex("lo");
    int port = 0;

    CHECK_EQ(0, msk_addr_inet(&a, AF_INET6, "::1", 443, 0x12345, 0));
    CHECK_EQ(AF_INET6, msk_addr_family(&a));
    CHECK_EQ(sizeof(struct sockaddr_in6), a.len);
    CHECK_EQ(0, msk_addr_format(&a, buf, NULL, &port, &fi, &sc));
    CHECK_STR("::1", buf);
    CHECK_EQ(443, port);
    CHECK_EQ(0x12345, fi);
    CHECK_EQ(0, sc);

    CHECK_EQ(0, msk_addr_inet(&a, AF_INET6, "", 80, 0, 0));
    CHECK_EQ(0, check_fmt(&a, "::", 80));
    CHECK_EQ(0, msk_addr_inet(&a, AF_INET6, "::ffff:1.2.3.4", 80, 0, 0));
    CHECK_EQ(0, check_fmt(&a, "::ffff:1.2.3.4", 80));

    /* Scope: the argument, a numeric suffix, or an interface name. */
    CHECK_EQ(0, msk_addr_inet(&a, AF_INET6, "fe80::1", 1, 0, 3));
    CHECK_EQ(0, msk_addr_format(&a, NULL, NULL, NULL, NULL, &sc));
    CHECK_EQ(3, sc);
    CHECK_EQ(0, msk_addr_inet(&a, AF_INET6, "fe80::1%7", 1, 0, 3));
    CHECK_EQ(0, msk_addr_format(&a, buf, NULL, NULL, NULL, &sc));
    CHECK_STR("fe80::1", buf);
    CHECK_EQ(7, sc);
    if (lo != 0) {
        CHECK_EQ(0, msk_addr_inet(&a, AF_INET6, "fe80::1%lo", 1, 0, 0));
        CHECK_EQ(0, msk_addr_format(&a, NULL, NULL, NULL, NULL, &sc));
        CHECK_EQ(lo, sc);
    }
    CHECK_EQ(EAI(EAI_NONAME),
             msk_addr_inet(&a, AF_INET6, "fe80::1%nosuchif9", 1, 0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET6, "fe80::1%", 1,
                                            0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET6, "%lo", 1, 0, 0));
    CHECK_EQ(EAI(EAI_NONAME),
             msk_addr_inet(&a, AF_INET6, "fe80::1%99999999999", 1, 0, 0));
    CHECK_EQ(EAI(EAI_NONAME), msk_addr_inet(&a, AF_INET6,
             "0000:0000:0000:0000:0000:0000:0000:0000:0000:0001", 1, 0, 0));
    return 0;
}

static int test_unix(void)
{
    msk_addr a;
    char path[200], buf[MSK_ADDRSTRLEN];
    size_t hl = 0;
    int port = -1;

    CHECK_EQ(0, msk_addr_unix(&a, "/tmp/x.sock", 11));
    CHECK_EQ(AF_UNIX, msk_addr_family(&a));
    CHECK_EQ(0, msk_addr_format(&a, buf, &hl, &port, NULL, NULL));
    CHECK_STR("/tmp/x.sock", buf);
    CHECK_EQ(11, hl);
    CHECK_EQ(0, port);

    /* 107 bytes plus the NUL fill sun_path; 108 do not fit. */
    memset(path, 'p', sizeof path);
    CHECK_EQ(0, msk_addr_unix(&a, path, 107));
    CHECK_EQ(0, msk_addr_format(&a, buf, &hl, NULL, NULL, NULL));
    CHECK_EQ(107, hl);
    CHECK_EQ(-ENAMETOOLONG, msk_addr_unix(&a, path, 108));
    CHECK_EQ(-ENAMETOOLONG, msk_addr_unix(&a, path, 150));
    CHECK_EQ(-EINVAL, msk_addr_unix(&a, "a\0b", 3));

    /* Abstract names keep their leading NUL and may use all 108 bytes. */
    CHECK_EQ(0, msk_addr_unix(&a, "\0abc", 4));
    CHECK_EQ(offsetof(struct sockaddr_un, sun_path) + 4, a.len);
    CHECK_EQ(0, msk_addr_format(&a, buf, &hl, NULL, NULL, NULL));
    CHECK_EQ(4, hl);
    CHECK(memcmp(buf, "\0abc", 4) == 0);
    path[0] = '\0';
    CHECK_EQ(0, msk_addr_unix(&a, path, 108));
    CHECK_EQ(0, msk_addr_format(&a, buf, &hl, NULL, NULL, NULL));
    CHECK_EQ(108, hl);
    CHECK_EQ(-ENAMETOOLONG, msk_addr_unix(&a, path, 109));

    /* Unnamed: what getpeername gives for an unbound client. */
    CHECK_EQ(0, msk_addr_unix(&a, "", 0));
    CHECK_EQ(sizeof(sa_family_t), a.len);
    CHECK_EQ(0, msk_addr_format(&a, buf, &hl, NULL, NULL, NULL));
    CHECK_EQ(0, hl);
    CHECK_STR("", buf);

    /* A kernel-filled path whose length counts no NUL still formats. */
    memset(&a, 0, sizeof a);
    a.ss.ss_family = AF_UNIX;
    memcpy(((struct sockaddr_un *)&a.ss)->sun_path, "/s", 2);
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 2);
    CHECK_EQ(0, check_fmt(&a, "/s", 0));
    return 0;
}

static int test_format_bad(void)
{
    msk_addr a;
    char buf[MSK_ADDRSTRLEN];

    memset(&a, 0, sizeof a);
    CHECK_EQ(AF_UNSPEC, msk_addr_family(&a));
    CHECK_EQ(-EAFNOSUPPORT, msk_addr_format(&a, buf, NULL, NULL, NULL,
                                            NULL));
    a.ss.ss_family = AF_APPLETALK;
    a.len = sizeof a.ss;
    CHECK_EQ(-EAFNOSUPPORT, msk_addr_format(&a, buf, NULL, NULL, NULL,
                                            NULL));
    CHECK_EQ(0, msk_addr_inet(&a, AF_INET, "1.2.3.4", 5, 0, 0));
    CHECK_EQ(0, msk_addr_format(&a, NULL, NULL, NULL, NULL, NULL));
    return 0;
}

static int test_resolve(void)
{
    msk_addr out[8];
    int types[8], protos[8], n, i, v4 = 0;

    n = msk_addr_resolve(out, 8, "127.0.0.1", "80", AF_INET, SOCK_STREAM,
                         AI_NUMERICHOST | AI_NUMERICSERV, types, protos);
    CHECK_EQ(1, n);
    CHECK_EQ(SOCK_STREAM, types[0]);
    CHECK_EQ(IPPROTO_TCP, protos[0]);
    CHECK_EQ(0, check_fmt(&out[0], "127.0.0.1", 80));

    n = msk_addr_resolve(out, 8, "::1", "443", AF_INET6, SOCK_DGRAM,
                         AI_NUMERICHOST, NULL, protos);
    CHECK_EQ(1, n);
    CHECK_EQ(IPPROTO_UDP, protos[0]);
    CHECK_EQ(0, check_fmt(&out[0], "::1", 443));

    n = msk_addr_resolve(out, 8, "localhost", "9", AF_UNSPEC, SOCK_STREAM,
                         0, NULL, NULL);
    CHECK(n >= 1);
    for (i = 0; i < n; i++)
        if (msk_addr_family(&out[i]) == AF_INET)
            v4 = 1;
    CHECK(v4);

    /* max caps the count; a NULL host with AI_PASSIVE is the any address */
    n = msk_addr_resolve(out, 1, "127.0.0.1", "1", AF_INET, 0,
                         AI_NUMERICHOST, NULL, NULL);
    CHECK_EQ(1, n);
    n = msk_addr_resolve(out, 8, NULL, "7", AF_INET, SOCK_STREAM,
                         AI_PASSIVE, NULL, NULL);
    CHECK_EQ(1, n);
    CHECK_EQ(0, check_fmt(&out[0], "0.0.0.0", 7));

    CHECK_EQ(EAI(EAI_NONAME),
             msk_addr_resolve(out, 8, "not a host", "1", AF_UNSPEC, 0,
                              AI_NUMERICHOST, NULL, NULL));
    CHECK_EQ(EAI(EAI_NONAME),
             msk_addr_resolve(out, 8, "127.0.0.1", "http", AF_INET, 0,
                              AI_NUMERICSERV, NULL, NULL));
    CHECK_EQ(EAI(EAI_FAMILY),
             msk_addr_resolve(out, 8, "127.0.0.1", "1", 12345, 0,
                              AI_NUMERICHOST, NULL, NULL));
    CHECK_EQ(EAI(EAI_SOCKTYPE),
             msk_addr_resolve(out, 8, "127.0.0.1", "1", AF_INET, 12345,
                              AI_NUMERICHOST, NULL, NULL));
    CHECK_EQ(-EINVAL, msk_addr_resolve(out, 0, "127.0.0.1", "1", AF_INET,
                                       0, 0, NULL, NULL));
    return 0;
}

static int test_spec_good(void)
{
    msk_addr a;
    uint32_t sc = 0;
    unsigned lo = if_nametoindex("lo");

    CHECK_EQ(0, msk_addr_parse_spec(&a, "127.0.0.1:8080"));
    CHECK_EQ(AF_INET, msk_addr_family(&a));
    CHECK_EQ(0, check_fmt(&a, "127.0.0.1", 8080));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "0.0.0.0:0"));
    CHECK_EQ(0, check_fmt(&a, "0.0.0.0", 0));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "[::1]:8080"));
    CHECK_EQ(AF_INET6, msk_addr_family(&a));
    CHECK_EQ(0, check_fmt(&a, "::1", 8080));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "[::]:65535"));
    CHECK_EQ(0, check_fmt(&a, "::", 65535));
    if (lo != 0) {
        CHECK_EQ(0, msk_addr_parse_spec(&a, "[fe80::1%lo]:80"));
        CHECK_EQ(0, msk_addr_format(&a, NULL, NULL, NULL, NULL, &sc));
        CHECK_EQ(lo, sc);
    }
    CHECK_EQ(0, msk_addr_parse_spec(&a, ":8080"));
    CHECK_EQ(AF_INET, msk_addr_family(&a));
    CHECK_EQ(0, check_fmt(&a, "0.0.0.0", 8080));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "8080"));
    CHECK_EQ(0, check_fmt(&a, "0.0.0.0", 8080));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "00080"));
    CHECK_EQ(0, check_fmt(&a, "0.0.0.0", 80));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "unix:/tmp/moon.sock"));
    CHECK_EQ(AF_UNIX, msk_addr_family(&a));
    CHECK_EQ(0, check_fmt(&a, "/tmp/moon.sock", 0));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "unix:rel/x"));
    CHECK_EQ(0, check_fmt(&a, "rel/x", 0));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "localhost:8080"));
    CHECK_EQ(AF_INET, msk_addr_family(&a));      /* IPv4 preferred */
    CHECK_EQ(0, check_fmt(&a, "127.0.0.1", 8080));
    CHECK_EQ(0, msk_addr_parse_spec(&a, "LocalHost:1"));
    CHECK_EQ(0, check_fmt(&a, "127.0.0.1", 1));
    return 0;
}

static int test_spec_bad(void)
{
    static const char *const bad[] = {
        "", "1.2.3.4:", "host:99999", "[::1", "[::1]", "[::1]80",
        "[::1]:", "[]:80", "[::1]:x", "[1.2.3.4]:80", "[fe80::1%]:80",
        "unix:", ":", "abc", "1.2.3.4:80x", "::1:80", "::1",
        "example.com:80", "1.2.3.4:-1", "1.2.3.4:+80", "1.2.3.4: 80",
        "99999", "65536", "123456", "1.2.3:80", "<broadcast>:80",
        "1.2.3.4:80:", "localhost:", "localhost:http", ":0x50",
        NULL
    };
    msk_addr a;
    int i;
    char longhost[400];

    for (i = 0; bad[i] != NULL; i++) {
        int rc = msk_addr_parse_spec(&a, bad[i]);
        if (rc != -EINVAL)
            fprintf(stderr, "spec \"%s\" gave %d\n", bad[i], rc);
        CHECK_EQ(-EINVAL, rc);
    }
    CHECK_EQ(-EINVAL, msk_addr_parse_spec(&a, NULL));
    memset(longhost, '1', sizeof longhost);
    memcpy(longhost + sizeof longhost - 4, ":80", 4);
    CHECK_EQ(-EINVAL, msk_addr_parse_spec(&a, longhost));
    memcpy(longhost, "unix:", 5);
    CHECK_EQ(-ENAMETOOLONG, msk_addr_parse_spec(&a, longhost));
    return 0;
}

TEST_MAIN(
    TEST(test_inet4),
    TEST(test_inet_bad),
    TEST(test_inet6),
    TEST(test_unix),
    TEST(test_format_bad),
    TEST(test_resolve),
    TEST(test_spec_good),
    TEST(test_spec_bad)
)
