/* fetch_bodies.c - whole bodies of many messages in one UID FETCH, each
 * streamed to a sink as its literal arrives (RFC 3501 6.4.5 BODY.PEEK[],
 * which never sets \Seen). One round trip for a batch instead of one per
 * message is what makes prefetching over a slow link pay. */
#include <string.h>

#include "imap/ops.h"

typedef struct {
	const ImapBodySink *sink;
	GArray *wanted;   /* ImapUidRange */
	GHashTable *done; /* uids delivered */
} Batch;

typedef struct {
	Batch *b;
	guint32 uid;
	gboolean wanted;
} Literal;

static gboolean
literal_write(void *ctx, const char *data, gsize len)
{
	Literal *l = ctx;

	if (!l->wanted)
		return TRUE;
	l->wanted = l->b->sink->write(l->b->sink->ctx, l->uid, data, len);
	return TRUE; /* a refusing sink only drops this message */
}

static void
literal_end(void *ctx, gboolean ok)
{
	Literal *l = ctx;

	l->b->sink->end(l->b->sink->ctx, l->uid, ok && l->wanted);
	g_hash_table_add(l->b->done, GUINT_TO_POINTER(l->uid));
	g_free(l);
}

static gboolean
is_body_item(const char *item)
{
	return item != NULL && (g_ascii_strcasecmp(item, "BODY[]") == 0 ||
	                        g_ascii_strncasecmp(item, "BODY[]<", 7) == 0);
}

/* Bodies after their UID (the usual order) stream straight through. */
static gboolean
on_literal(void *user, const ImapLiteralInfo *info, ImapLiteralSink *sink)
{
	Batch *b = user;
	Literal *l;

	if (g_strcmp0(info->name, "FETCH") != 0 || info->depth != 1 ||
	    !is_body_item(info->item) || info->uid == 0 ||
	    !imap_uidset_contains(b->wanted, info->uid) ||
	    g_hash_table_contains(b->done, GUINT_TO_POINTER(info->uid)))
		return FALSE;
	l = g_new0(Literal, 1);
	l->b = b;
	l->uid = info->uid;
	l->wanted = b->sink->begin(b->sink->ctx, info->uid, info->size);
	sink->write = literal_write;
	sink->end = literal_end;
	sink->ctx = l;
	return TRUE;
}

/* A body that came before its UID, or as a quoted string, arrives whole
 * with the response. */
static void
on_untagged(void *user, const ImapResponse *r)
{
	Batch *b = user;
	const ImapValue *items, *body = NULL;
	guint32 uid = 0;

	if (g_strcmp0(r->name, "FETCH") != 0 || r->args->len == 0)
		return;
	items = r->args->pdata[0];
	if (!imap_value_u32(imap_fetch_item(items, "UID"), &uid) ||
	    !imap_uidset_contains(b->wanted, uid) ||
	    g_hash_table_contains(b->done, GUINT_TO_POINTER(uid)))
		return;
	body = imap_fetch_item(items, "BODY[]");
	if (body == NULL || body->type != IMAP_VALUE_STRING)
		return;
	g_hash_table_add(b->done, GUINT_TO_POINTER(uid));
	if (b->sink->begin(b->sink->ctx, uid, body->len) &&
	    b->sink->write(b->sink->ctx, uid, body->str, body->len))
		b->sink->end(b->sink->ctx, uid, TRUE);
	else
		b->sink->end(b->sink->ctx, uid, FALSE);
}

ImapStatus
imap_uid_fetch_bodies(ImapConn *c, const char *mailbox, const char *uidset,
                      const ImapBodySink *sink, ImapError **err)
{
	Batch b = {.sink = sink};
	ImapCmdHooks hooks = {
	    .untagged = on_untagged,
	    .literal_start = on_literal,
	    .user = &b,
	};
	ImapCmd *cmd;
	ImapStatus st;

	b.wanted = uidset != NULL ? imap_uidset_parse(uidset, 0) : NULL;
	if (b.wanted == NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "UID FETCH: invalid UID set '%s'",
		                      uidset != NULL ? uidset : "(null)");
	b.done = g_hash_table_new(NULL, NULL);
	st = imap_conn_use_mailbox(c, mailbox, NULL, NULL, err);
	if (st == IMAP_OK) {
		cmd = imap_cmd_new("UID FETCH");
		imap_cmd_raw(cmd, uidset);
		imap_cmd_raw(cmd, "(UID BODY.PEEK[])");
		st = imap_conn_run(c, cmd, &hooks, NULL, err);
		imap_conn_release_mailbox(c);
	}
	if (st != IMAP_OK)
		imap_error_prefix(err, "UID FETCH %s BODY.PEEK[] in %s", uidset,
		                  mailbox);
	g_hash_table_destroy(b.done);
	g_array_free(b.wanted, TRUE);
	return st;
}
