/* test_path.c - path <-> mailbox mapping, message names, classification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "fs/path.h"

#define NIHONGO "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" /* 日本語 */
#define RECUS   "Re\xc3\xa7us"                         /* Reçus */

static char *
repeat(char c, gsize n)
{
	char *s = g_malloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void
test_encode_component(void **state)
{
	static const char *const cases[][2] = {
	    {"INBOX", "INBOX"},       {"a/b", "a%2Fb"},
	    {"50%", "50%25"},         {"%2F", "%252F"},
	    {"%%//", "%25%25%2F%2F"}, {NIHONGO, NIHONGO},
	    {RECUS, RECUS},           {"", ""},
	    {"a.b", "a.b"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *got = fs_path_encode_component(cases[i][0]);

		assert_string_equal(got, cases[i][1]);
		g_free(got);
	}
}

typedef struct {
	char delim;
	const char *mailbox;
	const char *path;
} Mapping;

static const Mapping mappings[] = {
    {'.', "INBOX.a/b.50%", "/INBOX/a%2Fb/50%25"},
    {'.', "INBOX", "/INBOX"},
    {'.', NIHONGO "." RECUS, "/" NIHONGO "/" RECUS},
    {'.', "a%2Fb.%25", "/a%252Fb/%2525"},
    {'.', "x/y/z", "/x%2Fy%2Fz"},
    {'/', "INBOX/" NIHONGO "/" RECUS, "/INBOX/" NIHONGO "/" RECUS},
    {'/', "a.b/c%d", "/a.b/c%25d"},
    {'/', "Sent Items", "/Sent Items"},
    {'\0', "a/b.c%", "/a%2Fb.c%25"},
    {'\0', NIHONGO, "/" NIHONGO},
    {'\0', "INBOX", "/INBOX"},
};

static void
test_from_mailbox(void **state)
{
	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(mappings); i++) {
		char *path = (char *)"unset";

		assert_int_equal(fs_path_from_mailbox(mappings[i].mailbox,
		                                      mappings[i].delim, &path),
		                 0);
		assert_string_equal(path, mappings[i].path);
		g_free(path);
	}
}

static void
test_to_mailbox(void **state)
{
	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(mappings); i++) {
		char *name = NULL;

		assert_int_equal(fs_path_to_mailbox(mappings[i].path,
		                                    mappings[i].delim, &name),
		                 0);
		assert_string_equal(name, mappings[i].mailbox);
		g_free(name);
	}
}

static void
test_round_trip(void **state)
{
	static const Mapping names[] = {
	    {'.', "INBOX.a/b.50%"},    {'.', "%25.%2F.%2f.%"},
	    {'.', NIHONGO "/x.%y"},    {'/', "INBOX/" NIHONGO "/%2F%"},
	    {'/', RECUS "/a.b.c"},     {'\0', "a/b/c.d%"},
	    {'\0', RECUS "/" NIHONGO}, {'|', "a|b/c|d%e"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
		char *path = NULL, *back = NULL;

		assert_int_equal(fs_path_from_mailbox(names[i].mailbox,
		                                      names[i].delim, &path),
		                 0);
		assert_int_equal(
		    fs_path_to_mailbox(path, names[i].delim, &back), 0);
		assert_string_equal(back, names[i].mailbox);
		g_free(path);
		g_free(back);
	}
}

static void
test_decode_lenient_percent(void **state)
{
	static const char *const cases[][2] = {
	    {"/a%2fb", "a/b"}, {"/50%", "50%"},   {"/%", "%"},
	    {"/a%2", "a%2"},   {"/%2", "%2"},     {"/%41", "%41"},
	    {"/%25%", "%%"},   {"/%252F", "%2F"}, {"/x%2F%2f", "x//"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *name = NULL;

		assert_int_equal(fs_path_to_mailbox(cases[i][0], '.', &name),
		                 0);
		assert_string_equal(name, cases[i][1]);
		g_free(name);
	}
}

static void
test_to_mailbox_rejects(void **state)
{
	static const Mapping bad[] = {
	    {'.', NULL, "/"},         {'.', NULL, ""},
	    {'.', NULL, "INBOX"},     {'.', NULL, "//a"},
	    {'.', NULL, "/a/"},       {'.', NULL, "/a//b"},
	    {'.', NULL, "/."},        {'.', NULL, "/.."},
	    {'.', NULL, "/a/./b"},    {'.', NULL, "/a/../b"},
	    {'.', NULL, "/a\r"},      {'.', NULL, "/a\nb"},
	    {'.', NULL, "/a\tb"},     {'.', NULL, "/a\x7f"},
	    {'.', NULL, "/a\x01"},    {'.', NULL, "/\x1b[31m"},
	    {'.', NULL, "/\xff"},     {'.', NULL, "/\xc3"},
	    {'.', NULL, "/\xc0\xaf"}, {'.', NULL, "/\xed\xa0\x80"},
	    {'.', NULL, "/a.b"},      {'.', NULL, "/INBOX/x.y"},
	    {'/', NULL, "/a%2Fb"},    {'/', NULL, "/a%2fb"},
	    {'\0', NULL, "/a/b"},     {'%', NULL, "/a%25b"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		char *name = (char *)"unset";

		assert_int_equal(
		    fs_path_to_mailbox(bad[i].path, bad[i].delim, &name),
		    -EINVAL);
		assert_null(name);
	}
}

static void
test_from_mailbox_rejects(void **state)
{
	static const Mapping bad[] = {
	    {'.', ""},      {'.', "INBOX."}, {'.', ".INBOX"}, {'.', "a..b"},
	    {'/', "a/./b"}, {'/', "a/../b"}, {'/', "/a"},     {'.', "a\r\nb"},
	    {'.', "a\x7f"}, {'.', "\xff"},   {'\0', ""},      {'\0', "."},
	    {'\0', ".."},   {'.', "a.\tb"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		char *path = (char *)"unset";

		assert_int_equal(
		    fs_path_from_mailbox(bad[i].mailbox, bad[i].delim, &path),
		    -EINVAL);
		assert_null(path);
	}
}

static void
test_length_limits(void **state)
{
	char *max = repeat('a', FS_NAME_MAX);
	char *over = repeat('a', FS_NAME_MAX + 1);
	char *percents = repeat('%', 86); /* 258 bytes once encoded */
	char *out = NULL;
	GString *deep = g_string_new(NULL);

	(void)state;
	assert_int_equal(fs_path_from_mailbox(max, '.', &out), 0);
	assert_int_equal(strlen(out), FS_NAME_MAX + 1);
	g_free(out);
	assert_int_equal(fs_path_from_mailbox(over, '.', &out), -ENAMETOOLONG);
	assert_int_equal(fs_path_from_mailbox(percents, '.', &out),
	                 -ENAMETOOLONG);

	g_string_printf(deep, "/%s", max);
	assert_int_equal(fs_path_to_mailbox(deep->str, '.', &out), 0);
	assert_string_equal(out, max);
	g_free(out);
	g_string_printf(deep, "/%s", over);
	assert_int_equal(fs_path_to_mailbox(deep->str, '.', &out),
	                 -ENAMETOOLONG);

	/* 16 levels of 255 bytes: 4096 bytes with the slashes. */
	g_string_truncate(deep, 0);
	for (int i = 0; i < 16; i++)
		g_string_append_printf(deep, "/%s", max);
	assert_int_equal(deep->len, FS_PATH_MAX);
	assert_int_equal(fs_path_to_mailbox(deep->str, '.', &out),
	                 -ENAMETOOLONG);
	g_string_truncate(deep, deep->len - 1);
	assert_int_equal(fs_path_to_mailbox(deep->str, '.', &out), 0);
	assert_int_equal(strlen(out), FS_PATH_MAX - 2);
	g_free(out);

	g_string_truncate(deep, 0);
	for (int i = 0; i < 16; i++)
		g_string_append_printf(deep, "%s%s", i ? "." : "", max);
	assert_int_equal(fs_path_from_mailbox(deep->str, '.', &out),
	                 -ENAMETOOLONG);

	g_string_free(deep, TRUE);
	g_free(max);
	g_free(over);
	g_free(percents);
}

static void
test_message_names(void **state)
{
	static const struct {
		const char *name;
		guint32 uid;
	} good[] = {
	    {"1.eml", 1},
	    {"12.eml", 12},
	    {"1000000.eml", 1000000},
	    {"4294967295.eml", 4294967295u},
	};
	static const char *const bad[] = {
	    "0.eml",
	    "01.eml",
	    "00.eml",
	    "4294967296.eml",
	    "99999999999.eml",
	    "12.EML",
	    "12.Eml",
	    "12.eml~",
	    ".12.eml",
	    "12.eml.AbC123",
	    "+1.eml",
	    "-1.eml",
	    " 12.eml",
	    "12 .eml",
	    "12",
	    ".eml",
	    "",
	    "12.emlx",
	    "0x1F.eml",
	    "12..eml",
	    "1e3.eml",
	    "\xef\xbc\x91.eml",         /* fullwidth digit */
	    "18446744073709551617.eml", /* 2^64 + 1, would wrap to 1 */
	    "4294967296000000000000.eml",
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(good); i++) {
		char buf[FS_MESSAGE_NAME_SIZE];
		guint32 uid = 0;

		assert_true(fs_message_name_parse(good[i].name, &uid));
		assert_int_equal(uid, good[i].uid);
		assert_true(fs_message_name_format(good[i].uid, buf));
		assert_string_equal(buf, good[i].name);
	}
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		guint32 uid = 77;

		assert_false(fs_message_name_parse(bad[i], &uid));
		assert_int_equal(uid, 77);
	}
}

static void
test_message_name_format_zero(void **state)
{
	char buf[FS_MESSAGE_NAME_SIZE];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	assert_false(fs_message_name_format(0, buf));
	assert_string_equal(buf, "");
}

typedef struct {
	const char *path;
	char delim;
	FsPathKind kind;
	const char *mailbox;
	const char *parent;
	const char *leaf;
	guint32 uid;
} ClassifyCase;

static void
assert_optional_string(const char *got, const char *want)
{
	if (want == NULL)
		assert_null(got);
	else
		assert_string_equal(got, want);
}

static void
test_classify(void **state)
{
	static const ClassifyCase cases[] = {
	    {"/", '.', FS_PATH_ROOT, NULL, NULL, NULL, 0},
	    {"/INBOX", '.', FS_PATH_MAILBOX, "INBOX", NULL, "INBOX", 0},
	    {"/INBOX/12.eml", '.', FS_PATH_MESSAGE, NULL, "INBOX", "12.eml",
	     12},
	    {"/INBOX/a%2Fb/50%25/7.eml", '.', FS_PATH_MESSAGE, NULL,
	     "INBOX.a/b.50%", "7.eml", 7},
	    {"/INBOX/a%2Fb", '.', FS_PATH_MAILBOX, "INBOX.a/b", "INBOX",
	     "a%2Fb", 0},
	    {"/INBOX/.12.eml.AbC123", '.', FS_PATH_OTHER, NULL, "INBOX",
	     ".12.eml.AbC123", 0},
	    {"/INBOX/notes.txt", '.', FS_PATH_OTHER, NULL, "INBOX", "notes.txt",
	     0},
	    {"/INBOX/0.eml", '.', FS_PATH_OTHER, NULL, "INBOX", "0.eml", 0},
	    {"/INBOX/notes.txt", '/', FS_PATH_MAILBOX, "INBOX/notes.txt",
	     "INBOX", "notes.txt", 0},
	    {"/INBOX/01.eml", '/', FS_PATH_MAILBOX, "INBOX/01.eml", "INBOX",
	     "01.eml", 0},
	    {"/INBOX/12.eml", '/', FS_PATH_MESSAGE, NULL, "INBOX", "12.eml",
	     12},
	    {"/" NIHONGO "/" RECUS "/4294967295.eml", '/', FS_PATH_MESSAGE,
	     NULL, NIHONGO "/" RECUS, "4294967295.eml", 4294967295u},
	    {"/12.eml", '/', FS_PATH_MAILBOX, "12.eml", NULL, "12.eml", 0},
	    {"/12.eml", '.', FS_PATH_OTHER, NULL, NULL, "12.eml", 0},
	    {"/a/12.eml", '\0', FS_PATH_MESSAGE, NULL, "a", "12.eml", 12},
	    {"/a.b", '\0', FS_PATH_MAILBOX, "a.b", NULL, "a.b", 0},
	    {"/a/notes", '\0', FS_PATH_OTHER, NULL, "a", "notes", 0},
	    {"/a/.12.eml.x", '\0', FS_PATH_OTHER, NULL, "a", ".12.eml.x", 0},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		const ClassifyCase *c = &cases[i];
		g_auto(FsPathInfo) info = {0};

		assert_int_equal(fs_path_classify(c->path, c->delim, &info), 0);
		assert_int_equal(info.kind, c->kind);
		assert_optional_string(info.mailbox, c->mailbox);
		assert_optional_string(info.parent, c->parent);
		assert_optional_string(info.leaf, c->leaf);
		assert_int_equal(info.uid, c->uid);
	}
}

static void
test_classify_rejects(void **state)
{
	static const ClassifyCase bad[] = {
	    {"", '.'},
	    {"INBOX", '.'},
	    {"/INBOX/", '.'},
	    {"//", '.'},
	    {"/INBOX/../etc", '.'},
	    {"/INBOX/.", '.'},
	    {"/INBOX/..", '.'},
	    {"/INBOX/a\nb", '.'},
	    {"/INBOX/\r", '.'},
	    {"/IN\tBOX/1.eml", '.'},
	    {"/INBOX/\xff.eml", '.'},
	    {"/a.b/12.eml", '.'},
	    {"/a.b/c", '.'},
	    {"/a%2Fb/1.eml", '/'},
	    {"/a/b/c", '\0'},
	    {"/a/b/1.eml", '\0'},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		FsPathInfo info;

		memset(&info, 0xa5, sizeof(info));
		assert_int_equal(
		    fs_path_classify(bad[i].path, bad[i].delim, &info),
		    -EINVAL);
		assert_null(info.mailbox);
		assert_null(info.parent);
		assert_null(info.leaf);
		assert_int_equal(info.uid, 0);
	}
}

static void
test_classify_too_long(void **state)
{
	char *over = repeat('m', FS_NAME_MAX + 1);
	char *path = g_strdup_printf("/INBOX/%s", over);
	FsPathInfo info;

	(void)state;
	assert_int_equal(fs_path_classify(path, '.', &info), -ENAMETOOLONG);
	assert_null(info.leaf);
	g_free(path);
	g_free(over);
}

static void
test_mailbox_equal(void **state)
{
	static const struct {
		const char *a, *b;
		char delim;
		gboolean equal;
	} cases[] = {
	    {"INBOX", "INBOX", '.', TRUE},
	    {"INBOX", "inbox", '.', TRUE},
	    {"InBoX", "iNbOx", '/', TRUE},
	    {"INBOX.a", "inbox.a", '.', TRUE},
	    {"INBOX.a", "inbox.A", '.', FALSE},
	    {"inbox/a", "INBOX/a", '/', TRUE},
	    {"inbox/a", "INBOX/a", '.', FALSE},
	    {"INBOXa", "inboxa", '.', FALSE},
	    {"INBOX", "INBOX.", '.', FALSE},
	    {"INBOX", "INBO", '.', FALSE},
	    {"inbox", "INBOX", '\0', TRUE},
	    {"inbox.a", "INBOX.a", '\0', FALSE},
	    {"Foo", "foo", '.', FALSE},
	    {"Foo.INBOX", "Foo.inbox", '.', FALSE},
	    {"a", "a", '.', TRUE},
	    {RECUS, RECUS, '.', TRUE},
	    {"", "", '.', TRUE},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		assert_int_equal(
		    fs_mailbox_equal(cases[i].a, cases[i].b, cases[i].delim),
		    cases[i].equal);
		assert_int_equal(
		    fs_mailbox_equal(cases[i].b, cases[i].a, cases[i].delim),
		    cases[i].equal);
	}
	assert_true(fs_mailbox_equal(NULL, NULL, '.'));
	assert_false(fs_mailbox_equal(NULL, "INBOX", '.'));
	assert_false(fs_mailbox_equal("INBOX", NULL, '.'));
}

/* Servers spell INBOX "Inbox" (Yahoo) or "inbox": every spelling, alone
 * or as the first level, is the one directory /INBOX, and every path
 * spelling of it names "INBOX" on the server. Only the first level is
 * INBOX: "Archive/inbox" keeps its case. */
static void
test_inbox_case(void **state)
{
	static const Mapping from[] = {
	    {'/', "Inbox", "/INBOX"},
	    {'/', "inbox/Sub", "/INBOX/Sub"},
	    {'.', "Inbox.Sent", "/INBOX/Sent"},
	    {'.', "iNbOx", "/INBOX"},
	    {'/', "Archive/inbox", "/Archive/inbox"},
	    {'/', "Inboxes", "/Inboxes"},
	    {'.', "inbox-old", "/inbox-old"},
	    {'\0', "inbox", "/INBOX"},
	    {'\0', "inbox.x", "/inbox.x"},
	};
	static const Mapping to[] = {
	    {'/', "INBOX", "/inbox"},
	    {'/', "INBOX", "/Inbox"},
	    {'.', "INBOX.Sent", "/inbox/Sent"},
	    {'/', "Archive/inbox", "/Archive/inbox"},
	    {'\0', "INBOX", "/iNBOX"},
	    {'/', "inbox%", "/inbox%25"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(from); i++) {
		char *path = NULL;

		assert_int_equal(
		    fs_path_from_mailbox(from[i].mailbox, from[i].delim, &path),
		    0);
		assert_string_equal(path, from[i].path);
		g_free(path);
	}
	for (gsize i = 0; i < G_N_ELEMENTS(to); i++) {
		char *name = NULL;
		g_auto(FsPathInfo) info = {0};

		assert_int_equal(
		    fs_path_to_mailbox(to[i].path, to[i].delim, &name), 0);
		assert_string_equal(name, to[i].mailbox);
		g_free(name);
		assert_int_equal(
		    fs_path_classify(to[i].path, to[i].delim, &info), 0);
		assert_int_equal(info.kind, FS_PATH_MAILBOX);
		assert_string_equal(info.mailbox, to[i].mailbox);
	}
}

/* A message inside a subfolder of a differently spelled INBOX has the
 * canonical parent, so it is looked up in the mailbox the store lists. */
static void
test_inbox_case_classify(void **state)
{
	g_auto(FsPathInfo) msg = {0};
	g_auto(FsPathInfo) sub = {0};

	(void)state;
	assert_int_equal(fs_path_classify("/inbox/Sent/3.eml", '.', &msg), 0);
	assert_int_equal(msg.kind, FS_PATH_MESSAGE);
	assert_string_equal(msg.parent, "INBOX.Sent");
	assert_int_equal(msg.uid, 3);
	assert_int_equal(fs_path_classify("/Inbox/New", '/', &sub), 0);
	assert_int_equal(sub.kind, FS_PATH_MAILBOX);
	assert_string_equal(sub.mailbox, "INBOX/New");
	assert_string_equal(sub.parent, "INBOX");
	assert_string_equal(sub.leaf, "New");
}

/* Courier (and Cyrus without altnamespace) put every folder under
 * "INBOX." with '.' as the delimiter; a NIL delimiter (flat namespace)
 * allows no levels at all, and a '.' or '/' in a name is just a byte. */
static void
test_courier_and_flat(void **state)
{
	static const Mapping names[] = {
	    {'.', "INBOX.Sent.2023", "/INBOX/Sent/2023"},
	    {'.', "INBOX.a/b", "/INBOX/a%2Fb"},
	    {'\0', "Sent.2023", "/Sent.2023"},
	    {'\0', "Lists/imap", "/Lists%2Fimap"},
	};
	char *name = NULL;

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
		char *path = NULL, *back = NULL;

		assert_int_equal(fs_path_from_mailbox(names[i].mailbox,
		                                      names[i].delim, &path),
		                 0);
		assert_string_equal(path, names[i].path);
		assert_int_equal(
		    fs_path_to_mailbox(path, names[i].delim, &back), 0);
		assert_string_equal(back, names[i].mailbox);
		g_free(path);
		g_free(back);
	}
	/* mkdir INBOX/a.b on Courier: a '.' cannot be inside a part. */
	assert_int_equal(fs_path_to_mailbox("/INBOX/a.b", '.', &name), -EINVAL);
	assert_null(name);
	/* Flat: no folder inside a folder. */
	assert_int_equal(fs_path_to_mailbox("/Sent/2023", '\0', &name),
	                 -EINVAL);
	assert_null(name);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_component),
	    cmocka_unit_test(test_from_mailbox),
	    cmocka_unit_test(test_to_mailbox),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_decode_lenient_percent),
	    cmocka_unit_test(test_to_mailbox_rejects),
	    cmocka_unit_test(test_from_mailbox_rejects),
	    cmocka_unit_test(test_length_limits),
	    cmocka_unit_test(test_message_names),
	    cmocka_unit_test(test_message_name_format_zero),
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_classify_rejects),
	    cmocka_unit_test(test_classify_too_long),
	    cmocka_unit_test(test_mailbox_equal),
	    cmocka_unit_test(test_inbox_case),
	    cmocka_unit_test(test_inbox_case_classify),
	    cmocka_unit_test(test_courier_and_flat),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
