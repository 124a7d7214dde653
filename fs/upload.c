/* upload.c - files written into the mount. Their bytes stay here until
 * APPEND succeeds: at close() for ordinary names (so close() reports a
 * failure), at rename() for dot-names such as rsync's ".name.XXXXXX" temp
 * files (rsync sets the time after close and then renames), and at unmount
 * for anything still pending, so nothing written is dropped. */
#include <errno.h>
#include <string.h>

#include "imapfs.h"

#define UPLOAD_MAX (256u * 1024 * 1024)

Upload *
upload_lookup(Imapfs *fs, const char *path)
{
	Upload *u;

	g_mutex_lock(&fs->uploads_lock);
	u = g_hash_table_lookup(fs->uploads, path);
	if (u != NULL)
		g_atomic_int_inc(&u->ref);
	g_mutex_unlock(&fs->uploads_lock);
	return u;
}

gboolean
upload_is_temp_name(const char *leaf)
{
	return leaf[0] == '.';
}

Upload *
upload_create(Imapfs *fs, const char *path, const char *mailbox,
              const char *leaf)
{
	Upload *u = g_new0(Upload, 1);

	u->ref = 2; /* the table's and the caller's */
	g_mutex_init(&u->lock);
	u->path = g_strdup(path);
	u->mailbox = g_strdup(mailbox);
	u->leaf = g_strdup(leaf);
	u->data = g_byte_array_new();
	u->deferred = upload_is_temp_name(leaf);
	g_mutex_lock(&fs->uploads_lock);
	g_hash_table_replace(fs->uploads, u->path, u);
	g_mutex_unlock(&fs->uploads_lock);
	return u;
}

void
upload_unref(Upload *u)
{
	if (u == NULL || !g_atomic_int_dec_and_test(&u->ref))
		return;
	g_byte_array_free(u->data, TRUE);
	g_mutex_clear(&u->lock);
	g_free(u->path);
	g_free(u->mailbox);
	g_free(u->leaf);
	g_free(u->flags);
	store_append_baseline_free(u->baseline);
	g_free(u);
}

void
upload_forget(Imapfs *fs, Upload *u)
{
	g_mutex_lock(&fs->uploads_lock);
	if (g_hash_table_lookup(fs->uploads, u->path) == u) {
		g_hash_table_steal(fs->uploads, u->path);
		upload_unref(u);
	}
	g_mutex_unlock(&fs->uploads_lock);
}

/* IMAP messages end lines with CRLF (RFC 5322); a bare LF becomes CRLF. */
static GBytes *
to_crlf(const GByteArray *in)
{
	GByteArray *out = g_byte_array_sized_new(in->len + in->len / 32 + 2);
	static const guint8 crlf[] = {'\r', '\n'};
	gsize start = 0;

	for (gsize i = 0; i < in->len; i++) {
		if (in->data[i] != '\n' || (i > 0 && in->data[i - 1] == '\r'))
			continue;
		g_byte_array_append(out, in->data + start, (guint)(i - start));
		g_byte_array_append(out, crlf, 2);
		start = i + 1;
	}
	g_byte_array_append(out, in->data + start, (guint)(in->len - start));
	return g_byte_array_free_to_bytes(out);
}

int
upload_commit(Imapfs *fs, Upload *u, const char *mailbox, const char *alias)
{
	ImapError *err = NULL;
	guint32 uid = 0;
	GBytes *bytes;
	ImapStatus st;

	g_mutex_lock(&u->lock);
	if (u->committed) {
		g_mutex_unlock(&u->lock);
		return 0;
	}
	if (u->data->len == 0) {
		g_mutex_unlock(&u->lock);
		g_warning("not uploading empty file %s", u->path);
		return -EINVAL;
	}
	bytes = to_crlf(u->data);
	st = store_append(fs->store, mailbox, bytes, u->flags, u->mtime, alias,
	                  u->in_doubt, &u->baseline, &uid, &err);
	/* After a lost connection the server may hold it already: the
	 * next attempt looks before sending again. */
	if (st != IMAP_OK && st != IMAP_ENO && st != IMAP_EBAD &&
	    st != IMAP_EINVAL)
		u->in_doubt = TRUE;
	u->failed = st != IMAP_OK;
	g_bytes_unref(bytes);
	if (st == IMAP_OK) {
		u->dirty = FALSE;
		u->committed = TRUE;
	}
	g_mutex_unlock(&u->lock);
	if (st != IMAP_OK)
		return imapfs_errno("upload", u->path, st, err);
	g_message("uploaded %s to %s as UID %u", u->path, mailbox, uid);
	upload_forget(fs, u);
	return 0;
}

void
upload_commit_all(Imapfs *fs)
{
	GList *pending;

	g_mutex_lock(&fs->uploads_lock);
	pending = g_hash_table_get_values(fs->uploads);
	for (GList *l = pending; l != NULL; l = l->next)
		g_atomic_int_inc(&((Upload *)l->data)->ref);
	g_mutex_unlock(&fs->uploads_lock);
	for (GList *l = pending; l != NULL; l = l->next) {
		Upload *u = l->data;
		if (u->data->len > 0)
			upload_commit(fs, u, u->mailbox, u->leaf);
		upload_unref(u);
	}
	g_list_free(pending);
}

/* Uploads whose send failed are tried again when their folder is
 * listed, so a blip leaves neither a lost message nor a stray file. */
void
upload_retry_failed(Imapfs *fs, const char *mailbox)
{
	char delim = store_delimiter(fs->store);
	GList *retry = NULL, *all;

	g_mutex_lock(&fs->uploads_lock);
	all = g_hash_table_get_values(fs->uploads);
	for (GList *l = all; l != NULL; l = l->next) {
		Upload *u = l->data;
		if (u->failed && !u->deferred &&
		    fs_mailbox_equal(u->mailbox, mailbox, delim)) {
			g_atomic_int_inc(&u->ref);
			retry = g_list_prepend(retry, u);
		}
	}
	g_list_free(all);
	g_mutex_unlock(&fs->uploads_lock);
	for (GList *l = retry; l != NULL; l = l->next) {
		Upload *u = l->data;
		upload_commit(fs, u, u->mailbox, u->leaf);
		upload_unref(u);
	}
	g_list_free(retry);
}

GPtrArray *
upload_names_in(Imapfs *fs, const char *mailbox)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	GHashTableIter it;
	gpointer value;
	char delim = store_delimiter(fs->store);

	g_mutex_lock(&fs->uploads_lock);
	g_hash_table_iter_init(&it, fs->uploads);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		Upload *u = value;
		if (fs_mailbox_equal(u->mailbox, mailbox, delim))
			g_ptr_array_add(names, g_strdup(u->leaf));
	}
	g_mutex_unlock(&fs->uploads_lock);
	return names;
}

/* A file grown by a write past its end or by truncate reads as zeros in
 * between, like a hole in any file: never as what the heap held. */
static void
resize_zeroed(GByteArray *data, guint len)
{
	guint old = data->len;

	g_byte_array_set_size(data, len);
	if (len > old)
		memset(data->data + old, 0, len - old);
}

int
upload_write(Upload *u, const char *buf, size_t size, off_t off)
{
	guint64 end = (guint64)off + size;

	if (off < 0 || end > UPLOAD_MAX)
		return -EFBIG;
	g_mutex_lock(&u->lock);
	if (u->committed) {
		g_mutex_unlock(&u->lock);
		return -EPERM; /* messages are immutable once sent */
	}
	if (end > u->data->len)
		resize_zeroed(u->data, (guint)end);
	memcpy(u->data->data + off, buf, size);
	u->dirty = TRUE;
	g_mutex_unlock(&u->lock);
	return (int)size;
}

int
upload_truncate(Upload *u, off_t size)
{
	if (size < 0 || (guint64)size > UPLOAD_MAX)
		return -EFBIG;
	g_mutex_lock(&u->lock);
	if (u->committed) {
		g_mutex_unlock(&u->lock);
		return -EPERM;
	}
	resize_zeroed(u->data, (guint)size);
	u->dirty = TRUE;
	g_mutex_unlock(&u->lock);
	return 0;
}
