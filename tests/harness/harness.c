/* harness.c - runs tests/harness/dovecot.sh (or cyrus.sh), imapcheck.py and
 * fakeserver.py for the integration tests (see harness.h). */
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#ifndef TEST_SOURCE_DIR
#define TEST_SOURCE_DIR "tests"
#endif

/* Servers still running, stopped before aborting so that a failing test
 * leaves no server behind. */
static GPtrArray *live_servers;

static const char *
source_dir(void)
{
	const char *env = g_getenv("TEST_SOURCE_DIR");

	return env != NULL && *env != '\0' ? env : TEST_SOURCE_DIR;
}

static char *
harness_file(const char *name)
{
	return g_build_filename(source_dir(), "harness", name, NULL);
}

static void
skip(const char *why)
{
	printf("SKIP: %s\n", why);
	fflush(stdout);
	exit(77);
}

TestServerKind
test_server_kind(void)
{
	const char *env = g_getenv("IMAP_SERVER");

	if (env == NULL || *env == '\0' || strcmp(env, "dovecot") == 0)
		return TEST_SERVER_DOVECOT;
	if (strcmp(env, "cyrus") == 0)
		return TEST_SERVER_CYRUS;
	fprintf(stderr, "harness: unknown IMAP_SERVER=%s (dovecot, cyrus)\n",
	        env);
	exit(2);
}

const char *
test_server_kind_name(TestServerKind kind)
{
	return kind == TEST_SERVER_CYRUS ? "Cyrus" : "Dovecot";
}

/* The start/stop script of kind, e.g. "cyrus.sh". */
static const char *
server_script(TestServerKind kind)
{
	return kind == TEST_SERVER_CYRUS ? "cyrus.sh" : "dovecot.sh";
}

static void stop_server_processes(TestServer *s);

static G_GNUC_NORETURN G_GNUC_PRINTF(1, 2) void harness_fail(const char *fmt,
                                                             ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("harness: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fflush(stderr);
	while (live_servers != NULL && live_servers->len > 0) {
		TestServer *s = g_ptr_array_steal_index(live_servers, 0);

		stop_server_processes(s);
	}
	abort();
}

/* Runs argv, capturing stdout (and stderr if err is not NULL, else it goes
 * to ours). Returns the exit status, or -1 if it could not run. */
static int
run(char **argv, char **out, char **err)
{
	GError *error = NULL;
	int wait_status = 0;
	GSpawnFlags flags = G_SPAWN_SEARCH_PATH;

	if (err == NULL)
		flags |= G_SPAWN_CHILD_INHERITS_STDERR;
	if (!g_spawn_sync(NULL, argv, NULL, flags, NULL, NULL, out, err,
	                  &wait_status, &error)) {
		fprintf(stderr, "harness: cannot run %s: %s\n", argv[0],
		        error->message);
		g_error_free(error);
		return -1;
	}
	if (WIFEXITED(wait_status))
		return WEXITSTATUS(wait_status);
	return 128 + (WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0);
}

static void
print_log_tail(TestServerKind kind, const char *dir)
{
	/* Cyrus's master writes its own and its services' stderr there; the
	 * services log the rest to syslog. */
	char *log = g_build_filename(
	    dir, kind == TEST_SERVER_CYRUS ? "master.log" : "dovecot.log",
	    NULL);
	char *text = NULL;

	if (g_file_get_contents(log, &text, NULL, NULL))
		fprintf(stderr, "--- %s ---\n%s--- end of log ---\n", log,
		        text);
	g_free(text);
	g_free(log);
}

static void
check_prerequisites(TestServerKind kind)
{
	char *dovecot, *python;

	if (geteuid() != 0) {
		char *why = g_strdup_printf("integration tests need root to "
		                            "run %s",
		                            test_server_kind_name(kind));

		skip(why);
	}
	python = g_find_program_in_path("python3");
	if (python == NULL)
		skip("python3 is not installed");
	g_free(python);
	/* cyrus.sh exits 77 itself when Cyrus is not unpacked. */
	if (kind == TEST_SERVER_CYRUS)
		return;
	dovecot = g_find_program_in_path("dovecot");
	if (dovecot == NULL &&
	    g_file_test("/usr/sbin/dovecot", G_FILE_TEST_IS_EXECUTABLE))
		dovecot = g_strdup("/usr/sbin/dovecot");
	if (dovecot == NULL)
		skip(
		    "dovecot is not installed (apt-get install dovecot-imapd)");
	g_free(dovecot);
}

static char **
field_for_key(TestServer *s, const char *key)
{
	static const struct {
		const char *key;
		size_t offset;
	} fields[] = {
	    {"DIR", G_STRUCT_OFFSET(TestServer, dir)},
	    {"HOST", G_STRUCT_OFFSET(TestServer, host)},
	    {"PORT", G_STRUCT_OFFSET(TestServer, port)},
	    {"TLS_PORT", G_STRUCT_OFFSET(TestServer, tls_port)},
	    {"USER", G_STRUCT_OFFSET(TestServer, user)},
	    {"PASSWORD", G_STRUCT_OFFSET(TestServer, password)},
	    {"CA_FILE", G_STRUCT_OFFSET(TestServer, ca_file)},
	    {"OTHER_CA_FILE", G_STRUCT_OFFSET(TestServer, other_ca_file)},
	    {"CERT_NAME", G_STRUCT_OFFSET(TestServer, cert_name)},
	};

	for (size_t i = 0; i < G_N_ELEMENTS(fields); i++)
		if (strcmp(fields[i].key, key) == 0)
			return G_STRUCT_MEMBER_P(s, fields[i].offset);
	return NULL;
}

/* Fills s from the start script's KEY=value lines; FALSE if one is
 * missing. */
static gboolean
parse_server_info(TestServer *s, const char *text)
{
	char **lines = g_strsplit(text, "\n", -1);

	for (char **l = lines; *l != NULL; l++) {
		char *eq = strchr(*l, '=');
		char **field;

		if (eq == NULL)
			continue;
		*eq = '\0';
		/* Only cyrus.sh prints it (its delimiter can be changed);
		 * dovecot.sh's namespace always uses '/'. */
		if (strcmp(*l, "DELIMITER") == 0 && strlen(eq + 1) == 1) {
			s->delimiter = eq[1];
			continue;
		}
		field = field_for_key(s, *l);
		if (field != NULL) {
			g_free(*field);
			*field = g_strdup(eq + 1);
		}
	}
	g_strfreev(lines);
	return s->dir != NULL && s->host != NULL && s->port != NULL &&
	       s->tls_port != NULL && s->user != NULL && s->password != NULL &&
	       s->ca_file != NULL && s->other_ca_file != NULL &&
	       s->cert_name != NULL;
}

static void
free_server(TestServer *s)
{
	g_free(s->dir);
	g_free(s->host);
	g_free(s->port);
	g_free(s->tls_port);
	g_free(s->user);
	g_free(s->password);
	g_free(s->ca_file);
	g_free(s->cert_name);
	g_free(s->other_ca_file);
	g_free(s);
}

static void
build_start_argv(GPtrArray *argv, TestServerKind kind, const char *dir,
                 const TestServerOptions *opts)
{
	g_ptr_array_add(argv, g_strdup("bash"));
	g_ptr_array_add(argv, harness_file(server_script(kind)));
	g_ptr_array_add(argv, g_strdup("start"));
	g_ptr_array_add(argv, g_strdup(dir));
	g_ptr_array_add(argv, g_strdup("--watch-pid"));
	g_ptr_array_add(argv, g_strdup_printf("%ld", (long)getpid()));
	if (opts == NULL)
		return;
	/* Cyrus has no setting that replaces its capability list. */
	if (kind == TEST_SERVER_CYRUS &&
	    (opts->capability != NULL || opts->extra_conf != NULL))
		harness_fail("capability and extra_conf are Dovecot-only: "
		             "the test must skip them with Cyrus");
	if (opts->capability != NULL) {
		g_ptr_array_add(argv, g_strdup("--capability"));
		g_ptr_array_add(argv, g_strdup(opts->capability));
	}
	if (opts->quota_kb > 0) {
		g_ptr_array_add(argv, g_strdup("--quota-kb"));
		g_ptr_array_add(argv, g_strdup_printf("%" G_GUINT64_FORMAT,
		                                      opts->quota_kb));
	}
	if (opts->extra_conf != NULL) {
		char *path = g_build_filename(dir, "extra.conf", NULL);
		GError *error = NULL;

		if (!g_file_set_contents(path, opts->extra_conf, -1, &error))
			harness_fail("cannot write %s: %s", path,
			             error->message);
		g_ptr_array_add(argv, g_strdup("--extra-conf"));
		g_ptr_array_add(argv, path);
	}
}

TestServer *
test_server_start(const TestServerOptions *opts)
{
	TestServerKind kind = test_server_kind();
	const char *script = server_script(kind);
	GError *error = NULL;
	GPtrArray *argv;
	TestServer *s;
	char *dir, *out = NULL;
	int status;

	check_prerequisites(kind);
	dir = g_dir_make_tmp("imapfs-test-XXXXXX", &error);
	if (dir == NULL)
		harness_fail("cannot make a temp dir: %s", error->message);

	argv = g_ptr_array_new_with_free_func(g_free);
	build_start_argv(argv, kind, dir, opts);
	g_ptr_array_add(argv, NULL);
	status = run((char **)argv->pdata, &out, NULL);
	g_ptr_array_unref(argv);
	if (status == 77) {
		g_rmdir(dir);
		skip(g_strdup_printf("%s is not available (see above)",
		                     test_server_kind_name(kind)));
	}
	if (status != 0) {
		print_log_tail(kind, dir);
		harness_fail("%s start %s failed (status %d)", script, dir,
		             status);
	}

	s = g_new0(TestServer, 1);
	s->kind = kind;
	s->delimiter = '/';
	if (!parse_server_info(s, out))
		harness_fail("%s printed incomplete info:\n%s", script, out);
	g_free(out);
	g_free(dir);
	if (live_servers == NULL)
		live_servers = g_ptr_array_new();
	g_ptr_array_add(live_servers, s);
	return s;
}

static void
stop_server_processes(TestServer *s)
{
	char *script = harness_file(server_script(s->kind));
	char *argv[] = {"bash", script, "stop", s->dir, NULL};

	if (run(argv, NULL, NULL) != 0)
		fprintf(stderr, "harness: %s stop %s failed\n",
		        server_script(s->kind), s->dir);
	g_free(script);
}

void
test_server_stop(TestServer *s)
{
	char *argv[] = {"rm", "-rf", NULL, NULL};

	if (s == NULL)
		return;
	if (live_servers != NULL)
		g_ptr_array_remove(live_servers, s);
	stop_server_processes(s);
	argv[2] = s->dir;
	if (run(argv, NULL, NULL) != 0)
		fprintf(stderr, "harness: cannot remove %s\n", s->dir);
	free_server(s);
}

static GPtrArray *
check_argv(TestServer *s, va_list ap)
{
	GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
	const char *arg;

	g_ptr_array_add(argv, g_strdup("python3"));
	g_ptr_array_add(argv, harness_file("imapcheck.py"));
	g_ptr_array_add(argv, g_strdup("--host"));
	g_ptr_array_add(argv, g_strdup(s->host));
	g_ptr_array_add(argv, g_strdup("--port"));
	g_ptr_array_add(argv, g_strdup(s->port));
	g_ptr_array_add(argv, g_strdup("--user"));
	g_ptr_array_add(argv, g_strdup(s->user));
	g_ptr_array_add(argv, g_strdup("--password"));
	g_ptr_array_add(argv, g_strdup(s->password));
	g_ptr_array_add(argv, g_strdup("--ca"));
	g_ptr_array_add(argv, g_strdup(s->ca_file));
	while ((arg = va_arg(ap, const char *)) != NULL)
		g_ptr_array_add(argv, g_strdup(arg));
	g_ptr_array_add(argv, NULL);
	return argv;
}

static int
run_check(TestServer *s, char **out, va_list ap)
{
	GPtrArray *argv = check_argv(s, ap);
	int status;

	status = run((char **)argv->pdata, out, NULL);
	g_ptr_array_unref(argv);
	return status;
}

char *
test_server_check(TestServer *s, ...)
{
	va_list ap, copy;
	char *out = NULL;
	int status;

	va_start(ap, s);
	va_copy(copy, ap);
	status = run_check(s, &out, ap);
	va_end(ap);
	if (status != 0) {
		GString *cmd = g_string_new("imapcheck.py");
		const char *arg;

		while ((arg = va_arg(copy, const char *)) != NULL)
			g_string_append_printf(cmd, " '%s'", arg);
		va_end(copy);
		print_log_tail(s->kind, s->dir);
		harness_fail("%s exited with %d, output:\n%s", cmd->str, status,
		             out != NULL ? out : "");
	}
	va_end(copy);
	return out;
}

int
test_server_check_status(TestServer *s, char **out, ...)
{
	va_list ap;
	char *captured = NULL;
	int status;

	va_start(ap, out);
	status = run_check(s, &captured, ap);
	va_end(ap);
	if (out != NULL)
		*out = captured;
	else
		g_free(captured);
	return status;
}

guint32
test_server_append(TestServer *s, const char *mailbox, const char *message,
                   gsize len, const char *flags)
{
	static unsigned serial;
	GError *error = NULL;
	char *name, *path, *out, *end;
	guint64 uid;

	name = g_strdup_printf("append-%u.eml", serial++);
	path = g_build_filename(s->dir, name, NULL);
	g_free(name);
	if (!g_file_set_contents(path, message, (gssize)len, &error))
		harness_fail("cannot write %s: %s", path, error->message);
	if (flags != NULL)
		out =
		    test_server_check(s, "append", mailbox, path, flags, NULL);
	else
		out = test_server_check(s, "append", mailbox, path, NULL);
	g_unlink(path);
	g_free(path);
	uid = g_ascii_strtoull(out, &end, 10);
	if (end == out || uid == 0 || uid > G_MAXUINT32)
		harness_fail("append printed no UID: '%s'", out);
	g_free(out);
	return (guint32)uid;
}

FakeServer *
fake_server_start(const char *script)
{
	GError *error = NULL;
	FakeServer *f = g_new0(FakeServer, 1);
	char *fakeserver = harness_file("fakeserver.py");
	char *argv[] = {"python3", fakeserver, NULL, NULL};
	GString *line = g_string_new(NULL);
	int out_fd;
	char c;

	f->dir = g_dir_make_tmp("imapfs-fake-XXXXXX", &error);
	if (f->dir == NULL)
		harness_fail("cannot make a temp dir: %s", error->message);
	f->script_path = g_build_filename(f->dir, "script", NULL);
	if (!g_file_set_contents(f->script_path, script, -1, &error))
		harness_fail("cannot write the script: %s", error->message);
	argv[2] = f->script_path;
	if (!g_spawn_async_with_pipes(
	        NULL, argv, NULL,
	        G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
	        &f->pid, NULL, &out_fd, NULL, &error))
		harness_fail("cannot run fakeserver.py: %s", error->message);
	g_free(fakeserver);

	/* fakeserver.py prints "PORT=n\n" once it listens. */
	while (read(out_fd, &c, 1) == 1 && c != '\n')
		g_string_append_c(line, c);
	close(out_fd);
	if (!g_str_has_prefix(line->str, "PORT="))
		harness_fail("fakeserver.py did not start: '%s'", line->str);
	f->port = g_strdup(line->str + strlen("PORT="));
	g_string_free(line, TRUE);
	/* It read the script before listening: nothing is left behind even
	 * if the test aborts. */
	g_unlink(f->script_path);
	g_rmdir(f->dir);
	return f;
}

int
fake_server_finish(FakeServer *f)
{
	int wait_status = 0, status;

	while (waitpid(f->pid, &wait_status, 0) < 0 && errno == EINTR)
		;
	g_spawn_close_pid(f->pid);
	if (WIFEXITED(wait_status))
		status = WEXITSTATUS(wait_status);
	else
		status = 128 +
		         (WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0);
	g_free(f->script_path);
	g_free(f->dir);
	g_free(f->port);
	g_free(f);
	return status;
}

TestCerts *
test_certs_make(void)
{
	GError *error = NULL;
	TestCerts *c = g_new0(TestCerts, 1);
	char *script = harness_file("dovecot.sh");
	char *argv[] = {"bash", script, "certs", NULL, NULL};
	char *out = NULL;

	c->dir = g_dir_make_tmp("imapfs-certs-XXXXXX", &error);
	if (c->dir == NULL)
		harness_fail("cannot make a temp dir: %s", error->message);
	argv[3] = c->dir;
	if (run(argv, &out, NULL) != 0)
		harness_fail("dovecot.sh certs %s failed", c->dir);
	g_free(out);
	g_free(script);
	c->ca_file = g_build_filename(c->dir, "certs", "ca.pem", NULL);
	c->other_ca_file =
	    g_build_filename(c->dir, "certs", "other-ca.pem", NULL);
	c->cert_file = g_build_filename(c->dir, "certs", "server.pem", NULL);
	c->key_file = g_build_filename(c->dir, "certs", "server.key", NULL);
	c->cert_name = g_strdup("localhost");
	return c;
}

void
test_certs_free(TestCerts *c)
{
	char *argv[] = {"rm", "-rf", NULL, NULL};

	if (c == NULL)
		return;
	argv[2] = c->dir;
	run(argv, NULL, NULL);
	g_free(c->dir);
	g_free(c->ca_file);
	g_free(c->other_ca_file);
	g_free(c->cert_file);
	g_free(c->key_file);
	g_free(c->cert_name);
	g_free(c);
}
