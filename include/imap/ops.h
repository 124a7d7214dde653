/* ops.h - the IMAP operations the filesystem needs, each a blocking call on
 * an authenticated connection. Mailbox names are UTF-8 here; encoding to
 * modified UTF-7 (or UTF-8 with UTF8=ACCEPT) happens inside. Operations on
 * messages take the mailbox and lease it (see imap_conn_use_mailbox()). */
#ifndef IMAP_OPS_H
#define IMAP_OPS_H

#include <glib.h>
#include "imap/conn.h"
#include "imap/uidset.h"

/* CAPABILITY: refreshes the connection's capability list. */
ImapStatus imap_capability(ImapConn *c, ImapError **err);
/* ENABLE (RFC 5161) the listed extensions the server advertises; the others
 * are skipped. Afterwards imap_conn_is_enabled() tells which took. */
ImapStatus imap_enable(ImapConn *c, const char *const *exts, ImapError **err);
ImapStatus imap_noop(ImapConn *c, ImapError **err);
ImapStatus imap_logout(ImapConn *c, ImapError **err);

/* ---- LIST ---- */
enum {
	IMAP_MBOX_NOSELECT = 1 << 0,
	IMAP_MBOX_NOINFERIORS = 1 << 1,
	IMAP_MBOX_NONEXISTENT = 1 << 2,
	IMAP_MBOX_HASCHILDREN = 1 << 3,
	IMAP_MBOX_HASNOCHILDREN = 1 << 4,
	IMAP_MBOX_MARKED = 1 << 5,
	IMAP_MBOX_UNMARKED = 1 << 6,
	IMAP_MBOX_SUBSCRIBED = 1 << 7,
	IMAP_MBOX_ALL = 1 << 8, /* SPECIAL-USE (RFC 6154) from here */
	IMAP_MBOX_ARCHIVE = 1 << 9,
	IMAP_MBOX_DRAFTS = 1 << 10,
	IMAP_MBOX_FLAGGED = 1 << 11,
	IMAP_MBOX_JUNK = 1 << 12,
	IMAP_MBOX_SENT = 1 << 13,
	IMAP_MBOX_TRASH = 1 << 14,
	IMAP_MBOX_REMOTE = 1 << 15,
};

typedef struct {
	char *name;     /* UTF-8 (decoded from modified UTF-7 if needed) */
	char *raw_name; /* as the server sent it */
	char delimiter; /* 0 for NIL */
	guint attrs;    /* IMAP_MBOX_* */
} ImapMailbox;

/* LIST reference pattern. Returns ImapMailbox * (free with
 * imap_mailbox_free, set as the array's free func). A name that is not
 * valid modified UTF-7 is kept raw in name and logged. */
ImapStatus imap_list(ImapConn *c, const char *reference, const char *pattern,
                     GPtrArray **out, ImapError **err);
void imap_mailbox_free(ImapMailbox *m);

/* ---- STATUS ---- */
typedef struct {
	gboolean has_messages, has_uidnext, has_uidvalidity, has_unseen,
	    has_highestmodseq;
	guint32 messages, uidnext, uidvalidity, unseen;
	guint64 highestmodseq;
} ImapMailboxStatus;

/* Asks for MESSAGES UIDNEXT UIDVALIDITY UNSEEN (+ HIGHESTMODSEQ with
 * CONDSTORE); a NOOP first if the mailbox is selected on c. */
ImapStatus imap_status(ImapConn *c, const char *mailbox, ImapMailboxStatus *out,
                       ImapError **err);
/* STATUS of n mailboxes, pipelined: one round trip. results[i] is each
 * one's outcome (IMAP_ENO: no such mailbox); the return value is IMAP_OK
 * unless the connection failed (then with *err). Unlike imap_status(), no
 * NOOP: a mailbox selected on c may be counted from an old view, so leave
 * it out. */
ImapStatus imap_status_many(ImapConn *c, const char *const *mailboxes, guint n,
                            ImapMailboxStatus *out, ImapStatus *results,
                            ImapError **err);

/* ---- Mailbox management ---- */
ImapStatus imap_create(ImapConn *c, const char *mailbox, ImapError **err);
ImapStatus imap_delete(ImapConn *c, const char *mailbox, ImapError **err);
ImapStatus imap_rename(ImapConn *c, const char *from, const char *to,
                       ImapError **err);
ImapStatus imap_subscribe(ImapConn *c, const char *mailbox, ImapError **err);

/* ---- Message metadata ---- */
typedef struct {
	guint32 uid;
	guint32 seq;
	guint64 size;        /* RFC822.SIZE */
	gint64 internaldate; /* seconds since the epoch */
	char *flags;    /* space-separated, e.g. "\\Seen $Work"; "" if none */
	guint64 modseq; /* 0 if not sent */
	gboolean has_size, has_date, has_flags;
} ImapMessageMeta;

/* Called once per message; meta is valid only during the call. */
typedef void (*ImapMetaFn)(void *user, const ImapMessageMeta *meta);

/* UID FETCH uidset (UID RFC822.SIZE INTERNALDATE FLAGS [MODSEQ]) in one
 * command; with changedsince > 0, FLAGS (and MODSEQ) only, CHANGEDSINCE
 * (RFC 7162), and vanished adds VANISHED when QRESYNC is enabled. Only
 * responses for UIDs inside uidset reach fn. */
typedef struct {
	gboolean flags_only;
	guint64 changedsince;
	gboolean vanished;
	/* VANISHED (EARLIER) uid set text, when vanished is set. */
	void (*vanished_fn)(void *user, const char *uidset);
} ImapFetchMetaParams;

ImapStatus imap_uid_fetch_meta(ImapConn *c, const char *mailbox,
                               const char *uidset,
                               const ImapFetchMetaParams *params, ImapMetaFn fn,
                               void *user, ImapError **err);

/* ---- Message bodies ----
 * UID FETCH uid BODY.PEEK[]<offset.length> (never sets \Seen); length 0
 * means to the end. The bytes go to write() as they arrive; *total gets
 * how many arrived. A message that no longer exists is IMAP_ENO with code
 * IMAP_CODE_NONEXISTENT (also when the server answers OK with no data). */
ImapStatus imap_uid_fetch_body(ImapConn *c, const char *mailbox, guint32 uid,
                               guint64 offset, guint64 length,
                               gboolean (*write)(void *ctx, const char *data,
                                                 gsize len),
                               void *ctx, guint64 *total, ImapError **err);

/* Many whole bodies in one command (UID FETCH set (UID BODY.PEEK[])), for
 * prefetching: each message's bytes stream to the sink as they arrive
 * (implemented in fetch_bodies.c). begin() may return FALSE to have a
 * message's bytes discarded. */
typedef struct {
	gboolean (*begin)(void *ctx, guint32 uid, guint64 size);
	gboolean (*write)(void *ctx, guint32 uid, const char *data, gsize len);
	void (*end)(void *ctx, guint32 uid, gboolean ok);
	void *ctx;
} ImapBodySink;

ImapStatus imap_uid_fetch_bodies(ImapConn *c, const char *mailbox,
                                 const char *uidset, const ImapBodySink *sink,
                                 ImapError **err);

/* ---- SEARCH ---- */
/* One search key: atom is a trusted keyword ("ALL", "UNDELETED",
 * "HEADER", "UID"); args (0-2) are astrings built safely. */
typedef struct {
	const char *atom;
	const char *arg1;
	const char *arg2;
} ImapSearchKey;

/* UID SEARCH keys... (ESEARCH RETURN (ALL) when offered). *uids receives a
 * sorted GArray of guint32. */
ImapStatus imap_uid_search(ImapConn *c, const char *mailbox,
                           const ImapSearchKey *keys, gsize nkeys,
                           GArray **uids, ImapError **err);
/* Whether mailbox holds uid now (UID SEARCH UID uid). */
ImapStatus imap_uid_exists(ImapConn *c, const char *mailbox, guint32 uid,
                           gboolean *exists, ImapError **err);

/* ---- Changing messages ---- */
typedef enum {
	IMAP_STORE_ADD,    /* +FLAGS.SILENT */
	IMAP_STORE_REMOVE, /* -FLAGS.SILENT */
	IMAP_STORE_SET,    /* FLAGS.SILENT */
} ImapStoreMode;

/* flags: space-separated flag list, each a system flag or keyword atom. */
ImapStatus imap_uid_store(ImapConn *c, const char *mailbox, const char *uidset,
                          ImapStoreMode mode, const char *flags,
                          ImapError **err);

/* COPYUID (RFC 4315): where copied or moved messages landed. */
typedef struct {
	gboolean valid; /* FALSE if the server sent none */
	guint32 uidvalidity;
	GArray *src; /* ImapUidRange, as sent */
	GArray *dst;
} ImapCopyUid;

/* UID COPY / UID MOVE uidset to dest. MOVE requires the MOVE capability
 * (IMAP_EUNSUPPORTED otherwise). COPYUID is taken from the tagged OK or,
 * for MOVE, from the untagged OK that precedes the expunges. */
ImapStatus imap_uid_copy(ImapConn *c, const char *mailbox, const char *uidset,
                         const char *dest, ImapCopyUid *out, ImapError **err);
ImapStatus imap_uid_move(ImapConn *c, const char *mailbox, const char *uidset,
                         const char *dest, ImapCopyUid *out, ImapError **err);
/* The destination UID that src_uid was copied to, or 0. */
guint32 imap_copyuid_lookup(const ImapCopyUid *cu, guint32 src_uid);
void imap_copyuid_clear(ImapCopyUid *cu);

/* UID EXPUNGE (RFC 4315): only the given UIDs. IMAP_EUNSUPPORTED without
 * UIDPLUS - there is deliberately no plain EXPUNGE here. */
ImapStatus imap_uid_expunge(ImapConn *c, const char *mailbox,
                            const char *uidset, ImapError **err);

/* Removes exactly one message. With UIDPLUS: UID STORE +\Deleted, then
 * UID EXPUNGE uid. Without it, plain EXPUNGE would also remove messages
 * that another client marked \Deleted, so those are unmarked first and
 * marked again afterwards (implemented in expunge.c). */
ImapStatus imap_expunge_uid(ImapConn *c, const char *mailbox, guint32 uid,
                            ImapError **err);

/* ---- APPEND ---- */
typedef struct {
	gboolean valid; /* APPENDUID received */
	guint32 uidvalidity;
	guint32 uid;
} ImapAppendUid;

/* APPEND mailbox [(flags)] [date] literal. flags may be NULL; date <= 0
 * means none (the server uses now). */
ImapStatus imap_append(ImapConn *c, const char *mailbox, const char *flags,
                       gint64 date, GBytes *message, ImapAppendUid *out,
                       ImapError **err);

/* ---- QUOTA (RFC 2087 / 9208) ---- */
typedef struct {
	char *root;
	gboolean has_storage;
	guint64 storage_used_kb, storage_limit_kb;
	gboolean has_messages;
	guint64 messages_used, messages_limit;
} ImapQuota;

/* GETQUOTAROOT mailbox: the first root that has resources. IMAP_EUNSUPPORTED
 * without QUOTA. */
ImapStatus imap_getquotaroot(ImapConn *c, const char *mailbox, ImapQuota *out,
                             ImapError **err);
void imap_quota_clear(ImapQuota *q);

#endif
