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
#define AHEAD 16

static inline uint64_t block_of(uint64_t k, uint64_t m0, unsigned shift) {
    return shift >= 64 ? 0 : (k * m0) >> shift;
}

/* The loops are always inlined, so a call with constant depth and bits compiles to
 * an unrolled, branch-free copy: about twice as fast as the general loop. */
static inline __attribute__((always_inline)) void
add_loop(uint32_t *t, const uint64_t *k, const uint64_t *c, uint64_t weight, Py_ssize_t n,
         uint64_t m0, uint64_t m1, unsigned shift, unsigned depth, unsigned bits, uint64_t lo,
         uint64_t hi) {
    const unsigned group = 1u << bits, top_shift = 64 - bits;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + AHEAD < n) {
            const uint64_t pb = block_of(k[i + AHEAD], m0, shift);
            if (pb >= lo && pb < hi) __builtin_prefetch(t + pb * BLOCK, 1, 0);
        }
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
        uint64_t v = (uint64_t)est + (c ? c[i] : weight);
        uint32_t nv = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
        for (unsigned r = 0; r < depth; r++)
            blk[pos[r]] = blk[pos[r]] < nv ? nv : blk[pos[r]];
    }
}

/* The estimate of one key: the minimum of its counters in its block. */
static inline __attribute__((always_inline)) uint32_t
query_one(const uint32_t *t, uint64_t k, uint64_t m0, uint64_t m1, unsigned shift,
          unsigned depth, unsigned bits) {
    const unsigned group = 1u << bits, top_shift = 64 - bits;
    const uint32_t *blk = t + block_of(k, m0, shift) * BLOCK;
    uint64_t h = k * m1;
    uint32_t est = UINT32_MAX;
    for (unsigned r = 0; r < depth; r++) {
        uint32_t v = blk[r * group + (unsigned)(bits ? h >> top_shift : 0)];
        h <<= bits;
        est = v < est ? v : est;
    }
    return est;
}

static inline __attribute__((always_inline)) void
query_loop(const uint32_t *t, const uint64_t *k, uint32_t *o, Py_ssize_t n, uint64_t m0,
           uint64_t m1, unsigned shift, unsigned depth, unsigned bits) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + AHEAD < n) __builtin_prefetch(t + block_of(k[i + AHEAD], m0, shift) * BLOCK, 0, 0);
        o[i] = query_one(t, k[i], m0, m1, shift, depth, bits);
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

/* cu_add(table, keys, counts or None, blocks, m0, m1, shift, depth, bits, lo, hi, weight):
 * each key is added counts[i] times, or `weight` times without counts. Only keys whose
 * block is in [lo, hi) are added, so two threads given disjoint ranges update one
 * table at once with the same result as one sequential pass. */
static PyObject *cu_add(PyObject *self, PyObject *args) {
    Py_buffer table, keys, counts = {0};
    PyObject *counts_obj;
    unsigned long long blocks, m0, m1, lo, hi, weight;
    unsigned int shift, depth, bits;
    if (!PyArg_ParseTuple(args, "w*y*OKKKIIIKKK", &table, &keys, &counts_obj, &blocks, &m0,
                          &m1, &shift, &depth, &bits, &lo, &hi, &weight))
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
            add_loop(t, k, c, weight, n, m0, m1, shift, 4, 2, lo, hi);
        else
            add_loop(t, k, c, weight, n, m0, m1, shift, depth, bits, lo, hi);
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

#define MAX_ORDER 16

/* cohesive(table, blocks, m0, m1, shift, depth, bits, c1 int64[n], mixed uint64[n],
 *          first bool[n], order, min_count, total, exp_th float64[order-1], P, L,
 *          out bool[(order-1) * n])
 *
 * The cohesion test of streamer/segmentation.py for every n-gram of a chunk,
 * n = 2..order, with the n-gram counts looked up here: row n-2 of out, position i,
 * is 1 when units i..i+n-1 lie in one clause, their count c >= min_count and
 *
 *     total * c >= exp(min_pmi[n]) * max_k c(w[:k]) * c(w[k:])
 *
 * (pmi >= min_pmi with the logarithms taken out; products in uint64, comparison in
 * double, exactly as segmentation.cohesive_masks computes it). c1 holds the unit
 * counts. The key of units i..i+n-1 is sum_j mixed[i+j] * P^j + n * L (mod 2^64),
 * as streamer/ngrams.py makes it. An n-gram whose (n-1)-gram prefix or suffix has
 * a count below min_count has fewer occurrences itself and is not looked up.
 * Memory: (order + 1) * n * 8 bytes of scratch. */
static PyObject *cohesive(PyObject *self, PyObject *args) {
    Py_buffer table, c1b, mixedb, firstb, thb, out;
    unsigned long long blocks, m0, m1, P, L;
    unsigned int shift, depth, bits, order;
    long long min_count;
    double total;
    if (!PyArg_ParseTuple(args, "y*KKKIIIy*y*y*ILdy*KKw*", &table, &blocks, &m0, &m1,
                          &shift, &depth, &bits, &c1b, &mixedb, &firstb, &order,
                          &min_count, &total, &thb, &P, &L, &out))
        return NULL;
    PyObject *result = NULL;
    uint32_t *cnt = NULL;
    uint64_t *h = NULL;
    Py_ssize_t n = mixedb.len / 8;
    if (table.len < (Py_ssize_t)(blocks * BLOCK * sizeof(uint32_t)) || c1b.len != n * 8 ||
        firstb.len != n || order < 2 || order > MAX_ORDER ||
        thb.len != (Py_ssize_t)((order - 1) * sizeof(double)) ||
        out.len != (Py_ssize_t)(order - 1) * n || depth < 1 || depth > BLOCK ||
        depth * (1u << bits) > BLOCK) {
        PyErr_SetString(PyExc_ValueError, "cohesive: inconsistent buffer sizes");
        goto done;
    }
    cnt = PyMem_RawMalloc(sizeof(uint32_t) * (size_t)order * (size_t)(n + 1));
    h = PyMem_RawMalloc(sizeof(uint64_t) * (size_t)(n + 1));
    if (!cnt || !h) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const uint32_t *t = (const uint32_t *)table.buf;
        const int64_t *c1 = (const int64_t *)c1b.buf;
        const uint64_t *mixed = (const uint64_t *)mixedb.buf;
        const uint8_t *first = (const uint8_t *)firstb.buf;
        const double *exp_th = (const double *)thb.buf;
        uint8_t *o = (uint8_t *)out.buf;
        const uint32_t mc = min_count < 1 ? 1 : (min_count > UINT32_MAX ? UINT32_MAX
                                                                         : (uint32_t)min_count);
        Py_BEGIN_ALLOW_THREADS
        memset(o, 0, (size_t)(order - 1) * (size_t)n);
        /* cnt[(k-1) * (n+1) + i]: count of the k-gram at i, 0 where not looked up */
        #define C(k, i) cnt[(size_t)((k) - 1) * (size_t)(n + 1) + (size_t)(i)]
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t v = c1[i];
            C(1, i) = v < 0 ? 0 : (v > UINT32_MAX ? UINT32_MAX : (uint32_t)v);
            h[i] = mixed[i];
        }
        uint64_t pj = 1;
        for (unsigned g = 2; g <= order; g++) {
            pj *= P;
            Py_ssize_t m = n - (Py_ssize_t)g + 1;  /* positions of g-grams */
            if (m <= 0) break;
            const uint64_t salt = (uint64_t)g * L;
            /* a g-gram at i is looked up when it lies in one clause and both of its
             * (g-1)-grams are frequent; h[i] becomes its hash (without the salt) */
            Py_ssize_t ahead = 0;  /* next position whose block was prefetched */
            for (Py_ssize_t i = 0; i < m; i++) {
                h[i] += mixed[i + g - 1] * pj;
                /* prefetch the lookup of a later position (its hash is not final yet:
                 * finish it on the side) */
                for (; ahead < m && ahead <= i + AHEAD; ahead++) {
                    if (C(g - 1, ahead) >= mc && C(g - 1, ahead + 1) >= mc) {
                        uint64_t hk = h[ahead] + (ahead > i ? mixed[ahead + g - 1] * pj : 0);
                        __builtin_prefetch(t + block_of(hk + salt, m0, shift) * BLOCK, 0, 0);
                    }
                }
                uint32_t c = 0;
                /* in one clause: the (g-1)-gram at i is (else its count is 0, as it was
                 * not looked up) and no clause starts at the last unit */
                if (C(g - 1, i) >= mc && C(g - 1, i + 1) >= mc && !first[i + g - 1])
                    c = (depth == 4 && bits == 2) ? query_one(t, h[i] + salt, m0, m1, shift, 4, 2)
                        : query_one(t, h[i] + salt, m0, m1, shift, depth, bits);
                C(g, i) = c;
            }
            for (Py_ssize_t i = m; i <= n; i++) C(g, i) = 0;
            uint8_t *row = o + (size_t)(g - 2) * (size_t)n;
            for (Py_ssize_t i = 0; i < m; i++) {
                uint32_t c = C(g, i);
                if (c < mc) continue;
                uint64_t best = 0;
                for (unsigned k = 1; k < g; k++) {
                    uint64_t prod = (uint64_t)C(k, i) * (uint64_t)C(g - k, i + k);
                    best = prod > best ? prod : best;
                }
                row[i] = total * (double)c >= exp_th[g - 2] * (double)best;
            }
        }
        #undef C
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
done:
    PyMem_RawFree(cnt);
    PyMem_RawFree(h);
    PyBuffer_Release(&table);
    PyBuffer_Release(&c1b);
    PyBuffer_Release(&mixedb);
    PyBuffer_Release(&firstb);
    PyBuffer_Release(&thb);
    PyBuffer_Release(&out);
    return result;
}

/* count_keys(mixed uint64[n], first bool[n], ids int64[n], han_limit, order, P, L,
 *            out uint64[k] or None) -> k, the number of keys
 *
 * The keys the count phase adds, in its order (streamer/sketch.py, ngram_count_keys):
 * the key (mixed[i] + L) of every unit whose id is >= han_limit (the unigrams the
 * exact table does not count), then for n = 2..order the key of every n-gram inside
 * a clause, by position: sum_j mixed[i+j] * P^j + n * L (mod 2^64), as
 * streamer/ngrams.py makes it; an n-gram is inside a clause when none of its units
 * but the first starts one. With out None the keys are only counted (from the clause
 * lengths), so that the caller allocates exactly k: a buffer of n * order keys, ~5 MB
 * a block, is past numpy's huge-page threshold, and the kernel zeroed 2 MB pages for
 * it at every block. Writing is one pass over the units, clause by clause, each
 * order's keys going to its own region of out (the numpy expression made and
 * filtered a key and a mask array per order). */
#define MAX_KEY_ORDER 64

/* Always inlined, so that with a constant order the region cursors live in registers. */
static inline __attribute__((always_inline)) void
fill_keys(uint64_t *o, Py_ssize_t *at_, const uint64_t *mixed, const uint8_t *first,
          const int64_t *ids, Py_ssize_t n, long long han_limit, unsigned order,
          const uint64_t *pw, uint64_t L) {
    Py_ssize_t at[MAX_KEY_ORDER + 2];
    memcpy(at, at_, sizeof(Py_ssize_t) * (order + 2));
    for (Py_ssize_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && !first[b]; b++) {}
        for (Py_ssize_t i = a; i < b; i++) {
            if (ids[i] >= han_limit) o[at[1]++] = mixed[i] + L;
            uint64_t h = mixed[i];
            Py_ssize_t top = b - i < (Py_ssize_t)order ? b - i : (Py_ssize_t)order;
            for (Py_ssize_t g = 2; g <= top; g++) {
                h += mixed[i + g - 1] * pw[g - 1];
                o[at[g]++] = h + (uint64_t)g * L;
            }
        }
    }
}

static PyObject *count_keys(PyObject *self, PyObject *args) {
    Py_buffer mixedb, firstb, idsb, out = {0};
    PyObject *out_obj;
    long long han_limit;
    unsigned int order;
    unsigned long long P, L;
    if (!PyArg_ParseTuple(args, "y*y*y*LIKKO", &mixedb, &firstb, &idsb, &han_limit, &order,
                          &P, &L, &out_obj))
        return NULL;
    PyObject *result = NULL;
    int have_out = out_obj != Py_None;
    Py_ssize_t n = mixedb.len / 8;
    if (have_out && PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE) < 0) {
        have_out = 0;
        goto done;
    }
    if (mixedb.len % 8 || firstb.len != n || idsb.len != n * 8 || order < 1 ||
        order > MAX_KEY_ORDER || (have_out && out.len % 8)) {
        PyErr_SetString(PyExc_ValueError, "count_keys: inconsistent buffer sizes");
        goto done;
    }
    {
        const uint64_t *mixed = (const uint64_t *)mixedb.buf;
        const uint8_t *first = (const uint8_t *)firstb.buf;
        const int64_t *ids = (const int64_t *)idsb.buf;
        uint64_t *o = have_out ? (uint64_t *)out.buf : NULL;
        /* at[g]: where the keys of order g go next (order 1: the non-Han unigrams) */
        Py_ssize_t at[MAX_KEY_ORDER + 2] = {0};
        uint64_t pw[MAX_KEY_ORDER + 1];
        int ok = 1;
        Py_BEGIN_ALLOW_THREADS
        pw[0] = 1;
        for (unsigned g = 1; g <= order; g++) pw[g] = pw[g - 1] * P;
        /* the keys of each order, from the clause lengths: r units hold r - g + 1
         * g-grams; clauses start at every unit i >= 1 with first[i] */
        Py_ssize_t count[MAX_KEY_ORDER + 1] = {0};
        for (Py_ssize_t a = 0, b; a < n; a = b) {
            for (b = a + 1; b < n && !first[b]; b++) {}
            for (unsigned g = 2; g <= order && (Py_ssize_t)g <= b - a; g++)
                count[g] += b - a - (Py_ssize_t)g + 1;
        }
        for (Py_ssize_t i = 0; i < n; i++) count[1] += ids[i] >= han_limit;
        for (unsigned g = 1; g <= order; g++) at[g + 1] = at[g] + count[g];
        if (o && at[order + 1] != out.len / 8) {
            ok = 0;
        } else if (o) {
            if (order == 4)  /* the default: a specialised, unrolled copy */
                fill_keys(o, at, mixed, first, ids, n, han_limit, 4, pw, L);
            else
                fill_keys(o, at, mixed, first, ids, n, han_limit, order, pw, L);
        }
        Py_END_ALLOW_THREADS
        if (!ok)
            PyErr_SetString(PyExc_ValueError, "count_keys: out must hold exactly the keys");
        else
            result = PyLong_FromSsize_t(have_out ? out.len / 8 : at[order + 1]);
    }
done:
    PyBuffer_Release(&mixedb);
    PyBuffer_Release(&firstb);
    PyBuffer_Release(&idsb);
    if (have_out) PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"cu_add", cu_add, METH_VARARGS, "Conservative update of keys (sequential, exact)."},
    {"query", query, METH_VARARGS, "Minimum of each key's counters into out."},
    {"cohesive", cohesive, METH_VARARGS, "Look up every n-gram of a chunk and test cohesion."},
    {"count_keys", count_keys, METH_VARARGS, "Keys of the count phase, in its order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sketch",
                                    "Blocked count-min sketch kernels.", -1, methods};

PyMODINIT_FUNC PyInit__sketch(void) { return PyModule_Create(&module); }
