/* Dual coordinate descent for the L2-loss (squared hinge) linear SVM: the solver behind
 * xmc.linear.fit_ova (rankers, the linear matcher, the linear baselines).
 *
 * liblinear's solve_l2r_l1l2_svc for L2 loss (Hsieh et al., ICML 2008): D_ii = 1/(2C), no upper
 * bound on alpha, shrinking, and a seeded random order (an LCG with liblinear's constants that
 * every target restarts from the seed, so a target's weights do not depend on which others are
 * solved with it, nor on the thread). Plain C rather than a JIT: a job that trains a few hundred
 * clusters spent ~0.5 s of its life importing and loading a JIT's cached code (docs/scaling.md).
 *
 * Private module: xmc/linear.py validates the problem (shapes, index ranges); here only the
 * buffers' types and lengths are checked. The solve runs without the GIL, so Python threads
 * solve targets in parallel.
 *
 * Strict IEEE arithmetic (setup.py builds with -ffp-contract=off): the same weights on every host.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Dual CD for min_w 1/2 |w|^2 + C sum_i max(0, 1 - y_i w.[x_i, bias])^2, target after target.
 * Rows are CSR (indptr, indices, data) with columns < n_cols; qd[i] = |x_i|^2 + bias^2 + 1/(2C).
 * Target t's positives are pos_idx[pos_ptr[t]:pos_ptr[t + 1]], every other row is a negative.
 * Writes w_t (n_cols + 1 values, last = bias weight) to out_w[t] and its outer iterations to
 * out_iter[t]. Returns 0, or -1 when out of memory. */
#define DEFINE_L2SVM(NAME, DTYPE)                                                                   \
    static int NAME(const int64_t *indptr, const int32_t *indices, const DTYPE *data, int64_t n,     \
                    int64_t n_cols, double bias, const double *qd, const int64_t *pos_ptr,           \
                    int64_t n_targets, const int64_t *pos_idx, double C, double eps,                 \
                    int64_t max_iter, int64_t seed, float *out_w, int64_t *out_iter)                 \
    {                                                                                                \
        const double diag = 0.5 / C;                                                                 \
        const size_t rows = (size_t)(n > 0 ? n : 1); /* malloc(0) may return NULL */                \
        double *y = malloc(sizeof(double) * rows);                                                   \
        double *alpha = malloc(sizeof(double) * rows);                                               \
        double *w = malloc(sizeof(double) * (size_t)(n_cols + 1));                                   \
        int64_t *index = malloc(sizeof(int64_t) * rows);                                             \
        if (!y || !alpha || !w || !index) {                                                          \
            free(y); free(alpha); free(w); free(index);                                              \
            return -1;                                                                               \
        }                                                                                            \
        for (int64_t t = 0; t < n_targets; t++) {                                                    \
            for (int64_t i = 0; i < n; i++) { y[i] = -1.0; alpha[i] = 0.0; index[i] = i; }           \
            for (int64_t p = pos_ptr[t]; p < pos_ptr[t + 1]; p++) y[pos_idx[p]] = 1.0;               \
            for (int64_t j = 0; j <= n_cols; j++) w[j] = 0.0;                                        \
            int64_t state = seed & 0x7FFFFFFF;                                                       \
            double pg_max_old = INFINITY;                                                            \
            int64_t active = n;                                                                      \
            int64_t it = 0;                                                                          \
            while (it < max_iter) {                                                                  \
                double pg_max_new = -INFINITY, pg_min_new = INFINITY;                                \
                for (int64_t i = 0; i < active; i++) {                                               \
                    state = (state * 1103515245 + 12345) & 0x7FFFFFFF;                               \
                    int64_t j = i + state % (active - i);                                            \
                    int64_t tmp = index[i]; index[i] = index[j]; index[j] = tmp;                     \
                }                                                                                    \
                int64_t s = 0;                                                                       \
                while (s < active) {                                                                 \
                    int64_t i = index[s];                                                            \
                    double yi = y[i];                                                                \
                    double g = w[n_cols] * bias;                                                     \
                    for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) g += w[indices[p]] * data[p]; \
                    g = g * yi - 1.0 + alpha[i] * diag;                                              \
                    double pg = 0.0;                                                                 \
                    if (alpha[i] == 0.0) {                                                           \
                        if (g > pg_max_old) { /* shrink: likely to stay at the bound */              \
                            active -= 1;                                                             \
                            int64_t tmp = index[s]; index[s] = index[active]; index[active] = tmp;   \
                            continue;                                                                \
                        } else if (g < 0.0) {                                                        \
                            pg = g;                                                                  \
                        }                                                                            \
                    } else {                                                                         \
                        pg = g;                                                                      \
                    }                                                                                \
                    if (pg > pg_max_new) pg_max_new = pg;                                            \
                    if (pg < pg_min_new) pg_min_new = pg;                                            \
                    if (fabs(pg) > 1e-12) {                                                          \
                        double a_old = alpha[i];                                                     \
                        double a_new = a_old - g / qd[i];                                            \
                        alpha[i] = (0.0 > a_new) ? 0.0 : a_new;                                      \
                        double d = (alpha[i] - a_old) * yi;                                          \
                        for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) w[indices[p]] += d * data[p]; \
                        w[n_cols] += d * bias;                                                       \
                    }                                                                                \
                    s += 1;                                                                          \
                }                                                                                    \
                it += 1;                                                                             \
                if (pg_max_new - pg_min_new <= eps) {                                                \
                    if (active == n) break;                                                          \
                    active = n; /* converged on the shrunk set: check all rows once more */          \
                    pg_max_old = INFINITY;                                                           \
                    continue;                                                                        \
                }                                                                                    \
                pg_max_old = pg_max_new > 0.0 ? pg_max_new : INFINITY;                               \
            }                                                                                        \
            for (int64_t j = 0; j <= n_cols; j++) out_w[t * (n_cols + 1) + j] = (float)w[j];         \
            out_iter[t] = it;                                                                        \
        }                                                                                            \
        free(y); free(alpha); free(w); free(index);                                                  \
        return 0;                                                                                    \
    }

DEFINE_L2SVM(l2svm_f32, float)
DEFINE_L2SVM(l2svm_f64, double)

/* |x_i|^2 + extra per CSR row (the dual CD's Q_ii, accumulated as liblinear does: the square in
 * the data's own precision, the sum in double). */
#define DEFINE_DIAGONAL(NAME, DTYPE)                                                               \
    static void NAME(const int64_t *indptr, const DTYPE *data, int64_t n, double extra, double *qd) \
    {                                                                                               \
        for (int64_t i = 0; i < n; i++) {                                                           \
            double acc = extra;                                                                     \
            for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) acc += data[p] * data[p];           \
            qd[i] = acc;                                                                            \
        }                                                                                           \
    }

DEFINE_DIAGONAL(diagonal_f32, float)
DEFINE_DIAGONAL(diagonal_f64, double)

/* ---- buffers ---------------------------------------------------------------------------- */

enum kind { FLOAT, INT };

static char format_char(const Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    while (*f == '@' || *f == '=' || *f == '<' || *f == '!' || *f == '>') f++;
    return *f;
}

/* A C-contiguous buffer of `name` with items of `kind` and `itemsize` bytes (0: 4 or 8), or -1
 * with a ValueError naming it. */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *name, enum kind kind,
                      Py_ssize_t itemsize, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous%s array", name,
                     writable ? " writable" : "");
        return -1;
    }
    char c = format_char(view);
    int ok = kind == FLOAT ? (c == 'f' && view->itemsize == 4) || (c == 'd' && view->itemsize == 8)
                           : (c == 'i' || c == 'l' || c == 'q') ;
    if (ok && itemsize) ok = view->itemsize == itemsize;
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s: unexpected item type '%s' (%zd bytes)", name,
                     view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static Py_ssize_t n_items(const Py_buffer *v) { return v->len / v->itemsize; }

static PyObject *py_diagonal(PyObject *self, PyObject *args)
{
    PyObject *o_indptr, *o_data, *o_out;
    double extra;
    if (!PyArg_ParseTuple(args, "OOdO:diagonal", &o_indptr, &o_data, &extra, &o_out)) return NULL;
    Py_buffer indptr, data, out;
    if (get_buffer(o_indptr, &indptr, "indptr", INT, 8, 0) < 0) return NULL;
    if (get_buffer(o_data, &data, "data", FLOAT, 0, 0) < 0) { PyBuffer_Release(&indptr); return NULL; }
    if (get_buffer(o_out, &out, "out", FLOAT, 8, 1) < 0) {
        PyBuffer_Release(&indptr); PyBuffer_Release(&data); return NULL;
    }
    PyObject *ret = NULL;
    int64_t n = n_items(&indptr) - 1;
    const int64_t *ip = indptr.buf;
    if (n < 0 || n_items(&out) != n || ip[n] > n_items(&data)) {
        PyErr_SetString(PyExc_ValueError, "diagonal: indptr, data and out do not match");
    } else {
        Py_BEGIN_ALLOW_THREADS
        if (data.itemsize == 4) diagonal_f32(ip, data.buf, n, extra, out.buf);
        else diagonal_f64(ip, data.buf, n, extra, out.buf);
        Py_END_ALLOW_THREADS
        ret = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&indptr); PyBuffer_Release(&data); PyBuffer_Release(&out);
    return ret;
}

static PyObject *py_l2svm(PyObject *self, PyObject *args)
{
    PyObject *o[8];
    Py_ssize_t n_cols, max_iter;
    long long seed;
    double bias, C, eps;
    if (!PyArg_ParseTuple(args, "OOOndOOOddnLOO:l2svm", &o[0], &o[1], &o[2], &n_cols, &bias, &o[3],
                          &o[4], &o[5], &C, &eps, &max_iter, &seed, &o[6], &o[7]))
        return NULL;
    static const char *names[8] = {"indptr", "indices", "data", "qd", "pos_ptr", "pos_idx", "out_w", "out_iter"};
    static const enum kind kinds[8] = {INT, INT, FLOAT, FLOAT, INT, INT, FLOAT, INT};
    static const Py_ssize_t sizes[8] = {8, 4, 0, 8, 8, 8, 4, 8};
    Py_buffer b[8];
    int got = 0;
    PyObject *ret = NULL;
    for (; got < 8; got++)
        if (get_buffer(o[got], &b[got], names[got], kinds[got], sizes[got], got >= 6) < 0) goto done;

    int64_t n = n_items(&b[0]) - 1, n_targets = n_items(&b[4]) - 1;
    const int64_t *indptr = b[0].buf;
    if (n < 0 || n_targets < 0 || n_cols < 0 || n_items(&b[3]) != n || indptr[n] > n_items(&b[1]) ||
        indptr[n] > n_items(&b[2]) || n_items(&b[6]) != n_targets * (n_cols + 1) ||
        n_items(&b[7]) != n_targets) {
        PyErr_SetString(PyExc_ValueError, "l2svm: the arrays' lengths do not match");
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    if (b[2].itemsize == 4)
        rc = l2svm_f32(indptr, b[1].buf, b[2].buf, n, n_cols, bias, b[3].buf, b[4].buf, n_targets,
                       b[5].buf, C, eps, max_iter, seed, b[6].buf, b[7].buf);
    else
        rc = l2svm_f64(indptr, b[1].buf, b[2].buf, n, n_cols, bias, b[3].buf, b[4].buf, n_targets,
                       b[5].buf, C, eps, max_iter, seed, b[6].buf, b[7].buf);
    Py_END_ALLOW_THREADS
    if (rc < 0) PyErr_NoMemory();
    else ret = Py_NewRef(Py_None);
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&b[k]);
    return ret;
}

static PyMethodDef methods[] = {
    {"l2svm", py_l2svm, METH_VARARGS,
     "l2svm(indptr, indices, data, n_cols, bias, qd, pos_ptr, pos_idx, C, eps, max_iter, seed, out_w, out_iter)\n"
     "Dual CD for the L2-loss SVM of each target; writes out_w (float32, targets x (n_cols + 1)) and out_iter."},
    {"diagonal", py_diagonal, METH_VARARGS,
     "diagonal(indptr, data, extra, out)\nout[i] = |x_i|^2 + extra per CSR row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dcd", "Dual coordinate descent for L2-loss SVMs.", -1, methods};

PyMODINIT_FUNC PyInit__dcd(void) { return PyModule_Create(&module); }
