/* test_secret.c - password sources: command, file, environment, the prompt
 * (driven through a pseudo-terminal) and their order of precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <pty.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "fs/secret.h"
#include "testutil.h"

#define NO_TTY "/nonexistent/tty"

/* What the user types at the prompt. */
#define CTRL_A  "\001"
#define CTRL_C  "\003"
#define CTRL_D  "\004"
#define CTRL_U  "\025"
#define DEL     "\177"
#define E_ACUTE "\303\251"

/* Each test starts without IMAPFS_PASSWORD. */
static int
clear_env(void **state)
{
	(void)state;
	g_unsetenv(FS_SECRET_ENV);
	return 0;
}

static char *
write_file(const char *name, const char *content, mode_t mode)
{
	char *path = g_build_filename(tmpdir, name, NULL);

	unlink(path);
	assert_true(g_file_set_contents(path, content, -1, NULL));
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

/* The helpers take GError ** so that the call setting it is evaluated
 * before *error is read, whatever the argument evaluation order. */
static void
assert_secret(char *secret, GError **error, const char *want)
{
	if (secret == NULL)
		fail_msg("expected '%s', got error: %s", want,
		         *error != NULL ? (*error)->message : "(none)");
	assert_null(*error);
	assert_string_equal(secret, want);
	fs_secret_free(secret);
}

static void
assert_failure(char *secret, GError **error, int code, const char *part)
{
	if (secret != NULL)
		fail_msg("expected an error, got secret '%s'", secret);
	assert_non_null(*error);
	if ((*error)->code != code || strstr((*error)->message, part) == NULL)
		fail_msg("got code %d '%s', want code %d containing '%s'",
		         (*error)->code, (*error)->message, code, part);
	g_clear_error(error);
}

static char *
run(const char *command, GError **error)
{
	return fs_secret_run_command("password_command", command, error);
}

static void
test_command_output(void **state)
{
	static const char *const cases[][2] = {
	    {"printf 'hunter2\\n'", "hunter2"},
	    {"printf 'hunter2\\r\\n'", "hunter2"},
	    {"printf hunter2", "hunter2"},
	    {"printf ' spaced pass '", " spaced pass "},
	    {"printf '\\303\\251t\\303\\251\\n'", "\xc3\xa9t\xc3\xa9"},
	    {"echo warning >&2; echo ok", "ok"},
	    {"head -c 300000 /dev/zero >&2; printf big-stderr", "big-stderr"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		GError *error = NULL;
		char *secret = run(cases[i][0], &error);

		assert_secret(secret, &error, cases[i][1]);
	}
}

static void
test_command_long_token(void **state)
{
	GError *error = NULL;
	char *secret = run("head -c 20000 /dev/zero | tr '\\0' t", &error);

	(void)state;
	assert_non_null(secret);
	assert_int_equal(strlen(secret), 20000);
	assert_int_equal(strspn(secret, "t"), 20000);
	fs_secret_free(secret);
}

static void
test_command_failures(void **state)
{
	static const struct {
		const char *command;
		int code;
		const char *part;
	} cases[] = {
	    {"echo 'vault is locked' >&2; exit 3", FS_SECRET_ERROR_COMMAND,
	     "password_command 'echo 'vault is locked' >&2; exit 3' failed "
	     "(exit status 3): vault is locked"},
	    {"echo out; exit 1", FS_SECRET_ERROR_COMMAND, "exit status 1"},
	    {"kill -TERM $$", FS_SECRET_ERROR_COMMAND, "killed by signal 15"},
	    {"true", FS_SECRET_ERROR_COMMAND, "'true' printed nothing"},
	    {"echo", FS_SECRET_ERROR_COMMAND, "printed nothing"},
	    {"echo 'no entry' >&2", FS_SECRET_ERROR_COMMAND,
	     "printed nothing: no entry"},
	    {"/nonexistent/helper", FS_SECRET_ERROR_COMMAND, "exit status 127"},
	    {"printf 'a\\n\\n'", FS_SECRET_ERROR_INVALID, "more than one line"},
	    {"printf 'line1\\nline2\\n'", FS_SECRET_ERROR_INVALID,
	     "more than one line"},
	    {"printf 'a\\000b'", FS_SECRET_ERROR_INVALID, "NUL"},
	    {"head -c 70000 /dev/zero | tr '\\0' x", FS_SECRET_ERROR_INVALID,
	     "more than 65536 bytes"},
	    {"yes", FS_SECRET_ERROR_INVALID, "more than 65536 bytes"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		GError *error = NULL;
		char *secret = run(cases[i].command, &error);

		assert_failure(secret, &error, cases[i].code, cases[i].part);
	}
}

static void
test_command_label(void **state)
{
	GError *error = NULL;
	char *secret =
	    fs_secret_run_command("oauth2_token_command", "exit 2", &error);

	(void)state;
	assert_null(secret);
	assert_true(g_str_has_prefix(
	    error->message, "oauth2_token_command 'exit 2' failed (exit "
	                    "status 2)"));
	g_error_free(error);
}

static void
test_command_environment(void **state)
{
	GError *error = NULL;
	char *secret;

	(void)state;
	g_setenv(FS_SECRET_ENV, "from-env", TRUE);
	g_setenv("IMAPFS_TEST_MARK", "kept", TRUE);
	secret = run("printf '%s/%s' \"${IMAPFS_PASSWORD-absent}\" "
	             "\"$IMAPFS_TEST_MARK\"",
	             &error);
	assert_secret(secret, &error, "absent/kept");
	/* running a command does not consume the variable */
	assert_string_equal(g_getenv(FS_SECRET_ENV), "from-env");
	g_unsetenv("IMAPFS_TEST_MARK");
}

static void
test_file_accepted(void **state)
{
	static const struct {
		const char *content;
		mode_t mode;
		const char *want;
	} cases[] = {
	    {"filepw\n", 0600, "filepw"},   {"filepw", 0600, "filepw"},
	    {"filepw\r\n", 0600, "filepw"}, {"ro-pw\n", 0400, "ro-pw"},
	    {"x-pw\n", 0700, "x-pw"},       {" a b \n", 0600, " a b "},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *path =
		    write_file("pw", cases[i].content, cases[i].mode);
		GError *error = NULL;
		char *secret = fs_secret_read_file(path, &error);

		assert_secret(secret, &error, cases[i].want);
	}
}

static void
test_file_refused(void **state)
{
	static const struct {
		const char *content;
		mode_t mode;
		int code;
		const char *part;
	} cases[] = {
	    {"pw\n", 0644, FS_SECRET_ERROR_FILE, "has mode 0644"},
	    {"pw\n", 0640, FS_SECRET_ERROR_FILE, "chmod 600"},
	    {"pw\n", 0604, FS_SECRET_ERROR_FILE, "has mode 0604"},
	    {"pw\n", 0610, FS_SECRET_ERROR_FILE, "has mode 0610"},
	    {"pw\n", 0601, FS_SECRET_ERROR_FILE, "has mode 0601"},
	    {"pw\n", 0666, FS_SECRET_ERROR_FILE, "has mode 0666"},
	    {"", 0600, FS_SECRET_ERROR_FILE, "password_file is empty"},
	    {"\n", 0600, FS_SECRET_ERROR_FILE, "password_file is empty"},
	    {"pw\n\n", 0600, FS_SECRET_ERROR_INVALID, "more than one line"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *path =
		    write_file("pw", cases[i].content, cases[i].mode);
		GError *error = NULL;
		char *secret = fs_secret_read_file(path, &error);

		assert_failure(secret, &error, cases[i].code, cases[i].part);
	}
}

static void
test_file_not_regular(void **state)
{
	g_autofree char *dir = g_build_filename(tmpdir, "dir", NULL);
	g_autofree char *fifo = g_build_filename(tmpdir, "fifo", NULL);
	g_autofree char *missing = g_build_filename(tmpdir, "missing", NULL);
	GError *error = NULL;

	(void)state;
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_failure(fs_secret_read_file(dir, &error), &error,
	               FS_SECRET_ERROR_FILE, "not a regular file");
	/* a FIFO without a writer must be refused, not block open() */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_failure(fs_secret_read_file(fifo, &error), &error,
	               FS_SECRET_ERROR_FILE, "not a regular file");
	assert_failure(fs_secret_read_file(missing, &error), &error,
	               FS_SECRET_ERROR_FILE, "No such file");
}

static void
test_file_symlink_checks_target(void **state)
{
	g_autofree char *target = write_file("target", "linked\n", 0600);
	g_autofree char *link = g_build_filename(tmpdir, "link", NULL);
	GError *error = NULL;

	(void)state;
	unlink(link);
	assert_int_equal(symlink(target, link), 0);
	assert_secret(fs_secret_read_file(link, &error), &error, "linked");
	assert_int_equal(chmod(target, 0644), 0);
	assert_failure(fs_secret_read_file(link, &error), &error,
	               FS_SECRET_ERROR_FILE, "has mode 0644");
}

static void
test_file_other_owner(void **state)
{
	g_autofree char *path = write_file("theirs", "pw\n", 0600);
	GError *error = NULL;

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_failure(fs_secret_read_file(path, &error), &error,
	               FS_SECRET_ERROR_FILE, "is owned by uid 65534");
}

static void
test_env_taken(void **state)
{
	GError *error = NULL;
	const char *raw;

	(void)state;
	assert_null(fs_secret_take_env(&error));
	assert_null(error);

	g_setenv(FS_SECRET_ENV, "envpw", TRUE);
	assert_secret(fs_secret_take_env(&error), &error, "envpw");
	assert_null(g_getenv(FS_SECRET_ENV));
	assert_null(getenv(FS_SECRET_ENV));

	/* The value's bytes are wiped in place. glibc never frees strings
	 * that setenv() made, so they can still be read after unsetenv(). */
	g_setenv(FS_SECRET_ENV, "wipe-me", TRUE);
	raw = getenv(FS_SECRET_ENV);
	assert_secret(fs_secret_take_env(&error), &error, "wipe-me");
	assert_memory_equal(raw, "\0\0\0\0\0\0\0", 7);

	g_setenv(FS_SECRET_ENV, "", TRUE);
	assert_failure(fs_secret_take_env(&error), &error, FS_SECRET_ERROR_ENV,
	               "IMAPFS_PASSWORD is empty");
	assert_null(g_getenv(FS_SECRET_ENV));

	g_setenv(FS_SECRET_ENV, "two\nlines", TRUE);
	assert_failure(fs_secret_take_env(&error), &error,
	               FS_SECRET_ERROR_INVALID, "more than one line");
	assert_null(g_getenv(FS_SECRET_ENV));
}

static void
test_env_not_inherited_after_take(void **state)
{
	GError *error = NULL;
	char *secret;

	(void)state;
	g_setenv(FS_SECRET_ENV, "envpw", TRUE);
	fs_secret_free(fs_secret_take_env(&error));
	/* even a child started by other means no longer sees it */
	assert_int_equal(system("test -z \"${IMAPFS_PASSWORD+set}\""), 0);
	secret = run("printf %s \"${IMAPFS_PASSWORD-gone}\"", &error);
	assert_secret(secret, &error, "gone");
}

static void
test_precedence(void **state)
{
	g_autofree char *file = write_file("prec", "file-pw\n", 0600);
	FsSecretSources all = {"printf cmd-pw", file, NO_TTY, "alice", "h"};
	FsSecretSources file_only = {NULL, file, NO_TTY, "alice", "h"};
	FsSecretSources none = {NULL, NULL, NO_TTY, "alice", "h"};
	GError *error = NULL;

	(void)state;
	g_setenv(FS_SECRET_ENV, "env-pw", TRUE);
	assert_secret(fs_secret_get(&all, &error), &error, "cmd-pw");
	assert_null(g_getenv(FS_SECRET_ENV));

	g_setenv(FS_SECRET_ENV, "env-pw", TRUE);
	assert_secret(fs_secret_get(&file_only, &error), &error, "file-pw");
	assert_null(g_getenv(FS_SECRET_ENV));

	g_setenv(FS_SECRET_ENV, "env-pw", TRUE);
	assert_secret(fs_secret_get(&none, &error), &error, "env-pw");
	assert_null(g_getenv(FS_SECRET_ENV));
}

static void
test_first_source_failure_is_final(void **state)
{
	g_autofree char *file = write_file("final", "file-pw\n", 0600);
	g_autofree char *open_file = write_file("open", "file-pw\n", 0644);
	FsSecretSources failing_cmd = {"exit 4", file, NO_TTY, "a", "h"};
	FsSecretSources unsafe_file = {NULL, open_file, NO_TTY, "a", "h"};
	FsSecretSources none = {NULL, NULL, NO_TTY, "a", "h"};
	GError *error = NULL;

	(void)state;
	g_setenv(FS_SECRET_ENV, "env-pw", TRUE);
	assert_failure(fs_secret_get(&failing_cmd, &error), &error,
	               FS_SECRET_ERROR_COMMAND, "exit status 4");
	assert_null(g_getenv(FS_SECRET_ENV));

	g_setenv(FS_SECRET_ENV, "env-pw", TRUE);
	assert_failure(fs_secret_get(&unsafe_file, &error), &error,
	               FS_SECRET_ERROR_FILE, "has mode 0644");
	assert_null(g_getenv(FS_SECRET_ENV));

	g_setenv(FS_SECRET_ENV, "", TRUE);
	assert_failure(fs_secret_get(&none, &error), &error,
	               FS_SECRET_ERROR_ENV, "empty");
}

static void
test_no_source(void **state)
{
	static const char *const mentions[] = {
	    "password_command", "password_file", "IMAPFS_PASSWORD",
	    "terminal",         NO_TTY,
	};
	FsSecretSources none = {NULL, NULL, NO_TTY, "alice", "h"};
	FsSecretSources not_tty = {NULL, NULL, "/dev/null", "alice", "h"};
	GError *error = NULL;

	(void)state;
	assert_null(fs_secret_get(&none, &error));
	assert_true(
	    g_error_matches(error, FS_SECRET_ERROR, FS_SECRET_ERROR_NO_SOURCE));
	for (gsize i = 0; i < G_N_ELEMENTS(mentions); i++)
		assert_non_null(strstr(error->message, mentions[i]));
	g_clear_error(&error);

	assert_failure(fs_secret_get(&not_tty, &error), &error,
	               FS_SECRET_ERROR_NO_SOURCE,
	               "/dev/null is not a terminal");
	assert_failure(fs_secret_prompt("/dev/null", "P: ", &error), &error,
	               FS_SECRET_ERROR_NO_TTY, "not a terminal");
	assert_failure(fs_secret_prompt(NO_TTY, "P: ", &error), &error,
	               FS_SECRET_ERROR_NO_TTY, "cannot open");
}

/* The prompt is driven from a pseudo-terminal: a thread waits in the
 * prompt on the slave side while the test plays the user on the master. */
typedef struct {
	const FsSecretSources *sources; /* fs_secret_get() if set */
	char *tty;
	char *secret;
	GError *error;
} PromptJob;

static gpointer
prompt_thread(gpointer data)
{
	PromptJob *job = data;

	if (job->sources != NULL)
		job->secret = fs_secret_get(job->sources, &job->error);
	else
		job->secret =
		    fs_secret_prompt(job->tty, "Password: ", &job->error);
	return NULL;
}

/* Appends what the master side receives until expect appears, or for a
 * short while when expect is NULL. */
static void
read_screen(int master, GString *screen, const char *expect)
{
	int timeout = expect != NULL ? 5000 : 50;
	struct pollfd pfd = {master, POLLIN, 0};
	char chunk[256];

	while (expect == NULL || strstr(screen->str, expect) == NULL) {
		ssize_t n;

		if (poll(&pfd, 1, timeout) <= 0)
			break;
		n = read(master, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		g_string_append_len(screen, chunk, n);
	}
	if (expect != NULL && strstr(screen->str, expect) == NULL)
		fail_msg("prompt '%s' not shown; screen: '%s'", expect,
		         screen->str);
}

typedef struct {
	char *secret;
	GError *error;
	GString *screen;
	gboolean echo_off_while_reading;
	gboolean echo_restored;
} PromptResult;

static void
drive_prompt(const FsSecretSources *sources, const char *expect,
             const char *input, PromptResult *result)
{
	PromptJob job = {sources, NULL, NULL, NULL};
	FsSecretSources with_tty;
	struct termios t;
	GThread *thread;
	int master, slave;

	if (openpty(&master, &slave, NULL, NULL, NULL) != 0)
		skip(); /* no /dev/pts in this sandbox */
	job.tty = g_strdup(ttyname(slave));
	if (sources != NULL) {
		with_tty = *sources;
		with_tty.tty = job.tty;
		job.sources = &with_tty;
	}
	result->screen = g_string_new(NULL);
	thread = g_thread_new("prompt", prompt_thread, &job);
	read_screen(master, result->screen, expect);
	assert_int_equal(tcgetattr(slave, &t), 0);
	result->echo_off_while_reading = (t.c_lflag & ECHO) == 0;
	assert_int_equal(write(master, input, strlen(input)),
	                 (ssize_t)strlen(input));
	g_thread_join(thread);
	/* the newline the prompt prints last, once echo is back on */
	read_screen(master, result->screen, "\r\n");
	read_screen(master, result->screen, NULL);
	assert_int_equal(tcgetattr(slave, &t), 0);
	result->echo_restored =
	    (t.c_lflag & (ECHO | ICANON | ISIG)) == (ECHO | ICANON | ISIG);
	result->secret = job.secret;
	result->error = job.error;
	close(master);
	close(slave);
	g_free(job.tty);
}

static void
test_prompt_reads_without_echo(void **state)
{
	PromptResult r;

	(void)state;
	drive_prompt(NULL, "Password: ", "hunter2\r", &r);
	assert_secret(r.secret, &r.error, "hunter2");
	assert_true(r.echo_off_while_reading);
	assert_true(r.echo_restored);
	assert_null(strstr(r.screen->str, "hunter2"));
	assert_string_equal(r.screen->str, "Password: \r\n");
	g_string_free(r.screen, TRUE);
}

static void
test_prompt_editing(void **state)
{
	static const char *const cases[][2] = {
	    {"abX" DEL "c\n", "abc"},        {"zz" CTRL_U "pw\r", "pw"},
	    {"ab" DEL DEL DEL "cd\r", "cd"}, {E_ACUTE DEL "e\r", "e"},
	    {"x" E_ACUTE "\r", "x" E_ACUTE}, {"a" CTRL_A "b\r", "ab"},
	    {"p" CTRL_D "q\r", "pq"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		PromptResult r;

		drive_prompt(NULL, "Password: ", cases[i][0], &r);
		assert_secret(r.secret, &r.error, cases[i][1]);
		assert_true(r.echo_restored);
		g_string_free(r.screen, TRUE);
	}
}

static void
test_prompt_cancelled(void **state)
{
	static const char *const cases[][2] = {
	    {"abc" CTRL_C, "no password entered"},
	    {CTRL_D, "no password entered"},
	    {"\r", "the password entered is empty"},
	    {"a" DEL "\r", "the password entered is empty"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		PromptResult r;

		drive_prompt(NULL, "Password: ", cases[i][0], &r);
		assert_failure(r.secret, &r.error, FS_SECRET_ERROR_PROMPT,
		               cases[i][1]);
		assert_true(r.echo_restored);
		g_string_free(r.screen, TRUE);
	}
}

static void
test_get_prompts_last(void **state)
{
	FsSecretSources sources = {NULL, NULL, NULL, "alice@example.com",
	                           "mail.example.com"};
	FsSecretSources no_user = {NULL, NULL, NULL, NULL, "h"};
	PromptResult r;

	(void)state;
	drive_prompt(
	    &sources,
	    "Password for alice@example.com@mail.example.com: ", "typed\r", &r);
	assert_secret(r.secret, &r.error, "typed");
	g_string_free(r.screen, TRUE);

	drive_prompt(&no_user, "Password for h: ", "t2\r", &r);
	assert_secret(r.secret, &r.error, "t2");
	g_string_free(r.screen, TRUE);
}

static void
test_free_null(void **state)
{
	g_autoptr(FsSecret) secret = g_strdup("scoped");

	(void)state;
	fs_secret_free(NULL);
	assert_string_equal(secret, "scoped");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_command_output, clear_env),
	    cmocka_unit_test_setup(test_command_long_token, clear_env),
	    cmocka_unit_test_setup(test_command_failures, clear_env),
	    cmocka_unit_test_setup(test_command_label, clear_env),
	    cmocka_unit_test_setup(test_command_environment, clear_env),
	    cmocka_unit_test_setup(test_file_accepted, clear_env),
	    cmocka_unit_test_setup(test_file_refused, clear_env),
	    cmocka_unit_test_setup(test_file_not_regular, clear_env),
	    cmocka_unit_test_setup(test_file_symlink_checks_target, clear_env),
	    cmocka_unit_test_setup(test_file_other_owner, clear_env),
	    cmocka_unit_test_setup(test_env_taken, clear_env),
	    cmocka_unit_test_setup(test_env_not_inherited_after_take,
	                           clear_env),
	    cmocka_unit_test_setup(test_precedence, clear_env),
	    cmocka_unit_test_setup(test_first_source_failure_is_final,
	                           clear_env),
	    cmocka_unit_test_setup(test_no_source, clear_env),
	    cmocka_unit_test_setup(test_prompt_reads_without_echo, clear_env),
	    cmocka_unit_test_setup(test_prompt_editing, clear_env),
	    cmocka_unit_test_setup(test_prompt_cancelled, clear_env),
	    cmocka_unit_test_setup(test_get_prompts_last, clear_env),
	    cmocka_unit_test_setup(test_free_null, clear_env),
	};

	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
