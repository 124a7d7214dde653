/* test_conn.c - the connection engine against a real Dovecot or, with
 * IMAP_SERVER=cyrus, Cyrus IMAP (TLS modes, certificate checks, login
 * mechanisms, pipelining from threads, IDLE) and against scripted fake
 * servers (STARTTLS downgrade and injection, PREAUTH, SASL continuations,
 * synchronizing literals, timeouts, BYE). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/pool.h"

static TestServer *server;
/* For the scripted servers: a CA for the client to trust. */
static TestCerts *certs;

static int
group_setup(void **state)
{
	server = test_server_start(NULL);
	return server == NULL;
}

static int
group_teardown(void **state)
{
	test_server_stop(server);
	return 0;
}

static int
scripted_setup(void **state)
{
	certs = test_certs_make();
	return certs == NULL;
}

static int
scripted_teardown(void **state)
{
	test_certs_free(certs);
	return 0;
}

static ImapConnectOptions
tls_options(ImapTlsMode mode, const char *ca_file, const char *name)
{
	ImapConnectOptions o = {
	    .host = server->host,
	    .port = mode == IMAP_TLS_IMPLICIT ? server->tls_port : server->port,
	    .tls = mode,
	    .timeout_ms = 10000,
	    .debug = g_getenv("IMAP_DEBUG") != NULL,
	};
	o.tls_opts.ca_file = ca_file;
	o.tls_opts.server_name = name;
	return o;
}

static ImapCredentials
alice(ImapAuthMech mech)
{
	ImapCredentials cred = {
	    .mech = mech,
	    .user = server->user,
	    .secret = server->password,
	};
	return cred;
}

static ImapConn *
login_or_fail(ImapConnectOptions o, ImapAuthMech mech)
{
	g_autoptr(ImapError) err = NULL;
	ImapCredentials cred = alice(mech);
	ImapConn *c = imap_conn_connect(&o, &err);

	if (c == NULL)
		fail_msg("connect: %s", err->text);
	if (imap_conn_login(c, &cred, &err) != IMAP_OK)
		fail_msg("login: %s", err->text);
	return c;
}

/* ------------------------------------------------------ TLS and auth */

static void
test_implicit_tls_trusted(void **state)
{
	ImapConn *c = login_or_fail(
	    tls_options(IMAP_TLS_IMPLICIT, server->ca_file, server->cert_name),
	    IMAP_AUTH_AUTO);

	assert_true(imap_conn_is_authenticated(c));
	assert_true(imap_conn_has_cap(c, "IMAP4rev1"));
	/* Dovecot lists UIDPLUS only after login: proves the re-read. */
	assert_true(imap_conn_has_cap(c, "UIDPLUS"));
	assert_false(imap_conn_has_cap(c, "AUTH=PLAIN"));
	imap_conn_close(c);
}

static void
expect_tls_failure(ImapConnectOptions o, const char *needle)
{
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	assert_null(c);
	assert_non_null(err);
	assert_int_equal(err->status, IMAP_ETLS);
	if (strstr(err->text, needle) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err->text, needle);
}

static void
test_implicit_tls_untrusted(void **state)
{
	expect_tls_failure(
	    tls_options(IMAP_TLS_IMPLICIT, NULL, server->cert_name),
	    "certificate verification failed");
}

static void
test_implicit_tls_other_ca(void **state)
{
	expect_tls_failure(tls_options(IMAP_TLS_IMPLICIT, server->other_ca_file,
	                               server->cert_name),
	                   "certificate verification failed");
}

static void
test_tls_wrong_host_name(void **state)
{
	expect_tls_failure(
	    tls_options(IMAP_TLS_IMPLICIT, server->ca_file, "mail.example.org"),
	    "hostname mismatch");
}

static void
test_starttls_trusted(void **state)
{
	ImapConn *c = login_or_fail(
	    tls_options(IMAP_TLS_STARTTLS, server->ca_file, server->cert_name),
	    IMAP_AUTH_PLAIN);

	/* Capabilities from before TLS were dropped and re-read. */
	assert_false(imap_conn_has_cap(c, "STARTTLS"));
	assert_true(imap_conn_has_cap(c, "UIDPLUS"));
	imap_conn_close(c);
}

static void
test_starttls_untrusted(void **state)
{
	expect_tls_failure(tls_options(IMAP_TLS_STARTTLS, server->other_ca_file,
	                               server->cert_name),
	                   "certificate verification failed");
}

static char *
server_fingerprint(void)
{
	g_autofree char *pem =
	    g_build_filename(server->dir, "certs", "server.pem", NULL);
	g_autofree char *out = NULL;
	const char *argv[] = {"openssl", "x509",         "-in",     pem,
	                      "-noout",  "-fingerprint", "-sha256", NULL};
	int status = 0;
	char *eq;

	if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL,
	                  NULL, &out, NULL, &status, NULL) ||
	    status != 0)
		fail_msg("openssl x509 -fingerprint failed");
	eq = strchr(out, '=');
	assert_non_null(eq);
	return g_strconcat("sha256:", g_strstrip(eq + 1), NULL);
}

static void
test_pinned_fingerprint(void **state)
{
	g_autofree char *pin = server_fingerprint();
	ImapConnectOptions o = tls_options(IMAP_TLS_IMPLICIT, NULL, NULL);
	ImapConn *c;

	o.tls_opts.fingerprint = pin;
	c = login_or_fail(o, IMAP_AUTH_LOGIN);
	imap_conn_close(c);

	pin[strlen(pin) - 1] = pin[strlen(pin) - 1] == '0' ? '1' : '0';
	expect_tls_failure(o, "does not match the pinned one");
}

static void
test_plain_tcp_login(void **state)
{
	ImapConn *c = login_or_fail(tls_options(IMAP_TLS_NONE, NULL, NULL),
	                            IMAP_AUTH_LOGIN);

	assert_true(imap_conn_is_authenticated(c));
	imap_conn_close(c);
}

static void
test_wrong_password(void **state)
{
	ImapConnectOptions o =
	    tls_options(IMAP_TLS_IMPLICIT, server->ca_file, server->cert_name);
	ImapCredentials cred = {IMAP_AUTH_PLAIN, server->user, "not-it"};
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	assert_non_null(c);
	assert_int_equal(imap_conn_login(c, &cred, &err), IMAP_EAUTH);
	if (server->kind == TEST_SERVER_CYRUS) {
		/* Cyrus 3.6: "NO authentication failure", no response code
		 * (after a 3 s delay). */
		assert_non_null(strstr(err->text, "authentication failure"));
	} else {
		assert_int_equal(err->code, IMAP_CODE_AUTHENTICATIONFAILED);
		assert_non_null(strstr(err->text, "Authentication failed"));
	}
	assert_false(imap_conn_is_authenticated(c));
	imap_conn_close(c);
}

static void
test_login_rejects_crlf(void **state)
{
	ImapConnectOptions o =
	    tls_options(IMAP_TLS_IMPLICIT, server->ca_file, server->cert_name);
	ImapCredentials cred = {IMAP_AUTH_LOGIN, "alice\r\nA1 LOGOUT", "x"};
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	assert_non_null(c);
	assert_int_equal(imap_conn_login(c, &cred, &err), IMAP_EINVAL);
	/* Nothing was sent, so the connection is still usable. */
	imap_error_clear(&err);
	cred = alice(IMAP_AUTH_LOGIN);
	assert_int_equal(imap_conn_login(c, &cred, &err), IMAP_OK);
	imap_conn_close(c);
}

/* ------------------------------------------------------- pipelining */

typedef struct {
	ImapConn *c;
	int ok;
} ThreadArgs;

static gpointer
noop_worker(gpointer data)
{
	ThreadArgs *a = data;

	for (int i = 0; i < 50; i++) {
		ImapCmd *cmd = imap_cmd_new(i % 2 ? "NOOP" : "CAPABILITY");
		if (imap_conn_run(a->c, cmd, NULL, NULL, NULL) == IMAP_OK)
			a->ok++;
	}
	return NULL;
}

static void
test_pipelined_threads(void **state)
{
	ImapConn *c = login_or_fail(
	    tls_options(IMAP_TLS_IMPLICIT, server->ca_file, server->cert_name),
	    IMAP_AUTH_AUTO);
	ThreadArgs args[8];
	GThread *threads[8];

	for (int i = 0; i < 8; i++) {
		args[i] = (ThreadArgs){.c = c};
		threads[i] = g_thread_new("noop", noop_worker, &args[i]);
	}
	for (int i = 0; i < 8; i++) {
		g_thread_join(threads[i]);
		assert_int_equal(args[i].ok, 50);
	}
	assert_true(imap_conn_is_alive(c));
	imap_conn_close(c);
}

/* ------------------------------------------------------------- IDLE */

typedef struct {
	GMutex lock;
	guint32 exists;
} IdleSeen;

static void
idle_seen(void *user, const ImapResponse *r)
{
	IdleSeen *s = user;

	if (r->name != NULL && strcmp(r->name, "EXISTS") == 0) {
		g_mutex_lock(&s->lock);
		s->exists = r->number;
		g_mutex_unlock(&s->lock);
	}
}

static void
test_idle_sees_new_mail(void **state)
{
	ImapConn *c = login_or_fail(
	    tls_options(IMAP_TLS_IMPLICIT, server->ca_file, server->cert_name),
	    IMAP_AUTH_AUTO);
	g_autoptr(ImapError) err = NULL;
	ImapSelectInfo info = {0};
	IdleSeen seen = {0};
	const char msg[] = "Subject: idle\r\n\r\nhello\r\n";
	ImapIdle *idle;
	guint32 before, now = 0;

	assert_int_equal(imap_conn_use_mailbox(c, "INBOX", NULL, &info, &err),
	                 IMAP_OK);
	assert_true(info.uidvalidity != 0);
	before = info.exists;
	idle = imap_idle_start(c, idle_seen, &seen, &err);
	assert_non_null(idle);
	test_server_append(server, "INBOX", msg, strlen(msg), NULL);
	for (int i = 0; i < 100 && now == 0; i++) {
		g_usleep(50000);
		g_mutex_lock(&seen.lock);
		now = seen.exists;
		g_mutex_unlock(&seen.lock);
	}
	assert_int_equal(now, before + 1);
	assert_int_equal(imap_idle_stop(idle, &err), IMAP_OK);
	/* The connection takes commands again after DONE. */
	assert_int_equal(imap_noop(c, &err), IMAP_OK);
	imap_conn_release_mailbox(c);
	imap_select_info_clear(&info);
	imap_conn_close(c);
}

/* -------------------------------------------------- scripted servers */

typedef struct {
	GPid pid;
	char *port;
	char *script;
} Fake;

static Fake
fake_start(const char *script)
{
	g_autofree char *py =
	    g_build_filename(TEST_SOURCE_DIR, "harness", "fakeserver.py", NULL);
	Fake f = {0};
	int out_fd = -1;
	char buf[64] = {0};
	gsize got = 0;
	gssize n;
	GError *gerr = NULL;
	int fd;

	fd = g_file_open_tmp("fake-XXXXXX.script", &f.script, &gerr);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, script, strlen(script)),
	                 (gssize)strlen(script));
	close(fd);
	{
		const char *argv[] = {"python3", py,       "--timeout",
		                      "20",      f.script, NULL};
		if (!g_spawn_async_with_pipes(
		        NULL, (char **)argv, NULL,
		        G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL,
		        NULL, &f.pid, NULL, &out_fd, NULL, &gerr))
			fail_msg("fakeserver: %s", gerr->message);
	}
	while (got < sizeof(buf) - 1 && strchr(buf, '\n') == NULL) {
		n = read(out_fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (gsize)n;
	}
	close(out_fd);
	assert_true(g_str_has_prefix(buf, "PORT="));
	f.port = g_strstrip(g_strdup(buf + 5));
	return f;
}

/* The fake server exits 0 only if the client sent exactly the lines the
 * script expected. */
static void
fake_finish(Fake *f)
{
	int status = 0;

	waitpid(f->pid, &status, 0);
	g_spawn_close_pid(f->pid);
	unlink(f->script);
	g_free(f->script);
	g_free(f->port);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static ImapConnectOptions
fake_options(Fake *f, ImapTlsMode mode)
{
	ImapConnectOptions o = {
	    .host = "127.0.0.1",
	    .port = f->port,
	    .tls = mode,
	    .timeout_ms = 5000,
	};
	o.tls_opts.ca_file = certs->ca_file;
	o.tls_opts.server_name = certs->cert_name;
	return o;
}

static void
expect_connect_failure(const char *script, ImapTlsMode mode, ImapStatus status,
                       const char *needle)
{
	Fake f = fake_start(script);
	ImapConnectOptions o = fake_options(&f, mode);
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	assert_null(c);
	assert_int_equal(err->status, status);
	if (strstr(err->text, needle) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err->text, needle);
	fake_finish(&f);
}

static void
test_starttls_missing_refused(void **state)
{
	expect_connect_failure("S * OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\n"
	                       "EOF\n",
	                       IMAP_TLS_STARTTLS, IMAP_ETLS,
	                       "does not offer STARTTLS");
}

static void
test_preauth_refused_when_tls_required(void **state)
{
	expect_connect_failure("S * PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] "
	                       "welcome\nEOF\n",
	                       IMAP_TLS_STARTTLS, IMAP_ETLS, "PREAUTH");
}

static void
test_starttls_injection_refused(void **state)
{
	expect_connect_failure(
	    "S * OK [CAPABILITY IMAP4rev1 STARTTLS] hi\n"
	    "C ^(\\S+) STARTTLS$\n"
	    "S $TAG OK Begin TLS\\r\\n* OK [CAPABILITY IMAP4rev1 "
	    "AUTH=PLAIN] injected\n"
	    "EOF\n",
	    IMAP_TLS_STARTTLS, IMAP_ETLS, "injection");
}

static void
test_bye_greeting(void **state)
{
	expect_connect_failure("S * BYE too many connections\nEOF\n",
	                       IMAP_TLS_NONE, IMAP_EBYE,
	                       "too many connections");
}

static void
test_greeting_timeout(void **state)
{
	expect_connect_failure("SLEEP 7000\nCLOSE\n", IMAP_TLS_NONE,
	                       IMAP_ETIMEOUT, "no data");
}

/* Connects in plain text (timeout_ms 0: fake_options' 5 s); the script's
 * greeting says whether that already logs in (PREAUTH). */
static ImapConn *
fake_connect(Fake *f, int timeout_ms)
{
	ImapConnectOptions o = fake_options(f, IMAP_TLS_NONE);
	g_autoptr(ImapError) err = NULL;
	ImapConn *c;

	if (timeout_ms > 0)
		o.timeout_ms = timeout_ms;
	c = imap_conn_connect(&o, &err);
	if (c == NULL)
		fail_msg("connect: %s", err->text);
	return c;
}

static ImapConn *
fake_login(Fake *f, ImapAuthMech mech, const char *user, const char *secret,
           ImapStatus want)
{
	ImapCredentials cred = {mech, user, secret};
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = fake_connect(f, 0);

	assert_int_equal(imap_conn_login(c, &cred, &err), want);
	return c;
}

/* Closes C and checks that the fake server saw the whole script. */
static void
fake_end(Fake *f, ImapConn *c)
{
	imap_conn_close(c);
	fake_finish(f);
}

/* A plain-text session on a fake server that greets with PREAUTH and then
 * plays SCRIPT; TIMEOUT_MS as for fake_connect. */
static ImapConn *
preauth_session(Fake *f, const char *script, int timeout_ms)
{
	g_autofree char *full = g_strconcat(
	    "S * PREAUTH [CAPABILITY IMAP4rev1] hi\n", script, NULL);

	*f = fake_start(full);
	return fake_connect(f, timeout_ms);
}

/* Logs in with MECH as USER/SECRET to a fake server playing SCRIPT: the
 * login must return WANT, and on success leave the connection
 * authenticated, knowing capability CAP (unless NULL). */
static void
scripted_login(const char *script, ImapAuthMech mech, const char *user,
               const char *secret, ImapStatus want, const char *cap)
{
	Fake f = fake_start(script);
	ImapConn *c = fake_login(&f, mech, user, secret, want);

	if (want == IMAP_OK)
		assert_true(imap_conn_is_authenticated(c));
	if (cap != NULL)
		assert_true(imap_conn_has_cap(c, cap));
	fake_end(&f, c);
}

static void
test_plain_without_sasl_ir(void **state)
{
	/* base64("\0alice\0secret") */
	scripted_login("S * OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\n"
	               "C ^(\\S+) AUTHENTICATE PLAIN$\n"
	               "S +\n"
	               "C ^AGFsaWNlAHNlY3JldA==$\n"
	               "S $TAG OK logged in\n"
	               "C ^(\\S+) CAPABILITY$\n"
	               "S * CAPABILITY IMAP4rev1 UIDPLUS MOVE\n"
	               "S $TAG OK done\n"
	               "C ^(\\S+) LOGOUT$\n"
	               "S * BYE bye\n"
	               "S $TAG OK done\n",
	               IMAP_AUTH_AUTO, "alice", "secret", IMAP_OK, "MOVE");
}

static void
test_xoauth2_error_challenge(void **state)
{
	/* base64("user=alice\1auth=Bearer tok\1\1") */
	scripted_login("S * OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\n"
	               "C ^(\\S+) AUTHENTICATE XOAUTH2 "
	               "dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sBAQ==$\n"
	               "S + eyJzdGF0dXMiOiI0MDEifQ==\n"
	               "C ^$\n"
	               "S $TAG NO [AUTHENTICATIONFAILED] Invalid credentials\n"
	               "C ^(\\S+) LOGOUT$\n"
	               "S $TAG OK done\n",
	               IMAP_AUTH_XOAUTH2, "alice", "tok", IMAP_EAUTH, NULL);
}

static void
test_oauthbearer_caps_from_ok(void **state)
{
	scripted_login(
	    "S * OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] hi\n"
	    "C ^(\\S+) AUTHENTICATE OAUTHBEARER [A-Za-z0-9+/=]+$\n"
	    "S $TAG OK [CAPABILITY IMAP4rev1 QRESYNC] welcome\n"
	    "C ^(\\S+) LOGOUT$\n"
	    "S $TAG OK done\n",
	    IMAP_AUTH_OAUTHBEARER, "alice", "tok", IMAP_OK, "QRESYNC");
}

static void
test_sync_literal_waits_for_continuation(void **state)
{
	/* "pässword" is 9 bytes of UTF-8: not quotable without UTF8=ACCEPT,
	 * and without LITERAL+ the client must wait for "+". */
	scripted_login("S * OK [CAPABILITY IMAP4rev1] hi\n"
	               "C ^(\\S+) LOGIN alice \\{9\\}$\n"
	               "SLEEP 300\n"
	               "S + go ahead\n"
	               "READ 11\n"
	               "S $TAG OK logged in\n"
	               "C ^(\\S+) CAPABILITY$\n"
	               "S $TAG OK done\n"
	               "C ^(\\S+) LOGOUT$\n"
	               "S $TAG OK done\n",
	               IMAP_AUTH_LOGIN, "alice", "p\xc3\xa4ssword", IMAP_OK,
	               NULL);
}

static void
test_refused_literal_not_sent(void **state)
{
	/* The next line after the refusal must be LOGOUT, not the
	 * literal's bytes. */
	scripted_login("S * OK [CAPABILITY IMAP4rev1] hi\n"
	               "C ^(\\S+) LOGIN alice \\{9\\}$\n"
	               "S $TAG NO [AUTHENTICATIONFAILED] nope\n"
	               "C ^(\\S+) LOGOUT$\n"
	               "S $TAG OK done\n",
	               IMAP_AUTH_LOGIN, "alice", "p\xc3\xa4ssword", IMAP_EAUTH,
	               NULL);
}

static void
test_bye_mid_command(void **state)
{
	Fake f;
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = preauth_session(&f,
	                              "C ^(\\S+) NOOP$\n"
	                              "S * BYE server shutting down\n"
	                              "CLOSE\n",
	                              0);

	assert_true(imap_conn_is_authenticated(c));
	assert_int_equal(imap_noop(c, &err), IMAP_EBYE);
	assert_non_null(strstr(err->text, "server shutting down"));
	assert_false(imap_conn_is_alive(c));
	/* Later commands fail at once instead of hanging. */
	imap_error_clear(&err);
	assert_int_equal(imap_noop(c, &err), IMAP_ECLOSED);
	fake_end(&f, c);
}

/* Dovecot, after another client deleted and recreated Box: a session that
 * had Box selected is refused it for good ("deleted under us"), to STATUS
 * and to SELECT alike. A refused SELECT of a mailbox the session had
 * selected ends the connection (ECLOSED, retried elsewhere by callers);
 * a refused SELECT of another mailbox is an ordinary NO. */
static void
test_stale_session_abandoned(void **state)
{
	Fake f;
	g_autoptr(ImapError) err = NULL;
	ImapConn *c =
	    preauth_session(&f,
	                    "C ^(\\S+) SELECT Box$\n"
	                    "S * 1 EXISTS\n"
	                    "S * OK [UIDVALIDITY 7] ok\n"
	                    "S $TAG OK [READ-WRITE] selected\n"
	                    "C ^(\\S+) SELECT INBOX$\n"
	                    "S * 0 EXISTS\n"
	                    "S * OK [UIDVALIDITY 1] ok\n"
	                    "S $TAG OK [READ-WRITE] selected\n"
	                    "C ^(\\S+) SELECT Never$\n"
	                    "S $TAG NO [NONEXISTENT] no such mailbox\n"
	                    "C ^(\\S+) SELECT Box$\n"
	                    "S $TAG NO Mailbox was deleted under us\n"
	                    "CLOSE\n",
	                    0);

	assert_int_equal(imap_conn_use_mailbox(c, "Box", NULL, NULL, &err),
	                 IMAP_OK);
	imap_conn_release_mailbox(c);
	assert_int_equal(imap_conn_use_mailbox(c, "inbox", NULL, NULL, &err),
	                 IMAP_OK);
	imap_conn_release_mailbox(c);
	assert_true(imap_conn_had_selected(c, "Box"));
	assert_true(imap_conn_had_selected(c, "INBOX"));
	assert_false(imap_conn_had_selected(c, "Never"));
	assert_int_equal(imap_conn_use_mailbox(c, "Never", NULL, NULL, &err),
	                 IMAP_ENO);
	assert_true(imap_conn_is_alive(c));
	imap_error_clear(&err);
	assert_int_equal(imap_conn_use_mailbox(c, "Box", NULL, NULL, &err),
	                 IMAP_ECLOSED);
	assert_non_null(strstr(err->text, "deleted under us"));
	assert_false(imap_conn_is_alive(c));
	fake_end(&f, c);
}

static void
test_bad_distinct_from_no(void **state)
{
	Fake f;
	g_autoptr(ImapError) err = NULL;
	ImapConn *c =
	    preauth_session(&f,
	                    "C ^(\\S+) NOOP$\n"
	                    "S $TAG BAD [CLIENTBUG] Unknown command X\n"
	                    "C ^(\\S+) NOOP$\n"
	                    "S $TAG NO [UNAVAILABLE] Try again later\n"
	                    "C ^(\\S+) NOOP$\n"
	                    "S $TAG OK still here\n"
	                    "C ^(\\S+) LOGOUT$\n"
	                    "S * BYE bye\n"
	                    "S $TAG OK done\n",
	                    0);

	assert_int_equal(imap_noop(c, &err), IMAP_EBAD);
	assert_int_equal(err->code, IMAP_CODE_CLIENTBUG);
	if (strstr(err->text, "Unknown command X") == NULL)
		fail_msg("BAD text lost: \"%s\"", err->text);
	/* A BAD rejects one command; the connection carries on. */
	assert_true(imap_conn_is_alive(c));
	imap_error_clear(&err);
	assert_int_equal(imap_noop(c, &err), IMAP_ENO);
	assert_int_equal(err->code, IMAP_CODE_UNAVAILABLE);
	assert_non_null(strstr(err->text, "Try again later"));
	imap_error_clear(&err);
	assert_int_equal(imap_noop(c, &err), IMAP_OK);
	fake_end(&f, c);
}

/* One line per untagged response, e.g. "FETCH 1 UID 5 FLAGS \Seen". */
static void
log_unsolicited(void *user, const ImapResponse *r)
{
	GString *log = user;
	/* FETCH: the item list; VANISHED: the UID set after any (EARLIER). */
	const ImapValue *last =
	    r->args->len > 0 ? r->args->pdata[r->args->len - 1] : NULL;

	g_string_append_printf(log, "%s", r->name);
	if (r->has_number)
		g_string_append_printf(log, " %u", r->number);
	if (strcmp(r->name, "FETCH") == 0) {
		const ImapValue *uid = imap_fetch_item(last, "UID");
		const ImapValue *flags = imap_fetch_item(last, "FLAGS");

		if (uid != NULL)
			g_string_append_printf(log, " UID %s", uid->str);
		if (flags != NULL && flags->type == IMAP_VALUE_LIST) {
			g_string_append(log, " FLAGS");
			for (guint i = 0; i < flags->items->len; i++)
				g_string_append_printf(
				    log, " %s",
				    ((ImapValue *)flags->items->pdata[i])->str);
		}
	} else if (strcmp(r->name, "VANISHED") == 0 && last != NULL) {
		g_string_append_printf(log, " %s", last->str);
	} else if (r->cond == IMAP_COND_BYE) {
		g_string_append_printf(log, " %s", r->text);
	}
	g_string_append_c(log, '\n');
}

static void
test_unsolicited_reported(void **state)
{
	Fake f;
	g_autoptr(ImapError) err = NULL;
	GString *log = g_string_new(NULL);
	ImapConn *c =
	    preauth_session(&f,
	                    "C ^(\\S+) NOOP$\n"
	                    "S * 4 EXISTS\n"
	                    "S * 2 EXPUNGE\n"
	                    "S * VANISHED 7:9,12\n"
	                    "S * 1 FETCH (UID 5 FLAGS (\\\\Seen \\\\Flagged))\n"
	                    "S $TAG OK noop\n"
	                    /* Between commands: nothing is in flight. */
	                    "S * 5 EXISTS\n"
	                    "C ^(\\S+) NOOP$\n"
	                    "S * 3 FETCH (FLAGS ())\n"
	                    "S $TAG OK noop\n"
	                    "C ^(\\S+) NOOP$\n"
	                    "S * BYE shutting down\n"
	                    "CLOSE\n",
	                    0);

	imap_conn_set_unsolicited(c, log_unsolicited, log);
	assert_int_equal(imap_noop(c, &err), IMAP_OK);
	assert_int_equal(imap_noop(c, &err), IMAP_OK);
	assert_int_equal(imap_noop(c, &err), IMAP_EBYE);
	/* The reader thread is done with log: it has seen EOF. */
	assert_false(imap_conn_is_alive(c));
	assert_string_equal(log->str, "EXISTS 4\n"
	                              "EXPUNGE 2\n"
	                              "VANISHED 7:9,12\n"
	                              "FETCH 1 UID 5 FLAGS \\Seen \\Flagged\n"
	                              "EXISTS 5\n"
	                              "FETCH 3 FLAGS\n"
	                              "BYE shutting down\n");
	fake_end(&f, c);
	g_string_free(log, TRUE);
}

/* Without SASL-IR the response waits for the "+"; with it, it rides on the
 * command line. Either way it must be these exact bytes. */
static void
xoauth2_login_ok(const char *caps, const char *exchange)
{
	/* base64("user=alice\1auth=Bearer tok\1\1") */
	g_autofree char *script =
	    g_strdup_printf("S * OK [CAPABILITY IMAP4rev1 %s] hi\n"
	                    "%s"
	                    "S $TAG OK logged in\n"
	                    "C ^(\\S+) CAPABILITY$\n"
	                    "S * CAPABILITY IMAP4rev1 UIDPLUS X-AFTER-AUTH\n"
	                    "S $TAG OK done\n"
	                    "C ^(\\S+) LOGOUT$\n"
	                    "S * BYE bye\n"
	                    "S $TAG OK done\n",
	                    caps, exchange);
	scripted_login(script, IMAP_AUTH_XOAUTH2, "alice", "tok", IMAP_OK,
	               "X-AFTER-AUTH");
}

static void
test_xoauth2_login(void **state)
{
	xoauth2_login_ok("AUTH=XOAUTH2",
	                 "C ^(\\S+) AUTHENTICATE XOAUTH2$\n"
	                 "S +\n"
	                 "C ^dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sBAQ==$\n");
	xoauth2_login_ok("SASL-IR AUTH=XOAUTH2",
	                 "C ^(\\S+) AUTHENTICATE XOAUTH2 "
	                 "dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sBAQ==$\n");
}

static void
test_command_timeout(void **state)
{
	Fake f;
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = preauth_session(&f,
	                              "C ^(\\S+) NOOP$\n"
	                              "SLEEP 8000\n"
	                              "CLOSE\n",
	                              1000);

	assert_int_equal(imap_noop(c, &err), IMAP_ETIMEOUT);
	fake_end(&f, c);
}

/* ------------------------------------------- readers sharing a connection */

typedef struct {
	ImapPool *pool;
	guint32 uid;
	GString *got;
	ImapStatus st;
} Reader;

static gboolean
reader_write(void *ctx, const char *data, gsize len)
{
	g_string_append_len(ctx, data, (gssize)len);
	return TRUE;
}

static gpointer
shared_reader(gpointer data)
{
	Reader *r = data;
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_pool_acquire_shared(r->pool, "INBOX", &err);
	guint64 total = 0;

	if (c == NULL) {
		r->st = err->status;
		return NULL;
	}
	r->st = imap_uid_fetch_body(c, "INBOX", r->uid, 0, 100, reader_write,
	                            r->got, &total, &err);
	imap_pool_release(r->pool, c);
	return NULL;
}

/* With every connection of a full pool held, two body readers join the
 * one that has their mailbox selected and have their UID FETCHes in
 * flight together. The server puts each UID after its literal, so no
 * literal can be claimed before its owner is known: each reader must
 * still get exactly its own message's bytes. */
static void
test_shared_readers_uid_last(void **state)
{
	Fake f = fake_start("S * PREAUTH [CAPABILITY IMAP4rev1] hi\n"
	                    "C ^(\\S+) SELECT INBOX$\n"
	                    "S * 2 EXISTS\n"
	                    "S * OK [UIDVALIDITY 7] ok\n"
	                    "S * OK [UIDNEXT 3] ok\n"
	                    "S $TAG OK [READ-WRITE] selected\n"
	                    "C ^(?P<t1>\\S+) UID FETCH [12] \\(UID "
	                    "BODY\\.PEEK\\[\\]<0\\.100>\\)$\n"
	                    "C ^(?P<t2>\\S+) UID FETCH [12] \\(UID "
	                    "BODY\\.PEEK\\[\\]<0\\.100>\\)$\n"
	                    "S * 1 FETCH (BODY[]<0> {5}\\r\\nAAAAA UID 1)\n"
	                    "S * 2 FETCH (BODY[]<0> {6}\\r\\nBBBBBB UID 2)\n"
	                    "S $t1 OK done\n"
	                    "S $t2 OK done\n"
	                    "C ^(\\S+) LOGOUT$\n"
	                    "S * BYE bye\n"
	                    "S $TAG OK bye\n"
	                    "CLOSE\n");
	ImapConnectOptions o = fake_options(&f, IMAP_TLS_NONE);
	ImapCredentials cred = {IMAP_AUTH_AUTO, "alice", "secret"};
	ImapPool *pool = imap_pool_new(&o, &cred, 1, NULL, NULL);
	g_autoptr(ImapError) err = NULL;
	Reader r[2] = {{pool, 1, g_string_new(NULL), IMAP_EPROTO},
	               {pool, 2, g_string_new(NULL), IMAP_EPROTO}};
	GThread *t[2];
	ImapConn *c = imap_pool_acquire_shared(pool, "INBOX", &err);
	guint open, idle, max;

	assert_non_null(c);
	/* Held with INBOX selected: the readers can join it. */
	assert_int_equal(imap_conn_use_mailbox(c, "INBOX", NULL, NULL, &err),
	                 IMAP_OK);
	for (int i = 0; i < 2; i++)
		t[i] = g_thread_new("reader", shared_reader, &r[i]);
	for (int i = 0; i < 2; i++)
		g_thread_join(t[i]);
	assert_int_equal(imap_conn_holders(c), 1);
	imap_conn_release_mailbox(c);
	imap_pool_release(pool, c);
	assert_int_equal(r[0].st, IMAP_OK);
	assert_int_equal(r[1].st, IMAP_OK);
	assert_string_equal(r[0].got->str, "AAAAA");
	assert_string_equal(r[1].got->str, "BBBBBB");
	imap_pool_counts(pool, &open, &idle, &max);
	assert_int_equal(open, 1);
	assert_int_equal(idle, 1);
	imap_pool_free(pool);
	g_string_free(r[0].got, TRUE);
	g_string_free(r[1].got, TRUE);
	fake_finish(&f);
}

/* One of two fetches whose literals cannot be told apart when they start;
 * the first takes its tag, then waits until released before it is sent. */
typedef struct {
	ImapConn *c;
	guint32 uid;
	ImapCmdHooks hooks;
	GString *got;
	ImapStatus st;
	GMutex lock;
	GCond cond;
	gboolean tagged, released;
} Fetch;

static void
fetch_end(void *ctx, gboolean ok)
{
}

/* Takes the first FETCH literal offered, as a reader that learns the UID
 * only after the literal must. */
static gboolean
fetch_take_any(void *user, const ImapLiteralInfo *info, ImapLiteralSink *sink)
{
	Fetch *f = user;

	if (f->got->len > 0)
		return FALSE;
	sink->write = reader_write;
	sink->end = fetch_end;
	sink->ctx = f->got;
	return TRUE;
}

static void
fetch_hold(void *user, const char *tag)
{
	Fetch *f = user;

	g_mutex_lock(&f->lock);
	f->tagged = TRUE;
	g_cond_broadcast(&f->cond);
	while (!f->released)
		g_cond_wait(&f->cond, &f->lock);
	g_mutex_unlock(&f->lock);
}

static ImapCmd *
fetch_cmd(Fetch *f)
{
	ImapCmd *cmd = imap_cmd_new("UID FETCH");

	imap_cmd_number(cmd, f->uid);
	imap_cmd_raw(cmd, "(UID BODY.PEEK[])");
	return cmd;
}

static gpointer
held_fetch(gpointer data)
{
	Fetch *f = data;

	f->hooks = (ImapCmdHooks){.literal_start = fetch_take_any,
	                          .tagged_as = fetch_hold,
	                          .user = f};
	f->st = imap_conn_run(f->c, fetch_cmd(f), &f->hooks, NULL, NULL);
	return NULL;
}

/* Two threads fetch on one connection; the one that took the first tag
 * reaches the socket second: before the server answers the other
 * (SENT_BEFORE_REPLIES), or after. Untagged data carries no tag: the server
 * answers in the order commands reached it, so each literal belongs to the
 * earliest command sent, never to one tagged earlier or not sent yet. */
static void
fetch_out_of_tag_order(const char *script, gboolean sent_before_replies)
{
	Fake fake;
	ImapConn *c = preauth_session(&fake, script, 0);
	Fetch first = {.c = c, .uid = 1, .got = g_string_new(NULL)};
	Fetch second = {.c = c,
	                .uid = 2,
	                .hooks = {.literal_start = fetch_take_any},
	                .got = g_string_new(NULL)};
	g_autoptr(ImapError) err = NULL;
	GThread *t = g_thread_new("held", held_fetch, &first);
	ImapPending *p;

	second.hooks.user = &second;
	g_mutex_lock(&first.lock);
	while (!first.tagged)
		g_cond_wait(&first.cond, &first.lock);
	g_mutex_unlock(&first.lock);
	p = imap_conn_send(c, fetch_cmd(&second), &second.hooks, &err);
	assert_non_null(p);
	if (!sent_before_replies)
		assert_int_equal(imap_conn_await(c, p, NULL, &err), IMAP_OK);
	g_mutex_lock(&first.lock);
	first.released = TRUE;
	g_cond_broadcast(&first.cond);
	g_mutex_unlock(&first.lock);
	if (sent_before_replies)
		assert_int_equal(imap_conn_await(c, p, NULL, &err), IMAP_OK);
	g_thread_join(t);
	assert_int_equal(first.st, IMAP_OK);
	assert_string_equal(second.got->str, "SECOND");
	assert_string_equal(first.got->str, "FIRST");
	g_string_free(first.got, TRUE);
	g_string_free(second.got, TRUE);
	fake_end(&fake, c);
}

#define FETCH_2_SENT                                                           \
	"C ^(?P<t2>\\S+) UID FETCH 2 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
#define FETCH_2_ANSWERED                                                       \
	"S * 2 FETCH (UID 2 BODY[] {6}\\r\\nSECOND)\n"                         \
	"S $t2 OK done\n"
#define FETCH_1_SENT                                                           \
	"C ^(?P<t1>\\S+) UID FETCH 1 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
#define FETCH_1_ANSWERED                                                       \
	"S * 1 FETCH (UID 1 BODY[] {5}\\r\\nFIRST)\n"                          \
	"S $t1 OK done\n"
#define LOGOUT_ANSWERED                                                        \
	"C ^(\\S+) LOGOUT$\n"                                                  \
	"S * BYE bye\n"                                                        \
	"S $TAG OK bye\n"                                                      \
	"CLOSE\n"

static void
test_untagged_data_skips_unsent(void **state)
{
	fetch_out_of_tag_order(FETCH_2_SENT FETCH_2_ANSWERED FETCH_1_SENT
	                           FETCH_1_ANSWERED LOGOUT_ANSWERED,
	                       FALSE);
}

static void
test_untagged_data_follows_wire_order(void **state)
{
	fetch_out_of_tag_order(FETCH_2_SENT FETCH_1_SENT FETCH_2_ANSWERED
	                           FETCH_1_ANSWERED LOGOUT_ANSWERED,
	                       TRUE);
}

int
main(void)
{
	const struct CMUnitTest server_tests[] = {
	    cmocka_unit_test(test_implicit_tls_trusted),
	    cmocka_unit_test(test_implicit_tls_untrusted),
	    cmocka_unit_test(test_implicit_tls_other_ca),
	    cmocka_unit_test(test_tls_wrong_host_name),
	    cmocka_unit_test(test_starttls_trusted),
	    cmocka_unit_test(test_starttls_untrusted),
	    cmocka_unit_test(test_pinned_fingerprint),
	    cmocka_unit_test(test_plain_tcp_login),
	    cmocka_unit_test(test_wrong_password),
	    cmocka_unit_test(test_login_rejects_crlf),
	    cmocka_unit_test(test_pipelined_threads),
	    cmocka_unit_test(test_idle_sees_new_mail),
	};
	const struct CMUnitTest scripted_tests[] = {
	    cmocka_unit_test(test_starttls_missing_refused),
	    cmocka_unit_test(test_preauth_refused_when_tls_required),
	    cmocka_unit_test(test_starttls_injection_refused),
	    cmocka_unit_test(test_bye_greeting),
	    cmocka_unit_test(test_greeting_timeout),
	    cmocka_unit_test(test_plain_without_sasl_ir),
	    cmocka_unit_test(test_xoauth2_error_challenge),
	    cmocka_unit_test(test_oauthbearer_caps_from_ok),
	    cmocka_unit_test(test_sync_literal_waits_for_continuation),
	    cmocka_unit_test(test_refused_literal_not_sent),
	    cmocka_unit_test(test_bye_mid_command),
	    cmocka_unit_test(test_bad_distinct_from_no),
	    cmocka_unit_test(test_unsolicited_reported),
	    cmocka_unit_test(test_xoauth2_login),
	    cmocka_unit_test(test_command_timeout),
	    cmocka_unit_test(test_shared_readers_uid_last),
	    cmocka_unit_test(test_untagged_data_skips_unsent),
	    cmocka_unit_test(test_untagged_data_follows_wire_order),
	    cmocka_unit_test(test_stale_session_abandoned),
	};
	int failed = 0;

	/* The scripted servers are the same whatever IMAP_SERVER says: only
	 * the Dovecot run (int-conn) plays them. */
	if (test_server_kind() == TEST_SERVER_DOVECOT)
		failed += cmocka_run_group_tests_name(
		    "conn-scripted", scripted_tests, scripted_setup,
		    scripted_teardown);
	failed += cmocka_run_group_tests_name("conn", server_tests, group_setup,
	                                      group_teardown);
	return failed;
}
