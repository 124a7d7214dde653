/* retry.c - surviving network blips. Work runs on a pooled connection;
 * when the connection dies under it (EOF, reset, timeout, BYE), idempotent
 * work (LIST, SELECT, FETCH, STATUS, SEARCH) is simply run again on a new
 * connection, with backoff. Work that changes the account (APPEND, MOVE,
 * COPY, EXPUNGE, CREATE, RENAME, DELETE) is first checked on the new
 * connection - did it take effect before the connection died? - and run
 * again only if it did not, so nothing is lost or done twice. */
#include "store_internal.h"

/* Connects that fail walk up this table: a server that went away gets
 * about 13 s before the operation fails. */
static const gint64 backoff_ms[] = {100,  250,  500,  1000,
                                    2000, 3000, 3000, 3000};
/* After a failed connect, fail at once for this long instead of making
 * every file operation wait through the backoff again. */
#define UNREACHABLE_US (15 * G_USEC_PER_SEC)
#define ATTEMPTS       ((int)G_N_ELEMENTS(backoff_ms))
/* A connection that was up and then died says the server is there and
 * the link is flaky: such cuts are retried soon, many times, within a
 * time budget, so that even a link that drops every second or so gets
 * each command through in the end. */
#define CUT_RETRIES   40
#define CUT_BUDGET_US (60 * G_USEC_PER_SEC)
#define CUT_DELAY_MS  100

/* How a piece of work has fared so far. */
typedef struct {
	gint64 started;
	int connect_failures; /* no connection could be had */
	int cuts;             /* a connection died under the work */
	gboolean connected;   /* the last try reached the server */
} Tries;

static ImapStatus
offline_error(ImapError **err)
{
	return imap_error_set(err, IMAP_ECLOSED, 0,
	                      "offline: not connected to the server");
}

static void
note_unreachable(MailStore *s, gboolean unreachable)
{
	g_mutex_lock(&s->lock);
	s->unreachable_at = unreachable ? g_get_monotonic_time() : 0;
	if (!unreachable)
		s->down_since = s->retrying_at = 0;
	else if (s->down_since == 0)
		s->down_since = g_get_real_time();
	g_mutex_unlock(&s->lock);
}

static gboolean
recently_unreachable(MailStore *s)
{
	gboolean recent;

	g_mutex_lock(&s->lock);
	recent = s->unreachable_at != 0 &&
	         g_get_monotonic_time() - s->unreachable_at < UNREACHABLE_US;
	g_mutex_unlock(&s->lock);
	return recent;
}

static ImapConn *
acquire(MailStore *s, const char *mailbox, gboolean share, ImapError **err)
{
	ImapConn *c = share ? imap_pool_acquire_shared(s->pool, mailbox, err)
	                    : imap_pool_acquire(s->pool, mailbox, err);

	/* Only a failure to connect at all says the server is down; a cut
	 * during TLS or login is a blip like any other. */
	if (c == NULL && err != NULL && *err != NULL &&
	    (*err)->status == IMAP_ECONNECT)
		note_unreachable(s, TRUE);
	else if (c != NULL)
		note_unreachable(s, FALSE);
	return c;
}

/* Whether a try reached the server: a connection was had, or one was
 * made and then lost during TLS or login (a cut, not a server away). */
static gboolean
reached_server(const ImapConn *c, const ImapError *err)
{
	return c != NULL || err == NULL || err->status != IMAP_ECONNECT;
}

/* Runs fn once on a pooled connection. */
static ImapStatus
run_once(MailStore *s, const char *mailbox, gboolean share, ConnFn fn,
         void *data, Tries *tries, ImapError **err)
{
	ImapConn *c = acquire(s, mailbox, share, err);
	ImapStatus st;

	tries->connected = reached_server(c, err != NULL ? *err : NULL);
	if (c == NULL)
		return err != NULL && *err != NULL ? (*err)->status : IMAP_ENET;
	st = fn(c, data, err);
	imap_pool_release(s->pool, c);
	return st;
}

/* The wait before the next try, or -1 to give up. */
static gint64
retry_delay_ms(ImapStatus st, Tries *tries)
{
	/* A server that stalls: one more try, not a timeout per attempt. */
	if (st == IMAP_ETIMEOUT)
		return tries->connect_failures + tries->cuts++ == 0
		           ? CUT_DELAY_MS
		           : -1;
	if (tries->connected) {
		if (++tries->cuts > CUT_RETRIES ||
		    g_get_monotonic_time() - tries->started > CUT_BUDGET_US)
			return -1;
		return CUT_DELAY_MS * MIN(tries->cuts, 5);
	}
	if (tries->connect_failures >= ATTEMPTS)
		return -1;
	return backoff_ms[tries->connect_failures++];
}

/* was_down: the server was already unreachable when the work began;
 * then it fails at once rather than waiting through the backoff. */
static gboolean
may_retry(MailStore *s, ImapStatus st, Tries *tries, ImapError *why,
          gboolean was_down)
{
	gint64 delay;

	if (!connection_lost(st) || !s->reconnect || was_down ||
	    g_atomic_int_get(&s->stopping))
		return FALSE;
	delay = retry_delay_ms(st, tries);
	if (delay < 0) {
		g_message("giving up after %d lost connections and %d failed "
		          "connects",
		          tries->cuts, tries->connect_failures);
		return FALSE;
	}
	g_mutex_lock(&s->lock);
	s->retrying_at = g_get_monotonic_time();
	g_mutex_unlock(&s->lock);
	g_message("connection lost (%s); retrying in %" G_GINT64_FORMAT " ms",
	          why != NULL ? why->text : imap_status_name(st), delay);
	g_usleep((gulong)(delay * 1000));
	return TRUE;
}

static ImapStatus
run_retrying(MailStore *s, const char *mailbox, gboolean idempotent,
             gboolean share, ConnFn fn, void *data, ImapError **err)
{
	ImapError *local = NULL;
	ImapStatus st;
	Tries tries = {.started = g_get_monotonic_time()};
	gboolean was_down;

	if (s->pool == NULL)
		return offline_error(err);
	was_down = recently_unreachable(s);
	for (;;) {
		st = run_once(s, mailbox, share, fn, data, &tries, &local);
		if (st == IMAP_OK || !idempotent ||
		    !may_retry(s, st, &tries, local, was_down))
			break;
		imap_error_clear(&local);
	}
	imap_error_propagate(err, local);
	return st;
}

ImapStatus
with_conn(MailStore *s, const char *mailbox, gboolean idempotent, ConnFn fn,
          void *data, ImapError **err)
{
	return run_retrying(s, mailbox, idempotent, FALSE, fn, data, err);
}

ImapStatus
with_reader_conn(MailStore *s, const char *mailbox, ConnFn fn, void *data,
                 ImapError **err)
{
	return run_retrying(s, mailbox, TRUE, TRUE, fn, data, err);
}

ImapStatus
with_conn_checked(MailStore *s, const char *mailbox, ConnFn fn, VerifyFn verify,
                  void *data, ImapError **err)
{
	ImapError *local = NULL;
	ImapStatus st;
	gboolean done, was_down;
	Tries tries = {.started = g_get_monotonic_time()};
	ImapConn *c;

	if (s->pool == NULL)
		return offline_error(err);
	was_down = recently_unreachable(s);
	st = run_once(s, mailbox, FALSE, fn, data, &tries, &local);
	while (st != IMAP_OK && may_retry(s, st, &tries, local, was_down)) {
		imap_error_clear(&local);
		c = acquire(s, mailbox, FALSE, &local);
		tries.connected = reached_server(c, local);
		if (c == NULL) {
			st = local != NULL ? local->status : IMAP_ENET;
			continue;
		}
		done = FALSE;
		st = verify(c, data, &done, &local);
		if (st == IMAP_OK && !done)
			st = fn(c, data, &local);
		imap_pool_release(s->pool, c);
		if (st == IMAP_OK && done)
			g_message("the change had been made before the "
			          "connection was lost; not repeating it");
	}
	imap_error_propagate(err, local);
	return st;
}
