/*
 * watch_test.c -- file watches on real files in a mkdtemp directory: a
 * write in place, a temp file renamed over the watched one, creation and
 * removal, a sibling that must not fire, at most one call per pass per
 * path, and freeing the watch from its own callback. Every test runs
 * twice: with inotify and with the mtime-polling fallback.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msk.h"
#include "test.h"

static char dir[64];
static char path_a[128], path_b[128], path_other[128], path_tmp[128];

static int hits_a, hits_b, pass_a, pass_b, max_per_pass;
static msk_watch *free_me;

static void on_change(msk_watch *w, const char *path, void *udata)
{
    (void)w;
    (void)udata;
    if (strcmp(path, path_a) == 0) {
        hits_a++;
        pass_a++;
    } else if (strcmp(path, path_b) == 0) {
        hits_b++;
        pass_b++;
    }
    if (pass_a > max_per_pass)
        max_per_pass = pass_a;
    if (pass_b > max_per_pass)
        max_per_pass = pass_b;
    if (free_me != NULL) {
        msk_watch_free(free_me);
        free_me = NULL;
    }
}

static int setup(void)
{
    strcpy(dir, "/tmp/msk_watch_XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path_a, sizeof path_a, "%s/a.lua", dir);
    snprintf(path_b, sizeof path_b, "%s/b.lua", dir);
    snprintf(path_other, sizeof path_other, "%s/other.lua", dir);
    snprintf(path_tmp, sizeof path_tmp, "%s/.a.lua.tmp", dir);
    hits_a = hits_b = pass_a = pass_b = max_per_pass = 0;
    free_me = NULL;
    return 0;
}

static void teardown(void)
{
    unlink(path_a);
    unlink(path_b);
    unlink(path_other);
    unlink(path_tmp);
    rmdir(dir);
}

static int put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Step until *counter is non-zero or about two seconds passed, tracking
 * calls per pass. */
static int step_until(msk_loop *loop, int *counter)
{
    int i;

    for (i = 0; i < 200 && *counter == 0; i++) {
        pass_a = pass_b = 0;
        if (msk_loop_step(loop, 10) < 0)
            return -1;
    }
    return *counter;
}

/* Let events settle for ms, counting calls per pass. */
static void settle(msk_loop *loop, int ms)
{
    int64_t end = msk_clock_ms() + ms;

    while (msk_clock_ms() < end) {
        pass_a = pass_b = 0;
        msk_loop_step(loop, 10);
    }
}

static int open_watch(msk_loop **loop, msk_watch **w, int force_poll)
{
    if (setup() != 0)
        return -1;
    if (msk_loop_new(loop, NULL) != 0)
        return -1;
    return msk_watch_new(w, *loop, force_poll, 20, on_change, NULL);
}

static int write_in_place(int force_poll)
{
    msk_loop *loop;
    msk_watch *w;

    CHECK_EQ(0, open_watch(&loop, &w, force_poll));
    CHECK_EQ(0, put(path_a, "return 1\n"));
    CHECK_EQ(0, msk_watch_add(w, path_a));
    CHECK_EQ(0, msk_watch_add(w, path_a));   /* twice: a no-op */
    settle(loop, 60);
    hits_a = 0;
    CHECK_EQ(0, put(path_a, "return 22\n"));
    CHECK(step_until(loop, &hits_a) >= 1);
    settle(loop, 60);
    CHECK(hits_a >= 1);
    CHECK_EQ(1, max_per_pass);
    CHECK_EQ(0, hits_b);
    msk_watch_free(w);
    msk_loop_free(loop);
    teardown();
    return 0;
}

static int rename_over(int force_poll)
{
    msk_loop *loop;
    msk_watch *w;

    CHECK_EQ(0, open_watch(&loop, &w, force_poll));
    CHECK_EQ(0, put(path_a, "return 1\n"));
    CHECK_EQ(0, msk_watch_add(w, path_a));
    settle(loop, 60);
    hits_a = 0;
    CHECK_EQ(0, put(path_tmp, "return 333\n"));
    CHECK_EQ(0, rename(path_tmp, path_a));
    CHECK(step_until(loop, &hits_a) >= 1);
    /* The watch survives the inode change: a second replacement too. */
    settle(loop, 60);
    hits_a = 0;
    CHECK_EQ(0, put(path_tmp, "return 4444\n"));
    CHECK_EQ(0, rename(path_tmp, path_a));
    CHECK(step_until(loop, &hits_a) >= 1);
    CHECK_EQ(1, max_per_pass);
    msk_watch_free(w);
    msk_loop_free(loop);
    teardown();
    return 0;
}

static int create_and_delete(int force_poll)
{
    msk_loop *loop;
    msk_watch *w;

    CHECK_EQ(0, open_watch(&loop, &w, force_poll));
    CHECK_EQ(0, msk_watch_add(w, path_b));   /* does not exist yet */
    settle(loop, 40);
    CHECK_EQ(0, hits_b);
    CHECK_EQ(0, put(path_b, "x\n"));
    CHECK(step_until(loop, &hits_b) >= 1);
    settle(loop, 60);
    hits_b = 0;
    CHECK_EQ(0, unlink(path_b));
    CHECK(step_until(loop, &hits_b) >= 1);
    msk_watch_free(w);
    msk_loop_free(loop);
    teardown();
    return 0;
}

static int sibling_ignored(int force_poll)
{
    msk_loop *loop;
    msk_watch *w;

    CHECK_EQ(0, open_watch(&loop, &w, force_poll));
    CHECK_EQ(0, put(path_a, "a\n"));
    CHECK_EQ(0, msk_watch_add(w, path_a));
    settle(loop, 40);
    hits_a = 0;
    CHECK_EQ(0, put(path_other, "other\n"));
    CHECK_EQ(0, put(path_tmp, "tmp\n"));
    settle(loop, 120);
    CHECK_EQ(0, hits_a);
    CHECK_EQ(0, hits_b);
    msk_watch_free(w);
    msk_loop_free(loop);
    teardown();
    return 0;
}

/* Many changes to two paths before the loop looks: each path's callback
 * runs at most once in any pass. */
static int coalesce(int force_poll)
{
    msk_loop *loop;
    msk_watch *w;
    int i;
    char text[32];

    CHECK_EQ(0, open_watch(&loop, &w, force_poll));
    CHECK_EQ(0, put(path_a, "a\n"));
    CHECK_EQ(0, put(path_b, "b\n"));
    CHECK_EQ(0, msk_watch_add(w, path_a));
    CHECK_EQ(0, msk_watch_add(w, path_b));
    settle(loop, 40);
    hits_a = hits_b = max_per_pass = 0;
    for (i = 0; i < 20; i++) {
        snprintf(text, sizeof text, "v%d\n", i * 1000);
        CHECK_EQ(0, put(path_a, text));
        CHECK_EQ(0, put(path_b, text));
    }
    if (!force_poll) {
        /* All events are queued by now: one pass delivers both, once. */
        pass_a = pass_b = 0;
        CHECK(msk_loop_step(loop, 1000) >= 1);
        CHECK_EQ(1, hits_a);
        CHECK_EQ(1, hits_b);
    }
    CHECK(step_until(loop, &hits_a) >= 1);
    CHECK(step_until(loop, &hits_b) >= 1);
    settle(loop, 60);
    CHECK_EQ(1, max_per_pass);
    msk_watch_free(w);
    msk_loop_free(loop);
    teardown();
    return 0;
}

static int free_in_callback(int force_poll)
{
    msk_loop *loop;
    msk_watch *w;

    CHECK_EQ(0, open_watch(&loop, &w, force_poll));
    CHECK_EQ(0, put(path_a, "a\n"));
    CHECK_EQ(0, put(path_b, "b\n"));
    CHECK_EQ(0, msk_watch_add(w, path_a));
    CHECK_EQ(0, msk_watch_add(w, path_b));
    settle(loop, 40);
    hits_a = hits_b = 0;
    free_me = w;
    CHECK_EQ(0, put(path_a, "aaaa\n"));
    CHECK_EQ(0, put(path_b, "bbbb\n"));
    /* The first call frees the watch; nothing runs after it, and with
     * nothing left the loop runs dry. */
    CHECK_EQ(0, msk_loop_run(loop));
    CHECK_EQ(1, hits_a + hits_b);
    CHECK(free_me == NULL);
    CHECK_EQ(0, msk_timer_count(loop));
    msk_loop_free(loop);
    teardown();
    return 0;
}

static int test_write_in_place_inotify(void) { return write_in_place(0); }
static int test_write_in_place_poll(void) { return write_in_place(1); }
static int test_rename_over_inotify(void) { return rename_over(0); }
static int test_rename_over_poll(void) { return rename_over(1); }
static int test_create_delete_inotify(void) { return create_and_delete(0); }
static int test_create_delete_poll(void) { return create_and_delete(1); }
static int test_sibling_ignored_inotify(void) { return sibling_ignored(0); }
static int test_sibling_ignored_poll(void) { return sibling_ignored(1); }
static int test_coalesce_inotify(void) { return coalesce(0); }
static int test_coalesce_poll(void) { return coalesce(1); }
static int test_free_in_callback_inotify(void) { return free_in_callback(0); }
static int test_free_in_callback_poll(void) { return free_in_callback(1); }

static int test_bad_paths(void)
{
    msk_loop *loop;
    msk_watch *w;

    CHECK_EQ(0, msk_loop_new(&loop, NULL));
    CHECK_EQ(-EINVAL, msk_watch_new(&w, loop, 0, 0, NULL, NULL));
    CHECK_EQ(0, msk_watch_new(&w, loop, 0, 0, on_change, NULL));
    CHECK_EQ(-EINVAL, msk_watch_add(w, ""));
    CHECK_EQ(-EINVAL, msk_watch_add(w, "/tmp/"));
    CHECK_EQ(-ENOENT, msk_watch_add(w, "/nonexistent-msk-dir/x.lua"));
    msk_watch_free(w);
    msk_watch_free(NULL);
    msk_loop_free(loop);
    return 0;
}

TEST_MAIN(TEST(test_write_in_place_inotify),
          TEST(test_write_in_place_poll),
          TEST(test_rename_over_inotify),
          TEST(test_rename_over_poll),
          TEST(test_create_delete_inotify),
          TEST(test_create_delete_poll),
          TEST(test_sibling_ignored_inotify),
          TEST(test_sibling_ignored_poll),
          TEST(test_coalesce_inotify),
          TEST(test_coalesce_poll),
          TEST(test_free_in_callback_inotify),
          TEST(test_free_in_callback_poll),
          TEST(test_bad_paths))
