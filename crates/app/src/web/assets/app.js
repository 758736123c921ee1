// The Bulwark dashboard: draws the daemon's JSON API into the page every few seconds.
// Everything shown is put in as text (never as HTML), so names and error messages cannot
// inject markup. Actions send the session's CSRF token in a header.
'use strict';

const REFRESH_MS = 10000;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const admin = document.querySelector('meta[name="role"]').content === 'admin';
let chartVersion = null;

// el('td', {class: 'x'}, 'text', child): an element with attributes and text or nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

async function api(path, options) {
  const init = Object.assign({ credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } }, options);
  const r = await fetch(path, init);
  if (r.status === 401) {
    location.href = '/login';
    throw new Error('the session ended; log in again');
  }
  const body = r.status === 204 ? null : await r.json();
  if (!r.ok) throw new Error((body && body.error) || r.statusText);
  return body;
}

// Formatting.
function when(t) {
  if (!t) return '–';
  return new Date(t).toLocaleString();
}
function span(secs) {
  if (secs === null || secs === undefined) return '–';
  if (secs < 10) return secs.toFixed(1) + 's';
  if (secs < 120) return Math.round(secs) + 's';
  if (secs < 7200) return Math.round(secs / 60) + 'm';
  if (secs < 172800) return (secs / 3600).toFixed(1) + 'h';
  return (secs / 86400).toFixed(1) + 'd';
}
function ago(t) {
  if (!t) return '';
  const secs = (Date.now() - new Date(t).getTime()) / 1000;
  return secs >= 0 ? span(secs) + ' ago' : 'in ' + span(-secs);
}
function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(2)) + ' ' + units[i];
}
function percent(rate) {
  return rate === null || rate === undefined ? '–' : (rate * 100).toFixed(1) + '%';
}
function badge(text, kind) {
  return el('span', { class: 'badge ' + (kind || text) }, text);
}
// How a value compares with its target: ok within it, warn up to twice, bad beyond.
function against(value, target) {
  if (value === null || value === undefined || !target) return '';
  return value <= target ? 'ok' : value <= 2 * target ? 'warn' : 'bad';
}
function table(id, headings, rows, empty) {
  const t = document.getElementById(id);
  t.replaceChildren(el('tr', {}, headings.map(h => el('th', {}, h))));
  if (rows.length === 0) t.append(el('tr', {}, el('td', { class: 'empty', colspan: headings.length }, empty)));
  rows.forEach(r => t.append(r));
}
function say(text, isError) {
  const m = document.getElementById('message');
  m.textContent = text;
  m.className = 'message' + (isError ? ' error' : '');
  m.hidden = !text;
}

// Sections.
function drawAlerts(alerts) {
  table('alerts', ['severity', 'datastore', 'alert', 'since', ''], alerts.map(a => el('tr', { 'data-alert': a.id },
    el('td', {}, badge(a.severity)),
    el('td', {}, a.datastore || '–'),
    el('td', {}, a.summary),
    el('td', { title: when(a.fired) }, ago(a.fired)),
    el('td', {}, a.acknowledged
      ? 'acknowledged by ' + (a.acknowledged_by || '?')
      : admin ? el('button', { class: 'ack', onclick: () => acknowledge(a.id) }, 'Acknowledge') : ''))),
  'No active alerts.');
}

function drawDatastores(list) {
  const box = document.getElementById('datastores');
  box.replaceChildren(...list.map(d => {
    const failed = Boolean(d.last_error);
    const level = failed ? 'bad' : against(d.last_backup_age_secs, d.rpo_target_secs) ||
      (d.status === 'healthy' ? 'ok' : d.status === 'critical' ? 'bad' : d.status === 'degraded' ? 'warn' : '');
    const rows = [
      ['last backup', d.last_success ? when(d.last_success) + ' (' + ago(d.last_success) + ')' : 'never', 'last_success'],
      ['last result', failed ? badge('failed') : d.last_success ? badge('success') : '–', 'last_result'],
      ['recovery point age', el('span', { class: 'age ' + against(d.last_backup_age_secs, d.rpo_target_secs) },
        span(d.last_backup_age_secs) + (d.rpo_target_secs ? ' (RPO ' + span(d.rpo_target_secs) + ')' : '')), 'age'],
      ['next backup', d.next_backup ? when(d.next_backup) : 'not scheduled', 'next_backup'],
      ['size', bytes(d.last_size_bytes), 'size'],
      ['added last time', bytes(d.last_bytes_added), 'added'],
      ['success 7 / 30 days', percent(d.success_rate_7d) + ' / ' + percent(d.success_rate_30d), 'success'],
    ];
    if (d.kind === 'postgres' && d.oldest_point) {
      rows.push(['recoverable', when(d.oldest_point) + ' → ' + when(d.recovery_point), 'window']);
    }
    if (d.last_drill) {
      rows.push(['last drill', d.last_drill.result + ', ' + ago(d.last_drill.started), 'drill']);
    }
    if (failed) rows.push(['error', el('span', { class: 'error-text' }, d.last_error), 'error']);
    return el('div', { class: 'card ' + level, 'data-name': d.name },
      el('h3', {}, d.name, el('span', { class: 'muted' }, d.kind), badge(d.status)),
      el('dl', {}, rows.map(([k, v, f]) => [el('dt', {}, k), el('dd', { 'data-field': f }, v)])));
  }));
  if (list.length === 0) box.replaceChildren(el('p', { class: 'muted' }, 'No sources configured.'));
}

function drawRepository(r) {
  const box = document.getElementById('repository');
  if (!r) {
    box.replaceChildren(el('p', { class: 'muted' }, 'Not assessed yet.'));
    return;
  }
  const space = r.space || {};
  const check = r.last_check;
  const rows = [
    ['location', r.url, 'url'],
    ['size', bytes(r.size_bytes), 'size'],
    ['snapshots', r.snapshots === undefined ? '–' : r.snapshots, 'snapshots'],
    ['dedup ratio', space.dedup_ratio ? space.dedup_ratio.toFixed(2) + '×' : '–', 'dedup'],
    ['compression ratio', space.compression_ratio ? space.compression_ratio.toFixed(2) + '×' : '–', 'compression'],
    ['last check', check ? when(check.time) + (check.ok ? ', clean' : ', ' + check.error_count + ' error(s)') : 'never', 'check'],
  ];
  const level = r.status === 'healthy' ? 'ok' : r.status === 'critical' ? 'bad' : 'warn';
  box.replaceChildren(el('div', { class: 'card ' + level, 'data-name': 'repository' },
    el('h3', {}, 'repository', badge(r.status)),
    el('dl', {}, rows.map(([k, v, f]) => [el('dt', {}, k), el('dd', { 'data-field': f }, v)])),
    (r.findings || []).map(f => el('p', { class: 'muted' }, f.problem + ': ' + f.recommendation))));
}

function drawJobs(jobs) {
  table('jobs', ['job', 'kind', 'schedule', 'next run', 'last run', ''], jobs.map(j => el('tr', { 'data-job': j.name },
    el('td', {}, j.name),
    el('td', {}, j.kind),
    el('td', {}, j.schedule + ' (' + j.timezone + ')'),
    el('td', {}, when(j.next_run)),
    el('td', {}, j.running ? badge('running') : j.last_run ? [badge(j.last_run.result), ' ', ago(j.last_run.started)] : 'never'),
    el('td', {}, admin ? el('button', { class: 'run', disabled: j.running, onclick: () => runNow(j.name) }, 'Run now') : ''))),
  'No jobs configured.');
}

function drawDrills(drills) {
  table('drills', ['started', 'scenario', 'result', 'RTO (target)', 'RPO (target)', 'report'], drills.slice(0, 20).map(d => el('tr', { 'data-drill': d.id },
    el('td', {}, when(d.time)),
    el('td', {}, d.scenario || 'named sources'),
    el('td', {}, badge(d.result)),
    el('td', { class: 'age ' + against(d.rto_secs, d.rto_target_secs) }, span(d.rto_secs) + (d.rto_target_secs ? ' (' + span(d.rto_target_secs) + ')' : '')),
    el('td', { class: 'age ' + against(d.rpo_secs, d.rpo_target_secs) }, span(d.rpo_secs) + (d.rpo_target_secs ? ' (' + span(d.rpo_target_secs) + ')' : '')),
    el('td', {}, el('a', { href: '/drills/' + encodeURIComponent(d.id) + '/report', target: '_blank', rel: 'noopener' }, 'report')))),
  'No drills yet.');
}

function drawRuns(runs) {
  table('runs', ['run', 'job', 'trigger', 'started', 'took', 'result', 'error', ''], runs.map(r => el('tr', { 'data-run': r.id },
    el('td', {}, r.id),
    el('td', {}, r.job),
    el('td', {}, r.trigger),
    el('td', {}, when(r.started)),
    el('td', {}, r.ended ? span((new Date(r.ended) - new Date(r.started)) / 1000) : '–'),
    el('td', {}, badge(r.result)),
    el('td', { class: 'error-text' }, r.error || ''),
    el('td', {}, el('button', { class: 'log', onclick: () => showLog(r.id) }, 'Log')))),
  'No runs yet.');
}

function drawDeliveries(list) {
  table('deliveries', ['time', 'channel', 'notification', 'result', 'attempts', 'error'], list.slice(0, 20).map(d => el('tr', {},
    el('td', {}, when(d.time)),
    el('td', {}, d.channel),
    el('td', {}, d.status + ' (alert ' + d.alert + ')'),
    el('td', {}, badge(d.ok ? 'delivered' : 'failed', d.ok ? 'ok' : 'bad')),
    el('td', {}, d.attempts),
    el('td', { class: 'error-text' }, d.error || ''))),
  'Nothing sent yet.');
}

function drawCharts(version) {
  const days = document.getElementById('days').value;
  const key = version + '/' + days;
  if (key === chartVersion) return;
  chartVersion = key;
  for (const name of ['duration', 'size', 'results']) {
    document.getElementById('chart-' + name).src = '/charts/' + name + '.svg?days=' + days + '&v=' + encodeURIComponent(version);
  }
}

// Actions.
async function runNow(job) {
  try {
    const r = await api('/api/jobs/' + encodeURIComponent(job) + '/run', { method: 'POST' });
    say('Job ' + job + ' started' + (r.run ? ' (run ' + r.run + ')' : '') + '.');
  } catch (e) {
    say('Job ' + job + ' was not started: ' + e.message, true);
  }
  refresh();
}

async function acknowledge(id) {
  try {
    await api('/api/alerts/' + id + '/acknowledge', { method: 'POST' });
    say('Alert ' + id + ' acknowledged.');
  } catch (e) {
    say('Alert ' + id + ' was not acknowledged: ' + e.message, true);
  }
  refresh();
}

async function showLog(id) {
  try {
    const run = await api('/api/runs/' + id);
    document.getElementById('log-title').textContent = 'Run ' + id + ' (' + run.job + ', ' + run.result + ')';
    document.getElementById('log').textContent = run.log || '(no output)';
    document.getElementById('log-box').hidden = false;
  } catch (e) {
    say('The log of run ' + id + ' could not be read: ' + e.message, true);
  }
}

async function logout() {
  try {
    await api('/logout', { method: 'POST' });
  } finally {
    location.href = '/login';
  }
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    const [status, jobs, runs, drills, deliveries] = await Promise.all([
      api('/api/status'), api('/api/jobs'), api('/api/runs?limit=25'), api('/api/drills'), api('/api/deliveries?limit=20'),
    ]);
    const overall = document.getElementById('overall');
    overall.replaceWith(Object.assign(badge(status.monitoring_status), { id: 'overall' }));
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    drawAlerts(status.active_alerts);
    drawDatastores(status.datastores);
    drawRepository(status.repository);
    drawJobs(jobs);
    drawDrills(drills);
    drawRuns(runs);
    drawDeliveries(deliveries);
    drawCharts(runs.length ? runs[0].id + ':' + runs[0].result : 'none');
    if (document.getElementById('message').classList.contains('stale')) say('');
  } catch (e) {
    say('The daemon could not be reached: ' + e.message, true);
    document.getElementById('message').classList.add('stale');
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.getElementById('logout').addEventListener('click', logout);
document.getElementById('days').addEventListener('change', () => drawCharts((chartVersion || 'none').split('/')[0]));
refresh();
