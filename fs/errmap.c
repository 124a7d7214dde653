/* errmap.c - one place that turns IMAP failures into errno values, and
 * logs each with the server's own words. */
#include <errno.h>
#include <string.h>

#include "imapfs.h"

/* Servers older than RFC 5530 (Cyrus 3.6 among them) answer a bare NO
 * where newer ones add a response code; their words are all there is. */
static const struct {
	const char *words;
	int errnum;
} bare_no_words[] = {
    {"over quota", ENOSPC},        /* Cyrus */
    {"quota exceeded", ENOSPC},    /* others */
    {"does not exist", ENOENT},    /* Cyrus: "Mailbox does not exist" */
    {"already exists", EEXIST},    /* Cyrus: "Mailbox already exists" */
    {"permission denied", EACCES}, /* Cyrus */
};

static int
errno_from_words(ImapStatus st, ImapCode code, const char *text)
{
	g_autofree char *lower = NULL;

	if (st != IMAP_ENO || code != IMAP_CODE_NONE || text == NULL)
		return 0;
	lower = g_ascii_strdown(text, -1);
	for (gsize i = 0; i < G_N_ELEMENTS(bare_no_words); i++)
		if (strstr(lower, bare_no_words[i].words) != NULL)
			return bare_no_words[i].errnum;
	return 0;
}

static int
errno_for(ImapStatus st, ImapCode code, const char *text)
{
	int e = errno_from_words(st, code, text);

	if (e != 0)
		return e;
	switch (code) {
	case IMAP_CODE_NONEXISTENT:
	case IMAP_CODE_TRYCREATE:
	case IMAP_CODE_EXPUNGEISSUED:
		return ENOENT;
	case IMAP_CODE_ALREADYEXISTS:
		return EEXIST;
	case IMAP_CODE_OVERQUOTA:
		return ENOSPC;
	case IMAP_CODE_TOOBIG:
		return EFBIG;
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
