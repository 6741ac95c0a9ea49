// The site's only script of its own (the CSP allows no inline script).
// Below 768 px the navigation folds behind a Menu button; this shows the button and
// opens or closes the links, keeping aria-expanded true to what is on screen.
(function () {
  "use strict";
  function setUp() {
    var button = document.querySelector("[data-nav-toggle]");
    var links = button && document.getElementById(button.getAttribute("aria-controls"));
    if (!links) return;
    button.hidden = false;
    document.documentElement.classList.add("nav-folds");
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      links.classList.toggle("is-open", open);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();

// After an htmx request replaces part of the page, the control that had the focus is gone
// and browsers drop the focus to the top of the page. Move it deliberately:
// - a value changed in place (a seats box, sent on "change"): back to the same box in the
//   new content, so that typing and tabbing carry on where they were;
// - a submitted form: to the first message the answer carries (messages are role=status,
//   so they are also announced), else to the swapped region's heading.
// Searches as one types are GETs and keep the focus where it is.
(function () {
  "use strict";
  var kept = null;
  function describe(element) {
    if (!element || element === document.body) return null;
    if (element.id) return "#" + CSS.escape(element.id);
    var label = element.getAttribute("aria-label");
    return label ? '[aria-label="' + CSS.escape(label) + '"]' : null;
  }
  document.addEventListener("htmx:beforeSwap", function () {
    kept = describe(document.activeElement);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var config = event.detail && event.detail.requestConfig;
    if (!config || config.verb === "get") return;
    var trigger = config.triggeringEvent && config.triggeringEvent.type;
    var target = null;
    if ((trigger === "change" || trigger === "input") && kept) {
      target = document.querySelector(kept);
    }
    if (!target) {
      // The swapped region (found again by id: outerHTML swaps replace the element), else
      // the element that made the request.
      var region = document.getElementById((event.detail.target || {}).id || "");
      region = region || (event.detail.elt && event.detail.elt.isConnected ? event.detail.elt : null);
      region = region || document.querySelector("main");
      if (!region) return;
      target =
        region.querySelector(".message, [role=alert]") ||
        document.querySelector("#messages .message") ||
        region.querySelector("h1, h2");
      if (target && !target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    }
    if (target) target.focus({ preventScroll: false });
  });
})();

// A page reached by a redirect after a form (a plan just created, credits just bought) opens
// with its message focused, so that keyboard and screen-reader users start from the outcome.
(function () {
  "use strict";
  function focusMessage() {
    var message = document.querySelector("#messages .message");
    if (!message) return;
    message.setAttribute("tabindex", "-1");
    message.focus({ preventScroll: true });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", focusMessage);
  } else {
    focusMessage();
  }
})();
