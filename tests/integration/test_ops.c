/* test_ops.c - every operation of imap/ops.h against a real Dovecot (or,
 * with IMAP_SERVER=cyrus, Cyrus IMAP), with results checked through an
 * independent client (Python imaplib). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib/gstdio.h>

#include "harness.h"
#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/uidset.h"

#define QUOTA_KB    100000
#define APPEND_DATE ((gint64)1700000000) /* 14-Nov-2023 22:13:20 +0000 */

typedef struct {
	TestServer *server;
	ImapConn *conn;
} Fixture;

/* ---------------------------------------------------------------------
 * Helpers
 */

static ImapConn *
connect_login(TestServer *s)
{
	ImapConnectOptions opts = {
	    .host = s->host,
	    .port = s->port,
	    .tls = IMAP_TLS_STARTTLS,
	    .tls_opts = {.ca_file = s->ca_file, .server_name = s->cert_name},
	    .timeout_ms = 60000,
	    .debug = g_getenv("IMAP_DEBUG") != NULL,
	};
	ImapCredentials cred = {
	    .mech = IMAP_AUTH_AUTO,
	    .user = s->user,
	    .secret = s->password,
	};
	ImapError *err = NULL;
	ImapConn *c;

	c = imap_conn_connect(&opts, &err);
	if (c == NULL)
		fail_msg("connect: %s", err != NULL ? err->text : "?");
	if (imap_conn_login(c, &cred, &err) != IMAP_OK)
		fail_msg("login: %s", err->text);
	return c;
}

static int
setup_server(void **state, const TestServerOptions *opts)
{
	Fixture *f = g_new0(Fixture, 1);

	f->server = test_server_start(opts);
	f->conn = connect_login(f->server);
	*state = f;
	return 0;
}

static int
group_setup(void **state)
{
	TestServerOptions opts = {.quota_kb = QUOTA_KB};

	return setup_server(state, &opts);
}

static int
group_setup_limited(void **state)
{
	TestServerOptions opts = {
	    .capability = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID "
	                  "ENABLE IDLE NAMESPACE",
	};

	/* Cyrus has no setting that hides capabilities (Dovecot's
	 * imap_capability): no server, and the group's tests skip. */
	if (test_server_kind() == TEST_SERVER_CYRUS) {
		*state = NULL;
		return 0;
	}
	return setup_server(state, &opts);
}

static int
group_teardown(void **state)
{
	Fixture *f = *state;

	if (f == NULL)
		return 0;
	if (f->conn != NULL)
		imap_conn_close(f->conn);
	test_server_stop(f->server);
	g_free(f);
	return 0;
}

/* A message with CRLF line ends and a unique Message-ID. */
static GBytes *
make_message(const char *id, const char *body)
{
	GString *m = g_string_new(NULL);

	g_string_append_printf(m,
	                       "From: Alice <alice@example.org>\r\n"
	                       "To: Bob <bob@example.org>\r\n"
	                       "Subject: test %s\r\n"
	                       "Message-ID: <%s@imapfs.test>\r\n"
	                       "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
	                       "\r\n"
	                       "%s\r\n",
	                       id, id, body);
	return g_string_free_to_bytes(m);
}

static guint32
server_append(Fixture *f, const char *mailbox, GBytes *msg, const char *flags)
{
	gsize len;
	const char *data = g_bytes_get_data(msg, &len);

	return test_server_append(f->server, mailbox, data, len, flags);
}

static void
create_ok(Fixture *f, const char *mailbox)
{
	ImapError *err = NULL;

	if (imap_create(f->conn, mailbox, &err) != IMAP_OK)
		fail_msg("CREATE %s: %s", mailbox, err->text);
}

static gint
cmp_strptr(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, without \Recent, space separated: how imapcheck prints flags. */
static char *
norm_flags(const char *flags)
{
	char **parts = g_strsplit(flags, " ", -1);
	GPtrArray *keep = g_ptr_array_new();
	char *out;

	for (char **p = parts; *p != NULL; p++)
		if (**p != '\0' && g_ascii_strcasecmp(*p, "\\Recent") != 0)
			g_ptr_array_add(keep, *p);
	g_ptr_array_sort(keep, cmp_strptr);
	g_ptr_array_add(keep, NULL);
	out = g_strjoinv(" ", (char **)keep->pdata);
	g_ptr_array_free(keep, TRUE);
	g_strfreev(parts);
	return out;
}

static char *
check_flags(Fixture *f, const char *mailbox, guint32 uid)
{
	char *uidtext = g_strdup_printf("%u", uid);
	char *out;

	out = test_server_check(f->server, "flags", mailbox, uidtext, NULL);
	g_free(uidtext);
	return g_strstrip(out);
}

static GBytes *
check_fetch(Fixture *f, const char *mailbox, guint32 uid)
{
	char *uidtext = g_strdup_printf("%u", uid);
	char *out = NULL;
	int rc;

	rc = test_server_check_status(f->server, &out, "fetch", mailbox,
	                              uidtext, NULL);
	g_free(uidtext);
	assert_int_equal(rc, 0);
	return g_bytes_new_take(out, strlen(out));
}

/* UIDs the independent client sees in mailbox. */
static GArray *
check_uids(Fixture *f, const char *mailbox)
{
	char *out = test_server_check(f->server, "uids", mailbox, NULL);
	char **lines = g_strsplit(out, "\n", -1);
	GArray *uids = g_array_new(FALSE, FALSE, sizeof(guint32));

	for (char **l = lines; *l != NULL; l++) {
		guint64 v;

		if (**l != '\0' && g_ascii_string_to_unsigned(
		                       *l, 10, 1, G_MAXUINT32, &v, NULL))
			g_array_append_val(uids, (guint32){(guint32)v});
	}
	g_strfreev(lines);
	g_free(out);
	return uids;
}

static gboolean
uids_have(const GArray *uids, guint32 uid)
{
	for (guint i = 0; i < uids->len; i++)
		if (g_array_index(uids, guint32, i) == uid)
			return TRUE;
	return FALSE;
}

static void
assert_bytes_equal(GBytes *a, GBytes *b)
{
	gsize la, lb;
	const char *da = g_bytes_get_data(a, &la);
	const char *db = g_bytes_get_data(b, &lb);

	assert_int_equal(la, lb);
	if (la > 0)
		assert_memory_equal(da, db, la);
}

static gboolean
collect_write(void *ctx, const char *data, gsize len)
{
	g_byte_array_append(ctx, (const guint8 *)data, len);
	return TRUE;
}

/* Fetches a body (or part of it) into memory. */
static ImapStatus
fetch_body(ImapConn *c, const char *mailbox, guint32 uid, guint64 offset,
           guint64 length, GBytes **out, ImapError **err)
{
	GByteArray *buf = g_byte_array_new();
	guint64 total = 0;
	ImapStatus st;

	st = imap_uid_fetch_body(c, mailbox, uid, offset, length, collect_write,
	                         buf, &total, err);
	if (st == IMAP_OK && total != buf->len)
		st = IMAP_EPROTO;
	*out = g_byte_array_free_to_bytes(buf);
	return st;
}

typedef struct {
	GArray *metas; /* ImapMessageMeta, flags copied */
	GPtrArray *vanished;
} MetaList;

static void
meta_collect(void *user, const ImapMessageMeta *m)
{
	MetaList *ml = user;
	ImapMessageMeta copy = *m;

	copy.flags = g_strdup(m->flags);
	g_array_append_val(ml->metas, copy);
}

static void
vanished_collect(void *user, const char *set)
{
	MetaList *ml = user;

	g_ptr_array_add(ml->vanished, g_strdup(set));
}

static void
meta_clear(gpointer p)
{
	g_free(((ImapMessageMeta *)p)->flags);
}

static MetaList *
meta_list_new(void)
{
	MetaList *ml = g_new0(MetaList, 1);

	ml->metas = g_array_new(FALSE, FALSE, sizeof(ImapMessageMeta));
	g_array_set_clear_func(ml->metas, meta_clear);
	ml->vanished = g_ptr_array_new_with_free_func(g_free);
	return ml;
}

static void
meta_list_free(MetaList *ml)
{
	g_array_unref(ml->metas);
	g_ptr_array_unref(ml->vanished);
	g_free(ml);
}

static const ImapMessageMeta *
meta_lookup(const MetaList *ml, guint32 uid)
{
	for (guint i = 0; i < ml->metas->len; i++)
		if (g_array_index(ml->metas, ImapMessageMeta, i).uid == uid)
			return &g_array_index(ml->metas, ImapMessageMeta, i);
	return NULL;
}

/* Fails the test (never returns NULL) when uid was not delivered. */
static const ImapMessageMeta *
meta_find(const MetaList *ml, guint32 uid)
{
	const ImapMessageMeta *m = meta_lookup(ml, uid);

	if (m == NULL) {
		fail_msg("no metadata for UID %u", uid);
		abort();
	}
	return m;
}

/* Fails the test (never returns NULL) when name is not listed. */
static const ImapMailbox *
find_mailbox(GPtrArray *list, const char *name)
{
	for (guint i = 0; i < list->len; i++) {
		const ImapMailbox *m = g_ptr_array_index(list, i);

		if (strcmp(m->name, name) == 0)
			return m;
	}
	fail_msg("mailbox %s not listed", name);
	abort();
}

static gboolean
is_cyrus(const Fixture *f)
{
	return f->server->kind == TEST_SERVER_CYRUS;
}

/* A mailbox path with the server's hierarchy delimiter: parts joined. */
static char *
mbox_path(const Fixture *f, const char *parent, const char *child)
{
	return g_strdup_printf("%s%c%s", parent, f->server->delimiter, child);
}

static gboolean
check_list_has(Fixture *f, const char *name)
{
	char *out = test_server_check(f->server, "list", NULL);
	char **lines = g_strsplit(out, "\n", -1);
	gboolean found = g_strv_contains((const char *const *)lines, name);

	g_strfreev(lines);
	g_free(out);
	return found;
}

/* ---------------------------------------------------------------------
 * CAPABILITY, ENABLE, NOOP
 */

static void
test_capability(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;

	assert_int_equal(imap_capability(f->conn, &err), IMAP_OK);
	assert_true(imap_conn_has_cap(f->conn, "IMAP4REV1"));
	assert_true(imap_conn_has_cap(f->conn, "UIDPLUS"));
	assert_true(imap_conn_has_cap(f->conn, "QUOTA"));
	assert_false(imap_conn_has_cap(f->conn, "XNOSUCHCAP"));
}

static void
test_enable(void **state)
{
	Fixture *f = *state;
	const char *const exts[] = {"CONDSTORE", "QRESYNC", "XNOSUCHEXT", NULL};
	ImapError *err = NULL;

	assert_false(imap_conn_is_enabled(f->conn, "QRESYNC"));
	assert_int_equal(imap_enable(f->conn, exts, &err), IMAP_OK);
	assert_true(imap_conn_is_enabled(f->conn, "CONDSTORE"));
	assert_true(imap_conn_is_enabled(f->conn, "QRESYNC"));
	assert_false(imap_conn_is_enabled(f->conn, "XNOSUCHEXT"));
}

static void
test_noop(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;

	assert_int_equal(imap_noop(f->conn, &err), IMAP_OK);
	assert_null(err);
	assert_true(imap_conn_is_alive(f->conn));
}

/* ---------------------------------------------------------------------
 * LIST and mailbox management
 */

static void
test_list(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;
	GPtrArray *list = NULL;
	const ImapMailbox *m;
	char *archive_2024 = mbox_path(f, "Archive", "2024");
	char *ghost_child = mbox_path(f, "Ghost", "Child");
	char *archive_any = mbox_path(f, "Archive", "%");

	create_ok(f, archive_2024);
	create_ok(f, "Reçus");
	create_ok(f, "日本語");
	create_ok(f, "Tom & Jerry");
	create_ok(f, ghost_child); /* "Ghost" itself is never created */

	assert_int_equal(imap_list(f->conn, "", "*", &list, &err), IMAP_OK);
	assert_non_null(list);

	m = find_mailbox(list, "INBOX");
	assert_non_null(m);
	assert_int_equal(m->delimiter, f->server->delimiter);
	assert_int_equal(imap_conn_delimiter(f->conn), f->server->delimiter);

	m = find_mailbox(list, "Reçus");
	assert_non_null(m);
	assert_string_equal(m->raw_name, "Re&AOc-us");
	assert_true(m->attrs & IMAP_MBOX_HASNOCHILDREN);

	m = find_mailbox(list, "日本語");
	assert_non_null(m);
	assert_string_equal(m->raw_name, "&ZeVnLIqe-");

	m = find_mailbox(list, "Tom & Jerry");
	assert_non_null(m);
	assert_string_equal(m->raw_name, "Tom &- Jerry");
	assert_true(check_list_has(f, "Tom & Jerry"));

	m = find_mailbox(list, "Archive");
	assert_non_null(m);
	assert_true(m->attrs & IMAP_MBOX_HASCHILDREN);
	assert_string_equal(find_mailbox(list, archive_2024)->raw_name,
	                    archive_2024);

	m = find_mailbox(list, "Ghost");
	assert_non_null(m);
	/* Cyrus 3 makes the missing parent an intermediate mailbox that
	 * LIST shows without \Noselect. */
	if (!is_cyrus(f))
		assert_true(m->attrs & IMAP_MBOX_NOSELECT);
	assert_true(m->attrs & IMAP_MBOX_HASCHILDREN);
	assert_false(m->attrs & IMAP_MBOX_HASNOCHILDREN);
	g_ptr_array_unref(list);

	/* '%' stops at the delimiter. */
	assert_int_equal(imap_list(f->conn, "", archive_any, &list, &err),
	                 IMAP_OK);
	assert_int_equal(list->len, 1);
	m = g_ptr_array_index(list, 0);
	assert_string_equal(m->name, archive_2024);
	g_ptr_array_unref(list);

	/* A pattern in UTF-8 is encoded too. */
	assert_int_equal(imap_list(f->conn, "", "Re*", &list, &err), IMAP_OK);
	assert_int_equal(list->len, 1);
	assert_string_equal(((ImapMailbox *)g_ptr_array_index(list, 0))->name,
	                    "Reçus");
	g_ptr_array_unref(list);
	assert_null(err);
	g_free(archive_2024);
	g_free(ghost_child);
	g_free(archive_any);
}

static void
test_create_rename_delete(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;

	create_ok(f, "Projekt Ä");
	assert_true(check_list_has(f, "Projekt Ä"));

	assert_int_equal(imap_create(f->conn, "Projekt Ä", &err), IMAP_ENO);
	/* Cyrus 3.6 says "NO Mailbox already exists" without the code. */
	if (!is_cyrus(f))
		assert_int_equal(err->code, IMAP_CODE_ALREADYEXISTS);
	assert_non_null(strstr(err->text, "CREATE"));
	imap_error_clear(&err);

	assert_int_equal(imap_rename(f->conn, "Projekt Ä", "Projekt Ö", &err),
	                 IMAP_OK);
	assert_false(check_list_has(f, "Projekt Ä"));
	assert_true(check_list_has(f, "Projekt Ö"));

	assert_int_equal(imap_delete(f->conn, "Projekt Ö", &err), IMAP_OK);
	assert_false(check_list_has(f, "Projekt Ö"));

	assert_int_equal(imap_delete(f->conn, "No Such Box", &err), IMAP_ENO);
	/* Cyrus: "NO Mailbox does not exist", no code either. */
	if (!is_cyrus(f))
		assert_int_equal(err->code, IMAP_CODE_NONEXISTENT);
	imap_error_clear(&err);

	assert_int_equal(imap_rename(f->conn, "No Such Box", "Other", &err),
	                 IMAP_ENO);
	imap_error_clear(&err);
}

static void
test_delete_selected(void **state)
{
	Fixture *f = *state;
	GBytes *msg = make_message("del-selected", "bye");
	ImapError *err = NULL;
	GArray *uids = NULL;
	guint32 uid;

	create_ok(f, "Doomed");
	uid = server_append(f, "Doomed", msg, NULL);
	/* Select it through a search, then delete it while selected. */
	assert_int_equal(
	    imap_uid_search(f->conn, "Doomed", NULL, 0, &uids, &err), IMAP_OK);
	assert_int_equal(uids->len, 1);
	assert_int_equal(g_array_index(uids, guint32, 0), uid);
	g_array_unref(uids);
	assert_int_equal(imap_delete(f->conn, "Doomed", &err), IMAP_OK);
	assert_false(check_list_has(f, "Doomed"));
	/* Recreated under the same name: a new selection, a new UID. */
	create_ok(f, "Doomed");
	uid = server_append(f, "Doomed", msg, NULL);
	assert_int_equal(
	    imap_uid_search(f->conn, "Doomed", NULL, 0, &uids, &err), IMAP_OK);
	assert_int_equal(uids->len, 1);
	assert_int_equal(g_array_index(uids, guint32, 0), uid);
	g_array_unref(uids);
	g_bytes_unref(msg);
}

/* Cyrus keeps the user's subscriptions in a database named sub.db under
 * conf/user/ (a path made of the user's UUID); its keys are the mailbox
 * names as they are. */
static char *
cyrus_subscriptions_db(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	char *found = NULL;

	while (d != NULL && found == NULL && (name = g_dir_read_name(d))) {
		char *path = g_build_filename(dir, name, NULL);

		if (strcmp(name, "sub.db") == 0)
			found = g_steal_pointer(&path);
		else if (g_file_test(path, G_FILE_TEST_IS_DIR))
			found = cyrus_subscriptions_db(path);
		g_free(path);
	}
	if (d != NULL)
		g_dir_close(d);
	return found;
}

/* Whether the server's own subscription store names mailbox. */
static gboolean
subscriptions_have(Fixture *f, const char *mailbox)
{
	char *path, *data = NULL;
	gsize len = 0;
	gboolean found;

	if (is_cyrus(f)) {
		char *user_dir =
		    g_build_filename(f->server->dir, "conf", "user", NULL);

		path = cyrus_subscriptions_db(user_dir);
		g_free(user_dir);
	} else {
		path = g_build_filename(f->server->dir, "mail", "alice",
		                        "Maildir", "subscriptions", NULL);
	}
	if (path == NULL || !g_file_get_contents(path, &data, &len, NULL))
		len = 0;
	/* memmem: Cyrus's database is binary. */
	found = len > 0 && memmem(data, len, mailbox, strlen(mailbox)) != NULL;
	g_free(data);
	g_free(path);
	return found;
}

static void
test_subscribe(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;

	create_ok(f, "Subscribed Box");
	assert_false(subscriptions_have(f, "Subscribed Box"));

	assert_int_equal(imap_subscribe(f->conn, "Subscribed Box", &err),
	                 IMAP_OK);
	assert_true(subscriptions_have(f, "Subscribed Box"));
}

static void
test_invalid_names(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;
	ImapMailboxStatus st;
	GArray *uids = NULL;

	assert_int_equal(imap_create(f->conn, "Bad\r\nA1 LOGOUT", &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	assert_int_equal(imap_status(f->conn, "Bad\nName", &st, &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	assert_int_equal(
	    imap_uid_search(f->conn, "Bad\rName", NULL, 0, &uids, &err),
	    IMAP_EINVAL);
	assert_null(uids);
	imap_error_clear(&err);
	assert_int_equal(imap_rename(f->conn, "INBOX", "X\r\nY", &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);

	/* Nothing reached the server: the connection is fine and no mailbox
	 * appeared. */
	assert_true(imap_conn_is_alive(f->conn));
	assert_int_equal(imap_noop(f->conn, &err), IMAP_OK);
	assert_false(check_list_has(f, "Bad"));
	assert_false(check_list_has(f, "X"));
}

/* ---------------------------------------------------------------------
 * STATUS, APPEND
 */

static void
test_status(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;
	ImapMailboxStatus st;
	guint32 last = 0;
	char *check;
	char *expect;

	create_ok(f, "Counted");
	for (int i = 0; i < 3; i++) {
		char *id = g_strdup_printf("status-%d", i);
		GBytes *msg = make_message(id, "count me");

		last =
		    server_append(f, "Counted", msg, i == 0 ? "\\Seen" : NULL);
		g_bytes_unref(msg);
		g_free(id);
	}
	assert_int_equal(imap_status(f->conn, "Counted", &st, &err), IMAP_OK);
	assert_true(st.has_messages && st.has_uidnext && st.has_uidvalidity &&
	            st.has_unseen);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.uidnext, last + 1);
	assert_int_equal(st.unseen, 2);
	assert_true(st.has_highestmodseq);
	assert_true(st.highestmodseq > 0);

	check =
	    g_strstrip(test_server_check(f->server, "status", "Counted", NULL));
	expect = g_strdup_printf("messages %u uidnext %u uidvalidity %u",
	                         st.messages, st.uidnext, st.uidvalidity);
	assert_string_equal(check, expect);
	g_free(check);
	g_free(expect);

	assert_int_equal(imap_status(f->conn, "Nope", &st, &err), IMAP_ENO);
	assert_non_null(strstr(err->text, "STATUS"));
	imap_error_clear(&err);
}

/* STATUS of the mailbox this session has selected counts what another
 * client delivered since the SELECT (Dovecot answers from the session's
 * view unless it is brought up to date first): rmdir trusts this count. */
static void
test_status_of_selected(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;
	ImapMailboxStatus st;
	GBytes *msg = make_message("status-selected", "delivered after SELECT");

	create_ok(f, "Selected Counted");
	assert_int_equal(imap_conn_use_mailbox(f->conn, "Selected Counted",
	                                       NULL, NULL, &err),
	                 IMAP_OK);
	imap_conn_release_mailbox(f->conn);
	server_append(f, "Selected Counted", msg, NULL);
	g_bytes_unref(msg);
	assert_true(imap_conn_has_selected(f->conn, "Selected Counted"));
	assert_int_equal(imap_status(f->conn, "Selected Counted", &st, &err),
	                 IMAP_OK);
	assert_int_equal(st.messages, 1);
}

static void
test_append(void **state)
{
	Fixture *f = *state;
	GBytes *msg = make_message("append-1", "appended by imapfs");
	ImapAppendUid au;
	ImapError *err = NULL;
	ImapMailboxStatus st;
	GBytes *stored;
	char *flags;

	create_ok(f, "Appended");
	assert_int_equal(imap_append(f->conn, "Appended", "\\Flagged $Work",
	                             APPEND_DATE, msg, &au, &err),
	                 IMAP_OK);
	assert_true(au.valid);
	assert_true(au.uid > 0);

	assert_int_equal(imap_status(f->conn, "Appended", &st, &err), IMAP_OK);
	assert_int_equal(au.uidvalidity, st.uidvalidity);
	assert_int_equal(st.uidnext, au.uid + 1);

	flags = check_flags(f, "Appended", au.uid);
	assert_string_equal(flags, "$Work \\Flagged");
	g_free(flags);
	stored = check_fetch(f, "Appended", au.uid);
	assert_bytes_equal(stored, msg);
	g_bytes_unref(stored);

	/* Bad flags are refused before anything is sent. */
	assert_int_equal(
	    imap_append(f->conn, "Appended", "bad(flag", 0, msg, &au, &err),
	    IMAP_EINVAL);
	assert_false(au.valid);
	imap_error_clear(&err);
	/* Into a mailbox that does not exist. */
	assert_int_equal(
	    imap_append(f->conn, "Missing Box", NULL, 0, msg, &au, &err),
	    IMAP_ENO);
	assert_int_equal(err->code, IMAP_CODE_TRYCREATE);
	imap_error_clear(&err);
	g_bytes_unref(msg);
}

/* ---------------------------------------------------------------------
 * FETCH
 */

static void
test_fetch_meta(void **state)
{
	Fixture *f = *state;
	GBytes *m1 = make_message("meta-1", "first");
	GBytes *m2 = make_message("meta-2", "second, somewhat longer body");
	GBytes *m3 = make_message("meta-3", "third");
	ImapFetchMetaParams params = {0};
	ImapAppendUid a1, a2;
	ImapError *err = NULL;
	const ImapMessageMeta *m;
	MetaList *ml;
	guint32 u3;
	char *set, *flags;

	create_ok(f, "Meta");
	assert_int_equal(imap_append(f->conn, "Meta", "\\Seen $Work",
	                             APPEND_DATE, m1, &a1, &err),
	                 IMAP_OK);
	assert_int_equal(imap_append(f->conn, "Meta", NULL, APPEND_DATE + 3600,
	                             m2, &a2, &err),
	                 IMAP_OK);
	u3 = server_append(f, "Meta", m3, "\\Answered");

	ml = meta_list_new();
	assert_int_equal(imap_uid_fetch_meta(f->conn, "Meta", "1:*", NULL,
	                                     meta_collect, ml, &err),
	                 IMAP_OK);
	assert_int_equal(ml->metas->len, 3);

	m = meta_find(ml, a1.uid);
	assert_non_null(m);
	assert_true(m->has_size && m->has_date && m->has_flags);
	assert_int_equal(m->size, g_bytes_get_size(m1));
	assert_int_equal(m->internaldate, APPEND_DATE);
	flags = norm_flags(m->flags);
	assert_string_equal(flags, "$Work \\Seen");
	g_free(flags);
	assert_true(m->modseq > 0);
	assert_true(m->seq >= 1);

	m = meta_find(ml, a2.uid);
	assert_non_null(m);
	assert_int_equal(m->size, g_bytes_get_size(m2));
	assert_int_equal(m->internaldate, APPEND_DATE + 3600);
	flags = norm_flags(m->flags);
	assert_string_equal(flags, "");
	g_free(flags);

	m = meta_find(ml, u3);
	assert_non_null(m);
	assert_int_equal(m->size, g_bytes_get_size(m3));
	flags = norm_flags(m->flags);
	assert_string_equal(flags, "\\Answered");
	g_free(flags);
	meta_list_free(ml);

	/* Only the UIDs asked for. */
	ml = meta_list_new();
	set = g_strdup_printf("%u,%u", a1.uid, u3);
	assert_int_equal(imap_uid_fetch_meta(f->conn, "Meta", set, NULL,
	                                     meta_collect, ml, &err),
	                 IMAP_OK);
	g_free(set);
	assert_int_equal(ml->metas->len, 2);
	assert_null(meta_lookup(ml, a2.uid));
	meta_list_free(ml);

	/* flags_only: no size or date. */
	ml = meta_list_new();
	params.flags_only = TRUE;
	assert_int_equal(imap_uid_fetch_meta(f->conn, "Meta", "1:*", &params,
	                                     meta_collect, ml, &err),
	                 IMAP_OK);
	assert_int_equal(ml->metas->len, 3);
	m = meta_find(ml, u3);
	assert_true(m->has_flags);
	assert_false(m->has_size);
	meta_list_free(ml);

	assert_int_equal(imap_uid_fetch_meta(f->conn, "Meta", "1:x", NULL,
	                                     meta_collect, NULL, &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	g_bytes_unref(m1);
	g_bytes_unref(m2);
	g_bytes_unref(m3);
}

static void
test_fetch_meta_changedsince(void **state)
{
	Fixture *f = *state;
	ImapFetchMetaParams params = {0};
	ImapError *err = NULL;
	ImapMailboxStatus st;
	guint32 uids[3];
	MetaList *ml;
	char *uidtext, *flags, *set_text;
	GArray *set;

	create_ok(f, "Changes");
	for (int i = 0; i < 3; i++) {
		char *id = g_strdup_printf("changes-%d", i);
		GBytes *msg = make_message(id, "changing");

		uids[i] = server_append(f, "Changes", msg, NULL);
		g_bytes_unref(msg);
		g_free(id);
	}
	assert_int_equal(imap_status(f->conn, "Changes", &st, &err), IMAP_OK);
	assert_true(st.has_highestmodseq);

	/* Another client flags one message and expunges another. */
	uidtext = g_strdup_printf("%u", uids[0]);
	g_free(test_server_check(f->server, "store", "Changes", uidtext,
	                         "\\Flagged", NULL));
	g_free(uidtext);
	uidtext = g_strdup_printf("%u", uids[2]);
	g_free(test_server_check(f->server, "mark-deleted", "Changes", uidtext,
	                         NULL));
	g_free(uidtext);
	g_free(test_server_check(f->server, "expunge", "Changes", NULL));

	ml = meta_list_new();
	params.changedsince = st.highestmodseq;
	params.vanished = TRUE;
	params.vanished_fn = vanished_collect;
	/* Cyrus reads '*' as the highest UID still there (RFC 3501: the
	 * largest number in use), so the expunged last UID is outside 1:*
	 * and not reported; Dovecot reports it. */
	set_text =
	    is_cyrus(f) ? g_strdup_printf("1:%u", uids[2]) : g_strdup("1:*");
	assert_int_equal(imap_uid_fetch_meta(f->conn, "Changes", set_text,
	                                     &params, meta_collect, ml, &err),
	                 IMAP_OK);
	g_free(set_text);
	assert_int_equal(ml->metas->len, 1);
	assert_int_equal(g_array_index(ml->metas, ImapMessageMeta, 0).uid,
	                 uids[0]);
	flags = norm_flags(g_array_index(ml->metas, ImapMessageMeta, 0).flags);
	assert_string_equal(flags, "\\Flagged");
	g_free(flags);
	assert_true(g_array_index(ml->metas, ImapMessageMeta, 0).modseq >
	            st.highestmodseq);
	assert_int_equal(ml->vanished->len, 1);
	set = imap_uidset_parse(g_ptr_array_index(ml->vanished, 0), 0);
	assert_non_null(set);
	assert_true(imap_uidset_contains(set, uids[2]));
	assert_false(imap_uidset_contains(set, uids[0]));
	g_array_unref(set);
	meta_list_free(ml);
}

static void
test_fetch_body(void **state)
{
	Fixture *f = *state;
	GBytes *msg = make_message("body-1", "The quick brown fox jumps over "
	                                     "the lazy dog.");
	ImapError *err = NULL;
	GBytes *got = NULL, *slice;
	guint64 total = 0;
	guint32 uid;
	char *uidtext, *seen;
	gsize len = g_bytes_get_size(msg);

	create_ok(f, "Bodies");
	uid = server_append(f, "Bodies", msg, NULL);

	assert_int_equal(fetch_body(f->conn, "Bodies", uid, 0, 0, &got, &err),
	                 IMAP_OK);
	assert_bytes_equal(got, msg);
	g_bytes_unref(got);

	assert_int_equal(fetch_body(f->conn, "Bodies", uid, 10, 20, &got, &err),
	                 IMAP_OK);
	slice = g_bytes_new_from_bytes(msg, 10, 20);
	assert_bytes_equal(got, slice);
	g_bytes_unref(slice);
	g_bytes_unref(got);

	/* length 0 with an offset: to the end. */
	assert_int_equal(fetch_body(f->conn, "Bodies", uid, 100, 0, &got, &err),
	                 IMAP_OK);
	slice = g_bytes_new_from_bytes(msg, 100, len - 100);
	assert_bytes_equal(got, slice);
	g_bytes_unref(slice);
	g_bytes_unref(got);

	/* Past the end: nothing, but the message exists. */
	assert_int_equal(
	    fetch_body(f->conn, "Bodies", uid, len + 50, 10, &got, &err),
	    IMAP_OK);
	assert_int_equal(g_bytes_get_size(got), 0);
	g_bytes_unref(got);

	/* BODY.PEEK never sets \Seen. */
	uidtext = g_strdup_printf("%u", uid);
	seen = g_strstrip(
	    test_server_check(f->server, "seen", "Bodies", uidtext, NULL));
	assert_string_equal(seen, "no");
	g_free(seen);
	g_free(uidtext);

	assert_int_equal(imap_uid_fetch_body(f->conn, "Bodies", uid + 100, 0, 0,
	                                     collect_write, NULL, &total, &err),
	                 IMAP_ENO);
	assert_int_equal(err->code, IMAP_CODE_NONEXISTENT);
	assert_int_equal(total, 0);
	imap_error_clear(&err);
	g_bytes_unref(msg);
}

static gboolean
refuse_write(void *ctx, const char *data, gsize len)
{
	(*(int *)ctx)++;
	return FALSE;
}

static void
test_fetch_body_writer_refuses(void **state)
{
	Fixture *f = *state;
	GBytes *msg = make_message("body-refused", "refused");
	ImapError *err = NULL;
	guint64 total = 0;
	int calls = 0;
	guint32 uid;
	GBytes *got;

	uid = server_append(f, "Bodies", msg, NULL);
	assert_int_not_equal(imap_uid_fetch_body(f->conn, "Bodies", uid, 0, 0,
	                                         refuse_write, &calls, &total,
	                                         &err),
	                     IMAP_OK);
	assert_non_null(err);
	assert_int_equal(calls, 1);
	imap_error_clear(&err);
	/* The connection survives a refusing writer. */
	assert_int_equal(fetch_body(f->conn, "Bodies", uid, 0, 0, &got, &err),
	                 IMAP_OK);
	assert_bytes_equal(got, msg);
	g_bytes_unref(got);
	g_bytes_unref(msg);
}

static void
checksum_write_update(GChecksum *sum, const char *data, gsize len)
{
	g_checksum_update(sum, (const guchar *)data, len);
}

typedef struct {
	GChecksum *sum;
	guint64 bytes;
	guint calls;
} BigSink;

static gboolean
big_write(void *ctx, const char *data, gsize len)
{
	BigSink *bs = ctx;

	checksum_write_update(bs->sum, data, len);
	bs->bytes += len;
	bs->calls++;
	return TRUE;
}

static void
test_big_body(void **state)
{
	Fixture *f = *state;
	const gsize target = 20u * 1024 * 1024;
	GString *m = g_string_sized_new(target + 256);
	BigSink sink = {.sum = g_checksum_new(G_CHECKSUM_SHA256)};
	ImapAppendUid au;
	ImapError *err = NULL;
	MetaList *ml;
	char *want, *uidtext;
	guint64 total = 0;
	GBytes *msg;

	g_string_append(m, "From: alice@example.org\r\n"
	                   "Subject: big\r\n"
	                   "Message-ID: <big@imapfs.test>\r\n\r\n");
	for (guint line = 0; m->len < target; line++)
		g_string_append_printf(
		    m,
		    "%08u abcdefghijklmnopqrstuvwxyz "
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n",
		    line);
	msg = g_string_free_to_bytes(m);
	want = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, msg);

	create_ok(f, "Big");
	assert_int_equal(
	    imap_append(f->conn, "Big", NULL, APPEND_DATE, msg, &au, &err),
	    IMAP_OK);
	assert_true(au.valid);

	assert_int_equal(imap_uid_fetch_body(f->conn, "Big", au.uid, 0, 0,
	                                     big_write, &sink, &total, &err),
	                 IMAP_OK);
	assert_int_equal(total, g_bytes_get_size(msg));
	assert_int_equal(sink.bytes, g_bytes_get_size(msg));
	assert_true(sink.calls > 1); /* streamed, not delivered in one piece */
	assert_string_equal(g_checksum_get_string(sink.sum), want);

	ml = meta_list_new();
	uidtext = g_strdup_printf("%u", au.uid);
	assert_int_equal(imap_uid_fetch_meta(f->conn, "Big", uidtext, NULL,
	                                     meta_collect, ml, &err),
	                 IMAP_OK);
	assert_int_equal(ml->metas->len, 1);
	assert_int_equal(g_array_index(ml->metas, ImapMessageMeta, 0).size,
	                 g_bytes_get_size(msg));
	meta_list_free(ml);
	g_free(uidtext);
	g_free(want);
	g_checksum_free(sink.sum);
	g_bytes_unref(msg);
}

/* Many messages, written straight into the Maildir (Dovecot picks them up),
 * fetched with one command; a set with a hole checks the UID filter. */
#define MANY_MESSAGES 20000

typedef struct {
	guint count;
	guint seen;
	guint32 max_uid;
	gboolean out_of_set;
	guint64 size_sum;
} ManyStats;

static void
many_collect(void *user, const ImapMessageMeta *m)
{
	ManyStats *ms = user;

	ms->count++;
	if (strstr(m->flags, "\\Seen") != NULL)
		ms->seen++;
	if (m->uid > ms->max_uid)
		ms->max_uid = m->uid;
	if (m->uid > 5000 && m->uid < 10001)
		ms->out_of_set = TRUE;
	ms->size_sum += m->size;
}

static void
test_fetch_meta_many(void **state)
{
	Fixture *f = *state;
	char *cur = g_build_filename(f->server->dir, "mail", "alice", "Maildir",
	                             ".Many", "cur", NULL);
	ManyStats ms = {0};
	ImapError *err = NULL;
	ImapMailboxStatus st;
	gint64 started;
	GStatBuf dirst;

	/* The messages are written straight into Dovecot's Maildir; Cyrus's
	 * spool needs its index updated with them (reconstruct), and 20000
	 * APPENDs would take minutes under ASan. The FETCH parsing this
	 * stresses is the client's, the same with either server. */
	if (is_cyrus(f)) {
		g_free(cur);
		skip();
	}
	create_ok(f, "Many");
	assert_int_equal(g_stat(cur, &dirst), 0);
	for (guint i = 1; i <= MANY_MESSAGES; i++) {
		char *name =
		    g_strdup_printf("%s/%u.M%uP1.test:2,%s", cur,
		                    1700000000 + i, i, i % 2 ? "S" : "");
		char *body = g_strdup_printf(
		    "Subject: many %u\r\n\r\nbody %u\r\n", i, i);

		assert_true(g_file_set_contents(name, body, -1, NULL));
		assert_int_equal(chown(name, dirst.st_uid, dirst.st_gid), 0);
		g_free(body);
		g_free(name);
	}
	assert_int_equal(imap_status(f->conn, "Many", &st, &err), IMAP_OK);
	assert_int_equal(st.messages, MANY_MESSAGES);

	started = g_get_monotonic_time();
	assert_int_equal(imap_uid_fetch_meta(f->conn, "Many", "1:5000,10001:*",
	                                     NULL, many_collect, &ms, &err),
	                 IMAP_OK);
	print_message("fetched metadata of %u messages in %.2f s\n", ms.count,
	              (g_get_monotonic_time() - started) / 1e6);
	assert_int_equal(ms.count, MANY_MESSAGES - 5000);
	assert_false(ms.out_of_set);
	assert_int_equal(ms.max_uid, MANY_MESSAGES);
	assert_true(ms.seen > 0 && ms.seen < ms.count);
	assert_true(ms.size_sum > 0);

	/* Again, now that the server has everything cached: this time is
	 * mostly ours. */
	memset(&ms, 0, sizeof(ms));
	started = g_get_monotonic_time();
	assert_int_equal(imap_uid_fetch_meta(f->conn, "Many", "1:*", NULL,
	                                     many_collect, &ms, &err),
	                 IMAP_OK);
	print_message("again, %u messages in %.2f s\n", ms.count,
	              (g_get_monotonic_time() - started) / 1e6);
	assert_int_equal(ms.count, MANY_MESSAGES);
	g_free(cur);
}

/* ---------------------------------------------------------------------
 * SEARCH, STORE, COPY, MOVE, EXPUNGE
 */

static void
test_search(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;
	GArray *uids = NULL;
	guint32 u[3];
	char *range;

	create_ok(f, "Searched");
	for (int i = 0; i < 3; i++) {
		char *id = g_strdup_printf("search-%d", i);
		GBytes *msg = make_message(id, i == 1 ? "needle" : "hay");

		u[i] = server_append(f, "Searched", msg, NULL);
		g_bytes_unref(msg);
		g_free(id);
	}
	ImapSearchKey by_id[] = {
	    {.atom = "HEADER",
	     .arg1 = "Message-ID",
	     .arg2 = "<search-1@imapfs.test>"},
	};
	assert_int_equal(
	    imap_uid_search(f->conn, "Searched", by_id, 1, &uids, &err),
	    IMAP_OK);
	assert_int_equal(uids->len, 1);
	assert_int_equal(g_array_index(uids, guint32, 0), u[1]);
	g_array_unref(uids);

	/* No keys: everything, sorted. */
	assert_int_equal(
	    imap_uid_search(f->conn, "Searched", NULL, 0, &uids, &err),
	    IMAP_OK);
	assert_int_equal(uids->len, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(g_array_index(uids, guint32, i), u[i]);
	g_array_unref(uids);

	/* A UID range key plus a body text with a quote in it. */
	range = g_strdup_printf("%u:%u", u[1], u[2]);
	ImapSearchKey mixed[] = {
	    {.atom = "UID", .arg1 = range},
	    {.atom = "NOT"},
	    {.atom = "BODY", .arg1 = "needle"},
	};
	assert_int_equal(
	    imap_uid_search(f->conn, "Searched", mixed, 3, &uids, &err),
	    IMAP_OK);
	assert_int_equal(uids->len, 1);
	assert_int_equal(g_array_index(uids, guint32, 0), u[2]);
	g_array_unref(uids);
	g_free(range);

	ImapSearchKey none[] = {
	    {.atom = "SUBJECT", .arg1 = "no \"such\" subject"},
	};
	assert_int_equal(
	    imap_uid_search(f->conn, "Searched", none, 1, &uids, &err),
	    IMAP_OK);
	assert_int_equal(uids->len, 0);
	g_array_unref(uids);

	ImapSearchKey evil[] = {{.atom = "ALL) (LOGOUT"}};
	uids = NULL;
	assert_int_equal(
	    imap_uid_search(f->conn, "Searched", evil, 1, &uids, &err),
	    IMAP_EINVAL);
	assert_null(uids);
	imap_error_clear(&err);
	assert_true(imap_conn_is_alive(f->conn));
}

static void
test_store(void **state)
{
	Fixture *f = *state;
	GBytes *msg = make_message("store-1", "flag me");
	ImapError *err = NULL;
	char *uidtext, *flags;
	guint32 uid;

	create_ok(f, "Stored");
	uid = server_append(f, "Stored", msg, "\\Seen");
	uidtext = g_strdup_printf("%u", uid);

	assert_int_equal(imap_uid_store(f->conn, "Stored", uidtext,
	                                IMAP_STORE_ADD, "\\Flagged $Work",
	                                &err),
	                 IMAP_OK);
	flags = check_flags(f, "Stored", uid);
	assert_string_equal(flags, "$Work \\Flagged \\Seen");
	g_free(flags);

	assert_int_equal(imap_uid_store(f->conn, "Stored", uidtext,
	                                IMAP_STORE_REMOVE, "\\Seen", &err),
	                 IMAP_OK);
	flags = check_flags(f, "Stored", uid);
	assert_string_equal(flags, "$Work \\Flagged");
	g_free(flags);

	assert_int_equal(imap_uid_store(f->conn, "Stored", uidtext,
	                                IMAP_STORE_SET, "\\Answered", &err),
	                 IMAP_OK);
	flags = check_flags(f, "Stored", uid);
	assert_string_equal(flags, "\\Answered");
	g_free(flags);

	assert_int_equal(imap_uid_store(f->conn, "Stored", uidtext,
	                                IMAP_STORE_SET, "", &err),
	                 IMAP_OK);
	flags = check_flags(f, "Stored", uid);
	assert_string_equal(flags, "");
	g_free(flags);

	/* Invalid flags: nothing is sent, flags unchanged. */
	assert_int_equal(imap_uid_store(f->conn, "Stored", uidtext,
	                                IMAP_STORE_ADD, "\\Seen bad)flag",
	                                &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	assert_int_equal(imap_uid_store(f->conn, "Stored", uidtext,
	                                IMAP_STORE_ADD, "\\", &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	assert_int_equal(imap_uid_store(f->conn, "Stored", "1 FLAGS",
	                                IMAP_STORE_ADD, "\\Seen", &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	flags = check_flags(f, "Stored", uid);
	assert_string_equal(flags, "");
	g_free(flags);
	g_free(uidtext);
	g_bytes_unref(msg);
}

static void
test_copy(void **state)
{
	Fixture *f = *state;
	GBytes *m1 = make_message("copy-1", "copy one");
	GBytes *m2 = make_message("copy-2", "copy two");
	ImapCopyUid cu;
	ImapError *err = NULL;
	guint32 u1, u2, d1, d2;
	GBytes *stored;
	GArray *src_uids;
	char *set;

	create_ok(f, "CopySrc");
	create_ok(f, "CopyDst");
	/* A message already in the destination shifts its UIDs. */
	server_append(f, "CopyDst", m2, NULL);
	u1 = server_append(f, "CopySrc", m1, NULL);
	u2 = server_append(f, "CopySrc", m2, NULL);
	set = g_strdup_printf("%u:%u", u1, u2);
	assert_int_equal(
	    imap_uid_copy(f->conn, "CopySrc", set, "CopyDst", &cu, &err),
	    IMAP_OK);
	g_free(set);
	assert_true(cu.valid);
	d1 = imap_copyuid_lookup(&cu, u1);
	d2 = imap_copyuid_lookup(&cu, u2);
	assert_true(d1 != 0 && d2 != 0 && d1 != d2);
	assert_int_equal(imap_copyuid_lookup(&cu, u2 + 50), 0);

	stored = check_fetch(f, "CopyDst", d1);
	assert_bytes_equal(stored, m1);
	g_bytes_unref(stored);
	stored = check_fetch(f, "CopyDst", d2);
	assert_bytes_equal(stored, m2);
	g_bytes_unref(stored);
	/* The source keeps its messages. */
	src_uids = check_uids(f, "CopySrc");
	assert_int_equal(src_uids->len, 2);
	g_array_unref(src_uids);
	imap_copyuid_clear(&cu);
	assert_false(cu.valid);
	assert_null(cu.src);

	assert_int_equal(
	    imap_uid_copy(f->conn, "CopySrc", "1", "No Such Dst", &cu, &err),
	    IMAP_ENO);
	assert_int_equal(err->code, IMAP_CODE_TRYCREATE);
	assert_false(cu.valid);
	imap_error_clear(&err);
	g_bytes_unref(m1);
	g_bytes_unref(m2);
}

static void
test_move(void **state)
{
	Fixture *f = *state;
	GBytes *m1 = make_message("move-1", "move one");
	GBytes *m2 = make_message("move-2", "stay");
	ImapCopyUid cu;
	ImapError *err = NULL;
	guint32 u1, u2, d1;
	GArray *uids;
	GBytes *stored;
	char *set;

	create_ok(f, "MoveSrc");
	create_ok(f, "MoveDst");
	u1 = server_append(f, "MoveSrc", m1, NULL);
	u2 = server_append(f, "MoveSrc", m2, NULL);
	set = g_strdup_printf("%u", u1);
	assert_int_equal(
	    imap_uid_move(f->conn, "MoveSrc", set, "MoveDst", &cu, &err),
	    IMAP_OK);
	g_free(set);
	assert_true(cu.valid);
	d1 = imap_copyuid_lookup(&cu, u1);
	assert_true(d1 != 0);

	uids = check_uids(f, "MoveSrc");
	assert_int_equal(uids->len, 1);
	assert_true(uids_have(uids, u2));
	assert_false(uids_have(uids, u1));
	g_array_unref(uids);
	uids = check_uids(f, "MoveDst");
	assert_int_equal(uids->len, 1);
	assert_true(uids_have(uids, d1));
	g_array_unref(uids);
	stored = check_fetch(f, "MoveDst", d1);
	assert_bytes_equal(stored, m1);
	g_bytes_unref(stored);
	imap_copyuid_clear(&cu);
	g_bytes_unref(m1);
	g_bytes_unref(m2);
}

static void
test_uid_expunge(void **state)
{
	Fixture *f = *state;
	GBytes *m1 = make_message("expunge-1", "goes");
	GBytes *m2 = make_message("expunge-2", "stays although deleted");
	ImapError *err = NULL;
	char *u1text, *u2text, *flags;
	guint32 u1, u2;
	GArray *uids;

	create_ok(f, "Expunged");
	u1 = server_append(f, "Expunged", m1, NULL);
	u2 = server_append(f, "Expunged", m2, NULL);
	u1text = g_strdup_printf("%u", u1);
	u2text = g_strdup_printf("%u", u2);
	/* The other client marks u2 \Deleted; we mark u1. */
	g_free(test_server_check(f->server, "mark-deleted", "Expunged", u2text,
	                         NULL));
	assert_int_equal(imap_uid_store(f->conn, "Expunged", u1text,
	                                IMAP_STORE_ADD, "\\Deleted", &err),
	                 IMAP_OK);
	assert_int_equal(imap_uid_expunge(f->conn, "Expunged", u1text, &err),
	                 IMAP_OK);

	uids = check_uids(f, "Expunged");
	assert_int_equal(uids->len, 1);
	assert_true(uids_have(uids, u2));
	g_array_unref(uids);
	flags = check_flags(f, "Expunged", u2);
	assert_string_equal(flags, "\\Deleted");
	g_free(flags);

	assert_int_equal(imap_uid_expunge(f->conn, "Expunged", "a:b", &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	g_free(u1text);
	g_free(u2text);
	g_bytes_unref(m1);
	g_bytes_unref(m2);
}

/* ---------------------------------------------------------------------
 * QUOTA, LOGOUT
 */

static void
test_getquotaroot(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;
	ImapQuota q;
	char *check, *expect;

	assert_int_equal(imap_getquotaroot(f->conn, "INBOX", &q, &err),
	                 IMAP_OK);
	assert_non_null(q.root);
	assert_true(q.has_storage);
	assert_int_equal(q.storage_limit_kb, QUOTA_KB);
	check =
	    g_strstrip(test_server_check(f->server, "quota", "INBOX", NULL));
	expect = g_strdup_printf("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
	                         q.storage_used_kb, q.storage_limit_kb);
	assert_string_equal(check, expect);
	g_free(check);
	g_free(expect);
	imap_quota_clear(&q);
	assert_null(q.root);
}

static void
test_logout(void **state)
{
	Fixture *f = *state;
	ImapConn *c = connect_login(f->server);
	ImapError *err = NULL;

	assert_int_equal(imap_logout(c, &err), IMAP_OK);
	assert_null(err);
	/* The reader notices the hang-up right after the tagged OK. */
	for (int i = 0; i < 200 && imap_conn_is_alive(c); i++)
		g_usleep(10000);
	assert_false(imap_conn_is_alive(c));
	/* After LOGOUT, commands fail cleanly. */
	assert_int_not_equal(imap_noop(c, &err), IMAP_OK);
	imap_error_clear(&err);
	imap_conn_close(c);
}

/* ---------------------------------------------------------------------
 * EXAMINE and SELECT (QRESYNC)
 */

/* What a SELECT or EXAMINE reported through ImapSelectParams.untagged. */
typedef struct {
	gint64 recent; /* -1: no RECENT response */
	MetaList *ml;  /* FETCH (UID, FLAGS, MODSEQ) and VANISHED (EARLIER) */
	guint vanished_now; /* VANISHED without (EARLIER) */
} SelectSeen;

static gboolean
is_earlier(const ImapValue *v)
{
	return v != NULL && v->type == IMAP_VALUE_LIST && v->items->len == 1 &&
	       imap_value_is_atom(v->items->pdata[0], "EARLIER");
}

static void
select_seen(void *user, const ImapResponse *r)
{
	SelectSeen *s = user;
	const ImapValue *first = r->args->len > 0 ? r->args->pdata[0] : NULL;

	if (strcmp(r->name, "RECENT") == 0 && r->has_number) {
		s->recent = r->number;
	} else if (strcmp(r->name, "VANISHED") == 0) {
		if (r->args->len == 2 && is_earlier(first))
			g_ptr_array_add(
			    s->ml->vanished,
			    g_strdup(((ImapValue *)r->args->pdata[1])->str));
		else
			s->vanished_now++;
	} else if (strcmp(r->name, "FETCH") == 0 && first != NULL) {
		const ImapValue *flags = imap_fetch_item(first, "FLAGS");
		const ImapValue *modseq = imap_fetch_item(first, "MODSEQ");
		ImapMessageMeta m = {.seq = r->number};
		GString *text = g_string_new(NULL);

		imap_value_u32(imap_fetch_item(first, "UID"), &m.uid);
		if (modseq != NULL && modseq->type == IMAP_VALUE_LIST &&
		    modseq->items->len == 1)
			imap_value_u64(modseq->items->pdata[0], &m.modseq);
		for (guint i = 0; flags != NULL && flags->items != NULL &&
		                  i < flags->items->len;
		     i++)
			g_string_append_printf(
			    text, "%s%s", i > 0 ? " " : "",
			    ((ImapValue *)flags->items->pdata[i])->str);
		m.has_flags = flags != NULL;
		m.flags = g_string_free(text, FALSE);
		g_array_append_val(s->ml->metas, m);
	}
}

static SelectSeen *
select_seen_new(void)
{
	SelectSeen *s = g_new0(SelectSeen, 1);

	s->recent = -1;
	s->ml = meta_list_new();
	return s;
}

static void
select_seen_free(SelectSeen *s)
{
	meta_list_free(s->ml);
	g_free(s);
}

/* Leases mailbox on c with params, reporting to a fresh SelectSeen. */
static SelectSeen *
use_mailbox_seen(ImapConn *c, const char *mailbox, ImapSelectParams params,
                 ImapSelectInfo *info)
{
	SelectSeen *s = select_seen_new();
	ImapError *err = NULL;

	params.untagged = select_seen;
	params.user = s;
	if (imap_conn_use_mailbox(c, mailbox, &params, info, &err) != IMAP_OK)
		fail_msg("%s %s: %s", params.readonly ? "EXAMINE" : "SELECT",
		         mailbox, err->text);
	return s;
}

/* APPEND through the shared connection: cheaper than the independent
 * client, and still a session other than the one under test. */
static guint32
append_ok(Fixture *f, const char *mailbox, const char *id)
{
	GBytes *msg = make_message(id, "select");
	ImapAppendUid au;
	ImapError *err = NULL;

	if (imap_append(f->conn, mailbox, NULL, 0, msg, &au, &err) != IMAP_OK)
		fail_msg("APPEND %s: %s", mailbox, err->text);
	assert_true(au.valid);
	g_bytes_unref(msg);
	return au.uid;
}

static void
test_examine(void **state)
{
	Fixture *f = *state;
	const ImapSelectParams ro = {.readonly = TRUE};
	const ImapSelectParams ro_again = {.readonly = TRUE, .force = TRUE};
	const ImapSelectParams rw = {0};
	ImapConn *c = connect_login(f->server);
	ImapConn *other;
	ImapSelectInfo info = {0};
	ImapError *err = NULL;
	ImapResponse *tagged = NULL;
	ImapCmd *cmd;
	SelectSeen *s;
	guint32 uid;
	char *flags, *text;

	create_ok(f, "Examined");
	uid = append_ok(f, "Examined", "examine-1");
	append_ok(f, "Examined", "examine-2");

	s = use_mailbox_seen(c, "Examined", ro, &info);
	assert_true(info.readonly);
	assert_int_equal(info.exists, 2);
	assert_int_equal(s->recent, 2);
	/* No flag can be changed in an EXAMINEd mailbox. */
	assert_string_equal(info.permanentflags, "");
	select_seen_free(s);
	imap_select_info_clear(&info);

	/* Inside the lease the mailbox is read-only on the server: Dovecot
	 * answers a STORE with "OK Store ignored with read-only mailbox",
	 * Cyrus with "NO Permission denied". */
	cmd = imap_cmd_new("UID STORE");
	imap_cmd_printf(cmd, "%u +FLAGS.SILENT (\\Flagged)", uid);
	imap_conn_run(c, cmd, NULL, &tagged, &err);
	imap_error_clear(&err);
	assert_non_null(tagged);
	if (is_cyrus(f) ? tagged->cond != IMAP_COND_NO
	                : strstr(tagged->text, "read-only") == NULL)
		fail_msg("STORE in EXAMINE: \"%s\"", tagged->text);
	imap_response_free(tagged);
	imap_conn_release_mailbox(c);
	flags = check_flags(f, "Examined", uid);
	assert_string_equal(flags, "");
	g_free(flags);

	/* EXAMINE left \Recent alone: another session still sees it and,
	 * selecting read-write, takes it (RFC 3501 6.3.2). */
	other = connect_login(f->server);
	s = use_mailbox_seen(other, "Examined", ro, NULL);
	assert_int_equal(s->recent, 2);
	imap_conn_release_mailbox(other);
	select_seen_free(s);
	s = use_mailbox_seen(other, "Examined", rw, &info);
	assert_int_equal(s->recent, 2);
	assert_false(info.readonly);
	imap_conn_release_mailbox(other);
	imap_select_info_clear(&info);
	select_seen_free(s);
	imap_conn_close(other);
	/* That SELECT did take them: had ours been a SELECT, other would
	 * have seen none. */
	s = use_mailbox_seen(c, "Examined", ro_again, NULL);
	assert_int_equal(s->recent, 0);
	imap_conn_release_mailbox(c);
	select_seen_free(s);

	/* A change needs the mailbox read-write: the engine re-selects. */
	text = g_strdup_printf("%u", uid);
	assert_int_equal(imap_uid_store(c, "Examined", text, IMAP_STORE_ADD,
	                                "\\Flagged", &err),
	                 IMAP_OK);
	g_free(text);
	flags = check_flags(f, "Examined", uid);
	assert_string_equal(flags, "\\Flagged");
	g_free(flags);
	imap_conn_close(c);
}

static void
test_select_qresync(void **state)
{
	Fixture *f = *state;
	const char *const qresync[] = {"QRESYNC", NULL};
	ImapSelectParams params = {0};
	ImapMailboxStatus before, after;
	ImapSelectInfo info = {0};
	ImapError *err = NULL;
	ImapConn *c;
	SelectSeen *s;
	guint32 u[6];
	char *text;

	create_ok(f, "Resync");
	for (int i = 0; i < 5; i++) {
		char *id = g_strdup_printf("resync-%d", i);

		u[i] = append_ok(f, "Resync", id);
		g_free(id);
	}
	/* Gone before the snapshot: not to be reported again. */
	assert_int_equal(imap_expunge_uid(f->conn, "Resync", u[4], &err),
	                 IMAP_OK);
	assert_int_equal(imap_status(f->conn, "Resync", &before, &err),
	                 IMAP_OK);
	assert_true(before.has_highestmodseq);

	/* Another client, while we are away: flags on u[1] and u[3], u[0]
	 * and u[2] expunged, one new message. */
	text = g_strdup_printf("%u", u[1]);
	g_free(test_server_check(f->server, "store", "Resync", text,
	                         "\\Flagged", NULL));
	g_free(text);
	text = g_strdup_printf("%u", u[3]);
	g_free(test_server_check(f->server, "store", "Resync", text,
	                         "\\Seen $Done", NULL));
	g_free(text);
	for (int i = 0; i <= 2; i += 2) {
		text = g_strdup_printf("%u", u[i]);
		g_free(test_server_check(f->server, "mark-deleted", "Resync",
		                         text, NULL));
		g_free(text);
	}
	g_free(test_server_check(f->server, "expunge", "Resync", NULL));
	u[5] = append_ok(f, "Resync", "resync-new");
	assert_int_equal(imap_status(f->conn, "Resync", &after, &err), IMAP_OK);

	c = connect_login(f->server);
	assert_int_equal(imap_enable(c, qresync, &err), IMAP_OK);
	params.qresync_uidvalidity = before.uidvalidity;
	params.qresync_modseq = before.highestmodseq;
	s = use_mailbox_seen(c, "Resync", params, &info);
	assert_int_equal(info.uidvalidity, before.uidvalidity);
	assert_int_equal(info.uidnext, u[5] + 1);
	assert_int_equal(info.uidnext, after.uidnext);
	assert_int_equal(info.highestmodseq, after.highestmodseq);
	assert_true(info.highestmodseq > before.highestmodseq);
	assert_false(info.nomodseq);
	assert_int_equal(info.exists, 3);

	/* Exactly the UIDs expunged since the snapshot, u[4] not again. */
	assert_int_equal(s->vanished_now, 0);
	{
		GArray *all = g_array_new(FALSE, FALSE, sizeof(guint32));
		const guint32 gone[] = {u[0], u[2]};
		char *got, *want = imap_uidset_format(gone, 2);

		for (guint i = 0; i < s->ml->vanished->len; i++) {
			GArray *set = imap_uidset_parse(
			    g_ptr_array_index(s->ml->vanished, i), 0);
			GArray *uids;

			assert_non_null(set);
			uids = imap_uidset_expand(set, 1000);
			assert_non_null(uids);
			g_array_append_vals(all, uids->data, uids->len);
			g_array_unref(uids);
			g_array_unref(set);
		}
		got = imap_uidset_format((guint32 *)all->data, all->len);
		assert_string_equal(got, want);
		g_free(got);
		g_free(want);
		g_array_unref(all);
	}

	/* FETCH for each message changed since: the two re-flagged and the
	 * new one, with flags as the other client left them. */
	assert_int_equal(s->ml->metas->len, 3);
	for (guint i = 0; i < s->ml->metas->len; i++)
		assert_true(
		    g_array_index(s->ml->metas, ImapMessageMeta, i).modseq >
		    before.highestmodseq);
	text = norm_flags(meta_find(s->ml, u[1])->flags);
	assert_string_equal(text, "\\Flagged");
	g_free(text);
	text = norm_flags(meta_find(s->ml, u[3])->flags);
	assert_string_equal(text, "$Done \\Seen");
	g_free(text);
	text = norm_flags(meta_find(s->ml, u[5])->flags);
	assert_string_equal(text, "");
	g_free(text);
	imap_conn_release_mailbox(c);
	imap_select_info_clear(&info);
	select_seen_free(s);
	imap_conn_close(c);
}

/* ---------------------------------------------------------------------
 * Pipelining: several threads on one connection
 */

#define PIPE_THREADS 4
#define PIPE_ROUNDS  25

typedef struct {
	Fixture *f;
	int index;
	const char *mailboxes[2];
	guint32 uids[2][3];
	GBytes *msgs[2][3];
	guint32 expected_messages[2];
	int failures;
	char *first_failure;
} PipeJob;

static void
pipe_fail(PipeJob *job, const char *what, ImapError *err)
{
	job->failures++;
	if (job->first_failure == NULL)
		job->first_failure =
		    g_strdup_printf("thread %d: %s: %s", job->index, what,
		                    err != NULL ? err->text : "mismatch");
}

static gpointer
pipe_thread(gpointer data)
{
	PipeJob *job = data;

	for (int i = 0; i < PIPE_ROUNDS; i++) {
		int box = (job->index + i) % 2;
		const char *mbox = job->mailboxes[box];
		ImapError *err = NULL;

		if (i % 2 == 0) {
			ImapMailboxStatus st;

			if (imap_status(job->f->conn, mbox, &st, &err) !=
			    IMAP_OK)
				pipe_fail(job, "STATUS", err);
			else if (st.messages != job->expected_messages[box])
				pipe_fail(job, "STATUS count", NULL);
		} else {
			int k = (job->index + i) % 3;
			GBytes *got = NULL;

			if (fetch_body(job->f->conn, mbox, job->uids[box][k], 0,
			               0, &got, &err) != IMAP_OK)
				pipe_fail(job, "FETCH", err);
			else if (!g_bytes_equal(got, job->msgs[box][k]))
				pipe_fail(job, "FETCH bytes", NULL);
			if (got != NULL)
				g_bytes_unref(got);
		}
		imap_error_free(err);
	}
	return NULL;
}

static void
test_pipelining(void **state)
{
	Fixture *f = *state;
	PipeJob jobs[PIPE_THREADS];
	GThread *threads[PIPE_THREADS];
	const char *boxes[2] = {"Pipe A", "Pipe B"};
	guint32 uids[2][3];
	GBytes *msgs[2][3];

	for (int b = 0; b < 2; b++) {
		create_ok(f, boxes[b]);
		for (int k = 0; k < 3; k++) {
			char *id = g_strdup_printf("pipe-%d-%d", b, k);
			char *body = g_strnfill(1000 + 3000 * k + b, 'a' + k);

			msgs[b][k] = make_message(id, body);
			uids[b][k] =
			    server_append(f, boxes[b], msgs[b][k], NULL);
			g_free(body);
			g_free(id);
		}
	}
	for (int t = 0; t < PIPE_THREADS; t++) {
		jobs[t] = (PipeJob){.f = f, .index = t};
		memcpy(jobs[t].mailboxes, boxes, sizeof(boxes));
		memcpy(jobs[t].uids, uids, sizeof(uids));
		memcpy(jobs[t].msgs, msgs, sizeof(msgs));
		jobs[t].expected_messages[0] = 3;
		jobs[t].expected_messages[1] = 3;
		threads[t] = g_thread_new("pipe", pipe_thread, &jobs[t]);
	}
	for (int t = 0; t < PIPE_THREADS; t++)
		g_thread_join(threads[t]);
	for (int t = 0; t < PIPE_THREADS; t++) {
		if (jobs[t].first_failure != NULL)
			print_error("%s\n", jobs[t].first_failure);
		g_free(jobs[t].first_failure);
	}
	for (int t = 0; t < PIPE_THREADS; t++)
		assert_int_equal(jobs[t].failures, 0);
	for (int b = 0; b < 2; b++)
		for (int k = 0; k < 3; k++)
			g_bytes_unref(msgs[b][k]);
	assert_true(imap_conn_is_alive(f->conn));
}

/* ---------------------------------------------------------------------
 * A server without UIDPLUS, MOVE, ESEARCH, CONDSTORE and QUOTA
 */

static void
test_limited_unsupported(void **state)
{
	Fixture *f = *state;
	GBytes *msg = make_message("limited-1", "limited");
	ImapCopyUid cu;
	ImapError *err = NULL;
	ImapQuota q;
	guint32 uid;
	char *uidtext;
	GArray *uids;

	if (f == NULL) {
		g_bytes_unref(msg);
		skip(); /* Cyrus: see group_setup_limited() */
	}
	assert_int_equal(imap_capability(f->conn, &err), IMAP_OK);
	assert_false(imap_conn_has_cap(f->conn, "UIDPLUS"));
	assert_false(imap_conn_has_cap(f->conn, "MOVE"));
	assert_false(imap_conn_has_cap(f->conn, "ESEARCH"));

	create_ok(f, "Limited");
	create_ok(f, "Limited Dst");
	uid = server_append(f, "Limited", msg, NULL);
	uidtext = g_strdup_printf("%u", uid);
	assert_int_equal(imap_uid_move(f->conn, "Limited", uidtext,
	                               "Limited Dst", &cu, &err),
	                 IMAP_EUNSUPPORTED);
	assert_false(cu.valid);
	imap_error_clear(&err);
	assert_int_equal(imap_uid_expunge(f->conn, "Limited", uidtext, &err),
	                 IMAP_EUNSUPPORTED);
	imap_error_clear(&err);
	assert_int_equal(imap_getquotaroot(f->conn, "INBOX", &q, &err),
	                 IMAP_EUNSUPPORTED);
	imap_error_clear(&err);

	/* Nothing moved or vanished. */
	uids = check_uids(f, "Limited");
	assert_int_equal(uids->len, 1);
	assert_true(uids_have(uids, uid));
	g_array_unref(uids);
	uids = check_uids(f, "Limited Dst");
	assert_int_equal(uids->len, 0);
	g_array_unref(uids);
	g_free(uidtext);
	g_bytes_unref(msg);
}

static void
test_limited_search(void **state)
{
	Fixture *f = *state;
	ImapError *err = NULL;
	ImapMailboxStatus st;
	GArray *uids = NULL;
	guint32 u[3];

	if (f == NULL)
		skip(); /* Cyrus: see group_setup_limited() */
	create_ok(f, "Limited Search");
	for (int i = 0; i < 3; i++) {
		char *id = g_strdup_printf("lsearch-%d", i);
		GBytes *msg = make_message(id, "plain search");

		u[i] = server_append(f, "Limited Search", msg,
		                     i == 2 ? "\\Flagged" : NULL);
		g_bytes_unref(msg);
		g_free(id);
	}
	ImapSearchKey flagged[] = {{.atom = "FLAGGED"}};
	assert_int_equal(
	    imap_uid_search(f->conn, "Limited Search", flagged, 1, &uids, &err),
	    IMAP_OK);
	assert_int_equal(uids->len, 1);
	assert_int_equal(g_array_index(uids, guint32, 0), u[2]);
	g_array_unref(uids);

	assert_int_equal(
	    imap_uid_search(f->conn, "Limited Search", NULL, 0, &uids, &err),
	    IMAP_OK);
	assert_int_equal(uids->len, 3);
	assert_int_equal(g_array_index(uids, guint32, 0), u[0]);
	assert_int_equal(g_array_index(uids, guint32, 2), u[2]);
	g_array_unref(uids);

	/* STATUS without CONDSTORE asks for no HIGHESTMODSEQ. */
	assert_int_equal(imap_status(f->conn, "Limited Search", &st, &err),
	                 IMAP_OK);
	assert_int_equal(st.messages, 3);
	assert_false(st.has_highestmodseq);
}

typedef struct {
	ImapConn *c;
	const char *mailbox;
	guint32 uid;
	ImapStatus st;
} Expunger;

static gpointer
expunge_one(gpointer data)
{
	Expunger *e = data;
	ImapError *err = NULL;

	e->st = imap_expunge_uid(e->c, e->mailbox, e->uid, &err);
	if (e->st != IMAP_OK)
		g_printerr("expunge UID %u: %s\n", e->uid, err->text);
	imap_error_free(err);
	return NULL;
}

/* Without UID EXPUNGE, two rm's in one folder at once, on two connections:
 * each unflags the other client's \Deleted around its EXPUNGE. Each must
 * remove exactly its message, and a message someone else flagged must
 * stay, flagged. */
static void
test_limited_expunge_in_parallel(void **state)
{
	Fixture *f = *state;
	const char *box = "Limited Parallel";
	ImapConn *other;
	GBytes *kept_msg;
	guint32 kept;
	char *flags;

	if (f == NULL)
		skip(); /* Cyrus: see group_setup_limited() */
	other = connect_login(f->server);
	create_ok(f, box);
	kept_msg = make_message("lpar-kept", "flagged by someone else");
	kept = server_append(f, box, kept_msg, "\\Deleted");
	g_bytes_unref(kept_msg);
	for (int round = 0; round < 10; round++) {
		Expunger e[2] = {{f->conn, box}, {other, box}};
		GThread *t[2];
		GArray *uids;

		for (int i = 0; i < 2; i++) {
			char *id = g_strdup_printf("lpar-%d-%d", round, i);
			GBytes *msg = make_message(id, "to remove");

			e[i].uid = server_append(f, box, msg, NULL);
			g_bytes_unref(msg);
			g_free(id);
		}
		for (int i = 0; i < 2; i++)
			t[i] = g_thread_new("expunge", expunge_one, &e[i]);
		for (int i = 0; i < 2; i++)
			g_thread_join(t[i]);
		assert_int_equal(e[0].st, IMAP_OK);
		assert_int_equal(e[1].st, IMAP_OK);
		uids = check_uids(f, box);
		assert_int_equal(uids->len, 1);
		assert_true(uids_have(uids, kept));
		g_array_unref(uids);
	}
	flags = check_flags(f, box, kept);
	assert_non_null(strstr(flags, "\\Deleted"));
	g_free(flags);
	imap_conn_close(other);
}

/* ---------------------------------------------------------------------
 * Scripted servers: replies Dovecot never gives, and untagged data that
 * belongs to other commands
 */

typedef struct {
	FakeServer *fake;
	ImapConn *conn;
} Scripted;

static Scripted
scripted_start(const char *script)
{
	char *full = g_strconcat(script,
	                         "C ^(\\S+) LOGOUT$\n"
	                         "S * BYE bye\n"
	                         "S $TAG OK bye\n",
	                         NULL);
	Scripted sc = {.fake = fake_server_start(full)};
	ImapConnectOptions opts = {
	    .host = "127.0.0.1",
	    .port = sc.fake->port,
	    .tls = IMAP_TLS_NONE,
	    .timeout_ms = 10000,
	};
	ImapError *err = NULL;

	g_free(full);
	sc.conn = imap_conn_connect(&opts, &err);
	if (sc.conn == NULL)
		fail_msg("connect to fake server: %s", err->text);
	assert_true(imap_conn_is_authenticated(sc.conn));
	return sc;
}

/* The fake server exits 0 only if the client sent exactly what the
 * script expected, in that order. */
static void
scripted_finish(Scripted *sc)
{
	imap_conn_close(sc->conn);
	assert_int_equal(fake_server_finish(sc->fake), 0);
}

static void
test_scripted_bodies(void **state)
{
	Scripted sc = scripted_start(
	    "S * PREAUTH [CAPABILITY IMAP4rev1] hi\n"
	    "C ^(\\S+) SELECT INBOX$\n"
	    "S * 3 EXISTS\n"
	    "S $TAG OK [READ-WRITE] selected\n"
	    "C ^(\\S+) UID FETCH 5 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
	    "S * 2 FETCH (UID 5 BODY[] \"quoted body\")\n"
	    "S $TAG OK done\n"
	    "C ^(\\S+) UID FETCH 6 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
	    "S * 3 FETCH (UID 6 BODY[] NIL)\n"
	    "S $TAG OK done\n"
	    "C ^(\\S+) UID FETCH 8 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
	    "S $TAG NO [EXPUNGEISSUED] gone\n"
	    "C ^(\\S+) UID FETCH 9 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
	    "S $TAG OK nothing\n"
	    "C ^(\\S+) NOOP$\n"
	    "S $TAG OK noop\n"
	    "C ^(\\S+) UID FETCH 9 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
	    "S $TAG OK still nothing\n"
	    "C ^(\\S+) UID FETCH 7 \\(UID BODY\\.PEEK\\[\\]<10\\.3>\\)$\n"
	    "S * 1 FETCH (UID 7 BODY[]<10> {3}\n"
	    "S xyz)\n"
	    "S $TAG OK done\n"
	    "C ^(\\S+) UID FETCH 4 \\(UID BODY\\.PEEK\\[\\]\\)$\n"
	    "S * 1 FETCH (BODY[] {5}\n"
	    "S hello UID 3)\n"
	    "S $TAG OK done\n");
	ImapError *err = NULL;
	GBytes *got = NULL;

	assert_int_equal(fetch_body(sc.conn, "INBOX", 5, 0, 0, &got, &err),
	                 IMAP_OK);
	assert_int_equal(g_bytes_get_size(got), 11);
	assert_memory_equal(g_bytes_get_data(got, NULL), "quoted body", 11);
	g_bytes_unref(got);

	/* NIL: expunged by another client (RFC 2180 4.1.3), not empty. */
	assert_int_equal(fetch_body(sc.conn, "INBOX", 6, 0, 0, &got, &err),
	                 IMAP_ENO);
	assert_int_equal(err->code, IMAP_CODE_NONEXISTENT);
	imap_error_clear(&err);
	g_bytes_unref(got);

	assert_int_equal(fetch_body(sc.conn, "INBOX", 8, 0, 0, &got, &err),
	                 IMAP_ENO);
	assert_int_equal(err->code, IMAP_CODE_NONEXISTENT);
	imap_error_clear(&err);
	g_bytes_unref(got);

	assert_int_equal(fetch_body(sc.conn, "INBOX", 9, 0, 0, &got, &err),
	                 IMAP_ENO);
	assert_int_equal(err->code, IMAP_CODE_NONEXISTENT);
	assert_non_null(strstr(err->text, "UID 9 does not exist"));
	imap_error_clear(&err);
	g_bytes_unref(got);

	assert_int_equal(fetch_body(sc.conn, "INBOX", 7, 10, 3, &got, &err),
	                 IMAP_OK);
	assert_int_equal(g_bytes_get_size(got), 3);
	assert_memory_equal(g_bytes_get_data(got, NULL), "xyz", 3);
	g_bytes_unref(got);

	/* A literal whose UID turns out to be another message's. */
	assert_int_equal(fetch_body(sc.conn, "INBOX", 4, 0, 0, &got, &err),
	                 IMAP_EPROTO);
	imap_error_clear(&err);
	g_bytes_unref(got);
	scripted_finish(&sc);
}

static void
test_scripted_mixed_untagged(void **state)
{
	Scripted sc = scripted_start(
	    "S * PREAUTH [CAPABILITY IMAP4rev1 ESEARCH] hi\n"
	    "C ^(\\S+) STATUS Sent \\(MESSAGES UIDNEXT UIDVALIDITY "
	    "UNSEEN\\)$\n"
	    "S * STATUS Other (MESSAGES 99 UIDNEXT 100)\n"
	    "S * STATUS \"Sent\" (MESSAGES 4 UIDNEXT 12 UIDVALIDITY 3 "
	    "UNSEEN 1)\n"
	    "S $TAG OK status\n"
	    "C ^(\\S+) LIST \"\" \"?%\"?$\n"
	    "S * LIST (\\\\HasNoChildren \\\\Drafts) \"/\" {6}\n"
	    "S Drafts\n"
	    "S * LIST () \"/\" \"Other/Deep\"\n"
	    "S * LIST (\\\\Marked \\\\HasChildren) \"/\" inbox\n"
	    "S * LIST (\\\\HasNoChildren) \"/\" \"&AOk-t&AOk-\"\n"
	    "S * LIST (\\\\HasNoChildren) \"/\" \"&AOk-t&AOk-\"\n"
	    "S * LIST (\\\\Noselect) NIL \"bad&utf7\"\n"
	    "S $TAG OK list\n"
	    "C ^(\\S+) SELECT INBOX$\n"
	    "S $TAG OK [READ-WRITE] selected\n"
	    /* A SELECT just now is a fresh view: no NOOP. */
	    "C ^(\\S+) UID SEARCH RETURN \\(ALL\\) ALL$\n"
	    "S * ESEARCH (TAG \"other\") UID ALL 1:100\n"
	    "S * ESEARCH (TAG \"$TAG\") UID ALL 6,3,5:6\n"
	    "S $TAG OK search\n"
	    "C ^(\\S+) NOOP$\n"
	    "S $TAG OK noop\n"
	    "C ^(\\S+) UID FETCH 1:\\* \\(UID RFC822\\.SIZE INTERNALDATE "
	    "FLAGS\\)$\n"
	    "S * 1 FETCH (UID 1 RFC822.SIZE 100 INTERNALDATE "
	    "\"17-Jul-1996 02:44:25 -0700\" FLAGS (\\\\Seen foo))\n"
	    "S * 2 FETCH (FLAGS (\\\\Deleted))\n"
	    "S * 3 FETCH (UID 9 BODY[] {3}\n"
	    "S abc)\n"
	    "S $TAG OK fetch\n");
	ImapMailboxStatus st;
	ImapError *err = NULL;
	GPtrArray *list = NULL;
	const ImapMailbox *m;
	const ImapMessageMeta *mm;
	GArray *uids = NULL;
	MetaList *ml;

	assert_int_equal(imap_status(sc.conn, "Sent", &st, &err), IMAP_OK);
	assert_int_equal(st.messages, 4);
	assert_int_equal(st.uidnext, 12);
	assert_int_equal(st.uidvalidity, 3);
	assert_int_equal(st.unseen, 1);
	assert_false(st.has_highestmodseq);

	assert_int_equal(imap_list(sc.conn, "", "%", &list, &err), IMAP_OK);
	assert_int_equal(list->len, 4);
	m = find_mailbox(list, "Drafts");
	assert_int_equal(m->attrs, IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_DRAFTS);
	m = find_mailbox(list, "INBOX");
	assert_string_equal(m->raw_name, "inbox");
	assert_int_equal(m->attrs, IMAP_MBOX_MARKED | IMAP_MBOX_HASCHILDREN);
	m = find_mailbox(list, "\xc3\xa9t\xc3\xa9");
	assert_string_equal(m->raw_name, "&AOk-t&AOk-");
	m = find_mailbox(list, "bad&utf7");
	assert_int_equal(m->delimiter, 0);
	assert_int_equal(m->attrs, IMAP_MBOX_NOSELECT);
	assert_int_equal(imap_conn_delimiter(sc.conn), '/');
	g_ptr_array_unref(list);

	assert_int_equal(
	    imap_uid_search(sc.conn, "INBOX", NULL, 0, &uids, &err), IMAP_OK);
	assert_int_equal(uids->len, 3);
	assert_int_equal(g_array_index(uids, guint32, 0), 3);
	assert_int_equal(g_array_index(uids, guint32, 1), 5);
	assert_int_equal(g_array_index(uids, guint32, 2), 6);
	g_array_unref(uids);

	ml = meta_list_new();
	assert_int_equal(imap_uid_fetch_meta(sc.conn, "INBOX", "1:*", NULL,
	                                     meta_collect, ml, &err),
	                 IMAP_OK);
	assert_int_equal(ml->metas->len, 1);
	mm = meta_find(ml, 1);
	assert_int_equal(mm->size, 100);
	assert_int_equal(mm->internaldate, 837596665);
	assert_string_equal(mm->flags, "\\Seen foo");
	assert_int_equal(mm->modseq, 0);
	meta_list_free(ml);
	scripted_finish(&sc);
}

static void
test_scripted_copyuid_quota(void **state)
{
	Scripted sc = scripted_start(
	    "S * PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS MOVE QUOTA] hi\n"
	    "C ^(\\S+) SELECT INBOX$\n"
	    "S $TAG OK [READ-WRITE] selected\n"
	    "C ^(\\S+) UID MOVE 4:5 Trash$\n"
	    "S * OK [COPYUID 9 100 900] another thread's move\n"
	    "S * OK [COPYUID 9 4:5 20:21] moved\n"
	    "S * 1 EXPUNGE\n"
	    "S * 1 EXPUNGE\n"
	    "S $TAG OK done\n"
	    "C ^(\\S+) UID COPY 1:3 Trash$\n"
	    "S $TAG OK [COPYUID 9 1:3 7:8] copied\n"
	    "C ^(\\S+) GETQUOTAROOT INBOX$\n"
	    "S * QUOTAROOT INBOX \"\" \"User quota\"\n"
	    "S * QUOTA \"\" ()\n"
	    "S * QUOTA \"User quota\" (STORAGE 10 512 MESSAGE 3 1000)\n"
	    "S $TAG OK quota\n"
	    "C ^(\\S+) NOOP$\n"
	    "S $TAG OK noop\n");
	static const char nul_msg[] = "Subject: x\r\n\r\na\0b\r\n";
	GBytes *msg = g_bytes_new_static(nul_msg, sizeof(nul_msg) - 1);
	ImapAppendUid au;
	ImapError *err = NULL;
	ImapCopyUid cu;
	ImapQuota q;

	assert_int_equal(
	    imap_uid_move(sc.conn, "INBOX", "4:5", "Trash", &cu, &err),
	    IMAP_OK);
	assert_true(cu.valid);
	assert_int_equal(cu.uidvalidity, 9);
	assert_int_equal(imap_copyuid_lookup(&cu, 4), 20);
	assert_int_equal(imap_copyuid_lookup(&cu, 5), 21);
	assert_int_equal(imap_copyuid_lookup(&cu, 100), 0);
	imap_copyuid_clear(&cu);

	/* Three sources, two destinations: not trusted. */
	assert_int_equal(
	    imap_uid_copy(sc.conn, "INBOX", "1:3", "Trash", &cu, &err),
	    IMAP_OK);
	assert_false(cu.valid);
	assert_int_equal(imap_copyuid_lookup(&cu, 1), 0);
	imap_copyuid_clear(&cu);

	assert_int_equal(imap_getquotaroot(sc.conn, "INBOX", &q, &err),
	                 IMAP_OK);
	assert_string_equal(q.root, "User quota");
	assert_true(q.has_storage && q.has_messages);
	assert_int_equal(q.storage_used_kb, 10);
	assert_int_equal(q.storage_limit_kb, 512);
	assert_int_equal(q.messages_used, 3);
	assert_int_equal(q.messages_limit, 1000);
	imap_quota_clear(&q);

	/* NUL without BINARY: refused before anything is sent. */
	assert_int_equal(imap_append(sc.conn, "INBOX", NULL, 0, msg, &au, &err),
	                 IMAP_EINVAL);
	imap_error_clear(&err);
	assert_int_equal(imap_noop(sc.conn, &err), IMAP_OK);
	g_bytes_unref(msg);
	scripted_finish(&sc);
}

static void
test_scripted_enable_capability(void **state)
{
	Scripted sc = scripted_start(
	    "S * PREAUTH [CAPABILITY IMAP4rev1 ENABLE CONDSTORE] hi\n"
	    "C ^(\\S+) ENABLE CONDSTORE$\n"
	    "S * ENABLED CONDSTORE\n"
	    "S $TAG OK enabled\n"
	    "C ^(\\S+) CAPABILITY$\n"
	    "S * CAPABILITY IMAP4rev1 ENABLE CONDSTORE X-NEW\n"
	    "S $TAG OK caps\n");
	const char *const both[] = {"QRESYNC", "CONDSTORE", NULL};
	const char *const absent[] = {"QRESYNC", NULL};
	ImapError *err = NULL;

	assert_int_equal(imap_enable(sc.conn, both, &err), IMAP_OK);
	assert_true(imap_conn_is_enabled(sc.conn, "CONDSTORE"));
	assert_false(imap_conn_is_enabled(sc.conn, "QRESYNC"));
	/* Nothing the server offers: nothing is sent. */
	assert_int_equal(imap_enable(sc.conn, absent, &err), IMAP_OK);
	assert_false(imap_conn_has_cap(sc.conn, "X-NEW"));
	assert_int_equal(imap_capability(sc.conn, &err), IMAP_OK);
	assert_true(imap_conn_has_cap(sc.conn, "X-NEW"));
	scripted_finish(&sc);
}

/* A server on which CONDSTORE is already on (any STATUS ... HIGHESTMODSEQ
 * turns it on) lists only QRESYNC as newly enabled, as Cyrus does; QRESYNC
 * on means CONDSTORE on (RFC 7162 3.2.3). */
static void
test_scripted_enable_qresync_implies_condstore(void **state)
{
	Scripted sc = scripted_start(
	    "S * PREAUTH [CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC] hi\n"
	    "C ^(\\S+) ENABLE CONDSTORE QRESYNC$\n"
	    "S * ENABLED QRESYNC\n"
	    "S $TAG OK enabled\n");
	const char *const both[] = {"CONDSTORE", "QRESYNC", NULL};
	ImapError *err = NULL;

	assert_int_equal(imap_enable(sc.conn, both, &err), IMAP_OK);
	assert_true(imap_conn_is_enabled(sc.conn, "QRESYNC"));
	assert_true(imap_conn_is_enabled(sc.conn, "CONDSTORE"));
	scripted_finish(&sc);
}

static void
test_scripted_list_nonexistent(void **state)
{
	/* RFC 5258: a parent kept only for its children. */
	Scripted sc = scripted_start(
	    "S * PREAUTH [CAPABILITY IMAP4rev1 LIST-EXTENDED] hi\n"
	    "C ^(\\S+) LIST \"\" \"?\\*\"?$\n"
	    "S * LIST (\\\\NonExistent \\\\HasChildren) \"/\" Gone\n"
	    "S * LIST (\\\\HasNoChildren) \"/\" Gone/Kid\n"
	    "S $TAG OK list\n");
	ImapError *err = NULL;
	GPtrArray *list = NULL;

	assert_int_equal(imap_list(sc.conn, "", "*", &list, &err), IMAP_OK);
	assert_int_equal(list->len, 2);
	assert_int_equal(find_mailbox(list, "Gone")->attrs,
	                 IMAP_MBOX_NONEXISTENT | IMAP_MBOX_HASCHILDREN);
	assert_int_equal(find_mailbox(list, "Gone/Kid")->attrs,
	                 IMAP_MBOX_HASNOCHILDREN);
	g_ptr_array_unref(list);
	scripted_finish(&sc);
}

#define NOOP_ANSWERED                                                          \
	"C ^(\\S+) NOOP$\n"                                                    \
	"S $TAG OK noop\n"

/* One run of the expunge without UIDPLUS for UID 2 in Box, where UID 3 is
 * someone else's \Deleted: bring the view up to date, unflag 3, flag 2,
 * EXPUNGE (answered with EXPUNGED), flag 3 again, look for 2 (answered
 * with FOUND). */
#define SURVIVOR_RUN(EXPUNGED, FOUND)                                          \
	NOOP_ANSWERED                                                          \
	"C ^(\\S+) UID SEARCH DELETED$\n"                                      \
	"S * SEARCH 3\n"                                                       \
	"S $TAG OK search\n"                                                   \
	"C ^(\\S+) UID STORE 3 -FLAGS\\.SILENT \\(\\\\Deleted\\)$\n"           \
	"S $TAG OK store\n"                                                    \
	"C ^(\\S+) UID STORE 2 \\+FLAGS\\.SILENT \\(\\\\Deleted\\)$\n"         \
	"S $TAG OK store\n"                                                    \
	"C ^(\\S+) EXPUNGE$\n" EXPUNGED "S $TAG OK expunge\n"                  \
	"C ^(\\S+) UID STORE 3 \\+FLAGS\\.SILENT \\(\\\\Deleted\\)$\n"         \
	"S $TAG OK store\n" NOOP_ANSWERED                                      \
	"C ^(\\S+) UID SEARCH UID 2$\n" FOUND "S $TAG OK search\n"

/* Without UIDPLUS: another client cleared our \Deleted before the
 * EXPUNGE, so the message is still there after it; the sequence runs
 * again (keeping UID 3, flagged by someone else, out of it each time).
 * Even fresh from SELECT, the view is brought up to date first: the
 * SELECT may have seen flags another run had cleared for the moment. */
static void
test_scripted_expunge_survivor(void **state)
{
	static const char script[] = "S * PREAUTH [CAPABILITY IMAP4rev1] hi\n"
	                             "C ^(\\S+) SELECT Box$\n"
	                             "S * 3 EXISTS\n"
	                             "S $TAG OK [READ-WRITE] selected\n";
	g_autofree char *full =
	    g_strconcat(script, SURVIVOR_RUN("", "S * SEARCH 2\n"),
	                SURVIVOR_RUN("S * 2 EXPUNGE\n", "S * SEARCH\n"), NULL);
	Scripted sc = scripted_start(full);
	ImapError *err = NULL;

	assert_int_equal(imap_expunge_uid(sc.conn, "Box", 2, &err), IMAP_OK);
	scripted_finish(&sc);
}

int
main(void)
{
	const struct CMUnitTest full[] = {
	    cmocka_unit_test(test_capability),
	    cmocka_unit_test(test_noop),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_create_rename_delete),
	    cmocka_unit_test(test_subscribe),
	    cmocka_unit_test(test_invalid_names),
	    cmocka_unit_test(test_status),
	    cmocka_unit_test(test_status_of_selected),
	    cmocka_unit_test(test_append),
	    cmocka_unit_test(test_fetch_meta),
	    cmocka_unit_test(test_fetch_body),
	    cmocka_unit_test(test_fetch_body_writer_refuses),
	    cmocka_unit_test(test_search),
	    cmocka_unit_test(test_store),
	    cmocka_unit_test(test_copy),
	    cmocka_unit_test(test_move),
	    cmocka_unit_test(test_uid_expunge),
	    cmocka_unit_test(test_delete_selected),
	    cmocka_unit_test(test_getquotaroot),
	    cmocka_unit_test(test_pipelining),
	    /* From here QRESYNC is on for the shared connection. */
	    cmocka_unit_test(test_enable),
	    cmocka_unit_test(test_fetch_meta_changedsince),
	    cmocka_unit_test(test_examine),
	    cmocka_unit_test(test_select_qresync),
	    cmocka_unit_test(test_big_body),
	    cmocka_unit_test(test_fetch_meta_many),
	    cmocka_unit_test(test_logout),
	};
	const struct CMUnitTest scripted[] = {
	    cmocka_unit_test(test_scripted_bodies),
	    cmocka_unit_test(test_scripted_mixed_untagged),
	    cmocka_unit_test(test_scripted_copyuid_quota),
	    cmocka_unit_test(test_scripted_enable_capability),
	    cmocka_unit_test(test_scripted_enable_qresync_implies_condstore),
	    cmocka_unit_test(test_scripted_list_nonexistent),
	    cmocka_unit_test(test_scripted_expunge_survivor),
	};
	const struct CMUnitTest limited[] = {
	    cmocka_unit_test(test_limited_unsupported),
	    cmocka_unit_test(test_limited_search),
	    cmocka_unit_test(test_limited_expunge_in_parallel),
	};
	int failed = 0;

	/* The scripted servers are the same whatever IMAP_SERVER says:
	 * only the Dovecot run (int-ops) plays them. */
	if (test_server_kind() == TEST_SERVER_DOVECOT)
		failed += cmocka_run_group_tests_name("ops-scripted", scripted,
		                                      NULL, NULL);
	failed += cmocka_run_group_tests_name("ops", full, group_setup,
	                                      group_teardown);
	failed += cmocka_run_group_tests_name(
	    "ops-limited", limited, group_setup_limited, group_teardown);
	return failed;
}
