/*
 * buf_test.c -- tests for msk_buf (core/buf.c).
 *
 * Covers append, consume, reserve/commit and find_eol on small inputs,
 * growth to megabytes, that compaction keeps the unread bytes intact, and
 * a long run of random operations checked byte for byte against a plain
 * reference array. Memory exhaustion itself is not simulated; only the
 * size-overflow refusal is.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msk.h"
#include "test.h"

static int test_empty(void)
{
    msk_buf b = MSK_BUF_INIT;

    CHECK_EQ(0, msk_buf_len(&b));
    CHECK(msk_buf_peek(&b) != NULL);
    CHECK_EQ(-1, msk_buf_find_eol(&b, 0));
    msk_buf_consume(&b, 10);
    CHECK_EQ(0, msk_buf_len(&b));
    CHECK_EQ(0, msk_buf_append(&b, NULL, 0));
    msk_buf_free(&b);
    msk_buf_free(&b);                  /* freeing twice is harmless */
    CHECK(b.data == NULL);
    return 0;
}

static int test_append_consume(void)
{
    msk_buf b;

    msk_buf_init(&b);
    CHECK_EQ(0, msk_buf_append(&b, "hello ", 6));
    CHECK_EQ(0, msk_buf_append(&b, "world", 5));
    CHECK_EQ(11, msk_buf_len(&b));
    CHECK(memcmp(msk_buf_peek(&b), "hello world", 11) == 0);
    msk_buf_consume(&b, 6);
    CHECK_EQ(5, msk_buf_len(&b));
    CHECK(memcmp(msk_buf_peek(&b), "world", 5) == 0);
    msk_buf_consume(&b, 5);
    CHECK_EQ(0, msk_buf_len(&b));
    CHECK_EQ(0, b.start);              /* emptied buffers rewind */
    CHECK_EQ(0, msk_buf_append(&b, "x", 1));
    CHECK(memcmp(msk_buf_peek(&b), "x", 1) == 0);
    msk_buf_consume(&b, 100);          /* more than held: empties */
    CHECK_EQ(0, msk_buf_len(&b));
    msk_buf_free(&b);
    return 0;
}

static int test_reserve_commit(void)
{
    msk_buf b = MSK_BUF_INIT;
    char *p;

    p = msk_buf_reserve(&b, 0);
    CHECK(p != NULL);
    p = msk_buf_reserve(&b, 10);
    CHECK(p != NULL);
    CHECK(b.cap - b.end >= 10);
    memcpy(p, "abcdefghij", 10);
    msk_buf_commit(&b, 4);             /* wrote 10, keep only 4 */
    CHECK_EQ(4, msk_buf_len(&b));
    CHECK(memcmp(msk_buf_peek(&b), "abcd", 4) == 0);
    p = msk_buf_reserve(&b, 3);
    CHECK(p == b.data + b.end);
    memcpy(p, "XYZ", 3);
    msk_buf_commit(&b, 3);
    CHECK(memcmp(msk_buf_peek(&b), "abcdXYZ", 7) == 0);
    msk_buf_commit(&b, 0);
    CHECK_EQ(7, msk_buf_len(&b));
    msk_buf_free(&b);
    return 0;
}

static int test_reserve_overflow(void)
{
    msk_buf b = MSK_BUF_INIT;
    char *old;
    size_t cap;

    CHECK_EQ(0, msk_buf_append(&b, "keep me", 7));
    msk_buf_consume(&b, 2);
    old = b.data;
    cap = b.cap;
    CHECK(msk_buf_reserve(&b, SIZE_MAX) == NULL);
    CHECK(msk_buf_reserve(&b, SIZE_MAX - 3) == NULL);
    CHECK(msk_buf_reserve(&b, (size_t)PTRDIFF_MAX) == NULL);
    CHECK(b.data == old);
    CHECK_EQ(cap, b.cap);
    CHECK_EQ(5, msk_buf_len(&b));
    CHECK(memcmp(msk_buf_peek(&b), "ep me", 5) == 0);
    msk_buf_free(&b);
    return 0;
}

static int test_find_eol(void)
{
    msk_buf b = MSK_BUF_INIT;

    CHECK_EQ(0, msk_buf_append(&b, "abc\ndef\r\nxyz", 12));
    CHECK_EQ(3, msk_buf_find_eol(&b, 0));
    CHECK_EQ(3, msk_buf_find_eol(&b, 3));
    CHECK_EQ(8, msk_buf_find_eol(&b, 4));
    CHECK_EQ(-1, msk_buf_find_eol(&b, 9));
    CHECK_EQ(-1, msk_buf_find_eol(&b, 12));
    CHECK_EQ(-1, msk_buf_find_eol(&b, 1000));
    msk_buf_consume(&b, 4);            /* offsets follow the read offset */
    CHECK_EQ(4, msk_buf_find_eol(&b, 0));
    msk_buf_consume(&b, 5);
    CHECK_EQ(-1, msk_buf_find_eol(&b, 0));
    CHECK_EQ(0, msk_buf_append(&b, "\n", 1));
    CHECK_EQ(3, msk_buf_find_eol(&b, 0));
    msk_buf_free(&b);
    return 0;
}

static int test_big_growth(void)
{
    enum { CHUNK = 4093, TOTAL = 16 * 1024 * 1024 };
    msk_buf b = MSK_BUF_INIT;
    unsigned char chunk[CHUNK];
    size_t i, n = 0, reallocs = 0, cap = 0;
    const unsigned char *p;

    for (i = 0; i < CHUNK; i++)
        chunk[i] = (unsigned char)(i * 31 + 7);
    while (n < TOTAL) {
        CHECK_EQ(0, msk_buf_append(&b, chunk, CHUNK));
        n += CHUNK;
        if (b.cap != cap) {
            cap = b.cap;
            reallocs++;
        }
    }
    CHECK_EQ(n, msk_buf_len(&b));
    CHECK(reallocs < 40);              /* geometric, not linear */
    CHECK(b.cap < 2 * n + 1024);
    p = (const unsigned char *)msk_buf_peek(&b);
    for (i = 0; i < n; i++)
        if (p[i] != chunk[i % CHUNK])
            break;
    CHECK_EQ(n, i);
    msk_buf_free(&b);
    return 0;
}

static int test_compaction(void)
{
    msk_buf b = MSK_BUF_INIT;
    char data[200];
    char *old;
    size_t cap, i;

    for (i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    CHECK_EQ(0, msk_buf_append(&b, data, 64));
    cap = b.cap;
    old = b.data;
    CHECK(b.end == cap);                 /* full at BUF_MIN_CAP */
    msk_buf_consume(&b, 60);             /* 4 left, 60 dead in front */
    CHECK_EQ(0, msk_buf_append(&b, data + 64, 20));
    CHECK(b.data == old);                /* compacted, not grown */
    CHECK_EQ(cap, b.cap);
    CHECK_EQ(0, b.start);
    CHECK_EQ(24, msk_buf_len(&b));
    CHECK(memcmp(msk_buf_peek(&b), data + 60, 24) == 0);

    /* A small dead prefix is not worth moving the bulk: grow instead. */
    CHECK_EQ(0, msk_buf_append(&b, data, cap - b.end));
    msk_buf_consume(&b, 1);
    CHECK_EQ(0, msk_buf_append(&b, "!", 1));
    CHECK(b.cap > cap);
    CHECK_EQ(0, b.start);                /* growth compacts as it goes */
    CHECK(memcmp(msk_buf_peek(&b), data + 61, 23) == 0);
    CHECK_EQ('!', msk_buf_peek(&b)[msk_buf_len(&b) - 1]);
    msk_buf_free(&b);
    return 0;
}

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
    /* xorshift32: deterministic, so a failure replays exactly. */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static int test_random_against_reference(void)
{
    enum { REF_MAX = 1 << 20, STEPS = 200000 };
    msk_buf b = MSK_BUF_INIT;
    char *ref = malloc(REF_MAX);
    size_t rlen = 0;
    int step;

    CHECK(ref != NULL);
    for (step = 0; step < STEPS; step++) {
        uint32_t op = rnd() % 10;
        size_t n = rnd() % 700, i;

        if (op < 4 && rlen + n <= REF_MAX) {            /* append */
            char tmp[700];
            for (i = 0; i < n; i++)
                tmp[i] = (char)(rnd() % 16 == 0 ? '\n' : 'a' + rnd() % 26);
            CHECK_EQ(0, msk_buf_append(&b, tmp, n));
            memcpy(ref + rlen, tmp, n);
            rlen += n;
        } else if (op < 6 && rlen + n <= REF_MAX) {     /* reserve+commit */
            size_t w = n ? rnd() % (n + 1) : 0;
            char *p = msk_buf_reserve(&b, n);
            CHECK(p != NULL);
            CHECK(b.cap - b.end >= n);
            for (i = 0; i < w; i++)
                p[i] = ref[rlen + i] = (char)('A' + (step + i) % 26);
            msk_buf_commit(&b, w);
            rlen += w;
        } else if (op < 9) {                            /* consume */
            size_t c = n > rlen ? rlen : n;
            if (rnd() % 50 == 0)
                c = rlen;
            msk_buf_consume(&b, c);
            memmove(ref, ref + c, rlen - c);
            rlen -= c;
        } else {                                        /* find_eol */
            size_t from = rlen ? rnd() % (rlen + 2) : 0;
            ssize_t want = -1;
            if (from < rlen) {
                char *nl = memchr(ref + from, '\n', rlen - from);
                want = nl ? nl - ref : -1;
            }
            CHECK_EQ(want, msk_buf_find_eol(&b, from));
        }
        CHECK(b.start <= b.end && b.end <= b.cap);
        CHECK_EQ(rlen, msk_buf_len(&b));
        if (step % 97 == 0 || rlen < 64)
            CHECK(memcmp(msk_buf_peek(&b), ref, rlen) == 0);
    }
    CHECK(memcmp(msk_buf_peek(&b), ref, rlen) == 0);
    /* Steady state must not balloon: capacity stays near the peak size. */
    CHECK(b.cap <= 4 * REF_MAX);
    msk_buf_free(&b);
    free(ref);
    return 0;
}

TEST_MAIN(
    TEST(test_empty),
    TEST(test_append_consume),
    TEST(test_reserve_commit),
    TEST(test_reserve_overflow),
    TEST(test_find_eol),
    TEST(test_big_growth),
    TEST(test_compaction),
    TEST(test_random_against_reference)
)
