"""``liwi synth``: the deterministic benchmark split of composed samples.

Built only from the natural photos that ship inside installed packages (the same seven
``liwi samples`` writes): they are decomposed with ``cpu-default``, their assets curated, and
``n`` samples composed with ``seed``.  Training data must come from other photos (see
``split.json``) so the benchmark stays held out.  Layout::

    BENCH/shards, traces, rejects, _commits, run.json, stats.json   the composed ground truth
    BENCH/source/        decompose output of the bundled photos
    BENCH/assets/        curated assets
    BENCH/photos/        the bundled photos
    BENCH/split.json     what the split is made of
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from add_pipeline.compose.curate import curate
from add_pipeline.compose.job import compose
from add_pipeline.exec.run import RunOptions, run
from add_pipeline.samples import write_samples


def synth(out: Path, n: int, seed: int, workers: int | None = None, local: bool = False,
          overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Build (or resume) the benchmark split in ``out``; returns ``split.json``'s content."""
    photos = write_samples(out / "photos")
    source = out / "source"
    run(RunOptions(input=str(out / "photos"), out=source, workflow="cpu-default", workers=workers, seed=seed,
                   overwrite=overwrite, local=local, progress=progress))
    summary = curate(source, out / "assets")
    stats = compose(out / "assets", out, n=n, seed=seed, workers=workers, overwrite=overwrite, local=local,
                    progress=progress, own_entries=("photos", "source", "assets", "split.json"))
    split = {
        "purpose": "held-out benchmark: never tune or train on these photos or assets",
        "photos": sorted(p.name for p in photos),
        "n": n, "seed": seed, "composed": stats["accepted"], "rejected": stats["rejected"],
        "assets": {k: summary[k] for k in ("objects", "backgrounds", "filtered") if k in summary},
    }
    (out / "split.json").write_text(json.dumps(split, indent=2, sort_keys=True))
    return split
