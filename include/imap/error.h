/* error.h - the one error type every imap/ function reports failures with. */
#ifndef IMAP_ERROR_H
#define IMAP_ERROR_H

#include <glib.h>

/* What went wrong, coarse enough for a caller to choose an errno or a retry. */
typedef enum {
	IMAP_OK = 0,
	IMAP_ENO,          /* the server answered NO */
	IMAP_EBAD,         /* the server answered BAD */
	IMAP_EBYE,         /* the server said BYE and is closing */
	IMAP_EEOF,         /* the connection closed without BYE */
	IMAP_ETIMEOUT,     /* a read or write did not finish in time */
	IMAP_ETLS,         /* TLS handshake or certificate verification */
	IMAP_ENET,         /* resolving, connecting, socket I/O */
	IMAP_EPROTO,       /* unparseable response or a limit exceeded */
	IMAP_EINVAL,       /* the caller asked for something unsendable */
	IMAP_EUNSUPPORTED, /* the server lacks a needed capability */
	IMAP_EAUTH,        /* authentication was refused */
	IMAP_ECLOSED,      /* the connection was already unusable */
	IMAP_ECONNECT,     /* no connection could be made at all (refused,
	                      unreachable, name unknown) */
} ImapStatus;

/* Response codes (RFC 3501 7.1, RFC 5530, RFC 4315, RFC 7162) that change
 * what a caller does. Unknown codes map to IMAP_CODE_OTHER. */
typedef enum {
	IMAP_CODE_NONE = 0,
	IMAP_CODE_OTHER,
	IMAP_CODE_ALERT,
	IMAP_CODE_ALREADYEXISTS,
	IMAP_CODE_NONEXISTENT,
	IMAP_CODE_OVERQUOTA,
	IMAP_CODE_NOPERM,
	IMAP_CODE_TRYCREATE,
	IMAP_CODE_AUTHENTICATIONFAILED,
	IMAP_CODE_AUTHORIZATIONFAILED,
	IMAP_CODE_UNAVAILABLE,
	IMAP_CODE_INUSE,
	IMAP_CODE_LIMIT,
	IMAP_CODE_CANNOT,
	IMAP_CODE_SERVERBUG,
	IMAP_CODE_EXPUNGEISSUED,
	IMAP_CODE_READONLY,
	IMAP_CODE_PRIVACYREQUIRED,
	IMAP_CODE_CONTACTADMIN,
	IMAP_CODE_EXPIRED,
	IMAP_CODE_CLIENTBUG,
	IMAP_CODE_UIDNOTSTICKY,
	IMAP_CODE_TOOBIG, /* RFC 7889: the message exceeds APPENDLIMIT */
	IMAP_CODE_MODIFIED,
} ImapCode;

typedef struct {
	ImapStatus status;
	ImapCode code; /* response code of the failing reply, if any */
	char *text;    /* the server's text, or a local description */
} ImapError;

/* Sets *err (if err is non-NULL and *err is NULL) and returns status, so
 * failures read `return imap_error_set(err, IMAP_EPROTO, 0, "...")`. */
ImapStatus imap_error_set(ImapError **err, ImapStatus status, ImapCode code,
                          const char *fmt, ...) G_GNUC_PRINTF(4, 5);
void imap_error_free(ImapError *err);
void imap_error_clear(ImapError **err);
/* Hands a locally collected error to the caller's err (taking ownership
 * of src): stored if err wants one and holds none, else freed. */
void imap_error_propagate(ImapError **err, ImapError *src);
/* Adds "context: " in front of the text of an existing error. */
void imap_error_prefix(ImapError **err, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);
const char *imap_status_name(ImapStatus status);
/* Maps an upper-case response-code atom ("OVERQUOTA") to its ImapCode. */
ImapCode imap_code_from_name(const char *name);
const char *imap_code_name(ImapCode code);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapError, imap_error_free)

#endif
