"""Soak: the API at a fixed rate of mixed requests for minutes, the champion swapped every minute.

    python bench/soak.py [--duration 600] [--rate 200] [--swap-every 60] [--workers 2]
                         [--accounts 300] [--years 3] [--seed 7] [--fresh]

1. Simulates a world, ingests it, trains one model and registers it twice (versions 1 and 2:
   the same bundle, so a swap changes which version answers, not the figures), makes version 1
   champion and scores every account; all under ``bench/out/soak/``, reused by later runs with
   the same arguments (``--fresh`` rebuilds).
2. Starts the API (``kam.serving.api.server.run``, ``--workers`` processes, keys on) and, once
   every worker has loaded, sends ``--rate`` requests a second for ``--duration`` seconds,
   open loop (a request's latency counts from the moment it was due): 70% ``GET
   /v1/accounts/{id}``, 10% ``GET /v1/at-risk``, 20% ``POST /v1/score`` (real feature rows).
3. Every ``--swap-every`` seconds moves the ``champion`` alias to the other version and calls
   ``POST /v1/admin/reload``; the other worker follows within about a second.
4. Prints, per minute: requests, failures (any status but 200, or no answer), p50 and p99 in
   ms, and the champion's version; the requests due but not sent by the end (all senders
   busy: the server, or the client, could not keep the rate); then the workers' resident
   memory after the first minute and at the end, and its growth. Writes the figures to
   ``bench/out/soak.json``.

Bars: zero failed requests; worker memory growth under 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
NAME = "kam-soak"
USER_KEY = "soak-user-key-0123456789abcdef"
ADMIN_KEY = "soak-admin-key-0123456789abcdef"
MIX = (("account", 0.7), ("at_risk", 0.1), ("score", 0.2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--swap-every", type=float, default=60.0, help="seconds between swaps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--fresh", action="store_true", help="re-simulate and retrain")
    args = parser.parse_args()
    world = OUT / "soak" / f"{args.accounts}x{args.years}-{args.seed}"
    if args.fresh and world.exists():
        import shutil

        shutil.rmtree(world)
    requests = _prepare(world, args)
    server, port = _start(world, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        pids = _wait_workers(base, args.workers, server)
        result = asyncio.run(_soak(base, requests, pids, world, args))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    _report(result, args)


# ------------------------------------------------------------------------------------------------
# The world
# ------------------------------------------------------------------------------------------------
def _prepare(world: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build the world once; returns the account ids and feature rows to send."""
    cached = world / "requests.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    import mlflow
    from mlflow import MlflowClient

    from kam.features.ingest import ingest
    from kam.features.snapshots import build_snapshots, data_end
    from kam.features.store import connect
    from kam.features.synthetic import simulate
    from kam.models.registry import alias_uri, load_model
    from kam.serving.scoring.batch import label_settings, score_accounts
    from kam.serving.store import write_scores
    from kam.training.run import TrainRequest, train_candidate

    data = world / "data"
    simulate(args.accounts, args.years, args.seed, data)
    store = f"duckdb:///{data / 'kam.duckdb'}"
    ingest(data, store)
    tracking = f"sqlite:///{world / 'mlflow.db'}"
    outcome = train_candidate(TrainRequest(
        store_url=store, tracking_uri=tracking, experiment="soak", model_name=NAME,
        artifact_location=(world / "artifacts").as_uri(),
    ))
    mlflow.set_tracking_uri(tracking)
    mlflow.register_model(f"runs:/{outcome.run_id}/scoring_bundle", NAME)  # version 2
    MlflowClient(tracking, registry_uri=tracking).set_registered_model_alias(NAME, "champion", "1")
    model = load_model(alias_uri(NAME), tracking)
    con = connect(store)
    scores = score_accounts(con, model)
    write_scores(con, scores)
    horizon, window, decline = label_settings(model.metadata)
    snapshot = build_snapshots(
        con, [data_end(con)], horizon=horizon, activity_window=window, decline=decline
    )
    con.disconnect()
    spec = model.scorer.spec
    rows = []
    for _, row in snapshot.head(200).iterrows():
        features = {}
        for name in spec.names:
            value = row[name]
            if value is None or value != value:  # missing: left out, as a CRM would
                continue
            features[name] = str(value) if name in spec.categories else float(value)
        rows.append({"features": features})
    found = {
        "tracking": tracking,
        "store": store,
        "ids": scores["account_id"].astype(str).tolist(),
        "rows": rows,
    }
    cached.write_text(json.dumps(found))
    return found


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------
def _start(world: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    requests = json.loads((world / "requests.json").read_text())
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KAM_WORKDIR": str(world),
        "KAM_TRACKING_URI": requests["tracking"],
        "KAM_STORE_URL": requests["store"],
        "KAM_MODEL_NAME": NAME,
        "KAM_API_KEYS": USER_KEY,
        "KAM_ADMIN_API_KEYS": ADMIN_KEY,
        "KAM_PORT": str(port),
        "KAM_WORKERS": str(workers),
        "KAM_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "from kam.serving.api.server import run; run()"],
        env=env, cwd=ROOT, start_new_session=True,
    )
    return server, port


def _worker_pids(base: str) -> set[int]:
    import httpx

    try:
        text = httpx.get(f"{base}/metrics", timeout=10).text
    except httpx.TransportError:
        return set()
    return {
        int(line.split('pid="', 1)[1].split('"', 1)[0])
        for line in text.splitlines()
        if line.startswith("kam_model_loaded{") and line.endswith(" 1.0")
    }


def _wait_workers(base: str, workers: int, server: subprocess.Popen[bytes]) -> set[int]:
    deadline = time.monotonic() + 300
    while len(pids := _worker_pids(base)) < workers:
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the API did not start its workers")
        time.sleep(0.5)
    return pids


def _rss_mb(pids: set[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kb = next(int(line.split()[1]) for line in status.splitlines()
                  if line.startswith("VmRSS:"))
        found[pid] = kb / 1024
    return found


# ------------------------------------------------------------------------------------------------
# The load
# ------------------------------------------------------------------------------------------------
async def _soak(
    base: str, requests: dict[str, Any], pids: set[int], world: Path, args: argparse.Namespace
) -> dict[str, Any]:
    import httpx

    rng = random.Random(args.seed)
    ids, rows = requests["ids"], requests["rows"]
    limits = httpx.Limits(max_connections=args.connections,
                          max_keepalive_connections=args.connections)
    samples: list[tuple[float, float, str, int | str]] = []  # (due, latency, kind, status)
    swaps: list[tuple[float, str, int | str]] = []
    started = time.monotonic()
    memory: dict[str, dict[int, float]] = {}
    trace: list[tuple[float, dict[int, float]]] = []  # (seconds into the run, RSS by worker)

    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": USER_KEY},
                                 limits=limits, timeout=30) as client:

        async def one(due: float, kind: str) -> None:
            try:
                if kind == "account":
                    answer = await client.get(f"/v1/accounts/{rng.choice(ids)}")
                elif kind == "at_risk":
                    answer = await client.get("/v1/at-risk?limit=50")
                else:
                    answer = await client.post("/v1/score", json=rng.choice(rows))
                status: int | str = answer.status_code
            except httpx.HTTPError as err:
                status = type(err).__name__
            samples.append((due - started, time.monotonic() - due, kind, status))

        async def swapper() -> None:
            from mlflow import MlflowClient

            registry = MlflowClient(requests["tracking"], registry_uri=requests["tracking"])
            version = "1"
            while True:
                await asyncio.sleep(args.swap_every)
                if time.monotonic() - started >= args.duration:
                    return
                version = "2" if version == "1" else "1"
                await asyncio.to_thread(
                    registry.set_registered_model_alias, NAME, "champion", version
                )
                try:
                    answer = await client.post("/v1/admin/reload",
                                               headers={"X-API-Key": ADMIN_KEY}, timeout=120)
                    swaps.append((time.monotonic() - started, version, answer.status_code))
                except httpx.HTTPError as err:
                    swaps.append((time.monotonic() - started, version, type(err).__name__))

        async def sampler() -> None:
            await asyncio.sleep(min(60.0, args.duration / 2))
            memory["start"] = _rss_mb(pids)
            # then every 10 s: growth that levels off (the allocator's warm-up) reads
            # differently from growth with every swap (something kept per reload)
            while time.monotonic() - started < args.duration:
                await asyncio.sleep(10.0)
                trace.append((time.monotonic() - started, _rss_mb(pids)))

        swapping = asyncio.create_task(swapper())
        sampling = asyncio.create_task(sampler())
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        total = int(args.duration * args.rate)
        counter = iter(range(total))

        async def sender() -> None:
            # A fixed set of senders takes the schedule's requests in turn: a request sent late
            # (every sender busy) still counts its latency from when it was due, and the client
            # never holds thousands of pending requests (which cost it more than the server).
            for n in counter:
                due = started + n / args.rate
                if time.monotonic() - started > args.duration:
                    return  # the run is over: what is still due is counted as not sent
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await one(due, rng.choices(kinds, weights)[0])

        await asyncio.gather(*(sender() for _ in range(args.connections)))
        not_sent = total - len(samples)
        swapping.cancel()
        sampling.cancel()
        memory["end"] = _rss_mb(pids)
    return {"samples": samples, "swaps": swaps, "memory": memory, "not_sent": not_sent,
            "trace": trace}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(result: dict[str, Any], args: argparse.Namespace) -> None:
    samples = result["samples"]
    # by the minute a request was answered (when the run falls behind its schedule, the due
    # times of everything sent crowd into the first minutes)
    samples = [(due + latency, latency, kind, status) for due, latency, kind, status in samples]
    minutes = int(max(s[0] for s in samples) // 60) + 1
    rows = []
    trace = result.get("trace", [])
    print(f"{'minute':>6} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'swap':>12}  workers' MB at the minute's end")
    for minute in range(minutes):
        mine = [s for s in samples if minute * 60 <= s[0] < (minute + 1) * 60]
        latencies = [s[1] * 1000 for s in mine]
        failed = sum(1 for s in mine if s[3] != 200)
        swap = [f"v{v}:{st}" for t, v, st in result["swaps"]
                if minute * 60 <= t < (minute + 1) * 60]
        row = {
            "minute": minute + 1,
            "requests": len(mine),
            "failed": failed,
            "p50_ms": round(_percentile(latencies, 0.5), 2),
            "p99_ms": round(_percentile(latencies, 0.99), 2),
            "swaps": swap,
            "rss_mb": next((rss for t, rss in reversed(trace) if t < (minute + 1) * 60), {}),
        }
        rows.append(row)
        rss = " ".join(f"{mb:.0f}" for _, mb in sorted(row["rss_mb"].items()))
        print(f"{row['minute']:>6} {row['requests']:>9,} {failed:>7} {row['p50_ms']:>8.1f} "
              f"{row['p99_ms']:>8.1f} {' '.join(swap):>12}  {rss}")
    start, end = result["memory"].get("start", {}), result["memory"].get("end", {})
    growth = {
        pid: (end[pid] - start[pid]) / start[pid] * 100 for pid in start if pid in end
    }
    failed = sum(1 for s in samples if s[3] != 200)
    statuses: dict[str, int] = {}
    for s in samples:
        if s[3] != 200:
            statuses[str(s[3])] = statuses.get(str(s[3]), 0) + 1
    latencies = [s[1] * 1000 for s in samples]
    print(f"total: {len(samples):,} requests ({len(samples) / args.duration:.1f}/s), "
          f"{result['not_sent']:,} due but not sent by the end, {failed} failed {statuses or ''}, "
          f"p99 {_percentile(latencies, 0.99):.1f} ms, "
          f"{len(result['swaps'])} swaps ({sum(1 for s in result['swaps'] if s[2] == 200)} ok)")
    for pid, value in growth.items():
        print(f"worker {pid}: {start[pid]:.0f} MB after the first minute, {end[pid]:.0f} MB at "
              f"the end: {value:+.1f}%")
    if len(growth) < len(start):
        print(f"{len(start) - len(growth)} worker(s) did not last the run")
    OUT.mkdir(exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps({
        "arguments": vars(args),
        "minutes": rows,
        "requests": len(samples),
        "not_sent": result["not_sent"],
        "failed": failed,
        "failed_by_status": statuses,
        "swaps": result["swaps"],
        "memory_mb": {"start": start, "end": end},
        "memory_growth_percent": growth,
        "memory_trace": trace,
    }, indent=1, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
