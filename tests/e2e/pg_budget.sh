#!/usr/bin/env bash
# tests/e2e/budget_shared.sh on a shared PostgreSQL store (--state URL): six
# flowrun processes at once under one monthly cap, replies of random
# lengths: the simulator's own usage x price never passes the cap in any of
# 20 repetitions, and the ledger (psql) books exactly what it served; then 2
# repetitions under a daily cap alone. Skipped (77) where PostgreSQL cannot
# be installed.
BUDGET_STORE=postgresql BUDGET_DAILY_REPS=${BUDGET_DAILY_REPS:-2} \
  source "$(dirname "$0")/budget_shared.sh"
