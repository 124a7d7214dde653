/* secret.h - obtaining the password or OAuth2 token without argv: from a
 * command, a private file, the environment, or a terminal prompt. Secrets
 * are NUL-terminated strings released with fs_secret_free(), which wipes. */
#ifndef FS_SECRET_H
#define FS_SECRET_H

#include <glib.h>

#define FS_SECRET_ENV         "IMAPFS_PASSWORD"
#define FS_SECRET_DEFAULT_TTY "/dev/tty"
/* Most bytes read from any source (before a newline is stripped). */
#define FS_SECRET_MAX 65536

#define FS_SECRET_ERROR (fs_secret_error_quark())
GQuark fs_secret_error_quark(void);

typedef enum {
	FS_SECRET_ERROR_COMMAND,   /* the command failed or printed nothing */
	FS_SECRET_ERROR_FILE,      /* unreadable, unsafe or empty file */
	FS_SECRET_ERROR_ENV,       /* IMAPFS_PASSWORD set but empty */
	FS_SECRET_ERROR_NO_SOURCE, /* nothing configured and no terminal */
	FS_SECRET_ERROR_NO_TTY,  /* the terminal cannot be opened or is none */
	FS_SECRET_ERROR_PROMPT,  /* terminal I/O failed or input cancelled */
	FS_SECRET_ERROR_INVALID, /* NUL, CR or LF inside, or too long */
} FsSecretError;

/* Where fs_secret_get() looks, in this order; the first configured source
 * wins and its failure is final (no fallback to the next). */
typedef struct {
	const char *password_command; /* NULL: not configured */
	const char *password_file;    /* NULL: not configured */
	const char *tty;              /* NULL: FS_SECRET_DEFAULT_TTY */
	const char *user;             /* for the prompt; may be NULL */
	const char *host;             /* for the prompt */
} FsSecretSources;

/* A secret is a plain string; g_autoptr(FsSecret) wipes it on scope exit. */
typedef char FsSecret;

/* Tries the sources in order: command, file, IMAPFS_PASSWORD, prompt on
 * tty ("Password for USER@HOST: "). IMAPFS_PASSWORD is removed from the
 * environment whichever source wins. Without any source and without a
 * usable terminal it fails with FS_SECRET_ERROR_NO_SOURCE and a message
 * listing the ways to supply a password. */
char *fs_secret_get(const FsSecretSources *sources, GError **error);

/* Runs `/bin/sh -c command` with stdin inherited, stdout captured and
 * IMAPFS_PASSWORD absent from its environment. One trailing "\n" or "\r\n"
 * is stripped. A non-zero exit, a signal, or empty output is an error whose
 * text holds the command's stderr; label ("password_command",
 * "oauth2_token_command") names the option in messages. */
char *fs_secret_run_command(const char *label, const char *command,
                            GError **error);

/* Reads a file that must be a regular file owned by the effective user with
 * no group or other permission bits (0600, 0400, ...). One trailing newline
 * is stripped; an empty result is an error. */
char *fs_secret_read_file(const char *path, GError **error);

/* Takes IMAPFS_PASSWORD: returns a copy and removes the variable (and
 * wipes its bytes, which /proc/PID/environ would still show). NULL without
 * error when unset; an error when set but empty. Not thread-safe: call it
 * before starting threads. */
char *fs_secret_take_env(GError **error);

/* Shows prompt on the terminal device tty and reads one line with echo
 * off. Backspace and the kill character (^U) edit the line; the interrupt
 * (^C) or EOF (^D) character cancels, and the terminal is restored either
 * way. FS_SECRET_ERROR_NO_TTY when tty cannot be opened or is not a
 * terminal; FS_SECRET_ERROR_PROMPT when cancelled or empty. */
char *fs_secret_prompt(const char *tty, const char *prompt, GError **error);

/* Wipes and frees a secret; NULL is ignored. */
void fs_secret_free(char *secret);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(FsSecret, fs_secret_free)

#endif
