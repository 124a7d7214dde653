/* test_config.c - the option table and the config file: values of every
 * type, named accounts, command line over file, unknown keys, unsafe files,
 * $XDG_CONFIG_HOME; and the one-line form of log entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/config.h"
#include "fs/log.h"
#include "testutil.h"

/* Writes text to tmpdir/name with mode; returns the path. */
static char *
write_file(const char *name, const char *text, mode_t mode)
{
	char *path = g_build_filename(tmpdir, name, NULL);
	g_autofree char *dir = g_path_get_dirname(path);

	assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
	assert_true(g_file_set_contents(path, text, -1, NULL));
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void
test_defaults(void **state)
{
	FsConfig cfg;
	static const char *const names[] = {
	    "user",
	    "password_command",
	    "password_file",
	    "auth",
	    "oauth2_token_command",
	    "tls_ca_file",
	    "tls_fingerprint",
	    "allow_plaintext",
	    "max_conns",
	    "read_only",
	    "trash",
	    "dir_cache_timeout",
	    "timeout",
	    "exact_sizes",
	    "debug_imap",
	    "log_level",
	    "config",
	};
	const FsOption *table;
	gsize n;

	(void)state;
	fs_config_init(&cfg);
	assert_int_equal(cfg.max_conns, 4);
	assert_int_equal(cfg.dir_cache_timeout, 30);
	assert_int_equal(cfg.timeout, 60);
	assert_int_equal(cfg.log_level, FS_LOG_WARNING);
	assert_false(cfg.read_only);
	assert_null(cfg.user);
	assert_int_equal(cfg.given, 0);
	table = fs_options(&n);
	assert_true(n >= G_N_ELEMENTS(names));
	for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
		const FsOption *o = fs_option_find(names[i]);

		assert_non_null(o);
		assert_string_equal(o->name, names[i]);
		assert_true(o >= table && o < table + n);
		assert_non_null(o->help);
	}
	assert_true(fs_option_find("config")->cli_only);
	assert_false(fs_option_find("user")->cli_only);
	assert_null(fs_option_find("password"));
	assert_null(fs_option_find("user="));
	fs_config_clear(&cfg);
}

static void
test_set_values(void **state)
{
	g_autoptr(GError) error = NULL;
	FsConfig cfg;

	(void)state;
	fs_config_init(&cfg);
	assert_true(fs_config_set(&cfg, "user", "bob@example.com", NULL));
	assert_string_equal(cfg.user, "bob@example.com");
	assert_true(fs_config_set(&cfg, "user", "carol", NULL));
	assert_string_equal(cfg.user, "carol");
	assert_true(fs_config_set(&cfg, "max_conns", "12", NULL));
	assert_int_equal(cfg.max_conns, 12);
	assert_true(fs_config_set(&cfg, "dir_cache_timeout", "0", NULL));
	assert_int_equal(cfg.dir_cache_timeout, 0);
	assert_true(fs_config_set(&cfg, "log_level", "INFO", NULL));
	assert_int_equal(cfg.log_level, FS_LOG_INFO);
	assert_true(fs_config_is_given(&cfg, "user"));
	assert_true(fs_config_is_given(&cfg, "max_conns"));
	assert_false(fs_config_is_given(&cfg, "timeout"));

	assert_false(fs_config_set(&cfg, "max_conns", "0", &error));
	assert_string_equal(error->message,
	                    "max_conns=0: want a whole number from 1 to 1000");
	g_clear_error(&error);
	assert_false(fs_config_set(&cfg, "timeout", "-5", &error));
	g_clear_error(&error);
	assert_false(fs_config_set(&cfg, "timeout", "10s", &error));
	g_clear_error(&error);
	assert_int_equal(cfg.timeout, 60);
	assert_false(fs_config_set(&cfg, "user", NULL, &error));
	assert_string_equal(error->message, "user=: a value is needed");
	g_clear_error(&error);
	assert_false(fs_config_set(&cfg, "trash", "", &error));
	g_clear_error(&error);
	assert_false(fs_config_set(&cfg, "log_level", "loud", &error));
	g_clear_error(&error);
	assert_false(fs_config_set(&cfg, "nosuch", "1", &error));
	assert_true(g_error_matches(error, FS_CONFIG_ERROR,
	                            FS_CONFIG_ERROR_UNKNOWN_KEY));
	assert_string_equal(error->message, "unknown option 'nosuch'");
	fs_config_clear(&cfg);
}

static void
test_booleans(void **state)
{
	static const char *const yes[] = {"true", "yes", "1", "TRUE", "Yes"};
	static const char *const no[] = {"false", "no", "0", "False", "NO"};
	g_autoptr(GError) error = NULL;
	FsConfig cfg;
	gboolean b;

	(void)state;
	fs_config_init(&cfg);
	for (gsize i = 0; i < G_N_ELEMENTS(yes); i++) {
		cfg.read_only = FALSE;
		assert_true(fs_config_set(&cfg, "read_only", yes[i], NULL));
		assert_true(cfg.read_only);
		assert_true(fs_config_set(&cfg, "read_only", no[i], NULL));
		assert_false(cfg.read_only);
	}
	assert_true(fs_config_set(&cfg, "exact_sizes", NULL, NULL));
	assert_true(cfg.exact_sizes);
	assert_false(fs_config_set(&cfg, "exact_sizes", "on", &error));
	assert_string_equal(error->message,
	                    "exact_sizes=on: want true/false/yes/no/1/0");
	assert_true(cfg.exact_sizes);
	assert_false(fs_config_parse_bool("", &b));
	assert_false(fs_config_parse_bool("2", &b));
	assert_false(fs_config_parse_bool("yess", &b));
	fs_config_clear(&cfg);
}

static void
test_sizes(void **state)
{
	guint64 v = 7;

	(void)state;
	assert_true(fs_config_parse_size("0", &v));
	assert_int_equal(v, 0);
	assert_true(fs_config_parse_size("200K", &v));
	assert_int_equal(v, 204800);
	assert_true(fs_config_parse_size("512m", &v));
	assert_int_equal(v, 536870912);
	assert_true(fs_config_parse_size("3G", &v));
	assert_int_equal(v, G_GUINT64_CONSTANT(3221225472));
	assert_true(fs_config_parse_size("2T", &v));
	assert_int_equal(v, G_GUINT64_CONSTANT(2199023255552));
	assert_true(fs_config_parse_size("18446744073709551615", &v));
	assert_int_equal(v, G_MAXUINT64);
	v = 7;
	assert_false(fs_config_parse_size("18446744073709551616", &v));
	assert_false(fs_config_parse_size("16777216T", &v));
	assert_false(fs_config_parse_size("", &v));
	assert_false(fs_config_parse_size("K", &v));
	assert_false(fs_config_parse_size("-1", &v));
	assert_false(fs_config_parse_size(" 1", &v));
	assert_false(fs_config_parse_size("1KB", &v));
	assert_false(fs_config_parse_size("1X", &v));
	assert_false(fs_config_parse_size("1.5G", &v));
	assert_int_equal(v, 7);
}

static void
test_home_expansion(void **state)
{
	g_autofree char *saved = g_strdup(g_getenv("HOME"));
	FsConfig cfg;

	(void)state;
	g_setenv("HOME", "/home/alice", TRUE);
	fs_config_init(&cfg);
	assert_true(fs_config_set(&cfg, "password_file", "~/.imap-pw", NULL));
	assert_string_equal(cfg.password_file, "/home/alice/.imap-pw");
	assert_true(fs_config_set(&cfg, "tls_ca_file", "/etc/ca.pem", NULL));
	assert_string_equal(cfg.tls_ca_file, "/etc/ca.pem");
	/* Commands are the shell's business, not ours. */
	assert_true(fs_config_set(&cfg, "password_command", "cat ~/pw", NULL));
	assert_string_equal(cfg.password_command, "cat ~/pw");
	fs_config_clear(&cfg);
	g_setenv("HOME", saved, TRUE);
}

static void
test_is_account(void **state)
{
	(void)state;
	assert_true(fs_config_is_account("work"));
	assert_true(fs_config_is_account("alice@example.com"));
	assert_false(fs_config_is_account("imaps://alice@example.com/"));
	assert_false(fs_config_is_account("imap://h"));
	assert_false(fs_config_is_account("foo://x"));
}

static void
test_xdg(void **state)
{
	g_autofree char *saved_home = g_strdup(g_getenv("HOME"));
	g_autofree char *p1 = NULL, *p2 = NULL, *p3 = NULL;

	(void)state;
	g_setenv("HOME", "/home/alice", TRUE);
	g_setenv("XDG_CONFIG_HOME", "/srv/cfg", TRUE);
	p1 = fs_config_default_path();
	assert_string_equal(p1, "/srv/cfg/imapfs/config");
	/* A relative XDG_CONFIG_HOME is invalid by the spec: ignored. */
	g_setenv("XDG_CONFIG_HOME", "relative/cfg", TRUE);
	p2 = fs_config_default_path();
	assert_string_equal(p2, "/home/alice/.config/imapfs/config");
	g_unsetenv("XDG_CONFIG_HOME");
	p3 = fs_config_default_path();
	assert_string_equal(p3, "/home/alice/.config/imapfs/config");
	g_setenv("HOME", saved_home, TRUE);
}

static const char sample[] = "# accounts\n"
                             "[work]\n"
                             "url = imaps://alice@mail.example.com/\n"
                             "user = alice.w\n"
                             "password_command = pass show mail/work\n"
                             "tls_fingerprint = sha256:AB01\n"
                             "read_only = yes\n"
                             "exact_sizes = 0\n"
                             "max_conns = 2\n"
                             "timeout = 15\n"
                             "trash = Deleted\\sItems\n"
                             "log_level = info\n"
                             "\n"
                             "[home]\n"
                             "url = imap://bob@localhost:1143\n"
                             "allow_plaintext = true\n"
                             "debug_imap = 1\n";

static void
test_load_account(void **state)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *path = write_file("a/config", sample, 0600);
	FsConfig cfg;

	(void)state;
	fs_config_init(&cfg);
	assert_true(fs_config_load_account(&cfg, path, "work", &error));
	assert_null(error);
	assert_string_equal(cfg.account, "work");
	assert_string_equal(cfg.url, "imaps://alice@mail.example.com/");
	assert_string_equal(cfg.user, "alice.w");
	assert_string_equal(cfg.password_command, "pass show mail/work");
	assert_string_equal(cfg.tls_fingerprint, "sha256:AB01");
	assert_string_equal(cfg.trash, "Deleted Items");
	assert_true(cfg.read_only);
	assert_false(cfg.exact_sizes);
	assert_int_equal(cfg.max_conns, 2);
	assert_int_equal(cfg.timeout, 15);
	assert_int_equal(cfg.dir_cache_timeout, 30);
	assert_int_equal(cfg.log_level, FS_LOG_INFO);
	assert_false(cfg.allow_plaintext);
	assert_null(cfg.password_file);
	fs_config_clear(&cfg);

	fs_config_init(&cfg);
	assert_true(fs_config_load_account(&cfg, path, "home", NULL));
	assert_string_equal(cfg.url, "imap://bob@localhost:1143");
	assert_true(cfg.allow_plaintext);
	assert_true(cfg.debug_imap);
	assert_null(cfg.user);
	assert_false(cfg.read_only);
	fs_config_clear(&cfg);
}

/* What the command line gave stays; the file fills in the rest. */
static void
test_precedence(void **state)
{
	g_autofree char *path = write_file("b/config", sample, 0600);
	FsConfig cfg;

	(void)state;
	fs_config_init(&cfg);
	assert_true(fs_config_set(&cfg, "user", "override", NULL));
	assert_true(fs_config_set(&cfg, "read_only", "no", NULL));
	assert_true(fs_config_set(&cfg, "max_conns", "9", NULL));
	assert_true(fs_config_set(&cfg, "password_file", "/pw", NULL));
	assert_true(fs_config_load_account(&cfg, path, "work", NULL));
	assert_string_equal(cfg.user, "override");
	assert_false(cfg.read_only);
	assert_int_equal(cfg.max_conns, 9);
	assert_string_equal(cfg.password_file, "/pw");
	/* Not on the command line: from the file. */
	assert_string_equal(cfg.password_command, "pass show mail/work");
	assert_int_equal(cfg.timeout, 15);
	fs_config_clear(&cfg);
}

/* template with its "%s" replaced by path. */
static char *
with_path(const char *template, const char *path)
{
	g_auto(GStrv) parts = g_strsplit(template, "%s", 2);

	return g_strjoinv(path, parts);
}

static void
expect_load_error(const char *text, const char *account, int code,
                  const char *message)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *path = write_file("e/config", text, 0600);
	g_autofree char *want = NULL;
	FsConfig cfg;

	fs_config_init(&cfg);
	assert_false(fs_config_load_account(&cfg, path, account, &error));
	assert_non_null(error);
	assert_true(g_error_matches(error, FS_CONFIG_ERROR, code));
	want = with_path(message, path);
	assert_string_equal(error->message, want);
	assert_null(cfg.url);
	assert_null(cfg.account);
	fs_config_clear(&cfg);
}

static void
test_unknown_keys(void **state)
{
	(void)state;
	expect_load_error("[work]\nurl = imaps://a@b/\nread_onyl = yes\n",
	                  "work", FS_CONFIG_ERROR_UNKNOWN_KEY,
	                  "%s: [work] read_onyl: unknown key");
	expect_load_error("[work]\nurl = imaps://a@b/\npassword = hunter2\n",
	                  "work", FS_CONFIG_ERROR_UNKNOWN_KEY,
	                  "%s: [work] password: passwords are not kept in "
	                  "the config file; use password_command or "
	                  "password_file");
	/* config= only makes sense on the command line. */
	expect_load_error("[work]\nurl = imaps://a@b/\nconfig = /x\n", "work",
	                  FS_CONFIG_ERROR_UNKNOWN_KEY,
	                  "%s: [work] config: unknown key");
	expect_load_error("[work]\nurl = imaps://a@b/\nmax_conns = many\n",
	                  "work", FS_CONFIG_ERROR_VALUE,
	                  "%s: [work] max_conns: max_conns=many: want a "
	                  "whole number from 1 to 1000");
	expect_load_error("[work]\nurl = imaps://a@b/\nread_only = sure\n",
	                  "work", FS_CONFIG_ERROR_VALUE,
	                  "%s: [work] read_only: read_only=sure: want "
	                  "true/false/yes/no/1/0");
	/* Other accounts' keys are theirs to get right. */
	{
		FsConfig cfg;
		g_autofree char *path = write_file(
		    "f/config", "[a]\nurl = imaps://a@b/\n[b]\nbogus = 1\n",
		    0600);

		fs_config_init(&cfg);
		assert_true(fs_config_load_account(&cfg, path, "a", NULL));
		fs_config_clear(&cfg);
	}
}

static void
test_missing(void **state)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *nofile = g_build_filename(tmpdir, "none", NULL);
	g_autofree char *want = NULL;
	FsConfig cfg;

	(void)state;
	expect_load_error("[work]\nurl = imaps://a@b/\n", "play",
	                  FS_CONFIG_ERROR_NO_ACCOUNT,
	                  "no account [play] in %s (give an account name or "
	                  "a URL imaps://USER@HOST/)");
	expect_load_error("[work]\nuser = x\n", "work", FS_CONFIG_ERROR_NO_URL,
	                  "%s: [work] has no url = imaps://USER@HOST/");
	fs_config_init(&cfg);
	assert_false(fs_config_load_account(&cfg, nofile, "work", &error));
	want = g_strdup_printf("cannot read config file %s: No such file or "
	                       "directory",
	                       nofile);
	assert_string_equal(error->message, want);
	g_clear_error(&error);
	{
		g_autofree char *bad =
		    write_file("g/config", "url = x\n[work]\n", 0600);

		assert_false(fs_config_load_account(&cfg, bad, "work", &error));
		assert_true(g_error_matches(error, FS_CONFIG_ERROR,
		                            FS_CONFIG_ERROR_FILE));
		assert_non_null(strstr(error->message, bad));
	}
	fs_config_clear(&cfg);
}

/* The file names commands to run: others must not be able to write it. */
static void
test_unsafe_file(void **state)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *path =
	    write_file("h/config", "[w]\nurl = imaps://a@b/\n", 0620);
	g_autofree char *want = NULL;
	FsConfig cfg;

	(void)state;
	fs_config_init(&cfg);
	assert_false(fs_config_load_account(&cfg, path, "w", &error));
	want = g_strdup_printf("%s: writable by others (mode 0620); chmod "
	                       "go-w it",
	                       path);
	assert_string_equal(error->message, want);
	g_clear_error(&error);
	assert_int_equal(chmod(path, 0644), 0);
	assert_true(fs_config_load_account(&cfg, path, "w", NULL));
	fs_config_clear(&cfg);
}

/* fs_config_finish(): an account comes from $XDG_CONFIG_HOME's file or
 * -o config=, a URL is used as is; debug options raise the log level. */
static void
test_finish(void **state)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *xdg = g_build_filename(tmpdir, "xdg", NULL);
	g_autofree char *p1 = write_file("xdg/imapfs/config", sample, 0600);
	g_autofree char *p2 =
	    write_file("other.conf", "[work]\nurl = imaps://other@h/\n", 0600);
	FsConfig cfg;

	(void)state;
	g_setenv("XDG_CONFIG_HOME", xdg, TRUE);
	fs_config_init(&cfg);
	cfg.source = g_strdup("work");
	assert_true(fs_config_finish(&cfg, &error));
	assert_string_equal(cfg.url, "imaps://alice@mail.example.com/");
	assert_int_equal(cfg.log_level, FS_LOG_INFO);
	fs_config_clear(&cfg);

	fs_config_init(&cfg);
	cfg.source = g_strdup("work");
	assert_true(fs_config_set(&cfg, "config", p2, NULL));
	assert_true(fs_config_finish(&cfg, NULL));
	assert_string_equal(cfg.url, "imaps://other@h/");
	assert_null(cfg.user);
	fs_config_clear(&cfg);

	/* debug_imap in the file implies debug logging. */
	fs_config_init(&cfg);
	cfg.source = g_strdup("home");
	assert_true(fs_config_finish(&cfg, NULL));
	assert_int_equal(cfg.log_level, FS_LOG_DEBUG);
	fs_config_clear(&cfg);

	/* ... unless log_level is given; -d always does. */
	fs_config_init(&cfg);
	cfg.source = g_strdup("imaps://x@y/");
	assert_true(fs_config_set(&cfg, "debug_imap", NULL, NULL));
	assert_true(fs_config_set(&cfg, "log_level", "error", NULL));
	assert_true(fs_config_finish(&cfg, NULL));
	assert_string_equal(cfg.url, "imaps://x@y/");
	assert_null(cfg.account);
	assert_int_equal(cfg.log_level, FS_LOG_ERROR);
	cfg.fuse_debug = TRUE;
	assert_true(fs_config_finish(&cfg, NULL));
	assert_int_equal(cfg.log_level, FS_LOG_DEBUG);
	fs_config_clear(&cfg);

	fs_config_init(&cfg);
	cfg.source = g_strdup("nosuch");
	assert_false(fs_config_finish(&cfg, &error));
	assert_true(g_error_matches(error, FS_CONFIG_ERROR,
	                            FS_CONFIG_ERROR_NO_ACCOUNT));
	fs_config_clear(&cfg);
	g_unsetenv("XDG_CONFIG_HOME");
}

static void
test_log_format(void **state)
{
	g_autofree char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

	(void)state;
	a = fs_log_format(G_LOG_LEVEL_WARNING, "imapfs",
	                  "mkdir /X failed (File exists): Mailbox exists");
	assert_string_equal(a, "imapfs: warning: mkdir /X failed (File "
	                       "exists): Mailbox exists");
	b = fs_log_format(G_LOG_LEVEL_MESSAGE, "imap", "connection lost");
	assert_string_equal(b, "imapfs: info: imap: connection lost");
	/* A server's text cannot start a second line. */
	c = fs_log_format(G_LOG_LEVEL_DEBUG, "imapfs-cache",
	                  "bad\r\nimapfs: error: forged\x7f");
	assert_string_equal(c, "imapfs: debug: imapfs-cache: "
	                       "bad\\x0d\\x0aimapfs: error: forged\\x7f");
	d = fs_log_format(G_LOG_LEVEL_CRITICAL, NULL, NULL);
	assert_string_equal(d, "imapfs: error: ");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_set_values),
	    cmocka_unit_test(test_booleans),
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_home_expansion),
	    cmocka_unit_test(test_is_account),
	    cmocka_unit_test(test_xdg),
	    cmocka_unit_test(test_load_account),
	    cmocka_unit_test(test_precedence),
	    cmocka_unit_test(test_unknown_keys),
	    cmocka_unit_test(test_missing),
	    cmocka_unit_test(test_unsafe_file),
	    cmocka_unit_test(test_finish),
	    cmocka_unit_test(test_log_format),
	};

	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
