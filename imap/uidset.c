/* uidset.c - sequence sets ("304,319:320", "1:*") as lists of ranges: what
 * COPYUID, APPENDUID, VANISHED and SEARCH results are parsed with, and what
 * UID commands are written with. */
#include "imap/uidset.h"

#include <stdlib.h>

/* nz-number / "*". Leading zeros are refused: nz-number = digit-nz *DIGIT. */
static gboolean
parse_number(const char **pp, guint32 star_value, guint32 *out)
{
	const char *p = *pp;
	guint64 value = 0;

	if (*p == '*') {
		if (star_value == 0)
			return FALSE;
		*out = star_value;
		*pp = p + 1;
		return TRUE;
	}
	if (*p < '1' || *p > '9')
		return FALSE;
	for (; *p >= '0' && *p <= '9'; p++) {
		value = value * 10 + (guint64)(*p - '0');
		if (value > G_MAXUINT32)
			return FALSE;
	}
	*out = (guint32)value;
	*pp = p;
	return TRUE;
}

static gboolean
parse_range(const char **pp, guint32 star_value, ImapUidRange *range)
{
	guint32 first, last;

	if (!parse_number(pp, star_value, &first))
		return FALSE;
	last = first;
	if (**pp == ':') {
		(*pp)++;
		if (!parse_number(pp, star_value, &last))
			return FALSE;
	}
	range->first = MIN(first, last);
	range->last = MAX(first, last);
	return TRUE;
}

GArray *
imap_uidset_parse(const char *s, guint32 star_value)
{
	GArray *set;
	const char *p = s;

	if (s == NULL)
		return NULL;
	set = g_array_new(FALSE, FALSE, sizeof(ImapUidRange));
	for (;;) {
		ImapUidRange range;

		if (!parse_range(&p, star_value, &range))
			goto fail;
		g_array_append_val(set, range);
		if (*p == '\0')
			return set;
		if (*p != ',')
			goto fail;
		p++;
	}
fail:
	g_array_free(set, TRUE);
	return NULL;
}

static guint64
range_size(const ImapUidRange *r)
{
	return (guint64)r->last - r->first + 1;
}

guint64
imap_uidset_count(const GArray *set)
{
	guint64 total = 0;

	if (set == NULL)
		return 0;
	for (guint i = 0; i < set->len; i++)
		total += range_size(&g_array_index(set, ImapUidRange, i));
	return total;
}

guint32
imap_uidset_nth(const GArray *set, guint64 n)
{
	if (set == NULL)
		return 0;
	for (guint i = 0; i < set->len; i++) {
		const ImapUidRange *r = &g_array_index(set, ImapUidRange, i);

		if (n < range_size(r))
			return r->first + (guint32)n;
		n -= range_size(r);
	}
	return 0;
}

GArray *
imap_uidset_expand(const GArray *set, guint64 max)
{
	guint64 count = imap_uidset_count(set);
	GArray *uids;

	if (set == NULL || count > max || count > G_MAXUINT)
		return NULL;
	uids = g_array_sized_new(FALSE, FALSE, sizeof(guint32), (guint)count);
	for (guint i = 0; i < set->len; i++) {
		const ImapUidRange *r = &g_array_index(set, ImapUidRange, i);
		guint32 uid = r->first;

		for (;;) {
			g_array_append_val(uids, uid);
			if (uid == r->last)
				break;
			uid++;
		}
	}
	return uids;
}

gboolean
imap_uidset_contains(const GArray *set, guint32 uid)
{
	if (set == NULL)
		return FALSE;
	for (guint i = 0; i < set->len; i++) {
		const ImapUidRange *r = &g_array_index(set, ImapUidRange, i);

		if (uid >= r->first && uid <= r->last)
			return TRUE;
	}
	return FALSE;
}

static int
compare_uid(const void *a, const void *b)
{
	guint32 x = *(const guint32 *)a, y = *(const guint32 *)b;

	return (x > y) - (x < y);
}

static void
append_range(GString *out, guint32 first, guint32 last)
{
	if (out->len > 0)
		g_string_append_c(out, ',');
	if (first == last)
		g_string_append_printf(out, "%" G_GUINT32_FORMAT, first);
	else
		g_string_append_printf(
		    out, "%" G_GUINT32_FORMAT ":%" G_GUINT32_FORMAT, first,
		    last);
}

/* UID 0 does not exist and cannot be written in a set, so it is skipped. */
char *
imap_uidset_format(const guint32 *uids, gsize n)
{
	GString *out = g_string_new(NULL);
	guint32 *sorted;
	gsize i = 0;

	if (uids == NULL || n == 0)
		return g_string_free(out, FALSE);
	sorted = g_memdup2(uids, n * sizeof(guint32));
	qsort(sorted, n, sizeof(guint32), compare_uid);
	while (i < n && sorted[i] == 0)
		i++;
	while (i < n) {
		guint32 first = sorted[i], last = sorted[i];

		for (i++; i < n && sorted[i] <= (guint64)last + 1; i++)
			last = sorted[i];
		append_range(out, first, last);
	}
	g_free(sorted);
	return g_string_free(out, FALSE);
}
