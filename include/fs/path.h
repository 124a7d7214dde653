/* path.h - the mapping between filesystem paths and IMAP mailbox names
 * (UTF-8) and message UIDs. Pure functions: no I/O, no server state.
 *
 * A mailbox "INBOX.a/b.50%" with delimiter '.' is the directory
 * "/INBOX/a%2Fb/50%25": the name is split on the delimiter and each part
 * becomes one directory entry with '%' written "%25" and '/' written "%2F".
 * A message with UID 12 is the file "12.eml" inside its mailbox's directory.
 *
 * Functions that can fail return 0 or a negative errno, as FUSE callbacks do:
 * -EINVAL for a name that cannot be represented, -ENAMETOOLONG for a path
 * of FS_PATH_MAX bytes or more or an on-disk component over FS_NAME_MAX. */
#ifndef FS_PATH_H
#define FS_PATH_H

#include <glib.h>

#define FS_PATH_MAX 4096 /* bytes in a whole path with its NUL (PATH_MAX) */
#define FS_NAME_MAX 255  /* bytes in one on-disk component */
/* Room for the longest message name, "4294967295.eml", and its NUL. */
#define FS_MESSAGE_NAME_SIZE 16

/* Directory entry name for one part of a mailbox name: '%' -> "%25",
 * '/' -> "%2F", everything else unchanged. Never fails; validity is
 * checked by fs_path_from_mailbox(). */
char *fs_path_encode_component(const char *part);

/* Path ("/INBOX/a%2Fb") of a mailbox name as the server sends it. delim is
 * the hierarchy delimiter, 0 for a flat namespace (NIL). Fails with -EINVAL
 * for names no directory can show: empty parts (leading, trailing or
 * doubled delimiters), "." or "..", control bytes, invalid UTF-8. */
int fs_path_from_mailbox(const char *mailbox, char delim, char **path);

/* Mailbox name of a directory path (untrusted input). Each component is
 * decoded ("%2F" or "%2f" -> '/', "%25" -> '%', any other '%' stays) and the
 * parts are joined with delim. Fails with -EINVAL for "/", for a path not
 * starting with '/', for empty, "." or ".." components, control bytes
 * (0x00-0x1f, 0x7f), invalid UTF-8, a component holding delim after
 * decoding, and, when delim is 0, more than one component. */
int fs_path_to_mailbox(const char *path, char delim, char **mailbox);

/* Writes "<uid>.eml" into buf. FALSE (and "") for UID 0, which is invalid. */
gboolean fs_message_name_format(guint32 uid, char buf[FS_MESSAGE_NAME_SIZE]);
/* Strict inverse: decimal 1..4294967295, no sign, no leading zero, exactly
 * ".eml" after it. "01.eml", "12.EML", ".12.eml", "12.eml~" are refused. */
gboolean fs_message_name_parse(const char *name, guint32 *uid);

typedef enum {
	FS_PATH_ROOT,    /* "/" */
	FS_PATH_MAILBOX, /* a directory that stands for a mailbox */
	FS_PATH_MESSAGE, /* "<uid>.eml" inside a mailbox */
	FS_PATH_OTHER,   /* any other file name: a pending upload to parent */
} FsPathKind;

typedef struct {
	FsPathKind kind;
	/* MAILBOX: the mailbox the directory is. NULL for other kinds. */
	char *mailbox;
	/* Every kind but ROOT: the mailbox holding the last component, NULL
	 * when that is the root (which holds no messages). */
	char *parent;
	/* Every kind but ROOT: the last component exactly as in the path. */
	char *leaf;
	guint32 uid; /* MESSAGE only */
} FsPathInfo;

/* Classifies a path (validated as in fs_path_to_mailbox, every component).
 * A message name below the top level is a MESSAGE even when a mailbox of
 * that name could exist. Any other last component is a MAILBOX when it is
 * a valid mailbox part (no delim after decoding; top level only when delim
 * is 0), else OTHER: "/INBOX/.12.eml.AbC123" with delim '.' is OTHER in
 * "INBOX". Whether a MAILBOX exists only the caller knows; if it does not,
 * parent and leaf still describe it as a file, e.g. for create().
 * On failure *info is zeroed; on success release it with
 * fs_path_info_clear(). */
int fs_path_classify(const char *path, char delim, FsPathInfo *info);
void fs_path_info_clear(FsPathInfo *info);

/* Mailbox name equality where the top-level "INBOX" (alone or followed by
 * delim) is case-insensitive, as RFC 3501 section 5.1 has it, and the rest
 * is compared byte for byte. NULL (the root, as in FsPathInfo.parent)
 * equals only NULL. */
gboolean fs_mailbox_equal(const char *a, const char *b, char delim);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(FsPathInfo, fs_path_info_clear)

#endif
