/*
 * file_test.c -- tests for msk_file_* (core/file.c).
 *
 * In a fresh directory under /tmp: names that are not one component are
 * refused before any system call; open, pwrite, pread, truncate, sync and
 * writeback on a regular file; a symlink at the name is never followed;
 * rename with and without noreplace; stat without following; listdir;
 * free space; xattrs where the file system has them. Disk-full is not
 * simulated here (tests/blackbox/test_upload_disk.py does it on tmpfs).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msk.h"
#include "test.h"

static char dirpath[64];

static int make_dir(void)
{
    snprintf(dirpath, sizeof dirpath, "/tmp/msk-file-test-XXXXXX");
    if (mkdtemp(dirpath) == NULL)
        return -1;
    return msk_file_opendir(dirpath, 0);
}

static int count_fn(const char *name, void *udata)
{
    (void)name;
    (*(int *)udata)++;
    return 0;
}

static int unlink_fn(const char *name, void *udata)
{
    msk_file_unlink(*(int *)udata, name);
    return 0;
}

static void remove_dir(int dfd)
{
    msk_file_listdir(dfd, unlink_fn, &dfd);
    msk_file_close(dfd);
    rmdir(dirpath);
}

static int test_names(void)
{
    char longname[300];

    CHECK_EQ(0, msk_file_checkname("a"));
    CHECK_EQ(0, msk_file_checkname("with space"));
    CHECK_EQ(-EINVAL, msk_file_checkname(""));
    CHECK_EQ(-EINVAL, msk_file_checkname("."));
    CHECK_EQ(-EINVAL, msk_file_checkname(".."));
    CHECK_EQ(-EINVAL, msk_file_checkname("a/b"));
    CHECK_EQ(-EINVAL, msk_file_checkname("/etc/passwd"));
    CHECK_EQ(-EINVAL, msk_file_checkname(NULL));
    memset(longname, 'x', 256);
    longname[256] = '\0';
    CHECK_EQ(-ENAMETOOLONG, msk_file_checkname(longname));
    longname[255] = '\0';
    CHECK_EQ(0, msk_file_checkname(longname));
    CHECK_EQ(-EINVAL, msk_file_open(AT_FDCWD, "../x", O_RDONLY, 0));
    return 0;
}

static int test_read_write(void)
{
    int dfd = make_dir();
    char buf[32];
    msk_file_info st;

    CHECK(dfd >= 0);
    int fd = msk_file_open(dfd, "f", O_RDWR | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(-EEXIST, msk_file_open(dfd, "f", O_RDWR | O_CREAT | O_EXCL,
                                    0644));
    CHECK_EQ(5, msk_file_pwrite(fd, "hello", 5, 0));
    CHECK_EQ(6, msk_file_pwrite(fd, " world", 6, 5));
    CHECK_EQ(5, msk_file_pread(fd, buf, 5, 6));
    CHECK(memcmp(buf, "world", 5) == 0);
    CHECK_EQ(0, msk_file_pread(fd, buf, 5, 100));
    CHECK_EQ(-EINVAL, msk_file_pread(fd, buf, 5, -1));
    CHECK_EQ(0, msk_file_writeback(fd, 0, 11));
    CHECK_EQ(0, msk_file_sync(fd, 0));
    CHECK_EQ(0, msk_file_sync(fd, 1));
    CHECK_EQ(0, msk_file_stat(fd, NULL, &st));
    CHECK_EQ(11, st.size);
    CHECK(S_ISREG(st.mode));
    CHECK_EQ(0, msk_file_truncate(fd, 3));
    CHECK_EQ(0, msk_file_stat(dfd, "f", &st));
    CHECK_EQ(3, st.size);
    CHECK(st.mtime_ns > 0);
    CHECK_EQ(0, msk_file_close(fd));
    CHECK_EQ(0, msk_file_sync(dfd, 0));      /* a directory syncs too */
    remove_dir(dfd);
    return 0;
}

static int test_symlink(void)
{
    int dfd = make_dir();
    char link[128];
    msk_file_info st;

    CHECK(dfd >= 0);
    snprintf(link, sizeof link, "%s/evil", dirpath);
    CHECK_EQ(0, symlink("/etc/passwd", link));
    CHECK_EQ(-ELOOP, msk_file_open(dfd, "evil", O_RDONLY, 0));
    CHECK_EQ(-ELOOP, msk_file_open(dfd, "evil", O_WRONLY | O_TRUNC, 0));
    CHECK_EQ(0, msk_file_stat(dfd, "evil", &st));
    CHECK(S_ISLNK(st.mode));
    remove_dir(dfd);
    return 0;
}

static int test_rename_list(void)
{
    int dfd = make_dir(), n = 0;
    uint64_t avail = 0, total = 0;
    char buf[8];

    CHECK(dfd >= 0);
    int a = msk_file_open(dfd, "a", O_WRONLY | O_CREAT, 0644);
    int b = msk_file_open(dfd, "b", O_WRONLY | O_CREAT, 0644);
    CHECK(a >= 0 && b >= 0);
    CHECK_EQ(1, msk_file_pwrite(a, "A", 1, 0));
    CHECK_EQ(1, msk_file_pwrite(b, "B", 1, 0));
    msk_file_close(a);
    msk_file_close(b);
    CHECK_EQ(-EEXIST, msk_file_rename(dfd, "a", "b", 1));
    CHECK_EQ(-EINVAL, msk_file_rename(dfd, "a", "../b", 0));
    CHECK_EQ(0, msk_file_rename(dfd, "a", "c", 1));
    CHECK_EQ(0, msk_file_rename(dfd, "c", "b", 0));
    CHECK_EQ(0, msk_file_listdir(dfd, count_fn, &n));
    CHECK_EQ(1, n);
    int fd = msk_file_open(dfd, "b", O_RDONLY, 0);
    CHECK(fd >= 0);
    CHECK_EQ(1, msk_file_pread(fd, buf, sizeof buf, 0));
    CHECK_EQ('A', buf[0]);
    ssize_t x = msk_file_getxattr(fd, "user.msk.none", buf, sizeof buf);
    CHECK(x == -ENODATA || x == -ENOTSUP);
    msk_file_close(fd);
    CHECK_EQ(0, msk_file_space(dfd, &avail, &total));
    CHECK(total > 0 && avail <= total);
    CHECK_EQ(-ENOENT, msk_file_unlink(dfd, "a"));
    CHECK_EQ(0, msk_file_unlink(dfd, "b"));
    remove_dir(dfd);
    return 0;
}

TEST_MAIN(TEST(test_names), TEST(test_read_write), TEST(test_symlink),
          TEST(test_rename_list))
