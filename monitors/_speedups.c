/* The monitor's hot path in C: Postgres stderr and UFW lines -> events -> the rule engine.

   It is a second implementation of monitors/pg.py, monitors/ufw.py and the Engine in
   monitors/rules.py, which stay the reference: tests/monitors/test_speedups.py feeds both the same
   lines and wants the same events, counts and detections. Python does what is rare or slow to
   write twice (config, JSON lines, syslog dates without a year, IPv6 compression, allow-list CIDRs,
   formatting alerts); C does the per-line and per-event work, with no Python object per line.

   Lines arrive as a list of bytes (FileTail's batches) and must already be free of "\n". */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdlib.h>
#include <stdint.h>

/* ------------------------------------------------------------------ events */

/* Event types, fields, outcomes, UFW actions, Postgres messages, levels and reasons are not written
   here: they are Python data (monitors/events.py, monitors/pg.py), handed over once by setup()
   (monitors/speedups.py calls it at import). C names only the fields and message roles its parsers
   fill in, and looks up their positions and texts in what setup() gave. */
#define MAX_FIELDS 16
#define MAX_TYPES 64
#define MAX_OUTCOMES 64
#define MAX_ACTIONS 8
static int nfields, ntypes, noutcomes, nactions, ready;
static int F_SOURCE, F_USER, F_DATABASE, F_REASON, F_TLS, F_ACTION, F_DPORT, F_PROTO, F_DEST;
static int T_CONN, T_AUTHZ, T_FAIL, T_HBA, T_NODB, T_TOOMANY, T_BADSTART, T_DISC, T_UFW; /* type codes */
/* Pipeline.events keys: (source type, outcome), from events.OUTCOMES */
typedef struct { int type, field, attack; PyObject *value, *key, *name; } Outcome;
static Outcome OUTCOMES[MAX_OUTCOMES];
static const char *UFW_ACTIONS[MAX_ACTIONS + 1];
/* pg.MESSAGES, by role: NULL-terminated lists of texts */
enum { M_RECEIVED, M_AUTHORIZED, M_DISCONNECTION, M_BAD_STARTUP, M_PREFIX_CHANGED, M_PASSWORD, M_HBA, M_NO_DATABASE,
       M_TOO_MANY, M_ROLE_MISSING, NMSG };
static const char *MSG_ROLES[NMSG] = {"received", "authorized", "disconnection", "bad_startup", "prefix_changed",
                                      "password", "hba", "no_database", "too_many", "role_missing"};
static const char **MSG[NMSG];
static const char **PG_LOG_MESSAGES; /* the texts of the LOG-level messages: Pipeline.process's filter */
static const char **LEVELS;           /* pg.LEVELS (and DEBUG1..5) */

static PyObject *s_field[MAX_FIELDS], *s_type, *s_ts, *s_type_codes;
static PyObject *s_unknown_role, *s_bad_password, *s_no_encryption, *s_hba_reject, *s_no_tls, *s_unknown;
static PyObject *s_actions[MAX_ACTIONS], *s_popitem, *s_ordered_dict, *s_view;
static int not_ready(void);

typedef struct {
    int type;
    double ts;
    PyObject *f[MAX_FIELDS]; /* owned references; NULL is None */
} CEvent;

static void ev_clear(CEvent *e) {
    for (int i = 0; i < MAX_FIELDS; i++) Py_CLEAR(e->f[i]);
}

static void ev_init(CEvent *e, int type, double ts) {
    e->type = type;
    e->ts = ts;
    for (int i = 0; i < MAX_FIELDS; i++) e->f[i] = NULL;
}

static void ev_set(CEvent *e, int field, PyObject *v) { /* steals v (None becomes NULL) */
    Py_XSETREF(e->f[field], v == Py_None ? (Py_DECREF(v), NULL) : v);
}

static PyObject *str_of(const char *s, Py_ssize_t n) { /* lines are valid UTF-8 by now */
    return PyUnicode_DecodeUTF8(s, n, "strict");
}

/* The same few sources, destinations and protocols come back line after line. A small
   direct-mapped cache of their str objects, keyed by the bytes, hands back the object seen before:
   no allocation or hashing per event, and the rules' dict lookups find the very key object they
   hold (no string compare). It only ever holds STR_CACHE objects: a flood of new values evicts. */
#define STR_CACHE 16384          /* a power of two */
#define STR_CACHE_MAX_LEN 64     /* longer values are made each time (no address is that long) */
typedef PyObject *StrCache[STR_CACHE];

static PyObject *cached_str(StrCache *cache, const char *s, Py_ssize_t n) {
    if (n > STR_CACHE_MAX_LEN) return str_of(s, n);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    PyObject **slot = &(*cache)[h & (STR_CACHE - 1)];
    PyObject *o = *slot;
    if (o && PyUnicode_GET_LENGTH(o) == n && memcmp(PyUnicode_DATA(o), s, n) == 0) {
        Py_INCREF(o);
        return o;
    }
    if ((o = str_of(s, n)) != NULL && PyUnicode_IS_ASCII(o)) { /* ASCII: its data are the bytes */
        Py_INCREF(o);
        Py_XSETREF(*slot, o);
    }
    return o;
}

static void str_cache_clear(StrCache *cache) {
    for (Py_ssize_t i = 0; cache && i < STR_CACHE; i++) Py_CLEAR((*cache)[i]);
}

/* _clean(): "", "[unknown]" and "[local]" are no value */
static int is_blank(const char *s, Py_ssize_t n) {
    return n == 0 || (n == 9 && memcmp(s, "[unknown]", 9) == 0) || (n == 7 && memcmp(s, "[local]", 7) == 0);
}

static PyObject *clean_str(const char *s, Py_ssize_t n) {
    if (s == NULL || is_blank(s, n)) Py_RETURN_NONE;
    return str_of(s, n);
}

static int clean_obj_is_none(PyObject *v) { /* _clean() on a str object */
    if (v == NULL || v == Py_None) return 1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    return s == NULL || is_blank(s, n);
}

static int outcome_of(const CEvent *e) { /* the first events.OUTCOMES row that fits, or -1 */
    for (int i = 0; i < noutcomes; i++) {
        const Outcome *o = &OUTCOMES[i];
        if (o->type != e->type) continue;
        if (o->field < 0) return i;
        PyObject *v = e->f[o->field];
        if (v == o->value || (v && PyUnicode_Check(v) && PyUnicode_Check(o->value) && PyUnicode_Compare(v, o->value) == 0))
            return i;
    }
    return -1;
}

/* ------------------------------------------------------------------ rule engine */

typedef struct { double *v; Py_ssize_t cap, len, head, max; } Ring;

static int ring_push(Ring *r, double x, const double *inl) { /* inl: storage of its own, never freed */
    if (r->len == r->max) { /* full: the oldest goes, as deque(maxlen) */
        r->head = (r->head + 1) % r->cap;
        r->len--;
    }
    if (r->len == r->cap) {
        Py_ssize_t cap = r->cap ? r->cap * 2 : 4;
        if (cap > r->max) cap = r->max;
        double *v = PyMem_Malloc(sizeof(double) * cap);
        if (v == NULL) { PyErr_NoMemory(); return -1; }
        for (Py_ssize_t i = 0; i < r->len; i++) v[i] = r->v[(r->head + i) % r->cap];
        if (r->v != inl) PyMem_Free(r->v);
        r->v = v;
        r->cap = cap;
        r->head = 0;
    }
    r->v[(r->head + r->len) % r->cap] = x;
    r->len++;
    return 0;
}
#define RING_AT(r, i) ((r)->v[((r)->head + (i)) % (r)->cap])
static void ring_pop(Ring *r) { r->head = (r->head + 1) % r->cap; r->len--; }

typedef struct { PyObject *v; Py_hash_t h; double t; } Seen;

/* A group's first few times (or distinct values) live in the group itself: one memory access
   fewer per event than an array of their own (a rule uses one of the two, never both). */
#define GROUP_INLINE 4

typedef struct Group {
    PyObject_HEAD
    PyObject *key;
    struct Group *prev, *next; /* least recently seen first */
    Ring times, prior;
    PyObject **prior_v;        /* beside prior's times: the `same` field of each (owned), or NULL */
    int has_prior, fired;
    Seen *seen;                /* distinct values and when last seen, oldest first (as a dict) */
    Py_ssize_t nseen, capseen;
    double last_fired, last_seen;
    long long hits;            /* events the rule matched for this group while it was tracked */
    union { double times[GROUP_INLINE]; Seen seen[GROUP_INLINE]; } inl;
} Group;

static void seen_drop(Group *g, Py_ssize_t i) {
    Py_DECREF(g->seen[i].v);
    memmove(g->seen + i, g->seen + i + 1, sizeof(Seen) * (g->nseen - i - 1));
    g->nseen--;
}

static void prior_clear(Group *g) { /* forget the prior events (their values too) */
    for (Py_ssize_t i = 0; g->prior_v && i < g->prior.len; i++)
        Py_CLEAR(g->prior_v[(g->prior.head + i) % g->prior.cap]);
    g->prior.len = g->prior.head = 0;
}

/* ring_push for the prior events: their time and their `same` field's value (v may be NULL) */
static int prior_push(Group *g, double t, PyObject *v) {
    Ring *r = &g->prior;
    if (r->len == r->max) { /* full: the oldest goes, as deque(maxlen) */
        if (g->prior_v) Py_CLEAR(g->prior_v[r->head]);
        r->head = (r->head + 1) % r->cap;
        r->len--;
    }
    if (r->len == r->cap) {
        Py_ssize_t cap = r->cap ? r->cap * 2 : 4;
        if (cap > r->max) cap = r->max;
        double *nv = PyMem_Malloc(sizeof(double) * cap);
        PyObject **npv = PyMem_Calloc(cap, sizeof(PyObject *));
        if (nv == NULL || npv == NULL) { PyMem_Free(nv); PyMem_Free(npv); PyErr_NoMemory(); return -1; }
        for (Py_ssize_t i = 0; i < r->len; i++) {
            nv[i] = r->v[(r->head + i) % r->cap];
            npv[i] = g->prior_v ? g->prior_v[(r->head + i) % r->cap] : NULL;
        }
        PyMem_Free(r->v);
        PyMem_Free(g->prior_v);
        r->v = nv;
        g->prior_v = npv;
        r->cap = cap;
        r->head = 0;
    }
    Py_ssize_t at = (r->head + r->len) % r->cap;
    r->v[at] = t;
    Py_XINCREF(v);
    g->prior_v[at] = v;
    r->len++;
    return 0;
}

static void group_dealloc(Group *g) {
    Py_XDECREF(g->key);
    while (g->nseen) seen_drop(g, g->nseen - 1);
    if (g->seen != g->inl.seen) PyMem_Free(g->seen);
    if (g->times.v != g->inl.times) PyMem_Free(g->times.v);
    prior_clear(g);
    PyMem_Free(g->prior.v);
    PyMem_Free(g->prior_v);
    PyObject_Free(g);
}

static PyTypeObject GroupType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitors._speedups.Group",
    .tp_basicsize = sizeof(Group),
    .tp_dealloc = (destructor)group_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

typedef struct { int field; PyObject *want; int many; } Cond;

typedef struct {
    unsigned long long types, after_types;
    Cond *conds, *aconds;
    int nconds, naconds;
    int group_by, distinct;
    Py_ssize_t threshold, after_count, max_groups;
    double window, cooldown, after_within;
    int has_after, outside_allowed;
    int same;                  /* after.same: the field compared between the prior events and the last, or -1 */
    PyObject *allow;           /* Networks.__contains__, or NULL when the rule has none */
    PyObject *groups;          /* key -> Group */
    Group *head, *tail;
    Py_ssize_t ngroups;
    long long evicted;         /* groups dropped to stay within max_groups */
} CRule;

typedef struct {
    PyObject_HEAD
    CRule *rules;
    Py_ssize_t nrules;
    PyObject *allowed;         /* the allowed networks' __contains__, or NULL */
} Engine;

static void lru_unlink(CRule *r, Group *g) {
    if (g->prev) g->prev->next = g->next; else r->head = g->next;
    if (g->next) g->next->prev = g->prev; else r->tail = g->prev;
    g->prev = g->next = NULL;
}

static void lru_append(CRule *r, Group *g) {
    g->prev = r->tail;
    g->next = NULL;
    if (r->tail) r->tail->next = g; else r->head = g;
    r->tail = g;
}

static int drop_head(CRule *r) {
    Group *h = r->head;
    PyObject *k = h->key;
    Py_INCREF(k);
    lru_unlink(r, h);
    int rc = PyDict_DelItem(r->groups, k);
    Py_DECREF(k);
    r->ngroups--;
    return rc;
}

static Group *touch(CRule *r, PyObject *key, double ts) { /* borrowed; the rule's dict owns it */
    Group *g = (Group *)PyDict_GetItemWithError(r->groups, key);
    if (g == NULL) {
        if (PyErr_Occurred()) return NULL;
        g = PyObject_New(Group, &GroupType);
        if (g == NULL) return NULL;
        Py_INCREF(key);
        g->key = key;
        g->prev = g->next = NULL;
        memset(&g->times, 0, sizeof(Ring));
        memset(&g->prior, 0, sizeof(Ring));
        g->prior_v = NULL;
        g->times.max = r->distinct >= 0 ? 1 : r->threshold;
        g->prior.max = r->after_count > 1 ? r->after_count : 1;
        g->has_prior = g->fired = 0;
        g->seen = NULL;
        g->nseen = g->capseen = 0;
        if (r->distinct >= 0) {
            g->seen = g->inl.seen;
            g->capseen = GROUP_INLINE;
        } else {
            g->times.v = g->inl.times;
            g->times.cap = g->times.max < GROUP_INLINE ? g->times.max : GROUP_INLINE;
        }
        g->last_fired = 0;
        g->hits = 0;
        if (PyDict_SetItem(r->groups, key, (PyObject *)g) < 0) { Py_DECREF(g); return NULL; }
        Py_DECREF(g);
        lru_append(r, g);
        r->ngroups++;
        if (r->ngroups > r->max_groups) { /* max_groups >= 1: never g */
            if (drop_head(r) < 0) return NULL;
            r->evicted++;
        }
    } else if (r->tail != g) {
        lru_unlink(r, g);
        lru_append(r, g);
    }
    g->last_seen = ts;
    return g;
}

static int conds_match(const CEvent *e, const Cond *c, int n) {
    for (int i = 0; i < n; i++) {
        PyObject *have = e->f[c[i].field] ? e->f[c[i].field] : Py_None;
        int ok = c[i].many ? PySet_Contains(c[i].want, have) : PyObject_RichCompareBool(have, c[i].want, Py_EQ);
        if (ok <= 0) return ok;
    }
    return 1;
}

static int contains(PyObject *fn, PyObject *v) {
    PyObject *r = PyObject_CallOneArg(fn, v ? v : Py_None);
    if (r == NULL) return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* a detection: (rule index, key, count, first, last, user, same); user is the completing event's
   (sequence rules only, else None), same 1/0 whether a counted prior event had its `same` value, -1
   when the rule compares none */
static int fire(Py_ssize_t ri, CRule *r, Group *g, PyObject *key, Py_ssize_t count, double first, double last,
                PyObject *user, int same, PyObject *out) {
    if (g->fired && last - g->last_fired < r->cooldown) return 0;
    g->fired = 1;
    g->last_fired = last;
    PyObject *t = Py_BuildValue("(nOnddOi)", ri, key, count, first, last, user ? user : Py_None, same);
    if (t == NULL) return -1;
    int rc = PyList_Append(out, t);
    Py_DECREF(t);
    return rc;
}

static int apply_rule(Py_ssize_t ri, CRule *r, PyObject *key, const CEvent *e, PyObject *out) {
    Group *g = touch(r, key, e->ts);
    if (g == NULL) return -1;
    double ts = e->ts;
    if (r->has_after) {
        if (!g->has_prior) return 0;
        Py_ssize_t n = 0;
        double first = 0;
        int same = r->same >= 0 ? 0 : -1;
        PyObject *mine = r->same >= 0 ? e->f[r->same] : NULL;
        for (Py_ssize_t i = 0; i < g->prior.len; i++) {
            double t = RING_AT(&g->prior, i);
            if (ts - t <= r->after_within) {
                if (n++ == 0) first = t;
                if (same == 0) { /* Python: prior value == this event's (None == None too) */
                    PyObject *v = g->prior_v[(g->prior.head + i) % g->prior.cap];
                    int eq = v == mine ? 1 : (v && mine) ? PyObject_RichCompareBool(v, mine, Py_EQ) : 0;
                    if (eq < 0) return -1;
                    same = eq;
                }
            }
        }
        if (n < r->after_count) return 0;
        g->has_prior = 0; /* the failures are accounted for by this detection */
        prior_clear(g);
        return fire(ri, r, g, key, n, first, ts, e->f[F_USER], same, out);
    }
    g->hits++;
    if (r->distinct >= 0) { /* values.pop(v); values[v] = ts; then trim by window and threshold */
        PyObject *v = e->f[r->distinct];
        if (v == NULL) return 0;
        Py_hash_t h = PyObject_Hash(v);
        if (h == -1) return -1;
        for (Py_ssize_t i = 0; i < g->nseen; i++) {
            if (g->seen[i].h != h) continue;
            int eq = g->seen[i].v == v ? 1 : PyObject_RichCompareBool(g->seen[i].v, v, Py_EQ);
            if (eq < 0) return -1;
            if (eq) { seen_drop(g, i); break; }
        }
        if (g->nseen == g->capseen) {
            Py_ssize_t cap = g->capseen ? g->capseen * 2 : 4;
            Seen *bigger = g->seen == g->inl.seen ? PyMem_Malloc(sizeof(Seen) * cap) : PyMem_Realloc(g->seen, sizeof(Seen) * cap);
            if (bigger == NULL) { PyErr_NoMemory(); return -1; }
            if (g->seen == g->inl.seen) memcpy(bigger, g->seen, sizeof(Seen) * g->nseen);
            g->seen = bigger;
            g->capseen = cap;
        }
        Py_INCREF(v);
        g->seen[g->nseen++] = (Seen){v, h, ts};
        while (g->nseen && ts - g->seen[0].t > r->window) seen_drop(g, 0);
        while (g->nseen > r->threshold) seen_drop(g, 0);
        if (g->nseen < r->threshold) return 0;
        return fire(ri, r, g, key, (Py_ssize_t)g->hits, g->seen[0].t, ts, NULL, -1, out);
    }
    if (ring_push(&g->times, ts, g->inl.times) < 0) return -1;
    while (g->times.len && ts - RING_AT(&g->times, 0) > r->window) ring_pop(&g->times);
    if (g->times.len < r->threshold) return 0;
    return fire(ri, r, g, key, (Py_ssize_t)g->hits, RING_AT(&g->times, 0), ts, NULL, -1, out);
}

static int engine_run(Engine *en, const CEvent *e, PyObject *out) {
    unsigned long long bit = 1ull << e->type;
    for (Py_ssize_t ri = 0; ri < en->nrules; ri++) {
        CRule *r = &en->rules[ri];
        for (int prior = 0; prior < 2; prior++) {
            if (!prior ? !(r->types & bit) : !(r->has_after && (r->after_types & bit))) continue;
            if (r->allow && e->f[F_SOURCE]) {
                int in = contains(r->allow, e->f[F_SOURCE]);
                if (in < 0) return -1;
                if (in) continue;
            }
            int m = prior ? conds_match(e, r->aconds, r->naconds) : conds_match(e, r->conds, r->nconds);
            if (m < 0) return -1;
            if (!m) continue;
            PyObject *key = e->f[r->group_by];
            if (key == NULL) continue;
            if (PyUnicode_CheckExact(key)) Py_INCREF(key);
            else if ((key = PyObject_Str(key)) == NULL) return -1;
            int rc = 0;
            if (prior) {
                Group *g = touch(r, key, e->ts);
                if (g == NULL) rc = -1;
                else {
                    if (!g->has_prior) { g->has_prior = 1; prior_clear(g); }
                    rc = prior_push(g, e->ts, r->same >= 0 ? e->f[r->same] : NULL);
                }
            } else {
                int skip = 0;
                if (r->outside_allowed) {
                    if (en->allowed == NULL) skip = 1;
                    else if (e->f[F_SOURCE]) {
                        skip = contains(en->allowed, e->f[F_SOURCE]);
                        if (skip < 0) rc = -1;
                    }
                }
                if (!skip && rc == 0) rc = apply_rule(ri, r, key, e, out);
            }
            Py_DECREF(key);
            if (rc < 0) return -1;
        }
    }
    return 0;
}

static int field_index(PyObject *name) {
    for (int i = 0; i < nfields; i++)
        if (PyUnicode_Check(name) && PyUnicode_Compare(name, s_field[i]) == 0) return i;
    PyErr_Format(PyExc_NotImplementedError, "field %R is not handled by the C engine", name);
    return -1;
}

static int type_mask(PyObject *types, unsigned long long *mask) {
    *mask = 0;
    PyObject *seq = PySequence_Fast(types, "types must be a sequence");
    if (seq == NULL) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *code = PyDict_GetItemWithError(s_type_codes, PySequence_Fast_GET_ITEM(seq, i));
        if (code == NULL) {
            if (!PyErr_Occurred()) /* a type no parser makes: the rule never matches it */
                continue;
            Py_DECREF(seq);
            return -1;
        }
        *mask |= 1ull << PyLong_AsLong(code);
    }
    Py_DECREF(seq);
    return 0;
}

static int parse_conds(PyObject *conds, Cond **out, int *n) {
    PyObject *seq = PySequence_Fast(conds, "conds must be a sequence");
    if (seq == NULL) return -1;
    *n = (int)PySequence_Fast_GET_SIZE(seq);
    *out = PyMem_Calloc(*n ? *n : 1, sizeof(Cond));
    for (int i = 0; i < *n; i++) {
        PyObject *name, *want;
        int many;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OOp", &name, &want, &many)) goto fail;
        if (((*out)[i].field = field_index(name)) < 0) goto fail;
        Py_INCREF(want);
        (*out)[i].want = want;
        (*out)[i].many = many;
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

static void engine_free_rules(Engine *self) {
    for (Py_ssize_t i = 0; i < self->nrules; i++) {
        CRule *r = &self->rules[i];
        for (int j = 0; j < r->nconds; j++) Py_XDECREF(r->conds[j].want);
        for (int j = 0; j < r->naconds; j++) Py_XDECREF(r->aconds[j].want);
        PyMem_Free(r->conds);
        PyMem_Free(r->aconds);
        Py_XDECREF(r->allow);
        Py_XDECREF(r->groups);
    }
    PyMem_Free(self->rules);
    self->rules = NULL;
    self->nrules = 0;
}

/* Engine(rules, allowed): rules are tuples made by monitors/speedups.py from Rule objects. */
static int engine_init(Engine *self, PyObject *args, PyObject *kw) {
    PyObject *rules, *allowed;
    if (not_ready()) return -1;
    if (!PyArg_ParseTuple(args, "OO", &rules, &allowed)) return -1;
    engine_free_rules(self);
    Py_CLEAR(self->allowed);
    if (allowed != Py_None) { Py_INCREF(allowed); self->allowed = allowed; }
    PyObject *seq = PySequence_Fast(rules, "rules must be a sequence");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->rules = PyMem_Calloc(n ? n : 1, sizeof(CRule));
    for (Py_ssize_t i = 0; i < n; i++) {
        CRule *r = &self->rules[i];
        self->nrules = i + 1;
        r->distinct = -1;
        PyObject *types, *conds, *atypes, *aconds, *group_by, *distinct, *allow, *same;
        r->same = -1;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OOOOOOnddndppOnO", &types, &conds, &atypes,
                              &aconds, &group_by, &distinct, &r->threshold, &r->window, &r->cooldown,
                              &r->after_count, &r->after_within, &r->has_after, &r->outside_allowed, &allow,
                              &r->max_groups, &same)) goto fail;
        if (same != Py_None && (r->same = field_index(same)) < 0) goto fail;
        if (r->max_groups < 1 || r->threshold < 1) {
            PyErr_SetString(PyExc_ValueError, "threshold and max_groups must be >= 1");
            goto fail;
        }
        if (type_mask(types, &r->types) < 0 || parse_conds(conds, &r->conds, &r->nconds) < 0) goto fail;
        if (r->has_after && (type_mask(atypes, &r->after_types) < 0 ||
                             parse_conds(aconds, &r->aconds, &r->naconds) < 0)) goto fail;
        if ((r->group_by = field_index(group_by)) < 0) goto fail;
        if (distinct != Py_None && (r->distinct = field_index(distinct)) < 0) goto fail;
        if (allow != Py_None) { Py_INCREF(allow); r->allow = allow; }
        if ((r->groups = PyDict_New()) == NULL) goto fail;
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

static void engine_dealloc(Engine *self) {
    engine_free_rules(self);
    Py_XDECREF(self->allowed);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An Event object (monitors.events.Event) -> CEvent; 0 when its type is none of ours. */
static int event_from_object(PyObject *obj, CEvent *e) {
    PyObject *t = PyObject_GetAttr(obj, s_type);
    if (t == NULL) return -1;
    PyObject *code = PyDict_GetItemWithError(s_type_codes, t);
    Py_DECREF(t);
    if (code == NULL) return PyErr_Occurred() ? -1 : 0;
    PyObject *ts = PyObject_GetAttr(obj, s_ts);
    if (ts == NULL) return -1;
    double tsd = PyFloat_AsDouble(ts);
    Py_DECREF(ts);
    if (tsd == -1.0 && PyErr_Occurred()) return -1;
    ev_init(e, (int)PyLong_AsLong(code), tsd);
    for (int i = 0; i < nfields; i++) {
        PyObject *v = PyObject_GetAttr(obj, s_field[i]);
        if (v == NULL) { ev_clear(e); return -1; }
        ev_set(e, i, v);
    }
    return 1;
}

static PyObject *engine_process(Engine *self, PyObject *obj) {
    CEvent e;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    int rc = event_from_object(obj, &e);
    if (rc < 0) { Py_DECREF(out); return NULL; }
    if (rc == 0) return out;
    rc = engine_run(self, &e, out);
    ev_clear(&e);
    if (rc < 0) { Py_DECREF(out); return NULL; }
    return out;
}

static PyObject *engine_expire(Engine *self, PyObject *arg) {
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    Py_ssize_t dropped = 0;
    for (Py_ssize_t i = 0; i < self->nrules; i++) {
        CRule *r = &self->rules[i];
        double keep = r->window;
        if (r->has_after && r->after_within > keep) keep = r->after_within;
        if (r->cooldown > keep) keep = r->cooldown;
        while (r->head && !(now - r->head->last_seen <= keep)) {
            if (drop_head(r) < 0) return NULL;
            dropped++;
        }
    }
    return PyLong_FromSsize_t(dropped);
}

static PyObject *engine_hits(Engine *self, PyObject *args) { /* hits(rule index, key) -> int or None */
    Py_ssize_t ri;
    PyObject *key;
    if (!PyArg_ParseTuple(args, "nO", &ri, &key)) return NULL;
    if (ri < 0 || ri >= self->nrules) return PyErr_Format(PyExc_IndexError, "no rule %zd", ri);
    Group *g = (Group *)PyDict_GetItemWithError(self->rules[ri].groups, key);
    if (g == NULL) { if (PyErr_Occurred()) return NULL; Py_RETURN_NONE; }
    return PyLong_FromLongLong(g->hits);
}

static PyObject *engine_top(Engine *self, PyObject *args) { /* top(rule index, n) -> [(hits, key)], most first */
    Py_ssize_t ri, n;
    if (!PyArg_ParseTuple(args, "nn", &ri, &n)) return NULL;
    if (ri < 0 || ri >= self->nrules) return PyErr_Format(PyExc_IndexError, "no rule %zd", ri);
    if (n < 1) return PyList_New(0);
    if (n > 1000) n = 1000;
    Group **best = PyMem_Calloc(n, sizeof(Group *));
    if (best == NULL) return PyErr_NoMemory();
    Py_ssize_t have = 0;
    for (Group *g = self->rules[ri].head; g; g = g->next) { /* insertion into a small sorted array */
        if (have == n && g->hits <= best[n - 1]->hits) continue;
        Py_ssize_t i = have < n ? have++ : n - 1;
        while (i > 0 && best[i - 1]->hits < g->hits) { best[i] = best[i - 1]; i--; }
        best[i] = g;
    }
    PyObject *out = PyList_New(have);
    for (Py_ssize_t i = 0; out && i < have; i++) {
        PyObject *t = Py_BuildValue("(LO)", best[i]->hits, best[i]->key);
        if (t == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, t);
    }
    PyMem_Free(best);
    return out;
}

static PyObject *engine_evicted(Engine *self, PyObject *unused) { /* groups dropped per rule */
    PyObject *out = PyList_New(self->nrules);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->nrules; i++) {
        PyObject *v = PyLong_FromLongLong(self->rules[i].evicted);
        if (v == NULL) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

static PyObject *engine_group_counts(Engine *self, PyObject *unused) {
    PyObject *out = PyList_New(self->nrules);
    for (Py_ssize_t i = 0; out && i < self->nrules; i++)
        PyList_SET_ITEM(out, i, PyLong_FromSsize_t(self->rules[i].ngroups));
    return out;
}

static PyObject *engine_group_keys(Engine *self, PyObject *arg) { /* least recently seen first */
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i < 0 || i >= self->nrules) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "rule index");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    for (Group *g = self->rules[i].head; out && g; g = g->next)
        if (PyList_Append(out, g->key) < 0) Py_CLEAR(out);
    return out;
}

static PyMethodDef engine_methods[] = {
    {"process", (PyCFunction)engine_process, METH_O, "process(event) -> [(rule index, key, count, first, last, user, same)]"},
    {"expire", (PyCFunction)engine_expire, METH_O, "expire(now) -> groups dropped"},
    {"group_counts", (PyCFunction)engine_group_counts, METH_NOARGS, "groups held per rule"},
    {"top", (PyCFunction)engine_top, METH_VARARGS, "top(rule index, n) -> the n groups with most hits, (hits, key)"},
    {"evicted", (PyCFunction)engine_evicted, METH_NOARGS, "groups dropped per rule to stay within max_groups"},
    {"hits", (PyCFunction)engine_hits, METH_VARARGS, "hits(rule index, key) -> events matched for the group, or None"},
    {"group_keys", (PyCFunction)engine_group_keys, METH_O, "a rule's group keys, least recently seen first"},
    {NULL}};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitors._speedups.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_dealloc = (destructor)engine_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_init = (initproc)engine_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = engine_methods,
};

/* ------------------------------------------------------------------ lines: shared helpers */

/* The first place of needle in s: memchr for its first byte, then a compare. For the short texts
   searched here, in lines of a few hundred bytes, memmem's set-up cost more than the search. */
static const char *find(const char *s, Py_ssize_t n, const char *needle, Py_ssize_t m) {
    if (m == 0) return s;
    if (m > n) return NULL;
    const char *last = s + (n - m); /* the last place a match can start */
    for (const char *p = s; p <= last && (p = memchr(p, needle[0], last - p + 1)) != NULL; p++)
        if (memcmp(p + 1, needle + 1, m - 1) == 0) return p;
    return NULL;
}
#define FIND(s, n, lit) find((s), (n), (lit), (Py_ssize_t)sizeof(lit) - 1)
#define STARTS(s, n, lit) ((n) >= (Py_ssize_t)sizeof(lit) - 1 && memcmp((s), (lit), sizeof(lit) - 1) == 0)
#define ENDS(s, n, lit) ((n) >= (Py_ssize_t)sizeof(lit) - 1 && \
                         memcmp((s) + (n) - (sizeof(lit) - 1), (lit), sizeof(lit) - 1) == 0)

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Python's bytes.decode("utf-8") accepts exactly these */
static int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && s[i + 1] < 0xA0) return 0;
            if (c == 0xED && s[i + 1] > 0x9F) return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && s[i + 1] < 0x90) return 0;
            if (c == 0xF4 && s[i + 1] > 0x8F) return 0;
            i += 4;
        } else return 0;
    }
    return 1;
}

/* events.valid_ts: a time a log line may carry (1970 up to the end of year 9999) */
#define MAX_TS 253402300800.0
static int valid_ts(double ts) { return ts >= 0.0 && ts < MAX_TS; }

static long long days_from_civil(long long y, unsigned m, unsigned d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static int num(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
    return v;
}

/* events.iso_time(): 'YYYY-MM-DD[T ]HH:MM:SS[.frac][ ][zone]'; -1 when it is no valid time */
static int iso_time(const char *s, Py_ssize_t n, double *out) {
    static const int mdays[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n < 19) return -1;
    for (int i = 0; i < 19; i++) {
        int want_digit = !(i == 4 || i == 7 || i == 10 || i == 13 || i == 16);
        if (want_digit ? !is_digit(s[i]) : 0) return -1;
    }
    if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':') return -1;
    int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2), h = num(s + 11, 2), mi = num(s + 14, 2),
        se = num(s + 17, 2);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 61) return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo] + (mo == 2 && leap)) return -1;
    double base = (double)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se);
    Py_ssize_t i = 19;
    double frac = 0.0;
    if (i < n && s[i] == '.') {
        Py_ssize_t j = i + 1;
        while (j < n && is_digit(s[j])) j++;
        Py_ssize_t nd = j - i - 1 > 9 ? 9 : j - i - 1;
        if (nd > 0) {
            double p = 1;
            for (Py_ssize_t k = 0; k < nd; k++) p *= 10;
            frac = (double)num(s + i + 1, (int)nd) / p;
        }
        i = j;
    }
    while (i < n && is_ws(s[i])) i++;
    Py_ssize_t e = n;
    while (e > i && is_ws(s[e - 1])) e--;
    const char *z = s + i;
    Py_ssize_t zn = e - i;
    double offset = 0;
    if ((zn == 5 || (zn == 6 && z[3] == ':')) && (z[0] == '+' || z[0] == '-') && is_digit(z[1]) && is_digit(z[2]) &&
        is_digit(z[zn - 2]) && is_digit(z[zn - 1])) {
        offset = (num(z + 1, 2) * 3600 + num(z + zn - 2, 2) * 60) * (z[0] == '+' ? 1 : -1);
    }
    *out = base + frac - offset;
    return valid_ts(*out) ? 0 : -1;
}

static PyObject *py_iso_time(PyObject *m, PyObject *arg) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    double t;
    if (s == NULL) return NULL;
    if (iso_time(s, n, &t) < 0) return PyErr_Format(PyExc_ValueError, "not a valid time: %R", arg);
    return PyFloat_FromDouble(t);
}

/* Counting and handing events on, shared by both scanners. */
typedef struct {
    Engine *engine;
    PyObject *out;               /* detections of this batch */
    PyObject *by_source;         /* Pipeline.by_source or NULL */
    long long counts[MAX_OUTCOMES];
    long long failed;            /* lines whose handling raised: counted and skipped */
} Sink;

static int emit(Sink *k, CEvent *e) {
    int o = outcome_of(e);
    if (o >= 0) {
        k->counts[o]++;
        if (k->by_source && OUTCOMES[o].attack) {
            /* by_source[outcome][source] += 1 */
            PyObject *per = PyDict_GetItemWithError(k->by_source, OUTCOMES[o].name);
            if (per == NULL) {
                if (PyErr_Occurred() || (per = PyDict_New()) == NULL) return -1;
                int rc = PyDict_SetItem(k->by_source, OUTCOMES[o].name, per);
                Py_DECREF(per);
                if (rc < 0) return -1;
            }
            PyObject *src = e->f[F_SOURCE] && PyUnicode_GET_LENGTH(e->f[F_SOURCE]) ? e->f[F_SOURCE] : s_unknown;
            PyObject *old = PyDict_GetItemWithError(per, src);
            if (old == NULL && PyErr_Occurred()) return -1;
            PyObject *nv = PyLong_FromLongLong(old ? PyLong_AsLongLong(old) + 1 : 1);
            int rc = nv == NULL ? -1 : PyDict_SetItem(per, src, nv);
            Py_XDECREF(nv);
            if (rc < 0) return -1;
        }
    }
    int rc = engine_run(k->engine, e, k->out);
    ev_clear(e);
    return rc;
}

static int emit_objects(Sink *k, PyObject *events) { /* Event objects from a Python parser */
    if (events == NULL) return -1;
    PyObject *seq = PySequence_Fast(events, "events");
    Py_DECREF(events);
    if (seq == NULL) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        CEvent e;
        int rc = event_from_object(PySequence_Fast_GET_ITEM(seq, i), &e);
        if (rc < 0 || (rc > 0 && emit(k, &e) < 0)) { Py_DECREF(seq); return -1; }
    }
    Py_DECREF(seq);
    return 0;
}

/* counts -> Pipeline.events[(stype, outcome)] */
static int flush_counts(Sink *k, PyObject *events) {
    for (int o = 0; o < noutcomes; o++) {
        if (!k->counts[o]) continue;
        PyObject *key = OUTCOMES[o].key;
        PyObject *old = PyDict_GetItemWithError(events, key);
        long long v = (old ? PyLong_AsLongLong(old) : 0) + k->counts[o];
        PyObject *nv = PyLong_FromLongLong(v);
        int rc = nv == NULL ? -1 : PyDict_SetItem(events, key, nv);
        Py_XDECREF(nv);
        if (rc < 0) return -1;
        k->counts[o] = 0;
    }
    return 0;
}

static int add_attr(PyObject *obj, const char *name, long long delta) {
    if (!delta) return 0;
    PyObject *old = PyObject_GetAttrString(obj, name);
    if (old == NULL) return -1;
    PyObject *nv = PyLong_FromLongLong(PyLong_AsLongLong(old) + delta);
    Py_DECREF(old);
    if (nv == NULL) return -1;
    int rc = PyObject_SetAttrString(obj, name, nv);
    Py_DECREF(nv);
    return rc;
}

/* ------------------------------------------------------------------ Postgres log_line_prefix */

/* A program compiled from log_line_prefix by monitors/pg.py (prefix_program); the same program is
   turned into the Python regex there, so both match the same lines. Matching backtracks like the
   regex: greedy classes try the longest run first, lazy ones the shortest, fixed alternatives
   ("[unknown]") before the class, optional groups with before without. */
enum { OP_LIT, OP_CLASS, OP_OPEN, OP_CLOSE, OP_OPT };
enum { C_DIGIT, C_TZ, C_USER, C_NONSPACE, C_HOST, C_ANY, C_HEX, C_UPPERDIG, C_SPACE };
enum { CAP_TS, CAP_EPOCH, CAP_PID, CAP_USER, CAP_DB, CAP_HOST, NCAPS };
static const char *CAP_NAMES[NCAPS] = {"ts", "epoch", "pid", "user", "db", "host"};

typedef struct {
    int op, cls, min, max, lazy, slot, jump;
    int whole;       /* the next op consuming anything is a literal whose first byte is not in the
                        class: only the whole run can be followed by it, so no other length is tried */
    char *lit;
    Py_ssize_t litlen;
    char **alts;
    Py_ssize_t *altlens;
    int nalts;
} Op;

typedef struct { Op *ops; int nops; } Prog;
typedef struct { Py_ssize_t start[NCAPS], end[NCAPS]; } Caps;

static unsigned char CLASS_TABLE[9][256]; /* filled at import from class_test() */

static int class_test(int cls, const unsigned char *s) { /* s: the first byte of a character */
    unsigned char c = *s;
    if (c >= 0x80) return cls == C_USER || cls == C_NONSPACE || cls == C_ANY;
    switch (cls) {
    case C_DIGIT: return is_digit(c);
    case C_TZ: return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '+' || c == '-';
    case C_USER: return c != '@' && !is_ws(c);
    case C_NONSPACE: return !is_ws(c);
    case C_HOST: return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f') || c == ':' || c == '.';
    case C_ANY: return c != '\n';
    case C_HEX: return is_digit(c) || (c >= 'a' && c <= 'f');
    case C_UPPERDIG: return is_digit(c) || (c >= 'A' && c <= 'Z');
    case C_SPACE: return is_ws(c);
    }
    return 0;
}

#define class_has(cls, s) (CLASS_TABLE[(cls)][*(const unsigned char *)(s)])

static Py_ssize_t char_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }


typedef struct { const char *s; Py_ssize_t n; Py_ssize_t level, level_len, msg; Caps caps; } Match;

static int level_at(Match *m, Py_ssize_t pos) {
    const char *s = m->s + pos;
    Py_ssize_t left = m->n - pos, len = 0;
    if (left >= 6 && memcmp(s, "DEBUG", 5) == 0 && is_digit(s[5])) len = 6;
    else
        for (int i = 0; LEVELS[i]; i++) {
            Py_ssize_t l = strlen(LEVELS[i]);
            if (left >= l && memcmp(s, LEVELS[i], l) == 0) { len = l; break; }
        }
    if (!len || left < len + 3 || memcmp(s + len, ":  ", 3) != 0) return 0;
    m->level = pos;
    m->level_len = len;
    m->msg = pos + len + 3;
    return 1;
}

static int run(const Prog *p, int pc, Py_ssize_t pos, Match *m, int depth);

static int run_class(const Prog *p, int pc, Py_ssize_t pos, Match *m, int depth) {
    const Op *op = &p->ops[pc];
    Caps saved = m->caps;
    for (int a = 0; a < op->nalts; a++) {
        if (m->n - pos >= op->altlens[a] && memcmp(m->s + pos, op->alts[a], op->altlens[a]) == 0) {
            if (op->slot >= 0) { m->caps.start[op->slot] = pos; m->caps.end[op->slot] = pos + op->altlens[a]; }
            if (run(p, pc + 1, pos + op->altlens[a], m, depth + 1)) return 1;
            m->caps = saved;
        }
    }
    if (op->whole) {
        Py_ssize_t q = pos, k = 0;
        while ((op->max < 0 || k < op->max) && q < m->n && class_has(op->cls, m->s + q)) {
            q += char_len((unsigned char)m->s[q]);
            k++;
        }
        if (k < op->min) return 0;
        if (op->slot >= 0) { m->caps.start[op->slot] = pos; m->caps.end[op->slot] = q; }
        if (run(p, pc + 1, q, m, depth + 1)) return 1;
        m->caps = saved;
        return 0;
    }
    if (op->lazy) { /* shortest first: walk forward, trying the rest at each length */
        Py_ssize_t q = pos, k = 0;
        for (;;) {
            if (k >= op->min) {
                if (op->slot >= 0) { m->caps.start[op->slot] = pos; m->caps.end[op->slot] = q; }
                if (run(p, pc + 1, q, m, depth + 1)) return 1;
                m->caps = saved;
            }
            if ((op->max >= 0 && k >= op->max) || q >= m->n || !class_has(op->cls, (const unsigned char *)m->s + q))
                return 0;
            q += char_len((unsigned char)m->s[q]);
            k++;
        }
    }
    /* greedy: the positions after 0..max characters of the class, tried longest first */
    Py_ssize_t stops[64], *st = stops, cap = 64, count = 0, q = pos;
    st[count++] = pos;
    while ((op->max < 0 || count - 1 < op->max) && q < m->n && class_has(op->cls, (const unsigned char *)m->s + q)) {
        q += char_len((unsigned char)m->s[q]);
        if (count == cap) {
            Py_ssize_t *bigger = PyMem_Malloc(sizeof(Py_ssize_t) * cap * 2);
            if (bigger == NULL) { if (st != stops) PyMem_Free(st); return 0; }
            memcpy(bigger, st, sizeof(Py_ssize_t) * cap);
            if (st != stops) PyMem_Free(st);
            st = bigger;
            cap *= 2;
        }
        st[count++] = q;
    }
    int found = 0;
    for (Py_ssize_t i = 0; i < count && !found; i++) {
        Py_ssize_t k = count - 1 - i; /* k characters taken */
        if (k < op->min) continue;
        if (op->slot >= 0) { m->caps.start[op->slot] = pos; m->caps.end[op->slot] = st[k]; }
        if (run(p, pc + 1, st[k], m, depth + 1)) found = 1;
        else m->caps = saved;
    }
    if (st != stops) PyMem_Free(st);
    return found;
}

/* ops[pc:] then the level and ":  ". An optional group is inline: entering it is going on at
   pc + 1, skipping it is going on at its jump. */
static int run(const Prog *p, int pc, Py_ssize_t pos, Match *m, int depth) {
    if (depth > 400) return 0;
    while (pc < p->nops) {
        const Op *op = &p->ops[pc];
        switch (op->op) {
        case OP_LIT:
            if (m->n - pos < op->litlen || memcmp(m->s + pos, op->lit, op->litlen) != 0) return 0;
            pos += op->litlen;
            pc++;
            break;
        case OP_OPEN: m->caps.start[op->slot] = pos; pc++; break;
        case OP_CLOSE: m->caps.end[op->slot] = pos; pc++; break;
        case OP_CLASS:
            if (op->min == op->max && op->nalts == 0) { /* a fixed width (\d{4}): nothing to try */
                for (int k = 0; k < op->min; k++) {
                    if (pos >= m->n || !class_has(op->cls, m->s + pos)) return 0;
                    pos += char_len((unsigned char)m->s[pos]);
                }
                if (op->slot >= 0) { m->caps.start[op->slot] = pos - op->min; m->caps.end[op->slot] = pos; }
                pc++;
                break;
            }
            if (op->whole && op->nalts == 0) {
                Py_ssize_t start = pos, k = 0;
                while ((op->max < 0 || k < op->max) && pos < m->n && class_has(op->cls, m->s + pos)) {
                    pos += char_len((unsigned char)m->s[pos]);
                    k++;
                }
                if (k < op->min) return 0;
                if (op->slot >= 0) { m->caps.start[op->slot] = start; m->caps.end[op->slot] = pos; }
                pc++;
                break;
            }
            return run_class(p, pc, pos, m, depth);
        case OP_OPT: {
            Caps saved = m->caps;
            if (run(p, pc + 1, pos, m, depth + 1)) return 1;
            m->caps = saved;
            pc = op->jump;
            break;
        }
        default: return 0;
        }
    }
    return level_at(m, pos);
}

static int prefix_match(const Prog *p, const char *s, Py_ssize_t n, Match *m) {
    m->s = s;
    m->n = n;
    for (int i = 0; i < NCAPS; i++) m->caps.start[i] = m->caps.end[i] = -1;
    return run(p, 0, 0, m, 0);
}

static void prog_free(Prog *p) {
    for (int i = 0; i < p->nops; i++) {
        Op *op = &p->ops[i];
        PyMem_Free(op->lit);
        for (int a = 0; a < op->nalts; a++) PyMem_Free(op->alts[a]);
        PyMem_Free(op->alts);
        PyMem_Free(op->altlens);
    }
    PyMem_Free(p->ops);
    p->ops = NULL;
    p->nops = 0;
}

static char *copy_bytes(PyObject *b, Py_ssize_t *len) {
    char *s;
    if (PyBytes_AsStringAndSize(b, &s, len) < 0) return NULL;
    char *c = PyMem_Malloc(*len + 1);
    if (c == NULL) { PyErr_NoMemory(); return NULL; }
    memcpy(c, s, *len);
    c[*len] = 0;
    return c;
}

/* ops: ("lit", bytes) | ("class", cls, min, max, lazy, slot, (alt bytes, ...)) | ("open", slot) |
   ("close", slot) | ("opt", jump); classes, slots as the enums above (pg.py names them). */
static int prog_load(Prog *p, PyObject *ops) {
    PyObject *seq = PySequence_Fast(ops, "a prefix program is a sequence of ops");
    if (seq == NULL) return -1;
    p->nops = (int)PySequence_Fast_GET_SIZE(seq);
    p->ops = PyMem_Calloc(p->nops ? p->nops : 1, sizeof(Op));
    for (int i = 0; i < p->nops; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        Op *op = &p->ops[i];
        const char *kind;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 2 || (kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(t, 0))) == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad prefix op");
            goto fail;
        }
        op->slot = -1;
        if (strcmp(kind, "lit") == 0) {
            op->op = OP_LIT;
            if ((op->lit = copy_bytes(PyTuple_GET_ITEM(t, 1), &op->litlen)) == NULL) goto fail;
        } else if (strcmp(kind, "class") == 0) {
            PyObject *alts;
            op->op = OP_CLASS;
            if (!PyArg_ParseTuple(t, "siiiiiO", &kind, &op->cls, &op->min, &op->max, &op->lazy, &op->slot, &alts))
                goto fail;
            PyObject *aseq = PySequence_Fast(alts, "alternatives");
            if (aseq == NULL) goto fail;
            op->nalts = (int)PySequence_Fast_GET_SIZE(aseq);
            op->alts = PyMem_Calloc(op->nalts ? op->nalts : 1, sizeof(char *));
            op->altlens = PyMem_Calloc(op->nalts ? op->nalts : 1, sizeof(Py_ssize_t));
            for (int a = 0; a < op->nalts; a++)
                if ((op->alts[a] = copy_bytes(PySequence_Fast_GET_ITEM(aseq, a), &op->altlens[a])) == NULL) {
                    op->nalts = a;
                    Py_DECREF(aseq);
                    goto fail;
                }
            Py_DECREF(aseq);
        } else if (strcmp(kind, "open") == 0 || strcmp(kind, "close") == 0) {
            op->op = kind[0] == 'o' ? OP_OPEN : OP_CLOSE;
            op->slot = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
        } else if (strcmp(kind, "opt") == 0) {
            op->op = OP_OPT;
            op->jump = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
        } else {
            PyErr_Format(PyExc_ValueError, "unknown prefix op %s", kind);
            goto fail;
        }
        if (PyErr_Occurred()) goto fail;
        if (op->slot >= NCAPS || (op->op == OP_OPT && (op->jump <= i || op->jump > p->nops))) {
            PyErr_SetString(PyExc_ValueError, "bad prefix op operand");
            goto fail;
        }
    }
    for (int i = 0; i < p->nops; i++) {
        Op *op = &p->ops[i];
        if (op->op != OP_CLASS) continue;
        int j = i + 1;
        while (j < p->nops && (p->ops[j].op == OP_OPEN || p->ops[j].op == OP_CLOSE)) j++;
        if (j < p->nops && p->ops[j].op == OP_LIT && p->ops[j].litlen > 0) {
            unsigned char first = (unsigned char)p->ops[j].lit[0];
            op->whole = !class_test(op->cls, &first);
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    prog_free(p);
    return -1;
}

/* ------------------------------------------------------------------ Postgres stderr scanner */

#define MAX_TRACKED_PIDS 65536

typedef struct {
    PyObject_HEAD
    Engine *engine;
    PyObject *parser;     /* the Python PostgresParser: unparsed count, prefix changes */
    Prog prog;
    PyObject *hosts;      /* OrderedDict: pid (bytes) -> client address (str) */
    int has_pending;
    PyObject *pend_pid;
    CEvent pend;          /* a password failure waiting for its DETAIL */
    long long unparsed;
} PgScanner;

static int starts_any(const char *s, Py_ssize_t n, const char **list) {
    for (int i = 0; list[i]; i++) {
        Py_ssize_t l = strlen(list[i]);
        if (n >= l && memcmp(s, list[i], l) == 0) return 1;
    }
    return 0;
}

static int starts(const char *s, Py_ssize_t n, const char *prefix) {
    Py_ssize_t l = (Py_ssize_t)strlen(prefix);
    return n >= l && memcmp(s, prefix, l) == 0;
}

static int role_missing(const char *s, Py_ssize_t n) { /* MESSAGES["role_missing"]: start (.*) end */
    const char *a = MSG[M_ROLE_MISSING][0], *b = MSG[M_ROLE_MISSING][1];
    Py_ssize_t al = (Py_ssize_t)strlen(a);
    const char *p = find(s, n, a, al);
    return p && find(p + al, n - (p + al - s), b, (Py_ssize_t)strlen(b)) != NULL;
}

static int hosts_pop(PgScanner *sc, PyObject *pid) {
    int has = PyDict_Contains(sc->hosts, pid);
    if (has <= 0) return has;
    return PyObject_DelItem(sc->hosts, pid);
}

static int hosts_remember(PgScanner *sc, PyObject *pid, PyObject *host) {
    int has = PyDict_Contains(sc->hosts, pid);
    if (has < 0 || (has && PyObject_DelItem(sc->hosts, pid) < 0)) return -1; /* re-inserted last */
    if (PyObject_SetItem(sc->hosts, pid, host) < 0) return -1;
    if (PyDict_GET_SIZE(sc->hosts) > MAX_TRACKED_PIDS) {
        PyObject *r = PyObject_CallMethodObjArgs(sc->hosts, s_popitem, Py_False, NULL);
        if (r == NULL) return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* _source(): the line's own client address, else the one its PID connected from */
static PyObject *source_of(PgScanner *sc, PyObject *pid, const char *host, Py_ssize_t hn) {
    if (host && !is_blank(host, hn)) return str_of(host, hn);
    PyObject *h = PyDict_GetItemWithError(sc->hosts, pid); /* borrowed */
    if (h == NULL && PyErr_Occurred()) return NULL;
    if (clean_obj_is_none(h)) { /* pg.LOCAL for a connection over the Unix socket */
        int local = (host && hn == 7 && memcmp(host, "[local]", 7) == 0) ||
                    (h && PyUnicode_Check(h) && PyUnicode_CompareWithASCIIString(h, "[local]") == 0);
        if (local) return PyUnicode_FromString("[local]");
        Py_RETURN_NONE;
    }
    Py_INCREF(h);
    return h;
}

static int pg_flush(PgScanner *sc, Sink *k) {
    if (!sc->has_pending) return 0;
    sc->has_pending = 0;
    if (sc->pend.f[F_REASON] == NULL) { Py_INCREF(s_bad_password); sc->pend.f[F_REASON] = s_bad_password; }
    int rc = hosts_pop(sc, sc->pend_pid);
    Py_CLEAR(sc->pend_pid);
    CEvent e = sc->pend;
    ev_init(&sc->pend, T_FAIL, 0);
    if (rc < 0) { ev_clear(&e); return -1; }
    return emit(k, &e);
}

static PyObject *bad_startup_reason(const char *msg, Py_ssize_t n) { /* msg.split(":")[0][:40] */
    const char *c = memchr(msg, ':', n);
    PyObject *s = str_of(msg, c ? c - msg : n);
    if (s == NULL || PyUnicode_GET_LENGTH(s) <= 40) return s;
    PyObject *t = PyUnicode_Substring(s, 0, 40);
    Py_DECREF(s);
    return t;
}

#define CAP(m, i, p, l) ((m).caps.start[i] >= 0 ? ((p) = (m).s + (m).caps.start[i], (l) = (m).caps.end[i] - (m).caps.start[i], 1) : ((p) = NULL, (l) = 0, 0))
#define SET(e, f, expr) do { PyObject *_v = (expr); if (_v == NULL) goto fail; ev_set((e), (f), _v); } while (0)

static int pg_event(PgScanner *sc, Sink *k, PyObject *pid, const Match *m, double ts) {
    const char *lvl = m->s + m->level, *msg = m->s + m->msg, *host, *user, *db;
    Py_ssize_t ln = m->level_len, n = m->n - m->msg, hn, un, dn;
    CAP(*m, CAP_HOST, host, hn);
    CAP(*m, CAP_USER, user, un);
    CAP(*m, CAP_DB, db, dn);
    CEvent e;
    ev_init(&e, -1, ts);
    if (ln == 3 && memcmp(lvl, "LOG", 3) == 0) {
        if (starts(msg, n, MSG[M_RECEIVED][0])) {
            const char *h = msg + strlen(MSG[M_RECEIVED][0]), *end = msg + n;
            if (!STARTS(h, end - h, "host=")) return 0;
            h += 5;
            const char *q = h;
            while (q < end && !is_ws(*q)) q++;
            if (q == h) return 0;
            if (q < end) {
                const char *r = q;
                if (!STARTS(r, end - r, " port=")) return 0;
                r += 6;
                if (r == end) return 0;
                while (r < end && is_digit(*r)) r++;
                if (r != end) return 0;
            }
            PyObject *hs = str_of(h, q - h);
            if (hs == NULL || hosts_remember(sc, pid, hs) < 0) { Py_XDECREF(hs); return -1; }
            if (q - h == 7 && memcmp(h, "[local]", 7) == 0) { Py_DECREF(hs); return 0; }
            e.type = T_CONN;
            ev_set(&e, F_SOURCE, hs);
            return emit(k, &e);
        }
        if (starts(msg, n, MSG[M_AUTHORIZED][0])) {
            e.type = T_AUTHZ;
            const char *u = msg + strlen(MSG[M_AUTHORIZED][0]), *end = msg + n, *ue = NULL, *d = NULL, *de = NULL;
            if (STARTS(u, end - u, "user=")) {
                u += 5;
                ue = u;
                while (ue < end && !is_ws(*ue)) ue++;
                if (ue == u) ue = NULL;
                else if (STARTS(ue, end - ue, " database=")) {
                    d = de = ue + 10;
                    while (de < end && !is_ws(*de)) de++;
                    if (de == d) d = NULL;
                }
            }
            SET(&e, F_SOURCE, source_of(sc, pid, host, hn));
            if (ue) {
                SET(&e, F_USER, str_of(u, ue - u));
                if (d) SET(&e, F_DATABASE, str_of(d, de - d));
            } else {
                SET(&e, F_USER, clean_str(user, un));
                SET(&e, F_DATABASE, clean_str(db, dn));
            }
            const char *p = msg, *proto = NULL, *pe = NULL;
            while ((p = FIND(p, end - p, "SSL enabled (protocol=")) != NULL) {
                p += 22;
                pe = p;
                while (pe < end && *pe != ',' && *pe != ')') pe++;
                if (pe > p) { proto = p; break; }
            }
            Py_INCREF(proto ? Py_True : Py_False);
            ev_set(&e, F_TLS, proto ? Py_True : Py_False);
            if (proto) SET(&e, F_REASON, str_of(proto, pe - proto));
            else { Py_INCREF(s_no_tls); ev_set(&e, F_REASON, s_no_tls); }
            return emit(k, &e);
        }
        if (starts(msg, n, MSG[M_DISCONNECTION][0])) {
            e.type = T_DISC;
            const char *p = msg + strlen(MSG[M_DISCONNECTION][0]), *end = msg + n, *dh = NULL, *dhe = NULL;
            while ((p = FIND(p, end - p, " host=")) != NULL) {
                p += 6;
                if (p < end && !is_ws(*p)) {
                    dh = dhe = p;
                    while (dhe < end && !is_ws(*dhe)) dhe++;
                    break;
                }
            }
            SET(&e, F_SOURCE, dh ? source_of(sc, pid, dh, dhe - dh) : source_of(sc, pid, host, hn));
            if (hosts_pop(sc, pid) < 0) goto fail;
            SET(&e, F_USER, clean_str(user, un));
            SET(&e, F_DATABASE, clean_str(db, dn));
            return emit(k, &e);
        }
        if (starts_any(msg, n, MSG[M_BAD_STARTUP])) {
            e.type = T_BADSTART;
            SET(&e, F_SOURCE, source_of(sc, pid, host, hn));
            SET(&e, F_REASON, bad_startup_reason(msg, n));
            return emit(k, &e);
        }
        const char *pc = MSG[M_PREFIX_CHANGED][0];
        Py_ssize_t pcl = (Py_ssize_t)strlen(pc);
        if (starts(msg, n, pc) && n >= pcl + 1 && msg[n - 1] == '"') {
            /* the server changed its prefix on reload: follow it (an unknown one keeps the old) */
            PyObject *ops = PyObject_CallMethod(sc->parser, "program_for", "s#", msg + pcl, n - pcl - 1);
            if (ops == NULL) return -1;
            if (ops != Py_None) {
                Prog p = {NULL, 0};
                if (prog_load(&p, ops) < 0) { Py_DECREF(ops); return -1; }
                prog_free(&sc->prog);
                sc->prog = p;
            }
            Py_DECREF(ops);
        }
        return 0;
    }
    if (!(ln == 5 && memcmp(lvl, "FATAL", 5) == 0)) return 0;
    PyObject *src = source_of(sc, pid, host, hn);
    if (src == NULL) return -1;
    ev_set(&e, F_SOURCE, src);
    if (hosts_pop(sc, pid) < 0) goto fail; /* a FATAL ends the backend */
    const char *pw = MSG[M_PASSWORD][0], *hba = MSG[M_HBA][0];
    Py_ssize_t pwl = (Py_ssize_t)strlen(pw);
    if (starts(msg, n, pw) && n >= pwl + 1 && msg[n - 1] == '"') {
        e.type = T_FAIL;
        SET(&e, F_USER, str_of(msg + pwl, n - pwl - 1));
        SET(&e, F_DATABASE, clean_str(db, dn));
        sc->has_pending = 1;
        Py_INCREF(pid);
        Py_XSETREF(sc->pend_pid, pid);
        ev_clear(&sc->pend);
        sc->pend = e;
        return 0;
    }
    if (starts(msg, n, hba)) {
        const char *end = msg + n, *a = msg + strlen(hba), *ae, *b, *be, *c, *ce;
        ae = memchr(a, '"', end - a);
        if (!ae || !STARTS(ae, end - ae, "\", user \"")) goto not_hba;
        b = ae + 9;
        be = memchr(b, '"', end - b);
        if (!be || !STARTS(be, end - be, "\", database \"")) goto not_hba;
        c = be + 13;
        ce = memchr(c, '"', end - c);
        if (!ce) goto not_hba;
        const char *r = ce + 1;
        int enc = 0; /* 1 no encryption, 2 SSL, 3 GSS */
        if (STARTS(r, end - r, ", no encryption")) enc = 1;
        else if (STARTS(r, end - r, ", SSL encryption")) enc = 2;
        else if (STARTS(r, end - r, ", GSS encryption")) enc = 3;
        e.type = T_HBA;
        if (!is_blank(a, ae - a)) SET(&e, F_SOURCE, str_of(a, ae - a));
        SET(&e, F_USER, str_of(b, be - b));
        SET(&e, F_DATABASE, str_of(c, ce - c));
        if (enc) { PyObject *t = enc == 1 ? Py_False : Py_True; Py_INCREF(t); ev_set(&e, F_TLS, t); }
        PyObject *reason = enc == 1 ? s_no_encryption : s_hba_reject;
        Py_INCREF(reason);
        ev_set(&e, F_REASON, reason);
        return emit(k, &e);
    }
not_hba:;
    const char *db0 = MSG[M_NO_DATABASE][0], *db1 = MSG[M_NO_DATABASE][1];
    Py_ssize_t l0 = (Py_ssize_t)strlen(db0), l1 = (Py_ssize_t)strlen(db1);
    if (starts(msg, n, db0) && n >= l0 + l1 && memcmp(msg + n - l1, db1, l1) == 0) {
        e.type = T_NODB;
        SET(&e, F_USER, clean_str(user, un));
        SET(&e, F_DATABASE, str_of(msg + l0, n - l0 - l1));
        return emit(k, &e);
    }
    if (starts_any(msg, n, MSG[M_TOO_MANY])) {
        e.type = T_TOOMANY;
        SET(&e, F_USER, clean_str(user, un));
        SET(&e, F_DATABASE, clean_str(db, dn));
        return emit(k, &e);
    }
    if (starts_any(msg, n, MSG[M_BAD_STARTUP])) {
        e.type = T_BADSTART;
        SET(&e, F_REASON, bad_startup_reason(msg, n));
        return emit(k, &e);
    }
    ev_clear(&e);
    return 0;
fail:
    ev_clear(&e);
    return -1;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int pg_line(PgScanner *sc, Sink *k, const char *s, Py_ssize_t n) {
    if (n > 0 && s[0] == '\t') { /* continuation of the previous record (DETAIL) */
        if (sc->has_pending && role_missing(s, n)) {
            Py_INCREF(s_unknown_role);
            ev_set(&sc->pend, F_REASON, s_unknown_role);
        }
        return 0;
    }
    Match m;
    if (!prefix_match(&sc->prog, s, n, &m)) {
        sc->unparsed++;
        return pg_flush(sc, k);
    }
    const char *p;
    Py_ssize_t pn;
    CAP(m, CAP_PID, p, pn);
    PyObject *pid = PyBytes_FromStringAndSize(p ? p : "", pn);
    if (pid == NULL) return -1;
    int rc = 0;
    if (sc->has_pending) {
        if (m.level_len == 6 && memcmp(s + m.level, "DETAIL", 6) == 0 && PyBytes_GET_SIZE(sc->pend_pid) == pn &&
            memcmp(PyBytes_AS_STRING(sc->pend_pid), p ? p : "", pn) == 0) {
            if (role_missing(s + m.msg, n - m.msg)) {
                Py_INCREF(s_unknown_role);
                ev_set(&sc->pend, F_REASON, s_unknown_role);
            }
            Py_DECREF(pid);
            return pg_flush(sc, k);
        }
        if (pg_flush(sc, k) < 0) { Py_DECREF(pid); return -1; }
    }
    double ts;
    if (CAP(m, CAP_TS, p, pn)) {
        if (iso_time(p, pn, &ts) < 0) { sc->unparsed++; Py_DECREF(pid); return 0; }
    } else if (CAP(m, CAP_EPOCH, p, pn)) {
        char buf[64];
        if (pn >= (Py_ssize_t)sizeof(buf)) { sc->unparsed++; Py_DECREF(pid); return 0; }
        memcpy(buf, p, pn);
        buf[pn] = 0;
        ts = strtod(buf, NULL);
        if (!valid_ts(ts)) { sc->unparsed++; Py_DECREF(pid); return 0; }
    } else ts = now_seconds();
    rc = pg_event(sc, k, pid, &m, ts);
    Py_DECREF(pid);
    return rc;
}

/* Pipeline.process's filter: which stderr lines can matter, decided on the raw bytes (a LOG line
   matters when it starts with a text of PG_LOG_MESSAGES, from pg.MESSAGES) */

static const char *find_colon2(const char *s, Py_ssize_t n) { /* the first ":  " */
    for (const char *p = s, *end = s + n; (p = memchr(p, ':', end - p)) != NULL; p++)
        if (end - p >= 3 && p[1] == ' ' && p[2] == ' ') return p;
    return NULL;
}

static int pg_line_matters(const char *s, Py_ssize_t n) {
    const char *c = find_colon2(s, n);
    if (c == NULL) return n > 0 && s[0] == '\t';
    Py_ssize_t i = c - s;
    if (i >= 3 && memcmp(c - 3, "LOG", 3) == 0) return starts_any(c + 3, n - i - 3, PG_LOG_MESSAGES);
    return i >= 5 && (memcmp(c - 5, "FATAL", 5) == 0 || memcmp(c - 5, "ETAIL", 5) == 0);
}

/* What a line's bytes are, in one pass eight bytes at a time: LINE_NUL when it holds a NUL byte
   (binary garbage), LINE_ASCII, or LINE_HIGH when a byte is >= 0x80 (then UTF-8 is checked). */
enum { LINE_NUL, LINE_ASCII, LINE_HIGH };
static int line_bytes(const char *s, Py_ssize_t n) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t seen = 0;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w - ones) & ~w & highs) return LINE_NUL; /* nonzero exactly when a byte of w is 0 */
        seen |= w;
    }
    for (; i < n; i++) {
        if (s[i] == 0) return LINE_NUL;
        seen |= (unsigned char)s[i];
    }
    return seen & highs ? LINE_HIGH : LINE_ASCII;
}

typedef int (*line_fn)(PyObject *self, Sink *k, const char *s, Py_ssize_t n);

/* A line whose handling raised (a bug, or input nobody foresaw) is counted and skipped, as the
   Python path does: no line may stop the stream. The first of a batch is written to stderr (the
   journal). Out of memory and interrupts still propagate. */
static int skip_failed_line(PyObject *self, Sink *k) {
    if (!PyErr_ExceptionMatches(PyExc_Exception) || PyErr_ExceptionMatches(PyExc_MemoryError)) return -1;
    if (k->failed++ == 0) {
        PySys_WriteStderr("trustops-monitor: a line could not be handled and was skipped:\n");
        PyErr_PrintEx(0); /* the traceback, to sys.stderr; clears the error */
    }
    PyErr_Clear();
    return 0;
}

/* feed(lines, events, by_source) -> (detections, invalid lines, lines whose handling failed) */
static PyObject *feed_lines(PyObject *self, Engine *engine, PyObject *args, line_fn fn, int pg) {
    PyObject *lines, *events, *by_source;
    int final = 0; /* a password failure still waiting for its DETAIL is released only at the end of the input */
    if (!PyArg_ParseTuple(args, "O!O!O|p", &PyList_Type, &lines, &PyDict_Type, &events, &by_source, &final))
        return NULL;
    Sink k;
    memset(&k, 0, sizeof k);
    k.engine = engine;
    k.by_source = by_source == Py_None ? NULL : by_source;
    if ((k.out = PyList_New(0)) == NULL) return NULL;
    long long invalid = 0;
    Py_buffer view = {.obj = NULL};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++) {
        PyObject *b = PyList_GET_ITEM(lines, i);
        int block = !PyBytes_Check(b); /* else a tail.Block: several lines joined by "\n", viewed in place */
        if (block) {
            PyObject *v = PyObject_GetAttr(b, s_view);
            int rc = v == NULL ? -1 : PyObject_GetBuffer(v, &view, PyBUF_SIMPLE);
            Py_XDECREF(v);
            if (rc < 0) {
                PyErr_SetString(PyExc_TypeError, "lines must be bytes or tail.Block");
                goto fail;
            }
        }
        const char *s = block ? view.buf : PyBytes_AS_STRING(b);
        const char *end = s + (block ? view.len : PyBytes_GET_SIZE(b));
        for (;;) {
            const char *nl = block ? memchr(s, '\n', end - s) : NULL;
            Py_ssize_t n = (nl ? nl : end) - s;
            int kind = line_bytes(s, n);
            if (kind == LINE_NUL) invalid++;
            else if (pg && !pg_line_matters(s, n)) {
                if (kind == LINE_HIGH && !valid_utf8((const unsigned char *)s, n)) invalid++;
            } else if (kind == LINE_HIGH && !valid_utf8((const unsigned char *)s, n)) invalid++;
            else {
                while (n > 0 && s[n - 1] == '\r') n--;
                if (fn(self, &k, s, n) < 0 && skip_failed_line(self, &k) < 0) goto fail;
            }
            if (nl == NULL) break;
            s = nl + 1;
        }
        if (block) PyBuffer_Release(&view);
    }
    if (pg && final && pg_flush((PgScanner *)self, &k) < 0 && skip_failed_line(self, &k) < 0) goto fail;
    if (flush_counts(&k, events) < 0) goto fail;
    return Py_BuildValue("(NLL)", k.out, invalid, k.failed);
fail:
    if (view.obj) PyBuffer_Release(&view);
    flush_counts(&k, events);
    Py_DECREF(k.out);
    return NULL;
}

static int pg_line_fn(PyObject *self, Sink *k, const char *s, Py_ssize_t n) {
    return pg_line((PgScanner *)self, k, s, n);
}

static PyObject *pg_feed(PgScanner *self, PyObject *args) {
    PyObject *r = feed_lines((PyObject *)self, self->engine, args, pg_line_fn, 1);
    long long u = self->unparsed;
    self->unparsed = 0;
    if (add_attr(self->parser, "unparsed", u) < 0) Py_CLEAR(r);
    return r;
}

static int pg_init(PgScanner *self, PyObject *args, PyObject *kw) {
    PyObject *engine, *parser, *ops;
    if (not_ready()) return -1;
    if (!PyArg_ParseTuple(args, "O!OO", &EngineType, &engine, &parser, &ops)) return -1;
    Py_INCREF(engine);
    Py_XSETREF(self->engine, (Engine *)engine);
    Py_INCREF(parser);
    Py_XSETREF(self->parser, parser);
    prog_free(&self->prog);
    if (prog_load(&self->prog, ops) < 0) return -1;
    Py_XSETREF(self->hosts, PyObject_CallNoArgs(s_ordered_dict));
    ev_init(&self->pend, T_FAIL, 0);
    return self->hosts ? 0 : -1;
}

static void pg_dealloc(PgScanner *self) {
    Py_XDECREF(self->engine);
    Py_XDECREF(self->parser);
    Py_XDECREF(self->hosts);
    Py_XDECREF(self->pend_pid);
    ev_clear(&self->pend);
    prog_free(&self->prog);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *pg_tracked(PgScanner *self, PyObject *unused) {
    return PyLong_FromSsize_t(PyDict_GET_SIZE(self->hosts));
}

static PyObject *pg_match(PgScanner *self, PyObject *arg) { /* for tests: the prefix match's fields */
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) return NULL;
    Match m;
    if (!prefix_match(&self->prog, s, n, &m)) Py_RETURN_NONE;
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < NCAPS; i++) {
        const char *p;
        Py_ssize_t pn;
        PyObject *v = CAP(m, i, p, pn) ? str_of(p, pn) : (Py_INCREF(Py_None), Py_None);
        if (v == NULL || PyDict_SetItemString(d, CAP_NAMES[i], v) < 0) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    if (d) {
        PyObject *lv = str_of(s + m.level, m.level_len), *mv = str_of(s + m.msg, n - m.msg);
        if (!lv || !mv || PyDict_SetItemString(d, "level", lv) < 0 || PyDict_SetItemString(d, "msg", mv) < 0)
            Py_CLEAR(d);
        Py_XDECREF(lv);
        Py_XDECREF(mv);
    }
    return d;
}

static PyMethodDef pg_methods[] = {
    {"feed", (PyCFunction)pg_feed, METH_VARARGS, "feed(lines, events, by_source, final=False) -> (detections, invalid, failed)"},
    {"tracked_pids", (PyCFunction)pg_tracked, METH_NOARGS, "connections whose address is remembered"},
    {"match", (PyCFunction)pg_match, METH_O, "the prefix match of one line, as a dict (tests)"},
    {NULL}};

static PyTypeObject PgScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitors._speedups.PgScanner",
    .tp_basicsize = sizeof(PgScanner),
    .tp_dealloc = (destructor)pg_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_init = (initproc)pg_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = pg_methods,
};

/* ------------------------------------------------------------------ UFW scanner */

typedef struct {
    PyObject_HEAD
    Engine *engine;
    PyObject *parser;     /* the Python UfwParser: JSON lines, syslog dates, IPv6, its counters */
    PyObject *only_dest;  /* set, or NULL */
    long long unparsed, not_ufw, other_host;
    StrCache *strs;       /* sources, destinations and protocols seen lately */
    PyObject **ports;     /* one int object per destination port, made when first seen */
} UfwScanner;

#define NPORTS 65536

static PyObject *port_obj(UfwScanner *sc, int port) { /* port: 0..65535, checked by the caller */
    PyObject **slot = &sc->ports[port];
    if (*slot == NULL && (*slot = PyLong_FromLong(port)) == NULL) return NULL;
    Py_INCREF(*slot);
    return *slot;
}

static int iso_start(const char *s, Py_ssize_t n) { /* ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    if (n < 19) return 0;
    for (int i = 0; i < 19; i++)
        if (shape[i] == 'd' ? !is_digit(s[i]) : s[i] != shape[i]) return 0;
    return 1;
}

/* ipaddress.ip_address(a).compressed for the kernel's form only (eight groups of four hex digits);
   anything else returns 0 and goes to Python. Leading zeros go, letters are lower case, and the
   longest run of two or more zero groups (the first of equals) becomes "::". */
static Py_ssize_t v6_compress(const char *a, Py_ssize_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    unsigned g[8];
    if (n != 39) return 0;
    for (int i = 0; i < 8; i++) {
        g[i] = 0;
        for (int j = 0; j < 4; j++) {
            char c = a[i * 5 + j];
            int v = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (v < 0) return 0;
            g[i] = g[i] * 16 + v;
        }
        if (i < 7 && a[i * 5 + 4] != ':') return 0;
    }
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (g[i]) { i++; continue; }
        int j = i;
        while (j < 8 && !g[j]) j++;
        if (j - i > best_len) { best = i; best_len = j - i; }
        i = j;
    }
    if (best_len < 2) best = -1;
    Py_ssize_t o = 0;
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            out[o++] = ':';
            if (i == 0) out[o++] = ':';
            i += best_len - 1;
            continue;
        }
        char t[4];
        int tn = 0;
        unsigned v = g[i];
        do { t[tn++] = hex[v & 15]; v >>= 4; } while (v);
        while (tn) out[o++] = t[--tn];
        if (i < 7) out[o++] = ':';
    }
    return o;
}

static int ufw_line(PyObject *selfo, Sink *k, const char *s, Py_ssize_t n) {
    UfwScanner *sc = (UfwScanner *)selfo;
    if (n > 0 && s[0] == '{')
        return emit_objects(k, PyObject_CallMethod(sc->parser, "_feed_json", "s#", s, n));
    const char *line = s;
    Py_ssize_t ln = n;
    if (STARTS(s, n, "MESSAGE=")) { line += 8; ln -= 8; }
    const char *tag = FIND(line, ln, "[UFW ");
    if (tag == NULL) { sc->not_ufw++; return 0; }
    const char *end = line + ln, *a = tag + 5;
    int act = -1;
    for (int i = 0; i < nactions && act < 0; i++) {
        Py_ssize_t l = strlen(UFW_ACTIONS[i]);
        if (end - a >= l + 2 && memcmp(a, UFW_ACTIONS[i], l) == 0 && a[l] == ']' && a[l + 1] == ' ') act = i;
    }
    if (act < 0) { sc->unparsed++; return 0; }
    const char *p = a + strlen(UFW_ACTIONS[act]) + 2;
    /* search: " SRC=([0-9A-Fa-f.:]+) DST=(\S+) .*?PROTO=(\S+)(?: SPT=\d+ DPT=(\d+))?" */
    const char *src = NULL, *srce = NULL, *dst = NULL, *dste = NULL, *pr = NULL, *pre = NULL, *dp = NULL, *dpe = NULL;
    for (const char *q = p; (q = FIND(q, end - q, " SRC=")) != NULL; q++) {
        const char *x = q + 5, *y = x;
        while (y < end && (is_digit(*y) || (*y >= 'A' && *y <= 'F') || (*y >= 'a' && *y <= 'f') || *y == '.' || *y == ':')) y++;
        if (y == x || !STARTS(y, end - y, " DST=")) continue;
        const char *d = y + 5, *de = d;
        while (de < end && !is_ws(*de)) de++;
        if (de == d || de >= end || *de != ' ') continue;
        const char *r = de + 1, *pp = NULL, *ppe = NULL;
        while ((r = FIND(r, end - r, "PROTO=")) != NULL) {
            r += 6;
            const char *re = r;
            while (re < end && !is_ws(*re)) re++;
            if (re > r) { pp = r; ppe = re; break; }
        }
        if (pp == NULL) continue;
        src = x; srce = y; dst = d; dste = de; pr = pp; pre = ppe;
        const char *t = ppe;
        if (STARTS(t, end - t, " SPT=")) {
            t += 5;
            const char *t0 = t;
            while (t < end && is_digit(*t)) t++;
            if (t > t0 && STARTS(t, end - t, " DPT=")) {
                t += 5;
                const char *t1 = t;
                while (t < end && is_digit(*t)) t++;
                if (t > t1) { dp = t1; dpe = t; }
            }
        }
        break;
    }
    if (src == NULL) { sc->unparsed++; return 0; }
    if (dp && (dpe - dp > 5 || num(dp, (int)(dpe - dp)) > 65535)) { sc->unparsed++; return 0; } /* no such port */
    CEvent e;
    ev_init(&e, T_UFW, 0);
    SET(&e, F_DEST, cached_str(sc->strs, dst, dste - dst));
    if (sc->only_dest) {
        int in = PySet_Contains(sc->only_dest, e.f[F_DEST]);
        if (in < 0) goto fail;
        if (!in) { sc->other_host++; ev_clear(&e); return 0; }
    }
    if (memchr(src, ':', srce - src)) { /* IPv6 arrives fully expanded: shortened as ipaddress does */
        char buf[40];
        Py_ssize_t bn = v6_compress(src, srce - src, buf);
        SET(&e, F_SOURCE, bn > 0 ? cached_str(sc->strs, buf, bn) : PyObject_CallMethod(sc->parser, "_v6", "s#", src, srce - src));
    }
    else SET(&e, F_SOURCE, cached_str(sc->strs, src, srce - src));
    if (iso_start(line, ln)) {
        const char *sp = memchr(line, ' ', ln);
        if (iso_time(line, sp ? sp - line : ln, &e.ts) < 0) { sc->unparsed++; ev_clear(&e); return 0; }
    } else {
        PyObject *t = PyObject_CallMethod(sc->parser, "_line_time", "s#", line, ln);
        if (t == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) { /* no valid time: a bad line */
            PyErr_Clear();
            sc->unparsed++;
            ev_clear(&e);
            return 0;
        }
        if (t == NULL) goto fail;
        e.ts = PyFloat_AsDouble(t);
        Py_DECREF(t);
        if (e.ts == -1.0 && PyErr_Occurred()) goto fail;
    }
    Py_INCREF(s_actions[act]);
    ev_set(&e, F_ACTION, s_actions[act]);
    SET(&e, F_PROTO, cached_str(sc->strs, pr, pre - pr));
    if (dp) SET(&e, F_DPORT, port_obj(sc, num(dp, (int)(dpe - dp))));
    return emit(k, &e);
fail:
    ev_clear(&e);
    return -1;
}

static PyObject *ufw_feed(UfwScanner *self, PyObject *args) {
    PyObject *r = feed_lines((PyObject *)self, self->engine, args, ufw_line, 0);
    if (add_attr(self->parser, "unparsed", self->unparsed) < 0 || add_attr(self->parser, "not_ufw", self->not_ufw) < 0 ||
        add_attr(self->parser, "other_host", self->other_host) < 0) Py_CLEAR(r);
    self->unparsed = self->not_ufw = self->other_host = 0;
    return r;
}

static int ufw_init(UfwScanner *self, PyObject *args, PyObject *kw) {
    PyObject *engine, *parser, *only;
    if (not_ready()) return -1;
    if (!PyArg_ParseTuple(args, "O!OO", &EngineType, &engine, &parser, &only)) return -1;
    Py_INCREF(engine);
    Py_XSETREF(self->engine, (Engine *)engine);
    Py_INCREF(parser);
    Py_XSETREF(self->parser, parser);
    Py_CLEAR(self->only_dest);
    if (only != Py_None && (self->only_dest = PySet_New(only)) == NULL) return -1;
    if ((self->strs == NULL && (self->strs = PyMem_Calloc(1, sizeof(StrCache))) == NULL) ||
        (self->ports == NULL && (self->ports = PyMem_Calloc(NPORTS, sizeof(PyObject *))) == NULL)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void ufw_dealloc(UfwScanner *self) {
    Py_XDECREF(self->engine);
    Py_XDECREF(self->parser);
    Py_XDECREF(self->only_dest);
    str_cache_clear(self->strs);
    PyMem_Free(self->strs);
    for (Py_ssize_t i = 0; self->ports && i < NPORTS; i++) Py_XDECREF(self->ports[i]);
    PyMem_Free(self->ports);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef ufw_methods[] = {
    {"feed", (PyCFunction)ufw_feed, METH_VARARGS, "feed(lines, events, by_source, final=False) -> (detections, invalid, failed)"},
    {NULL}};

static PyTypeObject UfwScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitors._speedups.UfwScanner",
    .tp_basicsize = sizeof(UfwScanner),
    .tp_dealloc = (destructor)ufw_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_init = (initproc)ufw_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = ufw_methods,
};

/* ------------------------------------------------------------------ module */

static PyObject *py_longest_line(PyObject *m, PyObject *arg) { /* (longest line, lines) of a block */
    Py_buffer view;
    Py_ssize_t best = 0, count = 0;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *s = view.buf;
    for (const char *p = s, *end = s + view.len;;) {
        const char *nl = memchr(p, '\n', end - p);
        Py_ssize_t len = (nl ? nl : end) - p;
        if (len > best) best = len;
        count++;
        if (nl == NULL) break;
        p = nl + 1;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nn)", best, count);
}

/* ------------------------------------------------------------------ setup: the Python definitions */

static const char **text_list(PyObject *seq_obj) { /* a sequence of str -> NULL-terminated copies (kept for good) */
    PyObject *seq = PySequence_Fast(seq_obj, "expected a sequence of texts");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const char **out = PyMem_Calloc(n + 1, sizeof(char *));
    if (out == NULL) { Py_DECREF(seq); PyErr_NoMemory(); return NULL; }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *t = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len);
        char *c = t ? PyMem_Malloc(len + 1) : NULL;
        if (c == NULL) { if (t) PyErr_NoMemory(); Py_DECREF(seq); return NULL; }
        memcpy(c, t, len + 1);
        out[i] = c;
    }
    Py_DECREF(seq);
    return out;
}

static PyObject *spec_item(PyObject *spec, const char *key) { /* borrowed */
    PyObject *v = PyDict_GetItemString(spec, key);
    if (v == NULL) PyErr_Format(PyExc_ValueError, "setup: %s is missing", key);
    return v;
}

static int code_of(PyObject *type_name) { /* a type's code, -1 with an error when it is not one of ours */
    PyObject *code = PyDict_GetItemWithError(s_type_codes, type_name);
    if (code == NULL) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "setup: %R is not in types", type_name);
        return -1;
    }
    return (int)PyLong_AsLong(code);
}

static int field_named(const char *name) {
    for (int i = 0; i < nfields; i++)
        if (PyUnicode_CompareWithASCIIString(s_field[i], name) == 0) return i;
    PyErr_Format(PyExc_ValueError, "setup: fields has no %s", name);
    return -1;
}

static PyObject *reason(PyObject *reasons, const char *key) { /* a new reference */
    PyObject *v = spec_item(reasons, key);
    if (v == NULL) return NULL;
    Py_INCREF(v);
    PyUnicode_InternInPlace(&v);
    return v;
}

/* setup(spec): spec = {"fields": events.FIELDS, "types": [...], "outcomes": events.OUTCOMES,
   "ufw_actions": events.UFW_ACTIONS, "ufw_type": events.UFW, "messages": pg.MESSAGES,
   "levels": pg.LEVELS, "reasons": {role: text}}; once, before anything else is made. */
static PyObject *py_setup(PyObject *m, PyObject *spec) {
    if (ready) Py_RETURN_NONE; /* a module is set up once (a re-import of speedups.py calls again) */
    if (!PyDict_Check(spec)) return PyErr_Format(PyExc_TypeError, "setup: expected a dict");
    PyObject *fields, *types, *outcomes, *actions, *ufw_type, *messages, *levels, *reasons;
    if (!(fields = spec_item(spec, "fields")) || !(types = spec_item(spec, "types")) ||
        !(outcomes = spec_item(spec, "outcomes")) || !(actions = spec_item(spec, "ufw_actions")) ||
        !(ufw_type = spec_item(spec, "ufw_type")) || !(messages = spec_item(spec, "messages")) ||
        !(levels = spec_item(spec, "levels")) || !(reasons = spec_item(spec, "reasons"))) return NULL;
    /* fields */
    PyObject *seq = PySequence_Fast(fields, "fields");
    if (seq == NULL) return NULL;
    nfields = (int)PySequence_Fast_GET_SIZE(seq);
    if (nfields > MAX_FIELDS) { Py_DECREF(seq); return PyErr_Format(PyExc_ValueError, "setup: more than %d fields", MAX_FIELDS); }
    for (int i = 0; i < nfields; i++) {
        PyObject *f = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(f)) { Py_DECREF(seq); return PyErr_Format(PyExc_TypeError, "setup: a field is a str"); }
        Py_INCREF(f);
        PyUnicode_InternInPlace(&f);
        s_field[i] = f;
    }
    Py_DECREF(seq);
    if ((F_SOURCE = field_named("source")) < 0 || (F_USER = field_named("user")) < 0 ||
        (F_DATABASE = field_named("database")) < 0 || (F_REASON = field_named("reason")) < 0 ||
        (F_TLS = field_named("tls")) < 0 || (F_ACTION = field_named("action")) < 0 ||
        (F_DPORT = field_named("dport")) < 0 || (F_PROTO = field_named("proto")) < 0 ||
        (F_DEST = field_named("dest")) < 0) return NULL;
    /* types: code = position */
    if ((seq = PySequence_Fast(types, "types")) == NULL) return NULL;
    ntypes = (int)PySequence_Fast_GET_SIZE(seq);
    if (ntypes > MAX_TYPES || (s_type_codes = PyDict_New()) == NULL) {
        Py_DECREF(seq);
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "setup: more than %d types", MAX_TYPES);
    }
    for (int i = 0; i < ntypes; i++) {
        PyObject *v = PyLong_FromLong(i);
        if (v == NULL || PyDict_SetItem(s_type_codes, PySequence_Fast_GET_ITEM(seq, i), v) < 0) {
            Py_XDECREF(v); Py_DECREF(seq); return NULL;
        }
        Py_DECREF(v);
    }
    Py_DECREF(seq);
    /* messages: role -> (texts, type or None, level) */
    if ((PG_LOG_MESSAGES = PyMem_Calloc(64, sizeof(char *))) == NULL) return PyErr_NoMemory();
    int nlog = 0;
    int *codes[NMSG] = {&T_CONN, &T_AUTHZ, &T_DISC, &T_BADSTART, NULL, &T_FAIL, &T_HBA, &T_NODB, &T_TOOMANY, NULL};
    for (int r = 0; r < NMSG; r++) {
        PyObject *entry = PyDict_GetItemString(messages, MSG_ROLES[r]);
        if (entry == NULL) return PyErr_Format(PyExc_ValueError, "setup: messages has no %s", MSG_ROLES[r]);
        PyObject *texts, *type, *level;
        if (!PyArg_ParseTuple(entry, "OOU", &texts, &type, &level)) return NULL;
        if ((MSG[r] = text_list(texts)) == NULL) return NULL;
        if (MSG[r][0] == NULL || ((r == M_NO_DATABASE || r == M_ROLE_MISSING) && MSG[r][1] == NULL))
            return PyErr_Format(PyExc_ValueError, "setup: messages[%s] lacks a text", MSG_ROLES[r]);
        if (codes[r] && (*codes[r] = code_of(type)) < 0) return NULL;
        if (PyUnicode_CompareWithASCIIString(level, "LOG") == 0)
            for (int i = 0; MSG[r][i] && nlog < 63; i++) PG_LOG_MESSAGES[nlog++] = MSG[r][i];
    }
    if ((T_UFW = code_of(ufw_type)) < 0) return NULL;
    if ((LEVELS = text_list(levels)) == NULL) return NULL;
    /* UFW actions */
    const char **acts = text_list(actions);
    if (acts == NULL) return NULL;
    for (nactions = 0; acts[nactions]; nactions++) {
        if (nactions == MAX_ACTIONS) return PyErr_Format(PyExc_ValueError, "setup: more than %d actions", MAX_ACTIONS);
        UFW_ACTIONS[nactions] = acts[nactions];
        if ((s_actions[nactions] = PyUnicode_InternFromString(acts[nactions])) == NULL) return NULL;
    }
    /* outcomes: (type, field or None, value or None, source type, outcome, attack) */
    if ((seq = PySequence_Fast(outcomes, "outcomes")) == NULL) return NULL;
    noutcomes = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *type, *field, *value, *stype, *name;
        int attack;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OOOOOp", &type, &field, &value, &stype, &name, &attack)) {
            Py_DECREF(seq); return NULL;
        }
        PyObject *code = PyDict_GetItemWithError(s_type_codes, type);
        if (code == NULL) {
            if (PyErr_Occurred()) { Py_DECREF(seq); return NULL; }
            continue; /* a type no C parser makes (the app's): counted in Python */
        }
        if (noutcomes == MAX_OUTCOMES) { Py_DECREF(seq); return PyErr_Format(PyExc_ValueError, "setup: too many outcomes"); }
        Outcome *o = &OUTCOMES[noutcomes];
        o->type = (int)PyLong_AsLong(code);
        o->field = -1;
        if (field != Py_None) {
            const char *fname = PyUnicode_AsUTF8(field);
            if (fname == NULL || (o->field = field_named(fname)) < 0) { Py_DECREF(seq); return NULL; }
        }
        o->attack = attack;
        Py_INCREF(value);
        o->value = value;
        Py_INCREF(name);
        o->name = name;
        if ((o->key = PyTuple_Pack(2, stype, name)) == NULL) { Py_DECREF(seq); return NULL; }
        noutcomes++;
    }
    Py_DECREF(seq);
    if (!(s_unknown_role = reason(reasons, "unknown_role")) || !(s_bad_password = reason(reasons, "bad_password")) ||
        !(s_no_encryption = reason(reasons, "no_encryption")) || !(s_hba_reject = reason(reasons, "hba_reject")) ||
        !(s_no_tls = reason(reasons, "no_tls"))) return NULL;
    ready = 1;
    Py_RETURN_NONE;
}

static int not_ready(void) {
    if (ready) return 0;
    PyErr_SetString(PyExc_RuntimeError, "_speedups.setup() was not called (import monitors.speedups, which calls it)");
    return 1;
}

static PyMethodDef module_methods[] = {
    {"setup", py_setup, METH_O, "setup(spec): the event types, fields, outcomes and messages, from Python"},
    {"longest_line", py_longest_line, METH_O, "longest_line(buffer) -> (its longest line, its lines)"},
    {"iso_time", py_iso_time, METH_O, "iso_time(text) -> seconds since the epoch (as events.iso_time)"},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "monitors._speedups",
                                    "The monitor's per-line hot path in C (see monitors/speedups.py).", -1,
                                    module_methods};

#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC PyInit__speedups(void) {
    for (int cls = 0; cls < 9; cls++)
        for (int c = 0; c < 256; c++) {
            unsigned char b = (unsigned char)c;
            CLASS_TABLE[cls][c] = (unsigned char)class_test(cls, &b);
        }
    INTERN(s_type, "type");
    INTERN(s_ts, "ts");
    INTERN(s_unknown, "unknown");
    INTERN(s_popitem, "popitem");
    INTERN(s_view, "view");
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) return NULL;
    s_ordered_dict = PyObject_GetAttrString(collections, "OrderedDict");
    Py_DECREF(collections);
    if (s_ordered_dict == NULL) return NULL;
    if (PyType_Ready(&GroupType) < 0 || PyType_Ready(&EngineType) < 0 || PyType_Ready(&PgScannerType) < 0 ||
        PyType_Ready(&UfwScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&EngineType);
    Py_INCREF(&PgScannerType);
    Py_INCREF(&UfwScannerType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0 ||
        PyModule_AddObject(m, "PgScanner", (PyObject *)&PgScannerType) < 0 ||
        PyModule_AddObject(m, "UfwScanner", (PyObject *)&UfwScannerType) < 0) return NULL;
    return m;
}
