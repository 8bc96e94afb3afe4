/*
 * Kernels of text encoding (see streamer/units.py): the per-character passes that,
 * as numpy expressions, cost a dozen passes over the code points of every chunk
 * (the largest single cost of discover before they moved here). Both functions
 * take buffers, release the GIL, and produce exactly what the numpy code did.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>


/* fold(cps uint32[n], table uint32[limit], out uint32[n], slow, expand_base)
 *   out[i] = table[cps[i]] below the table's limit, else cps[i].
 * Table values >= expand_base (and != slow) mark a character whose NFKC form is
 * several characters: expansion number value - expand_base.
 * Returns (needs_slow, expansions, extra, changed): whether any character needs the
 * real NFKC (the table's `slow` marker, or a compatibility ideograph U+2F800..
 * U+2FA1F), how many characters expand, how many characters the expansions add, and
 * whether any character changed. `extra` needs exp_off: pass it as a buffer. */
static PyObject *fold(PyObject *self, PyObject *args) {
    Py_buffer cps, table, out, exp_off;
    unsigned int slow_mark, expand_base;
    if (!PyArg_ParseTuple(args, "y*y*w*y*II", &cps, &table, &out, &exp_off, &slow_mark,
                          &expand_base))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = cps.len / 4, limit = table.len / 4, n_exp = exp_off.len / 4 - 1;
    if (out.len != cps.len) {
        PyErr_SetString(PyExc_ValueError, "out must be uint32, one per code point");
        goto done;
    }
    {
        const uint32_t *c = (const uint32_t *)cps.buf, *t = (const uint32_t *)table.buf;
        const uint32_t *eo = (const uint32_t *)exp_off.buf;
        uint32_t *o = (uint32_t *)out.buf;
        int slow = 0, changed = 0;
        Py_ssize_t expand = 0, extra = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t cp = c[i], m = cp < (uint32_t)limit ? t[cp] : cp;
            o[i] = m;
            changed |= m != cp;
            slow |= (m == slow_mark) | (cp >= 0x2F800 && cp < 0x2FA20);
            if (m >= expand_base && m != slow_mark) {
                Py_ssize_t e = m - expand_base;
                if (e < n_exp) {
                    expand++;
                    extra += (Py_ssize_t)(eo[e + 1] - eo[e]) - 1;
                } else {
                    slow = 1;  /* not a known expansion: let the real NFKC decide */
                }
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_BuildValue("(innO)", slow, expand, extra, changed ? Py_True : Py_False);
    }
done:
    PyBuffer_Release(&cps);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    PyBuffer_Release(&exp_off);
    return result;
}

/* expand(mapped uint32[n], exp_off uint32[k+1], exp_data uint32[], expand_base,
 *        out uint32[n + extra]): mapped with each expansion marker replaced by its
 * code points exp_data[exp_off[e]:exp_off[e+1]] (fold() counted `extra`). */
static PyObject *expand(PyObject *self, PyObject *args) {
    Py_buffer mapped, exp_off, exp_data, out;
    unsigned int expand_base;
    if (!PyArg_ParseTuple(args, "y*y*y*Iw*", &mapped, &exp_off, &exp_data, &expand_base,
                          &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = mapped.len / 4, cap = out.len / 4, n_exp = exp_off.len / 4 - 1;
    {
        const uint32_t *m = (const uint32_t *)mapped.buf, *eo = (const uint32_t *)exp_off.buf;
        const uint32_t *ed = (const uint32_t *)exp_data.buf;
        uint32_t *o = (uint32_t *)out.buf;
        Py_ssize_t j = 0;
        int overflow = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n && !overflow; i++) {
            uint32_t v = m[i];
            Py_ssize_t e = (Py_ssize_t)v - (Py_ssize_t)expand_base;
            if (v >= expand_base && e < n_exp) {
                for (uint32_t k = eo[e]; k < eo[e + 1]; k++) {
                    if (j >= cap) { overflow = 1; break; }
                    o[j++] = ed[k];
                }
            } else {
                if (j >= cap) { overflow = 1; break; }
                o[j++] = v;
            }
        }
        Py_END_ALLOW_THREADS
        if (overflow || j != cap)
            PyErr_SetString(PyExc_ValueError, "out must hold exactly the expanded text");
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&mapped);
    PyBuffer_Release(&exp_off);
    PyBuffer_Release(&exp_data);
    PyBuffer_Release(&out);
    return result;
}

#define CLS_BREAK 0
#define CLS_HAN 1
#define CLS_ALNUM 2

/* splitmix64's finaliser: streamer/ngrams.py mix(), the spread-out form of a unit id */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* units(cps uint32[n], cls uint8[han_limit], mixed, q, ids int64[n], starts int64[n],
 *       ends int64[n], first bool[n], mixes uint64[n]) -> number of units m (the first
 * m entries set; mixes[k] = mix64(ids[k])).
 * A Han character is a unit; in mixed mode a run of ASCII letters/digits is one unit
 * whose id is ASCII_TAG | (sum_j c_j q^j mod 2^64, low 61 bits), with DIGITS_TAG
 * also set for a run of digits only; everything else is a clause break. */
static PyObject *units(PyObject *self, PyObject *args) {
    Py_buffer cps, cls, ids, starts, ends, first, mixes;
    int mixed;
    unsigned long long q;
    if (!PyArg_ParseTuple(args, "y*y*pKw*w*w*w*w*", &cps, &cls, &mixed, &q, &ids, &starts,
                          &ends, &first, &mixes))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = cps.len / 4, limit = cls.len;
    if (ids.len != n * 8 || starts.len != n * 8 || ends.len != n * 8 || first.len != n ||
        mixes.len != n * 8) {
        PyErr_SetString(PyExc_ValueError, "ids/starts/ends int64 and first bool, one per code point");
        goto done;
    }
    {
        const uint32_t *c = (const uint32_t *)cps.buf;
        const uint8_t *k = (const uint8_t *)cls.buf;
        int64_t *id = (int64_t *)ids.buf, *st = (int64_t *)starts.buf, *en = (int64_t *)ends.buf;
        uint8_t *fi = (uint8_t *)first.buf;
        uint64_t *mx = (uint64_t *)mixes.buf;
        const uint64_t ascii_tag = 1ULL << 62, digits_tag = 1ULL << 61;
        Py_ssize_t m = 0, i = 0;
        int prev = CLS_BREAK;
        Py_BEGIN_ALLOW_THREADS
        while (i < n) {
            uint32_t cp = c[i];
            int kind = cp < (uint32_t)limit ? k[cp] : CLS_BREAK;
            if (kind == CLS_ALNUM && !mixed) kind = CLS_BREAK;
            if (kind == CLS_HAN) {
                id[m] = cp; st[m] = i; en[m] = i + 1; fi[m] = prev == CLS_BREAK;
                mx[m] = mix64(cp); m++;
                i++;
            } else if (kind == CLS_ALNUM) {
                Py_ssize_t a = i;
                uint64_t h = 0, p = 1;
                int digits = 1;
                while (i < n && c[i] < (uint32_t)limit && k[c[i]] == CLS_ALNUM) {
                    h += (uint64_t)c[i] * p;
                    p *= q;
                    digits &= c[i] >= '0' && c[i] <= '9';
                    i++;
                }
                id[m] = (int64_t)((h & ((1ULL << 61) - 1)) | ascii_tag | (digits ? digits_tag : 0));
                st[m] = a; en[m] = i; fi[m] = prev == CLS_BREAK;
                mx[m] = mix64((uint64_t)id[m]); m++;
            } else {
                i++;
            }
            prev = kind;
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(m);
    }
done:
    PyBuffer_Release(&cps);
    PyBuffer_Release(&cls);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&first);
    PyBuffer_Release(&mixes);
    return result;
}

/* segment(word str, index dict, log_total float, max_part int, tag_bits int) -> tuple
 *
 * Lexicon.segment (streamer/core/lexicon.py documents it): the most probable split of
 * a word into lexicon words, by dynamic programming over its units (a run of ASCII
 * [a-z0-9], or one character), with ln P(part) = ln(entry >> tag_bits) - log_total
 * for a part in `index` (str -> int entry), and -log_total for a single unit that is
 * not. The same floating-point operations in the same order as the Python loop it
 * replaces (double addition, libm log, strict > with nearer split points first), so
 * the same parts. Holds the GIL (it reads the dict); ~3x faster than the Python loop,
 * which ran for every candidate of every rescore. */
static int is_alnum_unit(Py_UCS4 c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static PyObject *segment(PyObject *self, PyObject *args) {
    PyObject *word, *index;
    double log_total;
    Py_ssize_t max_part;
    unsigned int tag_bits;
    if (!PyArg_ParseTuple(args, "UO!dnI", &word, &PyDict_Type, &index, &log_total, &max_part,
                          &tag_bits))
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(word);
    int kind = PyUnicode_KIND(word);
    const void *data = PyUnicode_DATA(word);
    PyObject *result = NULL;
    /* at[k]: where unit k starts (at[n] = len); best, back: the DP over unit ends */
    Py_ssize_t *at = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(len + 1) * 2);
    double *best = PyMem_Malloc(sizeof(double) * (size_t)(len + 1));
    if (!at || !best) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t *back = at + len + 1;
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < len;) {
        at[n++] = i;
        if (is_alnum_unit(PyUnicode_READ(kind, data, i))) {
            while (i < len && is_alnum_unit(PyUnicode_READ(kind, data, i))) i++;
        } else {
            i++;
        }
    }
    at[n] = len;
    const double unknown = -log_total;
    best[0] = 0.0;
    for (Py_ssize_t i = 1; i <= n; i++) {
        double top = -INFINITY;
        Py_ssize_t arg = 0;
        for (Py_ssize_t j = i - 1; j >= 0; j--) {
            if (at[i] - at[j] > max_part && j < i - 1) break;
            PyObject *text = PyUnicode_Substring(word, at[j], at[i]);
            if (!text) goto done;
            PyObject *entry = PyDict_GetItemWithError(index, text);
            Py_DECREF(text);
            double lp;
            if (entry == NULL) {
                if (PyErr_Occurred()) goto done;
                if (j < i - 1) continue;
                lp = unknown;
            } else {
                long long e = PyLong_AsLongLong(entry);
                if (e == -1 && PyErr_Occurred()) goto done;
                lp = log((double)(e >> tag_bits)) - log_total;
            }
            if (best[j] + lp > top) {
                top = best[j] + lp;
                arg = j;
            }
        }
        best[i] = top;
        back[i] = arg;
    }
    Py_ssize_t parts = 0;
    for (Py_ssize_t i = n; i > 0; i = back[i]) parts++;
    result = PyTuple_New(parts);
    if (!result) goto done;
    for (Py_ssize_t i = n, k = parts - 1; i > 0; i = back[i], k--) {
        PyObject *part = PyUnicode_Substring(word, at[back[i]], at[i]);
        if (!part) {
            Py_CLEAR(result);
            goto done;
        }
        PyTuple_SET_ITEM(result, k, part);
    }
done:
    PyMem_Free(at);
    PyMem_Free(best);
    return result;
}

static PyMethodDef methods[] = {
    {"fold", fold, METH_VARARGS, "Map code points through the NFKC table."},
    {"expand", expand, METH_VARARGS, "Replace expansion markers by their code points."},
    {"units", units, METH_VARARGS, "Cut code points into units and clause starts."},
    {"segment", segment, METH_VARARGS, "Most probable split of a word into lexicon words."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_units",
                                    "Text encoding kernels.", -1, methods};

PyMODINIT_FUNC PyInit__units(void) { return PyModule_Create(&module); }
