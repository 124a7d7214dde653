/* disk.h - the persistent metadata cache: one directory per account, one
 * file per mailbox holding its listing, and one for the mailbox list. Files
 * are written atomically (temp file, fsync, rename), carry a version and a
 * CRC-32, and anything torn, truncated or corrupt reads as "no cache". */
#ifndef CACHE_DISK_H
#define CACHE_DISK_H

#include <glib.h>
#include "cache/store.h"

typedef struct DiskCache DiskCache;

/* Opens (creating, mode 0700) dir and takes an exclusive lock on it so two
 * mounts of one account never write the same files. Returns NULL with
 * *err set if the directory cannot be made or is locked by another
 * process (the caller then runs without a persistent cache). */
DiskCache *disk_cache_open(const char *dir, GError **err);
void disk_cache_close(DiskCache *dc);
const char *disk_cache_dir(const DiskCache *dc);

/* The default directory: $XDG_CACHE_HOME/imapfs/<user>@<host>:<port>
 * (user and host made safe for a file name). */
char *disk_cache_default_dir(const char *user, const char *host, guint16 port);

/* A mailbox's saved state. */
typedef struct {
	guint32 uidvalidity;
	guint32 uidnext;
	guint64 highestmodseq; /* 0: unknown (no CONDSTORE) */
	StoreListing *listing; /* owned reference */
} DiskMailbox;

/* Saves atomically; the listing's flags strings are stored by value. */
gboolean disk_cache_save_mailbox(DiskCache *dc, const char *mailbox,
                                 const DiskMailbox *m, GError **err);
/* Loads; FALSE (and *err set to say why, e.g. "bad checksum") when there
 * is no usable file - a damaged file is also deleted so it is rebuilt. */
gboolean disk_cache_load_mailbox(DiskCache *dc, const char *mailbox,
                                 DiskMailbox *out, GError **err);
void disk_cache_forget_mailbox(DiskCache *dc, const char *mailbox);
void disk_mailbox_clear(DiskMailbox *m);

/* The mailbox list: ImapMailbox * (name, delimiter, attrs; raw_name may
 * be NULL after loading). */
gboolean disk_cache_save_list(DiskCache *dc, GPtrArray *mailboxes,
                              GError **err);
gboolean disk_cache_load_list(DiskCache *dc, GPtrArray **out, GError **err);

/* The file a mailbox's state lives in (exported for tests that corrupt
 * it on purpose). */
char *disk_cache_mailbox_path(DiskCache *dc, const char *mailbox);

/* A file name for mailbox made only of [0-9a-z-], unique per name (hex of
 * the UTF-8 bytes, or their SHA-256 when long); bodies.c uses it too. */
char *disk_cache_safe_name(const char *mailbox);

#endif
