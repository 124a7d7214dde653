/* nodes.h - inode numbers for the kernel, and the paths they stand for.
 *
 * The kernel names every file it knows by an inode number and counts the
 * lookups that told it about one; the daemon turns a number back into a
 * path for the operations (ops_*.c). A message's number is computed, not
 * stored: FS_NODE_MESSAGE_BIT, its directory's number, its UID. So a
 * listing of 100,000 messages costs no memory here; only directories,
 * other files (uploads) and messages renamed while the kernel knew them
 * get a node. Pure data structure, thread-safe: no FUSE, no I/O. */
#ifndef FS_NODES_H
#define FS_NODES_H

#include <glib.h>

#define FS_NODE_ROOT        1
#define FS_NODE_MESSAGE_BIT (G_GUINT64_CONSTANT(1) << 63)

typedef struct FsNodes FsNodes;

FsNodes *fs_nodes_new(void);
void fs_nodes_free(FsNodes *t);

/* The inode of name in directory parent, which the kernel is now told of
 * once more. is_file: a regular file (a file named like a message below
 * the top level gets a computed number unless a node holds the name).
 * 0 when parent is unknown or no number is left. */
guint64 fs_nodes_ref(FsNodes *t, guint64 parent, const char *name,
                     gboolean is_file);
/* Like fs_nodes_ref, but always a node (a file being created). */
guint64 fs_nodes_ref_node(FsNodes *t, guint64 parent, const char *name);
/* The kernel dropped n lookups of ino; a node is freed at zero. */
void fs_nodes_forget(FsNodes *t, guint64 ino, guint64 n);

/* Path of ino ("/" for the root), with "/child" appended when child is not
 * NULL. 0, -ESTALE for an unknown number, -ENAMETOOLONG. */
int fs_nodes_path(FsNodes *t, guint64 ino, const char *child, char **path);

/* After a successful rename or removal: the name now refers to the moved
 * file, or to nothing. */
void fs_nodes_renamed(FsNodes *t, guint64 parent, const char *name,
                      guint64 new_parent, const char *new_name);
void fs_nodes_removed(FsNodes *t, guint64 parent, const char *name);
/* A moved file's number left standing for a name that names another
 * message (a move onto a taken name): pages the kernel caches for it may
 * be the moved message's, read through a handle opened before the move,
 * so the name's message is read past them. */
void fs_nodes_mark_stand_in(FsNodes *t, guint64 ino);
gboolean fs_nodes_is_stand_in(FsNodes *t, guint64 ino);

/* The number the kernel would know for an absolute path, without counting
 * a lookup; 0 when no directory on the way has a node (the kernel then
 * knows nothing below it). */
guint64 fs_nodes_find(FsNodes *t, const char *path);

/* The number name in parent has now, if any (0), without counting a
 * lookup or making a node. */
guint64 fs_nodes_peek(FsNodes *t, guint64 parent, const char *name);

/* Nodes held (the root included). */
guint fs_nodes_count(FsNodes *t);

#endif
