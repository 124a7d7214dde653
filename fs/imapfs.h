/* imapfs.h - state shared by the daemon's FUSE operations. */
#ifndef FS_IMAPFS_H
#define FS_IMAPFS_H

#define FUSE_USE_VERSION 312
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <glib.h>

#include "cache/store.h"
#include "fs/path.h"

typedef struct {
	MailStore *store;
	ImapPool *pool;
	uid_t uid;
	gid_t gid;
	gboolean read_only;
	gboolean exact_sizes; /* trust RFC822.SIZE (no direct_io) */
	guint dir_cache_timeout;
	gint64 mounted_at; /* directories show this time */
	GMutex uploads_lock;
	GHashTable *uploads; /* path -> Upload *, not yet sent */
} Imapfs;

/* A file being written: kept locally until APPEND succeeds. */
typedef struct {
	gint ref;
	GMutex lock;
	char *path;
	char *mailbox;
	char *leaf;
	GByteArray *data;
	gint64 mtime; /* 0: not set by the writer */
	char *flags;  /* from user.imap.flags, or NULL */
	gboolean dirty;
	gboolean committed;            /* sent: the file is a message now */
	gboolean in_doubt;             /* a send failed; it may have arrived */
	StoreAppendBaseline *baseline; /* what the first send saw */
	gboolean failed;               /* the last send failed */
	gboolean deferred; /* rsync-style temp name: sent at rename */
} Upload;

/* The mounted filesystem: one per process. */
extern Imapfs *imapfs_instance;

static inline Imapfs *
imapfs_get(void)
{
	return imapfs_instance;
}

/* errmap.c: the errno for an ImapError, logging one line with the
 * server's text (what names the operation and object). */
int imapfs_errno(const char *what, const char *object, ImapStatus st,
                 ImapError *err);

/* upload.c */
Upload *upload_lookup(Imapfs *fs, const char *path);
Upload *upload_create(Imapfs *fs, const char *path, const char *mailbox,
                      const char *leaf);
void upload_unref(Upload *u);
void upload_forget(Imapfs *fs, Upload *u);
/* Sends the upload to mailbox as a message that alias (leaf name) then
 * resolves to; on success it is forgotten. Returns 0 or -errno. */
int upload_commit(Imapfs *fs, Upload *u, const char *mailbox,
                  const char *alias);
/* Uploads left at unmount are sent rather than lost. */
void upload_commit_all(Imapfs *fs);
gboolean upload_is_temp_name(const char *leaf);
int upload_write(Upload *u, const char *buf, size_t size, off_t off);
int upload_truncate(Upload *u, off_t size);
void upload_retry_failed(Imapfs *fs, const char *mailbox);
/* Names of uploads pending in mailbox (for readdir). */
GPtrArray *upload_names_in(Imapfs *fs, const char *mailbox);

/* notify.c */
void imapfs_notify_init(Imapfs *fs);
void imapfs_refresh_if_requested(Imapfs *fs);
void imapfs_on_change(void *user, const char *mailbox, const guint32 *removed,
                      guint n_removed);

/* lowlevel.c: serves ops (path-based) on libfuse's low-level API until
 * unmount; init runs when the kernel's first request arrives. Entries and
 * attributes are cached by the kernel for timeout seconds. */
int imapfs_lowlevel_main(struct fuse_args *args,
                         const struct fuse_operations *ops,
                         void (*init)(struct fuse_conn_info *conn),
                         double timeout, void *data);
/* Drops the kernel's cached attributes and pages of path, if it knows it. */
void imapfs_lowlevel_invalidate(const char *path);

/* Operation tables split by file. */
void imapfs_dir_ops(struct fuse_operations *ops);
void imapfs_file_ops(struct fuse_operations *ops);
void imapfs_xattr_ops(struct fuse_operations *ops);

/* ops_dir.c: classification shared by the operation files. */
int imapfs_classify(Imapfs *fs, const char *path, FsPathInfo *info);
void imapfs_message_stat(Imapfs *fs, const StoreMessage *m, struct stat *st);
/* Resolves a file path to a message (by UID name or by alias). */
int imapfs_find_message(Imapfs *fs, const FsPathInfo *info, StoreMessage *out);

#endif
