/* conn.c - one IMAP connection (RFC 3501 / RFC 9051): greeting, STARTTLS,
 * capabilities, and the engine that runs commands.
 *
 * The engine keeps a list of commands in flight. Any thread may submit a
 * command (sends are serialized by send_lock) and then sleeps until its
 * tagged reply. A reader thread owns the socket's read side: it feeds the
 * parser and hands each response to the command with that tag, untagged
 * data to every sent command's hook (literals to the earliest sent that
 * takes them) and to the unsolicited handler, and "+" to whichever
 * command is waiting for one. If the connection dies,
 * every waiting command wakes with the same error.
 *
 * The selected mailbox is protocol state too; conn_select() is the only
 * place that changes it, under the lease rules in conn.h. */
#include "imap/conn.h"

#include <string.h>

#include "conn_internal.h"
#include "imap/parser.h"

#define LOGOUT_WAIT_US (2 * G_USEC_PER_SEC)

struct PendingCmd {
	char tag[16];
	char *verb;
	ImapCmdHooks hooks;
	gboolean has_hooks;
	gboolean got_continuation;
	gboolean on_wire; /* being or already sent */
	gboolean done;
	ImapResponse *tagged;
	ImapError *error; /* set when the connection died under it */
};

struct ImapConn {
	ImapTransport *t;
	char *host, *port;
	ImapTlsMode tls;
	int timeout_ms;
	gboolean debug;
	ImapParserLimits limits;
	ImapParser *parser;
	ImapCompressMode compress;

	GMutex lock; /* everything below */
	GCond cond;
	char **caps;
	GHashTable *enabled;
	gboolean authenticated;
	char delimiter;
	gboolean alive;
	gboolean closing; /* imap_conn_close() runs: losing it is expected */
	ImapError *failure;
	char *bye_text;
	guint next_tag;
	GPtrArray *inflight;     /* PendingCmd * */
	PendingCmd *cont_waiter; /* waiting for "+" before a literal */
	gboolean exclusive_active;
	gboolean
	    idling; /* the server may stay silent for as long as it likes */
	gint64 last_activity; /* monotonic us: last byte sent or received */
	ImapUntaggedFn unsolicited;
	void *unsolicited_user;

	/* Selected mailbox and its leases. */
	char *selected;
	/* Every mailbox this session has selected ("INBOX" upper-case): see
	 * imap_conn_had_selected(). */
	GHashTable *ever_selected;
	gboolean selected_readonly;
	/* When the last SELECT ended, if no command was sent since: until
	 * then the session's view of the mailbox is as fresh as a NOOP would
	 * make it. 0 otherwise. */
	gint64 view_synced_at;
	gboolean selecting;
	guint leases;
	ImapSelectInfo sel;

	GMutex send_lock; /* one command's parts go out together */
	gint holders;     /* atomic; see imap_conn_set_holders() */

	/* Before the reader thread starts, responses queue here. */
	gboolean threaded;
	gboolean reader_done; /* the reader thread let go of every sink */
	GQueue sync_queue;
	GThread *reader;
};

static void dispatch(void *user, ImapResponse *r);
static gboolean offer_literal(void *user, const ImapLiteralInfo *info,
                              ImapLiteralSink *sink);

/* ---------------------------------------------------------------- state */

static void
set_caps_from_values(ImapConn *c, GPtrArray *values, guint from)
{
	GPtrArray *caps = g_ptr_array_new();

	for (guint i = from; i < values->len; i++) {
		const ImapValue *v = values->pdata[i];
		if (v->type == IMAP_VALUE_ATOM)
			g_ptr_array_add(caps, g_ascii_strup(v->str, -1));
	}
	g_ptr_array_add(caps, NULL);
	g_mutex_lock(&c->lock);
	g_strfreev(c->caps);
	c->caps = (char **)g_ptr_array_free(caps, FALSE);
	g_mutex_unlock(&c->lock);
}

void
imap_conn_set_caps_from(ImapConn *c, const ImapResponse *r)
{
	if (r->code != NULL && strcmp(r->code, "CAPABILITY") == 0)
		set_caps_from_values(c, r->code_args, 0);
	else if (r->name != NULL && strcmp(r->name, "CAPABILITY") == 0)
		set_caps_from_values(c, r->args, 0);
}

gboolean
imap_conn_has_cap(ImapConn *c, const char *cap)
{
	gboolean found = FALSE;

	g_mutex_lock(&c->lock);
	for (char **p = c->caps; p != NULL && *p != NULL && !found; p++)
		found = g_ascii_strcasecmp(*p, cap) == 0;
	g_mutex_unlock(&c->lock);
	return found;
}

char **
imap_conn_caps(ImapConn *c)
{
	char **copy;

	g_mutex_lock(&c->lock);
	copy = g_strdupv(c->caps);
	g_mutex_unlock(&c->lock);
	return copy != NULL ? copy : g_new0(char *, 1);
}

gboolean
imap_conn_is_authenticated(ImapConn *c)
{
	gboolean a;

	g_mutex_lock(&c->lock);
	a = c->authenticated;
	g_mutex_unlock(&c->lock);
	return a;
}

void
conn_set_authenticated(ImapConn *c)
{
	g_mutex_lock(&c->lock);
	c->authenticated = TRUE;
	g_mutex_unlock(&c->lock);
}

void
imap_conn_mark_enabled(ImapConn *c, const char *ext)
{
	g_mutex_lock(&c->lock);
	g_hash_table_add(c->enabled, g_ascii_strup(ext, -1));
	g_mutex_unlock(&c->lock);
}

gboolean
imap_conn_is_enabled(ImapConn *c, const char *ext)
{
	g_autofree char *up = g_ascii_strup(ext, -1);
	gboolean on;

	g_mutex_lock(&c->lock);
	on = g_hash_table_contains(c->enabled, up);
	g_mutex_unlock(&c->lock);
	return on;
}

gboolean
imap_conn_is_alive(ImapConn *c)
{
	gboolean alive;

	g_mutex_lock(&c->lock);
	alive = c->alive;
	g_mutex_unlock(&c->lock);
	return alive;
}

static ImapError *
error_copy(const ImapError *e)
{
	ImapError *copy;

	if (e == NULL)
		return NULL;
	copy = g_new0(ImapError, 1);
	copy->status = e->status;
	copy->code = e->code;
	copy->text = g_strdup(e->text);
	return copy;
}

ImapError *
imap_conn_failure(ImapConn *c)
{
	ImapError *e;

	g_mutex_lock(&c->lock);
	e = error_copy(c->failure);
	g_mutex_unlock(&c->lock);
	return e;
}

void
imap_conn_set_unsolicited(ImapConn *c, ImapUntaggedFn fn, void *user)
{
	g_mutex_lock(&c->lock);
	c->unsolicited = fn;
	c->unsolicited_user = user;
	g_mutex_unlock(&c->lock);
}

ImapLiteralMode
imap_conn_literal_mode(ImapConn *c)
{
	if (imap_conn_has_cap(c, "LITERAL+"))
		return IMAP_LITERAL_PLUS;
	if (imap_conn_has_cap(c, "LITERAL-"))
		return IMAP_LITERAL_MINUS;
	return IMAP_LITERAL_SYNC;
}

gboolean
imap_conn_utf8(ImapConn *c)
{
	return imap_conn_is_enabled(c, "UTF8=ACCEPT");
}

char
imap_conn_delimiter(ImapConn *c)
{
	char d;

	g_mutex_lock(&c->lock);
	d = c->delimiter;
	g_mutex_unlock(&c->lock);
	return d;
}

void
imap_conn_set_delimiter(ImapConn *c, char delim)
{
	g_mutex_lock(&c->lock);
	c->delimiter = delim;
	g_mutex_unlock(&c->lock);
}

const char *
conn_host(ImapConn *c)
{
	return c->host;
}

const char *
conn_port(ImapConn *c)
{
	return c->port;
}

ImapTransport *
conn_transport(ImapConn *c)
{
	return c->t;
}

ImapCompressMode
conn_compress_mode(ImapConn *c)
{
	return c->compress;
}

/* Marks the connection dead and wakes everybody. Takes ownership of err. */
static void
fail_connection(ImapConn *c, ImapError *err)
{
	g_mutex_lock(&c->lock);
	if (!c->alive) {
		g_mutex_unlock(&c->lock);
		imap_error_free(err);
		return;
	}
	c->alive = FALSE;
	if (c->bye_text != NULL && err->status != IMAP_EBYE &&
	    err->status != IMAP_EPROTO) {
		err->status = IMAP_EBYE;
		g_free(err->text);
		err->text = g_strdup_printf("server closed the connection: %s",
		                            c->bye_text);
	}
	c->failure = err;
	for (guint i = 0; i < c->inflight->len; i++) {
		PendingCmd *pc = c->inflight->pdata[i];
		if (!pc->done) {
			pc->done = TRUE;
			pc->error = error_copy(err);
		}
	}
	g_cond_broadcast(&c->cond);
	g_mutex_unlock(&c->lock);
	if (c->closing)
		g_debug("connection to %s closed: %s", c->host, err->text);
	else
		g_message("connection to %s lost: %s", c->host, err->text);
	imap_transport_shutdown(c->t);
}

/* ------------------------------------------------------------ reading */

static void
log_response(ImapConn *c, const ImapResponse *r)
{
	g_autofree char *line = NULL;

	if (!c->debug)
		return;
	line = imap_response_to_string(r);
	g_debug("S: %s", line);
}

/* Untagged data carries no tag: a server answers commands in the order they
 * reached it, so the data belongs to the earliest sent command still
 * waiting that wants it. The in-flight list is kept in wire order for this
 * (see put_on_wire()); commands not yet sent cannot own any reply. */
static gboolean
awaits_reply(const PendingCmd *pc)
{
	return pc->on_wire && !pc->done;
}

static PendingCmd *
find_by_tag(ImapConn *c, const char *tag)
{
	for (guint i = 0; i < c->inflight->len; i++) {
		PendingCmd *pc = c->inflight->pdata[i];
		if (strcmp(pc->tag, tag) == 0)
			return pc;
	}
	return NULL;
}

static void
complete_tagged(ImapConn *c, ImapResponse *r)
{
	PendingCmd *pc;

	g_mutex_lock(&c->lock);
	pc = find_by_tag(c, r->tag);
	if (pc == NULL || pc->done) {
		g_mutex_unlock(&c->lock);
		g_warning("%s: reply for unknown tag %s ignored", c->host,
		          r->tag);
		imap_response_free(r);
		return;
	}
	if (r->code != NULL && strcmp(r->code, "CAPABILITY") == 0) {
		g_mutex_unlock(&c->lock);
		imap_conn_set_caps_from(c, r);
		g_mutex_lock(&c->lock);
	}
	pc->tagged = r;
	pc->done = TRUE;
	if (c->cont_waiter == pc)
		c->cont_waiter = NULL;
	g_cond_broadcast(&c->cond);
	g_mutex_unlock(&c->lock);
}

static void
handle_continuation(ImapConn *c, ImapResponse *r)
{
	PendingCmd *target = NULL;
	char *line = NULL;
	ImapError *err = NULL;

	g_mutex_lock(&c->lock);
	if (c->cont_waiter != NULL) {
		c->cont_waiter->got_continuation = TRUE;
		g_cond_broadcast(&c->cond);
		g_mutex_unlock(&c->lock);
		imap_response_free(r);
		return;
	}
	for (guint i = 0; i < c->inflight->len && target == NULL; i++) {
		PendingCmd *pc = c->inflight->pdata[i];
		if (pc->hooks.continuation != NULL && awaits_reply(pc))
			target = pc;
	}
	g_mutex_unlock(&c->lock);
	if (target == NULL) {
		g_warning("%s: unexpected continuation request ignored",
		          c->host);
		imap_response_free(r);
		return;
	}
	/* target cannot finish before this thread dispatches its tagged
	 * reply, so using it unlocked here is safe. */
	line = target->hooks.continuation(target->hooks.user, r);
	imap_response_free(r);
	if (line == NULL)
		return;
	if (conn_send_line(c, line, TRUE, &err) != IMAP_OK)
		fail_connection(c, err);
	memset(line, 0, strlen(line));
	g_free(line);
}

/* Keeps the selected mailbox's counters current. */
static void
track_selected(ImapConn *c, const ImapResponse *r)
{
	if (r->name == NULL || !r->has_number)
		return;
	g_mutex_lock(&c->lock);
	if (strcmp(r->name, "EXISTS") == 0)
		c->sel.exists = r->number;
	else if (strcmp(r->name, "EXPUNGE") == 0 && c->sel.exists > 0)
		c->sel.exists--;
	g_mutex_unlock(&c->lock);
}

static void
handle_untagged(ImapConn *c, ImapResponse *r)
{
	GPtrArray *hooks = g_ptr_array_new();
	ImapUntaggedFn unsolicited;
	void *unsolicited_user;

	if (r->cond == IMAP_COND_BYE) {
		g_mutex_lock(&c->lock);
		g_free(c->bye_text);
		c->bye_text = g_strdup(r->text);
		g_mutex_unlock(&c->lock);
	}
	if ((r->code != NULL && strcmp(r->code, "CAPABILITY") == 0) ||
	    (r->name != NULL && strcmp(r->name, "CAPABILITY") == 0))
		imap_conn_set_caps_from(c, r);
	if (r->code_id == IMAP_CODE_ALERT)
		g_message("%s: server alert: %s", c->host, r->text);
	track_selected(c, r);

	g_mutex_lock(&c->lock);
	for (guint i = 0; i < c->inflight->len; i++) {
		PendingCmd *pc = c->inflight->pdata[i];
		if (pc->hooks.untagged != NULL && awaits_reply(pc))
			g_ptr_array_add(hooks, pc);
	}
	unsolicited = c->unsolicited;
	unsolicited_user = c->unsolicited_user;
	g_mutex_unlock(&c->lock);

	for (guint i = 0; i < hooks->len; i++) {
		PendingCmd *pc = hooks->pdata[i];
		pc->hooks.untagged(pc->hooks.user, r);
	}
	if (unsolicited != NULL)
		unsolicited(unsolicited_user, r);
	g_ptr_array_free(hooks, TRUE);
	imap_response_free(r);
}

static void
dispatch(void *user, ImapResponse *r)
{
	ImapConn *c = user;

	log_response(c, r);
	if (!c->threaded) {
		g_queue_push_tail(&c->sync_queue, r);
		return;
	}
	switch (r->kind) {
	case IMAP_RESP_TAGGED:
		complete_tagged(c, r);
		break;
	case IMAP_RESP_CONTINUATION:
		handle_continuation(c, r);
		break;
	case IMAP_RESP_UNTAGGED:
		handle_untagged(c, r);
		break;
	}
}

static gboolean
offer_literal(void *user, const ImapLiteralInfo *info, ImapLiteralSink *sink)
{
	ImapConn *c = user;
	GPtrArray *takers = g_ptr_array_new();
	gboolean taken = FALSE;

	g_mutex_lock(&c->lock);
	for (guint i = 0; i < c->inflight->len; i++) {
		PendingCmd *pc = c->inflight->pdata[i];
		if (pc->hooks.literal_start != NULL && awaits_reply(pc))
			g_ptr_array_add(takers, pc);
	}
	g_mutex_unlock(&c->lock);
	for (guint i = 0; i < takers->len && !taken; i++) {
		PendingCmd *pc = takers->pdata[i];
		taken = pc->hooks.literal_start(pc->hooks.user, info, sink);
	}
	g_ptr_array_free(takers, TRUE);
	return taken;
}

static void
touch(ImapConn *c)
{
	g_mutex_lock(&c->lock);
	c->last_activity = g_get_monotonic_time();
	g_mutex_unlock(&c->lock);
}

/* How long the reader may still wait: forever while idle, else until
 * timeout_ms after the last traffic. Returns FALSE if already overdue. */
static gboolean
read_budget(ImapConn *c, int *slice_ms)
{
	gint64 now = g_get_monotonic_time(), overdue;
	gboolean busy;

	g_mutex_lock(&c->lock);
	busy = c->inflight->len > 0 && !c->idling;
	overdue = c->last_activity + (gint64)c->timeout_ms * 1000 - now;
	g_mutex_unlock(&c->lock);
	*slice_ms = 1000;
	if (!busy)
		return TRUE;
	if (overdue <= 0)
		return FALSE;
	*slice_ms = (int)MIN(overdue / 1000 + 1, 1000);
	return TRUE;
}

static gpointer
reader_main(gpointer data)
{
	ImapConn *c = data;
	char *buf = g_malloc(64 * 1024);
	ImapError *err = NULL;
	gssize n;
	int slice;

	for (;;) {
		if (!read_budget(c, &slice)) {
			imap_error_set(&err, IMAP_ETIMEOUT, 0,
			               "server did not answer within %d ms",
			               c->timeout_ms);
			break;
		}
		n = imap_transport_read(c->t, buf, 64 * 1024, slice, &err);
		if (n < 0 && err->status == IMAP_ETIMEOUT) {
			imap_error_clear(&err);
			continue;
		}
		if (n < 0)
			break;
		if (n == 0) {
			imap_error_set(&err, IMAP_EEOF, 0,
			               "server closed the connection");
			break;
		}
		touch(c);
		if (imap_parser_feed(c->parser, buf, (gsize)n, &err) != IMAP_OK)
			break;
	}
	g_free(buf);
	/* A literal cut off mid-way is ended (sink end(FALSE)) here, while
	 * the command that owns its sink still waits: once woken, that
	 * command's state may be gone. */
	imap_parser_free(c->parser);
	c->parser = NULL;
	g_mutex_lock(&c->lock);
	c->reader_done = TRUE;
	g_cond_broadcast(&c->cond);
	g_mutex_unlock(&c->lock);
	fail_connection(c, err);
	return NULL;
}

/* ------------------------------------------------------------ sending */

static ImapStatus
send_bytes(ImapConn *c, const void *data, gsize len, ImapError **err)
{
	ImapStatus st =
	    imap_transport_write(c->t, data, len, c->timeout_ms, err);

	if (st == IMAP_OK)
		touch(c);
	return st;
}

ImapStatus
conn_send_line(ImapConn *c, const char *line, gboolean secret, ImapError **err)
{
	g_autofree char *full = g_strconcat(line, "\r\n", NULL);
	ImapStatus st;

	if (strpbrk(line, "\r\n") != NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "line contains CR or LF");
	if (c->debug)
		g_debug("C: %s", secret ? "<redacted>" : line);
	g_mutex_lock(&c->send_lock);
	st = send_bytes(c, full, strlen(full), err);
	g_mutex_unlock(&c->send_lock);
	if (secret)
		memset(full, 0, strlen(full));
	return st;
}

/* Waits for "+" (or the command's early tagged reply). */
static ImapStatus
await_continuation(ImapConn *c, PendingCmd *pc, ImapError **err)
{
	ImapStatus st = IMAP_OK;

	g_mutex_lock(&c->lock);
	c->cont_waiter = pc;
	while (!pc->got_continuation && !pc->done && c->alive)
		g_cond_wait(&c->cond, &c->lock);
	if (c->cont_waiter == pc)
		c->cont_waiter = NULL;
	if (!pc->got_continuation)
		st = IMAP_ECLOSED; /* reply or failure is reported by wait */
	pc->got_continuation = FALSE;
	g_mutex_unlock(&c->lock);
	return st;
}

/* Called holding send_lock: moves pc to the end of the in-flight list, so
 * that the list's order is the order commands reached the server. Tags are
 * handed out before, and threads may reach the socket in another order. */
static void
put_on_wire(ImapConn *c, PendingCmd *pc)
{
	g_mutex_lock(&c->lock);
	if (g_ptr_array_remove(c->inflight, pc))
		g_ptr_array_add(c->inflight, pc);
	pc->on_wire = TRUE;
	g_mutex_unlock(&c->lock);
}

static ImapStatus
send_parts(ImapConn *c, PendingCmd *pc, GPtrArray *parts, ImapError **err)
{
	ImapStatus st = IMAP_OK;

	g_mutex_lock(&c->send_lock);
	put_on_wire(c, pc);
	for (guint i = 0; i < parts->len && st == IMAP_OK; i++) {
		ImapCmdPart *part = parts->pdata[i];
		gsize len;
		const void *data = g_bytes_get_data(part->bytes, &len);

		st = send_bytes(c, data, len, err);
		if (st == IMAP_OK && part->wait_continuation &&
		    await_continuation(c, pc, err) != IMAP_OK)
			break; /* the server refused the literal */
	}
	g_mutex_unlock(&c->send_lock);
	return st;
}

static void
free_part(gpointer p)
{
	ImapCmdPart *part = p;

	g_bytes_unref(part->bytes);
	g_free(part);
}

static void
pending_free(PendingCmd *pc)
{
	if (pc == NULL)
		return;
	g_free(pc->verb);
	imap_response_free(pc->tagged);
	imap_error_free(pc->error);
	g_free(pc);
}

static void
remove_inflight(ImapConn *c, PendingCmd *pc)
{
	g_mutex_lock(&c->lock);
	g_ptr_array_remove(c->inflight, pc);
	if (pc->has_hooks && pc->hooks.exclusive)
		c->exclusive_active = FALSE;
	g_cond_broadcast(&c->cond);
	g_mutex_unlock(&c->lock);
}

PendingCmd *
conn_submit(ImapConn *c, ImapCmd *cmd, const ImapCmdHooks *hooks,
            ImapError **err)
{
	PendingCmd *pc;
	GPtrArray *parts;
	ImapError *send_err = NULL;
	gboolean exclusive = hooks != NULL && hooks->exclusive;

	if (!imap_cmd_valid(cmd, err)) {
		imap_cmd_free(cmd);
		return NULL;
	}
	imap_cmd_allow_utf8(cmd, imap_conn_utf8(c));
	pc = g_new0(PendingCmd, 1);
	pc->verb = g_strdup(imap_cmd_verb(cmd));
	if (hooks != NULL) {
		pc->hooks = *hooks;
		pc->has_hooks = TRUE;
	}

	g_mutex_lock(&c->lock);
	while (c->alive &&
	       (c->exclusive_active || (exclusive && c->inflight->len > 0)))
		g_cond_wait(&c->cond, &c->lock);
	if (!c->alive) {
		imap_error_set(err, IMAP_ECLOSED, 0, "connection is down: %s",
		               c->failure ? c->failure->text : "closed");
		g_mutex_unlock(&c->lock);
		imap_cmd_free(cmd);
		pending_free(pc);
		return NULL;
	}
	g_snprintf(pc->tag, sizeof(pc->tag), "A%u", ++c->next_tag);
	c->view_synced_at = 0;
	if (exclusive)
		c->exclusive_active = TRUE;
	if (c->inflight->len == 0)
		c->last_activity = g_get_monotonic_time();
	g_ptr_array_add(c->inflight, pc);
	g_mutex_unlock(&c->lock);

	if (c->debug) {
		g_autofree char *desc = imap_cmd_describe(cmd, pc->tag);
		g_debug("C: %s", desc);
	}
	parts = imap_cmd_serialize(cmd, pc->tag, imap_conn_literal_mode(c));
	g_ptr_array_set_free_func(parts, free_part);
	imap_cmd_free(cmd);
	if (pc->hooks.tagged_as != NULL)
		pc->hooks.tagged_as(pc->hooks.user, pc->tag);
	if (send_parts(c, pc, parts, &send_err) != IMAP_OK)
		fail_connection(c, send_err);
	g_ptr_array_free(parts, TRUE);
	return pc;
}

ImapStatus
conn_status_from_tagged(const ImapResponse *r, ImapError **err)
{
	const char *text = r->text != NULL ? r->text : "";

	switch (r->cond) {
	case IMAP_COND_OK:
		return IMAP_OK;
	case IMAP_COND_NO:
		return imap_error_set(
		    err, IMAP_ENO, r->code_id, "%s%s%s%s", r->code ? "[" : "",
		    r->code ? r->code : "", r->code ? "] " : "", text);
	case IMAP_COND_BAD:
		return imap_error_set(err, IMAP_EBAD, r->code_id, "%s", text);
	default:
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "unexpected tagged reply: %s", text);
	}
}

ImapStatus
conn_wait(ImapConn *c, PendingCmd *pc, ImapResponse **tagged, ImapError **err)
{
	ImapStatus st;

	g_mutex_lock(&c->lock);
	while (!pc->done)
		g_cond_wait(&c->cond, &c->lock);
	/* On failure a literal of this command may still be streaming into
	 * its sink on the reader thread; the sink lives in the caller. */
	while (pc->tagged == NULL && c->threaded && !c->reader_done)
		g_cond_wait(&c->cond, &c->lock);
	g_mutex_unlock(&c->lock);
	remove_inflight(c, pc);

	if (pc->tagged == NULL) {
		st = pc->error ? pc->error->status : IMAP_ECLOSED;
		imap_error_set(err, st, pc->error ? pc->error->code : 0, "%s",
		               pc->error ? pc->error->text
		                         : "connection closed");
		pending_free(pc);
		return st;
	}
	st = conn_status_from_tagged(pc->tagged, err);
	if (st != IMAP_OK && c->debug)
		g_debug("%s %s failed: %s", pc->tag, pc->verb,
		        pc->tagged->text);
	if (tagged != NULL) {
		*tagged = pc->tagged;
		pc->tagged = NULL;
	}
	pending_free(pc);
	return st;
}

ImapPending *
imap_conn_send(ImapConn *c, ImapCmd *cmd, const ImapCmdHooks *hooks,
               ImapError **err)
{
	return (ImapPending *)conn_submit(c, cmd, hooks, err);
}

ImapStatus
imap_conn_await(ImapConn *c, ImapPending *p, ImapResponse **tagged,
                ImapError **err)
{
	if (tagged != NULL)
		*tagged = NULL;
	return conn_wait(c, (PendingCmd *)p, tagged, err);
}

ImapStatus
imap_conn_run(ImapConn *c, ImapCmd *cmd, const ImapCmdHooks *hooks,
              ImapResponse **tagged, ImapError **err)
{
	PendingCmd *pc = conn_submit(c, cmd, hooks, err);

	if (tagged != NULL)
		*tagged = NULL;
	if (pc == NULL)
		return err != NULL && *err != NULL ? (*err)->status
		                                   : IMAP_EINVAL;
	return conn_wait(c, pc, tagged, err);
}

/* ------------------------------------------------- connect and greeting */

/* Before the reader thread runs: reads until a response is queued. */
static ImapResponse *
sync_next(ImapConn *c, ImapError **err)
{
	char buf[4096];
	gssize n;

	while (g_queue_is_empty(&c->sync_queue)) {
		n = imap_transport_read(c->t, buf, sizeof(buf), c->timeout_ms,
		                        err);
		if (n < 0)
			return NULL;
		if (n == 0) {
			imap_error_set(err, IMAP_EEOF, 0,
			               "server closed the connection");
			return NULL;
		}
		if (imap_parser_feed(c->parser, buf, (gsize)n, err) != IMAP_OK)
			return NULL;
	}
	return g_queue_pop_head(&c->sync_queue);
}

/* Runs one command synchronously before the reader thread exists (only
 * CAPABILITY and STARTTLS need this). */
static ImapResponse *
sync_command(ImapConn *c, const char *verb, ImapError **err)
{
	g_autofree char *line = NULL;
	char tag[16];
	ImapResponse *r;

	g_snprintf(tag, sizeof(tag), "A%u", ++c->next_tag);
	line = g_strdup_printf("%s %s\r\n", tag, verb);
	if (c->debug)
		g_debug("C: %s %s", tag, verb);
	if (send_bytes(c, line, strlen(line), err) != IMAP_OK)
		return NULL;
	while ((r = sync_next(c, err)) != NULL) {
		if (r->kind == IMAP_RESP_TAGGED && strcmp(r->tag, tag) == 0)
			return r;
		if (r->kind == IMAP_RESP_UNTAGGED)
			imap_conn_set_caps_from(c, r);
		if (r->cond == IMAP_COND_BYE) {
			imap_error_set(err, IMAP_EBYE, 0,
			               "server closed the connection: %s",
			               r->text);
			imap_response_free(r);
			return NULL;
		}
		imap_response_free(r);
	}
	return NULL;
}

static ImapStatus
sync_capability(ImapConn *c, ImapError **err)
{
	ImapResponse *r = sync_command(c, "CAPABILITY", err);
	ImapStatus st;

	if (r == NULL)
		return err != NULL && *err ? (*err)->status : IMAP_EPROTO;
	st = conn_status_from_tagged(r, err);
	imap_response_free(r);
	return st;
}

static void
new_parser(ImapConn *c)
{
	ImapParserCallbacks cb = {
	    .response = dispatch,
	    .literal_start = offer_literal,
	    .user = c,
	};

	imap_parser_free(c->parser);
	c->parser = imap_parser_new(&c->limits, &cb);
}

static void
drop_caps(ImapConn *c)
{
	g_mutex_lock(&c->lock);
	g_strfreev(c->caps);
	c->caps = NULL;
	g_mutex_unlock(&c->lock);
}

static ImapStatus
starttls(ImapConn *c, const ImapConnectOptions *opts, ImapError **err)
{
	ImapResponse *r;
	ImapStatus st;

	if (!imap_conn_has_cap(c, "STARTTLS"))
		return imap_error_set(err, IMAP_ETLS, 0,
		                      "%s does not offer STARTTLS; refusing to "
		                      "continue without TLS",
		                      c->host);
	r = sync_command(c, "STARTTLS", err);
	if (r == NULL)
		return err != NULL && *err ? (*err)->status : IMAP_EPROTO;
	st = conn_status_from_tagged(r, err);
	imap_response_free(r);
	if (st != IMAP_OK) {
		imap_error_prefix(err, "STARTTLS refused");
		return IMAP_ETLS;
	}
	/* Anything after the tagged OK was sent in clear text before TLS
	 * and would be read as if it came through TLS (CVE-2011-0411). */
	if (!g_queue_is_empty(&c->sync_queue) || !imap_parser_idle(c->parser) ||
	    imap_transport_has_pending(c->t))
		return imap_error_set(err, IMAP_ETLS, 0,
		                      "server sent data after accepting "
		                      "STARTTLS (possible injection attack)");
	drop_caps(c);
	new_parser(c);
	st = imap_transport_start_tls(c->t, c->host, &opts->tls_opts, err);
	if (st != IMAP_OK)
		return st;
	return sync_capability(c, err);
}

static ImapStatus
greeting(ImapConn *c, ImapError **err)
{
	ImapResponse *r = sync_next(c, err);
	ImapStatus st = IMAP_OK;

	if (r == NULL)
		return err != NULL && *err ? (*err)->status : IMAP_EPROTO;
	if (r->kind != IMAP_RESP_UNTAGGED)
		st = imap_error_set(err, IMAP_EPROTO, 0,
		                    "unexpected greeting from %s", c->host);
	else if (r->cond == IMAP_COND_BYE)
		st = imap_error_set(err, IMAP_EBYE, 0, "%s refused: %s",
		                    c->host, r->text);
	else if (r->cond == IMAP_COND_PREAUTH && c->tls == IMAP_TLS_STARTTLS)
		st = imap_error_set(
		    err, IMAP_ETLS, 0,
		    "%s sent PREAUTH, so STARTTLS is impossible; "
		    "refusing an unencrypted session",
		    c->host);
	else if (r->cond == IMAP_COND_PREAUTH)
		c->authenticated = TRUE;
	else if (r->cond != IMAP_COND_OK)
		st = imap_error_set(err, IMAP_EPROTO, 0,
		                    "unexpected greeting from %s: %s", c->host,
		                    r->text);
	if (st == IMAP_OK)
		imap_conn_set_caps_from(c, r);
	imap_response_free(r);
	return st;
}

static ImapConn *
conn_new(const ImapConnectOptions *opts)
{
	ImapConn *c = g_new0(ImapConn, 1);

	c->host = g_strdup(opts->host);
	c->port = g_strdup(opts->port != NULL               ? opts->port
	                   : opts->tls == IMAP_TLS_IMPLICIT ? "993"
	                                                    : "143");
	c->tls = opts->tls;
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 60000;
	c->debug = opts->debug;
	c->limits = opts->limits;
	c->compress = opts->compress;
	c->ever_selected =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_mutex_init(&c->lock);
	g_mutex_init(&c->send_lock);
	g_cond_init(&c->cond);
	c->enabled =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	c->inflight = g_ptr_array_new();
	c->alive = TRUE;
	g_queue_init(&c->sync_queue);
	new_parser(c);
	return c;
}

static void
conn_free(ImapConn *c)
{
	imap_parser_free(c->parser);
	g_queue_clear_full(&c->sync_queue, (GDestroyNotify)imap_response_free);
	if (c->t != NULL)
		imap_transport_free(c->t);
	g_strfreev(c->caps);
	g_hash_table_destroy(c->enabled);
	g_ptr_array_free(c->inflight, TRUE);
	imap_error_free(c->failure);
	g_free(c->bye_text);
	g_free(c->selected);
	g_hash_table_destroy(c->ever_selected);
	imap_select_info_clear(&c->sel);
	g_mutex_clear(&c->lock);
	g_mutex_clear(&c->send_lock);
	g_cond_clear(&c->cond);
	g_free(c->host);
	g_free(c->port);
	g_free(c);
}

static ImapStatus
open_session(ImapConn *c, const ImapConnectOptions *opts, ImapError **err)
{
	ImapStatus st;

	c->t = imap_transport_connect(c->host, c->port, c->timeout_ms, err);
	if (c->t == NULL)
		return err != NULL && *err ? (*err)->status : IMAP_ENET;
	if (c->tls == IMAP_TLS_IMPLICIT) {
		st = imap_transport_start_tls(c->t, c->host, &opts->tls_opts,
		                              err);
		if (st != IMAP_OK)
			return st;
	}
	st = greeting(c, err);
	if (st != IMAP_OK)
		return st;
	if (c->tls == IMAP_TLS_STARTTLS) {
		st = starttls(c, opts, err);
		if (st != IMAP_OK)
			return st;
	}
	if (c->caps == NULL)
		st = sync_capability(c, err);
	return st;
}

ImapConn *
imap_conn_connect(const ImapConnectOptions *opts, ImapError **err)
{
	ImapConn *c = conn_new(opts);

	if (open_session(c, opts, err) != IMAP_OK) {
		imap_error_prefix(err, "%s:%s", c->host, c->port);
		conn_free(c);
		return NULL;
	}
	/* Responses read along with the last synchronous reply would be
	 * lost otherwise; none are expected. */
	g_queue_clear_full(&c->sync_queue, (GDestroyNotify)imap_response_free);
	c->threaded = TRUE; /* before the thread: it dispatches at once */
	c->reader = g_thread_new("imap-reader", reader_main, c);
	return c;
}

void
imap_conn_close(ImapConn *c)
{
	ImapCmdHooks hooks = {.exclusive = TRUE};
	ImapError *closed = NULL;
	PendingCmd *pc = NULL;
	gint64 deadline;

	if (c == NULL)
		return;
	g_mutex_lock(&c->lock);
	c->closing = TRUE;
	g_mutex_unlock(&c->lock);
	if (imap_conn_is_alive(c))
		pc = conn_submit(c, imap_cmd_new("LOGOUT"), &hooks, NULL);
	/* LOGOUT is a courtesy: an unmount must not wait on a slow or gone
	 * server for the whole command timeout. */
	deadline = g_get_monotonic_time() + LOGOUT_WAIT_US;
	g_mutex_lock(&c->lock);
	while (pc != NULL && !pc->done && g_get_monotonic_time() < deadline)
		g_cond_wait_until(&c->cond, &c->lock, deadline);
	g_mutex_unlock(&c->lock);
	imap_error_set(&closed, IMAP_ECLOSED, 0, "closed by client");
	fail_connection(c, closed);
	if (pc != NULL)
		conn_wait(c, pc, NULL, NULL);
	g_thread_join(c->reader);
	conn_free(c);
}

/* ---------------------------------------------------------- selection */

void
imap_select_info_clear(ImapSelectInfo *info)
{
	if (info == NULL)
		return;
	g_free(info->flags);
	g_free(info->permanentflags);
	memset(info, 0, sizeof(*info));
}

static void
select_info_copy(ImapSelectInfo *dst, const ImapSelectInfo *src)
{
	*dst = *src;
	dst->flags = g_strdup(src->flags);
	dst->permanentflags = g_strdup(src->permanentflags);
}

static char *
list_to_text(const ImapValue *v)
{
	GString *s = g_string_new(NULL);

	if (v == NULL || v->type != IMAP_VALUE_LIST)
		return g_string_free(s, FALSE);
	for (guint i = 0; i < v->items->len; i++) {
		const ImapValue *item = v->items->pdata[i];
		if (item->str == NULL)
			continue;
		if (s->len > 0)
			g_string_append_c(s, ' ');
		g_string_append(s, item->str);
	}
	return g_string_free(s, FALSE);
}

typedef struct {
	ImapSelectInfo info;
	const ImapSelectParams *params;
} SelectState;

static void
select_code(ImapSelectInfo *info, const ImapResponse *r)
{
	const ImapValue *arg =
	    r->code_args->len > 0 ? r->code_args->pdata[0] : NULL;

	if (strcmp(r->code, "UIDVALIDITY") == 0)
		imap_value_u32(arg, &info->uidvalidity);
	else if (strcmp(r->code, "UIDNEXT") == 0)
		imap_value_u32(arg, &info->uidnext);
	else if (strcmp(r->code, "HIGHESTMODSEQ") == 0)
		imap_value_u64(arg, &info->highestmodseq);
	else if (strcmp(r->code, "NOMODSEQ") == 0)
		info->nomodseq = TRUE;
	else if (strcmp(r->code, "PERMANENTFLAGS") == 0) {
		g_free(info->permanentflags);
		info->permanentflags = list_to_text(arg);
	}
}

static void
select_untagged(void *user, const ImapResponse *r)
{
	SelectState *s = user;

	if (r->code != NULL && r->cond == IMAP_COND_OK)
		select_code(&s->info, r);
	if (r->name != NULL && strcmp(r->name, "EXISTS") == 0 && r->has_number)
		s->info.exists = r->number;
	if (r->name != NULL && strcmp(r->name, "FLAGS") == 0 &&
	    r->args->len > 0) {
		g_free(s->info.flags);
		s->info.flags = list_to_text(r->args->pdata[0]);
	}
	if (s->params != NULL && s->params->untagged != NULL)
		s->params->untagged(s->params->user, r);
}

static ImapCmd *
select_command(const char *name, const ImapSelectParams *p)
{
	ImapCmd *cmd = imap_cmd_new(p->readonly ? "EXAMINE" : "SELECT");

	imap_cmd_mailbox(cmd, name);
	if (p->qresync_uidvalidity != 0) {
		if (p->qresync_known_uids != NULL)
			imap_cmd_printf(
			    cmd, "(QRESYNC (%u %" G_GUINT64_FORMAT " %s))",
			    p->qresync_uidvalidity, p->qresync_modseq,
			    p->qresync_known_uids);
		else
			imap_cmd_printf(
			    cmd, "(QRESYNC (%u %" G_GUINT64_FORMAT "))",
			    p->qresync_uidvalidity, p->qresync_modseq);
	} else if (p->condstore) {
		imap_cmd_raw(cmd, "(CONDSTORE)");
	}
	return cmd;
}

static const char *
mailbox_key(const char *name)
{
	return g_ascii_strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
}

gboolean
imap_conn_had_selected(ImapConn *c, const char *name)
{
	gboolean had;

	g_mutex_lock(&c->lock);
	had = g_hash_table_contains(c->ever_selected, mailbox_key(name));
	g_mutex_unlock(&c->lock);
	return had;
}

ImapStatus
imap_conn_abandon_stale(ImapConn *c, ImapError **err)
{
	ImapError *why = NULL;

	imap_error_set(&why, IMAP_ECLOSED, 0,
	               "session's view of a mailbox is stale: %s",
	               err != NULL && *err != NULL ? (*err)->text : "refused");
	if (err != NULL) {
		imap_error_clear(err);
		*err = error_copy(why);
	}
	fail_connection(c, why);
	return IMAP_ECLOSED;
}

/* The one function that changes the selected mailbox. Called with no
 * leases outstanding and c->selecting set. */
static ImapStatus
conn_select(ImapConn *c, const char *name, const ImapSelectParams *p,
            ImapError **err)
{
	SelectState s = {.params = p};
	ImapCmdHooks hooks = {
	    .untagged = select_untagged,
	    .user = &s,
	    .exclusive = TRUE,
	};
	ImapResponse *tagged = NULL;
	ImapStatus st;

	st = imap_conn_run(c, select_command(name, p), &hooks, &tagged, err);
	if (st == IMAP_OK) {
		s.info.readonly = tagged->code != NULL &&
		                  strcmp(tagged->code, "READ-ONLY") == 0;
		if (p->readonly)
			s.info.readonly = TRUE;
	}
	imap_response_free(tagged);
	g_mutex_lock(&c->lock);
	imap_select_info_clear(&c->sel);
	g_free(c->selected);
	c->selected = NULL;
	if (st == IMAP_OK) {
		c->sel = s.info;
		c->selected = g_strdup(name);
		g_hash_table_add(c->ever_selected, g_strdup(mailbox_key(name)));
		c->selected_readonly = p->readonly;
		c->view_synced_at = g_get_monotonic_time();
	} else {
		imap_select_info_clear(&s.info);
	}
	g_mutex_unlock(&c->lock);
	if (st != IMAP_OK)
		imap_error_prefix(err, "SELECT %s", name);
	if (st == IMAP_ENO && imap_conn_had_selected(c, name))
		return imap_conn_abandon_stale(c, err);
	return st;
}

static gboolean
same_mailbox(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return FALSE;
	if (g_ascii_strcasecmp(a, "INBOX") == 0)
		return g_ascii_strcasecmp(b, "INBOX") == 0;
	return strcmp(a, b) == 0;
}

ImapStatus
imap_conn_use_mailbox(ImapConn *c, const char *name,
                      const ImapSelectParams *params, ImapSelectInfo *info,
                      ImapError **err)
{
	static const ImapSelectParams defaults = {0};
	const ImapSelectParams *p = params != NULL ? params : &defaults;
	ImapStatus st;

	g_mutex_lock(&c->lock);
	for (;;) {
		if (!c->alive) {
			g_mutex_unlock(&c->lock);
			return imap_error_set(err, IMAP_ECLOSED, 0,
			                      "connection is down");
		}
		if (!c->selecting && same_mailbox(c->selected, name) &&
		    !p->force && (p->readonly || !c->selected_readonly) &&
		    p->qresync_uidvalidity == 0) {
			c->leases++;
			if (info != NULL)
				select_info_copy(info, &c->sel);
			g_mutex_unlock(&c->lock);
			return IMAP_OK;
		}
		if (!c->selecting && c->leases == 0)
			break;
		g_cond_wait(&c->cond, &c->lock);
	}
	c->selecting = TRUE;
	g_mutex_unlock(&c->lock);

	st = conn_select(c, name, p, err);

	g_mutex_lock(&c->lock);
	c->selecting = FALSE;
	if (st == IMAP_OK) {
		c->leases++;
		if (info != NULL)
			select_info_copy(info, &c->sel);
	}
	g_cond_broadcast(&c->cond);
	g_mutex_unlock(&c->lock);
	return st;
}

void
imap_conn_release_mailbox(ImapConn *c)
{
	g_mutex_lock(&c->lock);
	if (c->leases == 0) {
		g_mutex_unlock(&c->lock);
		g_critical("imap_conn_release_mailbox without a lease");
		return;
	}
	c->leases--;
	if (c->leases == 0)
		g_cond_broadcast(&c->cond);
	g_mutex_unlock(&c->lock);
}

gboolean
imap_conn_has_selected(ImapConn *c, const char *name)
{
	gboolean same;

	g_mutex_lock(&c->lock);
	same = !c->selecting && same_mailbox(c->selected, name);
	g_mutex_unlock(&c->lock);
	return same;
}

void
imap_conn_set_holders(ImapConn *c, guint n)
{
	g_atomic_int_set(&c->holders, (gint)n);
}

guint
imap_conn_holders(ImapConn *c)
{
	return (guint)g_atomic_int_get(&c->holders);
}

gboolean
imap_conn_view_fresh(ImapConn *c, gint64 max_age_us)
{
	gboolean fresh;

	g_mutex_lock(&c->lock);
	fresh = c->view_synced_at != 0 &&
	        g_get_monotonic_time() - c->view_synced_at <= max_age_us;
	g_mutex_unlock(&c->lock);
	return fresh;
}

void
imap_conn_view_outdated(ImapConn *c)
{
	g_mutex_lock(&c->lock);
	c->view_synced_at = 0;
	g_mutex_unlock(&c->lock);
}

void
imap_conn_forget_mailbox(ImapConn *c, const char *name)
{
	g_mutex_lock(&c->lock);
	if (same_mailbox(c->selected, name) && c->leases == 0) {
		g_free(c->selected);
		c->selected = NULL;
	}
	g_mutex_unlock(&c->lock);
}

/* ---------------------------------------------------------------- IDLE */

struct ImapIdle {
	ImapConn *c;
	PendingCmd *pc;
	ImapUntaggedFn fn;
	void *user;
	gboolean started;
};

static char *
idle_continuation(void *user, const ImapResponse *r)
{
	ImapIdle *idle = user;

	g_mutex_lock(&idle->c->lock);
	idle->started = TRUE;
	idle->c->idling = TRUE;
	g_cond_broadcast(&idle->c->cond);
	g_mutex_unlock(&idle->c->lock);
	return NULL;
}

static void
idle_untagged(void *user, const ImapResponse *r)
{
	ImapIdle *idle = user;

	idle->fn(idle->user, r);
}

ImapIdle *
imap_idle_start(ImapConn *c, ImapUntaggedFn fn, void *user, ImapError **err)
{
	ImapIdle *idle;
	ImapCmdHooks hooks = {
	    .untagged = idle_untagged,
	    .continuation = idle_continuation,
	    .exclusive = TRUE,
	};

	if (!imap_conn_has_cap(c, "IDLE")) {
		imap_error_set(err, IMAP_EUNSUPPORTED, 0,
		               "server does not support IDLE");
		return NULL;
	}
	idle = g_new0(ImapIdle, 1);
	idle->c = c;
	idle->fn = fn;
	idle->user = user;
	hooks.user = idle;
	idle->pc = conn_submit(c, imap_cmd_new("IDLE"), &hooks, err);
	if (idle->pc == NULL) {
		g_free(idle);
		return NULL;
	}
	g_mutex_lock(&c->lock);
	while (!idle->started && !idle->pc->done)
		g_cond_wait(&c->cond, &c->lock);
	g_mutex_unlock(&c->lock);
	if (!idle->started) {
		conn_wait(c, idle->pc, NULL, err);
		imap_error_prefix(err, "IDLE");
		g_free(idle);
		return NULL;
	}
	return idle;
}

ImapStatus
imap_idle_stop(ImapIdle *idle, ImapError **err)
{
	ImapStatus st;
	ImapError *send_err = NULL;

	g_mutex_lock(&idle->c->lock);
	idle->c->idling = FALSE;
	idle->c->last_activity = g_get_monotonic_time();
	g_mutex_unlock(&idle->c->lock);
	if (conn_send_line(idle->c, "DONE", FALSE, &send_err) != IMAP_OK)
		fail_connection(idle->c, send_err);
	st = conn_wait(idle->c, idle->pc, NULL, err);
	g_free(idle);
	return st;
}
