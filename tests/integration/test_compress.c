/* test_compress.c - COMPRESS=DEFLATE (RFC 4978) against a real Dovecot with
 * the imap_zlib plugin (or Cyrus, which offers it as it is): LIST, SELECT,
 * FETCH of a large body, APPEND and pipelined commands from several threads
 * over a compressed connection, checked byte for byte with the independent
 * client; a counting proxy in between shows the bytes on the wire really shrink
 * and are not plain text. Scripted servers cover a refusal, a server without
 * the capability and a corrupt stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "imap/conn.h"
#include "imap/ops.h"

#define MARKER "X-Plain-Marker: this line is visible on an uncompressed wire"

static TestServer *server;
static GBytes *big_message; /* about 3 MB of text, compressible */
static guint32 big_uid;

static GBytes *
make_message(gsize size, guint seed)
{
	static const char *const words[] = {
	    "alpha", "bravo",  "charlie", "delta", "echo",   "foxtrot",
	    "golf",  "hotel",  "india",   "julia", "kilo",   "lima",
	    "mike",  "nectar", "oscar",   "papa",  "quebec", "romeo"};
	GString *s = g_string_new(NULL);
	GRand *r = g_rand_new_with_seed(seed);

	g_string_append_printf(s,
	                       "From: Alice <alice@example.org>\r\n"
	                       "To: Bob <bob@example.org>\r\n"
	                       "Subject: compressed body %u\r\n"
	                       "Date: Mon, 3 Jun 2024 10:00:00 +0000\r\n"
	                       "Message-ID: <c%u@example.org>\r\n" MARKER
	                       "\r\n\r\n",
	                       seed, seed);
	for (guint line = 0; s->len < size; line++) {
		g_string_append_printf(s, "%06u", line);
		for (guint w = 0; w < 8; w++)
			g_string_append_printf(
			    s, " %s",
			    words[g_rand_int_range(r, 0, G_N_ELEMENTS(words))]);
		g_string_append(s,
		                line % 50 == 0 ? "\r\n" MARKER "\r\n" : "\r\n");
	}
	g_rand_free(r);
	return g_string_free_to_bytes(s);
}

static int
group_setup(void **state)
{
	TestServerOptions opts = {0};
	gsize len;
	const char *data;

	/* Cyrus offers COMPRESS=DEFLATE as it is; Dovecot needs a plugin. */
	if (test_server_kind() == TEST_SERVER_DOVECOT)
		opts.extra_conf = "protocol imap {\n"
		                  "  mail_plugins = $mail_plugins imap_zlib\n"
		                  "}\n";
	server = test_server_start(&opts);
	big_message = make_message(3 << 20, 1);
	data = g_bytes_get_data(big_message, &len);
	big_uid = test_server_append(server, "INBOX", data, len, NULL);
	return server == NULL;
}

static int
group_teardown(void **state)
{
	test_server_stop(server);
	g_bytes_unref(big_message);
	return 0;
}

static ImapConnectOptions
options(ImapTlsMode mode, const char *port, ImapCompressMode compress)
{
	ImapConnectOptions o = {
	    .host = server->host,
	    .port = port,
	    .tls = mode,
	    .timeout_ms = 20000,
	    .debug = g_getenv("IMAP_DEBUG") != NULL,
	    .compress = compress,
	};
	o.tls_opts.ca_file = server->ca_file;
	return o;
}

/* Connects with O and logs in as USER/SECRET, or fails the test. */
static ImapConn *
login_as(ImapConnectOptions o, const char *user, const char *secret)
{
	ImapCredentials cred = {IMAP_AUTH_AUTO, user, secret};
	ImapError *err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	if (c == NULL)
		fail_msg("connect to %s: %s", o.port, err->text);
	if (imap_conn_login(c, &cred, &err) != IMAP_OK)
		fail_msg("login: %s", err->text);
	return c;
}

static ImapConn *
login(ImapConnectOptions o)
{
	return login_as(o, server->user, server->password);
}

static gboolean
collect(void *ctx, const char *data, gsize len)
{
	g_byte_array_append(ctx, (const guint8 *)data, (guint)len);
	return TRUE;
}

static void
assert_body(ImapConn *c, const char *mailbox, guint32 uid, GBytes *want)
{
	GByteArray *got = g_byte_array_new();
	ImapError *err = NULL;
	guint64 total = 0;
	gsize len;
	const void *data = g_bytes_get_data(want, &len);

	if (imap_uid_fetch_body(c, mailbox, uid, 0, 0, collect, got, &total,
	                        &err) != IMAP_OK)
		fail_msg("fetch %s %u: %s", mailbox, uid, err->text);
	assert_int_equal(total, len);
	assert_int_equal(got->len, len);
	assert_memory_equal(got->data, data, len);
	g_byte_array_free(got, TRUE);
}

static gboolean
has_mailbox(GPtrArray *boxes, const char *name)
{
	for (guint i = 0; i < boxes->len; i++) {
		const ImapMailbox *m = boxes->pdata[i];
		if (strcmp(m->name, name) == 0)
			return TRUE;
	}
	return FALSE;
}

/* CREATE, LIST, SELECT + FETCH of the large body, APPEND checked by the
 * independent client, on one compressed connection. */
static void
exercise(ImapConn *c, const char *folder)
{
	GBytes *upload = make_message(1 << 20, 7);
	ImapAppendUid au = {0};
	GPtrArray *boxes = NULL;
	ImapError *err = NULL;
	char *uid_text, *fetched;
	gsize len;
	const char *data = g_bytes_get_data(upload, &len);

	assert_true(imap_conn_is_compressed(c));
	if (imap_create(c, folder, &err) != IMAP_OK)
		fail_msg("create: %s", err->text);
	if (imap_list(c, "", "*", &boxes, &err) != IMAP_OK)
		fail_msg("list: %s", err->text);
	assert_true(has_mailbox(boxes, "INBOX"));
	assert_true(has_mailbox(boxes, folder));
	g_ptr_array_free(boxes, TRUE);

	assert_body(c, "INBOX", big_uid, big_message);

	if (imap_append(c, folder, "\\Flagged", 0, upload, &au, &err) !=
	    IMAP_OK)
		fail_msg("append: %s", err->text);
	assert_true(au.valid);
	uid_text = g_strdup_printf("%u", au.uid);
	fetched = test_server_check(server, "fetch", folder, uid_text, NULL);
	assert_int_equal(strlen(fetched), len);
	assert_memory_equal(fetched, data, len);
	assert_body(c, folder, au.uid, upload);
	g_free(fetched);
	g_free(uid_text);
	g_bytes_unref(upload);
	assert_true(imap_conn_is_alive(c));
}

static void
test_starttls(void **state)
{
	ImapConn *c =
	    login(options(IMAP_TLS_STARTTLS, server->port, IMAP_COMPRESS_YES));
	ImapTransportCounts n;
	gsize len = g_bytes_get_size(big_message);

	exercise(c, "Deflate STARTTLS");
	/* Both bodies came in through the inflater, in far fewer bytes. */
	imap_conn_transport_counts(c, &n);
	assert_true(n.plain_in > len + (1 << 20));
	assert_true(n.wire_in < n.plain_in / 3);
	assert_true(n.wire_out < n.plain_out / 2); /* the APPEND */
	imap_conn_close(c);
}

static void
test_implicit_tls(void **state)
{
	ImapConn *c = login(
	    options(IMAP_TLS_IMPLICIT, server->tls_port, IMAP_COMPRESS_YES));

	exercise(c, "Deflate TLS");
	imap_conn_close(c);
}

/* auto leaves a server on a loopback address alone (it decides by the
 * address before any timing). */
static void
test_auto_loopback(void **state)
{
	ImapConn *c =
	    login(options(IMAP_TLS_STARTTLS, server->port, IMAP_COMPRESS_AUTO));

	assert_false(imap_conn_is_compressed(c));
	assert_body(c, "INBOX", big_uid, big_message);
	imap_conn_close(c);
}

/* ------------------------------------------------ pipelined commands */

typedef struct {
	ImapConn *c;
	guint32 uid;
	GBytes *want;
	gint failures;
} Fetchers;

static gpointer
fetch_loop(gpointer data)
{
	Fetchers *f = data;
	gsize len;
	const void *want = g_bytes_get_data(f->want, &len);

	for (guint i = 0; i < 8; i++) {
		GByteArray *got = g_byte_array_new();
		ImapError *err = NULL;
		guint64 total = 0;

		if (imap_uid_fetch_body(f->c, "INBOX", f->uid, 0, 0, collect,
		                        got, &total, &err) != IMAP_OK ||
		    got->len != len || memcmp(got->data, want, len) != 0) {
			g_printerr("fetch %u: %s, %u of %zu bytes\n", i,
			           err != NULL ? err->text : "no error",
			           got->len, len);
			g_atomic_int_inc(&f->failures);
		}
		imap_error_free(err);
		g_byte_array_free(got, TRUE);
	}
	return NULL;
}

/* Commands from four threads are in flight together: each must be flushed
 * whole when written, or the server waits for the rest and all stall. */
static void
test_pipelined(void **state)
{
	GBytes *small = make_message(20000, 3);
	gsize len;
	const char *data = g_bytes_get_data(small, &len);
	Fetchers f = {
	    .c = login(
	        options(IMAP_TLS_STARTTLS, server->port, IMAP_COMPRESS_YES)),
	    .want = small,
	};
	GThread *t[4];

	f.uid = test_server_append(server, "INBOX", data, len, NULL);
	assert_true(imap_conn_is_compressed(f.c));
	for (guint i = 0; i < G_N_ELEMENTS(t); i++)
		t[i] = g_thread_new("fetcher", fetch_loop, &f);
	for (guint i = 0; i < G_N_ELEMENTS(t); i++)
		g_thread_join(t[i]);
	assert_int_equal(f.failures, 0);
	assert_true(imap_conn_is_alive(f.c));
	imap_conn_close(f.c);
	g_bytes_unref(small);
}

/* ---------------------------------------------------- counting proxy */

/* Forwards one connection to the server and keeps what it saw. */
typedef struct {
	int listener;
	char port[16];
	GThread *thread;
	GMutex lock;
	GByteArray *down; /* server -> client bytes */
	guint64 up;       /* client -> server byte count */
} Proxy;

static gboolean
send_all(int fd, const guint8 *p, gsize len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return FALSE;
		p += n;
		len -= (gsize)n;
	}
	return TRUE;
}

static int
connect_server(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_port = htons((guint16)atoi(server->port));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		fail_msg("proxy cannot reach the server");
	return fd;
}

static gpointer
proxy_main(gpointer data)
{
	Proxy *p = data;
	int client = accept(p->listener, NULL, NULL), up = connect_server();
	struct pollfd fds[2] = {{.fd = client, .events = POLLIN},
	                        {.fd = up, .events = POLLIN}};
	guint8 buf[65536];

	for (;;) {
		ssize_t n;

		if (poll(fds, 2, -1) < 0)
			break;
		if (fds[0].revents) {
			n = recv(client, buf, sizeof(buf), 0);
			if (n <= 0 || !send_all(up, buf, (gsize)n))
				break;
			g_mutex_lock(&p->lock);
			p->up += (guint64)n;
			g_mutex_unlock(&p->lock);
		}
		if (fds[1].revents) {
			n = recv(up, buf, sizeof(buf), 0);
			if (n <= 0)
				break;
			/* Counted before it is forwarded, so the client
			 * never sees bytes the count lacks. */
			g_mutex_lock(&p->lock);
			g_byte_array_append(p->down, buf, (guint)n);
			g_mutex_unlock(&p->lock);
			if (!send_all(client, buf, (gsize)n))
				break;
		}
	}
	close(client);
	close(up);
	return NULL;
}

static Proxy *
proxy_start(void)
{
	Proxy *p = g_new0(Proxy, 1);
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->listener = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(p->listener, (struct sockaddr *)&a, sizeof(a)),
	                 0);
	assert_int_equal(listen(p->listener, 1), 0);
	getsockname(p->listener, (struct sockaddr *)&a, &alen);
	g_snprintf(p->port, sizeof(p->port), "%u", ntohs(a.sin_port));
	g_mutex_init(&p->lock);
	p->down = g_byte_array_new();
	p->thread = g_thread_new("proxy", proxy_main, p);
	return p;
}

static void
proxy_counts(Proxy *p, guint64 *up, guint64 *down)
{
	g_mutex_lock(&p->lock);
	*up = p->up;
	*down = p->down->len;
	g_mutex_unlock(&p->lock);
}

/* Joins the thread (the client has closed) and tells whether the marker
 * line crossed the wire in plain text. */
static gboolean
proxy_finish(Proxy *p)
{
	gboolean seen;

	g_thread_join(p->thread);
	seen =
	    memmem(p->down->data, p->down->len, MARKER, strlen(MARKER)) != NULL;
	close(p->listener);
	g_byte_array_free(p->down, TRUE);
	g_mutex_clear(&p->lock);
	g_free(p);
	return seen;
}

/* Fetches the big message over plain TCP through a proxy; returns the
 * bytes that came down the wire for the FETCH. */
static guint64
fetch_through_proxy(ImapCompressMode mode, gboolean *marker_seen)
{
	Proxy *p = proxy_start();
	ImapConn *c = login(options(IMAP_TLS_NONE, p->port, mode));
	guint64 up0, down0, up1, down1, fetched;
	ImapError *err = NULL;

	assert_int_equal(imap_conn_is_compressed(c), mode == IMAP_COMPRESS_YES);
	proxy_counts(p, &up0, &down0);
	assert_body(c, "INBOX", big_uid, big_message);
	proxy_counts(p, &up1, &down1);
	fetched = down1 - down0;
	if (mode == IMAP_COMPRESS_YES) {
		/* Never sent twice: nothing goes out, all still works. */
		assert_int_equal(imap_conn_compress(c, IMAP_COMPRESS_YES, &err),
		                 IMAP_OK);
		proxy_counts(p, &up0, &down0);
		assert_int_equal(up0, up1);
		assert_int_equal(imap_noop(c, &err), IMAP_OK);
	}
	imap_conn_close(c);
	*marker_seen = proxy_finish(p);
	return fetched;
}

static void
test_wire_is_compressed(void **state)
{
	gsize len = g_bytes_get_size(big_message);
	gboolean plain_marker, deflate_marker;
	guint64 plain = fetch_through_proxy(IMAP_COMPRESS_NO, &plain_marker);
	guint64 deflated =
	    fetch_through_proxy(IMAP_COMPRESS_YES, &deflate_marker);

	assert_true(plain >= len);
	assert_true(plain_marker);
	assert_true(deflated < plain / 3);
	assert_false(deflate_marker);
}

/* ---------------------------------------------------- scripted servers */

static ImapConn *
scripted_login(FakeServer *fake)
{
	ImapConnectOptions o = {
	    .host = "127.0.0.1",
	    .port = fake->port,
	    .tls = IMAP_TLS_NONE,
	    .timeout_ms = 10000,
	    .compress = IMAP_COMPRESS_YES,
	};

	return login_as(o, "u", "p");
}

static void
run_refusal_script(const char *script)
{
	FakeServer *fake = fake_server_start(script);
	ImapConn *c = scripted_login(fake);
	ImapError *err = NULL;

	assert_false(imap_conn_is_compressed(c));
	assert_int_equal(imap_noop(c, &err), IMAP_OK);
	imap_conn_close(c);
	assert_int_equal(fake_server_finish(fake), 0);
}

/* A NO (e.g. [COMPRESSIONACTIVE]) keeps the connection, uncompressed. */
static void
test_refused(void **state)
{
	run_refusal_script(
	    "S * PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\n"
	    "C ^(\\S+) COMPRESS DEFLATE$\n"
	    "S $TAG NO [COMPRESSIONACTIVE] not now\n"
	    "C ^(\\S+) NOOP$\n"
	    "S $TAG OK noop\n"
	    "C ^(\\S+) LOGOUT$\n"
	    "S * BYE bye\n"
	    "S $TAG OK bye\n");
}

/* Not offered: not asked for, even with compress=yes. */
static void
test_not_offered(void **state)
{
	run_refusal_script("S * PREAUTH [CAPABILITY IMAP4rev1] hi\n"
	                   "C ^(\\S+) NOOP$\n"
	                   "S $TAG OK noop\n"
	                   "C ^(\\S+) LOGOUT$\n"
	                   "S * BYE bye\n"
	                   "S $TAG OK bye\n");
}

/* After OK, bytes that do not inflate are a broken connection (IMAP_ENET,
 * so the cache's reconnect logic retries), with a clear reason. */
static void
test_corrupt_stream(void **state)
{
	FakeServer *fake = fake_server_start(
	    "S * PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\n"
	    "C ^(\\S+) COMPRESS DEFLATE$\n"
	    "R $TAG OK deflating\\r\\n\\x07\\xff\\xff\\xff\n"
	    "EOF\n");
	ImapConn *c = scripted_login(fake);
	ImapError *err = NULL, *why;

	assert_true(imap_conn_is_compressed(c));
	assert_int_not_equal(imap_noop(c, &err), IMAP_OK);
	imap_error_free(err);
	why = imap_conn_failure(c);
	assert_non_null(why);
	assert_int_equal(why->status, IMAP_ENET);
	assert_non_null(strstr(why->text, "corrupt"));
	imap_error_free(why);
	imap_conn_close(c);
	assert_int_equal(fake_server_finish(fake), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starttls),
	    cmocka_unit_test(test_implicit_tls),
	    cmocka_unit_test(test_auto_loopback),
	    cmocka_unit_test(test_pipelined),
	    cmocka_unit_test(test_wire_is_compressed),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_not_offered),
	    cmocka_unit_test(test_corrupt_stream),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
