/* pool.c - a bounded set of authenticated connections to one account. */
#include "imap/pool.h"

#include <string.h>
#include <sys/mman.h>

struct ImapPool {
	ImapConnectOptions opts;
	ImapCredentials cred;
	char *secret;
	gsize secret_len;
	guint max_conns;
	ImapPoolSetupFn setup;
	void *setup_user;

	GMutex lock;
	GCond cond;
	GPtrArray *idle;        /* ImapConn * not handed out */
	GHashTable *idle_since; /* ImapConn * -> monotonic us, as gint64 * */
	guint total;            /* idle + handed out + being opened */
	char **caps;
};

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
	p->cred.secret = p->secret;
	p->max_conns = max_conns > 0 ? max_conns : 1;
	p->setup = setup;
	p->setup_user = setup_user;
	g_mutex_init(&p->lock);
	g_cond_init(&p->cond);
	p->idle = g_ptr_array_new();
	p->idle_since = g_hash_table_new_full(NULL, NULL, NULL, g_free);
	return p;
}

void
imap_pool_free(ImapPool *p)
{
	if (p == NULL)
		return;
	imap_pool_drain(p);
	g_ptr_array_free(p->idle, TRUE);
	g_hash_table_destroy(p->idle_since);
	g_mutex_clear(&p->lock);
	g_cond_clear(&p->cond);
	explicit_bzero(p->secret, p->secret_len);
	munlock(p->secret, p->secret_len);
	g_free(p->secret);
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

static ImapConn *
open_conn(ImapPool *p, ImapError **err)
{
	ImapConn *c = imap_conn_connect(&p->opts, err);
	char **caps;

	if (c == NULL)
		return NULL;
	if (imap_conn_login(c, &p->cred, err) != IMAP_OK ||
	    (p->setup != NULL && p->setup(c, p->setup_user, err) != IMAP_OK)) {
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

ImapConn *
imap_pool_acquire(ImapPool *p, const char *mailbox, ImapError **err)
{
	ImapConn *c = NULL;
	GPtrArray *dead;

	g_mutex_lock(&p->lock);
	for (;;) {
		dead = reap_dead_locked(p);
		if (dead->len > 0) {
			g_mutex_unlock(&p->lock);
			close_all(dead);
			g_mutex_lock(&p->lock);
		}
		g_ptr_array_free(dead, TRUE);
		c = take_idle_locked(p, mailbox);
		if (c != NULL || p->total < p->max_conns)
			break;
		g_cond_wait(&p->cond, &p->lock);
	}
	if (c != NULL) {
		gint64 *since = g_hash_table_lookup(p->idle_since, c);
		gboolean stale = since != NULL &&
		                 g_get_monotonic_time() - *since > KEEPALIVE_US;
		g_hash_table_remove(p->idle_since, c);
		g_mutex_unlock(&p->lock);
		if (!stale || still_alive(c))
			return c;
		/* Dropped while idle (server autologout, NAT timeout): the
		 * caller gets a new one instead of an error. */
		imap_conn_close(c);
		g_mutex_lock(&p->lock);
		p->total--;
		c = NULL;
	}
	p->total++;
	g_mutex_unlock(&p->lock);

	c = open_conn(p, err);
	if (c == NULL) {
		g_mutex_lock(&p->lock);
		p->total--;
		g_cond_signal(&p->cond);
		g_mutex_unlock(&p->lock);
	}
	return c;
}

ImapConn *
imap_pool_connect(ImapPool *p, ImapError **err)
{
	return open_conn(p, err);
}

void
imap_pool_release(ImapPool *p, ImapConn *c)
{
	if (c == NULL)
		return;
	if (!imap_conn_is_alive(c)) {
		imap_conn_close(c);
		g_mutex_lock(&p->lock);
		p->total--;
		g_cond_signal(&p->cond);
		g_mutex_unlock(&p->lock);
		return;
	}
	g_mutex_lock(&p->lock);
	{
		gint64 *since = g_new(gint64, 1);
		*since = g_get_monotonic_time();
		g_hash_table_replace(p->idle_since, c, since);
	}
	g_ptr_array_add(p->idle, c);
	g_cond_signal(&p->cond);
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
