/* utf7.c - modified UTF-7 (RFC 3501 5.1.3): the mailbox-name encoding of
 * servers without UTF8=ACCEPT. Decoding is strict so that every accepted
 * name has exactly one spelling and encode(decode(x)) == x. */
#include "imap/utf7.h"

#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static gboolean
is_direct(gunichar c)
{
	return c >= 0x20 && c <= 0x7e;
}

static int
b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

/* Accumulates UTF-16 units and writes them out six bits at a time. */
typedef struct {
	GString *out;
	guint32 bits;
	int nbits;
} ShiftWriter;

static void
shift_put_unit(ShiftWriter *w, guint16 unit)
{
	w->bits = (w->bits << 16) | unit;
	w->nbits += 16;
	while (w->nbits >= 6) {
		w->nbits -= 6;
		g_string_append_c(w->out,
		                  b64_alphabet[(w->bits >> w->nbits) & 0x3f]);
	}
	w->bits &= (1u << w->nbits) - 1;
}

static void
shift_close(ShiftWriter *w)
{
	if (w->nbits > 0)
		g_string_append_c(
		    w->out, b64_alphabet[(w->bits << (6 - w->nbits)) & 0x3f]);
	w->bits = 0;
	w->nbits = 0;
	g_string_append_c(w->out, '-');
}

static void
shift_put_char(ShiftWriter *w, gunichar c)
{
	if (c < 0x10000) {
		shift_put_unit(w, (guint16)c);
		return;
	}
	c -= 0x10000;
	shift_put_unit(w, (guint16)(0xd800 | (c >> 10)));
	shift_put_unit(w, (guint16)(0xdc00 | (c & 0x3ff)));
}

char *
imap_utf7_encode(const char *utf8)
{
	ShiftWriter w = {0};
	gboolean shifted = FALSE;

	if (utf8 == NULL || !g_utf8_validate(utf8, -1, NULL))
		return NULL;
	w.out = g_string_sized_new(strlen(utf8) + 8);
	for (const char *p = utf8; *p != '\0'; p = g_utf8_next_char(p)) {
		gunichar c = g_utf8_get_char(p);

		if (is_direct(c)) {
			if (shifted)
				shift_close(&w);
			shifted = FALSE;
			g_string_append_c(w.out, (char)c);
			if (c == '&')
				g_string_append_c(w.out, '-');
			continue;
		}
		if (!shifted)
			g_string_append_c(w.out, '&');
		shifted = TRUE;
		shift_put_char(&w, c);
	}
	if (shifted)
		shift_close(&w);
	return g_string_free(w.out, FALSE);
}

/* Turns the UTF-16 units of one shift into UTF-8, refusing anything the
 * encoder would not have produced. */
static gboolean
append_utf16(GString *out, const guint16 *units, gsize n)
{
	for (gsize i = 0; i < n; i++) {
		gunichar c = units[i];

		if (c >= 0xdc00 && c <= 0xdfff)
			return FALSE;
		if (c >= 0xd800 && c <= 0xdbff) {
			if (i + 1 >= n || units[i + 1] < 0xdc00 ||
			    units[i + 1] > 0xdfff)
				return FALSE;
			c = 0x10000 + ((c - 0xd800) << 10) +
			    (units[i + 1] - 0xdc00);
			i++;
		}
		if (c == 0 || is_direct(c) || !g_unichar_validate(c))
			return FALSE;
		g_string_append_unichar(out, c);
	}
	return TRUE;
}

/* Decodes the base64 run starting at *pp (just after "&") up to its "-",
 * advancing *pp past the "-". */
static gboolean
decode_shift(const char **pp, GString *out)
{
	const char *p = *pp;
	GArray *units = g_array_new(FALSE, FALSE, sizeof(guint16));
	guint32 bits = 0;
	int nbits = 0, nchars = 0;
	gboolean ok = FALSE;

	for (; *p != '-'; p++) {
		int v = b64_value(*p);

		if (v < 0)
			goto out; /* bad character or unterminated */
		bits = (bits << 6) | (guint32)v;
		nbits += 6;
		nchars++;
		if (nbits >= 16) {
			guint16 unit = (guint16)(bits >> (nbits - 16));

			g_array_append_val(units, unit);
			nbits -= 16;
			bits &= (1u << nbits) - 1;
		}
	}
	/* Leftover bits must be the zero padding of the last character only. */
	if (units->len == 0 || nbits >= 6 || bits != 0)
		goto out;
	if (!append_utf16(out, (const guint16 *)(void *)units->data,
	                  units->len))
		goto out;
	*pp = p + 1;
	ok = TRUE;
out:
	g_array_free(units, TRUE);
	return ok;
}

char *
imap_utf7_decode(const char *mutf7)
{
	GString *out;
	gboolean after_shift = FALSE;

	if (mutf7 == NULL)
		return NULL;
	out = g_string_sized_new(strlen(mutf7));
	for (const char *p = mutf7; *p != '\0';) {
		unsigned char c = (unsigned char)*p;

		if (!is_direct(c))
			goto fail;
		if (c != '&') {
			g_string_append_c(out, (char)c);
			after_shift = FALSE;
			p++;
			continue;
		}
		if (p[1] == '-') {
			g_string_append_c(out, '&');
			after_shift = FALSE;
			p += 2;
			continue;
		}
		/* One run would have held both: not the canonical form. */
		if (after_shift)
			goto fail;
		p++;
		if (!decode_shift(&p, out))
			goto fail;
		after_shift = TRUE;
	}
	return g_string_free(out, FALSE);
fail:
	g_string_free(out, TRUE);
	return NULL;
}
