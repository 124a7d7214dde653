/* main.c - the imapfs command: options, the password, a first login to
 * fail early with a clear message, then the FUSE loop.
 *
 *   imapfs [options] imaps://USER@HOST[:PORT]/ MOUNTPOINT
 *   imapfs [options] imap://USER@HOST[:PORT]/  MOUNTPOINT  (STARTTLS)
 *   imapfs [options] ACCOUNT MOUNTPOINT   (a [group] of the config file)
 *
 * mount.fuse3 runs it as "imapfs SOURCE MOUNTPOINT -o OPTIONS" for
 * /etc/fstab lines of type fuse.imapfs or "imapfs#SOURCE". */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/config.h"
#include "fs/log.h"
#include "cache/disk.h"
#include "cache/warm.h"
#include "ctl_client.h"
#include "fs/secret.h"
#include "fs/url.h"
#include "imapfs.h"

/* Keys of the fuse_opt table: options of the table in config.c are
 * KEY_OPTION + their index. */
enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_OPTION = 100,
};

/* Words /etc/fstab uses for mount(8) itself. mount.fuse3 drops most of
 * them, but not all, and imapfs may be run by hand with an fstab line's
 * options; passed on, libfuse would refuse them. */
static const char *const fstab_words[] = {
    "auto",  "noauto",  "user",   "nouser",   "users",   "owner",
    "group", "_netdev", "nofail", "defaults", "comment", NULL,
};

typedef struct {
	FsConfig cfg;
	gboolean show_help;
	gboolean show_version;
	gboolean failed;
} Cmdline;

/* fuse_opt entries for every option: "NAME=" and, for booleans, "NAME". */
static struct fuse_opt *
build_fuse_opts(void)
{
	gsize n, k = 0;
	const FsOption *o = fs_options(&n);
	struct fuse_opt *t = g_new0(struct fuse_opt, 2 * n + 5);

	for (gsize i = 0; i < n; i++) {
		int key = KEY_OPTION + (int)i;

		t[k++] = (struct fuse_opt)FUSE_OPT_KEY(
		    g_strconcat(o[i].name, "=", NULL), key);
		if (o[i].type == FS_OPT_BOOL)
			t[k++] = (struct fuse_opt)FUSE_OPT_KEY(
			    g_strdup(o[i].name), key);
	}
	t[k++] = (struct fuse_opt)FUSE_OPT_KEY(g_strdup("-h"), KEY_HELP);
	t[k++] = (struct fuse_opt)FUSE_OPT_KEY(g_strdup("--help"), KEY_HELP);
	t[k++] = (struct fuse_opt)FUSE_OPT_KEY(g_strdup("-V"), KEY_VERSION);
	t[k++] =
	    (struct fuse_opt)FUSE_OPT_KEY(g_strdup("--version"), KEY_VERSION);
	return t;
}

static void
free_fuse_opts(struct fuse_opt *t)
{
	for (struct fuse_opt *p = t; p->templ != NULL; p++)
		g_free((char *)p->templ);
	g_free(t);
}

static void
usage(const char *prog)
{
	gsize n;
	const FsOption *o = fs_options(&n);

	printf("usage: %s [options] imaps://USER@HOST[:PORT]/ MOUNTPOINT\n"
	       "       %s [options] imap://USER@HOST[:PORT]/ MOUNTPOINT\n"
	       "       %s [options] ACCOUNT MOUNTPOINT\n"
	       "\n"
	       "Mounts an IMAP account: mailboxes are directories, messages\n"
	       "are files named <UID>.eml. ACCOUNT is a [group] of the config\n"
	       "file, whose keys are the option names below (and url).\n"
	       "\n"
	       "imapfs options:\n",
	       prog, prog, prog);
	for (gsize i = 0; i < n; i++) {
		g_autofree char *lhs = NULL;

		lhs = o[i].metavar != NULL
		          ? g_strdup_printf("%s=%s", o[i].name, o[i].metavar)
		          : g_strdup(o[i].name);
		if (strlen(lhs) <= 24)
			printf("    -o %-24s %s\n", lhs, o[i].help);
		else
			printf("    -o %s\n%31s %s\n", lhs, "", o[i].help);
	}
	printf("\n"
	       "Without password_command or password_file the password is\n"
	       "taken from $IMAPFS_PASSWORD, else asked for on the terminal.\n"
	       "fstab words (noauto, user, _netdev, nofail, x-*, ...) are\n"
	       "ignored. See imapfs(1).\n"
	       "\n");
}

static gboolean
is_fstab_word(const char *arg)
{
	if (g_ascii_strncasecmp(arg, "x-", 2) == 0 ||
	    strncmp(arg, "comment=", 8) == 0)
		return TRUE;
	return g_strv_contains(fstab_words, arg);
}

/* libfuse's own options that change what we do; they are kept for it. */
static void
note_fuse_opt(FsConfig *cfg, const char *arg)
{
	if (strcmp(arg, "-f") == 0)
		cfg->foreground = TRUE;
	if (strcmp(arg, "-d") == 0 || strcmp(arg, "debug") == 0) {
		cfg->foreground = TRUE;
		cfg->fuse_debug = TRUE;
	}
	/* A read-only mount (fstab "ro") refuses changes up front. */
	if (strcmp(arg, "ro") == 0 && !fs_config_is_given(cfg, "read_only"))
		fs_config_set(cfg, "read_only", NULL, NULL);
}

static int
set_from_arg(Cmdline *cl, const char *arg)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *name = g_strdup(arg);
	char *eq = strchr(name, '=');

	if (eq != NULL)
		*eq++ = '\0';
	if (!fs_config_set(&cl->cfg, name, eq, &error)) {
		fprintf(stderr, "imapfs: -o %s\n", error->message);
		cl->failed = TRUE;
		return -1;
	}
	return 0;
}

static int
process_arg(void *data, const char *arg, int key, struct fuse_args *out)
{
	Cmdline *cl = data;
	FsConfig *cfg = &cl->cfg;

	switch (key) {
	case KEY_HELP:
		cl->show_help = TRUE;
		return 0;
	case KEY_VERSION:
		cl->show_version = TRUE;
		return 0;
	case FUSE_OPT_KEY_OPT:
		if (is_fstab_word(arg))
			return 0;
		if (fs_option_find(arg) != NULL) {
			fprintf(stderr, "imapfs: -o %s needs a value\n", arg);
			cl->failed = TRUE;
			return -1;
		}
		note_fuse_opt(cfg, arg);
		return 1;
	case FUSE_OPT_KEY_NONOPT:
		if (cfg->source == NULL) {
			cfg->source = g_strdup(arg);
			return 0;
		}
		if (cfg->mountpoint == NULL) {
			cfg->mountpoint = g_strdup(arg);
			return 1;
		}
		fprintf(stderr, "imapfs: unexpected argument '%s'\n", arg);
		cl->failed = TRUE;
		return -1;
	default:
		return set_from_arg(cl, arg);
	}
}

static gboolean
parse_auth(const char *s, ImapAuthMech *mech)
{
	static const struct {
		const char *name;
		ImapAuthMech mech;
	} names[] = {
	    {"login", IMAP_AUTH_LOGIN},
	    {"plain", IMAP_AUTH_PLAIN},
	    {"xoauth2", IMAP_AUTH_XOAUTH2},
	    {"oauthbearer", IMAP_AUTH_OAUTHBEARER},
	};

	*mech = IMAP_AUTH_AUTO;
	if (s == NULL)
		return TRUE;
	for (gsize i = 0; i < G_N_ELEMENTS(names); i++)
		if (g_ascii_strcasecmp(s, names[i].name) == 0) {
			*mech = names[i].mech;
			return TRUE;
		}
	return FALSE;
}

static char *
get_secret(const FsConfig *cfg, const FsUrl *url, const char *user,
           ImapAuthMech mech, GError **error)
{
	FsSecretSources src = {
	    .password_command = cfg->password_command,
	    .password_file = cfg->password_file,
	    .user = user,
	    .host = url->host,
	};

	if (mech == IMAP_AUTH_XOAUTH2 || mech == IMAP_AUTH_OAUTHBEARER) {
		if (cfg->oauth2_token_command == NULL) {
			g_set_error(error, FS_SECRET_ERROR,
			            FS_SECRET_ERROR_NO_SOURCE,
			            "-o auth=%s needs -o oauth2_token_command",
			            cfg->auth);
			return NULL;
		}
		return fs_secret_run_command("oauth2_token_command",
		                             cfg->oauth2_token_command, error);
	}
	return fs_secret_get(&src, error);
}

/* The pool's secret source for a long-running mount: the server refused
 * a secret that worked (the OAuth2 token expired, the password changed),
 * so the command or file it came from is asked again. The environment
 * and the terminal prompt are one-time sources. */
static gboolean
secret_renewable(const FsConfig *cfg, ImapAuthMech mech)
{
	if (mech == IMAP_AUTH_XOAUTH2 || mech == IMAP_AUTH_OAUTHBEARER)
		return TRUE;
	return cfg->password_command != NULL || cfg->password_file != NULL;
}

static char *
renew_secret(void *user, ImapError **err)
{
	const FsConfig *cfg = user;
	ImapAuthMech mech = IMAP_AUTH_AUTO;
	GError *error = NULL;
	char *secret;

	parse_auth(cfg->auth, &mech); /* checked in run() */
	if (mech == IMAP_AUTH_XOAUTH2 || mech == IMAP_AUTH_OAUTHBEARER) {
		g_message("running oauth2_token_command for a new token");
		secret = fs_secret_run_command(
		    "oauth2_token_command", cfg->oauth2_token_command, &error);
	} else if (cfg->password_command != NULL) {
		g_message("running password_command for the password again");
		secret = fs_secret_run_command("password_command",
		                               cfg->password_command, &error);
	} else {
		g_message("reading password_file %s again", cfg->password_file);
		secret = fs_secret_read_file(cfg->password_file, &error);
	}
	if (secret == NULL) {
		imap_error_set(err, IMAP_EAUTH, 0, "%s", error->message);
		g_error_free(error);
	}
	return secret;
}

/* Enables what the cache and listings use, where the server has it. */
static ImapStatus
setup_conn(ImapConn *c, void *user, ImapError **err)
{
	static const char *const exts[] = {"CONDSTORE", "QRESYNC",
	                                   "UTF8=ACCEPT", NULL};

	if (!imap_conn_has_cap(c, "ENABLE"))
		return IMAP_OK;
	return imap_enable(c, exts, err);
}

Imapfs *imapfs_instance;

/* We daemonize ourselves, before the first connection, rather than let
 * libfuse fork (fuse_daemonize) after it: threads do not survive a fork, so the
 * connection that checked the account (TCP, TLS, login, ENABLE: several
 * round trips) would be thrown away and the first file operation would
 * wait for a new one. The parent exits 0 once the mount answers, or with
 * the child's status if the child ends first. */
static int detach_fd = -1;

static void
detach_start(void)
{
	int fds[2], status = 0;
	char byte;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) != 0) {
		perror("imapfs: pipe");
		exit(1);
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		perror("imapfs: fork");
		exit(1);
	}
	if (pid == 0) {
		close(fds[0]);
		detach_fd = fds[1];
		return;
	}
	close(fds[1]);
	if (read(fds[0], &byte, 1) == 1)
		_exit(0);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

/* In the daemon once the mount answers: leave the terminal and session,
 * and let the parent go. */
static void
detach_finish(void)
{
	char byte = 1;
	int null;

	if (detach_fd < 0)
		return;
	setsid();
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	if (chdir("/") != 0)
		g_debug("chdir /: %s", g_strerror(errno));
	if (write(detach_fd, &byte, 1) != 1)
		g_warning("could not tell the parent process the mount is up");
	close(detach_fd);
	detach_fd = -1;
}

static void
op_init(struct fuse_conn_info *conn)
{
	Imapfs *fs = imapfs_get();

	/* Runs in the loop, once the mount answers. */
	fs_log_detached();
	detach_finish();
	conn->max_read = 0;
	imapfs_notify_init(fs);
	store_start_watch(fs->store);
}

static void
op_destroy(void *data)
{
	Imapfs *fs = data;

	upload_commit_all(fs);
}

/* Core dumps would hold the password. */
static void
harden_process(void)
{
	struct rlimit none = {0, 0};

	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* -o compress=auto|yes|no (default auto). */
static gboolean
parse_compress(const char *s, ImapCompressMode *mode)
{
	gboolean on;

	*mode = IMAP_COMPRESS_AUTO;
	if (s == NULL || g_ascii_strcasecmp(s, "auto") == 0)
		return TRUE;
	if (!fs_config_parse_bool(s, &on))
		return FALSE;
	*mode = on ? IMAP_COMPRESS_YES : IMAP_COMPRESS_NO;
	return TRUE;
}

static ImapPool *
make_pool(const FsConfig *cfg, const FsUrl *url, const char *user,
          ImapAuthMech mech, const char *secret)
{
	g_autofree char *port = g_strdup_printf("%u", url->port);
	ImapConnectOptions o = {
	    .host = url->host,
	    .port = port,
	    .tls = url->tls               ? IMAP_TLS_IMPLICIT
	           : cfg->allow_plaintext ? IMAP_TLS_NONE
	                                  : IMAP_TLS_STARTTLS,
	    .timeout_ms = cfg->timeout * 1000,
	    .debug = cfg->debug_imap,
	};
	ImapCredentials cred = {mech, user, secret};

	o.tls_opts.ca_file = cfg->tls_ca_file;
	o.tls_opts.fingerprint = cfg->tls_fingerprint;
	parse_compress(cfg->compress, &o.compress); /* checked in run() */
	return imap_pool_new(&o, &cred, (guint)cfg->max_conns, setup_conn,
	                     NULL);
}

/* Logs in once before mounting, so a wrong password or certificate is
 * one clear line and a non-zero exit, not a mount that fails later. */
static gboolean
check_account(Imapfs *fs, const char *url)
{
	ImapError *err = NULL;
	GPtrArray *top = NULL;
	ImapConn *c = imap_pool_acquire(fs->pool, NULL, &err);

	if (c == NULL) {
		fprintf(stderr, "imapfs: %s: %s\n", url, err->text);
		imap_error_free(err);
		return FALSE;
	}
	imap_pool_release(fs->pool, c);
	if (store_children(fs->store, NULL, &top, &err) != IMAP_OK) {
		fprintf(stderr, "imapfs: %s: listing mailboxes: %s\n", url,
		        err->text);
		imap_error_free(err);
		return FALSE;
	}
	g_ptr_array_free(top, TRUE);
	return TRUE;
}

static gboolean
parse_cache_mode(const char *s, StoreCacheMode *mode)
{
	static const char *const names[] = {"none", "metadata", "full"};

	*mode = STORE_CACHE_FULL;
	for (gsize i = 0; s != NULL && i < G_N_ELEMENTS(names); i++)
		if (g_ascii_strcasecmp(s, names[i]) == 0) {
			*mode = (StoreCacheMode)i;
			return TRUE;
		}
	return s == NULL;
}

/* "512M", "2G", "100000" (bytes); K, M, G, T are powers of 1024. */
static gboolean
parse_size(const char *s, guint64 *bytes)
{
	guint64 n = 0, unit = 1;
	char *end = NULL;

	*bytes = 512u * 1024 * 1024;
	if (s == NULL)
		return TRUE;
	if (!g_ascii_isdigit(*s))
		return FALSE;
	n = g_ascii_strtoull(s, &end, 10);
	switch (g_ascii_toupper(*end)) {
	case 'T':
		unit <<= 10;
		/* fall through */
	case 'G':
		unit <<= 10;
		/* fall through */
	case 'M':
		unit <<= 10;
		/* fall through */
	case 'K':
		unit <<= 10;
		end++;
		break;
	case '\0':
		break;
	default:
		return FALSE;
	}
	if (*end != '\0' || n > G_MAXUINT64 / unit)
		return FALSE;
	*bytes = n * unit;
	return TRUE;
}

static gboolean
make_store(Imapfs *fs, const FsConfig *cfg, const FsUrl *url, const char *user)
{
	g_autofree char *dir =
	    cfg->cache_dir != NULL
	        ? g_strdup(cfg->cache_dir)
	        : disk_cache_default_dir(user, url->host, url->port);
	g_autofree char *account =
	    g_strdup_printf("%s@%s:%u", user, url->host, url->port);
	MailStoreOptions so = {
	    .pool = fs->pool,
	    .dir_cache_timeout_s = fs->dir_cache_timeout,
	    .trash = cfg->trash,
	    .read_only = cfg->read_only,
	    .cache_dir = dir,
	    .watch = !cfg->no_watch,
	    .no_reconnect = !cfg->reconnect,
	    .change_fn = imapfs_on_change,
	    .change_user = fs,
	};

	if (!parse_cache_mode(cfg->cache, &so.cache_mode)) {
		fprintf(stderr,
		        "imapfs: -o cache=%s: use none, metadata or "
		        "full\n",
		        cfg->cache);
		return FALSE;
	}
	if (!parse_size(cfg->cache_size, &so.cache_size)) {
		fprintf(stderr,
		        "imapfs: -o cache_size=%s: use bytes or a "
		        "K/M/G suffix\n",
		        cfg->cache_size);
		return FALSE;
	}
	if (cfg->offline && so.cache_mode == STORE_CACHE_NONE) {
		fprintf(stderr, "imapfs: -o offline needs a cache\n");
		return FALSE;
	}
	fs->store = store_new(&so);
	warm_set_account(fs->store, account);
	return TRUE;
}

/* -o offline: what the cache holds is all there is. */
static gboolean
check_offline(Imapfs *fs, const char *url)
{
	GPtrArray *top = NULL;
	ImapError *err = NULL;

	if (store_children(fs->store, NULL, &top, &err) != IMAP_OK) {
		fprintf(stderr,
		        "imapfs: %s: nothing cached to mount offline "
		        "(%s)\n",
		        url, err->text);
		imap_error_free(err);
		return FALSE;
	}
	g_ptr_array_free(top, TRUE);
	return TRUE;
}

static int
run(FsConfig *cfg, struct fuse_args *args)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(FsUrl) url = NULL;
	struct fuse_operations ops = {0};
	ImapAuthMech mech;
	Imapfs fs = {0};
	const char *user;
	char *secret;
	int rc;

	url = fs_url_parse(cfg->url, &error);
	if (url == NULL) {
		fprintf(stderr, "imapfs: %s\n", error->message);
		return 1;
	}
	if (!url->tls && !cfg->allow_plaintext)
		g_debug("imap:// URL: STARTTLS is required");
	if (url->tls == FALSE && cfg->allow_plaintext)
		fprintf(stderr, "imapfs: warning: allow_plaintext: the "
		                "password and mail travel unencrypted\n");
	user = cfg->user != NULL ? cfg->user : url->user;
	if (user == NULL) {
		fprintf(stderr, "imapfs: no user: put it in the URL "
		                "(imaps://USER@HOST/) or use -o user=\n");
		return 1;
	}
	if (!parse_auth(cfg->auth, &mech)) {
		fprintf(stderr, "imapfs: unknown -o auth=%s\n", cfg->auth);
		return 1;
	}
	if (!parse_compress(cfg->compress, &(ImapCompressMode){0})) {
		fprintf(stderr, "imapfs: -o compress=%s: use auto, yes or no\n",
		        cfg->compress);
		return 1;
	}
	if (!cfg->foreground)
		detach_start();
	if (!cfg->offline) {
		secret = get_secret(cfg, url, user, mech, &error);
		if (secret == NULL) {
			fprintf(stderr, "imapfs: %s\n", error->message);
			return 1;
		}
		fs.pool = make_pool(cfg, url, user, mech, secret);
		fs_secret_free(secret);
		if (secret_renewable(cfg, mech))
			imap_pool_set_secret_source(fs.pool, renew_secret,
			                            (void *)cfg);
	}
	fs.uid = getuid();
	fs.gid = getgid();
	fs.read_only = cfg->read_only || cfg->offline;
	fs.exact_sizes = cfg->exact_sizes;
	fs.mounted_at = g_get_real_time() / G_USEC_PER_SEC;
	fs.dir_cache_timeout = (guint)cfg->dir_cache_timeout;
	g_mutex_init(&fs.uploads_lock);
	fs.uploads = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
	                                   (GDestroyNotify)upload_unref);
	if (!make_store(&fs, cfg, url, user)) {
		rc = 1;
		goto out;
	}
	rc = 1;
	if (cfg->offline ? check_offline(&fs, cfg->url)
	                 : check_account(&fs, cfg->url)) {
		imapfs_dir_ops(&ops);
		imapfs_file_ops(&ops);
		imapfs_xattr_ops(&ops);
		ops.destroy = op_destroy;
		imapfs_instance = &fs;
		rc = imapfs_lowlevel_main(args, &ops, op_init,
		                          fs.dir_cache_timeout, &fs);
	}
out:
	store_free(fs.store);
	imap_pool_free(fs.pool);
	g_hash_table_destroy(fs.uploads);
	g_mutex_clear(&fs.uploads_lock);
	return rc;
}

/* --help and --version: ours first, then libfuse's. */
static int
show_info(const Cmdline *cl, const char *prog)
{
	if (cl->show_version) {
		printf("imapfs %s\n", IMAPFS_VERSION);
		printf("FUSE library version %s\n", fuse_pkgversion());
		fflush(stdout);
		fuse_lowlevel_version();
		return 0;
	}
	usage(prog);
	printf("\nFUSE options:\n");
	fflush(stdout);
	fuse_cmdline_help();
	fuse_lowlevel_help();
	return 0;
}

/* One line of libfuse's: the same way as ours. */
static void
fuse_log_line(enum fuse_log_level level, const char *line)
{
	GLogLevelFlags flags = G_LOG_LEVEL_DEBUG;

	/* The domain says it already. */
	if (g_str_has_prefix(line, "fuse: "))
		line += strlen("fuse: ");
	if (level <= FUSE_LOG_ERR)
		flags = G_LOG_LEVEL_CRITICAL;
	else if (level == FUSE_LOG_WARNING)
		flags = G_LOG_LEVEL_WARNING;
	else if (level <= FUSE_LOG_INFO)
		flags = G_LOG_LEVEL_INFO;
	g_log_structured("fuse", flags, "MESSAGE", "%s", line);
}

static void
free_pending(gpointer buf)
{
	g_string_free(buf, TRUE);
}

static GPrivate fuse_pending = G_PRIVATE_INIT(free_pending);

/* libfuse writes some lines in pieces ("unknown option(s): `", "-o ",
 * ...): they are joined, one log entry per line. */
static void
fuse_log_to_glib(enum fuse_log_level level, const char *fmt, va_list ap)
{
	GString *buf = g_private_get(&fuse_pending);
	char *nl;

	if (buf == NULL) {
		buf = g_string_new(NULL);
		g_private_set(&fuse_pending, buf);
	}
	g_string_append_vprintf(buf, fmt, ap);
	while ((nl = strchr(buf->str, '\n')) != NULL) {
		g_autofree char *line = g_strndup(buf->str, nl - buf->str);

		g_string_erase(buf, 0, nl - buf->str + 1);
		fuse_log_line(level, line);
	}
}

static gboolean
parse_cmdline(Cmdline *cl, struct fuse_args *args, const char *prog)
{
	g_autoptr(GError) error = NULL;
	struct fuse_opt *opts = build_fuse_opts();
	int rc = fuse_opt_parse(args, cl, opts, process_arg);

	free_fuse_opts(opts);
	if (rc != 0 || cl->failed) {
		if (!cl->failed)
			fprintf(stderr, "imapfs: bad options\n");
		return FALSE;
	}
	if (cl->show_help || cl->show_version)
		return TRUE;
	if (cl->cfg.source == NULL || cl->cfg.mountpoint == NULL) {
		usage(prog);
		return FALSE;
	}
	if (!fs_config_finish(&cl->cfg, &error)) {
		fprintf(stderr, "imapfs: %s\n", error->message);
		return FALSE;
	}
	return TRUE;
}

int
main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	Cmdline cl = {0};
	int rc = 1;

	/* "imapfs status|prefetch ...": talk to a running mount. */
	if (argc > 1 && ctl_is_command(argv[1]))
		return ctl_main(argc, argv);
	harden_process();
	signal(SIGPIPE, SIG_IGN);
	fs_config_init(&cl.cfg);
	if (!parse_cmdline(&cl, &args, argv[0]))
		goto out;
	if (cl.show_version || cl.show_help) {
		rc = show_info(&cl, argv[0]);
		goto out;
	}
	fs_log_init(cl.cfg.log_level, cl.cfg.foreground);
	fuse_set_log_func(fuse_log_to_glib);
	/* Messages are 0600 files of the mounting user: let the kernel
	 * check permissions; the daemon never needs to. */
	fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-ofsname=imapfs");
	fuse_opt_add_arg(&args, "-osubtype=imapfs");
	/* The kernel then refuses writes itself, with EROFS, before any
	 * request: also for files it opens without asking (lowlevel.c). */
	if (cl.cfg.read_only || cl.cfg.offline)
		fuse_opt_add_arg(&args, "-oro");
	rc = run(&cl.cfg, &args);
out:
	fuse_opt_free_args(&args);
	fs_config_clear(&cl.cfg);
	return rc;
}
