/* test_url.c - account URL parsing: accepted forms, defaults, rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "fs/url.h"

typedef struct {
	const char *url;
	gboolean tls;
	const char *user;
	const char *host;
	guint16 port;
} GoodCase;

static const GoodCase good[] = {
    {"imaps://alice@mail.example.com/", TRUE, "alice", "mail.example.com", 993},
    {"imaps://alice@mail.example.com", TRUE, "alice", "mail.example.com", 993},
    {"imap://bob@host", FALSE, "bob", "host", 143},
    {"imap://bob@host/", FALSE, "bob", "host", 143},
    {"imaps://alice@host:10993/", TRUE, "alice", "host", 10993},
    {"imap://u@host:1", FALSE, "u", "host", 1},
    {"imaps://u@host:65535/", TRUE, "u", "host", 65535},
    {"imaps://u@host:00143/", TRUE, "u", "host", 143},
    {"IMAPS://alice@Host.Example/", TRUE, "alice", "Host.Example", 993},
    {"Imap://alice@h", FALSE, "alice", "h", 143},
    {"imaps://alice%40example.com@mail.example.com/", TRUE, "alice@example.com",
     "mail.example.com", 993},
    {"imaps://%C3%A9mile@h/", TRUE, "\xc3\xa9mile", "h", 993},
    {"imaps://%c3%a9mile@h/", TRUE, "\xc3\xa9mile", "h", 993},
    {"imaps://j\xc3\xbcrgen@h/", TRUE, "j\xc3\xbcrgen", "h", 993},
    {"imaps://a+tag_x.y-z~@h/", TRUE, "a+tag_x.y-z~", "h", 993},
    {"imaps://a%3Ab@h/", TRUE, "a:b", "h", 993},
    {"imaps://a%25b@h/", TRUE, "a%b", "h", 993},
    {"imaps://mail.example.com/", TRUE, NULL, "mail.example.com", 993},
    {"imap://mail.example.com:1143", FALSE, NULL, "mail.example.com", 1143},
    {"imaps://[::1]/", TRUE, NULL, "::1", 993},
    {"imaps://u@[2001:db8::1]:1993/", TRUE, "u", "2001:db8::1", 1993},
    {"imap://u@[::ffff:192.0.2.1]", FALSE, "u", "::ffff:192.0.2.1", 143},
    {"imaps://u@192.0.2.1:993/", TRUE, "u", "192.0.2.1", 993},
    {"imaps://u@my_host-1/", TRUE, "u", "my_host-1", 993},
};

static void
test_good(void **state)
{
	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(good); i++) {
		GError *error = NULL;
		g_autoptr(FsUrl) url = fs_url_parse(good[i].url, &error);

		if (url == NULL)
			fail_msg("%s: %s", good[i].url, error->message);
		assert_null(error);
		assert_int_equal(url->tls, good[i].tls);
		if (good[i].user == NULL)
			assert_null(url->user);
		else
			assert_string_equal(url->user, good[i].user);
		assert_string_equal(url->host, good[i].host);
		assert_int_equal(url->port, good[i].port);
	}
}

static const char *const bad[] = {
    /* not the expected form */
    "",
    "imaps:",
    "imaps:/",
    "imaps://",
    "imaps:///",
    "http://u@h/",
    "imaps//u@h",
    "u@h",
    "imapsx://u@h",
    " imaps://u@h",
    "imaps:/u@h",
    "mail.example.com",
    /* something after the host */
    "imaps://u@h/INBOX",
    "imaps://u@h//",
    "imaps://u@h/?x",
    "imaps://u@h?x",
    "imaps://u@h#frag",
    "imaps://u@h/ ",
    /* ports */
    "imaps://u@h:",
    "imaps://u@h:/",
    "imaps://u@h:0",
    "imaps://u@h:65536",
    "imaps://u@h:99999",
    "imaps://u@h:123456",
    "imaps://u@h:-1",
    "imaps://u@h:+1",
    "imaps://u@h:1a",
    "imaps://u@h: 1",
    "imaps://u@h:993:1",
    "imaps://u@h:0x10",
    /* hosts */
    "imaps://u@/",
    "imaps://u@",
    "imaps://u@:993/",
    "imaps://u@h st/",
    "imaps://u@h\xc3\xb4st/",
    "imaps://u@[::1/",
    "imaps://u@[nothex]/",
    "imaps://u@[::1]x/",
    "imaps://u@[]/",
    "imaps://u@[192.0.2.1]/",
    "imaps://u@::1/",
    "imaps://u@h%41/",
    "imaps://u@[::1]]/",
    /* users */
    "imaps://@h/",
    "imaps://a@b@h/",
    "imaps://a%4@h",
    "imaps://a%zz@h",
    "imaps://a%@h",
    "imaps://%00a@h",
    "imaps://a%0Ab@h",
    "imaps://a%0db@h",
    "imaps://a%7Fb@h",
    "imaps://a%FF@h",
    "imaps://a%C3@h",
    "imaps://a;AUTH=PLAIN@h",
    "imaps://a b@h",
    "imaps://a/b@h",
    "imaps://\xff@h",
};

static void
test_bad(void **state)
{
	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		GError *error = NULL;
		FsUrl *url = fs_url_parse(bad[i], &error);

		if (url != NULL)
			fail_msg("accepted '%s'", bad[i]);
		assert_non_null(error);
		assert_true(
		    g_error_matches(error, FS_URL_ERROR, FS_URL_ERROR_INVALID));
		assert_true(g_str_has_prefix(error->message, "bad URL"));
		assert_non_null(strstr(error->message,
		                       "expected imaps://USER@HOST[:PORT]/"));
		g_error_free(error);
	}
}

static void
test_message_text(void **state)
{
	GError *error = NULL;

	(void)state;
	assert_null(fs_url_parse("http://x", &error));
	assert_string_equal(error->message, "bad URL 'http://x': expected "
	                                    "imaps://USER@HOST[:PORT]/");
	g_clear_error(&error);

	assert_null(fs_url_parse("imaps://u@h:70000/", &error));
	assert_string_equal(error->message,
	                    "bad URL 'imaps://u@h:70000/': the port must be a "
	                    "number from 1 to 65535; expected "
	                    "imaps://USER@HOST[:PORT]/");
	g_clear_error(&error);

	assert_null(fs_url_parse("imaps://a@b@h/", &error));
	assert_non_null(strstr(error->message, "%40"));
	g_clear_error(&error);
}

static void
test_control_characters(void **state)
{
	static const char *const urls[] = {
	    "imaps://u@h/\n",  "imaps://u\r@h",      "imaps://u@h\t",
	    "\x7fimaps://u@h", "imaps://u@h\x1b[2J", "imaps://u@[::1\n]/",
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(urls); i++) {
		GError *error = NULL;

		assert_null(fs_url_parse(urls[i], &error));
		assert_true(
		    g_error_matches(error, FS_URL_ERROR, FS_URL_ERROR_INVALID));
		assert_non_null(strstr(error->message, "control characters"));
		/* the message must not carry the control bytes itself */
		for (const char *p = error->message; *p != '\0'; p++)
			assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
		g_error_free(error);
	}
}

static void
test_password_rejected(void **state)
{
	static const char *const urls[] = {
	    "imaps://alice:hunter2@h/",
	    "imap://alice:hunter2@h:143",
	    "imaps://alice:@h/",
	    "imaps://alice:hunter2/x@h/",
	    "imaps://alice:hunter2@x@h/",
	    "imaps://alice%40example.com:hunter2@[::1]:993/",
	    "IMAPS://:hunter2@h",
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(urls); i++) {
		GError *error = NULL;

		assert_null(fs_url_parse(urls[i], &error));
		assert_true(g_error_matches(error, FS_URL_ERROR,
		                            FS_URL_ERROR_PASSWORD));
		assert_null(strstr(error->message, "hunter2"));
		assert_non_null(strstr(error->message, "password_command"));
		g_error_free(error);
	}
}

static void
test_null_error_allowed(void **state)
{
	FsUrl *url;

	(void)state;
	assert_null(fs_url_parse("garbage", NULL));
	assert_null(fs_url_parse("imaps://a:b@h", NULL));
	url = fs_url_parse("imaps://h", NULL);
	assert_non_null(url);
	fs_url_free(url);
	fs_url_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_message_text),
	    cmocka_unit_test(test_control_characters),
	    cmocka_unit_test(test_password_rejected),
	    cmocka_unit_test(test_null_error_allowed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
