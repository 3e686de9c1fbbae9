/* `flowrun defs`: the LuaLS definitions of the DSL (engine/cli/defs_cmd.h). */

#include "engine/cli/defs_cmd.h"

#include "dsl/fields.h"
#include "engine/cli/cli.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static const char header[] =
    "---@meta flowrun\n"
    "-- flowrun's DSL for lua-language-server (LuaLS): workflow files, endpoints\n"
    "-- files and routing policies. Printed by `flowrun defs` from the tables that\n"
    "-- define the DSL's fields (dsl/fields_def.h); do not edit. Point .luarc.json's\n"
    "-- workspace.library at the folder holding it (`flowrun init` does).\n"
    "-- A policy file: `---@type flowrun.Policy` above its `return { ... }`.\n";

/* A field the author may leave out: a written table's field whose
 * description does not end in "(required)", and not an index ("[string]"). */
static bool optional(const fr_class_doc *c, const fr_field_doc *f)
{
    size_t n = strlen(f->desc);
    static const char req[] = "(required)";
    bool required = n >= sizeof req - 1 && strcmp(f->desc + n - (sizeof req - 1), req) == 0;
    return c->written && !required && f->name[0] != '[';
}

static void write_class(FILE *f, const fr_class_doc *c)
{
    fprintf(f, "\n---%s\n---@class %s\n", c->desc, c->name);
    for (size_t i = 0; i < c->nfields; i++) {
        const fr_field_doc *fd = &c->fields[i];
        fprintf(f, "---@field %s%s %s %s\n", fd->name, optional(c, fd) ? "?" : "", fd->type,
                fd->desc);
    }
}

static void write_decl(FILE *f, const fr_decl_doc *d)
{
    fprintf(f, "\n---%s\n", d->desc);
    switch (d->form) {
    case FR_DECL_TABLE:
        fprintf(f, "---@param spec %s\nfunction %s(spec) end\n", d->cls, d->name);
        break;
    case FR_DECL_NAMED:
        fprintf(f, "---@param name string\n---@return fun(spec: %s)\nfunction %s(name) end\n",
                d->cls, d->name);
        break;
    case FR_DECL_NAME_ONLY:
        fprintf(f, "---@param name string\nfunction %s(name) end\n", d->name);
        break;
    }
}

int fr_defs_write(FILE *f)
{
    size_t n;
    fputs(header, f);
    const fr_field_doc *aliases = fr_dsl_aliases(&n);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "\n---%s\n---@alias %s %s\n", aliases[i].desc, aliases[i].name, aliases[i].type);
    const fr_class_doc *classes = fr_dsl_classes(&n);
    for (size_t i = 0; i < n; i++)
        write_class(f, &classes[i]);
    const fr_decl_doc *decls = fr_dsl_decls(&n);
    for (size_t i = 0; i < n; i++)
        write_decl(f, &decls[i]);
    return ferror(f) || fflush(f) != 0 ? -1 : 0;
}

void fr_cli_defs_help(FILE *f)
{
    fputs("Prints the LuaLS (lua-language-server) definitions of flowrun's DSL on\n"
          "stdout: workflow, endpoint, agent, task, mcp and tool with every field's\n"
          "type and meaning, and the arguments a routing policy's route and on_result\n"
          "receive. `flowrun init` writes them into a new project with a .luarc.json;\n"
          "for an existing one: `flowrun defs > .luals/flowrun.d.lua`.\n"
          "\n"
          "options:\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 printed, 2 usage, 74 cannot write.\n"
          "Documentation: docs/editors.md.\n",
          f);
}

int fr_cli_defs_main(int argc, char **argv)
{
    if (argc > 2)
        return fr_cli_usage_error("defs: unexpected argument '%s'", argv[2]);
    if (fr_defs_write(stdout) != 0) {
        fprintf(stderr, "flowrun: defs: cannot write to standard output: %s\n",
                strerror(errno ? errno : EIO));
        return FR_EXIT_IOERR;
    }
    return 0;
}
