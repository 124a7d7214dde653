/* handles.h - file handles for files the kernel opened without asking.
 *
 * With FUSE's no_open the kernel opens a file itself and sends no OPEN
 * and no RELEASE: a warm `grep -r` then costs no request per file. Its
 * reads come without a handle, so the daemon makes one at the first read
 * of an inode and keeps the most recently used ones here, by inode
 * number. A handle in use (got, not yet put) is never closed. Pure data
 * structure, thread-safe: no FUSE, no I/O of its own. */
#ifndef FS_HANDLES_H
#define FS_HANDLES_H

#include <glib.h>

typedef struct FsHandles FsHandles;

/* A handle got within this many gets (of any inode) stays past max_bytes:
 * readers going back and forth between big files would otherwise reopen
 * them at every read. */
#define FS_HANDLES_RECENT_USES 16

/* Opens inode ino: 0 with *fh and *bytes (the file's size) set, or a
 * negative errno. */
typedef int (*FsHandleOpenFn)(guint64 ino, guint64 *fh, guint64 *bytes,
                              void *user);
typedef void (*FsHandleReleaseFn)(guint64 fh, void *user);

/* Keeps up to max handles, of files of up to max_bytes together; one in
 * use is never released, whatever the count or the bytes. The byte bound
 * matters because a kept handle holds its body in the body cache, where
 * eviction must leave it. */
FsHandles *fs_handles_new(guint max, guint64 max_bytes, FsHandleOpenFn open_fn,
                          FsHandleReleaseFn release_fn, void *user);
/* Releases every handle; none may be in use. */
void fs_handles_free(FsHandles *h);

/* One hold on a handle. */
typedef struct FsHandleHold FsHandleHold;

/* The handle of ino, opened if there is none, held until
 * fs_handles_put(*hold): 0, or open_fn's negative errno. */
int fs_handles_get(FsHandles *h, guint64 ino, guint64 *fh, FsHandleHold **hold);
void fs_handles_put(FsHandles *h, FsHandleHold *hold);
/* Forgets ino's handle (its file changed or is gone): the next get
 * opens anew; a handle in use is released when put. */
void fs_handles_drop(FsHandles *h, guint64 ino);

/* Handles kept, in use or not. */
guint fs_handles_count(FsHandles *h);

#endif
