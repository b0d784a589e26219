// The page's script, served as /app.js: the Content-Security-Policy allows no inline script.
const $ = (id) => document.getElementById(id);
let catalog = null;
let lastFile = null;
const PAGE = 24;
let browseOffset = 0;

const PREVIEW_K = [2, 12]; // the k a preview may ask for (core.substyles.PREVIEW_K)

// A sub-style as people read it: the shop's name for it, else its number.
function substyle(name, cluster) {
  return name || `sub-style ${cluster}`;
}

// A result card: the item's picture (a link to view it), its title (or file name), a detail line
// and "More like this".
function card(item, detail) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.itemId = item.item_id;
  const view = document.createElement("a");
  view.className = "view";
  view.href = item.thumbnail;
  view.target = "_blank";
  view.rel = "noopener";
  view.title = `View ${item.title || item.item_id}`;
  const img = document.createElement("img");
  img.src = item.thumbnail;
  img.alt = item.title || item.item_id;
  view.appendChild(img);
  div.appendChild(view);
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = item.title || item.item_id;
  div.appendChild(title);
  const text = document.createElement("div");
  text.textContent = detail;
  div.appendChild(text);
  const more = document.createElement("button");
  more.type = "button";
  more.className = "more";
  more.textContent = "More like this";
  more.addEventListener("click", () => similarTo(item));
  div.appendChild(more);
  return div;
}

const similarity = (score) => `${Math.max(0, Math.round(100 * score))}% similar`;

function showError(message) {
  $("status").textContent = message;
  $("status").className = "error";
}

async function similarTo(item) {
  $("status").textContent = "Searching...";
  $("status").className = "";
  let response, body;
  try {
    response = await fetch("/recommend_by_id", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ item_id: item.item_id, k: Number($("k").value) || 10 }),
    });
    body = await response.json();
  } catch (err) {
    return showError("The service did not answer; check your connection and try again.");
  }
  if (!response.ok) return showError(body.error || `The service answered ${response.status}.`);
  $("status").textContent = "";
  $("prediction").replaceChildren();
  $("results-heading").textContent = `Items like ${item.title || item.item_id}`;
  $("results").replaceChildren(...body.items.map((i) => card(i, `${i.category} · ${similarity(i.score)}`)));
  $("results-heading").scrollIntoView({ behavior: "smooth" });
}

async function search(file) {
  lastFile = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").style.display = "block";
  $("status").textContent = "Searching...";
  $("status").className = "";
  $("results").replaceChildren();
  $("results-heading").textContent = "";
  $("prediction").replaceChildren();
  const form = new FormData();
  form.append("image", file);
  form.append("k", $("k").value);
  if ($("filter").value) form.append("category", $("filter").value);
  let response, body;
  try {
    response = await fetch("/recommend", { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    return showError("The service did not answer; check your connection and try again.");
  }
  if (!response.ok) return showError(body.error || `The service answered ${response.status}.`);
  $("status").textContent = "";
  const heading = document.createElement("h3");
  heading.id = "predicted-category";
  const share = `${(100 * body.confidence).toFixed(0)}%`;
  if (!body.close_match) {
    // The third answer: no category is claimed and no item is shown for a photo unlike the catalog.
    heading.textContent = "Not in our catalog";
    $("prediction").appendChild(heading);
    const note = document.createElement("p");
    note.id = "no-close-match";
    note.className = "notice";
    note.textContent =
      "Nothing in the catalog looks like this photo, so no similar items are shown. " +
      "Try a photo of one item on a plain background.";
    $("prediction").appendChild(note);
    return;
  }
  heading.textContent = body.category_uncertain
    ? `Not sure of the category: perhaps ${body.category} (${share}), so every category was searched`
    : `Category: ${body.category}` + (body.cluster === null ? "" : ` (${substyle(body.cluster_name, body.cluster)})`);
  $("prediction").appendChild(heading);
  for (const [name, p] of Object.entries(body.probabilities)) {
    const span = document.createElement("span");
    span.className = "prob";
    span.textContent = `${name} ${(100 * p).toFixed(1)}%`;
    $("prediction").appendChild(span);
  }
  if (body.items.length) $("results-heading").textContent = "Similar items";
  for (const item of body.items) {
    $("results").appendChild(card(item, `${item.category} · ${similarity(item.score)}`));
  }
}

async function browse() {
  const category = $("browse-category").value;
  const cluster = $("browse-cluster").value;
  const query = new URLSearchParams({ category, offset: String(browseOffset), limit: String(PAGE) });
  if (cluster !== "") query.set("cluster", cluster);
  const response = await fetch("/catalog/items?" + query);
  const body = await response.json();
  $("browse").replaceChildren(...(body.items || []).map((item) => card(item, `${item.category} · ${substyle(item.cluster_name, item.cluster)}`)));
  if (!response.ok) {
    $("browse-total").textContent = body.error || "";
    return;
  }
  const last = Math.min(browseOffset + PAGE, body.total);
  $("browse-total").textContent = body.total ? `${browseOffset + 1}-${last} of ${body.total} items` : "0 items";
  $("browse-previous").disabled = browseOffset === 0;
  $("browse-next").disabled = last >= body.total;
}

function fillClusters() {
  const entry = catalog.categories.find((c) => c.name === $("browse-category").value);
  const options = [new Option("all", "")];
  for (const c of (entry ? entry.clusters : [])) options.push(new Option(`${substyle(c.name, c.cluster)} (${c.count})`, String(c.cluster)));
  $("browse-cluster").replaceChildren(...options);
}

// The label-free criterion the run chose k by, as bars: the agreement with the other views when it
// chose by agreement, else the silhouette; the run's chosen k (and a previewed k) marked.
function drawCriterion(criterion, previewK) {
  const chart = $("substyle-chart");
  const byK = criterion && (criterion.agreement_by_k || criterion.silhouette_by_k);
  if (!byK || !Object.keys(byK).length) {
    chart.replaceChildren();
    chart.hidden = true;
    return;
  }
  const scores = Object.entries(byK).map(([k, s]) => [Number(k), s]);
  const low = Math.min(0, ...scores.map(([, s]) => s));
  const high = Math.max(...scores.map(([, s]) => s));
  const caption = document.createElement("p");
  caption.textContent = criterion.agreement_by_k
    ? `How much the sub-styles at each k agree with other views of the same photos (higher agrees more); the run chose k=${criterion.k}.`
    : `How distinct the sub-styles are at each k (silhouette, higher is tighter); the run chose k=${criterion.k}.`;
  const bars = scores.map(([k, s]) => {
    const bar = document.createElement("div");
    bar.className = "bar" + (k === criterion.k ? " chosen" : "") + (k === previewK ? " previewed" : "");
    bar.dataset.k = String(k);
    bar.title = `k=${k}: ${s.toFixed(3)}` + (k === criterion.k ? " (chosen)" : "");
    const fill = document.createElement("span");
    fill.style.height = `${Math.max(4, Math.round((100 * (s - low)) / Math.max(high - low, 1e-9)))}%`;
    const label = document.createElement("small");
    label.textContent = k === criterion.k ? `k=${k} ✓` : `k=${k}`;
    bar.append(fill, label);
    return bar;
  });
  const row = document.createElement("div");
  row.className = "bars";
  row.append(...bars);
  chart.replaceChildren(caption, row);
  chart.hidden = false;
}

let substyleView = null; // the view shown: its category, sub-styles and the version it came from
let editedDigest = null; // the version the last edit made (served once live reload swaps it in)

// One edit set sent with the admin token, against the version last seen; then wait (bounded) for
// live reload to serve the new version and show it (`onSaved` runs first, once it is saved).
async function sendEdits(edits, onSaved) {
  const seen = editedDigest || substyleView.model_version.bundle_digest;
  $("substyle-note").className = "";
  $("substyle-note").textContent = "Saving...";
  const response = await fetch("/substyles/edits", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${$("admin-token").value.trim()}`, "if-match": seen },
    body: JSON.stringify({ edits }),
  });
  const body = await response.json();
  if (!response.ok) {
    $("substyle-note").textContent = `Not saved: ${body.error} (${body.reason})`;
    $("substyle-note").className = "error";
    return;
  }
  editedDigest = body.bundle_digest;
  if (onSaved) onSaved();
  $("substyle-note").textContent = `Saved as version ${body.bundle_digest}; waiting for the service to serve it...`;
  for (let tries = 0; tries < 60; tries++) {
    const status = await fetch("/status").then((r) => r.json());
    if (status.model_version && status.model_version.bundle_digest === body.bundle_digest) break;
    await new Promise((done) => setTimeout(done, 500));
  }
  await showSubstyles();
}

function editButton(className, text, edit) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = text;
  button.addEventListener("click", () => sendEdits([{ category: substyleView.category, ...edit() }]));
  return button;
}

// A sub-style's edit controls: rename it, merge it into another of the category, or split it.
function editControls(group) {
  const controls = document.createElement("div");
  controls.className = "edit";
  const name = document.createElement("input");
  name.type = "text";
  name.maxLength = 40;
  name.value = group.name || "";
  name.placeholder = "name";
  name.setAttribute("aria-label", `name of ${substyle(group.name, group.cluster)}`);
  controls.append(name, editButton("rename", "Rename", () => ({ op: "rename", cluster: group.cluster, name: name.value })));
  const others = substyleView.substyles.filter((g) => g.cluster !== group.cluster);
  if (others.length) {
    const into = document.createElement("select");
    into.setAttribute("aria-label", "merge into");
    for (const other of others) into.appendChild(new Option(`into ${substyle(other.name, other.cluster)}`, String(other.cluster)));
    controls.append(into, editButton("merge", "Merge", () => ({ op: "merge", cluster: group.cluster, into: Number(into.value) })));
  }
  if (group.count >= 2) {
    const parts = document.createElement("select");
    parts.setAttribute("aria-label", "split into");
    for (let n = 2; n <= Math.min(4, group.count); n++) parts.appendChild(new Option(`in ${n}`, String(n)));
    controls.append(parts, editButton("split", "Split", () => ({ op: "split", cluster: group.cluster, parts: Number(parts.value) })));
  }
  return controls;
}

// An item card's "move to" choice: picking another sub-style moves the item there.
function moveChoice(item, group) {
  const move = document.createElement("select");
  move.className = "move";
  move.setAttribute("aria-label", `move ${item.title || item.item_id} to`);
  move.appendChild(new Option("move to...", ""));
  for (const other of substyleView.substyles.filter((g) => g.cluster !== group.cluster)) {
    move.appendChild(new Option(substyle(other.name, other.cluster), String(other.cluster)));
  }
  move.addEventListener("change", () => move.value && sendEdits([
    { op: "move", category: substyleView.category, item_id: item.item_id, to: Number(move.value) },
  ]));
  return move;
}

// While previewing with editing on: keep the previewed k as the category's sub-styles.
function keepPreview() {
  const keep = document.createElement("button");
  keep.type = "button";
  keep.id = "keep-preview";
  keep.textContent = `Keep these ${substyleView.k} sub-styles`;
  keep.addEventListener("click", () => sendEdits(
    [{ op: "set_k", category: substyleView.category, k: substyleView.k }],
    () => { $("substyle-k").value = ""; },
  ));
  return keep;
}

// One sub-style: its name and size, its most typical items, then its edge cases.
function substyleStrip(group) {
  const box = document.createElement("div");
  box.className = "substyle";
  box.dataset.cluster = String(group.cluster);
  const heading = document.createElement("h3");
  heading.textContent = `${substyle(group.name, group.cluster)} · ${group.count} items`;
  box.append(heading);
  if (substyleView.editing && !substyleView.preview) box.append(editControls(group));
  const movable = substyleView.editing && !substyleView.preview && substyleView.substyles.length > 1;
  const itemCard = (item) => {
    const element = card(item, `${similarity(item.score)} to its centre`);
    if (movable) element.appendChild(moveChoice(item, group));
    return element;
  };
  const typical = document.createElement("div");
  typical.className = "grid strip";
  typical.append(...group.typical.map(itemCard));
  box.append(typical);
  if (group.edge.length) {
    const label = document.createElement("p");
    label.className = "edge-label";
    label.textContent = "Edge cases";
    const edge = document.createElement("div");
    edge.className = "grid strip edge";
    edge.append(...group.edge.map(itemCard));
    box.append(label, edge);
  }
  return box;
}

async function showSubstyles() {
  const category = $("substyle-category").value;
  const k = $("substyle-k").value;
  const query = new URLSearchParams({ category });
  if (k) query.set("k", k);
  $("substyle-note").textContent = k ? "Computing the preview..." : "";
  $("substyle-note").className = "";
  const started = performance.now();
  const response = await fetch("/substyles?" + query);
  const body = await response.json();
  if (!response.ok) {
    $("substyle-note").textContent = body.error || "No sub-styles to show.";
    $("substyle-note").className = "error";
    $("substyles").replaceChildren();
    return;
  }
  substyleView = body;
  $("admin").hidden = !body.editing;
  const took = Math.round(performance.now() - started);
  const count = `${body.k} sub-style${body.k === 1 ? "" : "s"}`;
  $("substyle-note").textContent = body.preview
    ? `Preview: ${count} (not saved), computed in ${took} ms.`
    : `${count}, as the catalog shows them.`;
  drawCriterion(body.criterion, body.preview ? body.k : null);
  const strips = body.substyles.map(substyleStrip);
  $("substyles").replaceChildren(...(body.preview && body.editing ? [keepPreview()] : []), ...strips);
}

function fillSubstyleChoices() {
  const entry = catalog.categories.find((c) => c.name === $("substyle-category").value);
  const options = [new Option("as served", "")];
  for (let k = PREVIEW_K[0]; k <= Math.min(PREVIEW_K[1], entry ? entry.count : 0); k++) options.push(new Option(`preview ${k}`, String(k)));
  $("substyle-k").replaceChildren(...options);
}

async function init() {
  const response = await fetch("/catalog");
  if (!response.ok) {
    const state = await fetch("/status").then((r) => r.json()).catch(() => ({ state: "unreachable" }));
    $("status").textContent = state.state === "failed"
      ? `The model bundle failed to load: ${state.error}. Fix it and restart the service.`
      : state.state === "unreachable" ? "The service does not answer." : "The model is still loading; reload in a moment.";
    $("status").className = "error";
    return;
  }
  catalog = await response.json();
  $("title").textContent = catalog.title;
  document.title = `${catalog.title}: visually similar items`;
  const version = catalog.model_version || {};
  $("model-version").textContent = `Model: bundle ${version.bundle_digest}` + (version.created_at ? `, built ${version.created_at}` : "")
    + `; similar items by ${version.index_source} vectors`;
  for (const c of catalog.categories) {
    $("filter").appendChild(new Option(c.name, c.name));
    $("browse-category").appendChild(new Option(`${c.name} (${c.count})`, c.name));
    $("substyle-category").appendChild(new Option(c.name, c.name));
  }
  fillClusters();
  fillSubstyleChoices();
  await browse();
  await showSubstyles();
}

$("file").addEventListener("change", (e) => e.target.files[0] && search(e.target.files[0]));
$("k").addEventListener("change", () => lastFile && search(lastFile));
$("filter").addEventListener("change", () => lastFile && search(lastFile));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  if (e.dataTransfer.files[0]) search(e.dataTransfer.files[0]);
});
$("browse-category").addEventListener("change", () => { browseOffset = 0; fillClusters(); browse(); });
$("browse-previous").addEventListener("click", () => { browseOffset = Math.max(0, browseOffset - PAGE); browse(); });
$("browse-next").addEventListener("click", () => { browseOffset += PAGE; browse(); });
$("browse-cluster").addEventListener("change", () => { browseOffset = 0; browse(); });
$("substyle-category").addEventListener("change", () => { fillSubstyleChoices(); showSubstyles(); });
$("substyle-k").addEventListener("change", showSubstyles);
init();
