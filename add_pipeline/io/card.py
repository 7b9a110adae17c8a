"""``OUT/README.md``: the Hugging Face dataset card of an output folder.

Written at the end of every ``liwi run`` / ``liwi compose`` / ``liwi synth`` (and so rewritten by a
resumed run), from ``run.json`` and the run's stats.  Its YAML header declares one ``datasets``
config per table that has committed parts (``default``: the accepted samples in ``shards/``,
``rejects``, ``traces``) with their ``data_files`` (the committed part files by name) and features
(``datasets`` >= 4 reads them), so ``load_dataset(OUT)`` works on
the folder and the folder is ready to upload.  The body says what the rows are, how the pixels are
stored, how the data was made, and how to read it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from add_pipeline.io.hf import features_yaml
from add_pipeline.io.layered import SCHEMA_VERSION
from add_pipeline.io.shards import SCHEMAS, ShardStore

CARD_FILE = "README.md"
CARD_MARKER = "<!-- liwi dataset card: rewritten at the end of every run into this folder -->"
"""The line that marks a ``README.md`` as ours: a README without it is the user's and never replaced."""
log = logging.getLogger(__name__)
CONFIGS = (("default", "shards"), ("rejects", "rejects"), ("traces", "traces"))


def card_header(out: Path, license_id: str) -> dict[str, Any]:
    """The card's YAML header (a dict): licence, tags, and one config per table with committed parts."""
    store = ShardStore(out)
    configs, infos = [], []
    for name, kind in CONFIGS:
        files = store.committed_files(kind)  # type: ignore[arg-type]
        if not files:
            continue
        # the committed parts by name, not a glob: a part a killed run left without its marker is not data
        paths = [f"{kind}/{p.name}" for p in files]
        configs.append({"config_name": name, "data_files": [{"split": "train", "path": paths}]})
        infos.append({"config_name": name, "features": features_yaml(SCHEMAS[kind])})  # type: ignore[index]
    return {
        "license": license_id,
        "pretty_name": f"Layered photos ({out.name})",
        "tags": ["layered-images", "image-decomposition", "rgba", "shadows", "liwi"],
        "task_categories": ["image-segmentation"],
        "configs": configs,
        "dataset_info": infos,
    }


def _body(out: Path, run: dict[str, Any], stats: dict[str, Any]) -> str:
    wf = run.get("workflow", {}) if isinstance(run.get("workflow"), dict) else {}
    steps = wf.get("steps", {}) if isinstance(wf.get("steps"), dict) else {}
    tools = ", ".join(f"{step}: {spec.get('tool')}" for step, spec in steps.items() if isinstance(spec, dict))
    versions = run.get("versions", {}) if isinstance(run.get("versions"), dict) else {}
    shown = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k != "platform")
    accepted, rejected = int(stats.get("accepted", 0)), int(stats.get("rejected", 0))
    total = accepted + rejected
    rate = f"{100.0 * accepted / total:.1f}%" if total else "n/a"
    reasons = stats.get("reject_reasons") or {}
    reason_lines = "\n".join(f"| {k} | {v} |" for k, v in reasons.items()) or "| (none) | 0 |"
    fallback = run.get("fallback")
    return f"""
{CARD_MARKER}

# Layered photos: `{out.name}`

Each accepted row is one photo decomposed into editable layers, back to front: an opaque
**background** (the scene with the objects removed and inpainted), and per object an RGBA
**object** layer (soft alpha) with, below it, a **shadow** layer (black, alpha = shadow strength)
for the light the object blocks. Composited back to front ("over") the layers give the photo.

| | |
|---|---|
| accepted samples | {accepted} |
| rejected inputs | {rejected} (acceptance {rate}) |
| layers | {stats.get("layers_total", 0)} ({float(stats.get("layers_per_sample", 0.0)):.2f} per sample) |
| stage | {run.get("stage", "?")} |
| workflow | `{wf.get("name", "?")}` (hash `{str(run.get("workflow_hash", ""))[:12]}`){
    f", run instead of `{fallback.get('from')}`" if isinstance(fallback, dict) else ""} |
| tools | {tools or "?"} |
| shard schema | v{SCHEMA_VERSION} |
| made with | {shown or "?"} |

Reject reasons:

| reason | count |
|---|---|
{reason_lines}

## How the pixels are stored

`image` is the photo. Each entry of `layers` has `name`, `kind` (`background`, `object`,
`shadow`), `z` (0 = back), `bbox` (`[x0, y0, x1, y1]`, half-open, canvas pixels), `parent` (a
shadow's object), `scores` (QA scores as name/value pairs) and `image`, the layer **cut to its
bbox** (lossless WebP or PNG; colour under alpha 0 is 0). A layer with `fill: image` (the
background) is opaque and stored only where it differs from the photo: outside its bbox, and
where its stored alpha is 0, its pixels are the photo's. `meta` is JSON (planner notes, verifier
decisions, timings). The `rejects` config lists every input that was not accepted, with the
stage and reason; `traces` has one row per agent or tool event.

## Reading it

```python
from datasets import load_dataset
ds = load_dataset("{out}")              # images decode to PIL; layers are crops at their bbox
from add_pipeline.io import LayeredShards
for sample in LayeredShards("{out}"):   # full-canvas HxWx4 uint8 layers, placed and filled
    sample.image, [(l.kind, l.rgba.shape) for l in sample.layers]
```

`liwi export {out} --format psd|ora|webdataset|layerd --out DIR` writes layered files for
Photoshop, GIMP and Krita, WebDataset tars, or one folder of PNGs per sample.
"""


def is_ours(path: Path) -> bool:
    """Whether ``path`` is absent or a dataset card liwi wrote (it carries :data:`CARD_MARKER`)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return CARD_MARKER in fh.read(64_000)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def write_card(out: Path, stats: dict[str, Any]) -> Path | None:
    """Write ``out/README.md`` (temporary name, then rename) and return its path; a ``README.md``
    that liwi did not write is left alone (None is returned).

    ``stats``: the run's statistics (:func:`~add_pipeline.exec.stats.compute_stats`). The licence is
    the run's ``--license`` (a Hugging Face licence id, ``unknown`` unless the user says), read from
    ``run.json`` with the workflow and versions.
    """
    run_path = out / "run.json"
    try:
        run = json.loads(run_path.read_text(encoding="utf-8")) if run_path.is_file() else {}
    except (OSError, ValueError):
        run = {}
    options = run.get("options") if isinstance(run.get("options"), dict) else {}
    license_id = str(options.get("license") or "unknown")
    header = yaml.safe_dump(card_header(out, license_id), sort_keys=False, allow_unicode=True)
    text = f"---\n{header}---\n{_body(out, run, stats)}"
    path = out / CARD_FILE
    if not is_ours(path):
        log.warning("%s is not a liwi dataset card; left as it is (no card written)", path)
        return None
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
