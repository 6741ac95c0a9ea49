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

// After an htmx form submission replaces part of the page, the button that had the focus is
// gone and browsers drop the focus to the top of the page. Move it deliberately: to the
// first message the answer carries (also announced: messages are role=status), else to the
// swapped region's heading. Searches as one types are GETs and keep the focus where it is.
(function () {
  "use strict";
  document.addEventListener("htmx:afterSettle", function (event) {
    var config = event.detail && event.detail.requestConfig;
    if (!config || config.verb === "get") return;
    var region = event.detail.elt && event.detail.elt.isConnected ? event.detail.elt : null;
    region = region || document.getElementById((event.detail.target || {}).id || "");
    if (!region) return;
    var target = region.querySelector(".message, [role=alert]") || region.querySelector("h1, h2");
    if (!target) return;
    if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.focus({ preventScroll: false });
  });
})();
