/*
 * test.h -- the smallest C test harness: CHECK macros and a runner.
 *
 * Each test is a static int function returning 0 on success; a failed
 * CHECK prints file:line and the expression and returns 1 from the test.
 * TEST_MAIN runs the listed tests in order and prints "N passed, N failed".
 * Tests free everything they make, because the suite also runs under ASan.
 */
#ifndef MSK_TEST_H
#define MSK_TEST_H

#include <stdio.h>
#include <string.h>

#define CHECK(expr) do {                                                   \
        if (!(expr)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n",                  \
                    __FILE__, __LINE__, #expr);                            \
            return 1;                                                      \
        }                                                                  \
    } while (0)

#define CHECK_EQ(want, got) do {                                           \
        long long w_ = (long long)(want), g_ = (long long)(got);           \
        if (w_ != g_) {                                                    \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s "            \
                    "(want %lld, got %lld)\n", __FILE__, __LINE__,         \
                    #want, #got, w_, g_);                                  \
            return 1;                                                      \
        }                                                                  \
    } while (0)

#define CHECK_STR(want, got) do {                                          \
        const char *w_ = (want), *g_ = (got);                              \
        if (g_ == NULL || strcmp(w_, g_) != 0) {                           \
            fprintf(stderr, "%s:%d: CHECK_STR failed: want \"%s\", "       \
                    "got \"%s\"\n", __FILE__, __LINE__, w_,                \
                    g_ ? g_ : "(null)");                                   \
            return 1;                                                      \
        }                                                                  \
    } while (0)

typedef struct test_case { const char *name; int (*fn)(void); } test_case;

#define TEST(fn) { #fn, fn }

static inline int test_run(const test_case *tests)
{
    int passed = 0, failed = 0;
    for (const test_case *t = tests; t->name != NULL; t++) {
        int rc = t->fn();
        printf("%s %s\n", rc == 0 ? "ok  " : "FAIL", t->name);
        fflush(stdout);
        if (rc == 0)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

#define TEST_MAIN(...)                                                     \
    int main(void)                                                         \
    {                                                                      \
        static const test_case tests_[] = { __VA_ARGS__, { NULL, NULL } }; \
        return test_run(tests_);                                           \
    }

#endif /* MSK_TEST_H */
