/* What the console's pages do in the browser besides htmx, without an inline script or event
   handler (the Content-Security-Policy allows neither): listeners on the document that act on
   data- attributes, so they work on fragments htmx swaps in too.
   - data-submit-on-change (on a select): changing it submits its form (the branch view's
     site; the DP switcher has its own listener, at the end);
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

/* i14-layout: the menu button and the DP switcher.
   - data-nav-toggle (on the top bar's menu button): opens and closes the element its
     aria-controls names (the sidebar at tablet and phone width), saying which in aria-expanded;
     Escape closes it and gives the focus back to the button;
   - data-dp-switcher (on the DP switcher's form): choosing a DP is remembered through htmx (the
     form's hx-post, answered 204) without a reload where the page does not show the selected DP,
     so a half-filled form keeps what it holds. A page that does show it (main[data-shows-
     selected-dp], the libraries) is reloaded by a plain post, after asking when one of its forms
     has unsaved input (changed and not yet sent, by a plain post or htmx); saying no puts the
     switcher back. */
(function () {
  "use strict";

  function setOpen(button, open) {
    var nav = document.getElementById(button.getAttribute("aria-controls"));
    if (!nav) return;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    nav.classList.toggle("open", open);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-nav-toggle]");
    if (button) setOpen(button, button.getAttribute("aria-expanded") !== "true");
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var button = document.querySelector("[data-nav-toggle][aria-expanded='true']");
    if (button) {
      setOpen(button, false);
      button.focus();
    }
  });

  // The option a select shows when untouched: a marked one, else the first of a drop-down.
  function defaultIndex(select) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].defaultSelected) return i;
    }
    return select.multiple || select.size > 1 ? -1 : 0;
  }

  function edited(control) {
    if (control.disabled || control.type === "hidden") return false;
    if (control.type === "checkbox" || control.type === "radio") {
      return control.checked !== control.defaultChecked;
    }
    if (control.options) {
      if (!control.multiple) return control.selectedIndex !== defaultIndex(control);
      return Array.prototype.some.call(control.options, function (option) {
        return option.selected !== option.defaultSelected;
      });
    }
    return "defaultValue" in control && control.value !== control.defaultValue;
  }

  // Does any form of the page other than `except` hold input the person has not sent?
  function unsavedInput(except) {
    return Array.prototype.some.call(document.forms, function (form) {
      return form !== except && Array.prototype.some.call(form.elements, edited);
    });
  }

  function putBack(select) {
    select.selectedIndex = defaultIndex(select);
  }

  document.addEventListener("change", function (event) {
    var select = event.target;
    var form = select.form;
    if (!form || select.tagName !== "SELECT" || !form.hasAttribute("data-dp-switcher")) return;
    if (!document.querySelector("main[data-shows-selected-dp]")) {
      form.requestSubmit();  // htmx posts it; nothing on the page is replaced
      return;
    }
    if (unsavedInput(form) && !window.confirm(
        "This page shows the selected distribution point, so switching reloads it and what you " +
        "entered here is lost. Switch anyway?")) {
      putBack(select);
      return;
    }
    form.submit();  // a plain post, answered by a redirect back to this page
  });

  // What a form holds now becomes what it holds when untouched: its input has been sent.
  function markSaved(form) {
    Array.prototype.forEach.call(form.elements, function (control) {
      if (control.type === "checkbox" || control.type === "radio") {
        control.defaultChecked = control.checked;
      } else if (control.options) {
        Array.prototype.forEach.call(control.options, function (option) {
          option.defaultSelected = option.selected;
        });
      } else if ("defaultValue" in control && control.type !== "file") {
        control.defaultValue = control.value;
      }
    });
  }

  // A form htmx sent (not a GET such as the deploy form's preview) holds nothing unsaved; the
  // switcher, when refused, shows again the DP that is remembered (the error is in #flash).
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (!form || form.tagName !== "FORM") return;
    var switcher = form.hasAttribute("data-dp-switcher");
    if (!event.detail.successful) {
      if (switcher) putBack(form.querySelector("select"));
      return;
    }
    var verb = event.detail.requestConfig && event.detail.requestConfig.verb;
    if (switcher || (verb && verb.toLowerCase() !== "get")) markSaved(form);
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

(function () {
  "use strict";

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
