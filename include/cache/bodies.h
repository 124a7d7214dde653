/* bodies.h - message bodies on disk, keyed by (mailbox, UIDVALIDITY, UID):
 * such a body never changes, so it is never revalidated. The total size
 * is bounded; least recently used bodies go first, but never one that is
 * open (pinned). */
#ifndef CACHE_BODIES_H
#define CACHE_BODIES_H

#include <glib.h>

typedef struct BodyCache BodyCache;

/* dir is created 0700; files are 0600. limit_bytes 0 means unbounded.
 * Existing files are indexed (their mtime serves as last use). */
BodyCache *body_cache_open(const char *dir, guint64 limit_bytes, GError **err);
void body_cache_close(BodyCache *bc);

/* Opens a cached body for reading and pins it; returns an fd (close it
 * with body_cache_release) or -1 if not cached. *size gets its length. */
int body_cache_open_body(BodyCache *bc, const char *mailbox,
                         guint32 uidvalidity, guint32 uid, guint64 *size);
/* TRUE if the body is cached (it may still be evicted any time). */
gboolean body_cache_has(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
                        guint32 uid);
/* TRUE if the body is cached, with *size its length; counts as a use
 * (eviction goes by last use) but opens nothing and pins nothing: a
 * reader that needs the bytes opens them when it reads. */
gboolean body_cache_use(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
                        guint32 uid, guint64 *size);
void body_cache_release(BodyCache *bc, const char *mailbox, guint32 uidvalidity,
                        guint32 uid, int fd);

/* Writing: a body arrives in order; nothing is visible until commit. */
typedef struct BodyWriter BodyWriter;
BodyWriter *body_cache_begin(BodyCache *bc, const char *mailbox,
                             guint32 uidvalidity, guint32 uid);
gboolean body_writer_append(BodyWriter *w, const char *data, gsize len);
/* Publishes the body (temp file + rename) and evicts to stay under the
 * limit; returns FALSE if it could not be stored. Frees w either way. */
gboolean body_writer_commit(BodyWriter *w);
void body_writer_abort(BodyWriter *w);

/* Drops every body of mailbox (all UIDVALIDITYs but keep_uidvalidity;
 * 0 drops all). */
void body_cache_forget_mailbox(BodyCache *bc, const char *mailbox,
                               guint32 keep_uidvalidity);
guint64 body_cache_size(BodyCache *bc);
guint body_cache_count(BodyCache *bc);

#endif
