#!/usr/bin/env bash
# tests/e2e/capacity_shared.sh on a shared PostgreSQL store (--state URL):
# six flowrun processes at once, each with tasks on one local endpoint of
# max_parallel 3, never put more than 3 requests on its model at once (ten
# rounds); with `shared = false` they do; a process killed with SIGKILL
# mid-run leaves its slots to the others within the owner's lease.
# Skipped (77) where PostgreSQL cannot be installed.
CAPACITY_STORE=postgresql source "$(dirname "$0")/capacity_shared.sh"
