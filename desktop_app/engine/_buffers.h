/* Buffer checks shared by the compiled modules (_hamming.c, _colourbound.c); the first
 * include of such a module (it includes Python.h). */
#ifndef DESKTOP_APP_BUFFERS_H
#define DESKTOP_APP_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* `obj`'s buffer (with `flags`, C-contiguous), of `itemsize`-byte items of one of the
 * struct `formats` and aligned to them; 0, or -1 with an exception set and nothing held. */
static inline int typed_buffer(PyObject *obj, Py_buffer *view, int flags,
                               const char *formats, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') format++;
    if (view->itemsize != itemsize || strlen(format) != 1 || !strchr(formats, format[0])) {
        PyErr_Format(PyExc_TypeError, "%s: items of format '%s' and %zd bytes, not one of '%s'",
                     what, view->format ? view->format : "B", view->itemsize, formats);
    } else if ((uintptr_t)view->buf % (size_t)itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "%s: not aligned to its %zd-byte items", what, itemsize);
    } else {
        return 0;
    }
    PyBuffer_Release(view);
    return -1;
}

/* The struct formats of numpy's intp: 'n', or whichever C integer type has its size ('i'
 * on 32-bit x86 with numpy 1.x, 'l' on Linux and macOS, 'q' on Windows). */
static inline void intp_formats(char out[5]) {
    size_t k = 0;
    out[k++] = 'n';
    if (sizeof(int) == sizeof(Py_ssize_t)) out[k++] = 'i';
    if (sizeof(long) == sizeof(Py_ssize_t)) out[k++] = 'l';
    if (sizeof(long long) == sizeof(Py_ssize_t)) out[k++] = 'q';
    out[k] = '\0';
}

#endif
