/*
 * Kernels of the blocked count-min sketch (see streamer/sketch.py for the layout).
 *
 * Why C: one update or lookup is a cache miss plus a handful of integer operations.
 * numpy cannot do conservative update without sorting the batch first (three
 * passes over memory), and numba's runtime costs ~115 MB of resident memory,
 * a third of the whole memory target. These loops are ~80 lines of plain C with
 * no dependency beyond the Python headers, built by setuptools at install time.
 *
 * Every function takes buffers (numpy arrays, C-contiguous) and releases the GIL
 * while it runs, so lookups from several threads proceed in parallel.
 *
 *   table   uint32[blocks * 16]   counters, 16 per 64-byte block
 *   keys    uint64[n]             already-hashed 64-bit keys
 *   block(k)     = (k * m0) >> shift                 (shift = 64 - log2(blocks))
 *   position r   = r * G + top `bits` bits of ((k * m1) << (r * bits)),  G = 1 << bits
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 16

static inline uint64_t block_of(uint64_t k, uint64_t m0, unsigned shift) {
    return shift >= 64 ? 0 : (k * m0) >> shift;
}

/* The loops are always inlined, so a call with constant depth and bits compiles to
 * an unrolled, branch-free copy: about twice as fast as the general loop. */
static inline __attribute__((always_inline)) void
add_loop(uint32_t *t, const uint64_t *k, const uint64_t *c, Py_ssize_t n, uint64_t m0,
         uint64_t m1, unsigned shift, unsigned depth, unsigned bits, uint64_t lo,
         uint64_t hi) {
    const unsigned group = 1u << bits, top_shift = 64 - bits;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint64_t b = block_of(k[i], m0, shift);
        if (b < lo || b >= hi) continue;  /* another thread's share of the table */
        uint32_t *blk = t + b * BLOCK;
        uint64_t h = k[i] * m1;
        unsigned pos[BLOCK];
        uint32_t est = UINT32_MAX;
        for (unsigned r = 0; r < depth; r++) {
            pos[r] = r * group + (unsigned)(bits ? h >> top_shift : 0);
            h <<= bits;
            est = blk[pos[r]] < est ? blk[pos[r]] : est;
        }
        uint64_t v = (uint64_t)est + (c ? c[i] : 1);
        uint32_t nv = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
        for (unsigned r = 0; r < depth; r++)
            blk[pos[r]] = blk[pos[r]] < nv ? nv : blk[pos[r]];
    }
}

static inline __attribute__((always_inline)) void
query_loop(const uint32_t *t, const uint64_t *k, uint32_t *o, Py_ssize_t n, uint64_t m0,
           uint64_t m1, unsigned shift, unsigned depth, unsigned bits) {
    const unsigned group = 1u << bits, top_shift = 64 - bits;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint32_t *blk = t + block_of(k[i], m0, shift) * BLOCK;
        uint64_t h = k[i] * m1;
        uint32_t est = UINT32_MAX;
        for (unsigned r = 0; r < depth; r++) {
            uint32_t v = blk[r * group + (unsigned)(bits ? h >> top_shift : 0)];
            h <<= bits;
            est = v < est ? v : est;
        }
        o[i] = est;
    }
}

static int get_buffers(Py_buffer *table, Py_buffer *keys, Py_ssize_t *n, uint64_t blocks) {
    if (table->len < (Py_ssize_t)(blocks * BLOCK * sizeof(uint32_t))) {
        PyErr_SetString(PyExc_ValueError, "table smaller than blocks * 16 counters");
        return -1;
    }
    if (keys->len % sizeof(uint64_t)) {
        PyErr_SetString(PyExc_ValueError, "keys must be uint64");
        return -1;
    }
    *n = keys->len / (Py_ssize_t)sizeof(uint64_t);
    return 0;
}

/* cu_add(table, keys, counts or None, blocks, m0, m1, shift, depth, bits, lo, hi):
 * only keys whose block is in [lo, hi) are added, so two threads given disjoint
 * ranges update one table at once with the same result as one sequential pass. */
static PyObject *cu_add(PyObject *self, PyObject *args) {
    Py_buffer table, keys, counts = {0};
    PyObject *counts_obj;
    unsigned long long blocks, m0, m1, lo, hi;
    unsigned int shift, depth, bits;
    if (!PyArg_ParseTuple(args, "w*y*OKKKIIIKK", &table, &keys, &counts_obj, &blocks, &m0,
                          &m1, &shift, &depth, &bits, &lo, &hi))
        return NULL;
    Py_ssize_t n;
    PyObject *result = NULL;
    int have_counts = counts_obj != Py_None;
    if (have_counts && PyObject_GetBuffer(counts_obj, &counts, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&table);
        PyBuffer_Release(&keys);
        return NULL;
    }
    if (get_buffers(&table, &keys, &n, blocks) < 0) goto done;
    if (have_counts && counts.len != keys.len) {
        PyErr_SetString(PyExc_ValueError, "counts must be uint64, one per key");
        goto done;
    }
    if (depth < 1 || depth > BLOCK || depth * (1u << bits) > BLOCK) {
        PyErr_SetString(PyExc_ValueError, "depth * 2**bits must be at most 16");
        goto done;
    }
    {
        uint32_t *t = (uint32_t *)table.buf;
        const uint64_t *k = (const uint64_t *)keys.buf;
        const uint64_t *c = have_counts ? (const uint64_t *)counts.buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        if (depth == 4 && bits == 2)  /* the default: a specialised, unrolled copy */
            add_loop(t, k, c, n, m0, m1, shift, 4, 2, lo, hi);
        else
            add_loop(t, k, c, n, m0, m1, shift, depth, bits, lo, hi);
        Py_END_ALLOW_THREADS
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&table);
    PyBuffer_Release(&keys);
    if (have_counts) PyBuffer_Release(&counts);
    return result;
}

/* query(table, keys, out, blocks, m0, m1, shift, depth, bits): out is uint32[n] */
static PyObject *query(PyObject *self, PyObject *args) {
    Py_buffer table, keys, out;
    unsigned long long blocks, m0, m1;
    unsigned int shift, depth, bits;
    if (!PyArg_ParseTuple(args, "y*y*w*KKKIII", &table, &keys, &out, &blocks, &m0, &m1,
                          &shift, &depth, &bits))
        return NULL;
    Py_ssize_t n;
    PyObject *result = NULL;
    if (get_buffers(&table, &keys, &n, blocks) < 0) goto done;
    if (out.len != n * (Py_ssize_t)sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "out must be uint32, one per key");
        goto done;
    }
    if (depth < 1 || depth > BLOCK || depth * (1u << bits) > BLOCK) {
        PyErr_SetString(PyExc_ValueError, "depth * 2**bits must be at most 16");
        goto done;
    }
    {
        const uint32_t *t = (const uint32_t *)table.buf;
        const uint64_t *k = (const uint64_t *)keys.buf;
        uint32_t *o = (uint32_t *)out.buf;
        Py_BEGIN_ALLOW_THREADS
        if (depth == 4 && bits == 2)
            query_loop(t, k, o, n, m0, m1, shift, 4, 2);
        else
            query_loop(t, k, o, n, m0, m1, shift, depth, bits);
        Py_END_ALLOW_THREADS
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&table);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"cu_add", cu_add, METH_VARARGS, "Conservative update of keys (sequential, exact)."},
    {"query", query, METH_VARARGS, "Minimum of each key's counters into out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sketch",
                                    "Blocked count-min sketch kernels.", -1, methods};

PyMODINIT_FUNC PyInit__sketch(void) { return PyModule_Create(&module); }
