"""Record the machine a benchmark ran on, so results from different runs are never compared blindly."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Platform, CPU, core counts and library versions (torch / onnxruntime only when importable)."""
    info: dict[str, Any] = {
        "timestamp_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "git_commit": _git_commit(),
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return info


def machine_markdown(info: dict[str, Any]) -> str:
    """One Markdown line describing the machine."""
    keys = ("processor", "cpu_count", "cpu_affinity", "platform", "torch", "torch_threads", "onnxruntime", "cuda")
    return "Machine: " + ", ".join(f"{k} `{info[k]}`" for k in keys if info.get(k) is not None)


if __name__ == "__main__":
    import argparse
    import json

    about = "Print this machine's description, as every benchmark records it, as JSON."
    argparse.ArgumentParser(description=about).parse_args()
    print(json.dumps(machine_info(), indent=2))
