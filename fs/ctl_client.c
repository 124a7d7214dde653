/* ctl_client.c - `imapfs status` and `imapfs prefetch`, run by the user
 * against a mount that is up. There is no socket to the daemon: commands
 * and answers go through extended attributes of the mount (see
 * ops_xattr.c), whose values are JSON objects the daemon writes
 * (cache/warm.c). This file reads them with a small JSON parser, prints
 * them for people (or, with --json, for scripts) and drives prefetch
 * jobs: start, follow with a progress line, cancel on Ctrl-C. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cache/warm.h"
#include "fs/path.h"
#include "ctl_client.h"

#define XA_STATUS   "user.imapfs.status"
#define XA_PREFETCH "user.imapfs.prefetch"
#define VALUE_MAX   65536
#define POLL_MS     200
#define PLAIN_EVERY (2 * G_USEC_PER_SEC)

/* ---------------------------------------------------------------- JSON */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JType;

typedef struct JNode {
	JType type;
	gboolean b;
	double num;
	char *text;      /* J_STR: the string; J_NUM: the number as sent */
	GPtrArray *keys; /* J_OBJ: char * */
	GPtrArray *vals; /* J_ARR, J_OBJ: JNode * */
} JNode;

static void
jnode_free(gpointer p)
{
	JNode *n = p;

	if (n == NULL)
		return;
	g_free(n->text);
	if (n->keys != NULL)
		g_ptr_array_free(n->keys, TRUE);
	if (n->vals != NULL)
		g_ptr_array_free(n->vals, TRUE);
	g_free(n);
}

typedef struct {
	const char *p;
	int depth;
	gboolean bad;
} JParser;

static void
skip_ws(JParser *jp)
{
	while (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' ||
	       *jp->p == '\r')
		jp->p++;
}

static JNode *
jnode_new(JType type)
{
	JNode *n = g_new0(JNode, 1);

	n->type = type;
	if (type == J_ARR || type == J_OBJ)
		n->vals = g_ptr_array_new_with_free_func(jnode_free);
	if (type == J_OBJ)
		n->keys = g_ptr_array_new_with_free_func(g_free);
	return n;
}

static gboolean
hex4(const char *p, gunichar *out)
{
	*out = 0;
	for (int i = 0; i < 4; i++) {
		int v = g_ascii_xdigit_value(p[i]);

		if (v < 0)
			return FALSE;
		*out = *out * 16 + (gunichar)v;
	}
	return TRUE;
}

/* A \uXXXX escape (with its surrogate pair); p is after the 'u'. */
static gboolean
unicode_escape(JParser *jp, GString *s)
{
	gunichar c, low;

	if (!hex4(jp->p, &c))
		return FALSE;
	jp->p += 4;
	if (c >= 0xd800 && c < 0xdc00) {
		if (jp->p[0] != '\\' || jp->p[1] != 'u' ||
		    !hex4(jp->p + 2, &low) || low < 0xdc00 || low > 0xdfff)
			return FALSE;
		jp->p += 6;
		c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
	}
	g_string_append_unichar(s, c);
	return TRUE;
}

static char *
parse_string(JParser *jp)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	GString *s = g_string_new(NULL);
	const char *e;

	jp->p++; /* the opening quote */
	while (*jp->p != '"') {
		if (*jp->p == '\0' || (guchar)*jp->p < 0x20)
			goto bad;
		if (*jp->p != '\\') {
			g_string_append_c(s, *jp->p++);
			continue;
		}
		jp->p++;
		if (*jp->p == 'u') {
			jp->p++;
			if (!unicode_escape(jp, s))
				goto bad;
			continue;
		}
		e = *jp->p != '\0' ? strchr(from, *jp->p) : NULL;
		if (e == NULL)
			goto bad;
		g_string_append_c(s, to[e - from]);
		jp->p++;
	}
	jp->p++;
	return g_string_free(s, FALSE);
bad:
	jp->bad = TRUE;
	g_string_free(s, TRUE);
	return NULL;
}

static JNode *parse_value(JParser *jp);

static JNode *
parse_container(JParser *jp, gboolean object)
{
	JNode *n = jnode_new(object ? J_OBJ : J_ARR);
	char close = object ? '}' : ']';

	jp->p++;
	skip_ws(jp);
	if (*jp->p == close) {
		jp->p++;
		return n;
	}
	for (;;) {
		JNode *v;

		skip_ws(jp);
		if (object) {
			char *key;

			if (*jp->p != '"' || (key = parse_string(jp)) == NULL)
				break;
			g_ptr_array_add(n->keys, key);
			skip_ws(jp);
			if (*jp->p++ != ':')
				break;
		}
		v = parse_value(jp);
		if (v == NULL)
			break;
		g_ptr_array_add(n->vals, v);
		skip_ws(jp);
		if (*jp->p == ',') {
			jp->p++;
			continue;
		}
		if (*jp->p == close) {
			jp->p++;
			return n;
		}
		break;
	}
	jp->bad = TRUE;
	jnode_free(n);
	return NULL;
}

static JNode *
parse_number(JParser *jp)
{
	const char *start = jp->p;
	char *end;
	JNode *n;
	double v = g_ascii_strtod(start, &end);

	if (end == start) {
		jp->bad = TRUE;
		return NULL;
	}
	n = jnode_new(J_NUM);
	n->num = v;
	n->text = g_strndup(start, (gsize)(end - start));
	jp->p = end;
	return n;
}

static JNode *
parse_word(JParser *jp)
{
	static const struct {
		const char *word;
		JType type;
		gboolean b;
	} words[] = {
	    {"null", J_NULL, FALSE},
	    {"true", J_BOOL, TRUE},
	    {"false", J_BOOL, FALSE},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(words); i++)
		if (strncmp(jp->p, words[i].word, strlen(words[i].word)) == 0) {
			JNode *n = jnode_new(words[i].type);

			n->b = words[i].b;
			jp->p += strlen(words[i].word);
			return n;
		}
	jp->bad = TRUE;
	return NULL;
}

static JNode *
parse_value(JParser *jp)
{
	JNode *n;

	skip_ws(jp);
	if (++jp->depth > 64) {
		jp->bad = TRUE;
		return NULL;
	}
	if (*jp->p == '{' || *jp->p == '[') {
		n = parse_container(jp, *jp->p == '{');
	} else if (*jp->p == '"') {
		char *s = parse_string(jp);

		n = NULL;
		if (s != NULL) {
			n = jnode_new(J_STR);
			n->text = s;
		}
	} else if (*jp->p == '-' || g_ascii_isdigit(*jp->p)) {
		n = parse_number(jp);
	} else {
		n = parse_word(jp);
	}
	jp->depth--;
	return n;
}

static JNode *
json_parse(const char *text)
{
	JParser jp = {text, 0, FALSE};
	JNode *n = parse_value(&jp);

	skip_ws(&jp);
	if (n != NULL && (jp.bad || *jp.p != '\0')) {
		jnode_free(n);
		n = NULL;
	}
	return n;
}

static JNode *
jget(const JNode *obj, const char *key)
{
	if (obj == NULL || obj->type != J_OBJ)
		return NULL;
	for (guint i = 0; i < obj->keys->len; i++)
		if (strcmp(obj->keys->pdata[i], key) == 0)
			return obj->vals->pdata[i];
	return NULL;
}

static const char *
jstr(const JNode *obj, const char *key)
{
	const JNode *n = jget(obj, key);

	return n != NULL && n->type == J_STR ? n->text : NULL;
}

static gboolean
jhas_num(const JNode *obj, const char *key)
{
	const JNode *n = jget(obj, key);

	return n != NULL && n->type == J_NUM;
}

static guint64
ju64(const JNode *obj, const char *key)
{
	const JNode *n = jget(obj, key);

	if (n == NULL || n->type != J_NUM || n->text[0] == '-')
		return 0;
	return g_ascii_strtoull(n->text, NULL, 10);
}

/* Pretty-printed, two spaces per level. */
static void
json_write(GString *o, const JNode *n, int indent)
{
	switch (n->type) {
	case J_NULL:
		g_string_append(o, "null");
		return;
	case J_BOOL:
		g_string_append(o, n->b ? "true" : "false");
		return;
	case J_NUM:
		g_string_append(o, n->text);
		return;
	case J_STR:
		warm_json_string(o, n->text);
		return;
	case J_ARR:
	case J_OBJ:
		break;
	}
	g_string_append_c(o, n->type == J_OBJ ? '{' : '[');
	for (guint i = 0; i < n->vals->len; i++) {
		g_string_append(o, i > 0 ? ",\n" : "\n");
		g_string_append_printf(o, "%*s", indent + 2, "");
		if (n->type == J_OBJ) {
			warm_json_string(o, n->keys->pdata[i]);
			g_string_append(o, ": ");
		}
		json_write(o, n->vals->pdata[i], indent + 2);
	}
	if (n->vals->len > 0)
		g_string_append_printf(o, "\n%*s", indent, "");
	g_string_append_c(o, n->type == J_OBJ ? '}' : ']');
}

static void
jremove(JNode *obj, const char *key)
{
	for (guint i = 0; i < obj->keys->len; i++)
		if (strcmp(obj->keys->pdata[i], key) == 0) {
			g_ptr_array_remove_index(obj->keys, i);
			g_ptr_array_remove_index(obj->vals, i);
			return;
		}
}

/* ------------------------------------------------------- the mount */

static const char *prog = "imapfs";

static void G_GNUC_PRINTF(1, 2) complain(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A mountinfo field with its \040-style escapes decoded. */
static char *
unescape_field(const char *s)
{
	GString *o = g_string_new(NULL);

	while (*s != '\0') {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			g_string_append_c(o, (char)((s[1] - '0') * 64 +
			                            (s[2] - '0') * 8 +
			                            (s[3] - '0')));
			s += 4;
		} else {
			g_string_append_c(o, *s++);
		}
	}
	return g_string_free(o, FALSE);
}

static gboolean
below(const char *path, const char *dir)
{
	gsize n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return TRUE;
	return strncmp(path, dir, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

/* The file system type of the mount holding path ("fuse.imapfs" for
 * ours), from /proc/self/mountinfo; *mnt gets its mount point. */
static char *
mount_type(const char *path, char **mnt)
{
	g_autofree char *real = realpath(path, NULL);
	g_autofree char *info = NULL;
	g_auto(GStrv) lines = NULL;
	char *best_type = NULL;
	gsize best_len = 0;

	*mnt = NULL;
	if (real == NULL ||
	    !g_file_get_contents("/proc/self/mountinfo", &info, NULL, NULL))
		return NULL;
	lines = g_strsplit(info, "\n", -1);
	for (char **l = lines; *l != NULL; l++) {
		g_auto(GStrv) f = g_strsplit(*l, " ", -1);
		g_autofree char *point = NULL;
		guint n = g_strv_length(f), dash;

		for (dash = 6; dash < n && strcmp(f[dash], "-") != 0; dash++)
			;
		if (n < 5 || dash + 1 >= n)
			continue;
		point = unescape_field(f[4]);
		/* Later lines are mounted on top of earlier ones. */
		if (below(real, point) && strlen(point) >= best_len) {
			best_len = strlen(point);
			g_free(best_type);
			best_type = g_strdup(f[dash + 1]);
			g_free(*mnt);
			*mnt = g_steal_pointer(&point);
		}
	}
	return best_type;
}

/* Reads a control attribute; NULL with errno set on failure. */
static char *
read_attr(const char *path, const char *name)
{
	char *buf = g_malloc(VALUE_MAX + 1);
	ssize_t n = getxattr(path, name, buf, VALUE_MAX);

	if (n < 0) {
		int e = errno;

		g_free(buf);
		errno = e;
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static JNode *
read_json(const char *path, const char *name)
{
	g_autofree char *text = read_attr(path, name);
	JNode *n;

	if (text == NULL)
		return NULL;
	n = json_parse(text);
	if (n == NULL || n->type != J_OBJ) {
		jnode_free(n);
		errno = EPROTO;
		return NULL;
	}
	return n;
}

/* Checks that path is inside a live imapfs mount, saying why not. */
static gboolean
check_mount(const char *path, gboolean want_dir)
{
	g_autofree char *mnt = NULL;
	g_autofree char *type = NULL;
	struct stat st;

	if (stat(path, &st) != 0) {
		if (errno == ENOTCONN)
			complain("%s: the imapfs daemon of this mount is "
			         "gone; unmount it with fusermount3 -u",
			         path);
		else
			complain("%s: %s", path, g_strerror(errno));
		return FALSE;
	}
	type = mount_type(path, &mnt);
	if (g_strcmp0(type, "fuse.imapfs") != 0) {
		complain("%s is not inside an imapfs mount (%s is %s)", path,
		         mnt != NULL ? mnt : "it", type != NULL ? type : "?");
		return FALSE;
	}
	if (want_dir && !S_ISDIR(st.st_mode)) {
		complain("%s is a message, not a folder", path);
		return FALSE;
	}
	return TRUE;
}

static void
attr_error(const char *path, const char *what)
{
	if (errno == ENODATA || errno == ENOTSUP)
		complain("%s: this imapfs mount has no %s control (an older "
		         "daemon?)",
		         path, what);
	else if (errno == EPROTO)
		complain("%s: the daemon's %s answer is not valid JSON", path,
		         what);
	else
		complain("%s: %s: %s", path, what, g_strerror(errno));
}

/* ----------------------------------------------------------- formatting */

static char *
human_size(guint64 bytes)
{
	return g_format_size_full(bytes, G_FORMAT_SIZE_IEC_UNITS);
}

static char *
local_time(guint64 epoch)
{
	g_autoptr(GDateTime) t = g_date_time_new_from_unix_local((gint64)epoch);

	return t != NULL ? g_date_time_format(t, "%Y-%m-%d %H:%M:%S")
	                 : g_strdup("?");
}

static char *
duration(guint64 secs)
{
	if (secs >= 3600)
		return g_strdup_printf("%" G_GUINT64_FORMAT ":%02u:%02u",
		                       secs / 3600, (guint)(secs / 60 % 60),
		                       (guint)(secs % 60));
	return g_strdup_printf("%u:%02u", (guint)(secs / 60),
	                       (guint)(secs % 60));
}

/* Pads s (UTF-8) with spaces to width characters. */
static void
pad(GString *o, const char *s, guint width, gboolean right)
{
	glong len = g_utf8_strlen(s, -1);
	guint fill = len < (glong)width ? width - (guint)len : 0;

	if (right)
		g_string_append_printf(o, "%*s", fill, "");
	g_string_append(o, s);
	if (!right)
		g_string_append_printf(o, "%*s", fill, "");
}

/* -------------------------------------------------------------- status */

/* Every page of the status, merged into one object. */
static JNode *
read_status(const char *path)
{
	JNode *all = read_json(path, XA_STATUS);
	JNode *list = jget(all, "mailboxes");

	if (all == NULL)
		return NULL;
	if (list == NULL || list->type != J_ARR) {
		jnode_free(all);
		errno = EPROTO;
		return NULL;
	}
	while (jhas_num(all, "mailboxes_next")) {
		g_autofree char *name =
		    g_strdup_printf(XA_STATUS ".%" G_GUINT64_FORMAT,
		                    ju64(all, "mailboxes_next"));
		JNode *page = read_json(path, name);
		JNode *more = jget(page, "mailboxes");

		jremove(all, "mailboxes_next");
		if (more == NULL || more->type != J_ARR ||
		    ju64(page, "mailboxes_first") == 0) {
			jnode_free(page);
			jnode_free(all);
			errno = EPROTO;
			return NULL;
		}
		while (more->vals->len > 0)
			g_ptr_array_add(list->vals,
			                g_ptr_array_steal_index(more->vals, 0));
		if (jhas_num(page, "mailboxes_next")) {
			JNode *next = jget(page, "mailboxes_next");
			g_ptr_array_add(all->keys, g_strdup("mailboxes_next"));
			g_ptr_array_add(all->vals, jnode_new(J_NUM));
			((JNode *)all->vals->pdata[all->vals->len - 1])->text =
			    g_strdup(next->text);
		}
		jnode_free(page);
	}
	jremove(all, "mailboxes_first");
	return all;
}

/* A mailbox as the mount shows it ("Archive/2023", not the server's
 * "Archive.2023"); the server's name when no directory can show it. */
static char *
mount_name(const char *mailbox, const JNode *status)
{
	const char *d = jstr(status, "delimiter");
	char *path = NULL;

	if (mailbox == NULL)
		return g_strdup("?");
	if (d == NULL || fs_path_from_mailbox(mailbox, d[0], &path) != 0)
		return g_strdup(mailbox);
	memmove(path, path + 1, strlen(path)); /* no leading '/' */
	return path;
}

static void
print_connection(GString *o, const JNode *c, const JNode *status)
{
	const char *state = jstr(c, "state");
	const JNode *w = jget(c, "watchers");

	g_string_append(o, "Connection:   ");
	g_string_append(o, state != NULL ? state : "?");
	if (g_strcmp0(state, "unreachable") == 0 && jhas_num(c, "since")) {
		g_autofree char *t = local_time(ju64(c, "since"));
		g_string_append_printf(o, " since %s", t);
	}
	if (g_strcmp0(state, "offline") != 0)
		g_string_append_printf(
		    o,
		    "; %" G_GUINT64_FORMAT " of at most %" G_GUINT64_FORMAT
		    " connections open, %" G_GUINT64_FORMAT " busy",
		    ju64(c, "pool_open"), ju64(c, "pool_max"),
		    ju64(c, "pool_busy"));
	g_string_append(o, "\nIDLE watch:   ");
	if (w == NULL || w->type != J_ARR || w->vals->len == 0)
		g_string_append(o, "off");
	for (guint i = 0; w != NULL && w->type == J_ARR && i < w->vals->len;
	     i++) {
		const JNode *x = w->vals->pdata[i];
		const char *mbox = jstr(x, "mailbox");

		if (i > 0)
			g_string_append(o, "; ");
		if (mbox != NULL) {
			g_autofree char *name = mount_name(mbox, status);
			g_string_append_printf(o, "%s ", name);
		}
		g_string_append(o, jstr(x, "state") ? jstr(x, "state") : "?");
	}
	g_string_append_c(o, '\n');
}

static void
print_cache(GString *o, const JNode *c)
{
	const char *dir = jstr(c, "dir");

	g_string_append_printf(o, "Cache:        %s, in %s\n",
	                       jstr(c, "mode") ? jstr(c, "mode") : "?",
	                       dir != NULL ? dir : "(nothing on disk)");
	if (jhas_num(c, "bodies")) {
		g_autofree char *used = human_size(ju64(c, "bytes"));
		g_autofree char *limit = human_size(ju64(c, "limit"));

		g_string_append_printf(
		    o, "Bodies:       %" G_GUINT64_FORMAT " cached, %s of %s\n",
		    ju64(c, "bodies"), used,
		    ju64(c, "limit") ? limit : "unlimited");
	} else {
		g_string_append(o, "Bodies:       not kept\n");
	}
}

static void
print_jobs(GString *o, const JNode *jobs)
{
	for (guint i = 0;
	     jobs != NULL && jobs->type == J_ARR && i < jobs->vals->len; i++) {
		const JNode *j = jobs->vals->pdata[i];
		const char *root = jstr(j, "root");

		g_string_append_printf(
		    o,
		    "Prefetch:     %s: %s, %" G_GUINT64_FORMAT
		    " of %" G_GUINT64_FORMAT " messages cached\n",
		    root != NULL && *root ? root : "(all)", jstr(j, "state"),
		    ju64(j, "messages_cached") + ju64(j, "messages_fetched"),
		    ju64(j, "messages_total"));
	}
}

static void
print_mailboxes(GString *o, const JNode *list, const JNode *status)
{
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	guint width = 7;

	for (guint i = 0; i < list->vals->len; i++) {
		char *name =
		    mount_name(jstr(list->vals->pdata[i], "name"), status);

		g_ptr_array_add(names, name);
		width = MAX(width, (guint)MIN(g_utf8_strlen(name, -1), 40));
	}
	g_string_append_c(o, '\n');
	pad(o, "MAILBOX", width, FALSE);
	g_string_append(o, "  MESSAGES  UIDVALIDITY  LAST SYNC            "
	                   "VIA        BODIES\n");
	for (guint i = 0; i < list->vals->len; i++) {
		const JNode *m = list->vals->pdata[i];
		const char *name = names->pdata[i];
		g_autofree char *msgs = NULL, *uv = NULL, *when = NULL;
		g_autofree char *bodies = NULL;
		const char *via = jstr(m, "sync");

		pad(o, name, width, FALSE);
		if (!jhas_num(m, "messages")) {
			g_string_append(o,
			                "         -            -  not listed "
			                "yet\n");
			continue;
		}
		msgs =
		    g_strdup_printf("%" G_GUINT64_FORMAT, ju64(m, "messages"));
		uv = g_strdup_printf("%" G_GUINT64_FORMAT,
		                     ju64(m, "uidvalidity"));
		if (jhas_num(m, "synced_at"))
			when = local_time(ju64(m, "synced_at"));
		else
			when =
			    g_strdup(g_strcmp0(jstr(m, "listing"), "disk") == 0
			                 ? "(disk cache)"
			                 : "-");
		bodies = jhas_num(m, "bodies_cached")
		             ? g_strdup_printf("%" G_GUINT64_FORMAT,
		                               ju64(m, "bodies_cached"))
		             : g_strdup("-");
		g_string_append(o, "  ");
		pad(o, msgs, 8, TRUE);
		g_string_append(o, "  ");
		pad(o, uv, 11, TRUE);
		g_string_append(o, "  ");
		pad(o, when, 19, FALSE);
		g_string_append(o, "  ");
		pad(o, via != NULL ? via : "-", 9, FALSE);
		g_string_append(o, "  ");
		pad(o, bodies, 6, TRUE);
		g_string_append_c(o, '\n');
	}
}

static int
cmd_status(const char *path, gboolean json)
{
	g_autoptr(GString) o = g_string_new(NULL);
	g_autofree char *mnt = NULL, *type = NULL;
	JNode *st;

	if (!check_mount(path, FALSE))
		return 1;
	st = read_status(path);
	if (st == NULL) {
		attr_error(path, "status");
		return 1;
	}
	type = mount_type(path, &mnt);
	if (json) {
		JNode *m = jnode_new(J_STR);

		m->text = g_strdup(mnt != NULL ? mnt : path);
		g_ptr_array_insert(st->keys, 0, g_strdup("mountpoint"));
		g_ptr_array_insert(st->vals, 0, m);
		json_write(o, st, 0);
		g_string_append_c(o, '\n');
	} else {
		g_string_append_printf(
		    o, "Mount:        %s (daemon pid %" G_GUINT64_FORMAT ")\n",
		    mnt != NULL ? mnt : path, ju64(st, "pid"));
		g_string_append_printf(o, "Account:      %s\n",
		                       jstr(st, "account") ? jstr(st, "account")
		                                           : "?");
		print_connection(o, jget(st, "connection"), st);
		print_cache(o, jget(st, "cache"));
		print_jobs(o, jget(st, "prefetch"));
		print_mailboxes(o, jget(st, "mailboxes"), st);
	}
	fputs(o->str, stdout);
	jnode_free(st);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ prefetch */

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
	stop_signal = sig;
}

static void
catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* Sends "start" or "cancel"; a read-only mount takes it as a get. */
static gboolean
send_command(const char *path, const char *cmd)
{
	g_autofree char *name = NULL;
	g_autofree char *ignored = NULL;

	if (setxattr(path, XA_PREFETCH, cmd, strlen(cmd), 0) == 0)
		return TRUE;
	if (errno != EROFS && errno != EPERM && errno != EACCES)
		return FALSE;
	name = g_strconcat(XA_PREFETCH ".", cmd, NULL);
	ignored = read_attr(path, name);
	return ignored != NULL;
}

typedef struct {
	guint64 total, done, fetched, bytes_fetched, bytes_left;
	guint64 elapsed_ms;
	const char *state;
	const char *current;
} Progress;

static void
progress_of(const JNode *p, Progress *g)
{
	guint64 bytes_total = ju64(p, "bytes_total");
	guint64 bytes_have = ju64(p, "bytes_cached") + ju64(p, "bytes_fetched");

	g->total = ju64(p, "messages_total");
	g->fetched = ju64(p, "messages_fetched");
	g->done = ju64(p, "messages_cached") + g->fetched +
	          ju64(p, "messages_failed") + ju64(p, "messages_gone");
	g->bytes_fetched = ju64(p, "bytes_fetched");
	g->bytes_left = bytes_total > bytes_have ? bytes_total - bytes_have : 0;
	g->elapsed_ms = ju64(p, "elapsed_ms");
	g->state = jstr(p, "state") ? jstr(p, "state") : "?";
	g->current = jstr(p, "current");
}

static gboolean
running(const Progress *g)
{
	return strcmp(g->state, "listing") == 0 ||
	       strcmp(g->state, "fetching") == 0;
}

/* "12.3 MiB/s, ETA 0:42" from what was fetched so far. */
static char *
rate_text(const Progress *g)
{
	double secs = (double)g->elapsed_ms / 1000.0;
	double rate = secs > 0.2 ? (double)g->bytes_fetched / secs : 0;
	g_autofree char *r = NULL, *eta = NULL;

	if (rate < 1)
		return g_strdup("-- B/s, ETA --");
	r = human_size((guint64)rate);
	eta = duration((guint64)((double)g->bytes_left / rate + 0.5));
	return g_strdup_printf("%s/s, ETA %s", r, eta);
}

static guint
terminal_width(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
		return ws.ws_col;
	return 80;
}

static void
draw_bar(const Progress *g)
{
	g_autofree char *bytes = human_size(g->bytes_fetched);
	g_autofree char *rate = rate_text(g);
	g_autofree char *text = NULL;
	GString *line = g_string_new("\r");
	guint width, bar, filled;

	if (strcmp(g->state, "listing") == 0) {
		text = g_strdup_printf(
		    "listing %s: %" G_GUINT64_FORMAT " messages so far",
		    g->current != NULL ? g->current : "...", g->total);
		bar = 0;
	} else {
		text = g_strdup_printf(" %" G_GUINT64_FORMAT
		                       "/%" G_GUINT64_FORMAT " msgs  %s  %s",
		                       g->done, g->total, bytes, rate);
		width = terminal_width() - 1;
		bar = width > strlen(text) + 12
		          ? width - (guint)strlen(text) - 2
		          : 10;
		bar = MIN(bar, 40);
	}
	if (bar > 0) {
		filled = g->total > 0 ? (guint)(g->done * bar / g->total) : 0;
		g_string_append_c(line, '[');
		for (guint i = 0; i < bar; i++)
			g_string_append_c(line, i < filled ? '#' : '-');
		g_string_append_c(line, ']');
	}
	g_string_append(line, text);
	g_string_append(line, "\033[K");
	fputs(line->str, stdout);
	fflush(stdout);
	g_string_free(line, TRUE);
}

static void
plain_line(const char *what, const Progress *g)
{
	g_autofree char *bytes = human_size(g->bytes_fetched);
	g_autofree char *rate = rate_text(g);

	printf("prefetch %s: %s, %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
	       " messages, %s fetched, %s\n",
	       what, g->state, g->done, g->total, bytes, rate);
	fflush(stdout);
}

static void
summary(const char *what, const JNode *p, const Progress *g)
{
	g_autofree char *bytes = human_size(g->bytes_fetched);
	guint64 failed = ju64(p, "messages_failed");

	printf("prefetch %s: %s after %.1f s: %" G_GUINT64_FORMAT
	       " of %" G_GUINT64_FORMAT " messages cached, %" G_GUINT64_FORMAT
	       " fetched now (%" G_GUINT64_FORMAT " bytes, %s), "
	       "%" G_GUINT64_FORMAT " were cached already",
	       what, g->state, (double)g->elapsed_ms / 1000.0,
	       ju64(p, "messages_cached") + g->fetched, g->total, g->fetched,
	       g->bytes_fetched, bytes, ju64(p, "messages_cached"));
	if (failed > 0)
		printf(", %" G_GUINT64_FORMAT " failed", failed);
	if (ju64(p, "messages_gone") > 0)
		printf(", %" G_GUINT64_FORMAT " deleted meanwhile",
		       ju64(p, "messages_gone"));
	printf("\n");
	fflush(stdout);
}

/* Follows the job until it ends; after a signal, cancels it and waits
 * for the batches in flight (bounded). Returns the last progress. */
static JNode *
follow(const char *path, const char *what, gboolean tty)
{
	gint64 last_line = g_get_monotonic_time(), cancel_at = 0;
	JNode *p = NULL;
	Progress g;

	for (;;) {
		jnode_free(p);
		p = read_json(path, XA_PREFETCH);
		if (p == NULL)
			return NULL;
		progress_of(p, &g);
		if (!running(&g))
			break;
		if (stop_signal != 0 && cancel_at == 0) {
			cancel_at = g_get_monotonic_time();
			if (!send_command(path, "cancel"))
				return p;
		}
		if (cancel_at != 0 &&
		    g_get_monotonic_time() - cancel_at > 30 * G_USEC_PER_SEC)
			break;
		if (tty) {
			draw_bar(&g);
		} else if (g_get_monotonic_time() - last_line >= PLAIN_EVERY) {
			plain_line(what, &g);
			last_line = g_get_monotonic_time();
		}
		poll(NULL, 0, POLL_MS);
	}
	if (tty) {
		draw_bar(&g);
		fputc('\n', stdout);
	}
	return p;
}

static int
cmd_prefetch(const char *path)
{
	g_autofree char *mnt = NULL, *type = NULL, *real = NULL;
	const char *what;
	gboolean tty = isatty(STDOUT_FILENO);
	JNode *p;
	Progress g;
	int rc;

	if (!check_mount(path, TRUE))
		return 1;
	type = mount_type(path, &mnt);
	real = realpath(path, NULL);
	what = real != NULL && mnt != NULL && strcmp(real, mnt) != 0
	           ? real + strlen(mnt) + (strcmp(mnt, "/") != 0)
	           : "(all folders)";
	catch_signals();
	if (!send_command(path, "start")) {
		attr_error(path, "prefetch");
		return 1;
	}
	p = follow(path, what, tty);
	if (p == NULL) {
		attr_error(path, "prefetch");
		return 1;
	}
	progress_of(p, &g);
	summary(what, p, &g);
	if (stop_signal != 0) {
		complain("interrupted; run it again to fetch the rest");
		rc = 128 + stop_signal;
	} else if (strcmp(g.state, "done") == 0) {
		rc = 0;
	} else {
		const char *error = jstr(p, "error");

		if (strcmp(g.state, "cancelled") == 0)
			complain("the prefetch of %s was cancelled", what);
		else if (running(&g))
			complain("the daemon did not stop the job in time");
		else
			complain("prefetch of %s failed: %s", what,
			         error != NULL ? error : g.state);
		rc = 1;
	}
	jnode_free(p);
	return rc;
}

/* --------------------------------------------------------------- main */

gboolean
ctl_is_command(const char *word)
{
	return strcmp(word, "status") == 0 || strcmp(word, "prefetch") == 0;
}

static int
usage(FILE *f, int rc)
{
	fprintf(f,
	        "usage: %s status [--json] MOUNTPOINT\n"
	        "       %s prefetch FOLDER|MOUNTPOINT\n",
	        prog, prog);
	return rc;
}

int
ctl_main(int argc, char **argv)
{
	const char *cmd = argv[1], *path = NULL;
	gboolean json = FALSE;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0)
			return usage(stdout, 0);
		if (strcmp(argv[i], "--json") == 0 &&
		    strcmp(cmd, "status") == 0)
			json = TRUE;
		else if (argv[i][0] == '-' && strcmp(argv[i], "--") != 0)
			return usage(stderr, 2);
		else if (strcmp(argv[i], "--") == 0 && i + 1 < argc &&
		         path == NULL)
			path = argv[++i];
		else if (path == NULL)
			path = argv[i];
		else
			return usage(stderr, 2);
	}
	if (path == NULL)
		return usage(stderr, 2);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(path, json);
	return cmd_prefetch(path);
}
