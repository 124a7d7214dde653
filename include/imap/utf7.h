/* utf7.h - modified UTF-7 for mailbox names (RFC 3501 section 5.1.3). */
#ifndef IMAP_UTF7_H
#define IMAP_UTF7_H

#include <glib.h>

/* UTF-8 -> modified UTF-7. NULL if the input is not valid UTF-8. */
char *imap_utf7_encode(const char *utf8);
/* Modified UTF-7 -> UTF-8. NULL for malformed input: bytes outside
 * 0x20-0x7e, an unterminated shift, "&" shifts that encode nothing but are
 * not "&-", bad base64, non-zero padding bits, printable ASCII or broken
 * surrogates inside a shift, or two adjacent shifted runs. */
char *imap_utf7_decode(const char *mutf7);

#endif
