/* test_utf7.c - modified UTF-7 vectors, round trips and malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "imap/utf7.h"

typedef struct {
	const char *utf8;
	const char *mutf7;
} Vector;

static const Vector vectors[] = {
    {"", ""},
    {"INBOX", "INBOX"},
    {"\xe5\x8f\xb0\xe5\x8c\x97", "&U,BTFw-"}, /* 台北 */
    {"&", "&-"},
    {"a&b", "a&-b"},
    {"&&", "&-&-"},
    {"~peter/mail/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e/"
     "\xe5\x8f\xb0\xe5\x8c\x97",
     "~peter/mail/&ZeVnLIqe-/&U,BTFw-"},
    {"Entw\xc3\xbcrfe", "Entw&APw-rfe"}, /* Entwürfe */
    {"\xc3\xa9", "&AOk-"},               /* é */
    {"\xf0\x9f\x98\x80", "&2D3eAA-"},    /* U+1F600 emoji */
    {"a\xf0\x9f\x98\x80z", "a&2D3eAA-z"},
    {"\xf0\x9f\x98\x80\xc3\xa9", "&2D3eAADp-"}, /* emoji then é */
    {"\xf0\x90\x80\x80", "&2ADcAA-"},           /* U+10000 */
    {"\xf4\x8f\xbf\xbf", "&2,,f,w-"},           /* U+10FFFF */
    {"\xc3\xa9&\xc3\xa9", "&AOk-&-&AOk-"},
    {"\t", "&AAk-"}, /* controls are shifted, not direct */
    {"\x7f", "&AH8-"},
    {"+", "+"},
    {"-", "-"},
    {",", ","},
};

static void
test_encode_vectors(void **state)
{
	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(vectors); i++) {
		char *got = imap_utf7_encode(vectors[i].utf8);

		assert_non_null(got);
		assert_string_equal(got, vectors[i].mutf7);
		g_free(got);
	}
}

static void
test_decode_vectors(void **state)
{
	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(vectors); i++) {
		char *got = imap_utf7_decode(vectors[i].mutf7);

		assert_non_null(got);
		assert_string_equal(got, vectors[i].utf8);
		g_free(got);
	}
}

static void
test_encode_rejects_bad_utf8(void **state)
{
	(void)state;
	assert_null(imap_utf7_encode("\xff"));
	assert_null(imap_utf7_encode("ab\xc3"));
	assert_null(imap_utf7_encode("\xed\xa0\x80")); /* encoded surrogate */
	assert_null(imap_utf7_encode("\xc0\xaf"));     /* overlong "/" */
	assert_null(imap_utf7_encode(NULL));
}

static const char *const malformed[] = {
    "&",          /* unterminated */
    "&U,BTFw",    /* unterminated */
    "a&U,BTFw",   /* unterminated at end */
    "&U,BTFw x-", /* space inside a shift */
    "&AGE-",      /* "a" shifted: printable ASCII must be direct */
    "&ACY-",      /* "&" shifted */
    "&ACA-",      /* space shifted */
    "&AH4-",      /* "~" shifted */
    "&AOkAYQ-",   /* é followed by shifted "a" */
    "&AA-",       /* 12 bits: encodes nothing */
    "&A-",        /* 6 bits: encodes nothing */
    "&AOl-",      /* non-zero padding bits */
    "&AOkA-",     /* a spare base64 character */
    "&AOk=-",     /* "=" padding is not used */
    "&U/BTFw-",   /* "/" is not in the modified alphabet */
    "&U,BT!w-",   /* "!" inside a shift */
    "&2D0-",      /* lone high surrogate */
    "&3gA-",      /* lone low surrogate */
    "&3gDYPQ-",   /* low then high */
    "&2D3YPQ-",   /* high followed by high */
    "&2D0-&3gA-", /* pair split across two shifts */
    "&2D0AYQ-",   /* high followed by a BMP char */
    "&AOk-&AOk-", /* adjacent shifts: should be one run */
    "&U,BTFw-&ZeVnLIqe-",
    "&AAA-",       /* U+0000 */
    "a\tb",        /* control byte outside a shift */
    "caf\xc3\xa9", /* raw 8-bit */
    "\x7f",
    "&Jjo--&-", /* fine so far, then... */
};

static void
test_decode_rejects_malformed(void **state)
{
	(void)state;
	/* The last entry is valid ("&Jjo-" then "-&-"): a control row. */
	for (gsize i = 0; i + 1 < G_N_ELEMENTS(malformed); i++) {
		char *got = imap_utf7_decode(malformed[i]);

		if (got != NULL)
			fail_msg("accepted malformed \"%s\" as \"%s\"",
			         malformed[i], got);
	}
	char *ok = imap_utf7_decode(malformed[G_N_ELEMENTS(malformed) - 1]);
	assert_non_null(ok);
	assert_string_equal(ok, "\xe2\x98\xba-&"); /* U+263A "-&" */
	g_free(ok);
	assert_null(imap_utf7_decode(NULL));
}

/* Every code point class survives encode then decode, and the encoding
 * decodes back without change. */
static void
test_round_trip(void **state)
{
	static const gunichar samples[] = {
	    0x01,  0x1f,  0x26,   0x41,   0x7f,   0x80,    0xff,    0x100,
	    0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0x10000, 0x1f600, 0x10ffff,
	};
	GString *s = g_string_new(NULL);

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(samples); i++) {
		for (gsize j = 0; j < G_N_ELEMENTS(samples); j++) {
			char *enc, *dec, *again;

			g_string_truncate(s, 0);
			g_string_append_unichar(s, samples[i]);
			g_string_append_c(s, '/');
			g_string_append_unichar(s, samples[j]);
			g_string_append_unichar(s, samples[i]);
			enc = imap_utf7_encode(s->str);
			assert_non_null(enc);
			for (const char *p = enc; *p != '\0'; p++)
				assert_true(*p >= 0x20 && *p <= 0x7e);
			dec = imap_utf7_decode(enc);
			assert_non_null(dec);
			assert_string_equal(dec, s->str);
			again = imap_utf7_encode(dec);
			assert_string_equal(again, enc);
			g_free(enc);
			g_free(dec);
			g_free(again);
		}
	}
	g_string_free(s, TRUE);
}

/* Long runs exercise every alignment of 16-bit units in 6-bit groups. */
static void
test_long_runs(void **state)
{
	GString *s = g_string_new(NULL);

	(void)state;
	for (int n = 1; n <= 12; n++) {
		char *enc, *dec;

		g_string_append_unichar(s, 0x4e00 + (gunichar)n);
		enc = imap_utf7_encode(s->str);
		assert_non_null(enc);
		assert_int_equal(enc[0], '&');
		/* One shift of ceil(16n/6) characters plus "&" and "-". */
		assert_int_equal(strlen(enc), (16 * n + 5) / 6 + 2);
		dec = imap_utf7_decode(enc);
		assert_non_null(dec);
		assert_string_equal(dec, s->str);
		g_free(enc);
		g_free(dec);
	}
	g_string_free(s, TRUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_vectors),
	    cmocka_unit_test(test_decode_vectors),
	    cmocka_unit_test(test_encode_rejects_bad_utf8),
	    cmocka_unit_test(test_decode_rejects_malformed),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_long_runs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
