/* testutil.h - scratch directories for the unit tests that write files. */
#ifndef IMAPFS_TESTS_UNIT_TESTUTIL_H
#define IMAPFS_TESTS_UNIT_TESTUTIL_H

#include <glib.h>

/* The directory tmpdir_setup made for the group's tests. */
extern char *tmpdir;

/* CMocka group setup and teardown: a new empty tmpdir, and then tmpdir
 * removed with all in it (the teardown aborts if it cannot be). */
int tmpdir_setup(void **state);
int tmpdir_teardown(void **state);

/* Removes PATH and all below it; symbolic links are removed, never
 * followed. Whether all of it is gone. */
gboolean remove_tree(const char *path);

#endif
