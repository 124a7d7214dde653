/* ops_file.c - opening, reading and writing files. Message bodies come
 * through cache/ (body cache, or windowed partial fetches). A size is
 * trusted only once known exactly (cached body, verified before, or
 * -o exact_sizes); until then the file is opened direct_io, so a wrong
 * RFC822.SIZE can neither truncate nor pad what is read. Written files are
 * uploads (upload.c). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "imapfs.h"

typedef struct {
	Upload *upload;  /* set for written files */
	StoreBody *body; /* set for messages */
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
	store_body_close(h->body);
	g_free(h);
}

static int
open_upload(Upload *u, struct fuse_file_info *fi)
{
	Handle *h = g_new0(Handle, 1);

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
	ImapError *err = NULL;
	StoreMessage m;
	StoreBody *body;
	guint64 size;
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
	body = store_body_open(fs->store, info.parent, m.uid, &err);
	if (body == NULL)
		return imapfs_errno("open", path,
		                    err ? err->status : IMAP_EPROTO, err);
	h = g_new0(Handle, 1);
	h->body = body;
	/* Message bytes never change: pages the kernel cached stay valid
	 * across opens, once the size is known to be right. */
	if (store_body_exact_size(body, &size) || fs->exact_sizes) {
		fi->keep_cache = 1;
	} else {
		fi->direct_io = 1;
	}
	/* Nothing to report at close: spare grep -r a FLUSH per file. */
	fi->noflush = 1;
	fi->fh = (uintptr_t)h;
	return 0;
}

static int
op_read(const char *path, char *buf, size_t size, off_t off,
        struct fuse_file_info *fi)
{
	Handle *h = handle_of(fi);
	ImapError *err = NULL;
	guint64 o = (guint64)off, n = 0;
	ImapStatus st;

	if (h->upload != NULL) {
		Upload *u = h->upload;
		g_mutex_lock(&u->lock);
		n = o < u->data->len ? MIN(size, u->data->len - o) : 0;
		memcpy(buf, u->data->data + o, n);
		g_mutex_unlock(&u->lock);
		return (int)n;
	}
	st = store_body_read(h->body, o, size, buf, &n, &err);
	if (st != IMAP_OK) {
		g_autofree char *what = store_body_describe(h->body);
		return imapfs_errno("read", what, st, err);
	}
	return (int)n;
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
