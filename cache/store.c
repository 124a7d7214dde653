/* store.c - the in-memory view of the account that fs/ reads, and the one
 * path through which it changes the account. Each mailbox keeps an
 * immutable, reference-counted snapshot of its messages (so readdir never
 * holds a lock while the kernel consumes it) and the names given to
 * messages during this session by moves and uploads. */
#include "cache/store.h"
#include "store_internal.h"

#include <string.h>

/* ------------------------------------------------------------ listings */

StoreListing *
listing_new(guint32 uidvalidity, guint reserve)
{
	StoreListing *l = g_new0(StoreListing, 1);

	l->ref = 1;
	l->uidvalidity = uidvalidity;
	l->msgs =
	    g_array_sized_new(FALSE, FALSE, sizeof(StoreMessage), reserve);
	return l;
}

StoreListing *
store_listing_ref(StoreListing *l)
{
	g_atomic_int_inc(&l->ref);
	return l;
}

void
store_listing_unref(StoreListing *l)
{
	if (l == NULL || !g_atomic_int_dec_and_test(&l->ref))
		return;
	g_array_free(l->msgs, TRUE);
	g_free(l);
}

gint
find_index(const StoreListing *l, guint32 uid, gboolean *found)
{
	gint lo = 0, hi = (gint)l->msgs->len - 1;

	while (lo <= hi) {
		gint mid = lo + (hi - lo) / 2;
		guint32 m = g_array_index(l->msgs, StoreMessage, mid).uid;
		if (m == uid) {
			*found = TRUE;
			return mid;
		}
		if (m < uid)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	*found = FALSE;
	return lo;
}

const StoreMessage *
store_listing_find(const StoreListing *l, guint32 uid)
{
	gboolean found;
	gint i;

	if (l == NULL)
		return NULL;
	i = find_index(l, uid, &found);
	return found ? &g_array_index(l->msgs, StoreMessage, i) : NULL;
}

/* Copy-on-write: a listing someone else still reads is never mutated. */
StoreListing *
listing_writable(StoreListing **slot)
{
	StoreListing *old = *slot, *copy;

	if (g_atomic_int_get(&old->ref) == 1)
		return old;
	copy = listing_new(old->uidvalidity, old->msgs->len + 1);
	g_array_append_vals(copy->msgs, old->msgs->data, old->msgs->len);
	*slot = copy;
	store_listing_unref(old);
	return copy;
}

/* ------------------------------------------------------------- state */

MailboxState *
state_get(MailStore *s, const char *name)
{
	MailboxState *st;

	g_mutex_lock(&s->lock);
	st = g_hash_table_lookup(s->states, name);
	if (st == NULL) {
		st = g_new0(MailboxState, 1);
		st->name = g_strdup(name);
		g_mutex_init(&st->refresh);
		st->aliases = g_hash_table_new_full(g_str_hash, g_str_equal,
		                                    g_free, g_free);
		g_hash_table_insert(s->states, st->name, st);
	}
	g_mutex_unlock(&s->lock);
	return st;
}

static void
state_free(gpointer p)
{
	MailboxState *st = p;

	store_listing_unref(st->listing);
	g_hash_table_destroy(st->aliases);
	g_mutex_clear(&st->refresh);
	g_free(st->name);
	g_free(st);
}

static void
open_caches(MailStore *s, const MailStoreOptions *o)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *bodies = NULL;

	if (o->cache_dir == NULL || o->cache_mode == STORE_CACHE_NONE)
		return;
	s->disk = disk_cache_open(o->cache_dir, &error);
	if (s->disk == NULL) {
		/* Normal for a second mount of one account: it must not write
		 * the first one's files. */
		g_message("running without a persistent cache: %s",
		          error->message);
		return;
	}
	if (o->cache_mode != STORE_CACHE_FULL)
		return;
	bodies = g_build_filename(o->cache_dir, "bodies", NULL);
	s->bodies = body_cache_open(bodies, o->cache_size, &error);
	if (s->bodies == NULL)
		g_warning("running without a body cache: %s", error->message);
}

MailStore *
store_new(const MailStoreOptions *o)
{
	MailStore *s = g_new0(MailStore, 1);

	s->pool = o->pool;
	s->offline = o->pool == NULL;
	s->ttl_us = (gint64)o->dir_cache_timeout_s * G_USEC_PER_SEC;
	s->trash = g_strdup(o->trash);
	s->read_only = o->read_only || s->offline;
	s->cache_mode = o->cache_mode;
	s->watch_enabled = o->watch;
	s->reconnect = !o->no_reconnect;
	s->change_fn = o->change_fn;
	s->change_user = o->change_user;
	s->cache_limit = o->cache_size;
	g_mutex_init(&s->lock);
	g_mutex_init(&s->list_refresh);
	/* States are never removed while the store lives (a renamed or
	 * deleted mailbox just loses its listing), so pointers stay valid. */
	s->states =
	    g_hash_table_new_full(g_str_hash, g_str_equal, NULL, state_free);
	open_caches(s, o);
	return s;
}

void
store_start_watch(MailStore *s)
{
	if (s->pool != NULL && s->watch_enabled && s->watch == NULL)
		s->watch = watch_start(s);
	if (s->prefetch == NULL)
		s->prefetch = prefetch_start(s);
}

void
store_free(MailStore *s)
{
	if (s == NULL)
		return;
	g_atomic_int_set(&s->stopping, 1);
	if (s->watch != NULL)
		watch_stop(s->watch);
	prefetch_stop(s->prefetch);
	warm_free(s);
	g_hash_table_destroy(s->states);
	if (s->mailboxes != NULL)
		g_ptr_array_free(s->mailboxes, TRUE);
	body_cache_close(s->bodies);
	disk_cache_close(s->disk);
	g_mutex_clear(&s->lock);
	g_mutex_clear(&s->list_refresh);
	g_free(s->last_listed);
	g_free(s->trash);
	g_free(s);
}

gboolean
fresh(MailStore *s, gint64 at)
{
	return at != 0 && g_get_monotonic_time() - at < s->ttl_us;
}

/* Drops a mailbox's listing and aliases: the next look refetches. */
static void
forget_listing_locked(MailboxState *st)
{
	store_listing_unref(st->listing);
	st->listing = NULL;
	st->fetched_at = 0;
	g_hash_table_remove_all(st->aliases);
}

void
forget_listing(MailStore *s, const char *name)
{
	MailboxState *st = state_get(s, name);

	g_mutex_lock(&s->lock);
	forget_listing_locked(st);
	g_mutex_unlock(&s->lock);
}

ImapStatus
use_listed_mailbox(ImapConn *c, const char *mailbox, guint32 uidvalidity,
                   ImapError **err)
{
	ImapSelectInfo sel = {0};
	ImapStatus st = imap_conn_use_mailbox(c, mailbox, NULL, &sel, err);

	if (st != IMAP_OK)
		return st;
	/* The listing is left alone: a resync may be replacing it right
	 * now, and the next one past dir_cache_timeout lists anew anyway. */
	if (uidvalidity != 0 && sel.uidvalidity != uidvalidity) {
		imap_conn_release_mailbox(c);
		st = imap_error_set(err, IMAP_ENO, IMAP_CODE_NONEXISTENT,
		                    "%s: UIDVALIDITY is now %u, not %u as "
		                    "listed; the message is gone",
		                    mailbox, sel.uidvalidity, uidvalidity);
	}
	imap_select_info_clear(&sel);
	return st;
}

void
forget_mailbox_list(MailStore *s)
{
	g_mutex_lock(&s->lock);
	s->listed_at = 0;
	g_mutex_unlock(&s->lock);
}

void
store_invalidate(MailStore *s)
{
	GHashTableIter it;
	gpointer value;

	g_mutex_lock(&s->lock);
	s->listed_at = 0;
	s->quota_at = 0;
	g_hash_table_iter_init(&it, s->states);
	while (g_hash_table_iter_next(&it, NULL, &value))
		((MailboxState *)value)->fetched_at = 0;
	g_mutex_unlock(&s->lock);
	/* Idle connections may sit on a mailbox another client deleted,
	 * which some servers (Dovecot) then refuse every command on. */
	if (s->pool != NULL)
		imap_pool_drain(s->pool);
}

/* ---------------------------------------------------- connection use */

typedef ImapStatus (*ConnFn)(ImapConn *c, void *data, ImapError **err);

gboolean
connection_lost(ImapStatus st)
{
	return st == IMAP_EEOF || st == IMAP_EBYE || st == IMAP_ETIMEOUT ||
	       st == IMAP_ENET || st == IMAP_ECLOSED || st == IMAP_ECONNECT;
}

/* ------------------------------------------------------ mailbox tree */

static ImapStatus
do_list(ImapConn *c, void *data, ImapError **err)
{
	return imap_list(c, "", "*", (GPtrArray **)data, err);
}

/* A top-level INBOX in any case ("Inbox", "inbox/Sub") is spelled
 * "INBOX" (RFC 3501 5.1: it is case-insensitive), and a name listed twice
 * after that is kept once, so that one directory INBOX shows it. */
static void
canonicalize_inbox(GPtrArray *list, char delim)
{
	GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);

	for (guint i = 0; i < list->len;) {
		ImapMailbox *m = list->pdata[i];

		if (g_ascii_strncasecmp(m->name, "INBOX", 5) == 0 &&
		    (m->name[5] == '\0' || (delim != 0 && m->name[5] == delim)))
			memcpy(m->name, "INBOX", 5);
		/* Not g_hash_table_add() alone: it would swap in this
		 * name, which is freed below. */
		if (g_hash_table_contains(seen, m->name)) {
			g_ptr_array_remove_index(list, i);
			continue;
		}
		g_hash_table_add(seen, m->name);
		i++;
	}
	g_hash_table_destroy(seen);
}

static void
install_mailbox_list(MailStore *s, GPtrArray *list)
{
	char delim = 0;

	for (guint i = 0; i < list->len && delim == 0; i++)
		delim = ((ImapMailbox *)list->pdata[i])->delimiter;
	canonicalize_inbox(list, delim);
	g_mutex_lock(&s->lock);
	if (s->mailboxes != NULL)
		g_ptr_array_free(s->mailboxes, TRUE);
	s->mailboxes = list;
	if (delim != 0)
		s->delimiter = delim;
	s->listed_at = g_get_monotonic_time();
	g_mutex_unlock(&s->lock);
}

/* Without a server (offline, or unreachable), the saved list stands in. */
static gboolean
list_from_disk(MailStore *s)
{
	GPtrArray *list = NULL;
	g_autoptr(GError) error = NULL;

	if (s->disk == NULL || !disk_cache_load_list(s->disk, &list, &error))
		return FALSE;
	install_mailbox_list(s, list);
	return TRUE;
}

static ImapStatus
refresh_mailbox_list(MailStore *s, ImapError **err)
{
	GPtrArray *list = NULL;
	ImapError *local = NULL;
	g_autoptr(GError) error = NULL;
	ImapStatus st = IMAP_OK;

	g_mutex_lock(&s->list_refresh);
	g_mutex_lock(&s->lock);
	if (s->mailboxes != NULL && (fresh(s, s->listed_at) || s->offline)) {
		g_mutex_unlock(&s->lock);
		g_mutex_unlock(&s->list_refresh);
		return IMAP_OK;
	}
	g_mutex_unlock(&s->lock);
	st = with_conn(s, NULL, TRUE, do_list, &list, &local);
	if (st == IMAP_OK) {
		install_mailbox_list(s, list);
		if (s->disk != NULL &&
		    !disk_cache_save_list(s->disk, list, &error))
			g_warning("cannot save the mailbox list: %s",
			          error->message);
	} else if (connection_lost(st) &&
	           (s->mailboxes != NULL || list_from_disk(s))) {
		g_message("server unreachable, showing cached mailboxes: %s",
		          local->text);
		imap_error_clear(&local);
		st = IMAP_OK;
	}
	g_mutex_unlock(&s->list_refresh);
	imap_error_propagate(err, local);
	return st;
}

char
store_delimiter(MailStore *s)
{
	char d;

	g_mutex_lock(&s->lock);
	d = s->delimiter;
	g_mutex_unlock(&s->lock);
	return d;
}

gboolean
name_equal(const char *a, const char *b)
{
	if (g_ascii_strcasecmp(a, "INBOX") == 0)
		return g_ascii_strcasecmp(b, "INBOX") == 0;
	return strcmp(a, b) == 0;
}

/* If name lies below parent (NULL: the root), the name of parent's child
 * on the way to it, newly allocated; else NULL. */
static char *
child_on_path(const char *name, const char *parent, char delim)
{
	const char *rest = name, *end;
	gsize plen;

	if (parent != NULL) {
		plen = strlen(parent);
		if (delim == 0 || strncmp(name, parent, plen) != 0 ||
		    name[plen] != delim || name[plen + 1] == '\0')
			return NULL;
		rest = name + plen + 1;
	}
	end = delim != 0 ? strchr(rest, delim) : NULL;
	if (end == NULL)
		return g_strdup(name);
	return g_strndup(name, (gsize)(end - name));
}

static StoreMailbox *
mailbox_entry(const char *name, guint attrs, gboolean implied)
{
	StoreMailbox *m = g_new0(StoreMailbox, 1);

	m->name = g_strdup(name);
	m->attrs = attrs;
	m->implied = implied;
	return m;
}

static void
mailbox_entry_free(gpointer p)
{
	store_mailbox_clear(p);
	g_free(p);
}

void
store_mailbox_clear(StoreMailbox *m)
{
	if (m == NULL)
		return;
	g_free(m->name);
	m->name = NULL;
}

static const ImapMailbox *
listed(MailStore *s, const char *name)
{
	for (guint i = 0; i < s->mailboxes->len; i++) {
		const ImapMailbox *m = s->mailboxes->pdata[i];
		if (!(m->attrs & IMAP_MBOX_NONEXISTENT) &&
		    name_equal(m->name, name))
			return m;
	}
	return NULL;
}

ImapStatus
store_children(MailStore *s, const char *parent, GPtrArray **out,
               ImapError **err)
{
	GHashTable *seen;
	GPtrArray *children;
	ImapStatus st = refresh_mailbox_list(s, err);

	if (st != IMAP_OK)
		return st;
	seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	children = g_ptr_array_new_with_free_func(mailbox_entry_free);
	g_mutex_lock(&s->lock);
	for (guint i = 0; i < s->mailboxes->len; i++) {
		const ImapMailbox *m = s->mailboxes->pdata[i];
		char *child = child_on_path(m->name, parent, s->delimiter);
		const ImapMailbox *real;

		if (child == NULL || (m->attrs & IMAP_MBOX_NONEXISTENT) ||
		    g_hash_table_contains(seen, child)) {
			g_free(child);
			continue;
		}
		real = listed(s, child);
		g_ptr_array_add(
		    children,
		    mailbox_entry(child,
		                  real ? real->attrs : IMAP_MBOX_NOSELECT,
		                  real == NULL));
		g_hash_table_add(seen, child);
	}
	g_mutex_unlock(&s->lock);
	g_hash_table_destroy(seen);
	*out = children;
	return IMAP_OK;
}

ImapStatus
store_mailbox(MailStore *s, const char *name, StoreMailbox *out,
              ImapError **err)
{
	ImapStatus st = refresh_mailbox_list(s, err);
	gsize len = strlen(name);

	if (st != IMAP_OK)
		return st;
	g_mutex_lock(&s->lock);
	for (guint i = 0; i < s->mailboxes->len; i++) {
		const ImapMailbox *m = s->mailboxes->pdata[i];
		if (m->attrs & IMAP_MBOX_NONEXISTENT)
			continue;
		if (name_equal(m->name, name)) {
			out->name = g_strdup(m->name);
			out->attrs = m->attrs;
			out->implied = FALSE;
			g_mutex_unlock(&s->lock);
			return IMAP_OK;
		}
	}
	for (guint i = 0; i < s->mailboxes->len && s->delimiter; i++) {
		const ImapMailbox *m = s->mailboxes->pdata[i];
		if (strncmp(m->name, name, len) == 0 &&
		    m->name[len] == s->delimiter) {
			out->name = g_strdup(name);
			out->attrs = IMAP_MBOX_NOSELECT | IMAP_MBOX_HASCHILDREN;
			out->implied = TRUE;
			g_mutex_unlock(&s->lock);
			return IMAP_OK;
		}
	}
	g_mutex_unlock(&s->lock);
	return imap_error_set(err, IMAP_ENO, IMAP_CODE_NONEXISTENT,
	                      "no mailbox %s", name);
}

/* ---------------------------------------------------------- messages */

/* First use of a mailbox this session: start from the disk cache, so a
 * remount only asks the server what changed. */
void
load_from_disk(MailStore *s, MailboxState *st)
{
	DiskMailbox dm = {0};
	g_autoptr(GError) error = NULL;

	if (st->loaded || s->disk == NULL)
		return;
	st->loaded = TRUE;
	if (!disk_cache_load_mailbox(s->disk, st->name, &dm, &error)) {
		if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
			g_message("cache of %s discarded: %s", st->name,
			          error->message);
		return;
	}
	g_mutex_lock(&s->lock);
	if (st->listing == NULL) {
		st->listing = store_listing_ref(dm.listing);
		st->uidnext = dm.uidnext;
		st->highestmodseq = dm.highestmodseq;
		st->fetched_at = 0;
	}
	g_mutex_unlock(&s->lock);
	disk_mailbox_clear(&dm);
}

static void
note_listed(MailStore *s, const char *mailbox)
{
	gboolean changed;

	g_mutex_lock(&s->lock);
	changed = g_strcmp0(s->last_listed, mailbox) != 0;
	if (changed) {
		g_free(s->last_listed);
		s->last_listed = g_strdup(mailbox);
	}
	g_mutex_unlock(&s->lock);
	if (changed && s->watch != NULL)
		watch_note_listed(s->watch);
}

ImapStatus
store_messages(MailStore *s, const char *mailbox, gboolean force,
               StoreListing **out, ImapError **err)
{
	MailboxState *st = state_get(s, mailbox);
	ImapError *local = NULL;
	ImapStatus rc;

	g_mutex_lock(&st->refresh);
	load_from_disk(s, st);
	g_mutex_lock(&s->lock);
	if (!force && st->listing != NULL &&
	    (fresh(s, st->fetched_at) || s->offline)) {
		*out = store_listing_ref(st->listing);
		g_mutex_unlock(&s->lock);
		g_mutex_unlock(&st->refresh);
		note_listed(s, mailbox);
		return IMAP_OK;
	}
	g_mutex_unlock(&s->lock);

	rc = resync_mailbox(s, st, &local);
	g_mutex_lock(&s->lock);
	if (rc != IMAP_OK && connection_lost(rc) && st->listing != NULL) {
		/* Offline: what we know beats an error; retry on next look. */
		g_message("%s: server unreachable, showing cached listing: %s",
		          mailbox, local->text);
		imap_error_clear(&local);
		rc = IMAP_OK;
	}
	if (rc == IMAP_OK)
		*out = store_listing_ref(st->listing);
	g_mutex_unlock(&s->lock);
	g_mutex_unlock(&st->refresh);
	imap_error_propagate(err, local);
	/* Only what a user looks at steers the second watcher: forced
	 * resyncs come from a watcher (new mail in INBOX would take it off
	 * the folder being read) or a prefetch walking a tree. */
	if (rc == IMAP_OK && !force)
		note_listed(s, mailbox);
	return rc;
}

static ImapStatus
no_message(const char *mailbox, guint32 uid, const char *alias, ImapError **err)
{
	if (alias != NULL)
		return imap_error_set(err, IMAP_ENO, IMAP_CODE_NONEXISTENT,
		                      "no message %s in %s", alias, mailbox);
	return imap_error_set(err, IMAP_ENO, IMAP_CODE_NONEXISTENT,
	                      "no message UID %u in %s", uid, mailbox);
}

ImapStatus
store_message(MailStore *s, const char *mailbox, guint32 uid, const char *alias,
              StoreMessage *out, ImapError **err)
{
	MailboxState *st = state_get(s, mailbox);
	StoreListing *l = NULL;
	const StoreMessage *m;
	ImapStatus rc;

	rc = store_messages(s, mailbox, FALSE, &l, err);
	if (rc != IMAP_OK)
		return rc;
	m = uid != 0 ? store_listing_find(l, uid) : NULL;
	if (m == NULL && alias != NULL) {
		const StoreAlias *v;
		g_mutex_lock(&s->lock);
		v = g_hash_table_lookup(st->aliases, alias);
		if (v != NULL && g_get_monotonic_time() - v->at > ALIAS_TTL_US)
			v = NULL;
		guint32 target = v != NULL ? v->uid : 0;
		g_mutex_unlock(&s->lock);
		if (target != 0)
			m = store_listing_find(l, target);
	}
	if (m != NULL)
		*out = *m;
	store_listing_unref(l);
	return m != NULL ? IMAP_OK : no_message(mailbox, uid, alias, err);
}

/* Applies fn to the message in the current listing (if present). */
void
update_message(MailStore *s, const char *mailbox, guint32 uid,
               void (*fn)(StoreMessage *m, gconstpointer arg),
               gconstpointer arg)
{
	MailboxState *st = state_get(s, mailbox);
	StoreListing *l;
	gboolean found;
	gint i;

	g_mutex_lock(&s->lock);
	if (st->listing != NULL) {
		i = find_index(st->listing, uid, &found);
		if (found) {
			l = listing_writable(&st->listing);
			fn(&g_array_index(l->msgs, StoreMessage, i), arg);
		}
	}
	g_mutex_unlock(&s->lock);
}

static void
set_verified_size(StoreMessage *m, gconstpointer arg)
{
	m->size = *(const guint64 *)arg;
	m->size_verified = TRUE;
}

void
store_note_size(MailStore *s, const char *mailbox, guint32 uid,
                guint64 real_size)
{
	update_message(s, mailbox, uid, set_verified_size, &real_size);
}

void
store_set_flags_fn(StoreMessage *m, gconstpointer arg)
{
	m->flags = g_intern_string(arg);
}

void
remove_message(MailStore *s, const char *mailbox, guint32 uid)
{
	MailboxState *st = state_get(s, mailbox);
	StoreListing *l;
	gboolean found;
	gint i;

	g_mutex_lock(&s->lock);
	if (st->listing != NULL) {
		i = find_index(st->listing, uid, &found);
		if (found) {
			l = listing_writable(&st->listing);
			g_array_remove_index(l->msgs, (guint)i);
		}
	}
	g_mutex_unlock(&s->lock);
}

/* Adds a message we created, so it lists before the next refresh, and
 * makes alias resolve to it. Without a UID, the listing is refetched. */
void
insert_message(MailStore *s, const char *mailbox, guint32 uidvalidity,
               const StoreMessage *m, const char *alias)
{
	MailboxState *st = state_get(s, mailbox);
	StoreListing *l;
	gboolean found;
	gint i;

	g_mutex_lock(&s->lock);
	if (m->uid == 0 || st->listing == NULL ||
	    (uidvalidity != 0 && st->listing->uidvalidity != uidvalidity)) {
		st->fetched_at = 0;
		if (m->uid == 0)
			g_hash_table_remove(st->aliases, alias ? alias : "");
	} else {
		i = find_index(st->listing, m->uid, &found);
		l = listing_writable(&st->listing);
		if (!found)
			g_array_insert_val(l->msgs, (guint)i, *m);
	}
	if (alias != NULL && m->uid != 0) {
		StoreAlias *a = g_new(StoreAlias, 1);
		a->uid = m->uid;
		a->at = g_get_monotonic_time();
		g_hash_table_insert(st->aliases, g_strdup(alias), a);
	}
	g_mutex_unlock(&s->lock);
}

/* -------------------------------------------------------------- quota */

typedef struct {
	ImapQuota q;
} QuotaReq;

static ImapStatus
do_quota(ImapConn *c, void *data, ImapError **err)
{
	QuotaReq *r = data;

	return imap_getquotaroot(c, "INBOX", &r->q, err);
}

ImapStatus
store_quota(MailStore *s, guint64 *used_kb, guint64 *limit_kb, ImapError **err)
{
	QuotaReq r = {{0}};
	ImapStatus st;

	g_mutex_lock(&s->lock);
	if (fresh(s, s->quota_at)) {
		*used_kb = s->quota_used_kb;
		*limit_kb = s->quota_limit_kb;
		st = s->quota_known ? IMAP_OK : IMAP_EUNSUPPORTED;
		g_mutex_unlock(&s->lock);
		if (st != IMAP_OK)
			imap_error_set(err, st, 0, "no quota");
		return st;
	}
	g_mutex_unlock(&s->lock);
	/* Offline there is no pool to ask; with_conn says so. */
	if (s->pool != NULL && !imap_pool_has_cap(s->pool, "QUOTA"))
		st = imap_error_set(err, IMAP_EUNSUPPORTED, 0,
		                    "server has no QUOTA");
	else
		st = with_conn(s, NULL, TRUE, do_quota, &r, err);
	g_mutex_lock(&s->lock);
	s->quota_at = g_get_monotonic_time();
	s->quota_known = st == IMAP_OK && r.q.has_storage;
	s->quota_used_kb = r.q.storage_used_kb;
	s->quota_limit_kb = r.q.storage_limit_kb;
	*used_kb = s->quota_used_kb;
	*limit_kb = s->quota_limit_kb;
	g_mutex_unlock(&s->lock);
	if (st == IMAP_OK && !r.q.has_storage)
		st = imap_error_set(err, IMAP_EUNSUPPORTED, 0,
		                    "no STORAGE quota");
	imap_quota_clear(&r.q);
	return st;
}
