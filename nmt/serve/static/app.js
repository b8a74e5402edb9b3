// The page of `nmt serve`: POST /v1/translate with attention, then the n-best list and a heat map per layer. A text
// of several sentences shows the attention of the sentence under the cursor (in the source) or the pointer (in the
// translation).
"use strict";
const form = document.getElementById("form");
const statusLine = document.getElementById("status");
const sourceBox = document.getElementById("source");
let last = null;  // the last answer's translation
let shown = null;  // the translation (or sentence of it) whose attention is drawn
let sourceSpans = [];  // where each sentence of the last answer is in the source box: [start, end]

fetch("health").then(r => r.json()).then(h => {
  if (h.source && h.target && !h.models) document.getElementById("pair").textContent = `${h.source} → ${h.target}`;
}).catch(() => {});

// The pairs served (GET /languages): menus of source and target languages where there is more than one pair.
const fromMenu = document.getElementById("from");
const toMenu = document.getElementById("to");
let servedBy = {};  // source -> {target: what serves it}
fetch("languages").then(r => r.json()).then(languages => {
  const sources = languages.filter(l => l.targets.length);
  servedBy = Object.fromEntries(sources.map(l => [l.code, l.served_by || {}]));
  const names = Object.fromEntries(languages.map(l => [l.code, l.name]));
  if (sources.length + sources.reduce((n, l) => n + l.targets.length, 0) <= 2) return;  // one pair
  fromMenu.replaceChildren(...sources.map(l => new Option(l.name, l.code)));
  const fillTargets = () => {
    const chosen = toMenu.value;
    const targets = sources.find(l => l.code === fromMenu.value).targets;
    toMenu.replaceChildren(...targets.map(code => new Option(
      (servedBy[fromMenu.value][code] || "").includes("(through") ? `${names[code] || code} (through English)`
        : names[code] || code, code)));
    if (targets.includes(chosen)) toMenu.value = chosen;
  };
  fromMenu.addEventListener("change", fillTargets);
  fillTargets();
  document.getElementById("languages").hidden = false;
}).catch(() => {});

// The pair chosen in the menus ({} where there are none), and whether two models translate it through English.
function chosenPair() {
  if (document.getElementById("languages").hidden) return [{}, false];
  const pivot = (servedBy[fromMenu.value][toMenu.value] || "").includes("(through");
  return [{source: fromMenu.value, target: toMenu.value}, pivot];
}

function say(text, error) {
  statusLine.textContent = text;
  statusLine.className = error ? "error" : "";
}

form.addEventListener("submit", async event => {
  event.preventDefault();
  const text = sourceBox.value;  // as typed: paragraphs and line breaks come back where they were
  if (!text.trim()) { say("Type something to translate.", true); return; }
  const beam = Number(document.getElementById("beam").value);
  const nbest = Math.min(Number(document.getElementById("nbest").value), beam);
  const constraints = document.getElementById("terms").value.split(";").map(t => t.trim()).filter(t => t);
  const headers = {"Content-Type": "application/json"};
  const key = document.getElementById("key").value;
  if (key) headers["Authorization"] = `Bearer ${key}`;
  const button = document.getElementById("translate");
  button.disabled = true;
  say("Translating…");
  try {
    const [pair, pivot] = chosenPair();  // a pivot has no attention or constraints: its words come from English
    const response = await fetch("v1/translate", {method: "POST", headers,
      body: JSON.stringify({text, beam, nbest, attention: !pivot, ...pair,
                            ...(constraints.length && !pivot ? {constraints} : {})})});
    const answer = await response.json();
    if (!response.ok) { say(answer.error || `error ${response.status}`, true); return; }
    last = answer.translations[0];
    sourceSpans = locate((last.sentences || []).map(s => s.source), text);
    show(last);
    say("");
  } catch (error) {
    say(`The server did not answer: ${error}`, true);
  } finally {
    button.disabled = false;
  }
});

// Where each of `parts` is in `text`, in order: [start, end] (each found after the one before it).
function locate(parts, text) {
  let from = 0;
  return parts.map(part => {
    const start = text.indexOf(part, from);
    if (start < 0) return [from, from];
    from = start + part.length;
    return [start, from];
  });
}

function show(translation) {
  document.getElementById("result").hidden = false;
  const box = document.getElementById("translation");
  const sentences = translation.sentences;
  if (sentences) {  // each sentence its own span, the text between them (spaces, line breaks) as it came
    const spans = locate(sentences.map(s => s.text), translation.text);
    const nodes = [];
    let at = 0;
    spans.forEach(([start, end], i) => {
      nodes.push(document.createTextNode(translation.text.slice(at, start)));
      const span = document.createElement("span");
      span.className = "sentence"; span.textContent = translation.text.slice(start, end); span.dataset.index = i;
      span.addEventListener("mouseenter", () => choose(i));
      nodes.push(span);
      at = end;
    });
    nodes.push(document.createTextNode(translation.text.slice(at)));
    box.replaceChildren(...nodes);
  } else {
    box.textContent = translation.text;
  }
  const list = document.getElementById("nbest-list");
  list.replaceChildren(...(translation.nbest || [translation]).map(t => {
    const item = document.createElement("li");
    item.textContent = `${t.text} (${t.score === null ? "–" : t.score.toFixed(3)})`;
    return item;
  }));
  shown = null;
  document.getElementById("layer").replaceChildren();  // a new answer starts at its last layer
  choose(sentences ? sentenceAt(sourceBox.selectionStart) : -1);
}

// The sentence of the last answer at character `position` of the source box (the one before it, between two).
function sentenceAt(position) {
  let index = 0;
  sourceSpans.forEach(([start], i) => { if (start <= position) index = i; });
  return index;
}

// Draw the attention of sentence `index` of the last answer (-1: the whole translation, a single sentence).
function choose(index) {
  if (!last) return;
  const item = index >= 0 && last.sentences ? last.sentences[index] : last;
  if (item === shown) return;
  shown = item;
  document.querySelectorAll("#translation .sentence").forEach(span =>
    span.classList.toggle("current", Number(span.dataset.index) === index));
  const caption = document.getElementById("attention-of");
  caption.textContent = last.sentences ? `Sentence ${index + 1} of ${last.sentences.length}: ${item.source}` : "";
  const select = document.getElementById("layer");
  const layers = item.attention ? item.attention.length : 0;
  const kept = select.value === "" ? layers - 1 : Math.min(Number(select.value), layers - 1);  // the layer chosen
  select.replaceChildren(...Array.from({length: layers}, (_, i) => {
    const option = document.createElement("option");
    option.value = i; option.textContent = `${i + 1} of ${layers}`;
    return option;
  }));
  select.value = kept;
  drawAttention(item, kept);
}

for (const type of ["keyup", "click", "select", "focus"]) {
  sourceBox.addEventListener(type, () => {
    if (last && last.sentences) choose(sentenceAt(sourceBox.selectionStart));
  });
}

document.getElementById("layer").addEventListener("change", event => {
  if (shown) drawAttention(shown, Number(event.target.value));
});

function drawAttention(translation, layer) {
  const grid = document.getElementById("attention");
  grid.replaceChildren();
  if (!translation.attention) return;
  const source = [...translation.source_tokens, "</s>"];
  const target = [...translation.tokens, "</s>"];
  const weights = translation.attention[layer];  // (target + eos) x (source + eos)
  grid.style.gridTemplateColumns = `auto repeat(${source.length}, 1.6rem)`;
  grid.appendChild(document.createElement("div"));
  const columnLabels = source.map((piece, s) => {
    const label = document.createElement("div");
    label.className = "label col"; label.textContent = piece; label.setAttribute("role", "columnheader");
    grid.appendChild(label);
    return label;
  });
  target.forEach((piece, t) => {
    const rowLabel = document.createElement("div");
    rowLabel.className = "label row-label"; rowLabel.textContent = piece; rowLabel.tabIndex = 0;
    rowLabel.setAttribute("role", "rowheader");
    grid.appendChild(rowLabel);
    const highlight = on => {
      rowLabel.classList.toggle("active", on);
      weights[t].forEach((w, s) => columnLabels[s].classList.toggle("active", on && w >= 0.5 * Math.max(...weights[t])));
    };
    rowLabel.addEventListener("mouseenter", () => highlight(true));
    rowLabel.addEventListener("mouseleave", () => highlight(false));
    rowLabel.addEventListener("focus", () => highlight(true));
    rowLabel.addEventListener("blur", () => highlight(false));
    source.forEach((sourcePiece, s) => {
      const cell = document.createElement("div");
      const w = weights[t][s];
      cell.className = "cell"; cell.setAttribute("role", "gridcell");
      cell.style.background = `rgba(11, 92, 173, ${w.toFixed(3)})`;
      cell.title = `${piece} → ${sourcePiece}: ${w.toFixed(3)}`;
      cell.setAttribute("aria-label", cell.title);
      cell.addEventListener("mouseenter", () => highlight(true));
      cell.addEventListener("mouseleave", () => highlight(false));
      grid.appendChild(cell);
    });
  });
}
