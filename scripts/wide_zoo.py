"""The wide zoo: count hundreds of real models and check each against FlopCounterMode.

Not part of the test run (it takes an hour or more). Each model runs in its own
forked subprocess with a timeout, so a hang or a crash costs that model only; the
parent imports torch and the model libraries once, before forking, and never runs
a tensor op itself. Results go to ``--json`` after every model, and a rerun skips
what that file already holds (``--redo`` reruns them).

Per model, on CPU: build it (no download), run one real forward under
FlopCounterMode (no_grad) for the reference total, then
``analyze(model, inputs, convention="torch")`` and ``analyze(model, inputs)``.
Status: ``exact`` (torch-convention total == the reference, no skipped op in
either analysis), ``skipped`` (totals agree, some op skipped), ``mismatch``,
``failed`` (an analysis raised), ``setup`` (the model failed to build or to run
for real: not flopgraph's doing), ``timeout``, ``crashed``. Where the no_grad
reference differs, FlopCounterMode runs again with grad enabled and the math
SDPA backend: the fused CPU attention kernels and nn.MultiheadAttention's
no_grad fast path count 0 under FlopCounterMode; ``reference`` says which
reference was compared. ``untouched`` checks the model after both analyses:
parameter and buffer identities, versions, dtypes, shapes, sums,
requires_grad, training flags and hook counts.

    python scripts/wide_zoo.py --json zoo.json                 # everything
    python scripts/wide_zoo.py --family timm --only resnet     # a subset
    python scripts/wide_zoo.py --json zoo.json --summary docs/wide-zoo-results.md
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import sys
import time
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from wide_zoo_catalog import FAMILIES, build, entries  # noqa: E402

import flopgraph  # noqa: E402

# ---------------------------------------------------------------------------- one model


def _first_line(e: BaseException) -> str:
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[0][:1000] if lines else ''}"


def reference(model: Any, args: tuple, kwargs: dict, math: bool) -> int:
    """FlopCounterMode's total for one real forward; ``math``: grad on, math SDPA."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    if math:
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            with FlopCounterMode(display=False) as fc:
                model(*args, **kwargs)
    else:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(*args, **kwargs)
    return int(fc.get_total_flops())


def _checksum(t: torch.Tensor) -> str:
    try:
        if t.is_quantized:
            t = t.int_repr()
        if t.device.type == "meta":
            return "meta"
        return repr(float(t.detach().double().sum()))
    except Exception as e:  # a tensor kind with no sum: compare what we can
        return type(e).__name__


def fingerprint(model: torch.nn.Module) -> Any:
    """A cheap picture of everything an analysis must leave alone."""
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    state = {
        n: (id(t), t._version, t.dtype, tuple(t.shape), t.requires_grad, _checksum(t))
        for n, t in tensors.items()
    }
    modules = [
        (n, m.training, len(m._forward_hooks), len(m._forward_pre_hooks),
         len(m._backward_hooks), len(getattr(m, "_forward_hooks_with_kwargs", {})))
        for n, m in model.named_modules(remove_duplicate=False)
    ]  # fmt: skip
    return state, modules


def _analysis(model: Any, args: tuple, kwargs: dict, convention: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = flopgraph.analyze(model, args, kwargs=kwargs, convention=convention)
    except Exception as e:
        return {"seconds": round(time.perf_counter() - start, 3), "error": _first_line(e),
                "error_type": type(e).__name__}  # fmt: skip
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "flops": rep.flops,
        "macs": rep.macs,
        "frontend": rep.frontend.name,
        "note": rep.frontend.note[:300],
        "real_run": rep.frontend.real_run,
        "skipped": {op: s.count for op, s in rep.skipped.items()},
    }


def built(key: str, threads: int) -> tuple[dict[str, Any], Any]:
    """The start of a job in a child: torch's threads and seed set, ``key`` built with
    warnings off. (row, (model, args, kwargs)), or (a ``setup`` row, None)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {"key": key}, build(key)
    except Exception as e:
        return {"key": key, "status": "setup", "error": _first_line(e)}, None


def run_one(key: str, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    row: dict[str, Any] = {"key": key}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, args, kwargs = build(key)
            row["build_s"] = round(time.perf_counter() - start, 3)
            t = time.perf_counter()
            try:
                row["ref_no_grad"] = reference(model, args, kwargs, math=False)
            except Exception as e:  # some forwards run only with grad on: try that first
                row["ref_no_grad"], row["ref_no_grad_error"] = None, _first_line(e)
                row["ref_math_grad"] = reference(model, args, kwargs, math=True)
            row["ref_s"] = round(time.perf_counter() - t, 3)
    except Exception as e:
        row.update(status="setup", error=_first_line(e))
        return row
    row["params"] = sum(p.numel() for p in model.parameters())
    before = fingerprint(model)
    row["torch"] = _analysis(model, args, kwargs, "torch")
    row["default"] = _analysis(model, args, kwargs, "default")
    row["untouched"] = fingerprint(model) == before
    row["reference"] = "no_grad" if row["ref_no_grad"] is not None else "math_grad"
    ref = row["ref_no_grad"] if row["ref_no_grad"] is not None else row["ref_math_grad"]
    got = row["torch"].get("flops")
    if got is not None and got != ref and row["reference"] == "no_grad":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["ref_math_grad"] = reference(model, args, kwargs, math=True)
            if row["ref_math_grad"] == got:
                row["reference"], ref = "math_grad", row["ref_math_grad"]
        except Exception as e:
            row["ref_math_grad_error"] = _first_line(e)
    row["status"] = _status(row, ref)
    return row


def _status(row: dict[str, Any], ref: int) -> str:
    t, d = row["torch"], row["default"]
    if "error" in t or "error" in d:
        return "failed"
    if t["flops"] != ref:
        return "mismatch"
    if t["skipped"] or d["skipped"]:
        return "skipped"
    return "exact"


def _child(key: str, threads: int, conn: Any, job: Callable[[str, int], dict[str, Any]]) -> None:
    try:
        row = job(key, threads)
    except BaseException as e:  # anything left is the harness's own bug: say so
        row = {"key": key, "status": "crashed", "error": _first_line(e),
               "trace": traceback.format_exc()[-2000:]}  # fmt: skip
    conn.send(row)
    conn.close()


def run_isolated(
    key: str, threads: int, timeout: float, job: Callable[[str, int], dict[str, Any]] = run_one
) -> dict[str, Any]:
    """``job`` (``run_one``) in a forked child, killed after ``timeout`` seconds."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    start = time.perf_counter()
    proc = ctx.Process(target=_child, args=(key, threads, send, job), daemon=True)
    proc.start()
    send.close()
    row = None
    if recv.poll(timeout):
        try:
            row = recv.recv()
        except EOFError:
            row = None
    proc.join(1)  # the result is in hand: a slow teardown is not worth waiting for
    if proc.is_alive():
        proc.kill()
        proc.join()
    if row is None:
        status = "timeout" if time.perf_counter() - start >= timeout else "crashed"
        row = {"key": key, "status": status, "exitcode": proc.exitcode,
               "error": f"no result after {time.perf_counter() - start:.0f} s"
               if status == "timeout" else f"worker died, exit code {proc.exitcode}"}  # fmt: skip
    row["wall_s"] = round(time.perf_counter() - start, 3)
    return row


# ---------------------------------------------------------------------------- the run


def run_all(
    todo: list[str],
    data: dict[str, Any],
    path: Path,
    jobs: int,
    one: Callable[[str], dict[str, Any]],
    line: Callable[[dict[str, Any]], str],
) -> None:
    """``one(key)`` for every key of ``todo``, ``jobs`` at a time: each row stored in
    ``data`` and saved to ``path`` as it comes, and printed as ``[i/n] key line(row)``."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for i, row in enumerate(pool.map(one, todo), 1):
            data["results"][row["key"]] = row
            _save(path, data)
            print(f"[{i}/{len(todo)}] {row['key']:<50} {line(row)}", flush=True)


def _preload(families: list[str]) -> None:
    """Import the heavy libraries once, before forking (children inherit them)."""
    for fam, mods in {
        "torchvision": ["torchvision.models", "torchvision.models.detection"],
        "timm": ["timm"],
        "transformers": ["transformers", "transformers.modeling_utils"],
        "diffusers": ["diffusers"],
        "smp": ["segmentation_models_pytorch"],
        "open_clip": ["open_clip"],
    }.items():
        if fam in families:
            for m in mods:
                try:
                    __import__(m)
                except Exception as e:  # the children will report it per model
                    print(f"preload {m}: {_first_line(e)}", file=sys.stderr)


def _interleaved(lists: list[list[str]]) -> list[str]:
    """Families in turn, one model each, so a partial run samples all of them."""
    out: list[str] = []
    for i in range(max(map(len, lists), default=0)):
        out.extend(ks[i] for ks in lists if i < len(ks))
    return out


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"meta": {}, "results": {}}


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def _machine() -> dict[str, Any]:
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "flopgraph": getattr(flopgraph, "__version__", "?"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_at_start": os.getloadavg(),
    }


def zoo_options(p: argparse.ArgumentParser, json_default: str, timeout: float) -> None:
    """The options every zoo runner takes (this script, bench_zoo.py, reuse_check.py):
    the results file, which models, and how they run."""
    p.add_argument("--json", default=json_default, help="results file (resumed if present)")
    p.add_argument("--family", action="append", choices=FAMILIES, help="only these families")
    p.add_argument("--only", action="append", default=[], help="keys containing one of these")
    p.add_argument("--jobs", type=int, default=1, help="models run at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per model")
    p.add_argument("--timeout", type=float, default=timeout, help="seconds per model")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    zoo_options(p, "wide-zoo.json", 600)
    p.add_argument("--limit", type=int, default=0, help="at most this many new models")
    p.add_argument("--redo", action="store_true", help="rerun models the file already has")
    p.add_argument("--list", action="store_true", help="print the keys and stop")
    p.add_argument("--summary", metavar="MD", help="write the markdown tables from --json, no run")
    a = p.parse_args(argv)

    path = Path(a.json)
    if a.summary:
        data = _load(path)
        Path(a.summary).write_text(markdown(data))
        print(summary_text(data["results"]))
        return 0
    families = a.family or list(FAMILIES)
    _preload(families)
    keys = _interleaved([entries(f) for f in families])
    if a.only:
        keys = [k for k in keys if any(s.lower() in k.lower() for s in a.only)]
    if a.list:
        print("\n".join(keys))
        print(f"{len(keys)} models", file=sys.stderr)
        return 0
    data = _load(path)
    data["meta"].setdefault("runs", []).append({**_machine(), "started": time.ctime(),
                                                "argv": sys.argv[1:]})  # fmt: skip
    todo = [k for k in keys if a.redo or k not in data["results"]]
    if a.limit:
        todo = todo[: a.limit]
    print(f"{len(keys)} models selected, {len(todo)} to run", flush=True)
    start = time.perf_counter()

    def one(key: str) -> dict[str, Any]:
        return run_isolated(key, a.threads, a.timeout)

    def line(row: dict[str, Any]) -> str:
        extra = row.get("error") or _brief(row)
        return f"{row['status']:<8} {row['wall_s']:>6.1f}s {extra}"

    run_all(todo, data, path, a.jobs, one, line)
    data["meta"]["runs"][-1].update(seconds=round(time.perf_counter() - start, 1),
                                    load_at_end=os.getloadavg())  # fmt: skip
    _save(path, data)
    print(summary_text({k: data["results"][k] for k in keys if k in data["results"]}))
    return 0


def _brief(row: dict[str, Any]) -> str:
    t, d = row.get("torch", {}), row.get("default", {})
    bits = [f"ref={row.get('ref_no_grad')}", f"torch={t.get('flops', t.get('error'))}"]
    if row.get("ref_math_grad") is not None:
        bits.append(f"math_grad={row['ref_math_grad']}")
    skipped = sorted({*t.get("skipped", {}), *d.get("skipped", {})})
    if skipped:
        bits.append("skipped=" + ",".join(skipped))
    if "error" in d:
        bits.append(f"default: {d['error']}")
    if not row.get("untouched", True):
        bits.append("TOUCHED")
    return " ".join(bits)


# ---------------------------------------------------------------------------- summary


_GENERIC = [
    (re.compile(r"\b[A-Z]\w*(Model|ForCausalLM|For[A-Z]\w*)\b"), "<Model>"),
    (re.compile(r"\b(float|int|bfloat|uint|bool|complex)\d*\[[^\]]*\]"), "<T>"),
    (re.compile(r"'[\w.]+'"), "'…'"),
    (re.compile(r"\(at /[^)]*(\)|$)"), ""),
    (re.compile(r"\d+"), "N"),
]


def cause(error: str) -> str:
    """An error line cut to its cause: the op that failed and the innermost
    exception, with model names, shapes, paths and numbers taken out."""
    op = re.search(r"\(fake tensors\): (\S+)", error) or re.search(r"\((call_\w+ [^)]+)\)", error)
    inner = list(re.finditer(r"\b\w+(Error|Exception)\b: ", error))
    if len(inner) > 1:
        error = error[inner[-1].start() :][:110]
        if op:
            error = f"{op.group(1)}: {error}"
    for pattern, repl in _GENERIC:
        error = pattern.sub(repl, error)
    return error[:200]


def reason(row: dict[str, Any]) -> str:
    """One line that groups models failing for the same cause."""
    st = row["status"]
    if st in ("setup", "timeout", "crashed"):
        return f"{st}: {cause(row.get('error', ''))}"
    t, d = row["torch"], row["default"]
    if st == "failed":
        # the torch preset runs on aten only: its error is the aten one; the
        # default's tells what fx did first
        first = t if "error" in t else d
        return f"failed ({'torch' if first is t else 'default'}): {cause(first['error'])}"
    if st == "skipped":
        ops = sorted({*t["skipped"], *d["skipped"]})
        return "skipped ops: " + ", ".join(ops)
    if st == "mismatch":
        ops = sorted({*t["skipped"], *d["skipped"]})
        return "mismatch" + (" (skipped: " + ", ".join(ops) + ")" if ops else "")
    return st


def summary_text(results: dict[str, Any]) -> str:
    rows = list(results.values())
    counts = Counter(r["status"] for r in rows)
    by_family = defaultdict(Counter)
    for r in rows:
        by_family[r["key"].split(":")[0]][r["status"]] += 1
    lines = [f"tried {len(rows)}: " + ", ".join(f"{n} {s}" for s, n in counts.most_common())]
    for fam, c in sorted(by_family.items()):
        parts = ", ".join(f"{n} {s}" for s, n in c.most_common())
        lines.append(f"  {fam:<13} {sum(c.values()):>4}: {parts}")
    touched = [r["key"] for r in rows if r.get("untouched") is False]
    lines.append(f"touched models: {len(touched)} {touched[:10]}")
    lines.append("reasons:")
    for why, keys in groups(rows):
        lines.append(f"  {len(keys):>3}  {why}\n       {', '.join(keys)}")
    return "\n".join(lines)


def groups(rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Non-exact models grouped by cause, the largest group first."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["status"] != "exact":
            out[reason(r)].append(r["key"])
    return sorted(out.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def markdown(data: dict[str, Any]) -> str:
    rows = [data["results"][k] for k in sorted(data["results"])]
    out = [
        "# Wide zoo: every model\n",
        "Written by `python scripts/wide_zoo.py --json PATH --summary docs/wide-zoo-results.md`",
        "from the run described in [wide-zoo.md](wide-zoo.md), which says what the columns mean.",
        "",
        "```",
        summary_text(data["results"]).split("\nreasons:")[0],
        "```",
        "",
        "## Causes\n",
        "| models | cause | which |",
        "|---:|---|---|",
    ]
    for why, keys in groups(rows):
        out.append(f"| {len(keys)} | {_cell(why)} | {', '.join(keys)} |")
    out += [
        "",
        "## Every model\n",
        "FlopCounterMode: the no_grad reference; math+grad: the rerun with grad enabled and",
        "the math SDPA backend (only where the first one differs).\n",
        "| model | status | frontend (torch/default) | FlopCounterMode | math+grad | "
        "torch preset | default FLOPs | s torch | s default | untouched | cause |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        t, d = r.get("torch", {}), r.get("default", {})
        why = "" if r["status"] == "exact" else _cell(reason(r))
        out.append(
            f"| {r['key']} | {r['status']} | {t.get('frontend', '')}/{d.get('frontend', '')} | "
            f"{_n(r.get('ref_no_grad'))} | {_n(r.get('ref_math_grad'))} | {_n(t.get('flops'))} | "
            f"{_n(d.get('flops'))} | {t.get('seconds', '')} | {d.get('seconds', '')} | "
            f"{r.get('untouched', '')} | {why} |"
        )
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _n(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else ""


if __name__ == "__main__":
    sys.exit(main())
