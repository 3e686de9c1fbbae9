#pragma once
/* `flowrun graph WORKFLOW.lua [--format dot|mermaid] [--run RUN|last]`:
 * prints the workflow's task graph (tasks labelled with name and agent,
 * fan-out tasks marked, dependency edges) as Graphviz dot or a Mermaid
 * flowchart; with --run, each task coloured by how it ended in that past
 * run and labelled with its endpoint and cost, read from the state store.
 * Used by engine/main.c. */

#include <stdio.h>

/* Prints the command's help to `f`. */
void fr_cli_graph_help(FILE *f);

/* Runs the command on argv (argv[1] is "graph"); returns the exit code: 0
 * printed, 2 usage, 65 invalid workflow, 74 state store error (or no such
 * run), 78 configuration error. */
int fr_cli_graph_main(int argc, char **argv);
