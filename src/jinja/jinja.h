/* jinja.h - a Jinja interpreter for chat templates: lexer (lex.c), recursive-descent parser
 * to an AST (parse.c), values (value.c), evaluator with filters, tests and methods
 * (eval.c), JSON in and out (json.c), and the public sov_chat_template_* calls (api.c).
 * The flow: source -> jinja_lex -> tokens -> jinja_parse -> AST (checked for unknown
 * filters and tests) -> jinja_render with the variables as JSON -> text.
 *
 * The semantics are those of python3-jinja2 in the environment Hugging Face renders chat
 * templates with: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
 * extensions=[loopcontrols]), `tojson` as json.dumps(ensure_ascii=False, ...),
 * raise_exception() and strftime_now() as globals, Jinja's default Undefined.
 *
 * Memory: everything a compile or a render allocates comes from one arena (jarena) that is
 * freed at once; errors unwind with longjmp to the entry point, which frees the arena.
 * Every arena has a byte cap, so a hostile template cannot exhaust memory. */
#ifndef SOV_JINJA_H
#define SOV_JINJA_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits (each a clear error when passed) ---------------------------------------- */
#define JINJA_MAX_SOURCE (1u << 20)  /* template source bytes */
#define JINJA_MAX_NODES 100000       /* AST nodes */
#define JINJA_MAX_PARSE_DEPTH 200    /* nesting of expressions and blocks */
#define JINJA_MAX_CALL_DEPTH 64      /* macro calls in progress */
#define JINJA_MAX_RANGE 100000       /* range() length, as Jinja's sandbox */
#define JINJA_MAX_ITERATIONS 1000000 /* loop iterations of one render */
#define JINJA_MAX_WORK 100000000ull /* steps of one render: evaluations, elements, 64-byte scans */
#define JINJA_DEFAULT_MAX_OUTPUT (8u << 20)
#define JINJA_MAX_MEMORY (64u << 20) /* arena bytes of one render */

/* ---- arena --------------------------------------------------------------------------- */
typedef struct jchunk jchunk;
typedef struct jarena {
    jchunk *head; /* newest chunk first */
    size_t used;  /* bytes handed out, against cap */
    size_t cap;
    jmp_buf *fail; /* where an exhausted arena unwinds to */
    char *err;     /* and the message it leaves there (JINJA_ERR bytes) */
    void *scratch; /* the lexer's malloc'd token array while compiling (freed on unwind) */
} jarena;

#define JINJA_ERR 512
void *ja_alloc(jarena *a, size_t n);     /* zeroed; unwinds on exhaustion */
void *ja_alloc_raw(jarena *a, size_t n); /* not zeroed */
char *ja_strndup(jarena *a, const char *s, size_t n);
void ja_free(jarena *a);

/* ---- values -------------------------------------------------------------------------- */
typedef enum jtype {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_NS,
    JV_FUNC,
    JV_LOOP
} jtype;

typedef struct jstr {
    size_t len;
    char s[];
} jstr; /* UTF-8, NUL-terminated */
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    jtype t;
    uint8_t safe; /* JV_STR: a markupsafe.Markup (from |safe): `+` escapes plain strings into it */
    union {
        bool b;
        int64_t i;
        double f;
        const jstr *s;
        jlist *l;
        jdict *d; /* JV_DICT and JV_NS */
        jfunc *fn;
        jloop *loop;
        const char *uname; /* JV_UNDEF: what was undefined, for messages (may be NULL) */
    } u;
} jv;

struct jlist {
    size_t n, cap;
    jv *v;
    uint8_t tuple; /* 1: tuple, 2: generator */
};
struct jdict {
    size_t n, cap;
    jv *k;
    jv *v;
};

/* ---- lexer tokens --------------------------------------------------------------------- */
typedef enum jtok_kind {
    JT_EOF,
    JT_TEXT,
    JT_VAR_BEGIN,
    JT_VAR_END,
    JT_BLOCK_BEGIN,
    JT_BLOCK_END,
    JT_NAME,
    JT_STRING,
    JT_INT,
    JT_FLOAT,
    JT_OP
} jtok_kind;

typedef struct jtok {
    jtok_kind kind;
    int line;
    const char *s; /* text, name, string value (unescaped), operator */
    size_t len;
    int64_t i;
    double f;
} jtok;

/* Tokenizes src with trim_blocks and lstrip_blocks; comments dropped, raw blocks as text.
 * *toks is malloc'd (the caller frees it). Returns false with err set on a lexical error. */
bool jinja_lex(jarena *a, const char *src, size_t len, jtok **toks, size_t *n, char *err);

/* ---- AST ----------------------------------------------------------------------------- */
typedef enum jnode_kind {
    /* expressions */
    JN_LIT,
    JN_NAME,
    JN_ATTR,
    JN_ITEM,
    JN_SLICE,
    JN_CALL,
    JN_FILTER,
    JN_TEST,
    JN_NEG,
    JN_POS,
    JN_NOT,
    JN_AND,
    JN_OR,
    JN_BIN,
    JN_CMP,
    JN_COND,
    JN_LIST,
    JN_TUPLE,
    JN_DICT,
    /* statements */
    JN_BODY,
    JN_TEXT,
    JN_OUTPUT,
    JN_IF,
    JN_FOR,
    JN_SET,
    JN_SETBLOCK,
    JN_MACRO,
    JN_CALLBLOCK,
    JN_FILTERBLOCK,
    JN_BREAK,
    JN_CONTINUE
} jnode_kind;

typedef struct jnode jnode;
struct jnode {
    jnode_kind kind;
    int line;
    int op;           /* JN_BIN / JN_CMP: operator code; JN_TEST: negated */
    const char *name; /* names, attributes, filters, tests, macro names */
    jv lit;           /* JN_LIT */
    jnode *a, *b, *c, *d;
    jnode **kids; /* arguments, list items, statements */
    size_t n_kids;
    const char **kwn; /* keyword argument names (or parameter names) */
    jnode **kwv;      /* their values (or defaults, NULL when none) */
    size_t n_kw;
    const char **targets; /* JN_FOR / JN_SET targets; JN_SET with name: ns attribute */
    size_t n_targets;
};

enum {
    OP_ADD = 1,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_CONCAT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN
};

/* Parses tokens into a JN_BODY; false with err ("line N: ...") on failure. */
bool jinja_parse(jarena *a, const jtok *toks, size_t n, jnode **out, char *err);

/* ---- compiled templates and rendering -------------------------------------------------- */
typedef struct jinja_template {
    jarena arena;
    jnode *root;
    size_t n_nodes;
} jinja_template;

typedef struct jinja_var {
    const char *name;
    const char *json;
} jinja_var;

typedef struct jinja_render_opts {
    size_t max_output; /* 0: JINJA_DEFAULT_MAX_OUTPUT */
    int64_t now;       /* strftime_now's time (Unix seconds, local = UTC); 0: the clock */
} jinja_render_opts;

/* Compiles src; NULL with err ("line N: ...", one line) on failure. */
jinja_template *jinja_compile(const char *src, size_t len, char *err);
void jinja_template_free(jinja_template *t);

/* Renders with global variables given as JSON texts (names in vars[i].name; a NULL json
 * means none/null). On success *out is a malloc'd NUL-terminated string the caller frees.
 * False with err on a render error (raise_exception's message, undefined values, limits). */
bool jinja_render(const jinja_template *t, const jinja_var *vars, size_t n_vars, const jinja_render_opts *o,
                  char **out, size_t *out_len, char *err);

/* ---- values (value.c), used by eval.c and json.c ---------------------------------------- */
jv jv_undef(const char *name);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(jarena *a, const char *s, size_t n);
jv jv_cstr(jarena *a, const char *s);
jv jv_list(jarena *a);
jv jv_dict(jarena *a);
void jl_push(jarena *a, jlist *l, jv v);
void jd_set(jarena *a, jdict *d, jv k, jv v);
bool jd_get(const jdict *d, jv k, jv *out);
bool jd_gets(const jdict *d, const char *k, jv *out);
bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
const char *jv_type_name(jv v);

/* a growable byte buffer in the arena */
typedef struct jbuf {
    jarena *a;
    char *p;
    size_t n, cap;
    size_t max;
    jmp_buf *fail;
    char *err;
} jbuf;
void jb_put(jbuf *b, const char *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* str(v) as Python prints it (None, True, 1.5, 'repr' inside containers) */
void jv_write_str(jbuf *b, jv v);
void jv_write_repr(jbuf *b, jv v);
void jv_write_float(jbuf *b, double f);

/* json.c */
/* jansson text -> value; false when it does not parse (err set). */
bool jv_from_json_text(jarena *a, const char *text, jv *out, char *err);
/* json.dumps(v, ensure_ascii, indent (<0: none), separators, sort_keys); false when a value
 * cannot be serialized (err set). */
bool jv_to_json(jbuf *b, jv v, bool ensure_ascii, int indent, const char *item_sep, const char *key_sep,
                bool sort_keys, char *err);

#endif
