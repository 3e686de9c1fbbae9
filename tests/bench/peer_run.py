#!/usr/bin/env python3
"""flowrun beside the asyncio reference peer, on one flowrun-sim (tests/bench/peer.sh runs this).

Starts one flowrun-sim (--tps 0, model `peer` at LATENCY ms), then for each shape runs, in
interleaved repetitions, flowrun with its state and outputs where a user's would be (the
default ./.flowrun/ of a fresh folder on the machine's disk), the peer, and flowrun again with
the same folder on tmpfs (/dev/shm). Each process is measured from outside the same way:
wall time, CPU user + sys and peak RSS from wait4() in the small rusage wrapper, and the time from its start to the first
request reaching the simulator (GET /sim/stats, first_request_unix_us). Prints the medians as a
ratio table (flowrun / peer). Standard library only, like the peer.

The DAGs are generated here with a mirror of the peer's build_dag (mulberry32 included); the
peer's dag_sha is checked against this mirror's, so both run the identical graph.
"""
import argparse
import json
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

UNLIMITED = 100000  # flowrun's max_parallel for an unlimited cap (above every shape here)

# ----------------------------------------------------------------- the peer's DAGs, mirrored
M32 = 0xFFFFFFFF


def mulberry32(seed):
    a = seed & M32

    def rnd():
        nonlocal a
        a = (a + 0x6D2B79F5) & M32
        t = a
        t = ((t ^ (t >> 15)) * (t | 1)) & M32
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & M32)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return rnd


def build_dag(desc):
    """The nodes [{"id", "deps"}] of a DAG description, exactly as asyncio-dag.py builds them."""
    n, shape = desc["n"], desc["shape"]
    nid = lambda i: "n%d" % i
    if shape == "fanout":
        return [{"id": nid(i), "deps": []} for i in range(n)]
    if shape == "chain":
        return [{"id": nid(i), "deps": [nid(i - 1)] if i else []} for i in range(n)]
    if shape == "layered":
        layers = desc.get("layers") or max(1, round(n ** 0.5))
        max_deps = desc.get("max_deps", 3)
        rnd = mulberry32(desc.get("seed", 42))
        starts, s = [], 0
        for l in range(layers):
            starts.append(s)
            s += n // layers + (1 if l < n % layers else 0)
        starts.append(n)
        nodes = []
        for l in range(layers):
            for i in range(starts[l], starts[l + 1]):
                deps = []
                if l > 0:
                    k = 1 + int(rnd() * max_deps)
                    deps.append(starts[l - 1] + int(rnd() * (starts[l] - starts[l - 1])))
                    for _ in range(1, k):
                        d = int(rnd() * starts[l])
                        if d not in deps:
                            deps.append(d)
                nodes.append({"id": nid(i), "deps": [nid(d) for d in sorted(deps)]})
        return nodes
    raise ValueError("unknown DAG shape: %s" % shape)


def analyze(nodes):
    """Critical path (in tasks) and the peer's dag_sha of `nodes` (deps come before their tasks)."""
    import hashlib

    depth = {}
    for x in nodes:
        depth[x["id"]] = 1 + max((depth[d] for d in x["deps"]), default=0)
    sha = hashlib.sha256(";".join(x["id"] + ":" + ",".join(x["deps"]) for x in nodes).encode()).hexdigest()[:12]
    return {"nodes": len(nodes), "critical_path": max(depth.values(), default=0), "sha": sha}


def lower_bound(info, latency, cap):
    return max(info["critical_path"] * latency, info["nodes"] * latency / cap if cap > 0 else 0)


def workflow_lua(nodes, url, cap):
    """The same DAG as a flowrun workflow: one endpoint with max_parallel = cap, and each task's
    prompt as the peer's (its id, each dep's output, `REPLY: out-<id>`)."""
    lines = ['endpoint "sim" { tier = "local", url = "%s/v1", model = "peer", max_parallel = %d }'
             % (url, cap if cap > 0 else UNLIMITED), 'agent "a" {}']
    for x in nodes:
        prompt = "task " + x["id"] + "".join("\\ninput %s: {{%s}}" % (d, d) for d in x["deps"])
        prompt += "\\nREPLY: out-" + x["id"]
        deps = ", ".join('"%s"' % d for d in x["deps"])
        lines.append('task "%s" { agent = "a", deps = { %s }, prompt = "%s" }' % (x["id"], deps, prompt))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- processes
class Bench:
    def __init__(self, args):
        self.args = args
        self.sim = None
        self.child = None  # the rusage wrapper of the run in progress
        self.url = None
        self.dirs = []

    def cleanup(self):
        if self.child and self.child.poll() is None:
            self.child.kill()  # and the command with it (PR_SET_PDEATHSIG)
            self.child.wait()
        if self.sim and self.sim.poll() is None:
            self.sim.terminate()
            try:
                self.sim.wait(5)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)

    def mkdtemp(self, parent):
        d = tempfile.mkdtemp(prefix="flowrun-peer-", dir=parent)
        self.dirs.append(d)
        return d

    def start_sim(self):
        cmd = [os.path.join(self.args.build, "flowrun-sim"), "--port", "0", "--tps", "0",
               "--model", "peer:latency=%g" % self.args.latency]
        self.sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self.sim.stdout], [], [], 20)
        line = self.sim.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://"):
            sys.exit("peer.sh: flowrun-sim printed no URL within 20 s (%r)" % line)
        self.url = line

    def sim_call(self, method, path):
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def measure(self, cmd, cwd, env, out_path):
        """Runs `cmd` under the rusage wrapper (bounded by --timeout) and returns its wall time,
        CPU, peak RSS and the time from its start to the first request reaching the simulator."""
        self.sim_call("POST", "/sim/reset")
        ru_path = out_path + ".rusage"
        with open(out_path, "wb") as out, open(out_path + ".err", "wb") as err:
            t0 = time.time()
            p = subprocess.Popen([self.args.rusage, ru_path] + cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL)
            self.child = p
            try:
                p.wait(self.args.timeout)
            except subprocess.TimeoutExpired:
                p.kill()  # the wrapper's death kills the command (PR_SET_PDEATHSIG)
                p.wait()
            wall = time.time() - t0
        stats = self.sim_call("GET", "/sim/stats")
        first = stats.get("first_request_unix_us", 0)
        requests = sum(m["requests"] for m in stats["models"].values())
        if p.returncode != 0:
            tail = open(out_path + ".err", "rb").read()[-600:].decode(errors="replace")
            raise RuntimeError("%s exited %d after %.1f s%s\n%s" % (
                " ".join(os.path.basename(c) for c in cmd[:2]), p.returncode, wall,
                " (killed at the %d s timeout)" % self.args.timeout if wall >= self.args.timeout else "", tail))
        user, sys_, rss_kb = open(ru_path).read().split()
        return {"wall_ms": wall * 1000, "cpu_s": float(user) + float(sys_), "user_s": float(user),
                "sys_s": float(sys_), "rss_mb": int(rss_kb) / 1024, "requests": requests,
                "first_request_ms": (first / 1e6 - t0) * 1000 if first else None}

    def run_flowrun(self, shape, wf, base):
        # Each run's folder stays until the bench ends (Bench.cleanup removes `base`): on ext4, a file
        # created while thousands were deleted moments before costs up to 0.6 ms more system time
        # (the inode allocator steps over each recently deleted inode of its group), so deleting a
        # run's outputs here would charge the next run for them.
        cwd = tempfile.mkdtemp(prefix="run-", dir=base)
        env = {k: v for k, v in os.environ.items() if k not in ("FLOWRUN_STATE", "FLOWRUN_LUA_DIR")}
        env["XDG_CONFIG_HOME"] = os.path.join(base, "xdg")  # no user endpoints file joins in
        r = self.measure([os.path.join(self.args.build, "flowrun"), wf, "--json", "-q"], cwd, env,
                         os.path.join(base, "report.json"))
        rep = json.load(open(os.path.join(base, "report.json")))
        bad = [t["name"] for t in rep["tasks"] if t["status"] != "ok"]
        outs = [f for d in os.listdir(os.path.join(cwd, ".flowrun", "out"))
                for f in os.listdir(os.path.join(cwd, ".flowrun", "out", d))]
        if rep["status"] != "ok" or bad or len(rep["tasks"]) != shape["info"]["nodes"]:
            raise RuntimeError("flowrun: status %s, %d tasks, not ok: %s" % (
                rep["status"], len(rep["tasks"]), bad[:5]))
        if len(outs) != shape["info"]["nodes"] or r["requests"] != shape["info"]["nodes"]:
            raise RuntimeError("flowrun: %d outputs and %d requests for %d tasks" % (
                len(outs), r["requests"], shape["info"]["nodes"]))
        r["makespan_ms"] = rep["makespan_ms"]
        return r

    def run_floor(self, shape, base):
        """The CPU of creating the shape's output files alone in a new folder under `base`
        (files_floor.c): the part of a run's CPU per task the filesystem takes, whatever the
        engine. The folder stays, as a run's does."""
        d = os.path.join(tempfile.mkdtemp(prefix="floor-", dir=base), "out")
        line = subprocess.run([self.args.files_floor, d, str(shape["info"]["nodes"])], check=True,
                              capture_output=True, text=True, timeout=self.args.timeout).stdout
        user, sys_ = map(float, line.split())
        return {"cpu_s": user + sys_, "user_s": user, "sys_s": sys_}

    def run_peer(self, shape, base):
        cmd = [sys.executable, self.args.peer, "--server", self.url, "--model", "peer",
               "--dag", json.dumps(shape["dag"]), "--cap", str(shape["cap"]),
               "--latency", "%g" % self.args.latency, "--json"]
        r = self.measure(cmd, base, dict(os.environ), os.path.join(base, "peer.json"))
        rep = json.loads(open(os.path.join(base, "peer.json")).read().strip().splitlines()[-1])
        if rep["errors"] or rep["dag_sha"] != shape["info"]["sha"] or r["requests"] != shape["info"]["nodes"]:
            raise RuntimeError("peer: %d errors, dag %s (mirror %s), %d requests" % (
                rep["errors"], rep["dag_sha"], shape["info"]["sha"], r["requests"]))
        r["makespan_ms"] = rep["makespan_ms"]
        return r


# ----------------------------------------------------------------- shapes and the table
def shapes(quick):
    f = lambda n: {"shape": "fanout", "n": n}
    if quick:
        return [("fanout-200 cap 10", f(200), 10), ("fanout-1000 cap 100", f(1000), 100),
                ("fanout-1000 unlimited", f(1000), 0), ("fanout-2000 unlimited", f(2000), 0),
                ("chain-40", {"shape": "chain", "n": 40}, 0),
                ("layered-1000 cap 64", {"shape": "layered", "n": 1000, "layers": 20, "max_deps": 3, "seed": 42}, 64)]
    return [("fanout-1000 cap 10", f(1000), 10), ("fanout-1000 cap 100", f(1000), 100),
            ("fanout-1000 unlimited", f(1000), 0), ("fanout-10000 unlimited", f(10000), 0),
            ("chain-200", {"shape": "chain", "n": 200}, 0),
            ("layered-5000 cap 64", {"shape": "layered", "n": 5000, "layers": 50, "max_deps": 3, "seed": 42}, 64)]


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec, width):
    return (spec % v if v is not None else "-").rjust(width)


def ratio(a, b):
    return a / b if a is not None and b else None


def table(results, variant, title, out):
    """One row per shape: flowrun (`variant`: disk or tmpfs) against the peer, and disk / tmpfs."""
    print("\n" + title, file=out)
    head = ("%-23s %9s %9s %6s %8s %8s %6s %13s %11s %8s %8s" % (
        "shape", "flowrun", "peer", "ratio", "fr cpu", "peer cpu", "ratio", "rss fr/peer", "eff fr/peer",
        "disk/tmp", "disk/tmp"))
    print(head, file=out)
    print("%-23s %9s %9s %6s %8s %8s %6s %13s %11s %8s %8s" % (
        "", "makespan", "makespan", "", "us/task", "us/task", "", "MB", "", "makespan", "cpu"), file=out)
    for name, res in results:
        n = res["info"]["nodes"]
        fr, peer, tmp = res[variant], res["peer"], res.get("tmpfs", [])
        fm, pm = med(fr, "makespan_ms"), med(peer, "makespan_ms")
        fc = med(fr, "cpu_s") * 1e6 / n if fr else None
        pc = med(peer, "cpu_s") * 1e6 / n if peer else None
        bound = res["bound_ms"]
        disk = res.get("disk", [])
        print("%-23s %9s %9s %6s %8s %8s %6s %6s/%-6s %5s/%-5s %8s %8s" % (
            name, fmt(fm, "%.0f", 9), fmt(pm, "%.0f", 9), fmt(ratio(fm, pm), "%.2f", 6),
            fmt(fc, "%.0f", 8), fmt(pc, "%.0f", 8), fmt(ratio(fc, pc), "%.2f", 6),
            fmt(med(fr, "rss_mb"), "%.0f", 6), fmt(med(peer, "rss_mb"), "%.0f", 0).ljust(6),
            fmt(ratio(bound, fm), "%.2f", 5), fmt(ratio(bound, pm), "%.2f", 0).ljust(5),
            fmt(ratio(med(disk, "makespan_ms"), med(tmp, "makespan_ms")), "%.2f", 8),
            fmt(ratio(med(disk, "cpu_s"), med(tmp, "cpu_s")), "%.2f", 8)), file=out)


def write_workflow_main(argv):
    """peer_run.py --write-workflow DAG_JSON CAP URL FILE: writes the DAG as a workflow (load.sh)."""
    dag, cap, url, path = argv
    with open(path, "w") as f:
        f.write(workflow_lua(build_dag(json.loads(dag)), url, int(cap)))
    return 0


def main():
    if sys.argv[1:2] == ["--write-workflow"]:
        return write_workflow_main(sys.argv[2:])
    if sys.argv[1:2] == ["--dag-info"]:  # peer_run.py --dag-info DAG_JSON...: nodes, critical path, sha
        for dag in sys.argv[2:]:
            print(json.dumps(analyze(build_dag(json.loads(dag)))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--rusage", required=True, help="the tests/bench/rusage.c wrapper, compiled")
    ap.add_argument("--files-floor", required=True, help="the tests/bench/files_floor.c program, compiled")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency", type=float, default=50)
    ap.add_argument("--timeout", type=int, default=300, help="seconds each process may take")
    ap.add_argument("--only", default="", help="run only the shapes whose name contains this")
    ap.add_argument("--disk", default="", help="folder on the machine's disk (default: the build dir)")
    ap.add_argument("--no-tmpfs", action="store_true")
    ap.add_argument("--json-out", default="", help="write every run's figures and the medians here")
    args = ap.parse_args()
    args.build = os.path.realpath(args.build)
    b = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 10,000 connections for both
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        bases = {"disk": b.mkdtemp(args.disk or args.build)}
        if not args.no_tmpfs and os.path.isdir("/dev/shm"):
            bases["tmpfs"] = b.mkdtemp("/dev/shm")
        for base in bases.values():
            os.mkdir(os.path.join(base, "xdg"))
        b.start_sim()
        work = bases["disk"]
        results = []
        for name, dag, cap in shapes(args.quick):
            if args.only and args.only not in name:
                continue
            nodes = build_dag(dag)
            info = analyze(nodes)
            wf = os.path.join(work, name.replace(" ", "-") + ".lua")
            with open(wf, "w") as f:
                f.write(workflow_lua(nodes, b.url, cap))
            res = {"info": info, "dag": dag, "cap": cap, "bound_ms": lower_bound(info, args.latency, cap),
                   "peer": [], **{k: [] for k in bases}, **{"files " + k: [] for k in bases}}
            shape = {"info": info, "dag": dag, "cap": cap}
            for rep in range(args.reps):
                for variant in ["disk", "peer", "tmpfs"]:
                    if variant != "peer" and variant not in bases:
                        continue
                    r = (b.run_peer(shape, work) if variant == "peer"
                         else b.run_flowrun(shape, wf, bases[variant]))
                    res[variant].append(r)
                    print("%-23s rep %d %-5s makespan %7.0f ms  wall %7.0f ms  cpu %6.3f s (sys %5.3f)  rss %5.0f MB  "
                          "first request %s ms" % (name, rep + 1, variant, r["makespan_ms"], r["wall_ms"],
                                                  r["cpu_s"], r["sys_s"], r["rss_mb"],
                                                  fmt(r["first_request_ms"], "%.0f", 0)),
                          file=sys.stderr, flush=True)
                for variant in bases:
                    f = b.run_floor(shape, bases[variant])
                    res["files " + variant].append(f)
                    print("%-23s rep %d files %-5s cpu %6.3f s (sys %5.3f): the output files alone" % (
                        name, rep + 1, variant, f["cpu_s"], f["sys_s"]), file=sys.stderr, flush=True)
            results.append((name, res))
        print("\nflowrun beside the asyncio peer: %d rep(s), medians, latency %g ms, %d cores, load %s" % (
            args.reps, args.latency, os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3])))
        table(results, "disk", "flowrun's state and outputs on disk (the default ./.flowrun/), ratios flowrun / peer", sys.stdout)
        if "tmpfs" in bases:
            table(results, "tmpfs", "flowrun's state and outputs on tmpfs (/dev/shm)", sys.stdout)
        print("\nthe output files alone (files_floor.c: open, write, close of one file per task in a new"
              " folder),\nCPU per task (the least of the reps, us) on disk / tmpfs, and as a share of the peer's CPU per task")
        for name, res in results:
            n = res["info"]["nodes"]
            # The least of the reps: a folder that lands where thousands of files were deleted
            # in the last minutes (another bench's cleanup) costs up to 30 times more.
            fd, ft = (min((f["cpu_s"] for f in res.get("files " + v, [])), default=None)
                      for v in ("disk", "tmpfs"))
            pc = med(res["peer"], "cpu_s")
            print("  %-23s %s / %s us, %s / %s of the peer's" % (
                name, fmt(fd and fd * 1e6 / n, "%.1f", 0), fmt(ft and ft * 1e6 / n, "%.1f", 0),
                fmt(ratio(fd, pc), "%.2f", 0), fmt(ratio(ft, pc), "%.2f", 0)))
        print("\nfirst request on the wire, from process start (median ms): flowrun disk / tmpfs / peer")
        for name, res in results:
            print("  %-23s %s / %s / %s" % (name, fmt(med(res["disk"], "first_request_ms"), "%.0f", 0),
                                            fmt(med(res.get("tmpfs", []), "first_request_ms"), "%.0f", 0),
                                            fmt(med(res["peer"], "first_request_ms"), "%.0f", 0)))
        print("\nwall time of the process (median ms): flowrun disk / tmpfs / peer")
        for name, res in results:
            print("  %-23s %s / %s / %s" % (name, fmt(med(res["disk"], "wall_ms"), "%.0f", 0),
                                            fmt(med(res.get("tmpfs", []), "wall_ms"), "%.0f", 0),
                                            fmt(med(res["peer"], "wall_ms"), "%.0f", 0)))
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"reps": args.reps, "latency_ms": args.latency, "quick": args.quick,
                           "results": {n: r for n, r in results}}, f, indent=1)
    except RuntimeError as e:
        print("peer.sh: %s" % e, file=sys.stderr)
        return 1
    finally:
        b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
