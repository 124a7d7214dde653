/* test_tls.c - certificate and protocol checks of the TLS transport against
 * scripted servers: expired, wrong-host and self-signed certificates must be
 * refused, a pinned self-signed one and a good one accepted, a server
 * that speaks at most TLS 1.1 refused, and a corrupt record reported as
 * such. Needs openssl and python3, not root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netdb.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "imap/conn.h"

/* Makes, next to the harness's CA and good server certificate, three more
 * with OpenSSL's "ca" command (the one that can set dates in the past). */
static const char make_certs_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "export SAN=DNS:localhost\n"
    "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
    "mkdir -p ca-db\n"
    ": >ca-db/index.txt\n"
    "echo 1000 >ca-db/serial\n"
    "cat >ca.cnf <<'CNF'\n"
    "[ca]\n"
    "default_ca = test_ca\n"
    "[test_ca]\n"
    "database = ca-db/index.txt\n"
    "new_certs_dir = ca-db\n"
    "serial = ca-db/serial\n"
    "default_md = sha256\n"
    "policy = any\n"
    "unique_subject = no\n"
    "[any]\n"
    "commonName = supplied\n"
    "[leaf]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = $ENV::SAN\n"
    "[req]\n"
    "distinguished_name = dn\n"
    "[dn]\n"
    "CNF\n"
    "sign() {\n"
    "  openssl req -config ca.cnf -new $ec -subj \"/CN=$2\" "
    "-keyout $1.key -out $1.csr 2>/dev/null\n"
    "  shift 2\n"
    "  openssl ca -batch -config ca.cnf -cert certs/ca.pem "
    "-keyfile certs/ca.key -extensions leaf -notext \"$@\" 2>/dev/null\n"
    "}\n"
    "SAN='DNS:localhost, IP:127.0.0.1' sign expired localhost "
    "-in expired.csr -out expired.pem "
    "-startdate 20200101000000Z -enddate 20200201000000Z\n"
    "SAN=DNS:mail.example.org sign wronghost mail.example.org "
    "-in wronghost.csr -out wronghost.pem -days 30\n"
    "openssl req -config ca.cnf -x509 $ec -days 30 -subj /CN=localhost "
    "-addext subjectAltName=DNS:localhost "
    "-keyout selfsigned.key -out selfsigned.pem 2>/dev/null\n"
    "for c in selfsigned certs/server; do\n"
    "  openssl x509 -in $c.pem -noout -fingerprint -sha256 | "
    "sed 's/.*=//' >$c.sha256\n"
    "done\n";

/* Serves implicit TLS with at most TLS 1.1 (and the low security level
 * such old versions need) to two connections, printing per connection
 * "ok VERSION" or "refused". */
static const char tls11_server_script[] =
    "import signal, socket, ssl, sys, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "signal.alarm(30)\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.minimum_version = ssl.TLSVersion.TLSv1\n"
    "ctx.maximum_version = ssl.TLSVersion.TLSv1_1\n"
    "ctx.set_ciphers('DEFAULT:@SECLEVEL=0')\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "ls = socket.socket()\n"
    "ls.bind(('127.0.0.1', 0))\n"
    "ls.listen(2)\n"
    "print('PORT=%d' % ls.getsockname()[1], flush=True)\n"
    "for _ in range(2):\n"
    "    c, _ = ls.accept()\n"
    "    c.settimeout(10)\n"
    "    try:\n"
    "        s = ctx.wrap_socket(c, server_side=True)\n"
    "    except (OSError, ssl.SSLError):\n"
    "        print('refused', flush=True)\n"
    "        c.close()\n"
    "        continue\n"
    "    print('ok', s.version(), flush=True)\n"
    "    try:\n"
    "        s.sendall(b'* OK [CAPABILITY IMAP4rev1] hi\\r\\n')\n"
    "        while s.recv(4096):\n"
    "            pass\n"
    "    except OSError:\n"
    "        pass\n"
    "    s.close()\n";

/* Implicit TLS: after the handshake, sends the greeting and a second
 * record whose last byte (the AEAD tag's) is flipped, both in one write,
 * so that the client reads them together. Prints "sent" once done. */
static const char bad_record_server_script[] =
    "import signal, socket, ssl, sys\n"
    "signal.alarm(30)\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "ls = socket.socket()\n"
    "ls.bind(('127.0.0.1', 0))\n"
    "ls.listen(1)\n"
    "print('PORT=%d' % ls.getsockname()[1], flush=True)\n"
    "c, _ = ls.accept()\n"
    "inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()\n"
    "s = ctx.wrap_bio(inc, out, server_side=True)\n"
    "while True:\n"
    "    try:\n"
    "        s.do_handshake()\n"
    "        break\n"
    "    except ssl.SSLWantReadError:\n"
    "        c.sendall(out.read())\n"
    "        data = c.recv(65536)\n"
    "        if not data:\n"
    "            sys.exit(1)\n"
    "        inc.write(data)\n"
    "head = out.read()\n"
    "s.write(b'* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\\r\\n')\n"
    "good = out.read()\n"
    "s.write(b'* OK never seen\\r\\n')\n"
    "bad = bytearray(out.read())\n"
    "bad[-1] ^= 1\n"
    "c.sendall(head + good + bytes(bad))\n"
    "print('sent', flush=True)\n"
    "try:\n"
    "    while c.recv(4096):\n"
    "        pass\n"
    "except OSError:\n"
    "    pass\n";

static TestCerts *certs;

static char *
cert_path(const char *name)
{
	return g_build_filename(certs->dir, name, NULL);
}

static int
group_setup(void **state)
{
	char *argv[] = {"bash", "-c", (char *)make_certs_script,
	                "bash", NULL, NULL};
	g_autoptr(GError) error = NULL;
	int status = -1;

	certs = test_certs_make();
	argv[4] = certs->dir;
	if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
	                  NULL, NULL, &status, &error) ||
	    !g_spawn_check_wait_status(status, NULL)) {
		fprintf(stderr, "making test certificates failed: %s\n",
		        error != NULL ? error->message : "script failed");
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	test_certs_free(certs);
	return 0;
}

static char *
read_fingerprint(const char *name)
{
	g_autofree char *path = cert_path(name);
	char *text = NULL;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		fail_msg("cannot read %s", path);
	g_strstrip(text);
	assert_int_equal(strlen(text), 32 * 3 - 1);
	return text;
}

/* A server that upgrades with STARTTLS using cert/key, then answers
 * CAPABILITY and LOGOUT. A client that refuses the certificate ends the
 * script early, which fakeserver reports. */
static FakeServer *
starttls_server(const char *cert, const char *key)
{
	g_autofree char *cert_file = cert_path(cert);
	g_autofree char *key_file = cert_path(key);
	g_autofree char *script = g_strdup_printf(
	    "S * OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\n"
	    "C ^(\\S+) STARTTLS$\n"
	    "S $TAG OK Begin TLS\n"
	    "STARTTLS %s %s\n"
	    "C ^(\\S+) CAPABILITY$\n"
	    "S * CAPABILITY IMAP4rev1 AUTH=PLAIN X-AFTER-TLS\n"
	    "S $TAG OK done\n"
	    "C ^(\\S+) LOGOUT$\n"
	    "S * BYE bye\n"
	    "S $TAG OK done\n"
	    "EOF\n",
	    cert_file, key_file);

	return fake_server_start(script);
}

static ImapConnectOptions
options_for(const char *port, ImapTlsMode mode, const char *ca_file,
            const char *fingerprint)
{
	ImapConnectOptions o = {
	    .host = "127.0.0.1",
	    .port = port,
	    .tls = mode,
	    .timeout_ms = 10000,
	    .debug = g_getenv("IMAP_DEBUG") != NULL,
	};

	o.tls_opts.ca_file = ca_file;
	o.tls_opts.server_name = "localhost";
	o.tls_opts.fingerprint = fingerprint;
	return o;
}

/* The handshake with cert must succeed and the session go on over TLS. */
static void
expect_accepted(const char *cert, const char *key, const char *ca_file,
                const char *fingerprint)
{
	FakeServer *f = starttls_server(cert, key);
	ImapConnectOptions o =
	    options_for(f->port, IMAP_TLS_STARTTLS, ca_file, fingerprint);
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	if (c == NULL)
		fail_msg("connect with %s: %s", cert, err->text);
	/* Capabilities re-read over TLS replace the plain-text ones. */
	assert_true(imap_conn_has_cap(c, "X-AFTER-TLS"));
	assert_false(imap_conn_has_cap(c, "STARTTLS"));
	imap_conn_close(c);
	assert_int_equal(fake_server_finish(f), 0);
}

/* The client must refuse cert with IMAP_ETLS, saying why (needle). */
static void
expect_refused(const char *cert, const char *key, const char *ca_file,
               const char *fingerprint, const char *needle)
{
	FakeServer *f = starttls_server(cert, key);
	ImapConnectOptions o =
	    options_for(f->port, IMAP_TLS_STARTTLS, ca_file, fingerprint);
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	if (c != NULL) {
		imap_conn_close(c);
		fake_server_finish(f);
		fail_msg("certificate %s was accepted", cert);
	}
	assert_non_null(err);
	assert_int_equal(err->status, IMAP_ETLS);
	if (strstr(err->text, needle) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err->text, needle);
	/* The server never got to CAPABILITY: 3 if the handshake itself
	 * failed, 1 if the client hung up right after it. */
	assert_int_not_equal(fake_server_finish(f), 0);
}

/* A connection cut during the handshake is a lost connection (retried by
 * callers), not a TLS failure: the server reads the ClientHello and hangs
 * up. A certificate problem stays IMAP_ETLS (the tests above). */
static void
test_cut_during_handshake(void **state)
{
	FakeServer *f = fake_server_start(
	    "S * OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\n"
	    "C ^(\\S+) STARTTLS$\n"
	    "S $TAG OK Begin TLS\n"
	    "SLEEP 200\n"
	    "CLOSE\n");
	ImapConnectOptions o =
	    options_for(f->port, IMAP_TLS_STARTTLS, certs->ca_file, NULL);
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_conn_connect(&o, &err);

	if (c != NULL) {
		imap_conn_close(c);
		fake_server_finish(f);
		fail_msg("a handshake cut short succeeded");
	}
	assert_non_null(err);
	if (err->status != IMAP_EEOF)
		fail_msg("status %s (%s), expected EEOF",
		         imap_status_name(err->status), err->text);
	assert_non_null(strstr(err->text, "during the TLS handshake"));
	assert_int_equal(fake_server_finish(f), 0);
}

static void
test_good_certificate(void **state)
{
	expect_accepted("certs/server.pem", "certs/server.key", certs->ca_file,
	                NULL);
}

static void
test_expired_certificate(void **state)
{
	expect_refused("expired.pem", "expired.key", certs->ca_file, NULL,
	               "expired");
}

static void
test_wrong_host_certificate(void **state)
{
	expect_refused("wronghost.pem", "wronghost.key", certs->ca_file, NULL,
	               "hostname mismatch");
}

static void
test_self_signed_unpinned(void **state)
{
	expect_refused("selfsigned.pem", "selfsigned.key", certs->ca_file, NULL,
	               "self-signed");
}

static void
test_untrusted_ca(void **state)
{
	/* The good certificate, but only an unrelated CA is trusted. */
	expect_refused("certs/server.pem", "certs/server.key",
	               certs->other_ca_file, NULL,
	               "certificate verification failed");
}

static void
test_self_signed_pinned(void **state)
{
	g_autofree char *hex = read_fingerprint("selfsigned.sha256");
	g_autofree char *pin = g_strconcat("sha256:", hex, NULL);
	g_autofree char *lower = g_ascii_strdown(pin, -1);

	/* No CA at all: the pin alone must do. */
	expect_accepted("selfsigned.pem", "selfsigned.key", NULL, pin);
	expect_accepted("selfsigned.pem", "selfsigned.key", NULL, lower);
}

static void
test_pin_mismatch_refused(void **state)
{
	g_autofree char *hex = read_fingerprint("certs/server.sha256");
	g_autofree char *pin = g_strconcat("sha256:", hex, NULL);
	g_autofree char *self_hex = read_fingerprint("selfsigned.sha256");
	g_autofree char *short_pin = NULL;

	/* Pinned to another certificate. */
	expect_refused("selfsigned.pem", "selfsigned.key", NULL, pin,
	               "does not match");
	/* A pin overrides the CA: a chain that would verify is not enough. */
	expect_refused("certs/server.pem", "certs/server.key", certs->ca_file,
	               "sha256:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
	               "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
	               "does not match");
	/* A prefix of the right fingerprint is not the fingerprint. */
	short_pin = g_strndup(self_hex, 3 * 16 - 1);
	g_free(pin);
	pin = g_strconcat("sha256:", short_pin, NULL);
	expect_refused("selfsigned.pem", "selfsigned.key", NULL, pin,
	               "does not match");
}

/* A plain OpenSSL client allowing TLS 1.0-1.1: proves the server really
 * speaks TLS 1.1, so that a refusal by imap/ means something. */
static char *
old_tls_handshake(const char *port)
{
	struct addrinfo hints = {.ai_family = AF_INET,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	char *version = NULL;
	int fd;

	assert_non_null(ctx);
	assert_int_equal(getaddrinfo("127.0.0.1", port, &hints, &ai), 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, ai->ai_addr, ai->ai_addrlen), 0);
	freeaddrinfo(ai);
	SSL_CTX_set_security_level(ctx, 0);
	SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) == 1)
		version = g_strdup(SSL_get_version(ssl));
	SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return version;
}

static char *
read_line(FILE *f)
{
	char buf[256];

	if (fgets(buf, sizeof(buf), f) == NULL)
		return g_strdup("");
	return g_strdup(g_strchomp(buf));
}

/* A Python TLS server (script) started with the harness's server
 * certificate and key, once it printed its port. */
typedef struct {
	GPid pid;
	FILE *out; /* what it prints, a line per event */
	char *port;
} PyServer;

static void
py_server_start(PyServer *srv, const char *script, const char *what)
{
	g_autofree char *cert = cert_path("certs/server.pem");
	g_autofree char *key = cert_path("certs/server.key");
	char *argv[] = {"python3", "-c", (char *)script, cert, key, NULL};
	g_autoptr(GError) error = NULL;
	g_autofree char *port_line = NULL;
	int out_fd;

	if (!g_spawn_async_with_pipes(
	        NULL, argv, NULL,
	        G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
	        &srv->pid, NULL, &out_fd, NULL, &error))
		fail_msg("cannot start python3: %s", error->message);
	srv->out = fdopen(out_fd, "r");
	assert_non_null(srv->out);
	port_line = read_line(srv->out);
	if (!g_str_has_prefix(port_line, "PORT=")) {
		kill(srv->pid, SIGKILL);
		waitpid(srv->pid, NULL, 0);
		fail_msg("%s did not start: \"%s\"", what, port_line);
	}
	srv->port = g_strdup(port_line + 5);
}

/* Waits for the server's end (killing it first if kill_it); its wait
 * status. */
static int
py_server_finish(PyServer *srv, gboolean kill_it)
{
	int status = -1;

	if (kill_it)
		kill(srv->pid, SIGKILL);
	fclose(srv->out);
	waitpid(srv->pid, &status, 0);
	g_spawn_close_pid(srv->pid);
	g_free(srv->port);
	return status;
}

static void
test_tls11_refused(void **state)
{
	g_autoptr(ImapError) err = NULL;
	g_autofree char *control = NULL, *seen1 = NULL, *seen2 = NULL;
	ImapConnectOptions o;
	ImapConn *c;
	PyServer srv;
	int status;

	py_server_start(&srv, tls11_server_script, "TLS 1.1 server");
	control = old_tls_handshake(srv.port);
	seen1 = read_line(srv.out);
	o = options_for(srv.port, IMAP_TLS_IMPLICIT, certs->ca_file, NULL);
	c = imap_conn_connect(&o, &err);
	if (c != NULL)
		imap_conn_close(c);
	seen2 = read_line(srv.out);
	status = py_server_finish(&srv, FALSE);

	if (control == NULL || strcmp(control, "TLSv1.1") != 0)
		skip(); /* this OpenSSL cannot speak TLS 1.1 at all */
	assert_string_equal(seen1, "ok TLSv1.1");
	assert_null(c);
	assert_int_equal(err->status, IMAP_ETLS);
	assert_string_equal(seen2, "refused");
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A record that fails to decrypt, read in the same read(2) as the good
 * one before it: the good one is parsed, then the connection fails as a
 * TLS failure that says why (not as a server that hung up). Should TCP
 * deliver the two records apart (not seen on loopback), the bad one is met
 * by a plain read instead, and the test passes without testing the
 * drain. */
static void
test_bad_record_after_good(void **state)
{
	g_autoptr(ImapError) err = NULL;
	g_autoptr(ImapError) failure = NULL;
	g_autofree char *sent = NULL;
	ImapConnectOptions o;
	ImapConn *c;
	PyServer srv;

	py_server_start(&srv, bad_record_server_script, "bad-record server");
	o = options_for(srv.port, IMAP_TLS_IMPLICIT, certs->ca_file, NULL);
	c = imap_conn_connect(&o, &err);
	sent = read_line(srv.out);
	if (c == NULL) {
		py_server_finish(&srv, TRUE);
		fail_msg("connect: %s", err->text);
	}
	/* The greeting came through. */
	assert_true(imap_conn_has_cap(c, "AUTH=PLAIN"));
	for (int i = 0; i < 1000 && imap_conn_is_alive(c); i++)
		g_usleep(10 * 1000);
	assert_false(imap_conn_is_alive(c));
	failure = imap_conn_failure(c);
	imap_conn_close(c);
	py_server_finish(&srv, TRUE);

	assert_string_equal(sent, "sent");
	assert_non_null(failure);
	if (strstr(failure->text, "TLS read failed") == NULL ||
	    strstr(failure->text, "bad record mac") == NULL)
		fail_msg("failure \"%s\" is not the bad record", failure->text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_certificate),
	    cmocka_unit_test(test_cut_during_handshake),
	    cmocka_unit_test(test_expired_certificate),
	    cmocka_unit_test(test_wrong_host_certificate),
	    cmocka_unit_test(test_self_signed_unpinned),
	    cmocka_unit_test(test_untrusted_ca),
	    cmocka_unit_test(test_self_signed_pinned),
	    cmocka_unit_test(test_pin_mismatch_refused),
	    cmocka_unit_test(test_tls11_refused),
	    cmocka_unit_test(test_bad_record_after_good),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
