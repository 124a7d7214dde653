/* uidset.h - UID sets as the protocol writes them ("304,319:320", "1:*"),
 * kept as ranges so a huge range costs nothing until it is walked. */
#ifndef IMAP_UIDSET_H
#define IMAP_UIDSET_H

#include <glib.h>

typedef struct {
	guint32 first;
	guint32
	    last; /* first <= last after parsing (n:m with n>m is swapped) */
} ImapUidRange;

/* Parses a sequence-set of non-zero numbers; "*" is accepted only when
 * star_value != 0 and stands for it. Returns an array of ImapUidRange in
 * the order written, or NULL if malformed or a number overflows. */
GArray *imap_uidset_parse(const char *s, guint32 star_value);
/* Number of UIDs the set covers (ranges counted in full, with repeats). */
guint64 imap_uidset_count(const GArray *set);
/* The n-th UID (0-based) in written order, or 0 if out of range. */
guint32 imap_uidset_nth(const GArray *set, guint64 n);
/* Expands into a GArray of guint32 in written order; NULL if it would hold
 * more than max entries. */
GArray *imap_uidset_expand(const GArray *set, guint64 max);
gboolean imap_uidset_contains(const GArray *set, guint32 uid);
/* Compresses a list of UIDs (any order, duplicates allowed) into the
 * shortest sorted set text, e.g. {5,1,2,3} -> "1:3,5". Empty -> "". */
char *imap_uidset_format(const guint32 *uids, gsize n);

#endif
