/* Uploads into a library at central from the library page: the client of Depot's resumable
   upload protocol (the DP node's /dp/v1/uploads, served for the console at
   /libraries/<slug>/uploads by portal/blueprints/libraries/uploads.py).

   The protocol, as this client speaks it:
     POST   <base>               {path, size, sha256} -> {id, offset, chunk_bytes, complete}
                                 (the same file asked for again gives the same upload and how
                                 far it got: that is how a reload resumes)
     PATCH  <base>/<id>          the bytes at Upload-Offset -> {offset}; 409 {error: {offset}}
                                 when that is not where the upload stands
     GET    <base>/<id>          -> {offset}: where to resume after a network error
     POST   <base>/<id>/finish   the server checks size and SHA-256, then renames the file over
                                 the asset (422 if damaged: the old asset stays)
     DELETE <base>/<id>          forget it

   Why the browser hashes first: an upload is named by what it will become (path, size and
   SHA-256), and the server refuses to replace an asset with bytes whose digest is not the one
   declared, so damage on the way is caught before it replaces anything. WebCrypto cannot hash a
   stream, so js-sha256 (vendored beside this file, MIT) hashes the file in 8 MiB slices.

   Unfinished uploads are remembered in localStorage, keyed by library, path, size and
   lastModified, with their SHA-256: after a reload or a closed lid, choosing the same file
   again skips the hashing and resumes at the offset the server gives. Network errors are
   retried with a doubling wait (1 s up to 30 s), at once when the browser comes back online.

   Markup (portal/templates/libraries/_upload.html): [data-upload] holds data-upload-url and
   data-library; inside it, file inputs [data-upload-files] (one with webkitdirectory for a
   folder: files keep their relative paths), a [data-upload-start] button, a [data-upload-list]
   live region for one row per file, and [data-upload-pending] for uploads left unfinished. */
(function () {
  "use strict";

  var HASH_SLICE = 8 * 1024 * 1024;
  var MAX_WAIT = 30000;
  var STORE_PREFIX = "depot-upload:";

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }

  function humanBytes(n) {
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      var timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); window.removeEventListener("online", done); resolve(); }
      window.addEventListener("online", done);  // back on the network: try at once
    });
  }

  /* An answer the server gave (status and JSON body), or a thrown NetworkError when none came. */
  function NetworkError(message) { this.message = message; }

  function call(method, url, body, headers) {
    var init = {method: method, credentials: "same-origin", headers: headers || {}};
    init.headers["X-CSRFToken"] = csrfToken();
    init.headers["Accept"] = "application/json";
    if (body !== undefined) init.body = body;
    return fetch(url, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        // sent to the sign-in page: signed out (the session ended while the lid was closed)
        return {status: response.redirected ? 401 : response.status, data: data};
      });
    }, function (err) {
      throw new NetworkError((err && err.message) || "network error");
    });
  }

  function errorText(answer) {
    var error = answer.data && answer.data.error;
    if (answer.status === 401 || (answer.status >= 300 && answer.status < 400)) {
      return "You were signed out: sign in again, then choose the file again to resume.";
    }
    return (error && error.message) || ("The server answered " + answer.status + ".");
  }

  function remembered(key) {
    try { return JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { return null; }
  }

  function remember(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }

  function forget(key) {
    try { localStorage.removeItem(key); } catch (e) { /* private mode */ }
  }

  /* One file's row: name, a labelled progress bar, and a line of words (bytes, MB/s, state). */
  function Row(list, path) {
    this.item = document.createElement("li");
    this.item.className = "upload-item";
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = path;
    this.bar = document.createElement("progress");
    this.bar.max = 100;
    this.bar.value = 0;
    this.bar.setAttribute("aria-label", "Upload of " + path);
    this.words = document.createElement("span");
    this.words.className = "small muted upload-words";
    this.cancel = document.createElement("button");
    this.cancel.type = "button";
    this.cancel.className = "link";
    this.cancel.textContent = "Cancel";
    this.item.append(name, this.bar, this.words, this.cancel);
    list.append(this.item);
  }

  Row.prototype.say = function (text, state) {
    this.words.textContent = text;
    if (state) this.item.setAttribute("data-state", state);
  };

  /* Hash the file in slices; `onSlice(done)` after each, which returns false to stop. */
  function hashFile(file, onSlice) {
    var hasher = window.sha256.create();
    var offset = 0;
    function next() {
      if (offset >= file.size) return Promise.resolve(hasher.hex());
      if (offset && onSlice(offset) === false) return Promise.reject("Cancelled.");
      var end = Math.min(offset + HASH_SLICE, file.size);
      return file.slice(offset, end).arrayBuffer().then(function (buffer) {
        hasher.update(buffer);
        offset = end;
        return next();
      });
    }
    return next();
  }

  function Upload(panel, file, path) {
    this.base = panel.getAttribute("data-upload-url");
    this.file = file;
    this.path = path;
    this.key = STORE_PREFIX + [panel.getAttribute("data-library"), path, file.size,
                               file.lastModified].join("\n");
    this.row = new Row(panel.querySelector("[data-upload-list]"), path);
    this.cancelled = false;
    var self = this;
    this.row.cancel.addEventListener("click", function () { self.cancelled = true; });
  }

  /* Run one upload to its end: resolves with the finish answer's data, or rejects with words. */
  Upload.prototype.run = function () {
    var self = this, file = this.file, row = this.row;
    var saved = remembered(this.key) || {};
    var hashing = saved.sha256 ? Promise.resolve(saved.sha256) : hashFile(file, function (done) {
      row.bar.value = file.size ? Math.floor(100 * done / file.size) : 100;
      row.say("Checking the file (SHA-256): " + humanBytes(done) + " of " + humanBytes(file.size),
              "hashing");
      return !self.cancelled;
    });
    return hashing.then(function (sha256) {
      self.sha256 = sha256;
      remember(self.key, {sha256: sha256, path: self.path, size: file.size});
      return self.start();
    }).then(function (state) {
      return state.complete ? state : self.send(state);
    }).then(function (done) {
      forget(self.key);
      return done;
    });
  };

  /* POST the upload (again): the server answers where it stands. */
  Upload.prototype.start = function () {
    var self = this;
    return this.retrying(function () {
      return call("POST", self.base, JSON.stringify({path: self.path, size: self.file.size,
                                                     sha256: self.sha256}),
                  {"Content-Type": "application/json"});
    }).then(function (answer) {
      if (answer.status !== 200 && answer.status !== 201) throw errorText(answer);
      self.id = answer.data.id;
      self.chunk = Math.max(1, answer.data.chunk_bytes || 8 * 1024 * 1024);
      return answer.data;
    });
  };

  /* Send the chunks from the server's offset on, then finish. */
  Upload.prototype.send = function (state) {
    var self = this, file = this.file, row = this.row;
    var offset = state.offset, started = Date.now(), sentHere = 0;
    var url = this.base + "/" + this.id;

    function progress() {
      var seconds = (Date.now() - started) / 1000;
      var rate = seconds > 0.5 ? " · " + (sentHere / 1e6 / seconds).toFixed(1) + " MB/s" : "";
      row.bar.value = file.size ? Math.floor(100 * offset / file.size) : 100;
      row.say(humanBytes(offset) + " of " + humanBytes(file.size) + rate, "uploading");
    }

    function next() {
      if (self.cancelled) {
        return call("DELETE", url).catch(function () {}).then(function () {
          forget(self.key);
          throw "Cancelled.";
        });
      }
      if (offset >= file.size) return self.finish();
      var end = Math.min(offset + self.chunk, file.size);
      var at = offset;
      return self.retrying(function () {
        return call("PATCH", url, file.slice(at, end),
                    {"Upload-Offset": String(at), "Content-Type": "application/offset+octet-stream"});
      }, function () {  // after a network error: where does the upload stand now?
        return call("GET", url).then(function (answer) {
          if (answer.status === 200) offset = answer.data.offset;
          return answer;
        });
      }).then(function (answer) {
        if (answer.status === 200) {
          sentHere += answer.data.offset - at;
          offset = answer.data.offset;
        } else if (answer.status === 409 && answer.data && answer.data.error &&
                   typeof answer.data.error.offset === "number") {
          offset = answer.data.error.offset;  // the server knows better: resume there
        } else if (answer.status === 404) {  // swept or finished elsewhere: ask afresh
          return self.start().then(function (fresh) {
            if (fresh.complete) return fresh;
            offset = fresh.offset;
            return next();
          });
        } else {
          throw errorText(answer);
        }
        progress();
        return next();
      });
    }
    progress();
    return next();
  };

  Upload.prototype.finish = function () {
    var self = this;
    this.row.say("Checking the SHA-256 at central…", "finishing");
    return this.retrying(function () {
      return call("POST", self.base + "/" + self.id + "/finish");
    }).then(function (answer) {
      if (answer.status !== 200) {
        if (answer.status === 422) forget(self.key);  // hash again next time
        throw errorText(answer);
      }
      return answer.data;
    });
  };

  /* `request()` until the server answers (any status but 5xx), waiting 1 s, 2 s, 4 s ... 30 s
     between tries; `after` (if given) runs once the network is back, before the next try. */
  Upload.prototype.retrying = function (request, after) {
    var self = this, wait = 1000;
    function attempt() {
      return request().then(function (answer) {
        if (answer.status >= 500 && answer.status !== 507) {
          throw new NetworkError("the server answered " + answer.status);
        }
        return answer;
      }).catch(function (err) {
        if (!(err instanceof NetworkError)) throw err;
        if (self.cancelled) throw "Cancelled.";
        self.row.say("Connection lost (" + err.message + "): trying again in " +
                     Math.round(wait / 1000) + " s", "waiting");
        return sleep(wait).then(function () {
          wait = Math.min(wait * 2, MAX_WAIT);
          if (!after) return attempt();
          return after().then(function (answer) {
            return answer.status === 404 ? answer : attempt();
          }, attempt);
        });
      });
    }
    return attempt();
  };

  function filesOf(panel) {
    var picked = [];
    panel.querySelectorAll("input[data-upload-files]").forEach(function (input) {
      Array.prototype.forEach.call(input.files || [], function (file) {
        picked.push({file: file, path: file.webkitRelativePath || file.name});
      });
    });
    return picked;
  }

  function showRescan(url) {
    var place = document.getElementById("scan-status");
    if (!place || !url || !window.htmx) {
      document.body.dispatchEvent(new CustomEvent("jobs-changed", {bubbles: true}));
      return;
    }
    var widget = document.createElement("div");
    widget.setAttribute("hx-get", url);
    widget.setAttribute("hx-trigger", "load");
    widget.setAttribute("hx-swap", "outerHTML");
    place.replaceChildren(widget);
    window.htmx.process(widget);
  }

  function uploadAll(panel, button) {
    var picked = filesOf(panel);
    if (!picked.length) return;
    button.disabled = true;
    var rescanUrl = null, chain = Promise.resolve();
    picked.forEach(function (entry) {
      var upload = new Upload(panel, entry.file, entry.path);
      chain = chain.then(function () {
        return upload.run().then(function (done) {
          upload.row.bar.value = 100;
          upload.row.say("Uploaded · SHA-256 " + done.sha256, "done");
          upload.row.cancel.remove();
          rescanUrl = done.rescan_url || rescanUrl;
        }, function (why) {
          upload.row.say(typeof why === "string" ? why : String(why && why.message || why),
                         "failed");
          upload.row.cancel.remove();
        });
      });
    });
    chain.then(function () {
      button.disabled = false;
      panel.querySelectorAll("input[data-upload-files]").forEach(function (i) { i.value = ""; });
      listPending(panel);
      showRescan(rescanUrl);
    });
  }

  /* Uploads this browser left unfinished in this library: choose the file again to resume. */
  function listPending(panel) {
    var list = panel.querySelector("[data-upload-pending]");
    if (!list) return;
    var prefix = STORE_PREFIX + panel.getAttribute("data-library") + "\n";
    list.replaceChildren();
    for (var i = 0; i < localStorage.length; i++) {
      var key = localStorage.key(i);
      var saved = key && key.indexOf(prefix) === 0 ? remembered(key) : null;
      if (saved && saved.path) {
        var item = document.createElement("li");
        item.textContent = saved.path + " (" + humanBytes(saved.size) + ")";
        list.append(item);
      }
    }
    list.closest("[data-upload-pending-box]").hidden = !list.children.length;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-upload-start]");
    var panel = button && button.closest("[data-upload]");
    if (panel) uploadAll(panel, button);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-upload]").forEach(listPending);
  });
})();
