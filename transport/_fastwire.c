/* Riemann's Msg wire format parsed straight into rillet Events, and written
 * from them (encode, at the end of this file).
 *
 * The compiled half of transport/_fastpath.py. decode(data, now) returns
 * (events, query) where every event is a plain streams.Event with all nine
 * slots filled, so streams read fields at slot speed and an indexed event
 * holds only its own values (no protobuf message, no shared buffer).
 *
 * The pure-Python codec (protobuf/upb) stays the reference. This parser
 * accepts only what it can decode exactly as the reference does and returns
 * None for anything else (malformed bytes, groups, a known field with an
 * unexpected wire type, an attribute without a key or with a non-UTF-8 key,
 * a non-UTF-8 query, a non-minimal length varint); the caller then runs the
 * reference decoder, which gives the same events or raises the same error.
 * tests/test_fastwire.py holds the two to identical results with Hypothesis.
 *
 * Field semantics (spec 1.2, as transport/_codec.py documents them):
 * - absent strings are None; non-UTF-8 text is decoded with U+FFFD;
 * - metric: the first present of metric_sint64, metric_d, metric_f;
 * - time: time_micros / 1e6 (correctly rounded), else time, else `now`;
 * - attributes with key host/service/state/description overwrite that field
 *   (the last one wins); keys naming a base field are dropped from the
 *   attributes; a repeated key keeps its last value at its first position.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "_fastwire reads fixed32/fixed64 with memcpy and needs a little-endian machine"
#endif

/* Slot offsets of streams.Event, read from its member descriptors by setup(). */
enum { F_HOST, F_SERVICE, F_STATE, F_DESCRIPTION, F_METRIC, F_TAGS, F_TIME, F_TTL,
       F_ATTRIBUTES, F_COUNT };
static const char *const slot_names[F_COUNT] = {
    "host", "service", "state", "description", "metric", "tags", "time", "ttl", "attributes"};
static Py_ssize_t slot_offset[F_COUNT];
static PyTypeObject *event_type = NULL;
static PyObject *empty_attributes = NULL;
static PyObject *empty_tuple = NULL;
static PyObject *million = NULL;

#define SLOT(obj, f) (*(PyObject **)((char *)(obj) + slot_offset[f]))

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

typedef struct {
    const char *p;
    const char *end;
} reader;

/* Every helper returns 0 on success and -1 when the bytes are not something
 * this parser decodes exactly (the caller then declines with None). */

static int read_varint(reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return -1;
        uint8_t byte = (uint8_t)*r->p++;
        if (shift == 63 && byte > 1)
            return -1; /* more than 64 bits: leave the verdict to the reference */
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

/* A padded varint ("\x84\x00" for 4) as a tag or a length hides an
 * attribute from the reference codec's byte scans (for an attribute's tag,
 * for a key that overrides a base field), which then decodes differently; no
 * real client writes one, so such a message goes to the reference. */
static int read_minimal_varint(reader *r, uint64_t *out) {
    const char *start = r->p;
    if (read_varint(r, out) < 0)
        return -1;
    return r->p - start > 1 && r->p[-1] == 0 ? -1 : 0;
}

static int read_length(reader *r, span *out) {
    uint64_t n;
    if (read_minimal_varint(r, &n) < 0)
        return -1;
    if (n > (uint64_t)(r->end - r->p))
        return -1;
    out->p = r->p;
    out->n = (Py_ssize_t)n;
    r->p += n;
    return 0;
}

static int read_tag(reader *r, uint32_t *field, int *wire) {
    uint64_t tag;
    if (read_minimal_varint(r, &tag) < 0 || tag > 0xFFFFFFFFu)
        return -1;
    *field = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    return *field == 0 ? -1 : 0;
}

/* Skips one field's value; groups (wire types 3 and 4) are declined. */
static int skip(reader *r, int wire) {
    uint64_t ignored;
    span s;
    switch (wire) {
    case 0:
        return read_varint(r, &ignored);
    case 1:
        if (r->end - r->p < 8)
            return -1;
        r->p += 8;
        return 0;
    case 2:
        return read_length(r, &s);
    case 5:
        if (r->end - r->p < 4)
            return -1;
        r->p += 4;
        return 0;
    default:
        return -1;
    }
}

static int skip_all(span s) {
    reader r = {s.p, s.p + s.n};
    uint32_t field;
    int wire;
    while (r.p < r.end)
        if (read_tag(&r, &field, &wire) < 0 || skip(&r, wire) < 0)
            return -1;
    return 0;
}

/* fixed32 and fixed64 values, little-endian on the wire as in memory. */
static int read_fixed(reader *r, void *out, size_t size) {
    if ((size_t)(r->end - r->p) < size)
        return -1;
    memcpy(out, r->p, size);
    r->p += size;
    return 0;
}

/* Recently decoded short strings, shared by every event that carries the
 * same bytes: a direct-mapped cache keyed by the raw bytes (a colliding
 * string simply takes the slot over). Hosts, services, states, tags and
 * attribute values repeat across messages, so most events allocate no string
 * at all; indexed events share their strings (less memory), and the index's
 * key comparisons mostly find the very same objects, whose hashes Python has
 * already computed. It holds at most SHARED_SLOTS strings of up to
 * SHARED_MAX bytes, whatever the traffic. */
#define SHARED_SLOTS 8192
#define SHARED_MAX 48

typedef struct {
    PyObject *text;
    Py_ssize_t n;
    char raw[SHARED_MAX];
} shared_text;

static shared_text shared[SHARED_SLOTS];

static PyObject *text(span s) {
    if (s.n > SHARED_MAX)
        return PyUnicode_DecodeUTF8(s.p, s.n, "replace");
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < s.n; i++)
        hash = (hash ^ (uint8_t)s.p[i]) * 16777619u;
    shared_text *slot = &shared[hash & (SHARED_SLOTS - 1)];
    if (slot->text != NULL && slot->n == s.n && memcmp(slot->raw, s.p, (size_t)s.n) == 0)
        return Py_NewRef(slot->text);
    PyObject *value = PyUnicode_DecodeUTF8(s.p, s.n, "replace");
    if (value == NULL)
        return NULL;
    Py_XSETREF(slot->text, Py_NewRef(value));
    slot->n = s.n;
    memcpy(slot->raw, s.p, (size_t)s.n);
    return value;
}

typedef struct {
    span key, value;
    int has_key;
} attribute;

/* Tags and attributes of one event, kept on the stack up to this many. */
#define INLINE 16

typedef struct {
    span *items;
    Py_ssize_t count, capacity;
    span inline_items[INLINE];
} span_list;

typedef struct {
    attribute *items;
    Py_ssize_t count, capacity;
    attribute inline_items[INLINE];
} attribute_list;

#define LIST_INIT(list) ((list).items = (list).inline_items, (list).count = 0, \
                         (list).capacity = INLINE)
#define LIST_FREE(list) do { if ((list).items != (list).inline_items) \
                                 PyMem_Free((list).items); } while (0)

static int grow(void **items, void *inline_items, Py_ssize_t *capacity, size_t size) {
    Py_ssize_t wanted = *capacity * 2;
    void *bigger = PyMem_Malloc((size_t)wanted * size);
    if (bigger == NULL)
        return -1;
    memcpy(bigger, *items, (size_t)*capacity * size);
    if (*items != inline_items)
        PyMem_Free(*items);
    *items = bigger;
    *capacity = wanted;
    return 0;
}

enum { S_HOST, S_SERVICE, S_STATE, S_DESCRIPTION, S_COUNT };

typedef struct {
    /* The previous event's ttl and tags, handed out again when equal: a
     * message's events usually share them (see shared_text). */
    uint32_t ttl_bits;
    PyObject *ttl;
    PyObject *tags;
    span tag_spans[INLINE];
    Py_ssize_t tag_count;
} caches;

static int parse_attribute(span s, attribute *out) {
    reader r = {s.p, s.p + s.n};
    uint32_t field;
    int wire;
    out->has_key = 0;
    out->value.p = "";
    out->value.n = 0;
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire) < 0)
            return -1;
        if (field == 1 || field == 2) {
            if (wire != 2)
                return -1;
            if (read_length(&r, field == 1 ? &out->key : &out->value) < 0)
                return -1;
            if (field == 1)
                out->has_key = 1;
        } else if (skip(&r, wire) < 0) {
            return -1;
        }
    }
    /* A keyless attribute makes the reference raise its own error. */
    return out->has_key ? 0 : -1;
}

static int same_spans(const span *a, const span *b, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++)
        if (a[i].n != b[i].n || memcmp(a[i].p, b[i].p, (size_t)a[i].n) != 0)
            return 0;
    return 1;
}

static const char *const overriding[S_COUNT] = {"host", "service", "state", "description"};

static int is_dropped_key(span key) {
    static const char *const dropped[] = {"host", "service", "state", "description",
                                          "tags", "time", "ttl", "metric"};
    for (size_t i = 0; i < sizeof dropped / sizeof *dropped; i++)
        if ((size_t)key.n == strlen(dropped[i]) && memcmp(key.p, dropped[i], (size_t)key.n) == 0)
            return 1;
    return 0;
}

/* Returns a new Event, NULL with an exception set, or NULL with none set to
 * decline. */
static PyObject *parse_event(span s, PyObject *now, caches *cache) {
    reader r = {s.p, s.p + s.n};
    span strings[S_COUNT];
    int has_string[S_COUNT] = {0, 0, 0, 0};
    int has_time = 0, has_micros = 0, has_ttl = 0, has_sint = 0, has_d = 0, has_f = 0;
    int64_t time = 0, micros = 0, sint = 0;
    float ttl = 0, metric_f = 0;
    double metric_d = 0;
    span_list tags;
    attribute_list attributes;
    PyObject *event = NULL;
    uint32_t field;
    int wire;
    uint64_t u64;
    uint32_t u32;

    LIST_INIT(tags);
    LIST_INIT(attributes);
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire) < 0)
            goto decline;
        switch (field) {
        case 2: case 3: case 4: case 5: {
            /* state=2, service=3, host=4, description=5 */
            static const int which[6] = {0, 0, S_STATE, S_SERVICE, S_HOST, S_DESCRIPTION};
            if (wire != 2 || read_length(&r, &strings[which[field]]) < 0)
                goto decline;
            has_string[which[field]] = 1;
            break;
        }
        case 1: case 10: case 13:
            if (wire != 0 || read_varint(&r, &u64) < 0)
                goto decline;
            if (field == 1) {
                time = (int64_t)u64;
                has_time = 1;
            } else if (field == 10) {
                micros = (int64_t)u64;
                has_micros = 1;
            } else {
                sint = (int64_t)(u64 >> 1) ^ -(int64_t)(u64 & 1);
                has_sint = 1;
            }
            break;
        case 7:
            if (wire != 2)
                goto decline;
            if (tags.count == tags.capacity &&
                grow((void **)&tags.items, tags.inline_items, &tags.capacity, sizeof(span)) < 0)
                goto error;
            if (read_length(&r, &tags.items[tags.count]) < 0)
                goto decline;
            tags.count++;
            break;
        case 8: case 15:
            if (wire != 5 || read_fixed(&r, &u32, 4) < 0)
                goto decline;
            if (field == 8) {
                memcpy(&ttl, &u32, 4);
                has_ttl = 1;
            } else {
                memcpy(&metric_f, &u32, 4);
                has_f = 1;
            }
            break;
        case 9: {
            span body;
            if (wire != 2 || read_length(&r, &body) < 0)
                goto decline;
            if (attributes.count == attributes.capacity &&
                grow((void **)&attributes.items, attributes.inline_items, &attributes.capacity,
                     sizeof(attribute)) < 0)
                goto error;
            if (parse_attribute(body, &attributes.items[attributes.count]) < 0)
                goto decline;
            attributes.count++;
            break;
        }
        case 14:
            if (wire != 1 || read_fixed(&r, &u64, 8) < 0)
                goto decline;
            memcpy(&metric_d, &u64, 8);
            has_d = 1;
            break;
        default:
            if (skip(&r, wire) < 0)
                goto decline;
        }
    }

    /* Attributes are applied after base fields, as Riemann does. */
    for (Py_ssize_t i = 0; i < attributes.count; i++) {
        span key = attributes.items[i].key;
        for (int f = 0; f < S_COUNT; f++) {
            if ((size_t)key.n == strlen(overriding[f]) &&
                memcmp(key.p, overriding[f], (size_t)key.n) == 0) {
                strings[f] = attributes.items[i].value;
                has_string[f] = 1;
            }
        }
    }

    event = event_type->tp_alloc(event_type, 0);
    if (event == NULL)
        goto error;
    static const int slot_of[S_COUNT] = {F_HOST, F_SERVICE, F_STATE, F_DESCRIPTION};
    for (int f = 0; f < S_COUNT; f++) {
        PyObject *value = has_string[f] ? text(strings[f]) : Py_NewRef(Py_None);
        if (value == NULL)
            goto error;
        SLOT(event, slot_of[f]) = value;
    }

    PyObject *metric;
    if (has_sint)
        metric = PyLong_FromLongLong(sint);
    else if (has_d)
        metric = PyFloat_FromDouble(metric_d);
    else if (has_f)
        metric = PyFloat_FromDouble((double)metric_f);
    else
        metric = Py_NewRef(Py_None);
    if (metric == NULL)
        goto error;
    SLOT(event, F_METRIC) = metric;

    PyObject *when;
    if (has_micros) {
        /* Below 2**53 both operands are exact doubles and IEEE division
         * rounds correctly, as Python's int / int does; above, let Python
         * divide the integers. */
        if (micros >= -(INT64_C(1) << 53) && micros <= (INT64_C(1) << 53)) {
            when = PyFloat_FromDouble((double)micros / 1e6);
        } else {
            PyObject *big = PyLong_FromLongLong(micros);
            when = big == NULL ? NULL : PyNumber_TrueDivide(big, million);
            Py_XDECREF(big);
        }
    } else if (has_time) {
        when = PyLong_FromLongLong(time);
    } else {
        when = Py_NewRef(now);
    }
    if (when == NULL)
        goto error;
    SLOT(event, F_TIME) = when;

    PyObject *ttl_value;
    if (!has_ttl) {
        ttl_value = Py_NewRef(Py_None);
    } else {
        uint32_t bits;
        memcpy(&bits, &ttl, 4);
        if (cache->ttl != NULL && cache->ttl_bits == bits) {
            ttl_value = Py_NewRef(cache->ttl);
        } else {
            ttl_value = PyFloat_FromDouble((double)ttl);
            if (ttl_value == NULL)
                goto error;
            Py_XSETREF(cache->ttl, Py_NewRef(ttl_value));
            cache->ttl_bits = bits;
        }
    }
    SLOT(event, F_TTL) = ttl_value;

    PyObject *tag_tuple;
    if (tags.count == 0) {
        tag_tuple = Py_NewRef(empty_tuple);
    } else if (cache->tags != NULL && cache->tag_count == tags.count && same_spans(
                   cache->tag_spans, tags.items, tags.count)) {
        tag_tuple = Py_NewRef(cache->tags);
    } else {
        tag_tuple = PyTuple_New(tags.count);
        if (tag_tuple == NULL)
            goto error;
        for (Py_ssize_t i = 0; i < tags.count; i++) {
            PyObject *tag = text(tags.items[i]);
            if (tag == NULL) {
                Py_DECREF(tag_tuple);
                goto error;
            }
            PyTuple_SET_ITEM(tag_tuple, i, tag);
        }
        /* Only strings inside: no cycle is possible, so the tuple is kept
         * out of the garbage collector's lists (see the event below). */
        PyObject_GC_UnTrack(tag_tuple);
        if (tags.count <= INLINE) {
            Py_XSETREF(cache->tags, Py_NewRef(tag_tuple));
            memcpy(cache->tag_spans, tags.items, (size_t)tags.count * sizeof(span));
            cache->tag_count = tags.count;
        }
    }
    SLOT(event, F_TAGS) = tag_tuple;

    PyObject *mapping = NULL;
    for (Py_ssize_t i = 0; i < attributes.count; i++) {
        attribute *a = &attributes.items[i];
        if (is_dropped_key(a->key))
            continue;
        if (mapping == NULL && (mapping = PyDict_New()) == NULL)
            goto error;
        /* Keys are decoded strictly: the reference keys its dict by the raw
         * value, so two non-UTF-8 keys could collide differently here. */
        PyObject *key = PyUnicode_DecodeUTF8(a->key.p, a->key.n, NULL);
        if (key == NULL) {
            Py_DECREF(mapping);
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                goto decline;
            }
            goto error;
        }
        PyObject *value = text(a->value);
        int failed = value == NULL || PyDict_SetItem(mapping, key, value) < 0;
        Py_DECREF(key);
        Py_XDECREF(value);
        if (failed) {
            Py_DECREF(mapping);
            goto error;
        }
    }
    SLOT(event, F_ATTRIBUTES) = mapping != NULL ? mapping : Py_NewRef(empty_attributes);
    /* A decoded event holds only strings, numbers, a tuple of strings and a
     * dict of strings, so it can never be part of a reference cycle. Left
     * tracked, the index's hundred thousand events would be walked by every
     * full collection and each new event would count toward the next one:
     * measured, that was half the cost of decoding and indexing an event. */
    PyObject_GC_UnTrack(event);
    LIST_FREE(tags);
    LIST_FREE(attributes);
    return event;

decline:
    LIST_FREE(tags);
    LIST_FREE(attributes);
    Py_XDECREF(event);
    return NULL;
error:
    LIST_FREE(tags);
    LIST_FREE(attributes);
    Py_XDECREF(event);
    if (!PyErr_Occurred())
        PyErr_NoMemory();
    return NULL;
}

/* The Query message: its string (the last one wins). */
static int parse_query(span s, span *string, int *has_string) {
    reader r = {s.p, s.p + s.n};
    uint32_t field;
    int wire;
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire) < 0)
            return -1;
        if (field == 1) {
            if (wire != 2 || read_length(&r, string) < 0)
                return -1;
            *has_string = 1;
        } else if (skip(&r, wire) < 0) {
            return -1;
        }
    }
    return 0;
}

static void clear_caches(caches *cache) {
    Py_CLEAR(cache->ttl);
    Py_CLEAR(cache->tags);
}
static PyObject *decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, now) takes exactly 2 arguments");
        return NULL;
    }
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fastwire.setup() was not called");
        return NULL;
    }
    Py_buffer buffer;
    if (PyObject_GetBuffer(args[0], &buffer, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *now = args[1];
    reader r = {buffer.buf, (const char *)buffer.buf + buffer.len};
    caches cache;
    memset(&cache, 0, sizeof cache);
    PyObject *events = PyList_New(0);
    PyObject *query = NULL;
    span query_string = {"", 0};
    int has_query = 0, has_query_string = 0;
    uint32_t field;
    int wire;
    span body;
    uint64_t ignored;

    if (events == NULL)
        goto error;
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire) < 0)
            goto decline;
        switch (field) {
        case 2: /* ok */
            if (wire != 0 || read_varint(&r, &ignored) < 0)
                goto decline;
            break;
        case 3: /* error */
            if (wire != 2 || read_length(&r, &body) < 0)
                goto decline;
            break;
        case 4: /* states: parsed (and so validated) by the reference, unused */
            if (wire != 2 || read_length(&r, &body) < 0 || skip_all(body) < 0)
                goto decline;
            break;
        case 5:
            if (wire != 2 || read_length(&r, &body) < 0 ||
                parse_query(body, &query_string, &has_query_string) < 0)
                goto decline;
            has_query = 1;
            break;
        case 6: {
            if (wire != 2 || read_length(&r, &body) < 0)
                goto decline;
            PyObject *event = parse_event(body, now, &cache);
            if (event == NULL) {
                if (PyErr_Occurred())
                    goto error;
                goto decline;
            }
            int failed = PyList_Append(events, event);
            Py_DECREF(event);
            if (failed < 0)
                goto error;
            break;
        }
        default:
            if (skip(&r, wire) < 0)
                goto decline;
        }
    }
    if (has_query) {
        query = PyUnicode_DecodeUTF8(query_string.p, query_string.n, NULL);
        if (query == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                goto error;
            PyErr_Clear();
            goto decline;
        }
    } else {
        query = Py_NewRef(Py_None);
    }
    clear_caches(&cache);
    PyBuffer_Release(&buffer);
    PyObject *result = PyTuple_Pack(2, events, query);
    Py_DECREF(events);
    Py_DECREF(query);
    return result;

decline:
    clear_caches(&cache);
    PyBuffer_Release(&buffer);
    Py_XDECREF(events);
    Py_RETURN_NONE;
error:
    clear_caches(&cache);
    PyBuffer_Release(&buffer);
    Py_XDECREF(events);
    return NULL;
}

/* Encoding ---------------------------------------------------------------
 *
 * encode(events) serializes plain Events as the `events` fields of a Msg,
 * byte for byte what transport/_codec.py's protobuf path writes (spec 1.3:
 * the metric in its own field and in metric_f, the time in time and
 * time_micros), or returns None for anything it does not write exactly as
 * that path does (another event class, a field of an unusual type, an int
 * metric beyond 2**24 or a time beyond 9e12 s, which protobuf converts, a
 * string that is not valid Unicode); the caller then uses protobuf.
 * tests/test_fastwire.py holds the two to identical bytes. */

typedef struct {
    char *data;
    Py_ssize_t length, capacity;
} buffer;

static int reserve(buffer *b, Py_ssize_t more) {
    if (b->length + more <= b->capacity)
        return 0;
    Py_ssize_t wanted = (b->length + more) * 2;
    char *bigger = PyMem_Realloc(b->data, (size_t)wanted);
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = bigger;
    b->capacity = wanted;
    return 0;
}

static void put_varint(buffer *b, uint64_t value) { /* room reserved by the caller */
    while (value >= 0x80) {
        b->data[b->length++] = (char)(value | 0x80);
        value >>= 7;
    }
    b->data[b->length++] = (char)value;
}

static int varint_size(uint64_t value) {
    int size = 1;
    while (value >= 0x80) {
        value >>= 7;
        size++;
    }
    return size;
}

static int put_bytes(buffer *b, int field, const char *data, Py_ssize_t n) {
    if (reserve(b, 11 + n) < 0)
        return -1;
    put_varint(b, (uint64_t)(field << 3 | 2));
    put_varint(b, (uint64_t)n);
    memcpy(b->data + b->length, data, (size_t)n);
    b->length += n;
    return 0;
}

/* 1 written, 0 declined (no exception), -1 failed. */
#define DECLINE 0

static int utf8(PyObject *text, const char **data, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(text))
        return DECLINE;
    *data = PyUnicode_AsUTF8AndSize(text, n);
    if (*data == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return -1;
        PyErr_Clear(); /* a lone surrogate: protobuf's path reports it */
        return DECLINE;
    }
    return 1;
}

static int put_text(buffer *b, int field, PyObject *text) {
    const char *data;
    Py_ssize_t n;
    int found = utf8(text, &data, &n);
    if (found <= 0)
        return found;
    return put_bytes(b, field, data, n) < 0 ? -1 : 1;
}

static int put_fixed(buffer *b, int field, int wire, const void *value, size_t size) {
    if (reserve(b, 5 + (Py_ssize_t)size) < 0)
        return -1;
    put_varint(b, (uint64_t)(field << 3 | wire));
    memcpy(b->data + b->length, value, size);
    b->length += (Py_ssize_t)size;
    return 1;
}

static int put_int(buffer *b, int field, uint64_t value) {
    if (reserve(b, 15) < 0)
        return -1;
    put_varint(b, (uint64_t)(field << 3));
    put_varint(b, value);
    return 1;
}

#define EXACT_FLOAT_INT (INT64_C(1) << 24)
#define MAX_SECONDS 9e12
#define FLOAT32_MAX 3.4028234663852886e38

/* The pieces of one event, in field-number order as protobuf writes them. */
static int encode_event(buffer *b, PyObject *event) {
    PyObject *host = SLOT(event, F_HOST), *service = SLOT(event, F_SERVICE);
    PyObject *state = SLOT(event, F_STATE), *description = SLOT(event, F_DESCRIPTION);
    PyObject *metric = SLOT(event, F_METRIC), *tags = SLOT(event, F_TAGS);
    PyObject *time = SLOT(event, F_TIME), *ttl = SLOT(event, F_TTL);
    PyObject *attributes = SLOT(event, F_ATTRIBUTES);
    int done;
    if (host == NULL || service == NULL || state == NULL || description == NULL ||
        metric == NULL || tags == NULL || time == NULL || ttl == NULL || attributes == NULL)
        return DECLINE;

    int64_t seconds = 0, micros = 0;
    int has_time = time != Py_None;
    if (has_time) {
        if (PyLong_CheckExact(time)) {
            int overflow;
            long long t = PyLong_AsLongLongAndOverflow(time, &overflow);
            if (overflow || t > MAX_SECONDS || t < -MAX_SECONDS)
                return DECLINE;
            seconds = t;
            micros = t * 1000000;
        } else if (PyFloat_CheckExact(time)) {
            double t = PyFloat_AS_DOUBLE(time);
            if (!(t <= MAX_SECONDS && t >= -MAX_SECONDS))
                return DECLINE; /* NaN included */
            /* As _codec._set_time: whole seconds and the fraction scaled
             * apart, the fraction rounded half to even like Python's round. */
            double whole = trunc(t);
            micros = (int64_t)whole * 1000000 + (int64_t)nearbyint((t - whole) * 1e6);
            seconds = micros / 1000000; /* C division truncates toward zero */
        } else {
            return DECLINE;
        }
        if (put_int(b, 1, (uint64_t)seconds) < 0)
            return -1;
    }
    if (state != Py_None && (done = put_text(b, 2, state)) <= 0)
        return done;
    if (service != Py_None && (done = put_text(b, 3, service)) <= 0)
        return done;
    if (host != Py_None && (done = put_text(b, 4, host)) <= 0)
        return done;
    if (description != Py_None && (done = put_text(b, 5, description)) <= 0)
        return done;
    if (!PyTuple_CheckExact(tags))
        return DECLINE;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tags); i++)
        if ((done = put_text(b, 7, PyTuple_GET_ITEM(tags, i))) <= 0)
            return done;
    if (ttl != Py_None) {
        float f;
        if (PyFloat_CheckExact(ttl)) {
            double d = PyFloat_AS_DOUBLE(ttl);
            if (!(d <= FLOAT32_MAX && d >= -FLOAT32_MAX))
                return DECLINE;
            f = (float)d;
        } else if (PyLong_CheckExact(ttl)) {
            int overflow;
            long long t = PyLong_AsLongLongAndOverflow(ttl, &overflow);
            if (overflow || t > EXACT_FLOAT_INT || t < -EXACT_FLOAT_INT)
                return DECLINE;
            f = (float)t;
        } else {
            return DECLINE;
        }
        if (put_fixed(b, 8, 5, &f, 4) < 0)
            return -1;
    }
    if (PyDict_CheckExact(attributes)) {
        Py_ssize_t position = 0;
        PyObject *key, *value;
        while (PyDict_Next(attributes, &position, &key, &value)) {
            const char *k, *v;
            Py_ssize_t kn, vn;
            if (value == Py_None)
                continue;
            if ((done = utf8(key, &k, &kn)) <= 0)
                return done;
            if (value == Py_True) {
                v = "true";
                vn = 4;
            } else if (value == Py_False) {
                v = "false";
                vn = 5;
            } else if ((done = utf8(value, &v, &vn)) <= 0) {
                return done;
            }
            Py_ssize_t size = 1 + varint_size((uint64_t)kn) + kn + 1 + varint_size((uint64_t)vn) + vn;
            if (reserve(b, 11) < 0)
                return -1;
            put_varint(b, 9 << 3 | 2);
            put_varint(b, (uint64_t)size);
            if (put_bytes(b, 1, k, kn) < 0 || put_bytes(b, 2, v, vn) < 0)
                return -1;
        }
    } else if (PyObject_Length(attributes) != 0) {
        if (PyErr_Occurred())
            PyErr_Clear();
        return DECLINE;
    }
    if (has_time && put_int(b, 10, (uint64_t)micros) < 0)
        return -1;
    if (metric != Py_None) {
        float f;
        if (PyLong_CheckExact(metric)) {
            int overflow;
            long long m = PyLong_AsLongLongAndOverflow(metric, &overflow);
            if (overflow || m > EXACT_FLOAT_INT || m < -EXACT_FLOAT_INT)
                return DECLINE;
            if (put_int(b, 13, ((uint64_t)m << 1) ^ (uint64_t)(m >> 63)) < 0)
                return -1;
            f = (float)m;
        } else if (PyFloat_CheckExact(metric)) {
            double d = PyFloat_AS_DOUBLE(metric);
            if (put_fixed(b, 14, 1, &d, 8) < 0)
                return -1;
            /* NaN fails both comparisons yet passes Riemann's float32 check;
             * infinities and finite doubles beyond float32 get no metric_f. */
            if (!(d <= FLOAT32_MAX && d >= -FLOAT32_MAX) && d == d)
                return 1;
            f = (float)d;
        } else {
            return DECLINE;
        }
        if (put_fixed(b, 15, 5, &f, 4) < 0)
            return -1;
    }
    return 1;
}

static PyObject *encode(PyObject *module, PyObject *events) {
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fastwire.setup() was not called");
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(events, "encode(events) takes a list or a tuple");
    if (sequence == NULL)
        return NULL;
    buffer out = {NULL, 0, 0}, body = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *event = PySequence_Fast_GET_ITEM(sequence, i);
        if (Py_TYPE(event) != event_type)
            goto decline;
        body.length = 0;
        int done = encode_event(&body, event);
        if (done < 0)
            goto done;
        if (done == DECLINE)
            goto decline;
        if (reserve(&out, 11 + body.length) < 0)
            goto done;
        put_varint(&out, 6 << 3 | 2);
        put_varint(&out, (uint64_t)body.length);
        if (body.length)
            memcpy(out.data + out.length, body.data, (size_t)body.length);
        out.length += body.length;
    }
    result = PyBytes_FromStringAndSize(out.length ? out.data : "", out.length);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(out.data);
    PyMem_Free(body.data);
    Py_DECREF(sequence);
    return result;
}

static PyObject *setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "setup(event_type, empty_attributes)");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    for (int f = 0; f < F_COUNT; f++) {
        PyObject *descriptor = PyObject_GetAttrString(args[0], slot_names[f]);
        if (descriptor == NULL)
            return NULL;
        int is_slot = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
                      ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX;
        if (is_slot)
            slot_offset[f] = ((PyMemberDescrObject *)descriptor)->d_member->offset;
        Py_DECREF(descriptor);
        if (!is_slot) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, slot_names[f]);
            return NULL;
        }
    }
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(empty_attributes, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL,
     "decode(data, now) -> (events, query), or None to leave the bytes to the reference"},
    {"encode", (PyCFunction)encode, METH_O,
     "encode(events) -> the bytes of a Msg's events fields, or None to leave them to protobuf"},
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(event_type, empty_attributes): the slotted class to build"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastwire",
    "Riemann's Msg wire format parsed straight into slotted Events.", -1, methods,
};

PyMODINIT_FUNC PyInit__fastwire(void) {
    empty_tuple = PyTuple_New(0);
    million = PyLong_FromLong(1000000);
    if (empty_tuple == NULL || million == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
