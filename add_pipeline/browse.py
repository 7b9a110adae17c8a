"""Reading one sample back: its row, its layers as PNGs, its trace as a readable tree."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from add_pipeline.exec.stats import connect
from add_pipeline.io.images import encode_png
from add_pipeline.io.layered import decode_row, scores_dict
from add_pipeline.io.names import child, safe_name


def find_sample(out: Path, sample_id: str) -> tuple[str, dict[str, Any]] | None:
    """``("accepted", shard row)`` or ``("rejected", reject row)`` for ``sample_id``, or None."""
    con = connect(out)
    for kind, view in (("accepted", "shards"), ("rejected", "rejects")):
        rel = con.execute(f"select * from {view} where sample_id = ? limit 1", [sample_id])
        row = rel.fetchone()
        if row is not None:
            return kind, dict(zip([d[0] for d in rel.description], row))
    return None


def _short(text: str | None, width: int = 110) -> str:
    if not text:
        return ""
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def render_trace(out: Path, trace_id: str) -> str:
    """The trace of one graph run as an indented tree: attempts, then nodes, then events."""
    con = connect(out)
    rows = con.execute(
        "select seq, node, tool, duration_s, input, output, decision, error, attempt, sample_id "
        "from traces where trace_id = ? order by seq", [trace_id]).fetchall()
    if not rows:
        return f"(no trace events for trace {trace_id})"
    lines = [f"trace {trace_id}  sample {rows[0][9]}  ({len(rows)} events)"]
    attempt = None
    for seq, node, tool, dur, inp, outp, decision, error, att, _ in rows:
        if att != attempt:
            attempt = att
            lines.append(f"├─ attempt {att}")
        tool_s = None
        if tool and outp and node not in ("plan", "verify"):
            parsed = json.loads(outp)
            tool_s = parsed.get("tool_s") if isinstance(parsed, dict) else None
        timing = f"{dur * 1000:8.1f} ms" + (f" (tool {tool_s * 1000:.1f} ms)" if tool_s is not None else "")
        lines.append(f"│  ├─ {seq:3d} {node:<8} {tool or '-':<16} {timing}")
        if decision:
            lines.append(f"│  │     decision: {_short(decision)}")
        if error:
            lines.append(f"│  │     ERROR: {_short(error, 300)}")
        elif node in ("plan", "verify") and inp:
            lines.append(f"│  │     input: {_short(inp)}")
    lines.append("└─ end")
    return "\n".join(lines)


def graph_state(out: Path, trace_id: str) -> dict[str, Any] | None:
    """The last LangGraph checkpoint of one graph run (its state values), or None if not kept."""
    db = out / "checkpoints.sqlite"
    if not db.exists():
        return None
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        found = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": trace_id}})
    finally:
        conn.close()
    return None if found is None else dict(found.checkpoint["channel_values"])


def save_sample(out: Path, kind: str, record: dict[str, Any], trace: str, dest: Path) -> list[Path]:
    """Write ``input.png``, every layer PNG, ``composite.png``, ``record.json`` and ``trace.txt`` into
    ``dest/<sample id as a safe file name>`` (:func:`~add_pipeline.io.names.safe_name`: ids come from
    users, and ``../x`` or ``/x`` must not write outside ``dest``)."""
    folder = child(dest, record["sample_id"])
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, data: bytes | str) -> None:
        p = folder / name
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
        written.append(p)

    put("trace.txt", trace + "\n")
    meta = {k: v for k, v in record.items() if k not in ("image", "layers")}
    if kind == "accepted":
        sample = decode_row(record)
        put("input.png", encode_png(sample.image))
        for lay in sample.layers:
            put(f"{lay.z:02d}_{lay.kind}_{safe_name(lay.name)}.png", encode_png(lay.rgba))
        put("composite.png", encode_png(sample.composite()))
        meta["layers"] = [{k: (scores_dict(v) if k == "scores" else v) for k, v in lay.items() if k != "image"}
                          for lay in record["layers"]]
    put("record.json", json.dumps(meta, indent=2, default=str))
    return written
