/* parser.h - resumable parser for server responses (RFC 3501 section 7,
 * RFC 9051, RFC 7162 VANISHED, RFC 3516 literal8). Bytes go in as they arrive
 * from the socket; complete responses come out through a callback. */
#ifndef IMAP_PARSER_H
#define IMAP_PARSER_H

#include <glib.h>
#include "imap/error.h"

typedef enum {
	IMAP_VALUE_ATOM,     /* includes numbers and fetch items such as
	                        BODY[HEADER.FIELDS (A B)]<0> (kept verbatim) */
	IMAP_VALUE_STRING,   /* quoted (unescaped) or literal/literal8 */
	IMAP_VALUE_NIL,      /* the atom NIL, distinct from "" */
	IMAP_VALUE_LIST,     /* parenthesised list */
	IMAP_VALUE_STREAMED, /* literal handed to a sink; len = its size */
} ImapValueType;

typedef struct ImapValue {
	ImapValueType type;
	gsize len; /* bytes in str (atom/string); literal size if streamed */
	char *str; /* NUL-terminated copy for atom/string; NULL otherwise.
	              Strings may hold NUL bytes: len is authoritative. */
	GPtrArray *items; /* LIST: ImapValue *, owned; NULL otherwise */
	gboolean literal; /* STRING/STREAMED: came as a literal */
} ImapValue;

typedef enum {
	IMAP_RESP_UNTAGGED,     /* "* ..." */
	IMAP_RESP_TAGGED,       /* "A12 OK ..." */
	IMAP_RESP_CONTINUATION, /* "+ ..." */
} ImapResponseKind;

typedef enum {
	IMAP_COND_NONE = 0, /* a data response such as "* LIST ..." */
	IMAP_COND_OK,
	IMAP_COND_NO,
	IMAP_COND_BAD,
	IMAP_COND_BYE,
	IMAP_COND_PREAUTH,
} ImapCond;

typedef struct {
	ImapResponseKind kind;
	char *tag;     /* tagged only */
	ImapCond cond; /* status responses (tagged, or untagged OK/NO/...) */
	gboolean has_number; /* "* 12 FETCH": number = 12 */
	guint32 number;
	char *name; /* upper-cased: "OK", "FETCH", "LIST", "EXISTS", ... */
	            /* (never NULL: "" for continuations) */
	char *code; /* upper-cased resp-text-code atom, or NULL */
	ImapCode code_id;     /* code mapped with imap_code_from_name() */
	GPtrArray *code_args; /* ImapValue * after the code atom; never NULL */
	char *text;           /* human-readable text, "" if none; never NULL.
	                         For continuations: everything after "+ ". */
	GPtrArray *args;      /* data responses: ImapValue * after name; never
	                         NULL. E.g. FETCH: one LIST value. */
} ImapResponse;

typedef struct {
	gsize max_line;      /* non-literal bytes in one response */
	guint64 max_literal; /* bytes of one literal kept in memory */
	guint max_depth;     /* list nesting */
} ImapParserLimits;

#define IMAP_DEFAULT_MAX_LINE    (8u * 1024 * 1024)
#define IMAP_DEFAULT_MAX_LITERAL (64u * 1024 * 1024)
#define IMAP_DEFAULT_MAX_DEPTH   64u

/* Where a streamed literal's bytes go. write() returns FALSE to fail the
 * connection (e.g. disk full); end() is called once after the last byte, or
 * with ok=FALSE if the connection failed mid-literal. */
typedef struct {
	gboolean (*write)(void *ctx, const char *data, gsize len);
	void (*end)(void *ctx, gboolean ok);
	void *ctx;
} ImapLiteralSink;

/* Context for a literal that is about to arrive inside an untagged response. */
typedef struct {
	const char *name; /* response name so far, e.g. "FETCH" */
	guint32 number;   /* message sequence number, if has_number */
	gboolean has_number;
	guint depth;      /* list depth the literal is at (1 = FETCH items) */
	const char *item; /* the atom just before it in the same list, e.g.
	                     "BODY[]<0>", or NULL */
	guint32 uid;      /* UID seen earlier in the same FETCH list, or 0 */
	guint64 size;     /* announced size */
} ImapLiteralInfo;

typedef struct {
	/* A complete response; the callee takes ownership. */
	void (*response)(void *user, ImapResponse *resp);
	/* Optional. Offered every literal inside an untagged response before
	 * its bytes arrive; return TRUE with *sink filled to stream it instead
	 * of keeping it in memory (then it is not limited by max_literal). */
	gboolean (*literal_start)(void *user, const ImapLiteralInfo *info,
	                          ImapLiteralSink *sink);
	void *user;
} ImapParserCallbacks;

typedef struct ImapParser ImapParser;

/* limits may be NULL for the defaults above; zero fields take defaults. */
ImapParser *imap_parser_new(const ImapParserLimits *limits,
                            const ImapParserCallbacks *cb);
void imap_parser_free(ImapParser *p);
/* Consumes all of data, emitting each response as it completes. Returns
 * IMAP_EPROTO on malformed input or an exceeded limit; after a failure the
 * parser refuses further input. Any split of the input into feed() calls
 * gives the same responses. */
ImapStatus imap_parser_feed(ImapParser *p, const char *data, gsize len,
                            ImapError **err);
/* TRUE when no partial response is buffered (used to detect bytes injected
 * after "OK Begin TLS"). */
gboolean imap_parser_idle(const ImapParser *p);

void imap_response_free(ImapResponse *r);
void imap_value_free(ImapValue *v);

/* Helpers for reading parsed values; all tolerate NULL and wrong types. */
gboolean imap_value_is_atom(const ImapValue *v, const char *upper);
/* NIL -> NULL; atom/string -> str. */
const char *imap_value_nstring(const ImapValue *v);
/* Numbers with overflow checks: digits only, no sign, fits the type. */
gboolean imap_parse_u32(const char *s, guint32 *out);
gboolean imap_parse_u64(const char *s, guint64 *out);
gboolean imap_value_u32(const ImapValue *v, guint32 *out);
gboolean imap_value_u64(const ImapValue *v, guint64 *out);
/* In a FETCH item list (name value name value ...), the value after the
 * item whose name equals upper (case-insensitive), or NULL. An item that is
 * upper followed by "<origin>" also matches, so "BODY[]" finds "BODY[]<0>"
 * (an exact match is preferred). */
const ImapValue *imap_fetch_item(const ImapValue *list, const char *upper);
/* Renders a response back to text for logs (literals as {n}). Precisely:
 * strings, quoted or literal, are shown quoted with \" \\ and \xHH escapes
 * for control bytes; streamed literals, whose bytes the parser never held,
 * appear as {n}. Deterministic. */
char *imap_response_to_string(const ImapResponse *r);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapResponse, imap_response_free)

#endif
