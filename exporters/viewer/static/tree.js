"use strict";
// tree.js: the nodes of the view (threads, calls, pattern groups and their parts)
// and the flat list of visible rows that the virtual list draws.
//
// Node kinds: "thread", "call", "group" (a pattern group box), "template" (its
// steps, shown once), "variant" (another iteration shape of a near-repeat),
// "reps" (the list of all repetitions) and "rep" (one repetition's real calls).
// Every node has a key that is stable across rebuilds, so the open/closed state
// survives switching patterns or filters.

/** Sibling lists longer than RANGE_LIMIT are shown in ranges of RANGE_SIZE. */
const RANGE_LIMIT = 5000, RANGE_SIZE = 1000;

/** Kinds that open only when the user opens them (never by "expand all"). */
const EXPLICIT_KINDS = new Set(["variant", "reps", "rep"]);

/** A call row; the most numerous node, so its key is only built when asked for. */
class CallNode {
  constructor(row, depth, rails, ctx, expandable) {
    this.kind = "call";
    this.row = row;
    this.depth = depth;
    this.rails = rails;
    this.ctx = ctx;
    this.expandable = expandable;
    this.mark = "";
  }
  get key() {
    return this.ctx + "c" + this.row;
  }
}

/** Whether ``node`` is the node with key ``key`` (cheaply, for call nodes). */
function hasKey(node, key, row) {
  if (node.kind === "call") return node.row === row && node.key === key;
  return node.key === key;
}

class TreeState {
  constructor(model) {
    this.model = model;
    this.patterns = model.hasPatterns;
    this.hideExternal = false;
    this.all = false; // "expand all": open unless closed
    this.open = new Set();
    this.closed = new Set();
  }

  isOpen(node) {
    if (EXPLICIT_KINDS.has(node.kind) || !this.all) return this.open.has(node.key);
    return !this.closed.size || !this.closed.has(node.key);
  }

  setOpen(node, open) {
    if (open) {
      this.open.add(node.key);
      this.closed.delete(node.key);
    } else {
      this.open.delete(node.key);
      this.closed.add(node.key);
    }
  }

  /** Open a node by key (used when revealing a call). */
  openKey(key) {
    this.open.add(key);
    this.closed.delete(key);
  }

  expandAll() {
    this.all = true;
    this.closed.clear();
  }

  collapseAll() {
    this.all = false;
    this.closed.clear();
    this.open.clear();
    this.model.threads.forEach((_, t) => this.open.add("t" + t));
  }

  // -- nodes --------------------------------------------------------------------------

  threadNodes() {
    const nodes = [];
    this.model.threads.forEach((info, t) => {
      if (this.model.threadRoots[t].length) {
        nodes.push({ kind: "thread", key: "t" + t, depth: 0, rails: [], ctx: "", t, expandable: true });
      }
    });
    return nodes;
  }

  children(node) {
    const depth = node.depth + 1;
    switch (node.kind) {
      case "thread":
        return this.sequence(-1 - node.t, node);
      case "call":
        return this.sequence(node.row, node);
      case "range":
        return this.rangeChildren(node);
      case "group": {
        const { g, shift, steps, ctx } = node;
        const rails = node.rails.concat([node.depth]);
        const base = { g, shift, steps, ctx, depth, rails, expandable: true };
        const out = [{ ...base, kind: "template", key: node.key + "t", v: 0 }];
        for (let v = 1; v < g.variants.length; v++) out.push({ ...base, kind: "variant", key: node.key + "v" + v, v });
        out.push({ ...base, kind: "reps", key: node.key + "R" });
        return out;
      }
      case "template":
        return this.iterationItems(node, 0);
      case "variant":
        return this.markDifferences(node, this.iterationItems(node, 0), this.iterationItems(node, node.v));
      case "reps": {
        const reps = node.g.repetitions;
        const ranged = reps > RANGE_LIMIT;
        const out = [];
        for (let j = 0; j < reps; j++) {
          out.push({ ...node, kind: "rep", key: node.key.slice(0, -1) + "r" + j, depth: depth + (ranged ? 1 : 0), j });
        }
        return ranged ? this.ranges(node, { items: out }, reps) : out;
      }
      case "rep": {
        const { g, shift, steps, j } = node;
        const [nested, extra] = g.nestedOf(j);
        const ctx = node.key + "/";
        return this.items(steps, nested, shift + extra, g.bound(j) + shift, g.bound(j + 1) + shift, depth, node.rails, ctx);
      }
    }
    return [];
  }

  /** The items of the representative iteration of variant ``v`` of a group part. */
  iterationItems(node, v) {
    const { g, shift, steps } = node;
    const variant = g.variants[v];
    const j = variant.representative;
    return this.items(steps, variant.nested, shift, g.bound(j) + shift, g.bound(j + 1) + shift, node.depth + 1, node.rails, node.ctx);
  }

  /** A variant's items marked against the template's: ``mark`` "+" on extra items,
   * and a "missing" node for each template item the variant lacks (matched by
   * function, longest common subsequence). */
  markDifferences(node, base, items) {
    const key = (item) => this.model.function[item.kind === "call" ? item.row : item.steps[item.g.start + item.shift]] * 2 + (item.kind === "group" ? 1 : 0);
    const a = base.map(key), b = items.map(key);
    if (a.length * b.length > 1_000_000) return items;
    const width = b.length + 1;
    const lcs = new Int32Array((a.length + 1) * width);
    for (let i = a.length - 1; i >= 0; i--) {
      for (let k = b.length - 1; k >= 0; k--) {
        lcs[i * width + k] = a[i] === b[k] ? lcs[(i + 1) * width + k + 1] + 1 : Math.max(lcs[(i + 1) * width + k], lcs[i * width + k + 1]);
      }
    }
    const out = [];
    let i = 0, k = 0;
    while (i < a.length || k < b.length) {
      if (i < a.length && k < b.length && a[i] === b[k]) {
        out.push(items[k++]);
        i++;
      } else if (k < b.length && (i >= a.length || lcs[i * width + k + 1] >= lcs[(i + 1) * width + k])) {
        items[k].mark = "+";
        out.push(items[k++]);
      } else {
        const missing = base[i++];
        out.push({ kind: "missing", key: `${node.key}m${i}`, depth: missing.depth, rails: missing.rails, of: missing, mark: "-", expandable: false });
      }
    }
    return out;
  }

  /** The children of a call (or a thread's roots, ``owner`` -1 - thread), folded
   * when patterns are on; in ranges when there are very many. */
  sequence(owner, parent) {
    const steps = this.model.childrenOf(owner);
    const groups = this.patterns ? this.model.groupsOf(owner) : [];
    const depth = parent.depth + 1;
    if (!groups.length) {
      if (steps.length > RANGE_LIMIT) return this.ranges(parent, { steps }, steps.length);
      return this.items(steps, groups, 0, 0, steps.length, depth, parent.rails, parent.ctx);
    }
    const all = this.items(steps, groups, 0, 0, steps.length, depth, parent.rails, parent.ctx, true);
    if (all.length <= RANGE_LIMIT) return this.visible(all);
    for (const item of all) item.depth++;
    return this.ranges(parent, { items: all }, all.length);
  }

  /** Range nodes over ``source`` (``{steps}``: call rows built on demand, or
   * ``{items}``: nodes already built one level deeper). */
  ranges(parent, source, total) {
    const out = [];
    for (let lo = 0; lo < total; lo += RANGE_SIZE) {
      out.push({
        kind: "range", key: `${parent.key}~${lo}`, depth: parent.depth + 1, rails: parent.rails,
        ctx: parent.ctx, lo, hi: Math.min(lo + RANGE_SIZE, total), total, ...source, expandable: true,
      });
    }
    return out;
  }

  rangeChildren(node) {
    if (node.items) return this.visible(node.items.slice(node.lo, node.hi));
    return this.items(node.steps, [], 0, node.lo, node.hi, node.depth + 1, node.rails, node.ctx);
  }

  /** The range (its ``lo``) holding position ``pos`` of the children of ``owner``,
   * or -1 when they are not shown in ranges. */
  rangeOf(owner, pos) {
    const steps = this.model.childrenOf(owner);
    const groups = this.patterns ? this.model.groupsOf(owner) : [];
    let index = pos, count = steps.length;
    for (const g of groups) {
      count -= g.stop - g.start - 1;
      if (g.stop <= pos) index -= g.stop - g.start - 1;
      else if (g.start <= pos) index -= pos - g.start;
    }
    return count > RANGE_LIMIT ? index - (index % RANGE_SIZE) : -1;
  }

  /** ``nodes`` without external calls when those are hidden. */
  visible(nodes) {
    if (!this.hideExternal) return nodes;
    return nodes.filter((node) => node.kind !== "call" || !this.model.isExternal(node.row));
  }

  /** Steps lo..hi of a sequence with ``groups`` (positions + shift) folded;
   * external calls included even when hidden if ``all``. */
  items(steps, groups, shift, lo, hi, depth, rails, ctx, all = false) {
    const out = [];
    let pos = lo;
    for (const g of groups) {
      const start = g.start + shift, stop = g.stop + shift;
      if (stop <= lo || start >= hi) continue;
      for (; pos < start; pos++) this.pushCall(out, steps[pos], depth, rails, ctx, all);
      out.push({
        kind: "group", key: `${ctx}g${steps[start]}_${stop}`, depth, rails, ctx,
        g, shift, steps, expandable: true,
      });
      pos = stop;
    }
    for (; pos < hi; pos++) this.pushCall(out, steps[pos], depth, rails, ctx, all);
    return out;
  }

  pushCall(out, row, depth, rails, ctx, all) {
    if (!all && this.hideExternal && this.model.isExternal(row)) return;
    out.push(new CallNode(row, depth, rails, ctx, this.model.size[row] > 1));
  }

  // -- flattening -----------------------------------------------------------------------

  /** Visible rows below ``nodes`` (the nodes included), depth first. */
  flatten(nodes) {
    const out = [];
    const stack = [[nodes, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (top[1] >= top[0].length) {
        stack.pop();
        continue;
      }
      const node = top[0][top[1]++];
      out.push(node);
      if (node.expandable && this.isOpen(node)) stack.push([this.children(node), 0]);
    }
    return out;
  }

  /** Open nodes breadth first until about ``budget`` rows are visible. */
  autoOpen(budget) {
    let level = this.threadNodes();
    let visible = level.length;
    while (level.length && visible < budget) {
      const next = [];
      for (const node of level) {
        if (!node.expandable || EXPLICIT_KINDS.has(node.kind)) continue;
        const count = this.childCount(node);
        if (visible + count > budget && visible > 0 && node.kind !== "thread") return;
        this.setOpen(node, true);
        visible += count;
        if (next.length < budget) next.push(...this.children(node).slice(0, budget));
      }
      level = next;
    }
  }

  /** How many rows opening ``node`` adds at the next level (without building
   * them for the common case of a call or thread with no groups). */
  childCount(node) {
    if (node.kind === "call" || node.kind === "thread") {
      const owner = node.kind === "call" ? node.row : -1 - node.t;
      if (!this.hideExternal && !(this.patterns && this.model.groupsOf(owner).length)) {
        return this.model.childrenOf(owner).length;
      }
    }
    return this.children(node).length;
  }

  // -- revealing a call -------------------------------------------------------------------

  /** Open every node on the way to ``row``; returns the key of its node. */
  reveal(row) {
    const m = this.model;
    if (this.hideExternal && m.isExternal(row)) this.hideExternal = false;
    const chain = [];
    for (let r = row; r >= 0; r = m.parent[r]) chain.push(r);
    chain.reverse();
    let owner = -1 - m.thread[chain[0]];
    let ctx = "";
    this.openKey("t" + m.thread[chain[0]]);
    let ownerKey = "t" + m.thread[chain[0]];
    for (const callRow of chain) {
      const steps = m.childrenOf(owner);
      const pos = lowerBound(steps, callRow);
      const range = this.rangeOf(owner, pos);
      if (range >= 0) this.openKey(`${ownerKey}~${range}`);
      let groups = this.patterns ? m.groupsOf(owner) : [];
      let shift = 0;
      for (;;) {
        const g = groups.find((x) => x.start + shift <= pos && pos < x.stop + shift);
        if (!g) break;
        const groupKey = `${ctx}g${steps[g.start + shift]}_${g.stop + shift}`;
        this.openKey(groupKey);
        const j = g.iterationAt(pos - shift);
        if (j === g.variants[0].representative) {
          this.openKey(groupKey + "t");
          groups = g.variants[0].nested;
        } else {
          this.openKey(groupKey + "R");
          if (g.repetitions > RANGE_LIMIT) this.openKey(`${groupKey}R~${j - (j % RANGE_SIZE)}`);
          this.openKey(groupKey + "r" + j);
          ctx = groupKey + "r" + j + "/";
          const [nested, extra] = g.nestedOf(j);
          groups = nested;
          shift += extra;
        }
      }
      ownerKey = ctx + "c" + callRow;
      if (callRow !== row) this.openKey(ownerKey);
      owner = callRow;
    }
    return ctx + "c" + row;
  }
}

/** Index of ``value`` in the ascending array ``values`` (or where it would go). */
function lowerBound(values, value) {
  let lo = 0, hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid] < value) lo = mid + 1; else hi = mid;
  }
  return lo;
}
