/*
 * One pre-bound kernel launch as a C callable: launcher(stream) -> status.
 *
 * cuLaunchKernel and hipModuleLaunchKernel share one C signature:
 *   (func, gx, gy, gz, bx, by, bz, shared_bytes, stream, void **params, void **extra)
 * so one launcher serves both backends. Everything but the stream is fixed when the launch is
 * bound; a call converts one integer and makes the driver call. Python bindings (cuda-bindings,
 * hip-python) re-check and convert all eleven arguments on every call, which costs ~0.7 us on
 * an H100 host next to a ~3.5 us launch; this removes that.
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

static struct PyModuleDef moddef = {
	PyModuleDef_HEAD_INIT, "_fastlaunch",
	"Pre-bound kernel launches for cuLaunchKernel / hipModuleLaunchKernel.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastlaunch(void)
{
	PyObject *m;

	if (PyType_Ready(&LauncherType) < 0)
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
	return m;
}
