/* lowlevel.c - the daemon's front end on libfuse's low-level API. The
 * operations (ops_*.c) work on paths, as libfuse's high-level API hands
 * them; this file gives the kernel inode numbers (nodes.c) and turns each
 * request back into a path. We do not use the high-level API because it
 * keeps a node of about 180 bytes for every inode the kernel knows, which
 * after `ls -l` of a big mailbox is one per message; here a message's
 * number is computed and costs nothing.
 *
 * File handle operations (read, write, flush, release) get no path: the
 * handle is all ops_file.c uses, as with the high-level nullpath_ok.
 *
 * A read-only mount that trusts RFC822.SIZE (-o read_only,exact_sizes)
 * lets the kernel open messages without asking (FUSE no_open): nothing
 * can be written, and no size needs direct_io, so OPEN, FLUSH and
 * RELEASE have nothing to do, and they were two round trips per file of
 * a warm `grep -r` (3x a local grep; without them 1.2-1.4x). Reads then come
 * with no handle (fh 0) and get one from handles.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>

#include "imapfs.h"
#include "fs/handles.h"
#include "fs/nodes.h"

/* d_ino of a name whose number is not known, as libfuse's high-level API
 * sends it; the kernel looks the name up when it needs more. */
#define UNKNOWN_INO 0xffffffffu

static struct {
	const struct fuse_operations *ops;
	FsNodes *nodes;
	struct fuse_session *se;
	GMutex notify_lock; /* the watcher notifies while we tear down */
	gboolean serving;
	double timeout; /* entries and attributes */
	void (*init)(struct fuse_conn_info *conn);
	FsHandles *handles; /* set when the kernel opens files itself */
	GAsyncQueue *inval; /* inode numbers (guint64 *) to invalidate */
	GThread *notifier;
} ll;

/* Tells the notifier thread to end. */
#define NOTIFIER_STOP G_MAXUINT64

/* Handles kept for reads without OPEN: a few readers at once each, and
 * a walk's recent files; not so many bytes of them that the body cache,
 * which cannot evict a body a handle holds, grows far past its limit. */
#define HANDLES_KEPT       64
#define HANDLES_KEPT_BYTES (64u << 20)

static int
path_of(fuse_ino_t ino, const char *child, char **path)
{
	return fs_nodes_path(ll.nodes, ino, child, path);
}

static void
reply_rc(fuse_req_t req, int rc)
{
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

/* Fills an entry for path (in parent, as name), counting one lookup. */
static int
make_entry(fuse_ino_t parent, const char *name, const char *path,
           gboolean as_node, struct fuse_entry_param *e)
{
	int rc;

	memset(e, 0, sizeof(*e));
	rc = ll.ops->getattr(path, &e->attr, NULL);
	if (rc != 0)
		return rc;
	e->ino = as_node ? fs_nodes_ref_node(ll.nodes, parent, name)
	                 : fs_nodes_ref(ll.nodes, parent, name,
	                                S_ISREG(e->attr.st_mode));
	if (e->ino == 0)
		return -ESTALE;
	e->attr.st_ino = e->ino;
	e->attr_timeout = e->entry_timeout = ll.timeout;
	return 0;
}

static int
open_for_read(guint64 ino, guint64 *fh, guint64 *bytes, void *user)
{
	struct fuse_file_info fi = {.flags = O_RDONLY};
	g_autofree char *path = NULL;
	struct stat st;
	int rc = path_of(ino, NULL, &path);

	if (rc == 0)
		rc = ll.ops->open(path, &fi);
	*fh = fi.fh;
	/* exact_sizes: the listing's size is the body's. A file whose size
	 * cannot be had (gone since) counts as empty until released. */
	if (rc == 0 && ll.ops->getattr(path, &st, &fi) == 0)
		*bytes = (guint64)st.st_size;
	return rc;
}

static void
release_for_read(guint64 fh, void *user)
{
	struct fuse_file_info fi = {.fh = fh};

	ll.ops->release(NULL, &fi);
}

static void
ll_init(void *data, struct fuse_conn_info *conn)
{
	Imapfs *fs = imapfs_get();

	ll.init(conn);
	/* Kernels without it would fail the open that gets ENOSYS. */
	if (fs->read_only && fs->exact_sizes &&
	    (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT)) {
		ll.handles =
		    fs_handles_new(HANDLES_KEPT, HANDLES_KEPT_BYTES,
		                   open_for_read, release_for_read, NULL);
		g_info("files are opened without asking the daemon "
		       "(read_only, exact_sizes)");
	}
}

static void
ll_destroy(void *data)
{
	FsHandles *handles;

	g_mutex_lock(&ll.notify_lock); /* the watcher may drop one */
	handles = g_steal_pointer(&ll.handles);
	g_mutex_unlock(&ll.notify_lock);
	fs_handles_free(handles);
	if (ll.ops->destroy != NULL)
		ll.ops->destroy(data);
}

/* The file's handle, or NULL for a file the kernel opened itself. */
static struct fuse_file_info *
handle_or_null(struct fuse_file_info *fi)
{
	return fi != NULL && fi->fh == 0 ? NULL : fi;
}

static void
ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	g_autofree char *path = NULL;
	struct fuse_entry_param e;
	int rc = path_of(parent, name, &path);

	if (rc == 0)
		rc = make_entry(parent, name, path, FALSE, &e);
	if (rc != 0) {
		reply_rc(req, rc);
		return;
	}
	if (fuse_reply_entry(req, &e) != 0)
		fs_nodes_forget(ll.nodes, e.ino, 1);
}

static void
ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_nodes_forget(ll.nodes, ino, nlookup);
	fuse_reply_none(req);
}

static void
ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		fs_nodes_forget(ll.nodes, f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void
ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	g_autofree char *path = NULL;
	struct stat st = {0};
	int rc = path_of(ino, NULL, &path);

	if (rc == 0)
		rc = ll.ops->getattr(path, &st, handle_or_null(fi));
	if (rc != 0) {
		reply_rc(req, rc);
		return;
	}
	st.st_ino = ino;
	fuse_reply_attr(req, &st, ll.timeout);
}

static int
apply_times(const char *path, const struct stat *attr, int to_set,
            struct fuse_file_info *fi)
{
	struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT},
	                         {.tv_nsec = UTIME_OMIT}};

	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	return ll.ops->utimens(path, tv, fi);
}

static void
ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
           struct fuse_file_info *fi)
{
	g_autofree char *path = NULL;
	int rc = path_of(ino, NULL, &path);

	fi = handle_or_null(fi);
	if (rc == 0 && (to_set & FUSE_SET_ATTR_MODE))
		rc = ll.ops->chmod(path, attr->st_mode, fi);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		rc = ll.ops->chown(
		    path,
		    (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
		    (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1,
		    fi);
	if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE))
		rc = ll.ops->truncate(path, attr->st_size, fi);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)))
		rc = apply_times(path, attr, to_set, fi);
	if (rc != 0) {
		reply_rc(req, rc);
		return;
	}
	ll_getattr(req, ino, fi);
}

static void
ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	g_autofree char *path = NULL;
	int rc = path_of(ino, NULL, &path);

	if (rc == 0)
		rc = ll.ops->opendir(path, fi);
	if (rc != 0) {
		reply_rc(req, rc);
		return;
	}
	if (fuse_reply_open(req, fi) != 0)
		ll.ops->releasedir(path, fi);
}

/* One READDIR(PLUS) reply being filled by the readdir operation. */
typedef struct {
	fuse_req_t req;
	fuse_ino_t dir;
	gboolean plus;
	char *buf;
	size_t size, len;
} DirFill;

static gboolean
is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

static size_t
add_plus(DirFill *f, const char *name, const struct stat *st, off_t off)
{
	struct fuse_entry_param e = {0};
	size_t n;

	e.attr = *st;
	e.ino = fs_nodes_ref(ll.nodes, f->dir, name, S_ISREG(st->st_mode));
	e.attr.st_ino = e.ino;
	e.attr_timeout = e.entry_timeout = ll.timeout;
	n = fuse_add_direntry_plus(f->req, f->buf + f->len, f->size - f->len,
	                           name, &e, off);
	/* Not sent: the kernel does not count it. */
	if (n > f->size - f->len && e.ino != 0)
		fs_nodes_forget(ll.nodes, e.ino, 1);
	return n;
}

/* d_ino of a name listed without attributes: what stat would show, when
 * known without a lookup (ls -i trusts it). */
static ino_t
dirent_ino(DirFill *f, const char *name)
{
	guint64 ino = is_dot(name) ? 0 : fs_nodes_peek(ll.nodes, f->dir, name);

	return ino != 0 ? (ino_t)ino : UNKNOWN_INO;
}

static int
dir_fill(void *data, const char *name, const struct stat *st, off_t off,
         enum fuse_fill_dir_flags flags)
{
	DirFill *f = data;
	size_t n;

	if (f->plus && st != NULL && (flags & FUSE_FILL_DIR_PLUS) &&
	    !is_dot(name)) {
		n = add_plus(f, name, st, off);
	} else if (f->plus) {
		/* Ino 0: names only, the kernel looks it up if it cares. */
		struct fuse_entry_param e = {0};
		e.attr.st_ino = dirent_ino(f, name);
		e.attr.st_mode = st != NULL ? st->st_mode : 0;
		n = fuse_add_direntry_plus(f->req, f->buf + f->len,
		                           f->size - f->len, name, &e, off);
	} else {
		struct stat s = {0};
		s.st_ino = dirent_ino(f, name);
		s.st_mode = st != NULL ? st->st_mode : 0;
		n = fuse_add_direntry(f->req, f->buf + f->len, f->size - f->len,
		                      name, &s, off);
	}
	if (n > f->size - f->len)
		return 1;
	f->len += n;
	return 0;
}

static void
readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               struct fuse_file_info *fi, gboolean plus)
{
	DirFill f = {.req = req, .dir = ino, .plus = plus, .size = size};
	int rc;

	f.buf = g_malloc(size);
	rc = ll.ops->readdir(NULL, &f, dir_fill, off, fi,
	                     plus ? FUSE_READDIR_PLUS : 0);
	if (rc != 0)
		reply_rc(req, rc);
	else
		fuse_reply_buf(req, f.buf, f.len);
	g_free(f.buf);
}

static void
ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
           struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, FALSE);
}

static void
ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, TRUE);
}

static void
ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	reply_rc(req, ll.ops->releasedir(NULL, fi));
}

static void
ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	g_autofree char *path = NULL;
	int rc;

	if (ll.handles != NULL) {
		/* The kernel opens this and every later file itself. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	rc = path_of(ino, NULL, &path);
	if (rc == 0)
		rc = ll.ops->open(path, fi);
	if (rc != 0) {
		reply_rc(req, rc);
		return;
	}
	if (fs_nodes_is_stand_in(ll.nodes, ino)) {
		fi->keep_cache = 0;
		fi->direct_io = 1;
	}
	if (fuse_reply_open(req, fi) != 0)
		ll.ops->release(NULL, fi);
}

static void
ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
        struct fuse_file_info *fi)
{
	char *buf = g_malloc(size);
	struct fuse_file_info own = {0};
	FsHandleHold *hold;
	int rc;

	if (fi->fh == 0 && ll.handles != NULL) {
		rc = fs_handles_get(ll.handles, ino, &own.fh, &hold);
		if (rc == 0) {
			rc = ll.ops->read(NULL, buf, size, off, &own);
			fs_handles_put(ll.handles, hold);
		}
	} else if (fi->fh == 0)
		rc = -EBADF;
	else
		rc = ll.ops->read(NULL, buf, size, off, fi);
	if (rc < 0)
		reply_rc(req, rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
	g_free(buf);
}

static void
ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
         off_t off, struct fuse_file_info *fi)
{
	/* Only a file the kernel opened itself comes without a handle, and
	 * only on a read-only mount. */
	int rc = fi->fh == 0 ? -EROFS : ll.ops->write(NULL, buf, size, off, fi);

	if (rc < 0)
		reply_rc(req, rc);
	else
		fuse_reply_write(req, (size_t)rc);
}

static void
ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* ENOSYS: the kernel sends no FLUSH on this mount again; a
	 * read-only mount has no upload to report at close. */
	if (fi->fh == 0)
		fuse_reply_err(req, ll.handles != NULL ? ENOSYS : EBADF);
	else
		reply_rc(req, ll.ops->flush(NULL, fi));
}

static void
ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	reply_rc(req, fi->fh == 0 ? 0 : ll.ops->release(NULL, fi));
}

static void
ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
          struct fuse_file_info *fi)
{
	g_autofree char *path = NULL;
	struct fuse_entry_param e;
	int rc = path_of(parent, name, &path);

	if (rc == 0)
		rc = ll.ops->create(path, mode, fi);
	if (rc != 0) {
		reply_rc(req, rc);
		return;
	}
	rc = make_entry(parent, name, path, TRUE, &e);
	if (rc != 0) {
		ll.ops->release(NULL, fi);
		reply_rc(req, rc);
		return;
	}
	if (fuse_reply_create(req, &e, fi) != 0) {
		ll.ops->release(NULL, fi);
		fs_nodes_forget(ll.nodes, e.ino, 1);
	}
}

static void
ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	g_autofree char *path = NULL;
	struct fuse_entry_param e;
	int rc = path_of(parent, name, &path);

	if (rc == 0)
		rc = ll.ops->mkdir(path, mode | S_IFDIR);
	if (rc == 0)
		rc = make_entry(parent, name, path, FALSE, &e);
	if (rc != 0) {
		reply_rc(req, rc);
		return;
	}
	if (fuse_reply_entry(req, &e) != 0)
		fs_nodes_forget(ll.nodes, e.ino, 1);
}

static void
remove_common(fuse_req_t req, fuse_ino_t parent, const char *name,
              int (*op)(const char *))
{
	g_autofree char *path = NULL;
	int rc = path_of(parent, name, &path);

	if (rc == 0)
		rc = op(path);
	if (rc == 0)
		fs_nodes_removed(ll.nodes, parent, name);
	reply_rc(req, rc);
}

static void
ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, ll.ops->unlink);
}

static void
ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, ll.ops->rmdir);
}

static void
ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
          fuse_ino_t new_parent, const char *new_name, unsigned int flags)
{
	g_autofree char *from = NULL;
	g_autofree char *to = NULL;
	gboolean taken = FALSE;
	guint64 moved;
	struct stat st;
	int rc = path_of(parent, name, &from);

	if (rc == 0)
		rc = path_of(new_parent, new_name, &to);
	if (rc == 0) {
		taken =
		    ll.ops->getattr(to, &st, NULL) == 0 && S_ISREG(st.st_mode);
		rc = ll.ops->rename(from, to, flags);
	}
	if (rc == 0)
		fs_nodes_renamed(ll.nodes, parent, name, new_parent, new_name);
	/* A message moved onto a name another message has (UIDs of two
	 * folders meet) gets a UID of its own there, and the name keeps
	 * naming the message it named: the kernel's inode for the name
	 * (the moved file's) must not keep the moved message's size and
	 * pages. Its attributes are dropped before the reply, which needs
	 * no lock; its pages, which may be locked by a READ, later by the
	 * notifier thread. */
	if (rc == 0 && taken) {
		moved = fs_nodes_find(ll.nodes, to);
		fs_nodes_mark_stand_in(ll.nodes, moved);
		if (moved != 0)
			fuse_lowlevel_notify_inval_inode(ll.se, moved, -1, 0);
		imapfs_lowlevel_invalidate(to);
	}
	reply_rc(req, rc);
}

static void
ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc = ll.ops->statfs("/", &sv);

	if (rc != 0)
		reply_rc(req, rc);
	else
		fuse_reply_statfs(req, &sv);
}

/* getxattr and listxattr: a size of 0 asks for the length only. */
static void
reply_sized(fuse_req_t req, int rc, const char *buf, size_t size)
{
	if (rc < 0)
		reply_rc(req, rc);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
}

static void
ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	g_autofree char *path = NULL;
	g_autofree char *buf = size > 0 ? g_malloc(size) : NULL;
	int rc = path_of(ino, NULL, &path);

	if (rc == 0)
		rc = ll.ops->getxattr(path, name, buf, size);
	reply_sized(req, rc, buf, size);
}

static void
ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	g_autofree char *path = NULL;
	g_autofree char *buf = size > 0 ? g_malloc(size) : NULL;
	int rc = path_of(ino, NULL, &path);

	if (rc == 0)
		rc = ll.ops->listxattr(path, buf, size);
	reply_sized(req, rc, buf, size);
}

static void
ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
            size_t size, int flags)
{
	g_autofree char *path = NULL;
	int rc = path_of(ino, NULL, &path);

	if (rc == 0)
		rc = ll.ops->setxattr(path, name, value, size, flags);
	reply_rc(req, rc);
}

static void
ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	g_autofree char *path = NULL;
	int rc = path_of(ino, NULL, &path);

	if (rc == 0)
		rc = ll.ops->removexattr(path, name);
	reply_rc(req, rc);
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = ll_init,
    .destroy = ll_destroy,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .releasedir = ll_releasedir,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .create = ll_create,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .rename = ll_rename,
    .statfs = ll_statfs,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
    .setxattr = ll_setxattr,
    .removexattr = ll_removexattr,
};

static int
loop(struct fuse_session *se, const struct fuse_cmdline_opts *o)
{
	struct fuse_loop_config *cfg;
	int rc;

	if (o->singlethread)
		return fuse_session_loop(se);
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(cfg, (unsigned int)o->clone_fd);
	/* libfuse 3.14 leaves these at -1 unless -o max_idle_threads= or
	 * max_threads= are given, and complains when handed -1. */
	if (o->max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(cfg, o->max_idle_threads);
	if (o->max_threads != UINT_MAX)
		fuse_loop_cfg_set_max_threads(cfg, o->max_threads);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc;
}

/* Invalidations are the notifier's: the kernel locks the inode's pages
 * to drop them, and a READ holds some of those until it is answered. A
 * read that refreshes a listing (a no_open mount opens the body at its
 * first read) would wait for itself if it invalidated there, and a
 * thread holding a folder's refresh lock for a read waiting on that
 * lock. */
static gpointer
notifier_main(gpointer data)
{
	for (;;) {
		guint64 *ino = g_async_queue_pop(ll.inval);
		guint64 n = *ino;

		g_free(ino);
		if (n == NOTIFIER_STOP)
			return NULL;
		fuse_lowlevel_notify_inval_inode(ll.se, n, 0, 0);
	}
}

static void
start_notifier(void)
{
	ll.inval = g_async_queue_new();
	ll.notifier = g_thread_new("fuse-notify", notifier_main, NULL);
	g_mutex_lock(&ll.notify_lock);
	ll.serving = TRUE;
	g_mutex_unlock(&ll.notify_lock);
}

static void
stop_notifier(void)
{
	guint64 stop = NOTIFIER_STOP;

	g_mutex_lock(&ll.notify_lock);
	ll.serving = FALSE;
	g_mutex_unlock(&ll.notify_lock);
	g_async_queue_push(ll.inval, g_memdup2(&stop, sizeof(stop)));
	g_thread_join(g_steal_pointer(&ll.notifier));
	g_async_queue_unref(g_steal_pointer(&ll.inval));
}

int
imapfs_lowlevel_main(struct fuse_args *args, const struct fuse_operations *ops,
                     void (*init)(struct fuse_conn_info *conn), double timeout,
                     void *data)
{
	struct fuse_cmdline_opts o = {0};
	int rc = 1;

	if (fuse_parse_cmdline(args, &o) != 0)
		return 1;
	ll.ops = ops;
	ll.init = init;
	ll.timeout = timeout;
	ll.nodes = fs_nodes_new();
	ll.se = fuse_session_new(args, &ll_ops, sizeof(ll_ops), data);
	if (ll.se == NULL)
		goto out;
	if (fuse_set_signal_handlers(ll.se) != 0)
		goto out_session;
	if (fuse_session_mount(ll.se, o.mountpoint) != 0)
		goto out_signals;
	start_notifier();
	rc = loop(ll.se, &o) != 0 ? 1 : 0;
	stop_notifier();
	fuse_session_unmount(ll.se);
out_signals:
	fuse_remove_signal_handlers(ll.se);
out_session:
	fuse_session_destroy(ll.se);
	ll.se = NULL;
out:
	fs_nodes_free(ll.nodes);
	ll.nodes = NULL;
	free(o.mountpoint);
	return rc;
}

void
imapfs_lowlevel_invalidate(const char *path)
{
	guint64 ino;

	g_mutex_lock(&ll.notify_lock);
	if (ll.serving) {
		ino = fs_nodes_find(ll.nodes, path);
		/* A message gone, or another under its UID now. */
		if (ino != 0 && ll.handles != NULL)
			fs_handles_drop(ll.handles, ino);
		if (ino != 0)
			g_async_queue_push(ll.inval,
			                   g_memdup2(&ino, sizeof(ino)));
	}
	g_mutex_unlock(&ll.notify_lock);
}
