#pragma once
/* `flowrun approve|reject WORKFLOW.lua TASK [--note TEXT]`: records a
 * decision on a checkpoint a run left pending; and the lines a run that
 * ended waiting prints about how to answer. Used by engine/main.c. */

#include "engine/results.h"

#include <stdio.h>

/* Prints the commands' help to `f`. */
void fr_cli_approve_help(FILE *f);

/* Runs `approve` or `reject` (argv[1]) on argv; returns the exit code. */
int fr_cli_approve_main(int argc, char **argv);

/* After a run `r` (borrowed) that ended with checkpoints pending: prints on
 * stderr each of them and the commands that answer it, naming the
 * workflow `wf_path` and the state directory `state_dir` (may be NULL). */
void fr_cli_how_to_answer(const fr_results *r, const char *wf_path, const char *state_dir);
