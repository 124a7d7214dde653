/* test_command.c - the command builder: byte-exact serialization in every
 * literal mode, quoting, rejection of CR/LF/NUL, mailbox encoding and the
 * redacted log form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "imap/command.h"

typedef struct {
	const char *bytes; /* NUL-terminated unless len is set */
	gsize len;
	gboolean wait;
} WantPart;

static void
assert_parts(GPtrArray *parts, const WantPart *want, guint n)
{
	assert_non_null(parts);
	assert_int_equal(parts->len, n);
	for (guint i = 0; i < n; i++) {
		const ImapCmdPart *part = g_ptr_array_index(parts, i);
		gsize want_len =
		    want[i].len ? want[i].len : strlen(want[i].bytes);
		gsize got_len;
		const void *got = g_bytes_get_data(part->bytes, &got_len);

		if (got_len != want_len ||
		    memcmp(got, want[i].bytes, want_len) != 0) {
			char *copy = g_strndup(got, MIN(got_len, 200));
			char *shown = g_strescape(copy, NULL);

			fail_msg("part %u is \"%s\" (%zu bytes)", i, shown,
			         got_len);
		}
		assert_int_equal(part->wait_continuation, want[i].wait);
	}
}

/* Serializes a command expected to fit in one part. */
static void
assert_line(const ImapCmd *cmd, ImapLiteralMode mode, const char *want)
{
	GPtrArray *parts = imap_cmd_serialize(cmd, "A1", mode);
	const WantPart one[] = {{want, 0, FALSE}};

	assert_parts(parts, one, 1);
	g_ptr_array_unref(parts);
}

static void
assert_astring(const char *in, gsize len, const char *want)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("X");

	imap_cmd_astring(cmd, in, len);
	assert_true(imap_cmd_valid(cmd, NULL));
	assert_line(cmd, IMAP_LITERAL_SYNC, want);
}

static void
assert_invalid(const ImapCmd *cmd, const char *want_in_text)
{
	ImapError *err = NULL;

	assert_false(imap_cmd_valid(cmd, &err));
	assert_non_null(err);
	assert_int_equal(err->status, IMAP_EINVAL);
	if (strstr(err->text, want_in_text) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err->text, want_in_text);
	imap_error_free(err);
	assert_null(imap_cmd_serialize(cmd, "A1", IMAP_LITERAL_PLUS));
}

static void
test_simple(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("UID FETCH");

	(void)state;
	imap_cmd_raw(cmd, "1:*");
	imap_cmd_printf(cmd, "(UID FLAGS %s)", "RFC822.SIZE");
	imap_cmd_number(cmd, 0);
	imap_cmd_number(cmd, G_MAXUINT64);
	assert_true(imap_cmd_valid(cmd, NULL));
	assert_string_equal(imap_cmd_verb(cmd), "UID FETCH");
	assert_line(cmd, IMAP_LITERAL_SYNC,
	            "A1 UID FETCH 1:* (UID FLAGS RFC822.SIZE) 0 "
	            "18446744073709551615\r\n");

	g_autoptr(ImapCmd) noop = imap_cmd_new("NOOP");
	assert_line(noop, IMAP_LITERAL_SYNC, "A1 NOOP\r\n");
}

static void
test_astring_atoms_and_quoting(void **state)
{
	(void)state;
	assert_astring("INBOX", 5, "A1 X INBOX\r\n");
	assert_astring("a]b", 3, "A1 X a]b\r\n"); /* "]" is an ASTRING-CHAR */
	assert_astring("user@example.com", (gsize)-1,
	               "A1 X user@example.com\r\n");
	assert_astring("~!#$&'+,-./:;<=>?@[^_`|}", (gsize)-1,
	               "A1 X ~!#$&'+,-./:;<=>?@[^_`|}\r\n");
	assert_astring("", 0, "A1 X \"\"\r\n");
	assert_astring(NULL, 0, "A1 X \"\"\r\n");
	assert_astring("NIL", 3, "A1 X \"NIL\"\r\n");
	assert_astring("nil", 3, "A1 X \"nil\"\r\n");
	assert_astring("NiL", 3, "A1 X \"NiL\"\r\n");
	assert_astring("NILS", 4, "A1 X NILS\r\n");
	assert_astring("a b", 3, "A1 X \"a b\"\r\n");
	assert_astring("a(b", 3, "A1 X \"a(b\"\r\n");
	assert_astring("a)b", 3, "A1 X \"a)b\"\r\n");
	assert_astring("a{b", 3, "A1 X \"a{b\"\r\n");
	assert_astring("%", 1, "A1 X \"%\"\r\n");
	assert_astring("*", 1, "A1 X \"*\"\r\n");
	assert_astring("say \"hi\"", (gsize)-1, "A1 X \"say \\\"hi\\\"\"\r\n");
	assert_astring("back\\slash", (gsize)-1, "A1 X \"back\\\\slash\"\r\n");
	assert_astring("\\\"", 2, "A1 X \"\\\\\\\"\"\r\n");
	/* Length is honoured: only the first 3 bytes are the argument. */
	assert_astring("abcdef", 3, "A1 X abc\r\n");
}

static void
test_string_never_atom(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("SEARCH");

	(void)state;
	imap_cmd_raw(cmd, "SUBJECT");
	imap_cmd_string(cmd, "hello", 5);
	imap_cmd_string(cmd, "", 0);
	imap_cmd_string(cmd, "a\"b", 3);
	assert_true(imap_cmd_valid(cmd, NULL));
	assert_line(cmd, IMAP_LITERAL_SYNC,
	            "A1 SEARCH SUBJECT \"hello\" \"\" \"a\\\"b\"\r\n");
}

/* A synchronizing literal ends its part and the command waits for "+". */
static void
test_8bit_literal_sync(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("LOGIN");
	const WantPart want[] = {
	    {"A1 LOGIN user {5}\r\n", 0, TRUE},
	    {"p\xc3\xa4ss\r\n", 0, FALSE},
	};

	(void)state;
	imap_cmd_astring(cmd, "user", 4);
	imap_cmd_astring(cmd, "p\xc3\xa4ss", 5);
	assert_true(imap_cmd_valid(cmd, NULL));
	GPtrArray *parts = imap_cmd_serialize(cmd, "A1", IMAP_LITERAL_SYNC);
	assert_parts(parts, want, G_N_ELEMENTS(want));
	g_ptr_array_unref(parts);
}

static void
test_8bit_literal_plus_minus(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("LOGIN");

	(void)state;
	imap_cmd_astring(cmd, "user", 4);
	imap_cmd_astring(cmd, "p\xc3\xa4ss", 5);
	assert_line(cmd, IMAP_LITERAL_PLUS,
	            "A1 LOGIN user {5+}\r\np\xc3\xa4ss\r\n");
	assert_line(cmd, IMAP_LITERAL_MINUS,
	            "A1 LOGIN user {5+}\r\np\xc3\xa4ss\r\n");
}

static void
test_two_sync_literals(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("LOGIN");
	const WantPart want[] = {
	    {"A7 LOGIN {2}\r\n", 0, TRUE},
	    {"\xc3\xa9 {1}\r\n", 0, TRUE},
	    {"\xff\r\n", 0, FALSE},
	};

	(void)state;
	imap_cmd_astring(cmd, "\xc3\xa9", 2);
	imap_cmd_string(cmd, "\xff", 1);
	GPtrArray *parts = imap_cmd_serialize(cmd, "A7", IMAP_LITERAL_SYNC);
	assert_parts(parts, want, G_N_ELEMENTS(want));
	g_ptr_array_unref(parts);
}

static void
test_utf8_allowed(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("X");

	(void)state;
	imap_cmd_astring(cmd, "p\xc3\xa4ss", 5);
	imap_cmd_string(cmd, "\xe5\x8f\xb0", 3);
	/* Not UTF-8: still a literal even when UTF-8 is allowed. */
	imap_cmd_astring(cmd, "\xff\xfe", 2);
	/* Control bytes other than CR/LF/NUL travel as literals. */
	imap_cmd_astring(cmd, "a\tb", 3);
	imap_cmd_allow_utf8(cmd, TRUE);
	assert_true(imap_cmd_valid(cmd, NULL));
	assert_line(cmd, IMAP_LITERAL_PLUS,
	            "A1 X \"p\xc3\xa4ss\" \"\xe5\x8f\xb0\" {2+}\r\n\xff\xfe "
	            "{3+}\r\na\tb\r\n");
	imap_cmd_allow_utf8(cmd, FALSE);
	assert_line(cmd, IMAP_LITERAL_PLUS,
	            "A1 X {5+}\r\np\xc3\xa4ss {3+}\r\n\xe5\x8f\xb0 "
	            "{2+}\r\n\xff\xfe {3+}\r\na\tb\r\n");
}

static void
test_rejects_crlfnul(void **state)
{
	(void)state;
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("LOGIN");
		imap_cmd_astring(cmd, "user", 4);
		imap_cmd_astring(cmd, "pw\r\nA2 DELETE INBOX", 19);
		assert_invalid(cmd, "argument 2");
		assert_invalid(cmd, "CR");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_astring(cmd, "a\nb", 3);
		assert_invalid(cmd, "LF");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_astring(cmd, "a\0b", 3);
		assert_invalid(cmd, "NUL");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_string(cmd, "\r", 1);
		assert_invalid(cmd, "string");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_allow_utf8(cmd, TRUE);
		imap_cmd_string(cmd, "\xc3\xa9\n", 3);
		assert_invalid(cmd, "LF");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("SELECT");
		imap_cmd_mailbox(cmd, "Work\r\nA2 LOGOUT");
		assert_invalid(cmd, "mailbox");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("SELECT");
		imap_cmd_mailbox(cmd, "bad\xff");
		assert_invalid(cmd, "UTF-8");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_raw(cmd, "ok");
		imap_cmd_raw(cmd, "(FLAGS)\r\nA2 LOGOUT");
		assert_invalid(cmd, "argument 2 (raw)");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_printf(cmd, "%s", "a\nb");
		assert_invalid(cmd, "raw");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("NOOP\r\n");
		assert_invalid(cmd, "verb");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("APPEND");
		GBytes *data = g_bytes_new("a\0b", 3);
		imap_cmd_mailbox(cmd, "INBOX");
		imap_cmd_literal(cmd, data, FALSE);
		g_bytes_unref(data);
		assert_invalid(cmd, "NUL");
	}
	{
		/* The first rejection is the one reported. */
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_astring(cmd, "ok", 2);
		imap_cmd_astring(cmd, "\n", 1);
		imap_cmd_astring(cmd, "\r", 1);
		assert_invalid(cmd, "argument 2 (astring) contains LF");
	}
}

static void
test_quote_helper(void **state)
{
	char *q;

	(void)state;
	q = imap_quote("a\"b\\c", 5, FALSE);
	assert_string_equal(q, "\"a\\\"b\\\\c\"");
	g_free(q);
	q = imap_quote("", 0, FALSE);
	assert_string_equal(q, "\"\"");
	g_free(q);
	q = imap_quote("\xc3\xa9", 2, TRUE);
	assert_string_equal(q, "\"\xc3\xa9\"");
	g_free(q);
	assert_null(imap_quote("\xc3\xa9", 2, FALSE));
	assert_null(imap_quote("a\rb", 3, TRUE));
	assert_null(imap_quote("a\nb", 3, TRUE));
	assert_null(imap_quote("a\0b", 3, TRUE));
}

static void
test_mailbox(void **state)
{
	(void)state;
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("RENAME");
		imap_cmd_mailbox(cmd, "inbox");
		imap_cmd_mailbox(cmd, "InBoX");
		imap_cmd_mailbox(cmd, "INBOX/sub");
		imap_cmd_mailbox(cmd, "\xe5\x8f\xb0\xe5\x8c\x97");
		imap_cmd_mailbox(cmd, "a&b");
		imap_cmd_mailbox(cmd, "My Folder");
		imap_cmd_mailbox(cmd, "Nil");
		imap_cmd_mailbox(cmd, "");
		imap_cmd_mailbox(cmd, "~peter/mail/\xe6\x97\xa5\xe6\x9c\xac"
		                      "\xe8\xaa\x9e/\xe5\x8f\xb0\xe5\x8c\x97");
		assert_true(imap_cmd_valid(cmd, NULL));
		assert_line(cmd, IMAP_LITERAL_SYNC,
		            "A1 RENAME INBOX INBOX INBOX/sub &U,BTFw- a&-b "
		            "\"My Folder\" \"Nil\" \"\" "
		            "~peter/mail/&ZeVnLIqe-/&U,BTFw-\r\n");
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("CREATE");
		imap_cmd_allow_utf8(cmd, TRUE);
		imap_cmd_mailbox(cmd, "inbox");
		imap_cmd_mailbox(cmd, "\xe5\x8f\xb0\xe5\x8c\x97");
		imap_cmd_mailbox(cmd, "a&b");
		imap_cmd_mailbox(cmd, "Entw\xc3\xbcrfe \"x\"");
		assert_line(cmd, IMAP_LITERAL_SYNC,
		            "A1 CREATE INBOX \"\xe5\x8f\xb0\xe5\x8c\x97\" a&b "
		            "\"Entw\xc3\xbcrfe \\\"x\\\"\"\r\n");
	}
}

static void
test_literal_modes(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("APPEND");
	GBytes *msg = g_bytes_new_static("Hi\r\n", 4);
	GPtrArray *parts;
	const WantPart sync[] = {
	    {"A1 APPEND INBOX (\\Seen) {4}\r\n", 0, TRUE},
	    {"Hi\r\n\r\n", 0, FALSE},
	};

	(void)state;
	imap_cmd_mailbox(cmd, "INBOX");
	imap_cmd_raw(cmd, "(\\Seen)");
	imap_cmd_literal(cmd, msg, FALSE);
	g_bytes_unref(msg);
	assert_true(imap_cmd_valid(cmd, NULL));

	parts = imap_cmd_serialize(cmd, "A1", IMAP_LITERAL_SYNC);
	assert_parts(parts, sync, G_N_ELEMENTS(sync));
	g_ptr_array_unref(parts);
	assert_line(cmd, IMAP_LITERAL_PLUS,
	            "A1 APPEND INBOX (\\Seen) {4+}\r\nHi\r\n\r\n");
	assert_line(cmd, IMAP_LITERAL_MINUS,
	            "A1 APPEND INBOX (\\Seen) {4+}\r\nHi\r\n\r\n");
}

static void
test_literal8(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("APPEND");
	GBytes *msg = g_bytes_new_static("a\0b", 3);
	GPtrArray *parts;
	const WantPart sync[] = {
	    {"A1 APPEND INBOX ~{3}\r\n", 0, TRUE},
	    {"a\0b\r\n", 5, FALSE},
	};
	const WantPart plus[] = {
	    {"A1 APPEND INBOX ~{3+}\r\na\0b\r\n",
	     sizeof("A1 APPEND INBOX ~{3+}\r\na\0b\r\n") - 1, FALSE},
	};

	(void)state;
	imap_cmd_mailbox(cmd, "INBOX");
	imap_cmd_literal(cmd, msg, TRUE);
	g_bytes_unref(msg);
	assert_true(imap_cmd_valid(cmd, NULL));
	parts = imap_cmd_serialize(cmd, "A1", IMAP_LITERAL_SYNC);
	assert_parts(parts, sync, G_N_ELEMENTS(sync));
	g_ptr_array_unref(parts);
	parts = imap_cmd_serialize(cmd, "A1", IMAP_LITERAL_PLUS);
	assert_parts(parts, plus, G_N_ELEMENTS(plus));
	g_ptr_array_unref(parts);
}

static void
test_empty_literal(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("APPEND");
	GBytes *msg = g_bytes_new(NULL, 0);
	GPtrArray *parts;
	const WantPart sync[] = {
	    {"A1 APPEND INBOX {0}\r\n", 0, TRUE},
	    {"\r\n", 0, FALSE},
	};

	(void)state;
	imap_cmd_mailbox(cmd, "INBOX");
	imap_cmd_literal(cmd, msg, FALSE);
	g_bytes_unref(msg);
	parts = imap_cmd_serialize(cmd, "A1", IMAP_LITERAL_SYNC);
	assert_parts(parts, sync, G_N_ELEMENTS(sync));
	g_ptr_array_unref(parts);
}

/* A big message is referenced as its own part, never copied; LITERAL-
 * falls back to a synchronizing literal above 4096 bytes. */
static void
check_big_literal(gsize size, ImapLiteralMode mode, const char *header,
                  gboolean wait)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("APPEND");
	char *data = g_malloc(size);
	GBytes *msg;
	GPtrArray *parts;
	const ImapCmdPart *body;

	memset(data, 'x', size);
	msg = g_bytes_new_take(data, size);
	imap_cmd_mailbox(cmd, "Sent");
	imap_cmd_literal(cmd, msg, FALSE);
	parts = imap_cmd_serialize(cmd, "A1", mode);
	const WantPart want[] = {
	    {header, 0, wait},
	    {data, size, FALSE},
	    {"\r\n", 0, FALSE},
	};
	assert_parts(parts, want, G_N_ELEMENTS(want));
	body = g_ptr_array_index(parts, 1);
	assert_ptr_equal(g_bytes_get_data(body->bytes, NULL), data);
	g_ptr_array_unref(parts);
	g_bytes_unref(msg);
}

static void
test_big_literal(void **state)
{
	(void)state;
	check_big_literal(100000, IMAP_LITERAL_SYNC,
	                  "A1 APPEND Sent {100000}\r\n", TRUE);
	check_big_literal(100000, IMAP_LITERAL_PLUS,
	                  "A1 APPEND Sent {100000+}\r\n", FALSE);
	check_big_literal(100000, IMAP_LITERAL_MINUS,
	                  "A1 APPEND Sent {100000}\r\n", TRUE);
	check_big_literal(4097, IMAP_LITERAL_MINUS, "A1 APPEND Sent {4097}\r\n",
	                  TRUE);
	check_big_literal(4096, IMAP_LITERAL_MINUS,
	                  "A1 APPEND Sent {4096+}\r\n", FALSE);
}

/* After a big literal, further arguments continue in a new part. */
static void
test_text_after_big_literal(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("APPEND");
	gsize size = 2000;
	char *data = g_malloc(size);
	GBytes *msg;
	GPtrArray *parts;

	(void)state;
	memset(data, 'y', size);
	msg = g_bytes_new_take(data, size);
	imap_cmd_mailbox(cmd, "Sent");
	imap_cmd_literal(cmd, msg, FALSE);
	imap_cmd_literal(cmd, msg, FALSE);
	parts = imap_cmd_serialize(cmd, "A1", IMAP_LITERAL_SYNC);
	const WantPart want[] = {
	    {"A1 APPEND Sent {2000}\r\n", 0, TRUE},
	    {data, size, FALSE},
	    {" {2000}\r\n", 0, TRUE},
	    {data, size, FALSE},
	    {"\r\n", 0, FALSE},
	};
	assert_parts(parts, want, G_N_ELEMENTS(want));
	g_ptr_array_unref(parts);
	g_bytes_unref(msg);
}

static void
test_bad_tag(void **state)
{
	g_autoptr(ImapCmd) cmd = imap_cmd_new("NOOP");

	(void)state;
	assert_null(imap_cmd_serialize(cmd, "", IMAP_LITERAL_SYNC));
	assert_null(imap_cmd_serialize(cmd, "A+1", IMAP_LITERAL_SYNC));
	assert_null(imap_cmd_serialize(cmd, "A 1", IMAP_LITERAL_SYNC));
	assert_null(imap_cmd_serialize(cmd, "A1\r\n", IMAP_LITERAL_SYNC));
	assert_null(imap_cmd_serialize(cmd, NULL, IMAP_LITERAL_SYNC));
}

static void
test_describe(void **state)
{
	char *text;

	(void)state;
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("LOGIN");
		imap_cmd_astring(cmd, "alice", 5);
		imap_cmd_secret(cmd, TRUE);
		imap_cmd_astring(cmd, "hunter2", 7);
		imap_cmd_secret(cmd, FALSE);
		imap_cmd_raw(cmd, "EXTRA");
		text = imap_cmd_describe(cmd, "A1");
		assert_string_equal(text, "A1 LOGIN alice *** EXTRA");
		assert_null(strstr(text, "hunter2"));
		g_free(text);
	}
	{
		/* A secret that needs a literal is hidden too. */
		g_autoptr(ImapCmd) cmd = imap_cmd_new("LOGIN");
		imap_cmd_astring(cmd, "alice", 5);
		imap_cmd_secret(cmd, TRUE);
		imap_cmd_astring(cmd, "p\xc3\xa4ss", 5);
		text = imap_cmd_describe(cmd, "A2");
		assert_string_equal(text, "A2 LOGIN alice ***");
		g_free(text);
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("APPEND");
		GBytes *big = g_bytes_new_take(g_strnfill(65, 'z'), 65);
		GBytes *small = g_bytes_new_static("Hi\r\n", 4);
		imap_cmd_mailbox(cmd, "\xe5\x8f\xb0\xe5\x8c\x97");
		imap_cmd_literal(cmd, big, FALSE);
		imap_cmd_literal(cmd, small, FALSE);
		g_bytes_unref(big);
		g_bytes_unref(small);
		text = imap_cmd_describe(cmd, "A3");
		assert_string_equal(text,
		                    "A3 APPEND &U,BTFw- {65} {4}Hi\\x0d\\x0a");
		g_free(text);
	}
	{
		g_autoptr(ImapCmd) cmd = imap_cmd_new("X");
		imap_cmd_astring(cmd, "ok", 2);
		imap_cmd_astring(cmd, "a\nb", 3);
		text = imap_cmd_describe(cmd, NULL);
		assert_string_equal(text, "X ok [invalid]");
		g_free(text);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple),
	    cmocka_unit_test(test_astring_atoms_and_quoting),
	    cmocka_unit_test(test_string_never_atom),
	    cmocka_unit_test(test_8bit_literal_sync),
	    cmocka_unit_test(test_8bit_literal_plus_minus),
	    cmocka_unit_test(test_two_sync_literals),
	    cmocka_unit_test(test_utf8_allowed),
	    cmocka_unit_test(test_rejects_crlfnul),
	    cmocka_unit_test(test_quote_helper),
	    cmocka_unit_test(test_mailbox),
	    cmocka_unit_test(test_literal_modes),
	    cmocka_unit_test(test_literal8),
	    cmocka_unit_test(test_empty_literal),
	    cmocka_unit_test(test_big_literal),
	    cmocka_unit_test(test_text_after_big_literal),
	    cmocka_unit_test(test_bad_tag),
	    cmocka_unit_test(test_describe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
