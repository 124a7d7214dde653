/* ops_fetch.c - UID FETCH of message metadata (listings) and of bodies
 * streamed to the caller: the operations a read and a listing run. */
#include "imap/ops.h"

#include <string.h>

#include "imap/command.h"
#include "imap/date.h"
#include "imap/uidset.h"
#include "imap/utf7.h"
#include "ops_internal.h"

/* ---------------------------------------------------------------------
 * UID FETCH metadata
 */

typedef struct {
	guint32 uid, seq;
	guint64 size, modseq;
	gint64 date;
	const char *flags; /* in MetaCollect.strings */
	gboolean has_size, has_date, has_flags;
} MetaRecord;

typedef struct {
	GArray *wanted;  /* normalized ranges of the requested set */
	GArray *records; /* MetaRecord */
	GStringChunk *strings;
	GPtrArray *vanished; /* char *, VANISHED (EARLIER) sets */
} MetaCollect;

static const char *
meta_flags(MetaCollect *mc, const ImapValue *list)
{
	GString *s = g_string_new(NULL);
	const char *out;

	for (guint i = 0; list_at(list, i) != NULL; i++) {
		const char *f = value_text(list_at(list, i));

		if (f == NULL)
			continue;
		if (s->len > 0)
			g_string_append_c(s, ' ');
		g_string_append(s, f);
	}
	out = g_string_chunk_insert_const(mc->strings, s->str);
	g_string_free(s, TRUE);
	return out;
}

static void
on_meta_fetch(MetaCollect *mc, const ImapResponse *resp)
{
	const ImapValue *items = arg_at(resp, 0), *v;
	MetaRecord rec = {0};

	if (!imap_value_u32(imap_fetch_item(items, "UID"), &rec.uid) ||
	    ranges_find(mc->wanted, rec.uid) == NULL)
		return;
	rec.seq = resp->number;
	rec.has_size =
	    imap_value_u64(imap_fetch_item(items, "RFC822.SIZE"), &rec.size);
	v = imap_fetch_item(items, "INTERNALDATE");
	rec.has_date =
	    value_text(v) != NULL && imap_date_parse(value_text(v), &rec.date);
	v = imap_fetch_item(items, "FLAGS");
	if (v != NULL && v->type == IMAP_VALUE_LIST) {
		rec.has_flags = TRUE;
		rec.flags = meta_flags(mc, v);
	}
	v = imap_fetch_item(items, "MODSEQ");
	if (!imap_value_u64(list_at(v, 0), &rec.modseq))
		rec.modseq = 0;
	/* A body fetched by another thread carries a UID but no metadata. */
	if (!rec.has_size && !rec.has_date && !rec.has_flags && rec.modseq == 0)
		return;
	if (rec.flags == NULL)
		rec.flags = "";
	g_array_append_val(mc->records, rec);
}

static void
on_meta(void *user, const ImapResponse *resp)
{
	MetaCollect *mc = user;
	const ImapValue *first = arg_at(resp, 0);

	if (resp->kind != IMAP_RESP_UNTAGGED)
		return;
	if (name_is(resp, "FETCH") && first != NULL &&
	    first->type == IMAP_VALUE_LIST) {
		on_meta_fetch(mc, resp);
		return;
	}
	if (mc->vanished != NULL && name_is(resp, "VANISHED") &&
	    imap_value_is_atom(list_at(first, 0), "EARLIER") &&
	    value_text(arg_at(resp, 1)) != NULL)
		g_ptr_array_add(mc->vanished,
		                g_strdup(value_text(arg_at(resp, 1))));
}

static ImapCmd *
meta_cmd(ImapConn *c, const char *uidset, const ImapFetchMetaParams *params)
{
	gboolean modseq = imap_conn_has_cap(c, "CONDSTORE") ||
	                  imap_conn_has_cap(c, "QRESYNC");
	ImapCmd *cmd = ops_cmd(c, "UID FETCH");

	imap_cmd_raw(cmd, uidset);
	if (params != NULL && params->changedsince > 0) {
		imap_cmd_raw(cmd, "(UID FLAGS MODSEQ)");
		imap_cmd_printf(cmd, "(CHANGEDSINCE %" G_GUINT64_FORMAT "%s)",
		                params->changedsince,
		                params->vanished &&
		                        imap_conn_is_enabled(c, "QRESYNC")
		                    ? " VANISHED"
		                    : "");
	} else if (params != NULL && params->flags_only) {
		imap_cmd_raw(cmd,
		             modseq ? "(UID FLAGS MODSEQ)" : "(UID FLAGS)");
	} else {
		imap_cmd_raw(cmd, modseq ? "(UID RFC822.SIZE INTERNALDATE "
		                           "FLAGS MODSEQ)"
		                         : "(UID RFC822.SIZE INTERNALDATE "
		                           "FLAGS)");
	}
	return cmd;
}

ImapStatus
imap_uid_fetch_meta(ImapConn *c, const char *mailbox, const char *uidset,
                    const ImapFetchMetaParams *params, ImapMetaFn fn,
                    void *user, ImapError **err)
{
	MetaCollect mc = {0};
	ImapCmdHooks hooks = {.untagged = on_meta, .user = &mc};
	GArray *set;
	ImapStatus st;

	if (fn == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "UID FETCH: no callback");
	set = uidset != NULL ? imap_uidset_parse(uidset, G_MAXUINT32) : NULL;
	if (set == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "UID FETCH: invalid UID set '%s'",
		                      uidset != NULL ? uidset : "(null)");
	if (params != NULL && params->changedsince > 0 &&
	    !imap_conn_has_cap(c, "CONDSTORE") &&
	    !imap_conn_has_cap(c, "QRESYNC")) {
		g_array_unref(set);
		return imap_error_set(err, IMAP_EUNSUPPORTED, 0,
		                      "UID FETCH CHANGEDSINCE needs CONDSTORE");
	}
	mc.wanted = ranges_normalize(set);
	g_array_unref(set);
	mc.records = g_array_new(FALSE, FALSE, sizeof(MetaRecord));
	mc.strings = g_string_chunk_new(4096);
	if (params != NULL && params->vanished && params->vanished_fn != NULL)
		mc.vanished = g_ptr_array_new_with_free_func(g_free);

	st = run_in_mailbox(c, mailbox, TRUE, meta_cmd(c, uidset, params),
	                    &hooks, NULL, err);
	/* fn runs here, on the caller's thread, not on the reader thread. */
	if (st == IMAP_OK) {
		for (guint i = 0; mc.vanished != NULL && i < mc.vanished->len;
		     i++)
			params->vanished_fn(user,
			                    g_ptr_array_index(mc.vanished, i));
		for (guint i = 0; i < mc.records->len; i++) {
			MetaRecord *r =
			    &g_array_index(mc.records, MetaRecord, i);
			ImapMessageMeta meta = {
			    .uid = r->uid,
			    .seq = r->seq,
			    .size = r->size,
			    .internaldate = r->date,
			    .flags = (char *)r->flags,
			    .modseq = r->modseq,
			    .has_size = r->has_size,
			    .has_date = r->has_date,
			    .has_flags = r->has_flags,
			};
			fn(user, &meta);
		}
	} else {
		imap_error_prefix(err, "UID FETCH %s in %s", uidset,
		                  mailbox != NULL ? mailbox : "(null)");
	}
	if (mc.vanished != NULL)
		g_ptr_array_unref(mc.vanished);
	g_string_chunk_free(mc.strings);
	g_array_unref(mc.records);
	g_array_unref(mc.wanted);
	return st;
}

/* ---------------------------------------------------------------------
 * UID FETCH body, streamed to the caller
 */

typedef struct {
	ImapConn *c;
	guint32 uid;
	guint64 offset;
	guint64 length; /* most bytes a reply may hold; 0: no limit */
	gboolean (*write)(void *ctx, const char *data, gsize len);
	void *ctx;
	guint64 total;
	gboolean pending;      /* accepted a literal; its response not seen */
	gboolean got;          /* the body arrived */
	gboolean foreign;      /* the literal we took was another UID's */
	gboolean write_failed; /* the caller's write() refused data */
	gboolean gone;         /* the server answered NIL: no such body */
	guint64 oversize;      /* size of a literal longer than asked, or 0 */
} BodyFetch;

/* "BODY[]" or "BODY[]<origin>" matching what we asked for. */
static gboolean
body_item_matches(const BodyFetch *bf, const char *item)
{
	guint64 origin;
	gsize len;
	char *digits;
	gboolean ok;

	if (item == NULL || g_ascii_strncasecmp(item, "BODY[]", 6) != 0)
		return FALSE;
	item += 6;
	if (*item == '\0')
		return TRUE;
	len = strlen(item);
	if (item[0] != '<' || len < 3 || item[len - 1] != '>')
		return FALSE;
	digits = g_strndup(item + 1, len - 2);
	ok = imap_parse_u64(digits, &origin) && origin == bf->offset;
	g_free(digits);
	return ok;
}

static gboolean
body_write(void *ctx, const char *data, gsize len)
{
	BodyFetch *bf = ctx;

	/* Keep reading after a refusal so the connection stays usable. */
	if (!bf->write_failed && len > 0 && !bf->write(bf->ctx, data, len))
		bf->write_failed = TRUE;
	bf->total += len;
	return TRUE;
}

/* Nothing to finish: completion is judged from the FETCH response that
 * carried the literal, and a broken connection fails the command. */
static void
body_end(void *ctx, gboolean ok)
{
}

/* Takes the bytes of a literal longer than what was asked for, to fail
 * the connection at the first of them: nothing after such a literal can be
 * trusted, and reading it through could take forever. */
static gboolean
refuse_write(void *ctx, const char *data, gsize len)
{
	return FALSE;
}

static gboolean
on_body_literal(void *user, const ImapLiteralInfo *info, ImapLiteralSink *sink)
{
	BodyFetch *bf = user;

	if (bf->got || bf->pending || info->name == NULL ||
	    g_ascii_strcasecmp(info->name, "FETCH") != 0 || info->depth != 1 ||
	    !body_item_matches(bf, info->item))
		return FALSE;
	if (info->uid != 0 && info->uid != bf->uid)
		return FALSE;
	/* Whose literal it is shows only after it (UID last): on a shared
	 * connection, on_body() takes it whole once the UID is known. */
	if (info->uid == 0 && imap_conn_holders(bf->c) > 1)
		return FALSE;
	if (bf->length != 0 && info->size > bf->length) {
		/* Refused here rather than left to the parser, which would
		 * hold up to its literal limit in memory first. */
		bf->oversize = info->size;
		g_warning("UID FETCH %u: the server announced a literal of "
		          "%" G_GUINT64_FORMAT " bytes for at most "
		          "%" G_GUINT64_FORMAT
		          " asked; dropping the connection",
		          bf->uid, info->size, bf->length);
		sink->write = refuse_write;
		sink->end = body_end;
		sink->ctx = bf;
		return TRUE;
	}
	bf->pending = TRUE;
	sink->write = body_write;
	sink->end = body_end;
	sink->ctx = bf;
	return TRUE;
}

/* The value of the body item in a FETCH list, or NULL. */
static const ImapValue *
body_value(const BodyFetch *bf, const ImapValue *items)
{
	for (guint i = 0; list_at(items, i + 1) != NULL; i += 2)
		if (body_item_matches(bf, value_text(list_at(items, i))))
			return list_at(items, i + 1);
	return NULL;
}

static void
on_body(void *user, const ImapResponse *resp)
{
	BodyFetch *bf = user;
	const ImapValue *items = arg_at(resp, 0), *v;
	guint32 uid = 0;

	if (resp->kind != IMAP_RESP_UNTAGGED || !name_is(resp, "FETCH"))
		return;
	imap_value_u32(imap_fetch_item(items, "UID"), &uid);
	if (bf->pending) {
		/* Responses complete after their literals: this one holds the
		 * literal we accepted. */
		bf->pending = FALSE;
		if (uid == bf->uid)
			bf->got = TRUE;
		else
			bf->foreign = TRUE;
		return;
	}
	if (bf->got || uid != bf->uid)
		return;
	v = body_value(bf, items);
	if (v == NULL)
		return;
	if (v->type == IMAP_VALUE_STRING && bf->length != 0 &&
	    v->len > bf->length) {
		bf->oversize = v->len;
	} else if (v->type == IMAP_VALUE_STRING) {
		body_write(bf, v->str, v->len);
		bf->got = TRUE;
	} else if (v->type == IMAP_VALUE_NIL) {
		/* RFC 2180 4.1.3: what a server may answer for a message
		 * another client expunged. An empty body would read as a
		 * file silently cut short. */
		bf->gone = TRUE;
	}
}

static ImapCmd *
body_cmd(ImapConn *c, guint32 uid, guint64 offset, guint64 length)
{
	ImapCmd *cmd = ops_cmd(c, "UID FETCH");

	imap_cmd_number(cmd, uid);
	if (offset == 0 && length == 0) {
		imap_cmd_raw(cmd, "(UID BODY.PEEK[])");
		return cmd;
	}
	/* length 0 means to the end; a partial length is at most 2^32-1. */
	if (length == 0 || length > G_MAXUINT32)
		length = G_MAXUINT32;
	imap_cmd_printf(cmd,
	                "(UID BODY.PEEK[]<%" G_GUINT64_FORMAT
	                ".%" G_GUINT64_FORMAT ">)",
	                offset, length);
	return cmd;
}

ImapStatus
imap_uid_fetch_body(ImapConn *c, const char *mailbox, guint32 uid,
                    guint64 offset, guint64 length,
                    gboolean (*write)(void *ctx, const char *data, gsize len),
                    void *ctx, guint64 *total, ImapError **err)
{
	BodyFetch bf = {
	    .c = c, .uid = uid, .offset = offset, .write = write, .ctx = ctx};
	ImapCmdHooks hooks = {
	    .untagged = on_body, .literal_start = on_body_literal, .user = &bf};
	ImapStatus st;

	/* What body_cmd() asks for: a partial fetch, or all of it. */
	if (offset != 0 || length != 0)
		bf.length =
		    length == 0 || length > G_MAXUINT32 ? G_MAXUINT32 : length;

	if (total != NULL)
		*total = 0;
	if (uid == 0 || offset > G_MAXUINT32 || write == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "UID FETCH: invalid UID %u or offset",
		                      uid);
	st = lease_mailbox(c, mailbox, err);
	if (st != IMAP_OK) {
		imap_error_prefix(err, "UID FETCH %u BODY[] in %s", uid,
		                  mailbox != NULL ? mailbox : "(null)");
		return st;
	}
	st = ops_run(c, body_cmd(c, uid, offset, length), &hooks, NULL, err);
	/* No data may only mean the message arrived after our view of the
	 * mailbox was last updated: refresh it and ask once more. */
	if (st == IMAP_OK && !bf.got && !bf.foreign && !bf.gone &&
	    bf.oversize == 0 && bf.total == 0) {
		st = refresh_view(c, err);
		if (st == IMAP_OK)
			st = ops_run(c, body_cmd(c, uid, offset, length),
			             &hooks, NULL, err);
	}
	imap_conn_release_mailbox(c);
	if (total != NULL)
		*total = bf.total;
	if (bf.oversize != 0) {
		/* The parser's "sink refused" says less than this. */
		imap_error_clear(err);
		st = imap_error_set(err, IMAP_EPROTO, 0,
		                    "the server sent a literal of "
		                    "%" G_GUINT64_FORMAT " bytes for at most "
		                    "%" G_GUINT64_FORMAT " asked",
		                    bf.oversize, bf.length);
	} else if (st == IMAP_ENO && err != NULL && *err != NULL &&
	           (*err)->code == IMAP_CODE_EXPUNGEISSUED)
		(*err)->code = IMAP_CODE_NONEXISTENT;
	else if (st == IMAP_OK && bf.foreign)
		st = imap_error_set(err, IMAP_EPROTO, 0,
		                    "body of another message arrived");
	else if (st == IMAP_OK && bf.gone && !bf.got)
		st = imap_error_set(err, IMAP_ENO, IMAP_CODE_NONEXISTENT,
		                    "the server has no body for UID %u (NIL); "
		                    "expunged by another client?",
		                    uid);
	else if (st == IMAP_OK && !bf.got)
		st = imap_error_set(err, IMAP_ENO, IMAP_CODE_NONEXISTENT,
		                    "message UID %u does not exist", uid);
	else if (st == IMAP_OK && bf.write_failed)
		st = imap_error_set(err, IMAP_EINVAL, 0,
		                    "the writer refused the message data");
	if (st != IMAP_OK)
		imap_error_prefix(err, "UID FETCH %u BODY[] in %s", uid,
		                  mailbox != NULL ? mailbox : "(null)");
	return st;
}
