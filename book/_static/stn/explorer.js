/* STN Book: a theta explorer that runs in the page, with no kernel, server or CDN.
 *
 * The grid generator and sampler are re-implemented here with the conventions of stnlib
 * (stnlib/coords.py, stnlib/sampler.py): points are (x, y); coordinates are normalised to [-1, 1];
 * align_corners=False (-1 and +1 are the outer edges of the corner pixels, pixel i of n has its
 * centre at (2i + 1)/n - 1); a grid maps OUTPUT points to INPUT points; the sampler is the bilinear
 * kernel of the paper's Eq. 5 with zeros outside the input (torch's grid_sample, "zeros" padding).
 * tests/test_web.py runs these functions in node and compares them with stnlib pixel for pixel.
 *
 * Python emits the markup with stnlib.web.static_theta_explorer(image, transform); the script
 * mounts every <div class="stn-explorer"> it finds. It also loads as a CommonJS module (node).
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  }
  if (root && root.document) {
    if (!root.STNExplorer || root.STNExplorer.version < api.version) {
      root.STNExplorer = api;
    }
    var run = function () { root.STNExplorer.mountAll(root.document); };
    if (root.document.readyState === "loading") {
      root.document.addEventListener("DOMContentLoaded", run);
    } else {
      run();
    }
  }
})(typeof window !== "undefined" ? window : null, function () {
  "use strict";

  var VERSION = 1;
  var fround = Math.fround;

  // ------------------------------------------------------------------ conventions (stnlib.coords)

  /** Normalised coordinates of the n pixel centres along one axis (align_corners=False), as float32. */
  function linspaceCentres(n) {
    var a = new Float64Array(n);
    for (var i = 0; i < n; i++) {
      a[i] = fround(fround((2 * i + 1) / n) - 1);  // torch: (arange(n) * 2 + 1) / n - 1 in float32
    }
    return a;
  }

  /** Normalised (x, y) -> pixel (column, row), pixel centres at integers (stnlib.normalized_to_pixel). */
  function toPixel(x, y, h, w) {
    return [((x + 1) * w - 1) / 2, ((y + 1) * h - 1) / 2];
  }

  /** Pixel (column, row) -> normalised (x, y) (stnlib.pixel_to_normalized). */
  function toNormalised(px, py, h, w) {
    return [(px * 2 + 1) / w - 1, (py * 2 + 1) / h - 1];
  }

  // ------------------------------------------------------------------ small dense linear algebra

  /** Solve A X = B by Gaussian elimination with partial pivoting (A: n x n rows, B: n x m rows). */
  function solve(a, b) {
    var n = a.length, m = b[0].length, i, j, k;
    var A = a.map(function (r) { return r.slice(); });
    var B = b.map(function (r) { return r.slice(); });
    for (k = 0; k < n; k++) {
      var p = k, best = Math.abs(A[k][k]);
      for (i = k + 1; i < n; i++) {
        if (Math.abs(A[i][k]) > best) { best = Math.abs(A[i][k]); p = i; }
      }
      if (!(best > 1e-12)) { return null; }  // singular (or NaN)
      if (p !== k) {
        var t = A[k]; A[k] = A[p]; A[p] = t;
        t = B[k]; B[k] = B[p]; B[p] = t;
      }
      for (i = k + 1; i < n; i++) {
        var f = A[i][k] / A[k][k];
        if (f === 0) { continue; }
        for (j = k; j < n; j++) { A[i][j] -= f * A[k][j]; }
        for (j = 0; j < m; j++) { B[i][j] -= f * B[k][j]; }
      }
    }
    var X = [];
    for (i = n - 1; i >= 0; i--) {
      var row = new Array(m);
      for (j = 0; j < m; j++) {
        var s = B[i][j];
        for (k = i + 1; k < n; k++) { s -= A[i][k] * X[k - i - 1][j]; }
        row[j] = s / A[i][i];
      }
      X.unshift(row);
    }
    return X;
  }

  // ------------------------------------------------------------------ transformation families

  function affineFromParams(p) {
    // stnlib.transforms.affine.affine_from_params: A = R(rotation) @ [[1, shear], [0, 1]] @ diag(sx, sy)
    var a = p.rotation_deg * Math.PI / 180, c = Math.cos(a), s = Math.sin(a);
    var sx = p.scale_x, sy = p.scale_y, sh = p.shear;
    return [fround(c * sx), fround(c * sh * sy - s * sy), fround(p.tx),
            fround(s * sx), fround(s * sh * sy + c * sy), fround(p.ty)];
  }

  function decomposeAffine(t) {
    // stnlib.transforms.affine.decompose_affine (QR of the 2x2 block)
    var a00 = t[0], a01 = t[1], a10 = t[3], a11 = t[4];
    var sx = Math.hypot(a00, a10);
    if (sx === 0) {
      return {rotation_deg: 0, scale_x: 0, scale_y: a11, shear: 0, tx: t[2], ty: t[5]};
    }
    var rot = Math.atan2(a10, a00), c = Math.cos(rot), s = Math.sin(rot);
    var r01 = c * a01 + s * a11, sy = -s * a01 + c * a11;
    return {rotation_deg: rot * 180 / Math.PI, scale_x: sx, scale_y: sy, shear: sy !== 0 ? r01 / sy : 0,
            tx: t[2], ty: t[5]};
  }

  /** The projective theta (8 numbers) mapping 4 points src onto 4 points dst (stnlib homography_from_points). */
  function homographyFromPoints(src, dst) {
    var rows = [], rhs = [], i;
    for (i = 0; i < 4; i++) {
      var x = src[i][0], y = src[i][1], u = dst[i][0];
      rows.push([x, y, 1, 0, 0, 0, -x * u, -y * u]); rhs.push([u]);
    }
    for (i = 0; i < 4; i++) {
      var x2 = src[i][0], y2 = src[i][1], v = dst[i][1];
      rows.push([0, 0, 0, x2, y2, 1, -x2 * v, -y2 * v]); rhs.push([v]);
    }
    var h = solve(rows, rhs);
    return h === null ? null : h.map(function (r) { return r[0]; });
  }

  function tpsKernel(r2) {
    return r2 * Math.log(Math.max(r2, 1e-12));  // U(r) = r^2 log r^2, U(0) = 0
  }

  var tpsCache = {};

  /** Control points (x fastest, float32) and the (K+3) x K spline weights of a grid_size x grid_size TPS. */
  function tpsSetup(g) {
    if (tpsCache[g]) { return tpsCache[g]; }
    var ctrl = [], i, j, k = g * g;
    for (i = 0; i < g; i++) {
      for (j = 0; j < g; j++) {
        // torch.linspace(-1, 1, g, float64) then .float()
        ctrl.push([fround(-1 + 2 * j / (g - 1)), fround(-1 + 2 * i / (g - 1))]);
      }
    }
    var n = k + 3, L = [], I = [];
    for (i = 0; i < n; i++) {
      L.push(new Array(n).fill(0));
      I.push(new Array(k).fill(0));
      if (i < k) { I[i][i] = 1; }
    }
    for (i = 0; i < k; i++) {
      for (j = 0; j < k; j++) {
        var dx = ctrl[i][0] - ctrl[j][0], dy = ctrl[i][1] - ctrl[j][1];
        L[i][j] = tpsKernel(dx * dx + dy * dy);
      }
      L[i][k] = 1; L[i][k + 1] = ctrl[i][0]; L[i][k + 2] = ctrl[i][1];
      L[k][i] = 1; L[k + 1][i] = ctrl[i][0]; L[k + 2][i] = ctrl[i][1];
    }
    tpsCache[g] = {control: ctrl, weights: solve(L, I)};  // the first K columns of L^-1
    return tpsCache[g];
  }

  /** Row of K coefficients with source(x, y) = sum_k row[k] * theta_k (theta_k = source of control point k). */
  function tpsRow(x, y, setup) {
    var ctrl = setup.control, W = setup.weights, k = ctrl.length, i, j;
    var feat = new Float64Array(k + 3);
    for (i = 0; i < k; i++) {
      var dx = x - ctrl[i][0], dy = y - ctrl[i][1];
      feat[i] = tpsKernel(dx * dx + dy * dy);
    }
    feat[k] = 1; feat[k + 1] = x; feat[k + 2] = y;
    var row = new Float64Array(k);
    for (j = 0; j < k; j++) {
      var s = 0;
      for (i = 0; i < k + 3; i++) { s += feat[i] * W[i][j]; }
      row[j] = fround(s);  // stnlib stores this matrix in the theta dtype (float32)
    }
    return row;
  }

  var FAMILIES = {
    affine: {
      numParams: function () { return 6; },
      identity: function () { return [1, 0, 0, 0, 1, 0]; },
      mapper: function (t) {
        return function (x, y) { return [t[0] * x + t[1] * y + t[2], t[3] * x + t[4] * y + t[5]]; };
      }
    },
    attention: {
      numParams: function () { return 3; },
      identity: function () { return [1, 0, 0]; },
      mapper: function (t) {
        return function (x, y) { return [t[0] * x + t[1], t[0] * y + t[2]]; };
      }
    },
    projective: {
      numParams: function () { return 8; },
      identity: function () { return [1, 0, 0, 0, 1, 0, 0, 0]; },
      mapper: function (t) {
        return function (x, y) {
          var w = t[6] * x + t[7] * y + 1, eps = 1e-6;
          if (Math.abs(w) < eps) { w = w < 0 ? -eps : eps; }  // stnlib: the horizon maps far away, not to inf
          return [(t[0] * x + t[1] * y + t[2]) / w, (t[3] * x + t[4] * y + t[5]) / w];
        };
      }
    },
    tps: {
      numParams: function (o) { return 2 * o.gridSize * o.gridSize; },
      identity: function (o) {
        return [].concat.apply([], tpsSetup(o.gridSize).control);
      },
      mapper: function (t, o) {
        var setup = tpsSetup(o.gridSize), k = setup.control.length;
        return function (x, y) {
          var row = tpsRow(x, y, setup), sx = 0, sy = 0;
          for (var i = 0; i < k; i++) { sx += row[i] * t[2 * i]; sy += row[i] * t[2 * i + 1]; }
          return [sx, sy];
        };
      }
    }
  };

  function family(name) {
    var f = FAMILIES[name];
    if (!f) { throw new Error("STNExplorer: unknown transform " + name + "; known: " + Object.keys(FAMILIES)); }
    return f;
  }

  function options(o) {
    return {gridSize: (o && o.gridSize) || 4};
  }

  /** Map normalised output points through theta: a function (x, y) -> [x_s, y_s]. */
  function mapper(name, theta, opts) {
    var f = family(name), o = options(opts);
    if (theta.length !== f.numParams(o)) {
      throw new Error("STNExplorer: " + name + " theta needs " + f.numParams(o) + " numbers, got " + theta.length);
    }
    return f.mapper(theta, o);
  }

  /** The sampling grid: Float64Array (outH * outW * 2) of source (x_s, y_s), row-major, x first. */
  function grid(name, theta, outH, outW, opts) {
    var map = mapper(name, theta, opts), xs = linspaceCentres(outW), ys = linspaceCentres(outH);
    var g = new Float64Array(outH * outW * 2);
    for (var i = 0; i < outH; i++) {
      for (var j = 0; j < outW; j++) {
        var p = map(xs[j], ys[i]);
        g[2 * (i * outW + j)] = p[0];
        g[2 * (i * outW + j) + 1] = p[1];
      }
    }
    return g;
  }

  /** Bilinear sampling (Eq. 5) with zeros outside: image (C*H*W, channel-major) at grid -> (C*outH*outW). */
  function sample(image, c, h, w, g, outH, outW) {
    var n = outH * outW, out = new Float32Array(c * n);
    for (var q = 0; q < n; q++) {
      var x = g[2 * q], y = g[2 * q + 1];
      if (!isFinite(x) || !isFinite(y)) { continue; }
      var ix = ((x + 1) * w - 1) / 2, iy = ((y + 1) * h - 1) / 2;
      var x0 = Math.floor(ix), y0 = Math.floor(iy);
      var fx = ix - x0, fy = iy - y0;
      var taps = [[x0, y0, (1 - fx) * (1 - fy)], [x0 + 1, y0, fx * (1 - fy)],
                  [x0, y0 + 1, (1 - fx) * fy], [x0 + 1, y0 + 1, fx * fy]];
      for (var ch = 0; ch < c; ch++) {
        var acc = 0, base = ch * h * w;
        for (var t = 0; t < 4; t++) {
          var xi = taps[t][0], yi = taps[t][1];
          if (xi >= 0 && xi < w && yi >= 0 && yi < h) { acc += image[base + yi * w + xi] * taps[t][2]; }
        }
        out[ch * n + q] = acc;
      }
    }
    return out;
  }

  /** Grid generator + sampler: what stnlib.analysis.warp computes for one image. */
  function warp(image, c, h, w, name, theta, outH, outW, opts) {
    return sample(image, c, h, w, grid(name, theta, outH, outW, opts), outH, outW);
  }

  /** The output square's boundary mapped through theta (stnlib.geometry.sampling_outline), normalised. */
  function outline(name, theta, perSide, opts) {
    var map = mapper(name, theta, opts), pts = [], k, t;
    var side = function (a, b) {
      for (k = 0; k < perSide - 1; k++) {
        t = k / (perSide - 1);
        pts.push(map(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t));
      }
    };
    side([-1, -1], [1, -1]); side([1, -1], [1, 1]); side([1, 1], [-1, 1]); side([-1, 1], [-1, -1]);
    pts.push(pts[0]);
    return pts;
  }

  function decodeFloat32(b64) {
    var bin = typeof atob === "function" ? atob(b64) : Buffer.from(b64, "base64").toString("binary");
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return new Float32Array(bytes.buffer);
  }

  // ------------------------------------------------------------------ the page widget

  var CSS = [
    ".stn-explorer{font-family:var(--pst-font-family-base,system-ui,sans-serif);font-size:.85rem;margin:.5rem 0 1rem;",
    "padding:.6rem;border:1px solid #d0d7de;border-radius:6px;background:#fff;color:#222}",
    ".stn-explorer .stn-row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}",
    ".stn-explorer .stn-controls{min-width:15rem;max-width:20rem}",
    ".stn-explorer .stn-controls label{display:grid;grid-template-columns:6.5rem 1fr 3.2rem;align-items:center;gap:.3rem;margin:.1rem 0}",
    ".stn-explorer .stn-controls input[type=range]{width:100%;margin:0}",
    ".stn-explorer .stn-raw{display:grid;grid-template-columns:repeat(3,1fr);gap:.2rem;margin:.3rem 0}",
    ".stn-explorer .stn-raw input{width:100%;font-family:monospace;font-size:.8rem}",
    ".stn-explorer figure{margin:0;text-align:center;width:min-content}",  // the caption wraps under its canvas
    ".stn-explorer figcaption{font-size:.8rem;color:#555}",
    ".stn-explorer canvas{border:1px solid #ccc;image-rendering:pixelated;touch-action:none}",
    ".stn-explorer canvas.stn-input{cursor:crosshair}",
    ".stn-explorer .stn-theta{display:block;margin-top:.4rem;font-size:.75rem;white-space:pre-wrap;word-break:break-all}",
    ".stn-explorer button{font-size:.8rem;margin:.3rem .3rem 0 0}",
    ".stn-explorer .stn-note{color:#555;font-size:.8rem;margin:.2rem 0}",
    ".stn-explorer .stn-caption{font-weight:600;margin-bottom:.3rem}"
  ].join("");

  var AFFINE_SLIDERS = [  // name, label, min, max, step (stnlib.widgets.SLIDERS)
    ["rotation_deg", "rotation (deg)", -180, 180, 1],
    ["scale_x", "scale x", 0.2, 2, 0.01],
    ["scale_y", "scale y", 0.2, 2, 0.01],
    ["shear", "shear", -1, 1, 0.01],
    ["tx", "translate x", -1, 1, 0.01],
    ["ty", "translate y", -1, 1, 0.01]
  ];
  var ATTENTION_SLIDERS = [["scale", "scale s", 0.2, 2, 0.01], ["tx", "translate x", -1, 1, 0.01],
                           ["ty", "translate y", -1, 1, 0.01]];
  var RAW_NAMES = {
    affine: ["t11", "t12", "t13", "t21", "t22", "t23"],
    attention: ["s", "tx", "ty"],
    projective: ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"]
  };
  var SQUARE = [[-1, -1], [1, -1], [1, 1], [-1, 1]];

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { e.textContent = attrs[k]; } else { e.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }

  function fmt(v, d) {
    var s = Number(v).toFixed(d === undefined ? 3 : d);
    return s === "-0.000" || s === "-0.00" || s === "-0" ? s.slice(1) : s;
  }

  function convexQuad(p) {
    var sign = 0;
    for (var i = 0; i < 4; i++) {
      var a = p[i], b = p[(i + 1) % 4], c = p[(i + 2) % 4];
      var cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]);
      if (Math.abs(cross) < 1e-9) { return false; }
      if (sign === 0) { sign = cross > 0 ? 1 : -1; } else if ((cross > 0 ? 1 : -1) !== sign) { return false; }
    }
    return true;
  }

  /** Paint a (C, H, W) float image (0..1) into a new H x W canvas (gray for C = 1, RGB for C = 3). */
  function imageCanvas(data, c, h, w) {
    var cv = el("canvas", {width: w, height: h}), ctx = cv.getContext("2d"), img = ctx.createImageData(w, h);
    var n = h * w;
    for (var q = 0; q < n; q++) {
      for (var k = 0; k < 3; k++) {
        var v = data[(c === 3 ? k : 0) * n + q];
        img.data[4 * q + k] = Math.round(255 * Math.min(1, Math.max(0, v)));
      }
      img.data[4 * q + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return cv;
  }

  function Explorer(container, cfg) {
    this.container = container;
    this.cfg = cfg;
    this.c = cfg.channels || 1;
    this.h = cfg.height;
    this.w = cfg.width;
    this.outH = cfg.out_height || cfg.height;
    this.outW = cfg.out_width || cfg.width;
    this.opts = {gridSize: cfg.tps_grid_size || 4};
    this.margin = cfg.margin === undefined ? 0.35 : cfg.margin;
    this.zoom = cfg.zoom || Math.max(2, Math.round(168 / Math.max(this.h, this.w)));
    this.outZoom = cfg.out_zoom || Math.max(2, Math.round(196 / Math.max(this.outH, this.outW)));
    this.every = cfg.every || 3;
    this.items = cfg.items || [{image: cfg.image, theta: cfg.theta}];
    this.select(0);
    this.build();
    this.render();
  }

  Explorer.prototype.select = function (index) {
    var item = this.items[index];
    this.index = index;
    this.family = item.transform || this.cfg.transform || "affine";
    this.image = decodeFloat32(item.image);
    if (this.image.length !== this.c * this.h * this.w) {
      throw new Error("STNExplorer: image has " + this.image.length + " values, expected C*H*W = " +
                      this.c * this.h * this.w);
    }
    this.initial = (item.theta || family(this.family).identity(options(this.opts))).slice();
    this.theta = this.initial.slice();
    this.inputSprite = null;
  };

  Explorer.prototype.build = function () {
    var self = this, cfg = this.cfg, fam = this.family, mode = cfg.mode || "theta";
    var box = this.container;
    box.textContent = "";
    box.classList.add("stn-explorer");
    if (cfg.title) { box.appendChild(el("div", {"class": "stn-caption", text: cfg.title})); }
    var controls = el("div", {"class": "stn-controls"});
    this.sliders = {};
    this.rawInputs = [];
    if (mode === "gallery") {
      var pick = el("input", {type: "range", min: 0, max: this.items.length - 1, step: 1, value: 0,
                              "data-stn-param": "index", "aria-label": "test digit"});
      var shown = el("output", {text: "1 / " + this.items.length});
      pick.addEventListener("input", function () {
        self.select(Number(pick.value));
        shown.textContent = (self.index + 1) + " / " + self.items.length;
        self.render();
      });
      this.sliders.index = pick;
      controls.appendChild(el("label", {}, [el("span", {text: "test digit"}), pick, shown]));
      this.info = el("div", {"class": "stn-note stn-info"});
      controls.appendChild(this.info);
    } else if (fam === "affine" || fam === "attention") {
      var specs = fam === "affine" ? AFFINE_SLIDERS : ATTENTION_SLIDERS;
      specs.forEach(function (s) {
        var input = el("input", {type: "range", min: s[2], max: s[3], step: s[4], "data-stn-param": s[0],
                                 "aria-label": s[1]});
        var out = el("output", {});
        input.addEventListener("input", function () { self.onSlider(); });
        self.sliders[s[0]] = input;
        self.sliderOut = self.sliderOut || {};
        self.sliderOut[s[0]] = out;
        controls.appendChild(el("label", {}, [el("span", {text: s[1]}), input, out]));
      });
      this.syncSliders();
    } else if (fam === "projective") {
      controls.appendChild(el("p", {"class": "stn-note", text: "Drag the four orange corners of the sampled " +
        "region on the input: theta is the homography that maps the output square onto them."}));
    } else if (fam === "tps") {
      controls.appendChild(el("p", {"class": "stn-note", text: "Drag the orange control points on the input: " +
        "theta is where each of the " + this.theta.length / 2 + " control points of the output reads the input."}));
    }
    if (mode !== "gallery" && RAW_NAMES[fam]) {
      controls.appendChild(el("div", {"class": "stn-note", text: "raw theta (editable)"}));
      var raw = el("div", {"class": "stn-raw"});
      RAW_NAMES[fam].forEach(function (name, k) {
        var input = el("input", {type: "number", step: 0.01, title: name, "aria-label": name, "data-stn-raw": k});
        input.addEventListener("change", function () { self.onRaw(); });
        self.rawInputs.push(input);
        raw.appendChild(input);
      });
      controls.appendChild(raw);
    }
    if (mode !== "gallery") {
      var reset = el("button", {type: "button", "class": "stn-reset", text: "reset"});
      reset.addEventListener("click", function () { self.setTheta(self.initial.slice(), true); });
      controls.appendChild(reset);
      if (JSON.stringify(this.initial) !== JSON.stringify(family(fam).identity(options(this.opts)))) {
        var ident = el("button", {type: "button", "class": "stn-identity", text: "identity"});
        ident.addEventListener("click", function () { self.setTheta(family(fam).identity(options(self.opts)), true); });
        controls.appendChild(ident);
      }
    }
    var m = this.margin;
    this.viewW = Math.round(this.w * (1 + 2 * m) * this.zoom);
    this.viewH = Math.round(this.h * (1 + 2 * m) * this.zoom);
    this.inCanvas = el("canvas", {"class": "stn-input", width: this.viewW, height: this.viewH});
    this.outCanvas = el("canvas", {"class": "stn-output", width: this.outW * this.outZoom,
                                   height: this.outH * this.outZoom});
    var views = el("div", {"class": "stn-row stn-views"}, [
      el("figure", {}, [this.inCanvas, el("figcaption", {text: "input U, sampling grid (blue; output's top row yellow), region (red)"})]),
      el("figure", {}, [this.outCanvas, el("figcaption", {text: "output V (" + this.outH + "x" + this.outW + ")"})])
    ]);
    box.appendChild(el("div", {"class": "stn-row"}, [controls, views]));
    this.thetaText = el("code", {"class": "stn-theta"});
    box.appendChild(this.thetaText);
    if (mode !== "gallery" && (fam === "projective" || fam === "tps")) { this.enableDragging(); }
  };

  Explorer.prototype.params = function () {
    var p = {};
    for (var k in this.sliders) { p[k] = Number(this.sliders[k].value); }
    return p;
  };

  Explorer.prototype.syncSliders = function () {
    var p, k;
    if (this.family === "affine") { p = decomposeAffine(this.theta); }
    else if (this.family === "attention") { p = {scale: this.theta[0], tx: this.theta[1], ty: this.theta[2]}; }
    else { return; }
    for (k in this.sliders) {
      var s = this.sliders[k], v = Math.min(Number(s.max), Math.max(Number(s.min), p[k]));
      s.value = v;
      this.sliderOut[k].textContent = fmt(s.value, 2);
    }
  };

  Explorer.prototype.onSlider = function () {
    var p = this.params();
    for (var k in this.sliders) { this.sliderOut[k].textContent = fmt(p[k], 2); }
    this.theta = this.family === "affine" ? affineFromParams(p) : [fround(p.scale), fround(p.tx), fround(p.ty)];
    this.render();
  };

  Explorer.prototype.onRaw = function () {
    var t = this.rawInputs.map(function (i) { return Number(i.value); });
    if (t.every(isFinite)) { this.setTheta(t, true); }
  };

  Explorer.prototype.setTheta = function (theta, syncSliders) {
    this.theta = theta.map(fround);
    if (syncSliders) { this.syncSliders(); }
    this.render();
  };

  Explorer.prototype.handles = function () {
    // projective: where the output square's corners read the input; TPS: theta itself
    if (this.family === "projective") {
      var map = mapper("projective", this.theta, this.opts);
      return SQUARE.map(function (p) { return map(p[0], p[1]); });
    }
    var pts = [];
    for (var k = 0; k < this.theta.length; k += 2) { pts.push([this.theta[k], this.theta[k + 1]]); }
    return pts;
  };

  Explorer.prototype.toView = function (x, y) {
    var p = toPixel(x, y, this.h, this.w), z = this.zoom, m = this.margin;
    return [(p[0] + 0.5 + m * this.w) * z, (p[1] + 0.5 + m * this.h) * z];
  };

  Explorer.prototype.fromView = function (vx, vy) {
    var z = this.zoom, m = this.margin;
    return toNormalised(vx / z - 0.5 - m * this.w, vy / z - 0.5 - m * this.h, this.h, this.w);
  };

  Explorer.prototype.enableDragging = function () {
    var self = this, cv = this.inCanvas, active = -1;
    var pos = function (ev) {
      var r = cv.getBoundingClientRect();
      return [(ev.clientX - r.left) * cv.width / r.width, (ev.clientY - r.top) * cv.height / r.height];
    };
    cv.addEventListener("pointerdown", function (ev) {
      var p = pos(ev), best = 14 * 14;
      active = -1;
      self.handles().forEach(function (hnd, k) {
        var v = self.toView(hnd[0], hnd[1]), d = (v[0] - p[0]) * (v[0] - p[0]) + (v[1] - p[1]) * (v[1] - p[1]);
        if (d < best) { best = d; active = k; }
      });
      if (active >= 0) { cv.setPointerCapture(ev.pointerId); ev.preventDefault(); }
    });
    cv.addEventListener("pointermove", function (ev) {
      if (active < 0) { return; }
      var p = pos(ev), q = self.fromView(p[0], p[1]);
      if (self.family === "projective") {
        var corners = self.handles();
        corners[active] = q;
        if (!convexQuad(corners)) { return; }  // a folded quadrilateral has no sensible homography
        var t = homographyFromPoints(SQUARE, corners);
        if (t !== null && t.every(isFinite)) { self.setTheta(t, false); }
      } else {
        var th = self.theta.slice();
        th[2 * active] = q[0];
        th[2 * active + 1] = q[1];
        self.setTheta(th, false);
      }
    });
    var stop = function () { active = -1; };
    cv.addEventListener("pointerup", stop);
    cv.addEventListener("pointercancel", stop);
  };

  Explorer.prototype.render = function () {
    var g = grid(this.family, this.theta, this.outH, this.outW, this.opts);
    this.output = sample(this.image, this.c, this.h, this.w, g, this.outH, this.outW);
    this.drawInput(g);
    this.drawOutput();
    var self = this;
    this.rawInputs.forEach(function (input, k) {
      if (document.activeElement !== input) { input.value = fmt(self.theta[k], 4); }
    });
    this.thetaText.textContent = this.family + " theta = [" + this.theta.map(function (v) { return fmt(v); }).join(", ") + "]";
    if (this.info) {
      var item = this.items[this.index];
      this.info.textContent = item.note || "";
    }
    this.container.setAttribute("data-stn-theta", JSON.stringify(Array.prototype.slice.call(this.theta)));
    this.container.setAttribute("data-stn-renders", String(Number(this.container.getAttribute("data-stn-renders") || 0) + 1));
  };

  Explorer.prototype.drawInput = function (g) {
    var ctx = this.inCanvas.getContext("2d"), z = this.zoom, m = this.margin, self = this;
    var x0 = m * this.w * z, y0 = m * this.h * z;
    ctx.fillStyle = "#f2f2f2";
    ctx.fillRect(0, 0, this.viewW, this.viewH);
    if (!this.inputSprite) { this.inputSprite = imageCanvas(this.image, this.c, this.h, this.w); }
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.inputSprite, x0, y0, this.w * z, this.h * z);
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = "#999";
    ctx.lineWidth = 1;
    ctx.strokeRect(x0, y0, this.w * z, this.h * z);
    ctx.setLineDash([]);
    // every `every`-th row and column of the sampling grid, plus the last (stnlib.viz.draw_grid)
    var pick = function (n, e) {
      var idx = [];
      for (var i = 0; i < n; i += e) { idx.push(i); }
      if ((n - 1) % e) { idx.push(n - 1); }
      return idx;
    };
    var rows = pick(this.outH, this.every), cols = pick(this.outW, this.every), W = this.outW;
    var at = function (i, j) { return self.toView(g[2 * (i * W + j)], g[2 * (i * W + j) + 1]); };
    ctx.strokeStyle = "rgba(0,180,255,0.9)";
    ctx.lineWidth = 1;
    var line = function (pts) {
      ctx.beginPath();
      pts.forEach(function (p, k) { if (k) { ctx.lineTo(p[0], p[1]); } else { ctx.moveTo(p[0], p[1]); } });
      ctx.stroke();
    };
    var i, j, seq;
    for (var a = 0; a < rows.length; a++) {
      seq = [];
      for (j = 0; j < this.outW; j++) { seq.push(at(rows[a], j)); }
      line(seq);
    }
    for (var b = 0; b < cols.length; b++) {
      seq = [];
      for (i = 0; i < this.outH; i++) { seq.push(at(i, cols[b])); }
      line(seq);
    }
    ctx.fillStyle = "#00b4ff";
    rows.forEach(function (r) {
      cols.forEach(function (c) { var p = at(r, c); ctx.fillRect(p[0] - 1.5, p[1] - 1.5, 3, 3); });
    });
    ctx.strokeStyle = "#e6194b";
    ctx.lineWidth = 2;
    line(outline(this.family, this.theta, this.family === "tps" ? 16 : 2, this.opts).map(function (p) {
      return self.toView(p[0], p[1]);
    }));
    // the output's top row in yellow, so a turn of the grid shows even where its outline looks the same
    seq = [];
    for (j = 0; j < this.outW; j++) { seq.push(at(0, j)); }
    ctx.strokeStyle = "#ffe119";
    ctx.lineWidth = 2.5;
    line(seq);
    if ((this.cfg.mode || "theta") !== "gallery" && (this.family === "projective" || this.family === "tps")) {
      ctx.fillStyle = "#f58231";
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1.5;
      this.handles().forEach(function (h) {
        var p = self.toView(h[0], h[1]);
        ctx.beginPath();
        ctx.arc(p[0], p[1], 5, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      });
    }
  };

  Explorer.prototype.drawOutput = function () {
    var ctx = this.outCanvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(imageCanvas(this.output, this.c, this.outH, this.outW), 0, 0,
                  this.outW * this.outZoom, this.outH * this.outZoom);
  };

  function injectCss(doc) {
    if (doc.getElementById("stn-explorer-css")) { return; }
    var style = doc.createElement("style");
    style.id = "stn-explorer-css";
    style.textContent = CSS;
    doc.head.appendChild(style);
  }

  /** Mount one <div class="stn-explorer"> (holding its <script class="stn-config">) unless already mounted. */
  function mount(node) {
    if (!node || !node.classList || !node.classList.contains("stn-explorer") || node.hasAttribute("data-stn-mounted")) {
      return null;
    }
    var src = node.querySelector("script.stn-config");
    if (!src) { return null; }
    injectCss(node.ownerDocument);
    node.setAttribute("data-stn-mounted", "1");
    try {
      node.stnExplorer = new Explorer(node, JSON.parse(src.textContent));
    } catch (err) {
      node.setAttribute("data-stn-error", String(err));
      node.appendChild(el("pre", {text: String(err)}));
      throw err;
    }
    return node.stnExplorer;
  }

  /** Mount every not yet mounted .stn-explorer element below root; returns the new Explorer objects. */
  function mountAll(root) {
    var made = [], failed = null;
    Array.prototype.forEach.call(root.querySelectorAll(".stn-explorer:not([data-stn-mounted])"), function (node) {
      try {
        var ex = mount(node);
        if (ex) { made.push(ex); }
      } catch (err) {
        failed = failed || err;
      }
    });
    if (failed) { throw failed; }  // after the others are mounted; surfaces in the console
    return made;
  }

  return {
    version: VERSION,
    linspaceCentres: linspaceCentres,
    toPixel: toPixel,
    toNormalised: toNormalised,
    solve: solve,
    affineFromParams: affineFromParams,
    decomposeAffine: decomposeAffine,
    homographyFromPoints: homographyFromPoints,
    tpsSetup: tpsSetup,
    families: Object.keys(FAMILIES),
    identity: function (name, opts) { return family(name).identity(options(opts)); },
    mapper: mapper,
    grid: grid,
    sample: sample,
    warp: warp,
    outline: outline,
    decodeFloat32: decodeFloat32,
    el: el,
    Explorer: Explorer,
    mount: mount,
    mountAll: mountAll
  };
});
