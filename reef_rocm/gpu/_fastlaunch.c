/*
 * One pre-bound kernel launch as a C callable: launcher(stream) -> status, and a run of them
 * as one: span(stream, start, stop) -> (status, index).
 *
 * cuLaunchKernel and hipModuleLaunchKernel share one C signature:
 *   (func, gx, gy, gz, bx, by, bz, shared_bytes, stream, void **params, void **extra)
 * so one launcher serves both backends. Everything but the stream is fixed when the launch is
 * bound; a call converts one integer and makes the driver call. Python bindings (cuda-bindings,
 * hip-python) re-check and convert all eleven arguments on every call, which costs ~0.7 us on
 * an H100 host next to a ~3.5 us launch; this removes that.
 *
 * A Span launches launchers[start:stop] in one C loop, so submitting a whole inference (or a
 * best-effort run between preemption marks) costs one Python call instead of one per kernel.
 *
 * The entry point address comes from the bindings (cuGetProcAddress / the loaded HIP library),
 * so this file links against nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

typedef int (*launch_fn)(void *f, unsigned int gx, unsigned int gy, unsigned int gz,
			 unsigned int bx, unsigned int by, unsigned int bz,
			 unsigned int shared, void *stream, void **params, void **extra);

typedef struct {
	PyObject_HEAD
	vectorcallfunc vectorcall;
	launch_fn fn;
	void *func;
	unsigned int grid[3], block[3], shared;
	void **params;
	PyObject *keepalive; /* owner of the parameter block */
} Launcher;

static PyObject *launcher_vectorcall(PyObject *self_, PyObject *const *args, size_t nargsf,
				     PyObject *kwnames)
{
	Launcher *self = (Launcher *)self_;
	Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
	void *stream;
	int rc;

	if (nargs != 1 || kwnames) {
		PyErr_SetString(PyExc_TypeError, "launcher takes one argument: the stream handle");
		return NULL;
	}
	stream = PyLong_AsVoidPtr(args[0]);
	if (!stream && PyErr_Occurred())
		return NULL;
	rc = self->fn(self->func, self->grid[0], self->grid[1], self->grid[2], self->block[0],
		      self->block[1], self->block[2], self->shared, stream, self->params, NULL);
	return PyLong_FromLong(rc);
}

static int launcher_init(PyObject *self_, PyObject *args, PyObject *kw)
{
	Launcher *self = (Launcher *)self_;
	unsigned long long fn, func, params;
	PyObject *keepalive;

	if (!PyArg_ParseTuple(args, "KK(III)(III)IKO", &fn, &func, &self->grid[0],
			      &self->grid[1], &self->grid[2], &self->block[0], &self->block[1],
			      &self->block[2], &self->shared, &params, &keepalive))
		return -1;
	if (!fn || !func || !params) {
		PyErr_SetString(PyExc_ValueError, "launch entry point, function and params must be non-null");
		return -1;
	}
	self->fn = (launch_fn)(uintptr_t)fn;
	self->func = (void *)(uintptr_t)func;
	self->params = (void **)(uintptr_t)params;
	Py_INCREF(keepalive);
	Py_XSETREF(self->keepalive, keepalive);
	self->vectorcall = launcher_vectorcall;
	return 0;
}

static void launcher_dealloc(PyObject *self_)
{
	Launcher *self = (Launcher *)self_;

	Py_XDECREF(self->keepalive);
	Py_TYPE(self_)->tp_free(self_);
}

static PyTypeObject LauncherType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "reef_rocm.gpu._fastlaunch.Launcher",
	.tp_basicsize = sizeof(Launcher),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
	.tp_vectorcall_offset = offsetof(Launcher, vectorcall),
	.tp_call = PyVectorcall_Call,
	.tp_new = PyType_GenericNew,
	.tp_init = launcher_init,
	.tp_dealloc = launcher_dealloc,
	.tp_doc = "Launcher(entry, func, grid, block, shared, params_addr, keepalive)(stream) -> int",
};

/*
 * Span: launchers[start:stop] in order in one call. The launchers are kept in a tuple (the
 * references) and read through a C array of pointers, so the loop touches no Python object.
 * It holds the GIL throughout: releasing it would let another thread take it, and getting it
 * back can wait a whole switch interval (5 ms), far longer than the launches themselves.
 *
 * The result on success is one of n + 1 tuples (0, stop) made at construction, so the common
 * case allocates nothing (a small int encoding would too, but only up to CPython's cached
 * ints, and callers would have to decode it); a failure builds its (status, index) tuple.
 */
typedef struct {
	PyObject_HEAD
	vectorcallfunc vectorcall;
	Py_ssize_t n;
	Launcher **items;
	PyObject *keep; /* tuple of the launchers: owns what items points at */
	PyObject *done; /* tuple: done[i] = (0, i) for i in 0..n */
} Span;

static int span_index(PyObject *arg, const char *what, Py_ssize_t *out)
{
	if (!PyLong_Check(arg)) {
		PyErr_Format(PyExc_TypeError, "span %s must be an int, not %.100s", what,
			     Py_TYPE(arg)->tp_name);
		return -1;
	}
	*out = PyLong_AsSsize_t(arg);
	if (*out == -1 && PyErr_Occurred())
		return -1;
	return 0;
}

static PyObject *span_vectorcall(PyObject *self_, PyObject *const *args, size_t nargsf,
				 PyObject *kwnames)
{
	Span *self = (Span *)self_;
	Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
	Py_ssize_t start, stop, i;
	PyObject *res;
	void *stream;
	int rc;

	if (nargs != 3 || kwnames) {
		PyErr_SetString(PyExc_TypeError,
				"span takes three arguments: the stream handle, start and stop");
		return NULL;
	}
	if (!self->done) {
		PyErr_SetString(PyExc_RuntimeError, "span was not initialised");
		return NULL;
	}
	stream = PyLong_AsVoidPtr(args[0]);
	if (!stream && PyErr_Occurred())
		return NULL;
	if (span_index(args[1], "start", &start) || span_index(args[2], "stop", &stop))
		return NULL;
	if (start < 0 || start > self->n || stop < 0 || stop > self->n) {
		PyErr_Format(PyExc_IndexError, "span [%zd, %zd) outside the %zd launches", start,
			     stop, self->n);
		return NULL;
	}
	/* start >= stop launches nothing, as range(start, stop) would */
	for (i = start; i < stop; i++) {
		Launcher *l = self->items[i];

		rc = l->fn(l->func, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1],
			   l->block[2], l->shared, stream, l->params, NULL);
		if (rc)
			return Py_BuildValue("(in)", rc, i);
	}
	res = PyTuple_GET_ITEM(self->done, stop);
	Py_INCREF(res);
	return res;
}

static void span_clear(Span *self)
{
	PyMem_Free(self->items);
	self->items = NULL;
	self->n = 0;
	Py_CLEAR(self->keep);
	Py_CLEAR(self->done);
}

static int span_init(PyObject *self_, PyObject *args, PyObject *kw)
{
	Span *self = (Span *)self_;
	PyObject *seq, *keep, *done;
	Launcher **items;
	Py_ssize_t n, i;

	if (kw && PyDict_GET_SIZE(kw)) {
		PyErr_SetString(PyExc_TypeError, "Span takes no keyword arguments");
		return -1;
	}
	if (!PyArg_ParseTuple(args, "O", &seq))
		return -1;
	keep = PySequence_Tuple(seq);
	if (!keep)
		return -1;
	n = PyTuple_GET_SIZE(keep);
	for (i = 0; i < n; i++) {
		PyObject *item = PyTuple_GET_ITEM(keep, i);

		if (!PyObject_TypeCheck(item, &LauncherType)) {
			PyErr_Format(PyExc_TypeError, "span item %zd is %.100s, not a Launcher", i,
				     Py_TYPE(item)->tp_name);
			Py_DECREF(keep);
			return -1;
		}
	}
	items = PyMem_Malloc((n ? n : 1) * sizeof(*items));
	done = PyTuple_New(n + 1);
	if (!items || !done)
		goto nomem;
	for (i = 0; i < n; i++)
		items[i] = (Launcher *)PyTuple_GET_ITEM(keep, i);
	for (i = 0; i <= n; i++) {
		PyObject *t = Py_BuildValue("(in)", 0, i);

		if (!t)
			goto fail;
		PyTuple_SET_ITEM(done, i, t);
	}
	span_clear(self); /* __init__ called again: drop the previous launchers */
	self->items = items;
	self->n = n;
	self->keep = keep;
	self->done = done;
	self->vectorcall = span_vectorcall;
	return 0;
nomem:
	PyErr_NoMemory();
fail:
	PyMem_Free(items);
	Py_XDECREF(done);
	Py_DECREF(keep);
	return -1;
}

static void span_dealloc(PyObject *self_)
{
	span_clear((Span *)self_);
	Py_TYPE(self_)->tp_free(self_);
}

static Py_ssize_t span_length(PyObject *self_)
{
	return ((Span *)self_)->n;
}

static PySequenceMethods span_as_sequence = {
	.sq_length = span_length,
};

static PyTypeObject SpanType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "reef_rocm.gpu._fastlaunch.Span",
	.tp_basicsize = sizeof(Span),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
	.tp_vectorcall_offset = offsetof(Span, vectorcall),
	.tp_call = PyVectorcall_Call,
	.tp_new = PyType_GenericNew,
	.tp_init = span_init,
	.tp_dealloc = span_dealloc,
	.tp_as_sequence = &span_as_sequence,
	.tp_doc = "Span(launchers)(stream, start, stop) -> (status, index): launchers[start:stop] "
		  "in order, stopping at the first nonzero status; (0, stop) when all launched",
};

static struct PyModuleDef moddef = {
	PyModuleDef_HEAD_INIT, "_fastlaunch",
	"Pre-bound kernel launches for cuLaunchKernel / hipModuleLaunchKernel.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastlaunch(void)
{
	PyObject *m;

	if (PyType_Ready(&LauncherType) < 0 || PyType_Ready(&SpanType) < 0)
		return NULL;
	m = PyModule_Create(&moddef);
	if (!m)
		return NULL;
	Py_INCREF(&LauncherType);
	if (PyModule_AddObject(m, "Launcher", (PyObject *)&LauncherType) < 0) {
		Py_DECREF(&LauncherType);
		Py_DECREF(m);
		return NULL;
	}
	Py_INCREF(&SpanType);
	if (PyModule_AddObject(m, "Span", (PyObject *)&SpanType) < 0) {
		Py_DECREF(&SpanType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
