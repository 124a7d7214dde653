/* ops_change.c - UID SEARCH and the operations that change messages: UID
 * STORE, COPY, MOVE, EXPUNGE and APPEND. */
#include "imap/ops.h"

#include <string.h>

#include "imap/command.h"
#include "imap/date.h"
#include "imap/uidset.h"
#include "imap/utf7.h"
#include "ops_internal.h"

/* ---------------------------------------------------------------------
 * UID SEARCH
 */

typedef struct {
	GPtrArray *esearch; /* pairs: tag, ALL set (either may be NULL) */
	GArray *uids;       /* plain SEARCH results */
} SearchCollect;

static void
on_esearch(SearchCollect *sc, const ImapResponse *resp)
{
	const ImapValue *corr = arg_at(resp, 0);
	const char *tag = NULL, *all = NULL;
	guint i = 0;

	if (corr != NULL && corr->type == IMAP_VALUE_LIST) {
		if (imap_value_is_atom(list_at(corr, 0), "TAG"))
			tag = value_text(list_at(corr, 1));
		i = 1;
	}
	if (imap_value_is_atom(arg_at(resp, i), "UID"))
		i++;
	for (; arg_at(resp, i) != NULL; i += 2)
		if (imap_value_is_atom(arg_at(resp, i), "ALL"))
			all = value_text(arg_at(resp, i + 1));
	g_ptr_array_add(sc->esearch, g_strdup(tag));
	g_ptr_array_add(sc->esearch, g_strdup(all));
}

static void
on_search(void *user, const ImapResponse *resp)
{
	SearchCollect *sc = user;

	if (resp->kind != IMAP_RESP_UNTAGGED)
		return;
	if (name_is(resp, "ESEARCH")) {
		on_esearch(sc, resp);
		return;
	}
	if (!name_is(resp, "SEARCH"))
		return;
	for (guint i = 0; i < resp->args->len; i++) {
		guint32 uid;

		/* A trailing (MODSEQ n) is a list: skipped. */
		if (imap_value_u32(arg_at(resp, i), &uid) && uid != 0)
			g_array_append_val(sc->uids, uid);
	}
}

static gboolean
valid_search_atom(const char *atom)
{
	if (atom == NULL || *atom == '\0')
		return FALSE;
	for (const char *p = atom; *p != '\0'; p++)
		if (!g_ascii_isalnum(*p) && strchr("-.:*,", *p) == NULL)
			return FALSE;
	return TRUE;
}

static ImapStatus
add_search_keys(ImapCmd *cmd, const ImapSearchKey *keys, gsize nkeys,
                ImapError **err)
{
	if (nkeys == 0) {
		imap_cmd_raw(cmd, "ALL");
		return IMAP_OK;
	}
	for (gsize i = 0; i < nkeys; i++) {
		const ImapSearchKey *k = &keys[i];
		GArray *set;

		if (!valid_search_atom(k->atom))
			return imap_error_set(err, IMAP_EINVAL, 0,
			                      "invalid search key '%s'",
			                      k->atom != NULL ? k->atom : "");
		imap_cmd_raw(cmd, k->atom);
		if (k->arg1 == NULL)
			continue;
		/* UID takes a sequence-set, which may not be quoted. */
		set = g_ascii_strcasecmp(k->atom, "UID") == 0
		          ? imap_uidset_parse(k->arg1, G_MAXUINT32)
		          : NULL;
		if (set != NULL) {
			imap_cmd_raw(cmd, k->arg1);
			g_array_unref(set);
		} else {
			imap_cmd_astring(cmd, k->arg1, strlen(k->arg1));
		}
		if (k->arg2 != NULL)
			imap_cmd_astring(cmd, k->arg2, strlen(k->arg2));
	}
	return IMAP_OK;
}

static ImapStatus
esearch_result(SearchCollect *sc, const char *tag, GArray *out, ImapError **err)
{
	for (guint i = 0; i + 1 < sc->esearch->len; i += 2) {
		const char *t = g_ptr_array_index(sc->esearch, i);
		const char *all = g_ptr_array_index(sc->esearch, i + 1);
		GArray *set;

		if (t == NULL || tag == NULL || strcmp(t, tag) != 0)
			continue;
		if (all == NULL)
			return IMAP_OK;
		set = imap_uidset_parse(all, 0);
		if (set == NULL ||
		    imap_uidset_count(set) > MAX_SEARCH_RESULTS) {
			if (set != NULL)
				g_array_unref(set);
			return imap_error_set(err, IMAP_EPROTO, 0,
			                      "bad ESEARCH result");
		}
		for (guint r = 0; r < set->len; r++) {
			ImapUidRange *rg = &g_array_index(set, ImapUidRange, r);

			for (guint64 u = rg->first; u <= rg->last; u++) {
				guint32 uid = (guint32)u;
				g_array_append_val(out, uid);
			}
		}
		g_array_unref(set);
		return IMAP_OK;
	}
	return IMAP_OK;
}

static gint
u32_cmp(gconstpointer a, gconstpointer b)
{
	guint32 x = *(const guint32 *)a, y = *(const guint32 *)b;

	return x < y ? -1 : x > y;
}

static void
sort_unique(GArray *a)
{
	guint w = 0;

	g_array_sort(a, u32_cmp);
	for (guint i = 0; i < a->len; i++)
		if (w == 0 || g_array_index(a, guint32, w - 1) !=
		                  g_array_index(a, guint32, i))
			g_array_index(a, guint32, w++) =
			    g_array_index(a, guint32, i);
	g_array_set_size(a, w);
}

ImapStatus
imap_uid_search(ImapConn *c, const char *mailbox, const ImapSearchKey *keys,
                gsize nkeys, GArray **uids, ImapError **err)
{
	SearchCollect sc = {0};
	ImapCmdHooks hooks = {.untagged = on_search, .user = &sc};
	gboolean esearch = imap_conn_has_cap(c, "ESEARCH");
	ImapResponse *tagged = NULL;
	ImapCmd *cmd;
	ImapStatus st;

	*uids = NULL;
	cmd = ops_cmd(c, "UID SEARCH");
	if (esearch)
		imap_cmd_raw(cmd, "RETURN (ALL)");
	else
		hooks.exclusive = TRUE; /* "* SEARCH" says not whose it is */
	if (add_search_keys(cmd, keys, nkeys, err) != IMAP_OK) {
		imap_cmd_free(cmd);
		imap_error_prefix(err, "UID SEARCH");
		return IMAP_EINVAL;
	}
	sc.esearch = g_ptr_array_new_with_free_func(g_free);
	sc.uids = g_array_new(FALSE, FALSE, sizeof(guint32));
	st = run_in_mailbox(c, mailbox, TRUE, cmd, &hooks, &tagged, err);
	if (st == IMAP_OK && esearch)
		st = esearch_result(&sc, tagged->tag, sc.uids, err);
	imap_response_free(tagged);
	g_ptr_array_unref(sc.esearch);
	if (st != IMAP_OK) {
		g_array_unref(sc.uids);
		imap_error_prefix(err, "UID SEARCH in %s",
		                  mailbox != NULL ? mailbox : "(null)");
		return st;
	}
	sort_unique(sc.uids);
	*uids = sc.uids;
	return IMAP_OK;
}

ImapStatus
imap_uid_exists(ImapConn *c, const char *mailbox, guint32 uid, gboolean *exists,
                ImapError **err)
{
	g_autofree char *set = g_strdup_printf("%u", uid);
	const ImapSearchKey key = {"UID", set, NULL};
	GArray *uids = NULL;
	ImapStatus st = imap_uid_search(c, mailbox, &key, 1, &uids, err);

	*exists = FALSE;
	if (st != IMAP_OK)
		return st;
	*exists = uids->len > 0;
	g_array_free(uids, TRUE);
	return IMAP_OK;
}

/* ---------------------------------------------------------------------
 * UID STORE, COPY, MOVE, EXPUNGE
 */

ImapStatus
imap_uid_store(ImapConn *c, const char *mailbox, const char *uidset,
               ImapStoreMode mode, const char *flags, ImapError **err)
{
	static const char *const modes[] = {
	    [IMAP_STORE_ADD] = "+FLAGS.SILENT",
	    [IMAP_STORE_REMOVE] = "-FLAGS.SILENT",
	    [IMAP_STORE_SET] = "FLAGS.SILENT",
	};
	ImapCmd *cmd;
	ImapStatus st;
	char *list;

	if ((guint)mode >= G_N_ELEMENTS(modes))
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "UID STORE: bad mode");
	if (check_uidset(uidset, err) != IMAP_OK) {
		imap_error_prefix(err, "UID STORE");
		return IMAP_EINVAL;
	}
	list = flag_list(flags, err);
	if (list == NULL) {
		imap_error_prefix(err, "UID STORE");
		return IMAP_EINVAL;
	}
	cmd = ops_cmd(c, "UID STORE");
	imap_cmd_raw(cmd, uidset);
	imap_cmd_raw(cmd, modes[mode]);
	imap_cmd_raw(cmd, list);
	g_free(list);
	st = run_in_mailbox(c, mailbox, FALSE, cmd, NULL, NULL, err);
	if (st != IMAP_OK)
		imap_error_prefix(err, "UID STORE %s in %s", uidset,
		                  mailbox != NULL ? mailbox : "(null)");
	return st;
}

void
imap_copyuid_clear(ImapCopyUid *cu)
{
	if (cu == NULL)
		return;
	if (cu->src != NULL)
		g_array_unref(cu->src);
	if (cu->dst != NULL)
		g_array_unref(cu->dst);
	memset(cu, 0, sizeof(*cu));
}

guint32
imap_copyuid_lookup(const ImapCopyUid *cu, guint32 src_uid)
{
	guint64 pos = 0;

	if (cu == NULL || !cu->valid || cu->src == NULL || cu->dst == NULL)
		return 0;
	for (guint i = 0; i < cu->src->len; i++) {
		const ImapUidRange *r =
		    &g_array_index(cu->src, ImapUidRange, i);

		if (src_uid >= r->first && src_uid <= r->last)
			return imap_uidset_nth(cu->dst,
			                       pos + src_uid - r->first);
		pos += (guint64)r->last - r->first + 1;
	}
	return 0;
}

typedef struct {
	GArray *wanted; /* normalized requested set */
	guint32 uidvalidity;
	GArray *src, *dst;
	gboolean bad;
} CopyUidCollect;

/* Adds one COPYUID (uidvalidity src dst) to what was collected. */
static void
copyuid_add(CopyUidCollect *cc, const char *uv, const char *src,
            const char *dst)
{
	GArray *s, *d;
	guint32 uidvalidity;

	if (uv == NULL || src == NULL || dst == NULL ||
	    !imap_parse_u32(uv, &uidvalidity)) {
		cc->bad = TRUE;
		return;
	}
	s = imap_uidset_parse(src, 0);
	d = imap_uidset_parse(dst, 0);
	if (s == NULL || d == NULL ||
	    imap_uidset_count(s) != imap_uidset_count(d) ||
	    (cc->src != NULL && uidvalidity != cc->uidvalidity)) {
		cc->bad = TRUE;
	} else if (cc->src == NULL) {
		cc->uidvalidity = uidvalidity;
		cc->src = g_array_ref(s);
		cc->dst = g_array_ref(d);
	} else {
		g_array_append_vals(cc->src, s->data, s->len);
		g_array_append_vals(cc->dst, d->data, d->len);
	}
	if (s != NULL)
		g_array_unref(s);
	if (d != NULL)
		g_array_unref(d);
}

/* Whether uidset names only UIDs we asked to copy or move. */
static gboolean
copyuid_src_ours(const CopyUidCollect *cc, const char *uidset)
{
	GArray *s = uidset != NULL ? imap_uidset_parse(uidset, 0) : NULL;
	gboolean ours = s != NULL && ranges_cover(cc->wanted, s);

	if (s != NULL)
		g_array_unref(s);
	return ours;
}

static void
on_move_copyuid(void *user, const ImapResponse *resp)
{
	CopyUidCollect *cc = user;
	const char *src = code_arg_text(resp, 1);

	if (resp->kind != IMAP_RESP_UNTAGGED || resp->cond != IMAP_COND_OK ||
	    resp->code == NULL ||
	    g_ascii_strcasecmp(resp->code, "COPYUID") != 0 || src == NULL)
		return;
	/* A MOVE from another thread reports UIDs outside our set. */
	if (copyuid_src_ours(cc, src))
		copyuid_add(cc, code_arg_text(resp, 0), src,
		            code_arg_text(resp, 2));
}

static void
copyuid_finish(CopyUidCollect *cc, const ImapResponse *tagged, const char *what,
               ImapCopyUid *out)
{
	if (tagged != NULL && tagged->code != NULL &&
	    g_ascii_strcasecmp(tagged->code, "COPYUID") == 0) {
		/* Unlike an untagged one, the tagged COPYUID is ours: one
		 * naming other UIDs is simply wrong. */
		if (copyuid_src_ours(cc, code_arg_text(tagged, 1)))
			copyuid_add(cc, code_arg_text(tagged, 0),
			            code_arg_text(tagged, 1),
			            code_arg_text(tagged, 2));
		else
			cc->bad = TRUE;
	}
	if (cc->bad)
		g_warning("%s: ignoring a malformed or inconsistent COPYUID",
		          what);
	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	if (cc->bad || cc->src == NULL)
		return;
	out->valid = TRUE;
	out->uidvalidity = cc->uidvalidity;
	out->src = g_array_ref(cc->src);
	out->dst = g_array_ref(cc->dst);
}

static ImapStatus
copy_or_move(ImapConn *c, const char *verb, const char *mailbox,
             const char *uidset, const char *dest, ImapCopyUid *out,
             ImapError **err)
{
	CopyUidCollect cc = {0};
	ImapCmdHooks hooks = {.untagged = on_move_copyuid, .user = &cc};
	ImapResponse *tagged = NULL;
	GArray *set;
	ImapCmd *cmd;
	ImapStatus st;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	set = uidset != NULL ? imap_uidset_parse(uidset, G_MAXUINT32) : NULL;
	if (set == NULL || dest == NULL) {
		if (set != NULL)
			g_array_unref(set);
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "%s: invalid UID set or destination",
		                      verb);
	}
	cc.wanted = ranges_normalize(set);
	g_array_unref(set);
	cmd = ops_cmd(c, verb);
	imap_cmd_raw(cmd, uidset);
	imap_cmd_mailbox(cmd, dest);
	st = run_in_mailbox(c, mailbox, FALSE, cmd, &hooks, &tagged, err);
	if (st == IMAP_OK)
		copyuid_finish(&cc, tagged, verb, out);
	else
		imap_error_prefix(err, "%s %s from %s to %s", verb, uidset,
		                  mailbox != NULL ? mailbox : "(null)", dest);
	imap_response_free(tagged);
	if (cc.src != NULL)
		g_array_unref(cc.src);
	if (cc.dst != NULL)
		g_array_unref(cc.dst);
	g_array_unref(cc.wanted);
	return st;
}

ImapStatus
imap_uid_copy(ImapConn *c, const char *mailbox, const char *uidset,
              const char *dest, ImapCopyUid *out, ImapError **err)
{
	return copy_or_move(c, "UID COPY", mailbox, uidset, dest, out, err);
}

ImapStatus
imap_uid_move(ImapConn *c, const char *mailbox, const char *uidset,
              const char *dest, ImapCopyUid *out, ImapError **err)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (!imap_conn_has_cap(c, "MOVE"))
		return imap_error_set(err, IMAP_EUNSUPPORTED, 0,
		                      "UID MOVE: the server has no MOVE");
	return copy_or_move(c, "UID MOVE", mailbox, uidset, dest, out, err);
}

ImapStatus
imap_uid_expunge(ImapConn *c, const char *mailbox, const char *uidset,
                 ImapError **err)
{
	ImapCmd *cmd;
	ImapStatus st;

	if (!imap_conn_has_cap(c, "UIDPLUS"))
		return imap_error_set(err, IMAP_EUNSUPPORTED, 0,
		                      "UID EXPUNGE: the server has no UIDPLUS");
	if (check_uidset(uidset, err) != IMAP_OK) {
		imap_error_prefix(err, "UID EXPUNGE");
		return IMAP_EINVAL;
	}
	cmd = ops_cmd(c, "UID EXPUNGE");
	imap_cmd_raw(cmd, uidset);
	st = run_in_mailbox(c, mailbox, FALSE, cmd, NULL, NULL, err);
	if (st != IMAP_OK)
		imap_error_prefix(err, "UID EXPUNGE %s in %s", uidset,
		                  mailbox != NULL ? mailbox : "(null)");
	return st;
}

/* ---------------------------------------------------------------------
 * APPEND
 */

ImapStatus
imap_append(ImapConn *c, const char *mailbox, const char *flags, gint64 date,
            GBytes *message, ImapAppendUid *out, ImapError **err)
{
	ImapResponse *tagged = NULL;
	gboolean binary = FALSE;
	gsize size = 0;
	const char *data;
	ImapCmd *cmd;
	ImapStatus st;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (mailbox == NULL || message == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "APPEND: no mailbox or message");
	data = g_bytes_get_data(message, &size);
	if (size > 0 && memchr(data, '\0', size) != NULL) {
		if (!imap_conn_has_cap(c, "BINARY"))
			return imap_error_set(
			    err, IMAP_EINVAL, 0,
			    "APPEND %s: message holds NUL bytes and the "
			    "server has no BINARY",
			    mailbox);
		binary = TRUE;
	}
	cmd = ops_cmd(c, "APPEND");
	imap_cmd_mailbox(cmd, mailbox);
	if (flags != NULL) {
		char *list = flag_list(flags, err);

		if (list == NULL) {
			imap_cmd_free(cmd);
			imap_error_prefix(err, "APPEND %s", mailbox);
			return IMAP_EINVAL;
		}
		imap_cmd_raw(cmd, list);
		g_free(list);
	}
	if (date > 0) {
		char *when = imap_date_format(date);

		imap_cmd_string(cmd, when, strlen(when));
		g_free(when);
	}
	imap_cmd_literal(cmd, message, binary);
	st = ops_run(c, cmd, NULL, &tagged, err);
	if (st != IMAP_OK) {
		/* The engine may hand over a NO reply too. */
		imap_response_free(tagged);
		imap_error_prefix(err, "APPEND %s", mailbox);
		return st;
	}
	if (out != NULL && tagged->code != NULL &&
	    g_ascii_strcasecmp(tagged->code, "APPENDUID") == 0) {
		const char *uv = code_arg_text(tagged, 0);
		const char *uid = code_arg_text(tagged, 1);

		out->valid = uv != NULL && uid != NULL &&
		             imap_parse_u32(uv, &out->uidvalidity) &&
		             imap_parse_u32(uid, &out->uid);
		if (!out->valid)
			memset(out, 0, sizeof(*out));
	}
	imap_response_free(tagged);
	return IMAP_OK;
}
