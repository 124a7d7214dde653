/* watch.c - noticing what other clients change (RFC 2177 IDLE). Two
 * watchers, each on its own connection outside the pool: one on INBOX and
 * one on the mailbox most recently listed. When the server reports new,
 * expunged or re-flagged mail, the mailbox is resynced at once and fs/ is
 * told, so `ls` shows it within a second or two instead of after
 * dir_cache_timeout. IDLE is renewed before the 29 minutes RFC 2177
 * allows; servers without IDLE are polled with STATUS. */
#include <string.h>

#include "store_internal.h"

#define IDLE_RENEW_US  (25 * 60 * G_USEC_PER_SEC)
#define POLL_US        (5 * G_USEC_PER_SEC)
#define BACKOFF_MAX_US (60 * G_USEC_PER_SEC)

struct StoreWatch {
	MailStore *s;
	GThread *threads[2];
	GMutex lock;
	GCond cond;
	gboolean stop;
	guint generation;     /* bumped when the last-listed mailbox changes */
	char *target[2];      /* what each watcher watches (for status) */
	const char *state[2]; /* static word, see watch_describe() */
};

typedef struct {
	struct StoreWatch *w;
	int slot;
	gboolean event;
} Watcher;

static void
on_untagged(void *user, const ImapResponse *r)
{
	Watcher *wt = user;
	static const char *const changes[] = {"EXISTS", "EXPUNGE", "FETCH",
	                                      "VANISHED"};

	if (r->name == NULL)
		return;
	for (gsize i = 0; i < G_N_ELEMENTS(changes); i++)
		if (strcmp(r->name, changes[i]) == 0) {
			g_mutex_lock(&wt->w->lock);
			wt->event = TRUE;
			g_cond_broadcast(&wt->w->cond);
			g_mutex_unlock(&wt->w->lock);
			return;
		}
}

/* The mailbox this watcher should watch now, or NULL. */
static char *
target_of(Watcher *wt, guint *generation)
{
	MailStore *s = wt->w->s;
	char *name = NULL;

	g_mutex_lock(&wt->w->lock);
	*generation = wt->w->generation;
	g_mutex_unlock(&wt->w->lock);
	if (wt->slot == 0)
		return g_strdup("INBOX");
	g_mutex_lock(&s->lock);
	if (s->last_listed != NULL &&
	    g_ascii_strcasecmp(s->last_listed, "INBOX") != 0)
		name = g_strdup(s->last_listed);
	g_mutex_unlock(&s->lock);
	return name;
}

static void
changed(MailStore *s, const char *mailbox)
{
	StoreListing *l = NULL;
	ImapError *err = NULL;

	if (store_messages(s, mailbox, TRUE, &l, &err) != IMAP_OK) {
		g_message("watch: resync of %s failed: %s", mailbox, err->text);
		imap_error_free(err);
		return;
	}
	store_listing_unref(l);
	if (s->change_fn != NULL)
		s->change_fn(s->change_user, mailbox, NULL, 0);
}

/* Waits for an event, the end, a new target, or the deadline. Returns
 * TRUE if the server reported a change. */
static gboolean
wait_for_event(Watcher *wt, ImapConn *c, guint generation, gint64 deadline)
{
	struct StoreWatch *w = wt->w;
	gboolean event;

	g_mutex_lock(&w->lock);
	while (!wt->event && !w->stop &&
	       (wt->slot == 0 || w->generation == generation) &&
	       g_get_monotonic_time() < deadline &&
	       (c == NULL || imap_conn_is_alive(c)))
		g_cond_wait_until(
		    &w->cond, &w->lock,
		    MIN(deadline, g_get_monotonic_time() + G_USEC_PER_SEC));
	event = wt->event;
	wt->event = FALSE;
	g_mutex_unlock(&w->lock);
	return event;
}

static gboolean
idle_once(Watcher *wt, ImapConn *c, const char *mailbox, guint generation)
{
	ImapError *err = NULL;
	ImapIdle *idle;
	gboolean event;

	if (imap_conn_use_mailbox(c, mailbox, NULL, NULL, &err) != IMAP_OK) {
		g_debug("watch: cannot select %s: %s", mailbox, err->text);
		imap_error_free(err);
		return FALSE;
	}
	idle = imap_idle_start(c, on_untagged, wt, &err);
	if (idle == NULL) {
		imap_conn_release_mailbox(c);
		g_debug("watch: IDLE in %s: %s", mailbox, err->text);
		imap_error_free(err);
		return FALSE;
	}
	event = wait_for_event(wt, c, generation,
	                       g_get_monotonic_time() + IDLE_RENEW_US);
	imap_idle_stop(idle, NULL);
	imap_conn_release_mailbox(c);
	if (event)
		changed(wt->w->s, mailbox);
	return imap_conn_is_alive(c);
}

/* Without IDLE: STATUS every few seconds, compared with what we hold. */
static gboolean
poll_once(Watcher *wt, ImapConn *c, const char *mailbox, guint generation)
{
	MailStore *s = wt->w->s;
	MailboxState *st = state_get(s, mailbox);
	ImapMailboxStatus now = {0};
	gboolean differs;

	if (imap_status(c, mailbox, &now, NULL) != IMAP_OK)
		return imap_conn_is_alive(c);
	g_mutex_lock(&s->lock);
	differs =
	    st->listing != NULL &&
	    (now.uidnext != st->uidnext ||
	     now.messages != st->listing->msgs->len ||
	     (now.has_highestmodseq && now.highestmodseq != st->highestmodseq));
	g_mutex_unlock(&s->lock);
	if (differs)
		changed(s, mailbox);
	wait_for_event(wt, c, generation, g_get_monotonic_time() + POLL_US);
	return imap_conn_is_alive(c);
}

static gboolean
stopping(struct StoreWatch *w)
{
	gboolean stop;

	g_mutex_lock(&w->lock);
	stop = w->stop;
	g_mutex_unlock(&w->lock);
	return stop;
}

static void
sleep_unless_stopped(struct StoreWatch *w, gint64 us)
{
	gint64 deadline = g_get_monotonic_time() + us;

	g_mutex_lock(&w->lock);
	while (!w->stop && g_get_monotonic_time() < deadline)
		g_cond_wait_until(&w->cond, &w->lock, deadline);
	g_mutex_unlock(&w->lock);
}

static void
set_state(Watcher *wt, const char *mailbox, const char *state)
{
	struct StoreWatch *w = wt->w;

	g_mutex_lock(&w->lock);
	if (g_strcmp0(w->target[wt->slot], mailbox) != 0) {
		g_free(w->target[wt->slot]);
		w->target[wt->slot] = g_strdup(mailbox);
	}
	w->state[wt->slot] = state;
	g_mutex_unlock(&w->lock);
}

void
watch_describe(struct StoreWatch *w, int slot, char **mailbox,
               const char **state)
{
	g_mutex_lock(&w->lock);
	*mailbox = g_strdup(w->target[slot]);
	*state = w->state[slot] != NULL ? w->state[slot] : "starting";
	g_mutex_unlock(&w->lock);
}

static gpointer
watcher_main(gpointer data)
{
	Watcher *wt = data;
	struct StoreWatch *w = wt->w;
	gint64 backoff = G_USEC_PER_SEC;
	ImapConn *c = NULL;

	while (!stopping(w)) {
		guint generation;
		g_autofree char *mailbox = target_of(wt, &generation);
		gboolean ok;

		if (mailbox == NULL) {
			set_state(wt, NULL, "waiting");
			wait_for_event(wt, NULL, generation,
			               g_get_monotonic_time() + POLL_US);
			continue;
		}
		if (c == NULL) {
			set_state(wt, mailbox, "connecting");
			c = imap_pool_connect(w->s->pool, NULL);
			if (c == NULL) {
				sleep_unless_stopped(w, backoff);
				backoff = MIN(backoff * 2, BACKOFF_MAX_US);
				continue;
			}
			backoff = G_USEC_PER_SEC;
		}
		if (imap_conn_has_cap(c, "IDLE")) {
			set_state(wt, mailbox, "idle");
			ok = idle_once(wt, c, mailbox, generation);
		} else {
			set_state(wt, mailbox, "polling");
			ok = poll_once(wt, c, mailbox, generation);
		}
		if (!ok) {
			imap_conn_close(c);
			c = NULL;
			sleep_unless_stopped(w, backoff);
		}
	}
	imap_conn_close(c);
	set_state(wt, NULL, "stopped");
	g_free(wt);
	return NULL;
}

struct StoreWatch *
watch_start(MailStore *s)
{
	struct StoreWatch *w = g_new0(struct StoreWatch, 1);

	w->s = s;
	g_mutex_init(&w->lock);
	g_cond_init(&w->cond);
	for (int i = 0; i < 2; i++) {
		Watcher *wt = g_new0(Watcher, 1);
		wt->w = w;
		wt->slot = i;
		w->threads[i] = g_thread_new("imap-watch", watcher_main, wt);
	}
	return w;
}

void
watch_note_listed(struct StoreWatch *w)
{
	g_mutex_lock(&w->lock);
	w->generation++;
	g_cond_broadcast(&w->cond);
	g_mutex_unlock(&w->lock);
}

void
watch_stop(struct StoreWatch *w)
{
	g_mutex_lock(&w->lock);
	w->stop = TRUE;
	g_cond_broadcast(&w->cond);
	g_mutex_unlock(&w->lock);
	for (int i = 0; i < 2; i++)
		g_thread_join(w->threads[i]);
	g_free(w->target[0]);
	g_free(w->target[1]);
	g_mutex_clear(&w->lock);
	g_cond_clear(&w->cond);
	g_free(w);
}
