/* secret.c - gets the password or token from a command, a private file,
 * IMAPFS_PASSWORD or a terminal prompt. Secret bytes are only ever held in
 * buffers this file allocates, so each copy can be wiped before it is
 * freed; GLib's string and spawn helpers would leave copies behind. */
#include "fs/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define READ_CHUNK  4096
#define STDERR_KEEP 4096
#define NO_SOURCE_ADVICE                                                       \
	"no password available: set password_command=CMD or "                  \
	"password_file=PATH, put it in the " FS_SECRET_ENV " environment "     \
	"variable, or run from a terminal to be prompted"

extern char **environ;

G_DEFINE_QUARK(fs - secret - error - quark, fs_secret_error)

typedef struct {
	char *data; /* NUL-terminated; every byte in [0, cap) is ours */
	gsize len;
	gsize cap;
} SecretBuf;

static void
wipe_and_free(char *data, gsize size)
{
	if (data == NULL)
		return;
	explicit_bzero(data, size);
	g_free(data);
}

static void
secret_buf_reserve(SecretBuf *buf, gsize more)
{
	gsize cap = buf->cap > 0 ? buf->cap : 256;
	char *data;

	if (buf->len + more + 1 <= buf->cap)
		return;
	while (cap < buf->len + more + 1)
		cap *= 2;
	data = g_malloc0(cap);
	if (buf->len > 0)
		memcpy(data, buf->data, buf->len);
	wipe_and_free(buf->data, buf->cap);
	buf->data = data;
	buf->cap = cap;
}

static void
secret_buf_wipe(SecretBuf *buf)
{
	wipe_and_free(buf->data, buf->cap);
	memset(buf, 0, sizeof(*buf));
}

/* One read(2) into the buffer: >0 bytes read, 0 at EOF, -1 on error. */
static ssize_t
secret_buf_read(SecretBuf *buf, int fd)
{
	ssize_t n;

	secret_buf_reserve(buf, READ_CHUNK);
	do
		n = read(fd, buf->data + buf->len, buf->cap - buf->len - 1);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		buf->len += (gsize)n;
		buf->data[buf->len] = '\0';
	}
	return n;
}

static void
secret_buf_append_byte(SecretBuf *buf, char c)
{
	secret_buf_reserve(buf, 1);
	buf->data[buf->len++] = c;
	buf->data[buf->len] = '\0';
}

static void
strip_one_newline(SecretBuf *buf)
{
	if (buf->len > 0 && buf->data[buf->len - 1] == '\n') {
		buf->len--;
		if (buf->len > 0 && buf->data[buf->len - 1] == '\r')
			buf->len--;
		buf->data[buf->len] = '\0';
	}
}

/* Hands the buffer over as the result if it holds a usable secret, and
 * wipes it otherwise. what names the source in messages. */
static char *
secret_buf_finish(SecretBuf *buf, int empty_code, const char *what,
                  GError **error)
{
	char *result;

	if (buf->len == 0) {
		g_set_error(error, FS_SECRET_ERROR, empty_code, "%s is empty",
		            what);
	} else if (memchr(buf->data, '\0', buf->len) != NULL ||
	           memchr(buf->data, '\n', buf->len) != NULL ||
	           memchr(buf->data, '\r', buf->len) != NULL) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_INVALID,
		            "%s holds more than one line or a NUL byte; it "
		            "must be the secret alone, optionally followed by "
		            "one newline",
		            what);
	} else {
		result = buf->data;
		memset(buf, 0, sizeof(*buf));
		return result;
	}
	secret_buf_wipe(buf);
	return NULL;
}

static gboolean
check_too_long(SecretBuf *buf, const char *what, GError **error)
{
	if (buf->len <= FS_SECRET_MAX)
		return TRUE;
	g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_INVALID,
	            "%s is longer than %d bytes", what, FS_SECRET_MAX);
	return FALSE;
}

/* The environment minus IMAPFS_PASSWORD, pointing into environ so the
 * password is not copied. */
static char **
environ_without_secret(void)
{
	GPtrArray *env = g_ptr_array_new();
	gsize prefix = strlen(FS_SECRET_ENV "=");

	for (char **e = environ; e != NULL && *e != NULL; e++)
		if (strncmp(*e, FS_SECRET_ENV "=", prefix) != 0)
			g_ptr_array_add(env, *e);
	g_ptr_array_add(env, NULL);
	return (char **)g_ptr_array_free(env, FALSE);
}

typedef struct {
	SecretBuf out;
	GString *err;
	gboolean too_long;
} CommandOutput;

static void
read_stderr(int *fd, GString *err)
{
	char chunk[1024];
	ssize_t n;

	do
		n = read(*fd, chunk, sizeof(chunk));
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		close(*fd);
		*fd = -1;
	} else if (err->len < STDERR_KEEP) {
		g_string_append_len(err, chunk,
		                    MIN(n, (gssize)(STDERR_KEEP - err->len)));
	}
}

/* Reads stdout and stderr together so that neither pipe can fill up and
 * block the child; stops early when stdout exceeds FS_SECRET_MAX. */
static void
collect_output(int out_fd, int err_fd, CommandOutput *result)
{
	struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};

	while (fds[0].fd >= 0 || fds[1].fd >= 0) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[0].revents != 0 &&
		    secret_buf_read(&result->out, fds[0].fd) <= 0) {
			close(fds[0].fd);
			fds[0].fd = -1;
		}
		if (fds[1].revents != 0)
			read_stderr(&fds[1].fd, result->err);
		if (result->out.len > FS_SECRET_MAX) {
			result->too_long = TRUE;
			break;
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
}

static int
wait_child(GPid pid)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	g_spawn_close_pid(pid);
	return status;
}

/* stderr as one printable line for an error message. */
static char *
describe_stderr(GString *err)
{
	g_autofree char *text = g_utf8_make_valid(err->str, (gssize)err->len);

	for (char *p = text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	g_strstrip(text);
	if (*text == '\0')
		return g_strdup("");
	return g_strdup_printf(": %s", text);
}

static char *
describe_status(int status)
{
	if (WIFEXITED(status))
		return g_strdup_printf("exit status %d", WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return g_strdup_printf("killed by signal %d", WTERMSIG(status));
	return g_strdup("stopped");
}

static char *
finish_command(const char *label, const char *command, int status,
               CommandOutput *result, GError **error)
{
	g_autofree char *what = g_strdup_printf("%s '%s'", label, command);
	g_autofree char *stderr_text = describe_stderr(result->err);

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		g_autofree char *how = describe_status(status);

		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_COMMAND,
		            "%s failed (%s)%s", what, how, stderr_text);
		secret_buf_wipe(&result->out);
		return NULL;
	}
	strip_one_newline(&result->out);
	if (result->out.len == 0) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_COMMAND,
		            "%s printed nothing%s", what, stderr_text);
		secret_buf_wipe(&result->out);
		return NULL;
	}
	return secret_buf_finish(&result->out, FS_SECRET_ERROR_COMMAND,
	                         "the output of the command", error);
}

char *
fs_secret_run_command(const char *label, const char *command, GError **error)
{
	char *argv[] = {"/bin/sh", "-c", (char *)command, NULL};
	g_autofree char **envp = environ_without_secret();
	CommandOutput result = {{NULL, 0, 0}, g_string_new(NULL), FALSE};
	GError *spawn_error = NULL;
	GPid pid;
	int out_fd, err_fd, status;
	char *secret = NULL;

	if (!g_spawn_async_with_pipes(
	        NULL, argv, envp,
	        G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_CHILD_INHERITS_STDIN, NULL,
	        NULL, &pid, NULL, &out_fd, &err_fd, &spawn_error)) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_COMMAND,
		            "%s '%s' could not be started: %s", label, command,
		            spawn_error->message);
		g_error_free(spawn_error);
		g_string_free(result.err, TRUE);
		return NULL;
	}
	collect_output(out_fd, err_fd, &result);
	if (result.too_long)
		kill(pid, SIGKILL);
	status = wait_child(pid);
	if (result.too_long) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_INVALID,
		            "%s '%s' printed more than %d bytes", label,
		            command, FS_SECRET_MAX);
		secret_buf_wipe(&result.out);
	} else {
		secret = finish_command(label, command, status, &result, error);
	}
	g_string_free(result.err, TRUE);
	return secret;
}

static gboolean
check_file_safe(int fd, const char *path, GError **error)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_FILE,
		            "password_file '%s': %s", path, g_strerror(errno));
		return FALSE;
	}
	if (!S_ISREG(st.st_mode)) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_FILE,
		            "password_file '%s' is not a regular file", path);
		return FALSE;
	}
	if (st.st_uid != geteuid()) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_FILE,
		            "password_file '%s' is owned by uid %u, not by "
		            "the user running imapfs (uid %u)",
		            path, (guint)st.st_uid, (guint)geteuid());
		return FALSE;
	}
	if ((st.st_mode & 077) != 0) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_FILE,
		            "password_file '%s' has mode %04o: it must not be "
		            "accessible to group or others (chmod 600 it)",
		            path, (guint)(st.st_mode & 07777));
		return FALSE;
	}
	return TRUE;
}

char *
fs_secret_read_file(const char *path, GError **error)
{
	SecretBuf buf = {NULL, 0, 0};
	ssize_t n;
	int fd;

	/* O_NONBLOCK so that a FIFO cannot hang open(); it is refused. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_FILE,
		            "password_file '%s': %s", path, g_strerror(errno));
		return NULL;
	}
	if (!check_file_safe(fd, path, error)) {
		close(fd);
		return NULL;
	}
	while ((n = secret_buf_read(&buf, fd)) > 0 && buf.len <= FS_SECRET_MAX)
		;
	if (n < 0)
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_FILE,
		            "password_file '%s': %s", path, g_strerror(errno));
	close(fd);
	if (n < 0 || !check_too_long(&buf, "password_file", error)) {
		secret_buf_wipe(&buf);
		return NULL;
	}
	strip_one_newline(&buf);
	return secret_buf_finish(&buf, FS_SECRET_ERROR_FILE, "password_file",
	                         error);
}

char *
fs_secret_take_env(GError **error)
{
	SecretBuf buf = {NULL, 0, 0};
	char *value = getenv(FS_SECRET_ENV);
	gsize len;

	if (value == NULL)
		return NULL;
	len = strlen(value);
	secret_buf_reserve(&buf, len);
	memcpy(buf.data, value, len + 1);
	buf.len = len;
	/* unsetenv() only drops the pointer: the bytes would stay in the
	 * initial environment block that /proc/PID/environ shows. */
	explicit_bzero(value, len);
	g_unsetenv(FS_SECRET_ENV);
	return secret_buf_finish(&buf, FS_SECRET_ERROR_ENV, FS_SECRET_ENV,
	                         error);
}

static gboolean
write_all(int fd, const char *s)
{
	gsize len = strlen(s);

	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return FALSE;
		s += n;
		len -= (gsize)n;
	}
	return TRUE;
}

static gboolean
is_special(unsigned char c, const struct termios *t, int index)
{
	return t->c_cc[index] != _POSIX_VDISABLE && c == t->c_cc[index];
}

static void
erase_last_char(SecretBuf *buf)
{
	while (buf->len > 0 &&
	       ((unsigned char)buf->data[buf->len - 1] & 0xc0) == 0x80)
		buf->data[--buf->len] = '\0';
	if (buf->len > 0)
		buf->data[--buf->len] = '\0';
}

/* Reads one line byte by byte, doing the editing the terminal would do in
 * canonical mode. FALSE when cancelled, at EOF, or on error. */
static gboolean
read_line(int fd, const struct termios *t, SecretBuf *buf)
{
	unsigned char c;
	ssize_t n;

	for (;;) {
		n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || is_special(c, t, VINTR) ||
		    (is_special(c, t, VEOF) && buf->len == 0))
			return FALSE;
		if (c == '\n' || c == '\r')
			return TRUE;
		if (is_special(c, t, VERASE) || c == 0x7f || c == '\b')
			erase_last_char(buf);
		else if (is_special(c, t, VKILL))
			secret_buf_wipe(buf);
		else if (c >= 0x20 && buf->len < FS_SECRET_MAX)
			secret_buf_append_byte(buf, (char)c);
	}
}

static char *
prompt_on(int fd, const char *tty, const char *prompt, GError **error)
{
	struct termios saved, quiet;
	SecretBuf buf = {NULL, 0, 0};
	gboolean ok;

	if (tcgetattr(fd, &saved) != 0) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_NO_TTY,
		            "%s is not a terminal", tty);
		return NULL;
	}
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	quiet.c_cc[VMIN] = 1;
	quiet.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_PROMPT,
		            "cannot turn off echo on %s: %s", tty,
		            g_strerror(errno));
		return NULL;
	}
	ok = write_all(fd, prompt) && read_line(fd, &saved, &buf);
	tcsetattr(fd, TCSAFLUSH, &saved);
	write_all(fd, "\n");
	if (!ok) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_PROMPT,
		            "no password entered on %s", tty);
		secret_buf_wipe(&buf);
		return NULL;
	}
	return secret_buf_finish(&buf, FS_SECRET_ERROR_PROMPT,
	                         "the password entered", error);
}

char *
fs_secret_prompt(const char *tty, const char *prompt, GError **error)
{
	int fd = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
	char *secret;

	if (fd < 0) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_NO_TTY,
		            "cannot open %s: %s", tty, g_strerror(errno));
		return NULL;
	}
	secret = prompt_on(fd, tty, prompt, error);
	close(fd);
	return secret;
}

static char *
prompt_text(const FsSecretSources *sources)
{
	if (sources->host == NULL)
		return g_strdup("Password: ");
	if (sources->user == NULL)
		return g_strdup_printf("Password for %s: ", sources->host);
	return g_strdup_printf("Password for %s@%s: ", sources->user,
	                       sources->host);
}

static char *
prompt_or_explain(const FsSecretSources *sources, GError **error)
{
	const char *tty =
	    sources->tty != NULL ? sources->tty : FS_SECRET_DEFAULT_TTY;
	g_autofree char *prompt = prompt_text(sources);
	GError *prompt_error = NULL;
	char *secret = fs_secret_prompt(tty, prompt, &prompt_error);

	if (secret != NULL)
		return secret;
	if (g_error_matches(prompt_error, FS_SECRET_ERROR,
	                    FS_SECRET_ERROR_NO_TTY)) {
		g_set_error(error, FS_SECRET_ERROR, FS_SECRET_ERROR_NO_SOURCE,
		            NO_SOURCE_ADVICE " (%s)", prompt_error->message);
		g_error_free(prompt_error);
		return NULL;
	}
	g_propagate_error(error, prompt_error);
	return NULL;
}

char *
fs_secret_get(const FsSecretSources *sources, GError **error)
{
	GError *env_error = NULL;
	char *from_env = fs_secret_take_env(&env_error);

	if (sources->password_command != NULL ||
	    sources->password_file != NULL) {
		fs_secret_free(from_env);
		g_clear_error(&env_error);
		if (sources->password_command != NULL)
			return fs_secret_run_command("password_command",
			                             sources->password_command,
			                             error);
		return fs_secret_read_file(sources->password_file, error);
	}
	if (env_error != NULL) {
		g_propagate_error(error, env_error);
		return NULL;
	}
	if (from_env != NULL)
		return from_env;
	return prompt_or_explain(sources, error);
}

void
fs_secret_free(char *secret)
{
	if (secret == NULL)
		return;
	explicit_bzero(secret, strlen(secret));
	g_free(secret);
}
