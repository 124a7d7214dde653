/* fusefloor.c - the benchmarks' FUSE floor: a do-nothing filesystem whose
 * root holds N empty-bodied files 1.eml .. N.eml, listed the cheapest way
 * the high-level libfuse API allows (READDIRPLUS with real offsets, so the
 * kernel needs no LOOKUP per entry) and answering getxattr outside user.*
 * with ENOTSUP as imapfs does (ls then stops asking for SELinux labels
 * and ACLs after the first file). `ls -l` on it is the least any FUSE
 * daemon with xattrs can cost for a listing of N files; its RSS growth
 * is libfuse's own cost per inode the kernel knows.
 *
 * With --mirror it serves a local directory tree read-only instead, the
 * way a daemon with immutable files does at best: attributes and names
 * cached for 30 s, pages kept across opens (keep_cache), no FLUSH on
 * close (noflush). Reading the tree again costs one OPEN and one RELEASE
 * per file and nothing else: what any FUSE daemon that answers OPEN pays
 * for a warm `grep -r`.
 *
 *   fusefloor N MOUNTPOINT [FUSE options]
 *   fusefloor --mirror DIR MOUNTPOINT [FUSE options]
 */
#define FUSE_USE_VERSION 35

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_SIZE  1234
#define FILE_MTIME 1650000000

static long n_files;
static int mirror_fd = -1; /* the mirrored directory */

static void
file_stat(struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	st->st_size = FILE_SIZE;
	st->st_mtime = FILE_MTIME;
	st->st_uid = getuid();
	st->st_gid = getgid();
}

/* "/<k>.eml" with 1 <= k <= n_files. */
static int
is_file(const char *path)
{
	char *end = NULL;
	long k;

	if (path[0] != '/' || path[1] < '1' || path[1] > '9')
		return 0;
	k = strtol(path + 1, &end, 10);
	return strcmp(end, ".eml") == 0 && k <= n_files;
}

static int
op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if (strcmp(path, "/") == 0) {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFDIR | 0700;
		st->st_nlink = 2;
		st->st_uid = getuid();
		st->st_gid = getgid();
		return 0;
	}
	if (!is_file(path))
		return -ENOENT;
	file_stat(st);
	return 0;
}

static int
op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
           struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct stat st;
	char name[32];

	if (strcmp(path, "/") != 0)
		return -ENOTDIR;
	file_stat(&st);
	/* Offsets 1 and 2 are "." and ".."; file k is at offset k + 2. */
	if (off < 1 && filler(buf, ".", NULL, 1, 0))
		return 0;
	if (off < 2 && filler(buf, "..", NULL, 2, 0))
		return 0;
	for (long k = off < 2 ? 1 : off - 1; k <= n_files; k++) {
		snprintf(name, sizeof(name), "%ld.eml", k);
		if (filler(buf, name, &st, k + 2, FUSE_FILL_DIR_PLUS))
			break;
	}
	return 0;
}

static int
op_getxattr(const char *path, const char *name, char *value, size_t size)
{
	return strncmp(name, "user.", 5) == 0 ? -ENODATA : -ENOTSUP;
}

static int
op_listxattr(const char *path, char *list, size_t size)
{
	return 0;
}

/* "/a/b" -> "a/b", "/" -> ".": relative to mirror_fd. */
static const char *
mirror_path(const char *path)
{
	return path[1] == '\0' ? "." : path + 1;
}

static int
mirror_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if (fstatat(mirror_fd, mirror_path(path), st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	return 0;
}

static int
mirror_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
               struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	int fd = openat(mirror_fd, mirror_path(path), O_RDONLY | O_DIRECTORY);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *e;
	struct stat st;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	/* Offset 0 throughout: the whole directory in one call. */
	while ((e = readdir(d)) != NULL) {
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (filler(buf, e->d_name, &st, 0, FUSE_FILL_DIR_PLUS))
			break;
	}
	closedir(d);
	return 0;
}

static int
mirror_open(const char *path, struct fuse_file_info *fi)
{
	int fd;

	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	fd = openat(mirror_fd, mirror_path(path), O_RDONLY);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 1;
	fi->noflush = 1;
	return 0;
}

static int
mirror_read(const char *path, char *buf, size_t size, off_t off,
            struct fuse_file_info *fi)
{
	ssize_t n = pread((int)fi->fh, buf, size, off);

	return n < 0 ? -errno : (int)n;
}

static int
mirror_release(const char *path, struct fuse_file_info *fi)
{
	close((int)fi->fh);
	return 0;
}

static void *
op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->entry_timeout = 30;
	cfg->attr_timeout = 30;
	cfg->negative_timeout = 0;
	return NULL;
}

int
main(int argc, char **argv)
{
	struct fuse_operations ops = {
	    .getattr = op_getattr,
	    .readdir = op_readdir,
	    .getxattr = op_getxattr,
	    .listxattr = op_listxattr,
	    .init = op_init,
	};
	struct fuse_operations mirror_ops = {
	    .getattr = mirror_getattr,
	    .readdir = mirror_readdir,
	    .open = mirror_open,
	    .read = mirror_read,
	    .release = mirror_release,
	    .getxattr = op_getxattr,
	    .listxattr = op_listxattr,
	    .init = op_init,
	};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	int mirror = argc >= 2 && strcmp(argv[1], "--mirror") == 0;
	char *end = NULL;
	int rc;

	if (argc < 3 + mirror) {
		fprintf(stderr,
		        "usage: fusefloor N MOUNTPOINT [FUSE options]\n"
		        "       fusefloor --mirror DIR MOUNTPOINT [FUSE "
		        "options]\n");
		return 2;
	}
	if (mirror) {
		mirror_fd = open(argv[2], O_RDONLY | O_DIRECTORY);
		if (mirror_fd < 0) {
			perror(argv[2]);
			return 2;
		}
	} else {
		n_files = strtol(argv[1], &end, 10);
		if (*end != '\0' || n_files < 0 || n_files > 100000000) {
			fprintf(stderr, "fusefloor: bad file count '%s'\n",
			        argv[1]);
			return 2;
		}
	}
	fuse_opt_add_arg(&args, argv[0]);
	for (int i = 2 + mirror; i < argc; i++)
		fuse_opt_add_arg(&args, argv[i]);
	/* As imapfs mounts: the kernel checks permissions. */
	fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-ofsname=fusefloor");
	rc = fuse_main(args.argc, args.argv, mirror ? &mirror_ops : &ops, NULL);
	fuse_opt_free_args(&args);
	return rc;
}
