/* prefetch.c - reading ahead of sequential scans. grep -r, find -exec and
 * rsync open a folder's messages one after another in listing order, and
 * without help each open costs a round trip. When opens follow the listing
 * order, the next messages' bodies are fetched in batches (one UID FETCH
 * for many messages) on spare connections into the body cache, so the
 * scan finds them there. The queue holds UIDs only, batches are bounded in
 * count and bytes, and a scan that stops or moves elsewhere cancels what
 * was queued for it.
 *
 * The second open in order starts it, queueing a little (the opened
 * message included, when small, so it arrives in the same round trip as
 * the ones after it); each further open that follows the order doubles
 * how far ahead the queue reaches, so a scan soon has enough in flight to
 * cover the round trip on several connections at once. A lone `cat`, or
 * two unrelated ones, never wait for a prefetch (on a stalling server
 * they would wait for its timeouts too).
 *
 * A walk (grep -r, find) goes from folder to folder: once a long scan
 * has queued the last message of its folder, a worker lists the folder
 * the walk reaches next (our readdir order: a folder's subfolders before
 * its messages) and goes on queueing there, so the next folder's bodies
 * are on their way while the walk finishes this one, instead of each
 * folder starting with a listing, a first open and a first batch (five
 * round trips). Opens of the finished folder then change nothing. */
#include <string.h>

#include "store_internal.h"

#define WORKERS         3    /* at most max_conns - 1 of them fetch at once */
#define AHEAD_MESSAGES  1024 /* messages kept queued ahead of a scan */
#define AHEAD_BYTES_MIN (1u * 1024 * 1024) /* first open of a scan */
#define AHEAD_BYTES_MAX (32u * 1024 * 1024)
#define BATCH_MESSAGES  64
#define BATCH_BYTES     (4u * 1024 * 1024)
#define LARGEST         (8u * 1024 * 1024) /* bigger bodies are left to readers */
#define OWN_LARGEST     (1u * 1024 * 1024) /* the opened one, if no bigger */
#define HOP_RUN         8 /* opens in order before a scan counts as a walk */
/* What a hop queues before the walk arrives: a walk of one folder only
 * (grep -r MNT/INBOX) costs at most this much of the next one. */
#define HOP_AHEAD_RUN 3 /* ahead_bytes(3): 4 MiB */

typedef struct {
	guint32 uid;
	guint64 size;
} Want;

struct StorePrefetch {
	MailStore *s;
	GMutex lock;
	GCond work;    /* workers: a batch queued, a slot free, stop */
	GCond arrival; /* prefetch_wait: a queued body arrived or failed */
	GHashTable *awaited; /* uid -> threads in prefetch_wait for it */
	gboolean stop;
	GThread *workers[WORKERS];
	/* the scan being followed */
	char *mailbox;
	guint32 uidvalidity;
	gint last_pos[2];     /* per ScanOrder */
	guint frontier[2];    /* positions before it were all considered */
	guint run[2];         /* opens that followed that order */
	GQueue queue;         /* Want *, next to fetch */
	guint64 queue_bytes;  /* sum of their sizes */
	guint active;         /* workers fetching now */
	guint max_active;     /* leaves a connection to readers */
	GHashTable *queued;   /* uid -> TRUE, queued or in flight */
	GHashTable *seen;     /* uid -> TRUE, considered for this scan */
	GArray *names;        /* UIDs in name order */
	GHashTable *name_pos; /* uid -> position in names + 1 */
	const StoreListing *names_of;
	/* walking on to the next folder */
	gboolean scan_complete; /* the last message of this one is queued */
	gboolean hop_started;
	gboolean arrived;   /* a walk opened something where it is followed */
	char *done_mailbox; /* the folder the walk left: opens are ignored */
};

static void
clear_queue_locked(struct StorePrefetch *p)
{
	/* In-flight UIDs stay in queued until their batch ends; a reader
	 * waiting for one of the others fetches it itself. */
	if (!g_queue_is_empty(&p->queue) && g_hash_table_size(p->awaited) > 0)
		g_cond_broadcast(&p->arrival);
	while (!g_queue_is_empty(&p->queue)) {
		Want *w = g_queue_pop_head(&p->queue);
		g_hash_table_remove(p->queued, GUINT_TO_POINTER(w->uid));
		g_free(w);
	}
	p->queue_bytes = 0;
	p->frontier[0] = p->frontier[1] = 0;
	p->scan_complete = p->hop_started = FALSE;
	g_hash_table_remove_all(p->seen);
}

/* The two orders scans use: listing (UID) order, as grep -r and find
 * see it, and name order ("10.eml" before "2.eml"), as rsync sorts. */
typedef enum { ORDER_UID, ORDER_NAME } ScanOrder;

static gint
by_name(gconstpointer a, gconstpointer b)
{
	char x[16], y[16];

	g_snprintf(x, sizeof(x), "%u", *(const guint32 *)a);
	g_snprintf(y, sizeof(y), "%u", *(const guint32 *)b);
	return strcmp(x, y);
}

/* Message indexes of the listing in name order, computed once per
 * listing. Called with p->lock. */
static GArray *
name_order_locked(struct StorePrefetch *p, StoreListing *l)
{
	if (p->names_of != l) {
		GArray *uids = g_array_sized_new(FALSE, FALSE, sizeof(guint32),
		                                 l->msgs->len);
		for (guint i = 0; i < l->msgs->len; i++)
			g_array_append_val(
			    uids, g_array_index(l->msgs, StoreMessage, i).uid);
		g_array_sort(uids, by_name);
		if (p->names != NULL)
			g_array_free(p->names, TRUE);
		p->names = uids;
		g_hash_table_remove_all(p->name_pos);
		for (guint k = 0; k < uids->len; k++)
			g_hash_table_insert(
			    p->name_pos,
			    GUINT_TO_POINTER(g_array_index(uids, guint32, k)),
			    GUINT_TO_POINTER(k + 1));
		p->names_of = l; /* compared, never dereferenced later */
	}
	return p->names;
}

static gint
position_of(struct StorePrefetch *p, StoreListing *l, ScanOrder order,
            guint32 uid)
{
	gboolean found;
	gint i = find_index(l, uid, &found);

	if (!found)
		return -1;
	if (order == ORDER_UID)
		return i;
	name_order_locked(p, l);
	return (gint)GPOINTER_TO_UINT(
	           g_hash_table_lookup(p->name_pos, GUINT_TO_POINTER(uid))) -
	       1;
}

static const StoreMessage *
message_at(struct StorePrefetch *p, StoreListing *l, ScanOrder order, guint k)
{
	guint32 uid;

	if (order == ORDER_UID)
		return k < l->msgs->len
		           ? &g_array_index(l->msgs, StoreMessage, k)
		           : NULL;
	if (k >= p->names->len)
		return NULL;
	uid = g_array_index(p->names, guint32, k);
	return store_listing_find(l, uid);
}

/* How many bytes a scan that has followed its order for run opens keeps
 * queued: doubling from AHEAD_BYTES_MIN. */
static guint64
ahead_bytes(guint run)
{
	return MIN((guint64)AHEAD_BYTES_MAX,
	           (guint64)AHEAD_BYTES_MIN << MIN(run - 1, 8u));
}

/* Queues the messages from position k on (in order) not cached yet; the
 * one at k (the message being opened) only if it is small, since a big
 * one reads better in the reader's own windows. */
static void
queue_ahead_locked(struct StorePrefetch *p, StoreListing *l, ScanOrder order,
                   guint k, guint run)
{
	guint queued = g_queue_get_length(&p->queue), n = queued;
	guint64 goal = ahead_bytes(run);
	guint own = k, looked = 0;
	const StoreMessage *m;

	/* Where earlier opens stopped looking: a cached folder costs one
	 * walk, not one per open. */
	if (p->frontier[order] > k + 1)
		k = p->frontier[order];
	for (; n < AHEAD_MESSAGES && p->queue_bytes < goal &&
	       looked < 2 * AHEAD_MESSAGES &&
	       (m = message_at(p, l, order, k)) != NULL;
	     k++) {
		Want *w;

		looked++;
		p->frontier[order] = MAX(p->frontier[order], k + 1);
		if (g_hash_table_contains(p->seen, GUINT_TO_POINTER(m->uid)))
			continue;
		if (k == own && m->size > OWN_LARGEST)
			continue; /* not seen: a later scan may queue it */
		g_hash_table_add(p->seen, GUINT_TO_POINTER(m->uid));
		if (m->size > LARGEST ||
		    body_cache_has(p->s->bodies, p->mailbox, l->uidvalidity,
		                   m->uid))
			continue;
		w = g_new(Want, 1);
		w->uid = m->uid;
		w->size = m->size;
		g_queue_push_tail(&p->queue, w);
		g_hash_table_add(p->queued, GUINT_TO_POINTER(m->uid));
		p->queue_bytes += m->size;
		n++;
	}
	if (order == ORDER_UID && run >= HOP_RUN && !p->scan_complete &&
	    message_at(p, l, order, k) == NULL) {
		p->scan_complete = TRUE;
		n++; /* a worker may hop */
	}
	/* Workers already busy with the queue need no wake-up per open. */
	if (n > queued)
		g_cond_broadcast(&p->work);
}

void
prefetch_note_open(struct StorePrefetch *p, const char *mailbox,
                   StoreListing *l, guint32 uid)
{
	gint pos[2];
	gboolean ahead[2];

	if (p == NULL)
		return;
	g_mutex_lock(&p->lock);
	/* The rest of the folder a walk left: already fetched or on its way.
	 * Once the walk arrives where it was expected, that folder is like
	 * any other again. */
	if (g_strcmp0(p->done_mailbox, mailbox) == 0) {
		g_mutex_unlock(&p->lock);
		return;
	}
	if (g_strcmp0(p->mailbox, mailbox) == 0) {
		g_clear_pointer(&p->done_mailbox, g_free);
		if (!p->arrived)
			g_cond_broadcast(&p->work); /* a hop may go on */
		p->arrived = TRUE;
	}
	if (g_strcmp0(p->mailbox, mailbox) != 0 ||
	    p->uidvalidity != l->uidvalidity) {
		g_clear_pointer(&p->done_mailbox, g_free);
		g_free(p->mailbox);
		p->mailbox = g_strdup(mailbox);
		p->uidvalidity = l->uidvalidity;
		p->last_pos[ORDER_UID] = p->last_pos[ORDER_NAME] = -1;
		p->run[ORDER_UID] = p->run[ORDER_NAME] = 0;
		clear_queue_locked(p);
	}
	for (int o = ORDER_UID; o <= ORDER_NAME; o++) {
		pos[o] = position_of(p, l, (ScanOrder)o, uid);
		/* The next one, or a little further (files skipped). */
		ahead[o] =
		    pos[o] > p->last_pos[o] && pos[o] <= p->last_pos[o] + 8;
		p->run[o] = ahead[o] ? p->run[o] + 1 : 0;
		p->last_pos[o] = pos[o];
	}
	for (int o = ORDER_UID; o <= ORDER_NAME; o++)
		if (p->run[o] >= 2 && pos[o] >= 0) {
			queue_ahead_locked(p, l, (ScanOrder)o, (guint)pos[o],
			                   p->run[o]);
			break;
		}
	g_mutex_unlock(&p->lock);
}

/* Queued or in flight; the folder a walk left still has batches out. */
static gboolean
pending_locked(struct StorePrefetch *p, const char *mailbox, guint32 uid)
{
	return (g_strcmp0(p->mailbox, mailbox) == 0 ||
	        g_strcmp0(p->done_mailbox, mailbox) == 0) &&
	       g_hash_table_contains(p->queued, GUINT_TO_POINTER(uid));
}

gboolean
prefetch_pending(struct StorePrefetch *p, const char *mailbox, guint32 uid)
{
	gboolean pending;

	if (p == NULL)
		return FALSE;
	g_mutex_lock(&p->lock);
	pending = pending_locked(p, mailbox, uid);
	g_mutex_unlock(&p->lock);
	return pending;
}

static void
count_awaited_locked(struct StorePrefetch *p, guint32 uid, gint delta)
{
	gpointer key = GUINT_TO_POINTER(uid);
	guint n = GPOINTER_TO_UINT(g_hash_table_lookup(p->awaited, key));

	n = (guint)((gint)n + delta);
	if (n == 0)
		g_hash_table_remove(p->awaited, key);
	else
		g_hash_table_insert(p->awaited, key, GUINT_TO_POINTER(n));
}

gboolean
prefetch_wait(struct StorePrefetch *p, const char *mailbox, guint32 uid,
              gint64 timeout_us)
{
	gint64 deadline = g_get_monotonic_time() + timeout_us;
	gboolean pending = TRUE;

	g_mutex_lock(&p->lock);
	count_awaited_locked(p, uid, +1);
	while (pending && g_get_monotonic_time() < deadline) {
		pending = pending_locked(p, mailbox, uid);
		if (pending)
			g_cond_wait_until(&p->arrival, &p->lock, deadline);
	}
	count_awaited_locked(p, uid, -1);
	g_mutex_unlock(&p->lock);
	return !pending;
}

/* ---------------------------------------------------------- workers */

typedef struct {
	struct StorePrefetch *p;
	char *mailbox;
	guint32 uidvalidity;
	GPtrArray *wants; /* Want * */
	BodyWriter *writer;
	guint32 writing;
} Job;

static gboolean
job_begin(void *ctx, guint32 uid, guint64 size)
{
	Job *j = ctx;

	j->writer =
	    body_cache_begin(j->p->s->bodies, j->mailbox, j->uidvalidity, uid);
	j->writing = uid;
	return j->writer != NULL;
}

static gboolean
job_write(void *ctx, guint32 uid, const char *data, gsize len)
{
	Job *j = ctx;

	return j->writer != NULL && body_writer_append(j->writer, data, len);
}

/* Wakes only a reader waiting for this body: a scan's batches end
 * 2,000 bodies a second on loopback, and waking every idle worker (and
 * the reader waiting for another body) for each was most of the
 * daemon's futex calls. */
static void
done_with(struct StorePrefetch *p, guint32 uid)
{
	g_mutex_lock(&p->lock);
	if (g_hash_table_remove(p->queued, GUINT_TO_POINTER(uid)) &&
	    g_hash_table_contains(p->awaited, GUINT_TO_POINTER(uid)))
		g_cond_broadcast(&p->arrival);
	g_mutex_unlock(&p->lock);
}

static void
job_end(void *ctx, guint32 uid, gboolean ok)
{
	Job *j = ctx;

	if (j->writer != NULL) {
		if (ok)
			body_writer_commit(j->writer);
		else
			body_writer_abort(j->writer);
	}
	j->writer = NULL;
	done_with(j->p, uid);
}

static ImapStatus
run_job(ImapConn *c, void *data, ImapError **err)
{
	Job *j = data;
	ImapBodySink sink = {job_begin, job_write, job_end, j};
	g_autofree guint32 *uids = g_new(guint32, j->wants->len);
	g_autofree char *set = NULL;
	ImapStatus st;

	for (guint i = 0; i < j->wants->len; i++)
		uids[i] = ((Want *)j->wants->pdata[i])->uid;
	set = imap_uidset_format(uids, j->wants->len);
	st = use_listed_mailbox(c, j->mailbox, j->uidvalidity, err);
	if (st != IMAP_OK)
		return st;
	st = imap_uid_fetch_bodies(c, j->mailbox, set, &sink, err);
	imap_conn_release_mailbox(c);
	return st;
}

/* Takes the next batch: up to BATCH_MESSAGES, about BATCH_BYTES. */
static Job *
next_job_locked(struct StorePrefetch *p)
{
	Job *j;
	guint64 bytes = 0;

	if (g_queue_is_empty(&p->queue))
		return NULL;
	j = g_new0(Job, 1);
	j->p = p;
	j->mailbox = g_strdup(p->mailbox);
	j->uidvalidity = p->uidvalidity;
	j->wants = g_ptr_array_new_with_free_func(g_free);
	while (!g_queue_is_empty(&p->queue) && j->wants->len < BATCH_MESSAGES &&
	       bytes < BATCH_BYTES) {
		Want *w = g_queue_pop_head(&p->queue);
		bytes += w->size;
		p->queue_bytes -= MIN(p->queue_bytes, w->size);
		g_ptr_array_add(j->wants, w);
	}
	p->active++;
	/* The last batch is out: an idle worker may hop on now. */
	if (g_queue_is_empty(&p->queue) && p->scan_complete)
		g_cond_broadcast(&p->work);
	return j;
}

/* The folder a walk (grep -r, find: our readdir order, subfolders
 * before messages) reads next after finishing mailbox, or NULL. */
static char *
walk_next(MailStore *s, const char *mailbox)
{
	char delim = store_delimiter(s);
	const char *cut = delim != 0 ? strrchr(mailbox, delim) : NULL;
	g_autofree char *parent =
	    cut ? g_strndup(mailbox, cut - mailbox) : NULL;
	g_autoptr(GPtrArray) kids = NULL;
	char *next = NULL;
	guint i;

	if (store_children(s, parent, &kids, NULL) != IMAP_OK)
		return NULL;
	for (i = 0; i < kids->len; i++)
		if (strcmp(((StoreMailbox *)kids->pdata[i])->name, mailbox) ==
		    0)
			break;
	if (i + 1 >= kids->len)
		/* The last subfolder: the parent's own messages are next. */
		return g_steal_pointer(&parent);
	next = g_strdup(((StoreMailbox *)kids->pdata[i + 1])->name);
	/* Into it, down its first subfolders. */
	for (;;) {
		g_autoptr(GPtrArray) sub = NULL;
		if (store_children(s, next, &sub, NULL) != IMAP_OK ||
		    sub->len == 0)
			return next;
		g_free(next);
		next = g_strdup(((StoreMailbox *)sub->pdata[0])->name);
	}
}

/* Goes on from the finished scan of from to the folder the walk reaches
 * next: its listing, then its first messages, with the scan's pace. */
static void
hop(struct StorePrefetch *p, const char *from, guint32 uidvalidity)
{
	g_autofree char *next = walk_next(p->s, from);
	StoreListing *l = NULL;
	ImapError *err = NULL;
	StoreMailbox mb = {0};
	gboolean selectable;

	if (next == NULL || store_mailbox(p->s, next, &mb, &err) != IMAP_OK) {
		imap_error_free(err);
		return;
	}
	selectable = !(mb.attrs & IMAP_MBOX_NOSELECT);
	store_mailbox_clear(&mb);
	if (!selectable ||
	    store_messages(p->s, next, FALSE, &l, &err) != IMAP_OK) {
		imap_error_free(err);
		return;
	}
	g_mutex_lock(&p->lock);
	if (!p->stop && g_strcmp0(p->mailbox, from) == 0 &&
	    p->uidvalidity == uidvalidity) {
		guint run = p->run[ORDER_UID];
		g_debug("prefetch: the walk goes on from %s to %s", from, next);
		g_free(p->done_mailbox);
		p->done_mailbox = p->mailbox;
		p->mailbox = g_strdup(next);
		p->uidvalidity = l->uidvalidity;
		p->last_pos[ORDER_UID] = p->last_pos[ORDER_NAME] = -1;
		p->run[ORDER_NAME] = 0;
		p->arrived = FALSE;
		clear_queue_locked(p);
		queue_ahead_locked(p, l, ORDER_UID, 0, MIN(run, HOP_AHEAD_RUN));
	}
	g_mutex_unlock(&p->lock);
	store_listing_unref(l);
}

static gpointer
worker_main(gpointer data)
{
	struct StorePrefetch *p = data;
	ImapError *err = NULL;
	Job *j;

	for (;;) {
		char *hop_from = NULL;
		guint32 hop_uidvalidity = 0;

		j = NULL;
		g_mutex_lock(&p->lock);
		while (!p->stop) {
			if (p->active < p->max_active &&
			    (j = next_job_locked(p)) != NULL)
				break;
			/* One folder ahead of the walk at most. */
			if (p->scan_complete && !p->hop_started && p->arrived &&
			    g_queue_is_empty(&p->queue)) {
				p->hop_started = TRUE;
				hop_from = g_strdup(p->mailbox);
				hop_uidvalidity = p->uidvalidity;
				break;
			}
			g_cond_wait(&p->work, &p->lock);
		}
		g_mutex_unlock(&p->lock);
		if (p->stop) {
			g_free(hop_from);
			break;
		}
		if (hop_from != NULL) {
			hop(p, hop_from, hop_uidvalidity);
			g_free(hop_from);
			continue;
		}
		if (j == NULL)
			continue;
		if (with_conn(p->s, j->mailbox, TRUE, run_job, j, &err) !=
		    IMAP_OK) {
			g_debug("prefetch in %s: %s", j->mailbox, err->text);
			imap_error_clear(&err);
		}
		/* Whatever did not arrive is no longer pending. */
		for (guint i = 0; i < j->wants->len; i++)
			done_with(p, ((Want *)j->wants->pdata[i])->uid);
		g_mutex_lock(&p->lock);
		p->active--;
		g_cond_broadcast(&p->work);
		g_mutex_unlock(&p->lock);
		g_ptr_array_free(j->wants, TRUE);
		g_free(j->mailbox);
		g_free(j);
	}
	if (j != NULL) {
		g_ptr_array_free(j->wants, TRUE);
		g_free(j->mailbox);
		g_free(j);
	}
	return NULL;
}

struct StorePrefetch *
prefetch_start(MailStore *s)
{
	struct StorePrefetch *p;
	guint open, idle, max;

	if (s->bodies == NULL || s->pool == NULL)
		return NULL;
	imap_pool_counts(s->pool, &open, &idle, &max);
	p = g_new0(struct StorePrefetch, 1);
	p->s = s;
	p->max_active = CLAMP(max > 1 ? max - 1 : 1, 1, WORKERS);
	g_mutex_init(&p->lock);
	g_cond_init(&p->work);
	g_cond_init(&p->arrival);
	g_queue_init(&p->queue);
	p->queued = g_hash_table_new(NULL, NULL);
	p->awaited = g_hash_table_new(NULL, NULL);
	p->seen = g_hash_table_new(NULL, NULL);
	p->name_pos = g_hash_table_new(NULL, NULL);
	for (int i = 0; i < WORKERS; i++)
		p->workers[i] = g_thread_new("imap-prefetch", worker_main, p);
	/* Runs once the daemon is up: the first ls or rsync should not
	 * wait through connect, TLS and login. */
	imap_pool_warm(s->pool, 1);
	return p;
}

void
prefetch_stop(struct StorePrefetch *p)
{
	if (p == NULL)
		return;
	g_mutex_lock(&p->lock);
	p->stop = TRUE;
	clear_queue_locked(p);
	g_cond_broadcast(&p->work);
	g_cond_broadcast(&p->arrival);
	g_mutex_unlock(&p->lock);
	for (int i = 0; i < WORKERS; i++)
		g_thread_join(p->workers[i]);
	g_hash_table_destroy(p->queued);
	g_hash_table_destroy(p->awaited);
	g_hash_table_destroy(p->seen);
	g_hash_table_destroy(p->name_pos);
	if (p->names != NULL)
		g_array_free(p->names, TRUE);
	g_mutex_clear(&p->lock);
	g_cond_clear(&p->work);
	g_cond_clear(&p->arrival);
	g_free(p->mailbox);
	g_free(p->done_mailbox);
	g_free(p);
}
