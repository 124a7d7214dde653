/* command.c - the command builder: arguments are kept as values and only
 * turned into atoms, quoted strings or literals when the command is
 * serialized, so no caller-supplied byte can break out of its argument. */
#include "imap/command.h"

#include <stdarg.h>
#include <string.h>

#include "imap/utf7.h"

/* Literals at least this big travel as their own part, referenced instead of
 * copied; smaller ones are copied into the text that follows them. */
#define INLINE_LITERAL_MAX 1024
/* LITERAL- (RFC 7888) allows non-synchronizing literals up to this size. */
#define LITERAL_MINUS_MAX 4096
/* imap_cmd_describe() shows the contents of literals up to this size. */
#define DESCRIBE_LITERAL_MAX 64

typedef enum {
	ARG_RAW,     /* trusted syntax, sent as is */
	ARG_ASTRING, /* atom, quoted or literal */
	ARG_STRING,  /* quoted or literal */
	ARG_MAILBOX, /* UTF-8 name: mUTF-7 or UTF-8, then astring */
	ARG_LITERAL, /* message data, always a literal */
} ArgKind;

typedef struct {
	ArgKind kind;
	GBytes *value;
	gboolean binary;
	gboolean secret;
} CmdArg;

struct ImapCmd {
	char *verb;
	GPtrArray *args; /* CmdArg * */
	gboolean allow_utf8;
	gboolean secret;
	char *error; /* why the first rejected argument was rejected */
};

/* How one argument goes on the wire: text, or a literal of these bytes. */
typedef struct {
	char *text; /* when literal is NULL */
	GBytes *literal;
	gboolean binary;
} Rendered;

static void
cmd_arg_free(gpointer data)
{
	CmdArg *arg = data;

	g_bytes_unref(arg->value);
	g_free(arg);
}

static void
cmd_part_free(gpointer data)
{
	ImapCmdPart *part = data;

	g_bytes_unref(part->bytes);
	g_free(part);
}

static const char *
byte_name(unsigned char c)
{
	switch (c) {
	case '\r':
		return "CR";
	case '\n':
		return "LF";
	default:
		return "NUL";
	}
}

/* Offset of the first CR, LF or NUL in s, or -1. */
static gssize
find_forbidden(const char *s, gsize len)
{
	for (gsize i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return (gssize)i;
	return -1;
}

static void reject(ImapCmd *cmd, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
reject(ImapCmd *cmd, const char *fmt, ...)
{
	va_list ap;
	char *detail;

	if (cmd->error != NULL)
		return;
	va_start(ap, fmt);
	detail = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	cmd->error = g_strdup_printf("%s: argument %u %s", cmd->verb,
	                             cmd->args->len + 1, detail);
	g_free(detail);
}

static gboolean
check_forbidden(ImapCmd *cmd, const char *what, const char *s, gsize len)
{
	gssize at = find_forbidden(s, len);

	if (at < 0)
		return TRUE;
	reject(cmd, "(%s) contains %s at byte %" G_GSSIZE_FORMAT, what,
	       byte_name((unsigned char)s[at]), at);
	return FALSE;
}

static void
add_arg(ImapCmd *cmd, ArgKind kind, GBytes *value, gboolean binary)
{
	CmdArg *arg = g_new0(CmdArg, 1);

	arg->kind = kind;
	arg->value = value;
	arg->binary = binary;
	arg->secret = cmd->secret;
	g_ptr_array_add(cmd->args, arg);
}

ImapCmd *
imap_cmd_new(const char *verb)
{
	ImapCmd *cmd = g_new0(ImapCmd, 1);

	cmd->args = g_ptr_array_new_with_free_func(cmd_arg_free);
	if (verb == NULL || *verb == '\0') {
		cmd->verb = g_strdup("");
		cmd->error = g_strdup("empty command verb");
	} else if (find_forbidden(verb, strlen(verb)) >= 0) {
		cmd->verb = g_strdup("");
		cmd->error = g_strdup("command verb contains CR or LF");
	} else {
		cmd->verb = g_strdup(verb);
	}
	return cmd;
}

void
imap_cmd_free(ImapCmd *cmd)
{
	if (cmd == NULL)
		return;
	g_ptr_array_unref(cmd->args);
	g_free(cmd->verb);
	g_free(cmd->error);
	g_free(cmd);
}

void
imap_cmd_raw(ImapCmd *cmd, const char *text)
{
	if (text == NULL || *text == '\0') {
		reject(cmd, "(raw) is empty");
		return;
	}
	if (!check_forbidden(cmd, "raw", text, strlen(text)))
		return;
	add_arg(cmd, ARG_RAW, g_bytes_new(text, strlen(text)), FALSE);
}

void
imap_cmd_printf(ImapCmd *cmd, const char *fmt, ...)
{
	va_list ap;
	char *text;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	imap_cmd_raw(cmd, text);
	g_free(text);
}

void
imap_cmd_number(ImapCmd *cmd, guint64 n)
{
	char *text = g_strdup_printf("%" G_GUINT64_FORMAT, n);

	add_arg(cmd, ARG_RAW, g_bytes_new_take(text, strlen(text)), FALSE);
}

/* len == (gsize)-1 means s is NUL-terminated. */
static void
add_string(ImapCmd *cmd, ArgKind kind, const char *what, const char *s,
           gsize len)
{
	if (s == NULL && len != 0 && len != (gsize)-1) {
		reject(cmd, "(%s) is NULL", what);
		return;
	}
	if (s == NULL)
		s = "";
	if (len == (gsize)-1)
		len = strlen(s);
	if (!check_forbidden(cmd, what, s, len))
		return;
	add_arg(cmd, kind, g_bytes_new(s, len), FALSE);
}

void
imap_cmd_astring(ImapCmd *cmd, const char *s, gsize len)
{
	add_string(cmd, ARG_ASTRING, "astring", s, len);
}

void
imap_cmd_string(ImapCmd *cmd, const char *s, gsize len)
{
	add_string(cmd, ARG_STRING, "string", s, len);
}

void
imap_cmd_mailbox(ImapCmd *cmd, const char *utf8_name)
{
	if (utf8_name == NULL) {
		reject(cmd, "(mailbox) is NULL");
		return;
	}
	if (!check_forbidden(cmd, "mailbox", utf8_name, strlen(utf8_name)))
		return;
	if (!g_utf8_validate(utf8_name, -1, NULL)) {
		reject(cmd, "(mailbox) is not valid UTF-8");
		return;
	}
	add_arg(cmd, ARG_MAILBOX, g_bytes_new(utf8_name, strlen(utf8_name)),
	        FALSE);
}

void
imap_cmd_literal(ImapCmd *cmd, GBytes *data, gboolean binary)
{
	gsize len;
	const char *bytes;

	if (data == NULL) {
		reject(cmd, "(literal) is NULL");
		return;
	}
	bytes = g_bytes_get_data(data, &len);
	if (!binary && len > 0 && memchr(bytes, '\0', len) != NULL) {
		reject(cmd, "(literal) contains NUL but is not binary");
		return;
	}
	add_arg(cmd, ARG_LITERAL, g_bytes_ref(data), binary);
}

void
imap_cmd_allow_utf8(ImapCmd *cmd, gboolean allow)
{
	cmd->allow_utf8 = allow;
}

void
imap_cmd_secret(ImapCmd *cmd, gboolean secret)
{
	cmd->secret = secret;
}

const char *
imap_cmd_verb(const ImapCmd *cmd)
{
	return cmd->verb;
}

gboolean
imap_cmd_valid(const ImapCmd *cmd, ImapError **err)
{
	if (cmd->error == NULL)
		return TRUE;
	imap_error_set(err, IMAP_EINVAL, IMAP_CODE_NONE, "%s", cmd->error);
	return FALSE;
}

char *
imap_quote(const char *s, gsize len, gboolean allow_8bit)
{
	GString *out;

	if (s == NULL && len > 0)
		return NULL;
	if (find_forbidden(s, len) >= 0)
		return NULL;
	if (!allow_8bit)
		for (gsize i = 0; i < len; i++)
			if ((unsigned char)s[i] >= 0x80)
				return NULL;
	out = g_string_sized_new(len + 3);
	g_string_append_c(out, '"');
	for (gsize i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			g_string_append_c(out, '\\');
		g_string_append_c(out, s[i]);
	}
	g_string_append_c(out, '"');
	return g_string_free(out, FALSE);
}

/* ASTRING-CHAR (RFC 3501 9): ATOM-CHAR or "]". */
static gboolean
is_astring_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return FALSE;
	return strchr("(){%*\"\\", c) == NULL;
}

static gboolean
is_atom(const char *s, gsize len)
{
	if (len == 0)
		return FALSE;
	if (len == 3 && g_ascii_strncasecmp(s, "NIL", 3) == 0)
		return FALSE;
	for (gsize i = 0; i < len; i++)
		if (!is_astring_char((unsigned char)s[i]))
			return FALSE;
	return TRUE;
}

/* Printable 7-bit, or (when allowed) valid UTF-8 with no control bytes. */
static gboolean
is_quotable(const char *s, gsize len, gboolean allow_utf8)
{
	gboolean has_8bit = FALSE;

	for (gsize i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return FALSE;
		if (c >= 0x80)
			has_8bit = TRUE;
	}
	if (!has_8bit)
		return TRUE;
	return allow_utf8 && g_utf8_validate(s, (gssize)len, NULL);
}

static void
render_string(const char *s, gsize len, gboolean atom_ok, gboolean allow_utf8,
              Rendered *r)
{
	if (atom_ok && is_atom(s, len)) {
		r->text = g_strndup(s, len);
		return;
	}
	if (is_quotable(s, len, allow_utf8)) {
		r->text = imap_quote(s, len, TRUE);
		return;
	}
	r->literal = g_bytes_new(s, len);
}

static void
render_mailbox(const char *name, gboolean allow_utf8, Rendered *r)
{
	char *encoded;

	if (g_ascii_strcasecmp(name, "INBOX") == 0) {
		r->text = g_strdup("INBOX");
		return;
	}
	if (allow_utf8) {
		render_string(name, strlen(name), TRUE, TRUE, r);
		return;
	}
	/* Validated when added, so encoding cannot fail. */
	encoded = imap_utf7_encode(name);
	render_string(encoded, strlen(encoded), TRUE, FALSE, r);
	g_free(encoded);
}

static void
render_arg(const ImapCmd *cmd, const CmdArg *arg, Rendered *r)
{
	gsize len;
	const char *s = g_bytes_get_data(arg->value, &len);

	memset(r, 0, sizeof(*r));
	if (s == NULL)
		s = "";
	switch (arg->kind) {
	case ARG_RAW:
		r->text = g_strndup(s, len);
		break;
	case ARG_ASTRING:
		render_string(s, len, TRUE, cmd->allow_utf8, r);
		break;
	case ARG_STRING:
		render_string(s, len, FALSE, cmd->allow_utf8, r);
		break;
	case ARG_MAILBOX: {
		char *name = g_strndup(s, len);

		render_mailbox(name, cmd->allow_utf8, r);
		g_free(name);
		break;
	}
	case ARG_LITERAL:
		r->literal = g_bytes_ref(arg->value);
		r->binary = arg->binary;
		break;
	}
}

static void
rendered_clear(Rendered *r)
{
	g_free(r->text);
	if (r->literal != NULL)
		g_bytes_unref(r->literal);
}

static void
add_part(GPtrArray *parts, GBytes *bytes, gboolean wait)
{
	ImapCmdPart *part = g_new0(ImapCmdPart, 1);

	part->bytes = bytes;
	part->wait_continuation = wait;
	g_ptr_array_add(parts, part);
}

static void
flush_text(GPtrArray *parts, GString *line, gboolean wait)
{
	gsize len = line->len;

	add_part(parts, g_bytes_new_take(g_string_free(line, FALSE), len),
	         wait);
}

static gboolean
literal_waits(ImapLiteralMode mode, gsize len)
{
	switch (mode) {
	case IMAP_LITERAL_PLUS:
		return FALSE;
	case IMAP_LITERAL_MINUS:
		return len > LITERAL_MINUS_MAX;
	case IMAP_LITERAL_SYNC:
		break;
	}
	return TRUE;
}

/* Appends the literal header and bytes; returns the GString that further
 * text goes into (a new one when the line had to be cut into parts). */
static GString *
append_literal(GPtrArray *parts, GString *line, const Rendered *r,
               ImapLiteralMode mode)
{
	gsize len;
	const char *data = g_bytes_get_data(r->literal, &len);
	gboolean wait = literal_waits(mode, len);

	g_string_append_printf(line, "%s{%" G_GSIZE_FORMAT "%s}\r\n",
	                       r->binary ? "~" : "", len, wait ? "" : "+");
	if (wait) {
		flush_text(parts, line, TRUE);
		line = g_string_new(NULL);
	}
	if (len < INLINE_LITERAL_MAX) {
		g_string_append_len(line, data, (gssize)len);
		return line;
	}
	if (line->len > 0)
		flush_text(parts, line, FALSE);
	else
		g_string_free(line, TRUE);
	add_part(parts, g_bytes_ref(r->literal), FALSE);
	return g_string_new(NULL);
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
static gboolean
is_valid_tag(const char *tag)
{
	if (tag == NULL || *tag == '\0')
		return FALSE;
	for (const char *p = tag; *p != '\0'; p++)
		if (*p == '+' || !is_astring_char((unsigned char)*p))
			return FALSE;
	return TRUE;
}

/* Returns NULL when the command is invalid (see imap_cmd_valid()) or the tag
 * is not a valid tag: nothing half-built is ever sent. */
GPtrArray *
imap_cmd_serialize(const ImapCmd *cmd, const char *tag, ImapLiteralMode mode)
{
	GPtrArray *parts;
	GString *line;

	if (cmd->error != NULL || !is_valid_tag(tag))
		return NULL;
	parts = g_ptr_array_new_with_free_func(cmd_part_free);
	line = g_string_new(tag);
	g_string_append_c(line, ' ');
	g_string_append(line, cmd->verb);
	for (guint i = 0; i < cmd->args->len; i++) {
		Rendered r;

		render_arg(cmd, g_ptr_array_index(cmd->args, i), &r);
		g_string_append_c(line, ' ');
		if (r.literal != NULL)
			line = append_literal(parts, line, &r, mode);
		else
			g_string_append(line, r.text);
		rendered_clear(&r);
	}
	g_string_append(line, "\r\n");
	flush_text(parts, line, FALSE);
	return parts;
}

static void
describe_literal(GString *out, const Rendered *r)
{
	gsize len;
	const unsigned char *data = g_bytes_get_data(r->literal, &len);

	g_string_append_printf(out, "%s{%" G_GSIZE_FORMAT "}",
	                       r->binary ? "~" : "", len);
	if (len > DESCRIBE_LITERAL_MAX)
		return;
	/* Escaped so the log line stays one line of printable ASCII. */
	for (gsize i = 0; i < len; i++) {
		if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '\\')
			g_string_append_c(out, (char)data[i]);
		else
			g_string_append_printf(out, "\\x%02x", data[i]);
	}
}

char *
imap_cmd_describe(const ImapCmd *cmd, const char *tag)
{
	GString *out = g_string_new(NULL);

	if (tag != NULL)
		g_string_append_printf(out, "%s ", tag);
	g_string_append(out, cmd->verb);
	for (guint i = 0; i < cmd->args->len; i++) {
		const CmdArg *arg = g_ptr_array_index(cmd->args, i);
		Rendered r;

		g_string_append_c(out, ' ');
		if (arg->secret) {
			g_string_append(out, "***");
			continue;
		}
		render_arg(cmd, arg, &r);
		if (r.literal != NULL)
			describe_literal(out, &r);
		else
			g_string_append(out, r.text);
		rendered_clear(&r);
	}
	if (cmd->error != NULL)
		g_string_append(out, " [invalid]");
	return g_string_free(out, FALSE);
}
