/* faultproxy.c - a TCP proxy for fault-injection tests and benchmarks: it
 * forwards connections from 127.0.0.1 to a target and can add latency, cut
 * connections (FIN or RST) after a byte count or on SIGUSR1, stall them, or
 * refuse new ones (SIGUSR2). One thread, one poll loop.
 *
 *   faultproxy --target HOST:PORT [--listen-port N] [--delay-ms MS]
 *              [--cut-after BYTES] [--cut-every BYTES] [--reset]
 *              [--stall-after BYTES] [--max-seconds S]
 *
 * Prints "PORT=n" once listening. Byte counts are server-to-client bytes of
 * one connection; the proxy forwards exactly that many before acting.
 * --cut-after acts on the first connection only, --cut-every on each. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

/* Bytes one direction of a connection may hold before we stop reading. */
#define QUEUE_LIMIT (8u << 20)
#define READ_SIZE   65536

typedef struct Chunk {
	struct Chunk *next;
	gint64 due; /* monotonic microseconds when it may be sent */
	size_t len;
	size_t off;
	char data[];
} Chunk;

/* One direction: bytes read from src, waiting to be written to dst. */
typedef struct {
	Chunk *head;
	Chunk *tail;
	size_t queued;
	gboolean eof;           /* src sent FIN */
	gint64 eof_due;         /* when to pass that FIN on */
	gboolean shut;          /* dst got shutdown(SHUT_WR) */
	gboolean write_blocked; /* last write to dst hit EAGAIN */
} Pipe;

typedef struct {
	int cfd; /* client side, accepted */
	int sfd; /* server side, connecting or connected */
	gboolean connecting;
	gboolean stalled;
	Pipe up;   /* client -> server */
	Pipe down; /* server -> client */
	guint64 down_bytes;
	guint64 cut_at;   /* 0: never */
	guint64 stall_at; /* 0: never */
} Conn;

typedef struct {
	char *target;
	int listen_port;
	int delay_ms;
	gint64 cut_after;
	gint64 cut_every;
	gboolean reset;
	gint64 stall_after;
	int max_seconds;
} Options;

typedef struct {
	Options opt;
	struct sockaddr_storage target_addr;
	socklen_t target_len;
	int lfd;
	int sigfd;
	GPtrArray *conns;
	guint64 accepted;
	guint64 cuts;
	gboolean refusing;
	gboolean quit;
} Proxy;

static gint64
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (gint64)ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void
set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Makes the coming close() send RST instead of FIN. */
static void
set_abortive(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void
pipe_clear(Pipe *p)
{
	while (p->head != NULL) {
		Chunk *c = p->head;

		p->head = c->next;
		g_free(c);
	}
	p->tail = NULL;
	p->queued = 0;
}

static void
conn_free(Conn *c)
{
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->sfd >= 0)
		close(c->sfd);
	pipe_clear(&c->up);
	pipe_clear(&c->down);
	g_free(c);
}

/* Closes both sides now; with abortive, both peers see a reset. */
static void
conn_kill(Conn *c, gboolean abortive)
{
	if (abortive) {
		set_abortive(c->cfd);
		set_abortive(c->sfd);
	}
	conn_free(c);
}

static void
proxy_cut(Proxy *px, guint i)
{
	Conn *c = g_ptr_array_index(px->conns, i);

	px->cuts++;
	if (!px->opt.reset) {
		/* FIN first, so the peers see an orderly close even if
		 * unread data would otherwise turn close() into a reset. */
		shutdown(c->cfd, SHUT_RDWR);
		if (c->sfd >= 0)
			shutdown(c->sfd, SHUT_RDWR);
	}
	conn_kill(c, px->opt.reset);
	g_ptr_array_remove_index_fast(px->conns, i);
}

static void
proxy_drop(Proxy *px, guint i, gboolean abortive)
{
	conn_kill(g_ptr_array_index(px->conns, i), abortive);
	g_ptr_array_remove_index_fast(px->conns, i);
}

static void
pipe_push(Pipe *p, const char *data, size_t len, gint64 due)
{
	Chunk *c = g_malloc(sizeof(*c) + len);

	c->next = NULL;
	c->due = due;
	c->len = len;
	c->off = 0;
	memcpy(c->data, data, len);
	if (p->tail != NULL)
		p->tail->next = c;
	else
		p->head = c;
	p->tail = c;
	p->queued += len;
}

typedef enum { IO_OK, IO_CLOSED, IO_RESET } IoResult;

/* Reads what src has into p, stamped with the time it may leave. */
static IoResult
pipe_fill(Pipe *p, int src, gint64 delay_us)
{
	char buf[READ_SIZE];
	ssize_t n;

	if (p->eof || p->queued >= QUEUE_LIMIT)
		return IO_OK;
	n = recv(src, buf, sizeof(buf), 0);
	if (n > 0) {
		pipe_push(p, buf, n, now_us() + delay_us);
		return IO_OK;
	}
	if (n == 0) {
		p->eof = TRUE;
		p->eof_due = now_us() + delay_us;
		return IO_OK;
	}
	if (errno == EAGAIN || errno == EINTR)
		return IO_OK;
	return IO_RESET;
}

/* Writes due chunks to dst, at most limit bytes (G_MAXUINT64: no limit);
 * *sent tells how many went out. */
static IoResult
pipe_flush(Pipe *p, int dst, gint64 now, guint64 limit, guint64 *sent)
{
	*sent = 0;
	p->write_blocked = FALSE;
	while (p->head != NULL && p->head->due <= now && *sent < limit) {
		Chunk *c = p->head;
		size_t len = c->len - c->off;
		ssize_t n;

		if (len > limit - *sent)
			len = limit - *sent;
		n = send(dst, c->data + c->off, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				p->write_blocked = TRUE;
				return IO_OK;
			}
			return IO_RESET;
		}
		*sent += n;
		c->off += n;
		p->queued -= n;
		if (c->off == c->len) {
			p->head = c->next;
			if (p->head == NULL)
				p->tail = NULL;
			g_free(c);
		}
	}
	if (p->head == NULL && p->eof && !p->shut && p->eof_due <= now) {
		shutdown(dst, SHUT_WR);
		p->shut = TRUE;
	}
	return IO_OK;
}

/* Smallest limit on server-to-client bytes before a cut or a stall. */
static guint64
down_limit(const Conn *c)
{
	guint64 limit = G_MAXUINT64;

	if (c->cut_at > 0)
		limit = MIN(limit, c->cut_at - c->down_bytes);
	if (c->stall_at > 0 && !c->stalled)
		limit = MIN(limit, c->stall_at - c->down_bytes);
	return limit;
}

typedef enum { CONN_KEEP, CONN_DONE, CONN_CUT, CONN_RESET } ConnFate;

/* Moves whatever is due on c; tells what should become of it. */
static ConnFate
conn_pump(Conn *c, gint64 now)
{
	guint64 sent;

	if (c->stalled || c->connecting)
		return CONN_KEEP;
	if (pipe_flush(&c->up, c->sfd, now, G_MAXUINT64, &sent) != IO_OK)
		return CONN_RESET;
	if (pipe_flush(&c->down, c->cfd, now, down_limit(c), &sent) != IO_OK)
		return CONN_RESET;
	c->down_bytes += sent;
	if (c->cut_at > 0 && c->down_bytes >= c->cut_at)
		return CONN_CUT;
	if (c->stall_at > 0 && c->down_bytes >= c->stall_at)
		c->stalled = TRUE;
	if (c->up.shut && c->down.shut)
		return CONN_DONE;
	return CONN_KEEP;
}

static void
proxy_accept(Proxy *px)
{
	for (;;) {
		int fd =
		    accept4(px->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		Conn *c;

		if (fd < 0)
			return;
		px->accepted++;
		if (px->refusing) {
			close(fd);
			continue;
		}
		c = g_new0(Conn, 1);
		c->cfd = fd;
		c->sfd = socket(px->target_addr.ss_family,
		                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->sfd < 0 ||
		    (connect(c->sfd, (struct sockaddr *)&px->target_addr,
		             px->target_len) < 0 &&
		     errno != EINPROGRESS)) {
			conn_kill(c, TRUE);
			continue;
		}
		c->connecting = TRUE;
		set_nodelay(c->cfd);
		set_nodelay(c->sfd);
		if (px->opt.cut_every > 0)
			c->cut_at = px->opt.cut_every;
		if (px->opt.cut_after > 0 && px->accepted == 1)
			c->cut_at =
			    c->cut_at == 0
			        ? (guint64)px->opt.cut_after
			        : MIN(c->cut_at, (guint64)px->opt.cut_after);
		if (px->opt.stall_after > 0)
			c->stall_at = px->opt.stall_after;
		g_ptr_array_add(px->conns, c);
	}
}

static void
proxy_signal(Proxy *px)
{
	struct signalfd_siginfo si;

	while (read(px->sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGUSR1:
			while (px->conns->len > 0)
				proxy_cut(px, px->conns->len - 1);
			break;
		case SIGUSR2:
			px->refusing = !px->refusing;
			break;
		default:
			px->quit = TRUE;
			break;
		}
	}
}

static short
client_events(const Conn *c)
{
	short ev = 0;

	if (c->stalled)
		return POLLRDHUP;
	if (!c->up.eof && c->up.queued < QUEUE_LIMIT)
		ev |= POLLIN;
	if (c->down.write_blocked)
		ev |= POLLOUT;
	return ev;
}

static short
server_events(const Conn *c)
{
	short ev = 0;

	if (c->connecting)
		return POLLOUT;
	if (c->stalled)
		return 0;
	if (!c->down.eof && c->down.queued < QUEUE_LIMIT)
		ev |= POLLIN;
	if (c->up.write_blocked)
		ev |= POLLOUT;
	return ev;
}

/* Earliest time something queued becomes due (G_MAXINT64: none). */
static gint64
next_due(const Conn *c)
{
	gint64 t = G_MAXINT64;
	const Pipe *pipes[] = {&c->up, &c->down};

	if (c->stalled || c->connecting)
		return t;
	for (guint i = 0; i < G_N_ELEMENTS(pipes); i++) {
		const Pipe *p = pipes[i];

		if (p->head != NULL && !p->write_blocked)
			t = MIN(t, p->head->due);
		else if (p->head == NULL && p->eof && !p->shut)
			t = MIN(t, p->eof_due);
	}
	return t;
}

/* Handles the poll results of connection c. */
static ConnFate
conn_events(Conn *c, short cev, short sev, gint64 delay_us)
{
	if (c->connecting && sev != 0) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
		    err != 0)
			return CONN_RESET;
		c->connecting = FALSE;
		return CONN_KEEP;
	}
	if (c->stalled) {
		if (cev & (POLLRDHUP | POLLHUP | POLLERR))
			return CONN_DONE;
		/* The server gave up; the client must still see a stall. */
		if ((sev & (POLLHUP | POLLERR)) && c->sfd >= 0) {
			close(c->sfd);
			c->sfd = -1;
		}
		return CONN_KEEP;
	}
	if ((cev | sev) & POLLERR)
		return CONN_RESET;
	if ((cev & (POLLIN | POLLHUP | POLLERR)) &&
	    pipe_fill(&c->up, c->cfd, delay_us) != IO_OK)
		return CONN_RESET;
	if ((sev & (POLLIN | POLLHUP | POLLERR)) &&
	    pipe_fill(&c->down, c->sfd, delay_us) != IO_OK)
		return CONN_RESET;
	return CONN_KEEP;
}

static void
proxy_settle(Proxy *px, guint i, ConnFate fate)
{
	switch (fate) {
	case CONN_KEEP:
		break;
	case CONN_DONE:
		proxy_drop(px, i, FALSE);
		break;
	case CONN_CUT:
		proxy_cut(px, i);
		break;
	case CONN_RESET:
		/* One side reset or failed: pass that on as a reset. */
		proxy_drop(px, i, TRUE);
		break;
	}
}

static void
proxy_run(Proxy *px)
{
	gint64 deadline =
	    px->opt.max_seconds > 0
	        ? now_us() + (gint64)px->opt.max_seconds * G_USEC_PER_SEC
	        : G_MAXINT64;
	gint64 delay_us = (gint64)px->opt.delay_ms * 1000;
	GArray *pfds = g_array_new(FALSE, TRUE, sizeof(struct pollfd));

	while (!px->quit) {
		gint64 now = now_us(), wake = deadline;
		struct pollfd *fds;
		struct timespec ts;
		guint n;

		if (now >= deadline)
			break;
		g_array_set_size(pfds, 2 + 2 * px->conns->len);
		fds = (struct pollfd *)(void *)pfds->data;
		fds[0] = (struct pollfd){.fd = px->lfd, .events = POLLIN};
		fds[1] = (struct pollfd){.fd = px->sigfd, .events = POLLIN};
		n = px->conns->len;
		for (guint i = 0; i < n; i++) {
			Conn *c = g_ptr_array_index(px->conns, i);

			fds[2 + 2 * i] = (struct pollfd){
			    .fd = c->cfd, .events = client_events(c)};
			fds[3 + 2 * i] = (struct pollfd){
			    .fd = c->sfd, .events = server_events(c)};
			wake = MIN(wake, next_due(c));
		}
		wake = MAX(wake - now, 0);
		ts.tv_sec = wake / G_USEC_PER_SEC;
		ts.tv_nsec = (wake % G_USEC_PER_SEC) * 1000;
		if (ppoll(fds, pfds->len, &ts, NULL) < 0 && errno != EINTR)
			break;
		/* Back to front: settling may move the last one into i. */
		for (guint i = n; i-- > 0;) {
			Conn *c = g_ptr_array_index(px->conns, i);
			ConnFate fate;

			fate = conn_events(c, fds[2 + 2 * i].revents,
			                   fds[3 + 2 * i].revents, delay_us);
			if (fate == CONN_KEEP)
				fate = conn_pump(c, now_us());
			proxy_settle(px, i, fate);
		}
		if (fds[1].revents & POLLIN)
			proxy_signal(px);
		if (fds[0].revents & POLLIN)
			proxy_accept(px);
	}
	g_array_free(pfds, TRUE);
}

static gboolean
parse_target(Proxy *px)
{
	g_autofree char *host = NULL;
	const char *colon = strrchr(px->opt.target, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	const struct addrinfo *pick = NULL;
	int rc;

	if (colon == NULL || colon[1] == '\0') {
		fprintf(stderr, "faultproxy: --target must be HOST:PORT\n");
		return FALSE;
	}
	host = g_strndup(px->opt.target, colon - px->opt.target);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "faultproxy: %s: %s\n", px->opt.target,
		        gai_strerror(rc));
		return FALSE;
	}
	/* Test servers listen on 127.0.0.1; prefer IPv4 for "localhost". */
	for (ai = res; ai != NULL && pick == NULL; ai = ai->ai_next)
		if (ai->ai_family == AF_INET)
			pick = ai;
	if (pick == NULL)
		pick = res;
	if (pick == NULL || pick->ai_addrlen > sizeof(px->target_addr)) {
		freeaddrinfo(res);
		return FALSE;
	}
	memcpy(&px->target_addr, pick->ai_addr, pick->ai_addrlen);
	px->target_len = pick->ai_addrlen;
	freeaddrinfo(res);
	return TRUE;
}

static int
listen_loopback(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	printf("PORT=%d\n", ntohs(sin.sin_port));
	fflush(stdout);
	return fd;
}

static int
signal_fd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static gboolean
parse_options(int argc, char **argv, Options *o)
{
	GOptionEntry entries[] = {
	    {"target", 0, 0, G_OPTION_ARG_STRING, &o->target,
	     "Where to forward connections", "HOST:PORT"},
	    {"listen-port", 0, 0, G_OPTION_ARG_INT, &o->listen_port,
	     "Port on 127.0.0.1 (0: any free one)", "N"},
	    {"delay-ms", 0, 0, G_OPTION_ARG_INT, &o->delay_ms,
	     "One-way delay added in both directions", "MS"},
	    {"cut-after", 0, 0, G_OPTION_ARG_INT64, &o->cut_after,
	     "Cut the first connection after BYTES server->client", "BYTES"},
	    {"cut-every", 0, 0, G_OPTION_ARG_INT64, &o->cut_every,
	     "Cut every connection after BYTES server->client", "BYTES"},
	    {"reset", 0, 0, G_OPTION_ARG_NONE, &o->reset,
	     "Cuts send RST instead of FIN", NULL},
	    {"stall-after", 0, 0, G_OPTION_ARG_INT64, &o->stall_after,
	     "Stop forwarding after BYTES server->client, stay open", "BYTES"},
	    {"max-seconds", 0, 0, G_OPTION_ARG_INT, &o->max_seconds,
	     "Exit after S seconds (default 600, 0: never)", "S"},
	    {NULL, 0, 0, 0, NULL, NULL, NULL},
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new(
	    "- TCP proxy that delays, cuts and stalls connections");
	g_autoptr(GError) err = NULL;

	o->max_seconds = 600;
	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_set_description(
	    ctx, "Prints PORT=n once listening on 127.0.0.1.\n"
	         "SIGUSR1 cuts all connections now; SIGUSR2 toggles refusing "
	         "new ones.\n");
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "faultproxy: %s\n", err->message);
		return FALSE;
	}
	if (o->target == NULL || argc != 1 || o->delay_ms < 0 ||
	    o->cut_after < 0 || o->cut_every < 0 || o->stall_after < 0 ||
	    o->listen_port < 0 || o->listen_port > 65535 ||
	    o->max_seconds < 0) {
		fprintf(stderr, "faultproxy: need --target HOST:PORT and "
		                "non-negative numbers (see --help)\n");
		return FALSE;
	}
	return TRUE;
}

int
main(int argc, char **argv)
{
	Proxy px = {0};

	if (!parse_options(argc, argv, &px.opt) || !parse_target(&px))
		return 2;
	px.sigfd = signal_fd();
	if (px.sigfd < 0) {
		perror("faultproxy: signalfd");
		return 1;
	}
	px.lfd = listen_loopback(px.opt.listen_port);
	if (px.lfd < 0) {
		perror("faultproxy: listen");
		return 1;
	}
	px.conns = g_ptr_array_new();
	proxy_run(&px);
	while (px.conns->len > 0)
		proxy_drop(&px, px.conns->len - 1, FALSE);
	g_ptr_array_free(px.conns, TRUE);
	close(px.lfd);
	close(px.sigfd);
	fprintf(stderr,
	        "faultproxy: %" G_GUINT64_FORMAT
	        " connections, %" G_GUINT64_FORMAT " cut\n",
	        px.accepted, px.cuts);
	g_free(px.opt.target);
	return 0;
}
