/* changes.c - every change the filesystem makes to the account: moving,
 * deleting and uploading messages, flags, and mailboxes. Each runs through
 * with_conn_checked() (retry.c): if the connection dies mid-change, the
 * new connection first looks whether the change happened - the message
 * in the destination (same size and date, or the same bytes for an
 * upload), the source gone, the mailbox there or not - and only then
 * repeats it. A move interrupted between COPY and EXPUNGE is finished by
 * expunging the source, so a message is never in neither place and not
 * left in both. */
#include <string.h>

#include "store_internal.h"

/* UIDs of mailbox that hold a message of size bytes and are not in the
 * listing we had before the change (those existed already). */
static ImapStatus
new_uids_of_size(ImapConn *c, const char *mailbox, guint64 size,
                 StoreListing *before, GArray **out, ImapError **err)
{
	g_autofree char *larger =
	    g_strdup_printf("%" G_GUINT64_FORMAT, size > 0 ? size - 1 : 0);
	g_autofree char *smaller =
	    g_strdup_printf("%" G_GUINT64_FORMAT, size + 1);
	const ImapSearchKey keys[] = {
	    {"LARGER", larger, NULL},
	    {"SMALLER", smaller, NULL},
	};
	GArray *uids = NULL;
	ImapStatus st = imap_uid_search(c, mailbox, keys, 2, &uids, err);

	if (st != IMAP_OK)
		return st;
	for (guint i = uids->len; i-- > 0;)
		if (before != NULL &&
		    store_listing_find(before, g_array_index(uids, guint32, i)))
			g_array_remove_index(uids, i);
	*out = uids;
	return IMAP_OK;
}

typedef struct {
	GByteArray *got;
} Collect;

static gboolean
collect(void *ctx, const char *data, gsize len)
{
	Collect *col = ctx;

	g_byte_array_append(col->got, (const guint8 *)data, (guint)len);
	return TRUE;
}

static ImapStatus
mailbox_exists(ImapConn *c, const char *name, gboolean *exists, ImapError **err)
{
	GPtrArray *list = NULL;
	ImapStatus st = imap_list(c, "", name, &list, err);

	if (st != IMAP_OK)
		return st;
	*exists = FALSE;
	for (guint i = 0; i < list->len; i++) {
		const ImapMailbox *m = list->pdata[i];
		if (name_equal(m->name, name) &&
		    !(m->attrs & IMAP_MBOX_NONEXISTENT))
			*exists = TRUE;
	}
	g_ptr_array_free(list, TRUE);
	return IMAP_OK;
}

static StoreListing *
known_listing(MailStore *s, const char *mailbox)
{
	MailboxState *st = state_get(s, mailbox);
	StoreListing *l;

	g_mutex_lock(&s->lock);
	l = st->listing != NULL ? store_listing_ref(st->listing) : NULL;
	g_mutex_unlock(&s->lock);
	return l;
}

/* The UIDVALIDITY mailbox's UIDs were listed under, or 0 if none is
 * known. */
static guint32
listed_uidvalidity(MailStore *s, const char *mailbox)
{
	StoreListing *l = known_listing(s, mailbox);
	guint32 uidvalidity = l != NULL ? l->uidvalidity : 0;

	store_listing_unref(l);
	return uidvalidity;
}

static ImapStatus
read_only_error(ImapError **err)
{
	return imap_error_set(err, IMAP_EINVAL, IMAP_CODE_READONLY,
	                      "mounted read-only");
}

/* ------------------------------------------------------------ moving */

typedef struct {
	const char *mailbox;
	guint32 uid;
	guint32 uidvalidity; /* mailbox's, as listed (0: unknown) */
	const char *dest;
	StoreMessage meta;         /* the message before the move */
	StoreListing *dest_before; /* dest's listing before the move */
	ImapCopyUid copyuid;
	guint32 found_uid; /* where verification found it */
} MoveReq;

/* MOVE when the server has it; else COPY, and only once the copy is
 * confirmed, expunge the original. */
static ImapStatus
do_move(ImapConn *c, void *data, ImapError **err)
{
	MoveReq *r = data;
	g_autofree char *set = g_strdup_printf("%u", r->uid);
	ImapStatus st;

	imap_copyuid_clear(&r->copyuid);
	st = use_listed_mailbox(c, r->mailbox, r->uidvalidity, err);
	if (st != IMAP_OK)
		return st;
	if (imap_conn_has_cap(c, "MOVE"))
		st = imap_uid_move(c, r->mailbox, set, r->dest, &r->copyuid,
		                   err);
	else {
		st = imap_uid_copy(c, r->mailbox, set, r->dest, &r->copyuid,
		                   err);
		if (st == IMAP_OK)
			st = imap_expunge_uid(c, r->mailbox, r->uid, err);
	}
	imap_conn_release_mailbox(c);
	return st;
}

/* A candidate that matches the moved message by size and INTERNALDATE
 * (both kept by COPY and MOVE). */
static void
match_moved(void *user, const ImapMessageMeta *meta)
{
	MoveReq *r = user;

	if (r->found_uid == 0 && meta->size == r->meta.size &&
	    meta->internaldate == r->meta.internaldate)
		r->found_uid = meta->uid;
}

static ImapStatus
find_moved(ImapConn *c, MoveReq *r, ImapError **err)
{
	g_autofree char *set = NULL;
	GArray *uids = NULL;
	ImapStatus st;

	r->found_uid = 0;
	st = new_uids_of_size(c, r->dest, r->meta.size, r->dest_before, &uids,
	                      err);
	if (st != IMAP_OK || uids->len == 0) {
		if (uids != NULL)
			g_array_free(uids, TRUE);
		return st;
	}
	set =
	    imap_uidset_format((const guint32 *)(void *)uids->data, uids->len);
	g_array_free(uids, TRUE);
	return imap_uid_fetch_meta(c, r->dest, set, NULL, match_moved, r, err);
}

/* Bytes compared to tell a copy from another message of the same size
 * and date: the whole header (Message-ID, Received) and then some. */
#define IDENTITY_BYTES 65536

static ImapStatus
message_prefix(ImapConn *c, const char *mailbox, guint32 uid, GByteArray *got,
               ImapError **err)
{
	Collect col = {got};
	guint64 total = 0;

	return imap_uid_fetch_body(c, mailbox, uid, 0, IDENTITY_BYTES, collect,
	                           &col, &total, err);
}

/* Whether a_uid in a and b_uid in b hold the same message: only then may
 * the original of a cut move be expunged. */
static ImapStatus
same_message(ImapConn *c, const char *a, guint32 a_uid, const char *b,
             guint32 b_uid, gboolean *same, ImapError **err)
{
	g_autoptr(GByteArray) one = g_byte_array_new();
	g_autoptr(GByteArray) two = g_byte_array_new();
	ImapStatus st = message_prefix(c, a, a_uid, one, err);

	if (st == IMAP_OK)
		st = message_prefix(c, b, b_uid, two, err);
	*same = st == IMAP_OK && one->len == two->len &&
	        memcmp(one->data, two->data, one->len) == 0;
	if (st == IMAP_OK && !*same)
		g_message("%s UID %u only looked like the copy of %s UID %u "
		          "(same size and date, other bytes)",
		          b, b_uid, a, a_uid);
	return st;
}

/* Whether a refused SELECT means the mailbox is not there: Dovecot says
 * so with [NONEXISTENT], Cyrus with no code at all. */
static gboolean
select_found_none(ImapConn *c, const char *mailbox, const ImapError *refusal)
{
	gboolean exists = TRUE;

	if (refusal->code == IMAP_CODE_NONEXISTENT)
		return TRUE;
	return mailbox_exists(c, mailbox, &exists, NULL) == IMAP_OK && !exists;
}

/* Leases the folder of a message being moved or removed as it was
 * listed. *gone: it has been deleted (or renamed away), or deleted and
 * created again (a new UIDVALIDITY), since, and the message with it;
 * then nothing is leased. */
static ImapStatus
lease_listed_source(ImapConn *c, const MoveReq *r, gboolean *gone,
                    ImapError **err)
{
	ImapError *local = NULL;
	ImapStatus st =
	    use_listed_mailbox(c, r->mailbox, r->uidvalidity, &local);

	*gone = st == IMAP_ENO && select_found_none(c, r->mailbox, local);
	if (*gone) {
		g_message("%s UID %u: %s", r->mailbox, r->uid, local->text);
		imap_error_free(local);
		return IMAP_OK;
	}
	imap_error_propagate(err, local);
	return st;
}

/* Whether the message is still where it was listed: another message
 * that has its UID in a re-created folder does not count. */
static ImapStatus
still_in_source(ImapConn *c, const MoveReq *r, gboolean *in_source,
                ImapError **err)
{
	gboolean gone = FALSE;
	ImapStatus st = lease_listed_source(c, r, &gone, err);

	*in_source = FALSE;
	if (st != IMAP_OK || gone)
		return st;
	st = imap_uid_exists(c, r->mailbox, r->uid, in_source, err);
	imap_conn_release_mailbox(c);
	return st;
}

/* Removes the original of a move whose copy was confirmed, unless the
 * source went away in between (with the original). */
static ImapStatus
expunge_original(ImapConn *c, const MoveReq *r, ImapError **err)
{
	gboolean gone = FALSE;
	ImapStatus st = lease_listed_source(c, r, &gone, err);

	if (st != IMAP_OK || gone)
		return st;
	st = imap_expunge_uid(c, r->mailbox, r->uid, err);
	imap_conn_release_mailbox(c);
	return st;
}

static ImapStatus
verify_move(ImapConn *c, void *data, gboolean *done, ImapError **err)
{
	MoveReq *r = data;
	gboolean in_source = FALSE, same = FALSE;
	ImapStatus st;

	st = still_in_source(c, r, &in_source, err);
	if (st == IMAP_OK)
		st = find_moved(c, r, err);
	if (st != IMAP_OK)
		return st;
	if (r->found_uid != 0 && in_source) {
		st = same_message(c, r->mailbox, r->uid, r->dest, r->found_uid,
		                  &same, err);
		if (st != IMAP_OK)
			return st;
		if (!same) {
			/* Another message of that size and date: ours is
			 * still only in the source, so move it again. */
			r->found_uid = 0;
			*done = FALSE;
			return IMAP_OK;
		}
		/* COPY landed, the expunge did not: finish the move. */
		g_message("move of %s UID %u was cut after the copy; removing "
		          "the original",
		          r->mailbox, r->uid);
		st = expunge_original(c, r, err);
		*done = st == IMAP_OK;
		return st;
	}
	if (r->found_uid != 0 || !in_source) {
		*done = r->found_uid != 0;
		if (!*done)
			return imap_error_set(err, IMAP_ENO,
			                      IMAP_CODE_NONEXISTENT,
			                      "%s UID %u vanished during the "
			                      "move",
			                      r->mailbox, r->uid);
		return IMAP_OK;
	}
	*done = FALSE;
	return IMAP_OK;
}

/* The new UID COPYUID names, or 0 if there is none or it cannot be
 * true: a UID the destination held before the move belongs to another
 * message, whose bytes the name mv used would then show. */
static guint32
copyuid_new_uid(const MoveReq *r)
{
	guint32 new_uid;

	if (!r->copyuid.valid)
		return 0;
	new_uid = imap_copyuid_lookup(&r->copyuid, r->uid);
	if (new_uid != 0 && r->dest_before != NULL &&
	    r->copyuid.uidvalidity == r->dest_before->uidvalidity &&
	    store_listing_find(r->dest_before, new_uid) != NULL) {
		g_warning("move of %s UID %u: the server's COPYUID names %s "
		          "UID %u, which another message already had; "
		          "ignoring it",
		          r->mailbox, r->uid, r->dest, new_uid);
		return 0;
	}
	return new_uid;
}

static ImapStatus
do_find_moved(ImapConn *c, void *data, ImapError **err)
{
	return find_moved(c, data, err);
}

/* Without a usable COPYUID, looks for the moved message among the
 * destination's new UIDs, as after a lost connection. Only when the
 * destination's earlier listing tells new UIDs from old ones. */
static guint32
search_moved(MailStore *s, MoveReq *r)
{
	ImapError *err = NULL;

	if (r->found_uid != 0 || r->dest_before == NULL)
		return r->found_uid;
	if (with_conn(s, r->dest, TRUE, do_find_moved, r, &err) != IMAP_OK) {
		g_debug("looking for the message moved to %s: %s", r->dest,
		        err != NULL ? err->text : "failed");
		imap_error_free(err);
		return 0;
	}
	return r->found_uid;
}

ImapStatus
store_move_message(MailStore *s, const char *mailbox, guint32 uid,
                   const char *dest, const char *alias, guint32 *new_uid,
                   ImapError **err)
{
	MoveReq r = {.mailbox = mailbox, .uid = uid, .dest = dest};
	guint32 uidvalidity = 0;
	ImapStatus st;

	*new_uid = 0;
	if (s->read_only)
		return read_only_error(err);
	st = store_message(s, mailbox, uid, NULL, &r.meta, err);
	if (st != IMAP_OK)
		return st;
	r.uidvalidity = listed_uidvalidity(s, mailbox);
	r.dest_before = known_listing(s, dest);
	st = with_conn_checked(s, mailbox, do_move, verify_move, &r, err);
	if (st != IMAP_OK) {
		/* The outcome is unknown: look again next time. */
		store_listing_unref(r.dest_before);
		forget_listing(s, mailbox);
		forget_listing(s, dest);
		imap_copyuid_clear(&r.copyuid);
		return st;
	}
	remove_message(s, mailbox, uid);
	r.meta.uid = copyuid_new_uid(&r);
	if (r.meta.uid != 0)
		uidvalidity = r.copyuid.uidvalidity;
	else
		r.meta.uid = search_moved(s, &r);
	store_listing_unref(r.dest_before);
	insert_message(s, dest, uidvalidity, &r.meta, alias);
	*new_uid = r.meta.uid;
	imap_copyuid_clear(&r.copyuid);
	return IMAP_OK;
}

/* ---------------------------------------------------------- deleting */

static gboolean
is_trash(MailStore *s, const char *mailbox)
{
	return s->trash == NULL || name_equal(s->trash, mailbox);
}

static ImapStatus
do_expunge(ImapConn *c, void *data, ImapError **err)
{
	MoveReq *r = data;
	ImapStatus st = use_listed_mailbox(c, r->mailbox, r->uidvalidity, err);

	if (st != IMAP_OK)
		return st;
	st = imap_expunge_uid(c, r->mailbox, r->uid, err);
	imap_conn_release_mailbox(c);
	return st;
}

/* Expunging one UID twice is harmless; only "is it gone" matters. A
 * folder deleted and created again since has lost it too. */
static ImapStatus
verify_expunge(ImapConn *c, void *data, gboolean *done, ImapError **err)
{
	MoveReq *r = data;
	gboolean exists = TRUE;
	ImapStatus st = still_in_source(c, r, &exists, err);

	*done = st == IMAP_OK && !exists;
	return st;
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
	r.uidvalidity = listed_uidvalidity(s, mailbox);
	st = with_conn_checked(s, mailbox, do_expunge, verify_expunge, &r, err);
	if (st == IMAP_OK)
		remove_message(s, mailbox, uid);
	return st;
}

/* --------------------------------------------------------- uploading */

typedef struct {
	const char *mailbox;
	GBytes *message;
	const char *flags;
	gint64 date;
	StoreListing *before;
	ImapAppendUid appenduid;
	guint32 found_uid;
} AppendReq;

static ImapStatus
do_append(ImapConn *c, void *data, ImapError **err)
{
	AppendReq *r = data;

	return imap_append(c, r->mailbox, r->flags, r->date, r->message,
	                   &r->appenduid, err);
}

/* Did the upload land? A new message with exactly these bytes. */
static ImapStatus
verify_append(ImapConn *c, void *data, gboolean *done, ImapError **err)
{
	AppendReq *r = data;
	gsize len;
	const guint8 *want = g_bytes_get_data(r->message, &len);
	GArray *uids = NULL;
	ImapStatus st;

	*done = FALSE;
	st = new_uids_of_size(c, r->mailbox, len, r->before, &uids, err);
	for (guint i = 0; st == IMAP_OK && i < uids->len && !*done; i++) {
		Collect col = {g_byte_array_new()};
		guint64 total = 0;
		guint32 uid = g_array_index(uids, guint32, i);
		/* One byte more than ours: a longer body is not ours, and a
		 * server announcing a huge literal is refused at once. */
		st = imap_uid_fetch_body(c, r->mailbox, uid, 0, len + 1,
		                         collect, &col, &total, err);
		if (st == IMAP_OK && col.got->len == len &&
		    memcmp(col.got->data, want, len) == 0) {
			*done = TRUE;
			r->found_uid = uid;
		}
		g_byte_array_free(col.got, TRUE);
	}
	if (uids != NULL)
		g_array_free(uids, TRUE);
	return st;
}

static ImapStatus
check_then_append(ImapConn *c, void *data, ImapError **err)
{
	AppendReq *r = data;
	gboolean done = FALSE;
	ImapStatus st = verify_append(c, r, &done, err);

	if (st != IMAP_OK || done)
		return st;
	return do_append(c, r, err);
}

struct StoreAppendBaseline {
	char *mailbox;
	StoreListing *before; /* NULL: the mailbox was never listed */
};

void
store_append_baseline_free(StoreAppendBaseline *b)
{
	if (b == NULL)
		return;
	g_free(b->mailbox);
	store_listing_unref(b->before);
	g_free(b);
}

/* The listing from before the first attempt: one taken later may already
 * hold the copy an attempt in doubt left, which would then look old. */
static StoreListing *
baseline_listing(MailStore *s, const char *mailbox,
                 StoreAppendBaseline **baseline)
{
	StoreAppendBaseline *b;

	if (baseline == NULL)
		return known_listing(s, mailbox);
	b = *baseline;
	if (b != NULL && strcmp(b->mailbox, mailbox) != 0) {
		store_append_baseline_free(b);
		b = NULL;
	}
	if (b == NULL) {
		b = g_new0(StoreAppendBaseline, 1);
		b->mailbox = g_strdup(mailbox);
		b->before = known_listing(s, mailbox);
		*baseline = b;
	}
	return b->before != NULL ? store_listing_ref(b->before) : NULL;
}

ImapStatus
store_append(MailStore *s, const char *mailbox, GBytes *message,
             const char *flags, gint64 date, const char *alias,
             gboolean check_first, StoreAppendBaseline **baseline,
             guint32 *new_uid, ImapError **err)
{
	AppendReq r = {mailbox, message, flags, date, NULL, {0}, 0};
	StoreMessage m = {0};
	ImapStatus st;

	*new_uid = 0;
	if (s->read_only)
		return read_only_error(err);
	r.before = baseline_listing(s, mailbox, baseline);
	st = with_conn_checked(s, NULL,
	                       check_first ? check_then_append : do_append,
	                       verify_append, &r, err);
	store_listing_unref(r.before);
	if (st != IMAP_OK)
		return st;
	m.uid = r.appenduid.valid ? r.appenduid.uid : r.found_uid;
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

/* ------------------------------------------------------------- flags */

typedef struct {
	const char *mailbox;
	guint32 uid;
	const char *flags;
	guint32 uidvalidity; /* mailbox's, as listed (0: unknown) */
} FlagReq;

/* Setting flags to a value is idempotent. */
static ImapStatus
do_set_flags(ImapConn *c, void *data, ImapError **err)
{
	FlagReq *r = data;
	g_autofree char *set = g_strdup_printf("%u", r->uid);
	ImapStatus st = use_listed_mailbox(c, r->mailbox, r->uidvalidity, err);

	if (st != IMAP_OK)
		return st;
	st = imap_uid_store(c, r->mailbox, set, IMAP_STORE_SET, r->flags, err);
	imap_conn_release_mailbox(c);
	return st;
}

ImapStatus
store_set_flags(MailStore *s, const char *mailbox, guint32 uid,
                const char *flags, ImapError **err)
{
	FlagReq r = {mailbox, uid, flags, 0};
	ImapStatus st;

	if (s->read_only)
		return read_only_error(err);
	r.uidvalidity = listed_uidvalidity(s, mailbox);
	st = with_conn(s, mailbox, TRUE, do_set_flags, &r, err);
	if (st == IMAP_OK)
		update_message(s, mailbox, uid, store_set_flags_fn, flags);
	return st;
}

/* ---------------------------------------------------------- mailboxes */

typedef struct {
	const char *a, *b;
	ImapMailboxStatus status;
	int creates_sent;
	gboolean selectable; /* DELETE: a holds messages, if any */
	gboolean not_empty;  /* DELETE: refused, a has messages */
} NameReq;

/* EEXIST only for a mailbox that was there before our CREATE went out.
 * A CREATE answered [ALREADYEXISTS] after a LIST that did not show the
 * name lost a race: with another client creating the same name, or with
 * our own earlier attempt whose connection died, or with the server itself
 * (Dovecot's maildir sometimes says so while another session re-SELECTs
 * the parent). The mailbox exists either way, which is what mkdir asked. */
static ImapStatus
do_create(ImapConn *c, void *data, ImapError **err)
{
	NameReq *r = data;
	gboolean exists = FALSE;
	ImapStatus st = mailbox_exists(c, r->a, &exists, err);

	if (st != IMAP_OK)
		return st;
	if (exists && r->creates_sent == 0)
		return imap_error_set(err, IMAP_ENO, IMAP_CODE_ALREADYEXISTS,
		                      "mailbox %s already exists", r->a);
	if (exists)
		return IMAP_OK;
	r->creates_sent++;
	st = imap_create(c, r->a, err);
	if (st == IMAP_ENO && err != NULL && *err != NULL &&
	    (*err)->code == IMAP_CODE_ALREADYEXISTS) {
		g_message("CREATE %s: the server says it exists although LIST "
		          "just did not show it; taking it as created",
		          r->a);
		imap_error_clear(err);
		return IMAP_OK;
	}
	return st;
}

static ImapStatus
verify_create(ImapConn *c, void *data, gboolean *done, ImapError **err)
{
	NameReq *r = data;

	return mailbox_exists(c, r->a, done, err);
}

ImapStatus
store_create_mailbox(MailStore *s, const char *name, ImapError **err)
{
	NameReq r = {name, NULL, {0}, 0};
	ImapStatus st;

	if (s->read_only)
		return read_only_error(err);
	st = with_conn_checked(s, NULL, do_create, verify_create, &r, err);
	forget_mailbox_list(s);
	return st;
}

/* IMAP has no "delete if empty": DELETE removes the messages too. So the
 * count is taken on the connection that sends DELETE, right before it,
 * and again before each retry: another client may deliver into the
 * mailbox while a cut DELETE waits to be sent again. */
static ImapStatus
do_delete(ImapConn *c, void *data, ImapError **err)
{
	NameReq *r = data;
	ImapStatus st;

	if (r->selectable) {
		st = imap_status(c, r->a, &r->status, err);
		if (st != IMAP_OK)
			return st;
		if (r->status.messages > 0) {
			r->not_empty = TRUE;
			return imap_error_set(err, IMAP_ENO, IMAP_CODE_CANNOT,
			                      "mailbox %s holds %u messages; "
			                      "not deleting it",
			                      r->a, r->status.messages);
		}
	}
	return imap_delete(c, r->a, err);
}

static ImapStatus
verify_delete(ImapConn *c, void *data, gboolean *done, ImapError **err)
{
	NameReq *r = data;
	gboolean exists = TRUE;
	ImapStatus st = mailbox_exists(c, r->a, &exists, err);

	*done = st == IMAP_OK && !exists;
	return st;
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
	r.selectable = !(mb.attrs & IMAP_MBOX_NOSELECT);
	store_mailbox_clear(&mb);
	if (has_children(s, name)) {
		*not_empty = TRUE;
		return imap_error_set(err, IMAP_ENO, IMAP_CODE_CANNOT,
		                      "mailbox %s has subfolders", name);
	}
	st = with_conn_checked(s, NULL, do_delete, verify_delete, &r, err);
	*not_empty = r.not_empty;
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

static ImapStatus
verify_rename(ImapConn *c, void *data, gboolean *done, ImapError **err)
{
	NameReq *r = data;
	gboolean from = TRUE, to = FALSE;
	ImapStatus st = mailbox_exists(c, r->a, &from, err);

	if (st == IMAP_OK)
		st = mailbox_exists(c, r->b, &to, err);
	*done = st == IMAP_OK && !from && to;
	return st;
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
	st = with_conn_checked(s, NULL, do_rename, verify_rename, &r, err);
	store_invalidate(s);
	return st;
}
