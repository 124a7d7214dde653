/* transport.c - TCP and TLS byte stream under the IMAP engine.
 *
 * The socket is non-blocking: a reader thread waits in poll() without
 * holding any lock, so a writer thread can send while a read is pending.
 * OpenSSL objects are not safe for concurrent use, so every SSL_* call runs
 * under tls_lock, and only for as long as the call itself takes. */
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

struct ImapTransport {
	int fd;
	int wake[2]; /* written by shutdown() to interrupt poll() */
	SSL_CTX *ctx;
	SSL *ssl;
	GMutex tls_lock;
	gint closed; /* atomic */
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

static ImapStatus
setup_tls(ImapTransport *t, const char *name, const ImapTlsOptions *opts,
          ImapError **err)
{
	g_autofree char *why = NULL;

	t->ctx = SSL_CTX_new(TLS_client_method());
	if (t->ctx == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	/* A peer closing without close_notify reads as EOF: IMAP frames
	 * itself (tags, literal sizes), so truncation cannot go unnoticed. */
	SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	                                SSL_OP_NO_COMPRESSION |
	                                SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                             SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (opts->fingerprint != NULL) {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, accept_any_chain);
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
		if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
			goto fail;
		if (opts->ca_file != NULL &&
		    SSL_CTX_load_verify_locations(t->ctx, opts->ca_file,
		                                  NULL) != 1) {
			why = tls_error_text();
			return imap_error_set(err, IMAP_ETLS, 0,
			                      "cannot load CA file %s: %s",
			                      opts->ca_file, why);
		}
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
	if (t->ssl != NULL && SSL_pending(t->ssl) > 0)
		pending = TRUE;
	g_mutex_unlock(&t->tls_lock);
	if (!pending && recv(t->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
		pending = TRUE;
	return pending;
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
	ERR_clear_error();
	n = SSL_read(t->ssl, buf, (int)MIN(len, G_MAXINT));
	e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, (int)n);
	if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL)
		why = tls_error_text();
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
	/* After the handshake a TLS failure is a broken connection, to be
	 * retried like any other (certificate problems surface earlier). */
	imap_error_set(err, IMAP_ENET, 0, "TLS read failed: %s", why);
	return -2;
}

gssize
imap_transport_read(ImapTransport *t, char *buf, gsize len, int timeout_ms,
                    ImapError **err)
{
	gint64 deadline = deadline_after(timeout_ms);
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

ImapStatus
imap_transport_write(ImapTransport *t, const void *buf, gsize len,
                     int timeout_ms, ImapError **err)
{
	const char *p = buf;
	gint64 deadline = deadline_after(timeout_ms);
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
	g_free(t);
}
