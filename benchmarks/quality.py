"""Quality protocol: does mutask match a fine-tuned copy per task, at a fraction of its
parameters, with no forgetting, against baselines trained to convergence?

One converged root (mu-tiny ViT, Fashion-MNIST, 28 px) is shared by every method and
published as mutask's root. Five 28×28 tasks (quality_suite.py) are learnt by: ``finetune``
(a full copy per task), ``head`` (frozen root + new head), ``adapters`` (frozen root +
adapters + head), ``scratch`` (a new ViT per task), ``sequential`` (one copy fine-tuned over
the tasks in order; its forgetting is reported), each at its native resolution, trained to
convergence (early stop on validation, epoch cap) at the learning rate that seed 0 chose on
validation from a grid; and by mutask with every default (``mutask``), plus variants:
``mutask-even`` (plain µ2Net's even split at the same budget: no successive halving, no final
phase), ``mutask-s0.9`` and ``mutask-s0.95`` (the paper's size penalty, s = 0.9 / 0.95),
``mutask-s0.95-n8`` (s = 0.95 with 8-step rounds: fewer examples), ``mutask-k4-e14`` and
``mutask-s0.95-k4-e14`` (4 candidates, 14 epochs: rounds off the 10-step floor),
``mutask-quick`` and ``mutask-thorough`` (the other ``--budget`` presets), mutask
bootstrapping its own root (``mutask-own-root``: what a new user gets end to end), and every
default on that same root (``mutask-on-own-root``; ``--baselines-root mutask-own-root``
trains the baselines from it too, for a comparison on one root). The mutask variants run seed-major
(every variant's seed 0 first), so a run cut short still compares them.
mutask's examples count every candidate's training examples; the root's are shared by all
methods and reported apart. Every finished run is cached (``--cache``), so a killed run
resumes and a re-run reads the cache; delete ``<cache>/<protocol>/mutask`` to re-run mutask
alone. Prints tables, writes plots, and prints the headline ratio last.

    python benchmarks/quality.py                 # the protocol (hours on one core)
    python benchmarks/quality.py --only none     # tables and plots from the cache alone
    python benchmarks/quality.py --quick         # smoke run, a few minutes
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import quality_mutask as qm
import quality_suite as qs
import torch
from quality_cache import DEFAULT_CACHE, Cache
from quality_methods import Baselines, NotCached, root
from quality_report import aggregate, halving_table, headline, plot_root, plots, tables
from quality_runs import (
    DEFAULTS,
    ON_OWN_ROOT,
    OWN_ROOT,
    Variant,
    base_budget,
    own_root_model,
    run,
)

MUTASK_VARIANTS = (
    DEFAULTS,
    # plain µ2Net's even split (no successive halving, no final phase) at the same budget
    Variant("mutask-even", budget={"halving": False, "final_training": False}),
    # the size penalty of the paper's "size scale" runs: score = quality * 0.9**(params/P_root)
    Variant("mutask-s0.9", search={"size_scale": 0.9}),
    # a milder penalty (the spec's s = 0.95), and the same with 8-step rounds (fewer examples)
    Variant("mutask-s0.95", search={"size_scale": 0.95}),
    Variant("mutask-s0.95-n8", budget={"steps_per_round": 8}, search={"size_scale": 0.95}),
    # fewer candidates, a budget in epochs large enough to lift every task off the round floor
    Variant("mutask-k4-e14", budget={"candidates": 4, "epochs": 14.0}),
    Variant(
        "mutask-s0.95-k4-e14",
        budget={"candidates": 4, "epochs": 14.0},
        search={"size_scale": 0.95},
    ),
    Variant("mutask-quick", budget=qm.preset_budget("quick")),
    Variant("mutask-thorough", budget=qm.preset_budget("thorough")),
    OWN_ROOT,
    ON_OWN_ROOT,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and budgets (smoke test)")
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per method (default: 3; --quick: 1)"
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="finished runs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/quality"), help="tables, plots")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--only",
        choices=("all", "baselines", "mutask", "none"),
        default="all",
        help="train only one side (none: report the cache alone); the rest is reported from "
        "the cache where it is there",
    )
    p.add_argument(
        "--methods",
        default=",".join(qs.METHODS),
        help="baselines to train (comma-separated); the others are reported from the cache",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="mutask candidates trained at once (results are identical for any value; 1 "
        "keeps wall times comparable with the one-core baselines)",
    )
    p.add_argument(
        "--variants",
        default=",".join(v.label for v in MUTASK_VARIANTS),
        help="mutask variants to run (comma-separated; the others are reported from the cache)",
    )
    p.add_argument(
        "--mutask-seeds",
        type=int,
        default=None,
        help="seeds per mutask variant (default: --seeds)",
    )
    p.add_argument(
        "--task-max-epochs",
        type=int,
        default=None,
        help="the baselines' epoch cap per task (default: the protocol's, 10); another cap is "
        "a convergence check: its baselines are cached apart, mutask's runs are shared",
    )
    p.add_argument(
        "--baselines-root",
        choices=("protocol", "mutask-own-root"),
        default="protocol",
        help="the root the baselines start from: the protocol's, or the one mutask bootstrapped "
        "itself in mutask-own-root's seed 0 (run that first; its baselines are cached apart)",
    )
    p.add_argument(
        "--own-root-seed",
        type=int,
        default=0,
        help="with --baselines-root mutask-own-root: the mutask-own-root seed whose root the "
        "baselines start from (mutask-on-own-root always uses seed 0's)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def own_root_line(
    baselines_root: str, proto: qs.Protocol, cache: Cache, seed: int = 0
) -> list[str]:
    """The report's line on the baselines' root when it is mutask's own (else nothing)."""
    if baselines_root == "protocol":
        return []
    key = OWN_ROOT.key(proto, base_budget(proto))
    info = cache.load("mutask", key, f"seed{seed}", "root.json")
    assert info is not None, "--baselines-root mutask-own-root: run mutask-own-root first"
    return [
        "**Baselines' root in this report**: the root mutask bootstrapped itself "
        f"(mutask-own-root, seed {seed}; `mutask bootstrap` defaults): test "
        f"{info['test_accuracy']:.4f} on Fashion-MNIST, {info['examples']:,} examples, "
        f"{info['seconds']:.0f} s; mutask-on-own-root starts from the same root."
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:7.0f} s] {msg}", flush=True)

    proto = qs.quick() if args.quick else qs.full()
    if args.task_max_epochs is not None:
        proto = replace(proto, task=replace(proto.task, max_epochs=args.task_max_epochs))
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    base = Cache(args.cache)
    cache = Cache(args.cache / proto.key())
    root_model, root_info = root(proto, base, log)

    def weights(size: int) -> Path:
        p = proto.at_size(size)
        root(p, base, log)
        return base.path(p.root_key(), f"{p.root_final()}.safetensors")

    seeds = range(args.seeds)
    rows: list[dict[str, Any]] = []
    shared: dict[str, int] = {}
    chosen = set(args.methods.split(","))
    unknown = sorted(chosen - set(qs.METHODS))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown} (known: {', '.join(qs.METHODS)})")
    bcache, broot = cache, root_model
    if args.baselines_root == "mutask-own-root":  # the root of a mutask-own-root seed
        broot = own_root_model(proto, cache, args.own_root_seed)
        bcache = Cache(cache.path(f"baselines-on-mutask-own-root-seed{args.own_root_seed}"))
    train = Baselines(proto, bcache, broot, log, train=args.only in ("all", "baselines"))
    cached = Baselines(proto, bcache, broot, log, train=False)
    for method in qs.METHODS:
        baselines = train if method in chosen else cached
        shared[method] = baselines.shared_params(method)
        for seed in seeds:
            try:
                recs = baselines.method(method, seed)
            except NotCached:
                continue
            for rec in recs:
                choice = baselines.choice(method, rec["task"])
                search = int(rec["examples"]) + int(choice["pilot_examples"])
                rows.append({**rec, "acc_own": rec["test"], "search_examples": search})
    wanted = set(args.variants.split(","))
    unknown = sorted(wanted - {v.label for v in MUTASK_VARIANTS})
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}")
    mutask_seeds = range(args.seeds if args.mutask_seeds is None else args.mutask_seeds)
    for seed in mutask_seeds:  # seed-major: a cut-short run still has every variant's seed 0
        for variant in MUTASK_VARIANTS:
            train = args.only in ("all", "mutask") and variant.label in wanted
            summary = run(variant, proto, seed, cache, weights, log, args.workers, train)
            if summary is not None:
                for task, rec in summary["tasks"].items():
                    rows.append(
                        {
                            "method": variant.label,
                            "task": task,
                            "seed": seed,
                            "acc_own": rec["test_accuracy"],
                            "acc_final": rec["acc_final"],
                            "examples": rec["examples"],
                            "seconds": rec["seconds"],
                            "task_params": rec["params_added"],
                            "serve_params": summary["serve_params"],
                            "val": rec["validation_accuracy"],
                            "search_val": rec.get("search_validation_accuracy"),
                            "search_steps": (rec["examples"] - rec.get("final_examples", 0))
                            // int(summary["budget"]["batch_size"]),
                        }
                    )
    tasks = list(proto.tasks)
    agg = aggregate(rows, shared)
    lines = [
        f"Protocol {proto.key()}: tasks {', '.join(tasks)}; {args.seeds} seed(s) per baseline, "
        f"{len(mutask_seeds)} per mutask variant (a method lists the seeds it has); "
        f"mu-tiny at {proto.image_size} px; baselines capped at {proto.task.max_epochs} "
        f"epochs; CPU, {args.threads} thread(s).",
        f"Protocol root (the baselines' root and mutask's except where a variant says "
        f"otherwise): Fashion-MNIST, lr {root_info['lr']:g} chosen from "
        f"{root_info['pilots']} ({proto.root_pilot_epochs}-epoch pilots), "
        f"{root_info['epochs']} epochs (best {root_info['best_epoch']}, cap "
        f"{proto.root.max_epochs}), val {root_info['val']:.4f}, test {root_info['test']:.4f}, "
        f"{root_info['examples']:,} examples (+{root_info['pilot_examples']:,} in pilots).",
        *own_root_line(args.baselines_root, proto, cache, args.own_root_seed),
        "Cells: test accuracy after all five tasks, mean ± std over seeds.",
        "",
        *tables(agg, tasks),
    ]
    lines += [
        "",
        f"Learning rates chosen on validation (seed 0, {proto.task_pilot_epochs}-epoch pilots of "
        "the real schedule; rate: best validation accuracy):",
        "",
    ]
    for method in qs.METHODS:
        for task in tasks:
            try:
                c = cached.choice(method, task)
            except NotCached:
                continue
            grid = ", ".join(
                f"{k}: {v:.3f}" for k, v in sorted(c["grid"].items(), key=lambda kv: float(kv[0]))
            )
            lines.append(f"- {method} / {task}: **{c['lr']:g}** ({grid})")
    lines += ["", *halving_table(rows, tasks)]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality_table.md").write_text(table + "\n")
    (args.out / "quality_rows.json").write_text(json.dumps(rows, indent=1, default=str))
    plots(agg, tasks, args.out)
    plot_root({f"{proto.image_size} px (the protocol's root)": root_info}, args.out)
    mutask_forgetting = [r["acc_own"] - r["acc_final"] for r in rows if r["method"] == "mutask"]
    assert all(f == 0.0 for f in mutask_forgetting), "mutask forgetting must be exactly 0"
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    # the headline compares methods on one root: the protocol's, or mutask's own
    head = "mutask" if args.baselines_root == "protocol" else ON_OWN_ROOT.label
    if args.baselines_root != "protocol" and args.own_root_seed != 0:
        print(
            f"headline: not computed (mutask-on-own-root starts from seed 0's root; compare "
            f"mutask-own-root's seed {args.own_root_seed} with the fine-tune above)"
        )
    elif agg.get(head, {}).get("seeds") and agg.get("finetune", {}).get("seeds"):
        print(headline(agg, head))
    else:
        print("headline: not available (fine-tune or mutask missing from the cache)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
