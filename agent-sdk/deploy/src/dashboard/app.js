// The Agora dashboard: a snapshot, then live updates over Server-Sent Events.
// Every value from the deployment is inserted as text (never as HTML): journals
// carry what peers wrote.
'use strict';

const state = { agents: {}, chain: {}, deals: {}, journals: {}, registry: [] };
const COLORS = ['#2f5fd0', '#1a7f37', '#c62828', '#b26a00', '#7b3fbf', '#00838f', '#6d4c41', '#ad1457'];
const MAX_SHOWN = 50;
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function td(text, cls) {
  return el('td', { class: cls, text: text === undefined || text === null ? '–' : String(text) });
}

function nameOf(address) {
  if (!address) return '?';
  const lower = address.toLowerCase();
  for (const a of Object.values(state.agents)) {
    if (a.address && a.address.toLowerCase() === lower) return a.name;
  }
  return short(address);
}

function short(address) {
  return address ? address.slice(0, 8) + '…' + address.slice(-6) : null;
}

function addressCell(address) {
  return el('td', { class: 'addr', title: address || '', text: short(address) || '–' });
}

function time(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function services(list) {
  return (list || []).map((s) => `${s.skill} at ${s.price}/${s.unit}`).join(', ') || '–';
}

function renderAgents() {
  const rows = Object.values(state.agents).map((a) => el('tr', { 'data-agent': a.name },
    td(a.name),
    el('td', {}, el('span', { class: 'badge status-' + a.status.replace(/ /g, '-'), text: a.status })),
    td(a.pid), td(a.starts), td(a.endpoint, 'mono'), td(services(a.services)),
    td(a.model || (a.skills.includes('llm') ? 'default model' : null)), td(a.lastExit)));
  fill(document.querySelector('#agents tbody'), rows);
}

function renderMoney() {
  const rows = Object.values(state.agents).map((a) => {
    const p = a.policy;
    const spent = el('td', { text: p ? p.spentDaily : '–' });
    if (p && p.usedPercent !== null && p.usedPercent !== undefined) {
      const bar = el('span', { class: 'bar', title: p.usedPercent.toFixed(1) + ' % of the daily limit' }, el('span'));
      bar.firstChild.style.width = p.usedPercent + '%';
      spent.append(bar);
    }
    return el('tr', { 'data-agent': a.name },
      td(a.name), addressCell(a.address), td(a.balance), td(a.gas), spent,
      td(p ? p.daily : null), td(p ? p.perDeal : null));
  });
  fill(document.querySelector('#money tbody'), rows);
}

function renderDeals(fresh) {
  const deals = Object.values(state.deals).sort((a, b) => b.updated - a.updated || (a.id < b.id ? -1 : 1));
  document.getElementById('deal-count').textContent = deals.length ? `(${deals.length})` : '';
  const box = document.getElementById('deals');
  if (!deals.length) {
    box.replaceChildren(el('p', { class: 'empty', text: 'No deal yet.' }));
    return;
  }
  box.replaceChildren(...deals.slice(0, MAX_SHOWN).map((d) => {
    const head = el('div', { class: 'deal-head' },
      el('strong', { text: d.skill || 'deal' }),
      el('span', { text: `${nameOf(d.buyer)} → ${nameOf(d.seller)}` }),
      el('span', { class: 'price', text: d.priceText || '' }),
      el('span', { class: 'mono', text: d.mode || '' }),
      el('span', { class: 'stage stage-' + d.stage, text: d.stage }),
      el('span', { class: 'mono note', text: d.id.slice(0, 18) + '…' }));
    const steps = el('ol', { class: 'steps' }, ...d.steps.map((s) => el('li', { 'data-kind': s.kind },
      el('span', { class: 'time', text: time(s.time) }),
      el('span', { class: 'kind', text: s.kind }),
      el('span', { text: `${s.agent}, entry ${s.entry}` }),
      ...s.transactions.map((t) => el('span', { class: 'tx', text: t })))));
    return el('div', { class: 'deal' + (d.id === fresh ? ' fresh' : ''), 'data-deal': d.id, 'data-stage': d.stage }, head, steps);
  }));
}

function renderHistory() {
  // Cumulative revenue per seller and spend per buyer, in tokens (6 decimals).
  const series = new Map();
  const paid = Object.values(state.deals).filter((d) => d.paidAt && d.price).sort((a, b) => a.paidAt - b.paidAt);
  for (const d of paid) {
    const amount = Number(d.price) / 1e6;
    for (const [who, what] of [[d.seller, 'revenue'], [d.buyer, 'spend']]) {
      if (!who) continue;
      const key = `${nameOf(who)} ${what}`;
      if (!series.has(key)) series.set(key, []);
      const s = series.get(key);
      const last = s.length ? s[s.length - 1][1] : 0;
      s.push([d.paidAt, last + amount]);
    }
  }
  const box = document.getElementById('history');
  if (!series.size) {
    box.replaceChildren(el('p', { class: 'empty', text: 'No payment yet.' }));
    return;
  }
  const W = 640, H = 200, L = 48, B = 22;
  const times = paid.map((d) => d.paidAt);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1000);
  const top = Math.max(...[...series.values()].map((s) => s[s.length - 1][1]), 0.000001);
  const x = (t) => L + (W - L - 8) * (t - t0) / (t1 - t0);
  const y = (v) => H - B - (H - B - 8) * v / top;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': 'revenue and spend over time' });
  chart.append(svg('line', { x1: L, y1: H - B, x2: W - 8, y2: H - B, stroke: '#d9dee6' }));
  chart.append(svg('line', { x1: L, y1: 8, x2: L, y2: H - B, stroke: '#d9dee6' }));
  for (const [v, label] of [[0, '0'], [top, top.toFixed(2)]]) {
    const t = svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' });
    t.textContent = label;
    chart.append(t);
  }
  for (const [t, anchor] of [[t0, 'start'], [t1, 'end']]) {
    const label = svg('text', { x: x(t), y: H - 6, 'text-anchor': anchor });
    label.textContent = time(t);
    chart.append(label);
  }
  const legend = el('div', { class: 'legend' });
  [...series.entries()].forEach(([key, points], i) => {
    const color = COLORS[i % COLORS.length];
    let path = `M ${x(points[0][0])} ${y(0)}`;
    let prev = 0;
    for (const [t, v] of points) { path += ` L ${x(t)} ${y(prev)} L ${x(t)} ${y(v)}`; prev = v; }
    path += ` L ${x(t1)} ${y(prev)}`;
    chart.append(svg('path', { d: path, fill: 'none', stroke: color, 'stroke-width': 2, 'data-series': key }));
    const swatch = el('i');
    swatch.style.background = color;
    legend.append(el('span', {}, swatch, `${key}: ${prev.toFixed(6).replace(/\.?0+$/, '')} USDC`));
  });
  box.replaceChildren(chart, legend);
}

function renderJournals() {
  const j = state.journals || {};
  const line = document.getElementById('audit-line');
  if (j.error) line.textContent = 'audit failed: ' + j.error;
  else if (j.checkedAt) {
    line.textContent = `audited at ${time(j.checkedAt)}: ` + (j.clean ? 'clean' : `${j.discrepancies.length} discrepancies`) + (j.chainNote ? ` (${j.chainNote})` : '');
    line.className = j.clean ? 'yes' : 'no';
  }
  fill(document.querySelector('#journals tbody'), (j.journals || []).map((r) => el('tr', { 'data-agent': r.agent },
    td(r.agent), td(r.entries), td(r.verified ? 'yes' : 'NO', r.verified ? 'yes' : 'no'), td(r.deals), td(r.matched), td(r.tornTailBytes ? r.tornTailBytes + ' bytes' : '–'))));
  document.getElementById('discrepancies').replaceChildren(...(j.discrepancies || []).map((d) =>
    el('li', { text: `${d.agent}${d.entry !== null && d.entry !== undefined ? ', entry ' + d.entry : ''}: ${d.reason}` })));
}

function renderRegistry() {
  fill(document.querySelector('#registry tbody'), state.registry.map((r) => el('tr', { 'data-address': r.address },
    td(nameOf(r.address)), td(r.endpoint, 'mono'), td(services(r.services)),
    td(r.suspended ? 'suspended' : r.score.toFixed(1)), td(r.feedback), td(r.stake))));
}

function renderChain() {
  const c = state.chain || {};
  document.getElementById('chain-line').textContent = c.error
    ? `chain ${c.chainId}: ${c.error}`
    : `chain ${c.chainId} at block ${c.block ?? '…'} (${c.rpcUrl})`;
  const rows = [['JSON-RPC', c.rpcUrl], ['chain id', c.chainId], ['latest block', c.block], ['status', c.error || 'answering']];
  for (const [name, address] of Object.entries(c.contracts || {})) rows.push([name, address]);
  fill(document.querySelector('#chain tbody'), rows.map(([k, v]) => el('tr', {}, el('th', { text: k }), td(v, 'mono'))));
}

function renderAll() {
  renderAgents(); renderMoney(); renderDeals(); renderHistory(); renderJournals(); renderRegistry(); renderChain();
}

function setLive(on) {
  const live = document.getElementById('live');
  live.textContent = on ? 'live' : 'reconnecting';
  live.className = 'badge ' + (on ? 'ok' : 'off');
}

function start() {
  const events = new EventSource('/events');
  events.onopen = () => setLive(true);
  events.onerror = () => setLive(false);
  events.addEventListener('snapshot', (e) => { Object.assign(state, JSON.parse(e.data)); setLive(true); renderAll(); });
  events.addEventListener('agent', (e) => { const a = JSON.parse(e.data); state.agents[a.name] = a; renderAgents(); renderMoney(); });
  events.addEventListener('deal', (e) => { const d = JSON.parse(e.data); state.deals[d.id] = d; renderDeals(d.id); renderHistory(); });
  events.addEventListener('journals', (e) => { state.journals = JSON.parse(e.data); renderJournals(); });
  events.addEventListener('registry', (e) => { state.registry = JSON.parse(e.data); renderRegistry(); });
  events.addEventListener('chain', (e) => { state.chain = JSON.parse(e.data); renderChain(); });
}

start();
