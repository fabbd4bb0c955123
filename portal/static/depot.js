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

  /* --- i14-dashboard: a <details data-dropdown> (the bell) closes on a click elsewhere and on
     Escape, like a menu. --- */
  function closeDropdowns(except) {
    document.querySelectorAll("details[data-dropdown][open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }

  document.addEventListener("click", function (event) {
    closeDropdowns(event.target.closest && event.target.closest("details[data-dropdown]"));
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details[data-dropdown][open]");
    if (open) {
      open.open = false;
      open.querySelector("summary").focus();
    }
  });
})();
