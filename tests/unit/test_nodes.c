/* test_nodes.c - the inode table of the low-level front end: computed
 * message numbers, paths, lookup counts, renames, removals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs/nodes.h"

static void
assert_path(FsNodes *t, guint64 ino, const char *child, const char *want)
{
	g_autofree char *path = NULL;

	assert_int_equal(fs_nodes_path(t, ino, child, &path), 0);
	assert_string_equal(path, want);
}

static void
test_root(void **state)
{
	FsNodes *t = fs_nodes_new();

	(void)state;
	assert_path(t, FS_NODE_ROOT, NULL, "/");
	assert_path(t, FS_NODE_ROOT, "INBOX", "/INBOX");
	assert_int_equal(fs_nodes_count(t), 1);
	/* The root is never forgotten. */
	fs_nodes_forget(t, FS_NODE_ROOT, 1);
	assert_path(t, FS_NODE_ROOT, NULL, "/");
	fs_nodes_free(t);
}

/* A listing of many messages adds no node; each number maps back. */
static void
test_messages_cost_no_node(void **state)
{
	FsNodes *t = fs_nodes_new();
	guint64 inbox = fs_nodes_ref(t, FS_NODE_ROOT, "INBOX", FALSE);
	guint64 sub = fs_nodes_ref(t, inbox, "Sub", FALSE);

	(void)state;
	assert_true(inbox > FS_NODE_ROOT && sub > inbox);
	assert_int_equal(fs_nodes_count(t), 3);
	for (guint32 uid = 1; uid <= 10000; uid++) {
		char name[16];
		guint64 ino;
		snprintf(name, sizeof(name), "%u.eml", uid);
		ino = fs_nodes_ref(t, sub, name, TRUE);
		assert_true(ino & FS_NODE_MESSAGE_BIT);
		assert_int_equal(ino, fs_nodes_ref(t, sub, name, TRUE));
		if (uid % 1000 == 0) {
			g_autofree char *want =
			    g_strdup_printf("/INBOX/Sub/%u.eml", uid);
			assert_path(t, ino, NULL, want);
			assert_int_equal(fs_nodes_find(t, want), ino);
		}
	}
	assert_int_equal(fs_nodes_count(t), 3);
	/* readdir without attributes: the same numbers, nothing counted. */
	assert_int_equal(fs_nodes_peek(t, sub, "77.eml"),
	                 fs_nodes_ref(t, sub, "77.eml", TRUE));
	assert_int_equal(fs_nodes_peek(t, inbox, "Sub"), sub);
	assert_int_equal(fs_nodes_peek(t, inbox, "Other"), 0);
	assert_int_equal(fs_nodes_peek(t, FS_NODE_ROOT, "1.eml"), 0);
	assert_int_equal(fs_nodes_count(t), 3);
	/* The same name in another folder is another file. */
	assert_int_not_equal(fs_nodes_ref(t, inbox, "7.eml", TRUE),
	                     fs_nodes_ref(t, sub, "7.eml", TRUE));
	assert_path(t, G_MAXUINT32 | FS_NODE_MESSAGE_BIT | (sub << 32), NULL,
	            "/INBOX/Sub/4294967295.eml");
	fs_nodes_free(t);
}

/* Names that are not messages, files at the top level, directories named
 * like messages, and files being created get nodes. */
static void
test_what_gets_a_node(void **state)
{
	FsNodes *t = fs_nodes_new();
	guint64 inbox = fs_nodes_ref(t, FS_NODE_ROOT, "INBOX", FALSE);
	guint64 a, b, c, d, e;

	(void)state;
	a = fs_nodes_ref(t, inbox, ".12.eml.AbC123", TRUE);
	b = fs_nodes_ref(t, FS_NODE_ROOT, "12.eml", TRUE);
	c = fs_nodes_ref(t, inbox, "012.eml", TRUE);
	d = fs_nodes_ref(t, inbox, "12.eml", FALSE);
	e = fs_nodes_ref_node(t, inbox, "13.eml");
	for (guint64 *p = (guint64[]){a, b, c, d, e}, i = 0; i < 5; i++)
		assert_false(p[i] & FS_NODE_MESSAGE_BIT);
	assert_int_equal(fs_nodes_count(t), 7);
	/* Once a node holds a name, lookups of it find the node. */
	assert_int_equal(fs_nodes_ref(t, inbox, "13.eml", TRUE), e);
	assert_path(t, e, NULL, "/INBOX/13.eml");
	fs_nodes_free(t);
}

static void
test_unknown_numbers(void **state)
{
	FsNodes *t = fs_nodes_new();
	char *path = (char *)"unchanged";

	(void)state;
	assert_int_equal(fs_nodes_path(t, 999, NULL, &path), -ESTALE);
	assert_null(path);
	/* A message in a directory the table does not know. */
	assert_int_equal(fs_nodes_path(t,
	                               FS_NODE_MESSAGE_BIT | (5ull << 32) | 1,
	                               NULL, &path),
	                 -ESTALE);
	/* UID 0 is no message. */
	assert_int_equal(
	    fs_nodes_path(t,
	                  FS_NODE_MESSAGE_BIT | ((guint64)FS_NODE_ROOT << 32),
	                  NULL, &path),
	    -ESTALE);
	assert_int_equal(fs_nodes_ref(t, 999, "x", FALSE), 0);
	assert_int_equal(fs_nodes_find(t, "/nowhere/1.eml"), 0);
	fs_nodes_free(t);
}

static void
test_forget_frees_at_zero(void **state)
{
	FsNodes *t = fs_nodes_new();
	guint64 dir = fs_nodes_ref(t, FS_NODE_ROOT, "Archive", FALSE);

	(void)state;
	assert_int_equal(fs_nodes_ref(t, FS_NODE_ROOT, "Archive", FALSE), dir);
	assert_int_equal(fs_nodes_ref(t, FS_NODE_ROOT, "Archive", FALSE), dir);
	fs_nodes_forget(t, dir, 2);
	assert_path(t, dir, NULL, "/Archive");
	fs_nodes_forget(t, dir, 1);
	assert_int_equal(fs_nodes_count(t), 1);
	assert_int_equal(fs_nodes_path(t, dir, NULL, &(char *){NULL}), -ESTALE);
	/* Numbers are not reused: a new lookup gets a new one. */
	assert_true(fs_nodes_ref(t, FS_NODE_ROOT, "Archive", FALSE) > dir);
	/* Forgetting a computed number changes nothing. */
	fs_nodes_forget(t, FS_NODE_MESSAGE_BIT | (dir << 32) | 3, 5);
	assert_int_equal(fs_nodes_count(t), 2);
	fs_nodes_free(t);
}

/* A renamed directory takes its messages' paths along; a renamed message
 * keeps its number, which now stands for the new name, and the old name
 * gets another number. */
static void
test_renames(void **state)
{
	FsNodes *t = fs_nodes_new();
	guint64 a = fs_nodes_ref(t, FS_NODE_ROOT, "A", FALSE);
	guint64 b = fs_nodes_ref(t, FS_NODE_ROOT, "B", FALSE);
	guint64 m = fs_nodes_ref(t, a, "5.eml", TRUE);
	guint64 again, tmp;

	(void)state;
	fs_nodes_renamed(t, FS_NODE_ROOT, "A", FS_NODE_ROOT, "Old");
	assert_path(t, m, NULL, "/Old/5.eml");
	assert_int_equal(fs_nodes_find(t, "/Old/5.eml"), m);
	assert_int_equal(fs_nodes_find(t, "/A/5.eml"), 0);

	fs_nodes_renamed(t, a, "5.eml", b, "5.eml");
	assert_false(fs_nodes_is_stand_in(t, m));
	fs_nodes_mark_stand_in(t, m);
	assert_true(fs_nodes_is_stand_in(t, m));
	assert_false(fs_nodes_is_stand_in(t, a));
	assert_path(t, m, NULL, "/B/5.eml");
	assert_int_equal(fs_nodes_find(t, "/B/5.eml"), m);
	assert_int_equal(fs_nodes_ref(t, b, "5.eml", TRUE), m);
	again = fs_nodes_ref(t, a, "5.eml", TRUE);
	assert_int_not_equal(again, m);
	assert_path(t, again, NULL, "/Old/5.eml");

	/* rsync's temporary file renamed over a message name. */
	tmp = fs_nodes_ref_node(t, b, ".9.eml.XyZ");
	fs_nodes_renamed(t, b, ".9.eml.XyZ", b, "9.eml");
	assert_path(t, tmp, NULL, "/B/9.eml");
	assert_int_equal(fs_nodes_ref(t, b, "9.eml", TRUE), tmp);
	fs_nodes_free(t);
}

static void
test_removed_name_is_free(void **state)
{
	FsNodes *t = fs_nodes_new();
	guint64 dir = fs_nodes_ref(t, FS_NODE_ROOT, "Trash", FALSE);
	guint64 again;

	(void)state;
	fs_nodes_removed(t, FS_NODE_ROOT, "Trash");
	/* The kernel may still ask about the old number. */
	assert_path(t, dir, NULL, "/Trash");
	again = fs_nodes_ref(t, FS_NODE_ROOT, "Trash", FALSE);
	assert_int_not_equal(again, dir);
	assert_int_equal(fs_nodes_find(t, "/Trash"), again);
	fs_nodes_forget(t, dir, 1);
	assert_int_equal(fs_nodes_find(t, "/Trash"), again);
	assert_int_equal(fs_nodes_count(t), 2);
	fs_nodes_free(t);
}

static void
test_path_too_long(void **state)
{
	FsNodes *t = fs_nodes_new();
	g_autofree char *name = g_strnfill(250, 'x');
	guint64 ino = FS_NODE_ROOT;
	char *path = NULL;

	(void)state;
	for (int i = 0; i < 16; i++)
		ino = fs_nodes_ref(t, ino, name, FALSE);
	assert_int_equal(fs_nodes_path(t, ino, NULL, &path), 0);
	g_free(path);
	assert_int_equal(fs_nodes_path(t, ino, name, &path), -ENAMETOOLONG);
	assert_null(path);
	fs_nodes_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_root),
	    cmocka_unit_test(test_messages_cost_no_node),
	    cmocka_unit_test(test_what_gets_a_node),
	    cmocka_unit_test(test_unknown_numbers),
	    cmocka_unit_test(test_forget_frees_at_zero),
	    cmocka_unit_test(test_renames),
	    cmocka_unit_test(test_removed_name_is_free),
	    cmocka_unit_test(test_path_too_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
