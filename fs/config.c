/* config.c - the option table and the config file: named accounts in
 * ~/.config/imapfs/config whose keys are the -o option names. */
#include "fs/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK(fs - config - error - quark, fs_config_error)

/* clang-format off */
#define OPT(n, type, lo, hi, metavar, help) \
	{#n, type, offsetof(FsConfig, n), lo, hi, FALSE, metavar, help}
#define OPT_S(n, metavar, help) OPT(n, FS_OPT_STRING, 0, 0, metavar, help)
#define OPT_P(n, metavar, help) OPT(n, FS_OPT_PATH, 0, 0, metavar, help)
#define OPT_B(n, help) OPT(n, FS_OPT_BOOL, 0, 0, NULL, help)
#define OPT_U(n, lo, hi, help) OPT(n, FS_OPT_UINT, lo, hi, "N", help)
/* clang-format on */

static const FsOption options[] = {
    OPT_S(user, "NAME", "login name (overrides the URL)"),
    OPT_S(password_command, "CMD", "read the password from CMD's output"),
    OPT_P(password_file, "PATH", "read it from a 0600 file"),
    OPT_S(auth, "MECH", "login, plain, xoauth2 or oauthbearer"),
    OPT_S(oauth2_token_command, "CMD", "token for xoauth2/oauthbearer"),
    OPT_P(tls_ca_file, "PATH", "also trust this CA"),
    OPT_S(tls_fingerprint, "sha256:HEX", "pin the server certificate"),
    OPT_B(allow_plaintext, "imap:// without STARTTLS (insecure)"),
    OPT_U(max_conns, 1, 1000, "IMAP connections (default 4)"),
    OPT_B(read_only, "refuse every change"),
    OPT_S(trash, "MAILBOX", "rm moves messages there"),
    OPT_U(dir_cache_timeout, 0, 31536000,
          "refresh listings after N seconds (30)"),
    OPT_U(timeout, 1, 86400, "per-command timeout in seconds (60)"),
    OPT_B(exact_sizes, "trust RFC822.SIZE (no direct_io)"),
    OPT_B(debug_imap, "log the protocol (secrets redacted)"),
    OPT_S(cache, "MODE", "none, metadata or full (default full)"),
    OPT_P(cache_dir, "PATH",
          "cache directory (default "
          "~/.cache/imapfs/USER@HOST:PORT)"),
    OPT_S(cache_size, "SIZE", "body cache limit, e.g. 512M (default)"),
    OPT_B(offline, "mount from the cache without connecting"),
    OPT_B(no_watch, "do not IDLE for other clients' changes"),
    OPT_B(reconnect, "reconnect and retry after network errors (yes)"),
    OPT_S(compress, "MODE",
          "COMPRESS=DEFLATE: auto (default: for a remote server, "
          "round trip >= 5 ms), yes or no"),
    {"log_level", FS_OPT_LEVEL, offsetof(FsConfig, log_level), 0, 0, FALSE,
     "LEVEL", "error, warning (default), info or debug"},
    {"config", FS_OPT_PATH, offsetof(FsConfig, config), 0, 0, TRUE, "PATH",
     "config file (default ~/.config/imapfs/config)"},
};

G_STATIC_ASSERT(G_N_ELEMENTS(options) <= 64);

static const char *const level_names[] = {"error", "warning", "info", "debug"};

const FsOption *
fs_options(gsize *n_options)
{
	*n_options = G_N_ELEMENTS(options);
	return options;
}

static int
option_index(const char *name)
{
	for (gsize i = 0; i < G_N_ELEMENTS(options); i++)
		if (strcmp(options[i].name, name) == 0)
			return (int)i;
	return -1;
}

const FsOption *
fs_option_find(const char *name)
{
	int i = option_index(name);

	return i < 0 ? NULL : &options[i];
}

void
fs_config_init(FsConfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_conns = 4;
	cfg->dir_cache_timeout = 30;
	cfg->timeout = 60;
	cfg->log_level = FS_LOG_DEFAULT;
	cfg->reconnect = TRUE;
}

void
fs_config_clear(FsConfig *cfg)
{
	g_free(cfg->source);
	g_free(cfg->mountpoint);
	g_free(cfg->account);
	g_free(cfg->url);
	for (gsize i = 0; i < G_N_ELEMENTS(options); i++) {
		if (options[i].type != FS_OPT_STRING &&
		    options[i].type != FS_OPT_PATH)
			continue;
		g_free(G_STRUCT_MEMBER(char *, cfg, options[i].offset));
	}
	fs_config_init(cfg);
}

gboolean
fs_config_parse_bool(const char *s, gboolean *value)
{
	static const char *const yes[] = {"true", "yes", "1"};
	static const char *const no[] = {"false", "no", "0"};

	for (gsize i = 0; i < G_N_ELEMENTS(yes); i++) {
		if (g_ascii_strcasecmp(s, yes[i]) == 0) {
			*value = TRUE;
			return TRUE;
		}
		if (g_ascii_strcasecmp(s, no[i]) == 0) {
			*value = FALSE;
			return TRUE;
		}
	}
	return FALSE;
}

gboolean
fs_config_parse_level(const char *s, int *level)
{
	for (gsize i = 0; i < G_N_ELEMENTS(level_names); i++)
		if (g_ascii_strcasecmp(s, level_names[i]) == 0) {
			*level = (int)i;
			return TRUE;
		}
	return FALSE;
}

const char *
fs_log_level_name(int level)
{
	if (level < 0 || level >= (int)G_N_ELEMENTS(level_names))
		return "?";
	return level_names[level];
}

static gboolean
parse_uint(const char *s, int lo, int hi, int *out)
{
	guint64 v;

	if (!g_ascii_string_to_unsigned(s, 10, (guint64)lo, (guint64)hi, &v,
	                                NULL))
		return FALSE;
	*out = (int)v;
	return TRUE;
}

gboolean
fs_config_parse_size(const char *s, guint64 *bytes)
{
	static const char units[] = "KMGT";
	guint64 v, mult = 1;
	const char *u;
	char *end;

	if (!g_ascii_isdigit(*s))
		return FALSE;
	errno = 0;
	v = g_ascii_strtoull(s, &end, 10);
	if (errno != 0)
		return FALSE;
	if (*end != '\0') {
		u = strchr(units, g_ascii_toupper(*end));
		if (u == NULL || end[1] != '\0')
			return FALSE;
		for (const char *p = units; p <= u; p++)
			mult *= 1024;
	}
	if (v > G_MAXUINT64 / mult)
		return FALSE;
	*bytes = v * mult;
	return TRUE;
}

static char *
expand_home(const char *s)
{
	const char *home;

	if (strncmp(s, "~/", 2) != 0)
		return g_strdup(s);
	home = g_getenv("HOME");
	if (home == NULL || *home != '/')
		home = g_get_home_dir();
	return g_build_filename(home, s + 2, NULL);
}

static gboolean
value_error(GError **error, const FsOption *o, const char *value,
            const char *want)
{
	g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_VALUE, "%s=%s: %s",
	            o->name, value != NULL ? value : "", want);
	return FALSE;
}

static gboolean
set_option(FsConfig *cfg, const FsOption *o, const char *value, GError **error)
{
	char **str = &G_STRUCT_MEMBER(char *, cfg, o->offset);
	int *num = &G_STRUCT_MEMBER(int, cfg, o->offset);
	gboolean b;

	if (value == NULL && o->type != FS_OPT_BOOL)
		return value_error(error, o, value, "a value is needed");
	switch (o->type) {
	case FS_OPT_STRING:
	case FS_OPT_PATH:
		if (*value == '\0')
			return value_error(error, o, value, "empty value");
		g_free(*str);
		*str = o->type == FS_OPT_PATH ? expand_home(value)
		                              : g_strdup(value);
		return TRUE;
	case FS_OPT_BOOL:
		if (value == NULL) {
			G_STRUCT_MEMBER(gboolean, cfg, o->offset) = TRUE;
			return TRUE;
		}
		if (!fs_config_parse_bool(value, &b))
			return value_error(error, o, value,
			                   "want true/false/yes/no/1/0");
		G_STRUCT_MEMBER(gboolean, cfg, o->offset) = b;
		return TRUE;
	case FS_OPT_UINT:
		if (!parse_uint(value, o->min, o->max, num)) {
			g_set_error(error, FS_CONFIG_ERROR,
			            FS_CONFIG_ERROR_VALUE,
			            "%s=%s: want a whole number from %d to %d",
			            o->name, value, o->min, o->max);
			return FALSE;
		}
		return TRUE;
	case FS_OPT_SIZE:
		if (!fs_config_parse_size(
		        value, &G_STRUCT_MEMBER(guint64, cfg, o->offset)))
			return value_error(error, o, value,
			                   "want a size in bytes, e.g. 512M");
		return TRUE;
	case FS_OPT_LEVEL:
		if (!fs_config_parse_level(value, num))
			return value_error(error, o, value,
			                   "want error, warning, info or "
			                   "debug");
		return TRUE;
	}
	return value_error(error, o, value, "unknown option type");
}

gboolean
fs_config_set(FsConfig *cfg, const char *name, const char *value,
              GError **error)
{
	int i = option_index(name);

	if (i < 0) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_UNKNOWN_KEY,
		            "unknown option '%s'", name);
		return FALSE;
	}
	if (!set_option(cfg, &options[i], value, error))
		return FALSE;
	cfg->given |= G_GUINT64_CONSTANT(1) << i;
	return TRUE;
}

gboolean
fs_config_is_given(const FsConfig *cfg, const char *name)
{
	int i = option_index(name);

	return i >= 0 && (cfg->given & (G_GUINT64_CONSTANT(1) << i)) != 0;
}

gboolean
fs_config_is_account(const char *source)
{
	return strstr(source, "://") == NULL;
}

char *
fs_config_default_path(void)
{
	const char *xdg = g_getenv("XDG_CONFIG_HOME");
	const char *home;

	if (xdg != NULL && *xdg == '/')
		return g_build_filename(xdg, "imapfs", "config", NULL);
	home = g_getenv("HOME");
	if (home == NULL || *home != '/')
		home = g_get_home_dir();
	return g_build_filename(home, ".config", "imapfs", "config", NULL);
}

/* The file names commands that are run: it must be the user's own (or
 * root's) and writable by nobody else. */
static gboolean
check_file_safe(const char *path, int fd, GError **error)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_FILE,
		            "%s: %s", path, g_strerror(errno));
		return FALSE;
	}
	if (!S_ISREG(st.st_mode)) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_FILE,
		            "%s: not a regular file", path);
		return FALSE;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_FILE,
		            "%s: owned by uid %u, not by you", path,
		            (unsigned)st.st_uid);
		return FALSE;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_FILE,
		            "%s: writable by others (mode %04o); chmod "
		            "go-w it",
		            path, (unsigned)(st.st_mode & 07777));
		return FALSE;
	}
	return TRUE;
}

static GKeyFile *
read_key_file(const char *path, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autoptr(GError) local = NULL;
	g_autofree char *text = NULL;
	gsize len;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_FILE,
		            "cannot read config file %s: %s", path,
		            g_strerror(errno));
		return NULL;
	}
	if (!check_file_safe(path, fd, error)) {
		close(fd);
		return NULL;
	}
	close(fd);
	if (!g_file_get_contents(path, &text, &len, &local) ||
	    !g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE,
	                               &local)) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_FILE,
		            "config file %s: %s", path, local->message);
		return NULL;
	}
	return g_steal_pointer(&kf);
}

static gboolean
key_error(GError **error, FsConfigError code, const char *path,
          const char *group, const char *key, const char *what)
{
	g_set_error(error, FS_CONFIG_ERROR, code, "%s: [%s] %s: %s", path,
	            group, key, what);
	return FALSE;
}

static gboolean
apply_key(FsConfig *cfg, GKeyFile *kf, const char *path, const char *group,
          const char *key, GError **error)
{
	const FsOption *o = fs_option_find(key);
	g_autoptr(GError) local = NULL;
	g_autofree char *value = NULL;

	if (strcmp(key, "url") == 0)
		return TRUE;
	if (o == NULL && strcmp(key, "password") == 0)
		return key_error(error, FS_CONFIG_ERROR_UNKNOWN_KEY, path,
		                 group, key,
		                 "passwords are not kept in the config file; "
		                 "use password_command or password_file");
	if (o == NULL || o->cli_only)
		return key_error(error, FS_CONFIG_ERROR_UNKNOWN_KEY, path,
		                 group, key, "unknown key");
	value = g_key_file_get_string(kf, group, key, &local);
	if (value == NULL)
		return key_error(error, FS_CONFIG_ERROR_VALUE, path, group, key,
		                 local->message);
	if (fs_config_is_given(cfg, key))
		return TRUE; /* the command line wins */
	if (!fs_config_set(cfg, key, value, &local))
		return key_error(error, FS_CONFIG_ERROR_VALUE, path, group, key,
		                 local->message);
	return TRUE;
}

gboolean
fs_config_load_account(FsConfig *cfg, const char *path, const char *account,
                       GError **error)
{
	g_autofree char *def = NULL;
	g_autoptr(GKeyFile) kf = NULL;
	g_autoptr(GError) local = NULL;
	g_auto(GStrv) keys = NULL;
	g_autofree char *url = NULL;

	if (path == NULL)
		path = cfg->config;
	if (path == NULL)
		path = def = fs_config_default_path();
	kf = read_key_file(path, error);
	if (kf == NULL)
		return FALSE;
	if (!g_key_file_has_group(kf, account)) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_NO_ACCOUNT,
		            "no account [%s] in %s (give an account name "
		            "or a URL imaps://USER@HOST/)",
		            account, path);
		return FALSE;
	}
	keys = g_key_file_get_keys(kf, account, NULL, NULL);
	for (gsize i = 0; keys != NULL && keys[i] != NULL; i++)
		if (!apply_key(cfg, kf, path, account, keys[i], error))
			return FALSE;
	url = g_key_file_get_string(kf, account, "url", &local);
	if (url == NULL || *url == '\0') {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_NO_URL,
		            "%s: [%s] has no url = imaps://USER@HOST/", path,
		            account);
		return FALSE;
	}
	g_free(cfg->account);
	cfg->account = g_strdup(account);
	g_free(cfg->url);
	cfg->url = g_steal_pointer(&url);
	return TRUE;
}

gboolean
fs_config_finish(FsConfig *cfg, GError **error)
{
	if (cfg->source == NULL) {
		g_set_error(error, FS_CONFIG_ERROR, FS_CONFIG_ERROR_VALUE,
		            "no account or URL given");
		return FALSE;
	}
	if (fs_config_is_account(cfg->source)) {
		if (!fs_config_load_account(cfg, NULL, cfg->source, error))
			return FALSE;
	} else {
		g_free(cfg->url);
		cfg->url = g_strdup(cfg->source);
	}
	if (cfg->debug_imap && !fs_config_is_given(cfg, "log_level"))
		cfg->log_level = FS_LOG_DEBUG;
	if (cfg->fuse_debug)
		cfg->log_level = FS_LOG_DEBUG;
	return TRUE;
}
