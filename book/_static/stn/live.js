/* STN Book: trained spatial transformers running in the page (onnxruntime-web, WebAssembly backend).
 *
 * Python emits <div class="stn-live" data-stn-live='{"static": ..., "models": [...]}'> with
 * stnbook.live.live_page_html(); this script fills it in. The reader picks a test digit (or draws one),
 * turns, resizes and moves it; the page warps the digit with the in-page sampler (explorer.js, stnlib's
 * conventions), runs the exported network (stnlib.export: inputs x, outputs logits, theta, output) and draws
 * the transformer's sampling box on the input, the transformer's output and the top predictions.
 *
 * Every computation is done here, in the reader's browser: no kernel, no server beyond the static files.
 * For tests: each mounted div gets div.stnLive = {ready, set(params), last} (tests/test_browser.py).
 */
(function () {
  "use strict";

  var SIZE = 28, ZOOM = 8;
  var DEFAULTS = {rotation: 0, size: 1, dx: 0, dy: 0};
  var SLIDERS = [
    {key: "rotation", label: "turn", min: -180, max: 180, step: 1, unit: "\u00b0"},
    {key: "size", label: "size", min: 0.6, max: 1.4, step: 0.01, unit: "\u00d7"},
    {key: "dx", label: "move right", min: -0.4, max: 0.4, step: 0.01, unit: ""},
    {key: "dy", label: "move down", min: -0.4, max: 0.4, step: 0.01, unit: ""}
  ];

  /** An element with attributes ("text" sets its text) and children: explorer.js's helper, loaded before this. */
  function el(tag, attrs, children) {
    return window.STNExplorer.el(tag, attrs, children);
  }

  function decodeDigit(b64) {
    var bin = atob(b64), out = new Float32Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i) / 255; }
    return out;
  }

  /** theta (output -> input) that shows the source digit turned counter-clockwise by rotation degrees,
   * magnified size times and centred at (dx, dy) (normalised units): A = R(rotation) / size, t = -A d. */
  function distortionTheta(p) {
    var E = window.STNExplorer;
    var a = E.affineFromParams({rotation_deg: p.rotation, scale_x: 1 / p.size, scale_y: 1 / p.size, shear: 0,
                                tx: 0, ty: 0});
    var fr = Math.fround;
    a[2] = fr(-(a[0] * p.dx + a[1] * p.dy));
    a[5] = fr(-(a[3] * p.dx + a[4] * p.dy));
    return a;
  }

  /** Rotation (degrees) of an affine theta's closest similarity (stnlib.analysis.rotation_deg). */
  function rotationDeg(t) {
    return Math.atan2(t[3] - t[1], t[0] + t[4]) * 180 / Math.PI;
  }

  function paint(canvas, data, h, w) {
    var off = document.createElement("canvas");
    off.width = w; off.height = h;
    var ctx = off.getContext("2d"), img = ctx.createImageData(w, h);
    for (var i = 0; i < h * w; i++) {
      var v = Math.max(0, Math.min(255, Math.round(data[i] * 255)));
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    var c = canvas.getContext("2d");
    c.imageSmoothingEnabled = false;
    c.drawImage(off, 0, 0, canvas.width, canvas.height);
  }

  function drawBox(canvas, theta) {
    var E = window.STNExplorer, pts = E.outline("affine", theta, 2), c = canvas.getContext("2d");
    var sx = canvas.width / SIZE;
    c.save();
    c.strokeStyle = "#ff9f1c"; c.lineWidth = 2.5;
    c.beginPath();
    pts.forEach(function (p, k) {
      var q = E.toPixel(p[0], p[1], SIZE, SIZE), x = (q[0] + 0.5) * sx, y = (q[1] + 0.5) * sx;
      if (k === 0) { c.moveTo(x, y); } else { c.lineTo(x, y); }
    });
    c.stroke();
    // the output's top edge, so that the reader sees which way is "up" for the transformer
    var a = E.toPixel(pts[0][0], pts[0][1], SIZE, SIZE), b = E.toPixel(pts[1][0], pts[1][1], SIZE, SIZE);
    c.strokeStyle = "#2ec4b6"; c.lineWidth = 4;
    c.beginPath(); c.moveTo((a[0] + 0.5) * sx, (a[1] + 0.5) * sx); c.lineTo((b[0] + 0.5) * sx, (b[1] + 0.5) * sx);
    c.stroke();
    c.restore();
  }

  function softmax(logits) {
    var m = Math.max.apply(null, logits), e = logits.map(function (v) { return Math.exp(v - m); });
    var s = e.reduce(function (a, b) { return a + b; }, 0);
    return e.map(function (v) { return v / s; });
  }

  function fail(div, message) {
    div.setAttribute("data-stn-error", message);
    var box = div.querySelector(".stn-live-status") || div;
    box.textContent = message;
    box.classList.add("stn-live-error");
  }

  function Live(div) {
    this.div = div;
    this.cfg = JSON.parse(div.getAttribute("data-stn-live"));
    this.params = Object.assign({}, DEFAULTS);
    this.sessions = {};
    this.busy = null;
    this.pending = false;
    this.last = null;
    this.runs = 0;
  }

  Live.prototype.build = function () {
    var self = this, models = this.cfg.models;
    this.status = el("p", {"class": "stn-live-status", text: "Loading the WebAssembly runtime and the model\u2026"});
    this.select = el("select", {"class": "stn-live-model", "aria-label": "model"},
                     models.map(function (m) { return el("option", {value: m.name, text: m.title}); }));
    this.select.addEventListener("change", function () { self.update(); });
    this.inCanvas = el("canvas", {"class": "stn-live-input", width: SIZE * ZOOM, height: SIZE * ZOOM,
                                  title: "the input; draw on it with the mouse in drawing mode"});
    this.outCanvas = el("canvas", {"class": "stn-live-output", width: SIZE * ZOOM, height: SIZE * ZOOM});
    this.preds = el("div", {"class": "stn-live-preds"});
    this.readout = el("p", {"class": "stn-live-readout"});
    this.sliders = {};
    var controls = el("div", {"class": "stn-live-controls"});
    SLIDERS.forEach(function (s) {
      var input = el("input", {type: "range", min: s.min, max: s.max, step: s.step, value: DEFAULTS[s.key],
                               "data-stn-live-param": s.key, "aria-label": s.label});
      var value = el("span", {"class": "stn-live-value"});
      input.addEventListener("input", function () { self.params[s.key] = Number(input.value); self.update(); });
      self.sliders[s.key] = {input: input, value: value, spec: s};
      controls.appendChild(el("label", {}, [el("span", {text: s.label + " "}), input, value]));
    });
    var reset = el("button", {type: "button", text: "reset"});
    reset.addEventListener("click", function () { self.set(DEFAULTS); });
    this.drawButton = el("button", {type: "button", text: "draw a digit", "aria-pressed": "false"});
    this.drawButton.addEventListener("click", function () { self.toggleDrawing(); });
    controls.appendChild(el("div", {"class": "stn-live-buttons"}, [reset, this.drawButton]));
    this.strip = el("div", {"class": "stn-live-digits", role: "group", "aria-label": "test digits"});
    var fig = function (canvas, caption) {
      return el("figure", {}, [canvas, el("figcaption", {text: caption})]);
    };
    this.div.appendChild(el("div", {"class": "stn-live-top"}, [el("span", {text: "model "}), this.select]));
    this.div.appendChild(this.strip);
    this.div.appendChild(el("div", {"class": "stn-live-row"}, [
      fig(this.inCanvas, "input, with the box the transformer samples (teal: its top edge)"),
      fig(this.outCanvas, "the transformer's output (what the classifier sees)"),
      el("div", {"class": "stn-live-side"}, [el("div", {"class": "stn-live-caption", text: "top predictions"}),
                                             this.preds, this.readout])]));
    this.div.appendChild(controls);
    this.div.appendChild(this.status);
    this.bindDrawing();
  };

  Live.prototype.showDigits = function (digits) {
    var self = this;
    this.digits = digits;
    digits.images.forEach(function (b64, k) {
      var c = el("canvas", {width: SIZE, height: SIZE, "class": "stn-live-thumb", tabindex: "0",
                            title: "test digit " + digits.index[k] + " (label " + digits.labels[k] + ")",
                            "data-digit": k});
      paint(c, decodeDigit(b64), SIZE, SIZE);
      var pick = function () { self.set({digit: k}); };
      c.addEventListener("click", pick);
      c.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); } });
      self.strip.appendChild(c);
    });
  };

  Live.prototype.pickDigit = function (k) {
    if (k === "drawn") { return; }
    this.source = decodeDigit(this.digits.images[k]);
    this.digitIndex = k;
    this.drawing = false;
    this.drawButton.setAttribute("aria-pressed", "false");
    var thumbs = this.strip.querySelectorAll(".stn-live-thumb");
    for (var i = 0; i < thumbs.length; i++) { thumbs[i].classList.toggle("stn-live-picked", i === k); }
  };

  Live.prototype.toggleDrawing = function () {
    this.drawing = !this.drawing;
    this.drawButton.setAttribute("aria-pressed", String(this.drawing));
    if (this.drawing) {
      this.source = new Float32Array(SIZE * SIZE);
      this.digitIndex = "drawn";
      var thumbs = this.strip.querySelectorAll(".stn-live-thumb");
      for (var i = 0; i < thumbs.length; i++) { thumbs[i].classList.remove("stn-live-picked"); }
      this.status.textContent = "Drawing mode: draw a digit on the input with the mouse (or a finger).";
    }
    this.update();
  };

  /** Paint a soft round brush into the source digit at the input pixel under the pointer (mapped through the
   * distortion, so that drawing works at any slider setting). */
  Live.prototype.bindDrawing = function () {
    var self = this, down = false;
    var stroke = function (ev) {
      if (!self.drawing || !down) { return; }
      ev.preventDefault();
      var r = self.inCanvas.getBoundingClientRect();
      var px = (ev.clientX - r.left) / r.width * SIZE - 0.5, py = (ev.clientY - r.top) / r.height * SIZE - 0.5;
      var E = window.STNExplorer, n = E.toNormalised(px, py, SIZE, SIZE), t = distortionTheta(self.params);
      var q = E.toPixel(t[0] * n[0] + t[1] * n[1] + t[2], t[3] * n[0] + t[4] * n[1] + t[5], SIZE, SIZE);
      var rad = 1.6 / self.params.size;
      for (var i = Math.floor(q[1] - 3); i <= Math.ceil(q[1] + 3); i++) {
        for (var j = Math.floor(q[0] - 3); j <= Math.ceil(q[0] + 3); j++) {
          if (i < 0 || j < 0 || i >= SIZE || j >= SIZE) { continue; }
          var d = Math.hypot(j - q[0], i - q[1]), v = Math.max(0, Math.min(1, (rad + 0.8 - d) / 1.2));
          self.source[i * SIZE + j] = Math.max(self.source[i * SIZE + j], v);
        }
      }
      self.update();
    };
    this.inCanvas.addEventListener("pointerdown", function (ev) {
      if (!self.drawing) { return; }
      down = true; self.inCanvas.setPointerCapture(ev.pointerId); stroke(ev);
    });
    this.inCanvas.addEventListener("pointermove", stroke);
    ["pointerup", "pointercancel"].forEach(function (t) { self.inCanvas.addEventListener(t, function () { down = false; }); });
    this.inCanvas.style.touchAction = "none";
  };

  Live.prototype.session = function (name) {
    if (!this.sessions[name]) {
      var url = new URL(this.cfg.static + "/live/" + name + ".onnx", document.baseURI).href;
      this.sessions[name] = window.ort.InferenceSession.create(url, {executionProviders: ["wasm"]});
    }
    return this.sessions[name];
  };

  /** Change any of digit, model, rotation, size, dx, dy; resolves with the result of the run it causes. */
  Live.prototype.set = function (params) {
    var self = this;
    if (params.model !== undefined) { this.select.value = params.model; }
    if (params.digit !== undefined) { this.pickDigit(params.digit); }
    SLIDERS.forEach(function (s) {
      if (params[s.key] !== undefined) { self.params[s.key] = Number(params[s.key]); }
      self.sliders[s.key].input.value = self.params[s.key];
    });
    return this.update();
  };

  /** Run the network on the current input (runs one at a time; a change during a run queues one more). */
  Live.prototype.update = function () {
    var self = this;
    if (this.busy) {
      this.pending = true;
      return this.busy.then(function () { return self.busy || self.last; });
    }
    this.busy = this.compute().then(function (result) {
      self.busy = null;
      if (self.pending) { self.pending = false; return self.update(); }
      return result;
    }, function (err) {
      self.busy = null;
      fail(self.div, "The model could not run here: " + (err && err.message ? err.message : err));
      throw err;
    });
    return this.busy;
  };

  Live.prototype.compute = function () {
    var self = this, E = window.STNExplorer, name = this.select.value, p = Object.assign({}, this.params);
    var dist = distortionTheta(p);
    var input = E.warp(this.source, 1, SIZE, SIZE, "affine", dist, SIZE, SIZE);
    SLIDERS.forEach(function (s) {
      var v = p[s.key];
      self.sliders[s.key].value.textContent = " " + (s.key === "rotation" ? v.toFixed(0) : v.toFixed(2)) + s.unit;
    });
    return this.session(name).then(function (session) {
      var x = new window.ort.Tensor("float32", input, [1, 1, SIZE, SIZE]);
      return session.run({x: x});
    }).then(function (out) {
      var logits = Array.from(out.logits.data), theta = Array.from(out.theta.data);
      var output = out.output.data, probs = softmax(logits);
      paint(self.inCanvas, input, SIZE, SIZE);
      drawBox(self.inCanvas, theta);
      paint(self.outCanvas, output, SIZE, SIZE);
      var order = probs.map(function (v, k) { return k; }).sort(function (a, b) { return probs[b] - probs[a]; });
      self.preds.textContent = "";
      order.slice(0, 3).forEach(function (k) {
        var bar = el("span", {"class": "stn-live-bar"});
        bar.style.width = (100 * probs[k]).toFixed(1) + "%";
        self.preds.appendChild(el("div", {"class": "stn-live-pred"}, [
          el("span", {"class": "stn-live-class", text: String(k)}), el("span", {"class": "stn-live-track"}, [bar]),
          el("span", {"class": "stn-live-p", text: (100 * probs[k]).toFixed(1) + "%"})]));
      });
      var turned = rotationDeg(theta);
      var text = "The transformer's grid is turned by " + turned.toFixed(0) + "\u00b0";
      if (Math.abs(p.rotation) >= 10) {
        text += "; a transformer that undid your turn of " + p.rotation.toFixed(0) + "\u00b0 exactly would turn it by "
          + (-p.rotation).toFixed(0) + "\u00b0.";
      } else {
        text += ".";
      }
      self.readout.textContent = text;
      self.runs += 1;
      self.div.setAttribute("data-stn-runs", String(self.runs));
      if (!self.drawing) {
        var m = self.cfg.models.filter(function (q) { return q.name === name; })[0];
        self.status.textContent = "Computed in this page with onnxruntime-web: " + m.title + ".";
      }
      self.last = {model: name, params: p, digit: self.digitIndex, distortion: dist, input: Array.from(input),
                   logits: logits, theta: theta, output: Array.from(output), probs: probs};
      return self.last;
    });
  };

  function mount(div) {
    if (div.stnLive) { return div.stnLive; }
    var live = new Live(div);
    var refuse = function (message) {
      fail(div, message);
      live.ready = Promise.reject(new Error(message));
      live.ready.catch(function () {});
      div.stnLive = live;
      return live;
    };
    if (!window.STNExplorer) {
      return refuse("The page's sampler (explorer.js) did not load.");
    }
    live.build();
    if (window.location.protocol === "file:") {
      return refuse("This page was opened from a file:// address, where browsers refuse to load WebAssembly. "
                    + "Serve the book's folder instead (for example `python -m http.server` in _build/html) and "
                    + "open it from http://127.0.0.1.");
    }
    if (!window.ort) {
      return refuse("The WebAssembly runtime (onnxruntime-web) did not load.");
    }
    window.ort.env.wasm.numThreads = 1;  // no cross-origin isolation on a static site: single-threaded WASM
    // absolute: onnxruntime-web resolves a relative path against its own script, not the page
    window.ort.env.wasm.wasmPaths = new URL(live.cfg.static + "/vendor/onnxruntime-web/", document.baseURI).href;
    live.ready = fetch(live.cfg.static + "/live/digits.json").then(function (r) {
      if (!r.ok) { throw new Error("digits.json: HTTP " + r.status); }
      return r.json();
    }).then(function (digits) {
      live.showDigits(digits);
      live.pickDigit(0);
      return live.set({digit: 0, rotation: 40});
    }).then(function (result) {
      div.setAttribute("data-stn-mounted", "1");
      return result;
    }, function (err) {
      fail(div, "The model could not be loaded: " + (err && err.message ? err.message : err));
      throw err;
    });
    div.stnLive = live;
    return live;
  }

  function mountAll() {
    var divs = document.querySelectorAll(".stn-live");
    for (var i = 0; i < divs.length; i++) { mount(divs[i]); }
  }

  window.STNLive = {mount: mount, mountAll: mountAll, distortionTheta: distortionTheta, rotationDeg: rotationDeg};
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", mountAll);
  } else {
    mountAll();
  }
})();
