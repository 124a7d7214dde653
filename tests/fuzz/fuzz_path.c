/* fuzz_path.c - libFuzzer target for the path <-> mailbox mapping: paths
 * from the kernel and mailbox names from the server are both untrusted, so
 * any bytes must be handled, and every mailbox name that can be shown as a
 * directory must map back to exactly that name - spelled "INBOX" if its
 * first level is INBOX in another case (RFC 3501: INBOX is
 * case-insensitive; the store keeps that spelling). The first input byte
 * picks the hierarchy delimiter ('/', '.' or none). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(gboolean ok)
{
	if (!ok)
		abort();
}

static gboolean
is_errno(int rc)
{
	return rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG;
}

static const char *
last_component(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash == NULL ? path : slash + 1;
}

/* mailbox with a first level of INBOX in any case spelled "INBOX". */
static char *
canonical_name(const char *mailbox, char delim)
{
	char *name = g_strdup(mailbox);

	if (g_ascii_strncasecmp(name, "INBOX", 5) == 0 &&
	    (name[5] == '\0' || (delim != '\0' && name[5] == delim)))
		memcpy(name, "INBOX", 5);
	return name;
}

/* A path the mapping produced for mailbox must be classified as that very
 * mailbox, unless its last part looks like a message file inside a
 * mailbox (documented to win) or the name is not a valid last part. */
static void
check_classify_mailbox_path(const char *path, const char *mailbox, char delim)
{
	g_auto(FsPathInfo) info = {0};
	guint32 uid;
	int rc = fs_path_classify(path, delim, &info);
	const char *leaf = last_component(path);
	gboolean nested = strchr(path + 1, '/') != NULL;

	check(rc == 0);
	check(info.leaf != NULL && strcmp(info.leaf, leaf) == 0);
	check((info.parent == NULL) == !nested);
	if (nested && fs_message_name_parse(leaf, &uid)) {
		check(info.kind == FS_PATH_MESSAGE && info.uid == uid);
		check(info.mailbox == NULL);
		return;
	}
	check(info.kind == FS_PATH_MAILBOX);
	check(info.mailbox != NULL && strcmp(info.mailbox, mailbox) == 0);
}

/* Input taken as a mailbox name from the server. */
static void
check_mailbox(const char *mailbox, char delim)
{
	char *path = NULL, *back = NULL;
	g_autofree char *canonical = canonical_name(mailbox, delim);
	int rc = fs_path_from_mailbox(mailbox, delim, &path);

	check(is_errno(rc));
	if (rc != 0) {
		check(path == NULL);
		return;
	}
	check(path != NULL && path[0] == '/' && strlen(path) < FS_PATH_MAX);
	check(g_utf8_validate(path, -1, NULL));
	rc = fs_path_to_mailbox(path, delim, &back);
	check(rc == 0 && back != NULL && strcmp(back, canonical) == 0);
	check(fs_mailbox_equal(back, mailbox, delim));
	check_classify_mailbox_path(path, canonical, delim);
	g_free(back);
	g_free(path);
}

/* Input taken as a path from the kernel. */
static void
check_path(const char *path, char delim)
{
	char *mailbox = NULL, *again = NULL, *mailbox2 = NULL;
	g_auto(FsPathInfo) info = {0};
	int rc = fs_path_to_mailbox(path, delim, &mailbox);
	int crc;

	check(is_errno(rc));
	crc = fs_path_classify(path, delim, &info);
	check(is_errno(crc));
	if (crc != 0)
		check(info.kind == 0 && info.mailbox == NULL &&
		      info.parent == NULL && info.leaf == NULL);
	if (crc == 0 && info.kind == FS_PATH_ROOT)
		check(strcmp(path, "/") == 0);
	if (crc == 0 && info.kind == FS_PATH_MESSAGE)
		check(info.uid != 0 && info.mailbox == NULL);
	if (rc != 0) {
		check(mailbox == NULL);
		return;
	}
	/* Every valid mailbox path classifies as something. */
	check(crc == 0);
	if (info.kind == FS_PATH_MAILBOX)
		check(strcmp(info.mailbox, mailbox) == 0);
	check(g_utf8_validate(mailbox, -1, NULL));
	/* The canonical spelling of the name maps back to the same name. */
	rc = fs_path_from_mailbox(mailbox, delim, &again);
	check(is_errno(rc));
	if (rc == 0) {
		check(fs_path_to_mailbox(again, delim, &mailbox2) == 0);
		check(strcmp(mailbox2, mailbox) == 0);
		check(fs_mailbox_equal(mailbox2, mailbox, delim));
	}
	g_free(mailbox2);
	g_free(again);
	g_free(mailbox);
}

static void
check_message_name(const char *name)
{
	char buf[FS_MESSAGE_NAME_SIZE];
	guint32 uid;

	if (!fs_message_name_parse(name, &uid))
		return;
	check(uid != 0);
	check(fs_message_name_format(uid, buf));
	check(strcmp(buf, name) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char delims[] = {'/', '.', 0};
	char delim;
	char *in;

	if (size == 0)
		return 0;
	delim = delims[data[0] % 3];
	in = g_strndup((const char *)data + 1, size - 1);
	check_mailbox(in, delim);
	check_path(in, delim);
	check_message_name(in);
	g_free(in);
	return 0;
}
