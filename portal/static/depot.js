/* What the console's pages do in the browser besides htmx, without an inline script or event
   handler (the Content-Security-Policy allows neither): listeners on the document that act on
   data- attributes, so they work on fragments htmx swaps in too.
   - data-submit-on-change (on a select): changing it submits its form (the DP switcher, the
     branch view's site);
   - data-dismiss (on a button): removes the closest .flash (the flash messages' ×);
   - data-reveal-on-submit="ID" (on a form): submitting it shows the element #ID (the Add cloud
     form's "waiting for you to allow access");
   - data-quiet-while-hidden (on an element htmx polls): no request while it is hidden. */
(function () {
  "use strict";

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-submit-on-change]") && select.form) {
      select.form.requestSubmit();
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-dismiss]");
    if (button) {
      var flash = button.closest(".flash");
      if (flash) flash.remove();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var id = form.getAttribute && form.getAttribute("data-reveal-on-submit");
    var shown = id && document.getElementById(id);
    if (shown) shown.hidden = false;
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.hidden && elt.hasAttribute("data-quiet-while-hidden")) {
      event.preventDefault();
    }
  });
  /* --- i14-tables: select all ---
     data-select-all="NAME" (on a header checkbox): ticks or clears every enabled checkbox named
     NAME in its table; ticking rows one by one keeps the header box in step (ticked when all
     are, "indeterminate" when some are). */
  function rowBoxes(header) {
    var table = header.closest("table");
    var name = header.getAttribute("data-select-all");
    if (!table) return [];
    return Array.prototype.filter.call(
      table.querySelectorAll("input[type=checkbox]"),
      function (box) { return box.name === name && !box.disabled; });
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[type=checkbox]")) return;
    if (box.hasAttribute("data-select-all")) {
      rowBoxes(box).forEach(function (row) { row.checked = box.checked; });
      box.indeterminate = false;
      return;
    }
    var table = box.closest("table");
    var header = table && table.querySelector("input[data-select-all]");
    if (!header || header.getAttribute("data-select-all") !== box.name) return;
    var rows = rowBoxes(header);
    var ticked = rows.filter(function (row) { return row.checked; }).length;
    header.checked = rows.length > 0 && ticked === rows.length;
    header.indeterminate = ticked > 0 && ticked < rows.length;
  });
})();
