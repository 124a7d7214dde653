/* date.h - INTERNALDATE / APPEND date-time ("17-Jul-1996 02:44:25 -0700"). */
#ifndef IMAP_DATE_H
#define IMAP_DATE_H

#include <glib.h>
#include <time.h>

/* Parses date-time (RFC 3501 9; a leading space instead of a zero day is
 * accepted) into seconds since the epoch. FALSE if malformed. */
gboolean imap_date_parse(const char *s, gint64 *out);
/* Formats t as date-time in UTC ("+0000"); result is 26 chars, no quotes. */
char *imap_date_format(gint64 t);

#endif
