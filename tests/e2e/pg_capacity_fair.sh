#!/usr/bin/env bash
# tests/e2e/capacity_fair.sh on a shared PostgreSQL store (--state URL): a
# run with a long queue leaves the slots it frees of a max_parallel 3
# endpoint to a process that waits (slot_waits), so the later run's first
# request goes out before the busy one sends 6 more. Skipped (77) where
# PostgreSQL cannot be installed.
CAPACITY_STORE=postgresql source "$(dirname "$0")/capacity_fair.sh"
