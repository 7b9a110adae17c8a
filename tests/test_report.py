"""``liwi report``: the page, its assets, its escaping, and the page in a real (headless) Chromium.

The fixture is a real ``liwi run`` (cpu-classical, in-process) over a manifest whose ids and one
file name are hostile: ``<img src=x onerror=...>``, ``</script><script>...``, a quote-and-tag id,
and a broken file whose name is markup (the reason and the trace then carry it too).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from add_pipeline.cli import main
from add_pipeline.report import ReportOptions, build_report
from add_pipeline.report.browser import missing

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "</script><script>window.__pwned=1</script>"
XSS_ATTR = '"><b id=inj>bold</b>'
BROKEN_NAME = '"><svg onload=alert(2)>.jpg'
IDS = [XSS_IMG, XSS_SCRIPT, "plain", "flat", XSS_ATTR]


def _photo(seed: int) -> np.ndarray:
    h, w = 72, 96
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([120 + 60 * xx / w, 140 + 40 * yy / h, 160 - 30 * xx / w], -1).astype(np.uint8)
    img[20:55, 30:70] = (30 + 40 * seed, 60, 120)
    return img


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: 3 accepted samples, a reject whose file decodes (flat grey: no object) and one that does not."""
    d = tmp_path_factory.mktemp("report")
    for k, name in enumerate(["a.png", "b.png", "c.png"]):
        Image.fromarray(_photo(k)).save(d / name)
    Image.fromarray(np.full((72, 96, 3), 128, np.uint8)).save(d / "flat.png")
    (d / BROKEN_NAME).write_bytes(b"not an image")
    sources = ["a.png", "b.png", "c.png", "flat.png", BROKEN_NAME]
    (d / "in.jsonl").write_text("".join(json.dumps({"source": str(d / s), "id": i}) + "\n"
                                        for s, i in zip(sources, IDS, strict=True)))
    out = d / "out"
    res = CliRunner().invoke(main, ["run", "--input", str(d / "in.jsonl"), "--out", str(out), "--workflow",
                                    "cpu-classical", "--local", "--no-progress"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def report(run_out: Path) -> Path:
    html = run_out.parent / "rep" / "index.html"
    build_report(ReportOptions(out=run_out, html=html, workers=1))
    return html


def _data(html: Path) -> dict:
    text = html.read_text()
    m = re.search(r'<script type="application/json" id="liwi-data">(.*?)</script>', text, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_page_embeds_every_sample_escaped(report: Path) -> None:
    text = report.read_text()
    data = _data(report)
    assert sorted(e["id"] for e in data["samples"]) == sorted(IDS)
    for hostile in (XSS_IMG, XSS_SCRIPT, XSS_ATTR, "<svg onload"):
        assert hostile not in text  # neither raw in markup nor able to close the JSON block
    assert text.count("</script>") == 2  # the data block and the script: nothing else closes a script
    by_id = {e["id"]: e for e in data["samples"]}
    assert by_id["plain"]["st"] == "accepted" and by_id["flat"]["st"] == "rejected"
    assert by_id[XSS_ATTR]["stage"] == "load" and "img" not in by_id[XSS_ATTR]  # no thumbnail: does not decode
    assert by_id["flat"]["img"] and by_id["flat"]["key"].startswith("propose: no objects")
    assets = report.parent / data["assets"]
    for e in data["samples"]:  # every strip the page names exists: photo, layers, error map (a reject: its file)
        if e.get("img"):
            with Image.open(assets / e["img"]) as im:
                n_tiles = len(e["layers"]) + 2 if e["st"] == "accepted" else 1
                assert im.size == (data["tile"] * n_tiles, data["tile"])
    acc = [e for e in data["samples"] if e["st"] == "accepted"]
    assert acc and all(len(e["layers"]) == e["nl"] >= 2 and e["layers"][0][1] == "background" for e in acc)
    assert all(len(lay[5]) == len(data["scores"]) for e in acc for lay in e["layers"])
    assert len(data["spec"]) == len(data["metrics"])
    assert all(e["v"] and e["v"][-1]["verdict"] == "accept" for e in acc)


def test_trace_chunks_hold_each_sample_trace(report: Path) -> None:
    data = _data(report)
    chunk = (report.parent / data["assets"] / "trace" / "c00000.js").read_text()
    assert chunk.startswith("LIWI_TRACES(0,") and chunk.rstrip().endswith(");")
    traces = json.loads(chunk[len("LIWI_TRACES(0,"):-3])
    assert set(traces) == {str(e["i"]) for e in data["samples"]}
    for e in data["samples"]:
        t = traces[str(e["i"])]
        assert t["ev"] and t["ev"][0][2] == "load"
        if e["st"] == "accepted":
            assert t["checks"] and all(c["ok"] for c in t["checks"])  # accepted: every check passed
    broken = traces[str(next(e["i"] for e in data["samples"] if e["id"] == XSS_ATTR))]
    assert any(ev[10] and "not an image" in ev[10] for ev in broken["ev"])


def test_recomposition_matches_core(run_out: Path) -> None:
    from add_pipeline.core.composite import recomposition_error
    from add_pipeline.io import LayeredShards
    from add_pipeline.report.gallery import recomposition_diff

    for s in LayeredShards(run_out):
        diff = recomposition_diff(s.image, s.stack())
        mean, peak = recomposition_error(s.image, s.stack())
        assert abs(float(diff.mean()) - mean) < 1e-3 and abs(float(diff.max()) - peak) < 1e-2


def test_events_stream_in_the_order_asked(run_out: Path) -> None:
    from add_pipeline.exec.stats import connect
    from add_pipeline.report.traces import iter_events

    con = connect(run_out)
    tids = [r[0] for r in con.execute("select trace_id from shards order by sample_id").fetchall()]
    got = list(iter_events(con, [tids[1], "", "no-such-trace", tids[0]], batch=3))  # batches split traces
    assert [k for k, _ in got] == [0, 1, 2, 3] and got[1][1] == [] and got[2][1] == []
    alone = list(iter_events(con, [tids[0]]))[0][1]
    assert [e["seq"] for e in got[3][1]] == [e["seq"] for e in alone] == list(range(len(alone)))
    assert all(e["node"] for _, evs in got for e in evs)


def test_compose_audit_checks_use_the_run_bounds() -> None:
    from add_pipeline.core.config import load_workflow
    from add_pipeline.report.traces import CheckBuilder

    wf = load_workflow("compose-default")
    builder = CheckBuilder({"workflow": wf.model_dump(mode="json")})
    assert builder.stage == "compose" and builder.problem is None
    meas = {"sample": {"recomposition_max": 0.5, "perspective_spread": 1.0},
            "obj0": {"inside": 1.0, "contact_depth": 12.0, "contact_error": 4.27, "height_frac": 0.3,
                     "visible_frac": 1.0}}
    events = [{"node": "audit", "attempt": 1, "decision_full": None, "error": None,
               "measurements": json.dumps({"tool_s": 0.01, "value": meas})}]
    checks, problem = builder.checks(events)
    assert problem is None and {c["attempt"] for c in checks} == {1}
    bad = [c for c in checks if not c["ok"]]
    assert [(c["target"], c["name"]) for c in bad] == [("obj0", "contact_error")]
    assert bad[0]["high"] == wf.params("audit")["contact_tolerance_px"]
    assert next(c for c in checks if c["name"] == "inside")["high"] is None  # unbounded: JSON null, not inf
    assert builder.checks([]) == ([], "no measurement in the trace (the sample stopped before the verifier)")
    assert CheckBuilder({}).problem  # a run.json without a workflow: said, not guessed


def test_where_limit_and_cli(run_out: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    html = tmp_path / "w.html"
    res = runner.invoke(main, ["report", str(run_out), "--out", str(html), "--where", "sample_id = 'plain'",
                               "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert [e["id"] for e in _data(html)["samples"]] == ["plain"] and "rejects left out" in res.output
    res = runner.invoke(main, ["report", str(run_out), "--out", str(html), "--limit", "1", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert [e["st"] for e in _data(html)["samples"]] == ["accepted", "rejected"]
    strips = sorted(p.name for p in (tmp_path / "w_files" / "img").iterdir())
    assert strips[0] == "000000.webp" and len(strips) <= 2  # the first report's strips are gone
    res = runner.invoke(main, ["report", str(run_out), "--out", str(html), "--where", "1; select 2"])
    assert res.exit_code != 0 and "not a valid SQL expression" in res.output
    (tmp_path / "mine_files").mkdir()
    res = runner.invoke(main, ["report", str(run_out), "--out", str(tmp_path / "mine.html")])
    assert res.exit_code != 0 and "not written by liwi report" in res.output
    res = runner.invoke(main, ["report", str(run_out.parent), "--out", str(html)])
    assert res.exit_code != 0 and "not a liwi output folder" in res.output


def test_eval_report_worst_first_and_joined(run_out: Path, tmp_path: Path) -> None:
    def sample(cost: float) -> dict:
        return {"cost": [cost + 0.1, cost], "rgb_l1": [0.1, 0.05], "alpha_iou": [0.5, 0.9], "merges": 1,
                "kinds": {"objects": [{"iou": 0.8}, {"iou": 0.6}], "shadows": [], "bg_psnr": 30.0}}
    rep = {"protocol": {"name": "layerd"}, "count": 3, "levels": [{"merges": 0, "cost": 0.3}],
           "kinds": {}, "unmatched": {"pred_only": [], "gt_only": []}, "failed": [{"sample_id": XSS_IMG, "error": "x"}],
           "samples": {"plain": sample(0.1), XSS_SCRIPT: sample(0.4), "ghost": sample(0.2)}}
    path = tmp_path / "REPORT.json"
    path.write_text(json.dumps(rep))
    html = tmp_path / "e.html"
    build_report(ReportOptions(out=run_out, html=html, evals=(path,), workers=1))
    data = _data(html)
    assert [r[0] for r in data["evals"][0]["rows"]] == [XSS_SCRIPT, "ghost", "plain"]  # worst cost first
    k = data["metrics"].index("eval object IoU")
    plain = next(e for e in data["samples"] if e["id"] == "plain")
    assert plain["m"][k] == pytest.approx(0.7)
    assert XSS_SCRIPT not in html.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a liwi eval report"):
        build_report(ReportOptions(out=run_out, html=html, evals=(bad,)))


def test_source_tile_never_raises(tmp_path: Path) -> None:
    from add_pipeline.report.thumbs import source_tile

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    for src, why in [(str(fifo), "not a regular file"), ("/dev/zero", "not a regular file"),
                     (str(tmp_path), "not a regular file"), (str(tmp_path / "gone.png"), "unreadable"),
                     ("compose:///x#1", "not a local file"), ("", "not a local file")]:
        tile, reason = source_tile(src)
        assert tile is None and reason is not None and why in reason, (src, reason)
    assert time.perf_counter() - t0 < 5  # the FIFO is refused, not waited on
    Image.fromarray(_photo(0)).save(tmp_path / "ok.png")
    tile, reason = source_tile(str(tmp_path / "ok.png"), 64)
    assert reason is None and tile is not None and tile.shape == (64, 64, 3) and tile.dtype == np.uint8


def test_script_json_cannot_end_the_block() -> None:
    from add_pipeline.report.page import script_json

    text = script_json({"a": "</script><!-- & \u2028", "b": None})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028", "b": None}
    with pytest.raises(ValueError):
        script_json({"x": float("nan")})


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - a selenium driver
    why = missing()
    if why:
        pytest.skip(f"browser test needs headless Chromium and selenium: {why}")
    from add_pipeline.report.browser import chromium

    with chromium(1400, 1600) as driver:
        yield driver


def test_page_in_chromium(report: Path, browser, tmp_path: Path) -> None:  # noqa: ANN001
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from add_pipeline.report.browser import console_errors, open_report

    d = browser
    open_report(d, report)

    def shown() -> list[str]:
        return [e.text for e in d.find_elements(By.CSS_SELECTOR, "#cards .card .sid")]

    assert sorted(shown()) == sorted(IDS)  # every sample id, as text
    assert d.execute_script("return window.__pwned") is None
    assert d.execute_script("return document.querySelectorAll('img[src=\"x\"], #inj, svg[onload]').length") == 0
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018 - raises when no alert() ran
    assert len(d.find_elements(By.CSS_SELECTOR, "#cards .card.accepted .tiles img")) > 0

    Select(d.find_element(By.ID, "f-status")).select_by_visible_text("rejected")
    assert sorted(shown()) == sorted(["flat", XSS_ATTR])
    Select(d.find_element(By.ID, "f-status")).select_by_visible_text("all")
    reason = next(o.text for o in Select(d.find_element(By.ID, "f-reason")).options if o.text.startswith("load"))
    Select(d.find_element(By.ID, "f-reason")).select_by_visible_text(reason)
    assert shown() == [XSS_ATTR]
    d.find_element(By.ID, "f-reset").click()
    WebDriverWait(d, 5).until(lambda _: len(shown()) == len(IDS))
    d.find_element(By.ID, "f-lmin").send_keys("1")  # rejects have no layers
    assert sorted(shown()) == sorted([XSS_IMG, XSS_SCRIPT, "plain"])
    Select(d.find_element(By.ID, "f-metric")).select_by_visible_text("recomposition max (levels)")
    d.find_element(By.ID, "f-mmin").send_keys("1000")  # no recomposition is that far off
    assert shown() == []
    d.find_element(By.ID, "f-reset").click()
    WebDriverWait(d, 5).until(lambda _: len(shown()) == len(IDS))
    d.find_element(By.ID, "f-q").send_keys("onerror")
    assert shown() == [XSS_IMG]

    d.find_element(By.CSS_SELECTOR, "#cards .card .trace-btn").click()  # loads trace/c00000.js on demand
    WebDriverWait(d, 10).until(lambda _: d.find_elements(By.CSS_SELECTOR, "#cards .detail .timeline tr"))
    nodes = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#cards .detail .timeline tr td:nth-child(2)")]
    assert "load" in nodes and "verify" in nodes
    assert d.find_elements(By.CSS_SELECTOR, "#cards .detail table.num tr")  # the checks table
    rejects = d.find_elements(By.CSS_SELECTOR, "#reject-rows table tr")
    assert len(rejects) == 3 and rejects[2].find_elements(By.TAG_NAME, "img") or rejects[1].find_elements(
        By.TAG_NAME, "img")
    assert d.execute_script("return window.__pwned") is None
    assert console_errors(d) == []
    d.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
