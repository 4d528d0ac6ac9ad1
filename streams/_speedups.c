/* The hops every event takes through a config, compiled: the optional C half
 * of streams/_core.py's entry points, streams/_config.py's dispatcher and the
 * index's expiry sweep (streams/_index.py).
 *
 * Each type here stands for one Python function that stays the reference and
 * runs wherever this module is not built (or RILLET_PURE_PYTHON=1 is set):
 *
 *   Where(predicate, out, else_)    where.__call__
 *   By(stream, key)                 by.__call__
 *   Broadcast(calls, report)        _core._broadcast's broadcast(event)
 *   Dispatch(calls, report)         Config.dispatcher's dispatch(event)
 *   stale(events, keys, now)        the per-key judgement of Index.expire_slices
 *
 * They do exactly what the Python does, minus the interpreter frame per hop
 * (an event passes several streams, and a frame costs about as much as the
 * stream's own work). tests/test_speedups.py holds both to identical
 * outputs, failures and reports with Hypothesis. Each pickles as its own
 * constructor call, so checkpoints and scale-out handovers store the per-key
 * entries a by holds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyObject *str_current = NULL;
static PyObject *str_new_key = NULL;

/* One positional argument and no keywords: the only way streams are called. */
static int one_event(const char *name, size_t nargsf, PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) == 1 && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s takes exactly one event", name);
    return -1;
}

/* Call function(event), dropping the result. */
static int call_one(PyObject *function, PyObject *const *args) {
    PyObject *result = PyObject_Vectorcall(function, args, 1, NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* The exception being raised, normalized, with its traceback attached (what
 * `except Exception as error` binds); NULL with the exception still set when
 * it is not an Exception (KeyboardInterrupt and friends propagate). */
static PyObject *catch_exception(void) {
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
}

/* report(error, event); -1 if the report itself raised. */
static int report(PyObject *reporter, PyObject *error, PyObject *event) {
    PyObject *args[2] = {error, event};
    PyObject *result = PyObject_Vectorcall(reporter, args, 2, NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* Where ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *predicate, *out, *else_;
    vectorcallfunc vectorcall;
} Where;

static PyObject *where_call(Where *self, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames) {
    if (one_event("where", nargsf, kwnames) < 0)
        return NULL;
    PyObject *verdict = PyObject_Vectorcall(self->predicate, args, 1, NULL);
    if (verdict == NULL)
        return NULL;
    int passed = PyObject_IsTrue(verdict);
    Py_DECREF(verdict);
    if (passed < 0)
        return NULL;
    PyObject *target = passed ? self->out : self->else_;
    if (target != Py_None && call_one(target, args) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *where_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *predicate, *out, *else_;
    if (!PyArg_ParseTuple(args, "OOO:Where", &predicate, &out, &else_))
        return NULL;
    Where *self = (Where *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->predicate = Py_NewRef(predicate);
    self->out = Py_NewRef(out);
    self->else_ = Py_NewRef(else_);
    self->vectorcall = (vectorcallfunc)where_call;
    return (PyObject *)self;
}

static int where_traverse(Where *self, visitproc visit, void *arg) {
    Py_VISIT(self->predicate);
    Py_VISIT(self->out);
    Py_VISIT(self->else_);
    return 0;
}

static int where_clear(Where *self) {
    Py_CLEAR(self->predicate);
    Py_CLEAR(self->out);
    Py_CLEAR(self->else_);
    return 0;
}

static void where_dealloc(Where *self) {
    PyObject_GC_UnTrack(self);
    where_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *where_reduce(Where *self, PyObject *unused) {
    return Py_BuildValue("O(OOO)", Py_TYPE(self), self->predicate, self->out, self->else_);
}

/* By ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *stream, *key;
    vectorcallfunc vectorcall;
} By;

static PyObject *by_call(By *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    if (one_event("by", nargsf, kwnames) < 0)
        return NULL;
    PyObject *key = PyObject_Vectorcall(self->key, args, 1, NULL);
    if (key == NULL)
        return NULL;
    /* Read per event, not kept: the by swaps its generations on idle sweeps,
     * and a checkpoint's restore replaces the table. */
    PyObject *current = PyObject_GetAttr(self->stream, str_current);
    if (current == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *fork = NULL;
    if (PyDict_CheckExact(current)) {
        fork = PyDict_GetItemWithError(current, key);
        Py_XINCREF(fork); /* the table may change while the fork runs */
    } else {
        fork = PyObject_GetItem(current, key);
        if (fork == NULL && PyErr_ExceptionMatches(PyExc_KeyError))
            PyErr_Clear();
    }
    Py_DECREF(current);
    if (fork == NULL) {
        if (PyErr_Occurred()) { /* an unhashable key: TypeError, as in Python */
            Py_DECREF(key);
            return NULL;
        }
        fork = PyObject_CallMethodOneArg(self->stream, str_new_key, key);
    }
    Py_DECREF(key);
    if (fork == NULL)
        return NULL;
    int failed = call_one(fork, args);
    Py_DECREF(fork);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *by_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *stream, *key;
    if (!PyArg_ParseTuple(args, "OO:By", &stream, &key))
        return NULL;
    By *self = (By *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->stream = Py_NewRef(stream);
    self->key = Py_NewRef(key);
    self->vectorcall = (vectorcallfunc)by_call;
    return (PyObject *)self;
}

static int by_traverse(By *self, visitproc visit, void *arg) {
    Py_VISIT(self->stream);
    Py_VISIT(self->key);
    return 0;
}

static int by_clear(By *self) {
    Py_CLEAR(self->stream);
    Py_CLEAR(self->key);
    return 0;
}

static void by_dealloc(By *self) {
    PyObject_GC_UnTrack(self);
    by_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *by_reduce(By *self, PyObject *unused) {
    return Py_BuildValue("O(OO)", Py_TYPE(self), self->stream, self->key);
}

/* Broadcast and Dispatch: a tuple of calls and a failure reporter ---------- */

typedef struct {
    PyObject_HEAD
    PyObject *calls, *reporter;
    vectorcallfunc vectorcall;
} Calls;

/* Each child isolated: one failing never stops its siblings; each failure is
 * reported with the event. */
static PyObject *broadcast_call(Calls *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames) {
    if (one_event("broadcast", nargsf, kwnames) < 0)
        return NULL;
    PyObject *calls = self->calls;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(calls); i++) {
        if (call_one(PyTuple_GET_ITEM(calls, i), args) == 0)
            continue;
        PyObject *error = catch_exception();
        if (error == NULL)
            return NULL;
        int failed = report(self->reporter, error, args[0]);
        Py_DECREF(error);
        if (failed)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* Each top-level stream isolated; the first failure is raised after all have
 * run (a TCP client gets an error reply), later ones are reported. */
static PyObject *dispatch_call(Calls *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames) {
    if (one_event("dispatch", nargsf, kwnames) < 0)
        return NULL;
    PyObject *calls = self->calls;
    PyObject *first = NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(calls); i++) {
        if (call_one(PyTuple_GET_ITEM(calls, i), args) == 0)
            continue;
        PyObject *error = catch_exception();
        if (error == NULL) {
            Py_XDECREF(first);
            return NULL;
        }
        if (first == NULL) {
            first = error;
            continue;
        }
        int failed = report(self->reporter, error, args[0]);
        Py_DECREF(error);
        if (failed) {
            Py_DECREF(first);
            return NULL;
        }
    }
    if (first != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(first), first);
        Py_DECREF(first);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *calls_make(PyTypeObject *type, PyObject *args, vectorcallfunc call) {
    PyObject *calls, *reporter;
    if (!PyArg_ParseTuple(args, "O!O", &PyTuple_Type, &calls, &reporter))
        return NULL;
    Calls *self = (Calls *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->calls = Py_NewRef(calls);
    self->reporter = Py_NewRef(reporter);
    self->vectorcall = call;
    return (PyObject *)self;
}

static PyObject *broadcast_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    return calls_make(type, args, (vectorcallfunc)broadcast_call);
}

static PyObject *dispatch_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    return calls_make(type, args, (vectorcallfunc)dispatch_call);
}

static int calls_traverse(Calls *self, visitproc visit, void *arg) {
    Py_VISIT(self->calls);
    Py_VISIT(self->reporter);
    return 0;
}

static int calls_clear(Calls *self) {
    Py_CLEAR(self->calls);
    Py_CLEAR(self->reporter);
    return 0;
}

static void calls_dealloc(Calls *self) {
    PyObject_GC_UnTrack(self);
    calls_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *calls_reduce(Calls *self, PyObject *unused) {
    return Py_BuildValue("O(OO)", Py_TYPE(self), self->calls, self->reporter);
}

/* Types -------------------------------------------------------------------- */

static PyMethodDef where_methods[] = {
    {"__reduce__", (PyCFunction)where_reduce, METH_NOARGS, NULL}, {NULL}};
static PyMethodDef by_methods[] = {
    {"__reduce__", (PyCFunction)by_reduce, METH_NOARGS, NULL}, {NULL}};
static PyMethodDef calls_methods[] = {
    {"__reduce__", (PyCFunction)calls_reduce, METH_NOARGS, NULL}, {NULL}};

#define CALLABLE_TYPE(ctype, pyname, doc, prefix, methods_, new_)                        \
    {                                                                                    \
        PyVarObject_HEAD_INIT(NULL, 0)                                                   \
        .tp_name = "streams._speedups." pyname,                                          \
        .tp_doc = doc,                                                                   \
        .tp_basicsize = sizeof(ctype),                                                   \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL, \
        .tp_vectorcall_offset = offsetof(ctype, vectorcall),                             \
        .tp_call = PyVectorcall_Call,                                                    \
        .tp_traverse = (traverseproc)prefix##_traverse,                                  \
        .tp_clear = (inquiry)prefix##_clear,                                             \
        .tp_dealloc = (destructor)prefix##_dealloc,                                      \
        .tp_methods = methods_,                                                          \
        .tp_new = new_,                                                                  \
    }

static PyTypeObject WhereType = CALLABLE_TYPE(
    Where, "Where", "Where(predicate, out, else_): where.__call__ compiled.", where,
    where_methods, where_new);
static PyTypeObject ByType = CALLABLE_TYPE(
    By, "By", "By(stream, key): by.__call__ compiled.", by, by_methods, by_new);
static PyTypeObject BroadcastType = CALLABLE_TYPE(
    Calls, "Broadcast", "Broadcast(calls, report): every call, each isolated.", calls,
    calls_methods, broadcast_new);
static PyTypeObject DispatchType = CALLABLE_TYPE(
    Calls, "Dispatch", "Dispatch(calls, report): every call, the first failure raised last.",
    calls, calls_methods, dispatch_new);

/* The expiry sweep's judgement --------------------------------------------- */

static PyTypeObject *event_type = NULL;
static Py_ssize_t time_offset = -1, ttl_offset = -1;
static double default_ttl = 0;

#define SLOT_AT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* A number's value as a double when it converts exactly (a float, or an int
 * below 2**53 in magnitude), where Python's comparison and subtraction give
 * the same answers; 0 otherwise, for Python to judge. */
static int exact_double(PyObject *value, double *out) {
    if (PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 1;
    }
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || n > (1LL << 53) || n < -(1LL << 53))
            return 0;
        *out = (double)n;
        return 1;
    }
    return 0;
}

/* stale(events, keys, now): the keys, in order, whose stored event the
 * sweep must look at in Python: those whose plain Event has outlived its ttl
 * (streams._event.outlived's rule: `now - time > ttl`, the default ttl given
 * to setup when None), and every
 * one it cannot judge exactly here (another class, such as a lazily decoded
 * event, or a time or ttl that is not a plain number). Keys no longer stored
 * are left out. */
static PyObject *stale(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "stale(events: dict, keys: list, now)");
        return NULL;
    }
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup(Event) was not called");
        return NULL;
    }
    PyObject *events = args[0], *keys = args[1];
    double now;
    if (!exact_double(args[2], &now))
        return PyList_GetSlice(keys, 0, PyList_GET_SIZE(keys)); /* all for Python to judge */
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *event = PyDict_GetItemWithError(events, key);
        if (event == NULL) {
            if (PyErr_Occurred())
                goto error;
            continue;
        }
        int judged = 0, outlived = 0;
        if (Py_IS_TYPE(event, event_type)) {
            PyObject *time = SLOT_AT(event, time_offset), *ttl = SLOT_AT(event, ttl_offset);
            double t, limit = default_ttl;
            if (time != NULL && ttl != NULL && exact_double(time, &t) &&
                (ttl == Py_None || exact_double(ttl, &limit))) {
                judged = 1;
                outlived = now - t > limit;
            }
        }
        if ((!judged || outlived) && PyList_Append(out, key) < 0)
            goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static Py_ssize_t slot_of(PyObject *type, const char *name) {
    PyObject *descriptor = PyObject_GetAttrString(type, name);
    if (descriptor == NULL)
        return -1;
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
        ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX)
        offset = ((PyMemberDescrObject *)descriptor)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "%s is not a slot", name);
    Py_DECREF(descriptor);
    return offset;
}

static PyObject *setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyType_Check(args[0]) || !PyFloat_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "setup(event_type, default_ttl: float)");
        return NULL;
    }
    PyObject *type = args[0];
    Py_ssize_t time = slot_of(type, "time"), ttl = slot_of(type, "ttl");
    if (time < 0 || ttl < 0)
        return NULL;
    time_offset = time;
    ttl_offset = ttl;
    default_ttl = PyFloat_AS_DOUBLE(args[1]);
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"stale", (PyCFunction)(void (*)(void))stale, METH_FASTCALL,
     "stale(events, keys, now) -> the keys the expiry sweep must look at"},
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(event_type, default_ttl): the slotted Event class, the ttl assumed for None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "The hops every event takes through a config, compiled (see streams/_core.py).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    str_current = PyUnicode_InternFromString("_current");
    str_new_key = PyUnicode_InternFromString("_new_key");
    if (str_current == NULL || str_new_key == NULL)
        return NULL;
    PyTypeObject *types[] = {&WhereType, &ByType, &BroadcastType, &DispatchType};
    const char *names[] = {"Where", "By", "Broadcast", "Dispatch"};
    for (int i = 0; i < 4; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    for (int i = 0; i < 4; i++) {
        if (PyModule_AddObjectRef(module, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(module);
            return NULL;
        }
    }
    return module;
}
