// The page of `nmt serve`: POST /v1/translate with attention, then the n-best list and a heat map per layer.
"use strict";
const form = document.getElementById("form");
const statusLine = document.getElementById("status");
let last = null;

fetch("health").then(r => r.json()).then(h => {
  if (h.source && h.target) document.getElementById("pair").textContent = `${h.source} → ${h.target}`;
}).catch(() => {});

function say(text, error) {
  statusLine.textContent = text;
  statusLine.className = error ? "error" : "";
}

form.addEventListener("submit", async event => {
  event.preventDefault();
  const text = document.getElementById("source").value.trim();
  if (!text) { say("Type something to translate.", true); return; }
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
    const response = await fetch("v1/translate", {method: "POST", headers,
      body: JSON.stringify({text, beam, nbest, attention: true, ...(constraints.length ? {constraints} : {})})});
    const answer = await response.json();
    if (!response.ok) { say(answer.error || `error ${response.status}`, true); return; }
    last = answer.translations[0];
    show(last);
    say("");
  } catch (error) {
    say(`The server did not answer: ${error}`, true);
  } finally {
    button.disabled = false;
  }
});

function show(translation) {
  document.getElementById("result").hidden = false;
  document.getElementById("translation").textContent = translation.text;
  const list = document.getElementById("nbest-list");
  list.replaceChildren(...(translation.nbest || [translation]).map(t => {
    const item = document.createElement("li");
    item.textContent = `${t.text} (${t.score.toFixed(3)})`;
    return item;
  }));
  const select = document.getElementById("layer");
  const layers = translation.attention ? translation.attention.length : 0;
  select.replaceChildren(...Array.from({length: layers}, (_, i) => {
    const option = document.createElement("option");
    option.value = i; option.textContent = `${i + 1} of ${layers}`;
    return option;
  }));
  select.value = layers - 1;
  drawAttention(translation, layers - 1);
}

document.getElementById("layer").addEventListener("change", event => {
  if (last) drawAttention(last, Number(event.target.value));
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
