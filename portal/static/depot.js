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

/* i14-copying: the Add cloud page's wait for the consent in the other tab. Sending the form notes
   when (data-waiting-since on the element it reveals) and takes away what the last wait ended
   with ([data-gone-on-resubmit]: "did not finish", "stopped waiting"); each poll of an element
   with data-waiting-since sends `waited`, the seconds since, so the server can stop the wait
   after DEPOT_CONSENT_WAIT_SECONDS and say so. */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var id = form.getAttribute && form.getAttribute("data-reveal-on-submit");
    var shown = id && document.getElementById(id);
    if (!shown) return;
    shown.setAttribute("data-waiting-since", String(Date.now()));
    // After the submission has its data (the Try again button that sent it may be among these).
    window.setTimeout(function () {
      form.querySelectorAll("[data-gone-on-resubmit]").forEach(function (gone) { gone.remove(); });
    }, 0);
  });

  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    var since = elt && elt.getAttribute && elt.getAttribute("data-waiting-since");
    if (since) {
      event.detail.parameters.waited = String(Math.round((Date.now() - Number(since)) / 1000));
    }
  });
})();
