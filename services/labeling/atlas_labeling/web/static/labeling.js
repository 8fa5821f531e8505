// The annotator's task page: one editor per task type (choices, spans, boxes, face pair),
// keyboard shortcuts, the lease heartbeat, and submit/skip/review through htmx.ajax (the
// server answers with HX-Redirect, or with a message it retargets to #flash).
// Conventions the service sets: span offsets are Unicode code points (not UTF-16 units, which
// is what JavaScript strings count); box coordinates are pixels of the image itself (not of
// the picture as displayed).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("task-data").textContent);
  const csrf = document.body.dataset.csrf;
  const started = performance.now();
  const task = document.getElementById("task");
  const workspace = document.getElementById("workspace");
  const actions = document.getElementById("actions");
  const flash = document.getElementById("flash");
  let expired = task.classList.contains("expired");

  // ---- small DOM helpers ---------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }
  const labelsOf = (kind) => data.labels.filter((l) => (l.kind || "class") === kind);
  const round2 = (v) => Math.round(v * 100) / 100;

  // ---- code points <-> UTF-16 -----------------------------------------------------------
  const text = data.text || "";
  const cps = Array.from(text); // one entry per code point
  const utf16At = [0]; // utf16At[i] = UTF-16 index of code point i
  for (const cp of cps) utf16At.push(utf16At[utf16At.length - 1] + cp.length);
  function cpIndex(utf16, roundUp) {
    // Binary search; a position inside a surrogate pair rounds to a whole character.
    let lo = 0, hi = cps.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (utf16At[mid] <= utf16) lo = mid; else hi = mid - 1;
    }
    return utf16At[lo] === utf16 || !roundUp ? lo : lo + 1;
  }
  const cpSlice = (start, end) => cps.slice(start, end).join("");

  // ---- choices (text/image classification, face pair) ------------------------------------
  function choicesEditor(options, multi, initial) {
    const chosen = new Set(initial || []);
    const box = el("div", { class: "choices", id: "choices", role: multi ? "group" : "radiogroup" });
    const buttons = options.map((opt, i) => {
      const b = el("button", {
        type: "button", class: "choice", "data-value": opt.value,
        "aria-pressed": "false", style: null,
        onclick: () => toggle(opt.value),
      }, i < 9 ? el("kbd", { text: String(i + 1) }) : null, " ", opt.title);
      if (opt.color) b.dataset.color = opt.color;
      box.append(b);
      return b;
    });
    function paint() {
      buttons.forEach((b) => {
        const on = chosen.has(b.dataset.value);
        b.classList.toggle("on", on);
        b.setAttribute("aria-pressed", on ? "true" : "false");
      });
    }
    function toggle(value) {
      if (multi) { chosen.has(value) ? chosen.delete(value) : chosen.add(value); }
      else { chosen.clear(); chosen.add(value); }
      paint();
    }
    paint();
    return {
      node: box,
      key(n) { if (n <= options.length) { toggle(options[n - 1].value); return true; } return false; },
      chosen: () => options.map((o) => o.value).filter((v) => chosen.has(v)),
      set(values) { chosen.clear(); (values || []).forEach((v) => chosen.add(v)); paint(); },
    };
  }

  function contentView() {
    if (data.text !== null && data.editor !== "spans") {
      return el("div", { class: "text-content", id: "item-text", text: data.text });
    }
    if (data.images.length === 1 && data.editor !== "boxes") {
      return el("div", { class: "image-frame" }, el("img", { src: data.images[0], alt: "item image", id: "item-image" }));
    }
    return null;
  }

  function classesEditor() {
    const options = labelsOf("class").map((l) => ({ value: l.name, title: l.name, color: l.color }));
    const ch = choicesEditor(options, data.multi_label, []);
    workspace.append(contentView() || "", el("p", { class: "hint", text: data.multi_label ? "Choose every label that applies." : "Choose one label." }), ch.node);
    return {
      key: (n) => ch.key(n),
      value: () => ({ classes: { labels: ch.chosen() } }),
      load: (v) => ch.set(v && v.classes ? v.classes.labels : []),
      describe: (v) => (v.classes ? v.classes.labels.join(", ") : ""),
      shortcuts: "1–9 choose a label",
    };
  }

  const PAIR = [
    { value: "FACE_PAIR_DECISION_SAME", title: "Same person" },
    { value: "FACE_PAIR_DECISION_DIFFERENT", title: "Different people" },
    { value: "FACE_PAIR_DECISION_UNSURE", title: "Unsure" },
  ];
  function facePairEditor() {
    const ch = choicesEditor(PAIR, false, []);
    const pair = el("div", { class: "pair" },
      ...data.images.map((src, i) => el("figure", {}, el("img", { src, alt: `face ${i + 1}`, id: `face-${i}` }), el("figcaption", { text: i ? "Right" : "Left" }))));
    workspace.append(pair, ch.node);
    return {
      key: (n) => ch.key(n),
      value: () => ({ face_pair: ch.chosen()[0] || "FACE_PAIR_DECISION_UNSPECIFIED" }),
      load: (v) => ch.set(v && v.face_pair ? [v.face_pair] : []),
      describe: (v) => (PAIR.find((p) => p.value === v.face_pair) || { title: v.face_pair }).title,
      shortcuts: "1 same · 2 different · 3 unsure",
    };
  }

  // ---- entity spans with relations -------------------------------------------------------
  function spansEditor() {
    const entities = labelsOf("entity");
    const relationLabels = labelsOf("relation");
    let spans = [];
    let relations = [];
    let nextId = 1;
    const palette = ["#ffd166", "#8ecae6", "#b9e769", "#f4a3c0", "#cdb4db", "#ffb703", "#90e0ef", "#e9c46a", "#a8dadc"];
    const colorOf = (name) => {
      const i = entities.findIndex((e) => e.name === name);
      return (entities[i] && entities[i].color) || palette[i % palette.length];
    };
    const picker = choicesEditor(entities.map((e) => ({ value: e.name, title: e.name, color: e.color })), false, entities.length ? [entities[0].name] : []);
    picker.node.id = "entity-labels";
    const textBox = el("div", { class: "span-text", id: "span-text" });
    const list = el("table", { class: "spans", id: "span-list" });
    const relBox = el("div", { class: "relations", id: "relations" });
    workspace.append(el("p", { class: "hint", text: "Pick an entity label, then select text with the mouse." }), picker.node, textBox, list, relBox);

    function render() {
      // Segments between every span boundary; each covered segment is coloured by its first
      // span. The container's text stays exactly the item text, so DOM offsets map back.
      const bounds = new Set([0, cps.length]);
      spans.forEach((s) => { bounds.add(s.start); bounds.add(s.end); });
      const cuts = [...bounds].sort((a, b) => a - b);
      textBox.replaceChildren();
      for (let i = 0; i + 1 < cuts.length; i++) {
        const [a, b] = [cuts[i], cuts[i + 1]];
        const covering = spans.filter((s) => s.start <= a && s.end >= b);
        const piece = cpSlice(a, b);
        if (!covering.length) { textBox.append(document.createTextNode(piece)); continue; }
        const mark = el("mark", { "data-span": covering.map((s) => s.span_id).join(" "), title: covering.map((s) => s.label).join(", ") }, piece);
        mark.style.setProperty("--mark", colorOf(covering[0].label));
        textBox.append(mark);
      }
      list.replaceChildren(el("tr", {}, el("th", { text: "Span" }), el("th", { text: "Label" }), el("th", { text: "Text" }), el("th", { text: "Offsets" }), el("th", {})));
      spans.forEach((s) => {
        const select = el("select", { "aria-label": "entity label", onchange: (e) => { s.label = e.target.value; render(); } },
          ...entities.map((e) => el("option", { value: e.name, text: e.name, selected: e.name === s.label })));
        list.append(el("tr", { "data-span-id": s.span_id },
          el("td", { text: s.span_id }), el("td", {}, select), el("td", { class: "span-quote", text: s.text }),
          el("td", { class: "muted", text: `[${s.start}, ${s.end})` }),
          el("td", {}, el("button", { type: "button", class: "danger small", text: "Remove", onclick: () => removeSpan(s.span_id) }))));
      });
      renderRelations();
    }
    function removeSpan(id) {
      spans = spans.filter((s) => s.span_id !== id);
      relations = relations.filter((r) => r.source_span_id !== id && r.target_span_id !== id);
      render();
    }
    function renderRelations() {
      const kept = ["rel-from", "rel-label", "rel-to"].map((id) => (relBox.querySelector("#" + id) || {}).value);
      relBox.replaceChildren();
      if (!relationLabels.length) return;
      const opts = () => spans.map((s) => el("option", { value: s.span_id, text: `${s.span_id}: ${s.text}` }));
      const from = el("select", { id: "rel-from", "aria-label": "from span" }, ...opts());
      const kind = el("select", { id: "rel-label", "aria-label": "relation label" }, ...relationLabels.map((r) => el("option", { value: r.name, text: r.name })));
      const to = el("select", { id: "rel-to", "aria-label": "to span" }, ...opts());
      if (spans.length > 1) to.selectedIndex = 1;
      [from, kind, to].forEach((select, i) => {
        if (kept[i] && [...select.options].some((o) => o.value === kept[i])) select.value = kept[i];
      });
      relBox.append(el("h2", { text: "Relations" }),
        el("div", { class: "row" }, from, kind, to, el("button", {
          type: "button", id: "add-relation", text: "Add relation", disabled: spans.length < 2,
          onclick: () => { relations.push({ source_span_id: from.value, target_span_id: to.value, label: kind.value }); renderRelations(); },
        })));
      const ul = el("ul", { id: "relation-list" });
      relations.forEach((r, i) => ul.append(el("li", {}, `${r.source_span_id} —${r.label}→ ${r.target_span_id} `,
        el("button", { type: "button", class: "danger small", text: "Remove", onclick: () => { relations.splice(i, 1); renderRelations(); } }))));
      relBox.append(ul);
    }
    textBox.addEventListener("mouseup", () => {
      if (expired) return;
      const sel = window.getSelection();
      if (!sel || sel.isCollapsed || !sel.rangeCount) return;
      const range = sel.getRangeAt(0);
      if (!textBox.contains(range.startContainer) || !textBox.contains(range.endContainer)) return;
      const before = document.createRange();
      before.setStart(textBox, 0);
      before.setEnd(range.startContainer, range.startOffset);
      const u16Start = before.toString().length;
      const u16End = u16Start + range.toString().length;
      let start = cpIndex(u16Start, false);
      let end = cpIndex(u16End, true);
      while (start < end && /\s/u.test(cps[start])) start++;
      while (end > start && /\s/u.test(cps[end - 1])) end--;
      sel.removeAllRanges();
      const label = picker.chosen()[0];
      if (end <= start || !label) return;
      spans.push({ span_id: `s${nextId++}`, start, end, label, text: cpSlice(start, end) });
      spans.sort((a, b) => a.start - b.start || a.end - b.end);
      render();
    });
    render();
    return {
      key: (n) => picker.key(n),
      value: () => ({ spans: { spans: spans.map((s) => ({ ...s })), relations: relations.map((r) => ({ ...r })) } }),
      load(v) {
        const given = (v && v.spans) || {};
        spans = (given.spans || []).map((s) => ({ span_id: s.span_id, start: s.start || 0, end: s.end || 0, label: s.label, text: s.text || cpSlice(s.start || 0, s.end || 0) }));
        relations = (given.relations || []).map((r) => ({ ...r }));
        nextId = spans.length + 1;
        while (spans.some((s) => s.span_id === `s${nextId}`)) nextId++;
        render();
      },
      describe: (v) => ((v.spans && v.spans.spans) || []).map((s) => `${s.label}: “${s.text || ""}”`).join(" · "),
      shortcuts: "1–9 choose the entity label · select text with the mouse",
    };
  }

  // ---- boxes on an image (OCR, faces, objects) -------------------------------------------
  function boxesEditor() {
    const classes = labelsOf("class");
    const ocr = data.task === "ocr";
    const needsLabel = data.task === "object_boxes";
    let boxes = [];
    let draft = null;
    const picker = classes.length ? choicesEditor(classes.map((c) => ({ value: c.name, title: c.name, color: c.color })), false, [classes[0].name]) : null;
    const img = el("img", { src: data.images[0], alt: "item image", id: "box-image", draggable: "false" });
    const canvas = el("canvas", { id: "box-canvas" });
    const stage = el("div", { class: "stage", id: "stage" }, img, canvas);
    const list = el("table", { class: "boxes", id: "box-list" });
    const help = ocr ? "Draw a box around each piece of text, then type what it says." : "Draw a box with the mouse around each " + (data.task === "face_boxes" ? "face." : "object.");
    workspace.append(el("p", { class: "hint", text: help }), picker ? picker.node : "", stage, list);

    const natural = () => ({ w: data.image_width || img.naturalWidth, h: data.image_height || img.naturalHeight });
    function fit() {
      const r = img.getBoundingClientRect();
      const ratio = window.devicePixelRatio || 1;
      canvas.style.width = `${r.width}px`;
      canvas.style.height = `${r.height}px`;
      canvas.width = Math.round(r.width * ratio);
      canvas.height = Math.round(r.height * ratio);
      draw();
    }
    function scale() {
      // Displayed size -> image pixels, from the rendered size (fractional CSS pixels too).
      const r = canvas.getBoundingClientRect();
      const n = natural();
      return { sx: n.w / r.width, sy: n.h / r.height, r };
    }
    function draw() {
      const ctx = canvas.getContext("2d");
      const { sx, sy } = scale();
      const ratio = window.devicePixelRatio || 1;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.lineWidth = 2;
      ctx.font = "12px system-ui, sans-serif";
      boxes.forEach((b, i) => {
        ctx.strokeStyle = "#ff3b30";
        ctx.strokeRect(b.x / sx, b.y / sy, b.width / sx, b.height / sy);
        const tag = `${i + 1}${b.label ? " " + b.label : ""}${b.text ? " “" + b.text + "”" : ""}`;
        ctx.fillStyle = "rgba(255,59,48,.85)";
        ctx.fillRect(b.x / sx, Math.max(0, b.y / sy - 16), ctx.measureText(tag).width + 8, 16);
        ctx.fillStyle = "#fff";
        ctx.fillText(tag, b.x / sx + 4, Math.max(12, b.y / sy - 4));
      });
      if (draft) {
        ctx.setLineDash([5, 4]);
        ctx.strokeStyle = "#2457c5";
        ctx.strokeRect(Math.min(draft.x0, draft.x1), Math.min(draft.y0, draft.y1), Math.abs(draft.x1 - draft.x0), Math.abs(draft.y1 - draft.y0));
        ctx.setLineDash([]);
      }
    }
    function renderList() {
      list.replaceChildren(el("tr", {}, el("th", { text: "#" }), el("th", { text: "Box (image pixels)" }),
        classes.length ? el("th", { text: "Label" }) : null, ocr ? el("th", { text: "Transcription" }) : null, el("th", {})));
      boxes.forEach((b, i) => {
        const row = el("tr", { "data-box": String(i) }, el("td", { text: String(i + 1) }),
          el("td", { class: "muted", text: `x ${Math.round(b.x)}, y ${Math.round(b.y)}, ${Math.round(b.width)}×${Math.round(b.height)}` }));
        if (classes.length) {
          row.append(el("td", {}, el("select", { "aria-label": "box label", onchange: (e) => { b.label = e.target.value; draw(); } },
            needsLabel ? null : el("option", { value: "", text: "—", selected: !b.label }),
            ...classes.map((c) => el("option", { value: c.name, text: c.name, selected: c.name === b.label })))));
        }
        if (ocr) {
          row.append(el("td", {}, el("input", { type: "text", class: "transcription", "aria-label": `transcription of box ${i + 1}`, value: b.text || "", placeholder: "what the box says", oninput: (e) => { b.text = e.target.value; draw(); } })));
        }
        row.append(el("td", {}, el("button", { type: "button", class: "danger small", text: "Remove", onclick: () => { boxes.splice(i, 1); renderList(); draw(); } })));
        list.append(row);
      });
    }
    function point(e) {
      const { r } = scale();
      return { x: Math.min(Math.max(e.clientX - r.left, 0), r.width), y: Math.min(Math.max(e.clientY - r.top, 0), r.height) };
    }
    canvas.addEventListener("pointerdown", (e) => {
      if (expired || e.button !== 0) return;
      const p = point(e);
      draft = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
      canvas.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!draft) return;
      const p = point(e);
      draft.x1 = p.x; draft.y1 = p.y;
      draw();
    });
    canvas.addEventListener("pointerup", () => {
      if (!draft) return;
      const { sx, sy } = scale();
      const n = natural();
      const d = draft;
      draft = null;
      if (Math.abs(d.x1 - d.x0) < 3 || Math.abs(d.y1 - d.y0) < 3) { draw(); return; }
      const x = Math.max(0, Math.min(d.x0, d.x1) * sx);
      const y = Math.max(0, Math.min(d.y0, d.y1) * sy);
      const box = {
        x: round2(x), y: round2(y),
        width: round2(Math.min(n.w, Math.max(d.x0, d.x1) * sx) - x),
        height: round2(Math.min(n.h, Math.max(d.y0, d.y1) * sy) - y),
        label: picker ? picker.chosen()[0] || "" : "",
        text: "",
      };
      boxes.push(box);
      renderList();
      draw();
      if (ocr) { const inputs = list.querySelectorAll("input.transcription"); inputs[inputs.length - 1].focus(); }
    });
    img.addEventListener("load", fit);
    window.addEventListener("resize", fit);
    if (img.complete) fit();
    renderList();
    return {
      key: (n) => (picker ? picker.key(n) : false),
      value: () => ({ boxes: { boxes: boxes.map((b) => ({ x: b.x, y: b.y, width: b.width, height: b.height, label: b.label, text: b.text })) } }),
      load(v) {
        boxes = ((v && v.boxes && v.boxes.boxes) || []).map((b) => ({ x: b.x || 0, y: b.y || 0, width: b.width || 0, height: b.height || 0, label: b.label || "", text: b.text || "" }));
        renderList();
        draw();
      },
      describe: (v) => `${((v.boxes && v.boxes.boxes) || []).length} box(es)` + (((v.boxes && v.boxes.boxes) || []).some((b) => b.text) ? ": " + v.boxes.boxes.map((b) => `“${b.text || ""}”`).join(", ") : ""),
      shortcuts: picker ? "1–9 choose the label of new boxes · drag on the image to draw" : "drag on the image to draw a box",
    };
  }

  const editors = { classes: classesEditor, face_pair: facePairEditor, spans: spansEditor, boxes: boxesEditor };
  const editor = editors[data.editor]();

  // ---- sending -------------------------------------------------------------------------
  function send(url, values) {
    if (expired) return;
    task.querySelectorAll("button").forEach((b) => (b.disabled = true));
    htmx.ajax("POST", url, {
      source: task,
      target: "#flash",
      swap: "innerHTML",
      headers: { "X-CSRF-Token": csrf },
      values: { ...values, next_url: data.next_url, request_id: data.request_id, project_id: data.project_id },
    }).finally(() => { if (!expired) task.querySelectorAll("button").forEach((b) => (b.disabled = false)); });
  }
  const elapsed = () => String(Math.round(performance.now() - started));
  function submit(value) {
    send(data.submit_url, { value: JSON.stringify(value || editor.value()), duration_ms: elapsed() });
  }
  function skip() { send(data.skip_url, {}); }
  let reviewing = null;
  function review(decision) {
    if (!reviewing) return;
    const values = { decision, comment: (document.getElementById("review-comment") || {}).value || "" };
    if (decision === "correct") values.value = JSON.stringify(editor.value());
    send(`/annotations/${reviewing.annotation_id}/review`, values);
  }

  // ---- suggestion (pre-label) and review panels -----------------------------------------
  if (data.mode === "annotate" && data.suggestion) {
    const s = data.suggestion;
    editor.load(s.value);
    document.getElementById("suggestion").append(el("div", { class: "suggestion", id: "suggestion-box" },
      el("span", {}, "Suggested by ", el("strong", { text: s.model }), ` (score ${Number(s.score).toFixed(2)}): `),
      el("strong", { class: "suggested", text: editor.describe(s.value) }),
      el("button", { type: "button", class: "primary", id: "accept-suggestion", onclick: () => submit(s.value) }, "Accept suggestion ", el("kbd", { text: "A" })),
      el("span", { class: "muted", text: " or change it below and submit." })));
  }
  if (data.mode === "review") {
    const box = document.getElementById("annotations");
    const rows = el("div", { class: "review-list", id: "review-list" });
    function pick(a) {
      reviewing = a;
      editor.load(a.value);
      rows.querySelectorAll("[data-annotation]").forEach((r) => r.classList.toggle("on", r.dataset.annotation === a.annotation_id));
    }
    data.annotations.forEach((a) => rows.append(el("button", { type: "button", class: "review-item", "data-annotation": a.annotation_id, onclick: () => pick(a) },
      el("strong", { text: a.author }), " ", editor.describe(a.value))));
    box.append(el("h2", { text: "Annotations to review" }), rows);
    if (data.annotations.length) pick(data.annotations[0]);
  }

  // ---- buttons and shortcuts -----------------------------------------------------------
  if (data.mode === "review") {
    actions.append(
      el("button", { type: "button", class: "primary", id: "review-accept", onclick: () => review("accept") }, "Accept ", el("kbd", { text: "A" })),
      el("button", { type: "button", class: "danger", id: "review-reject", onclick: () => review("reject") }, "Reject ", el("kbd", { text: "R" })),
      el("button", { type: "button", id: "review-correct", onclick: () => review("correct") }, "Save my correction ", el("kbd", { text: "C" })),
      el("input", { type: "text", id: "review-comment", placeholder: "comment (optional)", "aria-label": "review comment" }));
  } else {
    actions.append(
      el("button", { type: "button", class: "primary", id: "submit", onclick: () => submit() }, "Submit ", el("kbd", { text: "Enter" })),
      el("button", { type: "button", id: "skip", onclick: skip }, "Skip ", el("kbd", { text: "Shift+S" })));
  }
  document.getElementById("shortcuts").textContent = "Shortcuts: " + editor.shortcuts +
    (data.mode === "review" ? " · A accept · R reject · C save correction" : " · Enter submit · Shift+S skip" + (data.suggestion ? " · A accept suggestion" : ""));

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (expired || e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (/^[1-9]$/.test(e.key) && editor.key(Number(e.key))) { e.preventDefault(); return; }
    if (data.mode === "review") {
      const map = { a: "accept", r: "reject", c: "correct" };
      if (map[e.key]) { e.preventDefault(); review(map[e.key]); }
      return;
    }
    if (e.key === "Enter") { e.preventDefault(); submit(); }
    else if (e.key === "S" && e.shiftKey) { e.preventDefault(); skip(); }
    else if (e.key === "a" && data.suggestion) { e.preventDefault(); submit(data.suggestion.value); }
  });

  // ---- lease: countdown and heartbeat --------------------------------------------------
  // The lease is renewed only while the person works on the page (any pointer or key
  // activity since the last beat), so an abandoned tab does not hold the item forever; once
  // the lease should have run out, the service is asked and its answer is shown.
  const lease = document.getElementById("lease");
  let expiresAt = Date.now() + data.expires_in_s * 1000;
  let lastActivity = 0;
  let lastBeat = Date.now();
  ["pointerdown", "pointermove", "keydown", "input", "wheel"].forEach((ev) =>
    document.addEventListener(ev, () => { lastActivity = Date.now(); }, { passive: true, capture: true }));
  function markExpired() {
    expired = true;
    task.classList.add("expired");
    task.querySelectorAll("button, input, select").forEach((b) => (b.disabled = true));
    const link = document.getElementById("after-expiry");
    if (link) link.setAttribute("href", data.next_url);
    lease.textContent = "lease expired";
  }
  function showLease() {
    if (expired) return;
    const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    lease.textContent = left > 0 ? `lease: ${left >= 120 ? Math.round(left / 60) + " min" : left + " s"} left` : "lease: checking…";
  }
  async function beat() {
    if (expired) return;
    const active = lastActivity > lastBeat;
    if (!active && Date.now() < expiresAt) return;
    lastBeat = Date.now();
    let resp;
    try {
      resp = await fetch(data.renew_url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf, "HX-Request": "true" } });
    } catch (err) {
      return; // offline for a moment: the next beat tries again
    }
    if (resp.ok) {
      expiresAt = Date.now() + (await resp.json()).expires_in_s * 1000;
      showLease();
      return;
    }
    const to = resp.headers.get("HX-Redirect");
    if (to) { window.location.href = to; return; }
    flash.innerHTML = await resp.text();
    if (flash.querySelector('[data-reason="LEASE_EXPIRED"], [data-reason="ASSIGNMENT_CLOSED"]')) markExpired();
  }
  document.body.addEventListener("htmx:afterSwap", () => {
    if (flash.querySelector('[data-reason="LEASE_EXPIRED"]')) markExpired();
  });
  if (expired) markExpired();
  else {
    showLease();
    setInterval(showLease, 1000);
    setInterval(beat, data.heartbeat_s * 1000);
  }
})();
