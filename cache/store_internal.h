/* store_internal.h - state shared by the files of the cache layer
 * (store.c, resync.c, body.c, watch.c); not for fs/. */
#ifndef CACHE_STORE_INTERNAL_H
#define CACHE_STORE_INTERNAL_H

#include "cache/bodies.h"
#include "cache/disk.h"
#include "cache/store.h"

/* A name our own move or upload gave a message (mv a/12.eml b/ makes
 * b/12.eml mean the new UID). It bridges the moment until the listing
 * shows the real UID, and then expires: kept longer, a name could come to
 * mean another message. Real UIDs always win over aliases. */
typedef struct {
	guint32 uid;
	gint64 at; /* monotonic us */
} StoreAlias;

#define ALIAS_TTL_US (10 * G_USEC_PER_SEC)

typedef struct {
	char *name;
	GMutex refresh; /* one refresh of this mailbox at a time */
	StoreListing *listing;
	guint32 uidnext;       /* as of the listing */
	guint64 highestmodseq; /* as of the listing; 0 unknown */
	gboolean loaded;       /* the disk cache was consulted */
	gint64 fetched_at;     /* monotonic us; 0: stale */
	GHashTable *aliases;   /* name -> StoreAlias * */
	gint64 synced_at;      /* wall clock us of the last resync; 0: none */
	const char *synced_by; /* static: "qresync", "full", ... (warm.c) */
} MailboxState;

struct MailStore {
	ImapPool *pool; /* NULL when offline */
	gint64 ttl_us;
	char *trash;
	gboolean read_only;
	gboolean offline;
	gboolean watch_enabled;
	gboolean reconnect;    /* retry after lost connections */
	gint stopping;         /* atomic: store_free() began; no retries */
	gint64 unreachable_at; /* last failed connect (monotonic us); lock */
	gint64 down_since;     /* wall clock us of the first of them; lock */
	gint64 retrying_at;    /* monotonic us of a pending retry; lock */
	guint64 cache_limit;   /* -o cache_size in bytes; 0: unbounded */
	StoreCacheMode cache_mode;
	DiskCache *disk;   /* NULL: nothing persists */
	BodyCache *bodies; /* NULL: bodies are not kept */
	StoreChangeFn change_fn;
	void *change_user;

	GMutex lock;          /* below, and MailboxState fields but refresh */
	GPtrArray *mailboxes; /* ImapMailbox * from LIST */
	gint64 listed_at;
	char delimiter;
	GHashTable *states; /* name -> MailboxState * */
	char *last_listed;  /* mailbox most recently listed (watch.c) */
	gint64 quota_at;
	guint64 quota_used_kb, quota_limit_kb;
	gboolean quota_known;
	GMutex list_refresh;
	struct StoreWatch *watch;
	struct StorePrefetch *prefetch; /* NULL without a body cache */
	struct StoreCtl *ctl;           /* warm.c: status, prefetch jobs */
};

typedef ImapStatus (*ConnFn)(ImapConn *c, void *data, ImapError **err);

StoreListing *listing_new(guint32 uidvalidity, guint reserve);
StoreListing *listing_writable(StoreListing **slot);
gint find_index(const StoreListing *l, guint32 uid, gboolean *found);
MailboxState *state_get(MailStore *s, const char *name);
gboolean fresh(MailStore *s, gint64 at);
/* First use of a mailbox this session: its listing from the disk cache
 * (call with st->refresh held). */
void load_from_disk(MailStore *s, MailboxState *st);
gboolean connection_lost(ImapStatus st);
void forget_listing(MailStore *s, const char *name);
/* Leases mailbox on c if its UIDVALIDITY is still uidvalidity (0: any):
 * a UID listed under one names another message, or none, under another.
 * Otherwise fails with IMAP_CODE_NONEXISTENT (ENOENT), leasing nothing.
 * Release the lease after the command. */
ImapStatus use_listed_mailbox(ImapConn *c, const char *mailbox,
                              guint32 uidvalidity, ImapError **err);
/* Tells whether a change the connection died during took effect:
 * *done TRUE if so (results filled in data), FALSE if it may be redone. */
typedef ImapStatus (*VerifyFn)(ImapConn *c, void *data, gboolean *done,
                               ImapError **err);

/* retry.c: runs fn on a pooled connection; idempotent work is rerun on a
 * new connection when one dies under it (with backoff). */
ImapStatus with_conn(MailStore *s, const char *mailbox, gboolean idempotent,
                     ConnFn fn, void *data, ImapError **err);
/* with_conn for idempotent reads of a body (UID FETCH BODY[] only): may
 * share a connection with other such readers when the pool is full. */
ImapStatus with_reader_conn(MailStore *s, const char *mailbox, ConnFn fn,
                            void *data, ImapError **err);
/* For changes: after a lost connection, verify decides between "done" and
 * running fn again. */
ImapStatus with_conn_checked(MailStore *s, const char *mailbox, ConnFn fn,
                             VerifyFn verify, void *data, ImapError **err);

/* store.c helpers used by changes.c */
void forget_mailbox_list(MailStore *s);
gboolean name_equal(const char *a, const char *b);
void update_message(MailStore *s, const char *mailbox, guint32 uid,
                    void (*fn)(StoreMessage *m, gconstpointer arg),
                    gconstpointer arg);
void store_set_flags_fn(StoreMessage *m, gconstpointer flags);
void remove_message(MailStore *s, const char *mailbox, guint32 uid);
/* Adds a message we created so it lists at once; alias then resolves to
 * it. Without a UID the listing is refetched instead. */
void insert_message(MailStore *s, const char *mailbox, guint32 uidvalidity,
                    const StoreMessage *m, const char *alias);

/* Records the true size of a body once a reader saw its end. */
void store_note_size(MailStore *s, const char *mailbox, guint32 uid,
                     guint64 real_size);

/* resync.c: brings st's listing up to date with the server, at a cost
 * proportional to what changed when a listing is already known. Called
 * with st->refresh held. */
ImapStatus resync_mailbox(MailStore *s, MailboxState *st, ImapError **err);

/* prefetch.c: following sequential scans (see there). */
struct StorePrefetch *prefetch_start(MailStore *s);
void prefetch_stop(struct StorePrefetch *p);
void prefetch_note_open(struct StorePrefetch *p, const char *mailbox,
                        StoreListing *l, guint32 uid);
/* TRUE if uid of mailbox is queued or being fetched. */
gboolean prefetch_pending(struct StorePrefetch *p, const char *mailbox,
                          guint32 uid);
/* Waits until it is not; FALSE on timeout. */
gboolean prefetch_wait(struct StorePrefetch *p, const char *mailbox,
                       guint32 uid, gint64 timeout_us);

/* watch.c */
struct StoreWatch *watch_start(MailStore *s);
void watch_stop(struct StoreWatch *w);
void watch_note_listed(struct StoreWatch *w);
/* What watcher slot (0: INBOX, 1: last listed) does now: *mailbox (newly
 * allocated, NULL if none) and a static word ("idle", "polling",
 * "connecting", "waiting", "stopped"). */
void watch_describe(struct StoreWatch *w, int slot, char **mailbox,
                    const char **state);

/* warm.c: ends prefetch jobs (store_free). */
void warm_free(MailStore *s);

#endif
