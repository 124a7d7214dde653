/* test_compress.c - COMPRESS=DEFLATE: the deflate/inflate halves (round
 * trips in odd-sized pieces, interoperation with plain zlib, corrupt input,
 * a decompression bomb meeting the parser's limits) and the transport's
 * switch-over at the byte after the COMPRESS reply, against a loopback
 * peer that speaks raw deflate through zlib directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "imap/compress.h"
#include "imap/parser.h"
#include "imap/transport.h"

/* Piece sizes that land on no natural boundary. */
static const gsize odd_sizes[] = {1, 7, 4093, 65537, 13, 2, 999, 16385, 3};

static ImapStatus
collect(void *user, const void *data, gsize len, ImapError **err)
{
	g_byte_array_append(user, data, (guint)len);
	return IMAP_OK;
}

static GByteArray *
deflate_in_pieces(const guint8 *data, gsize len)
{
	GByteArray *out = g_byte_array_new();
	ImapDeflater *d = imap_deflater_new();
	gsize off = 0;

	for (guint i = 0; off < len; i++) {
		gsize n =
		    MIN(odd_sizes[i % G_N_ELEMENTS(odd_sizes)], len - off);
		assert_int_equal(
		    imap_deflater_write(d, data + off, n, collect, out, NULL),
		    IMAP_OK);
		off += n;
	}
	imap_deflater_free(d);
	return out;
}

/* Feeds comp in odd pieces and reads with odd buffer sizes. */
static GByteArray *
inflate_in_pieces(const GByteArray *comp)
{
	GByteArray *out = g_byte_array_new();
	ImapInflater *z = imap_inflater_new();
	char buf[70000];
	gsize off = 0;
	guint k = 0;
	gssize n;

	for (guint i = 0; off < comp->len; i++) {
		gsize step = MIN(odd_sizes[(i + 4) % G_N_ELEMENTS(odd_sizes)],
		                 comp->len - off);
		imap_inflater_feed(z, comp->data + off, step);
		off += step;
		do {
			gsize want = odd_sizes[k++ % G_N_ELEMENTS(odd_sizes)];
			n = imap_inflater_read(z, buf, want, NULL);
			assert_true(n >= 0 && (gsize)n <= want);
			g_byte_array_append(out, (guint8 *)buf, (guint)n);
		} while (n > 0);
		assert_int_equal(imap_inflater_pending(z), 0);
	}
	imap_inflater_free(z);
	return out;
}

static void
assert_same(const GByteArray *a, const guint8 *b, gsize len)
{
	assert_int_equal(a->len, len);
	assert_memory_equal(a->data, b, len);
}

static void
test_round_trip_random(void **state)
{
	gsize len = 1 << 20;
	guint8 *data = g_malloc(len);
	GRand *r = g_rand_new_with_seed(4978);
	GByteArray *comp, *back;

	for (gsize i = 0; i < len; i++)
		data[i] = (guint8)g_rand_int(r);
	comp = deflate_in_pieces(data, len);
	/* Random data does not shrink; deflate adds little around it. */
	assert_true(comp->len > len && comp->len < len + len / 50);
	back = inflate_in_pieces(comp);
	assert_same(back, data, len);
	g_byte_array_free(comp, TRUE);
	g_byte_array_free(back, TRUE);
	g_rand_free(r);
	g_free(data);
}

static void
test_round_trip_compressible(void **state)
{
	GString *text = g_string_new(NULL);
	GByteArray *comp, *back;

	for (guint i = 0; text->len < 8u << 20; i++)
		g_string_append_printf(text,
		                       "* %u FETCH (UID %u FLAGS (\\Seen) "
		                       "RFC822.SIZE %u)\r\n",
		                       i + 1, i * 3 + 1, 1000 + i % 977);
	comp = deflate_in_pieces((guint8 *)text->str, text->len);
	assert_true(comp->len < text->len / 5);
	back = inflate_in_pieces(comp);
	assert_same(back, (guint8 *)text->str, text->len);
	g_byte_array_free(comp, TRUE);
	g_byte_array_free(back, TRUE);
	g_string_free(text, TRUE);
}

/* Every write is flushed: what was sent so far inflates to exactly what
 * was written so far, so a pipelined command never waits for the next. */
static void
test_each_write_flushed(void **state)
{
	static const char *const cmds[] = {"A1 NOOP\r\n", "A2 SELECT INBOX\r\n",
	                                   "A3 UID FETCH 1:* (FLAGS)\r\n", "x",
	                                   "A4 LOGOUT\r\n"};
	GByteArray *comp = g_byte_array_new();
	ImapDeflater *d = imap_deflater_new();
	ImapInflater *z = imap_inflater_new();
	char buf[256];

	for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++) {
		gsize len = strlen(cmds[i]);
		gssize n;

		g_byte_array_set_size(comp, 0);
		assert_int_equal(
		    imap_deflater_write(d, cmds[i], len, collect, comp, NULL),
		    IMAP_OK);
		imap_inflater_feed(z, comp->data, comp->len);
		n = imap_inflater_read(z, buf, sizeof(buf), NULL);
		assert_int_equal(n, len);
		assert_memory_equal(buf, cmds[i], len);
		assert_int_equal(imap_inflater_read(z, buf, sizeof(buf), NULL),
		                 0);
	}
	imap_deflater_free(d);
	imap_inflater_free(z);
	g_byte_array_free(comp, TRUE);
}

/* Raw deflate as another implementation makes it (zlib with window bits
 * -15, as Dovecot does) and as it reads ours. */
static void
test_interop_with_zlib(void **state)
{
	static const char text[] = "* OK [CAPABILITY IMAP4rev1] ready\r\n"
	                           "* OK [CAPABILITY IMAP4rev1] ready\r\n";
	unsigned char comp[512], plain[512];
	z_stream s = {0};
	GByteArray *ours, *back;

	assert_int_equal(
	    deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
	s.next_in = (Bytef *)text;
	s.avail_in = sizeof(text) - 1;
	s.next_out = comp;
	s.avail_out = sizeof(comp);
	assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
	back = g_byte_array_new();
	g_byte_array_append(back, comp, sizeof(comp) - s.avail_out);
	deflateEnd(&s);
	ours = inflate_in_pieces(back);
	assert_same(ours, (const guint8 *)text, sizeof(text) - 1);
	g_byte_array_free(ours, TRUE);
	g_byte_array_free(back, TRUE);

	ours = deflate_in_pieces((const guint8 *)text, sizeof(text) - 1);
	memset(&s, 0, sizeof(s));
	assert_int_equal(inflateInit2(&s, -15), Z_OK);
	s.next_in = ours->data;
	s.avail_in = ours->len;
	s.next_out = plain;
	s.avail_out = sizeof(plain);
	assert_int_equal(inflate(&s, Z_SYNC_FLUSH), Z_OK);
	assert_int_equal(sizeof(plain) - s.avail_out, sizeof(text) - 1);
	assert_memory_equal(plain, text, sizeof(text) - 1);
	inflateEnd(&s);
	g_byte_array_free(ours, TRUE);
}

static void
assert_corrupt(const guint8 *bytes, gsize len)
{
	ImapInflater *z = imap_inflater_new();
	ImapError *err = NULL;
	char buf[64];

	imap_inflater_feed(z, bytes, len);
	assert_int_equal(imap_inflater_read(z, buf, sizeof(buf), &err), -1);
	assert_non_null(err);
	assert_int_equal(err->status, IMAP_ENET);
	assert_non_null(strstr(err->text, "corrupt"));
	imap_error_clear(&err);
	/* Stays failed. */
	assert_int_equal(imap_inflater_read(z, buf, sizeof(buf), &err), -1);
	assert_int_equal(err->status, IMAP_ENET);
	imap_error_free(err);
	imap_inflater_free(z);
}

static void
test_corrupt_input(void **state)
{
	/* Block type 3 is reserved. */
	assert_corrupt((const guint8[]){0x07, 0x00, 0x00}, 3);
	/* A stored block whose length and its complement disagree. */
	assert_corrupt((const guint8[]){0x00, 0x05, 0x00, 0x00, 0x00, 'x'}, 6);
	/* Plain text where deflate was expected (a server that did not
	 * switch). */
	assert_corrupt((const guint8 *)"* OK still plain text\r\n", 23);
}

static GByteArray *
compress_once(const char *head, gsize fill, char fill_byte)
{
	ImapDeflater *d = imap_deflater_new();
	GByteArray *out = g_byte_array_new();
	char *block = g_malloc(1 << 20);

	memset(block, fill_byte, 1 << 20);
	imap_deflater_write(d, head, strlen(head), collect, out, NULL);
	for (gsize done = 0; done < fill; done += 1 << 20)
		imap_deflater_write(d, block, MIN(fill - done, 1u << 20),
		                    collect, out, NULL);
	g_free(block);
	imap_deflater_free(d);
	return out;
}

static void
count_response(void *user, ImapResponse *r)
{
	(*(guint *)user)++;
	imap_response_free(r);
}

/* Inflates bomb in reads of 64 KiB into a parser with small limits;
 * returns how many bytes were inflated when the parser gave up. */
static gsize
feed_bomb(const GByteArray *bomb, gsize max_line, guint64 max_literal)
{
	ImapParserLimits lim = {.max_line = max_line,
	                        .max_literal = max_literal};
	guint responses = 0;
	ImapParserCallbacks cb = {.response = count_response,
	                          .user = &responses};
	ImapParser *p = imap_parser_new(&lim, &cb);
	ImapInflater *z = imap_inflater_new();
	ImapError *err = NULL;
	char *buf = g_malloc(65536);
	gsize total = 0;
	gssize n;

	imap_inflater_feed(z, bomb->data, bomb->len);
	while ((n = imap_inflater_read(z, buf, 65536, NULL)) > 0) {
		assert_true(n <= 65536);
		total += (gsize)n;
		if (imap_parser_feed(p, buf, (gsize)n, &err) != IMAP_OK)
			break;
	}
	assert_non_null(err);
	assert_int_equal(err->status, IMAP_EPROTO);
	assert_int_equal(responses, 0);
	imap_error_free(err);
	imap_parser_free(p);
	imap_inflater_free(z);
	g_free(buf);
	return total;
}

/* 256 MiB that compress to about 256 KiB come out 64 KiB at a time, and
 * the parser's limits stop them as they would uncompressed data. */
static void
test_bomb_bounded(void **state)
{
	gsize big = (gsize)256 << 20;
	GByteArray *line = compress_once("* OK ", big, 'a');
	GByteArray *lit =
	    compress_once("* 1 FETCH (BODY[] {268435456}\r\n", big, 0);
	ImapInflater *z = imap_inflater_new();
	char buf[4096];
	gsize total = 0;
	gssize n;

	assert_true(line->len < big / 500);
	/* Each read yields at most what was asked for. */
	imap_inflater_feed(z, line->data, line->len);
	for (guint i = 0; i < 1000; i++) {
		n = imap_inflater_read(z, buf, sizeof(buf), NULL);
		assert_true(n > 0 && n <= (gssize)sizeof(buf));
		total += (gsize)n;
	}
	assert_int_equal(total, 1000 * sizeof(buf));
	assert_true(imap_inflater_pending(z) > 0); /* the rest waits */
	imap_inflater_free(z);

	total = feed_bomb(line, 1 << 20, 1 << 20);
	assert_true(total <= (1u << 20) + 65536);
	total = feed_bomb(lit, 1 << 20, 1 << 20);
	assert_true(total <= (1u << 20) + 65536);
	g_byte_array_free(line, TRUE);
	g_byte_array_free(lit, TRUE);
}

static void
test_auto_threshold(void **state)
{
	assert_false(imap_compress_link_is_slow(-1));
	assert_false(imap_compress_link_is_slow(200));
	assert_false(imap_compress_link_is_slow(4999));
	assert_true(imap_compress_link_is_slow(5000));
	assert_true(imap_compress_link_is_slow(20000));
}

/* ------------------------------------------------- transport switch */

typedef struct {
	ImapTransport *t;
	int peer; /* the server's end, blocking */
	int listener;
} Link;

static Link
link_open(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	char port[16];
	Link l = {0};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l.listener = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l.listener >= 0);
	assert_int_equal(bind(l.listener, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l.listener, 1), 0);
	getsockname(l.listener, (struct sockaddr *)&a, &alen);
	g_snprintf(port, sizeof(port), "%u", ntohs(a.sin_port));
	l.t = imap_transport_connect("127.0.0.1", port, 5000, NULL);
	assert_non_null(l.t);
	l.peer = accept(l.listener, NULL, NULL);
	assert_true(l.peer >= 0);
	return l;
}

static void
link_close(Link *l)
{
	imap_transport_free(l->t);
	close(l->peer);
	close(l->listener);
}

static void
peer_send(Link *l, const void *data, gsize len)
{
	assert_int_equal(send(l->peer, data, len, 0), (ssize_t)len);
}

/* What the peer reads: exactly len bytes. */
static char *
peer_recv(Link *l, gsize len)
{
	char *buf = g_malloc0(len + 1);
	gsize got = 0;

	while (got < len) {
		ssize_t n = recv(l->peer, buf + got, len - got, 0);
		assert_true(n > 0);
		got += (gsize)n;
	}
	return buf;
}

/* The peer's side of the stream, with zlib itself. */
static GByteArray *
peer_deflate(z_stream *s, const char *text)
{
	unsigned char out[4096];
	GByteArray *b = g_byte_array_new();

	s->next_in = (Bytef *)text;
	s->avail_in = strlen(text);
	s->next_out = out;
	s->avail_out = sizeof(out);
	assert_int_equal(deflate(s, Z_SYNC_FLUSH), Z_OK);
	g_byte_array_append(b, out, sizeof(out) - s->avail_out);
	return b;
}

/* Reads from the transport with reads of at most chunk bytes until want
 * bytes came; fails if a read went past them. */
static void
expect_read(Link *l, gsize chunk, const char *want)
{
	gsize len = strlen(want), got = 0;
	char buf[4096];

	while (got < len) {
		ImapError *err = NULL;
		gssize n = imap_transport_read(l->t, buf, MIN(chunk, len - got),
		                               5000, &err);
		if (n <= 0)
			fail_msg("read: %s", err ? err->text : "EOF");
		assert_memory_equal(buf, want + got, (gsize)n);
		got += (gsize)n;
	}
}

static void
switch_over(gsize chunk)
{
	static const char before[] =
	    "* 1 FETCH (BODY[] {13}\r\nA7 OK trick\r\n)\r\n"
	    "* 2 FETCH (FLAGS (\\Seen))\r\n"
	    "A7 OK DEFLATE active\r\n";
	Link l = link_open();
	z_stream s = {0}, in = {0};

	assert_true(imap_transport_peer_is_loopback(l.t));
	GByteArray *wire, *more;
	ImapTransportCounts counts;
	char *got, plain[64];

	assert_int_equal(
	    deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	imap_transport_expect_compress(l.t, "A7");
	assert_int_equal(imap_transport_write(l.t, "A7 COMPRESS DEFLATE\r\n",
	                                      21, 5000, NULL),
	                 IMAP_OK);
	got = peer_recv(&l, 21);
	assert_string_equal(got, "A7 COMPRESS DEFLATE\r\n");
	g_free(got);

	/* The OK and the first compressed bytes in one segment. */
	wire = g_byte_array_new();
	g_byte_array_append(wire, (guint8 *)before, sizeof(before) - 1);
	more = peer_deflate(&s, "* 3 EXISTS\r\n");
	g_byte_array_append(wire, more->data, more->len);
	peer_send(&l, wire->data, wire->len);
	expect_read(&l, chunk, before);
	assert_true(imap_transport_is_compressed(l.t));
	expect_read(&l, chunk, "* 3 EXISTS\r\n");
	g_byte_array_free(more, TRUE);
	more = peer_deflate(&s, "A8 OK NOOP done\r\n");
	peer_send(&l, more->data, more->len);
	expect_read(&l, chunk, "A8 OK NOOP done\r\n");

	/* Writes are deflated and flushed whole. */
	assert_int_equal(
	    imap_transport_write(l.t, "A8 NOOP\r\n", 9, 5000, NULL), IMAP_OK);
	assert_int_equal(inflateInit2(&in, -15), Z_OK);
	{
		char raw[256];
		ssize_t n = recv(l.peer, raw, sizeof(raw), 0);
		assert_true(n > 0);
		in.next_in = (Bytef *)raw;
		in.avail_in = (uInt)n;
		in.next_out = (Bytef *)plain;
		in.avail_out = sizeof(plain);
		assert_int_equal(inflate(&in, Z_SYNC_FLUSH), Z_OK);
		assert_int_equal(sizeof(plain) - in.avail_out, 9);
		assert_memory_equal(plain, "A8 NOOP\r\n", 9);
	}
	imap_transport_counts(l.t, &counts);
	assert_int_equal(counts.plain_out, 21 + 9);
	assert_true(counts.wire_out > 21 && counts.wire_out < 21 + 9 + 16);
	assert_int_equal(counts.plain_in, sizeof(before) - 1 +
	                                      strlen("* 3 EXISTS\r\n") +
	                                      strlen("A8 OK NOOP done\r\n"));

	/* A corrupt stream is a broken connection. */
	peer_send(&l, "\xff\xff\xff\xff", 4);
	{
		ImapError *err = NULL;
		char buf[64];
		assert_int_equal(
		    imap_transport_read(l.t, buf, sizeof(buf), 5000, &err), -1);
		assert_int_equal(err->status, IMAP_ENET);
		assert_non_null(strstr(err->text, "corrupt"));
		imap_error_free(err);
	}
	inflateEnd(&in);
	deflateEnd(&s);
	g_byte_array_free(more, TRUE);
	g_byte_array_free(wire, TRUE);
	link_close(&l);
}

static void
test_transport_switch(void **state)
{
	switch_over(4096);
}

static void
test_transport_switch_small_reads(void **state)
{
	switch_over(5);
	switch_over(1);
}

/* NO leaves everything plain, also what came right after it. */
static void
test_transport_refused(void **state)
{
	static const char reply[] =
	    "A3 NO [COMPRESSIONACTIVE] already\r\n* 4 EXISTS\r\n";
	Link l = link_open();
	char *got;

	imap_transport_expect_compress(l.t, "A3");
	assert_int_equal(imap_transport_write(l.t, "A3 COMPRESS DEFLATE\r\n",
	                                      21, 5000, NULL),
	                 IMAP_OK);
	g_free(peer_recv(&l, 21));
	peer_send(&l, reply, sizeof(reply) - 1);
	expect_read(&l, 4096, reply);
	assert_false(imap_transport_is_compressed(l.t));
	assert_int_equal(
	    imap_transport_write(l.t, "A4 NOOP\r\n", 9, 5000, NULL), IMAP_OK);
	got = peer_recv(&l, 9);
	assert_string_equal(got, "A4 NOOP\r\n");
	g_free(got);
	peer_send(&l, "* 5 EXISTS\r\n", 12);
	expect_read(&l, 4096, "* 5 EXISTS\r\n");
	link_close(&l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_random),
	    cmocka_unit_test(test_round_trip_compressible),
	    cmocka_unit_test(test_each_write_flushed),
	    cmocka_unit_test(test_interop_with_zlib),
	    cmocka_unit_test(test_corrupt_input),
	    cmocka_unit_test(test_bomb_bounded),
	    cmocka_unit_test(test_auto_threshold),
	    cmocka_unit_test(test_transport_switch),
	    cmocka_unit_test(test_transport_switch_small_reads),
	    cmocka_unit_test(test_transport_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
