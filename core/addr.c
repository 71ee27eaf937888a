/*
 * addr.c -- build, resolve, parse and format socket addresses.
 *
 * An msk_addr is a sockaddr_storage plus its length, so every family fits.
 * Numeric hosts go through inet_pton/inet_ntop, names through getaddrinfo,
 * whose EAI_* failures are translated to MSK_EAI_BASE + EAI_* (EAI_SYSTEM
 * becomes -errno) and never passed through raw. Listen specs from the
 * command line ("HOST:PORT", "[V6]:PORT", "unix:PATH") are parsed here too.
 * Resolution blocks the calling thread; running it off the loop thread is
 * the caller's business. No sockets are opened here.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "msk.h"

#define UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

/* Parse an interface scope: a decimal index or an interface name. */
static int parse_scope(const char *s, uint32_t *scope)
{
    char *end;
    unsigned long v;
    unsigned idx;

    if (*s == '\0')
        return MSK_EAI_BASE + EAI_NONAME;
    if (isdigit((unsigned char)*s)) {
        errno = 0;
        v = strtoul(s, &end, 10);
        if (*end != '\0' || errno != 0 || v > UINT32_MAX)
            return MSK_EAI_BASE + EAI_NONAME;
        *scope = (uint32_t)v;
        return 0;
    }
    idx = if_nametoindex(s);
    if (idx == 0)
        return MSK_EAI_BASE + EAI_NONAME;
    *scope = idx;
    return 0;
}

static int inet6(msk_addr *a, const char *host, int port,
                 uint32_t flowinfo, uint32_t scope_id)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    char tmp[INET6_ADDRSTRLEN];
    const char *pct = strchr(host, '%');
    size_t hl = pct != NULL ? (size_t)(pct - host) : strlen(host);
    int rc;

    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    sin6->sin6_flowinfo = htonl(flowinfo);
    sin6->sin6_scope_id = scope_id;
    a->len = sizeof *sin6;
    if (hl == 0 && pct == NULL) {
        sin6->sin6_addr = in6addr_any;
        return 0;
    }
    if (hl == 0 || hl >= sizeof tmp)
        return MSK_EAI_BASE + EAI_NONAME;
    memcpy(tmp, host, hl);
    tmp[hl] = '\0';
    if (inet_pton(AF_INET6, tmp, &sin6->sin6_addr) != 1)
        return MSK_EAI_BASE + EAI_NONAME;
    if (pct != NULL) {
        rc = parse_scope(pct + 1, &sin6->sin6_scope_id);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int msk_addr_inet(msk_addr *a, int family, const char *host, int port,
                  uint32_t flowinfo, uint32_t scope_id)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

    memset(a, 0, sizeof *a);
    if (port < 0 || port > 65535)
        return -EINVAL;
    if (host == NULL)
        host = "";
    if (family == AF_INET6)
        return inet6(a, host, port, flowinfo, scope_id);
    if (family != AF_INET)
        return -EAFNOSUPPORT;

    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    a->len = sizeof *sin;
    if (*host == '\0')
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "<broadcast>") == 0)
        sin->sin_addr.s_addr = htonl(INADDR_BROADCAST);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return MSK_EAI_BASE + EAI_NONAME;
    return 0;
}

int msk_addr_unix(msk_addr *a, const char *path, size_t pathlen)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&a->ss;
    int abstract = pathlen > 0 && path[0] == '\0';

    memset(a, 0, sizeof *a);
    /* A filesystem path needs room for its terminating NUL; an abstract
     * name is counted by length and may fill sun_path entirely. */
    if (pathlen > UNIX_PATH_MAX || (!abstract && pathlen == UNIX_PATH_MAX))
        return -ENAMETOOLONG;
    /* The kernel would silently cut a path at an embedded NUL. */
    if (!abstract && pathlen > 0 && memchr(path, '\0', pathlen) != NULL)
        return -EINVAL;
    sun->sun_family = AF_UNIX;
    if (pathlen > 0)
        memcpy(sun->sun_path, path, pathlen);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pathlen);
    if (!abstract && pathlen > 0)
        a->len++;                         /* include the NUL, as Linux does */
    return 0;
}

int msk_addr_resolve(msk_addr *out, int max, const char *host,
                     const char *port, int family, int type, int flags,
                     int *types_out, int *protos_out)
{
    struct addrinfo hints, *res, *ai;
    int rc, n = 0;

    if (max <= 0 || out == NULL)
        return -EINVAL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = type;
    hints.ai_flags = flags;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc == EAI_SYSTEM)
        return errno != 0 ? -errno : -EIO;
    if (rc != 0)
        return MSK_EAI_BASE + rc;

    for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out[n].ss)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        if (types_out != NULL)
            types_out[n] = ai->ai_socktype;
        if (protos_out != NULL)
            protos_out[n] = ai->ai_protocol;
        n++;
    }
    freeaddrinfo(res);
    return n > 0 ? n : MSK_EAI_BASE + EAI_NONAME;
}

int msk_addr_format(const msk_addr *a, char *buf, size_t *hostlen,
                    int *port, uint32_t *flowinfo, uint32_t *scope_id)
{
    char tmp[MSK_ADDRSTRLEN];
    size_t hl = 0;
    int p = 0;
    uint32_t fi = 0, sc = 0;

    tmp[0] = '\0';
    switch (msk_addr_family(a)) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
        if (inet_ntop(AF_INET, &sin->sin_addr, tmp, sizeof tmp) == NULL)
            return -errno;
        hl = strlen(tmp);
        p = ntohs(sin->sin_port);
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        if (inet_ntop(AF_INET6, &s6->sin6_addr, tmp, sizeof tmp) == NULL)
            return -errno;
        hl = strlen(tmp);
        p = ntohs(s6->sin6_port);
        fi = ntohl(s6->sin6_flowinfo);
        sc = s6->sin6_scope_id;
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t max = a->len > off ? a->len - off : 0;

        /* len == sizeof(sa_family_t): an unnamed socket, empty path. */
        if (max > UNIX_PATH_MAX)
            max = UNIX_PATH_MAX;
        if (max > 0 && sun->sun_path[0] == '\0')
            hl = max;                       /* abstract: all bytes count */
        else
            hl = strnlen(sun->sun_path, max);
        memcpy(tmp, sun->sun_path, hl);
        tmp[hl] = '\0';
        break;
    }
    default:
        return -EAFNOSUPPORT;
    }

    if (buf != NULL)
        memcpy(buf, tmp, hl + 1);
    if (hostlen != NULL)
        *hostlen = hl;
    if (port != NULL)
        *port = p;
    if (flowinfo != NULL)
        *flowinfo = fi;
    if (scope_id != NULL)
        *scope_id = sc;
    return 0;
}

int msk_addr_family(const msk_addr *a)
{
    if (a->len < sizeof(sa_family_t))
        return AF_UNSPEC;
    return a->ss.ss_family;
}

/* A port: 1 to 5 decimal digits, at most 65535. Returns it or -1. */
static int parse_port(const char *s)
{
    long v = 0;
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if (i >= 5 || s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (i == 0 || v > 65535)
        return -1;
    return (int)v;
}

/* "localhost" through the resolver, preferring IPv4 as most clients do. */
static int resolve_localhost(msk_addr *a, const char *host, const char *port)
{
    msk_addr res[8];
    int n, i;

    n = msk_addr_resolve(res, 8, host, port, AF_UNSPEC, SOCK_STREAM,
                         AI_NUMERICSERV, NULL, NULL);
    if (n < 0)
        return n;
    for (i = 0; i < n; i++) {
        if (msk_addr_family(&res[i]) == AF_INET) {
            *a = res[i];
            return 0;
        }
    }
    *a = res[0];
    return 0;
}

int msk_addr_parse_spec(msk_addr *a, const char *spec)
{
    char host[256];
    const char *colon, *portstr;
    size_t hl;
    int port, rc;

    memset(a, 0, sizeof *a);
    if (spec == NULL || *spec == '\0')
        return -EINVAL;

    if (strncmp(spec, "unix:", 5) == 0) {
        if (spec[5] == '\0')
            return -EINVAL;
        return msk_addr_unix(a, spec + 5, strlen(spec + 5));
    }

    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        hl = (size_t)(close - spec - 1);
        portstr = close + 2;
        if (hl == 0 || hl >= sizeof host)
            return -EINVAL;
        memcpy(host, spec + 1, hl);
        host[hl] = '\0';
        port = parse_port(portstr);
        if (port < 0)
            return -EINVAL;
        rc = msk_addr_inet(a, AF_INET6, host, port, 0, 0);
        return rc < 0 ? -EINVAL : 0;
    }

    colon = strrchr(spec, ':');
    if (colon == NULL) {
        host[0] = '\0';
        portstr = spec;
    } else {
        hl = (size_t)(colon - spec);
        /* A bare IPv6 address is ambiguous ("::1:80"); brackets needed. */
        if (hl >= sizeof host || memchr(spec, ':', hl) != NULL)
            return -EINVAL;
        memcpy(host, spec, hl);
        host[hl] = '\0';
        portstr = colon + 1;
    }
    port = parse_port(portstr);
    if (port < 0)
        return -EINVAL;
    if (strcasecmp(host, "localhost") == 0)
        return resolve_localhost(a, host, portstr);
    /* "<broadcast>" is for sendto, not for a listen spec. */
    if (host[0] == '<')
        return -EINVAL;
    rc = msk_addr_inet(a, AF_INET, host, port, 0, 0);
    return rc < 0 ? -EINVAL : 0;
}
