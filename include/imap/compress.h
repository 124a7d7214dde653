/* compress.h - COMPRESS=DEFLATE (RFC 4978): one raw deflate stream (window
 * bits -15, no zlib header) in each direction of a connection. The
 * transport (transport.c) runs them between the parser/command writer and
 * TLS/TCP; these are the two halves, usable on their own (and tested so).
 * imap_conn_compress() in conn.h sends the command that turns them on. */
#ifndef IMAP_COMPRESS_H
#define IMAP_COMPRESS_H

#include <glib.h>
#include "imap/error.h"

typedef enum {
	IMAP_COMPRESS_NO = 0, /* never (the library's default) */
	/* When the server is remote: its address is not a loopback one and
	 * the fastest request/reply round trip seen while connecting and
	 * logging in (STARTTLS, CAPABILITY, LOGIN or AUTHENTICATE, then a
	 * NOOP to confirm; from the last byte sent to the first byte back)
	 * took at least IMAP_COMPRESS_SLOW_RTT_US. Compression pays where
	 * bandwidth is scarce and costs server CPU where it is not; distance
	 * is the measurable hint of the first. */
	IMAP_COMPRESS_AUTO,
	IMAP_COMPRESS_YES, /* whenever the server offers it */
} ImapCompressMode;

#define IMAP_COMPRESS_SLOW_RTT_US 5000

/* The auto rule: TRUE when a round trip of rtt_us (< 0: none measured)
 * counts as a slow link. */
gboolean imap_compress_link_is_slow(gint64 rtt_us);

/* ---- Sending side: compresses and flushes (Z_SYNC_FLUSH) every write, so
 * each command reaches the server whole even with more to come later. */
typedef struct ImapDeflater ImapDeflater;

/* Receives compressed bytes as they are produced (at most 16 KiB at a
 * time); a failure stops the write and is returned from it. */
typedef ImapStatus (*ImapDeflateOut)(void *user, const void *data, gsize len,
                                     ImapError **err);

ImapDeflater *imap_deflater_new(void);
void imap_deflater_free(ImapDeflater *d);
ImapStatus imap_deflater_write(ImapDeflater *d, const void *data, gsize len,
                               ImapDeflateOut out, void *user, ImapError **err);

/* ---- Receiving side: compressed bytes are fed in as they arrive and
 * inflated into the reader's buffer, never more than it asks for, so a
 * small input that expands hugely (a "decompression bomb") comes out one
 * bounded buffer at a time and meets the parser's line and literal limits
 * like any other data. */
typedef struct ImapInflater ImapInflater;

ImapInflater *imap_inflater_new(void);
void imap_inflater_free(ImapInflater *z);
/* Adds compressed input (copied). */
void imap_inflater_feed(ImapInflater *z, const void *data, gsize len);
/* Inflates into out, at most len bytes. >0: bytes produced; 0: more input
 * is needed (or the stream ended: imap_inflater_ended()); -1: the stream
 * is corrupt, *err set to IMAP_ENET (a broken connection, retried as
 * such). */
gssize imap_inflater_read(ImapInflater *z, char *out, gsize len,
                          ImapError **err);
/* The peer ended its deflate stream (nothing more can follow). */
gboolean imap_inflater_ended(const ImapInflater *z);
/* Compressed bytes fed but not yet consumed. */
gsize imap_inflater_pending(const ImapInflater *z);

#endif
