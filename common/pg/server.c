/* server.c - see server.h. */
#include "pg/server.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "core/buf.h"

int wv_pgserver_free_port(int *port, wv_err *err)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not create a socket to find a free port");
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        int e = errno;
        close(fd);
        return wv_err_errno(err, WV_EIO, e, "could not find a free port on 127.0.0.1");
    }
    *port = ntohs(a.sin_port);
    close(fd);
    return 0;
}

int wv_pgserver_bindir(const char *configured, uint32_t major, char **out, wv_err *err)
{
    char *dir = configured ? wv_xstrdup(configured)
                           : wv_xasprintf("/usr/lib/postgresql/%u/bin", (unsigned)major);
    char *postgres = wv_xasprintf("%s/postgres", dir);
    int ok = access(postgres, X_OK) == 0;
    free(postgres);
    if (!ok) {
        wv_err_set(err, WV_ENOTFOUND, "PostgreSQL %u's programs not found: no \"%s/postgres\"",
                   (unsigned)major, dir);
        wv_err_hint(err,
                    "install PostgreSQL %u's server package, or set [global] pg_bindir to "
                    "the directory of its programs",
                    (unsigned)major);
        free(dir);
        return WV_ENOTFOUND;
    }
    *out = dir;
    return 0;
}

static int fill_user(const struct passwd *pw, wv_runas *out)
{
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    snprintf(out->name, sizeof(out->name), "%s", pw->pw_name);
    return 0;
}

int wv_pgserver_owner(const char *ref, wv_runas *out, wv_err *err)
{
    struct passwd *pw;
    memset(out, 0, sizeof(*out));
    if (geteuid() != 0) {
        pw = getpwuid(geteuid());
        out->uid = geteuid();
        out->gid = getegid();
        snprintf(out->name, sizeof(out->name), "%s", pw ? pw->pw_name : "");
        if (!pw)
            snprintf(out->name, sizeof(out->name), "%u", (unsigned)out->uid);
        return 0;
    }
    struct stat st;
    if (ref && stat(ref, &st) == 0 && st.st_uid != 0 && (pw = getpwuid(st.st_uid)) != NULL)
        return fill_user(pw, out);
    if ((pw = getpwnam("postgres")) != NULL)
        return fill_user(pw, out);
    wv_err_set(err, WV_ECONFIG,
               "no user to run PostgreSQL as: \"%s\" is owned by root and there is no user "
               "\"postgres\"",
               ref ? ref : "(none)");
    return wv_err_hint(err, "run as the user that owns the database files, or create the "
                            "\"postgres\" user");
}

int wv_pgserver_run(const wv_runas *as, char *const argv[], const char *out_path, int *status,
                    wv_err *err)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return wv_err_errno(err, WV_EIO, errno, "could not run \"%s\"", argv[0]);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return wv_err_errno(err, WV_EIO, e, "could not run \"%s\"", argv[0]);
    }
    if (pid == 0) {
        int e = 0;
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0) {
            dup2(in, 0);
            close(in);
        }
        if (out_path) {
            int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (fd < 0) {
                e = errno;
                goto fail;
            }
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (as && geteuid() == 0 && as->uid != 0) {
            if (initgroups(as->name, as->gid) != 0 || setgid(as->gid) != 0 ||
                setuid(as->uid) != 0) {
                e = errno;
                goto fail;
            }
        }
        execv(argv[0], argv);
        e = errno;
    fail:
        if (write(pipefd[1], &e, sizeof(e)) < 0) {
            /* nothing more to say */
        }
        _exit(127);
    }
    close(pipefd[1]);
    int child_errno = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &child_errno, sizeof(child_errno));
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return wv_err_errno(err, WV_EIO, errno, "could not wait for \"%s\"", argv[0]);
    if (n == (ssize_t)sizeof(child_errno) && child_errno)
        return wv_err_errno(err, WV_EIO, child_errno, "could not run \"%s\"%s%s", argv[0],
                            as && geteuid() == 0 ? " as " : "",
                            as && geteuid() == 0 ? as->name : "");
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 0;
}

static uid_t tree_uid;
static gid_t tree_gid;
static int tree_errno;
static char tree_failed[4096];

static int chown_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (lchown(p, tree_uid, tree_gid) != 0) {
        tree_errno = errno;
        snprintf(tree_failed, sizeof(tree_failed), "%s", p);
        return 1;
    }
    return 0;
}

int wv_pgserver_chown_tree(const char *path, uid_t uid, gid_t gid, wv_err *err)
{
    tree_uid = uid;
    tree_gid = gid;
    tree_errno = 0;
    if (nftw(path, chown_one, 32, FTW_PHYS) != 0)
        return wv_err_errno(err, WV_EIO, tree_errno ? tree_errno : errno,
                            "could not change the owner of \"%s\"",
                            tree_errno ? tree_failed : path);
    return 0;
}

static int remove_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(p) : unlink(p)) != 0 && errno != ENOENT) {
        tree_errno = errno;
        snprintf(tree_failed, sizeof(tree_failed), "%s", p);
        return 1;
    }
    return 0;
}

int wv_pgserver_remove_tree(const char *path, wv_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT)
        return 0;
    tree_errno = 0;
    if (nftw(path, remove_one, 32, FTW_PHYS | FTW_DEPTH) != 0)
        return wv_err_errno(err, WV_EIO, tree_errno ? tree_errno : errno, "could not remove \"%s\"",
                            tree_errno ? tree_failed : path);
    return 0;
}
