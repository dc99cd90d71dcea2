"""Shared-memory wavefronts of the chunk kernels, measured by Nsight Compute, against the count of
benchmarks/smem_bank_report (bench_gpu.py's SMEM_WAVEFRONTS): the test of the model that says shared
memory, not the exponentials, binds these kernels (docs/cuda-design-log.md, "A third floor"); and, where ncu
has the metric, their special-function instructions against the same report's count (MUFU_OPS).

The `profile` step of tests/gpu/run_all.sh runs tests/gpu/profile_chunk.py under

  ncu --csv --profile-from-start off -k regex:_pass_kernel --metrics <METRICS> python tests/gpu/profile_chunk.py

and this reads that CSV: one row per kernel launch and metric ("Metric Name" / "Metric Value", ncu's
default details page), or one row per launch with a column per metric (--page raw). profile_chunk.py
makes one forward+backward call per (forward form, threads per CTA), in the order of CALLS, each ending
with the backward's grad_pass, which is how launches are assigned to calls. For each launch the table gives:

  measured     l1tex__data_pipe_lsu_wavefronts_mem_shared.sum: every shared-memory wavefront of the LSU
               pipe (loads, stores, the tensor-core fragments' loads; cp.async's stores as the hardware counts them)
  model        bench_gpu.chunk_kernel_smem for the same sizes (bf16, factored diagonal: the benchmark's)
  ratio        measured ÷ model
  conflicts    l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum ÷ measured: the share of wavefronts
               that bank conflicts added
  smem busy    measured ÷ sm__cycles_elapsed.sum: wavefronts per SM clock (one is the most an SM serves), so
               near 1 a kernel is bound by shared memory, as the model says
  µs           gpu__time_duration.sum
  MUFU         smsp__inst_executed_pipe_xu.sum (warp instructions of the XU pipe: MUFU, and the conversions it
               also runs) against bench_gpu.chunk_kernel_mufu ÷ 32 (the model counts lanes; a warp with idle
               lanes issues more instructions than that), where the CSV has the metric (OPTIONAL_METRICS:
               run_all.sh asks for it only where `ncu --query-metrics` lists it)

  python3 tests/gpu/smem_model_check.py NCU_CSV [--N 64 --T 2048 --D 128 --M 64]
"""
import argparse
import csv
import io
import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks")
WAVEFRONTS = "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum"
CONFLICTS = "l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum"
CYCLES = "sm__cycles_elapsed.sum"
DURATION = "gpu__time_duration.sum"
METRICS = (WAVEFRONTS, CONFLICTS, CYCLES, DURATION)
XU = "smsp__inst_executed_pipe_xu.sum"
OPTIONAL_METRICS = (XU,)  # a name ncu does not know fails the whole run, so these are asked for where it lists them
CALLS = (("split", 512), ("split", 256), ("fused", 512), ("fused", 256))  # profile_chunk.py's order


def bench_gpu():
    """benchmarks/bench_gpu.py (the model), imported when needed: run_all.sh reads METRICS without torch."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    import bench_gpu as b
    return b


def metrics_to_ask(listing):
    """The metrics for ncu's --metrics: METRICS, and each of OPTIONAL_METRICS whose base name `listing` (the output
    of `ncu --query-metrics`, empty where it failed) names."""
    names = set(listing.split())
    return list(METRICS) + [m for m in OPTIONAL_METRICS if m.rsplit(".", 1)[0] in names]


def kernel_of(name):
    """The chunk kernel a launch's (possibly demangled, possibly templated) name is of, or None."""
    for k in bench_gpu().CHUNK_KERNELS:
        if f"{k}_kernel" in name and not (k == "state_pass" and "dstate_pass_kernel" in name):
            return k
    return None


def number(text):
    """A metric value as ncu prints it ("1,234,567", "12.5"), or None where it printed none ("n/a")."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def launches(csv_text):
    """[(launch id, kernel, {metric: value})] in launch order, from either CSV layout ncu writes."""
    # ncu prints its own lines ("==PROF== ...") and the program's output around the CSV: the table starts
    # at its header, the first row naming both "ID" and "Kernel Name".
    rows = list(csv.reader(io.StringIO(csv_text)))
    start = next((i for i, r in enumerate(rows) if "ID" in r and "Kernel Name" in r), None)
    if start is None:
        raise ValueError("no CSV table (a header with 'ID' and 'Kernel Name') in the Nsight Compute output")
    header, rows = rows[start], rows[start:]
    col = {name: i for i, name in enumerate(header)}
    found = {}
    if "Metric Name" in col:  # details page: a row per launch and metric
        for r in rows[1:]:
            if len(r) != len(header) or r[col["Metric Name"]] not in METRICS + OPTIONAL_METRICS:
                continue
            lid = int(number(r[col["ID"]]))
            entry = found.setdefault(lid, (kernel_of(r[col["Kernel Name"]]), {}))
            entry[1][r[col["Metric Name"]]] = number(r[col["Metric Value"]])
    else:  # raw page: a column per metric, the row after the header their units
        missing = [m for m in METRICS if m not in col]
        if missing:
            raise ValueError(f"the Nsight Compute CSV has no column for {missing}")
        for r in rows[1:]:
            if len(r) != len(header) or number(r[col["ID"]]) is None:
                continue  # the units row
            found[int(number(r[col["ID"]]))] = (kernel_of(r[col["Kernel Name"]]),
                                                {m: number(r[col[m]]) for m in METRICS + OPTIONAL_METRICS if m in col})
    return [(lid, k, m) for lid, (k, m) in sorted(found.items()) if k is not None]


def table(csv_text, N, T, D, M):
    """The comparison as a Markdown table (a line each), and a line on the sizes and how to read it."""
    model = {form: bench_gpu().chunk_kernel_smem(N, T, D, M, forward=form) for form in ("split", "fused")}
    if model["split"] is None:
        raise ValueError(f"SMEM_WAVEFRONTS holds no entry for M={M}, D={D}")
    mufu = {form: bench_gpu().chunk_kernel_mufu(N, T, D, M, forward=form) for form in ("split", "fused")}
    calls_done, lines = 0, []
    for lid, kernel, m in launches(csv_text):
        if calls_done >= len(CALLS):
            break  # a launch past profile_chunk.py's calls
        call = CALLS[calls_done]
        calls_done += kernel == "grad_pass"  # every call ends with the backward's grad_pass
        w, c, cyc, t = (m.get(x) for x in METRICS)
        xu, expect = m.get(XU), model[call[0]][kernel]
        xu_model = mufu[call[0]][kernel] / 32
        cell = lambda v, fmt: format(v, fmt) if v is not None else "—"
        lines.append(f"| {call[0]} | {call[1]} | {kernel} | {cell(w, ',.0f')} | {expect:,.0f} | "
                     f"{cell(w / expect if w is not None and expect else None, '.2f')} | "
                     f"{cell(c / w if c is not None and w else None, '.2f')} | "
                     f"{cell(w / cyc if w is not None and cyc else None, '.2f')} | "
                     f"{cell(t / 1e3 if t is not None else None, '.0f')} | "
                     f"{cell(xu, ',.0f')} | {xu_model:,.0f} | {cell(xu / xu_model if xu is not None else None, '.2f')} |")
    if not lines:
        raise ValueError("no chunk-kernel launch in the Nsight Compute CSV")
    head = [f"Shared-memory wavefronts, measured (Nsight Compute) against the model (SMEM_WAVEFRONTS), "
            f"N={N} T={T} D={D} M={M} bf16, factored diagonal. smem busy: wavefronts per SM clock (1 = bound by "
            "shared memory); conflicts: the share of the wavefronts bank conflicts added; MUFU: the XU pipe's warp "
            "instructions (— where ncu lacked the metric) against MUFU_OPS ÷ 32 (tests/gpu/smem_model_check.py)",
            "",
            "| forward | threads | kernel | measured | model | measured ÷ model | conflicts | smem busy | µs "
            "| MUFU measured | MUFU model | MUFU measured ÷ model |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    return head + lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", help="Nsight Compute's --csv output of tests/gpu/profile_chunk.py")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--T", type=int, default=2048)
    p.add_argument("--D", type=int, default=128)
    p.add_argument("--M", type=int, default=64)
    a = p.parse_args(argv)
    try:
        with open(a.csv, errors="replace") as fh:
            text = fh.read()
        print("\n".join(table(text, a.N, a.T, a.D, a.M)))
    except (OSError, ValueError) as e:
        print(f"smem_model_check: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
