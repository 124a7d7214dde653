/* ops_file.c - opening, reading and writing files. Messages are read with
 * partial fetches into a per-open window that grows while reading is
 * sequential; their sizes are only trusted once a read saw the end, so
 * until then the file is opened direct_io and a wrong RFC822.SIZE cannot
 * truncate or pad what is read. Written files are uploads (upload.c). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "imapfs.h"

#define WINDOW_MIN (256u * 1024)
#define WINDOW_MAX (8u * 1024 * 1024)
#define WHOLE_BELOW (1024u * 1024) /* small messages: one fetch */

typedef struct {
	Upload *upload; /* set for written files */
	char *mailbox;
	guint32 uid;
	guint64 size_hint;
	gboolean verified;
	GMutex lock;
	char *win;
	guint64 win_off, win_len, win_cap;
	guint64 next_off; /* where a sequential reader continues */
	guint64 chunk;
	gboolean eof_known;
	guint64 eof;
} Handle;

static Handle *
handle_of(struct fuse_file_info *fi)
{
	return (Handle *)(uintptr_t)fi->fh;
}

static void
handle_free(Handle *h)
{
	upload_unref(h->upload);
	g_free(h->mailbox);
	g_free(h->win);
	g_mutex_clear(&h->lock);
	g_free(h);
}

static Handle *
handle_new(void)
{
	Handle *h = g_new0(Handle, 1);

	g_mutex_init(&h->lock);
	h->chunk = WINDOW_MIN;
	return h;
}

static int
open_upload(Upload *u, struct fuse_file_info *fi)
{
	Handle *h = handle_new();

	if (fi->flags & O_TRUNC)
		upload_truncate(u, 0);
	h->upload = u;
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	return 0;
}

static int
op_open(const char *path, struct fuse_file_info *fi)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	StoreMessage m;
	Handle *h;
	Upload *u;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	u = upload_lookup(fs, path);
	if (u != NULL)
		return open_upload(u, fi);
	rc = imapfs_find_message(fs, &info, &m);
	if (rc != 0)
		return rc;
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return fs->read_only ? -EROFS : -EPERM;
	h = handle_new();
	h->mailbox = g_strdup(info.parent);
	h->uid = m.uid;
	h->size_hint = m.size;
	h->verified = m.size_verified || fs->exact_sizes;
	/* Message bytes never change: pages cached by the kernel stay
	 * valid across opens. */
	fi->keep_cache = h->verified;
	fi->direct_io = !h->verified;
	fi->fh = (uintptr_t)h;
	return 0;
}

/* Fetches the window that serves a read at off. Called with h->lock. */
static int
fill_window(Imapfs *fs, Handle *h, guint64 off, size_t size)
{
	ImapError *err = NULL;
	guint64 want, got = 0;
	ImapStatus st;

	if (off == h->next_off && off > 0)
		h->chunk = MIN(h->chunk * 2, WINDOW_MAX);
	else if (off != h->next_off)
		h->chunk = WINDOW_MIN;
	want = MAX((guint64)size, h->chunk);
	if (off == 0 && h->size_hint < WHOLE_BELOW)
		want = MAX(want, h->size_hint + 4096);
	if (want > h->win_cap) {
		g_free(h->win);
		h->win = g_malloc(want);
		h->win_cap = want;
	}
	h->win_len = 0;
	st = store_read(fs->store, h->mailbox, h->uid, off, want, h->win, &got,
			&err);
	if (st != IMAP_OK) {
		g_autofree char *what = g_strdup_printf("%s UID %u", h->mailbox,
							h->uid);
		return imapfs_errno("read", what, st, err);
	}
	h->win_off = off;
	h->win_len = got;
	if (got < want) {
		h->eof_known = TRUE;
		h->eof = off + got;
		if (h->eof != h->size_hint)
			g_message("%s UID %u: RFC822.SIZE said %" G_GUINT64_FORMAT
				  ", body has %" G_GUINT64_FORMAT " bytes",
				  h->mailbox, h->uid, h->size_hint, h->eof);
		store_note_size(fs->store, h->mailbox, h->uid, h->eof);
	}
	return 0;
}

static int
op_read(const char *path, char *buf, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	Handle *h = handle_of(fi);
	guint64 o = (guint64)off, n;
	int rc = 0;

	if (h->upload != NULL) {
		Upload *u = h->upload;
		g_mutex_lock(&u->lock);
		n = o < u->data->len ? MIN(size, u->data->len - o) : 0;
		memcpy(buf, u->data->data + o, n);
		g_mutex_unlock(&u->lock);
		return (int)n;
	}
	g_mutex_lock(&h->lock);
	if (h->eof_known && o >= h->eof)
		goto out;
	if (o < h->win_off || o >= h->win_off + h->win_len ||
	    (o + size > h->win_off + h->win_len && !h->eof_known))
		rc = fill_window(imapfs_get(), h, o, size);
	if (rc == 0 && o >= h->win_off && o < h->win_off + h->win_len) {
		n = MIN((guint64)size, h->win_off + h->win_len - o);
		memcpy(buf, h->win + (o - h->win_off), n);
		h->next_off = o + n;
		rc = (int)n;
	}
out:
	g_mutex_unlock(&h->lock);
	return rc;
}

static int
op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	StoreMessage m;
	StoreMailbox mb = {0};
	ImapError *err = NULL;
	ImapStatus st;
	Upload *u;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	if (info.parent == NULL || info.kind == FS_PATH_ROOT)
		return -EPERM;
	if (fs->read_only)
		return -EROFS;
	st = store_mailbox(fs->store, info.parent, &mb, &err);
	if (st != IMAP_OK)
		return imapfs_errno("create in", info.parent, st, err);
	rc = (mb.attrs & IMAP_MBOX_NOSELECT) ? -EPERM : 0;
	store_mailbox_clear(&mb);
	if (rc != 0)
		return rc;
	if (imapfs_find_message(fs, &info, &m) == 0)
		return -EEXIST;
	u = upload_create(fs, path, info.parent, info.leaf);
	return open_upload(u, fi);
}

static int
op_write(const char *path, const char *buf, size_t size, off_t off,
	 struct fuse_file_info *fi)
{
	Handle *h = handle_of(fi);

	if (h->upload == NULL)
		return -EPERM;
	return upload_write(h->upload, buf, size, off);
}

/* close() reports an upload failure: flush is where it can. */
static int
op_flush(const char *path, struct fuse_file_info *fi)
{
	Handle *h = handle_of(fi);
	Upload *u = h->upload;
	gboolean send;

	if (u == NULL)
		return 0;
	g_mutex_lock(&u->lock);
	send = u->dirty && !u->deferred && !u->committed && u->data->len > 0;
	g_mutex_unlock(&u->lock);
	if (!send)
		return 0;
	return upload_commit(imapfs_get(), u, u->mailbox, u->leaf);
}

static int
op_release(const char *path, struct fuse_file_info *fi)
{
	handle_free(handle_of(fi));
	return 0;
}

static int
op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	Imapfs *fs = imapfs_get();
	Upload *u = fi != NULL ? handle_of(fi)->upload : NULL;
	int rc;

	if (u != NULL)
		return upload_truncate(u, size);
	u = upload_lookup(fs, path);
	if (u == NULL)
		return fs->read_only ? -EROFS : -EPERM;
	rc = upload_truncate(u, size);
	upload_unref(u);
	return rc;
}

static int
op_utimens(const char *path, const struct timespec tv[2],
	   struct fuse_file_info *fi)
{
	Imapfs *fs = imapfs_get();
	Upload *u = upload_lookup(fs, path);

	if (u == NULL) {
		/* A message's date is fixed on the server; accepting the
		 * call keeps cp -p and rsync quiet about it. */
		return 0;
	}
	g_mutex_lock(&u->lock);
	if (tv == NULL || tv[1].tv_nsec == UTIME_NOW)
		u->mtime = g_get_real_time() / G_USEC_PER_SEC;
	else if (tv[1].tv_nsec != UTIME_OMIT)
		u->mtime = tv[1].tv_sec;
	g_mutex_unlock(&u->lock);
	upload_unref(u);
	return 0;
}

/* Modes and owners are fixed (0600/0700, the mounting user); rsync -a and
 * cp -p set them anyway, so the calls succeed without effect. */
static int
op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return 0;
}

static int
op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	return 0;
}

void
imapfs_file_ops(struct fuse_operations *ops)
{
	ops->open = op_open;
	ops->read = op_read;
	ops->create = op_create;
	ops->write = op_write;
	ops->flush = op_flush;
	ops->release = op_release;
	ops->truncate = op_truncate;
	ops->utimens = op_utimens;
	ops->chmod = op_chmod;
	ops->chown = op_chown;
}
