// The inspector page: one WebSocket to the daemon. The page says what it looks at (which
// coordinator, which actor, which slice of the client table) and the daemon answers with a
// view of exactly that, every half second. Everything is drawn with DOM APIs and
// textContent (client subjects come from the network and are never parsed as HTML).

const $ = (id) => document.getElementById(id);

const ui = {
  coordinator: null, // chosen coordinator id (null: the daemon picks the leader)
  select: "election", // key of the selected actor
  expandShard: null,
  clients: { text: "", state: "all", sort: "subject", descending: false, offset: 0, limit: 100 },
  tab: "all",
  lastSeq: 0,
  events: [], // newest last, at most MAX_EVENTS
  view: null,
  chartMachine: null,
  chartSvg: null,
  active: new Set(),
  zoom: 1, // 1: the chart fits the panel
};
const MAX_EVENTS = 300;
const CHANNEL = { event: "in", command: "out", report: "report" };
const STATES = ["all", "alive", "suspect", "dead", "left"];

let socket = null;
let retry = 0;

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  socket = new WebSocket(url);
  setLink("connecting", "connecting…");
  socket.addEventListener("open", () => {
    retry = 0;
    setLink("live", "live");
    ui.lastSeq = 0;
    ui.events = [];
    request();
  });
  socket.addEventListener("message", (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      return;
    }
    if (msg.type === "view") render(msg);
    else if (msg.type === "error") console.warn("inspector:", msg.message);
  });
  socket.addEventListener("close", () => {
    setLink("down", "disconnected — retrying");
    const delay = Math.min(5000, 250 * 2 ** retry++);
    setTimeout(connect, delay);
  });
}

function request() {
  if (socket?.readyState !== WebSocket.OPEN) return;
  socket.send(
    JSON.stringify({
      type: "view",
      coordinator: ui.coordinator,
      select: ui.select,
      expandShard: ui.expandShard,
      clients: ui.clients,
      afterSeq: ui.lastSeq,
    }),
  );
}

function setLink(state, text) {
  $("link").dataset.state = state;
  $("link-text").textContent = text;
}

// ---------------------------------------------------------------------------------------
// small DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const time = (ms) => {
  const d = new Date(ms);
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
};

function ago(ms, now) {
  const s = (now - ms) / 1000;
  if (s < 1) return "just now";
  if (s < 60) return `${s.toFixed(1)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return new Date(ms).toLocaleString();
}

const fmt = new Intl.NumberFormat();

// ---------------------------------------------------------------------------------------
// rendering

function render(msg) {
  renderCoordinators(msg.coordinators, msg.view);
  const view = msg.view;
  ui.view = view;
  if (view === null) return;
  ui.lastSeq = view.lastSeq;
  // With several partitions there is one election per partition: show partition 0's first.
  if (view.tree?.kind === "balancer" && ui.select === "election") {
    ui.select = "election.0";
    request();
  }
  for (const e of view.events) ui.events.push(e);
  if (ui.events.length > MAX_EVENTS) ui.events.splice(0, ui.events.length - MAX_EVENTS);
  renderHeader(view.coordinator);
  renderTree(view);
  renderShards(view);
  renderSelected(view.selected);
  renderEvents(view);
  renderClients(view);
}

function renderCoordinators(list, view) {
  const select = $("coordinator");
  const current = view?.coordinator.coordinatorId ?? null;
  const wanted = list.map((c) => `${c.coordinatorId}|${c.role}|${c.epoch}`).join(",");
  if (select.dataset.list !== wanted || select.value !== current) {
    select.dataset.list = wanted;
    select.replaceChildren(
      ...list.map((c) =>
        el("option", { value: c.coordinatorId, text: `${c.coordinatorId} — ${c.role}`, selected: c.coordinatorId === current }),
      ),
    );
    select.disabled = list.length < 2;
  }
}

function renderHeader(c) {
  const role = $("role");
  role.textContent = c.role;
  role.dataset.role = c.role;
  if (c.partitions) {
    // Each partition has its own epoch and leader: `p0 12 · p1 15` and `p0 me · p1 c2`.
    $("epoch").textContent = c.partitions.map((p) => `p${p.partition} ${p.epoch === 0 ? "—" : p.epoch}`).join(" · ");
    $("leader").textContent = c.partitions.map((p) => `p${p.partition} ${p.leaderId ?? "none"}`).join(" · ");
  } else {
    $("epoch").textContent = c.epoch === 0 ? "—" : String(c.epoch);
    $("leader").textContent = c.leaderId ?? "none known";
  }
  $("cluster").textContent = c.clusterId;
  document.title = `${c.coordinatorId} (${c.role}) — presence-coordinator inspector`;
}

function treeRow(node, depth, label, extra) {
  const selected = ui.select === node.key;
  return el(
    "button",
    {
      class: `node kind-${node.kind}${selected ? " selected" : ""}`,
      style: `--depth:${depth}`,
      "data-key": node.key,
      "aria-pressed": selected ? "true" : "false",
      onclick: () => selectActor(node.key),
    },
    el("span", { class: "node-name", text: label ?? node.key }),
    el("span", { class: "node-state", text: node.status === "active" ? node.state || "running" : node.status }),
    extra ?? null,
  );
}

/** A node that is no actor (the balancer): a plain row, nothing to select. */
function plainRow(node, depth, label, state) {
  return el(
    "div",
    { class: `node plain kind-${node.kind}`, style: `--depth:${depth}`, "data-key": node.key },
    el("span", { class: "node-name", text: label }),
    el("span", { class: "node-state", text: state }),
  );
}

const TREE_LABEL = {
  election: (n) => `election ${n.partition}`,
  monitor: () => "monitor",
  shard: (n) => n.key.replace(/\.\d+$/, ""),
  client: (n) => n.key.slice("client:".length),
};

/** The tree of a coordinator with several partitions: balancer → election per partition → monitor → shards → clients. */
function partitionRows(view) {
  const balancer = view.tree;
  const rows = [plainRow(balancer, 1, "balancer", balancer.state)];
  const walk = (node, depth) => {
    const label = (TREE_LABEL[node.kind] ?? ((n) => n.key))(node);
    // Short rows in a narrow panel: an election's top state and its epoch or leader, a
    // monitor's and a shard's client count; the chart shows the full state when selected.
    let shown = node;
    let extra = null;
    if (node.kind === "election") {
      shown = { ...node, state: node.state.split(".")[0] };
      if (node.detail) extra = el("span", { class: "node-count", text: node.detail });
    } else if (node.detail) shown = { ...node, state: node.detail };
    rows.push(treeRow(shown, depth, label, extra));
    for (const child of node.children ?? []) walk(child, depth + 1);
    if (node.more) rows.push(el("div", { class: "node hint", style: `--depth:${depth + 1}`, text: `and ${node.more} more` }));
  };
  for (const election of balancer.children ?? []) walk(election, 2);
  return rows;
}

function renderTree(view) {
  const tree = $("tree");
  const c = view.coordinator;
  const rows = [
    el(
      "div",
      { class: "node root", style: "--depth:0" },
      el("span", { class: "node-name", text: `coordinator ${c.coordinatorId}` }),
      el("span", { class: "node-state", text: c.role }),
    ),
  ];
  if (view.tree?.kind === "balancer") rows.push(...partitionRows(view));
  else if (view.tree) {
    rows.push(treeRow(view.tree, 1, "election"));
    for (const child of view.tree.children ?? []) {
      const extra =
        child.kind === "monitor"
          ? el("span", { class: "node-count", text: `${fmt.format(view.counts.alive + view.counts.suspect)} clients` })
          : null;
      rows.push(treeRow(child, 2, child.kind, extra));
    }
    if (!view.tree.children?.some((n) => n.kind === "monitor")) {
      rows.push(el("div", { class: "node hint", style: "--depth:2", text: "no monitor: it runs only while this coordinator leads" }));
    }
  }
  tree.replaceChildren(...rows);
}

function renderShards(view) {
  const block = $("shards-block");
  block.hidden = view.shards.length === 0;
  if (view.shards.length === 0) return;
  const max = Math.max(1, ...view.shards.map((s) => s.clients));
  const grid = $("shards");
  if (grid.childElementCount !== view.shards.length) {
    grid.replaceChildren(
      ...view.shards.map((s) => el("button", { class: "cell", "data-shard": s.index, onclick: () => toggleShard(s.index) })),
    );
  }
  let busiest = 0;
  view.shards.forEach((s, i) => {
    const cell = grid.children[i];
    const level = s.clients === 0 ? 0 : 0.25 + 0.75 * (s.clients / max);
    cell.style.setProperty("--level", level.toFixed(2));
    cell.classList.toggle("has-suspect", s.suspect > 0);
    cell.classList.toggle("expanded", ui.expandShard === s.index);
    cell.title = `shard-${s.index}: ${s.clients} client${s.clients === 1 ? "" : "s"}${s.suspect ? `, ${s.suspect} suspect` : ""}`;
    busiest = Math.max(busiest, s.clients);
  });
  $("shards-note").textContent = `${view.shards.length} · busiest holds ${busiest}`;

  const list = $("shard-clients");
  const ex = view.expandedShard;
  if (!ex) {
    list.replaceChildren();
    return;
  }
  const shardNode = { key: `shard-${ex.index}`, kind: "shard", state: "routing", status: "active" };
  const rows = [
    treeRow(shardNode, 0, `shard-${ex.index}`, el("span", { class: "node-count", text: `${ex.clients.length + ex.more} clients` })),
  ];
  for (const c of ex.clients) {
    rows.push(
      treeRow(
        { key: `client:${c.subject}`, kind: "client", state: c.state, status: "active" },
        1,
        c.subject,
        el("span", { class: `dot state-${c.state}` }),
      ),
    );
  }
  if (ex.more > 0) rows.push(el("div", { class: "node hint", style: "--depth:1", text: `and ${ex.more} more (use the client table)` }));
  list.replaceChildren(...rows);
}

async function loadChart(machine) {
  if (ui.chartMachine === machine) return;
  ui.chartMachine = machine;
  ui.active = new Set();
  const box = $("chart");
  if (machine === null) {
    box.replaceChildren(el("p", { class: "muted", text: "This actor has no state chart (it is not a state machine)." }));
    return;
  }
  box.replaceChildren(el("p", { class: "muted", text: "loading chart…" }));
  try {
    const res = await fetch(`/chart/${machine}.svg`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const doc = new DOMParser().parseFromString(await res.text(), "image/svg+xml");
    const svg = doc.documentElement;
    if (ui.chartMachine !== machine) return;
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.setAttribute("preserveAspectRatio", "xMidYMin meet");
    box.replaceChildren(document.importNode(svg, true));
    ui.chartSvg = box.querySelector("svg");
    applyZoom();
    highlight(ui.view?.selected ?? null);
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", text: `could not load the ${machine} chart: ${err.message}` }));
  }
}

/** The ids of every active state node for a state value: `monitor`, `monitor.registrations`, `monitor.registrations.running`, ... */
function activeIds(machine, value) {
  const ids = [machine];
  const walk = (prefix, v) => {
    if (typeof v === "string") {
      ids.push(`${prefix}.${v}`);
      return;
    }
    if (v && typeof v === "object") {
      for (const [k, child] of Object.entries(v)) {
        ids.push(`${prefix}.${k}`);
        walk(`${prefix}.${k}`, child);
      }
    }
  };
  walk(machine, value);
  return ids;
}

function highlight(selected) {
  const svg = ui.chartSvg;
  if (!svg || !selected || selected.machine !== ui.chartMachine) return;
  const next = new Set(activeIds(selected.machine, selected.value));
  for (const id of ui.active) {
    if (!next.has(id)) svg.querySelector(`[id="state:${CSS.escape(id)}"]`)?.classList.remove("active", "entered");
  }
  for (const id of next) {
    const g = svg.querySelector(`[id="state:${CSS.escape(id)}"]`);
    if (!g) continue;
    if (!ui.active.has(id)) {
      g.classList.add("active", "entered");
      setTimeout(() => g.classList.remove("entered"), 900);
    } else g.classList.add("active");
  }
  ui.active = next;
}

function renderSelected(selected) {
  const title = $("chart-title");
  const state = $("chart-state");
  if (!selected) {
    title.textContent = "State chart";
    state.textContent = ui.select ? `${ui.select} is not running` : "";
    loadChart(null);
    $("context").replaceChildren();
    return;
  }
  title.textContent = selected.machine ? `${selected.machine} machine — ${selected.key}` : selected.key;
  state.textContent = selected.status === "active" ? selected.state : `${selected.state} (${selected.status})`;
  state.dataset.status = selected.status;
  if (ui.chartMachine !== selected.machine) loadChart(selected.machine);
  else highlight(selected);
  $("context").replaceChildren(
    ...Object.entries(selected.context).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === null ? "—" : String(v) })]),
  );
}

function renderEvents(view) {
  const r = view.rates;
  const top = r.byType
    .slice(0, 4)
    .map((t) => `${t.type} ${fmt.format(Math.round(t.perSecond))}/s`)
    .join(" · ");
  $("rates").textContent = `${fmt.format(Math.round(r.eventsPerSecond))} events/s${r.sampled ? " (sampled)" : ""}${top ? ` — ${top}` : ""}`;
  let list;
  if (ui.tab === "selected") list = view.selected?.events ?? [];
  else if (ui.tab === "reports") list = ui.events.filter((e) => e.channel === "report");
  else list = ui.events;
  const shown = list.slice(-150).reverse();
  $("events").replaceChildren(
    ...shown.map((e) =>
      el(
        "li",
        { class: `event ${e.channel}`, "data-type": e.type },
        el("time", { text: time(e.at) }),
        el("span", { class: "etype" }, el("span", { class: "channel", text: CHANNEL[e.channel] }), e.type),
        el("button", { class: "eactor", text: e.actor, title: `select ${e.actor}`, onclick: () => selectActor(e.actor) }),
        el("span", { class: "edetail", text: e.detail }),
      ),
    ),
  );
  if (shown.length === 0) $("events").append(el("li", { class: "muted empty", text: "no events yet" }));
}

function renderClients(view) {
  const chips = $("state-filter");
  const counts = { all: view.counts.total, ...view.counts };
  chips.replaceChildren(
    ...STATES.map((s) =>
      el(
        "button",
        {
          class: `chip state-${s}`,
          role: "radio",
          "aria-checked": ui.clients.state === s ? "true" : "false",
          onclick: () => {
            ui.clients.state = s;
            ui.clients.offset = 0;
            request();
          },
        },
        el("span", { text: s }),
        el("b", { text: fmt.format(counts[s] ?? 0) }),
      ),
    ),
  );
  const { total, offset, rows } = view.clients;
  $("page-info").textContent =
    total === 0 ? "0 of 0" : `${fmt.format(offset + 1)}–${fmt.format(offset + rows.length)} of ${fmt.format(total)}`;
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + rows.length >= total;
  $("clients-empty").hidden = rows.length > 0;
  for (const th of document.querySelectorAll("#clients th[data-sort]")) {
    th.dataset.dir = th.dataset.sort === ui.clients.sort ? (ui.clients.descending ? "desc" : "asc") : "";
  }
  const tbody = $("clients").tBodies[0];
  tbody.replaceChildren(
    ...rows.map((r) =>
      el(
        "tr",
        {
          class: `${ui.select === `client:${r.subject}` ? "selected" : ""}${r.live ? "" : " finished"}`,
          "data-subject": r.subject,
          "data-state": r.state,
          onclick: () => selectActor(`client:${r.subject}`),
        },
        el("td", { class: "subject", text: r.subject }),
        el("td", {}, el("span", { class: `badge state-${r.state}`, text: r.state })),
        el("td", { class: "mono muted", text: r.machineState }),
        el("td", { title: new Date(r.lastSeenMs).toISOString(), text: ago(r.lastSeenMs, view.at) }),
        el("td", { class: "num", text: `${r.rttMs.toFixed(1)} ms` }),
        el("td", { class: `num${r.missedPings > 0 ? " warn" : ""}`, text: String(r.missedPings) }),
        el("td", { class: "num muted", text: r.shard >= 0 ? String(r.shard) : "—" }),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------
// interaction

function applyZoom() {
  const svg = ui.chartSvg;
  if (!svg) return;
  $("chart").classList.toggle("zoomed", ui.zoom > 1);
  svg.style.width = `${ui.zoom * 100}%`;
  svg.style.height = ui.zoom > 1 ? "auto" : "100%";
  $("zoom-fit").disabled = ui.zoom === 1;
  $("zoom-out").disabled = ui.zoom === 1;
}
$("zoom-in").addEventListener("click", () => {
  ui.zoom = Math.min(6, ui.zoom * 1.5);
  applyZoom();
});
$("zoom-out").addEventListener("click", () => {
  ui.zoom = Math.max(1, ui.zoom / 1.5);
  applyZoom();
});
$("zoom-fit").addEventListener("click", () => {
  ui.zoom = 1;
  applyZoom();
});

function selectActor(key) {
  ui.select = key;
  request();
}

function toggleShard(index) {
  ui.expandShard = ui.expandShard === index ? null : index;
  // With several partitions each has its own shard-N: the tree selects one, the grid only lists the clients.
  if (ui.expandShard !== null && ui.view?.tree?.kind !== "balancer") ui.select = `shard-${index}`;
  request();
}

$("coordinator").addEventListener("change", (e) => {
  ui.coordinator = e.target.value;
  ui.lastSeq = 0;
  ui.events = [];
  ui.expandShard = null;
  ui.select = "election";
  request();
});

let searchTimer;
$("search").addEventListener("input", (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    ui.clients.text = e.target.value.trim();
    ui.clients.offset = 0;
    request();
  }, 150);
});

$("prev").addEventListener("click", () => {
  ui.clients.offset = Math.max(0, ui.clients.offset - ui.clients.limit);
  request();
});
$("next").addEventListener("click", () => {
  ui.clients.offset += ui.clients.limit;
  request();
});

for (const th of document.querySelectorAll("#clients th[data-sort]")) {
  th.addEventListener("click", () => {
    const key = th.dataset.sort;
    if (ui.clients.sort === key) ui.clients.descending = !ui.clients.descending;
    else {
      ui.clients.sort = key;
      ui.clients.descending = key === "lastSeenMs" || key === "missedPings" || key === "rttMs";
    }
    request();
  });
}

for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => {
    ui.tab = tab.dataset.tab;
    for (const t of document.querySelectorAll("[data-tab]")) t.setAttribute("aria-selected", String(t === tab));
    if (ui.view) renderEvents(ui.view);
  });
}

connect();
