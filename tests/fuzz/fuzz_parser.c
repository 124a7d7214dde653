/* fuzz_parser.c - libFuzzer target for the response parser: arbitrary bytes
 * fed in a few pieces, with small limits and literal streaming, must never
 * crash, leak, or break the parser's promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
	gboolean active;
	guint64 expected;
	guint64 written;
	guint refuse_after; /* refuse the write after this many, 0 = never */
	guint writes;
} FuzzSink;

static void
check(gboolean ok)
{
	if (!ok)
		abort();
}

static gboolean
sink_write(void *ctx, const char *data, gsize len)
{
	FuzzSink *s = ctx;

	check(s->active && len > 0 && s->written + len <= s->expected);
	check(data != NULL);
	s->written += len;
	s->writes++;
	return s->refuse_after == 0 || s->writes < s->refuse_after;
}

static void
sink_end(void *ctx, gboolean ok)
{
	FuzzSink *s = ctx;

	check(s->active);
	check(!ok || s->written == s->expected);
	s->active = FALSE;
}

static gboolean
literal_start(void *user, const ImapLiteralInfo *info, ImapLiteralSink *out)
{
	FuzzSink *s = user;

	check(!s->active);
	check(info->name != NULL);
	/* Stream every other literal by size, plus all body parts. */
	if (info->size % 2 == 0 &&
	    (info->item == NULL || strncmp(info->item, "BODY[", 5) != 0))
		return FALSE;
	s->active = TRUE;
	s->expected = info->size;
	s->written = 0;
	s->writes = 0;
	out->write = sink_write;
	out->end = sink_end;
	out->ctx = s;
	return TRUE;
}

static void
walk_values(const GPtrArray *values)
{
	check(values != NULL);
	for (guint i = 0; i < values->len; i++) {
		const ImapValue *v = g_ptr_array_index(values, i);
		guint64 n;

		switch (v->type) {
		case IMAP_VALUE_ATOM:
			check(v->str != NULL && strlen(v->str) == v->len &&
			      v->len > 0);
			(void)imap_value_u64(v, &n);
			break;
		case IMAP_VALUE_STRING:
			check(v->str != NULL && v->str[v->len] == '\0');
			break;
		case IMAP_VALUE_NIL:
			check(v->str == NULL && imap_value_nstring(v) == NULL);
			break;
		case IMAP_VALUE_LIST:
			walk_values(v->items);
			(void)imap_fetch_item(v, "BODY[]");
			(void)imap_fetch_item(v, "UID");
			break;
		case IMAP_VALUE_STREAMED:
			check(v->literal && v->str == NULL);
			break;
		}
	}
}

static void
on_response(void *user, ImapResponse *r)
{
	char *text = imap_response_to_string(r);

	check(text != NULL && r->text != NULL && r->args != NULL &&
	      r->code_args != NULL);
	check((r->kind == IMAP_RESP_TAGGED) == (r->tag != NULL));
	check(r->name != NULL);
	walk_values(r->args);
	walk_values(r->code_args);
	g_free(text);
	imap_response_free(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ImapParserLimits limits = {
	    .max_line = 2048,
	    .max_literal = 512,
	    .max_depth = 6,
	};
	FuzzSink sink = {0};
	ImapParserCallbacks cb = {
	    .response = on_response,
	    .literal_start = literal_start,
	    .user = &sink,
	};
	ImapParser *p;
	size_t pieces, off = 0;
	ImapStatus status = IMAP_OK;

	if (size == 0)
		return 0;
	pieces = 1 + data[0] % 7;
	sink.refuse_after = data[0] >> 6;
	data++;
	size--;
	p = imap_parser_new(&limits, &cb);
	for (size_t i = 0; i < pieces && status == IMAP_OK; i++) {
		size_t len = i + 1 == pieces ? size - off : (size - off) / 2;
		ImapError *err = NULL;

		status =
		    imap_parser_feed(p, (const char *)data + off, len, &err);
		check((status == IMAP_OK) == (err == NULL));
		if (err != NULL)
			check(err->status == IMAP_EPROTO && err->text != NULL);
		imap_error_free(err);
		off += len;
	}
	if (status != IMAP_OK) {
		check(!imap_parser_idle(p));
		check(imap_parser_feed(p, "* OK\r\n", 6, NULL) == IMAP_EPROTO);
		check(!sink.active);
	}
	imap_parser_free(p);
	check(!sink.active);
	return 0;
}
