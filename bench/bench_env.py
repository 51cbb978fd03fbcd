"""The machine and libraries a benchmark ran on, printed at the top of each bench script.

A figure quoted in the README names its script, date and machine; these lines
are where they come from. Only the standard library (and ``threadpoolctl``,
when installed) is imported, so any environment can use this module.
"""

from __future__ import annotations

import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """Date, CPU, core count, memory and load: one line."""
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{time.strftime('%Y-%m-%d')}; {cpu_model()}, {os.cpu_count()} cpus{memory}; "
        f"{platform.system()} {platform.release()}; load {load:.1f}"
    )


def package_versions(names: tuple[str, ...]) -> str:
    out = [f"python {platform.python_version()}"]
    for name in names:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def numpy_blas() -> str:
    """numpy's BLAS as threadpoolctl sees it (library, version, threading, threads)."""
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl then finds)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "none found by threadpoolctl"
    return "; ".join(
        f"{p.get('internal_api')} {p.get('version')} ({p.get('threading_layer', '?')}, "
        f"{p.get('num_threads')} threads, {os.path.basename(p.get('filepath', '?'))})"
        for p in pools
    )
