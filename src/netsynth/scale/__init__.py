"""Scaling out: Dask for the embarrassingly parallel stages, torch.distributed for training.

Nothing here is imported by the rest of netsynth unless asked for (dask is an optional extra,
`netsynth[scale]`), and each stage keeps the single-process semantics: the same inputs and seed give
the same flow table whatever the number of workers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["extract_dask", "fit_distributed", "sample_sharded"]


def __getattr__(name: str) -> Any:
    # lazy: importing netsynth.scale must not import dask or torch
    if name == "extract_dask":
        from netsynth.scale.dask_extract import extract_dask

        return extract_dask
    if name == "sample_sharded":
        from netsynth.scale.dask_sample import sample_sharded

        return sample_sharded
    if name == "fit_distributed":
        from netsynth.scale.ddp import fit_distributed

        return fit_distributed
    raise AttributeError(name)
