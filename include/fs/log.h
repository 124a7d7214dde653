/* log.h - where the daemon's log goes. Every layer logs with g_warning(),
 * g_message(), g_debug() ... (domains "imap", "imapfs-cache", "imapfs");
 * one GLib writer filters by level and writes each entry as one line: to
 * stderr until the daemon detaches, then to syslog (ident "imapfs",
 * facility daemon), or always to stderr in the foreground (-f), where a
 * journald stream gets the priority as a "<N>" prefix. */
#ifndef FS_LOG_H
#define FS_LOG_H

#include <glib.h>

/* Installs the writer (and routes libfuse's own messages through it).
 * level is an FsLogLevel: error, warning, info (g_message and g_info) or
 * debug. */
void fs_log_init(int level, gboolean foreground);

/* Called once the daemon has detached from the terminal: later entries go
 * to syslog unless it runs in the foreground. */
void fs_log_detached(void);

/* Formats one entry as it is written to stderr, without the newline:
 * "imapfs: warning: TEXT", with "DOMAIN: " before TEXT for domains other
 * than "imapfs". Control bytes in TEXT (a server's words) are shown as
 * \xNN so that one entry is always one line. */
char *fs_log_format(GLogLevelFlags level, const char *domain,
                    const char *message);

#endif
