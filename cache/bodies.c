/* bodies.c - message bodies kept on disk as DIR/<mailbox>/<UIDVALIDITY>/<UID>
 * (mailbox as disk_cache_safe_name() spells it), bounded in total size by
 * evicting the least recently used body that nobody has open.
 *
 * An in-memory index (key "<mailbox>/<uidvalidity>/<uid>", the file's path
 * relative to DIR) holds each body's size, its place in the LRU queue and
 * how many readers have it open (pins). It is rebuilt at open by scanning
 * DIR, ordered by the files' mtimes, which readers refresh (at most once a
 * minute per body) so the order survives restarts. One mutex guards it;
 * the file operations that change what it describes (rename, unlink) run
 * under that mutex too, so the index and the directory never disagree for
 * another thread. Opening a body pins its entry instead, and temporary
 * files are created unlocked: those are the slow calls, and every reader
 * and writer of the cache would queue behind them.
 *
 * A body removed while open (evicted cannot happen, but forgotten or
 * replaced can) is unlinked at once and its entry lives on, out of the
 * index, until its last reader releases it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/bodies.h"
#include "cache/disk.h"

#define TMP_PREFIX       "tmp."
#define TOUCH_INTERVAL_S 60
#define STALE_TMP_S      3600

typedef struct {
	char *key; /* path relative to the cache directory */
	guint32 uidvalidity;
	guint64 size;
	gint64 touched; /* file mtime (seconds) as last set or seen */
	guint pins;
	gboolean indexed; /* FALSE once removed while pinned */
	GList link;       /* in BodyCache.lru while indexed */
} BodyEntry;

struct BodyCache {
	GMutex lock;
	int dir_fd;
	char *dir;
	guint64 limit;
	guint64 total;        /* bytes of indexed bodies */
	GHashTable *index;    /* key -> BodyEntry * */
	GHashTable *open_fds; /* fd -> BodyEntry * (pinned by that fd) */
	GQueue lru;           /* head: least recently used */
};

struct BodyWriter {
	BodyCache *bc;
	int fd;
	char *tmp; /* relative to the cache directory */
	char *key;
	guint32 uidvalidity;
	guint64 size;
	gboolean failed;
};

/* ------------------------------------------------------------- helpers */

static char *
body_key(const char *mailbox, guint32 uidvalidity, guint32 uid)
{
	char *safe = disk_cache_safe_name(mailbox);
	char *key = g_strdup_printf("%s/%u/%u", safe, uidvalidity, uid);

	g_free(safe);
	return key;
}

/* A strictly canonical decimal u32 > 0: what we write, nothing else. */
static gboolean
parse_number(const char *s, guint32 *out)
{
	guint64 v = 0;

	if (*s < '1' || *s > '9')
		return FALSE;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return FALSE;
		v = v * 10 + (guint64)(*s - '0');
		if (v > G_MAXUINT32)
			return FALSE;
	}
	*out = (guint32)v;
	return TRUE;
}

static gboolean
is_safe_name(const char *s)
{
	if (!g_str_has_prefix(s, "mbox-") && !g_str_has_prefix(s, "mboxh-"))
		return FALSE;
	for (; *s != '\0'; s++)
		if (!g_ascii_isdigit(*s) && !(*s >= 'a' && *s <= 'z') &&
		    *s != '-')
			return FALSE;
	return TRUE;
}

static void
entry_free(BodyEntry *e)
{
	g_free(e->key);
	g_free(e);
}

static BodyEntry *
entry_new(const char *key, guint32 uidvalidity, guint64 size, gint64 touched)
{
	BodyEntry *e = g_new0(BodyEntry, 1);

	e->key = g_strdup(key);
	e->uidvalidity = uidvalidity;
	e->size = size;
	e->touched = touched;
	e->link.data = e;
	return e;
}

/* Caller holds the lock. */
static void
index_insert(BodyCache *bc, BodyEntry *e)
{
	e->indexed = TRUE;
	g_hash_table_replace(bc->index, e->key, e);
	g_queue_push_tail_link(&bc->lru, &e->link);
	bc->total += e->size;
}

/* Takes e out of the index (caller holds the lock and has dealt with the
 * file); e is freed unless a reader still has it open. */
static void
index_remove(BodyCache *bc, BodyEntry *e)
{
	g_hash_table_steal(bc->index, e->key);
	g_queue_unlink(&bc->lru, &e->link);
	bc->total -= e->size;
	e->indexed = FALSE;
	if (e->pins == 0)
		entry_free(e);
}

static void
drop_body(BodyCache *bc, BodyEntry *e)
{
	if (unlinkat(bc->dir_fd, e->key, 0) != 0 && errno != ENOENT)
		g_message("cannot remove cached body %s/%s: %s", bc->dir,
		          e->key, g_strerror(errno));
	index_remove(bc, e);
}

/* Least recently used first, never a pinned body. Caller holds the lock. */
static void
evict_locked(BodyCache *bc)
{
	GList *l = bc->lru.head;

	if (bc->limit == 0)
		return;
	while (bc->total > bc->limit && l != NULL) {
		BodyEntry *e = l->data;

		l = l->next;
		if (e->pins == 0)
			drop_body(bc, e);
	}
}

static gint64
now_s(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

/* ---------------------------------------------------------------- scan */

typedef struct {
	BodyEntry *e;
	struct timespec mtime;
} ScanItem;

static gint
scan_item_cmp(gconstpointer a, gconstpointer b)
{
	const ScanItem *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->e->key, y->e->key);
}

static DIR *
open_subdir(int parent_fd, const char *name)
{
	int fd = openat(parent_fd, name,
	                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (d == NULL)
		close(fd);
	return d;
}

static void
scan_uidvalidity(const char *mbox, guint32 uidvalidity, DIR *d, GArray *items)
{
	struct dirent *de;
	struct stat st;
	gint64 now = now_s();

	while ((de = readdir(d)) != NULL) {
		guint32 uid;
		ScanItem it;
		char *key;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISREG(st.st_mode))
			continue;
		if (g_str_has_prefix(de->d_name, TMP_PREFIX)) {
			/* A writer that died; a live one is younger. */
			if (now - st.st_mtime > STALE_TMP_S)
				unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		if (!parse_number(de->d_name, &uid))
			continue;
		key = g_strdup_printf("%s/%u/%u", mbox, uidvalidity, uid);
		it.e = entry_new(key, uidvalidity, (guint64)st.st_size,
		                 st.st_mtime);
		it.mtime = st.st_mtim;
		g_array_append_val(items, it);
		g_free(key);
	}
}

static void
scan_mailbox(const char *mbox, DIR *d, GArray *items)
{
	struct dirent *de;

	while ((de = readdir(d)) != NULL) {
		guint32 uidvalidity;
		DIR *sub;

		if (!parse_number(de->d_name, &uidvalidity))
			continue;
		sub = open_subdir(dirfd(d), de->d_name);
		if (sub == NULL)
			continue;
		scan_uidvalidity(mbox, uidvalidity, sub, items);
		closedir(sub);
	}
}

static void
scan(BodyCache *bc)
{
	GArray *items = g_array_new(FALSE, FALSE, sizeof(ScanItem));
	int fd = dup(bc->dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		g_array_free(items, TRUE);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		DIR *sub;

		if (!is_safe_name(de->d_name))
			continue;
		sub = open_subdir(dirfd(d), de->d_name);
		if (sub == NULL)
			continue;
		scan_mailbox(de->d_name, sub, items);
		closedir(sub);
	}
	closedir(d);
	g_array_sort(items, scan_item_cmp);
	for (guint i = 0; i < items->len; i++)
		index_insert(bc, g_array_index(items, ScanItem, i).e);
	g_array_free(items, TRUE);
}

/* ----------------------------------------------------------- open/close */

BodyCache *
body_cache_open(const char *dir, guint64 limit_bytes, GError **err)
{
	BodyCache *bc;
	struct stat st;
	int fd;

	if (g_mkdir_with_parents(dir, 0700) != 0) {
		int errsv = errno;

		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errsv),
		            "cannot create body cache %s: %s", dir,
		            g_strerror(errsv));
		return NULL;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int errsv = errno;

		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errsv),
		            "cannot open body cache %s: %s", dir,
		            g_strerror(errsv));
		return NULL;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
		fchmod(fd, 0700);
	bc = g_new0(BodyCache, 1);
	g_mutex_init(&bc->lock);
	bc->dir_fd = fd;
	bc->dir = g_strdup(dir);
	bc->limit = limit_bytes;
	bc->index = g_hash_table_new(g_str_hash, g_str_equal);
	bc->open_fds = g_hash_table_new(g_direct_hash, g_direct_equal);
	g_queue_init(&bc->lru);
	scan(bc);
	evict_locked(bc);
	return bc;
}

void
body_cache_close(BodyCache *bc)
{
	GHashTableIter it;
	gpointer value;

	if (bc == NULL)
		return;
	/* Readers should have released; entries they still pin go too. */
	g_hash_table_iter_init(&it, bc->open_fds);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		BodyEntry *e = value;

		if (--e->pins == 0 && !e->indexed)
			entry_free(e);
	}
	g_hash_table_iter_init(&it, bc->index);
	while (g_hash_table_iter_next(&it, NULL, &value))
		entry_free(value);
	g_hash_table_destroy(bc->open_fds);
	g_hash_table_destroy(bc->index);
	close(bc->dir_fd);
	g_mutex_clear(&bc->lock);
	g_free(bc->dir);
	g_free(bc);
}

/* -------------------------------------------------------------- reading */

/* Caller holds the lock and a pin on e; takes the pin back. */
static void
unpin_locked(BodyCache *bc, BodyEntry *e)
{
	e->pins--;
	if (e->pins == 0 && !e->indexed)
		entry_free(e);
	else
		evict_locked(bc);
}

/* Opens e's file: a fd, or -1 with *gone set when there is no such
 * regular file any more (rather than, say, no fd to spare). */
static int
open_entry_file(BodyCache *bc, const BodyEntry *e, struct stat *st,
                gboolean *gone)
{
	int fd = openat(bc->dir_fd, e->key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	*gone = fd < 0 && (errno == ENOENT || errno == ELOOP);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) != 0) {
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		*gone = TRUE;
		close(fd);
		return -1;
	}
	return fd;
}

/* Moves the entry to the recent end of the LRU. With may_touch, TRUE
 * when its file's mtime is due to be refreshed too (remembering the use
 * across restarts, at most once a minute). */
static gboolean
note_use_locked(BodyCache *bc, BodyEntry *e, gboolean may_touch)
{
	gint64 now = now_s();

	if (e->indexed) {
		g_queue_unlink(&bc->lru, &e->link);
		g_queue_push_tail_link(&bc->lru, &e->link);
	}
	if (!may_touch || now - e->touched < TOUCH_INTERVAL_S)
		return FALSE;
	e->touched = now;
	return TRUE;
}

/* The file is opened outside the lock, the entry pinned meanwhile so that
 * eviction leaves it alone. If forget removed the file first, the open
 * fails and the body counts as not cached. If a commit replaced it, before
 * or after our open, we hold one of the two files, whose bytes are the
 * same, and the pin moves to the entry now indexed: it may be that file's,
 * which must not be evicted while we read it. */
int
body_cache_open_body(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
                     guint32 uid, guint64 *size)
{
	char *key = body_key(mailbox, uidvalidity, uid);
	gboolean touch = FALSE, moved = FALSE, gone;
	BodyEntry *e, *cur;
	struct stat st;
	int fd;

	g_mutex_lock(&bc->lock);
	e = g_hash_table_lookup(bc->index, key);
	if (e != NULL)
		e->pins++;
	g_mutex_unlock(&bc->lock);
	g_free(key);
	if (e == NULL)
		return -1;
	fd = open_entry_file(bc, e, &st, &gone);
	g_mutex_lock(&bc->lock);
	if (fd < 0) {
		/* Removed behind our back: forget it. */
		if (gone && e->indexed)
			drop_body(bc, e);
		unpin_locked(bc, e);
		g_mutex_unlock(&bc->lock);
		return -1;
	}
	cur = e->indexed ? e : g_hash_table_lookup(bc->index, e->key);
	if (cur != e && cur != NULL) {
		cur->pins++;
		unpin_locked(bc, e);
		e = cur;
		moved = TRUE;
	}
	/* After a move, what we opened may be the replaced file: its size
	 * and mtime are not the entry's to take or refresh. */
	if (!moved && e->indexed && (guint64)st.st_size != e->size) {
		bc->total = bc->total - e->size + (guint64)st.st_size;
		e->size = (guint64)st.st_size;
	}
	g_hash_table_insert(bc->open_fds, GINT_TO_POINTER(fd), e);
	touch = note_use_locked(bc, e, !moved);
	*size = (guint64)st.st_size;
	g_mutex_unlock(&bc->lock);
	/* Remember the use across restarts, cheaply. */
	if (touch)
		futimens(fd, NULL);
	return fd;
}

gboolean
body_cache_use(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
               guint32 uid, guint64 *size)
{
	g_autofree char *key = NULL;
	gboolean touch = FALSE;
	BodyEntry *e;

	if (bc == NULL)
		return FALSE;
	key = body_key(mailbox, uidvalidity, uid);
	g_mutex_lock(&bc->lock);
	e = g_hash_table_lookup(bc->index, key);
	if (e != NULL) {
		*size = e->size;
		touch = note_use_locked(bc, e, TRUE);
	}
	g_mutex_unlock(&bc->lock);
	/* Gone since, the file takes no harm: the next open finds out. */
	if (touch)
		utimensat(bc->dir_fd, key, NULL, AT_SYMLINK_NOFOLLOW);
	return e != NULL;
}

void
body_cache_release(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
                   guint32 uid, int fd)
{
	BodyEntry *e;

	if (fd < 0)
		return;
	g_mutex_lock(&bc->lock);
	e = g_hash_table_lookup(bc->open_fds, GINT_TO_POINTER(fd));
	if (e != NULL) {
		g_hash_table_remove(bc->open_fds, GINT_TO_POINTER(fd));
		unpin_locked(bc, e);
	}
	/* Out of open_fds already, so an open that reuses the number once
	 * it is closed cannot be confused with this one. */
	g_mutex_unlock(&bc->lock);
	close(fd);
}

/* -------------------------------------------------------------- writing */

/* 0 when dir (relative to the cache directory) exists, made or not. */
static int
make_dir(BodyCache *bc, const char *dir)
{
	return mkdirat(bc->dir_fd, dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* Makes the temporary file, unlocked (see the top of the file), and its
 * directories only when missing. forget_mailbox may remove them between
 * our mkdir and our open; we then make them again, a few times at most (it
 * runs when a folder's UIDVALIDITY changes, not in a loop). A body stored
 * under a forgotten UIDVALIDITY is correct, merely never asked for, and
 * evicted in time. */

static int
create_temp(BodyCache *bc, const char *safe, const char *uv_dir,
            const char *tmp)
{
	int fd;

	for (int tries = 1;; tries++) {
		fd = openat(
		    bc->dir_fd, tmp,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != ENOENT || tries == 3)
			break;
		if (make_dir(bc, safe) != 0 || make_dir(bc, uv_dir) != 0) {
			if (errno == ENOENT)
				continue; /* the parent went again */
			g_message("cannot create %s/%s: %s", bc->dir, uv_dir,
			          g_strerror(errno));
			return -1;
		}
	}
	if (fd < 0)
		g_message("cannot create %s/%s: %s", bc->dir, tmp,
		          g_strerror(errno));
	return fd;
}

BodyWriter *
body_cache_begin(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
                 guint32 uid)
{
	char *safe = disk_cache_safe_name(mailbox);
	char *uv_dir = g_strdup_printf("%s/%u", safe, uidvalidity);
	BodyWriter *w = NULL;
	char *tmp;
	int fd;

	tmp = g_strdup_printf("%s/" TMP_PREFIX "%u.%ld.%08x", uv_dir, uid,
	                      (long)getpid(), g_random_int());
	fd = create_temp(bc, safe, uv_dir, tmp);
	if (fd >= 0) {
		w = g_new0(BodyWriter, 1);
		w->bc = bc;
		w->fd = fd;
		w->tmp = g_steal_pointer(&tmp);
		w->key = g_strdup_printf("%s/%u", uv_dir, uid);
		w->uidvalidity = uidvalidity;
	}
	g_free(tmp);
	g_free(uv_dir);
	g_free(safe);
	return w;
}

static void
writer_free(BodyWriter *w)
{
	if (w->fd >= 0)
		close(w->fd);
	g_free(w->tmp);
	g_free(w->key);
	g_free(w);
}

/* FALSE once the body cannot be stored (write error, or larger than the
 * whole cache): the rest is then ignored and commit will fail. */
gboolean
body_writer_append(BodyWriter *w, const char *data, gsize len)
{
	if (w == NULL || w->failed)
		return FALSE;
	w->size += len;
	if (w->bc->limit != 0 && w->size > w->bc->limit) {
		g_debug("body %s (over %" G_GUINT64_FORMAT " bytes) is larger "
		        "than the cache; not stored",
		        w->key, w->bc->limit);
		w->failed = TRUE;
		return FALSE;
	}
	while (len > 0) {
		ssize_t n = write(w->fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			g_message("cannot write %s/%s: %s", w->bc->dir, w->tmp,
			          n < 0 ? g_strerror(errno) : "no progress");
			w->failed = TRUE;
			return FALSE;
		}
		data += n;
		len -= (gsize)n;
	}
	return TRUE;
}

void
body_writer_abort(BodyWriter *w)
{
	if (w == NULL)
		return;
	unlinkat(w->bc->dir_fd, w->tmp, 0);
	writer_free(w);
}

gboolean
body_writer_commit(BodyWriter *w)
{
	BodyCache *bc;
	BodyEntry *old, *e;
	gboolean ok = FALSE;

	if (w == NULL)
		return FALSE;
	bc = w->bc;
	/* No fsync: a body lost in a crash is fetched again. */
	if (w->failed || close(w->fd) != 0) {
		w->fd = -1;
		body_writer_abort(w);
		return FALSE;
	}
	w->fd = -1;
	g_mutex_lock(&bc->lock);
	if (renameat(bc->dir_fd, w->tmp, bc->dir_fd, w->key) != 0) {
		g_message("cannot store body %s/%s: %s", bc->dir, w->key,
		          g_strerror(errno));
		unlinkat(bc->dir_fd, w->tmp, 0);
		goto out;
	}
	old = g_hash_table_lookup(bc->index, w->key);
	if (old != NULL)
		index_remove(bc, old); /* its file was just replaced */
	e = entry_new(w->key, w->uidvalidity, w->size, now_s());
	index_insert(bc, e);
	evict_locked(bc);
	ok = TRUE;
out:
	g_mutex_unlock(&bc->lock);
	writer_free(w);
	return ok;
}

/* ------------------------------------------------------------ forgetting */

static void
remove_uidvalidity_dir(int mbox_fd, const char *name)
{
	DIR *d = open_subdir(mbox_fd, name);
	struct dirent *de;
	guint32 uid;

	if (d == NULL)
		return;
	/* Bodies only: a writer's temporary file keeps the directory, and
	 * its commit, alive. */
	while ((de = readdir(d)) != NULL)
		if (parse_number(de->d_name, &uid))
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	unlinkat(mbox_fd, name, AT_REMOVEDIR);
}

void
body_cache_forget_mailbox(BodyCache *bc, const char *mailbox,
                          guint32 keep_uidvalidity)
{
	char *safe = disk_cache_safe_name(mailbox);
	char *prefix = g_strconcat(safe, "/", NULL);
	GHashTableIter it;
	gpointer value;
	GPtrArray *doomed = g_ptr_array_new();
	DIR *d;
	struct dirent *de;

	g_mutex_lock(&bc->lock);
	g_hash_table_iter_init(&it, bc->index);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		BodyEntry *e = value;

		if (g_str_has_prefix(e->key, prefix) &&
		    e->uidvalidity != keep_uidvalidity)
			g_ptr_array_add(doomed, e);
	}
	for (guint i = 0; i < doomed->len; i++)
		drop_body(bc, doomed->pdata[i]);
	d = open_subdir(bc->dir_fd, safe);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			guint32 uv;

			if (parse_number(de->d_name, &uv) &&
			    uv != keep_uidvalidity)
				remove_uidvalidity_dir(dirfd(d), de->d_name);
		}
		closedir(d);
		if (keep_uidvalidity == 0)
			unlinkat(bc->dir_fd, safe, AT_REMOVEDIR);
	}
	g_mutex_unlock(&bc->lock);
	g_ptr_array_free(doomed, TRUE);
	g_free(prefix);
	g_free(safe);
}

guint64
body_cache_size(BodyCache *bc)
{
	guint64 total;

	g_mutex_lock(&bc->lock);
	total = bc->total;
	g_mutex_unlock(&bc->lock);
	return total;
}

guint
body_cache_count(BodyCache *bc)
{
	guint n;

	g_mutex_lock(&bc->lock);
	n = g_hash_table_size(bc->index);
	g_mutex_unlock(&bc->lock);
	return n;
}

gboolean
body_cache_has(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
               guint32 uid)
{
	g_autofree char *key = NULL;
	gboolean has;

	if (bc == NULL)
		return FALSE;
	key = body_key(mailbox, uidvalidity, uid);
	g_mutex_lock(&bc->lock);
	has = g_hash_table_contains(bc->index, key);
	g_mutex_unlock(&bc->lock);
	return has;
}
