/* expunge.c - deleting exactly one message, with or without UIDPLUS
 * (RFC 4315). Plain EXPUNGE removes every message flagged \Deleted, so
 * without UID EXPUNGE the messages someone else flagged are unflagged for
 * the moment of our EXPUNGE and flagged again after it. A message flagged
 * by another client inside that window is expunged too; it was flagged
 * for deletion, so nothing that was meant to stay is lost. Another client
 * doing the same can unflag ours for the moment of its EXPUNGE: so ours is
 * looked for afterwards, and the sequence run again while it is there. */
#include "imap/ops.h"

#include <string.h>

/* Runs of the sequence before giving up on a message that stays. */
#define FALLBACK_TRIES 3

/* Two sequences in one mailbox at once would each unflag the other's
 * message for their EXPUNGE: within this process they take turns. Only
 * servers without UIDPLUS get here, so one lock for all mailboxes. */
static GMutex fallback_lock;

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
expunge_others_kept(ImapConn *c, const char *mailbox, const char *set,
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

static ImapStatus
expunge_without_uidplus(ImapConn *c, const char *mailbox, const char *set,
                        guint32 uid, ImapError **err)
{
	gboolean present = TRUE;
	ImapStatus st = IMAP_OK;

	g_mutex_lock(&fallback_lock);
	/* The SELECT may have been made while another sequence had flags
	 * cleared for the moment; its view must not decide what to keep. */
	imap_conn_view_outdated(c);
	for (int i = 0; i < FALLBACK_TRIES && st == IMAP_OK && present; i++) {
		if (i > 0)
			g_message("%s UID %u survived EXPUNGE (another client "
			          "cleared its \\Deleted flag?); again",
			          mailbox, uid);
		st = expunge_others_kept(c, mailbox, set, uid, err);
		if (st == IMAP_OK)
			st = imap_uid_exists(c, mailbox, uid, &present, err);
	}
	g_mutex_unlock(&fallback_lock);
	if (st == IMAP_OK && present)
		st = imap_error_set(err, IMAP_ENO, 0,
		                    "%s UID %u is still there after %d "
		                    "EXPUNGEs: another client keeps clearing "
		                    "its \\Deleted flag",
		                    mailbox, uid, FALLBACK_TRIES);
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
