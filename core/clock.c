/*
 * clock.c -- the monotonic clock the loop and timers measure time with.
 *
 * Built on clock_gettime(CLOCK_MONOTONIC), which never jumps with the wall
 * clock and is a vDSO call on Linux (no syscall). No wall time here, and
 * no caching: callers that need "now" twice in a pass ask twice.
 */
#include <time.h>

#include "msk.h"

int64_t msk_clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t msk_clock_ms(void)
{
    return msk_clock_ns() / 1000000;
}
