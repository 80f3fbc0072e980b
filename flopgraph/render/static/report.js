/* flopgraph HTML report: draws the FLOPs treemap and the module tree from the
   JSON embedded in the page. No libraries, no network. When it has run without
   error it sets <html data-flopgraph="ready">. */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const DATA = JSON.parse(document.getElementById("flopgraph-data").textContent);
const TOTAL = DATA.tree.flops || 1;
const TREEMAP_DEPTH = 3;

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function pct(part, whole) {
  return whole ? (100 * part / whole).toFixed(1) + "%" : "";
}

function describe(n) {
  const who = n.kind === "module" ? `${n.path || "(model)"} (${n.type})` : `${n.path || "(model)"} ${n.name}`;
  return `${who}\nFLOPs ${n.text.flops_exact} (${pct(n.flops, TOTAL)})\nMACs ${n.text.macs_exact}` +
    `\nparams ${n.text.params}` + (n.out ? `\noutput ${n.out}` : "");
}

/* Squarified treemap layout (Bruls, Huizing, van Wijk): rows of rectangles whose
   aspect ratios stay close to 1. Returns [{node, x, y, w, h}]. */
function squarify(nodes, x, y, w, h) {
  const total = nodes.reduce((s, n) => s + n.flops, 0);
  if (!total || w <= 0 || h <= 0) return [];
  const scale = (w * h) / total;
  let rest = nodes.map(n => ({ node: n, area: n.flops * scale }));
  const out = [];
  while (rest.length) {
    const side = Math.min(w, h);
    let row = [rest[0]];
    let i = 1;
    while (i < rest.length && worst(row.concat([rest[i]]), side) <= worst(row, side)) {
      row.push(rest[i]);
      i += 1;
    }
    const rowArea = row.reduce((s, d) => s + d.area, 0);
    if (w >= h) {
      const cw = rowArea / h;
      let cy = y;
      for (const d of row) { const ch = d.area / cw; out.push({ node: d.node, x, y: cy, w: cw, h: ch }); cy += ch; }
      x += cw; w -= cw;
    } else {
      const rh = rowArea / w;
      let cx = x;
      for (const d of row) { const cw = d.area / rh; out.push({ node: d.node, x: cx, y, w: cw, h: rh }); cx += cw; }
      y += rh; h -= rh;
    }
    rest = rest.slice(i);
  }
  return out;
}

function worst(row, side) {
  const s = row.reduce((a, d) => a + d.area, 0);
  const big = Math.max(...row.map(d => d.area));
  const small = Math.min(...row.map(d => d.area));
  return Math.max((side * side * big) / (s * s), (s * s) / (side * side * small));
}

function colour(hue, depth) {
  return `hsl(${hue}, 62%, ${Math.min(58 + depth * 9, 90)}%)`;
}

function visibleChildren(n) {
  return (n.children || []).filter(c => c.flops > 0).sort((a, b) => b.flops - a.flops);
}

function drawNode(svg, box, hue, depth, zoom) {
  const n = box.node;
  const g = el("svg:g");
  const kids = visibleChildren(n);
  const nested = depth < TREEMAP_DEPTH && kids.length > 0 && box.w > 60 && box.h > 40;
  if (kids.length > 0) { g.setAttribute("class", "zoomable"); g.addEventListener("click", e => { e.stopPropagation(); zoom(n); }); }
  g.appendChild(el("svg:rect", { x: box.x, y: box.y, width: Math.max(box.w, 0), height: Math.max(box.h, 0), fill: colour(hue, depth) }));
  g.appendChild(el("svg:title", {}, describe(n)));
  svg.appendChild(g);
  if (box.w > 46 && box.h > 14) {
    const label = `${n.name} ${pct(n.flops, TOTAL)}`;
    const fits = Math.floor((box.w - 6) / 6.2);
    g.appendChild(el("svg:text", { x: box.x + 4, y: box.y + 12, class: nested ? "head" : "" },
      label.length > fits ? label.slice(0, Math.max(fits - 1, 1)) + "…" : label));
  }
  if (nested) {
    for (const child of squarify(kids, box.x + 2, box.y + 16, box.w - 4, box.h - 18)) {
      drawNode(svg, child, hue, depth + 1, zoom);
    }
  }
}

let current = null;

function drawTreemap(root) {
  current = root;
  const svg = document.getElementById("treemap");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = svg.clientWidth || 1000;
  const height = svg.clientHeight || 520;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const kids = visibleChildren(root);
  const boxes = kids.length ? squarify(kids, 0, 0, width, height) : squarify([root], 0, 0, width, height);
  boxes.forEach((box, i) => drawNode(svg, box, (i * 137.508) % 360, 0, drawTreemap));
  drawCrumbs(root);
}

function pathTo(target, node, trail) {
  trail = (trail || []).concat([node]);
  if (node === target) return trail;
  for (const c of node.children || []) {
    const found = pathTo(target, c, trail);
    if (found) return found;
  }
  return null;
}

function drawCrumbs(root) {
  const crumbs = document.getElementById("crumbs");
  crumbs.textContent = "";
  const trail = pathTo(root, DATA.tree) || [DATA.tree];
  trail.forEach((n, i) => {
    if (i) crumbs.appendChild(document.createTextNode(" › "));
    const a = el("a", {}, i === 0 ? DATA.model : n.name);
    a.addEventListener("click", () => drawTreemap(n));
    crumbs.appendChild(a);
  });
  crumbs.appendChild(document.createTextNode(`  ·  ${pct(root.flops, TOTAL)} of all FLOPs`));
}

/* The module tree as a table whose rows fold and unfold. */
const expanded = new Set();

function markExpanded(n, depth, upto) {
  if (depth < upto && (n.children || []).length) { expanded.add(n); n.children.forEach(c => markExpanded(c, depth + 1, upto)); }
}

function drawTree() {
  const body = document.querySelector("#modules tbody");
  body.textContent = "";
  const add = (n, depth) => {
    const tr = el("tr", { class: n.kind !== "module" ? "extra" : !n.ran ? "uncalled" : "" });
    const name = el("td", { class: "name", style: `padding-left:${8 + depth * 18}px` });
    if ((n.children || []).length) {
      const b = el("button", { "aria-label": "toggle" }, expanded.has(n) ? "▾" : "▸");
      b.addEventListener("click", () => { expanded.has(n) ? expanded.delete(n) : expanded.add(n); drawTree(); });
      name.appendChild(b);
    } else {
      name.appendChild(el("span", { class: "leaf" }));
    }
    name.appendChild(document.createTextNode(depth === 0 ? DATA.model : n.name));
    tr.appendChild(name);
    const type = n.kind !== "module" ? "" : !n.ran ? `${n.type} (not called)` : n.calls > 1 ? `${n.type} ×${n.calls}` : n.type;
    tr.appendChild(el("td", {}, type));
    const noParams = n.kind === "self" && !n.params;  // ops outside any child hold none
    tr.appendChild(el("td", { class: "num" }, noParams ? "" : n.text.params));
    tr.appendChild(el("td", { class: "num" }, noParams ? "" : pct(n.params, DATA.params)));
    tr.appendChild(el("td", { class: "num", title: n.text.macs_exact }, n.text.macs));
    tr.appendChild(el("td", { class: "num", title: n.text.flops_exact }, n.text.flops));
    const share = el("td", { class: "num pct" });
    share.appendChild(el("div", { class: "bar", style: `width:${(100 * n.flops / TOTAL).toFixed(2)}%` }));
    share.appendChild(el("span", {}, pct(n.flops, TOTAL)));
    tr.appendChild(share);
    tr.appendChild(el("td", {}, n.out));
    body.appendChild(tr);
    if (expanded.has(n)) n.children.forEach(c => add(c, depth + 1));
  };
  add(DATA.tree, 0);
}

function setAll(open) {
  expanded.clear();
  if (open) markExpanded(DATA.tree, 0, Infinity); else expanded.add(DATA.tree);
  drawTree();
}

function main() {
  markExpanded(DATA.tree, 0, 2);
  drawTree();
  drawTreemap(DATA.tree);
  document.getElementById("expand-all").addEventListener("click", () => setAll(true));
  document.getElementById("collapse-all").addEventListener("click", () => setAll(false));
  window.addEventListener("resize", () => drawTreemap(current));
  if (document.documentElement.dataset.flopgraph !== "error") {
    document.documentElement.dataset.flopgraph = "ready";
  }
}

main();
