/*
 * buf.c -- a growable byte buffer with a read offset.
 *
 * Bytes are appended at end and consumed from start, so consuming is O(1).
 * Space freed at the front is reclaimed lazily: only when an append would
 * not fit, and only when the bytes to move are no more than the space
 * gained, which keeps compaction amortised O(1) per byte. Otherwise the
 * capacity doubles. Built on malloc/realloc alone; no I/O and no Lua here
 * (sock.c and the bindings read into and write out of it).
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msk.h"

#define BUF_MIN_CAP 64

void msk_buf_init(msk_buf *b)
{
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}

void msk_buf_free(msk_buf *b)
{
    free(b->data);
    msk_buf_init(b);
}

size_t msk_buf_len(const msk_buf *b)
{
    return b->end - b->start;
}

const char *msk_buf_peek(const msk_buf *b)
{
    /* Never NULL, so callers may memcmp/memcpy zero bytes from it. */
    return b->data != NULL ? b->data + b->start : "";
}

/* Move the unread bytes to the front of the allocation. */
static void compact(msk_buf *b)
{
    size_t used = b->end - b->start;

    if (b->start == 0)
        return;
    if (used > 0)
        memmove(b->data, b->data + b->start, used);
    b->start = 0;
    b->end = used;
}

char *msk_buf_reserve(msk_buf *b, size_t n)
{
    size_t used = b->end - b->start;
    size_t need, cap;
    char *p;

    if (b->data != NULL && b->cap - b->end >= n)
        return b->data + b->end;

    /* Sizes beyond PTRDIFF_MAX cannot be objects, and find_eol reports
     * offsets as ssize_t; refuse before asking the allocator. */
    if (n > (size_t)PTRDIFF_MAX - used)
        return NULL;
    need = used + n;

    /* Compact instead of growing when the dead prefix is at least as large
     * as what must move: each byte moved is paid for by a byte consumed. */
    if (b->data != NULL && need <= b->cap && b->start >= used) {
        compact(b);
        return b->data + b->end;
    }

    /* Otherwise double: growing even when need would fit after a costly
     * compaction is what bounds the bytes moved per byte appended. */
    cap = b->cap > 0 ? b->cap : BUF_MIN_CAP / 2;
    do {
        if (cap > (size_t)PTRDIFF_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    } while (cap < need);

    /* Compact first so realloc copies only live bytes; if realloc fails the
     * old block is untouched and still holds every unread byte. */
    compact(b);
    p = realloc(b->data, cap);
    if (p == NULL)
        return NULL;
    b->data = p;
    b->cap = cap;
    return b->data + b->end;
}

void msk_buf_commit(msk_buf *b, size_t n)
{
    assert(n <= b->cap - b->end);
    b->end += n;
}

int msk_buf_append(msk_buf *b, const void *p, size_t n)
{
    char *dst;

    if (n == 0)
        return 0;
    dst = msk_buf_reserve(b, n);
    if (dst == NULL)
        return -ENOMEM;
    memcpy(dst, p, n);
    b->end += n;
    return 0;
}

void msk_buf_consume(msk_buf *b, size_t n)
{
    /* An emptied buffer rewinds for free: nothing needs to move. */
    if (n >= b->end - b->start)
        b->start = b->end = 0;
    else
        b->start += n;
}

ssize_t msk_buf_find_eol(const msk_buf *b, size_t from)
{
    size_t len = b->end - b->start;
    const char *base, *nl;

    if (from >= len)
        return -1;
    base = b->data + b->start;
    nl = memchr(base + from, '\n', len - from);
    return nl != NULL ? (ssize_t)(nl - base) : -1;
}
