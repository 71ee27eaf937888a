/*
 * file.c -- regular files and directories by descriptor, for servers that
 * store what clients send.
 *
 * Everything is relative to a directory handle and takes one plain name
 * (no '/', not "." or ".."), opened with O_NOFOLLOW | O_CLOEXEC: a caller
 * that checks nothing still cannot reach outside the directory, and a
 * symlink planted in it leads nowhere (ELOOP). Built on openat, pread,
 * pwrite, fsync, renameat2, unlinkat, fstatat, fstatvfs, fdopendir and the
 * user xattrs. Regular files are not pollable, so each call here blocks the
 * thread for one disk operation; callers keep the operations small (a few
 * hundred KiB) and start writeback early (msk_file_writeback) so the final
 * fsync is short. EINTR is retried; errors are -errno, never printed.
 * No thread pool and no io_uring here: see docs/upload.md for the stall
 * this leaves and how it was measured.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "msk.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

int msk_file_checkname(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return -EINVAL;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    if (strchr(name, '/') != NULL)
        return -EINVAL;
    if (strlen(name) > 255)
        return -ENAMETOOLONG;
    return 0;
}

int msk_file_opendir(const char *path, unsigned create_mode)
{
    int fd;

    if (create_mode != 0 && mkdir(path, (mode_t)create_mode) < 0 &&
        errno != EEXIST)
        return -errno;
    do {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int msk_file_open(int dirfd, const char *name, int flags, unsigned mode)
{
    int rc = msk_file_checkname(name), fd;

    if (rc < 0)
        return rc;
    /* O_NOFOLLOW refuses a symlink at name itself; the single-component
     * rule above leaves no other place for one. */
    flags |= O_NOFOLLOW | O_CLOEXEC;
    do {
        fd = openat(dirfd, name, flags, (mode_t)mode);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int msk_file_close(int fd)
{
    /* Never retried on EINTR: on Linux the fd is gone either way. */
    if (close(fd) < 0 && errno != EINTR)
        return -errno;
    return 0;
}

ssize_t msk_file_pread(int fd, void *buf, size_t len, int64_t off)
{
    ssize_t n;

    if (off < 0)
        return -EINVAL;
    while ((n = pread(fd, buf, len, (off_t)off)) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return n;
}

ssize_t msk_file_pwrite(int fd, const void *buf, size_t len, int64_t off)
{
    const char *p = buf;
    size_t done = 0;

    if (off < 0)
        return -EINVAL;
    /* All or an error: a short write here is the disk filling up, and the
     * next call reports it as ENOSPC. */
    while (done < len) {
        ssize_t n = pwrite(fd, p + done, len - done, (off_t)off + done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int msk_file_sync(int fd, int data_only)
{
    int rc;

    do {
        rc = data_only ? fdatasync(fd) : fsync(fd);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

int msk_file_writeback(int fd, int64_t off, int64_t len)
{
    /* Start writing the dirty pages of the range without waiting for
     * them, so the fsync at commit finds little left to do and stalls the
     * loop for less. Only a hint: where the call is missing, skip it. */
#ifdef SYNC_FILE_RANGE_WRITE
    if (sync_file_range(fd, (off_t)off, (off_t)len,
                        SYNC_FILE_RANGE_WRITE) < 0 &&
        errno != ENOSYS && errno != EINVAL && errno != ESPIPE)
        return -errno;
#else
    (void)fd; (void)off; (void)len;
#endif
    return 0;
}

int msk_file_truncate(int fd, int64_t len)
{
    int rc;

    do {
        rc = ftruncate(fd, (off_t)len);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static void fill_stat(msk_file_info *st, const struct stat *sb)
{
    st->size = (int64_t)sb->st_size;
    st->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 +
                   sb->st_mtim.tv_nsec;
    st->dev = (uint64_t)sb->st_dev;
    st->ino = (uint64_t)sb->st_ino;
    st->mode = (unsigned)sb->st_mode;
}

int msk_file_stat(int dirfd, const char *name, msk_file_info *st)
{
    struct stat sb;
    int rc;

    if (name == NULL) {
        rc = fstat(dirfd, &sb);
    } else {
        if ((rc = msk_file_checkname(name)) < 0)
            return rc;
        rc = fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW);
    }
    if (rc < 0)
        return -errno;
    fill_stat(st, &sb);
    return 0;
}

int msk_file_rename(int dirfd, const char *from, const char *to,
                    int noreplace)
{
    int rc;

    if ((rc = msk_file_checkname(from)) < 0 ||
        (rc = msk_file_checkname(to)) < 0)
        return rc;
    if (!noreplace)
        return renameat(dirfd, from, dirfd, to) < 0 ? -errno : 0;
#ifdef SYS_renameat2
    if (syscall(SYS_renameat2, dirfd, from, dirfd, to,
                RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return -errno;
#endif
    /* No RENAME_NOREPLACE on this file system: link(2) also refuses an
     * existing target, atomically; then drop the old name. */
    if (linkat(dirfd, from, dirfd, to, 0) < 0)
        return -errno;
    if (unlinkat(dirfd, from, 0) < 0)
        return -errno;
    return 0;
}

int msk_file_unlink(int dirfd, const char *name)
{
    int rc = msk_file_checkname(name);

    if (rc < 0)
        return rc;
    return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

int msk_file_space(int fd, uint64_t *avail, uint64_t *total)
{
    struct statvfs sv;

    if (fstatvfs(fd, &sv) < 0)
        return -errno;
    if (avail != NULL)
        *avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (total != NULL)
        *total = (uint64_t)sv.f_blocks * sv.f_frsize;
    return 0;
}

int msk_file_listdir(int dirfd, msk_file_dir_fn *fn, void *udata)
{
    /* A fresh descriptor for the same directory: fdopendir takes over the
     * fd and its offset, and the caller's handle must keep neither. */
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *e;
    int rc = 0;

    if (fd < 0)
        return -errno;
    if ((d = fdopendir(fd)) == NULL) {
        rc = -errno;
        close(fd);
        return rc;
    }
    for (;;) {
        errno = 0;
        if ((e = readdir(d)) == NULL) {
            rc = errno ? -errno : 0;
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if ((rc = fn(e->d_name, udata)) != 0)
            break;
    }
    closedir(d);
    return rc;
}

int msk_file_setxattr(int fd, const char *key, const void *val, size_t len)
{
    return fsetxattr(fd, key, val, len, 0) < 0 ? -errno : 0;
}

ssize_t msk_file_getxattr(int fd, const char *key, void *buf, size_t len)
{
    ssize_t n = fgetxattr(fd, key, buf, len);
    return n < 0 ? -errno : n;
}
