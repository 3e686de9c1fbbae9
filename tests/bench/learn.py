#!/usr/bin/env python3
"""The workflow of one run of the learning benchmark (tests/bench/learn.sh).

A coding pipeline: FEATURES features, each designed, implemented, tested,
reviewed and documented (design -> implement -> test, review -> document),
each task of its stage's type. Every task has a hidden difficulty, drawn with
a fixed seed from its stage's range, that the simulated models grade
(flowrun-sim's `skill=`, a prompt's `@@difficulty` line); the workflow sees
only a complexity hint, the difficulty plus uniform noise in +-NOISE,
clamped to 0..1. The `check` gate passes only replies that start with PASS.

  learn.py --url URL --run K [--features N] [--mode free|oracle|cloud]

`free` leaves routing to the policy; `oracle` pins each task to the cheapest
endpoint whose skill covers its difficulty; `cloud` pins every task to the
strongest cloud model. Run K draws its own tasks (fresh tasks, the same kind
every run); the same K gives the same tasks to every policy.
"""

import argparse
import random

# name, tier, skill (hidden, the simulator's), quality (declared), slots,
# price per million tokens in and out. The declared qualities are a cautious
# guess below the real skills, as a user writes them before any run. Each
# local model has 8 slots (a vLLM server batches), so that what the
# benchmark measures is the routing, not a queue for a local slot.
ENDPOINTS = [
    ("tiny", "local", 0.35, 0.30, 8, 0, 0),
    ("small", "local", 0.55, 0.45, 8, 0, 0),
    ("medium", "local", 0.72, 0.60, 8, 0, 0),
    ("large", "local", 0.85, 0.75, 8, 0, 0),
    ("mid", "cloud", 0.95, 0.90, 8, 0.5, 1.5),
    ("top", "cloud", 1.00, 0.98, 8, 3.0, 15.0),
]

# stage, type, difficulty range, deps (stages of the same feature)
STAGES = [
    ("design", "design", (0.30, 1.00), []),
    ("implement", "implement", (0.20, 0.95), ["design"]),
    ("test", "test", (0.10, 0.75), ["implement"]),
    ("review", "review", (0.25, 0.90), ["implement"]),
    ("document", "document", (0.00, 0.60), ["test", "review"]),
]

NOISE = 0.15
SEED = 20261202


def sim_models():
    """The flowrun-sim --model options of the fleet, one a line."""
    for name, _tier, skill, *_ in ENDPOINTS:
        print(f"{name}:skill={skill}")


def oracle_endpoint(difficulty):
    """The cheapest endpoint whose skill covers the difficulty."""
    fits = [e for e in ENDPOINTS if e[2] >= difficulty]
    return min(fits, key=lambda e: (e[5] + e[6], e[2]))[0]


def workflow(url, run, features, mode, policy):
    rng = random.Random(SEED * 1000 + run)
    out = []
    out.append(f'workflow {{ name = "learn", policy = "{policy}",')
    out.append("  defaults = { retries = 1, max_tokens = 200, timeout = 120 } }")
    for name, tier, _skill, quality, slots, pin, pout in ENDPOINTS:
        price = f", price = {{ input = {pin}, output = {pout} }}" if tier == "cloud" else ""
        out.append(
            f'endpoint "{name}" {{ tier = "{tier}", url = "{url}/v1", model = "{name}", '
            f"max_parallel = {slots}, quality = {quality}{price} }}"
        )
    for stage, typ, _rng, _deps in STAGES:
        out.append(f'agent "{stage}" {{ type = "{typ}", system = "You are the {stage} step." }}')
    out.append("local function passed(text)")
    out.append('  if text:sub(1, 5) == "PASS " then return 1 end')
    out.append('  return false, "the reply does not pass"')
    out.append("end")
    for f in range(features):
        for stage, _typ, (lo, hi), deps in STAGES:
            d = round(rng.uniform(lo, hi), 3)
            hint = round(min(1.0, max(0.0, d + rng.uniform(-NOISE, NOISE))), 3)
            name = f"{stage}{f}"
            dep_list = ", ".join(f'"{x}{f}"' for x in deps)
            pin = ""
            if mode == "oracle":
                pin = f', endpoint = "{oracle_endpoint(d)}"'
            elif mode == "cloud":
                pin = ', endpoint = "top"'
            prompt = (
                f"Run {run}, feature {f}: the {stage} step of feature {f}. "
                f"Write it carefully and completely.\\n@@difficulty {d}"
            )
            out.append(
                f'task "{name}" {{ agent = "{stage}", deps = {{ {dep_list} }}, '
                f"complexity = {hint}{pin}, check = passed,"
            )
            out.append(f'  prompt = "{prompt}" }}')
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--run", type=int, default=1)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--mode", choices=["free", "oracle", "cloud"], default="free")
    ap.add_argument("--policy", default="adaptive")
    ap.add_argument("--models", action="store_true", help="print the sim's --model options")
    a = ap.parse_args()
    if a.models:
        sim_models()
        return
    print(workflow(a.url, a.run, a.features, a.mode, a.policy), end="")


if __name__ == "__main__":
    main()
