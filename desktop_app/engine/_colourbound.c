/* A lower bound of the colour-layout check's error, to skip templates that cannot match
 * (engine/colour.py: ColourMatcher with confirmed_only, which checks every template
 * size it would slide and skips the stored image when none can come within the limit).
 *
 * The sum of squared differences of a template placed in an image is at least, for any
 * partition of the template into blocks, the sum over blocks of n * |mean of the image's
 * pixels under the block - mean of the block's|^2 (Jensen's inequality, block by block;
 * n is the block's pixel count). Means of blocks at every place come from the image's
 * integral image in four reads, so this bound costs a few operations per place where a
 * slide costs three Fourier transforms. Each place is first bounded by the whole
 * template's mean (one block), then block by block, and left as soon as its running sum
 * is over the threshold: most places of a wrong image are left after a block or two.
 *
 * Exact in the sense the caller needs: it answers "may match" whenever some place's
 * bound is at most the threshold, so it never drops a template that would have matched
 * (the caller leaves a margin for rounding). The GIL is released while it scans. */
#include "_buffers.h"

#define MAX_BLOCKS 16 /* blocks per side at most */

/* `typed_buffer` with its shape, of `ndim` dimensions, the last one `last` long unless
 * `last` < 0; 0, or -1 with an exception set. */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *formats, Py_ssize_t itemsize,
                      int ndim, Py_ssize_t last, const char *what) {
    if (typed_buffer(obj, view, PyBUF_ND, formats, itemsize, what) < 0) return -1;
    if (view->ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "%s: %d dimensions, not %d", what, view->ndim, ndim);
    } else if (last >= 0 && view->shape[ndim - 1] != last) {
        PyErr_Format(PyExc_ValueError, "%s: the last dimension %zd long, not %zd", what,
                     view->shape[ndim - 1], last);
    } else {
        return 0;
    }
    PyBuffer_Release(view);
    return -1;
}

/* Edges 0 = e[0] < e[1] < ... < e[n] = size, at most `limit`: 1, or 0 with an exception. */
static int valid_edges(const Py_ssize_t *e, Py_ssize_t n, Py_ssize_t limit, const char *what) {
    if (n < 1 || e[0] != 0 || e[n] > limit) {
        PyErr_Format(PyExc_ValueError, "%s: must start at 0 and end inside the image", what);
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (e[i + 1] <= e[i]) {
            PyErr_Format(PyExc_ValueError, "%s: must increase", what);
            return 0;
        }
    }
    return 1;
}

/* Sum of the three channels' (image sum under the box - block sum)^2 / n, at one place. */
static inline double term(const double *I, Py_ssize_t row, Py_ssize_t y0, Py_ssize_t y1,
                          Py_ssize_t x0, Py_ssize_t x1, const double *sums, double inv_n) {
    const double *a = I + y0 * row + x0 * 3, *b = I + y0 * row + x1 * 3;
    const double *c = I + y1 * row + x0 * 3, *d = I + y1 * row + x1 * 3;
    double t = 0.0;
    for (int k = 0; k < 3; k++) {
        double diff = d[k] - b[k] - c[k] + a[k] - sums[k];
        t += diff * diff;
    }
    return t * inv_n;
}

static int scan(const double *I, Py_ssize_t h, Py_ssize_t w, const double *sums,
                const Py_ssize_t *xs, Py_ssize_t gx, const Py_ssize_t *ys, Py_ssize_t gy,
                double threshold) {
    const Py_ssize_t row = (w + 1) * 3, tw = xs[gx], th = ys[gy];
    double whole[3] = {0.0, 0.0, 0.0};
    for (Py_ssize_t b = 0; b < gx * gy; b++)
        for (int k = 0; k < 3; k++) whole[k] += sums[b * 3 + k];
    const double inv_whole = 1.0 / ((double)tw * (double)th);
    double inv_n[MAX_BLOCKS * MAX_BLOCKS];
    for (Py_ssize_t i = 0; i < gy; i++)
        for (Py_ssize_t j = 0; j < gx; j++)
            inv_n[i * gx + j] = 1.0 / ((double)(ys[i + 1] - ys[i]) * (double)(xs[j + 1] - xs[j]));
    for (Py_ssize_t y = 0; y + th <= h; y++) {
        for (Py_ssize_t x = 0; x + tw <= w; x++) {
            if (term(I, row, y, y + th, x, x + tw, whole, inv_whole) > threshold) continue;
            double total = 0.0;
            for (Py_ssize_t i = 0; i < gy && total <= threshold; i++) {
                for (Py_ssize_t j = 0; j < gx && total <= threshold; j++) {
                    total += term(I, row, y + ys[i], y + ys[i + 1], x + xs[j], x + xs[j + 1],
                                  sums + (i * gx + j) * 3, inv_n[i * gx + j]);
                }
            }
            if (total <= threshold) return 1;
        }
    }
    return 0;
}

static PyObject *may_match(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *objs[4];
    double threshold;
    if (!PyArg_ParseTuple(args, "OOOOd", &objs[0], &objs[1], &objs[2], &objs[3], &threshold))
        return NULL;
    char intp[5];
    intp_formats(intp);
    Py_buffer views[4];
    int got = 0;
    if (get_buffer(objs[0], &views[0], "d", sizeof(double), 3, 3, "integral") == 0) got++;
    if (got == 1 && get_buffer(objs[1], &views[1], "d", sizeof(double), 3, 3, "sums") == 0)
        got++;
    if (got == 2 &&
        get_buffer(objs[2], &views[2], intp, sizeof(Py_ssize_t), 1, -1, "xs") == 0)
        got++;
    if (got == 3 &&
        get_buffer(objs[3], &views[3], intp, sizeof(Py_ssize_t), 1, -1, "ys") == 0)
        got++;
    int ok = got == 4, found = 0;
    if (ok) {
        const Py_ssize_t h = views[0].shape[0] - 1, w = views[0].shape[1] - 1;
        const Py_ssize_t gy = views[3].shape[0] - 1, gx = views[2].shape[0] - 1;
        /* the edges are copied before they are checked: the scan runs without the GIL,
         * and another thread could change the caller's arrays meanwhile */
        Py_ssize_t xs[MAX_BLOCKS + 1], ys[MAX_BLOCKS + 1];
        if (gx >= 1 && gx <= MAX_BLOCKS && gy >= 1 && gy <= MAX_BLOCKS) {
            memcpy(xs, views[2].buf, (size_t)(gx + 1) * sizeof(Py_ssize_t));
            memcpy(ys, views[3].buf, (size_t)(gy + 1) * sizeof(Py_ssize_t));
        }
        if (h < 1 || w < 1) {
            PyErr_SetString(PyExc_ValueError, "integral: an image of at least 1 x 1 pixel");
            ok = 0;
        } else if (gx < 1 || gy < 1 || gx > MAX_BLOCKS || gy > MAX_BLOCKS) {
            PyErr_Format(PyExc_ValueError, "from 1 to %d blocks per side (2 to %d edges)",
                         MAX_BLOCKS, MAX_BLOCKS + 1);
            ok = 0;
        } else if (views[1].shape[0] != gy || views[1].shape[1] != gx) {
            PyErr_Format(PyExc_ValueError, "sums: %zd x %zd blocks, not %zd x %zd",
                         views[1].shape[0], views[1].shape[1], gy, gx);
            ok = 0;
        } else if (!valid_edges(xs, gx, w, "xs") || !valid_edges(ys, gy, h, "ys")) {
            ok = 0;
        } else {
            Py_BEGIN_ALLOW_THREADS
            found = scan(views[0].buf, h, w, views[1].buf, xs, gx, ys, gy, threshold);
            Py_END_ALLOW_THREADS
        }
    }
    while (got > 0) PyBuffer_Release(&views[--got]);
    if (!ok) return NULL;
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"may_match", may_match, METH_VARARGS,
     "may_match(integral, sums, xs, ys, threshold) -> bool\n\n"
     "integral: (h + 1, w + 1, 3) float64, the image's integral image (cv2.integral). "
     "sums: (gy, gx, 3) float64, the template's pixel sums per block; xs (gx + 1) and ys "
     "(gy + 1) intp: the blocks' edges (1 to 16 blocks a side), from 0 up to the "
     "template's width and height. True when some place of the template in the image has "
     "a block-mean bound of its sum of squared differences at most threshold; False when "
     "none has (then no place's sum is that low). Runs without the GIL."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_colourbound",
                                    "A lower bound of colour-layout errors (engine/colour.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__colourbound(void) { return PyModule_Create(&module); }
