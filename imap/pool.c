/* pool.c - a bounded set of authenticated connections to one account.
 *
 * A caller that finds no idle connection while fewer than max_conns exist
 * starts opening one in the background and takes whichever comes first:
 * that one, or one another caller releases meanwhile. Under parallel
 * demand the pool so grows to max_conns, while nobody waits through a
 * TLS handshake and login for a connection released a round trip later.
 *
 * Readers of message bodies may share: when no connection is idle, a
 * reader joins one that another reader holds on the same mailbox, and its
 * UID FETCH goes out pipelined behind the other's instead of waiting for a
 * connection to come free or to be opened.
 *
 * Secrets go stale under a long-running mount: an OAuth2 access token
 * expires within the hour, a password may be changed. When the server
 * refuses a secret that it accepted before (or that is over a minute
 * old), the pool asks its secret source for a new one, once for all the
 * connections that fail together, and logs in again. */
#include "imap/pool.h"

#include <string.h>
#include <sys/mman.h>

struct ImapPool {
	ImapConnectOptions opts;
	ImapCredentials cred; /* cred.secret unused: see secret */
	char *secret;         /* under lock; replaced by renew_secret() */
	gsize secret_len;
	guint secret_gen;       /* bumped at each replacement */
	gint64 secret_since;    /* monotonic us it was obtained */
	gboolean secret_worked; /* some login accepted it */
	ImapPoolSecretFn renew; /* NULL: the secret cannot be renewed */
	void *renew_user;
	GMutex renew_lock; /* one renewal at a time */
	guint max_conns;
	ImapPoolSetupFn setup;
	void *setup_user;

	GMutex lock;
	GCond cond;
	GPtrArray *idle;        /* ImapConn * not handed out */
	GHashTable *idle_since; /* ImapConn * -> monotonic us, as gint64 * */
	GHashTable *sharers; /* handed-out ImapConn * -> holders, shareable */
	guint total;         /* idle + handed out + being opened */
	guint opening;       /* background opens not finished */
	/* Their threads once done, to be joined: a thread that used TLS
	 * still frees OpenSSL's per-thread state as it ends, so the pool
	 * (and so the process) must not end before it has. */
	GPtrArray *finished; /* GThread * */
	char **caps;
};

/* A connection being opened for a waiting caller. */
typedef struct {
	ImapPool *p;
	ImapError *err;     /* why it failed */
	gboolean done;      /* the connection is in idle, or err is set */
	gboolean abandoned; /* the caller left: the opener frees this */
} Opening;

static char *
dup_secret(const char *s, gsize *len)
{
	char *copy;

	*len = strlen(s) + 1;
	copy = g_malloc(*len);
	memcpy(copy, s, *len);
	/* Keep the password out of swap; failure (RLIMIT_MEMLOCK) is not
	 * fatal, core dumps are disabled separately by the daemon. */
	if (mlock(copy, *len) != 0)
		g_debug("mlock of secret failed; continuing");
	return copy;
}

static void
drop_secret(char *s, gsize len)
{
	if (s == NULL)
		return;
	explicit_bzero(s, len);
	munlock(s, len);
	g_free(s);
}

ImapPool *
imap_pool_new(const ImapConnectOptions *opts, const ImapCredentials *cred,
              guint max_conns, ImapPoolSetupFn setup, void *setup_user)
{
	ImapPool *p = g_new0(ImapPool, 1);

	p->opts = *opts;
	p->opts.host = g_strdup(opts->host);
	p->opts.port = g_strdup(opts->port);
	p->opts.tls_opts.ca_file = g_strdup(opts->tls_opts.ca_file);
	p->opts.tls_opts.server_name = g_strdup(opts->tls_opts.server_name);
	p->opts.tls_opts.fingerprint = g_strdup(opts->tls_opts.fingerprint);
	p->cred.mech = cred->mech;
	p->cred.user = g_strdup(cred->user);
	p->secret = dup_secret(cred->secret, &p->secret_len);
	p->secret_since = g_get_monotonic_time();
	p->max_conns = max_conns > 0 ? max_conns : 1;
	p->setup = setup;
	p->setup_user = setup_user;
	g_mutex_init(&p->lock);
	g_mutex_init(&p->renew_lock);
	g_cond_init(&p->cond);
	p->idle = g_ptr_array_new();
	p->idle_since = g_hash_table_new_full(NULL, NULL, NULL, g_free);
	p->sharers = g_hash_table_new(NULL, NULL);
	p->finished = g_ptr_array_new();
	return p;
}

/* Joins the background opens that are done (p->lock held: they no
 * longer need it, they only have to return). */
static void
join_finished_locked(ImapPool *p)
{
	for (guint i = 0; i < p->finished->len; i++)
		g_thread_join(p->finished->pdata[i]);
	g_ptr_array_set_size(p->finished, 0);
}

void
imap_pool_free(ImapPool *p)
{
	if (p == NULL)
		return;
	g_mutex_lock(&p->lock);
	while (p->opening > 0)
		g_cond_wait(&p->cond, &p->lock);
	join_finished_locked(p);
	g_mutex_unlock(&p->lock);
	g_ptr_array_free(p->finished, TRUE);
	imap_pool_drain(p);
	g_ptr_array_free(p->idle, TRUE);
	g_hash_table_destroy(p->idle_since);
	g_hash_table_destroy(p->sharers);
	g_mutex_clear(&p->lock);
	g_mutex_clear(&p->renew_lock);
	g_cond_clear(&p->cond);
	drop_secret(p->secret, p->secret_len);
	g_free((char *)p->cred.user);
	g_free((char *)p->opts.host);
	g_free((char *)p->opts.port);
	g_free((char *)p->opts.tls_opts.ca_file);
	g_free((char *)p->opts.tls_opts.server_name);
	g_free((char *)p->opts.tls_opts.fingerprint);
	g_strfreev(p->caps);
	g_free(p);
}

static void
close_all(GPtrArray *conns)
{
	for (guint i = 0; i < conns->len; i++)
		imap_conn_close(conns->pdata[i]);
}

void
imap_pool_set_secret_source(ImapPool *p, ImapPoolSecretFn fn, void *user)
{
	p->renew = fn;
	p->renew_user = user;
}

/* Logs in with the current secret; *gen says which one that was. */
static ImapStatus
login_with_current(ImapPool *p, ImapConn *c, guint *gen, ImapError **err)
{
	ImapCredentials cred = p->cred;
	char *secret;
	gsize len;
	ImapStatus st;

	g_mutex_lock(&p->lock);
	secret = dup_secret(p->secret, &len);
	*gen = p->secret_gen;
	g_mutex_unlock(&p->lock);
	cred.secret = secret;
	st = imap_conn_login(c, &cred, err);
	drop_secret(secret, len);
	if (st == IMAP_OK) {
		g_mutex_lock(&p->lock);
		if (p->secret_gen == *gen)
			p->secret_worked = TRUE;
		g_mutex_unlock(&p->lock);
	}
	return st;
}

/* A refused secret that never worked is renewed only once it is this old:
 * a wrong password at mount time fails at once, without running the
 * password command twice, while a source that handed out a stale token
 * gets asked again a minute later. */
#define SECRET_MIN_AGE_US (60 * G_USEC_PER_SEC)

static gboolean
worth_renewing_locked(ImapPool *p)
{
	return p->secret_worked ||
	       g_get_monotonic_time() - p->secret_since > SECRET_MIN_AGE_US;
}

/* Replaces the secret (p->lock held) unless fresh is the same one. */
static gboolean
replace_secret_locked(ImapPool *p, const char *fresh)
{
	if (strcmp(fresh, p->secret) == 0)
		return FALSE;
	drop_secret(p->secret, p->secret_len);
	p->secret = dup_secret(fresh, &p->secret_len);
	p->secret_gen++;
	p->secret_since = g_get_monotonic_time();
	p->secret_worked = FALSE;
	return TRUE;
}

/* After the server refused the secret of generation gen: TRUE when there
 * is another one to try, either renewed by another connection meanwhile
 * or obtained now from the secret source. */
static gboolean
renew_secret(ImapPool *p, guint gen)
{
	ImapError *err = NULL;
	gboolean again = FALSE, ask;
	char *fresh;

	if (p->renew == NULL)
		return FALSE;
	g_mutex_lock(&p->renew_lock);
	g_mutex_lock(&p->lock);
	again = p->secret_gen != gen;
	ask = !again && worth_renewing_locked(p);
	g_mutex_unlock(&p->lock);
	if (ask) {
		fresh = p->renew(p->renew_user, &err);
		if (fresh == NULL) {
			g_warning("login refused, and no new secret: %s",
			          err != NULL ? err->text
			                      : "(no reason given)");
		} else {
			g_mutex_lock(&p->lock);
			again = replace_secret_locked(p, fresh);
			g_mutex_unlock(&p->lock);
			if (!again)
				g_warning("login refused, and the secret "
				          "source gave the same secret again");
			explicit_bzero(fresh, strlen(fresh));
			g_free(fresh);
		}
		imap_error_free(err);
	}
	g_mutex_unlock(&p->renew_lock);
	return again;
}

/* Connects and logs in, with a renewed secret if the server refuses the
 * current one (see the top of the file). */
static ImapConn *
connect_and_login(ImapPool *p, ImapError **err)
{
	ImapError *refused = NULL;
	ImapConn *c = imap_conn_connect(&p->opts, err);
	guint gen;

	if (c == NULL)
		return NULL;
	if (login_with_current(p, c, &gen, &refused) == IMAP_OK)
		return c;
	if (refused != NULL && refused->status == IMAP_EAUTH &&
	    renew_secret(p, gen)) {
		g_message("%s; logging in with a new secret", refused->text);
		imap_error_clear(&refused);
		/* A refused client may go on in the same session, but
		 * some servers hang up after a failed login. */
		if (!imap_conn_is_alive(c)) {
			imap_conn_close(c);
			c = imap_conn_connect(&p->opts, err);
			if (c == NULL)
				return NULL;
		}
		if (login_with_current(p, c, &gen, &refused) == IMAP_OK)
			return c;
	}
	imap_error_propagate(err, refused);
	imap_conn_close(c);
	return NULL;
}

static ImapConn *
open_conn(ImapPool *p, ImapError **err)
{
	ImapConn *c = connect_and_login(p, err);
	char **caps;

	if (c == NULL)
		return NULL;
	if (p->setup != NULL && p->setup(c, p->setup_user, err) != IMAP_OK) {
		imap_conn_close(c);
		return NULL;
	}
	caps = imap_conn_caps(c);
	g_mutex_lock(&p->lock);
	g_strfreev(p->caps);
	p->caps = caps;
	g_mutex_unlock(&p->lock);
	return c;
}

/* Removes dead idle connections; returns them for closing unlocked. */
static GPtrArray *
reap_dead_locked(ImapPool *p)
{
	GPtrArray *dead = g_ptr_array_new();

	for (guint i = p->idle->len; i-- > 0;) {
		ImapConn *c = p->idle->pdata[i];
		if (!imap_conn_is_alive(c)) {
			g_ptr_array_add(dead, c);
			g_hash_table_remove(p->idle_since, c);
			g_ptr_array_remove_index_fast(p->idle, i);
			p->total--;
		}
	}
	return dead;
}

static ImapConn *
take_idle_locked(ImapPool *p, const char *mailbox)
{
	guint pick = 0;

	if (p->idle->len == 0)
		return NULL;
	for (guint i = 0; mailbox != NULL && i < p->idle->len; i++)
		if (imap_conn_has_selected(p->idle->pdata[i], mailbox)) {
			pick = i;
			break;
		}
	return g_ptr_array_steal_index_fast(p->idle, pick);
}

/* Connections idle longer than this are checked with NOOP before use. */
#define KEEPALIVE_US (120 * G_USEC_PER_SEC)

static gboolean
still_alive(ImapConn *c)
{
	ImapCmd *noop = imap_cmd_new("NOOP");

	return imap_conn_run(c, noop, NULL, NULL, NULL) == IMAP_OK;
}

static void
add_idle_locked(ImapPool *p, ImapConn *c)
{
	gint64 *since = g_new(gint64, 1);

	*since = g_get_monotonic_time();
	g_hash_table_replace(p->idle_since, c, since);
	g_ptr_array_add(p->idle, c);
}

static gpointer
open_in_background(gpointer data)
{
	Opening *o = data;
	ImapPool *p = o->p;
	ImapError *err = NULL;
	ImapConn *c = open_conn(p, &err);

	g_mutex_lock(&p->lock);
	if (c != NULL)
		add_idle_locked(p, c);
	else
		p->total--;
	p->opening--;
	g_ptr_array_add(p->finished, g_thread_self());
	if (o->abandoned) {
		if (err != NULL)
			g_debug("background connect failed: %s", err->text);
		imap_error_free(err);
		g_free(o);
	} else {
		o->err = err;
		o->done = TRUE;
	}
	g_cond_broadcast(&p->cond);
	g_mutex_unlock(&p->lock);
	return NULL;
}

/* Starts opening a connection (p->lock held, total < max_conns). */
static Opening *
start_open_locked(ImapPool *p)
{
	Opening *o = g_new0(Opening, 1);

	o->p = p;
	p->total++;
	p->opening++;
	join_finished_locked(p);
	g_thread_new("imap-connect", open_in_background, o);
	return o;
}

/* Readers on one connection at most: more would only queue behind each
 * other's bytes. */
#define MAX_SHARERS 4

static guint
holders_of_locked(ImapPool *p, ImapConn *c)
{
	return GPOINTER_TO_UINT(g_hash_table_lookup(p->sharers, c));
}

static void
set_holders_locked(ImapPool *p, ImapConn *c, guint n)
{
	if (n == 0)
		g_hash_table_remove(p->sharers, c);
	else
		g_hash_table_replace(p->sharers, c, GUINT_TO_POINTER(n));
	imap_conn_set_holders(c, n);
}

/* A shareable connection on `mailbox` with room for one more reader (the
 * least busy), now held once more; NULL if none. */
static ImapConn *
join_shared_locked(ImapPool *p, const char *mailbox)
{
	GHashTableIter it;
	gpointer key, value;
	ImapConn *best = NULL;
	guint best_n = MAX_SHARERS;

	if (mailbox == NULL)
		return NULL;
	g_hash_table_iter_init(&it, p->sharers);
	while (g_hash_table_iter_next(&it, &key, &value)) {
		ImapConn *c = key;
		guint n = GPOINTER_TO_UINT(value);

		if (n < best_n && imap_conn_is_alive(c) &&
		    imap_conn_has_selected(c, mailbox)) {
			best = c;
			best_n = n;
		}
	}
	if (best != NULL)
		set_holders_locked(p, best, best_n + 1);
	return best;
}

/* Waits (p->lock held) for an idle connection, opening one in the
 * background when the pool may grow, or (share) joining a reader's; NULL
 * with *err set when the open this caller started failed and nothing else
 * came free. *joined says which. */
static ImapConn *
wait_idle_locked(ImapPool *p, const char *mailbox, gboolean share,
                 gboolean *joined, ImapError **err)
{
	Opening *mine = NULL;
	ImapConn *c;
	GPtrArray *dead;

	*joined = FALSE;
	for (;;) {
		dead = reap_dead_locked(p);
		if (dead->len > 0) {
			g_mutex_unlock(&p->lock);
			close_all(dead);
			g_mutex_lock(&p->lock);
		}
		g_ptr_array_free(dead, TRUE);
		c = take_idle_locked(p, mailbox);
		if (c != NULL)
			break;
		if (share) {
			c = join_shared_locked(p, mailbox);
			if (c != NULL) {
				/* Pipelined now beats a connection of our own
				 * several round trips from now; the pool still
				 * grows for the readers after us, one new
				 * connection per reader that joins (in
				 * parallel: each takes round trips). */
				if (mine == NULL && p->total < p->max_conns)
					start_open_locked(p)->abandoned = TRUE;
				*joined = TRUE;
				break;
			}
		}
		if (mine != NULL && mine->done) {
			if (mine->err != NULL) {
				imap_error_propagate(err, mine->err);
				mine->err = NULL;
				break;
			}
			/* Ours was taken by someone else: try again. */
			g_free(mine);
			mine = NULL;
		}
		if (mine == NULL && p->total < p->max_conns)
			mine = start_open_locked(p);
		g_cond_wait(&p->cond, &p->lock);
	}
	if (mine != NULL && !mine->done)
		mine->abandoned = TRUE;
	else if (mine != NULL) {
		imap_error_free(mine->err);
		g_free(mine);
	}
	return c;
}

void
imap_pool_warm(ImapPool *p, guint n)
{
	g_mutex_lock(&p->lock);
	while (p->total < MIN(n, p->max_conns))
		start_open_locked(p)->abandoned = TRUE;
	g_mutex_unlock(&p->lock);
}

/* The caller's own (holders 1, joinable) when share is set. */
static ImapConn *
hand_out(ImapPool *p, ImapConn *c, gboolean share)
{
	if (share) {
		g_mutex_lock(&p->lock);
		set_holders_locked(p, c, 1);
		g_mutex_unlock(&p->lock);
	}
	return c;
}

static ImapConn *
acquire(ImapPool *p, const char *mailbox, gboolean share, ImapError **err)
{
	ImapConn *c = NULL;
	gboolean joined, stale;
	gint64 *since;

	g_mutex_lock(&p->lock);
	c = wait_idle_locked(p, mailbox, share, &joined, err);
	if (c == NULL || joined) {
		g_mutex_unlock(&p->lock);
		return c;
	}
	since = g_hash_table_lookup(p->idle_since, c);
	stale = since != NULL && g_get_monotonic_time() - *since > KEEPALIVE_US;
	g_hash_table_remove(p->idle_since, c);
	g_mutex_unlock(&p->lock);
	if (!stale || still_alive(c))
		return hand_out(p, c, share);
	/* Dropped while idle (server autologout, NAT timeout): the caller
	 * gets a new one instead of an error. */
	imap_conn_close(c);
	c = open_conn(p, err);
	if (c == NULL) {
		g_mutex_lock(&p->lock);
		p->total--;
		g_cond_broadcast(&p->cond);
		g_mutex_unlock(&p->lock);
		return NULL;
	}
	return hand_out(p, c, share);
}

ImapConn *
imap_pool_acquire(ImapPool *p, const char *mailbox, ImapError **err)
{
	return acquire(p, mailbox, FALSE, err);
}

ImapConn *
imap_pool_acquire_shared(ImapPool *p, const char *mailbox, ImapError **err)
{
	return acquire(p, mailbox, TRUE, err);
}

ImapConn *
imap_pool_connect(ImapPool *p, ImapError **err)
{
	return open_conn(p, err);
}

void
imap_pool_release(ImapPool *p, ImapConn *c)
{
	guint holders;

	if (c == NULL)
		return;
	g_mutex_lock(&p->lock);
	holders = holders_of_locked(p, c);
	if (holders > 0)
		set_holders_locked(p, c, holders - 1);
	if (holders > 1) {
		/* Still someone else's: the last reader returns it. */
		g_cond_broadcast(&p->cond);
		g_mutex_unlock(&p->lock);
		return;
	}
	if (!imap_conn_is_alive(c)) {
		p->total--;
		g_cond_broadcast(&p->cond);
		g_mutex_unlock(&p->lock);
		imap_conn_close(c);
		return;
	}
	add_idle_locked(p, c);
	g_cond_broadcast(&p->cond);
	g_mutex_unlock(&p->lock);
}

gboolean
imap_pool_has_cap(ImapPool *p, const char *cap)
{
	gboolean found = FALSE;

	g_mutex_lock(&p->lock);
	for (char **s = p->caps; s != NULL && *s != NULL && !found; s++)
		found = g_ascii_strcasecmp(*s, cap) == 0;
	g_mutex_unlock(&p->lock);
	return found;
}

void
imap_pool_drain(ImapPool *p)
{
	GPtrArray *idle;

	g_mutex_lock(&p->lock);
	idle = p->idle;
	p->idle = g_ptr_array_new();
	g_hash_table_remove_all(p->idle_since);
	p->total -= idle->len;
	g_cond_broadcast(&p->cond);
	g_mutex_unlock(&p->lock);
	close_all(idle);
	g_ptr_array_free(idle, TRUE);
}

void
imap_pool_counts(ImapPool *p, guint *open, guint *idle, guint *max)
{
	g_mutex_lock(&p->lock);
	*open = p->total;
	*idle = p->idle->len;
	*max = p->max_conns;
	g_mutex_unlock(&p->lock);
}
