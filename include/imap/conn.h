/* conn.h - one IMAP connection: greeting, STARTTLS, authentication, and a
 * pipelining engine that lets several threads have commands in flight at
 * once. A reader thread parses responses and hands each to the command that
 * owns it (by tag) or to the handlers that asked for untagged data. */
#ifndef IMAP_CONN_H
#define IMAP_CONN_H

#include <glib.h>
#include "imap/command.h"
#include "imap/compress.h"
#include "imap/error.h"
#include "imap/parser.h"
#include "imap/transport.h"

typedef enum {
	IMAP_TLS_IMPLICIT, /* imaps: TLS from the first byte */
	IMAP_TLS_STARTTLS, /* imap + STARTTLS, required */
	IMAP_TLS_NONE,     /* plain TCP: only when explicitly asked for */
} ImapTlsMode;

typedef enum {
	IMAP_AUTH_AUTO, /* best offered: PLAIN, then LOGIN */
	IMAP_AUTH_LOGIN,
	IMAP_AUTH_PLAIN,
	IMAP_AUTH_XOAUTH2,
	IMAP_AUTH_OAUTHBEARER,
} ImapAuthMech;

typedef struct {
	const char *host;
	const char *port; /* NULL: "993" for implicit TLS, else "143" */
	ImapTlsMode tls;
	ImapTlsOptions tls_opts;
	int timeout_ms; /* per read/write and per command; <= 0: 60 s */
	ImapParserLimits limits;
	gboolean debug; /* log the protocol with g_debug(), secrets redacted */
	/* COMPRESS=DEFLATE after login (imap_conn_compress()); default NO. */
	ImapCompressMode compress;
} ImapConnectOptions;

typedef struct {
	ImapAuthMech mech;
	const char *user;
	const char *secret; /* password, or OAuth2 access token */
} ImapCredentials;

typedef struct ImapConn ImapConn;

/* Handler for untagged responses. Runs on the reader thread: it must not
 * issue commands on the same connection, and must be quick. */
typedef void (*ImapUntaggedFn)(void *user, const ImapResponse *resp);

typedef struct {
	/* Untagged responses that arrive while the command is in flight. */
	ImapUntaggedFn untagged;
	/* Offered each literal in an untagged response while the command is in
	 * flight (of the commands already sent, the one sent first to accept
	 * wins); see ImapParserCallbacks. */
	gboolean (*literal_start)(void *user, const ImapLiteralInfo *info,
	                          ImapLiteralSink *sink);
	/* A "+" that arrives after every part was sent (AUTHENTICATE, IDLE).
	 * Returns the line to send (without CRLF; owned by the engine), or
	 * NULL to send nothing and keep waiting. */
	char *(*continuation)(void *user, const ImapResponse *resp);
	void *user;
	/* Nothing else may be in flight while this command is (SELECT,
	 * non-ESEARCH SEARCH, AUTHENTICATE, IDLE, LOGOUT). */
	gboolean exclusive;
	/* Called with the command's tag just before its first byte is sent
	 * (COMPRESS uses it to watch for its own reply). */
	void (*tagged_as)(void *user, const char *tag);
} ImapCmdHooks;

/* Connects, reads the greeting, upgrades with STARTTLS if asked (refusing a
 * PREAUTH greeting, a server without STARTTLS, and any bytes injected after
 * "OK Begin TLS"), and learns the capabilities. */
ImapConn *imap_conn_connect(const ImapConnectOptions *opts, ImapError **err);
/* Authenticates (SASL-IR used when offered) and re-reads capabilities.
 * A refused login is IMAP_EAUTH with the server's text. */
ImapStatus imap_conn_login(ImapConn *c, const ImapCredentials *cred,
                           ImapError **err);
/* Sends LOGOUT (best effort), stops the reader thread and frees c. */
void imap_conn_close(ImapConn *c);

/* Runs one command: sends it (waiting for "+" before synchronizing
 * literals), then blocks until its tagged response. OK -> IMAP_OK;
 * NO -> IMAP_ENO, BAD -> IMAP_EBAD, each with the server's text and
 * response code. Whenever the server answered (OK, NO or BAD), *tagged
 * (if non-NULL) receives the tagged response; the caller frees it. The
 * command is consumed. Safe to call from several threads at once. */
ImapStatus imap_conn_run(ImapConn *c, ImapCmd *cmd, const ImapCmdHooks *hooks,
                         ImapResponse **tagged, ImapError **err);

/* imap_conn_run in two halves, to pipeline commands from one thread:
 * imap_conn_send sends cmd and returns (NULL with *err set if it could
 * not); every handle it returns must be given to imap_conn_await once,
 * which waits and answers like imap_conn_run. hooks must live until
 * then. */
typedef struct ImapPending ImapPending;
ImapPending *imap_conn_send(ImapConn *c, ImapCmd *cmd,
                            const ImapCmdHooks *hooks, ImapError **err);
ImapStatus imap_conn_await(ImapConn *c, ImapPending *p, ImapResponse **tagged,
                           ImapError **err);

/* Capabilities (upper-cased) as last advertised. */
gboolean imap_conn_has_cap(ImapConn *c, const char *cap);
/* Copies the capability list, a NULL-terminated array; free with
 * g_strfreev(). */
char **imap_conn_caps(ImapConn *c);
gboolean imap_conn_is_authenticated(ImapConn *c);
/* Extensions turned on by ENABLE (upper-cased), e.g. "QRESYNC". */
gboolean imap_conn_is_enabled(ImapConn *c, const char *ext);
/* FALSE once the connection failed (EOF, BYE, timeout, protocol error). */
gboolean imap_conn_is_alive(ImapConn *c);
/* The error that killed the connection, if any (a copy). */
ImapError *imap_conn_failure(ImapConn *c);
/* Unsolicited untagged responses (EXISTS, EXPUNGE, VANISHED, FETCH, BYE,
 * alerts ...), all of them, whether or not a command also saw them. */
void imap_conn_set_unsolicited(ImapConn *c, ImapUntaggedFn fn, void *user);
/* Literal mode the server allows (LITERAL+, LITERAL-, or none). */
ImapLiteralMode imap_conn_literal_mode(ImapConn *c);
/* Mailbox names may travel as UTF-8 (UTF8=ACCEPT was enabled). */
gboolean imap_conn_utf8(ImapConn *c);
/* The server's hierarchy delimiter for the personal namespace, learned by
 * imap_list(); 0 when unknown or NIL. */
char imap_conn_delimiter(ImapConn *c);

/* Internal hooks used by ops.c to keep connection state in one place. */
void imap_conn_set_caps_from(ImapConn *c, const ImapResponse *resp);
void imap_conn_mark_enabled(ImapConn *c, const char *ext);
void imap_conn_set_delimiter(ImapConn *c, char delim);

/* ---- The selected mailbox ----
 * Commands that act on a selected mailbox run inside a lease: while any
 * thread holds a lease on mailbox M, the connection stays on M; a thread
 * wanting another mailbox waits until the leases are returned, then the
 * engine SELECTs (or EXAMINEs) it. This is the only place SELECT happens. */
typedef struct {
	guint32 uidvalidity;
	guint32 uidnext;
	guint32 exists;
	guint64 highestmodseq; /* 0 with NOMODSEQ or without CONDSTORE */
	gboolean nomodseq;
	gboolean readonly;
	char *flags;          /* FLAGS list as text, e.g. "\\Seen \\Deleted" */
	char *permanentflags; /* PERMANENTFLAGS as text, or NULL */
} ImapSelectInfo;

typedef struct {
	gboolean readonly;  /* EXAMINE instead of SELECT */
	gboolean condstore; /* add (CONDSTORE) */
	/* QRESYNC (RFC 7162): set uidvalidity and modseq from the cache;
	 * known_uids optional ("1:500"). The server replies VANISHED
	 * (EARLIER) and FETCH responses: they go to untagged below. */
	guint32 qresync_uidvalidity;
	guint64 qresync_modseq;
	const char *qresync_known_uids;
	ImapUntaggedFn untagged;
	void *user;
	/* Re-select even if this mailbox is already selected (resync). */
	gboolean force;
} ImapSelectParams;

/* Leases mailbox utf8_name (selecting it if needed). info, if non-NULL,
 * receives the state from the last SELECT (free with
 * imap_select_info_clear()). Every successful call needs a matching
 * imap_conn_release_mailbox(). */
ImapStatus imap_conn_use_mailbox(ImapConn *c, const char *utf8_name,
                                 const ImapSelectParams *params,
                                 ImapSelectInfo *info, ImapError **err);
void imap_conn_release_mailbox(ImapConn *c);
/* TRUE if utf8_name is the selected mailbox now (takes no lease). */
gboolean imap_conn_has_selected(ImapConn *c, const char *utf8_name);
/* How many threads hold c at once (the pool sets it when it lets readers
 * share a connection; 0 or 1: one). While more than one does, a body
 * literal whose UID has not been seen yet cannot be told apart from
 * another holder's: such literals then arrive whole, routed by UID. */
void imap_conn_set_holders(ImapConn *c, guint n);
guint imap_conn_holders(ImapConn *c);
/* TRUE if the selected mailbox was SELECTed at most max_age_us ago and
 * no command was sent since: the view is then already up to date. */
gboolean imap_conn_view_fresh(ImapConn *c, gint64 max_age_us);
/* Makes the view not fresh: the next command that wants it up to date
 * sends a NOOP first, however recent the SELECT. */
void imap_conn_view_outdated(ImapConn *c);
/* TRUE if this session has selected utf8_name at some time, now or
 * before. Dovecot refuses a mailbox that someone else deleted (and maybe
 * recreated) since, to every session that ever had it selected, for the
 * rest of that session ("NO Mailbox was deleted under us", also to
 * STATUS and after UNSELECT); a new session sees it as it is now. */
gboolean imap_conn_had_selected(ImapConn *c, const char *utf8_name);
/* For a NO of that kind (*err): marks c dead, so that the pool replaces
 * it, and turns *err into IMAP_ECLOSED, which callers retry on another
 * connection like any lost one. Returns IMAP_ECLOSED. conn_select does
 * this itself for a refused SELECT. */
ImapStatus imap_conn_abandon_stale(ImapConn *c, ImapError **err);
/* Forgets the selection if it is mailbox utf8_name (after DELETE/RENAME). */
void imap_conn_forget_mailbox(ImapConn *c, const char *utf8_name);
void imap_select_info_clear(ImapSelectInfo *info);

/* ---- IDLE (RFC 2177) ----
 * Starts IDLE in the leased mailbox; fn receives every untagged response
 * until imap_idle_stop() sends DONE and waits for the tagged reply. The
 * caller must hold a mailbox lease for the whole time. */
typedef struct ImapIdle ImapIdle;
ImapIdle *imap_idle_start(ImapConn *c, ImapUntaggedFn fn, void *user,
                          ImapError **err);
ImapStatus imap_idle_stop(ImapIdle *idle, ImapError **err);

/* ---- COMPRESS=DEFLATE (RFC 4978) ----
 * Sends COMPRESS DEFLATE once, on an authenticated connection whose server
 * offers it, if mode says so (see ImapCompressMode); imap_conn_login()
 * calls it with the connect options' mode. A refusal (NO/BAD) leaves the
 * connection uncompressed and is not an error; calling it again once
 * compression is on does nothing. */
ImapStatus imap_conn_compress(ImapConn *c, ImapCompressMode mode,
                              ImapError **err);
gboolean imap_conn_is_compressed(ImapConn *c);
/* Bytes through the wire and to/from the caller so far (they differ once
 * compression is on). */
void imap_conn_transport_counts(ImapConn *c, ImapTransportCounts *out);

#endif
