/*
 * fuzz_addr.c -- libFuzzer target for the address parsers in core/addr.c.
 *
 * Feeds arbitrary bytes to msk_addr_parse_spec (the --listen parser) and
 * to msk_addr_inet/msk_addr_unix, and checks that whatever parses also
 * formats, and that a formatted IPv4/IPv6 host parses back to the same
 * port. Resolution of "localhost" is allowed (it reads /etc/hosts only).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "msk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    msk_addr a;
    memset(&a, 0, sizeof a);
    if (msk_addr_parse_spec(&a, s) == 0) {
        char host[MSK_ADDRSTRLEN];
        size_t hostlen = 0;
        int port = -1;
        if (msk_addr_format(&a, host, &hostlen, &port, NULL, NULL) != 0)
            abort();                  /* parsed but cannot be shown */
        if (port < 0 || port > 65535)
            abort();
        int family = msk_addr_family(&a);
        if (family == AF_INET || family == AF_INET6) {
            msk_addr b;
            host[hostlen < sizeof host ? hostlen : sizeof host - 1] = '\0';
            if (msk_addr_inet(&b, family, host, port, 0, 0) != 0)
                abort();              /* our own output must parse */
        }
    }
    for (int family = AF_INET; family <= AF_INET6; family += AF_INET6 -
         AF_INET) {
        msk_addr c;
        (void)msk_addr_inet(&c, family, s, (int)(size % 70000), 0, 0);
    }
    msk_addr u;
    (void)msk_addr_unix(&u, (const char *)data, size);
    free(s);
    return 0;
}
