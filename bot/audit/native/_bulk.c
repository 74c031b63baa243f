/* Bulk counting of audit records: the dashboard's cold load (dashboard/history.py).
 *
 * Why C: the dashboard must open on a million records (~490 MB) in about 2 s. pyarrow's
 * JSON parser alone took ~2 of the ~3.5 CPU s that cost. This reads each line once: it
 * checks that the line is JSON, picks out the few fields the aggregates need, checks them
 * as bot.audit.reader.validate does, and counts records per (time bucket, key) without
 * creating a Python object per record, with the GIL released.
 *
 * It is deliberately stricter than orjson: at anything unusual - a non-ASCII byte, an
 * escaped key, a \u surrogate, deep nesting, an overlong number, a field of an unexpected
 * type, an invalid record - it gives up on the whole range and returns None, and the
 * caller's exact parsers (pyarrow, then reader.parse_line per line) take the range over
 * and name each bad line. So it never accepts a line that the per-line reader rejects.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_KEYS 4096   /* distinct (event type, symbol, detail) in one range */
#define MAX_KINDS 64    /* distinct event types in one range */
#define MAX_NUMBER 64   /* characters of a number read as a double */

typedef struct {
    const char *p;  /* NULL: absent or null */
    Py_ssize_t n;
} Span;

typedef struct {
    const char *s, *e;  /* cursor and end of the line */
    int bad;            /* give up on the range */
} Cur;

/* ------------------------------------------------------------------ JSON */

static void
skip_ws(Cur *c)
{
    while (c->s < c->e && (*c->s == ' ' || *c->s == '\t' || *c->s == '\r'))
        c->s++;
}

static int
hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= h - '0';
        else if (h >= 'a' && h <= 'f')
            v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F')
            v |= h - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* A string at the cursor: its raw bytes without quotes into `out`, `escaped` set when it
 * holds an escape (then the bytes are not its value). */
static void
read_string(Cur *c, Span *out, int *escaped)
{
    *escaped = 0;
    if (c->s >= c->e || *c->s != '"') {
        c->bad = 1;
        return;
    }
    const char *start = ++c->s;
    while (c->s < c->e) {
        unsigned char ch = (unsigned char)*c->s;
        if (ch == '"') {
            out->p = start;
            out->n = c->s - start;
            c->s++;
            return;
        }
        if (ch < 0x20 || ch >= 0x80) {
            c->bad = 1;  /* a control byte (invalid) or UTF-8 (left to the exact parsers) */
            return;
        }
        if (ch == '\\') {
            *escaped = 1;
            if (c->e - c->s < 2) {
                c->bad = 1;
                return;
            }
            char x = c->s[1];
            if (x == 'u') {
                int v = c->e - c->s >= 6 ? hex4(c->s + 2) : -1;
                if (v < 0 || (v >= 0xD800 && v <= 0xDFFF)) {
                    c->bad = 1;  /* invalid, or a surrogate pair: left to orjson */
                    return;
                }
                c->s += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", x) || x == 0) {
                c->bad = 1;
                return;
            }
            c->s += 2;
            continue;
        }
        c->s++;
    }
    c->bad = 1;  /* unterminated */
}

/* A number at the cursor, to JSON's grammar; its value into `out` when not NULL. A number
 * that overflows a double is refused by orjson: refused here too. */
static void
read_number(Cur *c, double *out)
{
    const char *start = c->s, *p = c->s;
    int exponent = 0;
    if (p < c->e && *p == '-')
        p++;
    if (p < c->e && *p == '0')
        p++;
    else if (p < c->e && *p >= '1' && *p <= '9')
        while (p < c->e && *p >= '0' && *p <= '9')
            p++;
    else {
        c->bad = 1;
        return;
    }
    if (p < c->e && *p == '.') {
        p++;
        if (p >= c->e || *p < '0' || *p > '9') {
            c->bad = 1;
            return;
        }
        while (p < c->e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < c->e && (*p == 'e' || *p == 'E')) {
        exponent = 1;
        p++;
        if (p < c->e && (*p == '+' || *p == '-'))
            p++;
        if (p >= c->e || *p < '0' || *p > '9') {
            c->bad = 1;
            return;
        }
        while (p < c->e && *p >= '0' && *p <= '9')
            p++;
    }
    c->s = p;
    if (out == NULL && !exponent && p - start < MAX_NUMBER)
        return;  /* short and without exponent: finite */
    if (p - start >= MAX_NUMBER) {
        c->bad = 1;
        return;
    }
    char text[MAX_NUMBER];
    memcpy(text, start, (size_t)(p - start));
    text[p - start] = 0;
    double v = strtod(text, NULL);
    if (!isfinite(v))
        c->bad = 1;
    else if (out != NULL)
        *out = v;
}

static int
literal(Cur *c, const char *word, size_t n)
{
    if ((size_t)(c->e - c->s) >= n && memcmp(c->s, word, n) == 0) {
        c->s += n;
        return 1;
    }
    return 0;
}

static void skip_value(Cur *c, int depth);

/* Reads the value of one member of an object (the cursor is after its ':'). */
typedef void (*OnMember)(Cur *c, Span key, void *ctx, int depth);

/* The members of an object after its '{', up to its '}'. With `on_member`, each value is
 * read by it, and an escaped key gives up (it could spell a key that is read); without,
 * the values are only checked. */
static void
read_members(Cur *c, int depth, OnMember on_member, void *ctx)
{
    Span key;
    int escaped;
    skip_ws(c);
    if (c->s < c->e && *c->s == '}') {
        c->s++;
        return;
    }
    while (!c->bad) {
        read_string(c, &key, &escaped);
        skip_ws(c);
        if ((escaped && on_member) || c->s >= c->e || *c->s != ':') {
            c->bad = 1;
            return;
        }
        c->s++;
        if (on_member)
            on_member(c, key, ctx, depth);
        else
            skip_value(c, depth + 1);
        skip_ws(c);
        if (c->s < c->e && *c->s == ',') {
            c->s++;
            skip_ws(c);
            continue;
        }
        if (c->s < c->e && *c->s == '}')
            c->s++;
        else
            c->bad = 1;
        return;
    }
}

/* The elements of an array after its '[', up to its ']', only checked. */
static void
skip_elements(Cur *c, int depth)
{
    skip_ws(c);
    if (c->s < c->e && *c->s == ']') {
        c->s++;
        return;
    }
    while (!c->bad) {
        skip_value(c, depth + 1);
        skip_ws(c);
        if (c->s < c->e && *c->s == ',') {
            c->s++;
            continue;
        }
        if (c->s < c->e && *c->s == ']')
            c->s++;
        else
            c->bad = 1;
        return;
    }
}

static void
skip_value(Cur *c, int depth)
{
    Span s;
    int escaped;
    skip_ws(c);
    if (depth > MAX_DEPTH || c->s >= c->e) {
        c->bad = 1;
        return;
    }
    switch (*c->s) {
    case '{':
        c->s++;
        read_members(c, depth, NULL, NULL);
        return;
    case '[':
        c->s++;
        skip_elements(c, depth);
        return;
    case '"':
        read_string(c, &s, &escaped);
        return;
    case 't':
        c->bad |= !literal(c, "true", 4);
        return;
    case 'f':
        c->bad |= !literal(c, "false", 5);
        return;
    case 'n':
        c->bad |= !literal(c, "null", 4);
        return;
    default:
        read_number(c, NULL);
    }
}

/* ------------------------------------------------------------------ records */

/* The fields of one record that the aggregates read. */
typedef struct {
    Span timestamp, event_type, symbol, trace_id, reason;
    Span order_type[6];  /* order_data's then response's order_type, type, orderType */
    int has_operation;
    double requested, capped;
} Fields;

#define KEY_IS(s, lit) ((s).n == (Py_ssize_t)sizeof(lit) - 1 && memcmp((s).p, lit, (s).n) == 0)

/* A string or null; with `need_bytes`, a string with an escape gives up (its bytes are
 * not its value). null: out->p is NULL. Another type gives up (the per-line reader
 * names it, or pyarrow and the reader disagree on it). */
static void
text_field(Cur *c, Span *out, int need_bytes)
{
    int escaped;
    skip_ws(c);
    out->p = NULL;
    if (literal(c, "null", 4))
        return;
    read_string(c, out, &escaped);
    if (escaped && need_bytes)
        c->bad = 1;
}

/* A number or null (0.0); another type gives up. */
static void
number_field(Cur *c, double *out)
{
    skip_ws(c);
    *out = 0.0;
    if (literal(c, "null", 4))
        return;
    if (c->s < c->e && (*c->s == '-' || (*c->s >= '0' && *c->s <= '9')))
        read_number(c, out);
    else
        c->bad = 1;
}

enum { OBJ_ORDER_DATA, OBJ_RESPONSE, OBJ_ERROR, OBJ_ADDITIONAL };

typedef struct {
    Fields *f;
    int which;  /* OBJ_* */
} DataObject;

static void
data_member(Cur *c, Span key, void *ctx, int depth)
{
    Fields *f = ((DataObject *)ctx)->f;
    int which = ((DataObject *)ctx)->which, order = which <= OBJ_RESPONSE;
    if (order && KEY_IS(key, "order_type"))
        text_field(c, &f->order_type[3 * which], 1);
    else if (order && KEY_IS(key, "type"))
        text_field(c, &f->order_type[3 * which + 1], 1);
    else if (order && KEY_IS(key, "orderType"))
        text_field(c, &f->order_type[3 * which + 2], 1);
    else if (which == OBJ_ERROR && KEY_IS(key, "reason"))
        text_field(c, &f->reason, 1);
    else if (which == OBJ_ADDITIONAL && KEY_IS(key, "requested_quantity"))
        number_field(c, &f->requested);
    else if (which == OBJ_ADDITIONAL && KEY_IS(key, "capped_quantity"))
        number_field(c, &f->capped);
    else
        skip_value(c, depth + 1);
}

/* A data object (or null) at the cursor; the members the aggregates read go to `f`. A
 * repeated object replaces what an earlier one gave, as orjson keeps the last. */
static void
data_object(Cur *c, Fields *f, int which)
{
    if (which <= OBJ_RESPONSE)
        for (int i = 0; i < 3; i++)
            f->order_type[3 * which + i].p = NULL;
    else if (which == OBJ_ERROR)
        f->reason.p = NULL;
    else
        f->requested = f->capped = 0.0;
    skip_ws(c);
    if (literal(c, "null", 4))
        return;
    if (c->s >= c->e || *c->s != '{') {
        c->bad = 1;  /* wrong_type: the per-line reader names it */
        return;
    }
    c->s++;
    DataObject ctx = {f, which};
    read_members(c, 1, data_member, &ctx);
}

static void
record_member(Cur *c, Span key, void *ctx, int depth)
{
    Fields *f = ctx;
    Span ignored;
    if (KEY_IS(key, "timestamp"))
        text_field(c, &f->timestamp, 1);
    else if (KEY_IS(key, "event_type"))
        text_field(c, &f->event_type, 1);
    else if (KEY_IS(key, "symbol"))
        text_field(c, &f->symbol, 1);
    else if (KEY_IS(key, "trace_id"))
        text_field(c, &f->trace_id, 1);
    else if (KEY_IS(key, "operation")) {
        text_field(c, &ignored, 0);
        f->has_operation = ignored.p != NULL;
    }
    else if (KEY_IS(key, "run_id"))
        text_field(c, &ignored, 0);
    else if (KEY_IS(key, "order_data"))
        data_object(c, f, OBJ_ORDER_DATA);
    else if (KEY_IS(key, "response"))
        data_object(c, f, OBJ_RESPONSE);
    else if (KEY_IS(key, "error"))
        data_object(c, f, OBJ_ERROR);
    else if (KEY_IS(key, "additional_data"))
        data_object(c, f, OBJ_ADDITIONAL);
    else
        skip_value(c, depth + 1);
}

/* One line: a JSON object and nothing else, its record fields read into `f`. Whether
 * they make a usable record is the caller's check. */
static void
read_record(Cur *c, Fields *f)
{
    memset(f, 0, sizeof *f);
    skip_ws(c);
    if (c->s >= c->e || *c->s != '{') {
        c->bad = 1;
        return;
    }
    c->s++;
    read_members(c, 0, record_member, f);
    skip_ws(c);
    c->bad |= c->s != c->e;  /* nothing may follow the object */
}

static int
digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static long long
days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - (int)(era * 400);
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Microseconds since the epoch of YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z with a year in
 * [min_year, max_year] and a real date and time; -1 otherwise. */
static long long
timestamp_us(Span t, int min_year, int max_year)
{
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = t.p;
    if (t.n < 20 || t.n > 27 || t.n == 21 || p[4] != '-' || p[7] != '-' || p[10] != 'T' ||
        p[13] != ':' || p[16] != ':' || p[t.n - 1] != 'Z')
        return -1;
    int y = digits(p, 4), mo = digits(p + 5, 2), d = digits(p + 8, 2);
    int h = digits(p + 11, 2), mi = digits(p + 14, 2), s = digits(p + 17, 2);
    if (y < min_year || y > max_year || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || s < 0 || s > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > DAYS[mo - 1] + (mo == 2 && leap))
        return -1;
    long long us = 0;
    if (t.n > 20) {
        if (p[19] != '.')
            return -1;
        int n = (int)t.n - 21, frac = digits(p + 20, n);
        if (frac < 0)
            return -1;
        us = frac;
        for (int i = n; i < 6; i++)
            us *= 10;
    }
    long long seconds = days_from_civil(y, mo, d) * 86400LL + h * 3600 + mi * 60 + s;
    return seconds * 1000000LL + us;
}

/* The line [start, end) read into `f`: the record's microseconds since the epoch when it
 * is a usable record (reader.validate's checks, but for the event type's being known),
 * else -1. */
static long long
usable_record(const char *start, const char *end, Fields *f, int min_year, int max_year)
{
    Cur c = {start, end, 0};
    read_record(&c, f);
    if (c.bad || !f->has_operation || f->event_type.p == NULL || f->timestamp.p == NULL)
        return -1;
    return timestamp_us(f->timestamp, min_year, max_year);
}

/* ------------------------------------------------------------------ counting */

typedef struct {
    Span kind, symbol, detail;
    int kind_index;
    long long count;  /* in the current bucket */
} Key;

typedef struct {
    Key keys[MAX_KEYS];
    int n_keys;
    int slots[2 * MAX_KEYS];  /* open addressing: key index + 1, 0 = free */
    Span kinds[MAX_KINDS];
    int n_kinds;
    int touched[MAX_KEYS];  /* keys counted in the current bucket */
    int n_touched;
    long long bucket;
    long long *groups;  /* (bucket, key, count) triples */
    Py_ssize_t n_groups, cap_groups;
    struct Capped {
        long long us;
        int key;
        double requested, capped;
    } *capped;
    Py_ssize_t n_capped, cap_capped;
    int failed;  /* out of memory or beyond the limits: give up */
} Counts;

static int
same(Span a, Span b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, (size_t)a.n) == 0);
}

static uint64_t
hash_span(uint64_t h, Span s)
{
    for (Py_ssize_t i = 0; i < s.n; i++)
        h = (h ^ (unsigned char)s.p[i]) * 1099511628211ULL;
    return (h ^ 0xff) * 1099511628211ULL;
}

static int
kind_index(Counts *k, Span kind)
{
    for (int i = 0; i < k->n_kinds; i++)
        if (same(k->kinds[i], kind))
            return i;
    if (k->n_kinds == MAX_KINDS)
        return -1;
    k->kinds[k->n_kinds] = kind;
    return k->n_kinds++;
}

static int
key_index(Counts *k, int kind, Span symbol, Span detail)
{
    uint64_t h = hash_span(hash_span(14695981039346656037ULL ^ (uint64_t)kind, symbol), detail);
    for (size_t slot = h % (2 * MAX_KEYS);; slot = (slot + 1) % (2 * MAX_KEYS)) {
        int at = k->slots[slot] - 1;
        if (at < 0) {
            if (k->n_keys == MAX_KEYS)
                return -1;
            Key *key = &k->keys[k->n_keys];
            key->kind = k->kinds[kind];
            key->kind_index = kind;
            key->symbol = symbol;
            key->detail = detail;
            key->count = 0;
            k->slots[slot] = ++k->n_keys;
            return k->n_keys - 1;
        }
        Key *key = &k->keys[at];
        if (key->kind_index == kind && same(key->symbol, symbol) && same(key->detail, detail))
            return at;
    }
}

static int
grow(void **array, Py_ssize_t *cap, Py_ssize_t need, size_t item)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t n = need * 2 + 64;
    void *p = realloc(*array, (size_t)n * item);  /* plain libc: the GIL is released */
    if (p == NULL)
        return -1;
    *array = p;
    *cap = n;
    return 0;
}

/* The counts of the current bucket become groups. */
static void
flush_bucket(Counts *k)
{
    if (grow((void **)&k->groups, &k->cap_groups, 3 * (k->n_groups + k->n_touched),
             sizeof(long long)) < 0) {
        k->failed = 1;
        return;
    }
    for (int i = 0; i < k->n_touched; i++) {
        Key *key = &k->keys[k->touched[i]];
        long long *g = k->groups + 3 * k->n_groups++;
        g[0] = k->bucket;
        g[1] = k->touched[i];
        g[2] = key->count;
        key->count = 0;
    }
    k->n_touched = 0;
}

typedef struct {
    Span rejection, capped, heartbeat;  /* event types with a role */
    Span outcomes[8];
    int n_outcomes;
} Roles;

static const Span NONE = {"", 0}, UNKNOWN = {"unknown", 7};

/* The detail of a record: a rejection's reason, an order event's type, else "". */
static Span
detail_of(const Roles *r, const Fields *f)
{
    if (same(f->event_type, r->rejection))
        return f->reason.p ? f->reason : UNKNOWN;
    for (int i = 0; i < r->n_outcomes; i++)
        if (same(f->event_type, r->outcomes[i])) {
            for (int j = 0; j < 6; j++)  /* "" counts as missing, as in the per-line path */
                if (f->order_type[j].p && f->order_type[j].n)
                    return f->order_type[j];
            return UNKNOWN;
        }
    return NONE;
}

/* ------------------------------------------------------------------ entry points */

static int
span_arg(PyObject *o, Span *out)
{
    if (!PyBytes_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "event types must be bytes");
        return -1;
    }
    out->p = PyBytes_AS_STRING(o);
    out->n = PyBytes_GET_SIZE(o);
    return 0;
}

/* The event types with a role: rejection (bytes), outcomes (tuple of bytes), capped,
 * heartbeat. */
static int
roles_arg(Roles *r, PyObject *rejection, PyObject *outcomes, PyObject *capped,
          PyObject *heartbeat)
{
    if (!PyTuple_Check(outcomes) || PyTuple_GET_SIZE(outcomes) > 8) {
        PyErr_SetString(PyExc_ValueError, "outcomes: a tuple of at most 8 event types");
        return -1;
    }
    if (span_arg(rejection, &r->rejection) < 0 || span_arg(capped, &r->capped) < 0 ||
        span_arg(heartbeat, &r->heartbeat) < 0)
        return -1;
    r->n_outcomes = (int)PyTuple_GET_SIZE(outcomes);
    for (int i = 0; i < r->n_outcomes; i++)
        if (span_arg(PyTuple_GET_ITEM(outcomes, i), &r->outcomes[i]) < 0)
            return -1;
    return 0;
}

static PyObject *
span_str(Span s)
{
    return PyUnicode_DecodeASCII(s.p, s.n, NULL);
}

/* count(data, start, end, bucket_us, min_year, max_year, max_line, rejection, outcomes,
 *       capped, heartbeat)
 * -> None, or (rows, keys, groups, capped, last_us, last_heartbeat_us)
 * keys: [(event_type, symbol, detail)]; groups: bytes of int64 (bucket, key, count)
 * triples in line order of buckets; capped: [(us, key, requested, capped)]; the last two
 * are -1 when there is none. */
static PyObject *
count(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t start, end, max_line;
    long long bucket_us;
    int min_year, max_year;
    PyObject *rejection, *outcomes, *capped, *heartbeat;
    if (!PyArg_ParseTuple(args, "y*nnLiinSOSS", &data, &start, &end, &bucket_us, &min_year,
                          &max_year, &max_line, &rejection, &outcomes, &capped, &heartbeat))
        return NULL;
    Roles roles;
    PyObject *result = NULL;
    Counts *k = NULL;
    if (start < 0 || end > data.len || start > end || bucket_us <= 0) {
        PyErr_SetString(PyExc_ValueError, "bad range or bucket");
        goto done;
    }
    if (roles_arg(&roles, rejection, outcomes, capped, heartbeat) < 0)
        goto done;
    if ((k = PyMem_Calloc(1, sizeof *k)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const char *p = (const char *)data.buf + start, *stop = (const char *)data.buf + end;
    Py_ssize_t rows = 0;
    long long last = -1, last_beat = -1;
    int gave_up = 0;
    Py_BEGIN_ALLOW_THREADS
    k->bucket = -1;
    while (p < stop && !gave_up) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL || nl == p || nl - p > max_line) {
            gave_up = 1;  /* no newline, an empty or an over-long line */
            break;
        }
        Fields f;
        long long us = usable_record(p, nl, &f, min_year, max_year);
        int kind = us < 0 ? -1 : kind_index(k, f.event_type);
        Span symbol = f.symbol.p ? f.symbol : NONE;
        int at = kind < 0 ? -1 : key_index(k, kind, symbol, detail_of(&roles, &f));
        if (at < 0) {
            gave_up = 1;
            break;
        }
        long long bucket = us / bucket_us;
        if (bucket != k->bucket) {
            flush_bucket(k);
            k->bucket = bucket;
        }
        if (k->keys[at].count++ == 0)
            k->touched[k->n_touched++] = at;
        if (us > last)
            last = us;
        if (same(f.event_type, roles.heartbeat) && us > last_beat)
            last_beat = us;
        if (same(f.event_type, roles.capped)) {
            if (grow((void **)&k->capped, &k->cap_capped, k->n_capped + 1, sizeof *k->capped) < 0)
                k->failed = 1;
            else
                k->capped[k->n_capped++] = (struct Capped){us, at, f.requested, f.capped};
        }
        gave_up = k->failed;
        rows++;
        p = nl + 1;
    }
    if (!gave_up) {
        flush_bucket(k);
        gave_up = k->failed;
    }
    Py_END_ALLOW_THREADS
    if (gave_up) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *keys = PyList_New(k->n_keys), *caps = PyList_New(k->n_capped), *groups = NULL;
    if (keys == NULL || caps == NULL)
        goto built;
    for (int i = 0; i < k->n_keys; i++) {
        Key *key = &k->keys[i];
        PyObject *t = Py_BuildValue("(NNN)", span_str(key->kind), span_str(key->symbol),
                                    span_str(key->detail));
        if (t == NULL)
            goto built;
        PyList_SET_ITEM(keys, i, t);
    }
    for (Py_ssize_t i = 0; i < k->n_capped; i++) {
        struct Capped *cap = &k->capped[i];
        PyObject *t = Py_BuildValue("(Lidd)", cap->us, cap->key, cap->requested, cap->capped);
        if (t == NULL)
            goto built;
        PyList_SET_ITEM(caps, i, t);
    }
    groups = PyBytes_FromStringAndSize((const char *)k->groups,
                                       k->n_groups * 3 * (Py_ssize_t)sizeof(long long));
    if (groups != NULL)
        result = Py_BuildValue("(nOOOLL)", rows, keys, groups, caps, last, last_beat);
built:
    Py_XDECREF(keys);
    Py_XDECREF(caps);
    Py_XDECREF(groups);
done:
    if (k != NULL) {
        free(k->groups);
        free(k->capped);
        PyMem_Free(k);
    }
    PyBuffer_Release(&data);
    return result;
}

/* Python str objects for the few distinct values of a batch (event types, symbols,
 * details), made once per batch. */
typedef struct {
    Span bytes[64];
    PyObject *text[64];
    int n;
} Strings;

static PyObject *
string_of(Strings *cache, Span s)
{
    for (int i = 0; i < cache->n; i++)
        if (same(cache->bytes[i], s))
            return Py_NewRef(cache->text[i]);
    PyObject *text = span_str(s);
    if (text != NULL && cache->n < 64) {
        cache->bytes[cache->n] = s;
        cache->text[cache->n++] = Py_NewRef(text);
    }
    return text;
}

/* Epoch seconds as dashboard.store.epoch_seconds computes them (the whole minute, then
 * plus float("SS.ffffff")), so both paths give the same float. */
static double
epoch_seconds(Span t, long long us)
{
    char text[16];
    Py_ssize_t n = t.n - 18;  /* "SS[.ffffff]" */
    memcpy(text, t.p + 17, (size_t)n);
    text[n] = 0;
    return (double)(us / 60000000LL * 60) + strtod(text, NULL);
}

/* fields(lines, min_year, max_year, event_types, rejection, outcomes, capped, heartbeat)
 * -> list, per line: (ts, event_type, symbol, detail, trace_id or None, requested, capped),
 * or None where the exact parser must judge the line (event_types: the known ones). */
static PyObject *
fields(PyObject *self, PyObject *args)
{
    PyObject *lines, *known, *rejection, *outcomes, *capped, *heartbeat;
    int min_year, max_year;
    Roles roles;
    if (!PyArg_ParseTuple(args, "O!iiO!SOSS", &PyList_Type, &lines, &min_year, &max_year,
                          &PyFrozenSet_Type, &known, &rejection, &outcomes, &capped,
                          &heartbeat) ||
        roles_arg(&roles, rejection, outcomes, capped, heartbeat) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    PyObject *out = PyList_New(n);
    Strings cache = {.n = 0};
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i), *item = NULL;
        if (!PyBytes_Check(line)) {
            PyErr_SetString(PyExc_TypeError, "lines must be bytes");
            goto failed;
        }
        const char *start = PyBytes_AS_STRING(line);
        Fields f;
        long long us = usable_record(start, start + PyBytes_GET_SIZE(line), &f, min_year,
                                     max_year);
        if (us < 0) {
            PyList_SET_ITEM(out, i, Py_NewRef(Py_None));
            continue;
        }
        PyObject *kind = string_of(&cache, f.event_type);
        int is_known = kind != NULL ? PySet_Contains(known, kind) : -1;
        if (is_known <= 0) {
            Py_XDECREF(kind);
            if (is_known < 0)
                goto failed;
            PyList_SET_ITEM(out, i, Py_NewRef(Py_None));  /* the exact path names it */
            continue;
        }
        int is_capped = same(f.event_type, roles.capped);
        PyObject *trace = f.trace_id.p ? span_str(f.trace_id) : Py_NewRef(Py_None);
        item = Py_BuildValue("(dNNNNdd)", epoch_seconds(f.timestamp, us), kind,
                             string_of(&cache, f.symbol.p ? f.symbol : NONE),
                             string_of(&cache, detail_of(&roles, &f)), trace,
                             is_capped ? f.requested : 0.0, is_capped ? f.capped : 0.0);
        if (item == NULL)
            goto failed;
        PyList_SET_ITEM(out, i, item);
    }
    for (int i = 0; i < cache.n; i++)
        Py_DECREF(cache.text[i]);
    return out;
failed:
    for (int i = 0; i < cache.n; i++)
        Py_DECREF(cache.text[i]);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"count", count, METH_VARARGS,
     "Count the records of whole lines per (bucket, key); None when the exact parsers must."},
    {"fields", fields, METH_VARARGS,
     "Per line, what the live aggregates read, or None where the exact parser must judge."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bulk",
                                    "Bulk counting of audit records for the cold load.", -1,
                                    methods};

PyMODINIT_FUNC
PyInit__bulk(void)
{
    return PyModule_Create(&module);
}
