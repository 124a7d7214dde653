/* url.c - parses the account URL imaps://USER@HOST[:PORT]/. Strict, since
 * the result names the server we hand a password to, and a password found in
 * the URL is refused because argv is visible to every local user. */
#include "fs/url.h"

#include <arpa/inet.h>
#include <string.h>

#define URL_FORM "imaps://USER@HOST[:PORT]/"

G_DEFINE_QUARK(fs - url - error - quark, fs_url_error)

static gboolean
has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return TRUE;
	return FALSE;
}

static gpointer
url_fail(GError **error, const char *url, const char *reason)
{
	if (reason == NULL)
		g_set_error(error, FS_URL_ERROR, FS_URL_ERROR_INVALID,
		            "bad URL '%s': expected " URL_FORM, url);
	else
		g_set_error(error, FS_URL_ERROR, FS_URL_ERROR_INVALID,
		            "bad URL '%s': %s; expected " URL_FORM, url,
		            reason);
	return NULL;
}

/* The only thing between "://" and the last '@' that contains ':' is a
 * password. Checked over the whole rest of the URL, before anything echoes
 * it, so that a password holding '/' or '@' is caught too. */
static gboolean
has_password(const char *rest)
{
	const char *at = strrchr(rest, '@');

	return at != NULL && memchr(rest, ':', (gsize)(at - rest)) != NULL;
}

static gboolean
is_user_char(char c)
{
	/* RFC 3986 unreserved and sub-delims; ';' would start ";AUTH=". */
	return g_ascii_isalnum(c) || strchr("-._~!$&'()*+,=", c) != NULL ||
	       (unsigned char)c >= 0x80;
}

static char *
decode_user(const char *s, gsize len, const char **reason)
{
	GString *out = g_string_sized_new(len);

	*reason = NULL;
	for (gsize i = 0; i < len && *reason == NULL; i++) {
		if (s[i] == '%') {
			if (i + 2 >= len || !g_ascii_isxdigit(s[i + 1]) ||
			    !g_ascii_isxdigit(s[i + 2])) {
				*reason = "bad %-escape in the user name";
				break;
			}
			g_string_append_c(
			    out, (char)(g_ascii_xdigit_value(s[i + 1]) << 4 |
			                g_ascii_xdigit_value(s[i + 2])));
			i += 2;
		} else if (is_user_char(s[i])) {
			g_string_append_c(out, s[i]);
		} else {
			*reason = "character not allowed in the user name "
			          "(write '@' as %40, others as %XX)";
		}
	}
	if (*reason == NULL && out->len == 0)
		*reason = "empty user name";
	if (*reason == NULL &&
	    (memchr(out->str, '\0', out->len) != NULL || has_control(out->str)))
		*reason = "the user name decodes to control characters";
	if (*reason == NULL && !g_utf8_validate_len(out->str, out->len, NULL))
		*reason = "the user name is not valid UTF-8";
	if (*reason != NULL) {
		g_string_free(out, TRUE);
		return NULL;
	}
	return g_string_free(out, FALSE);
}

static gboolean
parse_port(const char *s, gsize len, guint16 *port)
{
	guint value = 0;

	if (len == 0 || len > 5)
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		if (!g_ascii_isdigit(s[i]))
			return FALSE;
		value = value * 10 + (guint)(s[i] - '0');
	}
	if (value < 1 || value > 65535)
		return FALSE;
	*port = (guint16)value;
	return TRUE;
}

static gboolean
is_host_name(const char *s, gsize len)
{
	if (len == 0)
		return FALSE;
	for (gsize i = 0; i < len; i++)
		if (!g_ascii_isalnum(s[i]) && s[i] != '-' && s[i] != '.' &&
		    s[i] != '_')
			return FALSE;
	return TRUE;
}

/* Splits HOST[:PORT] or [IPv6][:PORT]; the port stays as found. */
static const char *
parse_host(const char *s, gsize len, FsUrl *out, const char **port,
           gsize *port_len)
{
	const char *colon;
	gsize host_len;

	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		unsigned char addr[sizeof(struct in6_addr)];

		if (close == NULL)
			return "missing ']' after the IPv6 address";
		out->host = g_strndup(s + 1, (gsize)(close - s - 1));
		if (inet_pton(AF_INET6, out->host, addr) != 1)
			return "invalid IPv6 address";
		colon = close + 1;
		if (colon < s + len && *colon != ':')
			return "unexpected text after the IPv6 address";
	} else {
		colon = memchr(s, ':', len);
		host_len = colon != NULL ? (gsize)(colon - s) : len;
		if (!is_host_name(s, host_len))
			return "invalid host name";
		out->host = g_strndup(s, host_len);
	}
	*port = NULL;
	*port_len = 0;
	if (colon != NULL && colon < s + len) {
		*port = colon + 1;
		*port_len = (gsize)(s + len - *port);
	}
	return NULL;
}

/* Fills out from the authority USER@HOST[:PORT]; returns why not, or NULL. */
static const char *
parse_authority(const char *s, gsize len, FsUrl *out)
{
	const char *at = g_strrstr_len(s, (gssize)len, "@");
	const char *host = s;
	const char *reason = NULL;
	const char *port;
	gsize port_len;

	if (at != NULL) {
		out->user = decode_user(s, (gsize)(at - s), &reason);
		if (out->user == NULL)
			return reason;
		host = at + 1;
	}
	reason =
	    parse_host(host, (gsize)(s + len - host), out, &port, &port_len);
	if (reason != NULL)
		return reason;
	if (port != NULL && !parse_port(port, port_len, &out->port))
		return "the port must be a number from 1 to 65535";
	return NULL;
}

static const char *
strip_scheme(const char *url, gboolean *tls)
{
	if (g_ascii_strncasecmp(url, "imaps://", 8) == 0) {
		*tls = TRUE;
		return url + 8;
	}
	if (g_ascii_strncasecmp(url, "imap://", 7) == 0) {
		*tls = FALSE;
		return url + 7;
	}
	return NULL;
}

FsUrl *
fs_url_parse(const char *url, GError **error)
{
	g_autoptr(FsUrl) out = g_new0(FsUrl, 1);
	const char *rest, *slash, *reason;

	if (has_control(url)) {
		g_set_error(error, FS_URL_ERROR, FS_URL_ERROR_INVALID,
		            "bad URL: it contains control characters; "
		            "expected " URL_FORM);
		return NULL;
	}
	rest = strip_scheme(url, &out->tls);
	if (rest == NULL)
		return url_fail(error, url, NULL);
	if (has_password(rest)) {
		g_set_error(error, FS_URL_ERROR, FS_URL_ERROR_PASSWORD,
		            "bad URL: a password in the URL is not accepted "
		            "(command lines are visible to other users); use "
		            "password_command, password_file, IMAPFS_PASSWORD "
		            "or the terminal prompt");
		return NULL;
	}
	slash = strchrnul(rest, '/');
	if (*slash == '/' && slash[1] != '\0')
		return url_fail(error, url, "nothing may follow the '/'");
	out->port = out->tls ? 993 : 143;
	reason = parse_authority(rest, (gsize)(slash - rest), out);
	if (reason != NULL)
		return url_fail(error, url, reason);
	return g_steal_pointer(&out);
}

void
fs_url_free(FsUrl *url)
{
	if (url == NULL)
		return;
	g_free(url->user);
	g_free(url->host);
	g_free(url);
}
