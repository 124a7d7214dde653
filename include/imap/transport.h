/* transport.h - a byte stream to the server: TCP (IPv4/IPv6) with optional
 * TLS >= 1.2 (chain and host name verified, SNI sent). Safe for one reader
 * and one writer thread at a time (TLS calls are serialized inside). */
#ifndef IMAP_TRANSPORT_H
#define IMAP_TRANSPORT_H

#include <glib.h>
#include "imap/error.h"

typedef struct ImapTransport ImapTransport;

typedef struct {
	const char *ca_file; /* extra trust anchors (PEM); NULL: system store */
	const char *server_name; /* name verified and sent as SNI; NULL: host */
	/* "sha256:HEX" pins the certificate instead of verifying the chain and
	 * name (for self-signed servers); NULL: normal verification. */
	const char *fingerprint;
} ImapTlsOptions;

ImapTransport *imap_transport_connect(const char *host, const char *port,
                                      int timeout_ms, ImapError **err);
/* Handshakes TLS over the connected socket; fails with IMAP_ETLS if the
 * certificate is not trusted or does not match the name. */
ImapStatus imap_transport_start_tls(ImapTransport *t, const char *host,
                                    const ImapTlsOptions *opts,
                                    ImapError **err);
gboolean imap_transport_is_tls(const ImapTransport *t);
/* Bytes the socket or TLS layer already holds unread (any here right after
 * STARTTLS's OK means an injection attempt). */
gboolean imap_transport_has_pending(ImapTransport *t);
/* Reads up to len bytes. >0: bytes read; 0: EOF (orderly close); -1: error
 * with *err set (IMAP_ETIMEOUT after timeout_ms, < 0 waits forever). */
gssize imap_transport_read(ImapTransport *t, char *buf, gsize len,
                           int timeout_ms, ImapError **err);
ImapStatus imap_transport_write(ImapTransport *t, const void *buf, gsize len,
                                int timeout_ms, ImapError **err);
/* Wakes any thread blocked in read/write; later calls fail with ECLOSED. */
void imap_transport_shutdown(ImapTransport *t);
void imap_transport_free(ImapTransport *t);

/* ---- COMPRESS=DEFLATE (RFC 4978) ----
 * Called before sending the COMPRESS command tagged tag. Until that
 * command's tagged reply has been read, reads hand out whole lines (and
 * literals), so the reply is seen before anything after it; if it is OK,
 * every later byte read is inflated and every later write deflated and
 * flushed (see compress.h). */
void imap_transport_expect_compress(ImapTransport *t, const char *tag);
gboolean imap_transport_is_compressed(ImapTransport *t);
/* The fastest request/reply round trip seen so far (from the end of a
 * write to the first bytes read after it), in microseconds; -1 if none. */
gint64 imap_transport_min_rtt_us(ImapTransport *t);
/* The server's address is 127.0.0.0/8 or ::1 (a local server, or a local
 * tunnel or proxy to one). */
gboolean imap_transport_peer_is_loopback(ImapTransport *t);

typedef struct {
	guint64 wire_in, wire_out;   /* bytes through TLS/TCP */
	guint64 plain_in, plain_out; /* bytes the caller read and wrote */
} ImapTransportCounts;

void imap_transport_counts(ImapTransport *t, ImapTransportCounts *out);

#endif
