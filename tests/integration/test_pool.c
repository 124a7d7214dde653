/* test_pool.c - the connection pool against a real Dovecot when the secret
 * goes stale under it: a password changed on the server, an OAuth2 access
 * token (a JWT Dovecot validates itself) that expires. The pool must ask
 * its secret source again, once for all connections, and only for a secret
 * that had worked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "harness.h"
#include "imap/conn.h"
#include "imap/pool.h"

/* A failed login costs nothing here: the checks fail on purpose. */
#define NO_DELAY "auth_failure_delay = 0\n"

static TestServer *server;

/* What the pool's secret source hands out, and how often it was asked. */
typedef struct {
	GMutex lock;
	char *next;
	guint calls;
	char *(*mint)(void); /* when set, makes each new secret */
} Source;

static char *
source_renew(void *user, ImapError **err)
{
	Source *src = user;
	char *s;

	g_mutex_lock(&src->lock);
	src->calls++;
	s = src->mint != NULL ? src->mint() : g_strdup(src->next);
	g_mutex_unlock(&src->lock);
	if (s == NULL)
		imap_error_set(err, IMAP_EAUTH, 0, "no secret to give");
	return s;
}

static int
group_setup(void **state)
{
	TestServerOptions opts = {.extra_conf = NO_DELAY};

	server = test_server_start(&opts);
	return server == NULL;
}

static int
group_teardown(void **state)
{
	test_server_stop(server);
	return 0;
}

static ImapConnectOptions
options(TestServer *s)
{
	ImapConnectOptions o = {
	    .host = s->host,
	    .port = s->tls_port,
	    .tls = IMAP_TLS_IMPLICIT,
	    .timeout_ms = 10000,
	    .debug = g_getenv("IMAP_DEBUG") != NULL,
	};
	o.tls_opts.ca_file = s->ca_file;
	o.tls_opts.server_name = s->cert_name;
	return o;
}

/* Gives alice the password on the server. Rewritten in place (the file's
 * owner and mode let Dovecot read it); Dovecot rereads it when its size or
 * mtime changes, so every password used here has a different length. */
static void
set_server_password(const char *password)
{
	g_autofree char *path = g_build_filename(server->dir, "passwd", NULL);
	g_autofree char *old = NULL;
	g_autofree char *line = NULL;
	char *rest;
	FILE *f;

	assert_true(g_file_get_contents(path, &old, NULL, NULL));
	rest = strchr(strchr(old, ':') + 1, ':');
	line = g_strdup_printf("%s:%s%s", server->user, password, rest);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(line, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* set_server_password, then waits for Dovecot to see the file: it looks
 * at it at most once a second. (Polling with logins would not be quicker:
 * each refused one delays the next by seconds, Dovecot's auth penalty.) */
static void
change_password(const char *password)
{
	set_server_password(password);
	g_usleep(G_USEC_PER_SEC * 11 / 10);
}

/* Takes one connection and gives it back; the pool's error status. */
static ImapStatus
use_once(ImapPool *pool)
{
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_pool_acquire(pool, NULL, &err);

	if (c == NULL)
		return err->status;
	imap_pool_release(pool, c);
	return IMAP_OK;
}

static ImapPool *
pool_with_source(TestServer *s, ImapAuthMech mech, const char *secret,
                 guint max_conns, Source *src)
{
	ImapConnectOptions o = options(s);
	ImapCredentials cred = {mech, s->user, secret};
	ImapPool *pool = imap_pool_new(&o, &cred, max_conns, NULL, NULL);

	imap_pool_set_secret_source(pool, source_renew, src);
	return pool;
}

/* A pool with alice's password that logged in once, then the password
 * changed on the server to `changed` and the pool's idle connections
 * dropped: the next login must be refused the old one. */
static ImapPool *
pool_before_change(guint max_conns, Source *src, const char *changed)
{
	ImapPool *pool = pool_with_source(server, IMAP_AUTH_PLAIN,
	                                  server->password, max_conns, src);

	assert_int_equal(use_once(pool), IMAP_OK);
	change_password(changed);
	imap_pool_drain(pool);
	return pool;
}

/* The password is changed on the server while the mount runs: the next
 * connection is refused the old one, asks the source, and logs in. */
static void
test_changed_password_renewed(void **state)
{
	g_autofree char *changed =
	    g_strconcat("renewed-", server->password, NULL);
	Source src = {.next = changed};
	ImapPool *pool = pool_before_change(1, &src, changed);

	assert_int_equal(use_once(pool), IMAP_OK);
	assert_int_equal(src.calls, 1);
	/* The new one is kept: no more asking. */
	imap_pool_drain(pool);
	assert_int_equal(use_once(pool), IMAP_OK);
	assert_int_equal(src.calls, 1);
	imap_pool_free(pool);
	change_password(server->password);
}

/* A wrong password at mount time fails at once: the source (a password
 * command that may prompt) is not run a second time. */
static void
test_fresh_wrong_secret_not_renewed(void **state)
{
	Source src = {.next = server->password};
	ImapPool *pool =
	    pool_with_source(server, IMAP_AUTH_PLAIN, "wrong", 1, &src);

	assert_int_equal(use_once(pool), IMAP_EAUTH);
	assert_int_equal(src.calls, 0);
	imap_pool_free(pool);
}

/* A source that gives the refused secret again is not tried twice, and
 * its failure is the login's failure. */
static void
test_same_secret_is_a_refusal(void **state)
{
	g_autofree char *changed =
	    g_strconcat("other-", server->password, NULL);
	Source src = {.next = server->password};
	ImapPool *pool = pool_before_change(1, &src, changed);

	assert_int_equal(use_once(pool), IMAP_EAUTH);
	assert_int_equal(src.calls, 1);
	imap_pool_free(pool);
	change_password(server->password);
}

typedef struct {
	ImapPool *pool;
	GMutex lock;
	GCond cond;
	guint held;
	guint want;
	ImapStatus st[4];
} Crowd;

/* Holds a connection until every thread of the crowd holds one, so each
 * opens its own. */
static gpointer
crowd_member(gpointer data)
{
	Crowd *crowd = data;
	g_autoptr(ImapError) err = NULL;
	ImapConn *c = imap_pool_acquire(crowd->pool, NULL, &err);
	gint64 until = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
	guint me;

	g_mutex_lock(&crowd->lock);
	me = crowd->held++;
	crowd->st[me] = c != NULL ? IMAP_OK : err->status;
	g_cond_broadcast(&crowd->cond);
	while (crowd->held < crowd->want &&
	       g_cond_wait_until(&crowd->cond, &crowd->lock, until))
		;
	g_mutex_unlock(&crowd->lock);
	if (c != NULL)
		imap_pool_release(crowd->pool, c);
	return NULL;
}

/* Four connections opened together after the change: one renewal. */
static void
test_renewed_once_for_all(void **state)
{
	g_autofree char *changed =
	    g_strconcat("crowd-renewed-", server->password, NULL);
	Source src = {.next = changed};
	Crowd crowd = {.want = 4};
	GThread *t[4];
	guint open, idle, max;

	crowd.pool = pool_before_change(4, &src, changed);
	for (int i = 0; i < 4; i++)
		t[i] = g_thread_new("crowd", crowd_member, &crowd);
	for (int i = 0; i < 4; i++)
		g_thread_join(t[i]);
	for (int i = 0; i < 4; i++)
		assert_int_equal(crowd.st[i], IMAP_OK);
	imap_pool_counts(crowd.pool, &open, &idle, &max);
	assert_int_equal(open, 4);
	assert_int_equal(src.calls, 1);
	imap_pool_free(crowd.pool);
	change_password(server->password);
}

/* --- OAuth2: Dovecot validating HS256 JWTs with a local key --- */

static const char jwt_key[] = "imapfs-test-signing-key-0123456789";
static gint64 jwt_lifetime = 2;

static char *
base64url(const void *data, gsize len)
{
	char *s = g_base64_encode(data, len);

	g_strdelimit(s, "+", '-');
	g_strdelimit(s, "/", '_');
	*strchrnul(s, '=') = '\0';
	return s;
}

/* An access token for alice that expires jwt_lifetime seconds from now. */
static char *
mint_token(void)
{
	static const char header[] =
	    "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"default\"}";
	static guint serial;
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;
	g_autofree char *payload =
	    g_strdup_printf("{\"sub\":\"%s\",\"iat\":%" G_GINT64_FORMAT
	                    ",\"exp\":%" G_GINT64_FORMAT ",\"jti\":\"%u\"}",
	                    server->user, now, now + jwt_lifetime, ++serial);
	g_autofree char *h = base64url(header, strlen(header));
	g_autofree char *p = base64url(payload, strlen(payload));
	g_autofree char *signed_part = g_strconcat(h, ".", p, NULL);
	guint8 mac[32];
	gsize mac_len = sizeof mac;
	GHmac *hmac = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *)jwt_key,
	                         strlen(jwt_key));
	g_autofree char *sig = NULL;

	g_hmac_update(hmac, (const guchar *)signed_part, -1);
	g_hmac_get_digest(hmac, mac, &mac_len);
	g_hmac_unref(hmac);
	sig = base64url(mac, mac_len);
	return g_strconcat(signed_part, ".", sig, NULL);
}

/* Dovecot's oauth2 passdb after its passwd-file one: a JWT is no
 * password, so the first refuses it and the second checks its signature
 * and expiry against the key in keydir. */
static char *
oauth2_conf(const char *keydir)
{
	g_autofree char *conf =
	    g_build_filename(keydir, "oauth2.conf.ext", NULL);
	g_autofree char *keyfile =
	    g_build_filename(keydir, "default", "HS256", "default", NULL);
	g_autofree char *key64 =
	    g_base64_encode((const guchar *)jwt_key, strlen(jwt_key));
	g_autofree char *ext =
	    g_strdup_printf("introspection_mode = local\n"
	                    "local_validation_key_dict = fs:posix:prefix=%s/\n"
	                    "username_attribute = sub\n",
	                    keydir);
	g_autofree char *keypath = g_path_get_dirname(keyfile);

	assert_int_equal(g_mkdir_with_parents(keypath, 0755), 0);
	assert_true(g_file_set_contents(keyfile, key64, -1, NULL));
	assert_true(g_file_set_contents(conf, ext, -1, NULL));
	chmod(keyfile, 0644);
	chmod(conf, 0644);
	return g_strdup_printf(NO_DELAY "passdb {\n"
	                                "  driver = oauth2\n"
	                                "  mechanisms = xoauth2 oauthbearer\n"
	                                "  args = %s\n"
	                                "}\n",
	                       conf);
}

static void
remove_keydir(const char *keydir)
{
	const char *const files[] = {"default/HS256/default", "default/HS256",
	                             "default", "oauth2.conf.ext"};

	for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
		g_autofree char *path =
		    g_build_filename(keydir, files[i], NULL);
		g_remove(path);
	}
	g_rmdir(keydir);
}

/* A mount logged in with a token; the token expires; connections made
 * afterwards (after a cut, or the pool growing) log in with a new one
 * from the token command. */
static void
test_expired_token_renewed(void **state)
{
	g_autofree char *keydir = g_dir_make_tmp("imapfs-jwt-XXXXXX", NULL);
	g_autofree char *extra = NULL;
	g_autofree char *first = NULL;
	TestServer *main_server = server;
	TestServerOptions opts = {0};
	TestServer *s;
	Source src = {.mint = mint_token};
	g_autoptr(ImapError) err = NULL;
	ImapConnectOptions o;
	ImapCredentials cred;
	ImapPool *pool;
	ImapConn *c;

	assert_non_null(keydir);
	chmod(keydir, 0755);
	extra = oauth2_conf(keydir);
	opts.extra_conf = extra;
	s = test_server_start(&opts);
	server = s; /* mint_token's user */
	first = mint_token();
	pool = pool_with_source(s, IMAP_AUTH_XOAUTH2, first, 2, &src);
	assert_int_equal(use_once(pool), IMAP_OK);
	assert_int_equal(src.calls, 0);
	g_usleep((jwt_lifetime + 1) * G_USEC_PER_SEC);

	/* The first token is really refused now. */
	o = options(s);
	cred = (ImapCredentials){IMAP_AUTH_XOAUTH2, s->user, first};
	c = imap_conn_connect(&o, &err);
	assert_non_null(c);
	assert_int_equal(imap_conn_login(c, &cred, &err), IMAP_EAUTH);
	imap_conn_close(c);
	imap_error_clear(&err);

	/* Minted from now on with an hour to live. */
	jwt_lifetime = 3600;
	imap_pool_drain(pool);
	assert_int_equal(use_once(pool), IMAP_OK);
	assert_int_equal(src.calls, 1);
	/* A second connection uses the renewed token as it is. */
	c = imap_pool_acquire(pool, NULL, &err);
	assert_non_null(c);
	assert_int_equal(use_once(pool), IMAP_OK);
	imap_pool_release(pool, c);
	assert_int_equal(src.calls, 1);
	imap_pool_free(pool);
	server = main_server;
	test_server_stop(s);
	remove_keydir(keydir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_changed_password_renewed),
	    cmocka_unit_test(test_fresh_wrong_secret_not_renewed),
	    cmocka_unit_test(test_same_secret_is_a_refusal),
	    cmocka_unit_test(test_renewed_once_for_all),
	    cmocka_unit_test(test_expired_token_renewed),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
