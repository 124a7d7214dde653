/* command.h - builds commands safely: each argument is sent as an atom, a
 * quoted string or a literal according to its bytes (RFC 3501 4, RFC 7888
 * LITERAL+/LITERAL-), and nothing a caller passes can smuggle CR, LF or NUL
 * into a command line. */
#ifndef IMAP_COMMAND_H
#define IMAP_COMMAND_H

#include <glib.h>
#include "imap/error.h"

typedef enum {
	IMAP_LITERAL_SYNC,  /* {n}: wait for "+" before the bytes */
	IMAP_LITERAL_PLUS,  /* LITERAL+: {n+} for any size */
	IMAP_LITERAL_MINUS, /* LITERAL-: {n+} up to 4096 bytes, else {n} */
} ImapLiteralMode;

typedef struct ImapCmd ImapCmd;

/* One piece of the serialized command. When wait_continuation is TRUE the
 * sender must wait for a "+" from the server before sending the next part
 * (a synchronizing literal follows). The last part ends with CRLF. */
typedef struct {
	GBytes *bytes;
	gboolean wait_continuation;
} ImapCmdPart;

/* verb: trusted constant such as "UID FETCH" (validated: no CR/LF/NUL). */
ImapCmd *imap_cmd_new(const char *verb);
void imap_cmd_free(ImapCmd *cmd);

/* Trusted protocol syntax such as "(UID FLAGS)" or "1:*"; rejected (the
 * command becomes invalid) if it holds CR, LF or NUL. */
void imap_cmd_raw(ImapCmd *cmd, const char *text);
void imap_cmd_printf(ImapCmd *cmd, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void imap_cmd_number(ImapCmd *cmd, guint64 n);
/* astring: atom when every byte is an ASTRING-CHAR (and it is not "NIL"),
 * quoted when printable 7-bit (or valid UTF-8 with utf8 allowed), literal
 * otherwise. CR, LF or NUL make the command invalid. */
void imap_cmd_astring(ImapCmd *cmd, const char *s, gsize len);
/* string: like astring, but never an atom. */
void imap_cmd_string(ImapCmd *cmd, const char *s, gsize len);
/* Mailbox name given in UTF-8: encoded to modified UTF-7 unless the command
 * allows UTF-8 (UTF8=ACCEPT enabled); "INBOX" in any case is sent as INBOX.
 * Invalid UTF-8 or CR/LF/NUL make the command invalid. */
void imap_cmd_mailbox(ImapCmd *cmd, const char *utf8_name);
/* Message data for APPEND: always a literal; CR/LF allowed, NUL only when
 * binary (sent as literal8 ~{n}). The bytes are referenced, not copied. */
void imap_cmd_literal(ImapCmd *cmd, GBytes *data, gboolean binary);
/* Lets quoted strings and mailbox names carry raw UTF-8 (UTF8=ACCEPT). */
void imap_cmd_allow_utf8(ImapCmd *cmd, gboolean allow);

/* FALSE (with *err set, IMAP_EINVAL) if any argument was rejected. */
gboolean imap_cmd_valid(const ImapCmd *cmd, ImapError **err);
/* Serializes "tag verb args\r\n" into parts (ImapCmdPart *, owned by the
 * array). mode says which non-synchronizing literals the server allows. */
GPtrArray *imap_cmd_serialize(const ImapCmd *cmd, const char *tag,
                              ImapLiteralMode mode);
/* The command as a log line: tag, verb and arguments, literals as {n}, and
 * arguments marked secret replaced by "***". */
char *imap_cmd_describe(const ImapCmd *cmd, const char *tag);
/* Marks the arguments added from now on as secret (LOGIN password). */
void imap_cmd_secret(ImapCmd *cmd, gboolean secret);
/* The verb as given to imap_cmd_new(), e.g. "UID FETCH". */
const char *imap_cmd_verb(const ImapCmd *cmd);

/* Quoting helper used by the builder; exported for tests. Returns a newly
 * allocated quoted string, or NULL if s holds CR, LF, NUL or (without
 * allow_8bit) bytes >= 0x80. */
char *imap_quote(const char *s, gsize len, gboolean allow_8bit);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapCmd, imap_cmd_free)

#endif
