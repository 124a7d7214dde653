/* path.c - filesystem paths <-> IMAP mailbox names and message UIDs. Paths
 * come from users (mkdir, rename, rsync), so every component is checked
 * before it can become part of a mailbox name sent to the server. */
#include "fs/path.h"

#include <errno.h>
#include <string.h>

#define MESSAGE_SUFFIX ".eml"
#define UID_MAX_DIGITS 10

typedef struct {
	const char *start;
	gsize len;
} Span;

static gboolean
is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static gboolean
has_control(const char *s, gsize len)
{
	for (gsize i = 0; i < len; i++)
		if (is_control((unsigned char)s[i]))
			return TRUE;
	return FALSE;
}

static gboolean
is_dot_or_dotdot(const char *s, gsize len)
{
	return (len == 1 && s[0] == '.') ||
	       (len == 2 && s[0] == '.' && s[1] == '.');
}

/* Checks one component as it appears on disk (encoded). */
static int
check_disk_component(const char *s, gsize len)
{
	if (len == 0 || is_dot_or_dotdot(s, len))
		return -EINVAL;
	if (len > FS_NAME_MAX)
		return -ENAMETOOLONG;
	if (has_control(s, len) || !g_utf8_validate_len(s, len, NULL))
		return -EINVAL;
	return 0;
}

/* Splits an absolute path into checked components; "/" has none. */
static int
split_path(const char *path, GArray *spans)
{
	const char *p;

	if (strlen(path) >= FS_PATH_MAX)
		return -ENAMETOOLONG;
	if (path[0] != '/')
		return -EINVAL;
	if (path[1] == '\0')
		return 0;
	p = path + 1;
	for (;;) {
		const char *end = strchrnul(p, '/');
		Span span = {p, (gsize)(end - p)};
		int rc = check_disk_component(span.start, span.len);

		if (rc != 0)
			return rc;
		g_array_append_val(spans, span);
		if (*end == '\0')
			return 0;
		p = end + 1;
	}
}

static char *
decode_component(const Span *span)
{
	GString *out = g_string_sized_new(span->len);

	for (gsize i = 0; i < span->len; i++) {
		const char *p = span->start + i;
		gsize left = span->len - i;

		if (left >= 3 && p[0] == '%' && p[1] == '2' &&
		    (p[2] == 'F' || p[2] == 'f')) {
			g_string_append_c(out, '/');
			i += 2;
		} else if (left >= 3 && p[0] == '%' && p[1] == '2' &&
		           p[2] == '5') {
			g_string_append_c(out, '%');
			i += 2;
		} else {
			g_string_append_c(out, *p);
		}
	}
	return g_string_free(out, FALSE);
}

/* RFC 3501 5.1: INBOX is case-insensitive. Servers spell it "INBOX",
 * "Inbox" (Yahoo) or "inbox"; the filesystem always shows the one
 * directory "INBOX" and sends that spelling, which every server accepts. */
static gboolean
is_inbox(const char *part, gsize len)
{
	return len == 5 && g_ascii_strncasecmp(part, "INBOX", 5) == 0;
}

static gboolean
is_mailbox_part(const char *decoded, char delim)
{
	return delim == '\0' || strchr(decoded, delim) == NULL;
}

/* Appends the decoded components [0, n) to name, joined with delim. */
static int
join_mailbox(const GArray *spans, guint n, char delim, GString *name)
{
	for (guint i = 0; i < n; i++) {
		char *part = decode_component(&g_array_index(spans, Span, i));
		gboolean ok = is_mailbox_part(part, delim);

		if (ok) {
			if (i > 0)
				g_string_append_c(name, delim);
			g_string_append(name,
			                i == 0 && is_inbox(part, strlen(part))
			                    ? "INBOX"
			                    : part);
		}
		g_free(part);
		if (!ok)
			return -EINVAL;
	}
	return 0;
}

char *
fs_path_encode_component(const char *part)
{
	GString *out = g_string_sized_new(strlen(part));

	for (const char *p = part; *p != '\0'; p++) {
		if (*p == '%')
			g_string_append(out, "%25");
		else if (*p == '/')
			g_string_append(out, "%2F");
		else
			g_string_append_c(out, *p);
	}
	return g_string_free(out, FALSE);
}

static int
append_encoded_part(GString *path, const char *part, gsize len)
{
	char *raw = path->len == 0 && is_inbox(part, len)
	                ? g_strdup("INBOX")
	                : g_strndup(part, len);
	char *encoded;
	int rc = 0;

	if (len == 0 || is_dot_or_dotdot(part, len) || has_control(part, len))
		rc = -EINVAL;
	encoded = fs_path_encode_component(raw);
	if (rc == 0 && strlen(encoded) > FS_NAME_MAX)
		rc = -ENAMETOOLONG;
	if (rc == 0) {
		g_string_append_c(path, '/');
		g_string_append(path, encoded);
	}
	g_free(encoded);
	g_free(raw);
	return rc;
}

int
fs_path_from_mailbox(const char *mailbox, char delim, char **path)
{
	GString *out;
	const char *p = mailbox;
	int rc = 0;

	*path = NULL;
	if (!g_utf8_validate(mailbox, -1, NULL))
		return -EINVAL;
	out = g_string_new(NULL);
	for (;;) {
		const char *end =
		    delim == '\0' ? p + strlen(p) : strchrnul(p, delim);

		rc = append_encoded_part(out, p, (gsize)(end - p));
		if (rc != 0 || *end == '\0')
			break;
		p = end + 1;
	}
	if (rc == 0 && out->len >= FS_PATH_MAX)
		rc = -ENAMETOOLONG;
	if (rc != 0) {
		g_string_free(out, TRUE);
		return rc;
	}
	*path = g_string_free(out, FALSE);
	return 0;
}

int
fs_path_to_mailbox(const char *path, char delim, char **mailbox)
{
	GArray *spans = g_array_new(FALSE, FALSE, sizeof(Span));
	GString *name = g_string_new(NULL);
	int rc;

	*mailbox = NULL;
	rc = split_path(path, spans);
	if (rc == 0 && (spans->len == 0 || (delim == '\0' && spans->len > 1)))
		rc = -EINVAL;
	if (rc == 0)
		rc = join_mailbox(spans, spans->len, delim, name);
	g_array_unref(spans);
	if (rc != 0) {
		g_string_free(name, TRUE);
		return rc;
	}
	*mailbox = g_string_free(name, FALSE);
	return 0;
}

gboolean
fs_message_name_format(guint32 uid, char buf[FS_MESSAGE_NAME_SIZE])
{
	if (uid == 0) {
		buf[0] = '\0';
		return FALSE;
	}
	g_snprintf(buf, FS_MESSAGE_NAME_SIZE, "%" G_GUINT32_FORMAT "%s", uid,
	           MESSAGE_SUFFIX);
	return TRUE;
}

gboolean
fs_message_name_parse(const char *name, guint32 *uid)
{
	guint64 value = 0;
	const char *p = name;

	if (*p < '1' || *p > '9')
		return FALSE;
	for (; g_ascii_isdigit(*p); p++) {
		if (p - name >= UID_MAX_DIGITS)
			return FALSE;
		value = value * 10 + (guint64)(*p - '0');
	}
	if (value > G_MAXUINT32 || strcmp(p, MESSAGE_SUFFIX) != 0)
		return FALSE;
	*uid = (guint32)value;
	return TRUE;
}

/* Fills info for a path with at least one component. */
static int
classify_entry(const GArray *spans, char delim, FsPathInfo *info)
{
	const Span *last = &g_array_index(spans, Span, spans->len - 1);
	gboolean top = spans->len == 1;
	char *decoded;
	int rc;

	if (delim == '\0' && spans->len > 2)
		return -EINVAL;
	if (!top) {
		GString *parent = g_string_new(NULL);

		rc = join_mailbox(spans, spans->len - 1, delim, parent);
		if (rc != 0) {
			g_string_free(parent, TRUE);
			return rc;
		}
		info->parent = g_string_free(parent, FALSE);
	}
	info->leaf = g_strndup(last->start, last->len);
	if (!top && fs_message_name_parse(info->leaf, &info->uid)) {
		info->kind = FS_PATH_MESSAGE;
		return 0;
	}
	decoded = decode_component(last);
	if (is_mailbox_part(decoded, delim) && (top || delim != '\0')) {
		info->kind = FS_PATH_MAILBOX;
		info->mailbox =
		    top ? g_strdup(is_inbox(decoded, strlen(decoded)) ? "INBOX"
		                                                      : decoded)
		        : g_strdup_printf("%s%c%s", info->parent, delim,
		                          decoded);
	} else {
		info->kind = FS_PATH_OTHER;
	}
	g_free(decoded);
	return 0;
}

int
fs_path_classify(const char *path, char delim, FsPathInfo *info)
{
	GArray *spans = g_array_new(FALSE, FALSE, sizeof(Span));
	int rc;

	memset(info, 0, sizeof(*info));
	rc = split_path(path, spans);
	if (rc == 0 && spans->len == 0)
		info->kind = FS_PATH_ROOT;
	else if (rc == 0)
		rc = classify_entry(spans, delim, info);
	g_array_unref(spans);
	if (rc != 0)
		fs_path_info_clear(info);
	return rc;
}

void
fs_path_info_clear(FsPathInfo *info)
{
	g_free(info->mailbox);
	g_free(info->parent);
	g_free(info->leaf);
	memset(info, 0, sizeof(*info));
}

/* Length of a leading top-level "INBOX" (any case), or 0. */
static gsize
inbox_prefix_len(const char *name, char delim)
{
	if (g_ascii_strncasecmp(name, "INBOX", 5) != 0)
		return 0;
	if (name[5] == '\0' || (delim != '\0' && name[5] == delim))
		return 5;
	return 0;
}

gboolean
fs_mailbox_equal(const char *a, const char *b, char delim)
{
	gsize skip;

	if (a == NULL || b == NULL)
		return a == b;
	skip = inbox_prefix_len(a, delim);
	if (skip != inbox_prefix_len(b, delim))
		return FALSE;
	return strcmp(a + skip, b + skip) == 0;
}
