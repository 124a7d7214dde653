/* nodes.c - the inode table behind the daemon's low-level FUSE front end
 * (see include/fs/nodes.h for why messages have computed numbers). */
#include <errno.h>
#include <string.h>

#include "fs/nodes.h"
#include "fs/path.h"

/* A directory's number must fit the 31 bits a message number keeps for
 * it (bit 63 marks a message, bits 0-31 are the UID). */
#define DIR_INO_MAX G_GUINT64_CONSTANT(0x7fffffff)
/* Deeper than any path of FS_PATH_MAX bytes: a loop in the table. */
#define DEPTH_MAX (FS_PATH_MAX / 2)

typedef struct {
	guint64 ino;
	guint64 parent;
	char *name;
	guint64 nlookup;
	gboolean hashed;   /* in by_name: the name still refers to it */
	gboolean pinned;   /* a renamed message: its count is not known */
	gboolean stand_in; /* see fs_nodes_mark_stand_in() */
} Node;

struct FsNodes {
	GMutex lock;
	GHashTable *by_ino;  /* &ino -> Node */
	GHashTable *by_name; /* Node (parent, name) -> same Node */
	guint64 next_ino;
};

static guint
name_hash(gconstpointer p)
{
	const Node *n = p;

	return g_str_hash(n->name) ^ (guint)(n->parent * 2654435761u);
}

static gboolean
name_equal(gconstpointer a, gconstpointer b)
{
	const Node *x = a, *y = b;

	return x->parent == y->parent && strcmp(x->name, y->name) == 0;
}

static void
node_free(Node *n)
{
	g_free(n->name);
	g_free(n);
}

static Node *
node_add(FsNodes *t, guint64 ino, guint64 parent, const char *name)
{
	Node *n = g_new0(Node, 1);

	n->ino = ino;
	n->parent = parent;
	n->name = g_strdup(name);
	g_hash_table_insert(t->by_ino, &n->ino, n);
	if (parent != 0) {
		Node *old = g_hash_table_lookup(t->by_name, n);
		if (old != NULL)
			old->hashed = FALSE;
		g_hash_table_replace(t->by_name, n, n);
		n->hashed = TRUE;
	}
	return n;
}

static void
node_unhash(FsNodes *t, Node *n)
{
	if (!n->hashed)
		return;
	g_hash_table_remove(t->by_name, n);
	n->hashed = FALSE;
}

FsNodes *
fs_nodes_new(void)
{
	FsNodes *t = g_new0(FsNodes, 1);
	Node *root;

	g_mutex_init(&t->lock);
	t->by_ino = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL,
	                                  (GDestroyNotify)node_free);
	t->by_name = g_hash_table_new(name_hash, name_equal);
	root = node_add(t, FS_NODE_ROOT, 0, "");
	root->pinned = TRUE;
	t->next_ino = FS_NODE_ROOT + 1;
	return t;
}

void
fs_nodes_free(FsNodes *t)
{
	if (t == NULL)
		return;
	g_hash_table_destroy(t->by_name);
	g_hash_table_destroy(t->by_ino);
	g_mutex_clear(&t->lock);
	g_free(t);
}

static Node *
find_ino(FsNodes *t, guint64 ino)
{
	return g_hash_table_lookup(t->by_ino, &ino);
}

static Node *
find_name(FsNodes *t, guint64 parent, const char *name)
{
	Node key = {.parent = parent, .name = (char *)name};

	return g_hash_table_lookup(t->by_name, &key);
}

/* The computed number of a message file, or 0 when name is not one. */
static guint64
message_ino(guint64 parent, const char *name)
{
	guint32 uid;

	if (parent == FS_NODE_ROOT || parent > DIR_INO_MAX ||
	    !fs_message_name_parse(name, &uid))
		return 0;
	return FS_NODE_MESSAGE_BIT | (parent << 32) | uid;
}

static gboolean
known_dir(FsNodes *t, guint64 ino)
{
	return (ino & FS_NODE_MESSAGE_BIT) == 0 && find_ino(t, ino) != NULL;
}

static guint64
ref_locked(FsNodes *t, guint64 parent, const char *name, gboolean is_file,
           gboolean want_node)
{
	Node *n = find_name(t, parent, name);
	guint64 ino;

	if (n != NULL) {
		n->nlookup++;
		return n->ino;
	}
	if (!known_dir(t, parent))
		return 0;
	ino = is_file && !want_node ? message_ino(parent, name) : 0;
	/* Taken by a message renamed away from here: this is another. */
	if (ino != 0 && find_ino(t, ino) == NULL)
		return ino;
	if (t->next_ino > DIR_INO_MAX)
		return 0;
	n = node_add(t, t->next_ino++, parent, name);
	n->nlookup = 1;
	return n->ino;
}

guint64
fs_nodes_ref(FsNodes *t, guint64 parent, const char *name, gboolean is_file)
{
	guint64 ino;

	g_mutex_lock(&t->lock);
	ino = ref_locked(t, parent, name, is_file, FALSE);
	g_mutex_unlock(&t->lock);
	return ino;
}

guint64
fs_nodes_ref_node(FsNodes *t, guint64 parent, const char *name)
{
	guint64 ino;

	g_mutex_lock(&t->lock);
	ino = ref_locked(t, parent, name, TRUE, TRUE);
	g_mutex_unlock(&t->lock);
	return ino;
}

void
fs_nodes_forget(FsNodes *t, guint64 ino, guint64 n)
{
	Node *node;

	g_mutex_lock(&t->lock);
	node = find_ino(t, ino);
	if (node != NULL && !node->pinned) {
		node->nlookup = node->nlookup > n ? node->nlookup - n : 0;
		if (node->nlookup == 0) {
			node_unhash(t, node);
			g_hash_table_remove(t->by_ino, &ino);
		}
	}
	g_mutex_unlock(&t->lock);
}

/* Components of ino's path, last first; a computed message name is
 * written into msg_name. */
static int
collect_names(FsNodes *t, guint64 ino, GPtrArray *names,
              char msg_name[FS_MESSAGE_NAME_SIZE])
{
	for (guint depth = 0; ino != FS_NODE_ROOT; depth++) {
		Node *n = find_ino(t, ino);
		if (depth > DEPTH_MAX)
			return -ELOOP;
		if (n != NULL) {
			g_ptr_array_add(names, n->name);
			ino = n->parent;
			continue;
		}
		if ((ino & FS_NODE_MESSAGE_BIT) == 0 || depth > 0 ||
		    !fs_message_name_format((guint32)ino, msg_name))
			return -ESTALE;
		g_ptr_array_add(names, msg_name);
		ino = (ino & ~FS_NODE_MESSAGE_BIT) >> 32;
	}
	return 0;
}

int
fs_nodes_path(FsNodes *t, guint64 ino, const char *child, char **path)
{
	g_autoptr(GPtrArray) names = g_ptr_array_new();
	char msg_name[FS_MESSAGE_NAME_SIZE];
	GString *s = g_string_new(NULL);
	int rc;

	*path = NULL;
	g_mutex_lock(&t->lock);
	rc = collect_names(t, ino, names, msg_name);
	for (guint i = names->len; rc == 0 && i > 0; i--) {
		g_string_append_c(s, '/');
		g_string_append(s, names->pdata[i - 1]);
	}
	g_mutex_unlock(&t->lock);
	if (rc == 0 && child != NULL) {
		g_string_append_c(s, '/');
		g_string_append(s, child);
	}
	if (rc == 0 && s->len == 0)
		g_string_append_c(s, '/');
	if (rc == 0 && s->len >= FS_PATH_MAX)
		rc = -ENAMETOOLONG;
	if (rc != 0) {
		g_string_free(s, TRUE);
		return rc;
	}
	*path = g_string_free(s, FALSE);
	return 0;
}

void
fs_nodes_renamed(FsNodes *t, guint64 parent, const char *name,
                 guint64 new_parent, const char *new_name)
{
	Node *n, *old;
	guint64 ino;

	g_mutex_lock(&t->lock);
	old = find_name(t, new_parent, new_name);
	if (old != NULL)
		node_unhash(t, old);
	n = find_name(t, parent, name);
	if (n != NULL) {
		node_unhash(t, n);
		g_free(n->name);
		n->name = g_strdup(new_name);
		n->parent = new_parent;
		g_hash_table_replace(t->by_name, n, n);
		n->hashed = TRUE;
	} else if ((ino = message_ino(parent, name)) != 0 &&
	           find_ino(t, ino) == NULL) {
		/* The kernel may know this message by its computed number:
		 * that number now stands for the new name. */
		n = node_add(t, ino, new_parent, new_name);
		n->pinned = TRUE;
	}
	g_mutex_unlock(&t->lock);
}

void
fs_nodes_mark_stand_in(FsNodes *t, guint64 ino)
{
	Node *n;

	g_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n != NULL)
		n->stand_in = TRUE;
	g_mutex_unlock(&t->lock);
}

gboolean
fs_nodes_is_stand_in(FsNodes *t, guint64 ino)
{
	gboolean yes;
	Node *n;

	g_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	yes = n != NULL && n->stand_in;
	g_mutex_unlock(&t->lock);
	return yes;
}

void
fs_nodes_removed(FsNodes *t, guint64 parent, const char *name)
{
	Node *n;

	g_mutex_lock(&t->lock);
	n = find_name(t, parent, name);
	if (n != NULL)
		node_unhash(t, n);
	g_mutex_unlock(&t->lock);
}

/* What the kernel would know name in dir by, without counting. */
static guint64
child_ino(FsNodes *t, guint64 dir, const char *name)
{
	Node *n = find_name(t, dir, name);
	guint64 ino;

	if (n != NULL)
		return n->ino;
	if (!known_dir(t, dir))
		return 0;
	ino = message_ino(dir, name);
	/* A number taken by a message renamed away is not this one's. */
	return ino != 0 && find_ino(t, ino) == NULL ? ino : 0;
}

guint64
fs_nodes_peek(FsNodes *t, guint64 parent, const char *name)
{
	guint64 ino;

	g_mutex_lock(&t->lock);
	ino = child_ino(t, parent, name);
	g_mutex_unlock(&t->lock);
	return ino;
}

guint64
fs_nodes_find(FsNodes *t, const char *path)
{
	g_auto(GStrv) parts = g_strsplit(path, "/", -1);
	guint64 ino = FS_NODE_ROOT;

	g_mutex_lock(&t->lock);
	for (guint i = 0; parts[i] != NULL && ino != 0; i++) {
		if (parts[i][0] != '\0')
			ino = child_ino(t, ino, parts[i]);
	}
	g_mutex_unlock(&t->lock);
	return ino;
}

guint
fs_nodes_count(FsNodes *t)
{
	guint n;

	g_mutex_lock(&t->lock);
	n = g_hash_table_size(t->by_ino);
	g_mutex_unlock(&t->lock);
	return n;
}
