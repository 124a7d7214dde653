/* test_handles.c - handles by inode for files opened without OPEN: one
 * open per inode while kept, the least recently used released first
 * (past a count or a byte total), never one in use, dropped ones opened
 * anew, open errors passed on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "fs/handles.h"

/* What the callbacks saw: handle k of inode i is i * 1000 + k, of a file
 * of i * 10 bytes. */
typedef struct {
	guint opens[16];
	gboolean released[16][8];
	guint n_released;
	int fail_ino;            /* open_fn fails for it with -ENOENT */
	FsHandles *drop_in_open; /* open_fn's first call drops its inode */
} Seen;

static int
fake_open(guint64 ino, guint64 *fh, guint64 *bytes, void *user)
{
	Seen *s = user;

	if ((int)ino == s->fail_ino)
		return -ENOENT;
	*fh = ino * 1000 + s->opens[ino]++;
	*bytes = ino * 10;
	/* As if the file changed while it was being opened. */
	if (s->drop_in_open != NULL && s->opens[ino] == 1)
		fs_handles_drop(s->drop_in_open, ino);
	return 0;
}

static void
fake_release(guint64 fh, void *user)
{
	Seen *s = user;

	assert_false(s->released[fh / 1000][fh % 1000]);
	s->released[fh / 1000][fh % 1000] = TRUE;
	s->n_released++;
}

#define NO_BYTE_LIMIT G_MAXUINT64

/* Holds taken by get(), by inode, for put(). */
static FsHandleHold *holds[16][4];

static guint64
get(FsHandles *h, guint64 ino)
{
	FsHandleHold *hold = NULL;
	guint64 fh = 0;
	guint i = 0;

	assert_int_equal(fs_handles_get(h, ino, &fh, &hold), 0);
	assert_non_null(hold);
	while (holds[ino][i] != NULL)
		i++;
	holds[ino][i] = hold;
	return fh;
}

static void
put(FsHandles *h, guint64 ino)
{
	guint i = 0;

	while (i + 1 < G_N_ELEMENTS(holds[ino]) && holds[ino][i + 1] != NULL)
		i++;
	assert_non_null(holds[ino][i]);
	fs_handles_put(h, holds[ino][i]);
	holds[ino][i] = NULL;
}

/* Reads of a kept inode share its one handle. */
static void
test_one_open_per_inode(void **state)
{
	Seen s = {.fail_ino = -1};
	FsHandles *h =
	    fs_handles_new(4, NO_BYTE_LIMIT, fake_open, fake_release, &s);

	(void)state;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(get(h, 1), 1000);
		put(h, 1);
	}
	assert_int_equal(s.opens[1], 1);
	assert_int_equal(fs_handles_count(h), 1);
	fs_handles_free(h);
	assert_true(s.released[1][0]);
	assert_int_equal(s.n_released, 1);
}

/* Past max, the least recently used goes first. */
static void
test_oldest_released_first(void **state)
{
	Seen s = {.fail_ino = -1};
	FsHandles *h =
	    fs_handles_new(3, NO_BYTE_LIMIT, fake_open, fake_release, &s);

	(void)state;
	for (guint64 ino = 1; ino <= 3; ino++) {
		get(h, ino);
		put(h, ino);
	}
	/* 1 is used again: 2 is now the oldest. */
	get(h, 1);
	put(h, 1);
	get(h, 4);
	put(h, 4);
	assert_int_equal(fs_handles_count(h), 3);
	assert_true(s.released[2][0]);
	assert_int_equal(s.n_released, 1);
	/* 2 again: a new handle; 3 goes. */
	assert_int_equal(get(h, 2), 2001);
	put(h, 2);
	assert_true(s.released[3][0]);
	assert_false(s.released[1][0]);
	fs_handles_free(h);
	assert_int_equal(s.n_released, 5);
}

/* A handle in use outlives max; it goes once put back. */
static void
test_in_use_is_kept(void **state)
{
	Seen s = {.fail_ino = -1};
	FsHandles *h =
	    fs_handles_new(1, NO_BYTE_LIMIT, fake_open, fake_release, &s);

	(void)state;
	get(h, 1);
	get(h, 2);
	assert_int_equal(fs_handles_count(h), 2);
	assert_int_equal(s.n_released, 0);
	put(h, 1);
	assert_true(s.released[1][0]);
	assert_int_equal(fs_handles_count(h), 1);
	/* Held twice: the first put leaves it in use. */
	assert_int_equal(get(h, 2), 2000);
	put(h, 2);
	get(h, 3);
	assert_false(s.released[2][0]);
	put(h, 2);
	put(h, 3);
	assert_true(s.released[2][0]);
	assert_int_equal(fs_handles_count(h), 1);
	fs_handles_free(h);
	assert_int_equal(s.n_released, 3);
}

/* A dropped inode (its message changed) is opened anew; a hold on the
 * old handle keeps it until put. */
static void
test_drop(void **state)
{
	Seen s = {.fail_ino = -1};
	FsHandles *h =
	    fs_handles_new(4, NO_BYTE_LIMIT, fake_open, fake_release, &s);

	(void)state;
	get(h, 1);
	put(h, 1);
	fs_handles_drop(h, 1);
	assert_true(s.released[1][0]);
	assert_int_equal(fs_handles_count(h), 0);
	assert_int_equal(get(h, 1), 1001);
	fs_handles_drop(h, 1);
	assert_false(s.released[1][1]);
	assert_int_equal(get(h, 1), 1002);
	put(h, 1);
	assert_false(s.released[1][2]);
	put(h, 1);
	assert_true(s.released[1][1]);
	fs_handles_drop(h, 5); /* not kept: nothing happens */
	fs_handles_free(h);
	assert_true(s.released[1][2]);
	assert_int_equal(s.n_released, 3);
}

/* A drop while the inode was being opened: that open may have seen the
 * old file, so it is released and the inode opened again. */
static void
test_drop_while_opening(void **state)
{
	Seen s = {.fail_ino = -1};
	FsHandles *h =
	    fs_handles_new(4, NO_BYTE_LIMIT, fake_open, fake_release, &s);

	(void)state;
	s.drop_in_open = h;
	assert_int_equal(get(h, 9), 9001);
	assert_int_equal(s.opens[9], 2);
	assert_true(s.released[9][0]);
	put(h, 9);
	assert_int_equal(get(h, 9), 9001);
	put(h, 9);
	fs_handles_free(h);
	assert_int_equal(s.n_released, 2);
}

/* FS_HANDLES_RECENT_USES gets of inode 0, a file of no bytes: what was
 * got before is no longer recent. */
static void
age(FsHandles *h)
{
	for (int i = 0; i < FS_HANDLES_RECENT_USES; i++) {
		get(h, 0);
		put(h, 0);
	}
}

/* Past max_bytes, the least recently used go until the rest fit, but not
 * one used recently, however big, nor one in use; a drop gives its bytes
 * back at once. */
static void
test_byte_limit(void **state)
{
	Seen s = {.fail_ino = -1};
	FsHandles *h = fs_handles_new(8, 100, fake_open, fake_release, &s);

	(void)state;
	for (guint64 ino = 1; ino <= 5; ino++) { /* 150 bytes */
		get(h, ino);
		put(h, ino);
	}
	assert_int_equal(s.n_released, 0); /* all recent */
	age(h);
	/* 1, 2 and 3 went, oldest first, until 90 bytes were left. */
	assert_true(s.released[1][0] && s.released[2][0] && s.released[3][0]);
	assert_false(s.released[4][0] || s.released[5][0]);
	assert_int_equal(fs_handles_count(h), 3);
	/* 12 (120 bytes, more than max_bytes) is kept while recent; the old
	 * 4 and 5 make room. */
	assert_int_equal(get(h, 12), 12000);
	put(h, 12);
	assert_int_equal(get(h, 12), 12000);
	put(h, 12);
	assert_int_equal(s.opens[12], 1);
	assert_true(s.released[4][0] && s.released[5][0]);
	age(h);
	assert_true(s.released[12][0]);
	/* 9 is held and dropped: its 90 bytes no longer count, so 8's 80 fit
	 * even once 8 is old. */
	get(h, 9);
	fs_handles_drop(h, 9);
	get(h, 8);
	put(h, 8);
	age(h);
	assert_false(s.released[8][0]);
	assert_false(s.released[9][0]);
	put(h, 9);
	assert_true(s.released[9][0]);
	assert_int_equal(fs_handles_count(h), 2); /* 0 and 8 */
	assert_int_equal(s.n_released, 7);
	fs_handles_free(h);
	assert_int_equal(s.n_released, 9);
	assert_int_equal(s.opens[0], 1);
}

static void
test_open_error(void **state)
{
	Seen s = {.fail_ino = 7};
	FsHandles *h =
	    fs_handles_new(2, NO_BYTE_LIMIT, fake_open, fake_release, &s);
	FsHandleHold *hold = NULL;
	guint64 fh = 42;

	(void)state;
	assert_int_equal(fs_handles_get(h, 7, &fh, &hold), -ENOENT);
	assert_int_equal(fs_handles_count(h), 0);
	fs_handles_free(h);
	assert_int_equal(s.n_released, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_open_per_inode),
	    cmocka_unit_test(test_oldest_released_first),
	    cmocka_unit_test(test_in_use_is_kept),
	    cmocka_unit_test(test_drop),
	    cmocka_unit_test(test_drop_while_opening),
	    cmocka_unit_test(test_byte_limit),
	    cmocka_unit_test(test_open_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
