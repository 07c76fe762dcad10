// The flagsd console. Plain JavaScript, no build step. Everything a server,
// the configuration or a fleet node supplied goes into the page as text
// (textContent, attributes), never as HTML.
'use strict';

(() => {
  const state = {
    csrf: null,
    tokenRequired: false,
    batches: [],
    stream: null,
    poll: null,
    retry: null,
    runs: { batch: null, pages: [] },
  };
  const POLL_MS = 5000;
  const STREAM_RETRY_MS = 30000;
  const $ = (id) => document.getElementById(id);

  // An element with properties and children (strings become text).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === 'class') node.className = value;
      else if (key.startsWith('data-') || key.startsWith('aria-')) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.firstChild.remove();
  }

  // A time in the browser's local time, the UTC value on hover.
  function time(iso) {
    if (!iso) return el('span', { class: 'none' }, '–');
    const date = new Date(iso);
    return el('time', { dateTime: iso, title: iso + ' (UTC)' }, date.toLocaleString());
  }

  function counts(c) {
    if (!c) return '–';
    const parts = [c.downloaded + ' downloaded'];
    if (c.unchanged) parts.push(c.unchanged + ' unchanged');
    if (c.not_found) parts.push(c.not_found + ' not found');
    if (c.errors) parts.push(c.errors + (c.errors === 1 ? ' error' : ' errors'));
    return parts.join(', ');
  }

  function causes(list) {
    return (list || []).map((c) => c.count + ' × ' + c.cause).join(', ');
  }

  function runState(run) {
    if (!run) return 'never run';
    if (run.state === 'failed') return 'failed: ' + (run.error || 'no reason recorded');
    if (run.state === 'running') return 'running';
    return run.state + (run.exit_status === null || run.exit_status === undefined ? '' : ' (exit ' + run.exit_status + ')');
  }

  function notice(text, isError) {
    const node = $('notice');
    node.textContent = text;
    node.className = isError ? 'notice error' : 'notice';
  }

  function activity(text) {
    const list = $('activity');
    list.prepend(el('li', {}, time(new Date().toISOString()), ' ', text));
    while (list.children.length > 20) list.lastChild.remove();
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      return { status: 0, data: { error: 'the daemon cannot be reached' } };
    }
    const type = response.headers.get('Content-Type') || '';
    const data = type.includes('application/json') ? await response.json() : await response.text();
    if (response.status === 401 && path !== '/session') signedOut('Your session ended: sign in again.');
    return { status: response.status, data };
  }

  function errorOf(answer) {
    if (answer.data && typeof answer.data === 'object' && answer.data.error) return answer.data.error;
    return 'HTTP ' + answer.status;
  }

  // Signing in and out.

  async function start() {
    const answer = await api('GET', '/session');
    if (answer.status !== 200) {
      $('health').textContent = 'unreachable';
      return;
    }
    state.tokenRequired = answer.data.token_required;
    if (answer.data.signed_in) {
      signedIn(answer.data.csrf);
    } else if (!state.tokenRequired) {
      await signIn('');
    } else {
      signedOut('');
    }
  }

  async function signIn(token) {
    const answer = await api('POST', '/session', { token });
    if (answer.status === 200) {
      $('token').value = '';
      signedIn(answer.data.csrf);
    } else {
      $('sign-in-error').textContent = errorOf(answer);
    }
  }

  function signedIn(csrf) {
    state.csrf = csrf;
    $('sign-in').hidden = true;
    $('sign-in-error').textContent = '';
    $('app').hidden = false;
    $('sign-out').hidden = false;
    loadBatches();
    loadAbout();
    loadFleet();
    listen();
    route();
  }

  function signedOut(message) {
    state.csrf = null;
    stopListening();
    $('app').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in').hidden = false;
    $('token').hidden = !state.tokenRequired;
    document.querySelector('label[for="token"]').hidden = !state.tokenRequired;
    $('sign-in-hint').hidden = !state.tokenRequired;
    $('sign-in-error').textContent = message;
    $('health').textContent = 'signed out';
  }

  async function signOut() {
    const answer = await api('DELETE', '/session');
    if (answer.status === 200) signedOut('Signed out.');
    else notice('Could not sign out: ' + errorOf(answer), true);
  }

  // Live updates: Server-Sent Events, else polling.

  function listen() {
    stopListening();
    const stream = new EventSource('/events');
    state.stream = stream;
    $('live').textContent = 'live';
    stream.addEventListener('batches', (e) => {
      state.batches = JSON.parse(e.data);
      renderBatches();
    });
    stream.addEventListener('run-started', (e) => {
      const view = JSON.parse(e.data);
      activity('run started: ' + view.name);
    });
    stream.addEventListener('run-finished', (e) => {
      const view = JSON.parse(e.data);
      activity('run finished: ' + view.name + ' — ' + runState(view.last_run) + ', ' + counts(view.last_run && view.last_run.counts));
      if (state.runs.batch === view.name && !$('runs-view').hidden) loadRuns(view.name, null);
    });
    stream.addEventListener('nodes', (e) => renderFleet(JSON.parse(e.data)));
    stream.onerror = () => {
      // The stream dropped (or was refused): poll until it can be opened again.
      stopListening();
      $('live').textContent = 'polling';
      state.poll = setInterval(loadBatches, POLL_MS);
      state.retry = setTimeout(() => { if (state.csrf) listen(); }, STREAM_RETRY_MS);
    };
  }

  function stopListening() {
    if (state.stream) state.stream.close();
    state.stream = null;
    clearInterval(state.poll);
    clearTimeout(state.retry);
    state.poll = null;
    state.retry = null;
  }

  // Batches.

  async function loadBatches() {
    const answer = await api('GET', '/batches');
    if (answer.status === 200) {
      state.batches = answer.data;
      renderBatches();
    }
  }

  function progressText(view) {
    if (!view.running) return 'no';
    const p = view.progress;
    if (!p) return 'yes';
    return p.done + '/' + p.total + ' · ' + p.rate + '/s';
  }

  function renderBatches() {
    const body = $('batches').tBodies[0];
    clear(body);
    for (const view of state.batches) {
      const last = view.last_run;
      const server = el('span', { title: view.url || 'the built-in flag server' }, view.server);
      const run = el('button', { type: 'button', 'data-action': 'run', 'data-batch': view.name }, 'Run now');
      const cancel = el('button', { type: 'button', 'data-action': 'cancel', 'data-batch': view.name }, 'Cancel');
      run.disabled = Boolean(view.running);
      cancel.disabled = !view.running;
      const lastCell = last
        ? el('td', {}, el('a', { href: '#/runs/' + encodeURIComponent(last.id) }, runState(last)), ' ', time(last.started_at), el('br'), counts(last.counts))
        : el('td', { class: 'none' }, 'never run');
      body.append(el('tr', { 'data-batch': view.name },
        el('th', { scope: 'row' }, el('a', { href: '#/batches/' + encodeURIComponent(view.name) }, view.name)),
        el('td', {}, server),
        el('td', { class: 'num' }, view.codes.length),
        el('td', {}, view.every || 'on demand'),
        el('td', {}, time(view.next_run)),
        lastCell,
        el('td', { class: 'num running', 'data-running': String(Boolean(view.running)) }, progressText(view)),
        el('td', { class: 'actions' }, run, ' ', cancel)));
    }
  }

  async function act(action, batch) {
    const path = '/batches/' + encodeURIComponent(batch) + '/' + action;
    const answer = await api('POST', path);
    if (action === 'run' && answer.status === 202) {
      notice('Started run ' + answer.data.run_id + ' of ' + batch + '.');
      activity('run ' + answer.data.run_id + ' of ' + batch + ' requested');
    } else if (action === 'cancel' && answer.status === 200) {
      notice('Cancelled run ' + answer.data.id + ' of ' + batch + ': ' + counts(answer.data.counts) + ' before it stopped.');
    } else {
      notice((action === 'run' ? 'Could not start ' : 'Could not cancel ') + batch + ': ' + errorOf(answer), true);
    }
    loadBatches();
  }

  // Runs of a batch, paged, newest first.

  async function loadRuns(batch, before) {
    let path = '/runs?limit=20&batch=' + encodeURIComponent(batch);
    if (before !== null) path += '&before=' + encodeURIComponent(before);
    const answer = await api('GET', path);
    if (answer.status !== 200) {
      notice('Could not read the runs of ' + batch + ': ' + errorOf(answer), true);
      return;
    }
    if (state.runs.batch !== batch) state.runs = { batch, pages: [] };
    if (before === null) state.runs.pages = [];
    state.runs.pages.push(before);
    $('runs-batch').textContent = batch;
    const body = $('runs').tBodies[0];
    clear(body);
    for (const run of answer.data) {
      body.append(el('tr', {},
        el('td', { class: 'num' }, el('a', { href: '#/runs/' + encodeURIComponent(run.id) }, run.id)),
        el('td', {}, run.trigger),
        el('td', {}, time(run.started_at)),
        el('td', {}, time(run.ended_at)),
        el('td', {}, runState(run)),
        el('td', { class: 'num' }, run.exit_status === null ? '–' : run.exit_status),
        el('td', {}, counts(run.counts)),
        el('td', {}, causes(run.causes))));
    }
    if (answer.data.length === 0) body.append(el('tr', {}, el('td', { colSpan: 8, class: 'none' }, 'no runs')));
    const oldest = answer.data.length ? answer.data[answer.data.length - 1].id : null;
    $('older').disabled = answer.data.length < 20;
    $('older').dataset.before = oldest === null ? '' : String(oldest);
    $('newer').disabled = before === null;
  }

  // One run: the causes, then every code, failures first.

  const FINE = ['downloaded', 'unchanged', 'not_found'];

  async function loadRun(id) {
    const answer = await api('GET', '/runs/' + encodeURIComponent(id));
    if (answer.status !== 200) {
      notice('Could not read run ' + id + ': ' + errorOf(answer), true);
      return;
    }
    const run = answer.data;
    $('run-id').textContent = run.id;
    $('run-batch').textContent = run.batch;
    $('run-batch').href = '#/batches/' + encodeURIComponent(run.batch);
    const summary = $('run-summary');
    clear(summary);
    summary.append(runState(run), ' · started ', time(run.started_at), ' · ended ', time(run.ended_at), ' · ', counts(run.counts), ' · by ', run.trigger);
    $('run-causes').textContent = run.causes && run.causes.length ? 'Causes: ' + causes(run.causes) : '';
    const codes = run.codes.slice().sort((a, b) => {
      const failed = (c) => (FINE.includes(c.outcome) ? 1 : 0);
      return failed(a) - failed(b) || a.code.localeCompare(b.code);
    });
    const body = $('codes').tBodies[0];
    clear(body);
    for (const code of codes) {
      body.append(el('tr', { class: FINE.includes(code.outcome) ? '' : 'failed' },
        el('th', { scope: 'row' }, code.code),
        el('td', {}, code.outcome.replace('_', ' ')),
        el('td', { class: 'num' }, code.status === null ? '–' : code.status),
        el('td', { class: 'message' }, code.message || ''),
        el('td', { class: 'num' }, code.attempts),
        el('td', {}, code.node || '–'),
        el('td', { class: 'file' }, code.file || '–')));
    }
  }

  // Fleet and health.

  async function loadFleet() {
    const answer = await api('GET', '/fleet');
    if (answer.status === 404) {
      $('fleet-view').hidden = true;
      return;
    }
    $('fleet-view').hidden = false;
    if (answer.status === 200) renderFleet(answer.data);
    else $('fleet-problem').textContent = errorOf(answer);
  }

  function renderFleet(fleet) {
    $('fleet-view').hidden = false;
    $('fleet-problem').textContent = '';
    $('fleet-name').textContent = fleet.name + ' (this node: ' + fleet.node + ')';
    const nodes = $('nodes').tBodies[0];
    clear(nodes);
    for (const node of fleet.nodes) {
      nodes.append(el('tr', {},
        el('th', { scope: 'row' }, node.node),
        el('td', {}, time(node.heartbeat_at)),
        el('td', { class: 'num' }, node.in_flight),
        el('td', {}, time(node.joined_at))));
    }
    const queues = $('queues').tBodies[0];
    clear(queues);
    const names = new Set([...Object.keys(fleet.queued), ...Object.keys(fleet.in_flight)]);
    for (const name of [...names].sort()) {
      queues.append(el('tr', {},
        el('th', { scope: 'row' }, name),
        el('td', { class: 'num' }, fleet.queued[name] || 0),
        el('td', { class: 'num' }, fleet.in_flight[name] || 0)));
    }
  }

  async function loadAbout() {
    const answer = await api('GET', '/about');
    if (answer.status !== 200) {
      $('health').textContent = 'no answer';
      return;
    }
    const about = answer.data;
    $('health').textContent = about.ready ? 'ready' : 'not ready';
    $('health').className = about.ready ? 'badge ok' : 'badge bad';
    const list = $('about');
    clear(list);
    const row = (term, ...value) => list.append(el('dt', {}, term), el('dd', {}, ...value));
    row('Ready', about.ready ? 'yes' : 'no: ' + (about.reason || 'no reason given'));
    row('Configuration', el('code', {}, about.config), ', loaded ', time(about.loaded_at));
    row('Batches', about.batches);
    row('Fleet', about.fleet || 'none (this daemon alone)');
    row('Version', 'flagsd ' + about.version);
  }

  // Navigation: #/ (batches), #/batches/NAME (its runs), #/runs/ID.

  function route() {
    const hash = location.hash || '#/';
    const batch = hash.match(/^#\/batches\/(.+)$/);
    const run = hash.match(/^#\/runs\/(\d+)$/);
    $('runs-view').hidden = !batch;
    $('run-view').hidden = !run;
    if (batch) loadRuns(decodeURIComponent(batch[1]), null).then(() => $('runs-view').scrollIntoView());
    if (run) loadRun(run[1]).then(() => $('run-view').scrollIntoView());
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-in-form').addEventListener('submit', (e) => {
      e.preventDefault();
      signIn($('token').value);
    });
    $('sign-out').addEventListener('click', signOut);
    $('batches').addEventListener('click', (e) => {
      const button = e.target.closest('button[data-action]');
      if (button) act(button.dataset.action, button.dataset.batch);
    });
    $('older').addEventListener('click', () => {
      const before = $('older').dataset.before;
      if (before) loadRuns(state.runs.batch, before);
    });
    $('newer').addEventListener('click', () => loadRuns(state.runs.batch, null));
    window.addEventListener('hashchange', () => { if (state.csrf) route(); });
    setInterval(() => { if (state.csrf) loadAbout(); }, 30000);
    start();
  });
})();
