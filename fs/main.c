/* main.c - the imapfs command: options, the password, a first login to
 * fail early with a clear message, then the FUSE loop.
 *
 *   imapfs [options] imaps://USER@HOST[:PORT]/ MOUNTPOINT
 *   imapfs [options] imap://USER@HOST[:PORT]/  MOUNTPOINT  (STARTTLS) */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fs/secret.h"
#include "fs/url.h"
#include "imapfs.h"

typedef struct {
	char *url;
	char *mountpoint;
	char *user;
	char *password_command;
	char *password_file;
	char *auth;
	char *oauth2_token_command;
	char *tls_ca_file;
	char *tls_fingerprint;
	char *trash;
	int allow_plaintext;
	int max_conns;
	int read_only;
	int dir_cache_timeout;
	int timeout;
	int exact_sizes;
	int debug_imap;
	int show_help;
	int show_version;
} Config;

#define OPT(t, p) {t, offsetof(Config, p), 1}
static const struct fuse_opt imapfs_opts[] = {
	OPT("user=%s", user),
	OPT("password_command=%s", password_command),
	OPT("password_file=%s", password_file),
	OPT("auth=%s", auth),
	OPT("oauth2_token_command=%s", oauth2_token_command),
	OPT("tls_ca_file=%s", tls_ca_file),
	OPT("tls_fingerprint=%s", tls_fingerprint),
	OPT("trash=%s", trash),
	OPT("allow_plaintext", allow_plaintext),
	OPT("max_conns=%d", max_conns),
	OPT("read_only", read_only),
	OPT("dir_cache_timeout=%d", dir_cache_timeout),
	OPT("timeout=%d", timeout),
	OPT("exact_sizes", exact_sizes),
	OPT("debug_imap", debug_imap),
	OPT("-h", show_help),
	OPT("--help", show_help),
	OPT("-V", show_version),
	OPT("--version", show_version),
	FUSE_OPT_END,
};

static void
usage(const char *prog)
{
	printf("usage: %s [options] imaps://USER@HOST[:PORT]/ MOUNTPOINT\n"
	       "       %s [options] imap://USER@HOST[:PORT]/ MOUNTPOINT\n"
	       "\n"
	       "Mounts an IMAP account: mailboxes are directories, messages\n"
	       "are files named <UID>.eml.\n"
	       "\n"
	       "imapfs options:\n"
	       "    -o user=NAME               login name (overrides the URL)\n"
	       "    -o password_command=CMD    read the password from CMD's "
	       "output\n"
	       "    -o password_file=PATH      read it from a 0600 file\n"
	       "                               (else $IMAPFS_PASSWORD, else "
	       "a prompt)\n"
	       "    -o auth=login|plain|xoauth2|oauthbearer\n"
	       "    -o oauth2_token_command=CMD  token for xoauth2/oauthbearer\n"
	       "    -o tls_ca_file=PATH        also trust this CA\n"
	       "    -o tls_fingerprint=sha256:HEX  pin the server certificate\n"
	       "    -o allow_plaintext         imap:// without STARTTLS "
	       "(insecure)\n"
	       "    -o max_conns=N             IMAP connections (default 4)\n"
	       "    -o read_only               refuse every change\n"
	       "    -o trash=MAILBOX           rm moves messages there\n"
	       "    -o dir_cache_timeout=S     refresh listings after S "
	       "seconds (30)\n"
	       "    -o timeout=S               per-command timeout (60)\n"
	       "    -o exact_sizes             trust RFC822.SIZE (no "
	       "direct_io)\n"
	       "    -o debug_imap              log the protocol (secrets "
	       "redacted)\n"
	       "\n",
	       prog, prog);
}

static int
process_arg(void *data, const char *arg, int key, struct fuse_args *out)
{
	Config *cfg = data;

	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (cfg->url == NULL) {
		cfg->url = strdup(arg);
		return 0;
	}
	if (cfg->mountpoint == NULL) {
		cfg->mountpoint = strdup(arg);
		return 1;
	}
	fprintf(stderr, "imapfs: unexpected argument '%s'\n", arg);
	return -1;
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
get_secret(const Config *cfg, const FsUrl *url, const char *user,
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

/* Enables what the cache and listings use, where the server has it. */
static ImapStatus
setup_conn(ImapConn *c, void *user, ImapError **err)
{
	static const char *const exts[] = {"CONDSTORE", NULL};

	if (!imap_conn_has_cap(c, "ENABLE"))
		return IMAP_OK;
	return imap_enable(c, exts, err);
}

static void *
op_init(struct fuse_conn_info *conn, struct fuse_config *fcfg)
{
	Imapfs *fs = imapfs_get();

	fcfg->entry_timeout = fs->dir_cache_timeout;
	fcfg->attr_timeout = fs->dir_cache_timeout;
	fcfg->negative_timeout = 0;
	fcfg->use_ino = 0;
	fcfg->nullpath_ok = 0;
	conn->max_read = 0;
	return fs;
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

static ImapPool *
make_pool(const Config *cfg, const FsUrl *url, const char *user,
	  ImapAuthMech mech, const char *secret)
{
	g_autofree char *port = g_strdup_printf("%u", url->port);
	ImapConnectOptions o = {
		.host = url->host,
		.port = port,
		.tls = url->tls ? IMAP_TLS_IMPLICIT
		       : cfg->allow_plaintext ? IMAP_TLS_NONE
					      : IMAP_TLS_STARTTLS,
		.timeout_ms = cfg->timeout * 1000,
		.debug = cfg->debug_imap,
	};
	ImapCredentials cred = {mech, user, secret};

	o.tls_opts.ca_file = cfg->tls_ca_file;
	o.tls_opts.fingerprint = cfg->tls_fingerprint;
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
	/* fuse_main() may fork to daemonize; threads do not survive it,
	 * so connections are reopened on first use. */
	imap_pool_drain(fs->pool);
	return TRUE;
}

static int
run(Config *cfg, struct fuse_args *args)
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
	secret = get_secret(cfg, url, user, mech, &error);
	if (secret == NULL) {
		fprintf(stderr, "imapfs: %s\n", error->message);
		return 1;
	}
	fs.pool = make_pool(cfg, url, user, mech, secret);
	fs_secret_free(secret);
	fs.uid = getuid();
	fs.gid = getgid();
	fs.read_only = cfg->read_only;
	fs.exact_sizes = cfg->exact_sizes;
	fs.mounted_at = g_get_real_time() / G_USEC_PER_SEC;
	fs.dir_cache_timeout = (guint)cfg->dir_cache_timeout;
	g_mutex_init(&fs.uploads_lock);
	fs.uploads = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
					   (GDestroyNotify)upload_unref);
	{
		MailStoreOptions so = {
			.pool = fs.pool,
			.dir_cache_timeout_s = fs.dir_cache_timeout,
			.trash = cfg->trash,
			.read_only = cfg->read_only,
		};
		fs.store = store_new(&so);
	}
	rc = 1;
	if (check_account(&fs, cfg->url)) {
		imapfs_dir_ops(&ops);
		imapfs_file_ops(&ops);
		imapfs_xattr_ops(&ops);
		ops.init = op_init;
		ops.destroy = op_destroy;
		rc = fuse_main(args->argc, args->argv, &ops, &fs);
	}
	store_free(fs.store);
	imap_pool_free(fs.pool);
	g_hash_table_destroy(fs.uploads);
	g_mutex_clear(&fs.uploads_lock);
	return rc;
}

/* fuse_opt_parse() allocates every string option with strdup(). */
static void
config_clear(Config *cfg)
{
	char **strings[] = {
		&cfg->url,	    &cfg->mountpoint,
		&cfg->user,	    &cfg->password_command,
		&cfg->password_file, &cfg->auth,
		&cfg->oauth2_token_command,
		&cfg->tls_ca_file,  &cfg->tls_fingerprint,
		&cfg->trash,
	};

	for (gsize i = 0; i < G_N_ELEMENTS(strings); i++) {
		free(*strings[i]);
		*strings[i] = NULL;
	}
}

/* --help and --version: ours first, then libfuse's. */
static int
show_info(Config *cfg, struct fuse_args *args, const char *prog)
{
	struct fuse_operations no_ops = {0};

	if (cfg->show_version) {
		printf("imapfs %s\n", IMAPFS_VERSION);
		fuse_opt_add_arg(args, "--version");
	} else {
		usage(prog);
		fuse_opt_add_arg(args, "--help");
		args->argv[0][0] = '\0';
	}
	fuse_main(args->argc, args->argv, &no_ops, NULL);
	return 0;
}

static gboolean
check_config(const Config *cfg, const char *prog)
{
	if (cfg->url == NULL || cfg->mountpoint == NULL) {
		usage(prog);
		return FALSE;
	}
	if (cfg->max_conns < 1 || cfg->dir_cache_timeout < 0 ||
	    cfg->timeout < 1) {
		fprintf(stderr, "imapfs: max_conns, timeout must be >= 1 and "
				"dir_cache_timeout >= 0\n");
		return FALSE;
	}
	return TRUE;
}

int
main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	Config cfg = {.max_conns = 4, .dir_cache_timeout = 30, .timeout = 60};
	int rc = 1;

	harden_process();
	signal(SIGPIPE, SIG_IGN);
	if (fuse_opt_parse(&args, &cfg, imapfs_opts, process_arg) != 0)
		goto out;
	if (cfg.show_version || cfg.show_help) {
		rc = show_info(&cfg, &args, argv[0]);
		goto out;
	}
	if (!check_config(&cfg, argv[0]))
		goto out;
	/* Messages are 0600 files of the mounting user: let the kernel
	 * check permissions; the daemon never needs to. */
	fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-ofsname=imapfs");
	fuse_opt_add_arg(&args, "-osubtype=imapfs");
	rc = run(&cfg, &args);
out:
	fuse_opt_free_args(&args);
	config_clear(&cfg);
	return rc;
}
