/* fuzz_utf7.c - libFuzzer target for modified UTF-7: whatever the decoder
 * accepts must re-encode to the very same bytes (one spelling per name), and
 * every valid UTF-8 string must encode to printable ASCII that decodes back
 * to it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(gboolean ok)
{
	if (!ok)
		abort();
}

static gboolean
is_printable_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return FALSE;
	return TRUE;
}

/* Input taken as modified UTF-7 from a server. */
static void
check_decode(const char *in)
{
	char *utf8 = imap_utf7_decode(in);
	char *again;

	if (utf8 == NULL) {
		return;
	}
	check(g_utf8_validate(utf8, -1, NULL));
	check(is_printable_ascii(in));
	again = imap_utf7_encode(utf8);
	check(again != NULL && strcmp(again, in) == 0);
	g_free(again);
	g_free(utf8);
}

/* Input taken as a UTF-8 name from the filesystem side. */
static void
check_encode(const char *in)
{
	char *mutf7 = imap_utf7_encode(in);
	char *back;

	if (!g_utf8_validate(in, -1, NULL)) {
		check(mutf7 == NULL);
		return;
	}
	check(mutf7 != NULL && is_printable_ascii(mutf7));
	back = imap_utf7_decode(mutf7);
	check(back != NULL && strcmp(back, in) == 0);
	g_free(back);
	g_free(mutf7);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The API takes C strings: stop at the first NUL, as a caller would. */
	char *in = g_strndup((const char *)data, size);

	check_decode(in);
	check_encode(in);
	g_free(in);
	return 0;
}
