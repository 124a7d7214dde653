/* body.c - reading message bodies: from the body cache when there, else
 * from the server in windows: 256 KiB first (the whole body at once for a
 * small one, or a reader whose first read is large), then, while it stays
 * sequential, the rest of the body in windows of up to 8 MiB (so
 * `head -c 200` of a 30 MB message fetches 256 KiB, and `cat` of it needs
 * few round trips). A body read in order from its first byte to its end
 * is written to the body cache as it streams by. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "store_internal.h"

#define WINDOW_MIN  (256u * 1024)
#define WINDOW_MAX  (8u * 1024 * 1024)
#define WHOLE_BELOW (1024u * 1024) /* smaller messages: one fetch */
/* A first read this large is cat, grep or cp reading it all (128 KiB:
 * their buffers, and the kernel's full readahead); head -c and file(1)
 * ask for less (the kernel's first readahead of a small read is 16 KiB).
 * Such a reader gets the whole body, up to WINDOW_MAX, in one round
 * trip instead of two. */
#define BULK_READ (128u * 1024)

struct StoreBody {
	MailStore *s;
	char *mailbox;
	guint32 uid, uidvalidity;
	guint64 size_hint;
	gboolean size_known;
	guint64 size;
	int fd;                 /* cached body once a read opened it, or -1 */
	gboolean in_body_cache; /* there at open: a read opens it first */
	GMutex lock;
	char *win;
	guint64 win_off, win_len, win_cap;
	guint64 next_off; /* where a sequential reader continues */
	guint64 chunk;
	BodyWriter *writer; /* streaming into the body cache */
	guint64 written;    /* bytes given to writer, from offset 0 */
	gboolean stored;    /* all of it went into the body cache */
};

StoreBody *
store_body_open(MailStore *s, const char *mailbox, guint32 uid, ImapError **err)
{
	StoreMessage m;
	StoreListing *l = NULL;
	StoreBody *b;
	ImapStatus st = store_message(s, mailbox, uid, NULL, &m, err);

	if (st != IMAP_OK)
		return NULL;
	if (store_messages(s, mailbox, FALSE, &l, err) != IMAP_OK)
		return NULL;
	b = g_new0(StoreBody, 1);
	b->s = s;
	b->mailbox = g_strdup(mailbox);
	b->uid = uid;
	b->uidvalidity = l->uidvalidity;
	prefetch_note_open(s->prefetch, mailbox, l, uid);
	store_listing_unref(l);
	b->size_hint = m.size;
	b->size_known = m.size_verified;
	b->size = m.size;
	b->chunk = WINDOW_MIN;
	b->fd = -1;
	g_mutex_init(&b->lock);
	if (s->bodies == NULL)
		return b;
	/* On its way already: waiting beats fetching it twice. */
	if (prefetch_pending(s->prefetch, mailbox, uid))
		prefetch_wait(s->prefetch, mailbox, uid, 30 * G_USEC_PER_SEC);
	/* Opened at the first read: a file whose pages the kernel kept is
	 * opened again and again without being read (a warm grep -r). */
	b->in_body_cache =
	    body_cache_use(s->bodies, mailbox, b->uidvalidity, uid, &b->size);
	if (b->in_body_cache)
		b->size_known = TRUE;
	return b;
}

gboolean
store_body_exact_size(StoreBody *b, guint64 *size)
{
	gboolean known;

	g_mutex_lock(&b->lock);
	known = b->size_known;
	*size = b->size;
	g_mutex_unlock(&b->lock);
	return known;
}

static ImapStatus
read_cached(StoreBody *b, guint64 off, guint64 len, char *buf, guint64 *got,
            ImapError **err)
{
	gssize n;

	*got = 0;
	while (*got < len) {
		n = pread(b->fd, buf + *got, len - *got, (off_t)(off + *got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return imap_error_set(err, IMAP_ENET, 0,
			                      "reading cached body: %s",
			                      g_strerror(errno));
		if (n == 0)
			break;
		*got += (guint64)n;
	}
	return IMAP_OK;
}

typedef struct {
	StoreBody *b;
	guint64 offset, len;
	guint64 got;
} WindowReq;

static gboolean
window_sink(void *ctx, const char *data, gsize len)
{
	WindowReq *r = ctx;
	guint64 room = r->len - r->got;
	gsize n = (gsize)MIN(room, len);

	/* A server may send more than asked; never past the buffer. */
	memcpy(r->b->win + r->got, data, n);
	r->got += n;
	return TRUE;
}

static ImapStatus
do_fetch_window(ImapConn *c, void *data, ImapError **err)
{
	WindowReq *r = data;
	StoreBody *b = r->b;
	guint64 total = 0;
	ImapStatus st;

	r->got = 0;
	st = use_listed_mailbox(c, b->mailbox, b->uidvalidity, err);
	if (st != IMAP_OK)
		return st;
	st = imap_uid_fetch_body(c, b->mailbox, b->uid, r->offset, r->len,
	                         window_sink, r, &total, err);
	imap_conn_release_mailbox(c);
	return st;
}

/* Feeds the body cache while the windows cover the body from byte 0 in
 * order; any gap abandons it (a later full read will store it). */
static void
feed_cache(StoreBody *b, gboolean at_end)
{
	if (b->s->bodies == NULL)
		return;
	if (b->writer == NULL && b->win_off == 0 && b->written == 0)
		b->writer = body_cache_begin(b->s->bodies, b->mailbox,
		                             b->uidvalidity, b->uid);
	if (b->writer == NULL)
		return;
	if (b->win_off != b->written ||
	    !body_writer_append(b->writer, b->win, b->win_len)) {
		body_writer_abort(b->writer);
		b->writer = NULL;
		return;
	}
	b->written += b->win_len;
	if (at_end) {
		body_writer_commit(b->writer);
		b->writer = NULL;
		b->stored = TRUE;
	}
}

static void
drop_window(StoreBody *b)
{
	g_clear_pointer(&b->win, g_free);
	b->win_cap = b->win_off = b->win_len = 0;
}

/* A handle can stay open long after its reads, and on a no_open mount
 * (fs/lowlevel.c) dozens are kept: the window (up to 8 MiB) goes once
 * the whole body is in the body cache (reads come from there), or once
 * a reader reached the end of a body the cache did not take. Called
 * with b->lock held, after the reader copied what it wanted. */
static void
settle_window(StoreBody *b)
{
	guint64 size;
	int fd;

	if (b->fd >= 0 || b->win == NULL)
		return;
	if (!b->stored) {
		if (b->writer == NULL && b->size_known &&
		    b->next_off >= b->size)
			drop_window(b);
		return;
	}
	fd = body_cache_open_body(b->s->bodies, b->mailbox, b->uidvalidity,
	                          b->uid, &size);
	if (fd < 0)
		return; /* evicted already: the window still serves */
	b->fd = fd;
	drop_window(b);
}

static guint64
window_size(StoreBody *b, guint64 off, guint64 len)
{
	guint64 want;

	guint64 rest = b->size_hint > off ? b->size_hint - off : 0;

	/* A reader that went on past its first window reads to the end (cat,
	 * grep, cp): the rest, by the size hint, in one round trip. */
	if (off == b->next_off && off > 0)
		b->chunk = MIN(MAX(b->chunk * 2, rest + 4096), WINDOW_MAX);
	else if (off != b->next_off)
		b->chunk = WINDOW_MIN;
	want = MAX(len, b->chunk);
	if (off == 0 && (b->size_hint < WHOLE_BELOW || len >= BULK_READ))
		want = MAX(want, MIN(b->size_hint + 4096, WINDOW_MAX));
	return want;
}

static ImapStatus
fill_window(StoreBody *b, guint64 off, guint64 len, ImapError **err)
{
	WindowReq r = {.b = b, .offset = off};
	ImapStatus st;

	r.len = window_size(b, off, len);
	if (r.len > b->win_cap) {
		g_free(b->win);
		b->win = g_malloc(r.len);
		b->win_cap = r.len;
	}
	b->win_len = 0;
	st = with_reader_conn(b->s, b->mailbox, do_fetch_window, &r, err);
	if (st != IMAP_OK)
		return st;
	b->win_off = off;
	b->win_len = r.got;
	if (r.got < r.len && !b->size_known) {
		b->size_known = TRUE;
		b->size = off + r.got;
		if (b->size != b->size_hint)
			g_message(
			    "%s UID %u: RFC822.SIZE said %" G_GUINT64_FORMAT
			    ", body has %" G_GUINT64_FORMAT " bytes",
			    b->mailbox, b->uid, b->size_hint, b->size);
		store_note_size(b->s, b->mailbox, b->uid, b->size);
	}
	feed_cache(b, r.got < r.len);
	return IMAP_OK;
}

static gboolean
in_window(const StoreBody *b, guint64 pos)
{
	return pos >= b->win_off && pos < b->win_off + b->win_len;
}

/* Evicted since the open, the body is read from the server instead; its
 * size is still the one the cache had. Called with b->lock held. */
static void
open_cached(StoreBody *b)
{
	guint64 size;

	b->in_body_cache = FALSE;
	b->fd = body_cache_open_body(b->s->bodies, b->mailbox, b->uidvalidity,
	                             b->uid, &size);
}

/* Copies from the window, fetching the next one where the read runs past
 * it, so sequential readers get windows that tile the body exactly. */
ImapStatus
store_body_read(StoreBody *b, guint64 off, guint64 len, char *buf, guint64 *got,
                ImapError **err)
{
	ImapStatus st = IMAP_OK;
	guint64 n = 0, pos, take;

	*got = 0;
	g_mutex_lock(&b->lock);
	if (b->in_body_cache && b->fd < 0)
		open_cached(b);
	if (b->fd >= 0) {
		/* Set once, kept until close: no lock needed to read it. */
		g_mutex_unlock(&b->lock);
		return read_cached(b, off, len, buf, got, err);
	}
	while (n < len) {
		pos = off + n;
		if (b->size_known && pos >= b->size)
			break;
		if (!in_window(b, pos)) {
			st = fill_window(b, pos, len - n, err);
			if (st != IMAP_OK || !in_window(b, pos))
				break;
		}
		take = MIN(len - n, b->win_off + b->win_len - pos);
		memcpy(buf + n, b->win + (pos - b->win_off), take);
		n += take;
		b->next_off = off + n;
	}
	settle_window(b);
	g_mutex_unlock(&b->lock);
	*got = n;
	if (n > 0 && st != IMAP_OK) {
		/* Bytes already copied are worth more than the error; the
		 * next read will meet it again. */
		imap_error_clear(err);
		st = IMAP_OK;
	}
	return st;
}

char *
store_body_describe(StoreBody *b)
{
	return g_strdup_printf("%s UID %u", b->mailbox, b->uid);
}

void
store_body_close(StoreBody *b)
{
	if (b == NULL)
		return;
	if (b->writer != NULL)
		body_writer_abort(b->writer);
	if (b->fd >= 0)
		body_cache_release(b->s->bodies, b->mailbox, b->uidvalidity,
		                   b->uid, b->fd);
	g_free(b->win);
	g_free(b->mailbox);
	g_mutex_clear(&b->lock);
	g_free(b);
}
