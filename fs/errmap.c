/* errmap.c - one place that turns IMAP failures into errno values, and
 * logs each with the server's own words. */
#include <errno.h>
#include <string.h>

#include "imapfs.h"

/* Servers older than RFC 5530 refuse over-quota APPENDs and COPYs with a
 * bare NO: Cyrus says "Over quota", others "Quota exceeded". */
static gboolean
says_over_quota(ImapStatus st, ImapCode code, const char *text)
{
	g_autofree char *lower = NULL;

	if (st != IMAP_ENO || code != IMAP_CODE_NONE || text == NULL)
		return FALSE;
	lower = g_ascii_strdown(text, -1);
	return strstr(lower, "over quota") != NULL ||
	       strstr(lower, "quota exceeded") != NULL;
}

static int
errno_for(ImapStatus st, ImapCode code, const char *text)
{
	if (says_over_quota(st, code, text))
		return ENOSPC;
	switch (code) {
	case IMAP_CODE_NONEXISTENT:
	case IMAP_CODE_TRYCREATE:
	case IMAP_CODE_EXPUNGEISSUED:
		return ENOENT;
	case IMAP_CODE_ALREADYEXISTS:
		return EEXIST;
	case IMAP_CODE_OVERQUOTA:
		return ENOSPC;
	case IMAP_CODE_NOPERM:
		return EACCES;
	case IMAP_CODE_READONLY:
		return EROFS;
	case IMAP_CODE_INUSE:
		return EBUSY;
	default:
		break;
	}
	switch (st) {
	case IMAP_OK:
		return 0;
	case IMAP_EINVAL:
		return EINVAL;
	case IMAP_EUNSUPPORTED:
		return ENOTSUP;
	case IMAP_EAUTH:
		return EACCES;
	default:
		return EIO;
	}
}

int
imapfs_errno(const char *what, const char *object, ImapStatus st,
             ImapError *err)
{
	int e = errno_for(st, err != NULL ? err->code : IMAP_CODE_NONE,
	                  err != NULL ? err->text : NULL);

	if (e == ENOENT)
		g_debug("%s %s: %s", what, object, err ? err->text : "");
	else
		g_warning("%s %s failed (%s): %s", what, object, g_strerror(e),
		          err != NULL ? err->text : imap_status_name(st));
	imap_error_free(err);
	return -e;
}
