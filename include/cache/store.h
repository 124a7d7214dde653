/* store.h - the account as the filesystem sees it: the mailbox tree and
 * each mailbox's messages, kept in memory and refreshed from the server
 * (cheaply, by UIDVALIDITY/UIDNEXT), and every change to the account, so
 * that what was just changed shows at once. Talks to the server only
 * through imap/ (pool and ops); knows nothing of paths or FUSE. */
#ifndef CACHE_STORE_H
#define CACHE_STORE_H

#include <glib.h>
#include "imap/ops.h"
#include "imap/pool.h"

typedef struct MailStore MailStore;

/* What is kept on disk (rclone-style): nothing, listings only, or
 * listings and every body read. */
typedef enum {
	STORE_CACHE_NONE,
	STORE_CACHE_METADATA,
	STORE_CACHE_FULL,
} StoreCacheMode;

/* Told when the server changed a mailbox behind our back (IDLE, resync):
 * removed lists the UIDs that vanished (n_removed may be 0). */
typedef void (*StoreChangeFn)(void *user, const char *mailbox,
                              const guint32 *removed, guint n_removed);

typedef struct {
	ImapPool *pool;            /* NULL: offline, cache only */
	guint dir_cache_timeout_s; /* listings older than this are refreshed */
	const char *trash;         /* rm moves here; NULL: expunge */
	gboolean read_only;
	StoreCacheMode cache_mode;
	const char *cache_dir; /* NULL: nothing on disk */
	guint64 cache_size;    /* bytes of bodies kept; 0: unbounded */
	gboolean watch;        /* IDLE (or poll) for changes */
	gboolean no_reconnect; /* fail at once when a connection dies */
	StoreChangeFn change_fn;
	void *change_user;
} MailStoreOptions;

/* One message's metadata. flags is an interned string (never freed). */
typedef struct {
	guint32 uid;
	gboolean size_verified; /* size came from reading the whole body */
	guint64 size;
	gint64 internaldate;
	guint64 modseq;
	const char *flags;
} StoreMessage;

/* An immutable snapshot of one mailbox's messages, sorted by UID. */
typedef struct {
	gint ref;
	guint32 uidvalidity;
	GArray *msgs; /* StoreMessage */
} StoreListing;

StoreListing *store_listing_ref(StoreListing *l);
void store_listing_unref(StoreListing *l);
const StoreMessage *store_listing_find(const StoreListing *l, guint32 uid);

typedef struct {
	char *name;       /* full UTF-8 mailbox name */
	guint attrs;      /* IMAP_MBOX_* */
	gboolean implied; /* not listed, but has listed children */
} StoreMailbox;

MailStore *store_new(const MailStoreOptions *opts);
void store_free(MailStore *s);

/* Hierarchy delimiter of the account (0 = flat). Valid after the first
 * successful store_mailboxes(). */
char store_delimiter(MailStore *s);

/* Children of parent (NULL: top level) as StoreMailbox * (owned by the
 * array). Mailboxes that are only implied by deeper names are included. */
ImapStatus store_children(MailStore *s, const char *parent, GPtrArray **out,
                          ImapError **err);
/* Looks one mailbox up (including implied ones). */
ImapStatus store_mailbox(MailStore *s, const char *name, StoreMailbox *out,
                         ImapError **err);
void store_mailbox_clear(StoreMailbox *m);

/* The messages of a selectable mailbox, refreshed if older than the
 * timeout (or if force). */
ImapStatus store_messages(MailStore *s, const char *mailbox, gboolean force,
                          StoreListing **out, ImapError **err);
/* One message by UID, or by a name the filesystem gave it during this
 * session (the destination of a move or an upload). alias may be NULL. */
ImapStatus store_message(MailStore *s, const char *mailbox, guint32 uid,
                         const char *alias, StoreMessage *out, ImapError **err);

/* An open message body. Bodies in the body cache are read from disk;
 * others are fetched in windows (BODY.PEEK[]<off.len>, never setting
 * \Seen) that grow while reading is sequential, and a body read from the
 * start to its end is stored in the body cache. */
typedef struct StoreBody StoreBody;

/* Opens without fetching anything. */
StoreBody *store_body_open(MailStore *s, const char *mailbox, guint32 uid,
                           ImapError **err);
/* Reads up to len bytes at offset; *got < len means the body ended. */
ImapStatus store_body_read(StoreBody *b, guint64 offset, guint64 len, char *buf,
                           guint64 *got, ImapError **err);
/* TRUE when the exact size is known (body cached, or a read saw the
 * end, or the size was verified before). */
gboolean store_body_exact_size(StoreBody *b, guint64 *size);
/* "mailbox UID n", for log lines. */
char *store_body_describe(StoreBody *b);
void store_body_close(StoreBody *b);

/* Asks the server, in one round trip, whether the cached listings due
 * for a refresh changed; those that did not count as fresh again, so
 * opening them next costs nothing (rsync's walk of a whole account).
 * Best effort: errors only leave them due. */
void store_check_listings(MailStore *s);

/* Starts watching for changes by other clients (IDLE, or polling where
 * the server has no IDLE). Call after any fork. */
void store_start_watch(MailStore *s);

/* Deletes exactly this message (UID EXPUNGE; without UIDPLUS see
 * store.c), or moves it to the trash mailbox if one is configured. */
ImapStatus store_delete_message(MailStore *s, const char *mailbox, guint32 uid,
                                ImapError **err);
/* Moves a message; *new_uid gets its UID in dest (0 if unknown). alias,
 * if not NULL, is a name that must resolve to it in dest from now on. */
ImapStatus store_move_message(MailStore *s, const char *mailbox, guint32 uid,
                              const char *dest, const char *alias,
                              guint32 *new_uid, ImapError **err);
/* What the first attempt at an upload saw of its mailbox: kept by the
 * caller across attempts, so a later retry can tell a copy that its own
 * earlier attempt left from messages that were there before. */
typedef struct StoreAppendBaseline StoreAppendBaseline;
void store_append_baseline_free(StoreAppendBaseline *b);

/* Uploads a message; *new_uid as above. flags may be NULL; date <= 0:
 * now. baseline may be NULL (a single attempt); else *baseline is filled
 * on the first attempt and must be passed back on later ones.
 * check_first: an earlier attempt failed with an unknown outcome, so look
 * for the message (new since *baseline) before sending it again. */
ImapStatus store_append(MailStore *s, const char *mailbox, GBytes *message,
                        const char *flags, gint64 date, const char *alias,
                        gboolean check_first, StoreAppendBaseline **baseline,
                        guint32 *new_uid, ImapError **err);
/* Replaces the flags of a message (space-separated). */
ImapStatus store_set_flags(MailStore *s, const char *mailbox, guint32 uid,
                           const char *flags, ImapError **err);

ImapStatus store_create_mailbox(MailStore *s, const char *name,
                                ImapError **err);
/* Refuses (IMAP_ENO with code IMAP_CODE_INUSE... see store.c) a mailbox
 * that holds messages or children: the caller maps that to ENOTEMPTY. */
ImapStatus store_delete_mailbox(MailStore *s, const char *name,
                                gboolean *not_empty, ImapError **err);
ImapStatus store_rename_mailbox(MailStore *s, const char *from, const char *to,
                                ImapError **err);

/* STORAGE quota of INBOX's root in KiB; IMAP_EUNSUPPORTED without QUOTA. */
ImapStatus store_quota(MailStore *s, guint64 *used_kb, guint64 *limit_kb,
                       ImapError **err);

/* Drops every cached listing so the next look refreshes (SIGHUP). */
void store_invalidate(MailStore *s);

#endif
