/* ops_xattr.c - message metadata as extended attributes:
 * user.imap.flags (read-write: UID STORE FLAGS), and read-only
 * user.imap.uid, user.imap.internaldate, user.imap.modseq. */
#include <errno.h>
#include <string.h>
#include <sys/xattr.h>

#include "imap/date.h"
#include "imapfs.h"

#define XA_FLAGS  "user.imap.flags"
#define XA_UID    "user.imap.uid"
#define XA_DATE   "user.imap.internaldate"
#define XA_MODSEQ "user.imap.modseq"
/* Set on any path: drop cached listings (a scriptable SIGHUP). */
#define XA_REFRESH "user.imapfs.refresh"

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
	int rc = find(path, &info, &m, &u);

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
