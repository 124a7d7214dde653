/* resync.c - keeping a mailbox's listing current at a cost proportional to
 * what changed (RFC 7162 and fallbacks):
 *  - STATUS first: same UIDVALIDITY, UIDNEXT, MESSAGES and HIGHESTMODSEQ
 *    means nothing changed, and no message data is fetched at all;
 *  - with QRESYNC: SELECT (QRESYNC (uidvalidity modseq)) reports flag
 *    changes and VANISHED (EARLIER) expunges;
 *  - with CONDSTORE only: UID FETCH 1:* (FLAGS) (CHANGEDSINCE m), and the
 *    UID list (ESEARCH when offered) finds expunges;
 *  - with neither: UID FETCH 1:* (FLAGS) and the UID list;
 *  - in every case metadata of new messages from the old UIDNEXT on.
 * A changed UIDVALIDITY, or no listing yet, means a full UID FETCH 1:*.
 * The modseq saved with the listing is the one from before the fetches, so
 * changes made during a resync are seen by the next one. */
#include <malloc.h>
#include <string.h>

#include "store_internal.h"

typedef struct {
	const char *mailbox;
	/* known state */
	StoreListing *old;
	guint32 old_uidnext;
	guint64 old_modseq;
	/* learned */
	ImapMailboxStatus status;
	GHashTable *changed; /* uid -> StoreMessage * (flags, modseq) */
	GArray *added;       /* StoreMessage, any order */
	GArray *vanished;    /* GArray of ImapUidRange sets, flattened */
	GArray *present;     /* all UIDs (when expunges come from SEARCH) */
	gboolean full;
	gboolean unchanged;
	const char *how; /* the path taken, for imapfs status */
} Resync;

static void
add_meta(void *user, const ImapMessageMeta *meta)
{
	Resync *r = user;
	StoreMessage m = {
	    .uid = meta->uid,
	    .size = meta->size,
	    .internaldate = meta->internaldate,
	    .modseq = meta->modseq,
	    .flags = g_intern_string(meta->flags ? meta->flags : ""),
	};

	g_array_append_val(r->added, m);
}

static void
note_flags(Resync *r, guint32 uid, const char *flags, guint64 modseq)
{
	StoreMessage *m;

	/* New messages come in full from the UIDNEXT fetch. */
	if (uid >= r->old_uidnext || flags == NULL)
		return;
	m = g_new0(StoreMessage, 1);
	m->uid = uid;
	m->flags = g_intern_string(flags);
	m->modseq = modseq;
	g_hash_table_replace(r->changed, GUINT_TO_POINTER(uid), m);
}

static void
changed_meta(void *user, const ImapMessageMeta *meta)
{
	Resync *r = user;

	if (meta->has_flags)
		note_flags(r, meta->uid, meta->flags, meta->modseq);
}

static void
add_vanished(Resync *r, const char *set)
{
	GArray *ranges = imap_uidset_parse(set, 0);

	if (ranges == NULL) {
		g_warning("%s: ignoring malformed VANISHED %s", r->mailbox,
		          set);
		return;
	}
	g_array_append_vals(r->vanished, ranges->data, ranges->len);
	g_array_free(ranges, TRUE);
}

static char *
flags_text(const ImapValue *list)
{
	GString *s = g_string_new(NULL);

	for (guint i = 0; list != NULL && list->type == IMAP_VALUE_LIST &&
	                  i < list->items->len;
	     i++) {
		const ImapValue *f = list->items->pdata[i];
		if (f->str == NULL)
			continue;
		if (s->len > 0)
			g_string_append_c(s, ' ');
		g_string_append(s, f->str);
	}
	return g_string_free(s, FALSE);
}

/* SELECT (QRESYNC ...) answers with VANISHED (EARLIER) and FETCH. */
static void
qresync_untagged(void *user, const ImapResponse *resp)
{
	Resync *r = user;
	const ImapValue *items, *uidv, *modv;
	g_autofree char *flags = NULL;
	guint32 uid = 0;
	guint64 modseq = 0;

	if (resp->name == NULL)
		return;
	if (strcmp(resp->name, "VANISHED") == 0 && resp->args->len > 0) {
		const ImapValue *last = resp->args->pdata[resp->args->len - 1];
		if (last->type == IMAP_VALUE_ATOM)
			add_vanished(r, last->str);
		return;
	}
	if (strcmp(resp->name, "FETCH") != 0 || resp->args->len == 0)
		return;
	items = resp->args->pdata[0];
	uidv = imap_fetch_item(items, "UID");
	if (!imap_value_u32(uidv, &uid) ||
	    imap_fetch_item(items, "FLAGS") == NULL)
		return;
	modv = imap_fetch_item(items, "MODSEQ");
	if (modv != NULL && modv->type == IMAP_VALUE_LIST &&
	    modv->items->len == 1)
		imap_value_u64(modv->items->pdata[0], &modseq);
	flags = flags_text(imap_fetch_item(items, "FLAGS"));
	note_flags(r, uid, flags, modseq);
}

static ImapStatus
fetch_all(ImapConn *c, Resync *r, ImapError **err)
{
	r->full = TRUE;
	if (r->status.messages == 0)
		return IMAP_OK;
	return imap_uid_fetch_meta(c, r->mailbox, "1:*", NULL, add_meta, r,
	                           err);
}

static ImapStatus
fetch_new(ImapConn *c, Resync *r, ImapError **err)
{
	g_autofree char *set = NULL;

	if (r->status.uidnext != 0 && r->status.uidnext <= r->old_uidnext)
		return IMAP_OK;
	set = g_strdup_printf("%u:*", MAX(r->old_uidnext, 1));
	return imap_uid_fetch_meta(c, r->mailbox, set, NULL, add_meta, r, err);
}

static ImapStatus
search_present(ImapConn *c, Resync *r, ImapError **err)
{
	static const ImapSearchKey all = {"ALL", NULL, NULL};

	return imap_uid_search(c, r->mailbox, &all, 1, &r->present, err);
}

static ImapStatus
sync_qresync(ImapConn *c, Resync *r, ImapError **err)
{
	ImapSelectParams p = {
	    .qresync_uidvalidity = r->old->uidvalidity,
	    .qresync_modseq = r->old_modseq,
	    .untagged = qresync_untagged,
	    .user = r,
	};
	ImapSelectInfo info = {0};
	ImapStatus st;

	st = imap_conn_use_mailbox(c, r->mailbox, &p, &info, err);
	if (st != IMAP_OK)
		return st;
	if (info.uidvalidity != r->old->uidvalidity)
		st = fetch_all(c, r, err);
	else
		st = fetch_new(c, r, err);
	imap_conn_release_mailbox(c);
	imap_select_info_clear(&info);
	return st;
}

static ImapStatus
sync_condstore(ImapConn *c, Resync *r, ImapError **err)
{
	ImapFetchMetaParams p = {
	    .flags_only = TRUE,
	    .changedsince = r->old_modseq,
	};
	ImapStatus st;

	st =
	    imap_uid_fetch_meta(c, r->mailbox, "1:*", &p, changed_meta, r, err);
	if (st == IMAP_OK)
		st = fetch_new(c, r, err);
	if (st == IMAP_OK)
		st = search_present(c, r, err);
	return st;
}

static ImapStatus
sync_plain(ImapConn *c, Resync *r, ImapError **err)
{
	ImapFetchMetaParams p = {.flags_only = TRUE};
	ImapStatus st = IMAP_OK;

	if (r->old->msgs->len > 0)
		st = imap_uid_fetch_meta(c, r->mailbox, "1:*", &p, changed_meta,
		                         r, err);
	if (st == IMAP_OK)
		st = fetch_new(c, r, err);
	if (st == IMAP_OK)
		st = search_present(c, r, err);
	return st;
}

static gboolean
nothing_changed(const Resync *r)
{
	const ImapMailboxStatus *s = &r->status;

	return s->has_highestmodseq && r->old_modseq != 0 &&
	       s->highestmodseq == r->old_modseq &&
	       s->uidnext == r->old_uidnext && s->messages == r->old->msgs->len;
}

/* Nothing cached yet: the SELECT the fetch needs anyway tells what a
 * STATUS would, a round trip fewer. FALSE in *done when the mailbox
 * turned out to be selected already (its counts may be old): then the
 * caller asks STATUS. */
static ImapStatus
select_and_fetch_all(ImapConn *c, Resync *r, gboolean *done, ImapError **err)
{
	ImapSelectInfo info = {0};
	ImapStatus st = imap_conn_use_mailbox(c, r->mailbox, NULL, &info, err);

	*done = FALSE;
	if (st != IMAP_OK)
		return st;
	if (imap_conn_view_fresh(c, G_USEC_PER_SEC)) {
		r->status.has_messages = r->status.has_uidnext =
		    r->status.has_uidvalidity = TRUE;
		r->status.messages = info.exists;
		r->status.uidnext = info.uidnext;
		r->status.uidvalidity = info.uidvalidity;
		r->status.has_highestmodseq = info.highestmodseq != 0;
		r->status.highestmodseq = info.highestmodseq;
		*done = TRUE;
		st = fetch_all(c, r, err);
	}
	imap_conn_release_mailbox(c);
	imap_select_info_clear(&info);
	return st;
}

static ImapStatus
do_resync(ImapConn *c, void *data, ImapError **err)
{
	Resync *r = data;
	gboolean done = FALSE;
	ImapStatus st;

	if (r->old == NULL && !imap_conn_has_selected(c, r->mailbox)) {
		st = select_and_fetch_all(c, r, &done, err);
		if (st != IMAP_OK || done)
			return st;
	}

	/* imap_status() brings a selected mailbox's view up to date. */
	st = imap_status(c, r->mailbox, &r->status, err);
	/* Deleted (and maybe recreated) by someone else since this session
	 * selected it: only another session sees it as it is now. */
	if (st == IMAP_ENO && imap_conn_had_selected(c, r->mailbox))
		return imap_conn_abandon_stale(c, err);
	if (st != IMAP_OK)
		return st;
	if (r->old == NULL || r->status.uidvalidity != r->old->uidvalidity)
		return fetch_all(c, r, err);
	if (nothing_changed(r)) {
		r->unchanged = TRUE;
		r->how = "status";
		return IMAP_OK;
	}
	if (imap_conn_is_enabled(c, "QRESYNC") && r->old_modseq != 0) {
		r->how = "qresync";
		return sync_qresync(c, r, err);
	}
	if (imap_conn_has_cap(c, "CONDSTORE") && r->old_modseq != 0) {
		r->how = "condstore";
		return sync_condstore(c, r, err);
	}
	r->how = "uid-list";
	return sync_plain(c, r, err);
}

static gint
by_uid(gconstpointer a, gconstpointer b)
{
	guint32 x = ((const StoreMessage *)a)->uid;
	guint32 y = ((const StoreMessage *)b)->uid;

	return x < y ? -1 : x > y;
}

static gint
cmp_u32(gconstpointer a, gconstpointer b)
{
	guint32 x = *(const guint32 *)a, y = *(const guint32 *)b;

	return x < y ? -1 : x > y;
}

static gboolean
in_sorted(const GArray *uids, guint32 uid)
{
	return uids == NULL || bsearch(&uid, uids->data, uids->len,
	                               sizeof(guint32), cmp_u32) != NULL;
}

static gboolean
is_vanished(const Resync *r, guint32 uid)
{
	for (guint i = 0; i < r->vanished->len; i++) {
		const ImapUidRange *v =
		    &g_array_index(r->vanished, ImapUidRange, i);
		if (uid >= v->first && uid <= v->last)
			return TRUE;
	}
	return FALSE;
}

/* Old listing + changes -> new listing; *removed gets expunged UIDs,
 * and all old ones when the UIDVALIDITY changed (a UID now names another
 * message: the kernel's pages of the old one must go).
 * Messages fetched now win over what the old listing had for the same
 * UID (our own moves and uploads insert entries ahead of the server's
 * word), and new UIDs below ones we inserted are kept, not skipped. */
static StoreListing *
merge(Resync *r, GArray *removed)
{
	GHashTable *fetched = g_hash_table_new(NULL, NULL);
	StoreListing *l;

	for (guint i = 0; i < r->added->len; i++)
		g_hash_table_add(
		    fetched, GUINT_TO_POINTER(
		                 g_array_index(r->added, StoreMessage, i).uid));
	l = listing_new(r->full ? r->status.uidvalidity : r->old->uidvalidity,
	                (r->full ? 0 : r->old->msgs->len) + r->added->len);
	for (guint i = 0; r->full && r->old != NULL && i < r->old->msgs->len;
	     i++)
		g_array_append_val(
		    removed, g_array_index(r->old->msgs, StoreMessage, i).uid);
	if (!r->full) {
		if (r->present != NULL)
			g_array_sort(r->present, cmp_u32);
		for (guint i = 0; i < r->old->msgs->len; i++) {
			StoreMessage m =
			    g_array_index(r->old->msgs, StoreMessage, i);
			const StoreMessage *ch = g_hash_table_lookup(
			    r->changed, GUINT_TO_POINTER(m.uid));
			if (is_vanished(r, m.uid) ||
			    !in_sorted(r->present, m.uid)) {
				g_array_append_val(removed, m.uid);
				continue;
			}
			if (g_hash_table_contains(fetched,
			                          GUINT_TO_POINTER(m.uid)))
				continue;
			if (ch != NULL) {
				m.flags = ch->flags;
				m.modseq = ch->modseq;
			}
			g_array_append_val(l->msgs, m);
		}
	}
	g_array_append_vals(l->msgs, r->added->data, r->added->len);
	g_array_sort(l->msgs, by_uid);
	/* A server answering one UID twice must not break the sorted,
	 * unique invariant. */
	for (guint i = 1; i < l->msgs->len;) {
		if (g_array_index(l->msgs, StoreMessage, i).uid ==
		    g_array_index(l->msgs, StoreMessage, i - 1).uid)
			g_array_remove_index(l->msgs, i);
		else
			i++;
	}
	g_hash_table_destroy(fetched);
	return l;
}

/* Sizes a reader verified stay verified across refreshes. */
static void
carry_verified(StoreListing *l, const StoreListing *old)
{
	if (old == NULL || old->uidvalidity != l->uidvalidity)
		return;
	for (guint i = 0; i < l->msgs->len; i++) {
		StoreMessage *m = &g_array_index(l->msgs, StoreMessage, i);
		const StoreMessage *o = store_listing_find(old, m->uid);
		if (o != NULL && o->size_verified) {
			m->size = o->size;
			m->size_verified = TRUE;
		}
	}
}

static void
save(MailStore *s, MailboxState *st)
{
	DiskMailbox dm = {0};
	g_autoptr(GError) error = NULL;

	if (s->disk == NULL)
		return;
	g_mutex_lock(&s->lock);
	dm.uidvalidity = st->listing->uidvalidity;
	dm.uidnext = st->uidnext;
	dm.highestmodseq = st->highestmodseq;
	dm.listing = store_listing_ref(st->listing);
	g_mutex_unlock(&s->lock);
	if (!disk_cache_save_mailbox(s->disk, st->name, &dm, &error))
		g_warning("cannot save cache of %s: %s", st->name,
		          error->message);
	disk_mailbox_clear(&dm);
}

static void
resync_clear(Resync *r)
{
	store_listing_unref(r->old);
	g_hash_table_destroy(r->changed);
	g_array_free(r->added, TRUE);
	g_array_free(r->vanished, TRUE);
	if (r->present != NULL)
		g_array_free(r->present, TRUE);
}

static gboolean
alias_expired(gpointer key, gpointer value, gpointer user)
{
	const StoreAlias *a = value;

	return *(const gint64 *)user - a->at > ALIAS_TTL_US;
}

static void
drop_expired_aliases(MailboxState *st)
{
	gint64 now = g_get_monotonic_time();

	g_hash_table_foreach_remove(st->aliases, alias_expired, &now);
}

static void
install(MailStore *s, MailboxState *st, Resync *r, StoreListing *l)
{
	gboolean recreated = FALSE;

	g_mutex_lock(&s->lock);
	carry_verified(l, st->listing);
	if (st->listing != NULL && st->listing->uidvalidity != l->uidvalidity) {
		g_hash_table_remove_all(st->aliases);
		recreated = TRUE;
		if (s->bodies != NULL)
			body_cache_forget_mailbox(s->bodies, st->name,
			                          l->uidvalidity);
	}
	store_listing_unref(st->listing);
	st->listing = l;
	drop_expired_aliases(st);
	st->uidnext = r->status.uidnext;
	st->highestmodseq =
	    r->status.has_highestmodseq ? r->status.highestmodseq : 0;
	st->fetched_at = g_get_monotonic_time();
	g_mutex_unlock(&s->lock);
	/* Connections still holding the old mailbox selected are unusable
	 * on some servers; idle ones are closed and reopened on demand. */
	if (recreated && s->pool != NULL)
		imap_pool_drain(s->pool);
}

ImapStatus
resync_mailbox(MailStore *s, MailboxState *st, ImapError **err)
{
	Resync r = {.mailbox = st->name};
	GArray *removed = g_array_new(FALSE, FALSE, sizeof(guint32));
	StoreListing *l;
	gboolean trim = FALSE;
	ImapStatus rc;

	g_mutex_lock(&s->lock);
	r.old = st->listing != NULL ? store_listing_ref(st->listing) : NULL;
	r.old_uidnext = st->uidnext;
	r.old_modseq = st->highestmodseq;
	g_mutex_unlock(&s->lock);
	r.changed = g_hash_table_new_full(NULL, NULL, NULL, g_free);
	r.added = g_array_new(FALSE, FALSE, sizeof(StoreMessage));
	r.vanished = g_array_new(FALSE, FALSE, sizeof(ImapUidRange));

	rc = with_conn(s, st->name, TRUE, do_resync, &r, err);
	if (rc == IMAP_OK) {
		g_mutex_lock(&s->lock);
		st->synced_at = g_get_real_time();
		st->synced_by = r.full ? "full" : r.how;
		g_mutex_unlock(&s->lock);
	}
	if (rc == IMAP_OK && r.unchanged) {
		g_mutex_lock(&s->lock);
		st->fetched_at = g_get_monotonic_time();
		drop_expired_aliases(st);
		g_mutex_unlock(&s->lock);
	} else if (rc == IMAP_OK) {
		l = merge(&r, removed);
		g_debug("%s: %s resync: %u messages, %u new, %u changed, %u "
		        "gone",
		        st->name, r.full ? "full" : "incremental", l->msgs->len,
		        r.added->len, g_hash_table_size(r.changed),
		        removed->len);
		install(s, st, &r, l);
		save(s, st);
		trim = r.added->len > 10000;
		if (s->change_fn != NULL && removed->len > 0)
			s->change_fn(s->change_user, st->name,
			             (const guint32 *)(void *)removed->data,
			             removed->len);
	}
	g_array_free(removed, TRUE);
	resync_clear(&r);
	/* Fetching a big listing leaves parse buffers and the merge's
	 * scratch arrays with the allocator; give that back so RSS shows
	 * what is kept. */
	if (trim)
		malloc_trim(0);
	return rc;
}

/* ------------------------------------------ many cached listings at once */

typedef struct {
	GPtrArray *states; /* MailboxState * whose refresh lock we hold */
	ImapMailboxStatus *status;
	ImapStatus *results;
} CheckReq;

static ImapStatus
do_check(ImapConn *c, void *data, ImapError **err)
{
	CheckReq *r = data;
	const char **names = g_new(const char *, r->states->len);
	guint n = 0;
	ImapStatus st;

	/* imap_status_many() would count the mailbox this session has
	 * selected from an old view; those are left to their own resync. */
	for (guint i = 0; i < r->states->len; i++) {
		MailboxState *ms = r->states->pdata[i];
		r->results[i] = IMAP_EINVAL;
		if (!imap_conn_has_selected(c, ms->name))
			names[n++] = ms->name;
	}
	st = imap_status_many(c, names, n, r->status, r->results, err);
	/* Results are in the order sent; spread them back. */
	for (guint i = r->states->len, j = n; i-- > 0;) {
		MailboxState *ms = r->states->pdata[i];
		if (j > 0 && names[j - 1] == ms->name) {
			j--;
			r->status[i] = r->status[j];
			r->results[i] = r->results[j];
		} else {
			r->results[i] = IMAP_EINVAL;
		}
	}
	g_free(names);
	return st;
}

/* Whether STATUS says nothing changed since the listing we hold: only
 * with HIGHESTMODSEQ, since flags change nothing else STATUS shows. */
static gboolean
status_unchanged(const MailboxState *st, const ImapMailboxStatus *status)
{
	return status->has_highestmodseq && st->highestmodseq != 0 &&
	       status->highestmodseq == st->highestmodseq &&
	       status->uidnext == st->uidnext &&
	       status->uidvalidity == st->listing->uidvalidity &&
	       status->messages == st->listing->msgs->len;
}

/* Mailboxes with a cached listing due for a refresh, their refresh locks
 * taken (a mailbox being refreshed right now is left out). */
static GPtrArray *
stale_listings(MailStore *s)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	GPtrArray *states = g_ptr_array_new();

	g_mutex_lock(&s->lock);
	for (guint i = 0; s->mailboxes != NULL && i < s->mailboxes->len; i++) {
		const ImapMailbox *m = s->mailboxes->pdata[i];
		if (!(m->attrs & (IMAP_MBOX_NOSELECT | IMAP_MBOX_NONEXISTENT)))
			g_ptr_array_add(names, g_strdup(m->name));
	}
	g_mutex_unlock(&s->lock);
	for (guint i = 0; i < names->len; i++) {
		MailboxState *st = state_get(s, names->pdata[i]);
		gboolean stale;

		if (!g_mutex_trylock(&st->refresh))
			continue;
		load_from_disk(s, st);
		g_mutex_lock(&s->lock);
		stale = st->listing != NULL && st->highestmodseq != 0 &&
		        !fresh(s, st->fetched_at);
		g_mutex_unlock(&s->lock);
		if (stale)
			g_ptr_array_add(states, st);
		else
			g_mutex_unlock(&st->refresh);
	}
	g_ptr_array_free(names, TRUE);
	return states;
}

void
store_check_listings(MailStore *s)
{
	CheckReq r = {0};
	ImapError *err = NULL;
	guint fresh_now = 0;

	if (s->pool == NULL || s->offline)
		return;
	r.states = stale_listings(s);
	if (r.states->len >= 2) {
		r.status = g_new0(ImapMailboxStatus, r.states->len);
		r.results = g_new0(ImapStatus, r.states->len);
		if (with_conn(s, NULL, TRUE, do_check, &r, &err) != IMAP_OK)
			g_debug("checking %u listings at once: %s",
			        r.states->len,
			        err != NULL ? err->text : "failed");
		imap_error_free(err);
		g_mutex_lock(&s->lock);
		for (guint i = 0; i < r.states->len; i++) {
			MailboxState *st = r.states->pdata[i];
			if (r.results[i] != IMAP_OK ||
			    !status_unchanged(st, &r.status[i]))
				continue;
			st->fetched_at = g_get_monotonic_time();
			st->synced_at = g_get_real_time();
			st->synced_by = "status";
			fresh_now++;
		}
		g_mutex_unlock(&s->lock);
		g_debug("checked %u listings at once, %u unchanged",
		        r.states->len, fresh_now);
	}
	for (guint i = 0; i < r.states->len; i++)
		g_mutex_unlock(&((MailboxState *)r.states->pdata[i])->refresh);
	g_ptr_array_free(r.states, TRUE);
	g_free(r.status);
	g_free(r.results);
}
