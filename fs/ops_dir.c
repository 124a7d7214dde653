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

/* What opendir saw, served by readdir at any offset: a listing that
 * changes between two readdir calls cannot skip or repeat entries, and
 * real offsets spare the kernel a LOOKUP per entry. */
typedef struct {
	GPtrArray *dirs;       /* child directory names */
	StoreListing *listing; /* messages, or NULL */
	GPtrArray *uploads;    /* pending upload names */
} DirSnapshot;

static void
snapshot_free(DirSnapshot *d)
{
	if (d == NULL)
		return;
	g_ptr_array_free(d->dirs, TRUE);
	if (d->uploads != NULL)
		g_ptr_array_free(d->uploads, TRUE);
	store_listing_unref(d->listing);
	g_free(d);
}

static int
snapshot_children(Imapfs *fs, const char *parent, DirSnapshot *d)
{
	GPtrArray *children = NULL;
	ImapError *err = NULL;
	ImapStatus st = store_children(fs->store, parent, &children, &err);
	gsize skip = parent != NULL ? strlen(parent) + 1 : 0;
	guint32 uid;

	if (st != IMAP_OK)
		return imapfs_errno("list", parent ? parent : "/", st, err);
	for (guint i = 0; i < children->len; i++) {
		const StoreMailbox *m = children->pdata[i];
		char *name = fs_path_encode_component(m->name + skip);
		/* A mailbox called "12.eml" would shadow message 12 inside
		 * its parent; the message wins (path.c classifies so). */
		if (parent != NULL && fs_message_name_parse(name, &uid)) {
			g_message("mailbox %s hidden: its name looks like a "
			          "message file",
			          m->name);
			g_free(name);
			continue;
		}
		g_ptr_array_add(d->dirs, name);
	}
	g_ptr_array_free(children, TRUE);
	return 0;
}

static int
snapshot_messages(Imapfs *fs, const char *mailbox, DirSnapshot *d)
{
	ImapError *err = NULL;
	ImapStatus st =
	    store_messages(fs->store, mailbox, FALSE, &d->listing, &err);

	if (st != IMAP_OK)
		return imapfs_errno("list messages of", mailbox, st, err);
	return 0;
}

static int
snapshot_take(Imapfs *fs, const FsPathInfo *info, DirSnapshot *d)
{
	guint attrs = 0;
	int rc;

	if (info->kind == FS_PATH_ROOT) {
		rc = snapshot_children(fs, NULL, d);
		/* A walk of the whole account (rsync, find, grep -r) opens
		 * every folder next: one round trip now saves one each. */
		if (rc == 0)
			store_check_listings(fs->store);
		return rc;
	}
	if (info->kind != FS_PATH_MAILBOX)
		return -ENOTDIR;
	rc = lookup_mailbox(fs, info->mailbox, &attrs);
	if (rc == 0)
		upload_retry_failed(fs, info->mailbox);
	if (rc == 0)
		rc = snapshot_children(fs, info->mailbox, d);
	if (rc == 0 && !(attrs & IMAP_MBOX_NOSELECT))
		rc = snapshot_messages(fs, info->mailbox, d);
	if (rc == 0)
		d->uploads = upload_names_in(fs, info->mailbox);
	return rc;
}

static int
op_opendir(const char *path, struct fuse_file_info *fi)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	DirSnapshot *d;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	imapfs_refresh_if_requested(fs);
	d = g_new0(DirSnapshot, 1);
	d->dirs = g_ptr_array_new_with_free_func(g_free);
	rc = snapshot_take(fs, &info, d);
	if (rc != 0) {
		snapshot_free(d);
		return rc;
	}
	fi->fh = (uintptr_t)d;
	return 0;
}

/* Entry i of the snapshot (0 ".", 1 "..", then directories, messages and
 * uploads); FALSE past the end. */
static gboolean
snapshot_entry(Imapfs *fs, DirSnapshot *d, guint64 i, char *buf, gsize bufsize,
               const char **name, struct stat *st, gboolean *has_stat)
{
	guint nmsg = d->listing != NULL ? d->listing->msgs->len : 0;
	guint nup = d->uploads != NULL ? d->uploads->len : 0;

	*has_stat = TRUE;
	if (i < 2) {
		*name = i == 0 ? "." : "..";
		*has_stat = FALSE;
		return TRUE;
	}
	i -= 2;
	if (i < d->dirs->len) {
		*name = d->dirs->pdata[i];
		dir_stat(fs, st);
		return TRUE;
	}
	i -= d->dirs->len;
	if (i < nmsg) {
		const StoreMessage *m =
		    &g_array_index(d->listing->msgs, StoreMessage, i);
		fs_message_name_format(m->uid, buf);
		*name = buf;
		imapfs_message_stat(fs, m, st);
		return TRUE;
	}
	i -= nmsg;
	if (i < nup) {
		*name = d->uploads->pdata[i];
		*has_stat = FALSE;
		return TRUE;
	}
	(void)bufsize;
	return FALSE;
}

static int
op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
           struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	Imapfs *fs = imapfs_get();
	DirSnapshot *d = (DirSnapshot *)(uintptr_t)fi->fh;
	char namebuf[FS_MESSAGE_NAME_SIZE];
	const char *name;
	struct stat st;
	gboolean has_stat;

	for (guint64 i = off < 0 ? 0 : (guint64)off; snapshot_entry(
	         fs, d, i, namebuf, sizeof(namebuf), &name, &st, &has_stat);
	     i++) {
		if (filler(buf, name, has_stat ? &st : NULL, (off_t)(i + 1),
		           has_stat ? FUSE_FILL_DIR_PLUS : 0) != 0)
			break;
	}
	return 0;
}

static int
op_releasedir(const char *path, struct fuse_file_info *fi)
{
	snapshot_free((DirSnapshot *)(uintptr_t)fi->fh);
	return 0;
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
	return st == IMAP_OK ? 0
	                     : imapfs_errno("rename", from->mailbox, st, err);
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
		rc = dst.parent == NULL
		         ? -EPERM
		         : upload_commit(fs, u, dst.parent, dst.leaf);
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
	ops->opendir = op_opendir;
	ops->readdir = op_readdir;
	ops->releasedir = op_releasedir;
	ops->mkdir = op_mkdir;
	ops->rmdir = op_rmdir;
	ops->unlink = op_unlink;
	ops->rename = op_rename;
	ops->statfs = op_statfs;
}
