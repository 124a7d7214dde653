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
		                                    g_free, NULL);
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
	s->change_fn = o->change_fn;
	s->change_user = o->change_user;
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
}

void
store_free(MailStore *s)
{
	if (s == NULL)
		return;
	if (s->watch != NULL)
		watch_stop(s->watch);
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
void
forget_listing(MailStore *s, const char *name)
{
	MailboxState *st = state_get(s, name);

	g_mutex_lock(&s->lock);
	store_listing_unref(st->listing);
	st->listing = NULL;
	st->fetched_at = 0;
	g_hash_table_remove_all(st->aliases);
	g_mutex_unlock(&s->lock);
}

static void
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
}

/* ---------------------------------------------------- connection use */

typedef ImapStatus (*ConnFn)(ImapConn *c, void *data, ImapError **err);

gboolean
connection_lost(ImapStatus st)
{
	return st == IMAP_EEOF || st == IMAP_EBYE || st == IMAP_ETIMEOUT ||
	       st == IMAP_ENET || st == IMAP_ECLOSED;
}

/* Runs fn on a pooled connection. Idempotent work is retried once on a
 * fresh connection when the first one died under it. */
ImapStatus
with_conn(MailStore *s, const char *mailbox, gboolean idempotent, ConnFn fn,
          void *data, ImapError **err)
{
	ImapError *local = NULL;
	ImapStatus st = IMAP_ECLOSED;

	if (s->pool == NULL)
		return imap_error_set(err, IMAP_ECLOSED, 0,
		                      "offline: not connected to the server");
	for (int attempt = 0; attempt < 2; attempt++) {
		ImapConn *c = imap_pool_acquire(s->pool, mailbox, &local);
		if (c == NULL) {
			st = local != NULL ? local->status : IMAP_ENET;
		} else {
			st = fn(c, data, &local);
			imap_pool_release(s->pool, c);
		}
		if (st == IMAP_OK || !idempotent || !connection_lost(st) ||
		    attempt == 1)
			break;
		g_message("retrying after lost connection: %s", local->text);
		imap_error_clear(&local);
	}
	if (local != NULL) {
		if (err != NULL && *err == NULL)
			*err = local;
		else
			imap_error_free(local);
	}
	return st;
}

/* ------------------------------------------------------ mailbox tree */

static ImapStatus
do_list(ImapConn *c, void *data, ImapError **err)
{
	return imap_list(c, "", "*", (GPtrArray **)data, err);
}

static void
install_mailbox_list(MailStore *s, GPtrArray *list)
{
	char delim = 0;

	for (guint i = 0; i < list->len && delim == 0; i++)
		delim = ((ImapMailbox *)list->pdata[i])->delimiter;
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
	if (local != NULL) {
		if (err != NULL && *err == NULL)
			*err = local;
		else
			imap_error_free(local);
	}
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

static gboolean
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
static void
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
	if (local != NULL) {
		if (err != NULL && *err == NULL)
			*err = local;
		else
			imap_error_free(local);
	}
	if (rc == IMAP_OK)
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
		gpointer v;
		g_mutex_lock(&s->lock);
		v = g_hash_table_lookup(st->aliases, alias);
		g_mutex_unlock(&s->lock);
		if (v != NULL)
			m = store_listing_find(l, GPOINTER_TO_UINT(v));
	}
	if (m != NULL)
		*out = *m;
	store_listing_unref(l);
	return m != NULL ? IMAP_OK : no_message(mailbox, uid, alias, err);
}

/* Applies fn to the message in the current listing (if present). */
static void
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

static void
set_flags(StoreMessage *m, gconstpointer arg)
{
	m->flags = g_intern_string(arg);
}

static void
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
static void
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
	if (alias != NULL && m->uid != 0)
		g_hash_table_insert(st->aliases, g_strdup(alias),
		                    GUINT_TO_POINTER(m->uid));
	g_mutex_unlock(&s->lock);
}

/* ----------------------------------------------------------- changes */

static ImapStatus
read_only_error(ImapError **err)
{
	return imap_error_set(err, IMAP_EINVAL, IMAP_CODE_READONLY,
	                      "mounted read-only");
}

typedef struct {
	const char *mailbox;
	guint32 uid;
	const char *dest;
	ImapCopyUid copyuid;
	gboolean moved_with_copy;
} MoveReq;

static ImapStatus
do_expunge(ImapConn *c, void *data, ImapError **err)
{
	MoveReq *r = data;

	return imap_expunge_uid(c, r->mailbox, r->uid, err);
}

/* MOVE when the server has it; else COPY, and only once the copy is
 * confirmed, expunge the original. A failure between the two leaves the
 * message in both places, never in neither. */
static ImapStatus
do_move(ImapConn *c, void *data, ImapError **err)
{
	MoveReq *r = data;
	g_autofree char *set = g_strdup_printf("%u", r->uid);
	ImapStatus st;

	if (imap_conn_has_cap(c, "MOVE"))
		return imap_uid_move(c, r->mailbox, set, r->dest, &r->copyuid,
		                     err);
	st = imap_uid_copy(c, r->mailbox, set, r->dest, &r->copyuid, err);
	if (st != IMAP_OK)
		return st;
	r->moved_with_copy = TRUE;
	return imap_expunge_uid(c, r->mailbox, r->uid, err);
}

ImapStatus
store_move_message(MailStore *s, const char *mailbox, guint32 uid,
                   const char *dest, const char *alias, guint32 *new_uid,
                   ImapError **err)
{
	MoveReq r = {.mailbox = mailbox, .uid = uid, .dest = dest};
	StoreMessage m;
	ImapStatus st;

	*new_uid = 0;
	if (s->read_only)
		return read_only_error(err);
	st = store_message(s, mailbox, uid, NULL, &m, err);
	if (st != IMAP_OK)
		return st;
	st = with_conn(s, mailbox, FALSE, do_move, &r, err);
	if (st != IMAP_OK && !r.moved_with_copy) {
		imap_copyuid_clear(&r.copyuid);
		return st;
	}
	/* Even if the expunge after COPY failed, the copy exists. */
	remove_message(s, mailbox, uid);
	if (st != IMAP_OK)
		forget_listing(s, mailbox);
	m.uid = r.copyuid.valid ? imap_copyuid_lookup(&r.copyuid, uid) : 0;
	insert_message(s, dest, r.copyuid.valid ? r.copyuid.uidvalidity : 0, &m,
	               alias);
	*new_uid = m.uid;
	imap_copyuid_clear(&r.copyuid);
	return st;
}

static gboolean
is_trash(MailStore *s, const char *mailbox)
{
	return s->trash == NULL || name_equal(s->trash, mailbox);
}

ImapStatus
store_delete_message(MailStore *s, const char *mailbox, guint32 uid,
                     ImapError **err)
{
	MoveReq r = {.mailbox = mailbox, .uid = uid};
	guint32 new_uid;
	ImapStatus st;

	if (s->read_only)
		return read_only_error(err);
	if (!is_trash(s, mailbox))
		return store_move_message(s, mailbox, uid, s->trash, NULL,
		                          &new_uid, err);
	st = with_conn(s, mailbox, FALSE, do_expunge, &r, err);
	if (st == IMAP_OK)
		remove_message(s, mailbox, uid);
	return st;
}

typedef struct {
	const char *mailbox;
	GBytes *message;
	const char *flags;
	gint64 date;
	ImapAppendUid appenduid;
} AppendReq;

static ImapStatus
do_append(ImapConn *c, void *data, ImapError **err)
{
	AppendReq *r = data;

	return imap_append(c, r->mailbox, r->flags, r->date, r->message,
	                   &r->appenduid, err);
}

ImapStatus
store_append(MailStore *s, const char *mailbox, GBytes *message,
             const char *flags, gint64 date, const char *alias,
             guint32 *new_uid, ImapError **err)
{
	AppendReq r = {mailbox, message, flags, date, {0}};
	StoreMessage m = {0};
	ImapStatus st;

	*new_uid = 0;
	if (s->read_only)
		return read_only_error(err);
	st = with_conn(s, NULL, FALSE, do_append, &r, err);
	if (st != IMAP_OK)
		return st;
	m.uid = r.appenduid.valid ? r.appenduid.uid : 0;
	m.size = g_bytes_get_size(message);
	m.size_verified = TRUE;
	m.internaldate = date > 0 ? date : g_get_real_time() / G_USEC_PER_SEC;
	m.flags = g_intern_string(flags != NULL ? flags : "");
	insert_message(s, mailbox,
	               r.appenduid.valid ? r.appenduid.uidvalidity : 0, &m,
	               alias);
	*new_uid = m.uid;
	return IMAP_OK;
}

typedef struct {
	const char *mailbox;
	guint32 uid;
	const char *flags;
} FlagReq;

static ImapStatus
do_set_flags(ImapConn *c, void *data, ImapError **err)
{
	FlagReq *r = data;
	g_autofree char *set = g_strdup_printf("%u", r->uid);

	return imap_uid_store(c, r->mailbox, set, IMAP_STORE_SET, r->flags,
	                      err);
}

ImapStatus
store_set_flags(MailStore *s, const char *mailbox, guint32 uid,
                const char *flags, ImapError **err)
{
	FlagReq r = {mailbox, uid, flags};
	ImapStatus st;

	if (s->read_only)
		return read_only_error(err);
	st = with_conn(s, mailbox, TRUE, do_set_flags, &r, err);
	if (st == IMAP_OK)
		update_message(s, mailbox, uid, set_flags, flags);
	return st;
}

/* ---------------------------------------------------------- mailboxes */

typedef struct {
	const char *a, *b;
	ImapMailboxStatus status;
} NameReq;

static ImapStatus
do_create(ImapConn *c, void *data, ImapError **err)
{
	NameReq *r = data;

	return imap_create(c, r->a, err);
}

ImapStatus
store_create_mailbox(MailStore *s, const char *name, ImapError **err)
{
	NameReq r = {name, NULL, {0}};
	ImapStatus st;

	if (s->read_only)
		return read_only_error(err);
	st = with_conn(s, NULL, FALSE, do_create, &r, err);
	forget_mailbox_list(s);
	return st;
}

static ImapStatus
do_status(ImapConn *c, void *data, ImapError **err)
{
	NameReq *r = data;

	return imap_status(c, r->a, &r->status, err);
}

static ImapStatus
do_delete(ImapConn *c, void *data, ImapError **err)
{
	NameReq *r = data;

	return imap_delete(c, r->a, err);
}

static gboolean
has_children(MailStore *s, const char *name)
{
	GPtrArray *children = NULL;
	gboolean any;

	if (store_children(s, name, &children, NULL) != IMAP_OK)
		return FALSE;
	any = children->len > 0;
	g_ptr_array_free(children, TRUE);
	return any;
}

ImapStatus
store_delete_mailbox(MailStore *s, const char *name, gboolean *not_empty,
                     ImapError **err)
{
	NameReq r = {name, NULL, {0}};
	StoreMailbox mb = {0};
	ImapStatus st;

	*not_empty = FALSE;
	if (s->read_only)
		return read_only_error(err);
	forget_mailbox_list(s);
	st = store_mailbox(s, name, &mb, err);
	if (st != IMAP_OK)
		return st;
	*not_empty = has_children(s, name);
	if (!*not_empty && !(mb.attrs & IMAP_MBOX_NOSELECT)) {
		st = with_conn(s, NULL, TRUE, do_status, &r, err);
		*not_empty = st == IMAP_OK && r.status.messages > 0;
	}
	store_mailbox_clear(&mb);
	if (st != IMAP_OK)
		return st;
	if (*not_empty)
		return imap_error_set(err, IMAP_ENO, IMAP_CODE_CANNOT,
		                      "mailbox %s is not empty", name);
	st = with_conn(s, NULL, FALSE, do_delete, &r, err);
	forget_listing(s, name);
	forget_mailbox_list(s);
	return st;
}

static ImapStatus
do_rename(ImapConn *c, void *data, ImapError **err)
{
	NameReq *r = data;

	return imap_rename(c, r->a, r->b, err);
}

ImapStatus
store_rename_mailbox(MailStore *s, const char *from, const char *to,
                     ImapError **err)
{
	NameReq r = {from, to, {0}};
	ImapStatus st;

	if (s->read_only)
		return read_only_error(err);
	/* Connections that have `from` selected keep a stale selection;
	 * the pool's idle connections are reopened lazily. */
	imap_pool_drain(s->pool);
	st = with_conn(s, NULL, FALSE, do_rename, &r, err);
	store_invalidate(s);
	return st;
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
	if (!imap_pool_has_cap(s->pool, "QUOTA"))
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
