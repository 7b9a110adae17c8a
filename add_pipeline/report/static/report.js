/* liwi report: the gallery (filter, sort, pages), sample details, reject and eval tables.
 * Plain JavaScript, no framework.  Every text from the run goes into the page through
 * textContent or an attribute value, never as markup. */
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("liwi-data").textContent);
  const ASSETS = DATA.assets + "/";
  const TILE = DATA.tile;
  const ALL = DATA.samples;
  const metricIndex = {};
  DATA.metrics.forEach(function (m, k) { metricIndex[m] = k; });
  // layers arrive as [name, kind, z, bbox, parent, [score values aligned to DATA.scores]]
  for (const e of ALL) {
    e.layers = e.layers.map(function (l) {
      const scores = {};
      DATA.scores.forEach(function (n, j) { if (l[5][j] !== null) scores[n] = l[5][j]; });
      return {name: l[0], kind: l[1], z: l[2], bbox: l[3], parent: l[4], values: l[5], scores: scores};
    });
    e.tiles = e.st === "accepted" ? [["input", "input"]].concat(e.layers.map(function (l) { return [l.name, l.kind]; }),
                                                               [["error", "error"]])
      : (e.img ? [["source", "input"]] : []);
    e.v = e.v || []; e.fails = e.fails || [];
  }

  function el(tag, attrs) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v === null || v === undefined) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = String(v);
        else e.setAttribute(k, String(v));
      }
    }
    for (let i = 2; i < arguments.length; i++) {
      const kid = arguments[i];
      if (kid === null || kid === undefined) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a >= 1000) return v.toFixed(0);
    return String(Number(v.toPrecision(3)));
  }
  function secs(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1) return v.toFixed(2) + " s";
    if (v >= 1e-3) return (v * 1e3).toFixed(1) + " ms";
    return (v * 1e6).toFixed(0) + " µs";
  }
  function optionList(select, values) {
    for (const v of values) select.append(el("option", {value: v, text: v}));
  }
  function $(id) { return document.getElementById(id); }

  // ------------------------------------------------------------ pager
  function pager(box, page, pages, total, shownFrom, shownTo, go, what) {
    box.replaceChildren();
    const info = el("span", {class: "count", text: total ? ("showing " + shownFrom + "–" + shownTo + " of " + total +
      " " + what) : ("no " + what + " match")});
    const prev = el("button", {type: "button", text: "‹ prev"});
    const next = el("button", {type: "button", text: "next ›"});
    prev.disabled = page <= 0; next.disabled = page >= pages - 1;
    prev.addEventListener("click", function () { go(page - 1); });
    next.addEventListener("click", function () { go(page + 1); });
    box.append(prev, el("span", {text: "page " + (pages ? page + 1 : 0) + " / " + pages}), next, info);
  }

  // ------------------------------------------------------------ gallery state
  const S = {page: 0};
  const F = {status: $("f-status"), reason: $("f-reason"), lmin: $("f-lmin"), lmax: $("f-lmax"),
             verdict: $("f-verdict"), metric: $("f-metric"), mmin: $("f-mmin"), mmax: $("f-mmax"),
             q: $("f-q"), sort: $("f-sort"), dir: $("f-dir"), size: $("f-size")};
  optionList(F.reason, DATA.reasons);
  optionList(F.verdict, DATA.verdicts);
  optionList(F.metric, DATA.metrics);
  function num(input) { return input.value === "" ? null : Number(input.value); }
  function metric(e, k) {
    if (k === undefined) return null;
    const sp = DATA.spec[k];
    if (sp[0] === "m") return e.m[sp[1]];
    let best = null;
    for (const l of e.layers) {
      const v = l.values[sp[1]];
      if (v === null) continue;
      if (best === null || (sp[2] === "min" ? v < best : v > best)) best = v;
    }
    return best;
  }
  function lastVerdict(e) { return e.v.length ? e.v[e.v.length - 1].verdict : ""; }

  function selected() {
    const st = F.status.value, reason = F.reason.value, verdict = F.verdict.value, q = F.q.value.trim().toLowerCase();
    const lmin = num(F.lmin), lmax = num(F.lmax), mmin = num(F.mmin), mmax = num(F.mmax);
    const mk = metricIndex[F.metric.value];
    const rows = ALL.filter(function (e) {
      if (st && e.st !== st) return false;
      if (reason && e.key !== reason) return false;
      if (verdict && lastVerdict(e) !== verdict) return false;
      if (lmin !== null && e.nl < lmin) return false;
      if (lmax !== null && e.nl > lmax) return false;
      if (mmin !== null || mmax !== null) {
        const v = metric(e, mk);
        if (v === null || v === undefined) return false;
        if (mmin !== null && v < mmin) return false;
        if (mmax !== null && v > mmax) return false;
      }
      if (q && (e.id + "\n" + e.src + "\n" + (e.reason || "")).toLowerCase().indexOf(q) < 0) return false;
      return true;
    });
    const dir = F.dir.value === "desc" ? -1 : 1, sort = F.sort.value;
    const key = sort === "id" ? function (e) { return e.id; } : sort === "layers" ? function (e) { return e.nl; }
      : sort === "metric" ? function (e) { return metric(e, mk); } : function (e) { return e.i; };
    rows.sort(function (a, b) {
      const x = key(a), y = key(b);
      if (x === y) return a.i - b.i;
      if (x === null || x === undefined) return 1;  // missing values last, either direction
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * dir;
    });
    return rows;
  }

  function renderGallery() {
    const rows = selected(), size = Number(F.size.value);
    const pages = Math.ceil(rows.length / size);
    S.page = Math.max(0, Math.min(S.page, pages - 1));
    const from = S.page * size, part = rows.slice(from, from + size);
    const box = $("cards");
    box.replaceChildren.apply(box, part.map(card));
    const go = function (p) { S.page = p; renderGallery(); $("gallery").scrollIntoView(); };
    const what = "samples (" + ALL.length + " in the gallery)";
    pager($("pager-top"), S.page, pages, rows.length, from + 1, from + part.length, go, what);
    pager($("pager-bottom"), S.page, pages, rows.length, from + 1, from + part.length, go, what);
  }

  function tile(e, k, label, kind) {
    const img = el("img", {src: ASSETS + e.img, alt: label, width: TILE, height: TILE, loading: "lazy",
                           decoding: "async", style: "object-position:" + (-k * TILE) + "px 0"});
    return el("figure", {class: "tile", title: label + " (" + kind + ")"}, img,
              el("figcaption", null, el("b", {text: label}),
                 " " + (kind === label || kind === "input" || kind === "error" ? "" : kind)));
  }

  function scoreTable(e) {
    const t = el("table", {class: "scores num"});
    t.append(el("tr", null, el("th", {text: "layer"}), el("th", {text: "kind"}), el("th", {text: "bbox"}),
                el("th", {text: "QA scores"})));
    for (const lay of e.layers) {
      const s = Object.keys(lay.scores).map(function (k) { return k + " " + fmt(lay.scores[k]); }).join(" · ");
      t.append(el("tr", null, el("td", {text: lay.name + (lay.parent ? " → " + lay.parent : "")}),
                  el("td", {text: lay.kind}), el("td", {text: "[" + lay.bbox.join(", ") + "]"}),
                  el("td", {text: s || "–"})));
    }
    return t;
  }

  function card(e) {
    const head = el("div", {class: "card-head"}, el("span", {class: "sid", text: e.id}),
                    el("span", {class: "badge " + e.st, text: e.st}));
    const v = e.v.length ? e.v[e.v.length - 1] : null;
    if (v) head.append(el("span", {class: "badge v-" + v.verdict, text: "verifier: " + v.verdict}));
    if (e.st === "accepted") {
      head.append(el("span", {class: "src", text: e.nl + " layers · " + e.no + " objects · " + e.ns + " shadows · " +
                                                   e.w + "×" + e.h}));
    }
    head.append(el("span", {class: "src", text: e.src}));
    const c = el("div", {class: "card " + e.st, "data-i": e.i}, head);
    if (e.img) {
      const tiles = el("div", {class: "tiles"});
      e.tiles.forEach(function (t, k) { tiles.append(tile(e, k, t[0], t[1])); });
      c.append(tiles);
    }
    const facts = el("div", {class: "facts"});
    if (e.rec) {
      facts.append(el("div", {text: "recomposition error of the stored layers: mean " + fmt(e.rec[0]) + ", max " +
                                    fmt(e.rec[1]) + " levels (error map: black 0, yellow ≥ 8)"}));
    }
    if (e.reason) facts.append(el("div", {class: "fail", text: (e.stage || "") + ": " + e.reason}));
    if (e.imgerr && e.st !== "accepted") facts.append(el("div", {class: "muted", text: "no thumbnail: " + e.imgerr}));
    for (const d of e.v) {
      const line = el("div", null, el("span", {class: "badge v-" + d.verdict, text: d.verdict}),
                      " attempt " + d.attempt + ": " + (d.reason || ""));
      for (const a of d.actions) line.append(el("div", {class: "muted", text: "→ " + a}));
      facts.append(line);
    }
    if (e.fails.length) facts.append(el("div", {class: "fail", text: "failed checks: " + e.fails.join(", ")}));
    facts.append(el("div", {class: "muted", text: "attempts " + e.att + " · tool time " + secs(e.tsum) +
                                                  " · error events " + e.nerr}));
    c.append(facts);
    if (e.layers.length) c.append(scoreTable(e));
    const btn = el("button", {type: "button", class: "trace-btn", text: "trace and checks"});
    const detail = el("div", {class: "detail", hidden: ""});
    btn.addEventListener("click", function () {
      if (!detail.hidden) { detail.hidden = true; return; }
      detail.hidden = false;
      detail.replaceChildren(el("span", {class: "muted", text: "loading…"}));
      loadTrace(e, function (t) { showDetail(detail, e, t); });
    });
    c.append(btn, detail);
    return c;
  }

  // ------------------------------------------------------------ traces (loaded on demand)
  const chunks = {}, waiting = {};
  window.LIWI_TRACES = function (n, data) {
    chunks[n] = data;
    for (const cb of waiting[n] || []) cb();
    delete waiting[n];
  };
  function loadTrace(e, done) {
    const n = e.c;
    const give = function () { done(chunks[n][String(e.i)]); };
    if (chunks[n]) return give();
    if (waiting[n]) { waiting[n].push(give); return; }
    waiting[n] = [give];
    const s = document.createElement("script");
    s.src = ASSETS + "trace/c" + String(n).padStart(5, "0") + ".js";
    document.head.append(s);
  }

  function showDetail(box, e, t) {
    box.replaceChildren();
    if (!t) { box.append(el("p", {class: "muted", text: "no trace recorded"})); return; }
    box.append(el("h4", {text: "Checks" + (t.checks.length ? " (attempt " + t.checks[0].attempt + ")" : "")}));
    if (t.checks.length) {
      const ct = el("table", {class: "num"});
      ct.append(el("tr", null, el("th", {text: "target"}), el("th", {text: "check"}), el("th", {text: "value"}),
                   el("th", {text: "bounds"}), el("th", {text: "result"})));
      for (const ch of t.checks) {
        ct.append(el("tr", {class: ch.ok ? "" : "bad"}, el("td", {text: ch.target}), el("td", {text: ch.name}),
                     el("td", {text: fmt(ch.value)}),
                     el("td", {text: "[" + (ch.low === null ? "-∞" : fmt(ch.low)) + ", " +
                                     (ch.high === null ? "∞" : fmt(ch.high)) + "]"}),
                     el("td", {text: ch.ok ? "pass" : "FAIL"})));
      }
      box.append(ct);
    } else {
      box.append(el("p", {class: "muted", text: t.chk_problem || "no checks"}));
    }
    box.append(el("h4", {text: "Agent trace " + t.tid + " (" + t.ev.length + " events" +
                               (t.more ? ", " + t.more + " more not shown" : "") + ")"}));
    const total = t.ev.reduce(function (m, r) { return Math.max(m, r[4] + r[5]); }, 0) || 1;
    const tl = el("table", {class: "timeline"});
    tl.append(el("tr", null, el("th", {text: "seq"}), el("th", {text: "node"}), el("th", {text: "tool"}),
                 el("th", {text: "when / how long"}), el("th", {text: "duration"}),
                 el("th", {text: "decision, error, input → output"})));
    let attempt = -1;
    for (const r of t.ev) {
      const seq = r[0], att = r[1], node = r[2], tool = r[3], at = r[4], dur = r[5], toolS = r[6];
      if (att !== attempt) {
        attempt = att;
        tl.append(el("tr", {class: "attempt"}, el("td", {colspan: 6, text: att ? "attempt " + att + " (retry)" :
                                                                     "attempt 0"})));
      }
      const bar = el("div", {class: "bar"}, el("span", {style: "left:" + (100 * at / total).toFixed(2) +
                                                          "%;width:" + (100 * dur / total).toFixed(2) + "%"}));
      const what = el("td");
      if (r[9]) what.append(el("div", null, el("b", {text: "decision "}), r[9]));
      if (r[10]) what.append(el("pre", {class: "fail", text: r[10]}));
      if (r[7] || r[8]) what.append(el("div", {class: "muted", text: (r[7] || "") + " → " + (r[8] || "")}));
      tl.append(el("tr", {class: (r[10] ? "err " : "") + (att ? "retry" : "")}, el("td", {text: seq}),
                   el("td", {text: node}), el("td", {text: tool || "–"}), el("td", null, bar),
                   el("td", {text: secs(dur) + (toolS !== null ? " (tool " + secs(toolS) + ")" : "")}), what));
    }
    box.append(tl);
  }

  // ------------------------------------------------------------ plain paged tables
  function pagedTable(box, headers, rows, cell, size, what) {
    let page = 0;
    const top = el("div", {class: "pager"}), table = el("table", {class: "num"});
    box.replaceChildren(top, table);
    function draw() {
      const pages = Math.ceil(rows.length / size);
      const part = rows.slice(page * size, page * size + size);
      table.replaceChildren(el("tr", null, ...headers.map(function (h) { return el("th", {text: h}); })));
      for (const r of part) table.append(el("tr", null, ...cell(r).map(function (c) {
        return c instanceof Node ? el("td", null, c) : el("td", {text: fmt(c)});
      })));
      pager(top, page, pages, rows.length, page * size + 1, page * size + part.length,
            function (p) { page = p; draw(); }, what);
    }
    draw();
  }
  function showInGallery(id) {
    F.q.value = id; F.status.value = ""; S.page = 0; renderGallery();
    $("gallery").scrollIntoView();
  }
  function idLink(id) {
    const b = el("button", {type: "button", class: "linkish", text: id});
    b.addEventListener("click", function () { showInGallery(id); });
    return b;
  }

  const rejects = ALL.filter(function (e) { return e.st !== "accepted"; });
  pagedTable($("reject-rows"), ["thumbnail", "sample", "source", "stage", "reason"], rejects, function (e) {
    const th = e.img ? el("img", {class: "thumb-s", src: ASSETS + e.img, alt: "source", loading: "lazy"})
      : el("span", {class: "muted", text: e.imgerr || "–"});
    return [th, idLink(e.id), el("span", {class: "src", text: e.src}), e.stage || "", el("span", {text: e.reason || ""})];
  }, 50, "rejects");

  document.querySelectorAll(".eval-rows").forEach(function (box) {
    const rep = DATA.evals[Number(box.getAttribute("data-eval"))];
    pagedTable(box, rep.fields, rep.rows, function (r) {
      return r.map(function (v, k) { return k === 0 ? idLink(v) : v; });
    }, 50, "scored samples");
  });

  // ------------------------------------------------------------ wiring
  for (const k of Object.keys(F)) {
    F[k].addEventListener(F[k].tagName === "INPUT" ? "input" : "change", function () { S.page = 0; renderGallery(); });
  }
  $("controls").addEventListener("reset", function () { setTimeout(function () { S.page = 0; renderGallery(); }, 0); });
  $("controls").addEventListener("submit", function (ev) { ev.preventDefault(); });
  renderGallery();
  document.documentElement.setAttribute("data-ready", "1");
})();
