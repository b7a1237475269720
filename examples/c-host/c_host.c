/*
 * c_host: a clusterkit host written in C, against include/clusterkit.h.
 *
 * Loads any clusterkit resource library with dlopen, lists its types and
 * property schemas, and drives one resource through
 * open -> online -> looks_alive -> is_alive -> offline -> close,
 * printing each result. Pending operations are followed through their
 * status reports; `--terminate-after MS` calls terminate from a second
 * thread while online is pending.
 *
 *   c_host LIBRARY [--terminate-after MS] [--control CODE] [TYPE NAME [KEY=VALUE ...]]
 *
 * Values are encoded by the property's declared kind (bool, u32, u64, i64,
 * duration in ms, string, multi-string comma-separated, bytes in hex).
 * Exit status: 0 when every step succeeded, 1 when one failed, 2 on a
 * usage or load error.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clusterkit.h"

/* ---- small helpers ---- */

static void print_str(ck_str s) { fwrite(s.ptr, 1, s.len, stdout); }

static const char *kind_name(uint32_t kind) {
    switch (kind) {
    case CK_KIND_BOOL: return "bool";
    case CK_KIND_U32: return "u32";
    case CK_KIND_U64: return "u64";
    case CK_KIND_I64: return "i64";
    case CK_KIND_STRING: return "string";
    case CK_KIND_MULTI_STRING: return "multi-string";
    case CK_KIND_BYTES: return "bytes";
    case CK_KIND_DURATION: return "duration";
    default: return "?";
    }
}

static const char *state_name(uint32_t state) {
    switch (state) {
    case CK_STATE_ONLINE: return "online";
    case CK_STATE_OFFLINE: return "offline";
    case CK_STATE_ONLINE_PENDING: return "online_pending";
    case CK_STATE_OFFLINE_PENDING: return "offline_pending";
    case CK_STATE_FAILED: return "failed";
    default: return "unknown";
    }
}

static void print_error(int32_t code, const ck_error *error) {
    uint32_t len = error->message_len;
    if (len > CK_ERROR_MESSAGE_CAPACITY) len = CK_ERROR_MESSAGE_CAPACITY;
    printf("error %d: %.*s\n", code, (int)len, (const char *)error->message);
}

/* ---- property-list encoding (docs/PROPERTY-LIST.md) ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} buffer;

static void put(buffer *b, const void *bytes, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) { perror("realloc"); exit(2); }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

static void put_u8(buffer *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(buffer *b, uint32_t v) {
    uint8_t le[4] = {v, v >> 8, v >> 16, v >> 24};
    put(b, le, 4);
}
static void put_u64(buffer *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_bytes(buffer *b, const void *p, size_t n) {
    put_u32(b, (uint32_t)n);
    put(b, p, n);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends one entry; returns 0, or -1 with a message when `text` does not fit `kind`. */
static int encode_entry(buffer *b, const char *name, uint32_t kind, const char *text) {
    char *end = NULL;
    put_u8(b, (uint8_t)strlen(name));
    put(b, name, strlen(name));
    put_u8(b, (uint8_t)kind);
    errno = 0;
    switch (kind) {
    case CK_KIND_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1")) put_u8(b, 1);
        else if (!strcmp(text, "false") || !strcmp(text, "0")) put_u8(b, 0);
        else goto bad;
        return 0;
    case CK_KIND_U32: {
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || *end || v > UINT32_MAX || text[0] == '-') goto bad;
        put_u32(b, (uint32_t)v);
        return 0;
    }
    case CK_KIND_U64:
    case CK_KIND_DURATION: {
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || *end || text[0] == '-') goto bad;
        put_u64(b, v);
        return 0;
    }
    case CK_KIND_I64: {
        long long v = strtoll(text, &end, 10);
        if (errno || *end) goto bad;
        put_u64(b, (uint64_t)v);
        return 0;
    }
    case CK_KIND_STRING:
        put_bytes(b, text, strlen(text));
        return 0;
    case CK_KIND_MULTI_STRING: {
        uint32_t count = 0;
        if (*text) {
            count = 1;
            for (const char *p = text; *p; p++) count += *p == ',';
        }
        put_u32(b, count);
        const char *start = text;
        for (uint32_t i = 0; i < count; i++) {
            const char *comma = strchr(start, ',');
            size_t n = comma ? (size_t)(comma - start) : strlen(start);
            put_bytes(b, start, n);
            start += n + 1;
        }
        return 0;
    }
    case CK_KIND_BYTES: {
        size_t n = strlen(text);
        if (n % 2) goto bad;
        put_u32(b, (uint32_t)(n / 2));
        for (size_t i = 0; i < n; i += 2) {
            int hi = hex_digit(text[i]), lo = hex_digit(text[i + 1]);
            if (hi < 0 || lo < 0) goto bad;
            put_u8(b, (uint8_t)(hi << 4 | lo));
        }
        return 0;
    }
    }
bad:
    fprintf(stderr, "c_host: property %s: %s is not a valid %s\n", name, text, kind_name(kind));
    return -1;
}

/* ---- host callbacks ---- */

static void host_log(void *context, uint32_t level, ck_str message) {
    printf("  log %s level %u: %.*s\n", (const char *)context, level, (int)message.len,
           (const char *)message.ptr);
    fflush(stdout);
}

/* One pending operation's rendezvous: reports from any thread, completion once. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    int done;
    uint32_t final_state;
    int32_t error_code;
    ck_error error;
    uint32_t reports;
} pending;

static uint32_t host_report(void *context, uint32_t state, uint32_t checkpoint, uint64_t wait_hint_ms) {
    pending *p = context;
    pthread_mutex_lock(&p->lock);
    p->reports++;
    pthread_mutex_unlock(&p->lock);
    printf("  report: %s checkpoint %u, next within %" PRIu64 " ms\n", state_name(state), checkpoint,
           wait_hint_ms);
    fflush(stdout);
    return CK_REPLY_CONTINUE;
}

static void host_complete(void *context, uint32_t state, const ck_error *error) {
    pending *p = context;
    pthread_mutex_lock(&p->lock);
    if (!p->done) {
        p->done = 1;
        p->final_state = state;
        if (error) {
            p->error = *error;
            p->error_code = error->code;
        }
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->lock);
}

static void pending_init(pending *p) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->done_cv, NULL);
}

static void pending_destroy(pending *p) {
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->done_cv);
}

/* Waits for completion, at most `limit_ms`; returns 0 when it completed. */
static int pending_wait(pending *p, long limit_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += limit_ms / 1000;
    deadline.tv_nsec += (limit_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (!p->done && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&p->done_cv, &p->lock, &deadline);
    int done = p->done;
    pthread_mutex_unlock(&p->lock);
    return done ? 0 : -1;
}

/* ---- terminate from a second thread ---- */

typedef struct {
    const ck_type *type;
    void *resource;
    long after_ms;
} terminator;

static void *terminate_later(void *arg) {
    terminator *t = arg;
    struct timespec delay = {t->after_ms / 1000, (t->after_ms % 1000) * 1000000L};
    nanosleep(&delay, NULL);
    ck_error error;
    int32_t code = t->type->terminate(t->resource, &error);
    printf("terminate (second thread): ");
    if (code == CK_OK) printf("ok\n");
    else print_error(code, &error);
    fflush(stdout);
    return NULL;
}

/* ---- the lifecycle ---- */

static int failures = 0;

static void report_call(const char *what, int32_t code, const ck_error *error) {
    printf("%s: ", what);
    if (code == CK_OK) printf("ok\n");
    else {
        print_error(code, error);
        failures++;
    }
}

static void health(const char *what, ck_health_fn check, void *resource) {
    ck_health h;
    ck_error error;
    int32_t code = check(resource, &h, &error);
    if (code != CK_OK) {
        printf("%s: ", what);
        print_error(code, &error);
        failures++;
        return;
    }
    uint32_t len = h.reason_len > CK_HEALTH_REASON_CAPACITY ? CK_HEALTH_REASON_CAPACITY : h.reason_len;
    const char *status = h.status == CK_HEALTH_HEALTHY ? "healthy" : h.status == CK_HEALTH_DEGRADED ? "degraded" : "failed";
    printf("%s: %s%s%.*s\n", what, status, len ? ": " : "", (int)len, (const char *)h.reason);
    if (h.status == CK_HEALTH_FAILED) failures++;
}

/* Runs online or offline and follows a pending operation to its end. */
static void transition(const char *what, ck_transition_fn call, const ck_type *type, void *resource,
                       pending *pp, long terminate_after_ms) {
    pending_init(pp);
    ck_status_reporter reporter = {pp, host_report, host_complete};
    uint32_t state = 0;
    ck_error error;
    int32_t code = call(resource, reporter, &state, &error);
    if (code != CK_OK) {
        printf("%s: ", what);
        print_error(code, &error);
        failures++;
    } else if (state == CK_STATE_ONLINE_PENDING || state == CK_STATE_OFFLINE_PENDING) {
        printf("%s: pending\n", what);
        fflush(stdout);
        pthread_t thread;
        terminator t = {type, resource, terminate_after_ms};
        int terminating = terminate_after_ms >= 0 && pthread_create(&thread, NULL, terminate_later, &t) == 0;
        if (pending_wait(pp, 120000) != 0) {
            printf("%s: no completion within 120 s\n", what);
            failures++;
        } else if (pp->final_state == CK_STATE_FAILED) {
            printf("%s: completed: failed after %u reports: ", what, pp->reports);
            print_error(pp->error_code, &pp->error);
            failures++;
        } else {
            printf("%s: completed: %s after %u reports\n", what, state_name(pp->final_state), pp->reports);
        }
        if (terminating) pthread_join(thread, NULL);
    } else {
        printf("%s: ok state=%s\n", what, state_name(state));
    }
    fflush(stdout);
}

static void print_schema(const ck_type *type) {
    printf("type ");
    print_str(type->name);
    printf(": ");
    print_str(type->description);
    printf(" (characteristics 0x%" PRIx64 ")\n", type->characteristics);
    /* Since ABI 1.2, and only when the library's ck_type is that long. */
    const uint32_t *extra = NULL;
    if (type->struct_size >= offsetof(ck_type, property_extra_flags) + sizeof extra)
        extra = type->property_extra_flags;
    for (size_t i = 0; i < type->property_count; i++) {
        const ck_property_spec *s = &type->properties[i];
        printf("  ");
        print_str(s->name);
        printf(" %s%s%s%s", kind_name(s->kind), s->flags & CK_PROPERTY_REQUIRED ? " required" : "",
               s->flags & CK_PROPERTY_READ_ONLY ? " read-only" : "",
               extra && (extra[i] & CK_PROPERTY_EXTRA_SECRET) ? " secret" : "");
        if (s->flags & CK_PROPERTY_HAS_MIN) printf(" min %" PRIu64, s->min);
        if (s->flags & CK_PROPERTY_HAS_MAX) printf(" max %" PRIu64, s->max);
        if (s->default_value.kind != CK_KIND_NONE) {
            if (s->default_value.kind == CK_KIND_STRING)
                printf(" default \"%.*s\"", (int)s->default_value.data.len, (const char *)s->default_value.data.ptr);
            else if (s->default_value.kind != CK_KIND_MULTI_STRING && s->default_value.kind != CK_KIND_BYTES)
                printf(" default %" PRIu64, s->default_value.number);
        }
        printf(": ");
        print_str(s->description);
        printf("\n");
    }
}

int main(int argc, char **argv) {
    long terminate_after_ms = -1;
    long control_code = -1;
    int arg = 1;
    const char *path = NULL;
    const char *positional[3 + 64];
    int npositional = 0;
    for (; arg < argc; arg++) {
        if (!strcmp(argv[arg], "--terminate-after") && arg + 1 < argc) terminate_after_ms = atol(argv[++arg]);
        else if (!strcmp(argv[arg], "--control") && arg + 1 < argc) control_code = strtol(argv[++arg], NULL, 0);
        else if (npositional < (int)(sizeof positional / sizeof *positional)) positional[npositional++] = argv[arg];
    }
    if (npositional < 1) {
        fprintf(stderr, "usage: c_host LIBRARY [--terminate-after MS] [--control CODE] [TYPE NAME [KEY=VALUE ...]]\n");
        return 2;
    }
    path = positional[0];
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        fprintf(stderr, "c_host: %s\n", dlerror());
        return 2;
    }
    ck_startup_fn startup = (ck_startup_fn)dlsym(dl, "clusterkit_startup");
    if (!startup) {
        fprintf(stderr, "c_host: %s does not export clusterkit_startup\n", path);
        dlclose(dl);
        return 2;
    }
    ck_host host = {CK_ABI_VERSION, sizeof(ck_host), {"library", host_log}};
    ck_error error;
    const ck_library *library = startup(&host, &error);
    if (!library) {
        printf("startup: ");
        print_error(error.code, &error);
        dlclose(dl);
        return 2;
    }
    if (library->abi_version >> 16 != CK_ABI_VERSION_MAJOR) {
        printf("c_host: %s speaks ABI %u.%u, this host %u.%u\n", path, library->abi_version >> 16,
               library->abi_version & 0xffff, CK_ABI_VERSION_MAJOR, CK_ABI_VERSION_MINOR);
        return 2; /* its table layout is unknown: do not touch it again */
    }
    printf("loaded %s: ABI %u.%u", path, library->abi_version >> 16, library->abi_version & 0xffff);
    if (library->struct_size >= offsetof(ck_library, version) + sizeof(ck_str)) {
        printf(", library ");
        print_str(library->name);
        printf(" ");
        print_str(library->version);
    }
    printf("\n");
    for (size_t i = 0; i < library->type_count; i++) print_schema(library->types[i]);

    if (npositional >= 3) {
        const ck_type *type = NULL;
        for (size_t i = 0; i < library->type_count; i++) {
            const ck_type *t = library->types[i];
            if (t->name.len == strlen(positional[1]) && !memcmp(t->name.ptr, positional[1], t->name.len)) type = t;
        }
        if (!type) {
            fprintf(stderr, "c_host: no type %s in %s\n", positional[1], path);
            return 2;
        }
        buffer props = {0};
        put(&props, "CKPL", 4);
        put_u8(&props, 1); put_u8(&props, 0); /* version 1 */
        put_u8(&props, 0); put_u8(&props, 0); /* flags */
        put_u32(&props, (uint32_t)(npositional - 3));
        for (int i = 3; i < npositional; i++) {
            const char *eq = strchr(positional[i], '=');
            if (!eq) { fprintf(stderr, "c_host: %s is not KEY=VALUE\n", positional[i]); return 2; }
            char name[256];
            size_t n = (size_t)(eq - positional[i]);
            if (n == 0 || n > 255) { fprintf(stderr, "c_host: bad property name in %s\n", positional[i]); return 2; }
            memcpy(name, positional[i], n);
            name[n] = 0;
            uint32_t kind = 0;
            for (size_t s = 0; s < type->property_count; s++)
                if (type->properties[s].name.len == n && !memcmp(type->properties[s].name.ptr, name, n))
                    kind = type->properties[s].kind;
            if (!kind) { fprintf(stderr, "c_host: type has no property %s\n", name); return 2; }
            if (encode_entry(&props, name, kind, eq + 1) != 0) return 2;
        }
        const char *resource_name = positional[2];
        void *resource = NULL;
        ck_logger logger = {"resource", host_log};
        int32_t code = type->open(type->context, (ck_str){(const uint8_t *)resource_name, strlen(resource_name)},
                                  (ck_bytes){props.data, props.len}, false, logger, &resource, &error);
        free(props.data);
        report_call("open", code, &error);
        if (code == CK_OK) {
            if (control_code >= 0 && type->control) {
                ck_buffer out = {0};
                code = type->control(resource, (uint32_t)control_code, (ck_bytes){NULL, 0}, &out, &error);
                report_call("control", code, &error);
                library->free_buffer(out);
            }
            /* A reporter's context must stay valid until close returns. */
            pending online_status, offline_status;
            transition("online", type->online, type, resource, &online_status, terminate_after_ms);
            health("looks_alive", type->looks_alive, resource);
            health("is_alive", type->is_alive, resource);
            transition("offline", type->offline, type, resource, &offline_status, -1);
            code = type->close(resource, &error);
            report_call("close", code, &error);
            pending_destroy(&online_status);
            pending_destroy(&offline_status);
        }
    }
    if (library->shutdown) library->shutdown(library);
    dlclose(dl);
    return failures ? 1 : 0;
}
