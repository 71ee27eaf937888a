/*
 * timer.c -- one-shot and repeating timers on a binary min-heap.
 *
 * Ordered by (deadline, seq), so timers due in the same millisecond fire in
 * the order they were armed. Timers live in slots; an id is the slot number
 * in its low 32 bits and the slot's generation in the high bits, so a
 * stale id never names a reused slot, and cancel finds its timer in O(1)
 * and leaves the heap in O(log n). A timer is taken off the heap before
 * its callback runs; a cancel from inside the callback only marks it, and
 * the slot is freed when the callback returns. Deadlines are monotonic
 * nanoseconds, so a timer never fires before its full delay; a repeating
 * timer is re-armed from its scheduled deadline, skipping whole periods
 * it missed rather than firing in a burst. No I/O here; loop.c asks
 * msk__timer_next_ms() how long it may sleep.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "loop_internal.h"

/* About 34 years: effectively never, and far from overflowing ns. */
#define MAX_MS   ((int64_t)1 << 40)
#define NS_PER_MS 1000000

enum { T_FREE, T_HEAP, T_RUNNING, T_CANCELLED };

static int before(const msk_loop *loop, uint32_t a, uint32_t b)
{
    const msk__timer *ta = &loop->timers[a], *tb = &loop->timers[b];

    return ta->deadline < tb->deadline
        || (ta->deadline == tb->deadline && ta->seq < tb->seq);
}

static void place(msk_loop *loop, uint32_t pos, uint32_t slot)
{
    loop->heap[pos] = slot;
    loop->timers[slot].pos = pos;
}

static void sift_up(msk_loop *loop, uint32_t pos)
{
    uint32_t slot = loop->heap[pos];

    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!before(loop, slot, loop->heap[parent]))
            break;
        place(loop, pos, loop->heap[parent]);
        pos = parent;
    }
    place(loop, pos, slot);
}

static void sift_down(msk_loop *loop, uint32_t pos)
{
    uint32_t slot = loop->heap[pos], n = loop->nheap;

    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(loop, loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!before(loop, loop->heap[c], slot))
            break;
        place(loop, pos, loop->heap[c]);
        pos = c;
    }
    place(loop, pos, slot);
}

static void heap_remove(msk_loop *loop, uint32_t pos)
{
    uint32_t last = --loop->nheap;

    if (pos == last)
        return;
    place(loop, pos, loop->heap[last]);
    if (pos > 0 && before(loop, loop->heap[pos], loop->heap[(pos - 1) / 2]))
        sift_up(loop, pos);
    else
        sift_down(loop, pos);
}

/* The heap has room for every slot, so a push never allocates. */
static void heap_push(msk_loop *loop, uint32_t slot)
{
    loop->heap[loop->nheap] = slot;
    sift_up(loop, loop->nheap++);
}

static void slot_free(msk_loop *loop, uint32_t slot)
{
    msk__timer *t = &loop->timers[slot];

    t->state = T_FREE;
    t->fn = NULL;
    t->udata = NULL;
    t->gen = t->gen >= 0x7fffffffu ? 1 : t->gen + 1;
    t->pos = loop->tfree;
    loop->tfree = slot;
    loop->tcount--;
}

static int slot_alloc(msk_loop *loop, uint32_t *slotp)
{
    uint32_t i, n;

    if (loop->tfree == UINT32_MAX) {
        msk__timer *t;
        uint32_t *h;

        n = loop->ntimers > 0 ? loop->ntimers * 2 : 16;
        if (n > 0x7fffffffu)
            return -ENOMEM;
        t = realloc(loop->timers, (size_t)n * sizeof *t);
        if (t == NULL)
            return -ENOMEM;
        loop->timers = t;
        h = realloc(loop->heap, (size_t)n * sizeof *h);
        if (h == NULL)
            return -ENOMEM;     /* timers stays larger; harmless */
        loop->heap = h;
        loop->heapcap = n;
        /* Thread the new slots onto the free list, lowest first. */
        for (i = n; i-- > loop->ntimers;) {
            t[i].state = T_FREE;
            t[i].gen = 1;
            t[i].fn = NULL;
            t[i].udata = NULL;
            t[i].pos = loop->tfree;
            loop->tfree = i;
        }
        loop->ntimers = n;
    }
    *slotp = loop->tfree;
    loop->tfree = loop->timers[*slotp].pos;
    loop->tcount++;
    return 0;
}

static int64_t clamp_ms(int64_t ms)
{
    return ms < 0 ? 0 : ms > MAX_MS ? MAX_MS : ms;
}

int64_t msk_timer_add(msk_loop *loop, int64_t ms, int64_t repeat_ms,
                      msk_timer_fn *fn, void *udata)
{
    msk__timer *t;
    uint32_t slot;
    int rc;

    if (fn == NULL)
        return -EINVAL;
    if ((rc = slot_alloc(loop, &slot)) < 0)
        return rc;
    t = &loop->timers[slot];
    t->deadline = msk_clock_ns() + clamp_ms(ms) * NS_PER_MS;
    t->seq = loop->tseq++;
    t->repeat = clamp_ms(repeat_ms) * NS_PER_MS;
    t->fn = fn;
    t->udata = udata;
    t->state = T_HEAP;
    heap_push(loop, slot);
    return (int64_t)t->gen << 32 | slot;
}

static msk__timer *lookup(msk_loop *loop, int64_t id, uint32_t *slotp)
{
    uint32_t slot = (uint32_t)(id & 0xffffffff);
    msk__timer *t;

    if (id <= 0 || slot >= loop->ntimers)
        return NULL;
    t = &loop->timers[slot];
    if (t->state == T_FREE || t->gen != (uint32_t)(id >> 32))
        return NULL;
    *slotp = slot;
    return t;
}

int msk_timer_cancel(msk_loop *loop, int64_t id)
{
    uint32_t slot;
    msk__timer *t = lookup(loop, id, &slot);

    if (t == NULL || t->state == T_CANCELLED)
        return -ENOENT;
    if (t->state == T_RUNNING) {
        t->state = T_CANCELLED;  /* freed when its callback returns */
        return 0;
    }
    heap_remove(loop, t->pos);
    slot_free(loop, slot);
    return 0;
}

size_t msk_timer_count(const msk_loop *loop)
{
    return loop->tcount;
}

void msk__timer_fini(msk_loop *loop)
{
    free(loop->timers);
    free(loop->heap);
    loop->timers = NULL;
    loop->heap = NULL;
    loop->ntimers = loop->nheap = loop->heapcap = 0;
    loop->tcount = 0;
    loop->tfree = UINT32_MAX;
}

int msk__timer_next_ms(const msk_loop *loop)
{
    int64_t d;

    if (loop->nheap == 0)
        return -1;
    d = loop->timers[loop->heap[0]].deadline - msk_clock_ns();
    if (d <= 0)
        return 0;
    /* Round up: waking a fraction of a ms early would spin a pass. */
    d = (d + NS_PER_MS - 1) / NS_PER_MS;
    return d > INT_MAX ? INT_MAX : (int)d;
}

int msk__timer_run(msk_loop *loop, uint64_t limit)
{
    int64_t now = msk_clock_ns();
    int ran = 0;

    while (loop->nheap > 0) {
        uint32_t slot = loop->heap[0];
        msk__timer *t = &loop->timers[slot];
        int64_t id;

        if (t->deadline > now || t->seq >= limit)
            break;
        heap_remove(loop, 0);
        t->state = T_RUNNING;
        id = (int64_t)t->gen << 32 | slot;
        t->fn(loop, id, t->udata);
        ran++;
        t = &loop->timers[slot];        /* the callback may have grown it */
        if (t->state == T_RUNNING && t->repeat > 0) {
            int64_t next = t->deadline + t->repeat;
            if (next <= now)            /* fell behind: keep the phase */
                next += ((now - next) / t->repeat + 1) * t->repeat;
            t->deadline = next;
            t->seq = loop->tseq++;      /* so it cannot run again now */
            t->state = T_HEAP;
            heap_push(loop, slot);
        } else {
            slot_free(loop, slot);
        }
    }
    return ran;
}
