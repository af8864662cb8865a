/* safepath.h: opening paths as root without following what others planted.
 *
 * A path is walked from / (or the current directory when relative) one
 * component at a time with openat(O_PATH | O_NOFOLLOW); every operation then
 * works on the descriptor of the directory holding the last component
 * (openat, renameat, unlinkat, fchownat) or on a descriptor of the entry
 * itself, so nothing can be swapped in between a check and its use.
 *
 * The rule (see doc/internals.md, "Paths as root"): a directory is trusted
 * when it is owned by root (or by the user phanes runs as) and writable by
 * neither group nor others. In a trusted directory a symlink is followed
 * (only root could have made it), e.g. /etc/resolv.conf -> ../run/...; in
 * any other directory, one that some other user can write, these are
 * refused with a message naming the path and the owner:
 *   - a symlink, wherever it is in the path;
 *   - an entry owned by neither root (nor that user) nor the directory's
 *     owner (e.g. alice's file in /tmp, or in deploy's home);
 *   - for the entry operated on (sp_check_entry): a regular file with more
 *     than one hard link (a planted link to another file).
 * Refusals set errno to EPERM. All functions fill msg with "path: why". */
#ifndef PHANES_SAFEPATH_H
#define PHANES_SAFEPATH_H

#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>

enum {
	SP_FOLLOW = 1, /* a trusted symlink in last position is followed too */
	SP_MKDIRS = 2, /* missing directories on the way are created (0755) */
};

/* Where the last component of a path is: its directory and its name. */
struct sp_at {
	int dirfd;               /* O_PATH descriptor of the directory; -1 after release */
	char name[NAME_MAX + 1]; /* the last component ("." for "/" or ".") */
	struct stat dir;         /* the directory */
	int exists;              /* name is there; then st is its lstat */
	struct stat st;
	char shown[PATH_MAX];    /* the last component's path as walked (links expanded) */
};

/* Walks path; 0 (at->dirfd to release) or -1 with errno and msg. */
int sp_resolve(const char *path, int flags, struct sp_at *at, char *msg, size_t msize);
void sp_release(struct sp_at *at);

/* 1 when only root (or the user phanes runs as) can change entries of d. */
int sp_dir_trusted(const struct stat *d);

/* The existing last entry may be read or changed in place: 0, or -1 (EPERM)
 * with msg for a symlink, a foreign owner or hard links in an untrusted dir. */
int sp_check_entry(const struct sp_at *at, char *msg, size_t msize);

/* An O_PATH | O_NOFOLLOW descriptor of the existing last entry, checked to be
 * the one that was resolved; -1 with errno and msg. */
int sp_entry_fd(const struct sp_at *at, char *msg, size_t msize);

/* open(2) through sp_resolve(SP_FOLLOW) and sp_check_entry, with O_NOFOLLOW
 * and O_CLOEXEC added; with O_CREAT a missing file is created with mode (a
 * lock file), and what was opened is checked again. fd or -1, errno, msg. */
int sp_open(const char *path, int oflags, mode_t mode, char *msg, size_t msize);

/* chmod of the entry behind an O_PATH descriptor (via /proc/self/fd). */
int sp_fchmod_path(int fd, mode_t mode);

/* A new directory prefix + 6 random characters, mode 0700, created in the
 * directory of prefix (walked as above); the path goes to out. 0 or -1. */
int sp_mkdtemp(const char *prefix, char *out, size_t osize, char *msg, size_t msize);

/* A random name ".<base>.<tag>-XXXXXX" for a temp entry next to base; the
 * caller creates it with O_EXCL and retries on EEXIST. */
void sp_temp_name(char *out, size_t size, const char *base, const char *tag);

#endif
