"use strict";
// model.js: loads the trace blobs and builds the per-call columns the view needs
// (children lists, subtree sizes, last rows), all in typed arrays.

const EXTERNAL = 1, RESUMED = 2, RAISED = 4, YIELDED = 8, UNFINISHED = 16, FINALIZER = 32;
const ARRAY_TYPES = { "<f8": Float64Array, "<i4": Int32Array, "u1": Uint8Array };

async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The bytes of a blob embedded in the page (standalone files), or null. */
function embeddedBytes(name) {
  const element = document.getElementById("blob:" + name);
  if (!element) return null;
  const text = atob(element.textContent.trim());
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** A blob by name: embedded in the page, or fetched next to it; gunzipped. */
async function loadBlob(config, name) {
  let bytes = embeddedBytes(name);
  if (!bytes) {
    const response = await fetch(config.base + name + ".gz");
    if (!response.ok) throw new Error(`cannot load ${name}: HTTP ${response.status}`);
    bytes = new Uint8Array(await response.arrayBuffer());
  }
  return gunzip(bytes);
}

async function loadJSON(config, name) {
  return JSON.parse(new TextDecoder().decode(await loadBlob(config, name)));
}

/** One pattern group (see data.py _group), with helpers over its iterations. */
class Group {
  constructor(raw) {
    this.start = raw.start;
    this.repetitions = raw.repetitions;
    this.period = raw.period ?? null;
    this.bounds = raw.bounds ?? null;
    this.variantOf = raw.variant_of ?? null;
    this.near = raw.near;
    this.variants = raw.variants.map((v) => ({
      iterations: v.iterations,
      representative: v.representative,
      nested: v.nested.map((g) => new Group(g)),
    }));
    this.stop = this.bound(this.repetitions);
  }
  /** First position of iteration j (j == repetitions: the end). */
  bound(j) {
    return this.period !== null ? this.start + j * this.period : this.bounds[j];
  }
  variantIndex(j) {
    return this.variantOf ? this.variantOf[j] : 0;
  }
  iterationCount(v) {
    const its = this.variants[v].iterations;
    return its ? its.length : this.repetitions;
  }
  /** The iteration holding position ``pos`` (group-relative, no shift). */
  iterationAt(pos) {
    if (this.period !== null) return Math.floor((pos - this.start) / this.period);
    let lo = 0, hi = this.repetitions - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.bounds[mid] <= pos) lo = mid; else hi = mid - 1;
    }
    return lo;
  }
  /** [nested groups, extra shift] of iteration j. */
  nestedOf(j) {
    const variant = this.variants[this.variantIndex(j)];
    return [variant.nested, this.bound(j) - this.bound(variant.representative)];
  }
}

class Model {
  constructor(meta, callBytes) {
    this.meta = meta;
    this.n = meta.calls;
    this.functions = meta.functions;
    this.threads = meta.threads;
    this.stats = meta.statistics;
    this.hasPatterns = meta.patterns !== null;
    this.sequences = meta.sequences.map((s) => s.groups.map((g) => new Group(g)));
    for (const column of meta.columns) {
      const Type = ARRAY_TYPES[column.type];
      this[column.name] = new Type(callBytes.buffer, callBytes.byteOffset + column.offset, column.length);
    }
    this.buildChildren();
    this.buildSubtrees();
    this.maxDuration = 1;
    for (let i = 0; i < this.n; i++) if (this.duration[i] > this.maxDuration) this.maxDuration = this.duration[i];
    this.detailsPromise = null;
  }

  /** CSR children: bucket b = parent + 1 (0 = the roots), rows ascending. */
  buildChildren() {
    const n = this.n, parent = this.parent;
    const offsets = new Int32Array(n + 2);
    for (let i = 0; i < n; i++) offsets[parent[i] + 2]++;
    for (let b = 1; b < n + 2; b++) offsets[b] += offsets[b - 1];
    const fill = offsets.slice(0, n + 1);
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[fill[parent[i] + 1]++] = i;
    this.offsets = offsets;
    this.order = order;
    const roots = order.subarray(0, offsets[1]);
    const perThread = this.threads.map(() => []);
    for (const row of roots) perThread[this.thread[row]].push(row);
    this.threadRoots = perThread.map((rows) => Int32Array.from(rows));
  }

  /** Subtree sizes and the last row inside each subtree. */
  buildSubtrees() {
    const n = this.n, parent = this.parent;
    const size = new Int32Array(n).fill(1);
    const last = new Int32Array(n);
    for (let i = 0; i < n; i++) last[i] = i;
    for (let i = n - 1; i >= 0; i--) {
      const p = parent[i];
      if (p >= 0) {
        size[p] += size[i];
        if (last[i] > last[p]) last[p] = last[i];
      }
    }
    this.size = size;
    this.last = last;
  }

  /** Child rows of a call, or the roots of thread -1 - owner. */
  childrenOf(owner) {
    if (owner < 0) return this.threadRoots[-1 - owner];
    return this.order.subarray(this.offsets[owner + 1], this.offsets[owner + 2]);
  }

  /** Top-level groups of the children of ``owner`` (empty when none). */
  groupsOf(owner) {
    const s = owner < 0 ? this.threads[-1 - owner].sequence : this.sequence[owner];
    return s >= 0 ? this.sequences[s] : [];
  }

  /** Calls in the subtrees of steps[lo..hi). */
  callsBetween(steps, lo, hi) {
    let total = 0;
    for (let p = lo; p < hi; p++) total += this.size[steps[p]];
    return total;
  }

  /** The last row inside steps[lo..hi). */
  lastBetween(steps, lo, hi) {
    let last = -1;
    for (let p = lo; p < hi; p++) if (this.last[steps[p]] > last) last = this.last[steps[p]];
    return last;
  }

  /** Wall time from the first step's start to the latest end among steps[lo..hi). */
  spanBetween(steps, lo, hi) {
    if (hi <= lo) return 0;
    const begin = this.start[steps[lo]];
    let end = begin;
    for (let p = lo; p < hi; p++) {
      const e = this.start[steps[p]] + this.duration[steps[p]];
      if (e > end) end = e;
    }
    return end - begin;
  }

  selfTime(row) {
    let children = 0;
    for (const child of this.childrenOf(row)) children += this.duration[child];
    return this.duration[row] - children;
  }

  isExternal(row) {
    return (this.flags[row] & EXTERNAL) !== 0;
  }

  /** Details (args, values, exceptions, span ids), loaded on first use. */
  details(config) {
    if (!this.detailsPromise) this.detailsPromise = loadJSON(config, "details.json");
    return this.detailsPromise;
  }
}

async function loadModel(config) {
  const [meta, callBytes] = await Promise.all([loadJSON(config, "meta.json"), loadBlob(config, "calls.bin")]);
  return new Model(meta, callBytes);
}
