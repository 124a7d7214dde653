/* transport.c - TCP and TLS byte stream under the IMAP engine.
 *
 * The socket is non-blocking: a reader thread waits in poll() without
 * holding any lock, so a writer thread can send while a read is pending.
 * OpenSSL objects are not safe for concurrent use, so every SSL_* call runs
 * under tls_lock, and only for as long as the call itself takes.
 *
 * COMPRESS=DEFLATE sits between the caller and TLS/TCP. The switch happens
 * on the reader thread, at the byte after the COMPRESS command's tagged
 * OK: while that reply is awaited, reads are cut at line (and literal)
 * boundaries so the bytes after it, compressed already, never reach the
 * parser. The reader then inflates; writes deflate from the next one on
 * (the command is exclusive, so no write races the switch). */
#include "imap/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "imap/compress.h"

/* While COMPRESS's reply is awaited, a line longer than this is handed out
 * in pieces (it cannot be the short tagged reply). */
#define ARMED_LINE_MAX 8192
/* OpenSSL's read buffer with read-ahead on: several records per read(2). */
#define TLS_READ_AHEAD (64 * 1024)

typedef enum {
	VERDICT_NONE,
	VERDICT_COMPRESS, /* the segment is COMPRESS's tagged OK */
	VERDICT_REFUSED,  /* its tagged NO or BAD */
} Verdict;

struct ImapTransport {
	int fd;
	int wake[2]; /* written by shutdown() to interrupt poll() */
	SSL_CTX *ctx;
	SSL *ssl;
	GMutex tls_lock;
	gint closed;         /* atomic */
	char *drain_failure; /* tls_lock; why a drained record failed */

	GMutex z_lock; /* z_tag, rtt and counters */
	char *z_tag;   /* COMPRESS sent with this tag; reply not yet read */
	ImapDeflater *deflater; /* atomic pointer; set once, by the reader */
	gint64 rtt_min_us;
	gint64 last_write_us; /* 0: a read came after the last write */
	ImapTransportCounts counts;

	/* Reader thread only. */
	ImapInflater *inflater;
	GByteArray *rbuf; /* read from the wire, not yet handed out */
	gsize rpos;
	char *armed_tag; /* the reader's copy of z_tag */
	gboolean at_line_start;
	guint64 literal_left; /* literal bytes announced by the last line */
	gsize seg_left;       /* bytes before the next decision point */
	Verdict seg_verdict;  /* applied when seg_left reaches 0 */
};

static gint64
deadline_after(int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	return g_get_monotonic_time() + (gint64)timeout_ms * 1000;
}

static int
ms_until(gint64 deadline)
{
	gint64 left;

	if (deadline < 0)
		return -1;
	left = (deadline - g_get_monotonic_time()) / 1000;
	return left < 0 ? 0 : (int)MIN(left, G_MAXINT);
}

/* Waits for events on the socket. Returns 1 when ready, 0 on timeout, -1
 * when the transport was shut down or poll failed. */
static int
wait_fd(ImapTransport *t, short events, gint64 deadline)
{
	struct pollfd p[2];
	int r;

	for (;;) {
		if (g_atomic_int_get(&t->closed))
			return -1;
		p[0] = (struct pollfd){.fd = t->fd, .events = events};
		p[1] = (struct pollfd){.fd = t->wake[0], .events = POLLIN};
		r = poll(p, 2, ms_until(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (p[1].revents)
			return -1;
		if (r == 0)
			return 0;
		return 1;
	}
}

static ImapStatus
closed_error(ImapError **err)
{
	return imap_error_set(err, IMAP_ECLOSED, 0, "connection was shut down");
}

static int
connect_one(const struct addrinfo *ai, int timeout_ms, int *saved_errno)
{
	int fd, one = 1, soerr = 0;
	socklen_t len = sizeof(soerr);
	struct pollfd p;

	fd = socket(ai->ai_family,
	            ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
	            ai->ai_protocol);
	if (fd < 0) {
		*saved_errno = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		*saved_errno = errno;
		close(fd);
		return -1;
	}
	p = (struct pollfd){.fd = fd, .events = POLLOUT};
	while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
		;
	if (!(p.revents & (POLLOUT | POLLERR | POLLHUP))) {
		*saved_errno = ETIMEDOUT;
		close(fd);
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ||
	    soerr != 0) {
		*saved_errno = soerr ? soerr : errno;
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	return fd;
}

ImapTransport *
imap_transport_connect(const char *host, const char *port, int timeout_ms,
                       ImapError **err)
{
	struct addrinfo hints = {0}, *res = NULL, *ai;
	int fd = -1, gai, saved = 0;
	ImapTransport *t;

	if (host == NULL || port == NULL) {
		imap_error_set(err, IMAP_EINVAL, 0, "no host or port given");
		return NULL;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0) {
		imap_error_set(err, IMAP_ECONNECT, 0, "cannot resolve %s: %s",
		               host, gai_strerror(gai));
		return NULL;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
		fd = connect_one(ai, timeout_ms, &saved);
	freeaddrinfo(res);
	if (fd < 0) {
		imap_error_set(err, IMAP_ECONNECT, 0,
		               "cannot connect to %s port %s: %s", host, port,
		               g_strerror(saved));
		return NULL;
	}
	t = g_new0(ImapTransport, 1);
	t->fd = fd;
	g_mutex_init(&t->tls_lock);
	if (pipe2(t->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		imap_error_set(err, IMAP_ENET, 0, "pipe: %s",
		               g_strerror(errno));
		close(fd);
		g_mutex_clear(&t->tls_lock);
		g_free(t);
		return NULL;
	}
	g_mutex_init(&t->z_lock);
	t->rtt_min_us = -1;
	t->rbuf = g_byte_array_new();
	return t;
}

static char *
tls_error_text(void)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	if (e == 0)
		return g_strdup("unknown TLS error");
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return g_strdup(buf);
}

static gboolean
is_ip_literal(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 ||
	       inet_pton(AF_INET6, host, &a6) == 1;
}

/* Pinning replaces chain verification, so the chain check must not abort
 * the handshake; the fingerprint is compared right after it. */
static int
accept_any_chain(int preverify, X509_STORE_CTX *store)
{
	return 1;
}

static ImapStatus
check_fingerprint(ImapTransport *t, const char *pin, ImapError **err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	X509 *cert;
	GString *hex;
	const char *want;
	gboolean match;

	if (!g_str_has_prefix(pin, "sha256:"))
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "certificate pin must be sha256:HEX");
	cert = SSL_get1_peer_certificate(t->ssl);
	if (cert == NULL)
		return imap_error_set(err, IMAP_ETLS, 0,
		                      "server sent no certificate");
	X509_digest(cert, EVP_sha256(), md, &mdlen);
	X509_free(cert);
	hex = g_string_new(NULL);
	for (unsigned int i = 0; i < mdlen; i++)
		g_string_append_printf(hex, "%02x", md[i]);
	want = pin + strlen("sha256:");
	match = TRUE;
	{
		gsize j = 0;
		for (const char *p = want; *p; p++) {
			if (*p == ':')
				continue;
			if (j >= hex->len ||
			    g_ascii_tolower(*p) != hex->str[j]) {
				match = FALSE;
				break;
			}
			j++;
		}
		if (j != hex->len)
			match = FALSE;
	}
	if (!match) {
		imap_error_set(err, IMAP_ETLS, 0,
		               "certificate fingerprint sha256:%s does not "
		               "match the pinned one",
		               hex->str);
		g_string_free(hex, TRUE);
		return IMAP_ETLS;
	}
	g_string_free(hex, TRUE);
	return IMAP_OK;
}

/* One client context for every connection with the same trust settings:
 * OpenSSL 3 makes a context slowly (provider lookups, parsing the CA
 * file), which each connection the pool opens while readers wait paid
 * (8 parallel readers on loopback: 0.17 s -> 0.10 s). The context holds
 * trust settings only: each connection still verifies the server's
 * certificate and name in a full handshake. */
static struct {
	GMutex lock;
	char *key; /* ca_file, or "" for the system store */
	SSL_CTX *ctx;
} shared;

static SSL_CTX *
new_client_ctx(const ImapTlsOptions *opts, gboolean pinned)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A peer closing without close_notify reads as EOF: IMAP frames
	 * itself (tags, literal sizes), so truncation cannot go unnoticed. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	                             SSL_OP_NO_COMPRESSION |
	                             SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Without read-ahead OpenSSL reads each record's header and body
	 * with a syscall each; Dovecot sends bodies in records of a few
	 * KiB, so a 127 MB pull was ~70,000 reads. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_AHEAD);
	if (pinned) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_chain);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1 ||
	    (opts->ca_file != NULL &&
	     SSL_CTX_load_verify_locations(ctx, opts->ca_file, NULL) != 1)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* A reference to the context for opts. Pinned certificates get a context
 * of their own each time (their verify callback accepts any chain). */
static SSL_CTX *
client_ctx(const ImapTlsOptions *opts)
{
	const char *key = opts->ca_file != NULL ? opts->ca_file : "";
	SSL_CTX *ctx;

	if (opts->fingerprint != NULL)
		return new_client_ctx(opts, TRUE);
	g_mutex_lock(&shared.lock);
	if (shared.ctx == NULL || strcmp(shared.key, key) != 0) {
		ctx = new_client_ctx(opts, FALSE);
		if (ctx == NULL) {
			g_mutex_unlock(&shared.lock);
			return NULL;
		}
		if (shared.ctx != NULL)
			SSL_CTX_free(shared.ctx);
		g_free(shared.key);
		shared.key = g_strdup(key);
		shared.ctx = ctx;
	}
	SSL_CTX_up_ref(shared.ctx);
	ctx = shared.ctx;
	g_mutex_unlock(&shared.lock);
	return ctx;
}

static ImapStatus
setup_tls(ImapTransport *t, const char *name, const ImapTlsOptions *opts,
          ImapError **err)
{
	g_autofree char *why = NULL;

	t->ctx = client_ctx(opts);
	if (t->ctx == NULL) {
		why = tls_error_text();
		if (opts->ca_file != NULL && opts->fingerprint == NULL)
			return imap_error_set(err, IMAP_ETLS, 0,
			                      "cannot load CA file %s: %s",
			                      opts->ca_file, why);
		return imap_error_set(err, IMAP_ETLS, 0, "TLS setup failed: %s",
		                      why);
	}
	t->ssl = SSL_new(t->ctx);
	if (t->ssl == NULL || SSL_set_fd(t->ssl, t->fd) != 1)
		goto fail;
	if (!is_ip_literal(name))
		SSL_set_tlsext_host_name(t->ssl, name);
	if (opts->fingerprint == NULL) {
		if (is_ip_literal(name)) {
			if (X509_VERIFY_PARAM_set1_ip_asc(
			        SSL_get0_param(t->ssl), name) != 1)
				goto fail;
		} else if (SSL_set1_host(t->ssl, name) != 1) {
			goto fail;
		}
	}
	return IMAP_OK;
fail:
	why = tls_error_text();
	return imap_error_set(err, IMAP_ETLS, 0, "TLS setup failed: %s", why);
}

static ImapStatus
handshake(ImapTransport *t, const char *name, gint64 deadline, ImapError **err)
{
	int r, e, w;
	long verify;
	g_autofree char *why = NULL;

	for (;;) {
		ERR_clear_error();
		r = SSL_connect(t->ssl);
		if (r == 1)
			return IMAP_OK;
		e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			w = wait_fd(t,
			            e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
			            deadline);
			if (w == 0)
				return imap_error_set(
				    err, IMAP_ETIMEOUT, 0,
				    "TLS handshake timed out");
			if (w < 0)
				return closed_error(err);
			continue;
		}
		break;
	}
	verify = SSL_get_verify_result(t->ssl);
	if (verify != X509_V_OK)
		return imap_error_set(
		    err, IMAP_ETLS, 0,
		    "certificate verification failed for %s: %s", name,
		    X509_verify_cert_error_string(verify));
	/* Closed or reset under us, with nothing wrong in what was said: a
	 * lost connection (retried like any other), not a TLS failure. */
	if (((e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) &&
	     ERR_peek_error() == 0) ||
	    ERR_GET_REASON(ERR_peek_error()) ==
	        SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return imap_error_set(err, IMAP_EEOF, 0,
		                      "connection to %s lost during the TLS "
		                      "handshake",
		                      name);
	why = tls_error_text();
	return imap_error_set(err, IMAP_ETLS, 0,
	                      "TLS handshake with %s failed: %s", name, why);
}

ImapStatus
imap_transport_start_tls(ImapTransport *t, const char *host,
                         const ImapTlsOptions *opts, ImapError **err)
{
	static const ImapTlsOptions none = {0};
	const char *name;
	ImapStatus st;

	if (opts == NULL)
		opts = &none;
	name = opts->server_name ? opts->server_name : host;
	if (t->ssl != NULL)
		return imap_error_set(err, IMAP_EINVAL, 0,
		                      "TLS already active");
	st = setup_tls(t, name, opts, err);
	if (st != IMAP_OK)
		return st;
	st = handshake(t, name, deadline_after(60000), err);
	if (st != IMAP_OK)
		return st;
	if (opts->fingerprint != NULL)
		return check_fingerprint(t, opts->fingerprint, err);
	return IMAP_OK;
}

gboolean
imap_transport_is_tls(const ImapTransport *t)
{
	return t->ssl != NULL;
}

gboolean
imap_transport_has_pending(ImapTransport *t)
{
	char c;
	gboolean pending = FALSE;

	g_mutex_lock(&t->tls_lock);
	if (t->ssl != NULL && SSL_has_pending(t->ssl))
		pending = TRUE;
	g_mutex_unlock(&t->tls_lock);
	if (!pending && recv(t->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
		pending = TRUE;
	return pending;
}

/* The records read-ahead has already taken off the socket (tls_lock
 * held): one SSL_read returns one record, and handing the parser a few
 * KiB at a time costs a parse call and a cache write per record. Stops
 * at anything but data. The bytes before a record that fails are good,
 * so they are returned and the failure kept for the next read_once: a
 * TLS error is not seen again by the next SSL_read, only its aftermath. */
static gsize
drain_records(ImapTransport *t, char *buf, gsize len)
{
	gsize got = 0;
	int n;

	while (got < len && SSL_has_pending(t->ssl)) {
		n = SSL_read(t->ssl, buf + got, (int)MIN(len - got, G_MAXINT));
		if (n <= 0) {
			if (SSL_get_error(t->ssl, n) == SSL_ERROR_SSL)
				t->drain_failure = tls_error_text();
			ERR_clear_error();
			break;
		}
		got += (gsize)n;
	}
	return got;
}

/* One attempt; returns bytes, 0 for EOF, -1 with *want set to the poll
 * events to wait for, or -2 on a hard error (err set). */
static gssize
read_once(ImapTransport *t, char *buf, gsize len, short *want, ImapError **err)
{
	gssize n;
	int e;
	g_autofree char *why = NULL;

	if (t->ssl == NULL) {
		n = recv(t->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EINTR) {
			*want = POLLIN;
			return -1;
		}
		imap_error_set(err, IMAP_ENET, 0, "read: %s",
		               g_strerror(errno));
		return -2;
	}
	g_mutex_lock(&t->tls_lock);
	why = g_steal_pointer(&t->drain_failure);
	if (why != NULL) {
		g_mutex_unlock(&t->tls_lock);
		goto failed;
	}
	ERR_clear_error();
	n = SSL_read(t->ssl, buf, (int)MIN(len, G_MAXINT));
	e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, (int)n);
	if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL)
		why = tls_error_text();
	if (e == SSL_ERROR_NONE)
		n += drain_records(t, buf + n, len - (gsize)n);
	g_mutex_unlock(&t->tls_lock);
	switch (e) {
	case SSL_ERROR_NONE:
		return n;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
		*want = POLLIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		*want = POLLOUT;
		return -1;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || errno == ECONNRESET)
			return 0;
		break;
	default:
		break;
	}
failed:
	/* After the handshake a TLS failure is a broken connection, to be
	 * retried like any other (certificate problems surface earlier). */
	imap_error_set(err, IMAP_ENET, 0, "TLS read failed: %s", why);
	return -2;
}

static gssize
read_wire(ImapTransport *t, char *buf, gsize len, gint64 deadline,
          int timeout_ms, ImapError **err)
{
	short want = POLLIN;
	gssize n;
	int w;

	for (;;) {
		if (g_atomic_int_get(&t->closed)) {
			closed_error(err);
			return -1;
		}
		n = read_once(t, buf, len, &want, err);
		if (n >= 0)
			return n;
		if (n == -2)
			return -1;
		w = wait_fd(t, want, deadline);
		if (w == 0) {
			imap_error_set(err, IMAP_ETIMEOUT, 0,
			               "no data from server for %d ms",
			               timeout_ms);
			return -1;
		}
		if (w < 0) {
			closed_error(err);
			return -1;
		}
	}
}

/* ---------------------------------------------------------- COMPRESS */

void
imap_transport_expect_compress(ImapTransport *t, const char *tag)
{
	g_mutex_lock(&t->z_lock);
	g_free(t->z_tag);
	t->z_tag = g_strdup(tag);
	g_mutex_unlock(&t->z_lock);
}

gboolean
imap_transport_is_compressed(ImapTransport *t)
{
	return g_atomic_pointer_get(&t->deflater) != NULL;
}

gint64
imap_transport_min_rtt_us(ImapTransport *t)
{
	gint64 rtt;

	g_mutex_lock(&t->z_lock);
	rtt = t->rtt_min_us;
	g_mutex_unlock(&t->z_lock);
	return rtt;
}

gboolean
imap_transport_peer_is_loopback(ImapTransport *t)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)&ss;

	if (getpeername(t->fd, (struct sockaddr *)&ss, &len) != 0)
		return FALSE;
	if (ss.ss_family == AF_INET)
		return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family != AF_INET6)
		return FALSE;
	if (IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
		return TRUE;
	return IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) &&
	       a6->sin6_addr.s6_addr[12] == 127;
}

void
imap_transport_counts(ImapTransport *t, ImapTransportCounts *out)
{
	g_mutex_lock(&t->z_lock);
	*out = t->counts;
	g_mutex_unlock(&t->z_lock);
}

static void
count_read(ImapTransport *t, gsize wire, gsize plain)
{
	gint64 now = g_get_monotonic_time();

	g_mutex_lock(&t->z_lock);
	t->counts.wire_in += wire;
	t->counts.plain_in += plain;
	if (wire > 0 && t->last_write_us > 0) {
		gint64 rtt = now - t->last_write_us;
		if (t->rtt_min_us < 0 || rtt < t->rtt_min_us)
			t->rtt_min_us = rtt;
		t->last_write_us = 0;
	}
	g_mutex_unlock(&t->z_lock);
}

static void
count_write(ImapTransport *t, gsize wire, gsize plain)
{
	g_mutex_lock(&t->z_lock);
	t->counts.wire_out += wire;
	t->counts.plain_out += plain;
	if (wire > 0)
		t->last_write_us = g_get_monotonic_time();
	g_mutex_unlock(&t->z_lock);
}

/* Picks up a tag armed by expect_compress() (or its removal). */
static void
sync_armed_tag(ImapTransport *t)
{
	g_mutex_lock(&t->z_lock);
	if (g_strcmp0(t->z_tag, t->armed_tag) != 0) {
		g_free(t->armed_tag);
		t->armed_tag = g_strdup(t->z_tag);
		/* Nothing is in flight besides COMPRESS, so the server is
		 * between responses. */
		t->at_line_start = TRUE;
		t->literal_left = 0;
		t->seg_left = 0;
		t->seg_verdict = VERDICT_NONE;
	}
	g_mutex_unlock(&t->z_lock);
}

static void
disarm(ImapTransport *t)
{
	g_mutex_lock(&t->z_lock);
	g_clear_pointer(&t->z_tag, g_free);
	g_clear_pointer(&t->armed_tag, g_free);
	g_mutex_unlock(&t->z_lock);
}

/* The announced size of a literal ending the line ("{12}", "{12+}",
 * "~{12}" before CRLF), or 0. */
static guint64
trailing_literal(const char *line, gsize len)
{
	gsize end = len, start;
	guint64 n = 0;

	while (end > 0 && (line[end - 1] == '\n' || line[end - 1] == '\r'))
		end--;
	if (end < 3 || line[end - 1] != '}')
		return 0;
	end--;
	if (line[end - 1] == '+' || line[end - 1] == '-')
		end--;
	start = end;
	while (start > 0 && g_ascii_isdigit(line[start - 1]))
		start--;
	if (start == end || start == 0 || line[start - 1] != '{')
		return 0;
	for (gsize i = start; i < end && n < G_MAXUINT64 / 10 - 10; i++)
		n = n * 10 + (guint64)(line[i] - '0');
	return n;
}

/* Is this line the tagged reply to COMPRESS, and is it OK? */
static Verdict
classify_line(const ImapTransport *t, const char *line, gsize len)
{
	gsize tl = strlen(t->armed_tag);

	if (!t->at_line_start || len <= tl || memcmp(line, t->armed_tag, tl) ||
	    line[tl] != ' ')
		return VERDICT_NONE;
	if (len >= tl + 3 && g_ascii_strncasecmp(line + tl + 1, "OK", 2) == 0 &&
	    (len == tl + 3 || line[tl + 3] == ' ' || line[tl + 3] == '\r' ||
	     line[tl + 3] == '\n'))
		return VERDICT_COMPRESS;
	return VERDICT_REFUSED;
}

/* Sets the next segment of rbuf while armed; FALSE if more bytes are
 * needed to decide. */
static gboolean
next_segment(ImapTransport *t)
{
	const char *data = (const char *)t->rbuf->data + t->rpos;
	gsize avail = t->rbuf->len - t->rpos;
	const char *lf;

	t->seg_verdict = VERDICT_NONE;
	if (t->literal_left > 0) {
		t->seg_left = (gsize)MIN(t->literal_left, G_MAXSIZE);
		t->literal_left -= t->seg_left;
		t->at_line_start = FALSE;
		return TRUE;
	}
	lf = memchr(data, '\n', avail);
	if (lf == NULL) {
		if (avail < ARMED_LINE_MAX)
			return FALSE;
		t->seg_left = avail;
		t->at_line_start = FALSE;
		return TRUE;
	}
	t->seg_left = (gsize)(lf - data) + 1;
	t->seg_verdict = classify_line(t, data, t->seg_left);
	t->literal_left = trailing_literal(data, t->seg_left);
	t->at_line_start = t->literal_left == 0;
	return TRUE;
}

static void
start_compression(ImapTransport *t)
{
	gsize rest = t->rbuf->len - t->rpos;

	t->inflater = imap_inflater_new();
	if (rest > 0)
		imap_inflater_feed(t->inflater, t->rbuf->data + t->rpos, rest);
	g_byte_array_set_size(t->rbuf, 0);
	t->rpos = 0;
	g_atomic_pointer_set(&t->deflater, imap_deflater_new());
	disarm(t);
}

/* Hands out buffered bytes: plainly, or while armed up to the next line or
 * literal boundary. 0: more bytes are needed first. */
static gssize
take_buffered(ImapTransport *t, char *buf, gsize len)
{
	gsize avail = t->rbuf->len - t->rpos, n;
	Verdict verdict;

	if (t->armed_tag == NULL) {
		n = MIN(avail, len);
	} else {
		if (t->seg_left == 0 && !next_segment(t))
			return 0;
		n = MIN(MIN(avail, len), t->seg_left);
		t->seg_left -= n;
	}
	memcpy(buf, t->rbuf->data + t->rpos, n);
	t->rpos += n;
	if (t->armed_tag != NULL && t->seg_left == 0 &&
	    t->seg_verdict != VERDICT_NONE) {
		verdict = t->seg_verdict;
		t->seg_verdict = VERDICT_NONE;
		if (verdict == VERDICT_COMPRESS)
			start_compression(t);
		else
			disarm(t);
	}
	if (t->rpos == t->rbuf->len) {
		g_byte_array_set_size(t->rbuf, 0);
		t->rpos = 0;
	}
	return (gssize)n;
}

static gssize
read_inflated(ImapTransport *t, char *buf, gsize len, gint64 deadline,
              int timeout_ms, ImapError **err)
{
	gssize n, wire;

	for (;;) {
		n = imap_inflater_read(t->inflater, buf, len, err);
		if (n != 0) {
			if (n > 0)
				count_read(t, 0, (gsize)n);
			return n;
		}
		if (imap_inflater_ended(t->inflater))
			return 0; /* the server ended its stream */
		/* The caller's buffer is free until output is produced. */
		wire = read_wire(t, buf, len, deadline, timeout_ms, err);
		if (wire <= 0)
			return wire;
		count_read(t, (gsize)wire, 0);
		imap_inflater_feed(t->inflater, buf, (gsize)wire);
	}
}

gssize
imap_transport_read(ImapTransport *t, char *buf, gsize len, int timeout_ms,
                    ImapError **err)
{
	gint64 deadline = deadline_after(timeout_ms);
	gssize n;

	if (len == 0) {
		imap_error_set(err, IMAP_EINVAL, 0, "empty read");
		return -1;
	}
	for (;;) {
		if (t->inflater != NULL)
			return read_inflated(t, buf, len, deadline, timeout_ms,
			                     err);
		sync_armed_tag(t);
		if (t->rpos < t->rbuf->len) {
			n = take_buffered(t, buf, len);
			if (n > 0) {
				count_read(t, 0, (gsize)n);
				return n;
			}
		}
		n = read_wire(t, buf, len, deadline, timeout_ms, err);
		if (n <= 0)
			return n;
		count_read(t, (gsize)n, 0);
		sync_armed_tag(t);
		if (t->armed_tag == NULL && t->rpos == t->rbuf->len) {
			count_read(t, 0, (gsize)n);
			return n;
		}
		g_byte_array_append(t->rbuf, (guint8 *)buf, (guint)n);
	}
}

static gssize
write_once(ImapTransport *t, const char *buf, gsize len, short *want,
           ImapError **err)
{
	gssize n;
	int e;
	g_autofree char *why = NULL;

	if (t->ssl == NULL) {
		n = send(t->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EINTR) {
			*want = POLLOUT;
			return -1;
		}
		imap_error_set(err, IMAP_ENET, 0, "write: %s",
		               g_strerror(errno));
		return -2;
	}
	g_mutex_lock(&t->tls_lock);
	ERR_clear_error();
	n = SSL_write(t->ssl, buf, (int)MIN(len, 1 << 20));
	e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, (int)n);
	if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ &&
	    e != SSL_ERROR_WANT_WRITE)
		why = tls_error_text();
	g_mutex_unlock(&t->tls_lock);
	if (e == SSL_ERROR_NONE)
		return n;
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		return -1;
	}
	imap_error_set(err, IMAP_ENET, 0, "TLS write failed: %s", why);
	return -2;
}

static ImapStatus
write_wire(ImapTransport *t, const void *buf, gsize len, gint64 deadline,
           int timeout_ms, ImapError **err)
{
	const char *p = buf;
	short want = POLLOUT;
	gssize n;
	int w;

	while (len > 0) {
		if (g_atomic_int_get(&t->closed))
			return closed_error(err);
		n = write_once(t, p, len, &want, err);
		if (n > 0) {
			p += n;
			len -= (gsize)n;
			continue;
		}
		if (n == -2)
			return err != NULL && *err != NULL ? (*err)->status
			                                   : IMAP_ENET;
		w = wait_fd(t, want, deadline);
		if (w == 0)
			return imap_error_set(err, IMAP_ETIMEOUT, 0,
			                      "server did not accept data for "
			                      "%d ms",
			                      timeout_ms);
		if (w < 0)
			return closed_error(err);
	}
	return IMAP_OK;
}

typedef struct {
	ImapTransport *t;
	gint64 deadline;
	int timeout_ms;
} WireTarget;

static ImapStatus
write_deflated(void *user, const void *data, gsize len, ImapError **err)
{
	WireTarget *w = user;
	ImapStatus st =
	    write_wire(w->t, data, len, w->deadline, w->timeout_ms, err);

	if (st == IMAP_OK)
		count_write(w->t, len, 0);
	return st;
}

ImapStatus
imap_transport_write(ImapTransport *t, const void *buf, gsize len,
                     int timeout_ms, ImapError **err)
{
	WireTarget w = {t, deadline_after(timeout_ms), timeout_ms};
	ImapDeflater *d = g_atomic_pointer_get(&t->deflater);
	ImapStatus st;

	if (d != NULL)
		st = imap_deflater_write(d, buf, len, write_deflated, &w, err);
	else
		st = write_wire(t, buf, len, w.deadline, timeout_ms, err);
	if (st == IMAP_OK)
		count_write(t, d != NULL ? 0 : len, len);
	return st;
}

void
imap_transport_shutdown(ImapTransport *t)
{
	char c = 1;

	if (!g_atomic_int_compare_and_exchange(&t->closed, 0, 1))
		return;
	if (write(t->wake[1], &c, 1) < 0)
		g_debug("wake pipe: %s", g_strerror(errno));
	shutdown(t->fd, SHUT_RDWR);
}

void
imap_transport_free(ImapTransport *t)
{
	if (t == NULL)
		return;
	if (t->ssl != NULL)
		SSL_free(t->ssl);
	if (t->ctx != NULL)
		SSL_CTX_free(t->ctx);
	close(t->fd);
	close(t->wake[0]);
	close(t->wake[1]);
	g_mutex_clear(&t->tls_lock);
	g_mutex_clear(&t->z_lock);
	g_free(t->z_tag);
	g_free(t->armed_tag);
	g_free(t->drain_failure);
	imap_deflater_free(t->deflater);
	imap_inflater_free(t->inflater);
	g_byte_array_free(t->rbuf, TRUE);
	g_free(t);
}
