/* Hamming 2-NN of 256-bit binary descriptors (ORB) for keypoint verification
 * (engine/regions.py: _two_nearest, which falls back to numpy when this is not built).
 *
 * For each query descriptor: the distance to its nearest and second-nearest candidate
 * descriptor and the nearest one's index, the first of equals (as cv2.batchDistance with
 * K=2 gives them). Exact: the same numbers as numpy's path. The GIL is released while it
 * counts, so verification threads use every core.
 *
 * Speed: each query descriptor is compared with every candidate descriptor; ROWS query
 * descriptors are taken at a time so that each candidate descriptor is loaded once per
 * block. Built only with the CPU's own bit count (x86 POPCNT, checked at import; ARM):
 * `native` is False where there is none, and regions.py keeps numpy's path. */
#include "_buffers.h"

#define BYTES 32 /* one descriptor: 256 bits */
#define WORDS 4
#define ROWS 8 /* query descriptors per block */
#define FAR (1 << 30)

/* Query descriptors [start, start + rows) against all m candidates; rows <= ROWS. */
#define BLOCK(POPCOUNT)                                                                  \
    uint64_t a[ROWS][WORDS];                                                             \
    int d0[ROWS], d1[ROWS];                                                              \
    Py_ssize_t best[ROWS];                                                               \
    memcpy(a, q + start * BYTES, (size_t)rows * BYTES);                                  \
    for (int k = 0; k < rows; k++) {                                                     \
        d0[k] = d1[k] = FAR;                                                             \
        best[k] = 0;                                                                     \
    }                                                                                    \
    const unsigned char *cj = c;                                                         \
    for (Py_ssize_t j = 0; j < m; j++, cj += BYTES) {                                    \
        uint64_t b[WORDS];                                                               \
        memcpy(b, cj, BYTES);                                                            \
        for (int k = 0; k < rows; k++) {                                                 \
            int d = POPCOUNT(a[k][0] ^ b[0]) + POPCOUNT(a[k][1] ^ b[1]) +                \
                    POPCOUNT(a[k][2] ^ b[2]) + POPCOUNT(a[k][3] ^ b[3]);                 \
            if (d < d0[k]) {                                                             \
                d1[k] = d0[k];                                                           \
                d0[k] = d;                                                               \
                best[k] = j;                                                             \
            } else if (d < d1[k]) {                                                      \
                d1[k] = d;                                                               \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    for (int k = 0; k < rows; k++) {                                                     \
        out_d0[start + k] = (float)d0[k];                                                \
        out_d1[start + k] = (float)d1[k];                                                \
        out_nn[start + k] = best[k];                                                     \
    }

#define KERNEL(NAME, POPCOUNT, ATTRIBUTE)                                                \
    ATTRIBUTE static void NAME(const unsigned char *q, Py_ssize_t n,                     \
                               const unsigned char *c, Py_ssize_t m, float *out_d0,      \
                               float *out_d1, Py_ssize_t *out_nn) {                      \
        for (Py_ssize_t start = 0; start < n; start += ROWS) {                           \
            /* full blocks get a constant row count, so their loops unroll */            \
            if (n - start >= ROWS) {                                                     \
                const int rows = ROWS;                                                   \
                BLOCK(POPCOUNT)                                                          \
            } else {                                                                     \
                const int rows = (int)(n - start);                                       \
                BLOCK(POPCOUNT)                                                          \
            }                                                                            \
        }                                                                                \
    }

typedef void kernel_fn(const unsigned char *, Py_ssize_t, const unsigned char *, Py_ssize_t,
                       float *, float *, Py_ssize_t *);

/* The kernel for this CPU, or NULL where bits would be counted in software: that is
 * slower than numpy's path, which regions.py then keeps. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__aarch64__) || defined(_M_ARM64))
/* 64-bit ARM (clang-cl too): the compiler's popcount is the CPU's own (NEON) */
KERNEL(kernel_builtin, __builtin_popcountll, )
static kernel_fn *pick_kernel(void) { return kernel_builtin; }
#elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
KERNEL(kernel_popcnt, __builtin_popcountll, __attribute__((target("popcnt"))))
static kernel_fn *pick_kernel(void) {
    unsigned int eax, ebx, ecx, edx;
    /* CPUID leaf 1, ECX bit 23: POPCNT (read directly: Apple's runtime lacks the
     * compiler's __builtin_cpu_supports) */
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 23))) return kernel_popcnt;
    return NULL;
}
#elif defined(_MSC_VER) && defined(_M_X64)
#include <intrin.h>
KERNEL(kernel_popcnt, __popcnt64, )
static kernel_fn *pick_kernel(void) {
    int info[4];
    __cpuid(info, 1);
    return (info[2] & (1 << 23)) ? kernel_popcnt : NULL;
}
#elif defined(_MSC_VER) && defined(_M_ARM64)
#include <intrin.h>
KERNEL(kernel_builtin, _CountOneBits64, )
static kernel_fn *pick_kernel(void) { return kernel_builtin; }
#else
static kernel_fn *pick_kernel(void) { return NULL; }
#endif

static kernel_fn *kernel = NULL;

/* `typed_buffer` of exactly `len` bytes (len < 0: any whole number of descriptors); 0,
 * or -1 with an exception set. */
static int get_buffer(PyObject *obj, Py_buffer *view, int flags, const char *formats,
                      Py_ssize_t itemsize, Py_ssize_t len, const char *what) {
    if (typed_buffer(obj, view, flags, formats, itemsize, what) < 0) return -1;
    if (len < 0 ? view->len % BYTES == 0 : view->len == len) return 0;
    PyErr_Format(PyExc_ValueError, "%s: %zd bytes, not %s", what, view->len,
                 len < 0 ? "whole 32-byte descriptors" : "one value per query descriptor");
    PyBuffer_Release(view);
    return -1;
}

static PyObject *two_nearest(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *objs[5];
    if (!PyArg_ParseTuple(args, "OOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4]))
        return NULL;
    Py_buffer views[5];
    int got = 0;
    if (kernel == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no native bit count on this CPU (see `native`)");
        return NULL;
    }
    if (get_buffer(objs[0], &views[0], 0, "B", 1, -1, "query") == 0) got++;
    if (got == 1 && get_buffer(objs[1], &views[1], 0, "B", 1, -1, "candidates") == 0) got++;
    Py_ssize_t n = got >= 1 ? views[0].len / BYTES : 0;
    Py_ssize_t m = got >= 2 ? views[1].len / BYTES : 0;
    const Py_ssize_t out_len[3] = {n * (Py_ssize_t)sizeof(float), n * (Py_ssize_t)sizeof(float),
                                   n * (Py_ssize_t)sizeof(Py_ssize_t)};
    const char *out_name[3] = {"d0", "d1", "nearest"};
    char intp[5];
    intp_formats(intp);
    const char *out_format[3] = {"f", "f", intp};
    const Py_ssize_t out_item[3] = {sizeof(float), sizeof(float), sizeof(Py_ssize_t)};
    while (got >= 2 && got < 5 &&
           get_buffer(objs[got], &views[got], PyBUF_WRITABLE, out_format[got - 2],
                      out_item[got - 2], out_len[got - 2], out_name[got - 2]) == 0)
        got++;
    int ok = got == 5;
    if (ok && m < 2) {
        PyErr_SetString(PyExc_ValueError, "two_nearest needs at least 2 candidate descriptors");
        ok = 0;
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        kernel((const unsigned char *)views[0].buf, n, (const unsigned char *)views[1].buf, m,
               (float *)views[2].buf, (float *)views[3].buf, (Py_ssize_t *)views[4].buf);
        Py_END_ALLOW_THREADS
    }
    while (got > 0) PyBuffer_Release(&views[--got]);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"two_nearest", two_nearest, METH_VARARGS,
     "two_nearest(query, candidates, d0, d1, nearest) -> None\n\n"
     "query (n, 32) and candidates (m >= 2, 32): C-contiguous uint8 descriptors. Writes, "
     "for each query descriptor, the Hamming distance to its nearest and second-nearest "
     "candidate into d0 and d1 (float32, n) and the nearest one's index, the first of "
     "equals, into nearest (intp, n). Runs without the GIL. RuntimeError where `native` is "
     "False (no bit count of the CPU's own: numpy's path is faster there)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hamming",
                                    "Hamming 2-NN of ORB descriptors (engine/regions.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__hamming(void) {
    kernel = pick_kernel();
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) return NULL;
    PyObject *native = PyBool_FromLong(kernel != NULL);
    if (PyModule_AddObject(mod, "native", native) < 0) { /* steals only on success */
        Py_DECREF(native);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
