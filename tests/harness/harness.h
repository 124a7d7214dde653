/* harness.h - starts a throwaway Dovecot (or, with IMAP_SERVER=cyrus in the
 * environment, Cyrus IMAP) on loopback for integration tests and gives an
 * independent IMAP client (Python's imaplib) to check what the server really
 * holds. */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

#include <glib.h>

/* Which server test_server_start() runs: tests/harness/dovecot.sh or
 * tests/harness/cyrus.sh (same interface). */
typedef enum {
	TEST_SERVER_DOVECOT,
	TEST_SERVER_CYRUS,
} TestServerKind;

typedef struct {
	char *dir;           /* temp dir holding config, mail, certs, logs */
	char *host;          /* "127.0.0.1" */
	char *port;          /* plain/STARTTLS listener */
	char *tls_port;      /* implicit TLS listener */
	char *user;          /* "alice" */
	char *password;      /* her password */
	char *ca_file;       /* PEM of the CA that signed the server cert */
	char *cert_name;     /* host name in the cert ("localhost") */
	char *other_ca_file; /* a second CA that signed nothing of ours */
	TestServerKind kind;
	char delimiter; /* of mailbox names: '/' (Dovecot), '.' (Cyrus) */
} TestServer;

typedef struct {
	/* Replaces imap_capability (e.g. "IMAP4rev1 LITERAL+" to hide
	 * UIDPLUS, MOVE, CONDSTORE, QRESYNC). NULL: Dovecot's defaults.
	 * Dovecot only (test_server_start() fails the test with Cyrus). */
	const char *capability;
	/* Extra dovecot.conf lines appended verbatim. Dovecot only. */
	const char *extra_conf;
	/* Quota limit for STORAGE in KiB (0: no quota plugin). */
	guint64 quota_kb;
} TestServerOptions;

/* The server IMAP_SERVER asks for: unset, empty or "dovecot" is Dovecot,
 * "cyrus" is Cyrus; anything else exits the process with 2. */
TestServerKind test_server_kind(void);
/* "Dovecot" or "Cyrus", for messages. */
const char *test_server_kind_name(TestServerKind kind);

/* Starts the server test_server_kind() names (opts may be NULL). If not
 * root or the server is missing, prints why and exits the process with 77
 * (meson's "skipped"). On any other failure aborts the test with the log. */
TestServer *test_server_start(const TestServerOptions *opts);
/* Stops the server, waits until no process of it remains, removes dir. */
void test_server_stop(TestServer *s);

/* Runs tests/harness/imapcheck.py against the server with the given
 * arguments (a NULL-terminated list) and returns its stdout (aborts the
 * test if it exits non-zero). Commands it understands are documented at
 * the top of imapcheck.py, e.g.
 *   append MAILBOX FILE [FLAGS]      -> prints the new UID
 *   uids MAILBOX                      -> one UID per line
 *   flags MAILBOX UID                 -> flags, space separated, sorted
 *   fetch MAILBOX UID                 -> BODY[] bytes on stdout
 *   list                              -> one UTF-8 mailbox name per line
 *   create MAILBOX / delete MAILBOX
 *   store MAILBOX UID FLAGS          (replace flags)
 *   expunge MAILBOX                  (plain EXPUNGE, as another client)
 *   status MAILBOX                    -> "messages N uidnext N uidvalidity N"
 */
char *test_server_check(TestServer *s, ...) G_GNUC_NULL_TERMINATED;
/* Like test_server_check() but returns the exit status and captures
 * stdout into *out (may be NULL). */
int test_server_check_status(TestServer *s, char **out,
                             ...) G_GNUC_NULL_TERMINATED;
/* Appends message bytes to mailbox through the independent client;
 * returns the UID assigned. */
guint32 test_server_append(TestServer *s, const char *mailbox,
                           const char *message, gsize len, const char *flags);

/* Additions for hostile-server tests (no root needed). */

/* A running tests/harness/fakeserver.py; its script format is documented
 * at the top of that file. */
typedef struct {
	GPid pid;
	char *port; /* where it listens on 127.0.0.1 */
	char *dir;  /* temp dir that held the script (removed once
	             * fakeserver.py has read it) */
	char *script_path;
} FakeServer;

/* Writes script to a temp file, starts fakeserver.py on it and returns
 * once it listens (it accepts one connection, bounded to 30 s). */
FakeServer *fake_server_start(const char *script);
/* Waits for it to finish, frees it and returns its exit status: 0 if the
 * whole script played, 1 if the client sent something unexpected or closed
 * early, 2 if the script is malformed, 3 if the TLS handshake failed, 4 on
 * timeout. */
int fake_server_finish(FakeServer *f);

/* A CA, a server certificate for "localhost"/127.0.0.1 it signed, and an
 * unrelated CA, made in a fresh temp dir (for fakeserver's STARTTLS). */
typedef struct {
	char *dir;
	char *ca_file;
	char *other_ca_file;
	char *cert_file;
	char *key_file;
	char *cert_name; /* "localhost" */
} TestCerts;

TestCerts *test_certs_make(void);
/* Removes the files and frees c. */
void test_certs_free(TestCerts *c);

#endif
