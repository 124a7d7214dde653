/* url.h - the account URL given on the command line:
 * imaps://USER@HOST[:PORT]/ or imap://USER@HOST[:PORT]/. */
#ifndef FS_URL_H
#define FS_URL_H

#include <glib.h>

#define FS_URL_ERROR (fs_url_error_quark())
GQuark fs_url_error_quark(void);

typedef enum {
	FS_URL_ERROR_INVALID,  /* not a URL of the accepted form */
	FS_URL_ERROR_PASSWORD, /* "USER:PASSWORD@": passwords never come
	                        * from the command line */
} FsUrlError;

typedef struct {
	gboolean tls; /* imaps:// (TLS from the start) rather than imap:// */
	char *user;   /* percent-decoded UTF-8; NULL when the URL has none */
	char *host;   /* name, IPv4 or IPv6 address (without the brackets) */
	guint16 port; /* as given, else 993 for imaps and 143 for imap */
} FsUrl;

/* Parses an account URL. The scheme is case-insensitive; after the
 * authority only an optional "/" may follow. USER may use %XX escapes (an
 * '@' in it must be written %40) and must not decode to control bytes or
 * invalid UTF-8. HOST is letters, digits, '-', '.', '_' or a bracketed IPv6
 * address. PORT is 1..65535. Control bytes anywhere are refused. A password
 * is refused with FS_URL_ERROR_PASSWORD, and the error text never repeats
 * the URL then. Returns NULL and sets error (messages read
 * "bad URL 'x': ...") on failure. */
FsUrl *fs_url_parse(const char *url, GError **error);
void fs_url_free(FsUrl *url);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(FsUrl, fs_url_free)

#endif
