/* expunge.c - deleting exactly one message, with or without UIDPLUS
 * (RFC 4315). Plain EXPUNGE removes every message flagged \Deleted, so
 * without UID EXPUNGE the messages someone else flagged are unflagged for
 * the moment of our EXPUNGE and flagged again after it. A message flagged
 * by another client inside that window is expunged too; it was flagged
 * for deletion, so nothing that was meant to stay is lost. */
#include "imap/ops.h"

#include <string.h>

static ImapStatus
expunge_with_uidplus(ImapConn *c, const char *mailbox, const char *set,
                     ImapError **err)
{
	ImapStatus st;

	st = imap_uid_store(c, mailbox, set, IMAP_STORE_ADD, "\\Deleted", err);
	if (st != IMAP_OK)
		return st;
	return imap_uid_expunge(c, mailbox, set, err);
}

static ImapStatus
plain_expunge(ImapConn *c, ImapError **err)
{
	return imap_conn_run(c, imap_cmd_new("EXPUNGE"), NULL, NULL, err);
}

/* Others marked \Deleted, without uid; NULL-safe empty result "". */
static ImapStatus
others_deleted(ImapConn *c, const char *mailbox, guint32 uid, char **set,
               ImapError **err)
{
	static const ImapSearchKey deleted = {"DELETED", NULL, NULL};
	GArray *uids = NULL;
	GArray *keep;
	ImapStatus st;

	st = imap_uid_search(c, mailbox, &deleted, 1, &uids, err);
	if (st != IMAP_OK)
		return st;
	keep = g_array_new(FALSE, FALSE, sizeof(guint32));
	for (guint i = 0; i < uids->len; i++)
		if (g_array_index(uids, guint32, i) != uid)
			g_array_append_val(keep,
			                   g_array_index(uids, guint32, i));
	*set =
	    imap_uidset_format((const guint32 *)(void *)keep->data, keep->len);
	g_array_free(keep, TRUE);
	g_array_free(uids, TRUE);
	return IMAP_OK;
}

static ImapStatus
expunge_without_uidplus(ImapConn *c, const char *mailbox, const char *set,
                        guint32 uid, ImapError **err)
{
	g_autofree char *others = NULL;
	ImapError *restore_err = NULL;
	ImapStatus st;

	st = others_deleted(c, mailbox, uid, &others, err);
	if (st != IMAP_OK)
		return st;
	if (*others != '\0') {
		st = imap_uid_store(c, mailbox, others, IMAP_STORE_REMOVE,
		                    "\\Deleted", err);
		if (st != IMAP_OK)
			return st;
	}
	st = imap_uid_store(c, mailbox, set, IMAP_STORE_ADD, "\\Deleted", err);
	if (st == IMAP_OK)
		st = plain_expunge(c, err);
	if (*others != '\0' &&
	    imap_uid_store(c, mailbox, others, IMAP_STORE_ADD, "\\Deleted",
	                   &restore_err) != IMAP_OK) {
		g_warning("could not flag UIDs %s in %s as \\Deleted again: %s",
		          others, mailbox, restore_err->text);
		imap_error_free(restore_err);
	}
	return st;
}

ImapStatus
imap_expunge_uid(ImapConn *c, const char *mailbox, guint32 uid, ImapError **err)
{
	g_autofree char *set = g_strdup_printf("%u", uid);
	ImapStatus st;

	if (uid == 0)
		return imap_error_set(err, IMAP_EINVAL, 0, "UID 0");
	/* One lease around the whole sequence: nothing else may select
	 * another mailbox on this connection in between. */
	st = imap_conn_use_mailbox(c, mailbox, NULL, NULL, err);
	if (st != IMAP_OK)
		return st;
	if (imap_conn_has_cap(c, "UIDPLUS"))
		st = expunge_with_uidplus(c, mailbox, set, err);
	else
		st = expunge_without_uidplus(c, mailbox, set, uid, err);
	imap_conn_release_mailbox(c);
	return st;
}
