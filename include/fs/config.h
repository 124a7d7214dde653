/* config.h - the daemon's settings. Every option is declared once, in one
 * table; the command line (-o NAME=VALUE, parsed with fuse_opt in main.c)
 * and the config file (~/.config/imapfs/config, one [ACCOUNT] group per
 * account, GKeyFile syntax) both set options through it, so a new option
 * is one table row (and an FsConfig field), valid in both places.
 *
 *   [work]
 *   url = imaps://alice@mail.example.com/
 *   password_command = pass show mail/work
 *   read_only = yes
 *
 * The command line wins: the file only fills in options it did not give. */
#ifndef FS_CONFIG_H
#define FS_CONFIG_H

#include <glib.h>
#include <stddef.h>

#define FS_CONFIG_ERROR (fs_config_error_quark())
GQuark fs_config_error_quark(void);

typedef enum {
	FS_CONFIG_ERROR_FILE,        /* unreadable, unsafe or malformed file */
	FS_CONFIG_ERROR_NO_ACCOUNT,  /* no [ACCOUNT] group in the file */
	FS_CONFIG_ERROR_UNKNOWN_KEY, /* a key that is no option */
	FS_CONFIG_ERROR_VALUE,       /* a value of the wrong form or range */
	FS_CONFIG_ERROR_NO_URL,      /* the account has no url key */
} FsConfigError;

typedef enum {
	FS_LOG_ERROR,
	FS_LOG_WARNING,
	FS_LOG_INFO,
	FS_LOG_DEBUG,
} FsLogLevel;

#define FS_LOG_DEFAULT FS_LOG_WARNING

typedef enum {
	FS_OPT_STRING, /* any text */
	FS_OPT_PATH,   /* text; a leading "~/" is the home directory */
	FS_OPT_BOOL,   /* true/false/yes/no/1/0; bare "-o NAME" is true */
	FS_OPT_UINT,   /* decimal, between min and max */
	FS_OPT_LEVEL,  /* error, warning, info or debug */
	FS_OPT_SIZE,   /* bytes (a guint64): decimal, optional K, M, G or T
	                * suffix (powers of 1024) */
} FsOptType;

typedef struct {
	const char *name;
	FsOptType type;
	size_t offset;       /* of the char * / gboolean / int in FsConfig */
	int min, max;        /* FS_OPT_UINT */
	gboolean cli_only;   /* refused in the file (config=) */
	const char *metavar; /* for --help: "NAME" in "-o user=NAME" */
	const char *help;
} FsOption;

typedef struct {
	char *source;     /* first argument: a URL or an account name */
	char *mountpoint; /* second argument */
	char *account;    /* the account name, NULL when given a URL */
	char *url;        /* the source, or the account's url key */
	char *config;     /* config file; NULL: fs_config_default_path() */
	char *user;
	char *password_command;
	char *password_file;
	char *auth;
	char *oauth2_token_command;
	char *tls_ca_file;
	char *tls_fingerprint;
	char *trash;
	gboolean allow_plaintext;
	int max_conns;
	gboolean read_only;
	int dir_cache_timeout;
	int timeout;
	gboolean exact_sizes;
	gboolean debug_imap;
	char *cache;        /* none, metadata or full (default full) */
	char *cache_dir;    /* NULL: $XDG_CACHE_HOME/imapfs/USER@HOST:PORT */
	char *cache_size;   /* bytes, with K/M/G suffix (default 512M) */
	gboolean offline;   /* mount from the cache without connecting */
	gboolean no_watch;  /* no IDLE/polling for other clients' changes */
	gboolean reconnect; /* retry after lost connections (default yes) */
	char *compress;     /* COMPRESS=DEFLATE: auto (default), yes or no */
	int log_level;      /* FsLogLevel */
	/* Seen among libfuse's own options. */
	gboolean foreground; /* -f, -d or -o debug */
	gboolean fuse_debug; /* -d or -o debug */
	guint64 given; /* bit i: option i was set (command line or file) */
} FsConfig;

/* The option table, in --help order. */
const FsOption *fs_options(gsize *n_options);
/* The option called name (without "=..."), or NULL. */
const FsOption *fs_option_find(const char *name);

/* Defaults: max_conns 4, dir_cache_timeout 30, timeout 60, log_level
 * FS_LOG_DEFAULT, everything else off or unset. */
void fs_config_init(FsConfig *cfg);
void fs_config_clear(FsConfig *cfg);

/* Sets option name from value (NULL: the bare "-o NAME" form, allowed for
 * booleans only). Errors name the option and the value. */
gboolean fs_config_set(FsConfig *cfg, const char *name, const char *value,
                       GError **error);
gboolean fs_config_is_given(const FsConfig *cfg, const char *name);

/* "200K" is 204800; FALSE on overflow or any other form. */
gboolean fs_config_parse_size(const char *s, guint64 *bytes);

/* true/yes/1 and false/no/0, any case. */
gboolean fs_config_parse_bool(const char *s, gboolean *value);
gboolean fs_config_parse_level(const char *s, int *level);
const char *fs_log_level_name(int level);

/* An account name has no "://"; anything else is taken as a URL. */
gboolean fs_config_is_account(const char *source);

/* $XDG_CONFIG_HOME/imapfs/config when that is set to an absolute path,
 * else ~/.config/imapfs/config. */
char *fs_config_default_path(void);

/* Reads group [account] of the file path (NULL: cfg->config, else the
 * default path) and sets cfg->account, cfg->url and every option the
 * command line did not give. The file must belong to the user (or root)
 * and not be writable by others, since it names commands to run. Unknown
 * keys and bad values are errors naming the file, group and key. */
gboolean fs_config_load_account(FsConfig *cfg, const char *path,
                                const char *account, GError **error);

/* Resolves the source: an account is loaded from the config file, a URL
 * is taken as is. Then checks what the options cannot check alone. */
gboolean fs_config_finish(FsConfig *cfg, GError **error);

#endif
