// bcm: keeps a page live over Server-Sent Events, and moves it to another member
// when the node serving it stops answering. Plain JavaScript, no build step.
(function () {
  'use strict';
  var body = document.body;
  if (!body.dataset.session) { return; } // the login page has nothing live
  var members = (body.dataset.members || '').split(' ').filter(Boolean);
  var conn = document.getElementById('conn');
  var source = null;
  var moving = false;
  var connectedOnce = false;

  function say(text, lost) {
    if (!conn) { return; }
    conn.textContent = text;
    conn.classList.toggle('lost', !!lost);
  }

  // Buttons that destroy something ask first.
  document.addEventListener('click', function (e) {
    var b = e.target.closest('[data-confirm]');
    if (b && !window.confirm(b.dataset.confirm)) { e.preventDefault(); }
  });

  // --- in-place updates -------------------------------------------------------
  var pending = {};
  function refresh(region, index) {
    if (pending[index]) { return; }
    pending[index] = setTimeout(function () {
      pending[index] = null;
      var url = region.dataset.liveSrc || (location.pathname + location.search);
      fetch(url, { credentials: 'same-origin', headers: { 'X-BCM-Live': '1' } })
        .then(function (r) {
          if (r.status === 401) { location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search); return null; }
          return r.text();
        })
        .then(function (html) {
          if (html === null) { return; }
          var doc = new DOMParser().parseFromString(html, 'text/html');
          var fresh = doc.querySelectorAll('[data-live]')[region.dataset.liveSrc ? 0 : index];
          if (!fresh || region.contains(document.activeElement)) { return; }
          region.innerHTML = fresh.innerHTML;
        })
        .catch(function () { lost(); });
    }, 150);
  }

  function regions() { return Array.prototype.slice.call(document.querySelectorAll('[data-live]')); }

  function onEvent(kind, data) {
    if (kind === 'leader_changed') {
      var el = document.getElementById('leader');
      if (el) {
        var here = body.dataset.nodeId;
        el.textContent = data.leader_id == null ? 'none (election under way)'
          : 'node ' + data.leader_id + (String(data.leader_id) === here ? ' (this node)' : '');
      }
    }
    regions().forEach(function (region, i) {
      var on = (region.dataset.liveOn || '').split(' ');
      if (on.indexOf(kind) >= 0) { refresh(region, i); }
    });
  }

  var KINDS = ['leader_changed', 'cluster_initialized', 'node_registered', 'node_updated',
    'node_status_changed', 'backup_manager_assigned', 'config_changed', 'config_deleted',
    'user_changed', 'user_deleted', 'group_changed', 'plan_changed', 'backup_changed',
    'backup_deleted', 'restore_changed'];

  function connect() {
    source = new EventSource('/ui/events');
    source.addEventListener('hello', function () {
      say('live');
      // Anything missed while disconnected: redraw once (not on the first connect:
      // the page was just rendered).
      if (connectedOnce) { regions().forEach(function (region, i) { refresh(region, i); }); }
      connectedOnce = true;
    });
    KINDS.forEach(function (kind) {
      source.addEventListener(kind, function (e) {
        var data = {};
        try { data = JSON.parse(e.data); } catch (err) { /* keep {} */ }
        onEvent(kind, data);
      });
    });
    source.onerror = function () { lost(); };
  }

  // Periodic redraws (replication lag and last contact change without events).
  regions().forEach(function (region, i) {
    var every = parseInt(region.dataset.liveEvery || '0', 10);
    if (every > 0) { setInterval(function () { if (!moving) { refresh(region, i); } }, every * 1000); }
  });

  // --- failover ---------------------------------------------------------------
  function probe(base, timeoutMs) {
    var ctl = new AbortController();
    var t = setTimeout(function () { ctl.abort(); }, timeoutMs);
    return fetch(base + '/ui/ready', { mode: 'cors', cache: 'no-store', signal: ctl.signal })
      .then(function (r) { clearTimeout(t); return r.ok; })
      .catch(function () { clearTimeout(t); return false; });
  }

  // Whether this browser's session still opens pages here: the server ends the
  // stream of a session that was logged out or whose user was disabled, and
  // reopening it would fail again and again.
  function sessionGood() {
    return fetch(location.pathname + location.search,
      { credentials: 'same-origin', redirect: 'manual', cache: 'no-store' })
      .then(function (r) { return !(r.type === 'opaqueredirect' || r.status === 401 || r.status === 303); })
      .catch(function () { return true; });
  }

  // The node serving this page stopped answering: wait a moment for it, then move
  // the page to the next member that is ready. The session cookie goes along
  // (cookies are shared by every port of a host) and so does the path.
  function lost() {
    if (moving) { return; }
    moving = true;
    if (source) { source.close(); source = null; }
    say('connection to node ' + body.dataset.nodeId + ' lost; looking for another member…', true);
    var here = location.origin;
    var start = members.indexOf(here);
    var order = [here];
    for (var k = 1; k <= members.length; k++) {
      var m = members[(Math.max(start, 0) + k) % members.length];
      if (order.indexOf(m) < 0) { order.push(m); }
    }
    var round = 0;
    (function attempt() {
      var i = 0;
      (function next() {
        if (i >= order.length) { round++; setTimeout(attempt, 1000); return; }
        var base = order[i++];
        probe(base, 1500).then(function (ok) {
          if (!ok) { next(); return; }
          if (base === here) {
            sessionGood().then(function (good) {
              if (!good) { location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search); return; }
              moving = false;
              say('reconnected');
              connect();
            });
          } else {
            location.replace(base + location.pathname + location.search);
          }
        });
      })();
    })();
  }

  // Leaving the page closes its stream: a page kept in the back/forward cache must
  // not hold one of the browser's few connections to this node. Coming back
  // reconnects (and redraws what changed meanwhile).
  window.addEventListener('pagehide', function () {
    if (source) { source.close(); source = null; }
  });
  window.addEventListener('pageshow', function (e) {
    if (e.persisted && !source && !moving) { connect(); }
  });

  connect();
})();
