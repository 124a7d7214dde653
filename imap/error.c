/* error.c - ImapError: the single failure type of the IMAP client. */
#include "imap/error.h"

#include <string.h>

static const struct {
	ImapCode code;
	const char *name;
} code_names[] = {
    {IMAP_CODE_ALERT, "ALERT"},
    {IMAP_CODE_ALREADYEXISTS, "ALREADYEXISTS"},
    {IMAP_CODE_NONEXISTENT, "NONEXISTENT"},
    {IMAP_CODE_OVERQUOTA, "OVERQUOTA"},
    {IMAP_CODE_NOPERM, "NOPERM"},
    {IMAP_CODE_TRYCREATE, "TRYCREATE"},
    {IMAP_CODE_AUTHENTICATIONFAILED, "AUTHENTICATIONFAILED"},
    {IMAP_CODE_AUTHORIZATIONFAILED, "AUTHORIZATIONFAILED"},
    {IMAP_CODE_UNAVAILABLE, "UNAVAILABLE"},
    {IMAP_CODE_INUSE, "INUSE"},
    {IMAP_CODE_LIMIT, "LIMIT"},
    {IMAP_CODE_CANNOT, "CANNOT"},
    {IMAP_CODE_SERVERBUG, "SERVERBUG"},
    {IMAP_CODE_EXPUNGEISSUED, "EXPUNGEISSUED"},
    {IMAP_CODE_READONLY, "READ-ONLY"},
    {IMAP_CODE_PRIVACYREQUIRED, "PRIVACYREQUIRED"},
    {IMAP_CODE_CONTACTADMIN, "CONTACTADMIN"},
    {IMAP_CODE_EXPIRED, "EXPIRED"},
    {IMAP_CODE_CLIENTBUG, "CLIENTBUG"},
    {IMAP_CODE_UIDNOTSTICKY, "UIDNOTSTICKY"},
    {IMAP_CODE_TOOBIG, "TOOBIG"},
    {IMAP_CODE_MODIFIED, "MODIFIED"},
};

ImapCode
imap_code_from_name(const char *name)
{
	if (name == NULL || *name == '\0')
		return IMAP_CODE_NONE;
	for (gsize i = 0; i < G_N_ELEMENTS(code_names); i++)
		if (g_ascii_strcasecmp(code_names[i].name, name) == 0)
			return code_names[i].code;
	return IMAP_CODE_OTHER;
}

const char *
imap_code_name(ImapCode code)
{
	if (code == IMAP_CODE_NONE)
		return "";
	for (gsize i = 0; i < G_N_ELEMENTS(code_names); i++)
		if (code_names[i].code == code)
			return code_names[i].name;
	return "OTHER";
}

const char *
imap_status_name(ImapStatus status)
{
	switch (status) {
	case IMAP_OK:
		return "ok";
	case IMAP_ENO:
		return "server said NO";
	case IMAP_EBAD:
		return "server said BAD";
	case IMAP_EBYE:
		return "server said BYE";
	case IMAP_EEOF:
		return "connection closed by server";
	case IMAP_ETIMEOUT:
		return "timed out";
	case IMAP_ETLS:
		return "TLS failure";
	case IMAP_ENET:
		return "network error";
	case IMAP_EPROTO:
		return "protocol error";
	case IMAP_EINVAL:
		return "invalid argument";
	case IMAP_EUNSUPPORTED:
		return "not supported by server";
	case IMAP_EAUTH:
		return "authentication failed";
	case IMAP_ECLOSED:
		return "connection closed";
	case IMAP_ECONNECT:
		return "cannot connect";
	}
	return "unknown error";
}

ImapStatus
imap_error_set(ImapError **err, ImapStatus status, ImapCode code,
               const char *fmt, ...)
{
	va_list ap;
	ImapError *e;

	if (err == NULL || *err != NULL)
		return status;
	e = g_new0(ImapError, 1);
	e->status = status;
	e->code = code;
	va_start(ap, fmt);
	e->text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	*err = e;
	return status;
}

void
imap_error_prefix(ImapError **err, const char *fmt, ...)
{
	va_list ap;
	char *prefix, *text;

	if (err == NULL || *err == NULL)
		return;
	va_start(ap, fmt);
	prefix = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	text = g_strdup_printf("%s: %s", prefix, (*err)->text);
	g_free(prefix);
	g_free((*err)->text);
	(*err)->text = text;
}

void
imap_error_free(ImapError *err)
{
	if (err == NULL)
		return;
	g_free(err->text);
	g_free(err);
}

void
imap_error_propagate(ImapError **err, ImapError *src)
{
	if (src == NULL)
		return;
	if (err != NULL && *err == NULL)
		*err = src;
	else
		imap_error_free(src);
}

void
imap_error_clear(ImapError **err)
{
	if (err == NULL)
		return;
	imap_error_free(*err);
	*err = NULL;
}
