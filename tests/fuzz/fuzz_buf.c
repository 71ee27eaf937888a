/*
 * fuzz_buf.c -- libFuzzer target for core/buf.c, the byte buffer under
 * every line splitter.
 *
 * Interprets the input as a program of appends, consumes, reserves and
 * end-of-line searches, runs it on an msk_buf and on a plain reference
 * array, and aborts at the first difference.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msk_buf b = MSK_BUF_INIT;
    char *ref = malloc(size + 1);
    size_t reflen = 0;
    size_t i = 0;
    if (ref == NULL)
        return 0;
    while (i < size) {
        uint8_t op = data[i++];
        size_t n = op >> 2;
        if (n > size - i)
            n = size - i;
        switch (op & 3) {
        case 0:                       /* append n bytes of input */
            if (msk_buf_append(&b, data + i, n) != 0)
                abort();
            memcpy(ref + reflen, data + i, n);
            reflen += n;
            i += n;
            break;
        case 1:                       /* consume up to n */
            if (n > reflen)
                n = reflen;
            msk_buf_consume(&b, n);
            memmove(ref, ref + n, reflen - n);
            reflen -= n;
            break;
        case 2: {                     /* reserve + commit n */
            char *p = msk_buf_reserve(&b, n);
            if (p == NULL)
                abort();
            memcpy(p, data + i, n);
            msk_buf_commit(&b, n);
            memcpy(ref + reflen, data + i, n);
            reflen += n;
            i += n;
            break;
        }
        default: {                    /* find the end of line from n */
            ssize_t got = msk_buf_find_eol(&b, n);
            ssize_t want = -1;
            for (size_t k = n; k < reflen; k++)
                if (ref[k] == '\n') {
                    want = (ssize_t)k;
                    break;
                }
            if (got != want)
                abort();
        }
        }
        if (msk_buf_len(&b) != reflen ||
            (reflen && memcmp(msk_buf_peek(&b), ref, reflen) != 0))
            abort();
    }
    msk_buf_free(&b);
    free(ref);
    return 0;
}
