/* test_parser.c - the resumable response parser: recorded transcripts fed
 * whole, byte by byte and at random splits; every response form; limits;
 * literal streaming; helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "imap/parser.h"

static const char *const transcripts[] = {
    "parser-dovecot-session", "parser-fetch", "parser-status", "parser-data",
    "parser-bare-lf",
};

/* What a parser run produced. */
typedef struct {
	GPtrArray *responses; /* ImapResponse * */
	ImapStatus status;
	ImapError *err;
} Run;

static char *
transcript_path(const char *name, const char *ext)
{
	const char *dir = g_getenv("TEST_SOURCE_DIR");

	if (dir == NULL)
		dir = TEST_SOURCE_DIR;
	return g_strdup_printf("%s/transcripts/%s.%s", dir, name, ext);
}

static GBytes *
read_transcript(const char *name, const char *ext)
{
	char *path = transcript_path(name, ext);
	char *data = NULL;
	gsize len = 0;
	GError *gerr = NULL;

	if (!g_file_get_contents(path, &data, &len, &gerr))
		fail_msg("%s: %s", path, gerr->message);
	g_free(path);
	return g_bytes_new_take(data, len);
}

static void
collect_response(void *user, ImapResponse *resp)
{
	g_ptr_array_add(user, resp);
}

static void
response_destroy(gpointer r)
{
	imap_response_free(r);
}

static void
run_init(Run *run)
{
	run->responses = g_ptr_array_new_with_free_func(response_destroy);
	run->status = IMAP_OK;
	run->err = NULL;
}

static void
run_clear(Run *run)
{
	g_ptr_array_unref(run->responses);
	imap_error_free(run->err);
}

static ImapParser *
collecting_parser(Run *run, const ImapParserLimits *limits)
{
	ImapParserCallbacks cb = {.response = collect_response};

	run_init(run);
	cb.user = run->responses;
	return imap_parser_new(limits, &cb);
}

static void
feed(ImapParser *p, Run *run, const char *data, gsize len)
{
	if (run->status == IMAP_OK)
		run->status = imap_parser_feed(p, data, len, &run->err);
}

static void
feed_str(ImapParser *p, Run *run, const char *text)
{
	feed(p, run, text, strlen(text));
}

/* Parses data split at the given offsets (ascending, may repeat). */
static void
parse_split(Run *run, const ImapParserLimits *limits, const char *data,
            gsize len, const gsize *cuts, gsize ncuts)
{
	ImapParser *p = collecting_parser(run, limits);
	gsize from = 0;

	for (gsize i = 0; i < ncuts; i++) {
		feed(p, run, data + from, cuts[i] - from);
		from = cuts[i];
	}
	feed(p, run, data + from, len - from);
	if (run->status == IMAP_OK)
		assert_true(imap_parser_idle(p));
	imap_parser_free(p);
}

static void
parse_whole(Run *run, const ImapParserLimits *limits, const char *data,
            gsize len)
{
	parse_split(run, limits, data, len, NULL, 0);
}

static void
parse_str(Run *run, const char *text)
{
	parse_whole(run, NULL, text, strlen(text));
}

static char *
render(const Run *run)
{
	GString *out = g_string_new(NULL);

	for (guint i = 0; i < run->responses->len; i++) {
		char *line = imap_response_to_string(
		    g_ptr_array_index(run->responses, i));

		g_string_append_printf(out, "%s\n", line);
		g_free(line);
	}
	return g_string_free(out, FALSE);
}

static ImapResponse *
resp_at(const Run *run, guint i)
{
	assert_true(i < run->responses->len);
	return g_ptr_array_index(run->responses, i);
}

static ImapValue *
item_at(const GPtrArray *values, guint i)
{
	assert_non_null(values);
	assert_true(i < values->len);
	return g_ptr_array_index(values, i);
}

static void
assert_render(const Run *run, const char *expected)
{
	char *got = render(run);

	assert_string_equal(got, expected);
	g_free(got);
}

static void
assert_split_renders(const char *data, gsize len, const gsize *cuts,
                     gsize ncuts, const char *expected)
{
	Run run;

	parse_split(&run, NULL, data, len, cuts, ncuts);
	if (run.status != IMAP_OK)
		fail_msg("parse failed: %s", run.err->text);
	assert_render(&run, expected);
	run_clear(&run);
}

static int
compare_offsets(const void *a, const void *b)
{
	gsize x = *(const gsize *)a, y = *(const gsize *)b;

	return x < y ? -1 : x > y;
}

/* Each transcript parses to its .expected rendering whole, one byte at a
 * time, and at random split points. */
static void
test_transcripts_any_split(void **state)
{
	GRand *rand = g_rand_new_with_seed(20240101);

	for (gsize t = 0; t < G_N_ELEMENTS(transcripts); t++) {
		GBytes *in = read_transcript(transcripts[t], "imap");
		GBytes *want = read_transcript(transcripts[t], "expected");
		gsize len;
		const char *data = g_bytes_get_data(in, &len);
		char *expected = g_strndup(g_bytes_get_data(want, NULL),
		                           g_bytes_get_size(want));
		gsize *cuts = g_new(gsize, len);

		assert_true(len > 0);
		assert_true(strlen(expected) > 0);
		assert_split_renders(data, len, NULL, 0, expected);
		for (gsize i = 0; i < len; i++)
			cuts[i] = i;
		assert_split_renders(data, len, cuts, len, expected);
		for (int round = 0; round < 200; round++) {
			gsize n = (gsize)g_rand_int_range(rand, 1, 12);

			for (gsize i = 0; i < n; i++)
				cuts[i] = (gsize)g_rand_int_range(
				    rand, 0, (gint32)len + 1);
			qsort(cuts, n, sizeof(*cuts), compare_offsets);
			assert_split_renders(data, len, cuts, n, expected);
		}
		g_free(cuts);
		g_free(expected);
		g_bytes_unref(in);
		g_bytes_unref(want);
	}
	g_rand_free(rand);
}

/* Field-level checks on the recorded Dovecot session. */
static void
test_dovecot_session_fields(void **state)
{
	GBytes *in = read_transcript("parser-dovecot-session", "imap");
	gsize len;
	const char *data = g_bytes_get_data(in, &len);
	const ImapValue *list, *body, *bin;
	ImapResponse *r;
	guint32 uid;
	Run run;

	parse_whole(&run, NULL, data, len);
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 41);

	r = resp_at(&run, 0);
	assert_int_equal(r->kind, IMAP_RESP_UNTAGGED);
	assert_int_equal(r->cond, IMAP_COND_PREAUTH);
	assert_string_equal(r->code, "CAPABILITY");
	assert_int_equal(r->code_id, IMAP_CODE_OTHER);
	assert_int_equal(r->code_args->len, 37);
	assert_true(imap_value_is_atom(item_at(r->code_args, 0), "imap4rev1"));
	assert_string_equal(r->text, "Logged in as nobody");

	r = resp_at(&run, 1);
	assert_int_equal(r->cond, IMAP_COND_NONE);
	assert_string_equal(r->name, "CAPABILITY");
	assert_int_equal(r->args->len, 37);
	assert_true(imap_value_is_atom(item_at(r->args, 36), "NOTIFY"));

	r = resp_at(&run, 2);
	assert_int_equal(r->kind, IMAP_RESP_TAGGED);
	assert_string_equal(r->tag, "a1");
	assert_int_equal(r->cond, IMAP_COND_OK);
	assert_string_equal(r->text,
	                    "Capability completed (0.001 + 0.000 secs).");

	r = resp_at(&run, 7);
	assert_true(r->has_number);
	assert_int_equal(r->number, 2);
	assert_string_equal(r->name, "EXISTS");
	assert_int_equal(r->args->len, 0);

	r = resp_at(&run, 14);
	assert_string_equal(r->name, "FETCH");
	assert_int_equal(r->number, 1);
	list = item_at(r->args, 0);
	assert_int_equal(list->type, IMAP_VALUE_LIST);
	assert_true(imap_value_u32(imap_fetch_item(list, "UID"), &uid));
	assert_int_equal(uid, 1);
	body = imap_fetch_item(list, "BODY[HEADER.FIELDS (FROM SUBJECT)]");
	assert_non_null(body);
	assert_int_equal(body->type, IMAP_VALUE_STRING);
	assert_true(body->literal);
	assert_int_equal(body->len, 51);
	assert_memory_equal(body->str, "From: Alice <alice@example.com>\r\n",
	                    33);

	/* BODY[]<0> and BODY[] in one response, split by a literal. */
	r = resp_at(&run, 16);
	list = item_at(r->args, 0);
	assert_int_equal(list->items->len, 6);
	body = imap_fetch_item(list, "BODY[]<0>");
	assert_non_null(body);
	assert_int_equal(body->len, 20);
	body = imap_fetch_item(list, "body[]");
	assert_non_null(body);
	assert_int_equal(body->len, 136);
	assert_memory_equal(body->str + 119, "this is a test.\r\n", 17);

	/* literal8 with NUL bytes. */
	r = resp_at(&run, 23);
	list = item_at(r->args, 0);
	bin = imap_fetch_item(list, "BINARY[2]");
	assert_non_null(bin);
	assert_int_equal(bin->len, 4);
	assert_memory_equal(bin->str, "\0\1\2\3", 4);
	assert_int_equal(bin->str[4], '\0');

	r = resp_at(&run, 33);
	assert_string_equal(r->code, "COPYUID");
	assert_int_equal(r->code_args->len, 3);

	r = resp_at(&run, 39);
	assert_int_equal(r->cond, IMAP_COND_BYE);
	assert_string_equal(r->text, "Logging out");
	run_clear(&run);
	g_bytes_unref(in);
}

static void
test_list_literal_mailbox(void **state)
{
	const ImapValue *name;
	Run run;

	parse_str(&run, "* LIST () \"/\" {5}\r\nabc d\r\n"
	                "* STATUS {7}\r\nfoo bar (MESSAGES 3)\r\n");
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 2);
	assert_string_equal(resp_at(&run, 0)->name, "LIST");
	assert_int_equal(resp_at(&run, 0)->args->len, 3);
	assert_int_equal(item_at(resp_at(&run, 0)->args, 0)->type,
	                 IMAP_VALUE_LIST);
	name = item_at(resp_at(&run, 0)->args, 2);
	assert_int_equal(name->type, IMAP_VALUE_STRING);
	assert_true(name->literal);
	assert_int_equal(name->len, 5);
	assert_string_equal(name->str, "abc d");
	name = item_at(resp_at(&run, 1)->args, 0);
	assert_string_equal(name->str, "foo bar");
	assert_int_equal(item_at(resp_at(&run, 1)->args, 1)->items->len, 2);
	run_clear(&run);
}

static void
test_fetch_items(void **state)
{
	const ImapValue *list, *v;
	Run run;

	parse_str(&run, "* 1 FETCH (UID 9 BODY[HEADER.FIELDS (A B)]<0> {4}\r\n"
	                "A: 1 BODY[] NIL BODY[1.2.MIME] \"\" BINARY[1] x "
	                "body[text]<10> y)\r\n");
	assert_int_equal(run.status, IMAP_OK);
	list = item_at(resp_at(&run, 0)->args, 0);
	assert_int_equal(list->items->len, 12);
	v = item_at(list->items, 2);
	assert_int_equal(v->type, IMAP_VALUE_ATOM);
	assert_string_equal(v->str, "BODY[HEADER.FIELDS (A B)]<0>");
	assert_int_equal(v->len, strlen("BODY[HEADER.FIELDS (A B)]<0>"));
	v = imap_fetch_item(list, "BODY[HEADER.FIELDS (A B)]");
	assert_non_null(v);
	assert_string_equal(v->str, "A: 1");
	/* BODY[] NIL: the NIL type, not the atom, not "". */
	v = imap_fetch_item(list, "BODY[]");
	assert_non_null(v);
	assert_int_equal(v->type, IMAP_VALUE_NIL);
	assert_null(v->str);
	assert_null(imap_value_nstring(v));
	v = imap_fetch_item(list, "BODY[1.2.MIME]");
	assert_int_equal(v->type, IMAP_VALUE_STRING);
	assert_int_equal(v->len, 0);
	assert_string_equal(imap_value_nstring(v), "");
	assert_string_equal(imap_fetch_item(list, "binary[1]")->str, "x");
	assert_string_equal(imap_fetch_item(list, "BODY[TEXT]")->str, "y");
	assert_null(imap_fetch_item(list, "BODY"));
	assert_null(imap_fetch_item(list, "BODY[TEXT]<1"));
	assert_null(imap_fetch_item(list, "RFC822.SIZE"));
	run_clear(&run);
}

static void
test_fetch_item_prefers_exact(void **state)
{
	Run run;
	const ImapValue *list;

	parse_str(&run, "* 1 FETCH (BODY[]<0> partial BODY[] whole)\r\n");
	list = item_at(resp_at(&run, 0)->args, 0);
	assert_string_equal(imap_fetch_item(list, "BODY[]")->str, "whole");
	assert_string_equal(imap_fetch_item(list, "BODY[]<0>")->str, "partial");
	run_clear(&run);
}

static void
test_expunge_between_fetches(void **state)
{
	Run run;

	parse_str(&run, "* 1 FETCH (FLAGS (\\Seen))\r\n* 3 EXPUNGE\r\n"
	                "* 2 FETCH (FLAGS ())\r\n");
	assert_int_equal(run.responses->len, 3);
	assert_string_equal(resp_at(&run, 0)->name, "FETCH");
	assert_string_equal(resp_at(&run, 1)->name, "EXPUNGE");
	assert_true(resp_at(&run, 1)->has_number);
	assert_int_equal(resp_at(&run, 1)->number, 3);
	assert_int_equal(resp_at(&run, 1)->args->len, 0);
	assert_int_equal(resp_at(&run, 2)->number, 2);
	assert_int_equal(
	    item_at(item_at(resp_at(&run, 2)->args, 0)->items, 1)->items->len,
	    0);
	run_clear(&run);
}

static void
test_status_codes(void **state)
{
	ImapResponse *r;
	Run run;

	parse_str(&run, "A1 OK [READ-WRITE]\r\n"
	                "A2 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
	                "* OK [PERMANENTFLAGS (\\Deleted \\*)] Limited\r\n"
	                "A3 NO [BADCHARSET (UTF-8)] bad\r\n"
	                "* NO [REFERRAL imap://x/] go\r\n"
	                "* OK [ALERT]\r\n"
	                "A4 no [overquota] full [really]\r\n"
	                "* OK [X-PRIVATE free (form text] ok\r\n"
	                "* OK [ALERT x\r\n"
	                "* OK no code ] [here]\r\n");
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 10);

	r = resp_at(&run, 0);
	assert_string_equal(r->tag, "A1");
	assert_int_equal(r->cond, IMAP_COND_OK);
	assert_string_equal(r->name, "OK");
	assert_string_equal(r->code, "READ-WRITE");
	assert_int_equal(r->code_id, IMAP_CODE_OTHER);
	assert_int_equal(r->code_args->len, 0);
	assert_string_equal(r->text, "");

	r = resp_at(&run, 1);
	assert_string_equal(r->code, "COPYUID");
	assert_int_equal(r->code_args->len, 3);
	assert_string_equal(item_at(r->code_args, 0)->str, "38505");
	assert_string_equal(item_at(r->code_args, 1)->str, "304,319:320");
	assert_string_equal(item_at(r->code_args, 2)->str, "3956:3958");
	assert_string_equal(r->text, "Done");

	r = resp_at(&run, 2);
	assert_int_equal(r->kind, IMAP_RESP_UNTAGGED);
	assert_string_equal(r->code, "PERMANENTFLAGS");
	assert_int_equal(item_at(r->code_args, 0)->type, IMAP_VALUE_LIST);
	assert_int_equal(item_at(r->code_args, 0)->items->len, 2);
	assert_string_equal(item_at(item_at(r->code_args, 0)->items, 1)->str,
	                    "\\*");

	r = resp_at(&run, 3);
	assert_int_equal(r->cond, IMAP_COND_NO);
	assert_string_equal(item_at(item_at(r->code_args, 0)->items, 0)->str,
	                    "UTF-8");

	r = resp_at(&run, 4);
	assert_string_equal(r->code, "REFERRAL");
	assert_string_equal(item_at(r->code_args, 0)->str, "imap://x/");
	assert_string_equal(r->text, "go");

	r = resp_at(&run, 5);
	assert_int_equal(r->code_id, IMAP_CODE_ALERT);
	assert_string_equal(r->text, "");

	r = resp_at(&run, 6);
	assert_string_equal(r->name, "NO");
	assert_string_equal(r->code, "OVERQUOTA");
	assert_int_equal(r->code_id, IMAP_CODE_OVERQUOTA);
	assert_string_equal(r->text, "full [really]");
	assert_int_equal(imap_code_from_name("TOOBIG"), IMAP_CODE_TOOBIG);

	/* Free-form code arguments are kept raw, up to the first ']'. */
	r = resp_at(&run, 7);
	assert_string_equal(r->code, "X-PRIVATE");
	assert_int_equal(r->code_args->len, 1);
	assert_string_equal(item_at(r->code_args, 0)->str, "free (form text");
	assert_string_equal(r->text, "ok");

	/* No closing ']': no code, it is all text. */
	r = resp_at(&run, 8);
	assert_null(r->code);
	assert_int_equal(r->code_id, IMAP_CODE_NONE);
	assert_string_equal(r->text, "[ALERT x");

	r = resp_at(&run, 9);
	assert_null(r->code);
	assert_string_equal(r->text, "no code ] [here]");
	run_clear(&run);
}

static void
test_quoted_strings(void **state)
{
	const ImapValue *v;
	Run run;

	parse_str(&run, "* X \"a\\\"b\\\\c\" \"caf\xc3\xa9 \xff\x80\" \"\" NIL "
	                "nil \"NIL\"\r\n");
	assert_int_equal(run.status, IMAP_OK);
	v = item_at(resp_at(&run, 0)->args, 0);
	assert_int_equal(v->type, IMAP_VALUE_STRING);
	assert_false(v->literal);
	assert_int_equal(v->len, 5);
	assert_string_equal(v->str, "a\"b\\c");
	v = item_at(resp_at(&run, 0)->args, 1);
	assert_int_equal(v->len, 8);
	assert_memory_equal(v->str, "caf\xc3\xa9 \xff\x80", 8);
	v = item_at(resp_at(&run, 0)->args, 2);
	assert_int_equal(v->type, IMAP_VALUE_STRING);
	assert_int_equal(v->len, 0);
	assert_int_equal(item_at(resp_at(&run, 0)->args, 3)->type,
	                 IMAP_VALUE_NIL);
	assert_int_equal(item_at(resp_at(&run, 0)->args, 4)->type,
	                 IMAP_VALUE_NIL);
	v = item_at(resp_at(&run, 0)->args, 5);
	assert_int_equal(v->type, IMAP_VALUE_STRING);
	assert_string_equal(imap_value_nstring(v), "NIL");
	assert_render(&run, "* X \"a\\\"b\\\\c\" \"caf\xc3\xa9 \xff\x80\" \"\" "
	                    "NIL NIL \"NIL\"\n");
	run_clear(&run);
}

static void
test_literals_and_literal8(void **state)
{
	const ImapValue *list, *v;
	static const char in[] =
	    "* 4 FETCH (BINARY[1] ~{5}\r\n\0\r\n\xff) "
	    "BODY[2] {0}\r\n RFC822.HEADER {3}\r\n(\"))\r\n";
	Run run;

	parse_whole(&run, NULL, in, sizeof(in) - 1);
	assert_int_equal(run.status, IMAP_OK);
	list = item_at(resp_at(&run, 0)->args, 0);
	v = imap_fetch_item(list, "BINARY[1]");
	assert_int_equal(v->type, IMAP_VALUE_STRING);
	assert_true(v->literal);
	assert_int_equal(v->len, 5);
	assert_memory_equal(v->str, "\0\r\n\xff)", 5);
	v = imap_fetch_item(list, "BODY[2]");
	assert_int_equal(v->len, 0);
	assert_true(v->literal);
	assert_string_equal(v->str, "");
	v = imap_fetch_item(list, "RFC822.HEADER");
	assert_string_equal(v->str, "(\")");
	assert_render(&run, "* 4 FETCH (BINARY[1] \"\\x00\\x0d\\x0a\xff)\" "
	                    "BODY[2] \"\" RFC822.HEADER \"(\\\")\")\n");
	run_clear(&run);
}

static void
test_continuations(void **state)
{
	Run run;

	parse_str(&run, "+ \r\n+\r\n+ Ready for literal\r\n+ dGVzdA==\r\n"
	                "+ [ALERT] x\r\n");
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 5);
	for (guint i = 0; i < 5; i++) {
		assert_int_equal(resp_at(&run, i)->kind,
		                 IMAP_RESP_CONTINUATION);
		assert_null(resp_at(&run, i)->tag);
		assert_string_equal(resp_at(&run, i)->name, "");
		assert_null(resp_at(&run, i)->code);
		assert_int_equal(resp_at(&run, i)->args->len, 0);
	}
	assert_string_equal(resp_at(&run, 0)->text, "");
	assert_string_equal(resp_at(&run, 1)->text, "");
	assert_string_equal(resp_at(&run, 2)->text, "Ready for literal");
	assert_string_equal(resp_at(&run, 3)->text, "dGVzdA==");
	assert_string_equal(resp_at(&run, 4)->text, "[ALERT] x");
	run_clear(&run);
}

static void
test_bye_and_preauth(void **state)
{
	Run run;

	parse_str(&run, "* BYE\r\n* BYE Server shutting down\r\n"
	                "* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n"
	                "* BAD [CLIENTBUG] huh\r\n");
	assert_int_equal(run.responses->len, 4);
	assert_int_equal(resp_at(&run, 0)->cond, IMAP_COND_BYE);
	assert_string_equal(resp_at(&run, 0)->text, "");
	assert_string_equal(resp_at(&run, 1)->text, "Server shutting down");
	assert_int_equal(resp_at(&run, 2)->cond, IMAP_COND_PREAUTH);
	assert_int_equal(resp_at(&run, 3)->cond, IMAP_COND_BAD);
	assert_int_equal(resp_at(&run, 3)->code_id, IMAP_CODE_CLIENTBUG);
	run_clear(&run);
}

static void
test_status_text_is_not_a_literal(void **state)
{
	Run run;

	parse_str(&run, "A1 NO bad {5}\r\n* 1 EXISTS\r\n");
	assert_int_equal(run.responses->len, 2);
	assert_string_equal(resp_at(&run, 0)->text, "bad {5}");
	assert_string_equal(resp_at(&run, 1)->name, "EXISTS");
	run_clear(&run);
}

static void
test_numbers(void **state)
{
	guint32 u32 = 7;
	guint64 u64 = 7;
	const ImapValue *list;
	Run run;

	assert_true(imap_parse_u32("4294967295", &u32));
	assert_int_equal(u32, 4294967295u);
	assert_true(imap_parse_u32("2147483648", &u32));
	assert_int_equal(u32, 2147483648u);
	assert_true(imap_parse_u32("0", &u32));
	assert_int_equal(u32, 0);
	assert_true(imap_parse_u32("007", &u32));
	assert_int_equal(u32, 7);
	u32 = 99;
	assert_false(imap_parse_u32("4294967296", &u32));
	assert_false(imap_parse_u32("42949672950", &u32));
	assert_false(imap_parse_u32("", &u32));
	assert_false(imap_parse_u32("+1", &u32));
	assert_false(imap_parse_u32("-1", &u32));
	assert_false(imap_parse_u32(" 1", &u32));
	assert_false(imap_parse_u32("1 ", &u32));
	assert_false(imap_parse_u32("1a", &u32));
	assert_false(imap_parse_u32(NULL, &u32));
	assert_int_equal(u32, 99);
	assert_true(imap_parse_u64("18446744073709551615", &u64));
	assert_true(u64 == G_MAXUINT64);
	assert_true(imap_parse_u64("4294967296", &u64));
	assert_true(u64 == 4294967296u);
	assert_false(imap_parse_u64("18446744073709551616", &u64));
	assert_false(imap_parse_u64("99999999999999999999", &u64));
	assert_false(imap_parse_u64("", &u64));
	assert_false(imap_parse_u64("-0", &u64));

	parse_str(&run, "* 4294967295 FETCH (UID 4294967295 MODSEQ "
	                "(18446744073709551615) X 4294967296 S \"5\")\r\n");
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(resp_at(&run, 0)->number, 4294967295u);
	list = item_at(resp_at(&run, 0)->args, 0);
	assert_true(imap_value_u32(imap_fetch_item(list, "UID"), &u32));
	assert_int_equal(u32, 4294967295u);
	assert_false(imap_value_u32(imap_fetch_item(list, "X"), &u32));
	assert_true(imap_value_u64(imap_fetch_item(list, "X"), &u64));
	assert_true(u64 == 4294967296u);
	assert_true(imap_value_u64(
	    item_at(imap_fetch_item(list, "MODSEQ")->items, 0), &u64));
	assert_true(u64 == G_MAXUINT64);
	/* Numbers are atoms; a quoted "5" or a list is not one. */
	assert_false(imap_value_u32(imap_fetch_item(list, "S"), &u32));
	assert_false(imap_value_u64(imap_fetch_item(list, "MODSEQ"), &u64));
	assert_false(imap_value_u32(NULL, &u32));
	run_clear(&run);

	parse_str(&run, "* 4294967296 EXISTS\r\n");
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_int_equal(run.responses->len, 0);
	run_clear(&run);
}

static void
test_helpers_tolerate_wrong_types(void **state)
{
	Run run;
	const ImapValue *list, *atom;

	assert_false(imap_value_is_atom(NULL, "X"));
	assert_null(imap_value_nstring(NULL));
	assert_null(imap_fetch_item(NULL, "UID"));
	parse_str(&run, "* X (UID 1) uid \"UID\" (a)\r\n");
	list = item_at(resp_at(&run, 0)->args, 0);
	atom = item_at(resp_at(&run, 0)->args, 1);
	assert_true(imap_value_is_atom(atom, "UID"));
	assert_false(imap_value_is_atom(atom, NULL));
	assert_false(
	    imap_value_is_atom(item_at(resp_at(&run, 0)->args, 2), "UID"));
	assert_false(imap_value_is_atom(list, "UID"));
	assert_null(imap_value_nstring(list));
	assert_string_equal(imap_value_nstring(atom), "uid");
	assert_null(imap_fetch_item(atom, "UID"));
	assert_null(imap_fetch_item(list, NULL));
	/* An odd-length list: the last name has no value. */
	assert_null(imap_fetch_item(item_at(resp_at(&run, 0)->args, 3), "A"));
	run_clear(&run);
}

static void
test_oversized_literal(void **state)
{
	ImapParserLimits limits = {.max_literal = 10};
	ImapError *err = NULL;
	ImapParser *p;
	Run run;

	parse_str(&run, "* 1 FETCH (BODY[] {99999999999}\r\n");
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_int_equal(run.err->status, IMAP_EPROTO);
	assert_string_equal(run.err->text, "literal of 99999999999 bytes "
	                                   "exceeds limit 67108864");
	assert_int_equal(run.responses->len, 0);
	run_clear(&run);

	parse_str(&run, "* 1 FETCH (BODY[] {18446744073709551616}\r\n");
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_string_equal(run.err->text,
	                    "invalid literal size {18446744073709551616}");
	run_clear(&run);

	parse_whole(&run, &limits, "* X {10}\r\n0123456789\r\n", 22);
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 1);
	run_clear(&run);

	/* The failure comes with the announcement, before any content, and
	 * the parser refuses everything after. */
	p = collecting_parser(&run, &limits);
	feed_str(p, &run, "* X {11}\r\n");
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_string_equal(run.err->text,
	                    "literal of 11 bytes exceeds limit 10");
	assert_int_equal(imap_parser_feed(p, "* OK\r\n", 6, &err), IMAP_EPROTO);
	assert_non_null(err);
	assert_int_equal(err->status, IMAP_EPROTO);
	imap_error_free(err);
	err = NULL;
	assert_int_equal(imap_parser_feed(p, "", 0, &err), IMAP_EPROTO);
	imap_error_free(err);
	assert_false(imap_parser_idle(p));
	assert_int_equal(run.responses->len, 0);
	imap_parser_free(p);
	run_clear(&run);
}

static size_t
heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* A server announcing 60 MB and sending 4 bytes must not cost 60 MB. */
static void
test_announced_size_not_preallocated(void **state)
{
	ImapParser *p;
	size_t before;
	Run run;

	p = collecting_parser(&run, NULL);
	before = heap_in_use();
	feed_str(p, &run, "* 1 FETCH (BODY[] {60000000}\r\nabcd");
	assert_int_equal(run.status, IMAP_OK);
	assert_true(heap_in_use() < before + 1024 * 1024);
	assert_false(imap_parser_idle(p));
	imap_parser_free(p);
	run_clear(&run);
}

static void
test_endless_line(void **state)
{
	ImapParserLimits limits = {.max_line = 64};
	char line[80];
	ImapParser *p;
	gsize fed = 0;
	Run run;

	/* Exactly 64 bytes with the CRLF pass. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "* X ", 4);
	memcpy(line + 62, "\r\n", 2);
	parse_whole(&run, &limits, line, 64);
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 1);
	run_clear(&run);

	/* Without a line end, the 65th byte fails. */
	p = collecting_parser(&run, &limits);
	while (run.status == IMAP_OK && fed < 10000) {
		feed_str(p, &run, "y");
		fed++;
	}
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_int_equal(fed, 65);
	assert_string_equal(run.err->text,
	                    "response exceeds the line limit of 64 bytes");
	imap_parser_free(p);
	run_clear(&run);
}

/* Lines of one response add up; literal bytes do not count. */
static void
test_line_limit_spans_literals(void **state)
{
	ImapParserLimits limits = {.max_line = 64};
	GString *big = g_string_new("* 1 FETCH (A {200}\r\n");
	Run run;

	for (int i = 0; i < 200; i++)
		g_string_append_c(big, 'L');
	g_string_append(big, " B {1}\r\nx)\r\n");
	parse_whole(&run, &limits, big->str, big->len);
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 1);
	run_clear(&run);

	g_string_truncate(big, big->len - 3);
	g_string_append(big, " C 0123456789012345678901234567890)\r\n");
	parse_whole(&run, &limits, big->str, big->len);
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_int_equal(run.responses->len, 0);
	run_clear(&run);
	g_string_free(big, TRUE);
}

static void
test_nesting_depth(void **state)
{
	ImapParserLimits limits = {.max_depth = 3};
	Run run;

	parse_whole(&run, &limits, "* X (((a)))\r\n", 13);
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 1);
	run_clear(&run);
	parse_whole(&run, &limits, "* X ((((a))))\r\n", 15);
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_string_equal(run.err->text, "lists nested deeper than 3");
	assert_int_equal(run.responses->len, 0);
	run_clear(&run);
}

static void
test_malformed(void **state)
{
#define BAD(s)                                                                 \
	{                                                                      \
		s, sizeof(s) - 1                                               \
	}
	static const struct {
		const char *s;
		gsize len;
	} bad[] = {
	    BAD("\r\n"),
	    BAD("*\r\n"),
	    BAD("* \r\n"),
	    BAD("A1\r\n"),
	    BAD(" A1 OK\r\n"),
	    BAD("* 12\r\n"),
	    BAD("* 12 \r\n"),
	    BAD("* 1x FETCH ()\r\n"),
	    BAD("A1 FETCH (x)\r\n"),
	    BAD("* LIST ())\r\n"),
	    BAD("* LIST (\r\n"),
	    BAD("* LIST (a {3}\r\nabc\r\n"),
	    BAD("* X \"open\r\n"),
	    BAD("* X \"esc\\\"\r\n"),
	    BAD("* X {3} y\r\nabc\r\n"),
	    BAD("* X {3a}\r\n"),
	    BAD("* X {}\r\n"),
	    BAD("* {3}\r\n"),
	    BAD("* (a)\r\n"),
	    BAD("* X {12\r\n"),
	    BAD("* X ~{-1}\r\n"),
	    BAD("* X BODY[HEADER\r\n"),
	    BAD("* OK a\rb\r\n"),
	    BAD("* X a\rb\r\n"),
	    BAD("* X \"a\rb\"\r\n"),
	    BAD("* X a\0b\r\n"),
	    BAD("A1 OK \0\r\n"),
	};

	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		Run run;

		parse_whole(&run, NULL, bad[i].s, bad[i].len);
		if (run.status != IMAP_EPROTO)
			fail_msg("accepted: %s", bad[i].s);
		assert_non_null(run.err);
		assert_int_equal(run.err->status, IMAP_EPROTO);
		assert_true(strlen(run.err->text) > 0);
		assert_int_equal(run.responses->len, 0);
		run_clear(&run);
	}
#undef BAD
}

/* A CR that is not part of the line end is a protocol error (outside
 * literals, where any byte goes); so is a NUL. */
static void
test_stray_cr(void **state)
{
	Run run;

	parse_str(&run, "* OK fine\r\n* OK half\rline\r\n");
	assert_int_equal(run.status, IMAP_EPROTO);
	assert_string_equal(run.err->text,
	                    "CR without LF inside a response line");
	assert_int_equal(run.responses->len, 1);
	run_clear(&run);

	parse_str(&run, "* X {3}\r\na\rb\r\n");
	assert_int_equal(run.status, IMAP_OK);
	assert_string_equal(item_at(resp_at(&run, 0)->args, 0)->str, "a\rb");
	run_clear(&run);
}

static void
test_bare_lf(void **state)
{
	Run run;

	parse_str(&run, "* OK hi\n* 1 FETCH (BODY[] {2}\n\r\n)\nA1 OK x\r\n");
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 3);
	assert_string_equal(resp_at(&run, 0)->text, "hi");
	assert_memory_equal(
	    imap_fetch_item(item_at(resp_at(&run, 1)->args, 0), "BODY[]")->str,
	    "\r\n", 3);
	assert_string_equal(resp_at(&run, 2)->text, "x");
	run_clear(&run);
}

static void
test_idle(void **state)
{
	ImapParser *p;
	Run run;

	p = collecting_parser(&run, NULL);
	assert_true(imap_parser_idle(p));
	feed_str(p, &run, "A1 OK Begin TLS\r\n");
	assert_true(imap_parser_idle(p));
	feed_str(p, &run, "*");
	assert_false(imap_parser_idle(p));
	feed_str(p, &run, " 1 FETCH (BODY[] {3}\r\n");
	assert_false(imap_parser_idle(p));
	feed_str(p, &run, "abc");
	assert_false(imap_parser_idle(p));
	feed_str(p, &run, ")\r");
	assert_false(imap_parser_idle(p));
	feed_str(p, &run, "\n");
	assert_true(imap_parser_idle(p));
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 2);
	imap_parser_free(p);
	run_clear(&run);
}

/* Streaming: a sink that records what it gets. */
typedef struct {
	GString *bytes;
	guint writes;
	guint ends_ok;
	guint ends_failed;
	gboolean refuse;
	gboolean accept;
	gboolean active; /* between an accepted offer and end() */
	ImapLiteralInfo info;
	char *item;
	char *name;
	guint offers;
} Sink;

static gboolean
sink_write(void *ctx, const char *data, gsize len)
{
	Sink *s = ctx;

	assert_true(s->active);
	if (s->refuse)
		return FALSE;
	g_string_append_len(s->bytes, data, (gssize)len);
	s->writes++;
	return TRUE;
}

static void
sink_end(void *ctx, gboolean ok)
{
	Sink *s = ctx;

	assert_true(s->active);
	s->active = FALSE;
	if (ok)
		s->ends_ok++;
	else
		s->ends_failed++;
}

typedef struct {
	Run run;
	Sink sink;
} StreamRun;

static gboolean
stream_literal_start(void *user, const ImapLiteralInfo *info,
                     ImapLiteralSink *out)
{
	StreamRun *sr = user;
	Sink *s = &sr->sink;

	s->offers++;
	s->info = *info;
	g_free(s->item);
	g_free(s->name);
	s->item = g_strdup(info->item);
	s->name = g_strdup(info->name);
	assert_false(s->active);
	if (!s->accept)
		return FALSE;
	s->active = TRUE;
	out->write = sink_write;
	out->end = sink_end;
	out->ctx = s;
	return TRUE;
}

static void
stream_response(void *user, ImapResponse *resp)
{
	StreamRun *sr = user;

	g_ptr_array_add(sr->run.responses, resp);
}

static ImapParser *
streaming_parser(StreamRun *sr, const ImapParserLimits *limits, gboolean accept)
{
	ImapParserCallbacks cb = {
	    .response = stream_response,
	    .literal_start = stream_literal_start,
	    .user = sr,
	};

	memset(sr, 0, sizeof(*sr));
	run_init(&sr->run);
	sr->sink.bytes = g_string_new(NULL);
	sr->sink.accept = accept;
	return imap_parser_new(limits, &cb);
}

static void
stream_clear(StreamRun *sr)
{
	run_clear(&sr->run);
	g_string_free(sr->sink.bytes, TRUE);
	g_free(sr->sink.item);
	g_free(sr->sink.name);
}

static void
test_stream_one_byte_at_a_time(void **state)
{
	static const char in[] = "* 7 FETCH (UID 4294967295 FLAGS (\\Seen) "
	                         "BODY[]<0> {12}\r\nHello\r\nWorld RFC822.SIZE "
	                         "12)\r\nA1 OK done\r\n";
	ImapParserLimits limits = {.max_literal = 4};
	const ImapValue *v;
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, &limits, TRUE);

	for (gsize i = 0; i < sizeof(in) - 1; i++)
		feed(p, &sr.run, in + i, 1);
	assert_int_equal(sr.run.status, IMAP_OK);
	assert_int_equal(sr.sink.offers, 1);
	assert_string_equal(sr.sink.name, "FETCH");
	assert_true(sr.sink.info.has_number);
	assert_int_equal(sr.sink.info.number, 7);
	assert_int_equal(sr.sink.info.depth, 1);
	assert_string_equal(sr.sink.item, "BODY[]<0>");
	assert_int_equal(sr.sink.info.uid, 4294967295u);
	assert_true(sr.sink.info.size == 12);
	/* Every byte went straight through: nothing was held back. */
	assert_int_equal(sr.sink.writes, 12);
	assert_int_equal(sr.sink.bytes->len, 12);
	assert_memory_equal(sr.sink.bytes->str, "Hello\r\nWorld", 12);
	assert_int_equal(sr.sink.ends_ok, 1);
	assert_int_equal(sr.sink.ends_failed, 0);
	assert_int_equal(sr.run.responses->len, 2);
	v = imap_fetch_item(item_at(resp_at(&sr.run, 0)->args, 0), "BODY[]");
	assert_non_null(v);
	assert_int_equal(v->type, IMAP_VALUE_STREAMED);
	assert_int_equal(v->len, 12);
	assert_true(v->literal);
	assert_null(v->str);
	assert_true(imap_value_is_atom(
	    imap_fetch_item(item_at(resp_at(&sr.run, 0)->args, 0),
	                    "RFC822.SIZE"),
	    "12"));
	assert_render(&sr.run, "* 7 FETCH (UID 4294967295 FLAGS (\\Seen) "
	                       "BODY[]<0> {12} RFC822.SIZE 12)\nA1 OK done\n");
	imap_parser_free(p);
	assert_int_equal(sr.sink.ends_ok, 1);
	assert_int_equal(sr.sink.ends_failed, 0);
	stream_clear(&sr);
}

static void
test_stream_whole_chunk(void **state)
{
	static const char in[] = "* 3 FETCH (BODY[1] {5}\r\nab\0cd UID 9)\r\n";
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, NULL, TRUE);

	feed(p, &sr.run, in, sizeof(in) - 1);
	assert_int_equal(sr.run.status, IMAP_OK);
	assert_int_equal(sr.sink.writes, 1);
	assert_memory_equal(sr.sink.bytes->str, "ab\0cd", 5);
	/* The UID came after the literal. */
	assert_int_equal(sr.sink.info.uid, 0);
	assert_int_equal(sr.sink.ends_ok, 1);
	imap_parser_free(p);
	stream_clear(&sr);
}

static void
test_stream_declined_and_list(void **state)
{
	ImapParserLimits limits = {.max_literal = 4};
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, &limits, FALSE);

	feed_str(p, &sr.run, "* LIST () \"/\" {3}\r\nabc\r\n");
	assert_int_equal(sr.run.status, IMAP_OK);
	assert_int_equal(sr.sink.offers, 1);
	assert_string_equal(sr.sink.name, "LIST");
	assert_false(sr.sink.info.has_number);
	assert_int_equal(sr.sink.info.depth, 0);
	assert_null(sr.sink.item);
	assert_string_equal(item_at(resp_at(&sr.run, 0)->args, 2)->str, "abc");
	/* Declined literals stay under max_literal. */
	feed_str(p, &sr.run, "* 1 FETCH (BODY[] {5}\r\n");
	assert_int_equal(sr.run.status, IMAP_EPROTO);
	assert_int_equal(sr.sink.offers, 2);
	assert_int_equal(sr.sink.info.depth, 1);
	assert_int_equal(sr.sink.ends_ok + sr.sink.ends_failed, 0);
	imap_parser_free(p);
	stream_clear(&sr);
}

static void
test_stream_not_limited_and_empty(void **state)
{
	ImapParserLimits limits = {.max_literal = 2};
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, &limits, TRUE);

	feed_str(p, &sr.run, "* 1 FETCH (BODY[] {0}\r\n BODY[1] {6}\r\n");
	assert_int_equal(sr.sink.ends_ok, 1);
	assert_int_equal(sr.sink.writes, 0);
	feed_str(p, &sr.run, "abcdef)\r\n");
	assert_int_equal(sr.run.status, IMAP_OK);
	assert_int_equal(sr.sink.offers, 2);
	assert_int_equal(sr.sink.ends_ok, 2);
	assert_memory_equal(sr.sink.bytes->str, "abcdef", 6);
	assert_render(&sr.run, "* 1 FETCH (BODY[] {0} BODY[1] {6})\n");
	imap_parser_free(p);
	stream_clear(&sr);
}

static void
test_stream_sink_refuses(void **state)
{
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, NULL, TRUE);

	feed_str(p, &sr.run, "* 1 FETCH (BODY[] {4}\r\nab");
	assert_int_equal(sr.run.status, IMAP_OK);
	sr.sink.refuse = TRUE;
	feed_str(p, &sr.run, "cd)\r\n");
	assert_int_equal(sr.run.status, IMAP_EPROTO);
	assert_int_equal(sr.run.err->status, IMAP_EPROTO);
	assert_int_equal(sr.sink.ends_ok, 0);
	assert_int_equal(sr.sink.ends_failed, 1);
	assert_int_equal(sr.run.responses->len, 0);
	imap_parser_free(p);
	assert_int_equal(sr.sink.ends_failed, 1);
	stream_clear(&sr);
}

static void
test_stream_freed_midway(void **state)
{
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, NULL, TRUE);

	feed_str(p, &sr.run, "* 1 FETCH (BODY[] {400}\r\nabc");
	assert_int_equal(sr.sink.ends_ok + sr.sink.ends_failed, 0);
	assert_memory_equal(sr.sink.bytes->str, "abc", 3);
	imap_parser_free(p);
	assert_int_equal(sr.sink.ends_ok, 0);
	assert_int_equal(sr.sink.ends_failed, 1);
	stream_clear(&sr);
}

static void
test_tagged_and_status_not_offered(void **state)
{
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, NULL, TRUE);

	feed_str(p, &sr.run, "* OK [ALERT] {3}\r\nA1 OK {2}\r\n");
	assert_int_equal(sr.run.status, IMAP_OK);
	assert_int_equal(sr.sink.offers, 0);
	assert_int_equal(sr.run.responses->len, 2);
	imap_parser_free(p);
	stream_clear(&sr);
}

static void
test_to_string(void **state)
{
	char *line;
	Run run;

	parse_str(&run, "a1 ok [uidnext 5] Fine\r\n"
	                "* 2 fetch (BODY[] {3}\r\n\x01\x7f\")\r\n"
	                "* SEARCH\r\n+ go\r\n");
	assert_render(&run, "a1 OK [UIDNEXT 5] Fine\n"
	                    "* 2 FETCH (BODY[] \"\\x01\\x7f\\\"\")\n"
	                    "* SEARCH\n+ go\n");
	run_clear(&run);
	line = imap_response_to_string(NULL);
	assert_string_equal(line, "");
	g_free(line);
}

/* 100k FETCH responses in 4 KiB reads, then one 600 KB response one byte at
 * a time: both must finish quickly (no rescanning of buffered data). */
static void
test_large_listing(void **state)
{
	GString *in = g_string_new(NULL);
	gint64 start = g_get_monotonic_time();
	ImapParser *p;
	Run run;

	for (guint i = 1; i <= 100000; i++)
		g_string_append_printf(in,
		                       "* %u FETCH (UID %u FLAGS (\\Seen) "
		                       "RFC822.SIZE %u)\r\n",
		                       i, i + 4000000000u, i * 7);
	p = collecting_parser(&run, NULL);
	for (gsize off = 0; off < in->len; off += 4096)
		feed(p, &run, in->str + off, MIN(4096, in->len - off));
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 100000);
	assert_int_equal(resp_at(&run, 99999)->number, 100000);
	imap_parser_free(p);
	run_clear(&run);

	g_string_assign(in, "* 1 FETCH (X (");
	for (guint i = 0; i < 100000; i++)
		g_string_append(in, "atom1 ");
	g_string_append(in, "))\r\n");
	p = collecting_parser(&run, NULL);
	for (gsize off = 0; off < in->len; off++)
		feed(p, &run, in->str + off, 1);
	assert_int_equal(run.status, IMAP_OK);
	assert_int_equal(run.responses->len, 1);
	assert_int_equal(
	    item_at(item_at(resp_at(&run, 0)->args, 0)->items, 1)->items->len,
	    100000);
	imap_parser_free(p);
	run_clear(&run);
	g_string_free(in, TRUE);
	/* Generous even under valgrind; quadratic behaviour takes hours. */
	assert_true(g_get_monotonic_time() - start < 120 * G_USEC_PER_SEC);
}

/* One FETCH with 100k literals offered to literal_start: the UID lookup for
 * each offer must not rescan the list. */
static void
test_many_literals_in_one_fetch(void **state)
{
	GString *in = g_string_new("* 1 FETCH (UID 77");
	gint64 start = g_get_monotonic_time();
	StreamRun sr;
	ImapParser *p = streaming_parser(&sr, NULL, FALSE);

	for (guint i = 0; i < 100000; i++)
		g_string_append(in, " B {1}\r\nx");
	g_string_append(in, ")\r\n");
	feed(p, &sr.run, in->str, in->len);
	assert_int_equal(sr.run.status, IMAP_OK);
	assert_int_equal(sr.sink.offers, 100000);
	assert_int_equal(sr.sink.info.uid, 77);
	assert_int_equal(item_at(resp_at(&sr.run, 0)->args, 0)->items->len,
	                 200002);
	imap_parser_free(p);
	stream_clear(&sr);
	g_string_free(in, TRUE);
	assert_true(g_get_monotonic_time() - start < 60 * G_USEC_PER_SEC);
}

static void
test_no_callbacks(void **state)
{
	ImapParser *p = imap_parser_new(NULL, NULL);
	ImapError *err = NULL;

	assert_int_equal(imap_parser_feed(p, "* 1 EXISTS\r\n", 12, &err),
	                 IMAP_OK);
	assert_null(err);
	assert_true(imap_parser_idle(p));
	assert_int_equal(imap_parser_feed(p, "bogus\r\n", 7, NULL),
	                 IMAP_EPROTO);
	imap_parser_free(p);
	imap_parser_free(NULL);
	imap_response_free(NULL);
	imap_value_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_transcripts_any_split),
	    cmocka_unit_test(test_dovecot_session_fields),
	    cmocka_unit_test(test_list_literal_mailbox),
	    cmocka_unit_test(test_fetch_items),
	    cmocka_unit_test(test_fetch_item_prefers_exact),
	    cmocka_unit_test(test_expunge_between_fetches),
	    cmocka_unit_test(test_status_codes),
	    cmocka_unit_test(test_quoted_strings),
	    cmocka_unit_test(test_literals_and_literal8),
	    cmocka_unit_test(test_continuations),
	    cmocka_unit_test(test_bye_and_preauth),
	    cmocka_unit_test(test_status_text_is_not_a_literal),
	    cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_helpers_tolerate_wrong_types),
	    cmocka_unit_test(test_oversized_literal),
	    cmocka_unit_test(test_announced_size_not_preallocated),
	    cmocka_unit_test(test_endless_line),
	    cmocka_unit_test(test_line_limit_spans_literals),
	    cmocka_unit_test(test_nesting_depth),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_stray_cr),
	    cmocka_unit_test(test_bare_lf),
	    cmocka_unit_test(test_idle),
	    cmocka_unit_test(test_stream_one_byte_at_a_time),
	    cmocka_unit_test(test_stream_whole_chunk),
	    cmocka_unit_test(test_stream_declined_and_list),
	    cmocka_unit_test(test_stream_not_limited_and_empty),
	    cmocka_unit_test(test_stream_sink_refuses),
	    cmocka_unit_test(test_stream_freed_midway),
	    cmocka_unit_test(test_tagged_and_status_not_offered),
	    cmocka_unit_test(test_to_string),
	    cmocka_unit_test(test_large_listing),
	    cmocka_unit_test(test_many_literals_in_one_fetch),
	    cmocka_unit_test(test_no_callbacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
