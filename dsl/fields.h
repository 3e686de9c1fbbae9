#pragma once
/* The DSL's documentation as data: every declaration (workflow, endpoint,
 * baseline, agent, task, mcp, tool), the classes of their fields and
 * sub-tables, and what a routing policy receives, each field with its LuaLS
 * type and a one-line description, all from the rows of dsl/fields_def.h
 * that dsl/decl.c checks declarations against. Used by `flowrun defs`
 * (engine/cli/defs_cmd), which prints them as LuaLS definitions. */

#include <stddef.h>

/* One field: its name, LuaLS type and description (static strings). */
typedef struct fr_field_doc {
    const char *name;
    const char *type;
    const char *desc;
} fr_field_doc;

/* One class: its LuaLS name ("flowrun.Task"), description and fields. */
typedef struct fr_class_doc {
    const char *name;
    const char *desc;
    const fr_field_doc *fields;
    size_t nfields;
    int written; /* 1: the author writes it, fields optional unless
                  * "(required)"; 0: flowrun passes it, every field set */
} fr_class_doc;

/* How a declaration function is called. */
typedef enum fr_decl_form {
    FR_DECL_TABLE,     /* workflow { ... } */
    FR_DECL_NAMED,     /* task "name" { ... } */
    FR_DECL_NAME_ONLY, /* baseline "name" */
} fr_decl_form;

/* One declaration function: its name, form, the class of its table (NULL
 * for FR_DECL_NAME_ONLY) and what it declares (static strings). */
typedef struct fr_decl_doc {
    const char *name;
    fr_decl_form form;
    const char *cls;
    const char *desc;
} fr_decl_doc;

/* Every class, in a fixed order; *n gets the count. Static data. */
const fr_class_doc *fr_dsl_classes(size_t *n);

/* Every declaration function, in a fixed order; *n gets the count. */
const fr_decl_doc *fr_dsl_decls(size_t *n);

/* The type aliases the classes use (name, LuaLS type, description); *n
 * gets the count. Static data. */
const fr_field_doc *fr_dsl_aliases(size_t *n);
