/* testutil.c - scratch directories for the unit tests that write files. */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

char *tmpdir;

int
tmpdir_setup(void **state)
{
	(void)state;
	tmpdir = g_dir_make_tmp("imapfs-unit.XXXXXX", NULL);
	return tmpdir == NULL ? -1 : 0;
}

int
tmpdir_teardown(void **state)
{
	(void)state;
	g_assert_true(remove_tree(tmpdir));
	g_clear_pointer(&tmpdir, g_free);
	return 0;
}

gboolean
remove_tree(const char *path)
{
	struct stat st;
	GDir *d;
	const char *name;
	gboolean ok = TRUE;

	if (lstat(path, &st) != 0)
		return FALSE;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) == 0;
	d = g_dir_open(path, 0, NULL);
	if (d == NULL)
		return FALSE;
	while ((name = g_dir_read_name(d)) != NULL) {
		g_autofree char *child = g_build_filename(path, name, NULL);

		ok = remove_tree(child) && ok;
	}
	g_dir_close(d);
	return rmdir(path) == 0 && ok;
}
