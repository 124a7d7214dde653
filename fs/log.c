/* log.c - the daemon's GLib log writer: level filter, one line per entry,
 * stderr or syslog. */
#include "fs/log.h"

#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "fs/config.h"

static int max_level = FS_LOG_DEFAULT;
static gboolean in_foreground;
static gint use_syslog; /* set by the loop thread, read by all */
static gboolean stderr_is_journal;

static int
level_of(GLogLevelFlags flags)
{
	if (flags & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		return FS_LOG_ERROR;
	if (flags & G_LOG_LEVEL_WARNING)
		return FS_LOG_WARNING;
	if (flags & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO))
		return FS_LOG_INFO;
	return FS_LOG_DEBUG;
}

static int
syslog_priority(GLogLevelFlags flags)
{
	if (flags & G_LOG_LEVEL_ERROR)
		return LOG_CRIT;
	if (flags & G_LOG_LEVEL_CRITICAL)
		return LOG_ERR;
	if (flags & G_LOG_LEVEL_WARNING)
		return LOG_WARNING;
	if (flags & G_LOG_LEVEL_MESSAGE)
		return LOG_NOTICE;
	if (flags & G_LOG_LEVEL_INFO)
		return LOG_INFO;
	return LOG_DEBUG;
}

static const char *
level_word(GLogLevelFlags flags)
{
	if (flags & G_LOG_LEVEL_ERROR)
		return "fatal";
	if (flags & G_LOG_LEVEL_CRITICAL)
		return "error";
	if (flags & G_LOG_LEVEL_WARNING)
		return "warning";
	if (flags & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO))
		return "info";
	return "debug";
}

/* Text after the "imapfs: " ident: the part syslog gets. */
static void
append_body(GString *s, GLogLevelFlags level, const char *domain,
            const char *message)
{
	g_string_append_printf(s, "%s: ", level_word(level));
	if (domain != NULL && strcmp(domain, "imapfs") != 0)
		g_string_append_printf(s, "%s: ", domain);
	for (const char *p = message; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f)
			g_string_append_printf(s, "\\x%02x", c);
		else
			g_string_append_c(s, (char)c);
	}
}

char *
fs_log_format(GLogLevelFlags level, const char *domain, const char *message)
{
	GString *s = g_string_new("imapfs: ");

	append_body(s, level, domain, message != NULL ? message : "");
	return g_string_free(s, FALSE);
}

static void
write_stderr(GLogLevelFlags level, const char *line)
{
	g_autofree char *out = NULL;
	gsize len;

	if (stderr_is_journal)
		out = g_strdup_printf("<%d>%s\n", syslog_priority(level), line);
	else
		out = g_strdup_printf("%s\n", line);
	len = strlen(out);
	/* One write per entry, so that threads do not interleave lines. */
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, out, len);

		if (n <= 0)
			return;
		memmove(out, out + n, len - (gsize)n);
		len -= (gsize)n;
	}
}

static GLogWriterOutput
writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
       gpointer data)
{
	const char *message = NULL, *domain = NULL;
	g_autofree char *line = NULL;

	if (level_of(level) > max_level)
		return G_LOG_WRITER_HANDLED;
	for (gsize i = 0; i < n_fields; i++) {
		if (fields[i].length != -1)
			continue;
		if (strcmp(fields[i].key, "MESSAGE") == 0)
			message = fields[i].value;
		else if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0)
			domain = fields[i].value;
	}
	line = fs_log_format(level, domain, message);
	if (g_atomic_int_get(&use_syslog))
		syslog(syslog_priority(level), "%s", line + strlen("imapfs: "));
	else
		write_stderr(level, line);
	return G_LOG_WRITER_HANDLED;
}

void
fs_log_init(int level, gboolean foreground)
{
	max_level = level;
	in_foreground = foreground;
	g_atomic_int_set(&use_syslog, FALSE);
	stderr_is_journal = g_log_writer_is_journald(STDERR_FILENO);
	g_log_set_writer_func(writer, NULL, NULL);
}

void
fs_log_detached(void)
{
	if (in_foreground || g_atomic_int_get(&use_syslog))
		return;
	openlog("imapfs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	g_atomic_int_set(&use_syslog, TRUE);
}
