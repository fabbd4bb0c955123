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
})();
