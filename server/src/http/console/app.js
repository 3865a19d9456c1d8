// The LwM2M server's web console: plain ES2020 against the server's own HTTP API (Leshan's
// REST routes and JSON, the event stream at /api/events, the firmware routes). Nothing is
// loaded from elsewhere. Everything a device sends is put in the page as text, never as
// markup.
'use strict';

// ---- small helpers ------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** An element with attributes (`text` sets textContent, `on*` adds a listener) and children. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const enc = encodeURIComponent;
/** The id form of a path: "/3/0/14" -> "3-0-14". */
const pid = (path) => path.replace(/^\//, '').split('/').join('-');
const fmtTime = (t) => {
  if (t === undefined || t === null || t === '') return '';
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
};

// ---- the API: token, fetch, JSON --------------------------------------------------------

const TOKEN_KEY = 'lwm2m-console-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';
let tokenAsk = null;

/** Asks for the bearer token once; concurrent 401s share the one dialog. */
function askToken() {
  if (tokenAsk) return tokenAsk;
  tokenAsk = new Promise((resolve) => {
    const dialog = $('token-dialog');
    const form = $('token-form');
    const input = $('token-input');
    input.value = '';
    const done = (ev) => {
      ev.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      form.removeEventListener('submit', done);
      token = t;
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token-forget').hidden = false;
      dialog.close();
      tokenAsk = null;
      resolve(t);
      restartEvents();
    };
    form.addEventListener('submit', done);
    if (dialog.showModal) dialog.showModal(); else dialog.setAttribute('open', '');
    input.focus();
  });
  return tokenAsk;
}

/** fetch with the token; on 401 asks for it and tries again. */
async function api(method, url, body, contentType) {
  for (;;) {
    const headers = {Accept: 'application/json'};
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined && contentType) headers['Content-Type'] = contentType;
    const res = await fetch(url, {method, headers, body});
    if (res.status !== 401) return res;
    await askToken();
  }
}

/** The body as JSON, or null when it is none. */
async function json(res) {
  const text = await res.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch (_) { return {message: text}; }
}

/** Throws an Error that says what went wrong unless `res` is a success. */
async function expectOk(res) {
  const body = await json(res);
  if (!res.ok) {
    const msg = body && (body.message || body.error) ? (body.message || body.error) : res.statusText;
    const e = new Error(`${res.status}: ${msg}`);
    e.status = res.status;
    throw e;
  }
  if (body && body.ok === false) throw new Error(body.error || 'refused');
  return body;
}

// ---- the object model --------------------------------------------------------------------

const specs = new Map(); // object id -> {id, name, instancetype, resourcedefs}
async function loadSpecs() {
  try {
    const list = await expectOk(await api('GET', '/api/objectspecs'));
    for (const o of list || []) specs.set(Number(o.id), o);
  } catch (e) {
    console.warn('object model not available', e);
  }
}
const resourceSpec = (o, r) => {
  const s = specs.get(Number(o));
  return s ? (s.resourcedefs || []).find((d) => Number(d.id) === Number(r)) : undefined;
};

// ---- values of nodes (Leshan node JSON) ---------------------------------------------------

/** A node value as text: numbers as given, opaque as hex, object links as "o:i", times
 * (Unix milliseconds in Leshan's JSON) as ISO 8601 UTC. */
function show(v, type) {
  if (v === undefined || v === null) return '';
  if (type === 'TIME' && v !== '' && !isNaN(Number(v))) {
    const d = new Date(Number(v));
    if (!isNaN(d)) return d.toISOString().replace('.000Z', 'Z');
  }
  if (typeof v === 'object') {
    if ('objectId' in v) return `${v.objectId}:${v.objectInstanceId}`;
    return JSON.stringify(v);
  }
  return String(v);
}

/** Calls `set(path, text)` for every value in `node`, which sits at `path`. */
function flatten(node, path, set) {
  if (!node || typeof node !== 'object') return;
  switch (node.kind) {
    case 'obj':
      for (const i of node.instances || []) flatten(i, `${path}/${i.id}`, set);
      break;
    case 'instance':
      for (const r of node.resources || []) flatten(r, `${path}/${r.id}`, set);
      break;
    case 'multiResource': {
      const vals = node.values || {};
      set(path, Object.entries(vals).map(([k, v]) => `${k}: ${show(v, node.type)}`).join(', '));
      for (const [k, v] of Object.entries(vals)) set(`${path}/${k}`, show(v, node.type));
      break;
    }
    case 'singleResource':
    case 'resourceInstance':
      set(path, show(node.value, node.type));
      break;
    default:
      break;
  }
}

// ---- state -------------------------------------------------------------------------------

const values = new Map(); // "ep path" -> text: last value seen this session
const pending = new Map(); // requestId -> {ep, path, op, written}
const observed = new Set(); // "ep path"
let current = null; // the endpoint shown in the device view

function setValue(ep, path, text) {
  values.set(`${ep} ${path}`, text);
  if (values.size > 20000) values.delete(values.keys().next().value);
  if (ep !== current) return;
  const cell = $(`value-${pid(path)}`);
  if (cell) {
    cell.textContent = text;
    cell.classList.remove('flash');
    void cell.offsetWidth; // restart the animation
    cell.classList.add('flash');
  }
}

/** Shows `text` in the status cell of `path` (class ok, error or queued). */
function setStatus(path, text, kind) {
  const cell = $(`status-${pid(path)}`);
  if (!cell) return;
  cell.textContent = text;
  cell.className = `status ${kind || ''}`;
}

// ---- devices -----------------------------------------------------------------------------

let devicePrefix = '';
let deviceNext = null;
let deviceLoad = 0;

function deviceRow(r) {
  const ep = r.endpoint;
  const state = r.queuemode ? (r.sleeping ? 'sleeping' : 'awake') : 'online';
  return el('tr', {'data-testid': `device-row-${ep}`, 'data-ep': ep},
    el('td', {}, el('a', {href: `#/device/${enc(ep)}`, text: ep})),
    el('td', {text: r.address || ''}),
    el('td', {text: r.lwM2mVersion || ''}),
    el('td', {text: (r.bindingMode || '') + (r.queuemode ? ' (queue)' : '')}),
    el('td', {'data-testid': `device-state-${ep}`, class: `state-${state}`, text: state}),
    el('td', {text: r.lifetime !== undefined ? `${r.lifetime} s` : ''}),
    el('td', {text: fmtTime(r.lastUpdate)}));
}

/** Puts a row for `r` in order, replacing the old one; only if it matches the search. */
function upsertDevice(r) {
  if (!r || !r.endpoint || !r.endpoint.startsWith(devicePrefix)) return;
  const body = $('device-rows');
  const row = deviceRow(r);
  const old = body.querySelector(`tr[data-ep="${CSS.escape(r.endpoint)}"]`);
  if (old) { old.replaceWith(row); return; }
  // Beyond the last row loaded while more pages follow: it shows up when they are loaded.
  let before = null;
  for (const tr of body.rows) if (tr.dataset.ep > r.endpoint) { before = tr; break; }
  if (!before && deviceNext) return;
  body.insertBefore(row, before);
  $('device-empty').hidden = true;
}

function removeDevice(ep) {
  const row = $('device-rows').querySelector(`tr[data-ep="${CSS.escape(ep)}"]`);
  if (row) row.remove();
  $('device-empty').hidden = $('device-rows').rows.length > 0;
}

function setDeviceState(ep, sleeping) {
  const cell = document.querySelector(`[data-testid="device-state-${CSS.escape(ep)}"]`);
  if (cell) {
    const state = sleeping ? 'sleeping' : 'awake';
    cell.textContent = state;
    cell.className = `state-${state}`;
  }
}

/** The next page's URL from a `Link: <url>; rel="next"` header. */
function nextLink(res) {
  const link = res.headers.get('Link') || '';
  for (const part of link.split(',')) {
    const m = part.match(/<([^>]*)>\s*;\s*rel="?next"?/);
    if (m) return m[1];
  }
  return null;
}

async function loadDevices(append) {
  const n = ++deviceLoad;
  const url = append && deviceNext
    ? deviceNext
    : `/api/clients?prefix=${enc(devicePrefix)}&limit=100`;
  try {
    const res = await api('GET', url);
    const list = await expectOk(res);
    if (n !== deviceLoad) return; // a newer search answered first
    const body = $('device-rows');
    if (!append) body.replaceChildren();
    for (const r of list || []) body.append(deviceRow(r));
    deviceNext = nextLink(res);
    $('device-more').hidden = !deviceNext;
    const total = res.headers.get('X-Total-Count');
    $('device-count').textContent = total !== null ? `${total} device(s)` : '';
    $('device-empty').hidden = body.rows.length > 0;
    $('device-error').hidden = true;
  } catch (e) {
    $('device-error').textContent = `Devices: ${e.message}`;
    $('device-error').hidden = false;
  }
}

// ---- one device --------------------------------------------------------------------------

function kv(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '') continue;
    dl.append(el('dt', {text: k}), el('dd', {'data-testid': `reg-${k}`, text: v}));
  }
}

async function showDevice(ep) {
  current = ep;
  $('device-title').textContent = ep;
  $('view-device').dataset.ep = ep;
  $('device-objects').replaceChildren();
  $('device-registration').replaceChildren();
  $('device-identity').replaceChildren();
  $('device-observations').replaceChildren();
  $('device-error-one').hidden = true;
  let r;
  try {
    r = await expectOk(await api('GET', `/api/clients/${enc(ep)}`));
  } catch (e) {
    if (current !== ep) return;
    $('device-error-one').textContent = e.status === 404 ? `${ep} is not registered.` : e.message;
    $('device-error-one').hidden = false;
    return;
  }
  if (current !== ep) return;
  renderRegistration(r);
  renderObjects(ep, r);
}

function renderRegistration(r) {
  kv($('device-registration'), [
    ['endpoint', r.endpoint], ['registrationId', r.registrationId],
    ['address', r.address], ['lwM2mVersion', r.lwM2mVersion],
    ['bindingMode', r.bindingMode], ['queuemode', r.queuemode ? 'yes' : 'no'],
    ['state', r.queuemode ? (r.sleeping ? 'sleeping' : 'awake') : 'online'],
    ['lifetime', r.lifetime !== undefined ? `${r.lifetime} s` : ''],
    ['registrationDate', fmtTime(r.registrationDate)], ['lastUpdate', fmtTime(r.lastUpdate)],
    ['expiresAt', fmtTime(r.expiresAt)], ['secure', r.secure ? 'yes' : 'no'],
    ['queued', r.queued], ['inflight', r.inflight], ['smsNumber', r.smsNumber],
  ]);
  const id = r.identity;
  kv($('device-identity'), id
    ? [['kind', id.kind], ['id', id.id], ['addedAt', fmtTime(id.addedAt)]]
    : [['kind', 'none (NoSec)']]);
  const obs = $('device-observations');
  obs.replaceChildren();
  const ep = r.endpoint;
  for (const key of [...observed]) if (key.startsWith(`${ep} `)) observed.delete(key);
  for (const o of r.observations || []) {
    const paths = o.paths || [];
    for (const p of paths) observed.add(`${ep} ${p}`);
    // A composite observation is cancelled as one, by its paths.
    const cancel = paths.length > 1
      ? () => command(ep, paths[0], 'cancel', 'DELETE',
        `/api/clients/${enc(ep)}/composite/observe?paths=${enc(paths.join(','))}`)
      : () => cancelObserve(ep, paths[0]);
    obs.append(el('li', {'data-testid': `observation-${o.id}`},
      `#${o.id} ${paths.join(', ')} `,
      el('button', {type: 'button', onclick: cancel, text: 'Cancel'})));
  }
  if (!obs.children.length) obs.append(el('li', {class: 'muted', text: 'none'}));
}

/** The instances of each object: `availableInstances`, else the object links. */
function instancesOf(r) {
  const out = new Map();
  if (r.availableInstances) {
    for (const [o, list] of Object.entries(r.availableInstances)) out.set(Number(o), list.map(Number));
  } else {
    for (const l of r.objectLinks || []) {
      const m = String(l.url).match(/^\/(\d+)(?:\/(\d+))?$/);
      if (!m) continue;
      const o = Number(m[1]);
      if (!out.has(o)) out.set(o, []);
      if (m[2] !== undefined) out.get(o).push(Number(m[2]));
    }
  }
  return [...out.entries()].sort((a, b) => a[0] - b[0]);
}

function button(label, id, onclick, cls) {
  return el('button', {type: 'button', 'data-testid': id, id, class: cls, onclick, text: label});
}

function renderObjects(ep, r) {
  const root = $('device-objects');
  root.replaceChildren();
  for (const [o, instances] of instancesOf(r)) {
    if (o === 0) continue; // the Security object: no server may read it
    const spec = specs.get(o);
    const name = spec ? spec.name : 'unknown object';
    const opath = `/${o}`;
    const box = el('details', {class: 'object', 'data-testid': `object-${o}`, open: o === 3 || undefined},
      el('summary', {}, el('strong', {text: `/${o} ${name}`}), ' ',
        button('Read', `read-${o}`, () => read(ep, opath)),
        el('span', {id: `status-${o}`, class: 'status'})));
    for (const i of instances) box.append(renderInstance(ep, o, i, spec));
    root.append(box);
  }
}

function renderInstance(ep, o, i, spec) {
  const ipath = `/${o}/${i}`;
  const table = el('table', {class: 'grid resources'},
    el('thead', {}, el('tr', {}, ...['Id', 'Resource', 'Ops', 'Type', 'Value', '', 'Result']
      .map((h) => el('th', {text: h})))));
  const body = el('tbody');
  const defs = spec ? spec.resourcedefs || [] : [];
  for (const d of defs) body.append(renderResource(ep, o, i, d));
  table.append(body);
  return el('div', {class: 'instance', 'data-testid': `instance-${o}-${i}`},
    el('h4', {}, `Instance ${ipath} `,
      button('Read', `read-${o}-${i}`, () => read(ep, ipath)),
      button('Observe', `observe-${o}-${i}`, () => observe(ep, ipath)),
      button('Cancel observe', `cancel-${o}-${i}`, () => cancelObserve(ep, ipath)),
      el('span', {id: `status-${o}-${i}`, class: 'status'})),
    defs.length ? table : el('p', {class: 'muted', text: 'No definition for this object: Read shows its values.'}),
    defs.length ? null : el('pre', {id: `value-${o}-${i}`, class: 'value'}));
}

function renderResource(ep, o, i, d) {
  const path = `/${o}/${i}/${d.id}`;
  const id = pid(path);
  const ops = d.operations || '';
  const cur = values.get(`${ep} ${path}`);
  const actions = el('td', {class: 'actions'});
  if (ops.includes('R')) {
    actions.append(button('Read', `read-${id}`, () => read(ep, path)));
    actions.append(button('Observe', `observe-${id}`, () => observe(ep, path)));
    actions.append(button('Cancel', `cancel-${id}`, () => cancelObserve(ep, path)));
  }
  if (ops.includes('W')) actions.append(button('Write', `write-${id}`, () => openEditor(ep, path, d)));
  if (ops.includes('E')) actions.append(button('Execute', `exec-${id}`, () => execute(ep, path)));
  const row = el('tr', {'data-testid': `resource-${id}`, id: `resource-${id}`},
    el('td', {text: d.id}),
    el('td', {title: d.description || '', text: d.name}),
    el('td', {text: ops || '-'}),
    el('td', {text: d.type + (d.instancetype === 'multiple' ? '[]' : '') + (d.units ? ` (${d.units})` : '')}),
    el('td', {id: `value-${id}`, 'data-testid': `value-${id}`, class: 'value', text: cur === undefined ? '' : cur}),
    actions,
    el('td', {id: `status-${id}`, 'data-testid': `status-${id}`, class: 'status'}));
  if (observed.has(`${ep} ${path}`)) row.classList.add('observed');
  return row;
}

// ---- device management -------------------------------------------------------------------

/** Applies a Leshan response body for `op` on `path`: values, status. */
function applyResponse(ep, path, op, body, written) {
  if (!body) { setStatus(path, 'empty answer', 'error'); return; }
  if (body.success === false || body.failure === true) {
    setStatus(path, body.errormessage ? `${body.status}: ${body.errormessage}` : (body.status || 'failed'), 'error');
    return;
  }
  if (body.content !== undefined && body.content !== null) {
    flatten(body.content, path, (p, v) => setValue(ep, p, v));
    // An instance of an object the model does not know: its values as they came.
    const pre = $(`value-${pid(path)}`);
    if (pre && pre.tagName === 'PRE' && ep === current) pre.textContent = JSON.stringify(body.content, null, 1);
  }
  if (op === 'write' && written !== undefined) setValue(ep, path, written);
  if (op === 'observe') markObserved(ep, path, true);
  if (op === 'cancel') markObserved(ep, path, false);
  setStatus(path, body.status || 'ok', 'ok');
}

function markObserved(ep, path, on) {
  const key = `${ep} ${path}`;
  if (on) observed.add(key); else observed.delete(key);
  const row = $(`resource-${pid(path)}`);
  if (row && ep === current) row.classList.toggle('observed', on);
}

/** Sends a device management request and shows its outcome next to `path`. */
async function command(ep, path, op, method, url, body, contentType, written) {
  setStatus(path, '…', 'busy');
  let res;
  try {
    res = await api(method, url, body, contentType);
  } catch (e) {
    setStatus(path, `network: ${e.message}`, 'error');
    return;
  }
  const data = await json(res);
  if (res.status === 202 && data && data.requestId !== undefined) {
    pending.set(String(data.requestId), {ep, path, op, written});
    if (pending.size > 1000) pending.delete(pending.keys().next().value);
    setStatus(path, `queued (#${data.requestId})`, 'queued');
    return;
  }
  if (!res.ok) {
    setStatus(path, `${res.status}: ${data && data.message ? data.message : res.statusText}`, 'error');
    return;
  }
  applyResponse(ep, path, op, data || {status: `${res.status}`}, written);
  if (op === 'observe' || op === 'cancel') refreshRegistration(ep);
}

const dmUrl = (ep, path, suffix) => `/api/clients/${enc(ep)}${path}${suffix || ''}`;
const read = (ep, path) => command(ep, path, 'read', 'GET', dmUrl(ep, path));
const observe = (ep, path) => command(ep, path, 'observe', 'POST', dmUrl(ep, path, '/observe'));
const cancelObserve = (ep, path) => command(ep, path, 'cancel', 'DELETE', dmUrl(ep, path, '/observe'));
const execute = (ep, path) => command(ep, path, 'execute', 'POST', dmUrl(ep, path), '', 'text/plain');

async function refreshRegistration(ep) {
  if (ep !== current) return;
  try {
    const r = await expectOk(await api('GET', `/api/clients/${enc(ep)}`));
    if (ep === current) renderRegistration(r);
  } catch (_) { /* the next event will tell */ }
}

const LESHAN_TYPE = {
  string: 'STRING', integer: 'INTEGER', unsigned: 'UNSIGNED_INTEGER', float: 'FLOAT',
  boolean: 'BOOLEAN', opaque: 'OPAQUE', time: 'TIME', objlnk: 'OBJLNK', corelnk: 'CORELINK',
};

/** The node value of `text` for a resource of `type`, or throws why not. */
function parseValue(type, text) {
  const t = text.trim();
  switch (type) {
    case 'integer': case 'unsigned':
      if (!/^-?\d+$/.test(t) || (type === 'unsigned' && t.startsWith('-'))) throw new Error(`not an ${type === 'unsigned' ? 'unsigned ' : ''}integer`);
      return t;
    case 'float':
      if (t === '' || isNaN(Number(t))) throw new Error('not a number');
      return t;
    case 'time': {
      // Seconds since 1970, or a date and time (ISO 8601); sent as Unix milliseconds.
      const ms = /^-?\d+$/.test(t) ? Number(t) * 1000 : Date.parse(t);
      if (isNaN(ms)) throw new Error('not a time: seconds since 1970, or 2026-01-31T12:00:00Z');
      return ms;
    }
    case 'boolean':
      if (t !== 'true' && t !== 'false') throw new Error('true or false');
      return t === 'true';
    case 'opaque':
      if (!/^([0-9a-fA-F]{2})*$/.test(t)) throw new Error('not hex bytes');
      return t.toLowerCase();
    case 'objlnk': {
      const m = t.match(/^(\d+):(\d+)$/);
      if (!m) throw new Error('an object link is o:i');
      return {objectId: Number(m[1]), objectInstanceId: Number(m[2])};
    }
    default:
      return text;
  }
}

/** The inline editor of a writable resource, typed by the model. */
function openEditor(ep, path, d) {
  const id = pid(path);
  const cell = $(`value-${id}`);
  if (!cell || document.getElementById(`editor-${id}`)) return;
  const multiple = d.instancetype === 'multiple';
  let input;
  if (d.type === 'boolean' && !multiple) {
    input = el('select', {id: `input-${id}`, 'data-testid': `input-${id}`},
      el('option', {text: 'true'}), el('option', {text: 'false'}));
    if (cell.textContent === 'false') input.value = 'false';
  } else {
    const hint = multiple ? '0=value, 1=value' : ({objlnk: 'o:i', opaque: 'hex', time: '2026-01-31T12:00:00Z'}[d.type] || d.type);
    input = el('input', {id: `input-${id}`, 'data-testid': `input-${id}`, placeholder: hint, size: 16,
      inputmode: ['integer', 'unsigned', 'float'].includes(d.type) && !multiple ? 'decimal' : undefined});
    if (!multiple) input.value = cell.textContent;
  }
  const form = el('form', {id: `editor-${id}`, class: 'editor'}, input,
    el('button', {type: 'submit', id: `submit-${id}`, 'data-testid': `submit-${id}`, text: 'Send'}),
    el('button', {type: 'button', text: 'Cancel', onclick: () => form.remove()}));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    let node;
    const ty = LESHAN_TYPE[d.type] || 'STRING';
    try {
      if (multiple) {
        const vals = {};
        for (const part of input.value.split(',')) {
          if (!part.trim()) continue;
          const m = part.match(/^\s*(\d+)\s*=(.*)$/);
          if (!m) throw new Error('write 0=value, 1=value');
          vals[m[1]] = parseValue(d.type, m[2]);
        }
        node = {id: Number(d.id), kind: 'multiResource', type: ty, values: vals};
      } else {
        node = {id: Number(d.id), kind: 'singleResource', type: ty, value: parseValue(d.type, input.value)};
      }
    } catch (e) {
      setStatus(path, e.message, 'error');
      return;
    }
    form.remove();
    const written = multiple
      ? Object.entries(node.values).map(([k, v]) => `${k}: ${show(v, ty)}`).join(', ')
      : show(node.value, ty);
    command(ep, path, 'write', 'PUT', dmUrl(ep, path), JSON.stringify(node), 'application/json', written);
  });
  $(`status-${id}`).replaceChildren(form);
  input.focus();
}

// ---- the event stream ----------------------------------------------------------------------

const KINDS = ['REGISTRATION', 'UPDATED', 'DEREGISTRATION', 'SLEEPING', 'AWAKE', 'NOTIFICATION',
  'SEND', 'COMMAND_RESULT', 'BOOTSTRAP', 'FIRMWARE', 'OBSERVATION_ENDED', 'AUTH_FAILED', 'GAP'];
const MAX_EVENTS = 500;
let source = null;
let lastEventId = '';
let retry = null;

function endpointOf(d) {
  return d.ep || d.endpoint || (d.registration && d.registration.endpoint) || '';
}

function summary(kind, d) {
  switch (kind) {
    case 'REGISTRATION': return `${d.address || ''} LwM2M ${d.lwM2mVersion || ''} lifetime ${d.lifetime ?? ''}`;
    case 'UPDATED': { const r = d.registration || {}; return `${r.address || ''} lifetime ${r.lifetime ?? ''}`; }
    case 'DEREGISTRATION': return d.reason || '';
    case 'NOTIFICATION': {
      if (d.kind === 'composite') return Object.entries(d.val || {}).map(([p, n]) => `${p} = ${nodeText(n)}`).join('; ');
      return `${d.res} = ${nodeText(d.val)}`;
    }
    case 'SEND': return Object.entries(d.val || {}).map(([p, n]) => `${p} = ${nodeText(n)}`).join('; ');
    case 'COMMAND_RESULT': {
      const what = d.response ? d.response.status : (d.error ? `${d.error.status} ${d.error.message}` : '');
      return `${d.operation || ''} ${d.path || (d.paths || []).join(',')} #${d.requestId}: ${what || ''}`;
    }
    case 'BOOTSTRAP': return [d.status || d.stage, d.step, d.reason].filter(Boolean).join(' ');
    case 'FIRMWARE': return [`campaign ${d.campaign}`, d.phase, d.outcome, d.state !== null && d.state !== undefined ? `state ${d.state}` : '',
      d.result !== null && d.result !== undefined ? `result ${d.result}` : '', d.bytes ? `${d.bytes} bytes` : '']
      .filter(Boolean).join(' ');
    case 'OBSERVATION_ENDED': return `observation #${d.observation}`;
    case 'AUTH_FAILED': return [d.peer, d.principal, d.reason].filter(Boolean).join(' ');
    case 'GAP': return `${d.missed ?? 'some'} events missed: lists reloaded`;
    default: return '';
  }
}

function nodeText(n) {
  if (!n) return '';
  if (n.kind === 'singleResource' || n.kind === 'resourceInstance') return show(n.value, n.type);
  const parts = [];
  flatten(n, '', (p, v) => parts.push(`${p || '.'}=${v}`));
  return parts.join(' ');
}

function filterMatches(ep) {
  const f = $('event-filter').value.trim();
  return !f || ep.includes(f);
}

function logEvent(kind, d, id) {
  const ep = endpointOf(d);
  const li = el('li', {'data-testid': 'event', 'data-kind': kind, 'data-ep': ep, 'data-id': id, class: `ev ev-${kind}`},
    el('span', {class: 'ev-time', text: new Date().toLocaleTimeString()}),
    el('span', {class: 'ev-kind', text: kind}),
    ep ? el('a', {class: 'ev-ep', href: `#/device/${enc(ep)}`, text: ep}) : el('span', {class: 'ev-ep'}),
    el('span', {class: 'ev-sum', text: summary(kind, d)}));
  li.hidden = !filterMatches(ep);
  const list = $('event-list');
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function onEvent(kind, ev) {
  let d;
  try { d = JSON.parse(ev.data); } catch (_) { return; }
  // A GAP has no id of its own (the browser repeats the previous one).
  const id = kind === 'GAP' ? '' : ev.lastEventId;
  if (id) lastEventId = id;
  logEvent(kind, d, id);
  const ep = endpointOf(d);
  switch (kind) {
    case 'REGISTRATION':
      upsertDevice(d);
      if (ep === current) showDevice(ep);
      break;
    case 'UPDATED':
      upsertDevice(d.registration);
      if (ep === current && d.registration) renderRegistration(d.registration);
      break;
    case 'DEREGISTRATION':
      removeDevice(ep);
      if (ep === current) {
        $('device-error-one').textContent = `${ep} de-registered (${d.reason || ''}).`;
        $('device-error-one').hidden = false;
      }
      break;
    case 'SLEEPING': case 'AWAKE':
      setDeviceState(ep, kind === 'SLEEPING');
      if (ep === current) refreshRegistration(ep);
      break;
    case 'NOTIFICATION':
      if (d.kind === 'composite') {
        for (const [p, n] of Object.entries(d.val || {})) flatten(n, p, (q, v) => setValue(ep, q, v));
      } else if (d.res) {
        flatten(d.val, d.res, (q, v) => setValue(ep, q, v));
      }
      break;
    case 'SEND':
      for (const [p, n] of Object.entries(d.val || {})) flatten(n, p, (q, v) => setValue(ep, q, v));
      break;
    case 'COMMAND_RESULT': {
      const p = pending.get(String(d.requestId));
      if (p) {
        pending.delete(String(d.requestId));
        if (d.response) applyResponse(p.ep, p.path, p.op, d.response, p.written);
        else setStatus(p.path, d.error ? `${d.error.status}: ${d.error.message}` : 'no answer', 'error');
      }
      break;
    }
    case 'OBSERVATION_ENDED':
      if (ep === current) refreshRegistration(ep);
      break;
    case 'GAP':
      // Events were lost (a restart, or too long away): what was built from them is stale.
      if (!$('view-devices').hidden) loadDevices(false);
      if (current) refreshRegistration(current);
      break;
    case 'FIRMWARE':
      if (d.campaign) campaignChanged(String(d.campaign));
      break;
    default:
      break;
  }
}

function startEvents() {
  if (source) return;
  let url = '/api/events';
  const q = [];
  if (token) q.push(`access_token=${enc(token)}`);
  if (lastEventId) q.push(`lastEventId=${enc(lastEventId)}`);
  if (q.length) url += `?${q.join('&')}`;
  const es = new EventSource(url);
  source = es;
  const status = $('event-status');
  es.onopen = () => { status.textContent = 'live'; status.className = 'badge live'; };
  es.onerror = () => {
    status.textContent = 'reconnecting';
    status.className = 'badge down';
    if (es.readyState === EventSource.CLOSED && source === es) {
      // Refused (401, 503...): the browser gives up; ask the API why, then try again.
      es.close();
      source = null;
      clearTimeout(retry);
      retry = setTimeout(async () => {
        try { await api('GET', '/api/clients?limit=1'); } catch (_) { /* offline */ }
        if (!source) startEvents();
      }, 3000);
    }
  };
  for (const k of KINDS) es.addEventListener(k, (ev) => onEvent(k, ev));
}

/** Reconnects with the new token, if the stream was started (else `main` starts it). */
function restartEvents() {
  if (!source) return;
  source.close();
  source = null;
  clearTimeout(retry);
  startEvents();
}

// ---- firmware ------------------------------------------------------------------------------

const CAMPAIGNS_KEY = 'lwm2m-console-campaigns';
const campaigns = new Set(JSON.parse(sessionStorage.getItem(CAMPAIGNS_KEY) || '[]'));
const refreshTimers = new Map();

function rememberCampaign(id) {
  campaigns.add(id);
  while (campaigns.size > 200) campaigns.delete(campaigns.values().next().value);
  sessionStorage.setItem(CAMPAIGNS_KEY, JSON.stringify([...campaigns].slice(-50)));
}

async function loadPackages() {
  const rows = $('package-rows');
  const select = $('campaign-package');
  try {
    const r = await expectOk(await api('GET', '/api/firmware/packages'));
    const list = Array.isArray(r) ? r : (r && r.packages) || [];
    rows.replaceChildren();
    select.replaceChildren();
    for (const p of list) {
      rows.append(el('tr', {'data-testid': `package-${p.id}`},
        el('td', {class: 'mono', text: p.id}), el('td', {text: p.version}),
        el('td', {text: p.size}), el('td', {text: p.name || ''}),
        el('td', {text: fmtTime(p.added_at ?? p.addedAt)}),
        el('td', {}, button('Remove', `package-remove-${p.id}`, () => removePackage(p.id)))));
      select.append(el('option', {value: p.id, text: `${p.version} ${p.name || ''} (${p.id})`}));
    }
    if (!list.length) rows.append(el('tr', {}, el('td', {colspan: 6, class: 'muted', text: 'No package.'})));
  } catch (e) {
    rows.replaceChildren(el('tr', {}, el('td', {colspan: 6, class: 'error', text: `Packages: ${e.message}`})));
  }
}

async function removePackage(id) {
  try {
    await expectOk(await api('DELETE', `/api/firmware/packages/${enc(id)}`));
  } catch (e) {
    $('package-status').textContent = e.message;
    $('package-status').className = 'status error';
  }
  loadPackages();
}

async function uploadPackage(ev) {
  ev.preventDefault();
  const file = $('package-file').files[0];
  const status = $('package-status');
  if (!file) return;
  status.textContent = 'uploading…';
  status.className = 'status busy';
  try {
    const url = `/api/firmware/packages?version=${enc($('package-version').value)}&name=${enc($('package-name').value)}`;
    const r = await expectOk(await api('POST', url, file, 'application/octet-stream'));
    status.textContent = r && r.existed ? 'already stored' : 'stored';
    status.className = 'status ok';
  } catch (e) {
    status.textContent = e.message;
    status.className = 'status error';
  }
  loadPackages();
}

async function startCampaign(ev) {
  ev.preventDefault();
  const status = $('campaign-status');
  const spec = {package: $('campaign-package').value, method: $('campaign-method').value};
  if ($('campaign-all').checked) spec.all = true;
  else spec.endpoints = $('campaign-endpoints').value.split(/[\s,]+/).filter(Boolean);
  try {
    const r = await expectOk(await api('POST', '/api/firmware/campaigns', JSON.stringify(spec), 'application/json'));
    const id = String(r.campaign || r.id);
    rememberCampaign(id);
    status.textContent = `started ${id}`;
    status.className = 'status ok';
    showCampaign(id);
  } catch (e) {
    status.textContent = e.message;
    status.className = 'status error';
  }
}

/** Whether the API lists campaigns (`GET /api/firmware/campaigns`), from its OpenAPI document:
 * asking blindly would log a 405 in the browser's console when it does not. */
let campaignList = null;
async function canListCampaigns() {
  if (campaignList === null) {
    try {
      const doc = await expectOk(await api('GET', '/api/openapi.json'));
      const route = doc && doc.paths && doc.paths['/api/firmware/campaigns'];
      campaignList = Boolean(route && route.get);
    } catch (_) {
      campaignList = false;
    }
  }
  return campaignList;
}

async function loadCampaigns() {
  try {
    const res = (await canListCampaigns()) ? await api('GET', '/api/firmware/campaigns') : null;
    if (res && res.ok) {
      const r = await json(res);
      const list = Array.isArray(r) ? r : (r && (r.campaigns || r.firmware)) || [];
      for (const c of Array.isArray(list) ? list : []) rememberCampaign(String(typeof c === 'object' ? c.id : c));
    }
  } catch (_) { /* the list route is optional */ }
  // The newest first, and only so many: each card is one status request.
  const ids = [...campaigns].sort((a, b) => (b.length - a.length) || (b < a ? -1 : b > a ? 1 : 0));
  for (const id of ids.slice(0, 20).reverse()) showCampaign(id);
}

function campaignChanged(id) {
  if (!campaigns.has(id)) rememberCampaign(id);
  if (refreshTimers.has(id)) return;
  // Many devices change phase at once: one status request per half second is plenty.
  refreshTimers.set(id, setTimeout(() => { refreshTimers.delete(id); showCampaign(id); }, 500));
}

async function showCampaign(id) {
  const list = $('campaign-list');
  let card = list.querySelector(`[data-campaign="${CSS.escape(id)}"]`);
  if (!card) {
    card = el('div', {class: 'card campaign', 'data-campaign': id, 'data-testid': `campaign-${id}`});
    list.prepend(card);
  }
  let s;
  try {
    const r = await expectOk(await api('GET', `/api/firmware/campaigns/${enc(id)}`));
    s = (r && r.firmware) || r || {};
  } catch (e) {
    card.replaceChildren(el('h3', {class: 'mono', text: id}), el('p', {class: 'error', text: e.message}));
    return;
  }
  const totals = s.totals || {};
  const devices = s.devices || [];
  const total = devices.length || Object.values(totals).reduce((a, b) => a + b, 0);
  const done = Object.entries(totals).filter(([k]) => k.startsWith('done') || k.startsWith('skipped'))
    .reduce((a, [, v]) => a + v, 0);
  const bar = el('progress', {max: total || 1, value: done});
  const state = s.cancelled ? 'cancelled' : (s.finished ? 'finished' : 'running');
  card.replaceChildren(
    el('h3', {}, el('span', {class: 'mono', text: id}), ' ', el('span', {class: `badge ${state}`, text: state})),
    el('p', {}, bar, ` ${done}/${total} done`),
    el('ul', {class: 'chips', 'data-testid': `campaign-totals-${id}`},
      ...Object.entries(totals).map(([k, v]) => el('li', {text: `${k}: ${v}`}))),
    el('details', {}, el('summary', {text: `${devices.length} device(s)`}),
      el('table', {class: 'grid'}, el('tbody', {}, ...devices.slice(0, 1000).map((d) =>
        el('tr', {}, el('td', {text: d.endpoint}), el('td', {text: d.phase}), el('td', {text: d.outcome || ''})))))),
  );
  if (state === 'running') {
    card.append(button('Cancel campaign', `campaign-cancel-${id}`, async () => {
      try { await expectOk(await api('DELETE', `/api/firmware/campaigns/${enc(id)}`)); } catch (e) { alert(e.message); }
      showCampaign(id);
    }));
  }
}

// ---- routing ---------------------------------------------------------------------------------

function route() {
  const h = location.hash || '#/devices';
  const m = h.match(/^#\/(\w+)(?:\/(.*))?$/);
  const view = m ? m[1] : 'devices';
  document.body.dataset.view = view;
  for (const v of ['devices', 'device', 'events', 'firmware']) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.getAttribute('href') === `#/${view}`);
  if (view !== 'device') current = null;
  if (view === 'devices') loadDevices(false);
  else if (view === 'device' && m[2]) showDevice(decodeURIComponent(m[2]));
  else if (view === 'firmware') { loadPackages(); loadCampaigns(); }
  else if (view === 'events') $('event-filter').focus();
}

async function main() {
  $('token-forget').hidden = !token;
  $('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = '';
    $('token-forget').hidden = true;
  });
  let searchTimer = null;
  $('device-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { devicePrefix = $('device-search').value.trim(); deviceNext = null; loadDevices(false); }, 200);
  });
  $('device-more').addEventListener('click', () => loadDevices(true));
  $('event-filter').addEventListener('input', () => {
    for (const li of $('event-list').children) li.hidden = !filterMatches(li.dataset.ep || '');
  });
  $('event-clear').addEventListener('click', () => $('event-list').replaceChildren());
  $('package-upload').addEventListener('submit', uploadPackage);
  $('campaign-start').addEventListener('submit', startCampaign);
  $('campaign-track').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('campaign-id-input').value.trim();
    if (id) { rememberCampaign(id); showCampaign(id); }
  });
  window.addEventListener('hashchange', route);
  await loadSpecs();
  startEvents();
  route();
  document.body.dataset.ready = 'true';
}

document.addEventListener('DOMContentLoaded', main);
