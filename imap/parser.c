/* parser.c - resumable parser for IMAP server responses: bytes go in in any
 * split, complete ImapResponse trees come out through a callback.
 *
 * Bytes are collected up to each LF and a complete line is parsed at once.
 * Only literals cross line boundaries, so all that is kept between feeds is
 * the data response being built, its stack of open lists and the literal in
 * progress. Every input byte is looked at a bounded number of times whatever
 * the split, so long FETCH listings parse in linear time. */
#include "imap/parser.h"

#include <string.h>

/* A line buffer larger than this is released instead of reused, so one huge
 * response does not pin its memory for the life of the connection. */
#define LINE_BUFFER_KEEP (64u * 1024)

/* GByteArray lengths are guint. */
#define BUFFER_MAX ((gsize)G_MAXUINT32 - 1)

typedef enum {
	PARSER_LINE,
	PARSER_LITERAL,
} ParserState;

struct ImapParser {
	ImapParserLimits limits;
	ImapParserCallbacks cb;
	gboolean failed;
	ParserState state;
	GByteArray *line;   /* current line, its LF not seen yet */
	gsize resp_bytes;   /* non-literal bytes of the response so far */
	ImapResponse *resp; /* data response waiting for more lines */
	GPtrArray *open;    /* its open LIST values, innermost last */
	guint uid_scanned;  /* FETCH items already searched for UID */
	guint32 uid;        /* the UID found there, or 0 */
	guint64 lit_size;
	guint64 lit_left;
	GByteArray *lit_buf; /* literal kept in memory */
	gboolean streaming;  /* literal goes to sink instead */
	ImapLiteralSink sink;
};

typedef struct {
	const char *s;
	gsize len; /* without the line end */
	gsize pos;
} Cursor;

typedef enum {
	VALUES_EOL,     /* the line ended */
	VALUES_CLOSE,   /* "]" ended a response code */
	VALUES_LITERAL, /* a literal announcement ended the line */
	VALUES_ERROR,
} ValuesEnd;

typedef struct {
	GPtrArray *top;  /* where depth-0 values go */
	GPtrArray *open; /* open LIST values, innermost last (borrowed) */
	guint max_depth;
	gboolean in_code; /* inside "[CODE ...]", where "]" ends atoms */
	guint64 lit_size; /* set with VALUES_LITERAL */
} ValueReader;

static gboolean syntax_error(ImapError **err, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/* Records an IMAP_EPROTO error; returns FALSE for "return syntax_error()". */
static gboolean
syntax_error(ImapError **err, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (err == NULL || *err != NULL)
		return FALSE;
	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	imap_error_set(err, IMAP_EPROTO, 0, "%s", msg);
	g_free(msg);
	return FALSE;
}

static gboolean
at_end(const Cursor *cur)
{
	return cur->pos >= cur->len;
}

static char
peek(const Cursor *cur)
{
	return cur->s[cur->pos];
}

static void
skip_spaces(Cursor *cur)
{
	while (!at_end(cur) && peek(cur) == ' ')
		cur->pos++;
}

static gboolean
parse_number(const char *s, gsize n, guint64 max, guint64 *out)
{
	guint64 v = 0;

	if (s == NULL || n == 0)
		return FALSE;
	for (gsize i = 0; i < n; i++) {
		unsigned digit;

		if (!g_ascii_isdigit(s[i]))
			return FALSE;
		digit = (unsigned)(s[i] - '0');
		if (v > (max - digit) / 10)
			return FALSE;
		v = v * 10 + digit;
	}
	if (out != NULL)
		*out = v;
	return TRUE;
}

gboolean
imap_parse_u64(const char *s, guint64 *out)
{
	if (s == NULL)
		return FALSE;
	return parse_number(s, strlen(s), G_MAXUINT64, out);
}

gboolean
imap_parse_u32(const char *s, guint32 *out)
{
	guint64 v;

	if (s == NULL || !parse_number(s, strlen(s), G_MAXUINT32, &v))
		return FALSE;
	if (out != NULL)
		*out = (guint32)v;
	return TRUE;
}

static ImapValue *
value_new(ImapValueType type)
{
	ImapValue *v = g_new0(ImapValue, 1);

	v->type = type;
	return v;
}

void
imap_value_free(ImapValue *v)
{
	if (v == NULL)
		return;
	g_free(v->str);
	if (v->items != NULL)
		g_ptr_array_unref(v->items);
	g_free(v);
}

static void
value_destroy(gpointer v)
{
	imap_value_free(v);
}

static GPtrArray *
value_array_new(void)
{
	return g_ptr_array_new_with_free_func(value_destroy);
}

static ImapResponse *
response_new(ImapResponseKind kind)
{
	ImapResponse *r = g_new0(ImapResponse, 1);

	r->kind = kind;
	r->code_args = value_array_new();
	r->args = value_array_new();
	return r;
}

void
imap_response_free(ImapResponse *r)
{
	if (r == NULL)
		return;
	g_free(r->tag);
	g_free(r->name);
	g_free(r->code);
	g_free(r->text);
	if (r->code_args != NULL)
		g_ptr_array_unref(r->code_args);
	if (r->args != NULL)
		g_ptr_array_unref(r->args);
	g_free(r);
}

static GPtrArray *
reader_container(const ValueReader *vr)
{
	const ImapValue *list;

	if (vr->open->len == 0)
		return vr->top;
	list = g_ptr_array_index(vr->open, vr->open->len - 1);
	return list->items;
}

static gboolean
ends_atom(char c, gboolean in_code)
{
	return c == ' ' || c == '(' || c == ')' || c == '"' ||
	       (in_code && c == ']');
}

/* An atom runs to a space, paren or quote, except that a "[" is read through
 * its matching "]" (spaces and parens included), so fetch items such as
 * BODY[HEADER.FIELDS (A B)]<0> stay one atom. */
static ImapValue *
read_atom(Cursor *cur, gboolean in_code, ImapError **err)
{
	gsize start = cur->pos;
	guint brackets = 0;
	ImapValue *v;

	for (; cur->pos < cur->len; cur->pos++) {
		char c = cur->s[cur->pos];

		if (brackets > 0) {
			if (c == '[')
				brackets++;
			else if (c == ']')
				brackets--;
		} else if (c == '[') {
			brackets++;
		} else if (ends_atom(c, in_code)) {
			break;
		}
	}
	if (brackets > 0) {
		imap_error_set(err, IMAP_EPROTO, 0,
		               "unterminated '[' in atom at offset %zu", start);
		return NULL;
	}
	if (cur->pos == start) {
		imap_error_set(err, IMAP_EPROTO, 0,
		               "unexpected '%c' at offset %zu", peek(cur),
		               start);
		return NULL;
	}
	if (cur->pos - start == 3 &&
	    g_ascii_strncasecmp(cur->s + start, "NIL", 3) == 0)
		return value_new(IMAP_VALUE_NIL);
	v = value_new(IMAP_VALUE_ATOM);
	v->len = cur->pos - start;
	v->str = g_strndup(cur->s + start, v->len);
	return v;
}

/* Quoted strings may hold any byte but CR, LF and NUL (refused per line);
 * a backslash takes the next byte literally. */
static ImapValue *
read_quoted(Cursor *cur, ImapError **err)
{
	gsize start = cur->pos + 1, end, out = 0;
	ImapValue *v;

	for (end = start; end < cur->len; end++) {
		if (cur->s[end] == '\\')
			end++;
		else if (cur->s[end] == '"')
			break;
	}
	if (end >= cur->len) {
		imap_error_set(err, IMAP_EPROTO, 0,
		               "unterminated quoted string at offset %zu",
		               cur->pos);
		return NULL;
	}
	v = value_new(IMAP_VALUE_STRING);
	v->str = g_malloc(end - start + 1);
	for (gsize i = start; i < end; i++) {
		if (cur->s[i] == '\\')
			i++;
		v->str[out++] = cur->s[i];
	}
	v->str[out] = '\0';
	v->len = out;
	cur->pos = end + 1;
	return v;
}

static gboolean
starts_literal(const Cursor *cur)
{
	if (peek(cur) == '{')
		return TRUE;
	return peek(cur) == '~' && cur->pos + 1 < cur->len &&
	       cur->s[cur->pos + 1] == '{';
}

/* "{n}" or literal8 "~{n}"; it must end the line. */
static gboolean
read_literal_size(Cursor *cur, guint64 *size, ImapError **err)
{
	const char *digits, *close;
	gsize n;

	if (peek(cur) == '~')
		cur->pos++;
	cur->pos++;
	digits = cur->s + cur->pos;
	close = memchr(digits, '}', cur->len - cur->pos);
	if (close == NULL)
		return syntax_error(err, "unterminated literal announcement");
	n = (gsize)(close - digits);
	if (!parse_number(digits, n, G_MAXUINT64, size))
		return syntax_error(err, "invalid literal size {%.*s}",
		                    (int)MIN(n, 40), digits);
	cur->pos += n + 1;
	if (!at_end(cur))
		return syntax_error(err, "literal announcement not at end of "
		                         "line");
	return TRUE;
}

static gboolean
open_list(ValueReader *vr, Cursor *cur, ImapError **err)
{
	ImapValue *list;

	if (vr->open->len >= vr->max_depth)
		return syntax_error(err, "lists nested deeper than %u",
		                    vr->max_depth);
	list = value_new(IMAP_VALUE_LIST);
	list->items = value_array_new();
	g_ptr_array_add(reader_container(vr), list);
	g_ptr_array_add(vr->open, list);
	cur->pos++;
	return TRUE;
}

static gboolean
close_list(ValueReader *vr, Cursor *cur, ImapError **err)
{
	if (vr->open->len == 0)
		return syntax_error(err, "unbalanced ')' at offset %zu",
		                    cur->pos);
	g_ptr_array_set_size(vr->open, vr->open->len - 1);
	cur->pos++;
	return TRUE;
}

/* Reads values until the line ends, a literal is announced, or (in a
 * response code) the closing "]". */
static ValuesEnd
read_values(ValueReader *vr, Cursor *cur, ImapError **err)
{
	for (;;) {
		ImapValue *v;
		char c;

		skip_spaces(cur);
		if (at_end(cur))
			return VALUES_EOL;
		c = peek(cur);
		if (c == '(') {
			if (!open_list(vr, cur, err))
				return VALUES_ERROR;
			continue;
		}
		if (c == ')') {
			if (!close_list(vr, cur, err))
				return VALUES_ERROR;
			continue;
		}
		if (c == ']' && vr->in_code) {
			if (vr->open->len > 0) {
				imap_error_set(err, IMAP_EPROTO, 0,
				               "']' inside a list");
				return VALUES_ERROR;
			}
			cur->pos++;
			return VALUES_CLOSE;
		}
		if (starts_literal(cur)) {
			if (!read_literal_size(cur, &vr->lit_size, err))
				return VALUES_ERROR;
			return VALUES_LITERAL;
		}
		if (c == '"')
			v = read_quoted(cur, err);
		else
			v = read_atom(cur, vr->in_code, err);
		if (v == NULL)
			return VALUES_ERROR;
		g_ptr_array_add(reader_container(vr), v);
	}
}

static ImapStatus
emit(ImapParser *p)
{
	ImapResponse *r = p->resp;

	p->resp = NULL;
	p->resp_bytes = 0;
	p->uid_scanned = 0;
	p->uid = 0;
	if (r->text == NULL)
		r->text = g_strdup("");
	if (p->cb.response != NULL)
		p->cb.response(p->cb.user, r);
	else
		imap_response_free(r);
	return IMAP_OK;
}

static GPtrArray *
data_container(const ImapParser *p)
{
	const ImapValue *list;

	if (p->open->len == 0)
		return p->resp->args;
	list = g_ptr_array_index(p->open, p->open->len - 1);
	return list->items;
}

/* The UID item of the outermost FETCH list, if it came before. The search
 * resumes where the previous literal left it, so a response with many
 * literals stays linear. */
static guint32
fetch_uid_so_far(ImapParser *p)
{
	const ImapValue *list;

	if (p->open->len == 0 || g_strcmp0(p->resp->name, "FETCH") != 0)
		return 0;
	list = g_ptr_array_index(p->open, 0);
	for (; p->uid == 0 && p->uid_scanned + 1 < list->items->len;
	     p->uid_scanned += 2) {
		const ImapValue *name, *value;

		name = g_ptr_array_index(list->items, p->uid_scanned);
		value = g_ptr_array_index(list->items, p->uid_scanned + 1);
		if (imap_value_is_atom(name, "UID"))
			(void)imap_value_u32(value, &p->uid);
	}
	return p->uid;
}

static gboolean
offer_literal(ImapParser *p, guint64 size)
{
	GPtrArray *container = data_container(p);
	ImapLiteralInfo info = {0};
	ImapLiteralSink sink = {0};
	const ImapValue *prev = NULL;

	if (p->cb.literal_start == NULL || p->resp->kind != IMAP_RESP_UNTAGGED)
		return FALSE;
	if (container->len > 0)
		prev = g_ptr_array_index(container, container->len - 1);
	info.name = p->resp->name;
	info.number = p->resp->number;
	info.has_number = p->resp->has_number;
	info.depth = p->open->len;
	info.item =
	    prev != NULL && prev->type == IMAP_VALUE_ATOM ? prev->str : NULL;
	info.uid = fetch_uid_so_far(p);
	info.size = size;
	if (!p->cb.literal_start(p->cb.user, &info, &sink))
		return FALSE;
	p->sink = sink;
	return TRUE;
}

static ImapStatus
start_literal(ImapParser *p, guint64 size, ImapError **err)
{
	p->lit_size = size;
	p->lit_left = size;
	p->state = PARSER_LITERAL;
	p->streaming = offer_literal(p, size);
	if (p->streaming) {
		if (p->sink.write == NULL)
			return imap_error_set(err, IMAP_EPROTO, 0,
			                      "literal sink has no write "
			                      "function");
		return IMAP_OK;
	}
	/* Checked before anything is allocated: the buffer then grows only
	 * as bytes really arrive, whatever size was announced. */
	if (size > p->limits.max_literal)
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "literal of %" G_GUINT64_FORMAT
		                      " bytes exceeds limit %" G_GUINT64_FORMAT,
		                      size, p->limits.max_literal);
	p->lit_buf = g_byte_array_new();
	return IMAP_OK;
}

static ImapStatus
finish_literal(ImapParser *p)
{
	ImapValue *v;

	if (p->streaming) {
		ImapLiteralSink sink = p->sink;

		p->streaming = FALSE;
		memset(&p->sink, 0, sizeof(p->sink));
		if (sink.end != NULL)
			sink.end(sink.ctx, TRUE);
		v = value_new(IMAP_VALUE_STREAMED);
		v->len = (gsize)p->lit_size;
	} else {
		v = value_new(IMAP_VALUE_STRING);
		v->len = p->lit_buf->len;
		g_byte_array_append(p->lit_buf, (const guint8 *)"", 1);
		v->str = (char *)g_byte_array_free(p->lit_buf, FALSE);
		p->lit_buf = NULL;
	}
	v->literal = TRUE;
	g_ptr_array_add(data_container(p), v);
	p->state = PARSER_LINE;
	return IMAP_OK;
}

static ImapStatus
feed_literal(ImapParser *p, const char *data, gsize n, ImapError **err)
{
	p->lit_left -= n;
	if (!p->streaming) {
		g_byte_array_append(p->lit_buf, (const guint8 *)data, (guint)n);
		return IMAP_OK;
	}
	if (!p->sink.write(p->sink.ctx, data, n))
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "literal sink refused %zu bytes", n);
	return IMAP_OK;
}

static ImapStatus
continue_data(ImapParser *p, Cursor *cur, ImapError **err)
{
	ValueReader vr = {
	    .top = p->resp->args,
	    .open = p->open,
	    .max_depth = p->limits.max_depth,
	};

	switch (read_values(&vr, cur, err)) {
	case VALUES_EOL:
		if (p->open->len > 0)
			return imap_error_set(err, IMAP_EPROTO, 0,
			                      "%u list(s) left open at end of "
			                      "%s response",
			                      p->open->len, p->resp->name);
		return emit(p);
	case VALUES_LITERAL:
		return start_literal(p, vr.lit_size, err);
	case VALUES_CLOSE:
	case VALUES_ERROR:
		break;
	}
	return IMAP_EPROTO;
}

/* Arguments of a code that do not parse as values (free-form text such as
 * some servers put in REFERRAL or private codes) are kept verbatim as one
 * atom, up to the first "]". Returns FALSE if there is no "]" at all. */
static gboolean
read_raw_code_args(ImapResponse *r, Cursor *cur)
{
	const char *start = cur->s + cur->pos, *close;
	ImapValue *raw;

	close = memchr(start, ']', cur->len - cur->pos);
	if (close == NULL)
		return FALSE;
	g_ptr_array_set_size(r->code_args, 0);
	if (close > start) {
		raw = value_new(IMAP_VALUE_ATOM);
		raw->len = (gsize)(close - start);
		raw->str = g_strndup(start, raw->len);
		g_ptr_array_add(r->code_args, raw);
	}
	cur->pos += (gsize)(close - start) + 1;
	return TRUE;
}

/* Values after the code atom, up to the closing "]". */
static gboolean
read_code_args(ImapParser *p, ImapResponse *r, Cursor *cur)
{
	GPtrArray *open = g_ptr_array_new();
	ValueReader vr = {
	    .top = r->code_args,
	    .open = open,
	    .max_depth = p->limits.max_depth,
	    .in_code = TRUE,
	};
	Cursor args = *cur;
	ValuesEnd end = read_values(&vr, cur, NULL);

	g_ptr_array_unref(open);
	if (end == VALUES_CLOSE)
		return TRUE;
	*cur = args;
	if (read_raw_code_args(r, cur))
		return TRUE;
	g_ptr_array_set_size(r->code_args, 0);
	return FALSE;
}

/* "[CODE args]" at cur. A malformed code (no closing "]") is left alone: it
 * then simply stays part of the text. */
static void
read_code(ImapParser *p, ImapResponse *r, Cursor *cur)
{
	Cursor c = *cur;
	gsize start, len;

	c.pos++;
	start = c.pos;
	while (!at_end(&c) && peek(&c) != ' ' && peek(&c) != ']')
		c.pos++;
	len = c.pos - start;
	if (len == 0 || at_end(&c))
		return;
	c.pos++;
	if (c.s[c.pos - 1] == ' ' && !read_code_args(p, r, &c))
		return;
	r->code = g_ascii_strup(c.s + start, (gssize)len);
	r->code_id = imap_code_from_name(r->code);
	if (!at_end(&c) && peek(&c) == ' ')
		c.pos++;
	*cur = c;
}

static ImapStatus
finish_status(ImapParser *p, Cursor *cur)
{
	ImapResponse *r = p->resp;

	if (!at_end(cur)) {
		cur->pos++; /* the space that ended the name */
		if (!at_end(cur) && peek(cur) == '[')
			read_code(p, r, cur);
	}
	r->text = g_strndup(cur->s + cur->pos, cur->len - cur->pos);
	return emit(p);
}

static ImapCond
cond_from_name(const char *name)
{
	static const struct {
		const char *name;
		ImapCond cond;
	} conds[] = {
	    {"OK", IMAP_COND_OK},           {"NO", IMAP_COND_NO},
	    {"BAD", IMAP_COND_BAD},         {"BYE", IMAP_COND_BYE},
	    {"PREAUTH", IMAP_COND_PREAUTH},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(conds); i++)
		if (strcmp(conds[i].name, name) == 0)
			return conds[i].cond;
	return IMAP_COND_NONE;
}

/* Returns the length of the word at cur (up to a space or the end). */
static gsize
word_length(const Cursor *cur)
{
	const char *space = memchr(cur->s + cur->pos, ' ', cur->len - cur->pos);

	return space != NULL ? (gsize)(space - (cur->s + cur->pos))
	                     : cur->len - cur->pos;
}

static ImapStatus
start_continuation(ImapParser *p, Cursor *cur)
{
	cur->pos = 1;
	if (!at_end(cur) && peek(cur) == ' ')
		cur->pos++;
	p->resp = response_new(IMAP_RESP_CONTINUATION);
	p->resp->name = g_strdup("");
	p->resp->text = g_strndup(cur->s + cur->pos, cur->len - cur->pos);
	return emit(p);
}

static ImapStatus
read_number(ImapResponse *r, Cursor *cur, gsize n, ImapError **err)
{
	guint64 number;

	if (!parse_number(cur->s + cur->pos, n, G_MAXUINT32, &number))
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "invalid message number %.*s",
		                      (int)MIN(n, 40), cur->s + cur->pos);
	r->has_number = TRUE;
	r->number = (guint32)number;
	cur->pos += n;
	if (at_end(cur))
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "no response name after number %u",
		                      r->number);
	cur->pos++;
	return IMAP_OK;
}

static ImapStatus
start_response(ImapParser *p, Cursor *cur, ImapError **err)
{
	ImapResponse *r;
	gsize n;

	if (cur->len == 0)
		return imap_error_set(err, IMAP_EPROTO, 0, "empty line");
	if (peek(cur) == '+')
		return start_continuation(p, cur);
	n = word_length(cur);
	if (n == 0 || n == cur->len)
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "response is only a tag: \"%.*s\"",
		                      (int)MIN(cur->len, 40), cur->s);
	if (n == 1 && peek(cur) == '*') {
		r = p->resp = response_new(IMAP_RESP_UNTAGGED);
	} else {
		r = p->resp = response_new(IMAP_RESP_TAGGED);
		r->tag = g_strndup(cur->s, n);
	}
	cur->pos = n + 1;
	n = word_length(cur);
	if (r->kind == IMAP_RESP_UNTAGGED && n > 0 &&
	    g_ascii_isdigit(peek(cur))) {
		if (read_number(r, cur, n, err) != IMAP_OK)
			return IMAP_EPROTO;
		n = word_length(cur);
	}
	if (n == 0 || !g_ascii_isalpha(peek(cur)))
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "response without a name");
	r->name = g_ascii_strup(cur->s + cur->pos, (gssize)n);
	cur->pos += n;
	if (!r->has_number)
		r->cond = cond_from_name(r->name);
	if (r->cond != IMAP_COND_NONE)
		return finish_status(p, cur);
	if (r->kind == IMAP_RESP_TAGGED)
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "tagged response %s is not OK, NO or BAD",
		                      r->name);
	return continue_data(p, cur, err);
}

/* line holds one line including its LF. */
static ImapStatus
process_line(ImapParser *p, const char *line, gsize len, ImapError **err)
{
	Cursor cur = {line, len - 1, 0};

	if (cur.len > 0 && line[cur.len - 1] == '\r')
		cur.len--;
	if (memchr(line, '\r', cur.len) != NULL)
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "CR without LF inside a response line");
	if (memchr(line, '\0', cur.len) != NULL)
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "NUL byte in a response line");
	if (p->resp == NULL)
		return start_response(p, &cur, err);
	return continue_data(p, &cur, err);
}

static void
reset_line(ImapParser *p)
{
	if (p->line->len > LINE_BUFFER_KEEP) {
		g_byte_array_unref(p->line);
		p->line = g_byte_array_new();
	} else {
		g_byte_array_set_size(p->line, 0);
	}
}

/* Takes bytes up to and including the next LF; parses the line once it is
 * complete. A line complete within data is parsed in place. max_line counts
 * every byte of a response outside its literals, line ends included, and is
 * checked before buffering so an endless line costs at most max_line. */
static ImapStatus
feed_line(ImapParser *p, const char **data, gsize *len, ImapError **err)
{
	const char *s = *data;
	const char *lf = memchr(s, '\n', *len);
	gsize take = lf != NULL ? (gsize)(lf - s) + 1 : *len;
	gsize used = p->resp_bytes + p->line->len;
	ImapStatus status;

	if (take > p->limits.max_line - used)
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "response exceeds the line limit of %zu "
		                      "bytes",
		                      p->limits.max_line);
	*data += take;
	*len -= take;
	if (lf == NULL || p->line->len > 0)
		g_byte_array_append(p->line, (const guint8 *)s, (guint)take);
	if (lf == NULL)
		return IMAP_OK;
	if (p->line->len > 0) {
		s = (const char *)p->line->data;
		take = p->line->len;
	}
	p->resp_bytes += take;
	status = process_line(p, s, take, err);
	reset_line(p);
	return status;
}

static void
parser_fail(ImapParser *p)
{
	p->failed = TRUE;
	if (p->streaming) {
		p->streaming = FALSE;
		if (p->sink.end != NULL)
			p->sink.end(p->sink.ctx, FALSE);
		memset(&p->sink, 0, sizeof(p->sink));
	}
	if (p->lit_buf != NULL) {
		g_byte_array_unref(p->lit_buf);
		p->lit_buf = NULL;
	}
	imap_response_free(p->resp);
	p->resp = NULL;
	p->uid_scanned = 0;
	p->uid = 0;
	g_ptr_array_set_size(p->open, 0);
	g_byte_array_set_size(p->line, 0);
	p->state = PARSER_LINE;
}

ImapStatus
imap_parser_feed(ImapParser *p, const char *data, gsize len, ImapError **err)
{
	if (p == NULL || (data == NULL && len > 0))
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "imap_parser_feed: no parser or data");
	if (p->failed)
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "parser stopped by an earlier protocol "
		                      "error");
	for (;;) {
		ImapStatus status;

		if (p->state == PARSER_LITERAL) {
			gsize n;

			if (p->lit_left == 0) {
				status = finish_literal(p);
			} else if (len == 0) {
				break;
			} else {
				n = (gsize)MIN(p->lit_left, (guint64)len);
				n = MIN(n, BUFFER_MAX);
				status = feed_literal(p, data, n, err);
				data += n;
				len -= n;
			}
		} else if (len == 0) {
			break;
		} else {
			status = feed_line(p, &data, &len, err);
		}
		if (status != IMAP_OK) {
			parser_fail(p);
			return IMAP_EPROTO;
		}
	}
	return IMAP_OK;
}

ImapParser *
imap_parser_new(const ImapParserLimits *limits, const ImapParserCallbacks *cb)
{
	ImapParser *p = g_new0(ImapParser, 1);

	p->limits.max_line = IMAP_DEFAULT_MAX_LINE;
	p->limits.max_literal = IMAP_DEFAULT_MAX_LITERAL;
	p->limits.max_depth = IMAP_DEFAULT_MAX_DEPTH;
	if (limits != NULL && limits->max_line != 0)
		p->limits.max_line = MIN(limits->max_line, BUFFER_MAX);
	if (limits != NULL && limits->max_literal != 0)
		p->limits.max_literal =
		    MIN(limits->max_literal, (guint64)BUFFER_MAX);
	if (limits != NULL && limits->max_depth != 0)
		p->limits.max_depth = limits->max_depth;
	if (cb != NULL)
		p->cb = *cb;
	p->line = g_byte_array_new();
	p->open = g_ptr_array_new();
	p->state = PARSER_LINE;
	return p;
}

void
imap_parser_free(ImapParser *p)
{
	if (p == NULL)
		return;
	parser_fail(p);
	g_byte_array_unref(p->line);
	g_ptr_array_unref(p->open);
	g_free(p);
}

gboolean
imap_parser_idle(const ImapParser *p)
{
	return p != NULL && !p->failed && p->state == PARSER_LINE &&
	       p->line->len == 0 && p->resp == NULL;
}

gboolean
imap_value_is_atom(const ImapValue *v, const char *upper)
{
	return v != NULL && upper != NULL && v->type == IMAP_VALUE_ATOM &&
	       g_ascii_strcasecmp(v->str, upper) == 0;
}

const char *
imap_value_nstring(const ImapValue *v)
{
	if (v == NULL)
		return NULL;
	if (v->type == IMAP_VALUE_ATOM || v->type == IMAP_VALUE_STRING)
		return v->str;
	return NULL;
}

gboolean
imap_value_u32(const ImapValue *v, guint32 *out)
{
	guint64 n;

	if (v == NULL || v->type != IMAP_VALUE_ATOM ||
	    !parse_number(v->str, v->len, G_MAXUINT32, &n))
		return FALSE;
	if (out != NULL)
		*out = (guint32)n;
	return TRUE;
}

gboolean
imap_value_u64(const ImapValue *v, guint64 *out)
{
	if (v == NULL || v->type != IMAP_VALUE_ATOM)
		return FALSE;
	return parse_number(v->str, v->len, G_MAXUINT64, out);
}

const ImapValue *
imap_fetch_item(const ImapValue *list, const char *upper)
{
	const ImapValue *partial = NULL;
	gsize n;

	if (list == NULL || upper == NULL || list->type != IMAP_VALUE_LIST)
		return NULL;
	n = strlen(upper);
	for (guint i = 0; i + 1 < list->items->len; i += 2) {
		const ImapValue *name = g_ptr_array_index(list->items, i);

		if (name->type != IMAP_VALUE_ATOM || name->len < n ||
		    g_ascii_strncasecmp(name->str, upper, n) != 0)
			continue;
		if (name->len == n)
			return g_ptr_array_index(list->items, i + 1);
		if (name->str[n] == '<' && partial == NULL)
			partial = g_ptr_array_index(list->items, i + 1);
	}
	return partial;
}

static void
append_quoted(GString *out, const char *s, gsize len)
{
	g_string_append_c(out, '"');
	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar)s[i];

		if (c == '"' || c == '\\')
			g_string_append_c(out, '\\');
		if (c < 0x20 || c == 0x7f)
			g_string_append_printf(out, "\\x%02x", c);
		else
			g_string_append_c(out, (char)c);
	}
	g_string_append_c(out, '"');
}

static void append_values(GString *out, const GPtrArray *values,
                          gboolean leading_space);

static void
append_value(GString *out, const ImapValue *v)
{
	switch (v->type) {
	case IMAP_VALUE_ATOM:
		g_string_append_len(out, v->str, (gssize)v->len);
		break;
	case IMAP_VALUE_NIL:
		g_string_append(out, "NIL");
		break;
	case IMAP_VALUE_STRING:
		append_quoted(out, v->str, v->len);
		break;
	case IMAP_VALUE_STREAMED:
		g_string_append_printf(out, "{%zu}", v->len);
		break;
	case IMAP_VALUE_LIST:
		g_string_append_c(out, '(');
		append_values(out, v->items, FALSE);
		g_string_append_c(out, ')');
		break;
	}
}

static void
append_values(GString *out, const GPtrArray *values, gboolean leading_space)
{
	for (guint i = 0; i < values->len; i++) {
		if (i > 0 || leading_space)
			g_string_append_c(out, ' ');
		append_value(out, g_ptr_array_index(values, i));
	}
}

/* Strings are shown quoted (control bytes as \xHH) whether they came quoted
 * or as literals; streamed literals as {size}. */
char *
imap_response_to_string(const ImapResponse *r)
{
	GString *out;

	if (r == NULL)
		return g_strdup("");
	out = g_string_new(NULL);
	if (r->kind == IMAP_RESP_CONTINUATION) {
		g_string_append_c(out, '+');
		if (r->text != NULL && *r->text != '\0')
			g_string_append_printf(out, " %s", r->text);
		return g_string_free(out, FALSE);
	}
	g_string_append(out, r->kind == IMAP_RESP_TAGGED ? r->tag : "*");
	if (r->has_number)
		g_string_append_printf(out, " %u", r->number);
	g_string_append_printf(out, " %s", r->name);
	if (r->code != NULL) {
		g_string_append_printf(out, " [%s", r->code);
		append_values(out, r->code_args, TRUE);
		g_string_append_c(out, ']');
	}
	if (r->text != NULL && *r->text != '\0')
		g_string_append_printf(out, " %s", r->text);
	append_values(out, r->args, TRUE);
	return g_string_free(out, FALSE);
}
