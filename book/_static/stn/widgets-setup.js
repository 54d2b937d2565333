/* STN Book: runs before the ipywidgets embed manager on pages with widgets (_config.yml, nb_ipywidgets_js). */
(function () {
  "use strict";
  // The embed manager's icon fonts lie next to it in the book (vendor/html-manager), not on a CDN. Its
  // stylesheets resolve them against the URL RequireJS gives its named module, so map that name to our
  // folder (a global `require` object before require.js loads is RequireJS's configuration).
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    var dir = new URL("vendor/html-manager/", here).href;
    window.__jupyter_widgets_assets_path__ = dir;
    if (typeof window.require === "undefined") {
      window.require = {paths: {"@jupyter-widgets/html-manager/dist": dir.slice(0, -1)}};
    }
  }
  // ipywidgets 8 typesets widget labels with MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3.
  function shim() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.version) { return; }
    mj.Hub = {
      Queue: function (job) {
        var el = job && job[2];
        var run = function () { return mj.typesetPromise ? mj.typesetPromise(el ? [el] : undefined) : null; };
        var done = mj.startup && mj.startup.promise ? mj.startup.promise.then(run) : Promise.resolve().then(run);
        done.catch(function (err) { console.warn("MathJax could not typeset a widget label:", err); });
      }
    };
  }
  document.addEventListener("DOMContentLoaded", shim);
  window.addEventListener("load", shim);
})();
