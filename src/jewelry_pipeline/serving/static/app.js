// The page's script, served as /app.js: the Content-Security-Policy allows no inline script.
const $ = (id) => document.getElementById(id);
let catalog = null;
let lastFile = null;

function card(item, caption) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.itemId = item.item_id;
  const img = document.createElement("img");
  img.src = item.thumbnail;
  img.alt = item.item_id;
  div.appendChild(img);
  const text = document.createElement("div");
  text.textContent = caption;
  div.appendChild(text);
  return div;
}

async function search(file) {
  lastFile = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").style.display = "block";
  $("status").textContent = "Searching...";
  $("status").className = "";
  $("results").replaceChildren();
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
    $("status").textContent = "The service did not answer: " + err;
    $("status").className = "error";
    return;
  }
  if (!response.ok) {
    $("status").textContent = body.error || ("Error " + response.status);
    $("status").className = "error";
    return;
  }
  $("status").textContent = "";
  const heading = document.createElement("h3");
  heading.id = "predicted-category";
  const share = `${(100 * body.confidence).toFixed(0)}%`;
  heading.textContent = body.category_uncertain
    ? `Not sure of the category: perhaps ${body.category} (${share}), so every category was searched`
    : `Category: ${body.category}` + (body.cluster === null ? "" : ` (sub-style ${body.cluster})`);
  $("prediction").appendChild(heading);
  if (!body.close_match) {
    const note = document.createElement("p");
    note.id = "no-close-match";
    note.className = "notice";
    note.textContent = "No close match: nothing in the catalog looks like this photo.";
    $("prediction").appendChild(note);
  }
  for (const [name, p] of Object.entries(body.probabilities)) {
    const span = document.createElement("span");
    span.className = "prob";
    span.textContent = `${name} ${(100 * p).toFixed(1)}%`;
    $("prediction").appendChild(span);
  }
  for (const item of body.items) {
    $("results").appendChild(card(item, `${item.category} · ${item.score.toFixed(3)}`));
  }
}

async function browse() {
  const category = $("browse-category").value;
  const cluster = $("browse-cluster").value;
  const query = new URLSearchParams({ category, limit: "48" });
  if (cluster !== "") query.set("cluster", cluster);
  const response = await fetch("/catalog/items?" + query);
  const body = await response.json();
  $("browse").replaceChildren(...(body.items || []).map((item) => card(item, `${item.item_id} · cluster ${item.cluster}`)));
  $("browse-total").textContent = response.ok ? `${body.total} items` : (body.error || "");
}

function fillClusters() {
  const entry = catalog.categories.find((c) => c.name === $("browse-category").value);
  const options = [new Option("all", "")];
  for (const c of (entry ? entry.clusters : [])) options.push(new Option(`${c.cluster} (${c.count})`, String(c.cluster)));
  $("browse-cluster").replaceChildren(...options);
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
  const version = catalog.model_version || {};
  $("model-version").textContent = `Model: bundle ${version.bundle_digest}` + (version.created_at ? `, built ${version.created_at}` : "")
    + `; similar items by ${version.index_source} vectors`;
  for (const c of catalog.categories) {
    $("filter").appendChild(new Option(c.name, c.name));
    $("browse-category").appendChild(new Option(`${c.name} (${c.count})`, c.name));
  }
  fillClusters();
  await browse();
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
$("browse-category").addEventListener("change", () => { fillClusters(); browse(); });
$("browse-cluster").addEventListener("change", browse);
init();
