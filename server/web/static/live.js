/*
 * live.js: new synced records appear on an open list page without a manual reload.
 *
 * How a page uses it (no build step, no dependency):
 *   1. Render the list's table (and its pager) from its own template, inside a container
 *        <div data-live-url="/jobs?status=new&page=2&fragment=1"> ... </div>
 *      The URL is the page's own URL (filters, sort and page kept) plus fragment=1; server-side,
 *      `url_with(fragment=1)` builds it (server/web/jobs.py).
 *   2. The view returns only that template when fragment=1 (the same query, the same rows).
 *   3. Give each row a stable key: <tr data-live-key="J-123">. Rows without one are keyed by their text.
 *   4. Load the script: <script src="{{ url_for('web.static', filename='live.js') }}" defer></script>
 *
 * What it does, for each [data-live-url] container on the page:
 *   - every 10 s (data-live-interval="ms" to change it) it fetches the fragment, with the session cookie;
 *   - it polls only while the tab is visible, and once at once when the tab becomes visible again;
 *   - when the fragment changed (CSRF tokens in forms are ignored when comparing), it swaps the
 *     container's content, marks rows whose key is new with class "live-new" and changed rows with
 *     "live-changed", keeps the window's and the container's scroll position, and announces the
 *     number of new rows in a small banner (role="status"); the banner's words come translated from the
 *     container's data-live-text-new / -pending / -show / -signed-out attributes ("{n}" is the count);
 *   - while the user is busy inside the container (focus in a field, a form being filled in, an open
 *     <details>), it does not swap: the banner offers "Show updates" instead;
 *   - when the session has ended (a redirect to the sign-in page, 401/403) it stops and says so.
 * window.FieldSyncLive.refresh() polls every container now (used by tests and for a manual refresh).
 */
(function () {
  "use strict";

  var DEFAULT_INTERVAL = 10000;
  var CSRF = /(name="csrf_token"[^>]*value=")[^"]*(")/g;
  var regions = [];
  var banner = null;
  var bannerTimer = null;

  function normalise(html) {
    return html.replace(CSRF, "$1$2").replace(/\s+/g, " ").trim();
  }

  function serialise(html) {
    // the browser's own serialisation of the fragment, comparable with container.innerHTML
    var template = document.createElement("template");
    template.innerHTML = html;
    return normalise(template.innerHTML);
  }

  function rowKey(row) {
    return row.getAttribute("data-live-key") || row.textContent.replace(/\s+/g, " ").trim();
  }

  function rowMap(root) {
    var map = {};
    var rows = root.querySelectorAll("tbody tr");
    for (var i = 0; i < rows.length; i++) {
      map[rowKey(rows[i])] = normalise(rows[i].innerHTML);
    }
    return map;
  }

  function isBusy(container) {
    var active = document.activeElement;
    if (active && active !== document.body && container.contains(active) &&
        /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    if (container.querySelector("details[open]")) {
      return true;
    }
    var fields = container.querySelectorAll("textarea, input[type=text], input[type=search], input:not([type])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) {
        return true;
      }
    }
    return false;
  }

  function showBanner(text, action) {
    if (!banner) {
      banner = document.createElement("div");
      banner.className = "live-banner";
      banner.setAttribute("role", "status");
      banner.setAttribute("aria-live", "polite");
      document.body.appendChild(banner);
    }
    banner.textContent = text;
    if (action) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = action.label;
      button.addEventListener("click", action.run);
      banner.appendChild(document.createTextNode(" "));
      banner.appendChild(button);
    }
    banner.hidden = false;
    clearTimeout(bannerTimer);
    if (!action) {
      bannerTimer = setTimeout(function () { banner.hidden = true; }, 6000);
    }
  }

  function text(container, name, fallback) {
    return container.getAttribute("data-live-text-" + name) || document.documentElement.getAttribute("data-live-text-" + name) || fallback;
  }

  function Region(container) {
    this.container = container;
    this.url = container.getAttribute("data-live-url");
    this.interval = parseInt(container.getAttribute("data-live-interval"), 10) || DEFAULT_INTERVAL;
    this.current = normalise(container.innerHTML);
    this.pending = null; // fetched HTML waiting for the user to finish
    this.stopped = false;
    this.timer = null;
    this.inFlight = false;
  }

  Region.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    if (!this.stopped && document.visibilityState !== "hidden") {
      this.timer = setTimeout(function () { self.poll(); }, this.interval);
    }
  };

  Region.prototype.poll = function () {
    var self = this;
    if (this.stopped || this.inFlight) {
      return Promise.resolve();
    }
    this.inFlight = true;
    return fetch(this.url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Requested-With": "live.js", "Accept": "text/html" }
    }).then(function (response) {
      var signedOut = response.status === 401 || response.status === 403 ||
        (response.redirected && /\/login\b/.test(response.url));
      if (signedOut) {
        self.stopped = true;
        showBanner(text(self.container, "signed-out", "Live updates stopped: sign in again."));
        return null;
      }
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html !== null && html !== undefined) {
        self.receive(html);
      }
    }).catch(function () {
      // offline or the server restarting: try again at the next tick
    }).then(function () {
      self.inFlight = false;
      self.schedule();
    });
  };

  Region.prototype.receive = function (html) {
    var fresh = serialise(html);
    if (fresh === this.current) {
      this.pending = null;
      return;
    }
    if (isBusy(this.container)) {
      var self = this;
      this.pending = html;
      showBanner(text(this.container, "pending", "New data for this list."), {
        label: text(this.container, "show", "Show updates"),
        run: function () { if (self.pending) { self.swap(self.pending); } if (banner) { banner.hidden = true; } }
      });
      return;
    }
    this.swap(html);
  };

  Region.prototype.swap = function (html) {
    var container = this.container;
    var before = rowMap(container);
    var scrollX = window.scrollX, scrollY = window.scrollY;
    var inner = container.querySelector(".table-scroll");
    var innerLeft = inner ? inner.scrollLeft : 0;
    container.innerHTML = html;
    this.current = normalise(container.innerHTML);
    this.pending = null;
    var added = 0;
    var rows = container.querySelectorAll("tbody tr");
    var hadRows = Object.keys(before).length > 0;
    for (var i = 0; i < rows.length; i++) {
      var key = rowKey(rows[i]);
      if (!(key in before)) {
        if (hadRows || rows[i].hasAttribute("data-live-key")) {
          rows[i].classList.add("live-new");
          added++;
        }
      } else if (before[key] !== normalise(rows[i].innerHTML)) {
        rows[i].classList.add("live-changed");
      }
    }
    inner = container.querySelector(".table-scroll");
    if (inner) {
      inner.scrollLeft = innerLeft;
    }
    window.scrollTo(scrollX, scrollY);
    if (added > 0) {
      showBanner(text(container, "new", "{n} new").replace("{n}", String(added)));
    }
    container.dispatchEvent(new CustomEvent("live:updated", { bubbles: true, detail: { added: added } }));
  };

  function start() {
    var containers = document.querySelectorAll("[data-live-url]");
    for (var i = 0; i < containers.length; i++) {
      var region = new Region(containers[i]);
      regions.push(region);
      region.schedule();
    }
    document.addEventListener("visibilitychange", function () {
      for (var j = 0; j < regions.length; j++) {
        if (document.visibilityState === "hidden") {
          clearTimeout(regions[j].timer);
        } else {
          regions[j].poll();
        }
      }
    });
  }

  window.FieldSyncLive = {
    refresh: function () {
      return Promise.all(regions.map(function (region) { return region.poll(); }));
    },
    regions: regions
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
