/* ops_xattr.c - message metadata as extended attributes:
 * user.imap.flags (read-write: UID STORE FLAGS), and read-only
 * user.imap.uid, user.imap.internaldate, user.imap.modseq.
 *
 * They are also the control path of `imapfs status` and `imapfs prefetch`
 * (fs/ctl_client.c), which have no other way into the daemon:
 *   user.imapfs.status[.N]  any path: the status as JSON, mailboxes from
 *                           index N on (a value must stay under 64 KiB)
 *   user.imapfs.prefetch    the root or a folder: set "start" or
 *                           "cancel"; get the job's progress as JSON
 *   user.imapfs.prefetch.start, .cancel  the same as a get, for read-only
 *                           (ro) mounts, where the kernel refuses sets
 *   user.imapfs.refresh     set (or, on a read-only mount, get): drop
 *                           every cached listing */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "cache/warm.h"
#include "imap/date.h"
#include "imapfs.h"

#define XA_FLAGS  "user.imap.flags"
#define XA_UID    "user.imap.uid"
#define XA_DATE   "user.imap.internaldate"
#define XA_MODSEQ "user.imap.modseq"
/* Set on any path: drop cached listings (a scriptable SIGHUP). */
#define XA_REFRESH  "user.imapfs.refresh"
#define XA_STATUS   "user.imapfs.status"
#define XA_PREFETCH "user.imapfs.prefetch"
/* A status page stays well below the kernel's XATTR_SIZE_MAX (64 KiB). */
#define STATUS_PAGE 60000

/* Copies value out the way getxattr(2) wants: size 0 asks for the length. */
static int
reply(const char *value, char *buf, size_t size)
{
	size_t len = strlen(value);

	if (size == 0)
		return (int)len;
	if (len > size)
		return -ERANGE;
	memcpy(buf, value, len);
	return (int)len;
}

/* getfattr asks for a value's size, then for the value: a control value
 * that changed in between would not fit. The text a size query produced
 * is kept for the read that follows it (same path and name, soon). */
static GMutex probe_lock;
static char *probe_key;
static char *probe_value;
static gint64 probe_at;

static int
reply_control(const char *path, const char *name, char *value, char *buf,
              size_t size)
{
	g_autofree char *key = g_strconcat(path, "\n", name, NULL);
	int rc;

	g_mutex_lock(&probe_lock);
	if (size != 0 && probe_key != NULL && strcmp(probe_key, key) == 0 &&
	    g_get_monotonic_time() - probe_at < 5 * G_USEC_PER_SEC) {
		g_free(value);
		value = g_steal_pointer(&probe_value);
		g_clear_pointer(&probe_key, g_free);
	}
	if (size == 0) {
		g_free(probe_key);
		g_free(probe_value);
		probe_key = g_steal_pointer(&key);
		probe_value = g_strdup(value);
		probe_at = g_get_monotonic_time();
	}
	g_mutex_unlock(&probe_lock);
	rc = reply(value, buf, size);
	g_free(value);
	return rc;
}

/* The prefetch root a directory stands for: "" for the mount's root. */
static int
prefetch_root(Imapfs *fs, const char *path, char **root)
{
	g_auto(FsPathInfo) info = {0};
	StoreMailbox m = {0};
	ImapError *err = NULL;
	ImapStatus st;
	int rc = imapfs_classify(fs, path, &info);

	if (rc != 0)
		return rc;
	if (info.kind == FS_PATH_ROOT) {
		*root = g_strdup("");
		return 0;
	}
	if (info.kind != FS_PATH_MAILBOX)
		return -ENOTDIR;
	st = store_mailbox(fs->store, info.mailbox, &m, &err);
	if (st != IMAP_OK)
		return imapfs_errno("prefetch", path, st, err);
	*root = g_steal_pointer(&m.name);
	store_mailbox_clear(&m);
	return 0;
}

static int
prefetch_command(const char *path, const char *cmd)
{
	Imapfs *fs = imapfs_get();
	g_autofree char *root = NULL;
	int rc = prefetch_root(fs, path, &root);

	if (rc != 0)
		return rc;
	if (strcmp(cmd, "start") == 0)
		warm_start(fs->store, root);
	else if (strcmp(cmd, "cancel") == 0)
		warm_cancel(fs->store, root);
	else
		return -EINVAL;
	return 0;
}

/* getxattr of the control names; -ENOTSUP if name is none of them. */
static int
get_control(const char *path, const char *name, char *buf, size_t size)
{
	Imapfs *fs = imapfs_get();
	g_autofree char *root = NULL;
	const char *rest;
	char *value, *end;
	guint64 first = 0;
	int rc;

	if (g_str_has_prefix(name, XA_STATUS)) {
		rest = name + strlen(XA_STATUS);
		if (*rest == '.') {
			first = g_ascii_strtoull(rest + 1, &end, 10);
			if (end == rest + 1 || *end != '\0' ||
			    first > G_MAXUINT)
				return -ENODATA;
		} else if (*rest != '\0') {
			return -ENODATA;
		}
		value = warm_status_json(fs->store, (guint)first, STATUS_PAGE);
		return reply_control(path, name, value, buf, size);
	}
	if (strcmp(name, XA_REFRESH) == 0) {
		store_invalidate(fs->store);
		return reply_control(path, name, g_strdup("1"), buf, size);
	}
	if (!g_str_has_prefix(name, XA_PREFETCH))
		return -ENOTSUP;
	rest = name + strlen(XA_PREFETCH);
	if (*rest == '.') {
		rc = prefetch_command(path, rest + 1);
		if (rc != 0)
			return rc == -EINVAL ? -ENODATA : rc;
	} else if (*rest != '\0') {
		return -ENODATA;
	}
	rc = prefetch_root(fs, path, &root);
	if (rc != 0)
		return rc;
	value = warm_progress_json(fs->store, root);
	if (value == NULL)
		return -ENODATA;
	return reply_control(path, name, value, buf, size);
}

static int
find(const char *path, FsPathInfo *info, StoreMessage *m, Upload **u)
{
	Imapfs *fs = imapfs_get();
	int rc = imapfs_classify(fs, path, info);

	*u = NULL;
	if (rc != 0)
		return rc;
	if (info->kind == FS_PATH_ROOT)
		return -ENODATA;
	*u = upload_lookup(fs, path);
	if (*u != NULL)
		return 0;
	return imapfs_find_message(fs, info, m);
}

static int
op_getxattr(const char *path, const char *name, char *buf, size_t size)
{
	g_auto(FsPathInfo) info = {0};
	g_autofree char *value = NULL;
	StoreMessage m;
	Upload *u;
	int rc;

	/* Only user.* exists here. Saying so (not ENODATA) lets ls -l and
	 * cp -a stop asking for SELinux labels and ACLs after the first
	 * file of the mount, instead of two round trips per file. */
	if (!g_str_has_prefix(name, "user."))
		return -ENOTSUP;
	if (g_str_has_prefix(name, "user.imapfs."))
		return get_control(path, name, buf, size);
	rc = find(path, &info, &m, &u);
	if (rc != 0)
		return rc == -ENOENT && info.kind == FS_PATH_MAILBOX ? -ENODATA
		                                                     : rc;
	if (u != NULL) {
		g_mutex_lock(&u->lock);
		if (strcmp(name, XA_FLAGS) == 0 && u->flags != NULL)
			value = g_strdup(u->flags);
		g_mutex_unlock(&u->lock);
		upload_unref(u);
	} else if (strcmp(name, XA_FLAGS) == 0) {
		value = g_strdup(m.flags);
	} else if (strcmp(name, XA_UID) == 0) {
		value = g_strdup_printf("%u", m.uid);
	} else if (strcmp(name, XA_DATE) == 0) {
		value = imap_date_format(m.internaldate);
	} else if (strcmp(name, XA_MODSEQ) == 0 && m.modseq != 0) {
		value = g_strdup_printf("%" G_GUINT64_FORMAT, m.modseq);
	}
	if (value == NULL)
		return -ENODATA;
	return reply(value, buf, size);
}

static int
op_listxattr(const char *path, char *buf, size_t size)
{
	g_auto(FsPathInfo) info = {0};
	GString *names = g_string_new(NULL);
	StoreMessage m;
	Upload *u;
	int rc = find(path, &info, &m, &u);

	if (rc == 0 && u == NULL) {
		g_string_append_len(names, XA_FLAGS, sizeof(XA_FLAGS));
		g_string_append_len(names, XA_UID, sizeof(XA_UID));
		g_string_append_len(names, XA_DATE, sizeof(XA_DATE));
		if (m.modseq != 0)
			g_string_append_len(names, XA_MODSEQ,
			                    sizeof(XA_MODSEQ));
	} else if (u != NULL) {
		g_string_append_len(names, XA_FLAGS, sizeof(XA_FLAGS));
		upload_unref(u);
	}
	if (rc == 0 || rc == -ENODATA) {
		rc = (int)names->len;
		if (size != 0 && names->len > size)
			rc = -ERANGE;
		else if (size != 0)
			memcpy(buf, names->str, names->len);
	}
	g_string_free(names, TRUE);
	return rc;
}

/* Flags are atoms or \System names; anything else never reaches the
 * server (the builder would refuse it too, this gives a clean EINVAL). */
static gboolean
valid_flag_list(const char *v)
{
	for (const char *p = v; *p; p++)
		if ((guchar)*p < 0x20 || (guchar)*p >= 0x7f ||
		    strchr("(){%*\"]", *p) != NULL)
			return FALSE;
	return TRUE;
}

/* \Recent is shown by getxattr but only the server may set it; a value
 * copied from getfattr must still be accepted. */
static void
drop_recent(char *v)
{
	g_auto(GStrv) words = g_strsplit(v, " ", -1);
	GString *out = g_string_new(NULL);

	for (char **w = words; *w != NULL; w++) {
		if (**w == '\0' || g_ascii_strcasecmp(*w, "\\Recent") == 0)
			continue;
		if (out->len > 0)
			g_string_append_c(out, ' ');
		g_string_append(out, *w);
	}
	strcpy(v, out->str);
	g_string_free(out, TRUE);
}

static int
op_setxattr(const char *path, const char *name, const char *value, size_t size,
            int flags)
{
	Imapfs *fs = imapfs_get();
	g_auto(FsPathInfo) info = {0};
	g_autofree char *v = g_strndup(value, size);
	ImapError *err = NULL;
	StoreMessage m;
	ImapStatus st;
	Upload *u;
	int rc;

	if (strcmp(name, XA_UID) == 0 || strcmp(name, XA_DATE) == 0 ||
	    strcmp(name, XA_MODSEQ) == 0)
		return -EPERM;
	if (strcmp(name, XA_REFRESH) == 0) {
		store_invalidate(fs->store);
		return 0;
	}
	if (strcmp(name, XA_PREFETCH) == 0)
		return prefetch_command(path, g_strstrip(v));
	if (strcmp(name, XA_FLAGS) != 0)
		return -ENOTSUP;
	g_strstrip(v);
	if (memchr(value, '\0', size) != NULL || !valid_flag_list(v))
		return -EINVAL;
	drop_recent(v);
	rc = find(path, &info, &m, &u);
	if (rc != 0)
		return rc;
	if (u != NULL) {
		g_mutex_lock(&u->lock);
		g_free(u->flags);
		u->flags = g_steal_pointer(&v);
		g_mutex_unlock(&u->lock);
		upload_unref(u);
		return 0;
	}
	if (fs->read_only)
		return -EROFS;
	st = store_set_flags(fs->store, info.parent, m.uid, v, &err);
	return st == IMAP_OK ? 0 : imapfs_errno("set flags on", path, st, err);
}

static int
op_removexattr(const char *path, const char *name)
{
	if (strcmp(name, XA_FLAGS) == 0)
		return op_setxattr(path, name, "", 0, 0);
	if (strcmp(name, XA_UID) == 0 || strcmp(name, XA_DATE) == 0 ||
	    strcmp(name, XA_MODSEQ) == 0)
		return -EPERM;
	return -ENODATA;
}

void
imapfs_xattr_ops(struct fuse_operations *ops)
{
	ops->getxattr = op_getxattr;
	ops->listxattr = op_listxattr;
	ops->setxattr = op_setxattr;
	ops->removexattr = op_removexattr;
}
