/* ops_dir.c - the tree: getattr, readdir, mkdir, rmdir, rename, unlink and
 * statfs. Directories are mailboxes, files are messages or uploads that
 * are still being written. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "imapfs.h"

int
imapfs_classify(Imapfs *fs, const char *path, FsPathInfo *info)
{
	return fs_path_classify(path, store_delimiter(fs->store), info);
}

static void
dir_stat(Imapfs *fs, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | 0700;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 65536;
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
		(time_t)fs->mounted_at;
}

void
imapfs_message_stat(Imapfs *fs, const StoreMessage *m, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | (fs->read_only ? 0400 : 0600);
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)m->size;
	st->st_blocks = (blkcnt_t)((m->size + 511) / 512);
	st->st_blksize = 65536;
	st->st_ino = 0;
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
		(time_t)m->internaldate;
}

static void
upload_stat(Imapfs *fs, Upload *u, struct stat *st)
{
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;

	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	g_mutex_lock(&u->lock);
	st->st_size = (off_t)u->data->len;
	st->st_mtim.tv_sec = (time_t)(u->mtime > 0 ? u->mtime : now);
	g_mutex_unlock(&u->lock);
	st->st_ctim = st->st_atim = st->st_mtim;
	st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
	st->st_blksize = 65536;
}

/* 0 if name is an existing mailbox (selectable or not); fills attrs. */
static int
lookup_mailbox(Imapfs *fs, const char *name, guint *attrs)
{
	StoreMailbox mb = {0};
	ImapError *err = NULL;
	ImapStatus st = store_mailbox(fs->store, name, &mb, &err);

	if (st != IMAP_OK)
		return imapfs_errno("lookup", name, st, err);
	if (attrs != NULL)
		*attrs = mb.attrs;
	store_mailbox_clear(&mb);
	return 0;
}

int
imapfs_find_message(Imapfs *fs, const FsPathInfo *info, StoreMessage *out)
{
	ImapError *err = NULL;
	ImapStatus st;
	guint attrs = 0;
	int rc;

	if (info->parent == NULL)
		return -ENOENT;
	rc = lookup_mailbox(fs, info->parent, &attrs);
	if (rc != 0)
		return rc;
	if (attrs & IMAP_MBOX_NOSELECT)
		return -ENOENT;
	st = store_message(fs->store, info->parent,
			   info->kind == FS_PATH_MESSAGE ? info->uid : 0,
			   info->leaf, out, &err);
	if (st != IMAP_OK)
		return imapfs_errno("lookup", info->leaf, st, err);
	return 0;
}

static int
op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	StoreMessage m;
	Upload *u;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	if (info.kind == FS_PATH_ROOT) {
		dir_stat(fs, st);
		return 0;
	}
	if (info.kind == FS_PATH_MAILBOX &&
	    lookup_mailbox(fs, info.mailbox, NULL) == 0) {
		dir_stat(fs, st);
		return 0;
	}
	u = upload_lookup(fs, path);
	if (u != NULL) {
		upload_stat(fs, u, st);
		upload_unref(u);
		return 0;
	}
	rc = imapfs_find_message(fs, &info, &m);
	if (rc == 0)
		imapfs_message_stat(fs, &m, st);
	return rc;
}

static int
fill_children(Imapfs *fs, const char *parent, void *buf,
	      fuse_fill_dir_t filler)
{
	GPtrArray *children = NULL;
	ImapError *err = NULL;
	ImapStatus st = store_children(fs->store, parent, &children, &err);
	gsize skip = parent != NULL ? strlen(parent) + 1 : 0;
	struct stat dst;

	if (st != IMAP_OK)
		return imapfs_errno("list", parent ? parent : "/", st, err);
	dir_stat(fs, &dst);
	for (guint i = 0; i < children->len; i++) {
		const StoreMailbox *m = children->pdata[i];
		g_autofree char *name =
			fs_path_encode_component(m->name + skip);
		guint32 uid;
		/* A mailbox called "12.eml" would shadow message 12 inside
		 * its parent; the message wins (path.c classifies so). */
		if (parent != NULL && fs_message_name_parse(name, &uid)) {
			g_message("mailbox %s hidden: its name looks like a "
				  "message file",
				  m->name);
			continue;
		}
		filler(buf, name, &dst, 0, FUSE_FILL_DIR_PLUS);
	}
	g_ptr_array_free(children, TRUE);
	return 0;
}

static int
fill_messages(Imapfs *fs, const char *mailbox, void *buf,
	      fuse_fill_dir_t filler)
{
	StoreListing *l = NULL;
	ImapError *err = NULL;
	ImapStatus st = store_messages(fs->store, mailbox, FALSE, &l, &err);
	char name[FS_MESSAGE_NAME_SIZE];
	struct stat mst;

	if (st != IMAP_OK)
		return imapfs_errno("list messages of", mailbox, st, err);
	for (guint i = 0; i < l->msgs->len; i++) {
		const StoreMessage *m = &g_array_index(l->msgs, StoreMessage, i);
		fs_message_name_format(m->uid, name);
		imapfs_message_stat(fs, m, &mst);
		if (filler(buf, name, &mst, 0, FUSE_FILL_DIR_PLUS) != 0)
			break;
	}
	store_listing_unref(l);
	return 0;
}

static void
fill_uploads(Imapfs *fs, const char *mailbox, void *buf,
	     fuse_fill_dir_t filler)
{
	GPtrArray *names = upload_names_in(fs, mailbox);

	for (guint i = 0; i < names->len; i++)
		filler(buf, names->pdata[i], NULL, 0, 0);
	g_ptr_array_free(names, TRUE);
}

static int
op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
	   struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	guint attrs = 0;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	imapfs_refresh_if_requested(fs);
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	if (info.kind == FS_PATH_ROOT)
		return fill_children(fs, NULL, buf, filler);
	if (info.kind != FS_PATH_MAILBOX)
		return -ENOTDIR;
	rc = lookup_mailbox(fs, info.mailbox, &attrs);
	if (rc != 0)
		return rc;
	rc = fill_children(fs, info.mailbox, buf, filler);
	if (rc == 0 && !(attrs & IMAP_MBOX_NOSELECT))
		rc = fill_messages(fs, info.mailbox, buf, filler);
	if (rc == 0)
		fill_uploads(fs, info.mailbox, buf, filler);
	return rc;
}

static int
op_mkdir(const char *path, mode_t mode)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	ImapError *err = NULL;
	ImapStatus st;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	if (info.kind != FS_PATH_MAILBOX)
		return -EINVAL;
	if (fs->read_only)
		return -EROFS;
	if (lookup_mailbox(fs, info.mailbox, NULL) == 0)
		return -EEXIST;
	st = store_create_mailbox(fs->store, info.mailbox, &err);
	return st == IMAP_OK ? 0 : imapfs_errno("mkdir", path, st, err);
}

static int
op_rmdir(const char *path)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	ImapError *err = NULL;
	gboolean not_empty = FALSE;
	ImapStatus st;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	if (info.kind != FS_PATH_MAILBOX)
		return -ENOTDIR;
	if (fs->read_only)
		return -EROFS;
	st = store_delete_mailbox(fs->store, info.mailbox, &not_empty, &err);
	if (not_empty) {
		imap_error_free(err);
		return -ENOTEMPTY;
	}
	return st == IMAP_OK ? 0 : imapfs_errno("rmdir", path, st, err);
}

static int
op_unlink(const char *path)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	ImapError *err = NULL;
	StoreMessage m;
	ImapStatus st;
	Upload *u;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	u = upload_lookup(fs, path);
	if (u != NULL) {
		upload_forget(fs, u);
		upload_unref(u);
		return 0;
	}
	if (fs->read_only)
		return -EROFS;
	rc = imapfs_find_message(fs, &info, &m);
	if (rc != 0)
		return rc;
	st = store_delete_message(fs->store, info.parent, m.uid, &err);
	return st == IMAP_OK ? 0 : imapfs_errno("rm", path, st, err);
}

static int
rename_mailbox(Imapfs *fs, const FsPathInfo *from, const FsPathInfo *to)
{
	ImapError *err = NULL;
	ImapStatus st;

	if (to->kind != FS_PATH_MAILBOX)
		return -EINVAL;
	st = store_rename_mailbox(fs->store, from->mailbox, to->mailbox, &err);
	return st == IMAP_OK ? 0 : imapfs_errno("rename", from->mailbox, st,
						  err);
}

static int
rename_message(Imapfs *fs, const FsPathInfo *from, const FsPathInfo *to)
{
	ImapError *err = NULL;
	StoreMessage m;
	guint32 new_uid = 0;
	guint attrs = 0;
	ImapStatus st;
	int rc = imapfs_find_message(fs, from, &m);

	if (rc != 0)
		return rc;
	if (to->parent == NULL)
		return -EPERM; /* the root holds no messages */
	rc = lookup_mailbox(fs, to->parent, &attrs);
	if (rc != 0)
		return rc;
	if (attrs & IMAP_MBOX_NOSELECT)
		return -EPERM;
	if (fs_mailbox_equal(from->parent, to->parent,
			     store_delimiter(fs->store)))
		return strcmp(from->leaf, to->leaf) == 0 ? 0 : -EINVAL;
	st = store_move_message(fs->store, from->parent, m.uid, to->parent,
				to->leaf, &new_uid, &err);
	return st == IMAP_OK ? 0 : imapfs_errno("mv", from->leaf, st, err);
}

static int
op_rename(const char *from, const char *to, unsigned int flags)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) src = {0};
	g_auto(FsPathInfo) dst = {0};
	Upload *u;
	int rc;

	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	if ((rc = imapfs_classify(fs, from, &src)) != 0 ||
	    (rc = imapfs_classify(fs, to, &dst)) != 0)
		return rc;
	u = upload_lookup(fs, from);
	if (u != NULL) {
		rc = dst.parent == NULL ? -EPERM
					: upload_commit(fs, u, dst.parent,
							dst.leaf);
		upload_unref(u);
		return rc;
	}
	if (fs->read_only)
		return -EROFS;
	if (src.kind == FS_PATH_MAILBOX &&
	    lookup_mailbox(fs, src.mailbox, NULL) == 0)
		return rename_mailbox(fs, &src, &dst);
	return rename_message(fs, &src, &dst);
}

static int
op_statfs(const char *path, struct statvfs *sv)
{
	Imapfs *fs = imapfs_get();
	ImapError *err = NULL;
	guint64 used = 0, limit = 0;

	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 1024;
	sv->f_namemax = FS_NAME_MAX;
	if (store_quota(fs->store, &used, &limit, &err) == IMAP_OK) {
		sv->f_blocks = limit;
		sv->f_bfree = sv->f_bavail = limit > used ? limit - used : 0;
	}
	imap_error_free(err);
	return 0;
}

void
imapfs_dir_ops(struct fuse_operations *ops)
{
	ops->getattr = op_getattr;
	ops->readdir = op_readdir;
	ops->mkdir = op_mkdir;
	ops->rmdir = op_rmdir;
	ops->unlink = op_unlink;
	ops->rename = op_rename;
	ops->statfs = op_statfs;
}
