/* ops.c - the IMAP operations the filesystem needs (see ops.h): each builds
 * its command with the safe builder, runs it through the pipelining engine
 * and picks its own data out of the untagged responses, which may be mixed
 * with those of commands other threads have in flight. This file holds the
 * shared helpers (ops_internal.h) and the account and mailbox operations;
 * ops_fetch.c the UID FETCHes, ops_change.c SEARCH and the changes. */
#include "imap/ops.h"

#include <string.h>

#include "imap/command.h"
#include "imap/date.h"
#include "imap/uidset.h"
#include "imap/utf7.h"
#include "ops_internal.h"

/* ---------------------------------------------------------------------
 * Helpers shared by the operations
 */

ImapCmd *
ops_cmd(ImapConn *c, const char *verb)
{
	ImapCmd *cmd;

	cmd = imap_cmd_new(verb);
	imap_cmd_allow_utf8(cmd, imap_conn_utf8(c));
	return cmd;
}

/* Runs cmd unless the builder rejected an argument: then nothing is sent. */
ImapStatus
ops_run(ImapConn *c, ImapCmd *cmd, const ImapCmdHooks *hooks,
        ImapResponse **tagged, ImapError **err)
{
	ImapCmdHooks none = {0};

	if (!imap_cmd_valid(cmd, err)) {
		imap_cmd_free(cmd);
		return IMAP_EINVAL;
	}
	return imap_conn_run(c, cmd, hooks != NULL ? hooks : &none, tagged,
	                     err);
}

/* Checks that a mailbox name can be sent before anything else happens (a
 * lease would otherwise SELECT it first). */
static ImapStatus
check_mailbox_name(ImapConn *c, const char *mailbox, ImapError **err)
{
	ImapCmd *probe;
	gboolean ok;

	if (mailbox == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0, "no mailbox name");
	probe = ops_cmd(c, "SELECT");
	imap_cmd_mailbox(probe, mailbox);
	ok = imap_cmd_valid(probe, err);
	imap_cmd_free(probe);
	return ok ? IMAP_OK : IMAP_EINVAL;
}

/* Leases mailbox after checking its name can be sent at all. */
ImapStatus
lease_mailbox(ImapConn *c, const char *mailbox, ImapError **err)
{
	if (check_mailbox_name(c, mailbox, err) != IMAP_OK)
		return IMAP_EINVAL;
	return imap_conn_use_mailbox(c, mailbox, NULL, NULL, err);
}

/* How old a SELECT may be and still count as a fresh view. */
#define FRESH_SELECT_US (2 * G_USEC_PER_SEC)

/* A server reports messages other clients added only when a command ends,
 * and UID commands act on the view it has reported so far; a NOOP brings
 * the view of the leased mailbox up to date, unless a SELECT just did. */
ImapStatus
refresh_view(ImapConn *c, ImapError **err)
{
	if (imap_conn_view_fresh(c, FRESH_SELECT_US))
		return IMAP_OK;
	return ops_run(c, ops_cmd(c, "NOOP"), NULL, NULL, err);
}

/* Runs cmd while holding a lease on mailbox (refreshing the view first if
 * asked); the lease is always returned. */
ImapStatus
run_in_mailbox(ImapConn *c, const char *mailbox, gboolean refresh, ImapCmd *cmd,
               const ImapCmdHooks *hooks, ImapResponse **tagged,
               ImapError **err)
{
	ImapStatus st;

	if (!imap_cmd_valid(cmd, err)) {
		imap_cmd_free(cmd);
		return IMAP_EINVAL;
	}
	st = lease_mailbox(c, mailbox, err);
	if (st != IMAP_OK) {
		imap_cmd_free(cmd);
		return st;
	}
	st = refresh ? refresh_view(c, err) : IMAP_OK;
	if (st == IMAP_OK)
		st = ops_run(c, cmd, hooks, tagged, err);
	else
		imap_cmd_free(cmd);
	imap_conn_release_mailbox(c);
	return st;
}

gboolean
name_is(const ImapResponse *r, const char *name)
{
	return r->name != NULL && g_ascii_strcasecmp(r->name, name) == 0;
}

const ImapValue *
arg_at(const ImapResponse *r, guint i)
{
	if (r->args == NULL || i >= r->args->len)
		return NULL;
	return g_ptr_array_index(r->args, i);
}

const ImapValue *
list_at(const ImapValue *list, guint i)
{
	if (list == NULL || list->type != IMAP_VALUE_LIST ||
	    list->items == NULL || i >= list->items->len)
		return NULL;
	return g_ptr_array_index(list->items, i);
}

/* Text of an atom or string (not NIL, not a list). */
const char *
value_text(const ImapValue *v)
{
	if (v == NULL)
		return NULL;
	if (v->type != IMAP_VALUE_ATOM && v->type != IMAP_VALUE_STRING)
		return NULL;
	return v->str;
}

const char *
code_arg_text(const ImapResponse *r, guint i)
{
	if (r->code_args == NULL || i >= r->code_args->len)
		return NULL;
	return value_text(g_ptr_array_index(r->code_args, i));
}

/* The UTF-8 form of a mailbox name as the server sent it. */
static char *
decode_mailbox_name(ImapConn *c, const char *raw)
{
	char *name;

	if (g_ascii_strcasecmp(raw, "INBOX") == 0)
		return g_strdup("INBOX");
	if (imap_conn_utf8(c)) {
		if (!g_utf8_validate(raw, -1, NULL))
			g_warning("mailbox name is not valid UTF-8: %s", raw);
		return g_strdup(raw);
	}
	name = imap_utf7_decode(raw);
	if (name == NULL) {
		g_warning("mailbox name is not valid modified UTF-7: %s", raw);
		name = g_strdup(raw);
	}
	return name;
}

/* The wire form of a UTF-8 mailbox name (or pattern). */
static char *
encode_mailbox_name(ImapConn *c, const char *utf8)
{
	if (imap_conn_utf8(c))
		return g_strdup(utf8);
	return imap_utf7_encode(utf8);
}

static gboolean
same_mailbox(const char *a, const char *b)
{
	if (g_ascii_strcasecmp(a, "INBOX") == 0)
		return g_ascii_strcasecmp(b, "INBOX") == 0;
	return strcmp(a, b) == 0;
}

/* atom-char minus the ones that are special in flags and resp-specials. */
static gboolean
is_atom_char(char ch)
{
	if ((unsigned char)ch <= 0x20 || (unsigned char)ch >= 0x7f)
		return FALSE;
	return strchr("(){%*\"\\]", ch) == NULL;
}

/* "\Word" or a keyword atom. */
static gboolean
valid_flag(const char *f, gsize len)
{
	gsize i = 0;

	if (len > 0 && f[0] == '\\')
		i = 1;
	if (i == len)
		return FALSE;
	for (; i < len; i++)
		if (!is_atom_char(f[i]))
			return FALSE;
	return TRUE;
}

/* Turns "a  \Seen b" into "(a \Seen b)", or NULL if a flag is invalid. */
char *
flag_list(const char *flags, ImapError **err)
{
	GString *out = g_string_new("(");
	const char *p = flags != NULL ? flags : "";

	while (*p != '\0') {
		const char *end;

		if (*p == ' ') {
			p++;
			continue;
		}
		end = p;
		while (*end != '\0' && *end != ' ')
			end++;
		if (!valid_flag(p, end - p)) {
			imap_error_set(err, IMAP_EINVAL, 0,
			               "invalid flag '%.*s'", (int)(end - p),
			               p);
			g_string_free(out, TRUE);
			return NULL;
		}
		if (out->len > 1)
			g_string_append_c(out, ' ');
		g_string_append_len(out, p, end - p);
		p = end;
	}
	g_string_append_c(out, ')');
	return g_string_free(out, FALSE);
}

/* Validates a caller's UID set before it goes out as raw syntax. */
ImapStatus
check_uidset(const char *uidset, ImapError **err)
{
	GArray *set;

	set = uidset != NULL ? imap_uidset_parse(uidset, G_MAXUINT32) : NULL;
	if (set == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "invalid UID set '%s'",
		                      uidset != NULL ? uidset : "(null)");
	g_array_unref(set);
	return IMAP_OK;
}

/* ---------------------------------------------------------------------
 * Fast membership for UID sets: the ranges sorted and merged, so that
 * checking one UID is a binary search even for "1,3,5,...,99999".
 */

static gint
range_cmp(gconstpointer a, gconstpointer b)
{
	const ImapUidRange *ra = a, *rb = b;

	if (ra->first != rb->first)
		return ra->first < rb->first ? -1 : 1;
	return 0;
}

GArray *
ranges_normalize(const GArray *set)
{
	GArray *out;

	out = g_array_sized_new(FALSE, FALSE, sizeof(ImapUidRange), set->len);
	g_array_append_vals(out, set->data, set->len);
	g_array_sort(out, range_cmp);
	if (out->len == 0)
		return out;
	guint w = 0;
	for (guint i = 1; i < out->len; i++) {
		ImapUidRange *last = &g_array_index(out, ImapUidRange, w);
		ImapUidRange *r = &g_array_index(out, ImapUidRange, i);

		if (last->last == G_MAXUINT32 || r->first <= last->last + 1) {
			if (r->last > last->last)
				last->last = r->last;
		} else {
			g_array_index(out, ImapUidRange, ++w) = *r;
		}
	}
	g_array_set_size(out, w + 1);
	return out;
}

/* The normalized range holding uid, or NULL. */
const ImapUidRange *
ranges_find(const GArray *norm, guint32 uid)
{
	guint lo = 0, hi = norm->len;

	while (lo < hi) {
		guint mid = lo + (hi - lo) / 2;
		const ImapUidRange *r = &g_array_index(norm, ImapUidRange, mid);

		if (uid < r->first)
			hi = mid;
		else if (uid > r->last)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

gboolean
ranges_cover(const GArray *norm, const GArray *set)
{
	for (guint i = 0; i < set->len; i++) {
		const ImapUidRange *r = &g_array_index(set, ImapUidRange, i);
		const ImapUidRange *hit = ranges_find(norm, r->first);

		if (hit == NULL || r->last > hit->last)
			return FALSE;
	}
	return TRUE;
}

/* ---------------------------------------------------------------------
 * CAPABILITY, ENABLE, NOOP, LOGOUT
 */

/* A copy of a response that ops.c owns (and frees itself). */
static ImapValue *
value_dup(const ImapValue *v)
{
	ImapValue *d = g_new0(ImapValue, 1);

	d->type = v->type;
	d->len = v->len;
	d->literal = v->literal;
	if (v->str != NULL)
		d->str = g_memdup2(v->str, v->len + 1);
	if (v->items != NULL) {
		d->items = g_ptr_array_new_full(v->items->len, NULL);
		for (guint i = 0; i < v->items->len; i++)
			g_ptr_array_add(d->items, value_dup(g_ptr_array_index(
			                              v->items, i)));
	}
	return d;
}

static void
value_dup_free(ImapValue *v)
{
	if (v == NULL)
		return;
	if (v->items != NULL) {
		for (guint i = 0; i < v->items->len; i++)
			value_dup_free(g_ptr_array_index(v->items, i));
		g_ptr_array_unref(v->items);
	}
	g_free(v->str);
	g_free(v);
}

static GPtrArray *
values_dup(const GPtrArray *src)
{
	GPtrArray *out = g_ptr_array_new();

	for (guint i = 0; src != NULL && i < src->len; i++)
		g_ptr_array_add(out, value_dup(g_ptr_array_index(src, i)));
	return out;
}

static void
values_dup_free(GPtrArray *a)
{
	for (guint i = 0; i < a->len; i++)
		value_dup_free(g_ptr_array_index(a, i));
	g_ptr_array_unref(a);
}

static ImapResponse *
response_dup(const ImapResponse *r)
{
	ImapResponse *d = g_new0(ImapResponse, 1);

	d->kind = r->kind;
	d->tag = g_strdup(r->tag);
	d->cond = r->cond;
	d->has_number = r->has_number;
	d->number = r->number;
	d->name = g_strdup(r->name);
	d->code = g_strdup(r->code);
	d->code_id = r->code_id;
	d->code_args = values_dup(r->code_args);
	d->text = g_strdup(r->text != NULL ? r->text : "");
	d->args = values_dup(r->args);
	return d;
}

static void
response_dup_free(ImapResponse *d)
{
	if (d == NULL)
		return;
	g_free(d->tag);
	g_free(d->name);
	g_free(d->code);
	values_dup_free(d->code_args);
	g_free(d->text);
	values_dup_free(d->args);
	g_free(d);
}

static void
on_capability(void *user, const ImapResponse *resp)
{
	ImapResponse **caps = user;

	if (resp->kind != IMAP_RESP_UNTAGGED || !name_is(resp, "CAPABILITY"))
		return;
	response_dup_free(*caps);
	*caps = response_dup(resp);
}

ImapStatus
imap_capability(ImapConn *c, ImapError **err)
{
	ImapResponse *caps = NULL, *tagged = NULL;
	ImapCmdHooks hooks = {.untagged = on_capability, .user = &caps};
	ImapStatus st;

	st = ops_run(c, ops_cmd(c, "CAPABILITY"), &hooks, &tagged, err);
	if (st != IMAP_OK) {
		response_dup_free(caps);
		imap_response_free(tagged);
		imap_error_prefix(err, "CAPABILITY");
		return st;
	}
	if (caps != NULL)
		imap_conn_set_caps_from(c, caps);
	else if (tagged->code != NULL &&
	         g_ascii_strcasecmp(tagged->code, "CAPABILITY") == 0)
		imap_conn_set_caps_from(c, tagged);
	else
		st = imap_error_set(err, IMAP_EPROTO, 0,
		                    "CAPABILITY: the server sent none");
	response_dup_free(caps);
	imap_response_free(tagged);
	return st;
}

static void
on_enabled(void *user, const ImapResponse *resp)
{
	GPtrArray *enabled = user;

	if (resp->kind != IMAP_RESP_UNTAGGED || !name_is(resp, "ENABLED"))
		return;
	for (guint i = 0; i < resp->args->len; i++) {
		const char *ext = value_text(arg_at(resp, i));

		if (ext != NULL)
			g_ptr_array_add(enabled, g_ascii_strup(ext, -1));
	}
}

ImapStatus
imap_enable(ImapConn *c, const char *const *exts, ImapError **err)
{
	GPtrArray *enabled;
	ImapCmdHooks hooks = {.untagged = on_enabled};
	ImapCmd *cmd;
	ImapStatus st;
	guint n = 0;

	cmd = ops_cmd(c, "ENABLE");
	for (guint i = 0; exts != NULL && exts[i] != NULL; i++) {
		if (!imap_conn_has_cap(c, exts[i]))
			continue;
		for (const char *p = exts[i]; *p != '\0'; p++) {
			if (!is_atom_char(*p)) {
				imap_cmd_free(cmd);
				return imap_error_set(
				    err, IMAP_EINVAL, 0,
				    "ENABLE: invalid extension name");
			}
		}
		imap_cmd_raw(cmd, exts[i]);
		n++;
	}
	if (n == 0) {
		imap_cmd_free(cmd);
		return IMAP_OK;
	}
	enabled = g_ptr_array_new_with_free_func(g_free);
	hooks.user = enabled;
	st = ops_run(c, cmd, &hooks, NULL, err);
	if (st == IMAP_OK) {
		for (guint i = 0; i < enabled->len; i++) {
			const char *ext = g_ptr_array_index(enabled, i);

			imap_conn_mark_enabled(c, ext);
			/* QRESYNC on means CONDSTORE on (RFC 7162 3.2.3); a
			 * server that had CONDSTORE on already (a STATUS
			 * HIGHESTMODSEQ does it) lists only QRESYNC: Cyrus. */
			if (strcmp(ext, "QRESYNC") == 0)
				imap_conn_mark_enabled(c, "CONDSTORE");
		}
	} else
		imap_error_prefix(err, "ENABLE");
	g_ptr_array_unref(enabled);
	return st;
}

ImapStatus
imap_noop(ImapConn *c, ImapError **err)
{
	ImapStatus st;

	st = ops_run(c, ops_cmd(c, "NOOP"), NULL, NULL, err);
	if (st != IMAP_OK)
		imap_error_prefix(err, "NOOP");
	return st;
}

ImapStatus
imap_logout(ImapConn *c, ImapError **err)
{
	ImapCmdHooks hooks = {.exclusive = TRUE};
	ImapError *local = NULL;
	ImapStatus st;

	if (!imap_conn_is_alive(c))
		return imap_error_set(err, IMAP_ECLOSED, 0,
		                      "LOGOUT: connection already closed");
	st = ops_run(c, ops_cmd(c, "LOGOUT"), &hooks, NULL, &local);
	/* The server says BYE and hangs up; that is what we asked for. */
	if (st == IMAP_EBYE || st == IMAP_EEOF || st == IMAP_ECLOSED)
		st = IMAP_OK;
	if (st != IMAP_OK) {
		imap_error_prefix(&local, "LOGOUT");
		imap_error_propagate(err, local);
		return st;
	}
	imap_error_free(local);
	return IMAP_OK;
}

/* ---------------------------------------------------------------------
 * LIST
 */

static const struct {
	const char *name;
	guint flag;
} mbox_attrs[] = {
    {"\\NOSELECT", IMAP_MBOX_NOSELECT},
    {"\\NOINFERIORS", IMAP_MBOX_NOINFERIORS},
    {"\\NONEXISTENT", IMAP_MBOX_NONEXISTENT},
    {"\\HASCHILDREN", IMAP_MBOX_HASCHILDREN},
    {"\\HASNOCHILDREN", IMAP_MBOX_HASNOCHILDREN},
    {"\\MARKED", IMAP_MBOX_MARKED},
    {"\\UNMARKED", IMAP_MBOX_UNMARKED},
    {"\\SUBSCRIBED", IMAP_MBOX_SUBSCRIBED},
    {"\\ALL", IMAP_MBOX_ALL},
    {"\\ARCHIVE", IMAP_MBOX_ARCHIVE},
    {"\\DRAFTS", IMAP_MBOX_DRAFTS},
    {"\\FLAGGED", IMAP_MBOX_FLAGGED},
    {"\\JUNK", IMAP_MBOX_JUNK},
    {"\\SENT", IMAP_MBOX_SENT},
    {"\\TRASH", IMAP_MBOX_TRASH},
    {"\\REMOTE", IMAP_MBOX_REMOTE},
};

static guint
mbox_attr_flags(const ImapValue *list)
{
	guint attrs = 0;

	for (guint i = 0; list_at(list, i) != NULL; i++) {
		const char *a = value_text(list_at(list, i));

		if (a == NULL)
			continue;
		for (gsize k = 0; k < G_N_ELEMENTS(mbox_attrs); k++)
			if (g_ascii_strcasecmp(a, mbox_attrs[k].name) == 0)
				attrs |= mbox_attrs[k].flag;
	}
	return attrs;
}

/* Upper-cases a leading "inbox" hierarchy part so INBOX matches in any case. */
static char *
fold_inbox(const char *s, char delim)
{
	char *out = g_strdup(s);

	if (g_ascii_strncasecmp(out, "INBOX", 5) == 0 &&
	    (out[5] == '\0' || (delim != 0 && out[5] == delim)))
		memcpy(out, "INBOX", 5);
	return out;
}

/* RFC 3501 6.3.8 wildcards: '*' matches anything, '%' anything but the
 * hierarchy delimiter. */
static gboolean
list_match(const char *name, const char *pat, char delim)
{
	while (*pat != '\0') {
		if (*pat == '*' || *pat == '%') {
			gboolean any = *pat == '*';

			for (const char *n = name;; n++) {
				if (list_match(n, pat + 1, delim))
					return TRUE;
				if (*n == '\0' || (!any && *n == delim))
					return FALSE;
			}
		}
		if (*name != *pat)
			return FALSE;
		name++;
		pat++;
	}
	return *name == '\0';
}

typedef struct {
	ImapConn *conn;
	char *pattern;    /* wire form, NULL: take every LIST */
	GPtrArray *out;   /* ImapMailbox * */
	GHashTable *seen; /* raw names already in out */
	gboolean delim_set;
} ListCollect;

static gboolean
list_pattern_matches(const ListCollect *lc, const char *raw, char delim)
{
	char *name, *pat;
	gboolean ok;

	if (lc->pattern == NULL)
		return TRUE;
	name = fold_inbox(raw, delim);
	pat = fold_inbox(lc->pattern, delim);
	ok = list_match(name, pat, delim);
	g_free(name);
	g_free(pat);
	return ok;
}

static void
on_list(void *user, const ImapResponse *resp)
{
	ListCollect *lc = user;
	const ImapValue *attrs = arg_at(resp, 0), *dv = arg_at(resp, 1);
	const char *raw = value_text(arg_at(resp, 2));
	ImapMailbox *m;
	char delim = 0;

	if (resp->kind != IMAP_RESP_UNTAGGED || !name_is(resp, "LIST"))
		return;
	if (attrs == NULL || attrs->type != IMAP_VALUE_LIST || raw == NULL)
		return;
	if (dv != NULL && dv->type == IMAP_VALUE_STRING && dv->len == 1)
		delim = dv->str[0];
	else if (dv == NULL || dv->type != IMAP_VALUE_NIL)
		return;
	/* Another thread's LIST may be in flight: keep only names our
	 * pattern asked for, and each once. */
	if (!list_pattern_matches(lc, raw, delim) ||
	    g_hash_table_contains(lc->seen, raw))
		return;
	g_hash_table_add(lc->seen, g_strdup(raw));
	m = g_new0(ImapMailbox, 1);
	m->raw_name = g_strdup(raw);
	m->name = decode_mailbox_name(lc->conn, raw);
	m->delimiter = delim;
	m->attrs = mbox_attr_flags(attrs);
	g_ptr_array_add(lc->out, m);
	if (delim != 0 && !lc->delim_set) {
		lc->delim_set = TRUE;
		imap_conn_set_delimiter(lc->conn, delim);
	}
}

void
imap_mailbox_free(ImapMailbox *m)
{
	if (m == NULL)
		return;
	g_free(m->name);
	g_free(m->raw_name);
	g_free(m);
}

ImapStatus
imap_list(ImapConn *c, const char *reference, const char *pattern,
          GPtrArray **out, ImapError **err)
{
	ListCollect lc = {.conn = c};
	ImapCmdHooks hooks = {.untagged = on_list, .user = &lc};
	ImapCmd *cmd;
	ImapStatus st;

	*out = NULL;
	if (reference == NULL)
		reference = "";
	if (pattern == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0, "LIST: no pattern");
	cmd = ops_cmd(c, "LIST");
	imap_cmd_mailbox(cmd, reference);
	imap_cmd_mailbox(cmd, pattern);
	/* How a reference combines with the pattern is up to the server, so
	 * only a plain pattern is used to filter. */
	if (*reference == '\0')
		lc.pattern = encode_mailbox_name(c, pattern);
	lc.out =
	    g_ptr_array_new_with_free_func((GDestroyNotify)imap_mailbox_free);
	lc.seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	st = ops_run(c, cmd, &hooks, NULL, err);
	g_hash_table_unref(lc.seen);
	g_free(lc.pattern);
	if (st != IMAP_OK) {
		g_ptr_array_unref(lc.out);
		imap_error_prefix(err, "LIST \"%s\" \"%s\"", reference,
		                  pattern);
		return st;
	}
	*out = lc.out;
	return IMAP_OK;
}

/* ---------------------------------------------------------------------
 * STATUS
 */

typedef struct {
	ImapConn *conn;
	const char *mailbox;
	ImapMailboxStatus *out;
	gboolean seen;
} StatusCollect;

static void
status_item(ImapMailboxStatus *st, const char *item, const ImapValue *v)
{
	if (g_ascii_strcasecmp(item, "MESSAGES") == 0)
		st->has_messages = imap_value_u32(v, &st->messages);
	else if (g_ascii_strcasecmp(item, "UIDNEXT") == 0)
		st->has_uidnext = imap_value_u32(v, &st->uidnext);
	else if (g_ascii_strcasecmp(item, "UIDVALIDITY") == 0)
		st->has_uidvalidity = imap_value_u32(v, &st->uidvalidity);
	else if (g_ascii_strcasecmp(item, "UNSEEN") == 0)
		st->has_unseen = imap_value_u32(v, &st->unseen);
	else if (g_ascii_strcasecmp(item, "HIGHESTMODSEQ") == 0)
		st->has_highestmodseq = imap_value_u64(v, &st->highestmodseq);
}

static void
on_status(void *user, const ImapResponse *resp)
{
	StatusCollect *sc = user;
	const char *raw = value_text(arg_at(resp, 0));
	const ImapValue *items = arg_at(resp, 1);
	char *name;
	gboolean ours;

	if (resp->kind != IMAP_RESP_UNTAGGED || !name_is(resp, "STATUS") ||
	    raw == NULL || items == NULL || items->type != IMAP_VALUE_LIST)
		return;
	name = decode_mailbox_name(sc->conn, raw);
	ours = same_mailbox(name, sc->mailbox);
	g_free(name);
	if (!ours)
		return;
	sc->seen = TRUE;
	for (guint i = 0; list_at(items, i + 1) != NULL; i += 2) {
		const char *item = value_text(list_at(items, i));

		if (item != NULL)
			status_item(sc->out, item, list_at(items, i + 1));
	}
}

static ImapCmd *
status_cmd(ImapConn *c, const char *mailbox)
{
	ImapCmd *cmd = ops_cmd(c, "STATUS");

	imap_cmd_mailbox(cmd, mailbox);
	if (imap_conn_has_cap(c, "CONDSTORE"))
		imap_cmd_raw(
		    cmd, "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)");
	else
		imap_cmd_raw(cmd, "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)");
	return cmd;
}

static ImapStatus
status_result(ImapStatus st, const StatusCollect *sc, ImapError **err)
{
	if (st == IMAP_OK && !sc->seen)
		st = imap_error_set(err, IMAP_EPROTO, 0,
		                    "the server sent no STATUS data");
	if (st != IMAP_OK)
		imap_error_prefix(err, "STATUS %s", sc->mailbox);
	return st;
}

/* STATUS answers from this session's view of a mailbox it has selected
 * (Dovecot says [CLIENTBUG]): a NOOP brings that view up to date first,
 * or mail delivered since would not be counted. */
static ImapStatus
sync_if_selected(ImapConn *c, const char *mailbox, ImapError **err)
{
	if (mailbox == NULL || !imap_conn_has_selected(c, mailbox))
		return IMAP_OK;
	return imap_noop(c, err);
}

ImapStatus
imap_status(ImapConn *c, const char *mailbox, ImapMailboxStatus *out,
            ImapError **err)
{
	StatusCollect sc = {.conn = c, .mailbox = mailbox, .out = out};
	ImapCmdHooks hooks = {.untagged = on_status, .user = &sc};
	ImapStatus st;

	memset(out, 0, sizeof(*out));
	if (mailbox == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "STATUS: no mailbox");
	st = sync_if_selected(c, mailbox, err);
	if (st != IMAP_OK) {
		imap_error_prefix(err, "STATUS %s", mailbox);
		return st;
	}
	return status_result(
	    ops_run(c, status_cmd(c, mailbox), &hooks, NULL, err), &sc, err);
}

ImapStatus
imap_status_many(ImapConn *c, const char *const *mailboxes, guint n,
                 ImapMailboxStatus *out, ImapStatus *results, ImapError **err)
{
	StatusCollect *sc = g_new0(StatusCollect, n);
	ImapCmdHooks *hooks = g_new0(ImapCmdHooks, n);
	ImapPending **sent = g_new0(ImapPending *, n);
	ImapStatus st = IMAP_OK;

	for (guint i = 0; i < n; i++) {
		ImapCmd *cmd = status_cmd(c, mailboxes[i]);
		ImapError *local = NULL;

		memset(&out[i], 0, sizeof(out[i]));
		sc[i] = (StatusCollect){
		    .conn = c, .mailbox = mailboxes[i], .out = &out[i]};
		hooks[i] =
		    (ImapCmdHooks){.untagged = on_status, .user = &sc[i]};
		results[i] = IMAP_EINVAL;
		if (!imap_cmd_valid(cmd, &local)) {
			imap_cmd_free(cmd);
			imap_error_free(local);
			continue;
		}
		sent[i] = imap_conn_send(c, cmd, &hooks[i], &local);
		if (sent[i] == NULL) {
			results[i] = local != NULL ? local->status : IMAP_ENET;
			imap_error_free(local);
		}
	}
	for (guint i = 0; i < n; i++) {
		ImapError *local = NULL;

		if (sent[i] == NULL)
			continue;
		results[i] = status_result(
		    imap_conn_await(c, sent[i], NULL, &local), &sc[i], &local);
		/* The first lost connection is the caller's error; a NO
		 * (no such mailbox) is only that mailbox's. */
		if (local != NULL && st == IMAP_OK && results[i] != IMAP_ENO &&
		    results[i] != IMAP_EBAD && results[i] != IMAP_EPROTO) {
			st = results[i];
			imap_error_propagate(err, local);
			local = NULL;
		}
		imap_error_free(local);
	}
	g_free(sent);
	g_free(hooks);
	g_free(sc);
	return st;
}

/* ---------------------------------------------------------------------
 * CREATE, DELETE, RENAME, SUBSCRIBE
 */

/* Dovecot drops the connection when the mailbox it has selected is deleted
 * or renamed away ("Selected mailbox was deleted, have to disconnect"), so
 * DELETE and RENAME run with the selection parked on INBOX. Holding that
 * lease also keeps other threads from selecting the mailbox meanwhile. */
static gboolean
park_selection(ImapConn *c, const char *mailbox, const char *to)
{
	ImapError *local = NULL;

	if (g_ascii_strcasecmp(mailbox, "INBOX") == 0 ||
	    (to != NULL && g_ascii_strcasecmp(to, "INBOX") == 0))
		return FALSE;
	if (imap_conn_use_mailbox(c, "INBOX", NULL, NULL, &local) != IMAP_OK) {
		g_debug("cannot park the selection on INBOX: %s", local->text);
		imap_error_free(local);
		return FALSE;
	}
	return TRUE;
}

static ImapStatus
simple_mailbox_cmd(ImapConn *c, const char *verb, const char *mailbox,
                   const char *to, gboolean park, ImapError **err)
{
	gboolean parked = FALSE;
	ImapCmd *cmd;
	ImapStatus st;

	if (mailbox == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0, "%s: no mailbox",
		                      verb);
	cmd = ops_cmd(c, verb);
	imap_cmd_mailbox(cmd, mailbox);
	if (to != NULL)
		imap_cmd_mailbox(cmd, to);
	if (imap_cmd_valid(cmd, err) && park)
		parked = park_selection(c, mailbox, to);
	st = ops_run(c, cmd, NULL, NULL, err);
	if (parked)
		imap_conn_release_mailbox(c);
	if (st != IMAP_OK) {
		if (to != NULL)
			imap_error_prefix(err, "%s %s %s", verb, mailbox, to);
		else
			imap_error_prefix(err, "%s %s", verb, mailbox);
	}
	return st;
}

ImapStatus
imap_create(ImapConn *c, const char *mailbox, ImapError **err)
{
	return simple_mailbox_cmd(c, "CREATE", mailbox, NULL, FALSE, err);
}

ImapStatus
imap_delete(ImapConn *c, const char *mailbox, ImapError **err)
{
	ImapStatus st;

	st = simple_mailbox_cmd(c, "DELETE", mailbox, NULL, TRUE, err);
	if (st == IMAP_OK)
		imap_conn_forget_mailbox(c, mailbox);
	return st;
}

ImapStatus
imap_rename(ImapConn *c, const char *from, const char *to, ImapError **err)
{
	ImapStatus st;

	if (to == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0, "RENAME: no target");
	st = simple_mailbox_cmd(c, "RENAME", from, to, TRUE, err);
	if (st == IMAP_OK)
		imap_conn_forget_mailbox(c, from);
	return st;
}

ImapStatus
imap_subscribe(ImapConn *c, const char *mailbox, ImapError **err)
{
	return simple_mailbox_cmd(c, "SUBSCRIBE", mailbox, NULL, FALSE, err);
}

/* ---------------------------------------------------------------------
 * GETQUOTAROOT
 */

typedef struct {
	ImapConn *conn;
	const char *mailbox;
	GPtrArray *roots;   /* char *, from QUOTAROOT for our mailbox */
	GHashTable *quotas; /* root -> ImapQuota * */
} QuotaCollect;

static void
quota_free(gpointer p)
{
	imap_quota_clear(p);
	g_free(p);
}

static void
on_quotaroot(QuotaCollect *qc, const ImapResponse *resp)
{
	const char *raw = value_text(arg_at(resp, 0));
	char *name;
	gboolean ours;

	if (raw == NULL)
		return;
	name = decode_mailbox_name(qc->conn, raw);
	ours = same_mailbox(name, qc->mailbox);
	g_free(name);
	if (!ours)
		return;
	for (guint i = 1; arg_at(resp, i) != NULL; i++) {
		const char *root = value_text(arg_at(resp, i));

		if (root != NULL)
			g_ptr_array_add(qc->roots, g_strdup(root));
	}
}

static void
on_quota_data(QuotaCollect *qc, const ImapResponse *resp)
{
	const char *root = value_text(arg_at(resp, 0));
	const ImapValue *res = arg_at(resp, 1);
	ImapQuota *q;

	if (root == NULL || res == NULL || res->type != IMAP_VALUE_LIST)
		return;
	q = g_new0(ImapQuota, 1);
	q->root = g_strdup(root);
	for (guint i = 0; list_at(res, i + 2) != NULL; i += 3) {
		const ImapValue *name = list_at(res, i);
		guint64 used, limit;

		if (!imap_value_u64(list_at(res, i + 1), &used) ||
		    !imap_value_u64(list_at(res, i + 2), &limit))
			continue;
		if (imap_value_is_atom(name, "STORAGE")) {
			q->has_storage = TRUE;
			q->storage_used_kb = used;
			q->storage_limit_kb = limit;
		} else if (imap_value_is_atom(name, "MESSAGE")) {
			q->has_messages = TRUE;
			q->messages_used = used;
			q->messages_limit = limit;
		}
	}
	g_hash_table_replace(qc->quotas, q->root, q);
}

static void
on_quota(void *user, const ImapResponse *resp)
{
	QuotaCollect *qc = user;

	if (resp->kind != IMAP_RESP_UNTAGGED)
		return;
	if (name_is(resp, "QUOTAROOT"))
		on_quotaroot(qc, resp);
	else if (name_is(resp, "QUOTA"))
		on_quota_data(qc, resp);
}

void
imap_quota_clear(ImapQuota *q)
{
	if (q == NULL)
		return;
	g_free(q->root);
	memset(q, 0, sizeof(*q));
}

static void
quota_pick(QuotaCollect *qc, ImapQuota *out)
{
	for (guint i = 0; i < qc->roots->len; i++) {
		const char *root = g_ptr_array_index(qc->roots, i);
		ImapQuota *q = g_hash_table_lookup(qc->quotas, root);

		if (q == NULL || (!q->has_storage && !q->has_messages))
			continue;
		*out = *q;
		out->root = g_strdup(root);
		return;
	}
	if (qc->roots->len > 0)
		out->root = g_strdup(g_ptr_array_index(qc->roots, 0));
}

ImapStatus
imap_getquotaroot(ImapConn *c, const char *mailbox, ImapQuota *out,
                  ImapError **err)
{
	QuotaCollect qc = {.conn = c, .mailbox = mailbox};
	ImapCmdHooks hooks = {.untagged = on_quota, .user = &qc};
	ImapCmd *cmd;
	ImapStatus st;

	memset(out, 0, sizeof(*out));
	if (!imap_conn_has_cap(c, "QUOTA"))
		return imap_error_set(err, IMAP_EUNSUPPORTED, 0,
		                      "GETQUOTAROOT: the server has no QUOTA");
	if (mailbox == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "GETQUOTAROOT: no mailbox");
	cmd = ops_cmd(c, "GETQUOTAROOT");
	imap_cmd_mailbox(cmd, mailbox);
	qc.roots = g_ptr_array_new_with_free_func(g_free);
	qc.quotas =
	    g_hash_table_new_full(g_str_hash, g_str_equal, NULL, quota_free);
	st = ops_run(c, cmd, &hooks, NULL, err);
	if (st == IMAP_OK)
		quota_pick(&qc, out);
	else
		imap_error_prefix(err, "GETQUOTAROOT %s", mailbox);
	g_hash_table_unref(qc.quotas);
	g_ptr_array_unref(qc.roots);
	return st;
}
