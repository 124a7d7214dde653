/* disk.c - the persistent metadata cache: mailbox listings and the mailbox
 * list saved in one locked directory per account, so a mount starts with
 * what it knew last time and only asks the server what changed.
 *
 * Directory: DIR/lock (0600, flock()ed while open), DIR/list.meta (the
 * mailbox list) and DIR/<safe name>.meta per mailbox, where the safe name is
 * "mbox-" + lowercase hex of the UTF-8 name, or "mboxh-" + SHA-256 hex of it
 * when the hex would be longer than SAFE_HEX_MAX characters. Both forms use
 * only [0-9a-z-], so no mailbox name can escape DIR or collide with another
 * file; the name is also stored inside and checked on load.
 *
 * File format, every integer little-endian:
 *	magic	"IMAPFSC1" (8 bytes)
 *	version	u32 (DISK_FORMAT_VERSION)
 *	kind	u32 (KIND_MAILBOX or KIND_LIST)
 *	payload
 *	crc	u32: zlib crc32 of every byte before it
 * A string is u32 length + bytes (no NUL). Mailbox payload:
 *	name, uidvalidity u32, uidnext u32, highestmodseq u64, count u32,
 *	flag table: u32 n, then n strings (the distinct flag sets),
 *	count times: uid u32, flags u32 (table index, FLAGS_NULL for none),
 *	size u64, internaldate i64, modseq u64, size_verified u8.
 * UIDs are nonzero and strictly increasing. List payload:
 *	count u32, then count times: name, delimiter u8, attrs u32.
 *
 * Files are written to NAME.tmp.<pid>.<random> (O_EXCL, 0600), fsync()ed,
 * renamed over NAME and the directory fsync()ed, so NAME is always either
 * the old or the new file. A load that finds anything wrong (length, magic,
 * version, checksum, order, name) deletes the file and fails with
 * G_FILE_ERROR_INVAL; a missing file fails with G_FILE_ERROR_NOENT and is
 * not logged. Every length is checked against the bytes left before
 * anything is allocated for it.
 *
 * Thread safety: a DiskCache holds no mutable state after open, so any
 * thread may save or load; two saves of one file race only to decide which
 * complete file wins. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cache/disk.h"
#include "imap/ops.h"

#define DISK_MAGIC          "IMAPFSC1"
#define DISK_MAGIC_LEN      8
#define DISK_FORMAT_VERSION 1
#define KIND_MAILBOX        1
#define KIND_LIST           2
#define HEADER_LEN          (DISK_MAGIC_LEN + 4 + 4)
#define CRC_LEN             4
#define MESSAGE_LEN         (4 + 4 + 8 + 8 + 8 + 1)
#define FLAGS_NULL          G_MAXUINT32
#define SAFE_HEX_MAX        200
#define MAX_FILE_SIZE       ((gsize)1 << 31)
#define LIST_FILE           "list.meta"
#define META_SUFFIX         ".meta"
#define TMP_INFIX           ".meta.tmp."

struct DiskCache {
	char *dir;
	int lock_fd;
};

/* --------------------------------------------------------- safe names */

char *
disk_cache_safe_name(const char *mailbox)
{
	static const char hex[] = "0123456789abcdef";
	gsize len = strlen(mailbox);
	GString *s;

	if (len * 2 > SAFE_HEX_MAX) {
		char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256,
		                                          mailbox, len);
		char *name = g_strconcat("mboxh-", sum, NULL);

		g_free(sum);
		return name;
	}
	s = g_string_sized_new(5 + len * 2);
	g_string_append(s, "mbox-");
	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar)mailbox[i];

		g_string_append_c(s, hex[c >> 4]);
		g_string_append_c(s, hex[c & 15]);
	}
	return g_string_free(s, FALSE);
}

/* Escapes what could make part of a path component unsafe or ambiguous:
 * '/', '%', controls, bytes of invalid UTF-8, a leading '.', and the
 * characters in extra. */
static void
append_escaped(GString *s, const char *part, const char *extra)
{
	gboolean utf8 = g_utf8_validate(part, -1, NULL);

	for (const char *p = part; *p != '\0'; p++) {
		guchar c = (guchar)*p;

		if (c == '/' || c == '%' || c < 0x20 || c == 0x7f ||
		    (c >= 0x80 && !utf8) || (c == '.' && s->len == 0) ||
		    strchr(extra, c) != NULL)
			g_string_append_printf(s, "%%%02X", c);
		else
			g_string_append_c(s, (char)c);
	}
}

static char *
cache_home(void)
{
	const char *xdg = g_getenv("XDG_CACHE_HOME");

	/* Read here rather than through g_get_user_cache_dir() alone, which
	 * remembers the first value it saw; relative values are ignored as
	 * the XDG specification says. */
	if (xdg != NULL && g_path_is_absolute(xdg))
		return g_strdup(xdg);
	xdg = g_get_user_cache_dir();
	if (g_path_is_absolute(xdg))
		return g_strdup(xdg);
	return g_build_filename(g_get_home_dir(), ".cache", NULL);
}

char *
disk_cache_default_dir(const char *user, const char *host, guint16 port)
{
	GString *s = g_string_new(NULL);
	char *dir, *home;

	/* '@' is escaped in the host only: users often contain one, hosts
	 * never do, so the last raw '@' always separates the two. '~' only
	 * ever introduces the hash of an overlong name. */
	append_escaped(s, user != NULL ? user : "", "~");
	g_string_append_c(s, '@');
	append_escaped(s, host != NULL ? host : "", "@~");
	g_string_append_printf(s, ":%u", (unsigned)port);
	if (s->len > SAFE_HEX_MAX) {
		char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256,
		                                          s->str, s->len);

		/* Cut on a byte boundary, not inside an escape or a UTF-8
		 * sequence, and keep it unique with the hash. */
		gsize cut = 120;

		while (cut > 0 && ((s->str[cut] & 0xc0) == 0x80 ||
		                   s->str[cut - 1] == '%' ||
		                   (cut > 1 && s->str[cut - 2] == '%')))
			cut--;
		g_string_truncate(s, cut);
		g_string_append_printf(s, "~%s", sum);
		g_free(sum);
	}
	home = cache_home();
	dir = g_build_filename(home, "imapfs", s->str, NULL);
	g_free(home);
	g_string_free(s, TRUE);
	return dir;
}

/* -------------------------------------------------------- open/close */

static void
set_errno_error(GError **err, int errsv, const char *what, const char *path)
{
	g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errsv),
	            "%s %s: %s", what, path, g_strerror(errsv));
}

static gboolean
secure_dir(const char *dir, GError **err)
{
	struct stat st;

	if (g_mkdir_with_parents(dir, 0700) != 0) {
		set_errno_error(err, errno, "cannot create cache directory",
		                dir);
		return FALSE;
	}
	if (stat(dir, &st) != 0) {
		set_errno_error(err, errno, "cannot stat cache directory", dir);
		return FALSE;
	}
	if (!S_ISDIR(st.st_mode)) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_NOTDIR,
		            "cache directory %s is not a directory", dir);
		return FALSE;
	}
	if (st.st_uid != geteuid()) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_PERM,
		            "cache directory %s belongs to another user", dir);
		return FALSE;
	}
	if ((st.st_mode & 077) != 0) {
		/* Listings tell what mail the account holds: nobody else
		 * may read them, nor plant files here. */
		if (chmod(dir, 0700) != 0) {
			set_errno_error(err, errno,
			                "cannot make cache directory private",
			                dir);
			return FALSE;
		}
		g_message("cache directory %s was accessible to others; "
		          "made it private (0700)",
		          dir);
	}
	return TRUE;
}

/* Temporary files can only be left over by a crash: whoever wrote them
 * held the lock we now hold. */
static void
remove_stale_temps(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	if (d == NULL)
		return;
	while ((name = g_dir_read_name(d)) != NULL) {
		if (strstr(name, TMP_INFIX) != NULL) {
			char *path = g_build_filename(dir, name, NULL);

			unlink(path);
			g_free(path);
		}
	}
	g_dir_close(d);
}

DiskCache *
disk_cache_open(const char *dir, GError **err)
{
	DiskCache *dc;
	char *lock_path;
	int fd;

	if (!secure_dir(dir, err))
		return NULL;
	lock_path = g_build_filename(dir, "lock", NULL);
	fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		set_errno_error(err, errno, "cannot open lock file", lock_path);
		g_free(lock_path);
		return NULL;
	}
	g_free(lock_path);
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int errsv = errno;

		close(fd);
		if (errsv == EWOULDBLOCK)
			g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_AGAIN,
			            "cache directory %s is in use by another "
			            "imapfs mount",
			            dir);
		else
			set_errno_error(err, errsv,
			                "cannot lock cache directory", dir);
		return NULL;
	}
	remove_stale_temps(dir);
	dc = g_new0(DiskCache, 1);
	dc->dir = g_strdup(dir);
	dc->lock_fd = fd;
	return dc;
}

void
disk_cache_close(DiskCache *dc)
{
	if (dc == NULL)
		return;
	/* The lock file stays: unlinking it would let a third process lock
	 * a new file while a second still waits on the old one. */
	close(dc->lock_fd);
	g_free(dc->dir);
	g_free(dc);
}

const char *
disk_cache_dir(const DiskCache *dc)
{
	return dc->dir;
}

char *
disk_cache_mailbox_path(DiskCache *dc, const char *mailbox)
{
	char *safe = disk_cache_safe_name(mailbox);
	char *file = g_strconcat(safe, META_SUFFIX, NULL);
	char *path = g_build_filename(dc->dir, file, NULL);

	g_free(file);
	g_free(safe);
	return path;
}

static char *
list_path(DiskCache *dc)
{
	return g_build_filename(dc->dir, LIST_FILE, NULL);
}

/* ------------------------------------------------------------ encoding */

typedef struct {
	guint8 *buf;
	gsize len;
	gsize cap;
} Enc;

static void
enc_init(Enc *e, gsize cap)
{
	e->buf = g_malloc(cap);
	e->len = 0;
	e->cap = cap;
}

static void
enc_bytes(Enc *e, const void *p, gsize n)
{
	/* Sizes are computed in advance; this is a safety net. */
	if (e->len + n > e->cap) {
		e->cap = MAX(e->cap * 2, e->len + n);
		e->buf = g_realloc(e->buf, e->cap);
	}
	memcpy(e->buf + e->len, p, n);
	e->len += n;
}

static void
enc_u8(Enc *e, guint8 v)
{
	enc_bytes(e, &v, 1);
}

static void
enc_u32(Enc *e, guint32 v)
{
	guint32 le = GUINT32_TO_LE(v);

	enc_bytes(e, &le, 4);
}

static void
enc_u64(Enc *e, guint64 v)
{
	guint64 le = GUINT64_TO_LE(v);

	enc_bytes(e, &le, 8);
}

static void
enc_str(Enc *e, const char *s)
{
	gsize n = strlen(s);

	enc_u32(e, (guint32)n);
	enc_bytes(e, s, n);
}

static guint32
crc_of(const guint8 *p, gsize n)
{
	uLong crc = crc32(0L, Z_NULL, 0);

	while (n > 0) {
		uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;

		crc = crc32(crc, p, chunk);
		p += chunk;
		n -= chunk;
	}
	return (guint32)crc;
}

static void
enc_header(Enc *e, guint32 kind)
{
	enc_bytes(e, DISK_MAGIC, DISK_MAGIC_LEN);
	enc_u32(e, DISK_FORMAT_VERSION);
	enc_u32(e, kind);
}

static void
enc_finish(Enc *e)
{
	enc_u32(e, crc_of(e->buf, e->len));
}

/* ------------------------------------------------------------ decoding */

typedef struct {
	const guint8 *p;
	gsize left;
	const char *why; /* first problem found, NULL while all is well */
} Dec;

static gboolean
dec_take(Dec *d, gsize n, const guint8 **out)
{
	if (d->why != NULL)
		return FALSE;
	if (n > d->left) {
		d->why = "truncated";
		return FALSE;
	}
	*out = d->p;
	d->p += n;
	d->left -= n;
	return TRUE;
}

static guint32
dec_u32(Dec *d)
{
	const guint8 *p;
	guint32 v;

	if (!dec_take(d, 4, &p))
		return 0;
	memcpy(&v, p, 4);
	return GUINT32_FROM_LE(v);
}

static guint64
dec_u64(Dec *d)
{
	const guint8 *p;
	guint64 v;

	if (!dec_take(d, 8, &p))
		return 0;
	memcpy(&v, p, 8);
	return GUINT64_FROM_LE(v);
}

static guint8
dec_u8(Dec *d)
{
	const guint8 *p;

	if (!dec_take(d, 1, &p))
		return 0;
	return p[0];
}

/* A string's bytes, checked against what is left and for NULs. */
static gboolean
dec_str(Dec *d, const guint8 **bytes, guint32 *len)
{
	*len = dec_u32(d);
	if (!dec_take(d, *len, bytes))
		return FALSE;
	if (memchr(*bytes, '\0', *len) != NULL) {
		d->why = "NUL in a string";
		return FALSE;
	}
	return TRUE;
}

static char *
dec_strdup(Dec *d)
{
	const guint8 *bytes;
	guint32 len;

	if (!dec_str(d, &bytes, &len))
		return NULL;
	return g_strndup((const char *)bytes, len);
}

/* Checks magic, version, kind and checksum, and leaves d on the payload. */
static void
dec_open(Dec *d, const guint8 *buf, gsize len, guint32 kind)
{
	const guint8 *magic;
	guint32 stored;

	d->p = buf;
	d->left = len;
	d->why = NULL;
	if (len < HEADER_LEN + CRC_LEN) {
		d->why = "file too short";
		return;
	}
	memcpy(&stored, buf + len - CRC_LEN, 4);
	d->left = len - CRC_LEN;
	if (!dec_take(d, DISK_MAGIC_LEN, &magic))
		return;
	if (memcmp(magic, DISK_MAGIC, DISK_MAGIC_LEN) != 0) {
		d->why = "not an imapfs cache file";
		return;
	}
	if (dec_u32(d) != DISK_FORMAT_VERSION) {
		d->why = "unsupported format version";
		return;
	}
	if (dec_u32(d) != kind) {
		d->why = "wrong kind of cache file";
		return;
	}
	if (GUINT32_FROM_LE(stored) != crc_of(buf, len - CRC_LEN))
		d->why = "bad checksum";
}

/* -------------------------------------------------------------- files */

static gboolean
write_all(int fd, const guint8 *p, gsize n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return FALSE;
		}
		p += w;
		n -= (gsize)w;
	}
	return TRUE;
}

static void
fsync_dir_of(const char *path)
{
	char *dir = g_path_get_dirname(path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	/* Best effort: the rename is durable once the directory is. */
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	g_free(dir);
}

static gboolean
write_atomically(const char *path, const guint8 *buf, gsize len, GError **err)
{
	char *tmp = g_strdup_printf("%s.tmp.%ld.%08x", path, (long)getpid(),
	                            g_random_int());
	int fd, errsv;
	const char *what = "cannot write";

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	          0600);
	if (fd < 0) {
		set_errno_error(err, errno, "cannot create", tmp);
		g_free(tmp);
		return FALSE;
	}
	if (!write_all(fd, buf, len))
		goto fail;
	what = "cannot sync";
	if (fsync(fd) != 0)
		goto fail;
	what = "cannot close";
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	what = "cannot rename";
	if (rename(tmp, path) != 0)
		goto fail;
	fsync_dir_of(path);
	g_free(tmp);
	return TRUE;
fail:
	errsv = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	set_errno_error(err, errsv, what, tmp);
	g_free(tmp);
	return FALSE;
}

/* Reads the whole file; *st gets its identity so a damaged file can be
 * deleted without deleting a fresh one renamed over it meanwhile. */
static gboolean
read_file(const char *path, guint8 **buf, gsize *len, struct stat *st,
          GError **err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	gsize got = 0;

	if (fd < 0) {
		if (errno == ENOENT)
			g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
			            "%s: not cached", path);
		else
			set_errno_error(err, errno, "cannot open", path);
		return FALSE;
	}
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) ||
	    (guint64)st->st_size > MAX_FILE_SIZE) {
		close(fd);
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
		            "%s is not a regular file of sane size", path);
		return FALSE;
	}
	*len = (gsize)st->st_size;
	*buf = g_malloc(*len + 1);
	while (got < *len) {
		ssize_t r = read(fd, *buf + got, *len - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			set_errno_error(err, errno, "cannot read", path);
			close(fd);
			g_free(*buf);
			return FALSE;
		}
		if (r == 0)
			break;
		got += (gsize)r;
	}
	close(fd);
	*len = got; /* shorter than fstat said: the decoder will object */
	return TRUE;
}

static void
discard_damaged(const char *path, const struct stat *seen, const char *why,
                GError **err)
{
	struct stat now;

	if (stat(path, &now) == 0 && now.st_ino == seen->st_ino &&
	    now.st_dev == seen->st_dev)
		unlink(path);
	g_info("discarded damaged cache file %s: %s", path, why);
	g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
	            "cache file %s was damaged (%s) and has been removed", path,
	            why);
}

/* ------------------------------------------------------------ mailbox */

static guint32
flag_index(GHashTable *index, GPtrArray *table, const char *flags)
{
	gpointer found;

	if (flags == NULL)
		return FLAGS_NULL;
	if (g_hash_table_lookup_extended(index, flags, NULL, &found))
		return GPOINTER_TO_UINT(found);
	g_hash_table_insert(index, (gpointer)flags,
	                    GUINT_TO_POINTER(table->len));
	g_ptr_array_add(table, (gpointer)flags);
	return table->len - 1;
}

static gboolean
encode_mailbox(Enc *e, const char *mailbox, const DiskMailbox *m, GError **err)
{
	GArray *msgs = m->listing != NULL ? m->listing->msgs : NULL;
	guint n = msgs != NULL ? msgs->len : 0;
	GHashTable *index = g_hash_table_new(g_str_hash, g_str_equal);
	GPtrArray *table = g_ptr_array_new();
	guint32 *flag_of = g_new(guint32, MAX(n, 1));
	gsize size = HEADER_LEN + 4 + strlen(mailbox) + 4 + 4 + 8 + 4 + 4 +
	             (gsize)n * MESSAGE_LEN + CRC_LEN;

	for (guint i = 0; i < n; i++) {
		const StoreMessage *sm = &g_array_index(msgs, StoreMessage, i);

		if (i > 0 &&
		    sm->uid <= g_array_index(msgs, StoreMessage, i - 1).uid) {
			g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
			            "listing of %s is not sorted by UID",
			            mailbox);
			g_hash_table_destroy(index);
			g_ptr_array_free(table, TRUE);
			g_free(flag_of);
			return FALSE;
		}
		flag_of[i] = flag_index(index, table, sm->flags);
	}
	for (guint i = 0; i < table->len; i++)
		size += 4 + strlen(table->pdata[i]);

	enc_init(e, size);
	enc_header(e, KIND_MAILBOX);
	enc_str(e, mailbox);
	enc_u32(e, m->uidvalidity);
	enc_u32(e, m->uidnext);
	enc_u64(e, m->highestmodseq);
	enc_u32(e, n);
	enc_u32(e, table->len);
	for (guint i = 0; i < table->len; i++)
		enc_str(e, table->pdata[i]);
	for (guint i = 0; i < n; i++) {
		const StoreMessage *sm = &g_array_index(msgs, StoreMessage, i);

		enc_u32(e, sm->uid);
		enc_u32(e, flag_of[i]);
		enc_u64(e, sm->size);
		enc_u64(e, (guint64)sm->internaldate);
		enc_u64(e, sm->modseq);
		enc_u8(e, sm->size_verified ? 1 : 0);
	}
	enc_finish(e);
	g_hash_table_destroy(index);
	g_ptr_array_free(table, TRUE);
	g_free(flag_of);
	return TRUE;
}

gboolean
disk_cache_save_mailbox(DiskCache *dc, const char *mailbox,
                        const DiskMailbox *m, GError **err)
{
	char *path;
	Enc e;
	gboolean ok;

	if (!encode_mailbox(&e, mailbox, m, err))
		return FALSE;
	path = disk_cache_mailbox_path(dc, mailbox);
	ok = write_atomically(path, e.buf, e.len, err);
	g_free(path);
	g_free(e.buf);
	return ok;
}

static const char **
decode_flag_table(Dec *d, guint32 *n)
{
	const char **table;

	*n = dec_u32(d);
	/* Each entry takes at least its 4-byte length. */
	if (d->why != NULL || *n > d->left / 4) {
		if (d->why == NULL)
			d->why = "flag table longer than the file";
		return NULL;
	}
	table = g_new0(const char *, MAX(*n, 1));
	for (guint32 i = 0; i < *n; i++) {
		char *s = dec_strdup(d);

		if (s == NULL)
			break;
		table[i] = g_intern_string(s);
		g_free(s);
	}
	if (d->why != NULL) {
		g_free(table);
		return NULL;
	}
	return table;
}

static GArray *
decode_messages(Dec *d, guint32 count, const char **table, guint32 n_table)
{
	GArray *msgs;

	if (count > d->left / MESSAGE_LEN) {
		d->why = "message count larger than the file";
		return NULL;
	}
	msgs = g_array_sized_new(FALSE, FALSE, sizeof(StoreMessage), count);
	g_array_set_size(msgs, count);
	for (guint32 i = 0; i < count && d->why == NULL; i++) {
		StoreMessage *sm = &g_array_index(msgs, StoreMessage, i);
		guint32 fi;
		guint8 verified;

		sm->uid = dec_u32(d);
		fi = dec_u32(d);
		sm->size = dec_u64(d);
		sm->internaldate = (gint64)dec_u64(d);
		sm->modseq = dec_u64(d);
		verified = dec_u8(d);
		if (d->why != NULL)
			break;
		if (sm->uid == 0 || (i > 0 && sm->uid <= (sm - 1)->uid))
			d->why = "UIDs not strictly increasing";
		else if (fi != FLAGS_NULL && fi >= n_table)
			d->why = "flag index out of range";
		else if (verified > 1)
			d->why = "bad size_verified";
		if (d->why != NULL)
			break;
		sm->flags = fi == FLAGS_NULL ? NULL : table[fi];
		sm->size_verified = verified == 1;
	}
	if (d->why != NULL) {
		g_array_free(msgs, TRUE);
		return NULL;
	}
	return msgs;
}

static void
decode_mailbox(Dec *d, const char *mailbox, DiskMailbox *out)
{
	const guint8 *name;
	guint32 name_len, count, n_table;
	const char **table;
	GArray *msgs;

	if (!dec_str(d, &name, &name_len))
		return;
	if (name_len != strlen(mailbox) ||
	    memcmp(name, mailbox, name_len) != 0) {
		d->why = "it belongs to another mailbox";
		return;
	}
	out->uidvalidity = dec_u32(d);
	out->uidnext = dec_u32(d);
	out->highestmodseq = dec_u64(d);
	count = dec_u32(d);
	table = decode_flag_table(d, &n_table);
	if (table == NULL)
		return;
	msgs = decode_messages(d, count, table, n_table);
	g_free(table);
	if (msgs == NULL)
		return;
	if (d->left != 0) {
		d->why = "trailing bytes";
		g_array_free(msgs, TRUE);
		return;
	}
	out->listing = g_new0(StoreListing, 1);
	out->listing->ref = 1;
	out->listing->uidvalidity = out->uidvalidity;
	out->listing->msgs = msgs;
}

gboolean
disk_cache_load_mailbox(DiskCache *dc, const char *mailbox, DiskMailbox *out,
                        GError **err)
{
	char *path = disk_cache_mailbox_path(dc, mailbox);
	guint8 *buf;
	gsize len;
	struct stat st;
	Dec d;

	memset(out, 0, sizeof(*out));
	if (!read_file(path, &buf, &len, &st, err)) {
		g_free(path);
		return FALSE;
	}
	dec_open(&d, buf, len, KIND_MAILBOX);
	if (d.why == NULL)
		decode_mailbox(&d, mailbox, out);
	g_free(buf);
	if (d.why != NULL) {
		memset(out, 0, sizeof(*out));
		discard_damaged(path, &st, d.why, err);
		g_free(path);
		return FALSE;
	}
	g_free(path);
	return TRUE;
}

void
disk_cache_forget_mailbox(DiskCache *dc, const char *mailbox)
{
	char *path = disk_cache_mailbox_path(dc, mailbox);

	if (unlink(path) != 0 && errno != ENOENT)
		g_message("cannot remove %s: %s", path, g_strerror(errno));
	g_free(path);
}

void
disk_mailbox_clear(DiskMailbox *m)
{
	if (m == NULL)
		return;
	store_listing_unref(m->listing);
	memset(m, 0, sizeof(*m));
}

/* --------------------------------------------------------------- list */

gboolean
disk_cache_save_list(DiskCache *dc, GPtrArray *mailboxes, GError **err)
{
	guint n = mailboxes != NULL ? mailboxes->len : 0;
	gsize size = HEADER_LEN + 4 + CRC_LEN;
	char *path;
	gboolean ok;
	Enc e;

	for (guint i = 0; i < n; i++) {
		const ImapMailbox *mb = mailboxes->pdata[i];

		size += 4 + strlen(mb->name) + 1 + 4;
	}
	enc_init(&e, size);
	enc_header(&e, KIND_LIST);
	enc_u32(&e, n);
	for (guint i = 0; i < n; i++) {
		const ImapMailbox *mb = mailboxes->pdata[i];

		enc_str(&e, mb->name);
		enc_u8(&e, (guint8)mb->delimiter);
		enc_u32(&e, mb->attrs);
	}
	enc_finish(&e);
	path = list_path(dc);
	ok = write_atomically(path, e.buf, e.len, err);
	g_free(path);
	g_free(e.buf);
	return ok;
}

static GPtrArray *
decode_list(Dec *d)
{
	guint32 count = dec_u32(d);
	GPtrArray *list;

	/* Each entry takes at least 4 + 1 + 4 bytes. */
	if (d->why != NULL || count > d->left / 9) {
		if (d->why == NULL)
			d->why = "mailbox count larger than the file";
		return NULL;
	}
	list = g_ptr_array_new_full(count, (GDestroyNotify)imap_mailbox_free);
	for (guint32 i = 0; i < count; i++) {
		ImapMailbox *mb = g_new0(ImapMailbox, 1);

		g_ptr_array_add(list, mb);
		mb->name = dec_strdup(d);
		mb->delimiter = (char)dec_u8(d);
		mb->attrs = dec_u32(d);
		if (d->why != NULL)
			break;
	}
	if (d->why == NULL && d->left != 0)
		d->why = "trailing bytes";
	if (d->why != NULL) {
		g_ptr_array_unref(list);
		return NULL;
	}
	return list;
}

gboolean
disk_cache_load_list(DiskCache *dc, GPtrArray **out, GError **err)
{
	char *path = list_path(dc);
	guint8 *buf;
	gsize len;
	struct stat st;
	Dec d;

	*out = NULL;
	if (!read_file(path, &buf, &len, &st, err)) {
		g_free(path);
		return FALSE;
	}
	dec_open(&d, buf, len, KIND_LIST);
	if (d.why == NULL)
		*out = decode_list(&d);
	g_free(buf);
	if (d.why != NULL) {
		discard_damaged(path, &st, d.why, err);
		g_free(path);
		return FALSE;
	}
	g_free(path);
	return TRUE;
}
