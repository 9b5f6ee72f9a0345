"use strict";
// view.js: the page: virtual list of rows, controls, search, details and
// statistics panels, keyboard and URL. Trace strings only ever reach the page
// through textContent, never as HTML.

const ROW_HEIGHT = 22;
const INDENT = 18;
const MAX_SCROLL_PX = 8_000_000; // beyond this the scrollbar is scaled
const AUTO_OPEN_ROWS = 200;

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

function formatCount(n) {
  return n.toLocaleString("en-US");
}

function plural(n, word) {
  return `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;
}

/** What the trace does not hold, from its metadata (ring buffer, --max-calls, a killed run). */
function recordingNotes(meta) {
  const notes = [];
  if (meta.discarded_calls) {
    notes.push(`${plural(meta.discarded_calls, "older call")} discarded (ring buffer: the last ${formatCount(meta.ring_buffer)} calls of each process, with the calls they ran in)`);
  }
  if (meta.dropped_calls) notes.push(`${plural(meta.dropped_calls, "call")} not recorded (past --max-calls)`);
  if (meta.truncated) notes.push("truncated: the run was killed; the calls still open then are unfinished");
  return notes;
}

function formatDuration(ns) {
  if (ns < 1e3) return `${Math.round(ns)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

/** "0-8, 10, 12-15": 0-based iteration numbers, as in the terminal view. */
function iterationList(iterations) {
  const ranges = [];
  let start = iterations[0], prev = start;
  for (let i = 1; i <= iterations.length; i++) {
    const value = iterations[i];
    if (value === prev + 1) { prev = value; continue; }
    ranges.push(start === prev ? `${start}` : `${start}-${prev}`);
    start = prev = value;
  }
  return ranges.length > 8 ? ranges.slice(0, 8).join(", ") + `, … ${ranges.length - 8} more` : ranges.join(", ");
}

class Viewer {
  constructor(model, config) {
    this.model = model;
    this.config = config;
    this.state = new TreeState(model);
    this.rows = [];
    this.selected = -1; // index into rows
    this.selectedKey = null;
    this.matches = null; // Int32Array of matching call rows
    this.matchFunctions = null; // Uint8Array per function
    this.matchIndex = -1;
    this.pool = [];
    this.viewport = $("viewport");
    this.layer = $("layer");
    this.spacer = $("spacer");
  }

  start() {
    const m = this.model;
    this.showHeader();
    this.bindControls();
    this.showStatistics();
    if (!m.hasPatterns) {
      $("patterns").checked = false;
      $("patterns").disabled = true;
      $("patterns-label").title = "This viewer was built with --no-patterns";
    }
    if (!m.n) {
      $("empty").hidden = false;
      return;
    }
    this.state.autoOpen(AUTO_OPEN_ROWS);
    this.rebuild();
    const call = new URLSearchParams(location.hash.slice(1)).get("call");
    const row = call === null ? NaN : Number(call) - 1;
    if (Number.isInteger(row) && row >= 0 && row < m.n) this.revealRow(row);
    else this.select(0, false);
  }

  showHeader() {
    const meta = this.model.meta.metadata || {};
    const stats = this.model.stats;
    $("title").textContent = this.config.title;
    const parts = [plural(stats.calls, "call"), plural(stats.threads, "thread"), formatDuration(stats.duration_ns)];
    if (stats.patterns) parts.push(plural(stats.patterns.groups, "pattern group"));
    $("subtitle").textContent = parts.join(" · ");
    const argv = meta.argv ? meta.argv.join(" ") : "";
    $("subtitle").title = argv;
    const notes = recordingNotes(meta);
    $("notice").textContent = notes.join(" · ");
    $("notice").hidden = notes.length === 0;
  }

  // -- rows ------------------------------------------------------------------------------

  /** Rebuild the visible rows from the state, keeping the selection by key. */
  rebuild() {
    this.rows = this.state.flatten(this.state.threadNodes());
    this.layout();
    if (this.selectedKey !== null) {
      this.selected = this.indexOfKey(this.selectedKey);
    }
    this.render();
  }

  /** Row index of the node with ``key`` (-1 when not visible). */
  indexOfKey(key) {
    const match = /^(?:.*\/)?c(\d+)$/.exec(key);
    const row = match ? Number(match[1]) : -1;
    return this.rows.findIndex((node) => hasKey(node, key, row));
  }

  layout() {
    const total = this.rows.length * ROW_HEIGHT;
    const view = this.viewport.clientHeight;
    this.scaled = total > MAX_SCROLL_PX;
    const height = this.scaled ? MAX_SCROLL_PX : total;
    this.spacer.style.height = Math.max(0, height - view) + "px";
    $("row-count").textContent = plural(this.rows.length, "row");
  }

  /** The fractional row index at the top of the viewport. */
  topRow() {
    const view = this.viewport.clientHeight;
    const top = this.viewport.scrollTop;
    if (!this.scaled) return top / ROW_HEIGHT;
    const range = MAX_SCROLL_PX - view;
    const rowsRange = this.rows.length - view / ROW_HEIGHT;
    return range > 0 ? (top / range) * rowsRange : 0;
  }

  scrollToRow(index) {
    const view = this.viewport.clientHeight;
    const visible = view / ROW_HEIGHT;
    const top = this.topRow();
    if (index >= top && index + 1 <= top + visible) return;
    const target = Math.max(0, index - Math.floor(visible / 3));
    if (!this.scaled) this.viewport.scrollTop = target * ROW_HEIGHT;
    else {
      const rowsRange = this.rows.length - visible;
      this.viewport.scrollTop = rowsRange > 0 ? (target / rowsRange) * (MAX_SCROLL_PX - view) : 0;
    }
  }

  render() {
    const view = this.viewport.clientHeight;
    const top = this.topRow();
    const first = Math.floor(top);
    const count = Math.ceil(view / ROW_HEIGHT) + 2;
    while (this.pool.length < count) this.pool.push(this.makeRow());
    for (let i = 0; i < this.pool.length; i++) {
      const element = this.pool[i];
      const index = first + i;
      if (i >= count || index >= this.rows.length) {
        element.hidden = true;
        continue;
      }
      element.hidden = false;
      element.style.transform = `translateY(${(index - top) * ROW_HEIGHT}px)`;
      this.fillRow(element, index);
    }
  }

  makeRow() {
    const row = el("div", "row");
    row.setAttribute("role", "treeitem");
    row.append(el("div", "boxes"), el("span", "twisty"), el("span", "icon"), el("span", "label"),
      el("span", "loc"), el("span", "badges"));
    const right = el("div", "right");
    right.append(el("span", "thread"), el("span", "dur"), el("span", "bar"));
    right.lastChild.append(el("span", "fill"));
    row.append(right);
    row.addEventListener("click", (event) => this.onRowClick(row, event));
    this.layer.append(row);
    return row;
  }

  fillRow(element, index) {
    const node = this.rows[index];
    const m = this.model;
    element.dataset.index = index;
    const [boxes, twisty, icon, label, loc, badges, right] = element.children;
    const indent = 8 + node.depth * INDENT;
    twisty.style.marginLeft = indent + "px";
    twisty.textContent = node.expandable ? (this.state.isOpen(node) ? "▾" : "▸") : "";
    element.setAttribute("aria-expanded", node.expandable ? String(this.state.isOpen(node)) : "");
    this.fillBoxes(boxes, node, index);
    let classes = "row kind-" + node.kind;
    if (index === this.selected) classes += " selected";
    loc.textContent = "";
    badges.replaceChildren();
    const [thread, dur, bar] = right.children;
    thread.textContent = "";
    let duration = null;
    const info = this.describe(node);
    icon.textContent = node.mark ? (node.mark === "+" ? "+" : "−") : "";
    icon.dataset.icon = node.mark ? "" : info.icon;  // drawn by the style sheet (no emoji font needed)
    if (node.mark) classes += node.mark === "+" ? " extra" : " missing";
    label.textContent = info.label;
    if (node.kind === "call") {
      const row = node.row;
      const f = m.functions[m.function[row]];
      const flags = m.flags[row];
      if (flags & EXTERNAL) {
        classes += " external";
        badges.append(el("span", "badge ext", "external"));
      } else {
        loc.textContent = `[${f.basename}:${f.line}]`;
      }
      if (flags & RAISED) badges.append(el("span", "badge exc", "raised"));
      if (flags & RESUMED) badges.append(el("span", "badge gen", "resumed"));
      if (flags & YIELDED) badges.append(el("span", "badge gen", "yielded"));
      if (flags & UNFINISHED) badges.append(el("span", "badge exc", "unfinished"));
      if (flags & FINALIZER) {  // run by the garbage collector, not called by the program
        classes += " finalizer";
        badges.append(el("span", "badge fin", "finalizer"));
      }
      if (this.matchFunctions && this.matchFunctions[m.function[row]]) classes += " match";
      if (m.stats.threads > 1) thread.textContent = m.threads[m.thread[row]].name;
      duration = m.duration[row];
    } else {
      duration = info.duration;
    }
    element.className = classes;
    dur.textContent = duration === null ? "" : formatDuration(duration);
    const fill = bar.firstChild;
    if (duration === null) {
      bar.style.visibility = "hidden";
    } else {
      bar.style.visibility = "";
      const share = duration / m.maxDuration;
      fill.style.width = Math.max(share * 100, duration > 0 ? 0.5 : 0) + "%";
      bar.title = `${(share * 100).toFixed(1)}% of the longest call`;
    }
  }

  /** Nested group boxes: one layer per enclosing group, closed at the box's last row. */
  fillBoxes(boxes, node, index) {
    const layers = node.kind === "group" ? node.rails.concat([node.depth]) : node.rails;
    while (boxes.children.length < layers.length) boxes.append(el("span", "box"));
    const next = this.rows[index + 1];
    for (let k = 0; k < boxes.children.length; k++) {
      const box = boxes.children[k];
      if (k >= layers.length) {
        box.hidden = true;
        continue;
      }
      box.hidden = false;
      box.style.left = 2 + layers[k] * INDENT + "px";
      const opens = node.kind === "group" && k === layers.length - 1;
      const nextLayers = next ? next.rails : [];
      const closes = !next || nextLayers.length <= k || nextLayers[k] !== layers[k] ||
        (next.kind === "group" && next.depth === layers[k]);
      box.className = "box level" + (k % 4) + (opens ? " top" : "") + (closes ? " bottom" : "");
    }
  }

  /** Icon, label and duration of a non-call node (calls: name only). */
  describe(node) {
    const m = this.model;
    switch (node.kind) {
      case "thread": {
        const info = m.threads[node.t];
        const roots = m.threadRoots[node.t];
        const calls = m.callsBetween(roots, 0, roots.length);
        return { icon: "thread", label: `Thread ${info.label} · ${plural(calls, "call")}`, duration: m.spanBetween(roots, 0, roots.length) };
      }
      case "call": {
        const f = m.functions[m.function[node.row]];
        const name = m.isExternal(node.row) && f.module ? `${f.module}.${f.qualname}` : f.qualname;
        return { icon: "", label: name, duration: null };
      }
      case "group":
        return { icon: "group", label: this.groupLabel(node), duration: this.groupSpan(node) };
      case "missing": {
        const of = node.of;
        const label = of.kind === "call" ? this.describe(of).label : `Nested pattern: ${this.groupLabel(of)}`;
        return { icon: "", label: `${label} (not in this variant)`, duration: null };
      }
      case "template": {
        const times = node.g.iterationCount(0);
        return { icon: "template", label: `Pattern template (repeated ${plural(times, "time")})`, duration: null };
      }
      case "variant": {
        const variant = node.g.variants[node.v];
        const j = variant.representative;
        const calls = m.callsBetween(node.steps, node.g.bound(j) + node.shift, node.g.bound(j + 1) + node.shift);
        const count = node.g.iterationCount(node.v);
        const which = iterationList(variant.iterations);
        return { icon: "variant", label: `Variant ${node.v + 1}: ${plural(count, "iteration")} (${count === 1 ? "iteration" : "iterations"} ${which}), ${plural(calls, "call")} each`, duration: null };
      }
      case "range": {
        const total = formatCount(node.total);
        if (node.items && node.items[0].kind === "rep") {  // iterations are numbered from 0
          return { icon: "range", label: `iterations ${node.lo}-${node.hi - 1} of ${total}`, duration: null };
        }
        const what = node.steps ? "calls" : "steps";
        return { icon: "range", label: `${what} ${formatCount(node.lo + 1)}-${formatCount(node.hi)} of ${total}`, duration: null };
      }
      case "reps":
        return { icon: "reps", label: `All ${formatCount(node.g.repetitions)} iterations, one by one`, duration: null };
      case "rep": {
        const { g, shift, steps, j } = node;
        const lo = g.bound(j) + shift, hi = g.bound(j + 1) + shift;
        const first = steps[lo] + 1, last = m.lastBetween(steps, lo, hi) + 1;
        let label = `Iteration ${j} (calls #${first}-#${last}, ${plural(m.callsBetween(steps, lo, hi), "call")})`;
        if (g.variants.length > 1) label += ` · variant ${g.variantIndex(j) + 1}`;
        return { icon: "rep", label, duration: m.spanBetween(steps, lo, hi) };
      }
    }
    return { icon: "", label: "", duration: null };
  }

  groupLabel(node) {
    if (node.label) return node.label;
    const m = this.model;
    const { g, shift, steps } = node;
    const rep = g.variants[0].representative;
    const perRep = m.callsBetween(steps, g.bound(rep) + shift, g.bound(rep + 1) + shift);
    const lo = g.start + shift, hi = g.stop + shift;
    const first = steps[lo] + 1, last = m.lastBetween(steps, lo, hi) + 1;
    const total = m.callsBetween(steps, lo, hi);
    let text = `${formatCount(g.repetitions)}x repetitions of ${plural(perRep, "call")}`;
    if (g.variants.length > 1) text += ` (${g.variants.length} variants)`;
    text += ` (calls #${first}-#${last}, total: ${plural(total, "call")})`;
    node.label = text;
    return text;
  }

  groupSpan(node) {
    if (node.span === undefined) node.span = this.model.spanBetween(node.steps, node.g.start + node.shift, node.g.stop + node.shift);
    return node.span;
  }

  // -- selection and opening ---------------------------------------------------------------

  onRowClick(element, event) {
    const index = Number(element.dataset.index);
    const node = this.rows[index];
    if (!node) return;
    this.select(index, false);
    if (node.expandable && (event.target.classList.contains("twisty") || event.detail === 2 || node.kind !== "call")) {
      this.toggle(index);
    }
    this.viewport.focus({ preventScroll: true });
  }

  select(index, scroll = true) {
    if (index < 0 || index >= this.rows.length) return;
    this.selected = index;
    const node = this.rows[index];
    this.selectedKey = node.key;
    if (scroll) this.scrollToRow(index);
    this.render();
    this.showDetails(node);
    if (node.kind === "call") history.replaceState(null, "", "#call=" + (node.row + 1));
  }

  /** Open or close the node at ``index``, splicing its rows in or out. */
  toggle(index, open) {
    const node = this.rows[index];
    if (!node || !node.expandable) return;
    const isOpen = this.state.isOpen(node);
    if (open === undefined) open = !isOpen;
    if (open === isOpen) return;
    this.state.setOpen(node, open);
    const before = this.rows.slice(0, index + 1);
    let after;
    if (open) {
      const inner = this.state.flatten(this.state.children(node));
      after = inner.concat(this.rows.slice(index + 1));
    } else {
      let end = index + 1;
      while (end < this.rows.length && this.rows[end].depth > node.depth) end++;
      after = this.rows.slice(end);
    }
    this.rows = before.concat(after);
    this.layout();
    this.render();
  }

  revealRow(row) {
    const key = this.state.reveal(row);
    $("external").checked = !this.state.hideExternal;
    this.selectedKey = key;
    this.rebuild();
    const index = this.indexOfKey(key);
    if (index >= 0) this.select(index);
  }

  parentIndex(index) {
    const depth = this.rows[index].depth;
    for (let i = index - 1; i >= 0; i--) if (this.rows[i].depth < depth) return i;
    return -1;
  }

  onKey(event) {
    if (event.target !== this.viewport) return;
    const index = this.selected;
    const node = this.rows[index];
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / ROW_HEIGHT) - 1);
    let handled = true;
    switch (event.key) {
      case "ArrowDown": this.select(Math.min(this.rows.length - 1, index + 1)); break;
      case "ArrowUp": this.select(Math.max(0, index - 1)); break;
      case "PageDown": this.select(Math.min(this.rows.length - 1, index + page)); break;
      case "PageUp": this.select(Math.max(0, index - page)); break;
      case "Home": this.select(0); break;
      case "End": this.select(this.rows.length - 1); break;
      case "ArrowRight":
        if (node && node.expandable && !this.state.isOpen(node)) this.toggle(index, true);
        else this.select(Math.min(this.rows.length - 1, index + 1));
        break;
      case "ArrowLeft":
        if (node && node.expandable && this.state.isOpen(node)) this.toggle(index, false);
        else if (this.parentIndex(index) >= 0) this.select(this.parentIndex(index));
        break;
      case "Enter":
      case " ":
        this.toggle(index);
        break;
      default:
        handled = false;
    }
    if (handled) event.preventDefault();
  }

  // -- controls ----------------------------------------------------------------------------

  bindControls() {
    this.viewport.addEventListener("scroll", () => this.render(), { passive: true });
    this.viewport.addEventListener("keydown", (event) => this.onKey(event));
    window.addEventListener("resize", () => { this.layout(); this.render(); });
    $("expand-all").addEventListener("click", () => { this.state.expandAll(); this.rebuild(); });
    $("collapse-all").addEventListener("click", () => { this.state.collapseAll(); this.rebuild(); });
    $("patterns").addEventListener("change", (event) => {
      this.state.patterns = event.target.checked;
      this.rebuild();
    });
    $("external").addEventListener("change", (event) => {
      this.state.hideExternal = !event.target.checked;
      this.rebuild();
    });
    let timer = null;
    $("search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.search($("search").value, false), 250);
    });
    $("search").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        clearTimeout(timer);
        if (this.matchesFor !== $("search").value) this.search($("search").value, true);
        else this.nextMatch(event.shiftKey ? -1 : 1);
        event.preventDefault();
      } else if (event.key === "Escape") {
        $("search").value = "";
        this.search("", false);
      }
    });
    $("next-match").addEventListener("click", () => this.nextMatch(1));
    $("prev-match").addEventListener("click", () => this.nextMatch(-1));
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => this.showTab(tab.dataset.tab));
    }
  }

  showTab(name) {
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
    $("details").hidden = name !== "details";
    $("statistics").hidden = name !== "statistics";
  }

  // -- search ------------------------------------------------------------------------------

  /** Calls whose function name, qualified name, module or file contains ``text``. */
  search(text, jump) {
    const m = this.model;
    const query = text.trim().toLowerCase();
    this.matchesFor = text;
    if (!query) {
      this.matches = null;
      this.matchFunctions = null;
      $("match-count").textContent = "";
      this.render();
      return;
    }
    const wanted = new Uint8Array(m.functions.length);
    m.functions.forEach((f, i) => {
      const haystack = `${f.qualname}\n${f.module}\n${f.file}`.toLowerCase();
      if (haystack.includes(query)) wanted[i] = 1;
    });
    let count = 0;
    for (let i = 0; i < m.n; i++) if (wanted[m.function[i]]) count++;
    const matches = new Int32Array(count);
    for (let i = 0, k = 0; i < m.n; i++) if (wanted[m.function[i]]) matches[k++] = i;
    this.matches = matches;
    this.matchFunctions = wanted;
    this.matchIndex = -1;
    $("match-count").textContent = count ? `${formatCount(count)} matches` : "no matches";
    this.render();
    if (jump || count) this.nextMatch(1);
  }

  nextMatch(direction) {
    if (!this.matches || !this.matches.length) return;
    const count = this.matches.length;
    this.matchIndex = (this.matchIndex + direction + count) % count;
    this.revealRow(this.matches[this.matchIndex]);
    $("match-count").textContent = `${formatCount(this.matchIndex + 1)} of ${formatCount(count)}`;
  }

  // -- details -----------------------------------------------------------------------------

  async showDetails(node) {
    const panel = $("details-body");
    const m = this.model;
    const table = el("dl", "facts");
    const add = (term, value, className) => {
      table.append(el("dt", "", term));
      const dd = el("dd", className || "", value);
      table.append(dd);
      return dd;
    };
    panel.replaceChildren();
    if (node.kind !== "call") {
      const info = this.describe(node);
      const heading = el("h2", "", node.kind === "group" ? "Pattern group" : info.label);
      const icon = el("span", "icon");
      icon.dataset.icon = info.icon;
      heading.prepend(icon);
      panel.append(heading);
      if (node.kind === "group") this.groupFacts(node, add);
      else if (info.duration !== null) add("duration", formatDuration(info.duration));
      panel.append(table);
      return;
    }
    const row = node.row;
    const f = m.functions[m.function[row]];
    panel.append(el("h2", "", f.qualname));
    add("call id", `#${row + 1}`);
    add("function", f.name);
    add("qualified name", f.qualname);
    add("module", f.module || "—");
    add("file", f.external && !f.file ? "—" : `${f.file}:${f.line}`, "path");
    add("thread", m.threads[m.thread[row]].label);
    add("start", `+${formatDuration(m.start[row])} (${new Date((m.meta.origin_ns + m.start[row]) / 1e6).toISOString()})`);
    add("duration", formatDuration(m.duration[row]));
    add("self time", formatDuration(m.selfTime(row)));
    add("calls inside", formatCount(m.size[row] - 1));
    const kinds = [];
    if (m.flags[row] & EXTERNAL) kinds.push("external call (out of scope)");
    if (m.flags[row] & RESUMED) kinds.push("generator/coroutine resumed");
    if (m.flags[row] & UNFINISHED) kinds.push("unfinished when recording stopped");
    if (m.flags[row] & FINALIZER) kinds.push("finalizer (run by the garbage collector: __del__, weakref callback)");
    if (kinds.length) add("kind", kinds.join(", "));
    const spanCell = add("span id", "…");
    const argsCell = add("arguments", "…");
    const valueCell = add(m.flags[row] & YIELDED ? "yielded" : "returned", "…");
    panel.append(table);
    const details = await m.details(this.config);
    if (this.selectedKey !== node.key) return;
    if (details.task[row] >= 0) add("asyncio task", details.strings[details.task[row]]);
    spanCell.textContent = details.span_id[row];
    const argIndex = details.args[row];
    argsCell.textContent = "";
    if (argIndex >= 0) {
      const values = details.arg_tuples[argIndex];
      const list = el("ul", "args");
      f.argnames.forEach((name, i) => {
        if (i < values.length && values[i] >= 0) {
          const item = el("li");
          item.append(el("span", "arg-name", name), el("span", "", " = "), el("span", "arg-value", details.strings[values[i]]));
          list.append(item);
        }
      });
      argsCell.append(list);
    } else {
      argsCell.textContent = "(not captured)";
    }
    const valueIndex = details.value[row];
    valueCell.textContent = valueIndex >= 0 ? details.strings[valueIndex] : "—";
    if (m.flags[row] & RAISED) {
      const index = details.exception[row];
      const [type, message] = index >= 0 ? details.exceptions[index] : ["<unknown>", ""];
      const line = details.raise_line[row];
      const where = line > 0 ? ` (at line ${line})` : "";
      const cell = add("exception", `${type}: ${message}${where}`, "exception");
      cell.previousSibling.className = "exception";
    }
  }

  groupFacts(node, add) {
    const m = this.model;
    const { g, shift, steps } = node;
    add("pattern", this.groupLabel(node));
    add("repetitions", formatCount(g.repetitions));
    add("variants", g.variants.length > 1 ? `${g.variants.length} (a near-repeat)` : "1 (identical repetitions)");
    add("duration", formatDuration(this.groupSpan(node)));
    let min = Infinity, max = 0;
    for (let j = 0; j < g.repetitions; j++) {
      const span = m.spanBetween(steps, g.bound(j) + shift, g.bound(j + 1) + shift);
      if (span < min) min = span;
      if (span > max) max = span;
    }
    add("per repetition", `mean ${formatDuration(this.groupSpan(node) / g.repetitions)}, min ${formatDuration(min)}, max ${formatDuration(max)}`);
    add("first call", `#${steps[g.start + shift] + 1}`);
  }

  // -- statistics --------------------------------------------------------------------------

  showStatistics() {
    const m = this.model;
    const stats = m.stats;
    const body = $("statistics");
    body.replaceChildren();
    const facts = el("dl", "facts");
    const add = (term, value) => facts.append(el("dt", "", term), el("dd", "", value));
    add("calls", formatCount(stats.calls));
    add("external calls", formatCount(stats.external_calls));
    add("distinct functions", formatCount(stats.functions));
    add("max depth", formatCount(stats.max_depth));
    add("threads", formatCount(stats.threads));
    add("duration", formatDuration(stats.duration_ns));
    if (stats.patterns) {
      const p = stats.patterns;
      add("pattern groups", `${formatCount(p.groups)} (${formatCount(p.top_level_groups)} top-level)`);
      add("calls in groups", formatCount(p.calls_in_groups));
      add("rows folded", `${formatCount(p.rows_folded)} instead of ${formatCount(p.rows_unfolded)} (${formatCount(p.rows_saved)} saved)`);
    }
    body.append(el("h2", "", "Statistics"), facts);
    const tables = [
      ["Top functions by calls", "top_by_count"],
      ["Top functions by total time", "top_by_total"],
      ["Top functions by self time", "top_by_self"],
    ];
    for (const [title, key] of tables) {
      body.append(el("h3", "", title));
      const table = el("table", "top");
      const head = el("tr");
      for (const h of ["function", "calls", "total", "self"]) head.append(el("th", "", h));
      table.append(head);
      for (const entry of stats[key]) {
        const f = m.functions[entry.function];
        const tr = el("tr");
        const name = el("td", "fn", f.qualname);
        name.title = `${f.file}:${f.line}`;
        tr.append(name, el("td", "num", formatCount(entry.count)), el("td", "num", formatDuration(entry.total_ns)), el("td", "num", formatDuration(entry.self_ns)));
        tr.addEventListener("click", () => {
          $("search").value = f.qualname;
          this.search(f.qualname, true);
        });
        table.append(tr);
      }
      body.append(table);
    }
  }
}

async function main() {
  const started = performance.now();
  const config = JSON.parse($("viewer-config").textContent);
  try {
    const model = await loadModel(config);
    const viewer = new Viewer(model, config);
    window.viewer = viewer;
    viewer.start();
    $("loading").hidden = true;
    window.viewerReady = { ms: performance.now() - started, calls: model.n, rows: viewer.rows.length };
  } catch (error) {
    $("loading").textContent = `Cannot open this trace: ${error.message}`;
    $("loading").classList.add("error");
    window.viewerReady = { error: String(error) };
  }
}

main();
