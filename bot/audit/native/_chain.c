/* Native hot paths of the audit trail: the logger's common case and the verifier's
 * per-line loop.
 *
 * Why C: SPEC §7 makes every log_event serialize, seal (SHA-256) and write(2)
 * before returning. The syscall and the hash take ~1.2 us; in Python the glue
 * around them costs ~3 us more. Here the glue is ~0.3 us.
 *
 * What is here is only the common case. The pure-Python code in logger.py and
 * verify.py is the reference and handles everything else: `Writer.log_event`
 * hands any call that is not a plain healthy write (unknown keys that may need
 * redaction, unserializable values, a new day, an outage, held records, close)
 * to the Python implementation with the same arguments, and a failed write to
 * the logger's own failure handling. The byte layout is chain.py's; tests
 * check that both implementations write byte-identical trails.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <errno.h>
#include <openssl/sha.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HASH_LEN 64
#define STACK_LINE 4096

static const char HEX[] = "0123456789abcdef";
static const char HASH_SEP[] = "\",\"hash\":\"";  /* between prev and hash */
#define HASH_SEP_LEN 10
#define TAIL_LEN (HASH_SEP_LEN + HASH_LEN + 2)  /* ","hash":"<64>"} */
static const char PREV_KEY[] = ",\"prev\":\"";
#define PREV_KEY_LEN 9

/* ------------------------------------------------------------------ hashing */

typedef struct {
    int keyed;
    SHA256_CTX inner, outer;  /* HMAC states after the padded key block */
} Sealer;

static void
sealer_init(Sealer *s, const unsigned char *key, Py_ssize_t len)
{
    unsigned char block[64] = {0}, pad[64];
    s->keyed = len > 0;
    if (!s->keyed)
        return;
    if (len > 64)
        SHA256(key, (size_t)len, block);
    else
        memcpy(block, key, (size_t)len);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x36;
    SHA256_Init(&s->inner);
    SHA256_Update(&s->inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&s->outer);
    SHA256_Update(&s->outer, pad, 64);
}

/* Lowercase hex SHA-256 / HMAC-SHA256 of data[0:n] + more[0:m] into out[0:64]. */
static void
sealer_hex2(const Sealer *s, const char *data, size_t n, const char *more, size_t m, char *out)
{
    unsigned char md[32];
    SHA256_CTX c;
    if (!s->keyed) {
        SHA256_Init(&c);
        SHA256_Update(&c, data, n);
        SHA256_Update(&c, more, m);
        SHA256_Final(md, &c);
    }
    else {
        c = s->inner;
        SHA256_Update(&c, data, n);
        SHA256_Update(&c, more, m);
        SHA256_Final(md, &c);
        c = s->outer;
        SHA256_Update(&c, md, 32);
        SHA256_Final(md, &c);
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX[md[i] >> 4];
        out[2 * i + 1] = HEX[md[i] & 15];
    }
}

static int
key_arg(PyObject *key, Sealer *s)
{
    if (key == Py_None) {
        sealer_init(s, NULL, 0);
        return 0;
    }
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "key must be bytes or None");
        return -1;
    }
    sealer_init(s, (const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    return 0;
}

/* ------------------------------------------------------------------ verify */

/* Decimal digits of seq, as Python's %d. */
static int
format_seq(char *out, long long seq)
{
    char digits[24];
    int n = 0, sign = seq < 0;
    unsigned long long v = sign ? 0ULL - (unsigned long long)seq : (unsigned long long)seq;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    if (sign)
        *out++ = '-';
    for (int i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    return sign + n;
}

static const char *NOTE_TYPES[] = {"audit_gap", "audit_recovered"};  /* as verify.py */

/* scan(data, seq, prev, key, day_prefix, event_type_at, notes) -> (bad, seq, prev)
 *
 * verify.scan_lines over the complete lines of `data` (bytes after the last
 * newline are ignored). */
static PyObject *
scan(PyObject *self, PyObject *args)
{
    Py_buffer data;
    long long seq;
    const char *prev_in, *day;
    Py_ssize_t prev_len, day_len, at;
    PyObject *key, *notes;
    Sealer sealer;
    if (!PyArg_ParseTuple(args, "y*Ly#Oy#nO", &data, &seq, &prev_in, &prev_len, &key, &day,
                          &day_len, &at, &notes))
        return NULL;
    if (prev_len != HASH_LEN || key_arg(key, &sealer) < 0 ||
        (notes != Py_None && !PyList_Check(notes))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "prev must be 64 hex bytes; notes a list");
        PyBuffer_Release(&data);
        return NULL;
    }
    char prev[HASH_LEN], digest[HASH_LEN], tag[32 + PREV_KEY_LEN + HASH_LEN];
    memcpy(prev, prev_in, HASH_LEN);
    const char *p = data.buf, *stop = p + data.len;
    Py_ssize_t index = 0, bad = -1;
    PyThreadState *ts = NULL;
    int failed = 0;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL)
            break;
        Py_ssize_t len = nl - p, end = len - TAIL_LEN;
        memcpy(tag, ",\"seq\":", 7);
        int tag_len = 7 + format_seq(tag + 7, seq);
        memcpy(tag + tag_len, PREV_KEY, PREV_KEY_LEN);
        memcpy(tag + tag_len + PREV_KEY_LEN, prev, HASH_LEN);
        tag_len += PREV_KEY_LEN + HASH_LEN;
        if (end < tag_len || len < day_len || memcmp(p, day, (size_t)day_len) != 0 ||
            memcmp(p + end - tag_len, tag, (size_t)tag_len) != 0 ||
            memcmp(p + end, HASH_SEP, HASH_SEP_LEN) != 0 || p[len - 2] != '"' ||
            p[len - 1] != '}') {
            bad = index;
            break;
        }
        /* the hashed body is line[:end] + '"}' (the record without its hash) */
        if (ts == NULL)
            ts = PyEval_SaveThread();
        sealer_hex2(&sealer, p, (size_t)end, "\"}", 2, digest);
        if (memcmp(p + end + HASH_SEP_LEN, digest, HASH_LEN) != 0) {
            bad = index;
            break;
        }
        if (notes != Py_None && len > at + 6 && memcmp(p + at, "audit_", 6) == 0) {
            for (int k = 0; k < 2; k++) {
                size_t n = strlen(NOTE_TYPES[k]);
                if (len >= at + (Py_ssize_t)n && memcmp(p + at, NOTE_TYPES[k], n) == 0) {
                    PyEval_RestoreThread(ts);
                    ts = NULL;
                    PyObject *item = Py_BuildValue("(ny#)", index, p, len);
                    if (item == NULL || PyList_Append(notes, item) < 0)
                        failed = 1;
                    Py_XDECREF(item);
                    break;
                }
            }
            if (failed)
                break;
        }
        seq += 1;
        memcpy(prev, digest, HASH_LEN);
        index += 1;
        p = nl + 1;
    }
    if (ts != NULL)
        PyEval_RestoreThread(ts);
    PyBuffer_Release(&data);
    if (failed)
        return NULL;
    if (bad < 0)
        return Py_BuildValue("(OLy#)", Py_None, seq, prev, (Py_ssize_t)HASH_LEN);
    return Py_BuildValue("(nLy#)", bad, seq, prev, (Py_ssize_t)HASH_LEN);
}

/* ------------------------------------------------------------------ writer */

enum { A_EVENT_TYPE, A_OPERATION, A_SYMBOL, A_ORDER_DATA, A_RESPONSE, A_ERROR,
       A_ADDITIONAL_DATA, A_TRACE_ID, N_ARGS };
static const char *ARG_NAMES[N_ARGS] = {"event_type", "operation", "symbol", "order_data",
                                        "response", "error", "additional_data", "trace_id"};
/* the record's key order: logger.py builds its dict in this order */
static const int RECORD_ORDER[N_ARGS] = {A_EVENT_TYPE, A_OPERATION,  A_SYMBOL, A_TRACE_ID,
                                         A_ORDER_DATA, A_RESPONSE,   A_ERROR,  A_ADDITIONAL_DATA};
static PyObject *arg_names[N_ARGS];  /* interned: also the record's keys */
static PyObject *str_value_, *dumps_kwnames;

/* The chain state is shared with logger.py, which reads and updates it (under this
 * object's lock) through the attributes below: the logger's slow paths and the fsync
 * thread stay in Python. */
typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    int locked;
    long long seq, size, unsynced, last_ns, ts_sec, written;
    char prev[HASH_LEN];
    char ts_prefix[48];  /* {"timestamp":"YYYY-MM-DDTHH:MM:SS */
    Py_ssize_t ts_prefix_len;
    PyObject *ts_day, *fd_day;  /* str: the day of ts_sec, the day of fd */
    int fd;                     /* -1: no open day file */
    int slow;
    Sealer sealer;
    int realtime;  /* the clock is time.time_ns: read CLOCK_REALTIME directly */
    PyObject *run_tag, *fallback, *commit_slow, *write_failed, *dumps, *dumps_default, *dumps_option,
        *event_type_cls, *trace_var, *safe_keys, *redact_values, *clock;
} Writer;

static void
lock_acquire(Writer *w)
{
    if (!PyThread_acquire_lock(w->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(w->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    w->locked = 1;
}

static void
lock_release(Writer *w)
{
    w->locked = 0;
    PyThread_release_lock(w->lock);
}

static int
writer_traverse(Writer *w, visitproc visit, void *arg)
{
    Py_VISIT(w->ts_day);
    Py_VISIT(w->fd_day);
    Py_VISIT(w->run_tag);
    Py_VISIT(w->fallback);
    Py_VISIT(w->commit_slow);
    Py_VISIT(w->write_failed);
    Py_VISIT(w->dumps);
    Py_VISIT(w->dumps_default);
    Py_VISIT(w->dumps_option);
    Py_VISIT(w->event_type_cls);
    Py_VISIT(w->trace_var);
    Py_VISIT(w->safe_keys);
    Py_VISIT(w->redact_values);
    Py_VISIT(w->clock);
    return 0;
}

static int
writer_clear(Writer *w)
{
    Py_CLEAR(w->ts_day);
    Py_CLEAR(w->fd_day);
    Py_CLEAR(w->run_tag);
    Py_CLEAR(w->fallback);
    Py_CLEAR(w->commit_slow);
    Py_CLEAR(w->write_failed);
    Py_CLEAR(w->dumps);
    Py_CLEAR(w->dumps_default);
    Py_CLEAR(w->dumps_option);
    Py_CLEAR(w->event_type_cls);
    Py_CLEAR(w->trace_var);
    Py_CLEAR(w->safe_keys);
    Py_CLEAR(w->redact_values);
    Py_CLEAR(w->clock);
    return 0;
}

static void
writer_dealloc(Writer *w)
{
    PyObject_GC_UnTrack(w);
    writer_clear(w);
    if (w->lock)
        PyThread_free_lock(w->lock);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static int
writer_init(Writer *w, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "commit_slow", "write_failed", "dumps", "default", "option",
                             "event_type_cls", "trace_var", "safe_keys", "redact_values",
                             "clock", "realtime", "key", "run_tag", NULL};
    PyObject *key;
    PyObject *o[14];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOO!OpOS", kwlist, &o[0], &o[1], &o[2],
                                     &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &PyTuple_Type,
                                     &o[9], &o[10], &w->realtime, &key, &o[13]))
        return -1;
    if (!PySet_Check(o[8])) {
        PyErr_SetString(PyExc_TypeError, "safe_keys must be a set");
        return -1;
    }
    if (key_arg(key, &w->sealer) < 0)
        return -1;
    PyObject **slots[] = {&w->fallback,       &w->commit_slow,   &w->write_failed,
                          &w->dumps,          &w->dumps_default, &w->dumps_option,
                          &w->event_type_cls, &w->trace_var,     &w->safe_keys,
                          &w->redact_values,  &w->clock,         NULL,
                          NULL,               &w->run_tag};
    for (int i = 0; i < 14; i++)
        if (slots[i] != NULL)
            Py_XSETREF(*slots[i], Py_NewRef(o[i]));
    if (w->lock == NULL && (w->lock = PyThread_allocate_lock()) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(w->prev, '0', HASH_LEN);
    w->seq = w->size = w->unsynced = w->last_ns = w->written = 0;
    w->ts_sec = -1;
    w->ts_prefix_len = 0;
    w->fd = -1;
    w->slow = 0;
    Py_XSETREF(w->ts_day, PyUnicode_FromString(""));
    Py_XSETREF(w->fd_day, PyUnicode_FromString(""));
    return w->ts_day && w->fd_day ? 0 : -1;
}

/* Keys of `d` all plain str and known not to be secret: 1, or 2 when moreover every value
 * is an exact str, int, float, bool or None; else 0; error: -1. */
static int
keys_known(PyObject *safe_keys, PyObject *d)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int simple = 1;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k))
            return 0;
        int found = PySet_Contains(safe_keys, k);
        if (found <= 0)
            return found;
        simple = simple && (PyUnicode_CheckExact(v) || PyFloat_CheckExact(v) ||
                            PyLong_CheckExact(v) || PyBool_Check(v) || v == Py_None);
    }
    return 1 + simple;
}

static void
set_second(Writer *w, long long sec)
{
    time_t t = (time_t)sec;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999) {
        w->ts_sec = -1;  /* outside what the Python path formats the same way */
        return;
    }
    w->ts_prefix_len = snprintf(w->ts_prefix, sizeof w->ts_prefix,
                                "{\"timestamp\":\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    char day[40];
    snprintf(day, sizeof day, "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    if (PyUnicode_CompareWithASCIIString(w->ts_day, day) != 0) {
        PyObject *s = PyUnicode_FromString(day);
        if (s == NULL) {
            PyErr_Clear();  /* keep the old day: the next call retries */
            w->ts_sec = -1;
            return;
        }
        Py_SETREF(w->ts_day, s);
    }
    w->ts_sec = sec;
}

/* 1 when `s` is ASCII without '"', '\\', DEL or control characters: its JSON form is
 * itself in quotes (as orjson writes it). */
static int
plain_str(PyObject *s)
{
    if (!PyUnicode_IS_ASCII(s))
        return 0;
    const unsigned char *c = PyUnicode_1BYTE_DATA(s);
    for (Py_ssize_t i = 0, n = PyUnicode_GET_LENGTH(s); i < n; i++)
        if (c[i] < 0x20 || c[i] == '"' || c[i] == '\\' || c[i] == 0x7f)
            return 0;
    return 1;
}

/* orjson.dumps(value) as the logger calls it; `simple` (see keys_known) leaves out the
 * default and option arguments, which cannot change such an object's bytes but cost
 * orjson a keyword parse and its slower non-str-keys path. */
static PyObject *
dumps(Writer *w, PyObject *value, int simple)
{
    PyObject *call[4] = {NULL, value, w->dumps_default, w->dumps_option};
    PyObject *out = simple ? PyObject_Vectorcall(w->dumps, call + 1,
                                                 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                           : PyObject_Vectorcall(w->dumps, call + 1,
                                                 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, dumps_kwnames);
    if (out != NULL && !PyBytes_CheckExact(out))
        Py_CLEAR(out);
    return out;
}

/* A byte buffer that starts on the stack and moves to the heap when it outgrows it. */
typedef struct {
    char *p;
    Py_ssize_t len, cap;
    char stack[STACK_LINE];
} Buf;

static void
buf_init(Buf *b)
{
    b->p = b->stack;
    b->len = 0;
    b->cap = STACK_LINE;
}

static void
buf_free(Buf *b)
{
    if (b->p != b->stack)
        PyMem_Free(b->p);
}

/* Room for n more bytes at b->p + b->len; 0, or -1 with MemoryError. */
static int
buf_reserve(Buf *b, Py_ssize_t n)
{
    if (b->len + n <= b->cap)
        return 0;
    Py_ssize_t cap = 2 * (b->len + n);
    char *q = b->p == b->stack ? PyMem_Malloc((size_t)cap) : PyMem_Realloc(b->p, (size_t)cap);
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (b->p == b->stack)
        memcpy(q, b->stack, (size_t)b->len);
    b->p = q;
    b->cap = cap;
    return 0;
}

static int
buf_add(Buf *b, const char *s, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

/* Add a plain string (see plain_str) in quotes. */
static int
buf_add_quoted(Buf *b, PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (buf_reserve(b, n + 2) < 0)
        return -1;
    char *q = b->p + b->len;
    *q = '"';
    memcpy(q + 1, PyUnicode_1BYTE_DATA(s), (size_t)n);
    q[n + 1] = '"';
    b->len += n + 2;
    return 0;
}

static const double POW10[20] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,
                                 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19};

/* v as orjson writes it ("43210.5", "10000.0", "0.0125"), into out (>= 24 bytes); 0 when
 * v is outside the range where that is certain here (0, |v| < 1e-4, or more than 15
 * significant digits), for orjson to write.
 * Why it is the same text: orjson writes the shortest decimal that reads back as v,
 * positionally in this range. Going up from k = 0 fractional digits, the first decimal
 * m / 10^k that reads back as v (IEEE division of exact m and 10^k is correctly rounded,
 * as reading the text is) is the shortest; with m < 10^15 it is also the only one, as
 * doubles keep 15 significant digits (DBL_DIG). m is within 1 of round(|v| * 10^k). */
static int
format_float(double v, char *out)
{
    double a = v < 0 ? -v : v;
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 0; k < 20; k++) {
        double x = a * POW10[k];
        if (x >= 1e15 + 1)
            return 0;
        double r = (double)(unsigned long long)(x + 0.5);
        for (double m = r - 1; m <= r + 1; m++) {
            if (m <= 0 || m >= 1e15 || m / POW10[k] != a)
                continue;
            char digits[24];
            int n = format_seq(digits, (long long)m), len = 0;
            if (v < 0)
                out[len++] = '-';
            if (k == 0) {
                memcpy(out + len, digits, (size_t)n);
                memcpy(out + len + n, ".0", 2);
                return len + n + 2;
            }
            if (n > k) {
                memcpy(out + len, digits, (size_t)(n - k));
                len += n - k;
                out[len++] = '.';
                memcpy(out + len, digits + n - k, (size_t)k);
                return len + k;
            }
            out[len++] = '0';
            out[len++] = '.';
            memset(out + len, '0', (size_t)(k - n));
            memcpy(out + len + k - n, digits, (size_t)n);
            return len + k;
        }
    }
    return 0;
}

/* A dict of plain str keys known not to be secret (safe_keys) to str, int, float, bool
 * or None, written as orjson.dumps writes it (insertion order, no spaces): 1; 0 when a
 * key or value needs orjson's escaping or number formatting (nothing added); -1 for a
 * key never seen (the Python path checks it) or an error. Saves an orjson call and two
 * bytes objects per data object. */
static int
add_flat_object(Buf *b, PyObject *d, PyObject *safe_keys)
{
    Py_ssize_t start = b->len, pos = 0;
    PyObject *k, *v;
    char *q;
    int first = 1;
    if (buf_add(b, "{", 1) < 0)
        return -1;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || PySet_Contains(safe_keys, k) != 1)
            return -1;
        if (!plain_str(k))
            goto other;
        if ((!first && buf_add(b, ",", 1) < 0) || buf_add_quoted(b, k) < 0 ||
            buf_reserve(b, 1 + 24) < 0)
            return -1;
        first = 0;
        q = b->p + b->len;
        *q++ = ':';
        if (PyUnicode_CheckExact(v)) {
            if (!plain_str(v))
                goto other;
            b->len += 1;
            if (buf_add_quoted(b, v) < 0)
                return -1;
            continue;
        }
        if (v == Py_True)
            memcpy(q, "true", 4), q += 4;
        else if (v == Py_False)
            memcpy(q, "false", 5), q += 5;
        else if (v == Py_None)
            memcpy(q, "null", 4), q += 4;
        else if (PyLong_CheckExact(v)) {
            int overflow;
            long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow)
                goto other;
            q += format_seq(q, n);
        }
        else if (PyFloat_CheckExact(v)) {
            int n = format_float(PyFloat_AS_DOUBLE(v), q);
            if (n == 0)
                goto other;
            q += n;
        }
        else
            goto other;
        b->len = q - b->p;
    }
    if (buf_add(b, "}", 1) < 0)
        return -1;
    return 1;
other:
    b->len = start;
    return 0;
}

/* The record's JSON into b, exactly as orjson.dumps of the record dict would write it,
 * but serializing only the data objects: the top-level strings are copied when plain
 * (fields: event_type, operation, symbol, trace_id, then the four dicts; NULL = absent).
 * 1; 0 when a top-level string is not plain; -1 for a data object the Python path must
 * see (a key never seen) or an error. `by_orjson` is set when orjson wrote an object:
 * only then can it hold a nested one. */
static int
compose(Writer *w, PyObject **fields, Buf *b, int *by_orjson)
{
    if (buf_add(b, "{", 1) < 0)
        return -1;
    for (int i = 0; i < N_ARGS; i++) {
        int k = RECORD_ORDER[i];
        if (fields[k] == NULL)
            continue;
        if ((b->len > 1 && buf_add(b, ",", 1) < 0) || buf_add_quoted(b, arg_names[k]) < 0 ||
            buf_add(b, ":", 1) < 0)
            return -1;
        if (k <= A_SYMBOL || k == A_TRACE_ID) {
            if (!plain_str(fields[k])) {
                b->len = 0;
                return 0;
            }
            if (buf_add_quoted(b, fields[k]) < 0)
                return -1;
            continue;
        }
        int done = add_flat_object(b, fields[k], w->safe_keys);
        if (done != 0) {
            if (done < 0)
                return -1;
            continue;
        }
        int known = keys_known(w->safe_keys, fields[k]);
        if (known <= 0)
            return -1;
        *by_orjson = 1;
        PyObject *part = dumps(w, fields[k], known == 2);
        done = part ? buf_add(b, PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part)) : -1;
        Py_XDECREF(part);
        if (done < 0)
            return -1;
    }
    return buf_add(b, "}", 1) < 0 ? -1 : 1;
}

/* Write one sealed line: the common case of logger.AuditLogger.log_event. Anything else
 * goes to the Python implementation (`fallback`) with the same arguments. */
static PyObject *
writer_log_event(Writer *w, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *a[N_ARGS] = {NULL};
    PyObject *kind = NULL, *trace = NULL, *record = NULL;
    Buf rest;  /* the record without timestamp and chain fields */
    buf_init(&rest);
    if (w->lock == NULL || w->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "audit Writer used before __init__");
        return NULL;
    }
    if (nargs > N_ARGS)
        goto delegate;
    for (Py_ssize_t i = 0; i < nargs; i++)
        a[i] = args[i];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t j = 0; j < nkw; j++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, j);
            int k = 0;
            while (k < N_ARGS && name != arg_names[k])
                k++;
            if (k == N_ARGS) {
                k = 0;
                while (k < N_ARGS && PyUnicode_Compare(name, arg_names[k]) != 0)
                    k++;
                PyErr_Clear();
            }
            if (k == N_ARGS || a[k] != NULL)
                goto delegate;  /* Python raises the TypeError */
            a[k] = args[nargs + j];
        }
    }
    if (a[A_EVENT_TYPE] == NULL || a[A_OPERATION] == NULL ||
        !PyUnicode_CheckExact(a[A_OPERATION]))
        goto delegate;
    if (PyUnicode_CheckExact(a[A_EVENT_TYPE]))
        kind = Py_NewRef(a[A_EVENT_TYPE]);
    else if ((PyObject *)Py_TYPE(a[A_EVENT_TYPE]) == w->event_type_cls) {
        kind = PyObject_GetAttr(a[A_EVENT_TYPE], str_value_);
        if (kind == NULL || !PyUnicode_CheckExact(kind))
            goto delegate;
    }
    else
        goto delegate;
    for (int k = A_SYMBOL; k < N_ARGS; k++)
        if (a[k] == Py_None)
            a[k] = NULL;
    if (a[A_SYMBOL] != NULL && !PyUnicode_CheckExact(a[A_SYMBOL]))
        goto delegate;
    if (a[A_TRACE_ID] != NULL) {
        if (!PyUnicode_CheckExact(a[A_TRACE_ID]))
            goto delegate;
        trace = Py_NewRef(a[A_TRACE_ID]);
    }
    else {
        if (PyContextVar_Get(w->trace_var, NULL, &trace) < 0)
            goto delegate;
        if (trace == Py_None)
            Py_CLEAR(trace);
        else if (trace != NULL && !PyUnicode_CheckExact(trace))
            goto delegate;
    }
    Py_ssize_t objects = 0;
    for (int k = A_ORDER_DATA; k <= A_ADDITIONAL_DATA; k++) {
        if (a[k] == NULL)
            continue;
        if (!PyDict_CheckExact(a[k]))
            goto delegate;  /* Python makes it an object */
        objects++;
    }
    PyObject *fields[N_ARGS] = {kind, a[A_OPERATION], a[A_SYMBOL], a[A_ORDER_DATA],
                                a[A_RESPONSE], a[A_ERROR], a[A_ADDITIONAL_DATA], trace};
    int by_orjson = 0;
    int composed = compose(w, fields, &rest, &by_orjson);
    if (composed == 0) {
        /* a string that needs escaping: let orjson write the whole record */
        for (int k = A_ORDER_DATA; k <= A_ADDITIONAL_DATA; k++)
            if (a[k] != NULL && keys_known(w->safe_keys, a[k]) <= 0)
                goto delegate;  /* Python checks the keys, redacts and learns them */
        by_orjson = 1;
        if ((record = PyDict_New()) == NULL)
            goto delegate;
        for (int i = 0; i < N_ARGS; i++)
            if (fields[RECORD_ORDER[i]] != NULL &&
                PyDict_SetItem(record, arg_names[RECORD_ORDER[i]], fields[RECORD_ORDER[i]]) < 0)
                goto delegate;
        PyObject *whole = dumps(w, record, 0);
        composed = whole ? buf_add(&rest, PyBytes_AS_STRING(whole), PyBytes_GET_SIZE(whole)) : -1;
        Py_XDECREF(whole);
    }
    if (composed < 0)
        goto delegate;  /* Python stringifies what orjson refused, and notes it */
    const char *body = rest.p;
    Py_ssize_t body_len = rest.len;
    Py_ssize_t braces = 0;
    for (const char *q = body; by_orjson && (q = memchr(q, '{', (size_t)(body + body_len - q)));
         q++)
        braces++;
    if (by_orjson && braces != objects + 1)
        goto delegate;  /* a nested object: Python walks it for secret keys */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(w->redact_values); i++) {
        PyObject *v = PyTuple_GET_ITEM(w->redact_values, i);
        if (!PyBytes_Check(v) ||
            memmem(body, (size_t)body_len, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v)))
            goto delegate;  /* Python redacts it */
    }

    lock_acquire(w);
    long long now;
    if (w->realtime) {
        struct timespec tsp;
        clock_gettime(CLOCK_REALTIME, &tsp);
        now = (long long)tsp.tv_sec * 1000000000LL + tsp.tv_nsec;
    }
    else {
        PyObject *t = PyObject_CallNoArgs(w->clock);
        now = t ? PyLong_AsLongLong(t) : -1;
        Py_XDECREF(t);
        if (PyErr_Occurred()) {
            lock_release(w);
            goto delegate;
        }
    }
    if (now < 0) {
        lock_release(w);
        goto delegate;
    }
    if (now < w->last_ns)
        now = w->last_ns;  /* never let the trail go back in time */
    w->last_ns = now;
    if (now / 1000000000LL != w->ts_sec)
        set_second(w, now / 1000000000LL);
    if (w->ts_sec < 0) {
        lock_release(w);
        goto delegate;  /* a year the Python path formats */
    }
    int careful = w->slow || w->fd < 0 ||
                  (w->ts_day != w->fd_day && PyUnicode_Compare(w->ts_day, w->fd_day) != 0);
    /* {"timestamp":"<second>.<us>Z",<rest without braces><run_tag><seq>,"prev":"<prev>
     * then "} for the hash, replaced by ","hash":"<hash>"}\n */
    Py_ssize_t tag_len = PyBytes_GET_SIZE(w->run_tag);
    Py_ssize_t cap = w->ts_prefix_len + 11 + body_len + tag_len + 24 + PREV_KEY_LEN + HASH_LEN +
                     TAIL_LEN + 1;
    char stack[STACK_LINE];
    char *line = cap <= STACK_LINE ? stack : PyMem_Malloc((size_t)cap);
    if (line == NULL) {
        lock_release(w);
        goto delegate;
    }
    char *p = line;
    memcpy(p, w->ts_prefix, (size_t)w->ts_prefix_len);
    p += w->ts_prefix_len;
    long long us = now / 1000 % 1000000;
    *p++ = '.';
    for (int i = 5; i >= 0; i--, us /= 10)
        p[i] = (char)('0' + us % 10);
    memcpy(p + 6, "Z\",", 3);
    p += 9;
    Py_ssize_t stamped_len = (p - line) + body_len - 2;
    memcpy(p, body + 1, (size_t)(body_len - 2));
    p += body_len - 2;
    if (careful) {
        /* a new day file, an outage, held records or close: the logger decides (its lock
         * is held), with the timestamp already taken */
        PyObject *stamped = PyBytes_FromStringAndSize(line, stamped_len);
        PyObject *r = stamped ? PyObject_CallFunctionObjArgs(w->commit_slow, stamped, kind, NULL)
                              : NULL;
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)w);
        Py_XDECREF(r);
        Py_XDECREF(stamped);
        goto done;
    }
    memcpy(p, PyBytes_AS_STRING(w->run_tag), (size_t)tag_len);
    p += tag_len;
    p += format_seq(p, w->seq);
    memcpy(p, PREV_KEY, PREV_KEY_LEN);
    p += PREV_KEY_LEN;
    memcpy(p, w->prev, HASH_LEN);
    p += HASH_LEN;
    char digest[HASH_LEN];
    sealer_hex2(&w->sealer, line, (size_t)(p - line), "\"}", 2, digest);
    memcpy(p, HASH_SEP, HASH_SEP_LEN);
    p += HASH_SEP_LEN;
    memcpy(p, digest, HASH_LEN);
    p += HASH_LEN;
    memcpy(p, "\"}\n", 3);
    p += 3;

    Py_ssize_t len = p - line, n;
    int fd = w->fd, err;
    Py_BEGIN_ALLOW_THREADS  /* as os.write: a slow disk never stalls other threads */
    n = write(fd, line, (size_t)len);
    err = errno;
    Py_END_ALLOW_THREADS
    if (n == len) {
        w->size += n;
        w->seq += 1;
        memcpy(w->prev, digest, HASH_LEN);
        w->unsynced += 1;
        w->written += 1;
    }
    else {
        /* the logger undoes partial bytes and holds the record (its lock is held) */
        PyObject *exc = n < 0 ? PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err))
                              : PyObject_CallFunction(PyExc_OSError, "is", ENOSPC,
                                                      "short write to audit file");
        PyObject *stamped = PyBytes_FromStringAndSize(line, stamped_len);
        PyObject *r = exc && stamped ? PyObject_CallFunctionObjArgs(w->write_failed, exc,
                                                                    stamped, kind, NULL)
                                     : NULL;
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)w);
        Py_XDECREF(r);
        Py_XDECREF(exc);
        Py_XDECREF(stamped);
    }
done:
    lock_release(w);
    if (line != stack)
        PyMem_Free(line);
    Py_DECREF(kind);
    Py_XDECREF(trace);
    Py_XDECREF(record);
    buf_free(&rest);
    Py_RETURN_NONE;

delegate:
    PyErr_Clear();
    Py_XDECREF(kind);
    Py_XDECREF(trace);
    Py_XDECREF(record);
    buf_free(&rest);
    return PyObject_Vectorcall(w->fallback, args, nargsf, kwnames);
}

static PyObject *
writer_enter(Writer *w, PyObject *unused)
{
    if (w->lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "audit Writer used before __init__");
        return NULL;
    }
    lock_acquire(w);
    Py_RETURN_NONE;
}

static PyObject *
writer_exit(Writer *w, PyObject *const *args, Py_ssize_t nargs)
{
    if (!w->locked) {
        PyErr_SetString(PyExc_RuntimeError, "audit writer lock released while not held");
        return NULL;
    }
    lock_release(w);
    Py_RETURN_FALSE;
}

/* ------------------------------------------------------ shared state attributes */

static int
set_ll(PyObject *v, long long *out)
{
    long long x = v ? PyLong_AsLongLong(v) : -1;
    if (v == NULL || (x == -1 && PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "cannot delete");
        return -1;
    }
    *out = x;
    return 0;
}

#define LL_FIELD(name)                                                                          \
    static PyObject *get_##name(Writer *w, void *c) { return PyLong_FromLongLong(w->name); }  \
    static int set_##name(Writer *w, PyObject *v, void *c) { return set_ll(v, &w->name); }
LL_FIELD(seq)
LL_FIELD(size)
LL_FIELD(unsynced)
LL_FIELD(last_ns)
LL_FIELD(written)

static PyObject *
get_ts_sec(Writer *w, void *c)
{
    return PyLong_FromLongLong(w->ts_sec);
}

static int
set_ts_sec(Writer *w, PyObject *v, void *c)
{
    long long sec;
    if (set_ll(v, &sec) < 0)
        return -1;
    if (sec >= 0)
        set_second(w, sec);  /* prefix and day follow the second */
    else
        w->ts_sec = -1;
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *
get_prev(Writer *w, void *c)
{
    return PyBytes_FromStringAndSize(w->prev, HASH_LEN);
}

static int
set_prev(Writer *w, PyObject *v, void *c)
{
    if (v == NULL || !PyBytes_Check(v) || PyBytes_GET_SIZE(v) != HASH_LEN) {
        PyErr_SetString(PyExc_ValueError, "prev must be 64 bytes");
        return -1;
    }
    memcpy(w->prev, PyBytes_AS_STRING(v), HASH_LEN);
    return 0;
}

static PyObject *
get_ts_prefix(Writer *w, void *c)
{
    return PyBytes_FromStringAndSize(w->ts_prefix, w->ts_prefix_len);
}

static PyObject *
get_ts_day(Writer *w, void *c)
{
    return Py_NewRef(w->ts_day);
}

static PyObject *
get_fd_day(Writer *w, void *c)
{
    return Py_NewRef(w->fd_day);
}

static int
set_fd_day(Writer *w, PyObject *v, void *c)
{
    if (v == NULL || !PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "fd_day must be str");
        return -1;
    }
    Py_SETREF(w->fd_day, Py_NewRef(v));
    return 0;
}

static PyObject *
get_fd(Writer *w, void *c)
{
    if (w->fd < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(w->fd);
}

static int
set_fd(Writer *w, PyObject *v, void *c)
{
    if (v == Py_None) {
        w->fd = -1;
        return 0;
    }
    long long fd;
    if (set_ll(v, &fd) < 0)
        return -1;
    w->fd = (int)fd;
    return 0;
}

static PyObject *
get_slow(Writer *w, void *c)
{
    return PyBool_FromLong(w->slow);
}

static int
set_slow(Writer *w, PyObject *v, void *c)
{
    int truth = v ? PyObject_IsTrue(v) : -1;
    if (truth < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "cannot delete");
        return -1;
    }
    w->slow = truth;
    return 0;
}

static PyGetSetDef writer_getset[] = {
    {"seq", (getter)get_seq, (setter)set_seq, "next record's seq", NULL},
    {"prev", (getter)get_prev, (setter)set_prev, "hash of the last record (hex bytes)", NULL},
    {"size", (getter)get_size, (setter)set_size, "bytes in the open day file", NULL},
    {"unsynced", (getter)get_unsynced, (setter)set_unsynced, "records since fdatasync", NULL},
    {"last_ns", (getter)get_last_ns, (setter)set_last_ns, "latest timestamp used", NULL},
    {"written", (getter)get_written, (setter)set_written, "records written here", NULL},
    {"ts_sec", (getter)get_ts_sec, (setter)set_ts_sec, "second of ts_prefix", NULL},
    {"ts_prefix", (getter)get_ts_prefix, NULL, "{\"timestamp\":\" and that second", NULL},
    {"ts_day", (getter)get_ts_day, NULL, "YYYYMMDD of ts_sec", NULL},
    {"fd", (getter)get_fd, (setter)set_fd, "open day file or None", NULL},
    {"fd_day", (getter)get_fd_day, (setter)set_fd_day, "YYYYMMDD of fd", NULL},
    {"slow", (getter)get_slow, (setter)set_slow, "every call takes the Python path", NULL},
    {NULL},
};

static PyMethodDef writer_methods[] = {
    {"log_event", (PyCFunction)(void (*)(void))writer_log_event, METH_FASTCALL | METH_KEYWORDS,
     "AuditLogger.log_event, common case in C."},
    {"__enter__", (PyCFunction)writer_enter, METH_NOARGS, "Take the writer lock."},
    {"__exit__", (PyCFunction)(void (*)(void))writer_exit, METH_FASTCALL,
     "Release the writer lock."},
    {NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bot.audit.native._chain.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The logger's chain state, its lock, and its hot path.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)writer_init,
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_traverse = (traverseproc)writer_traverse,
    .tp_clear = (inquiry)writer_clear,
    .tp_methods = writer_methods,
    .tp_getset = writer_getset,
};

/* ------------------------------------------------------------------ reader */

static PyObject *key_timestamp, *key_event_type, *key_operation, *key_run_id;

/* A SPEC §4 timestamp in ASCII: YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z; its year, or -1. */
static int
timestamp_year(PyObject *stamp)
{
    if (!PyUnicode_IS_ASCII(stamp))
        return -1;
    const unsigned char *c = PyUnicode_1BYTE_DATA(stamp);
    Py_ssize_t n = PyUnicode_GET_LENGTH(stamp);
    static const char SHAPE[] = "dddd-dd-ddTdd:dd:dd";
    if (n < 20 || n > 27 || n == 21 || c[n - 1] != 'Z')
        return -1;
    for (int i = 0; i < 19; i++)
        if (SHAPE[i] == 'd' ? (c[i] < '0' || c[i] > '9') : c[i] != SHAPE[i])
            return -1;
    if (n > 20) {
        if (c[19] != '.')
            return -1;
        for (Py_ssize_t i = 20; i < n - 1; i++)
            if (c[i] < '0' || c[i] > '9')
                return -1;
    }
    return (c[0] - '0') * 1000 + (c[1] - '0') * 100 + (c[2] - '0') * 10 + (c[3] - '0');
}

/* is_plain_record(value, max_year, event_types) -> bool
 *
 * True only when reader.validate's fast path accepts ``value`` (exact types, an ASCII
 * timestamp, a known event type, year 2000..max_year). False means "let Python judge":
 * it may still be valid (e.g. a timestamp with non-ASCII digits). */
static PyObject *
is_plain_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyLong_Check(args[1]) || !PyAnySet_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "is_plain_record(value, max_year, event_types)");
        return NULL;
    }
    PyObject *value = args[0];
    if (!PyDict_CheckExact(value))
        Py_RETURN_FALSE;
    long max_year = PyLong_AsLong(args[1]);
    if (max_year == -1 && PyErr_Occurred())
        return NULL;
    PyObject *stamp = PyDict_GetItemWithError(value, key_timestamp);
    PyObject *kind = PyDict_GetItemWithError(value, key_event_type);
    PyObject *operation = PyDict_GetItemWithError(value, key_operation);
    if (PyErr_Occurred())
        return NULL;
    if (stamp == NULL || kind == NULL || operation == NULL || !PyUnicode_CheckExact(stamp) ||
        !PyUnicode_CheckExact(kind) || !PyUnicode_CheckExact(operation))
        Py_RETURN_FALSE;
    int known = PySet_Contains(args[2], kind);
    if (known < 0)
        return NULL;
    if (!known)
        Py_RETURN_FALSE;
    PyObject *texts[3] = {arg_names[A_SYMBOL], arg_names[A_TRACE_ID], key_run_id};
    for (int i = 0; i < 3; i++) {
        PyObject *item = PyDict_GetItemWithError(value, texts[i]);
        if (item == NULL && PyErr_Occurred())
            return NULL;
        if (item != NULL && item != Py_None && !PyUnicode_CheckExact(item))
            Py_RETURN_FALSE;
    }
    for (int k = A_ORDER_DATA; k <= A_ADDITIONAL_DATA; k++) {
        PyObject *item = PyDict_GetItemWithError(value, arg_names[k]);
        if (item == NULL && PyErr_Occurred())
            return NULL;
        if (item != NULL && item != Py_None && !PyDict_CheckExact(item))
            Py_RETURN_FALSE;
    }
    int year = timestamp_year(stamp);
    return PyBool_FromLong(year >= 2000 && year <= max_year);
}

/* ------------------------------------------------------------------ module */

static PyMethodDef module_methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(data, seq, prev, key, day_prefix, event_type_at, notes) -> (bad, seq, prev)"},
    {"is_plain_record", (PyCFunction)(void (*)(void))is_plain_record, METH_FASTCALL,
     "is_plain_record(value, max_year, event_types) -> bool (reader.validate's fast path)"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_chain", NULL, -1, module_methods};

PyMODINIT_FUNC
PyInit__chain(void)
{
    for (int k = 0; k < N_ARGS; k++)
        if ((arg_names[k] = PyUnicode_InternFromString(ARG_NAMES[k])) == NULL)
            return NULL;
    if ((key_timestamp = PyUnicode_InternFromString("timestamp")) == NULL ||
        (key_event_type = PyUnicode_InternFromString("event_type")) == NULL ||
        (key_operation = PyUnicode_InternFromString("operation")) == NULL ||
        (key_run_id = PyUnicode_InternFromString("run_id")) == NULL ||
        (str_value_ = PyUnicode_InternFromString("_value_")) == NULL ||
        (dumps_kwnames = PyTuple_New(2)) == NULL)
        return NULL;
    /* interned: orjson recognizes its keyword names by identity */
    for (int i = 0; i < 2; i++) {
        PyObject *name = PyUnicode_InternFromString(i ? "option" : "default");
        if (name == NULL)
            return NULL;
        PyTuple_SET_ITEM(dumps_kwnames, i, name);
    }
    if (PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
