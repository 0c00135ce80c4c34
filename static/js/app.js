/* Ledgerline portal behaviour. Load with <script src=".../app.js" defer>.
 * CSP-safe: no eval, no inline handlers, no injected styles. */
(function () {
  "use strict";

  // <form data-autosubmit hx-get=...>: changing a <select> submits the form;
  // requestSubmit() fires a real submit event, which htmx intercepts.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLSelectElement)) return;
    var form = target.form;
    if (!form || !form.hasAttribute("data-autosubmit")) return;
    if (typeof form.requestSubmit === "function") {
      form.requestSubmit();
    } else {
      form.dispatchEvent(new Event("submit", { bubbles: true, cancelable: true }));
    }
  });

  // After htmx swaps content in, move focus to [data-focus-after-swap] so
  // keyboard and screen-reader users land on the new results. The results
  // count itself is announced by a server-rendered aria-live region.
  // Only elements inside the swapped content count, so unrelated swaps never
  // steal focus.
  document.addEventListener("htmx:afterSwap", function (event) {
    var root = event.target;
    if (!(root instanceof Element)) return;
    // Only when the element that asked for the swap was replaced by it (a sort or
    // page link): never pull focus away from a filter field someone is typing in.
    var cfg = event.detail && event.detail.requestConfig;
    if (cfg && cfg.elt && cfg.elt.isConnected) return;
    var sel = "[data-focus-after-swap]";
    var el = root.matches(sel) ? root : root.querySelector(sel);
    if (!el) return;
    if (!el.hasAttribute("tabindex") && !el.matches("a[href], button, input, select, textarea")) {
      el.setAttribute("tabindex", "-1");
    }
    el.focus();
  });
})();
