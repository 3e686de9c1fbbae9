#pragma once
/* The task graph: nodes are task indices, an edge runs from a dependency to
 * its dependent. Gives the topological order and levels, the longest
 * remaining path of each node (the scheduler's tie-break), and finds cycles
 * with their whole path. Knows nothing of Lua, HTTP or endpoints. */

#include "engine/util/err.h"

#include <stddef.h>

typedef struct fr_graph fr_graph;
typedef struct fr_workflow fr_workflow;

/* Returns a new graph of `n` nodes and no edges (owned; fr_graph_free). */
fr_graph *fr_graph_new(size_t n);
/* Frees a graph; NULL is fine. */
void fr_graph_free(fr_graph *g);
/* Adds an edge: `to` depends on `from`. Both < n. Duplicate edges are kept
 * once. Must be called before fr_graph_sort. */
void fr_graph_add_edge(fr_graph *g, size_t from, size_t to);

/* Sorts the graph. On FR_OK the order, levels and ranks are available. On
 * FR_ECYCLE, *cycle (if non-NULL) receives an owned array of *ncycle node
 * indices forming a cycle in dependency order (a depends-on chain where
 * each node is a dependency of the next, and the last leads back to the
 * first). */
int fr_graph_sort(fr_graph *g, size_t **cycle, size_t *ncycle);

/* Adds a node after a sort, at the end of the order: it has the
 * dependencies, the level and the rank of node `like` (< n) and no
 * dependents (no edge to it is recorded on its dependencies, so their
 * dependents stay as they were). A fan-out's instance (engine/fanout).
 * Returns its index, the old size; borrowed arrays from before may move. */
size_t fr_graph_add_like(fr_graph *g, size_t like);

/* Number of nodes. */
size_t fr_graph_size(const fr_graph *g);
/* The topological order (borrowed array of fr_graph_size entries). */
const size_t *fr_graph_order(const fr_graph *g);
/* The level of a node: 0 for nodes without deps, else 1 + max level of its deps. */
size_t fr_graph_level(const fr_graph *g, size_t node);
/* Number of nodes on the longest path from this node to a sink, itself included. */
size_t fr_graph_rank(const fr_graph *g, size_t node);
/* Number of distinct dependencies of a node. */
size_t fr_graph_ndeps(const fr_graph *g, size_t node);
/* The dependents of a node (borrowed array; *n receives its length). */
const size_t *fr_graph_dependents(const fr_graph *g, size_t node, size_t *n);
/* The dependencies of a node (borrowed array; *n receives its length). */
const size_t *fr_graph_deps(const fr_graph *g, size_t node, size_t *n);

/* Longest path through the graph where node i costs weight[i] (borrowed
 * array of fr_graph_size entries). The graph must be sorted. */
double fr_graph_longest_path(const fr_graph *g, const double *weight);

/* Builds and sorts the graph of `wf` (borrowed). On FR_ECYCLE, `err` names
 * the workflow file, the line of the first task of the cycle, and the whole
 * cycle, e.g. "dependency cycle: a -> b -> c -> a". */
int fr_graph_from_workflow(const fr_workflow *wf, fr_graph **out, fr_error *err);
