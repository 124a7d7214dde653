/* handles.c - file handles by inode number, for reads of files the kernel
 * opened without an OPEN (see include/fs/handles.h). Least recently used
 * handles not in use are released once more than max are kept, or more
 * than max_bytes of files, where handles got recently are spared. */
#include "fs/handles.h"

typedef struct FsHandleHold {
	guint64 ino;
	guint64 fh;
	guint64 bytes;
	guint64 used; /* FsHandles.gets when last got */
	guint refs;
	gboolean dropped; /* out of the table; released at the last put */
	GList link;       /* in FsHandles.lru; data points back here */
} Entry;

struct FsHandles {
	GMutex lock;
	GHashTable *by_ino; /* guint64 * -> Entry * */
	GQueue lru;         /* oldest first */
	guint max;
	guint64 max_bytes;
	guint64 bytes; /* of the entries in by_ino */
	guint64 drops; /* fs_handles_drop calls so far */
	guint64 gets;  /* holds taken so far: the clock of recent use */
	FsHandleOpenFn open_fn;
	FsHandleReleaseFn release_fn;
	void *user;
};

FsHandles *
fs_handles_new(guint max, guint64 max_bytes, FsHandleOpenFn open_fn,
               FsHandleReleaseFn release_fn, void *user)
{
	FsHandles *h = g_new0(FsHandles, 1);

	g_mutex_init(&h->lock);
	h->by_ino = g_hash_table_new(g_int64_hash, g_int64_equal);
	g_queue_init(&h->lru);
	h->max = MAX(max, 1);
	h->max_bytes = max_bytes;
	h->open_fn = open_fn;
	h->release_fn = release_fn;
	h->user = user;
	return h;
}

void
fs_handles_free(FsHandles *h)
{
	GList *l;

	if (h == NULL)
		return;
	while ((l = g_queue_pop_head_link(&h->lru)) != NULL) {
		Entry *e = l->data;
		if (e->refs > 0)
			g_critical("fs_handles_free: inode %" G_GUINT64_FORMAT
			           " still in use",
			           e->ino);
		h->release_fn(e->fh, h->user);
		g_free(e);
	}
	g_hash_table_destroy(h->by_ino);
	g_mutex_clear(&h->lock);
	g_free(h);
}

static void
touch_locked(FsHandles *h, Entry *e)
{
	g_queue_unlink(&h->lru, &e->link);
	g_queue_push_tail_link(&h->lru, &e->link);
}

static gboolean
over_limits_locked(FsHandles *h)
{
	return g_hash_table_size(h->by_ino) > h->max || h->bytes > h->max_bytes;
}

/* Over the count, any handle not in use may go; over the bytes, only one
 * not used recently (see FS_HANDLES_RECENT_USES). */
static gboolean
may_release_locked(FsHandles *h, Entry *e)
{
	if (e->refs > 0)
		return FALSE;
	if (g_hash_table_size(h->by_ino) > h->max)
		return TRUE;
	return h->gets - e->used >= FS_HANDLES_RECENT_USES;
}

/* The one place an entry leaves the table, and its bytes the total. */
static void
unlink_locked(FsHandles *h, Entry *e)
{
	g_queue_unlink(&h->lru, &e->link);
	g_hash_table_remove(h->by_ino, &e->ino);
	h->bytes -= e->bytes;
}

/* Unlinks the oldest entries that may go while over max or max_bytes;
 * returns them for releasing unlocked. */
static GPtrArray *
evict_locked(FsHandles *h)
{
	GPtrArray *out = g_ptr_array_new();
	GList *l = h->lru.head;

	while (l != NULL && over_limits_locked(h)) {
		Entry *e = l->data;
		l = l->next;
		if (!may_release_locked(h, e))
			continue;
		unlink_locked(h, e);
		g_ptr_array_add(out, e);
	}
	return out;
}

static void
release_all(FsHandles *h, GPtrArray *entries)
{
	for (guint i = 0; i < entries->len; i++) {
		Entry *e = entries->pdata[i];
		h->release_fn(e->fh, h->user);
		g_free(e);
	}
	g_ptr_array_free(entries, TRUE);
}

/* A held entry for ino, or NULL (h->lock held). */
static Entry *
hold_locked(FsHandles *h, guint64 ino)
{
	Entry *e = g_hash_table_lookup(h->by_ino, &ino);

	if (e == NULL)
		return NULL;
	e->refs++;
	e->used = ++h->gets;
	touch_locked(h, e);
	return e;
}

/* Tries to open ino once more when a drop came while it was opened:
 * the open may have seen the file as it was before. */
#define OPEN_TRIES 3

int
fs_handles_get(FsHandles *h, guint64 ino, guint64 *fh, FsHandleHold **hold)
{
	Entry *e;
	guint64 opened, bytes = 0, drops;
	GPtrArray *evicted;
	int rc, tries = 0;

again:
	g_mutex_lock(&h->lock);
	e = hold_locked(h, ino);
	drops = h->drops;
	g_mutex_unlock(&h->lock);
	if (e != NULL) {
		*fh = e->fh;
		*hold = e;
		return 0;
	}
	/* Opened unlocked: opening may wait for the network. */
	rc = h->open_fn(ino, &opened, &bytes, h->user);
	if (rc != 0)
		return rc;
	g_mutex_lock(&h->lock);
	if (h->drops != drops && ++tries < OPEN_TRIES) {
		g_mutex_unlock(&h->lock);
		h->release_fn(opened, h->user);
		goto again;
	}
	e = hold_locked(h, ino);
	if (e != NULL) {
		/* Another reader of ino was quicker. */
		g_mutex_unlock(&h->lock);
		h->release_fn(opened, h->user);
		*fh = e->fh;
		*hold = e;
		return 0;
	}
	e = g_new0(Entry, 1);
	e->ino = ino;
	e->fh = opened;
	e->bytes = bytes;
	e->used = ++h->gets;
	e->refs = 1;
	e->link.data = e;
	g_hash_table_insert(h->by_ino, &e->ino, e);
	h->bytes += bytes;
	g_queue_push_tail_link(&h->lru, &e->link);
	evicted = evict_locked(h);
	g_mutex_unlock(&h->lock);
	release_all(h, evicted);
	*fh = opened;
	*hold = e;
	return 0;
}

void
fs_handles_put(FsHandles *h, FsHandleHold *hold)
{
	Entry *e = hold;
	GPtrArray *evicted = g_ptr_array_new();

	g_mutex_lock(&h->lock);
	if (e->refs == 0) {
		g_mutex_unlock(&h->lock);
		g_critical("fs_handles_put: inode %" G_GUINT64_FORMAT
		           " not held",
		           e->ino);
		g_ptr_array_free(evicted, TRUE);
		return;
	}
	e->refs--;
	if (e->dropped && e->refs == 0)
		g_ptr_array_add(evicted, e);
	else {
		/* Over a limit while every handle was in use: catch up. */
		g_ptr_array_free(evicted, TRUE);
		evicted = evict_locked(h);
	}
	g_mutex_unlock(&h->lock);
	release_all(h, evicted);
}

void
fs_handles_drop(FsHandles *h, guint64 ino)
{
	Entry *e;
	gboolean unused;

	g_mutex_lock(&h->lock);
	h->drops++;
	e = g_hash_table_lookup(h->by_ino, &ino);
	if (e != NULL) {
		unlink_locked(h, e);
		e->dropped = TRUE;
	}
	/* Decided here: once unlocked, its last holder may free it. */
	unused = e != NULL && e->refs == 0;
	g_mutex_unlock(&h->lock);
	if (unused) {
		h->release_fn(e->fh, h->user);
		g_free(e);
	}
}

guint
fs_handles_count(FsHandles *h)
{
	guint n;

	g_mutex_lock(&h->lock);
	n = g_hash_table_size(h->by_ino);
	g_mutex_unlock(&h->lock);
	return n;
}
