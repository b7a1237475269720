/*
 * pidfile_resource.c: a clusterkit resource type written in C against
 * include/clusterkit.h, loaded by the Rust host like any other library.
 *
 * Type `pidfile-process` (REATTACH): supervises one process.
 *   command      multi-string, required: the argv to run (no shell)
 *   pidfile      string, required: where its pid is kept
 *   stop_timeout duration, default 250 ms: SIGTERM grace before SIGKILL
 *
 * online starts the command in its own session and writes the pidfile;
 * looks_alive checks the process exists and is not a zombie; is_alive also
 * checks that /proc/<pid>/cmdline is still the command (pid reuse);
 * offline sends SIGTERM, then SIGKILL after stop_timeout; terminate sends
 * SIGKILL. open with recover = true adopts the process named by the
 * pidfile when it is alive and runs the command.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clusterkit.h"

#define MAX_ARGS 64

typedef struct {
    pthread_mutex_t lock; /* terminate may run while another call does */
    char *name;
    char *pidfile;
    char **argv; /* NULL-terminated */
    uint64_t stop_timeout_ms;
    pid_t pid;   /* 0: not running */
    int is_child;
    ck_logger log;
} resource;

/* ---- errors and logging ---- */

static int32_t fail(ck_error *error, int32_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int32_t fail(ck_error *error, int32_t code, const char *fmt, ...) {
    if (error) {
        va_list args;
        va_start(args, fmt);
        int n = vsnprintf((char *)error->message, CK_ERROR_MESSAGE_CAPACITY, fmt, args);
        va_end(args);
        error->code = code;
        error->message_len = n < 0 ? 0 : (uint32_t)(n < CK_ERROR_MESSAGE_CAPACITY ? n : CK_ERROR_MESSAGE_CAPACITY - 1);
    }
    return code;
}

static void say(const resource *r, uint32_t level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(const resource *r, uint32_t level, const char *fmt, ...) {
    if (!r->log.log) return;
    char line[512];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (n < 0) return;
    r->log.log(r->log.context, level, (ck_str){(const uint8_t *)line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1});
}

/* ---- property-list decoding (docs/PROPERTY-LIST.md), bounds-checked ---- */

typedef struct {
    const uint8_t *p;
    size_t left;
} reader;

static int take(reader *r, size_t n, const uint8_t **out) {
    if (n > r->left) return -1;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return 0;
}
static int get_u8(reader *r, uint8_t *v) {
    const uint8_t *b;
    if (take(r, 1, &b)) return -1;
    *v = b[0];
    return 0;
}
static int get_u32(reader *r, uint32_t *v) {
    const uint8_t *b;
    if (take(r, 4, &b)) return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}
static int get_u64(reader *r, uint64_t *v) {
    uint32_t lo, hi;
    if (get_u32(r, &lo) || get_u32(r, &hi)) return -1;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}
static char *get_string(reader *r) {
    uint32_t n;
    const uint8_t *b;
    if (get_u32(r, &n) || take(r, n, &b)) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    memcpy(s, b, n);
    s[n] = 0;
    return s;
}

static void free_argv(char **argv) {
    if (!argv) return;
    for (char **a = argv; *a; a++) free(*a);
    free(argv);
}

static void free_resource(resource *r) {
    free(r->name);
    free(r->pidfile);
    free_argv(r->argv);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Decodes the properties the host validated against our schema. */
static int32_t decode(resource *r, ck_bytes props, ck_error *error) {
    reader rd = {props.ptr, props.len};
    const uint8_t *magic;
    uint32_t count;
    uint8_t v0, v1, f0, f1;
    if (take(&rd, 4, &magic) || memcmp(magic, "CKPL", 4) || get_u8(&rd, &v0) || get_u8(&rd, &v1) ||
        get_u8(&rd, &f0) || get_u8(&rd, &f1) || v0 != 1 || v1 != 0 || get_u32(&rd, &count))
        return fail(error, CK_E_INVALID_INPUT, "properties: not a version 1 property list");
    for (uint32_t i = 0; i < count; i++) {
        uint8_t name_len, kind;
        const uint8_t *name;
        if (get_u8(&rd, &name_len) || take(&rd, name_len, &name) || get_u8(&rd, &kind))
            return fail(error, CK_E_INVALID_INPUT, "properties: truncated entry %u", i);
        int is = 0;
#define NAMED(lit) (name_len == sizeof(lit) - 1 && !memcmp(name, lit, name_len))
        if (NAMED("command") && kind == CK_KIND_MULTI_STRING) {
            uint32_t n;
            if (get_u32(&rd, &n) || n == 0 || n >= MAX_ARGS)
                return fail(error, CK_E_INVALID_PROPERTIES, "property `command`: needs 1 to %d arguments", MAX_ARGS - 1);
            free_argv(r->argv);
            r->argv = calloc(n + 1, sizeof(char *));
            if (!r->argv) return fail(error, CK_E_INTERNAL, "out of memory");
            for (uint32_t a = 0; a < n; a++)
                if (!(r->argv[a] = get_string(&rd)))
                    return fail(error, CK_E_INVALID_INPUT, "property `command`: truncated");
            is = 1;
        } else if (NAMED("pidfile") && kind == CK_KIND_STRING) {
            free(r->pidfile);
            if (!(r->pidfile = get_string(&rd))) return fail(error, CK_E_INVALID_INPUT, "property `pidfile`: truncated");
            is = 1;
        } else if (NAMED("stop_timeout") && kind == CK_KIND_DURATION) {
            if (get_u64(&rd, &r->stop_timeout_ms)) return fail(error, CK_E_INVALID_INPUT, "property `stop_timeout`: truncated");
            is = 1;
        }
#undef NAMED
        if (!is) return fail(error, CK_E_INVALID_PROPERTIES, "property `%.*s`: unknown property", (int)name_len, (const char *)name);
    }
    if (!r->argv) return fail(error, CK_E_INVALID_PROPERTIES, "property `command`: required but not given");
    if (!r->pidfile || !*r->pidfile) return fail(error, CK_E_INVALID_PROPERTIES, "property `pidfile`: required but not given");
    return CK_OK;
}

/* ---- the process ---- */

/* Whether `pid` runs our command: /proc/<pid>/cmdline starts with argv[0]. */
static int runs_our_command(const resource *r, pid_t pid) {
    char path[64], cmdline[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    if (n <= 0) return 0;
    cmdline[n] = 0;
    return strcmp(cmdline, r->argv[0]) == 0;
}

/* Whether `pid` exists and is not a zombie (reaping it if it is our child). */
static int alive(resource *r, pid_t pid) {
    if (pid <= 0) return 0;
    if (r->is_child && waitpid(pid, NULL, WNOHANG) == pid) return 0;
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (n <= 0) return 0;
    stat[n] = 0;
    const char *close_paren = strrchr(stat, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z';
}

static void stop_process(resource *r, int sig, uint64_t grace_ms) {
    if (r->pid <= 0) return;
    kill(r->pid, sig);
    for (uint64_t waited = 0; alive(r, r->pid) && waited < grace_ms; waited += 5) {
        struct timespec t = {0, 5 * 1000000L};
        nanosleep(&t, NULL);
    }
    if (alive(r, r->pid)) {
        kill(r->pid, SIGKILL);
        if (r->is_child) waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
    unlink(r->pidfile);
}

/* ---- entry points ---- */

static int32_t pf_open(void *type_context, ck_str name, ck_bytes properties, bool recover, ck_logger logger,
                       void **out, ck_error *error) {
    (void)type_context;
    resource *r = calloc(1, sizeof *r);
    if (!r) return fail(error, CK_E_INTERNAL, "out of memory");
    pthread_mutex_init(&r->lock, NULL);
    r->log = logger;
    r->stop_timeout_ms = 250;
    r->name = strndup((const char *)name.ptr, name.len);
    int32_t code = decode(r, properties, error);
    if (code != CK_OK) {
        free_resource(r);
        return code;
    }
    if (recover) {
        FILE *f = fopen(r->pidfile, "r");
        int pid = 0;
        if (f) {
            if (fscanf(f, "%d", &pid) != 1) pid = 0;
            fclose(f);
        }
        if (pid > 0 && alive(r, pid) && runs_our_command(r, pid)) {
            r->pid = pid;
            say(r, CK_LOG_INFO, "re-attached to process %d", pid);
        } else if (pid > 0) {
            say(r, CK_LOG_WARN, "stale pidfile %s (process %d is gone or not ours): not adopted", r->pidfile, pid);
        }
    }
    *out = r;
    return CK_OK;
}

static int32_t pf_close(void *handle, ck_error *error) {
    (void)error;
    free_resource(handle);
    return CK_OK;
}

static int32_t pf_online(void *handle, ck_status_reporter reporter, uint32_t *state, ck_error *error) {
    (void)reporter;
    resource *r = handle;
    pthread_mutex_lock(&r->lock);
    if (r->pid > 0 && alive(r, r->pid)) {
        pthread_mutex_unlock(&r->lock);
        *state = CK_STATE_ONLINE;
        return CK_OK;
    }
    /* The child reports a failed exec through this pipe; exec closes it
     * (O_CLOEXEC). Online returns once the command runs, so that is_alive
     * never sees the forked copy of this process. */
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        pthread_mutex_unlock(&r->lock);
        return fail(error, CK_E_IO, "pipe2: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(exec_pipe[0]);
        close(exec_pipe[1]);
        pthread_mutex_unlock(&r->lock);
        return fail(error, CK_E_IO, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        setsid();
        execvp(r->argv[0], r->argv);
        int e = errno;
        ssize_t ignored = write(exec_pipe[1], &e, sizeof e);
        (void)ignored;
        _exit(127);
    }
    close(exec_pipe[1]);
    int exec_errno = 0;
    ssize_t got;
    do {
        got = read(exec_pipe[0], &exec_errno, sizeof exec_errno);
    } while (got < 0 && errno == EINTR);
    close(exec_pipe[0]);
    if (got == (ssize_t)sizeof exec_errno) {
        waitpid(pid, NULL, 0);
        pthread_mutex_unlock(&r->lock);
        return fail(error, CK_E_FAILED, "running %s: %s", r->argv[0], strerror(exec_errno));
    }
    r->pid = pid;
    r->is_child = 1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->pidfile);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", (int)pid) < 0 || fclose(f) != 0 || rename(tmp, r->pidfile) != 0) {
        stop_process(r, SIGKILL, 0);
        pthread_mutex_unlock(&r->lock);
        return fail(error, CK_E_IO, "writing pidfile %s: %s", r->pidfile, strerror(errno));
    }
    say(r, CK_LOG_INFO, "started %s as process %d", r->argv[0], (int)pid);
    pthread_mutex_unlock(&r->lock);
    *state = CK_STATE_ONLINE;
    return CK_OK;
}

static int32_t pf_offline(void *handle, ck_status_reporter reporter, uint32_t *state, ck_error *error) {
    (void)reporter;
    (void)error;
    resource *r = handle;
    pthread_mutex_lock(&r->lock);
    stop_process(r, SIGTERM, r->stop_timeout_ms);
    pthread_mutex_unlock(&r->lock);
    *state = CK_STATE_OFFLINE;
    return CK_OK;
}

static int32_t pf_terminate(void *handle, ck_error *error) {
    (void)error;
    resource *r = handle;
    pthread_mutex_lock(&r->lock);
    stop_process(r, SIGKILL, 0);
    pthread_mutex_unlock(&r->lock);
    return CK_OK;
}

static void set_health(ck_health *h, uint32_t status, const char *reason) {
    size_t n = strlen(reason);
    if (n > CK_HEALTH_REASON_CAPACITY) n = CK_HEALTH_REASON_CAPACITY;
    h->status = status;
    h->reason_len = (uint32_t)n;
    memcpy(h->reason, reason, n);
}

static int32_t pf_looks_alive(void *handle, ck_health *health, ck_error *error) {
    (void)error;
    resource *r = handle;
    pthread_mutex_lock(&r->lock);
    int ok = alive(r, r->pid);
    pthread_mutex_unlock(&r->lock);
    set_health(health, ok ? CK_HEALTH_HEALTHY : CK_HEALTH_FAILED, ok ? "" : "the process is gone");
    return CK_OK;
}

static int32_t pf_is_alive(void *handle, ck_health *health, ck_error *error) {
    (void)error;
    resource *r = handle;
    pthread_mutex_lock(&r->lock);
    int ok = alive(r, r->pid);
    int ours = ok && runs_our_command(r, r->pid);
    pthread_mutex_unlock(&r->lock);
    set_health(health, ours ? CK_HEALTH_HEALTHY : CK_HEALTH_FAILED,
               ours ? "" : ok ? "the pid now runs another program" : "the process is gone");
    return CK_OK;
}

/* ---- the table ---- */


static const ck_property_spec properties[] = {
    {{(const uint8_t *)"command", 7}, {(const uint8_t *)"The program and its arguments (no shell)", 40},
     CK_KIND_MULTI_STRING, CK_PROPERTY_REQUIRED | CK_PROPERTY_HAS_MIN, 1, 0, {CK_KIND_NONE, 0, 0, {NULL, 0}}},
    {{(const uint8_t *)"pidfile", 7}, {(const uint8_t *)"Where the process id is kept", 28},
     CK_KIND_STRING, CK_PROPERTY_REQUIRED | CK_PROPERTY_HAS_MIN, 1, 0, {CK_KIND_NONE, 0, 0, {NULL, 0}}},
    {{(const uint8_t *)"stop_timeout", 12}, {(const uint8_t *)"SIGTERM grace before SIGKILL", 28},
     CK_KIND_DURATION, CK_PROPERTY_HAS_MAX, 0, 10000, {CK_KIND_DURATION, 0, 250, {NULL, 0}}},
};

static const ck_type pidfile_type = {
    .struct_size = sizeof(ck_type),
    .name = {(const uint8_t *)"pidfile-process", 15},
    .description = {(const uint8_t *)"Supervises one process by pidfile (written in C)", 48},
    .characteristics = CK_CHARACTERISTIC_REATTACH,
    .properties = properties,
    .property_count = sizeof properties / sizeof *properties,
    .context = NULL,
    .open = pf_open,
    .close = pf_close,
    .online = pf_online,
    .offline = pf_offline,
    .terminate = pf_terminate,
    .looks_alive = pf_looks_alive,
    .is_alive = pf_is_alive,
};

static const ck_type *const types[] = {&pidfile_type};

static void free_buffer(ck_buffer buffer) { free(buffer.ptr); }

static const ck_library library = {
    .abi_version = CK_ABI_VERSION,
    .struct_size = sizeof(ck_library),
    .type_count = 1,
    .types = types,
    .free_buffer = free_buffer,
    .shutdown = NULL,
    .name = {(const uint8_t *)"pidfile-resource", 16},
    .version = {(const uint8_t *)"0.1.0", 5},
};

const ck_library *clusterkit_startup(const ck_host *host, ck_error *error) {
    if (!host || host->abi_version >> 16 != CK_ABI_VERSION_MAJOR) {
        fail(error, CK_E_ABI, "this library speaks clusterkit ABI %u.%u, the host %u.%u", CK_ABI_VERSION_MAJOR,
             CK_ABI_VERSION_MINOR, host ? host->abi_version >> 16 : 0, host ? host->abi_version & 0xffff : 0);
        return NULL;
    }
    return &library;
}
