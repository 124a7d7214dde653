/* test_disk.c - the persistent metadata cache: round trips, every kind of
 * damage, atomic writes, the directory lock, permissions and safe names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "cache/disk.h"
#include "testutil.h"

#define BIG_COUNT 100000

static const char *const flag_sets[] = {
    "",
    "\\Seen",
    "\\Seen \\Answered",
    "\\Flagged",
    "\\Seen $Forwarded",
    "\\Draft",
    "\\Seen \\Flagged \\Answered $Label1",
};

typedef struct {
	char *dir;
	DiskCache *dc;
} Fixture;

static int
setup(void **state)
{
	Fixture *f = g_new0(Fixture, 1);
	GError *err = NULL;

	f->dir = g_dir_make_tmp("test_disk_XXXXXX", &err);
	assert_non_null(f->dir);
	f->dc = disk_cache_open(f->dir, &err);
	assert_non_null(f->dc);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	Fixture *f = *state;

	disk_cache_close(f->dc);
	remove_tree(f->dir);
	g_free(f->dir);
	g_free(f);
	return 0;
}

static StoreMessage
make_message(guint i)
{
	StoreMessage m;

	m.uid = 1 + i * 8 + (i % 7);
	m.size_verified = i % 3 == 0;
	m.size = (guint64)i * 1000003u +
	         (i % 5 == 0 ? G_GUINT64_CONSTANT(1) << 33 : 0);
	m.internaldate = i % 11 == 0 ? -(gint64)i : 1700000000 + (gint64)i;
	m.modseq = G_GUINT64_CONSTANT(0x100000000) + i * 17u;
	m.flags = i % 13 == 5
	              ? NULL
	              : g_intern_string(flag_sets[i % G_N_ELEMENTS(flag_sets)]);
	return m;
}

static StoreListing *
make_listing(guint32 uidvalidity, guint count)
{
	StoreListing *l = g_new0(StoreListing, 1);

	l->ref = 1;
	l->uidvalidity = uidvalidity;
	l->msgs = g_array_sized_new(FALSE, FALSE, sizeof(StoreMessage), count);
	for (guint i = 0; i < count; i++) {
		StoreMessage m = make_message(i);

		g_array_append_val(l->msgs, m);
	}
	return l;
}

static void
save_small(Fixture *f, const char *mailbox, guint count)
{
	DiskMailbox m = {
	    .uidvalidity = 77,
	    .uidnext = 9999,
	    .highestmodseq = 12345,
	    .listing = make_listing(77, count),
	};
	GError *err = NULL;

	assert_true(disk_cache_save_mailbox(f->dc, mailbox, &m, &err));
	assert_null(err);
	disk_mailbox_clear(&m);
}

static guint8 *
read_whole(const char *path, gsize *len)
{
	char *buf = NULL;

	assert_true(g_file_get_contents(path, &buf, len, NULL));
	return (guint8 *)buf;
}

/* Overwrites in place (no fsync, unlike g_file_set_contents: thousands
 * of these run). */
static void
write_whole(const char *path, const guint8 *buf, gsize len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void
fix_crc(guint8 *buf, gsize len)
{
	guint32 crc = GUINT32_TO_LE((guint32)crc32(0L, buf, (uInt)(len - 4)));

	memcpy(buf + len - 4, &crc, 4);
}

/* Loads mailbox expecting a damaged file: FALSE, INVAL, file removed. */
static void
assert_rejected(Fixture *f, const char *mailbox, const char *why)
{
	char *path = disk_cache_mailbox_path(f->dc, mailbox);
	DiskMailbox out;
	GError *err = NULL;

	assert_false(disk_cache_load_mailbox(f->dc, mailbox, &out, &err));
	assert_non_null(err);
	assert_int_equal(err->domain, G_FILE_ERROR);
	assert_int_equal(err->code, G_FILE_ERROR_INVAL);
	if (why != NULL && strstr(err->message, why) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", why, err->message);
	assert_null(out.listing);
	assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
	g_error_free(err);
	g_free(path);
}

/* ------------------------------------------------------------- tests */

static void
test_roundtrip_100k(void **state)
{
	Fixture *f = *state;
	DiskMailbox in = {
	    .uidvalidity = 1234567890,
	    .uidnext = 4000000,
	    .highestmodseq = G_GUINT64_CONSTANT(0xfedcba9876543210),
	    .listing = make_listing(1234567890, BIG_COUNT),
	};
	DiskMailbox out;
	GError *err = NULL;
	gint64 t0, t1, t2;
	struct stat st;
	char *path;

	t0 = g_get_monotonic_time();
	assert_true(disk_cache_save_mailbox(f->dc, "INBOX", &in, &err));
	t1 = g_get_monotonic_time();
	assert_true(disk_cache_load_mailbox(f->dc, "INBOX", &out, &err));
	t2 = g_get_monotonic_time();
	assert_null(err);
	print_message("100k messages: save %.1f ms, load %.1f ms\n",
	              (t1 - t0) / 1000.0, (t2 - t1) / 1000.0);
	if (g_getenv("IMAPFS_SLOW_TESTS") == NULL) {
		/* Generous bounds (sanitizers, busy CI); typically < 30 ms. */
		assert_true(t1 - t0 < 2 * G_USEC_PER_SEC);
		assert_true(t2 - t1 < 2 * G_USEC_PER_SEC);
	}

	assert_int_equal(out.uidvalidity, in.uidvalidity);
	assert_int_equal(out.uidnext, in.uidnext);
	assert_true(out.highestmodseq == in.highestmodseq);
	assert_non_null(out.listing);
	assert_int_equal(out.listing->ref, 1);
	assert_int_equal(out.listing->uidvalidity, 1234567890);
	assert_int_equal(out.listing->msgs->len, BIG_COUNT);
	for (guint i = 0; i < BIG_COUNT; i++) {
		const StoreMessage *a =
		    &g_array_index(in.listing->msgs, StoreMessage, i);
		const StoreMessage *b =
		    &g_array_index(out.listing->msgs, StoreMessage, i);

		assert_int_equal(a->uid, b->uid);
		assert_int_equal(a->size_verified, b->size_verified);
		assert_true(a->size == b->size);
		assert_true(a->internaldate == b->internaldate);
		assert_true(a->modseq == b->modseq);
		/* Interned: the very same pointer. */
		assert_ptr_equal(a->flags, b->flags);
	}

	path = disk_cache_mailbox_path(f->dc, "INBOX");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Flags stored once per distinct set: about 33 bytes a message. */
	assert_true(st.st_size < BIG_COUNT * 34);
	g_free(path);
	disk_mailbox_clear(&in);
	disk_mailbox_clear(&out);
	assert_null(out.listing);
}

static void
test_empty_and_null_listing(void **state)
{
	Fixture *f = *state;
	DiskMailbox in = {.uidvalidity = 5, .uidnext = 1, .listing = NULL};
	DiskMailbox out;
	GError *err = NULL;

	assert_true(disk_cache_save_mailbox(f->dc, "Empty", &in, &err));
	assert_true(disk_cache_load_mailbox(f->dc, "Empty", &out, &err));
	assert_int_equal(out.uidvalidity, 5);
	assert_int_equal(out.uidnext, 1);
	assert_true(out.highestmodseq == 0);
	assert_non_null(out.listing);
	assert_int_equal(out.listing->msgs->len, 0);
	disk_mailbox_clear(&out);
}

static void
test_unsorted_refused(void **state)
{
	Fixture *f = *state;
	DiskMailbox in = {.uidvalidity = 1, .listing = make_listing(1, 3)};
	GError *err = NULL;
	char *path = disk_cache_mailbox_path(f->dc, "Bad");

	g_array_index(in.listing->msgs, StoreMessage, 2).uid = 1;
	assert_false(disk_cache_save_mailbox(f->dc, "Bad", &in, &err));
	assert_non_null(err);
	assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
	g_clear_error(&err);
	disk_mailbox_clear(&in);
	g_free(path);
}

static void
test_corrupt_any_byte(void **state)
{
	Fixture *f = *state;
	char *path = disk_cache_mailbox_path(f->dc, "Drafts");
	gsize len, positions[10];
	guint8 *good;

	save_small(f, "Drafts", 50);
	good = read_whole(path, &len);
	positions[0] = 0;       /* magic */
	positions[1] = 7;       /* magic, last byte */
	positions[2] = 8;       /* version */
	positions[3] = 12;      /* kind */
	positions[4] = 16;      /* name length */
	positions[5] = 22;      /* name */
	positions[6] = len / 2; /* messages */
	positions[7] = len - 5; /* last message byte */
	positions[8] = len - 4; /* CRC */
	positions[9] = len - 1; /* CRC, last byte */
	for (guint i = 0; i < G_N_ELEMENTS(positions); i++) {
		guint8 *bad = g_memdup2(good, len);

		bad[positions[i]] ^= 0x20;
		write_whole(path, bad, len);
		assert_rejected(f, "Drafts", NULL);
		g_free(bad);
	}
	/* And the undamaged file still loads. */
	write_whole(path, good, len);
	{
		DiskMailbox out;

		assert_true(
		    disk_cache_load_mailbox(f->dc, "Drafts", &out, NULL));
		assert_int_equal(out.listing->msgs->len, 50);
		disk_mailbox_clear(&out);
	}
	g_free(good);
	g_free(path);
}

static void
test_truncated(void **state)
{
	Fixture *f = *state;
	char *path = disk_cache_mailbox_path(f->dc, "Sent");
	gsize len;
	guint8 *good;

	save_small(f, "Sent", 20);
	good = read_whole(path, &len);
	{
		gsize cuts[] = {0, 1, 10, 19, len / 2, len - 4, len - 1};

		for (guint i = 0; i < G_N_ELEMENTS(cuts); i++) {
			write_whole(path, good, cuts[i]);
			assert_rejected(f, "Sent",
			                cuts[i] < 20 ? "short" : NULL);
		}
	}
	/* Truncated but with a valid checksum of what remains. */
	{
		gsize cut = len - 33;
		guint8 *bad = g_memdup2(good, cut);

		fix_crc(bad, cut);
		write_whole(path, bad, cut);
		assert_rejected(f, "Sent", "count");
		g_free(bad);
	}
	/* Extra bytes with a valid checksum. */
	{
		guint8 *bad = g_malloc0(len + 3);

		memcpy(bad, good, len - 4);
		fix_crc(bad, len + 3);
		write_whole(path, bad, len + 3);
		assert_rejected(f, "Sent", "trailing");
		g_free(bad);
	}
	g_free(good);
	g_free(path);
}

/* Rewrites a little-endian u32 at off and fixes the checksum. */
static void
patch_u32(const char *path, gsize off, guint32 v)
{
	gsize len;
	guint8 *buf = read_whole(path, &len);
	guint32 le = GUINT32_TO_LE(v);

	assert_true(off + 4 <= len - 4);
	memcpy(buf + off, &le, 4);
	fix_crc(buf, len);
	write_whole(path, buf, len);
	g_free(buf);
}

static void
test_wrong_version_and_kind(void **state)
{
	Fixture *f = *state;
	char *path = disk_cache_mailbox_path(f->dc, "Junk");

	save_small(f, "Junk", 3);
	patch_u32(path, 8, 2);
	assert_rejected(f, "Junk", "version");

	save_small(f, "Junk", 3);
	patch_u32(path, 12, 2);
	assert_rejected(f, "Junk", "kind");
	g_free(path);
}

static void
test_lengths_checked_before_allocating(void **state)
{
	Fixture *f = *state;
	char *path = disk_cache_mailbox_path(f->dc, "M");
	/* header 16, name 4+1, uidvalidity, uidnext, modseq: count at 37,
	 * flag table size at 41. */
	const gsize count_off = 16 + 4 + 1 + 4 + 4 + 8;

	save_small(f, "M", 4);
	patch_u32(path, 16, G_MAXUINT32); /* name length */
	assert_rejected(f, "M", "truncated");

	save_small(f, "M", 4);
	patch_u32(path, count_off, G_MAXUINT32);
	assert_rejected(f, "M", "count");

	save_small(f, "M", 4);
	patch_u32(path, count_off + 4, G_MAXUINT32);
	assert_rejected(f, "M", "flag table");

	/* Flag index beyond the table. */
	save_small(f, "M", 4);
	{
		gsize len;
		guint8 *buf = read_whole(path, &len);
		/* The first message starts 4 * 33 + 4 bytes before the end. */
		gsize msg0 = len - 4 - 4 * 33;

		g_free(buf);
		patch_u32(path, msg0 + 4, 1000);
		assert_rejected(f, "M", "flag index");

		save_small(f, "M", 4);
		/* Second UID equal to the first. */
		buf = read_whole(path, &len);
		{
			guint32 uid0;

			memcpy(&uid0, buf + msg0, 4);
			patch_u32(path, msg0 + 33, GUINT32_FROM_LE(uid0));
		}
		g_free(buf);
		assert_rejected(f, "M", "increasing");
	}
	g_free(path);
}

/* Random damage behind a valid checksum reaches the parser itself: it
 * must either load a sane listing or reject the file, never misread. */
static void
test_mutations_with_valid_crc(void **state)
{
	Fixture *f = *state;
	char *path = disk_cache_mailbox_path(f->dc, "Fuzz");
	GRand *rand = g_rand_new_with_seed(20261126);
	guint loaded = 0, rejected = 0;
	gsize len;
	guint8 *good;

	save_small(f, "Fuzz", 6);
	good = read_whole(path, &len);
	for (guint iter = 0; iter < 3000; iter++) {
		guint8 *bad = g_memdup2(good, len);
		guint n = (guint)g_rand_int_range(rand, 1, 5);
		DiskMailbox out;
		GError *err = NULL;

		for (guint k = 0; k < n; k++) {
			/* Past the header, before the checksum. */
			gsize pos =
			    (gsize)g_rand_int_range(rand, 16, (gint32)len - 4);

			bad[pos] = iter % 2 ? (guint8)g_rand_int(rand)
			                    : bad[pos] ^ 0xff;
		}
		fix_crc(bad, len);
		write_whole(path, bad, len);
		if (disk_cache_load_mailbox(f->dc, "Fuzz", &out, &err)) {
			const GArray *m = out.listing->msgs;

			loaded++;
			assert_int_equal(m->len, 6);
			for (guint i = 1; i < m->len; i++)
				assert_true(
				    g_array_index(m, StoreMessage, i).uid >
				    g_array_index(m, StoreMessage, i - 1).uid);
			disk_mailbox_clear(&out);
		} else {
			rejected++;
			assert_int_equal(err->code, G_FILE_ERROR_INVAL);
			assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
			g_error_free(err);
		}
		g_free(bad);
	}
	print_message("mutations: %u loaded, %u rejected\n", loaded, rejected);
	assert_true(rejected > 0);
	assert_true(loaded > 0); /* e.g. a changed size or date */
	g_rand_free(rand);
	g_free(good);
	g_free(path);
}

static void
test_name_mismatch(void **state)
{
	Fixture *f = *state;
	char *a = disk_cache_mailbox_path(f->dc, "Archive");
	char *b = disk_cache_mailbox_path(f->dc, "Archive2");

	assert_string_not_equal(a, b);
	save_small(f, "Archive", 5);
	assert_int_equal(rename(a, b), 0);
	assert_rejected(f, "Archive2", "another mailbox");
	g_free(a);
	g_free(b);
}

static void
test_missing(void **state)
{
	Fixture *f = *state;
	DiskMailbox out;
	GPtrArray *list;
	GError *err = NULL;

	assert_false(disk_cache_load_mailbox(f->dc, "Nope", &out, &err));
	assert_non_null(err);
	assert_int_equal(err->domain, G_FILE_ERROR);
	assert_int_equal(err->code, G_FILE_ERROR_NOENT);
	assert_null(out.listing);
	g_clear_error(&err);
	assert_false(disk_cache_load_list(f->dc, &list, &err));
	assert_int_equal(err->code, G_FILE_ERROR_NOENT);
	assert_null(list);
	g_clear_error(&err);

	save_small(f, "Nope", 1);
	disk_cache_forget_mailbox(f->dc, "Nope");
	assert_false(disk_cache_load_mailbox(f->dc, "Nope", &out, &err));
	assert_int_equal(err->code, G_FILE_ERROR_NOENT);
	g_clear_error(&err);
	disk_cache_forget_mailbox(f->dc, "Nope"); /* twice is harmless */
}

static GPtrArray *
list_dir(const char *dir)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	assert_non_null(d);
	while ((name = g_dir_read_name(d)) != NULL)
		g_ptr_array_add(names, g_strdup(name));
	g_dir_close(d);
	return names;
}

static void
test_atomic_leaves_no_temps(void **state)
{
	Fixture *f = *state;
	GPtrArray *names;
	GError *err = NULL;
	char *stale;

	for (guint i = 0; i < 5; i++) {
		save_small(f, "INBOX", 10 + i);
		save_small(f, "Other", 3);
	}
	names = list_dir(f->dir);
	assert_int_equal(names->len, 3); /* lock + two mailboxes */
	for (guint i = 0; i < names->len; i++) {
		const char *n = names->pdata[i];

		assert_true(strcmp(n, "lock") == 0 ||
		            (g_str_has_prefix(n, "mbox-") &&
		             g_str_has_suffix(n, ".meta")));
	}
	g_ptr_array_unref(names);

	/* A crash's leftover is removed at the next open. */
	stale = g_build_filename(f->dir, "mbox-41.meta.tmp.123.abcdef01", NULL);
	write_whole(stale, (const guint8 *)"x", 1);
	disk_cache_close(f->dc);
	f->dc = disk_cache_open(f->dir, &err);
	assert_non_null(f->dc);
	assert_false(g_file_test(stale, G_FILE_TEST_EXISTS));
	g_free(stale);

	/* A save that fails (directory gone read-only) leaves nothing. */
	if (geteuid() != 0) {
		assert_int_equal(chmod(f->dir, 0500), 0);
		{
			DiskMailbox m = {.listing = make_listing(1, 2)};

			assert_false(
			    disk_cache_save_mailbox(f->dc, "RO", &m, &err));
			assert_non_null(err);
			g_clear_error(&err);
			disk_mailbox_clear(&m);
		}
		assert_int_equal(chmod(f->dir, 0700), 0);
	}
}

/* In a child process: 0 if opening dir fails as "in use". */
static int
child_tries_open(const char *dir)
{
	GError *err = NULL;
	DiskCache *dc = disk_cache_open(dir, &err);

	if (dc != NULL) {
		disk_cache_close(dc);
		return 1;
	}
	if (err->code != G_FILE_ERROR_AGAIN)
		return 2;
	if (strstr(err->message, "in use by another imapfs mount") == NULL)
		return 3;
	g_error_free(err);
	return 0;
}

static int
run_child(const char *dir)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_tries_open(dir));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void
test_lock(void **state)
{
	Fixture *f = *state;
	GError *err = NULL;
	DiskCache *second;

	assert_int_equal(run_child(f->dir), 0);

	/* The same process, through another open, is refused as well. */
	second = disk_cache_open(f->dir, &err);
	assert_null(second);
	assert_non_null(err);
	assert_int_equal(err->code, G_FILE_ERROR_AGAIN);
	assert_non_null(strstr(err->message, f->dir));
	g_clear_error(&err);

	/* Once closed, the directory is free again. */
	disk_cache_close(f->dc);
	f->dc = NULL;
	assert_int_equal(run_child(f->dir), 1);
	f->dc = disk_cache_open(f->dir, &err);
	assert_non_null(f->dc);
	assert_string_equal(disk_cache_dir(f->dc), f->dir);
}

static void
test_permissions(void **state)
{
	Fixture *f = *state;
	char *sub = g_build_filename(f->dir, "a", "b", "acct", NULL);
	char *lock = g_build_filename(sub, "lock", NULL);
	GError *err = NULL;
	DiskCache *dc;
	struct stat st;

	dc = disk_cache_open(sub, &err);
	assert_non_null(dc);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(lock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	disk_cache_close(dc);

	/* Too open: made private. */
	assert_int_equal(chmod(sub, 0777), 0);
	dc = disk_cache_open(sub, &err);
	assert_non_null(dc);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	disk_cache_close(dc);

	/* Not a directory. */
	assert_int_equal(unlink(lock), 0);
	assert_int_equal(rmdir(sub), 0);
	write_whole(sub, (const guint8 *)"x", 1);
	dc = disk_cache_open(sub, &err);
	assert_null(dc);
	assert_non_null(err);
	g_clear_error(&err);
	unlink(sub);
	g_free(lock);
	g_free(sub);
}

static void
assert_default_dir(const char *user, const char *host, guint16 port,
                   const char *expect)
{
	char *dir = disk_cache_default_dir(user, host, port);
	char *base = g_path_get_basename(dir);
	char *parent = g_path_get_dirname(dir);

	assert_string_equal(base, expect);
	assert_string_equal(parent, "/tmp/xdg-test/imapfs");
	g_free(dir);
	g_free(base);
	g_free(parent);
}

static void
test_default_dir(void **state)
{
	char *long_user = g_strnfill(600, 'u');
	char *dir, *base;

	(void)state;
	g_setenv("XDG_CACHE_HOME", "/tmp/xdg-test", TRUE);
	assert_default_dir("me", "imap.example.com", 993,
	                   "me@imap.example.com:993");
	assert_default_dir("me@example.com", "mail", 143,
	                   "me@example.com@mail:143");
	assert_default_dir("../x", "h", 1, "%2E.%2Fx@h:1");
	assert_default_dir("/", "/", 993, "%2F@%2F:993");
	assert_default_dir("..", "..", 993, "%2E.@..:993");
	assert_default_dir(".", "h", 993, "%2E@h:993");
	assert_default_dir("a\nb\x01", "h\x7f", 993, "a%0Ab%01@h%7F:993");
	assert_default_dir("50%", "evil@host", 993, "50%25@evil%40host:993");
	assert_default_dir("jürgen", "h", 993, "jürgen@h:993");
	assert_default_dir("bad\xff", "h", 993, "bad%FF@h:993");
	assert_default_dir("", "::1", 993, "@::1:993");
	assert_default_dir("~me", "h~", 993, "%7Eme@h%7E:993");

	/* Overlong: shortened, still one unique path component. */
	dir = disk_cache_default_dir(long_user, "h", 993);
	base = g_path_get_basename(dir);
	assert_true(strlen(base) < 255);
	assert_non_null(strchr(base, '~'));
	g_free(dir);
	long_user[599] = 'v';
	dir = disk_cache_default_dir(long_user, "h", 993);
	{
		char *other = g_path_get_basename(dir);

		assert_string_not_equal(other, base);
		g_free(other);
	}
	g_free(dir);
	g_free(base);
	g_free(long_user);

	/* A relative XDG_CACHE_HOME is ignored. */
	g_setenv("XDG_CACHE_HOME", "relative", TRUE);
	dir = disk_cache_default_dir("me", "h", 993);
	assert_true(g_path_is_absolute(dir));
	g_free(dir);
	g_unsetenv("XDG_CACHE_HOME");
}

static void
test_safe_names(void **state)
{
	Fixture *f = *state;
	char *s = disk_cache_safe_name("INBOX");
	char *longname = g_strnfill(150, 'x');
	char *path;

	assert_string_equal(s, "mbox-494e424f58");
	g_free(s);
	s = disk_cache_safe_name("../a/ü");
	assert_string_equal(s, "mbox-2e2e2f612fc3bc");
	g_free(s);
	s = disk_cache_safe_name(longname);
	assert_true(g_str_has_prefix(s, "mboxh-"));
	assert_int_equal(strlen(s), 6 + 64);
	g_free(s);

	/* Long and odd names round trip too. */
	save_small(f, longname, 2);
	save_small(f, "Ünïcødé/Sub.Dir", 2);
	{
		DiskMailbox out;

		assert_true(
		    disk_cache_load_mailbox(f->dc, longname, &out, NULL));
		disk_mailbox_clear(&out);
		assert_true(disk_cache_load_mailbox(f->dc, "Ünïcødé/Sub.Dir",
		                                    &out, NULL));
		disk_mailbox_clear(&out);
	}
	path = disk_cache_mailbox_path(f->dc, "../../etc/passwd");
	assert_true(g_str_has_prefix(path, f->dir));
	assert_null(strstr(path + strlen(f->dir), ".."));
	g_free(path);
	g_free(longname);
}

static ImapMailbox *
mailbox(const char *name, char delimiter, guint attrs)
{
	ImapMailbox *m = g_new0(ImapMailbox, 1);

	m->name = g_strdup(name);
	m->raw_name = g_strdup(name);
	m->delimiter = delimiter;
	m->attrs = attrs;
	return m;
}

static void
test_list(void **state)
{
	Fixture *f = *state;
	GPtrArray *in =
	    g_ptr_array_new_with_free_func((GDestroyNotify)imap_mailbox_free);
	GPtrArray *out = NULL;
	GError *err = NULL;
	char *path = g_build_filename(f->dir, "list.meta", NULL);
	gsize len;
	guint8 *buf;

	g_ptr_array_add(in, mailbox("INBOX", '/', IMAP_MBOX_HASCHILDREN));
	g_ptr_array_add(
	    in, mailbox("INBOX/Ünï", '/',
	                IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_SUBSCRIBED));
	g_ptr_array_add(in, mailbox("Flat", 0, IMAP_MBOX_NOSELECT));
	g_ptr_array_add(in, mailbox("Trash", '.', IMAP_MBOX_TRASH));
	assert_true(disk_cache_save_list(f->dc, in, &err));
	assert_true(disk_cache_load_list(f->dc, &out, &err));
	assert_null(err);
	assert_int_equal(out->len, in->len);
	for (guint i = 0; i < in->len; i++) {
		ImapMailbox *a = in->pdata[i], *b = out->pdata[i];

		assert_string_equal(a->name, b->name);
		assert_int_equal(a->delimiter, b->delimiter);
		assert_int_equal(a->attrs, b->attrs);
	}
	g_ptr_array_unref(out);

	/* Damage it: rejected and removed. */
	buf = read_whole(path, &len);
	buf[len / 2] ^= 1;
	write_whole(path, buf, len);
	assert_false(disk_cache_load_list(f->dc, &out, &err));
	assert_int_equal(err->code, G_FILE_ERROR_INVAL);
	assert_null(out);
	assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
	g_clear_error(&err);

	/* A mailbox file is not a list file. */
	save_small(f, "INBOX", 1);
	{
		char *mb = disk_cache_mailbox_path(f->dc, "INBOX");

		assert_int_equal(rename(mb, path), 0);
		g_free(mb);
	}
	assert_false(disk_cache_load_list(f->dc, &out, &err));
	assert_non_null(strstr(err->message, "kind"));
	g_clear_error(&err);

	/* Empty list. */
	g_ptr_array_set_size(in, 0);
	assert_true(disk_cache_save_list(f->dc, in, &err));
	assert_true(disk_cache_load_list(f->dc, &out, &err));
	assert_int_equal(out->len, 0);
	g_ptr_array_unref(out);
	g_ptr_array_unref(in);
	g_free(buf);
	g_free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip_100k, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_empty_and_null_listing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_unsorted_refused, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_any_byte, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_version_and_kind, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_lengths_checked_before_allocating, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mutations_with_valid_crc,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_name_mismatch, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_atomic_leaves_no_temps, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
	    cmocka_unit_test(test_default_dir),
	    cmocka_unit_test_setup_teardown(test_safe_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
