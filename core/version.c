/*
 * version.c -- the library's version at run time.
 *
 * MSK_VERSION in msk.h is what a host was compiled against; these report
 * what it is linked with, so a host loading libmoonsock.so can tell the
 * two apart (as zlibVersion() does against ZLIB_VERSION).
 */
#include "msk.h"

const char *msk_version(void)
{
    return MSK_VERSION;
}

int msk_version_num(void)
{
    return MSK_VERSION_NUM;
}
