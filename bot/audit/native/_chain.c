/* The verifier's line scan: one stateless function over bytes.
 *
 * Why C: `verify` must check a million lines a second with two workers (a few
 * slice compares and one SHA-256 per line); the Python loop in verify.py, the
 * reference, does ~0.4M per worker. The function takes bytes and returns bytes:
 * no Python callbacks, no state kept between calls, and no rule of the format
 * beyond the seal's fixed tail (chain.py) — the caller passes what a line must
 * start with and which event types to report. Tests compare it with the Python
 * loop on hundreds of tampered trails. (The writer hashes with hashlib: a C
 * digest per record saved only ~0.2 us, see docs/benchmarks.md.)
 *
 * OpenSSL's EVP interface; HMAC-SHA256 is built from two EVP digests over the
 * padded key (RFC 2104) so that the keyed inner state is computed once per scan.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <string.h>

#define HASH_LEN 64
#define BLOCK 64

static const char HEX[] = "0123456789abcdef";
static const char HASH_SEP[] = "\",\"hash\":\""; /* between prev and hash */
#define HASH_SEP_LEN 10
#define TAIL_LEN (HASH_SEP_LEN + HASH_LEN + 2) /* ","hash":"<64>"} */
static const char PREV_KEY[] = ",\"prev\":\"";
#define PREV_KEY_LEN 9

static EVP_MD *sha256; /* fetched once at import; read-only afterwards */

/* ------------------------------------------------------------------ digests */

typedef struct {
    EVP_MD_CTX *work, *inner, *outer; /* inner/outer: NULL unless keyed */
} Digester;

static void
digester_free(Digester *d)
{
    EVP_MD_CTX_free(d->work);
    EVP_MD_CTX_free(d->inner);
    EVP_MD_CTX_free(d->outer);
}

/* Set up for SHA-256, or HMAC-SHA256 when key_len > 0. Returns -1 with an exception set. */
static int
digester_init(Digester *d, const unsigned char *key, Py_ssize_t key_len)
{
    unsigned char block[BLOCK] = {0}, pad[BLOCK];
    unsigned int n = 0;
    d->inner = d->outer = NULL;
    if ((d->work = EVP_MD_CTX_new()) == NULL)
        goto fail;
    if (key_len <= 0)
        return 0;
    if (key_len > BLOCK) {
        if (!EVP_Digest(key, (size_t)key_len, block, &n, sha256, NULL))
            goto fail;
    }
    else
        memcpy(block, key, (size_t)key_len);
    if ((d->inner = EVP_MD_CTX_new()) == NULL || (d->outer = EVP_MD_CTX_new()) == NULL)
        goto fail;
    for (int i = 0; i < BLOCK; i++)
        pad[i] = block[i] ^ 0x36;
    if (!EVP_DigestInit_ex2(d->inner, sha256, NULL) || !EVP_DigestUpdate(d->inner, pad, BLOCK))
        goto fail;
    for (int i = 0; i < BLOCK; i++)
        pad[i] = block[i] ^ 0x5c;
    if (!EVP_DigestInit_ex2(d->outer, sha256, NULL) || !EVP_DigestUpdate(d->outer, pad, BLOCK))
        goto fail;
    return 0;
fail:
    digester_free(d);
    PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 set-up failed");
    return -1;
}

/* Lowercase hex digest of data[0:n] + more[0:m] into out[0:64]; 0 on an OpenSSL error. */
static int
digest_hex(Digester *d, const char *data, size_t n, const char *more, size_t m, char *out)
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_MD_CTX *c = d->work;
    if (!(d->inner ? EVP_MD_CTX_copy_ex(c, d->inner) : EVP_DigestInit_ex2(c, sha256, NULL)) ||
        !EVP_DigestUpdate(c, data, n) || !EVP_DigestUpdate(c, more, m) ||
        !EVP_DigestFinal_ex(c, md, &len))
        return 0;
    if (d->outer &&
        (!EVP_MD_CTX_copy_ex(c, d->outer) || !EVP_DigestUpdate(c, md, 32) ||
         !EVP_DigestFinal_ex(c, md, &len)))
        return 0;
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX[md[i] >> 4];
        out[2 * i + 1] = HEX[md[i] & 15];
    }
    return 1;
}

static int
key_arg(PyObject *key, const unsigned char **buf, Py_ssize_t *len)
{
    *buf = NULL;
    *len = 0;
    if (key == Py_None)
        return 0;
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "key must be bytes or None");
        return -1;
    }
    *buf = (const unsigned char *)PyBytes_AS_STRING(key);
    *len = PyBytes_GET_SIZE(key);
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

/* Does the line p[0:len] hold one of `marks` (a tuple of bytes) at offset `at`? */
static int
marked(const char *p, Py_ssize_t len, Py_ssize_t at, PyObject *marks)
{
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(marks); k++) {
        PyObject *mark = PyTuple_GET_ITEM(marks, k);
        Py_ssize_t n = PyBytes_GET_SIZE(mark);
        if (len >= at + n && memcmp(p + at, PyBytes_AS_STRING(mark), (size_t)n) == 0)
            return 1;
    }
    return 0;
}

/* scan(data, seq, prev, key, line_start, mark_at, marks, notes) -> (bad, seq, prev)
 *
 * verify._scan_lines over the complete lines of `data` (bytes after the last newline
 * are ignored): each line must start with `line_start`, end its body with
 * `,"seq":<seq>,"prev":"<prev>` and carry the digest of that body. Lines holding
 * one of `marks` (bytes) at offset `mark_at` are appended to `notes` as (index, line). */
static PyObject *
scan(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer data;
    long long seq;
    const char *prev_in, *start;
    Py_ssize_t prev_len, start_len, at;
    PyObject *key_obj, *marks, *notes;
    const unsigned char *key;
    Py_ssize_t key_len;
    Digester d;
    if (!PyArg_ParseTuple(args, "y*Ly#Oy#nO!O", &data, &seq, &prev_in, &prev_len, &key_obj,
                          &start, &start_len, &at, &PyTuple_Type, &marks, &notes))
        return NULL;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(marks); k++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(marks, k)))
            PyErr_SetString(PyExc_TypeError, "marks must be a tuple of bytes");
    if (!PyErr_Occurred() && (prev_len != HASH_LEN || (notes != Py_None && !PyList_Check(notes))))
        PyErr_SetString(PyExc_ValueError, "prev must be 64 hex bytes; notes a list or None");
    if (PyErr_Occurred() || key_arg(key_obj, &key, &key_len) < 0 ||
        digester_init(&d, key, key_len) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    char prev[HASH_LEN], digest[HASH_LEN], tag[32 + PREV_KEY_LEN + HASH_LEN];
    memcpy(prev, prev_in, HASH_LEN);
    const char *p = data.buf, *stop = p + data.len;
    Py_ssize_t index = 0, bad = -1;
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
        if (end < tag_len || len < start_len || memcmp(p, start, (size_t)start_len) != 0 ||
            memcmp(p + end - tag_len, tag, (size_t)tag_len) != 0 ||
            memcmp(p + end, HASH_SEP, HASH_SEP_LEN) != 0 || p[len - 2] != '"' ||
            p[len - 1] != '}') {
            bad = index;
            break;
        }
        /* the hashed body is line[:end] + '"}' (the record without its hash) */
        if (!digest_hex(&d, p, (size_t)end, "\"}", 2, digest)) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
            failed = 1;
            break;
        }
        if (memcmp(p + end + HASH_SEP_LEN, digest, HASH_LEN) != 0) {
            bad = index;
            break;
        }
        if (notes != Py_None && marked(p, len, at, marks)) {
            PyObject *item = Py_BuildValue("(ny#)", index, p, len);
            failed = item == NULL || PyList_Append(notes, item) < 0;
            Py_XDECREF(item);
            if (failed)
                break;
        }
        seq += 1;
        memcpy(prev, digest, HASH_LEN);
        index += 1;
        p = nl + 1;
    }
    digester_free(&d);
    PyBuffer_Release(&data);
    if (failed)
        return NULL;
    if (bad < 0)
        return Py_BuildValue("(OLy#)", Py_None, seq, prev, (Py_ssize_t)HASH_LEN);
    return Py_BuildValue("(nLy#)", bad, seq, prev, (Py_ssize_t)HASH_LEN);
}

/* ------------------------------------------------------------------ module */

static PyMethodDef module_methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(data, seq, prev, key, line_start, mark_at, marks, notes) -> (bad, seq, prev)"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_chain", NULL, -1, module_methods};

PyMODINIT_FUNC
PyInit__chain(void)
{
    if (sha256 == NULL && (sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA256");
        return NULL;
    }
    return PyModule_Create(&module);
}
