/* auth.c - logging in: LOGIN (RFC 3501), AUTHENTICATE PLAIN (RFC 4616) with
 * SASL-IR (RFC 4959), XOAUTH2 (Google/Microsoft) and OAUTHBEARER (RFC 7628).
 * Secrets are wiped from every buffer this file builds once sent. */
#include <string.h>

#include "conn_internal.h"
#include "imap/conn.h"

typedef struct {
	char *initial;      /* base64 response, sent at the first "+" */
	gboolean sent;      /* initial went out (inline or at "+") */
	gboolean cancelled; /* we answered an error challenge */
	gboolean oauth;     /* errors come as a "+" challenge (RFC 7628) */
	ImapAuthMech mech;
} SaslState;

static void
wipe_free(char *s)
{
	if (s == NULL)
		return;
	memset(s, 0, strlen(s));
	g_free(s);
}

/* Builds the base64 client response for the mechanism. */
static char *
sasl_response(ImapAuthMech mech, const ImapCredentials *cred, const char *host,
              const char *port)
{
	GString *raw = g_string_new(NULL);
	char *b64;

	switch (mech) {
	case IMAP_AUTH_PLAIN:
		g_string_append_c(raw, '\0');
		g_string_append(raw, cred->user);
		g_string_append_c(raw, '\0');
		g_string_append(raw, cred->secret);
		break;
	case IMAP_AUTH_XOAUTH2:
		g_string_append_printf(raw, "user=%s\001auth=Bearer %s\001\001",
		                       cred->user, cred->secret);
		break;
	case IMAP_AUTH_OAUTHBEARER:
		g_string_append_printf(raw,
		                       "n,a=%s,\001host=%s\001port=%s\001"
		                       "auth=Bearer %s\001\001",
		                       cred->user, host, port, cred->secret);
		break;
	default:
		break;
	}
	b64 = g_base64_encode((const guchar *)raw->str, raw->len);
	memset(raw->str, 0, raw->len);
	g_string_free(raw, TRUE);
	return b64;
}

/* At a "+": first the response (when not sent inline); any later "+" is
 * an error challenge, answered as each mechanism requires so the server
 * finishes with a tagged NO. */
static char *
sasl_continuation(void *user, const ImapResponse *r)
{
	SaslState *s = user;

	if (!s->sent) {
		s->sent = TRUE;
		return g_strdup(s->initial);
	}
	if (s->cancelled)
		return NULL;
	s->cancelled = TRUE;
	if (s->oauth) {
		g_autofree guchar *json = NULL;
		gsize len = 0;
		json = g_base64_decode(r->text, &len);
		g_message("OAuth2 error from server: %.*s", (int)len,
		          json != NULL ? (const char *)json : "");
		/* XOAUTH2 wants an empty line, OAUTHBEARER a ^A. */
		return g_strdup(s->mech == IMAP_AUTH_XOAUTH2 ? "" : "AQ==");
	}
	return g_strdup("*");
}

static const char *
mech_name(ImapAuthMech mech)
{
	switch (mech) {
	case IMAP_AUTH_PLAIN:
		return "PLAIN";
	case IMAP_AUTH_XOAUTH2:
		return "XOAUTH2";
	case IMAP_AUTH_OAUTHBEARER:
		return "OAUTHBEARER";
	case IMAP_AUTH_LOGIN:
		return "LOGIN";
	default:
		return "AUTO";
	}
}

static ImapStatus
choose_mech(ImapConn *c, ImapAuthMech want, ImapAuthMech *out, ImapError **err)
{
	g_autofree char *cap = NULL;

	if (want == IMAP_AUTH_AUTO) {
		if (imap_conn_has_cap(c, "AUTH=PLAIN"))
			want = IMAP_AUTH_PLAIN;
		else
			want = IMAP_AUTH_LOGIN;
	}
	if (want == IMAP_AUTH_LOGIN) {
		if (imap_conn_has_cap(c, "LOGINDISABLED"))
			return imap_error_set(err, IMAP_EAUTH, 0,
			                      "server disabled LOGIN and "
			                      "offers no usable mechanism");
		*out = want;
		return IMAP_OK;
	}
	cap = g_strconcat("AUTH=", mech_name(want), NULL);
	if (!imap_conn_has_cap(c, cap))
		return imap_error_set(err, IMAP_EAUTH, 0,
		                      "server does not offer %s", cap);
	*out = want;
	return IMAP_OK;
}

static ImapStatus
run_login(ImapConn *c, const ImapCredentials *cred, ImapResponse **tagged,
          ImapError **err)
{
	ImapCmd *cmd = imap_cmd_new("LOGIN");
	ImapCmdHooks hooks = {.exclusive = TRUE};

	imap_cmd_astring(cmd, cred->user, strlen(cred->user));
	imap_cmd_secret(cmd, TRUE);
	imap_cmd_astring(cmd, cred->secret, strlen(cred->secret));
	return imap_conn_run(c, cmd, &hooks, tagged, err);
}

static ImapStatus
run_authenticate(ImapConn *c, ImapAuthMech mech, const ImapCredentials *cred,
                 ImapResponse **tagged, ImapError **err)
{
	SaslState s = {0};
	ImapCmdHooks hooks = {
	    .continuation = sasl_continuation,
	    .user = &s,
	    .exclusive = TRUE,
	};
	ImapCmd *cmd = imap_cmd_new("AUTHENTICATE");
	ImapStatus st;

	s.initial = sasl_response(mech, cred, conn_host(c), conn_port(c));
	s.oauth = mech != IMAP_AUTH_PLAIN;
	s.mech = mech;
	imap_cmd_raw(cmd, mech_name(mech));
	if (imap_conn_has_cap(c, "SASL-IR")) {
		imap_cmd_secret(cmd, TRUE);
		imap_cmd_raw(cmd, s.initial[0] != '\0' ? s.initial : "=");
		s.sent = TRUE;
	}
	st = imap_conn_run(c, cmd, &hooks, tagged, err);
	wipe_free(s.initial);
	return st;
}

static gboolean
has_crlf_nul(const char *s)
{
	return s == NULL || strpbrk(s, "\r\n") != NULL;
}

ImapStatus
imap_conn_login(ImapConn *c, const ImapCredentials *cred, ImapError **err)
{
	ImapAuthMech mech = IMAP_AUTH_LOGIN;
	ImapResponse *tagged = NULL;
	ImapError *local = NULL;
	ImapStatus st;

	if (imap_conn_is_authenticated(c))
		return imap_conn_compress(c, conn_compress_mode(c), err);
	if (has_crlf_nul(cred->user) || has_crlf_nul(cred->secret))
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "user name or secret is missing or "
		                      "contains CR/LF");
	st = choose_mech(c, cred->mech, &mech, err);
	if (st != IMAP_OK)
		return st;
	if (mech == IMAP_AUTH_LOGIN)
		st = run_login(c, cred, &tagged, &local);
	else
		st = run_authenticate(c, mech, cred, &tagged, &local);
	if (st != IMAP_OK) {
		imap_response_free(tagged);
		tagged = NULL;
	}
	if (st == IMAP_ENO || st == IMAP_EBAD) {
		imap_error_set(err, IMAP_EAUTH, local->code,
		               "%s login as %s refused: %s", mech_name(mech),
		               cred->user, local->text);
		imap_error_free(local);
		return IMAP_EAUTH;
	}
	if (st != IMAP_OK) {
		imap_error_prefix(&local, "login");
		imap_error_propagate(err, local);
		return st;
	}
	conn_set_authenticated(c);
	/* Servers change their capabilities after login (RFC 3501 7.2.1);
	 * when the OK did not carry them, ask. */
	if (tagged->code == NULL || strcmp(tagged->code, "CAPABILITY") != 0) {
		ImapCmdHooks hooks = {0};
		st = imap_conn_run(c, imap_cmd_new("CAPABILITY"), &hooks, NULL,
		                   err);
	}
	imap_response_free(tagged);
	if (st == IMAP_OK)
		st = imap_conn_compress(c, conn_compress_mode(c), err);
	return st;
}
