/* compress.c - COMPRESS=DEFLATE (RFC 4978): the deflate and inflate halves
 * that transport.c runs under the parser and command writer, and the
 * COMPRESS command that switches a logged-in connection over to them. */
#include "imap/compress.h"

#include <string.h>
#include <zlib.h>

#include "conn_internal.h"
#include "imap/conn.h"

#define RAW_DEFLATE_BITS (-15) /* RFC 4978: raw deflate, 32 KiB window */
#define DEFLATE_CHUNK    16384
#define ZLIB_MAX_STEP    (1u << 30) /* uInt-sized pieces of big buffers */

gboolean
imap_compress_link_is_slow(gint64 rtt_us)
{
	return rtt_us >= IMAP_COMPRESS_SLOW_RTT_US;
}

/* ------------------------------------------------------------ deflate */

struct ImapDeflater {
	z_stream s;
	unsigned char out[DEFLATE_CHUNK];
};

ImapDeflater *
imap_deflater_new(void)
{
	ImapDeflater *d = g_new0(ImapDeflater, 1);

	if (deflateInit2(&d->s, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
	                 RAW_DEFLATE_BITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		g_error("deflateInit2 failed: out of memory");
	return d;
}

void
imap_deflater_free(ImapDeflater *d)
{
	if (d == NULL)
		return;
	deflateEnd(&d->s);
	g_free(d);
}

/* Runs deflate over what is in next_in with flush, handing every output
 * chunk to out. */
static ImapStatus
deflate_step(ImapDeflater *d, int flush, ImapDeflateOut out, void *user,
             ImapError **err)
{
	ImapStatus st;
	gsize produced;
	int r;

	do {
		d->s.next_out = d->out;
		d->s.avail_out = sizeof(d->out);
		r = deflate(&d->s, flush);
		if (r != Z_OK && r != Z_BUF_ERROR)
			return imap_error_set(
			    err, IMAP_ENET, 0, "compressing failed: %s",
			    d->s.msg ? d->s.msg : "zlib error");
		produced = sizeof(d->out) - d->s.avail_out;
		if (produced > 0) {
			st = out(user, d->out, produced, err);
			if (st != IMAP_OK)
				return st;
		}
		/* A full output buffer may hide more pending output. */
	} while (d->s.avail_in > 0 || d->s.avail_out == 0);
	return IMAP_OK;
}

ImapStatus
imap_deflater_write(ImapDeflater *d, const void *data, gsize len,
                    ImapDeflateOut out, void *user, ImapError **err)
{
	const unsigned char *p = data;
	ImapStatus st;
	gsize step;

	do {
		step = MIN(len, ZLIB_MAX_STEP);
		d->s.next_in = (Bytef *)p;
		d->s.avail_in = (uInt)step;
		p += step;
		len -= step;
		/* Flush once, after the last piece: the command goes out
		 * whole, even if nothing follows it for a long time. */
		st = deflate_step(d, len == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH, out,
		                  user, err);
		if (st != IMAP_OK)
			return st;
	} while (len > 0);
	d->s.next_in = NULL;
	return IMAP_OK;
}

/* ------------------------------------------------------------ inflate */

struct ImapInflater {
	z_stream s;
	GByteArray *in; /* compressed input; in_pos bytes of it consumed */
	gsize in_pos;
	gboolean out_full; /* the last call filled the output buffer, so
	                      inflate may hold more without new input */
	gboolean ended;
	char *failure; /* the stream was corrupt: why */
};

ImapInflater *
imap_inflater_new(void)
{
	ImapInflater *z = g_new0(ImapInflater, 1);

	if (inflateInit2(&z->s, RAW_DEFLATE_BITS) != Z_OK)
		g_error("inflateInit2 failed: out of memory");
	z->in = g_byte_array_new();
	return z;
}

void
imap_inflater_free(ImapInflater *z)
{
	if (z == NULL)
		return;
	inflateEnd(&z->s);
	g_byte_array_free(z->in, TRUE);
	g_free(z->failure);
	g_free(z);
}

void
imap_inflater_feed(ImapInflater *z, const void *data, gsize len)
{
	if (z->in_pos == z->in->len) {
		g_byte_array_set_size(z->in, 0);
		z->in_pos = 0;
	}
	g_byte_array_append(z->in, data, (guint)len);
}

gsize
imap_inflater_pending(const ImapInflater *z)
{
	return z->in->len - z->in_pos;
}

gboolean
imap_inflater_ended(const ImapInflater *z)
{
	return z->ended;
}

static gssize
corrupt(ImapInflater *z, ImapError **err)
{
	imap_error_set(err, IMAP_ENET, 0,
	               "compressed data from the server is corrupt "
	               "(COMPRESS=DEFLATE): %s",
	               z->failure);
	return -1;
}

gssize
imap_inflater_read(ImapInflater *z, char *out, gsize len, ImapError **err)
{
	gsize produced = 0, avail;
	int r;

	if (z->failure != NULL)
		return corrupt(z, err);
	len = MIN(len, ZLIB_MAX_STEP);
	while (produced == 0 && !z->ended && len > 0 &&
	       (z->in_pos < z->in->len || z->out_full)) {
		avail = MIN(z->in->len - z->in_pos, ZLIB_MAX_STEP);
		z->s.next_in = z->in->data + z->in_pos;
		z->s.avail_in = (uInt)avail;
		z->s.next_out = (Bytef *)out;
		z->s.avail_out = (uInt)len;
		r = inflate(&z->s, Z_SYNC_FLUSH);
		z->in_pos += avail - z->s.avail_in;
		produced = len - z->s.avail_out;
		z->out_full = z->s.avail_out == 0;
		z->s.next_in = NULL;
		z->s.next_out = NULL;
		if (r == Z_STREAM_END) {
			z->ended = TRUE;
		} else if (r == Z_BUF_ERROR) {
			z->out_full = FALSE; /* no progress: needs input */
			break;
		} else if (r != Z_OK) {
			z->failure =
			    g_strdup(z->s.msg ? z->s.msg : "zlib error");
			return corrupt(z, err);
		}
	}
	return (gssize)produced;
}

/* ------------------------------------------------------------ command */

static void
arm_transport(void *user, const char *tag)
{
	imap_transport_expect_compress(user, tag);
}

#define IMAP_COMPRESS_RTT_FAILED G_MININT64

/* The login's round trip includes the server's password check, which may
 * be slow on its own: a NOOP, which costs the server nothing, decides. */
static gint64
confirm_round_trip(ImapConn *c, ImapTransport *t, ImapError **err)
{
	if (imap_conn_run(c, imap_cmd_new("NOOP"), NULL, NULL, err) != IMAP_OK)
		return IMAP_COMPRESS_RTT_FAILED;
	return imap_transport_min_rtt_us(t);
}

gboolean
imap_conn_is_compressed(ImapConn *c)
{
	return imap_transport_is_compressed(conn_transport(c));
}

void
imap_conn_transport_counts(ImapConn *c, ImapTransportCounts *out)
{
	imap_transport_counts(conn_transport(c), out);
}

ImapStatus
imap_conn_compress(ImapConn *c, ImapCompressMode mode, ImapError **err)
{
	ImapTransport *t = conn_transport(c);
	ImapCmdHooks hooks = {
	    .exclusive = TRUE, /* nothing may cross the switch-over */
	    .tagged_as = arm_transport,
	    .user = t,
	};
	ImapError *local = NULL;
	ImapCmd *cmd;
	ImapStatus st;
	gint64 rtt = imap_transport_min_rtt_us(t);

	/* Sent once: a second COMPRESS is refused ([COMPRESSIONACTIVE]). */
	if (mode == IMAP_COMPRESS_NO || imap_transport_is_compressed(t) ||
	    !imap_conn_is_authenticated(c) ||
	    !imap_conn_has_cap(c, "COMPRESS=DEFLATE"))
		return IMAP_OK;
	if (mode == IMAP_COMPRESS_AUTO && imap_transport_peer_is_loopback(t)) {
		g_debug("%s: server on a loopback address: no COMPRESS",
		        conn_host(c));
		return IMAP_OK;
	}
	if (mode == IMAP_COMPRESS_AUTO && imap_compress_link_is_slow(rtt))
		rtt = confirm_round_trip(c, t, err);
	if (rtt == IMAP_COMPRESS_RTT_FAILED)
		return err != NULL && *err != NULL ? (*err)->status : IMAP_ENET;
	if (mode == IMAP_COMPRESS_AUTO && !imap_compress_link_is_slow(rtt)) {
		g_debug("%s: round trip %" G_GINT64_FORMAT " us: no COMPRESS",
		        conn_host(c), rtt);
		return IMAP_OK;
	}
	cmd = imap_cmd_new("COMPRESS");
	imap_cmd_raw(cmd, "DEFLATE");
	st = imap_conn_run(c, cmd, &hooks, NULL, &local);
	if (st == IMAP_ENO || st == IMAP_EBAD) {
		/* Not worth failing a working connection over. */
		g_message("%s: COMPRESS refused, continuing without: %s",
		          conn_host(c), local->text);
		imap_error_free(local);
		return IMAP_OK;
	}
	if (st != IMAP_OK) {
		imap_error_prefix(&local, "COMPRESS");
		imap_error_propagate(err, local);
		return st;
	}
	/* The transport switched when the OK went through it, before the
	 * reply was handed on. */
	if (!imap_transport_is_compressed(t))
		return imap_error_set(err, IMAP_EPROTO, 0,
		                      "COMPRESS accepted but the reply was "
		                      "not seen by the transport");
	g_debug("%s: COMPRESS=DEFLATE active (round trip %" G_GINT64_FORMAT
	        " us)",
	        conn_host(c), rtt);
	return IMAP_OK;
}
