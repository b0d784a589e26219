// The page's script, served as /app.js: the Content-Security-Policy allows no inline script.
const $ = (id) => document.getElementById(id);
let catalog = null;
let lastFile = null;
const PAGE = 24;
let browseOffset = 0;

// A result card: the item's picture (a link to view it), its title (or file name), a detail line
// and "More like this".
// A sub-style as people read it: the shop's name for it, else its number.
function substyle(name, cluster) {
  return name || `sub-style ${cluster}`;
}

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
$("browse-category").addEventListener("change", () => { browseOffset = 0; fillClusters(); browse(); });
$("browse-previous").addEventListener("click", () => { browseOffset = Math.max(0, browseOffset - PAGE); browse(); });
$("browse-next").addEventListener("click", () => { browseOffset += PAGE; browse(); });
$("browse-cluster").addEventListener("change", () => { browseOffset = 0; browse(); });
init();
