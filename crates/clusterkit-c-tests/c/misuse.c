/*
 * misuse: an outside-in check of the clusterkit C ABI, written from
 * include/clusterkit.h and docs/C-API.md alone. Each scenario misuses (or
 * carefully uses) a resource library the way a C host might, and checks
 * what the documentation promises. It runs under ASan + UBSan and under
 * valgrind (crates/clusterkit-c-tests/tests/misuse.rs).
 *
 *   misuse SCENARIO LIBRARY [STATE_DIR]
 *
 * Prints "FAIL file:line: ..." for each broken promise and "ok SCENARIO"
 * at the end; exits 1 if anything failed, 2 on a usage or load error.
 * Cases that docs/C-API.md lists as undefined (a call after close, a
 * double close, a call after shutdown) are deliberately not exercised.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clusterkit.h"

/* ---- what the header itself promises, checked at compile time ---- */

_Static_assert(_Generic(CK_CONTROL_TYPE_SPECIFIC_BASE, unsigned int: 1, default: 0),
               "CK_CONTROL_TYPE_SPECIFIC_BASE is an unsigned int, not a long");
_Static_assert(CK_LIBRARY_SIZE_1_0 == offsetof(struct ck_library, name),
               "a 1.0 ck_library ends after shutdown");
_Static_assert(CK_HOST_SIZE_1_0 == sizeof(struct ck_host), "ck_host is still the 1.0 layout");
_Static_assert(CK_TYPE_SIZE_1_0 < sizeof(struct ck_type), "ck_type grew in 1.2");
_Static_assert(CK_ABI_VERSION == ((1u << 16) | 2u), "this suite is written against ABI 1.2");

/* ---- reporting ---- */

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
            fflush(stdout);                                                \
        }                                                                  \
    } while (0)

static int message_contains(const ck_error *e, const char *needle) {
    size_t len = e->message_len < CK_ERROR_MESSAGE_CAPACITY ? e->message_len : CK_ERROR_MESSAGE_CAPACITY;
    char text[CK_ERROR_MESSAGE_CAPACITY + 1];
    memcpy(text, e->message, len);
    text[len] = 0;
    return strstr(text, needle) != NULL;
}

static const char *message(const ck_error *e) {
    static __thread char text[CK_ERROR_MESSAGE_CAPACITY + 1];
    size_t len = e->message_len < CK_ERROR_MESSAGE_CAPACITY ? e->message_len : CK_ERROR_MESSAGE_CAPACITY;
    memcpy(text, e->message, len);
    text[len] = 0;
    return text;
}

/* A ck_error full of garbage: a call that "fills it in" must overwrite it. */
static ck_error garbage_error(void) {
    ck_error e;
    memset(&e, 0x5a, sizeof e);
    e.code = 77;
    e.message_len = 9999;
    return e;
}

static ck_str str(const char *s) { return (ck_str){(const uint8_t *)s, strlen(s)}; }

/* ---- loading ---- */

static void *dl;
static ck_startup_fn startup_fn;

static void load(const char *path) {
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        printf("cannot load %s: %s\n", path, dlerror());
        exit(2);
    }
    startup_fn = (ck_startup_fn)dlsym(dl, "clusterkit_startup");
    if (!startup_fn) {
        printf("%s has no clusterkit_startup\n", path);
        exit(2);
    }
}

static void host_log(void *context, uint32_t level, ck_str line) {
    (void)context;
    (void)level;
    (void)line;
}

static const ck_library *start(void) {
    ck_host host = {CK_ABI_VERSION, sizeof(ck_host), {NULL, host_log}};
    ck_error error = garbage_error();
    const ck_library *lib = startup_fn(&host, &error);
    if (!lib) {
        printf("startup failed: %d %s\n", error.code, message(&error));
        exit(2);
    }
    CHECK(error.code == CK_OK && error.message_len == 0,
          "startup succeeded but left ck_error as code %d, length %u", error.code, error.message_len);
    return lib;
}

static const ck_type *find_type(const ck_library *lib, const char *name) {
    for (size_t i = 0; i < lib->type_count; i++) {
        const ck_type *t = lib->types[i];
        if (t->name.len == strlen(name) && memcmp(t->name.ptr, name, t->name.len) == 0) return t;
    }
    printf("no type %s\n", name);
    exit(2);
}

/* ---- the property-list encoding (docs/PROPERTY-LIST.md) ---- */

typedef struct {
    uint8_t bytes[4096];
    size_t len;
    uint32_t count;
} plist;

static void put(plist *p, const void *data, size_t n) {
    memcpy(p->bytes + p->len, data, n);
    p->len += n;
}
static void put_u32(plist *p, uint32_t v) {
    uint8_t b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
    put(p, b, 4);
}
static void put_u64(plist *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p, (uint32_t)(v >> 32));
}
static void plist_init(plist *p) {
    p->len = 0;
    p->count = 0;
    put(p, "CKPL", 4);
    uint8_t version_flags[4] = {1, 0, 0, 0};
    put(p, version_flags, 4);
    put_u32(p, 0); /* count, patched by plist_bytes */
}
static void entry(plist *p, const char *name, uint8_t kind) {
    uint8_t n = (uint8_t)strlen(name);
    put(p, &n, 1);
    put(p, name, n);
    put(p, &kind, 1);
    p->count++;
}
static void put_string(plist *p, const char *name, const char *value) {
    entry(p, name, CK_KIND_STRING);
    put_u32(p, (uint32_t)strlen(value));
    put(p, value, strlen(value));
}
static void put_duration(plist *p, const char *name, uint64_t ms) {
    entry(p, name, CK_KIND_DURATION);
    put_u64(p, ms);
}
static void put_multi(plist *p, const char *name, const char *one) {
    entry(p, name, CK_KIND_MULTI_STRING);
    put_u32(p, 1);
    put_u32(p, (uint32_t)strlen(one));
    put(p, one, strlen(one));
}
static ck_bytes plist_bytes(plist *p) {
    uint32_t c = p->count;
    uint8_t b[4] = {c & 0xff, (c >> 8) & 0xff, (c >> 16) & 0xff, (c >> 24) & 0xff};
    memcpy(p->bytes + 8, b, 4);
    return (ck_bytes){p->bytes, p->len};
}

/* ---- a reporter context: one per pending operation ---- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int completed;
    int reports;
    uint32_t final_state;
    int32_t error_code;
    char error_message[CK_ERROR_MESSAGE_CAPACITY + 1];
} op;

static op *op_new(void) {
    op *o = calloc(1, sizeof *o);
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->changed, NULL);
    return o;
}

static void op_free(op *o) {
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->changed);
    free(o);
}

static uint32_t on_report(void *context, uint32_t state, uint32_t checkpoint, uint64_t wait_hint_ms) {
    (void)state;
    (void)checkpoint;
    (void)wait_hint_ms;
    op *o = context;
    pthread_mutex_lock(&o->lock);
    o->reports++;
    uint32_t reply = o->completed ? CK_REPLY_TERMINATE : CK_REPLY_CONTINUE;
    pthread_mutex_unlock(&o->lock);
    return reply;
}

static void on_complete(void *context, uint32_t state, const ck_error *error) {
    op *o = context;
    pthread_mutex_lock(&o->lock);
    o->completed++;
    o->final_state = state;
    /* `error` is valid only during this call (docs/C-API.md): copy it now. */
    if (error) {
        o->error_code = error->code;
        snprintf(o->error_message, sizeof o->error_message, "%s", message(error));
    }
    pthread_cond_broadcast(&o->changed);
    pthread_mutex_unlock(&o->lock);
}

static ck_status_reporter reporter(op *o) { return (ck_status_reporter){o, on_report, on_complete}; }

/* Waits (bounded, on a condition variable) for the operation to complete. */
static int op_wait(op *o, int seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&o->lock);
    while (!o->completed) {
        if (pthread_cond_timedwait(&o->changed, &o->lock, &until) == ETIMEDOUT) break;
    }
    int done = o->completed;
    pthread_mutex_unlock(&o->lock);
    return done;
}

static int op_completed(op *o) {
    pthread_mutex_lock(&o->lock);
    int n = o->completed;
    pthread_mutex_unlock(&o->lock);
    return n;
}

static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void *open_dummy(const ck_type *t, const char *name, const char *state_dir, uint64_t delay_ms) {
    plist p;
    plist_init(&p);
    put_duration(&p, "online_delay", delay_ms);
    put_string(&p, "state_dir", state_dir);
    void *resource = (void *)&p; /* must be overwritten */
    ck_error e = garbage_error();
    int32_t rc = t->open(t->context, str(name), plist_bytes(&p), false, (ck_logger){NULL, NULL}, &resource, &e);
    if (rc != CK_OK) {
        printf("open %s failed: %d %s\n", name, rc, message(&e));
        exit(2);
    }
    CHECK(e.code == CK_OK && e.message_len == 0, "open succeeded but ck_error is %d/%u", e.code, e.message_len);
    return resource;
}

static void close_ok(const ck_type *t, void *resource) {
    ck_error e = garbage_error();
    int32_t rc = t->close(resource, &e);
    CHECK(rc == CK_OK && e.code == CK_OK && e.message_len == 0, "close: %d %s", rc, message(&e));
}

/* ---- scenarios ---- */

static int logger_called;
static void counting_log(void *context, uint32_t level, ck_str line) {
    (void)context;
    (void)level;
    (void)line;
    logger_called++;
}

/* ck_host.struct_size below the 1.0 layout is refused, without reading
 * past the struct's end (a heap block of exactly that size: valgrind and
 * ASan see any over-read) and without calling the absent logger. */
static void scenario_host_size(void) {
    uint32_t *tiny = malloc(8);
    tiny[0] = CK_ABI_VERSION;
    tiny[1] = 8;
    ck_error e = garbage_error();
    const ck_library *lib = startup_fn((const ck_host *)tiny, &e);
    CHECK(lib == NULL, "an 8-byte ck_host was accepted");
    CHECK(e.code == CK_E_INVALID_INPUT, "code %d", e.code);
    CHECK(message_contains(&e, "struct_size is 8"), "message: %s", message(&e));
    free(tiny);

    ck_host zero = {CK_ABI_VERSION, 0, {NULL, counting_log}};
    e = garbage_error();
    lib = startup_fn(&zero, &e);
    CHECK(lib == NULL, "struct_size 0 was accepted");
    CHECK(e.code == CK_E_INVALID_INPUT, "code %d", e.code);
    CHECK(logger_called == 0, "the logger that struct_size says is absent was called %d times", logger_called);

    ck_host other_major = {(9u << 16) | 1u, sizeof(ck_host), {NULL, counting_log}};
    e = garbage_error();
    lib = startup_fn(&other_major, &e);
    CHECK(lib == NULL && e.code == CK_E_ABI, "another major: %p code %d", (const void *)lib, e.code);
    CHECK(message_contains(&e, "9.1"), "the message names the host's version: %s", message(&e));

    /* A newer host with a bigger struct is accepted; the tail is ignored. */
    unsigned char *big = calloc(1, sizeof(ck_host) + 64);
    ck_host newer = {CK_ABI_VERSION + 5, sizeof(ck_host) + 64, {NULL, host_log}};
    memcpy(big, &newer, sizeof newer);
    e = garbage_error();
    lib = startup_fn((const ck_host *)big, &e);
    CHECK(lib != NULL && e.code == CK_OK, "a bigger (newer minor) ck_host: code %d %s", e.code, message(&e));
    if (lib) lib->shutdown(lib);
    free(big);

    /* NULL host, NULL error: refused, nothing written anywhere. */
    CHECK(startup_fn(NULL, NULL) == NULL, "a NULL host was accepted");
}

/* Every out-pointer is written on every path (docs/C-API.md, "Guarantees
 * on failure"), and ck_error is written on success too. */
static void scenario_outputs(const char *state_dir) {
    const ck_library *lib = start();
    const ck_type *t = find_type(lib, "dummy");

    /* open with invalid properties: *resource is NULL, not left as it was. */
    plist p;
    plist_init(&p);
    put_string(&p, "colour", "blue");
    void *resource = (void *)&p;
    ck_error e = garbage_error();
    int32_t rc = t->open(t->context, str("web"), plist_bytes(&p), false, (ck_logger){NULL, NULL}, &resource, &e);
    CHECK(rc == CK_E_INVALID_PROPERTIES && e.code == rc, "open with bad properties: %d", rc);
    CHECK(resource == NULL, "a failed open left *resource = %p", resource);
    CHECK(message_contains(&e, "property `colour`: unknown property"), "%s", message(&e));

    /* A malformed property list. */
    uint8_t junk[5] = {'C', 'K', 'P', 'L', 9};
    resource = (void *)&p;
    rc = t->open(t->context, str("web"), (ck_bytes){junk, sizeof junk}, false, (ck_logger){NULL, NULL}, &resource, NULL);
    CHECK(rc == CK_E_INVALID_INPUT && resource == NULL, "malformed list: %d %p", rc, resource);

    /* open with a NULL resource pointer is refused, not a crash. */
    plist ok;
    plist_init(&ok);
    put_string(&ok, "state_dir", state_dir);
    e = garbage_error();
    rc = t->open(t->context, str("web"), plist_bytes(&ok), false, (ck_logger){NULL, NULL}, NULL, &e);
    CHECK(rc == CK_E_INVALID_INPUT && e.code == rc, "NULL resource pointer: %d", rc);

    /* type_control failing: *output is a valid (empty) buffer to free. */
    ck_buffer out = {(uint8_t *)0xdeadbeef, 12345};
    e = garbage_error();
    rc = t->type_control(t->context, CK_CONTROL_TYPE_SPECIFIC_BASE + 7, (ck_bytes){NULL, 0}, &out, &e);
    CHECK(rc == CK_E_UNSUPPORTED && e.code == rc, "unknown type control: %d", rc);
    CHECK(out.ptr == NULL && out.len == 0, "a failed type_control left output %p/%zu", (void *)out.ptr, out.len);
    lib->free_buffer(out); /* what a host freeing after every call does */

    /* Bad input to type_control: NULL pointer with a length. */
    out = (ck_buffer){(uint8_t *)0xdeadbeef, 1};
    rc = t->type_control(t->context, CK_CONTROL_GET_CHARACTERISTICS, (ck_bytes){NULL, 4}, &out, NULL);
    CHECK(rc == CK_E_INVALID_INPUT, "NULL input with length 4: %d", rc);
    CHECK(out.ptr == NULL && out.len == 0, "output %p/%zu", (void *)out.ptr, out.len);
    lib->free_buffer(out);

    /* A NULL output pointer is refused. */
    rc = t->type_control(t->context, CK_CONTROL_GET_CHARACTERISTICS, (ck_bytes){NULL, 0}, NULL, NULL);
    CHECK(rc == CK_E_INVALID_INPUT, "NULL output pointer: %d", rc);

    void *r = open_dummy(t, "web", state_dir, 0);

    /* control failing on a resource: *output set, freeable. */
    out = (ck_buffer){(uint8_t *)0xdeadbeef, 77};
    e = garbage_error();
    rc = t->control(r, CK_CONTROL_TYPE_SPECIFIC_BASE, (ck_bytes){NULL, 0}, &out, &e);
    CHECK(rc != CK_OK && e.code == rc, "unknown resource control: %d", rc);
    CHECK(out.ptr == NULL && out.len == 0, "a failed control left output %p/%zu", (void *)out.ptr, out.len);
    lib->free_buffer(out);

    /* Health checks: success writes ck_error; a NULL health pointer fails. */
    ck_health h;
    memset(&h, 0x5a, sizeof h);
    e = garbage_error();
    rc = t->looks_alive(r, &h, &e);
    CHECK(rc == CK_OK && e.code == CK_OK && e.message_len == 0, "looks_alive: %d, ck_error %d/%u", rc, e.code,
          e.message_len);
    CHECK(h.status == CK_HEALTH_FAILED && h.reason_len <= CK_HEALTH_REASON_CAPACITY,
          "an offline dummy looks failed: %u/%u", h.status, h.reason_len);
    rc = t->is_alive(r, NULL, NULL);
    CHECK(rc == CK_E_INVALID_INPUT, "NULL health pointer: %d", rc);

    /* A NULL resource handle: an error, and *health says failed. */
    memset(&h, 0x5a, sizeof h);
    e = garbage_error();
    rc = t->looks_alive(NULL, &h, &e);
    CHECK(rc == CK_E_INVALID_INPUT && e.code == rc, "NULL handle: %d", rc);
    CHECK(h.status == CK_HEALTH_FAILED && h.reason_len > 0 && h.reason_len <= CK_HEALTH_REASON_CAPACITY,
          "health after an error: %u/%u", h.status, h.reason_len);

    /* online done at once: *state written, ck_error written. */
    op *o = op_new();
    uint32_t state = 0xabcdef;
    e = garbage_error();
    rc = t->online(r, reporter(o), &state, &e);
    CHECK(rc == CK_OK && state == CK_STATE_ONLINE && e.code == CK_OK && e.message_len == 0, "online: %d state %u",
          rc, state);
    rc = t->online(r, reporter(o), NULL, &e);
    CHECK(rc == CK_E_INVALID_INPUT, "NULL state pointer: %d", rc);
    state = 0xabcdef;
    rc = t->offline(r, reporter(o), &state, NULL);
    CHECK(rc == CK_OK && state == CK_STATE_OFFLINE, "offline: %d state %u", rc, state);
    CHECK(op_completed(o) == 0, "an operation done at once also called complete");

    e = garbage_error();
    rc = t->terminate(r, &e);
    CHECK(rc == CK_OK && e.code == CK_OK && e.message_len == 0, "terminate: %d", rc);
    close_ok(t, r);
    op_free(o);
    lib->shutdown(lib);
}

/* Resource names follow the documented alphabet; open refuses the rest. */
static void scenario_names(const char *state_dir) {
    const ck_library *lib = start();
    const ck_type *t = find_type(lib, "dummy");
    plist p;
    plist_init(&p);
    put_string(&p, "state_dir", state_dir);
    ck_bytes props = plist_bytes(&p);
    char long_name[65];
    memset(long_name, 'n', 64);
    long_name[64] = 0;
    struct {
        ck_str name;
        const char *why;
    } bad[] = {
        {{(const uint8_t *)"", 0}, "empty"},
        {{NULL, 0}, "empty"},
        {{(const uint8_t *)"a\0b", 3}, "byte 1"},
        {str("../../etc/evil"), "must not start with"},
        {str("a/b"), "byte 1"},
        {str("-x"), "must not start with"},
        {str("with space"), "byte 4"},
        {str(long_name), "64 bytes"},
        {{(const uint8_t *)"\xff\xfe", 2}, "UTF-8"},
        {{NULL, 5}, "NULL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *resource = (void *)&p;
        ck_error e = garbage_error();
        int32_t rc = t->open(t->context, bad[i].name, props, false, (ck_logger){NULL, NULL}, &resource, &e);
        CHECK(rc == CK_E_INVALID_INPUT && e.code == rc, "name #%zu: %d", i, rc);
        CHECK(resource == NULL, "name #%zu: *resource = %p", i, resource);
        CHECK(message_contains(&e, bad[i].why), "name #%zu: %s", i, message(&e));
    }
    const char *good[] = {"web", "Web-01", "db_primary.2", long_name + 1 /* 63 bytes */};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        void *r = open_dummy(t, good[i], state_dir, 0);
        close_ok(t, r);
    }
    lib->shutdown(lib);
}

/* A reporter whose callbacks are NULL is refused with a clear error. */
static void scenario_reporter(const char *state_dir) {
    const ck_library *lib = start();
    const ck_type *t = find_type(lib, "dummy");
    void *r = open_dummy(t, "web", state_dir, 50);
    op *o = op_new();
    ck_status_reporter no_complete = {o, on_report, NULL};
    ck_status_reporter no_report = {o, NULL, on_complete};
    uint32_t state = 0xabcdef;
    ck_error e = garbage_error();
    int32_t rc = t->online(r, no_complete, &state, &e);
    CHECK(rc == CK_E_INVALID_INPUT && e.code == rc, "NULL complete: %d", rc);
    CHECK(state == CK_STATE_FAILED, "*state after an error: %u", state);
    CHECK(message_contains(&e, "`complete` callback is NULL"), "%s", message(&e));
    state = 0xabcdef;
    rc = t->offline(r, no_report, &state, &e);
    CHECK(rc == CK_E_INVALID_INPUT && state == CK_STATE_FAILED, "NULL report: %d %u", rc, state);
    CHECK(message_contains(&e, "`report` callback is NULL"), "%s", message(&e));
    CHECK(op_completed(o) == 0, "a refused call still completed");
    close_ok(t, r);
    op_free(o);
    lib->shutdown(lib);
}

/* Pending operations: one reporter context per operation; a new online,
 * an offline or close ends the one in flight before returning; nothing is
 * called back after close returns. */
static void scenario_pending(const char *state_dir) {
    const ck_library *lib = start();
    const ck_type *t = find_type(lib, "dummy");
    int threads_before = thread_count();
    void *r = open_dummy(t, "web", state_dir, 100);

    /* Two pending onlines in a row, each with its own context. */
    for (int round = 0; round < 2; round++) {
        op *o = op_new();
        uint32_t state = 0;
        int32_t rc = t->online(r, reporter(o), &state, NULL);
        CHECK(rc == CK_OK && state == CK_STATE_ONLINE_PENDING, "round %d: %d %u", round, rc, state);
        CHECK(op_wait(o, 30), "round %d: online never completed", round);
        CHECK(o->completed == 1 && o->final_state == CK_STATE_ONLINE, "round %d: completed %d state %u", round,
              o->completed, o->final_state);
        rc = t->offline(r, reporter(o), &state, NULL);
        CHECK(rc == CK_OK && state == CK_STATE_OFFLINE, "round %d offline: %d %u", round, rc, state);
        op_free(o);
    }
    close_ok(t, r);

    /* A second online while one is pending ends the first before returning. */
    r = open_dummy(t, "slow", state_dir, 30000);
    op *first = op_new();
    op *second = op_new();
    uint32_t state = 0;
    CHECK(t->online(r, reporter(first), &state, NULL) == CK_OK && state == CK_STATE_ONLINE_PENDING, "first");
    CHECK(t->online(r, reporter(second), &state, NULL) == CK_OK && state == CK_STATE_ONLINE_PENDING, "second");
    CHECK(op_completed(first) == 1, "the first online did not end before the second returned");
    CHECK(first->final_state == CK_STATE_FAILED && first->error_code == CK_E_TERMINATED,
          "the first online ended as %u, error %d", first->final_state, first->error_code);
    /* offline ends the second. */
    CHECK(t->offline(r, reporter(first), &state, NULL) == CK_OK, "offline");
    CHECK(op_completed(second) == 1 && second->final_state == CK_STATE_FAILED,
          "offline did not end the pending online first: %d", op_completed(second));

    /* close ends a pending online before it returns; its threads are gone. */
    op *third = op_new();
    CHECK(t->online(r, reporter(third), &state, NULL) == CK_OK && state == CK_STATE_ONLINE_PENDING, "third");
    close_ok(t, r);
    CHECK(op_completed(third) == 1 && third->error_code == CK_E_TERMINATED,
          "close returned before the pending online ended: %d", op_completed(third));
    CHECK(thread_count() == threads_before, "threads before %d, after close %d", threads_before, thread_count());
    /* The contexts may be freed now: nothing calls back after close. */
    op_free(first);
    op_free(second);
    op_free(third);
    lib->shutdown(lib);
}

/* startup from several threads at once; free_buffer from any thread. */
#define STARTERS 4
static void *start_and_stop(void *arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) {
        ck_host host = {CK_ABI_VERSION, sizeof(ck_host), {NULL, host_log}};
        ck_error e;
        const ck_library *lib = startup_fn(&host, &e);
        if (!lib) return (void *)1;
        ck_buffer out;
        const ck_type *t = lib->types[0];
        t->type_control(t->context, CK_CONTROL_TYPE_SPECIFIC_BASE, (ck_bytes){NULL, 0}, &out, NULL);
        lib->free_buffer(out);
        lib->shutdown(lib);
    }
    return NULL;
}

typedef struct {
    const ck_library *lib;
    ck_buffer buffer;
} to_free;

static void *free_elsewhere(void *arg) {
    to_free *f = arg;
    f->lib->free_buffer(f->buffer);
    return NULL;
}

static void scenario_threads(const char *state_dir) {
    pthread_t threads[STARTERS];
    for (int i = 0; i < STARTERS; i++) pthread_create(&threads[i], NULL, start_and_stop, NULL);
    for (int i = 0; i < STARTERS; i++) {
        void *result;
        pthread_join(threads[i], &result);
        CHECK(result == NULL, "a concurrent startup failed");
    }
    /* Two tables at once are independent. */
    const ck_library *a = start();
    const ck_library *b = start();
    CHECK(a != b, "two startups returned the same table");
    const ck_type *t = find_type(a, "dummy");
    void *r = open_dummy(t, "web", state_dir, 0);
    b->shutdown(b); /* the other table's shutdown leaves `a` and its resource alone */
    ck_health h;
    CHECK(t->looks_alive(r, &h, NULL) == CK_OK, "looks_alive after another table's shutdown");
    /* A buffer freed on another thread than the one that got it. */
    to_free f = {a, {NULL, 0}};
    ck_error e = garbage_error();
    int32_t rc = t->type_control(t->context, CK_CONTROL_GET_CHARACTERISTICS, (ck_bytes){NULL, 0}, &f.buffer, &e);
    if (rc == CK_OK) {
        CHECK(f.buffer.len == 8, "characteristics are 8 bytes, got %zu", f.buffer.len);
    } else {
        CHECK(f.buffer.ptr == NULL, "output after error %d", rc);
    }
    pthread_t other;
    pthread_create(&other, NULL, free_elsewhere, &f);
    pthread_join(other, NULL);
    close_ok(t, r);
    a->shutdown(a);
}

/* A panic comes back as CK_E_PANICKED with its message and location, and
 * the library stays usable; the test checks stderr stays clean. */
static void scenario_panic(const char *state_dir) {
    const ck_library *lib = start();
    const ck_type *t = find_type(lib, "fault-injection");
    plist p;
    plist_init(&p);
    put_multi(&p, "panic_in", "online");
    put_string(&p, "state_dir", state_dir);
    void *r = NULL;
    ck_error e = garbage_error();
    int32_t rc = t->open(t->context, str("p"), plist_bytes(&p), false, (ck_logger){NULL, NULL}, &r, &e);
    if (rc != CK_OK) {
        printf("open failed: %d %s\n", rc, message(&e));
        exit(2);
    }
    op *o = op_new();
    uint32_t state = 0;
    e = garbage_error();
    rc = t->online(r, reporter(o), &state, &e);
    CHECK(rc == CK_E_PANICKED && e.code == rc, "online: %d", rc);
    CHECK(state == CK_STATE_FAILED, "*state after a panic: %u", state);
    CHECK(message_contains(&e, "told to panic in online") && message_contains(&e, "(at "),
          "message and location: %s", message(&e));
    ck_health h;
    e = garbage_error();
    rc = t->looks_alive(r, &h, &e);
    CHECK(rc == CK_OK && e.code == CK_OK, "the library stays usable: %d", rc);
    close_ok(t, r);
    op_free(o);
    lib->shutdown(lib);
}

/* A property marked secret is flagged in the schema (ABI 1.2), and has no
 * default that would publish it. */
static void scenario_secret(const char *type_name, const char *secret, const char *plain) {
    const ck_library *lib = start();
    const ck_type *t = find_type(lib, type_name);
    CHECK(t->struct_size >= offsetof(ck_type, property_extra_flags) + sizeof t->property_extra_flags,
          "ck_type.struct_size %u has no property_extra_flags", t->struct_size);
    CHECK(t->property_extra_flags != NULL, "property_extra_flags is NULL");
    int seen_secret = 0, seen_plain = 0;
    for (size_t i = 0; i < t->property_count && t->property_extra_flags; i++) {
        const ck_property_spec *s = &t->properties[i];
        int is_secret = (t->property_extra_flags[i] & CK_PROPERTY_EXTRA_SECRET) != 0;
        if (s->name.len == strlen(secret) && !memcmp(s->name.ptr, secret, s->name.len)) {
            seen_secret = 1;
            CHECK(is_secret, "%s is not marked secret", secret);
            CHECK(s->default_value.kind == CK_KIND_NONE, "%s has a default", secret);
        }
        if (s->name.len == strlen(plain) && !memcmp(s->name.ptr, plain, s->name.len)) {
            seen_plain = 1;
            CHECK(!is_secret, "%s is marked secret", plain);
        }
    }
    CHECK(seen_secret && seen_plain, "properties %s/%s not found", secret, plain);
    lib->shutdown(lib);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: misuse SCENARIO LIBRARY [STATE_DIR]\n");
        return 2;
    }
    const char *scenario = argv[1];
    const char *state_dir = argc > 3 ? argv[3] : "/tmp";
    load(argv[2]);
    if (!strcmp(scenario, "host-size")) scenario_host_size();
    else if (!strcmp(scenario, "outputs")) scenario_outputs(state_dir);
    else if (!strcmp(scenario, "names")) scenario_names(state_dir);
    else if (!strcmp(scenario, "reporter")) scenario_reporter(state_dir);
    else if (!strcmp(scenario, "pending")) scenario_pending(state_dir);
    else if (!strcmp(scenario, "threads")) scenario_threads(state_dir);
    else if (!strcmp(scenario, "panic")) scenario_panic(state_dir);
    else if (!strcmp(scenario, "secret")) scenario_secret("network-name", "tsig_secret", "zone");
    else {
        fprintf(stderr, "unknown scenario %s\n", scenario);
        return 2;
    }
    if (dlclose(dl) != 0) {
        printf("dlclose: %s\n", dlerror());
        failures++;
    }
    if (failures) {
        printf("%d failure(s) in %s\n", failures, scenario);
        return 1;
    }
    printf("ok %s\n", scenario);
    return 0;
}
