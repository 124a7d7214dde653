/* warm.c - the daemon's side of `imapfs status` and `imapfs prefetch`.
 *
 * The status report is a JSON object put together from what the store
 * already knows (connection state, pool, IDLE watchers, caches, each
 * mailbox's listing and last resync); it never talks to the server.
 *
 * A prefetch ("warm") job fills the body cache with every message of a
 * mailbox tree so that it reads without the server. One thread lists the
 * tree's mailboxes (a resync each, one STATUS when nothing changed), counts
 * what is cached already and queues the rest in batches (one UID FETCH
 * BODY.PEEK[] for many messages, as prefetch.c does for scans); WARM_WORKERS
 * threads fetch the batches on pooled connections and stream each body into the
 * body cache. Bodies already cached are skipped (a rerun after an interruption
 * fetches only the rest) and touched, so they are the last to be evicted.
 *
 * The body cache is bounded (-o cache_size): a tree larger than that
 * cannot be held, and fetching it anyway would only evict its own first
 * bodies to make room for its last. Such a job stops before fetching, in
 * state "too_big", and says so. A final pass checks that every body is
 * really in the cache (others' reads may have evicted some meanwhile).
 *
 * Jobs are keyed by their root; the latest one per root is kept, finished
 * or not, so its outcome can be read after it ended. */
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "cache/warm.h"
#include "imap/uidset.h"
#include "store_internal.h"

#define WARM_WORKERS   2
#define BATCH_MESSAGES 32
#define BATCH_BYTES    (2u * 1024 * 1024)

typedef enum {
	WARM_LISTING,
	WARM_FETCHING,
	WARM_DONE,
	WARM_FAILED,
	WARM_CANCELLED,
	WARM_TOO_BIG,
} WarmState;

static const char *const state_names[] = {
    "listing", "fetching", "done", "failed", "cancelled", "too_big",
};

typedef struct {
	guint32 uid;
	guint64 size;
} Want;

typedef struct {
	char *name;
	StoreListing *listing; /* as listed; for the final check */
} WarmMailbox;

typedef struct {
	WarmMailbox *mb;
	GArray *wants; /* Want, in UID order */
	guint64 bytes; /* estimated (RFC822.SIZE) */
} Batch;

typedef struct {
	MailStore *s;
	char *root;
	GThread *thread;
	gint cancel; /* atomic */
	GMutex lock; /* everything below */
	WarmState state;
	char *error;           /* the first problem, or NULL */
	char *current;         /* mailbox being listed or fetched */
	gint64 started, ended; /* monotonic us */
	guint n_mailboxes;
	guint64 msgs_total, bytes_total;
	guint64 msgs_cached, bytes_cached;   /* were cached already */
	guint64 msgs_fetched, bytes_fetched; /* by this job */
	guint64 msgs_failed, msgs_gone;      /* gone: expunged meanwhile */
	guint64 tree_bytes;   /* the tree's bytes in the cache, or on the way */
	GPtrArray *mailboxes; /* WarmMailbox * */
	GQueue batches;       /* Batch * */
} WarmJob;

struct StoreCtl {
	GMutex lock;
	char *account;
	GHashTable *jobs; /* root ("" = all) -> WarmJob * */
};

/* ---------------------------------------------------------------- JSON */

void
warm_json_string(GString *o, const char *s)
{
	g_autofree char *valid = NULL;

	if (s == NULL) {
		g_string_append(o, "null");
		return;
	}
	valid = g_utf8_make_valid(s, -1);
	g_string_append_c(o, '"');
	for (const char *p = valid; *p != '\0'; p++) {
		guchar c = (guchar)*p;

		if (c == '"' || c == '\\')
			g_string_append_printf(o, "\\%c", c);
		else if (c == '\n')
			g_string_append(o, "\\n");
		else if (c == '\t')
			g_string_append(o, "\\t");
		else if (c < 0x20 || c == 0x7f)
			g_string_append_printf(o, "\\u%04x", c);
		else
			g_string_append_c(o, (char)c);
	}
	g_string_append_c(o, '"');
}

static void
json_key(GString *o, const char *key)
{
	if (o->len > 0 && o->str[o->len - 1] != '{' &&
	    o->str[o->len - 1] != '[')
		g_string_append_c(o, ',');
	warm_json_string(o, key);
	g_string_append_c(o, ':');
}

static void
json_u64(GString *o, const char *key, guint64 v)
{
	json_key(o, key);
	g_string_append_printf(o, "%" G_GUINT64_FORMAT, v);
}

static void
json_str_field(GString *o, const char *key, const char *v)
{
	json_key(o, key);
	warm_json_string(o, v);
}

/* Seconds since the epoch, or null for 0. */
static void
json_time(GString *o, const char *key, gint64 wall_us)
{
	json_key(o, key);
	if (wall_us == 0)
		g_string_append(o, "null");
	else
		g_string_append_printf(o, "%" G_GINT64_FORMAT,
		                       wall_us / G_USEC_PER_SEC);
}

/* ----------------------------------------------------------- registry */

static void job_free(WarmJob *j);

static struct StoreCtl *
ctl_get(MailStore *s)
{
	struct StoreCtl *ctl;

	g_mutex_lock(&s->lock);
	if (s->ctl == NULL) {
		ctl = g_new0(struct StoreCtl, 1);
		g_mutex_init(&ctl->lock);
		ctl->jobs = g_hash_table_new_full(
		    g_str_hash, g_str_equal, g_free, (GDestroyNotify)job_free);
		s->ctl = ctl;
	}
	ctl = s->ctl;
	g_mutex_unlock(&s->lock);
	return ctl;
}

void
warm_set_account(MailStore *s, const char *account)
{
	struct StoreCtl *ctl = ctl_get(s);

	g_mutex_lock(&ctl->lock);
	g_free(ctl->account);
	ctl->account = g_strdup(account);
	g_mutex_unlock(&ctl->lock);
}

static gboolean
job_running_locked(WarmJob *j)
{
	return j->state == WARM_LISTING || j->state == WARM_FETCHING;
}

static void
batch_free(Batch *b)
{
	g_array_free(b->wants, TRUE);
	g_free(b);
}

static void
warm_mailbox_free(WarmMailbox *m)
{
	store_listing_unref(m->listing);
	g_free(m->name);
	g_free(m);
}

/* Joins the job's thread (asking it to stop first) and frees it. */
static void
job_free(WarmJob *j)
{
	g_atomic_int_set(&j->cancel, 1);
	if (j->thread != NULL)
		g_thread_join(j->thread);
	g_queue_clear_full(&j->batches, (GDestroyNotify)batch_free);
	g_ptr_array_free(j->mailboxes, TRUE);
	g_mutex_clear(&j->lock);
	g_free(j->error);
	g_free(j->current);
	g_free(j->root);
	g_free(j);
}

void
warm_free(MailStore *s)
{
	struct StoreCtl *ctl = s->ctl;

	if (ctl == NULL)
		return;
	s->ctl = NULL;
	g_hash_table_destroy(ctl->jobs);
	g_mutex_clear(&ctl->lock);
	g_free(ctl->account);
	g_free(ctl);
}

/* ------------------------------------------------------------ progress */

/* Records the first problem; later ones are only counted. */
static void job_error_locked(WarmJob *j, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static void
job_error_locked(WarmJob *j, const char *fmt, ...)
{
	va_list ap;

	if (j->error != NULL)
		return;
	va_start(ap, fmt);
	j->error = g_strdup_vprintf(fmt, ap);
	va_end(ap);
}

static void
job_finish(WarmJob *j, WarmState state)
{
	g_mutex_lock(&j->lock);
	j->state = state;
	j->ended = g_get_monotonic_time();
	g_clear_pointer(&j->current, g_free);
	g_mutex_unlock(&j->lock);
}

static void
progress_locked(GString *o, WarmJob *j)
{
	gint64 end = j->ended != 0 ? j->ended : g_get_monotonic_time();

	g_string_append_c(o, '{');
	json_str_field(o, "root", j->root);
	json_str_field(o, "state", state_names[j->state]);
	json_u64(o, "mailboxes", j->n_mailboxes);
	json_str_field(o, "current", j->current);
	json_u64(o, "messages_total", j->msgs_total);
	json_u64(o, "bytes_total", j->bytes_total);
	json_u64(o, "messages_cached", j->msgs_cached);
	json_u64(o, "bytes_cached", j->bytes_cached);
	json_u64(o, "messages_fetched", j->msgs_fetched);
	json_u64(o, "bytes_fetched", j->bytes_fetched);
	json_u64(o, "messages_failed", j->msgs_failed);
	json_u64(o, "messages_gone", j->msgs_gone);
	json_u64(o, "elapsed_ms", (guint64)(end - j->started) / 1000);
	json_str_field(o, "error", j->error);
	g_string_append_c(o, '}');
}

char *
warm_progress_json(MailStore *s, const char *root)
{
	struct StoreCtl *ctl = ctl_get(s);
	GString *o = NULL;
	WarmJob *j;

	g_mutex_lock(&ctl->lock);
	j = g_hash_table_lookup(ctl->jobs, root != NULL ? root : "");
	if (j != NULL) {
		o = g_string_new(NULL);
		g_mutex_lock(&j->lock);
		progress_locked(o, j);
		g_mutex_unlock(&j->lock);
	}
	g_mutex_unlock(&ctl->lock);
	return o != NULL ? g_string_free(o, FALSE) : NULL;
}

gboolean
warm_cancel(MailStore *s, const char *root)
{
	struct StoreCtl *ctl = ctl_get(s);
	gboolean running = FALSE;
	WarmJob *j;

	g_mutex_lock(&ctl->lock);
	j = g_hash_table_lookup(ctl->jobs, root != NULL ? root : "");
	if (j != NULL) {
		g_mutex_lock(&j->lock);
		running = job_running_locked(j);
		g_mutex_unlock(&j->lock);
		if (running)
			g_atomic_int_set(&j->cancel, 1);
	}
	g_mutex_unlock(&ctl->lock);
	return running;
}

static gboolean
cancelled(WarmJob *j)
{
	return g_atomic_int_get(&j->cancel) != 0;
}

/* ------------------------------------------------------------- listing */

static void
add_tree(MailStore *s, const char *parent, GPtrArray *names, ImapError **err,
         ImapStatus *st)
{
	GPtrArray *children = NULL;

	*st = store_children(s, parent, &children, err);
	if (*st != IMAP_OK)
		return;
	for (guint i = 0; i < children->len && *st == IMAP_OK; i++) {
		const StoreMailbox *m = children->pdata[i];

		if (!m->implied && !(m->attrs & IMAP_MBOX_NOSELECT))
			g_ptr_array_add(names, g_strdup(m->name));
		if (!(m->attrs &
		      (IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_NOINFERIORS)))
			add_tree(s, m->name, names, err, st);
	}
	g_ptr_array_free(children, TRUE);
}

/* Selectable mailboxes of the tree at root (NULL: all), root first. */
static GPtrArray *
tree_names(MailStore *s, const char *root, ImapError **err)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	StoreMailbox m = {0};
	ImapStatus st;

	if (root != NULL) {
		st = store_mailbox(s, root, &m, err);
		if (st != IMAP_OK) {
			g_ptr_array_free(names, TRUE);
			return NULL;
		}
		if (!m.implied && !(m.attrs & IMAP_MBOX_NOSELECT))
			g_ptr_array_add(names, g_strdup(m.name));
		store_mailbox_clear(&m);
	}
	add_tree(s, root, names, err, &st);
	if (st != IMAP_OK) {
		g_ptr_array_free(names, TRUE);
		return NULL;
	}
	return names;
}

/* A body that is cached already is kept: a use moves it to the recent
 * end of the LRU, behind everything this job will not need. */
static void
touch_body(BodyCache *bc, const char *mailbox, guint32 uidvalidity, guint32 uid)
{
	guint64 size;

	body_cache_use(bc, mailbox, uidvalidity, uid, &size);
}

static void
queue_mailbox(WarmJob *j, WarmMailbox *mb)
{
	GArray *msgs = mb->listing->msgs;
	Batch *b = NULL;

	for (guint i = 0; i < msgs->len; i++) {
		const StoreMessage *m = &g_array_index(msgs, StoreMessage, i);
		Want w = {m->uid, m->size};
		gboolean cached = body_cache_has(
		    j->s->bodies, mb->name, mb->listing->uidvalidity, m->uid);

		if (cached)
			touch_body(j->s->bodies, mb->name,
			           mb->listing->uidvalidity, m->uid);
		g_mutex_lock(&j->lock);
		j->msgs_total++;
		j->bytes_total += m->size;
		if (cached) {
			j->msgs_cached++;
			j->bytes_cached += m->size;
			j->tree_bytes += m->size;
		}
		g_mutex_unlock(&j->lock);
		if (cached)
			continue;
		if (b == NULL || b->wants->len >= BATCH_MESSAGES ||
		    b->bytes + m->size > BATCH_BYTES) {
			b = g_new0(Batch, 1);
			b->mb = mb;
			b->wants = g_array_new(FALSE, FALSE, sizeof(Want));
			g_mutex_lock(&j->lock);
			g_queue_push_tail(&j->batches, b);
			g_mutex_unlock(&j->lock);
		}
		g_array_append_val(b->wants, w);
		b->bytes += m->size;
	}
}

/* Lists every mailbox of the tree and queues what is not cached. FALSE
 * if the job cannot go on. */
static gboolean
list_tree(WarmJob *j)
{
	ImapError *err = NULL;
	GPtrArray *names = tree_names(j->s, *j->root ? j->root : NULL, &err);

	if (names == NULL) {
		g_mutex_lock(&j->lock);
		job_error_locked(j, "%s", err->text);
		g_mutex_unlock(&j->lock);
		imap_error_free(err);
		return FALSE;
	}
	for (guint i = 0; i < names->len && !cancelled(j); i++) {
		const char *name = names->pdata[i];
		StoreListing *l = NULL;
		WarmMailbox *mb;

		g_mutex_lock(&j->lock);
		g_free(j->current);
		j->current = g_strdup(name);
		j->n_mailboxes++;
		g_mutex_unlock(&j->lock);
		/* Forced: mail that came in a moment ago is part of the
		 * tree too (an unchanged mailbox costs one STATUS). */
		if (store_messages(j->s, name, TRUE, &l, &err) != IMAP_OK) {
			g_mutex_lock(&j->lock);
			job_error_locked(j, "listing %s: %s", name, err->text);
			g_mutex_unlock(&j->lock);
			imap_error_clear(&err);
			continue;
		}
		mb = g_new0(WarmMailbox, 1);
		mb->name = g_strdup(name);
		mb->listing = l;
		g_ptr_array_add(j->mailboxes, mb);
		queue_mailbox(j, mb);
	}
	g_ptr_array_free(names, TRUE);
	return TRUE;
}

/* ------------------------------------------------------------ fetching */

typedef enum { GOT_NOTHING, GOT_BODY, GOT_FAILED } Outcome;

typedef struct {
	WarmJob *j;
	Batch *b;
	GHashTable *outcome; /* uid -> Outcome */
	BodyWriter *writer;
	guint64 written;
} Fetch;

static gboolean
fetch_begin(void *ctx, guint32 uid, guint64 size)
{
	Fetch *f = ctx;

	if (cancelled(f->j))
		return FALSE;
	f->writer = body_cache_begin(f->j->s->bodies, f->b->mb->name,
	                             f->b->mb->listing->uidvalidity, uid);
	f->written = 0;
	return f->writer != NULL;
}

static gboolean
fetch_write(void *ctx, guint32 uid, const char *data, gsize len)
{
	Fetch *f = ctx;

	f->written += len;
	return f->writer != NULL && body_writer_append(f->writer, data, len);
}

static void
fetch_end(void *ctx, guint32 uid, gboolean ok)
{
	Fetch *f = ctx;
	Outcome got = GOT_FAILED;

	if (f->writer != NULL) {
		if (ok && body_writer_commit(f->writer))
			got = GOT_BODY;
		else if (!ok)
			body_writer_abort(f->writer);
		f->writer = NULL;
	}
	if (got != GOT_BODY && cancelled(f->j))
		return; /* skipped, not failed */
	g_hash_table_replace(f->outcome, GUINT_TO_POINTER(uid),
	                     GINT_TO_POINTER(got));
	g_mutex_lock(&f->j->lock);
	if (got == GOT_BODY) {
		f->j->msgs_fetched++;
		f->j->bytes_fetched += f->written;
	}
	g_mutex_unlock(&f->j->lock);
}

/* Asks for what is still missing: after a lost connection with_conn()
 * runs this again, and bodies that arrived are not fetched twice. */
static ImapStatus
run_fetch(ImapConn *c, void *data, ImapError **err)
{
	Fetch *f = data;
	ImapBodySink sink = {fetch_begin, fetch_write, fetch_end, f};
	GArray *uids = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autofree char *set = NULL;
	ImapStatus st = IMAP_OK;

	for (guint i = 0; i < f->b->wants->len; i++) {
		guint32 uid = g_array_index(f->b->wants, Want, i).uid;

		if (!g_hash_table_contains(f->outcome, GUINT_TO_POINTER(uid)))
			g_array_append_val(uids, uid);
	}
	if (uids->len > 0 && !cancelled(f->j)) {
		set = imap_uidset_format((guint32 *)(void *)uids->data,
		                         uids->len);
		st = use_listed_mailbox(c, f->b->mb->name,
		                        f->b->mb->listing->uidvalidity, err);
		if (st == IMAP_OK) {
			st = imap_uid_fetch_bodies(c, f->b->mb->name, set,
			                           &sink, err);
			imap_conn_release_mailbox(c);
		}
	}
	g_array_free(uids, TRUE);
	return st;
}

/* Books what a finished batch did: its estimated size is replaced by
 * what arrived, and bodies that did not arrive are failed (the command
 * failed) or gone (the server had no such message any more). */
static void
settle(Fetch *f, ImapStatus st, ImapError *err)
{
	WarmJob *j = f->j;

	g_mutex_lock(&j->lock);
	j->tree_bytes -= f->b->bytes;
	for (guint i = 0; i < f->b->wants->len; i++) {
		const Want *w = &g_array_index(f->b->wants, Want, i);
		Outcome got = GPOINTER_TO_INT(
		    g_hash_table_lookup(f->outcome, GUINT_TO_POINTER(w->uid)));

		if (got == GOT_BODY)
			j->tree_bytes += w->size;
		else if (got == GOT_FAILED ||
		         (st != IMAP_OK && !cancelled(j))) {
			j->msgs_failed++;
			job_error_locked(
			    j, "%s UID %u: %s", f->b->mb->name, w->uid,
			    err != NULL ? err->text
			                : "the body could not be stored");
		} else if (st == IMAP_OK && !cancelled(j))
			j->msgs_gone++;
	}
	g_mutex_unlock(&j->lock);
}

/* The next batch, unless the job is over or the batch would not fit in
 * the cache beside the tree's other bodies. */
static Batch *
next_batch(WarmJob *j)
{
	guint64 limit = j->s->cache_limit;
	Batch *b = NULL;

	g_mutex_lock(&j->lock);
	if (!cancelled(j) && j->state == WARM_FETCHING)
		b = g_queue_pop_head(&j->batches);
	if (b != NULL && limit != 0 && j->tree_bytes + b->bytes > limit) {
		job_error_locked(j,
		                 "the body cache (cache_size %" G_GUINT64_FORMAT
		                 " bytes) is full of this tree's messages",
		                 limit);
		j->state = WARM_TOO_BIG;
		batch_free(b);
		b = NULL;
	}
	if (b != NULL) {
		j->tree_bytes += b->bytes;
		g_free(j->current);
		j->current = g_strdup(b->mb->name);
	}
	g_mutex_unlock(&j->lock);
	return b;
}

static gpointer
worker_main(gpointer data)
{
	WarmJob *j = data;
	Batch *b;

	while ((b = next_batch(j)) != NULL) {
		Fetch f = {.j = j, .b = b};
		ImapError *err = NULL;
		ImapStatus st;

		f.outcome = g_hash_table_new(NULL, NULL);
		st = with_conn(j->s, b->mb->name, TRUE, run_fetch, &f, &err);
		settle(&f, st, err);
		if (st != IMAP_OK)
			g_debug("prefetch of %s: %s", b->mb->name, err->text);
		imap_error_free(err);
		g_hash_table_destroy(f.outcome);
		batch_free(b);
	}
	return NULL;
}

/* Bodies of the tree not in the cache although nothing failed: evicted
 * since (by other reads) or never there. */
static guint64
count_missing(WarmJob *j)
{
	guint64 missing = 0;

	for (guint i = 0; i < j->mailboxes->len; i++) {
		const WarmMailbox *mb = j->mailboxes->pdata[i];

		for (guint k = 0; k < mb->listing->msgs->len; k++) {
			guint32 uid =
			    g_array_index(mb->listing->msgs, StoreMessage, k)
			        .uid;
			if (!body_cache_has(j->s->bodies, mb->name,
			                    mb->listing->uidvalidity, uid))
				missing++;
		}
	}
	return missing;
}

static void
format_size(char *buf, gsize n, guint64 bytes)
{
	g_autofree char *s = g_format_size_full(bytes, G_FORMAT_SIZE_IEC_UNITS);

	g_strlcpy(buf, s, n);
}

static gboolean
fits(WarmJob *j)
{
	guint64 limit = j->s->cache_limit;
	char total[32], max[32];

	if (limit == 0 || j->bytes_total <= limit)
		return TRUE;
	format_size(total, sizeof(total), j->bytes_total);
	format_size(max, sizeof(max), limit);
	g_mutex_lock(&j->lock);
	job_error_locked(j,
	                 "the messages of %s take %s but the body cache holds "
	                 "at most %s (-o cache_size): nothing fetched",
	                 *j->root ? j->root : "the account", total, max);
	g_mutex_unlock(&j->lock);
	return FALSE;
}

static void
fetch_all(WarmJob *j)
{
	GThread *workers[WARM_WORKERS];

	for (int i = 0; i < WARM_WORKERS; i++)
		workers[i] = g_thread_new("imap-warm", worker_main, j);
	for (int i = 0; i < WARM_WORKERS; i++)
		g_thread_join(workers[i]);
}

static WarmState
final_state(WarmJob *j)
{
	guint64 missing, lost;
	WarmState state;

	g_mutex_lock(&j->lock);
	state = j->state;
	g_mutex_unlock(&j->lock);
	if (cancelled(j))
		return WARM_CANCELLED;
	if (state == WARM_TOO_BIG)
		return WARM_TOO_BIG;
	missing = count_missing(j);
	g_mutex_lock(&j->lock);
	lost = missing > j->msgs_failed + j->msgs_gone
	           ? missing - j->msgs_failed - j->msgs_gone
	           : 0;
	if (lost > 0)
		job_error_locked(j,
		                 "%" G_GUINT64_FORMAT " bodies are not in the "
		                 "cache afterwards (evicted by other reads? "
		                 "the cache may be too small for this tree)",
		                 lost);
	state = j->error != NULL ? WARM_FAILED : WARM_DONE;
	g_mutex_unlock(&j->lock);
	return state;
}

static gpointer
job_main(gpointer data)
{
	WarmJob *j = data;
	const char *why = NULL;

	if (j->s->bodies == NULL)
		why = "this mount keeps no bodies (-o cache=full is needed, "
		      "and the cache directory must not be in use by another "
		      "mount)";
	else if (j->s->pool == NULL)
		why = "the mount is offline (-o offline)";
	if (why != NULL) {
		g_mutex_lock(&j->lock);
		job_error_locked(j, "%s", why);
		g_mutex_unlock(&j->lock);
		job_finish(j, WARM_FAILED);
		return NULL;
	}
	if (!list_tree(j)) {
		job_finish(j, cancelled(j) ? WARM_CANCELLED : WARM_FAILED);
		return NULL;
	}
	if (!cancelled(j) && !fits(j)) {
		job_finish(j, WARM_TOO_BIG);
		return NULL;
	}
	g_mutex_lock(&j->lock);
	j->state = WARM_FETCHING;
	g_mutex_unlock(&j->lock);
	fetch_all(j);
	job_finish(j, final_state(j));
	return NULL;
}

void
warm_start(MailStore *s, const char *root)
{
	struct StoreCtl *ctl = ctl_get(s);
	WarmJob *j, *old;
	gboolean running = FALSE;

	root = root != NULL ? root : "";
	g_mutex_lock(&ctl->lock);
	old = g_hash_table_lookup(ctl->jobs, root);
	if (old != NULL) {
		g_mutex_lock(&old->lock);
		running = job_running_locked(old) && !cancelled(old);
		g_mutex_unlock(&old->lock);
	}
	if (running) {
		g_mutex_unlock(&ctl->lock);
		return;
	}
	/* A cancelled job still running is joined here, which is quick:
	 * its workers stop after their batch. */
	g_hash_table_remove(ctl->jobs, root);
	j = g_new0(WarmJob, 1);
	j->s = s;
	j->root = g_strdup(root);
	g_mutex_init(&j->lock);
	g_queue_init(&j->batches);
	j->mailboxes =
	    g_ptr_array_new_with_free_func((GDestroyNotify)warm_mailbox_free);
	j->state = WARM_LISTING;
	j->started = g_get_monotonic_time();
	g_hash_table_insert(ctl->jobs, g_strdup(root), j);
	j->thread = g_thread_new("imap-warm-job", job_main, j);
	g_mutex_unlock(&ctl->lock);
}

/* -------------------------------------------------------------- status */

typedef struct {
	char *name;
	StoreListing *listing; /* NULL: not known this session */
	gint64 synced_at;
	const char *synced_by;
} MailboxInfo;

static void
mailbox_info_free(gpointer p)
{
	MailboxInfo *m = p;

	store_listing_unref(m->listing);
	g_free(m->name);
	g_free(m);
}

static gint
by_name(gconstpointer a, gconstpointer b)
{
	const MailboxInfo *x = *(MailboxInfo *const *)a;
	const MailboxInfo *y = *(MailboxInfo *const *)b;
	gboolean xi = g_ascii_strcasecmp(x->name, "INBOX") == 0;
	gboolean yi = g_ascii_strcasecmp(y->name, "INBOX") == 0;

	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Selectable mailboxes of the last LIST, with what this session knows. */
static GPtrArray *
mailbox_infos(MailStore *s)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(mailbox_info_free);

	g_mutex_lock(&s->lock);
	for (guint i = 0; s->mailboxes != NULL && i < s->mailboxes->len; i++) {
		const ImapMailbox *m = s->mailboxes->pdata[i];
		MailboxState *st;
		MailboxInfo *mi;

		if (m->attrs & (IMAP_MBOX_NOSELECT | IMAP_MBOX_NONEXISTENT))
			continue;
		mi = g_new0(MailboxInfo, 1);
		mi->name = g_strdup(m->name);
		st = g_hash_table_lookup(s->states, m->name);
		if (st != NULL && st->listing != NULL) {
			mi->listing = store_listing_ref(st->listing);
			mi->synced_at = st->synced_at;
			mi->synced_by = st->synced_by;
		}
		g_ptr_array_add(out, mi);
	}
	g_mutex_unlock(&s->lock);
	g_ptr_array_sort(out, by_name);
	return out;
}

static void
mailbox_json(GString *o, MailStore *s, MailboxInfo *mi)
{
	const char *source = "session";
	guint64 cached = 0;

	/* Not looked at yet this session: what the disk cache says. */
	if (mi->listing == NULL && s->disk != NULL) {
		DiskMailbox dm = {0};
		g_autoptr(GError) error = NULL;

		if (disk_cache_load_mailbox(s->disk, mi->name, &dm, &error)) {
			mi->listing = store_listing_ref(dm.listing);
			source = "disk";
		}
		disk_mailbox_clear(&dm);
	}
	for (guint i = 0; s->bodies != NULL && mi->listing != NULL &&
	                  i < mi->listing->msgs->len;
	     i++)
		if (body_cache_has(
		        s->bodies, mi->name, mi->listing->uidvalidity,
		        g_array_index(mi->listing->msgs, StoreMessage, i).uid))
			cached++;
	g_string_append_c(o, '{');
	json_str_field(o, "name", mi->name);
	if (mi->listing == NULL) {
		json_str_field(o, "listing", "none");
		g_string_append_c(o, '}');
		return;
	}
	json_str_field(o, "listing", source);
	json_u64(o, "messages", mi->listing->msgs->len);
	json_u64(o, "uidvalidity", mi->listing->uidvalidity);
	json_time(o, "synced_at", mi->synced_at);
	json_str_field(o, "sync", mi->synced_by);
	json_key(o, "bodies_cached");
	if (s->bodies == NULL)
		g_string_append(o, "null");
	else
		g_string_append_printf(o, "%" G_GUINT64_FORMAT, cached);
	g_string_append_c(o, '}');
}

static void
connection_json(GString *o, MailStore *s)
{
	const char *state = "connected";
	gint64 since = 0, now = g_get_monotonic_time();
	guint open = 0, idle = 0, max = 0;

	g_mutex_lock(&s->lock);
	if (s->offline)
		state = "offline";
	else if (s->unreachable_at != 0) {
		state = "unreachable";
		since = s->down_since;
	} else if (s->retrying_at != 0 &&
	           now - s->retrying_at < 15 * G_USEC_PER_SEC)
		state = "reconnecting";
	g_mutex_unlock(&s->lock);
	if (s->pool != NULL)
		imap_pool_counts(s->pool, &open, &idle, &max);
	json_key(o, "connection");
	g_string_append_c(o, '{');
	json_str_field(o, "state", state);
	json_time(o, "since", since);
	json_u64(o, "pool_open", open);
	json_u64(o, "pool_busy", open - MIN(idle, open));
	json_u64(o, "pool_max", max);
	json_key(o, "watchers");
	g_string_append_c(o, '[');
	for (int slot = 0; s->watch != NULL && slot < 2; slot++) {
		g_autofree char *mailbox = NULL;
		const char *what;

		watch_describe(s->watch, slot, &mailbox, &what);
		if (slot > 0)
			g_string_append_c(o, ',');
		g_string_append_c(o, '{');
		json_str_field(o, "mailbox", mailbox);
		json_str_field(o, "state", what);
		g_string_append_c(o, '}');
	}
	g_string_append(o, "]}");
}

static void
cache_json(GString *o, MailStore *s)
{
	static const char *const modes[] = {"none", "metadata", "full"};

	json_key(o, "cache");
	g_string_append_c(o, '{');
	json_str_field(o, "mode", modes[s->cache_mode]);
	json_str_field(o, "dir", s->disk ? disk_cache_dir(s->disk) : NULL);
	json_key(o, "bodies");
	if (s->bodies == NULL)
		g_string_append(o, "null");
	else
		g_string_append_printf(o, "%u", body_cache_count(s->bodies));
	json_key(o, "bytes");
	if (s->bodies == NULL)
		g_string_append(o, "null");
	else
		g_string_append_printf(o, "%" G_GUINT64_FORMAT,
		                       body_cache_size(s->bodies));
	json_u64(o, "limit", s->bodies != NULL ? s->cache_limit : 0);
	g_string_append_c(o, '}');
}

static void
jobs_json(GString *o, MailStore *s)
{
	struct StoreCtl *ctl = ctl_get(s);
	GHashTableIter it;
	gpointer value;
	gboolean first = TRUE;

	json_key(o, "prefetch");
	g_string_append_c(o, '[');
	g_mutex_lock(&ctl->lock);
	g_hash_table_iter_init(&it, ctl->jobs);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		WarmJob *j = value;

		if (!first)
			g_string_append_c(o, ',');
		first = FALSE;
		g_mutex_lock(&j->lock);
		progress_locked(o, j);
		g_mutex_unlock(&j->lock);
	}
	g_mutex_unlock(&ctl->lock);
	g_string_append_c(o, ']');
}

char *
warm_status_json(MailStore *s, guint first, gsize max_bytes)
{
	struct StoreCtl *ctl = ctl_get(s);
	GString *o = g_string_new("{");
	GPtrArray *infos = mailbox_infos(s);
	guint i;

	g_mutex_lock(&ctl->lock);
	json_str_field(o, "account", ctl->account);
	g_mutex_unlock(&ctl->lock);
	json_u64(o, "pid", (guint64)getpid());
	/* For showing mailbox names as the mount's paths ("" when flat). */
	json_str_field(o, "delimiter", (char[2]){store_delimiter(s), '\0'});
	connection_json(o, s);
	cache_json(o, s);
	jobs_json(o, s);
	json_u64(o, "mailboxes_total", infos->len);
	json_u64(o, "mailboxes_first", first);
	json_key(o, "mailboxes");
	g_string_append_c(o, '[');
	for (i = first; i < infos->len; i++) {
		gsize before = o->len;

		if (i > first)
			g_string_append_c(o, ',');
		mailbox_json(o, s, infos->pdata[i]);
		/* Room for the closing part; one mailbox per page at least. */
		if (o->len + 64 > max_bytes && i > first) {
			g_string_truncate(o, before);
			break;
		}
	}
	g_string_append_c(o, ']');
	if (i < infos->len)
		json_u64(o, "mailboxes_next", i);
	g_string_append_c(o, '}');
	g_ptr_array_free(infos, TRUE);
	return g_string_free(o, FALSE);
}
