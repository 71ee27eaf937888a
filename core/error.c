/*
 * error.c -- msk_strerror: text for every code the core returns.
 *
 * A code is -errno, a resolver failure (MSK_EAI_BASE + EAI_*, text from
 * gai_strerror), or one of the private MSK_E* codes. errno text comes from
 * the GNU strerror_r into a thread-local buffer, so the call is safe from
 * any thread. No error codes are defined here; msk.h holds them.
 */
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "msk.h"

const char *msk_strerror(int code)
{
    static __thread char buf[128];

    if (code == 0)
        return "success";
    if (MSK_IS_EAI(code))
        return gai_strerror(MSK_EAI(code));
    if (code == MSK_EOF)
        return "end of file";
    if (code == MSK_EBUSY)
        return "already in use";
    if (code <= MSK_EBASE) {
        snprintf(buf, sizeof buf, "unknown error %d", code);
        return buf;
    }
    /* Positive values are taken as plain errno numbers, for leniency. */
    return strerror_r(code < 0 ? -code : code, buf, sizeof buf);
}
