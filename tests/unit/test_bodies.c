/* test_bodies.c - the body cache: storing and reading back, the size limit
 * and LRU order, pins (also of a body replaced while being opened),
 * re-indexing at open, forgetting (also while a body is being stored),
 * and threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/syscall.h>

#include "cache/bodies.h"
#include "cache/disk.h"
#include "testutil.h"

/* Called once, just before the cache opens a path (relative to its
 * directory) that starts with hook_path: puts another thread's step where
 * no lock is held, between the lookup that pins a body and its open, or
 * between making a temporary file's directories and the file. */
static const char *hook_path;
static void (*hook_fn)(void);
static BodyCache *hook_cache; /* for hook_fn */

/* Takes the place of libc's for this program, cache/bodies.c included. */
int
openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	if (flags & O_CREAT) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (hook_fn != NULL && g_str_has_prefix(path, hook_path)) {
		void (*fn)(void) = hook_fn;

		hook_fn = NULL;
		fn();
	}
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

typedef struct {
	char *dir;
	BodyCache *bc;
} Fixture;

static int
setup(void **state)
{
	Fixture *f = g_new0(Fixture, 1);

	f->dir = g_dir_make_tmp("test_bodies_XXXXXX", NULL);
	assert_non_null(f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	Fixture *f = *state;

	/* A test that failed before its hook ran must not leave it armed. */
	hook_fn = NULL;
	hook_path = NULL;
	hook_cache = NULL;
	body_cache_close(f->bc);
	remove_tree(f->dir);
	g_free(f->dir);
	g_free(f);
	return 0;
}

static void
open_cache(Fixture *f, guint64 limit)
{
	GError *err = NULL;

	body_cache_close(f->bc);
	f->bc = body_cache_open(f->dir, limit, &err);
	assert_non_null(f->bc);
	assert_null(err);
}

/* The body of uid: its length and bytes depend on uid only. */
static GBytes *
body_for(guint32 uid, gsize len)
{
	guint8 *p = g_malloc(len);

	for (gsize i = 0; i < len; i++)
		p[i] = (guint8)(uid * 31 + i * 7 + (i >> 8));
	return g_bytes_new_take(p, len);
}

static gboolean
store_body(BodyCache *bc, const char *mailbox, guint32 uv, guint32 uid,
           gsize len)
{
	GBytes *b = body_for(uid, len);
	gsize n;
	const char *p = g_bytes_get_data(b, &n);
	BodyWriter *w = body_cache_begin(bc, mailbox, uv, uid);
	gboolean ok = w != NULL;

	/* In uneven pieces, as a fetch delivers them. */
	for (gsize off = 0; ok && off < n;) {
		gsize piece = MIN(n - off, 1 + (off % 97) * 13);

		ok = body_writer_append(w, p + off, piece);
		off += piece;
	}
	ok = body_writer_commit(w) && ok;
	g_bytes_unref(b);
	return ok;
}

static gboolean
read_all(int fd, guint8 *buf, gsize len)
{
	gsize got = 0;

	while (got < len) {
		ssize_t r = pread(fd, buf + got, len - got, (off_t)got);

		if (r <= 0)
			return FALSE;
		got += (gsize)r;
	}
	return TRUE;
}

/* Checks the cached body has exactly the expected bytes. */
static gboolean
body_matches(BodyCache *bc, const char *mailbox, guint32 uv, guint32 uid,
             gsize len)
{
	guint64 size = 0;
	int fd = body_cache_open_body(bc, mailbox, uv, uid, &size);
	GBytes *want;
	guint8 *got;
	gboolean ok;

	if (fd < 0)
		return FALSE;
	want = body_for(uid, len);
	got = g_malloc(len + 1);
	ok =
	    size == len && read_all(fd, got, len) &&
	    (len == 0 || memcmp(got, g_bytes_get_data(want, NULL), len) == 0) &&
	    pread(fd, got, 1, (off_t)len) == 0;
	body_cache_release(bc, mailbox, uv, uid, fd);
	g_free(got);
	g_bytes_unref(want);
	return ok;
}

static gboolean
is_cached(BodyCache *bc, const char *mailbox, guint32 uv, guint32 uid)
{
	guint64 size;
	int fd = body_cache_open_body(bc, mailbox, uv, uid, &size);

	if (fd < 0)
		return FALSE;
	body_cache_release(bc, mailbox, uv, uid, fd);
	return TRUE;
}

static char *
body_path(Fixture *f, const char *mailbox, guint32 uv, guint32 uid)
{
	char *safe = disk_cache_safe_name(mailbox);
	char *rel = g_strdup_printf("%s/%u/%u", safe, uv, uid);
	char *path = g_build_filename(f->dir, rel, NULL);

	g_free(safe);
	g_free(rel);
	return path;
}

static guint
count_files(const char *path)
{
	GDir *d = g_dir_open(path, 0, NULL);
	const char *name;
	guint n = 0;

	if (d == NULL)
		return g_file_test(path, G_FILE_TEST_IS_REGULAR) ? 1 : 0;
	while ((name = g_dir_read_name(d)) != NULL) {
		char *child = g_build_filename(path, name, NULL);

		n += count_files(child);
		g_free(child);
	}
	g_dir_close(d);
	return n;
}

/* ------------------------------------------------------------- tests */

static void
test_roundtrip(void **state)
{
	Fixture *f = *state;
	char *path, *parent;
	struct stat st;

	open_cache(f, 0);
	assert_true(store_body(f->bc, "INBOX", 17, 4242, 100000));
	assert_int_equal(body_cache_count(f->bc), 1);
	assert_true(body_cache_size(f->bc) == 100000);
	assert_true(body_matches(f->bc, "INBOX", 17, 4242, 100000));
	/* Other keys are not confused with it. */
	assert_false(is_cached(f->bc, "INBOX", 18, 4242));
	assert_false(is_cached(f->bc, "INBOX", 17, 4243));
	assert_false(is_cached(f->bc, "INBOX2", 17, 4242));

	/* An empty body is a body. */
	assert_true(store_body(f->bc, "INBOX", 17, 1, 0));
	assert_true(body_matches(f->bc, "INBOX", 17, 1, 0));

	path = body_path(f, "INBOX", 17, 4242);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	parent = g_path_get_dirname(path);
	assert_int_equal(stat(parent, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	g_free(parent);
	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* Nothing but the two bodies. */
	assert_int_equal(count_files(f->dir), 2);
	g_free(path);
}

static void
test_lru_order(void **state)
{
	Fixture *f = *state;
	char *b_path;

	open_cache(f, 300);
	assert_true(store_body(f->bc, "M", 1, 1, 100)); /* A */
	assert_true(store_body(f->bc, "M", 1, 2, 100)); /* B */
	assert_true(store_body(f->bc, "M", 1, 3, 100)); /* C */
	assert_true(body_cache_size(f->bc) == 300);
	/* Reading A makes B the least recently used. */
	assert_true(is_cached(f->bc, "M", 1, 1));
	assert_true(store_body(f->bc, "M", 1, 4, 100)); /* D */
	assert_true(body_cache_size(f->bc) == 300);
	assert_int_equal(body_cache_count(f->bc), 3);
	assert_false(is_cached(f->bc, "M", 1, 2));
	b_path = body_path(f, "M", 1, 2);
	assert_false(g_file_test(b_path, G_FILE_TEST_EXISTS));
	g_free(b_path);
	/* Order now C, A, D: a 200-byte body evicts C and A. */
	assert_true(store_body(f->bc, "M", 1, 5, 200));
	assert_false(is_cached(f->bc, "M", 1, 3));
	assert_false(is_cached(f->bc, "M", 1, 1));
	assert_true(body_matches(f->bc, "M", 1, 4, 100));
	assert_true(body_matches(f->bc, "M", 1, 5, 200));
	assert_int_equal(count_files(f->dir), 2);
}

static void
test_pinned_not_evicted(void **state)
{
	Fixture *f = *state;
	guint64 size;
	int fd_a;
	guint8 buf[100];

	open_cache(f, 300);
	assert_true(store_body(f->bc, "M", 1, 1, 100)); /* A */
	assert_true(store_body(f->bc, "M", 1, 2, 100)); /* B */
	assert_true(store_body(f->bc, "M", 1, 3, 100)); /* C */
	fd_a = body_cache_open_body(f->bc, "M", 1, 1, &size);
	assert_true(fd_a >= 0);
	assert_true(size == 100);
	/* Make A the least recently used while it stays open. */
	assert_true(is_cached(f->bc, "M", 1, 2));
	assert_true(is_cached(f->bc, "M", 1, 3));
	/* LRU is A (pinned), so B goes. */
	assert_true(store_body(f->bc, "M", 1, 4, 100));
	assert_false(is_cached(f->bc, "M", 1, 2));
	assert_true(is_cached(f->bc, "M", 1, 3));
	assert_true(is_cached(f->bc, "M", 1, 4));
	/* A is still in the index and readable. */
	assert_true(read_all(fd_a, buf, sizeof(buf)));
	body_cache_release(f->bc, "M", 1, 1, fd_a);
	assert_true(body_cache_size(f->bc) == 300);
	/* Released, A is first to go. */
	assert_true(store_body(f->bc, "M", 1, 5, 100));
	assert_false(is_cached(f->bc, "M", 1, 1));
	assert_int_equal(body_cache_count(f->bc), 3);
}

static void
store_1_again(void)
{
	assert_true(store_body(hook_cache, "M", 1, 1, 100));
}

/* A commit replaces a body while a reader opens it: the reader may get
 * the new file, which must then stay cached until released, however full
 * the cache gets. */
static void
test_replaced_while_opening(void **state)
{
	Fixture *f = *state;
	g_autofree char *safe = disk_cache_safe_name("M");
	g_autofree char *key = g_strdup_printf("%s/1/1", safe);
	g_autofree char *path = body_path(f, "M", 1, 1);
	guint8 buf[100];
	guint64 size;
	int fd;

	open_cache(f, 200);
	assert_true(store_body(f->bc, "M", 1, 1, 100));
	hook_cache = f->bc;
	hook_path = key;
	hook_fn = store_1_again;
	fd = body_cache_open_body(f->bc, "M", 1, 1, &size);
	assert_null(hook_fn); /* it ran */
	assert_true(fd >= 0);
	assert_true(size == 100);
	/* 1 is the least recently stored; 3 goes over the limit. */
	assert_true(store_body(f->bc, "M", 1, 2, 100));
	assert_true(store_body(f->bc, "M", 1, 3, 100));
	assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
	assert_true(read_all(fd, buf, sizeof(buf)));
	body_cache_release(f->bc, "M", 1, 1, fd);
	assert_true(body_cache_size(f->bc) == 200);
	assert_int_equal(count_files(f->dir), 2);
	assert_true(body_matches(f->bc, "M", 1, 1, 100));
}

static void
forget_m(void)
{
	body_cache_forget_mailbox(hook_cache, "M", 0);
}

/* forget_mailbox removes a folder's directories just as a body of it is
 * about to be stored there: they are made again and the body stored. */
static void
test_forgotten_while_storing(void **state)
{
	Fixture *f = *state;
	g_autofree char *safe = disk_cache_safe_name("M");
	g_autofree char *tmp_prefix = g_strdup_printf("%s/1/tmp.", safe);

	open_cache(f, 0);
	assert_true(store_body(f->bc, "M", 1, 1, 100));
	hook_cache = f->bc;
	hook_path = tmp_prefix;
	hook_fn = forget_m;
	assert_true(store_body(f->bc, "M", 1, 2, 50));
	assert_null(hook_fn); /* it ran */
	assert_false(is_cached(f->bc, "M", 1, 1));
	assert_true(body_matches(f->bc, "M", 1, 2, 50));
	assert_int_equal(body_cache_count(f->bc), 1);
	assert_int_equal(count_files(f->dir), 1);
}

static void
test_oversize_refused(void **state)
{
	Fixture *f = *state;
	BodyWriter *w;
	char data[151];

	open_cache(f, 150);
	memset(data, 'x', sizeof(data));
	w = body_cache_begin(f->bc, "M", 1, 1);
	assert_non_null(w);
	assert_true(body_writer_append(w, data, 100));
	assert_false(body_writer_append(w, data, 51));
	assert_false(body_writer_append(w, data, 1));
	assert_false(body_writer_commit(w));
	assert_int_equal(body_cache_count(f->bc), 0);
	assert_int_equal(count_files(f->dir), 0);
	/* Exactly the limit fits. */
	assert_true(store_body(f->bc, "M", 1, 2, 150));
	assert_true(body_matches(f->bc, "M", 1, 2, 150));
	/* NULL writers (begin failed) are refused quietly. */
	assert_false(body_writer_append(NULL, data, 1));
	assert_false(body_writer_commit(NULL));
	body_writer_abort(NULL);
}

static void
set_mtime(Fixture *f, guint32 uid, time_t t)
{
	char *path = body_path(f, "M", 1, uid);
	struct timespec ts[2] = {{t, 0}, {t, 0}};

	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	g_free(path);
}

static void
test_reopen_reindexes(void **state)
{
	Fixture *f = *state;
	char *junk;

	open_cache(f, 300);
	assert_true(store_body(f->bc, "M", 1, 1, 100));
	assert_true(store_body(f->bc, "M", 1, 2, 100));
	assert_true(store_body(f->bc, "M", 1, 3, 100));
	body_cache_close(f->bc);
	f->bc = NULL;
	/* Last use, as the files' mtimes say: 2 oldest, then 3, then 1. */
	set_mtime(f, 1, 1700000300);
	set_mtime(f, 2, 1700000100);
	set_mtime(f, 3, 1700000200);
	/* Strangers are ignored, a dead writer's old temp file removed. */
	junk = g_build_filename(f->dir, "junk", NULL);
	assert_true(g_file_set_contents(junk, "x", 1, NULL));
	{
		char *one = body_path(f, "M", 1, 1);
		char *dir = g_path_get_dirname(one);
		char *tmp = g_build_filename(dir, "tmp.9.1.2", NULL);
		char *odd = g_build_filename(dir, "007", NULL);
		struct timespec old[2] = {{1000, 0}, {1000, 0}};

		assert_true(g_file_set_contents(tmp, "y", 1, NULL));
		assert_int_equal(utimensat(AT_FDCWD, tmp, old, 0), 0);
		assert_true(g_file_set_contents(odd, "z", 1, NULL));
		open_cache(f, 300);
		assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
		assert_true(g_file_test(odd, G_FILE_TEST_EXISTS));
		unlink(odd);
		g_free(tmp);
		g_free(odd);
		g_free(dir);
		g_free(one);
	}
	assert_true(g_file_test(junk, G_FILE_TEST_EXISTS));
	g_free(junk);
	assert_int_equal(body_cache_count(f->bc), 3);
	assert_true(body_cache_size(f->bc) == 300);
	assert_true(store_body(f->bc, "M", 1, 4, 100));
	assert_false(is_cached(f->bc, "M", 1, 2));
	assert_true(store_body(f->bc, "M", 1, 5, 100));
	assert_false(is_cached(f->bc, "M", 1, 3));
	assert_true(body_matches(f->bc, "M", 1, 1, 100));

	/* A smaller limit evicts at open, oldest first. */
	body_cache_close(f->bc);
	f->bc = NULL;
	set_mtime(f, 1, 1700000400);
	set_mtime(f, 4, 1700000500);
	set_mtime(f, 5, 1700000600);
	open_cache(f, 150);
	assert_int_equal(body_cache_count(f->bc), 1);
	assert_true(body_matches(f->bc, "M", 1, 5, 100));
}

static time_t
mtime_of(Fixture *f, guint32 uid)
{
	char *path = body_path(f, "M", 1, uid);
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	g_free(path);
	return st.st_mtime;
}

static void
test_read_touches_file(void **state)
{
	Fixture *f = *state;
	time_t now = time(NULL);

	open_cache(f, 0);
	assert_true(store_body(f->bc, "M", 1, 1, 10));
	assert_true(store_body(f->bc, "M", 1, 2, 10));
	body_cache_close(f->bc);
	f->bc = NULL;
	set_mtime(f, 1, 1700000000);
	set_mtime(f, 2, now - 20);
	open_cache(f, 0);
	/* Used long ago: the read is recorded in the file's mtime. */
	assert_true(is_cached(f->bc, "M", 1, 1));
	assert_true(mtime_of(f, 1) >= now - 5);
	/* Used a moment ago: not worth a system call. */
	assert_true(is_cached(f->bc, "M", 1, 2));
	assert_true(mtime_of(f, 2) == now - 20);
}

/* body_cache_use: the size and a use without an open file, so the
 * entry is not pinned; an old file's mtime records the use. */
static void
test_use_without_opening(void **state)
{
	Fixture *f = *state;
	time_t now = time(NULL);
	guint64 size = 7;

	open_cache(f, 300);
	assert_true(store_body(f->bc, "M", 1, 1, 100)); /* A */
	assert_true(store_body(f->bc, "M", 1, 2, 90));  /* B */
	assert_true(store_body(f->bc, "M", 1, 3, 100)); /* C */
	assert_false(body_cache_use(f->bc, "M", 1, 4, &size));
	assert_true(size == 7);
	assert_true(body_cache_use(f->bc, "M", 1, 2, &size));
	assert_true(size == 90);
	assert_true(body_cache_use(f->bc, "M", 1, 1, &size));
	assert_true(size == 100);
	/* Used, B and A are more recent than C: D evicts C. */
	assert_true(store_body(f->bc, "M", 1, 4, 100));
	assert_false(is_cached(f->bc, "M", 1, 3));
	/* Reading B leaves A (used, not opened) least recently used; not
	 * pinned, it is what E evicts. */
	assert_true(is_cached(f->bc, "M", 1, 2));
	assert_true(store_body(f->bc, "M", 1, 5, 100));
	assert_false(is_cached(f->bc, "M", 1, 1));
	assert_true(is_cached(f->bc, "M", 1, 4));
	assert_false(body_cache_use(f->bc, "M", 1, 1, &size));
	body_cache_forget_mailbox(f->bc, "M", 0);

	assert_true(store_body(f->bc, "M", 1, 6, 10));
	assert_true(store_body(f->bc, "M", 1, 7, 10));
	body_cache_close(f->bc);
	f->bc = NULL;
	set_mtime(f, 6, 1700000000);
	set_mtime(f, 7, now - 20);
	open_cache(f, 0);
	/* Used long ago, the file records the use; a moment ago, not. */
	assert_true(body_cache_use(f->bc, "M", 1, 6, &size));
	assert_true(mtime_of(f, 6) >= now - 5);
	assert_true(body_cache_use(f->bc, "M", 1, 7, &size));
	assert_true(mtime_of(f, 7) == now - 20);
}

static void
test_forget_mailbox(void **state)
{
	Fixture *f = *state;
	char *safe = disk_cache_safe_name("M");
	char *mdir = g_build_filename(f->dir, safe, NULL);
	char *uv1 = g_build_filename(mdir, "1", NULL);
	guint64 size;
	guint8 buf[50];
	int fd;

	open_cache(f, 0);
	assert_true(store_body(f->bc, "M", 1, 1, 10));
	assert_true(store_body(f->bc, "M", 1, 2, 10));
	assert_true(store_body(f->bc, "M", 2, 1, 20));
	assert_true(store_body(f->bc, "M", 2, 2, 20));
	assert_true(store_body(f->bc, "N", 1, 1, 50));
	assert_int_equal(body_cache_count(f->bc), 5);

	body_cache_forget_mailbox(f->bc, "M", 2);
	assert_int_equal(body_cache_count(f->bc), 3);
	assert_true(body_cache_size(f->bc) == 90);
	assert_false(is_cached(f->bc, "M", 1, 1));
	assert_false(g_file_test(uv1, G_FILE_TEST_EXISTS));
	assert_true(body_matches(f->bc, "M", 2, 2, 20));
	assert_true(body_matches(f->bc, "N", 1, 1, 50));

	/* Forgetting everything while a body is open: the reader keeps
	 * its bytes, the index and the directory drop it at once. */
	fd = body_cache_open_body(f->bc, "N", 1, 1, &size);
	assert_true(fd >= 0);
	body_cache_forget_mailbox(f->bc, "N", 0);
	body_cache_forget_mailbox(f->bc, "M", 0);
	assert_int_equal(body_cache_count(f->bc), 0);
	assert_true(body_cache_size(f->bc) == 0);
	assert_false(g_file_test(mdir, G_FILE_TEST_EXISTS));
	assert_int_equal(count_files(f->dir), 0);
	assert_true(read_all(fd, buf, 50));
	body_cache_release(f->bc, "N", 1, 1, fd);
	assert_false(is_cached(f->bc, "N", 1, 1));
	/* And it can be stored again. */
	assert_true(store_body(f->bc, "N", 1, 1, 50));
	assert_true(body_matches(f->bc, "N", 1, 1, 50));
	g_free(safe);
	g_free(mdir);
	g_free(uv1);
}

static void
test_abort_and_replace(void **state)
{
	Fixture *f = *state;
	BodyWriter *w;
	guint64 size;
	guint8 buf[64];
	int fd;

	open_cache(f, 0);
	w = body_cache_begin(f->bc, "M", 1, 1);
	assert_non_null(w);
	assert_true(body_writer_append(w, "partial", 7));
	assert_int_equal(count_files(f->dir), 1);  /* the temp file */
	assert_false(is_cached(f->bc, "M", 1, 1)); /* invisible */
	body_writer_abort(w);
	assert_int_equal(count_files(f->dir), 0);
	assert_int_equal(body_cache_count(f->bc), 0);

	/* Storing again while the old copy is open: the reader keeps the
	 * old bytes, the size is counted once. */
	assert_true(store_body(f->bc, "M", 1, 1, 64));
	fd = body_cache_open_body(f->bc, "M", 1, 1, &size);
	assert_true(fd >= 0);
	assert_true(store_body(f->bc, "M", 1, 1, 40));
	assert_int_equal(body_cache_count(f->bc), 1);
	assert_true(body_cache_size(f->bc) == 40);
	assert_true(read_all(fd, buf, 64));
	body_cache_release(f->bc, "M", 1, 1, fd);
	assert_true(body_matches(f->bc, "M", 1, 1, 40));
}

static void
test_removed_behind_our_back(void **state)
{
	Fixture *f = *state;
	char *path = body_path(f, "M", 1, 1);

	open_cache(f, 0);
	assert_true(store_body(f->bc, "M", 1, 1, 30));
	assert_int_equal(unlink(path), 0);
	assert_false(is_cached(f->bc, "M", 1, 1));
	assert_int_equal(body_cache_count(f->bc), 0);
	assert_true(body_cache_size(f->bc) == 0);
	g_free(path);
}

/* ---------------------------------------------------------- threads */

#define N_THREADS 4
#define N_ITER    400
#define N_UIDS    48

static gsize
len_for(guint32 uid)
{
	return 500 + (uid * 977) % 3000;
}

static gpointer
worker(gpointer data)
{
	BodyCache *bc = data;
	GRand *rand = g_rand_new();
	gsize bad = 0;

	for (guint i = 0; i < N_ITER; i++) {
		guint32 uid = (guint32)g_rand_int_range(rand, 1, N_UIDS + 1);
		guint32 uv = 1 + uid % 2;
		const char *mbox = uid % 3 == 0 ? "A" : "Bé";

		guint64 size;
		int fd = body_cache_open_body(bc, mbox, uv, uid, &size);

		if (fd >= 0) {
			gsize len = len_for(uid);
			GBytes *want = body_for(uid, len);
			guint8 *got = g_malloc(len);

			if (size != len || !read_all(fd, got, len) ||
			    memcmp(got, g_bytes_get_data(want, NULL), len) != 0)
				bad++;
			body_cache_release(bc, mbox, uv, uid, fd);
			g_free(got);
			g_bytes_unref(want);
		} else if (!store_body(bc, mbox, uv, uid, len_for(uid))) {
			bad++;
		}
		if (i % 100 == 99 && uid % 5 == 0)
			body_cache_forget_mailbox(bc, mbox, uv);
	}
	g_rand_free(rand);
	return GSIZE_TO_POINTER(bad);
}

static void
test_threads(void **state)
{
	Fixture *f = *state;
	GThread *threads[N_THREADS];
	const guint64 limit = 20000;

	open_cache(f, limit);
	for (guint i = 0; i < N_THREADS; i++)
		threads[i] = g_thread_new("worker", worker, f->bc);
	for (guint i = 0; i < N_THREADS; i++)
		assert_int_equal(GPOINTER_TO_SIZE(g_thread_join(threads[i])),
		                 0);
	assert_true(body_cache_size(f->bc) <= limit);
	assert_true(body_cache_count(f->bc) > 0);
	assert_int_equal(count_files(f->dir), body_cache_count(f->bc));

	/* What the index says agrees with a fresh scan. */
	{
		guint64 size = body_cache_size(f->bc);
		guint count = body_cache_count(f->bc);

		open_cache(f, limit);
		assert_true(body_cache_size(f->bc) == size);
		assert_int_equal(body_cache_count(f->bc), count);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lru_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pinned_not_evicted, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_replaced_while_opening, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_forgotten_while_storing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_oversize_refused, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_reindexes, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_read_touches_file, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_use_without_opening, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_forget_mailbox, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_abort_and_replace, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_removed_behind_our_back, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
